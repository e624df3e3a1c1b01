//===----------------------------------------------------------------------===//
// swift-asyncio — SocketTransport: the stream transport for TCP and Unix sockets.
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
import DequeModule
import Logging
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
final class SocketTransport: StreamTransport, WritePauseReporting, @unchecked Sendable {
    // @unchecked Sendable: loop-bound; every entry point asserts the loop thread in debug
    // builds (the protocol API is loop-bound, see StreamTransport).

    /// The transport's lifecycle. It changes only in ``move(_:)``, whose exhaustive switch
    /// lists every legal transition; an illegal one is a bug and traps.
    ///
    /// ```
    /// open ─writeEOF→ eofPending ─queue empty→ eofWritten
    ///   └──────────────┴─────close()──────────────┴→ closing ─queue empty→ closed
    /// any state ─abort / error / peer gone→ closed
    /// ```
    enum Lifecycle: Equatable {
        /// Reading and writing.
        case open
        /// `writeEOF()` was called: the sending side shuts once the queue is empty.
        case eofPending
        /// The sending side is shut (SHUT_WR); reading goes on.
        case eofWritten
        /// `close()` was called: flushing the queue, then closing; no more reading.
        case closing
        /// The fd is being or was closed; `connectionLost` is scheduled or done.
        case closed
    }

    enum LifecycleEvent {
        case writeEOF, eofWritten, close, closeNow
    }

    /// The reading side, apart from the lifecycle: paused by the user, or done after EOF.
    enum ReadSide {
        case active, paused, finished
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
    @exclusivity(unchecked) private(set) var lifecycle = Lifecycle.open
    private var readSide = ReadSide.active
    /// What is registered with the loop for this fd (mirrors the loop's registration).
    private var registered: IOInterest = []
    /// Unsent bytes (heap copies with stable addresses for gathered sends).
    // Internal, not private, from here to `fileSend`: SocketTransport+FileSend.swift uses them.
    @exclusivity(unchecked) var writeQueue = WriteQueue()
    @exclusivity(unchecked) private var flow = FlowControl()
    /// The file being sent with sendfile(2), if any (``sendFile(_:completion:)``).
    @exclusivity(unchecked) var fileSend: FileSendOperation?
    /// Whether the protocol was told `pauseWriting` and not yet `resumeWriting` (startTLS).
    var isWritingPaused: Bool { flow.isPaused }
    /// Keeps the transport alive while the connection is open.
    private var selfReference: SocketTransport?
    /// Its slot in the loop's ``OpenResources`` while it holds an fd (-1: not a member).
    @exclusivity(unchecked) var openResourceSlot = -1
    /// Called once when the transport is gone (the server's client set).
    var onClosed: ((SocketTransport) -> Void)?
    private(set) var cachedPeer: SocketAddress?
    private var cachedLocal: SocketAddress?
    /// The loop's shared read buffer and iovecs, looked up once (not once per read).
    private let buffers: SocketBuffers
    /// Where the connection logs (`nil`: through the loop's logger).
    private let logContext: ConnectionLogContext?
    /// The loop's connection counters if metrics were on when the transport was made (sockets
    /// only): with them off, counting costs a `nil` check.
    let counters: ConnectionCounters?

    /// Wraps a connected, non-blocking socket or pipe end. Call ``start()`` next.
    /// `log`: the connection's logging context (a server's or a caller's logger).
    init(
        loop: EventLoop, fd: Int32, protocol: any StreamProtocol, kind: Kind = .socket,
        log: ConnectionLogContext? = nil
    ) {
        self.loop = loop
        self.logContext = log
        self.buffers = loop.socketBuffers
        self.kind = kind
        self.fileDescriptor = fd
        self.proto = `protocol`
        self.buffered = `protocol` as? any BufferedProtocol
        self.counters = kind == .socket ? loop.connectionCounters : nil
    }

    /// Moves the lifecycle for `event`; returns false for a call that changes nothing
    /// (closing twice, writeEOF after close). Traps on a transition that cannot happen.
    @discardableResult
    private func move(_ event: LifecycleEvent) -> Bool {
        switch (lifecycle, event) {
        case (.open, .writeEOF):
            lifecycle = .eofPending
        case (.eofPending, .eofWritten):
            lifecycle = .eofWritten
        case (.open, .close), (.eofPending, .close), (.eofWritten, .close):
            lifecycle = .closing
        case (.open, .closeNow), (.eofPending, .closeNow), (.eofWritten, .closeNow), (.closing, .closeNow):
            lifecycle = .closed
        case (.eofPending, .writeEOF), (.eofWritten, .writeEOF), (.closing, .writeEOF), (.closed, .writeEOF),
            (.closing, .close), (.closed, .close), (.closed, .closeNow):
            return false
        case (.open, .eofWritten), (.eofWritten, .eofWritten), (.closing, .eofWritten), (.closed, .eofWritten):
            preconditionFailure("SocketTransport: \(event) in state \(lifecycle)")
        }
        return true
    }

    /// Whether the protocol may still write (open, no writeEOF yet).
    var acceptsWrites: Bool { lifecycle == .open }

    /// Whether the connection is open in the asyncio sense (not closing or closed).
    private var isOpen: Bool {
        switch lifecycle {
        case .open, .eofPending, .eofWritten: true
        case .closing, .closed: false
        }
    }

    /// Schedules `connectionMade`, then starts reading (asyncio's order: the protocol sees the
    /// transport before any data).
    func start(whenMade: (() -> Void)? = nil) {
        loop.assertInLoop()
        selfReference = self
        loop.openResources.insert(self)
        if let counters { counters.opened &+= 1 }
        loop.schedule { [self] in
            defer { whenMade?() }
            guard lifecycle != .closed else { return }
            do {
                try proto.connectionMade(self)
            } catch {
                fail(error, reportingFrom: "connectionMade")
                return
            }
            registerReader()
        }
    }

    // MARK: - Reading

    /// Registers the reader if the transport should read now (open, not paused, no EOF yet).
    private func registerReader() {
        guard !registered.contains(.read), readSide == .active, isOpen else { return }
        do {
            if kind == .writePipe {
                try loop.addReader(fileDescriptor) { [unowned self] in self.readerSideClosed() }
            } else if counters != nil {
                try loop.addReader(fileDescriptor) { [unowned self] in self.readReady(counting: true) }
            } else {
                // Metrics off: a reader that has no counting in it at all, not even a check.
                try loop.addReader(fileDescriptor) { [unowned self] in self.readReady(counting: false) }
            }
            registered.insert(.read)
        } catch {
            forceClose(TransportError.boundary(error, address: cachedPeer))
        }
    }

    private func unregisterReader() {
        guard registered.contains(.read) else { return }
        registered.remove(.read)
        loop.removeReader(fileDescriptor)
    }

    /// A write pipe's fd reported EPOLLERR/EPOLLHUP: the reading side is gone (asyncio: an
    /// error if data was pending, a plain close otherwise).
    private func readerSideClosed() {
        guard lifecycle != .closed else { return }
        if writeQueue.isEmpty {
            forceClose(nil)
        } else {
            forceClose(TransportError(errno: EPIPE, syscall: "write"))
        }
    }

    /// Reads once; `counting` (a constant in each of the two readers registerReader picks
    /// from) adds the bytes to the loop's counters.
    @inline(__always)
    private func readReady(counting: Bool) {
        guard lifecycle != .closed else { return }
        if let buffered {
            readIntoProtocolBuffer(buffered, counting: counting)
            return
        }
        let buffer = buffers.readBuffer
        switch nonBlockingResult(Glibc.read(fileDescriptor, buffer.baseAddress, buffer.count)) {
        case .done(let n) where n > 0:
            if counting, let counters { counters.bytesReceived &+= n }
            do {
                try proto.dataReceived(UnsafeRawBufferPointer(start: buffer.baseAddress, count: n))
            } catch {
                fail(error, reportingFrom: "dataReceived")
            }
        case .done:
            eofReceived()
        case .wouldBlock, .interrupted:
            return
        case .failed(let code):
            forceClose(TransportError(errno: code, syscall: "read", address: cachedPeer))
        }
    }

    @inline(__always)
    private func readIntoProtocolBuffer(_ buffered: any BufferedProtocol, counting: Bool) {
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
        switch nonBlockingResult(Glibc.read(fileDescriptor, base, buffer.count)) {
        case .done(let n) where n > 0:
            if counting, let counters { counters.bytesReceived &+= n }
            do {
                try buffered.bufferUpdated(n)
            } catch {
                fail(error, reportingFrom: "bufferUpdated")
            }
        case .done:
            eofReceived()
        case .wouldBlock, .interrupted:
            return
        case .failed(let code):
            forceClose(TransportError(errno: code, syscall: "read", address: cachedPeer))
        }
    }

    private func eofReceived() {
        readSide = .finished
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
        guard kind != .writePipe, isOpen, readSide == .active else { return }
        readSide = .paused
        unregisterReader()
    }

    func resumeReading() {
        loop.assertInLoop()
        guard kind != .writePipe, isOpen, readSide == .paused else { return }
        readSide = .active
        registerReader()
    }

    var isReading: Bool { kind != .writePipe && isOpen && readSide == .active }

    // MARK: - Writing

    func write(_ bytes: UnsafeRawBufferPointer) {
        loop.assertInLoop()
        guard kind != .readPipe, acceptsWrites, let base = bytes.baseAddress, bytes.count > 0 else {
            return
        }
        if let fileSend {
            // A file is being sent: these bytes follow it.
            fileSend.heldWrites.append(copying: bytes)
            if flow.needsPause(bufferSize: writeBufferSize) {
                proto.pauseWriting()
            }
            return
        }
        var sent = 0
        if writeQueue.isEmpty {
            // Fast path: straight to the kernel, nothing copied if it takes everything.
            sendLoop: while true {
                let n = kind == .socket
                    ? send(fileDescriptor, base, bytes.count, casyncio_msg_nosignal())
                    : Glibc.write(fileDescriptor, base, bytes.count)
                switch nonBlockingResult(n) {
                case .done(let count):
                    sent = count
                    break sendLoop
                case .interrupted:
                    continue
                case .wouldBlock:
                    break sendLoop
                case .failed(let code):
                    forceClose(TransportError(errno: code, syscall: "send", address: cachedPeer))
                    return
                }
            }
            if let counters { counters.bytesSent &+= sent }
            if sent == bytes.count { return }
        }
        writeQueue.append(copying: UnsafeRawBufferPointer(rebasing: bytes[sent...]))
        guard registerWriter() else { return }
        if flow.needsPause(bufferSize: writeQueue.byteCount) {
            proto.pauseWriting()
        }
    }

    /// Watches for writability unless already watching; false if that failed (the transport
    /// is closed then).
    func registerWriter() -> Bool {
        guard !registered.contains(.write) else { return true }
        do {
            try loop.addWriter(fileDescriptor) { [unowned self] in self.writeReady() }
            registered.insert(.write)
            return true
        } catch {
            forceClose(TransportError.boundary(error, address: cachedPeer))
            return false
        }
    }

    private func writeReady() {
        guard lifecycle != .closed else { return }
        flushQueue()
    }

    /// Writes as much of the queue, then of the file being sent, then of the bytes written
    /// after it, as the kernel takes.
    func flushQueue() {
        while true {
            guard flushWriteQueue() else { return }
            guard fileSend != nil else { break }
            guard continueFileSend() else { return }
        }
        finishFlush()
    }

    /// Sends the queue's bytes with gathered sends (sendmsg); false if the kernel took no more
    /// for now or the transport failed.
    private func flushWriteQueue() -> Bool {
        let fd = fileDescriptor
        let isSocket = kind == .socket
        let queuedBefore = writeQueue.byteCount
        let result = writeQueue.drain(iovecs: buffers.iovecs, capacity: SocketBuffers.iovecCount) { iovecs, count in
            if isSocket {
                // sendmsg rather than writev: MSG_NOSIGNAL, so a peer that went away gives
                // EPIPE instead of a SIGPIPE that would kill the process.
                var message = msghdr()
                message.msg_iov = iovecs
                message.msg_iovlen = count
                return sendmsg(fd, &message, casyncio_msg_nosignal())
            }
            // Pipes: SIGPIPE is ignored once a write pipe is connected (see
            // connectWritePipe), so EPIPE comes back as an error here too.
            return writev(fd, iovecs, Int32(count))
        }
        if let counters { counters.bytesSent &+= queuedBefore &- writeQueue.byteCount }
        switch result {
        case .drained:
            return true
        case .wouldBlock:
            return false
        case .failed(let code):
            forceClose(TransportError(errno: code, syscall: "sendmsg", address: cachedPeer))
            return false
        }
    }

    /// Everything was sent: stops watching for writability, resumes the protocol, and goes on
    /// with a pending writeEOF or close.
    func finishFlush() {
        if registered.contains(.write) {
            registered.remove(.write)
            loop.removeWriter(fileDescriptor)
        }
        if flow.needsResume(bufferSize: 0) && lifecycle != .closed {
            proto.resumeWriting()
        }
        switch lifecycle {
        case .eofPending:
            writeEOFNow()
        case .closing:
            forceClose(nil)
        case .open, .eofWritten, .closed:
            break
        }
    }

    func writeEOF() {
        loop.assertInLoop()
        guard kind != .readPipe, move(.writeEOF) else { return }
        if writeQueue.isEmpty && fileSend == nil {
            writeEOFNow()
        }
    }

    /// A socket shuts down its sending side; a write pipe has nothing else to do and closes.
    private func writeEOFNow() {
        move(.eofWritten)
        if kind == .socket {
            shutdown(fileDescriptor, Int32(SHUT_WR))
        } else {
            close()
        }
    }

    var canWriteEOF: Bool { kind != .readPipe }

    var writeBufferSize: Int { writeQueue.byteCount + (fileSend?.heldWrites.byteCount ?? 0) }

    var writeBufferLimits: (low: Int, high: Int) { (flow.low, flow.high) }

    func setWriteBufferLimits(high: Int?, low: Int?) throws(TransportError) {
        loop.assertInLoop()
        try flow.setLimits(high: high, low: low)
        if flow.needsPause(bufferSize: writeBufferSize) {
            proto.pauseWriting()
        } else if flow.needsResume(bufferSize: writeBufferSize) && lifecycle != .closed {
            proto.resumeWriting()
        }
    }

    // MARK: - Closing

    var isClosing: Bool { !isOpen }

    func close() {
        loop.assertInLoop()
        guard move(.close) else { return }
        unregisterReader()
        if writeQueue.isEmpty && fileSend == nil {
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
                error: error, source: "\(self)", logger: logger))
        }
        forceClose(error)
    }

    /// Stops all I/O now and schedules `connectionLost(error)` and the close of the fd.
    /// OS failures arrive here as ``TransportError``s (converted where they happen); a
    /// protocol callback's own error is passed on as it was thrown.
    func forceClose(_ error: (any Error)?) {
        guard move(.closeNow) else { return }
        unregisterReader()
        if registered.contains(.write) {
            registered.remove(.write)
            loop.removeWriter(fileDescriptor)
        }
        writeQueue.removeAll()
        flow.reset()
        if let operation = fileSend {
            fileSend = nil
            operation.complete(.failure(
                (error as? TransportError) ?? TransportError(.closed, "the transport was closed while sending a file")))
        }
        loop.schedule { [self] in callConnectionLost(error) }
    }

    deinit {
        writeQueue.removeAll()
    }

    private func callConnectionLost(_ error: (any Error)?) {
        let lostProtocol = proto
        proto = ClosedProtocol.shared
        buffered = nil
        counters?.countClosed(error)
        lostProtocol.connectionLost(error)
        Glibc.close(fileDescriptor)
        fileDescriptor = -1
        onClosed?(self)
        onClosed = nil
        loop.openResources.remove(self)
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

    var logger: Logger {
        logContext?.logger(peer: peerAddress) ?? loop.logger
    }

    var streamProtocol: any StreamProtocol {
        get { proto }
        set {
            loop.assertInLoop()
            guard lifecycle != .closed else { return }
            proto = newValue
            buffered = newValue as? any BufferedProtocol
        }
    }
}

extension SocketTransport: CustomStringConvertible {
    var description: String {
        "SocketTransport(fd: \(fileDescriptor), peer: \(cachedPeer.map { "\($0)" } ?? "?"), state: \(lifecycle))"
    }
}

extension SocketTransport: OpenResource {
    func loopClosed() {
        _ = move(.closeNow)
        writeQueue.removeAll()
        fileSend = nil
        let lost = proto
        proto = ClosedProtocol.shared
        buffered = nil
        // A TLS layer over this transport is told too: it lets go of its application.
        (lost as? any LoopClosingAware)?.loopClosed()
        if fileDescriptor >= 0 {
            Glibc.close(fileDescriptor)
            fileDescriptor = -1
        }
        onClosed = nil
        selfReference = nil
    }
}
