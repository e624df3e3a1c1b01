//===----------------------------------------------------------------------===//
// swift-asyncio — Loop lifetime and confinement: closed and freed loops, thread-safe
// handles, group loops bound to their threads, runUntilComplete misuse.
//===----------------------------------------------------------------------===//

import Synchronization
import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// Something the test thread can block on until a loop callback or another thread signals it.
private final class Signal: Sendable {
    private let fired = Atomic<Bool>(false)

    func fire() { fired.store(true, ordering: .releasing) }

    /// Waits up to `seconds`; returns whether it fired.
    func wait(seconds: Double = 10) -> Bool {
        let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
        while !fired.load(ordering: .acquiring) {
            if monotonicNanoseconds() > deadline { return false }
            blockThread(seconds: 0.001)
        }
        return true
    }
}

@Suite(.timeLimit(.minutes(10)))
struct LoopLifetimeTests {
    // A task that prefers a loop's task executor and resumes after that loop was closed and
    // freed is refused: its step never runs, and nothing touches the freed loop (before the
    // fix the executor's unowned(unsafe) reference read freed memory; run under
    // --sanitize=address to see it).
    @Test func taskResumedAfterItsLoopWasFreedIsRefused() throws {
        let parked = Mutex<CheckedContinuation<Void, Never>?>(nil)
        let ranAfterResume = Counter()
        weak var weakLoop: EventLoop?
        let executor: LoopTaskExecutor
        do {
            let loop = try EventLoop(name: "short-lived")
            weakLoop = loop
            executor = loop.taskExecutor
            // The task must not capture the loop, or it would keep it alive.
            Task(executorPreference: executor) {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    parked.withLock { $0 = continuation }
                    EventLoop.current?.stop()
                }
                ranAfterResume.increment()
            }
            let watchdog = loop.callLater(after: .seconds(10)) { loop.stop() }
            try loop.runForever()
            watchdog.cancel()
            try loop.close()
        }
        #expect(weakLoop == nil, "nothing else holds the loop")
        #expect(executor.isLoopClosed)
        let continuation = parked.withLock { $0.take() }
        #expect(continuation != nil, "the task parked on the loop")
        continuation?.resume()   // its next step goes to the executor of the freed loop
        blockThread(seconds: 0.2)   // time for a wrongly run step to show (it must not run)
        #expect(ranAfterResume.value == 0)
    }

    // A loop that is released without close() still cleans up, although a timer and an fd
    // watcher were registered: handles do not hold their loop (they kept it alive before).
    @Test func loopReleasedWithTimerAndWatcherIsFreed() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        weak var weakLoop: EventLoop?
        var timer: Handle?
        var watcher: Handle?
        do {
            let loop = try EventLoop(name: "unclosed")
            weakLoop = loop
            timer = loop.callLater(after: .seconds(3600)) {}
            watcher = try loop.addReader(fds[0]) {}
            loop.callSoon { loop.stop() }
            try loop.runForever()
        }
        #expect(weakLoop == nil)
        // The handles outlive their loop: cancelling them now is harmless.
        timer?.cancel()
        watcher?.cancel()
        #expect(timer?.isCancelled == true && watcher?.isCancelled == true)
    }

    // Objects that keep the handle of their own pending callback, which keeps them (a
    // periodic timer, as LoopMetrics' tick; a watcher; a callback queued as the loop
    // stopped), and hold the loop: only running or cancelling the callback broke the cycle,
    // so a loop closed with them pending leaked them and itself. Its close releases the
    // callbacks it drops; the handles are not cancelled by that.
    @Test func callbacksPendingAtCloseLetGoOfWhatTheyHold() throws {
        final class Owner {
            let loop: EventLoop
            var handle: Handle?
            init(loop: EventLoop) { self.loop = loop }
            func armTimer() { handle = loop.callLater(after: .seconds(3600)) { [self] in armTimer() } }
            func queue() { handle = loop.callSoon { [self] in queue() } }
            func watch(_ fd: Int32) throws { handle = try loop.addReader(fd) { [self] in _ = handle } }
        }
        let watched = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        try #require(watched >= 0)
        defer { close(watched) }
        weak var weakLoop: EventLoop?
        weak var weakTimerOwner: Owner?
        weak var weakQueueOwner: Owner?
        weak var weakWatchOwner: Owner?
        var timer: Handle?
        do {
            let loop = try EventLoop(name: "closes with callbacks pending")
            weakLoop = loop
            let timerOwner = Owner(loop: loop)
            timerOwner.armTimer()
            timer = timerOwner.handle
            weakTimerOwner = timerOwner
            let watchOwner = Owner(loop: loop)
            try watchOwner.watch(watched)
            weakWatchOwner = watchOwner
            loop.callSoon {
                let queueOwner = Owner(loop: loop)
                queueOwner.queue()   // runs on the next pass, which never comes
                weakQueueOwner = queueOwner
                loop.stop()
            }
            try loop.runForever()
            #expect(weakQueueOwner != nil)
            try loop.close()
        }
        #expect(weakTimerOwner == nil)
        #expect(weakQueueOwner == nil)
        #expect(weakWatchOwner == nil)
        #expect(weakLoop == nil)
        #expect(timer?.isCancelled == false)
    }

    // A handle from callSoonThreadSafe may be cancelled from the calling thread: once
    // cancel() returns, the callback either started already (isCancelled false) or never runs
    // (isCancelled true). Before the fix a cancel after the run still said "cancelled".
    @Test func threadSafeHandleCancelFromAnotherThreadNeverBothRunsAndCancels() throws {
        let group = try EventLoopGroup(loops: 1, name: "handles")
        defer { group.shutdown() }
        let loop = group.loops[0]

        // Cancelled after it ran: not cancelled.
        let ran = Signal()
        let late = try loop.callSoonThreadSafe { ran.fire() }
        #expect(ran.wait())
        late.cancel()
        #expect(!late.isCancelled)

        // Cancelled before the loop can run it (the loop is busy): never runs.
        let release = Signal()
        let busy = Signal()
        try loop.callSoonThreadSafe {
            busy.fire()
            _ = release.wait()
        }
        #expect(busy.wait())
        let neverRuns = Counter()
        let early = try loop.callSoonThreadSafe { neverRuns.increment() }
        early.cancel()
        #expect(early.isCancelled)
        release.fire()

        // Racing: each callback ran xor its handle reports cancelled.
        let count = 2_000
        let runs = Mutex<[Bool]>(Array(repeating: false, count: count))
        var handles: [Handle] = []
        for i in 0..<count {
            let handle = try loop.callSoonThreadSafe { runs.withLock { $0[i] = true } }
            handles.append(handle)
            if i % 3 != 0 { handle.cancel() }
        }
        let drained = Signal()
        try loop.callSoonThreadSafe { drained.fire() }
        #expect(drained.wait())
        let ranFlags = runs.withLock { $0 }
        var violations = 0
        for i in 0..<count where ranFlags[i] == handles[i].isCancelled {
            violations += 1
        }
        #expect(violations == 0)
        #expect(neverRuns.value == 0)
    }

    // A group's loops are bound to their threads from creation: loop-bound calls from another
    // thread are refused at once, not only once the loop thread happens to run (before the
    // fix the answer depended on whether the thread had started yet).
    @Test func groupLoopsAreBoundToTheirThreadsFromCreation() throws {
        for _ in 0..<20 {
            let group = try EventLoopGroup(loops: 2, name: "bound")
            for loop in group.loops {
                #expect(!loop.mayTouchLoopState)
                #expect(throws: EventLoopError(.wrongThread, "")) { try loop.runForever() }
            }
            group.shutdown()
            // The threads ended: whoever joined them may tear the loops down.
            for loop in group.loops {
                #expect(loop.mayTouchLoopState)
            }
        }
    }

    // A loop-bound call on a group's loop from a foreign thread traps in debug builds, even
    // before the loop thread started running it.
    @Test func foreignThreadFutureInspectionTraps() async {
        await #expect(processExitsWith: .failure) {
            guard let group = try? EventLoopGroup(loops: 1, name: "trap") else { exit(0) }
            let future = Future<Int>(loop: group.loops[0])
            _ = future.isDone   // off the loop's thread: traps in debug builds
            exit(_isDebugAssertConfiguration() ? 0 : 1)
        }
    }

    // Future's description is safe off the loop: it does not read the state there.
    @Test func futureDescriptionOffTheLoopDoesNotReadState() throws {
        let group = try EventLoopGroup(loops: 1, name: "describe")
        defer { group.shutdown() }
        let future = Future<Int>(loop: group.loops[0])
        #expect(future.description == "Future<Int>(state unknown off the loop)")
    }

    // runUntilComplete on a running loop throws before it leaves anything behind: completing
    // that future later does not stop the loop (before the fix a stop callback stayed on it).
    @Test func refusedRunUntilCompleteLeavesNoStopBehind() throws {
        try withLoop { loop in
            let other = Future<Int>(loop: loop)
            let bodyRan = Box(false)
            let value = try loop.runUntilComplete { () async throws -> Int in
                #expect(throws: EventLoopError(.alreadyRunning, "")) { try loop.runUntilComplete(other) }
                #expect(throws: EventLoopError(.alreadyRunning, "")) {
                    try loop.runUntilComplete { bodyRan.value = true }
                }
                try other.setResult(1)
                // A left-over stop would end runUntilComplete during this sleep.
                try await sleep(for: .milliseconds(50))
                return 7
            }
            #expect(value == 7)
            #expect(!bodyRan.value, "the refused call's body must never start")
        }
    }

    // A loop stopped before runUntilComplete's future completes is not stopped again, in a
    // later run, when that future completes.
    @Test func runUntilCompleteStoppedEarlyDoesNotStopALaterRun() throws {
        try withLoop { loop in
            let first = Future<Int>(loop: loop)
            loop.callSoon { loop.stop() }
            #expect(throws: EventLoopError(.stoppedBeforeCompletion, "")) { try loop.runUntilComplete(first) }
            let passes = Box(0)
            let value = try loop.runUntilComplete { () async throws -> Int in
                try first.setResult(1)
                for _ in 0..<5 {
                    try await sleep(for: .milliseconds(1))
                    passes.value += 1
                }
                return 2
            }
            #expect(value == 2)
            #expect(passes.value == 5)
        }
    }

    // ThreadPoolExecutor.shutdown(wait: false) leaves no joinable thread behind, and a later
    // shutdown(wait: true) still waits for the running job.
    @Test func executorShutdownWithoutWaitThenWithWait() throws {
        let pool = ThreadPoolExecutor(maxWorkers: 2, threadNamePrefix: "pool-test")
        let finished = Counter()
        try pool.submit {
            blockThread(seconds: 0.2)
            finished.increment()
        }
        pool.shutdown(wait: false)
        #expect(finished.value == 0)
        pool.shutdown(wait: true)
        #expect(finished.value == 1)
        pool.shutdown(wait: true)   // twice: harmless (joining twice was undefined behaviour)
    }

    // A group released on one of its own loops closes its loops once their threads stop.
    @Test func groupReleasedOnItsOwnLoopClosesItsLoops() throws {
        var group: EventLoopGroup? = try EventLoopGroup(loops: 2, name: "self-release")
        let loops = group?.loops ?? []
        let handOff = Mutex<EventLoopGroup?>(group)
        group = nil
        // The last reference goes away inside a callback on loop 0.
        try loops[0].callSoonThreadSafe {
            handOff.withLock { $0 = nil }
        }
        let deadline = monotonicNanoseconds() + 10_000_000_000
        while !loops.allSatisfy({ $0.isClosed }) && monotonicNanoseconds() < deadline {
            blockThread(seconds: 0.01)
        }
        #expect(loops.allSatisfy { $0.isClosed })
    }

    // A group's loop cannot be closed from another thread while its thread may run it (it
    // would close the epoll fd under a running epoll_wait); its group closes it.
    @Test func groupLoopRefusesCloseFromAnotherThread() throws {
        let group = try EventLoopGroup(loops: 1, name: "close")
        // Whether or not its thread started running it yet (this first call races with that
        // start; the second comes once it surely runs): the same error.
        #expect(throws: EventLoopError(.wrongThread, "")) { try group.loops[0].close() }
        let deadline = monotonicNanoseconds() + 10_000_000_000
        while !group.loops[0].isRunning && monotonicNanoseconds() < deadline {
            blockThread(seconds: 0.001)
        }
        #expect(group.loops[0].isRunning)
        #expect(throws: EventLoopError(.wrongThread, "")) { try group.loops[0].close() }
        #expect(!group.loops[0].isClosed)
        group.shutdown()
        #expect(group.loops[0].isClosed)
    }

    // runInExecutor on a closed loop fails its future with `closed` (it trapped in loop-local
    // storage before); the default executor of a closed loop starts no thread.
    @Test func runInExecutorOnAClosedLoopFails() throws {
        let loop = try EventLoop(name: "closed")
        try loop.close()
        let future = loop.runInExecutor { 1 }
        #expect((future.error as? EventLoopError)?.code == .closed)
        #expect(loop.defaultExecutor.threadCount == 0)
    }

    // cancelAllTasks that gives up at its timeout leaves no stop behind: a task that ends
    // later does not stop a later run.
    @Test func cancelAllTasksLeavesNoStopBehind() throws {
        try withLoop { loop in
            let release = Future<Void>(loop: loop)
            loop.createTask {
                // Ignores cancellation until released.
                try? await sleep(for: .seconds(30))
                await release.waitDone()
            }
            loop.callSoon { loop.stop() }
            try loop.runForever()   // the task starts
            try loop.cancelAllTasks(timeout: .milliseconds(20))
            let value = try loop.runUntilComplete { () async throws -> Int in
                release.complete(.success(()))
                for _ in 0..<5 { try await sleep(for: .milliseconds(2)) }
                return 3
            }
            #expect(value == 3)
        }
    }

    // A timer "forever" away neither fires at once (the deadline wrapped around) nor makes
    // the loop's poll timeout overflow (it trapped).
    @Test func timerFarInTheFutureNeitherFiresNorTraps() throws {
        let group = try EventLoopGroup(loops: 1, name: "forever")
        defer { group.shutdown() }
        let loop = group.loops[0]
        let fired = Counter()
        let ran = Signal()
        try loop.callSoonThreadSafe {
            loop.callLater(after: .seconds(Int64.max)) { fired.increment() }
            loop.callAt(1e12) { fired.increment() }
            ran.fire()
        }
        #expect(ran.wait())
        blockThread(seconds: 0.1)   // the loop polls with those timers first in line
        let alive = Signal()
        try loop.callSoonThreadSafe { alive.fire() }
        #expect(alive.wait())
        #expect(fired.value == 0)
    }

    // ConcurrentFuture.result with a "forever" timeout waits for the result (it timed out at
    // once: the deadline wrapped around).
    @Test func concurrentFutureWithAForeverTimeoutWaits() throws {
        let group = try EventLoopGroup(loops: 1, name: "wait")
        defer { group.shutdown() }
        let future = try group.loops[0].runCoroutineThreadSafe { () async throws -> Int in
            try await sleep(for: .milliseconds(50))
            return 7
        }
        #expect(try future.result(timeout: .seconds(Int64.max)) == 7)
    }

    // A loop closed before it ran runCoroutineThreadSafe's work cancels the future: a thread
    // blocked on it does not wait forever.
    @Test func closingTheLoopCancelsPendingThreadSafeWork() throws {
        let loop = try EventLoop(name: "closing")
        let future = try loop.runCoroutineThreadSafe { 1 }
        try loop.close()
        #expect(future.isCancelled)
        #expect(throws: CancellationError.self) { try future.result(timeout: .seconds(5)) }
    }

    // A loop closed with a task still pending ends that task as cancelled, and another
    // thread's ConcurrentFuture for such a task is completed (both stayed pending forever).
    @Test func closingTheLoopEndsPendingTasksAsCancelled() throws {
        let loop = try EventLoop(name: "pending")
        let task = loop.createTask { try await sleep(for: .seconds(3600)) }
        let remote = Box<ConcurrentFuture<Int>?>(nil)
        let thread = OSThread.spawn(name: "remote") {
            remote.value = try? loop.runCoroutineThreadSafe { () async throws -> Int in
                try await sleep(for: .seconds(3600))
                return 1
            }
        }
        thread.join()
        loop.callLater(after: .milliseconds(20)) { loop.stop() }
        try loop.runForever()   // both tasks start and suspend
        try loop.close()
        #expect(task.isCancelled)
        let future = try #require(remote.value)
        #expect(future.isCancelled)
        #expect(throws: CancellationError.self) { try future.result(timeout: .seconds(5)) }
    }
}

@Suite(.timeLimit(.minutes(10)))
struct LoopClosingTransportsTests {
    final class Weak: @unchecked Sendable {
        weak var object: AnyObject?
        init(_ object: AnyObject?) { self.object = object }
    }

    final class Endpoint: DatagramProtocol, @unchecked Sendable {
        var transport: (any DatagramTransport)?
        func connectionMade(_ transport: any DatagramTransport) { self.transport = transport }
        func datagramReceived(_ bytes: UnsafeRawBufferPointer, from address: SocketAddress) {}
    }

    // A loop closed while transports and servers still hold fds (an open server side, a
    // client aborted in the last pass whose connectionLost the closing loop drops, an open UDP
    // endpoint, a Unix server still listening): each lets go of its fd and its protocol (which
    // holds it: a cycle), with no callback; the server's socket file goes. Before, they kept
    // each other and the fds forever (found by LeakSanitizer).
    // A child still running when its loop closes is killed and reaped (no zombie), its
    // pidfd and pipes are closed, and its transport and protocol are let go.
    @Test func closingTheLoopKillsAndReapsARunningChild() throws {
        let loop = try EventLoop(name: "closing with a child")
        let transport = Box<SubprocessTransport?>(nil)
        let proto = Box(Weak(nil))
        let pid = try loop.runUntilComplete { () async throws -> Int32 in
            let (child, childProtocol) = try await loop.subprocessExec(
                "sleep", ["30"], stdin: .pipe, stdout: .pipe, stderr: .devNull
            ) { NullSubprocessProtocol() }
            transport.value = child
            proto.value = Weak(childProtocol)
            return child.pid
        }
        #expect(loop.openResources.count == 3)   // the child, its stdin and stdout pipes
        let stdin = try #require(transport.value?.pipeTransport(0) as? SocketTransport)
        try loop.close()
        var status: Int32 = 0
        #expect(waitpid(pid, &status, WNOHANG) == -1 && errno == ECHILD, "the child was reaped")
        #expect(kill(pid, 0) == -1 && errno == ESRCH, "the child is gone")
        #expect(transport.value?.returnCode == -SIGKILL)
        #expect(transport.value?.pidfd == -1)
        #expect(stdin.fileDescriptor == -1)
        let weakTransport = Weak(transport.value)
        transport.value = nil
        #expect(weakTransport.object == nil)
        #expect(proto.value.object == nil)
    }

    @Test func closingTheLoopReleasesTransportsProtocolsAndFDs() throws {
        let loop = try EventLoop(name: "closing with transports")
        let serverSides = Box<[Weak]>([])
        let client = Box<SocketTransport?>(nil)
        let endpoint = Box<DatagramSocketTransport?>(nil)
        let protocols = Box<[Weak]>([])
        let listening = Box(Weak(nil))
        let path = "/tmp/asyncio-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        defer { unlink(path) }
        try loop.runUntilComplete { () async throws in
            listening.value = Weak(try await loop.createUnixServer(path: path) { RecordingProtocol(loop: loop) })
            let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                let proto = RecordingProtocol(loop: loop)
                serverSides.value.append(Weak(proto))
                return proto
            }
            let port = try #require(server.addresses.first?.port)
            let (transport, proto) = try await loop.createConnection(host: "127.0.0.1", port: port) {
                RecordingProtocol(loop: loop)
            }
            try await waitUntil("the server accepted") { server.connectionCount == 1 }
            server.close()   // stops listening; the accepted connection stays open
            let (udp, udpProtocol) = try await loop.createDatagramEndpoint(localHost: "127.0.0.1", localPort: 0) {
                Endpoint()
            }
            transport.abort()   // connectionLost is queued, and never runs: the loop closes
            client.value = transport as? SocketTransport
            endpoint.value = udp as? DatagramSocketTransport
            protocols.value = [Weak(proto), Weak(udpProtocol)]
        }
        #expect(loop.openResources.count == 4)   // Unix server, server side, client, UDP endpoint
        try loop.close()
        #expect(client.value?.fileDescriptor == -1)
        #expect(endpoint.value?.fileDescriptor == -1)
        #expect(protocols.value.count == 2 && protocols.value.allSatisfy { $0.object == nil })
        #expect(serverSides.value.count == 1 && serverSides.value.allSatisfy { $0.object == nil })
        #expect(listening.value.object == nil)
        #expect(access(path, F_OK) != 0, "the Unix server's socket file is gone")
    }

    // A TLS connection still open when its loop closes: the socket transport lets go of the
    // TLS layer, and the layer of the application's protocol (they held each other, and the
    // layer held the loop: the loop, both protocols and the SSL objects leaked).
    @Test func closingTheLoopWithOpenTLSConnectionsFreesThemAndTheLoop() throws {
        weak var weakLoop: EventLoop?
        let serverSide = Box(Weak(nil))
        let clientSide = Box(Weak(nil))
        do {
            let loop = try EventLoop(name: "closing with TLS")
            weakLoop = loop
            let serverContext = try TLSContext(serverConfiguration())
            let clientContext = try TLSContext(clientConfiguration())
            try loop.runUntilComplete { () async throws in
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0, tls: serverContext) {
                    let collector = TLSCollector(loop: loop)
                    serverSide.value = Weak(collector)
                    return collector
                }
                let port = try #require(listener.addresses.first?.port)
                let (_, collector) = try await loop.createConnection(host: "127.0.0.1", port: port, tls: clientContext) {
                    TLSCollector(loop: loop)
                }
                clientSide.value = Weak(collector)
                try await waitUntil("the server's side is connected") {
                    (serverSide.value.object as? TLSCollector)?.transport != nil
                }
                listener.close()
            }
            try loop.close()
        }
        #expect(serverSide.value.object == nil)
        #expect(clientSide.value.object == nil)
        #expect(weakLoop == nil)
    }

    // A future nobody completes is freed with its followers: internal done-callbacks no longer
    // capture the future they are stored in (shield's did, so an abandoned gate kept itself
    // and its shield alive).
    @Test func anAbandonedPendingFutureIsFreed() throws {
        weak var weakGate: Future<Void>?
        weak var weakShield: Future<Void>?
        try withLoop { loop in
            do {
                let gate = Future<Void>(loop: loop)
                let shielded = shield(gate)
                weakGate = gate
                weakShield = shielded
                #expect(!shielded.isDone)
            }
            #expect(weakGate == nil)
            #expect(weakShield == nil)
        }
    }

    // A stream server's handler that keeps its writer in something it captured: once the
    // connection and the handler ended, that is freed (the connection's protocol used to keep
    // the handler for good, and with it a cycle through the writer).
    @Test func aStreamHandlersCapturesAreFreedWhenItsConnectionEnds() throws {
        let weakKept = Box(Weak(nil))
        try withLoop { loop in
            try loop.runUntilComplete { () async throws in
                let kept = Box<StreamWriter?>(nil)
                weakKept.value = Weak(kept)
                let handled = Future<Void>(loop: loop)
                let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                    kept.value = writer
                    _ = try await reader.read()   // to EOF
                    writer.close()
                    handled.complete(.success(()))
                }
                let port = try #require(server.addresses.first?.port)
                let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: port)
                writer.write(Array("bye".utf8))
                writer.writeEOF()
                _ = try await reader.read()   // the server closed
                try await waitForEvent(handled, "the handler ended")
                writer.close()
                server.close()
            }
        }
        #expect(weakKept.value.object == nil)
    }

    /// A member of the loop's ``OpenResources`` that records being told of the close.
    final class FakeResource: OpenResource {
        var openResourceSlot = -1
        var closed = 0
        func loopClosed() { closed += 1 }
    }

    // The table of open transports reuses freed slots, ignores a second remove (or one of a
    // non-member) and a second insert, and at the close tells exactly the members left, once.
    @Test func openResourcesReuseSlotsAndTellOnlyTheMembersLeft() throws {
        let table = OpenResources()
        let (a, b, c, stranger) = (FakeResource(), FakeResource(), FakeResource(), FakeResource())
        table.insert(a)
        table.insert(b)
        table.insert(b)   // already a member: nothing changes
        #expect(table.count == 2)
        #expect((a.openResourceSlot, b.openResourceSlot) == (0, 1))
        table.remove(a)
        table.remove(a)   // no longer a member
        table.remove(stranger)
        #expect(table.count == 1 && a.openResourceSlot == -1)
        table.insert(c)
        #expect(c.openResourceSlot == 0, "the freed slot is reused")
        #expect(table.count == 2)
        table.loopWillClose()
        #expect((a.closed, b.closed, c.closed, stranger.closed) == (0, 1, 1, 0))
        #expect(table.count == 0 && b.openResourceSlot == -1 && c.openResourceSlot == -1)
    }
}
