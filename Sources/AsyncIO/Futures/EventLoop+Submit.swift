//===----------------------------------------------------------------------===//
// swift-asyncio — submit: run async work on a loop from any thread or task.
//===----------------------------------------------------------------------===//

extension EventLoop {
    /// Runs `body` as a task on this loop from any thread or task and returns its result
    /// (asyncio's `run_coroutine_threadsafe`, awaited). Cancelling the caller cancels the task.
    ///
    /// - Note: Thread-safe.
    public func submit<T: Sendable>(_ body: sending @escaping () async throws -> T) async throws -> T {
        let task = Task(executorPreference: taskExecutor) { try await body() }
        return try await withTaskCancellationHandler { try await task.value } onCancel: { task.cancel() }
    }
}
