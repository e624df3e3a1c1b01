//===----------------------------------------------------------------------===//
// swift-asyncio — LoopTask.cancel(message:), cancelMessage and cancelling().
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

@Suite(.timeLimit(.minutes(10)))
struct TaskCancelMessageTests {
    // The message reaches the awaiter (through cancelMessage) and the body itself.
    @Test func cancelMessageReachesTheAwaiterAndTheBody() throws {
        try withLoop { loop in
            let bodySaw = Box<String?>(nil)
            let worker = loop.createTask(name: "worker") { () async throws -> Int in
                do {
                    try await sleep(for: .seconds(30))
                    return 1
                } catch {
                    bodySaw.value = LoopTask<Int>.current?.cancelMessage
                    throw error
                }
            }
            let outcome = try loop.runUntilComplete { () async -> String in
                try? await sleep(for: .milliseconds(5))
                #expect(worker.cancel(message: "shutting down"))
                #expect(worker.isCancelling)
                do {
                    _ = try await worker.value
                    return "value"
                } catch is CancellationError {
                    return "cancelled: \(worker.cancelMessage ?? "no message")"
                } catch {
                    return "other: \(error)"
                }
            }
            #expect(outcome == "cancelled: shutting down")
            #expect(bodySaw.value == "shutting down")
            #expect(worker.isCancelled)
            #expect(worker.cancelling() == 1)
        }
    }

    // A task cancelled while it awaits another task cancels that one with its message, as
    // asyncio's Task.cancel(msg) cancels the future its task waits for; both end cancelled
    // and a plain future awaited the same way is simply cancelled.
    @Test func aTaskCancelledWhileAwaitingATaskHandsItsMessageOn() throws {
        try withLoop { loop in
            let inner = loop.createTask(name: "inner") { try await sleep(for: .seconds(30)) }
            let outer = loop.createTask(name: "outer") { try await inner.value }
            let future = Future<Int>(loop: loop)
            let other = loop.createTask(name: "other") { try await future.value }
            let seen = try loop.runUntilComplete { () async throws -> [String] in
                try await waitUntil("both wait") { outer.hasCoveredWait && other.hasCoveredWait }
                outer.cancel(message: "stop")
                other.cancel(message: "halt")
                try await waitUntil("all done") { inner.isDone && outer.isDone && other.isDone }
                return [
                    "inner: \(inner.isCancelled) \(inner.cancelMessage ?? "nil")",
                    "outer: \(outer.isCancelled) \(outer.cancelMessage ?? "nil")",
                    "future: \(future.isCancelled)",
                    "other: \(other.isCancelled) \(other.cancelMessage ?? "nil")",
                ]
            }
            #expect(seen == ["inner: true stop", "outer: true stop", "future: true", "other: true halt"])
        }
    }

    // Every request counts; the latest message wins; a request to a done task is refused and
    // changes nothing.
    @Test func cancellingCountsRequestsAndTheLatestMessageWins() throws {
        try withLoop { loop in
            let worker = loop.createTask { try await sleep(for: .seconds(30)) }
            #expect(worker.cancelling() == 0)
            #expect(worker.cancelMessage == nil)
            #expect(worker.cancel(message: "first"))
            #expect(worker.cancel(message: "second"))
            #expect(worker.cancelling() == 2)
            #expect(worker.cancelMessage == "second")
            #expect(throws: CancellationError.self) { try loop.runUntilComplete(worker) }
            #expect(!worker.cancel(message: "too late"))
            #expect(worker.cancelling() == 2)
            #expect(worker.cancelMessage == "second")
            #expect(!worker.isCancelling)
        }
    }

    // cancel() is cancel(message: nil): counted, no message; a task cancelled by its own
    // body (awaiting a cancelled future) has no request and no message.
    @Test func plainCancelAndSelfInflictedCancellationHaveNoMessage() throws {
        try withLoop { loop in
            let plain = loop.createTask { try await sleep(for: .seconds(30)) }
            #expect(plain.cancel())
            #expect(throws: CancellationError.self) { try loop.runUntilComplete(plain) }
            #expect(plain.cancelling() == 1)
            #expect(plain.cancelMessage == nil)

            let future = Future<Int>(loop: loop)
            future.cancel()
            let selfInflicted = loop.createTask { try await future.value }
            #expect(throws: CancellationError.self) { try loop.runUntilComplete(selfInflicted) }
            #expect(selfInflicted.isCancelled)
            #expect(selfInflicted.cancelling() == 0)
            #expect(selfInflicted.cancelMessage == nil)
        }
    }
}
