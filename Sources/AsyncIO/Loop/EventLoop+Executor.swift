//===----------------------------------------------------------------------===//
// swift-asyncio — The loop as a SerialExecutor and TaskExecutor for Swift concurrency.
//===----------------------------------------------------------------------===//

extension EventLoop: SerialExecutor, TaskExecutor {
    /// Takes a Swift job (a step of a task whose executor is this loop) and runs it on the
    /// loop: in this pass's successors if enqueued on the loop's thread, otherwise after the
    /// loop wakes. Thread-safe.
    ///
    /// A job enqueued on a closed loop cannot run; it is dropped and logged.
    public func enqueue(_ job: consuming ExecutorJob) {
        enqueueJob(.job(UnownedJob(job)))
    }

    /// Queues a job item from any thread.
    @inline(__always)
    func enqueueJob(_ item: ReadyItem) {
        if inLoopThread {
            ready.append(item)
        } else if !enqueueRemote(item) {
            logger.error(
                "a task step was enqueued on a closed event loop and will never run",
                metadata: ["loop": "\(name)"])
        }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    /// Traps unless called on the loop's thread (used by `assumeIsolated` and actor checks).
    public func checkIsolated() {
        precondition(inLoopThread, "EventLoop '\(name)': not on the loop's thread")
    }

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
public final class LoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    /// Set once by the loop's initialiser; the loop owns this object and outlives it.
    unowned(unsafe) var loop: EventLoop?

    /// The loop this executor runs jobs on.
    public var eventLoop: EventLoop { loop.unsafelyUnwrapped }

    init() {}

    /// Queues a task step on the loop. Thread-safe.
    public func enqueue(_ job: consuming ExecutorJob) {
        loop.unsafelyUnwrapped.enqueueJob(.taskJob(UnownedJob(job)))
    }
}
