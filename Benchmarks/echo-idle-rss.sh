#!/usr/bin/env bash
# Server memory per idle connection: RSS before and after opening many connections that send
# nothing, and after one 16-byte echo on each.
#
#   Benchmarks/echo-idle-rss.sh [--connections 5000] [--servers "ours ours-streams c nio asyncio uvloop"]
#
# For each server: start it, read VmRSS from /proc/PID/status; open --connections
# connections with `loadgen --idle` (which sends nothing) and wait until the server holds
# them all (its open file descriptors have grown by that many, so every one was accepted),
# let it settle for a second and read VmRSS again; then have every connection echo 16 bytes
# (loadgen verifies them), settle, and read VmRSS a third time. The table gives the
# growth per connection after accepting and after the echo (a server that allocates its read
# buffers lazily shows it only in the second figure). The raised open-file limit (ulimit -n)
# is inherited by the server and the load generator. Kernel memory (socket buffers, the
# socket itself) is not in RSS and not in these figures.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/echo/lib.sh"

connections=5000
ECHO_SERVERS="${ECHO_SERVERS:-ours ours-streams c nio asyncio uvloop}"
while (($#)); do
    case "$1" in
        --connections) connections="$2"; shift 2 ;;
        --servers) ECHO_SERVERS="$2"; shift 2 ;;
        --unix) export ECHO_TRANSPORT=unix; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
want_fds=$((connections + 200))
hard="$(ulimit -Hn)"
if [[ "$hard" != unlimited ]] && ((hard < want_fds)); then
    ulimit -Hn "$want_fds" 2>/dev/null || { echo "cannot raise the open-file limit to $want_fds (hard limit $hard)" >&2; exit 1; }
fi
ulimit -n "$want_fds"
prepare_servers
export SWIFT_BACKTRACE=enable=no

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

wait_for() {  # wait_for TIMEOUT_S COMMAND...: until COMMAND succeeds; 1 on timeout
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS <= deadline)) || return 1
        sleep 0.1
    done
}
fds_at_least() { (($(fd_count "$server_pid") >= $1)); }
line_in() { grep -q "^$1" "$2"; }

started_at=$SECONDS
results="$work_dir/results"
: >"$results"
for name in "${servers[@]}"; do
    label="$(label_of "$name")"
    log "$label: $connections idle connections ..."
    server_command "$name"
    if ! start_server "rss-$name" 60 "${server_cmd[@]}"; then
        note "$label did not start"
        echo "$name FAILED" >>"$results"
        continue
    fi
    sleep 1
    fds_before="$(fd_count "$server_pid")"
    rss_before="$(rss_kib "$server_pid")"
    client_out="$work_dir/idle-$name.out"
    bg_start "$client_out" "$tools_dir/loadgen" "${server_addr[@]}" --idle "$connections" --hold 240
    client_pid="$bg_pid"
    ok=1
    if ! wait_for 120 line_in connected "$client_out"; then
        note "$label: could not open $connections connections: $(tail -n 2 "$client_out" | tr '\n' ' ')"; ok=0
    elif ! wait_for 60 fds_at_least $((fds_before + connections)); then
        note "$label: holds $(($(fd_count "$server_pid") - fds_before)) of $connections connections after 60 s"; ok=0
    fi
    if [[ $ok == 1 ]]; then
        sleep 1
        rss_idle="$(rss_kib "$server_pid")"
        kill -USR1 "$client_pid"
        if ! wait_for 120 line_in pinged "$client_out"; then
            note "$label: the echo on every idle connection failed: $(tail -n 2 "$client_out" | tr '\n' ' ')"; ok=0
        else
            sleep 1
            rss_pinged="$(rss_kib "$server_pid")"
        fi
    fi
    kill -TERM "$client_pid" 2>/dev/null || true
    wait "$client_pid" 2>/dev/null || true
    if ! kill -0 "$server_pid" 2>/dev/null; then
        note "$label: the server died: $(tail -n 5 "$work_dir/rss-$name.err" | tr '\n' ' ')"; ok=0
    fi
    stop_server 20
    [[ "$server_status" == "exit 0" ]] || note "$label: after SIGTERM: $server_status"
    if [[ $ok == 1 ]]; then
        echo "$name $rss_before $rss_idle $rss_pinged" >>"$results"
        log "  RSS KiB: before $rss_before, $connections idle $rss_idle, after one echo each $rss_pinged"
    else
        echo "$name FAILED" >>"$results"
    fi
done
elapsed=$((SECONDS - started_at))

echo
machine_line
echo "$connections idle loopback TCP connections per server"
echo
echo "| server | RSS before, KiB | RSS with idle connections, KiB | bytes / idle connection | RSS after one echo each, KiB | bytes / connection after one echo |"
echo "|---|---:|---:|---:|---:|---:|"
while read -r name before idle pinged; do
    label="$(label_of "$name")"
    if [[ "$before" == FAILED ]]; then echo "| $label | failed | | | | |"; continue; fi
    awk -v l="$label" -v b="$before" -v i="$idle" -v p="$pinged" -v n="$connections" \
        'BEGIN { printf "| %s | %d | %d | %.0f | %d | %.0f |\n", l, b, i, (i - b) * 1024 / n, p, (p - b) * 1024 / n }'
done <"$results"
echo
echo "bytes / connection: growth of the server's resident set (VmRSS) divided by the number of"
echo "connections; user-space memory only (kernel socket buffers are not in RSS)."
echo "Took ${elapsed} s."
print_notes
