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
    /// Cancelling the future before the job started cancels the job (it never runs); once it
    /// runs, it runs to the end (threads cannot be interrupted) and its result is dropped.
    ///
    /// A round trip costs about 3 µs on a 2-core virtual machine, 5 when the host is busy, and
    /// two allocations (the future and the job; a `DispatchQueue.global()` hop and back costs
    /// 15–21 µs and five allocations there): the pool's last idle worker polls for the next job
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
        // Detached: a loop closed while this waits never resumes it, and a thread nobody
        // joins would keep its stack.
        _ = OSThread.spawn(name: "asyncio-join", detached: true) { [self] in
            executor.shutdown(wait: true)
            _ = enqueueRemote { done.complete(.success(())) }
        }
        await done.waitDone()
    }
}

/// The future of a `runInExecutor` call: cancelling it before the job started cancels the job
/// where it waits in the pool's queue (it never runs).
///
/// A subclass rather than a done-callback on a plain future: the callback's closure and the
/// future's second waiter (the awaiting task is the first) were two allocations per call.
final class ExecutorFuture<Value: Sendable>: Future<Value>, @unchecked Sendable {
    /// The job, until it came back or was cancelled before it started. Loop-confined.
    var call: ExecutorCall<Value>?

    override func cancel() -> Bool {
        guard super.cancel() else { return false }
        // A job that started (or was dropped) comes back anyway: `jobCameBack` counts it out.
        if let call, call.tryCancel() {
            self.call = nil
            loop.executorJobEnded(submittedAt: nil)
        }
        return true
    }

    /// On the loop: the job handed itself back, having run (its result is set) or been dropped
    /// by the pool's shutdown before it started (no result: the future is cancelled).
    func jobCameBack() {
        guard let call else { return }
        self.call = nil
        if let result = call.result {
            loop.executorJobEnded(submittedAt: call.submittedAt)
            completeIfPending(result)
        } else {
            loop.executorJobEnded(submittedAt: nil)
            complete(.cancelled)
        }
    }
}

/// A `runInExecutor` job: runs the body on a pool thread, keeps the result, and hands the
/// future to the loop, which takes the result from the job. One object for the round trip;
/// the closure that crosses to the loop captures only the future, which is then its context.
///
/// The future holds the job (to cancel it) until the job comes back; the job holds the future
/// only until it starts, is cancelled or is dropped, so no cycle outlives the round trip, even
/// when a loop closes with the hand-back still in its queue (the closure is then released,
/// and the future and the job with it once nobody else holds the future).
final class ExecutorCall<Value: Sendable>: WorkItem, @unchecked Sendable {
    // @unchecked Sendable: `body` and `future` are used by whoever claims the item (the pool
    // thread that runs it, or the thread that cancels or drops it); `result` is written on the
    // pool thread before the hand-back and read on the loop after it (the loop's inbox orders
    // the two).
    private var body: (@Sendable () throws -> Value)?
    private var future: ExecutorFuture<Value>?
    fileprivate private(set) var result: Result<Value, any Error>?
    fileprivate let submittedAt: UInt64

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

    /// Hands the future to its loop (at once if this is the loop's thread: a drop by a
    /// shutdown called there), which takes the outcome from this job. A closed loop refuses:
    /// nobody can observe the outcome, and the future is let go of.
    private func handBack() {
        guard let future else { return }
        self.future = nil
        _ = future.loop.execute { [future] in future.jobCameBack() }
    }
}
