//===----------------------------------------------------------------------===//
// swift-asyncio — TLSTransport: TLS as a layer between a stream transport and a protocol.
//
// The TLS itself is the sans-I/O core, TLSConnection; this type is its adapter to the loop.
// One concern per file:
//   TLSTransport.swift            the adapter's state, set-up, the core's actions (this file)
//   TLSTransport+Receive.swift    the socket transport's protocol
//   TLSTransport+Send.swift       the application's transport: writes, close, shutdown
//===----------------------------------------------------------------------===//

import CAsyncIOOpenSSL
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// TLS over any stream transport (asyncio's `SSLProtocol` + `_SSLProtocolTransport`): the
/// protocol of the socket transport below, and the transport of the application's protocol.
///
/// The TLS state machine is a ``TLSConnection`` (bytes in, actions out; no loop, no
/// transport); this adapter feeds it what the socket transport delivers and what the
/// application writes, and carries out its actions (``TLSConnectionSink``): records to the
/// socket transport's `write` (no copy: sent at once when the kernel takes them), plaintext
/// to the application (decrypted into the loop's buffer, or the protocol's own). It owns what
/// needs the loop: the handshake and shutdown timeouts, the application's protocol and its
/// lifecycle, write flow control, the idle-buffer sweep. Nothing is buffered here: the core
/// keeps the rest of a received chunk when the application pauses reading in the middle of
/// it, and writes OpenSSL cannot encrypt while it reads a post-handshake message split over
/// records (they count for flow control); write buffering is the socket transport's.
///
/// The TLS phases (idle → handshaking → established → shuttingDown → closed) are the core's
/// (``state``); the adapter adds the application's lifecycle (``AppState``):
///
///     notConnected ── handshake done (connectionMade)          ──▶ connected
///     notConnected ── the transport's connectionLost           ──▶ lost (the app hears nothing)
///     connected    ── the transport's connectionLost           ──▶ lost (connectionLost, once)
///
/// (startTLS starts at `connected`: the plain transport made the application.) There is no
/// "flushing" phase: the application's writes are encrypted at once and queued by the socket
/// transport, whose `close` flushes them behind the close_notify.
final class TLSTransport: TLSConnectionSink, StreamProtocol, StreamTransport, WritePauseReporting,
    @unchecked Sendable
{
    /// The application's side of the connection.
    enum AppState {
        /// Not told `connectionMade` yet (a server makes it when the handshake is done).
        case notConnected
        /// Told `connectionMade` (by us, or by the plain transport before startTLS).
        case connected
        /// The transport below is gone; the application heard `connectionLost` if it was
        /// connected. Nothing happens after this.
        case lost
    }

    /// Who paused writing: two independent facts, so two flags rather than a state.
    struct WritePauses {
        /// The socket transport's buffer is over its high-water mark (its `pauseWriting`).
        var inner = false
        /// The application was told `pauseWriting` and not yet `resumeWriting`.
        var app = false
    }

    /// The one place ``appState`` changes; any move but those of the table traps.
    func moveApp(to next: AppState) {
        switch (appState, next) {
        case (.notConnected, .connected), (.notConnected, .lost), (.connected, .lost):
            appState = next
        case (.notConnected, .notConnected), (.connected, .notConnected), (.connected, .connected),
            (.lost, .notConnected), (.lost, .connected), (.lost, .lost):
            preconditionFailure("TLSTransport: illegal application transition \(appState) -> \(next)")
        }
    }

    // Loop-confined state, touched on every record: no dynamic exclusivity checks (the
    // loop's thread is the only accessor; see EventLoop.assertInLoop).
    let loop: EventLoop
    /// The loop's TLS state (plaintext buffer, idle sweep), looked up once.
    let shared: TLSLoopState
    /// The TLS state machine.
    let core: TLSConnection
    let isServer: Bool
    @exclusivity(unchecked) var inner: (any StreamTransport)?
    /// The application's protocol; a server makes it only once the handshake succeeded.
    @exclusivity(unchecked) var app: (any StreamProtocol)? {
        didSet {
            bufferedApp = app as? any BufferedProtocol
            core.deliversIntoSinkBuffers = bufferedApp != nil
        }
    }
    /// `app` if it reads into its own buffers (decrypted straight into them).
    @exclusivity(unchecked) var bufferedApp: (any BufferedProtocol)?
    var appFactory: (() -> any StreamProtocol)?
    @exclusivity(unchecked) private(set) var appState: AppState
    @exclusivity(unchecked) var writePauses = WritePauses()
    /// Completed when the handshake is done (clients and startTLS wait for it).
    var handshakeWaiter: Future<Void>?
    var handshakeTimer: Handle?
    /// When the handshake started (monotonic nanoseconds), while the loop counts handshakes
    /// (metrics on) and this one has no outcome yet; 0 otherwise.
    var handshakeStart: UInt64 = 0
    var shutdownTimer: Handle?
    /// The error to report in `connectionLost` (a TLS failure seen before closing).
    var failure: (any Error)?

    /// The TLS phase (the core's).
    var state: TLSConnection.Phase { core.phase }
    /// How many received bytes the layer holds for later (tests: memory stays bounded).
    var heldInputCount: Int { core.heldInputCount }
    /// How many written bytes wait for OpenSSL to finish reading a post-handshake message.
    var heldWriteCount: Int { core.heldWriteCount }
    /// OpenSSL keeps its record buffers (the idle sweep found the connection busy).
    var keepsBuffers: Bool { core.recordBuffers.kept }
    /// ``WritePauseReporting``: the application's writing is paused.
    var isWritingPaused: Bool { writePauses.app }

    /// A TLS layer for a new connection. Attach it to a transport as its protocol (or with
    /// ``attach(to:alreadyReceived:)``).
    /// - Parameters:
    ///   - app: The application's protocol for clients and startTLS; servers pass `factory`.
    ///   - serverHostname: For clients: the name for SNI and certificate checks.
    ///   - appAlreadyConnected: startTLS: the plain transport made the application.
    ///   - appWritePaused: startTLS: the plain transport told the application to pause.
    init(
        loop: EventLoop, context: TLSContext, app: (any StreamProtocol)?,
        factory: (() -> any StreamProtocol)? = nil, serverHostname: String? = nil,
        session: TLSSession? = nil, waiter: Future<Void>? = nil, appAlreadyConnected: Bool = false,
        appWritePaused: Bool = false
    ) throws(TLSError) {
        self.loop = loop
        self.shared = loop.tls
        self.core = try TLSConnection(context: context, serverHostname: serverHostname, session: session)
        self.isServer = context.isServer
        self.app = app
        self.bufferedApp = app as? any BufferedProtocol
        self.appState = appAlreadyConnected ? .connected : .notConnected
        self.writePauses = WritePauses(inner: appWritePaused, app: appWritePaused)
        self.appFactory = factory
        self.handshakeWaiter = waiter
        super.init()
        core.deliversIntoSinkBuffers = bufferedApp != nil
        core.setSink(self)
    }

    // MARK: - Handshake and the core's actions (overrides live in the class body)

    /// Starts the handshake over `inner` (already connected), first feeding bytes that
    /// arrived before TLS started (startTLS).
    func attach(to inner: any StreamTransport, alreadyReceived: [UInt8] = []) {
        self.inner = inner
        guard core.phase == .idle else {
            inner.abort()   // closed or aborted before the transport was up
            return
        }
        if core.context.configuration.releaseIdleBuffers {
            shared.idleBuffers.add(core)
        }
        if loop.connectionCounters != nil { handshakeStart = monotonicNanoseconds() }
        let timeout = core.context.configuration.handshakeTimeout
        // Strong captures here and below, cancelled on every path out (handshake done,
        // connectionLost): a `weak` reference would give the object a side table and every
        // retain/release on the hot path the slow route (~750 instructions per message).
        handshakeTimer = loop.callLater(after: timeout) { [self] in
            switch core.phase {
            case .handshaking:
                abortWith(TLSError(.handshakeTimeout, "TLS handshake did not finish within \(timeout)"), log: true)
            case .closed:
                // Failed or closed during the handshake, and the socket transport still
                // flushes (an alert, our flight) to a peer that does not read: give up.
                self.inner?.abort()
            case .idle, .established, .shuttingDown:
                return
            }
        }
        core.start()   // a client's ClientHello goes out
        if !alreadyReceived.isEmpty {
            alreadyReceived.withUnsafeBytes { receive($0) }
        }
        if core.phase == .handshaking || core.phase == .established && core.readSide != .paused {
            inner.resumeReading()   // startTLS may come with the plain transport paused
        }
    }

    /// ``TLSConnectionSink``: the handshake is done: the application is made (servers) and
    /// connected, hears a pause that came during the handshake, and the waiter completes.
    override func tlsHandshakeCompleted() {
        handshakeTimer?.cancel()
        handshakeTimer = nil
        countHandshake(succeeded: true)
        if app == nil, let appFactory {
            app = appFactory()
            self.appFactory = nil
        }
        if appState == .notConnected, let app {
            moveApp(to: .connected)
            do {
                try app.connectionMade(self)
            } catch {
                protocolCallbackFailed(error, "connectionMade")
                return
            }
        }
        // The socket's buffer went over its high-water mark during the handshake (or before
        // startTLS): the application hears it now, and its resume later.
        if writePauses.inner && !writePauses.app && core.phase == .established {
            writePauses.app = true
            app?.pauseWriting()
        }
        if let waiter = handshakeWaiter {
            handshakeWaiter = nil
            waiter.complete(.success(()))
        }
    }

    // MARK: - The core's actions

    /// Records go to the socket transport's `write` (sent at once when the kernel takes them).
    override func tlsSend(_ records: UnsafeRawBufferPointer) {
        inner?.write(records)
    }

    /// Plaintext goes to the application (a throwing callback aborts the connection).
    override func tlsDeliver(_ plaintext: UnsafeRawBufferPointer) {
        guard let app else { return }
        do {
            try app.dataReceived(plaintext)
        } catch {
            protocolCallbackFailed(error, "dataReceived")
        }
    }

    /// A buffered application's own buffer, from `getBuffer`.
    override func tlsPlaintextBuffer() -> UnsafeMutableRawBufferPointer? {
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

    /// A buffered application's `bufferUpdated`.
    override func tlsDelivered(_ count: Int) {
        do {
            try bufferedApp?.bufferUpdated(count)
        } catch {
            protocolCallbackFailed(error, "bufferUpdated")
        }
    }

    /// The peer's close_notify or EOF. TLS 1.3: a half-close, the application may keep
    /// writing if `eofReceived` says so. TLS 1.2: close_notify is answered and the connection
    /// closed (RFC 5246 §7.2.1).
    override func tlsPeerClosed(closeNotify: Bool) {
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
    override func tlsWritesHeld(total: Int, first: Bool) {
        if first && core.readSide == .paused {
            inner?.resumeReading()
        }
        if total > writeBufferLimits.high && appState == .connected && !writePauses.app {
            writePauses.app = true
            app?.pauseWriting()
        }
    }

    /// The application may write again (unless the socket is still full); its pause of
    /// reading holds again; a close that waited goes on (timer, reading until close_notify).
    override func tlsHeldWritesSent(closing: TLSConnection.CloseProgress?) {
        if writePauses.app && !writePauses.inner && !core.returnNoticeRequested && core.phase != .closed {
            writePauses.app = false
            app?.resumeWriting()
        }
        if core.readSide == .paused && core.phase == .established {
            inner?.pauseReading()   // the application's pause holds again
        }
        if let closing { closeProgressed(closing) }
    }

    /// Shutdown done: the socket transport closes (flushing what is queued).
    override func tlsClosed() {
        shutdownTimer?.cancel()
        shutdownTimer = nil
        inner?.close()
    }

    /// Remembered for `connectionLost`; handshake failures of servers are logged; the socket
    /// transport closes, flushing the alert.
    override func tlsFailed(_ error: TLSError) {
        failure = failure ?? error
        countHandshake(succeeded: false)
        switch error.code {
        case .handshakeFailed, .certificateVerificationFailed, .closedDuringHandshake:
            if isServer { logHandshakeFailure(error) }
        default:
            break
        }
        inner?.close()   // flushes the alert OpenSSL wrote, if any
    }

    /// The socket transport asked to pause during an OpenSSL call: the application hears it now.
    override func tlsOpenSSLReturned() {
        pauseWriting()   // the pause that came during the call
    }

    /// Counts the handshake's outcome once, if the loop counts handshakes (metrics on).
    func countHandshake(succeeded: Bool) {
        guard handshakeStart != 0, let counters = loop.connectionCounters else { return }
        counters.countHandshake(succeeded: succeeded, start: handshakeStart)
        handshakeStart = 0
    }

    func logHandshakeFailure(_ error: any Error) {
        logger.debug("TLS handshake failed", metadata: ["error": "\(error)"])
    }

    /// The logger of the connection below (with its `connection` and `peer` metadata).
    var logger: Logger { inner?.logger ?? loop.logger }
}

extension TLSTransport: CustomStringConvertible {
    var description: String {
        "TLSTransport(\(isServer ? "server" : "client"), peer: \(inner?.peerAddress.map { "\($0)" } ?? "?"), state: \(core.phase))"
    }
}

extension TLSTransport: LoopClosingAware {
    /// The loop is closing with the socket transport under this layer still open: the socket
    /// transport closes its fd and lets go of this layer, and this layer lets go of the
    /// application's protocol (which holds it back: the cycle would keep both, and through
    /// them the loop, alive), its timers and the `SSL*`. Nothing of the application runs
    /// (see ``LoopClosingAware``); an inner TLS layer's application is an outer layer
    /// (TLS inside TLS), which is told in turn.
    func loopClosed() {
        handshakeTimer?.cancel()
        shutdownTimer?.cancel()
        handshakeTimer = nil
        shutdownTimer = nil
        handshakeWaiter = nil
        core.release()
        shared.idleBuffers.remove(core)
        let lostApp = app
        app = ClosedProtocol.shared
        appFactory = nil
        inner = nil
        (lostApp as? any LoopClosingAware)?.loopClosed()
    }
}
