//===----------------------------------------------------------------------===//
// swift-asyncio — EventLoopGroupService: an EventLoopGroup as a swift-service-lifecycle Service.
//===----------------------------------------------------------------------===//

#if ServiceLifecycle
public import AsyncIO
public import ServiceLifecycle

/// An `EventLoopGroup` as a swift-service-lifecycle `Service`: it runs until the
/// service group shuts down (gracefully, or by cancellation), then shuts the event loop group
/// down: each loop's tasks are cancelled and get `shutdownTimeout` to finish, then the loops
/// stop, their threads end and the loops close.
///
/// List it *before* the services that use its loops (a ``ServerService``): a `ServiceGroup`
/// shuts its services down in reverse order, so the servers finish before their loops go.
///
/// ```swift
/// import AsyncIO
/// import AsyncIOServiceLifecycle
/// import ServiceLifecycle
///
/// let group = try EventLoopGroup(loops: 2)
/// let servers = try await group.createServer(host: "127.0.0.1", port: 8888) { Echo() }
/// let services = ServiceGroup(
///     services: [EventLoopGroupService(group), ServerService(servers, gracePeriod: .seconds(10))],
///     gracefulShutdownSignals: [.sigterm, .sigint],
///     logger: logger)
/// try await services.run()   // SIGTERM: stop listening, drain, close, stop the loops
/// ```
public struct EventLoopGroupService: Service {
    /// The group this service shuts down.
    public let group: EventLoopGroup
    /// How long the loops' tasks get to finish once cancelled (see
    /// `EventLoopGroup.shutdown(timeout:)`).
    public let shutdownTimeout: Duration

    /// A service that shuts `group` down when the service group shuts down.
    /// - Parameters:
    ///   - group: A running event loop group; the service owns its shutdown.
    ///   - shutdownTimeout: How long the loops' tasks get to finish once cancelled.
    public init(_ group: EventLoopGroup, shutdownTimeout: Duration = .seconds(5)) {
        self.group = group
        self.shutdownTimeout = shutdownTimeout
    }

    /// Waits for graceful shutdown or cancellation, then shuts the group down (without
    /// blocking a thread of Swift's cooperative pool) and returns.
    /// - Throws: `CancellationError` if the task was cancelled (after the group is shut down).
    public func run() async throws {
        var cancelled = false
        do {
            try await gracefulShutdown()
        } catch {
            cancelled = true
        }
        await group.shutdownGracefully(timeout: shutdownTimeout)
        if cancelled { throw CancellationError() }
    }
}
#endif
