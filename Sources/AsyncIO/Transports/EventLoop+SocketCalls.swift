//===----------------------------------------------------------------------===//
// swift-asyncio — Socket coroutines: asyncio's sock_recv, sock_sendall, sock_accept, …
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
#if canImport(Glibc)
import Glibc
#endif

/// asyncio's low-level socket coroutines (`loop.sock_recv`, `sock_recv_into`,
/// `sock_recvfrom`, `sock_sendall`, `sock_sendto`, `sock_connect`, `sock_accept`): one call on
/// a socket you own, without a transport.
///
/// Each call tries the system call first; when it would block, the loop watches the fd until
/// it is ready and tries again (no busy loop, no thread). While a call waits, the loop owns
/// the fd's reader (receives, accept) or writer (sends, connect); the watcher is removed
/// before the call returns, throws or is cancelled.
///
/// ```swift
/// let fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
/// try await loop.sockConnect(fd, to: SocketAddress(ipAddress: "127.0.0.1", port: 7000))
/// try await loop.sockSendAll(fd, Array("hello\n".utf8))
/// let reply = try await loop.sockRecv(fd, max: 4096)   // [] at EOF
/// close(fd)
/// ```
///
/// Rules (asyncio's, with its checks made errors):
/// - The socket must be non-blocking (`O_NONBLOCK`): a blocking one would stall the loop, so
///   it is refused with ``TransportError/Code-swift.struct/invalidArgument``.
/// - One waiting call per direction: a receive while another receive (or a transport) reads
///   the same fd is refused with ``TransportError/Code-swift.struct/invalidArgument``, where
///   asyncio would silently replace the first reader and leave it hanging.
/// - Cancelling the task while a call waits removes the watcher and throws
///   `CancellationError`; nothing was received or sent by the cancelled attempt (a
///   `sockSendAll` cancelled part-way has sent a prefix, as in asyncio).
/// - You keep the fd: these calls never close it.
///
/// - Important: Loop-bound: call from a task running on this loop.
extension EventLoop {
    /// Receives into the start of `buffer` (asyncio's `sock_recv_into` with a `bytearray`),
    /// up to `buffer.count` bytes, waiting until bytes arrive, and returns how many; 0 at end
    /// of stream (or for an empty buffer). Reuse one buffer for every call: nothing is
    /// allocated.
    /// - Throws: ``TransportError``, `CancellationError`.
    public func sockRecv(_ fd: Int32, into buffer: inout [UInt8]) async throws -> Int {
        if buffer.isEmpty { return 0 }
        return try await untilReady(fd, write: false, "sockRecv(into:)") { () throws -> Int? in
            let received = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if received >= 0 { return received }
            return try Self.wouldBlock("recv")
        }
    }

    /// Receives up to `max` bytes from the stream or datagram socket `fd` (asyncio's
    /// `sock_recv`), waiting until some arrive. Returns `[]` at end of stream.
    /// - Throws: ``TransportError`` (e.g. `.connectionReset`), `CancellationError`.
    public func sockRecv(_ fd: Int32, max: Int) async throws -> [UInt8] {
        precondition(max > 0, "sockRecv needs a positive max")
        return try await untilReady(fd, write: false, "sockRecv") { () throws -> [UInt8]? in
            var completed = false
            let bytes = try [UInt8](unsafeUninitializedCapacity: max) { buffer, count in
                let received = Glibc.recv(fd, buffer.baseAddress, max, 0)
                if received >= 0 {
                    count = received
                    completed = true
                } else if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                    throw TransportError(errno: errno, syscall: "recv")
                }
            }
            return completed ? bytes : nil
        }
    }

    /// Receives into memory you own (asyncio's `sock_recv_into`), waiting until bytes arrive,
    /// and returns how many; 0 at end of stream (or for an empty buffer). `buffer` must stay
    /// valid until the call returns.
    /// - Throws: ``TransportError``, `CancellationError`.
    public func sockRecv(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) async throws -> Int {
        if buffer.isEmpty { return 0 }
        return try await untilReady(fd, write: false, "sockRecv(into:)") { () throws -> Int? in
            let received = Glibc.recv(fd, buffer.baseAddress, buffer.count, 0)
            if received >= 0 { return received }
            return try Self.wouldBlock("recv")
        }
    }

    /// Receives one datagram of up to `max` bytes (asyncio's `sock_recvfrom`; a longer one is
    /// truncated) and the address it came from (`nil` for an unnamed Unix peer).
    /// - Throws: ``TransportError``, `CancellationError`.
    public func sockRecvFrom(_ fd: Int32, max: Int) async throws -> (bytes: [UInt8], address: SocketAddress?) {
        precondition(max > 0, "sockRecvFrom needs a positive max")
        return try await untilReady(fd, write: false, "sockRecvFrom") { () throws -> ([UInt8], SocketAddress?)? in
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            var completed = false
            let bytes = try [UInt8](unsafeUninitializedCapacity: max) { buffer, count in
                let received = withUnsafeMutableBytes(of: &storage) { raw in
                    Glibc.recvfrom(fd, buffer.baseAddress, max, 0,
                                   raw.baseAddress?.assumingMemoryBound(to: sockaddr.self), &length)
                }
                if received >= 0 {
                    count = received
                    completed = true
                } else if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                    throw TransportError(errno: errno, syscall: "recvfrom")
                }
            }
            guard completed else { return nil }
            return (bytes, length > 0 ? SocketAddress(storage: storage, length: length) : nil)
        }
    }

    /// Sends all of `bytes` on the stream socket `fd` (asyncio's `sock_sendall`), waiting
    /// whenever the socket's buffer is full. Never raises SIGPIPE.
    /// - Throws: ``TransportError`` (e.g. `.brokenPipe`, `.connectionReset`; what was sent
    ///   before stays sent), `CancellationError`.
    public func sockSendAll(_ fd: Int32, _ bytes: [UInt8]) async throws {
        var offset = 0
        while offset < bytes.count {
            offset += try await untilReady(fd, write: true, "sockSendAll") { () throws -> Int? in
                let sent = bytes.withUnsafeBytes { raw in
                    Glibc.send(fd, raw.baseAddress.map { $0 + offset }, raw.count - offset, Int32(MSG_NOSIGNAL))
                }
                if sent >= 0 { return sent }
                return try Self.wouldBlock("send")
            }
        }
    }

    /// Sends `bytes` as one datagram to `address` (asyncio's `sock_sendto`) and returns how
    /// many bytes were sent.
    /// - Throws: ``TransportError`` (e.g. a datagram too long: `EMSGSIZE`), `CancellationError`.
    public func sockSendTo(_ fd: Int32, _ bytes: [UInt8], to address: SocketAddress) async throws -> Int {
        try await untilReady(fd, write: true, "sockSendTo") { () throws -> Int? in
            let sent = try bytes.withUnsafeBytes { raw in
                try address.withSockAddr { Glibc.sendto(fd, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL), $0, $1) }
            }
            if sent >= 0 { return sent }
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return nil }
            throw TransportError(errno: errno, syscall: "sendto", address: address)
        }
    }

    /// Connects the socket `fd` to `address` (asyncio's `sock_connect`), waiting until the
    /// connection is made or fails.
    /// - Throws: ``TransportError`` naming the address (e.g. `.connectionRefused`),
    ///   `CancellationError` (the connect is then abandoned half-way: close the socket).
    public func sockConnect(_ fd: Int32, to address: SocketAddress) async throws {
        try checkSocketCall(fd, "sockConnect")
        if try Socket.connect(fd, address) { return }
        let _: Void = try await untilReady(fd, write: true, "sockConnect", firstTryDone: true) { () throws -> Void? in
            let error = Socket.intOption(fd, SOL_SOCKET, SO_ERROR)
            if error == 0 { return () }
            if error == EINPROGRESS || error == EALREADY { return nil }
            throw TransportError(errno: error, syscall: "connect", address: address)
        }
    }

    /// Accepts a connection on the listening socket `fd` (asyncio's `sock_accept`), waiting
    /// for one. Returns the new socket, non-blocking and close-on-exec (yours to close), and
    /// the peer's address (`nil` for an unnamed Unix peer).
    /// - Throws: ``TransportError`` (e.g. `.tooManyOpenFiles`), `CancellationError`.
    public func sockAccept(_ fd: Int32) async throws -> (fd: Int32, address: SocketAddress?) {
        try await untilReady(fd, write: false, "sockAccept") { () throws -> (Int32, SocketAddress?)? in
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let accepted = withUnsafeMutableBytes(of: &storage) { raw in
                casyncio_accept4(fd, raw.baseAddress?.assumingMemoryBound(to: sockaddr.self), &length,
                                 casyncio_sock_nonblock_cloexec())
            }
            if accepted >= 0 {
                return (accepted, length > 0 ? SocketAddress(storage: storage, length: length) : nil)
            }
            // A connection that was reset while queued: wait for the next one.
            if errno == ECONNABORTED { return nil }
            return try Self.wouldBlock("accept4")
        }
    }

    // MARK: - Waiting for the fd

    /// After a failed call: `nil` (wait and try again) for EAGAIN / EINTR, else the error.
    static func wouldBlock<T>(_ syscall: String) throws -> T? {
        if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return nil }
        throw TransportError(errno: errno, syscall: syscall)
    }

    /// Refuses what asyncio refuses: a call off the loop's thread, and a blocking socket.
    private func checkSocketCall(_ fd: Int32, _ operation: StaticString) throws {
        guard mayTouchLoopState else {
            throw EventLoopError(.wrongThread, "\(operation) must be called from a task running on the event loop '\(name)'")
        }
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0 else { throw TransportError(errno: errno, syscall: "fcntl") }
        guard flags & O_NONBLOCK != 0 else {
            throw TransportError(.invalidArgument, "\(operation): the socket \(fd) must be non-blocking")
        }
    }

    /// Calls `attempt` until it returns a value; while it returns `nil` (the call would
    /// block), waits until `fd` is readable (or writable, with `write`).
    func untilReady<T>(
        _ fd: Int32, write: Bool, _ operation: StaticString, firstTryDone: Bool = false,
        _ attempt: () throws -> T?
    ) async throws -> T {
        if !firstTryDone {
            try checkSocketCall(fd, operation)
            if let value = try attempt() { return value }
        }
        while true {
            try await waitUntilReady(fd, write: write, operation)
            if let value = try attempt() { return value }
        }
    }

    /// Suspends until `fd` is readable (or writable), with a one-shot watcher that a
    /// cancellation removes. A ``LoopTask``'s own wait is ended by its `cancel(message:)`
    /// directly (see ``Future/value``); other tasks' waits install a cancellation handler.
    private func waitUntilReady(_ fd: Int32, write: Bool, _ operation: StaticString) async throws {
        let index = Int(fd)
        if index < registrations.count {
            let registration = registrations[index]
            if (write ? registration.writer : registration.reader) != nil {
                throw TransportError(
                    .invalidArgument,
                    "\(operation): the fd \(fd) is already watched for \(write ? "writing" : "reading") (by a transport or another call)")
            }
        }
        let wait = SocketWait(loop: self, fd: fd, write: write)
        if let owner = coveringTask() {
            let covered = try await _unsafeInheritExecutor_withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Bool, any Error>) in
                guard isRunningTask(continuation) else {
                    continuation.resume(returning: false)
                    return
                }
                if owner.cancelling() > 0 || Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                } else if wait.start(continuation) {
                    owner._setCoveredWait(wait, id: 0)
                }
            }
            if covered {
                owner._setCoveredWait(nil, id: 0)
                return
            }
        }
        _ = try await _unsafeInheritExecutor_withTaskCancellationHandler {
            try await _unsafeInheritExecutor_withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Bool, any Error>) in
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                } else {
                    wait.start(continuation)
                }
            }
        } onCancel: {
            execute { wait.cancel() }
        }
    }
}

/// One wait of a socket call: its continuation until the fd is ready or the task is
/// cancelled, whichever comes first (both on the loop).
private final class SocketWait: _LoopTaskWait, @unchecked Sendable {
    // @unchecked Sendable: created on the loop; the cancellation handler only hops back to
    // the loop before touching it.
    let loop: EventLoop
    let fd: Int32
    let write: Bool
    var continuation: UnsafeContinuation<Bool, any Error>?

    init(loop: EventLoop, fd: Int32, write: Bool) {
        self.loop = loop
        self.fd = fd
        self.write = write
    }

    /// Watches the fd for `continuation`; whether it waits (false: it was resumed with the
    /// watcher's error).
    @discardableResult
    func start(_ continuation: UnsafeContinuation<Bool, any Error>) -> Bool {
        do {
            _ = try loop.addWatcher(fd, write: write) { [self] in
                _ = loop.removeWatcher(fd, write: write)
                finish(nil)
            }
            self.continuation = continuation
            return true
        } catch {
            continuation.resume(throwing: TransportError.boundary(error))
            return false
        }
    }

    /// The waiting task was cancelled: if still waiting (not woken meanwhile), this wait's
    /// watcher is the fd's; remove it and resume with `CancellationError`.
    func cancel() {
        guard continuation != nil else { return }
        _ = loop.removeWatcher(fd, write: write)
        finish(CancellationError())
    }

    func _waitingTaskCancelled(_ id: UInt64, message: String?) {
        cancel()
    }

    func finish(_ error: (any Error)?) {
        guard let continuation else { return }
        self.continuation = nil
        if let error { continuation.resume(throwing: error) } else { continuation.resume(returning: true) }
    }
}
