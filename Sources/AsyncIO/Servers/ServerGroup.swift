//===----------------------------------------------------------------------===//
// swift-asyncio — ServerGroup: one server per loop of an EventLoopGroup, sharing a port.
//===----------------------------------------------------------------------===//

public import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A server listening on every loop of an ``EventLoopGroup``: each loop has its own listening
/// socket on the same port (`SO_REUSEPORT`; for a Unix path, a duplicate of one socket), and
/// each connection is served wholly by the loop that accepted it.
///
/// - Note: Thread-safe: its methods hop to each loop.
public final class ServerGroup: Sendable {
    /// The per-loop servers, in loop order.
    public let servers: [Server]

    init(servers: [Server]) {
        self.servers = servers
    }

    /// The addresses the servers listen on (the first server's; all share them).
    public var addresses: [SocketAddress] { servers.first?.addresses ?? [] }

    /// Closes every server (no new connections); existing connections stay open.
    public func close() async {
        for server in servers {
            _ = try? await server.loop.submit { server.close() }
        }
    }

    /// Closes every connection after flushing it.
    public func closeClients() async {
        for server in servers {
            _ = try? await server.loop.submit { server.closeClients() }
        }
    }

    /// Aborts every connection.
    public func abortClients() async {
        for server in servers {
            _ = try? await server.loop.submit { server.abortClients() }
        }
    }

    /// Waits until every server is closed and all connections are gone.
    public func waitClosed() async {
        for server in servers {
            _ = try? await server.loop.submit { await server.waitClosed() }
        }
    }

    /// Sets a socket option on every listening socket of every loop's server (see
    /// ``SocketOptionProvider/setOption(_:_:)``); each is set on its own loop.
    /// - Throws: the first server's ``TransportError``; the servers after it are not changed.
    public func setOption<Value: Sendable>(_ option: SocketOption<Value>, _ value: Value) async throws {
        for server in servers {
            try await server.loop.submit { try server.setOption(option, value) }
        }
    }

    /// Reads a socket option from the first server's first listening socket (see
    /// ``SocketOptionProvider/option(_:)``).
    public func option<Value: Sendable>(_ option: SocketOption<Value>) async throws -> Value {
        guard let first = servers.first else {
            throw TransportError(.closed, "cannot read \(option.optionName): the group has no server", errno: EBADF)
        }
        return try await first.loop.submit { try first.option(option) }
    }
}

extension EventLoopGroup {
    /// Starts a TCP server on every loop of the group, all on the same port with
    /// `SO_REUSEPORT` (the kernel spreads connections over the loops). With `port` 0 the first
    /// loop picks a free port and the others join it. Each server logs through `logger`, or
    /// through its loop's ``EventLoop/logger`` if it is `nil`.
    /// - Throws: as ``EventLoop/createServer(host:port:tls:backlog:reuseAddress:reusePort:startServing:logger:_:)``.
    public func createServer(
        host: String? = nil,
        port: Int,
        tls: TLSContext? = nil,
        backlog: Int = 100,
        logger: Logger? = nil,
        _ factory: @escaping @Sendable () -> any StreamProtocol
    ) async throws -> ServerGroup {
        var servers: [Server] = []
        var boundPort = port
        do {
            for loop in loops {
                let portToBind = boundPort
                let first = servers.isEmpty
                let server = try await loop.submit {
                    try await loop.createServer(
                        hosts: host.map { [$0] } ?? [], port: portToBind, tls: tls, backlog: backlog, reuseAddress: true,
                        reusePort: true, requireFreePort: first, startServing: true, logger: logger, factory)
                }
                servers.append(server)
                if boundPort == 0 { boundPort = server.addresses.first?.port ?? 0 }
            }
        } catch {
            await ServerGroup(servers: servers).close()
            throw error
        }
        return ServerGroup(servers: servers)
    }

    /// Starts a Unix socket server on every loop of the group: the first loop creates the
    /// socket at `path` (see ``EventLoop/createUnixServer(path:tls:backlog:startServing:logger:_:)``),
    /// the others accept from duplicates of it. `logger` as in
    /// ``createServer(host:port:tls:backlog:logger:_:)``.
    /// - Throws: as ``EventLoop/createUnixServer(path:tls:backlog:startServing:logger:_:)``, or the
    ///   error of a later loop's server (e.g. no fd left for its duplicate); the servers
    ///   already made are then closed and the socket file is removed before the error is thrown.
    public func createUnixServer(
        path: String,
        tls: TLSContext? = nil,
        backlog: Int = 100,
        logger: Logger? = nil,
        _ factory: @escaping @Sendable () -> any StreamProtocol
    ) async throws -> ServerGroup {
        let first = try await loops[0].submit {
            try await self.loops[0].createUnixServer(path: path, tls: tls, backlog: backlog, logger: logger, factory)
        }
        return try await serveOnOtherLoops(first, tls: tls, backlog: backlog, logger: logger, factory)
    }

    /// Serves listening sockets made elsewhere on every loop of the group (e.g. the sockets
    /// systemd passed, ``SocketActivation``): the first loop takes them as
    /// ``EventLoop/createServer(sockets:tls:backlog:startServing:logger:_:)`` does, the others accept
    /// from duplicates of them.
    /// - Throws: as ``EventLoop/createServer(sockets:tls:backlog:startServing:logger:_:)``, or the
    ///   error of a later loop's server; the servers already made are then closed.
    public func createServer(
        sockets: [Int32],
        tls: TLSContext? = nil,
        backlog: Int = 100,
        _ factory: @escaping @Sendable () -> any StreamProtocol
    ) async throws -> ServerGroup {
        let first = try await loops[0].submit {
            try await self.loops[0].createServer(sockets: sockets, tls: tls, backlog: backlog, factory)
        }
        return try await serveOnOtherLoops(first, tls: tls, backlog: backlog, logger: nil, factory)
    }

    /// A group of `first` and, on every other loop, a server accepting from duplicates of its
    /// listening sockets, logging through `logger` (`nil`: its loop's).
    private func serveOnOtherLoops(
        _ first: Server, tls: TLSContext?, backlog: Int, logger: Logger?,
        _ factory: @escaping @Sendable () -> any StreamProtocol
    ) async throws -> ServerGroup {
        var servers = [first]
        do {
            for loop in loops.dropFirst() {
                let listeners = try await first.loop.submit { try first.duplicateListeners() }
                let server = try await loop.submit {
                    // The server owns the duplicates from here (its deinit closes them).
                    let server = Server(
                        loop: loop, listeners: listeners, backlog: Int32(clamping: backlog), unixPath: nil,
                        tls: tls, logger: logger, factory: factory)
                    try server.startServing()
                    return server
                }
                servers.append(server)
            }
        } catch {
            // Closing the first server also removes a socket file it created.
            await ServerGroup(servers: servers).close()
            throw error
        }
        return ServerGroup(servers: servers)
    }
}

extension Server {
    /// Duplicates of the listening sockets (for another loop to accept from).
    func duplicateListeners() throws -> [(fd: Int32, address: SocketAddress)] {
        guard !listenerList.isEmpty else { throw TransportError(.closed, "the server is closed") }
        var duplicates: [(fd: Int32, address: SocketAddress)] = []
        for listener in listenerList {
            let fd = fcntl(listener.fd, F_DUPFD_CLOEXEC, 0)
            guard fd >= 0 else {
                let error = TransportError(errno: errno, syscall: "fcntl(F_DUPFD_CLOEXEC)")
                for duplicate in duplicates { Glibc.close(duplicate.fd) }
                throw error
            }
            duplicates.append((fd, listener.address))
        }
        return duplicates
    }
}

/// UDP endpoints on every loop of an ``EventLoopGroup``, all bound to one port with
/// `SO_REUSEPORT` (see ``EventLoopGroup/createDatagramEndpoints(host:port:_:)``).
///
/// - Note: Thread-safe: its methods hop to each loop.
public final class DatagramEndpointGroup: Sendable {
    /// A loop-bound transport, only touched on its own loop.
    private struct Endpoint: @unchecked Sendable {
        let loop: EventLoop
        let transport: any DatagramTransport
    }

    private let endpoints: [Endpoint]
    /// The address every endpoint is bound to.
    public let address: SocketAddress

    fileprivate init(endpoints: [(EventLoop, any DatagramTransport)], address: SocketAddress) {
        self.endpoints = endpoints.map { Endpoint(loop: $0.0, transport: $0.1) }
        self.address = address
    }

    /// Closes every endpoint (after sending what is queued).
    public func close() async {
        for endpoint in endpoints {
            _ = try? await endpoint.loop.submit { endpoint.transport.close() }
        }
    }
}

extension EventLoopGroup {
    /// Binds a UDP endpoint on every loop of the group to `host`:`port` (`SO_REUSEPORT`; with
    /// port 0 the first loop picks the port), each with a protocol from `factory`.
    /// - Throws: as ``EventLoop/createDatagramEndpoint(localHost:localPort:remoteHost:remotePort:reusePort:allowBroadcast:logger:_:)``;
    ///   `.addressInUse` if another socket already has the port.
    public func createDatagramEndpoints(
        host: String? = nil,
        port: Int,
        _ factory: @escaping @Sendable () -> any DatagramProtocol
    ) async throws -> DatagramEndpointGroup {
        struct Made: @unchecked Sendable {
            let transport: any DatagramTransport
            let address: SocketAddress?
        }
        var made: [(EventLoop, any DatagramTransport)] = []
        var boundAddress: SocketAddress?
        do {
            for loop in loops {
                let portToBind = boundAddress?.port ?? port
                let first = made.isEmpty
                let endpoint = try await loop.submit { () async throws -> Made in
                    let transport = try await loop.makeDatagramEndpoint(
                        localHost: host, localPort: portToBind, remoteHost: nil, remotePort: nil,
                        reusePort: true, requireFreePort: first, allowBroadcast: false, factory())
                    return Made(transport: transport, address: transport.localAddress)
                }
                made.append((loop, endpoint.transport))
                if boundAddress == nil { boundAddress = endpoint.address }
            }
        } catch {
            await DatagramEndpointGroup(endpoints: made, address: SocketAddress(unixPath: "")).close()
            throw error
        }
        guard let boundAddress else { throw TransportError(.invalidAddress, "no local address") }
        return DatagramEndpointGroup(endpoints: made, address: boundAddress)
    }
}
