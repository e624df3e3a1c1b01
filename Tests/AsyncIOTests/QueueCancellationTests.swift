//===----------------------------------------------------------------------===//
// swift-asyncio — Cancelling tasks that wait on a queue: no item lost, nothing done twice.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

@Suite(.timeLimit(.minutes(10)))
struct QueueCancellationTests {
    // A cancelled waiting getter gets CancellationError, leaves the line, and takes nothing.
    @Test func cancellingAWaitingGetterLosesNoItem() throws {
        try withLoop { loop in
            let queue = Queue<Int>()
            try loop.runUntilComplete {
                let cancelled = loop.createTask { try await queue.get() }
                let patient = loop.createTask { try await queue.get() }
                try await waitUntil("2 getters wait") { queue.getters.count == 2 }
                cancelled.cancel()
                await #expect(throws: CancellationError.self) { try await cancelled.value }
                #expect(queue.getters.count == 1)
                try queue.putNowait(7)
                try queue.putNowait(8)
                #expect(try await patient.value == 7)
                #expect(try queue.getNowait() == 8)
            }
        }
    }

    // A cancelled waiting putter gets CancellationError and its item is never put.
    @Test func cancellingAWaitingPutterPutsNothing() throws {
        try withLoop { loop in
            let queue = Queue<Int>(maxSize: 1)
            try loop.runUntilComplete {
                try queue.putNowait(1)
                let cancelled = loop.createTask { try await queue.put(99) }
                let patient = loop.createTask { try await queue.put(2) }
                try await waitUntil("2 putters wait") { queue.putters.count == 2 }
                cancelled.cancel()
                await #expect(throws: CancellationError.self) { try await cancelled.value }
                #expect(queue.putters.count == 1)
                #expect(try await queue.get() == 1)
                try await patient.value
                #expect(try await queue.get() == 2)
                #expect(queue.isEmpty)
                #expect(queue.unfinishedTasks == 2)   // 99 was never counted
            }
        }
    }

    // A getter served by a put (handed the item) and cancelled before it ran keeps the
    // item: its get is done. The next getter in line is not given it, and gets the next put.
    @Test func servedThenCancelledGetterKeepsItsItem() throws {
        try withLoop { loop in
            let queue = Queue<Int>()
            try loop.runUntilComplete {
                let first = loop.createTask { try await queue.get() }
                let second = loop.createTask { try await queue.get() }
                try await waitUntil("2 getters wait") { queue.getters.count == 2 }
                try queue.putNowait(5)   // hands 5 to `first`…
                #expect(queue.getters.count == 1)
                #expect(queue.isEmpty)
                first.cancel()           // …which is cancelled before it runs
                #expect(try await first.value == 5)
                #expect(!second.isDone)
                try queue.putNowait(6)
                #expect(try await waitForEvent(second, "the second getter got the next item") == 6)
                #expect(queue.isEmpty)
                #expect(queue.unfinishedTasks == 2)
            }
        }
    }

    // A putter served by a get (its item stored in the freed slot) and cancelled before it
    // ran has put: the item stays, the next putter still waits.
    @Test func servedThenCancelledPutterHasPut() throws {
        try withLoop { loop in
            let queue = Queue<Int>(maxSize: 1)
            try loop.runUntilComplete {
                try queue.putNowait(0)
                let first = loop.createTask { try await queue.put(1) }
                let second = loop.createTask { try await queue.put(2) }
                try await waitUntil("2 putters wait") { queue.putters.count == 2 }
                #expect(try queue.getNowait() == 0)   // stores 1 at once…
                #expect(queue.count == 1)
                #expect(queue.putters.count == 1)
                first.cancel()                        // …and `first` is cancelled before it runs
                try await first.value
                #expect(!second.isDone)
                #expect(try queue.getNowait() == 1)   // stores 2
                try await waitForEvent(second, "the second putter put its item")
                #expect(try queue.getNowait() == 2)
                #expect(queue.isEmpty)
            }
        }
    }

    // A task cancelled before it calls get throws at once and never gets in line.
    @Test func alreadyCancelledTaskDoesNotWait() throws {
        try withLoop { loop in
            let queue = Queue<Int>()
            try loop.runUntilComplete {
                let gate = Future<Void>(loop: loop)   // never set
                let started = Box(false)
                let getter = loop.createTask { () async throws -> Int in
                    started.value = true
                    try? await shield(gate).value      // cancelled here; the error is dropped
                    return try await queue.get()       // so the task is cancelled already
                }
                try await waitUntil("the getter started") { started.value }
                getter.cancel()
                await #expect(throws: CancellationError.self) {
                    try await waitForEvent(getter, "the cancelled getter returned")
                }
                #expect(queue.getters.count == 0)
                try queue.putNowait(3)
                #expect(try queue.getNowait() == 3)
            }
        }
    }

    // Cancelling a waiting joiner throws CancellationError to it only.
    @Test func cancellingAWaitingJoiner() throws {
        try withLoop { loop in
            let queue = Queue<Int>()
            try loop.runUntilComplete {
                try queue.putNowait(1)
                let cancelled = loop.createTask { try await queue.join() }
                let patient = loop.createTask { try await queue.join() }
                try await waitUntil("2 joiners wait") { queue.joiners.count == 2 }
                cancelled.cancel()
                await #expect(throws: CancellationError.self) { try await cancelled.value }
                #expect(queue.joiners.count == 1)
                _ = try queue.getNowait()
                try queue.taskDone()
                try await waitForEvent(patient, "the other joiner returned")
            }
        }
    }

    // Cancellation from another thread hops to the loop: the getter still loses no item. A
    // plain Swift task's handler runs on the cancelling thread; a loop task is cancelled on
    // its loop (here through callSoonThreadSafe), its wait covered by the task.
    @Test(arguments: [false, true])
    func cancellingFromAnotherThread(loopTask: Bool) throws {
        try withLoop { loop in
            let queue = Queue<Int>()
            try loop.runUntilComplete {
                let outcome: Future<String>
                if loopTask {
                    let getter = loop.createTask { try await queue.get() }
                    try await waitUntil("the getter waits") { queue.getters.count == 1 && getter.hasCoveredWait }
                    // A thread of its own, not Task.detached: this test's loop blocks one of
                    // the few cooperative-pool threads, and a detached task could wait behind
                    // other tests doing the same until the time limit.
                    OSThread.spawn(name: "canceller") { _ = try? loop.callSoonThreadSafe { getter.cancel() } }.join()
                    outcome = loop.createTask { () async -> String in
                        do { return "got \(try await getter.value)" } catch { return "\(type(of: error))" }
                    }
                } else {
                    let getter = Task(executorPreference: loop.taskExecutor) { () async -> String in
                        do { return "got \(try await queue.get())" } catch { return "\(type(of: error))" }
                    }
                    try await waitUntil("the getter waits") { queue.getters.count == 1 }
                    OSThread.spawn(name: "canceller") { getter.cancel() }.join()
                    outcome = loop.createTask { await getter.value }
                }
                #expect(try await waitForEvent(outcome, "the getter ends") == "CancellationError")
                #expect(queue.getters.count == 0)
                try queue.putNowait(4)
                #expect(try await queue.get() == 4)
            }
        }
    }
}
