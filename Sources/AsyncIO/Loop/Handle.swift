//===----------------------------------------------------------------------===//
// swift-asyncio — Handle: a scheduled callback that can be cancelled.
//===----------------------------------------------------------------------===//

/// A callback scheduled on an ``EventLoop`` by `callSoon`, `callLater`, `callAt`,
/// `callSoonThreadSafe`, `addReader`/`addWriter` or `addSignalHandler`
/// (asyncio's `Handle` and `TimerHandle`).
///
/// Cancelling a handle before its callback runs guarantees it never runs. A cancelled timer
/// stays in the loop's timer heap until it is due or until cancelled timers make up more than
/// half of the heap, when the heap is compacted (lazy cancellation, as asyncio does).
///
/// - Important: Loop-bound: ``cancel()`` must be called on the loop's thread (or while the
///   loop is not running). Use `loop.callSoonThreadSafe { handle.cancel() }` elsewhere.
public final class Handle: @unchecked Sendable {
    /// The callback; released once it has run or been cancelled.
    @exclusivity(unchecked) var callback: (() throws -> Void)?
    /// Monotonic deadline in nanoseconds for timers, 0 for everything else.
    let deadline: UInt64
    /// The loop, for timers (which must tell it when they are cancelled) and repeating
    /// handles; `nil` for one-shot callbacks, which saves a retain/release per callSoon.
    let loop: EventLoop?
    /// Whether the handle was cancelled.
    @exclusivity(unchecked) var cancelled = false
    /// Whether a timer is still in the loop's heap (for the cancelled-timer count).
    var inTimerHeap = false
    /// Whether the callback is kept after running (reader, writer and signal callbacks run
    /// many times).
    let repeats: Bool

    init(loop: EventLoop?, deadline: UInt64 = 0, repeats: Bool = false, _ callback: @escaping () throws -> Void) {
        self.loop = loop
        self.deadline = deadline
        self.repeats = repeats
        self.callback = callback
    }

    /// Cancels the callback: if it has not run yet, it never will. Cancelling twice is harmless.
    ///
    /// - Note: Must be called on the loop's thread.
    public func cancel() {
        loop?.assertInLoop()
        if cancelled { return }
        cancelled = true
        callback = nil
        if inTimerHeap {
            loop?.timerCancelled()
        }
    }

    /// Whether ``cancel()`` was called.
    public var isCancelled: Bool { cancelled }

    /// For a timer, the loop time (see ``EventLoop/time()``) at which it is due; `nil` for a
    /// callback scheduled with `callSoon`.
    public var when: Double? {
        deadline == 0 ? nil : Double(deadline) / 1e9
    }
}

@available(*, unavailable)
extension TimerEntry: Sendable {}

/// An entry of the loop's timer heap: ordered by deadline, ties by scheduling order.
struct TimerEntry: Comparable {
    let deadline: UInt64
    let sequence: UInt64
    let handle: Handle

    static func < (lhs: TimerEntry, rhs: TimerEntry) -> Bool {
        lhs.deadline != rhs.deadline ? lhs.deadline < rhs.deadline : lhs.sequence < rhs.sequence
    }

    static func == (lhs: TimerEntry, rhs: TimerEntry) -> Bool {
        lhs.deadline == rhs.deadline && lhs.sequence == rhs.sequence
    }
}
