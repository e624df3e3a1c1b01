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
        var servers = [first]
        do {
            for loop in loops.dropFirst() {
                let listener = try await first.loop.submit { try first.duplicateListener() }
                let server = try await loop.submit {
                    // The server owns the duplicate from here (its deinit closes it).
                    let server = Server(
                        loop: loop, listeners: [listener], backlog: Int32(clamping: backlog), unixPath: nil,
                        tls: tls, logger: logger, factory: factory)
                    try server.startServing()
                    return server
                }
                servers.append(server)
            }
        } catch {
            // Closing the first server also removes the socket file it created.
            await ServerGroup(servers: servers).close()
            throw error
        }
        return ServerGroup(servers: servers)
    }
}

extension Server {
    /// A duplicate of the first listening socket (for another loop to accept from).
    func duplicateListener() throws -> (fd: Int32, address: SocketAddress) {
        guard let listener = listenerList.first else { throw TransportError(.closed, "the server is closed") }
        let fd = fcntl(listener.fd, F_DUPFD_CLOEXEC, 0)
        guard fd >= 0 else { throw TransportError(errno: errno, syscall: "fcntl(F_DUPFD_CLOEXEC)") }
        return (fd, listener.address)
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
    /// - Throws: as ``EventLoop/createDatagramEndpoint(localHost:localPort:remoteHost:remotePort:reusePort:allowBroadcast:_:)``;
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
