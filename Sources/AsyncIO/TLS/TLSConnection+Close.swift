//===----------------------------------------------------------------------===//
// swift-asyncio — TLSConnection, closing: the transport's EOF, writeEOF, close (close_notify
// both ways), abort, release.
//===----------------------------------------------------------------------===//

import CAsyncIOOpenSSL

extension TLSConnection {
    /// The transport below reached EOF.
    /// - Returns: Whether it was an orderly end the transport may stay half-open after
    ///   (established, or shutting down); false when it failed the connection.
    @discardableResult
    func receivedEOF() -> Bool {
        switch phase {
        case .idle, .handshaking:
            fail(TLSError(.closedDuringHandshake, "the connection closed during the TLS handshake"))
            return false
        case .established where writeSide.isHeld:
            // Inside a post-handshake message OpenSSL can never finish: what is held is lost.
            let lost = heldWrites.count
            dropHeldWrites()
            fail(TLSError(
                .protocolError,
                "the peer closed inside a TLS post-handshake message; \(lost) written bytes were not sent"))
            return false
        case .established:
            switch readSide {
            case .closeNotifyReceived, .eofReceived:
                return true   // after close_notify: already reported
            case .open, .paused:
                // EOF without close_notify: reported as EOF (as asyncio does); the sink
                // decides whether to keep writing.
                moveRead(to: .eofReceived)
                toSink { $0.tlsPeerClosed(closeNotify: false) }
                return true
            }
        case .shuttingDown:
            finishShutdown()
            return true
        case .closed:
            return false
        }
    }

    /// Sends close_notify after what was written, or, while writes are held, once they are
    /// sent. Reading goes on (also if it was paused) until the peer's close_notify.
    @discardableResult
    func writeEOF() -> CloseProgress {
        guard phase == .established, let ssl else { return .alreadyClosing }
        switch writeSide {
        case .open:
            break
        case .held:
            moveWrite(to: .heldThenWriteEOF)   // close_notify must follow them (and OpenSSL cannot yet)
            return .waitingForHeldWrites
        case .heldThenWriteEOF, .heldThenClose, .closeNotifySent:
            return .alreadyClosing
        }
        moveWrite(to: .closeNotifySent)
        OpenSSLErrors.clear()
        let done = openSSL({ SSL_shutdown(ssl) }) == 1
        OpenSSLErrors.clear()
        if done {   // the peer's close_notify came first: all done
            finishShutdown()
            return .done
        }
        return .waitingForCloseNotify
    }

    /// Closes: during the handshake at once; established, with close_notify (after held
    /// writes), then ``Phase/shuttingDown`` until the peer's. Reading resumes if paused.
    @discardableResult
    func close() -> CloseProgress {
        switch phase {
        case .idle, .handshaking:
            move(to: .closed)
            return .abandonedHandshake
        case .established:
            switch writeSide {
            case .held, .heldThenWriteEOF:
                // Held bytes go first; meanwhile read on (dropping data) so OpenSSL can
                // finish the message it is in.
                moveWrite(to: .heldThenClose)
                if readSide == .paused { moveRead(to: .open) }
                return .waitingForHeldWrites
            case .heldThenClose:
                return .alreadyClosing
            case .open, .closeNotifySent:
                return startShutdown()
            }
        case .shuttingDown, .closed:
            return .alreadyClosing
        }
    }

    /// Sends close_notify (unless writeEOF did) and enters ``Phase/shuttingDown``; done at once
    /// if the peer's close_notify or EOF came first.
    func startShutdown() -> CloseProgress {
        guard let ssl else { return .alreadyClosing }
        move(to: .shuttingDown)
        if readSide == .paused { moveRead(to: .open) }
        let done: Bool
        if writeSide == .closeNotifySent {   // writeEOF sent it already
            done = SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN != 0
        } else {
            moveWrite(to: .closeNotifySent)
            OpenSSLErrors.clear()
            done = openSSL({ SSL_shutdown(ssl) }) == 1
            OpenSSLErrors.clear()
        }
        if done || readSide == .eofReceived {
            finishShutdown()
            return .done
        }
        return .waitingForCloseNotify
    }

    /// close_notify both ways, or EOF after ours: closed, and the sink hears it.
    func finishShutdown() {
        move(to: .closed)
        toSink { $0.tlsClosed() }
    }

    /// Closes at once, sending nothing (the driver aborts, or gives up waiting).
    func abort() {
        move(to: .closed)
    }

    /// Closes and frees the `SSL*` and every buffer (the transport below is gone).
    func release() {
        move(to: .closed)
        savedInput = []
        flight = []
        dropHeldWrites()
        if let ssl {
            SSL_free(ssl)
            self.ssl = nil
        }
    }

    /// Forgets held writes (they can never be sent).
    func dropHeldWrites() {
        heldWrites = []
        if writeSide.isHeld { moveWrite(to: .open) }
    }
}
