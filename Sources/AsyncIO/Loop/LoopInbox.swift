//===----------------------------------------------------------------------===//
// swift-asyncio — LoopInbox: the thread-safe face of an event loop.
//===----------------------------------------------------------------------===//

import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What another thread may hand to a loop: the cross-thread half of the ready queue.
///
/// Everything here is `Sendable` by construction; the loop turns each item into a
/// ``ReadyItem`` when it drains the inbox (``LoopInbox/drain(into:)``).
enum RemoteItem: Sendable {
    /// A callback from `callSoonThreadSafe`: its handle is a thread-safe one (see
    /// ``Handle/cancel()``).
    case handle(Handle)
    /// A Swift job isolated to the loop as a serial executor.
    case job(UnownedJob)
    /// A step of a task that prefers the loop as its task executor.
    case taskJob(UnownedJob)
    /// An internal closure (an executor result, a hop to the loop).
    case closure(@Sendable () -> Void)
}

/// The part of an ``EventLoop`` that any thread may touch: which thread runs the loop, the
/// queue of items handed over from other threads, the eventfd that wakes a sleeping loop,
/// and whether the loop is closed.
///
/// It is a separate object so that it can outlive the loop: the loop's task executor
/// (``LoopTaskExecutor``) is retained by every Swift task that prefers it, possibly after the
/// loop itself was closed and freed. Such a task's later jobs reach the inbox, find it closed,
/// and are refused (logged, never run) instead of touching freed memory.
final class LoopInbox: @unchecked Sendable {
    // @unchecked Sendable: `items` is guarded by `lock`; the rest are atomics or constants.

    /// `pthread_self()` of the thread running the loop, 0 when it is not running.
    let runningThread = Atomic<UInt>(0)
    /// For a loop of an ``EventLoopGroup``: its thread, from creation until the thread ends
    /// (0 for a free-standing loop). Loop-bound calls from any other thread are then wrong
    /// even before the loop started running.
    let boundThread = Atomic<UInt>(0)
    /// Set while the loop may be blocked in epoll_wait: producers then write the eventfd.
    let sleeping = Atomic<Bool>(false)
    /// Whether `items` holds items (read without the lock on every pass).
    let pending = Atomic<Bool>(false)
    /// Whether the loop was closed; set once, under `lock`.
    let closed = Atomic<Bool>(false)
    /// Guards `items`. A pthread mutex rather than Synchronization's Mutex: ThreadSanitizer
    /// sees a pthread mutex's happens-before edges, and not those of the stdlib's futex-based
    /// Mutex (it reported every hand-over as a race).
    private let lock = ConditionLock()
    private var items: [RemoteItem] = []
    /// The selector's eventfd. Written only under `lock` while the inbox is open, so
    /// a wake-up can never hit the fd after ``close(_:)`` closed it (and its number was reused).
    private let wakeFD: Int32
    /// The loop's name, for the message about refused jobs.
    let name: String

    init(wakeFD: Int32, name: String) {
        self.wakeFD = wakeFD
        self.name = name
    }

    /// Whether the calling thread is the one running the loop.
    @inline(__always)
    var inLoopThread: Bool {
        runningThread.load(ordering: .relaxed) == UInt(pthread_self())
    }

    /// Whether a loop-bound call is allowed on this thread: on the thread running the loop;
    /// for a loop bound to a thread (a group's), on that thread only; otherwise, while the
    /// loop is not running, on any thread (to set it up or tear it down).
    var mayTouchLoopState: Bool {
        let me = UInt(pthread_self())
        let running = runningThread.load(ordering: .acquiring)
        if running != 0 { return running == me }
        let bound = boundThread.load(ordering: .acquiring)
        return bound == 0 || bound == me
    }

    /// Queues `item` for the loop and wakes it if it sleeps. Returns false (and drops
    /// nothing: the caller still owns `item`) once the loop is closed. Thread-safe.
    func enqueue(_ item: RemoteItem) -> Bool {
        lock.withLock { () -> Bool in
            if closed.load(ordering: .relaxed) { return false }
            items.append(item)
            pending.store(true, ordering: .sequentiallyConsistent)
            // Dekker-style handshake with the loop's poll: either the loop sees `pending`
            // before it blocks, or we see `sleeping` and wake it. Only one producer pays the
            // write. Inside the lock, so close() cannot close the eventfd under us.
            if sleeping.exchange(false, ordering: .sequentiallyConsistent) {
                var one: UInt64 = 1
                // EAGAIN means the counter is already non-zero: the loop wakes anyway.
                _ = write(wakeFD, &one, 8)
            }
            return true
        }
    }

    /// Moves the queued items into `spare` (which must be empty). Loop thread only.
    func drain(into spare: inout [RemoteItem]) {
        lock.withLock {
            swap(&items, &spare)
            pending.store(false, ordering: .relaxed)
        }
    }

    /// Refuses every later item and returns those still queued. Called once, by the loop's
    /// close, before it closes the eventfd.
    func close() -> [RemoteItem] {
        lock.withLock {
            closed.store(true, ordering: .sequentiallyConsistent)
            defer { items = [] }
            return items
        }
    }
}
