//===----------------------------------------------------------------------===//
// swift-asyncio — ThreadPoolExecutor and runInExecutor.
//===----------------------------------------------------------------------===//

import Synchronization
import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

@Suite(.timeLimit(.minutes(10)))
struct ThreadPoolExecutorTests {
    // A blocking job in runInExecutor does not stop a loop timer from firing while it runs.
    @Test func blockingJobDoesNotStopLoopTimers() throws {
        try withLoop { loop in
            let events = Box<[String]>([])
            let release = Atomic<Bool>(false)
            let jobRunning = Atomic<Bool>(false)
            let job = loop.runInExecutor { () -> String in
                jobRunning.store(true, ordering: .sequentiallyConsistent)
                // Block until the loop says its timer fired (bounded: 20 s).
                var waited = 0
                while !release.load(ordering: .sequentiallyConsistent) && waited < 20_000 {
                    blockThread(seconds: 0.001)
                    waited += 1
                }
                return "job done"
            }
            // The timer is set once the job runs (a pool thread may start late on a loaded
            // machine: a timer set at once could fire before the job began, proving nothing),
            // and fires while the job still blocks its thread.
            func setTimerOnceTheJobRuns() {
                guard jobRunning.load(ordering: .sequentiallyConsistent) else {
                    loop.callLater(after: .milliseconds(1)) { setTimerOnceTheJobRuns() }
                    return
                }
                loop.callLater(after: .milliseconds(10)) {
                    events.value.append("timer, job running: \(jobRunning.load(ordering: .sequentiallyConsistent))")
                    release.store(true, ordering: .sequentiallyConsistent)
                }
            }
            loop.callSoon { setTimerOnceTheJobRuns() }
            job.addDoneCallback { f in events.value.append((try? f.result()) ?? "failed") }
            _ = try loop.runUntilComplete(job)
            loop.callSoon { loop.stop() }
            try loop.runForever()
            #expect(events.value.first == "timer, job running: true")
            #expect(events.value.last == "job done")
            #expect(events.value.count == 2)
        }
    }

    // Errors thrown by the job arrive through the future.
    @Test func jobErrorReachesTheFuture() throws {
        try withLoop { loop in
            let future = loop.runInExecutor { () throws -> Int in throw TestError(id: 12) }
            #expect(throws: TestError(id: 12)) { try loop.runUntilComplete(future) }
        }
    }

    // Results are resolved on the loop thread, whatever thread ran the job.
    @Test func futureResolvesOnTheLoopThread() throws {
        try withLoop { loop in
            let future = loop.runInExecutor { 1 }
            let onLoop = Box(false)
            future.addDoneCallback { _ in onLoop.value = loop.inLoopThread }
            _ = try loop.runUntilComplete(future)
            loop.callSoon { loop.stop() }
            try loop.runForever()
            #expect(onLoop.value)
        }
    }

    // Cancelling the future of a job that has not started removes the job: it never runs.
    @Test func cancellingAQueuedJobRemovesIt() throws {
        try withLoop { loop in
            let pool = ThreadPoolExecutor(maxWorkers: 1, threadNamePrefix: "one")
            defer { pool.shutdown() }
            let gate = JobGate()
            let secondRan = Atomic<Bool>(false)
            let first = loop.runInExecutor(pool) { gate.enterAndWait() }
            let second = loop.runInExecutor(pool) { secondRan.store(true, ordering: .sequentiallyConsistent) }
            #expect(second.cancel())
            gate.open()
            try loop.runUntilComplete(first)
            pool.shutdown(wait: true)
            #expect(second.isCancelled)
            let ran = secondRan.load(ordering: .sequentiallyConsistent)
            #expect(!ran)
        }
    }

    // Threads start lazily up to maxWorkers and carry the prefix in their names.
    @Test func threadsAreNamedAndBounded() throws {
        try withLoop { loop in
            let pool = ThreadPoolExecutor(maxWorkers: 3, threadNamePrefix: "blk")
            defer { pool.shutdown() }
            #expect(pool.threadCount == 0)
            let futures = (0..<12).map { _ in
                loop.runInExecutor(pool) { () -> String in
                    blockThread(seconds: 0.01)
                    return currentThreadName()
                }
            }
            let names = try loop.runUntilComplete { try await gather(futures) }
            #expect(pool.threadCount <= 3)
            #expect(Set(names).isSubset(of: ["blk-0", "blk-1", "blk-2"]))
        }
    }

    // The default executor has min(32, cores + 4) workers, as asyncio's.
    @Test func defaultExecutorSizedLikeAsyncio() throws {
        try withLoop { loop in
            #expect(loop.defaultExecutor.maxWorkers == min(32, availableCores() + 4))
        }
    }

    // After shutdownDefaultExecutor, runInExecutor(nil) fails with executorShutdown.
    @Test func shutdownDefaultExecutorRefusesNewWork() throws {
        try withLoop { loop in
            let code = try loop.runUntilComplete { () async throws -> EventLoopError.Code? in
                _ = try await loop.runInExecutor { 1 }.value
                await loop.shutdownDefaultExecutor()
                do {
                    _ = try await loop.runInExecutor { 2 }.value
                    return nil
                } catch let error as EventLoopError {
                    return error.code
                }
            }
            #expect(code == .executorShutdown)
        }
    }

    // A task awaiting a queued job is cancelled: the job is cancelled where it waits in the
    // pool's queue and never runs (the future is cancelled through the task's wait, not by
    // the caller), and the loop's count of jobs in flight drops at once. A job cancelled while it runs runs to
    // the end, its result dropped.
    @Test func cancellingTheAwaitingTaskCancelsItsQueuedJob() throws {
        try withLoop { loop in
            let pool = ThreadPoolExecutor(maxWorkers: 1, threadNamePrefix: "cancel")
            defer { pool.shutdown() }
            let gate = JobGate()
            let queuedRan = Atomic<Bool>(false)
            let blocker = loop.runInExecutor(pool) { () -> Int in
                gate.enterAndWait()
                return 1
            }
            let waiter = loop.createTask { () async throws -> Int in
                try await loop.runInExecutor(pool) { () -> Int in
                    queuedRan.store(true, ordering: .sequentiallyConsistent)
                    return 2
                }.value
            }
            try loop.runUntilComplete { await Task.yield() }   // the waiter is waiting
            try gate.waitUntilStarted()
            #expect(loop.executorJobsInFlight == 2)
            #expect(pool.pendingJobCount == 1)
            waiter.cancel()
            #expect(throws: CancellationError.self) { try loop.runUntilComplete(waiter) }
            #expect(loop.executorJobsInFlight == 1)
            #expect(blocker.cancel())   // running: it ends, its result dropped
            gate.open()
            var passes = 0
            while loop.executorJobsInFlight > 0 && passes < 20_000 {
                try loop.runUntilComplete { await Task.yield() }
                blockThread(seconds: 0.001)
                passes += 1
            }
            #expect(loop.executorJobsInFlight == 0)
            #expect(blocker.isCancelled)
            let ran = queuedRan.load(ordering: .sequentiallyConsistent)
            #expect(!ran)
        }
    }

    // shutdown(cancelPendingJobs:) cancels the futures of jobs that had not started.
    @Test func shutdownCancelsPendingJobsFutures() throws {
        try withLoop { loop in
            let pool = ThreadPoolExecutor(maxWorkers: 1)
            let gate = JobGate()
            let first = loop.runInExecutor(pool) {
                gate.enterAndWait()
                return 1
            }
            let queued = loop.runInExecutor(pool) { 2 }
            try gate.waitUntilStarted()
            pool.shutdown(wait: false, cancelPendingJobs: true)
            gate.open()
            let firstValue = try loop.runUntilComplete(first)
            #expect(firstValue == 1)
            #expect(throws: CancellationError.self) { try loop.runUntilComplete(queued) }
            #expect(throws: EventLoopError(.executorShutdown, "")) { try pool.submit {} }
            pool.shutdown(wait: true)
        }
    }

    // A worker that ran out of jobs polls the queue for a moment, and submit wakes nobody for
    // the one job it will take; a second job queued with it must still get a thread of its
    // own. Each round queues two jobs at once (one submit, so the poller cannot take the
    // first before the second is queued) while a worker polls (60 s here, so the poll is
    // still on when they come) and the other sleeps; each job waits (bounded) for the other to
    // start. A submit that woke nobody while a worker polls would leave the second job queued
    // behind the first, and both would time out.
    @Test func jobsQueuedWhileAWorkerPollsStillRunInParallel() throws {
        let pool = ThreadPoolExecutor(maxWorkers: 2, threadNamePrefix: "pair", spinDuration: .seconds(60))
        defer { pool.shutdown() }
        for round in 0..<5 {
            let started = Atomic<Int>(0)
            let metEachOther = Atomic<Int>(0)
            let finished = Atomic<Int>(0)
            let pair = (0..<2).map { _ -> WorkItem in
                ClosureWorkItem {
                    started.add(1, ordering: .sequentiallyConsistent)
                    var waited = 0
                    while started.load(ordering: .sequentiallyConsistent) < 2 && waited < 5_000 {
                        blockThread(seconds: 0.001)
                        waited += 1
                    }
                    if started.load(ordering: .sequentiallyConsistent) == 2 {
                        metEachOther.add(1, ordering: .sequentiallyConsistent)
                    }
                    finished.add(1, ordering: .sequentiallyConsistent)
                }
            }
            if round > 0 {
                // Both threads exist (the first round started them); one of them polls.
                var waited = 0
                while !pool.hasPollingWorker && waited < 10_000 {
                    blockThread(seconds: 0.001)
                    waited += 1
                }
                #expect(pool.hasPollingWorker, "round \(round): no worker polls")
            }
            #expect(pool.submit(pair))
            var waited = 0
            while finished.load(ordering: .sequentiallyConsistent) < 2 && waited < 30_000 {
                blockThread(seconds: 0.001)
                waited += 1
            }
            #expect(metEachOther.load(ordering: .sequentiallyConsistent) == 2, "round \(round)")
        }
        #expect(pool.threadCount == 2)
    }

    // The loop counts runInExecutor jobs in flight (it polls for their results before it
    // sleeps, while round trips are short); every way a job ends brings the count back: a
    // result, an error, a cancel before it started, a drop by the pool's shutdown.
    @Test func jobsInFlightCountReturnsToZeroHoweverJobsEnd() throws {
        try withLoop { loop in
            let pool = ThreadPoolExecutor(maxWorkers: 1, threadNamePrefix: "count")
            let gate = JobGate()
            let blocker = loop.runInExecutor(pool) { () -> Int in
                gate.enterAndWait()
                return 1
            }
            let failing = loop.runInExecutor { () throws -> Int in throw TestError(id: 3) }
            let cancelled = loop.runInExecutor(pool) { 2 }
            let dropped = loop.runInExecutor(pool) { 3 }
            #expect(loop.executorJobsInFlight == 4)
            #expect(cancelled.cancel())
            #expect(loop.executorJobsInFlight == 3)
            try gate.waitUntilStarted()
            pool.shutdown(wait: false, cancelPendingJobs: true)
            gate.open()
            let blockerValue = try loop.runUntilComplete(blocker)
            #expect(blockerValue == 1)
            #expect(throws: TestError(id: 3)) { try loop.runUntilComplete(failing) }
            #expect(throws: CancellationError.self) { try loop.runUntilComplete(dropped) }
            pool.shutdown(wait: true)
            #expect(loop.executorJobsInFlight == 0)
            #expect(loop.executorRoundTripNanos > 0)
        }
    }

    // A job hands its future back to the loop through the loop's queue; a loop closed with
    // the hand-back still queued drops it unrun. Nothing of the round trip stays behind: the
    // job held its future until it handed it back, the future holds the job until it comes
    // back, and the dropped hand-back was the last holder of the future. First a result...
    @Test func aResultHandedBackAsTheLoopClosesLeavesNothing() throws {
        let pool = ThreadPoolExecutor(maxWorkers: 1, threadNamePrefix: "handback")
        defer { pool.shutdown() }
        weak var weakLoop: EventLoop?
        weak var weakFuture: Future<Int>?
        do {
            let loop = try EventLoop(name: "closes with a result queued")
            weakLoop = loop
            let future = loop.runInExecutor(pool) { 1 }
            weakFuture = future
            pool.shutdown(wait: true)   // the job ran and handed its future to the loop's queue
            #expect(loop.executorJobsInFlight == 1)
            #expect(!future.isDone)
            try loop.close()
        }
        #expect(weakFuture == nil)
        #expect(weakLoop == nil)
    }

    // ... then a drop: the pool's shutdown drops a queued job while its loop is stopped (not
    // closed), and the loop closes before it ran again.
    @Test func aDropHandedBackAsTheLoopClosesLeavesNothing() throws {
        let pool = ThreadPoolExecutor(maxWorkers: 1, threadNamePrefix: "dropback")
        defer { pool.shutdown() }
        let gate = JobGate()
        weak var weakLoop: EventLoop?
        weak var weakQueued: Future<Int>?
        do {
            let loop = try EventLoop(name: "closes with a drop queued")
            weakLoop = loop
            let blocker = loop.runInExecutor(pool) { () -> Int in
                gate.enterAndWait()
                return 1
            }
            let queued = loop.runInExecutor(pool) { 2 }
            weakQueued = queued
            try gate.waitUntilStarted()
            pool.shutdown(wait: false, cancelPendingJobs: true)
            gate.open()
            pool.shutdown(wait: true)
            #expect(loop.executorJobsInFlight == 2)
            #expect(!queued.isDone && !blocker.isDone)
            try loop.close()
        }
        #expect(weakQueued == nil)
        #expect(weakLoop == nil)
    }

    // A future cancelled after the pool's shutdown dropped its job, before the drop reached
    // the loop: the job is counted out once, when it comes back, and the future stays
    // cancelled.
    @Test func aFutureCancelledAfterItsJobWasDroppedIsCountedOutOnce() throws {
        try withLoop { loop in
            let pool = ThreadPoolExecutor(maxWorkers: 1, threadNamePrefix: "cancel-drop")
            let gate = JobGate()
            let blocker = loop.runInExecutor(pool) { () -> Int in
                gate.enterAndWait()
                return 1
            }
            let queued = loop.runInExecutor(pool) { 2 }
            try gate.waitUntilStarted()
            pool.shutdown(wait: false, cancelPendingJobs: true)   // the drop waits in the loop's queue
            #expect(queued.cancel())
            #expect(loop.executorJobsInFlight == 2)   // the dropped job has not come back yet
            gate.open()
            #expect(try loop.runUntilComplete(blocker) == 1)
            pool.shutdown(wait: true)
            try loop.runUntilComplete { await Task.yield() }
            #expect(loop.executorJobsInFlight == 0)
            #expect(queued.isCancelled)
        }
    }

    // A job still running when its loop closes finishes later, its result undeliverable:
    // nothing of it stays behind. (Its closures held its future, which held the job back
    // through its done-callback, and the loop with them: a cycle nothing broke.)
    @Test func aJobThatEndsAfterItsLoopClosedLeavesNothing() throws {
        let pool = ThreadPoolExecutor(maxWorkers: 1, threadNamePrefix: "late")
        defer { pool.shutdown() }
        let gate = JobGate()
        weak var weakLoop: EventLoop?
        weak var weakFuture: Future<Int>?
        do {
            let loop = try EventLoop(name: "closes first")
            weakLoop = loop
            let future = loop.runInExecutor(pool) { () -> Int in
                gate.enterAndWait()
                return 1
            }
            weakFuture = future
            try gate.waitUntilStarted()
            try loop.close()
        }
        gate.open()
        pool.shutdown(wait: true)   // the job has ended
        #expect(weakFuture == nil)
        #expect(weakLoop == nil)
    }

    // spinDuration zero: idle workers never poll, they sleep on the condition at once, and
    // every job still runs (each woken by submit), in order on one worker.
    @Test func aPoolThatNeverPollsStillRunsEveryJob() throws {
        try withLoop { loop in
            let pool = ThreadPoolExecutor(maxWorkers: 1, threadNamePrefix: "nopoll", spinDuration: .zero)
            defer { pool.shutdown() }
            #expect(pool.spinDuration == .zero)
            let values = try loop.runUntilComplete { () async throws -> [Int] in
                var values: [Int] = []
                for i in 0..<20 {
                    values.append(try await loop.runInExecutor(pool) { i }.value)
                }
                return values
            }
            #expect(values == Array(0..<20))
            let negative = ThreadPoolExecutor(maxWorkers: 1, spinDuration: .microseconds(-5))
            #expect(negative.spinDuration == .zero)
            negative.shutdown()
        }
    }
}

/// A gate for a pool job: the job says it started and waits (bounded) until the test opens
/// the gate, so a test knows the pool's one worker is busy and can open it when it wants.
final class JobGate: Sendable {
    private let started = Atomic<Bool>(false)
    private let opened = Atomic<Bool>(false)

    /// In the job: marks it started, then waits for ``open()`` (20 s at most).
    func enterAndWait() {
        started.store(true, ordering: .sequentiallyConsistent)
        try? blockUntil("the test opened the gate") { opened.load(ordering: .sequentiallyConsistent) }
    }

    /// In the test: waits (bounded) until the job started.
    func waitUntilStarted() throws {
        try blockUntil("the job started") { started.load(ordering: .sequentiallyConsistent) }
    }

    /// Lets the job end.
    func open() {
        opened.store(true, ordering: .sequentiallyConsistent)
    }
}
