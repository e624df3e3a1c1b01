//===----------------------------------------------------------------------===//
// swift-asyncio — ServerService: servers as a swift-service-lifecycle Service, with a grace period.
//===----------------------------------------------------------------------===//

#if ServiceLifecycle
public import AsyncIO
public import ServiceLifecycle

/// A `Server` or `ServerGroup` as a swift-service-lifecycle `Service`.
///
/// It serves while the service group runs. On graceful shutdown (e.g. SIGTERM with
/// `gracefulShutdownSignals: [.sigterm]`):
/// 1. it stops listening (`Server.close()`): new connections are refused, the open
///    ones go on;
/// 2. it waits up to `gracePeriod` for the open connections to end on their own;
/// 3. it closes those left (`Server.closeClients()`: what they queued is flushed
///    first) and waits up to `closeTimeout` for them;
/// 4. it aborts any still there (a peer that does not read), and returns.
///
/// On cancellation (the service group cancels, e.g. once its maximum graceful shutdown
/// duration passed) it stops listening, aborts every connection at once and throws
/// `CancellationError`.
///
/// Put an ``EventLoopGroupService`` for the servers' loops *before* it in the service group's
/// list: the loops must outlive the servers. A server whose loop was closed is skipped.
public struct ServerService: Service {
    /// The servers (one per loop of a group), each touched only on its own loop.
    private let servers: [Server]
    /// How long the open connections get to end on their own after graceful shutdown began.
    public let gracePeriod: Duration
    /// How long the connections left after the grace period get to flush and close before
    /// they are aborted.
    public let closeTimeout: Duration

    /// A service for the server `server`.
    /// - Parameters:
    ///   - server: A server (serving, or to be served by someone else's `startServing`).
    ///   - gracePeriod: How long open connections get to end on their own after graceful
    ///     shutdown began (default 30 s).
    ///   - closeTimeout: How long the connections still open then get to flush and close
    ///     before they are aborted (default 5 s).
    public init(_ server: Server, gracePeriod: Duration = .seconds(30), closeTimeout: Duration = .seconds(5)) {
        self.init(servers: [server], gracePeriod: gracePeriod, closeTimeout: closeTimeout)
    }

    /// A service for every server of `group` (one per loop of an event loop group); the grace
    /// period and the close timeout are shared by all of them.
    public init(_ group: ServerGroup, gracePeriod: Duration = .seconds(30), closeTimeout: Duration = .seconds(5)) {
        self.init(servers: group.servers, gracePeriod: gracePeriod, closeTimeout: closeTimeout)
    }

    private init(servers: [Server], gracePeriod: Duration, closeTimeout: Duration) {
        self.servers = servers
        self.gracePeriod = gracePeriod
        self.closeTimeout = closeTimeout
    }

    /// Serves until graceful shutdown or cancellation, then shuts the servers down as the type
    /// describes.
    /// - Throws: `CancellationError` if the task was cancelled (after aborting the connections).
    public func run() async throws {
        do {
            try await gracefulShutdown()
        } catch {
            await onEachServer { $0.close(); $0.abortClients() }
            throw CancellationError()
        }
        await onEachServer { $0.close() }
        if await connectionsEnded(within: gracePeriod) { return }
        await onEachServer { $0.closeClients() }
        if await connectionsEnded(within: closeTimeout) { return }
        await onEachServer { $0.abortClients() }
    }

    /// Runs `body` with each server on its loop (skipping servers whose loop is closed: a task
    /// sent there would never run).
    private func onEachServer(_ body: @escaping @Sendable (Server) -> Void) async {
        for server in servers where !server.loop.isClosed {
            // A cancelled caller still gets `body` run: it does not wait for anything.
            _ = try? await server.loop.submit { body(server) }
        }
    }

    /// Waits until every server is closed and has no connection, or `duration` passed (or
    /// the caller is cancelled); returns whether they all ended.
    private func connectionsEnded(within duration: Duration) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: duration)
        for server in servers where !server.loop.isClosed {
            let remaining = max(clock.now.duration(to: deadline), .zero)
            let ended = try? await server.loop.submit { () async throws -> Bool in
                // waitClosed returns early, without an error, when the timeout cancels it:
                // what counts is whether connections are left.
                _ = try? await waitFor(timeout: remaining) { await server.waitClosed() }
                return server.connectionCount == 0
            }
            if ended != true { return false }
        }
        return true
    }
}
#endif
