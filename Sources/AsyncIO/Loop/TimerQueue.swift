//===----------------------------------------------------------------------===//
// swift-asyncio — TimerQueue: the loop's timers, earliest deadline first.
//===----------------------------------------------------------------------===//

import DequeModule

@available(*, unavailable)
extension TimerEntry: Sendable {}

/// An entry of the loop's timer queue: ordered by deadline, ties by scheduling order.
struct TimerEntry {
    let deadline: UInt64
    let sequence: UInt64
    let handle: Handle

    /// Whether `self` is due before `other`.
    @inline(__always)
    func precedes(_ other: borrowing TimerEntry) -> Bool {
        deadline != other.deadline ? deadline < other.deadline : sequence < other.sequence
    }
}

@available(*, unavailable)
extension TimerQueue: Sendable {}

/// The loop's timers, earliest first. Most timers come in deadline order: timeouts of one
/// length (a server's idle timeout per connection), `callLater(after: 0)`, a task's sleeps. Those
/// go to the back of a queue kept in order, one comparison each, and leave from its front;
/// only a timer due before the queue's last one goes to a heap. The earliest timer is the
/// earlier of the two fronts. (Measured with 100,000 timers pending: a min-max heap, as
/// before, cost ~900 instructions per timer in and out, the queue ~100.)
///
/// The heap is 4-ary, as Go's runtime keeps its timers: half the depth of a binary heap, which
/// matters when a server keeps a timer per connection, and entries move through a hole (moved,
/// not copied: no reference counting per step). Loop-confined, like the loop's other state.
struct TimerQueue {
    /// Timers in (deadline, sequence) order: each one due after the one before it.
    private var inOrder = Deque<TimerEntry>()
    /// The other timers: a 4-ary min-heap.
    private var heap: ContiguousArray<TimerEntry> = []

    /// How many timers are held, cancelled ones included.
    var count: Int { inOrder.count + heap.count }

    var isEmpty: Bool { inOrder.isEmpty && heap.isEmpty }

    /// The earliest deadline, nil when no timer is held.
    var earliestDeadline: UInt64? {
        if heap.isEmpty { return inOrder.isEmpty ? nil : inOrder[0].deadline }
        if inOrder.isEmpty { return heap[0].deadline }
        return min(inOrder[0].deadline, heap[0].deadline)
    }

    mutating func insert(_ entry: TimerEntry) {
        if inOrder.isEmpty || inOrder[inOrder.count - 1].precedes(entry) {
            inOrder.append(entry)
            return
        }
        heap.append(entry)
        heap.withUnsafeMutableBufferPointer { buffer in
            // SAFETY: the buffer holds at least the entry just appended.
            guard let base = buffer.baseAddress else { return }
            let last = buffer.count - 1
            Self.siftUp(base, placing: (base + last).move(), at: last)
        }
    }

    /// Removes and returns the earliest timer, nil when none is held.
    mutating func popMin() -> TimerEntry? {
        if heap.isEmpty || (!inOrder.isEmpty && inOrder[0].precedes(heap[0])) {
            return inOrder.popFirst()
        }
        return popHeap()
    }

    private mutating func popHeap() -> TimerEntry? {
        guard let last = heap.popLast() else { return nil }
        if heap.isEmpty { return last }
        return heap.withUnsafeMutableBufferPointer { buffer in
            // SAFETY: not empty (checked above), so there is a base address.
            guard let base = buffer.baseAddress else { return nil }
            let earliest = base.move()
            Self.siftDown(base, count: buffer.count, placing: last, at: 0)
            return earliest
        }
    }

    /// Removes the timers `shouldRemove` picks (the loop's compaction of cancelled timers),
    /// then restores the heap's order (Floyd's bottom-up construction: O(n)). The queue stays
    /// in order by itself.
    mutating func removeAll(where shouldRemove: (TimerEntry) -> Bool) {
        inOrder.removeAll(where: shouldRemove)
        heap.removeAll(where: shouldRemove)
        heap.withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress, buffer.count > 1 else { return }
            var parent = (buffer.count - 2) / 4
            while parent >= 0 {
                Self.siftDown(base, count: buffer.count, placing: (base + parent).move(), at: parent)
                parent -= 1
            }
        }
    }

    mutating func removeAll() {
        inOrder.removeAll()
        heap.removeAll()
    }

    /// Every timer, in no particular order (the loop's close releases their callbacks).
    func forEach(_ body: (TimerEntry) -> Void) {
        for entry in inOrder { body(entry) }
        for entry in heap { body(entry) }
    }

    /// Moves `entry` up from the hole at `index` until its parent precedes it.
    @inline(__always)
    private static func siftUp(_ base: UnsafeMutablePointer<TimerEntry>, placing entry: TimerEntry, at index: Int) {
        var hole = index
        while hole > 0 {
            let parent = (hole - 1) / 4
            guard entry.precedes(base[parent]) else { break }
            (base + hole).moveInitialize(from: base + parent, count: 1)
            hole = parent
        }
        (base + hole).initialize(to: entry)
    }

    /// Moves `entry` down from the hole at `index` until no child precedes it.
    @inline(__always)
    private static func siftDown(
        _ base: UnsafeMutablePointer<TimerEntry>, count: Int, placing entry: TimerEntry, at index: Int
    ) {
        var hole = index
        while true {
            let first = 4 * hole + 1
            if first >= count { break }
            var earliest = first
            var child = first + 1
            let end = min(first + 4, count)
            while child < end {
                if base[child].precedes(base[earliest]) { earliest = child }
                child += 1
            }
            guard base[earliest].precedes(entry) else { break }
            (base + hole).moveInitialize(from: base + earliest, count: 1)
            hole = earliest
        }
        (base + hole).initialize(to: entry)
    }
}
