//===----------------------------------------------------------------------===//
// swift-asyncio — TLSTransport: TLS as a layer between a stream transport and a protocol.
//
// One concern per file:
//   TLSTransport.swift            state, transitions, set-up, the handshake (this file)
//   TLSTransport+Receive.swift    the socket transport's protocol: records in, EOF, loss
//   TLSTransport+Send.swift       the application's transport: writes, close, shutdown
//   TLSBIO.swift                  the BIO between OpenSSL and the transport
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
    enum State {
        case unwrapped, handshaking, wrapped, shuttingDown, closed
    }

    /// The one place `state` changes: the exhaustive switch lists the transitions of the
    /// table above (plus closed → closed, which several close paths may reach twice) and
    /// traps on any other, which would be a bug in this layer.
    @inline(__always)
    func move(to next: State) {
        switch (state, next) {
        case (.unwrapped, .handshaking), (.handshaking, .wrapped), (.wrapped, .shuttingDown),
            (.unwrapped, .closed), (.handshaking, .closed), (.wrapped, .closed), (.shuttingDown, .closed),
            (.closed, .closed):
            state = next
        case (.unwrapped, .unwrapped), (.unwrapped, .wrapped), (.unwrapped, .shuttingDown),
            (.handshaking, .unwrapped), (.handshaking, .handshaking), (.handshaking, .shuttingDown),
            (.wrapped, .unwrapped), (.wrapped, .handshaking), (.wrapped, .wrapped),
            (.shuttingDown, .unwrapped), (.shuttingDown, .handshaking), (.shuttingDown, .wrapped),
            (.shuttingDown, .shuttingDown),
            (.closed, .unwrapped), (.closed, .handshaking), (.closed, .wrapped), (.closed, .shuttingDown):
            preconditionFailure("TLSTransport: illegal transition \(state) -> \(next)")
        }
    }

    // Loop-confined state, touched on every record: no dynamic exclusivity checks (the
    // loop's thread is the only accessor; see EventLoop.assertInLoop).
    let loop: EventLoop
    /// The loop's TLS state (plaintext buffer, idle sweep), looked up once.
    let shared: TLSLoopState
    /// The context in use (a server's SNI callback may switch it).
    var context: TLSContext
    let isServer: Bool
    @exclusivity(unchecked) var ssl: OpaquePointer?
    @exclusivity(unchecked) var state = State.unwrapped
    @exclusivity(unchecked) var inner: (any StreamTransport)?
    /// The application's protocol; a server makes it only once the handshake succeeded.
    @exclusivity(unchecked) var app: (any StreamProtocol)? {
        didSet { bufferedApp = app as? any BufferedProtocol }
    }
    /// `app` if it reads into its own buffers (decrypted straight into them).
    @exclusivity(unchecked) var bufferedApp: (any BufferedProtocol)?
    var appFactory: (() -> any StreamProtocol)?
    /// The application saw `connectionMade` (from us, or, after `startTLS`, from the plain
    /// transport): it gets `connectionLost` exactly once.
    @exclusivity(unchecked) var appConnected = false
    @exclusivity(unchecked) var appPaused = false
    /// Completed when the handshake is done (clients and startTLS wait for it).
    var handshakeWaiter: Future<Void>?
    var handshakeTimer: Handle?
    var shutdownTimer: Handle?
    /// The error to report in `connectionLost` (a TLS failure seen before aborting).
    var failure: (any Error)?
    var lostReported = false

    /// The chunk of received bytes OpenSSL is reading from (borrowed for one call).
    @exclusivity(unchecked) var input = UnsafeRawBufferPointer(start: nil, count: 0)
    @exclusivity(unchecked) var inputOffset = 0
    /// Received bytes left unread when the application paused reading.
    var savedInput: [UInt8] = []
    /// How many received bytes the layer holds for later (tests: memory stays bounded).
    var heldInputCount: Int { savedInput.count }
    /// How many written bytes wait for OpenSSL to finish reading a post-handshake message.
    var heldWriteCount: Int { heldWrites.count }
    /// The inner transport reported EOF.
    var innerEOF = false
    /// Handshake records gathered during one handshake step, written as one.
    var handshakeOutput: [UInt8] = []
    @exclusivity(unchecked) var gatheringHandshake = false
    /// close_notify was sent (close or writeEOF).
    @exclusivity(unchecked) var sentShutdown = false
    /// We are inside an OpenSSL call (see ``openSSL(_:)``).
    @exclusivity(unchecked) var openSSLDepth = 0
    /// The socket transport asked to pause writing during an OpenSSL call.
    @exclusivity(unchecked) var pausePending = false
    /// The application got `pauseWriting` and not yet `resumeWriting`.
    var appWritePaused = false
    /// ``WritePauseReporting``: the application's writing is paused.
    var isWritingPaused: Bool { appWritePaused }
    /// The socket transport's write buffer is over its high-water mark.
    @exclusivity(unchecked) var innerWritePaused = false
    /// The peer's close_notify or EOF was reported to the application.
    @exclusivity(unchecked) var peerClosed = false
    /// Application bytes waiting for OpenSSL to finish reading a post-handshake message.
    @exclusivity(unchecked) var heldWrites: [UInt8] = []
    /// `writeEOF` or `close` came while bytes were held: done once they are encrypted.
    @exclusivity(unchecked) var shutdownAfterHeld: HeldShutdown?
    enum HeldShutdown { case writeEOF, close }
    /// The newest session the server gave us (clients).
    var latestSession: TLSSession?
    /// Received or wrote since the last idle sweep (``TLSIdleBuffers``).
    @exclusivity(unchecked) var recentlyActive = true
    /// Sweeps in a row that found the connection active.
    var activeSweeps = 0
    /// Out of `SSL_MODE_RELEASE_BUFFERS`: busy, OpenSSL keeps its buffers.
    var keepsBuffers = false
    /// In the idle sweep's list.
    var sweepsBuffers = false

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
        self.shared = loop.tls
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
        move(to: .handshaking)
        if context.configuration.releaseIdleBuffers {
            sweepsBuffers = true
            shared.idleBuffers.add(self)
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

    func handshakeStep() {
        guard let ssl else { return }
        gatheringHandshake = true
        OpenSSLErrors.clear()
        let result = SSL_do_handshake(ssl)
        gatheringHandshake = false
        let code = result == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, result)
        flushHandshakeOutput()
        // The flush may reach the application (pauseWriting, after startTLS), which may close
        // or abort us: then there is no handshake left to finish or fail.
        guard state == .handshaking else { return }
        switch code {
        case SSL_ERROR_NONE:
            handshakeDone()
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return
        default:
            handshakeFailed(code)
        }
    }

    func flushHandshakeOutput() {
        guard !handshakeOutput.isEmpty else { return }
        let output = handshakeOutput
        handshakeOutput = []
        output.withUnsafeBytes { inner?.write($0) }
    }

    func handshakeDone() {
        handshakeTimer?.cancel()
        handshakeTimer = nil
        move(to: .wrapped)
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

    func handshakeFailed(_ code: Int32) {
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
        move(to: .closed)
        if isServer { logHandshakeFailure(error) }
        inner?.close()   // flushes the alert OpenSSL wrote, if any
    }

    func logHandshakeFailure(_ error: any Error) {
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
}

extension TLSTransport: CustomStringConvertible {
    var description: String {
        "TLSTransport(\(isServer ? "server" : "client"), peer: \(inner?.peerAddress.map { "\($0)" } ?? "?"), state: \(state))"
    }
}

