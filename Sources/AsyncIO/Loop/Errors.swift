//===----------------------------------------------------------------------===//
// swift-asyncio — Errors of the loop, futures and executors.
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

/// An error of the event loop itself: using it in a state that does not allow the call.
///
/// Switch on ``code`` to tell the cases apart; new codes may be added in later versions.
public struct EventLoopError: Error, Hashable, CustomStringConvertible {
    /// What went wrong.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: Hashable, Sendable {
            case closed, alreadyRunning, anotherLoopRunning, noRunningLoop, executorShutdown
            case signalInUse, invalidSignal, stoppedBeforeCompletion, wrongThread
        }
        fileprivate let base: Base

        /// The loop was closed; it cannot run or schedule anything any more.
        public static let closed = Code(base: .closed)
        /// `runForever`/`runUntilComplete` was called while the loop is already running.
        public static let alreadyRunning = Code(base: .alreadyRunning)
        /// Another event loop is already running on this thread.
        public static let anotherLoopRunning = Code(base: .anotherLoopRunning)
        /// The call needs an event loop running on the current thread and there is none.
        public static let noRunningLoop = Code(base: .noRunningLoop)
        /// The executor was shut down and takes no new work.
        public static let executorShutdown = Code(base: .executorShutdown)
        /// Another event loop already handles this signal.
        public static let signalInUse = Code(base: .signalInUse)
        /// The signal number cannot be handled (out of range, or SIGKILL/SIGSTOP).
        public static let invalidSignal = Code(base: .invalidSignal)
        /// `runUntilComplete` returned because the loop was stopped before its future was done.
        public static let stoppedBeforeCompletion = Code(base: .stoppedBeforeCompletion)
        /// The loop is bound to another thread (each loop of an ``EventLoopGroup`` runs on its
        /// own thread only).
        public static let wrongThread = Code(base: .wrongThread)

        /// The code's name, e.g. `"closed"`.
        public var description: String {
            switch base {
            case .closed: "closed"
            case .alreadyRunning: "alreadyRunning"
            case .anotherLoopRunning: "anotherLoopRunning"
            case .noRunningLoop: "noRunningLoop"
            case .executorShutdown: "executorShutdown"
            case .signalInUse: "signalInUse"
            case .invalidSignal: "invalidSignal"
            case .stoppedBeforeCompletion: "stoppedBeforeCompletion"
            case .wrongThread: "wrongThread"
            }
        }
    }

    /// What went wrong.
    public let code: Code
    /// A sentence for people.
    public let message: String

    /// An error with `code` and a `message` for people.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `EventLoopError.CODE: message`.
    public var description: String { "EventLoopError.\(code): \(message)" }

    /// Errors are equal when their codes are: the message is not compared.
    public static func == (lhs: EventLoopError, rhs: EventLoopError) -> Bool { lhs.code == rhs.code }
    /// Hashes the code only, as `==` compares it only.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }

    @usableFromInline static let closedError = EventLoopError(.closed, "the event loop is closed")
}

/// A failed system call: the errno it set and the call's name.
public struct IOError: Error, Hashable, CustomStringConvertible {
    /// The `errno` value the call failed with.
    public let errno: Int32
    /// The system call (or library function) that failed, e.g. `"epoll_ctl"`.
    public let syscall: String

    /// The error `errno` from the call named `syscall`.
    public init(errno: Int32, syscall: String) {
        self.errno = errno
        self.syscall = syscall
    }

    /// `CALL failed: strerror text (errno N)`.
    public var description: String {
        let text = strerror(errno).map { String(cString: $0) } ?? "errno \(errno)"
        return "\(syscall) failed: \(text) (errno \(errno))"
    }
}

/// A deadline passed before the awaited work finished (asyncio's `TimeoutError`).
///
/// Thrown by ``waitFor(_:timeout:)`` after the inner work was cancelled, and by
/// ``asCompleted(_:timeout:)`` and ``wait(_:timeout:returnWhen:)``'s callers' deadlines.
public struct TimeoutError: Error, Hashable, CustomStringConvertible {
    /// A timeout error.
    public init() {}
    /// `TimeoutError: the operation timed out`.
    public var description: String { "TimeoutError: the operation timed out" }
}

/// A Future was used in a state that does not allow the call, e.g. resolved twice or its
/// result read while pending (asyncio's `InvalidStateError`).
public struct InvalidStateError: Error, Hashable, CustomStringConvertible {
    /// A sentence for people.
    public let message: String
    /// An error with a `message` for people.
    public init(_ message: String) { self.message = message }
    /// `InvalidStateError: message`.
    public var description: String { "InvalidStateError: \(message)" }
}

/// Runs `body` (a libc call) until it does not fail with EINTR; throws ``IOError`` on failure.
@inline(__always)
func retryingSyscall<T: FixedWidthInteger>(_ name: StaticString, _ body: () -> T) throws(IOError) -> T {
    while true {
        let result = body()
        if result >= 0 { return result }
        let code = errno
        if code == EINTR { continue }
        throw IOError(errno: code, syscall: "\(name)")
    }
}
