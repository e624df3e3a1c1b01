//===----------------------------------------------------------------------===//
// swift-asyncio — TLSTransport, receiving: the socket transport's protocol (bytes in, EOF,
// loss, write pauses) and the core's actions (TLSConnectionSink).
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

    /// Runs the core over `bytes`, with the loop's plaintext buffer.
    @inline(__always)
    func receive(_ bytes: UnsafeRawBufferPointer) {
        withPlaintextBuffer { core.receive(bytes, plaintext: $0) }
    }

    /// Runs `body` with the loop's plaintext buffer, or a buffer of its own if the loop's is
    /// in use (TLS over TLS: the outer layer's plaintext is the inner layer's input).
    @inline(__always)
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

    func eofReceived() -> Bool {
        core.receivedEOF()
    }

    func connectionLost(_ error: (any Error)?) {
        guard appState != .lost else { return }
        let wasConnected = appState == .connected
        moveApp(to: .lost)
        handshakeTimer?.cancel()
        shutdownTimer?.cancel()
        handshakeTimer = nil
        shutdownTimer = nil
        let wasHandshaking = core.phase == .handshaking || core.phase == .idle
        core.release()
        var reported = failure ?? error
        if wasHandshaking && reported == nil {
            reported = TLSError(.closedDuringHandshake, "the connection closed during the TLS handshake")
        }
        if let waiter = handshakeWaiter {
            handshakeWaiter = nil
            waiter.complete(.failure(reported ?? TLSError(.closedDuringHandshake, "closed")))
        }
        shared.idleBuffers.remove(core)
        let lostApp = app
        app = ClosedProtocol.shared
        appFactory = nil
        if wasConnected {
            lostApp?.connectionLost(reported)
        }
    }

    func pauseWriting() {
        writePauses.inner = true
        if core.isInsideOpenSSL {
            core.requestReturnNotice()   // told once OpenSSL returned: the app may call back into us
        } else if appState == .connected && core.phase != .closed && !writePauses.app {
            writePauses.app = true
            app?.pauseWriting()
        }
    }

    func resumeWriting() {
        writePauses.inner = false
        core.cancelReturnNotice()
        // Bytes held over the high-water mark keep the application paused until they go.
        guard writePauses.app, core.heldWriteCount <= writeBufferLimits.high else { return }
        writePauses.app = false
        if appState == .connected && core.phase != .closed { app?.resumeWriting() }
    }

    // MARK: - The core's actions

    func tlsSend(_ records: UnsafeRawBufferPointer) {
        inner?.write(records)
    }

    func tlsDeliver(_ plaintext: UnsafeRawBufferPointer) {
        guard let app else { return }
        do {
            try app.dataReceived(plaintext)
        } catch {
            protocolCallbackFailed(error, "dataReceived")
        }
    }

    func tlsPlaintextBuffer() -> UnsafeMutableRawBufferPointer? {
        guard let bufferedApp else { return nil }
        let buffer: UnsafeMutableRawBufferPointer
        do {
            buffer = try bufferedApp.getBuffer(sizeHint: TLSLoopState.readBufferSize)
        } catch {
            protocolCallbackFailed(error, "getBuffer")
            return nil
        }
        guard buffer.count > 0 else {
            protocolCallbackFailed(TransportError(.other, "getBuffer returned an empty buffer"), "getBuffer")
            return nil
        }
        return buffer
    }

    func tlsDelivered(_ count: Int) {
        do {
            try bufferedApp?.bufferUpdated(count)
        } catch {
            protocolCallbackFailed(error, "bufferUpdated")
        }
    }

    /// The peer's close_notify or EOF. TLS 1.3: a half-close, the application may keep
    /// writing if `eofReceived` says so. TLS 1.2: close_notify is answered and the connection
    /// closed (RFC 5246 §7.2.1).
    func tlsPeerClosed(closeNotify: Bool) {
        let keepOpen: Bool
        do {
            keepOpen = try app?.eofReceived() ?? false
        } catch {
            protocolCallbackFailed(error, "eofReceived")
            return
        }
        if core.phase == .established && (!keepOpen || closeNotify && !core.isTLS13) {
            close()
        }
    }

    /// Held bytes count for flow control: over the high-water mark the application is asked
    /// to pause; and the socket reads on even if the application paused (OpenSSL needs the
    /// rest of its message, see ``pauseReading()``).
    func tlsWritesHeld(total: Int, first: Bool) {
        if first && core.readSide == .paused {
            inner?.resumeReading()
        }
        if total > writeBufferLimits.high && appState == .connected && !writePauses.app {
            writePauses.app = true
            app?.pauseWriting()
        }
    }

    func tlsHeldWritesSent(closing: TLSConnection.CloseProgress?) {
        if writePauses.app && !writePauses.inner && !core.returnNoticeRequested && core.phase != .closed {
            writePauses.app = false
            app?.resumeWriting()
        }
        if core.readSide == .paused && core.phase == .established {
            inner?.pauseReading()   // the application's pause holds again
        }
        if let closing { closeProgressed(closing) }
    }

    func tlsClosed() {
        shutdownTimer?.cancel()
        shutdownTimer = nil
        inner?.close()
    }

    func tlsFailed(_ error: TLSError) {
        failure = failure ?? error
        switch error.code {
        case .handshakeFailed, .certificateVerificationFailed, .closedDuringHandshake:
            if isServer { logHandshakeFailure(error) }
        default:
            break
        }
        inner?.close()   // flushes the alert OpenSSL wrote, if any
    }

    func tlsOpenSSLReturned() {
        pauseWriting()   // the pause that came during the call
    }
}
