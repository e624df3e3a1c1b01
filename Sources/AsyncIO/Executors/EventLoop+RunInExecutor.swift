//===----------------------------------------------------------------------===//
// swift-asyncio — The loop's side of its executors: the default executor, runInExecutor.
//===----------------------------------------------------------------------===//

/// A loop's default executor (loop-local state): made on first use, shut down without
/// waiting when the loop closes.
final class DefaultExecutorSlot: LoopLocal {
    static let key = LoopLocalKey<DefaultExecutorSlot>()
    var executor: ThreadPoolExecutor?
    /// ``EventLoop/shutdownDefaultExecutor()`` was called: a new default executor starts shut.
    var shutDown = false

    func loopWillClose() {
        executor?.shutdown(wait: false)
        executor = nil
    }
}

@available(*, unavailable)
extension DefaultExecutorSlot: Sendable {}

extension EventLoop {
    var defaultExecutorSlot: DefaultExecutorSlot {
        local(DefaultExecutorSlot.key) { DefaultExecutorSlot() }
    }

    /// The loop's default executor, created on first use with
    /// ``ThreadPoolExecutor/defaultMaxWorkers`` threads.
    /// - Important: Loop-bound.
    public var defaultExecutor: ThreadPoolExecutor {
        assertInLoop()
        let slot = defaultExecutorSlot
        if let executor = slot.executor { return executor }
        let executor = ThreadPoolExecutor(threadNamePrefix: "asyncio-\(name)")
        if slot.shutDown || isClosed { executor.shutdown(wait: false) }   // starts no thread
        slot.executor = executor
        return executor
    }

    /// The default executor if one was made or set, without making one (for metrics).
    /// - Important: Loop-bound.
    package var existingDefaultExecutor: ThreadPoolExecutor? {
        assertInLoop()
        return existingLocal(DefaultExecutorSlot.key)?.executor
    }

    /// Replaces the default executor used by ``runInExecutor(_:_:)`` with `nil`.
    /// - Important: Loop-bound.
    public func setDefaultExecutor(_ executor: ThreadPoolExecutor) {
        assertInLoop()
        let slot = defaultExecutorSlot
        slot.executor = executor
        slot.shutDown = false
    }

    /// Shuts the default executor down (if one was made) and blocks until its threads are
    /// done: for `EventLoop.run` and the group's shutdown, with the loop stopped.
    func shutdownDefaultExecutorBlocking() {
        guard let slot = existingLocal(DefaultExecutorSlot.key) else { return }
        slot.executor?.shutdown(wait: true)
        slot.executor = nil
    }

    /// Runs the blocking `body` on `executor` (the default executor if `nil`) and returns a
    /// future resolved on this loop with its result or error (asyncio's `run_in_executor`).
    ///
    /// Cancelling the future before the job started removes the job; once it runs, it runs to
    /// the end (threads cannot be interrupted) and its result is dropped.
    ///
    /// A round trip costs about 5 µs on a 2-core virtual machine (a `DispatchQueue.global()`
    /// hop and back costs 15–20 µs there): the pool's last idle worker polls for the next job
    /// for its ``ThreadPoolExecutor/spinDuration``, and a loop with jobs in flight whose round
    /// trips average under 50 µs polls for their results for up to 30 µs before it sleeps in
    /// epoll, so neither side pays a futex or eventfd wake-up. Long jobs make the average
    /// long and the loop sleeps at once.
    ///
    /// ```swift
    /// let digest = try await loop.runInExecutor { try hashFile(path) }.value
    /// ```
    /// - Returns: A future that fails with ``EventLoopError/Code-swift.struct/executorShutdown``
    ///   if the executor was shut down.
    /// - Important: Loop-bound.
    public func runInExecutor<T: Sendable>(
        _ executor: ThreadPoolExecutor? = nil,
        _ body: @escaping @Sendable () throws -> T
    ) -> Future<T> {
        assertInLoop()
        let future = ExecutorFuture<T>(loop: self)
        if isClosed {
            future.complete(.failure(EventLoopError.closedError))
            return future
        }
        let call = ExecutorCall(future: future, submittedAt: monotonicNanoseconds(), body)
        future.call = call
        let pool = executor ?? defaultExecutor
        if pool.submit(call) {
            executorJobsInFlight += 1
        } else {
            future.call = nil
            future.complete(.failure(EventLoopError(.executorShutdown, "the executor was shut down")))
        }
        return future
    }

    /// A `runInExecutor` job ended (ran, or was dropped): one fewer in flight, and the moving
    /// average of round trips updated with this one (weight 1/8) if it ran. Loop thread only.
    fileprivate func executorJobEnded(submittedAt: UInt64?) {
        executorJobsInFlight -= 1
        guard let submittedAt else { return }
        let roundTrip = monotonicNanoseconds() &- submittedAt
        executorRoundTripNanos = executorRoundTripNanos - executorRoundTripNanos / 8 + roundTrip / 8
    }

    /// Shuts the default executor down and waits, without blocking the loop, until its threads
    /// finished their jobs (asyncio's `shutdown_default_executor`). Later
    /// ``runInExecutor(_:_:)`` calls with a `nil` executor fail with `executorShutdown`.
    /// - Important: Call from a task running on this loop.
    public func shutdownDefaultExecutor() async {
        preconditionInLoop()
        let slot = defaultExecutorSlot
        slot.shutDown = true
        guard let executor = slot.executor else { return }
        let done = Future<Void>(loop: self)
        let joiner = OSThread.spawn(name: "asyncio-join") { [self] in
            executor.shutdown(wait: true)
            _ = enqueueRemote { done.complete(.success(())) }
        }
        await done.waitDone()
        joiner.join()
    }
}

/// The future of a `runInExecutor` call: cancelling it before the job started removes the job
/// from the pool's queue.
///
/// A subclass rather than a done-callback on a plain future: the callback's closure and the
/// future's second waiter (the awaiting task is the first) were two allocations per call.
final class ExecutorFuture<Value: Sendable>: Future<Value>, @unchecked Sendable {
    /// The job, until it delivered its result or was cancelled (loop-confined).
    var call: ExecutorCall<Value>?

    override func cancel() -> Bool {
        guard super.cancel() else { return false }
        if let call {
            self.call = nil
            if call.tryCancel() { loop.executorJobEnded(submittedAt: nil) }
        }
        return true
    }
}

/// A `runInExecutor` job: runs the body on a pool thread, keeps the result, and hands itself
/// back to the loop, which resolves the future with it. One object for the whole round trip
/// (the closure that takes it to the loop captures only the job: no context of its own).
///
/// The job and its future hold each other until the round trip ends: delivered, cancelled
/// (the future lets go), or dropped by the pool's shutdown. A job that finishes, or is
/// dropped, after its loop closed lets go of the future on its own thread: the loop no longer
/// runs, so nothing else touches it, and the pair is freed.
final class ExecutorCall<Value: Sendable>: WorkItem, @unchecked Sendable {
    // @unchecked Sendable: `body` is used by the pool thread that runs the job (or released by
    // whoever claims the item first); `result` is written on that thread before the job is
    // handed to the loop (the loop's inbox orders the two); `future` is the loop's until the
    // loop closed.
    private var body: (@Sendable () throws -> Value)?
    private var future: ExecutorFuture<Value>?
    private var result: Result<Value, any Error>?
    private let submittedAt: UInt64

    init(future: ExecutorFuture<Value>, submittedAt: UInt64, _ body: @escaping @Sendable () throws -> Value) {
        self.future = future
        self.submittedAt = submittedAt
        self.body = body
    }

    override func perform() {
        guard let body else { return }
        self.body = nil
        result = Result { try body() }
        handBack()
    }

    override func cancelled() {
        body = nil
        future = nil
    }

    override func dropped() {
        body = nil
        handBack()
    }

    /// Hands the job to its loop, which resolves the future; once the loop closed, lets go of
    /// the future instead (nobody can observe it any more).
    private func handBack() {
        guard let loop = future?.loop, loop.enqueueRemote({ [self] in finishOnLoop() }) else {
            future = nil
            return
        }
    }

    /// On the loop: the result reaches the future (unless it was cancelled meanwhile); with no
    /// result, the pool's shutdown dropped the job before it started and the future is
    /// cancelled.
    private func finishOnLoop() {
        guard let future else { return }
        self.future = nil
        future.call = nil
        if let result {
            future.loop.executorJobEnded(submittedAt: submittedAt)
            future.completeIfPending(result)
        } else {
            future.loop.executorJobEnded(submittedAt: nil)
            future.complete(.cancelled)
        }
    }
}
