#!/usr/bin/env bash
# Builds loop-bench in release, runs it, loop_bench.py on asyncio and on uvloop one after the
# other on this machine, and prints a markdown table of nanoseconds per operation.
#
#   Benchmarks/run-loop-bench.sh [extra arguments for both programs, e.g. --target-seconds 0.5]
#
# PYTHON picks the interpreter (default python3). uvloop is installed with pip if missing;
# if that fails the table has no uvloop column.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
python="${PYTHON:-python3}"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "Building loop-bench (release)..." >&2
if ! swift build -c release --product loop-bench >"$out/build.log" 2>&1; then
    cat "$out/build.log" >&2
    exit 1
fi
bin="$(swift build -c release --show-bin-path)/loop-bench"

have_uvloop=1
if ! "$python" -c 'import uvloop' >/dev/null 2>&1; then
    echo "Installing uvloop..." >&2
    if ! "$python" -m pip install --quiet --disable-pip-version-check uvloop >/dev/null 2>&1 \
        || ! "$python" -c 'import uvloop' >/dev/null 2>&1; then
        echo "uvloop could not be installed; the table has no uvloop column." >&2
        have_uvloop=0
    fi
fi

echo "Running swift-asyncio..." >&2
"$bin" "$@" >"$out/swift"
echo "Running asyncio..." >&2
"$python" loop_bench.py "$@" >"$out/asyncio"
if [[ $have_uvloop == 1 ]]; then
    echo "Running uvloop..." >&2
    "$python" loop_bench.py --uvloop "$@" >"$out/uvloop"
fi

model="$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
echo
echo "Machine: $(nproc) CPUs, ${model:-unknown CPU}, $(uname -sr); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "Versions: $(swift --version 2>/dev/null | head -n1 | sed 's/ (.*//'), $("$python" --version 2>&1)$(
    [[ $have_uvloop == 1 ]] && echo ", uvloop $("$python" -c 'import uvloop; print(uvloop.__version__)')")"
echo

awk -v have_uvloop="$have_uvloop" '
    FILENAME == ARGV[1] { order[++count] = $1; swift[$1] = $2 }
    FILENAME == ARGV[2] { asyncio[$1] = $2 }
    FILENAME == ARGV[3] { uvloop[$1] = $2 }
    function cell(value) { return value == "" ? "n/a" : value }
    function ratio(other, ours) { return (other == "" || ours == "" || ours == 0) ? "n/a" : sprintf("%.2f", other / ours) }
    END {
        if (have_uvloop == 1) {
            print "| benchmark (ns/op) | swift-asyncio | asyncio | uvloop | uvloop/swift-asyncio |"
            print "|---|---:|---:|---:|---:|"
        } else {
            print "| benchmark (ns/op) | swift-asyncio | asyncio | asyncio/swift-asyncio |"
            print "|---|---:|---:|---:|"
        }
        for (i = 1; i <= count; i++) {
            name = order[i]
            if (have_uvloop == 1)
                printf "| %s | %s | %s | %s | %s |\n", name, cell(swift[name]), cell(asyncio[name]),
                    cell(uvloop[name]), ratio(uvloop[name], swift[name])
            else
                printf "| %s | %s | %s | %s |\n", name, cell(swift[name]), cell(asyncio[name]),
                    ratio(asyncio[name], swift[name])
        }
    }
' "$out/swift" "$out/asyncio" $([[ $have_uvloop == 1 ]] && echo "$out/uvloop")

echo
echo "Median of 5 repetitions of ~0.3 s each (by default); lower ns/op is better, a ratio above 1 means"
echo "swift-asyncio is faster. uvloop turns call_later(0) into call_soon, so callLater1ms is"
echo "the row that compares timers; its 1 ms wait per round of 100000 timers adds <= 10 ns/op."
