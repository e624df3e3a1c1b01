//===----------------------------------------------------------------------===//
// swift-asyncio — LoopTask: asyncio.Task, a Swift Task that runs on a loop, seen as a Future.
//===----------------------------------------------------------------------===//

/// What every ``LoopTask`` offers, whatever its value type.
public protocol AnyLoopTask: AnyFuture {
    /// The task's name (`Task-N` unless one was given).
    var name: String { get }
    /// The message of the latest ``LoopTask/cancel(message:)`` request; see there.
    var cancelMessage: String? { get }
    /// Requests cancellation with a message; see ``LoopTask/cancel(message:)``.
    @discardableResult func cancel(message: String?) -> Bool
    /// How many cancellation requests the task received; see ``LoopTask/cancelling()``.
    func cancelling() -> Int
    /// Internal: the loop closed while the task was pending; its steps can never run, so the
    /// task ends as cancelled (its awaiters and done callbacks hear of it).
    func _loopClosed()
    /// Internal: the wait (`id` of `wait`) of the task's own Swift task that
    /// ``cancel(message:)`` ends directly (nil: none), instead of a cancellation handler per
    /// wait.
    func _setCoveredWait(_ wait: (any _LoopTaskWait)?, id: UInt64)
}

/// Internal: a wait that a ``LoopTask``'s cancellation ends directly (see ``Future/value``).
public protocol _LoopTaskWait: AnyObject {
    /// Internal: the task in wait `id` was cancelled (on the loop) with `message`: end the
    /// wait as a cancellation handler would. A future awaited is cancelled with the message,
    /// as asyncio's `Task.cancel(msg)` cancels the future its task waits for.
    func _waitingTaskCancelled(_ id: UInt64, message: String?)
}

extension EventLoop {
    /// The ``LoopTask`` whose own Swift task is the caller, as far as the loop can tell
    /// cheaply: the task whose step the loop runs is that task's. A `Task.immediate` started
    /// inside the step also passes; a wait confirms with ``isRunningTask(_:)`` on its
    /// continuation. Nil off the loop, between steps, in an eager task's first step, in child
    /// tasks, in other tasks.
    @usableFromInline
    func coveringTask() -> (any AnyLoopTask)? {
        guard inLoopThread, eagerFirstStep == nil, let running = runningTask,
            let found = liveTasks.task(runningAt: running), found.own
        else { return nil }
        return found.task
    }

    /// The ``LoopTask`` a step of which (or of a scope's body within it) runs now; see
    /// ``LoopTask/current``. Loop thread only.
    func runningLoopTask() -> (any AnyLoopTask)? {
        if let eagerFirstStep { return eagerFirstStep }
        guard let runningTask else { return nil }
        return liveTasks.task(runningAt: runningTask)?.task
    }

    /// Whether `continuation` resumes the task whose step the loop runs. A continuation is
    /// its task in Swift's runtime, as a job of a task is; should either stop being so, no
    /// wait is covered and each takes its cancellation handler (slower, still right).
    @inlinable
    func isRunningTask<T, E: Error>(_ continuation: UnsafeContinuation<T, E>) -> Bool {
        taskAddress(of: continuation) == runningTask
    }
}

/// The address of the task `continuation` resumes: in Swift's runtime a continuation is its
/// task. An identity to compare, never used to reach the task.
@inlinable
func taskAddress<T, E: Error>(of continuation: UnsafeContinuation<T, E>) -> UnsafeRawPointer {
    unsafeBitCast(continuation, to: UnsafeRawPointer.self)
}

/// asyncio's `Task`: an async body running on an ``EventLoop`` (every step of it, and every
/// resume after an `await`, on the loop's thread), observable as a ``Future``.
///
/// The loop keeps a running task alive until it finishes, so a fire-and-forget task is never
/// lost (asyncio's classic trap). ``cancel()`` cancels the underlying Swift task: the body sees
/// `CancellationError` at its next suspension point on a loop primitive (`sleep`, a future's
/// `value`, …) or when it checks `Task.isCancelled`; the task is *cancelled* once its body
/// ends with `CancellationError`, and its awaiters then get `CancellationError` too.
///
/// The body's own waits on the loop's primitives (a future's ``Future/value``, ``Lock``,
/// ``Event``, ``Condition``, ``Semaphore``, a queue's `get`, `put` and `join`) install no
/// Swift cancellation handler each: ``cancel(message:)`` ends them directly, which makes
/// each wait about 1,000 instructions cheaper. Child tasks of the body (`async let`, task
/// groups) and other Swift tasks keep their handlers. From another thread, cancel a loop task
/// on its loop: `loop.callSoonThreadSafe { task.cancel() }`.
///
/// Swift's `CancellationError` carries no message. ``cancel(message:)`` keeps the message on
/// the task instead: whoever awaits the task and catches `CancellationError` reads it from
/// ``cancelMessage`` (and the body itself from `LoopTask.current?.cancelMessage`).
///
/// ```swift
/// let task = loop.createTask(name: "fetch") {
///     try await sleep(for: .seconds(1))
///     return 42
/// }
/// let value = try await task.value
/// ```
///
/// - Important: Loop-bound, like ``Future``.
public final class LoopTask<Value: Sendable>: Future<Value>, AnyLoopTask, @unchecked Sendable {
    @usableFromInline let number: Int
    @usableFromInline let customName: String?
    /// The Swift task running the body.
    /// (Typed as throwing though it never throws: a non-throwing operation is wrapped by
    /// `Task`'s initializer in a reabstraction thunk, one more allocation per task.)
    @usableFromInline @exclusivity(unchecked) var swiftTask: Task<Void, any Error>? {
        // A `Task` is its runtime task, like the job the loop runs for each of its steps.
        didSet { swiftTaskAddress = swiftTask.map { unsafeBitCast($0, to: UnsafeRawPointer.self) } }
    }
    @usableFromInline @exclusivity(unchecked) var swiftTaskAddress: UnsafeRawPointer?
    /// What the body's own Swift task waits for, if a covered wait (see ``Future/value``).
    @usableFromInline @exclusivity(unchecked) var coveredWait: (any _LoopTaskWait)?
    @usableFromInline @exclusivity(unchecked) var coveredWaitID: UInt64 = 0
    /// How many times cancellation was requested while the task was not done.
    @usableFromInline @exclusivity(unchecked) var cancelRequests = 0
    @usableFromInline @exclusivity(unchecked) var latestCancelMessage: String?
    /// The task's slot in the loop's live-task table.
    @usableFromInline @exclusivity(unchecked) var liveSlot = -1

    @inlinable
    init(loop: EventLoop, number: Int, name: String?) {
        self.number = number
        self.customName = name
        super.init(loop: loop)
    }

    /// The task's name (`Task-N` unless one was given to ``EventLoop/createTask(name:_:)``).
    public var name: String { customName ?? "Task-\(number)" }

    /// Requests cancellation of the task's body; see the type's documentation. The same as
    /// ``cancel(message:)`` with no message.
    /// - Returns: false if the task is already done.
    /// - Important: Loop-bound.
    @discardableResult
    public override func cancel() -> Bool {
        cancel(message: nil)
    }

    /// A task cancelled while it waits for this one hands its message on (asyncio).
    override func cancel(forwarding message: String?) -> Bool {
        cancel(message: message)
    }

    /// Requests cancellation of the task's body and records `message` (asyncio's
    /// `cancel(msg)`).
    ///
    /// Awaiters of the task get a plain `CancellationError` (it has no room for a message);
    /// they read the message from ``cancelMessage`` once they caught it:
    ///
    /// ```swift
    /// worker.cancel(message: "shutting down")
    /// do {
    ///     try await worker.value
    /// } catch is CancellationError {
    ///     print("cancelled:", worker.cancelMessage ?? "no reason")   // "shutting down"
    /// }
    /// ```
    /// Each request counts (see ``cancelling()``) and the latest one's message wins, as in
    /// asyncio; a `nil` message clears an earlier one. A task cancelled while its body awaits
    /// another task's ``Future/value`` cancels that task with the same message (asyncio
    /// cancels the future a task waits for, with the message); an awaited plain future is
    /// cancelled.
    /// - Returns: false (and records nothing) if the task is already done.
    /// - Important: Loop-bound.
    @discardableResult
    public func cancel(message: String?) -> Bool {
        // Checked in release builds too: the task's covered wait belongs to the loop.
        loop.preconditionInLoop()
        if isDone { return false }
        cancelRequests += 1
        latestCancelMessage = message
        // The covered wait ends first, as its handler (the innermost) would have run first.
        if let wait = coveredWait {
            coveredWait = nil
            wait._waitingTaskCancelled(coveredWaitID, message: message)
        }
        swiftTask?.cancel()
        return true
    }

    /// The message given to the latest ``cancel(message:)`` that reached the task while it
    /// was not done; `nil` if there was none, or if the task ended with `CancellationError`
    /// without being asked to (e.g. its body awaited a cancelled future).
    /// - Important: Loop-bound.
    public var cancelMessage: String? {
        loop.assertInLoop()
        return latestCancelMessage
    }

    /// The number of cancellation requests the task received while it was not done
    /// (asyncio's `cancelling()`); it stays readable after the task ended.
    ///
    /// asyncio's `uncancel()` has no counterpart: a Swift task's cancellation cannot be taken
    /// back. Scopes that need it (``timeout(after:_:)``, ``withLoopTaskGroup(_:)``) cancel a
    /// child task of their own instead, so they never touch this count.
    /// - Important: Loop-bound.
    public func cancelling() -> Int {
        loop.assertInLoop()
        return cancelRequests
    }

    /// Whether ``cancel()`` was called and the task has not finished yet.
    public var isCancelling: Bool { cancelRequests > 0 && !isDone }

    /// The ``LoopTask`` whose body is running, if the caller runs inside one (asyncio's
    /// `current_task()`): in every step of the body, and in the body of a ``timeout(after:_:)``
    /// or ``withLoopTaskGroup(_:)`` scope inside it. Nil in a callback, off the loop's thread,
    /// and in Swift tasks of their own: a child task of the body (`async let`, a task group's
    /// child) or a `Task { }` it starts, as in asyncio a task's `gather`ed coroutines run as
    /// tasks of their own. (A `Task.immediate` the body starts runs its first part inside the
    /// body's step, where this is the body's task; after its first suspension it is nil.)
    public static var current: (any AnyLoopTask)? {
        EventLoop.current?.runningLoopTask()
    }

    /// Runs the body (on the loop) and completes the future with its outcome.
    @inlinable
    nonisolated(nonsending) func run(_ body: nonisolated(nonsending) () async throws -> Value) async {
        // asyncio: a task cancelled before its first step never runs its body. Only
        // cancel(message:) cancels the Swift task (nobody else holds it, and an unstructured
        // task inherits no cancellation), so its count tells; `Task.isCancelled` would cost
        // ~350 instructions per task (`withUnsafeCurrentTask`).
        if cancelRequests > 0 {
            finish(.cancelled)
            return
        }
        do {
            let value = try await body()
            finish(.success(value))
        } catch is CancellationError {
            finish(.cancelled)
        } catch {
            finish(.failure(error))
        }
    }

    /// Keeps the Swift task that runs the body and tells the loop its address, by which the
    /// loop knows the task's steps (unless the body already ended, in an eager first step).
    @inlinable
    func attach(_ swiftTask: Task<Void, any Error>) {
        self.swiftTask = swiftTask
        if !isDone, let swiftTaskAddress {
            loop.liveTasks.bind(swiftTaskAddress, toSlot: liveSlot, own: true)
        }
    }

    @inlinable
    func finish(_ state: State) {
        if let swiftTaskAddress {
            loop.liveTasks.unbind(swiftTaskAddress)
        }
        loop.liveTasks.remove(liveSlot)
        complete(state)
    }

    public func _loopClosed() {
        complete(.cancelled)
    }

    public func _setCoveredWait(_ wait: (any _LoopTaskWait)?, id: UInt64) {
        coveredWait = wait
        coveredWaitID = id
    }

    /// Whether the body's own task is in a covered wait (tests).
    var hasCoveredWait: Bool { coveredWait != nil }
}

extension EventLoop {
    /// Starts `body` as a task on this loop (asyncio's `create_task`).
    ///
    /// The body's first step runs on a later pass of the loop, never inside this call.
    /// - Parameters:
    ///   - name: A name for logs and ``LoopTask/name``; `Task-N` by default.
    ///   - body: The async work. Every step of it runs on the loop's thread. It is
    ///     `nonisolated(nonsending)`: it starts where the task does, without the executor
    ///     hop a plain `async` closure makes on entry and on return (~270 instructions per
    ///     task); any `async` closure or function converts to it.
    /// - Returns: The task; await its ``Future/value`` for the result.
    /// - Important: Loop-bound; traps on a closed loop. From another thread use
    ///   `loop.callSoonThreadSafe { loop.createTask { … } }`.
    @inlinable @discardableResult
    public func createTask<T: Sendable>(
        name: String? = nil,
        _ body: nonisolated(nonsending) sending @escaping () async throws -> T
    ) -> LoopTask<T> {
        assertInLoop()
        let task: LoopTask<T> = newLoopTask(name: name)
        // Its first step runs in a later pass, when the loop can tell it by its address.
        task.attach(Task(executorPreference: taskExecutor) { () async throws in
            await task.run(body)
        })
        return task
    }

    /// A new task, numbered and kept alive by the loop until it finishes (its Swift task is
    /// attached by the caller). Traps on a closed loop.
    @inlinable
    func newLoopTask<T: Sendable>(name: String?) -> LoopTask<T> {
        precondition(!isClosed, "EventLoop '\(self.name)': createTask on a closed loop")
        taskCounter += 1
        let task = LoopTask<T>(loop: self, number: taskCounter, name: name)
        task.liveSlot = liveTasks.insert(task)
        return task
    }

    /// The tasks created on this loop that have not finished (asyncio's `all_tasks`).
    /// - Important: Loop-bound.
    public var allTasks: [any AnyLoopTask] {
        assertInLoop()
        return liveTasks.all
    }

    /// Runs the loop until `future` is done and returns its result (asyncio's
    /// `run_until_complete`).
    ///
    /// - Throws: the future's error; `CancellationError` if it was cancelled;
    ///   ``EventLoopError`` if the loop cannot run or was stopped before the future completed.
    public func runUntilComplete<T>(_ future: Future<T>) throws -> T {
        precondition(future.loop === self, "runUntilComplete: the future belongs to another loop")
        // Refuse before touching the future: a stop callback left on it would later stop
        // whoever runs the loop then.
        try checkCanRun()
        // As asyncio: even for a done future the loop runs one pass. The stop is disarmed when
        // this call returns, so a loop stopped for another reason first is not stopped again
        // later, in another run, when the future completes.
        let stopper = StopOnDone()
        future._whenDone { [unowned self] _ in
            if stopper.armed { self.stop() }
        }
        defer { stopper.armed = false }
        try runForever()
        guard future.isDone else {
            throw EventLoopError(.stoppedBeforeCompletion, "the event loop stopped before the future completed")
        }
        return try future.result()
    }

    /// Runs `body` as a task and the loop until the task is done; returns its result.
    ///
    /// - Throws: as ``runUntilComplete(_:)-(Future<T>)``; if the loop cannot run, before the
    ///   task is created (the body never starts).
    public func runUntilComplete<T: Sendable>(_ body: sending @escaping () async throws -> T) throws -> T {
        try checkCanRun()
        let task = createTask(body)
        return try runUntilComplete(task)
    }

    /// Cancels every live task and runs the loop until they have all finished, at most
    /// `timeout` (asyncio.run's clean-up). Errors of the cancelled tasks other than
    /// cancellation go to the exception handler.
    /// - Important: Loop-bound; the loop must not be running.
    public func cancelAllTasks(timeout: Duration = .seconds(5)) throws(EventLoopError) {
        let tasks = liveTasks.all
        if tasks.isEmpty { return }
        for task in tasks { task.cancel() }
        var remaining = tasks.count
        let timer = callLater(after: timeout) { [unowned self] in self.stop() }
        // Disarmed on return: a task that outlives the timeout must not stop a later run.
        let stopper = StopOnDone()
        for task in tasks {
            task._whenDoneErased { [unowned self] _ in
                remaining -= 1
                if remaining == 0 && stopper.armed { self.stop() }
            }
        }
        defer { stopper.armed = false }
        try runForever()
        timer.cancel()
        for task in tasks where task.isDone && !task.isCancelled {
            if let error = task.error {
                callExceptionHandler(ExceptionContext(
                    message: "unhandled error during shutdown", error: error, source: task.name))
            }
        }
    }

    /// asyncio.run: creates a loop, runs `body` as its main task until it finishes, cancels
    /// the tasks still running, shuts the default executor down and closes the loop.
    ///
    /// ```swift
    /// try EventLoop.run { loop in
    ///     let task = loop.createTask { try await sleep(for: .seconds(1)); return "done" }
    ///     print(try await task.value)
    /// }
    /// ```
    /// - Throws: the body's error, or ``EventLoopError``/``IOError`` if the loop cannot run.
    public static func run<T: Sendable>(
        name: String = "main",
        debug: Bool? = nil,
        _ body: sending @escaping (EventLoop) async throws -> T
    ) throws -> T {
        let loop = try EventLoop(name: name, debug: debug)
        defer {
            try? loop.cancelAllTasks()
            loop.shutdownDefaultExecutorBlocking()
            try? loop.close()
        }
        return try loop.runUntilComplete { try await body(loop) }
    }
}

/// The stop request `runUntilComplete` leaves on its future, disarmed when it returns.
private final class StopOnDone {
    var armed = true
}
