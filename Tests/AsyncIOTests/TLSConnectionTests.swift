//===----------------------------------------------------------------------===//
// swift-asyncio — The TLS core without loop or sockets: two TLSConnections, a client and a
// server, with the test passing the bytes between them, cut as it likes.
//===----------------------------------------------------------------------===//

import CAsyncIOOpenSSL
import Testing

@testable import AsyncIO

/// Writes down a ``TLSConnection``'s actions.
final class ActionRecorder: TLSConnectionSink {
    /// Everything sent, in order, until the test takes it.
    var sent: [UInt8] = []
    var received: [UInt8] = []
    var events: [String] = []
    var error: TLSError?

    override func tlsSend(_ records: UnsafeRawBufferPointer) { sent.append(contentsOf: records) }
    override func tlsHandshakeCompleted() { events.append("handshake") }
    override func tlsDeliver(_ plaintext: UnsafeRawBufferPointer) { received.append(contentsOf: plaintext) }
    override func tlsPlaintextBuffer() -> UnsafeMutableRawBufferPointer? { nil }
    override func tlsDelivered(_ count: Int) {}
    override func tlsPeerClosed(closeNotify: Bool) { events.append(closeNotify ? "closeNotify" : "eof") }
    override func tlsWritesHeld(total: Int, first: Bool) { events.append("held \(total)\(first ? " first" : "")") }
    override func tlsHeldWritesSent(closing: TLSConnection.CloseProgress?) {
        events.append("heldSent" + (closing.map { " \($0)" } ?? ""))
    }
    override func tlsClosed() { events.append("closed") }
    override func tlsFailed(_ error: TLSError) {
        events.append("failed \(error.code)")
        self.error = error
    }
    override func tlsOpenSSLReturned() { events.append("returned") }
}

/// One end of a connection: a core, its recorded actions, its plaintext buffer.
final class CoreEnd {
    let core: TLSConnection
    let actions = ActionRecorder()
    let plaintext = UnsafeMutableRawBufferPointer.allocate(byteCount: TLSLoopState.readBufferSize, alignment: 16)

    init(_ context: TLSContext, serverHostname: String? = nil) throws {
        core = try TLSConnection(context: context, serverHostname: serverHostname)
        core.setSink(actions)
    }

    deinit { plaintext.deallocate() }

    /// Takes what the core sent so far.
    func take() -> [UInt8] {
        defer { actions.sent = [] }
        return actions.sent
    }

    func receive(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { core.receive($0, plaintext: plaintext) }
    }

    func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { core.write($0) }
    }
}

/// A client and a server core, started (the ClientHello is waiting in the client's output).
struct CorePair {
    let client: CoreEnd
    let server: CoreEnd

    init(server serverConfig: TLSConfiguration = serverConfiguration(),
         client clientConfig: TLSConfiguration = clientConfiguration(),
         clientContext: TLSContext? = nil) throws {
        server = try CoreEnd(TLSContext(serverConfig))
        client = try CoreEnd(clientContext ?? TLSContext(clientConfig), serverHostname: "localhost")
        server.core.start()
        client.core.start()
    }

    /// Passes bytes both ways, cut into `chunk`-byte pieces, until neither side sends.
    func exchange(chunk: Int = .max) {
        for _ in 0..<50 {
            let toServer = client.take()
            feed(toServer, to: server, chunk: chunk)
            let toClient = server.take()
            feed(toClient, to: client, chunk: chunk)
            if toServer.isEmpty && toClient.isEmpty { return }
        }
        Issue.record("the two cores kept talking for 50 rounds")
    }
}

/// Hands `bytes` to `end` in pieces of `chunk` bytes.
func feed(_ bytes: [UInt8], to end: CoreEnd, chunk: Int) {
    var offset = 0
    while offset < bytes.count {
        let next = min(bytes.count, offset + chunk)
        end.receive(Array(bytes[offset..<next]))
        offset = next
    }
}

/// The TLS records in `bytes`, each with its 5-byte header.
func tlsRecords(_ bytes: [UInt8]) -> [[UInt8]] {
    var records: [[UInt8]] = []
    var offset = 0
    while offset + 5 <= bytes.count {
        let end = min(bytes.count, offset + 5 + Int(bytes[offset + 3]) << 8 + Int(bytes[offset + 4]))
        records.append(Array(bytes[offset..<end]))
        offset = end
    }
    return records
}

@Suite(.timeLimit(.minutes(10)))
struct TLSConnectionTests {
    // A full handshake, then data both ways; a write over a record's 16 KiB limit becomes
    // several records, delivered byte for byte.
    @Test func handshakeAndDataBothWays() throws {
        let pair = try CorePair()
        pair.exchange()
        #expect(pair.client.actions.events == ["handshake"])
        #expect(pair.server.actions.events == ["handshake"])
        #expect(pair.client.core.phase == .established && pair.server.core.phase == .established)
        #expect(pair.client.core.connectionInfo?.version == "TLSv1.3")
        #expect(pair.client.core.latestSession != nil)   // the server's ticket arrived

        pair.client.write(Array("ping".utf8))
        pair.exchange()
        #expect(pair.server.actions.received == Array("ping".utf8))

        let big = payload(40_000)
        pair.server.write(big)
        let records = tlsRecords(pair.server.take())
        #expect(records.map { $0[0] } == [23, 23, 23])
        for record in records { pair.client.receive(record) }
        #expect(pair.client.actions.received == big)
        #expect(pair.client.actions.events == ["handshake"] && pair.server.actions.events == ["handshake"])
    }

    // Every flight of the handshake fed one byte at a time (cut at every byte boundary):
    // nothing happens before a flight's last byte; then exactly what one piece would do.
    @Test func handshakeFlightsCutIntoSingleBytes() throws {
        let pair = try CorePair()
        let hello = pair.client.take()
        for byte in hello.dropLast() {
            pair.server.receive([byte])
            #expect(pair.server.actions.sent.isEmpty)
        }
        pair.server.receive([hello[hello.count - 1]])
        let serverFlight = pair.server.take()
        #expect(serverFlight.first == 22)   // ServerHello, then encrypted records
        for byte in serverFlight.dropLast() {
            pair.client.receive([byte])
            #expect(pair.client.actions.events.isEmpty)
        }
        pair.client.receive([serverFlight[serverFlight.count - 1]])
        #expect(pair.client.actions.events == ["handshake"])
        let finished = pair.client.take()
        for byte in finished.dropLast() {
            pair.server.receive([byte])
            #expect(pair.server.actions.events.isEmpty)
        }
        pair.server.receive([finished[finished.count - 1]])
        #expect(pair.server.actions.events == ["handshake"])
        pair.exchange(chunk: 1)
        pair.server.write(Array("done".utf8))
        pair.exchange(chunk: 1)
        #expect(pair.client.actions.received == Array("done".utf8))
    }

    // A flight of two records cut in two at each of its byte boundaries: a record is
    // delivered exactly when its last byte arrives, never before, never twice.
    @Test func twoRecordsCutAtEveryByteBoundary() throws {
        let pair = try CorePair()
        pair.exchange()
        let first = Array("first record".utf8), second = Array("and the second".utf8)
        pair.client.write(first)
        let firstLength = pair.client.actions.sent.count
        pair.client.write(second)
        let flight = pair.client.take()
        #expect(tlsRecords(flight).count == 2)
        pair.server.receive(flight)
        #expect(pair.server.actions.received == first + second)
        // Each cut needs fresh records (sequence numbers): the same two writes again make
        // two records of the same lengths.
        for cut in 1..<flight.count {
            pair.client.write(first)
            pair.client.write(second)
            let again = pair.client.take()
            #expect(again.count == flight.count)
            pair.server.actions.received = []
            pair.server.receive(Array(again[..<cut]))
            #expect(pair.server.actions.received == (cut >= firstLength ? first : []), "cut at \(cut)")
            pair.server.receive(Array(again[cut...]))
            #expect(pair.server.actions.received == first + second, "cut at \(cut)")
        }
        #expect(pair.server.actions.events == ["handshake"])
    }

    // While reading is paused, what arrives is kept, not delivered; resuming delivers it.
    @Test func pausedReadingKeepsTheInput() throws {
        let pair = try CorePair()
        pair.exchange()
        #expect(pair.server.core.pauseReading())
        pair.client.write(Array("later".utf8))
        let records = pair.client.take()
        pair.server.receive(records)
        #expect(pair.server.actions.received.isEmpty)
        #expect(pair.server.core.heldInputCount == records.count)
        #expect(pair.server.core.resumeReading())
        pair.server.core.receiveSaved(plaintext: pair.server.plaintext)
        #expect(pair.server.actions.received == Array("later".utf8))
        #expect(pair.server.core.heldInputCount == 0)
    }

    // A KeyUpdate that asks the peer to update too: the server answers with its own
    // KeyUpdate in front of its next write, and both directions go on with the new keys.
    @Test func keyUpdateRequestedIsAnsweredAndDataFlowsOn() throws {
        let pair = try CorePair()
        pair.exchange()
        let ssl = try #require(pair.client.core.ssl)
        #expect(SSL_key_update(ssl, Int32(SSL_KEY_UPDATE_REQUESTED)) == 1)
        pair.client.write(Array("new keys".utf8))
        let flight = pair.client.take()
        #expect(tlsRecords(flight).count == 2)   // the KeyUpdate, then the data
        feed(flight, to: pair.server, chunk: 3)
        #expect(pair.server.actions.received == Array("new keys".utf8))
        #expect(pair.server.take().isEmpty)   // reading sends nothing
        pair.server.write(Array("reply".utf8))
        let answer = pair.server.take()
        #expect(tlsRecords(answer).count == 2)   // the server's KeyUpdate, then the data
        feed(answer, to: pair.client, chunk: 3)
        #expect(pair.client.actions.received == Array("reply".utf8))
        pair.server.write(Array(" again".utf8))
        pair.client.write(Array(" more".utf8))
        #expect(tlsRecords(pair.server.actions.sent).count == 1 && tlsRecords(pair.client.actions.sent).count == 1)
        pair.exchange(chunk: 7)
        #expect(pair.client.actions.received == Array("reply again".utf8))
        #expect(pair.server.actions.received == Array("new keys more".utf8))
        #expect(pair.client.actions.events == ["handshake"] && pair.server.actions.events == ["handshake"])
    }

    // The server's session tickets split over 512-byte records (a client certificate makes
    // them long): after the first record, OpenSSL cannot encrypt until the message is
    // complete, so the client's writes are held; the rest, in small chunks, releases them, in
    // order, and the writeEOF or close that waited goes out behind them.
    @Test(arguments: [false, true])
    func writesWaitForSessionTicketsSplitOverRecords(close: Bool) throws {
        var serverConfig = serverConfiguration()
        serverConfig.clientVerification = .required
        serverConfig.caFile = "\(certificates)/ca.crt"
        let pair = try CorePair(server: serverConfig, clientContext: try splitTicketClientContext())
        pair.server.receive(pair.client.take())
        pair.client.receive(pair.server.take())
        #expect(pair.client.actions.events == ["handshake"])
        pair.server.receive(pair.client.take())   // the client's certificate and Finished
        #expect(pair.server.actions.events == ["handshake"])
        let tickets = tlsRecords(pair.server.take())
        #expect(tickets.count == 2 && tickets[0].count == 5 + 512 + 1 + 16)

        pair.client.receive(tickets[0])
        pair.client.write(Array("held ".utf8))
        pair.client.write(Array("in order".utf8))
        #expect(pair.client.actions.sent.isEmpty)
        #expect(pair.client.core.heldWriteCount == 13)
        #expect(pair.client.core.writeSide == .held)
        if close {
            #expect(pair.client.core.close() == .waitingForHeldWrites)
            #expect(pair.client.core.writeSide == .heldThenClose)
        } else {
            #expect(pair.client.core.writeEOF() == .waitingForHeldWrites)
            #expect(pair.client.core.writeSide == .heldThenWriteEOF)
        }
        pair.client.write(Array("dropped: after the close".utf8))
        #expect(pair.client.core.heldWriteCount == 13)
        #expect(pair.client.core.latestSession == nil)

        feed(tickets[1], to: pair.client, chunk: 50)
        #expect(pair.client.core.heldWriteCount == 0)
        #expect(pair.client.core.latestSession != nil)
        #expect(pair.client.core.writeSide == .closeNotifySent)
        #expect(pair.client.core.phase == (close ? .shuttingDown : .established))
        #expect(pair.client.actions.events == [
            "handshake", "held 5 first", "held 13", close ? "heldSent waitingForCloseNotify" : "heldSent",
        ])
        let out = pair.client.take()
        #expect(tlsRecords(out).count == 2)   // the data, then close_notify
        pair.server.receive(out)
        #expect(pair.server.actions.received == Array("held in order".utf8))
        #expect(pair.server.actions.events == ["handshake", "closeNotify"])
    }

    // EOF before the handshake finished fails it with closedDuringHandshake, on either side.
    @Test func eofDuringTheHandshakeFailsIt() throws {
        let pair = try CorePair()
        pair.server.receive(pair.client.take())   // the ClientHello; the server's flight is lost
        #expect(pair.client.core.receivedEOF() == false)
        #expect(pair.client.actions.events == ["failed closedDuringHandshake"])
        #expect(pair.client.actions.error == TLSError(
            .closedDuringHandshake, "the connection closed during the TLS handshake"))
        #expect(pair.client.core.phase == .closed)
        #expect(pair.server.core.receivedEOF() == false)
        #expect(pair.server.actions.error?.code == .closedDuringHandshake)
        #expect(pair.server.core.phase == .closed)
    }

    // close() sends close_notify and waits; the peer hears it as the end of its input, and
    // its own close answers at once (it had the other's already); the first side then
    // closes too. Nothing is sent after close_notify.
    @Test func closeNotifyBothWays() throws {
        let pair = try CorePair()
        pair.exchange()
        pair.client.write(Array("last".utf8))
        #expect(pair.client.core.close() == .waitingForCloseNotify)
        #expect(pair.client.core.phase == .shuttingDown && pair.client.core.writeSide == .closeNotifySent)
        pair.client.write(Array("too late".utf8))
        #expect(pair.client.core.close() == .alreadyClosing)
        let out = pair.client.take()
        #expect(tlsRecords(out).count == 2)   // "last", then close_notify
        pair.server.receive(out)
        #expect(pair.server.actions.received == Array("last".utf8))
        #expect(pair.server.actions.events == ["handshake", "closeNotify"])
        #expect(pair.server.core.readSide == .closeNotifyReceived)
        #expect(pair.server.core.close() == .done)
        #expect(pair.server.actions.events == ["handshake", "closeNotify", "closed"])
        #expect(pair.server.core.phase == .closed)
        pair.client.receive(pair.server.take())
        #expect(pair.client.actions.events == ["handshake", "closed"])
        #expect(pair.client.core.phase == .closed)
        #expect(pair.client.actions.received.isEmpty)
    }

    // writeEOF (TLS 1.3 half-close): the peer hears close_notify and may keep writing; what
    // it writes is still delivered; its close_notify then ends the connection.
    @Test func halfCloseThenTheOtherWay() throws {
        let pair = try CorePair()
        pair.exchange()
        #expect(pair.client.core.writeEOF() == .waitingForCloseNotify)
        #expect(pair.client.core.phase == .established && pair.client.core.writeSide == .closeNotifySent)
        pair.server.receive(pair.client.take())
        #expect(pair.server.actions.events == ["handshake", "closeNotify"])
        pair.server.write(Array("still here".utf8))
        #expect(pair.server.core.writeEOF() == .done)   // both close_notifys: done
        #expect(pair.server.actions.events == ["handshake", "closeNotify", "closed"])
        pair.client.receive(pair.server.take())
        #expect(pair.client.actions.received == Array("still here".utf8))
        #expect(pair.client.actions.events == ["handshake", "closeNotify"])
        #expect(pair.client.core.close() == .done)
        #expect(pair.client.actions.events == ["handshake", "closeNotify", "closed"])
    }

    // EOF while established is the peer's end without close_notify (reported, not an
    // error); EOF while shutting down finishes the shutdown.
    @Test func eofAfterTheHandshake() throws {
        let pair = try CorePair()
        pair.exchange()
        #expect(pair.server.core.receivedEOF() == true)
        #expect(pair.server.actions.events == ["handshake", "eof"])
        #expect(pair.server.core.readSide == .eofReceived)
        #expect(pair.server.core.close() == .done)   // nobody to wait for
        #expect(pair.client.core.close() == .waitingForCloseNotify)
        #expect(pair.client.core.receivedEOF() == true)
        #expect(pair.client.actions.events == ["handshake", "closed"])
        #expect(pair.client.core.phase == .closed)
    }

    // A record the peer never encrypted: the connection fails with protocolError and
    // OpenSSL's reason, after sending its alert.
    @Test func garbageAfterTheHandshakeFailsTheConnection() throws {
        let pair = try CorePair()
        pair.exchange()
        pair.server.receive([0x17, 0x03, 0x03, 0x00, 0x20] + [UInt8](repeating: 0, count: 32))
        #expect(pair.server.actions.events == ["handshake", "failed protocolError"])
        #expect(pair.server.actions.error == TLSError(
            .protocolError, "TLS error: decryption failed or bad record mac",
            reason: "decryption failed or bad record mac"))
        #expect(pair.server.core.phase == .closed)
        #expect(tlsRecords(pair.server.take()).count == 1)   // the alert
        pair.server.receive([0x17, 0x03, 0x03, 0x00, 0x01, 0x00])
        #expect(pair.server.actions.events == ["handshake", "failed protocolError"])   // nothing more
    }

    // A ClientHello cut short inside its record: the handshake fails with OpenSSL's reason,
    // and an alert goes back.
    @Test func garbageDuringTheHandshakeFailsIt() throws {
        let pair = try CorePair()
        pair.server.receive([0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00])
        #expect(pair.server.actions.events == ["failed handshakeFailed"])
        #expect(pair.server.actions.error == TLSError(
            .handshakeFailed, "TLS handshake failed: length too short", reason: "length too short"))
        let alert = pair.server.take()
        #expect(alert.first == 21 && tlsRecords(alert).count == 1)
        // Not TLS at all: no alert, the same code.
        let other = try CorePair()
        other.server.receive(Array("GET / HTTP/1.1\r\n\r\n".utf8))
        #expect(other.server.actions.error == TLSError(
            .handshakeFailed, "TLS handshake failed: http request", reason: "http request"))
        #expect(other.server.take().isEmpty)
    }

    // A client that does not trust the server's certificate: certificateVerificationFailed
    // with the reason, and the server hears the client's alert as a handshake failure.
    @Test func untrustedServerCertificate() throws {
        var config = clientConfiguration()
        config.caFile = "\(certificates)/client.crt"   // not the CA that signed the server's
        let pair = try CorePair(client: config)
        pair.exchange()
        #expect(pair.client.actions.error == TLSError(
            .certificateVerificationFailed, "certificate verification failed: unable to get local issuer certificate",
            reason: "unable to get local issuer certificate"))
        #expect(pair.server.actions.error == TLSError(
            .handshakeFailed, "TLS handshake failed: tlsv1 alert unknown ca", reason: "tlsv1 alert unknown ca"))
    }
}
