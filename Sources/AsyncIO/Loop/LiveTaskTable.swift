//===----------------------------------------------------------------------===//
// swift-asyncio — LiveTaskTable: the tasks a loop keeps alive until they finish.
//===----------------------------------------------------------------------===//

/// The tasks a loop keeps alive until they finish: a slot table with a free list, so adding
/// and removing a task costs no hashing (task create+await is a hot path).
@usableFromInline
struct LiveTaskTable {
    @usableFromInline var slots: [(any AnyLoopTask)?] = []
    @usableFromInline var free: [Int] = []
    @usableFromInline var count = 0

    @usableFromInline init() {}

    /// Stores `task` and returns its slot.
    @inlinable
    mutating func insert(_ task: any AnyLoopTask) -> Int {
        count += 1
        if let slot = free.popLast() {
            slots[slot] = task
            return slot
        }
        slots.append(task)
        return slots.count - 1
    }

    /// Forgets the task in `slot`.
    @inlinable
    mutating func remove(_ slot: Int) {
        guard slot >= 0, slot < slots.count, slots[slot] != nil else { return }
        slots[slot] = nil
        free.append(slot)
        count -= 1
    }

    /// The live tasks, in no particular order.
    var all: [any AnyLoopTask] { slots.compactMap { $0 } }

    var isEmpty: Bool { count == 0 }
}
