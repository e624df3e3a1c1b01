//===----------------------------------------------------------------------===//
// swift-asyncio — helpers shared by the tests.
//===----------------------------------------------------------------------===//

import Logging
import Synchronization
import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// A mutable box the tests share between a loop's callbacks and their own code. Only touched
/// on the loop thread or after the loop stopped.
final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

/// A test-defined error with a payload to compare.
struct TestError: Error, Equatable {
    let id: Int
}

/// Time limits: every suite has `.timeLimit(.minutes(10))`. Swift Testing starts all tests at
/// once and counts a test's time from then, so a test still queued for one of the few
/// cooperative-pool threads (one per core) behind tests that block theirs with a running
/// loop is charged for the wait: one minute was exceeded by dozens of tests on a loaded
/// 2-core machine and on one core (`taskset -c 0`). A hang inside a loop is caught sooner, by
/// `withLoop`'s watchdog, which counts from the loop's creation.

/// Runs `body` with a fresh loop and closes the loop afterwards.
///
/// A watchdog timer stops the loop after `timeout`, so a test that would hang fails instead
/// (`runUntilComplete` then throws `stoppedBeforeCompletion`): a test blocked in the loop
/// cannot be interrupted by Swift Testing's time limit.
///
/// The loop runs on the test's own thread, one of the cooperative pool's few threads (one per
/// core), for the whole test: code inside must never wait for the global pool (no
/// `Task.detached`, no `Task {}` without the loop's executor). Use `OSThread` for "another
/// thread". Check with `taskset -c 0 swift test --skip-build`: on one core a test that waits
/// for the pool hangs until the watchdog instead of passing by luck.
func withLoop<T>(
    timeout: Duration = .seconds(60), logger: Logger? = nil, _ body: (EventLoop) throws -> T
) throws -> T {
    let loop = try EventLoop(name: "test", logger: logger)
    defer {
        // As asyncio.run ends: tasks still pending (a server's connection handlers, say) are
        // cancelled and run to their end before the loop closes. A task left suspended on a
        // closed loop can never resume, and keeps what it holds forever (LeakSanitizer).
        try? loop.cancelAllTasks(timeout: .seconds(2))
        try? loop.close()
    }
    let watchdog = loop.callLater(after: timeout) {
        Issue.record("the test's event loop was stopped by the watchdog after \(timeout)")
        loop.stop()
    }
    defer { watchdog.cancel() }
    return try body(loop)
}

/// Blocks the calling thread for `seconds`.
func blockThread(seconds: Double) {
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - seconds.rounded(.down)) * 1e9))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}

/// The calling thread's name, as the kernel reports it.
func currentThreadName() -> String {
    let fd = open("/proc/thread-self/comm", O_RDONLY)
    guard fd >= 0 else { return "" }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 64)
    let n = read(fd, &buffer, buffer.count)
    guard n > 0 else { return "" }
    return String(decoding: buffer[0..<n], as: UTF8.self).trimmingSuffixNewline()
}

extension String {
    func trimmingSuffixNewline() -> String {
        hasSuffix("\n") ? String(dropLast()) : self
    }
}

/// A thread-safe counter that closures can capture (an `Atomic` is not copyable).
final class Counter: Sendable {
    private let storage = Atomic<Int>(0)
    init() {}
    func increment() { storage.add(1, ordering: .sequentiallyConsistent) }
    var value: Int { storage.load(ordering: .sequentiallyConsistent) }
}

/// What a test waited for and did not see in time.
struct DidNotHappen: Error, CustomStringConvertible {
    let what: String
    let timeout: Duration
    var description: String { "not seen within \(timeout): \(what)" }
}

/// Waits for `future` (the event `what`) at most `timeout`; on timeout throws
/// ``DidNotHappen`` naming it, so the failure says what was missing.
@discardableResult
func waitForEvent<T>(_ future: Future<T>, _ what: String, timeout: Duration = .seconds(10)) async throws -> T {
    do {
        return try await waitFor(future, timeout: timeout)
    } catch is TimeoutError {
        throw DidNotHappen(what: what, timeout: timeout)
    }
}

/// Blocks the calling thread, polling `condition` every millisecond, until it holds; throws
/// ``DidNotHappen`` naming `what` after `timeout`. For what other threads (a pool's workers)
/// do while the test's thread waits off the loop.
func blockUntil(_ what: String, timeout: Duration = .seconds(20), _ condition: () -> Bool) throws {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while !condition() {
        if clock.now >= deadline { throw DidNotHappen(what: what, timeout: timeout) }
        blockThread(seconds: 0.001)
    }
}

/// Polls `condition` every millisecond on the loop until it holds, for states no callback
/// announces; throws ``DidNotHappen`` naming `what` after `timeout`.
func waitUntil(_ what: String, timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while !condition() {
        if clock.now >= deadline { throw DidNotHappen(what: what, timeout: timeout) }
        try await sleep(for: .milliseconds(1))
    }
}

/// This process's open fds, each as "number -> target" (`socket:[…]`, `pipe:[…]`,
/// `anon_inode:[pidfd]`, a path), sorted; only those whose target starts with one of
/// `prefixes` (all if empty). For exit tests that check nothing is left open: the test
/// runtime may open fds of its own kinds meanwhile, so compare only the kinds a test makes.
func openFDs(_ prefixes: [String] = []) -> [String] {
    guard let dir = opendir("/proc/self/fd") else { return [] }
    defer { closedir(dir) }
    var found: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        guard name != "." && name != ".." else { continue }
        var target = [UInt8](repeating: 0, count: 256)
        let length = readlink("/proc/self/fd/" + name, &target, target.count - 1)
        let what = length > 0 ? String(decoding: target[..<length], as: UTF8.self) : "?"
        if prefixes.isEmpty || prefixes.contains(where: { what.hasPrefix($0) }) {
            found.append(name + " -> " + what)
        }
    }
    return found.sorted()
}
