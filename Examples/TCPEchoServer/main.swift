// tcp-echo-server: every byte a client sends comes back.
//
//   $ swift run tcp-echo-server --port 8888 --loops 2
//   listening on 127.0.0.1:8888
//
// One StreamProtocol object per connection: dataReceived writes the bytes back (sent at once
// when the socket can take them, buffered otherwise). When a client sends faster than it
// reads, the transport's write buffer passes its high-water mark, pauseWriting stops reading
// from that client until it drains, so memory stays bounded. On the client's EOF the pending
// echo is flushed and the connection closed. SIGINT/SIGTERM close everything gracefully.
//
// Started by systemd with socket activation (LISTEN_FDS), it serves the sockets passed to it
// instead of --host/--port:
//
//   $ systemd-socket-activate -l 127.0.0.1:8888 tcp-echo-server
//
// With --lifecycle the loops and the servers run as swift-service-lifecycle services
// (AsyncIOServiceLifecycle): SIGINT/SIGTERM stop listening, let open connections finish for
// --grace-period seconds, then close them.
//
//   $ swift run --traits ServiceLifecycle tcp-echo-server --lifecycle --grace-period 10
//
// (The ServiceLifecycle trait is off by default; without it --lifecycle is an error.)

import ArgumentParser
import AsyncIO
import Logging
#if ServiceLifecycle
import AsyncIOServiceLifecycle
import ServiceLifecycle
#endif

#if canImport(Glibc)
import Glibc
#endif

/// The echo, as a protocol: asyncio's `EchoServerProtocol`, in Swift.
final class EchoProtocol: StreamProtocol {
    private var transport: (any StreamTransport)?

    func connectionMade(_ transport: any StreamTransport) {
        self.transport = transport
    }

    func dataReceived(_ bytes: UnsafeRawBufferPointer) {
        transport?.write(bytes)   // borrowed bytes, written back without a copy when possible
    }

    func eofReceived() -> Bool {
        false   // close once the pending echo is flushed
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

struct TCPEchoServer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tcp-echo-server",
        abstract: "Echo server over TCP.")

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one).")
    var port = 8888

    @Option(help: "Event loops (threads) serving connections.")
    var loops = 1

    @Flag(help: "Run the loops and the server as swift-service-lifecycle services.")
    var lifecycle = false

    @Option(help: "With --lifecycle: seconds open connections get to finish after SIGINT/SIGTERM before they are closed.")
    var gracePeriod = 1.0

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0-65535, got \(port)") }
        guard (1...256).contains(loops) else { throw ValidationError("--loops must be 1-256, got \(loops)") }
        guard gracePeriod >= 0 && gracePeriod <= 3600 else {
            throw ValidationError("--grace-period must be 0-3600 seconds, got \(gracePeriod)")
        }
    }

    func run() throws {
        if lifecycle {
            try runServices()
            return
        }
        let (host, port, loops) = (host, port, loops)
        do {
            // Started by systemd (socket activation): serve the sockets it passed instead of
            // binding --host/--port. Read (and unset) before any other thread runs.
            let activated = try SocketActivation.listenFDs(unsetEnvironment: true)
            try EventLoop.run { main in
                // The connections are served by `loops` loops on their own threads; this loop
                // (the main thread) only waits for SIGINT/SIGTERM.
                let group = try EventLoopGroup(loops: loops, name: "echo")
                defer { group.shutdown(timeout: .milliseconds(200)) }
                let servers = activated.isEmpty
                    ? try await group.createServer(host: host, port: port) { EchoProtocol() }
                    : try await group.createServer(sockets: activated.map(\.fileDescriptor)) { EchoProtocol() }
                say("listening on \(servers.addresses[0])")

                let signal = try await main.waitForSignal([SIGINT, SIGTERM])
                log("signal \(signal): closing")
                await servers.close()          // no new connections
                await servers.closeClients()   // flush, then close each connection
                do {
                    try await waitFor(timeout: .milliseconds(1500)) { await servers.waitClosed() }
                } catch {
                    await servers.abortClients()   // clients that do not read their echo
                }
            }
        } catch {
            log("tcp-echo-server: error: \(error)")
            throw ExitCode.failure
        }
    }
}

extension TCPEchoServer {
    #if ServiceLifecycle
    /// --lifecycle: a ServiceGroup runs the loops and the servers and turns SIGINT/SIGTERM
    /// into a graceful shutdown (stop listening, drain for --grace-period, close, stop).
    func runServices() throws {
        let (host, port, loops, grace) = (host, port, loops, Duration.seconds(gracePeriod))
        let logger = Logger(label: "tcp-echo-server")   // swift-log's default: stderr, info and up
        do {
            try EventLoop.run { _ in
                let group = try EventLoopGroup(loops: loops, name: "echo", logger: logger)
                let servers: ServerGroup
                do {
                    servers = try await group.createServer(host: host, port: port) { EchoProtocol() }
                } catch {
                    await group.shutdownGracefully()
                    throw error
                }
                say("listening on \(servers.addresses[0])")
                try await ServiceGroup(
                    services: [
                        EventLoopGroupService(group, shutdownTimeout: .milliseconds(200)),
                        ServerService(servers, gracePeriod: grace, closeTimeout: .milliseconds(500)),
                    ],
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger
                ).run()
            }
        } catch {
            log("tcp-echo-server: error: \(error)")
            throw ExitCode.failure
        }
    }
    #else
    /// --lifecycle needs the package's ServiceLifecycle trait (off by default).
    func runServices() throws {
        log("tcp-echo-server: error: --lifecycle needs the package built with its ServiceLifecycle trait (swift run --traits ServiceLifecycle tcp-echo-server --lifecycle)")
        throw ExitCode.failure
    }
    #endif
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

TCPEchoServer.main()
