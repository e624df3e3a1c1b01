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

@Suite(.timeLimit(.minutes(10)))
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

    // When the server of a later loop cannot be made (here: no fd left for the duplicate of
    // the listening socket), the servers already made are closed and the socket file is gone
    // before the error is thrown. Runs in a child process: it lowers the fd limit.
    @Test func unixGroupClosesEarlierServersWhenALaterOneFails() async {
        await #expect(processExitsWith: .success) {
            let path = "/tmp/asyncio-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
            let group: EventLoopGroup
            do {
                group = try EventLoopGroup(loops: 3, name: "grp-fail")
            } catch {
                exit(2)
            }
            defer { group.shutdown() }
            // Leave exactly two free fds: the first loop's listening socket and the second
            // loop's duplicate of it. The third loop's duplicate then fails with EMFILE.
            var saved = rlimit()
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved)
            let base = dup(0)
            guard base >= 0 else { exit(2) }
            var limit = saved
            limit.rlim_cur = rlim_t(base + 64)
            guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { exit(2) }
            var fillers: [Int32] = []
            while true {
                let fd = dup(base)
                if fd < 0 { break }
                fillers.append(fd)
            }
            guard fillers.count >= 2 else { exit(2) }
            close(fillers.removeLast())
            close(fillers.removeLast())
            // Sockets only: the test runtime in this process may open fds of its own
            // meanwhile (Dispatch's epoll, eventfd and timerfd on first use of a timer), which
            // can take the two free ones.
            func openSockets() -> Int { openFDs(["socket:"]).count }
            let socketsBefore = openSockets()
            var failed = false
            do {
                let servers = try await group.createUnixServer(path: path) { Deaf() }
                await servers.close()
            } catch {
                failed = true
            }
            // The listeners made before the failure were closed.
            let fdsFreed = openSockets() == socketsBefore
            for fd in fillers { close(fd) }
            close(base)
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved)
            let fileRemoved = access(path, F_OK) != 0
            unlink(path)
            guard failed else { exit(3) }
            guard fileRemoved else { exit(4) }
            guard fdsFreed else { exit(5) }
            exit(0)
        }
    }
}
