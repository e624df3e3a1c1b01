//===----------------------------------------------------------------------===//
// swift-asyncio — TLSTransport, receiving: the socket transport's protocol (records in, EOF, loss).
//===----------------------------------------------------------------------===//

import CAsyncIOOpenSSL
#if canImport(Glibc)
import Glibc
#endif

extension TLSTransport {
    // MARK: - The inner transport's protocol

    func connectionMade(_ transport: any StreamTransport) {
        attach(to: transport)
    }

    func dataReceived(_ bytes: UnsafeRawBufferPointer) {
        receive(bytes)
    }

    /// Runs OpenSSL over `bytes`; keeps what is left if the application paused reading.
    func receive(_ bytes: UnsafeRawBufferPointer) {
        recentlyActive = true
        input = bytes
        inputOffset = 0
        process()
        // Keep what a pause left unread (nothing else can leave bytes unread: OpenSSL takes
        // all it is given); bytes after the peer's close_notify are dropped.
        if inputOffset < input.count, appPaused, state == .wrapped && !peerClosed {
            savedInput.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[inputOffset...]))
        }
        input = UnsafeRawBufferPointer(start: nil, count: 0)
        inputOffset = 0
    }

    func process() {
        if state == .handshaking {
            handshakeStep()
        }
        if state == .wrapped {
            readRecords()
        }
        if state == .wrapped && !heldWrites.isEmpty {
            if appPaused { finishPostHandshakeMessage() }
            flushHeldWrites()
            // The application may have resumed reading meanwhile: the rest of the input is its.
            if state == .wrapped && !appPaused { readRecords() }
        }
        if state == .shuttingDown {   // also when the application closed while reading
            drainUntilCloseNotify()
        }
    }

    /// Decrypts and delivers application data until OpenSSL needs more bytes.
    func readRecords() {
        guard let ssl else { return }
        withPlaintextBuffer { buffer in readRecords(ssl, into: buffer) }
    }

    /// Runs `body` with the loop's plaintext buffer, or a buffer of its own if the loop's is
    /// in use (TLS over TLS: the outer layer's input is the inner layer's plaintext).
    func withPlaintextBuffer(_ body: (UnsafeMutableRawBufferPointer) -> Void) {
        if shared.readBufferInUse {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: TLSLoopState.readBufferSize, alignment: 16)
            defer { buffer.deallocate() }
            body(buffer)
        } else {
            shared.readBufferInUse = true
            defer { shared.readBufferInUse = false }
            body(shared.readBuffer)
        }
    }

    func readRecords(_ ssl: OpaquePointer, into buffer: UnsafeMutableRawBufferPointer) {
        while state == .wrapped && !appPaused && !peerClosed {
            var count = 0
            if let bufferedApp, shutdownAfterHeld != .close {
                if readIntoProtocolBuffer(bufferedApp, ssl) { continue } else { return }
            }
            // No ERR_clear_error first (a third of our per-message cost with OpenSSL 3):
            // readFailed tells "needs more bytes" from errors without the error queue.
            if openSSL({ SSL_read_ex(ssl, buffer.baseAddress, buffer.count, &count) }) == 1 {
                // After close() (waiting for held writes) records are read and dropped.
                guard let app, shutdownAfterHeld != .close else { continue }
                do {
                    try app.dataReceived(UnsafeRawBufferPointer(start: buffer.baseAddress, count: count))
                } catch {
                    protocolCallbackFailed(error, "dataReceived")
                    return
                }
                // Every received byte is inside OpenSSL and none of it is left there: the
                // next SSL_read could only say "needs more bytes" (skipping it halves the
                // calls for one record per segment).
                if inputOffset == input.count && SSL_has_pending(ssl) == 0 { return }
                continue
            }
            readFailed(ssl)
            return
        }
    }

    /// One record decrypted straight into a buffered protocol's buffer; false when OpenSSL
    /// needs more bytes or the connection ended.
    func readIntoProtocolBuffer(_ buffered: any BufferedProtocol, _ ssl: OpaquePointer) -> Bool {
        let buffer: UnsafeMutableRawBufferPointer
        do {
            buffer = try buffered.getBuffer(sizeHint: TLSLoopState.readBufferSize)
        } catch {
            protocolCallbackFailed(error, "getBuffer")
            return false
        }
        guard buffer.count > 0 else {
            protocolCallbackFailed(TransportError(.other, "getBuffer returned an empty buffer"), "getBuffer")
            return false
        }
        var count = 0
        guard openSSL({ SSL_read_ex(ssl, buffer.baseAddress, buffer.count, &count) }) == 1 else {
            readFailed(ssl)
            return false
        }
        do {
            try buffered.bufferUpdated(count)
        } catch {
            protocolCallbackFailed(error, "bufferUpdated")
            return false
        }
        return true
    }

    /// Writes are held and the application paused reading (say, because held writes made it
    /// pause writing): OpenSSL still reads the rest of the post-handshake message it is in,
    /// leaving application data for later, so the held writes can go.
    func finishPostHandshakeMessage() {
        guard let ssl, SSL_in_init(ssl) != 0 else { return }
        OpenSSLErrors.clear()
        if openSSL({ SSL_do_handshake(ssl) }) != 1 {
            readFailed(ssl)   // needs more bytes, or a fatal error
        }
    }

    /// SSL_read said no: more bytes needed, the peer's close_notify, or an error.
    ///
    /// The common case, "needs more bytes", is told by `SSL_want` without `SSL_get_error`,
    /// which needs an empty error queue before the call (an `ERR_clear_error` per record, a
    /// third of our per-message cost with OpenSSL 3). The rest is rare and gets the full check.
    func readFailed(_ ssl: OpaquePointer) {
        // Outside a handshake message (a fatal error sets "in init" too), SSL_READING means
        // the BIO ran out of received bytes, and a received shutdown is the peer's close_notify.
        let inInit = SSL_in_init(ssl) != 0
        if SSL_want(ssl) == SSL_READING && !inInit {
            return
        }
        if SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN != 0 && !inInit {
            peerSentCloseNotify()
            return
        }
        let code = SSL_get_error(ssl, 0)
        switch code {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return
        case SSL_ERROR_ZERO_RETURN:
            peerSentCloseNotify()
            return
        default:
            break
        }
        let reason = OpenSSLErrors.take()
        failure = TLSError(.protocolError, "TLS error: \(reason.isEmpty ? "error \(code)" : reason)", reason: reason)
        move(to: .closed)
        inner?.close()   // flushes the alert OpenSSL wrote
    }

    /// Closing: reads (and drops) records until the peer's close_notify.
    func drainUntilCloseNotify() {
        guard let ssl else { return }
        withPlaintextBuffer { buffer in
            while state == .shuttingDown {
                var count = 0
                if openSSL({ SSL_read_ex(ssl, buffer.baseAddress, buffer.count, &count) }) == 1 { continue }
                if SSL_want(ssl) == SSL_READING && SSL_in_init(ssl) == 0 { return }
                OpenSSLErrors.clear()
                finishClose()   // close_notify (SSL_ERROR_ZERO_RETURN) or an error: done either way
            }
        }
    }

    /// The peer's close_notify. TLS 1.3: a half-close, the application may keep writing if
    /// `eofReceived` says so. TLS 1.2: answered and closed (RFC 5246 §7.2.1).
    func peerSentCloseNotify() {
        peerClosed = true
        let keepOpen: Bool
        do {
            keepOpen = try app?.eofReceived() ?? false
        } catch {
            protocolCallbackFailed(error, "eofReceived")
            return
        }
        if state == .wrapped && (!keepOpen || !isTLS13) {
            close()
        }
    }

    func eofReceived() -> Bool {
        innerEOF = true
        switch state {
        case .unwrapped, .handshaking:
            failure = TLSError(.closedDuringHandshake, "the connection closed during the TLS handshake")
            if isServer, let failure { logHandshakeFailure(failure) }
            move(to: .closed)
            return false
        case .wrapped where !heldWrites.isEmpty:
            // Inside a post-handshake message OpenSSL can never finish: what is held is lost.
            failure = TLSError(
                .protocolError,
                "the peer closed inside a TLS post-handshake message; \(heldWrites.count) written bytes were not sent")
            heldWrites = []
            shutdownAfterHeld = nil
            move(to: .closed)
            inner?.close()
            return false
        case .wrapped:
            if peerClosed { return true }   // after close_notify: already reported
            peerClosed = true
            // EOF without close_notify: reported as EOF (as asyncio does); the application
            // decides whether to keep writing.
            let keepOpen: Bool
            do {
                keepOpen = try app?.eofReceived() ?? false
            } catch {
                protocolCallbackFailed(error, "eofReceived")
                return false
            }
            if !keepOpen && state == .wrapped {
                close()   // closes the inner transport itself
            }
            return true
        case .shuttingDown:
            finishClose()
            return true
        case .closed:
            return false
        }
    }

    func connectionLost(_ error: (any Error)?) {
        guard !lostReported else { return }
        lostReported = true
        handshakeTimer?.cancel()
        shutdownTimer?.cancel()
        handshakeTimer = nil
        shutdownTimer = nil
        let wasHandshaking = state == .handshaking || state == .unwrapped
        move(to: .closed)
        var reported = failure ?? error
        if wasHandshaking && reported == nil {
            reported = TLSError(.closedDuringHandshake, "the connection closed during the TLS handshake")
        }
        if let waiter = handshakeWaiter {
            handshakeWaiter = nil
            waiter.complete(.failure(reported ?? TLSError(.closedDuringHandshake, "closed")))
        }
        savedInput = []
        handshakeOutput = []
        heldWrites = []
        if sweepsBuffers {
            sweepsBuffers = false
            shared.idleBuffers.remove(self)
        }
        if let ssl {
            SSL_free(ssl)
            self.ssl = nil
        }
        let lostApp = app
        app = ClosedProtocol.shared
        appFactory = nil
        if appConnected {
            lostApp?.connectionLost(reported)
        }
    }

    func pauseWriting() {
        innerWritePaused = true
        if openSSLDepth > 0 {
            pausePending = true   // told once OpenSSL returned: the app may call back into us
        } else if appConnected && state != .closed && !appWritePaused {
            appWritePaused = true
            app?.pauseWriting()
        }
    }

    func resumeWriting() {
        innerWritePaused = false
        pausePending = false
        // Bytes held over the high-water mark keep the application paused until they go.
        guard appWritePaused, heldWrites.count <= writeBufferLimits.high else { return }
        appWritePaused = false
        if appConnected && state != .closed { app?.resumeWriting() }
    }

    /// Runs an OpenSSL call; a `pauseWriting` from the socket transport during it (our BIO
    /// writes to it) reaches the application only after OpenSSL returned.
    @inline(__always)
    func openSSL<T>(_ call: () -> T) -> T {
        openSSLDepth += 1
        let result = call()
        openSSLReturned()
        return result
    }

    @inline(__always)
    func openSSLReturned() {
        openSSLDepth -= 1
        if pausePending && openSSLDepth == 0 {
            pausePending = false
            pauseWriting()
        }
    }
}
