//===----------------------------------------------------------------------===//
// swift-asyncio — Unix signal handlers that run on the loop.
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
#if canImport(Glibc)
import Glibc
#endif

/// Which loop owns each signal: a signal is process-wide, so one loop at a time handles it.
private let signalOwners = SignalOwners()

/// The table of ``signalOwners``, shared by every loop's thread.
private final class SignalOwners: @unchecked Sendable {
    // @unchecked Sendable: `owners` is touched only under `lock`. A pthread mutex rather than
    // Synchronization's Mutex: ThreadSanitizer sees a pthread mutex's happens-before edges and
    // not those of the stdlib's futex-based Mutex (see LoopInbox).
    private let lock = ConditionLock()
    private var owners: [Int32: ObjectIdentifier] = [:]

    func withLock<T>(_ body: (inout [Int32: ObjectIdentifier]) throws -> T) rethrows -> T {
        try lock.withLock { try body(&owners) }
    }
}

/// A loop's signal pipe: the C handler writes each signal's number as a byte to `writeFD`;
/// the loop reads `readFD` and runs the handlers.
struct SignalState {
    let readFD: Int32
    let writeFD: Int32
    var handlers: [Int32: Handle] = [:]
}

extension EventLoop {
    /// Runs `handler` on the loop each time the process receives `signal` (asyncio's
    /// `add_signal_handler`), replacing an earlier handler of that signal on this loop.
    ///
    /// The signal handler itself only writes a byte to a pipe (async-signal-safe); the
    /// callback runs later on the loop, where it may do anything. Signals that arrive close
    /// together may be coalesced into one call.
    /// - Throws: ``EventLoopError`` with `.invalidSignal` (out of range, SIGKILL, SIGSTOP),
    ///   `.signalInUse` (another loop handles it), `.closed`; ``IOError`` if the pipe or
    ///   `sigaction` fails.
    /// - Important: Loop-bound.
    public func addSignalHandler(_ signal: Int32, _ handler: @escaping () throws -> Void) throws {
        assertInLoop()
        if isClosed { throw EventLoopError.closedError }
        guard signal > 0, signal <= casyncio_signal_max(), signal != SIGKILL, signal != SIGSTOP else {
            throw EventLoopError(.invalidSignal, "signal \(signal) cannot be handled")
        }
        let me = ObjectIdentifier(self)
        let owner = signalOwners.withLock { owners -> ObjectIdentifier? in
            if let owner = owners[signal], owner != me { return owner }
            owners[signal] = me
            return nil
        }
        if owner != nil {
            throw EventLoopError(.signalInUse, "signal \(signal) is already handled by another event loop")
        }
        do {
            let state = try signalPipe()
            if casyncio_signal_install(signal, state.writeFD) != 0 {
                throw IOError(errno: errno, syscall: "sigaction")
            }
            signals?.handlers[signal]?.cancel()
            signals?.handlers[signal] = Handle(loop: self, repeats: true, handler)
        } catch {
            _ = signalOwners.withLock { $0.removeValue(forKey: signal) }
            throw error
        }
    }

    /// Removes the handler of `signal` and restores the signal's default disposition.
    /// Returns whether a handler was registered.
    /// - Important: Loop-bound.
    @discardableResult
    public func removeSignalHandler(_ signal: Int32) -> Bool {
        assertInLoop()
        guard let handle = signals?.handlers.removeValue(forKey: signal) else { return false }
        handle.cancel()
        _ = casyncio_signal_restore_default(signal)
        _ = signalOwners.withLock { $0.removeValue(forKey: signal) }
        return true
    }

    /// Waits until the process receives one of `signals` and returns it. The handlers stay
    /// installed (until ``removeSignalHandler(_:)`` or ``close()``), so a second signal during a
    /// graceful shutdown does not kill the process. The usual end of a server:
    ///
    /// ```swift
    /// let signal = try await loop.waitForSignal([SIGINT, SIGTERM])
    /// server.close()
    /// ```
    /// - Throws: as ``addSignalHandler(_:_:)``; `CancellationError` if the task is cancelled.
    /// - Important: Call from a task running on this loop.
    public func waitForSignal(_ signals: [Int32]) async throws -> Int32 {
        preconditionInLoop()
        let received = Future<Int32>(loop: self)
        for signal in signals {
            try addSignalHandler(signal) { received.complete(.success(signal)) }
        }
        return try await received.value
    }

    /// Removes every signal handler and closes the signal pipe (on close).
    func removeAllSignalHandlers() {
        guard let state = signals else { return }
        for signal in state.handlers.keys {
            removeSignalHandler(signal)
        }
        _ = removeReader(state.readFD)
        Glibc.close(state.readFD)
        Glibc.close(state.writeFD)
        signals = nil
    }

    private func signalPipe() throws -> SignalState {
        if let signals { return signals }
        var fds: [Int32] = [0, 0]
        _ = try retryingSyscall("pipe2") { casyncio_pipe2(&fds, O_NONBLOCK | O_CLOEXEC) }
        let state = SignalState(readFD: fds[0], writeFD: fds[1])
        do {
            try addInternalReader(state.readFD) { [unowned self] in self.readSignals() }
        } catch {
            Glibc.close(fds[0])
            Glibc.close(fds[1])
            throw error
        }
        signals = state
        return state
    }

    private func readSignals() {
        guard let state = signals else { return }
        var buffer = (0 as UInt64, 0 as UInt64, 0 as UInt64, 0 as UInt64)
        while true {
            let n = withUnsafeMutableBytes(of: &buffer) { read(state.readFD, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            withUnsafeBytes(of: &buffer) { bytes in
                for i in 0..<n {
                    if let handle = signals?.handlers[Int32(bytes[i])], !handle.cancelled {
                        ready.append(.handle(handle))
                    }
                }
            }
        }
    }
}
