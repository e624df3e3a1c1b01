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
        guard !sentShutdown, shutdownAfterHeld == nil else { return }
        encrypt(bytes)
    }

    /// Encrypts and sends `bytes`, or holds them while OpenSSL is inside a post-handshake
    /// message (in order behind what is held already).
    func encrypt(_ bytes: UnsafeRawBufferPointer) {
        guard state == .wrapped, let ssl, var base = bytes.baseAddress, bytes.count > 0 else { return }
        recentlyActive = true
        if !heldWrites.isEmpty {   // keep the order behind what is held
            hold(bytes)
            return
        }
        // One OpenSSL call as far as pauses go: a pauseWriting (and whatever the application
        // does in it, say close) comes after every record of `bytes` is written.
        openSSLDepth += 1
        defer { openSSLReturned() }
        var remaining = bytes.count
        while remaining > 0 && state == .wrapped {
            var written = 0
            if SSL_write_ex(ssl, base, remaining, &written) == 1 {
                base += written
                remaining -= written
                continue
            }
            if SSL_want(ssl) == SSL_READING && SSL_in_init(ssl) != 0 {
                // The peer's post-handshake message (a KeyUpdate split over records) must be
                // read first: hold the rest until the next bytes arrive.
                OpenSSLErrors.clear()
                hold(UnsafeRawBufferPointer(start: base, count: remaining))
                return
            }
            // Our BIO never refuses a write, so this is an error (or a closed transport).
            let reason = OpenSSLErrors.take()
            abortWith(TLSError(.protocolError, "TLS write failed: \(reason)", reason: reason), log: false)
            return
        }
    }

    /// Keeps written bytes until OpenSSL can encrypt them; over the high-water mark the
    /// application is asked to pause (held bytes are part of ``writeBufferSize``).
    func hold(_ bytes: UnsafeRawBufferPointer) {
        let first = heldWrites.isEmpty
        heldWrites.append(contentsOf: bytes)
        if first && appPaused {
            inner?.resumeReading()   // OpenSSL needs the rest of its message (see pauseReading)
        }
        if heldWrites.count > writeBufferLimits.high && appConnected && !appWritePaused {
            appWritePaused = true
            app?.pauseWriting()
        }
    }

    /// OpenSSL may be done with the post-handshake message: encrypts what was held, then
    /// carries out a `writeEOF` or `close` that waited for it.
    func flushHeldWrites() {
        let held = heldWrites
        heldWrites = []
        held.withUnsafeBytes { encrypt($0) }
        guard heldWrites.isEmpty, state == .wrapped else { return }
        if appWritePaused && !innerWritePaused && !pausePending {
            appWritePaused = false
            app?.resumeWriting()
        }
        if appPaused && state == .wrapped {
            inner?.pauseReading()   // the application's pause holds again
        }
        guard let pending = shutdownAfterHeld else { return }
        shutdownAfterHeld = nil
        switch pending {
        case .writeEOF: writeEOF()
        case .close: close()
        }
    }

    func writeEOF() {
        loop.assertInLoop()
        guard state == .wrapped, !sentShutdown, shutdownAfterHeld == nil, let ssl else { return }
        if !heldWrites.isEmpty {   // close_notify must follow them (and OpenSSL cannot yet)
            shutdownAfterHeld = .writeEOF
            return
        }
        sentShutdown = true
        OpenSSLErrors.clear()
        let done = openSSL({ SSL_shutdown(ssl) }) == 1
        OpenSSLErrors.clear()
        if done {   // the peer's close_notify came first: all done
            finishClose()
        }
    }

    /// TLS 1.3 allows half-close; with TLS 1.2 the peer answers close_notify by closing.
    var canWriteEOF: Bool { isTLS13 }

    var isTLS13: Bool {
        guard let ssl else { return false }
        return SSL_version(ssl) >= TLS1_3_VERSION
    }

    func close() {
        loop.assertInLoop()
        switch state {
        case .unwrapped, .handshaking:
            move(to: .closed)
            failure = failure ?? TLSError(.closedDuringHandshake, "closed during the TLS handshake")
            inner?.close()
        case .wrapped where !heldWrites.isEmpty:
            // Held bytes go first; meanwhile read on (dropping data) so OpenSSL can finish
            // the message it is in, for at most the shutdown timeout.
            guard shutdownAfterHeld != .close else { return }
            shutdownAfterHeld = .close
            armShutdownTimer(queued: 0)
            keepReadingWhileClosing()
        case .wrapped:
            startShutdown()
        case .shuttingDown, .closed:
            return
        }
    }

    /// Sends close_notify and waits (at most the shutdown timeout) for the peer's.
    func startShutdown() {
        guard let ssl else { return }
        move(to: .shuttingDown)
        let done: Bool
        if sentShutdown {   // writeEOF sent it already
            done = SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN != 0
        } else {
            OpenSSLErrors.clear()
            done = openSSL({ SSL_shutdown(ssl) }) == 1
            sentShutdown = true
            OpenSSLErrors.clear()
        }
        if done || innerEOF || inner?.isClosing != false {
            finishClose()
            return
        }
        armShutdownTimer(queued: inner?.writeBufferSize ?? 0)
        // Keep reading to see the peer's close_notify.
        keepReadingWhileClosing()
    }

    /// Reads on even if the application paused, first through whatever arrived meanwhile.
    func keepReadingWhileClosing() {
        appPaused = false
        if !savedInput.isEmpty {
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
        let timeout = context.configuration.shutdownTimeout
        shutdownTimer?.cancel()
        shutdownTimer = loop.callLater(after: timeout) { [self] in
            guard state == .shuttingDown || state == .wrapped && shutdownAfterHeld == .close else { return }
            let now = inner?.writeBufferSize ?? 0
            if now < queued {   // sending on: wait again, from now
                armShutdownTimer(queued: now)
                return
            }
            failure = TLSError(
                .shutdownTimeout, "the peer did not answer close_notify within \(timeout); connection aborted")
            move(to: .closed)
            inner?.abort()
        }
    }

    func finishClose() {
        shutdownTimer?.cancel()
        shutdownTimer = nil
        move(to: .closed)
        inner?.close()
    }

    func abort() {
        loop.assertInLoop()
        move(to: .closed)
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
        if log && isServer { logHandshakeFailure(error) }
        move(to: .closed)
        inner?.abort()
    }

    func protocolCallbackFailed(_ error: any Error, _ callback: String) {
        loop.callExceptionHandler(ExceptionContext(
            message: "error in protocol callback \(callback); the transport is aborted",
            error: error, source: "\(self)"))
        failure = error
        move(to: .closed)
        inner?.abort()
    }

    var isClosing: Bool { state != .wrapped || shutdownAfterHeld == .close }

    func pauseReading() {
        loop.assertInLoop()
        guard state == .wrapped, !appPaused else { return }
        appPaused = true
        // While writes are held the socket reads on: OpenSSL needs the rest of its message.
        if heldWrites.isEmpty { inner?.pauseReading() }
    }

    func resumeReading() {
        loop.assertInLoop()
        guard state == .wrapped, appPaused else { return }
        appPaused = false
        if savedInput.isEmpty && (ssl.map { SSL_has_pending($0) } ?? 0) == 0 {
            inner?.resumeReading()
        } else {
            loop.schedule { [self] in resumeSavedInput() }
        }
    }

    /// Delivers what arrived before a pause, then reads from the socket again.
    func resumeSavedInput() {
        guard !appPaused, state == .wrapped || state == .shuttingDown else { return }
        let pending = savedInput
        savedInput = []
        pending.withUnsafeBytes { receive($0) }
        if !appPaused && (state == .wrapped || state == .shuttingDown) {
            inner?.resumeReading()
        }
    }

    var isReading: Bool { state == .wrapped && !appPaused && inner?.isReading == true }

    func setWriteBufferLimits(high: Int?, low: Int?) throws(TransportError) {
        try inner?.setWriteBufferLimits(high: high, low: low)
    }

    var writeBufferLimits: (low: Int, high: Int) { inner?.writeBufferLimits ?? (16 * 1024, 64 * 1024) }

    var writeBufferSize: Int { (inner?.writeBufferSize ?? 0) + heldWrites.count }

    var peerAddress: SocketAddress? { inner?.peerAddress }

    var localAddress: SocketAddress? { inner?.localAddress }

    var fileDescriptor: Int32 { inner?.fileDescriptor ?? -1 }

    var streamProtocol: any StreamProtocol {
        get { app ?? ClosedProtocol.shared }
        set {
            loop.assertInLoop()
            guard state != .closed else { return }
            app = newValue
        }
    }

    var connectionInfo: TLSConnectionInfo? {
        guard let ssl, state != .unwrapped else { return nil }
        return TLSConnectionInfo(ssl: ssl, session: latestSession)
    }

    /// The idle sweep (``TLSIdleBuffers``): a connection active in two intervals in a row
    /// keeps OpenSSL's record buffers; one idle for an interval frees them (if they hold no
    /// data) and releases them whenever empty again.
    /// - Returns: whether buffers were freed.
    func sweepBuffers() -> Bool {
        guard let ssl else { return false }
        if recentlyActive {
            recentlyActive = false
            activeSweeps += 1
            if activeSweeps >= 2 && !keepsBuffers {
                keepsBuffers = true
                casyncio_SSL_clear_mode(ssl, casyncio_SSL_MODE_RELEASE_BUFFERS())
            }
            return false
        }
        activeSweeps = 0
        guard keepsBuffers, SSL_free_buffers(ssl) == 1 else { return false }
        keepsBuffers = false
        casyncio_SSL_set_mode(ssl, casyncio_SSL_MODE_RELEASE_BUFFERS())
        return true
    }
}
