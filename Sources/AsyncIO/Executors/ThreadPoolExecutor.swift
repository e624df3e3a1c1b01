//===----------------------------------------------------------------------===//
// swift-asyncio — ThreadPoolExecutor: blocking work on a pool of named threads.
//===----------------------------------------------------------------------===//

import DequeModule
import Synchronization

/// A job queued on a ``ThreadPoolExecutor``: runs at most once, or is cancelled (or dropped by
/// the pool's shutdown) before it starts. Subclasses say what the job does: a closure
/// (``ClosureWorkItem``), or a `runInExecutor` call (``ExecutorCall``).
///
/// Whichever comes first, the start, a cancel or a drop, is the only one to act: the others
/// find the item claimed and do nothing.
class WorkItem: @unchecked Sendable {
    // @unchecked Sendable: a subclass's stored properties are set at creation, before the
    // item is published (under the pool's lock), and used by whoever wins `state`'s
    // compare-exchange; a subclass that shares more says how (ExecutorCall).
    private static let pending: UInt8 = 0
    private static let running: UInt8 = 1
    private static let cancelled: UInt8 = 2

    private let state = Atomic<UInt8>(WorkItem.pending)

    /// Runs the job unless the item was cancelled (on a pool thread).
    final func run() {
        guard claim(Self.running) else { return }
        perform()
    }

    /// Cancels the item if it has not started; false if it is running or done.
    final func tryCancel() -> Bool {
        guard claim(Self.cancelled) else { return false }
        cancelled()
        return true
    }

    /// The pool's shutdown drops the item: if it had not started, it never will.
    final func drop() {
        guard claim(Self.cancelled) else { return }
        dropped()
    }

    private func claim(_ next: UInt8) -> Bool {
        state.compareExchange(expected: Self.pending, desired: next, ordering: .acquiringAndReleasing).exchanged
    }

    /// The job (on a pool thread; once).
    func perform() {}
    /// ``tryCancel()`` won: let go of what the job would have used (on the canceller's thread).
    func cancelled() {}
    /// ``drop()`` won (on the thread shutting the pool down).
    func dropped() { cancelled() }
}

/// A job that runs a closure (``ThreadPoolExecutor/submit(_:)``). The closure is released once
/// it ran or the item was cancelled.
final class ClosureWorkItem: WorkItem, @unchecked Sendable {
    private var body: (@Sendable () -> Void)?

    init(_ body: @escaping @Sendable () -> Void) {
        self.body = body
    }

    override func perform() {
        let body = self.body
        self.body = nil
        body?()
    }

    override func cancelled() {
        body = nil
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
        guard submit(ClosureWorkItem(body)) else {
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
