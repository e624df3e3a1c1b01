//===----------------------------------------------------------------------===//
// swift-asyncio — timeout scopes: asyncio.timeout / asyncio.timeout_at.
//===----------------------------------------------------------------------===//

/// The handle of a running ``timeout(after:_:)`` scope (asyncio's `Timeout`): read or move
/// its deadline, and see whether it expired.
///
/// ```swift
/// let reply = try await timeout(after: .seconds(5)) { scope in
///     let header = try await reader.readLine()
///     try scope.reschedule(scope.deadline.map { $0 + 5 })   // five more seconds for the body
///     return try await reader.readExactly(length(of: header))
/// }
/// ```
///
/// - Important: Loop-bound: use it on the scope's loop (from the body, or from other tasks and
///   callbacks on that loop). It stays readable after the scope ended.
public final class TimeoutScope: ScopedChildOwner, @unchecked Sendable {
    // @unchecked Sendable: the body may hand the scope to other tasks of the loop; its state
    // is read and written on the loop's thread only (every entry asserts it in debug builds).

    /// Where the scope is in its life.
    private enum Phase {
        /// The body runs; the deadline may be moved.
        case active
        /// The deadline passed and the body was cancelled; the body has not ended yet.
        case expiring
        /// The body ended; `expired` says whether the deadline had passed by then.
        case finished(expired: Bool)
    }

    /// The loop whose clock the deadline is on and whose timer enforces it.
    public let loop: EventLoop
    private var phase = Phase.active
    private var when: Double?
    private var timer: Handle?
    /// The child task running the body while it runs (see ``timeout(after:_:)``).
    private var body: UnsafeCurrentTask?

    @usableFromInline
    init(loop: EventLoop, deadline: Double?) {
        self.loop = loop
        self.when = deadline
    }

    /// The deadline in loop time (see ``EventLoop/time()``), or `nil` if there is none
    /// (asyncio's `when()`).
    /// - Important: Loop-bound.
    public var deadline: Double? {
        loop.assertInLoop()
        return when
    }

    /// Whether the deadline passed while the body ran (the body was then cancelled). It stays
    /// true after the scope ended, also when the body finished anyway.
    /// - Important: Loop-bound.
    public var expired: Bool {
        loop.assertInLoop()
        switch phase {
        case .active: return false
        case .expiring: return true
        case .finished(let expired): return expired
        }
    }

    /// Moves the deadline to loop time `deadline`, or removes it with `nil` (asyncio's
    /// `reschedule`). A deadline in the past expires the scope on the loop's next pass.
    /// - Throws: ``InvalidStateError`` once the scope expired or ended.
    /// - Important: Loop-bound.
    public func reschedule(_ deadline: Double?) throws(InvalidStateError) {
        loop.assertInLoop()
        switch phase {
        case .active: break
        case .expiring: throw InvalidStateError("cannot reschedule a timeout that has expired")
        case .finished: throw InvalidStateError("cannot reschedule a timeout whose scope has ended")
        }
        timer?.cancel()
        timer = nil
        when = deadline
        arm()
    }

    /// Starts the timer for the current deadline, if there is one.
    private func arm() {
        guard let when else { return }
        // A strong capture: the closure context is the scope itself (no box to allocate). The
        // cycle ends when the timer fires or is cancelled (a cancelled handle drops its callback).
        timer = loop.callAt(when) { [self] in expire() }
    }

    /// The timer fired: cancel the body (only the body: the caller's task is untouched).
    private func expire() {
        guard case .active = phase else { return }
        phase = .expiring
        timer = nil
        body?.cancel()
    }

    /// Runs `body` in a child task with this scope's deadline; see ``timeout(after:_:)``. The
    /// body keeps its value itself (the generic part is inlined into the caller).
    @usableFromInline
    func run(_ body: () async throws -> Void) async throws {
        arm()
        let failure = await ScopedChild.run(loop: loop, scope: self, body)
        timer?.cancel()
        timer = nil
        let fired: Bool
        if case .expiring = phase { fired = true } else { fired = false }
        phase = .finished(expired: fired)
        // No failure: the body finished before the cancellation reached it (or despite it).
        guard let failure else { return }
        // The caller's own cancellation wins over the deadline, as in asyncio.
        if fired, failure is CancellationError, !Task.isCancelled { throw TimeoutError() }
        throw failure
    }

    func childStarted(_ task: UnsafeCurrentTask) {
        // Expired before the body's first step: cancel it now.
        if case .expiring = phase { task.cancel() } else { body = task }
    }

    func childEnded() {
        body = nil
    }

    /// Runs `body` with this scope, returning its value (the generic half of ``run(_:)``).
    @inlinable
    func value<T>(of body: (TimeoutScope) async throws -> T) async throws -> T {
        var value: T?
        try await run { value = try await body(self) }
        guard let value else { preconditionFailure("timeout: the body ended with neither a value nor an error") }
        return value
    }
}

/// Runs `body` with a deadline `delay` from now (asyncio's `async with asyncio.timeout(delay)`);
/// once it passes, the body is cancelled and the scope throws ``TimeoutError``.
///
/// ```swift
/// do {
///     try await timeout(after: .seconds(2)) { _ in
///         try await sleep(for: .seconds(10))
///     }
/// } catch is TimeoutError {
///     print("too slow")
/// }
/// ```
///
/// Rules (asyncio's):
/// - At the deadline the body is cancelled. If the body then ends with `CancellationError`,
///   the scope throws ``TimeoutError``; any other outcome (a value, another error) is passed
///   on as it is. A body that finished before the timer fired returns normally, even if the
///   timer fired before the caller resumed.
/// - Nothing else is cancelled: not the caller, not tasks the body started.
/// - If the caller itself is cancelled, the body is cancelled too and `CancellationError`
///   propagates, never ``TimeoutError``, even if the deadline passed as well (a body that
///   returns a value despite the cancellation still returns it; the caller's task stays
///   cancelled).
/// - Nested scopes: the one whose deadline passed throws ``TimeoutError``; an outer scope
///   sees that error like any other error of its body.
///
/// How it works, and what it costs: Swift cannot take a task's cancellation back (asyncio's
/// `Task.uncancel()`), so the body does not run in the caller's task but in a structured child
/// task (an `async let`) on the same loop, which the scope can cancel alone; the caller waits
/// for it. The cost is that task (allocated from the caller's task allocator, a pass of the
/// loop to start it and one to resume the caller) and one loop timer, cancelled when the body
/// ends. Every step of the body runs on the loop's
/// thread; task-locals are the caller's, and ``LoopTask/current`` is the caller's task.
///
/// - Parameters:
///   - delay: How long the body may run; `nil` sets no deadline (add one later with
///     ``TimeoutScope/reschedule(_:)``). Zero or negative expires at the first suspension.
///   - body: The work, given the scope's handle.
/// - Throws: ``TimeoutError`` as above; the body's error; `CancellationError`;
///   ``EventLoopError/Code-swift.struct/noRunningLoop`` if the caller does not run on a loop.
/// - Important: Loop-bound: call from a task running on an event loop.
@inlinable
public func timeout<T>(
    after delay: Duration?,
    _ body: (TimeoutScope) async throws -> T
) async throws -> T {
    guard let loop = EventLoop.current else {
        throw EventLoopError(.noRunningLoop, "timeout(after:_:) needs a task running on an event loop")
    }
    let deadline = delay.map { loop.time() + $0.secondsAsDouble }
    return try await TimeoutScope(loop: loop, deadline: deadline).value(of: body)
}

/// Runs `body` with a deadline at loop time `deadline` (see ``EventLoop/time()``), asyncio's
/// `asyncio.timeout_at`. Otherwise the same as ``timeout(after:_:)``.
///
/// - Parameters:
///   - deadline: The loop time at which the body is cancelled; `nil` sets no deadline. A
///     time in the past expires at the body's first suspension.
///   - body: The work, given the scope's handle.
/// - Throws: as ``timeout(after:_:)``.
/// - Important: Loop-bound: call from a task running on an event loop.
@inlinable
public func timeout<T>(
    at deadline: Double?,
    _ body: (TimeoutScope) async throws -> T
) async throws -> T {
    guard let loop = EventLoop.current else {
        throw EventLoopError(.noRunningLoop, "timeout(at:_:) needs a task running on an event loop")
    }
    return try await TimeoutScope(loop: loop, deadline: deadline).value(of: body)
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    @usableFromInline
    var secondsAsDouble: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) * 1e-18
    }
}
