//===----------------------------------------------------------------------===//
// swift-asyncio — Condition: asyncio.Condition, a condition variable over a Lock.
//===----------------------------------------------------------------------===//

/// A condition variable for tasks on one loop (asyncio's `Condition`): tasks holding its
/// ``lock`` wait until another task notifies them.
///
/// ``wait()`` releases the lock while it waits and takes it again before it returns — even
/// when the task is cancelled, as in asyncio, so the caller always holds the lock afterwards.
/// Waiters are notified in FIFO order. A waiter notified and then cancelled before it ran
/// passes its notification to the next waiter.
///
/// ```swift
/// let condition = Condition()
/// var items: [Int] = []
/// // consumer
/// try await condition.withLock {
///     try await condition.waitFor { !items.isEmpty }
///     print(items.removeFirst())
/// }
/// // producer
/// try await condition.withLock {
///     items.append(1)
///     try condition.notify()
/// }
/// ```
///
/// - Important: Loop-bound: use it from tasks running on one loop (it binds to the loop of
///   its first waiter; waiting from another loop traps).
public final class Condition: @unchecked Sendable {
    // @unchecked Sendable: shared by the tasks of one loop, touched on that loop's thread
    // only (checked in debug builds once bound to its loop).

    /// The lock the condition's users hold; given to ``init(lock:)`` or the condition's own.
    public let lock: Lock
    /// Created at the first wait, on the loop of that waiter.
    @exclusivity(unchecked) private var waiters: WaiterQueue?

    /// Creates a condition over `lock`, or over a new lock of its own.
    public init(lock: Lock = Lock()) {
        self.lock = lock
    }

    /// Whether the lock is held (asyncio's `locked()`).
    /// - Important: Loop-bound.
    public var isLocked: Bool { lock.isLocked }

    /// Tasks waiting for a notification (woken ones that have not run yet included).
    var waiterCount: Int { waiters?.count ?? 0 }
    /// Tasks waiting for a notification that were not notified yet.
    var waitingCount: Int { waiters?.waitingCount ?? 0 }

    /// Takes the lock (see ``Lock/acquire()``).
    /// - Throws: `CancellationError`; ``EventLoopError/Code-swift.struct/noRunningLoop``.
    /// - Important: Loop-bound: call from a task running on the condition's loop.
    nonisolated(nonsending) public func acquire() async throws {
        try await lock.acquire()
    }

    /// Releases the lock (see ``Lock/release()``).
    /// - Throws: ``LockNotHeld`` if the lock is not held.
    /// - Important: Loop-bound.
    public func release() throws(LockNotHeld) {
        try lock.release()
    }

    /// Runs `body` holding the lock, and releases it however `body` ends (see
    /// ``Lock/withLock(_:)``).
    /// - Important: Loop-bound: call from a task running on the condition's loop.
    nonisolated(nonsending) public func withLock<T>(
        _ body: nonisolated(nonsending) () async throws -> T
    ) async throws -> T {
        try await lock.withLock(body)
    }

    /// Releases the lock, waits until notified, and takes the lock again before returning.
    ///
    /// Like any condition variable's, a wait may end without the awaited state holding: check
    /// it again afterwards, or use ``waitFor(_:)``.
    ///
    /// - Throws: ``LockNotHeld`` if the lock is not held (nothing happens then);
    ///   `CancellationError` if the task is cancelled while waiting — thrown only once the lock
    ///   is held again; ``EventLoopError/Code-swift.struct/noRunningLoop`` off a loop.
    /// - Important: Loop-bound: call from a task running on the condition's loop.
    nonisolated(nonsending) public func wait() async throws {
        guard lock.isLocked else { throw LockNotHeld("Condition.wait without holding its lock") }
        // Bind first: once the lock is released this must end holding it again.
        let loop = try WaiterQueue.currentLoop("Condition.wait")
        let queue = WaiterQueue.bound(&waiters, to: loop, "Condition.wait")
        lock.unlock()
        let outcome = await queue.wait(cancellable: true)
        await lock.acquireIgnoringCancellation(on: loop)
        switch outcome {
        case .woken:
            return
        case .wokenThenCancelled:
            // Notified, but we will not act on it: notify the next waiter in our place.
            queue.wakeNext()
            throw CancellationError()
        case .cancelled:
            throw CancellationError()
        }
    }

    /// Waits until `predicate` holds: checks it (holding the lock) and ``wait()``s until it
    /// returns true (asyncio's `wait_for`).
    ///
    /// - Throws: what ``wait()`` throws, or what `predicate` throws (the lock still held).
    /// - Important: Loop-bound: call from a task running on the condition's loop, holding the
    ///   lock.
    nonisolated(nonsending) public func waitFor(_ predicate: () throws -> Bool) async throws {
        while try !predicate() {
            try await wait()
        }
    }

    /// Wakes up to `n` of the waiting tasks, oldest first. Each returns from ``wait()`` once it
    /// gets the lock, so the caller should release it.
    ///
    /// - Throws: ``LockNotHeld`` if the lock is not held.
    /// - Important: Loop-bound.
    public func notify(_ n: Int = 1) throws(LockNotHeld) {
        guard lock.isLocked else { throw LockNotHeld("Condition.notify without holding its lock") }
        wake(n)
    }

    /// Wakes every waiting task (see ``notify(_:)``).
    ///
    /// - Throws: ``LockNotHeld`` if the lock is not held.
    /// - Important: Loop-bound.
    public func notifyAll() throws(LockNotHeld) {
        guard lock.isLocked else { throw LockNotHeld("Condition.notifyAll without holding its lock") }
        waiters?.wakeAll()
    }

    /// The loop the condition or its lock is bound to, if any.
    var boundLoop: EventLoop? { waiters?.loop ?? lock.waiters?.loop }

    /// Wakes up to `n` waiters, without the lock check (the Barrier's internal use).
    func wake(_ n: Int) {
        waiters?.loop.assertInLoop()
        waiters?.wake(upTo: n)
    }

    /// Wakes every waiter, without the lock check.
    func wakeAll() {
        waiters?.loop.assertInLoop()
        waiters?.wakeAll()
    }
}

extension Condition: CustomStringConvertible {
    /// `Condition(locked, waiters: 2)`, as asyncio's repr. Meant for the loop's
    /// thread; off it (once bound to a loop) it says the state is unknown.
    public var description: String {
        if let loop = boundLoop, !loop.mayTouchLoopState {
            return "Condition(state unknown off the loop)"
        }
        let state = lock.isLocked ? "locked" : "unlocked"
        let count = waiterCount
        return count == 0 ? "Condition(\(state))" : "Condition(\(state), waiters: \(count))"
    }
}
