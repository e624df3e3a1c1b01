//===----------------------------------------------------------------------===//
// swift-asyncio — ThreadPoolExecutor: blocking work on a pool of named threads.
//===----------------------------------------------------------------------===//

import DequeModule
import Synchronization

/// A job queued on a ``ThreadPoolExecutor``: runs at most once, or is cancelled before it starts.
///
/// Whichever comes first, the start or a cancel, releases both closures: a `runInExecutor`
/// job's closures hold its future, which holds the item back through its done-callback, and a
/// job that finished after its loop closed (its result never delivered) would keep that cycle
/// and the loop forever.
final class WorkItem: @unchecked Sendable {
    // @unchecked Sendable: `body` and `onDrop` are set at creation, before the item is
    // published (under the pool's lock), and taken exactly once, by whoever wins `state`'s
    // compare-exchange; nothing reads them otherwise.
    private static let pending: UInt8 = 0
    private static let running: UInt8 = 1
    private static let cancelled: UInt8 = 2

    private let state = Atomic<UInt8>(WorkItem.pending)
    private var body: (@Sendable () -> Void)?
    /// Called when the item is dropped by the pool's shutdown (not by ``tryCancel()``).
    private var onDrop: (@Sendable () -> Void)?

    init(onDrop: (@Sendable () -> Void)? = nil, _ body: @escaping @Sendable () -> Void) {
        self.body = body
        self.onDrop = onDrop
    }

    /// Runs the body unless the item was cancelled.
    func run() {
        guard claim(Self.running) else { return }
        let body = self.body
        releaseClosures()
        body?()
    }

    /// Cancels the item if it has not started; false if it is running or done.
    func tryCancel() -> Bool {
        guard claim(Self.cancelled) else { return false }
        releaseClosures()
        return true
    }

    /// The pool's shutdown drops the item: if it had not started, it never will, and
    /// `onDrop` runs.
    func drop() {
        guard claim(Self.cancelled) else { return }
        let onDrop = self.onDrop
        releaseClosures()
        onDrop?()
    }

    private func claim(_ next: UInt8) -> Bool {
        state.compareExchange(expected: Self.pending, desired: next, ordering: .acquiringAndReleasing).exchanged
    }

    private func releaseClosures() {
        body = nil
        onDrop = nil
    }
}

/// A pool of OS threads for blocking work (asyncio's `concurrent.futures.ThreadPoolExecutor`).
///
/// Threads are started lazily, one per job that finds no idle thread, up to ``maxWorkers``, and
/// are named `<prefix>-<n>`. Jobs run in submission order (FIFO). Hand work to it from a loop
/// with ``EventLoop/runInExecutor(_:_:)``, which resolves a ``Future`` on the loop.
///
/// Threads are detached: each one's resources go back to the system when it ends, whether or
/// not anyone waits for it, so `shutdown(wait: false)` leaks nothing.
///
/// A worker that runs out of jobs polls the queue for ``spinDuration`` (20 µs by default) before it
/// sleeps on the pool's condition, and only one worker polls at a time. A task awaiting
/// `runInExecutor` results one after another usually submits the next job within that time,
/// which then starts without a futex wake-up (tens of microseconds on a virtual machine); a
/// burst of jobs costs at most one such poll when it ends.
///
/// - Note: Thread-safe.
public final class ThreadPoolExecutor: @unchecked Sendable {
    /// The most threads the pool starts.
    public let maxWorkers: Int
    /// The prefix of the threads' names.
    public let threadNamePrefix: String

    // MARK: Guarded by `lock`
    private let lock = ConditionLock()
    private var queue = Deque<WorkItem>()
    /// The workers that have not ended (each removes itself as it ends).
    private var workers: [OSThread] = []
    private var startedThreads = 0
    /// Workers waiting for a job: asleep on the condition or polling the queue.
    private var idleWorkers = 0
    /// Workers polling the queue (0 or 1): a job they will take needs no wake-up.
    private var spinningWorkers = 0
    private var isShutdown = false

    /// `queue.count`, readable without the lock: what a polling worker watches.
    private let queuedJobs = Atomic<Int>(0)

    /// Set by shutdown: a polling worker stops polling.
    private let stopPolling = Atomic<Bool>(false)

    /// How long a worker that ran out of jobs polls the queue before it sleeps (zero: never).
    public let spinDuration: Duration
    private let spinNanoseconds: UInt64

    /// The default ``spinDuration``: 20 µs, about what one futex wake-up costs on a virtual
    /// machine, and enough for a loop to receive a result and submit its next job.
    public static let defaultSpinDuration: Duration = .microseconds(20)

    /// A size for CPU-bound work: one thread per core this process may run on.
    ///
    /// Python needs a `ProcessPoolExecutor` for CPU-bound work because of its GIL; Swift
    /// threads run in parallel, so a thread pool of this size gives CPU-bound jobs every core
    /// (`Benchmarks/cpu-pool-bench.sh` measures it). The default executor is sized for
    /// blocking I/O instead, and runs more threads than cores.
    ///
    /// ```swift
    /// let cpu = ThreadPoolExecutor(maxWorkers: ThreadPoolExecutor.cpuBoundWorkers, threadNamePrefix: "cpu")
    /// let digest = try await loop.runInExecutor(cpu) { sha256(bigBuffer) }.value
    /// ```
    public static var cpuBoundWorkers: Int { availableCores() }

    /// The default size, as asyncio's: `min(32, cores + 4)`.
    public static var defaultMaxWorkers: Int { min(32, availableCores() + 4) }

    /// Creates a pool.
    /// - Parameters:
    ///   - maxWorkers: The most threads to start (at least 1); ``defaultMaxWorkers`` if `nil`.
    ///   - threadNamePrefix: Prefix of the threads' names (the kernel keeps 15 bytes).
    ///   - spinDuration: How long a worker that ran out of jobs polls for the next one before
    ///     it sleeps; zero never polls.
    public init(
        maxWorkers: Int? = nil, threadNamePrefix: String = "asyncio-pool",
        spinDuration: Duration = ThreadPoolExecutor.defaultSpinDuration
    ) {
        let workers = maxWorkers ?? Self.defaultMaxWorkers
        precondition(workers > 0, "ThreadPoolExecutor: maxWorkers must be at least 1")
        self.maxWorkers = workers
        self.threadNamePrefix = threadNamePrefix
        self.spinDuration = max(spinDuration, .zero)
        self.spinNanoseconds = UInt64(self.spinDuration.clampedNanoseconds)
    }

    deinit {
        // Workers hold the pool strongly while they run, so reaching deinit means none runs.
        lock.withLock { isShutdown = true }
    }

    /// Queues `body` to run on a pool thread.
    /// - Throws: ``EventLoopError/Code-swift.struct/executorShutdown`` after ``shutdown(wait:cancelPendingJobs:)``.
    public func submit(_ body: @escaping @Sendable () -> Void) throws(EventLoopError) {
        guard submit(WorkItem(body)) else {
            throw EventLoopError(.executorShutdown, "the executor was shut down")
        }
    }

    /// Queues an item; false if the pool is shut down.
    func submit(_ item: WorkItem) -> Bool {
        submit(CollectionOfOne(item))
    }

    /// Queues items together (a polling worker sees them all at once); false if the pool is
    /// shut down.
    func submit(_ items: some Collection<WorkItem>) -> Bool {
        lock.lock()
        if isShutdown {
            lock.unlock()
            return false
        }
        queue.append(contentsOf: items)
        queuedJobs.store(queue.count, ordering: .releasing)
        // A thread for each new job no idle worker will take, up to maxWorkers.
        var spawned = 0
        while spawned < items.count && queue.count > idleWorkers + spawned && startedThreads < maxWorkers {
            let name = "\(threadNamePrefix)-\(startedThreads)"
            startedThreads += 1
            spawned += 1
            // Under the lock: the new worker cannot end (and remove itself) before it is listed.
            workers.append(OSThread.spawn(name: name, detached: true) { [self] in workerLoop() })
        }
        // A polling worker takes one job without a wake-up; wake a sleeper for each other.
        var wakeUps = Swift.min(items.count, queue.count - spinningWorkers)
        while wakeUps > 0 {
            lock.signal()
            wakeUps -= 1
        }
        lock.unlock()
        return true
    }

    /// Whether a worker is polling the queue (tests).
    var hasPollingWorker: Bool { lock.withLock { spinningWorkers > 0 } }

    private func workerLoop() {
        // Whether this worker may poll before sleeping: after a job, not after a poll that
        // found nothing (it sleeps then until signalled).
        var mayPoll = true
        lock.lock()
        while true {
            if let item = queue.popFirst() {
                queuedJobs.store(queue.count, ordering: .relaxed)
                lock.unlock()
                item.run()
                mayPoll = true
                lock.lock()
                continue
            }
            if isShutdown {
                // Shut down and drained: leave the list, and wake shutdown(wait: true) callers
                // once the last worker is gone.
                workers.removeAll { $0.isCurrent }
                if workers.isEmpty { lock.broadcast() }
                lock.unlock()
                return
            }
            idleWorkers += 1
            if mayPoll && spinningWorkers == 0 && spinNanoseconds > 0 {
                // Poll for a moment outside the lock; then look again under it, so a job
                // queued as the poll ended (submit saw a poller and signalled nobody) is taken.
                spinningWorkers = 1
                lock.unlock()
                pollForJob()
                lock.lock()
                spinningWorkers = 0
                mayPoll = false
            } else {
                lock.wait()
            }
            idleWorkers -= 1
        }
    }

    /// Returns once a job is queued, ``spinDuration`` has passed or the pool is shut down.
    private func pollForJob() {
        _ = spinWait(nanoseconds: spinNanoseconds) {
            queuedJobs.load(ordering: .acquiring) != 0 || stopPolling.load(ordering: .relaxed)
        }
    }

    /// Stops taking work. Jobs already queued still run unless `cancelPendingJobs`, in which
    /// case those not started are dropped (their loop futures are cancelled).
    ///
    /// - Parameters:
    ///   - wait: Block until every thread has finished its work and exited. Ignored when
    ///     called from one of the pool's own threads (it cannot wait for itself).
    ///   - cancelPendingJobs: Drop the jobs that have not started.
    public func shutdown(wait: Bool = true, cancelPendingJobs: Bool = false) {
        var dropped: [WorkItem] = []
        let onWorker: Bool = lock.withLock {
            isShutdown = true
            stopPolling.store(true, ordering: .relaxed)
            if cancelPendingJobs {
                dropped = Array(queue)
                queue.removeAll()
            }
            lock.broadcast()
            return workers.contains { $0.isCurrent }
        }
        for item in dropped {
            item.drop()
        }
        guard wait, !onWorker else { return }
        lock.withLock {
            // Workers wake on the same condition; after shutdown nothing else signals it.
            while !workers.isEmpty { lock.wait() }
        }
    }

    /// How many threads the pool has started.
    public var threadCount: Int { lock.withLock { startedThreads } }

    /// How many submitted jobs wait for a thread (not those running). Thread-safe.
    public var pendingJobCount: Int { lock.withLock { queue.count } }
}

// MARK: - The loop's side

/// A loop's default executor (loop-local state): made on first use, shut down without
/// waiting when the loop closes.
final class DefaultExecutorSlot: LoopLocal {
    static let key = LoopLocalKey<DefaultExecutorSlot>()
    var executor: ThreadPoolExecutor?
    /// ``EventLoop/shutdownDefaultExecutor()`` was called: a new default executor starts shut.
    var shutDown = false

    func loopWillClose() {
        executor?.shutdown(wait: false)
        executor = nil
    }
}

@available(*, unavailable)
extension DefaultExecutorSlot: Sendable {}

extension EventLoop {
    var defaultExecutorSlot: DefaultExecutorSlot {
        local(DefaultExecutorSlot.key) { DefaultExecutorSlot() }
    }

    /// The loop's default executor, created on first use with
    /// ``ThreadPoolExecutor/defaultMaxWorkers`` threads.
    /// - Important: Loop-bound.
    public var defaultExecutor: ThreadPoolExecutor {
        assertInLoop()
        let slot = defaultExecutorSlot
        if let executor = slot.executor { return executor }
        let executor = ThreadPoolExecutor(threadNamePrefix: "asyncio-\(name)")
        if slot.shutDown || isClosed { executor.shutdown(wait: false) }   // starts no thread
        slot.executor = executor
        return executor
    }

    /// The default executor if one was made or set, without making one (for metrics).
    /// - Important: Loop-bound.
    package var existingDefaultExecutor: ThreadPoolExecutor? {
        assertInLoop()
        return existingLocal(DefaultExecutorSlot.key)?.executor
    }

    /// Replaces the default executor used by ``runInExecutor(_:_:)`` with `nil`.
    /// - Important: Loop-bound.
    public func setDefaultExecutor(_ executor: ThreadPoolExecutor) {
        assertInLoop()
        let slot = defaultExecutorSlot
        slot.executor = executor
        slot.shutDown = false
    }

    /// Shuts the default executor down (if one was made) and blocks until its threads are
    /// done: for `EventLoop.run` and the group's shutdown, with the loop stopped.
    func shutdownDefaultExecutorBlocking() {
        guard let slot = existingLocal(DefaultExecutorSlot.key) else { return }
        slot.executor?.shutdown(wait: true)
        slot.executor = nil
    }

    /// Runs the blocking `body` on `executor` (the default executor if `nil`) and returns a
    /// future resolved on this loop with its result or error (asyncio's `run_in_executor`).
    ///
    /// Cancelling the future before the job started removes the job; once it runs, it runs to
    /// the end (threads cannot be interrupted) and its result is dropped.
    ///
    /// A round trip costs about 5 µs on a 2-core virtual machine (a `DispatchQueue.global()`
    /// hop and back costs 15–20 µs there): the pool's last idle worker polls for the next job
    /// for its ``ThreadPoolExecutor/spinDuration``, and a loop with jobs in flight whose round
    /// trips average under 50 µs polls for their results for up to 30 µs before it sleeps in
    /// epoll, so neither side pays a futex or eventfd wake-up. Long jobs make the average
    /// long and the loop sleeps at once.
    ///
    /// ```swift
    /// let digest = try await loop.runInExecutor { try hashFile(path) }.value
    /// ```
    /// - Returns: A future that fails with ``EventLoopError/Code-swift.struct/executorShutdown``
    ///   if the executor was shut down.
    /// - Important: Loop-bound.
    public func runInExecutor<T: Sendable>(
        _ executor: ThreadPoolExecutor? = nil,
        _ body: @escaping @Sendable () throws -> T
    ) -> Future<T> {
        assertInLoop()
        let future = Future<T>(loop: self)
        if isClosed {
            future.complete(.failure(EventLoopError.closedError))
            return future
        }
        let submitted = monotonicNanoseconds()
        let item = WorkItem(onDrop: { [self] in
            _ = execute {
                self.executorJobEnded(submittedAt: nil)
                future.complete(.cancelled)
            }
        }) { [self] in
            let result = Result { try body() }
            // The loop may be closed meanwhile; then nobody can observe the result.
            _ = enqueueRemote {
                self.executorJobEnded(submittedAt: submitted)
                future.completeIfPending(result)
            }
        }
        future._whenDone { [self] future in
            if future.isCancelled && item.tryCancel() { executorJobEnded(submittedAt: nil) }
        }
        let pool = executor ?? defaultExecutor
        if pool.submit(item) {
            executorJobsInFlight += 1
        } else {
            future.complete(.failure(EventLoopError(.executorShutdown, "the executor was shut down")))
        }
        return future
    }

    /// A `runInExecutor` job ended (ran, or was dropped): one fewer in flight, and the moving
    /// average of round trips updated with this one (weight 1/8) if it ran. Loop thread only.
    private func executorJobEnded(submittedAt: UInt64?) {
        executorJobsInFlight -= 1
        guard let submittedAt else { return }
        let roundTrip = monotonicNanoseconds() &- submittedAt
        executorRoundTripNanos = executorRoundTripNanos - executorRoundTripNanos / 8 + roundTrip / 8
    }

    /// Shuts the default executor down and waits, without blocking the loop, until its threads
    /// finished their jobs (asyncio's `shutdown_default_executor`). Later
    /// ``runInExecutor(_:_:)`` calls with a `nil` executor fail with `executorShutdown`.
    /// - Important: Call from a task running on this loop.
    public func shutdownDefaultExecutor() async {
        preconditionInLoop()
        let slot = defaultExecutorSlot
        slot.shutDown = true
        guard let executor = slot.executor else { return }
        let done = Future<Void>(loop: self)
        let joiner = OSThread.spawn(name: "asyncio-join") { [self] in
            executor.shutdown(wait: true)
            _ = enqueueRemote { done.complete(.success(())) }
        }
        await done.waitDone()
        joiner.join()
    }
}
