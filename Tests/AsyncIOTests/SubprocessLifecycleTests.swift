//===----------------------------------------------------------------------===//
// swift-asyncio — Subprocess start-up and reaping edge cases.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

@Suite(.timeLimit(.minutes(2)))
struct SubprocessLifecycleTests {
    // A child reaped by someone else (here the test, with waitpid, before the loop could) has
    // an unknown status: the transport reports SubprocessTransport.unknownReturnCode, never 0.
    @Test func childReapedElsewhereHasUnknownReturnCode() throws {
        try withLoop { loop in
            let (ours, reported, events) = try loop.runUntilComplete { () async throws -> (Int32, Int32, [String]) in
                // No pipes: nothing in subprocessExec suspends, so the loop cannot reap the
                // child before the waitpid below.
                let (process, recorder) = try await loop.subprocessExec(
                    "sh", ["-c", "exit 7"], stdin: .devNull, stdout: .devNull, stderr: .devNull
                ) { ProcessRecorder() }
                var status: Int32 = 0
                var reaped: Int32
                repeat { reaped = waitpid(process.pid, &status, 0) } while reaped < 0 && errno == EINTR
                let ours: Int32 = reaped == process.pid ? (status >> 8) & 0xFF : -1000
                let reported = try await process.waitForExit()
                try await sleep(for: .milliseconds(20))
                return (ours, reported, recorder.events)
            }
            #expect(ours == 7)
            #expect(reported == SubprocessTransport.unknownReturnCode)
            #expect(reported == 255)
            #expect(events == ["made", "exited"])
        }
    }
}
