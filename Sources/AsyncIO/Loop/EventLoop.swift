//===----------------------------------------------------------------------===//
// swift-asyncio — EventLoop: callbacks, timers, fd readiness and Swift jobs on one thread.
//
// The loop's concerns live in one file each:
//   EventLoop.swift              state, creation, thread checks, closing (this file)
//   EventLoop+Scheduling.swift   callSoon / callLater / callAt / callSoonThreadSafe
//   EventLoop+IO.swift           addReader / addWriter: the fd registry over the Selector
//   EventLoop+Run.swift          runForever / stop: one pass of the loop
//   EventLoop+Exceptions.swift   the exception handler
//   EventLoop+Executor.swift     SerialExecutor / TaskExecutor for Swift concurrency
//   EventLoop+Signals.swift      signal handlers
//   LoopInbox.swift              the thread-safe part: cross-thread queue and wake-up
//   LoopLocal.swift              per-loop state that upper layers register (with close hooks)
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
import DequeModule
public import Logging
#if canImport(Glibc)
import Glibc
#endif

/// An item of the ready queue: what the loop runs in its next pass. Loop-local: items from
/// other threads arrive as ``RemoteItem``s through the ``LoopInbox``.
enum ReadyItem {
    /// A user callback that may have been cancelled.
    case handle(Handle)
    /// A Swift concurrency job isolated to the loop as a serial executor (an actor whose
    /// executor is the loop).
    case job(UnownedJob)
    /// A step of a task that prefers the loop as its task executor.
    case taskJob(UnownedJob)
    /// An internal callback with no handle (future callbacks, wake-ups of awaiters).
    case closure(() -> Void)

    init(_ item: RemoteItem) {
        switch item {
        case .handle(let handle): self = .handle(handle)
        case .job(let job): self = .job(job)
        case .taskJob(let job): self = .taskJob(job)
        case .closure(let body): self = .closure(body)
        }
    }
}

@available(*, unavailable)
extension ReadyItem: Sendable {}

/// asyncio's event loop, in Swift: one thread runs callbacks, timers, fd readiness callbacks
/// and Swift async code (the loop is a `SerialExecutor` and a `TaskExecutor`).
///
/// Each pass of the loop (a *tick*) polls epoll (without blocking when work is ready), moves
/// due timers to the ready queue and runs exactly the callbacks that were ready when the pass
/// began; callbacks scheduled meanwhile run in the next pass, so no callback can starve I/O.
///
/// ```swift
/// let loop = try EventLoop()
/// let answer = try loop.runUntilComplete {
///     try await sleep(for: .milliseconds(10))   // a loop timer, not a blocked thread
///     let sum = try await loop.runInExecutor { (1...1_000).reduce(0, +) }.value
///     return sum
/// }
/// try loop.close()
/// ```
///
/// - Important: Threading contract. Methods marked *thread-safe* may be called from any
///   thread. Everything else is loop-bound: call it on the thread running the loop, or, for a
///   free-standing loop, while no thread runs it (to set things up). A loop of an
///   ``EventLoopGroup`` is bound to its thread from creation. In debug builds, or with
///   ``debug`` on (or the environment variable `ASYNCIO_DEBUG=1`), a loop-bound call from a
///   foreign thread traps.
public final class EventLoop: @unchecked Sendable {
    // @unchecked Sendable: the loop is shared across threads, but only the members marked
    // thread-safe (and the ``LoopInbox``) may be used off its thread; every loop-bound entry
    // point checks the thread in debug builds (assertInLoop).

    // MARK: - Constants

    /// Callbacks slower than this are logged in debug mode (asyncio's `slow_callback_duration`).
    public var slowCallbackDuration: Duration = .milliseconds(100)

    /// How many passes may run without polling epoll while callbacks are ready.
    static var maxTicksWithoutPoll: Int { 8 }   // computed: a constant, no lazy global

    // MARK: - Thread-safe state

    /// A name for logs and thread names.
    public let name: String
    let selector: Selector
    /// The thread-safe part: running thread, cross-thread queue, wake-up, closed flag.
    let inbox: LoopInbox
    /// The logger for loop diagnostics and the default exception handler: the one given to
    /// ``init(name:debug:logger:)`` (by default `Logger(label: "swift-asyncio")`) with the
    /// loop's name as metadata `loop`. Servers and connections on the loop start from it
    /// unless given their own.
    public let logger: Logger
    /// The loop as a task executor for `Task(executorPreference:)` and
    /// `withTaskExecutorPreference`: steps of such tasks run on the loop's thread. Prefer it to
    /// passing the loop itself, which works too but runs each step isolated to the loop as a
    /// serial executor and costs extra passes (see ``LoopTaskExecutor``).
    public let taskExecutor: LoopTaskExecutor

    // MARK: - On the loop only

    // Loop-confined and never accessed overlappingly: skip the runtime's exclusivity checks,
    // which cost ~15% of a task switch (measured with callgrind).
    @exclusivity(unchecked) var ready = Deque<ReadyItem>()
    /// The Swift task whose step the loop is running (its job's address, which for a task is
    /// the task's own), nil between steps: lets a wait tell, at the cost of a load, whether it
    /// is a ``LoopTask``'s own (see ``Future/value``).
    @usableFromInline @exclusivity(unchecked) var runningTask: UnsafeRawPointer?
    /// The eager task whose first step runs inside `createTask(eager:)` (within another
    /// task's step or a callback, so `runningTask` does not name it).
    @usableFromInline @exclusivity(unchecked) var eagerFirstStep: (any AnyLoopTask)?
    @exclusivity(unchecked) var remoteSpare: [RemoteItem] = []
    @exclusivity(unchecked) var timers = TimerQueue()
    /// Cancelled timers still in `timers` (shared with the timer handles, which count
    /// themselves in when cancelled).
    let cancelledTimers = CancelledTimerCount()
    var timerSequence: UInt64 = 0
    @exclusivity(unchecked) var registrations: [Registration] = []
    var registrationCount = 0
    var nextGeneration: UInt32 = 1
    var ticksWithoutPoll = 0
    var stopping = false
    /// `runInExecutor` jobs whose results have not come back to the loop yet.
    var executorJobsInFlight = 0
    /// A moving average of `runInExecutor` round trips (submit to result on the loop), in
    /// nanoseconds: while it is short, the loop polls its inbox briefly before it sleeps.
    var executorRoundTripNanos: UInt64 = 0
    var exceptionHandler: ((EventLoop, ExceptionContext) -> Void)?
    /// Tasks created by ``createTask(name:_:)`` that have not finished (kept alive here).
    @usableFromInline @exclusivity(unchecked) var liveTasks = LiveTaskTable()
    @usableFromInline @exclusivity(unchecked) var taskCounter = 0
    var signals: SignalState?
    /// State of upper layers (transports, TLS, executors), by ``LoopLocalKey`` index.
    @exclusivity(unchecked) var locals: [AnyObject?] = []
    /// The same objects in creation order, for their close hooks.
    var localsInOrder: [any LoopLocal] = []
    /// Debug mode: slow callbacks are logged and loop-bound calls from foreign threads trap.
    /// Set it before the loop runs, or on the loop's thread. (Read on every loop-bound call:
    /// no runtime exclusivity check, which would cost ~75 instructions per echoed message.)
    @exclusivity(unchecked) public var debug: Bool

    /// Creates an event loop. It runs on whichever thread calls ``runForever()`` or
    /// ``runUntilComplete(_:)-(Future<T>)``.
    ///
    /// - Parameters:
    ///   - name: A name for logs (the metadata `loop` of its ``logger``).
    ///   - debug: Debug mode; defaults to whether `ASYNCIO_DEBUG` is set to a non-empty value
    ///     other than `0`.
    ///   - logger: Where the loop, and the servers and connections on it that are given no
    ///     logger of their own, log. The default, `Logger(label: "swift-asyncio")`, goes to
    ///     the handler `LoggingSystem.bootstrap` chose (swift-log's default: standard error,
    ///     from `info` up). The library stays quiet at that level while nothing goes wrong:
    ///     it logs errors nobody could be told of (`error`), trouble it works around
    ///     (`warning`), and per-connection events such as a failed TLS handshake (`debug`).
    /// - Throws: ``IOError`` if epoll or the eventfd cannot be created (e.g. EMFILE).
    public init(name: String = "asyncio-loop", debug: Bool? = nil, logger: Logger? = nil) throws(IOError) {
        self.name = name
        self.selector = try Selector()
        self.inbox = LoopInbox(wakeFD: selector.eventFD, name: name)
        var logger = logger ?? Logger(label: "swift-asyncio")
        logger[metadataKey: "loop"] = "\(name)"
        self.logger = logger
        if let debug {
            self.debug = debug
        } else if let value = getenv("ASYNCIO_DEBUG").map({ String(cString: $0) }) {
            self.debug = !value.isEmpty && value != "0"
        } else {
            self.debug = false
        }
        self.taskExecutor = LoopTaskExecutor(inbox: inbox, logger: logger)
        taskExecutor.attach(self)
    }

    deinit {
        if !isClosed {
            releaseResources()
        }
    }

    // MARK: - Thread checks

    /// Whether the calling thread is the one running this loop. Thread-safe.
    @inline(__always)
    public var inLoopThread: Bool { inbox.inLoopThread }

    /// Whether a loop-bound call is allowed here (see ``LoopInbox/mayTouchLoopState``).
    var mayTouchLoopState: Bool { inbox.mayTouchLoopState }

    /// Traps if a loop-bound call comes from a foreign thread, in debug builds or debug mode.
    @inlinable
    func assertInLoop(_ function: StaticString = #function) {
        if _isDebugAssertConfiguration() || debug {
            preconditionInLoop(function)
        }
    }

    /// Traps if a loop-bound call comes from a foreign thread, in every build.
    @usableFromInline
    func preconditionInLoop(_ function: StaticString = #function) {
        precondition(
            mayTouchLoopState,
            "EventLoop '\(name)': \(function) called from a foreign thread; use callSoonThreadSafe")
    }

    /// Binds the loop to the thread `id` (`pthread_self()` there), or unbinds it with 0: the
    /// loops of a group belong to their threads from creation until the thread ends.
    func bind(toThread id: UInt) {
        inbox.boundThread.store(id, ordering: .releasing)
    }

    /// The loop running on the current thread, if any. Thread-safe.
    public static var current: EventLoop? {
        guard let raw = casyncio_current_loop() else { return nil }
        return Unmanaged<EventLoop>.fromOpaque(raw).takeUnretainedValue()
    }

    /// Whether the loop is running. Thread-safe.
    public var isRunning: Bool { inbox.runningThread.load(ordering: .relaxed) != 0 }

    /// Whether ``close()`` was called. Thread-safe.
    public var isClosed: Bool { inbox.closed.load(ordering: .relaxed) }

    /// The loop's clock: monotonic seconds (CLOCK_MONOTONIC), as asyncio's `loop.time()`.
    /// Thread-safe.
    public func time() -> Double {
        Double(monotonicNanoseconds()) / 1e9
    }

    // MARK: - Closing

    /// Closes the loop: drops pending callbacks, removes signal handlers, runs the close hooks
    /// of upper layers (which, for example, shut the default executor down without waiting),
    /// and closes every fd the loop opened (epoll, eventfd, signal pipe). Closing twice is
    /// harmless. Later calls to run the loop throw ``EventLoopError/Code-swift.struct/closed``.
    ///
    /// Close a loop once you are done with it: a loop with live tasks or transports is kept
    /// alive by them (they hold it), so releasing the last reference of your own does not
    /// free it; only `close()` releases its fds then.
    ///
    /// - Throws: ``EventLoopError/Code-swift.struct/wrongThread`` from a thread that may not
    ///   touch it (a group's loop is closed by its group; a running loop belongs to the thread
    ///   running it); ``EventLoopError/Code-swift.struct/alreadyRunning`` if called on the
    ///   thread running it, from one of its callbacks.
    /// - Important: Loop-bound.
    public func close() throws(EventLoopError) {
        // The thread first: whether another thread's loop is running yet is a matter of timing
        // (a group's thread may or may not have started it), the caller's mistake is not.
        guard mayTouchLoopState else {
            throw EventLoopError(.wrongThread, "the event loop '\(name)' belongs to another thread")
        }
        if isRunning {
            throw EventLoopError(.alreadyRunning, "cannot close a running event loop")
        }
        if isClosed { return }
        releaseResources()
    }

    private func releaseResources() {
        // The inbox refuses items from now on and takes no eventfd writes after this line.
        let dropped = inbox.close()
        removeAllSignalHandlers()
        // Upper layers first (newest first): they may still cancel timers or remove watchers.
        for local in localsInOrder.reversed() {
            local.loopWillClose()
        }
        selector.close()
        var pendingJobs = 0
        // Item by item, not through a joined array: building an empty one writes the
        // runtime's shared empty-array storage, which ThreadSanitizer reports when two loops
        // close at once.
        func drop(_ item: ReadyItem) {
            switch item {
            case .job, .taskJob: pendingJobs += 1
            case .handle(let handle): handle.dropped()
            case .closure: break
            }
        }
        for item in ready { drop(item) }
        for item in dropped { drop(ReadyItem(item)) }
        if pendingJobs > 0 {
            logger.warning("EventLoop closed with \(pendingJobs) task step(s) pending; those tasks never finish")
        }
        // Tasks that can never run again end as cancelled, so whoever waits for them (another
        // thread's ConcurrentFuture, a done callback) is not left waiting forever.
        let abandoned = liveTasks.all
        liveTasks = LiveTaskTable()
        for task in abandoned {
            task._loopClosed()
        }
        ready.removeAll()
        // Their callbacks too may be all that keeps an object, and the loop it holds, alive.
        timers.forEach { $0.handle.dropped() }
        timers.removeAll()
        for registration in registrations {
            registration.reader?.dropped()
            registration.writer?.dropped()
        }
        registrations = []
        registrationCount = 0
        locals = []
        localsInOrder = []
    }
}

extension EventLoop: CustomStringConvertible {
    /// `EventLoop(name, running: …, closed: …, debug: …)`, for logs and debugging.
    public var description: String {
        "EventLoop(\(name), running: \(isRunning), closed: \(isClosed), debug: \(debug))"
    }
}
