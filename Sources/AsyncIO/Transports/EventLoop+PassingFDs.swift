//===----------------------------------------------------------------------===//
// swift-asyncio — Passing file descriptors over Unix sockets (SCM_RIGHTS), peer credentials.
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
#if canImport(Glibc)
import Glibc
#endif

/// What ``EventLoop/sockRecvFDs(_:max:maxFDs:)`` received: bytes and the descriptors that
/// came with them.
public struct ReceivedFDs: Sendable {
    /// The bytes received; empty at end of stream.
    public var bytes: [UInt8]
    /// The descriptors that came with the bytes, now open in this process (close-on-exec).
    /// They are yours to close.
    public var fileDescriptors: [Int32]
    /// Whether the sender attached more descriptors than `maxFDs`: the kernel closed the
    /// ones that did not fit.
    public var truncated: Bool
}

/// Passing descriptors between processes over a Unix socket, what process supervisors and
/// zero-downtime restarts use (Python's `socket.send_fds` / `recv_fds`; asyncio has no
/// coroutine for it). The same rules as the other socket coroutines
/// (``EventLoop/sockRecv(_:max:)``): a non-blocking socket you keep, one waiting call per
/// direction, cancellable.
///
/// ```swift
/// // Hand the listening socket to the process at the other end of `control`, then stop
/// // listening here: the socket stays open in the other process, no connection is refused.
/// try await loop.sockSendFDs(control, bytes: Array("listener".utf8), fds: [listener])
/// close(listener)
/// ```
///
/// - Important: Loop-bound: call from a task running on this loop.
extension EventLoop {
    /// Sends `bytes` (at least one) on the Unix stream or datagram socket `fd` with `fds`
    /// attached (at most 253); the descriptors travel with the first bytes sent and arrive
    /// open in the receiving process. Waits while the socket's buffer is full. The
    /// descriptors stay open here: close them when this process is done with them.
    /// - Throws: ``TransportError`` (`.invalidArgument` for no bytes or too many
    ///   descriptors; EBADF for a descriptor that is not open), `CancellationError`.
    public func sockSendFDs(_ fd: Int32, bytes: [UInt8], fds: [Int32]) async throws {
        guard !bytes.isEmpty else {
            throw TransportError(.invalidArgument, "sockSendFDs needs at least one byte to carry the descriptors")
        }
        guard fds.count <= Int(casyncio_max_passed_fds()) else {
            throw TransportError(.invalidArgument, "sockSendFDs: at most \(casyncio_max_passed_fds()) descriptors per message, not \(fds.count)")
        }
        let sent = try await untilReady(fd, write: true, "sockSendFDs") { () throws -> Int? in
            let sent = bytes.withUnsafeBytes { raw in
                fds.withUnsafeBufferPointer { list in
                    casyncio_send_with_fds(fd, raw.baseAddress, UInt(raw.count), list.baseAddress, Int32(list.count))
                }
            }
            if sent >= 0 { return sent }
            return try Self.wouldBlock("sendmsg")
        }
        if sent < bytes.count {
            try await sockSendAll(fd, Array(bytes[sent...]))
        }
    }

    /// Receives up to `max` bytes from the Unix socket `fd` and the descriptors sent with
    /// them (at most `maxFDs`, up to 253), waiting until bytes arrive. A message's
    /// descriptors arrive with its first byte: read at least that far into each message.
    /// - Throws: ``TransportError``, `CancellationError`.
    public func sockRecvFDs(_ fd: Int32, max: Int, maxFDs: Int) async throws -> ReceivedFDs {
        precondition(max > 0, "sockRecvFDs needs a positive max")
        precondition((0...Int(casyncio_max_passed_fds())).contains(maxFDs), "sockRecvFDs: maxFDs must be 0...253")
        return try await untilReady(fd, write: false, "sockRecvFDs") { () throws -> ReceivedFDs? in
            var descriptors = [Int32](repeating: -1, count: Swift.max(maxFDs, 1))
            var count: Int32 = 0
            var truncated: Int32 = 0
            var completed = false
            let bytes = try [UInt8](unsafeUninitializedCapacity: max) { buffer, length in
                let received = descriptors.withUnsafeMutableBufferPointer { list in
                    casyncio_recv_with_fds(fd, buffer.baseAddress, UInt(max), list.baseAddress, Int32(maxFDs), &count, &truncated)
                }
                if received >= 0 {
                    length = received
                    completed = true
                } else if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                    throw TransportError(errno: errno, syscall: "recvmsg")
                }
            }
            guard completed else { return nil }
            return ReceivedFDs(
                bytes: bytes, fileDescriptors: Array(descriptors.prefix(Int(count))), truncated: truncated != 0)
        }
    }
}

/// Who is at the other end of a connected Unix socket (`SO_PEERCRED`), as the kernel saw it
/// when the connection was made: what a supervisor checks before trusting a peer.
///
/// ```swift
/// let peer = try PeerCredentials(socket: transport.fileDescriptor)
/// guard peer.uid == getuid() else { transport.abort(); return }
/// ```
public struct PeerCredentials: Sendable, Hashable {
    /// The peer's process id.
    public var pid: Int32
    /// The peer's user id.
    public var uid: UInt32
    /// The peer's group id.
    public var gid: UInt32

    /// Reads the credentials of the peer of the connected Unix socket `fd`.
    /// - Throws: ``TransportError`` (ENOTCONN for a socket with no peer, ENOTSOCK / EBADF
    ///   for an fd that is not a socket).
    public init(socket fd: Int32) throws {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        guard casyncio_peer_credentials(fd, &pid, &uid, &gid) == 0 else {
            throw TransportError(errno: errno, syscall: "getsockopt(SO_PEERCRED)")
        }
        // A socket with no peer reports pid 0 (no process has it) rather than failing.
        guard pid > 0 else { throw TransportError(errno: ENOTCONN, syscall: "getsockopt(SO_PEERCRED)") }
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }
}
