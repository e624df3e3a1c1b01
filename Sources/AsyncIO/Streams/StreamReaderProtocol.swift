//===----------------------------------------------------------------------===//
// swift-asyncio — StreamReaderProtocol: the protocol that feeds a StreamReader.
//===----------------------------------------------------------------------===//

/// The protocol that connects a transport to a ``StreamReader`` and a ``StreamWriter``
/// (asyncio's `StreamReaderProtocol`). A ``BufferedProtocol``: the transport reads straight
/// into the memory of a waiting ``StreamReader/read(into:)`` (see
/// ``StreamReader/receiveBuffer()``).
final class StreamReaderProtocol: BufferedProtocol, @unchecked Sendable {
    let reader: StreamReader
    private(set) var transport: (any StreamTransport)?
    private var paused = false
    private var drainWaiters: [Future<Void>] = []
    private var lost = false
    private var lostError: (any Error)?
    private var closedWaiters: [Future<Void>] = []
    /// For servers: called with the new reader and writer once the connection is made, then
    /// dropped. (Kept, it would hold the server's handler and what that captures for the
    /// connection's whole life: a handler that captures something holding the writer made a
    /// cycle through this protocol that outlived the connection; found by LeakSanitizer.)
    private var onConnected: ((StreamReader, StreamWriter) -> Void)?

    init(reader: StreamReader, onConnected: ((StreamReader, StreamWriter) -> Void)? = nil) {
        self.reader = reader
        self.onConnected = onConnected
    }

    func connectionMade(_ transport: any StreamTransport) {
        self.transport = transport
        reader.transport = transport
        guard let connected = onConnected else { return }
        onConnected = nil
        connected(reader, StreamWriter(transport: transport, protocol: self))
    }

    /// After startTLS: reads and writes go through the TLS transport.
    func switchTransport(_ transport: any StreamTransport) {
        self.transport = transport
        reader.transport = transport
    }

    func dataReceived(_ bytes: UnsafeRawBufferPointer) {
        reader.feed(bytes)
    }

    func getBuffer(sizeHint: Int) -> UnsafeMutableRawBufferPointer {
        reader.receiveBuffer()
    }

    func bufferUpdated(_ count: Int) {
        reader.received(count)
    }

    func eofReceived() -> Bool {
        reader.feedEOF()
        return true   // keep the sending side open: the writer decides when to close
    }

    func connectionLost(_ error: (any Error)?) {
        lost = true
        lostError = error
        reader.transport = nil
        if let error {
            reader.setError(error)
        } else {
            reader.feedEOF()
        }
        paused = false
        let drainers = drainWaiters
        drainWaiters = []
        for waiter in drainers { waiter.complete(.success(())) }
        let closers = closedWaiters
        closedWaiters = []
        for waiter in closers { waiter.complete(.success(())) }
        transport = nil
    }

    func pauseWriting() {
        paused = true
    }

    func resumeWriting() {
        paused = false
        let drainers = drainWaiters
        drainWaiters = []
        for waiter in drainers { waiter.complete(.success(())) }
    }

    /// ``drain()`` would return at once: not paused, not lost.
    var drainIsFree: Bool { !paused && !lost }

    /// Suspends while the transport's buffer is over its high-water mark.
    nonisolated(nonsending) func drain() async throws {
        if lost {
            if let lostError { throw lostError }
            throw TransportError.closedTransport
        }
        guard paused else { return }
        let waiter = Future<Void>(loop: reader.loop)
        drainWaiters.append(waiter)
        try await waiter.value
        if lost, let lostError { throw lostError }
    }

    func waitClosed() async throws {
        if !lost {
            let waiter = Future<Void>(loop: reader.loop)
            closedWaiters.append(waiter)
            await waiter.waitDone()
        }
        if let lostError { throw lostError }
    }
}
