//===----------------------------------------------------------------------===//
// swift-asyncio — Stream transports, servers and connections, in process.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// Records every callback, in order; echoes if asked. Futures say when it connected, lost
/// the connection, or reached a state (see ``when(_:)``).
final class RecordingProtocol: StreamProtocol, @unchecked Sendable {
    var events: [String] = []
    var received: [UInt8] = []
    var lostError: (any Error)?
    var transport: (any StreamTransport)?
    var echo = false
    var keepOpenOnEOF = false
    var throwOnData = false
    let made: Future<Void>
    let lost: Future<Void>
    private let loop: EventLoop
    private var waiters: [(condition: (RecordingProtocol) -> Bool, future: Future<Void>)] = []

    init(loop: EventLoop) {
        self.loop = loop
        made = Future<Void>(loop: loop)
        lost = Future<Void>(loop: loop)
    }

    /// Resolved once `condition` holds after a callback (at once if it holds now).
    func when(_ condition: @escaping (RecordingProtocol) -> Bool) -> Future<Void> {
        let future = Future<Void>(loop: loop)
        if condition(self) {
            future.complete(.success(()))
        } else {
            waiters.append((condition, future))
        }
        return future
    }

    /// Resolved once at least `count` bytes arrived.
    func whenReceived(atLeast count: Int) -> Future<Void> { when { $0.received.count >= count } }

    /// Resolved once the callback named `event` ("pause", "resume", …) ran.
    func whenEvent(_ event: String) -> Future<Void> { when { $0.events.contains(event) } }

    private func checkWaiters() {
        guard !waiters.isEmpty else { return }
        waiters.removeAll { waiter in
            guard waiter.condition(self) else { return false }
            waiter.future.complete(.success(()))
            return true
        }
    }

    func connectionMade(_ transport: any StreamTransport) {
        events.append("made")
        self.transport = transport
        made.complete(.success(()))
        checkWaiters()
    }

    func dataReceived(_ bytes: UnsafeRawBufferPointer) throws {
        if events.last != "data" { events.append("data") }
        if throwOnData { throw TestError(id: 99) }
        received.append(contentsOf: bytes)
        if echo { transport?.write(bytes) }
        checkWaiters()
    }

    func eofReceived() -> Bool {
        events.append("eof")
        checkWaiters()
        return keepOpenOnEOF
    }

    func connectionLost(_ error: (any Error)?) {
        events.append("lost")
        lostError = error
        lost.complete(.success(()))
        checkWaiters()
    }

    func pauseWriting() {
        events.append("pause")
        checkWaiters()
    }

    func resumeWriting() {
        events.append("resume")
        checkWaiters()
    }
}

/// A server's protocols, in accept order.
final class AcceptedProtocols: @unchecked Sendable {
    private(set) var value: [RecordingProtocol] = []
    private let loop: EventLoop
    private var waiters: [(index: Int, future: Future<Void>)] = []

    init(loop: EventLoop) { self.loop = loop }

    func append(_ proto: RecordingProtocol) {
        value.append(proto)
        waiters.removeAll { waiter in
            guard waiter.index < value.count else { return false }
            waiter.future.complete(.success(()))
            return true
        }
    }

    /// The `index`th accepted connection's protocol, once its connectionMade ran.
    func connection(_ index: Int = 0, timeout: Duration = .seconds(10)) async throws -> RecordingProtocol {
        if index >= value.count {
            let future = Future<Void>(loop: loop)
            waiters.append((index, future))
            try await waitForEvent(future, "the server accepting connection #\(index)", timeout: timeout)
        }
        let proto = value[index]
        try await waitForEvent(proto.made, "connectionMade on the server's connection #\(index)", timeout: timeout)
        return proto
    }
}

/// Starts a server on 127.0.0.1 with an ephemeral port whose protocols are recorded.
func recordingServer(_ loop: EventLoop, echo: Bool = true) async throws -> (Server, AcceptedProtocols) {
    let accepted = AcceptedProtocols(loop: loop)
    let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
        let proto = RecordingProtocol(loop: loop)
        proto.echo = echo
        accepted.append(proto)
        return proto
    }
    return (server, accepted)
}

@Suite(.timeLimit(.minutes(10)))
struct TransportTests {
    // Bytes sent by a client come back byte-exact; callbacks follow the documented order.
    @Test func echoRoundTripAndCallbackOrder() throws {
        try withLoop { loop in
            let (clientEvents, serverEvents, received) = try loop.runUntilComplete {
                () async throws -> ([String], [String], [UInt8]) in
                let (server, accepted) = try await recordingServer(loop)
                let port = try #require(server.addresses.first?.port)
                let (transport, client) = try await loop.createConnection(host: "127.0.0.1", port: port) {
                    RecordingProtocol(loop: loop)
                }
                let message = Array((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
                transport.write(message)
                transport.writeEOF()
                client.keepOpenOnEOF = false
                try await client.lost.value   // server echoes, sees EOF, closes; client sees EOF
                let serverSide = try #require(accepted.value.first)
                try await serverSide.lost.value
                server.close()
                await server.waitClosed()
                #expect(client.received == message)
                return (client.events, serverSide.events, serverSide.received)
            }
            #expect(clientEvents == ["made", "data", "eof", "lost"])
            #expect(serverEvents == ["made", "data", "eof", "lost"])
            #expect(received.count == 100_000)
        }
    }

    // A peer that resets the connection gives connectionLost a connectionReset error.
    @Test func peerResetReportsConnectionReset() throws {
        try withLoop { loop in
            let error = try loop.runUntilComplete { () async throws -> TransportError? in
                let (server, accepted) = try await recordingServer(loop, echo: false)
                defer { server.close() }
                let port = try #require(server.addresses.first?.port)
                let (transport, _) = try await loop.createConnection(host: "127.0.0.1", port: port) {
                    RecordingProtocol(loop: loop)
                }
                transport.write(Array(repeating: 1, count: 1000))
                let serverSide = try await accepted.connection(0)
                try await waitForEvent(serverSide.whenReceived(atLeast: 1000), "the server reading the 1000 bytes")
                // SO_LINGER {on, 0}: close sends RST.
                var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                setsockopt(transport.fileDescriptor, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
                transport.abort()
                try await waitForEvent(serverSide.lost, "connectionLost on the server after the reset")
                return serverSide.lostError as? TransportError
            }
            #expect(error?.code == .connectionReset)
        }
    }

    // pauseWriting fires once over the high-water mark and resumeWriting once under the low one.
    @Test func writeFlowControlFiresOncePerCrossing() throws {
        try withLoop { loop in
            let events = try loop.runUntilComplete { () async throws -> [String] in
                let (server, accepted) = try await recordingServer(loop, echo: false)
                defer { server.close() }
                let port = try #require(server.addresses.first?.port)
                let (clientTransport, client) = try await loop.createConnection(host: "127.0.0.1", port: port) {
                    RecordingProtocol(loop: loop)
                }
                clientTransport.pauseReading()   // the client does not read for now
                let serverSide = try await accepted.connection(0)
                let transport = try #require(serverSide.transport)
                Socket.setOption(transport.fileDescriptor, SOL_SOCKET, SO_SNDBUF, 4096)
                try transport.setWriteBufferLimits(high: 64 * 1024, low: 16 * 1024)
                let chunk = [UInt8](repeating: 7, count: 16 * 1024)
                var written = 0
                while written < 8 * 1024 * 1024 && !serverSide.events.contains("pause") {
                    transport.write(chunk)
                    written += chunk.count
                }
                for _ in 0..<8 { transport.write(chunk) }   // still over: no second pause
                #expect(transport.writeBufferSize > 64 * 1024)
                clientTransport.resumeReading()
                try await waitForEvent(serverSide.whenEvent("resume"), "resumeWriting once the client reads again")
                #expect(client.received.count > 0)
                return serverSide.events
            }
            #expect(events == ["made", "pause", "resume"])
        }
    }

    // An error thrown by dataReceived goes to the exception handler and aborts that
    // connection only; another connection keeps echoing.
    @Test func protocolErrorAbortsOnlyItsTransport() throws {
        try withLoop { loop in
            let reported = Box<[ExceptionContext]>([])
            loop.setExceptionHandler { _, context in reported.value.append(context) }
            let (badError, goodEcho) = try loop.runUntilComplete { () async throws -> ((any Error)?, [UInt8]) in
                let accepted = AcceptedProtocols(loop: loop)
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let proto = RecordingProtocol(loop: loop)
                    proto.echo = true
                    proto.throwOnData = accepted.value.isEmpty   // the first connection only
                    accepted.append(proto)
                    return proto
                }
                defer { server.close() }
                let port = try #require(server.addresses.first?.port)
                let (bad, badClient) = try await loop.createConnection(host: "127.0.0.1", port: port) {
                    RecordingProtocol(loop: loop)
                }
                _ = try await accepted.connection(0)   // the bad one is the first accepted
                let (good, goodClient) = try await loop.createConnection(host: "127.0.0.1", port: port) {
                    RecordingProtocol(loop: loop)
                }
                bad.write("boom")
                try await waitForEvent(badClient.lost, "connectionLost on the client whose server side failed")
                good.write("still here")
                try await waitForEvent(goodClient.whenReceived(atLeast: 10), "the echo on the other connection")
                good.close()
                return (badClient.lostError, goodClient.received)
            }
            #expect(badError == nil)   // the client saw a plain close from the server
            #expect(goodEcho == Array("still here".utf8))
            #expect(reported.value.count == 1)
            #expect(reported.value.first?.error as? TestError == TestError(id: 99))
        }
    }

    // Writing queued data to a peer that went away reports the reset to connectionLost. Run in
    // a child process with SIGPIPE's default action (kill), which the test runner ignores, so a
    // send without MSG_NOSIGNAL that hit EPIPE would kill it.
    @Test func writingToAPeerThatWentAwayIsReportedAsAnError() async {
        await #expect(processExitsWith: .success) {
            signal(SIGPIPE, SIG_DFL)
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGPIPE)
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
            do {
                let loop = try EventLoop()
                let code = try loop.runUntilComplete { () async throws -> TransportError.Code? in
                    let (server, accepted) = try await recordingServer(loop, echo: false)
                    defer { server.close() }
                    let port = server.addresses.first?.port ?? 0
                    let (client, clientSide) = try await loop.createConnection(host: "127.0.0.1", port: port) {
                        RecordingProtocol(loop: loop)
                    }
                    client.pauseReading()
                    let serverSide = try await accepted.connection(0)
                    guard let transport = serverSide.transport else { return nil }
                    let chunk = [UInt8](repeating: 1, count: 256 * 1024)
                    for _ in 0..<16 { transport.write(chunk) }   // fills the kernel buffers, queues the rest
                    client.abort()   // unread data: the kernel answers with RST
                    // The transport closes its socket right after connectionLost: the RST is out.
                    try await waitForEvent(clientSide.lost, "the client's connectionLost after abort")
                    for _ in 0..<4 { transport.write(chunk) }
                    try await waitForEvent(serverSide.lost, "connectionLost on the server after the reset")
                    return (serverSide.lostError as? TransportError)?.code
                }
                exit(code == .connectionReset || code == .brokenPipe ? 0 : 1)
            } catch {
                exit(2)
            }
        }
    }

    // Connecting to a port nobody listens on fails with connectionRefused.
    @Test func connectionRefusedIsReported() throws {
        try withLoop { loop in
            let code = try loop.runUntilComplete { () async throws -> TransportError.Code? in
                // Bind a port and close it: nobody listens there now.
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) { RecordingProtocol(loop: loop) }
                let port = try #require(server.addresses.first?.port)
                server.close()
                do {
                    _ = try await loop.createConnection(host: "127.0.0.1", port: port) { RecordingProtocol(loop: loop) }
                    return nil
                } catch let error as TransportError {
                    return error.code
                }
            }
            #expect(code == .connectionRefused)
        }
    }

    // A name that does not resolve fails with ResolutionError naming the host.
    @Test func unresolvableHostIsReported() throws {
        try withLoop { loop in
            let error = try loop.runUntilComplete { () async throws -> ResolutionError? in
                do {
                    _ = try await loop.createConnection(host: "no-such-host.invalid", port: 80) { RecordingProtocol(loop: loop) }
                    return nil
                } catch let error as ResolutionError {
                    return error
                }
            }
            #expect(error?.host == "no-such-host.invalid")
            #expect(error?.description.contains("no-such-host.invalid") == true)
        }
    }

    // Binding an address in use fails with addressInUse, and the message names the address.
    @Test func addressInUseNamesTheAddress() throws {
        try withLoop { loop in
            let error = try loop.runUntilComplete { () async throws -> TransportError? in
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) { RecordingProtocol(loop: loop) }
                defer { server.close() }
                let port = try #require(server.addresses.first?.port)
                do {
                    _ = try await loop.createServer(host: "127.0.0.1", port: port) { RecordingProtocol(loop: loop) }
                    return nil
                } catch let error as TransportError {
                    #expect(error.message.contains("127.0.0.1:\(port)"))
                    return error
                }
            }
            #expect(error?.code == .addressInUse)
        }
    }

    // Happy eyeballs: the first address never answers (a full accept queue drops SYNs);
    // the second attempt starts after the delay and wins; the loser is cancelled.
    @Test func happyEyeballsSkipsAnUnresponsiveAddress() throws {
        try withLoop { loop in
            let connected = try loop.runUntilComplete { () async throws -> Bool in
                // A listener that never accepts, with its queue filled.
                let blackhole = try Socket.makeStream(family: AF_INET)
                defer { close(blackhole) }
                let any = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
                try Socket.bind(blackhole, any)
                try Socket.listen(blackhole, backlog: 0, address: any)
                let blackholeAddress = try #require(Socket.localAddress(blackhole))
                var fillers: [Int32] = []
                defer { for fd in fillers { close(fd) } }
                for _ in 0..<4 {
                    let fd = try Socket.makeStream(family: AF_INET)
                    fillers.append(fd)
                    _ = try? Socket.connect(fd, blackholeAddress)
                }
                let (server, _) = try await recordingServer(loop)
                defer { server.close() }
                let good = try #require(server.addresses.first)
                let fd = try await loop.connectHappyEyeballs([blackholeAddress, good], delay: .milliseconds(50))
                defer { close(fd) }
                return Socket.peerAddress(fd) == good
            }
            #expect(connected)
        }
    }

    // A Unix socket server echoes; its socket file goes away when it closes.
    @Test func unixServerEchoesAndRemovesItsFile() throws {
        try withLoop { loop in
            let path = "/tmp/asyncio-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
            let echoed = try loop.runUntilComplete { () async throws -> [UInt8] in
                let server = try await loop.createUnixServer(path: path) {
                    let proto = RecordingProtocol(loop: loop)
                    proto.echo = true
                    return proto
                }
                let (reader, writer) = try await loop.openUnixConnection(path: path)
                writer.write("over unix")
                let echo = try await reader.readExactly(9)
                writer.close()
                server.close()
                await server.waitClosed()
                return echo
            }
            #expect(echoed == Array("over unix".utf8))
            #expect(access(path, F_OK) != 0)
        }
    }

    // A BufferedProtocol receives bytes straight into its own buffer.
    @Test func bufferedProtocolReadsIntoItsBuffer() throws {
        final class Collector: BufferedProtocol, @unchecked Sendable {
            let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: 7, alignment: 1)
            var collected: [UInt8] = []
            let done: Future<Void>
            init(loop: EventLoop) { done = Future(loop: loop) }
            deinit { storage.deallocate() }
            func connectionMade(_ transport: any StreamTransport) {}
            func getBuffer(sizeHint: Int) -> UnsafeMutableRawBufferPointer { storage }
            func bufferUpdated(_ count: Int) { collected.append(contentsOf: storage[0..<count]) }
            func connectionLost(_ error: (any Error)?) { done.complete(.success(())) }
        }
        try withLoop { loop in
            let collected = try loop.runUntilComplete { () async throws -> [UInt8] in
                let collector = Collector(loop: loop)
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) { collector }
                defer { server.close() }
                let port = try #require(server.addresses.first?.port)
                let (transport, _) = try await loop.createConnection(host: "127.0.0.1", port: port) {
                    RecordingProtocol(loop: loop)
                }
                transport.write(Array(0..<100))
                transport.close()
                try await waitFor(collector.done, timeout: .seconds(10))
                return collector.collected
            }
            #expect(collected == Array(0..<100))
        }
    }

    // Under a low fd limit the server keeps serving its connections through EMFILE and
    // accepts again once fds are free.
    @Test func acceptSurvivesEMFILE() async {
        await #expect(processExitsWith: .success) {
            do {
                let loop = try EventLoop()
                let ok = try loop.runUntilComplete { () async throws -> Bool in
                    let (server, accepted) = try await recordingServer(loop)
                    let port = server.addresses.first?.port ?? 0
                    // Leave room for a handful of fds only.
                    var limit = rlimit()
                    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
                    var highest: Int32 = 0
                    let probe = dup(0)
                    highest = probe
                    close(probe)
                    limit.rlim_cur = rlim_t(highest + 12)
                    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
                    var clients: [(any StreamTransport, RecordingProtocol)] = []
                    // Each client costs two fds (ours and the server's) until EMFILE.
                    while clients.count < 20 {
                        do {
                            clients.append(try await loop.createConnection(host: "127.0.0.1", port: port) {
                                RecordingProtocol(loop: loop)
                            })
                        } catch {
                            break
                        }
                    }
                    // Deliberately lets time pass: the server runs into EMFILE and backs off
                    // (nothing announces that), and must keep serving meanwhile.
                    try await sleep(for: .milliseconds(100))
                    guard let first = clients.first else { return false }
                    first.0.write("alive")
                    try await waitForEvent(first.1.whenReceived(atLeast: 5), "the echo on the first connection")
                    guard first.1.received == Array("alive".utf8) else { return false }
                    // Free fds: the server closes its side of each aborted connection, then
                    // accepts again after its retry delay.
                    let serverSides = accepted.value.dropFirst()   // accepted in connect order
                    for client in clients.dropFirst() { client.0.abort() }
                    for side in serverSides {
                        try await waitForEvent(side.lost, "the server closing its side of an aborted connection")
                    }
                    limit.rlim_cur = rlim_t(highest + 64)
                    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
                    let (late, lateClient) = try await loop.createConnection(host: "127.0.0.1", port: port) {
                        RecordingProtocol(loop: loop)
                    }
                    late.write("again")
                    try await waitForEvent(lateClient.whenReceived(atLeast: 5), "the echo on a connection made after EMFILE")
                    return lateClient.received == Array("again".utf8)
                }
                exit(ok ? 0 : 1)
            } catch {
                exit(2)
            }
        }
    }
}

@Suite(.timeLimit(.minutes(10)))
struct TransportLeakTests {
    // Many connect/echo/close cycles leave the fd count and RSS flat (run in a child process,
    // where nothing else opens fds).
    // Not under a sanitizer: it measures RSS, which ASan's quarantine (freed memory held back)
    // and both sanitizers' shadow memory inflate, and 100,000 cycles take minutes there.
    // LeakSanitizer checks the memory part under ASan; the normal run checks both.
    @Test(.disabled(if: Sanitizer.any, "measures RSS, which sanitizers inflate"))
    func connectEchoCloseCyclesLeakNothing() async {
        await #expect(processExitsWith: .success) {
            func residentKiB() -> Int {
                guard let file = fopen("/proc/self/statm", "r") else { return 0 }
                defer { fclose(file) }
                var size = 0
                var resident = 0
                _ = withUnsafeMutablePointer(to: &size) { sizePointer in
                    withUnsafeMutablePointer(to: &resident) { residentPointer in
                        withVaList([sizePointer, residentPointer]) { vfscanf(file, "%ld %ld", $0) }
                    }
                }
                return resident * Int(sysconf(Int32(_SC_PAGESIZE))) / 1024
            }
            // Sockets only: the test harness may open and close files and pipes of its own
            // in this process at any time; it opens no sockets.
            func fdCount() -> Int { openFDs(["socket:"]).count }
            do {
                let loop = try EventLoop()
                let code = try loop.runUntilComplete { () async throws -> Int32 in
                    let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                        let proto = RecordingProtocol(loop: loop)
                        proto.echo = true
                        return proto
                    }
                    let port = server.addresses.first?.port ?? 0
                    func cycle() async throws {
                        let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: port)
                        writer.write("ping")
                        guard try await reader.readExactly(4) == Array("ping".utf8) else { exit(5) }
                        writer.close()
                        try await writer.waitClosed()
                    }
                    for _ in 0..<2_000 { try await cycle() }   // warm up: caches, allocator
                    // The server closes its side a little after the client's (no callback says
                    // when): poll, bounded.
                    do {
                        try await waitUntil("the server closing its warm-up connections") { server.connectionCount == 0 }
                    } catch { return 6 }
                    let fdsBefore = fdCount()
                    let rssBefore = residentKiB()
                    for _ in 0..<100_000 { try await cycle() }
                    do {
                        try await waitUntil("the server closing its connections") { server.connectionCount == 0 }
                    } catch { return 7 }
                    let fdsAfter = fdCount()
                    let rssAfter = residentKiB()
                    server.close()
                    if fdsAfter != fdsBefore { return 3 }
                    if rssAfter - rssBefore > 4 * 1024 { return 4 }   // 4 MiB over 100,000 connections
                    return 0
                }
                exit(code)
            } catch {
                exit(2)
            }
        }
    }
}
