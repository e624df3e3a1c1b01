//===----------------------------------------------------------------------===//
// swift-asyncio — Process: nothing is left behind (no zombie, no fd) after many runs.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

@Suite(.timeLimit(.minutes(1)))
struct ProcessCleanupTests {
    // 100 processes with all three pipes, each through communicate: afterwards no child is
    // left (not even a zombie) and /proc/self/fd holds exactly the fds it held before. Run in
    // an exit test, so no other test opens fds meanwhile.
    @Test func hundredRunsLeaveNoZombieAndNoFD() async {
        await #expect(processExitsWith: .success) {
            func openFDs() -> [String] {
                guard let dir = opendir("/proc/self/fd") else { return [] }
                defer { closedir(dir) }
                var names: [String] = []
                while let entry = readdir(dir) {
                    let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                    }
                    if name != "." && name != ".." { names.append(name) }
                }
                return names.sorted()
            }
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
                    // Let the pipes' and the transports' closing callbacks run.
                    try await sleep(for: .milliseconds(100))
                    return failures
                }
                guard failures == 0 else { exit(3) }
                var status: Int32 = 0
                let reaped = waitpid(-1, &status, WNOHANG)
                guard reaped == -1 && errno == ECHILD else { exit(4) }   // no child, not even a zombie
                guard openFDs() == before else { exit(5) }
                try loop.close()
            } catch {
                exit(2)
            }
            exit(0)
        }
    }
}
