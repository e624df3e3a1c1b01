//===----------------------------------------------------------------------===//
// swift-asyncio — Future: a result that will be set later, on one loop.
//===----------------------------------------------------------------------===//

/// A token returned by ``Future/addDoneCallback(_:)`` to remove that callback again.
public struct DoneCallbackID: Hashable, Sendable {
    let rawValue: Int
}

/// The parts of a Future that do not depend on its value type (used by `gather`, `wait`).
public protocol AnyFuture: AnyObject, Sendable {
    /// The loop the future belongs to.
    var loop: EventLoop { get }
    /// Whether the future has a result, an error, or was cancelled.
    var isDone: Bool { get }
    /// Whether the future was cancelled.
    var isCancelled: Bool { get }
    /// The error of a failed future, `CancellationError` for a cancelled one, else `nil`.
    var error: (any Error)? { get }
    /// Requests cancellation; see ``Future/cancel()``.
    @discardableResult func cancel() -> Bool
    /// Internal: runs `callback` synchronously when the future completes (at once if done),
    /// handing it the future, so the callback need not capture the future it is stored in
    /// (a pending future abandoned with such a capture would never be freed).
    func _whenDoneErased(_ callback: @escaping (any AnyFuture) -> Void)
}

/// A result that will be available later (asyncio's `Future`): pending, then exactly one of
/// result, error or cancelled.
///
/// Done callbacks are scheduled on the loop with `callSoon` when the future completes, in the
/// order they were added. Awaiting ``value`` suspends the calling task until the future is done;
/// cancelling that task cancels the future (as asyncio does — wrap it in ``shield(_:)`` to
/// prevent that).
///
/// ```swift
/// let future = Future<Int>(loop: loop)
/// loop.callLater(after: .milliseconds(5)) { try future.setResult(42) }
/// let answer = try await future.value   // 42
/// ```
///
/// - Important: Loop-bound: create, resolve, cancel and inspect a future on its loop's thread
///   (or while the loop is not running). ``value`` may be awaited from any task; off the loop
///   it hops to the loop to register.
public class Future<Value: Sendable>: AnyFuture, _LoopTaskWait, @unchecked Sendable {
    // @unchecked Sendable: a future is handed between threads (awaited from any task), but
    // its state is read and written on its loop's thread only. Every public inspector and
    // mutator checks that in debug builds (assertInLoop); `value` hops to the loop, and
    // `description` reads the state only where that is allowed.

    @usableFromInline
    enum State {
        case pending
        case success(Value)
        case failure(any Error)
        case cancelled
    }

    @usableFromInline
    enum Waiter {
        /// A user callback, scheduled with callSoon.
        case callback(DoneCallbackID, (Future<Value>) -> Void)
        /// An internal callback, run synchronously at completion.
        case immediate((Future<Value>) -> Void)
        /// An internal callback of type-erased code (``AnyFuture``), run synchronously.
        case immediateErased((any AnyFuture) -> Void)
        /// An awaiting task.
        case continuation(UnsafeContinuation<Value, any Error>)
        /// An awaiting ``LoopTask`` body whose task's cancellation cancels this future
        /// directly (no handler of its own); resumed with `true`, it reads the state.
        case covered(UnsafeContinuation<Bool, any Error>)
    }

    /// The loop the future belongs to.
    public let loop: EventLoop
    // Loop-confined, never accessed overlappingly: no runtime exclusivity checks.
    @usableFromInline @exclusivity(unchecked) final var state: State = .pending
    // The first waiter is kept inline: most futures have exactly one.
    @usableFromInline @exclusivity(unchecked) final var firstWaiter: Waiter?
    @usableFromInline @exclusivity(unchecked) final var moreWaiters: [Waiter] = []
    @usableFromInline @exclusivity(unchecked) final var nextCallbackID = 0
    @usableFromInline @exclusivity(unchecked) final var errorRetrieved = false
    /// Whether the future failed (an error, not a cancellation): lets `deinit`, which is
    /// compiled for any `Value`, skip reading `state` (a generic metadata lookup, ~300
    /// instructions) unless there is an error to report.
    @usableFromInline @exclusivity(unchecked) final var failed = false

    /// Creates a pending future on `loop`.
    // Inlinable, like the hot paths below: compiled generically, every touch of `State` or
    // `Waiter` looks up their metadata at run time (~300 instructions each, several per
    // future); specialized in the caller's module, none does.
    @inlinable
    public init(loop: EventLoop) {
        self.loop = loop
    }

    deinit {
        if failed, !errorRetrieved, case .failure(let error) = state {
            loop.logger.error(
                "\(Self.self) error was never retrieved",
                metadata: ["error": "\(error)", "loop": "\(loop.name)"])
        }
    }

    // MARK: - Inspecting

    /// Whether the future has a result, an error, or was cancelled.
    /// - Important: Loop-bound (checked in debug builds).
    @inlinable
    public final var isDone: Bool {
        loop.assertInLoop()
        if case .pending = state { return false }
        return true
    }

    /// Whether the future was cancelled.
    /// - Important: Loop-bound (checked in debug builds).
    public final var isCancelled: Bool {
        loop.assertInLoop()
        if case .cancelled = state { return true }
        return false
    }

    /// The error of a failed future, `CancellationError` for a cancelled one, `nil` if it
    /// succeeded or is pending (asyncio's `exception()`, except that pending is not an error).
    /// - Important: Loop-bound (checked in debug builds).
    public final var error: (any Error)? {
        loop.assertInLoop()
        switch state {
        case .failure(let error):
            errorRetrieved = true
            return error
        case .cancelled: return CancellationError()
        case .pending, .success: return nil
        }
    }

    /// The result (asyncio's `result()`).
    ///
    /// - Throws: the future's error; `CancellationError` if it was cancelled;
    ///   ``InvalidStateError`` if it is still pending.
    /// - Important: Loop-bound (checked in debug builds).
    @inlinable
    public final func result() throws -> Value {
        loop.assertInLoop()
        switch state {
        case .success(let value): return value
        case .failure(let error):
            errorRetrieved = true
            throw error
        case .cancelled: throw CancellationError()
        case .pending: throw InvalidStateError("result is not ready")
        }
    }

    // MARK: - Resolving

    /// Sets the result and schedules the done callbacks.
    /// - Throws: ``InvalidStateError`` if the future is already done.
    /// - Important: Loop-bound.
    @inlinable
    public final func setResult(_ value: Value) throws(InvalidStateError) {
        loop.assertInLoop()
        guard case .pending = state else { throw InvalidStateError("setResult on a future that is already done") }
        complete(.success(value))
    }

    /// Sets an error and schedules the done callbacks. To cancel, use ``cancel()``.
    /// - Throws: ``InvalidStateError`` if the future is already done.
    /// - Important: Loop-bound.
    public final func setError(_ error: any Error) throws(InvalidStateError) {
        loop.assertInLoop()
        guard case .pending = state else { throw InvalidStateError("setError on a future that is already done") }
        complete(.failure(error))
    }

    /// Cancels the future: if it is pending it becomes cancelled and its callbacks are
    /// scheduled; awaiters get `CancellationError`.
    ///
    /// For a ``LoopTask`` this requests cancellation of the task's body instead; the task
    /// becomes cancelled when the body ends with `CancellationError`.
    /// - Returns: false if the future was already done.
    /// - Important: Loop-bound.
    // Not final: LoopTask and runInExecutor's future (ExecutorFuture) override it, and every
    // cancellation (an awaiter's, the helpers') goes through it.
    @discardableResult
    public func cancel() -> Bool {
        loop.assertInLoop()
        guard case .pending = state else { return false }
        complete(.cancelled)
        return true
    }

    /// Completes a pending future (internal; no state check beyond pending).

    @inlinable
    final func complete(_ newState: State) {
        guard case .pending = state else { return }
        if case .failure = newState { failed = true }
        state = newState
        guard let first = firstWaiter else { return }
        firstWaiter = nil
        fire(first)
        if !moreWaiters.isEmpty {
            let rest = moreWaiters
            moreWaiters = []
            for waiter in rest { fire(waiter) }
        }
    }

    /// Completes the future with `result` unless it is already done (e.g. cancelled).
    final func completeIfPending(_ result: Result<Value, any Error>) {
        switch result {
        case .success(let value): complete(.success(value))
        case .failure(let error as CancellationError): _ = error; complete(.cancelled)
        case .failure(let error): complete(.failure(error))
        }
    }

    @inlinable
    final func fire(_ waiter: Waiter) {
        switch waiter {
        case .continuation(let continuation):
            resume(continuation)
        case .covered(let continuation):
            continuation.resume(returning: true)
        case .immediate(let callback):
            callback(self)
        case .immediateErased(let callback):
            callback(self)
        case .callback(_, let callback):
            loop.schedule { callback(self) }
        }
    }

    @inlinable
    final func resume(_ continuation: UnsafeContinuation<Value, any Error>) {
        switch state {
        case .success(let value): continuation.resume(returning: value)
        case .failure(let error):
            errorRetrieved = true
            continuation.resume(throwing: error)
        case .cancelled: continuation.resume(throwing: CancellationError())
        case .pending: preconditionFailure("resuming an awaiter of a pending future")
        }
    }

    @inlinable
    final func addWaiter(_ waiter: Waiter) {
        if firstWaiter == nil {
            firstWaiter = waiter
        } else {
            moreWaiters.append(waiter)
        }
    }

    // MARK: - Callbacks

    /// Adds a callback that runs on the loop (scheduled with `callSoon`) once the future is
    /// done; if it is done already, the callback is scheduled now.
    /// - Returns: A token for ``removeDoneCallback(_:)``.
    /// - Important: Loop-bound.
    @discardableResult
    public final func addDoneCallback(_ callback: @escaping (Future<Value>) -> Void) -> DoneCallbackID {
        loop.assertInLoop()
        nextCallbackID += 1
        let id = DoneCallbackID(rawValue: nextCallbackID)
        if isDone {
            loop.schedule { callback(self) }
        } else {
            addWaiter(.callback(id, callback))
        }
        return id
    }

    /// Removes a callback added with ``addDoneCallback(_:)`` that has not been scheduled yet.
    /// - Returns: whether it was found.
    /// - Important: Loop-bound.
    @discardableResult
    public final func removeDoneCallback(_ id: DoneCallbackID) -> Bool {
        loop.assertInLoop()
        if case .callback(let first, _) = firstWaiter, first == id {
            if moreWaiters.isEmpty {
                firstWaiter = nil
            } else {
                firstWaiter = moreWaiters.removeFirst()
            }
            return true
        }
        if let index = moreWaiters.firstIndex(where: {
            if case .callback(let other, _) = $0 { return other == id }
            return false
        }) {
            moreWaiters.remove(at: index)
            return true
        }
        return false
    }

    /// Internal: runs `callback` synchronously when the future completes (at once if done),
    /// handing it the future: capture nothing to reach it (a pending future abandoned with
    /// its callback holding it would never be freed).
    final func _whenDone(_ callback: @escaping (Future<Value>) -> Void) {
        loop.assertInLoop()
        if isDone {
            callback(self)
        } else {
            addWaiter(.immediate(callback))
        }
    }

    /// Internal: the ``LoopTask`` awaiting this future in a covered wait was cancelled:
    /// cancel the future, as the awaiter's cancellation handler would, with the task's
    /// message if the future is a task itself (asyncio's `_fut_waiter.cancel(msg)`).
    public final func _waitingTaskCancelled(_ id: UInt64, message: String?) {
        _ = cancel(forwarding: message)
    }

    /// Cancels the future on behalf of a task that was cancelled with `message` while it
    /// waited for it: a plain future has no message to keep (a ``LoopTask`` does).
    func cancel(forwarding message: String?) -> Bool {
        cancel()
    }

    public final func _whenDoneErased(_ callback: @escaping (any AnyFuture) -> Void) {
        loop.assertInLoop()
        if isDone {
            callback(self)
        } else {
            addWaiter(.immediateErased(callback))
        }
    }

    // MARK: - Awaiting

    /// The result, awaited: suspends until the future is done.
    ///
    /// - Throws: the future's error, or `CancellationError` if it was cancelled or the awaiting
    ///   task was cancelled (which cancels the future too, as in asyncio); awaited off the
    ///   loop, ``EventLoopError/Code-swift.struct/closed`` if the loop is closed, or closes
    ///   before it took the wait.
    @inlinable
    public final nonisolated(nonsending) var value: Value {
        get async throws {
            if loop.inLoopThread {
                switch state {
                case .success(let value): return value
                case .failure(let error):
                    errorRetrieved = true
                    throw error
                case .cancelled: throw CancellationError()
                case .pending: break
                }
            }
            let loop = self.loop
            // A LoopTask's own Swift task (not a child, not another task) awaiting on the
            // loop: its cancel(message:) cancels this future directly, so the wait needs no
            // cancellation handler (a status record added and removed, each under the task's
            // status lock, and an executor hop into the handler's body: ~1,100 instructions).
            if let owner = loop.coveringTask() {
                let covered = try await _unsafeInheritExecutor_withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Bool, any Error>) in
                    // The continuation is the waiting task: if it is not the one whose step
                    // runs (a `Task.immediate` started inside that step), the handler path.
                    guard loop.isRunningTask(continuation) else {
                        continuation.resume(returning: false)
                        return
                    }
                    // Cancelled before it waits (by cancel(message:), or by the body itself
                    // through `withUnsafeCurrentTask`): what the handler would do at once.
                    // While it waits, only cancel(message:) can cancel the task.
                    if owner.cancelling() > 0 || Task.isCancelled { _ = cancel() }
                    if isDone {
                        continuation.resume(returning: true)
                    } else {
                        owner._setCoveredWait(self, id: 0)
                        addWaiter(.covered(continuation))
                    }
                }
                if covered {
                    owner._setCoveredWait(nil, id: 0)
                    return try result()
                }
            }
            return try await _unsafeInheritExecutor_withTaskCancellationHandler {
                try await _unsafeInheritExecutor_withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Value, any Error>) in
                    if loop.inLoopThread {
                        self.addContinuation(continuation)
                    } else {
                        self.addContinuationFromAnotherThread(continuation)
                    }
                }
            } onCancel: {
                loop.execute { _ = self.cancel() }
            }
        }
    }

    @inlinable
    final func addContinuation(_ continuation: UnsafeContinuation<Value, any Error>) {
        if isDone {
            resume(continuation)
        } else {
            addWaiter(.continuation(continuation))
        }
    }

    /// Hands `continuation` to the loop from another thread. A loop closed before it took it
    /// (stopped, then closed with the hand-over still queued) resumes it with `closed`, as a
    /// loop closed already does: the awaiting task, which runs elsewhere, must not wait
    /// forever, nor keep the future and its loop. (A handle with a drop action, not a bare
    /// closure: a closing loop drops closures unrun and silently.)
    @usableFromInline
    final func addContinuationFromAnotherThread(_ continuation: UnsafeContinuation<Value, any Error>) {
        do {
            try loop.callSoonThreadSafe({ self.addContinuation(continuation) }, onDrop: {
                continuation.resume(throwing: EventLoopError.closedError)
            })
        } catch {
            continuation.resume(throwing: error)
        }
    }

    /// Waits until the future is done without cancelling it if the awaiting task is cancelled.
    /// Must be called on the loop.
    final func waitDone() async {
        if isDone { return }
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            self._whenDone { _ in continuation.resume() }
        }
    }
}

extension Future: CustomStringConvertible {
    /// The future's type and state (`pending`, `finished`, `failed: …`, `cancelled`).
    /// Thread-safe: off the loop's thread (while it runs) the state cannot be read safely, and
    /// the description says `state unknown off the loop` instead.
    public var description: String {
        guard loop.mayTouchLoopState else { return "\(Self.self)(state unknown off the loop)" }
        let status: String
        switch state {
        case .pending: status = "pending"
        case .success: status = "finished"
        case .failure(let error): status = "failed: \(error)"
        case .cancelled: status = "cancelled"
        }
        return "\(Self.self)(\(status))"
    }
}
