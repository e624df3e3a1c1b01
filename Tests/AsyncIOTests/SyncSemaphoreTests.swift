//===----------------------------------------------------------------------===//
// swift-asyncio — Semaphore and BoundedSemaphore: counting, FIFO, cancellation, the bound.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

@Suite(.timeLimit(.minutes(10)))
struct SyncSemaphoreTests {
    // A semaphore of 2 lets two tasks in at once: the third waits until one releases.
    @Test func semaphoreCountsPermits() throws {
        try withLoop { loop in
            try loop.runUntilComplete { () async throws -> Void in
                let semaphore = Semaphore(value: 2)
                #expect(!semaphore.isLocked)
                try await semaphore.acquire()
                #expect(!semaphore.isLocked)
                try await semaphore.acquire()
                #expect(semaphore.isLocked)
                #expect(semaphore.value == 0)
                let third = loop.createTask { try await semaphore.acquire() }
                try await waitUntil("a waiter") { semaphore.waiterCount == 1 }
                #expect(!third.isDone)
                semaphore.release()
                try await waitForEvent(third, "the third got a permit")
                #expect(semaphore.value == 0)
                semaphore.release()
                semaphore.release()
                #expect(semaphore.value == 2)
                #expect(!semaphore.isLocked)
            }
        }
    }

    // withPermit bounds concurrency: six tasks through a semaphore of 2, never more than two
    // inside at a time, all six get through, and every permit comes back.
    @Test func withPermitBoundsConcurrency() throws {
        try withLoop { loop in
            let inside = Box(0)
            let most = Box(0)
            let done = Box(0)
            try loop.runUntilComplete { () async throws -> Void in
                let semaphore = Semaphore(value: 2)
                let tasks = (0..<6).map { _ in
                    loop.createTask {
                        try await semaphore.withPermit {
                            inside.value += 1
                            most.value = max(most.value, inside.value)
                            try await sleep(for: .milliseconds(2))
                            inside.value -= 1
                            done.value += 1
                        }
                    }
                }
                for task in tasks { try await waitForEvent(task, "a task got through") }
                #expect(semaphore.value == 2)
                await #expect(throws: TestError(id: 2)) {
                    try await semaphore.withPermit { throw TestError(id: 2) }
                }
                #expect(semaphore.value == 2)
            }
            #expect(most.value == 2)
            #expect(done.value == 6)
        }
    }

    // Waiters get permits in arrival order; a task asking while others wait queues behind
    // them even if a permit is free (asyncio's FIFO rule).
    @Test func waitersGetPermitsInFIFOOrder() throws {
        try withLoop { loop in
            let order = Box<[Int]>([])
            try loop.runUntilComplete { () async throws -> Void in
                let semaphore = Semaphore(value: 0)
                let tasks = (0..<4).map { i in
                    loop.createTask {
                        try await semaphore.acquire()
                        order.value.append(i)
                    }
                }
                try await waitUntil("four waiters") { semaphore.waiterCount == 4 }
                semaphore.release()
                #expect(semaphore.isLocked)      // the permit went to waiter 0
                #expect(semaphore.value == 0)
                let late = loop.createTask {
                    try await semaphore.acquire()
                    order.value.append(-1)
                }
                for _ in 0..<4 { semaphore.release() }
                for task in tasks { try await waitForEvent(task, "a waiter got a permit") }
                try await waitForEvent(late, "the late task got a permit")
                #expect(semaphore.value == 0)
            }
            #expect(order.value == [0, 1, 2, 3, -1])
        }
    }

    // A cancelled waiter gets CancellationError and no permit.
    @Test func cancelledWaiterGetsNoPermit() throws {
        try withLoop { loop in
            let outcomes = try loop.runUntilComplete { () async throws -> [SyncOutcome] in
                let semaphore = Semaphore(value: 0)
                let tasks = (0..<2).map { _ in loop.createTask { await syncOutcome { try await semaphore.acquire() } } }
                try await waitUntil("two waiters") { semaphore.waiterCount == 2 }
                tasks[0].cancel()
                #expect(try await waitForEvent(tasks[0], "cancelled") == .cancelled)
                #expect(semaphore.waiterCount == 1)
                semaphore.release()
                #expect(try await waitForEvent(tasks[1], "the other got the permit") == .acquired)
                #expect(semaphore.value == 0)
                return [try tasks[0].result(), try tasks[1].result()]
            }
            #expect(outcomes == [.cancelled, .acquired])
        }
    }

    // A waiter handed a permit and cancelled before it ran gives the permit back, and it goes
    // to the next waiter: nothing is lost.
    @Test func wokenThenCancelledWaiterPassesThePermitOn() throws {
        try withLoop { loop in
            let outcomes = try loop.runUntilComplete { () async throws -> [SyncOutcome] in
                let semaphore = Semaphore(value: 0)
                let tasks = (0..<3).map { _ in loop.createTask { await syncOutcome { try await semaphore.acquire() } } }
                try await waitUntil("three waiters") { semaphore.waiterCount == 3 }
                semaphore.release()   // waiter 0 is handed the permit...
                tasks[0].cancel()     // ...and cancelled before it runs
                #expect(try await waitForEvent(tasks[0], "cancelled") == .cancelled)
                #expect(try await waitForEvent(tasks[1], "the permit passed on") == .acquired)
                #expect(semaphore.value == 0)
                #expect(semaphore.waiterCount == 1)   // waiter 2 still waits
                semaphore.release()
                #expect(try await waitForEvent(tasks[2], "the last waiter") == .acquired)
                semaphore.release()
                semaphore.release()
                #expect(semaphore.value == 2)
                return try tasks.map { try $0.result() }
            }
            #expect(outcomes == [.cancelled, .acquired, .acquired])
        }
    }

    // A bounded semaphore refuses a release that would exceed its initial value.
    @Test func boundedSemaphoreRefusesOverRelease() throws {
        try withLoop { loop in
            try loop.runUntilComplete { () async throws -> Void in
                let semaphore = BoundedSemaphore(value: 2)
                #expect(semaphore.bound == 2)
                #expect(throws: BoundedSemaphoreOverflow(bound: 2)) { try semaphore.release() }
                try await semaphore.acquire()
                try await semaphore.acquire()
                #expect(semaphore.isLocked)
                try semaphore.release()
                try semaphore.release()
                #expect(!semaphore.isLocked)
                #expect(throws: BoundedSemaphoreOverflow.self) { try semaphore.release() }
                #expect(try await semaphore.withPermit { semaphore.isLocked } == false)
                // The body gave its permit back itself: the one withPermit returns is too many.
                await #expect(throws: BoundedSemaphoreOverflow.self) {
                    try await semaphore.withPermit { try semaphore.release() }
                }
                #expect(throws: BoundedSemaphoreOverflow.self) { try semaphore.release() }
            }
        }
    }

    // A bounded semaphore's waiters are served as a semaphore's.
    @Test func boundedSemaphoreWaitersProceedOnRelease() throws {
        try withLoop { loop in
            try loop.runUntilComplete { () async throws -> Void in
                let semaphore = BoundedSemaphore(value: 1)
                try await semaphore.acquire()
                let waiter = loop.createTask { try await semaphore.acquire() }
                try await waitUntil("a waiter") { semaphore.waiterCount == 1 }
                try semaphore.release()
                try await waitForEvent(waiter, "the waiter got the permit")
                #expect(semaphore.isLocked)
                try semaphore.release()
                #expect(!semaphore.isLocked)
            }
        }
    }
}
