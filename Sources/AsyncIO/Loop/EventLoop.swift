//===----------------------------------------------------------------------===//
// swift-asyncio — EventLoop: callbacks, timers, fd readiness and Swift jobs on one thread.
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
import DequeModule
import HeapModule
public import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An item of the ready queue: what the loop runs in its next pass.

enum ReadyItem: @unchecked Sendable {
    /// A user callback that may have been cancelled.
    case handle(Handle)
    /// A Swift concurrency job isolated to the loop as a serial executor (an actor whose
    /// executor is the loop).
    case job(UnownedJob)
    /// A step of a task that prefers the loop as its task executor.
    case taskJob(UnownedJob)
    /// An internal callback with no handle (future callbacks, wake-ups of awaiters).
    case closure(() -> Void)
}

extension ReadyItem {
    var isJob: Bool {
        switch self {
        case .job, .taskJob: true
        case .handle, .closure: false
        }
    }
}

/// What ``EventLoop/callExceptionHandler(_:)`` reports: an error that escaped a callback, or
/// another condition the loop could not hand back to a caller (asyncio's exception context).
public struct ExceptionContext: Sendable, CustomStringConvertible {
    /// A sentence saying what happened.
    public var message: String
    /// The error, if there is one.
    public var error: (any Error)?
    /// What it came from: a callback, a future or a task's description.
    public var source: String?

    public init(message: String, error: (any Error)? = nil, source: String? = nil) {
        self.message = message
        self.error = error
        self.source = source
    }

    public var description: String {
        var text = message
        if let source { text += " [\(source)]" }
        if let error { text += ": \(error)" }
        return text
    }
}

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
///   thread. Everything else is loop-bound: call it on the thread running the loop, or while
///   no thread runs it (to set things up). In debug builds, or with ``debug`` on (or the
///   environment variable `ASYNCIO_DEBUG=1`), a loop-bound call from a foreign thread traps.
public final class EventLoop: @unchecked Sendable {
    // MARK: - Constants

    /// Callbacks slower than this are logged in debug mode (asyncio's `slow_callback_duration`).
    public var slowCallbackDuration: Duration = .milliseconds(100)

    /// How many passes may run without polling epoll while callbacks are ready.
    private static let maxTicksWithoutPoll = 8

    // MARK: - Thread-safe state

    /// A name for logs and thread names.
    public let name: String
    let selector: Selector
    /// `pthread_self()` of the thread running the loop, 0 when it is not running.
    private let runningThread = Atomic<UInt>(0)
    /// Set while the loop may be blocked in epoll_wait: remote producers then write the eventfd.
    private let sleeping = Atomic<Bool>(false)
    /// Whether `remote` holds items (read without the lock on every pass).
    private let remotePending = Atomic<Bool>(false)
    private let remote = Mutex<RemoteQueue>(RemoteQueue())
    private let closedFlag = Atomic<Bool>(false)
    /// The logger for loop diagnostics and the default exception handler.
    public let logger: Logger
    /// The loop as a task executor for `Task(executorPreference:)` and
    /// `withTaskExecutorPreference`: steps of such tasks run on the loop's thread. Prefer it to
    /// passing the loop itself, which works too but runs each step isolated to the loop as a
    /// serial executor and costs extra passes (see ``LoopTaskExecutor``).
    public let taskExecutor = LoopTaskExecutor()

    private struct RemoteQueue: ~Copyable {
        var items: [ReadyItem] = []
        var closed = false
    }

    // MARK: - On the loop only

    // Loop-confined and never accessed overlappingly: skip the runtime's exclusivity checks,
    // which cost ~15% of a task switch (measured with callgrind).
    @exclusivity(unchecked) var ready = Deque<ReadyItem>()
    @exclusivity(unchecked) private var remoteSpare: [ReadyItem] = []
    @exclusivity(unchecked) private var timers = Heap<TimerEntry>()
    private var cancelledTimers = 0
    private var timerSequence: UInt64 = 0
    @exclusivity(unchecked) private var registrations: [Registration] = []
    private var registrationCount = 0
    private var nextGeneration: UInt32 = 1
    private var ticksWithoutPoll = 0
    private var stopping = false
    private var exceptionHandler: ((EventLoop, ExceptionContext) -> Void)?
    /// Tasks created by ``createTask(name:_:)`` that have not finished (kept alive here).
    @usableFromInline var liveTasks = LiveTaskTable()
    @usableFromInline var taskCounter = 0
    var signals: SignalState?
    /// The buffer every socket transport of this loop reads into (handed to protocols as a
    /// borrowed view), and an iovec array for writev; allocated on first use.
    private var readBufferStorage: UnsafeMutableRawBufferPointer?
    private var iovecStorage: UnsafeMutablePointer<iovec>?
    private var datagramBatchStorage: DatagramBatch?
    static let readBufferSize = 256 * 1024
    /// The buffer TLS connections decrypt into (one record's plaintext at most).
    private var tlsReadBufferStorage: UnsafeMutableRawBufferPointer?
    static let tlsReadBufferSize = 16 * 1024
    /// A TLS connection is delivering from ``tlsReadBuffer`` (TLS over TLS takes its own).
    var tlsReadBufferInUse = false
    /// See ``tlsIdleBuffers`` (TLS/TLSIdleBuffers.swift).
    var tlsIdleBuffersStorage: TLSIdleBuffers?
    var defaultExecutorStorage: ThreadPoolExecutor?
    var defaultExecutorShutDown = false
    /// Debug mode: slow callbacks are logged and loop-bound calls from foreign threads trap.
    public var debug: Bool

    struct Registration {
        var generation: UInt32 = 0
        var interest: IOInterest = []
        var reader: Handle?
        var writer: Handle?
    }

    /// Creates an event loop. It runs on whichever thread calls ``runForever()`` or
    /// ``runUntilComplete(_:)-(Future<T>)``.
    ///
    /// - Parameters:
    ///   - name: A name for logs.
    ///   - debug: Debug mode; defaults to whether `ASYNCIO_DEBUG` is set to a non-empty value
    ///     other than `0`.
    /// - Throws: ``IOError`` if epoll or the eventfd cannot be created (e.g. EMFILE).
    public init(name: String = "asyncio-loop", debug: Bool? = nil) throws(IOError) {
        self.name = name
        self.selector = try Selector()
        self.logger = Logger(label: "swift-asyncio.\(name)")
        if let debug {
            self.debug = debug
        } else if let value = getenv("ASYNCIO_DEBUG").map({ String(cString: $0) }) {
            self.debug = !value.isEmpty && value != "0"
        } else {
            self.debug = false
        }
        taskExecutor.loop = self
    }

    deinit {
        if !closedFlag.load(ordering: .relaxed) {
            releaseResources()
        }
        readBufferStorage?.deallocate()
        iovecStorage?.deallocate()
        tlsReadBufferStorage?.deallocate()
    }

    /// The loop's shared read buffer (loop-bound; valid for the loop's lifetime).
    var readBuffer: UnsafeMutableRawBufferPointer {
        if let buffer = readBufferStorage { return buffer }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.readBufferSize, alignment: 16)
        readBufferStorage = buffer
        return buffer
    }

    /// The loop's shared TLS plaintext buffer (loop-bound; see ``tlsReadBufferInUse``).
    var tlsReadBuffer: UnsafeMutableRawBufferPointer {
        if let buffer = tlsReadBufferStorage { return buffer }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.tlsReadBufferSize, alignment: 16)
        tlsReadBufferStorage = buffer
        return buffer
    }

    /// The loop's datagram batch (recvmmsg/sendmmsg slots), allocated on first use.
    var datagramBatch: DatagramBatch {
        if let batch = datagramBatchStorage { return batch }
        let batch = DatagramBatch()
        datagramBatchStorage = batch
        return batch
    }

    /// The loop's shared iovec array of 64 entries for writev (loop-bound).
    var iovecs: UnsafeMutablePointer<iovec> {
        if let iovecs = iovecStorage { return iovecs }
        let iovecs = UnsafeMutablePointer<iovec>.allocate(capacity: 64)
        iovecs.initialize(repeating: iovec(), count: 64)
        iovecStorage = iovecs
        return iovecs
    }

    // MARK: - Thread checks

    /// Whether the calling thread is the one running this loop. Thread-safe.
    @inline(__always)
    public var inLoopThread: Bool {
        runningThread.load(ordering: .relaxed) == UInt(pthread_self())
    }

    /// Whether a loop-bound call is allowed here: on the loop's thread, or while it is not running.
    @inline(__always)
    var mayTouchLoopState: Bool {
        let thread = runningThread.load(ordering: .relaxed)
        return thread == 0 || thread == UInt(pthread_self())
    }

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

    /// The loop running on the current thread, if any. Thread-safe.
    public static var current: EventLoop? {
        guard let raw = casyncio_current_loop() else { return nil }
        return Unmanaged<EventLoop>.fromOpaque(raw).takeUnretainedValue()
    }

    /// Whether the loop is running. Thread-safe.
    public var isRunning: Bool { runningThread.load(ordering: .relaxed) != 0 }

    /// Whether ``close()`` was called. Thread-safe.
    public var isClosed: Bool { closedFlag.load(ordering: .relaxed) }

    /// The loop's clock: monotonic seconds (CLOCK_MONOTONIC), as asyncio's `loop.time()`.
    /// Thread-safe.
    public func time() -> Double {
        Double(monotonicNanoseconds()) / 1e9
    }

    // MARK: - Scheduling

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
        scheduleTimer(deadline: monotonicNanoseconds() &+ delay.clampedNanoseconds, callback)
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
        handle.inTimerHeap = true
        timerSequence &+= 1
        timers.insert(TimerEntry(deadline: handle.deadline, sequence: timerSequence, handle: handle))
        return handle
    }

    /// Called by a timer handle when it is cancelled while still in the heap.
    func timerCancelled() {
        cancelledTimers += 1
    }

    /// Schedules `callback` from any thread and wakes the loop if it is waiting in epoll.
    ///
    /// - Throws: ``EventLoopError/Code-swift.struct/closed`` once the loop was closed.
    /// - Note: Thread-safe.
    @discardableResult
    public func callSoonThreadSafe(_ callback: @escaping @Sendable () throws -> Void) throws(EventLoopError) -> Handle {
        let handle = Handle(loop: nil, callback)
        if inLoopThread {
            ready.append(.handle(handle))
        } else if !enqueueRemote(.handle(handle)) {
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
        return enqueueRemote(.closure(body))
    }

    /// Appends an internal closure to the ready queue (loop-bound). Dropped if closed.
    @usableFromInline
    func schedule(_ body: @escaping () -> Void) {
        ready.append(.closure(body))
    }

    /// Hands an item to the loop from another thread. Returns false if the loop is closed.
    func enqueueRemote(_ item: ReadyItem) -> Bool {
        let accepted = remote.withLock { queue -> Bool in
            if queue.closed { return false }
            queue.items.append(item)
            remotePending.store(true, ordering: .sequentiallyConsistent)
            return true
        }
        guard accepted else { return false }
        // Dekker-style handshake with runOnce: either the loop sees `remotePending` before it
        // blocks, or we see `sleeping` and wake it. Only one producer pays the write.
        if sleeping.exchange(false, ordering: .sequentiallyConsistent) {
            selector.wakeUp()
        }
        return true
    }

    private func drainRemote() {
        remote.withLock { queue in
            swap(&queue.items, &remoteSpare)
            remotePending.store(false, ordering: .relaxed)
        }
        ready.append(contentsOf: remoteSpare)
        remoteSpare.removeAll(keepingCapacity: true)
    }

    // MARK: - File descriptors

    /// Calls `callback` on the loop whenever `fd` is readable (asyncio's `add_reader`),
    /// replacing an earlier reader of that fd.
    ///
    /// - Throws: ``IOError`` from epoll, e.g. EPERM for a regular file, EBADF for a closed fd;
    ///   ``EventLoopError`` if the loop is closed.
    /// - Important: Loop-bound. Remove the reader before closing the fd.
    @discardableResult
    public func addReader(_ fd: Int32, _ callback: @escaping () throws -> Void) throws -> Handle {
        try addWatcher(fd, write: false, callback)
    }

    /// Calls `callback` on the loop whenever `fd` is writable (asyncio's `add_writer`),
    /// replacing an earlier writer of that fd.
    ///
    /// - Throws: as ``addReader(_:_:)``.
    /// - Important: Loop-bound. Remove the writer before closing the fd.
    @discardableResult
    public func addWriter(_ fd: Int32, _ callback: @escaping () throws -> Void) throws -> Handle {
        try addWatcher(fd, write: true, callback)
    }

    /// Stops watching `fd` for readability. Returns whether a reader was registered.
    /// - Important: Loop-bound.
    @discardableResult
    public func removeReader(_ fd: Int32) -> Bool {
        removeWatcher(fd, write: false)
    }

    /// Stops watching `fd` for writability. Returns whether a writer was registered.
    /// - Important: Loop-bound.
    @discardableResult
    public func removeWriter(_ fd: Int32) -> Bool {
        removeWatcher(fd, write: true)
    }

    private func addWatcher(_ fd: Int32, write: Bool, _ callback: @escaping () throws -> Void) throws -> Handle {
        assertInLoop()
        if isClosed { throw EventLoopError.closedError }
        guard fd >= 0 else { throw IOError(errno: EBADF, syscall: "epoll_ctl") }
        let index = Int(fd)
        if index >= registrations.count {
            registrations.append(contentsOf: repeatElement(Registration(), count: index + 1 - registrations.count))
        }
        let handle = Handle(loop: self, repeats: true, callback)
        var registration = registrations[index]
        let bit: IOInterest = write ? .write : .read
        if registration.interest.isEmpty {
            let generation = nextGeneration
            nextGeneration &+= 1
            if nextGeneration == 0 { nextGeneration = 1 }
            try selector.add(fd: fd, interest: bit, token: Self.token(fd: fd, generation: generation))
            registration = Registration(generation: generation, interest: bit)
            registrationCount += 1
        } else if !registration.interest.contains(bit) {
            let interest = registration.interest.union(bit)
            let modified = Result { () throws(IOError) in
                try selector.modify(fd: fd, interest: interest, token: Self.token(fd: fd, generation: registration.generation))
            }
            switch modified {
            case .success:
                registration.interest = interest
            case .failure(let error) where error.errno != ENOENT:
                throw error
            case .failure:
                // The fd was closed (and its number reused) without removing its watchers:
                // the kernel forgot it, so start a fresh registration.
                registration.reader?.cancel()
                registration.writer?.cancel()
                let generation = nextGeneration
                nextGeneration &+= 1
                if nextGeneration == 0 { nextGeneration = 1 }
                try selector.add(fd: fd, interest: bit, token: Self.token(fd: fd, generation: generation))
                registration = Registration(generation: generation, interest: bit)
            }
        }
        if write {
            registration.writer?.cancel()
            registration.writer = handle
        } else {
            registration.reader?.cancel()
            registration.reader = handle
        }
        registrations[index] = registration
        return handle
    }

    private func removeWatcher(_ fd: Int32, write: Bool) -> Bool {
        assertInLoop()
        let index = Int(fd)
        guard fd >= 0, index < registrations.count else { return false }
        var registration = registrations[index]
        let bit: IOInterest = write ? .write : .read
        guard registration.interest.contains(bit) else { return false }
        if write {
            registration.writer?.cancel()
            registration.writer = nil
        } else {
            registration.reader?.cancel()
            registration.reader = nil
        }
        registration.interest.remove(bit)
        if registration.interest.isEmpty {
            // EBADF/ENOENT here means the fd was closed before its watcher was removed:
            // the kernel already dropped it from the epoll set.
            try? selector.remove(fd: fd)
            registration = Registration()
            registrationCount -= 1
        } else {
            try? selector.modify(
                fd: fd, interest: registration.interest,
                token: Self.token(fd: fd, generation: registration.generation))
        }
        registrations[index] = registration
        return true
    }

    @inline(__always)
    private static func token(fd: Int32, generation: UInt32) -> UInt64 {
        UInt64(generation) << 32 | UInt64(UInt32(bitPattern: fd))
    }

    /// Registers an internal reader that does not count as user I/O (the signal pipe).
    func addInternalReader(_ fd: Int32, _ callback: @escaping () throws -> Void) throws {
        _ = try addWatcher(fd, write: false, callback)
    }

    // MARK: - Running

    /// Runs the loop until ``stop()`` is called (asyncio's `run_forever`).
    ///
    /// - Throws: ``EventLoopError`` if the loop is closed, already running, or another loop
    ///   runs on this thread.
    public func runForever() throws(EventLoopError) {
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

    private func enterRunning() throws(EventLoopError) {
        if isClosed { throw .closedError }
        if runningThread.load(ordering: .relaxed) != 0 {
            throw EventLoopError(.alreadyRunning, "the event loop '\(name)' is already running")
        }
        if casyncio_current_loop() != nil {
            throw EventLoopError(.anotherLoopRunning, "another event loop is already running on this thread")
        }
        runningThread.store(UInt(pthread_self()), ordering: .sequentiallyConsistent)
        casyncio_set_current_loop(Unmanaged.passUnretained(self).toOpaque())
    }

    private func leaveRunning() {
        stopping = false
        casyncio_set_current_loop(nil)
        runningThread.store(0, ordering: .sequentiallyConsistent)
    }

    /// One pass: poll, collect due timers, run what was ready at the start of the pass.
    private func runOnce() {
        if cancelledTimers > 100 && cancelledTimers * 2 > timers.count {
            compactTimers()
        }

        var timeout: Int32
        if !ready.isEmpty || stopping {
            timeout = 0
        } else if let first = timers.min {
            let now = monotonicNanoseconds()
            if first.deadline <= now {
                timeout = 0
            } else {
                // Round up: waking early would only spin; epoll_wait counts milliseconds.
                let millis = (first.deadline - now + 999_999) / 1_000_000
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
            if timeout != 0 {
                sleeping.store(true, ordering: .sequentiallyConsistent)
                if remotePending.load(ordering: .sequentiallyConsistent) {
                    timeout = 0
                }
            }
            _ = selector.wait(timeoutMillis: timeout) { token, events in
                self.dispatch(token: token, events: events)
            }
            sleeping.store(false, ordering: .relaxed)
        } else {
            ticksWithoutPoll += 1
        }

        if remotePending.load(ordering: .acquiring) {
            drainRemote()
        }

        if !timers.isEmpty {
            let now = monotonicNanoseconds()
            while let first = timers.min, first.deadline <= now {
                timers.removeMin()
                let handle = first.handle
                handle.inTimerHeap = false
                if handle.cancelled {
                    cancelledTimers -= 1
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
            job.runSynchronously(on: taskExecutor.asUnownedTaskExecutor())
        case .job(let job):
            job.runSynchronously(isolatedTo: asUnownedSerialExecutor(), taskExecutor: asUnownedTaskExecutor())
        case .closure(let body):
            body()
        case .handle(let handle):
            guard !handle.cancelled, let callback = handle.callback else { return }
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
            logger.warning(
                "Executing \(what) took \(Double(elapsed) / 1e9) seconds",
                metadata: ["loop": "\(name)"])
        }
    }

    private func compactTimers() {
        timers = Heap(timers.unordered.filter { !$0.handle.cancelled })
        cancelledTimers = 0
    }

    /// How many timers are in the heap, cancelled ones included (for tests and diagnostics).
    var scheduledTimerCount: Int { timers.count }

    /// How many timers are scheduled and not cancelled.
    var liveTimerCount: Int { timers.count - cancelledTimers }

    // MARK: - Exception handling

    /// Replaces the exception handler; `nil` restores the default, which logs the context
    /// at error level through ``logger``.
    /// - Important: Loop-bound.
    public func setExceptionHandler(_ handler: ((EventLoop, ExceptionContext) -> Void)?) {
        assertInLoop()
        exceptionHandler = handler
    }

    /// Reports `context` to the exception handler (asyncio's `call_exception_handler`).
    /// An exception handler must not throw; it runs on the loop.
    /// - Important: Loop-bound.
    public func callExceptionHandler(_ context: ExceptionContext) {
        if let exceptionHandler {
            exceptionHandler(self, context)
        } else {
            defaultExceptionHandler(context)
        }
    }

    /// Logs `context` at error level (the default exception handler).
    public func defaultExceptionHandler(_ context: ExceptionContext) {
        var metadata: Logger.Metadata = ["loop": "\(name)"]
        if let error = context.error { metadata["error"] = "\(error)" }
        if let source = context.source { metadata["source"] = "\(source)" }
        logger.error("\(context.message)", metadata: metadata)
    }

    // MARK: - Closing

    /// Closes the loop: drops pending callbacks, removes signal handlers, closes every fd the
    /// loop opened (epoll, eventfd, signal pipe) and shuts the default executor down without
    /// waiting. Closing twice is harmless. Later calls to run the loop throw
    /// ``EventLoopError/Code-swift.struct/closed``.
    ///
    /// - Throws: ``EventLoopError/Code-swift.struct/alreadyRunning`` if the loop is running.
    /// - Important: Loop-bound.
    public func close() throws(EventLoopError) {
        if isRunning {
            throw EventLoopError(.alreadyRunning, "cannot close a running event loop")
        }
        if isClosed { return }
        releaseResources()
    }

    private func releaseResources() {
        closedFlag.store(true, ordering: .sequentiallyConsistent)
        let dropped = remote.withLock { queue -> [ReadyItem] in
            queue.closed = true
            defer { queue.items = [] }
            return queue.items
        }
        removeAllSignalHandlers()
        selector.close()
        var pendingJobs = 0
        for item in ready {
            if item.isJob { pendingJobs += 1 }
        }
        for item in dropped where item.isJob {
            pendingJobs += 1
        }
        if pendingJobs > 0 {
            logger.warning(
                "EventLoop closed with \(pendingJobs) task step(s) pending; those tasks never finish",
                metadata: ["loop": "\(name)"])
        }
        ready.removeAll()
        timers = Heap()
        tlsIdleBuffersStorage = nil   // it holds TLS connections: no cycle through the loop
        registrations = []
        registrationCount = 0
        liveTasks = LiveTaskTable()
        defaultExecutorStorage?.shutdown(wait: false)
        defaultExecutorStorage = nil
    }
}

extension EventLoop: CustomStringConvertible {
    public var description: String {
        "EventLoop(\(name), running: \(isRunning), closed: \(isClosed), debug: \(debug))"
    }
}

/// The tasks a loop keeps alive until they finish: a slot table with a free list, so adding
/// and removing a task costs no hashing (task create+await is a hot path).
@usableFromInline
struct LiveTaskTable {
    @usableFromInline var slots: [(any AnyLoopTask)?] = []
    @usableFromInline var free: [Int] = []
    @usableFromInline var count = 0

    @usableFromInline init() {}

    /// Stores `task` and returns its slot.
    @inlinable
    mutating func insert(_ task: any AnyLoopTask) -> Int {
        count += 1
        if let slot = free.popLast() {
            slots[slot] = task
            return slot
        }
        slots.append(task)
        return slots.count - 1
    }

    /// Forgets the task in `slot`.
    @inlinable
    mutating func remove(_ slot: Int) {
        guard slot >= 0, slot < slots.count, slots[slot] != nil else { return }
        slots[slot] = nil
        free.append(slot)
        count -= 1
    }

    /// The live tasks, in no particular order.
    var all: [any AnyLoopTask] { slots.compactMap { $0 } }

    var isEmpty: Bool { count == 0 }
}
