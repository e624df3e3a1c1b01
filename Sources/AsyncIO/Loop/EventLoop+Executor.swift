//===----------------------------------------------------------------------===//
// swift-asyncio — The loop as a SerialExecutor and TaskExecutor for Swift concurrency.
//===----------------------------------------------------------------------===//

import Logging
#if canImport(Glibc)
import Glibc
#endif

extension EventLoop: SerialExecutor, TaskExecutor {
    /// Takes a Swift job (a step of a task whose executor is this loop) and runs it on the
    /// loop: in this pass's successors if enqueued on the loop's thread, otherwise after the
    /// loop wakes. Thread-safe.
    ///
    /// A job enqueued on a closed loop cannot run; it is dropped and logged.
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if inLoopThread {
            ready.append(.job(job))
        } else if !inbox.enqueue(.job(job)) {
            LoopTaskExecutor.refused(job, logger: logger)
        }
    }

    /// The loop as the serial executor of actors that name it as theirs
    /// (`nonisolated var unownedExecutor`), so their code runs on the loop's thread.
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// The loop as a task executor. Prefer ``taskExecutor`` for
    /// `Task(executorPreference:)`: its jobs run as task steps, without the isolation checks
    /// that jobs enqueued on the loop itself get.
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    /// Traps unless called on the loop's thread (used by `assumeIsolated` and actor checks).
    public func checkIsolated() {
        precondition(inLoopThread, "EventLoop '\(name)': not on the loop's thread")
    }

    /// Whether `other` is this loop: two loops are never the same context.
    public func isSameExclusiveExecutionContext(other: EventLoop) -> Bool {
        self === other
    }
}

/// The loop's fast task-executor face, ``EventLoop/taskExecutor``: jobs of tasks that prefer
/// it run on the loop's thread as plain task-executor jobs.
///
/// Why a separate object: jobs that reach the loop through its own `enqueue` may belong to an
/// actor whose executor is the loop, so they must run isolated to the loop. A task step run
/// that way leaves the isolated context at every call into a nonisolated async function and
/// is queued back for another pass (measured: 10 passes per task create+await instead of 2).
/// Jobs that come through this object are known to be task steps and run without isolation.
///
/// Lifetime: every task created with this executor as its preference retains it, so it may
/// outlive its loop. It holds the loop's `LoopInbox` strongly and the loop itself not at
/// all: a job for a loop that was closed (or closed and freed) is refused — logged at error
/// level and never run, so its task stays suspended — instead of touching freed memory.
public final class LoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked Sendable: `loop` is written once, by the loop's initialiser, before the
    // executor is published; it is read only on the thread running that loop (see enqueue).

    /// The loop, dereferenced only on the thread running it: the running loop is alive (its
    /// `runForever` holds it), and while it runs no other thread can free it. Unmanaged and
    /// borrowed for each use: reading an `unowned(unsafe)` optional retained and released the
    /// loop on every task step (about 40 instructions).
    private var loop: Unmanaged<EventLoop>?
    private let inbox: LoopInbox
    private let logger: Logger

    init(inbox: LoopInbox, logger: Logger) {
        self.inbox = inbox
        self.logger = logger
    }

    /// Called once by the loop's initialiser.
    func attach(_ loop: EventLoop) {
        self.loop = .passUnretained(loop)
    }

    /// Whether the loop this executor runs jobs on was closed (or freed): jobs enqueued from
    /// now on are refused. Thread-safe. (There is no way back to the loop from here: a weak
    /// reference to it would give the loop a side table, and every retain and release of the
    /// loop would take the runtime's slow path.)
    public var isLoopClosed: Bool { inbox.closed.load(ordering: .acquiring) }

    /// Queues a task step on the loop. Thread-safe.
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if inbox.inLoopThread {
            loop.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.ready.append(.taskJob(job)) }
        } else if !inbox.enqueue(.taskJob(job)) {
            Self.refused(job, logger: logger)
        }
    }

    /// Reports a job that reached a closed loop. It is not run: running it on another thread
    /// would break the promise that every step of a loop's task runs on the loop's thread.
    static func refused(_ job: UnownedJob, logger: Logger) {
        // The logger's metadata names the loop.
        logger.error("a task step was enqueued on a closed event loop and will never run")
    }
}
