//===----------------------------------------------------------------------===//
// swift-asyncio — TLSTransport, receiving: the socket transport's protocol (bytes in, EOF,
// loss, write pauses).
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
}
