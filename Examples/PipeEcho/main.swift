// pipe-echo: copies stdin to stdout through a read pipe transport and a write pipe transport.
//
//   $ head -c 100M /dev/urandom | swift run pipe-echo | sha256sum
//
// The read side forwards each chunk to the write side. When stdout is slower than stdin,
// the write transport's buffer passes its high-water mark, pauseWriting pauses reading stdin,
// and resumeWriting resumes it: memory stays bounded however fast the input is. At EOF the
// output is flushed and closed; the program exits 0.
//
// epoll cannot watch regular files (or /dev/null): when stdin or stdout is one, a blocking
// copy on the executor connects it to a pipe, and the transports work on that pipe.

import ArgumentParser
import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// The write side: pauses the read side while stdout is slow; reports the end.
final class Output: StreamProtocol {
    var input: (any StreamTransport)?
    let finished: Future<Void>

    init(loop: EventLoop) {
        finished = Future(loop: loop)
    }

    func connectionMade(_ transport: any StreamTransport) {}
    func dataReceived(_ bytes: UnsafeRawBufferPointer) {}   // a write pipe receives nothing
    func pauseWriting() { input?.pauseReading() }
    func resumeWriting() { input?.resumeReading() }

    func connectionLost(_ error: (any Error)?) {
        input?.abort()
        if let error { try? finished.setError(error) } else { try? finished.setResult(()) }
    }
}

/// The read side: every chunk of stdin goes to the output; EOF flushes and closes it.
final class Forward: StreamProtocol {
    let output: any StreamTransport

    init(output: any StreamTransport) {
        self.output = output
    }

    func connectionMade(_ transport: any StreamTransport) {}

    func dataReceived(_ bytes: UnsafeRawBufferPointer) {
        output.write(bytes)
    }

    func eofReceived() -> Bool {
        output.writeEOF()   // flush, then close stdout
        return false
    }

    func connectionLost(_ error: (any Error)?) {
        if error != nil { output.abort() }
    }
}

struct PipeEcho: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipe-echo",
        abstract: "Copies stdin to stdout through pipe transports, with flow control.")

    func run() throws {
        do {
            try EventLoop.run { loop in
                let (stdinFD, inputCopier) = try await pollable(loop, fd: 0, reading: true)
                let (stdoutFD, outputCopier) = try await pollable(loop, fd: 1, reading: false)
                let (output, outputProtocol) = try await loop.connectWritePipe(stdoutFD) { Output(loop: loop) }
                // Pause stdin as soon as stdout cannot take a chunk whole: at most one chunk's
                // remainder is ever copied into the write queue, as `cat` would block instead.
                try output.setWriteBufferLimits(high: 0, low: 0)
                let (input, _) = try await loop.connectReadPipe(stdinFD) { Forward(output: output) }
                outputProtocol.input = input
                try await outputProtocol.finished.value
                try await inputCopier?.value
                try await outputCopier?.value
            }
        } catch {
            log("pipe-echo: error: \(error)")
            throw ExitCode.failure
        }
    }
}

/// `fd` itself if epoll can watch it; otherwise one end of a new pipe, with a blocking copy
/// between `fd` and the other end running on the executor.
func pollable(_ loop: EventLoop, fd: Int32, reading: Bool) async throws -> (Int32, Future<Void>?) {
    if EventLoop.canWatch(fd) { return (fd, nil) }
    var ends: [Int32] = [0, 0]
    guard pipe(&ends) == 0 else { throw TransportError(errno: errno, syscall: "pipe") }
    let (readEnd, writeEnd) = (ends[0], ends[1])
    if reading {
        // file → pipe → read transport
        let copier = loop.runInExecutor { try copyAll(from: fd, to: writeEnd) }
        return (readEnd, copier)
    } else {
        // write transport → pipe → file
        let copier = loop.runInExecutor { try copyAll(from: readEnd, to: fd) }
        return (writeEnd, copier)
    }
}

/// Blocking copy until EOF; closes both fds.
func copyAll(from source: Int32, to destination: Int32) throws {
    defer {
        close(source)
        close(destination)
    }
    var buffer = [UInt8](repeating: 0, count: 256 * 1024)
    while true {
        let n = read(source, &buffer, buffer.count)
        if n == 0 { return }
        if n < 0 {
            if errno == EINTR { continue }
            throw TransportError(errno: errno, syscall: "read")
        }
        var offset = 0
        while offset < n {
            let written = buffer[offset..<n].withUnsafeBytes { write(destination, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                throw TransportError(errno: errno, syscall: "write")
            }
            offset += written
        }
    }
}

/// Writes a line to stderr.
func log(_ line: String) {
    _ = (line + "\n").withCString { write(2, $0, strlen($0)) }
}

PipeEcho.main()
