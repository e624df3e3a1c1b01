#!/usr/bin/env bash
# Builds the libFuzzer targets (libFuzzer + AddressSanitizer) and runs them one at a time.
#
#   Fuzz/fuzz.sh [--build-only] [--runs N] [--max-time SECONDS] [TARGET ...]
#
# TARGET: stream-reader, address, tls-receive, chat (default: all, in that order). Each runs until
# --runs executions (default 10,000,000) or --max-time seconds (default 1800), whichever
# comes first, in one process (the machine is shared: no -jobs/-workers beyond one), with
# Fuzz/Seeds/TARGET (committed, read only) and Fuzz/Corpus/TARGET (what the run adds; not
# committed) as its corpus. A crash, an invariant the harness checks, a leak or a timeout
# stops the run with the input in Fuzz/Artifacts/TARGET/; replay it with
#   Fuzz/.build/release/fuzz-TARGET Fuzz/Artifacts/TARGET/crash-…
# The log of each run goes to Fuzz/Logs/TARGET.log; the last lines (executions, cov, ft) are
# printed at the end.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
runs=10000000
max_time=1800
build_only=0
targets=()
while (($#)); do
    case "$1" in
        --build-only) build_only=1; shift ;;
        --runs) runs=$2; shift 2 ;;
        --max-time) max_time=$2; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        stream-reader|address|tls-receive|chat) targets+=("$1"); shift ;;
        *) echo "fuzz.sh: unknown argument $1" >&2; exit 64 ;;
    esac
done
((${#targets[@]})) || targets=(stream-reader address tls-receive chat)

# -parse-as-library: libFuzzer has the main; -enable-testing: @testable import AsyncIO in a
# release (optimised) build.
flags=(-c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -enable-testing)
for target in "${targets[@]}"; do
    swift build --package-path "$here" "${flags[@]}" --product "fuzz-$target"
done
((build_only)) && exit 0
bin=$(swift build --package-path "$here" "${flags[@]}" --show-bin-path)

# Per target: the longest input worth trying.
max_len() {
    case "$1" in
        stream-reader) echo 4096 ;;
        address) echo 512 ;;
        tls-receive) echo 8192 ;;
        chat) echo 8192 ;;
    esac
}

mkdir -p "$here/Logs"
status=0
for target in "${targets[@]}"; do
    mkdir -p "$here/Corpus/$target" "$here/Artifacts/$target"
    log="$here/Logs/$target.log"
    echo "== fuzz-$target: up to $runs runs or $max_time s (log: $log)"
    set +e
    # The Swift runtime's backtracer would catch the abort first (and trip ASan): libFuzzer reports.
    SWIFT_BACKTRACE=enable=no "$bin/fuzz-$target" "$here/Corpus/$target" "$here/Seeds/$target" \
        -runs="$runs" -max_total_time="$max_time" -max_len="$(max_len "$target")" \
        -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$here/Artifacts/$target/" >"$log" 2>&1
    rc=$?
    set -e
    grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 || true
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)|Done [0-9]+ runs' "$log" || true
    if ((rc != 0)); then
        echo "fuzz-$target: FAILED (exit $rc); see $log and $here/Artifacts/$target/"
        grep -E 'ERROR|FUZZ INVARIANT|Fatal error|SUMMARY' "$log" | head -5 || true
        status=1
    fi
done
exit $status
