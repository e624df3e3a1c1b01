//===----------------------------------------------------------------------===//
// swift-asyncio — Process: a child process with stream pipes (asyncio.subprocess.Process).
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

/// A child process started by
/// ``EventLoop/createSubprocessExec(_:_:stdin:stdout:stderr:environment:currentDirectory:limit:logger:)``
/// or ``EventLoop/createSubprocessShell(_:stdin:stdout:stderr:environment:currentDirectory:limit:logger:)``,
/// its pipes as streams (asyncio's `asyncio.subprocess.Process`).
///
/// ```swift
/// let process = try await loop.createSubprocessExec("sort", stdin: .pipe, stdout: .pipe)
/// let (output, _) = try await process.communicate(input: Array("b\na\n".utf8))
/// let status = try await process.wait()   // 0; output is "a\nb\n"
/// ```
///
/// The child is reaped by the loop as soon as it exits, whether or not anyone waits, so no
/// zombie remains. Output nobody reads is buffered up to twice the reader's limit; then the
/// pipe is no longer read and a child that keeps writing blocks: read its pipes (or use
/// ``communicate(input:)``) rather than only ``wait()``.
///
/// With Foundation imported too, `Process` is ambiguous: write `AsyncIO.Process`.
/// - Important: Loop-bound: use it from tasks running on its loop.
public final class Process: @unchecked Sendable, CustomStringConvertible {
    /// The loop the process is watched on.
    public let loop: EventLoop
    /// The child's process id.
    public let pid: Int32
    /// The child's stdin if it is a pipe (`stdin: .pipe`), else `nil`.
    public let stdin: StreamWriter?
    /// The child's stdout if it is a pipe (`stdout: .pipe`), else `nil`.
    public let stdout: StreamReader?
    /// The child's stderr if it is a pipe (`stderr: .pipe`), else `nil`.
    public let stderr: StreamReader?
    private let transport: SubprocessTransport

    init(transport: SubprocessTransport, protocol proto: SubprocessStreamProtocol) {
        self.loop = transport.loop
        self.pid = transport.pid
        self.transport = transport
        self.stdin = proto.stdin
        self.stdout = proto.stdout
        self.stderr = proto.stderr
    }

    /// The exit code, or minus the signal that ended the process (asyncio's convention: -15
    /// for SIGTERM); `nil` while it runs. ``SubprocessTransport/unknownReturnCode`` (255) if
    /// something else in this process reaped the child.
    /// - Important: Loop-bound.
    public var returnCode: Int32? { transport.returnCode }

    /// Waits until the process exits and returns ``returnCode`` (asyncio's `wait`). Pipes are
    /// not read meanwhile beyond their buffers: see the type's documentation.
    /// - Throws: `CancellationError` if the waiting task is cancelled (the process runs on).
    /// - Important: Call from a task running on the loop.
    public func wait() async throws -> Int32 {
        try await transport.waitForExit()
    }

    /// Sends `signal` to the process; nothing once it was reaped (asyncio's `send_signal`).
    /// - Important: Loop-bound.
    public func sendSignal(_ signal: Int32) {
        transport.sendSignal(signal)
    }

    /// Sends SIGTERM (asyncio's `terminate`).
    /// - Important: Loop-bound.
    public func terminate() {
        transport.terminate()
    }

    /// Sends SIGKILL (asyncio's `kill`).
    /// - Important: Loop-bound.
    public func kill() {
        transport.kill()
    }

    /// Writes `input` to stdin and closes it, reads stdout and stderr to their ends, waits
    /// for the exit, and returns what was read (asyncio's `communicate`).
    ///
    /// The three pipes are served at once (one task each), so a child that fills stderr while
    /// the parent still writes stdin or reads stdout never deadlocks. Stdin is closed even
    /// without `input` (a child reading it to the end can finish); a child that exits without
    /// reading it all is not an error (the broken pipe is ignored, as asyncio does). A stream
    /// that is not a pipe reads as `[]`; bytes taken from a reader before the call are not
    /// returned again.
    /// - Throws: a pipe's error; `CancellationError` if the calling task is cancelled (the
    ///   pipe tasks are cancelled too; the process runs on).
    /// - Important: Call from a task running on the loop.
    public func communicate(input: [UInt8]? = nil) async throws -> (stdout: [UInt8], stderr: [UInt8]) {
        loop.preconditionInLoop()
        let feeding: Future<Void>
        if let stdin {
            feeding = loop.createTask(name: "Process \(pid) communicate stdin") {
                try await Self.feed(stdin, input)
            }
        } else {
            feeding = Future(loop: loop)
            feeding.complete(.success(()))
        }
        let (_, output, errors) = try await gather(feeding, reading(1), reading(2))
        _ = try await wait()
        return (output, errors)
    }

    /// A task reading pipe `fd` (1 or 2) to its end, then closing it; `[]` if not a pipe.
    private func reading(_ fd: Int32) -> Future<[UInt8]> {
        guard let reader = fd == 1 ? stdout : stderr else {
            let nothing = Future<[UInt8]>(loop: loop)
            nothing.complete(.success([]))
            return nothing
        }
        let pipe = transport.pipeTransport(fd)
        return loop.createTask(name: "Process \(pid) communicate \(fd == 1 ? "stdout" : "stderr")") {
            let bytes = try await reader.read()
            pipe?.close()
            return bytes
        }
    }

    /// Writes `input`, waits until the pipe took it, closes stdin. A child that stopped
    /// reading is no error here (asyncio ignores BrokenPipeError and ConnectionResetError).
    private static func feed(_ stdin: StreamWriter, _ input: [UInt8]?) async throws {
        do {
            if let input, !input.isEmpty, !stdin.isClosing {
                stdin.write(input)
            }
            try await stdin.drain()
        } catch let error as TransportError
            where error.code == .brokenPipe || error.code == .connectionReset || error.code == .closed {
            // The child closed its stdin or exited: what it did not read is dropped.
        }
        stdin.close()
    }

    /// `Process(pid: N)`, with the return code once known. Loop-bound.
    public var description: String {
        if let returnCode { return "Process(pid: \(pid), returnCode: \(returnCode))" }
        return "Process(pid: \(pid))"
    }
}
