//===----------------------------------------------------------------------===//
// In-process echo on package-benchmark: a swift-asyncio echo server on an EventLoopGroup's
// loop thread and a blocking client on loopback in the same process; one operation is one
// 1 KiB message sent and its echo read back and compared, 1000 per iteration. The allocation
// count is the server's alone (the client makes no allocation per message); the process CPU
// time covers both threads and the kernel's work in their syscalls. Two servers: the Protocol
// API (`dataReceived` writes the bytes back, as tcp-echo-server does) and the streams API
// (`read(max:)`, `write`, `drain()`, as streams-echo-server does).
//
//   swift package benchmark --target EchoBenchmarks
//===----------------------------------------------------------------------===//

import AsyncIO
import Benchmark
import BenchmarkSettings

#if canImport(Glibc)
import Glibc
#endif

/// The size of every message.
let messageSize = 1024

/// The echo as a protocol, like tcp-echo-server's.
final class EchoProtocol: StreamProtocol {
    private var transport: (any StreamTransport)?

    func connectionMade(_ transport: any StreamTransport) { self.transport = transport }
    func dataReceived(_ bytes: UnsafeRawBufferPointer) { transport?.write(bytes) }
    func eofReceived() -> Bool { false }
    func connectionLost(_ error: (any Error)?) { transport = nil }
}

/// The echo on streams, like streams-echo-server's.
@Sendable func echoStreams(_ reader: StreamReader, _ writer: StreamWriter) async throws {
    while true {
        let bytes = try await reader.read(max: 65536)
        if bytes.isEmpty { break }
        writer.write(bytes)
        try await writer.drain()
    }
}

/// A failure of the harness or of the echo.
struct EchoBenchmarkError: Error, CustomStringConvertible {
    let description: String
}

/// A server on a loop thread of its own and one blocking client connected to it.
final class EchoHarness {
    enum API { case protocols, streams }

    private let group: EventLoopGroup
    private let server: Server
    private let socket: Int32
    private var message: [UInt8]
    private var reply: [UInt8]

    init(api: API) throws {
        group = try EventLoopGroup(loops: 1, name: "echo-bench")
        let loop = group.loops[0]
        server = try loop.runCoroutineThreadSafe {
            switch api {
            case .protocols: try await loop.createServer(host: "127.0.0.1", port: 0) { EchoProtocol() }
            case .streams: try await loop.startServer(host: "127.0.0.1", port: 0, echoStreams)
            }
        }.result(timeout: .seconds(10))
        guard let port = server.addresses.first?.port else {
            throw EchoBenchmarkError(description: "the server has no port")
        }
        socket = try Self.connect(port: port)
        message = (0..<messageSize).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        reply = [UInt8](repeating: 0, count: messageSize)
    }

    private static func connect(port: Int) throws -> Int32 {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw EchoBenchmarkError(description: "socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            let error = errno
            Glibc.close(fd)
            throw EchoBenchmarkError(description: "connect: errno \(error)")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    /// Sends `count` messages one at a time, each after the previous one's echo came back
    /// complete and equal to what was sent.
    func roundTrips(_ count: Int) throws {
        for round in 0..<count {
            message[0] = UInt8(truncatingIfNeeded: round)
            var sent = 0
            while sent < messageSize {
                let n = message.withUnsafeBytes {
                    send(socket, $0.baseAddress! + sent, messageSize - sent, 0)
                }
                guard n > 0 else { throw EchoBenchmarkError(description: "send: errno \(errno)") }
                sent += n
            }
            var received = 0
            while received < messageSize {
                let n = reply.withUnsafeMutableBytes {
                    recv(socket, $0.baseAddress! + received, messageSize - received, 0)
                }
                guard n > 0 else {
                    throw EchoBenchmarkError(
                        description: n == 0 ? "the server closed the connection" : "recv: errno \(errno)")
                }
                received += n
            }
            guard reply == message else { throw EchoBenchmarkError(description: "the echo differs from the message") }
        }
    }

    /// Closes the client, then the server and its loop.
    func close() {
        Glibc.close(socket)
        let server = self.server
        _ = try? group.loops[0].runCoroutineThreadSafe {
            server.close()
            server.abortClients()
        }.result(timeout: .seconds(10))
        group.shutdown()
    }
}

/// The harness a benchmark's iterations share, made in its setup and closed in its teardown.
final class HarnessSlot: @unchecked Sendable {
    // @unchecked Sendable: package-benchmark runs a benchmark's setup, iterations and
    // teardown one after the other, never at once.
    var harness: EchoHarness?
}

let benchmarks: @Sendable () -> Void = {
    for (name, api) in [("echo1KiB_protocol", EchoHarness.API.protocols), ("echo1KiB_streams", .streams)] {
        let slot = HarnessSlot()
        let configuration = Benchmark.Configuration.thresholded(
            crossThread: true,
            setup: { slot.harness = try EchoHarness(api: api) },
            teardown: {
                slot.harness?.close()
                slot.harness = nil
            })
        Benchmark(name, configuration: configuration) { benchmark in
            guard let harness = slot.harness else { throw EchoBenchmarkError(description: "no harness (setup failed)") }
            try benchmark.measuringProcessCPU {
                try harness.roundTrips(operationsPerIteration)
            }
        }
    }
}
