//===----------------------------------------------------------------------===//
// swift-asyncio — Barrier: rounds, arrival indices, abort, reset, cancellation of a party.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

/// How a test task's barrier wait ended: its index, or the error's kind.
enum BarrierOutcome: Equatable, Sendable {
    case passed(Int)
    case broken
    case cancelled
    case failed(String)
}

func barrierOutcome(_ barrier: Barrier) async -> BarrierOutcome {
    do {
        return .passed(try await barrier.wait())
    } catch is BrokenBarrierError {
        return .broken
    } catch is CancellationError {
        return .cancelled
    } catch {
        return .failed("\(error)")
    }
}

@Suite(.timeLimit(.minutes(10)))
struct SyncBarrierTests {
    // Three parties, two rounds: nobody passes a round before all three arrived, each round
    // hands out the indices 0, 1, 2 by arrival, and the barrier is empty afterwards.
    @Test func threePartiesPassTwoRounds() throws {
        try withLoop { loop in
            let log = Box<[String]>([])
            let indices = Box<[[Int]]>([[], []])
            try loop.runUntilComplete { () async throws -> Void in
                let barrier = Barrier(parties: 3)
                #expect(barrier.parties == 3)
                // C arrives only once the test saw A and B waiting (a fixed delay for C let a
                // stalled loop see all three at once and never two).
                let letCIn = Event()
                let tasks = ["A", "B", "C"].enumerated().map { offset, name in
                    loop.createTask {
                        for round in 0..<2 {
                            if round == 0 && name == "C" {
                                try await letCIn.wait()
                            } else if round == 0 {
                                try await sleep(for: .milliseconds(2 * (offset + 1)))
                            }
                            log.value.append("arrive \(round) \(name)")
                            let index = try await barrier.wait()
                            log.value.append("pass \(round) \(name)")
                            indices.value[round].append(index)
                        }
                    }
                }
                try await waitUntil("two parties waiting") { barrier.nWaiting == 2 }
                #expect(!log.value.contains { $0.hasPrefix("pass") })
                letCIn.set()
                for task in tasks { try await waitForEvent(task, "a party finished both rounds") }
                #expect(barrier.nWaiting == 0)
                #expect(!barrier.isBroken)
            }
            for round in 0..<2 {
                let arrivals = log.value.indices.filter { log.value[$0].hasPrefix("arrive \(round)") }
                let passes = log.value.indices.filter { log.value[$0].hasPrefix("pass \(round)") }
                #expect(arrivals.count == 3 && passes.count == 3)
                #expect((arrivals.max() ?? .max) < (passes.min() ?? .min))
                #expect(indices.value[round].sorted() == [0, 1, 2])
            }
            // Round 0: A, then B (timers 2 ms apart), then C (let in after them).
            #expect(Array(log.value.prefix(3)) == ["arrive 0 A", "arrive 0 B", "arrive 0 C"])
        }
    }

    // The tripping party comes straight back for the next round before the other party has
    // left: it waits while the round drains and gets index 0 of the next round (asyncio:
    // the same log, state draining with one party inside at the second wait).
    @Test func aPartyComingBackWhileTheRoundDrainsWaitsForTheNextRound() throws {
        try withLoop { loop in
            let log = Box<[String]>([])
            try loop.runUntilComplete { () async throws -> Void in
                let barrier = Barrier(parties: 2)
                let first = loop.createTask {
                    let index = try await barrier.wait()
                    log.value.append("first \(index)")
                }
                try await waitUntil("one party waiting") { barrier.nWaiting == 1 }
                let tripper = loop.createTask {
                    let index = try await barrier.wait()
                    log.value.append("tripper \(index), \(barrier)")
                    log.value.append("tripper \(try await barrier.wait())")
                }
                try await waitForEvent(first, "the first party passed")
                try await waitUntil("the next round fills") { barrier.nWaiting == 1 }
                #expect(!tripper.isDone)
                #expect(try await barrier.wait() == 1)
                try await waitForEvent(tripper, "the tripper passed the next round")
            }
            #expect(log.value == ["tripper 1, Barrier(draining, waiters: 0/2)", "first 0", "tripper 0"])
        }
    }

    // abort() makes the waiters throw BrokenBarrierError, and every later wait too, until a
    // reset.
    @Test func abortBreaksTheBarrierForWaitersAndLaterCallers() throws {
        try withLoop { loop in
            let outcomes = try loop.runUntilComplete { () async throws -> [BarrierOutcome] in
                let barrier = Barrier(parties: 3)
                let tasks = (0..<2).map { _ in loop.createTask { await barrierOutcome(barrier) } }
                try await waitUntil("two parties waiting") { barrier.nWaiting == 2 }
                barrier.abort()
                #expect(barrier.isBroken)
                #expect(barrier.nWaiting == 0)
                var outcomes: [BarrierOutcome] = []
                for task in tasks { outcomes.append(try await waitForEvent(task, "a waiter left")) }
                outcomes.append(await barrierOutcome(barrier))
                #expect(barrier.isBroken)
                barrier.reset()
                #expect(!barrier.isBroken)
                let again = (0..<3).map { _ in loop.createTask { await barrierOutcome(barrier) } }
                var indices: [BarrierOutcome] = []
                for task in again { indices.append(try await waitForEvent(task, "a party passed")) }
                #expect(indices == [.passed(0), .passed(1), .passed(2)])
                return outcomes
            }
            #expect(outcomes == [.broken, .broken, .broken])
        }
    }

    // reset() makes the current waiters throw BrokenBarrierError; the barrier is not broken
    // and the next round fills afresh.
    @Test func resetBreaksTheCurrentWaitersAndStartsAfresh() throws {
        try withLoop { loop in
            let outcomes = try loop.runUntilComplete { () async throws -> [BarrierOutcome] in
                let barrier = Barrier(parties: 3)
                let tasks = (0..<2).map { _ in loop.createTask { await barrierOutcome(barrier) } }
                try await waitUntil("two parties waiting") { barrier.nWaiting == 2 }
                barrier.reset()
                #expect(barrier.nWaiting == 0)
                #expect(!barrier.isBroken)
                var outcomes: [BarrierOutcome] = []
                for task in tasks { outcomes.append(try await waitForEvent(task, "a waiter left")) }
                let again = (0..<3).map { _ in loop.createTask { await barrierOutcome(barrier) } }
                for task in again { outcomes.append(try await waitForEvent(task, "a party passed")) }
                #expect(barrier.nWaiting == 0)
                return outcomes
            }
            #expect(outcomes == [.broken, .broken, .passed(0), .passed(1), .passed(2)])
        }
    }

    // A cancelled party leaves with CancellationError without breaking the barrier, which
    // then waits for one party more. The indices are asyncio's: [cancelled, 1, 1, 2]
    // (asyncio 3.11-3.13 give the same, an index is counted from the parties inside).
    @Test func cancelledPartyLeavesWithoutBreakingTheBarrier() throws {
        try withLoop { loop in
            let outcomes = try loop.runUntilComplete { () async throws -> [BarrierOutcome] in
                let barrier = Barrier(parties: 3)
                let tasks = (0..<2).map { _ in loop.createTask { await barrierOutcome(barrier) } }
                try await waitUntil("two parties waiting") { barrier.nWaiting == 2 }
                tasks[0].cancel()
                #expect(try await waitForEvent(tasks[0], "the cancelled party left") == .cancelled)
                #expect(barrier.nWaiting == 1)
                #expect(!barrier.isBroken)
                let more = (0..<2).map { _ in loop.createTask { await barrierOutcome(barrier) } }
                var outcomes: [BarrierOutcome] = [.cancelled]
                for task in [tasks[1]] + more { outcomes.append(try await waitForEvent(task, "a party passed")) }
                return outcomes
            }
            #expect(outcomes == [.cancelled, .passed(1), .passed(1), .passed(2)])
        }
    }

    // A barrier of one party never waits.
    @Test func singlePartyBarrierPassesAtOnce() throws {
        try withLoop { loop in
            try loop.runUntilComplete { () async throws -> Void in
                let barrier = Barrier(parties: 1)
                #expect(try await barrier.wait() == 0)
                #expect(try await barrier.wait() == 0)
                #expect(barrier.nWaiting == 0)
            }
        }
    }
}
