//===----------------------------------------------------------------------===//
// swift-asyncio — loop.sendfile: a file to a stream transport, with sendfile(2) where it can.
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

extension EventLoop {
    /// Sends `count` bytes of the file `file` from `offset` to `transport` and returns the bytes
    /// sent (asyncio's `loop.sendfile`): fewer than `count` only if the file ended first.
    ///
    /// On a TCP or Unix socket transport (and a write pipe) the kernel copies the file with
    /// `sendfile(2)`: no byte passes through user space. The transport's queued bytes go first;
    /// the socket is written as it becomes writable, so a slow reader never blocks the loop.
    /// Elsewhere — a TLS transport, a file `sendfile(2)` cannot read — the file is read in
    /// chunks of up to 256 KiB on the default executor (``runInExecutor(_:_:)``) and written
    /// with the transport's flow control, holding at most one chunk above the high-water mark;
    /// `fallback: false` makes that case an error instead.
    ///
    /// The first `sendfile(2)` makes the process ignore SIGPIPE if it had the default action
    /// (as Python does at start-up): `sendfile(2)` has no `MSG_NOSIGNAL`, and a reader gone
    /// away must be an error, not a killed process.
    ///
    /// Reading is paused while the file is sent and resumed afterwards (as asyncio does), so
    /// the protocol does not answer the peer in the middle of the file. Do not write to the
    /// transport until this call returns: on the `sendfile(2)` path such bytes are held and sent
    /// after the file, but on the fallback path they would land between its chunks. When the
    /// call returns, the file's position is `offset` plus the bytes sent (as asyncio leaves it).
    ///
    /// ```swift
    /// let file = open("/srv/www/index.html", O_RDONLY)
    /// defer { close(file) }
    /// let sent = try await loop.sendfile(transport, file: file)
    /// ```
    /// - Parameters:
    ///   - transport: A stream transport of this loop: TCP, Unix, a write pipe, or TLS.
    ///   - file: An open file descriptor; the caller keeps owning it (and closes it after the
    ///     call returns).
    ///   - offset: Where in the file to start (`pread`-style: the file's position is not used).
    ///   - count: Bytes to send; `nil` sends up to the end of the file.
    ///   - fallback: Whether to read and write where `sendfile(2)` cannot be used.
    /// - Returns: The bytes sent: `count`, or fewer if the file ended first.
    /// - Throws: ``TransportError`` `.invalidArgument` for a negative offset or a count below 1,
    ///   `.closed` if the transport is closing (or closes before the file was sent),
    ///   `.sendfileNotAvailable` if `sendfile(2)` cannot be used and `fallback` is false, the
    ///   error of `fstat` or `pread` (a bad descriptor) or of the connection;
    ///   `CancellationError` if the calling task is cancelled: the bytes sent so far stay sent.
    /// - Important: Call from a task running on this loop.
    public func sendfile(
        _ transport: any StreamTransport, file: Int32, offset: Int = 0, count: Int? = nil,
        fallback: Bool = true
    ) async throws -> Int {
        preconditionInLoop()
        guard offset >= 0 else {
            throw TransportError(.invalidArgument, "sendfile: offset must be 0 or more (got \(offset))")
        }
        if let count, count < 1 {
            throw TransportError(.invalidArgument, "sendfile: count must be 1 or more, or nil (got \(count))")
        }
        guard !transport.isClosing else { throw TransportError.closedTransport }
        var info = stat()
        guard fstat(file, &info) == 0 else { throw TransportError(errno: errno, syscall: "fstat") }

        let wasReading = transport.isReading
        transport.pauseReading()
        defer {
            if wasReading { transport.resumeReading() }
        }
        let native = (transport as? SocketTransport).flatMap { info.st_mode & S_IFMT == S_IFREG ? $0 : nil }
        if native != nil {
            Self.ignoreSIGPIPE()   // sendfile(2) has no MSG_NOSIGNAL
        }
        let sent: Int
        if let native,
            let nativeSent = try await sendfileNatively(native, FileSegment(file: file, offset: offset, count: count))
        {
            sent = nativeSent
        } else if fallback {
            sent = try await sendfileByCopying(transport, file: file, offset: offset, count: count)
        } else {
            throw TransportError(.sendfileNotAvailable, "sendfile(2) cannot send this file on this transport")
        }
        lseek(file, off_t(offset + sent), SEEK_SET)
        return sent
    }

    /// The native path: the bytes sent, or `nil` if `sendfile(2)` refused the transfer before
    /// sending anything (the caller falls back).
    private func sendfileNatively(_ transport: SocketTransport, _ segment: FileSegment) async throws -> Int? {
        let done = Future<Int>(loop: self)
        transport.sendFile(segment) { result in
            done.completeIfPending(result.mapError { $0 })
        }
        done._whenDone { done in
            if done.isCancelled { transport.cancelFileSend() }
        }
        do {
            return try await done.value
        } catch let error as TransportError where error.code == .sendfileNotAvailable {
            return nil
        }
    }

    /// The fallback path: reads chunks in the executor and writes them with flow control.
    private func sendfileByCopying(
        _ transport: any StreamTransport, file: Int32, offset: Int, count: Int?
    ) async throws -> Int {
        let chunkSize = min(count ?? SendfileChunk.largest, SendfileChunk.largest)
        let chunk = SendfileChunk(capacity: chunkSize)
        let gate = SendfileFallbackGate.standIn(
            for: transport.streamProtocol, loop: self,
            paused: (transport as? any WritePauseReporting)?.isWritingPaused ?? false)
        transport.streamProtocol = gate
        defer { gate.handBack(to: transport) }

        var sent = 0
        while count.map({ sent < $0 }) ?? true {
            try await gate.waitWritable()
            let want = min(chunkSize, count.map { $0 - sent } ?? chunkSize)
            let position = offset + sent
            let n = try await runInExecutor { try chunk.read(file, count: want, at: position) }.value
            if n == 0 { break }   // the file ended
            guard !transport.isClosing else { throw TransportError.closedTransport }
            transport.write(UnsafeRawBufferPointer(start: chunk.bytes.baseAddress, count: n))
            sent += n
        }
        // Hand the protocol back with the buffer under its low-water mark, as it was lent.
        try await gate.waitWritable()
        return sent
    }
}

/// The buffer sendfile's fallback reads file chunks into, on an executor thread: one per call,
/// reused for every chunk. Freed when the last reference goes (a cancelled call's read may
/// still be running on its thread).
private final class SendfileChunk: @unchecked Sendable {
    // @unchecked Sendable: the loop task and one executor read at a time take turns on the
    // bytes (the task awaits each read before it writes the chunk).
    static let largest = 256 * 1024
    let bytes: UnsafeMutableRawBufferPointer

    init(capacity: Int) {
        bytes = .allocate(byteCount: capacity, alignment: 1)
    }

    deinit {
        bytes.deallocate()
    }

    /// Reads up to `count` bytes at `offset` of `file` (blocking: runs in an executor).
    func read(_ file: Int32, count: Int, at offset: Int) throws -> Int {
        while true {
            let n = pread(file, bytes.baseAddress, min(count, bytes.count), off_t(offset))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw TransportError(errno: errno, syscall: "pread")
        }
    }
}

/// The protocol lent to a transport while sendfile's fallback writes: it keeps the write
/// pause/resume calls (they pace the file's chunks) and passes everything else on to the
/// application's protocol (asyncio's `_SendfileFallbackProtocol`).
private class SendfileFallbackGate: StreamProtocol {
    let original: any StreamProtocol
    let loop: EventLoop
    private var isPaused: Bool
    /// Whether the original protocol was paused when it was lent (it gets `resumeWriting`
    /// when handed back, as the buffer drained meanwhile).
    private let originalWasPaused: Bool
    private var lost: (any Error)?
    private var waiter: Future<Void>?

    /// A gate for `original`: a buffered one if `original` reads into its own buffers.
    static func standIn(for original: any StreamProtocol, loop: EventLoop, paused: Bool) -> SendfileFallbackGate {
        if let buffered = original as? any BufferedProtocol {
            return BufferedSendfileFallbackGate(buffered, loop: loop, paused: paused)
        }
        return SendfileFallbackGate(original, loop: loop, paused: paused)
    }

    init(_ original: any StreamProtocol, loop: EventLoop, paused: Bool) {
        self.original = original
        self.loop = loop
        self.isPaused = paused
        self.originalWasPaused = paused
    }

    /// Waits until the transport's buffer is at or under its low-water mark.
    /// - Throws: the error the connection was lost with (`.closed` for a plain close).
    func waitWritable() async throws {
        while true {
            if let lost { throw lost }
            if !isPaused { return }
            let future = Future<Void>(loop: loop)
            waiter = future
            try await future.value
        }
    }

    /// Gives `transport` its protocol back (unless the connection is gone).
    func handBack(to transport: any StreamTransport) {
        guard lost == nil, transport.streamProtocol === self else { return }
        transport.streamProtocol = original
        if originalWasPaused && !isPaused {
            original.resumeWriting()
        }
    }

    private func wake() {
        let future = waiter
        waiter = nil
        future?.completeIfPending(.success(()))
    }

    func connectionMade(_ transport: any StreamTransport) throws {}

    func dataReceived(_ bytes: UnsafeRawBufferPointer) throws {
        try original.dataReceived(bytes)
    }

    func eofReceived() throws -> Bool {
        try original.eofReceived()
    }

    func connectionLost(_ error: (any Error)?) {
        lost = error ?? TransportError(.closed, "the connection was closed while sending a file")
        wake()
        original.connectionLost(error)
    }

    func pauseWriting() {
        isPaused = true
    }

    func resumeWriting() {
        isPaused = false
        wake()
    }
}

/// The gate for a ``BufferedProtocol``: the transport keeps reading into the protocol's buffers.
private final class BufferedSendfileFallbackGate: SendfileFallbackGate, BufferedProtocol {
    private let buffered: any BufferedProtocol

    init(_ buffered: any BufferedProtocol, loop: EventLoop, paused: Bool) {
        self.buffered = buffered
        super.init(buffered, loop: loop, paused: paused)
    }

    func getBuffer(sizeHint: Int) throws -> UnsafeMutableRawBufferPointer {
        try buffered.getBuffer(sizeHint: sizeHint)
    }

    func bufferUpdated(_ count: Int) throws {
        try buffered.bufferUpdated(count)
    }
}
