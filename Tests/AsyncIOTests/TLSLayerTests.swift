//===----------------------------------------------------------------------===//
// swift-asyncio — The TLS layer without sockets: two TLSTransports over in-memory
// transports, with the test deciding how the bytes between them are cut and when they go.
//===----------------------------------------------------------------------===//

import CAsyncIOOpenSSL
import Testing

@testable import AsyncIO

/// A stream transport with no socket under it: writes collect in ``outbox``, and the test
/// hands them to the other end (``deliver(to:chunk:)``) cut as it likes.
final class MemoryTransport: StreamTransport {
    let loop: EventLoop
    var streamProtocol: any StreamProtocol
    var outbox: [UInt8] = []
    private(set) var closed = false
    private(set) var aborted = false
    private(set) var eofWritten = false
    private(set) var readingPaused = false
    private var lost = false

    init(loop: EventLoop, protocol: any StreamProtocol) {
        self.loop = loop
        self.streamProtocol = `protocol`
    }

    /// The next write crosses the high-water mark: the protocol hears pauseWriting inside it,
    /// as from a socket transport.
    var pauseOnNextWrite = false

    func write(_ bytes: UnsafeRawBufferPointer) {
        guard !closed, !eofWritten else { return }
        outbox.append(contentsOf: bytes)
        if pauseOnNextWrite {
            pauseOnNextWrite = false
            streamProtocol.pauseWriting()
        }
    }

    func writeEOF() { eofWritten = true }
    var canWriteEOF: Bool { true }

    /// Like a socket's close: what was written still goes out (the test delivers it), then
    /// the protocol hears connectionLost on a later pass.
    func close() {
        guard !closed else { return }
        closed = true
        loop.callSoon { [self] in loseConnection(nil) }
    }

    func abort() {
        aborted = true
        outbox = []
        close()
    }

    /// The peer reset the connection, say.
    func loseConnection(_ error: (any Error)?) {
        guard !lost else { return }
        lost = true
        closed = true
        streamProtocol.connectionLost(error)
    }

    var isClosing: Bool { closed }
    func pauseReading() { readingPaused = true }
    func resumeReading() { readingPaused = false }
    var isReading: Bool { !readingPaused && !closed }
    func setWriteBufferLimits(high: Int?, low: Int?) throws(TransportError) {}
    var writeBufferLimits: (low: Int, high: Int) { (16 * 1024, 64 * 1024) }
    var writeBufferSize: Int { 0 }
    var peerAddress: SocketAddress? { nil }
    var localAddress: SocketAddress? { nil }
    var fileDescriptor: Int32 { -1 }

    /// Hands what was written to `other`'s protocol in pieces of `chunk` bytes; returns how
    /// many bytes moved.
    @discardableResult
    func deliver(to other: MemoryTransport, chunk: Int = .max) throws -> Int {
        let bytes = outbox
        outbox = []
        guard !other.lost else { return 0 }
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + chunk)
            try bytes[offset..<end].withUnsafeBytes { try other.streamProtocol.dataReceived($0) }
            offset = end
        }
        return bytes.count
    }
}

/// An application protocol that writes down what happens to it.
final class EventRecorder: StreamProtocol {
    var transport: (any StreamTransport)?
    var events: [String] = []
    var received: [UInt8] = []
    var lostError: (any Error)?
    var keepOpenOnEOF = false

    func connectionMade(_ transport: any StreamTransport) {
        self.transport = transport
        events.append("made")
    }

    func dataReceived(_ bytes: UnsafeRawBufferPointer) { received.append(contentsOf: bytes) }

    func eofReceived() -> Bool {
        events.append("eof")
        return keepOpenOnEOF
    }

    func connectionLost(_ error: (any Error)?) {
        lostError = error
        events.append(error == nil ? "lost" : "lost: \(error!)")
    }

    /// Runs inside pauseWriting (say, an application that gives up on a slow peer).
    var onPause: (() -> Void)?

    func pauseWriting() {
        events.append("pause")
        onPause?()
    }
    func resumeWriting() { events.append("resume") }
}

/// A client and a server TLS layer joined by memory transports. When the pair goes, it lets
/// go of the layers the way a closing loop does (``TLSTransport/loopClosed()``): each layer
/// and its wire, and each layer and its application, hold each other, and a test that ends
/// with a connection still open would otherwise leak them (LeakSanitizer).
final class TLSPair {
    let loop: EventLoop
    let client: TLSTransport
    let server: TLSTransport
    let clientWire: MemoryTransport
    let serverWire: MemoryTransport
    let clientApp = EventRecorder()
    let serverApp = EventRecorder()
    let handshake: Future<Void>

    init(
        loop: EventLoop, configureServer: (inout TLSConfiguration) -> Void = { _ in },
        configureClient: (inout TLSConfiguration) -> Void = { _ in }
    ) throws {
        self.loop = loop
        var serverConfig = serverConfiguration()
        configureServer(&serverConfig)
        let serverContext = try TLSContext(serverConfig)
        var clientConfig = clientConfiguration()
        configureClient(&clientConfig)
        let clientContext = try TLSContext(clientConfig)
        handshake = Future<Void>(loop: loop)
        client = try TLSTransport(
            loop: loop, context: clientContext, app: clientApp, serverHostname: "localhost", waiter: handshake)
        let app = serverApp
        server = try TLSTransport(loop: loop, context: serverContext, app: nil, factory: { app })
        clientWire = MemoryTransport(loop: loop, protocol: client)
        serverWire = MemoryTransport(loop: loop, protocol: server)
        server.attach(to: serverWire)
        client.attach(to: clientWire)   // the ClientHello is now in clientWire.outbox
    }

    deinit {
        letGo(layers: [client, server], wires: [clientWire, serverWire])
    }

    /// Moves bytes both ways (cut into `chunk`-byte pieces) and runs the loop's ready
    /// callbacks, until nothing moves any more.
    func exchange(chunk: Int = .max) throws {
        for _ in 0..<50 {
            let moved = try clientWire.deliver(to: serverWire, chunk: chunk)
                + serverWire.deliver(to: clientWire, chunk: chunk)
            try runReady(loop)
            if moved == 0 && clientWire.outbox.isEmpty && serverWire.outbox.isEmpty { return }
        }
        Issue.record("the two TLS layers kept talking for 50 rounds")
    }
}

/// Breaks the cycles between TLS layers, their wires and their applications the way a
/// closing loop does (``TLSTransport/loopClosed()``), for a test that ends with connections
/// still open: otherwise they leak (LeakSanitizer).
func letGo(layers: [TLSTransport], wires: [MemoryTransport]) {
    for layer in layers { layer.loopClosed() }
    for wire in wires { wire.streamProtocol = ClosedProtocol.shared }
}

/// Runs one pass of a loop that is not running: what is ready now runs, nothing waits.
func runReady(_ loop: EventLoop) throws {
    loop.callSoon { loop.stop() }
    try loop.runForever()
}

@Suite(.timeLimit(.minutes(10)))
struct TLSLayerTests {
    // The handshake and application data survive records cut into single bytes, in both
    // directions; both applications see connectionMade once, before any data.
    @Test(arguments: [1, 7, 1_000_000])
    func handshakeAndDataSurviveAnyCutting(chunk: Int) throws {
        try withLoop { loop in
            let pair = try TLSPair(loop: loop)
            try pair.exchange(chunk: chunk)
            #expect(pair.handshake.isDone && pair.handshake.error == nil)
            #expect(pair.clientApp.events == ["made"])
            #expect(pair.serverApp.events == ["made"])
            let message = payload(40_000)
            pair.clientApp.transport?.write(message)
            pair.serverApp.transport?.write(Array(message.reversed()))
            try pair.exchange(chunk: chunk)
            #expect(pair.serverApp.received.count == message.count)
            #expect(pair.serverApp.received == message)
            #expect(pair.clientApp.received == Array(message.reversed()))
        }
    }

    // EOF from the server before its first flight: the client's handshake fails with
    // closedDuringHandshake, and its application (never connected) hears nothing.
    @Test func eofDuringHandshakeFailsTheHandshake() throws {
        try withLoop { loop in
            let pair = try TLSPair(loop: loop)
            try pair.clientWire.deliver(to: pair.serverWire)   // ClientHello only
            #expect(pair.client.eofReceived() == false)
            pair.clientWire.loseConnection(nil)
            try runReady(loop)
            let error = pair.handshake.error as? TLSError
            #expect(error?.code == .closedDuringHandshake)
            #expect(pair.clientApp.events.isEmpty)
        }
    }

    // A malformed ClientHello (a handshake record whose message is cut short): the server's
    // handshake fails, it writes an alert (a record of type 21) and closes; the server
    // application is never made. (Plain text such as an HTTP request gets no alert: OpenSSL
    // sees it is not TLS at all.)
    @Test func garbageDuringHandshakeIsAnsweredWithAnAlert() throws {
        try withLoop { loop in
            let pair = try TLSPair(loop: loop)
            pair.clientWire.outbox = [0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00]
            try pair.clientWire.deliver(to: pair.serverWire)
            #expect(pair.serverWire.closed)
            #expect(pair.serverWire.outbox.first == 21)
            try runReady(loop)
            #expect(pair.serverApp.events.isEmpty)
        }
    }

    // A KeyUpdate that asks the peer to update too, in the middle of a data stream: both
    // directions go on with the new keys, byte for byte.
    @Test func keyUpdateRequestedMidStream() throws {
        try withLoop { loop in
            let pair = try TLSPair(loop: loop)
            try pair.exchange()
            let first = payload(10_000, seed: 1)
            pair.clientApp.transport?.write(first)
            let ssl = try #require(pair.client.core.ssl)
            #expect(SSL_key_update(ssl, Int32(SSL_KEY_UPDATE_REQUESTED)) == 1)
            let second = payload(10_000, seed: 2)
            pair.clientApp.transport?.write(second)   // the KeyUpdate goes out before these
            try pair.exchange(chunk: 100)
            pair.serverApp.transport?.write(second)
            try pair.exchange(chunk: 100)
            #expect(pair.serverApp.received == first + second)
            #expect(pair.clientApp.received == second)
            #expect(pair.serverApp.events == ["made"] && pair.clientApp.events == ["made"])
        }
    }

    // close() on one side: close_notify goes out; the peer's application hears EOF, closes,
    // answers with its own close_notify; both applications hear connectionLost(nil) once.
    @Test func closeNotifyIsExchangedAndEachSideIsLostOnce() throws {
        try withLoop { loop in
            let pair = try TLSPair(loop: loop)
            try pair.exchange()
            pair.clientApp.transport?.write(Array("bye".utf8))
            pair.clientApp.transport?.close()
            #expect(pair.client.state == .shuttingDown)
            try pair.exchange()
            try runReady(loop)
            #expect(String(decoding: pair.serverApp.received, as: UTF8.self) == "bye")
            #expect(pair.serverApp.events == ["made", "eof", "lost"])
            #expect(pair.clientApp.events == ["made", "lost"])
            #expect(pair.client.state == .closed && pair.server.state == .closed)
        }
    }

    // A reset while shutting down: the application hears connectionLost once, with the
    // reset's error, and the layer is closed.
    @Test func resetWhileShuttingDownIsReportedOnce() throws {
        try withLoop { loop in
            let pair = try TLSPair(loop: loop)
            try pair.exchange()
            pair.clientApp.transport?.close()
            let reset = TransportError(.connectionReset, "reset by the test")
            pair.clientWire.loseConnection(reset)
            pair.clientWire.loseConnection(reset)
            try runReady(loop)
            #expect(pair.clientApp.events.count == 2)
            #expect((pair.clientApp.lostError as? TransportError)?.code == .connectionReset)
            #expect(pair.client.state == .closed)
        }
    }

    // startTLS: the application is told to pause while the client's last flight is flushed,
    // and closes the connection right there; the handshake, finished by that same OpenSSL
    // call, must not bring the closed layer back (it trapped on closed -> wrapped).
    @Test func applicationClosingInsidePauseDuringTheLastFlightIsClosed() throws {
        try withLoop { loop in
            let serverApp = EventRecorder()
            let server = try TLSTransport(
                loop: loop, context: try TLSContext(serverConfiguration()), app: nil, factory: { serverApp })
            let app = EventRecorder()
            let waiter = Future<Void>(loop: loop)
            let client = try TLSTransport(
                loop: loop, context: try TLSContext(clientConfiguration()), app: app, serverHostname: "localhost",
                waiter: waiter, appAlreadyConnected: true)
            app.onPause = { client.close() }
            let clientWire = MemoryTransport(loop: loop, protocol: client)
            let serverWire = MemoryTransport(loop: loop, protocol: server)
            defer { letGo(layers: [client, server], wires: [clientWire, serverWire]) }
            server.attach(to: serverWire)
            client.attach(to: clientWire)
            try clientWire.deliver(to: serverWire)   // ClientHello
            clientWire.pauseOnNextWrite = true       // the client's Finished fills the socket
            try serverWire.deliver(to: clientWire)   // the server's flight: the client finishes
            try runReady(loop)
            #expect(client.state == .closed)
            #expect(app.events.first == "pause")
            #expect(waiter.isDone && waiter.error != nil)
            #expect(clientWire.closed)
        }
    }
}
