//===----------------------------------------------------------------------===//
// swift-asyncio — WaiterQueue: the FIFO of suspended tasks behind every sync primitive.
//===----------------------------------------------------------------------===//

import DequeModule

/// How a wait in a ``WaiterQueue`` ended.
enum WaitOutcome: Equatable {
    /// Woken by the primitive (handed the lock, a permit, a notification) and not cancelled.
    case woken
    /// Cancelled while waiting, never woken: it was given nothing and its entry is gone.
    case cancelled
    /// Woken, but the task was cancelled before it ran (asyncio: the done future of a task
    /// that is then cancelled). What it was handed must be passed on to the next waiter.
    case wokenThenCancelled
}

/// The waiters of one sync primitive, in arrival order (asyncio's `_waiters` deque of
/// futures, without a future per waiter).
///
/// Each waiter is a suspended task: an entry holding its continuation until it is woken.
/// A woken entry stays in the queue, continuation gone, until its task runs and removes it
/// (asyncio keeps the done future in `_waiters` the same way): while it is there, a newcomer
/// sees the primitive as promised to someone and queues behind it, which is what keeps the
/// primitives FIFO-fair. Wakes always go to the oldest entry not yet woken, so the woken
/// entries are always a prefix of the queue (`wokenCount` long).
///
/// A primitive creates its queue at its first contention, on the loop of that waiter
/// (asyncio's `_LoopBoundMixin`): the uncontended paths never allocate and need no loop.
///
/// - Important: Loop-bound: used on `loop`'s thread only. Cancellation handlers, which run on
///   the cancelling thread, hop to the loop before touching it.
final class WaiterQueue: _LoopTaskWait, @unchecked Sendable {
    // @unchecked Sendable: captured by cancellation handlers, which may run on any thread;
    // they only hop to the loop (`loop.execute`), and all state is touched on the loop.

    /// How a suspended wait is resumed.
    private enum Resumed {
        case woken
        case cancelled
        /// Not a covered wait after all (see ``wait(cancellable:)``); never queued.
        case notCovered
    }

    private struct Entry {
        /// Numbers the waits, so a late cancellation finds its own wait or nothing.
        let id: UInt64
        /// The suspended task; nil once woken (the task has not run yet).
        var continuation: UnsafeContinuation<Resumed, Never>?
    }

    /// The loop the primitive is bound to.
    let loop: EventLoop
    // Loop-confined, never accessed overlappingly: no runtime exclusivity checks.
    @exclusivity(unchecked) private var entries = Deque<Entry>()
    /// How many entries at the front are woken and have not run yet.
    private(set) var wokenCount = 0
    private var lastID: UInt64 = 0

    private init(loop: EventLoop) {
        self.loop = loop
    }

    /// Whether no task waits, woken or not.
    var isEmpty: Bool { entries.isEmpty }
    /// The tasks waiting, woken ones that have not run yet included.
    var count: Int { entries.count }
    /// The tasks waiting that were not woken yet.
    var waitingCount: Int { entries.count - wokenCount }

    // MARK: - Binding to a loop

    /// The loop running on this thread, to bind a primitive to.
    /// - Throws: ``EventLoopError/Code-swift.struct/noRunningLoop`` off a loop.
    static func currentLoop(_ operation: StaticString) throws(EventLoopError) -> EventLoop {
        guard let loop = EventLoop.current else {
            throw EventLoopError(.noRunningLoop, "\(operation) needs a task running on an event loop to wait")
        }
        return loop
    }

    /// The queue in `queue`, created on `loop` if there is none yet. A primitive used from a
    /// second loop is a programmer error (asyncio's "bound to a different event loop").
    static func bound(_ queue: inout WaiterQueue?, to loop: EventLoop, _ operation: StaticString) -> WaiterQueue {
        if let queue {
            precondition(
                queue.loop === loop,
                "\(operation): the primitive is bound to event loop '\(queue.loop.name)', not '\(loop.name)'")
            queue.loop.assertInLoop(operation)
            return queue
        }
        let created = WaiterQueue(loop: loop)
        queue = created
        return created
    }

    // MARK: - Waiting

    /// Suspends the calling task at the back of the queue until it is woken.
    ///
    /// With `cancellable`, cancelling the task while it waits removes it and returns
    /// ``WaitOutcome/cancelled``; a task woken and then cancelled before it runs gets
    /// ``WaitOutcome/wokenThenCancelled``. Without, the wait ignores cancellation (Condition's
    /// re-acquire of its lock).
    nonisolated(nonsending) func wait(cancellable: Bool) async -> WaitOutcome {
        loop.preconditionInLoop()
        lastID &+= 1
        let id = lastID
        let loop = self.loop
        if cancellable, let owner = loop.coveringTask() {
            // A LoopTask's own task: its cancel(message:) ends this wait directly, so the
            // wait needs no cancellation handler (see Future.value). While it waits nothing
            // else can cancel the task, so its cancel count then tells what
            // `Task.isCancelled` would.
            let resumed = await _unsafeInheritExecutor_withUnsafeContinuation { (continuation: UnsafeContinuation<Resumed, Never>) in
                guard loop.isRunningTask(continuation) else {
                    continuation.resume(returning: .notCovered)
                    return
                }
                if owner.cancelling() > 0 || Task.isCancelled {
                    continuation.resume(returning: .cancelled)
                } else {
                    owner._setCoveredWait(self, id: id)
                    entries.append(Entry(id: id, continuation: continuation))
                }
            }
            if resumed != .notCovered {
                owner._setCoveredWait(nil, id: 0)
                guard resumed == .woken else { return .cancelled }
                removeWoken(id)
                return owner.cancelling() > 0 ? .wokenThenCancelled : .woken
            }
        }
        let resumed: Resumed
        if cancellable {
            resumed = await _unsafeInheritExecutor_withTaskCancellationHandler {
                await _unsafeInheritExecutor_withUnsafeContinuation { (continuation: UnsafeContinuation<Resumed, Never>) in
                    // Cancelled before we got here: the handler already ran and found nothing.
                    if Task.isCancelled {
                        continuation.resume(returning: .cancelled)
                    } else {
                        entries.append(Entry(id: id, continuation: continuation))
                    }
                }
            } onCancel: {
                loop.execute { [self] in cancelWaiter(id) }
            }
        } else {
            resumed = await _unsafeInheritExecutor_withUnsafeContinuation { (continuation: UnsafeContinuation<Resumed, Never>) in
                entries.append(Entry(id: id, continuation: continuation))
            }
        }
        guard resumed == .woken else { return .cancelled }
        removeWoken(id)
        // Cancelled after the wake-up, before this step ran: asyncio delivers the
        // cancellation here too, and the caller hands on what it was given.
        return cancellable && Task.isCancelled ? .wokenThenCancelled : .woken
    }

    /// The covered task in wait `id` was cancelled: as its cancellation handler would.
    func _waitingTaskCancelled(_ id: UInt64, message: String?) {
        cancelWaiter(id)
    }

    /// A cancelled task's handler, on the loop: if its wait is still unwoken, removes it and
    /// resumes it as cancelled. A woken wait is left alone (its task sees the cancellation
    /// when it runs); a finished one is not found.
    private func cancelWaiter(_ id: UInt64) {
        guard let index = index(of: id, in: wokenCount..<entries.count),
              let continuation = entries[index].continuation
        else { return }
        entries.remove(at: index)
        continuation.resume(returning: .cancelled)
    }

    /// Called by a woken task when it runs: its entry leaves the woken prefix.
    private func removeWoken(_ id: UInt64) {
        guard let index = index(of: id, in: 0..<wokenCount) else {
            assertionFailure("WaiterQueue: a woken waiter is missing from the queue")
            return
        }
        entries.remove(at: index)
        wokenCount -= 1
    }

    /// The index of the entry numbered `id` within `range` (ids increase along the queue).
    private func index(of id: UInt64, in range: Range<Int>) -> Int? {
        var low = range.lowerBound
        var high = range.upperBound
        while low < high {
            let middle = low + (high - low) / 2
            let other = entries[middle].id
            if other == id { return middle }
            if other < id { low = middle + 1 } else { high = middle }
        }
        return nil
    }

    // MARK: - Waking

    /// Wakes the oldest waiter not woken yet. Returns false if there is none.
    @discardableResult
    func wakeNext() -> Bool {
        guard wokenCount < entries.count, let continuation = entries[wokenCount].continuation else {
            return false
        }
        entries[wokenCount].continuation = nil
        wokenCount += 1
        continuation.resume(returning: .woken)
        return true
    }

    /// Wakes the waiter at the head unless it is woken already (asyncio's `_wake_up_first`:
    /// a lock is promised to one waiter at a time).
    func wakeFirst() {
        if wokenCount == 0 { wakeNext() }
    }

    /// Wakes up to `n` of the oldest waiters not woken yet.
    func wake(upTo n: Int) {
        var remaining = n
        while remaining > 0 && wakeNext() { remaining -= 1 }
    }

    /// Wakes every waiter not woken yet.
    func wakeAll() {
        while wakeNext() {}
    }
}
