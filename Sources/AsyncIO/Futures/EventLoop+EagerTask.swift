//===----------------------------------------------------------------------===//
// swift-asyncio — Eager tasks: createTask whose first step runs inside the call.
//===----------------------------------------------------------------------===//

extension EventLoop {
    /// Starts `body` as a task on this loop; with `eager: true` its first step runs at once,
    /// inside this call, up to its first suspension (asyncio's eager task factory, 3.12+).
    ///
    /// An eager task that never suspends is done when this returns (its value is ready
    /// without a pass of the loop). One that suspends goes on like any other task: every
    /// later step runs on the loop in later passes. Eager start saves a pass of the loop for
    /// work that is often ready at once (a cached answer, a non-empty buffer) and makes the
    /// first step's side effects visible when the call returns.
    ///
    /// ```swift
    /// let task = loop.createTask(eager: true) {
    ///     cache[key] ?? (try await fetch(key))   // a cache hit completes inside createTask
    /// }
    /// if task.isDone { … }
    /// ```
    ///
    /// Built on Swift's `Task.immediate(executorPreference:)`: the first step runs on the
    /// calling thread, which must be the loop's, so eager start is used only when the caller
    /// runs on the loop's thread; otherwise (setting up a loop that is not running) the task
    /// starts the normal way, on a later pass. A ``LoopTask/cancel()`` made by the first step
    /// itself (on its own task) reaches the Swift task when that step suspends.
    ///
    /// - Parameters:
    ///   - name: A name for logs and ``LoopTask/name``; `Task-N` by default.
    ///   - eager: Whether to run the first step inside this call; `false` is
    ///     ``createTask(name:_:)``.
    ///   - body: The async work. Every step of it runs on the loop's thread.
    /// - Returns: The task; await its ``Future/value`` for the result.
    /// - Important: Loop-bound; traps on a closed loop.
    @available(macOS 26.0, *)
    @discardableResult
    @inlinable
    public func createTask<T: Sendable>(
        name: String? = nil,
        eager: Bool,
        _ body: nonisolated(nonsending) sending @escaping () async throws -> T
    ) -> LoopTask<T> {
        guard eager, inLoopThread else { return createTask(name: name, body) }
        let task: LoopTask<T> = newLoopTask(name: name)
        // The first step runs inside Task.immediate, within the caller's step (or callback):
        // the loop cannot tell it by the job it runs, so it is told.
        let outerFirstStep = eagerFirstStep
        eagerFirstStep = task
        let swiftTask = Task.immediate(executorPreference: taskExecutor) { () async throws in
            await task.run(body)
        }
        eagerFirstStep = outerFirstStep
        task.attach(swiftTask)
        // A cancel request made during the first step found no Swift task to cancel yet.
        if task.isCancelling { swiftTask.cancel() }
        return task
    }
}
