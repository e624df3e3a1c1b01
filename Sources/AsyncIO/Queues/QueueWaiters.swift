//===----------------------------------------------------------------------===//
// swift-asyncio — QueueLine: the tasks waiting in line on one side of a queue.
//===----------------------------------------------------------------------===//

/// A task suspended in one of a ``LoopQueue``'s lines: a getter, a putter or a joiner.
@usableFromInline
protocol QueueWaiter {
    /// The waiter's number, unique within its queue (a cancelled waiter is found by it).
    var id: UInt64 { get }
    /// Resumes the waiter with `CancellationError` (its task was cancelled while in line).
    func resumeCancelled()
}

/// The tasks suspended on one side of a ``LoopQueue`` (its getters, its putters, or the
/// tasks in `join`), first come first served.
///
/// A waiter leaves the line in one of two ways: served (``popFirst()``: the queue resumes
/// it with what it waited for), or cancelled (``cancel(_:)`` resumes it with
/// `CancellationError`). Either way it is gone from the line, so a waiter is never resumed
/// twice.
///
/// An array with a moving front, all of it inlinable: the queue's hand-off code is then
/// specialized for its element type in the caller, with no generic metadata looked up per
/// call (a `Deque` could not be used from inlinable code without re-exporting its module).
/// The storage is kept between waits, and compacted once the served front is half of it.
///
/// Loop-confined, like the queue that owns it. Resuming a continuation only schedules the
/// task on the loop; nothing runs inside these calls.
@usableFromInline
struct QueueLine<Waiter: QueueWaiter> {
    /// The waiters from `front` on; the slots before it were served.
    @usableFromInline var slots: ContiguousArray<Waiter> = []
    @usableFromInline var front = 0

    @inlinable
    init() {}

    /// How many tasks wait.
    @inlinable
    var count: Int { slots.count - front }

    /// Whether nobody waits.
    @inlinable
    var isEmpty: Bool { front == slots.count }

    /// Puts a suspended task at the end of the line.
    @inlinable
    mutating func append(_ waiter: Waiter) {
        slots.append(waiter)
    }

    /// Takes the task at the front of the line out, for the queue to serve it.
    @inlinable
    mutating func popFirst() -> Waiter? {
        guard front < slots.count else { return nil }
        let first = slots[front]
        front += 1
        if front == slots.count {
            slots.removeAll(keepingCapacity: true)
            front = 0
        } else if front >= 16, front * 2 >= slots.count {
            slots.removeFirst(front)
            front = 0
        }
        return first
    }

    /// Takes the waiter `id` out of the line and resumes it with `CancellationError`; nothing
    /// if it already left the line (served).
    @usableFromInline
    mutating func cancel(_ id: UInt64) {
        guard let index = slots[front...].firstIndex(where: { $0.id == id }) else { return }
        slots.remove(at: index).resumeCancelled()
    }
}
