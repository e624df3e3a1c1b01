#!/usr/bin/env bash
# Connection churn: new connections per CPU-second of the server. Each of --clients (10)
# client threads loops: connect, one --size-byte (64) echo, close (echo/churn_loadgen.c,
# every byte checked). swift-asyncio's protocol and streams servers beside SwiftNIO, uvloop,
# asyncio and the C epoll baseline, on loopback TCP, in one run.
#
#   Benchmarks/run-churn-bench.sh [--duration SEC] [--repeats N] [--clients N] [--size S]
#       [--servers "ours ours-streams ours-reuse-streams c nio nio-async uvloop uvloop-streams"]
#       [--warmup SEC] [--quiet-wait SEC] [--chart-dir DIR]
#
# Servers are those of echo/lib.sh (same names, same builds). Each runs pinned to CPU 0 and the
# load generator to CPU 1; all are started, warmed up (--warmup, default 1 s), then loaded in
# turn, round after round, --repeats (5) rounds of --duration (5) seconds. The server's CPU
# time (utime + stime of /proc/PID/stat) is read before and after each repetition. The table
# has the median of the repetitions, column by column: connections per second, the time of a
# whole cycle (connect to the echo's last byte; p50, p99), the server's CPU per connection, and
# connections per server CPU-second, the figure that decides (the load generator's own
# speed caps the first column on 2 CPUs). Before each repetition the script waits up to
# --quiet-wait seconds (default 120) for the machine to be quiet.
#
# The clients close first, so their ends wait in TIME_WAIT; Linux reuses those on loopback
# (net.ipv4.tcp_tw_reuse = 2, its default), and each client thread connects from its own
# 127.0.0.x. The server CPU per connection is also written as a TSV and an SVG chart into
# --chart-dir (default Benchmarks/.build/charts): run-churn-bench-<size>.{tsv,svg}.
#
# Environment as for run-echo-bench.sh: OURS_BIN, NO_BUILD=1, PYTHON.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/echo/lib.sh"

duration=5 repeats=5 clients=10 size=64 warmup=1 quiet_wait=120
ECHO_SERVERS="${ECHO_SERVERS:-ours ours-streams ours-reuse-streams c nio nio-async uvloop uvloop-streams}"
while (($#)); do
    case "$1" in
        --duration) duration="$2"; shift 2 ;;
        --repeats) repeats="$2"; shift 2 ;;
        --clients) clients="$2"; shift 2 ;;
        --size) size="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --quiet-wait) quiet_wait="$2"; shift 2 ;;
        --servers) ECHO_SERVERS="$2"; shift 2 ;;
        --chart-dir) chart_dir="$2"; shift 2 ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
export ECHO_SERVERS ECHO_TRANSPORT=tcp

prepare_servers
churn="$tools_dir/churn_loadgen"
pin_cpus
tw_reuse="$(cat /proc/sys/net/ipv4/tcp_tw_reuse 2>/dev/null || echo "?")"
[[ "$tw_reuse" == 0 ]] && note "net.ipv4.tcp_tw_reuse is 0: a long run may run out of ephemeral ports (TIME_WAIT)"

load_timeout=$(awk -v d="$duration" 'BEGIN { print int(d + 60) }')
run_churn() {  # run_churn SECONDS: one churn_loadgen run against server_addr; prints its line
    timeout $((load_timeout + 30)) "${pin_load[@]}" "$churn" "${server_addr[@]}" \
        --clients "$clients" --size "$size" --duration "$1" --timeout "$load_timeout" \
        2>"$work_dir/loadgen.err"
}

results="$work_dir/results"
: >"$results"
fail_server() {  # fail_server NAME WHY: the repetitions left skip it
    state_of[$1]=failed
    note "$(label_of "$1"): $2: $(tail -n 3 "$work_dir/loadgen.err" | tr '\n' ' ')"
}

warm_up() {  # warm_up NAME: the warm-up of rounds_start
    run_churn "$warmup" >/dev/null || fail_server "$1" "warm-up failed"
}

# One repetition (of rounds_run): appends "conn/s p50 p99 cpu_us_per_conn conn_per_cpu_s" to
# reps.NAME.
measure() {
    local name="$1" before after line count
    before="$(cpu_us "$server_pid")" || { fail_server "$name" "server gone"; return; }
    if ! line="$(run_churn "$duration")"; then fail_server "$name" "load failed"; return; fi
    after="$(cpu_us "$server_pid")" || { fail_server "$name" "server gone"; return; }
    count="$(result_field "$line" cycles)"
    awk -v a="$after" -v b="$before" -v n="$count" -v rate="$(result_field "$line" conn_per_s)" \
        -v p50="$(result_field "$line" p50_us)" -v p99="$(result_field "$line" p99_us)" \
        'BEGIN { cpu = (a - b) / n; printf "%s %s %s %.2f %.0f\n", rate, p50, p99, cpu, (cpu > 0 ? 1e6 / cpu : 0) }' \
        >>"$work_dir/reps.$name"
    log "  $(label_of "$name"): $line server_cpu_us_per_conn=$(tail -n1 "$work_dir/reps.$name" | awk '{ print $4 }')"
}

# The skeleton of echo/lib.sh: all servers started and warmed up, --repeats rounds going
# round them, then each one's row of medians in $results.
started_at=$SECONDS
rounds_start warm_up churn
progress_init $((repeats * ${#servers[@]}))
rounds_run measure
rounds_finish 5
elapsed=$((SECONDS - started_at))

echo
machine_line
versions_line
echo "Load: $clients clients each looping connect, one $size-byte echo, close; ${duration} s per repetition, median of $repeats; server on CPU 0, churn_loadgen on CPU 1; tcp_tw_reuse=$tw_reuse"
echo "$(tree_line)"
echo
echo "| server | connections/s | cycle p50 µs | cycle p99 µs | server CPU µs/connection | connections per server CPU-second | vs protocol |"
echo "|---|---:|---:|---:|---:|---:|---:|"
labels=""
for name in "${servers[@]}"; do labels+="$name=$(label_of "$name");"; done
awk -v labels="$labels" '
    BEGIN { n = split(labels, pairs, ";"); for (i = 1; i <= n; i++) if (split(pairs[i], kv, "=") == 2) label[kv[1]] = kv[2] }
    { rows[NR] = $0; if ($1 == "ours" && $2 != "FAILED") base = $6 }
    END {
        for (i = 1; i <= NR; i++) {
            split(rows[i], f, " ")
            if (f[2] == "FAILED") { printf "| %s | failed | | | | | |\n", label[f[1]]; continue }
            printf "| %s | %.0f | %.1f | %.1f | %.2f | %.0f | %s |\n", label[f[1]], f[2], f[3], f[4], f[5], f[6],
                base ? sprintf("%.2f", f[6] / base) : "n/a"
        }
    }
' "$results"
echo
echo "Medians of the repetitions, column by column. A cycle is one client's socket() to the last"
echo "byte of its echo. vs protocol: connections per server CPU-second over swift-asyncio's"
echo "protocol server's (above 1: cheaper per connection). Took ${elapsed} s."

chart="$chart_dir/run-churn-bench-$size"
awk -v labels="$labels" '
    BEGIN { n = split(labels, pairs, ";"); for (i = 1; i <= n; i++) if (split(pairs[i], kv, "=") == 2) label[kv[1]] = kv[2] }
    $2 != "FAILED" { printf "%s\t%.2f\n", label[$1], $5 }
' "$results" | chart_tsv "$chart.tsv" \
    "Server CPU µs per connection (connect, one $size-byte echo, close), lower is better" \
    "run-churn-bench.sh, $(date -u '+%Y-%m-%d'), $(nproc) CPUs, $clients clients, median of $repeats; $(tree_line)" \
    linear "server CPU µs / connection"
draw_chart "$chart.tsv" "$chart.svg"
print_notes
