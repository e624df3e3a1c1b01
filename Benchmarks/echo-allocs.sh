#!/usr/bin/env bash
# Heap allocations per echoed message: each server runs with echo/malloc_count.c preloaded
# (it counts malloc, calloc, realloc and the aligned allocators, and prints the counts when
# the process exits normally).
#
#   Benchmarks/echo-allocs.sh [--connections 10] [--messages 100000] [--size 1024]
#       [--servers "ours ours-streams c nio asyncio uvloop"] [--unix | --udp | --tls]
#
# For each server, two runs, each ended by SIGTERM (the servers exit normally on it):
#   idle:   start, --connections connections that each echo one message and close, SIGTERM;
#   loaded: start, the same connections echoing --messages messages in all, SIGTERM.
# (loaded - idle) / (messages(loaded) - messages(idle)) is the number of allocations one
# echoed message costs, with start-up, connection set-up and tear-down and shut-down
# cancelled out. Python servers run with PYTHONMALLOC=malloc, so that the objects pymalloc
# would carve out of its arenas are malloc calls too and their figure compares with the
# others. --unix serves over Unix stream sockets; --udp echoes UDP datagrams instead
# (udp-echo-server and the UDP servers of echo/lib.sh, loaded by echo/udp_loadgen.c: each
# "connection" is a client socket, each message a datagram); --tls echoes over TLS instead
# (tls-echo-server and the TLS servers of echo/lib.sh, default "ours c nio uvloop", loaded by
# echo/tls_loadgen.c; the 10 handshakes are in both runs and cancel out. OpenSSL's and
# BoringSSL's allocations count, they go through malloc; Go's heap does not, so its row
# would read 0 and is left out).
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/echo/lib.sh"

connections=10 messages=100000 size=1024
servers_given="${ECHO_SERVERS:-}"
while (($#)); do
    case "$1" in
        --connections) connections="$2"; shift 2 ;;
        --messages) messages="$2"; shift 2 ;;
        --size) size="$2"; shift 2 ;;
        --servers) servers_given="$2"; shift 2 ;;
        --unix) export ECHO_TRANSPORT=unix; shift ;;
        --udp) export ECHO_TRANSPORT=udp; shift ;;
        --tls) export ECHO_TRANSPORT=tls; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
((messages > connections)) || { echo "--messages must be more than --connections" >&2; exit 2; }
if [[ "${ECHO_TRANSPORT:-tcp}" == tls ]]; then
    ECHO_SERVERS="${servers_given:-ours c nio uvloop}"
    if [[ " $ECHO_SERVERS " == *" go "* ]]; then
        echo "note: Go's heap does not go through malloc; its row would count nothing" >&2
    fi
else
    ECHO_SERVERS="${servers_given:-ours ours-streams c nio asyncio uvloop}"
fi
prepare_servers
export SWIFT_BACKTRACE=enable=no PYTHONHASHSEED=0

# One run: allocs_run NAME KIND MESSAGES; sets run_counts to "ALLOCATIONS FREES".
allocs_run() {
    local name="$1" kind="$2" count="$3"
    server_command "$name"
    local env_args=(env "LD_PRELOAD=$tools_dir/malloc_count.so")
    case "$name" in asyncio* | uvloop*) env_args+=(PYTHONMALLOC=malloc) ;; esac
    if ! start_server "alloc-$name-$kind" 60 "${env_args[@]}" "${server_cmd[@]}"; then
        note "$(label_of "$name"): did not start with malloc_count preloaded"
        return 1
    fi
    local line
    if ! line="$(timeout 300 "$loadgen" "${server_addr[@]}" \
        --connections "$connections" --size "$size" --messages "$count" --timeout 240 \
        2>"$work_dir/loadgen.err")"; then
        note "$(label_of "$name") ($kind run): load failed: $(tail -n 3 "$work_dir/loadgen.err" | tr '\n' ' ')"
        stop_server 10
        return 1
    fi
    log "  $kind: $line"
    stop_server 30
    if [[ "$server_status" != "exit 0" ]]; then
        note "$(label_of "$name") ($kind run): after SIGTERM: $server_status"
    fi
    local report
    report="$(grep "^malloc_count: .* pid=$server_pid\$" "$work_dir/alloc-$name-$kind.err" | tail -n1)"
    if [[ -z "$report" ]]; then
        note "$(label_of "$name") ($kind run): no malloc_count line (the server did not exit normally)"
        return 1
    fi
    run_counts="$(result_field "$report" allocations) $(result_field "$report" frees)"
}

started_at=$SECONDS
results="$work_dir/results"
: >"$results"
for name in "${servers[@]}"; do
    log "$(label_of "$name"): idle run, then $messages messages ..."
    allocs_run "$name" idle "$connections" || { echo "$name FAILED" >>"$results"; continue; }
    read -r idle_allocs idle_frees <<<"$run_counts"
    allocs_run "$name" loaded "$messages" || { echo "$name FAILED" >>"$results"; continue; }
    read -r loaded_allocs loaded_frees <<<"$run_counts"
    echo "$name $idle_allocs $loaded_allocs $idle_frees $loaded_frees $((messages - connections))" >>"$results"
done
elapsed=$((SECONDS - started_at))

echo
machine_line
if [[ "${ECHO_TRANSPORT:-tcp}" == tls ]]; then
    echo "Load: TLS 1.3 (TLS_AES_128_GCM_SHA256), $connections connections x $size-byte messages, pipeline 1, $messages messages (loaded run)"
elif [[ "${ECHO_TRANSPORT:-tcp}" == udp ]]; then
    echo "Load: UDP, $connections sockets x $size-byte datagrams, pipeline 1, $messages datagrams (loaded run)"
else
    echo "Load: $connections connections x $size-byte messages, pipeline 1, $messages messages (loaded run)"
fi
echo
echo "| server | allocations / message | frees / message | loaded run allocations | idle run allocations |"
echo "|---|---:|---:|---:|---:|"
while read -r name idle_allocs loaded_allocs idle_frees loaded_frees count; do
    label="$(label_of "$name")"
    case "$name" in asyncio* | uvloop*) label+=" (PYTHONMALLOC=malloc)" ;; esac
    if [[ "$idle_allocs" == FAILED ]]; then echo "| $label | failed | | | |"; continue; fi
    awk -v l="$label" -v ia="$idle_allocs" -v la="$loaded_allocs" -v if_="$idle_frees" -v lf="$loaded_frees" -v n="$count" \
        'function z(v) { return (v < 0.005 && v > -0.005) ? 0 : v }
         BEGIN { printf "| %s | %.2f | %.2f | %d | %d |\n", l, z((la - ia) / n), z((lf - if_) / n), la, ia }'
done <"$results"
echo
echo "Allocations: malloc + calloc + realloc + aligned allocations in the whole server process,"
echo "per echoed message, from (loaded - idle) runs."
echo "Took ${elapsed} s."
print_notes
