//===----------------------------------------------------------------------===//
// swift-asyncio — SocketOption: typed socket options on transports, servers and endpoints.
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

/// A socket option and the type of its value: `TCP_NODELAY` is a `Bool`, `TCP_KEEPIDLE` a
/// `Duration`, `SO_LINGER` a `Duration?`. Set and read it on anything that has sockets
/// (a ``SocketOptionProvider``: stream transports, servers, datagram transports):
///
/// ```swift
/// try transport.setOption(.keepAlive, true)
/// try transport.setOption(.keepAliveIdle, .seconds(30))
/// try transport.setOption(.linger, .zero)          // close sends RST
/// let size = try transport.option(.receiveBufferSize)
/// try endpoint.setOption(.raw(level: SOL_SOCKET, name: SO_PRIORITY), 6)   // any other option
/// ```
///
/// Values are checked before they reach the kernel where their type cannot hold every value
/// the kernel takes (a `Duration` that is not whole seconds, an `Int` beyond `Int32`); the
/// kernel checks the rest. Either way a bad value, or an option the socket does not have
/// (`TCP_NODELAY` on a Unix socket), throws a ``TransportError`` whose message names the
/// option and the kernel's reason.
public struct SocketOption<Value>: Sendable, CustomStringConvertible {
    /// The protocol level (`SOL_SOCKET`, `IPPROTO_TCP`, `IPPROTO_IP`, `IPPROTO_IPV6`, …).
    public let level: Int32
    /// The option's number at that level (`TCP_NODELAY`, …).
    public let name: Int32
    /// The C name, for messages: `"TCP_NODELAY"`.
    public let optionName: String
    /// The bytes `setsockopt` takes for a value, or a sentence saying which values are allowed.
    let encode: @Sendable (Value) -> Result<[UInt8], Rejected>
    /// The value read from the bytes `getsockopt` wrote.
    let decode: @Sendable ([UInt8]) -> Value
    /// How many bytes `getsockopt` may write.
    let readSize: Int
    /// A value as messages show it.
    let describe: @Sendable (Value) -> String
    /// The address family the option belongs to (`AF_INET` for an `IP_MULTICAST_*` option),
    /// checked before the call: Linux takes an `IPPROTO_IP` option on an IPv6 socket without
    /// error and without effect on its IPv6 traffic. `nil`: any socket.
    private(set) var family: Int32?

    /// A value the option's type cannot carry to the kernel, and what is allowed instead.
    struct Rejected: Error {
        let rule: String
    }

    /// An option whose value is an `int` in C (most of them).
    init(
        _ level: Int32, _ name: Int32, _ optionName: String,
        encode: @escaping @Sendable (Value) -> Result<Int32, Rejected>,
        decode: @escaping @Sendable (Int32) -> Value,
        describe: @escaping @Sendable (Value) -> String = { "\($0)" }
    ) {
        self.init(
            level: level, name: name, optionName: optionName,
            encode: { value in encode(value).map { withUnsafeBytes(of: $0) { Array($0) } } },
            decode: { bytes in
                var int: Int32 = 0
                withUnsafeMutableBytes(of: &int) { $0.copyBytes(from: bytes.prefix(MemoryLayout<Int32>.size)) }
                return decode(int)
            },
            readSize: MemoryLayout<Int32>.size, describe: describe)
    }

    init(
        level: Int32, name: Int32, optionName: String,
        encode: @escaping @Sendable (Value) -> Result<[UInt8], Rejected>,
        decode: @escaping @Sendable ([UInt8]) -> Value, readSize: Int,
        describe: @escaping @Sendable (Value) -> String
    ) {
        self.level = level
        self.name = name
        self.optionName = optionName
        self.encode = encode
        self.decode = decode
        self.readSize = readSize
        self.describe = describe
    }

    /// The option's name, as ``optionName``.
    public var description: String { optionName }

    /// The same option, refused on sockets of any family but `family`.
    func onlyFor(family: Int32) -> Self {
        var option = self
        option.family = family
        return option
    }
}

// MARK: - The options

extension SocketOption where Value == Bool {
    static func flag(_ level: Int32, _ name: Int32, _ optionName: String) -> Self {
        Self(level, name, optionName, encode: { .success($0 ? 1 : 0) }, decode: { $0 != 0 })
    }

    /// `TCP_NODELAY`: send small segments at once (no Nagle). On by default for every TCP
    /// transport this library makes.
    public static var tcpNoDelay: Self { flag(Int32(IPPROTO_TCP), TCP_NODELAY, "TCP_NODELAY") }
    /// `SO_KEEPALIVE`: probe an idle connection (see ``keepAliveIdle``, ``keepAliveInterval``,
    /// ``keepAliveCount``); a peer that stops answering fails the connection with `.timedOut`.
    public static var keepAlive: Self { flag(SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE") }
    /// `SO_REUSEADDR`: bind a port with connections in TIME_WAIT (servers set it by default).
    /// Takes effect at the next bind: meaningful on a socket before it is bound.
    public static var reuseAddress: Self { flag(SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR") }
    /// `SO_REUSEPORT`: several sockets bind the same port and the kernel spreads the load.
    /// Takes effect at the next bind.
    public static var reusePort: Self { flag(SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT") }
    /// `SO_BROADCAST`: a datagram socket may send to broadcast addresses.
    public static var broadcast: Self { flag(SOL_SOCKET, SO_BROADCAST, "SO_BROADCAST") }
}

extension SocketOption where Value == Int {
    static func integer(_ level: Int32, _ name: Int32, _ optionName: String) -> Self {
        Self(
            level, name, optionName,
            encode: { value in
                guard let int = Int32(exactly: value) else {
                    return .failure(Rejected(rule: "the value must fit in 32 bits"))
                }
                return .success(int)
            },
            decode: { Int($0) })
    }

    /// `TCP_KEEPCNT`: unanswered keep-alive probes before the connection fails (1...127).
    public static var keepAliveCount: Self { integer(Int32(IPPROTO_TCP), TCP_KEEPCNT, "TCP_KEEPCNT") }
    /// `SO_RCVBUF`: the receive buffer's size in bytes. Linux doubles what is set (for its
    /// bookkeeping) and reads back the doubled size.
    public static var receiveBufferSize: Self { integer(SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF") }
    /// `SO_SNDBUF`: the send buffer's size in bytes; doubled like ``receiveBufferSize``.
    public static var sendBufferSize: Self { integer(SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF") }
    /// `IP_TOS`: the type-of-service byte (DSCP and ECN) of an IPv4 socket's packets, 0...255.
    public static var typeOfService: Self { integer(Int32(IPPROTO_IP), IP_TOS, "IP_TOS") }
    /// `IPV6_TCLASS`: the traffic class byte of an IPv6 socket's packets, 0...255 (-1 resets
    /// it to the kernel's default); IPv6's ``typeOfService``.
    public static var trafficClass: Self { integer(Int32(IPPROTO_IPV6), IPV6_TCLASS, "IPV6_TCLASS") }
}

extension SocketOption where Value == Duration {
    /// An option the kernel counts in `unit`s (1 s or 1 ms): only whole units are taken.
    private static func duration(
        _ level: Int32, _ name: Int32, _ optionName: String, unit: Duration, unitName: String
    ) -> Self {
        Self(
            level, name, optionName,
            encode: { value in
                guard let count = wholeUnits(value, unit) else {
                    return .failure(Rejected(rule: "the value must be whole \(unitName) in 0...\(Int32.max)"))
                }
                return .success(count)
            },
            decode: { unit * Int($0) })
    }

    /// `TCP_KEEPIDLE`: how long a connection is idle before the first keep-alive probe (whole
    /// seconds; the kernel takes 1...32,767 s).
    public static var keepAliveIdle: Self {
        duration(Int32(IPPROTO_TCP), TCP_KEEPIDLE, "TCP_KEEPIDLE", unit: .seconds(1), unitName: "seconds")
    }
    /// `TCP_KEEPINTVL`: the time between keep-alive probes (whole seconds, 1...32,767 s).
    public static var keepAliveInterval: Self {
        duration(Int32(IPPROTO_TCP), TCP_KEEPINTVL, "TCP_KEEPINTVL", unit: .seconds(1), unitName: "seconds")
    }
    /// `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged before the connection
    /// fails with `.timedOut` (whole milliseconds; `.zero`: the kernel's default).
    public static var tcpUserTimeout: Self {
        duration(Int32(IPPROTO_TCP), TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT", unit: .milliseconds(1), unitName: "milliseconds")
    }
}

extension SocketOption where Value == Duration? {
    /// `SO_LINGER`: `nil` is off (close returns at once, the kernel sends what is left in the
    /// background); a duration is how long `close` may block sending it. `.zero` makes close
    /// drop what is unsent and send RST: the peer sees a reset (`ECONNRESET`), and the
    /// connection skips TIME_WAIT. Whole seconds.
    public static var linger: Self {
        Self(
            level: SOL_SOCKET, name: SO_LINGER, optionName: "SO_LINGER",
            encode: { value in
                var setting = Glibc.linger()
                if let value {
                    guard let seconds = wholeUnits(value, .seconds(1)) else {
                        return .failure(Rejected(rule: "the value must be nil or whole seconds in 0...\(Int32.max)"))
                    }
                    setting.l_onoff = 1
                    setting.l_linger = seconds
                }
                return .success(withUnsafeBytes(of: setting) { Array($0) })
            },
            decode: { bytes in
                var setting = Glibc.linger()
                withUnsafeMutableBytes(of: &setting) { $0.copyBytes(from: bytes.prefix(MemoryLayout<Glibc.linger>.size)) }
                return setting.l_onoff == 0 ? nil : .seconds(Int(setting.l_linger))
            },
            readSize: MemoryLayout<Glibc.linger>.size,
            describe: { value in value.map { "on, \($0)" } ?? "off" })
    }
}

extension SocketOption where Value == Int32 {
    /// Any option whose value is a C `int`, by number: the escape hatch for what has no name
    /// here (`.raw(level: SOL_SOCKET, name: SO_PRIORITY)`).
    public static func raw(level: Int32, name: Int32) -> Self {
        Self(level, name, "option \(name) at level \(level)", encode: { .success($0) }, decode: { $0 })
    }
}

extension SocketOption where Value == [UInt8] {
    /// Any option by number, its value as raw bytes (a C struct laid out by hand); reading
    /// returns at most `capacity` bytes, as many as the kernel wrote.
    public static func rawBytes(level: Int32, name: Int32, capacity: Int = 256) -> Self {
        Self(
            level: level, name: name, optionName: "option \(name) at level \(level)",
            encode: { .success($0) }, decode: { $0 }, readSize: max(0, capacity), describe: { "\($0)" })
    }
}

/// `value` as a count of `unit`s if it is a whole, non-negative number of them that fits in
/// an `Int32`.
private func wholeUnits(_ value: Duration, _ unit: Duration) -> Int32? {
    guard value >= .zero else { return nil }
    let count = value / unit
    guard unit * count == value else { return nil }
    return Int32(exactly: count)
}

// MARK: - Setting and reading

/// Anything with sockets whose options can be set and read: every ``StreamTransport`` (a TCP
/// or Unix connection, the TLS layer over one: the options are the socket's), a ``Server``
/// (every listening socket: accepted connections inherit most options) and a
/// ``DatagramTransport``.
///
/// - Important: Loop-bound, like the objects that conform.
public protocol SocketOptionProvider: AnyObject {
    /// The loop the sockets belong to.
    var loop: EventLoop { get }
    /// The sockets an option is set on: a transport's one socket, each of a server's listening
    /// sockets; empty once closed. Reading an option reads the first.
    var socketDescriptors: [Int32] { get }
}

extension SocketOptionProvider {
    /// Sets `option` to `value` on the socket (on every listening socket of a server).
    ///
    /// ```swift
    /// try transport.setOption(.tcpNoDelay, false)
    /// ```
    /// - Throws: ``TransportError`` naming the option: `.invalidArgument` for a value out of
    ///   range (`"cannot set TCP_KEEPIDLE to 0 seconds: invalid argument (setsockopt, errno
    ///   22)"`), `.optionNotSupported` for an option this kind of socket does not have
    ///   (`TCP_NODELAY` on a Unix socket), `.invalidSocket` for a transport that is not a
    ///   socket (a pipe), `.closed` once closed.
    /// - Important: Loop-bound.
    public func setOption<Value>(_ option: SocketOption<Value>, _ value: Value) throws(TransportError) {
        loop.assertInLoop()
        let descriptors = socketDescriptors
        guard !descriptors.isEmpty else {
            throw TransportError(.closed, "cannot set \(option.optionName): the socket is closed", errno: EBADF)
        }
        let bytes: [UInt8]
        switch option.encode(value) {
        case .success(let encoded):
            bytes = encoded
        case .failure(let rejected):
            throw TransportError(
                .invalidArgument,
                "cannot set \(option.optionName) to \(option.describe(value)): \(rejected.rule)", errno: EINVAL)
        }
        for fd in descriptors {
            try option.checkFamily(of: fd, "set")
            let rc = bytes.withUnsafeBytes {
                setsockopt(fd, option.level, option.name, $0.baseAddress, socklen_t($0.count))
            }
            if rc != 0 {
                throw TransportError(
                    optionErrno: errno, syscall: "setsockopt",
                    "cannot set \(option.optionName) to \(option.describe(value))")
            }
        }
    }

    /// Reads `option` back from the socket (the first listening socket of a server): the
    /// kernel's value, which may differ from the one set (buffer sizes are doubled).
    /// - Throws: ``TransportError`` naming the option (see ``setOption(_:_:)``).
    /// - Important: Loop-bound.
    public func option<Value>(_ option: SocketOption<Value>) throws(TransportError) -> Value {
        loop.assertInLoop()
        guard let fd = socketDescriptors.first else {
            throw TransportError(.closed, "cannot read \(option.optionName): the socket is closed", errno: EBADF)
        }
        try option.checkFamily(of: fd, "read")
        var bytes = [UInt8](repeating: 0, count: option.readSize)
        var length = socklen_t(bytes.count)
        let rc = bytes.withUnsafeMutableBytes { getsockopt(fd, option.level, option.name, $0.baseAddress, &length) }
        guard rc == 0 else {
            throw TransportError(optionErrno: errno, syscall: "getsockopt", "cannot read \(option.optionName)")
        }
        return option.decode(Array(bytes.prefix(Int(length))))
    }
}

extension SocketOption {
    /// Throws `.optionNotSupported` if the option belongs to another address family than
    /// `fd`'s (`verb`: "set" or "read", for the message).
    func checkFamily(of fd: Int32, _ verb: String) throws(TransportError) {
        guard let family else { return }
        let actual = Socket.intOption(fd, SOL_SOCKET, SO_DOMAIN)
        guard actual != family else { return }
        throw TransportError(
            .optionNotSupported,
            "cannot \(verb) \(optionName): it is an \(Socket.familyName(family)) option and this is an "
                + "\(Socket.familyName(actual)) socket", errno: ENOPROTOOPT)
    }
}

extension TransportError {
    /// A failed setsockopt / getsockopt: `what` names the option (and the value).
    init(optionErrno code: Int32, syscall: String, _ what: String) {
        let mapped: Code
        switch code {
        case EINVAL, EDOM, ERANGE: mapped = .invalidArgument
        case ENOPROTOOPT, EOPNOTSUPP: mapped = .optionNotSupported
        case ENOTSOCK: mapped = .invalidSocket
        case EBADF: mapped = .closed
        default: mapped = TransportError(errno: code, syscall: syscall).code
        }
        let reason = strerror(code).map { String(cString: $0) }?.lowercased() ?? "errno \(code)"
        self.init(mapped, "\(what): \(reason) (\(syscall), errno \(code))", errno: code)
    }
}

extension StreamTransport {
    /// The transport's socket (``SocketOptionProvider``); for a pipe it is not a socket and
    /// options throw `.invalidSocket`.
    public var socketDescriptors: [Int32] { fileDescriptor >= 0 ? [fileDescriptor] : [] }
}

extension DatagramTransport {
    /// The endpoint's socket (``SocketOptionProvider``).
    public var socketDescriptors: [Int32] { fileDescriptor >= 0 ? [fileDescriptor] : [] }
}

extension Server: SocketOptionProvider {
    /// Every listening socket (``SocketOptionProvider``); empty once closed.
    public var socketDescriptors: [Int32] { listenerList.map(\.fd) }
}
