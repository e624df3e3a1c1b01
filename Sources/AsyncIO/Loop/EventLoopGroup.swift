//===----------------------------------------------------------------------===//
// swift-asyncio — EventLoopGroup: N loops on N threads for multi-core servers.
//===----------------------------------------------------------------------===//

import Synchronization

/// N event loops, each running forever on its own named thread (`<name>-<i>`), handed out
/// round robin by ``next()``. Use one loop per core for servers that need more than one core.
///
/// ```swift
/// let group = try EventLoopGroup(loops: 2)
/// let loop = group.next()
/// try loop.callSoonThreadSafe { print("on", loop.name) }
/// group.shutdown()
/// ```
///
/// - Important: Call ``shutdown(timeout:)`` when done: it cancels each loop's tasks, stops the
///   loops, joins their threads and closes them.
/// - Note: Thread-safe.
public final class EventLoopGroup: Sendable {
    /// The loops, in thread order.
    public let loops: [EventLoop]
    private let threads: [OSThread]
    private let counter = Atomic<Int>(0)
    private let isShutDown = Atomic<Bool>(false)

    /// Starts `loops` event loops, each on its own thread.
    /// - Parameters:
    ///   - loops: How many loops (at least 1); the number of cores by default.
    ///   - name: Prefix of the loops' and threads' names.
    /// - Throws: ``IOError`` if a loop cannot be created (e.g. out of fds).
    public init(loops: Int? = nil, name: String = "asyncio-loop") throws(IOError) {
        let count = loops ?? availableCores()
        precondition(count > 0, "EventLoopGroup needs at least one loop")
        var made: [EventLoop] = []
        do {
            for i in 0..<count {
                made.append(try EventLoop(name: "\(name)-\(i)"))
            }
        } catch {
            for loop in made { try? loop.close() }
            throw error
        }
        self.loops = made
        self.threads = made.map { loop in
            OSThread.spawn(name: loop.name) {
                do {
                    try loop.runForever()
                } catch {
                    loop.logger.error("event loop thread could not run: \(error)")
                }
            }
        }
    }

    deinit {
        guard !isShutDown.load(ordering: .relaxed) else { return }
        if loops.contains(where: { $0.inLoopThread }) {
            // Released last on one of its own loops: it cannot wait for itself. Stop the
            // loops; their threads end on their own.
            isShutDown.store(true, ordering: .relaxed)
            for loop in loops {
                loop.execute { loop.stopAfterCancellingTasks(timeout: .seconds(5)) }
            }
        } else {
            shutdown()
        }
    }

    /// The next loop, round robin. Thread-safe.
    public func next() -> EventLoop {
        let index = counter.wrappingAdd(1, ordering: .relaxed).oldValue
        return loops[index % loops.count]
    }

    /// Shuts every loop down gracefully: cancels its live tasks and lets them finish (at most
    /// `timeout`), stops it, joins its thread, shuts its default executor down and closes it.
    /// Calling it again does nothing.
    ///
    /// - Important: Blocks the calling thread; do not call it from one of the group's loops.
    public func shutdown(timeout: Duration = .seconds(5)) {
        guard !isShutDown.exchange(true, ordering: .acquiringAndReleasing) else { return }
        precondition(
            !loops.contains { $0.inLoopThread },
            "EventLoopGroup.shutdown called from one of its own loops; it would wait for itself")
        for loop in loops {
            let scheduled = loop.execute {
                loop.stopAfterCancellingTasks(timeout: timeout)
            }
            if !scheduled { continue }
        }
        for thread in threads {
            thread.join()
        }
        for loop in loops {
            loop.defaultExecutorStorage?.shutdown(wait: true)
            loop.defaultExecutorStorage = nil
            try? loop.close()
        }
    }
}

extension EventLoop {
    /// Cancels the live tasks and stops the loop once they finished or `timeout` passed.
    /// Loop-bound, on a running loop.
    func stopAfterCancellingTasks(timeout: Duration) {
        let tasks = liveTasks.all
        if tasks.isEmpty {
            stop()
            return
        }
        var remaining = tasks.count
        let timer = callLater(after: timeout) { [unowned self] in self.stop() }
        for task in tasks {
            task.cancel()
            task._whenDone { [unowned self] in
                remaining -= 1
                if remaining == 0 {
                    timer.cancel()
                    self.stop()
                }
            }
        }
    }
}
