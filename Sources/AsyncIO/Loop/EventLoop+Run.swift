//===----------------------------------------------------------------------===//
// swift-asyncio — Running the loop: runForever, stop, and one pass (the only place where
// callbacks, timers and Swift jobs are run).
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
#if canImport(Glibc)
import Glibc
#endif

extension EventLoop {
    /// Runs the loop until ``stop()`` is called (asyncio's `run_forever`).
    ///
    /// - Throws: ``EventLoopError`` if the loop is closed, already running, bound to another
    ///   thread, or another loop runs on this thread.
    public func runForever() throws(EventLoopError) {
        try checkCanRun()
        try enterRunning()
        defer { leaveRunning() }
        while true {
            runOnce()
            if stopping { break }
        }
    }

    /// Stops the loop after the current pass (asyncio's `stop`). If called before
    /// ``runForever()``, the next run polls once, runs what is ready, and returns.
    /// - Important: Loop-bound; from another thread use `callSoonThreadSafe { loop.stop() }`.
    public func stop() {
        assertInLoop()
        stopping = true
    }

    /// Throws unless ``runForever()`` could start the loop on this thread now.
    func checkCanRun() throws(EventLoopError) {
        if isClosed { throw .closedError }
        let bound = inbox.boundThread.load(ordering: .acquiring)
        if bound != 0 && bound != UInt(pthread_self()) {
            throw EventLoopError(.wrongThread, "the event loop '\(name)' runs on its group's thread only")
        }
        if inbox.runningThread.load(ordering: .relaxed) != 0 {
            throw EventLoopError(.alreadyRunning, "the event loop '\(name)' is already running")
        }
        if casyncio_current_loop() != nil {
            throw EventLoopError(.anotherLoopRunning, "another event loop is already running on this thread")
        }
    }

    /// Claims the loop for this thread: a compare-exchange, so two threads calling
    /// runForever at once cannot both pass.
    private func enterRunning() throws(EventLoopError) {
        let (claimed, _) = inbox.runningThread.compareExchange(
            expected: 0, desired: UInt(pthread_self()), ordering: .sequentiallyConsistent)
        guard claimed else {
            throw EventLoopError(.alreadyRunning, "the event loop '\(name)' is already running")
        }
        casyncio_set_current_loop(Unmanaged.passUnretained(self).toOpaque())
    }

    private func leaveRunning() {
        stopping = false
        casyncio_set_current_loop(nil)
        inbox.runningThread.store(0, ordering: .sequentiallyConsistent)
    }

    /// One pass: poll, collect due timers, run what was ready at the start of the pass.
    private func runOnce() {
        if cancelledTimers.count > 100 && cancelledTimers.count * 2 > timers.count {
            compactTimers()
        }

        var timeout: Int32
        if !ready.isEmpty || stopping {
            timeout = 0
        } else if let deadline = timers.earliestDeadline {
            let now = monotonicNanoseconds()
            if deadline <= now {
                timeout = 0
            } else {
                // Round up: waking early would only spin; epoll_wait counts milliseconds.
                // (No "+ 999_999" first: a deadline at UInt64.max, "never", would overflow.)
                let remaining = deadline - now
                let millis = remaining / 1_000_000 + (remaining % 1_000_000 == 0 ? 0 : 1)
                timeout = Int32(min(millis, 3_600_000))
            }
        } else {
            timeout = -1
        }

        // Polling epoll with a zero timeout on every pass dominates a busy loop of task
        // switches; with ready work and no fds to watch there is nothing to poll for
        // (remote work is announced through `remotePending`).
        let mustPoll = timeout != 0 || ready.isEmpty
            || (registrationCount > 0 && ticksWithoutPoll >= Self.maxTicksWithoutPoll)
        if mustPoll {
            ticksWithoutPoll = 0
            if timeout != 0 && executorJobsInFlight > 0
                && executorRoundTripNanos <= Self.executorSpinThresholdNanos && pollInbox()
            {
                timeout = 0
            }
            if timeout != 0 {
                inbox.sleeping.store(true, ordering: .sequentiallyConsistent)
                if inbox.pending.load(ordering: .sequentiallyConsistent) {
                    timeout = 0
                }
            }
            _ = selector.wait(timeoutMillis: timeout) { token, events in
                self.dispatch(token: token, events: events)
            }
            inbox.sleeping.store(false, ordering: .relaxed)
        } else {
            ticksWithoutPoll += 1
        }

        if inbox.pending.load(ordering: .acquiring) {
            drainRemote()
        }

        if !timers.isEmpty {
            let now = monotonicNanoseconds()
            while let deadline = timers.earliestDeadline, deadline <= now, let due = timers.popMin() {
                let handle = due.handle
                handle.inTimerQueue = false
                if handle.cancelled {
                    cancelledTimers.count -= 1
                    continue
                }
                ready.append(.handle(handle))
            }
        }

        var count = ready.count
        while count > 0 {
            count -= 1
            let item = ready.removeFirst()
            if debug {
                runTimed(item)
            } else {
                run(item)
            }
        }
    }

    /// Loop passes with executor jobs in flight poll the inbox for up to this long before they
    /// sleep in epoll_wait: a short job's result then arrives without the eventfd write and
    /// the wake-up (together tens of microseconds on a virtual machine).
    static let executorSpinNanos: UInt64 = 30_000
    /// ... but only while executor round trips take no longer than this on average; the loop
    /// does not burn a CPU waiting for long jobs.
    static let executorSpinThresholdNanos: UInt64 = 50_000

    /// Polls `inbox.pending` for up to ``executorSpinNanos``; whether something arrived.
    private func pollInbox() -> Bool {
        spinWait(nanoseconds: Self.executorSpinNanos) { inbox.pending.load(ordering: .acquiring) }
    }

    @inline(__always)
    private func dispatch(token: UInt64, events: UInt32) {
        if token == Selector.wakeUpToken { return }
        let fd = Int(UInt32(truncatingIfNeeded: token))
        let generation = UInt32(truncatingIfNeeded: token >> 32)
        // A stale event for an fd that was unregistered (and maybe reused) in this pass.
        guard fd < registrations.count, registrations[fd].generation == generation else { return }
        // As Python's selectors: anything but EPOLLOUT (HUP, ERR) wakes the reader, anything
        // but EPOLLIN wakes the writer, so both see errors and hang-ups. (The fields are read
        // one by one: copying the whole registration would retain both handles per event.)
        if events & ~IOInterest.write.rawValue != 0, let reader = registrations[fd].reader {
            ready.append(.handle(reader))
        }
        if events & ~IOInterest.read.rawValue != 0, let writer = registrations[fd].writer {
            ready.append(.handle(writer))
        }
    }

    @inline(__always)
    private func run(_ item: ReadyItem) {
        switch item {
        case .taskJob(let job):
            runningTask = unsafeBitCast(job, to: UnsafeRawPointer.self)
            job.runSynchronously(on: taskExecutor.asUnownedTaskExecutor())
            runningTask = nil
        case .job(let job):
            runningTask = unsafeBitCast(job, to: UnsafeRawPointer.self)
            job.runSynchronously(isolatedTo: asUnownedSerialExecutor(), taskExecutor: asUnownedTaskExecutor())
            runningTask = nil
        case .closure(let body):
            body()
        case .handle(let handle):
            guard handle.start(), let callback = handle.callback else { return }
            if !handle.repeats {
                handle.callback = nil
            }
            do {
                try callback()
            } catch {
                callExceptionHandler(
                    ExceptionContext(message: "Exception in callback", error: error, source: "\(handle)"))
            }
        }
    }

    private func runTimed(_ item: ReadyItem) {
        let start = monotonicNanoseconds()
        run(item)
        let elapsed = monotonicNanoseconds() &- start
        let threshold = slowCallbackDuration.clampedNanoseconds
        if elapsed >= threshold {
            let what: String
            switch item {
            case .job, .taskJob: what = "a task step"
            case .closure: what = "an internal callback"
            case .handle(let handle): what = "callback \(ObjectIdentifier(handle))"
            }
            logger.warning("Executing \(what) took \(Double(elapsed) / 1e9) seconds")
        }
    }

    private func compactTimers() {
        timers.removeAll { $0.handle.cancelled }
        cancelledTimers.count = 0
    }

    /// How many timers are scheduled, cancelled ones included (for tests and diagnostics).
    var scheduledTimerCount: Int { timers.count }

    /// How many timers are scheduled and not cancelled.
    var liveTimerCount: Int { timers.count - cancelledTimers.count }

    /// How many callbacks and task steps wait in the ready queue now (for metrics).
    /// - Important: Loop-bound.
    package var readyQueueDepth: Int {
        assertInLoop()
        return ready.count
    }
}
