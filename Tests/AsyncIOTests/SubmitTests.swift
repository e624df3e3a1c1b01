//===----------------------------------------------------------------------===//
// swift-asyncio — EventLoop.submit when the loop goes away.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

@Suite(.timeLimit(.minutes(10)))
struct SubmitTests {
    // A task submitted from another thread that waits forever on a loop being shut down is
    // cancelled with the loop's other tasks: the caller hears CancellationError instead of
    // waiting forever (a Swift task whose executor was gone used to be stuck for good).
    @Test func submittedTaskEndsWhenItsLoopShutsDown() async throws {
        let group = try EventLoopGroup(loops: 1, name: "submit")
        let loop = group.loops[0]
        let (started, reportStart) = AsyncStream<Void>.makeStream()
        let waiting = Task {
            try await loop.submit {
                reportStart.yield()
                try await Future<Void>(loop: loop).value   // never completed
            }
        }
        for await _ in started { break }
        await group.shutdownGracefully(timeout: .seconds(5))
        await #expect(throws: CancellationError.self) { try await waiting.value }
    }

    // Submitting to a closed loop throws `closed` at once.
    @Test func submitToAClosedLoopThrowsClosed() async throws {
        let group = try EventLoopGroup(loops: 1, name: "closed")
        let loop = group.loops[0]
        await group.shutdownGracefully()
        await #expect(throws: EventLoopError(.closed, "")) { try await loop.submit { 1 } }
    }

    // The body's result and error come back; cancelling the caller cancels the body.
    @Test func resultErrorAndCancellation() async throws {
        let group = try EventLoopGroup(loops: 1, name: "submit")
        defer { group.shutdown() }
        let loop = group.loops[0]
        #expect(try await loop.submit { loop.inLoopThread } == true)
        await #expect(throws: TestError(id: 3)) { try await loop.submit { () throws -> Int in throw TestError(id: 3) } }
        let (started, reportStart) = AsyncStream<Void>.makeStream()
        let waiting = Task {
            try await loop.submit {
                reportStart.yield()
                try await sleep(for: .seconds(600))
            }
        }
        for await _ in started { break }
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
    }
}
