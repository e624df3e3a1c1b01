//===----------------------------------------------------------------------===//
// swift-asyncio — Queue shutdown (Python 3.13) and the queue as an AsyncSequence.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

/// How an awaited queue operation ended, as a comparable value.
private func outcome<T>(_ body: () async throws -> T) async -> String {
    do {
        return "value \(try await body())"
    } catch is QueueShutDown {
        return "shut down"
    } catch is CancellationError {
        return "cancelled"
    } catch {
        return "other: \(error)"
    }
}

@Suite(.timeLimit(.minutes(10)))
struct QueueShutdownTests {
    // Non-immediate: putters (waiting and new) get QueueShutDown; getters drain, then get it.
    @Test func shutdownFailsPutsAndLetsGettersDrain() throws {
        try withLoop { loop in
            let queue = Queue<Int>(maxSize: 2)
            try loop.runUntilComplete {
                try queue.putNowait(1)
                try queue.putNowait(2)
                let putter = loop.createTask { await outcome { try await queue.put(3) } }
                try await waitUntil("the putter waits") { queue.putters.count == 1 }
                queue.shutdown()
                #expect(queue.isShutDown)
                #expect(try await putter.value == "shut down")
                #expect(await outcome { try await queue.put(4) } == "shut down")
                #expect(throws: QueueShutDown()) { try queue.putNowait(5) }
                #expect(queue.count == 2)
                #expect(try queue.getNowait() == 1)
                #expect(try await queue.get() == 2)
                #expect(await outcome { try await queue.get() } == "shut down")
                #expect(throws: QueueShutDown()) { try queue.getNowait() }
                // join still counts the gotten items until their taskDone.
                try queue.taskDone()
                try queue.taskDone()
                try await queue.join()
            }
        }
    }

    // Getters waiting on an empty queue get QueueShutDown at a shutdown, in either mode.
    @Test(arguments: [false, true])
    func shutdownWakesWaitingGettersOfAnEmptyQueue(immediate: Bool) throws {
        try withLoop { loop in
            let queue = LifoQueue<Int>()
            let outcomes = try loop.runUntilComplete { () async throws -> [String] in
                let getters = (0..<3).map { _ in loop.createTask { await outcome { try await queue.get() } } }
                try await waitUntil("3 getters wait") { queue.getters.count == 3 }
                queue.shutdown(immediate: immediate)
                return try await gather(getters)
            }
            #expect(outcomes == ["shut down", "shut down", "shut down"])
            #expect(queue.getters.count == 0)
        }
    }

    // Immediate: the items are dropped and count as done; join waits only for the items
    // already gotten; waiting putters get QueueShutDown.
    @Test func immediateShutdownDropsItemsAndReleasesJoin() throws {
        try withLoop { loop in
            let queue = PriorityQueue<Int>(maxSize: 4)
            try loop.runUntilComplete {
                for i in [4, 2, 3, 1] { try queue.putNowait(i) }
                let putter = loop.createTask { await outcome { try await queue.put(0) } }
                #expect(try await queue.get() == 1)   // gotten, not yet done
                try await waitUntil("the putter put 0") { queue.count == 4 }
                let joined = Box(false)
                let joiner = loop.createTask {
                    try await queue.join()
                    joined.value = true
                }
                try await waitUntil("the joiner waits") { queue.joiners.count == 1 }
                queue.shutdown(immediate: true)
                #expect(queue.count == 0)
                #expect(try await putter.value == "value ()")
                #expect(await outcome { try await queue.get() } == "shut down")
                #expect(throws: QueueShutDown()) { try queue.getNowait() }
                try await sleep(for: .milliseconds(20))
                #expect(!joined.value)   // item 1 was gotten and is not done
                try queue.taskDone()
                try await waitForEvent(joiner, "join returned once the gotten item was done")
                #expect(throws: InvalidStateError.self) { try queue.taskDone() }
            }
        }
    }

    @Test func immediateShutdownWithNothingGottenReleasesJoinAtOnce() throws {
        try withLoop { loop in
            let queue = Queue<Int>(maxSize: 2)
            try loop.runUntilComplete {
                try queue.putNowait(1)
                try queue.putNowait(2)
                let waitingPutter = loop.createTask { await outcome { try await queue.put(3) } }
                let joiner = loop.createTask { try await queue.join() }
                try await waitUntil("putter and joiner wait") {
                    queue.putters.count == 1 && queue.joiners.count == 1
                }
                queue.shutdown(immediate: true)
                try await waitForEvent(joiner, "join returned at the immediate shutdown")
                #expect(try await waitingPutter.value == "shut down")
                #expect(queue.isEmpty)
                try await queue.join()
            }
        }
    }

    // A later immediate shutdown drops what a first, draining shutdown left.
    @Test func immediateShutdownAfterShutdownDropsTheRest() throws {
        let queue = Queue<Int>()
        try queue.putNowait(1)
        try queue.putNowait(2)
        queue.shutdown()
        #expect(queue.count == 2)
        queue.shutdown(immediate: true)
        #expect(queue.count == 0)
        #expect(queue.unfinishedTasks == 0)
        #expect(throws: QueueShutDown()) { try queue.getNowait() }
    }

    // MARK: - AsyncSequence

    // Iteration yields every item, including those left at the shutdown, then ends normally.
    @Test func iterationEndsWhenShutDownAndDrained() throws {
        try withLoop { loop in
            let queue = Queue<Int>(maxSize: 3)
            let consumer = loop.createTask { () async throws -> [Int] in
                var items: [Int] = []
                for try await item in queue {
                    items.append(item)
                    if items.count == 2 { try await sleep(for: .milliseconds(10)) }
                }
                return items
            }
            let items = try loop.runUntilComplete { () async throws -> [Int] in
                for i in 1...6 { try await queue.put(i) }
                queue.shutdown()   // items may still be queued: the consumer drains them
                return try await consumer.value
            }
            #expect(items == [1, 2, 3, 4, 5, 6])
        }
    }

    // An immediate shutdown ends a waiting iteration normally, with the items dropped.
    @Test func immediateShutdownEndsIterationWithoutTheDroppedItems() throws {
        try withLoop { loop in
            let queue = LifoQueue<Int>()
            let started = Future<Void>(loop: loop)
            let consumer = loop.createTask { () async throws -> [Int] in
                var items: [Int] = []
                for try await item in queue {
                    items.append(item)
                    try await started.value   // holds the consumer while items pile up
                }
                return items
            }
            let items = try loop.runUntilComplete { () async throws -> [Int] in
                try queue.putNowait(1)
                try await waitUntil("the consumer took item 1") { queue.isEmpty }
                try queue.putNowait(2)
                try queue.putNowait(3)
                queue.shutdown(immediate: true)
                try started.setResult(())
                return try await consumer.value
            }
            #expect(items == [1])
        }
    }
}
