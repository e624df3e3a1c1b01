//===----------------------------------------------------------------------===//
// swift-asyncio — Server and ServerGroup lifecycles: serveForever's cancellation, partial
// failures of a group.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// Writes `count` bytes as soon as it is connected (more than a socket buffer holds, so a peer
/// that does not read keeps the connection's write queue non-empty).
private final class Flooder: StreamProtocol, @unchecked Sendable {
    let count: Int
    var queuedAfterWrite = 0
    init(count: Int) { self.count = count }
    func connectionMade(_ transport: any StreamTransport) {
        transport.write([UInt8](repeating: 0x5A, count: count))
        queuedAfterWrite = transport.writeBufferSize
    }
    func dataReceived(_ bytes: UnsafeRawBufferPointer) {}
    func connectionLost(_ error: (any Error)?) {}
}

/// A client that never reads.
private final class Deaf: StreamProtocol, @unchecked Sendable {
    func connectionMade(_ transport: any StreamTransport) { transport.pauseReading() }
    func dataReceived(_ bytes: UnsafeRawBufferPointer) {}
    func connectionLost(_ error: (any Error)?) {}
}

@Suite(.timeLimit(.minutes(2)))
struct ServerLifecycleTests {
    // Cancelling serveForever closes the server and its connections, and returns only once the
    // connections are gone (a connection flushing to a peer that does not read keeps it
    // waiting); then it rethrows the cancellation.
    @Test func serveForeverWaitsForConnectionsAfterCancel() throws {
        try withLoop { loop in
            let path = "/tmp/asyncio-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
            let outcome = try loop.runUntilComplete { () async throws -> (Bool, Int?, Bool, Bool) in
                let flooder = Flooder(count: 8 << 20)
                let server = try await loop.createUnixServer(path: path, startServing: false) { flooder }
                let connectionsAtEnd = Box<Int?>(nil)
                let serving = loop.createTask { () async throws -> Void in
                    do {
                        try await server.serveForever()
                    } catch {
                        connectionsAtEnd.value = server.connectionCount
                        throw error
                    }
                }
                let (client, _) = try await loop.createUnixConnection(path: path) { Deaf() }
                var waited = 0
                while (server.connectionCount == 0 || flooder.queuedAfterWrite == 0) && waited < 1000 {
                    try await sleep(for: .milliseconds(10))
                    waited += 1
                }
                let flooded = flooder.queuedAfterWrite > 0
                serving.cancel()
                // Give serveForever every chance to return early (it must not).
                try await sleep(for: .milliseconds(300))
                let doneWhileConnected = serving.isDone
                client.abort()
                var cancelled = false
                do {
                    try await serving.value
                } catch is CancellationError {
                    cancelled = true
                }
                return (flooded, connectionsAtEnd.value, doneWhileConnected, cancelled)
            }
            let (flooded, connectionsAtEnd, doneWhileConnected, cancelled) = outcome
            #expect(flooded)
            #expect(!doneWhileConnected)
            #expect(connectionsAtEnd == 0)
            #expect(cancelled)
            #expect(access(path, F_OK) != 0)
        }
    }
}
