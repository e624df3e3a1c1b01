//===----------------------------------------------------------------------===//
// swift-asyncio — Semaphore and BoundedSemaphore: asyncio's counting semaphores.
//===----------------------------------------------------------------------===//

/// A counting semaphore for tasks on one loop (asyncio's `Semaphore`): ``acquire()`` takes a
/// permit, waiting while there is none, and ``release()`` gives one back.
///
/// Waiters are served in FIFO order: ``release()`` hands its permit to the oldest waiter at
/// once, and a newcomer waits while anyone is queued, even if permits are free. A waiter
/// cancelled after it was handed a permit, before it ran, gives the permit back and it goes
/// to the next waiter.
///
/// ```swift
/// let connections = Semaphore(value: 10)      // at most 10 fetches at a time
/// let page = try await connections.withPermit { try await fetch(url) }
/// ```
///
/// - Important: Loop-bound: use it from tasks running on one loop (it binds to the loop of
///   its first waiter; waiting from another loop traps).
public final class Semaphore: @unchecked Sendable {
    // @unchecked Sendable: shared by the tasks of one loop, touched on that loop's thread
    // only (checked in debug builds once bound to its loop).

    /// Free permits. Permits handed to woken waiters that have not run yet are not counted.
    @exclusivity(unchecked) var value: Int
    /// Created at the first contention, on the loop of that waiter.
    @exclusivity(unchecked) private var waiters: WaiterQueue?

    /// Creates a semaphore with `value` permits.
    /// - Precondition: `value >= 0`.
    public init(value: Int = 1) {
        precondition(value >= 0, "Semaphore initial value must be >= 0")
        self.value = value
    }

    /// Whether ``acquire()`` would wait: no permit is free, or tasks are queued ahead (asyncio's
    /// `locked()`).
    /// - Important: Loop-bound.
    public var isLocked: Bool {
        waiters?.loop.assertInLoop()
        return value == 0 || !(waiters?.isEmpty ?? true)
    }

    /// Tasks waiting (woken ones that have not run yet included).
    var waiterCount: Int { waiters?.count ?? 0 }

    /// Takes a permit, waiting in FIFO order while none is free or others wait.
    ///
    /// - Throws: `CancellationError` if the task is cancelled while waiting (it gets no
    ///   permit); ``EventLoopError/Code-swift.struct/noRunningLoop`` if it must wait and the
    ///   caller does not run on a loop.
    /// - Important: Loop-bound: call from a task running on the semaphore's loop.
    nonisolated(nonsending) public func acquire() async throws {
        if !isLocked {
            value -= 1
            return
        }
        let loop = try WaiterQueue.currentLoop("Semaphore.acquire")
        let queue = WaiterQueue.bound(&waiters, to: loop, "Semaphore.acquire")
        let outcome = await queue.wait(cancellable: true)
        if outcome == .wokenThenCancelled {
            // Handed a permit that we will not use: give it back.
            value += 1
        }
        // Newcomers may have queued behind us while permits were free (FIFO): wake as many
        // as there are permits, and the next one in line if we gave ours back.
        while value > 0 && wakeNext(queue) {}
        if outcome != .woken { throw CancellationError() }
    }

    /// Gives a permit back and hands it to the oldest waiter, if any.
    /// - Important: Loop-bound.
    public func release() {
        waiters?.loop.assertInLoop()
        value += 1
        if let waiters { wakeNext(waiters) }
    }

    /// Hands a permit to the oldest waiter not woken yet; false if there is none.
    @discardableResult
    private func wakeNext(_ queue: WaiterQueue) -> Bool {
        guard queue.wakeNext() else { return false }
        value -= 1
        return true
    }

    /// Runs `body` holding a permit and gives it back however `body` ends: returned, threw,
    /// or was cancelled (asyncio's `async with semaphore:`).
    ///
    /// - Returns: what `body` returns.
    /// - Throws: `CancellationError` if the task is cancelled while waiting for a permit (then
    ///   `body` does not run), or what `body` throws.
    /// - Important: Loop-bound: call from a task running on the semaphore's loop.
    nonisolated(nonsending) public func withPermit<T>(
        _ body: nonisolated(nonsending) () async throws -> T
    ) async throws -> T {
        try await acquire()
        defer { release() }
        return try await body()
    }
}

extension Semaphore: CustomStringConvertible {
    /// `Semaphore(unlocked, value: 2)` or `Semaphore(locked, waiters: 3)`, as asyncio's repr.
    /// Meant for the loop's thread; off it (once bound to a loop) it says the state is unknown.
    public var description: String {
        if let loop = waiters?.loop, !loop.mayTouchLoopState { return "Semaphore(state unknown off the loop)" }
        let state = (value == 0 || waiterCount > 0) ? "locked" : "unlocked, value: \(value)"
        let count = waiterCount
        return count == 0 ? "Semaphore(\(state))" : "Semaphore(\(state), waiters: \(count))"
    }
}

/// A ``Semaphore`` that refuses to be released more often than acquired (asyncio's
/// `BoundedSemaphore`): its value never exceeds the initial one.
///
/// ```swift
/// let slots = BoundedSemaphore(value: 2)
/// try await slots.acquire()
/// try slots.release()
/// try slots.release()        // throws BoundedSemaphoreOverflow: one release too many
/// ```
///
/// - Important: Loop-bound, like ``Semaphore``.
public final class BoundedSemaphore: @unchecked Sendable {
    // @unchecked Sendable: as Semaphore's.

    private let semaphore: Semaphore
    /// The initial value, which the value may not exceed.
    public let bound: Int

    /// Creates a semaphore with `value` permits, which is also its bound.
    /// - Precondition: `value >= 0`.
    public init(value: Int = 1) {
        semaphore = Semaphore(value: value)
        bound = value
    }

    /// Whether ``acquire()`` would wait (see ``Semaphore/isLocked``).
    /// - Important: Loop-bound.
    public var isLocked: Bool { semaphore.isLocked }

    /// Tasks waiting (woken ones that have not run yet included).
    var waiterCount: Int { semaphore.waiterCount }

    /// Takes a permit, waiting in FIFO order (see ``Semaphore/acquire()``).
    /// - Throws: `CancellationError`; ``EventLoopError/Code-swift.struct/noRunningLoop``.
    /// - Important: Loop-bound: call from a task running on the semaphore's loop.
    nonisolated(nonsending) public func acquire() async throws {
        try await semaphore.acquire()
    }

    /// Gives a permit back and hands it to the oldest waiter, if any.
    /// - Throws: ``BoundedSemaphoreOverflow`` if every permit is already back (the value
    ///   would exceed ``bound``); nothing changes then.
    /// - Important: Loop-bound.
    public func release() throws(BoundedSemaphoreOverflow) {
        guard semaphore.value < bound else { throw BoundedSemaphoreOverflow(bound: bound) }
        semaphore.release()
    }

    /// Runs `body` holding a permit and gives it back however `body` ends (see
    /// ``Semaphore/withPermit(_:)``).
    /// - Throws: as ``Semaphore/withPermit(_:)``; ``BoundedSemaphoreOverflow`` if `body`
    ///   released the permit itself and returned.
    /// - Important: Loop-bound: call from a task running on the semaphore's loop.
    nonisolated(nonsending) public func withPermit<T>(
        _ body: nonisolated(nonsending) () async throws -> T
    ) async throws -> T {
        try await acquire()
        let value: T
        do {
            value = try await body()
        } catch {
            try? release()
            throw error
        }
        try release()
        return value
    }
}

extension BoundedSemaphore: CustomStringConvertible {
    /// As ``Semaphore``'s, with the bound.
    public var description: String { "Bounded\(semaphore.description.dropLast()), bound: \(bound))" }
}
