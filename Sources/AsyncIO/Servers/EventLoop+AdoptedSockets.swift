//===----------------------------------------------------------------------===//
// swift-asyncio — Sockets made elsewhere (asyncio's `sock=`): servers, connections,
// accepted connections and datagram endpoints over a file descriptor the caller hands in.
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
public import Logging
#if canImport(Glibc)
import Glibc
#endif

// Ownership, for every call here: the fd is checked first (its type with SO_TYPE, its family
// with SO_DOMAIN, listening with SO_ACCEPTCONN, connected with getpeername); a socket of the
// wrong kind throws `TransportError` `.invalidSocket` and the fd is left as it was, still the
// caller's. Once it passed, the call owns the fd: it is made non-blocking and close-on-exec,
// closed when the transport or server closes, and closed if the call fails later (a TLS
// handshake that fails, a listen that fails). Do not use or close it yourself afterwards.

extension EventLoop {
    // MARK: - Servers

    /// Serves on a listening stream socket made elsewhere (asyncio's `create_server(sock=)`):
    /// TCP (IPv4, IPv6) or Unix. A socket that is bound but not yet listening is made to
    /// listen with `backlog`, as asyncio does.
    ///
    /// ```swift
    /// let server = try await loop.createServer(sock: fd) { Echo() }
    /// ```
    /// - Parameters:
    ///   - sock: The socket. Owned by the server once checked (see the file's ownership note:
    ///     the server closes it; a Unix socket's file is not removed, the server did not make it).
    ///   - tls: A server context to run TLS over every accepted connection; `nil` for plain TCP.
    ///   - backlog: The `listen` backlog, used only if the socket is not listening yet.
    ///   - startServing: Whether to accept at once; `false` waits for ``Server/startServing()``.
    ///   - logger: What the server's ``Server/logger`` is (connections extend it with
    ///     `connection` and `peer` metadata); `nil`: the loop's ``EventLoop/logger``.
    ///   - factory: Makes the protocol of each accepted connection.
    ///
    ///   As in ``createServer(host:port:tls:backlog:reuseAddress:reusePort:startServing:logger:_:)``.
    /// - Throws: ``TransportError`` `.invalidSocket` naming what `sock` is if it is not a
    ///   stream socket that listens or can (a datagram socket, a connected socket, not a
    ///   socket), and the fd stays the caller's; a failing `listen` (then the fd is closed).
    /// - Important: Call from a task running on this loop.
    public func createServer(
        sock: Int32,
        tls: TLSContext? = nil,
        backlog: Int = 100,
        startServing: Bool = true,
        logger: Logger? = nil,
        _ factory: @escaping () -> any StreamProtocol
    ) async throws -> Server {
        try adoptListeners(
            [sock], call: "createServer(sock:)", families: [AF_INET, AF_INET6, AF_UNIX], tls: tls, backlog: backlog,
            startServing: startServing, logger: logger, factory)
    }

    /// Serves on several listening stream sockets at once, one ``Server`` for all (e.g. the
    /// sockets systemd passed, see ``SocketActivation``); each is taken as in
    /// ``createServer(sock:tls:backlog:startServing:logger:_:)``. All are checked before any is
    /// taken: if one is refused, every fd stays the caller's.
    public func createServer(
        sockets: [Int32],
        tls: TLSContext? = nil,
        backlog: Int = 100,
        startServing: Bool = true,
        logger: Logger? = nil,
        _ factory: @escaping () -> any StreamProtocol
    ) async throws -> Server {
        try adoptListeners(
            sockets, call: "createServer(sockets:)", families: [AF_INET, AF_INET6, AF_UNIX], tls: tls,
            backlog: backlog, startServing: startServing, logger: logger, factory)
    }

    /// Serves on a listening Unix stream socket made elsewhere (asyncio's
    /// `create_unix_server(sock=)`); as ``createServer(sock:tls:backlog:startServing:logger:_:)`` but
    /// the socket must be `AF_UNIX`. The server does not remove the socket's file.
    public func createUnixServer(
        sock: Int32,
        tls: TLSContext? = nil,
        backlog: Int = 100,
        startServing: Bool = true,
        logger: Logger? = nil,
        _ factory: @escaping () -> any StreamProtocol
    ) async throws -> Server {
        try adoptListeners(
            [sock], call: "createUnixServer(sock:)", families: [AF_UNIX], tls: tls, backlog: backlog,
            startServing: startServing, logger: logger, factory)
    }

    private func adoptListeners(
        _ fds: [Int32], call: String, families: [Int32], tls: TLSContext?, backlog: Int, startServing: Bool,
        logger: Logger?, _ factory: @escaping () -> any StreamProtocol
    ) throws -> Server {
        guard !fds.isEmpty else { throw TransportError(.invalidArgument, "\(call): no sockets") }
        guard Set(fds).count == fds.count else {
            throw TransportError(.invalidArgument, "\(call): the same fd is given twice: \(fds)")
        }
        var checked: [(fd: Int32, listening: Bool)] = []
        for fd in fds {
            let found = try Socket.checkAdoptable(
                fd, call: call, type: casyncio_sock_stream(), families: families, listening: true)
            checked.append((fd, found.listening))
        }
        // Ours from here: every fd is closed on a failure.
        var listeners: [(fd: Int32, address: SocketAddress)] = []
        do {
            for (fd, listening) in checked {
                try Socket.adopt(fd)
                let address = Socket.localAddress(fd) ?? SocketAddress(unixPath: "")
                if !listening { try Socket.listen(fd, backlog: Int32(clamping: backlog), address: address) }
                listeners.append((fd, address))
            }
        } catch {
            for fd in fds { Glibc.close(fd) }
            throw error
        }
        let server = Server(
            loop: self, listeners: listeners, backlog: Int32(clamping: backlog), unixPath: nil, tls: tls,
            logger: logger, factory: factory)
        if startServing { try server.startServing() }
        return server
    }

    // MARK: - Connections

    /// Runs a protocol over a connected stream socket made elsewhere (asyncio's
    /// `create_connection(sock=)`): TCP or Unix. `TCP_NODELAY` is turned on for TCP, as for
    /// every connection this library makes.
    ///
    /// With `tls` the handshake runs as the client first; a context that checks the server's
    /// name needs `serverHostname`.
    /// - Parameters:
    ///   - sock: The socket. Owned by the transport once checked (see the file's ownership
    ///     note).
    ///   - tls: A client context to run TLS over the connection; `nil` for plain bytes.
    ///   - serverHostname: The name to send (SNI) and to check the certificate against.
    ///   - session: A session of an earlier connection to resume (``TLSConnectionInfo/session``).
    ///   - logger: What the connection's ``StreamTransport/logger`` extends with `connection`
    ///     and `peer` metadata; `nil`: the loop's ``EventLoop/logger``.
    ///   - factory: Makes the connection's protocol.
    /// - Returns: The transport and the protocol.
    /// - Throws: ``TransportError`` `.invalidSocket` if `sock` is not a connected stream
    ///   socket (the fd stays the caller's); ``TLSError``.
    /// - Important: Call from a task running on this loop.
    public func createConnection<P: StreamProtocol>(
        sock: Int32,
        tls: TLSContext? = nil,
        serverHostname: String? = nil,
        session: TLSSession? = nil,
        logger: Logger? = nil,
        _ factory: () -> P
    ) async throws -> (any StreamTransport, P) {
        try await adoptConnection(
            sock, call: "createConnection(sock:)", families: [AF_INET, AF_INET6, AF_UNIX], tls: tls,
            serverHostname: serverHostname, session: session, serverSide: false, logger: logger, factory)
    }

    /// As ``createConnection(sock:tls:serverHostname:session:logger:_:)`` for a connected Unix
    /// stream socket (asyncio's `create_unix_connection(sock=)`): `AF_UNIX` only.
    public func createUnixConnection<P: StreamProtocol>(
        sock: Int32,
        tls: TLSContext? = nil,
        serverHostname: String? = nil,
        session: TLSSession? = nil,
        logger: Logger? = nil,
        _ factory: () -> P
    ) async throws -> (any StreamTransport, P) {
        try await adoptConnection(
            sock, call: "createUnixConnection(sock:)", families: [AF_UNIX], tls: tls,
            serverHostname: serverHostname, session: session, serverSide: false, logger: logger, factory)
    }

    /// Runs a protocol over a connection accepted elsewhere (asyncio's
    /// `connect_accepted_socket`): the server's side of a TCP or Unix connection, e.g. one
    /// accepted by another library or passed by a supervisor.
    ///
    /// With `tls` (a server context) the handshake runs as the server first and the call
    /// returns once it succeeded.
    /// - Parameters:
    ///   - sock: The socket. Owned by the transport once checked (see the file's ownership
    ///     note).
    ///   - tls: A server context to run TLS over the connection; `nil` for plain bytes.
    ///   - logger: What the connection's ``StreamTransport/logger`` extends with `connection`
    ///     and `peer` metadata; `nil`: the loop's ``EventLoop/logger``.
    ///   - factory: Makes the connection's protocol.
    /// - Returns: The transport and the protocol.
    /// - Throws: ``TransportError`` `.invalidSocket` if `sock` is not a connected stream
    ///   socket (the fd stays the caller's); ``TLSError``.
    /// - Important: Call from a task running on this loop.
    public func connectAcceptedSocket<P: StreamProtocol>(
        sock: Int32,
        tls: TLSContext? = nil,
        logger: Logger? = nil,
        _ factory: () -> P
    ) async throws -> (any StreamTransport, P) {
        try await adoptConnection(
            sock, call: "connectAcceptedSocket(sock:)", families: [AF_INET, AF_INET6, AF_UNIX], tls: tls,
            serverHostname: nil, session: nil, serverSide: true, logger: logger, factory)
    }

    private func adoptConnection<P: StreamProtocol>(
        _ fd: Int32, call: String, families: [Int32], tls: TLSContext?, serverHostname: String?,
        session: TLSSession?, serverSide: Bool, logger: Logger?, _ factory: () -> P
    ) async throws -> (any StreamTransport, P) {
        let found = try take(fd, call: call, type: casyncio_sock_stream(), families: families, listening: false)
        if found.family != AF_UNIX { Socket.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1) }
        return try await startTransport(
            fd: fd, factory(), tls: tls, serverHostname: serverHostname, session: session, serverSide: serverSide,
            log: ConnectionLogContext(base: logger ?? self.logger))
    }

    // MARK: - Datagram endpoints

    /// Runs a datagram protocol over a datagram socket made elsewhere (asyncio's
    /// `create_datagram_endpoint(sock=)`): UDP (IPv4, IPv6) or Unix, bound or not; a connected
    /// socket's peer is the endpoint's (`sendTo(_, nil)`).
    /// - Parameters:
    ///   - sock: The socket. Owned by the transport once checked (see the file's ownership
    ///     note).
    ///   - logger: What the endpoint's ``DatagramTransport/logger`` extends with `local`
    ///     metadata; `nil`: the loop's ``EventLoop/logger``.
    ///   - factory: Makes the endpoint's protocol.
    /// - Returns: The transport and the protocol.
    /// - Throws: ``TransportError`` `.invalidSocket` if `sock` is not a datagram socket (the
    ///   fd stays the caller's).
    /// - Important: Call from a task running on this loop.
    public func createDatagramEndpoint<P: DatagramProtocol>(
        sock: Int32,
        logger: Logger? = nil,
        _ factory: () -> P
    ) async throws -> (any DatagramTransport, P) {
        let found = try take(
            sock, call: "createDatagramEndpoint(sock:)", type: casyncio_sock_dgram(),
            families: [AF_INET, AF_INET6, AF_UNIX], listening: nil)
        let proto = factory()
        return (await startDatagramTransport(fd: sock, proto, peer: found.peer, logger: logger), proto)
    }

    /// Checks `fd` (see ``Socket/checkAdoptable(_:call:type:families:listening:)``: a refused
    /// fd stays the caller's), then takes it: non-blocking, close-on-exec, closed if that fails.
    private func take(
        _ fd: Int32, call: String, type: Int32, families: [Int32], listening: Bool?
    ) throws(TransportError) -> Socket.Inspection {
        let found = try Socket.checkAdoptable(fd, call: call, type: type, families: families, listening: listening)
        do {
            try Socket.adopt(fd)
        } catch {
            Glibc.close(fd)
            throw error
        }
        return found
    }
}
