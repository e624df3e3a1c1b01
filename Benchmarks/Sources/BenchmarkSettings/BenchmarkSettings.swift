//===----------------------------------------------------------------------===//
// What the package-benchmark suites (Benchmarks/LoopBenchmarks, Benchmarks/EchoBenchmarks)
// share: the metrics they record and the tolerances `swift package benchmark thresholds
// check` allows against the stored thresholds in Thresholds/ (check-thresholds.sh).
//===----------------------------------------------------------------------===//

public import Benchmark
import CPerfProbe

#if canImport(Glibc)
import Glibc
#endif

/// Whether this machine counts user-space instructions with `perf_event_open`, as
/// package-benchmark does (many VMs do not: `perf stat -e instructions true` says "not
/// supported" there).
public let instructionsAvailable = cperfprobe_instructions_available() != 0

/// Operations per iteration: every figure of the suites is per iteration, that is per 1000
/// operations (so the CPU time in µs reads as nanoseconds per operation).
public let operationsPerIteration = 1000

/// The process's CPU time (user + system, all threads) during an iteration, in µs, read with
/// `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`, which counts in nanoseconds. package-benchmark's
/// own `cpuUser` and `cpuTotal` count in 10 ms scheduler ticks here, too coarse for
/// iterations of a few milliseconds.
///
/// Named with the defaults of `.custom(_:)`: a stored threshold's metric is read back as
/// `.custom(name)`, which must equal this one.
public var processCPUMetric: BenchmarkMetric {
    .custom("CPU us (process)")
}

/// The metrics every benchmark records: heap allocations (counted by package-benchmark's
/// malloc interposer), the process's CPU time (``processCPUMetric``), and user-space
/// instructions where the machine counts them (see ``instructionsAvailable``).
public var thresholdMetrics: [BenchmarkMetric] {
    [.mallocCountTotal, processCPUMetric] + (instructionsAvailable ? [.instructions] : [])
}

/// The tolerances of `swift package benchmark thresholds check`, per metric, on the p90 of a
/// run against the stored p90:
///
/// - allocations: 2 per iteration of 1000 operations. The count of an operation is the same
///   every run; what moves is amortised growth (a ready queue or a buffer that grows in one
///   iteration and not the next). One more allocation per operation is 1000 more.
/// - instructions: 5 %. Nearly deterministic for the same binary, but the loop's amortised
///   work and the kernel's timing (how many events one epoll_wait returns) move them a little.
/// - process CPU time: 40 % for work on one thread, 100 % for work that crosses threads
///   (`crossThread`: the executor, the echo's client and server). Measured on a 2-core VM
///   shared with other work: runs of the same binary differ by a fifth and more, and with
///   other builds running (load 8 to 10) the cross-thread benchmarks took 50 to 90 % more CPU
///   (wake-ups of a thread that lost its core cost more). It catches a large slow-down, not a
///   few percent (that is what instructions, or echo-callgrind.sh, are for).
public func thresholdTolerances(crossThread: Bool) -> [BenchmarkMetric: BenchmarkThresholds] {
    var tolerances: [BenchmarkMetric: BenchmarkThresholds] = [
        .mallocCountTotal: .init(absolute: [.p90: 2]),
        processCPUMetric: .init(relative: [.p90: crossThread ? 100 : 40]),
    ]
    if instructionsAvailable { tolerances[.instructions] = .init(relative: [.p90: 5]) }
    return tolerances
}

extension Benchmark.Configuration {
    /// The configuration of the suites: ``thresholdMetrics`` with
    /// ``thresholdTolerances(crossThread:)``, one warm-up iteration, then at most
    /// `maxIterations` iterations or about two seconds.
    public static func thresholded(
        crossThread: Bool = false,
        maxIterations: Int = 100,
        setup: Benchmark.BenchmarkSetupHook? = nil,
        teardown: Benchmark.BenchmarkTeardownHook? = nil
    ) -> Benchmark.Configuration {
        .init(
            metrics: thresholdMetrics,
            warmupIterations: 1,
            maxDuration: .seconds(2),
            maxIterations: maxIterations,
            thresholds: thresholdTolerances(crossThread: crossThread),
            setup: setup,
            teardown: teardown
        )
    }
}

extension Benchmark {
    /// Runs `body` (one iteration) and records the process CPU time it took as
    /// ``processCPUMetric``.
    public func measuringProcessCPU(_ body: () throws -> Void) rethrows {
        let start = processCPUNanoseconds()
        try body()
        measurement(processCPUMetric, (processCPUNanoseconds() - start) / 1000)
    }
}

private func processCPUNanoseconds() -> Int {
    var now = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now)
    return now.tv_sec * 1_000_000_000 + now.tv_nsec
}
