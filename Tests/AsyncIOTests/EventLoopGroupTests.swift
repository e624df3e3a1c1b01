//===----------------------------------------------------------------------===//
// swift-asyncio — EventLoopGroup.
//===----------------------------------------------------------------------===//

import Synchronization
import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

@Suite(.timeLimit(.minutes(10)))
struct EventLoopGroupTests {
    // next() hands the loops out round robin; each runs on its own named thread.
    @Test func nextIsRoundRobinAndEachLoopHasItsThread() async throws {
        let group = try EventLoopGroup(loops: 3, name: "grp")
        defer { group.shutdown() }
        let picked = (0..<6).map { _ in group.next() }
        #expect(picked.map(\.name) == ["grp-0", "grp-1", "grp-2", "grp-0", "grp-1", "grp-2"])
        for loop in group.loops {
            let name = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<String, any Error>) in
                do {
                    try loop.callSoonThreadSafe {
                        continuation.resume(returning: currentThreadName() + " \(loop.inLoopThread)")
                    }
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            #expect(name == "\(loop.name) true")
        }
    }

    // shutdown cancels the loops' tasks, lets them finish, and closes every loop.
    @Test func shutdownCancelsTasksAndClosesLoops() throws {
        let group = try EventLoopGroup(loops: 2)
        let cancelledCount = Counter()
        let started = Counter()
        for loop in group.loops {
            try loop.callSoonThreadSafe {
                loop.createTask {
                    started.increment()
                    do {
                        try await sleep(for: .seconds(60))
                    } catch is CancellationError {
                        cancelledCount.increment()
                    }
                }
            }
        }
        var waited = 0
        while started.value < 2 && waited < 10_000 {
            blockThread(seconds: 0.001)
            waited += 1
        }
        group.shutdown()
        group.shutdown()   // harmless
        #expect(cancelledCount.value == 2)
        #expect(group.loops.allSatisfy { $0.isClosed && !$0.isRunning })
        #expect(throws: EventLoopError.closedError) { try group.next().callSoonThreadSafe {} }
    }
}
