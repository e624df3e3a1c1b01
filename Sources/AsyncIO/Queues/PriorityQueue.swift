//===----------------------------------------------------------------------===//
// swift-asyncio — PriorityQueue: the smallest-first LoopQueue.
//===----------------------------------------------------------------------===//

import HeapModule

/// A queue that hands out its smallest item first, equal items in the order they were put,
/// for producer and consumer tasks on one loop (asyncio's `asyncio.PriorityQueue`, with ties
/// made deterministic); see ``LoopQueue`` for the whole API.
///
/// ```swift
/// struct Job: Comparable, Sendable {
///     let priority: Int
///     let name: String
///     static func < (a: Job, b: Job) -> Bool { a.priority < b.priority }
/// }
/// let jobs = PriorityQueue<Job>()
/// try jobs.putNowait(Job(priority: 2, name: "later"))
/// try jobs.putNowait(Job(priority: 1, name: "first"))
/// let next = try await jobs.get()   // "first"
/// ```
///
/// - Important: Loop-bound: use from tasks running on one loop.
public typealias PriorityQueue<Element: Comparable & Sendable> = LoopQueue<PriorityQueueStorage<Element>>

/// The storage of ``PriorityQueue``: a binary heap, smallest item first; equal items leave in
/// the order they came (each carries its arrival number as a tie-breaker).
public struct PriorityQueueStorage<Element: Comparable & Sendable>: QueueStorage {
    /// An item and its arrival number.
    struct Entry: Comparable {
        let element: Element
        let arrival: UInt64

        init(element: Element, arrival: UInt64) {
            self.element = element
            self.arrival = arrival
        }

        static func < (lhs: Entry, rhs: Entry) -> Bool {
            if lhs.element < rhs.element { return true }
            if rhs.element < lhs.element { return false }
            return lhs.arrival < rhs.arrival
        }

        // Arrival numbers are unique: two entries are equal only if they are the same entry.
        static func == (lhs: Entry, rhs: Entry) -> Bool { lhs.arrival == rhs.arrival }
    }

    private var heap = Heap<Entry>()
    private var arrivals: UInt64 = 0

    /// An empty storage.
    public init() {}

    /// How many items are stored.
    public var count: Int { heap.count }

    /// Stores `element` behind the items equal to it.
    public mutating func append(_ element: Element) {
        heap.insert(Entry(element: element, arrival: arrivals))
        arrivals &+= 1
    }

    /// Removes and returns the smallest item (the earliest of equal ones).
    public mutating func removeNext() -> Element? { heap.popMin()?.element }

    /// Drops every item.
    public mutating func removeAll() { heap = Heap() }
}
