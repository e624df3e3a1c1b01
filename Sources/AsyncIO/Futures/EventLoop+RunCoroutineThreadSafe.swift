//===----------------------------------------------------------------------===//
// swift-asyncio — runCoroutineThreadSafe: async work for a loop, from another thread.
//===----------------------------------------------------------------------===//

extension EventLoop {
    /// Schedules `body` as a task on this loop from another thread and returns a future that
    /// thread can block on (asyncio's `run_coroutine_threadsafe`).
    ///
    /// ```swift
    /// // On a plain thread (a callback of a C library, a worker thread):
    /// let future = try loop.runCoroutineThreadSafe { try await fetchConfig() }
    /// do {
    ///     let config = try future.result(timeout: .seconds(5))
    /// } catch is TimeoutError {
    ///     future.cancel()   // cancels the task on the loop
    /// }
    /// ```
    ///
    /// The task is a ``LoopTask`` created on the loop's next pass: listed in ``allTasks`` and
    /// cancelled with the others when the loop shuts down (the future is then cancelled too).
    /// ``ConcurrentFuture/cancel()`` cancels the task (or keeps it from starting). From a
    /// task that runs on another loop, prefer ``submit(_:)``, which awaits instead of blocking.
    ///
    /// - Parameters:
    ///   - name: A name for the task; `Task-N` by default.
    ///   - body: The async work. Every step of it runs on the loop's thread.
    /// - Returns: A future completed with the task's outcome.
    /// - Throws: ``EventLoopError/Code-swift.struct/closed`` if the loop is closed.
    /// - Important: Call it from any thread *except* the loop's own: blocking the loop's
    ///   thread on the result would deadlock, so that is a programmer error and traps. On the
    ///   loop, use ``createTask(name:_:)``.
    public func runCoroutineThreadSafe<T: Sendable>(
        name: String? = nil,
        _ body: sending @escaping () async throws -> T
    ) throws(EventLoopError) -> ConcurrentFuture<T> {
        precondition(
            !inLoopThread,
            "EventLoop '\(self.name)': runCoroutineThreadSafe called on the loop's own thread; use createTask")
        let future = ConcurrentFuture<T>(loop: self)
        let work = ThreadSafeWork(body: body)
        future.onCancel { [self] in
            execute { work.task?.cancel() }
        }
        try callSoonThreadSafe({ [self] in
            // Cancelled before the loop got to it: the body never starts.
            if future.isDone { return }
            let task = createTask(name: name) { try await work.body() }
            work.task = task
            // A loop that closes first ends the task as cancelled, which completes the future.
            task._whenDone { task in future.complete(Result { try task.result() }) }
        }, onDrop: { _ = future.cancel() })   // the loop closed before it ran
        return future
    }
}

/// The body handed to the loop, and the task that runs it once started.
private final class ThreadSafeWork<T: Sendable>: @unchecked Sendable {
    // @unchecked Sendable: `body` was passed as `sending` (the caller gave it up) and is
    // called by the task only; `task` is written and read on the loop's thread only.
    let body: () async throws -> T
    var task: LoopTask<T>?

    init(body: sending @escaping () async throws -> T) {
        self.body = body
    }
}
