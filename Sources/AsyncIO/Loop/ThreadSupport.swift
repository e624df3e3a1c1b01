//===----------------------------------------------------------------------===//
// swift-asyncio — Threads and a condition lock over pthreads (internal).
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex with one condition variable. Used where a thread must sleep until work
/// arrives (the thread pool), and for every lock between threads: ThreadSanitizer sees a
/// pthread mutex's happens-before edges, not those of the stdlib's futex-based
/// `Synchronization.Mutex` (it would report each hand-over under the lock as a race).
final class ConditionLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
    /// Waits for a signal; the lock must be held and is held again on return.
    func wait() { pthread_cond_wait(condition, mutex) }
    func signal() { pthread_cond_signal(condition) }
    func broadcast() { pthread_cond_broadcast(condition) }

    @inline(__always)
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// A joinable, named OS thread.
struct OSThread: @unchecked Sendable {
    private let handle: pthread_t

    private final class Box {
        let name: String
        let body: () -> Void
        init(name: String, body: @escaping () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Starts a thread named `name` running `body`. A detached thread gives its resources
    /// back when it ends and must not be joined.
    static func spawn(name: String, detached: Bool = false, _ body: @escaping @Sendable () -> Void) -> OSThread {
        let box = Unmanaged.passRetained(Box(name: name, body: body))
        var handle = pthread_t()
        let rc = pthread_create(&handle, nil, { raw in
            guard let raw else { return nil }
            let box = Unmanaged<Box>.fromOpaque(raw).takeRetainedValue()
            box.name.withCString { casyncio_set_thread_name($0) }
            box.body()
            return nil
        }, box.toOpaque())
        // pthread_create fails only on resource exhaustion (EAGAIN); there is no sane way
        // to run an event loop or a pool without the thread it was asked for.
        precondition(rc == 0, "pthread_create failed: errno \(rc)")
        if detached { pthread_detach(handle) }
        return OSThread(handle: handle)
    }

    /// Lets the thread give its resources back when it ends; it must not be joined after.
    func detach() {
        pthread_detach(handle)
    }

    /// Waits for the thread to finish.
    func join() {
        pthread_join(handle, nil)
    }

    /// The thread's id, as `pthread_self()` returns it on that thread.
    var id: UInt { UInt(handle) }

    /// Whether the calling thread is this thread.
    var isCurrent: Bool { pthread_equal(handle, pthread_self()) != 0 }
}

/// A flag that one thread sets and others read (a reference, so closures can share it).
final class SharedFlag: Sendable {
    private let value = Atomic<Bool>(false)

    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// The number of CPUs this process may run on.
func availableCores() -> Int {
    let n = sysconf(Int32(_SC_NPROCESSORS_ONLN))
    return n > 0 ? Int(n) : 1
}

/// Monotonic nanoseconds (CLOCK_MONOTONIC).
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Busy-waits until `done()` is true (returns true) or `nanoseconds` have passed (false),
/// with the CPU's spin-wait hint between checks and the clock read every 64 of them: the
/// executor's idle worker and a loop waiting for executor results use it to skip a
/// cross-thread wake-up when the other side answers within microseconds.
@inline(__always)
func spinWait(nanoseconds: UInt64, until done: () -> Bool) -> Bool {
    let deadline = monotonicNanoseconds() &+ nanoseconds
    var spins: UInt32 = 0
    while !done() {
        spins &+= 1
        if spins & 63 == 0 && monotonicNanoseconds() >= deadline { return false }
        casyncio_cpu_relax()
    }
    return true
}

extension UInt64 {
    /// `self + other`, or `UInt64.max` where that overflows (deadlines far in the future).
    @inline(__always)
    func saturatingAdd(_ other: UInt64) -> UInt64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? .max : sum
    }
}

extension Duration {
    /// Whole nanoseconds, clamped to 0...UInt64.max. From the attosecond count: `components`
    /// splits it into seconds with two 128-bit multiplications first (~190 instructions a
    /// timer, measured), where this is one 128-bit division.
    var clampedNanoseconds: UInt64 {
        let attoseconds = self.attoseconds
        if attoseconds <= 0 { return 0 }
        let nanoseconds = attoseconds / 1_000_000_000
        return nanoseconds > Int128(UInt64.max) ? .max : UInt64(nanoseconds)
    }
}
