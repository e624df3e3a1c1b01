//===----------------------------------------------------------------------===//
// swift-asyncio — ConnectionCounters: a loop's counts of stream connections, bytes and TLS
// handshakes, kept only while metrics are on (the AsyncIOMetrics product reads them).
//===----------------------------------------------------------------------===//

/// Counts of the TCP and Unix stream connections on one loop, for the `AsyncIOMetrics`
/// product; this library itself has no metrics dependency.
///
/// Off unless ``EventLoop/enableConnectionCounters()`` made it: a socket transport looks the
/// counters up once, when it is made, so with metrics off a message costs one `nil` check of
/// a stored property. On, each count is a plain integer add on the loop's thread: no atomics,
/// no allocation, no call. Connections made before counting was on are not counted at all
/// (neither opened nor closed), so opened − closed stays the number open.
///
/// Loop-confined: read and written on the loop's thread only (the transports that count run
/// there; the exporter reads there). The counts wrap on overflow.
package final class ConnectionCounters: LoopLocal {
    static let key = LoopLocalKey<ConnectionCounters>()

    // Plain stored counts, added to on the hot path: no runtime exclusivity checks (the
    // loop's thread is the only accessor).
    /// Connections accepted by servers on the loop.
    @exclusivity(unchecked) package internal(set) var accepted = 0
    /// Stream socket transports started (accepted, connected, adopted).
    @exclusivity(unchecked) package internal(set) var opened = 0
    /// Stream socket transports closed, for any reason.
    @exclusivity(unchecked) package internal(set) var closed = 0
    /// Of the closed ones, those whose error was a reset by the peer (ECONNRESET, EPIPE).
    @exclusivity(unchecked) package internal(set) var reset = 0
    /// Bytes read from stream sockets.
    @exclusivity(unchecked) package internal(set) var bytesReceived = 0
    /// Bytes the kernel took for stream sockets.
    @exclusivity(unchecked) package internal(set) var bytesSent = 0
    /// TLS handshakes that succeeded (servers, clients and startTLS).
    @exclusivity(unchecked) package internal(set) var tlsHandshakesSucceeded = 0
    /// TLS handshakes that failed, timed out, or ended with the connection.
    @exclusivity(unchecked) package internal(set) var tlsHandshakesFailed = 0
    /// Called on the loop's thread after each counted TLS handshake with its outcome and its
    /// duration in nanoseconds (the exporter feeds a timer with it).
    package var tlsHandshakeObserver: ((_ succeeded: Bool, _ nanoseconds: UInt64) -> Void)?

    init() {}

    /// Counts a TLS handshake that started at `start` (monotonic nanoseconds).
    func countHandshake(succeeded: Bool, start: UInt64) {
        if succeeded {
            tlsHandshakesSucceeded &+= 1
        } else {
            tlsHandshakesFailed &+= 1
        }
        tlsHandshakeObserver?(succeeded, monotonicNanoseconds() &- start)
    }

    /// Counts a closed connection; `error` is what `connectionLost` got.
    func countClosed(_ error: (any Error)?) {
        closed &+= 1
        if let error = error as? TransportError, error.code == .connectionReset || error.code == .brokenPipe {
            reset &+= 1
        }
    }

    func loopWillClose() {
        tlsHandshakeObserver = nil
    }
}

@available(*, unavailable)
extension ConnectionCounters: Sendable {}

extension EventLoop {
    /// Turns the counting of stream connections on for this loop (for good) and returns the
    /// counters. Connections made from now on are counted.
    /// - Important: Loop-bound.
    package func enableConnectionCounters() -> ConnectionCounters {
        assertInLoop()
        return local(ConnectionCounters.key) { ConnectionCounters() }
    }

    /// The loop's counters if counting is on.
    var connectionCounters: ConnectionCounters? { existingLocal(ConnectionCounters.key) }
}
