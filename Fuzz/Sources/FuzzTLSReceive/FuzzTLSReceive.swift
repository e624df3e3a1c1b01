//===----------------------------------------------------------------------===//
// swift-asyncio fuzzing — the TLS layer's receive side, as a server.
//
// Two modes, chosen by the first byte:
//   raw:  the input's bytes are what a client sends (seeds: ClientHellos and whole client
//         sides of TLS 1.2 and 1.3 exchanges captured from our own client, see
//         `captureSeeds`), cut into chunks, then EOF;
//   live: our TLS client and server run a real handshake over memory transports, and the
//         input mutates the client's records on their way to the server: bit flips,
//         truncation, dropped, duplicated and swapped records, bytes inserted, lengths and
//         content types changed; then application data, KeyUpdate, close_notify, records
//         after close_notify and EOF, as the input says.
// The server's application echoes and pauses/resumes reading as the input says.
//
// Checked: no crash, no hang (bounded rounds, no endless output); buffering stays bounded
// (bytes the layer holds for a paused application, writes it holds, what it writes); every
// failure closes the connection, and the error reported (the layer's failure and the
// application's connectionLost) is a TLSError; the application hears connectionLost exactly
// once if it was made.
//===----------------------------------------------------------------------===//

import CAsyncIOOpenSSL
import CFuzzDriver
import FuzzSupport
#if canImport(Glibc)
import Glibc
#endif

@testable import AsyncIO

// MARK: - Memory transport and application

/// A stream transport without a socket: writes collect in `outbox`; reading pauses as a
/// socket transport's would (nothing is delivered while paused).
final class Wire: StreamTransport {
    let loop: EventLoop
    var streamProtocol: any StreamProtocol
    var outbox: [UInt8] = []
    var totalWritten = 0
    var closed = false
    var aborted = false
    var lost = false
    var readingPaused = false

    init(loop: EventLoop, protocol: any StreamProtocol) {
        self.loop = loop
        self.streamProtocol = `protocol`
    }

    func write(_ bytes: UnsafeRawBufferPointer) {
        guard !closed else { return }
        outbox.append(contentsOf: bytes)
        totalWritten += bytes.count
    }

    func writeEOF() {}
    var canWriteEOF: Bool { true }

    func close() {
        guard !closed else { return }
        closed = true
        _ = loop.callSoon { [self] in lose(nil) }
    }

    func abort() {
        aborted = true
        outbox = []
        close()
    }

    func lose(_ error: (any Error)?) {
        guard !lost else { return }
        lost = true
        closed = true
        streamProtocol.connectionLost(error)
        // As the socket transport does: the protocol goes (it holds us: a cycle otherwise).
        streamProtocol = ClosedProtocol.shared
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

    /// Delivers `bytes` to the protocol, `chunk` bytes at a time, while reading is not
    /// paused; returns what was not delivered (a real socket keeps it in the kernel).
    func deliver(_ bytes: [UInt8], chunk: Int) -> [UInt8] {
        var offset = 0
        while offset < bytes.count && !lost && !readingPaused {
            let end = min(bytes.count, offset + max(1, chunk))
            bytes[offset..<end].withUnsafeBytes { piece in
                do {
                    try streamProtocol.dataReceived(piece)
                } catch {
                    fuzzFailure("the TLS layer's dataReceived threw \(error)")
                }
            }
            offset = end
        }
        return lost ? [] : Array(bytes[offset...])
    }
}

/// The server's application: echoes, pauses and resumes reading when told.
final class App: StreamProtocol {
    var transport: (any StreamTransport)?
    var made = 0
    var lost = 0
    var lostError: (any Error)?
    var received = 0
    var pauseEvery = 0
    var pausedForWriting = false

    func connectionMade(_ transport: any StreamTransport) {
        self.transport = transport
        made += 1
    }

    func dataReceived(_ bytes: UnsafeRawBufferPointer) {
        fuzzCheck(made == 1 && lost == 0, "dataReceived outside the connection (made \(made), lost \(lost))")
        received += bytes.count
        transport?.write(bytes)
        if pauseEvery > 0 && received % pauseEvery < bytes.count { transport?.pauseReading() }
    }

    func eofReceived() -> Bool { false }

    func connectionLost(_ error: (any Error)?) {
        fuzzCheck(made == 1, "connectionLost for an application never made")
        lost += 1
        lostError = error
        transport = nil
    }

    func pauseWriting() {
        pausedForWriting = true
        transport?.pauseReading()
    }

    func resumeWriting() {
        pausedForWriting = false
        transport?.resumeReading()
    }
}

/// A client application that only counts.
final class ClientApp: StreamProtocol {
    var transport: (any StreamTransport)?
    func connectionMade(_ transport: any StreamTransport) { self.transport = transport }
    func dataReceived(_ bytes: UnsafeRawBufferPointer) {}
}

// MARK: - Set-up

private let certificates: String = {
    // Fuzz/Sources/FuzzTLSReceive/ → the repository's Certificates/.
    var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(4)
    return parts.joined(separator: "/") + "/Certificates"
}()

private struct Contexts {
    let server: TLSContext
    let clients: [TLSContext]   // TLS 1.3, TLS 1.2
}

nonisolated(unsafe) private var sharedLoop: EventLoop?
nonisolated(unsafe) private var sharedContexts: Contexts?

private func setUp() -> (EventLoop, Contexts) {
    if let sharedLoop, let sharedContexts { return (sharedLoop, sharedContexts) }
    do {
        let loop = try EventLoop(name: "fuzz")
        var server = TLSConfiguration.server(
            certificateChain: "\(certificates)/server.crt", privateKey: "\(certificates)/server.key")
        server.sessionTicketCount = 2
        var client13 = TLSConfiguration.client(caFile: "\(certificates)/ca.crt")
        client13.minimumVersion = .v1_3
        var client12 = TLSConfiguration.client(caFile: "\(certificates)/ca.crt")
        client12.maximumVersion = .v1_2
        let contexts = Contexts(
            server: try TLSContext(server), clients: [try TLSContext(client13), try TLSContext(client12)])
        sharedLoop = loop
        sharedContexts = contexts
        return (loop, contexts)
    } catch {
        fuzzFailure("set-up failed: \(error)")
    }
}

/// Runs what is ready on the loop now.
private func runReady(_ loop: EventLoop) {
    _ = loop.callSoon { loop.stop() }
    do { try loop.runForever() } catch { fuzzFailure("the loop failed: \(error)") }
}

/// A server TLS layer on a wire, with its application.
private final class Server {
    let layer: TLSTransport
    let wire: Wire
    let app = App()
    var fed = 0
    /// What the application wrote on its own (not an echo).
    var extraWritten = 0
    var pending: [UInt8] = []   // delivered once the layer reads again
    var maxChunk = 1

    init(_ loop: EventLoop, _ context: TLSContext, pauseEvery: Int) {
        let app = self.app
        app.pauseEvery = pauseEvery
        do {
            layer = try TLSTransport(loop: loop, context: context, app: nil, factory: { app })
        } catch {
            fuzzFailure("cannot make the server layer: \(error)")
        }
        wire = Wire(loop: loop, protocol: layer)
        layer.attach(to: wire)
    }

    /// Sends `bytes` to the server in `chunk`-byte pieces (after what it has not read yet).
    func send(_ bytes: [UInt8], chunk: Int) {
        maxChunk = max(maxChunk, chunk)
        fed += bytes.count
        pending = wire.deliver(pending + bytes, chunk: chunk)
        check()
    }

    /// The application resumes reading, say after it caught up.
    func resume(chunk: Int) {
        if app.transport != nil && !app.pausedForWriting { app.transport?.resumeReading() }
        if !wire.readingPaused && !pending.isEmpty { pending = wire.deliver(pending, chunk: chunk) }
        check()
    }

    func check() {
        // Held for a paused application: at most the rest of one chunk.
        fuzzCheck(layer.heldInputCount <= maxChunk, "the layer holds \(layer.heldInputCount) received bytes (chunks of \(maxChunk))")
        // Writes held inside a post-handshake message: bounded by the water mark and a record.
        fuzzCheck(layer.heldWriteCount <= 256 * 1024, "the layer holds \(layer.heldWriteCount) written bytes")
        // No endless output: the handshake, tickets, alerts and the echo.
        fuzzCheck(wire.totalWritten <= 64 * 1024 + 4 * fed + 2 * extraWritten, "the server wrote \(wire.totalWritten) bytes for \(fed) received")
        if let failure = layer.failure {
            fuzzCheck(failure is TLSError, "the layer failed with \(type(of: failure)): \(failure)")
        }
        if layer.state == .closed {
            fuzzCheck(wire.closed, "the layer is closed, its transport is not")
        }
    }

    /// EOF, then the transport goes away: the end of every connection.
    func finish(_ loop: EventLoop) {
        // As a socket transport does: false from eofReceived means "close".
        if !wire.lost && !layer.eofReceived() { wire.close() }
        runReady(loop)
        check()
        wire.lose(nil)
        runReady(loop)
        fuzzCheck(layer.state == .closed, "the layer is \(layer.state) after its transport was lost")
        fuzzCheck(app.made <= 1 && app.lost == app.made, "application made \(app.made), lost \(app.lost)")
        if let error = app.lostError {
            fuzzCheck(error is TLSError, "the application lost its connection with \(type(of: error)): \(error)")
        }
    }
}

// MARK: - The fuzz target

/// libFuzzer's entry point: one connection to a server TLS layer.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTLSReceive(_ start: UnsafeRawPointer?, _ count: Int) -> Int32 {
    var input = FuzzInput(start, count)
    let (loop, contexts) = setUp()
    if input.byte() & 1 == 0 {
        raw(&input, loop, contexts)
    } else {
        live(&input, loop, contexts)
    }
    // Timers (handshake and shutdown timeouts) of this input must not fire in a later one.
    runReady(loop)
    return 0
}

private func chunkSize(_ input: inout FuzzInput) -> Int {
    let sizes = [1, 2, 5, 17, 100, 1000, 16_389, 1 << 20]
    return sizes[input.int(below: sizes.count)]
}

/// The input's bytes are the client's.
private func raw(_ input: inout FuzzInput, _ loop: EventLoop, _ contexts: Contexts) {
    let chunk = chunkSize(&input)
    let pauseEvery = input.bool() ? 1 + input.int(below: 64) : 0
    let server = Server(loop, contexts.server, pauseEvery: pauseEvery)
    let bytes = input.rest()
    var offset = 0
    var rounds = 0
    while offset < bytes.count && !server.wire.lost {
        let end = min(bytes.count, offset + chunk)
        server.send(Array(bytes[offset..<end]), chunk: chunk)
        offset = end
        runReady(loop)
        server.resume(chunk: chunk)
        server.wire.outbox = []   // nobody reads the server's answers
        rounds += 1
        fuzzCheck(rounds < 100_000, "no end")
    }
    for _ in 0..<4 where !server.pending.isEmpty {
        runReady(loop)
        server.resume(chunk: chunk)
    }
    server.finish(loop)
}

/// A TLS record from `bytes` at `offset`: its length with the header, or the rest.
private func recordLength(_ bytes: [UInt8], _ offset: Int) -> Int {
    guard bytes.count - offset >= 5 else { return bytes.count - offset }
    let length = Int(bytes[offset + 3]) << 8 | Int(bytes[offset + 4])
    return min(5 + length, bytes.count - offset)
}

/// The client's records, mutated as the input says.
private func mutate(_ bytes: [UInt8], _ input: inout FuzzInput) -> [UInt8] {
    var records: [[UInt8]] = []
    var offset = 0
    while offset < bytes.count {
        let length = recordLength(bytes, offset)
        records.append(Array(bytes[offset..<(offset + length)]))
        offset += length
    }
    var out: [UInt8] = []
    var i = 0
    while i < records.count {
        var record = records[i]
        let op = input.byte()
        switch op % 16 {
        case 0:   // flip a byte
            if !record.isEmpty { record[input.int(below: 65536) % record.count] ^= max(1, input.byte()) }
        case 1:   // truncate (the rest of the stream is read from the wrong place)
            record = Array(record.prefix(input.int(below: 65536) % (record.count + 1)))
        case 2:   // drop
            record = []
        case 3:   // duplicate
            record += record
        case 4:   // swap with the next
            if i + 1 < records.count {
                records.swapAt(i, i + 1)
                record = records[i]
            }
        case 5:   // insert bytes before it
            record = input.data(input.int(below: 64)) + record
        case 6:   // another length
            if record.count >= 5 {
                record[3] = input.byte()
                record[4] = input.byte()
            }
        case 7:   // another content type or version
            if record.count >= 5 { record[input.bool() ? 0 : 2] = input.byte() }
        default:
            break   // unchanged (most records)
        }
        out += record
        i += 1
    }
    return out
}

/// A real client; its records are mutated on their way.
private func live(_ input: inout FuzzInput, _ loop: EventLoop, _ contexts: Contexts) {
    let clientContext = contexts.clients[input.int(below: contexts.clients.count)]
    let chunk = chunkSize(&input)
    let pauseEvery = input.bool() ? 1 + input.int(below: 20_000) : 0
    let server = Server(loop, contexts.server, pauseEvery: pauseEvery)
    let clientApp = ClientApp()
    let client: TLSTransport
    let handshake = Future<Void>(loop: loop)
    // The client's handshake fails whenever the mutations hit it: read, so it is not logged.
    defer { _ = handshake.error }
    do {
        client = try TLSTransport(
            loop: loop, context: clientContext, app: clientApp, serverHostname: "localhost", waiter: handshake)
    } catch {
        fuzzFailure("cannot make the client layer: \(error)")
    }
    let clientWire = Wire(loop: loop, protocol: client)
    client.attach(to: clientWire)

    var rounds = 0
    /// Moves bytes both ways until nothing moves: the client's mutated, the server's as they are.
    func pump() {
        for _ in 0..<64 {
            let fromClient = clientWire.outbox
            clientWire.outbox = []
            if !fromClient.isEmpty && !server.wire.lost {
                server.send(mutate(fromClient, &input), chunk: chunk)
            }
            let fromServer = server.wire.outbox
            server.wire.outbox = []
            if !fromServer.isEmpty && !clientWire.lost {
                _ = clientWire.deliver(fromServer, chunk: 1 << 20)
            }
            runReady(loop)
            server.resume(chunk: chunk)
            rounds += 1
            if clientWire.outbox.isEmpty && server.wire.outbox.isEmpty && fromClient.isEmpty && fromServer.isEmpty {
                return
            }
        }
        // A real peer could keep a connection busy for ever with valid traffic, but not this
        // script: it writes a bounded amount.
        fuzzFailure("the two layers kept talking for 64 rounds")
    }

    pump()
    // What the client does next, step by step.
    for _ in 0..<input.int(below: 8) {
        guard !server.wire.lost, !clientWire.closed else { break }
        switch input.byte() % 6 {
        case 0, 1:
            // Big writes only with big chunks: 70 KB a byte at a time is slow, not interesting.
            let size = [1, 100, 5000, 20_000, 70_000][input.int(below: 5)] / (chunk < 100 ? 20 : 1)
            let data = [UInt8](repeating: input.byte(), count: size)
            clientApp.transport?.write(data)
        case 2:
            if let ssl = client.ssl, SSL_version(ssl) == Int32(TLS1_3_VERSION), client.state == .wrapped {
                _ = SSL_key_update(ssl, Int32(input.bool() ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED))
                clientApp.transport?.write([1, 2, 3])
            }
        case 3:
            clientApp.transport?.close()   // close_notify
        case 4:
            // Raw bytes from the input, as if from the client: records after close_notify,
            // garbage between records.
            server.send(input.data(input.int(below: 300)), chunk: chunk)
        default:
            let size = input.int(below: 3) * 30_000
            server.extraWritten += size
            server.app.transport?.write([UInt8](repeating: 7, count: size))
        }
        pump()
    }
    fuzzCheck(rounds < 10_000, "no end")
    server.finish(loop)
    clientWire.lose(nil)
    runReady(loop)
}

// MARK: - Seeds

/// `FUZZ_TLS_CAPTURE=DIR fuzz-tls-receive -runs=0` writes the raw-mode seeds: what our client
/// sends to our server (unmutated) in a TLS 1.3 and a TLS 1.2 exchange — the ClientHello
/// alone, and the whole client side (hello, second flight, data, KeyUpdate, close_notify).
/// libFuzzer calls it once before the first input; without the variable it does nothing.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32 {
    guard let directory = getenv("FUZZ_TLS_CAPTURE").map({ String(cString: $0) }) else { return 0 }
    let (loop, contexts) = setUp()
    for (name, context) in zip(["tls13", "tls12"], contexts.clients) {
        let server = Server(loop, contexts.server, pauseEvery: 0)
        let clientApp = ClientApp()
        guard let client = try? TLSTransport(
            loop: loop, context: context, app: clientApp, serverHostname: "localhost", waiter: Future<Void>(loop: loop))
        else { fuzzFailure("client") }
        let clientWire = Wire(loop: loop, protocol: client)
        client.attach(to: clientWire)
        var sent: [UInt8] = []
        var first = true
        func pump() {
            for _ in 0..<20 {
                let fromClient = clientWire.outbox
                clientWire.outbox = []
                if first && !fromClient.isEmpty {
                    save([0, 0, 0] + fromClient, to: "\(directory)/\(name)-clienthello")   // raw mode, 1-byte chunks
                    first = false
                }
                sent += fromClient
                server.send(fromClient, chunk: 1 << 20)
                let fromServer = server.wire.outbox
                server.wire.outbox = []
                _ = clientWire.deliver(fromServer, chunk: 1 << 20)
                runReady(loop)
            }
        }
        pump()
        clientApp.transport?.write(Array("hello".utf8))
        if let ssl = client.ssl, name == "tls13" { _ = SSL_key_update(ssl, Int32(SSL_KEY_UPDATE_REQUESTED)) }
        clientApp.transport?.write(Array("world".utf8))
        pump()
        clientApp.transport?.close()
        pump()
        save([0, 7, 0] + sent, to: "\(directory)/\(name)-exchange")   // raw mode, whole chunks
        server.finish(loop)
    }
    exit(0)
}

private func save(_ bytes: [UInt8], to path: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { fuzzFailure("cannot write \(path)") }
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
}

/// The executable's entry point (SwiftPM names it `FuzzTLSReceive_main`): libFuzzer's driver.
@_cdecl("FuzzTLSReceive_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzTLSReceive(data.map(UnsafeRawPointer.init), size) }
}
