//===----------------------------------------------------------------------===//
// swift-asyncio — LifoQueue: the last-in, first-out LoopQueue.
//===----------------------------------------------------------------------===//

/// A last-in, first-out queue (a stack) for producer and consumer tasks on one loop
/// (asyncio's `asyncio.LifoQueue`); see ``LoopQueue`` for the whole API.
///
/// ```swift
/// let stack = LifoQueue<Int>()
/// try stack.putNowait(1)
/// try stack.putNowait(2)
/// let newest = try await stack.get()   // 2
/// ```
///
/// - Important: Loop-bound: use from tasks running on one loop.
public typealias LifoQueue<Element: Sendable> = LoopQueue<LIFOQueueStorage<Element>>

/// The storage of ``LifoQueue``: an array, newest item first.
public struct LIFOQueueStorage<Element: Sendable>: QueueStorage {
    private var items: [Element] = []

    /// An empty storage.
    public init() {}

    /// How many items are stored.
    public var count: Int { items.count }

    /// Pushes `element` on top.
    public mutating func append(_ element: Element) { items.append(element) }

    /// Removes and returns the newest item.
    public mutating func removeNext() -> Element? { items.popLast() }

    /// Drops every item.
    public mutating func removeAll() { items.removeAll() }
}
