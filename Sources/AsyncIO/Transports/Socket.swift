//===----------------------------------------------------------------------===//
// swift-asyncio — Non-blocking socket system calls (internal).
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
#if canImport(Glibc)
import Glibc
#endif

/// Thin wrappers over the socket calls: non-blocking, close-on-exec, errors as
/// ``TransportError``s that name the address.
enum Socket {
    /// A new non-blocking, close-on-exec stream socket for `family`.
    static func makeStream(family: Int32) throws(TransportError) -> Int32 {
        let type = casyncio_sock_stream() | casyncio_sock_nonblock_cloexec()
        let fd = Glibc.socket(family, type, 0)
        guard fd >= 0 else { throw TransportError(errno: errno, syscall: "socket") }
        return fd
    }

    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) {
        var value = value
        _ = setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    static func intOption(_ fd: Int32, _ level: Int32, _ name: Int32) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, level, name, &value, &length)
        return value
    }

    static func bind(_ fd: Int32, _ address: SocketAddress) throws {
        let rc = try address.withSockAddr { Glibc.bind(fd, $0, $1) }
        guard rc == 0 else { throw TransportError(errno: errno, syscall: "bind", address: address) }
    }

    static func listen(_ fd: Int32, backlog: Int32, address: SocketAddress) throws(TransportError) {
        guard Glibc.listen(fd, backlog) == 0 else {
            throw TransportError(errno: errno, syscall: "listen", address: address)
        }
    }

    /// Starts a non-blocking connect: true if it completed at once, false if in progress.
    static func connect(_ fd: Int32, _ address: SocketAddress) throws -> Bool {
        while true {
            let rc = try address.withSockAddr { Glibc.connect(fd, $0, $1) }
            if rc == 0 { return true }
            switch errno {
            case EINTR: continue
            case EINPROGRESS, EAGAIN: return false
            default: throw TransportError(errno: errno, syscall: "connect", address: address)
            }
        }
    }

    static func localAddress(_ fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutableBytes(of: &storage) {
            getsockname(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
        }
        return rc == 0 ? SocketAddress(storage: storage, length: length) : nil
    }

    static func peerAddress(_ fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutableBytes(of: &storage) {
            getpeername(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
        }
        return rc == 0 ? SocketAddress(storage: storage, length: length) : nil
    }

    // MARK: - Sockets handed to the library (asyncio's `sock=`)

    /// What a socket handed to the library is.
    struct Inspection {
        let family: Int32
        let type: Int32
        let listening: Bool
        let peer: SocketAddress?
    }

    /// The family, type, listening state and peer of `fd`, for `call`'s messages.
    /// - Throws: ``TransportError`` `.invalidSocket` if `fd` is not an open socket.
    static func inspect(_ fd: Int32, call: String) throws(TransportError) -> Inspection {
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard fd >= 0, getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 else {
            let code = fd >= 0 ? errno : EBADF
            let reason = strerror(code).map { String(cString: $0) }?.lowercased() ?? "errno \(code)"
            throw TransportError(.invalidSocket, "\(call): fd \(fd) is not an open socket: \(reason)", errno: code)
        }
        return Inspection(
            family: intOption(fd, SOL_SOCKET, SO_DOMAIN), type: type,
            listening: intOption(fd, SOL_SOCKET, SO_ACCEPTCONN) != 0, peer: peerAddress(fd))
    }

    /// Checks that `fd` is a socket `call` can take: of `type` (SOCK_STREAM, SOCK_DGRAM), one
    /// of `families`, and for streams listening (`listening: true`: a server; one that is
    /// bound and neither listening nor connected passes too, the server calls listen) or
    /// connected (`false`). Nothing is changed on `fd`.
    /// - Throws: ``TransportError`` `.invalidSocket` saying what `fd` is instead.
    static func checkAdoptable(
        _ fd: Int32, call: String, type: Int32, families: [Int32], listening: Bool?
    ) throws(TransportError) -> Inspection {
        let found = try inspect(fd, call: call)
        func refuse(_ what: String) -> TransportError {
            TransportError(.invalidSocket, "\(call): fd \(fd) \(what)")
        }
        guard found.type == type else {
            throw refuse("is \(typeName(found.type)), not \(typeName(type))")
        }
        guard families.contains(found.family) else {
            throw refuse("is an \(familyName(found.family)) socket, not \(families.map(familyName).joined(separator: " or "))")
        }
        switch listening {
        case true?:
            if !found.listening && found.peer != nil { throw refuse("is a connected socket, not a listening one") }
        case false?:
            if found.listening { throw refuse("is a listening socket, not a connected one") }
            if found.peer == nil { throw refuse("is not connected") }
        case nil:
            break
        }
        return found
    }

    /// Makes a socket handed to the library non-blocking and close-on-exec (the library owns it
    /// from here).
    static func adopt(_ fd: Int32) throws(TransportError) {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else {
            throw TransportError(errno: errno, syscall: "fcntl(F_SETFL, O_NONBLOCK)")
        }
        let descriptorFlags = fcntl(fd, F_GETFD)
        guard descriptorFlags >= 0, fcntl(fd, F_SETFD, descriptorFlags | FD_CLOEXEC) == 0 else {
            throw TransportError(errno: errno, syscall: "fcntl(F_SETFD, FD_CLOEXEC)")
        }
    }

    private static func typeName(_ type: Int32) -> String {
        switch type {
        case casyncio_sock_stream(): "a stream socket"
        case casyncio_sock_dgram(): "a datagram socket"
        default: "a socket of type \(type)"
        }
    }

    static func familyName(_ family: Int32) -> String {
        switch family {
        case AF_INET: "AF_INET"
        case AF_INET6: "AF_INET6"
        case AF_UNIX: "AF_UNIX"
        default: "family \(family)"
        }
    }
}
