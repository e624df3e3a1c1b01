//===----------------------------------------------------------------------===//
// The bodies of the loop micro-benchmarks, shared by loop-bench (timed against asyncio and
// uvloop by run-loop-bench.sh) and by the package-benchmark suite in
// Benchmarks/LoopBenchmarks (allocation and CPU thresholds). Each function runs a fixed
// amount of work on `loop` and returns the seconds it took by the loop's clock.
//===----------------------------------------------------------------------===//

public import AsyncIO
import Dispatch

/// Callbacks (or timers) that loop-bench schedules per round before the loop runs them all.
/// loop_bench.py uses the same number, so all loops see the same ready-queue and timer-heap
/// sizes.
public let loopBenchBatch = 100_000

/// callSoon: schedules `batch` callbacks (each bumps a counter, the last stops the loop) and
/// runs the loop until they ran, `rounds` times.
public func benchCallSoon(_ loop: EventLoop, batch: Int = loopBenchBatch, rounds: Int) throws -> Double {
    let start = loop.time()
    for _ in 0..<rounds {
        var count = 0
        for _ in 0..<batch {
            loop.callSoon {
                count += 1
                if count == batch { loop.stop() }
            }
        }
        try loop.runForever()
        precondition(count == batch)
    }
    return loop.time() - start
}

/// callLater: schedules `batch` timers `delay` from now and runs the loop until all fired,
/// `rounds` times.
public func benchCallLater(
    _ loop: EventLoop, delay: Duration, batch: Int = loopBenchBatch, rounds: Int
) throws -> Double {
    let start = loop.time()
    for _ in 0..<rounds {
        var count = 0
        for _ in 0..<batch {
            loop.callLater(after: delay) {
                count += 1
                if count == batch { loop.stop() }
            }
        }
        try loop.runForever()
        precondition(count == batch)
    }
    return loop.time() - start
}

/// createTask: inside a task, creates a task returning 1 and awaits it, `iterations` times.
public func benchCreateTask(_ loop: EventLoop, iterations: Int) throws -> Double {
    try loop.runUntilComplete {
        let start = loop.time()
        var sum = 0
        for _ in 0..<iterations {
            let task = loop.createTask { 1 }
            sum += try await task.value
        }
        precondition(sum == iterations)
        return loop.time() - start
    }
}

/// eagerTask: `createTask(eager: true) { 1 }` awaited (compare with createTask).
public func benchEagerTask(_ loop: EventLoop, iterations: Int) throws -> Double {
    try loop.runUntilComplete {
        let start = loop.time()
        var sum = 0
        for _ in 0..<iterations {
            sum += try await loop.createTask(eager: true) { 1 }.value
        }
        precondition(sum == iterations)
        return loop.time() - start
    }
}

/// futureAwait: inside a task, awaits a future that a callSoon callback resolves.
public func benchFutureAwait(_ loop: EventLoop, iterations: Int) throws -> Double {
    try loop.runUntilComplete {
        let start = loop.time()
        var sum = 0
        for _ in 0..<iterations {
            let future = Future<Int>(loop: loop)
            loop.callSoon { try future.setResult(1) }
            sum += try await future.value
        }
        precondition(sum == iterations)
        return loop.time() - start
    }
}

/// swiftTaskFloor: what Swift's runtime alone costs for createTask's work: inside a task,
/// `Task(executorPreference: loop.taskExecutor) { 1 }` created and awaited (no LoopTask, no
/// Future, no bookkeeping). createTask can be no cheaper than this.
public func benchSwiftTaskFloor(_ loop: EventLoop, iterations: Int) throws -> Double {
    try loop.runUntilComplete {
        let start = loop.time()
        var sum = 0
        for _ in 0..<iterations {
            sum += await Task(executorPreference: loop.taskExecutor) { 1 }.value
        }
        precondition(sum == iterations)
        return loop.time() - start
    }
}

/// continuationFloor: what futureAwait's wait costs in Swift's runtime alone: inside a task,
/// a continuation that a callSoon callback resumes, awaited with no hops around it (no
/// Future, no cancellation handler). futureAwait can be no cheaper than this.
public func benchContinuationFloor(_ loop: EventLoop, iterations: Int) throws -> Double {
    try loop.runUntilComplete {
        let start = loop.time()
        var sum = 0
        for _ in 0..<iterations {
            sum += await _unsafeInheritExecutor_withUnsafeContinuation { (continuation: UnsafeContinuation<Int, Never>) in
                loop.callSoon { continuation.resume(returning: 1) }
            }
        }
        precondition(sum == iterations)
        return loop.time() - start
    }
}

/// runInExecutor: inside a task, runs `{ 1 }` on the default executor and awaits the result.
public func benchRunInExecutor(_ loop: EventLoop, iterations: Int) throws -> Double {
    try loop.runUntilComplete {
        let start = loop.time()
        var sum = 0
        for _ in 0..<iterations {
            sum += try await loop.runInExecutor { 1 }.value
        }
        precondition(sum == iterations)
        return loop.time() - start
    }
}

/// dispatchAsync: the same round trip as runInExecutor without our pool: inside a task,
/// `DispatchQueue.global().async` resumes a continuation with `1`, awaited on the loop.
public func benchDispatchAsync(_ loop: EventLoop, iterations: Int) throws -> Double {
    try loop.runUntilComplete {
        let start = loop.time()
        var sum = 0
        for _ in 0..<iterations {
            sum += await withCheckedContinuation { (continuation: CheckedContinuation<Int, Never>) in
                DispatchQueue.global().async { continuation.resume(returning: 1) }
            }
        }
        precondition(sum == iterations)
        return loop.time() - start
    }
}

/// lockUncontended: inside a task, acquires and releases a Lock nobody else wants.
public func benchLock(_ loop: EventLoop, iterations: Int) throws -> Double {
    try loop.runUntilComplete {
        let lock = Lock()
        let start = loop.time()
        for _ in 0..<iterations {
            try await lock.acquire()
            try lock.release()
        }
        return loop.time() - start
    }
}

/// eventWake: two tasks hand a turn back and forth with two Events, `iterations` round trips;
/// returns half the time, as one operation is one set → wake of the waiting task.
public func benchEventWake(_ loop: EventLoop, iterations: Int) throws -> Double {
    try loop.runUntilComplete {
        let ping = Event()
        let pong = Event()
        let other = loop.createTask {
            for _ in 0..<iterations {
                try await ping.wait()
                ping.clear()
                pong.set()
            }
        }
        let start = loop.time()
        for _ in 0..<iterations {
            ping.set()
            try await pong.wait()
            pong.clear()
        }
        try await other.value
        return (loop.time() - start) / 2   // two wake-ups per iteration
    }
}

/// queueHandoff: a producer task puts `iterations` items into a Queue(maxSize: 1) that a
/// consumer task empties; one operation is one item handed over.
public func benchQueueHandoff(_ loop: EventLoop, iterations: Int) throws -> Double {
    try loop.runUntilComplete {
        let queue = Queue<Int>(maxSize: 1)
        let consumer = loop.createTask {
            var sum = 0
            for _ in 0..<iterations { sum += try await queue.get() }
            return sum
        }
        let start = loop.time()
        for _ in 0..<iterations { try await queue.put(1) }
        let sum = try await consumer.value
        precondition(sum == iterations)
        return loop.time() - start
    }
}

/// timeoutScope: enters and leaves a timeout scope whose body returns at once.
public func benchTimeoutScope(_ loop: EventLoop, iterations: Int) throws -> Double {
    try loop.runUntilComplete {
        let start = loop.time()
        var sum = 0
        for _ in 0..<iterations {
            sum += try await timeout(after: .seconds(10)) { _ in 1 }
        }
        precondition(sum == iterations)
        return loop.time() - start
    }
}
