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
}
