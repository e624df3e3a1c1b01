//===----------------------------------------------------------------------===//
// swift-asyncio — TLSTransport, sending: the application's transport (writes, close, shutdown).
//===----------------------------------------------------------------------===//

import CAsyncIOOpenSSL
#if canImport(Glibc)
import Glibc
#endif

extension TLSTransport {
    // MARK: - The application's transport

    func write(_ bytes: UnsafeRawBufferPointer) {
        loop.assertInLoop()
        core.write(bytes)
    }

    func writeEOF() {
        loop.assertInLoop()
        core.writeEOF()
    }

    /// TLS 1.3 allows half-close; with TLS 1.2 the peer answers close_notify by closing.
    var canWriteEOF: Bool { core.isTLS13 }

    func close() {
        loop.assertInLoop()
        closeProgressed(core.close())
    }

    /// Follows up a close: timers, the transport below, reading on.
    func closeProgressed(_ progress: TLSConnection.CloseProgress) {
        switch progress {
        case .alreadyClosing, .done:
            return
        case .abandonedHandshake:
            failure = failure ?? TLSError(.closedDuringHandshake, "closed during the TLS handshake")
            inner?.close()
        case .waitingForHeldWrites:
            // Held bytes go first; meanwhile read on (dropping data) so OpenSSL can finish
            // the message it is in, for at most the shutdown timeout.
            armShutdownTimer(queued: 0)
            keepReadingWhileClosing()
        case .waitingForCloseNotify:
            if inner?.isClosing != false {   // nobody left to answer
                finishClose()
                return
            }
            armShutdownTimer(queued: inner?.writeBufferSize ?? 0)
            keepReadingWhileClosing()   // to see the peer's close_notify
        }
    }

    /// Reads on even if the application paused, first through whatever arrived meanwhile.
    func keepReadingWhileClosing() {
        if core.hasSavedInput {
            loop.schedule { [self] in resumeSavedInput() }
        } else {
            inner?.resumeReading()
        }
    }

    /// The shutdown timeout counts from when the peer can see our close_notify: while the
    /// socket transport is still sending what was written before it (a slow reader of a big
    /// response) and makes progress, the wait goes on; a peer that stops reading, or that
    /// does not answer within the timeout once all is sent, is aborted.
    /// - Parameter queued: The socket transport's buffered bytes when armed.
    func armShutdownTimer(queued: Int) {
        let timeout = core.context.configuration.shutdownTimeout
        shutdownTimer?.cancel()
        shutdownTimer = loop.callLater(after: timeout) { [self] in
            guard core.phase == .shuttingDown || core.phase == .established && core.writeSide == .heldThenClose
            else { return }
            let now = inner?.writeBufferSize ?? 0
            if now < queued {   // sending on: wait again, from now
                armShutdownTimer(queued: now)
                return
            }
            failure = TLSError(
                .shutdownTimeout, "the peer did not answer close_notify within \(timeout); connection aborted")
            core.abort()
            inner?.abort()
        }
    }

    /// Closes without waiting for the peer's close_notify.
    func finishClose() {
        shutdownTimer?.cancel()
        shutdownTimer = nil
        core.abort()
        inner?.close()
    }

    func abort() {
        loop.assertInLoop()
        core.abort()
        inner?.abort()   // not attached yet: attach aborts
    }

    /// Aborts with `error` as the reason `connectionLost` gives (unless one is known already).
    func abort(reporting error: any Error) {
        failure = failure ?? error
        abort()
    }

    /// A TLS failure: remember it for `connectionLost` and drop the connection.
    func abortWith(_ error: TLSError, log: Bool) {
        failure = error
        countHandshake(succeeded: false)   // a handshake timeout (nothing once it is done)
        if log && isServer { logHandshakeFailure(error) }
        core.abort()
        inner?.abort()
    }

    func protocolCallbackFailed(_ error: any Error, _ callback: String) {
        loop.callExceptionHandler(ExceptionContext(
            message: "error in protocol callback \(callback); the transport is aborted",
            error: error, source: "\(self)", logger: logger))
        failure = error
        core.abort()
        inner?.abort()
    }

    var isClosing: Bool { core.phase != .established || core.writeSide == .heldThenClose }

    func pauseReading() {
        loop.assertInLoop()
        guard core.pauseReading() else { return }
        // While writes are held the socket reads on: OpenSSL needs the rest of its message.
        if !core.writeSide.isHeld { inner?.pauseReading() }
    }

    func resumeReading() {
        loop.assertInLoop()
        guard core.phase == .established, core.readSide == .paused else { return }
        if core.resumeReading() {
            loop.schedule { [self] in resumeSavedInput() }
        } else {
            inner?.resumeReading()
        }
    }

    /// Delivers what arrived before a pause, then reads from the socket again.
    func resumeSavedInput() {
        guard core.readSide != .paused, core.phase == .established || core.phase == .shuttingDown else { return }
        withPlaintextBuffer { core.receiveSaved(plaintext: $0) }
        if core.readSide != .paused && (core.phase == .established || core.phase == .shuttingDown) {
            inner?.resumeReading()
        }
    }

    var isReading: Bool { core.phase == .established && core.readSide != .paused && inner?.isReading == true }

    func setWriteBufferLimits(high: Int?, low: Int?) throws(TransportError) {
        try inner?.setWriteBufferLimits(high: high, low: low)
    }

    var writeBufferLimits: (low: Int, high: Int) { inner?.writeBufferLimits ?? (16 * 1024, 64 * 1024) }

    var writeBufferSize: Int { (inner?.writeBufferSize ?? 0) + core.heldWriteCount }

    var peerAddress: SocketAddress? { inner?.peerAddress }

    var localAddress: SocketAddress? { inner?.localAddress }

    var fileDescriptor: Int32 { inner?.fileDescriptor ?? -1 }

    var streamProtocol: any StreamProtocol {
        get { app ?? ClosedProtocol.shared }
        set {
            loop.assertInLoop()
            guard core.phase != .closed else { return }
            app = newValue
        }
    }

    var connectionInfo: TLSConnectionInfo? { core.connectionInfo }
}
