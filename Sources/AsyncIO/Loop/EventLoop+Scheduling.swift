//===----------------------------------------------------------------------===//
// swift-asyncio — Scheduling callbacks: callSoon, timers, and hand-offs from other threads.
//===----------------------------------------------------------------------===//

extension EventLoop {
    /// Schedules `callback` to run on the next pass of the loop, after the callbacks already
    /// scheduled (FIFO).
    ///
    /// An error thrown by `callback` goes to the exception handler.
    /// - Returns: A handle that can cancel the call.
    /// - Important: Loop-bound; the loop must not be closed (that is a programmer error and
    ///   traps). From another thread use ``callSoonThreadSafe(_:)``.
    @discardableResult
    public func callSoon(_ callback: @escaping () throws -> Void) -> Handle {
        assertInLoop()
        precondition(!isClosed, "EventLoop '\(name)': callSoon on a closed loop")
        let handle = Handle(loop: nil, callback)
        ready.append(.handle(handle))
        return handle
    }

    /// Schedules `callback` to run once `delay` has passed (asyncio's `call_later`).
    ///
    /// Timers with the same deadline run in the order they were scheduled. A delay of zero or
    /// less runs the callback on the next pass.
    /// - Important: Loop-bound; traps on a closed loop.
    @discardableResult
    public func callLater(after delay: Duration, _ callback: @escaping () throws -> Void) -> Handle {
        scheduleTimer(deadline: monotonicNanoseconds().saturatingAdd(delay.clampedNanoseconds), callback)
    }

    /// Schedules `callback` to run at loop time `when` (see ``time()``), asyncio's `call_at`.
    /// - Important: Loop-bound; traps on a closed loop.
    @discardableResult
    public func callAt(_ when: Double, _ callback: @escaping () throws -> Void) -> Handle {
        let deadline: UInt64 = when <= 0 ? 1 : (when >= 1.8e10 ? .max : UInt64(when * 1e9))
        return scheduleTimer(deadline: max(deadline, 1), callback)
    }

    private func scheduleTimer(deadline: UInt64, _ callback: @escaping () throws -> Void) -> Handle {
        assertInLoop()
        precondition(!isClosed, "EventLoop '\(name)': timer scheduled on a closed loop")
        let handle = Handle(loop: self, deadline: max(deadline, 1), callback)
        handle.inTimerQueue = true
        timerSequence &+= 1
        timers.insert(TimerEntry(deadline: handle.deadline, sequence: timerSequence, handle: handle))
        return handle
    }

    /// Schedules `callback` from any thread and wakes the loop if it is waiting in epoll.
    ///
    /// - Returns: A handle that any thread may cancel: once its `cancel()` returns, the
    ///   callback has run or started already, or never runs.
    /// - Throws: ``EventLoopError/Code-swift.struct/closed`` once the loop was closed.
    /// - Note: Thread-safe.
    @discardableResult
    public func callSoonThreadSafe(_ callback: @escaping @Sendable () throws -> Void) throws(EventLoopError) -> Handle {
        try callSoonThreadSafe(callback, onDrop: nil)
    }

    /// ``callSoonThreadSafe(_:)`` with `onDrop`, called if the loop closes before the callback
    /// could run (so whoever waits for it hears of it).
    @discardableResult
    func callSoonThreadSafe(
        _ callback: @escaping @Sendable () throws -> Void, onDrop: (@Sendable () -> Void)?
    ) throws(EventLoopError) -> Handle {
        let handle = Handle(threadSafe: callback)
        handle.onDrop = onDrop
        if inLoopThread {
            ready.append(.handle(handle))
        } else if !inbox.enqueue(.handle(handle)) {
            throw .closedError
        }
        return handle
    }

    /// Runs `body` on the loop: now if called on the loop's thread, else on its next pass.
    /// Returns false (and drops `body`) if the loop is closed. Thread-safe.
    @usableFromInline @discardableResult
    func execute(_ body: @escaping @Sendable () -> Void) -> Bool {
        if inLoopThread {
            body()
            return true
        }
        return inbox.enqueue(.closure(body))
    }

    /// Hands `body` to the loop's next pass from any thread (never runs it inline). Returns
    /// false (and drops `body`) if the loop is closed. Thread-safe.
    @discardableResult
    func enqueueRemote(_ body: @escaping @Sendable () -> Void) -> Bool {
        inbox.enqueue(.closure(body))
    }

    /// Appends an internal closure to the ready queue (loop-bound).
    @usableFromInline
    func schedule(_ body: @escaping () -> Void) {
        ready.append(.closure(body))
    }

    /// Moves what other threads handed over into the ready queue (loop thread only).
    func drainRemote() {
        inbox.drain(into: &remoteSpare)
        for item in remoteSpare {
            ready.append(ReadyItem(item))
        }
        remoteSpare.removeAll(keepingCapacity: true)
    }
}
