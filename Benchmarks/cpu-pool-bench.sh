#!/usr/bin/env bash
# CPU-bound jobs on thread pools: swift-asyncio's ThreadPoolExecutor (1 worker, one per core,
# the default min(32, cores + 4)) beside Python's ThreadPoolExecutor (held back by the GIL)
# and ProcessPoolExecutor, the same number of jobs of fixed work each. It prints each
# configuration's wall time and its speed-up over one worker: the point is the speed-up
# (Swift's threads scale like Python's processes), not the absolute times (Python's loop is
# slower per iteration, so it gets fewer iterations).
#
#   Benchmarks/cpu-pool-bench.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
python="${PYTHON:-python3}"

echo "Building loop-bench (release)..." >&2
swift build -c release --product loop-bench >/dev/null
bin="$(swift build -c release --show-bin-path)/loop-bench"

echo "Machine: $(nproc) CPUs, $(uname -sr); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "swift-asyncio ThreadPoolExecutor:"
"$bin" --cpu-pools
echo "Python $("$python" -c 'import sys; print(sys.version.split()[0])'):"
"$python" - <<'PY'
import os, time
from concurrent.futures import ThreadPoolExecutor, ProcessPoolExecutor

def job(n):
    x = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    for _ in range(n):
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
    return x

cores = len(os.sched_getaffinity(0))
jobs = max(4, 2 * cores)
n = 2_000_000
serial = None
for kind, workers in [("threads", 1), ("threads", cores), ("processes", cores)]:
    pool = ThreadPoolExecutor(workers) if kind == "threads" else ProcessPoolExecutor(workers)
    with pool:
        start = time.perf_counter()
        list(pool.map(job, [n] * jobs))
        seconds = time.perf_counter() - start
    serial = serial or seconds
    print(f"{kind} workers={workers} jobs={jobs} seconds={seconds:.3f} speedup={serial / seconds:.2f}")
PY
