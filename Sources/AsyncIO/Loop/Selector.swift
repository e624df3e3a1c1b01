//===----------------------------------------------------------------------===//
// swift-asyncio — Selector: a thin epoll wrapper with an eventfd to wake it.
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
#if canImport(Glibc)
import Glibc
#endif

/// Readiness interests, as epoll bits.
struct IOInterest: OptionSet, Hashable {
    let rawValue: UInt32
    // Computed, not stored: a stored static is a lazy global, and reading it costs a
    // swift_once call per ready event in the loop's dispatch.
    static var read: IOInterest { IOInterest(rawValue: casyncio_epollin()) }
    static var write: IOInterest { IOInterest(rawValue: casyncio_epollout()) }
}

/// epoll plus an eventfd used to wake a blocked `wait` from any thread.
///
/// The I/O backend seam: this is the only file that calls epoll or eventfd. A kqueue backend
/// (BSD, macOS) or an io_uring one would provide the same members (README, "Platforms").
///
/// Not thread-safe except for ``wakeUp()``, which any thread may call. The epoll user data
/// is a 64-bit token chosen by the caller (the loop packs a registration generation and the
/// fd into it so events for a closed and reused fd can be recognised and dropped).
final class Selector {
    /// The token reported for the internal wake-up eventfd.
    static var wakeUpToken: UInt64 { .max }   // computed: a constant, no lazy global

    let epollFD: Int32
    let eventFD: Int32
    private var events: UnsafeMutablePointer<epoll_event>
    private var capacity: Int

    init() throws(IOError) {
        epollFD = try retryingSyscall("epoll_create1") { epoll_create1(casyncio_epoll_cloexec()) }
        do {
            eventFD = try retryingSyscall("eventfd") { eventfd(0, casyncio_efd_nonblock_cloexec()) }
        } catch {
            Glibc.close(epollFD)
            throw error
        }
        capacity = 64
        events = .allocate(capacity: capacity)
        do {
            try add(fd: eventFD, interest: .read, token: Selector.wakeUpToken)
        } catch {
            Glibc.close(eventFD)
            Glibc.close(epollFD)
            events.deallocate()
            throw error
        }
    }

    /// Closes both fds. The selector must not be used afterwards.
    func close() {
        Glibc.close(eventFD)
        Glibc.close(epollFD)
        events.deallocate()
        capacity = 0
    }

    func add(fd: Int32, interest: IOInterest, token: UInt64) throws(IOError) {
        var event = epoll_event()
        event.events = interest.rawValue
        event.data.u64 = token
        _ = try retryingSyscall("epoll_ctl") { epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) }
    }

    func modify(fd: Int32, interest: IOInterest, token: UInt64) throws(IOError) {
        var event = epoll_event()
        event.events = interest.rawValue
        event.data.u64 = token
        _ = try retryingSyscall("epoll_ctl") { epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &event) }
    }

    func remove(fd: Int32) throws(IOError) {
        var event = epoll_event()
        _ = try retryingSyscall("epoll_ctl") { epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, &event) }
    }

    /// Waits up to `timeoutMillis` (-1: forever, 0: poll) and calls `body(token, events)` per
    /// ready fd. The wake-up eventfd is drained here and reported with ``wakeUpToken``.
    /// Returns how many events were reported.
    @inline(__always)
    func wait(timeoutMillis: Int32, _ body: (UInt64, UInt32) -> Void) -> Int {
        let n = epoll_wait(epollFD, events, Int32(capacity), timeoutMillis)
        if n <= 0 {
            // EINTR (a signal arrived) simply ends this wait; any other error is a bug
            // (EBADF, EFAULT, EINVAL), never something input can cause.
            if n < 0 && errno != EINTR {
                preconditionFailure("epoll_wait failed: errno \(errno)")
            }
            return 0
        }
        for i in 0..<Int(n) {
            let event = events[i]
            let token = event.data.u64
            if token == Selector.wakeUpToken {
                var value: UInt64 = 0
                _ = read(eventFD, &value, 8)
            }
            body(token, event.events)
        }
        if Int(n) == capacity {
            // Every slot was used: there may be more ready fds than we can see per call.
            let bigger = capacity * 2
            events.deallocate()
            events = .allocate(capacity: bigger)
            capacity = bigger
        }
        return Int(n)
    }

    /// Whether the backend can watch `fd`: true for pipes, FIFOs, sockets and most character
    /// devices; false for regular files, directories and devices such as /dev/null (epoll
    /// refuses them with EPERM). Thread-safe (a throwaway epoll instance).
    static func canWatch(_ fd: Int32) -> Bool {
        let epoll = epoll_create1(casyncio_epoll_cloexec())
        guard epoll >= 0 else { return false }
        defer { Glibc.close(epoll) }
        var event = epoll_event()
        return epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) == 0
    }

    /// Makes a blocked or the next ``wait(timeoutMillis:_:)`` return. Thread-safe.
    func wakeUp() {
        var one: UInt64 = 1
        // EAGAIN means the counter is already non-zero: the loop will wake anyway.
        _ = write(eventFD, &one, 8)
    }
}
