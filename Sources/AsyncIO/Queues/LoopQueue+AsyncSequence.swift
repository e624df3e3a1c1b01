//===----------------------------------------------------------------------===//
// swift-asyncio — A LoopQueue as an AsyncSequence for its consumers.
//===----------------------------------------------------------------------===//

extension LoopQueue: AsyncSequence {
    /// Takes the queue's items one by one with ``LoopQueue/get()``.
    ///
    /// Several consumers may iterate the same queue: each item goes to exactly one of them.
    /// Iterating does not call ``LoopQueue/taskDone()``; a consumer that uses
    /// ``LoopQueue/join()`` calls it per item.
    /// - Important: Loop-bound: iterate in a task running on the queue's loop.
    public struct AsyncIterator: AsyncIteratorProtocol {
        @usableFromInline let queue: LoopQueue

        @usableFromInline
        init(queue: LoopQueue) {
            self.queue = queue
        }

        /// The next item, waiting for one while the queue is empty; `nil` once the queue is
        /// shut down and empty (the iteration ends normally).
        /// - Throws: `CancellationError` if the task is cancelled while waiting (no item is
        ///   taken); ``EventLoopError/Code-swift.struct/noRunningLoop`` off a loop.
        @inlinable
        public mutating func next() async throws -> Element? {
            try await queue.nextItem()
        }
    }

    /// An iterator that gets the queue's items until it is shut down and drained.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(queue: self)
    }
}
