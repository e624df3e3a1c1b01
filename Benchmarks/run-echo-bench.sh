#!/usr/bin/env bash
# Echo throughput, latency and server CPU per request: swift-asyncio's tcp-echo-server beside
# a C epoll baseline, SwiftNIO, asyncio and uvloop, on loopback, on this machine, in one run.
#
#   Benchmarks/run-echo-bench.sh [--duration SEC | --messages M] [--repeats N]
#       [--connections N] [--sizes "1024 102400"] [--pipeline D] [--warmup SEC]
#       [--servers "ours ours-streams c nio asyncio asyncio-streams uvloop uvloop-streams"]
#       [--unix | --udp] [--quiet-wait SEC] [--chart-dir DIR]
#
# Each server runs pinned to CPU 0 and the load generator (echo/loadgen.c) to CPU 1. For
# each message size, all servers are started and warmed up (--warmup, default 1 s), then
# loaded in turn, round after round, --repeats rounds (default 5), with --connections (10)
# connections sending --size-byte messages, --pipeline (1) in flight per connection, for
# --duration (5) seconds or --messages in total; the server's CPU time (utime + stime from
# /proc/PID/stat) is read before and after each repetition. The table has the median of the
# repetitions, column by column. --unix serves over Unix sockets instead of loopback TCP.
# --udp echoes UDP datagrams instead (run-udp-bench.sh is this script with --udp):
# udp-echo-server and the UDP servers of echo/lib.sh, loaded by echo/udp_loadgen.c, whose
# --connections client sockets each keep --pipeline datagrams in flight; --sizes defaults to
# 1024 there, and a datagram lost (not echoed within 1 s) fails the server's run.
# Every echoed byte is checked; a server that echoes a wrong byte, closes a connection,
# crashes or does not exit on SIGTERM gets a note under the table. Before each repetition
# the script waits up to --quiet-wait seconds (default 120) for the machine to be quiet
# (under 10% of a CPU busy for half a second), and notes repetitions that other processes
# disturbed all the same.
#
# Our server is built with `swift build -c release --product tcp-echo-server --scratch-path
# .build-bench` in the repository; if it has no such product yet its rows are skipped with a
# note. OURS_BIN=path uses a given binary; NO_BUILD=1 builds nothing; PYTHON picks the
# interpreter.
#
# Progress goes to stderr ("cell n of N: ..., ~T left"; a cell is one repetition of one
# server). The server CPU per request of each size is also written as a TSV and drawn as an
# SVG bar chart (ours highlighted) into --chart-dir (default Benchmarks/.build/charts):
# run-echo-bench-<tcp|unix|udp>-<size>.{tsv,svg}; the chart needs matplotlib (python3 -m pip
# install matplotlib), and without it the script says so and prints the table all the same.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/echo/lib.sh"

duration=5 messages="" repeats=5 connections=10 sizes="" pipeline=1 warmup=1 quiet_wait=120
while (($#)); do
    case "$1" in
        --duration) duration="$2"; messages=""; shift 2 ;;
        --messages) messages="$2"; duration=""; shift 2 ;;
        --repeats) repeats="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        --sizes) sizes="$2"; shift 2 ;;
        --pipeline) pipeline="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --quiet-wait) quiet_wait="$2"; shift 2 ;;
        --servers) ECHO_SERVERS="$2"; shift 2 ;;
        --unix) export ECHO_TRANSPORT=unix; shift ;;
        --udp) export ECHO_TRANSPORT=udp; shift ;;
        --chart-dir) chart_dir="$2"; shift 2 ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [[ -z "$sizes" ]]; then
    if [[ "${ECHO_TRANSPORT:-tcp}" == udp ]]; then sizes="1024"; else sizes="1024 102400"; fi
fi
prepare_servers
pin_cpus

if [[ -n "$messages" ]]; then
    load_args=(--messages "$messages") load_timeout=300
else
    load_args=(--duration "$duration") load_timeout=$(awk -v d="$duration" 'BEGIN { print int(d + 60) }')
fi

results="$work_dir/results"
: >"$results"

size_label() {
    local s="$1"
    if ((s % 1048576 == 0)); then echo "$((s / 1048576)) MiB"
    elif ((s % 1024 == 0)); then echo "$((s / 1024)) KiB"
    else echo "$s B"; fi
}

run_load() {  # run_load EXTRA-ARGS...: one loadgen run against server_addr; prints its line
    timeout $((load_timeout + 30)) "${pin_load[@]}" "$loadgen" "${server_addr[@]}" \
        --connections "$connections" --pipeline "$pipeline" --timeout "$load_timeout" "$@" \
        2>"$work_dir/loadgen.err"
}

fail_server() {  # fail_server NAME WHY: the rest of this size's repetitions skip it
    local name="$1" why="$2" label
    label="$(label_of "$name")"
    state_of[$name]=failed
    note "$label ($(size_label "$size")): $why: $(tail -n 3 "$work_dir/loadgen.err" | tr '\n' ' ')"
    if ! kill -0 "${pid_of[$name]}" 2>/dev/null; then
        note "$label ($(size_label "$size")): server died; its stderr ends with: $(tail -n 5 "$work_dir/$name-$size.err" | tr '\n' ' ')"
    fi
}

warm_up() {  # warm_up NAME: the warm-up of rounds_start
    run_load --size "$size" --duration "$warmup" >/dev/null || fail_server "$1" "warm-up failed"
}

# One repetition (of rounds_run) against server NAME: appends "req/s MB/s p50 p99 cpu/req
# other% steal%" to $work_dir/reps.NAME.
measure() {
    local name="$1" before after busy_before busy_after steal_before steal_after line count
    before="$(cpu_us "$server_pid")" || { fail_server "$name" "server gone"; return; }
    read -r busy_before steal_before < <(machine_cpu_us)
    if ! line="$(run_load --size "$size" "${load_args[@]}")"; then fail_server "$name" "load failed"; return; fi
    read -r busy_after steal_after < <(machine_cpu_us)
    after="$(cpu_us "$server_pid")" || { fail_server "$name" "server gone"; return; }
    count="$(result_field "$line" messages)"
    local cpu_per_request other_pct steal_pct seconds
    seconds="$(result_field "$line" seconds)"
    cpu_per_request="$(awk -v a="$after" -v b="$before" -v n="$count" 'BEGIN { printf "%.2f", (a - b) / n }')"
    # CPU that neither the server nor loadgen used during the repetition, in % of one CPU.
    other_pct="$(awk -v busy=$((busy_after - busy_before)) -v server=$((after - before)) \
        -v load="$(result_field "$line" loadgen_cpu_us)" -v s="$seconds" \
        'BEGIN { v = (busy - server - load) / (s * 1e6) * 100; printf "%.0f", v < 0 ? 0 : v }')"
    steal_pct="$(awk -v d=$((steal_after - steal_before)) -v s="$seconds" 'BEGIN { printf "%.0f", d / (s * 1e6) * 100 }')"
    echo "$(result_field "$line" req_per_s) $(result_field "$line" mb_per_s) $(result_field "$line" p50_us) $(result_field "$line" p99_us) $cpu_per_request $other_pct $steal_pct" \
        >>"$work_dir/reps.$name"
    log "  $(label_of "$name"): $line server_cpu_us_per_req=$cpu_per_request other_cpu=${other_pct}% steal=${steal_pct}%"
}

# The row of server NAME after its five medians (of rounds_finish): the smallest and largest
# req/s of its repetitions; and a note if other processes disturbed one of them.
row_extras() {  # row_extras NAME REPS_FILE
    rounds_note_disturbed "$1" "$2" 6 7
    column_range "$2" 1
}

# One set of rounds per size (the skeleton of echo/lib.sh): all servers started and warmed
# up, --repeats rounds going round them, then each one's row in $results, keyed by the size.
started_at=$SECONDS
size_count=0
for size in $sizes; do size_count=$((size_count + 1)); done
progress_init $((size_count * repeats * ${#servers[@]}))
for size in $sizes; do
    rounds_start warm_up "$size" "$(size_label "$size")" "$size"
    rounds_run measure
    rounds_finish 5 row_extras
done
elapsed=$((SECONDS - started_at))

echo
machine_line
versions_line
if [[ -n "$messages" ]]; then what="$messages messages"; else what="${duration} s"; fi
if [[ "${ECHO_TRANSPORT:-tcp}" == udp ]]; then
    echo "Load: UDP, $connections client sockets, pipeline $pipeline, $what per repetition, median of $repeats; server on CPU 0, udp_loadgen on CPU 1"
else
    echo "Load: $connections connections, pipeline $pipeline, $what per repetition, median of $repeats; server on CPU 0, loadgen on CPU 1"
fi
echo
echo "| size | server | req/s | MB/s | p50 µs | p99 µs | server CPU µs/request | req/s vs C | CPU/request vs C | req/s min–max |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
labels=""
for name in "${servers[@]}"; do labels+="$name=$(label_of "$name");"; done
awk -v labels="$labels" -v sizes="$sizes" '
    BEGIN {
        n = split(labels, pairs, ";")
        for (i = 1; i <= n; i++) if (split(pairs[i], kv, "=") == 2) label[kv[1]] = kv[2]
    }
    { rows[NR] = $0; if ($2 == "c" && $3 != "FAILED") { c_req[$1] = $3; c_cpu[$1] = $7 } }
    function size_label(s) {
        if (s % 1048576 == 0) return (s / 1048576) " MiB"
        if (s % 1024 == 0) return (s / 1024) " KiB"
        return s " B"
    }
    function ratio(a, b) { return (b == "" || b == 0) ? "n/a" : sprintf("%.2f", a / b) }
    END {
        for (i = 1; i <= NR; i++) {
            split(rows[i], f, " ")
            if (f[3] == "FAILED") {
                printf "| %s | %s | failed | | | | | | | |\n", size_label(f[1]), label[f[2]]
                continue
            }
            printf "| %s | %s | %.0f | %.1f | %.1f | %.1f | %.2f | %s | %s | %.0f–%.0f |\n", size_label(f[1]), label[f[2]],
                f[3], f[4], f[5], f[6], f[7], ratio(f[3], c_req[f[1]]), ratio(f[7], c_cpu[f[1]]), f[8], f[9]
        }
    }
' "$results"
echo
echo "Medians of the repetitions, column by column. req/s vs C above 1: more requests per second"
echo "than the C baseline. CPU/request vs C above 1: the server spends that many times the"
echo "baseline's CPU (user + system) per echoed message. req/s min–max: the spread of the"
echo "repetitions; where it is wide, differences between rows smaller than it are noise."
echo "Took ${elapsed} s."

transport="${ECHO_TRANSPORT:-tcp}"
what="request"; [[ "$transport" == udp ]] && what="datagram"
for size in $sizes; do
    chart="$chart_dir/run-echo-bench-$transport-$size"
    awk -v labels="$labels" -v size="$size" '
        BEGIN { n = split(labels, pairs, ";"); for (i = 1; i <= n; i++) if (split(pairs[i], kv, "=") == 2) label[kv[1]] = kv[2] }
        $1 == size && $3 != "FAILED" { printf "%s\t%.2f\n", label[$2], $7 }
    ' "$results" | chart_tsv "$chart.tsv" \
        "Server CPU µs per echoed $(size_label "$size") $what (user + system), lower is better" \
        "run-echo-bench.sh, $(date -u '+%Y-%m-%d'), $(nproc) CPUs, $transport, $connections connections, pipeline $pipeline, median of $repeats; $(tree_line)" \
        linear "server CPU µs / $what"
    draw_chart "$chart.tsv" "$chart.svg"
done
print_notes
