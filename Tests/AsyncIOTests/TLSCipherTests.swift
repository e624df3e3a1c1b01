//===----------------------------------------------------------------------===//
// swift-asyncio — The cipher suites a TLSContext offers: AEAD with forward secrecy only by
// default (Mozilla's "intermediate" TLS 1.2 list without DHE), configurable.
//===----------------------------------------------------------------------===//

import CAsyncIOOpenSSL
import Testing

@testable import AsyncIO

/// The suites an `SSL` made from `context` offers, in order of preference (TLS 1.3 first).
private func offeredSuites(_ context: TLSContext) throws -> [String] {
    let ssl = try #require(SSL_new(context.context))
    defer { SSL_free(ssl) }
    var names: [String] = []
    var index: Int32 = 0
    while let name = SSL_get_cipher_list(ssl, index) {
        names.append(String(cString: name))
        index += 1
    }
    return names
}

/// OpenSSL's default TLS 1.3 suites (every TLS 1.3 suite is AEAD with forward secrecy).
private let tls13Suites = ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"]

@Suite(.timeLimit(.minutes(10)))
struct TLSCipherTests {
    // The default list, exactly: OpenSSL's TLS 1.3 suites, then ECDHE with AES-GCM or
    // ChaCha20-Poly1305 — no CBC, no static RSA, no DHE — for servers and clients alike.
    @Test func defaultSuitesAreAEADWithForwardSecrecyOnly() throws {
        let tls12 = [
            "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
        ]
        #expect(TLSConfiguration.defaultCiphers == tls12.joined(separator: ":"))
        #expect(serverConfiguration().ciphers == TLSConfiguration.defaultCiphers)
        #expect(clientConfiguration().ciphers == TLSConfiguration.defaultCiphers)
        #expect(try offeredSuites(TLSContext(serverConfiguration())) == tls13Suites + tls12)
        #expect(try offeredSuites(TLSContext(clientConfiguration())) == tls13Suites + tls12)
    }

    // The lists stay configurable: `ciphers` and `cipherSuites` replace them, `nil` gives
    // OpenSSL's own default back (which has CBC suites), and a list OpenSSL does not know is
    // a configuration error naming it.
    @Test func suitesAreConfigurable() throws {
        var configuration = serverConfiguration()
        configuration.ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384"
        configuration.cipherSuites = "TLS_CHACHA20_POLY1305_SHA256"
        #expect(try offeredSuites(TLSContext(configuration)) == [
            "TLS_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
        ])
        configuration = serverConfiguration()
        configuration.ciphers = nil
        let openSSLDefault = try offeredSuites(TLSContext(configuration))
        #expect(openSSLDefault.contains("ECDHE-ECDSA-AES128-SHA"))
        configuration.ciphers = "NO-SUCH-CIPHER"
        let error = try #require(throws: TLSError.self) { _ = try TLSContext(configuration) }
        #expect(error.code == .configuration)
        #expect(error.message == "invalid cipher list \"NO-SUCH-CIPHER\": no cipher match")
    }

    // A TLS 1.2 client offering only CBC suites is refused by a default server: the
    // handshake fails on both sides (the server has no shared cipher, the client hears a
    // handshake_failure alert) and no application is connected.
    @Test(arguments: ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "AES128-SHA256"])
    func cbcSuiteIsRefused(suite: String) throws {
        try withLoop { loop in
            let pair = try TLSPair(loop: loop) { _ in } configureClient: { client in
                client.maximumVersion = .v1_2
                client.ciphers = suite
            }
            try pair.exchange()
            let clientError = try #require(pair.handshake.error as? TLSError)
            #expect(clientError.code == .handshakeFailed)
            #expect(clientError.reason == "sslv3 alert handshake failure")
            let serverError = try #require(pair.server.failure as? TLSError)
            #expect(serverError.code == .handshakeFailed)
            #expect(serverError.reason == "no shared cipher")
            #expect(pair.serverApp.events.isEmpty && pair.clientApp.events.isEmpty)
        }
    }

    // Each default TLS 1.2 suite the ECDSA test certificate can use is negotiated when it is
    // the only one a TLS 1.2 client offers, and carries data.
    @Test(arguments: ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"])
    func aeadSuiteIsAccepted(suite: String) throws {
        try withLoop { loop in
            let pair = try TLSPair(loop: loop) { _ in } configureClient: { client in
                client.maximumVersion = .v1_2
                client.ciphers = suite
            }
            try pair.exchange()
            #expect(pair.handshake.isDone && pair.handshake.error == nil)
            let info = try #require(pair.serverApp.transport?.tlsInfo)
            #expect(info.version == "TLSv1.2")
            #expect(info.cipher == suite)
            pair.clientApp.transport?.write(Array("aead".utf8))
            try pair.exchange()
            #expect(pair.serverApp.received == Array("aead".utf8))
        }
    }

    // A context chosen by SNI brings its own cipher lists: a TLS 1.2 client offering only a
    // suite the chosen context allows (and the default context does not) is accepted with it,
    // and the reverse is refused. (A review suspected SSL_set_SSL_CTX kept the first context's
    // lists; it does not, as the SSL reads its context's: this pins that.)
    @Test func serverNameSwitchAppliesTheChosenCipherList() throws {
        var alternate = TLSConfiguration.server(
            certificateChain: "\(certificates)/server.crt", privateKey: "\(certificates)/server.key")
        alternate.ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305"
        let alternateContext = try TLSContext(alternate)
        for (offered, accepted) in [("ECDHE-ECDSA-CHACHA20-POLY1305", true), ("ECDHE-ECDSA-AES256-GCM-SHA384", false)] {
            try withLoop { loop in
                let pair = try TLSPair(loop: loop) { server in
                    server.ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384"
                    server.serverNameCallback = { name in name == "localhost" ? alternateContext : nil }
                } configureClient: { client in
                    client.maximumVersion = .v1_2
                    client.ciphers = offered
                }
                try pair.exchange()
                if accepted {
                    #expect(pair.handshake.isDone && pair.handshake.error == nil, "\(String(describing: pair.handshake.error))")
                    #expect(pair.serverApp.transport?.tlsInfo?.cipher == offered)
                } else {
                    let serverError = try #require(pair.server.failure as? TLSError)
                    #expect(serverError.reason == "no shared cipher")
                }
            }
        }
    }
}
