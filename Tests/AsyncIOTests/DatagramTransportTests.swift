//===----------------------------------------------------------------------===//
// swift-asyncio — UDP endpoints.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// Echoes every datagram to its sender.
final class DatagramEcho: DatagramProtocol, @unchecked Sendable {
    var transport: (any DatagramTransport)?
    var received = 0
    func connectionMade(_ transport: any DatagramTransport) { self.transport = transport }
    func datagramReceived(_ bytes: UnsafeRawBufferPointer, from address: SocketAddress) {
        received += 1
        transport?.sendTo(bytes, address)
    }
}

/// Records datagrams and errors; completes `next` with each datagram.
final class DatagramRecorder: DatagramProtocol, @unchecked Sendable {
    let loop: EventLoop
    var datagrams: [([UInt8], SocketAddress)] = []
    var errors: [any Error] = []
    var lost = false
    var next: Future<Void>?

    init(loop: EventLoop) { self.loop = loop }

    func connectionMade(_ transport: any DatagramTransport) {}

    func datagramReceived(_ bytes: UnsafeRawBufferPointer, from address: SocketAddress) {
        datagrams.append((Array(bytes), address))
        next?.complete(.success(()))
    }

    func errorReceived(_ error: any Error) {
        errors.append(error)
        next?.complete(.success(()))
    }

    func connectionLost(_ error: (any Error)?) { lost = true }

    /// Waits for the next datagram or error, at most 10 s.
    func waitForNext() async throws {
        let future = Future<Void>(loop: loop)
        next = future
        defer { next = nil }
        try await waitFor(future, timeout: .seconds(10))
    }
}

@Suite(.timeLimit(.minutes(10)))
struct DatagramTransportTests {
    // 0-, 1-, 1,400- and 65,507-byte datagrams come back whole to the socket that sent them.
    @Test(arguments: ["127.0.0.1", "::1"])
    func datagramsOfEverySizeComeBackToTheirSender(host: String) throws {
        try withLoop { loop in
            let results = try loop.runUntilComplete { () async throws -> [Bool] in
                let server: (any DatagramTransport, DatagramEcho)
                do {
                    server = try await loop.createDatagramEndpoint(localHost: host, localPort: 0) { DatagramEcho() }
                } catch let error as TransportError where host == "::1" && error.code == .addressNotAvailable {
                    return [true]   // no IPv6 loopback on this machine
                }
                defer { server.0.close() }
                let port = try #require(server.0.localAddress?.port)
                let (a, recorderA) = try await loop.createDatagramEndpoint(remoteHost: host, remotePort: port) {
                    DatagramRecorder(loop: loop)
                }
                let (b, recorderB) = try await loop.createDatagramEndpoint(remoteHost: host, remotePort: port) {
                    DatagramRecorder(loop: loop)
                }
                defer { a.close(); b.close() }
                var results: [Bool] = []
                for size in [0, 1, 1400, 65507] {
                    let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ size) }
                    a.send(payload)
                    try await recorderA.waitForNext()
                    b.send(Array(payload.reversed()))
                    try await recorderB.waitForNext()
                    results.append(recorderA.datagrams.last?.0 == payload)
                    results.append(recorderB.datagrams.last?.0 == Array(payload.reversed()))
                }
                results.append(recorderA.datagrams.count == 4 && recorderB.datagrams.count == 4)
                return results
            }
            #expect(results.allSatisfy { $0 })
        }
    }

    // 50 client sockets at once each get exactly their own datagram back.
    @Test func fiftySocketsAtOnce() throws {
        try withLoop { loop in
            let ok = try loop.runUntilComplete { () async throws -> Bool in
                let (server, echo) = try await loop.createDatagramEndpoint(localHost: "127.0.0.1", localPort: 0) {
                    DatagramEcho()
                }
                defer { server.close() }
                let port = try #require(server.localAddress?.port)
                var clients: [(any DatagramTransport, DatagramRecorder)] = []
                for _ in 0..<50 {
                    clients.append(try await loop.createDatagramEndpoint(remoteHost: "127.0.0.1", remotePort: port) {
                        DatagramRecorder(loop: loop)
                    })
                }
                for (i, client) in clients.enumerated() { client.0.send(Array("client \(i)".utf8)) }
                var waited = 0
                while clients.contains(where: { $0.1.datagrams.isEmpty }) && waited < 1000 {
                    try await sleep(for: .milliseconds(10))
                    waited += 1
                }
                for client in clients { client.0.close() }
                return echo.received == 50 && clients.enumerated().allSatisfy { i, client in
                    client.1.datagrams.map(\.0) == [Array("client \(i)".utf8)]
                }
            }
            #expect(ok)
        }
    }

    // A connected endpoint whose peer port has no listener gets errorReceived
    // (connectionRefused, from ICMP) and keeps working.
    @Test func connectedEndpointReportsICMPErrorsAndKeepsWorking() throws {
        try withLoop { loop in
            let (codes, echoed) = try loop.runUntilComplete { () async throws -> ([TransportError.Code], Bool) in
                // A port with nobody on it: bind, note the port, close.
                let (probe, _) = try await loop.createDatagramEndpoint(localHost: "127.0.0.1", localPort: 0) {
                    DatagramEcho()
                }
                let deadPort = try #require(probe.localAddress?.port)
                probe.abort()
                try await sleep(for: .milliseconds(10))
                let (client, recorder) = try await loop.createDatagramEndpoint(remoteHost: "127.0.0.1", remotePort: deadPort) {
                    DatagramRecorder(loop: loop)
                }
                defer { client.close() }
                client.send(Array("anyone?".utf8))
                try await recorder.waitForNext()
                client.send(Array("again?".utf8))
                try await recorder.waitForNext()
                let codes = recorder.errors.compactMap { ($0 as? TransportError)?.code }
                return (codes, !client.isClosing)
            }
            #expect(codes == [.connectionRefused, .connectionRefused])
            #expect(echoed)
        }
    }

    // Binding a UDP port that is taken fails with addressInUse naming the address.
    @Test func udpAddressInUse() throws {
        try withLoop { loop in
            let message = try loop.runUntilComplete { () async throws -> String? in
                let (first, _) = try await loop.createDatagramEndpoint(localHost: "127.0.0.1", localPort: 0) {
                    DatagramEcho()
                }
                defer { first.close() }
                let port = try #require(first.localAddress?.port)
                do {
                    _ = try await loop.createDatagramEndpoint(localHost: "127.0.0.1", localPort: port) { DatagramEcho() }
                    return nil
                } catch let error as TransportError where error.code == .addressInUse {
                    return error.message.contains("127.0.0.1:\(port)") ? "ok" : error.message
                }
            }
            #expect(message == "ok")
        }
    }

    // close() sends what is queued, then connectionLost runs once and the fd is closed.
    @Test func closeCallsConnectionLostOnce() throws {
        try withLoop { loop in
            let (lost, fd) = try loop.runUntilComplete { () async throws -> (Bool, Int32) in
                let (endpoint, recorder) = try await loop.createDatagramEndpoint(localHost: "127.0.0.1", localPort: 0) {
                    DatagramRecorder(loop: loop)
                }
                endpoint.close()
                endpoint.close()
                try await sleep(for: .milliseconds(10))
                return (recorder.lost, endpoint.fileDescriptor)
            }
            #expect(lost)
            #expect(fd == -1)
        }
    }

    // Queued datagrams (what a full send buffer leaves behind; queued directly here, since
    // loopback UDP never reports EAGAIN) drain in batches (sendmmsg), intact and in order.
    @Test func queuedDatagramsDrainIntact() throws {
        try withLoop { loop in
            let (queued, drained, intact, received) = try loop.runUntilComplete {
                () async throws -> (Bool, Bool, Bool, Int) in
                let (server, recorder) = try await loop.createDatagramEndpoint(localHost: "127.0.0.1", localPort: 0) {
                    DatagramRecorder(loop: loop)
                }
                defer { server.close() }
                Socket.setOption(server.fileDescriptor, SOL_SOCKET, SO_RCVBUF, 4 << 20)
                let port = try #require(server.localAddress?.port)
                let (client, _) = try await loop.createDatagramEndpoint(remoteHost: "127.0.0.1", remotePort: port) {
                    DatagramRecorder(loop: loop)
                }
                defer { client.close() }
                let socketTransport = try #require(client as? DatagramSocketTransport)
                for i in 0..<20 {
                    [UInt8](repeating: UInt8(i), count: 4 * 1024).withUnsafeBytes { socketTransport.enqueue($0, nil) }
                }
                let queued = client.writeBufferSize == 20 * 4 * 1024
                var waited = 0
                while client.writeBufferSize > 0 && waited < 1000 {
                    try await sleep(for: .milliseconds(5))
                    waited += 1
                }
                try await sleep(for: .milliseconds(50))
                let payloads = recorder.datagrams.map(\.0)
                let intact = payloads.allSatisfy { $0.count == 4 * 1024 && Set($0).count == 1 }
                let firsts = payloads.compactMap(\.first)
                return (queued, client.writeBufferSize == 0, intact && firsts == Array(0..<20), payloads.count)
            }
            #expect(queued)
            #expect(drained)
            #expect(intact)
            #expect(received == 20)
        }
    }
}
