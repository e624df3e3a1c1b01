//===----------------------------------------------------------------------===//
// swift-asyncio — eager tasks: createTask(eager: true).
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

@Suite(.timeLimit(.minutes(10)))
struct EagerTaskTests {
    // The first step runs inside createTask (its side effect is visible when it returns);
    // what follows the first await runs later, on the loop's thread.
    @Test func eagerTaskRunsItsFirstStepBeforeCreateTaskReturns() throws {
        try withLoop { loop in
            let steps = Box<[String]>([])
            let outcome = try loop.runUntilComplete { () async throws -> [String] in
                let task = loop.createTask(name: "eager", eager: true) { () async throws -> Int in
                    steps.value.append("first step as \(LoopTask<Int>.current?.name ?? "none"), on loop: \(loop.inLoopThread)")
                    try await sleep(for: .milliseconds(1))
                    steps.value.append("second step, on loop: \(loop.inLoopThread)")
                    return 5
                }
                var seen = ["after createTask: \(steps.value.count) step(s), done: \(task.isDone)"]
                seen.append("value: \(try await task.value)")
                return seen
            }
            #expect(outcome == ["after createTask: 1 step(s), done: false", "value: 5"])
            #expect(steps.value == ["first step as eager, on loop: true", "second step, on loop: true"])
        }
    }

    // The control: a task created without eager start has not run when createTask returns.
    @Test func lazyTaskHasNotRunWhenCreateTaskReturns() throws {
        try withLoop { loop in
            let ran = Box(false)
            let outcome = try loop.runUntilComplete { () async throws -> [Bool] in
                let task = loop.createTask(eager: false) { ran.value = true }
                let before = ran.value
                try await task.value
                return [before, ran.value]
            }
            #expect(outcome == [false, true])
        }
    }

    // An eager task that never suspends is done when createTask returns and was never left
    // in allTasks; a throwing one is done with its error.
    @Test func eagerTaskThatNeverSuspendsIsDoneAtOnce() throws {
        try withLoop { loop in
            let outcome = try loop.runUntilComplete { () async throws -> [String] in
                let quick = loop.createTask(eager: true) { 6 * 7 }
                let failing = loop.createTask(eager: true) { () async throws -> Int in throw TestError(id: 3) }
                var seen = ["quick done: \(quick.isDone)", "failing done: \(failing.isDone)"]
                seen.append("quick: \(try quick.result())")
                seen.append("failing: \((failing.error as? TestError)?.id ?? -1)")
                seen.append("listed: \(loop.allTasks.contains { $0 === quick || $0 === failing })")
                return seen
            }
            #expect(outcome == ["quick done: true", "failing done: true", "quick: 42", "failing: 3", "listed: false"])
        }
    }

    // Eager start also works from a plain loop callback (not inside a task).
    @Test func eagerTaskFromALoopCallback() throws {
        try withLoop { loop in
            let seen = Box<[String]>([])
            let finished = Future<Void>(loop: loop)
            loop.callSoon {
                let task = loop.createTask(eager: true) { () async throws -> Void in
                    seen.value.append("first step")
                    try await sleep(for: .milliseconds(1))
                    seen.value.append("second step")
                }
                seen.value.append("createTask returned")
                task._whenDone { _ in finished.complete(.success(())) }
            }
            try loop.runUntilComplete(finished)
            #expect(seen.value == ["first step", "createTask returned", "second step"])
        }
    }

    // Not on the loop's thread (setting up a loop that is not running), eager start falls
    // back to the normal start: the body runs on the loop once it runs.
    @Test func eagerFallsBackToANormalStartOffTheLoopThread() throws {
        try withLoop { loop in
            let steps = Box<[Bool]>([])
            let task = loop.createTask(eager: true) { () async throws -> Void in
                steps.value.append(loop.inLoopThread)
            }
            #expect(steps.value.isEmpty)
            try loop.runUntilComplete(task)
            #expect(steps.value == [true])
        }
    }

    // A cancel request made during the eager first step takes effect at its first suspension.
    @Test func cancelDuringTheEagerStepTakesEffect() throws {
        try withLoop { loop in
            let reachedEnd = Box(false)
            let outcome = try loop.runUntilComplete { () async -> String in
                let task = loop.createTask(eager: true) { () async throws -> Void in
                    LoopTask<Void>.current?.cancel(message: "self")
                    try await sleep(for: .seconds(30))
                    reachedEnd.value = true
                }
                do {
                    try await task.value
                    return "value"
                } catch is CancellationError {
                    return "cancelled: \(task.cancelMessage ?? "-")"
                } catch {
                    return "other"
                }
            }
            #expect(outcome == "cancelled: self")
            #expect(!reachedEnd.value)
        }
    }
}
