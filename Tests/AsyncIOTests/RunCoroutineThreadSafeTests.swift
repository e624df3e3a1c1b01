//===----------------------------------------------------------------------===//
// swift-asyncio — runCoroutineThreadSafe and ConcurrentFuture, from plain threads.
//===----------------------------------------------------------------------===//

import Synchronization
import Testing

@testable import AsyncIO

@Suite(.timeLimit(.minutes(10)))
struct RunCoroutineThreadSafeTests {
    /// Runs `work` on a plain OS thread (not a loop's) and awaits, on the loop, what it returns.
    static func onPlainThread<T: Sendable>(
        _ loop: EventLoop,
        _ work: @escaping @Sendable () -> T
    ) async throws -> T {
        let answer = Future<T>(loop: loop)
        let thread = OSThread.spawn(name: "plain-thread") {
            let value = work()
            _ = try? loop.callSoonThreadSafe { try? answer.setResult(value) }
        }
        thread.detach()
        return try await waitForEvent(answer, "the plain thread's answer", timeout: .seconds(30))
    }

    /// What a blocking `result(timeout:)` call gave: a value or the error's type.
    static func describe<T>(_ body: () throws -> T) -> String {
        do {
            return "value \(try body())"
        } catch let error as TestError {
            return "TestError \(error.id)"
        } catch {
            return "\(type(of: error))"
        }
    }

    // A plain thread schedules work on the loop and blocks for its result; every step of the
    // work ran on the loop's thread, as a named LoopTask.
    @Test func resultFromAPlainThread() throws {
        try withLoop { loop in
            let outcome = try loop.runUntilComplete { () async throws -> String in
                try await Self.onPlainThread(loop) {
                    Self.describe {
                        let future = try loop.runCoroutineThreadSafe(name: "remote") { () async throws -> String in
                            let first = loop.inLoopThread
                            try await sleep(for: .milliseconds(10))
                            return "\(LoopTask<String>.current?.name ?? "none") \(first) \(loop.inLoopThread)"
                        }
                        let value = try future.result(timeout: .seconds(30))
                        return "\(value), done: \(future.isDone)"
                    }
                }
            }
            #expect(outcome == "value remote true true, done: true")
        }
    }

    // The work's error reaches the blocked thread.
    @Test func errorFromAPlainThread() throws {
        try withLoop { loop in
            let outcome = try loop.runUntilComplete { () async throws -> String in
                try await Self.onPlainThread(loop) {
                    Self.describe {
                        let future = try loop.runCoroutineThreadSafe { () async throws -> Int in
                            try await sleep(for: .milliseconds(1))
                            throw TestError(id: 7)
                        }
                        return try future.result()
                    }
                }
            }
            #expect(outcome == "TestError 7")
        }
    }

    // result(timeout:) gives up with TimeoutError and leaves the work running; cancel() then
    // cancels the task on the loop and result() throws CancellationError.
    @Test func resultTimeoutThenCancel() throws {
        try withLoop { loop in
            let bodyCancelled = Counter()
            let outcome = try loop.runUntilComplete { () async throws -> [String] in
                let seen = try await Self.onPlainThread(loop) { () -> [String] in
                    do {
                        let future = try loop.runCoroutineThreadSafe(name: "slow") { () async throws -> Int in
                            do {
                                try await sleep(for: .seconds(30))
                            } catch {
                                bodyCancelled.increment()
                                throw error
                            }
                            return 1
                        }
                        var seen = [Self.describe { try future.result(timeout: .milliseconds(30)) }]
                        seen.append("done after timeout: \(future.isDone)")
                        seen.append("cancel: \(future.cancel())")
                        seen.append(Self.describe { try future.result(timeout: .seconds(30)) })
                        seen.append("cancelled: \(future.isCancelled), cancel again: \(future.cancel())")
                        return seen
                    } catch {
                        return ["runCoroutineThreadSafe threw \(error)"]
                    }
                }
                try await waitUntil("the task is cancelled on the loop") {
                    bodyCancelled.value == 1 && !loop.allTasks.contains { $0.name == "slow" }
                }
                return seen
            }
            #expect(outcome == [
                "TimeoutError", "done after timeout: false", "cancel: true", "CancellationError",
                "cancelled: true, cancel again: false",
            ])
            #expect(bodyCancelled.value == 1)
        }
    }

    // A thread blocked without a timeout wakes up with CancellationError when another party
    // cancels the future.
    @Test func cancelWakesABlockedThread() throws {
        try withLoop { loop in
            let outcome = try loop.runUntilComplete { () async throws -> String in
                let future = try await Self.onPlainThread(loop) {
                    Result { try loop.runCoroutineThreadSafe(name: "blocked-on") { () async throws -> Int in
                        try await sleep(for: .seconds(30))
                        return 1
                    } }
                }.get()
                let blocked = Self.onPlainThreadFuture(loop) { Self.describe { try future.result() } }
                try await sleep(for: .milliseconds(20))
                #expect(!blocked.isDone)
                #expect(future.cancel())
                return try await waitForEvent(blocked, "the blocked thread wakes up", timeout: .seconds(30))
            }
            #expect(outcome == "CancellationError")
            try loop.runUntilComplete { () async throws -> Void in
                try await waitUntil("the task is cancelled") {
                    !loop.allTasks.contains { $0.name == "blocked-on" }
                }
            }
        }
    }

    // Cancelled before the loop got to it, the work never starts.
    @Test func cancelBeforeTheLoopRunsKeepsTheWorkFromStarting() throws {
        try withLoop { loop in
            let ran = Counter()
            // The loop is not running: this thread is not the loop's.
            let future = try loop.runCoroutineThreadSafe { () async throws -> Int in
                ran.increment()
                return 1
            }
            #expect(future.cancel())
            try loop.runUntilComplete { try await sleep(for: .milliseconds(10)) }
            #expect(ran.value == 0)
            #expect(loop.allTasks.isEmpty)
            #expect(throws: CancellationError.self) { try future.result(timeout: .zero) }
        }
    }

    // Shutting the loop down (cancelAllTasks, as EventLoop.run does) cancels the task, and
    // with it the future: nobody stays blocked on it.
    @Test func loopShutdownCancelsTheFuture() throws {
        try withLoop { loop in
            let future = try loop.runCoroutineThreadSafe(name: "forever") { () async throws -> Int in
                try await sleep(for: .seconds(30))
                return 1
            }
            try loop.runUntilComplete { try await sleep(for: .milliseconds(10)) }
            #expect(loop.allTasks.map(\.name) == ["forever"])
            #expect(!future.isDone)
            try loop.cancelAllTasks()
            #expect(future.isCancelled)
            #expect(throws: CancellationError.self) { try future.result(timeout: .seconds(30)) }
        }
    }

    // A closed loop refuses the work.
    @Test func closedLoopRefusesTheWork() throws {
        let loop = try EventLoop(name: "closed")
        try loop.close()
        #expect(throws: EventLoopError.closedError) {
            _ = try loop.runCoroutineThreadSafe { 1 }
        }
    }

    // A loop closed with the work still in its queue (stopped, not running) never starts it:
    // the future is cancelled, so a thread blocked on it wakes, and neither the work nor the
    // future keeps the loop.
    @Test func workQueuedAsTheLoopClosesCancelsTheFuture() throws {
        let started = Atomic<Bool>(false)
        weak var weakLoop: EventLoop?
        do {
            let loop = try EventLoop(name: "closes with work queued")
            weakLoop = loop
            let future = try loop.runCoroutineThreadSafe { () async throws -> Int in
                started.store(true, ordering: .sequentiallyConsistent)
                return 1
            }
            try loop.close()
            #expect(future.isCancelled)
            #expect(throws: CancellationError.self) { try future.result(timeout: .seconds(10)) }
        }
        let ran = started.load(ordering: .sequentiallyConsistent)
        #expect(!ran)
        #expect(weakLoop == nil)
    }

    /// Starts `work` on a plain thread and returns a future for its answer, without waiting.
    static func onPlainThreadFuture<T: Sendable>(
        _ loop: EventLoop,
        _ work: @escaping @Sendable () -> T
    ) -> Future<T> {
        let answer = Future<T>(loop: loop)
        let thread = OSThread.spawn(name: "plain-thread") {
            let value = work()
            _ = try? loop.callSoonThreadSafe { try? answer.setResult(value) }
        }
        thread.detach()
        return answer
    }
}
