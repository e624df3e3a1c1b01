//===----------------------------------------------------------------------===//
// swift-asyncio — Subprocesses.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// Records what a child does.
final class ProcessRecorder: SubprocessProtocol, @unchecked Sendable {
    var events: [String] = []
    var output: [UInt8] = []
    func connectionMade(_ transport: SubprocessTransport) { events.append("made") }
    func pipeDataReceived(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) { output.append(contentsOf: bytes) }
    func pipeConnectionLost(_ fd: Int32, _ error: (any Error)?) { events.append("pipe \(fd) lost") }
    func processExited() { events.append("exited") }
}

@Suite(.timeLimit(.minutes(10)))
struct SubprocessTests {
    // 10 MiB through `cat` come back byte-exact; the return code is 0.
    @Test func catRoundTripOf10MiB() throws {
        try withLoop { loop in
            let input = (0..<(10 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
            let result = try loop.runUntilComplete { try await loop.runProcess("cat", input: input) }
            #expect(result.returnCode == 0)
            #expect(result.stdout.count == input.count)
            #expect(result.stdout == input)
            #expect(result.stderr.isEmpty)
        }
    }

    // The exit code comes back; stderr is collected separately.
    @Test func exitCodeAndStderr() throws {
        try withLoop { loop in
            let result = try loop.runUntilComplete {
                try await loop.runProcess("sh", ["-c", "echo out; echo err >&2; exit 3"])
            }
            #expect(result.returnCode == 3)
            #expect(result.stdout == Array("out\n".utf8))
            #expect(result.stderr == Array("err\n".utf8))
        }
    }

    // terminate() ends `sleep 60`; the return code is minus the signal and processExited runs.
    @Test func terminateReportsTheSignal() throws {
        try withLoop { loop in
            let (code, events) = try loop.runUntilComplete { () async throws -> (Int32, [String]) in
                let (process, recorder) = try await loop.subprocessExec("sleep", ["60"], stdin: .devNull) {
                    ProcessRecorder()
                }
                try await sleep(for: .milliseconds(50))
                #expect(process.returnCode == nil)
                process.terminate()
                let code = try await process.waitForExit()
                try await sleep(for: .milliseconds(20))
                return (code, recorder.events)
            }
            #expect(code == -SIGTERM)
            #expect(events.first == "made")
            #expect(events.contains("exited"))
        }
    }

    // A program that does not exist gives an error that names it.
    @Test func missingProgramIsNamed() throws {
        try withLoop { loop in
            let message = try loop.runUntilComplete { () async throws -> String? in
                do {
                    _ = try await loop.runProcess("no-such-program-xyz")
                    return nil
                } catch let error as TransportError {
                    return error.message
                }
            }
            #expect(message?.contains("no-such-program-xyz") == true)
            #expect(message?.contains("no such file") == true)
        }
    }

    // stderr merged into stdout, and stdin from /dev/null.
    @Test func stderrIntoStdout() throws {
        try withLoop { loop in
            let output = try loop.runUntilComplete { () async throws -> [UInt8] in
                let (process, recorder) = try await loop.subprocessExec(
                    "sh", ["-c", "echo a; echo b >&2"], stdin: .devNull, stderr: .stdout
                ) { ProcessRecorder() }
                _ = try await process.waitForExit()
                var waited = 0
                while !recorder.events.contains("pipe 1 lost") && waited < 500 {
                    try await sleep(for: .milliseconds(10))
                    waited += 1
                }
                return recorder.output
            }
            #expect(output == Array("a\nb\n".utf8))
        }
    }

    // 200 short processes in a row leave no zombie and no pidfd or pipe behind.
    @Test func manyShortProcessesLeaveNothingBehind() async {
        await #expect(processExitsWith: .success) {
            func count(_ prefix: String) -> Int { openFDs([prefix]).count }
            do {
                let loop = try EventLoop()
                let pipesBefore = count("pipe:")
                let failures = try loop.runUntilComplete { () async throws -> Int in
                    var failures = 0
                    for i in 0..<200 {
                        let result = try await loop.runProcess("sh", ["-c", "exit \(i % 7)"])
                        if result.returnCode != Int32(i % 7) { failures += 1 }
                    }
                    return failures
                }
                guard failures == 0 else { exit(3) }
                var status: Int32 = 0
                let reaped = waitpid(-1, &status, WNOHANG)
                guard reaped == -1 && errno == ECHILD else { exit(4) }   // no child left, not even a zombie
                guard count("anon_inode:[pidfd]") == 0 else { exit(5) }
                guard count("pipe:") <= pipesBefore else { exit(6) }
                try loop.close()
            } catch {
                exit(2)
            }
            exit(0)
        }
    }
}
