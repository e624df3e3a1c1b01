//===----------------------------------------------------------------------===//
// swift-asyncio — the code of the DocC articles (Sources/AsyncIO/AsyncIO.docc), kept
// compiling and correct. Snippets that are README.md's are in ReadmeExampleTests.
//===----------------------------------------------------------------------===//

import AsyncIO
import Testing

/// ThreadingModel.md's actor whose executor is the loop.
actor DocConnections {
    let loop: EventLoop
    var open = 0
    init(loop: EventLoop) { self.loop = loop }
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    func opened() -> Int {
        open += 1
        return open
    }

    /// Whether the actor's code runs on its loop's thread (not in the article).
    func onLoopThread() -> Bool { loop.inLoopThread }
}

@Suite(.timeLimit(.minutes(10)))
struct DocCArticleTests {
    // GettingStarted.md and Streams.md: a streams server and a client on one loop.
    @Test func streamsServerAndClient() throws {
        let line = try EventLoop.run { loop in
            let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                while case let line = try await reader.readLine(), !line.isEmpty {
                    writer.write(line)
                    try await writer.drain()
                }
            }
            let (reader, writer) = try await loop.openConnection(
                host: "127.0.0.1", port: server.addresses[0].port ?? 0)
            writer.write("hello\n")
            let line = String(decoding: try await reader.readLine(), as: UTF8.self)
            writer.close()
            server.close()
            return line
        }
        #expect(line == "hello\n")
    }

    // TransportsAndProtocols.md: typed socket options on a connection.
    @Test func socketOptions() throws {
        let (keepAlive, idle) = try EventLoop.run { loop in
            let server = try await loop.createServer(host: "127.0.0.1", port: 0) { ReadmeEcho() }
            defer { server.close() }
            let (transport, _) = try await loop.createConnection(
                host: "127.0.0.1", port: server.addresses[0].port ?? 0) { ReadmeEcho() }
            try transport.setOption(.keepAlive, true)
            try transport.setOption(.keepAliveIdle, .seconds(30))
            let idle: Duration = try transport.option(.keepAliveIdle)
            let keepAlive = try transport.option(.keepAlive)
            transport.close()
            return (keepAlive, idle)
        }
        #expect(keepAlive)
        #expect(idle == .seconds(30))
    }

    // TLS.md: mutual TLS with the test certificates, then a resumed session.
    @Test func mutualTLSAndSessionResumption() throws {
        let (clientSubject, firstReused, reused) = try EventLoop.run { loop in
            var serverConfiguration = TLSConfiguration.server(
                certificateChain: "\(certificates)/server.crt", privateKey: "\(certificates)/server.key")
            serverConfiguration.caFile = "\(certificates)/ca.crt"
            serverConfiguration.clientVerification = .required
            let serverContext = try TLSContext(serverConfiguration)

            var clientConfiguration = TLSConfiguration.client(caFile: "\(certificates)/ca.crt")
            clientConfiguration.certificateChain = "\(certificates)/client.crt"
            clientConfiguration.privateKey = "\(certificates)/client.key"
            let client = try TLSContext(clientConfiguration)

            let subject = Future<String>(loop: loop)
            let listener = try await loop.startServer(host: "127.0.0.1", port: 0, tls: serverContext) { reader, writer in
                if !subject.isDone { try subject.setResult(writer.tlsInfo?.peerCertificate?.subject ?? "none") }
                while case let line = try await reader.readLine(), !line.isEmpty {
                    writer.write(line)
                    try await writer.drain()
                }
            }
            defer { listener.close() }
            let port = listener.addresses[0].port ?? 0

            let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: port, tls: client)
            writer.write("hello\n")
            _ = try await reader.readLine()                 // the ticket has arrived by now
            let session = writer.tlsInfo?.session
            let firstReused = writer.tlsInfo?.sessionReused ?? true
            writer.close()

            let (transport, _) = try await loop.createConnection(
                host: "127.0.0.1", port: port, tls: client, session: session) { ReadmeEcho() }
            let reused = transport.tlsInfo?.sessionReused ?? false
            transport.close()
            return (try await waitFor(subject, timeout: .seconds(10)), firstReused, reused)
        }
        #expect(clientSubject.contains("CN="))
        #expect(clientSubject != "none")
        #expect(!firstReused)
        #expect(reused)
    }

    // ThreadingModel.md: an actor whose executor is the loop runs on the loop's thread.
    @Test func actorOnTheLoop() throws {
        let (counts, onLoop) = try EventLoop.run { loop in
            let connections = DocConnections(loop: loop)
            let a = await connections.opened()
            let b = await connections.opened()
            return ([a, b], await connections.onLoopThread())
        }
        #expect(counts == [1, 2])
        #expect(onLoop)
    }

    // ThreadingModel.md: a group serves on every loop, one port, then shuts down.
    @Test func groupServesOnEveryLoop() async throws {
        let group = try EventLoopGroup(loops: 2)
        let servers = try await group.createServer(host: "127.0.0.1", port: 0) { ReadmeEcho() }
        #expect(servers.servers.count == 2)
        #expect(servers.addresses.first?.port ?? 0 != 0)
        await servers.close()
        await group.shutdownGracefully()
    }

    // PortingFromAsyncio.md: a timeout scope and a task group.
    @Test func timeoutAndTaskGroup() throws {
        let values = try EventLoop.run { loop in
            let value = try await timeout(after: .seconds(10)) { _ in "in time" }
            let (a, b) = try await withLoopTaskGroup { group in
                let a = try group.createTask { "a" }
                let b = try group.createTask { "b" }
                return (a, b)
            }
            return [value, try a.result(), try b.result()]
        }
        #expect(values == ["in time", "a", "b"])
    }
}
