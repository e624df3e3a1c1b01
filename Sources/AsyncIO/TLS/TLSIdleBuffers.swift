//===----------------------------------------------------------------------===//
// swift-asyncio — TLSIdleBuffers: give idle TLS connections' record buffers back.
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
import CAsyncIOOpenSSL

/// Keeps the record buffers (about 34 KiB) of busy TLS connections and frees those of idle
/// ones.
///
/// `SSL_MODE_RELEASE_BUFFERS` frees a buffer whenever it is empty and allocates it again for
/// the next record: few KiB per idle connection, but two malloc/free pairs and ~1,300
/// instructions per echoed message on a busy one. A connection starts in that mode; this
/// sweep, once a second while the loop has TLS connections, takes it out of the mode once
/// the connection received or wrote in two intervals in a row (it then keeps its buffers),
/// and puts it back, freeing the buffers with `SSL_free_buffers`, after an interval with no
/// traffic (OpenSSL refuses while a buffer holds data; the next sweep tries again). Buffers
/// freed in bulk leave holes in the heap that `free` keeps, so a sweep that freed many also
/// calls `malloc_trim` to hand the pages back. Loop-bound: connections join when their
/// handshake starts and leave at `connectionLost` (a no-op for those that never joined).
final class TLSIdleBuffers {
    static let interval: Duration = .seconds(1)
    /// Buffers freed in one sweep (each pair ~34 KiB) worth a `malloc_trim`.
    static let trimAfter = 8

    private unowned let loop: EventLoop
    private var connections: [ObjectIdentifier: TLSConnection] = [:]
    private var timer: Handle?

    init(loop: EventLoop) {
        self.loop = loop
    }

    func add(_ connection: TLSConnection) {
        loop.assertInLoop()
        connections[ObjectIdentifier(connection)] = connection
        if timer == nil { arm() }
    }

    func remove(_ connection: TLSConnection) {
        loop.assertInLoop()
        connections.removeValue(forKey: ObjectIdentifier(connection))
        if connections.isEmpty {
            timer?.cancel()
            timer = nil
        }
    }

    /// Forgets every connection and the timer (the loop is closing).
    func dropAll() {
        connections = [:]
        timer?.cancel()
        timer = nil
    }

    private func arm() {
        timer = loop.callLater(after: Self.interval) { [self] in
            timer = nil
            var released = 0
            for connection in connections.values where connection.sweepRecordBuffers() {
                released += 1
            }
            if released >= Self.trimAfter { _ = casyncio_malloc_trim() }
            if !connections.isEmpty { arm() }
        }
    }
}

@available(*, unavailable)
extension TLSIdleBuffers: Sendable {}

/// What TLS keeps per loop (loop-local state): the buffer connections decrypt into (one
/// record's plaintext at most) and the idle-buffer sweep.
final class TLSLoopState: LoopLocal {
    static let key = LoopLocalKey<TLSLoopState>()
    static let readBufferSize = 16 * 1024

    let readBuffer: UnsafeMutableRawBufferPointer
    /// A connection is delivering from ``readBuffer`` (TLS over TLS takes its own).
    var readBufferInUse = false
    let idleBuffers: TLSIdleBuffers

    init(loop: EventLoop) {
        readBuffer = .allocate(byteCount: Self.readBufferSize, alignment: 16)
        idleBuffers = TLSIdleBuffers(loop: loop)
    }

    deinit {
        readBuffer.deallocate()
    }

    /// The sweep holds connections, which hold the loop: let them go.
    func loopWillClose() {
        idleBuffers.dropAll()
    }
}

@available(*, unavailable)
extension TLSLoopState: Sendable {}

extension EventLoop {
    /// The loop's TLS state (created on first use; loop-bound).
    var tls: TLSLoopState {
        local(TLSLoopState.key) { TLSLoopState(loop: self) }
    }
}
