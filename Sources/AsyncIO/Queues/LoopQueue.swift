//===----------------------------------------------------------------------===//
// swift-asyncio — LoopQueue: asyncio's Queue logic over any QueueStorage.
//===----------------------------------------------------------------------===//

/// A queue for producer and consumer tasks on one loop (asyncio's `asyncio.Queue`, with
/// Python 3.13's shutdown), generic over the order it hands items out in: use it as
/// ``Queue`` (FIFO), ``LifoQueue`` or ``PriorityQueue``.
///
/// - ``put(_:)`` waits while the queue holds ``maxSize`` items; ``get()`` waits while it is
///   empty. Waiting getters, and waiting putters, are served first come first served, and
///   served on the spot: a put that finds a getter waiting hands it the item (through the
///   storage, so a storage's order still applies), and a get that frees a slot stores the
///   first waiting putter's item. The waiting task resumes with its operation done, so every
///   hand-off costs one task switch, not two, and nobody can take an item or a slot promised
///   to a waiter.
/// - Cancelling a waiting task throws `CancellationError` to it and loses no item: nothing
///   is taken, nothing is put. Once served, the operation is done: a getter cancelled after
///   it was handed an item, but before it ran, returns the item (asyncio raises
///   `CancelledError` there and hands the item to the next getter; a Swift task's
///   cancellation is a request the task sees at its next wait, so a finished get is not
///   undone). No item is lost either way.
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
public final class LoopQueue<Storage: QueueStorage>: _LoopTaskWait, @unchecked Sendable {
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
    enum Role: UInt64, Sendable {
        /// A get, waiting for an item.
        case getter
        /// A put, waiting for a free slot.
        case putter
        /// A join, waiting for the unfinished count to reach zero.
        case joiner
    }

    /// A get waiting for an item. Resumed with the item, or with `nil` to look again (the
    /// queue was shut down).
    @usableFromInline
    struct Getter: QueueWaiter {
        @usableFromInline let id: UInt64
        @usableFromInline let continuation: UnsafeContinuation<Element?, any Error>

        @usableFromInline
        init(id: UInt64, continuation: UnsafeContinuation<Element?, any Error>) {
            self.id = id
            self.continuation = continuation
        }

        @usableFromInline
        func resumeCancelled() { continuation.resume(throwing: CancellationError()) }
    }

    /// A put waiting for a free slot, with its item. Resumed with `true` once the item is
    /// stored, or with `false` to look again (the queue was shut down).
    @usableFromInline
    struct Putter: QueueWaiter {
        @usableFromInline let id: UInt64
        @usableFromInline let item: Element
        @usableFromInline let continuation: UnsafeContinuation<Bool, any Error>

        @usableFromInline
        init(id: UInt64, item: Element, continuation: UnsafeContinuation<Bool, any Error>) {
            self.id = id
            self.item = item
            self.continuation = continuation
        }

        @usableFromInline
        func resumeCancelled() { continuation.resume(throwing: CancellationError()) }
    }

    /// A join waiting for the unfinished count to reach zero.
    @usableFromInline
    struct Joiner: QueueWaiter {
        @usableFromInline let id: UInt64
        @usableFromInline let continuation: UnsafeContinuation<Void, any Error>

        @usableFromInline
        init(id: UInt64, continuation: UnsafeContinuation<Void, any Error>) {
            self.id = id
            self.continuation = continuation
        }

        @usableFromInline
        func resumeCancelled() { continuation.resume(throwing: CancellationError()) }
    }

    /// The most items the queue holds; 0 (or less) means unbounded.
    public let maxSize: Int

    // Loop-confined, never accessed overlappingly: no runtime exclusivity checks.
    @usableFromInline @exclusivity(unchecked) var storage = Storage()
    @usableFromInline @exclusivity(unchecked) var lifecycle = Lifecycle.open
    @usableFromInline @exclusivity(unchecked) var getters = QueueLine<Getter>()
    @usableFromInline @exclusivity(unchecked) var putters = QueueLine<Putter>()
    @usableFromInline @exclusivity(unchecked) var joiners = QueueLine<Joiner>()
    /// Items put and not yet marked done with ``taskDone()``.
    @usableFromInline @exclusivity(unchecked) var unfinishedTasks = 0
    /// The loop of the first waiting task; `nil` until a task waited.
    @usableFromInline @exclusivity(unchecked) var loop: EventLoop?
    @usableFromInline @exclusivity(unchecked) var nextWaiterID: UInt64 = 0

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
    @inlinable @inline(__always)   // no async frame unless it waits
    nonisolated(nonsending) public func put(_ item: Element) async throws {
        checkLoop()
        while true {
            if case .shutDown = lifecycle { throw QueueShutDown() }
            if !isFull {
                store(item)
                return
            }
            // Stored by a get that freed a slot: done. `false`: shut down, look again.
            let stored = try await waitInLine(.putter) { id, continuation in
                putters.append(Putter(id: id, item: item, continuation: continuation))
            }
            if stored { return }
        }
    }

    /// Puts `item` in the queue if it has a free slot, and serves the first waiting getter.
    ///
    /// - Throws: ``QueueShutDown`` if the queue was shut down; ``QueueFull`` if it holds
    ///   ``maxSize`` items.
    /// - Important: Loop-bound.
    @inlinable
    public func putNowait(_ item: Element) throws {
        checkLoop()
        if case .shutDown = lifecycle { throw QueueShutDown() }
        if isFull { throw QueueFull() }
        store(item)
    }

    /// Stores `item` (the queue is open and has a free slot) and serves the waiters.
    @inlinable
    func store(_ item: Element) {
        storage.append(item)
        unfinishedTasks += 1
        if !getters.isEmpty { serveWaiters() }
    }

    /// Serves waiters while the queue can: hands items to waiting getters, stores waiting
    /// putters' items in free slots. Afterwards, getters wait only while the storage is
    /// empty and putters only while it is full, so a newcomer never overtakes them.
    @inlinable
    func serveWaiters() {
        while true {
            if !getters.isEmpty, let item = storage.removeNext(), let getter = getters.popFirst() {
                getter.continuation.resume(returning: item)
                continue
            }
            if !putters.isEmpty, case .open = lifecycle, !isFull, let putter = putters.popFirst() {
                storage.append(putter.item)
                unfinishedTasks += 1
                putter.continuation.resume(returning: true)
                continue
            }
            return
        }
    }

    // MARK: - Getting

    /// Removes and returns the next item, first waiting for one while the queue is empty.
    ///
    /// - Throws: ``QueueShutDown`` once the queue is shut down and empty (at once after an
    ///   immediate shutdown); `CancellationError` if the task is cancelled while waiting (no
    ///   item is taken); ``EventLoopError/Code-swift.struct/noRunningLoop`` if it has to wait
    ///   off a loop.
    /// - Important: Loop-bound: call from a task running on the queue's loop.
    @inlinable @inline(__always)   // no async frame unless it waits
    nonisolated(nonsending) public func get() async throws -> Element {
        guard let item = try await nextItem() else { throw QueueShutDown() }
        return item
    }

    /// Removes and returns the next item if there is one, and serves the first waiting putter.
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
        if !putters.isEmpty { serveWaiters() }
        return item
    }

    /// The next item as ``get()`` takes it, or `nil` once the queue is shut down and empty.
    @inlinable @inline(__always)   // no async frame unless it waits
    nonisolated(nonsending) func nextItem() async throws -> Element? {
        checkLoop()
        while true {
            if let item = storage.removeNext() {
                if !putters.isEmpty { serveWaiters() }
                return item
            }
            if case .shutDown = lifecycle { return nil }
            // Handed an item by a put: done. `nil`: shut down, look again.
            let handed = try await waitInLine(.getter) { id, continuation in
                getters.append(Getter(id: id, continuation: continuation))
            }
            if let handed { return handed }
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
        if unfinishedTasks == 0 { wakeJoiners() }
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
            try await waitInLine(.joiner) { id, continuation in
                joiners.append(Joiner(id: id, continuation: continuation))
            }
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
            if unfinishedTasks == 0 { wakeJoiners() }
        }
        // Every waiter looks again: putters find the queue shut down, getters find it empty
        // (getters wait only while it is empty).
        while let getter = getters.popFirst() { getter.continuation.resume(returning: nil) }
        while let putter = putters.popFirst() { putter.continuation.resume(returning: false) }
    }

    /// Resumes every task waiting in ``join()``.
    func wakeJoiners() {
        while let joiner = joiners.popFirst() { joiner.continuation.resume() }
    }

    // MARK: - Waiting

    /// Suspends the calling task in `role`'s line (`enter` appends it, with its number and
    /// continuation) until the queue serves it, and returns what it was served with.
    ///
    /// A task cancelled while in line is taken out of it and gets `CancellationError`; one
    /// already served returns normally (see the type's documentation). The handler and the
    /// continuation inherit the caller's executor (the loop): no hop, no executor check.
    @inlinable
    nonisolated(nonsending) func waitInLine<Served: Sendable>(
        _ role: Role,
        _ enter: (UInt64, UnsafeContinuation<Served, any Error>) -> Void
    ) async throws -> Served {
        let loop = try bindLoop()
        let id = nextWaiterID
        nextWaiterID &+= 1
        if let owner = loop.coveringTask() {
            // A LoopTask's own task: its cancel(message:) takes it out of line directly, so
            // the wait needs no cancellation handler (see Future.value).
            defer { owner._setCoveredWait(nil, id: 0) }
            do {
                return try await _unsafeInheritExecutor_withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Served, any Error>) in
                    guard loop.isRunningTask(continuation) else {
                        continuation.resume(throwing: NotCoveredWait())
                        return
                    }
                    // Cancelled already: what the handler path does at once.
                    if owner.cancelling() > 0 || Task.isCancelled {
                        continuation.resume(throwing: CancellationError())
                        return
                    }
                    // The role rides in the id's low bits (ids count up from zero).
                    owner._setCoveredWait(self, id: id << 2 | role.rawValue)
                    enter(id, continuation)
                }
            } catch is NotCoveredWait {
                // A `Task.immediate` started inside the task's step: its own handler below.
            }
        }
        return try await _unsafeInheritExecutor_withTaskCancellationHandler {
            try await _unsafeInheritExecutor_withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Served, any Error>) in
                // Cancelled before getting in line: onCancel already ran and found nothing
                // to remove. Cancelled later: onCancel hops to the loop and runs after this.
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                } else {
                    enter(id, continuation)
                }
            }
        } onCancel: {
            // The cancelling thread may be any thread: touch the lines on the loop only.
            loop.execute { self.leaveLine(role, id) }
        }
    }

    /// The covered task in wait `wait` (id and role) was cancelled: as its handler would.
    public func _waitingTaskCancelled(_ wait: UInt64, message: String?) {
        guard let role = Role(rawValue: wait & 3) else { return }
        leaveLine(role, wait >> 2)
    }

    /// Takes the cancelled waiter `id` out of `role`'s line and resumes it with
    /// `CancellationError`; nothing if it was served already. Runs on the loop.
    @usableFromInline
    func leaveLine(_ role: Role, _ id: UInt64) {
        switch role {
        case .getter: getters.cancel(id)
        case .putter: putters.cancel(id)
        case .joiner: joiners.cancel(id)
        }
    }

    /// The queue's loop, bound to the current one by the first waiting task.
    @usableFromInline
    func bindLoop() throws -> EventLoop {
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

/// Thrown into a wait that turned out not to be a covered one (see
/// ``LoopQueue/waitInLine(_:_:)``); never leaves the queue.
@usableFromInline
struct NotCoveredWait: Error {
    @usableFromInline init() {}
}
