//===----------------------------------------------------------------------===//
// swift-asyncio — connectReadPipe / connectWritePipe: pipes, FIFOs and character devices.
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
public import Logging
#if canImport(Glibc)
import Glibc
#endif

extension TransportError.Code {
    /// The fd cannot be watched with epoll (a regular file or a directory).
    public static let notPollable = TransportError.Code("notPollable")
}

extension EventLoop {
    /// Reads the pipe, FIFO or character device `fd` through a transport (asyncio's
    /// `connect_read_pipe`): `protocol.dataReceived` for each chunk, `eofReceived` when the
    /// writing side closes, then `connectionLost`. The transport owns `fd` from now on and
    /// closes it at the end; the fd is made non-blocking.
    ///
    /// - Parameters:
    ///   - fd: The pipe's reading end; the transport's from now on.
    ///   - logger: What the transport's ``StreamTransport/logger`` extends with `connection`
    ///     metadata; `nil`: the loop's ``EventLoop/logger``.
    ///   - factory: Makes the protocol that receives the bytes.
    /// - Returns: The transport and the protocol, once `connectionMade` ran.
    /// - Throws: ``TransportError`` `.notPollable` for a regular file (epoll cannot watch it:
    ///   read files with ``runInExecutor(_:_:)``), or the error of `fstat`/`fcntl`.
    /// - Important: Call from a task running on this loop.
    public func connectReadPipe<P: StreamProtocol>(
        _ fd: Int32, logger: Logger? = nil, _ factory: () -> P
    ) async throws -> (any StreamTransport, P) {
        try preparePipe(fd)
        return try await startPipe(fd, kind: .readPipe, logger: logger, factory())
    }

    /// Writes to the pipe, FIFO or character device `fd` through a transport (asyncio's
    /// `connect_write_pipe`), with the write buffer and flow control of a socket transport.
    /// `writeEOF()` (or `close()`) flushes and closes `fd`; when the reading side goes away the
    /// protocol's `connectionLost` gets ``TransportError`` `.brokenPipe` if data was pending.
    ///
    /// Connecting a write pipe makes the process ignore SIGPIPE if it had the default action
    /// (as Python does at start-up), so a closed reader is an error, not a killed process.
    /// - Parameters:
    ///   - fd: The pipe's writing end; the transport's from now on.
    ///   - logger: as for ``connectReadPipe(_:logger:_:)``.
    ///   - factory: Makes the protocol that writes (and hears `pauseWriting`/`resumeWriting`).
    /// - Returns: The transport and the protocol, once `connectionMade` ran.
    /// - Throws: as ``connectReadPipe(_:logger:_:)``.
    /// - Important: Call from a task running on this loop.
    public func connectWritePipe<P: StreamProtocol>(
        _ fd: Int32, logger: Logger? = nil, _ factory: () -> P
    ) async throws -> (any StreamTransport, P) {
        try preparePipe(fd)
        Self.ignoreSIGPIPE()
        return try await startPipe(fd, kind: .writePipe, logger: logger, factory())
    }

    /// Whether epoll can watch `fd`: true for pipes, FIFOs, sockets and most character
    /// devices; false for regular files, directories and devices such as /dev/null. Thread-safe.
    public static func canWatch(_ fd: Int32) -> Bool {
        Selector.canWatch(fd)
    }

    private func startPipe<P: StreamProtocol>(
        _ fd: Int32, kind: SocketTransport.Kind, logger: Logger?, _ proto: P
    ) async throws -> (any StreamTransport, P) {
        let transport = SocketTransport(
            loop: self, fd: fd, protocol: proto, kind: kind, log: ConnectionLogContext(base: logger ?? self.logger))
        let made = Future<Void>(loop: self)
        transport.start { made.complete(.success(())) }
        await made.waitDone()
        return (transport, proto)
    }

    /// Checks that `fd` can be polled and makes it non-blocking.
    func preparePipe(_ fd: Int32) throws {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw TransportError(errno: errno, syscall: "fstat") }
        let type = info.st_mode & S_IFMT
        guard type == S_IFIFO || type == S_IFCHR || type == S_IFSOCK else {
            throw TransportError(
                .notPollable,
                "fd \(fd) is \(type == S_IFREG ? "a regular file" : "not a pipe, FIFO, socket or character device"): "
                    + "epoll cannot watch it")
        }
        // Some character devices (/dev/null) do not support polling either: ask epoll.
        let probe = Result { () throws(IOError) in
            try selector.add(fd: fd, interest: [], token: Selector.wakeUpToken - 1)
            try selector.remove(fd: fd)
        }
        if case .failure(let error) = probe {
            if error.errno == EPERM {
                throw TransportError(.notPollable, "fd \(fd) does not support polling (epoll: EPERM)", errno: EPERM)
            }
            throw error
        }
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else {
            throw TransportError(errno: errno, syscall: "fcntl")
        }
    }

    /// Makes the process ignore SIGPIPE if it has the default action (as Python does at
    /// start-up): for the calls that cannot say MSG_NOSIGNAL (write on a pipe, sendfile).
    static func ignoreSIGPIPE() {
        var current = sigaction()
        sigaction(SIGPIPE, nil, &current)
        if current.__sigaction_handler.sa_handler == nil {   // SIG_DFL
            signal(SIGPIPE, SIG_IGN)
        }
    }
}
