//===----------------------------------------------------------------------===//
// swift-asyncio — QueueWaiters: the tasks waiting in line on one side of a queue.
//===----------------------------------------------------------------------===//

import DequeModule

/// The tasks suspended on one side of a ``LoopQueue`` (its getters, its putters, or the
/// tasks in `join`), first come first served.
///
/// A waiter leaves the line in one of two ways: woken (``wakeFirst()``, ``wakeAll()``: its
/// continuation resumes normally and the task re-checks the queue), or cancelled
/// (``remove(_:)`` hands its continuation back to be resumed with `CancellationError`).
/// Either way it is gone from the line, so a waiter is never resumed twice.
///
/// Loop-confined, like the queue that owns it. Resuming a continuation only schedules the
/// task on the loop; nothing runs inside these calls.
@usableFromInline
struct QueueWaiters {
    struct Waiter {
        let id: UInt64
        let continuation: UnsafeContinuation<Void, any Error>

        init(id: UInt64, continuation: UnsafeContinuation<Void, any Error>) {
            self.id = id
            self.continuation = continuation
        }
    }

    private var line = Deque<Waiter>()

    @usableFromInline
    init() {}

    /// How many tasks wait.
    @usableFromInline
    var count: Int { line.count }

    /// Puts a suspended task at the end of the line.
    @usableFromInline
    mutating func append(id: UInt64, _ continuation: UnsafeContinuation<Void, any Error>) {
        line.append(Waiter(id: id, continuation: continuation))
    }

    /// Wakes the task at the front of the line, if any (asyncio's `_wakeup_next`). Costs
    /// nothing when nobody waits: an empty Deque has no storage.
    @usableFromInline
    mutating func wakeFirst() {
        if let first = line.popFirst() {
            first.continuation.resume()
        }
    }

    /// Wakes every waiting task, in line order.
    @usableFromInline
    mutating func wakeAll() {
        while let first = line.popFirst() {
            first.continuation.resume()
        }
    }

    /// Takes the waiter `id` out of the line (its task was cancelled) and returns its
    /// continuation; `nil` if it already left the line (woken).
    @usableFromInline
    mutating func remove(_ id: UInt64) -> UnsafeContinuation<Void, any Error>? {
        guard let index = line.firstIndex(where: { $0.id == id }) else { return nil }
        return line.remove(at: index).continuation
    }
}
