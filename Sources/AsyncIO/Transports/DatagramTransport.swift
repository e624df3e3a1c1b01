//===----------------------------------------------------------------------===//
// swift-asyncio — UDP: DatagramProtocol, DatagramTransport, createDatagramEndpoint.
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
import DequeModule
public import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The application's side of a datagram endpoint (asyncio's `DatagramProtocol`), called on
/// the loop's thread: `connectionMade → (datagramReceived | errorReceived)* → connectionLost`.
///
/// An error thrown by `connectionMade` or `datagramReceived` goes to the loop's exception
/// handler and aborts the endpoint.
public protocol DatagramProtocol: AnyObject {
    /// The endpoint is ready; keep `transport` to send.
    func connectionMade(_ transport: any DatagramTransport) throws
    /// A datagram arrived from `address`. `bytes` is borrowed: valid only during this call.
    /// Datagrams up to 65,536 bytes arrive whole (every UDP datagram); a longer Unix datagram
    /// is dropped and reported through `errorReceived` (`errno` `EMSGSIZE`).
    ///
    /// A Unix datagram from a socket that is not bound has no address: `address` is then the
    /// unnamed Unix address (``SocketAddress/isUnnamedUnix``, an empty `host`; Python's
    /// `None`), and an answer sent to it fails with `.invalidAddress`.
    func datagramReceived(_ bytes: UnsafeRawBufferPointer, from address: SocketAddress) throws
    /// A send or receive failed without closing the endpoint, e.g. ``TransportError`` with
    /// `.connectionRefused` when a connected endpoint's peer port has no listener (ICMP).
    func errorReceived(_ error: any Error)
    /// The endpoint is closed (`nil`, or the error that closed it). Called exactly once.
    func connectionLost(_ error: (any Error)?)
    /// The send buffer went over its high-water mark.
    func pauseWriting()
    /// The send buffer drained below its low-water mark.
    func resumeWriting()
}

extension DatagramProtocol {
    /// Default: ignores the error.
    public func errorReceived(_ error: any Error) {}
    /// Default: does nothing.
    public func connectionLost(_ error: (any Error)?) {}
    /// Default: does nothing (datagrams are still queued; watch
    /// ``DatagramTransport/writeBufferSize``).
    public func pauseWriting() {}
    /// Default: does nothing.
    public func resumeWriting() {}
}

/// The loop's side of a datagram endpoint (asyncio's `DatagramTransport`).
/// - Important: Loop-bound.
public protocol DatagramTransport: SocketOptionProvider {
    /// The loop the endpoint runs on.
    var loop: EventLoop { get }
    /// Where the endpoint logs (a protocol callback's error): the logger given when it was
    /// made, by default the loop's ``EventLoop/logger``, with `local` metadata (its address).
    var logger: Logger { get }
    /// Sends one datagram to `address` (`nil` for a connected endpoint's peer). Sent at once
    /// if the kernel takes it, otherwise queued (flow control applies). Errors of the send go
    /// to `errorReceived`.
    func sendTo(_ bytes: UnsafeRawBufferPointer, _ address: SocketAddress?)
    /// Closes after sending the queued datagrams; `connectionLost(nil)` follows.
    func close()
    /// Closes now, dropping queued datagrams.
    func abort()
    /// Whether the endpoint is closing or closed.
    var isClosing: Bool { get }
    /// Bytes of queued, unsent datagrams.
    var writeBufferSize: Int { get }
    /// Sets the queue's water marks (defaults 64 KiB / 16 KiB; the same rules as
    /// ``StreamTransport/setWriteBufferLimits(high:low:)``).
    /// - Throws: ``TransportError`` `.invalidArgument` unless `high >= low >= 0`.
    func setWriteBufferLimits(high: Int?, low: Int?) throws(TransportError)
    /// The bound local address.
    var localAddress: SocketAddress? { get }
    /// The peer of a connected endpoint.
    var peerAddress: SocketAddress? { get }
    /// The socket's fd, -1 once closed.
    var fileDescriptor: Int32 { get }
}

extension DatagramTransport {
    /// Sends `bytes` as one datagram to `address` (`nil`: the connected peer).
    public func sendTo(_ bytes: [UInt8], _ address: SocketAddress?) {
        bytes.withUnsafeBytes { sendTo($0, address) }
    }

    /// Sends the UTF-8 bytes of `string` as one datagram.
    public func sendTo(_ string: String, _ address: SocketAddress?) {
        var string = string
        string.withUTF8 { sendTo(UnsafeRawBufferPointer($0), address) }
    }

    /// Sends one datagram to the connected peer.
    public func send(_ bytes: [UInt8]) {
        sendTo(bytes, nil)
    }
}

/// A UDP socket driven by the loop.
final class DatagramSocketTransport: DatagramTransport, @unchecked Sendable {
    private enum State { case open, closing, closed }

    let loop: EventLoop
    private(set) var fileDescriptor: Int32
    private var proto: any DatagramProtocol
    private var state = State.open
    private let connectedPeer: SocketAddress?
    /// The Unix socket file this endpoint's creation bound, removed when it closes.
    var boundFile: UnixSocketFile?
    /// Queued datagrams: a heap copy and the destination.
    private var queue = Deque<(bytes: UnsafeMutableRawBufferPointer, address: SocketAddress?)>()
    private var queuedBytes = 0
    private var writerRegistered = false
    /// While the queue waits out a back-off (see `waitBeforeRetrying`): the timer that tries
    /// again, and the next wait's length.
    private var retryTimer: Handle?
    private var retryDelay = Duration.zero
    private var flow = FlowControl()
    private var selfReference: DatagramSocketTransport?
    /// Its slot in the loop's ``OpenResources`` while it holds an fd (-1: not a member).
    @exclusivity(unchecked) var openResourceSlot = -1
    /// The loop's datagram batch, looked up once.
    private let batch: DatagramBatch
    /// Datagrams read per readiness event at most, so one busy socket cannot starve the loop.
    private static let maxDatagramsPerWakeUp = 64

    /// The logger given when the endpoint was made (the loop's if none), before metadata.
    private let baseLogger: Logger

    init(loop: EventLoop, fd: Int32, protocol: any DatagramProtocol, peer: SocketAddress?, logger: Logger? = nil) {
        self.loop = loop
        self.fileDescriptor = fd
        self.proto = `protocol`
        self.connectedPeer = peer
        self.batch = loop.datagramBatch
        self.baseLogger = logger ?? loop.logger
    }

    var logger: Logger {
        var logger = baseLogger
        if let local = localAddress { logger[metadataKey: "local"] = "\(local)" }
        return logger
    }

    deinit {
        for entry in queue { entry.bytes.deallocate() }
    }

    func start(whenMade: @escaping () -> Void) {
        selfReference = self
        loop.openResources.insert(self)
        loop.schedule { [self] in
            defer { whenMade() }
            guard state != .closed else { return }
            do {
                try proto.connectionMade(self)
                try loop.addReader(fileDescriptor) { [unowned self] in self.readReady() }
            } catch {
                fail(error, from: "connectionMade")
            }
        }
    }

    private func readReady() {
        // Batches of datagrams per system call (recvmmsg), until the socket is drained or
        // `maxDatagramsPerWakeUp` were delivered.
        var delivered = 0
        while delivered < Self.maxDatagramsPerWakeUp {
            guard state != .closed else { return }
            batch.prepareForReceive()
            let received = casyncio_recvmmsg(fileDescriptor, batch.messages, UInt32(DatagramBatch.slots), 0)
            let n: Int
            switch nonBlockingResult(Int(received)) {
            case .done(let count):
                n = count
            case .wouldBlock:
                return
            case .interrupted:
                continue
            case .failed(let code):
                // ICMP errors (ECONNREFUSED, …) are reported; the endpoint keeps working.
                proto.errorReceived(TransportError(errno: code, syscall: "recvmmsg", address: connectedPeer))
                delivered += 1
                continue
            }
            for i in 0..<n {
                guard state != .closed else { return }
                let header = batch.messages[i]
                // No address (length 0): an unbound Unix datagram sender.
                let from = SocketAddress(storage: batch.addresses[i], length: header.msg_hdr.msg_namelen)
                    ?? connectedPeer ?? SocketAddress(unixPath: "")
                if header.msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0 {
                    // Only a Unix datagram can outgrow a slot (UDP's largest is 65,507 bytes).
                    proto.errorReceived(TransportError(
                        .other,
                        "a datagram from \(from.isUnnamedUnix ? "an unbound socket" : from.description) was longer "
                            + "than \(DatagramBatch.slotSize) bytes and was dropped (recvmmsg)", errno: EMSGSIZE))
                    continue
                }
                let bytes = UnsafeRawBufferPointer(start: batch.buffer(i), count: Int(header.msg_len))
                do {
                    try proto.datagramReceived(bytes, from: from)
                } catch {
                    fail(error, from: "datagramReceived")
                    return
                }
            }
            delivered += n
            if n < DatagramBatch.slots { return }   // drained
        }
    }

    func sendTo(_ bytes: UnsafeRawBufferPointer, _ address: SocketAddress?) {
        loop.assertInLoop()
        guard state == .open else { return }
        if queue.isEmpty {
            switch trySend(bytes, address) {
            case .sent, .failed: return
            case .wouldBlock: break
            }
        }
        enqueue(bytes, address)
    }

    /// Copies a datagram into the queue and arranges for the queue to drain (sendmmsg batches
    /// once the socket is writable).
    func enqueue(_ bytes: UnsafeRawBufferPointer, _ address: SocketAddress?) {
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
        if bytes.count > 0 { copy.copyMemory(from: bytes) }
        queue.append((copy, address))
        queuedBytes += bytes.count
        if retryTimer == nil {
            guard armWriter() else { return }
        }
        if flow.needsPause(bufferSize: queuedBytes) {
            proto.pauseWriting()
        }
    }

    /// Registers for writability unless registered; false if that failed (then closed).
    private func armWriter() -> Bool {
        guard !writerRegistered else { return true }
        do {
            try loop.addWriter(fileDescriptor) { [unowned self] in self.writeReady() }
            writerRegistered = true
            return true
        } catch {
            forceClose(error)
            return false
        }
    }

    /// The socket was writable, yet the kernel took nothing: an unconnected Unix datagram
    /// socket whose destination's queue is full (its writability says nothing about another
    /// socket's queue, so epoll would report it writable again at once: a busy loop), or
    /// ENOBUFS. Tries again after a pause instead, 1 ms doubling to 64 ms while nothing goes.
    private func waitBeforeRetrying() {
        retryDelay = min(max(retryDelay * 2, .milliseconds(1)), .milliseconds(64))
        if writerRegistered {
            writerRegistered = false
            loop.removeWriter(fileDescriptor)
        }
        retryTimer = loop.callLater(after: retryDelay) { [unowned self] in
            retryTimer = nil
            if state != .closed && !queue.isEmpty { writeReady() }
        }
    }

    private enum SendResult { case sent, wouldBlock, failed }

    private func trySend(_ bytes: UnsafeRawBufferPointer, _ address: SocketAddress?) -> SendResult {
        while true {
            let n: Int
            if let address, connectedPeer == nil {
                n = (try? address.withSockAddr { sendto(fileDescriptor, bytes.baseAddress, bytes.count, casyncio_msg_nosignal(), $0, $1) }) ?? -2
            } else {
                n = Glibc.send(fileDescriptor, bytes.baseAddress, bytes.count, casyncio_msg_nosignal())
            }
            if n == -2 {
                proto.errorReceived(TransportError(.invalidAddress, "cannot send to \(address.map { "\($0)" } ?? "nil")"))
                return .failed
            }
            switch nonBlockingResult(n) {
            case .done: return .sent
            case .interrupted: continue
            case .wouldBlock, .failed(ENOBUFS): return .wouldBlock
            case .failed(let code):
                proto.errorReceived(TransportError(errno: code, syscall: "sendto", address: address ?? connectedPeer))
                return .failed
            }
        }
    }

    private func writeReady() {
        // Queued datagrams go out in batches (sendmmsg).
        var progressed = false
        while !queue.isEmpty && state != .closed {
            let count = min(queue.count, DatagramBatch.slots)
            for i in 0..<count {
                let entry = queue[i]
                var length: socklen_t = 0
                if let address = entry.address, connectedPeer == nil {
                    length = address.copy(into: batch.addresses + i)
                }
                batch.prepareForSend(slot: i, bytes: entry.bytes, addressLength: length)
            }
            let sent = casyncio_sendmmsg(fileDescriptor, batch.messages, UInt32(count), casyncio_msg_nosignal())
            switch nonBlockingResult(Int(sent)) {
            case .done(let datagrams):
                dropFirstQueued(datagrams)
                progressed = true
            case .interrupted:
                continue
            case .wouldBlock, .failed(ENOBUFS):
                if progressed {
                    retryDelay = .zero
                    _ = armWriter()
                } else {
                    waitBeforeRetrying()
                }
                return
            case .failed(let code):
                // The first datagram failed: report it, drop it, go on with the rest.
                proto.errorReceived(TransportError(errno: code, syscall: "sendmmsg", address: queue[0].address ?? connectedPeer))
                dropFirstQueued(1)
                progressed = true
            }
        }
        retryDelay = .zero
        if writerRegistered {
            writerRegistered = false
            loop.removeWriter(fileDescriptor)
        }
        if flow.needsResume(bufferSize: queuedBytes) {
            proto.resumeWriting()
        }
        if state == .closing { forceClose(nil) }
    }

    private func dropFirstQueued(_ count: Int) {
        for _ in 0..<count {
            guard let entry = queue.popFirst() else { return }
            queuedBytes -= entry.bytes.count
            entry.bytes.deallocate()
        }
    }

    var isClosing: Bool { state != .open }
    var writeBufferSize: Int { queuedBytes }

    func setWriteBufferLimits(high: Int?, low: Int?) throws(TransportError) {
        loop.assertInLoop()
        try flow.setLimits(high: high, low: low)
        if flow.needsPause(bufferSize: queuedBytes) {
            proto.pauseWriting()
        } else if flow.needsResume(bufferSize: queuedBytes) && state != .closed {
            proto.resumeWriting()
        }
    }

    var localAddress: SocketAddress? { fileDescriptor >= 0 ? Socket.localAddress(fileDescriptor) : nil }
    var peerAddress: SocketAddress? { connectedPeer }

    func close() {
        loop.assertInLoop()
        guard state == .open else { return }
        state = .closing
        loop.removeReader(fileDescriptor)
        if queue.isEmpty { forceClose(nil) }
    }

    func abort() {
        loop.assertInLoop()
        forceClose(nil)
    }

    private func fail(_ error: any Error, from callback: String) {
        loop.callExceptionHandler(ExceptionContext(
            message: "error in datagram protocol callback \(callback); the endpoint is aborted",
            error: error, source: "fd \(fileDescriptor)", logger: logger))
        forceClose(error)
    }

    private func forceClose(_ error: (any Error)?) {
        guard state != .closed else { return }
        state = .closed
        loop.removeReader(fileDescriptor)
        if writerRegistered {
            writerRegistered = false
            loop.removeWriter(fileDescriptor)
        }
        retryTimer?.cancel()
        retryTimer = nil
        for entry in queue { entry.bytes.deallocate() }
        queue.removeAll()
        queuedBytes = 0
        loop.schedule { [self] in
            proto.connectionLost(error)
            // A protocol that keeps its transport (most do) would form a cycle with it.
            proto = ClosedDatagramProtocol()
            Glibc.close(fileDescriptor)
            fileDescriptor = -1
            boundFile?.remove()
            loop.openResources.remove(self)
            selfReference = nil
        }
    }
}

extension DatagramSocketTransport: OpenResource {
    func loopClosed() {
        state = .closed
        retryTimer = nil
        for entry in queue { entry.bytes.deallocate() }
        queue.removeAll()
        queuedBytes = 0
        proto = ClosedDatagramProtocol()
        if fileDescriptor >= 0 {
            Glibc.close(fileDescriptor)
            fileDescriptor = -1
            boundFile?.remove()
        }
        selfReference = nil
    }
}

extension EventLoop {
    /// Creates a UDP endpoint (asyncio's `create_datagram_endpoint`) and returns its transport
    /// and the protocol made by `factory`, after `connectionMade` ran.
    ///
    /// - Parameters:
    ///   - localHost: the host of the address to bind (a server), or `nil` for any.
    ///   - localPort: its port, or `nil` for an ephemeral one.
    ///   - remoteHost: the peer to connect to (a connected client: `sendTo(_, nil)`
    ///     and ICMP errors reported through `errorReceived`), or `nil`.
    ///   - remotePort: the peer's port.
    ///   - reusePort: `SO_REUSEPORT`, for one endpoint per loop on the same port, or several
    ///     endpoints (and other programs that set it too) receiving one multicast group.
    ///   - allowBroadcast: `SO_BROADCAST`.
    ///   - logger: What the endpoint's ``DatagramTransport/logger`` extends with `local`
    ///     metadata; `nil`: the loop's ``EventLoop/logger``.
    ///   - factory: Makes the endpoint's protocol.
    /// - Returns: The transport and the protocol.
    /// - Throws: ``TransportError`` (`.addressInUse` names the address), ``ResolutionError``.
    /// - Important: Call from a task running on this loop.
    public func createDatagramEndpoint<P: DatagramProtocol>(
        localHost: String? = nil,
        localPort: Int? = nil,
        remoteHost: String? = nil,
        remotePort: Int? = nil,
        reusePort: Bool = false,
        allowBroadcast: Bool = false,
        logger: Logger? = nil,
        _ factory: () -> P
    ) async throws -> (any DatagramTransport, P) {
        try await createDatagramEndpoint(
            localHost: localHost, localPort: localPort, remoteHost: remoteHost, remotePort: remotePort,
            reusePort: reusePort, requireFreePort: false, allowBroadcast: allowBroadcast, logger: logger, factory)
    }

    func createDatagramEndpoint<P: DatagramProtocol>(
        localHost: String?,
        localPort: Int?,
        remoteHost: String?,
        remotePort: Int?,
        reusePort: Bool,
        requireFreePort: Bool,
        allowBroadcast: Bool,
        logger: Logger? = nil,
        _ factory: () -> P
    ) async throws -> (any DatagramTransport, P) {
        let proto = factory()
        let transport = try await makeDatagramEndpoint(
            localHost: localHost, localPort: localPort, remoteHost: remoteHost, remotePort: remotePort,
            reusePort: reusePort, requireFreePort: requireFreePort, allowBroadcast: allowBroadcast, logger: logger, proto)
        return (transport, proto)
    }

    func makeDatagramEndpoint(
        localHost: String?,
        localPort: Int?,
        remoteHost: String?,
        remotePort: Int?,
        reusePort: Bool,
        requireFreePort: Bool,
        allowBroadcast: Bool,
        logger: Logger? = nil,
        _ proto: any DatagramProtocol
    ) async throws -> any DatagramTransport {
        var remote: SocketAddress?
        if let remoteHost {
            remote = try await resolve(host: remoteHost, port: remotePort ?? 0).first
        }
        var local: SocketAddress?
        if localHost != nil || localPort != nil {
            let candidates = try await resolve(host: localHost, port: localPort ?? 0, passive: true)
            local = candidates.first { remote == nil || $0.family == remote?.family } ?? candidates.first
        }
        guard let family = remote?.family ?? local?.family else {
            throw TransportError(.invalidAddress, "createDatagramEndpoint needs a local or a remote address")
        }
        if reusePort && requireFreePort, let local, local.port != 0 {
            let probe = Glibc.socket(family, casyncio_sock_dgram() | casyncio_sock_nonblock_cloexec(), 0)
            if probe >= 0 {
                defer { Glibc.close(probe) }
                try Socket.bind(probe, local)
            }
        }
        let fd = Glibc.socket(family, casyncio_sock_dgram() | casyncio_sock_nonblock_cloexec(), 0)
        guard fd >= 0 else { throw TransportError(errno: errno, syscall: "socket") }
        do {
            if reusePort { Socket.setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1) }
            if allowBroadcast { Socket.setOption(fd, SOL_SOCKET, SO_BROADCAST, 1) }
            if family == AF_INET6 { Socket.setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
            if let local { try Socket.bind(fd, local) }
            if let remote {
                let rc = try remote.withSockAddr { Glibc.connect(fd, $0, $1) }
                if rc != 0 { throw TransportError(errno: errno, syscall: "connect", address: remote) }
            }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return await startDatagramTransport(fd: fd, proto, peer: remote, logger: logger)
    }

    /// Wraps a bound (or connected) datagram socket and waits until `connectionMade` ran.
    func startDatagramTransport(
        fd: Int32, _ proto: any DatagramProtocol, peer: SocketAddress?, logger: Logger? = nil
    ) async -> any DatagramTransport {
        await startDatagramTransport(DatagramSocketTransport(loop: self, fd: fd, protocol: proto, peer: peer, logger: logger))
    }

    /// Starts `transport` and waits until `connectionMade` ran.
    func startDatagramTransport(_ transport: DatagramSocketTransport) async -> any DatagramTransport {
        let made = Future<Void>(loop: self)
        transport.start { made.complete(.success(())) }
        await made.waitDone()
        return transport
    }
}

/// The protocol of an endpoint whose loop closed: it holds nothing and does nothing.
private final class ClosedDatagramProtocol: DatagramProtocol {
    func connectionMade(_ transport: any DatagramTransport) {}
    func datagramReceived(_ bytes: UnsafeRawBufferPointer, from address: SocketAddress) {}
}
