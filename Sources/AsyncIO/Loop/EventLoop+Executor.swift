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
        let unownedJob = UnownedJob(job)
        if inLoopThread {
            ready.append(.job(unownedJob))
        } else if !enqueueRemote(.job(unownedJob)) {
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
