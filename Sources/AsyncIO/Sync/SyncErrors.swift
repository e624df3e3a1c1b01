//===----------------------------------------------------------------------===//
// swift-asyncio — Errors of the sync primitives: misuse of a lock, a semaphore, a barrier.
//===----------------------------------------------------------------------===//

/// A lock was released, or a condition waited on or notified, without the lock being held
/// (asyncio's `RuntimeError('Lock is not acquired.')` and `'cannot notify on un-acquired
/// lock'`).
///
/// Like asyncio's, locks have no owner: "held" means locked, by any task.
public struct LockNotHeld: Error, Hashable, CustomStringConvertible {
    /// A sentence for people, naming the operation.
    public let message: String
    /// An error saying `message`.
    public init(_ message: String) { self.message = message }
    /// `LockNotHeld: <message>`.
    public var description: String { "LockNotHeld: \(message)" }
}

/// A ``BoundedSemaphore`` was released more times than it was acquired (asyncio's
/// `ValueError('BoundedSemaphore released too many times')`).
public struct BoundedSemaphoreOverflow: Error, Hashable, CustomStringConvertible {
    /// The semaphore's initial value, which its value may not exceed.
    public let bound: Int
    /// An error for a semaphore bounded by `bound`.
    public init(bound: Int) { self.bound = bound }
    /// Says the semaphore was released too many times, and its bound.
    public var description: String {
        "BoundedSemaphoreOverflow: released too many times (bound \(bound))"
    }
}

/// A ``Barrier`` was aborted or reset while a task was waiting at it, or a task tried to
/// pass a broken barrier (asyncio's `BrokenBarrierError`).
public struct BrokenBarrierError: Error, Hashable, CustomStringConvertible {
    /// A sentence for people: `"barrier aborted"` or `"barrier aborted or reset"`.
    public let message: String
    /// An error saying `message`.
    public init(_ message: String) { self.message = message }
    /// `BrokenBarrierError: <message>`.
    public var description: String { "BrokenBarrierError: \(message)" }
}
