#!/usr/bin/env bash
# TLS echo throughput, latency and server CPU per request, and full handshakes per second of
# server CPU: swift-asyncio's tls-echo-server beside a C + OpenSSL baseline, SwiftNIO +
# NIOSSL, Go's crypto/tls and uvloop, on loopback, on this machine, in one run.
#
#   Benchmarks/run-tls-bench.sh [--duration SEC | --messages M] [--repeats N]
#       [--connections N] [--sizes "1024"] [--pipeline D] [--rate R] [--warmup SEC]
#       [--handshake-duration SEC] [--handshake-connections N] [--no-handshakes] [--no-echo]
#       [--servers "ours c nio go uvloop"] [--quiet-wait SEC]
#
# Every server speaks TLS with Certificates/server.crt and .key (EC P-256) and its own default
# settings (session tickets on everywhere); the load generator, echo/tls_loadgen.c (OpenSSL),
# offers TLS 1.3 with TLS_AES_128_GCM_SHA256 and an X25519 key share only, so every server
# negotiates the same; the table's header says what was negotiated (checked on every run).
# Servers: ours (tls-echo-server), c (echo/c_tls_echo_server.c), nio (nio-tls-echo-server),
# go (echo/go_tls_echo_server.go), uvloop and asyncio (py_echo_server.py --tls); see lib.sh.
#
# Each server runs pinned to CPU 0 and the load generator to CPU 1. Two phases, each with all
# servers started at once and warmed up (--warmup, 1 s), then --repeats rounds (5) going over
# the servers in turn (so that a drift of the machine falls on all of them alike), the
# server's CPU time (utime + stime, all threads, /proc/PID/stat) read before and after each
# repetition; the tables have the medians of the repetitions, column by column:
#   echo:       for each of --sizes (1024), --connections (10) connections, each handshaken
#               once, send messages (one TLS record each up to 16 KiB) with --pipeline (1) in
#               flight for --duration (5) seconds or --messages in total; every decrypted byte
#               is checked. By default a closed loop (each connection sends its next message
#               when the echo is back, so server and tls_loadgen are both busy nearly all the
#               time and CPU/request is close to 1 / req/s); --rate R makes it an open loop
#               at R messages per second in all (tls_loadgen --rate), below what every server
#               sustains, so that CPU/request is the server's cost at the same load.
#   handshakes: --handshake-connections (10) slots, each in a loop: connect, full handshake
#               (never resumed), close_notify, wait for the server's close, close; for
#               --handshake-duration (5) seconds.
# The server's resident memory (VmRSS) is read after the warm-up and after the phase's last
# repetition: a server that keeps growing over thousands of connections gets a note. So does
# a server that echoes a wrong byte, fails a handshake, closes or resets a connection it
# should not, leaves a connection open after the client's close_notify (5 s), crashes or does
# not exit on SIGTERM. Before each repetition the script waits up to --quiet-wait seconds
# (120) for the machine to be quiet (under 10% of a CPU busy for half a second) and notes
# repetitions that other processes disturbed all the same.
#
# Our server is built with `swift build -c release --product tls-echo-server --scratch-path
# .build-bench` in the repository; OURS_BIN=path uses a given binary; NO_BUILD=1 builds
# nothing; PYTHON picks the interpreter; GO the Go compiler.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/echo/lib.sh"
export ECHO_TRANSPORT=tls

duration=5 messages="" repeats=5 connections=10 sizes="1024" pipeline=1 warmup=1 quiet_wait=120 rate=""
hs_duration=5 hs_connections=10 do_handshakes=1 do_echo=1
while (($#)); do
    case "$1" in
        --duration) duration="$2"; messages=""; shift 2 ;;
        --messages) messages="$2"; duration=""; shift 2 ;;
        --repeats) repeats="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        --sizes) sizes="$2"; shift 2 ;;
        --pipeline) pipeline="$2"; shift 2 ;;
        --rate) rate="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --handshake-duration) hs_duration="$2"; shift 2 ;;
        --handshake-connections) hs_connections="$2"; shift 2 ;;
        --no-handshakes) do_handshakes=0; shift ;;
        --no-echo) do_echo=0; shift ;;
        --quiet-wait) quiet_wait="$2"; shift 2 ;;
        --servers) ECHO_SERVERS="$2"; shift 2 ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

prepare_servers
tree="$(tree_line)"   # what the binaries were built from (the tree may change during the run)
pin_cpus
if [[ -n "$messages" ]]; then
    load_args=(--messages "$messages") load_timeout=300
else
    load_args=(--duration "$duration") load_timeout=$(awk -v d="$duration" 'BEGIN { print int(d + 60) }')
fi
rate_args=()
[[ -n "$rate" ]] && rate_args=(--rate "$rate")
hs_timeout=$(awk -v d="$hs_duration" 'BEGIN { print int(d + 60) }')
expected_tls="protocol=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256 group=X25519"

size_label() {
    local s="$1"
    if ((s % 1048576 == 0)); then echo "$((s / 1048576)) MiB"
    elif ((s % 1024 == 0)); then echo "$((s / 1024)) KiB"
    else echo "$s B"; fi
}

# rss_kib PID: VmRSS of process PID in KiB; nothing (and status 0, so that set -e does not
# end the run) once the process is gone, e.g. a server that died.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

# Each server's RSS after its warm-up and at the end of the phase (hooks of echo/lib.sh's
# rounds, which also end the note of a server that did not exit 0 with its stderr).
declare -A rss_start_of rss_end_of
rss_after_warm_up() { rss_start_of[$1]="$(rss_kib "$server_pid")"; }
rss_before_stop() { rss_end_of[$1]="$(rss_kib "$server_pid")"; }
rounds_ready_fn=rss_after_warm_up rounds_stopping_fn=rss_before_stop rounds_stop_stderr=3

# run_load NAME PHASE: one tls_loadgen run against server NAME; prints its line. Notes (does
# not fail on) an unexpected negotiation, resets, EOFs without close_notify and connections
# the server left open.
run_load() {
    local name="$1" phase="$2" line addr=()
    read -r -a addr <<<"${addr_of[$name]}"
    if [[ "$phase" == handshake ]]; then
        line="$(timeout $((hs_timeout + 30)) "${pin_load[@]}" "$loadgen" "${addr[@]}" --handshakes \
            --connections "$hs_connections" --duration "$hs_duration" --timeout "$hs_timeout" \
            2>"$work_dir/loadgen.err")" || return 1
    else
        line="$(timeout $((load_timeout + 30)) "${pin_load[@]}" "$loadgen" "${addr[@]}" \
            --connections "$connections" --pipeline "$pipeline" --timeout "$load_timeout" \
            --size "$size" "${load_args[@]}" "${rate_args[@]}" 2>"$work_dir/loadgen.err")" || return 1
    fi
    local label negotiated
    label="$(label_of "$name") ($phase_label)"
    negotiated="protocol=$(result_field "$line" protocol) cipher=$(result_field "$line" cipher) group=$(result_field "$line" group)"
    [[ "$negotiated" == "$expected_tls" ]] || note "$label: negotiated $negotiated (expected $expected_tls)"
    local eof reset open
    eof="$(result_field "$line" closed_eof)" reset="$(result_field "$line" closed_reset)"
    open="$(result_field "$line" not_closed)"
    ((${eof:-0} > 0)) && note "$label: $eof connections closed with a bare EOF after our close_notify (no close_notify back)"
    ((${reset:-0} > 0)) && note "$label: $reset connections reset after our close_notify"
    ((${open:-0} > 0)) && note "$label: $open connections still open 5 s after our close_notify"
    if grep -q 'warning' "$work_dir/loadgen.err"; then note "$label: $(tr '\n' ' ' <"$work_dir/loadgen.err")"; fi
    echo "$line"
}

fail_server() {  # fail_server NAME WHY: the rest of this phase skips it
    local name="$1" why="$2" label
    label="$(label_of "$name")"
    state_of[$name]=failed
    note "$label ($phase_label): $why: $(tail -n 3 "$work_dir/loadgen.err" | tr '\n' ' ')"
    if ! kill -0 "${pid_of[$name]}" 2>/dev/null; then
        note "$label ($phase_label): server died; its stderr ends with: $(tail -n 5 "$work_dir/$name-$phase.err" | tr '\n' ' ')"
    fi
}

# One repetition against server NAME in the current phase. Appends to $work_dir/reps.NAME:
#   echo:      "req/s MB/s p50 p99 cpu_us/req other% steal%"
#   handshake: "hs/s cpu_us/hs hs_per_cpu_s p50_ms p99_ms other% steal%"
measure() {
    local name="$1" before after busy_before busy_after steal_before steal_after line count seconds
    local pid="${pid_of[$name]}"
    before="$(cpu_us "$pid")" || { fail_server "$name" "server gone"; return; }
    read -r busy_before steal_before < <(machine_cpu_us)
    if ! line="$(run_load "$name" "$phase")"; then fail_server "$name" "load failed"; return; fi
    read -r busy_after steal_after < <(machine_cpu_us)
    after="$(cpu_us "$pid")" || { fail_server "$name" "server gone"; return; }
    seconds="$(result_field "$line" seconds)"
    local other_pct steal_pct
    other_pct="$(awk -v busy=$((busy_after - busy_before)) -v server=$((after - before)) \
        -v load="$(result_field "$line" loadgen_cpu_us)" -v s="$seconds" \
        'BEGIN { v = (busy - server - load) / (s * 1e6) * 100; printf "%.0f", v < 0 ? 0 : v }')"
    steal_pct="$(awk -v d=$((steal_after - steal_before)) -v s="$seconds" 'BEGIN { printf "%.0f", d / (s * 1e6) * 100 }')"
    if [[ "$phase" == handshake ]]; then
        count="$(result_field "$line" handshakes)"
        ((count > 0)) || { fail_server "$name" "no handshake completed"; return; }
        awk -v hs="$(result_field "$line" handshakes_per_s)" -v a="$after" -v b="$before" -v n="$count" \
            -v p50="$(result_field "$line" p50_us)" -v p99="$(result_field "$line" p99_us)" \
            -v o="$other_pct" -v st="$steal_pct" \
            'BEGIN { cpu = (a - b) / n; printf "%s %.1f %.0f %.2f %.2f %s %s\n", hs, cpu, (cpu > 0 ? 1e6 / cpu : 0), p50 / 1000, p99 / 1000, o, st }' \
            >>"$work_dir/reps.$name"
        awk -v t="$(result_field "$line" tickets)" -v n="$count" 'BEGIN { printf "%.2f\n", t / n }' >"$work_dir/tickets.$name"
    else
        count="$(result_field "$line" messages)"
        awk -v a="$after" -v b="$before" -v n="$count" -v line="$line" \
            -v rq="$(result_field "$line" req_per_s)" -v mb="$(result_field "$line" mb_per_s)" \
            -v p50="$(result_field "$line" p50_us)" -v p99="$(result_field "$line" p99_us)" \
            -v o="$other_pct" -v st="$steal_pct" \
            'BEGIN { printf "%s %s %s %s %.2f %s %s\n", rq, mb, p50, p99, (a - b) / n, o, st }' \
            >>"$work_dir/reps.$name"
    fi
    log "  $(label_of "$name"): $line server_cpu_us=$((after - before)) other_cpu=${other_pct}% steal=${steal_pct}%"
}

warm_up() {  # warm_up NAME: the warm-up of rounds_start, a load of $warmup seconds in this phase
    local hs_duration="$warmup" load_args=(--duration "$warmup")   # what run_load reads
    run_load "$1" "$phase" >/dev/null || fail_server "$1" "warm-up failed"
}

# The row of server NAME after its five medians (of rounds_finish): the smallest and largest
# req/s (handshakes/s) and CPU per request (per handshake) of its repetitions, and its RSS
# after the warm-up and at the end; and a note if other processes disturbed a repetition.
row_extras() {  # row_extras NAME REPS_FILE
    local cpu_col=5   # CPU per request (echo) or per handshake
    [[ "$phase" == handshake ]] && cpu_col=2
    rounds_note_disturbed "$1" "$2" 6 7
    echo "$(column_range "$2" 1) $(column_range "$2" "$cpu_col") ${rss_start_of[$1]:-0} ${rss_end_of[$1]:-0}"
}

results_echo="$work_dir/results.echo" results_hs="$work_dir/results.handshake"
: >"$results_echo"
: >"$results_hs"

# run_phase PHASE: echo (for $size) or handshake, with the rounds of echo/lib.sh: all servers
# started and warmed up, --repeats rounds going round them, then each one's row in
# $work_dir/results.PHASE, keyed by the size (0 for handshakes).
run_phase() {
    phase="$1"
    if [[ "$phase" == handshake ]]; then phase_label="handshakes"; else phase_label="echo $(size_label "$size")"; fi
    results="$work_dir/results.$phase"
    rounds_start warm_up "$phase" "$phase_label" "${size:-0}"
    rounds_run measure
    rounds_finish 5 row_extras
}

started_at=$SECONDS
if ((do_echo)); then
    for size in $sizes; do run_phase echo; done
fi
size=0
if ((do_handshakes)); then run_phase handshake; fi
elapsed=$((SECONDS - started_at))

nio_ssl_version="$(awk '/"identity" : "swift-nio-ssl"/ { f = 1 } f && /"version"/ { gsub(/[",]/, "", $3); print $3; exit }' "$bench_dir/Package.resolved" 2>/dev/null || true)"   # no Package.resolved when NIO was not built
go_version=""
if [[ -n "$go_bin" ]]; then go_version="$("${GO:-go}" version 2>/dev/null | awk '{ print $3 }')" || true; fi
labels=""
for name in "${servers[@]}"; do labels+="$name=$(label_of "$name");"; done

echo
machine_line
echo "$tree"
echo "Versions: $(swift --version 2>/dev/null | head -n1 | sed 's/ (.*//'), $(openssl version 2>/dev/null | awk '{ print $1, $2 }') (ours, C, tls_loadgen, Python), NIOSSL ${nio_ssl_version:-?} (BoringSSL), ${go_version:-no Go}, $("$python" --version 2>&1)$(
    [[ $have_uvloop == 1 ]] && echo ", uvloop $("$python" -c 'import uvloop; print(uvloop.__version__)')")"
echo "TLS: TLS 1.3, TLS_AES_128_GCM_SHA256, X25519, ECDSA P-256 certificate (as negotiated on every run); server on CPU 0, tls_loadgen on CPU 1; median of $repeats"

if ((do_echo)); then
    if [[ -n "$messages" ]]; then what="$messages messages"; else what="${duration} s"; fi
    echo
    if [[ -n "$rate" ]]; then loop="open loop at $rate messages/s"; else loop="closed loop"; fi
    echo "Echo: $connections connections, pipeline $pipeline, $loop, $what per repetition"
    echo
    echo "| size | server | req/s | MB/s | p50 µs | p99 µs | server CPU µs/request | req/s vs ours | CPU/request vs ours | req/s min–max | CPU/request min–max |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -v labels="$labels" '
        BEGIN {
            n = split(labels, pairs, ";")
            for (i = 1; i <= n; i++) if (split(pairs[i], kv, "=") == 2) label[kv[1]] = kv[2]
        }
        { rows[NR] = $0; if ($2 == "ours" && $3 != "FAILED") { o_req[$1] = $3; o_cpu[$1] = $7 } }
        function size_label(s) {
            if (s % 1048576 == 0) return (s / 1048576) " MiB"
            if (s % 1024 == 0) return (s / 1024) " KiB"
            return s " B"
        }
        function ratio(a, b) { return (b == "" || b == 0) ? "n/a" : sprintf("%.2f", a / b) }
        END {
            for (i = 1; i <= NR; i++) {
                split(rows[i], f, " ")
                if (f[3] == "FAILED") { printf "| %s | %s | failed | | | | | | | | |\n", size_label(f[1]), label[f[2]]; continue }
                printf "| %s | %s | %.0f | %.1f | %.1f | %.1f | %.2f | %s | %s | %.0f–%.0f | %.2f–%.2f |\n", size_label(f[1]), label[f[2]],
                    f[3], f[4], f[5], f[6], f[7], ratio(f[3], o_req[f[1]]), ratio(f[7], o_cpu[f[1]]), f[8], f[9], f[10], f[11]
            }
        }
    ' "$results_echo"
fi
if ((do_handshakes)); then
    echo
    echo "Handshakes: $hs_connections connection slots, each connect / full handshake / close_notify / server's close, ${hs_duration} s per repetition"
    echo
    echo "| server | handshakes/s | server CPU µs/handshake | handshakes per server CPU second | handshakes/s vs ours | per CPU second vs ours | p50 ms | p99 ms | handshakes/s min–max | CPU/handshake min–max | RSS KiB after warm-up → end |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -v labels="$labels" '
        BEGIN {
            n = split(labels, pairs, ";")
            for (i = 1; i <= n; i++) if (split(pairs[i], kv, "=") == 2) label[kv[1]] = kv[2]
        }
        { rows[NR] = $0; if ($2 == "ours" && $3 != "FAILED") { o_hs = $3; o_per = $5 } }
        function ratio(a, b) { return (b == "" || b == 0) ? "n/a" : sprintf("%.2f", a / b) }
        END {
            for (i = 1; i <= NR; i++) {
                split(rows[i], f, " ")
                if (f[3] == "FAILED") { printf "| %s | failed | | | | | | | | | |\n", label[f[2]]; continue }
                printf "| %s | %.0f | %.1f | %.0f | %s | %s | %.2f | %.2f | %.0f–%.0f | %.1f–%.1f | %d → %d |\n", label[f[2]],
                    f[3], f[4], f[5], ratio(f[3], o_hs), ratio(f[5], o_per), f[6], f[7], f[8], f[9], f[10], f[11], f[12], f[13]
            }
        }
    ' "$results_hs"
    tickets_line=""
    for name in "${servers[@]}"; do
        [[ -s "$work_dir/tickets.$name" ]] && tickets_line+="${tickets_line:+, }$(label_of "$name") $(cat "$work_dir/tickets.$name")"
    done
    echo
    echo "Session tickets a server sends per handshake (tls_loadgen counts and drops them): $tickets_line."
fi
echo
echo "Medians of the repetitions, column by column. vs ours: the server's figure divided by"
echo "swift-asyncio's (req/s and handshakes per CPU second above 1: the other server does more;"
echo "CPU/request above 1: it costs more than ours). Server CPU is user + system time of the"
echo "whole server process (kernel TCP work in its syscalls included, softirq not). Handshakes/s"
echo "is bounded by tls_loadgen, whose OpenSSL client costs more CPU per handshake than most"
echo "servers: compare servers by CPU per handshake. min–max: the spread of the repetitions;"
echo "differences between rows smaller than it are noise."
echo "Took ${elapsed} s."
print_notes
