//===----------------------------------------------------------------------===//
// swift-asyncio — Future: states, callbacks, awaiting.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

@Suite(.timeLimit(.minutes(10)))
struct FutureTests {
    // Done callbacks run on the loop, in the order added, after the future completes.
    @Test func doneCallbacksRunOnTheLoopInOrder() throws {
        try withLoop { loop in
            let future = Future<Int>(loop: loop)
            let order = Box<[String]>([])
            future.addDoneCallback { f in
                order.value.append("first \(loop.inLoopThread) \((try? f.result()) ?? -1)")
            }
            future.addDoneCallback { _ in order.value.append("second") }
            loop.callSoon {
                try future.setResult(5)
                order.value.append("set")   // callbacks are scheduled, not called inline
            }
            _ = try loop.runUntilComplete { try await future.value }
            loop.callSoon { loop.stop() }
            try loop.runForever()
            #expect(order.value == ["set", "first true 5", "second"])
        }
    }

    // Resolving a future twice (any combination) throws InvalidStateError.
    @Test func resolvingTwiceThrowsInvalidStateError() throws {
        try withLoop { loop in
            let future = Future<Int>(loop: loop)
            try future.setResult(1)
            #expect(throws: InvalidStateError.self) { try future.setResult(2) }
            #expect(throws: InvalidStateError.self) { try future.setError(TestError(id: 1)) }
            #expect(!future.cancel())
            #expect(try future.result() == 1)

            let failed = Future<Int>(loop: loop)
            try failed.setError(TestError(id: 2))
            #expect(throws: InvalidStateError.self) { try failed.setResult(3) }
            #expect(throws: TestError(id: 2)) { try failed.result() }

            let cancelled = Future<Int>(loop: loop)
            #expect(cancelled.cancel())
            #expect(cancelled.isCancelled && cancelled.isDone)
            #expect(throws: InvalidStateError.self) { try cancelled.setResult(4) }
            #expect(throws: CancellationError.self) { try cancelled.result() }
        }
    }

    // Reading the result of a pending future is an InvalidStateError.
    @Test func resultOfPendingFutureThrows() throws {
        try withLoop { loop in
            let future = Future<String>(loop: loop)
            #expect(!future.isDone)
            #expect(throws: InvalidStateError.self) { try future.result() }
            #expect(future.error == nil)
        }
    }

    // A removed callback never runs; removing it twice reports false.
    @Test func removedDoneCallbackNeverRuns() throws {
        try withLoop { loop in
            let future = Future<Int>(loop: loop)
            let ran = Box<[Int]>([])
            let first = future.addDoneCallback { _ in ran.value.append(1) }
            future.addDoneCallback { _ in ran.value.append(2) }
            let third = future.addDoneCallback { _ in ran.value.append(3) }
            #expect(future.removeDoneCallback(first))
            #expect(future.removeDoneCallback(third))
            #expect(!future.removeDoneCallback(third))
            try future.setResult(0)
            loop.callSoon { loop.callSoon { loop.stop() } }
            try loop.runForever()
            #expect(ran.value == [2])
        }
    }

    // A callback added to a done future is scheduled at once (never called inline).
    @Test func callbackOnDoneFutureIsScheduled() throws {
        try withLoop { loop in
            let future = Future<Int>(loop: loop)
            try future.setResult(1)
            let ran = Box(false)
            future.addDoneCallback { _ in ran.value = true }
            #expect(!ran.value)
            loop.callSoon { loop.stop() }
            try loop.runForever()
            #expect(ran.value)
        }
    }

    // Awaiting gives the value, the error, or CancellationError.
    @Test func awaitingDeliversEachOutcome() throws {
        try withLoop { loop in
            let value = Future<Int>(loop: loop)
            let failure = Future<Int>(loop: loop)
            let cancelled = Future<Int>(loop: loop)
            loop.callLater(after: .milliseconds(5)) {
                try value.setResult(42)
                try failure.setError(TestError(id: 9))
                cancelled.cancel()
            }
            let outcome = try loop.runUntilComplete { () async -> [String] in
                var seen: [String] = []
                seen.append("\((try? await value.value) ?? -1)")
                do { _ = try await failure.value } catch { seen.append("\(error)") }
                do { _ = try await cancelled.value } catch is CancellationError { seen.append("cancelled") } catch {}
                return seen
            }
            #expect(outcome == ["42", "\(TestError(id: 9))", "cancelled"])
        }
    }

    // Several tasks awaiting one future all get its value.
    @Test func manyAwaitersShareOneResult() throws {
        try withLoop { loop in
            let future = Future<Int>(loop: loop)
            let tasks = (0..<10).map { i in loop.createTask { try await future.value + i } }
            loop.callSoon { try future.setResult(100) }
            let results = try loop.runUntilComplete { try await gather(tasks) }
            #expect(results == Array(100..<110))
        }
    }

    // A future awaited from a task that is not on the loop still resolves (the await hops).
    @Test func awaitingFromOutsideTheLoopHops() async throws {
        let group = try EventLoopGroup(loops: 1)
        defer { group.shutdown() }
        let loop = group.next()
        // The future is made on the loop and handed over through the continuation (not a
        // shared box: ThreadSanitizer does not see the continuation's ordering for that).
        let future = try await withCheckedThrowingContinuation {
            (continuation: CheckedContinuation<Future<Int>, any Error>) in
            do {
                try loop.callSoonThreadSafe { continuation.resume(returning: Future<Int>(loop: loop)) }
            } catch {
                continuation.resume(throwing: error)
            }
        }
        _ = try loop.callSoonThreadSafe {
            loop.callLater(after: .milliseconds(10)) { try future.setResult(7) }
        }
        #expect(try await future.value == 7)
    }
    // A task off the loop awaits a future of a loop that is not running: the await hands its
    // wait to the loop's queue. A loop closed before it took that hand-over must end the wait
    // with `closed` (as an await on a closed loop does), not leave the task waiting forever
    // and the loop kept alive by it.
    @Test func anAwaitHandedToALoopThatClosesEndsWithClosed() throws {
        let awaiters = try EventLoopGroup(loops: 1, name: "awaiter")
        var awaitersDown = false
        defer { if !awaitersDown { awaiters.shutdown() } }
        weak var weakLoop: EventLoop?
        let outcome: ConcurrentFuture<String>
        do {
            let loop = try EventLoop(name: "closes with an await queued")
            weakLoop = loop
            let future = Future<Int>(loop: loop)
            outcome = try awaiters.next().runCoroutineThreadSafe {
                do {
                    return "value \(try await future.value)"
                } catch let error as EventLoopError {
                    return "\(error.code)"
                } catch {
                    return "\(error)"
                }
            }
            // Stays set until a run of `loop` drains its queue: the wait was handed over.
            try blockUntil("the await was handed to the stopped loop") {
                loop.inbox.pending.load(ordering: .sequentiallyConsistent)
            }
            try loop.close()
        }
        #expect(try outcome.result(timeout: .seconds(10)) == "\(EventLoopError.Code.closed)")
        awaiters.shutdown()
        awaitersDown = true
        #expect(weakLoop == nil)
    }
}
