//===----------------------------------------------------------------------===//
// swift-asyncio — QueueStorage: the order in which a LoopQueue hands out its items.
//===----------------------------------------------------------------------===//

/// Where a ``LoopQueue`` keeps its items, and so which item a get takes next: the three
/// methods asyncio's `Queue` subclasses override (`_init`, `_put`, `_get`).
///
/// ``Queue`` uses ``FIFOQueueStorage``, ``LifoQueue`` ``LIFOQueueStorage`` and
/// ``PriorityQueue`` ``PriorityQueueStorage``; conform a type of your own for another order.
/// The queue does all the waiting, counting and shutting down; a storage only stores.
///
/// ```swift
/// struct NewestTwo<Element: Sendable>: QueueStorage {   // keeps only the latest two items
///     var items: [Element] = []
///     init() {}
///     var count: Int { items.count }
///     mutating func append(_ element: Element) { items = Array((items + [element]).suffix(2)) }
///     mutating func removeNext() -> Element? { items.isEmpty ? nil : items.removeFirst() }
///     mutating func removeAll() { items.removeAll() }
/// }
/// let queue = LoopQueue<NewestTwo<Int>>()
/// ```
///
/// - Important: A storage is owned by one queue and used on that queue's loop only. Its
///   metatype is sendable (the queue's cancellation handlers capture it), so a conformance
///   must not be isolated to a global actor.
public protocol QueueStorage: SendableMetatype {
    /// The items stored.
    associatedtype Element: Sendable
    /// An empty storage.
    init()
    /// How many items are stored.
    var count: Int { get }
    /// Stores `element`.
    mutating func append(_ element: Element)
    /// Removes and returns the item to hand out next; `nil` when empty.
    mutating func removeNext() -> Element?
    /// Drops every item (an immediate shutdown).
    mutating func removeAll()
}
