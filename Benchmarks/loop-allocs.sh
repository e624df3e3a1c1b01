#!/usr/bin/env bash
# Heap allocations per operation of the loop micro-benchmarks, swift-asyncio beside asyncio and
# uvloop: loop-bench and loop_bench.py run with echo/malloc_count.c preloaded (every malloc,
# calloc, realloc and aligned allocation of the whole process, all threads), each benchmark
# twice with a different number of units (`--units`, no calibration, no warm-up), and
# (allocations(high) - allocations(low)) / (operations(high) - operations(low)) is what one
# operation allocates, with start-up and shut-down cancelled out.
#
#   Benchmarks/loop-allocs.sh [--only NAME] [--no-python]
#
# Python runs with PYTHONMALLOC=malloc, so the objects pymalloc would carve out of its arenas
# are malloc calls too (as in echo-allocs.sh); Swift objects are malloc calls anyway. A figure
# like 2.00 means two allocations per operation, each with its free. PYTHON picks the
# interpreter (default python3); uvloop is skipped if it cannot be imported. NO_BUILD=1 uses
# the loop-bench already built.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/echo/lib.sh"   # building, $python, $work_dir
only="" with_python=1
while (($#)); do
    case "$1" in
        --only) only="$2"; shift 2 ;;
        --no-python) with_python=0; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

build_tools || exit 1
counter="$tools_dir/malloc_count.so"
bin="$(build_bench_product loop-bench)" || exit 1
out="$work_dir"
cd "$bench_dir"

have_uvloop=0
if [[ $with_python == 1 ]] && "$python" -c 'import uvloop' >/dev/null 2>&1; then have_uvloop=1; fi

# name, operations per unit, units low, units high (an eventWake iteration is two wake-ups,
# the operation its timing counts). Rows a Python loop lacks read n/a there.
benchmarks=(
    "callSoon 100000 2 6" "callLater0 100000 2 6" "callLater1ms 100000 2 6"
    "createTask 100 10 50" "swiftTaskFloor 100 10 50" "futureAwait 100 10 50"
    "continuationFloor 100 10 50" "runInExecutor 100 10 50" "dispatchAsync 100 10 50"
    "lockUncontended 1000 10 50" "eventWake 200 10 50" "queueHandoff 100 10 50"
    "eagerTask 100 10 50" "timeoutScope 100 10 50"
)

# allocations <file> <command...>: runs the command with the counter preloaded and prints the
# process's allocation count (empty if the command printed nothing, i.e. has no such row).
allocations() {
    local file="$1"; shift
    rm -f "$file"
    local printed
    printed="$(MALLOC_COUNT_OUT="$file" LD_PRELOAD="$counter" PYTHONMALLOC=malloc "$@" 2>/dev/null)" || return 1
    [[ -n "$printed" && -f "$file" ]] || return 0
    tail -n1 "$file" | sed -n 's/.*allocations=\([0-9]*\).*/\1/p'
}

# per_op <label> <ops> <low> <high> <command...> (the command gets --units N appended)
per_op() {
    local ops="$1" low="$2" high="$3"; shift 3
    local a b
    a="$(allocations "$out/count" "$@" --units "$low")" || { echo "failed"; return; }
    b="$(allocations "$out/count" "$@" --units "$high")" || { echo "failed"; return; }
    if [[ -z "$a" || -z "$b" ]]; then echo "n/a"; return; fi
    awk -v a="$a" -v b="$b" -v n="$(((high - low) * ops))" 'BEGIN { printf "%.2f", (b - a) / n }'
}

rows=()
for entry in "${benchmarks[@]}"; do
    read -r name ops low high <<<"$entry"
    [[ -n "$only" && "$only" != "$name" ]] && continue
    echo "  $name..." >&2
    ours="$(per_op "$ops" "$low" "$high" "$bin" --only "$name")"
    asyncio="n/a" uvloop="n/a"
    if [[ $with_python == 1 ]]; then
        asyncio="$(per_op "$ops" "$low" "$high" "$python" loop_bench.py --only "$name")"
        [[ $have_uvloop == 1 ]] && uvloop="$(per_op "$ops" "$low" "$high" "$python" loop_bench.py --uvloop --only "$name")"
    fi
    rows+=("| $name | $ours | $asyncio | $uvloop |")
done

echo
echo "Machine: $(nproc) CPUs, $(uname -sr); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "Versions: $(swift --version 2>/dev/null | head -n1 | sed 's/ (.*//')$(
    [[ $with_python == 1 ]] && echo ", $("$python" --version 2>&1)")$(
    [[ $have_uvloop == 1 ]] && echo ", uvloop $("$python" -c 'import uvloop; print(uvloop.__version__)')")"
echo
echo "| benchmark (allocations / op) | swift-asyncio | asyncio (PYTHONMALLOC=malloc) | uvloop (PYTHONMALLOC=malloc) |"
echo "|---|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
echo "Allocations: malloc + calloc + realloc + aligned allocations of the whole process (all"
echo "threads) per operation, from two runs of different length. n/a: no such benchmark there."
