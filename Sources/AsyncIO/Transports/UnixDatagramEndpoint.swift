//===----------------------------------------------------------------------===//
// swift-asyncio — Unix datagram endpoints (asyncio's create_datagram_endpoint with
// family=AF_UNIX): a path or an abstract name, the socket file made and removed.
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
public import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A Unix socket file an endpoint bound: removed when the endpoint closes, but only while it
/// is still the same file (not one another program put at the path since).
struct UnixSocketFile {
    let path: String
    private let device: UInt
    private let inode: UInt

    /// The socket file now at `path`, `nil` if there is none.
    init?(path: String) {
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK else { return nil }
        self.path = path
        self.device = UInt(info.st_dev)
        self.inode = UInt(info.st_ino)
    }

    /// Unlinks the file if it is still the one that was bound.
    func remove() {
        var info = stat()
        guard lstat(path, &info) == 0, UInt(info.st_dev) == device, UInt(info.st_ino) == inode else { return }
        unlink(path)
    }
}

extension EventLoop {
    /// Creates a Unix datagram endpoint (asyncio's `create_datagram_endpoint(family=AF_UNIX,
    /// local_addr=path, remote_addr=path)`) and returns its transport and the protocol made
    /// by `factory`, after `connectionMade` ran. Datagrams keep their boundaries and arrive
    /// through `datagramReceived` with the sender's address, as for UDP.
    ///
    /// ```swift
    /// let (endpoint, _) = try await loop.createUnixDatagramEndpoint(localPath: "/run/app.sock") { Handler() }
    /// endpoint.sendTo("hello", SocketAddress(unixPath: "/run/peer.sock"))
    /// ```
    ///
    /// A path with a leading NUL (`"\0name"`, as Python writes it) is a name in Linux's
    /// abstract namespace: no file is made or removed. For a socket made elsewhere see
    /// ``createDatagramEndpoint(sock:logger:_:)``.
    /// - Parameters:
    ///   - localPath: The path to bind, so that peers can answer; `nil` leaves the socket
    ///     unbound (its datagrams then come from the unnamed address, which cannot be
    ///     answered). A stale socket file there (nothing bound to it) is replaced, and the
    ///     file is removed when the endpoint closes (if it is still the one it bound).
    ///   - remotePath: The peer to connect to: `sendTo(_, nil)` sends to it, and only its
    ///     datagrams arrive.
    ///   - logger: What the endpoint's ``DatagramTransport/logger`` extends with `local`
    ///     metadata; `nil`: the loop's ``EventLoop/logger``.
    ///   - factory: Makes the endpoint's protocol.
    /// - Returns: The transport and the protocol, once `connectionMade` ran.
    /// - Throws: ``TransportError``: `.invalidAddress` for a path that is empty, has a NUL
    ///   byte inside, or is longer than 107 bytes (an abstract name: 108); `.addressInUse` if
    ///   a live socket is bound at `localPath` or a file that is not a socket is in the way;
    ///   `.connectionRefused` if nothing is bound at `remotePath` (ENOENT, ECONNREFUSED);
    ///   `.invalidArgument` if neither path is given.
    /// - Important: Call from a task running on this loop.
    public func createUnixDatagramEndpoint<P: DatagramProtocol>(
        localPath: String? = nil,
        remotePath: String? = nil,
        logger: Logger? = nil,
        _ factory: () -> P
    ) async throws -> (any DatagramTransport, P) {
        guard localPath != nil || remotePath != nil else {
            throw TransportError(.invalidArgument, "createUnixDatagramEndpoint needs a local or a remote path", errno: EINVAL)
        }
        let local = localPath.map { SocketAddress(unixPath: $0) }
        let remote = remotePath.map { SocketAddress(unixPath: $0) }
        // Paths that cannot be a sockaddr_un fail before anything is touched.
        for address in [local, remote].compactMap({ $0 }) { _ = try address.withSockAddr { _, length in length } }
        if let local, !local.isAbstractUnix { try removeStaleUnixSocket(local) }
        let fd = Glibc.socket(AF_UNIX, casyncio_sock_dgram() | casyncio_sock_nonblock_cloexec(), 0)
        guard fd >= 0 else { throw TransportError(errno: errno, syscall: "socket") }
        var boundFile: UnixSocketFile?
        do {
            if let local {
                try Socket.bind(fd, local)
                if !local.isAbstractUnix { boundFile = UnixSocketFile(path: local.host) }
            }
            if let remote {
                let rc = try remote.withSockAddr { Glibc.connect(fd, $0, $1) }
                if rc != 0 { throw TransportError(errno: errno, syscall: "connect", address: remote) }
            }
        } catch {
            Glibc.close(fd)
            boundFile?.remove()
            throw error
        }
        let proto = factory()
        let transport = DatagramSocketTransport(loop: self, fd: fd, protocol: proto, peer: remote, logger: logger)
        transport.boundFile = boundFile
        return (await startDatagramTransport(transport), proto)
    }
}
