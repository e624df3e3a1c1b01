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
    /// The tasks' slots by the address of a Swift task running for them.
    @usableFromInline var byAddress = TaskAddressIndex()

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

extension LiveTaskTable {
    /// Records that the Swift task at `address` runs for the task in `slot`: its own Swift
    /// task (`own`), or a scope's child task that runs part of its body (a timeout's body).
    @usableFromInline
    mutating func bind(_ address: UnsafeRawPointer, toSlot slot: Int, own: Bool) {
        byAddress.insert(address, slot: Int32(truncatingIfNeeded: slot), own: own)
    }

    /// Forgets what ``bind(_:toSlot:own:)`` recorded for `address` (nothing if nothing was).
    @usableFromInline
    mutating func unbind(_ address: UnsafeRawPointer) {
        byAddress.remove(address)
    }

    /// The task the Swift task at `address` runs for, and whether it is that task's own.
    func task(runningAt address: UnsafeRawPointer) -> (task: any AnyLoopTask, own: Bool)? {
        guard let entry = byAddress.find(address), let task = slots[Int(entry.slot)] else { return nil }
        return (task, entry.own)
    }
}

/// Live tasks by the address of a Swift task running for them (the address of the job the
/// loop runs for each step of a task is the task's): answers "which ``LoopTask`` is running?"
/// with a probe, where a task-local value cost ~170 instructions a lookup and ~1,300 a task to
/// bind and to copy into the new task (measured with callgrind).
///
/// Open addressing with linear probing, at most half full; deletion shifts the entries after
/// the hole back, so no tombstones pile up. Addresses are heap pointers: the low 4 bits are
/// always zero and dropped, the rest spread by a Fibonacci multiplier.
@usableFromInline
struct TaskAddressIndex {
    @usableFromInline
    struct Entry {
        /// nil for an empty entry.
        var address: UnsafeRawPointer?
        var slot: Int32
        var own: Bool
    }

    private var entries = [Entry](repeating: Entry(address: nil, slot: 0, own: false), count: 16)
    private(set) var count = 0

    @usableFromInline init() {}

    private var mask: Int { entries.count - 1 }

    @inline(__always)
    private func home(_ address: UnsafeRawPointer) -> Int {
        let bits = UInt(bitPattern: address) >> 4
        return Int(truncatingIfNeeded: (bits &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    func find(_ address: UnsafeRawPointer) -> Entry? {
        var index = home(address)
        while let key = entries[index].address {
            if key == address { return entries[index] }
            index = (index + 1) & mask
        }
        return nil
    }

    /// Adds `address`, or updates its entry if it has one.
    mutating func insert(_ address: UnsafeRawPointer, slot: Int32, own: Bool) {
        if (count + 1) * 2 > entries.count {
            grow()
        }
        var index = home(address)
        while let key = entries[index].address {
            if key == address {
                entries[index].slot = slot
                entries[index].own = own
                return
            }
            index = (index + 1) & mask
        }
        entries[index] = Entry(address: address, slot: slot, own: own)
        count += 1
    }

    mutating func remove(_ address: UnsafeRawPointer) {
        var hole = home(address)
        while true {
            guard let key = entries[hole].address else { return }
            if key == address { break }
            hole = (hole + 1) & mask
        }
        // Move back each following entry of the run whose home is not in (hole, next]: it
        // was probed past the hole, and would be lost behind an empty entry.
        var next = hole
        while true {
            next = (next + 1) & mask
            guard let key = entries[next].address else { break }
            let home = home(key)
            let movable = hole < next ? (home <= hole || home > next) : (home <= hole && home > next)
            if movable {
                entries[hole] = entries[next]
                hole = next
            }
        }
        entries[hole].address = nil
        count -= 1
    }

    private mutating func grow() {
        let old = entries
        entries = [Entry](repeating: Entry(address: nil, slot: 0, own: false), count: old.count * 2)
        count = 0
        for entry in old {
            if let address = entry.address {
                insert(address, slot: entry.slot, own: entry.own)
            }
        }
    }
}
