//===----------------------------------------------------------------------===//
// swift-asyncio — StreamReader: async reads over a stream transport.
//===----------------------------------------------------------------------===//

/// The reading half of a connection for async/await code (asyncio's `StreamReader`).
///
/// Bytes the transport delivers are buffered; reads take them out. When the buffer holds more
/// than twice ``limit`` bytes the transport stops reading until the application catches up,
/// so memory stays bounded whatever the peer sends.
///
/// ```swift
/// let (reader, writer) = try await openConnection(host: "127.0.0.1", port: 8888)
/// writer.write("ping\n")
/// let line = try await reader.readLine()
/// ```
/// - Important: Loop-bound: use it from tasks running on its loop.
public final class StreamReader: AsyncSequence, _LoopTaskWait, @unchecked Sendable {
    /// Each element is a chunk of bytes as it arrived.
    public typealias Element = [UInt8]

    /// The loop the reader belongs to.
    public let loop: EventLoop
    /// The most a `readUntil`/`readLine` buffers looking for its separator, and half the
    /// buffer size at which reading from the transport pauses (asyncio's 64 KiB default).
    public let limit: Int
    // Loop-confined state, touched on every read: no dynamic exclusivity checks (only the
    // loop's thread touches it; see EventLoop.assertInLoop).
    @exclusivity(unchecked) private var buffer: [UInt8] = []
    /// Bytes at the front of `buffer` already consumed.
    @exclusivity(unchecked) private var start = 0
    @exclusivity(unchecked) private var eof = false
    @exclusivity(unchecked) private var failure: (any Error)?
    /// The read waiting for data, if any (a bare continuation: no allocation per wait).
    /// Resumed with `true` (see ``waitForData(_:)``).
    @exclusivity(unchecked) private var waiter: UnsafeContinuation<Bool, any Error>?
    /// Numbers the waits, so a late cancellation cannot resume a later wait.
    private var waitCount: UInt64 = 0
    /// The waiting read is `coveredTask`'s (see ``coverCancellation(_:)``).
    @exclusivity(unchecked) private var waiterCovered = false
    /// The task whose cancellation handler wakes this reader's waits for its whole life (a
    /// stream server's connection task): its waits install no handler of their own. Its
    /// address, compared with the current task's, valid while the cover's body runs.
    @exclusivity(unchecked) private var coveredTask: UnsafeRawPointer?
    /// `coveredTask` was cancelled (set on the loop by the cover's handler).
    @exclusivity(unchecked) private var coverCancelled = false
    /// Where a waiting ``read(into:)`` wants its bytes: ``feed(_:)`` copies them straight
    /// there (the one copy) instead of through `buffer`.
    @exclusivity(unchecked) private var target: UnsafeMutableRawBufferPointer?
    /// How many bytes ``feed(_:)`` copied into `target`.
    @exclusivity(unchecked) private var delivered = 0
    /// ``receiveBuffer()`` handed out `target`: the transport reads straight into it.
    @exclusivity(unchecked) private var receivingDirectly = false
    /// The loop's scratch buffer, where the transport reads when no ``read(into:)`` waits
    /// (held, so its memory lives as long as this reader uses it).
    @exclusivity(unchecked) private var scratch: StreamScratch?
    /// `scratch`'s memory, read without touching the object's reference count.
    @exclusivity(unchecked) private var scratchBytes = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    /// The most a waiting ``read(max:)`` takes (0: none waits): ``feed(_:)`` makes its array
    /// straight from the received bytes instead of through `buffer`.
    @exclusivity(unchecked) private var arrayWanted = 0
    /// The array ``feed(_:)`` made for the waiting ``read(max:)``.
    @exclusivity(unchecked) private var deliveredArray: [UInt8]?
    /// The transport to pause and resume. Strong, not weak: a weak reference would give the
    /// transport a side table, which makes every retain and release of it take the slow path
    /// (measured: ~450 instructions per echoed message). The cycle through the transport's
    /// protocol is broken by ``StreamReaderProtocol/connectionLost(_:)``, which clears it.
    @exclusivity(unchecked) var transport: (any StreamTransport)?
    @exclusivity(unchecked) private var transportPaused = false

    /// A reader fed by hand (``feed(_:)-(UnsafeRawBufferPointer)``, ``feedEOF()``) or by a connection.
    public init(loop: EventLoop, limit: Int = 64 * 1024) {
        precondition(limit > 0, "StreamReader limit must be positive")
        self.loop = loop
        self.limit = limit
    }

    private var available: Int { buffer.count - start }

    // MARK: - Feeding (the protocol side)

    /// Appends received bytes and wakes a waiting read.
    public func feed(_ bytes: UnsafeRawBufferPointer) {
        loop.assertInLoop()
        guard !bytes.isEmpty else { return }
        // A read waiting on an empty buffer gets its bytes straight (one copy), the rest (if
        // it has no room) goes into the buffer behind them. Only while it still waits: a read
        // resumed by cancellation, not yet running, takes nothing.
        var taken = 0
        if waiter != nil, let target, let source = bytes.baseAddress, let destination = target.baseAddress {
            taken = Swift.min(bytes.count, target.count)
            destination.copyMemory(from: source, byteCount: taken)
            delivered = taken
            self.target = nil
        } else if waiter != nil, arrayWanted > 0 {
            taken = Swift.min(bytes.count, arrayWanted)
            deliveredArray = Array(UnsafeRawBufferPointer(rebasing: bytes[..<taken]))
            arrayWanted = 0
        }
        if taken < bytes.count { buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[taken...])) }
        wake()
        if !transportPaused, available > 2 * limit, let transport {
            transportPaused = true
            transport.pauseReading()
        }
    }

    /// Where the transport reads next (``StreamReaderProtocol`` is a ``BufferedProtocol``):
    /// into the memory of a ``read(into:)`` waiting on an empty buffer — the kernel's copy (or
    /// TLS's decryption) is then the only one — else into the loop's stream scratch buffer,
    /// whose bytes ``received(_:)`` feeds as ``feed(_:)-(UnsafeRawBufferPointer)`` does.
    func receiveBuffer() -> UnsafeMutableRawBufferPointer {
        if waiter != nil, let target {
            receivingDirectly = true
            return target
        }
        receivingDirectly = false
        if scratchBytes.count == 0 {
            let shared = loop.local(StreamScratch.key) { StreamScratch() }
            scratch = shared
            scratchBytes = shared.bytes
        }
        return scratchBytes
    }

    /// The transport put `count` bytes where ``receiveBuffer()`` pointed.
    func received(_ count: Int) {
        guard count > 0 else { return }
        if receivingDirectly {
            receivingDirectly = false
            delivered = count
            target = nil
            wake()
        } else {
            feed(UnsafeRawBufferPointer(start: scratchBytes.baseAddress, count: count))
        }
    }

    /// Appends received bytes.
    public func feed(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// Takes the bytes buffered and not read yet (for startTLS: they belong to the handshake).
    func takeBuffered() -> [UInt8] {
        let pending = Array(buffer[start...])
        buffer.removeAll()
        start = 0
        transportPaused = false
        return pending
    }

    /// Marks the end of the stream.
    public func feedEOF() {
        loop.assertInLoop()
        eof = true
        wake()
    }

    /// Fails pending and later reads with `error` (after the buffered bytes are gone).
    public func setError(_ error: any Error) {
        loop.assertInLoop()
        failure = error
        wake()
    }

    /// Whether a read is waiting for data (tests).
    var isWaiting: Bool { waiter != nil }
    /// Whether the waiting read is the covered task's, woken by its cover (tests).
    var isWaitCovered: Bool { waiter != nil && waiterCovered }

    /// Whether the stream ended and every byte was read (asyncio's `at_eof`).
    public var atEOF: Bool { eof && available == 0 }

    private func wake() {
        if let waiter {
            self.waiter = nil
            waiterCovered = false
            forgetDelivery()
            waiter.resume(returning: true)
        }
    }

    /// The waiting read is resumed (or gave up before it waited): no later bytes may go to
    /// its memory or array. Before this, a read cancelled and not yet running left its memory
    /// as the target, and a read of another task waiting meanwhile lost the next bytes to it.
    private func forgetDelivery() {
        target = nil
        arrayWanted = 0
    }

    /// Resumes the waiting read with a cancellation (it takes no bytes).
    private func cancelWaiter() {
        guard let waiter else { return }
        self.waiter = nil
        waiterCovered = false
        forgetDelivery()
        waiter.resume(throwing: CancellationError())
    }

    /// The current task's address (nil outside a task): an identity to compare, never used
    /// to reach the task.
    private static func currentTaskAddress() -> UnsafeRawPointer? {
        withUnsafeCurrentTask { task in task.map { unsafeBitCast($0, to: UnsafeRawPointer.self) } }
    }

    /// Runs `body` (in the calling task) with one cancellation handler for all the reads it
    /// waits in, instead of one per wait: what a stream server does for its connection tasks.
    /// Reads from other tasks (children included) keep their own handlers.
    nonisolated(nonsending) func coverCancellation(_ body: nonisolated(nonsending) () async throws -> Void) async rethrows {
        loop.preconditionInLoop()
        precondition(coveredTask == nil, "StreamReader: one cancellation cover at a time")
        let loop = self.loop
        try await withTaskCancellationHandler {
            coveredTask = Self.currentTaskAddress()
            defer {
                coveredTask = nil
                coverCancelled = false
            }
            try await body()
        } onCancel: {
            // Runs on the cancelling thread: the flag and the waiter are the loop's. A wait
            // that starts before this reaches the loop is stored, then resumed here.
            loop.execute { [self] in
                guard coveredTask != nil else { return }
                coverCancelled = true
                if waiterCovered { cancelWaiter() }
            }
        }
    }

    /// Waits for more bytes, EOF or an error. Only one read may wait at a time. Inlined into
    /// each read: a covered wait then needs no async frame of its own.
    @inline(__always)
    nonisolated(nonsending) private func waitForData(_ function: StaticString) async throws {
        loop.preconditionInLoop()
        precondition(waiter == nil, "StreamReader.\(function) called while another read is waiting")
        if let failure { throw failure }
        if transportPaused, let transport {
            transportPaused = false
            transport.resumeReading()
        }
        if let coveredTask {
            // The continuation resumes the task on the executor it suspended on (the
            // caller's): the inheriting form saves the two hops (each a status-record lock)
            // that the `isolation:` form adds around it.
            let covered = try await _unsafeInheritExecutor_withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Bool, any Error>) in
                // Whose wait is it? A continuation is its task (Swift's runtime hands out the
                // waiting task as the continuation), so this costs nothing, where asking for
                // the current task (`withUnsafeCurrentTask`) costs ~330 instructions a wait.
                // Should the runtime ever represent continuations otherwise, no address
                // matches and every wait takes the handler path below: slower, still right.
                guard taskAddress(of: continuation) == coveredTask else {
                    continuation.resume(returning: false)   // not suspended: returns at once
                    return
                }
                // The task's one handler (coverCancellation) wakes this wait: no handler of
                // its own, no status record per wait.
                if coverCancelled {
                    forgetDelivery()
                    continuation.resume(throwing: CancellationError())
                } else {
                    waiter = continuation
                    waiterCovered = true
                }
            }
            if covered { return }
        } else if let owner = loop.coveringTask() {
            // Not a stream server's connection task, but a LoopTask's own (a client, say): its
            // cancel(message:) ends the wait directly, as for the loop's other waits (see
            // Future.value), instead of a handler per wait.
            let loop = self.loop
            let covered = try await _unsafeInheritExecutor_withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Bool, any Error>) in
                guard loop.isRunningTask(continuation) else {
                    continuation.resume(returning: false)
                    return
                }
                if owner.cancelling() > 0 || Task.isCancelled {
                    forgetDelivery()
                    continuation.resume(throwing: CancellationError())
                } else {
                    waitCount &+= 1
                    owner._setCoveredWait(self, id: waitCount)
                    waiter = continuation
                }
            }
            if covered {
                owner._setCoveredWait(nil, id: 0)
                return
            }
        }
        try await waitWithHandler()
    }

    /// The LoopTask in wait `id` was cancelled: as its handler would (see ``waitForData(_:)``).
    public func _waitingTaskCancelled(_ id: UInt64, message: String?) {
        guard waitCount == id, !waiterCovered else { return }
        cancelWaiter()
    }

    /// A wait with a cancellation handler of its own (reads from tasks without a cover). The
    /// handler and the continuation inherit the caller's executor (the loop): no hops.
    nonisolated(nonsending) private func waitWithHandler() async throws {
        waitCount &+= 1
        let wait = waitCount
        let loop = self.loop
        try await _unsafeInheritExecutor_withTaskCancellationHandler {
            _ = try await _unsafeInheritExecutor_withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Bool, any Error>) in
                // Cancelled before we got here: the handler below already ran and found no
                // waiter.
                if Task.isCancelled {
                    forgetDelivery()
                    continuation.resume(throwing: CancellationError())
                } else {
                    waiter = continuation
                }
            }
        } onCancel: {
            loop.execute { [self] in
                guard waitCount == wait, !waiterCovered else { return }
                cancelWaiter()
            }
        }
    }

    private func take(_ count: Int) -> [UInt8] {
        let bytes = Array(buffer[start..<(start + count)])
        advance(count)
        return bytes
    }

    /// Drops `count` read bytes from the front of the buffer; resumes a paused transport once
    /// the buffer is back under the limit.
    private func advance(_ count: Int) {
        start += count
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 64 * 1024 && start > buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
        if transportPaused, available <= limit, let transport {
            transportPaused = false
            transport.resumeReading()
        }
    }

    // MARK: - Reading

    /// Reads up to `buffer.count` bytes into `buffer`, memory the caller owns and reuses:
    /// whatever is buffered, or waits for some. Returns the count, 0 at EOF (and for an empty
    /// buffer). Unlike ``read(max:)`` it allocates nothing per call.
    ///
    /// ```swift
    /// let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 1)
    /// defer { buffer.deallocate() }
    /// while case let n = try await reader.read(into: buffer), n > 0 {
    ///     writer.write(UnsafeRawBufferPointer(rebasing: buffer[..<n]))
    ///     try await writer.drain()
    /// }
    /// ```
    /// - Throws: the connection's error; `CancellationError` (then nothing was read: the bytes
    ///   stay for the next read).
    nonisolated(nonsending) public func read(into buffer: UnsafeMutableRawBufferPointer) async throws -> Int {
        guard let destination = buffer.baseAddress, buffer.count > 0 else { return 0 }
        while available == 0 && !eof {
            if let failure { throw failure }
            // Waiting on an empty buffer: feed copies the next bytes straight into `buffer`.
            target = buffer
            delivered = 0
            do {
                try await waitForData(#function)
            } catch {
                target = nil
                throw error   // resumed by cancellation or failure: nothing was delivered
            }
            target = nil
            if delivered > 0 {
                let count = delivered
                delivered = 0
                return count
            }
        }
        let count = Swift.min(buffer.count, available)
        guard count > 0 else { return 0 }
        self.buffer.withUnsafeBytes { source in
            // SAFETY: start + count <= self.buffer.count (count <= available), and the buffer
            // is not empty, so it has a base address.
            guard let base = source.baseAddress else { return }
            destination.copyMemory(from: base + start, byteCount: count)
        }
        advance(count)
        return count
    }

    /// Reads up to `max` bytes (asyncio's `read(n)`): whatever is buffered, or waits for
    /// some. `max == nil` reads until EOF. Returns `[]` at EOF.
    /// - Throws: the connection's error; `CancellationError`.
    nonisolated(nonsending) public func read(max: Int? = nil) async throws -> [UInt8] {
        if let max {
            precondition(max >= 0, "read(max:) needs a non-negative count")
            if max == 0 { return [] }
            while available == 0 && !eof {
                if let failure { throw failure }
                // Waiting on an empty buffer: feed makes the array from the next bytes.
                arrayWanted = max
                do {
                    try await waitForData(#function)
                } catch {
                    arrayWanted = 0
                    throw error   // resumed by cancellation or failure: nothing was delivered
                }
                arrayWanted = 0
                if let array = deliveredArray {
                    deliveredArray = nil
                    return array
                }
            }
            return take(Swift.min(max, available))
        }
        while !eof {
            if let failure { throw failure }
            try await waitForData(#function)
        }
        return take(available)
    }

    /// Reads exactly `count` bytes (asyncio's `readexactly`).
    /// - Throws: ``IncompleteReadError`` with the bytes read if the stream ends first.
    nonisolated(nonsending) public func readExactly(_ count: Int) async throws -> [UInt8] {
        precondition(count >= 0, "readExactly needs a non-negative count")
        while available < count {
            if eof {
                let partial = take(available)
                throw IncompleteReadError(partial: partial, expected: count)
            }
            if let failure { throw failure }
            try await waitForData(#function)
        }
        return take(count)
    }

    /// Reads up to and including `separator` (asyncio's `readuntil`).
    /// - Throws: ``IncompleteReadError`` if the stream ends first (its `partial` holds what was
    ///   left); ``LimitOverrunError`` if ``limit`` bytes arrive without the separator (the bytes
    ///   stay buffered).
    nonisolated(nonsending) public func readUntil(_ separator: [UInt8] = [UInt8(ascii: "\n")]) async throws -> [UInt8] {
        precondition(!separator.isEmpty, "readUntil needs a non-empty separator")
        return try await readUntil(anyOf: [separator])
    }

    /// Reads up to and including the first of `separators` to appear (asyncio 3.13's
    /// `readuntil` with a tuple): the shortest data that ends with any of them.
    /// - Throws: as ``readUntil(_:)``.
    nonisolated(nonsending) public func readUntil(anyOf separators: [[UInt8]]) async throws -> [UInt8] {
        precondition(!separators.isEmpty && !separators.contains { $0.isEmpty }, "readUntil needs non-empty separators")
        let longest = separators.map(\.count).max() ?? 1
        var searchFrom = start
        while true {
            if let end = firstEnd(of: separators, from: searchFrom) {
                let length = end - start
                if length > limit {
                    throw LimitOverrunError(consumed: length, limit: limit)
                }
                return take(length)
            }
            if available > limit {
                throw LimitOverrunError(consumed: available, limit: limit)
            }
            if eof {
                let partial = take(available)
                throw IncompleteReadError(partial: partial, expected: nil)
            }
            if let failure { throw failure }
            searchFrom = Swift.max(start, buffer.count - longest + 1)
            try await waitForData(#function)
        }
    }

    /// Reads a line, `"\n"` included (asyncio's `readline`); at EOF returns the last partial
    /// line, then `[]`.
    /// - Throws: ``LimitOverrunError`` for a line longer than ``limit``. As asyncio's
    ///   `readline`, the long line is dropped first (through its `"\n"` if that arrived,
    ///   else everything buffered), so the next read starts after it. (asyncio raises
    ///   `ValueError` there; the typed error is kept here so callers can tell it apart.)
    nonisolated(nonsending) public func readLine() async throws -> [UInt8] {
        do {
            return try await readUntil(anyOf: [[UInt8(ascii: "\n")]])
        } catch let error as IncompleteReadError {
            return error.partial
        } catch let error as LimitOverrunError {
            let newline = firstEnd(of: [[UInt8(ascii: "\n")]], from: start)
            _ = take((newline ?? buffer.count) - start)
            throw error
        }
    }

    /// The end index (past the separator) of the earliest-ending match of any separator in
    /// the buffer at or after `from`.
    private func firstEnd(of separators: [[UInt8]], from: Int) -> Int? {
        var best: Int?
        for separator in separators {
            if let index = find(separator, from: from) {
                let end = index + separator.count
                if best.map({ end < $0 }) ?? true { best = end }
            }
        }
        return best
    }

    private func find(_ separator: [UInt8], from: Int) -> Int? {
        guard buffer.count - from >= separator.count else { return nil }
        var i = from
        let last = buffer.count - separator.count
        while i <= last {
            if buffer[i] == separator[0] {
                var match = true
                for j in 1..<separator.count where buffer[i + j] != separator[j] {
                    match = false
                    break
                }
                if match { return i }
            }
            i += 1
        }
        return nil
    }
}

/// The buffer a loop's stream connections read into when no ``StreamReader/read(into:)`` waits
/// (loop-local; one loop runs one callback at a time). Not the transports' shared read buffer:
/// under TLS that one holds the ciphertext being decrypted into this one.
final class StreamScratch: LoopLocal {
    static let key = LoopLocalKey<StreamScratch>()
    let bytes: UnsafeMutableRawBufferPointer

    init() {
        bytes = .allocate(byteCount: SocketBuffers.readBufferSize, alignment: 16)
    }

    deinit {
        bytes.deallocate()
    }

    func loopWillClose() {}
}

@available(*, unavailable)
extension StreamScratch: Sendable {}
