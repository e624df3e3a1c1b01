//===----------------------------------------------------------------------===//
// swift-asyncio — submit: run async work on a loop from any thread or task.
//===----------------------------------------------------------------------===//

import Synchronization

extension EventLoop {
    /// Runs `body` as a task on this loop from any thread or task and returns its result
    /// (asyncio's `run_coroutine_threadsafe`, awaited). Cancelling the caller cancels the task
    /// (which still starts, cancelled, if it had not yet).
    ///
    /// The task is one of the loop's tasks (``createTask(name:_:)``): a loop that closes
    /// before it finished ends it as cancelled, so the caller hears `CancellationError`
    /// rather than waiting forever; a loop that closes before the task could start makes the
    /// call throw ``EventLoopError/Code-swift.struct/closed``.
    ///
    /// - Throws: the body's error; `CancellationError`; ``EventLoopError/Code-swift.struct/closed``
    ///   if the loop is closed (or closes before the task starts).
    /// - Note: Thread-safe.
    public func submit<T: Sendable>(_ body: sending @escaping () async throws -> T) async throws -> T {
        let relay = SubmitRelay<T>(body: body)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                relay.attach(continuation)
                do {
                    try callSoonThreadSafe({ [self] in relay.start(on: self) }, onDrop: {
                        relay.finish(.failure(EventLoopError(.closed, "the event loop closed before the submitted task started")))
                    })
                } catch {
                    relay.finish(.failure(error))
                }
            }
        } onCancel: {
            relay.cancel(on: self)
        }
    }
}

/// What ``EventLoop/submit(_:)`` shares between the caller and the loop: the body, the task
/// once started, whether the caller cancelled, and the continuation the outcome resumes once.
private final class SubmitRelay<T: Sendable>: @unchecked Sendable {
    // @unchecked Sendable: `body` was passed as `sending` (the caller gave it up) and is taken
    // once, on the loop; everything else is behind `state`'s mutex.
    private var body: (() async throws -> T)?

    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var task: LoopTask<T>?
        var cancelled = false
        var finished = false
    }

    private let state = Mutex(State())

    init(body: sending @escaping () async throws -> T) {
        self.body = body
    }

    /// Keeps the continuation the outcome resumes (before the work is handed to the loop).
    func attach(_ continuation: CheckedContinuation<T, any Error>) {
        state.withLock { $0.continuation = continuation }
    }

    /// On the loop: starts the task (cancelled at once if the caller already cancelled).
    func start(on loop: EventLoop) {
        guard let body else { return }
        self.body = nil
        let task = loop.createTask { try await body() }
        let cancelled = state.withLock { state in
            state.task = task
            return state.cancelled
        }
        if cancelled { task.cancel() }
        // A loop that closes first ends the task as cancelled, which lands here too.
        task._whenDone { task in self.finish(Result { try task.result() }) }
    }

    /// From the caller's cancellation handler (any thread): cancels the task on the loop, or
    /// marks it to start cancelled.
    func cancel(on loop: EventLoop) {
        let task = state.withLock { state -> LoopTask<T>? in
            state.cancelled = true
            return state.task
        }
        guard let task else { return }
        // The loop may be closed already: then the task was ended as cancelled.
        loop.execute { task.cancel() }
    }

    /// Resumes the caller with `result`, once.
    func finish(_ result: Result<T, any Error>) {
        let continuation = state.withLock { state -> CheckedContinuation<T, any Error>? in
            guard !state.finished else { return nil }
            state.finished = true
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume(with: result)
    }
}
