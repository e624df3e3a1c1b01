//===----------------------------------------------------------------------===//
// swift-asyncio — The errors of Queue, LifoQueue and PriorityQueue.
//===----------------------------------------------------------------------===//

/// ``LoopQueue/putNowait(_:)`` found the queue full (asyncio's `QueueFull`).
public struct QueueFull: Error, Hashable, CustomStringConvertible {
    /// Creates the error.
    public init() {}
    /// A sentence for people.
    public var description: String { "QueueFull: the queue holds maxSize items" }
}

/// ``LoopQueue/getNowait()`` found the queue empty (asyncio's `QueueEmpty`).
public struct QueueEmpty: Error, Hashable, CustomStringConvertible {
    /// Creates the error.
    public init() {}
    /// A sentence for people.
    public var description: String { "QueueEmpty: the queue holds no item" }
}

/// The queue was shut down (asyncio's `QueueShutDown`): puts fail at once, gets fail once the
/// queue is empty (at once after an immediate shutdown).
public struct QueueShutDown: Error, Hashable, CustomStringConvertible {
    /// Creates the error.
    public init() {}
    /// A sentence for people.
    public var description: String { "QueueShutDown: the queue was shut down" }
}
