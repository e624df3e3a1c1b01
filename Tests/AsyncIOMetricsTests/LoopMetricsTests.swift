//===----------------------------------------------------------------------===//
// swift-asyncio — AsyncIOMetrics: exact counts from real connections, through swift-metrics'
// test backend and through swift-prometheus.
//===----------------------------------------------------------------------===//

#if Metrics
import AsyncIO
import AsyncIOMetrics
import CoreMetrics
import MetricsTestKit
import Prometheus
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The repository's Certificates/ folder (test CA and server certificate).
private let certificates: String = {
    var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)   // Tests/AsyncIOMetricsTests/LoopMetricsTests.swift
    return parts.joined(separator: "/") + "/Certificates"
}()

/// Echoes every byte; closes on EOF (after the echo is flushed); reports each connection's
/// end to `onLost` with its error.
private final class Echo: StreamProtocol {
    var transport: (any StreamTransport)?
    let onLost: ((any Error)?) -> Void
    init(onLost: @escaping ((any Error)?) -> Void) { self.onLost = onLost }
    func connectionMade(_ transport: any StreamTransport) { self.transport = transport }
    func dataReceived(_ bytes: UnsafeRawBufferPointer) { transport?.write(bytes) }
    func connectionLost(_ error: (any Error)?) { onLost(error) }
}

/// Counts lost connections on the loop; `allLost` completes when `expected` were lost.
private final class LostConnections {
    let allLost: Future<[String]>
    let expected: Int
    var errors: [String] = []
    init(loop: EventLoop, expected: Int) {
        allLost = Future(loop: loop)
        self.expected = expected
    }
    func lost(_ error: (any Error)?) {
        errors.append(error.map { "\($0)" } ?? "nil")
        if errors.count == expected { try? allLost.setResult(errors.sorted()) }
    }
}

/// Runs `body` on a fresh loop (closed afterwards) with a watchdog that stops a hung test.
private func withLoop<T: Sendable>(_ body: sending @escaping (EventLoop) async throws -> T) throws -> T {
    let loop = try EventLoop(name: "test")
    defer { try? loop.close() }
    return try run(loop) { try await body(loop) }
}

/// Runs `body` on `loop` until it completes; a watchdog stops the loop of a hung test.
private func run<T: Sendable>(_ loop: EventLoop, _ body: sending @escaping () async throws -> T) throws -> T {
    let watchdog = loop.callLater(after: .seconds(60)) {
        Issue.record("the test's event loop was stopped by the watchdog")
        loop.stop()
    }
    defer { watchdog.cancel() }
    return try loop.runUntilComplete(body)
}

/// Runs a Python 3 script with `arguments`; returns its stdout, expecting exit status 0.
private func python(_ loop: EventLoop, _ script: String, _ arguments: [String]) async throws -> String {
    let process = try await loop.createSubprocessExec(
        "python3", ["-c", script] + arguments, stdin: .devNull, stdout: .pipe, stderr: .pipe)
    let (stdout, stderr) = try await process.communicate()
    #expect(process.returnCode == 0, "python: \(String(decoding: stderr, as: UTF8.self))")
    return String(decoding: stdout, as: UTF8.self)
}

/// Two connections: 1,000 bytes echoed then a normal close; 10 bytes echoed then a reset
/// (SO_LINGER 0). Prints what came back.
private let echoThenResetScript = """
    import socket, struct, sys
    port = int(sys.argv[1])
    def echo(sock, data):
        sock.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = sock.recv(65536)
            if not chunk: break
            got += chunk
        return got
    a = socket.create_connection(("127.0.0.1", port))
    print(len(echo(a, b"a" * 1000)))
    a.close()
    b = socket.create_connection(("127.0.0.1", port))
    print(len(echo(b, b"0123456789")))
    b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    b.close()
    """

private let loopDimension = [("loop", "test"), ("service", "echo")]

@Suite(.timeLimit(.minutes(10)))
struct LoopMetricsTests {
    @Test("real connections: accepted, opened, closed, reset, open and bytes are exact")
    func connectionsAndBytes() throws {
        let metrics = TestMetrics()
        let lost = try withLoop { loop in
            let exporter = LoopMetrics(loop: loop, dimensions: [("service", "echo")], factory: metrics)
            let tracker = LostConnections(loop: loop, expected: 2)
            let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                Echo { tracker.lost($0) }
            }
            let port = server.addresses[0].port ?? 0
            let printed = try await python(loop, echoThenResetScript, ["\(port)"])
            #expect(printed == "1000\n10\n")
            let errors = try await waitFor(tracker.allLost, timeout: .seconds(20))
            exporter.collect()
            server.close()
            await server.waitClosed()
            return errors
        }
        // The second connection ended with the peer's reset, the first cleanly.
        #expect(lost.count == 2)
        #expect(lost.first { $0 != "nil" }?.contains("connection reset by peer (read, errno 104)") == true, "\(lost)")
        #expect(lost.contains("nil"))

        #expect(try metrics.expectCounter("asyncio_connections_accepted_total", loopDimension).totalValue == 2)
        #expect(try metrics.expectCounter("asyncio_connections_opened_total", loopDimension).totalValue == 2)
        #expect(try metrics.expectCounter("asyncio_connections_closed_total", loopDimension).totalValue == 2)
        #expect(try metrics.expectCounter("asyncio_connections_reset_total", loopDimension).totalValue == 1)
        #expect(try metrics.expectCounter("asyncio_bytes_received_total", loopDimension).totalValue == 1010)
        #expect(try metrics.expectCounter("asyncio_bytes_sent_total", loopDimension).totalValue == 1010)
        #expect(try metrics.expectGauge("asyncio_connections_open", loopDimension).lastValue == 0)
        // No TLS here: its counters exist and were never incremented.
        #expect(try metrics.expectCounter(
            "asyncio_tls_handshakes_total", loopDimension + [("result", "ok")]).totalValue == 0)
    }

    @Test("TLS: one handshake succeeds (Python's ssl), one fails (plain bytes), each timed")
    func tlsHandshakes() throws {
        let metrics = TestMetrics()
        let script = """
            import socket, ssl, sys
            port, cafile = int(sys.argv[1]), sys.argv[2]
            context = ssl.create_default_context(cafile=cafile)
            with socket.create_connection(("127.0.0.1", port)) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"hello")
                    print(tls.recv(5).decode())
            with socket.create_connection(("127.0.0.1", port)) as plain:
                plain.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                while plain.recv(4096): pass   # the server's alert, then EOF
            print("done")
            """
        try withLoop { loop in
            let exporter = LoopMetrics(loop: loop, dimensions: [("service", "echo")], factory: metrics)
            let tracker = LostConnections(loop: loop, expected: 1)   // the TLS app's connection
            let tls = try TLSContext.server(
                certificateChain: "\(certificates)/server.crt", privateKey: "\(certificates)/server.key")
            let server = try await loop.createServer(host: "127.0.0.1", port: 0, tls: tls) {
                Echo { tracker.lost($0) }
            }
            let port = server.addresses[0].port ?? 0
            let printed = try await python(loop, script, ["\(port)", "\(certificates)/ca.crt"])
            #expect(printed == "hello\ndone\n")
            _ = try await waitFor(tracker.allLost, timeout: .seconds(20))
            server.close()
            await server.waitClosed()   // both sockets closed
            exporter.collect()
        }
        let ok = loopDimension + [("result", "ok")]
        let failed = loopDimension + [("result", "failed")]
        #expect(try metrics.expectCounter("asyncio_tls_handshakes_total", ok).totalValue == 1)
        #expect(try metrics.expectCounter("asyncio_tls_handshakes_total", failed).totalValue == 1)
        let okTimes = try metrics.expectTimer("asyncio_tls_handshake_duration_seconds", ok).values
        let failedTimes = try metrics.expectTimer("asyncio_tls_handshake_duration_seconds", failed).values
        #expect(okTimes.count == 1 && okTimes[0] > 0, "\(okTimes)")
        #expect(failedTimes.count == 1 && failedTimes[0] > 0, "\(failedTimes)")
        #expect(try metrics.expectCounter("asyncio_connections_accepted_total", loopDimension).totalValue == 2)
        #expect(try metrics.expectCounter("asyncio_connections_closed_total", loopDimension).totalValue == 2)
        // TLS bytes are counted on the socket: more than the 5 plaintext bytes each way.
        #expect(try metrics.expectCounter("asyncio_bytes_received_total", loopDimension).totalValue > 5 + 18)
        #expect(try metrics.expectCounter("asyncio_bytes_sent_total", loopDimension).totalValue > 5)
    }

    // A started exporter holds its loop, and its timer's callback holds the exporter (so
    // that the loop keeps it alive): a loop closed without stop() left that cycle, and the
    // exporter and the loop leaked, until close released the callbacks of the timers it drops.
    @Test("a started exporter and its loop are freed when the loop closes")
    func startedExporterIsFreedWithItsLoop() throws {
        weak var weakLoop: EventLoop?
        weak var weakExporter: LoopMetrics?
        do {
            let loop = try EventLoop(name: "closes with an exporter started")
            weakLoop = loop
            let exporter = LoopMetrics(loop: loop, factory: TestMetrics())
            exporter.start()
            weakExporter = exporter
            try loop.close()
        }
        #expect(weakExporter == nil)
        #expect(weakLoop == nil)
    }

    @Test("loop lag, ready-queue depth and the default executor's queue depth")
    func loopGauges() throws {
        let metrics = TestMetrics()
        try withLoop { loop in
            let executor = ThreadPoolExecutor(maxWorkers: 1)
            loop.setDefaultExecutor(executor)
            let exporter = LoopMetrics(loop: loop, factory: metrics)
            // A blocking job holds the executor's one thread until the pipe gets a byte.
            var fds: [Int32] = [0, 0]
            try #require(pipe(&fds) == 0)
            let (gate, opener) = (fds[0], fds[1])
            defer { close(gate); close(opener) }
            let running = Future<Void>(loop: loop)
            let blocked = loop.runInExecutor { () -> Int in
                _ = try? loop.callSoonThreadSafe { try? running.setResult(()) }
                var byte: UInt8 = 0
                return read(gate, &byte, 1)
            }
            try await waitFor(running, timeout: .seconds(20))
            // Two more jobs wait for the busy thread.
            try executor.submit {}
            try executor.submit {}
            // Three callbacks wait in the ready queue while this step runs.
            for _ in 0..<3 { _ = loop.callSoon {} }
            exporter.collect()
            exporter.measureLoopLag()
            var byte: UInt8 = 1
            _ = write(opener, &byte, 1)
            #expect(try await blocked.value == 1)
            executor.shutdown(wait: true)
        }
        let dimensions = [("loop", "test")]
        #expect(try metrics.expectGauge(
            "asyncio_executor_queue_depth", dimensions + [("executor", "default")]).lastValue == 2)
        #expect(try metrics.expectGauge("asyncio_ready_queue_depth", dimensions).lastValue == 3)
        let lags = try metrics.expectTimer("asyncio_loop_lag_seconds", dimensions).values
        #expect(lags.count == 1 && lags[0] >= 0, "\(lags)")
    }

    @Test("swift-prometheus: the scrape text of one echoed connection")
    func prometheusScrape() throws {
        let registry = PrometheusCollectorRegistry()
        let factory = PrometheusMetricsFactory(registry: registry)
        try withLoop { loop in
            let exporter = LoopMetrics(loop: loop, dimensions: [("service", "echo")], factory: factory)
            let tracker = LostConnections(loop: loop, expected: 2)
            let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                Echo { tracker.lost($0) }
            }
            let port = server.addresses[0].port ?? 0
            _ = try await python(loop, echoThenResetScript, ["\(port)"])
            _ = try await waitFor(tracker.allLost, timeout: .seconds(20))
            exporter.collect()
            exporter.measureLoopLag()
            try await sleep(for: .milliseconds(1))   // the lag probe runs in a later pass
            server.close()
            await server.waitClosed()
        }
        let text = registry.emitToString()
        print("---- Prometheus scrape text\n\(text)----")
        let expected = [
            #"asyncio_connections_accepted_total{loop="test",service="echo"} 2"#,
            #"asyncio_connections_closed_total{loop="test",service="echo"} 2"#,
            #"asyncio_connections_reset_total{loop="test",service="echo"} 1"#,
            #"asyncio_connections_open{loop="test",service="echo"} 0.0"#,
            #"asyncio_bytes_received_total{loop="test",service="echo"} 1010"#,
            #"asyncio_bytes_sent_total{loop="test",service="echo"} 1010"#,
            #"asyncio_loop_lag_seconds_count{loop="test",service="echo"} 1"#,
        ]
        let lines = Set(text.split(separator: "\n").map(String.init))
        for line in expected {
            #expect(lines.contains(line), "missing: \(line)")
        }
        #expect(lines.contains("# TYPE asyncio_connections_accepted_total counter"))
        #expect(lines.contains("# TYPE asyncio_connections_open gauge"))
        #expect(lines.contains("# TYPE asyncio_loop_lag_seconds histogram"))
    }
}

#endif
