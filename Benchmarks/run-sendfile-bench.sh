#!/usr/bin/env bash
# Static-file throughput: a file (1 GiB by default) served to a local client over loopback
# TCP by swift-asyncio's `sendfile` beside C's sendfile(2), a C read/write copy loop, and
# Python's asyncio and uvloop `loop.sendfile`, in one run.
#
#   Benchmarks/run-sendfile-bench.sh [--size-mib N] [--repeats N]
#       [--servers "c-sendfile c-copy ours asyncio uvloop"]
#
#   c-sendfile  sendfile/sendfile_peer.c: a blocking sendfile(2) loop (the reference)
#   c-copy      the same server reading 256 KiB with read(2) and writing it with write(2)
#   ours        Sources/SendfileServer: `writer.sendfile(file:)` on a streams connection
#               (sendfile(2) on the non-blocking socket, 4 MiB per loop wake-up)
#   asyncio     sendfile/py_sendfile_server.py: `loop.sendfile` (os.sendfile on the socket)
#   uvloop      the same server on uvloop, which has no loop.sendfile: 256 KiB read,
#               write, await drain()
#
# The file is made once (random bytes) in $TMPDIR and read once so it sits in the page cache.
# Each server runs pinned to CPU 0, the client (sendfile_peer.c client: read(2) into a 1 MiB
# buffer to EOF, every byte counted) to CPU 1. Servers are loaded in turn, round after round,
# --repeats rounds (default 5): one connection fetching the whole file per repetition; the
# server's CPU time (utime + stime from /proc/PID/stat) is read before and after. The table
# has the medians: throughput as the client saw it, server CPU seconds per GiB, and
# throughput relative to C's sendfile(2).
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/echo/lib.sh"

size_mib=1024 repeats=5 servers="c-sendfile c-copy ours asyncio uvloop"
while (($#)); do
    case "$1" in
        --size-mib) size_mib="$2"; shift 2 ;;
        --repeats) repeats="$2"; shift 2 ;;
        --servers) servers="$2"; shift 2 ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

peer="$tools_dir/sendfile_peer"
mkdir -p "$tools_dir"
if [[ ! -x "$peer" || "$bench_dir/sendfile/sendfile_peer.c" -nt "$peer" ]]; then
    gcc -O2 -Wall -o "$peer" "$bench_dir/sendfile/sendfile_peer.c"
fi
file="${TMPDIR:-/tmp}/sendfile-bench-${size_mib}MiB.bin"
if [[ ! -f "$file" || $(stat -c %s "$file") -ne $((size_mib << 20)) ]]; then
    log "Making $file ($size_mib MiB)..."
    head -c $((size_mib << 20)) /dev/urandom >"$file"
fi
cat "$file" >/dev/null   # into the page cache
size=$((size_mib << 20))

ours_bin=""
command_of() {
    case "$1" in
        c-sendfile) echo "$peer server-sendfile 0 $file" ;;
        c-copy) echo "$peer server-copy 0 $file" ;;
        ours) echo "$ours_bin 0 $file" ;;
        asyncio) echo "$(python_exe) $bench_dir/sendfile/py_sendfile_server.py 0 $file" ;;
        uvloop) echo "$(python_exe) $bench_dir/sendfile/py_sendfile_server.py 0 $file --uvloop" ;;
        *) return 1 ;;
    esac
}

declare -A pid_of port_of
active=()
for name in $servers; do
    case "$name" in
        ours) ours_bin="$(build_bench_product sendfile-server)" || continue ;;
        uvloop) ensure_uvloop || continue ;;
    esac
    command="$(command_of "$name")" || { note "unknown server $name"; continue; }
    # shellcheck disable=SC2086
    bg_start "$work_dir/$name.out" taskset -c 0 $command
    pid_of[$name]=$bg_pid
    for _ in $(seq 100); do
        grep -q "listening on" "$work_dir/$name.out" 2>/dev/null && break
        sleep 0.1
    done
    port="$(sed -n 's/.*listening on [^:]*:\([0-9]*\).*/\1/p' "$work_dir/$name.out" | head -1)"
    [[ -n "$port" ]] || { note "$name did not start: $(head -c 300 "$work_dir/$name.out")"; continue; }
    port_of[$name]=$port
    active+=("$name")
done

total=$((repeats * ${#active[@]})) cell=0 started=$SECONDS
for round in $(seq "$repeats"); do
    for name in "${active[@]}"; do
        cell=$((cell + 1))
        left=""
        if ((cell > 1)); then left=", ~$(((SECONDS - started) * (total - cell + 1) / (cell - 1))) s left"; fi
        log "cell $cell of $total: $name, round $round$left"
        before="$(cpu_us "${pid_of[$name]}")"
        if ! result="$(taskset -c 1 "$peer" client "${port_of[$name]}" "$size")"; then
            note "$name sent ${result%% *} bytes of $size in round $round"
            continue
        fi
        after="$(cpu_us "${pid_of[$name]}")"
        seconds="${result#* }"
        echo "$name $(awk -v b="$size" -v s="$seconds" 'BEGIN { printf "%.4f", b / s / 1073741824 }') \
$(awk -v c=$((after - before)) -v b="$size" 'BEGIN { printf "%.4f", c / 1e6 / (b / 1073741824) }')" >>"$work_dir/results"
    done
done

machine_line
tree_line
echo "File: $size_mib MiB from the page cache, one connection per repetition, median of $repeats"
echo
printf '| %-10s | %12s | %18s | %14s |\n' server "GiB/s" "server CPU s/GiB" "× C sendfile"
printf '|%s|%s|%s|%s|\n' ------------ -------------: -------------------: ---------------:
reference=""
for name in "${active[@]}"; do
    rate="$(awk -v n="$name" '$1 == n { print $2 }' "$work_dir/results" | median)"
    cpu="$(awk -v n="$name" '$1 == n { print $3 }' "$work_dir/results" | median)"
    [[ -n "$rate" ]] || continue
    [[ "$name" == c-sendfile ]] && reference="$rate"
    ratio="$([[ -n "$reference" ]] && awk -v r="$rate" -v c="$reference" 'BEGIN { printf "%.2f", r / c }' || echo "-")"
    printf '| %-10s | %12.2f | %18.3f | %14s |\n' "$name" "$rate" "$cpu" "$ratio"
done
print_notes
