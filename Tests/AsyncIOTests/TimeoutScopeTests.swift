//===----------------------------------------------------------------------===//
// swift-asyncio — timeout scopes: asyncio.timeout / timeout_at semantics.
//===----------------------------------------------------------------------===//

import Testing
#if canImport(Glibc)
import Glibc
#endif

@testable import AsyncIO

@Suite(.timeLimit(.minutes(10)))
struct TimeoutScopeTests {
    // The deadline passes: the body's sleep is cancelled, the scope throws TimeoutError, and
    // the caller's own task is not left cancelled (it can sleep afterwards).
    @Test func expiryCancelsTheBodyAndThrowsTimeoutError() throws {
        try withLoop { loop in
            let timersBefore = loop.liveTimerCount
            let bodySaw = Box("nothing")
            let outcome = try loop.runUntilComplete { () async throws -> [String] in
                var seen: [String] = []
                do {
                    try await timeout(after: .milliseconds(20)) { _ in
                        do {
                            try await sleep(for: .seconds(30))
                            bodySaw.value = "woke up"
                        } catch is CancellationError {
                            bodySaw.value = "cancelled"
                            throw CancellationError()
                        }
                    }
                    seen.append("no error")
                } catch is TimeoutError {
                    seen.append("TimeoutError")
                }
                seen.append("caller cancelled: \(Task.isCancelled)")
                try await sleep(for: .milliseconds(1))
                seen.append("slept")
                return seen
            }
            #expect(outcome == ["TimeoutError", "caller cancelled: false", "slept"])
            #expect(bodySaw.value == "cancelled")
            #expect(loop.liveTimerCount == timersBefore)
        }
    }

    // A body that finishes first returns its value; the timer is cancelled.
    @Test func bodyFinishingFirstReturnsItsValue() throws {
        try withLoop { loop in
            let timersBefore = loop.liveTimerCount
            let scopeBox = Box<TimeoutScope?>(nil)
            let value = try loop.runUntilComplete { () async throws -> Int in
                try await timeout(after: .seconds(30)) { scope in
                    scopeBox.value = scope
                    try await sleep(for: .milliseconds(1))
                    return 42
                }
            }
            #expect(value == 42)
            #expect(scopeBox.value?.expired == false)
            #expect(loop.liveTimerCount == timersBefore)
        }
    }

    // The deadline passes while a body that ignores cancellation finishes anyway: no error,
    // the value is returned, and the scope says it expired.
    @Test func bodyFinishingDespiteExpiryReturnsItsValue() throws {
        try withLoop { loop in
            let scopeBox = Box<TimeoutScope?>(nil)
            let value = try loop.runUntilComplete { () async throws -> String in
                try await timeout(at: loop.time() - 1) { scope in
                    scopeBox.value = scope
                    return "finished"
                }
            }
            #expect(value == "finished")
            #expect(scopeBox.value?.expired == true)
        }
    }

    // Moving the deadline later lets a body finish that the first deadline would have cut.
    @Test func rescheduleLaterLetsTheBodyFinish() throws {
        try withLoop { loop in
            let outcome = try loop.runUntilComplete { () async throws -> [String] in
                try await timeout(after: .milliseconds(30)) { scope in
                    let later = loop.time() + 30
                    try scope.reschedule(later)
                    var seen = ["deadline moved: \(scope.deadline == later)"]
                    try await sleep(for: .milliseconds(100))
                    seen.append("expired: \(scope.expired)")
                    return seen
                }
            }
            #expect(outcome == ["deadline moved: true", "expired: false"])
        }
    }

    // Moving the deadline earlier cuts the body sooner than the first deadline.
    @Test func rescheduleEarlierExpiresSooner() throws {
        try withLoop { loop in
            let start = ContinuousClock.now
            let outcome = try loop.runUntilComplete { () async throws -> String in
                do {
                    try await timeout(after: .seconds(30)) { scope in
                        try scope.reschedule(loop.time() + 0.02)
                        try await sleep(for: .seconds(30))
                    }
                    return "no error"
                } catch is TimeoutError {
                    return "TimeoutError"
                }
            }
            #expect(outcome == "TimeoutError")
            #expect(ContinuousClock.now - start < .seconds(20))
        }
    }

    // reschedule(nil) removes the deadline.
    @Test func rescheduleNilRemovesTheDeadline() throws {
        try withLoop { loop in
            let timersBefore = loop.liveTimerCount
            let outcome = try loop.runUntilComplete { () async throws -> [String] in
                try await timeout(after: .milliseconds(20)) { scope in
                    try scope.reschedule(nil)
                    var seen = ["deadline: \(String(describing: scope.deadline))"]
                    seen.append("timers: \(loop.liveTimerCount - timersBefore)")
                    try await sleep(for: .milliseconds(80))
                    seen.append("expired: \(scope.expired)")
                    return seen
                }
            }
            #expect(outcome == ["deadline: nil", "timers: 0", "expired: false"])
        }
    }

    // No deadline at first (after: nil), one added later fires.
    @Test func scopeWithoutDeadlineCanGetOneLater() throws {
        try withLoop { loop in
            let outcome = try loop.runUntilComplete { () async throws -> [String] in
                var seen: [String] = []
                do {
                    try await timeout(after: nil) { scope in
                        seen.append("deadline: \(String(describing: scope.deadline))")
                        try scope.reschedule(loop.time() + 0.01)
                        try await sleep(for: .seconds(30))
                    }
                } catch is TimeoutError {
                    seen.append("TimeoutError")
                }
                return seen
            }
            #expect(outcome == ["deadline: nil", "TimeoutError"])
        }
    }

    // `expired` is false before the deadline, true after (in the body and after the scope);
    // rescheduling an expired or ended scope throws InvalidStateError.
    @Test func expiredFlagAndRescheduleAfterExpiry() throws {
        try withLoop { loop in
            let scopeBox = Box<TimeoutScope?>(nil)
            let outcome = try loop.runUntilComplete { () async throws -> [String] in
                var seen: [String] = []
                do {
                    try await timeout(after: .milliseconds(10)) { scope in
                        scopeBox.value = scope
                        seen.append("before: \(scope.expired)")
                        do {
                            try await sleep(for: .seconds(30))
                        } catch {
                            seen.append("in body after expiry: \(scope.expired)")
                            do {
                                try scope.reschedule(loop.time() + 60)
                                seen.append("rescheduled")
                            } catch {
                                seen.append("reschedule refused")
                            }
                            throw error
                        }
                    }
                } catch is TimeoutError {
                    seen.append("TimeoutError")
                }
                return seen
            }
            #expect(outcome == ["before: false", "in body after expiry: true", "reschedule refused", "TimeoutError"])
            let scope = try #require(scopeBox.value)
            #expect(scope.expired)
            #expect(throws: InvalidStateError.self) { try scope.reschedule(nil) }
        }
    }

    // The caller's cancellation propagates as CancellationError, not TimeoutError.
    @Test func callerCancellationStaysCancellationError() throws {
        try withLoop { loop in
            let inner = Box("nothing")
            let task = loop.createTask { () async throws -> Void in
                do {
                    try await timeout(after: .seconds(30)) { _ in
                        try await sleep(for: .seconds(30))
                    }
                    inner.value = "no error"
                } catch {
                    inner.value = "\(type(of: error))"
                    throw error
                }
            }
            loop.callLater(after: .milliseconds(20)) { task.cancel() }
            #expect(throws: CancellationError.self) { try loop.runUntilComplete(task) }
            #expect(inner.value == "CancellationError")
            #expect(task.isCancelled)
        }
    }

    // The caller is cancelled and the deadline passes before the body ends: the caller's
    // cancellation wins (asyncio: a pending outer cancel is not turned into TimeoutError).
    @Test func callerCancellationWinsOverAnExpiredDeadline() throws {
        try withLoop { loop in
            let inner = Box("nothing")
            let scopeBox = Box<TimeoutScope?>(nil)
            let task = loop.createTask { () async throws -> Void in
                do {
                    try await timeout(after: .milliseconds(40)) { scope in
                        scopeBox.value = scope
                        do {
                            try await sleep(for: .seconds(30))
                        } catch {
                            // Slow clean-up that outlives the deadline; not cancellable.
                            let cleanup = Future<Void>(loop: loop)
                            loop.callLater(after: .milliseconds(100)) { cleanup.complete(.success(())) }
                            await cleanup.waitDone()
                            throw error
                        }
                    }
                    inner.value = "no error"
                } catch {
                    inner.value = "\(type(of: error))"
                    throw error
                }
            }
            loop.callLater(after: .milliseconds(5)) { task.cancel() }
            #expect(throws: CancellationError.self) { try loop.runUntilComplete(task) }
            #expect(inner.value == "CancellationError")
            #expect(scopeBox.value?.expired == true)
        }
    }

    // Nested scopes: the inner deadline passes first; only the inner scope throws
    // TimeoutError, the outer body sees it as an ordinary error and goes on.
    @Test func nestedTimeoutsOnlyTheInnerOneFires() throws {
        try withLoop { loop in
            let scopes = Box<[TimeoutScope]>([])
            let outcome = try loop.runUntilComplete { () async throws -> [String] in
                try await timeout(after: .seconds(30)) { outer in
                    scopes.value.append(outer)
                    var seen: [String] = []
                    do {
                        try await timeout(after: .milliseconds(10)) { inner in
                            scopes.value.append(inner)
                            try await sleep(for: .seconds(30))
                        }
                    } catch is TimeoutError {
                        seen.append("inner TimeoutError")
                    }
                    seen.append("outer cancelled: \(Task.isCancelled)")
                    try await sleep(for: .milliseconds(1))
                    seen.append("outer body went on")
                    return seen
                }
            }
            #expect(outcome == ["inner TimeoutError", "outer cancelled: false", "outer body went on"])
            #expect(scopes.value.map(\.expired) == [false, true])
        }
    }

    // Nested scopes where the outer deadline passes first: the outer scope throws
    // TimeoutError; the inner one passes the cancellation on as CancellationError.
    @Test func nestedTimeoutsTheOuterOneFires() throws {
        try withLoop { loop in
            let innerSaw = Box("nothing")
            let outcome = try loop.runUntilComplete { () async throws -> String in
                do {
                    try await timeout(after: .milliseconds(10)) { _ in
                        do {
                            try await timeout(after: .seconds(30)) { _ in
                                try await sleep(for: .seconds(30))
                            }
                        } catch {
                            innerSaw.value = "\(type(of: error))"
                            throw error
                        }
                    }
                    return "no error"
                } catch is TimeoutError {
                    return "outer TimeoutError"
                }
            }
            #expect(outcome == "outer TimeoutError")
            #expect(innerSaw.value == "CancellationError")
        }
    }

    // The body's other errors pass through unchanged, and the body runs with the caller's
    // task-locals (LoopTask.current is the caller) on the loop's thread.
    @Test func bodyErrorsPassThroughAndTheBodyRunsAsTheCaller() throws {
        try withLoop { loop in
            let seen = Box<[String]>([])
            let task = loop.createTask(name: "caller") { () async throws -> Void in
                do {
                    try await timeout(after: .seconds(30)) { _ in
                        seen.value.append("current: \(LoopTask<Void>.current?.name ?? "none")")
                        seen.value.append("on loop: \(loop.inLoopThread)")
                        try await sleep(for: .milliseconds(1))
                        throw TestError(id: 5)
                    }
                } catch let error as TestError {
                    seen.value.append("error \(error.id)")
                }
            }
            try loop.runUntilComplete(task)
            #expect(seen.value == ["current: caller", "on loop: true", "error 5"])
        }
    }

    // Many scopes in a row: each one's child ends before the scope returns.
    @Test func manyScopesInARow() throws {
        try withLoop { loop in
            let timersBefore = loop.liveTimerCount
            let sum = try loop.runUntilComplete { () async throws -> Int in
                var sum = 0
                for i in 0..<500 {
                    sum += try await timeout(after: .seconds(30)) { _ in
                        if i % 2 == 0 { await Task.yield() }
                        return i
                    }
                }
                return sum
            }
            #expect(sum == 124_750)
            #expect(loop.liveTimerCount == timersBefore)
        }
    }

    // Off a loop there is no clock to time out with.
    @Test func timeoutOffALoopThrowsNoRunningLoop() async {
        await #expect(throws: EventLoopError(.noRunningLoop, "")) {
            try await timeout(after: .seconds(1)) { _ in 1 }
        }
    }

    // A scope entered from a task that is not on the loop (a Task.immediate without the loop's
    // executor preference, started inside a step: it finds EventLoop.current) traps with a
    // message instead of touching the scope from the global pool.
    @Test func scopeEnteredFromATaskOffTheLoopTraps() async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            guard let loop = try? EventLoop() else { exit(0) }
            loop.callLater(after: .seconds(5)) { loop.stop() }
            _ = loop.createTask {
                Task.immediate {
                    _ = try? await timeout(after: .seconds(1)) { _ in }
                }
            }
            try? loop.runForever()
            exit(0)
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.contains("a timeout or task group scope was entered from a task that does not run on the loop"))
    }
}
