//===----------------------------------------------------------------------===//
// swift-asyncio — StreamWriter, openConnection, startServer.
//===----------------------------------------------------------------------===//

public import Logging

/// The writing half of a connection for async/await code (asyncio's `StreamWriter`).
///
/// `write` never blocks and never fails: bytes go to the transport's buffer. Call ``drain()``
/// after writing to wait while that buffer is over its high-water mark (flow control).
/// - Important: Loop-bound: use it from tasks running on its loop.
public final class StreamWriter: @unchecked Sendable {
    /// The transport written to (the TLS transport after ``startTLS(_:serverHostname:session:)``).
    public private(set) var transport: any StreamTransport
    private let proto: StreamReaderProtocol

    init(transport: any StreamTransport, protocol: StreamReaderProtocol) {
        self.transport = transport
        self.proto = `protocol`
    }

    /// Writes `bytes` (buffered if the socket cannot take them now).
    public func write(_ bytes: [UInt8]) {
        transport.write(bytes)
    }

    /// Writes the UTF-8 bytes of `string`.
    public func write(_ string: String) {
        transport.write(string)
    }

    /// Writes a borrowed buffer.
    public func write(_ bytes: UnsafeRawBufferPointer) {
        transport.write(bytes)
    }

    /// Writes the strings one after the other, adding nothing between them (asyncio's
    /// `writelines`: end each string with `"\n"` yourself for lines).
    public func writeLines(_ strings: [String]) {
        transport.writeLines(strings)
    }

    /// Waits while the write buffer is over its high-water mark (asyncio's `drain`). Any
    /// number of tasks may drain at once.
    /// - Throws: the connection's error (or ``TransportError`` `.closed`) once it is lost.
    @inlinable
    nonisolated(nonsending) public func drain() async throws {
        // Inlined into the caller: a drain with nothing to wait for costs no async frame.
        if drainIsFree { return }
        try await drainSlowly()
    }

    /// Nothing to wait for: under the high-water mark and not lost (for the inlined ``drain()``).
    @usableFromInline var drainIsFree: Bool { proto.drainIsFree }

    @usableFromInline nonisolated(nonsending) func drainSlowly() async throws {
        try await proto.drain()
    }

    /// Sends `count` bytes of the file `file` from `offset` (all of it to its end if `nil`)
    /// after the buffered bytes, and returns the bytes sent: `sendfile(2)` on a plain socket,
    /// chunks read in the executor on TLS. Write nothing else until it returns.
    /// See ``EventLoop/sendfile(_:file:offset:count:fallback:)``.
    /// - Parameters:
    ///   - file: An open file descriptor; still the caller's to close.
    ///   - offset: Where in the file to start.
    ///   - count: Bytes to send; `nil` sends up to the end of the file.
    ///   - fallback: Whether to read and write where `sendfile(2)` cannot be used.
    /// - Returns: The bytes sent.
    /// - Important: Call from a task running on the connection's loop.
    public func sendfile(file: Int32, offset: Int = 0, count: Int? = nil, fallback: Bool = true) async throws -> Int {
        try await transport.loop.sendfile(transport, file: file, offset: offset, count: count, fallback: fallback)
    }

    /// Sends EOF after the buffered bytes (half-close).
    public func writeEOF() {
        transport.writeEOF()
    }

    /// Whether ``writeEOF()`` is supported.
    public var canWriteEOF: Bool { transport.canWriteEOF }

    /// Closes the connection after flushing the buffer.
    public func close() {
        transport.close()
    }

    /// Whether the connection is closing or closed.
    public var isClosing: Bool { transport.isClosing }

    /// Waits until the connection is closed (asyncio's `wait_closed`).
    /// - Throws: the error the connection was lost with, if any.
    public func waitClosed() async throws {
        try await proto.waitClosed()
    }

    /// Upgrades the connection to TLS (asyncio's `StreamWriter.start_tls`): bytes the reader
    /// holds and nobody read yet (the start of the peer's handshake) are handed to TLS, not
    /// lost. Returns once the handshake succeeded; reads and writes are then encrypted.
    /// - Throws: as ``EventLoop/startTLS(_:context:serverHostname:session:alreadyReceived:)``.
    /// - Important: Call from a task running on the connection's loop.
    public func startTLS(_ context: TLSContext, serverHostname: String? = nil, session: TLSSession? = nil) async throws {
        let plain = transport
        // Refused before the reader's bytes are taken: a lost connection keeps them readable.
        guard !plain.isClosing else { throw TransportError.closedTransport }
        plain.pauseReading()
        let pending = proto.reader.takeBuffered()
        // Until the TLS transport is in place the reader must not pause the plain one (its
        // later resume would go to the TLS transport and leave reading stopped).
        proto.reader.transport = nil
        let secure: any StreamTransport
        do {
            secure = try await plain.loop.startTLS(
                plain, context: context, serverHostname: serverHostname, session: session, alreadyReceived: pending)
        } catch {
            // Refused before TLS took the connection over (a configuration error, a closing
            // transport): it stays plain and readable as it was, with its unread bytes.
            if plain.streamProtocol === proto {
                proto.reader.transport = plain
                plain.resumeReading()
                proto.reader.feed(pending)   // pauses reading again if over the limit
            }
            throw error
        }
        transport = secure
        proto.switchTransport(secure)
    }

    /// What TLS negotiated, `nil` for a plain connection.
    public var tlsInfo: TLSConnectionInfo? { transport.tlsInfo }

    /// The peer's address.
    public var peerAddress: SocketAddress? { transport.peerAddress }

    /// The local address.
    public var localAddress: SocketAddress? { transport.localAddress }
}

extension EventLoop {
    /// Connects over TCP (TLS with `tls`) and returns a reader and a writer (asyncio's
    /// `open_connection`). `logger`: as in `createConnection`.
    /// - Throws: as ``createConnection(host:port:tls:serverHostname:session:happyEyeballsDelay:logger:_:)``.
    /// - Important: Call from a task running on this loop.
    public func openConnection(
        host: String, port: Int, tls: TLSContext? = nil, serverHostname: String? = nil,
        session: TLSSession? = nil, limit: Int = 64 * 1024, logger: Logger? = nil
    ) async throws -> (StreamReader, StreamWriter) {
        let reader = StreamReader(loop: self, limit: limit)
        let (transport, proto) = try await createConnection(
            host: host, port: port, tls: tls, serverHostname: serverHostname, session: session, logger: logger
        ) {
            StreamReaderProtocol(reader: reader)
        }
        return (reader, StreamWriter(transport: transport, protocol: proto))
    }

    /// Connects to a Unix socket and returns a reader and a writer (asyncio's
    /// `open_unix_connection`).
    /// - Important: Call from a task running on this loop.
    public func openUnixConnection(
        path: String, tls: TLSContext? = nil, serverHostname: String? = nil, limit: Int = 64 * 1024,
        logger: Logger? = nil
    ) async throws -> (StreamReader, StreamWriter) {
        let reader = StreamReader(loop: self, limit: limit)
        let (transport, proto) = try await createUnixConnection(
            path: path, tls: tls, serverHostname: serverHostname, logger: logger
        ) {
            StreamReaderProtocol(reader: reader)
        }
        return (reader, StreamWriter(transport: transport, protocol: proto))
    }

    /// Starts a TCP server whose connections are handled by `clientConnected`, each in its own
    /// task on this loop (asyncio's `start_server`). When the handler returns, the connection is
    /// closed (after flushing); an error it throws goes to the exception handler.
    /// With `tls`, the handler runs once the connection's TLS handshake succeeded. `logger` is
    /// the server's (see `createServer`); an error a handler throws is logged through its
    /// connection's ``StreamTransport/logger``.
    /// - Throws: as ``createServer(host:port:tls:backlog:reuseAddress:reusePort:startServing:logger:_:)``.
    /// - Important: Call from a task running on this loop.
    public func startServer(
        host: String? = nil, port: Int, tls: TLSContext? = nil, limit: Int = 64 * 1024, backlog: Int = 100,
        logger: Logger? = nil,
        _ clientConnected: @escaping @Sendable (StreamReader, StreamWriter) async throws -> Void
    ) async throws -> Server {
        try await createServer(host: host, port: port, tls: tls, backlog: backlog, logger: logger) { [unowned self] in
            self.streamProtocol(limit: limit, clientConnected)
        }
    }

    /// Starts a Unix socket server with a handler per connection (asyncio's
    /// `start_unix_server`); see ``startServer(host:port:tls:limit:backlog:logger:_:)``.
    /// - Important: Call from a task running on this loop.
    public func startUnixServer(
        path: String, tls: TLSContext? = nil, limit: Int = 64 * 1024, backlog: Int = 100,
        logger: Logger? = nil,
        _ clientConnected: @escaping @Sendable (StreamReader, StreamWriter) async throws -> Void
    ) async throws -> Server {
        try await createUnixServer(path: path, tls: tls, backlog: backlog, logger: logger) { [unowned self] in
            self.streamProtocol(limit: limit, clientConnected)
        }
    }

    private func streamProtocol(
        limit: Int, _ clientConnected: @escaping @Sendable (StreamReader, StreamWriter) async throws -> Void
    ) -> StreamReaderProtocol {
        StreamReaderProtocol(reader: StreamReader(loop: self, limit: limit)) { [unowned self] reader, writer in
            createTask(name: "stream client") {
                do {
                    // One cancellation handler for the connection's life, not one per read.
                    try await reader.coverCancellation { try await clientConnected(reader, writer) }
                } catch is CancellationError {
                } catch {
                    self.callExceptionHandler(ExceptionContext(
                        message: "error in stream client handler", error: error,
                        source: writer.peerAddress.map { "\($0)" }, logger: writer.transport.logger))
                }
                writer.close()
            }
        }
    }
}
