#!/usr/bin/env bash
# User-space instructions per echoed TLS message and per full TLS handshake, counted by
# valgrind's callgrind: repeatable whatever else the machine is doing.
#
#   Benchmarks/tls-callgrind.sh [--connections 10] [--messages-per-connection 10000]
#       [--python-messages-per-connection 1000] [--size 1024] [--handshakes 1000]
#       [--python-handshakes 200] [--servers "ours c nio go uvloop"] [--no-handshakes]
#       [--annotate N] [--keep DIR]
#
# The servers are those of run-tls-bench.sh (echo/lib.sh, TLS): each speaks TLS 1.3 with
# TLS_AES_128_GCM_SHA256 and X25519, which echo/tls_loadgen.c alone offers. For each server,
# three runs under `valgrind --tool=callgrind`, each ended by SIGTERM (the servers exit
# normally on it, so callgrind writes its totals):
#   idle:       start; --connections connections each do a full handshake, echo one message,
#               send close_notify and wait for the server's close; SIGTERM;
#   loaded:     the same connections, echoing --messages-per-connection messages each;
#   handshakes: --handshakes connections, 10 at a time, each doing a full handshake (never
#               resumed), close_notify, the server's close, and nothing else.
# (loaded - idle) / (messages(loaded) - messages(idle)) is the instruction count of one echoed
# message (one TLS record each way: decrypt, echo, encrypt), in the whole process (event loop,
# runtime, TLS library, allocator, libc; not the kernel), with start-up, the handshakes,
# closes and shut-down cancelled out. (handshakes - idle + (idle's messages) x that) /
# (handshakes - connections) is the instruction count of one connection with a full
# handshake: accept, handshake (key exchange, signature, session tickets), close_notify both
# ways, close.
#
# Swift binaries are copied and `strip --strip-debug`ed first (valgrind 3.19 cannot read
# Swift 6's DWARF; the symbol table stays, so --annotate N still names the N functions with
# the most instructions, self cost, of each loaded run). Python servers are slow under
# callgrind: they get --python-messages-per-connection and --python-handshakes. Go's runtime
# keeps its own threads (sysmon, GC) that wake by time, not by work, so its figures carry a
# little of the time each run took; and since callgrind cannot deliver SIGTERM to Go's
# handler, Go's counts are dumped with `callgrind_control --dump` at the end of each run and
# the server killed (its shut-down is left out of all three runs alike). Under valgrind, OpenSSL, BoringSSL and Go see the CPU
# features valgrind emulates (AES-NI, PCLMUL, AVX2; not AVX-512), so the AES-GCM code path is
# the AVX2/AES-NI one for all. --keep DIR keeps the callgrind output files
# (callgrind.<server>.{idle,loaded,handshakes}) for callgrind_annotate.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/echo/lib.sh"
export ECHO_TRANSPORT=tls

connections=10 per_connection=10000 python_per_connection=1000 size=1024 annotate=0 keep=""
handshakes=1000 python_handshakes=200 do_handshakes=1
while (($#)); do
    case "$1" in
        --connections) connections="$2"; shift 2 ;;
        --messages-per-connection) per_connection="$2"; shift 2 ;;
        --python-messages-per-connection) python_per_connection="$2"; shift 2 ;;
        --size) size="$2"; shift 2 ;;
        --handshakes) handshakes="$2"; shift 2 ;;
        --python-handshakes) python_handshakes="$2"; shift 2 ;;
        --no-handshakes) do_handshakes=0; shift ;;
        --servers) ECHO_SERVERS="$2"; shift 2 ;;
        --annotate) annotate="$2"; shift 2 ;;
        --keep) keep="$2"; shift 2 ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
prepare_servers
tree="$(tree_line)"   # what the binaries were built from (the tree may change during the run)
[[ -n "$keep" ]] && mkdir -p "$keep"
# The server (under valgrind) on CPU 0, tls_loadgen on CPU 1: how often the server finds the
# next message already there when it reads again (and so skips a read that would find
# nothing) depends on the timing of the two, and this keeps it the same from run to run.
pin_cpus
export SWIFT_BACKTRACE=enable=no PYTHONHASHSEED=0

# The command line of server $1 as run under callgrind: stripped copies of Swift binaries.
callgrind_command() {
    server_command "$1"
    case "$1" in
        ours | ours-streams | ours-reuse-streams | nio)
            local copy="$work_dir/$1-stripped"
            [[ -x "$copy" ]] || { cp "${server_cmd[0]}" "$copy" && strip --strip-debug "$copy"; }
            server_cmd[0]="$copy" ;;
    esac
}

total_of() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }

# One run: callgrind_run NAME KIND LOADGEN-ARGS...; sets run_total and run_line.
callgrind_run() {
    local name="$1" kind="$2" out="$work_dir/callgrind.$1.$2"
    shift 2
    callgrind_command "$name"
    local prefix=()
    # Go: no asynchronous preemption (SIGURG) under valgrind.
    [[ "$name" == go ]] && prefix=(env GODEBUG=asyncpreemptoff=1)
    if ! start_server "cg-$name-$kind" 180 "${pin_server[@]}" "${prefix[@]}" valgrind --tool=callgrind --callgrind-out-file="$out" \
        "${server_cmd[@]}"; then
        note "$(label_of "$name"): did not start under callgrind"
        return 1
    fi
    if ! run_line="$(timeout 1200 "${pin_load[@]}" "$loadgen" "${server_addr[@]}" --timeout 1140 --close-wait 60 "$@" \
        2>"$work_dir/loadgen.err")"; then
        note "$(label_of "$name") ($kind run): load failed: $(tail -n 3 "$work_dir/loadgen.err" | tr '\n' ' ')"
        stop_server 120
        return 1
    fi
    log "  $kind: $run_line"
    local negotiated
    negotiated="protocol=$(result_field "$run_line" protocol) cipher=$(result_field "$run_line" cipher) group=$(result_field "$run_line" group)"
    [[ "$negotiated" == "protocol=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256 group=X25519" ]] \
        || note "$(label_of "$name") ($kind run): negotiated $negotiated"
    local field value
    for field in closed_eof closed_reset not_closed; do
        value="$(result_field "$run_line" "$field")"
        if ((${value:-0} > 0)); then note "$(label_of "$name") ($kind run): $field=$value"; fi
    done
    if [[ "$name" == go ]]; then
        # callgrind 3.19 asserts when Go's runtime returns from a signal handler, so SIGTERM
        # would lose the counts: dump them with callgrind_control (the run so far, shut-down
        # left out) and kill the server.
        timeout 60 callgrind_control --dump "$server_pid" >/dev/null 2>&1 || true
        local deadline=$((SECONDS + 60))
        while ! grep -q '^totals:' "$out.1" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        mv -f "$out.1" "$out" 2>/dev/null || true
    else
        stop_server 120
        if [[ "$server_status" != "exit 0" ]]; then
            note "$(label_of "$name") ($kind run): after SIGTERM: $server_status"
        fi
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
for name in "${servers[@]}"; do
    per="$per_connection" hs="$handshakes"
    case "$name" in asyncio | uvloop) per="$python_per_connection" hs="$python_handshakes" ;; esac
    log "$(label_of "$name"): callgrind, idle run, $connections x $per messages, $hs handshakes ..."
    t0=$SECONDS
    callgrind_run "$name" idle --connections "$connections" --size "$size" --messages "$connections" \
        || { echo "$name FAILED" >>"$results"; continue; }
    idle="$run_total"
    callgrind_run "$name" loaded --connections "$connections" --size "$size" --messages $((connections * per)) \
        || { echo "$name FAILED" >>"$results"; continue; }
    loaded="$run_total"
    hs_total=0 hs_count=0
    if ((do_handshakes)); then
        if callgrind_run "$name" handshakes --handshakes --connections "$connections" --count "$hs"; then
            hs_total="$run_total" hs_count="$(result_field "$run_line" handshakes)"
        fi
    fi
    echo "$name $idle $loaded $((connections * per - connections)) $hs_total $hs_count $((SECONDS - t0))" >>"$results"
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
echo "$tree"
echo "valgrind: $(valgrind --version); $(openssl version | awk '{ print $1, $2 }'); TLS 1.3 TLS_AES_128_GCM_SHA256 X25519;" \
    "$connections connections x $size-byte messages, pipeline 1; handshakes $connections at a time"
echo
echo "| server | instructions / message | vs ours | instructions / handshake | vs ours | messages | handshakes | loaded run total | idle run total | handshake run total | wall s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
labels=""
for name in "${servers[@]}"; do labels+="$name=$(label_of "$name");"; done
awk -v labels="$labels" -v conns="$connections" '
    BEGIN {
        n = split(labels, pairs, ";")
        for (i = 1; i <= n; i++) if (split(pairs[i], kv, "=") == 2) label[kv[1]] = kv[2]
    }
    {
        rows[NR] = $0
        if ($2 == "FAILED") next
        per[$1] = ($3 - $2) / $4
        hs[$1] = ($6 > conns) ? ($5 - $2 + conns * per[$1]) / ($6 - conns) : ""
    }
    function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "n/a" : sprintf("%.2f", a / b) }
    END {
        for (i = 1; i <= NR; i++) {
            split(rows[i], f, " ")
            if (f[2] == "FAILED") { printf "| %s | failed | | | | | | | | | |\n", label[f[1]]; continue }
            h = hs[f[1]]
            printf "| %s | %.0f | %s | %s | %s | %d | %d | %.0f | %.0f | %.0f | %d |\n", label[f[1]], per[f[1]],
                ratio(per[f[1]], per["ours"]), (h == "" ? "n/a" : sprintf("%.0f", h)), ratio(h, hs["ours"]),
                f[4], f[6], f[3], f[2], f[5], f[7]
        }
    }
' "$results"
echo
echo "Instructions / message: user-space instructions (the whole process: loop, runtime, TLS"
echo "library, malloc, libc; no kernel) per echoed message, from (loaded - idle) runs."
echo "Instructions / handshake: per connection with a full handshake and a close, from"
echo "(handshakes - idle) runs. vs ours: ratio to swift-asyncio's figure (above 1: costs more)."
echo "Took ${elapsed} s."
print_notes
