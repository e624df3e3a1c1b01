//===----------------------------------------------------------------------===//
// loop-bench: micro-benchmarks of swift-asyncio's EventLoop.
//
// Prints one line per benchmark, `<name> <nanoseconds per operation>`, the median of five
// repetitions of about 0.3 s each. loop_bench.py prints the same lines for asyncio and uvloop;
// run-loop-bench.sh runs all three and prints a table.
//
//   loop-bench [--target-seconds S] [--repetitions R] [--only NAME]
//   loop-bench --units N [--only NAME]
//                               runs each benchmark once with exactly N units, no warm-up
//                               or calibration: the same work every run, for callgrind
//                               (instructions per op = difference of two N / difference of
//                               their operations)
//   loop-bench --cpu-pools      CPU-bound jobs on pools of 1, cores and the default size
//                               (cpu-pool-bench.sh runs it beside Python's thread and
//                               process pools)
//===----------------------------------------------------------------------===//

import AsyncIO
import LoopBenchmarkBodies

#if canImport(Glibc)
import Glibc
#endif

struct Options {
    var targetSeconds = 0.3
    var repetitions = 5
    var only: String?
    /// Exactly this many units, run once (`--units`); `nil` calibrates to `targetSeconds`.
    var units: Int?
}

func parseOptions() -> Options {
    var options = Options()
    var arguments = CommandLine.arguments.dropFirst().makeIterator()
    while let argument = arguments.next() {
        switch argument {
        case "--target-seconds":
            options.targetSeconds = arguments.next().flatMap(Double.init) ?? options.targetSeconds
        case "--repetitions":
            options.repetitions = max(1, arguments.next().flatMap(Int.init) ?? options.repetitions)
        case "--only":
            options.only = arguments.next()
        case "--units":
            options.units = arguments.next().flatMap(Int.init).map { max(1, $0) }
        case "--cpu-pools":
            runCPUPools()
            exit(0)
        default:
            let usage = "usage: loop-bench [--target-seconds S] [--repetitions R] [--units N] [--only NAME]\n"
            _ = usage.withCString { write(2, $0, strlen($0)) }
            exit(2)
        }
    }
    return options
}

// The benchmark bodies are in Sources/LoopBenchmarkBodies, shared with the package-benchmark
// suite (Benchmarks/LoopBenchmarks).

// MARK: - CPU-bound work on thread pools

/// Fixed CPU work (a xorshift walk), the same amount per job in every configuration.
@inline(never)
func cpuJob(_ iterations: Int) -> UInt64 {
    var x: UInt64 = 0x9E37_79B9_7F4A_7C15
    for _ in 0..<iterations {
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
    }
    return x
}

/// Runs 2 x cores jobs of fixed CPU work through runInExecutor on pools of 1 worker, one per
/// core and the default size, and prints `cpuPool workers=W jobs=J seconds=S speedup=X`:
/// Swift threads run in parallel (no GIL), so a pool sized to the cores is all CPU-bound
/// work needs; no process pool.
func runCPUPools() {
    let cores = ThreadPoolExecutor.cpuBoundWorkers
    let jobs = max(4, 2 * cores)
    let iterations = 100_000_000
    var serial = 0.0
    for workers in [1, cores, ThreadPoolExecutor.defaultMaxWorkers] {
        let pool = ThreadPoolExecutor(maxWorkers: workers, threadNamePrefix: "cpu")
        let seconds = (try? EventLoop.run { loop in
            let start = loop.time()
            let futures = (0..<jobs).map { _ in loop.runInExecutor(pool) { cpuJob(iterations) } }
            _ = try await gather(futures)
            return loop.time() - start
        }) ?? .nan
        pool.shutdown()
        if workers == 1 { serial = seconds }
        print("cpuPool workers=\(workers) jobs=\(jobs) seconds=\((seconds * 1000).rounded() / 1000) speedup=\(((serial / seconds) * 100).rounded() / 100)")
        fflush(nil)
    }
}

// MARK: - Measuring

/// Finds how many units take about `targetSeconds`, runs one warm-up and `repetitions`
/// timed repetitions of that many, and returns the median nanoseconds per operation.
func measure(
    opsPerUnit: Int, options: Options, _ run: (Int) throws -> Double
) rethrows -> Double {
    if let units = options.units {
        return try run(units) * 1e9 / Double(units * opsPerUnit)
    }
    var units = 1
    var seconds = try run(units)
    while seconds < options.targetSeconds / 8 {
        units *= 2
        seconds = try run(units)
    }
    units = max(1, Int((Double(units) * options.targetSeconds / seconds).rounded()))
    _ = try run(units)
    var samples: [Double] = []
    for _ in 0..<options.repetitions {
        samples.append(try run(units) * 1e9 / Double(units * opsPerUnit))
    }
    samples.sort()
    return samples[samples.count / 2]
}

let options = parseOptions()
let loop = try EventLoop(name: "bench")

let benchmarks: [(name: String, opsPerUnit: Int, run: (Int) throws -> Double)] = [
    ("callSoon", loopBenchBatch, { try benchCallSoon(loop, rounds: $0) }),
    ("callLater0", loopBenchBatch, { try benchCallLater(loop, delay: .zero, rounds: $0) }),
    ("callLater1ms", loopBenchBatch, { try benchCallLater(loop, delay: .milliseconds(1), rounds: $0) }),
    // Iterations grow from 100 rather than 1 so the calibration needs fewer doublings.
    ("createTask", 100, { try benchCreateTask(loop, iterations: $0 * 100) }),
    ("swiftTaskFloor", 100, { try benchSwiftTaskFloor(loop, iterations: $0 * 100) }),
    ("futureAwait", 100, { try benchFutureAwait(loop, iterations: $0 * 100) }),
    ("continuationFloor", 100, { try benchContinuationFloor(loop, iterations: $0 * 100) }),
    ("runInExecutor", 100, { try benchRunInExecutor(loop, iterations: $0 * 100) }),
    ("dispatchAsync", 100, { try benchDispatchAsync(loop, iterations: $0 * 100) }),
    ("lockUncontended", 1000, { try benchLock(loop, iterations: $0 * 1000) }),
    ("eventWake", 100, { try benchEventWake(loop, iterations: $0 * 100) }),
    ("queueHandoff", 100, { try benchQueueHandoff(loop, iterations: $0 * 100) }),
    ("eagerTask", 100, { try benchEagerTask(loop, iterations: $0 * 100) }),
    ("timeoutScope", 100, { try benchTimeoutScope(loop, iterations: $0 * 100) }),
]

for benchmark in benchmarks where options.only == nil || options.only == benchmark.name {
    let nanoseconds = try measure(opsPerUnit: benchmark.opsPerUnit, options: options, benchmark.run)
    print(benchmark.name, (nanoseconds * 10).rounded() / 10)
    fflush(nil)  // one line at a time when piped
}

try loop.close()
