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
    let cases: [(name: String, body: (Int) throws -> Double)] = [
        ("callSoon", { try benchCallSoon(loop, batch: $0, rounds: 1) }),
        ("callLater0", { try benchCallLater(loop, delay: .zero, batch: $0, rounds: 1) }),
        ("createTask", { try benchCreateTask(loop, iterations: $0) }),
        ("eagerTask", { try benchEagerTask(loop, iterations: $0) }),
        ("futureAwait", { try benchFutureAwait(loop, iterations: $0) }),
        ("runInExecutor", { try benchRunInExecutor(loop, iterations: $0) }),
        ("lockUncontended", { try benchLock(loop, iterations: $0) }),
        ("eventWake", { try benchEventWake(loop, iterations: $0) }),
        ("queueHandoff", { try benchQueueHandoff(loop, iterations: $0) }),
        ("timeoutScope", { try benchTimeoutScope(loop, iterations: $0) }),
    ]
    for benchmarkCase in cases {
        // Names without spaces: package-benchmark stores a threshold file under the name with
        // spaces replaced but looks it up without replacing them.
        Benchmark(benchmarkCase.name, configuration: .thresholded()) { benchmark in
            try benchmark.measuringProcessCPU {
                _ = try benchmarkCase.body(operationsPerIteration)
            }
        }
    }
}
