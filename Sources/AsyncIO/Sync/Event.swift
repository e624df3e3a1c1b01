//===----------------------------------------------------------------------===//
// swift-asyncio — Event: asyncio.Event, a flag that tasks on one loop can wait for.
//===----------------------------------------------------------------------===//

/// A flag that tasks can wait for (asyncio's `Event`): ``set()`` wakes every waiting task,
/// and later waits return at once until ``clear()``.
///
/// ```swift
/// let ready = Event()
/// loop.createTask {
///     try await ready.wait()        // suspends until set()
///     print("go")
/// }
/// ready.set()
/// ```
///
/// - Important: Loop-bound: use it from tasks running on one loop (it binds to the loop of
///   its first waiter; waiting from another loop traps).
public final class Event: @unchecked Sendable {
    // @unchecked Sendable: shared by the tasks of one loop, touched on that loop's thread
    // only (checked in debug builds once bound to its loop).

    @exclusivity(unchecked) private var flag = false
    /// Created at the first wait, on the loop of that waiter.
    @exclusivity(unchecked) private var waiters: WaiterQueue?

    /// Creates an event that is not set.
    public init() {}

    /// Whether the flag is set (asyncio's `is_set()`).
    /// - Important: Loop-bound.
    public var isSet: Bool {
        waiters?.loop.assertInLoop()
        return flag
    }

    /// Tasks waiting (woken ones that have not run yet included).
    var waiterCount: Int { waiters?.count ?? 0 }

    /// Sets the flag and wakes every waiting task. Does nothing if it is set already.
    /// - Important: Loop-bound.
    public func set() {
        waiters?.loop.assertInLoop()
        if flag { return }
        flag = true
        waiters?.wakeAll()
    }

    /// Clears the flag: later waits suspend until the next ``set()``. Tasks already woken
    /// still return from their waits.
    /// - Important: Loop-bound.
    public func clear() {
        waiters?.loop.assertInLoop()
        flag = false
    }

    /// Returns at once if the flag is set, else suspends until ``set()``.
    ///
    /// - Throws: `CancellationError` if the task is cancelled while waiting, or after
    ///   ``set()`` woke it but before it ran (as asyncio);
    ///   ``EventLoopError/Code-swift.struct/noRunningLoop`` if it must wait and the caller
    ///   does not run on a loop.
    /// - Important: Loop-bound: call from a task running on the event's loop.
    nonisolated(nonsending) public func wait() async throws {
        if flag {
            waiters?.loop.assertInLoop()
            return
        }
        let loop = try WaiterQueue.currentLoop("Event.wait")
        let queue = WaiterQueue.bound(&waiters, to: loop, "Event.wait")
        guard await queue.wait(cancellable: true) == .woken else { throw CancellationError() }
    }
}

extension Event: CustomStringConvertible {
    /// `Event(unset, waiters: 2)`, as asyncio's repr. Meant for the loop's
    /// thread; off it (once bound to a loop) it says the state is unknown.
    public var description: String {
        if let loop = waiters?.loop, !loop.mayTouchLoopState { return "Event(state unknown off the loop)" }
        let state = flag ? "set" : "unset"
        let count = waiterCount
        return count == 0 ? "Event(\(state))" : "Event(\(state), waiters: \(count))"
    }
}
