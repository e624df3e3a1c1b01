#!/usr/bin/env bash
# Runs the package-benchmark suites (Benchmarks/LoopBenchmarks, Benchmarks/EchoBenchmarks) and
# checks each benchmark's p90 against the thresholds stored in Thresholds/, with the tolerances
# in Sources/BenchmarkSettings: allocations within 2 per 1000 operations, process CPU time
# within 40 % (100 % where the work crosses threads), instructions (where perf_event_open
# counts them) within 5 %.
#
#   Benchmarks/check-thresholds.sh                 # exit 0: no regression; 1: a regression
#   Benchmarks/check-thresholds.sh --update        # store new thresholds from one run
#   Benchmarks/check-thresholds.sh --target EchoBenchmarks --filter 'streams'
#   Benchmarks/check-thresholds.sh --metric mallocCountTotal   # allocations only (another machine)
#
# A benchmark over a threshold is run once more on its own, and fails only if it is over
# again: allocation counts repeat exactly, a CPU time that one busy moment inflated does not.
# package-benchmark also fails a run that is better than a threshold (so that thresholds get
# tightened); this script passes it and says so: run --update to take the better figures.
# Takes about a minute once built; the first build of the suites takes a few minutes.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

update=0
args=() metric_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --update) update=1 ;;
        --target|--filter|--skip|--skip-target)
            [ $# -ge 2 ] || { echo "check-thresholds.sh: $1 needs a value" >&2; exit 2; }
            args+=("$1" "$2"); shift ;;
        --metric)
            [ $# -ge 2 ] || { echo "check-thresholds.sh: $1 needs a value" >&2; exit 2; }
            metric_args+=("$1" "$2"); shift ;;
        -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "check-thresholds.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ $update = 1 ]; then
    exec swift package --allow-writing-to-package-directory benchmark thresholds update \
        --no-progress ${args[@]+"${args[@]}"}
fi

log="$(mktemp)"
retry_log="$(mktemp)"
trap 'rm -f "$log" "$retry_log"' EXIT

# The benchmarks a check's output lists as over a threshold, one `target name` per line.
regressions() {
    sed -n 's/^Deviations worse than threshold for \([^:]*\):\(.*\)$/\1 \2/p' "$1"
}

start=$SECONDS
echo "check-thresholds: running the suites (about a minute once built)..." >&2
swift package benchmark thresholds check --no-progress ${args[@]+"${args[@]}"} \
    ${metric_args[@]+"${metric_args[@]}"} >"$log" 2>&1
status=$?
cat "$log"
if [ $status = 0 ]; then
    echo "check-thresholds: PASS: every benchmark within its thresholds ($((SECONDS - start)) s)"
    exit 0
fi

mapfile -t over < <(regressions "$log")
if [ ${#over[@]} = 0 ]; then
    if grep -q "is BETTER than the defined thresholds" "$log"; then
        echo "check-thresholds: PASS: no regression; some figures are better than their" \
            "thresholds (listed above): Benchmarks/check-thresholds.sh --update stores them" \
            "($((SECONDS - start)) s)"
        exit 0
    fi
    echo "check-thresholds: FAIL: the check did not run (see the output above; no" \
        "thresholds stored? run Benchmarks/check-thresholds.sh --update)"
    exit 1
fi

failed=()
for entry in "${over[@]}"; do
    target="${entry%% *}"
    name="${entry#* }"
    echo "check-thresholds: $target:$name is over a threshold; running it again on its own..." >&2
    swift package benchmark thresholds check --no-progress --target "$target" --filter "^${name}\$" \
        ${metric_args[@]+"${metric_args[@]}"} >"$retry_log" 2>&1
    if [ -n "$(regressions "$retry_log")" ] \
        || ! grep -q "is \(EQUAL to\|BETTER than\) the defined thresholds" "$retry_log"; then
        sed -n '/^Running Benchmarks/,$p' "$retry_log"
        failed+=("$target:$name")
    else
        echo "check-thresholds: $target:$name within its thresholds on the second run (noise)"
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "check-thresholds: FAIL: over a threshold twice: ${failed[*]} ($((SECONDS - start)) s)"
    exit 1
fi
echo "check-thresholds: PASS: what was over a threshold was within it on a second run ($((SECONDS - start)) s)"
