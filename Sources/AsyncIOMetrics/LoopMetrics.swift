//===----------------------------------------------------------------------===//
// swift-asyncio — AsyncIOMetrics: a loop's counters exported to swift-metrics.
//===----------------------------------------------------------------------===//

#if Metrics
public import AsyncIO
public import CoreMetrics

/// Exports one event loop's connection, byte, TLS and loop counters to swift-metrics (and so to
/// Prometheus, OpenTelemetry, StatsD, whatever backend `MetricsSystem.bootstrap` chose).
///
/// Off by default and free when off: the `AsyncIO` library has no metrics dependency; its
/// transports keep plain integer counts on the loop thread only once an exporter was started on
/// the loop (before that, a message costs one `nil` check). ``start()`` turns counting on and
/// starts a loop timer that pushes the counts every ``interval``; ``collect()`` pushes them now.
///
/// The `AsyncIOMetrics` product needs the package trait `Metrics` (off by default):
/// `.package(url: …, traits: ["Metrics"])`.
///
/// ```swift
/// import AsyncIO
/// import AsyncIOMetrics
///
/// let metrics = LoopMetrics(loop: loop)   // on the loop's thread, or before it runs
/// metrics.start()
///
/// try group.startMetrics()                // or: one per loop of a group
/// ```
///
/// ## Metrics
///
/// Every metric has the dimension `loop` (the loop's `EventLoop.name`) and the
/// ``dimensions`` given at creation. Counts cover TCP and Unix stream connections (not pipes,
/// not UDP) made on the loop after ``start()``: accepted by a server, connected by
/// `createConnection`/`openConnection`, or adopted.
///
/// | label | type | what |
/// |---|---|---|
/// | `asyncio_connections_accepted_total` | counter | connections accepted by servers on the loop |
/// | `asyncio_connections_opened_total` | counter | stream connections started (accepted, connected, adopted) |
/// | `asyncio_connections_closed_total` | counter | stream connections closed, for any reason (resets included) |
/// | `asyncio_connections_reset_total` | counter | of those, closed by a reset from the peer (`ECONNRESET`, or `EPIPE` writing after it) |
/// | `asyncio_connections_open` | gauge | opened − closed: connections open now |
/// | `asyncio_bytes_received_total` | counter | bytes read from stream sockets (TLS: the encrypted bytes) |
/// | `asyncio_bytes_sent_total` | counter | bytes the kernel took for stream sockets (TLS: the encrypted bytes) |
/// | `asyncio_tls_handshakes_total` | counter, dimension `result` = `ok` or `failed` | TLS handshakes finished, both sides (servers, clients, startTLS); a failure includes a timeout and a peer that left mid-handshake |
/// | `asyncio_tls_handshake_duration_seconds` | timer, dimension `result` | from the layer's start to the handshake's outcome |
/// | `asyncio_loop_lag_seconds` | timer | once per interval, how long a callback scheduled with `callSoon` waited in the ready queue before it ran (the loop's responsiveness) |
/// | `asyncio_ready_queue_depth` | gauge | callbacks and task steps in the ready queue, sampled once per interval |
/// | `asyncio_executor_queue_depth` | gauge, dimension `executor` = `default` | jobs waiting for a thread of the loop's default executor (0 until it is made), sampled once per interval |
///
/// Counters are pushed as increments of what changed since the last push; a backend that keeps
/// totals (Prometheus) shows the loop's totals since ``start()``.
///
/// - Important: Loop-bound: make, start, collect and stop it on the loop's thread (or before the
///   loop runs). One exporter per loop: a second one on the same loop takes the TLS duration
///   reports over. Counting, once on, stays on for the loop's life; ``stop()`` only stops the
///   pushes. A started exporter is kept alive by its timer until ``stop()`` or the loop closes.
public final class LoopMetrics {
    /// The loop whose counts are exported.
    public let loop: EventLoop
    /// How often ``start()``'s timer pushes the counts and samples the loop.
    public let interval: Duration
    /// The dimensions of every metric: `loop` first, then those given at creation.
    public let dimensions: [(String, String)]

    private let counters: ConnectionCounters
    private var lastPushed = Snapshot()
    private var timer: Handle?

    private let accepted: Counter
    private let opened: Counter
    private let closed: Counter
    private let reset: Counter
    private let open: Gauge
    private let bytesReceived: Counter
    private let bytesSent: Counter
    private let handshakesOK: Counter
    private let handshakesFailed: Counter
    private let handshakeTimeOK: CoreMetrics.Timer
    private let handshakeTimeFailed: CoreMetrics.Timer
    private let loopLag: CoreMetrics.Timer
    private let readyDepth: Gauge
    private let executorDepth: Gauge

    /// Makes the metrics of `loop` and turns its counting on.
    /// - Parameters:
    ///   - loop: The loop to watch.
    ///   - interval: How often ``start()``'s timer pushes (default one second).
    ///   - dimensions: Dimensions added to every metric after `loop` (e.g. `("service", "echo")`).
    ///   - factory: The metrics backend; `nil` (the default) uses `MetricsSystem.factory`, the
    ///     one `MetricsSystem.bootstrap` set.
    /// - Important: Loop-bound.
    public init(
        loop: EventLoop, interval: Duration = .seconds(1), dimensions: [(String, String)] = [],
        factory: (any MetricsFactory)? = nil
    ) {
        self.loop = loop
        self.interval = interval
        let dimensions = [("loop", loop.name)] + dimensions
        self.dimensions = dimensions
        let factory = factory ?? MetricsSystem.factory
        func counter(_ label: String, _ extra: [(String, String)] = []) -> Counter {
            Counter(label: label, dimensions: dimensions + extra, factory: factory)
        }
        func gauge(_ label: String, _ extra: [(String, String)] = []) -> Gauge {
            Gauge(label: label, dimensions: dimensions + extra, factory: factory)
        }
        func timer(_ label: String, _ extra: [(String, String)] = []) -> CoreMetrics.Timer {
            CoreMetrics.Timer(label: label, dimensions: dimensions + extra, factory: factory)
        }
        accepted = counter("asyncio_connections_accepted_total")
        opened = counter("asyncio_connections_opened_total")
        closed = counter("asyncio_connections_closed_total")
        reset = counter("asyncio_connections_reset_total")
        open = gauge("asyncio_connections_open")
        bytesReceived = counter("asyncio_bytes_received_total")
        bytesSent = counter("asyncio_bytes_sent_total")
        handshakesOK = counter("asyncio_tls_handshakes_total", [("result", "ok")])
        handshakesFailed = counter("asyncio_tls_handshakes_total", [("result", "failed")])
        handshakeTimeOK = timer("asyncio_tls_handshake_duration_seconds", [("result", "ok")])
        handshakeTimeFailed = timer("asyncio_tls_handshake_duration_seconds", [("result", "failed")])
        loopLag = timer("asyncio_loop_lag_seconds")
        readyDepth = gauge("asyncio_ready_queue_depth")
        executorDepth = gauge("asyncio_executor_queue_depth", [("executor", "default")])

        counters = loop.enableConnectionCounters()
        let (ok, failed) = (handshakeTimeOK, handshakeTimeFailed)
        counters.tlsHandshakeObserver = { succeeded, nanoseconds in
            (succeeded ? ok : failed).recordNanoseconds(Int64(clamping: nanoseconds))
        }
    }

    /// Pushes now and then every ``interval`` on a loop timer, each time also measuring the
    /// loop's lag once; until ``stop()`` or the loop closes. Starting twice does nothing.
    /// - Important: Loop-bound.
    public func start() {
        guard timer == nil else { return }
        tick()
    }

    /// Stops the periodic pushes (counting goes on; ``collect()`` still pushes).
    /// - Important: Loop-bound.
    public func stop() {
        timer?.cancel()
        timer = nil
    }

    /// Pushes what changed since the last push: counter increments, and the gauges sampled
    /// now (connections open, ready-queue depth, executor queue depth).
    /// - Important: Loop-bound.
    public func collect() {
        let now = Snapshot(counters)
        let last = lastPushed
        lastPushed = now
        push(accepted, now.accepted - last.accepted)
        push(opened, now.opened - last.opened)
        push(closed, now.closed - last.closed)
        push(reset, now.reset - last.reset)
        push(bytesReceived, now.bytesReceived - last.bytesReceived)
        push(bytesSent, now.bytesSent - last.bytesSent)
        push(handshakesOK, now.tlsOK - last.tlsOK)
        push(handshakesFailed, now.tlsFailed - last.tlsFailed)
        open.record(now.opened - now.closed)
        readyDepth.record(loop.readyQueueDepth)
        executorDepth.record(loop.existingDefaultExecutor?.pendingJobCount ?? 0)
    }

    /// Measures the loop lag once: the time a callback scheduled now waits before it runs.
    /// - Important: Loop-bound.
    public func measureLoopLag() {
        let scheduled = loop.time()
        let (loop, lag) = (loop, loopLag)
        loop.callSoon {
            lag.recordNanoseconds(Int64(max(0, (loop.time() - scheduled) * 1e9)))
        }
    }

    private func tick() {
        collect()
        measureLoopLag()
        // A strong capture: the loop keeps a started exporter alive until stop() or close.
        timer = loop.callLater(after: interval) { [self] in tick() }
    }

    private func push(_ counter: Counter, _ delta: Int) {
        if delta > 0 { counter.increment(by: Int64(delta)) }
    }

}

@available(*, unavailable)
extension LoopMetrics: Sendable {}

/// Metrics for every loop of a group at once.
extension EventLoopGroup {
    /// Starts a ``LoopMetrics`` on every loop of the group, each on its own loop's thread, for
    /// the loops' life. Thread-safe.
    /// - Parameters: as ``LoopMetrics/init(loop:interval:dimensions:factory:)``.
    /// - Throws: `EventLoopError` if a loop is closed.
    public func startMetrics(
        interval: Duration = .seconds(1), dimensions: [(String, String)] = [],
        factory: (any MetricsFactory)? = nil
    ) throws(EventLoopError) {
        for loop in loops {
            _ = try loop.callSoonThreadSafe {
                LoopMetrics(loop: loop, interval: interval, dimensions: dimensions, factory: factory).start()
            }
        }
    }
}

/// The counts at one push.
private struct Snapshot {
    var accepted = 0, opened = 0, closed = 0, reset = 0
    var bytesReceived = 0, bytesSent = 0, tlsOK = 0, tlsFailed = 0

    init() {}

    init(_ counters: ConnectionCounters) {
        accepted = counters.accepted
        opened = counters.opened
        closed = counters.closed
        reset = counters.reset
        bytesReceived = counters.bytesReceived
        bytesSent = counters.bytesSent
        tlsOK = counters.tlsHandshakesSucceeded
        tlsFailed = counters.tlsHandshakesFailed
    }
}
#endif
