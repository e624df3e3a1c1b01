// echo-client: sends a message (or each line of stdin) to an echo server and prints each echo.
//
//   $ swift run echo-client tcp --port 8888 --message hello
//   hello
//   $ printf 'one\ntwo\n' | swift run echo-client unix --path ./echo.sock
//   one
//   two
//   $ swift run echo-client tls --port 8443 --ca Certificates/ca.crt --message hello
//   hello
//
// Written with the streams API: openConnection gives a StreamReader and a StreamWriter;
// stdin is read on the executor (a blocking read must not stop the loop).

import ArgumentParser
import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

enum Mode: String, ExpressibleByArgument, CaseIterable {
    case tcp, tls, udp, unix
}

struct EchoClient: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "echo-client",
        abstract: "Sends --message (or each stdin line) to an echo server and prints each echo.")

    @Argument(help: "Transport: tcp, tls, udp, unix.")
    var mode: Mode

    @Option(help: "Server host (tcp, tls, udp); with tls, also the name the certificate must carry.")
    var host = "127.0.0.1"

    @Option(help: "Server port (default 8888 for tcp, 8443 for tls, 9999 for udp).")
    var port: Int?

    @Option(help: "Socket path (unix).")
    var path = "./echo.sock"

    @Option(help: "CA certificate file to trust (tls; default Certificates/ca.crt if it exists, else the system's).")
    var ca: String?

    @Option(help: "The message to send; without it, each line of stdin is sent.")
    var message: String?

    func validate() throws {
        if let port, !(1...65535).contains(port) {
            throw ValidationError("--port must be 1-65535, got \(port)")
        }
    }

    func run() throws {
        let (mode, host, path, message) = (mode, host, path, message)
        let udpPort = port ?? 9999
        let tlsPort = port ?? 8443
        let port = port ?? 8888
        var tls: TLSContext?
        if mode == .tls {
            let defaultCA = "Certificates/ca.crt"
            let caFile = ca ?? (access(defaultCA, R_OK) == 0 ? defaultCA : nil)
            do {
                tls = try TLSContext.client(caFile: caFile)
            } catch {
                log("echo-client: error: \(error)")
                throw ExitCode.failure
            }
        }
        do {
            try EventLoop.run { loop in
                let (reader, writer): (StreamReader, StreamWriter)
                switch mode {
                case .tcp: (reader, writer) = try await loop.openConnection(host: host, port: port)
                case .unix: (reader, writer) = try await loop.openUnixConnection(path: path)
                case .udp:
                    try await udpEcho(loop, host: host, port: udpPort, message: message)
                    return
                case .tls: (reader, writer) = try await loop.openConnection(host: host, port: tlsPort, tls: tls)
                }
                // One line out, one echo back, until there is nothing left to send.
                while let line = try await nextLine(loop, message: message) {
                    let bytes = Array((line + "\n").utf8)
                    writer.write(bytes)
                    try await writer.drain()
                    let echo = try await reader.readExactly(bytes.count)
                    say(String(decoding: echo.dropLast(), as: UTF8.self))
                }
                writer.close()
                try await writer.waitClosed()
            }
        } catch {
            log("echo-client: error: \(error)")
            throw ExitCode.failure
        }
    }
}

/// Collects the datagrams a connected UDP endpoint receives.
final class DatagramCollector: DatagramProtocol {
    let loop: EventLoop
    var waiting: Future<[UInt8]>?
    var error: (any Error)?

    init(loop: EventLoop) { self.loop = loop }

    func connectionMade(_ transport: any DatagramTransport) {}

    func datagramReceived(_ bytes: UnsafeRawBufferPointer, from address: SocketAddress) throws {
        try waiting?.setResult(Array(bytes))
        waiting = nil
    }

    func errorReceived(_ error: any Error) {
        try? waiting?.setError(error)   // e.g. connection refused: nothing listens there
        waiting = nil
    }
}

/// UDP: each line is one datagram; its echo must come back within 5 s.
func udpEcho(_ loop: EventLoop, host: String, port: Int, message: String?) async throws {
    let (transport, collector) = try await loop.createDatagramEndpoint(remoteHost: host, remotePort: port) {
        DatagramCollector(loop: loop)
    }
    defer { transport.close() }
    while let line = try await nextLine(loop, message: message) {
        let reply = Future<[UInt8]>(loop: loop)
        collector.waiting = reply
        transport.send(Array(line.utf8))
        let echo = try await waitFor(reply, timeout: .seconds(5))
        say(String(decoding: echo, as: UTF8.self))
    }
}

/// Box so the message is sent once.
final class Once: @unchecked Sendable {
    var sent = false
}
let once = Once()

/// The next line to send: the --message once, or the next stdin line (nil at the end).
func nextLine(_ loop: EventLoop, message: String?) async throws -> String? {
    if let message {
        if once.sent { return nil }
        once.sent = true
        return message
    }
    return try await loop.runInExecutor { readLine(strippingNewline: true) }.value
}

/// Prints a line to stdout and flushes it.
func say(_ line: String) {
    print(line)
    fflush(nil)
}

/// Writes a line to stderr.
func log(_ line: String) {
    _ = (line + "\n").withCString { write(2, $0, strlen($0)) }
}

EchoClient.main()
