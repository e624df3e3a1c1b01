//===----------------------------------------------------------------------===//
// swift-asyncio — TLS: contexts, the TLS layer, startTLS, resumption; against our own
// client/server and against OpenSSL's and Python's.
//===----------------------------------------------------------------------===//

import CAsyncIOOpenSSL
import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// The repository's Certificates/ folder (test CA, server and client certificates).
let certificates: String = {
    var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)   // Tests/AsyncIOTests/TLSTests.swift
    return parts.joined(separator: "/") + "/Certificates"
}()

func serverConfiguration() -> TLSConfiguration {
    .server(certificateChain: "\(certificates)/server.crt", privateKey: "\(certificates)/server.key")
}

func clientConfiguration() -> TLSConfiguration {
    .client(caFile: "\(certificates)/ca.crt")
}

/// Echoes every byte; counts its callbacks.
final class TLSEcho: StreamProtocol, @unchecked Sendable {
    var transport: (any StreamTransport)?
    var made = 0
    var lost = 0
    var lostError: (any Error)?
    var info: TLSConnectionInfo?
    func connectionMade(_ transport: any StreamTransport) {
        made += 1
        self.transport = transport
        info = transport.tlsInfo
    }
    func dataReceived(_ bytes: UnsafeRawBufferPointer) { transport?.write(bytes) }
    func eofReceived() -> Bool { false }
    func connectionLost(_ error: (any Error)?) {
        lost += 1
        lostError = error
        transport = nil
    }
}

/// Collects what arrives; `done` completes at connectionLost.
final class TLSCollector: StreamProtocol, @unchecked Sendable {
    var transport: (any StreamTransport)?
    var received: [UInt8] = []
    var eof = false
    var made = 0
    var lost = 0
    var lostError: (any Error)?
    var pauses = 0
    let done: Future<Void>
    var onData: ((TLSCollector) -> Void)?
    init(loop: EventLoop) { done = Future(loop: loop) }
    func connectionMade(_ transport: any StreamTransport) {
        made += 1
        self.transport = transport
    }
    func dataReceived(_ bytes: UnsafeRawBufferPointer) {
        received.append(contentsOf: bytes)
        onData?(self)
    }
    func eofReceived() -> Bool {
        eof = true
        return false
    }
    var resumes = 0
    /// Stop reading while writing is paused (what the echo servers do).
    var pausesReadingWithWriting = false
    var onPauseWriting: ((TLSCollector) -> Void)?
    func pauseWriting() {
        pauses += 1
        if pausesReadingWithWriting { transport?.pauseReading() }
        onPauseWriting?(self)
    }
    func resumeWriting() {
        resumes += 1
        if pausesReadingWithWriting { transport?.resumeReading() }
    }
    func connectionLost(_ error: (any Error)?) {
        lost += 1
        lostError = error
        done.complete(.success(()))
    }
}

/// A client context with our client certificate (long session tickets) that asks for records
/// of at most 512 bytes, so ``pythonSplitTicketServer``'s tickets span several.
func splitTicketClientContext() throws -> TLSContext {
    var config = clientConfiguration()
    config.certificateChain = "\(certificates)/client.crt"
    config.privateKey = "\(certificates)/client.key"
    let client = try TLSContext(config)
    SSL_CTX_set_tlsext_max_fragment_length(client.context, UInt8(TLSEXT_max_fragment_length_512))
    return client
}

/// ``pythonSplitTicketServer`` running: its output once it ended, and the go-ahead for the
/// rest of its tickets (or its FIN) after the test saw its writes held.
struct SplitTicketPeer {
    let process: Process
    let result: LoopTask<ProcessResult>

    /// Lets the peer go on past the first part of its tickets (SIGUSR1, which it waits for).
    func sendTheRest() { process.sendSignal(SIGUSR1) }
}

/// Starts ``pythonSplitTicketServer`` in `mode`, accepts its TCP connection and starts TLS on it
/// as the client; the caller lets the peer go on (``SplitTicketPeer/sendTheRest()``), closes
/// the listener and awaits the peer.
func connectToSplitTicketServer(
    _ loop: EventLoop, _ client: TLSContext, mode: String, pauseReading: Bool = false
) async throws -> (Server, SplitTicketPeer, TLSCollector, any StreamTransport) {
    let sink = Box<TLSCollector?>(nil)
    let listener = try await loop.createServer(host: "127.0.0.1", port: 0) {
        let collector = TLSCollector(loop: loop)
        collector.pausesReadingWithWriting = pauseReading
        sink.value = collector
        return collector
    }
    let port = listener.addresses[0].port ?? 0
    let process = try await loop.createSubprocessExec(
        "python3", ["-c", pythonSplitTicketServer, "\(port)", certificates, mode],
        stdin: .devNull, stdout: .pipe, stderr: .pipe)
    let result = loop.createTask { () async throws -> ProcessResult in
        let (stdout, stderr) = try await process.communicate()
        return ProcessResult(returnCode: process.returnCode ?? -1, stdout: stdout, stderr: stderr)
    }
    let peer = SplitTicketPeer(process: process, result: result)
    do {
        try await waitUntil("sink.value?.transport != nil", timeout: .seconds(20)) { sink.value?.transport != nil }
    } catch {
        process.kill()
        throw error
    }
    guard let collector = sink.value, let plain = collector.transport else { throw TimeoutError() }
    let secure = try await loop.startTLS(plain, context: client, serverHostname: "localhost")
    collector.transport = secure
    return (listener, peer, collector, secure)
}

/// A payload of `count` pseudo-random bytes.
func payload(_ count: Int, seed: UInt64 = 42) -> [UInt8] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return UInt8(truncatingIfNeeded: state >> 33)
    }
}

@Suite(.timeLimit(.minutes(10)))
struct TLSTests {
    // Our client and server: 1 MiB echoed exactly; TLS 1.3 by default; what each side sees.
    @Test func echoOverTLSWithConnectionInfo() throws {
        try withLoop { loop in
            let server = try TLSContext(serverConfiguration())
            let client = try TLSContext(clientConfiguration())
            let data = payload(1 << 20)
            let serverSide = Box<TLSEcho?>(nil)
            let (received, info, lost) = try loop.runUntilComplete {
                () async throws -> ([UInt8], TLSConnectionInfo?, Int) in
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) {
                    let echo = TLSEcho()
                    serverSide.value = echo
                    return echo
                }
                defer { listener.close() }
                let port = listener.addresses[0].port ?? 0
                let (transport, collector) = try await loop.createConnection(
                    host: "127.0.0.1", port: port, tls: client) { TLSCollector(loop: loop) }
                transport.write(data)
                try await waitUntil("collector.received.count >= data.count", timeout: .seconds(20)) { collector.received.count >= data.count }
                let info = transport.tlsInfo
                transport.close()
                try await collector.done.value
                try await waitUntil("serverSide.value?.lost == 1", timeout: .seconds(20)) { serverSide.value?.lost == 1 }
                return (collector.received, info, collector.lost)
            }
            #expect(received.count == data.count)
            #expect(Bool(received == data))   // a Bool: no element-wise diff of 1 MiB on failure
            #expect(lost == 1)
            #expect(info?.version == "TLSv1.3")
            #expect(info?.cipher.hasPrefix("TLS_AES_") == true)
            #expect(info?.peerCertificate?.subject == "CN=localhost,O=swift-asyncio tests")
            #expect(info?.peerCertificate?.subjectAlternativeNames == ["localhost", "127.0.0.1", "::1"])
            #expect(info?.peerCertificate?.der.first == 0x30)   // a DER SEQUENCE
            #expect(serverSide.value?.made == 1)
            #expect(serverSide.value?.lost == 1)
            #expect(serverSide.value?.lostError == nil)
            #expect(serverSide.value?.info?.peerCertificate == nil)   // no client certificate
        }
    }

    // The server's name is checked: a wrong name and an unknown CA fail with reasons that say so.
    @Test func verificationFailuresNameTheReason() throws {
        try withLoop { loop in
            let server = try TLSContext(serverConfiguration())
            let client = try TLSContext(clientConfiguration())
            // Trusting only the client certificate: the server's CA is unknown.
            let stranger = try TLSContext(.client(caFile: "\(certificates)/client.crt"))
            let (wrongName, unknownCA, ipOK) = try loop.runUntilComplete {
                () async throws -> (TLSError?, TLSError?, Bool) in
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) { TLSEcho() }
                defer { listener.close() }
                let port = listener.addresses[0].port ?? 0
                var wrongName: TLSError?
                do {
                    _ = try await loop.createConnection(
                        host: "127.0.0.1", port: port, tls: client, serverHostname: "example.com"
                    ) { TLSCollector(loop: loop) }
                } catch let error as TLSError { wrongName = error }
                var unknownCA: TLSError?
                do {
                    _ = try await loop.createConnection(
                        host: "127.0.0.1", port: port, tls: stranger, serverHostname: "localhost"
                    ) { TLSCollector(loop: loop) }
                } catch let error as TLSError { unknownCA = error }
                // The IP address is checked against the IP SANs.
                let (transport, _) = try await loop.createConnection(host: "127.0.0.1", port: port, tls: client) {
                    TLSCollector(loop: loop)
                }
                transport.close()
                return (wrongName, unknownCA, true)
            }
            #expect(wrongName?.code == .certificateVerificationFailed)
            #expect(wrongName?.reason == "hostname mismatch")
            #expect(unknownCA?.code == .certificateVerificationFailed)
            #expect(unknownCA?.reason == "unable to get local issuer certificate")
            #expect(ipOK)
        }
    }

    // mTLS: no client certificate is refused, a valid one is accepted and seen by the server.
    @Test func clientCertificatesRequired() throws {
        try withLoop { loop in
            var serverConfig = serverConfiguration()
            serverConfig.caFile = "\(certificates)/ca.crt"
            serverConfig.clientVerification = .required
            let server = try TLSContext(serverConfig)
            let anonymous = try TLSContext(clientConfiguration())
            var withCertificate = clientConfiguration()
            withCertificate.certificateChain = "\(certificates)/client.crt"
            withCertificate.privateKey = "\(certificates)/client.key"
            let client = try TLSContext(withCertificate)
            let serverSide = Box<TLSEcho?>(nil)
            let (refused, echoed) = try loop.runUntilComplete { () async throws -> ((any Error)?, [UInt8]) in
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) {
                    let echo = TLSEcho()
                    serverSide.value = echo
                    return echo
                }
                defer { listener.close() }
                let port = listener.addresses[0].port ?? 0
                // TLS 1.3: the client's handshake ends before the server checks its
                // certificate, so the refusal arrives as the connection's error.
                var refused: (any Error)?
                do {
                    let (transport, collector) = try await loop.createConnection(
                        host: "127.0.0.1", port: port, tls: anonymous) { TLSCollector(loop: loop) }
                    transport.write("ping")
                    try await collector.done.value
                    refused = collector.lostError
                } catch {
                    refused = error
                }
                let (transport, collector) = try await loop.createConnection(host: "127.0.0.1", port: port, tls: client) {
                    TLSCollector(loop: loop)
                }
                transport.write("ping")
                try await waitUntil("collector.received.count >= 4", timeout: .seconds(20)) { collector.received.count >= 4 }
                transport.close()
                return (refused, collector.received)
            }
            let error = refused as? TLSError
            #expect(error?.reason.contains("certificate required") == true, "\(String(describing: refused))")
            #expect(echoed == Array("ping".utf8))
            #expect(serverSide.value?.info?.peerCertificate?.subject == "CN=swift-asyncio test client,O=swift-asyncio tests")
        }
    }

    // ALPN picks the server's preference among the client's; TLS 1.2 still works; SNI picks a context.
    @Test func alpnVersionsAndServerNameCallback() throws {
        try withLoop { loop in
            var alternate = TLSConfiguration.server(
                certificateChain: "\(certificates)/client.crt", privateKey: "\(certificates)/client.key")
            alternate.alpnProtocols = ["h2"]
            let alternateContext = try TLSContext(alternate)
            var serverConfig = serverConfiguration()
            serverConfig.alpnProtocols = ["h2", "http/1.1"]
            serverConfig.serverNameCallback = { name in name == "alt.test" ? alternateContext : nil }
            let server = try TLSContext(serverConfig)
            var clientConfig = clientConfiguration()
            clientConfig.alpnProtocols = ["http/1.1", "h2"]
            let client = try TLSContext(clientConfig)
            clientConfig.maximumVersion = .v1_2
            clientConfig.alpnProtocols = ["spdy/1"]
            let old = try TLSContext(clientConfig)
            var unverified = TLSConfiguration.client()
            unverified.verifyPeer = false
            let sniClient = try TLSContext(unverified)
            let (infos, canWriteEOF) = try loop.runUntilComplete { () async throws -> ([TLSConnectionInfo?], [Bool]) in
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) { TLSEcho() }
                defer { listener.close() }
                let port = listener.addresses[0].port ?? 0
                var infos: [TLSConnectionInfo?] = []
                var canWriteEOF: [Bool] = []
                for (context, name) in [(client, "localhost"), (old, "localhost"), (sniClient, "alt.test")] {
                    let (transport, _) = try await loop.createConnection(
                        host: "127.0.0.1", port: port, tls: context, serverHostname: name) { TLSCollector(loop: loop) }
                    infos.append(transport.tlsInfo)
                    canWriteEOF.append(transport.canWriteEOF)
                    transport.close()
                }
                return (infos, canWriteEOF)
            }
            #expect(infos[0]?.alpnProtocol == "h2")
            #expect(infos[0]?.version == "TLSv1.3")
            #expect(infos[0]?.serverName == "localhost")
            #expect(infos[1]?.version == "TLSv1.2")
            #expect(infos[1]?.alpnProtocol == nil)   // nothing in common: no ALPN
            #expect(canWriteEOF == [true, false, true])   // TLS 1.2 cannot half-close
            #expect(infos[2]?.peerCertificate?.subject == "CN=swift-asyncio test client,O=swift-asyncio tests")
            #expect(infos[2]?.serverName == "alt.test")
        }
    }

    // A client offering only TLS 1.0/1.1 is refused by the default minimum (TLS 1.2).
    @Test func oldVersionsRefused() throws {
        try withLoop { loop in
            let server = try TLSContext(serverConfiguration())
            var old = clientConfiguration()
            old.minimumVersion = .v1_0
            old.maximumVersion = .v1_1
            old.ciphers = nil   // OpenSSL's default has TLS 1.0 suites; ours are TLS 1.2 only
            let client = try TLSContext(old)
            let failure = try loop.runUntilComplete { () async throws -> (any Error)? in
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) { TLSEcho() }
                defer { listener.close() }
                do {
                    _ = try await loop.createConnection(
                        host: "127.0.0.1", port: listener.addresses[0].port ?? 0, tls: client) { TLSCollector(loop: loop) }
                    return nil
                } catch {
                    return error
                }
            }
            let error = failure as? TLSError
            #expect(error?.code == .handshakeFailed, "\(String(describing: failure))")
            #expect(error?.reason.contains("protocol version") == true, "\(String(describing: failure))")
        }
    }

    // A silent client is dropped at the handshake timeout; garbage and HTTP close only their
    // own connection; meanwhile a real client is served. (The real client's handshake has the
    // same timeout: 2 s, not less, so that a loaded machine does not drop it too.)
    @Test func silentGarbageAndHTTPClientsDoNotBlockOthers() throws {
        try withLoop { loop in
            var config = serverConfiguration()
            config.handshakeTimeout = .seconds(2)
            let server = try TLSContext(config)
            let client = try TLSContext(clientConfiguration())
            let (silentLost, garbageLost, httpLost, echoed, count) = try loop.runUntilComplete {
                () async throws -> (Bool, Bool, Bool, [UInt8], Int) in
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) { TLSEcho() }
                defer { listener.close() }
                let port = listener.addresses[0].port ?? 0
                let (_, silent) = try await loop.createConnection(host: "127.0.0.1", port: port) { TLSCollector(loop: loop) }
                let (garbageTransport, garbage) = try await loop.createConnection(host: "127.0.0.1", port: port) {
                    TLSCollector(loop: loop)
                }
                garbageTransport.write(payload(300, seed: 7))
                let (httpTransport, http) = try await loop.createConnection(host: "127.0.0.1", port: port) {
                    TLSCollector(loop: loop)
                }
                httpTransport.write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                let (transport, collector) = try await loop.createConnection(host: "127.0.0.1", port: port, tls: client) {
                    TLSCollector(loop: loop)
                }
                transport.write("still served")
                try await waitUntil("collector.received.count >= 12", timeout: .seconds(20)) { collector.received.count >= 12 }
                try await waitFor(timeout: .seconds(20)) {
                    try await garbage.done.value
                    try await http.done.value
                    try await silent.done.value
                }
                transport.close()
                try await collector.done.value
                try await waitUntil("listener.connectionCount == 0", timeout: .seconds(20)) { listener.connectionCount == 0 }
                return (silent.lost == 1, garbage.lost == 1, http.lost == 1, collector.received, listener.connectionCount)
            }
            #expect(silentLost && garbageLost && httpLost)
            #expect(echoed == Array("still served".utf8))
            #expect(count == 0)
        }
    }

    // TLS 1.3 half-close: the client's close_notify is an EOF; the echo still flows back.
    @Test func halfCloseUnderTLS13() throws {
        try withLoop { loop in
            let server = try TLSContext(serverConfiguration())
            let client = try TLSContext(clientConfiguration())
            let data = payload(300_000, seed: 3)
            let (received, eof, canWriteEOF) = try loop.runUntilComplete { () async throws -> ([UInt8], Bool, Bool) in
                let listener = try await loop.startServer(host: "127.0.0.1", port: 0, tls: server) { reader, writer in
                    // Reads everything up to the EOF first, then answers.
                    let all = try await reader.read()
                    writer.write(all)
                    try await writer.drain()
                }
                defer { listener.close() }
                let (reader, writer) = try await loop.openConnection(
                    host: "127.0.0.1", port: listener.addresses[0].port ?? 0, tls: client)
                let canWriteEOF = writer.canWriteEOF
                writer.write(data)
                writer.writeEOF()
                let received = try await reader.read()
                return (received, reader.atEOF, canWriteEOF)
            }
            #expect(canWriteEOF)
            #expect(received.count == data.count)
            #expect(Bool(received == data))
            #expect(eof)
        }
    }

    // startTLS keeps the bytes that arrived with the plaintext preamble (PROXY header and
    // ClientHello in one segment, sent by Python's ssl with a memory BIO).
    @Test func startTLSKeepsBytesThatAlreadyArrived() throws {
        try withLoop { loop in
            let server = try TLSContext(serverConfiguration())
            let result = try loop.runUntilComplete { () async throws -> ProcessResult in
                let listener = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                    let preamble = try await reader.readLine()
                    try await writer.startTLS(server)
                    writer.write(preamble)
                    let line = try await reader.readLine()
                    writer.write(line)
                    try await writer.drain()
                }
                defer { listener.close() }
                return try await loop.runProcess(
                    "python3", ["-c", pythonProxyThenTLS, "\(listener.addresses[0].port ?? 0)", "\(certificates)/ca.crt"])
            }
            let output = String(decoding: result.stdout, as: UTF8.self)
            #expect(result.returnCode == 0, "\(output) \(String(decoding: result.stderr, as: UTF8.self))")
            #expect(output == "one-segment True\nPROXY TCP4 10.0.0.1 10.0.0.2 1234 443\r\nhello over tls\n")
        }
    }

    // A client offers the session of a finished connection and the next handshake resumes it.
    @Test func clientSessionResumption() throws {
        try withLoop { loop in
            let server = try TLSContext(serverConfiguration())
            let client = try TLSContext(clientConfiguration())
            typealias Result = (TLSConnectionInfo?, Bool)
            let (first, second, third) = try loop.runUntilComplete {
                () async throws -> (Result, Result, Result) in
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) { TLSEcho() }
                defer { listener.close() }
                let port = listener.addresses[0].port ?? 0
                func connect(_ session: TLSSession?) async throws -> (TLSConnectionInfo?, Bool) {
                    let (transport, collector) = try await loop.createConnection(
                        host: "127.0.0.1", port: port, tls: client, session: session) { TLSCollector(loop: loop) }
                    transport.write("x")   // the TLS 1.3 ticket comes with the first response
                    try await waitUntil("collector.received.count == 1", timeout: .seconds(20)) { collector.received.count == 1 }
                    let info = transport.tlsInfo
                    transport.close()
                    try await collector.done.value
                    return (info, info?.session?.isResumable == true)
                }
                let first = try await connect(nil)
                let second = try await connect(first.0?.session)
                let third = try await connect(second.0?.session)
                return (first, second, third)
            }
            #expect(first.0?.sessionReused == false)
            #expect(first.1)
            #expect(second.0?.sessionReused == true)
            #expect(second.1)
            #expect(third.0?.sessionReused == true)
            // TLS 1.3 tickets are single-use: an offered session is spent.
            #expect(first.0?.session?.isResumable == false)
        }
    }

    // Bad configuration names the file and OpenSSL's reason.
    @Test func configurationErrorsNameTheFile() throws {
        let directory = "/tmp/asyncio-tls-\(getpid())"
        mkdir(directory, 0o700)
        defer {
            unlink("\(directory)/bad.pem")
            rmdir(directory)
        }
        let bad = "\(directory)/bad.pem"
        let fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = "not a certificate\n".withCString { write(fd, $0, strlen($0)) }
        close(fd)

        func failure(_ configuration: TLSConfiguration) -> TLSError? {
            do {
                _ = try TLSContext(configuration)
                return nil
            } catch {
                return error
            }
        }
        let missing = failure(.server(certificateChain: "\(directory)/missing.crt", privateKey: "\(certificates)/server.key"))
        #expect(missing?.code == .configuration)
        #expect(missing?.path == "\(directory)/missing.crt")
        #expect(missing?.description == "cannot read certificate file \(directory)/missing.crt: No such file or directory")
        let invalid = failure(.server(certificateChain: bad, privateKey: "\(certificates)/server.key"))
        #expect(invalid?.path == bad)
        #expect(invalid?.description.hasPrefix("cannot load certificate file \(bad): no start line") == true,
                "\(String(describing: invalid))")
        let mismatch = failure(.server(
            certificateChain: "\(certificates)/server.crt", privateKey: "\(certificates)/client.key"))
        #expect(mismatch?.reason.contains("key values mismatch") == true, "\(String(describing: mismatch))")
        var badALPN = clientConfiguration()
        badALPN.alpnProtocols = [""]
        #expect(failure(badALPN)?.code == .configuration)
        var badCiphers = clientConfiguration()
        badCiphers.cipherSuites = "TLS_NOT_A_SUITE"
        #expect(failure(badCiphers)?.code == .configuration)
    }

    // The key log file gets the TLS 1.3 secrets in the SSLKEYLOGFILE format.
    @Test func keyLogFileIsWritten() throws {
        let path = "/tmp/asyncio-keylog-\(getpid()).txt"
        unlink(path)
        defer { unlink(path) }
        try withLoop { loop in
            let server = try TLSContext(serverConfiguration())
            var config = clientConfiguration()
            config.keyLogFile = path
            let client = try TLSContext(config)
            try loop.runUntilComplete {
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) { TLSEcho() }
                defer { listener.close() }
                let (transport, collector) = try await loop.createConnection(
                    host: "127.0.0.1", port: listener.addresses[0].port ?? 0, tls: client) { TLSCollector(loop: loop) }
                transport.close()
                try await collector.done.value
            }
        }
        let fd = open(path, O_RDONLY)
        #expect(fd >= 0)
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = read(fd, &buffer, buffer.count)
        close(fd)
        let lines = String(decoding: buffer[0..<max(0, n)], as: UTF8.self).split(separator: "\n")
        let labels = Set(lines.compactMap { $0.split(separator: " ").first.map(String.init) })
        #expect(labels == [
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET",
        ])
        #expect(lines.allSatisfy { $0.split(separator: " ").count == 3 })
    }

    // Write flow control goes through the layer: a peer that does not read makes the sender
    // pause, with the buffer bounded; when it reads, writing resumes and every byte arrives.
    @Test func writeFlowControlThroughTLS() throws {
        try withLoop { loop in
            let server = try TLSContext(serverConfiguration())
            let client = try TLSContext(clientConfiguration())
            let (paused, maxBuffered, received, total) = try loop.runUntilComplete {
                () async throws -> (Int, Int, Int, Int) in
                let sink = Box<TLSCollector?>(nil)
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) {
                    let collector = TLSCollector(loop: loop)
                    sink.value = collector
                    return collector
                }
                defer { listener.close() }
                let (transport, writer) = try await loop.createConnection(
                    host: "127.0.0.1", port: listener.addresses[0].port ?? 0, tls: client) { TLSCollector(loop: loop) }
                try await waitUntil("sink.value?.transport != nil", timeout: .seconds(20)) { sink.value?.transport != nil }
                sink.value?.transport?.pauseReading()
                let chunk = payload(64 * 1024, seed: 9)
                var total = 0
                var maxBuffered = 0
                while writer.pauses == 0 && total < 64 << 20 {
                    transport.write(chunk)
                    total += chunk.count
                    maxBuffered = max(maxBuffered, transport.writeBufferSize)
                    try await sleep(for: .milliseconds(1))
                }
                sink.value?.transport?.resumeReading()
                try await waitUntil("(sink.value?.received.count ?? 0) >= total", timeout: .seconds(60)) { (sink.value?.received.count ?? 0) >= total }
                return (writer.pauses, maxBuffered, sink.value?.received.count ?? 0, total)
            }
            #expect(paused == 1)
            #expect(maxBuffered < 64 * 1024 + 128 * 1024)
            #expect(received == total)
        }
    }

    // startTLS that fails (the peer is not TLS): the call throws and the protocol, which saw
    // connectionMade on the plain transport, gets connectionLost exactly once with the error.
    @Test func failedStartTLSReportsConnectionLostOnce() throws {
        try withLoop { loop in
            // Short layer timers, so the wait below outlasts any the failed layer could have
            // left running (a timer that fired later could report a second connectionLost).
            var configuration = clientConfiguration()
            configuration.handshakeTimeout = .seconds(1)
            configuration.shutdownTimeout = .seconds(1)
            let client = try TLSContext(configuration)
            let (thrown, lost, lostError) = try loop.runUntilComplete {
                () async throws -> ((any Error)?, Int, (any Error)?) in
                // A plain server that answers anything with a line of text, then reads until
                // the client's side is gone (EOF or reset).
                let peerSawClose = Future<Void>(loop: loop)
                let listener = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                    _ = try await reader.read(max: 1)
                    writer.write("HTTP/1.0 400 Bad Request\r\n\r\n")
                    do {
                        while try await !reader.read(max: 4096).isEmpty {}
                    } catch {}   // a reset says the same
                    peerSawClose.complete(.success(()))
                }
                defer { listener.close() }
                let (plain, collector) = try await loop.createConnection(
                    host: "127.0.0.1", port: listener.addresses[0].port ?? 0) { TLSCollector(loop: loop) }
                let started = loop.time()
                var thrown: (any Error)?
                do {
                    _ = try await loop.startTLS(plain, context: client, serverHostname: "localhost")
                } catch {
                    thrown = error
                }
                try await waitFor(collector.done, timeout: .seconds(10))
                // Nothing more may arrive: wait until the socket is really closed (the peer
                // read its end), then past the layer's handshake and shutdown deadlines.
                try await waitFor(peerSawClose, timeout: .seconds(10))
                let quiet = started + 1.25 - loop.time()
                if quiet > 0 { try await sleep(for: .nanoseconds(Int(quiet * 1e9))) }
                return (thrown, collector.lost, collector.lostError)
            }
            let error = thrown as? TLSError
            #expect(error?.code == .handshakeFailed, "\(String(describing: thrown))")
            #expect(error?.reason == "wrong version number", "\(String(describing: thrown))")
            #expect(lost == 1)
            #expect((lostError as? TLSError) == error)
        }
    }

    // StreamWriter.startTLS refused before TLS starts (a verifying client without a server
    // name): the connection stays plain, keeps the bytes the reader held and reads on.
    @Test func refusedStreamStartTLSLeavesTheConnectionPlain() throws {
        try withLoop { loop in
            let client = try TLSContext(clientConfiguration())
            let (thrown, lines) = try loop.runUntilComplete { () async throws -> ((any Error)?, [String]) in
                let listener = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                    writer.write("a\nb\n")   // one segment: "b" waits in the client's reader
                    let line = try await reader.readLine()
                    writer.write("got ")
                    writer.write(line)
                    try await writer.drain()
                }
                defer { listener.close() }
                let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: listener.addresses[0].port ?? 0)
                let first = String(decoding: try await reader.readLine(), as: UTF8.self)
                var thrown: (any Error)?
                do {
                    try await writer.startTLS(client)   // no serverHostname: refused at once
                } catch {
                    thrown = error
                }
                let rest = try await waitFor(timeout: .seconds(10)) { () async throws -> [String] in
                    let second = String(decoding: try await reader.readLine(), as: UTF8.self)
                    writer.write("c\n")
                    let third = String(decoding: try await reader.readLine(), as: UTF8.self)
                    writer.close()
                    return [second, third]
                }
                return (thrown, [first] + rest)
            }
            #expect((thrown as? TLSError)?.code == .configuration, "\(String(describing: thrown))")
            #expect(lines == ["a\n", "b\n", "got c\n"])
        }
    }

    // Pausing reading in the middle of a received chunk keeps the rest (no loss, no
    // reordering) and delivers it on resume; over a Unix socket this time.
    @Test func pauseReadingMidChunkOverUnixSocket() throws {
        try withLoop { loop in
            let server = try TLSContext(serverConfiguration())
            let client = try TLSContext(clientConfiguration())
            let path = "/tmp/asyncio-tls-\(getpid()).sock"
            let messages = (0..<200).map { i in Array("message \(i);".utf8) }
            let (received, pauses) = try loop.runUntilComplete { () async throws -> ([UInt8], Int) in
                let sink = Box<TLSCollector?>(nil)
                let pauses = Box(0)
                let listener = try await loop.createUnixServer(path: path, tls: server) {
                    let collector = TLSCollector(loop: loop)
                    // Pause after every record; resume a little later.
                    collector.onData = { collector in
                        guard let transport = collector.transport else { return }
                        transport.pauseReading()
                        pauses.value += 1
                        loop.callLater(after: .milliseconds(1)) { transport.resumeReading() }
                    }
                    sink.value = collector
                    return collector
                }
                defer { listener.close() }
                let (transport, _) = try await loop.createUnixConnection(
                    path: path, tls: client, serverHostname: "localhost") { TLSCollector(loop: loop) }
                for message in messages { transport.write(message) }   // one record each, sent back to back
                let total = messages.reduce(0) { $0 + $1.count }
                try await waitUntil("(sink.value?.received.count ?? 0) >= total", timeout: .seconds(30)) { (sink.value?.received.count ?? 0) >= total }
                transport.close()
                return (sink.value?.received ?? [], pauses.value)
            }
            #expect(received == messages.flatMap { $0 })
            #expect(pauses == 200)
        }
    }

    // TLS inside TLS (a tunnel through a TLS proxy): startTLS over a TLS transport, both
    // sides; 200 KB echoed through both layers.
    @Test func tlsInsideTLS() throws {
        try withLoop { loop in
            let server = try TLSContext(serverConfiguration())
            let client = try TLSContext(clientConfiguration())
            let data = payload(200_000, seed: 11)
            let (echo, outer, inner) = try loop.runUntilComplete { () async throws -> ([UInt8], String?, String?) in
                let listener = try await loop.startServer(host: "127.0.0.1", port: 0, tls: server) { reader, writer in
                    _ = try await reader.readLine()   // "STARTTLS\n"
                    try await writer.startTLS(server)
                    while case let chunk = try await reader.read(max: 65536), !chunk.isEmpty {
                        writer.write(chunk)
                        try await writer.drain()
                    }
                }
                defer { listener.close() }
                let (reader, writer) = try await loop.openConnection(
                    host: "127.0.0.1", port: listener.addresses[0].port ?? 0, tls: client)
                let outer = writer.tlsInfo?.version
                writer.write("STARTTLS\n")
                try await writer.startTLS(client, serverHostname: "localhost")
                let inner = writer.tlsInfo?.version
                writer.write(data)
                try await writer.drain()
                let echo = try await reader.readExactly(data.count)
                writer.close()
                return (echo, outer, inner)
            }
            #expect(echo == data)
            #expect(outer == "TLSv1.3")
            #expect(inner == "TLSv1.3")
        }
    }

    // An SNI switch takes the chosen context's client-certificate policy with it: a host that
    // requires client certificates refuses a client without one even if the default does not.
    @Test func serverNameSwitchKeepsTheChosenClientPolicy() throws {
        try withLoop { loop in
            var strict = serverConfiguration()
            strict.caFile = "\(certificates)/ca.crt"
            strict.clientVerification = .required
            let strictContext = try TLSContext(strict)
            var lenient = serverConfiguration()
            lenient.serverNameCallback = { name in name == "strict.localhost" ? strictContext : nil }
            let server = try TLSContext(lenient)
            var clientConfig = clientConfiguration()
            clientConfig.verifyHostname = false
            let client = try TLSContext(clientConfig)
            let (lenientEcho, strictError) = try loop.runUntilComplete { () async throws -> ([UInt8], (any Error)?) in
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) { TLSEcho() }
                defer { listener.close() }
                let port = listener.addresses[0].port ?? 0
                var results: [([UInt8], (any Error)?)] = []
                for name in ["localhost", "strict.localhost"] {
                    do {
                        let (transport, collector) = try await loop.createConnection(
                            host: "127.0.0.1", port: port, tls: client, serverHostname: name) { TLSCollector(loop: loop) }
                        transport.write("ping")
                        try await waitFor(timeout: .seconds(20)) {
                            try await waitUntil("collector.received.count >= 4 || collector.lost > 0", timeout: .seconds(20)) { collector.received.count >= 4 || collector.lost > 0 }
                        }
                        transport.close()
                        try await collector.done.value
                        results.append((collector.received, collector.lostError))
                    } catch {
                        results.append(([], error))
                    }
                }
                return (results[0].0, results[1].1)
            }
            #expect(lenientEcho == Array("ping".utf8))
            #expect((strictError as? TLSError)?.reason.contains("certificate required") == true,
                    "\(String(describing: strictError))")
        }
    }

    // A client that would check the server's name but has none is refused up front.
    @Test func clientWithoutServerHostnameIsRefused() throws {
        try withLoop { loop in
            let client = try TLSContext(clientConfiguration())
            let server = try TLSContext(serverConfiguration())
            let path = "/tmp/asyncio-tls-noname-\(getpid()).sock"
            let error = try loop.runUntilComplete { () async throws -> (any Error)? in
                let listener = try await loop.createUnixServer(path: path, tls: server) { TLSEcho() }
                defer { listener.close() }
                do {
                    _ = try await loop.createUnixConnection(path: path, tls: client) { TLSCollector(loop: loop) }
                    return nil
                } catch {
                    return error
                }
            }
            #expect((error as? TLSError)?.code == .configuration, "\(String(describing: error))")
        }
    }

    // The application closes in dataReceived while more records and the peer's close_notify
    // sit in the same chunk: they are drained at once and the close completes cleanly (not
    // at the shutdown timeout).
    @Test func closeInsideDataReceivedDrainsTheRest() throws {
        try withLoop { loop in
            var config = serverConfiguration()
            config.shutdownTimeout = .seconds(50)
            let server = try TLSContext(config)
            let client = try TLSContext(clientConfiguration())
            let (serverError, serverGot, clientLost) = try loop.runUntilComplete {
                () async throws -> ((any Error)?, [UInt8], Int) in
                let sink = Box<TLSCollector?>(nil)
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) {
                    let collector = TLSCollector(loop: loop)
                    collector.onData = { $0.transport?.close() }   // close on the first record
                    sink.value = collector
                    return collector
                }
                defer { listener.close() }
                let (transport, collector) = try await loop.createConnection(
                    host: "127.0.0.1", port: listener.addresses[0].port ?? 0, tls: client) { TLSCollector(loop: loop) }
                for word in ["one", "two", "three"] { transport.write(word) }
                transport.close()   // close_notify right behind, in the same segment
                try await waitFor(timeout: .seconds(20)) {
                    try await collector.done.value
                    try await waitUntil("sink.value?.lost == 1", timeout: .seconds(20)) { sink.value?.lost == 1 }
                }
                return (sink.value?.lostError, sink.value?.received ?? [], collector.lost)
            }
            #expect(serverError == nil, "\(String(describing: serverError))")
            #expect(serverGot == Array("one".utf8))
            #expect(clientLost == 1)
        }
    }

    // A peer that never answers close_notify: the connection is aborted at the shutdown
    // timeout and connectionLost says so.
    @Test func shutdownTimeoutIsReported() throws {
        try withLoop { loop in
            var config = serverConfiguration()
            config.shutdownTimeout = .milliseconds(300)
            let server = try TLSContext(config)
            let (error, python) = try loop.runUntilComplete { () async throws -> ((any Error)?, ProcessResult) in
                let sink = Box<TLSCollector?>(nil)
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) {
                    let collector = TLSCollector(loop: loop)
                    collector.onData = { $0.transport?.close() }
                    sink.value = collector
                    return collector
                }
                defer { listener.close() }
                // Handshake, one write, then silence (never reads, never closes) for 5 s.
                let python = try await loop.runProcess("python3", ["-c", """
                import socket, ssl, sys, time
                context = ssl.create_default_context(cafile=sys.argv[2])
                s = context.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
                s.sendall(b"x")
                time.sleep(5)
                """, "\(listener.addresses[0].port ?? 0)", "\(certificates)/ca.crt"])
                try await waitUntil("sink.value?.lost == 1", timeout: .seconds(20)) { sink.value?.lost == 1 }
                return (sink.value?.lostError, python)
            }
            #expect(python.returnCode == 0, "\(String(decoding: python.stderr, as: UTF8.self))")
            #expect((error as? TLSError)?.code == .shutdownTimeout, "\(String(describing: error))")
        }
    }

    // write(big); close() to a slow reader: the shutdown timeout (shorter than the reader
    // needs: at least 2.56 s) waits while the response is still being sent, so all of it and
    // the close_notify arrive and the server sees a clean close. (2 s, not less: what the
    // reader still has to take once our queue is empty must fit in it on a loaded machine.)
    @Test func slowReaderGetsAllWrittenBeforeClose() throws {
        try withLoop { loop in
            var config = serverConfiguration()
            config.shutdownTimeout = .seconds(2)
            let server = try TLSContext(config)
            let response = payload(2 << 20)
            let (error, python) = try loop.runUntilComplete { () async throws -> ((any Error)?, ProcessResult) in
                let sink = Box<TLSCollector?>(nil)
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) {
                    let collector = TLSCollector(loop: loop)
                    collector.onData = { collector in
                        guard let transport = collector.transport else { return }
                        // Keep the kernel's share small: the rest waits in our write queue.
                        Socket.setOption(transport.fileDescriptor, SOL_SOCKET, SO_SNDBUF, 16 * 1024)
                        response.withUnsafeBytes { transport.write($0) }
                        transport.close()
                    }
                    sink.value = collector
                    return collector
                }
                defer { listener.close() }
                // 16 KiB (one record) every 20 ms: 2 MiB take at least 2.56 s.
                let python = try await loop.runProcess("python3", ["-c", """
                import socket, ssl, sys, time
                context = ssl.create_default_context(cafile=sys.argv[2])
                raw = socket.socket()
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                raw.settimeout(60)
                raw.connect(("127.0.0.1", int(sys.argv[1])))
                s = context.wrap_socket(raw, server_hostname="localhost")
                s.sendall(b"x")
                got = bytearray()
                while True:
                    chunk = s.recv(16384)
                    if not chunk:
                        break
                    got += chunk
                    time.sleep(0.02)
                sys.stdout.buffer.write(got)
                """, "\(listener.addresses[0].port ?? 0)", "\(certificates)/ca.crt"])
                try await waitUntil("sink.value?.lost == 1", timeout: .seconds(20)) { sink.value?.lost == 1 }
                return (sink.value?.lostError, python)
            }
            #expect(python.stdout.count == response.count, "\(String(decoding: python.stderr, as: UTF8.self))")
            #expect(Bool(python.stdout == response))   // a Bool: no element-wise diff of 2 MiB on failure
            #expect(error == nil, "\(String(describing: error))")
        }
    }

    // The server's session ticket comes split over records (512-byte fragments, a client
    // certificate inside) and its last part only once the test saw the writes held (and
    // closed or half-closed): meanwhile OpenSSL cannot encrypt,
    // so the client's writes are held. They count for flow control (pauseWriting, then
    // resumeWriting), also for an application that stops reading while it cannot write, and
    // a close() or writeEOF() while they are held sends them first, then close_notify.
    // The peer is Python's ssl over memory BIOs, the TLS server on a TCP connection it opens
    // to us (we startTLS as the client on the accepted socket).
    @Test(arguments: [false, true], [false, true])
    func writesHeldBehindASplitTicketAreFlowControlledAndFlushedOnClose(halfClose: Bool, pauseReading: Bool) throws {
        try withLoop { loop in
            let client = try splitTicketClientContext()
            // Chunk i is 1 KiB of the byte i % 251 (the peer checks order and completeness).
            func chunk(_ i: Int) -> [UInt8] { [UInt8](repeating: UInt8(i % 251), count: 1024) }
            let extra = 200   // written while held: 200 KiB, over the 64 KiB high-water mark
            typealias Outcome = (ProcessResult, Int, Int, Int, Int, (any Error)?)
            let (python, sent, held, pauses, resumes, lostError) = try loop.runUntilComplete {
                () async throws -> Outcome in
                let (listener, peer, collector, secure) = try await connectToSplitTicketServer(
                    loop, client, mode: "rest", pauseReading: pauseReading)
                defer { listener.close() }
                let layer = secure as? TLSTransport
                // Write until the ticket's first fragment has left OpenSSL inside a message.
                var sent = 0
                try await waitUntil("the TLS test's condition", timeout: .seconds(20)) {
                    chunk(sent).withUnsafeBytes { secure.write($0) }
                    sent += 1
                    return (layer?.heldWriteCount ?? 0) > 0
                }
                for _ in 0..<extra {
                    chunk(sent).withUnsafeBytes { secure.write($0) }
                    sent += 1
                }
                let held = layer?.heldWriteCount ?? 0
                let pauses = collector.pauses
                if halfClose { secure.writeEOF() } else { secure.close() }
                peer.sendTheRest()
                let python = try await peer.result.value
                try await collector.done.value
                return (python, sent, held, pauses, collector.resumes, collector.lostError)
            }
            let stderr = String(decoding: python.stderr, as: UTF8.self)
            #expect(python.returnCode == 0, "\(stderr)")
            #expect(held > extra * 1024, "\(stderr)")
            #expect(pauses == 1)
            #expect(resumes == 1)
            #expect(String(decoding: python.stdout, as: UTF8.self) == "\(sent * 1024) bytes intact close_notify\n", "\(stderr)")
            #expect(lostError == nil, "\(String(describing: lostError))")
        }
    }

    // The peer closes inside its split ticket while our writes are held and we have closed:
    // they can never be sent, and connectionLost says so at once (not at the 30 s shutdown
    // timeout).
    @Test func peerClosingInsideASplitTicketFailsHeldWrites() throws {
        try withLoop { loop in
            let client = try splitTicketClientContext()
            let (python, lostError) = try loop.runUntilComplete { () async throws -> (ProcessResult, (any Error)?) in
                let (listener, peer, collector, secure) = try await connectToSplitTicketServer(loop, client, mode: "eof")
                defer { listener.close() }
                let layer = secure as? TLSTransport
                try await waitUntil("the TLS test's condition", timeout: .seconds(20)) {
                    secure.write("held?")
                    return (layer?.heldWriteCount ?? 0) > 0
                }
                secure.close()
                peer.sendTheRest()
                let python = try await peer.result.value
                try await waitFor(collector.done, timeout: .seconds(15))
                return (python, collector.lostError)
            }
            #expect(python.returnCode == 0, "\(String(decoding: python.stderr, as: UTF8.self))")
            let error = lostError as? TLSError
            #expect(error?.code == .protocolError, "\(String(describing: lostError))")
            #expect(error?.message.contains("inside a TLS post-handshake message") == true, "\(String(describing: lostError))")
        }
    }

    // An application that closes as soon as it is asked to pause writing, in the middle of
    // one big write: the whole write still goes out, then close_notify. The client reads
    // nothing until the server has paused (a byte on a second, plain connection says so), so
    // the pause is certain: a client reading as fast as the server writes (under TSan, say)
    // could otherwise keep the socket from ever filling, and the write would never pause.
    @Test func closeInPauseWritingKeepsTheWholeWrite() throws {
        try withLoop { loop in
            let server = try TLSContext(serverConfiguration())
            let response = payload(1 << 20)
            let (python, pauses, error) = try loop.runUntilComplete { () async throws -> (ProcessResult, Int, (any Error)?) in
                let signal = Box<TLSCollector?>(nil)
                let signals = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let collector = TLSCollector(loop: loop)
                    signal.value = collector
                    return collector
                }
                defer { signals.close() }
                let sink = Box<TLSCollector?>(nil)
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) {
                    let collector = TLSCollector(loop: loop)
                    collector.onData = { collector in
                        guard let transport = collector.transport else { return }
                        Socket.setOption(transport.fileDescriptor, SOL_SOCKET, SO_SNDBUF, 16 * 1024)
                        collector.onPauseWriting = { paused in
                            paused.transport?.close()
                            signal.value?.transport?.write([1])   // the client may read now
                        }
                        response.withUnsafeBytes { transport.write($0) }   // 64 records
                    }
                    sink.value = collector
                    return collector
                }
                defer { listener.close() }
                let python = try await loop.runProcess("python3", ["-c", """
                import socket, ssl, sys
                signal = socket.create_connection(("127.0.0.1", int(sys.argv[3])), timeout=30)
                context = ssl.create_default_context(cafile=sys.argv[2])
                raw = socket.socket()
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                raw.settimeout(30)
                raw.connect(("127.0.0.1", int(sys.argv[1])))
                s = context.wrap_socket(raw, server_hostname="localhost")
                s.sendall(b"go")
                if signal.recv(1) != b"\\x01":
                    sys.exit("no pause signal")
                got = bytearray()
                while chunk := s.recv(65536):
                    got += chunk
                sys.stdout.buffer.write(got)
                """, "\(listener.addresses[0].port ?? 0)", "\(certificates)/ca.crt", "\(signals.addresses[0].port ?? 0)"])
                try await waitUntil("sink.value?.lost == 1", timeout: .seconds(20)) { sink.value?.lost == 1 }
                return (python, sink.value?.pauses ?? 0, sink.value?.lostError)
            }
            #expect(pauses == 1)
            #expect(python.stdout.count == response.count, "\(String(decoding: python.stderr, as: UTF8.self))")
            #expect(Bool(python.stdout == response))
            #expect(error == nil, "\(String(describing: error))")
        }
    }

    // Record buffers: a connection busy for more than a second keeps them (no malloc/free per
    // record); one idle for a second gives them back; with releaseIdleBuffers off, always kept.
    @Test(arguments: [true, false])
    func busyConnectionsKeepRecordBuffersIdleOnesFreeThem(releaseIdleBuffers: Bool) throws {
        try withLoop { loop in
            var config = serverConfiguration()
            config.releaseIdleBuffers = releaseIdleBuffers
            let server = try TLSContext(config)
            let client = try TLSContext(clientConfiguration())
            let states = try loop.runUntilComplete { () async throws -> [Bool] in
                let sink = Box<TLSEcho?>(nil)
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) {
                    let echo = TLSEcho()
                    sink.value = echo
                    return echo
                }
                defer { listener.close() }
                let (transport, collector) = try await loop.createConnection(
                    host: "127.0.0.1", port: listener.addresses[0].port ?? 0, tls: client) { TLSCollector(loop: loop) }
                try await waitUntil("sink.value?.transport != nil", timeout: .seconds(20)) { sink.value?.transport != nil }
                guard let layer = sink.value?.transport as? TLSTransport else { throw TimeoutError() }
                var states = [layer.keepsBuffers]
                // Busy: a message every 20 ms for 2.5 s (active in two sweep intervals and more).
                for i in 0..<125 {
                    transport.write("ping")
                    try await waitUntil("collector.received.count == 4 * (i + 1)", timeout: .seconds(20)) { collector.received.count == 4 * (i + 1) }
                    try await sleep(for: .milliseconds(20))
                }
                states.append(layer.keepsBuffers)
                if releaseIdleBuffers {
                    // Idle: the sweep after next frees them. Polled, not a fixed 2.5 s: each
                    // sweep is armed when the last one ran, so a stalled loop pushes the sweeps
                    // past any fixed sleep.
                    try await waitUntil("the idle connection's buffers freed", timeout: .seconds(30)) {
                        !layer.keepsBuffers
                    }
                } else {
                    try await sleep(for: .milliseconds(2500))   // idle for two intervals
                }
                states.append(layer.keepsBuffers)
                transport.close()
                try await collector.done.value
                return states
            }
            #expect(states == (releaseIdleBuffers ? [false, true, false] : [false, false, false]))
        }
    }

    // Another OpenSSL user on the loop thread leaves an error in the thread's queue (here the
    // server's own dataReceived): the close_notify right behind in the same chunk is still a
    // TLS 1.3 half-close, not mistaken for a protocol error, and the echo flows back.
    @Test func staleOpenSSLErrorsDoNotBreakHalfClose() throws {
        try withLoop { loop in
            let server = try TLSContext(serverConfiguration())
            let client = try TLSContext(clientConfiguration())
            let (received, eof, serverError) = try loop.runUntilComplete {
                () async throws -> ([UInt8], Bool, (any Error)?) in
                let sink = Box<TLSCollector?>(nil)
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) {
                    let collector = TLSCollector(loop: loop)
                    collector.onData = { collector in
                        collector.transport?.write(collector.received)
                        collector.received = []
                        // A failing OpenSSL call whose error nobody takes.
                        _ = BIO_new_file("/nonexistent/asyncio-test", "r")
                    }
                    sink.value = collector
                    return collector
                }
                defer { listener.close() }
                let (transport, collector) = try await loop.createConnection(
                    host: "127.0.0.1", port: listener.addresses[0].port ?? 0, tls: client) { TLSCollector(loop: loop) }
                transport.write("echo me")
                transport.writeEOF()   // close_notify in the same segment
                try await collector.done.value
                ERR_clear_error()
                return (collector.received, collector.eof, sink.value?.lostError)
            }
            #expect(received == Array("echo me".utf8))
            #expect(eof)
            #expect(serverError == nil, "\(String(describing: serverError))")
        }
    }

    // A peer sends close_notify and then keeps streaming bytes (4 MiB): the application,
    // which keeps the connection half-open (streams do), holds nothing of them.
    @Test func bytesAfterCloseNotifyAreNotBuffered() throws {
        try withLoop { loop in
            let server = try TLSContext(serverConfiguration())
            let (result, received, held) = try loop.runUntilComplete {
                () async throws -> (ProcessResult, [UInt8], Int) in
                let layer = Box<TLSTransport?>(nil)
                let received = Box<[UInt8]>([])
                let release = Future<Void>(loop: loop)
                let listener = try await loop.startServer(host: "127.0.0.1", port: 0, tls: server) { reader, writer in
                    layer.value = writer.transport as? TLSTransport
                    received.value = try await reader.read()   // up to the close_notify
                    try await release.value
                }
                defer { listener.close() }
                let result = try await loop.runProcess("python3", ["-c", """
                import socket, ssl, sys
                context = ssl.create_default_context(cafile=sys.argv[2])
                incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
                s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
                while True:
                    try:
                        tls.do_handshake(); break
                    except ssl.SSLWantReadError:
                        s.sendall(outgoing.read()); incoming.write(s.recv(65536))
                s.sendall(outgoing.read())
                tls.write(b"last words"); s.sendall(outgoing.read())
                try:
                    tls.unwrap()
                except ssl.SSLWantReadError:
                    pass
                s.sendall(outgoing.read())                  # close_notify
                s.sendall(b"\\x17\\x03\\x03" + bytes(4 << 20))  # then 4 MiB more
                # Read what the server sent (its session ticket) so that closing sends a FIN,
                # not a reset that would discard the bytes before the server reads them.
                s.settimeout(1)
                try:
                    while s.recv(65536): pass
                except socket.timeout:
                    pass
                print("sent")
                """, "\(listener.addresses[0].port ?? 0)", "\(certificates)/ca.crt"])
                try await sleep(for: .milliseconds(200))   // whatever is in flight arrives
                let held = layer.value?.heldInputCount ?? -1
                release.complete(.success(()))
                return (result, received.value, held)
            }
            #expect(result.returnCode == 0, "\(String(decoding: result.stderr, as: UTF8.self))")
            #expect(received == Array("last words".utf8))
            #expect(held == 0)
        }
    }

    // A server that closes during the handshake (here: a plain TCP one that hangs up at once)
    // fails the connection attempt with closedDuringHandshake, not a hang.
    @Test func peerClosingDuringHandshakeFailsTheConnection() throws {
        try withLoop { loop in
            let client = try TLSContext(clientConfiguration())
            let error = try loop.runUntilComplete { () async throws -> (any Error)? in
                final class HangUp: StreamProtocol {
                    func connectionMade(_ transport: any StreamTransport) { transport.close() }
                    func dataReceived(_ bytes: UnsafeRawBufferPointer) {}
                }
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0) { HangUp() }
                defer { listener.close() }
                do {
                    _ = try await loop.createConnection(
                        host: "127.0.0.1", port: listener.addresses[0].port ?? 0, tls: client
                    ) { TLSCollector(loop: loop) }
                    return nil
                } catch {
                    return error
                }
            }
            #expect((error as? TLSError)?.code == .closedDuringHandshake, "\(String(describing: error))")
        }
    }

    // An encrypted private key: without its password it is a configuration error (OpenSSL
    // never prompts), with it the context loads and serves.
    @Test func encryptedPrivateKey() throws {
        try withLoop { loop in
            let path = "/tmp/asyncio-encrypted-\(getpid()).key"
            defer { unlink(path) }
            let made = try loop.runUntilComplete {
                try await loop.runProcess("openssl", [
                    "pkey", "-in", "\(certificates)/server.key", "-aes256", "-passout", "pass:s3cret", "-out", path,
                ])
            }
            try #require(made.returnCode == 0, "\(String(decoding: made.stderr, as: UTF8.self))")
            var withoutPassword = TLSConfiguration.server(certificateChain: "\(certificates)/server.crt", privateKey: path)
            var failure: TLSError?
            do { _ = try TLSContext(withoutPassword) } catch let error as TLSError { failure = error }
            #expect(failure?.code == .configuration)
            #expect(failure?.path == path, "\(String(describing: failure))")
            withoutPassword.privateKeyPassword = "s3cret"
            let server = try TLSContext(withoutPassword)
            let client = try TLSContext(clientConfiguration())
            let echoed = try loop.runUntilComplete { () async throws -> [UInt8] in
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) { TLSEcho() }
                defer { listener.close() }
                let (reader, writer) = try await loop.openConnection(
                    host: "127.0.0.1", port: listener.addresses[0].port ?? 0, tls: client, serverHostname: "localhost")
                writer.write("key ok\n")
                let line = try await reader.readLine()
                writer.close()
                return line
            }
            #expect(echoed == Array("key ok\n".utf8))
        }
    }

    // Our client against `openssl s_server`: its -rev mode sends each line back reversed.
    @Test func clientAgainstOpenSSLServer() throws {
        try withLoop { loop in
            let client = try TLSContext(clientConfiguration())
            let reply = try loop.runUntilComplete { () async throws -> [UInt8] in
                let port = try freePort()
                let (server, _) = try await loop.subprocessExec(
                    "openssl",
                    ["s_server", "-accept", "127.0.0.1:\(port)", "-cert", "\(certificates)/server.crt",
                     "-key", "\(certificates)/server.key", "-rev", "-quiet", "-naccept", "1"],
                    stdin: .devNull, stdout: .devNull, stderr: .devNull
                ) { NullSubprocessProtocol() }
                // Reap the child whatever happens: a zombie left behind makes Swift Testing's
                // exit-test monitor (waitid on any child) spin.
                func exchange() async throws -> [UInt8] {
                    var attempt = 0
                    while true {
                        do {
                            let (reader, writer) = try await loop.openConnection(
                                host: "127.0.0.1", port: port, tls: client, serverHostname: "localhost")
                            writer.write("hello openssl\n")
                            let line = try await reader.readLine()
                            writer.close()
                            return line
                        } catch let error as TransportError where error.code == .connectionRefused && attempt < 200 {
                            attempt += 1
                            try await sleep(for: .milliseconds(50))
                        }
                    }
                }
                let result: Result<[UInt8], any Error>
                do { result = .success(try await exchange()) } catch { result = .failure(error) }
                server.kill()
                _ = try await server.waitForExit()
                return try result.get()
            }
            #expect(reply == Array("lssnepo olleh\n".utf8))
        }
    }
}

/// Ignores a child's pipes.
final class NullSubprocessProtocol: SubprocessProtocol {}

/// A port nothing listens on right now.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A TLS 1.3 server over memory BIOs on a TCP connection it opens to argv[1]; requires a
/// client certificate (so the session tickets are long). After the handshake it sends the
/// first record of its tickets (fragments of at most 512 bytes, as the client asked), then
/// waits for SIGUSR1 (at most 60 s; the test sends it once it saw its writes held: a fixed delay let a
/// stalled loop read both parts at once and never see them held) and sends the rest (argv[3]
/// "rest") or never, closing the connection instead ("eof"); then reads application data
/// until close_notify and answers it. Prints "N bytes intact|damaged close_notify|EOF"; the
/// record count to stderr.
let pythonSplitTicketServer = #"""
import signal, socket, ssl, sys, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})   # taken by sigtimedwait below
port, certs, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.minimum_version = ssl.TLSVersion.TLSv1_3
context.load_cert_chain(f"{certs}/server.crt", f"{certs}/server.key")
context.load_verify_locations(f"{certs}/ca.crt")
context.verify_mode = ssl.CERT_REQUIRED
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = context.wrap_bio(incoming, outgoing, server_side=True)
s = socket.create_connection(("127.0.0.1", port), timeout=20)
def flush():
    data = outgoing.read()
    if data:
        s.sendall(data)
while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        flush()
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("closed during the handshake")
        incoming.write(chunk)
tickets, records = outgoing.read(), []
while tickets:
    n = 5 + int.from_bytes(tickets[3:5], "big")
    records.append(tickets[:n])
    tickets = tickets[n:]
print("ticket records", len(records), [len(r) for r in records], file=sys.stderr)
if len(records) < 2 or len(records[0]) > 512 + 5 + 256:
    sys.exit("the tickets did not come in fragments")
s.sendall(records[0])
if signal.sigtimedwait({signal.SIGUSR1}, 60) is None:
    sys.exit("no SIGUSR1 from the test within 60 s")
if mode == "eof":   # never the rest: a FIN inside the message (all received read first, no reset)
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
    s.close()
    sys.exit(0)
s.sendall(b"".join(records[1:]))
got, closed = bytearray(), False
while not closed:
    chunk = s.recv(65536)
    if not chunk:
        break
    incoming.write(chunk)
    while True:
        try:
            data = tls.read(65536)
        except ssl.SSLWantReadError:
            break
        except ssl.SSLZeroReturnError:
            data = b""
        if not data:   # close_notify (read gives b"" while ours is not sent yet)
            closed = True
            break
        got += data
    flush()
if closed:
    try:
        tls.unwrap()
    except ssl.SSLError:
        pass
    flush()
expected = b"".join(bytes([i % 251]) * 1024 for i in range(len(got) // 1024))
print(len(got), "bytes", "intact" if bytes(got) == expected else "damaged", "close_notify" if closed else "EOF")
"""#

/// Sends a PROXY line and the ClientHello in one segment, finishes the handshake through a
/// memory BIO, then talks TLS; prints what it got back.
let pythonProxyThenTLS = #"""
import socket, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
context = ssl.create_default_context(cafile=cafile)
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
sock = socket.create_connection(("127.0.0.1", port), timeout=20)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = outgoing.read()
preamble = b"PROXY TCP4 10.0.0.1 10.0.0.2 1234 443\r\n"
sent = sock.send(preamble + hello)
print("one-segment", sent == len(preamble) + len(hello))
while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        data = outgoing.read()
        if data:
            sock.sendall(data)
        chunk = sock.recv(65536)
        if not chunk:
            sys.exit("EOF during handshake")
        incoming.write(chunk)
sock.sendall(outgoing.read())
tls.write(b"hello over tls\n")
sock.sendall(outgoing.read())
got = b""
while got.count(b"\n") < 2:
    try:
        got += tls.read(65536)
    except ssl.SSLWantReadError:
        chunk = sock.recv(65536)
        if not chunk:
            break
        incoming.write(chunk)
sys.stdout.write(got.decode())
"""#
