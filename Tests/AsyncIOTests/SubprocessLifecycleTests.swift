//===----------------------------------------------------------------------===//
// swift-asyncio — Subprocess start-up and reaping edge cases.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// Records every SubprocessProtocol call in order.
private final class CallRecorder: SubprocessProtocol, @unchecked Sendable {
    var events: [String] = []
    var output: [UInt8] = []
    func connectionMade(_ transport: SubprocessTransport) { events.append("made") }
    func pipeDataReceived(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) {
        if events.last != "data \(fd)" { events.append("data \(fd)") }
        output.append(contentsOf: bytes)
    }
    func pipeConnectionLost(_ fd: Int32, _ error: (any Error)?) { events.append("pipe \(fd) lost") }
    func processExited() { events.append("exited") }
}

/// Whether process `pid` has exited (a zombie, or already reaped), without reaping it.
private func processHasExited(_ pid: Int32) -> Bool {
    let fd = open("/proc/\(pid)/stat", O_RDONLY)
    guard fd >= 0 else { return true }   // reaped: gone
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 512)
    let n = read(fd, &buffer, buffer.count)
    guard n > 0 else { return true }
    // "pid (comm) S ...": the state follows the last ')'.
    let text = buffer[..<n]
    guard let end = text.lastIndex(of: UInt8(ascii: ")")), end + 2 < n else { return false }
    return text[end + 2] == UInt8(ascii: "Z") || text[end + 2] == UInt8(ascii: "X")
}

/// The inode of `fd`, or nil if it is not open.
private func inode(_ fd: Int32) -> UInt? {
    var info = stat()
    guard fstat(fd, &info) == 0 else { return nil }
    return UInt(info.st_ino)
}

@Suite(.timeLimit(.minutes(10)))
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

    // A child that writes and exits at once, while subprocessExec is still connecting its
    // stderr pipe (held back here): the protocol hears connectionMade first, then the output,
    // the pipes' ends and the exit.
    @Test func noPipeCallbackBeforeConnectionMade() throws {
        try withLoop { loop in
            let events = try loop.runUntilComplete { () async throws -> [String] in
                let stdout = Box<(any StreamTransport)?>(nil)
                let (process, recorder) = try await loop.subprocessExec(
                    "sh", ["-c", "echo early"], stdin: .pipe, stdout: .pipe, stderr: .pipe,
                    environment: nil, currentDirectory: nil, { CallRecorder() }
                ) { process, target, fd, adapter in
                    let pid = process.pid
                    switch target {
                    case 0: return try await loop.connectWritePipe(fd) { adapter }.0
                    case 1:
                        let transport = try await loop.connectReadPipe(fd) { adapter }.0
                        stdout.value = transport
                        return transport
                    default:
                        // Connect stderr only once the child exited and its stdout was read to
                        // the end (a fixed delay let a slow child write and exit after it, and
                        // the test passed without calls held back).
                        try await waitUntil("the child exited and its stdout was read to EOF") {
                            processHasExited(pid) && stdout.value?.isClosing == true
                        }
                        return try await loop.connectReadPipe(fd) { adapter }.0
                    }
                }
                _ = try await process.waitForExit()
                var waited = 0
                while !(recorder.events.contains("exited") && recorder.events.contains("pipe 1 lost")
                    && recorder.events.contains("pipe 2 lost")) && waited < 1000 {
                    try await sleep(for: .milliseconds(10))
                    waited += 1
                }
                #expect(recorder.output == Array("early\n".utf8))
                return recorder.events
            }
            #expect(events.first == "made")
            #expect(events.filter { $0 == "made" }.count == 1)
            #expect(events.contains("data 1"))
            #expect(events.contains("exited"))
        }
    }

    // When connecting a later pipe fails, subprocessExec throws that error; the pipes already
    // connected are closed, the failed end is closed, the child is killed and reaped, and the
    // protocol (which never saw connectionMade) hears nothing.
    @Test func pipeConnectFailureCleansUpAndReapsTheChild() throws {
        try withLoop { loop in
            let connected = Box<[any StreamTransport]>([])
            let child = Box<Int32>(-1)
            let failedEnd = Box<(fd: Int32, inode: UInt?)>((-1, nil))
            let recorder = CallRecorder()
            let thrown = try loop.runUntilComplete { () async throws -> (any Error)? in
                do {
                    _ = try await loop.subprocessExec(
                        "sleep", ["30"], stdin: .pipe, stdout: .pipe, stderr: .pipe,
                        environment: nil, currentDirectory: nil, { recorder }
                    ) { process, target, fd, adapter in
                        let pid = process.pid
                        child.value = pid
                        switch target {
                        case 0: connected.value.append(try await loop.connectWritePipe(fd) { adapter }.0)
                        case 1: connected.value.append(try await loop.connectReadPipe(fd) { adapter }.0)
                        default:
                            failedEnd.value = (fd, inode(fd))
                            throw TestError(id: 6)
                        }
                        return connected.value[connected.value.count - 1]
                    }
                    return nil
                } catch {
                    try await sleep(for: .milliseconds(50))   // let scheduled callbacks run
                    return error
                }
            }
            let pid = child.value
            let alive = pid > 0 && kill(pid, 0) == 0
            var status: Int32 = 0
            let reapedByTest = pid > 0 && waitpid(pid, &status, WNOHANG) == pid
            if alive && !reapedByTest {   // clean up after a failed run
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
            }
            #expect(thrown as? TestError == TestError(id: 6))
            #expect(pid > 0)
            #expect(!alive, "the child is neither running nor a zombie")
            #expect(connected.value.count == 2)
            #expect(connected.value.allSatisfy { $0.isClosing })
            #expect(failedEnd.value.inode != nil)
            #expect(inode(failedEnd.value.fd) != failedEnd.value.inode, "the failed end was closed")
            #expect(recorder.events.isEmpty)
        }
    }
}
