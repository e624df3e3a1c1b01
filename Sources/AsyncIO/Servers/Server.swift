//===----------------------------------------------------------------------===//
// swift-asyncio — Server: listening sockets that accept connections into transports.
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
public import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A listening server (asyncio's `Server`): one or more listening sockets on one loop; each
/// accepted connection gets a new protocol from the factory and a ``StreamTransport``.
///
/// Accept drains every pending connection per wake-up (up to the backlog). When the process
/// runs out of fds (EMFILE/ENFILE) the server keeps serving the connections it has, stops
/// accepting for ``acceptRetryDelay`` and then tries again (asyncio's approach).
///
/// - Important: Loop-bound.
public final class Server: @unchecked Sendable {
    /// How long accepting pauses after EMFILE/ENFILE/ENOBUFS/ENOMEM (asyncio: 1 s).
    public static let acceptRetryDelay: Duration = .seconds(1)

    /// The loop the server runs on.
    public let loop: EventLoop
    /// Where the server logs (accept trouble), and what each connection's
    /// ``StreamTransport/logger`` starts from: the logger given to `createServer` or, by
    /// default, the loop's ``EventLoop/logger``.
    public let logger: Logger
    private var listeners: [(fd: Int32, address: SocketAddress)]
    var listenerList: [(fd: Int32, address: SocketAddress)] { listeners }
    private let factory: () -> any StreamProtocol
    private let backlog: Int32
    /// Open connections, keyed by their socket transport; the value is the transport the
    /// application sees (the TLS layer for TLS servers), which close and abort go through.
    private var clients: [ObjectIdentifier: any StreamTransport] = [:]
    private var serving = false
    private var closed = false
    private var acceptRetry: Handle?
    private var waiters: [Future<Void>] = []
    /// A serving server is kept alive by its loop, as in asyncio, until ``close()``.
    private var selfReference: Server?
    /// Its slot in the loop's ``OpenResources`` while it holds an fd (-1: not a member).
    @exclusivity(unchecked) var openResourceSlot = -1
    /// A Unix socket file to remove on close.
    private let unixPath: String?
    /// TLS for every connection: a handshake first, then the factory's protocol.
    let tls: TLSContext?

    init(loop: EventLoop, listeners: [(fd: Int32, address: SocketAddress)], backlog: Int32,
         unixPath: String?, tls: TLSContext? = nil, logger: Logger? = nil,
         factory: @escaping () -> any StreamProtocol) {
        self.loop = loop
        self.logger = logger ?? loop.logger
        self.listeners = listeners
        self.backlog = backlog
        self.unixPath = unixPath
        self.tls = tls
        self.factory = factory
    }

    deinit {
        for listener in listeners { Glibc.close(listener.fd) }
    }

    /// The addresses the server listens on (with the actual port if 0 was asked for).
    public var addresses: [SocketAddress] { listeners.map(\.address) }

    /// Whether the server accepts connections.
    public var isServing: Bool { serving }

    /// How many connections are open.
    public var connectionCount: Int { clients.count }

    /// Starts accepting (``EventLoop/createServer(host:port:tls:backlog:reuseAddress:reusePort:startServing:logger:_:)``
    /// does this unless told not to).
    /// - Important: Loop-bound.
    public func startServing() throws {
        loop.assertInLoop()
        if closed { throw TransportError(.closed, "the server is closed") }
        guard !serving else { return }
        try watchListeners()
        serving = true
        selfReference = self
        loop.openResources.insert(self)
    }

    private func watchListeners() throws {
        for listener in listeners {
            let fd = listener.fd
            try loop.addReader(fd) { [unowned self] in self.acceptReady(fd) }
        }
    }

    private func unwatchListeners() {
        for listener in listeners { loop.removeReader(listener.fd) }
    }

    private func acceptReady(_ listenerFD: Int32) {
        guard serving else { return }
        for _ in 0..<max(1, backlog) {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutableBytes(of: &storage) {
                casyncio_accept4(
                    listenerFD, $0.baseAddress?.assumingMemoryBound(to: sockaddr.self), &length,
                    casyncio_sock_nonblock_cloexec())
            }
            if fd < 0 {
                switch errno {
                case EAGAIN, EWOULDBLOCK:
                    return
                case EINTR, ECONNABORTED, EPROTO:
                    continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    let error = TransportError(errno: errno, syscall: "accept4")
                    logger.warning(
                        "cannot accept more connections, retrying in \(Self.acceptRetryDelay)",
                        metadata: ["error": "\(error)"])
                    unwatchListeners()
                    acceptRetry?.cancel()
                    acceptRetry = loop.callLater(after: Self.acceptRetryDelay) { [weak self] in
                        guard let self, self.serving else { return }
                        try? self.watchListeners()
                    }
                    return
                default:
                    loop.callExceptionHandler(ExceptionContext(
                        message: "accept failed", error: TransportError(errno: errno, syscall: "accept4"),
                        source: "\(self)", logger: logger))
                    return
                }
            }
            if Int32(storage.ss_family) != AF_UNIX {
                Socket.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
            }
            var layer: TLSTransport?
            if let tls {
                // The application's protocol is made once the handshake succeeded.
                do {
                    layer = try TLSTransport(loop: loop, context: tls, app: nil, factory: factory)
                } catch {
                    logger.warning("cannot start TLS on an accepted connection", metadata: ["error": "\(error)"])
                    Glibc.close(fd)
                    continue
                }
            }
            let proto: any StreamProtocol
            if let layer { proto = layer } else { proto = factory() }
            let transport = SocketTransport(
                loop: loop, fd: fd, protocol: proto, log: ConnectionLogContext(base: logger))
            clients[ObjectIdentifier(transport)] = layer ?? transport
            transport.onClosed = { [weak self] transport in self?.detach(transport) }
            if let counters = transport.counters { counters.accepted &+= 1 }
            transport.start()
        }
    }

    private func detach(_ transport: SocketTransport) {
        clients.removeValue(forKey: ObjectIdentifier(transport))
        wakeWaitersIfDone()
    }

    private func wakeWaitersIfDone() {
        guard closed, clients.isEmpty else { return }
        let done = waiters
        waiters = []
        for waiter in done { waiter.complete(.success(())) }
    }

    /// Stops listening and closes the listening sockets (and removes a Unix socket file the
    /// server created). Connections already accepted stay open. Calling it twice is harmless.
    /// - Important: Loop-bound.
    public func close() {
        loop.assertInLoop()
        guard !closed else { return }
        closed = true
        if serving { unwatchListeners() }
        serving = false
        acceptRetry?.cancel()
        for listener in listeners { Glibc.close(listener.fd) }
        if let unixPath { unlink(unixPath) }
        listeners = []
        wakeWaitersIfDone()
        loop.openResources.remove(self)
        selfReference = nil
    }

    /// Closes every open connection after flushing its buffer (TLS connections send
    /// close_notify first; those still in their handshake are dropped).
    /// - Important: Loop-bound.
    public func closeClients() {
        for client in Array(clients.values) { client.close() }
    }

    /// Aborts every open connection.
    /// - Important: Loop-bound.
    public func abortClients() {
        for client in Array(clients.values) { client.abort() }
    }

    /// Waits until the server is closed and all its connections are gone (asyncio 3.12's
    /// `wait_closed`). Returns early if the calling task is cancelled, so it can be bounded
    /// with ``waitFor(timeout:_:)``.
    /// - Important: Call from a task running on the server's loop.
    public func waitClosed() async {
        loop.preconditionInLoop()
        if closed && clients.isEmpty { return }
        let waiter = Future<Void>(loop: loop)
        waiters.append(waiter)
        _ = try? await waiter.value
        waiters.removeAll { $0 === waiter }
    }

    /// Serves until the calling task is cancelled, then closes the server and its connections
    /// (asyncio's `serve_forever`) and waits until every connection is gone, however long its
    /// flush takes (a peer that never reads keeps it waiting: abort such connections with
    /// ``abortClients()`` from elsewhere).
    /// - Throws: `CancellationError` when cancelled, once the connections are gone.
    /// - Important: Call from a task running on the server's loop.
    public func serveForever() async throws {
        try startServing()
        let forever = Future<Void>(loop: loop)
        do {
            try await forever.value
        } catch {
            close()
            closeClients()
            // The task is cancelled, so `waitClosed` would return at once: wait on a future
            // that ignores the task's cancellation instead.
            if !clients.isEmpty {
                let waiter = Future<Void>(loop: loop)
                waiters.append(waiter)
                await waiter.waitDone()
            }
            throw error
        }
    }
}

extension Server: CustomStringConvertible {
    /// `Server(addresses, serving: …)`, for logs and debugging.
    public var description: String {
        "Server(\(listeners.map { "\($0.address)" }.joined(separator: ", ")), serving: \(serving))"
    }
}

extension Server: OpenResource {
    /// The loop closed while the server listened: its sockets close, its Unix socket file
    /// goes, and nothing keeps it alive any more (its connections are told on their own).
    func loopClosed() {
        closed = true
        serving = false
        acceptRetry = nil
        for listener in listeners { Glibc.close(listener.fd) }
        if let unixPath { unlink(unixPath) }
        listeners = []
        selfReference = nil
    }
}
