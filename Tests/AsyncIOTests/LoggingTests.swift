//===----------------------------------------------------------------------===//
// swift-asyncio — injectable loggers: loop, group, server and connection metadata.
//===----------------------------------------------------------------------===//

import Logging
import Synchronization
import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// A swift-log handler that keeps every record in memory (level, message, and the handler's
/// metadata merged with the call's), shared by every copy of the handler.
struct MemoryLogHandler: LogHandler {
    struct Record: Sendable {
        let level: Logger.Level
        let message: String
        let metadata: [String: String]
    }

    final class Store: Sendable {
        private let records = Mutex<[Record]>([])
        func append(_ record: Record) { records.withLock { $0.append(record) } }
        var all: [Record] { records.withLock { $0 } }
    }

    let store: Store
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { _, call in call }
        store.append(Record(
            level: event.level, message: "\(event.message)", metadata: merged.mapValues { "\($0)" }))
    }

    /// A logger labelled `label` with `metadata` whose records go to `store`.
    static func logger(_ label: String, _ store: Store, metadata: Logger.Metadata = [:]) -> Logger {
        var logger = Logger(label: label) { _ in MemoryLogHandler(store: store) }
        for (key, value) in metadata { logger[metadataKey: key] = value }
        return logger
    }
}

/// A protocol whose `dataReceived` throws: the loop reports the error for its connection.
private final class FailingProtocol: StreamProtocol {
    func connectionMade(_ transport: any StreamTransport) {}
    func dataReceived(_ bytes: UnsafeRawBufferPointer) throws { throw TestError(id: 7) }
}

/// `made` completes with its transport's logger when the connection is made.
private final class Holder: StreamProtocol {
    let made: Future<Logger>
    init(loop: EventLoop) { made = Future(loop: loop) }
    func connectionMade(_ transport: any StreamTransport) { made.complete(.success(transport.logger)) }
    func dataReceived(_ bytes: UnsafeRawBufferPointer) {}
}

@Suite(.timeLimit(.minutes(10)))
struct LoggingTests {
    // A Python client makes a server-side protocol throw: the loop's error line is logged
    // through the connection's logger: the server's logger as given (its metadata, not the
    // loop's), the peer's exact address (the port Python connected from) and a connection number.
    @Test func connectionErrorIsLoggedWithServerAndConnectionMetadata() throws {
        let store = MemoryLogHandler.Store()
        let serverLogger = MemoryLogHandler.logger("test-server", store, metadata: ["service": "echo-api"])
        let result = try withLoop { loop in
            try loop.runUntilComplete { () async throws -> ProcessResult in
                let server = try await loop.createServer(host: "127.0.0.1", port: 0, logger: serverLogger) {
                    FailingProtocol()
                }
                defer { server.close() }
                #expect(server.logger.label == "test-server")
                // Connects, prints its own port, sends a request and reads until the server
                // drops the connection.
                return try await loop.runProcess("python3", ["-c", """
                    import socket, sys
                    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
                    print(s.getsockname()[1], flush=True)
                    s.sendall(b"GET /\\n")
                    try:
                        while s.recv(100): pass
                    except ConnectionResetError:
                        pass
                    """, "\(server.addresses[0].port ?? 0)"])
            }
        }
        #expect(result.returnCode == 0, "\(String(decoding: result.stderr, as: UTF8.self))")
        let clientPort = String(decoding: result.stdout, as: UTF8.self).trimmingSuffixNewline()
        let errors = store.all.filter { $0.level == .error }
        try #require(errors.count == 1, "\(store.all)")
        let record = errors[0]
        #expect(record.message == "error in protocol callback dataReceived; the transport is aborted")
        #expect(record.metadata["service"] == "echo-api")
        #expect(record.metadata.keys.sorted() == ["connection", "error", "peer", "service", "source"])
        #expect(record.metadata["peer"] == "127.0.0.1:\(clientPort)")
        #expect(record.metadata["error"] == "\(TestError(id: 7))")
        #expect(UInt64(record.metadata["connection"] ?? "") != nil, "\(record.metadata)")
    }

    // Both ends of a real connection: the client's logger (given to createConnection) names
    // the server as its peer, the server's connection logger names the client's address, and
    // the two connections have different numbers. Nothing was logged while all went well.
    @Test func connectionLoggersCarryPeerAndNumber() throws {
        let store = MemoryLogHandler.Store()
        let clientLogger = MemoryLogHandler.logger("test-client", store, metadata: ["side": "client"])
        let (clientSide, serverSide, clientAddress, serverAddress) = try withLoop(
            logger: MemoryLogHandler.logger("test-loop", store)
        ) { loop in
            try loop.runUntilComplete { () async throws -> (Logger, Logger, SocketAddress?, SocketAddress?) in
                let accepted = Holder(loop: loop)
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) { accepted }
                defer { server.close() }
                let (transport, _) = try await loop.createConnection(
                    host: "127.0.0.1", port: server.addresses[0].port ?? 0, logger: clientLogger) { Holder(loop: loop) }
                defer { transport.close() }
                let serverSide = try await waitForEvent(accepted.made, "the server's connectionMade")
                return (transport.logger, serverSide, transport.localAddress, server.addresses.first)
            }
        }
        #expect(clientSide.label == "test-client")
        #expect(clientSide[metadataKey: "side"] == "client")
        #expect(clientSide[metadataKey: "peer"] == "\(try #require(serverAddress))")
        #expect(serverSide.label == "test-loop")
        #expect(serverSide[metadataKey: "loop"] == "test")
        #expect(serverSide[metadataKey: "peer"] == "\(try #require(clientAddress))")
        let numbers = [clientSide[metadataKey: "connection"], serverSide[metadataKey: "connection"]]
        #expect(numbers[0] != nil && numbers[1] != nil && numbers[0] != numbers[1], "\(numbers)")
        #expect(store.all.isEmpty, "\(store.all)")
    }

    // The calls that take a socket, a pipe or a process made elsewhere take a logger too: an
    // adopted server and connection, a pipe transport, a subprocess (with `pid`) and its pipes
    // (with `pid` and `fd`) log through what they were given, not the loop's logger.
    @Test func adoptedSocketsPipesAndProcessesTakeALogger() throws {
        let store = MemoryLogHandler.Store()
        let loggers = try withLoop(logger: MemoryLogHandler.logger("test-loop", store)) { loop in
            try loop.runUntilComplete { () async throws -> [Logger] in
                var pair: [Int32] = [-1, -1]
                guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
                    throw TransportError(errno: errno, syscall: "socketpair")
                }
                defer { close(pair[1]) }
                let (accepted, _) = try await loop.connectAcceptedSocket(
                    sock: pair[0], logger: MemoryLogHandler.logger("accepted", store, metadata: ["side": "server"])
                ) { Holder(loop: loop) }
                defer { accepted.close() }

                let listener = try rawSocket(AF_INET, Int32(SOCK_STREAM.rawValue))
                _ = try bindLoopback(listener)
                let server = try await loop.createServer(sock: listener, logger: MemoryLogHandler.logger("adopted-server", store)) {
                    Holder(loop: loop)
                }
                defer { server.close() }

                var ends: [Int32] = [-1, -1]
                guard pipe(&ends) == 0 else { throw TransportError(errno: errno, syscall: "pipe") }
                defer { close(ends[1]) }
                let (pipe, _) = try await loop.connectReadPipe(ends[0], logger: MemoryLogHandler.logger("pipe", store)) {
                    Holder(loop: loop)
                }
                defer { pipe.close() }

                final class Quiet: SubprocessProtocol {}
                let (process, _) = try await loop.subprocessExec(
                    "true", stdin: .devNull, stdout: .pipe, stderr: .devNull,
                    logger: MemoryLogHandler.logger("child", store)) { Quiet() }
                let stdout = try #require(process.pipeTransport(1))
                _ = try await process.waitForExit()
                return [accepted.logger, server.logger, pipe.logger, process.logger, stdout.logger,
                        Logger(label: "pid \(process.pid)")]
            }
        }
        #expect(loggers[0].label == "accepted")
        #expect(loggers[0][metadataKey: "side"] == "server")
        #expect(loggers[0][metadataKey: "connection"] != nil)
        #expect(loggers[1].label == "adopted-server")
        #expect(loggers[2].label == "pipe")
        #expect(loggers[2][metadataKey: "connection"] != nil)
        let pid = String(loggers[5].label.dropFirst(4))
        #expect(loggers[3].label == "child")
        #expect(loggers[3][metadataKey: "pid"] == .string(pid))
        #expect(loggers[4].label == "child")
        #expect(loggers[4][metadataKey: "pid"] == .string(pid))
        #expect(loggers[4][metadataKey: "fd"] == "1")
        #expect(store.all.isEmpty, "\(store.all)")
    }

    // Datagram endpoints take a logger too (UDP, Unix, adopted): a protocol callback that
    // throws is reported through it, with the endpoint's `local` address as metadata.
    @Test func datagramEndpointsTakeALogger() throws {
        final class Throwing: DatagramProtocol {
            func connectionMade(_ transport: any DatagramTransport) {}
            func datagramReceived(_ bytes: UnsafeRawBufferPointer, from address: SocketAddress) throws {
                throw TestError(id: 9)
            }
        }
        final class Quiet: DatagramProtocol {
            func connectionMade(_ transport: any DatagramTransport) {}
            func datagramReceived(_ bytes: UnsafeRawBufferPointer, from address: SocketAddress) {}
        }
        let store = MemoryLogHandler.Store()
        let (labels, local) = try withLoop(logger: MemoryLogHandler.logger("test-loop", store)) { loop in
            try loop.runUntilComplete { () async throws -> ([String], String) in
                let (udp, _) = try await loop.createDatagramEndpoint(
                    localHost: "127.0.0.1", localPort: 0, logger: MemoryLogHandler.logger("udp", store)) { Throwing() }
                let local = "\(try #require(udp.localAddress))"
                let (unix, _) = try await loop.createUnixDatagramEndpoint(
                    localPath: "\0asyncio-logging-\(getpid())", logger: MemoryLogHandler.logger("unix", store)) { Quiet() }
                defer { unix.close() }
                let fd = try rawSocket(AF_INET, Int32(SOCK_DGRAM.rawValue))
                let (adopted, _) = try await loop.createDatagramEndpoint(
                    sock: fd, logger: MemoryLogHandler.logger("adopted", store)) { Quiet() }
                defer { adopted.close() }
                adopted.sendTo(Array("boom".utf8), try SocketAddress(ipAddress: "127.0.0.1", port: udp.localAddress?.port ?? 0))
                try await waitUntil("the throwing endpoint closed") { udp.isClosing }
                return ([udp.logger.label, unix.logger.label, adopted.logger.label], local)
            }
        }
        #expect(labels == ["udp", "unix", "adopted"])
        let errors = store.all.filter { $0.level == .error }
        try #require(errors.count == 1, "\(store.all)")
        #expect(errors[0].message == "error in datagram protocol callback datagramReceived; the endpoint is aborted")
        #expect(errors[0].metadata["local"] == local)
        #expect(errors[0].metadata["error"] == "\(TestError(id: 9))")
    }

    // A group's logger reaches each of its loops, with the loop's name as metadata.
    @Test func groupLoopsInheritTheGroupLogger() throws {
        let store = MemoryLogHandler.Store()
        let group = try EventLoopGroup(loops: 2, name: "logged", logger: MemoryLogHandler.logger("group", store))
        defer { group.shutdown() }
        #expect(group.logger.label == "group")
        #expect(group.loops.map(\.logger.label) == ["group", "group"])
        #expect(group.loops.map { $0.logger[metadataKey: "loop"] } == ["logged-0", "logged-1"])
        group.loops[1].logger.info("hello")
        #expect(store.all.map(\.message) == ["hello"])
        #expect(store.all.map { $0.metadata["loop"] } == ["logged-1"])
    }

    // Without a logger the loop's is `swift-asyncio` with its name as metadata.
    @Test func defaultLoopLogger() throws {
        let loop = try EventLoop(name: "plain")
        defer { try? loop.close() }
        #expect(loop.logger.label == "swift-asyncio")
        #expect(loop.logger[metadataKey: "loop"] == "plain")
    }

    // A future that failed and was released without anyone reading its error logs it once,
    // as asyncio's "exception was never retrieved"; one whose error was read, one that
    // succeeded and one that was cancelled log nothing.
    @Test func aFailedFutureNobodyReadLogsItsError() throws {
        let store = MemoryLogHandler.Store()
        let loop = try EventLoop(name: "futures", logger: MemoryLogHandler.logger("futures", store))
        defer { try? loop.close() }
        do {
            let unread = Future<Int>(loop: loop)
            try unread.setError(TestError(id: 41))
            let read = Future<Int>(loop: loop)
            try read.setError(TestError(id: 42))
            _ = read.error
            let succeeded = Future<Int>(loop: loop)
            try succeeded.setResult(1)
            let cancelled = Future<Int>(loop: loop)
            cancelled.cancel()
        }
        let errors = store.all.filter { $0.level == .error }
        #expect(errors.map(\.message) == ["Future<Int> error was never retrieved"])
        #expect(errors.first?.metadata["error"] == "\(TestError(id: 41))")
    }
}
