//===----------------------------------------------------------------------===//
// swift-asyncio — LoopTaskGroup: asyncio.TaskGroup's rules.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

@Suite(.timeLimit(.minutes(10)))
struct LoopTaskGroupTests {
    /// A loop-side wait that cancellation cannot cut short (for clean-up that takes time).
    static func uncancellableWait(_ loop: EventLoop, _ delay: Duration) async {
        let done = Future<Void>(loop: loop)
        loop.callLater(after: delay) { done.complete(.success(())) }
        await done.waitDone()
    }

    // Every child succeeds: the scope waits for all of them (also those still running when
    // the body returned) and returns the body's value; the children are named LoopTasks,
    // listed in allTasks while they run.
    @Test func allChildrenSucceed() throws {
        try withLoop { loop in
            let children = Box<[LoopTask<Int>]>([])
            let listed = Box<[String]>([])
            let value = try loop.runUntilComplete { () async throws -> String in
                try await withLoopTaskGroup { group in
                    for i in 1...3 {
                        let child = try group.createTask(name: "child-\(i)") { () async throws -> Int in
                            try await sleep(for: .milliseconds(10 * i))
                            return i * 10
                        }
                        children.value.append(child)
                    }
                    listed.value = loop.allTasks.map(\.name).filter { $0.hasPrefix("child-") }.sorted()
                    return "body done"
                }
            }
            #expect(value == "body done")
            #expect(listed.value == ["child-1", "child-2", "child-3"])
            #expect(children.value.map(\.isDone) == [true, true, true])
            #expect(try children.value.map { try $0.result() } == [10, 20, 30])
            #expect(loop.allTasks.isEmpty)
        }
    }

    // The first failure cancels the siblings and the body; the scope waits for them and
    // throws TaskGroupError with every failure, in order (a sibling that fails while being
    // cancelled counts too); the caller's task is not left cancelled.
    @Test func firstFailureCancelsSiblingsAndBodyAndAllFailuresAreReported() throws {
        try withLoop { loop in
            let log = Box<[String]>([])
            let outcome = try loop.runUntilComplete { () async throws -> [String] in
                var seen: [String] = []
                do {
                    try await withLoopTaskGroup { group in
                        try group.createTask(name: "fails") { () async throws -> Void in
                            try await sleep(for: .milliseconds(10))
                            throw TestError(id: 1)
                        }
                        try group.createTask(name: "sleeper") { () async throws -> Void in
                            do {
                                try await sleep(for: .seconds(30))
                            } catch {
                                log.value.append("sleeper cancelled")
                                throw error
                            }
                        }
                        try group.createTask(name: "fails-on-cancel") { () async throws -> Void in
                            do {
                                try await sleep(for: .seconds(30))
                            } catch {
                                throw TestError(id: 3)
                            }
                        }
                        do {
                            try await sleep(for: .seconds(30))
                        } catch {
                            log.value.append("body cancelled")
                            throw error
                        }
                    }
                    seen.append("no error")
                } catch let failure as TaskGroupError {
                    seen.append("errors: \(failure.errors.compactMap { ($0 as? TestError)?.id })")
                    seen.append("count: \(failure.errors.count)")
                }
                seen.append("caller cancelled: \(Task.isCancelled)")
                try await sleep(for: .milliseconds(1))
                seen.append("slept")
                return seen
            }
            #expect(outcome == ["errors: [1, 3]", "count: 2", "caller cancelled: false", "slept"])
            #expect(log.value.sorted() == ["body cancelled", "sleeper cancelled"])
        }
    }

    // After a failure the scope waits for children that catch the cancellation and take time
    // to finish (their clean-up is done when the scope throws).
    @Test func waitsForChildrenThatTakeTimeToFinishAfterCancellation() throws {
        try withLoop { loop in
            let cleanedUp = Box(false)
            let outcome = try loop.runUntilComplete { () async throws -> [String] in
                var seen: [String] = []
                do {
                    try await withLoopTaskGroup { group in
                        try group.createTask { () async throws -> Void in
                            do {
                                try await sleep(for: .seconds(30))
                            } catch {
                                await Self.uncancellableWait(loop, .milliseconds(80))
                                cleanedUp.value = true
                            }
                        }
                        try group.createTask { () async throws -> Void in
                            try await sleep(for: .milliseconds(5))
                            throw TestError(id: 2)
                        }
                    }
                } catch let failure as TaskGroupError {
                    seen.append("errors: \(failure.errors.compactMap { ($0 as? TestError)?.id })")
                    seen.append("cleaned up: \(cleanedUp.value)")
                }
                return seen
            }
            #expect(outcome == ["errors: [2]", "cleaned up: true"])
        }
    }

    // Cancelling the caller cancels the body and every child; once they have ended the scope
    // throws CancellationError.
    @Test func callerCancellationCancelsChildrenAndRethrowsCancellation() throws {
        try withLoop { loop in
            let children = Box<[LoopTask<Void>]>([])
            let inner = Box("nothing")
            let slowCleanupDone = Box(false)
            let task = loop.createTask { () async throws -> Void in
                do {
                    try await withLoopTaskGroup { group in
                        children.value.append(try group.createTask { try await sleep(for: .seconds(30)) })
                        children.value.append(try group.createTask { () async throws -> Void in
                            do {
                                try await sleep(for: .seconds(30))
                            } catch {
                                await Self.uncancellableWait(loop, .milliseconds(50))
                                slowCleanupDone.value = true
                                throw error
                            }
                        })
                        try await sleep(for: .seconds(30))
                    }
                    inner.value = "no error"
                } catch {
                    inner.value = "\(type(of: error)), clean-up done: \(slowCleanupDone.value)"
                    throw error
                }
            }
            loop.callLater(after: .milliseconds(20)) { task.cancel() }
            #expect(throws: CancellationError.self) { try loop.runUntilComplete(task) }
            #expect(inner.value == "CancellationError, clean-up done: true")
            #expect(children.value.map(\.isCancelled) == [true, true])
        }
    }

    // Cancelling the caller after the body returned, while children run: they are cancelled
    // and the scope throws CancellationError.
    @Test func callerCancellationWhileWaitingForChildren() throws {
        try withLoop { loop in
            let child = Box<LoopTask<Void>?>(nil)
            let task = loop.createTask { () async throws -> Void in
                try await withLoopTaskGroup { group in
                    child.value = try group.createTask { try await sleep(for: .seconds(30)) }
                }
            }
            loop.callLater(after: .milliseconds(20)) { task.cancel() }
            #expect(throws: CancellationError.self) { try loop.runUntilComplete(task) }
            #expect(child.value?.isCancelled == true)
        }
    }

    // An error thrown by the body cancels the children and is reported in TaskGroupError.
    @Test func bodyErrorCancelsChildrenAndIsReported() throws {
        try withLoop { loop in
            let child = Box<LoopTask<Void>?>(nil)
            let outcome = try loop.runUntilComplete { () async throws -> String in
                do {
                    try await withLoopTaskGroup { group in
                        child.value = try group.createTask { try await sleep(for: .seconds(30)) }
                        try await sleep(for: .milliseconds(1))
                        throw TestError(id: 9)
                    }
                    return "no error"
                } catch let failure as TaskGroupError {
                    return "errors: \(failure.errors.compactMap { ($0 as? TestError)?.id })"
                }
            }
            #expect(outcome == "errors: [9]")
            #expect(child.value?.isCancelled == true)
        }
    }

    // A cancelled child is not a failure: the others go on and the scope succeeds.
    @Test func cancelledChildIsNotAFailure() throws {
        try withLoop { loop in
            let value = try loop.runUntilComplete { () async throws -> Int in
                try await withLoopTaskGroup { group in
                    let doomed = try group.createTask { try await sleep(for: .seconds(30)) }
                    let survivor = try group.createTask { () async throws -> Int in
                        try await sleep(for: .milliseconds(20))
                        return 7
                    }
                    try await sleep(for: .milliseconds(1))
                    doomed.cancel()
                    return try await survivor.value
                }
            }
            #expect(value == 7)
        }
    }

    // createTask is refused while the group shuts down after a failure, and after the scope.
    @Test func createTaskAfterAbortOrEndIsAnError() throws {
        try withLoop { loop in
            let groupBox = Box<LoopTaskGroup?>(nil)
            let outcome = try loop.runUntilComplete { () async throws -> [String] in
                var seen: [String] = []
                do {
                    try await withLoopTaskGroup { group in
                        groupBox.value = group
                        try group.createTask { () async throws -> Void in throw TestError(id: 4) }
                        do {
                            try await sleep(for: .seconds(30))
                        } catch {
                            do {
                                try group.createTask { 1 }
                                seen.append("created while aborting")
                            } catch {
                                seen.append("refused while aborting")
                            }
                        }
                    }
                } catch let failure as TaskGroupError {
                    seen.append("errors: \(failure.errors.compactMap { ($0 as? TestError)?.id })")
                }
                return seen
            }
            #expect(outcome == ["refused while aborting", "errors: [4]"])
            let group = try #require(groupBox.value)
            #expect(throws: InvalidStateError.self) { try group.createTask { 1 } }
            #expect(loop.allTasks.isEmpty)
        }
    }

    // After the body returned, a child may still add a sibling; the scope waits for it.
    @Test func childrenMayAddSiblingsWhileTheScopeWaits() throws {
        try withLoop { loop in
            let sibling = Box<LoopTask<String>?>(nil)
            try loop.runUntilComplete { () async throws -> Void in
                try await withLoopTaskGroup { group in
                    _ = try group.createTask { () async throws -> Void in
                        try await sleep(for: .milliseconds(10))
                        sibling.value = try group.createTask { () async throws -> String in
                            try await sleep(for: .milliseconds(20))
                            return "late sibling"
                        }
                    }
                }
            }
            let late = try #require(sibling.value)
            #expect(late.isDone)
            #expect(try late.result() == "late sibling")
        }
    }

    // A scope with no children returns the body's value at once.
    @Test func emptyGroupReturnsTheBodysValue() throws {
        try withLoop { loop in
            let value = try loop.runUntilComplete { () async throws -> Int in
                try await withLoopTaskGroup { _ in 5 }
            }
            #expect(value == 5)
        }
    }

    // Off a loop there is no loop to run the children on.
    @Test func groupOffALoopThrowsNoRunningLoop() async {
        await #expect(throws: EventLoopError(.noRunningLoop, "")) {
            try await withLoopTaskGroup { _ in 1 }
        }
    }
}
