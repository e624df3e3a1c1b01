//===----------------------------------------------------------------------===//
// swift-asyncio — Condition: wait/notify/notifyAll/waitFor, the lock held after every wait.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

@Suite(.timeLimit(.minutes(10)))
struct SyncConditionTests {
    // wait, notify and notifyAll need the lock held; without it they throw LockNotHeld.
    @Test func waitAndNotifyWithoutTheLockThrowLockNotHeld() throws {
        try withLoop { loop in
            try loop.runUntilComplete { () async throws -> Void in
                let condition = Condition()
                await #expect(throws: LockNotHeld.self) { try await condition.wait() }
                #expect(throws: LockNotHeld.self) { try condition.notify() }
                #expect(throws: LockNotHeld.self) { try condition.notifyAll() }
                #expect(throws: LockNotHeld.self) { try condition.release() }
                try await condition.acquire()
                try condition.notify()
                try condition.notifyAll()
                try condition.release()
                #expect(!condition.isLocked)
            }
        }
    }

    // notify(n) wakes the n oldest waiters, notifyAll the rest; each returns from wait()
    // holding the lock.
    @Test func notifyWakesWaitersInFIFOOrder() throws {
        try withLoop { loop in
            let order = Box<[String]>([])
            try loop.runUntilComplete { () async throws -> Void in
                let condition = Condition()
                let tasks = ["A", "B", "C", "D"].map { name in
                    loop.createTask {
                        try await condition.withLock {
                            try await condition.wait()
                            order.value.append(condition.isLocked ? name : "\(name) without the lock")
                        }
                    }
                }
                try await waitUntil("four waiters") { condition.waiterCount == 4 }
                try await condition.withLock { try condition.notify() }
                try await waitForEvent(tasks[0], "A woke")
                #expect(order.value == ["A"])
                try await condition.withLock { try condition.notify(2) }
                try await waitForEvent(tasks[2], "C woke")
                #expect(order.value == ["A", "B", "C"])
                #expect(!tasks[3].isDone)
                try await condition.withLock { try condition.notifyAll() }
                try await waitForEvent(tasks[3], "D woke")
                #expect(order.value == ["A", "B", "C", "D"])
                #expect(!condition.isLocked)
            }
        }
    }

    // A notified waiter returns only once it holds the lock again.
    @Test func waitReturnsOnlyOnceTheLockIsHeldAgain() throws {
        try withLoop { loop in
            let order = Box<[String]>([])
            try loop.runUntilComplete { () async throws -> Void in
                let condition = Condition()
                let waiter = loop.createTask {
                    try await condition.withLock {
                        try await condition.wait()
                        order.value.append("waiter returned")
                    }
                }
                try await waitUntil("one waiter") { condition.waiterCount == 1 }
                try await condition.acquire()
                try condition.notify()
                try await waitUntil("the notified waiter waits for the lock") { condition.lock.waiterCount == 1 }
                #expect(order.value.isEmpty)
                order.value.append("notifier released")
                try condition.release()
                try await waitForEvent(waiter, "the waiter returned")
            }
            #expect(order.value == ["notifier released", "waiter returned"])
        }
    }

    // Cancelled while waiting, wait() still takes the lock back before throwing
    // CancellationError (asyncio's "must re-acquire lock even if wait is cancelled").
    @Test func cancelledWaitHoldsTheLockAgainBeforeThrowing() throws {
        try withLoop { loop in
            let order = Box<[String]>([])
            try loop.runUntilComplete { () async throws -> Void in
                let condition = Condition()
                let waiter = loop.createTask {
                    try await condition.withLock {
                        do {
                            try await condition.wait()
                            order.value.append("returned")
                        } catch is CancellationError {
                            order.value.append(condition.isLocked ? "cancelled, lock held" : "cancelled, no lock")
                            throw CancellationError()
                        }
                    }
                }
                try await waitUntil("one waiter") { condition.waiterCount == 1 }
                try await condition.acquire()
                waiter.cancel()
                try await waitUntil("the cancelled waiter waits for the lock") { condition.lock.waiterCount == 1 }
                #expect(!waiter.isDone)   // cancelled, but waiting for the lock
                #expect(order.value.isEmpty)
                order.value.append("holder released")
                try condition.release()
                await #expect(throws: CancellationError.self) { try await waitForEvent(waiter, "cancelled") }
                #expect(!condition.isLocked)
            }
            #expect(order.value == ["holder released", "cancelled, lock held"])
        }
    }

    // A waiter notified and cancelled before it ran passes the notification to the next
    // waiter; the one after that is not woken.
    @Test func notifiedThenCancelledWaiterPassesTheNotificationOn() throws {
        try withLoop { loop in
            let order = Box<[String]>([])
            try loop.runUntilComplete { () async throws -> Void in
                let condition = Condition()
                let tasks = ["A", "B", "C"].map { name in
                    loop.createTask {
                        await syncOutcome {
                            try await condition.withLock {
                                try await condition.wait()
                                order.value.append(name)
                            }
                        }
                    }
                }
                try await waitUntil("three waiters") { condition.waiterCount == 3 }
                try await condition.withLock {
                    try condition.notify()   // A is woken...
                    tasks[0].cancel()        // ...and cancelled before it runs
                }
                #expect(try await waitForEvent(tasks[0], "A finished") == .cancelled)
                #expect(try await waitForEvent(tasks[1], "B woke") == .acquired)
                try await sleep(for: .milliseconds(5))
                #expect(!tasks[2].isDone)
                #expect(order.value == ["B"])
                try await condition.withLock { try condition.notifyAll() }
                #expect(try await waitForEvent(tasks[2], "C woke") == .acquired)
                #expect(!condition.isLocked)
            }
            #expect(order.value == ["B", "C"])
        }
    }

    // waitFor returns at once if the predicate holds, else waits through notifications until
    // it does, holding the lock when it returns.
    @Test func waitForWaitsUntilThePredicateHolds() throws {
        try withLoop { loop in
            let seen = Box<[Int]>([])
            try loop.runUntilComplete { () async throws -> Void in
                let condition = Condition()
                let items = Box(0)
                try await condition.withLock {
                    try await condition.waitFor { true }   // no wait
                }
                #expect(condition.waiterCount == 0)
                let consumer = loop.createTask {
                    try await condition.withLock {
                        try await condition.waitFor {
                            seen.value.append(items.value)
                            return items.value >= 3
                        }
                        #expect(condition.isLocked)
                        items.value = 0
                    }
                }
                for _ in 0..<3 {
                    try await waitUntil("the consumer waits") { condition.waitingCount == 1 }
                    try await condition.withLock {
                        items.value += 1
                        try condition.notifyAll()
                    }
                }
                try await waitForEvent(consumer, "the consumer saw three items")
                #expect(items.value == 0)
            }
            #expect(seen.value == [0, 1, 2, 3])
        }
    }

    // A condition over a given lock shares it: taking the lock is taking the condition.
    @Test func conditionOverAGivenLockSharesIt() throws {
        try withLoop { loop in
            try loop.runUntilComplete { () async throws -> Void in
                let lock = Lock()
                let condition = Condition(lock: lock)
                #expect(condition.lock === lock)
                try await lock.acquire()
                #expect(condition.isLocked)
                try condition.notify()
                try condition.release()
                #expect(!lock.isLocked)
                let waiter = loop.createTask {
                    try await condition.withLock { try await condition.wait() }
                }
                try await waitUntil("one waiter") { condition.waiterCount == 1 }
                #expect(!lock.isLocked)   // released while waiting
                try await lock.withLock { try condition.notify() }
                try await waitForEvent(waiter, "the waiter woke")
                #expect(!lock.isLocked)
            }
        }
    }
}
