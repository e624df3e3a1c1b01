//===----------------------------------------------------------------------===//
// The loop micro-benchmarks on package-benchmark: the bodies loop-bench times against asyncio
// and uvloop (Sources/LoopBenchmarkBodies), measured here per 1000 operations for allocations, process
// CPU time and (where the machine counts them) instructions, and checked against the stored
// thresholds in Thresholds/ by check-thresholds.sh.
//
//   swift package benchmark --target LoopBenchmarks
//===----------------------------------------------------------------------===//

import AsyncIO
import Benchmark
import BenchmarkSettings
import LoopBenchmarkBodies

#if canImport(Glibc)
import Glibc
#endif

let benchmarks: @Sendable () -> Void = {
    let loop: EventLoop
    do {
        loop = try EventLoop(name: "bench")
    } catch {
        print("LoopBenchmarks: cannot create an event loop: \(error)")
        exit(1)
    }

    // One iteration runs `operationsPerIteration` operations.
    // crossThread: the work involves another thread (the executor's), so its CPU time swings
    // more on a busy machine.
    let cases: [(name: String, crossThread: Bool, body: (Int) throws -> Double)] = [
        ("callSoon", false, { try benchCallSoon(loop, batch: $0, rounds: 1) }),
        ("callLater0", false, { try benchCallLater(loop, delay: .zero, batch: $0, rounds: 1) }),
        ("createTask", false, { try benchCreateTask(loop, iterations: $0) }),
        ("eagerTask", false, { try benchEagerTask(loop, iterations: $0) }),
        ("futureAwait", false, { try benchFutureAwait(loop, iterations: $0) }),
        ("runInExecutor", true, { try benchRunInExecutor(loop, iterations: $0) }),
        ("lockUncontended", false, { try benchLock(loop, iterations: $0) }),
        ("eventWake", false, { try benchEventWake(loop, iterations: $0) }),
        ("queueHandoff", false, { try benchQueueHandoff(loop, iterations: $0) }),
        ("timeoutScope", false, { try benchTimeoutScope(loop, iterations: $0) }),
    ]
    for benchmarkCase in cases {
        // Names without spaces: package-benchmark stores a threshold file under the name with
        // spaces replaced but looks it up without replacing them.
        let configuration = Benchmark.Configuration.thresholded(crossThread: benchmarkCase.crossThread)
        Benchmark(benchmarkCase.name, configuration: configuration) { benchmark in
            try benchmark.measuringProcessCPU {
                _ = try benchmarkCase.body(operationsPerIteration)
            }
        }
    }
}
