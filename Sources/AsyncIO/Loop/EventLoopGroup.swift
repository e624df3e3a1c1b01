//===----------------------------------------------------------------------===//
// swift-asyncio — EventLoopGroup: N loops on N threads for multi-core servers.
//===----------------------------------------------------------------------===//

public import Logging
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
    /// The logger given to ``init(loops:name:logger:)`` (by default
    /// `Logger(label: "swift-asyncio")`); each loop's ``EventLoop/logger`` is this one with
    /// the loop's name as metadata `loop`.
    public let logger: Logger
    private let threads: [OSThread]
    private let counter = Atomic<Int>(0)
    private let isShutDown = Atomic<Bool>(false)
    /// Set when the group is released on one of its own loops: the threads close their loops.
    private let closeOnExit = SharedFlag()

    /// Starts `loops` event loops, each on its own thread.
    /// - Parameters:
    ///   - loops: How many loops (at least 1); the number of cores by default.
    ///   - name: Prefix of the loops' and threads' names.
    ///   - logger: Where the loops (and servers and connections on them given no logger of
    ///     their own) log; see ``EventLoop/init(name:debug:logger:)``.
    /// - Throws: ``IOError`` if a loop cannot be created (e.g. out of fds).
    public init(loops: Int? = nil, name: String = "asyncio-loop", logger: Logger? = nil) throws(IOError) {
        let count = loops ?? availableCores()
        precondition(count > 0, "EventLoopGroup needs at least one loop")
        let logger = logger ?? Logger(label: "swift-asyncio")
        self.logger = logger
        var made: [EventLoop] = []
        do {
            for i in 0..<count {
                made.append(try EventLoop(name: "\(name)-\(i)", logger: logger))
            }
        } catch {
            for loop in made { try? loop.close() }
            throw error
        }
        self.loops = made
        let closeOnExit = self.closeOnExit
        self.threads = made.map { loop in
            OSThread.spawn(name: loop.name) {
                do {
                    try loop.runForever()
                } catch {
                    loop.logger.error("event loop thread could not run: \(error)")
                }
                // Released by its own loop (see deinit): nobody else is left to close it.
                if closeOnExit.isSet {
                    try? loop.close()
                }
                loop.bind(toThread: 0)
            }
        }
        // Bound before anyone else can see the group: loop-bound calls from any other thread
        // are wrong from the start, whether or not the loop's thread has started running it.
        for (loop, thread) in zip(made, threads) {
            loop.bind(toThread: thread.id)
        }
    }

    deinit {
        guard !isShutDown.load(ordering: .relaxed) else { return }
        if loops.contains(where: { $0.inLoopThread }) {
            // Released last on one of its own loops: it cannot wait for itself. Each loop's
            // thread closes its loop once it stopped, and ends on its own (detached).
            isShutDown.store(true, ordering: .relaxed)
            closeOnExit.set()
            for thread in threads {
                thread.detach()
            }
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
            loop.shutdownDefaultExecutorBlocking()
            try? loop.close()
        }
    }

    /// ``shutdown(timeout:)`` for async code: the blocking part (joining the loops' threads)
    /// runs on a thread of its own, so no thread of Swift's cooperative pool is blocked while
    /// the loops' tasks finish. Returns once the group is shut down; calling it again (or
    /// after ``shutdown(timeout:)``) returns at once.
    ///
    /// - Important: Do not call it from a task running on one of the group's loops (it would
    ///   wait for itself).
    public func shutdownGracefully(timeout: Duration = .seconds(5)) async {
        precondition(
            !loops.contains { $0.inLoopThread },
            "EventLoopGroup.shutdownGracefully called from one of its own loops; it would wait for itself")
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            _ = OSThread.spawn(name: "asyncio-shutdown", detached: true) {
                self.shutdown(timeout: timeout)
                done.resume()
            }
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
            task._whenDoneErased { [unowned self] _ in
                remaining -= 1
                if remaining == 0 {
                    timer.cancel()
                    self.stop()
                }
            }
        }
    }
}
