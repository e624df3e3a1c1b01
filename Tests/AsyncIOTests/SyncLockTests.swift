//===----------------------------------------------------------------------===//
// swift-asyncio — Lock: FIFO order, cancellation of waiters, wake-ups passed on, misuse.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// How a test task's wait for a primitive ended.
enum SyncOutcome: Equatable, Sendable {
    case acquired
    case cancelled
    case failed(String)
}

/// Runs `body`, mapping CancellationError to `.cancelled` and other errors to `.failed`.
func syncOutcome(_ body: () async throws -> Void) async -> SyncOutcome {
    do {
        try await body()
        return .acquired
    } catch is CancellationError {
        return .cancelled
    } catch {
        return .failed("\(error)")
    }
}

/// Starts `body` as a plain Swift task on `loop` (not a ``LoopTask``: its waits keep their own
/// cancellation handlers, which a loop task's own waits do without).
func startPlainTask(on loop: EventLoop, _ body: @escaping @Sendable () async -> SyncOutcome) -> Task<SyncOutcome, Never> {
    Task(executorPreference: loop.taskExecutor, operation: body)
}

/// Cancels `task` from a thread of its own (not the loop's) and waits for that thread: the
/// task's cancellation handler runs off the loop, and nothing on the loop runs meanwhile
/// (the task cannot take a step in between).
func cancelFromAnotherThread(_ task: Task<SyncOutcome, Never>) {
    OSThread.spawn(name: "canceller") { task.cancel() }.join()
}

@Suite(.timeLimit(.minutes(10)))
struct SyncLockTests {
    // Uncontended acquire/release flips the flag; releasing an unlocked lock throws.
    @Test func releaseOfAnUnlockedLockThrows() throws {
        try withLoop { loop in
            try loop.runUntilComplete { () async throws -> Void in
                let lock = Lock()
                #expect(!lock.isLocked)
                #expect(throws: LockNotHeld.self) { try lock.release() }
                try await lock.acquire()
                #expect(lock.isLocked)
                try lock.release()
                #expect(!lock.isLocked)
                #expect(throws: LockNotHeld.self) { try lock.release() }
                #expect(lock.waiters == nil)   // never contended: no waiter queue, no loop
            }
        }
    }

    // Waiters get the lock in arrival order; a task asking right after release(), before
    // the woken waiter ran, queues behind every waiter instead of jumping ahead.
    @Test func waitersGetTheLockInFIFOOrder() throws {
        try withLoop { loop in
            let order = Box<[Int]>([])
            try loop.runUntilComplete { () async throws -> Void in
                let lock = Lock()
                try await lock.acquire()
                var tasks: [LoopTask<Void>] = []
                for i in 0..<5 {
                    tasks.append(loop.createTask {
                        try await lock.acquire()
                        order.value.append(i)
                        try await sleep(for: .milliseconds(1))   // hold it across a suspension
                        try lock.release()
                    })
                }
                try await waitUntil("five waiters") { lock.waiterCount == 5 }
                try lock.release()
                #expect(!lock.isLocked)   // free, but promised to the first waiter
                try await lock.acquire()
                order.value.append(-1)
                try lock.release()
                for task in tasks { try await waitForEvent(task, "a waiter finished") }
                #expect(!lock.isLocked)
                #expect(lock.waiterCount == 0)
            }
            #expect(order.value == [0, 1, 2, 3, 4, -1])
        }
    }

    // A waiting task that is cancelled gets CancellationError and never the lock; the
    // others still get it in order.
    @Test func cancelledWaiterGetsCancellationErrorAndOthersProceed() throws {
        try withLoop { loop in
            let order = Box<[String]>([])
            let outcomes = try loop.runUntilComplete { () async throws -> [SyncOutcome] in
                let lock = Lock()
                try await lock.acquire()
                let tasks = ["A", "B", "C"].map { name in
                    loop.createTask {
                        await syncOutcome {
                            try await lock.acquire()
                            order.value.append(name)
                            try lock.release()
                        }
                    }
                }
                try await waitUntil("three waiters") { lock.waiterCount == 3 }
                tasks[1].cancel()
                #expect(try await waitForEvent(tasks[1], "B cancelled") == .cancelled)
                #expect(lock.isLocked && lock.waiterCount == 2)
                try lock.release()
                var outcomes: [SyncOutcome] = []
                for task in tasks { outcomes.append(try await waitForEvent(task, "a waiter finished")) }
                #expect(!lock.isLocked)
                return outcomes
            }
            #expect(outcomes == [.acquired, .cancelled, .acquired])
            #expect(order.value == ["A", "C"])
        }
    }

    // asyncio's _wake_up_first: a waiter woken by release() and cancelled before it ran
    // gives up its turn, and the next waiter gets the lock; nothing is lost.
    @Test func wokenThenCancelledWaiterPassesTheLockOn() throws {
        try withLoop { loop in
            let order = Box<[String]>([])
            let outcomes = try loop.runUntilComplete { () async throws -> [SyncOutcome] in
                let lock = Lock()
                try await lock.acquire()
                let tasks = ["A", "B", "C"].map { name in
                    loop.createTask {
                        await syncOutcome {
                            try await lock.acquire()
                            order.value.append(name)
                            try lock.release()
                        }
                    }
                }
                try await waitUntil("three waiters") { lock.waiterCount == 3 }
                try lock.release()   // A is woken...
                tasks[0].cancel()    // ...and cancelled before it runs
                var outcomes: [SyncOutcome] = []
                for task in tasks { outcomes.append(try await waitForEvent(task, "a waiter finished")) }
                #expect(!lock.isLocked)
                #expect(lock.waiterCount == 0)
                return outcomes
            }
            #expect(outcomes == [.cancelled, .acquired, .acquired])
            #expect(order.value == ["B", "C"])
        }
    }

    // The same with the cancellation coming from another thread, to plain Swift tasks (a
    // loop task is cancelled on its loop): their handlers run off the loop and hop to it; the
    // woken waiter still hands its turn on.
    @Test func wokenWaiterCancelledFromAnotherThreadPassesTheLockOn() throws {
        try withLoop { loop in
            let outcomes = try loop.runUntilComplete { () async throws -> [SyncOutcome] in
                let lock = Lock()
                try await lock.acquire()
                let tasks = (0..<2).map { _ in
                    startPlainTask(on: loop) {
                        await syncOutcome {
                            try await lock.acquire()
                            try lock.release()
                        }
                    }
                }
                try await waitUntil("two waiters") { lock.waiterCount == 2 }
                try lock.release()
                cancelFromAnotherThread(tasks[0])
                var outcomes: [SyncOutcome] = []
                for task in tasks { outcomes.append(await task.value) }
                #expect(!lock.isLocked)
                return outcomes
            }
            #expect(outcomes == [.cancelled, .acquired])
        }
    }

    // A waiter cancelled from another thread while it waits leaves the queue; the lock stays
    // with its holder.
    @Test func waiterCancelledFromAnotherThreadLeavesTheQueue() throws {
        try withLoop { loop in
            try loop.runUntilComplete { () async throws -> Void in
                let lock = Lock()
                try await lock.acquire()
                let waiter = startPlainTask(on: loop) { await syncOutcome { try await lock.acquire() } }
                try await waitUntil("one waiter") { lock.waiterCount == 1 }
                cancelFromAnotherThread(waiter)
                #expect(await waiter.value == .cancelled)
                #expect(lock.isLocked)
                #expect(lock.waiterCount == 0)
                try lock.release()
                #expect(!lock.isLocked)
            }
        }
    }

    // A loop task waiting for the lock, cancelled the way another thread does it (a callback
    // handed to its loop calls cancel()): its wait, covered by the task (no handler of its
    // own), ends; it leaves the queue and the lock stays with its holder.
    @Test func loopTaskWaiterCancelledThroughItsLoopLeavesTheQueue() throws {
        try withLoop { loop in
            try loop.runUntilComplete { () async throws -> Void in
                let lock = Lock()
                try await lock.acquire()
                let waiter = loop.createTask { await syncOutcome { try await lock.acquire() } }
                try await waitUntil("one waiter") { lock.waiterCount == 1 && waiter.hasCoveredWait }
                OSThread.spawn(name: "canceller") { _ = try? loop.callSoonThreadSafe { waiter.cancel() } }.join()
                #expect(try await waitForEvent(waiter, "the waiter cancelled") == .cancelled)
                #expect(lock.isLocked)
                #expect(lock.waiterCount == 0)
                try lock.release()
            }
        }
    }

    // Many waiters, some cancelled while waiting and some right after being woken: at most
    // one holder at a time, every other waiter gets the lock exactly once, none is stranded.
    @Test func mixedCancellationsNeverStrandAWaiter() throws {
        try withLoop { loop in
            let holders = Box(0)
            let maxHolders = Box(0)
            let outcomes = try loop.runUntilComplete { () async throws -> [SyncOutcome] in
                let lock = Lock()
                try await lock.acquire()
                let tasks = (0..<20).map { _ in
                    loop.createTask {
                        await syncOutcome {
                            try await lock.acquire()
                            holders.value += 1
                            maxHolders.value = max(maxHolders.value, holders.value)
                            await Task.yield()
                            holders.value -= 1
                            try lock.release()
                        }
                    }
                }
                try await waitUntil("twenty waiters") { lock.waiterCount == 20 }
                for i in stride(from: 3, to: 20, by: 5) { tasks[i].cancel() }   // while waiting
                try lock.release()
                tasks[0].cancel()                                               // woken, not run
                try await sleep(for: .milliseconds(1))
                for i in stride(from: 1, to: 20, by: 4) { tasks[i].cancel() }   // any state
                var outcomes: [SyncOutcome] = []
                for task in tasks { outcomes.append(try await waitForEvent(task, "a waiter finished")) }
                #expect(!lock.isLocked)
                #expect(lock.waiterCount == 0)
                return outcomes
            }
            #expect(maxHolders.value == 1)
            #expect(outcomes[0] == .cancelled)
            for i in stride(from: 3, to: 20, by: 5) { #expect(outcomes[i] == .cancelled) }
            #expect(outcomes.allSatisfy { $0 == .acquired || $0 == .cancelled })
            #expect(outcomes.contains(.acquired))
        }
    }

    // withLock releases the lock when the body returns, throws, or is cancelled.
    @Test func withLockReleasesOnEveryPath() throws {
        try withLoop { loop in
            try loop.runUntilComplete { () async throws -> Void in
                let lock = Lock()
                #expect(try await lock.withLock { lock.isLocked ? 7 : 0 } == 7)
                #expect(!lock.isLocked)
                await #expect(throws: TestError(id: 1)) {
                    try await lock.withLock { throw TestError(id: 1) }
                }
                #expect(!lock.isLocked)
                let sleeper = loop.createTask {
                    try await lock.withLock { try await sleep(for: .seconds(30)) }
                }
                try await waitUntil("the body runs") { lock.isLocked }
                sleeper.cancel()
                await #expect(throws: CancellationError.self) { try await waitForEvent(sleeper, "cancelled") }
                #expect(!lock.isLocked)
                // Cancelled while waiting for the lock: the body never runs.
                try await lock.acquire()
                let ran = Box(false)
                let waiter = loop.createTask { try await lock.withLock { ran.value = true } }
                try await waitUntil("one waiter") { lock.waiterCount == 1 }
                waiter.cancel()
                await #expect(throws: CancellationError.self) { try await waitForEvent(waiter, "cancelled") }
                #expect(!ran.value)
                #expect(lock.isLocked)
                try lock.release()
            }
        }
    }

    // Taking a free lock needs no loop; waiting for one off a loop throws noRunningLoop.
    @Test func waitingOffALoopThrowsNoRunningLoop() async throws {
        let lock = Lock()
        try await lock.acquire()
        await #expect(throws: EventLoopError(.noRunningLoop, "")) { try await lock.acquire() }
        try lock.release()
        #expect(!lock.isLocked)
    }

    // A lock bound to one loop (by a waiter there) traps when a task on another loop waits.
    @Test func waitingFromASecondLoopTraps() async {
        await #expect(processExitsWith: .failure) {
            guard let first = try? EventLoop(), let second = try? EventLoop() else { exit(0) }
            let lock = Lock()
            _ = try? first.runUntilComplete { () async throws -> Void in
                try await lock.acquire()
                let waiter = first.createTask { try await lock.acquire() }
                try await sleep(for: .milliseconds(5))   // the waiter binds the lock to `first`
                waiter.cancel()
                _ = try? await waiter.value
            }
            _ = try? second.runUntilComplete { try await lock.acquire() }   // must trap
            exit(0)
        }
    }
}
