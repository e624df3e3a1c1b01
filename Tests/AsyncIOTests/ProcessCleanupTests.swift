//===----------------------------------------------------------------------===//
// swift-asyncio — Process: nothing is left behind (no zombie, no fd) after many runs.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

@Suite(.timeLimit(.minutes(10)))
struct ProcessCleanupTests {
    // 100 processes with all three pipes, each through communicate: afterwards no child is
    // left (not even a zombie) and /proc/self/fd holds exactly the pipes, pidfds and sockets
    // it held before. Run in an exit test, so no other test opens fds meanwhile. Only those
    // kinds are compared: what a process run opens. The test runtime in the child may open
    // others of its own (Dispatch's epoll, eventfd and timerfd on first use of a timer).
    @Test func hundredRunsLeaveNoZombieAndNoFD() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            func verdict(_ text: String) {
                _ = "verdict: \(text)\n".withCString { write(2, $0, strlen($0)) }
            }
            // Each pipe, pidfd or socket as "number -> target", so a failure names what was left.
            func openFDs() -> [String] { AsyncIOTests.openFDs(["pipe:", "socket:", "anon_inode:[pidfd]"]) }
            do {
                let loop = try EventLoop()
                // One warm-up run first: the loop's own lazily opened fds are not leaks.
                _ = try loop.runUntilComplete {
                    try await loop.createSubprocessExec("true", stdin: .pipe, stdout: .pipe, stderr: .pipe)
                        .communicate()
                }
                let before = openFDs()
                let failures = try loop.runUntilComplete { () async throws -> Int in
                    var failures = 0
                    for i in 0..<100 {
                        let process = try await loop.createSubprocessShell(
                            "cat; echo err-\(i) >&2; exit \(i % 5)", stdin: .pipe, stdout: .pipe, stderr: .pipe)
                        let (output, errors) = try await process.communicate(input: Array("in-\(i)\n".utf8))
                        if process.returnCode != Int32(i % 5) || output != Array("in-\(i)\n".utf8)
                            || errors != Array("err-\(i)\n".utf8) {
                            failures += 1
                        }
                    }
                    // Let the pipes' and the transports' closing callbacks run: wait until
                    // the fds are back (bounded: 10 s on a loaded machine), then compare.
                    for _ in 0..<100 where openFDs() != before {
                        try await sleep(for: .milliseconds(100))
                    }
                    return failures
                }
                var status: Int32 = 0
                let reaped = waitpid(-1, &status, WNOHANG)
                let waitError = errno
                let after = openFDs()
                if failures != 0 {
                    verdict("\(failures) of 100 runs gave wrong output or return code")
                } else if !(reaped == -1 && waitError == ECHILD) {
                    verdict("a child is left (waitpid gave \(reaped))")   // not even a zombie
                } else if after != before {
                    verdict("fds before: \(before), after: \(after)")
                } else {
                    verdict("ok")
                }
                try loop.close()
            } catch {
                verdict("threw \(error)")
            }
            exit(0)
        }
        // The child always exits 0 and says what it found on stderr (a failed exit test
        // returns no output to show).
        let verdicts = result.map {
            String(decoding: $0.standardErrorContent, as: UTF8.self).split(separator: "\n")
                .filter { $0.hasPrefix("verdict: ") }
        }
        #expect(verdicts == ["verdict: ok"])
    }
}
