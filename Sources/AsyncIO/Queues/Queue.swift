//===----------------------------------------------------------------------===//
// swift-asyncio — Queue: the first-in, first-out LoopQueue.
//===----------------------------------------------------------------------===//

import DequeModule

/// A first-in, first-out queue for producer and consumer tasks on one loop (asyncio's
/// `asyncio.Queue`); see ``LoopQueue`` for the whole API.
///
/// ```swift
/// let queue = Queue<String>(maxSize: 100)           // 0 (the default): unbounded
/// let consumer = loop.createTask {
///     for try await line in queue {                  // ends once shut down and drained
///         print(line)
///         try queue.taskDone()
///     }
/// }
/// try await queue.put("hello")                       // waits while the queue is full
/// try await queue.join()                             // every item got its taskDone
/// queue.shutdown()
/// ```
///
/// - Important: Loop-bound: use from tasks running on one loop.
public typealias Queue<Element: Sendable> = LoopQueue<FIFOQueueStorage<Element>>

/// The storage of ``Queue``: a Deque, oldest item first.
public struct FIFOQueueStorage<Element: Sendable>: QueueStorage {
    private var items = Deque<Element>()

    /// An empty storage.
    public init() {}

    /// How many items are stored.
    public var count: Int { items.count }

    /// Appends `element` at the back.
    public mutating func append(_ element: Element) { items.append(element) }

    /// Removes and returns the oldest item.
    public mutating func removeNext() -> Element? { items.popFirst() }

    /// Drops every item.
    public mutating func removeAll() { items.removeAll() }
}
