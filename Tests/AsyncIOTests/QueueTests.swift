//===----------------------------------------------------------------------===//
// swift-asyncio — Queue, LifoQueue, PriorityQueue: order, bounds, taskDone/join, many tasks.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

/// An item ordered by its priority only, so equal priorities are ties.
private struct Job: Comparable, Sendable, CustomStringConvertible {
    let priority: Int
    let name: String
    static func < (lhs: Job, rhs: Job) -> Bool { lhs.priority < rhs.priority }
    static func == (lhs: Job, rhs: Job) -> Bool { lhs.priority == rhs.priority && lhs.name == rhs.name }
    var description: String { "\(priority)\(name)" }
}

@Suite(.timeLimit(.minutes(10)))
struct QueueTests {
    // MARK: - Order

    @Test func fifoQueueHandsItemsOutOldestFirst() throws {
        let queue = Queue<Int>()
        for i in 1...5 { try queue.putNowait(i) }
        #expect(queue.count == 5)
        #expect(!queue.isEmpty)
        #expect(try (0..<5).map { _ in try queue.getNowait() } == [1, 2, 3, 4, 5])
        #expect(queue.isEmpty)
    }

    @Test func lifoQueueHandsItemsOutNewestFirst() throws {
        let queue = LifoQueue<Int>()
        for i in 1...5 { try queue.putNowait(i) }
        #expect(try queue.getNowait() == 5)
        try queue.putNowait(9)
        #expect(try (0..<5).map { _ in try queue.getNowait() } == [9, 4, 3, 2, 1])
    }

    @Test func priorityQueueHandsOutSmallestFirstAndTiesInInsertionOrder() throws {
        let queue = PriorityQueue<Job>()
        let jobs = [
            Job(priority: 2, name: "a"), Job(priority: 1, name: "b"), Job(priority: 2, name: "c"),
            Job(priority: 1, name: "d"), Job(priority: 0, name: "e"), Job(priority: 2, name: "f"),
        ]
        for job in jobs { try queue.putNowait(job) }
        let order = try (0..<jobs.count).map { _ in try queue.getNowait().description }
        #expect(order == ["0e", "1b", "1d", "2a", "2c", "2f"])
    }

    // Many items with few priorities, interleaved puts and gets: the order is a stable sort.
    @Test func priorityQueueTiesStayInOrderUnderChurn() throws {
        let queue = PriorityQueue<Job>()
        var generator = SplitMix(seed: 42)
        var expected: [Job] = []   // what is in the queue, kept stably sorted
        var got: [Job] = []
        var want: [Job] = []
        for i in 0..<2_000 {
            let job = Job(priority: Int(generator.next() % 4), name: "\(i)")
            try queue.putNowait(job)
            let index = expected.firstIndex { job < $0 } ?? expected.endIndex
            expected.insert(job, at: index)
            if generator.next() % 3 == 0 {
                got.append(try queue.getNowait())
                want.append(expected.removeFirst())
            }
        }
        while !queue.isEmpty {
            got.append(try queue.getNowait())
            want.append(expected.removeFirst())
        }
        #expect(got.count == 2_000)
        let firstDifference = got.indices.first { got[$0] != want[$0] }
        #expect(firstDifference == nil, "first out of order at \(firstDifference ?? 0): \(got[firstDifference ?? 0]), expected \(want[firstDifference ?? 0])")
    }

    // MARK: - Bounds and the nowait calls

    @Test func nowaitCallsThrowQueueFullAndQueueEmpty() throws {
        let queue = Queue<Int>(maxSize: 2)
        #expect(queue.maxSize == 2)
        #expect(throws: QueueEmpty()) { try queue.getNowait() }
        try queue.putNowait(1)
        #expect(!queue.isFull)
        try queue.putNowait(2)
        #expect(queue.isFull)
        #expect(throws: QueueFull()) { try queue.putNowait(3) }
        #expect(queue.count == 2)
        #expect(try queue.getNowait() == 1)
        try queue.putNowait(3)
        #expect(try queue.getNowait() == 2)
        #expect(try queue.getNowait() == 3)
        #expect(throws: QueueEmpty()) { try queue.getNowait() }
    }

    @Test func maxSizeZeroOrNegativeIsUnbounded() throws {
        for maxSize in [0, -1] {
            let queue = LifoQueue<Int>(maxSize: maxSize)
            for i in 0..<1_000 { try queue.putNowait(i) }
            #expect(!queue.isFull)
            #expect(queue.count == 1_000)
        }
    }

    // A put on a full queue waits; each get wakes one putter, which then puts.
    @Test func putWaitsWhileFullAndAGetWakesIt() throws {
        try withLoop { loop in
            let queue = Queue<Int>(maxSize: 2)
            let progress = Box(0)
            let producer = loop.createTask {
                for i in 1...5 {
                    try await queue.put(i)
                    progress.value = i
                }
            }
            try loop.runUntilComplete {
                try await waitUntil("the producer waits on the full queue") { queue.putters.count == 1 }
                #expect(progress.value == 2)
                #expect(queue.count == 2)
                var got: [Int] = []
                for expected in 3...5 {
                    got.append(try queue.getNowait())
                    try await waitUntil("put \(expected) went through") { progress.value == expected }
                    #expect(queue.count == 2)
                }
                got.append(try await queue.get())
                got.append(try await queue.get())
                try await producer.value
                #expect(got == [1, 2, 3, 4, 5])
                #expect(queue.isEmpty)
            }
        }
    }

    // A get on an empty queue waits for the next put.
    @Test func getWaitsWhileEmptyAndAPutWakesIt() throws {
        try withLoop { loop in
            let queue = Queue<String>()
            let consumer = loop.createTask { try await queue.get() }
            let value = try loop.runUntilComplete { () async throws -> String in
                try await waitUntil("the consumer waits") { queue.getters.count == 1 }
                #expect(!consumer.isDone)
                try queue.putNowait("hello")
                return try await consumer.value
            }
            #expect(value == "hello")
            #expect(queue.isEmpty)
        }
    }

    // Waiting getters are served first come first served, as are waiting putters.
    @Test func waitersAreServedInArrivalOrder() throws {
        try withLoop { loop in
            let queue = Queue<Int>(maxSize: 1)
            try loop.runUntilComplete {
                let getters = (0..<4).map { _ in loop.createTask { try await queue.get() } }
                try await waitUntil("4 getters wait") { queue.getters.count == 4 }
                for item in [10, 11, 12, 13] {
                    try queue.putNowait(item)
                    try await waitUntil("item \(item) was taken") { queue.isEmpty }
                }
                #expect(try await gather(getters) == [10, 11, 12, 13])

                try queue.putNowait(0)
                var putters: [LoopTask<Void>] = []
                for item in [20, 21, 22, 23] {
                    putters.append(loop.createTask { try await queue.put(item) })
                    try await waitUntil("putter \(item) waits") { queue.putters.count == putters.count }
                }
                var got: [Int] = []
                for _ in 0..<5 { got.append(try await queue.get()) }
                _ = try await gather(putters)
                #expect(got == [0, 20, 21, 22, 23])
            }
        }
    }

    // An item put while a getter waits is that getter's: a getNowait (or a new get) right
    // after the put finds the queue empty, and a put into a full queue whose putter waits
    // cannot take the slot the putter was given.
    @Test func waitersAreServedOnTheSpotAndCannotBeOvertaken() throws {
        try withLoop { loop in
            let queue = Queue<Int>(maxSize: 1)
            try loop.runUntilComplete {
                let getter = loop.createTask { try await queue.get() }
                try await waitUntil("the getter waits") { queue.getters.count == 1 }
                try queue.putNowait(7)
                #expect(queue.count == 0)
                #expect(throws: QueueEmpty.self) { try queue.getNowait() }
                #expect(try await getter.value == 7)

                try queue.putNowait(8)
                let putter = loop.createTask { try await queue.put(9) }
                try await waitUntil("the putter waits") { queue.putters.count == 1 }
                #expect(try queue.getNowait() == 8)   // the slot goes to 9 at once
                #expect(queue.isFull)
                #expect(throws: QueueFull.self) { try queue.putNowait(10) }
                try await putter.value
                #expect(try queue.getNowait() == 9)
                #expect(queue.unfinishedTasks == 3)
            }
        }
    }

    // MARK: - taskDone and join

    @Test func joinWaitsForATaskDonePerItem() throws {
        try withLoop { loop in
            let queue = Queue<Int>()
            try loop.runUntilComplete {
                try await queue.join()   // nothing put: returns at once
                for i in 0..<3 { try queue.putNowait(i) }
                let joined = Box(false)
                let joiner = loop.createTask {
                    try await queue.join()
                    joined.value = true
                }
                for _ in 0..<3 { _ = try queue.getNowait() }
                try await waitUntil("the joiner waits") { queue.joiners.count == 1 }
                try queue.taskDone()
                try queue.taskDone()
                try await sleep(for: .milliseconds(20))
                #expect(!joined.value)   // one item is still being processed
                try queue.taskDone()
                try await waitForEvent(joiner, "join returned after the last taskDone")
                #expect(joined.value)
                #expect(throws: InvalidStateError.self) { try queue.taskDone() }
            }
        }
    }

    @Test func taskDoneMoreTimesThanItemsThrows() throws {
        let queue = PriorityQueue<Int>()
        #expect(throws: InvalidStateError.self) { try queue.taskDone() }
        try queue.putNowait(1)
        try queue.putNowait(2)
        try queue.taskDone()
        try queue.taskDone()
        #expect(throws: InvalidStateError.self) { try queue.taskDone() }
    }

    // MARK: - Many tasks

    // 3 producers and 2 consumers move 10,000 items through a small queue, each exactly once.
    @Test func threeProducersTwoConsumersMoveEveryItemExactlyOnce() throws {
        try withLoop { loop in
            let queue = Queue<Int>(maxSize: 16)
            let total = 10_000
            let (received, joinedCleanly) = try loop.runUntilComplete { () async throws -> ([[Int]], Bool) in
                let producers = (0..<3).map { producer in
                    loop.createTask {
                        for item in stride(from: producer, to: total, by: 3) {
                            try await queue.put(item)
                            if item % 7 == 0 { await Task.yield() }
                        }
                    }
                }
                let consumers = (0..<2).map { consumer in
                    loop.createTask { () async throws -> [Int] in
                        var mine: [Int] = []
                        for try await item in queue {
                            mine.append(item)
                            if (item + consumer) % 5 == 0 { await Task.yield() }
                            try queue.taskDone()
                        }
                        return mine
                    }
                }
                _ = try await gather(producers)
                try await queue.join()
                let joinedCleanly = queue.isEmpty && queue.unfinishedTasks == 0
                queue.shutdown()
                return (try await gather(consumers), joinedCleanly)
            }
            #expect(joinedCleanly)
            #expect(received.allSatisfy { !$0.isEmpty })
            let all = received.flatMap { $0 }
            #expect(all.count == total)
            #expect(all.sorted() == Array(0..<total))
            // Each producer's items arrive in the order it put them.
            for consumer in received {
                for producer in 0..<3 {
                    let mine = consumer.filter { $0 % 3 == producer }
                    #expect(mine == mine.sorted())
                }
            }
        }
    }

    // Waiting needs a loop: a task off any loop gets noRunningLoop instead of hanging.
    @Test func waitingOffALoopThrowsNoRunningLoop() async throws {
        let queue = Queue<Int>()
        let outcome = await Task.detached { () async -> String in
            do {
                _ = try await queue.get()
                return "item"
            } catch let error as EventLoopError {
                return "\(error.code)"
            } catch {
                return "other: \(error)"
            }
        }.value
        #expect(outcome == "noRunningLoop")
        try queue.putNowait(1)   // the nowait calls need no loop
        #expect(try queue.getNowait() == 1)
    }

    @Test func descriptionShowsSizeWaitersAndState() throws {
        let queue = Queue<Int>(maxSize: 3)
        try queue.putNowait(1)
        #expect(queue.description == "LoopQueue<FIFOQueueStorage<Int>>(maxSize: 3, count: 1, unfinished: 1)")
        queue.shutdown(immediate: true)
        #expect(queue.description == "LoopQueue<FIFOQueueStorage<Int>>(maxSize: 3, count: 0, shut down)")
    }
}

/// A small deterministic random number generator for reproducible test data.
private struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
