// tls-echo-server: every byte a client sends over TLS comes back.
//
//   $ swift run tls-echo-server --port 8443
//   listening on 127.0.0.1:8443
//   $ openssl s_client -connect 127.0.0.1:8443 -CAfile Certificates/ca.crt -quiet
//
// The same EchoProtocol as tcp-echo-server: TLS is a layer between the socket and the
// protocol, so the protocol sees plaintext and its transport encrypts. The server's
// TLSContext holds the certificate and key (Certificates/ has test ones), the CA for client
// certificates (--client-ca: mTLS, a client without a valid certificate is refused) and the
// ALPN protocols (--alpn h2,http/1.1). A client that does not finish its handshake within
// --handshake-timeout seconds is dropped. On a client's close_notify (TLS 1.3: a half-close)
// the pending echo is flushed, close_notify answered and the connection closed.

import ArgumentParser
import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// The echo, as a protocol: it does not know about TLS.
final class EchoProtocol: StreamProtocol {
    private var transport: (any StreamTransport)?

    func connectionMade(_ transport: any StreamTransport) {
        self.transport = transport
    }

    func dataReceived(_ bytes: UnsafeRawBufferPointer) {
        transport?.write(bytes)   // encrypted and sent; buffered only if the socket is full
    }

    func eofReceived() -> Bool {
        false   // close (after the pending echo) once the client is done
    }

    func pauseWriting() {
        transport?.pauseReading()   // the client is not reading: stop reading from it
    }

    func resumeWriting() {
        transport?.resumeReading()
    }

    func connectionLost(_ error: (any Error)?) {
        transport = nil
    }
}

struct TLSEchoServer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls-echo-server",
        abstract: "Echo server over TLS.")

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one).")
    var port = 8443

    @Option(help: "Event loops (threads) serving connections.")
    var loops = 1

    @Option(help: "PEM certificate chain of the server.")
    var cert = "Certificates/server.crt"

    @Option(help: "PEM private key of the certificate.")
    var key = "Certificates/server.key"

    @Option(help: "PEM CA file: require client certificates signed by it (mTLS).")
    var clientCa: String?

    @Option(help: "ALPN protocols the server accepts, in order of preference (e.g. h2,http/1.1).")
    var alpn: String?

    @Option(help: "Seconds a client has to finish its handshake.")
    var handshakeTimeout = 60.0

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0-65535, got \(port)") }
        guard (1...256).contains(loops) else { throw ValidationError("--loops must be 1-256, got \(loops)") }
        guard handshakeTimeout > 0 else { throw ValidationError("--handshake-timeout must be positive") }
        if let alpn, alpn.split(separator: ",").isEmpty {
            throw ValidationError("--alpn needs at least one protocol name")
        }
    }

    func run() throws {
        let (host, port, loops) = (host, port, loops)
        let context: TLSContext
        do {
            var configuration = TLSConfiguration.server(certificateChain: cert, privateKey: key)
            if let clientCa {
                configuration.caFile = clientCa
                configuration.clientVerification = .required
            }
            configuration.alpnProtocols = alpn.map { $0.split(separator: ",").map(String.init) } ?? []
            configuration.handshakeTimeout = .milliseconds(Int64(handshakeTimeout * 1000))
            context = try TLSContext(configuration)
        } catch {
            log("tls-echo-server: error: \(error)")   // names the file and OpenSSL's reason
            throw ExitCode.failure
        }
        do {
            try EventLoop.run { main in
                // The connections are served by `loops` loops on their own threads; this loop
                // (the main thread) only waits for SIGINT/SIGTERM.
                let group = try EventLoopGroup(loops: loops, name: "echo")
                defer { group.shutdown(timeout: .milliseconds(200)) }
                let servers = try await group.createServer(host: host, port: port, tls: context) { EchoProtocol() }
                say("listening on \(servers.addresses[0])")

                let signal = try await main.waitForSignal([SIGINT, SIGTERM])
                log("signal \(signal): closing")
                await servers.close()          // no new connections
                await servers.closeClients()   // flush, send close_notify, close each connection
                do {
                    try await waitFor(timeout: .milliseconds(1500)) { await servers.waitClosed() }
                } catch {
                    await servers.abortClients()   // clients that do not read or answer
                }
            }
        } catch {
            log("tls-echo-server: error: \(error)")
            throw ExitCode.failure
        }
    }
}

/// Prints a line to stdout and flushes it (the "listening on" line must reach a pipe at once).
func say(_ line: String) {
    print(line)
    fflush(nil)
}

/// Writes a line to stderr.
func log(_ line: String) {
    _ = (line + "\n").withCString { write(2, $0, strlen($0)) }
}

TLSEchoServer.main()
