//===----------------------------------------------------------------------===//
// swift-asyncio — LoopQueue: asyncio's Queue logic over any QueueStorage.
//===----------------------------------------------------------------------===//

/// A queue for producer and consumer tasks on one loop (asyncio's `asyncio.Queue`, with
/// Python 3.13's shutdown), generic over the order it hands items out in: use it as
/// ``Queue`` (FIFO), ``LifoQueue`` or ``PriorityQueue``.
///
/// - ``put(_:)`` waits while the queue holds ``maxSize`` items; ``get()`` waits while it is
///   empty. Waiting getters, and waiting putters, are served first come first served; a
///   waiter woken and then cancelled before it ran passes its turn to the next in line.
///   Cancelling a waiting task throws `CancellationError` to it and loses no item.
/// - ``taskDone()`` and ``join()`` track the items put but not yet processed.
/// - ``shutdown(immediate:)`` ends the queue: puts throw ``QueueShutDown``; gets drain what
///   is left, then throw it (at once after an immediate shutdown, which drops the items).
/// - Consumers can iterate it: `for try await item in queue` gets each item with
///   ``get()`` and ends once the queue is shut down and empty.
///
/// Getting or putting without waiting allocates nothing beyond the storage itself.
///
/// ```swift
/// let queue = Queue<Int>(maxSize: 2)
/// let consumer = loop.createTask {
///     var sum = 0
///     for try await number in queue {
///         sum += number
///         try queue.taskDone()
///     }
///     return sum
/// }
/// for number in 1...10 { try await queue.put(number) }
/// queue.shutdown()
/// let sum = try await consumer.value   // 55
/// ```
///
/// - Important: Loop-bound: use from tasks running on one loop. The queue binds to the loop
///   of its first waiting task; waiting on it from a task of another loop is a programmer
///   error (a precondition, where asyncio raises `RuntimeError`). Loop-thread use is checked
///   in debug builds once the queue is bound.
public final class LoopQueue<Storage: QueueStorage>: @unchecked Sendable {
    // @unchecked Sendable: producer and consumer tasks share the queue, but every one of them
    // runs on the same loop thread, which is the only thread touching the state below. Entry
    // points check that in debug builds once the queue is bound (assertInLoop); the first
    // waiter binds it, and a waiter from another loop traps.

    /// The items, in the storage's order.
    public typealias Element = Storage.Element

    /// Whether puts are still accepted.
    @usableFromInline
    enum Lifecycle {
        /// Puts and gets work.
        case open
        /// ``shutdown(immediate:)`` was called: puts fail, gets drain then fail.
        case shutDown
    }

    /// Who waits in a line, and so what it waits for.
    @usableFromInline
    enum Role: Sendable {
        /// A get, waiting for an item.
        case getter
        /// A put, waiting for a free slot.
        case putter
        /// A join, waiting for the unfinished count to reach zero.
        case joiner
    }

    /// The most items the queue holds; 0 (or less) means unbounded.
    public let maxSize: Int

    // Loop-confined, never accessed overlappingly: no runtime exclusivity checks.
    @usableFromInline @exclusivity(unchecked) var storage = Storage()
    @usableFromInline @exclusivity(unchecked) var lifecycle = Lifecycle.open
    @usableFromInline @exclusivity(unchecked) var getters = QueueWaiters()
    @usableFromInline @exclusivity(unchecked) var putters = QueueWaiters()
    @usableFromInline @exclusivity(unchecked) var joiners = QueueWaiters()
    /// Items put and not yet marked done with ``taskDone()``.
    @usableFromInline @exclusivity(unchecked) var unfinishedTasks = 0
    /// The loop of the first waiting task; `nil` until a task waited.
    @usableFromInline @exclusivity(unchecked) var loop: EventLoop?
    @exclusivity(unchecked) private var nextWaiterID: UInt64 = 0

    /// Creates an empty queue.
    /// - Parameter maxSize: The most items it holds before ``put(_:)`` waits; 0 (the default)
    ///   or less means unbounded.
    public init(maxSize: Int = 0) {
        self.maxSize = maxSize
    }

    // MARK: - Inspecting

    /// How many items the queue holds (asyncio's `qsize()`).
    /// - Important: Loop-bound.
    @inlinable
    public var count: Int {
        checkLoop()
        return storage.count
    }

    /// Whether the queue holds no item.
    /// - Important: Loop-bound.
    @inlinable
    public var isEmpty: Bool {
        checkLoop()
        return storage.count == 0
    }

    /// Whether the queue holds ``maxSize`` items; never true for an unbounded queue.
    /// - Important: Loop-bound.
    @inlinable
    public var isFull: Bool {
        checkLoop()
        return maxSize > 0 && storage.count >= maxSize
    }

    /// Whether ``shutdown(immediate:)`` was called.
    /// - Important: Loop-bound.
    @inlinable
    public var isShutDown: Bool {
        checkLoop()
        if case .shutDown = lifecycle { return true }
        return false
    }

    /// In debug builds, traps if the queue is bound to a loop and this is not its thread.
    @inlinable
    func checkLoop(_ function: StaticString = #function) {
        if let loop { loop.assertInLoop(function) }
    }

    // MARK: - Putting

    /// Puts `item` in the queue, first waiting for a free slot while it is full.
    ///
    /// - Throws: ``QueueShutDown`` if the queue is or gets shut down (the item is not put);
    ///   `CancellationError` if the task is cancelled while waiting (nothing is put);
    ///   ``EventLoopError/Code-swift.struct/noRunningLoop`` if it has to wait off a loop.
    /// - Important: Loop-bound: call from a task running on the queue's loop.
    @inlinable
    nonisolated(nonsending) public func put(_ item: Element) async throws {
        checkLoop()
        while isFull {
            if case .shutDown = lifecycle { throw QueueShutDown() }
            try await waitInLine(.putter)
        }
        try putNowait(item)
    }

    /// Puts `item` in the queue if it has a free slot, and wakes the first waiting getter.
    ///
    /// - Throws: ``QueueShutDown`` if the queue was shut down; ``QueueFull`` if it holds
    ///   ``maxSize`` items.
    /// - Important: Loop-bound.
    @inlinable
    public func putNowait(_ item: Element) throws {
        checkLoop()
        if case .shutDown = lifecycle { throw QueueShutDown() }
        if maxSize > 0 && storage.count >= maxSize { throw QueueFull() }
        storage.append(item)
        unfinishedTasks += 1
        getters.wakeFirst()
    }

    // MARK: - Getting

    /// Removes and returns the next item, first waiting for one while the queue is empty.
    ///
    /// - Throws: ``QueueShutDown`` once the queue is shut down and empty (at once after an
    ///   immediate shutdown); `CancellationError` if the task is cancelled while waiting (no
    ///   item is taken); ``EventLoopError/Code-swift.struct/noRunningLoop`` if it has to wait
    ///   off a loop.
    /// - Important: Loop-bound: call from a task running on the queue's loop.
    @inlinable
    nonisolated(nonsending) public func get() async throws -> Element {
        guard let item = try await nextItem() else { throw QueueShutDown() }
        return item
    }

    /// Removes and returns the next item if there is one, and wakes the first waiting putter.
    ///
    /// - Throws: ``QueueEmpty`` if the queue is empty; ``QueueShutDown`` if it is empty and
    ///   shut down.
    /// - Important: Loop-bound.
    @inlinable
    public func getNowait() throws -> Element {
        checkLoop()
        guard let item = storage.removeNext() else {
            if case .shutDown = lifecycle { throw QueueShutDown() }
            throw QueueEmpty()
        }
        putters.wakeFirst()
        return item
    }

    /// The next item as ``get()`` takes it, or `nil` once the queue is shut down and empty.
    @inlinable
    nonisolated(nonsending) func nextItem() async throws -> Element? {
        checkLoop()
        while true {
            if let item = storage.removeNext() {
                putters.wakeFirst()
                return item
            }
            if case .shutDown = lifecycle { return nil }
            try await waitInLine(.getter)
        }
    }

    // MARK: - Tracking work

    /// Marks one item taken from the queue as processed (asyncio's `task_done()`): each
    /// consumer calls it once per item it got. When every item put so far is marked,
    /// the tasks waiting in ``join()`` resume.
    ///
    /// - Throws: ``InvalidStateError`` if called more times than items were put.
    /// - Important: Loop-bound.
    public func taskDone() throws {
        checkLoop()
        guard unfinishedTasks > 0 else {
            throw InvalidStateError("taskDone() called more times than items were put in the queue")
        }
        unfinishedTasks -= 1
        if unfinishedTasks == 0 { joiners.wakeAll() }
    }

    /// Waits until every item put in the queue was marked with ``taskDone()`` (items dropped
    /// by an immediate shutdown count as done); returns at once if none is pending.
    ///
    /// - Throws: `CancellationError` if the task is cancelled while waiting;
    ///   ``EventLoopError/Code-swift.struct/noRunningLoop`` if it has to wait off a loop.
    /// - Important: Loop-bound: call from a task running on the queue's loop.
    nonisolated(nonsending) public func join() async throws {
        checkLoop()
        if unfinishedTasks > 0 {
            try await waitInLine(.joiner)
        }
    }

    // MARK: - Shutting down

    /// Shuts the queue down (Python 3.13's `Queue.shutdown`): from now on puts throw
    /// ``QueueShutDown``, waiting putters included, and gets take what is left, then throw it.
    ///
    /// With `immediate`, the items left are dropped (each counts as done for ``join()``, which
    /// may return), and every waiting getter throws ``QueueShutDown`` too. Calling it again is
    /// allowed; a later immediate call drops what is left.
    /// - Important: Loop-bound.
    public func shutdown(immediate: Bool = false) {
        checkLoop()
        lifecycle = .shutDown
        if immediate {
            let dropped = storage.count
            storage.removeAll()
            unfinishedTasks = Swift.max(0, unfinishedTasks - dropped)
            if unfinishedTasks == 0 { joiners.wakeAll() }
        }
        // Every waiter re-checks: putters find the queue shut down, getters find it empty.
        getters.wakeAll()
        putters.wakeAll()
    }

    // MARK: - Waiting

    /// Suspends the calling task at the end of `role`'s line until it is woken, then returns
    /// so the caller re-checks the queue.
    ///
    /// A task cancelled while in line is taken out of it and gets `CancellationError`. A task
    /// woken, then cancelled before it ran, gets `CancellationError` too and passes the
    /// wake-up on to the next in line if the queue can still serve it (asyncio's
    /// `_wakeup_next` in the `except` of `get`/`put`), so no item or slot is lost.
    @usableFromInline
    nonisolated(nonsending) func waitInLine(_ role: Role) async throws {
        let loop = try bindLoop()
        let id = nextWaiterID
        nextWaiterID &+= 1
        try await _unsafeInheritExecutor_withTaskCancellationHandler {
            try await _unsafeInheritExecutor_withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
                // Cancelled before getting in line: onCancel already ran and found nothing
                // to remove. Cancelled later: onCancel hops to the loop and runs after this.
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                    return
                }
                switch role {
                case .getter: getters.append(id: id, continuation)
                case .putter: putters.append(id: id, continuation)
                case .joiner: joiners.append(id: id, continuation)
                }
            }
        } onCancel: {
            // The cancelling thread may be any thread: touch the lines on the loop only.
            loop.execute { self.leaveLine(role, id) }
        }
        if Task.isCancelled {
            passOnWakeUp(role)
            throw CancellationError()
        }
    }

    /// Takes the cancelled waiter `id` out of `role`'s line and resumes it with
    /// `CancellationError`; nothing if it was woken already. Runs on the loop.
    private func leaveLine(_ role: Role, _ id: UInt64) {
        let continuation: UnsafeContinuation<Void, any Error>?
        switch role {
        case .getter: continuation = getters.remove(id)
        case .putter: continuation = putters.remove(id)
        case .joiner: continuation = joiners.remove(id)
        }
        continuation?.resume(throwing: CancellationError())
    }

    /// A woken waiter that will not act (its task was cancelled) hands the wake-up to the
    /// next in its line, if the queue can still serve that one.
    private func passOnWakeUp(_ role: Role) {
        switch role {
        case .getter: if storage.count > 0 { getters.wakeFirst() }
        case .putter: if !isFull { putters.wakeFirst() }
        case .joiner: break   // every joiner was woken at once
        }
    }

    /// The queue's loop, bound to the current one by the first waiting task.
    private func bindLoop() throws -> EventLoop {
        guard let current = EventLoop.current else {
            throw EventLoopError(.noRunningLoop, "waiting on a queue needs a task running on an event loop")
        }
        if let loop {
            precondition(
                loop === current,
                "\(Self.self) is bound to EventLoop '\(loop.name)' and was used from EventLoop '\(current.name)'")
            return loop
        }
        loop = current
        return current
    }
}

extension LoopQueue: CustomStringConvertible {
    /// The queue's type, size and waiters, e.g.
    /// `LoopQueue<FIFOQueueStorage<Int>>(maxSize: 2, count: 2, putters: 1, unfinished: 2)`.
    /// Read it on the queue's loop. Once the queue is bound to a loop, a description asked
    /// for off that loop's thread (while it runs) says `state unknown off the loop` instead.
    public var description: String {
        if let loop, !loop.mayTouchLoopState {
            return "\(Self.self)(state unknown off the loop)"
        }
        var parts = ["maxSize: \(maxSize)", "count: \(storage.count)"]
        if getters.count > 0 { parts.append("getters: \(getters.count)") }
        if putters.count > 0 { parts.append("putters: \(putters.count)") }
        if unfinishedTasks > 0 { parts.append("unfinished: \(unfinishedTasks)") }
        if case .shutDown = lifecycle { parts.append("shut down") }
        return "\(Self.self)(\(parts.joined(separator: ", ")))"
    }
}
