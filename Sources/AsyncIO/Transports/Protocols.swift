//===----------------------------------------------------------------------===//
// swift-asyncio — Transports and protocols: asyncio's callback interfaces.
//===----------------------------------------------------------------------===//

public import Logging

/// The application's side of a byte stream (asyncio's `Protocol`): the transport calls it on
/// the loop's thread.
///
/// Call order, guaranteed:
/// `connectionMade → dataReceived* → eofReceived? → connectionLost`, with `connectionLost`
/// exactly once. `pauseWriting`/`resumeWriting` come in pairs, between `connectionMade` and
/// `connectionLost`, when the transport's write buffer crosses its high-water mark upwards and
/// then its low-water mark downwards; they are called synchronously from `write` and from the
/// loop, not through `callSoon`.
///
/// An error thrown by a callback goes to the loop's exception handler and aborts that
/// transport (its `connectionLost` gets the error); other connections are not affected.
///
/// ```swift
/// final class Echo: StreamProtocol {
///     var transport: (any StreamTransport)?
///     func connectionMade(_ transport: any StreamTransport) { self.transport = transport }
///     func dataReceived(_ bytes: UnsafeRawBufferPointer) { transport?.write(bytes) }
///     func eofReceived() -> Bool { false }   // close once the echo is flushed
///     func connectionLost(_ error: (any Error)?) { transport = nil }
/// }
/// ```
public protocol StreamProtocol: AnyObject {
    /// The connection is up; keep `transport` to write to it.
    func connectionMade(_ transport: any StreamTransport) throws
    /// Bytes arrived. `bytes` is borrowed: valid only during this call (copy with
    /// `Array(bytes)` to keep them). Writing them back with `transport.write(bytes)` does not
    /// copy unless the kernel cannot take them at once.
    func dataReceived(_ bytes: UnsafeRawBufferPointer) throws
    /// The peer closed its sending side. Return `true` to keep the connection half-open (you
    /// can still write, then `close()`); `false` closes the transport once its buffer is flushed.
    func eofReceived() throws -> Bool
    /// The connection is closed: `nil` after a normal close or EOF, the error otherwise
    /// (``TransportError`` with `.connectionReset`, …). Called exactly once.
    func connectionLost(_ error: (any Error)?)
    /// The transport's write buffer went over its high-water mark: stop producing.
    func pauseWriting()
    /// The write buffer drained below its low-water mark: produce again.
    func resumeWriting()
}

extension StreamProtocol {
    /// Default: `false`, the transport closes once its write buffer is flushed.
    public func eofReceived() throws -> Bool { false }
    /// Default: does nothing.
    public func connectionLost(_ error: (any Error)?) {}
    /// Default: does nothing; writes keep being buffered.
    public func pauseWriting() {}
    /// Default: does nothing.
    public func resumeWriting() {}
}

/// A stream protocol that owns its receive buffer (asyncio's `BufferedProtocol`): the
/// transport reads straight into the buffer the protocol hands out, with no copy.
public protocol BufferedProtocol: StreamProtocol {
    /// A buffer to read into, of any non-zero size (`sizeHint` is a suggestion). It must stay
    /// valid until ``bufferUpdated(_:)`` is called.
    func getBuffer(sizeHint: Int) throws -> UnsafeMutableRawBufferPointer
    /// `count` bytes were written at the start of the last buffer from ``getBuffer(sizeHint:)``.
    func bufferUpdated(_ count: Int) throws
}

extension BufferedProtocol {
    /// Not used for buffered protocols: the transport calls ``bufferUpdated(_:)`` instead.
    public func dataReceived(_ bytes: UnsafeRawBufferPointer) throws {}
}

/// The loop's side of a byte stream (asyncio's `Transport`): a TCP or Unix socket, a pipe, or
/// a TLS layer over one of them.
///
/// - Important: Loop-bound: call it on its loop's thread.
public protocol StreamTransport: SocketOptionProvider {
    /// The loop the transport runs on.
    var loop: EventLoop { get }
    /// Writes `bytes`: sent at once if the kernel takes them, otherwise the rest is copied
    /// into the write buffer and sent when the socket is writable. Ignored once closing.
    func write(_ bytes: UnsafeRawBufferPointer)
    /// Sends end-of-file after the buffered data (half-close); later writes are ignored.
    func writeEOF()
    /// Whether ``writeEOF()`` is supported (true for sockets and pipes, false for TLS 1.2).
    var canWriteEOF: Bool { get }
    /// Closes after flushing the write buffer; `connectionLost(nil)` follows. Reading stops now.
    func close()
    /// Closes now, dropping buffered data; `connectionLost(nil)` follows.
    func abort()
    /// Whether the transport is closing or closed.
    var isClosing: Bool { get }
    /// Stops calling `dataReceived` until ``resumeReading()``.
    func pauseReading()
    /// Undoes ``pauseReading()``.
    func resumeReading()
    /// Whether the transport is reading (not paused, not closing).
    var isReading: Bool { get }
    /// Sets the write buffer's water marks. `nil` high: 64 KiB, or 4 × low if low is given;
    /// `nil` low: high / 4 (asyncio's defaults). Crossing a new mark pauses or resumes the
    /// protocol at once.
    /// - Throws: ``TransportError`` `.invalidArgument` unless `high >= low >= 0`.
    func setWriteBufferLimits(high: Int?, low: Int?) throws(TransportError)
    /// The water marks (low, high).
    var writeBufferLimits: (low: Int, high: Int) { get }
    /// Bytes buffered and not yet sent.
    var writeBufferSize: Int { get }
    /// The peer's address, if the transport is a connected socket.
    var peerAddress: SocketAddress? { get }
    /// The local address, if the transport is a socket.
    var localAddress: SocketAddress? { get }
    /// The file descriptor, -1 once closed.
    var fileDescriptor: Int32 { get }
    /// The protocol receiving the callbacks; assigning one switches protocols (asyncio's
    /// `set_protocol`).
    var streamProtocol: any StreamProtocol { get set }
    /// The connection's logger: the logger of its ``Server`` (or the one given to
    /// `createConnection`, by default the loop's) with the metadata `connection` (a number,
    /// unique in the process) and `peer` (the peer's address, if it is a socket). Errors the
    /// loop reports for the connection are logged through it. It is made when asked for:
    /// keep it in a variable rather than asking for it per message.
    var logger: Logger { get }
}

/// What a transport that can pause its protocol's writing tells a layer put over it (TLS
/// through `startTLS`), so the layer starts in the same state. Internal.
protocol WritePauseReporting {
    /// Whether the protocol was told `pauseWriting` and not yet `resumeWriting`.
    var isWritingPaused: Bool { get }
}

extension StreamTransport {

    /// The loop's logger with `peer` metadata, for transports that have no logger of their own.
    public var logger: Logger {
        var logger = loop.logger
        if let peer = peerAddress { logger[metadataKey: "peer"] = "\(peer)" }
        return logger
    }

    /// Writes `bytes`.
    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    /// Writes the UTF-8 bytes of `string`.
    public func write(_ string: String) {
        var string = string
        string.withUTF8 { write(UnsafeRawBufferPointer($0)) }
    }

    /// Writes the strings one after the other, adding nothing between them (asyncio's
    /// `writelines`: end each string with `"\n"` yourself for lines).
    public func writeLines(_ strings: [String]) {
        for string in strings {
            write(string)
        }
    }
}

/// The protocol a transport holds after `connectionLost`: drops everything.
final class ClosedProtocol: StreamProtocol, Sendable {
    static let shared = ClosedProtocol()
    func connectionMade(_ transport: any StreamTransport) {}
    func dataReceived(_ bytes: UnsafeRawBufferPointer) {}
}
