#!/usr/bin/env bash
# User-space instructions per echoed message, counted by valgrind's callgrind: repeatable
# whatever else the machine is doing, so it can compare runs on different days.
#
#   Benchmarks/echo-callgrind.sh [--connections 10] [--messages-per-connection 20000]
#       [--python-messages-per-connection 2000] [--size 1024]
#       [--servers "ours ours-streams c nio uvloop"] [--annotate N] [--keep DIR] [--unix | --udp]
#       [--churn] [--chart-dir DIR]
#
# For each server, two runs under `valgrind --tool=callgrind`, each ended by SIGTERM (the
# servers exit normally on it, so callgrind writes its totals):
#   idle:   start, --connections connections that each echo one message and close, SIGTERM;
#   loaded: start, the same connections echoing --messages-per-connection messages each, SIGTERM.
# (loaded - idle) / (messages(loaded) - messages(idle)) is the instruction count of one echoed
# message, in the whole process (event loop, runtime, allocator, libc; not the kernel), with
# start-up, connection set-up and tear-down and shut-down cancelled out.
#
# Swift binaries are copied and `strip --strip-debug`ed first: valgrind 3.19 cannot read the
# DWARF that Swift 6 emits; the symbol table stays, so --annotate N still prints the N
# functions with the most instructions (self cost) of each loaded run. Python servers are
# slow under callgrind: they get --python-messages-per-connection. --keep DIR keeps the
# callgrind output files (callgrind.<server>.{idle,loaded}) for callgrind_annotate.
# --unix serves over Unix stream sockets; --udp echoes UDP datagrams instead (udp-echo-server
# and the UDP servers of echo/lib.sh, loaded by echo/udp_loadgen.c; the streams servers,
# which have no UDP form, are skipped): instructions per echoed datagram. --churn counts
# instructions per connection instead (echo/churn_loadgen.c: --connections client threads,
# each looping connect, one --size echo, close, --messages-per-connection times; default
# 1000 and 64 bytes): what a server spends on accepting, setting up and closing one.
#
# Progress goes to stderr ("cell n of N: ..., ~T left"; a cell is one callgrind run). The
# figures are also written as a TSV and drawn as an SVG bar chart (ours highlighted) into
# --chart-dir (default Benchmarks/.build/charts): echo-callgrind-<tcp|unix|udp>.{tsv,svg};
# the chart needs matplotlib (python3 -m pip install matplotlib), and without it the script
# says so and prints the table all the same.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/echo/lib.sh"

connections=10 per_connection="" python_per_connection=2000 size="" annotate=0 keep="" churn=0
ECHO_SERVERS="${ECHO_SERVERS:-ours ours-streams c nio uvloop}"
while (($#)); do
    case "$1" in
        --connections) connections="$2"; shift 2 ;;
        --messages-per-connection) per_connection="$2"; shift 2 ;;
        --python-messages-per-connection) python_per_connection="$2"; shift 2 ;;
        --size) size="$2"; shift 2 ;;
        --servers) ECHO_SERVERS="$2"; shift 2 ;;
        --unix) export ECHO_TRANSPORT=unix; shift ;;
        --udp) export ECHO_TRANSPORT=udp; shift ;;
        --churn) churn=1; shift ;;
        --annotate) annotate="$2"; shift 2 ;;
        --keep) keep="$2"; shift 2 ;;
        --chart-dir) chart_dir="$2"; shift 2 ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
if ((churn)); then
    [[ "${ECHO_TRANSPORT:-tcp}" == tcp ]] || { echo "--churn is for loopback TCP only" >&2; exit 2; }
    per_connection="${per_connection:-1000}" size="${size:-64}"
    python_per_connection=$((python_per_connection < per_connection ? python_per_connection : per_connection))
fi
per_connection="${per_connection:-20000}" size="${size:-1024}"
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
prepare_servers
[[ -n "$keep" ]] && mkdir -p "$keep"

# Swift's crash backtracer would start a helper process under valgrind on a crash; not wanted.
# A fixed hash seed makes Python's idle and loaded runs start up alike.
export SWIFT_BACKTRACE=enable=no PYTHONHASHSEED=0

# The command line of server $1 as run under callgrind: stripped copies of Swift binaries.
callgrind_command() {
    server_command "$1"
    case "$1" in
        ours | ours-streams | ours-reuse-streams | ours-iter-streams | nio | nio-async)
            local copy="$work_dir/$1-stripped"
            [[ -x "$copy" ]] || { cp "${server_cmd[0]}" "$copy" && strip --strip-debug "$copy"; }
            server_cmd[0]="$copy" ;;
    esac
}

total_of() {  # the instruction total of a callgrind output file
    awk '/^(summary|totals):/ { print $2; exit }' "$1"
}

# One run: callgrind_run NAME KIND MESSAGES_PER_CONNECTION; sets run_total to the
# instruction total. (Not in a subshell: the server it starts must stay this shell's child.)
callgrind_run() {
    local name="$1" kind="$2" per="$3" out="$work_dir/callgrind.$1.$2"
    callgrind_command "$name"
    if ! start_server "cg-$name-$kind" 180 valgrind --tool=callgrind --callgrind-out-file="$out" \
        "${server_cmd[@]}"; then
        note "$(label_of "$name"): did not start under callgrind"
        return 1
    fi
    local line load=("$loadgen" "${server_addr[@]}" --connections "$connections" --size "$size" --messages $((connections * per)))
    if ((churn)); then
        load=("$tools_dir/churn_loadgen" "${server_addr[@]}" --clients "$connections" --size "$size" --cycles $((connections * per)))
    fi
    if ! line="$(timeout 900 "${load[@]}" --timeout 840 2>"$work_dir/loadgen.err")"; then
        note "$(label_of "$name") ($kind run): load failed: $(tail -n 3 "$work_dir/loadgen.err" | tr '\n' ' ')"
        stop_server 120
        return 1
    fi
    log "  $kind: $line"
    stop_server 120
    if [[ "$server_status" != "exit 0" ]]; then
        note "$(label_of "$name") ($kind run): after SIGTERM: $server_status"
    fi
    if [[ ! -s "$out" ]]; then
        note "$(label_of "$name") ($kind run): callgrind wrote no output (the server did not exit normally)"
        return 1
    fi
    [[ -n "$keep" ]] && cp "$out" "$keep/callgrind.$name.$kind"
    run_total="$(total_of "$out")"
}

started_at=$SECONDS
results="$work_dir/results"
: >"$results"
progress_init $((${#servers[@]} * 2))
for name in "${servers[@]}"; do
    per="$per_connection"
    case "$name" in asyncio* | uvloop*) per="$python_per_connection" ;; esac
    log "$(label_of "$name"): callgrind, idle run then $connections x $per messages ..."
    t0=$SECONDS
    progress_cell "$(label_of "$name"), idle run"
    if ! callgrind_run "$name" idle 1; then
        progress_done=$((progress_done + 1))   # its loaded run is skipped
        echo "$name FAILED" >>"$results"
        continue
    fi
    idle="$run_total"
    progress_cell "$(label_of "$name"), loaded run"
    callgrind_run "$name" loaded "$per" || { echo "$name FAILED" >>"$results"; continue; }
    loaded="$run_total"
    messages=$((connections * per - connections))
    echo "$name $idle $loaded $messages $((SECONDS - t0))" >>"$results"
    if ((annotate > 0)) && command -v callgrind_annotate >/dev/null; then
        echo
        echo "Top $annotate functions (self instructions, loaded run) of $(label_of "$name"):"
        callgrind_annotate --inclusive=no "$work_dir/callgrind.$name.loaded" 2>/dev/null \
            | grep -E '^ *[0-9,]+ +\( *[0-9.]+%\) ' | grep -v 'PROGRAM TOTALS' | head -n "$annotate" || true
    fi
done
elapsed=$((SECONDS - started_at))

echo
machine_line
unit="message"
if ((churn)); then
    unit="connection"
    echo "valgrind: $(valgrind --version); churn: $connections clients each looping connect, one $size-byte echo, close"
elif [[ "${ECHO_TRANSPORT:-tcp}" == udp ]]; then
    echo "valgrind: $(valgrind --version); UDP, $connections sockets x $size-byte datagrams, pipeline 1"
else
    echo "valgrind: $(valgrind --version); $connections connections x $size-byte messages, pipeline 1"
fi
echo
echo "| server | instructions / $unit | vs C | ${unit}s | loaded run total | idle run total | wall s |"
echo "|---|---:|---:|---:|---:|---:|---:|"
labels=""
for name in "${servers[@]}"; do labels+="$name=$(label_of "$name");"; done
awk -v labels="$labels" '
    BEGIN {
        n = split(labels, pairs, ";")
        for (i = 1; i <= n; i++) if (split(pairs[i], kv, "=") == 2) label[kv[1]] = kv[2]
    }
    { rows[NR] = $0; if ($1 == "c" && $2 != "FAILED") c_per = ($3 - $2) / $4 }
    END {
        for (i = 1; i <= NR; i++) {
            split(rows[i], f, " ")
            if (f[2] == "FAILED") { printf "| %s | failed | | | | | |\n", label[f[1]]; continue }
            per = (f[3] - f[2]) / f[4]
            ratio = c_per > 0 ? sprintf("%.2f", per / c_per) : "n/a"
            printf "| %s | %.0f | %s | %d | %.0f | %.0f | %d |\n", label[f[1]], per, ratio, f[4], f[3], f[2], f[5]
        }
    }
' "$results"
echo
if ((churn)); then
    echo "Instructions / connection: user-space instructions (the whole process: loop, runtime,"
    echo "malloc, libc; no kernel) per accepted, echoed and closed connection, from (loaded - idle)"
    echo "runs. vs C: ratio to the C baseline."
else
    echo "Instructions / message: user-space instructions (the whole process: loop, runtime, malloc,"
    echo "libc; no kernel) per echoed message, from (loaded - idle) runs. vs C: ratio to the C baseline."
fi
echo "Took ${elapsed} s."

transport="${ECHO_TRANSPORT:-tcp}"
what="echoed $size-byte message"; [[ "$transport" == udp ]] && what="echoed $size-byte datagram"
chart="$chart_dir/echo-callgrind-$transport"
if ((churn)); then what="connection (connect, one $size-byte echo, close)"; chart="$chart_dir/echo-callgrind-churn"; fi
awk -v labels="$labels" '
    BEGIN { n = split(labels, pairs, ";"); for (i = 1; i <= n; i++) if (split(pairs[i], kv, "=") == 2) label[kv[1]] = kv[2] }
    $2 != "FAILED" { printf "%s\t%.0f\n", label[$1], ($3 - $2) / $4 }
' "$results" | chart_tsv "$chart.tsv" \
    "User-space instructions per $what (callgrind), lower is better" \
    "echo-callgrind.sh, $(date -u '+%Y-%m-%d'), $(nproc) CPUs, $transport, $connections connections, pipeline 1; $(tree_line)" \
    log "instructions / $unit"
draw_chart "$chart.tsv" "$chart.svg"
print_notes
