//===----------------------------------------------------------------------===//
// swift-asyncio — WriteQueue and FlowControl without sockets: a fake kernel takes any
// number of bytes per gathered send.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

@Suite
struct WriteQueueTests {
    /// What a fake gathered send saw: the bytes it took, in order.
    final class FakeKernel {
        var taken: [UInt8] = []
        /// Bytes to take per call (the rest is refused as EAGAIN when 0); -1 entries fail.
        var script: [Int]
        var calls = 0

        init(script: [Int]) { self.script = script }

        func send(_ iovecs: UnsafeMutablePointer<iovec>, _ count: Int) -> Int {
            calls += 1
            guard !script.isEmpty else { return 0 }
            let budget = script.removeFirst()
            if budget < 0 {
                errno = Int32(-budget)
                return -1
            }
            var left = budget
            var sent = 0
            for i in 0..<count where left > 0 {
                let take = min(left, iovecs[i].iov_len)
                let bytes = UnsafeRawBufferPointer(start: iovecs[i].iov_base, count: take)
                taken.append(contentsOf: bytes)
                left -= take
                sent += take
            }
            return sent
        }
    }

    // Partial sends that end inside a chunk, across chunks and in batches of at most
    // `capacity` iovecs deliver every byte once, in order.
    @Test func partialGatheredSendsDeliverEveryByteInOrder() {
        var queue = WriteQueue()
        var expected: [UInt8] = []
        for i in 0..<10 {
            let chunk = (0..<(i * 7 + 1)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }
            expected += chunk
            chunk.withUnsafeBytes { queue.append(copying: $0) }
        }
        #expect(queue.byteCount == expected.count)
        let kernel = FakeKernel(script: [3, 1, 50, 0])
        let iovecs = UnsafeMutablePointer<iovec>.allocate(capacity: 4)
        iovecs.initialize(repeating: iovec(), count: 4)
        defer { iovecs.deallocate() }
        let first = queue.drain(iovecs: iovecs, capacity: 4, send: kernel.send)
        #expect(first == .wouldBlock)
        let left = queue.byteCount
        #expect(left == expected.count - 54)
        kernel.script = [-Int(EINTR), 17, 1_000, 1_000, 1_000]
        let second = queue.drain(iovecs: iovecs, capacity: 4, send: kernel.send)
        #expect(second == .drained)
        let (empty, count) = (queue.isEmpty, queue.byteCount)
        #expect(empty && count == 0)
        #expect(kernel.taken == expected)
    }

    // A failing send reports its errno and keeps the unsent bytes; EAGAIN is not a failure.
    @Test func failedSendReportsErrnoAndKeepsBytes() {
        var queue = WriteQueue()
        ([1, 2, 3, 4] as [UInt8]).withUnsafeBytes { queue.append(copying: $0) }
        let kernel = FakeKernel(script: [1, -Int(EAGAIN)])
        let iovecs = UnsafeMutablePointer<iovec>.allocate(capacity: 4)
        iovecs.initialize(repeating: iovec(), count: 4)
        defer { iovecs.deallocate() }
        let first = queue.drain(iovecs: iovecs, capacity: 4, send: kernel.send)
        #expect(first == .wouldBlock)
        kernel.script = [-Int(EPIPE)]
        let second = queue.drain(iovecs: iovecs, capacity: 4, send: kernel.send)
        #expect(second == .failed(EPIPE))
        let left = queue.byteCount
        #expect(left == 3)
        queue.removeAll()
        let empty = queue.isEmpty
        #expect(empty)
    }

    // Empty writes queue nothing.
    @Test func emptyAppendQueuesNothing() {
        var queue = WriteQueue()
        queue.append(copying: UnsafeRawBufferPointer(start: nil, count: 0))
        let empty = queue.isEmpty
        #expect(empty)
    }
}

@Suite
struct FlowControlTests {
    // pauseWriting once when the buffer goes strictly over high, resumeWriting once when it is
    // back at low or below; nothing in between.
    @Test func pauseAndResumeOncePerCrossing() throws {
        var flow = FlowControl()
        try flow.setLimits(high: 100, low: 20)
        var calls: [String] = []
        for size in [100, 101, 500, 21, 20, 0, 101] {
            if flow.needsPause(bufferSize: size) { calls.append("pause@\(size)") }
            if flow.needsResume(bufferSize: size) { calls.append("resume@\(size)") }
        }
        // 100 is not strictly over; 500 is already paused; 0 is already resumed.
        #expect(calls == ["pause@101", "resume@20", "pause@101"])
    }

    // asyncio's defaults and its rule high >= low >= 0 (ValueError there, an error here; the
    // marks stay as they were).
    @Test func limitsFollowAsyncioRules() throws {
        var flow = FlowControl()
        #expect(flow.high == 65_536 && flow.low == 16_384)
        try flow.setLimits(high: nil, low: 1_000)
        #expect(flow.high == 4_000 && flow.low == 1_000)
        try flow.setLimits(high: 8_000, low: nil)
        #expect(flow.high == 8_000 && flow.low == 2_000)
        try flow.setLimits(high: 0, low: 0)
        #expect(flow.high == 0 && flow.low == 0)
        for (high, low) in [(10, 11), (-1, -4)] as [(Int?, Int?)] + [(nil, -1)] {
            do {
                try flow.setLimits(high: high, low: low)
                Issue.record("limits high \(String(describing: high)), low \(String(describing: low)) were accepted")
            } catch {
                #expect(error.code == .invalidArgument)
            }
        }
        #expect(flow.high == 0 && flow.low == 0)
    }
}
