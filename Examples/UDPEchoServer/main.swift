// udp-echo-server: every datagram goes back to its sender.
//
//   $ swift run udp-echo-server --port 9999 --loops 2
//   listening on 127.0.0.1:9999
//
// With --loops N, each loop has its own socket on the port (SO_REUSEPORT) and the kernel
// spreads the senders over them. SIGINT/SIGTERM close the endpoints and exit 0.

import ArgumentParser
import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// The echo, as a datagram protocol.
final class EchoDatagramProtocol: DatagramProtocol {
    private var transport: (any DatagramTransport)?

    func connectionMade(_ transport: any DatagramTransport) {
        self.transport = transport
    }

    func datagramReceived(_ bytes: UnsafeRawBufferPointer, from address: SocketAddress) {
        transport?.sendTo(bytes, address)   // borrowed bytes, sent back without a copy
    }

    func connectionLost(_ error: (any Error)?) {
        transport = nil
    }
}

struct UDPEchoServer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udp-echo-server",
        abstract: "Echo server over UDP: each datagram back to its sender.")

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one).")
    var port = 9999

    @Option(help: "Event loops (threads), each with its own socket on the port.")
    var loops = 1

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0-65535, got \(port)") }
        guard (1...256).contains(loops) else { throw ValidationError("--loops must be 1-256, got \(loops)") }
    }

    func run() throws {
        let (host, port, loops) = (host, port, loops)
        do {
            try EventLoop.run { main in
                let group = try EventLoopGroup(loops: loops, name: "udp-echo")
                defer { group.shutdown(timeout: .milliseconds(200)) }
                let endpoints = try await group.createDatagramEndpoints(host: host, port: port) {
                    EchoDatagramProtocol()
                }
                say("listening on \(endpoints.address)")

                let signal = try await main.waitForSignal([SIGINT, SIGTERM])
                log("signal \(signal): closing")
                await endpoints.close()
            }
        } catch {
            log("udp-echo-server: error: \(error)")
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

UDPEchoServer.main()
