//===----------------------------------------------------------------------===//
// swift-asyncio — Lock: asyncio.Lock, a FIFO-fair mutual-exclusion lock for loop tasks.
//===----------------------------------------------------------------------===//

/// A mutual-exclusion lock for tasks on one event loop (asyncio's `Lock`).
///
/// Tasks that find it locked wait in FIFO order, and ``release()`` wakes the oldest: a task
/// arriving while a woken waiter has not run yet queues behind it instead of jumping ahead.
/// Cancelling a waiting task ends its wait with `CancellationError`; if the task had already
/// been woken (promised the lock) and is cancelled before it runs, the wake-up passes to the
/// next waiter, so none is lost.
///
/// Like asyncio's, the lock has no owner: any task may release it. Taking and releasing it
/// when no task waits only flips a flag (no allocation, no loop needed).
///
/// ```swift
/// let lock = Lock()
/// try await lock.withLock {
///     balance += try await fetchDeposit()   // no other task runs this section meanwhile
/// }
/// ```
///
/// - Important: Loop-bound: use it from tasks running on one loop. It binds to the loop of
///   its first waiting task; waiting from a task on another loop traps (asyncio's "bound to
///   a different event loop"). No OS lock is involved: it does not protect data shared with
///   other threads.
public final class Lock: @unchecked Sendable {
    // @unchecked Sendable: shared by the tasks of one loop, touched on that loop's thread
    // only (checked in debug builds once the lock is bound to its loop).

    // Loop-confined, never accessed overlappingly: no runtime exclusivity checks.
    @exclusivity(unchecked) private var locked = false
    /// Created at the first contention, on the loop of that waiter.
    @exclusivity(unchecked) var waiters: WaiterQueue?

    /// Creates an unlocked lock (bound to no loop until a task waits for it).
    public init() {}

    /// Whether the lock is held (asyncio's `locked()`).
    /// - Important: Loop-bound.
    public var isLocked: Bool {
        waiters?.loop.assertInLoop()
        return locked
    }

    /// Tasks waiting for the lock (woken ones that have not run yet included).
    var waiterCount: Int { waiters?.count ?? 0 }

    /// Takes the lock, waiting in FIFO order while it is held or promised to an earlier
    /// waiter.
    ///
    /// - Throws: `CancellationError` if the task is cancelled while waiting (it does not get
    ///   the lock); ``EventLoopError/Code-swift.struct/noRunningLoop`` if it must wait and the
    ///   caller does not run on a loop.
    /// - Important: Loop-bound: call from a task running on the lock's loop.
    nonisolated(nonsending) public func acquire() async throws {
        // Free and promised to nobody: take it (asyncio jumps the queue only when every
        // waiter is cancelled; cancelled waiters leave our queue at once).
        if !locked, waiters?.isEmpty ?? true {
            waiters?.loop.assertInLoop()
            locked = true
            return
        }
        let loop = try WaiterQueue.currentLoop("Lock.acquire")
        let queue = WaiterQueue.bound(&waiters, to: loop, "Lock.acquire")
        try await acquire(waitingIn: queue, cancellable: true)
    }

    /// Takes the lock, waiting as long as needed whatever happens to the task (Condition's
    /// re-acquire after a wait, which asyncio makes survive cancellation). `loop` is the
    /// caller's running loop.
    nonisolated(nonsending) func acquireIgnoringCancellation(on loop: EventLoop) async {
        if !locked, waiters?.isEmpty ?? true {
            locked = true
            return
        }
        let queue = WaiterQueue.bound(&waiters, to: loop, "Condition.wait")
        // Cannot throw: the wait ignores cancellation.
        try? await acquire(waitingIn: queue, cancellable: false)
    }

    nonisolated(nonsending) private func acquire(waitingIn queue: WaiterQueue, cancellable: Bool) async throws {
        switch await queue.wait(cancellable: cancellable) {
        case .woken:
            // Woken by release() (or by a cancelled waiter passing its turn on); nobody can
            // have taken the lock since: newcomers queue behind a woken waiter.
            assert(!locked, "Lock: woken while the lock is held")
            locked = true
        case .cancelled, .wokenThenCancelled:
            // asyncio's rule: if the lock is free and tasks wait, make sure the one at the
            // head runs (it may be the turn we were given and now give up).
            if !locked { queue.wakeFirst() }
            throw CancellationError()
        }
    }

    /// Releases the lock and wakes the oldest waiter, if any.
    ///
    /// - Throws: ``LockNotHeld`` if the lock is not held.
    /// - Important: Loop-bound.
    public func release() throws(LockNotHeld) {
        guard locked else { throw LockNotHeld("release of an unlocked Lock") }
        unlock()
    }

    /// Releases a lock known to be held.
    func unlock() {
        waiters?.loop.assertInLoop()
        locked = false
        waiters?.wakeFirst()
    }

    /// Runs `body` holding the lock, and releases it however `body` ends: returned, threw,
    /// or was cancelled (asyncio's `async with lock:`).
    ///
    /// ```swift
    /// let snapshot = try await lock.withLock { state.copy() }
    /// ```
    /// - Returns: what `body` returns.
    /// - Throws: `CancellationError` if the task is cancelled while waiting for the lock
    ///   (then `body` does not run), or what `body` throws; ``LockNotHeld`` if `body` released
    ///   the lock itself and returned. Not `rethrows`: waiting for the lock can be cancelled.
    /// - Important: Loop-bound: call from a task running on the lock's loop.
    nonisolated(nonsending) public func withLock<T>(
        _ body: nonisolated(nonsending) () async throws -> T
    ) async throws -> T {
        try await acquire()
        let value: T
        do {
            value = try await body()
        } catch {
            if locked { unlock() }
            throw error
        }
        try release()
        return value
    }
}

extension Lock: CustomStringConvertible {
    /// `Lock(locked, waiters: 2)`, as asyncio's repr. Meant for the loop's
    /// thread; off it (once bound to a loop) it says the state is unknown.
    public var description: String {
        if let loop = waiters?.loop, !loop.mayTouchLoopState { return "Lock(state unknown off the loop)" }
        let state = locked ? "locked" : "unlocked"
        let count = waiterCount
        return count == 0 ? "Lock(\(state))" : "Lock(\(state), waiters: \(count))"
    }
}
