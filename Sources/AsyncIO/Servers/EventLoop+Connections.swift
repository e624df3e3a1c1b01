//===----------------------------------------------------------------------===//
// swift-asyncio — createServer, createUnixServer, createConnection, createUnixConnection.
//===----------------------------------------------------------------------===//

public import Logging
#if canImport(Glibc)
import Glibc
#endif

extension EventLoop {
    // MARK: - Servers

    /// Starts a TCP server (asyncio's `create_server`): binds every address `host` resolves
    /// to (every local address if `nil`), IPv4 and IPv6, and accepts connections, each with a
    /// new protocol from `factory`.
    ///
    /// ```swift
    /// let server = try await loop.createServer(host: "127.0.0.1", port: 8888) { Echo() }
    /// print("listening on", server.addresses[0])
    /// ```
    /// - Parameters:
    ///   - host: A name or numeric address; `nil` for all interfaces.
    ///   - port: 0...65535; 0 picks a free port (the same one for every address).
    ///   - tls: Serve TLS with this server context: each connection's protocol is made, and
    ///     sees `connectionMade`, once its handshake succeeded (a failed handshake is logged at
    ///     debug level and closes only that connection).
    ///   - backlog: The listen queue length.
    ///   - reuseAddress: `SO_REUSEADDR` (rebinding a port in TIME_WAIT).
    ///   - reusePort: `SO_REUSEPORT` (several sockets, e.g. one per loop, share the port).
    ///   - startServing: Accept at once; otherwise call ``Server/startServing()`` or
    ///     ``Server/serveForever()``.
    ///   - logger: The server's ``Server/logger``, which each connection's
    ///     ``StreamTransport/logger`` extends with `connection` and `peer` metadata; `nil`:
    ///     the loop's ``EventLoop/logger``.
    ///   - factory: Makes the protocol of each accepted connection.
    /// - Throws: ``TransportError`` (`.addressInUse` names the address), ``ResolutionError``.
    /// - Important: Call from a task running on this loop.
    public func createServer(
        host: String? = nil,
        port: Int,
        tls: TLSContext? = nil,
        backlog: Int = 100,
        reuseAddress: Bool = true,
        reusePort: Bool = false,
        startServing: Bool = true,
        logger: Logger? = nil,
        _ factory: @escaping () -> any StreamProtocol
    ) async throws -> Server {
        try await createServer(
            hosts: host.map { [$0] } ?? [], port: port, tls: tls, backlog: backlog, reuseAddress: reuseAddress,
            reusePort: reusePort, startServing: startServing, logger: logger, factory)
    }

    /// Starts a TCP server on several hosts at once (asyncio's `create_server` with a list of
    /// hosts); see ``createServer(host:port:tls:backlog:reuseAddress:reusePort:startServing:logger:_:)``.
    public func createServer(
        hosts: [String],
        port: Int,
        tls: TLSContext? = nil,
        backlog: Int = 100,
        reuseAddress: Bool = true,
        reusePort: Bool = false,
        startServing: Bool = true,
        logger: Logger? = nil,
        _ factory: @escaping () -> any StreamProtocol
    ) async throws -> Server {
        try await createServer(
            hosts: hosts, port: port, tls: tls, backlog: backlog, reuseAddress: reuseAddress, reusePort: reusePort,
            requireFreePort: false, startServing: startServing, logger: logger, factory)
    }

    /// `requireFreePort`: with `reusePort`, first check with a plain bind that nobody else
    /// (another process using SO_REUSEPORT too) already listens on the port, so that
    /// "address in use" is reported instead of silently sharing the port.
    func createServer(
        hosts: [String],
        port: Int,
        tls: TLSContext?,
        backlog: Int,
        reuseAddress: Bool,
        reusePort: Bool,
        requireFreePort: Bool,
        startServing: Bool,
        logger: Logger?,
        _ factory: @escaping () -> any StreamProtocol
    ) async throws -> Server {
        var addresses: [SocketAddress] = []
        for host in hosts.isEmpty ? [nil] : hosts.map(Optional.some) {
            for address in try await resolve(host: host, port: port, passive: true) where !addresses.contains(address) {
                addresses.append(address)
            }
        }
        var listeners: [(fd: Int32, address: SocketAddress)] = []
        do {
            var boundPort = port
            for address in addresses {
                let target = boundPort != 0 ? address.withPort(boundPort) : address
                if reusePort && requireFreePort && target.port != 0 {
                    let probe = try Socket.makeStream(family: target.family)
                    defer { Glibc.close(probe) }
                    Socket.setOption(probe, SOL_SOCKET, SO_REUSEADDR, 1)
                    if target.family == AF_INET6 { Socket.setOption(probe, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
                    try Socket.bind(probe, target)
                }
                let fd = try Socket.makeStream(family: target.family)
                do {
                    if reuseAddress { Socket.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1) }
                    if reusePort { Socket.setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1) }
                    // Lets 0.0.0.0 and :: share a port, as asyncio does.
                    if target.family == AF_INET6 { Socket.setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
                    try Socket.bind(fd, target)
                    try Socket.listen(fd, backlog: Int32(clamping: backlog), address: target)
                } catch {
                    Glibc.close(fd)
                    throw error
                }
                let actual = Socket.localAddress(fd) ?? target
                if boundPort == 0 { boundPort = actual.port ?? 0 }
                listeners.append((fd, actual))
            }
        } catch {
            for listener in listeners { Glibc.close(listener.fd) }
            throw error
        }
        let server = Server(
            loop: self, listeners: listeners, backlog: Int32(clamping: backlog), unixPath: nil, tls: tls,
            logger: logger, factory: factory)
        if startServing { try server.startServing() }
        return server
    }

    /// Starts a Unix stream socket server at `path` (asyncio's `create_unix_server`). A stale
    /// socket file (nothing listening) is replaced; the server removes its file on close.
    /// A `path` with a leading NUL (`"\0name"`, see ``SocketAddress/init(abstractUnixName:)``)
    /// is a name in Linux's abstract namespace: no file at all.
    ///
    /// With `tls`, connections are TLS, and `logger` is the server's, as in
    /// ``createServer(host:port:tls:backlog:reuseAddress:reusePort:startServing:logger:_:)``.
    ///
    /// - Throws: ``TransportError``: `.addressInUse` if a server already listens at `path`
    ///   or a file that is not a socket is in the way; `.invalidAddress` for a path too long.
    /// - Important: Call from a task running on this loop.
    public func createUnixServer(
        path: String,
        tls: TLSContext? = nil,
        backlog: Int = 100,
        startServing: Bool = true,
        logger: Logger? = nil,
        _ factory: @escaping () -> any StreamProtocol
    ) async throws -> Server {
        let address = SocketAddress(unixPath: path)
        // An abstract name has no file: nothing stale to remove, nothing to unlink on close.
        if !address.isAbstractUnix { try removeStaleUnixSocket(address) }
        let fd = try Socket.makeStream(family: AF_UNIX)
        do {
            try Socket.bind(fd, address)
            try Socket.listen(fd, backlog: Int32(clamping: backlog), address: address)
        } catch {
            Glibc.close(fd)
            throw error
        }
        let server = Server(
            loop: self, listeners: [(fd, address)], backlog: Int32(clamping: backlog),
            unixPath: address.isAbstractUnix ? nil : path,
            tls: tls, logger: logger, factory: factory)
        if startServing { try server.startServing() }
        return server
    }

    /// Removes `address`'s file if it is a socket nobody listens on or is bound to (a stream
    /// probe is refused by a file without a socket; a live socket of either type, stream or
    /// datagram, is in use).
    func removeStaleUnixSocket(_ address: SocketAddress) throws {
        let path = address.host
        var info = stat()
        guard lstat(path, &info) == 0 else { return }   // nothing there
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw TransportError(.addressInUse, "a file that is not a socket is in the way: \(path)", errno: EADDRINUSE)
        }
        let probe = try Socket.makeStream(family: AF_UNIX)
        defer { Glibc.close(probe) }
        do {
            _ = try Socket.connect(probe, address)
        } catch let error as TransportError where error.code == .connectionRefused {
            unlink(path)   // stale: its server is gone
            return
        } catch let error as TransportError where error.errno == EPROTOTYPE {
            // A live socket of the other type (a datagram socket): in use all the same.
        }
        throw TransportError(.addressInUse, "address already in use: \(path)", errno: EADDRINUSE)
    }

    // MARK: - Connections

    /// Connects to `host`:`port` over TCP (asyncio's `create_connection`) and returns the
    /// transport and the protocol made by `factory`, after `connectionMade` ran.
    ///
    /// Every resolved address is tried with happy eyeballs (RFC 8305): families interleaved,
    /// a new attempt every `happyEyeballsDelay` or as soon as the previous one failed; the
    /// first to connect wins and the others are closed. `TCP_NODELAY` is on.
    ///
    /// With `tls`, the TLS handshake runs first and the call returns once it succeeded (and
    /// `connectionMade` ran); the transport returned encrypts and decrypts.
    /// - Parameters:
    ///   - host: A name (looked up on the default executor, so the loop does not block on DNS)
    ///     or a numeric address.
    ///   - port: The TCP port.
    ///   - tls: A client ``TLSContext`` to speak TLS.
    ///   - serverHostname: The name for SNI and for checking the server's certificate;
    ///     defaults to `host`. An IP address is checked against the certificate's IP SANs.
    ///   - session: A ``TLSSession`` from an earlier connection to resume.
    ///   - logger: What the connection's ``StreamTransport/logger`` extends with `connection`
    ///     and `peer` metadata; `nil`: the loop's ``EventLoop/logger``.
    ///   - happyEyeballsDelay: How long an attempt runs alone before the next address is tried.
    ///   - factory: Makes the connection's protocol.
    /// - Returns: The transport and the protocol.
    /// - Throws: ``TransportError`` (`.connectionRefused`, `.timedOut`, `.unreachable`, …: the
    ///   first attempt's error if all fail), ``ResolutionError``, ``TLSError``
    ///   (`.certificateVerificationFailed` with the reason, `.handshakeFailed`,
    ///   `.handshakeTimeout`, …).
    /// - Important: Call from a task running on this loop.
    public func createConnection<P: StreamProtocol>(
        host: String,
        port: Int,
        tls: TLSContext? = nil,
        serverHostname: String? = nil,
        session: TLSSession? = nil,
        happyEyeballsDelay: Duration = .milliseconds(250),
        logger: Logger? = nil,
        _ factory: () -> P
    ) async throws -> (any StreamTransport, P) {
        let addresses = Self.interleaveFamilies(try await resolve(host: host, port: port))
        let fd = try await connectHappyEyeballs(addresses, delay: happyEyeballsDelay)
        Socket.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        return try await startTransport(
            fd: fd, factory(), tls: tls, serverHostname: serverHostname ?? host, session: session,
            log: ConnectionLogContext(base: logger ?? self.logger))
    }

    /// Connects to the Unix stream socket at `path` (asyncio's `create_unix_connection`; a
    /// leading NUL, `"\0name"`, names an abstract socket),
    /// with TLS if `tls` is given (see
    /// ``createConnection(host:port:tls:serverHostname:session:happyEyeballsDelay:logger:_:)``;
    /// `serverHostname` has no default here, and a context that verifies the server's name
    /// needs one: the name its certificate carries).
    /// - Throws: ``TransportError`` (`.connectionRefused` if nothing listens or the file does
    ///   not exist, `.invalidAddress` for a path too long), ``TLSError``.
    /// - Important: Call from a task running on this loop.
    public func createUnixConnection<P: StreamProtocol>(
        path: String,
        tls: TLSContext? = nil,
        serverHostname: String? = nil,
        session: TLSSession? = nil,
        logger: Logger? = nil,
        _ factory: () -> P
    ) async throws -> (any StreamTransport, P) {
        let fd = try await connectAttempt(SocketAddress(unixPath: path))
        return try await startTransport(
            fd: fd, factory(), tls: tls, serverHostname: serverHostname, session: session,
            log: ConnectionLogContext(base: logger ?? self.logger))
    }

    /// Wraps a connected socket and waits until `connectionMade` ran (after the TLS handshake
    /// with `tls`, as its client, or as its server with `serverSide`). Owns `fd` (closed on
    /// any error). `log`: the connection's logging context (`nil`: the loop's logger).
    func startTransport<P: StreamProtocol>(
        fd: Int32, _ proto: P, tls: TLSContext?, serverHostname: String?, session: TLSSession?,
        serverSide: Bool = false, log: ConnectionLogContext? = nil
    ) async throws -> (any StreamTransport, P) {
        let log = log ?? ConnectionLogContext(base: self.logger)
        guard let tls else {
            let transport = SocketTransport(loop: self, fd: fd, protocol: proto, log: log)
            let made = Future<Void>(loop: self)
            transport.start { made.complete(.success(())) }
            await made.waitDone()
            return (transport, proto)
        }
        guard tls.isServer == serverSide else {
            Glibc.close(fd)
            throw TLSError(
                .configuration,
                serverSide ? "an accepted connection needs a server TLSContext" : "a client connection needs a client TLSContext")
        }
        let handshake = Future<Void>(loop: self)
        let layer: TLSTransport
        do {
            layer = try TLSTransport(
                loop: self, context: tls, app: proto, serverHostname: serverHostname, session: session,
                waiter: handshake)
        } catch {
            Glibc.close(fd)
            throw error
        }
        let transport = SocketTransport(loop: self, fd: fd, protocol: layer, log: log)
        transport.start()
        do {
            try await handshake.value
        } catch {
            layer.abort()
            transport.abort()   // also when cancelled before the transport started
            throw error
        }
        return (layer, proto)
    }

    /// One non-blocking connect, awaited on the loop. Cancelling closes the socket.
    func connectAttempt(_ address: SocketAddress) async throws -> Int32 {
        let fd = try Socket.makeStream(family: address.family)
        do {
            if try Socket.connect(fd, address) { return fd }
            let writable = Future<Void>(loop: self)
            try addWriter(fd) { writable.complete(.success(())) }
            defer { removeWriter(fd) }
            try await writable.value
            let error = Socket.intOption(fd, SOL_SOCKET, SO_ERROR)
            if error != 0 { throw TransportError(errno: error, syscall: "connect", address: address) }
            return fd
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// RFC 8305 §4: alternate address families, starting with the first one returned.
    static func interleaveFamilies(_ addresses: [SocketAddress]) -> [SocketAddress] {
        guard let firstFamily = addresses.first?.family else { return addresses }
        var preferred = addresses.filter { $0.family == firstFamily }[...]
        var others = addresses.filter { $0.family != firstFamily }[...]
        var result: [SocketAddress] = []
        while !preferred.isEmpty || !others.isEmpty {
            if let next = preferred.popFirst() { result.append(next) }
            if let next = others.popFirst() { result.append(next) }
        }
        return result
    }

    /// Races connection attempts, starting one every `delay` (or when the previous failed).
    func connectHappyEyeballs(_ addresses: [SocketAddress], delay: Duration) async throws -> Int32 {
        if addresses.count == 1 { return try await connectAttempt(addresses[0]) }
        final class Race: @unchecked Sendable {
            var errors: [any Error] = []
            var attempts: [LoopTask<Void>] = []
        }
        let race = Race()
        let winner = Future<Int32>(loop: self)
        let total = addresses.count
        do {
            for address in addresses {
                if winner.isDone { break }
                let step = Future<Void>(loop: self)
                let attempt = createTask { [self] in
                    do {
                        let fd = try await connectAttempt(address)
                        if winner.isDone { Glibc.close(fd) } else { winner.complete(.success(fd)) }
                    } catch {
                        race.errors.append(error)
                        if race.errors.count == total, let first = race.errors.first {
                            winner.complete(.failure(first))
                        }
                        step.complete(.success(()))
                    }
                }
                race.attempts.append(attempt)
                let timer = callLater(after: delay) { step.complete(.success(())) }
                winner._whenDone { _ in step.complete(.success(())) }
                try await step.value
                timer.cancel()
            }
            let fd = try await winner.value
            for attempt in race.attempts { attempt.cancel() }
            return fd
        } catch {
            for attempt in race.attempts { attempt.cancel() }
            if let fd = try? winner.result() { Glibc.close(fd) }
            throw error
        }
    }
}
