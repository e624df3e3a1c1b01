#!/usr/bin/env python3
"""Loop micro-benchmarks for asyncio (or uvloop with --uvloop), the counterpart of loop-bench.

Prints one line per benchmark, `<name> <nanoseconds per operation>`, the median of five
repetitions of about 0.3 s each, in the same format and with the same batch sizes as the
Swift executable, so run-loop-bench.sh can put them side by side.
"""

import argparse
import asyncio
import sys
import time

# Callbacks (or timers) scheduled per round before the loop runs them; as in loop-bench.
BATCH = 100_000


def bench_call_soon(loop, rounds):
    start = time.perf_counter()
    for _ in range(rounds):
        count = 0

        def callback():
            nonlocal count
            count += 1
            if count == BATCH:
                loop.stop()

        for _ in range(BATCH):
            loop.call_soon(callback)
        loop.run_forever()
        assert count == BATCH
    return time.perf_counter() - start


def bench_call_later(loop, delay, rounds):
    start = time.perf_counter()
    for _ in range(rounds):
        count = 0

        def callback():
            nonlocal count
            count += 1
            if count == BATCH:
                loop.stop()

        for _ in range(BATCH):
            loop.call_later(delay, callback)
        loop.run_forever()
        assert count == BATCH
    return time.perf_counter() - start


async def one():
    return 1


def bench_create_task(loop, iterations):
    async def main():
        start = time.perf_counter()
        total = 0
        for _ in range(iterations):
            total += await loop.create_task(one())
        assert total == iterations
        return time.perf_counter() - start

    return loop.run_until_complete(main())


def bench_future_await(loop, iterations):
    async def main():
        start = time.perf_counter()
        total = 0
        for _ in range(iterations):
            future = loop.create_future()
            loop.call_soon(future.set_result, 1)
            total += await future
        assert total == iterations
        return time.perf_counter() - start

    return loop.run_until_complete(main())


def return_one():
    return 1


def bench_run_in_executor(loop, iterations):
    async def main():
        start = time.perf_counter()
        total = 0
        for _ in range(iterations):
            total += await loop.run_in_executor(None, return_one)
        assert total == iterations
        return time.perf_counter() - start

    return loop.run_until_complete(main())


def bench_lock(loop, iterations):
    async def main():
        lock = asyncio.Lock()
        start = time.perf_counter()
        for _ in range(iterations):
            await lock.acquire()
            lock.release()
        return time.perf_counter() - start

    return loop.run_until_complete(main())


def bench_event_wake(loop, iterations):
    async def main():
        ping, pong = asyncio.Event(), asyncio.Event()

        async def other():
            for _ in range(iterations):
                await ping.wait()
                ping.clear()
                pong.set()

        task = loop.create_task(other())
        start = time.perf_counter()
        for _ in range(iterations):
            ping.set()
            await pong.wait()
            pong.clear()
        await task
        return (time.perf_counter() - start) / 2

    return loop.run_until_complete(main())


def bench_queue_handoff(loop, iterations):
    async def main():
        queue = asyncio.Queue(maxsize=1)

        async def consumer():
            total = 0
            for _ in range(iterations):
                total += await queue.get()
            return total

        task = loop.create_task(consumer())
        start = time.perf_counter()
        for _ in range(iterations):
            await queue.put(1)
        assert await task == iterations
        return time.perf_counter() - start

    return loop.run_until_complete(main())


def bench_eager_task(loop, iterations):
    """asyncio.eager_task_factory's path (Python 3.12+): Task(coro, loop=loop, eager_start=True)."""

    async def main():
        start = time.perf_counter()
        total = 0
        for _ in range(iterations):
            total += await asyncio.Task(one(), loop=loop, eager_start=True)
        assert total == iterations
        return time.perf_counter() - start

    return loop.run_until_complete(main())


def bench_timeout_scope(loop, iterations):
    async def main():
        start = time.perf_counter()
        total = 0
        for _ in range(iterations):
            async with asyncio.timeout(10):
                total += 1
        assert total == iterations
        return time.perf_counter() - start

    return loop.run_until_complete(main())


def measure(ops_per_unit, target_seconds, repetitions, run):
    """Median nanoseconds per operation over `repetitions` runs of about `target_seconds`."""
    units = 1
    seconds = run(units)
    while seconds < target_seconds / 8:
        units *= 2
        seconds = run(units)
    units = max(1, round(units * target_seconds / seconds))
    run(units)  # warm-up
    samples = sorted(run(units) * 1e9 / (units * ops_per_unit) for _ in range(repetitions))
    return samples[len(samples) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uvloop", action="store_true", help="benchmark uvloop instead of asyncio")
    parser.add_argument("--target-seconds", type=float, default=0.3)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--only", help="run only the benchmark of this name")
    parser.add_argument(
        "--units", type=int,
        help="run each benchmark once with exactly this many units, no warm-up (as loop-bench --units)")
    args = parser.parse_args()

    if args.uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    benchmarks = [
        ("callSoon", BATCH, lambda n: bench_call_soon(loop, n)),
        # uvloop turns call_later(0) into call_soon; callLater1ms uses its timers.
        ("callLater0", BATCH, lambda n: bench_call_later(loop, 0, n)),
        ("callLater1ms", BATCH, lambda n: bench_call_later(loop, 0.001, n)),
        ("createTask", 100, lambda n: bench_create_task(loop, n * 100)),
        ("futureAwait", 100, lambda n: bench_future_await(loop, n * 100)),
        ("runInExecutor", 100, lambda n: bench_run_in_executor(loop, n * 100)),
        ("lockUncontended", 1000, lambda n: bench_lock(loop, n * 1000)),
        ("eventWake", 100, lambda n: bench_event_wake(loop, n * 100)),
        ("queueHandoff", 100, lambda n: bench_queue_handoff(loop, n * 100)),
        ("timeoutScope", 100, lambda n: bench_timeout_scope(loop, n * 100)),
    ]
    if sys.version_info >= (3, 12):
        benchmarks.append(("eagerTask", 100, lambda n: bench_eager_task(loop, n * 100)))
    try:
        for name, ops_per_unit, run in benchmarks:
            if args.only is not None and args.only != name:
                continue
            if args.units is not None:
                units = max(1, args.units)
                nanoseconds = run(units) * 1e9 / (units * ops_per_unit)
            else:
                nanoseconds = measure(ops_per_unit, args.target_seconds, max(1, args.repetitions), run)
            print(name, f"{nanoseconds:.1f}", flush=True)
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
