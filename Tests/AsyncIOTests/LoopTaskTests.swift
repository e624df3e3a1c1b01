//===----------------------------------------------------------------------===//
// swift-asyncio — LoopTask and the helpers: sleep, gather, waitFor, shield, wait, asCompleted.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

@Suite(.timeLimit(.minutes(10)))
struct LoopTaskTests {
    // Every step of a task, before and after awaits, runs on the loop thread.
    @Test func taskStepsRunOnTheLoopThread() throws {
        try withLoop { loop in
            let onLoop = try loop.runUntilComplete { () async throws -> [Bool] in
                var seen = [loop.inLoopThread]
                try await sleep(for: .milliseconds(1))
                seen.append(loop.inLoopThread)
                _ = try await loop.runInExecutor { 1 }.value
                seen.append(loop.inLoopThread)
                await Task.yield()
                seen.append(loop.inLoopThread)
                return seen
            }
            #expect(onLoop == [true, true, true, true])
        }
    }

    // A task's body does not start inside createTask; it starts on a later pass.
    @Test func createTaskDoesNotRunTheBodyInline() throws {
        try withLoop { loop in
            let started = Box(false)
            let task = loop.createTask { started.value = true }
            #expect(!started.value)
            try loop.runUntilComplete(task)
            #expect(started.value)
        }
    }

    // Cancelling a task delivers CancellationError to its awaiter and marks it cancelled.
    @Test func cancellingATaskDeliversCancellationErrorToItsAwaiter() throws {
        try withLoop { loop in
            let timersBefore = loop.liveTimerCount
            let reachedEnd = Box(false)
            let sleeper = loop.createTask {
                try await sleep(for: .seconds(30))
                reachedEnd.value = true
            }
            let outcome = try loop.runUntilComplete { () async -> String in
                loop.callLater(after: .milliseconds(10)) { sleeper.cancel() }
                do {
                    try await sleeper.value
                    return "value"
                } catch is CancellationError {
                    return "cancelled"
                } catch {
                    return "other: \(error)"
                }
            }
            #expect(outcome == "cancelled")
            #expect(sleeper.isCancelled)
            #expect(!reachedEnd.value)
            #expect(loop.liveTimerCount == timersBefore)   // the sleep's timer was cancelled
        }
    }

    // A task cancelled before its first step never runs its body.
    @Test func taskCancelledBeforeStartNeverRuns() throws {
        try withLoop { loop in
            let ran = Box(false)
            let task = loop.createTask { ran.value = true }
            #expect(task.cancel())
            #expect(task.isCancelling)
            #expect(throws: CancellationError.self) { try loop.runUntilComplete(task) }
            #expect(!ran.value)
            #expect(!task.cancel())
        }
    }

    // The loop keeps running tasks alive and lists them in allTasks until they finish.
    @Test func loopKeepsTasksAliveAndListsThem() throws {
        try withLoop { loop in
            let finished = Box(0)
            for i in 0..<5 {
                loop.createTask(name: "worker-\(i)") {
                    try await sleep(for: .milliseconds(5))
                    finished.value += 1
                }
            }   // no references kept
            #expect(loop.allTasks.count == 5)
            #expect(Set(loop.allTasks.map(\.name)) == Set((0..<5).map { "worker-\($0)" }))
            try loop.runUntilComplete { try await sleep(for: .milliseconds(50)) }
            #expect(finished.value == 5)
            #expect(loop.allTasks.isEmpty)
        }
    }

    // LoopTask.current names the running task; default names are Task-N.
    @Test func currentTaskIsTheRunningTask() throws {
        try withLoop { loop in
            let names = try loop.runUntilComplete { () async throws -> [String] in
                let inner = loop.createTask { LoopTask<Int>.current?.name ?? "none" }
                let named = loop.createTask(name: "custom") { LoopTask<Int>.current?.name ?? "none" }
                return [try await inner.value, try await named.value]
            }
            #expect(names[0].hasPrefix("Task-"))
            #expect(names[1] == "custom")
            #expect(LoopTask<Int>.current == nil)
        }
    }

    // LoopTask.current names the loop task whose step runs, and the body of a scope inside it;
    // a Swift task of its own (an async let child, a plain Task on the loop started by the
    // body) is not that loop task, and neither is a callback.
    @Test func currentTaskIsNilInSwiftTasksOfTheirOwn() throws {
        try withLoop { loop in
            let seen = try loop.runUntilComplete { () async throws -> [String] in
                let task = loop.createTask(name: "owner") { () async throws -> [String] in
                    func name() -> String { LoopTask<Void>.current?.name ?? "none" }
                    var seen = ["body: \(name())"]
                    async let child: String = {
                        try await sleep(for: .milliseconds(1))
                        return "async let: \(name())"
                    }()
                    seen.append(try await child)
                    let plain = Task(executorPreference: loop.taskExecutor) { () async throws -> String in
                        try await sleep(for: .milliseconds(1))
                        return "plain Task: \(name())"
                    }
                    seen.append(try await plain.value)
                    seen.append(try await timeout(after: .seconds(60)) { _ in
                        try await sleep(for: .milliseconds(1))
                        return "timeout body: \(name())"
                    })
                    let callback = Future<String>(loop: loop)
                    loop.callSoon { callback.complete(.success("callback: \(name())")) }
                    seen.append(try await callback.value)
                    seen.append("body after awaits: \(name())")
                    return seen
                }
                return try await task.value
            }
            #expect(seen == [
                "body: owner", "async let: none", "plain Task: none", "timeout body: owner",
                "callback: none", "body after awaits: owner",
            ])
        }
    }

    // A timeout scope entered by a Task.immediate that a loop task starts (inside the task's
    // step, so the loop runs that task's job) runs for that Swift task, not for the loop task:
    // its body outlives the loop task here, and a later task takes the freed live slot. The
    // body's LoopTask.current is nil, never that later task.
    @Test func scopeOfAnImmediateTaskIsNotTheNextTaskInTheSlot() throws {
        try withLoop { loop in
            let seen = try loop.runUntilComplete { () async throws -> String in
                let gate = Future<Void>(loop: loop)
                let seen = Future<String>(loop: loop)
                let first = loop.createTask(name: "first") { () async -> Void in
                    Task.immediate(executorPreference: loop.taskExecutor) {
                        try await timeout(after: .seconds(60)) { _ in
                            try await gate.value
                            seen.complete(.success(LoopTask<Void>.current?.name ?? "none"))
                        }
                    }
                }
                try await first.value
                // "first" ended; "second" takes its live slot while the scope's body waits.
                let second = loop.createTask(name: "second") { () async throws -> String in
                    gate.complete(.success(()))
                    return try await seen.value
                }
                return try await second.value
            }
            #expect(seen == "none")
        }
    }

    // A timeout scope entered in an eager task's first step (inside its creator's step) runs
    // for the eager task: its body sees it as current, not the creator.
    @Test func scopeInAnEagerFirstStepRunsForTheEagerTask() throws {
        try withLoop { loop in
            let seen = try loop.runUntilComplete { () async throws -> String in
                let eager = loop.createTask(name: "eager", eager: true) { () async throws -> String in
                    try await timeout(after: .seconds(60)) { _ in
                        LoopTask<Void>.current?.name ?? "none"
                    }
                }
                return try await eager.value
            }
            #expect(seen == "eager")
        }
    }

    // LoopTask.current holds in every step of the body (after awaits too), for tasks created
    // outside any task (a loop callback), eager ones (their first step inside createTask) and
    // nested ones, and the creator's own current task is unchanged after createTask.
    @Test func currentTaskHoldsForEveryKindOfCreation() throws {
        try withLoop { loop in
            let seen = Box<[String]>([])
            func record(_ label: String) {
                seen.value.append("\(label): \(LoopTask<Void>.current?.name ?? "none")")
            }
            let done = Future<Void>(loop: loop)
            loop.callSoon {
                record("callback")
                let outer = loop.createTask(name: "outer") { () async throws -> Void in
                    record("outer")
                    let inner = loop.createTask(name: "inner") { () async throws -> Void in
                        record("inner")
                        try await sleep(for: .milliseconds(1))
                        record("inner after await")
                    }
                    record("outer after createTask")
                    let eager = loop.createTask(name: "eager", eager: true) { () async throws -> Void in
                        record("eager")
                        try await sleep(for: .milliseconds(1))
                        record("eager after await")
                    }
                    record("outer after eager createTask")
                    try await inner.value
                    try await eager.value
                    record("outer after awaits")
                }
                record("callback after createTask")
                outer._whenDone { _ in done.complete(.success(())) }
            }
            try loop.runUntilComplete(done)
            // The two sleeps may end in either order; everything else is fixed.
            #expect(seen.value.count == 10)
            #expect(Array(seen.value.prefix(7)) == [
                "callback: none",
                "callback after createTask: none",
                "outer: outer",
                "outer after createTask: outer",
                "eager: eager",
                "outer after eager createTask: outer",
                "inner: inner",
            ])
            #expect(Set(seen.value.dropFirst(7).prefix(2)) == ["eager after await: eager", "inner after await: inner"])
            #expect(seen.value.last == "outer after awaits: outer")
        }
    }

    // A task created inside the body of a Swift task group (a child's context) sees itself as
    // current.
    @Test func createTaskInsideATaskGroupBody() throws {
        try withLoop { loop in
            let names = try loop.runUntilComplete { () async throws -> [String] in
                try await withThrowingTaskGroup(of: String.self) { group in
                    let task = loop.createTask(name: "in group") { LoopTask<Int>.current?.name ?? "none" }
                    group.addTask { "child" }
                    var names = [try await task.value]
                    for try await name in group { names.append(name) }
                    return names
                }
            }
            #expect(names == ["in group", "child"])
        }
    }

    // A task's own wait on a future is covered: it installs no cancellation handler, and the
    // task's cancel(message:) cancels the future directly (as the handler would), so the
    // awaiter hears CancellationError and the future is cancelled.
    @Test func aTasksOwnFutureWaitIsCoveredAndItsCancelCancelsTheFuture() throws {
        try withLoop { loop in
            let future = Future<Int>(loop: loop)
            let task = loop.createTask { () async throws -> String in
                do {
                    _ = try await future.value
                    return "value"
                } catch is CancellationError {
                    return "cancelled"
                }
            }
            let outcome = try loop.runUntilComplete { () async throws -> [String] in
                try await waitUntil("the task waits on the future") { task.hasCoveredWait }
                task.cancel()
                try await waitUntil("the cancelled task ends") { task.isDone }
                return [
                    try await task.value,
                    future.isCancelled ? "future cancelled" : "future not cancelled",
                    task.hasCoveredWait ? "wait still registered" : "wait gone",
                ]
            }
            #expect(outcome == ["cancelled", "future cancelled", "wait gone"])
        }
    }

    // A task already cancelled (here by itself) that awaits a pending future cancels it at
    // once and hears CancellationError, as with a cancellation handler.
    @Test func aCancelledTaskAwaitingAFutureCancelsIt() throws {
        try withLoop { loop in
            let future = Future<Int>(loop: loop)
            let task = loop.createTask { () async throws -> String in
                LoopTask<String>.current?.cancel(message: "stop")
                do {
                    _ = try await future.value
                    return "value"
                } catch is CancellationError {
                    return "cancelled"
                }
            }
            let outcome = try loop.runUntilComplete(task)
            #expect(outcome == "cancelled")
            #expect(future.isCancelled)
        }
    }

    // A task that cancels its own Swift task (through withUnsafeCurrentTask) and then waits
    // does not wait: a future it awaits is cancelled, an event wait throws, as their
    // cancellation handlers would make them.
    @Test func aTaskCancelledThroughItsSwiftTaskDoesNotWait() throws {
        try withLoop { loop in
            let future = Future<Int>(loop: loop)
            let event = Event()
            let queue = Queue<Int>()
            let task = loop.createTask { () async throws -> [String] in
                withUnsafeCurrentTask { $0?.cancel() }
                var seen: [String] = []
                do {
                    _ = try await queue.get()
                    seen.append("queue: item")
                } catch is CancellationError {
                    seen.append("queue: cancelled")
                }
                do {
                    _ = try await future.value
                    seen.append("future: value")
                } catch is CancellationError {
                    seen.append("future: cancelled")
                }
                do {
                    try await event.wait()
                    seen.append("event: set")
                } catch is CancellationError {
                    seen.append("event: cancelled")
                }
                return seen
            }
            let seen = try loop.runUntilComplete { () async throws -> [String] in
                // Bounded: a wait that missed the cancellation would sit until unblocked here.
                do {
                    try await waitUntil("the cancelled task ends") { task.isDone }
                } catch {
                    if !future.isDone { try future.setResult(0) }
                    event.set()
                    try queue.putNowait(0)
                    _ = try await task.value
                    throw error
                }
                return try await task.value
            }
            #expect(seen == ["queue: cancelled", "future: cancelled", "event: cancelled"])
            #expect(future.isCancelled)
        }
    }

    // A task started with `Task.immediate` inside a task's step runs its first step inside
    // that step; its wait there is its own, not the outer task's: it is not covered,
    // cancelling it ends its wait (its own handler cancels the future), and the outer task's
    // cancellation is not involved.
    @Test func aTaskStartedImmediatelyInsideAStepWaitsWithItsOwnHandler() throws {
        try withLoop { loop in
            let future = Future<Int>(loop: loop)
            let seen = Box<[String]>([])
            let outer = loop.createTask { () async throws -> Void in
                let inner = Task.immediate(executorPreference: loop.taskExecutor) {
                    do {
                        _ = try await future.value
                        seen.value.append("inner got a value")
                    } catch {
                        seen.value.append("inner: \(type(of: error))")
                    }
                }
                let outerTask = LoopTask<Void>.current as? LoopTask<Void>
                seen.value.append(outerTask?.hasCoveredWait == true ? "outer covered" : "outer not covered")
                inner.cancel()
                // Bounded: had the wait been taken for the outer task's, nothing would end it.
                try await waitUntil("the inner task's wait ends") { seen.value.count == 2 }
                seen.value.append(future.isCancelled ? "future cancelled" : "future pending")
                if !future.isDone { try future.setResult(0) }
                await inner.value
            }
            try loop.runUntilComplete(outer)
            #expect(seen.value == ["outer not covered", "inner: CancellationError", "future cancelled"])
        }
    }

    // A loop task that was cancelled starts a task with `Task.immediate`, whose first step
    // runs inside the cancelled task's step: that task was not cancelled, so its waits (on a
    // future, a queue, an event) neither fail nor cancel what they wait for.
    @Test(arguments: ["future", "queue", "event"])
    func aTaskStartedImmediatelyInsideACancelledTasksStepIsNotCancelled(primitive: String) throws {
        try withLoop { loop in
            let future = Future<Int>(loop: loop)
            let queue = Queue<Int>()
            let event = Event()
            let seen = Box<[String]>([])
            let outer = loop.createTask { () async throws -> Void in
                LoopTask<Void>.current?.cancel()
                let inner = Task.immediate(executorPreference: loop.taskExecutor) {
                    do {
                        switch primitive {
                        case "future": seen.value.append("got \(try await future.value)")
                        case "queue": seen.value.append("got \(try await queue.get())")
                        default:
                            try await event.wait()
                            seen.value.append("got set")
                        }
                    } catch {
                        seen.value.append("inner: \(type(of: error))")
                    }
                }
                if future.isCancelled { seen.value.append("future cancelled") }
                if !future.isDone { try future.setResult(5) }
                try queue.putNowait(5)
                event.set()
                await inner.value
            }
            _ = try? loop.runUntilComplete(outer)
            #expect(seen.value == [primitive == "event" ? "got set" : "got 5"])
        }
    }

    // A body's own cancellation handler around a covered wait runs after the wait has ended,
    // as it did after the per-wait handler (the innermost) before: a handler that completes
    // the awaited future is too late, the task hears CancellationError. A plain Swift task
    // (its wait has a handler) behaves the same.
    @Test(arguments: [true, false])
    func aBodysCancellationHandlerRunsAfterTheWaitEnded(loopTask: Bool) throws {
        try withLoop { loop in
            let future = Future<Int>(loop: loop)
            let waiting = Box(false)
            @Sendable func body() async -> String {
                do {
                    let value = try await withTaskCancellationHandler {
                        waiting.value = true
                        return try await future.value
                    } onCancel: {
                        loop.execute { try? future.setResult(7) }
                    }
                    return "value \(value)"
                } catch {
                    return "\(type(of: error))"
                }
            }
            let outcome = try loop.runUntilComplete { () async throws -> String in
                if loopTask {
                    let task = loop.createTask { await body() }
                    try await waitUntil("the task waits") { task.hasCoveredWait }
                    task.cancel()
                    return try await task.value
                }
                let task = Task(executorPreference: loop.taskExecutor) { await body() }
                try await waitUntil("the task waits") { waiting.value }
                task.cancel()
                return await task.value
            }
            #expect(outcome == "CancellationError")
        }
    }

    // createTask's body is nonisolated(nonsending); a plain async function or a stored
    // closure of plain async type converts to it and runs on the loop as a literal does.
    @Test func plainAsyncFunctionsAndStoredClosuresAreTaskBodies() throws {
        @Sendable func work() async throws -> Int {
            try await sleep(for: .milliseconds(1))
            return EventLoop.current == nil ? -1 : 7
        }
        try withLoop { loop in
            let stored: @Sendable () async throws -> Int = { EventLoop.current === loop ? 5 : -1 }
            let results = try loop.runUntilComplete { () async throws -> [Int] in
                [try await loop.createTask(work).value, try await loop.createTask(stored).value]
            }
            #expect(results == [7, 5])
        }
    }

    // An error thrown by a task body reaches its awaiter unchanged.
    @Test func taskErrorReachesAwaiter() throws {
        try withLoop { loop in
            let task = loop.createTask { () async throws -> Int in throw TestError(id: 3) }
            #expect(throws: TestError(id: 3)) { try loop.runUntilComplete(task) }
            #expect(task.error as? TestError == TestError(id: 3))
        }
    }

    // gather returns results in the order given, not the order of completion.
    @Test func gatherReturnsResultsInOrder() throws {
        try withLoop { loop in
            let result = try loop.runUntilComplete { () async throws -> [Int] in
                // They finish in the order 10, 20, 30 (each waits for the one before, no
                // timers), listed as 30, 10, 20: yielding in list order would give [30, 10, 20].
                let ten = loop.createTask { () async throws -> Int in 10 }
                let twenty = loop.createTask { () async throws -> Int in _ = try await ten.value; return 20 }
                let thirty = loop.createTask { () async throws -> Int in _ = try await twenty.value; return 30 }
                let tasks = [thirty, ten, twenty]
                return try await gather(tasks)
            }
            #expect(result == [30, 10, 20])
        }
    }

    // gather throws the first error in time; gatherResults collects every outcome.
    @Test func gatherPropagatesFirstErrorAndGatherResultsCollects() throws {
        try withLoop { loop in
            let (first, results) = try loop.runUntilComplete { () async throws -> (String, [String]) in
                // The second task fails first; the first fails only once the second is done
                // (a chain, not timers: no timing on a loaded machine can swap them). A gather
                // that threw the first error in list order would throw 30.
                func make() -> [LoopTask<Int>] {
                    let early = loop.createTask { () async throws -> Int in throw TestError(id: 10) }
                    let late = loop.createTask { () async throws -> Int in
                        _ = try? await early.value
                        throw TestError(id: 30)
                    }
                    return [late, early, loop.createTask { 5 }]
                }
                var first = ""
                let batch = make()
                do { _ = try await gather(batch) } catch { first = "\(error)" }
                let results = await gatherResults(make()).map { result -> String in
                    switch result {
                    case .success(let value): return "ok \(value)"
                    case .failure(let error): return "\(error)"
                    }
                }
                _ = await gatherResults(batch)   // the first batch finished too
                return (first, results)
            }
            #expect(first == "\(TestError(id: 10))")
            #expect(results == ["\(TestError(id: 30))", "\(TestError(id: 10))", "ok 5"])
        }
    }

    // gather over futures of different types returns a typed tuple.
    @Test func gatherOfDifferentTypes() throws {
        try withLoop { loop in
            let (number, text) = try loop.runUntilComplete { () async throws -> (Int, String) in
                let a = loop.createTask { 1 }
                let b = loop.createTask { "two" }
                return try await gather(a, b)
            }
            #expect(number == 1 && text == "two")
        }
    }

    // waitFor times out, cancels the inner task and waits for it to finish.
    @Test func waitForTimesOutAndCancelsTheInnerTask() throws {
        try withLoop { loop in
            let sawCancellation = Box(false)
            let inner = loop.createTask { () async throws -> Int in
                do {
                    try await sleep(for: .seconds(30))
                } catch {
                    sawCancellation.value = true
                    throw error
                }
                return 1
            }
            let outcome = try loop.runUntilComplete { () async -> String in
                do {
                    _ = try await waitFor(inner, timeout: .milliseconds(20))
                    return "value"
                } catch is TimeoutError {
                    return "timeout, inner done: \(inner.isDone)"
                } catch {
                    return "other: \(error)"
                }
            }
            #expect(outcome == "timeout, inner done: true")
            #expect(inner.isCancelled)
            #expect(sawCancellation.value)
        }
    }

    // waitFor returns the value when the work finishes in time.
    @Test func waitForReturnsValueInTime() throws {
        try withLoop { loop in
            let value = try loop.runUntilComplete {
                try await waitFor(timeout: .seconds(10)) {
                    try await sleep(for: .milliseconds(5))
                    return 11
                }
            }
            #expect(value == 11)
        }
    }

    // shield: cancelling the awaiter leaves the shielded task running to completion.
    @Test func shieldProtectsInnerTaskFromCancellation() throws {
        try withLoop { loop in
            let inner = loop.createTask { () async throws -> Int in
                try await sleep(for: .milliseconds(30))
                return 8
            }
            let awaiter = loop.createTask { () async throws -> Int in
                try await shield(inner).value
            }
            loop.callLater(after: .milliseconds(5)) { awaiter.cancel() }
            #expect(throws: CancellationError.self) { try loop.runUntilComplete(awaiter) }
            let value = try loop.runUntilComplete(inner)
            #expect(value == 8)
        }
    }

    // wait splits futures into done and pending per returnWhen, without cancelling any.
    @Test func waitReturnsWhenAsked() throws {
        try withLoop { loop in
            let (firstDone, firstPending, errDone, allDone) = try loop.runUntilComplete {
                () async throws -> (Int, Int, Int, Int) in
                // Each task ends when the test lets it (not on a timer: a loop stalled past
                // the next timer's deadline would see two done where one is asked for).
                let gates = (0..<3).map { _ in Future<Void>(loop: loop) }
                let tasks = gates.enumerated().map { i, gate in
                    loop.createTask { () async throws -> Int in
                        try await gate.value
                        if i == 1 { throw TestError(id: 40) }
                        return i
                    }
                }
                try gates[0].setResult(())
                let (done1, pending1) = try await wait(tasks, returnWhen: .firstCompleted)
                try gates[1].setResult(())
                let (done2, _) = try await wait(tasks, returnWhen: .firstException)
                try gates[2].setResult(())
                let (done3, _) = try await wait(tasks, timeout: .seconds(10))
                return (done1.count, pending1.count, done2.count, done3.count)
            }
            #expect(firstDone == 1 && firstPending == 2)
            #expect(errDone == 2)
            #expect(allDone == 3)
        }
    }

    // wait with a timeout returns the pending futures still running.
    @Test func waitTimeoutLeavesFuturesRunning() throws {
        try withLoop { loop in
            // The task ends only once the test lets it, after wait timed out (a 100 ms sleep
            // could end first on a loop stalled that long).
            let release = Future<Void>(loop: loop)
            let slow = loop.createTask { () async throws -> Int in
                try await release.value
                return 1
            }
            let pendingCount = try loop.runUntilComplete { () async throws -> Int in
                let (_, pending) = try await wait([slow], timeout: .milliseconds(5))
                return pending.count
            }
            #expect(pendingCount == 1)
            #expect(!slow.isCancelled)
            try release.setResult(())
            #expect(try loop.runUntilComplete(slow) == 1)
        }
    }

    // asCompleted yields futures in completion order and throws TimeoutError at its deadline.
    @Test func asCompletedYieldsInCompletionOrder() throws {
        try withLoop { loop in
            let (order, timedOut) = try loop.runUntilComplete { () async throws -> ([Int], Bool) in
                // They finish in the order 10, 20, 30 (each waits for the one before, no
                // timers), listed as 30, 10, 20: yielding in list order would give [30, 10, 20].
                let ten = loop.createTask { () async throws -> Int in 10 }
                let twenty = loop.createTask { () async throws -> Int in _ = try await ten.value; return 20 }
                let thirty = loop.createTask { () async throws -> Int in _ = try await twenty.value; return 30 }
                let tasks = [thirty, ten, twenty]
                var order: [Int] = []
                for try await future in asCompleted(tasks) {
                    order.append(try future.result())
                }
                let slow = loop.createTask { try await sleep(for: .seconds(30)); return 0 }
                var timedOut = false
                do {
                    for try await _ in asCompleted([slow], timeout: .milliseconds(10)) {}
                } catch is TimeoutError {
                    timedOut = true
                }
                slow.cancel()
                return (order, timedOut)
            }
            #expect(order == [10, 20, 30])
            #expect(timedOut)
        }
    }

    // sleep(for:) off a loop says so instead of hanging.
    @Test func sleepWithoutALoopThrows() async {
        await #expect(throws: EventLoopError(.noRunningLoop, "")) {
            try await sleep(for: .milliseconds(1))
        }
    }

    // runUntilComplete reports a loop stopped before the future was done.
    @Test func runUntilCompleteReportsEarlyStop() throws {
        try withLoop { loop in
            let future = Future<Int>(loop: loop)
            loop.callSoon { loop.stop() }
            #expect(throws: EventLoopError(.stoppedBeforeCompletion, "")) { try loop.runUntilComplete(future) }
        }
    }

    // EventLoop.run runs the body, cancels leftover tasks and closes the loop.
    @Test func runCancelsLeftoverTasksAndCloses() throws {
        let leftover = Box<LoopTask<Void>?>(nil)
        let loopBox = Box<EventLoop?>(nil)
        let value = try EventLoop.run { loop in
            loopBox.value = loop
            leftover.value = loop.createTask { try await sleep(for: .seconds(30)) }
            return 3
        }
        #expect(value == 3)
        #expect(leftover.value?.isCancelled == true)
        #expect(loopBox.value?.isClosed == true)
    }
}
