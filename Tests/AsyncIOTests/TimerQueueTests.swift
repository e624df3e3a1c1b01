//===----------------------------------------------------------------------===//
// swift-asyncio — TimerQueue: order against a sorted reference, compaction, durations.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

@Suite(.timeLimit(.minutes(10)))
struct TimerQueueTests {
    /// A deterministic generator (xorshift64*), so a failure replays.
    struct Generator {
        var state: UInt64
        mutating func next(_ bound: UInt64) -> UInt64 {
            state ^= state >> 12
            state ^= state << 25
            state ^= state >> 27
            return (state &* 2_685_821_657_736_338_717) % bound
        }
    }

    private func entry(_ deadline: UInt64, _ sequence: UInt64) -> TimerEntry {
        TimerEntry(deadline: deadline, sequence: sequence, handle: Handle(loop: nil) {})
    }

    /// Inserts and pops interleaved, with many equal deadlines: every pop returns the least
    /// (deadline, sequence) still held, as a sorted list says.
    @Test(arguments: [1, 2, 7, 1000] as [UInt64])
    func popsInDeadlineThenSequenceOrder(deadlineRange: UInt64) throws {
        var generator = Generator(state: 0x9E37_79B9_7F4A_7C15 ^ deadlineRange)
        var heap = TimerQueue()
        var reference: [(UInt64, UInt64)] = []
        var sequence: UInt64 = 0
        for _ in 0..<5000 {
            if generator.next(3) < 2 || reference.isEmpty {
                sequence += 1
                let deadline = generator.next(deadlineRange)
                heap.insert(entry(deadline, sequence))
                reference.append((deadline, sequence))
            } else {
                reference.sort { $0 < $1 }
                let expected = reference.removeFirst()
                // #require: the first wrong pop ends the test (the rest would all differ).
                try #require(heap.earliestDeadline == expected.0)
                let popped = heap.popMin()
                try #require(popped?.deadline == expected.0)
                try #require(popped?.sequence == expected.1)
            }
            try #require(heap.count == reference.count)
        }
        reference.sort { $0 < $1 }
        var drained: [(UInt64, UInt64)] = []
        while let popped = heap.popMin() {
            drained.append((popped.deadline, popped.sequence))
        }
        let inOrder = drained.elementsEqual(reference, by: ==)
        #expect(inOrder, "drained \(drained.count) entries, expected \(reference.count) in order")
        #expect(heap.isEmpty && heap.earliestDeadline == nil && heap.popMin() == nil)
    }

    /// Removing entries anywhere (the loop's compaction of cancelled timers) leaves a heap
    /// that pops the rest in order.
    @Test func removeAllWhereKeepsTheRestInOrder() {
        var generator = Generator(state: 42)
        var heap = TimerQueue()
        for sequence in 1...3000 as ClosedRange<UInt64> {
            heap.insert(entry(generator.next(500), sequence))
        }
        heap.removeAll { $0.sequence % 3 != 0 }
        #expect(heap.count == 1000)
        var previous: (UInt64, UInt64) = (0, 0)
        var popped = 0
        while let next = heap.popMin() {
            #expect(next.sequence % 3 == 0)
            #expect(previous < (next.deadline, next.sequence))
            previous = (next.deadline, next.sequence)
            popped += 1
        }
        #expect(popped == 1000)
    }

    /// A loop whose heap is mostly cancelled timers compacts it on its next pass; the timers
    /// left still fire, in deadline order.
    @Test func loopCompactsAHeapOfCancelledTimers() throws {
        try withLoop { loop in
            loop.callLater(after: .milliseconds(800)) { loop.stop() }
            let before = loop.scheduledTimerCount
            var fired: [Int] = []
            var handles: [Handle] = []
            for i in 0..<300 {
                // Reverse order: the heap must reorder them.
                handles.append(loop.callLater(after: .milliseconds(400 - i)) { fired.append(i) })
            }
            for (i, handle) in handles.enumerated() where i % 10 != 0 {
                handle.cancel()
            }
            #expect(loop.scheduledTimerCount == before + 300)
            loop.callSoon {
                // The pass that ran this one compacted the heap first.
                #expect(loop.scheduledTimerCount == before + 30)
                #expect(loop.liveTimerCount == before + 30)
            }
            try loop.runForever()
            #expect(fired == Array(stride(from: 290, through: 0, by: -10)))
        }
    }

    @Test func durationsConvertToClampedNanoseconds() {
        #expect(Duration.zero.clampedNanoseconds == 0)
        #expect(Duration.nanoseconds(-5).clampedNanoseconds == 0)
        #expect(Duration.seconds(-3).clampedNanoseconds == 0)
        #expect(Duration(secondsComponent: 0, attosecondsComponent: 999_999_999).clampedNanoseconds == 0)
        #expect(Duration(secondsComponent: 0, attosecondsComponent: 1_000_000_000).clampedNanoseconds == 1)
        #expect(Duration.nanoseconds(7).clampedNanoseconds == 7)
        #expect(Duration.milliseconds(1500).clampedNanoseconds == 1_500_000_000)
        // Past 2^64 attoseconds (18.4 s): the count needs its high word.
        #expect(Duration.seconds(30).clampedNanoseconds == 30_000_000_000)
        #expect(Duration.seconds(18_446_744_073).clampedNanoseconds == 18_446_744_073_000_000_000)
        #expect(Duration.seconds(18_446_744_074).clampedNanoseconds == .max)
        #expect(Duration.seconds(Int64.max).clampedNanoseconds == .max)
    }
}
