//===----------------------------------------------------------------------===//
// swift-asyncio — SocketTransport: the stream transport for TCP and Unix sockets.
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
import DequeModule
#if canImport(Glibc)
import Glibc
#endif

/// The stream transport of a connected TCP or Unix socket (asyncio's
/// `_SelectorSocketTransport`), and of the ends of pipes (`_UnixReadPipeTransport`,
/// `_UnixWritePipeTransport`).
///
/// Hot path: a readable socket is read into the loop's buffer and handed to the protocol as a
/// borrowed view; `write` sends at once when nothing is queued and copies only what the kernel
/// did not take; the queue drains with gathered sends (`sendmsg`, like writev with MSG_NOSIGNAL). No allocation per message in steady state.
///
/// An open transport keeps itself alive (the connection owns it) until `connectionLost` ran.
final class SocketTransport: StreamTransport, @unchecked Sendable {
    private enum State {
        /// Reading and writing.
        case open
        /// `close()` was called: flushing the write buffer, then closing.
        case closing
        /// The fd is being or was closed; `connectionLost` is scheduled or done.
        case closed
    }

    /// What the fd is: a connected socket, or one end of a pipe (FIFO, character device).
    enum Kind {
        case socket
        /// Read only; writes are ignored.
        case readPipe
        /// Write only; a hang-up of the reading side is watched for while idle.
        case writePipe
    }

    let loop: EventLoop
    let kind: Kind
    private(set) var fileDescriptor: Int32
    @exclusivity(unchecked) private var proto: any StreamProtocol
    private var buffered: (any BufferedProtocol)?
    @exclusivity(unchecked) private var state = State.open
    /// The user paused reading.
    private var readingPaused = false
    /// EOF was read: reading stopped for good.
    private var eofSeen = false
    private var readerRegistered = false
    private var writerRegistered = false
    /// `writeEOF` was called; shut down the sending side once the buffer is empty.
    private var eofRequested = false
    private var eofWritten = false
    /// Unsent bytes, each chunk a heap copy owned by the queue (stable addresses for writev).
    @exclusivity(unchecked) private var writeQueue = Deque<UnsafeMutableRawBufferPointer>()
    /// Bytes of the first queued chunk already sent.
    private var firstChunkOffset = 0
    @exclusivity(unchecked) private var queuedBytes = 0
    private var protocolPaused = false
    /// Whether the protocol was told `pauseWriting` and not yet `resumeWriting` (startTLS).
    var isWritingPaused: Bool { protocolPaused }
    private var highWater = 64 * 1024
    private var lowWater = 16 * 1024
    /// Keeps the transport alive while the connection is open.
    private var selfReference: SocketTransport?
    /// Called once when the transport is gone (the server's client set).
    var onClosed: ((SocketTransport) -> Void)?
    private var cachedPeer: SocketAddress?
    private var cachedLocal: SocketAddress?

    /// Wraps a connected, non-blocking socket or pipe end. Call ``start()`` next.
    init(loop: EventLoop, fd: Int32, protocol: any StreamProtocol, kind: Kind = .socket) {
        self.loop = loop
        self.kind = kind
        self.fileDescriptor = fd
        self.proto = `protocol`
        self.buffered = `protocol` as? any BufferedProtocol
    }

    /// Schedules `connectionMade`, then starts reading (asyncio's order: the protocol sees the
    /// transport before any data).
    func start(whenMade: (() -> Void)? = nil) {
        loop.assertInLoop()
        selfReference = self
        loop.schedule { [self] in
            defer { whenMade?() }
            guard state != .closed else { return }
            do {
                try proto.connectionMade(self)
            } catch {
                fail(error, reportingFrom: "connectionMade")
                return
            }
            if state == .open && !readingPaused {
                registerReader()
            }
        }
    }

    // MARK: - Reading

    private func registerReader() {
        guard !readerRegistered, !eofSeen, state == .open else { return }
        do {
            if kind == .writePipe {
                try loop.addReader(fileDescriptor) { [unowned self] in self.readerSideClosed() }
            } else {
                try loop.addReader(fileDescriptor) { [unowned self] in self.readReady() }
            }
            readerRegistered = true
        } catch {
            fail(error, reportingFrom: nil)
        }
    }

    private func unregisterReader() {
        guard readerRegistered else { return }
        readerRegistered = false
        loop.removeReader(fileDescriptor)
    }

    /// A write pipe's fd reported EPOLLERR/EPOLLHUP: the reading side is gone (asyncio: an
    /// error if data was pending, a plain close otherwise).
    private func readerSideClosed() {
        guard state != .closed else { return }
        if writeQueue.isEmpty {
            forceClose(nil)
        } else {
            forceClose(TransportError(errno: EPIPE, syscall: "write"))
        }
    }

    private func readReady() {
        guard state != .closed else { return }
        if let buffered {
            readIntoProtocolBuffer(buffered)
            return
        }
        let buffer = loop.readBuffer
        let n = Glibc.read(fileDescriptor, buffer.baseAddress, buffer.count)
        if n > 0 {
            do {
                try proto.dataReceived(UnsafeRawBufferPointer(start: buffer.baseAddress, count: n))
            } catch {
                fail(error, reportingFrom: "dataReceived")
            }
        } else if n == 0 {
            eofReceived()
        } else {
            readFailed(errno)
        }
    }

    private func readIntoProtocolBuffer(_ buffered: any BufferedProtocol) {
        let buffer: UnsafeMutableRawBufferPointer
        do {
            buffer = try buffered.getBuffer(sizeHint: 64 * 1024)
        } catch {
            fail(error, reportingFrom: "getBuffer")
            return
        }
        guard buffer.count > 0, let base = buffer.baseAddress else {
            fail(TransportError(.other, "getBuffer returned an empty buffer"), reportingFrom: "getBuffer")
            return
        }
        let n = Glibc.read(fileDescriptor, base, buffer.count)
        if n > 0 {
            do {
                try buffered.bufferUpdated(n)
            } catch {
                fail(error, reportingFrom: "bufferUpdated")
            }
        } else if n == 0 {
            eofReceived()
        } else {
            readFailed(errno)
        }
    }

    private func readFailed(_ code: Int32) {
        switch code {
        case EAGAIN, EWOULDBLOCK, EINTR:
            return
        default:
            forceClose(TransportError(errno: code, syscall: "read", address: cachedPeer))
        }
    }

    private func eofReceived() {
        eofSeen = true
        unregisterReader()
        let keepOpen: Bool
        do {
            keepOpen = try proto.eofReceived()
        } catch {
            fail(error, reportingFrom: "eofReceived")
            return
        }
        if !keepOpen {
            close()
        }
    }

    func pauseReading() {
        loop.assertInLoop()
        guard kind != .writePipe, state == .open, !readingPaused else { return }
        readingPaused = true
        unregisterReader()
    }

    func resumeReading() {
        loop.assertInLoop()
        guard kind != .writePipe, state == .open, readingPaused else { return }
        readingPaused = false
        registerReader()
    }

    var isReading: Bool { kind != .writePipe && state == .open && !readingPaused && !eofSeen }

    // MARK: - Writing

    func write(_ bytes: UnsafeRawBufferPointer) {
        loop.assertInLoop()
        guard kind != .readPipe, state == .open, !eofRequested, let base = bytes.baseAddress, bytes.count > 0 else {
            return
        }
        var sent = 0
        if writeQueue.isEmpty {
            // Fast path: straight to the kernel, nothing copied if it takes everything.
            while true {
                let n = kind == .socket
                    ? send(fileDescriptor, base, bytes.count, casyncio_msg_nosignal())
                    : Glibc.write(fileDescriptor, base, bytes.count)
                if n >= 0 {
                    sent = n
                    break
                }
                let code = errno
                if code == EINTR { continue }
                if code == EAGAIN || code == EWOULDBLOCK { break }
                forceClose(TransportError(errno: code, syscall: "send", address: cachedPeer))
                return
            }
            if sent == bytes.count { return }
        }
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count - sent, alignment: 1)
        chunk.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[sent...]))
        writeQueue.append(chunk)
        queuedBytes += chunk.count
        if !writerRegistered {
            do {
                try loop.addWriter(fileDescriptor) { [unowned self] in self.writeReady() }
                writerRegistered = true
            } catch {
                forceClose(error)
                return
            }
        }
        maybePauseProtocol()
    }

    private func writeReady() {
        guard state != .closed else { return }
        flushQueue()
    }

    /// Writes as much of the queue as the kernel takes, one gathered send (sendmsg) per batch.
    private func flushQueue() {
        while !writeQueue.isEmpty {
            let batch = min(writeQueue.count, 64)
            let iovecs = loop.iovecs
            for i in 0..<batch {
                let chunk = writeQueue[i]
                let offset = i == 0 ? firstChunkOffset : 0
                // SAFETY: the queue owns each chunk's memory until `consume` frees it.
                iovecs[i] = iovec(iov_base: chunk.baseAddress.map { $0 + offset }, iov_len: chunk.count - offset)
            }
            // sendmsg rather than writev: MSG_NOSIGNAL, so a peer that went away gives EPIPE
            // instead of a SIGPIPE that would kill the process.
            let n: Int
            if kind == .socket {
                var message = msghdr()
                message.msg_iov = iovecs
                message.msg_iovlen = batch
                n = sendmsg(fileDescriptor, &message, casyncio_msg_nosignal())
            } else {
                // Pipes: SIGPIPE is ignored once a write pipe is connected (see
                // connectWritePipe), so EPIPE comes back as an error here too.
                n = writev(fileDescriptor, iovecs, Int32(batch))
            }
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                if code == EAGAIN || code == EWOULDBLOCK { return }
                forceClose(TransportError(errno: code, syscall: "sendmsg", address: cachedPeer))
                return
            }
            consume(n)
            if n == 0 { return }
        }
        // The queue is empty.
        if writerRegistered {
            writerRegistered = false
            loop.removeWriter(fileDescriptor)
        }
        maybeResumeProtocol()
        if eofRequested && !eofWritten {
            writeEOFNow()
        }
        if state == .closing {
            forceClose(nil)
        }
    }

    /// Drops `count` sent bytes from the front of the queue.
    private func consume(_ count: Int) {
        var remaining = count
        queuedBytes -= count
        while remaining > 0, let first = writeQueue.first {
            let left = first.count - firstChunkOffset
            if remaining >= left {
                remaining -= left
                writeQueue.removeFirst().deallocate()
                firstChunkOffset = 0
            } else {
                firstChunkOffset += remaining
                remaining = 0
            }
        }
    }

    func writeEOF() {
        loop.assertInLoop()
        guard kind != .readPipe, state == .open, !eofRequested else { return }
        eofRequested = true
        if writeQueue.isEmpty {
            writeEOFNow()
        }
    }

    /// A socket shuts down its sending side; a write pipe has nothing else to do and closes.
    private func writeEOFNow() {
        eofWritten = true
        if kind == .socket {
            shutdown(fileDescriptor, Int32(SHUT_WR))
        } else {
            close()
        }
    }

    var canWriteEOF: Bool { kind != .readPipe }

    var writeBufferSize: Int { queuedBytes }

    var writeBufferLimits: (low: Int, high: Int) { (lowWater, highWater) }

    func setWriteBufferLimits(high: Int?, low: Int?) {
        loop.assertInLoop()
        let high = max(0, high ?? (low.map { 4 * $0 } ?? 64 * 1024))
        let low = max(0, min(low ?? high / 4, high))
        highWater = high
        lowWater = low
        maybePauseProtocol()
        maybeResumeProtocol()
    }

    private func maybePauseProtocol() {
        guard !protocolPaused, queuedBytes > highWater else { return }
        protocolPaused = true
        proto.pauseWriting()
    }

    private func maybeResumeProtocol() {
        guard protocolPaused, queuedBytes <= lowWater else { return }
        protocolPaused = false
        if state != .closed {
            proto.resumeWriting()
        }
    }

    // MARK: - Closing

    var isClosing: Bool { state != .open }

    func close() {
        loop.assertInLoop()
        guard state == .open else { return }
        state = .closing
        unregisterReader()
        if writeQueue.isEmpty {
            forceClose(nil)
        }
    }

    func abort() {
        loop.assertInLoop()
        forceClose(nil)
    }

    /// Reports a protocol callback's error and aborts this transport with it.
    private func fail(_ error: any Error, reportingFrom callback: String?) {
        if let callback {
            loop.callExceptionHandler(ExceptionContext(
                message: "error in protocol callback \(callback); the transport is aborted",
                error: error, source: "\(self)"))
        }
        forceClose(error)
    }

    private func dropWriteQueue() {
        for chunk in writeQueue { chunk.deallocate() }
        writeQueue.removeAll()
        queuedBytes = 0
        firstChunkOffset = 0
    }

    deinit {
        dropWriteQueue()
    }

    /// Stops all I/O now and schedules `connectionLost(error)` and the close of the fd.
    private func forceClose(_ error: (any Error)?) {
        guard state != .closed else { return }
        state = .closed
        unregisterReader()
        if writerRegistered {
            writerRegistered = false
            loop.removeWriter(fileDescriptor)
        }
        dropWriteQueue()
        loop.schedule { [self] in callConnectionLost(error) }
    }

    private func callConnectionLost(_ error: (any Error)?) {
        let lostProtocol = proto
        proto = ClosedProtocol.shared
        buffered = nil
        lostProtocol.connectionLost(error)
        Glibc.close(fileDescriptor)
        fileDescriptor = -1
        onClosed?(self)
        onClosed = nil
        selfReference = nil
    }

    // MARK: - Extra info

    var peerAddress: SocketAddress? {
        if cachedPeer == nil, fileDescriptor >= 0 { cachedPeer = Socket.peerAddress(fileDescriptor) }
        return cachedPeer
    }

    var localAddress: SocketAddress? {
        if cachedLocal == nil, fileDescriptor >= 0 { cachedLocal = Socket.localAddress(fileDescriptor) }
        return cachedLocal
    }

    var streamProtocol: any StreamProtocol {
        get { proto }
        set {
            loop.assertInLoop()
            guard state != .closed else { return }
            proto = newValue
            buffered = newValue as? any BufferedProtocol
        }
    }
}

extension SocketTransport: CustomStringConvertible {
    var description: String {
        "SocketTransport(fd: \(fileDescriptor), peer: \(cachedPeer.map { "\($0)" } ?? "?"), state: \(state))"
    }
}
