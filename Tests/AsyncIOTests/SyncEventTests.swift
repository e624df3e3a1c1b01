//===----------------------------------------------------------------------===//
// swift-asyncio — Event: set wakes every waiter, clear, cancellation of waiters.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

@Suite(.timeLimit(.minutes(10)))
struct SyncEventTests {
    // set() wakes every waiter; while set, waits return at once; clear() makes them wait again.
    @Test func setWakesEveryWaiterAndClearMakesThemWaitAgain() throws {
        try withLoop { loop in
            let woken = Box<[Int]>([])
            try loop.runUntilComplete { () async throws -> Void in
                let event = Event()
                #expect(!event.isSet)
                let tasks = (0..<3).map { i in
                    loop.createTask {
                        try await event.wait()
                        woken.value.append(i)
                    }
                }
                try await waitUntil("three waiters") { event.waiterCount == 3 }
                #expect(woken.value.isEmpty)
                event.set()
                #expect(event.isSet)
                for task in tasks { try await waitForEvent(task, "a waiter woke") }
                #expect(woken.value == [0, 1, 2])
                try await event.wait()   // set: returns at once
                #expect(event.waiterCount == 0)
                event.clear()
                #expect(!event.isSet)
                let late = loop.createTask { try await event.wait() }
                try await waitUntil("a waiter after clear") { event.waiterCount == 1 }
                #expect(!late.isDone)
                event.set()
                try await waitForEvent(late, "the late waiter woke")
            }
        }
    }

    // Waiters woken by set() return even if clear() came before they ran (as asyncio).
    @Test func wokenWaitersReturnEvenIfClearedBeforeTheyRun() throws {
        try withLoop { loop in
            try loop.runUntilComplete { () async throws -> Void in
                let event = Event()
                let tasks = (0..<2).map { _ in loop.createTask { try await event.wait() } }
                try await waitUntil("two waiters") { event.waiterCount == 2 }
                event.set()
                event.clear()
                for task in tasks { try await waitForEvent(task, "a waiter woke") }
                #expect(!event.isSet)
            }
        }
    }

    // A cancelled waiter gets CancellationError; the others are still woken by set().
    @Test func cancelledWaiterGetsCancellationErrorOthersStillWake() throws {
        try withLoop { loop in
            let outcomes = try loop.runUntilComplete { () async throws -> [SyncOutcome] in
                let event = Event()
                let tasks = (0..<3).map { _ in loop.createTask { await syncOutcome { try await event.wait() } } }
                try await waitUntil("three waiters") { event.waiterCount == 3 }
                tasks[1].cancel()
                #expect(try await waitForEvent(tasks[1], "the waiter cancelled") == .cancelled)
                #expect(event.waiterCount == 2)
                event.set()
                var outcomes: [SyncOutcome] = []
                for task in tasks { outcomes.append(try await waitForEvent(task, "a waiter finished")) }
                return outcomes
            }
            #expect(outcomes == [.acquired, .cancelled, .acquired])
        }
    }

    // A waiter cancelled after set() woke it, before it ran, gets CancellationError (asyncio
    // delivers the cancellation at that await too).
    @Test func waiterCancelledAfterSetBeforeRunningIsCancelled() throws {
        try withLoop { loop in
            let outcomes = try loop.runUntilComplete { () async throws -> [SyncOutcome] in
                let event = Event()
                let tasks = (0..<2).map { _ in loop.createTask { await syncOutcome { try await event.wait() } } }
                try await waitUntil("two waiters") { event.waiterCount == 2 }
                event.set()
                tasks[0].cancel()
                var outcomes: [SyncOutcome] = []
                for task in tasks { outcomes.append(try await waitForEvent(task, "a waiter finished")) }
                #expect(event.waiterCount == 0)
                return outcomes
            }
            #expect(outcomes == [.cancelled, .acquired])
        }
    }
}
