//===----------------------------------------------------------------------===//
// swift-asyncio — TLSTransport: TLS as a layer between a stream transport and a protocol.
//===----------------------------------------------------------------------===//

import CAsyncIOOpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// TLS over any stream transport (asyncio's `SSLProtocol` + `_SSLProtocolTransport`): the
/// protocol of the socket transport below, and the transport of the application's protocol.
///
/// OpenSSL talks to the socket through a BIO of our own rather than two memory BIOs: its read
/// side hands OpenSSL the bytes the socket transport is delivering (borrowed, no copy), its
/// write side passes records straight to the socket transport's `write` (sent at once when
/// the kernel takes them, no copy either). A handshake flight is gathered and written once.
/// Nothing is buffered here except the rest of a received chunk when the application pauses
/// reading in the middle of it, and writes that OpenSSL cannot encrypt while it reads a
/// post-handshake message split over records (they count for flow control); write buffering
/// and flow control are otherwise the socket transport's.
///
/// States and transitions (every other combination is impossible):
///
///     unwrapped    ── attach(inner)                        ──▶ handshaking
///     handshaking  ── SSL_do_handshake done                ──▶ wrapped (connectionMade)
///     handshaking  ── failure, timeout, EOF, reset, close  ──▶ closed
///     wrapped      ── close()                              ──▶ shuttingDown (close_notify sent)
///     wrapped      ── close() with writes held             ──▶ wrapped, closing (reads and drops
///                                                              data; once the held bytes are
///                                                              sent ──▶ shuttingDown)
///     wrapped      ── peer's close_notify, app closes      ──▶ closed (answered, inner closed)
///     wrapped      ── protocol error, reset, abort()       ──▶ closed
///     shuttingDown ── peer's close_notify or EOF           ──▶ closed (inner closed)
///     shuttingDown ── shutdown timeout, reset, abort()     ──▶ closed (inner aborted)
///     closed       ── inner's connectionLost               ──▶ (app's connectionLost, once)
///
/// There is no separate "flushing" state: the application's writes are encrypted at once
/// and queued by the socket transport, whose `close` flushes them behind the close_notify.
final class TLSTransport: StreamProtocol, StreamTransport, WritePauseReporting, @unchecked Sendable {
    private enum State {
        case unwrapped, handshaking, wrapped, shuttingDown, closed
    }

    // Loop-confined state, touched on every record: no dynamic exclusivity checks (the
    // loop's thread is the only accessor; see EventLoop.assertInLoop).
    let loop: EventLoop
    /// The context in use (a server's SNI callback may switch it).
    private(set) var context: TLSContext
    private let isServer: Bool
    @exclusivity(unchecked) private var ssl: OpaquePointer?
    @exclusivity(unchecked) private var state = State.unwrapped
    @exclusivity(unchecked) private var inner: (any StreamTransport)?
    /// The application's protocol; a server makes it only once the handshake succeeded.
    @exclusivity(unchecked) private var app: (any StreamProtocol)? {
        didSet { bufferedApp = app as? any BufferedProtocol }
    }
    /// `app` if it reads into its own buffers (decrypted straight into them).
    @exclusivity(unchecked) private var bufferedApp: (any BufferedProtocol)?
    private var appFactory: (() -> any StreamProtocol)?
    /// The application saw `connectionMade` (from us, or, after `startTLS`, from the plain
    /// transport): it gets `connectionLost` exactly once.
    @exclusivity(unchecked) private var appConnected = false
    @exclusivity(unchecked) private var appPaused = false
    /// Completed when the handshake is done (clients and startTLS wait for it).
    private var handshakeWaiter: Future<Void>?
    private var handshakeTimer: Handle?
    private var shutdownTimer: Handle?
    /// The error to report in `connectionLost` (a TLS failure seen before aborting).
    private var failure: (any Error)?
    private var lostReported = false

    /// The chunk of received bytes OpenSSL is reading from (borrowed for one call).
    @exclusivity(unchecked) private var input = UnsafeRawBufferPointer(start: nil, count: 0)
    @exclusivity(unchecked) private var inputOffset = 0
    /// Received bytes left unread when the application paused reading.
    private var savedInput: [UInt8] = []
    /// How many received bytes the layer holds for later (tests: memory stays bounded).
    var heldInputCount: Int { savedInput.count }
    /// How many written bytes wait for OpenSSL to finish reading a post-handshake message.
    var heldWriteCount: Int { heldWrites.count }
    /// The inner transport reported EOF.
    private var innerEOF = false
    /// Handshake records gathered during one handshake step, written as one.
    private var handshakeOutput: [UInt8] = []
    @exclusivity(unchecked) private var gatheringHandshake = false
    /// close_notify was sent (close or writeEOF).
    @exclusivity(unchecked) private var sentShutdown = false
    /// We are inside an OpenSSL call (see ``openSSL(_:)``).
    @exclusivity(unchecked) private var openSSLDepth = 0
    /// The socket transport asked to pause writing during an OpenSSL call.
    @exclusivity(unchecked) private var pausePending = false
    /// The application got `pauseWriting` and not yet `resumeWriting`.
    private(set) var appWritePaused = false
    /// ``WritePauseReporting``: the application's writing is paused.
    var isWritingPaused: Bool { appWritePaused }
    /// The socket transport's write buffer is over its high-water mark.
    @exclusivity(unchecked) private var innerWritePaused = false
    /// The peer's close_notify or EOF was reported to the application.
    @exclusivity(unchecked) private var peerClosed = false
    /// Application bytes waiting for OpenSSL to finish reading a post-handshake message.
    @exclusivity(unchecked) private var heldWrites: [UInt8] = []
    /// `writeEOF` or `close` came while bytes were held: done once they are encrypted.
    @exclusivity(unchecked) private var shutdownAfterHeld: HeldShutdown?
    private enum HeldShutdown { case writeEOF, close }
    /// The newest session the server gave us (clients).
    private var latestSession: TLSSession?
    /// Received or wrote since the last idle sweep (``TLSIdleBuffers``).
    @exclusivity(unchecked) private var recentlyActive = true
    /// Sweeps in a row that found the connection active.
    private var activeSweeps = 0
    /// Out of `SSL_MODE_RELEASE_BUFFERS`: busy, OpenSSL keeps its buffers.
    private(set) var keepsBuffers = false
    /// In the idle sweep's list.
    private var sweepsBuffers = false

    /// A TLS layer for a new connection. Attach it to a transport as its protocol (or with
    /// ``attach(to:alreadyReceived:)``).
    /// - Parameters:
    ///   - app: The application's protocol for clients and startTLS; servers pass `factory`.
    ///   - serverHostname: For clients: the name for SNI and certificate checks.
    init(
        loop: EventLoop, context: TLSContext, app: (any StreamProtocol)?,
        factory: (() -> any StreamProtocol)? = nil, serverHostname: String? = nil,
        session: TLSSession? = nil, waiter: Future<Void>? = nil, appAlreadyConnected: Bool = false,
        appWritePaused: Bool = false
    ) throws(TLSError) {
        self.loop = loop
        self.context = context
        self.isServer = context.isServer
        self.app = app
        self.bufferedApp = app as? any BufferedProtocol
        self.appConnected = appAlreadyConnected
        // startTLS: the plain transport already told the application to pause.
        self.appWritePaused = appWritePaused
        self.innerWritePaused = appWritePaused
        self.appFactory = factory
        self.handshakeWaiter = waiter
        let configuration = context.configuration
        if !isServer && configuration.verifyPeer && configuration.verifyHostname
            && (serverHostname ?? "").isEmpty {
            throw TLSError(
                .configuration,
                "a TLS client that verifies the server's name needs serverHostname (or verifyHostname = false)")
        }
        OpenSSLErrors.clear()
        guard let ssl = SSL_new(context.context) else {
            throw TLSError.configuration("cannot create a TLS connection")
        }
        guard let bio = BIO_new(TLSBIO.method) else {
            SSL_free(ssl)
            throw TLSError.configuration("cannot create a TLS connection")
        }
        self.ssl = ssl
        let me = Unmanaged.passUnretained(self).toOpaque()
        casyncio_SSL_set_app_data(ssl, me)
        BIO_set_data(bio, me)
        BIO_set_init(bio, 1)
        SSL_set_bio(ssl, bio, bio)
        if isServer {
            SSL_set_accept_state(ssl)
        } else {
            SSL_set_connect_state(ssl)
            if let name = serverHostname, !name.isEmpty {
                if SocketAddress.isNumericHost(name) {
                    if configuration.verifyPeer && configuration.verifyHostname {
                        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name)
                    }
                } else {
                    casyncio_SSL_set_tlsext_host_name(ssl, name)
                    if configuration.verifyPeer && configuration.verifyHostname {
                        _ = SSL_set1_host(ssl, name)
                    }
                }
            }
            if let session {
                SSL_set_session(ssl, session.session)
            }
        }
        OpenSSLErrors.clear()   // nothing left behind for SSL_get_error to misread
    }

    deinit {
        if let ssl { SSL_free(ssl) }
    }

    // MARK: - Handshake

    /// Starts the handshake over `inner` (already connected), first feeding bytes that
    /// arrived before TLS started (startTLS).
    func attach(to inner: any StreamTransport, alreadyReceived: [UInt8] = []) {
        self.inner = inner
        guard state == .unwrapped else {
            inner.abort()   // closed or aborted before the transport was up
            return
        }
        state = .handshaking
        if context.configuration.releaseIdleBuffers {
            sweepsBuffers = true
            loop.tls.idleBuffers.add(self)
        }
        let timeout = context.configuration.handshakeTimeout
        // Strong captures here and below, cancelled on every path out (handshakeDone,
        // connectionLost): a `weak` reference would give the object a side table and every
        // retain/release on the hot path the slow route (~750 instructions per message).
        handshakeTimer = loop.callLater(after: timeout) { [self] in
            switch state {
            case .handshaking:
                abortWith(TLSError(.handshakeTimeout, "TLS handshake did not finish within \(timeout)"), log: true)
            case .closed:
                // Failed or closed during the handshake, and the socket transport still
                // flushes (an alert, our flight) to a peer that does not read: give up.
                self.inner?.abort()
            case .unwrapped, .wrapped, .shuttingDown:
                return
            }
        }
        if !alreadyReceived.isEmpty {
            alreadyReceived.withUnsafeBytes { receive($0) }
        } else if !isServer {
            handshakeStep()
        }
        if state == .handshaking || state == .wrapped && !appPaused {
            inner.resumeReading()   // startTLS may come with the plain transport paused
        }
    }

    private func handshakeStep() {
        guard let ssl else { return }
        gatheringHandshake = true
        OpenSSLErrors.clear()
        let result = SSL_do_handshake(ssl)
        gatheringHandshake = false
        let code = result == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, result)
        flushHandshakeOutput()
        switch code {
        case SSL_ERROR_NONE:
            handshakeDone()
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return
        default:
            handshakeFailed(code)
        }
    }

    private func flushHandshakeOutput() {
        guard !handshakeOutput.isEmpty else { return }
        let output = handshakeOutput
        handshakeOutput = []
        output.withUnsafeBytes { inner?.write($0) }
    }

    private func handshakeDone() {
        handshakeTimer?.cancel()
        handshakeTimer = nil
        state = .wrapped
        if app == nil, let appFactory {
            app = appFactory()
            self.appFactory = nil
        }
        if !appConnected, let app {
            appConnected = true
            do {
                try app.connectionMade(self)
            } catch {
                protocolCallbackFailed(error, "connectionMade")
                return
            }
        }
        // The socket's buffer went over its high-water mark during the handshake (or before
        // startTLS): the application hears it now, and its resume later.
        if innerWritePaused && !appWritePaused && state == .wrapped {
            appWritePaused = true
            app?.pauseWriting()
        }
        if let waiter = handshakeWaiter {
            handshakeWaiter = nil
            waiter.complete(.success(()))
        }
    }

    private func handshakeFailed(_ code: Int32) {
        let reason = OpenSSLErrors.take()
        let error: TLSError
        let verifying = ssl.map { SSL_get_verify_mode($0) & SSL_VERIFY_PEER != 0 } ?? false
        let verifyResult = ssl.map { SSL_get_verify_result($0) } ?? Int(X509_V_OK)
        if verifying && verifyResult != Int(X509_V_OK) {
            let why = String(cString: X509_verify_cert_error_string(verifyResult))
            error = TLSError(
                .certificateVerificationFailed, "certificate verification failed: \(why)", reason: why)
        } else if code == SSL_ERROR_SYSCALL && reason.isEmpty {
            error = TLSError(.closedDuringHandshake, "the connection closed during the TLS handshake")
        } else {
            error = TLSError(
                .handshakeFailed, "TLS handshake failed: \(reason.isEmpty ? "error \(code)" : reason)",
                reason: reason)
        }
        failure = error
        state = .closed
        if isServer { logHandshakeFailure(error) }
        inner?.close()   // flushes the alert OpenSSL wrote, if any
    }

    private func logHandshakeFailure(_ error: any Error) {
        loop.logger.debug("TLS handshake failed", metadata: [
            "peer": "\(inner?.peerAddress.map { "\($0)" } ?? "?")", "error": "\(error)",
        ])
    }

    /// The SNI callback: lets the server's configuration pick a context for the name.
    func serverNameIndicated() -> Int32 {
        guard let ssl, let callback = context.configuration.serverNameCallback,
              let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else {
            return casyncio_SSL_TLSEXT_ERR_OK()
        }
        if let chosen = callback(String(cString: name)), chosen !== context, chosen.isServer {
            // SSL_set_SSL_CTX takes the certificate, key and session id context only: the
            // client-certificate policy, options and tickets are copied by hand.
            SSL_set_SSL_CTX(ssl, chosen.context)
            SSL_set_verify(ssl, SSL_CTX_get_verify_mode(chosen.context), nil)
            SSL_clear_options(ssl, SSL_get_options(ssl))
            SSL_set_options(ssl, SSL_CTX_get_options(chosen.context))
            SSL_set_num_tickets(ssl, SSL_CTX_get_num_tickets(chosen.context))
            context = chosen
        }
        return casyncio_SSL_TLSEXT_ERR_OK()
    }

    /// A client got a session (TLS 1.3: a ticket after the handshake).
    func sessionIssued(_ session: TLSSession) {
        latestSession = session
    }

    // MARK: - The inner transport's protocol

    func connectionMade(_ transport: any StreamTransport) {
        attach(to: transport)
    }

    func dataReceived(_ bytes: UnsafeRawBufferPointer) {
        receive(bytes)
    }

    /// Runs OpenSSL over `bytes`; keeps what is left if the application paused reading.
    private func receive(_ bytes: UnsafeRawBufferPointer) {
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

    private func process() {
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
    private func readRecords() {
        guard let ssl else { return }
        withPlaintextBuffer { buffer in readRecords(ssl, into: buffer) }
    }

    /// Runs `body` with the loop's plaintext buffer, or a buffer of its own if the loop's is
    /// in use (TLS over TLS: the outer layer's input is the inner layer's plaintext).
    private func withPlaintextBuffer(_ body: (UnsafeMutableRawBufferPointer) -> Void) {
        let shared = loop.tls
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

    private func readRecords(_ ssl: OpaquePointer, into buffer: UnsafeMutableRawBufferPointer) {
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
    private func readIntoProtocolBuffer(_ buffered: any BufferedProtocol, _ ssl: OpaquePointer) -> Bool {
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
    private func finishPostHandshakeMessage() {
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
    private func readFailed(_ ssl: OpaquePointer) {
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
        state = .closed
        inner?.close()   // flushes the alert OpenSSL wrote
    }

    /// Closing: reads (and drops) records until the peer's close_notify.
    private func drainUntilCloseNotify() {
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
    private func peerSentCloseNotify() {
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
            state = .closed
            return false
        case .wrapped where !heldWrites.isEmpty:
            // Inside a post-handshake message OpenSSL can never finish: what is held is lost.
            failure = TLSError(
                .protocolError,
                "the peer closed inside a TLS post-handshake message; \(heldWrites.count) written bytes were not sent")
            heldWrites = []
            shutdownAfterHeld = nil
            state = .closed
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
        state = .closed
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
            loop.tls.idleBuffers.remove(self)
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
    private func openSSL<T>(_ call: () -> T) -> T {
        openSSLDepth += 1
        let result = call()
        openSSLReturned()
        return result
    }

    @inline(__always)
    private func openSSLReturned() {
        openSSLDepth -= 1
        if pausePending && openSSLDepth == 0 {
            pausePending = false
            pauseWriting()
        }
    }

    // MARK: - The application's transport

    func write(_ bytes: UnsafeRawBufferPointer) {
        loop.assertInLoop()
        guard !sentShutdown, shutdownAfterHeld == nil else { return }
        encrypt(bytes)
    }

    /// Encrypts and sends `bytes`, or holds them while OpenSSL is inside a post-handshake
    /// message (in order behind what is held already).
    private func encrypt(_ bytes: UnsafeRawBufferPointer) {
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
    private func hold(_ bytes: UnsafeRawBufferPointer) {
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
    private func flushHeldWrites() {
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

    private var isTLS13: Bool {
        guard let ssl else { return false }
        return SSL_version(ssl) >= TLS1_3_VERSION
    }

    func close() {
        loop.assertInLoop()
        switch state {
        case .unwrapped, .handshaking:
            state = .closed
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
    private func startShutdown() {
        guard let ssl else { return }
        state = .shuttingDown
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
    private func keepReadingWhileClosing() {
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
    private func armShutdownTimer(queued: Int) {
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
            state = .closed
            inner?.abort()
        }
    }

    private func finishClose() {
        shutdownTimer?.cancel()
        shutdownTimer = nil
        state = .closed
        inner?.close()
    }

    func abort() {
        loop.assertInLoop()
        state = .closed
        inner?.abort()   // not attached yet: attach aborts
    }

    /// Aborts with `error` as the reason `connectionLost` gives (unless one is known already).
    func abort(reporting error: any Error) {
        failure = failure ?? error
        abort()
    }

    /// A TLS failure: remember it for `connectionLost` and drop the connection.
    private func abortWith(_ error: TLSError, log: Bool) {
        failure = error
        if log && isServer { logHandshakeFailure(error) }
        state = .closed
        inner?.abort()
    }

    private func protocolCallbackFailed(_ error: any Error, _ callback: String) {
        loop.callExceptionHandler(ExceptionContext(
            message: "error in protocol callback \(callback); the transport is aborted",
            error: error, source: "\(self)"))
        failure = error
        state = .closed
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
    private func resumeSavedInput() {
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

    // MARK: - The BIO's side

    /// OpenSSL wants `count` received bytes.
    fileprivate func bioRead(_ destination: UnsafeMutableRawPointer, _ count: Int) -> Int {
        let available = input.count - inputOffset
        guard available > 0, let base = input.baseAddress else { return 0 }
        let n = min(available, count)
        destination.copyMemory(from: base + inputOffset, byteCount: n)
        inputOffset += n
        return n
    }

    /// OpenSSL wrote a record.
    fileprivate func bioWrite(_ bytes: UnsafeRawBufferPointer) {
        if gatheringHandshake {
            handshakeOutput.append(contentsOf: bytes)
        } else {
            inner?.write(bytes)
        }
    }
}

extension TLSTransport: CustomStringConvertible {
    var description: String {
        "TLSTransport(\(isServer ? "server" : "client"), peer: \(inner?.peerAddress.map { "\($0)" } ?? "?"), state: \(state))"
    }
}

/// The BIO between OpenSSL and a ``TLSTransport``.
enum TLSBIO {
    nonisolated(unsafe) static let method: OpaquePointer? = makeMethod()

    private static func makeMethod() -> OpaquePointer? {
        guard let method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "swift-asyncio") else {
            return nil
        }
        BIO_meth_set_write_ex(method) { bio, data, count, written in
            guard let bio, let data, let owner = BIO_get_data(bio) else { return 0 }
            casyncio_BIO_clear_retry_flags(bio)
            Unmanaged<TLSTransport>.fromOpaque(owner).takeUnretainedValue()
                .bioWrite(UnsafeRawBufferPointer(start: data, count: count))
            written?.pointee = count
            return 1
        }
        BIO_meth_set_read_ex(method) { bio, data, count, read in
            guard let bio, let data, let owner = BIO_get_data(bio) else { return 0 }
            casyncio_BIO_clear_retry_flags(bio)
            let n = Unmanaged<TLSTransport>.fromOpaque(owner).takeUnretainedValue().bioRead(data, count)
            if n == 0 {
                casyncio_BIO_set_retry_read(bio)   // nothing yet: OpenSSL says WANT_READ
                return 0
            }
            read?.pointee = n
            return 1
        }
        BIO_meth_set_ctrl(method) { _, command, _, _ in
            switch command {
            case BIO_CTRL_FLUSH, BIO_CTRL_DUP: 1
            default: 0
            }
        }
        return method
    }
}
