//===----------------------------------------------------------------------===//
// swift-asyncio — ConcurrentFuture: a thread-safe future that blocks threads while they wait.
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

/// A result that will be set later, that any thread may wait for by blocking
/// (Python's `concurrent.futures.Future`), returned by
/// ``EventLoop/runCoroutineThreadSafe(name:_:)``.
///
/// ```swift
/// // On a thread of your own, not the loop's:
/// let future = try loop.runCoroutineThreadSafe { try await fetchConfig() }
/// let config = try future.result(timeout: .seconds(5))
/// ```
///
/// Unlike ``Future`` it is guarded by a mutex and a condition variable, because it is made
/// to be shared between the loop and other threads; don't block the loop's thread on it.
///
/// - Note: Thread-safe: every member may be used from any thread.
public final class ConcurrentFuture<Value: Sendable>: @unchecked Sendable {
    // @unchecked Sendable: `state` and `cancelHook` are read and written with `mutex` held
    // only; the condition variable is used with that mutex.

    private enum State {
        case pending
        case finished(Result<Value, any Error>)
        case cancelled
    }

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var state = State.pending
    /// Called once if the future is cancelled while pending (outside the mutex).
    private var cancelHook: (@Sendable () -> Void)?
    /// The loop that completes the future: blocking its thread in `result` would deadlock.
    private let loop: EventLoop?

    /// Creates a pending future, completed by `loop` (whose thread may then not block on it).
    init(loop: EventLoop?) {
        self.loop = loop
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        // Timed waits on the monotonic clock: a change of the wall clock does not move them.
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    private func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    // MARK: - Inspecting

    /// Whether the future has a result, an error, or was cancelled.
    public var isDone: Bool {
        withLock {
            if case .pending = state { return false }
            return true
        }
    }

    /// Whether the future was cancelled.
    public var isCancelled: Bool {
        withLock {
            if case .cancelled = state { return true }
            return false
        }
    }

    /// Blocks the calling thread until the future is done, at most `timeout`, and returns the
    /// result (`concurrent.futures.Future.result(timeout)`).
    ///
    /// - Parameter timeout: How long to wait; `nil` waits as long as it takes.
    /// - Throws: the work's error; `CancellationError` if the future was cancelled;
    ///   ``TimeoutError`` if it is still pending after `timeout` (it is not cancelled then:
    ///   call ``cancel()`` to give up on it).
    /// - Important: Never call it on the thread of the loop that completes the future: the
    ///   loop could not run the work while its thread waits (a programmer error; it traps).
    public func result(timeout: Duration? = nil) throws -> Value {
        if let loop {
            precondition(
                !loop.inLoopThread,
                "ConcurrentFuture.result called on the thread of loop '\(loop.name)', which completes it: deadlock")
        }
        // Saturating: a "forever" timeout (Duration.seconds(.max)) must not wrap to the past.
        let deadline = timeout.map { monotonicNanoseconds().saturatingAdd($0.clampedNanoseconds) }
        let outcome: State = withLock {
            while case .pending = state {
                guard let deadline else {
                    pthread_cond_wait(condition, mutex)
                    continue
                }
                let now = monotonicNanoseconds()
                if now >= deadline { break }
                var until = timespec(
                    tv_sec: Int(deadline / 1_000_000_000),
                    tv_nsec: Int(deadline % 1_000_000_000))
                _ = pthread_cond_timedwait(condition, mutex, &until)
            }
            return state
        }
        switch outcome {
        case .pending: throw TimeoutError()
        case .cancelled: throw CancellationError()
        case .finished(let result): return try result.get()
        }
    }

    // MARK: - Completing

    /// Cancels the future if it is pending: every waiting thread wakes up with
    /// `CancellationError`, and the work behind it is asked to stop (for
    /// ``EventLoop/runCoroutineThreadSafe(name:_:)``: its task is cancelled on the loop).
    /// - Returns: false if the future was already done.
    @discardableResult
    public func cancel() -> Bool {
        let hook: (@Sendable () -> Void)?
        pthread_mutex_lock(mutex)
        guard case .pending = state else {
            pthread_mutex_unlock(mutex)
            return false
        }
        state = .cancelled
        hook = cancelHook
        cancelHook = nil
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
        hook?()
        return true
    }

    /// Completes the future unless it is done already (e.g. cancelled); wakes the waiters.
    func complete(_ result: Result<Value, any Error>) {
        withLock {
            guard case .pending = state else { return }
            if case .failure(let error) = result, error is CancellationError {
                state = .cancelled
            } else {
                state = .finished(result)
            }
            cancelHook = nil
            pthread_cond_broadcast(condition)
        }
    }

    /// Sets what ``cancel()`` asks the work behind the future to do.
    func onCancel(_ hook: @escaping @Sendable () -> Void) {
        withLock { cancelHook = hook }
    }
}

extension ConcurrentFuture: CustomStringConvertible {
    /// The future's type and state (`pending`, `finished`, `failed: …`, `cancelled`).
    public var description: String {
        let status: String = withLock {
            switch state {
            case .pending: return "pending"
            case .finished(.success): return "finished"
            case .finished(.failure(let error)): return "failed: \(error)"
            case .cancelled: return "cancelled"
            }
        }
        return "\(Self.self)(\(status))"
    }
}
