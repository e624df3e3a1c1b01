//===----------------------------------------------------------------------===//
// swift-asyncio — Barrier: asyncio.Barrier, a meeting point for a fixed number of tasks.
//===----------------------------------------------------------------------===//

/// A meeting point for a fixed number of tasks (asyncio's `Barrier`): each task's
/// ``wait()`` suspends until ``parties`` tasks are waiting, then all of them go on.
///
/// The barrier is reusable: once the tasks of a round have all left, the next round fills.
/// Tasks arriving while a round is still draining wait for the next one. ``abort()`` breaks
/// the barrier (every waiter, and every later ``wait()``, throws ``BrokenBarrierError``);
/// ``reset()`` makes the current waiters throw ``BrokenBarrierError`` and then starts afresh.
///
/// ```swift
/// let barrier = Barrier(parties: 3)
/// for worker in 0..<3 {
///     loop.createTask {
///         try await load(part: worker)
///         let index = try await barrier.wait()   // 0, 1, 2 in order of arrival
///         if index == 0 { print("all parts loaded") }
///     }
/// }
/// ```
///
/// - Important: Loop-bound: use it from tasks running on one loop (it binds to the loop of
///   its first waiter; waiting from another loop traps).
public final class Barrier: @unchecked Sendable {
    // @unchecked Sendable: shared by the tasks of one loop, touched on that loop's thread
    // only (checked in debug builds once bound to its loop).

    /// Where the barrier is in its round.
    private enum State {
        /// Tasks are arriving; the round trips when the last party arrives.
        case filling
        /// The round tripped; its tasks are leaving, newcomers wait for the next round.
        case draining
        /// ``reset()`` was called with tasks inside: they leave with BrokenBarrierError.
        case resetting
        /// ``abort()`` was called: every wait throws BrokenBarrierError until a reset.
        case broken
    }

    /// How many tasks must wait for the barrier to let them pass.
    public let parties: Int
    /// Tells waiting tasks that the state changed. Its lock is held only between suspension
    /// points of ``wait()`` (all on the loop thread), never while a task is suspended, so the
    /// synchronous ``reset()`` and ``abort()`` never find it held and need not take it
    /// (asyncio's versions take it and are coroutines for that reason alone).
    private let condition = Condition()
    private var state = State.filling
    /// Tasks inside ``wait()`` past the entry check: arrived in this round, or leaving it.
    private var count = 0

    /// Creates a barrier for `parties` tasks.
    /// - Precondition: `parties >= 1`.
    public init(parties: Int) {
        precondition(parties >= 1, "Barrier parties must be >= 1")
        self.parties = parties
    }

    /// Tasks waiting for the current round to fill (0 while a round drains or resets).
    /// - Important: Loop-bound.
    public var nWaiting: Int {
        condition.boundLoop?.assertInLoop()
        return state == .filling ? count : 0
    }

    /// Whether the barrier was aborted (and not reset since).
    /// - Important: Loop-bound.
    public var isBroken: Bool {
        condition.boundLoop?.assertInLoop()
        return state == .broken
    }

    /// Waits until ``parties`` tasks are waiting, then returns this task's arrival index in
    /// the round, `0` for the first to arrive and `parties - 1` for the one that tripped it.
    ///
    /// A task arriving while the previous round drains or resets first waits for that to end.
    ///
    /// - Returns: the arrival index.
    /// - Throws: ``BrokenBarrierError`` if the barrier is broken, or is aborted or reset while
    ///   the task waits; `CancellationError` if the task is cancelled while waiting (the
    ///   barrier is not broken by it: it waits for one party more, as asyncio's);
    ///   ``EventLoopError/Code-swift.struct/noRunningLoop`` off a loop.
    /// - Important: Loop-bound: call from a task running on the barrier's loop.
    nonisolated(nonsending) public func wait() async throws -> Int {
        try await condition.withLock {
            // Block while the previous round drains or resets.
            try await condition.waitFor { state != .draining && state != .resetting }
            if state == .broken { throw BrokenBarrierError("barrier aborted") }
            let index = count
            count += 1
            defer {
                count -= 1
                leave()
            }
            if index + 1 == parties {
                // The last party: the round trips and drains.
                state = .draining
                condition.wakeAll()
            } else {
                try await condition.waitFor { state != .filling }
                if state == .broken || state == .resetting {
                    throw BrokenBarrierError("barrier aborted or reset")
                }
            }
            return index
        }
    }

    /// A task leaves ``wait()`` (returning or throwing): the last one out ends the draining
    /// or resetting and lets the tasks blocked at the entry in.
    private func leave() {
        guard count == 0 else { return }
        if state == .draining || state == .resetting { state = .filling }
        condition.wakeAll()
    }

    /// Returns the barrier to its initial, empty state: tasks waiting in it throw
    /// ``BrokenBarrierError``, and once they have left, new rounds fill as before. Also
    /// repairs an aborted barrier.
    /// - Important: Loop-bound.
    public func reset() {
        condition.boundLoop?.assertInLoop()
        state = count > 0 ? .resetting : .filling
        condition.wakeAll()
    }

    /// Breaks the barrier: tasks waiting in it, and every later ``wait()``, throw
    /// ``BrokenBarrierError`` until ``reset()``.
    /// - Important: Loop-bound.
    public func abort() {
        condition.boundLoop?.assertInLoop()
        state = .broken
        condition.wakeAll()
    }
}

extension Barrier: CustomStringConvertible {
    /// `Barrier(filling, waiters: 1/3)`, as asyncio's repr. Meant for the loop's
    /// thread; off it (once bound to a loop) it says the state is unknown.
    public var description: String {
        if let loop = condition.boundLoop, !loop.mayTouchLoopState { return "Barrier(state unknown off the loop)" }
        let nWaiting = state == .filling ? count : 0
        return switch state {
        case .filling: "Barrier(filling, waiters: \(nWaiting)/\(parties))"
        case .draining: "Barrier(draining, waiters: \(nWaiting)/\(parties))"
        case .resetting: "Barrier(resetting, waiters: \(nWaiting)/\(parties))"
        case .broken: "Barrier(broken)"
        }
    }
}
