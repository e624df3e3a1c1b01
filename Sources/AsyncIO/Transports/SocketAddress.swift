//===----------------------------------------------------------------------===//
// swift-asyncio — SocketAddress: IPv4, IPv6 and Unix socket addresses, and name resolution.
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
#if canImport(Glibc)
import Glibc
#endif

/// An IPv4, IPv6 or Unix-domain socket address.
///
/// Its description is what people expect to read and what the examples print:
/// `127.0.0.1:8888`, `[::1]:8888`, or the socket path.
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    enum Storage: @unchecked Sendable {
        case v4(sockaddr_in)
        case v6(sockaddr_in6)
        case unix(String)
    }

    let storage: Storage

    init(_ storage: Storage) {
        self.storage = storage
    }

    /// A numeric IPv4 or IPv6 address (`"127.0.0.1"`, `"::1"`) and a port. An IPv6 address
    /// may carry a scope (RFC 4007 zone), by interface name or index: `"fe80::1%eth0"`,
    /// `"fe80::1%2"`.
    /// - Throws: ``ResolutionError`` if `host` is not a numeric address (a NUL byte anywhere
    ///   in it, an unknown interface name, a scope on an IPv4 address) or `port` is out of
    ///   range.
    public init(ipAddress host: String, port: Int) throws(ResolutionError) {
        guard (0...65535).contains(port) else {
            throw ResolutionError(host: host, port: port, message: "port out of range 0-65535")
        }
        // A C string ends at the first NUL: "127.0.0.1\0junk" must not pass as 127.0.0.1.
        guard !host.utf8.contains(0) else {
            throw ResolutionError(host: host, port: port, message: "not a numeric IP address")
        }
        var v4 = sockaddr_in()
        if inet_pton(AF_INET, host, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = in_port_t(UInt16(port).bigEndian)
            self.init(.v4(v4))
            return
        }
        var v6 = sockaddr_in6()
        let percent = host.utf8.firstIndex(of: UInt8(ascii: "%"))
        let address = percent.map { String(host[..<$0]) } ?? host
        if inet_pton(AF_INET6, address, &v6.sin6_addr) == 1 {
            if let percent {
                guard let scope = Self.scopeID(String(host[host.utf8.index(after: percent)...])) else {
                    throw ResolutionError(host: host, port: port, message: "not a numeric IP address (unknown IPv6 scope)")
                }
                v6.sin6_scope_id = scope
            }
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = in_port_t(UInt16(port).bigEndian)
            self.init(.v6(v6))
            return
        }
        throw ResolutionError(host: host, port: port, message: "not a numeric IP address")
    }

    /// An IPv6 scope: a decimal interface index (what the kernel stores), or the name of an
    /// interface that exists.
    private static func scopeID(_ scope: String) -> UInt32? {
        if !scope.isEmpty && scope.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) {
            return UInt32(scope)
        }
        guard !scope.isEmpty else { return nil }
        let index = if_nametoindex(scope)
        return index == 0 ? nil : index
    }

    /// How a scope is written: the interface's name while it exists, else its index.
    private static func scopeName(_ scope: UInt32) -> String {
        var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard if_indextoname(scope, &name) != nil else { return String(scope) }
        let text = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // A name that would not read back (all digits, a '%') is written as the index.
        return scopeID(text) == scope ? text : String(scope)
    }

    /// A Unix-domain socket path, or with a leading NUL (`"\0name"`, as Python writes it) a
    /// name in Linux's abstract namespace: no file, gone with the last socket, and only the
    /// name's own bytes count (no trailing NUL), so it matches what other programs bind.
    public init(unixPath path: String) {
        self.init(.unix(path))
    }

    /// A name in Linux's abstract Unix-socket namespace (`SocketAddress(unixPath: "\0" + name)`):
    /// no file in the filesystem; shown as `@name`, as `ss` and systemd show it.
    public init(abstractUnixName name: String) {
        self.init(.unix("\0" + name))
    }

    /// Whether this is the unnamed Unix address: that of a Unix socket that is not bound (a
    /// datagram from one arrives from it; `getsockname` on one reads it). Its `host` is empty.
    public var isUnnamedUnix: Bool {
        if case .unix(let path) = storage { return path.isEmpty }
        return false
    }

    /// Whether this is a Unix address in the abstract namespace (a leading NUL).
    public var isAbstractUnix: Bool {
        if case .unix(let path) = storage { return path.utf8.first == 0 }
        return false
    }

    /// Reads an address the kernel wrote (accept, getsockname, getpeername, recvfrom).
    /// `nil` for a length that does not even cover the family (recvfrom from an unbound Unix
    /// socket writes none) or an unknown family.
    init?(storage: sockaddr_storage, length: socklen_t) {
        guard Int(length) >= MemoryLayout<sa_family_t>.size else { return nil }
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            self.init(withUnsafeBytes(of: &storage) { .v4($0.load(as: sockaddr_in.self)) })
        case AF_INET6:
            self.init(withUnsafeBytes(of: &storage) { .v6($0.load(as: sockaddr_in6.self)) })
        case AF_UNIX:
            let path = withUnsafeBytes(of: &storage) { raw -> String in
                let offset = MemoryLayout<sa_family_t>.size
                let count = max(0, min(Int(length) - offset, MemoryLayout<sockaddr_un>.size - offset))
                let name = raw[offset..<(offset + count)]
                // An abstract name is exactly the bytes the length counts, NULs included; a
                // path ends at its NUL.
                if name.first == 0 { return String(decoding: name, as: UTF8.self) }
                return String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
            }
            self.init(.unix(path))
        default:
            return nil
        }
    }

    /// The address family (AF_INET, AF_INET6, AF_UNIX).
    public var family: Int32 {
        switch storage {
        case .v4: AF_INET
        case .v6: AF_INET6
        case .unix: AF_UNIX
        }
    }

    /// The port of an IP address, `nil` for a Unix address.
    public var port: Int? {
        switch storage {
        case .v4(let address): Int(UInt16(bigEndian: address.sin_port))
        case .v6(let address): Int(UInt16(bigEndian: address.sin6_port))
        case .unix: nil
        }
    }

    /// The numeric host (`127.0.0.1`, `::1`, `fe80::1%eth0` with an IPv6 scope) of an IP
    /// address, or the path of a Unix address. ``init(ipAddress:port:)`` reads it back.
    public var host: String {
        switch storage {
        case .v4(var address):
            var buffer = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            inet_ntop(AF_INET, &address.sin_addr, &buffer, socklen_t(buffer.count))
            return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        case .v6(var address):
            var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            inet_ntop(AF_INET6, &address.sin6_addr, &buffer, socklen_t(buffer.count))
            let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            // The scope tells link-local addresses on different interfaces apart.
            return address.sin6_scope_id == 0 ? text : "\(text)%\(Self.scopeName(address.sin6_scope_id))"
        case .unix(let path):
            return path
        }
    }

    /// `127.0.0.1:8888`, `[::1]:8888`, `[fe80::1%eth0]:8888`, the Unix path, or `@name` for
    /// an abstract Unix name.
    public var description: String {
        switch storage {
        case .v4: "\(host):\(port ?? 0)"
        case .v6: "[\(host)]:\(port ?? 0)"
        case .unix(let path): path.utf8.first == 0 ? "@" + String(path.dropFirst()) : path
        }
    }

    /// Addresses are equal when their family, host and port are.
    public static func == (lhs: SocketAddress, rhs: SocketAddress) -> Bool {
        lhs.family == rhs.family && lhs.host == rhs.host && lhs.port == rhs.port
    }

    /// Hashes the family, host and port, as `==` compares them.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(family)
        hasher.combine(host)
        hasher.combine(port)
    }

    /// The same address with another port (IP addresses only).
    func withPort(_ port: Int) -> SocketAddress {
        switch storage {
        case .v4(var address):
            address.sin_port = in_port_t(UInt16(truncatingIfNeeded: port).bigEndian)
            return SocketAddress(.v4(address))
        case .v6(var address):
            address.sin6_port = in_port_t(UInt16(truncatingIfNeeded: port).bigEndian)
            return SocketAddress(.v6(address))
        case .unix:
            return self
        }
    }

    /// Copies the address into `storage`; returns its length (0 if it cannot be represented).
    func copy(into storage: UnsafeMutablePointer<sockaddr_storage>) -> socklen_t {
        (try? withSockAddr { pointer, length in
            UnsafeMutableRawPointer(storage).copyMemory(from: pointer, byteCount: Int(length))
            return length
        }) ?? 0
    }

    /// Calls `body` with a `sockaddr` pointer and length for this address.
    /// - Throws: ``TransportError`` `.invalidAddress` if a Unix path is empty, too long for
    ///   `sockaddr_un` or has a NUL byte (the kernel would cut the path there); an abstract
    ///   name (a leading NUL) may hold any bytes, 108 in all.
    func withSockAddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> T) throws -> T {
        switch storage {
        case .v4(var address):
            return try withUnsafeBytes(of: &address) {
                try body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        case .v6(var address):
            return try withUnsafeBytes(of: &address) {
                try body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(MemoryLayout<sockaddr_in6>.size))
            }
        case .unix(let path):
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            let capacity = MemoryLayout.size(ofValue: address.sun_path)
            if bytes.first == 0 {
                // Abstract: the length counts the name's bytes only (Linux compares them all).
                guard bytes.count <= capacity else {
                    throw TransportError(.invalidAddress, "abstract Unix socket name is longer than \(capacity - 1) bytes: \(description)")
                }
                withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
                let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
                return try withUnsafeBytes(of: &address) {
                    try body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self), length)
                }
            }
            guard !bytes.isEmpty, bytes.count < capacity else {
                throw TransportError(.invalidAddress, "Unix socket path is empty or longer than \(capacity - 1) bytes: \(path)")
            }
            guard !bytes.contains(0) else {
                throw TransportError(.invalidAddress, "Unix socket path contains a NUL byte: \(bytes)")
            }
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                raw.copyBytes(from: bytes)
            }
            let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
            return try withUnsafeBytes(of: &address) {
                try body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self), length)
            }
        }
    }
}

/// A host name could not be resolved (getaddrinfo failed), or a numeric address was invalid.
public struct ResolutionError: Error, Hashable, CustomStringConvertible {
    /// The host that was looked up.
    public let host: String
    /// The port that was looked up.
    public let port: Int
    /// getaddrinfo's error code (EAI_*), 0 if the failure was not getaddrinfo's.
    public let code: Int32
    /// What went wrong, for people.
    public let message: String

    /// An error for `host`:`port` with getaddrinfo's `code` (0 if none) and a `message`.
    public init(host: String, port: Int, code: Int32 = 0, message: String) {
        self.host = host
        self.port = port
        self.code = code
        self.message = message
    }

    /// `cannot resolve HOST:PORT: message`.
    public var description: String { "cannot resolve \(host):\(port): \(message)" }
}

extension EventLoop {
    /// Resolves `host` and `port` to socket addresses, IPv4 and IPv6, in getaddrinfo's order
    /// (asyncio's `getaddrinfo`). Numeric addresses are parsed on the loop; names are looked up
    /// on the default executor, so the loop never blocks on DNS.
    ///
    /// - Parameters:
    ///   - host: A name or numeric address; `nil` means every local address (for servers,
    ///     `AI_PASSIVE`: `0.0.0.0` and `::`).
    ///   - port: 0...65535.
    ///   - passive: Addresses to bind rather than to connect to.
    /// - Throws: ``ResolutionError``.
    /// - Important: Call from a task running on this loop.
    public func resolve(host: String?, port: Int, passive: Bool = false) async throws -> [SocketAddress] {
        guard (0...65535).contains(port) else {
            throw ResolutionError(host: host ?? "*", port: port, message: "port out of range 0-65535")
        }
        if let host, let numeric = try? SocketAddress(ipAddress: host, port: port) {
            return [numeric]
        }
        return try await runInExecutor { () throws -> [SocketAddress] in
            try Self.getAddrInfo(host: host, port: port, passive: passive)
        }.value
    }

    /// Blocking getaddrinfo (runs on an executor thread).
    static func getAddrInfo(host: String?, port: Int, passive: Bool) throws(ResolutionError) -> [SocketAddress] {
        // A C string ends at the first NUL: "localhost\0.example.com" must not resolve localhost.
        if let host, host.utf8.contains(0) {
            throw ResolutionError(host: host, port: port, message: "host name contains a NUL byte")
        }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = casyncio_sock_stream()
        hints.ai_flags = AI_ADDRCONFIG | (passive ? AI_PASSIVE : 0)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0 else {
            let message = gai_strerror(rc).map { String(cString: $0) } ?? "getaddrinfo error \(rc)"
            throw ResolutionError(host: host ?? "*", port: port, code: rc, message: message)
        }
        defer { freeaddrinfo(result) }
        var addresses: [SocketAddress] = []
        var cursor = result
        while let info = cursor {
            if let raw = info.pointee.ai_addr {
                var storage = sockaddr_storage()
                let length = min(Int(info.pointee.ai_addrlen), MemoryLayout<sockaddr_storage>.size)
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: length)) }
                if let address = SocketAddress(storage: storage, length: socklen_t(length)), !addresses.contains(address) {
                    addresses.append(address)
                }
            }
            cursor = info.pointee.ai_next
        }
        if addresses.isEmpty {
            throw ResolutionError(host: host ?? "*", port: port, message: "no addresses")
        }
        return addresses
    }
}

extension SocketAddress {
    /// Whether `host` is a numeric IPv4 or IPv6 address (not a name). An IPv6 address with a
    /// scope is not (a certificate names no scope: TLS checks it as a name, and fails).
    static func isNumericHost(_ host: String) -> Bool {
        guard !host.utf8.contains(0) else { return false }
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }
}
