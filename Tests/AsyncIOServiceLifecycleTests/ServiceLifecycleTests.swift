//===----------------------------------------------------------------------===//
// swift-asyncio — AsyncIOServiceLifecycle: graceful shutdown of servers and loops.
//===----------------------------------------------------------------------===//

#if ServiceLifecycle
import AsyncIO
import AsyncIOServiceLifecycle
import Logging
import ServiceLifecycle
import Testing

/// Echo with flow control: stops reading while the peer does not read; closes after the
/// echo of everything is flushed once the peer sent EOF.
private final class Echo: StreamProtocol {
    var transport: (any StreamTransport)?
    func connectionMade(_ transport: any StreamTransport) { self.transport = transport }
    func dataReceived(_ bytes: UnsafeRawBufferPointer) { transport?.write(bytes) }
    func pauseWriting() { transport?.pauseReading() }
    func resumeWriting() { transport?.resumeReading() }
}

/// What the Python client printed and how it exited.
private struct ClientResult: Sendable {
    let code: Int32
    let stdout: String
    let stderr: String
}

/// A Python client of `port` (the script `script`) run from a loop of its own: it prints a
/// first line when it is mid-transfer, which `midway` reports; then it waits for a line on
/// its stdin, which it gets once `proceed` yields.
private struct PythonClient {
    let midway: AsyncStream<String>
    private let proceed: AsyncStream<Void>.Continuation
    let result: Task<ClientResult, any Error>

    init(on group: EventLoopGroup, script: String, port: Int) {
        let (midway, reportMidway) = AsyncStream<String>.makeStream()
        let (proceedStream, proceed) = AsyncStream<Void>.makeStream()
        self.midway = midway
        self.proceed = proceed
        let loop = group.loops[0]
        result = Task {
            try await loop.submit { () async throws -> ClientResult in
                let process = try await loop.createSubprocessExec(
                    "python3", ["-c", script, "\(port)"], stdin: .pipe, stdout: .pipe, stderr: .pipe)
                let first = try await process.stdout?.readLine() ?? []
                reportMidway.yield(String(decoding: first, as: UTF8.self))
                reportMidway.finish()
                for await _ in proceedStream { break }
                let (stdout, stderr) = try await process.communicate(input: Array("go\n".utf8))
                return ClientResult(
                    code: process.returnCode ?? -1, stdout: String(decoding: first + stdout, as: UTF8.self),
                    stderr: String(decoding: stderr, as: UTF8.self))
            }
        }
    }

    /// Lets the client go on past its first line.
    func goOn() {
        proceed.yield()
        proceed.finish()
    }
}

/// A logger that drops everything (the service group's own log lines).
private let quiet = Logger(label: "service-lifecycle-tests") { _ in SwiftLogNoOpLogHandler() }

/// Waits until no server of `servers` listens any more: the state graceful shutdown leads to
/// and keeps, which nothing announces. Polls each millisecond, at most 10 s.
private func waitUntilNotListening(_ servers: ServerGroup) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: .seconds(10))
    for server in servers.servers {
        while try await server.loop.submit({ server.isServing }) {
            if clock.now >= deadline {
                Issue.record("the server still listens 10 s after graceful shutdown began")
                return
            }
            try await Task.sleep(for: .milliseconds(1))
        }
    }
}

@Suite(.timeLimit(.minutes(10)))
struct ServiceLifecycleTests {
    // Graceful shutdown mid-transfer: a Python client has sent 1 MiB of 2 MiB and read its
    // echo when the service group shuts down. The server stops listening (a new connection
    // is refused), the open connection goes on: the second MiB is echoed, every byte exactly,
    // then the server service and the loop group service return and the group's run ends.
    @Test func gracefulShutdownLetsATransferInProgressFinish() async throws {
        let group = try EventLoopGroup(loops: 1, name: "served", logger: quiet)
        let servers = try await group.createServer(host: "127.0.0.1", port: 0) { Echo() }
        let services = ServiceGroup(
            services: [EventLoopGroupService(group), ServerService(servers, gracePeriod: .seconds(120))],
            logger: quiet)
        let running = Task { try await services.run() }

        let clients = try EventLoopGroup(loops: 1, name: "client", logger: quiet)
        let client = PythonClient(on: clients, script: """
            import random, socket, sys, threading
            port = int(sys.argv[1])
            data = random.Random(7).randbytes(2 * 1024 * 1024)
            half = len(data) // 2
            s = socket.create_connection(("127.0.0.1", port))
            received = bytearray()
            got_half = threading.Event()
            def read():
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    received.extend(chunk)
                    if len(received) >= half:
                        got_half.set()
                got_half.set()
            reader = threading.Thread(target=read)
            reader.start()
            s.sendall(data[:half])
            got_half.wait()
            print("half", len(received), flush=True)
            sys.stdin.readline()
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                print("accepted")
            except ConnectionRefusedError:
                print("refused")
            s.sendall(data[half:])
            s.shutdown(socket.SHUT_WR)
            reader.join()
            print("same" if bytes(received) == data else "different", len(received))
            """, port: servers.addresses[0].port ?? 0)

        var midway = ""
        for await line in client.midway { midway = line }
        await services.triggerGracefulShutdown()
        try await waitUntilNotListening(servers)
        client.goOn()
        let result = try await client.result.value
        try await running.value
        await clients.shutdownGracefully()

        #expect(midway == "half 1048576\n")
        #expect(result.code == 0, "\(result.stderr)")
        #expect(result.stdout == "half 1048576\nrefused\nsame 2097152\n", "\(result.stderr)")
        #expect(group.loops.allSatisfy { $0.isClosed })
    }

    // A connection still open when the grace period ends is closed by the server: the client
    // first gets the echo it was owed, then EOF (not a reset), and the service group's run
    // ends without the client doing anything.
    @Test func connectionsLeftAfterTheGracePeriodAreClosed() async throws {
        let group = try EventLoopGroup(loops: 1, name: "served", logger: quiet)
        let servers = try await group.createServer(host: "127.0.0.1", port: 0) { Echo() }
        let services = ServiceGroup(
            services: [EventLoopGroupService(group), ServerService(servers, gracePeriod: .milliseconds(200))],
            logger: quiet)
        let running = Task { try await services.run() }

        let clients = try EventLoopGroup(loops: 1, name: "client", logger: quiet)
        let client = PythonClient(on: clients, script: """
            import socket, sys
            s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
            s.sendall(b"hello")
            echo = b""
            while len(echo) < 5:
                echo += s.recv(5 - len(echo))
            print("echoed", echo.decode(), flush=True)
            try:
                rest = s.recv(100)
                print("eof" if rest == b"" else "data", len(rest))
            except ConnectionResetError:
                print("reset")
            sys.stdin.readline()
            """, port: servers.addresses[0].port ?? 0)

        var midway = ""
        for await line in client.midway { midway = line }
        await services.triggerGracefulShutdown()
        try await running.value   // ends on its own: the grace period closes the connection
        client.goOn()
        let result = try await client.result.value
        await clients.shutdownGracefully()

        #expect(midway == "echoed hello\n")
        #expect(result.code == 0, "\(result.stderr)")
        #expect(result.stdout == "echoed hello\neof 0\n", "\(result.stderr)")
        #expect(group.loops.allSatisfy { $0.isClosed })
    }

    // Cancelling the service group (not graceful) drops open connections at once, whatever
    // the grace period (120 s here): the client's connection ends (an abort closes the socket
    // without lingering: EOF), the run ends and the loops are shut down all the same.
    @Test func cancellationAbortsConnections() async throws {
        let group = try EventLoopGroup(loops: 1, name: "served", logger: quiet)
        let servers = try await group.createServer(host: "127.0.0.1", port: 0) { Echo() }
        let services = ServiceGroup(
            services: [EventLoopGroupService(group), ServerService(servers, gracePeriod: .seconds(120))],
            logger: quiet)
        let running = Task { try await services.run() }

        let clients = try EventLoopGroup(loops: 1, name: "client", logger: quiet)
        let client = PythonClient(on: clients, script: """
            import socket, sys
            s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
            s.sendall(b"hi")
            echo = b""
            while len(echo) < 2:
                echo += s.recv(2 - len(echo))
            print("echoed", echo.decode(), flush=True)
            try:
                rest = s.recv(100)
                print("eof" if rest == b"" else "data", len(rest))
            except ConnectionResetError:
                print("reset")
            sys.stdin.readline()
            """, port: servers.addresses[0].port ?? 0)

        var midway = ""
        for await line in client.midway { midway = line }
        running.cancel()
        _ = await running.result
        client.goOn()
        let result = try await client.result.value
        await clients.shutdownGracefully()

        #expect(midway == "echoed hi\n")
        #expect(result.code == 0, "\(result.stderr)")
        #expect(result.stdout == "echoed hi\neof 0\n", "\(result.stderr)")
        #expect(group.loops.allSatisfy { $0.isClosed })
    }
}
#endif
