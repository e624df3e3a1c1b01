//===----------------------------------------------------------------------===//
// swift-asyncio — TransportError: what can go wrong with a connection, a server or a socket.
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

/// An error of a transport, server or connection attempt, with a ``code`` to switch on and the
/// `errno` behind it where there is one.
///
/// ```swift
/// do { try await loop.createConnection(…) } catch let error as TransportError
///     where error.code == .connectionRefused { … }
/// ```
public struct TransportError: Error, Hashable, CustomStringConvertible {
    /// The kind of failure. New codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The code's name, e.g. `"connectionRefused"`.
        public let name: String
        init(_ name: String) { self.name = name }
        /// The code's name.
        public var description: String { name }

        /// The local address is already bound (EADDRINUSE).
        public static let addressInUse = Code("addressInUse")
        /// The local address does not exist on this machine (EADDRNOTAVAIL).
        public static let addressNotAvailable = Code("addressNotAvailable")
        /// Nothing listens at the address (ECONNREFUSED, or ENOENT for a Unix path).
        public static let connectionRefused = Code("connectionRefused")
        /// The peer reset the connection (ECONNRESET).
        public static let connectionReset = Code("connectionReset")
        /// Writing to a connection the peer closed (EPIPE).
        public static let brokenPipe = Code("brokenPipe")
        /// A connection attempt or an operation timed out (ETIMEDOUT).
        public static let timedOut = Code("timedOut")
        /// No route to the host or network (EHOSTUNREACH, ENETUNREACH).
        public static let unreachable = Code("unreachable")
        /// Not permitted (EACCES, EPERM), e.g. a privileged port.
        public static let permissionDenied = Code("permissionDenied")
        /// The process or system is out of file descriptors (EMFILE, ENFILE).
        public static let tooManyOpenFiles = Code("tooManyOpenFiles")
        /// An address that cannot be used (a Unix path too long, an unsupported family).
        public static let invalidAddress = Code("invalidAddress")
        /// The transport or server is closed.
        public static let closed = Code("closed")
        /// Any other system error: see ``TransportError/errno``.
        public static let other = Code("other")
        /// An argument is out of range (e.g. write-buffer limits with high below low).
        public static let invalidArgument = Code("invalidArgument")
        /// A socket option this kind of socket does not have (ENOPROTOOPT, EOPNOTSUPP), e.g.
        /// `TCP_NODELAY` on a Unix socket.
        public static let optionNotSupported = Code("optionNotSupported")
        /// A file descriptor that is not a socket of the kind the call needs (ENOTSOCK, a
        /// datagram socket given to `createServer(sock:)`, a server's socket that does not
        /// listen, …).
        public static let invalidSocket = Code("invalidSocket")
        /// `sendfile(2)` cannot send this file on this transport (a TLS transport, a file that
        /// is not a regular file) and the caller asked for no fallback (asyncio's
        /// `SendfileNotAvailableError`).
        public static let sendfileNotAvailable = Code("sendfileNotAvailable")
    }

    /// The kind of failure.
    public let code: Code
    /// The `errno` behind it, 0 if none.
    public let errno: Int32
    /// A sentence for people, naming the address or the call.
    public let message: String

    /// An error with `code`, a `message` for people and the `errno` behind it (0 if none).
    public init(_ code: Code, _ message: String, errno: Int32 = 0) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    /// Maps a failed system call's errno to a code.
    /// - Parameters:
    ///   - errno: the errno value.
    ///   - syscall: the call's name, e.g. `"connect"`.
    ///   - address: the address involved, if any (named in the message).
    public init(errno: Int32, syscall: String, address: SocketAddress? = nil) {
        let code: Code
        switch errno {
        case EADDRINUSE: code = .addressInUse
        case EADDRNOTAVAIL: code = .addressNotAvailable
        case ECONNREFUSED: code = .connectionRefused
        case ENOENT where address?.family == AF_UNIX: code = .connectionRefused
        case ECONNRESET: code = .connectionReset
        case EPIPE: code = .brokenPipe
        case ETIMEDOUT: code = .timedOut
        case EHOSTUNREACH, ENETUNREACH: code = .unreachable
        case EACCES, EPERM: code = .permissionDenied
        case EMFILE, ENFILE: code = .tooManyOpenFiles
        case EAFNOSUPPORT: code = .invalidAddress
        case ENOPROTOOPT: code = .optionNotSupported
        case ENOTSOCK: code = .invalidSocket
        default: code = .other
        }
        let reason = strerror(errno).map { String(cString: $0) }?.lowercased() ?? "errno \(errno)"
        let text = address.map { "\(reason): \($0)" } ?? reason
        self.init(code, "\(text) (\(syscall), errno \(errno))", errno: errno)
    }

    /// The transport-level view of a loop ``IOError`` (e.g. an epoll registration that
    /// failed): transports report every OS failure as a `TransportError`.
    public init(_ error: IOError, address: SocketAddress? = nil) {
        self.init(errno: error.errno, syscall: error.syscall, address: address)
    }

    /// `error` as a `TransportError`: an ``IOError`` is converted, anything else is kept.
    static func boundary(_ error: any Error, address: SocketAddress? = nil) -> any Error {
        if let ioError = error as? IOError { return TransportError(ioError, address: address) }
        return error
    }

    /// The message.
    public var description: String { message }

    static let closedTransport = TransportError(.closed, "the transport is closed")
}
