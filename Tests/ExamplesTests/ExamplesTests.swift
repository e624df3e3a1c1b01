//===----------------------------------------------------------------------===//
// swift-asyncio — the example executables, run as a user runs them.
//===----------------------------------------------------------------------===//

import Foundation
import Testing

/// The built example next to this test bundle (swift build puts all products in one folder).
func examplePath(_ name: String) -> String {
    let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var directory = bundle.deletingLastPathComponent()
    // On Linux the test bundle is a file in the products folder; elsewhere a directory in it.
    if directory.lastPathComponent.hasSuffix(".xctest") { directory.deleteLastPathComponent() }
    return directory.appendingPathComponent(name).path
}

struct RunResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var lines: [String] { stdout.split(separator: "\n").map(String.init) }
}

/// Runs an example with `arguments`, waiting at most `timeout` seconds (then it is killed).
/// Its output goes to temporary files, read once it exited.
func runExample(_ name: String, _ arguments: [String], timeout: Double = 60) throws -> RunResult {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("asyncio-example-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let outURL = directory.appendingPathComponent("stdout")
    let errURL = directory.appendingPathComponent("stderr")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let out = try FileHandle(forWritingTo: outURL)
    let err = try FileHandle(forWritingTo: errURL)
    defer {
        try? out.close()
        try? err.close()
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: examplePath(name))
    process.arguments = arguments
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline {
        usleep(10_000)
    }
    if process.isRunning {
        process.terminate()
        Issue.record("\(name) \(arguments) did not finish within \(timeout) s")
    }
    process.waitUntilExit()
    return RunResult(
        status: process.terminationStatus,
        stdout: String(decoding: try Data(contentsOf: outURL), as: UTF8.self),
        stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
}

@Suite(.timeLimit(.minutes(10)))
struct ExamplesTests {
    // task-sample: the three tasks start in order, B and C finish before A (they ran concurrently).
    // The sleeps are half a second apart: the order of their ends must not depend on how soon
    // each task (or, below, each pool thread) got the CPU on a loaded machine.
    @Test func taskSamplePrintsTheContractLinesInOrder() throws {
        let result = try runExample("task-sample", ["--a", "1.2", "--b", "0.1", "--c", "0.6"])
        #expect(result.status == 0)
        #expect(result.lines == [
            "[Task-A] coroutine will sleep for 1.2 second(s)…",
            "[Task-B] coroutine will sleep for 0.1 second(s)…",
            "[Task-C] coroutine will sleep for 0.6 second(s)…",
            "[Task-B] done!",
            "[Task-C] done!",
            "[Task-A] done!",
        ])
    }

    // task-sample's defaults are 10, 1 and 1 seconds, and whole numbers print without ".0".
    @Test func taskSampleDefaultsAppearInItsHelp() throws {
        let result = try runExample("task-sample", ["--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("--a <a>"))
        #expect(result.stdout.contains("(default: 10.0)"))
    }

    // executor-sample: the blocking sleeps run on pool threads, so B and C finish before A.
    @Test func executorSampleRunsBlockingWorkConcurrently() throws {
        let result = try runExample("executor-sample", ["--a", "1.2", "--b", "0.1", "--c", "0.6"])
        #expect(result.status == 0)
        #expect(result.lines == [
            "[Task-A] coroutine will sleep for 1.2 second(s)…",
            "[Task-B] coroutine will sleep for 0.1 second(s)…",
            "[Task-C] coroutine will sleep for 0.6 second(s)…",
            "[Task-B] done!",
            "[Task-C] done!",
            "[Task-A] done!",
        ])
    }

    // executor-sample --block-loop: each blocking sleep holds the loop, so the tasks serialise.
    @Test func executorSampleBlockLoopSerialises() throws {
        let result = try runExample("executor-sample", ["--a", "0.3", "--b", "0.1", "--c", "0.1", "--block-loop"])
        #expect(result.status == 0)
        #expect(result.lines == [
            "[Task-A] coroutine will sleep for 0.3 second(s)…",
            "[Task-A] done!",
            "[Task-B] coroutine will sleep for 0.1 second(s)…",
            "[Task-B] done!",
            "[Task-C] coroutine will sleep for 0.1 second(s)…",
            "[Task-C] done!",
        ])
        // Debug mode logged the slow steps on stderr.
        #expect(result.stderr.contains("took"))
    }

    // close() releases every fd the loop opened (epoll, eventfd, signal pipe), checked in a
    // process of its own so nothing else opens or closes fds meanwhile.
    @Test func loopCloseReleasesEveryFD() throws {
        let result = try runExample("LoopFDCheck", [])
        #expect(result.status == 0, "\(result.stdout)")
        #expect(result.stdout.hasPrefix("before "))
    }

    // Bad input is a one-line usage error and a non-zero exit, never a crash.
    @Test(arguments: [["--a", "-1"], ["--b", "soon"], ["--c", "nan"], ["--frobnicate"]])
    func badArgumentsGiveAUsageError(arguments: [String]) throws {
        for example in ["task-sample", "executor-sample"] {
            let result = try runExample(example, arguments)
            #expect(result.status == 64, "\(example) \(arguments): \(result.stderr)")
            #expect(result.stderr.hasPrefix("Error: "))
            #expect(result.stdout.isEmpty)
            #expect(!result.stderr.contains("Fatal error"))
        }
    }
}
