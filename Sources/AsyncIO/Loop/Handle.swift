//===----------------------------------------------------------------------===//
// swift-asyncio — Handle: a scheduled callback that can be cancelled.
//===----------------------------------------------------------------------===//

import Synchronization

/// A callback scheduled on an ``EventLoop`` by `callSoon`, `callLater`, `callAt`,
/// `callSoonThreadSafe`, `addReader`/`addWriter` or `addSignalHandler`
/// (asyncio's `Handle` and `TimerHandle`).
///
/// Cancelling a handle before its callback runs guarantees it never runs. A cancelled timer
/// stays in the loop's timers until it is due or until cancelled timers make up more than
/// half of them, when they are compacted (lazy cancellation, as asyncio does).
///
/// A handle does not keep its loop alive: a loop that is released without being closed still
/// cleans up, whatever timers or watchers it had.
///
/// - Important: Handles from ``EventLoop/callSoonThreadSafe(_:)`` may be cancelled from any
///   thread. Every other handle is loop-bound: call ``cancel()`` on the loop's thread (or while
///   the loop is not running), e.g. through `loop.callSoonThreadSafe { handle.cancel() }`.
public final class Handle: @unchecked Sendable {
    // @unchecked Sendable: a loop-bound handle is only touched on its loop (checked in debug
    // builds); a thread-safe handle's cancellation goes through the atomic `claim`.

    /// The callback; released once it has run or been cancelled (on the loop).
    @exclusivity(unchecked) var callback: (() throws -> Void)?
    /// Monotonic deadline in nanoseconds for timers, 0 for everything else.
    let deadline: UInt64
    /// The loop's inbox, for the thread check in ``cancel()``; `nil` for one-shot callbacks,
    /// which saves the reference per callSoon.
    let inbox: LoopInbox?
    /// Timers only: the loop's count of cancelled timers it still holds, which a cancelled timer
    /// increments.
    ///
    /// Neither reference is to the loop itself: a handle in the loop's timers or fd table
    /// must not keep the loop alive, and a weak reference would give the loop a side table,
    /// which sends every retain and release of the loop down the runtime's slow path
    /// (measured: 130 instructions per message of a streams echo).
    let cancelledTimers: CancelledTimerCount?
    /// Whether the handle was cancelled (loop-bound handles).
    @exclusivity(unchecked) var cancelled = false
    /// Whether a timer is still among the loop's timers (for the cancelled-timer count).
    var inTimerQueue = false
    /// Whether the callback is kept after running (reader, writer and signal callbacks run
    /// many times).
    let repeats: Bool
    /// Whether any thread may cancel the handle (made by `callSoonThreadSafe`).
    let threadSafe: Bool
    /// For thread-safe handles: who got there first, the loop starting the callback or a
    /// thread cancelling it.
    let claim = Atomic<UInt8>(0)

    private static let unclaimed: UInt8 = 0
    private static let started: UInt8 = 1
    private static let cancelledByThread: UInt8 = 2

    init(loop: EventLoop?, deadline: UInt64 = 0, repeats: Bool = false, _ callback: @escaping () throws -> Void) {
        self.inbox = loop?.inbox
        self.cancelledTimers = deadline == 0 ? nil : loop?.cancelledTimers
        self.deadline = deadline
        self.repeats = repeats
        self.callback = callback
        self.threadSafe = false
    }

    /// A handle that any thread may cancel (for ``EventLoop/callSoonThreadSafe(_:)``).
    init(threadSafe callback: @escaping @Sendable () throws -> Void) {
        self.inbox = nil
        self.cancelledTimers = nil
        self.deadline = 0
        self.repeats = false
        self.callback = callback
        self.threadSafe = true
    }

    /// Cancels the callback: if it has not started yet, it never will. Cancelling twice is
    /// harmless.
    ///
    /// - Note: Loop-bound, except for handles returned by ``EventLoop/callSoonThreadSafe(_:)``,
    ///   which any thread may cancel: once `cancel()` returns, the callback either ran or
    ///   started already, or never runs.
    public func cancel() {
        if threadSafe {
            // The loop releases the callback when it meets the cancelled handle.
            _ = claim.compareExchange(
                expected: Self.unclaimed, desired: Self.cancelledByThread, ordering: .acquiringAndReleasing)
            return
        }
        if let inbox {
            // assert, not precondition: checked in debug builds only (a release build would
            // otherwise warn that the message is never built).
            assert(
                inbox.mayTouchLoopState,
                "EventLoop '\(inbox.name)': Handle.cancel() called from a foreign thread; use callSoonThreadSafe")
        }
        if cancelled { return }
        cancelled = true
        callback = nil
        if inTimerQueue {
            cancelledTimers?.count += 1
        }
    }

    /// Called by the loop before it runs the callback: whether it may (not cancelled).
    /// Loop thread only.
    @inline(__always)
    func start() -> Bool {
        if cancelled { return false }
        guard threadSafe else { return true }
        let (won, _) = claim.compareExchange(
            expected: Self.unclaimed, desired: Self.started, ordering: .acquiringAndReleasing)
        if !won {
            cancelled = true
            callback = nil
        }
        return won
    }

    /// For a thread-safe handle: called (on the closing thread) if the loop closes before the
    /// callback could run. Set before the handle is queued.
    var onDrop: (@Sendable () -> Void)?

    /// The loop closed with this handle still queued, among its timers or watching an fd: a
    /// thread-safe handle that was neither started nor cancelled becomes cancelled and runs
    /// its `onDrop`; any other lets go of its callback (which may hold an object that holds
    /// this handle: only running or cancelling the callback broke that cycle) without
    /// becoming cancelled. On the closing thread.
    func dropped() {
        guard threadSafe else {
            callback = nil
            inTimerQueue = false
            return
        }
        let (won, _) = claim.compareExchange(
            expected: Self.unclaimed, desired: Self.cancelledByThread, ordering: .acquiringAndReleasing)
        if won { onDrop?() }
        onDrop = nil
        callback = nil
    }

    /// Whether ``cancel()`` was called (and, for a thread-safe handle, won over the start).
    /// Thread-safe for handles from `callSoonThreadSafe`; loop-bound for the others.
    public var isCancelled: Bool {
        if threadSafe { return claim.load(ordering: .acquiring) == Self.cancelledByThread }
        return cancelled
    }

    /// For a timer, the loop time (see ``EventLoop/time()``) at which it is due; `nil` for a
    /// callback scheduled with `callSoon`.
    public var when: Double? {
        deadline == 0 ? nil : Double(deadline) / 1e9
    }
}

/// How many cancelled timers a loop still holds (lazy cancellation): shared by the loop and its
/// timer handles, so a handle need not reference the loop. Loop-confined.
final class CancelledTimerCount {
    var count = 0
}
