//===----------------------------------------------------------------------===//
// swift-asyncio — sleep, gather, waitFor, shield, wait, asCompleted.
//===----------------------------------------------------------------------===//

import DequeModule

// MARK: - sleep

extension EventLoop {
    /// Suspends the calling task for `duration` on a loop timer (no thread is blocked).
    ///
    /// Called from a task not running on this loop, it hops to the loop for the wait and back.
    /// - Throws: `CancellationError` if the task is cancelled meanwhile (the timer is cancelled).
    public func sleep(for duration: Duration) async throws {
        if !inLoopThread {
            let hop = Task(executorPreference: taskExecutor) { try await self.sleep(for: duration) }
            try await withTaskCancellationHandler { try await hop.value } onCancel: { hop.cancel() }
            return
        }
        let future = Future<Void>(loop: self)
        let timer = callLater(after: duration) { future.complete(.success(())) }
        future._whenDone { future in if future.isCancelled { timer.cancel() } }
        try await future.value
    }
}

/// Suspends the calling task for `duration` on the current event loop's timer
/// (asyncio's `asyncio.sleep`).
///
/// - Throws: `CancellationError` if the task is cancelled;
///   ``EventLoopError/Code-swift.struct/noRunningLoop`` if the caller does not run on a loop
///   (use ``EventLoop/sleep(for:)`` there).
public func sleep(for duration: Duration) async throws {
    guard let loop = EventLoop.current else {
        throw EventLoopError(.noRunningLoop, "sleep(for:) needs a task running on an event loop")
    }
    try await loop.sleep(for: duration)
}

// MARK: - gather

/// Waits for every future and returns their results in the order given (asyncio's `gather`).
///
/// The first error (in time) is thrown at once; the other futures keep running. A cancelled
/// future counts as a `CancellationError`. Cancelling the awaiting task cancels every future.
/// - Important: Call from a task running on the futures' loop.
public func gather<T>(_ futures: [Future<T>]) async throws -> [T] {
    try await waitAll(futures, failFast: true)
    return try futures.map { try $0.result() }
}

/// Waits for every future and returns each outcome as a `Result`, in the order given
/// (asyncio's `gather(..., return_exceptions=True)`). Never throws: cancellation of the
/// awaiting task cancels the futures, whose results then hold `CancellationError`.
/// - Important: Call from a task running on the futures' loop.
public func gatherResults<T>(_ futures: [Future<T>]) async -> [Result<T, any Error>] {
    try? await waitAll(futures, failFast: false)
    return futures.map { future in Result { try future.result() } }
}

/// Waits for futures of different types and returns their results as a tuple, in order
/// (asyncio's `gather(a, b, c)`). Errors as in ``gather(_:)-(Future<T>)``.
/// - Important: Call from a task running on the futures' loop.
public func gather<each T>(_ futures: repeat Future<each T>) async throws -> (repeat each T) {
    var all: [any AnyFuture] = []
    for future in repeat each futures {
        all.append(future)
    }
    try await waitAll(all, failFast: true)
    return (repeat try (each futures).result())
}

/// Waits until all `futures` are done, or (failFast) until one fails or is cancelled.
private func waitAll(_ futures: [any AnyFuture], failFast: Bool) async throws {
    guard let loop = futures.first?.loop else { return }
    loop.preconditionInLoop()
    let outer = Future<Void>(loop: loop)
    var remaining = futures.count
    for future in futures {
        future._whenDoneErased { future in
            if outer.isDone { return }
            if failFast, let error = future.error {
                outer.complete(.failure(error))
                return
            }
            remaining -= 1
            if remaining == 0 { outer.complete(.success(())) }
        }
    }
    if failFast {
        // Cancelling the awaiter cancels `outer`; take the children down with it.
        outer._whenDone { outer in
            if outer.isCancelled {
                for future in futures { future.cancel() }
            }
        }
        try await outer.value
    } else {
        await withTaskCancellationHandler {
            await outer.waitDone()
        } onCancel: {
            loop.execute {
                for future in futures { future.cancel() }
            }
        }
    }
}

// MARK: - waitFor, shield

/// Waits for `future` for at most `timeout` (asyncio's `wait_for`).
///
/// On timeout the future is cancelled, and this waits for it to finish before throwing
/// ``TimeoutError``. If it completes despite the cancellation its outcome is returned.
/// Cancelling the awaiting task cancels the future too. `timeout == nil` waits forever.
/// - Important: Call from a task running on the future's loop.
public func waitFor<T>(_ future: Future<T>, timeout: Duration?) async throws -> T {
    guard let timeout else { return try await future.value }
    let loop = future.loop
    loop.preconditionInLoop()
    if future.isDone { return try future.result() }
    let waiter = Future<Void>(loop: loop)
    let timer = loop.callLater(after: timeout) { waiter.complete(.success(())) }
    future._whenDone { _ in
        timer.cancel()
        waiter.complete(.success(()))
    }
    do {
        try await waiter.value
    } catch {
        // The awaiting task was cancelled.
        timer.cancel()
        future.cancel()
        await future.waitDone()
        throw error
    }
    if future.isDone { return try future.result() }
    future.cancel()
    await future.waitDone()
    if future.isCancelled { throw TimeoutError() }
    return try future.result()
}

/// Runs `body` as a task on the current loop and waits for it at most `timeout`; on timeout
/// the task is cancelled (and awaited) and ``TimeoutError`` is thrown.
///
/// - Throws: the body's error, ``TimeoutError``, `CancellationError`, or
///   ``EventLoopError/Code-swift.struct/noRunningLoop`` off a loop.
public func waitFor<T: Sendable>(
    timeout: Duration?,
    _ body: sending @escaping () async throws -> T
) async throws -> T {
    guard let loop = EventLoop.current else {
        throw EventLoopError(.noRunningLoop, "waitFor(timeout:_:) needs a task running on an event loop")
    }
    return try await waitFor(loop.createTask(body), timeout: timeout)
}

/// Protects `future` from cancellation (asyncio's `shield`): returns a new future that follows
/// it; cancelling the new one (or a task awaiting it) leaves `future` running.
/// - Important: Loop-bound.
public func shield<T>(_ future: Future<T>) -> Future<T> {
    future.loop.assertInLoop()
    if future.isDone { return future }
    let outer = Future<T>(loop: future.loop)
    future._whenDone { future in
        if !outer.isDone { outer.complete(future.state) }
    }
    return outer
}

// MARK: - wait

/// When ``wait(_:timeout:returnWhen:)`` returns.
public enum ReturnWhen: Sendable, Hashable {
    /// As soon as any future is done.
    case firstCompleted
    /// As soon as any future fails (or is cancelled), or when all are done.
    case firstException
    /// When all futures are done.
    case allCompleted
}

/// Waits for `futures` until the `returnWhen` condition holds or `timeout` passes, and returns
/// them split into done and pending, each in the order given (asyncio's `wait`). Nothing is
/// cancelled on timeout; cancelling the awaiting task throws `CancellationError` and leaves the
/// futures running.
/// - Important: Call from a task running on the futures' loop.
public func wait<T>(
    _ futures: [Future<T>],
    timeout: Duration? = nil,
    returnWhen: ReturnWhen = .allCompleted
) async throws -> (done: [Future<T>], pending: [Future<T>]) {
    func split() -> (done: [Future<T>], pending: [Future<T>]) {
        (futures.filter { $0.isDone }, futures.filter { !$0.isDone })
    }
    guard let loop = futures.first?.loop else { return ([], []) }
    loop.preconditionInLoop()
    var remaining = futures.reduce(0) { $0 + ($1.isDone ? 0 : 1) }
    func satisfied() -> Bool {
        switch returnWhen {
        case .allCompleted: return remaining == 0
        case .firstCompleted: return remaining < futures.count
        case .firstException: return remaining == 0 || futures.contains { $0.isDone && $0.error != nil }
        }
    }
    if satisfied() { return split() }
    let waiter = Future<Void>(loop: loop)
    var timer: Handle?
    if let timeout {
        timer = loop.callLater(after: timeout) { waiter.complete(.success(())) }
    }
    for future in futures where !future.isDone {
        future._whenDoneErased { _ in
            remaining -= 1
            if !waiter.isDone && satisfied() { waiter.complete(.success(())) }
        }
    }
    defer { timer?.cancel() }
    try await waiter.value
    return split()
}

// MARK: - asCompleted

/// The futures given to ``asCompleted(_:timeout:)``, yielded in the order they complete.
///
/// Each element is a done future: read it with `try future.result()`.
public struct AsCompleted<T: Sendable>: AsyncSequence, Sendable {
    /// Each element is a future that is done.
    public typealias Element = Future<T>
    let state: AsCompletedState<T>

    /// Yields the futures as they complete; see ``AsCompleted``.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let state: AsCompletedState<T>

        /// The next future to complete, `nil` when all were returned.
        /// - Throws: ``TimeoutError`` once the deadline passed with futures still pending;
        ///   `CancellationError` if the awaiting task is cancelled.
        public mutating func next() async throws -> Future<T>? {
            try await state.next()
        }
    }

    /// An iterator over the futures in the order they complete. Iterate once: the futures
    /// returned are not returned again by a second iterator.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(state: state)
    }
}

/// Yields `futures` in the order they complete (asyncio's `as_completed`); after `timeout`
/// the iteration throws ``TimeoutError``. The futures are not cancelled.
///
/// ```swift
/// for try await future in asCompleted(tasks, timeout: .seconds(5)) {
///     print(try future.result())
/// }
/// ```
/// - Important: Create and iterate in a task running on the futures' loop.
public func asCompleted<T>(_ futures: [Future<T>], timeout: Duration? = nil) -> AsCompleted<T> {
    AsCompleted(state: AsCompletedState(futures, timeout: timeout))
}

final class AsCompletedState<T: Sendable>: @unchecked Sendable {
    private var done = Deque<Future<T>>()
    private var remaining: Int
    private var waiter: Future<Void>?
    private var timedOut = false
    private var timer: Handle?
    private let loop: EventLoop?

    init(_ futures: [Future<T>], timeout: Duration?) {
        remaining = futures.count
        loop = futures.first?.loop
        guard let loop else { return }
        loop.preconditionInLoop()
        for future in futures {
            future._whenDone { [self] future in
                done.append(future)
                waiter?.complete(.success(()))
            }
        }
        if let timeout, remaining > done.count {
            timer = loop.callLater(after: timeout) { [self] in
                timedOut = true
                waiter?.complete(.success(()))
            }
        }
    }

    func next() async throws -> Future<T>? {
        while true {
            if let future = done.popFirst() {
                remaining -= 1
                if remaining == 0 { timer?.cancel() }
                return future
            }
            if remaining == 0 { return nil }
            if timedOut { throw TimeoutError() }
            guard let loop else { return nil }
            let waiter = Future<Void>(loop: loop)
            self.waiter = waiter
            defer { self.waiter = nil }
            try await waiter.value
        }
    }
}
