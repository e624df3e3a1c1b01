//===----------------------------------------------------------------------===//
// swift-asyncio — TLSConnection, records: received bytes in → plaintext out; plaintext in →
// records out; writes held behind a post-handshake message.
//===----------------------------------------------------------------------===//

import CAsyncIOOpenSSL

extension TLSConnection {
    // MARK: - Bytes in

    /// Runs OpenSSL over `bytes` (borrowed for the call, read in place): handshake steps,
    /// records decrypted into `plaintext` and delivered, the peer's close_notify. What a
    /// paused read side leaves unread is kept; bytes after the peer's close_notify are dropped.
    /// - Parameter plaintext: Room for one record's plaintext (16 KiB), used during the call.
    func receive(_ bytes: UnsafeRawBufferPointer, plaintext: UnsafeMutableRawBufferPointer) {
        recordBuffers.recentlyActive = true
        input = bytes
        inputOffset = 0
        self.plaintext = plaintext
        process()
        // Nothing but a pause can leave bytes unread: OpenSSL takes all it is given.
        if inputOffset < input.count, readSide == .paused, phase == .established {
            savedInput.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[inputOffset...]))
        }
        input = UnsafeRawBufferPointer(start: nil, count: 0)
        inputOffset = 0
    }

    /// One pass over the input: handshake, records, held writes, the drain after close.
    func process() {
        if phase == .handshaking {
            handshakeStep()
        }
        if phase == .established {
            readRecords()
        }
        if phase == .established && writeSide.isHeld {
            if readSide == .paused { finishPostHandshakeMessage() }
            sendHeldWrites()
            // Reading may have been resumed meanwhile: the rest of the input is the sink's.
            if phase == .established && readSide == .open { readRecords() }
        }
        if phase == .shuttingDown {   // also when the sink closed while reading
            drainUntilCloseNotify()
        }
    }

    /// Decrypts and delivers application data until OpenSSL needs more bytes.
    func readRecords() {
        guard let ssl else { return }
        let buffer = plaintext
        while phase == .established && readSide == .open {
            if deliversIntoSinkBuffers && writeSide != .heldThenClose {
                guard readIntoSinkBuffer(ssl) else { return }
                // As below: with every received byte inside OpenSSL and nothing pending, the
                // next SSL_read could only say "needs more bytes".
                if inputOffset == input.count && SSL_has_pending(ssl) == 0 { return }
                continue
            }
            var count = 0
            // No ERR_clear_error first (a third of our per-message cost with OpenSSL 3):
            // readFailed tells "needs more bytes" from errors without the error queue.
            if openSSL({ SSL_read_ex(ssl, buffer.baseAddress, buffer.count, &count) }) == 1 {
                // After close() (waiting for held writes) records are read and dropped.
                guard writeSide != .heldThenClose else { continue }
                toSink { $0.tlsDeliver(UnsafeRawBufferPointer(start: buffer.baseAddress, count: count)) }
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

    /// One record decrypted straight into the sink's buffer; false when the sink gave none,
    /// or OpenSSL needs more bytes, or the connection ended.
    func readIntoSinkBuffer(_ ssl: OpaquePointer) -> Bool {
        guard let buffer = toSink({ $0.tlsPlaintextBuffer() }) ?? nil else { return false }
        var count = 0
        guard openSSL({ SSL_read_ex(ssl, buffer.baseAddress, buffer.count, &count) }) == 1 else {
            readFailed(ssl)
            return false
        }
        toSink { $0.tlsDelivered(count) }
        return true
    }

    /// Writes are held and reading is paused (say, because held writes made the application
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
        fail(TLSError(.protocolError, "TLS error: \(reason.isEmpty ? "error \(code)" : reason)", reason: reason))
    }

    /// The peer's close_notify: reported to the sink, which decides (TLS 1.3 allows a
    /// half-close; with TLS 1.2 it should close, RFC 5246 §7.2.1).
    func peerSentCloseNotify() {
        switch readSide {
        case .open, .paused:
            moveRead(to: .closeNotifyReceived)
            toSink { $0.tlsPeerClosed(closeNotify: true) }
        case .closeNotifyReceived, .eofReceived:
            return
        }
    }

    /// Shutting down: reads (and drops) records until the peer's close_notify.
    func drainUntilCloseNotify() {
        guard let ssl else { return }
        let buffer = plaintext
        while phase == .shuttingDown {
            var count = 0
            if openSSL({ SSL_read_ex(ssl, buffer.baseAddress, buffer.count, &count) }) == 1 { continue }
            if SSL_want(ssl) == SSL_READING && SSL_in_init(ssl) == 0 { return }
            OpenSSLErrors.clear()
            finishShutdown()   // close_notify (SSL_ERROR_ZERO_RETURN) or an error: done either way
        }
    }

    // MARK: - Plaintext in

    /// Encrypts and sends `bytes` (records to the sink as OpenSSL makes them), or holds them
    /// while OpenSSL is inside a post-handshake message. Dropped after close_notify was sent
    /// or asked for, and outside ``Phase/established``.
    @inline(__always)
    func write(_ bytes: UnsafeRawBufferPointer) {
        switch writeSide {
        case .open, .held:
            encrypt(bytes)
        case .heldThenWriteEOF, .heldThenClose, .closeNotifySent:
            return
        }
    }

    /// Encrypts `bytes` now, or holds them (behind what is held already).
    func encrypt(_ bytes: UnsafeRawBufferPointer) {
        guard phase == .established, bytes.count > 0 else { return }
        recordBuffers.recentlyActive = true
        if !heldWrites.isEmpty {   // keep the order behind what is held
            hold(bytes)
            return
        }
        let unsent = encryptNow(bytes)
        if unsent > 0 {
            hold(UnsafeRawBufferPointer(rebasing: bytes[(bytes.count - unsent)...]))
        }
    }

    /// Encrypts `bytes` into records for the sink until all are, or OpenSSL must first read
    /// the rest of a post-handshake message, or it fails.
    /// - Returns: How many bytes at the end of `bytes` it could not encrypt yet.
    func encryptNow(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard let ssl, var base = bytes.baseAddress else { return 0 }
        // One OpenSSL call as far as the sink's deferred work goes (requestReturnNotice):
        // it comes after every record of `bytes` is written.
        openSSLDepth += 1
        defer { openSSLReturned() }
        var remaining = bytes.count
        while remaining > 0 && phase == .established {
            var written = 0
            if SSL_write_ex(ssl, base, remaining, &written) == 1 {
                base += written
                remaining -= written
                continue
            }
            if SSL_want(ssl) == SSL_READING && SSL_in_init(ssl) != 0 {
                // The peer's post-handshake message (a ticket or KeyUpdate split over
                // records) must be read first: the rest waits until the next bytes arrive.
                OpenSSLErrors.clear()
                return remaining
            }
            // Our BIO never refuses a write, so this is an error.
            let reason = OpenSSLErrors.take()
            fail(TLSError(.protocolError, "TLS write failed: \(reason)", reason: reason))
            return 0
        }
        return 0
    }

    /// Keeps written bytes until OpenSSL can encrypt them; the sink hears how many are held.
    func hold(_ bytes: UnsafeRawBufferPointer) {
        let first = writeSide == .open
        heldWrites.append(contentsOf: bytes)
        if first { moveWrite(to: .held) }
        toSink { $0.tlsWritesHeld(total: heldWrites.count, first: first) }
    }

    /// OpenSSL may be done with the post-handshake message: encrypts what was held, carries
    /// out a `writeEOF` or `close` that waited for it, and tells the sink.
    func sendHeldWrites() {
        let held = heldWrites
        heldWrites = []   // writes made meanwhile (the sink's deferred work) queue behind
        let unsent = held.withUnsafeBytes { encryptNow($0) }
        if unsent > 0 {   // still inside the message: held as they were, no news for the sink
            heldWrites.insert(contentsOf: held[(held.count - unsent)...], at: 0)
            return
        }
        guard heldWrites.isEmpty, phase == .established, writeSide.isHeld else { return }
        let waiting = writeSide
        moveWrite(to: .open)
        let closing: CloseProgress?
        switch waiting {
        case .held, .open, .closeNotifySent: closing = nil
        case .heldThenWriteEOF:
            writeEOF()   // nothing for the driver to follow up
            closing = nil
        case .heldThenClose: closing = close()
        }
        toSink { $0.tlsHeldWritesSent(closing: closing) }
    }
}
