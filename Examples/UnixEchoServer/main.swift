// unix-echo-server: the TCP echo server's twin, over a Unix stream socket.
//
//   $ swift run unix-echo-server --path ./echo.sock
//   listening on ./echo.sock
//
// A stale socket file left by a crashed server is replaced; the server removes its own file
// when it exits.
//
// One StreamProtocol object per connection: dataReceived writes the bytes back (sent at once
// when the socket can take them, buffered otherwise). When a client sends faster than it
// reads, the transport's write buffer passes its high-water mark, pauseWriting stops reading
// from that client until it drains, so memory stays bounded. On the client's EOF the pending
// echo is flushed and the connection closed. SIGINT/SIGTERM close everything gracefully.

import ArgumentParser
import AsyncIO

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

struct UnixEchoServer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unix-echo-server",
        abstract: "Echo server over a Unix stream socket.")

    @Option(help: "Path of the socket file.")
    var path = "./echo.sock"

    @Option(help: "Event loops (threads) serving connections.")
    var loops = 1

    func validate() throws {
        guard !path.isEmpty else { throw ValidationError("--path must not be empty") }
        guard (1...256).contains(loops) else { throw ValidationError("--loops must be 1-256, got \(loops)") }
    }

    func run() throws {
        let (path, loops) = (path, loops)
        do {
            try EventLoop.run { main in
                // The connections are served by `loops` loops on their own threads; this loop
                // (the main thread) only waits for SIGINT/SIGTERM.
                let group = try EventLoopGroup(loops: loops, name: "echo")
                defer { group.shutdown(timeout: .milliseconds(200)) }
                let servers = try await group.createUnixServer(path: path) { EchoProtocol() }
                say("listening on \(path)")

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
            log("unix-echo-server: error: \(error)")
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

UnixEchoServer.main()
