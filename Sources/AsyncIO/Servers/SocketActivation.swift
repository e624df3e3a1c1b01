//===----------------------------------------------------------------------===//
// swift-asyncio — SocketActivation: the listening sockets systemd (or another supervisor)
// passes a server, as sd_listen_fds_with_names(3) reads them.
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

/// A socket a supervisor passed to this process: its file descriptor and the name the unit
/// gave it (`FileDescriptorName=`, `"unknown"` when none was given).
public struct ActivatedSocket: Sendable, Hashable {
    /// The file descriptor (3, 4, …).
    public let fileDescriptor: Int32
    /// The socket's name from `LISTEN_FDNAMES`, or `"unknown"`.
    public let name: String

    /// A passed socket: its fd and its name.
    public init(fileDescriptor: Int32, name: String) {
        self.fileDescriptor = fileDescriptor
        self.name = name
    }
}

/// systemd socket activation (the protocol of `sd_listen_fds(3)`): a supervisor binds and
/// listens, then starts the server with the sockets at fds 3, 4, … and three variables:
/// `LISTEN_PID` (the server's pid: the variables are for this process, not its children),
/// `LISTEN_FDS` (how many) and `LISTEN_FDNAMES` (their names, colon-separated).
///
/// ```swift
/// let sockets = try SocketActivation.listenFDs(unsetEnvironment: true)
/// if !sockets.isEmpty {
///     let server = try await loop.createServer(sockets: sockets.map(\.fileDescriptor)) { Echo() }
/// }
/// ```
/// A datagram socket (`ListenDatagram=`) goes to ``EventLoop/createDatagramEndpoint(sock:logger:_:)``
/// instead; ``EventLoopGroup/createServer(sockets:tls:backlog:_:)`` serves the sockets on every
/// loop of a group.
public enum SocketActivation {
    /// The first passed fd (`SD_LISTEN_FDS_START`).
    public static let firstDescriptor: Int32 = 3

    /// The sockets passed to this process: none if `LISTEN_PID` or `LISTEN_FDS` is not set or
    /// `LISTEN_PID` is another process's pid. Each fd is made close-on-exec, so that children
    /// do not inherit it.
    ///
    /// - Parameter unsetEnvironment: Remove the three variables afterwards (whatever the
    ///   outcome, as `sd_listen_fds(1)` does), so that children do not see them. `unsetenv`
    ///   is not thread-safe: call this early, before other threads read the environment.
    /// - Throws: ``TransportError`` `.invalidArgument` if a variable is malformed (a pid or
    ///   count that is not a number, a name count that does not match `LISTEN_FDS`).
    public static func listenFDs(unsetEnvironment: Bool = false) throws(TransportError) -> [ActivatedSocket] {
        defer {
            if unsetEnvironment {
                unsetenv("LISTEN_PID")
                unsetenv("LISTEN_FDS")
                unsetenv("LISTEN_FDNAMES")
            }
        }
        let sockets = try parse(
            listenPID: variable("LISTEN_PID"), listenFDs: variable("LISTEN_FDS"),
            names: variable("LISTEN_FDNAMES"), pid: getpid())
        for socket in sockets {
            let flags = fcntl(socket.fileDescriptor, F_GETFD)
            guard flags >= 0, fcntl(socket.fileDescriptor, F_SETFD, flags | FD_CLOEXEC) == 0 else {
                throw TransportError(errno: errno, syscall: "fcntl(\(socket.fileDescriptor), F_SETFD, FD_CLOEXEC)")
            }
        }
        return sockets
    }

    /// Reads the three variables' values for a process with `pid` (no side effects).
    static func parse(listenPID: String?, listenFDs: String?, names: String?, pid: Int32) throws(TransportError) -> [ActivatedSocket] {
        guard let listenPID, let listenFDs else { return [] }
        guard let owner = Int32(listenPID), owner > 0 else {
            throw TransportError(.invalidArgument, "LISTEN_PID is not a pid: \(listenPID)", errno: EINVAL)
        }
        guard owner == pid else { return [] }   // meant for another process (our parent)
        guard let count = Int32(listenFDs), count >= 0, count <= Int32.max - firstDescriptor else {
            throw TransportError(.invalidArgument, "LISTEN_FDS is not a count of fds: \(listenFDs)", errno: EINVAL)
        }
        guard count > 0 else { return [] }
        var labels = Array(repeating: "unknown", count: Int(count))
        if let names {
            let split = names.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard split.count == count else {
                throw TransportError(
                    .invalidArgument, "LISTEN_FDNAMES names \(split.count) sockets, LISTEN_FDS says \(count): \(names)",
                    errno: EINVAL)
            }
            labels = split
        }
        return labels.enumerated().map { ActivatedSocket(fileDescriptor: firstDescriptor + Int32($0.offset), name: $0.element) }
    }

    private static func variable(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}
