// executor-sample: blocking work belongs on a thread pool, not on the event loop.
//
// Each task does a *blocking* sleep (think: a synchronous file read, a CPU-bound hash, a
// C library without async API). Sent through `loop.runInExecutor`, the three sleeps run on
// pool threads at the same time and the loop stays free: total ≈ the longest (10 s).
// With --block-loop they run on the loop itself: every other task, timer and connection
// waits, and the total is the sum (12 s). The loop's debug mode logs each slow step.
//
//   $ swift run executor-sample              # ≈ 10 s
//   $ swift run executor-sample --block-loop # ≈ 12 s, serialised
//
// CPU-bound work: Python sends it to a ProcessPoolExecutor because its GIL lets one thread
// compute at a time. Swift threads compute in parallel, so a thread pool sized to the cores
// is all it takes: `ThreadPoolExecutor(maxWorkers: ThreadPoolExecutor.cpuBoundWorkers)` next
// to the default, I/O-sized pool (min(32, cores + 4) threads that mostly wait).
// Benchmarks/cpu-pool-bench.sh measures it (README: "CPU-bound work").

import ArgumentParser
import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// Sleeps the calling thread (a stand-in for any blocking call).
func blockingSleep(_ seconds: Double) {
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - seconds.rounded(.down)) * 1e9))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR {
        request = remaining
    }
}

/// Prints a line to stdout and flushes it, so a pipe sees each line when it happens.
func say(_ line: String) {
    print(line)
    fflush(nil)
}

/// `10` for whole numbers, `0.5` otherwise.
func formatSeconds(_ seconds: Double) -> String {
    seconds == seconds.rounded() && abs(seconds) < 1e15 ? String(Int(seconds)) : String(seconds)
}

struct ExecutorSample: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "executor-sample",
        abstract: "Blocking sleeps through runInExecutor (concurrent) or on the loop (--block-loop, serialised).")

    @Option(name: .customLong("a"), help: "Seconds Task-A blocks.")
    var a: Double = 10

    @Option(name: .customLong("b"), help: "Seconds Task-B blocks.")
    var b: Double = 1

    @Option(name: .customLong("c"), help: "Seconds Task-C blocks.")
    var c: Double = 1

    @Flag(name: .customLong("block-loop"), help: "Run the blocking sleeps on the loop itself (the mistake to avoid).")
    var blockLoop = false

    func validate() throws {
        for (flag, value) in [("--a", a), ("--b", b), ("--c", c)] where !(value >= 0 && value < 1e9) {
            throw ValidationError("\(flag) must be a number of seconds between 0 and 1e9, got \(value)")
        }
    }

    func run() throws {
        let (a, b, c, blockLoop) = (a, b, c, blockLoop)
        // Debug mode makes the loop log every callback slower than 100 ms: with --block-loop
        // that is each blocking sleep.
        let elapsed = try EventLoop.run(debug: blockLoop) { loop in
            func work(_ name: String, _ seconds: Double) async throws {
                say("[\(name)] coroutine will sleep for \(formatSeconds(seconds)) second(s)…")
                if blockLoop {
                    blockingSleep(seconds)   // wrong: the whole loop stops here
                } else {
                    try await loop.runInExecutor { blockingSleep(seconds) }.value   // right
                }
                say("[\(name)] done!")
            }
            let start = loop.time()
            let tasks = [
                loop.createTask(name: "Task-A") { try await work("Task-A", a) },
                loop.createTask(name: "Task-B") { try await work("Task-B", b) },
                loop.createTask(name: "Task-C") { try await work("Task-C", c) },
            ]
            _ = try await gather(tasks)
            return loop.time() - start
        }
        let hundredths = Int((elapsed * 100).rounded())
        let text = "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
        let how = blockLoop ? "blocking the loop: the sum" : "through the executor: the longest"
        _ = "total: \(text) s (\(how))\n".withCString { write(2, $0, strlen($0)) }
    }
}

ExecutorSample.main()
