// task-sample: three tasks sleep concurrently on one event loop.
//
// Task-A sleeps 10 s, Task-B and Task-C 1 s each (change with --a, --b, --c). They run as
// LoopTasks on one thread; `sleep(for:)` is a loop timer, so while one task waits the others
// run. The whole run takes as long as the longest sleep, not the sum of all three.
//
//   $ swift run task-sample
//   [Task-A] coroutine will sleep for 10 second(s)…
//   [Task-B] coroutine will sleep for 1 second(s)…
//   [Task-C] coroutine will sleep for 1 second(s)…
//   [Task-B] done!
//   [Task-C] done!
//   [Task-A] done!

import ArgumentParser
import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// One sample task: announce, sleep on the loop, announce again.
func sampleTask(_ name: String, seconds: Double) async throws {
    say("[\(name)] coroutine will sleep for \(formatSeconds(seconds)) second(s)…")
    try await sleep(for: .seconds(seconds))   // suspends this task only; the loop runs on
    say("[\(name)] done!")
}

/// `10` for whole numbers, `0.5` otherwise.
func formatSeconds(_ seconds: Double) -> String {
    seconds == seconds.rounded() && abs(seconds) < 1e15 ? String(Int(seconds)) : String(seconds)
}

struct TaskSample: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "task-sample",
        abstract: "Three tasks sleep concurrently on one event loop: total time is the longest sleep.")

    @Option(name: .customLong("a"), help: "Seconds Task-A sleeps.")
    var a: Double = 10

    @Option(name: .customLong("b"), help: "Seconds Task-B sleeps.")
    var b: Double = 1

    @Option(name: .customLong("c"), help: "Seconds Task-C sleeps.")
    var c: Double = 1

    func validate() throws {
        for (flag, value) in [("--a", a), ("--b", b), ("--c", c)] where !(value >= 0 && value < 1e9) {
            throw ValidationError("\(flag) must be a number of seconds between 0 and 1e9, got \(value)")
        }
    }

    func run() throws {
        let (a, b, c) = (a, b, c)
        let elapsed = try EventLoop.run { loop in
            let start = loop.time()
            // createTask schedules each body on the loop; none has started yet.
            let tasks = [
                loop.createTask(name: "Task-A") { try await sampleTask("Task-A", seconds: a) },
                loop.createTask(name: "Task-B") { try await sampleTask("Task-B", seconds: b) },
                loop.createTask(name: "Task-C") { try await sampleTask("Task-C", seconds: c) },
            ]
            _ = try await gather(tasks)   // wait for all three
            return loop.time() - start
        }
        logToStandardError("total: \(twoDecimals(elapsed)) s (sum of the sleeps: \(formatSeconds(a + b + c)) s)")
    }
}

/// Prints a line to stdout and flushes it, so a pipe sees each line when it happens.
func say(_ line: String) {
    print(line)
    fflush(nil)
}

/// Writes a line to stderr.
func logToStandardError(_ line: String) {
    let text = line + "\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
}

/// Two decimals without Foundation.
func twoDecimals(_ seconds: Double) -> String {
    let hundredths = Int((seconds * 100).rounded())
    let fraction = hundredths % 100
    return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
}

TaskSample.main()
