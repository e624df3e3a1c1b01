//===----------------------------------------------------------------------===//
// swift-asyncio — the README's API example, kept compiling and correct.
//===----------------------------------------------------------------------===//

import AsyncIO
import Testing

/// README.md's protocol echo server.
final class ReadmeEcho: StreamProtocol {
    var transport: (any StreamTransport)?
    func connectionMade(_ transport: any StreamTransport) { self.transport = transport }
    func dataReceived(_ bytes: UnsafeRawBufferPointer) { transport?.write(bytes) }
    func pauseWriting() { transport?.pauseReading() }
    func resumeWriting() { transport?.resumeReading() }
}

@Suite(.timeLimit(.minutes(10)))
struct ReadmeExampleTests {
    // README.md's two echo servers (protocol and streams), served briefly and checked.
    @Test func readmeEchoServersEcho() throws {
        let echoes = try EventLoop.run { loop in
            let server = try await loop.createServer(host: "127.0.0.1", port: 0) { ReadmeEcho() }
            let serving = loop.createTask { try await server.serveForever() }
            let streams = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                while case let line = try await reader.readLine(), !line.isEmpty {
                    writer.write(line)
                    try await writer.drain()
                }
            }
            var echoes: [String] = []
            for port in [server.addresses[0].port, streams.addresses[0].port] {
                let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: port ?? 0)
                writer.write("hello\n")
                echoes.append(String(decoding: try await reader.readLine(), as: UTF8.self))
                writer.close()
            }
            serving.cancel()
            streams.close()
            return echoes
        }
        #expect(echoes == ["hello\n", "hello\n"])
    }

    // README.md's TLS example (an ephemeral port, the Certificates/ path made absolute).
    @Test func readmeTLSExample() throws {
        let (line, version) = try EventLoop.run { loop in
            let server = try TLSContext.server(certificateChain: "\(certificates)/server.crt",
                                               privateKey: "\(certificates)/server.key")
            let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: server) { ReadmeEcho() }
            defer { listener.close() }

            let client = try TLSContext.client(caFile: "\(certificates)/ca.crt")
            let (reader, writer) = try await loop.openConnection(
                host: "localhost", port: listener.addresses[0].port ?? 0, tls: client)
            writer.write("hello\n")
            let line = try await reader.readLine()
            let version = writer.tlsInfo?.version ?? "plain"
            writer.close()
            return (line, version)
        }
        #expect(line == Array("hello\n".utf8))
        #expect(version == "TLSv1.3")
    }

    // The code of README.md's "A taste of the API", with print replaced by a return.
    @Test func readmeExampleRuns() throws {
        let output = try EventLoop.run { loop in
            let slow = loop.createTask(name: "slow") {
                try await sleep(for: .milliseconds(100))
                return "slow"
            }
            let fast = loop.createTask { "fast" }

            let sum = try await loop.runInExecutor { (1...1_000_000).reduce(0, +) }.value

            let future = Future<Int>(loop: loop)
            loop.callLater(after: .milliseconds(10)) { try future.setResult(sum) }
            let value = try await waitFor(future, timeout: .seconds(5))

            let (a, b) = try await gather(slow, fast)
            return "\(a) \(b) \(value)"
        }
        #expect(output == "slow fast 500000500000")
    }
}
