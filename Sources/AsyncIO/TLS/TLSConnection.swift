//===----------------------------------------------------------------------===//
// swift-asyncio — TLSConnection: the TLS core, sans I/O — bytes in, actions out.
//
// One concern per file:
//   TLSConnection.swift            the phases and sides, set-up, the handshake (this file)
//   TLSConnection+Records.swift    records in → plaintext out; plaintext in → records out
//   TLSConnection+Close.swift      EOF, writeEOF, close, abort, release
//   TLSConnectionSink.swift        the actions: the class whoever drives the core subclasses
//   TLSBIO.swift                   the BIO between OpenSSL and the core
//===----------------------------------------------------------------------===//

import CAsyncIOOpenSSL

/// The TLS state machine of one connection: it owns the `SSL*` and knows nothing of loops,
/// timers, transports or protocols.
///
/// Its driver (``TLSTransport`` over a socket; a test, with bytes it passes by hand) feeds it
/// what arrived (``receive(_:plaintext:)``), what the application writes (``write(_:)``),
/// ``writeEOF()``, ``close()``, the transport's EOF (``receivedEOF()``), and gets the
/// consequences as actions on its ``TLSConnectionSink``, as they happen: records to send,
/// plaintext to deliver, handshake done, the peer closed, shutdown done, failed with a
/// ``TLSError``. Both directions are zero-copy: OpenSSL reads the received chunk in place
/// (borrowed for the call, see ``TLSBIO``) and each record it writes goes to the sink as a
/// borrowed buffer, except the records of one handshake step, which are gathered and sent as
/// one flight.
///
/// Three state enums, each moved only by its transition function, whose exhaustive switch
/// traps on a move this type never makes (a bug, not something a peer can cause):
///
///     Phase:      idle ── start ──▶ handshaking ── done ──▶ established ── close ──▶ shuttingDown
///                 idle, handshaking, established, shuttingDown ── failure, EOF, abort ──▶ closed
///                 shuttingDown ── peer's close_notify, EOF ──▶ closed
///     ReadSide:   open ⇄ paused;  open, paused ── close_notify ──▶ closeNotifyReceived
///                                 open, paused ── EOF          ──▶ eofReceived
///     WriteSide:  open ⇄ held (writes wait while OpenSSL reads a post-handshake message)
///                 held ── writeEOF ──▶ heldThenWriteEOF ── close ──▶ heldThenClose
///                 held ── close ──▶ heldThenClose;  held… ── sent ──▶ open (then the shutdown)
///                 open ── writeEOF or close ──▶ closeNotifySent
///
/// The sides matter while the phase is `established` (in `shuttingDown` records are read and
/// dropped until the peer's close_notify); once `closed`, nothing is read or written.
/// Loop-bound through its driver: one thread at a time, no locks.
final class TLSConnection {
    /// The connection's lifecycle.
    enum Phase {
        /// Made, not started: nothing sent or read yet.
        case idle
        /// The handshake is under way.
        case handshaking
        /// Application data flows; see ``ReadSide`` and ``WriteSide``.
        case established
        /// close_notify sent: records are read (and dropped) until the peer's.
        case shuttingDown
        /// Done: failed, shut down, aborted or released.
        case closed
    }

    /// The receiving direction while ``Phase/established``.
    enum ReadSide {
        /// Records are decrypted and delivered.
        case open
        /// The driver paused reading: what arrives is kept (``heldInputCount``) for later.
        case paused
        /// The peer sent close_notify (delivered as ``TLSConnectionSink/tlsPeerClosed(closeNotify:)``).
        case closeNotifyReceived
        /// The transport below reached EOF without close_notify (delivered the same way).
        case eofReceived
    }

    /// The sending direction while ``Phase/established``.
    enum WriteSide {
        /// Writes are encrypted and sent at once.
        case open
        /// Writes wait (``heldWriteCount``) while OpenSSL reads a post-handshake message split
        /// over records; they go out, in order, once its rest arrives.
        case held
        /// Held, and `writeEOF` came: close_notify follows the held bytes.
        case heldThenWriteEOF
        /// Held, and `close` came: close_notify follows the held bytes; meanwhile records are
        /// read and dropped so OpenSSL can finish its message.
        case heldThenClose
        /// close_notify was sent (`writeEOF` or `close`): nothing more is written.
        case closeNotifySent

        /// Writes are held (whatever follows them).
        var isHeld: Bool {
            switch self {
            case .held, .heldThenWriteEOF, .heldThenClose: true
            case .open, .closeNotifySent: false
            }
        }
    }

    /// How far ``close()`` got, for the driver to act on (timers, the transport).
    enum CloseProgress {
        /// Already shutting down or closed: nothing new.
        case alreadyClosing
        /// Closed before the handshake finished (nothing sent).
        case abandonedHandshake
        /// close_notify waits behind held writes (``WriteSide/heldThenClose``).
        case waitingForHeldWrites
        /// close_notify sent; waiting for the peer's (``Phase/shuttingDown``).
        case waitingForCloseNotify
        /// Shut down at once (the peer's close_notify or EOF came first): the sink got
        /// ``TLSConnectionSink/tlsClosed()``.
        case done
    }

    /// Whether OpenSSL keeps its record buffers: the idle sweep's bookkeeping
    /// (``TLSIdleBuffers``), independent of the lifecycle.
    struct RecordBufferUse {
        /// Received or wrote since the last sweep.
        var recentlyActive = true
        /// Sweeps in a row that found the connection active.
        var activeSweeps = 0
        /// Out of `SSL_MODE_RELEASE_BUFFERS`: busy, OpenSSL keeps its buffers.
        var kept = false
    }

    /// The context in use (a server's SNI callback may switch it).
    private(set) var context: TLSContext
    /// Server or client.
    let isServer: Bool
    /// The OpenSSL connection; `nil` once ``release()``d.
    @exclusivity(unchecked) var ssl: OpaquePointer?
    /// Where the actions go, borrowed for each call (no reference counting on the hot path):
    /// the sink owns the connection, or outlives its use. Set with ``setSink(_:)``.
    @exclusivity(unchecked) private var sinkReference: Unmanaged<TLSConnectionSink>?
    /// Decrypt each record into a buffer the sink gives (``TLSConnectionSink/tlsPlaintextBuffer()``)
    /// rather than the one passed to ``receive(_:plaintext:)``.
    @exclusivity(unchecked) var deliversIntoSinkBuffers = false

    @exclusivity(unchecked) private(set) var phase = Phase.idle
    @exclusivity(unchecked) private(set) var readSide = ReadSide.open
    @exclusivity(unchecked) private(set) var writeSide = WriteSide.open

    /// The chunk of received bytes OpenSSL is reading from (borrowed for one ``receive(_:plaintext:)``).
    @exclusivity(unchecked) var input = UnsafeRawBufferPointer(start: nil, count: 0)
    @exclusivity(unchecked) var inputOffset = 0
    /// Where records are decrypted during one ``receive(_:plaintext:)``.
    @exclusivity(unchecked) var plaintext = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    /// Received bytes left unread when reading was paused.
    var savedInput: [UInt8] = []
    /// Records of one handshake step, sent as one flight.
    var flight: [UInt8] = []
    /// Inside a handshake step: records go to ``flight``.
    @exclusivity(unchecked) var gathering = false
    /// Application bytes waiting while OpenSSL reads a post-handshake message.
    @exclusivity(unchecked) var heldWrites: [UInt8] = []
    /// OpenSSL calls in progress (see ``requestReturnNotice()``).
    @exclusivity(unchecked) var openSSLDepth = 0
    /// The sink asked for ``TLSConnectionSink/tlsOpenSSLReturned()``.
    @exclusivity(unchecked) private(set) var returnNoticeRequested = false
    /// The idle sweep's bookkeeping.
    @exclusivity(unchecked) var recordBuffers = RecordBufferUse()
    /// Clients: the newest session the server gave us.
    private(set) var latestSession: TLSSession?

    /// A connection for `context` (server or client), in ``Phase/idle``.
    /// - Parameters:
    ///   - serverHostname: Clients: the name for SNI and the certificate check.
    ///   - session: Clients: a session to resume.
    /// - Throws: ``TLSError`` `.configuration` if a verifying client has no `serverHostname`,
    ///   or OpenSSL cannot make the connection.
    init(context: TLSContext, serverHostname: String? = nil, session: TLSSession? = nil) throws(TLSError) {
        self.context = context
        self.isServer = context.isServer
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

    /// Sends the actions to `sink` from now on. The connection does not keep it alive.
    func setSink(_ sink: TLSConnectionSink) {
        sinkReference = .passUnretained(sink)
    }

    /// Runs `action` on the sink, if there is one, borrowing it for the call.
    @inline(__always) @discardableResult
    func toSink<Result>(_ action: (TLSConnectionSink) -> Result) -> Result? {
        sinkReference?._withUnsafeGuaranteedRef(action)
    }

    // MARK: - Transitions

    /// The one place ``phase`` changes: the transitions of the table above, plus
    /// closed → closed (several close paths may reach it twice); any other traps.
    @inline(__always)
    func move(to next: Phase) {
        switch (phase, next) {
        case (.idle, .handshaking), (.handshaking, .established), (.established, .shuttingDown),
            (.idle, .closed), (.handshaking, .closed), (.established, .closed), (.shuttingDown, .closed),
            (.closed, .closed):
            phase = next
        case (.idle, .idle), (.idle, .established), (.idle, .shuttingDown),
            (.handshaking, .idle), (.handshaking, .handshaking), (.handshaking, .shuttingDown),
            (.established, .idle), (.established, .handshaking), (.established, .established),
            (.shuttingDown, .idle), (.shuttingDown, .handshaking), (.shuttingDown, .established),
            (.shuttingDown, .shuttingDown),
            (.closed, .idle), (.closed, .handshaking), (.closed, .established), (.closed, .shuttingDown):
            preconditionFailure("TLSConnection: illegal phase transition \(phase) -> \(next)")
        }
    }

    /// The one place ``readSide`` changes.
    @inline(__always)
    func moveRead(to next: ReadSide) {
        switch (readSide, next) {
        case (.open, .paused), (.paused, .open),
            (.open, .closeNotifyReceived), (.paused, .closeNotifyReceived),
            (.open, .eofReceived), (.paused, .eofReceived):
            readSide = next
        case (.open, .open), (.paused, .paused),
            (.closeNotifyReceived, .open), (.closeNotifyReceived, .paused),
            (.closeNotifyReceived, .closeNotifyReceived), (.closeNotifyReceived, .eofReceived),
            (.eofReceived, .open), (.eofReceived, .paused), (.eofReceived, .closeNotifyReceived),
            (.eofReceived, .eofReceived):
            preconditionFailure("TLSConnection: illegal read-side transition \(readSide) -> \(next)")
        }
    }

    /// The one place ``writeSide`` changes.
    @inline(__always)
    func moveWrite(to next: WriteSide) {
        switch (writeSide, next) {
        case (.open, .held), (.held, .open), (.heldThenWriteEOF, .open), (.heldThenClose, .open),
            (.held, .heldThenWriteEOF), (.held, .heldThenClose), (.heldThenWriteEOF, .heldThenClose),
            (.open, .closeNotifySent):
            writeSide = next
        case (.open, .open), (.open, .heldThenWriteEOF), (.open, .heldThenClose),
            (.held, .held), (.held, .closeNotifySent),
            (.heldThenWriteEOF, .held), (.heldThenWriteEOF, .heldThenWriteEOF),
            (.heldThenWriteEOF, .closeNotifySent),
            (.heldThenClose, .held), (.heldThenClose, .heldThenWriteEOF), (.heldThenClose, .heldThenClose),
            (.heldThenClose, .closeNotifySent),
            (.closeNotifySent, .open), (.closeNotifySent, .held), (.closeNotifySent, .heldThenWriteEOF),
            (.closeNotifySent, .heldThenClose), (.closeNotifySent, .closeNotifySent):
            preconditionFailure("TLSConnection: illegal write-side transition \(writeSide) -> \(next)")
        }
    }

    // MARK: - Handshake

    /// Starts the handshake: a client sends its ClientHello (to the sink), a server waits for
    /// one. Does nothing unless ``Phase/idle``.
    func start() {
        guard phase == .idle else { return }
        move(to: .handshaking)
        if !isServer { handshakeStep() }
    }

    /// One `SSL_do_handshake` over what arrived; its records go out as one flight.
    func handshakeStep() {
        guard let ssl else { return }
        gathering = true
        OpenSSLErrors.clear()
        let result = SSL_do_handshake(ssl)
        gathering = false
        let code = result == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, result)
        sendFlight()
        // Sending may reach the application (pauseWriting, after startTLS), which may close
        // or abort: then there is no handshake left to finish or fail.
        guard phase == .handshaking else { return }
        switch code {
        case SSL_ERROR_NONE:
            move(to: .established)
            toSink { $0.tlsHandshakeCompleted() }
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return
        default:
            handshakeFailed(code)
        }
    }

    /// Sends the records one handshake step gathered, as one buffer.
    func sendFlight() {
        guard !flight.isEmpty else { return }
        let records = flight
        flight = []
        records.withUnsafeBytes { bytes in toSink { $0.tlsSend(bytes) } }
    }

    /// Fails the handshake with the most precise error: verification, EOF, or OpenSSL's reason.
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
        fail(error)   // the alert OpenSSL wrote went out with the flight
    }

    /// Closes with `error` for the sink.
    func fail(_ error: TLSError) {
        move(to: .closed)
        toSink { $0.tlsFailed(error) }
    }

    /// The SNI callback: lets the server's configuration pick a context for the name.
    func serverNameIndicated() -> Int32 {
        guard let ssl, let callback = context.configuration.serverNameCallback,
              let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else {
            return casyncio_SSL_TLSEXT_ERR_OK()
        }
        if let chosen = callback(String(cString: name)), chosen !== context, chosen.isServer {
            // SSL_set_SSL_CTX takes the certificate, key and session id context only: the
            // client-certificate policy, options and tickets are copied by hand. The cipher
            // lists need nothing: the SSL has none of its own and reads its context's
            // (TLSCipherTests.serverNameSwitchAppliesTheChosenCipherList).
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

    // MARK: - Reading, paused and resumed

    /// Stops delivering plaintext; what arrives meanwhile is kept.
    /// - Returns: Whether reading was open (and is now paused).
    func pauseReading() -> Bool {
        guard phase == .established, readSide == .open else { return false }
        moveRead(to: .paused)
        return true
    }

    /// Delivers again. - Returns: whether bytes wait (kept input, or plaintext inside
    /// OpenSSL): the driver then calls ``receiveSaved(plaintext:)`` (not from inside a sink
    /// call).
    func resumeReading() -> Bool {
        guard phase == .established, readSide == .paused else { return false }
        moveRead(to: .open)
        return hasSavedInput
    }

    /// Input kept during a pause, or plaintext OpenSSL decrypted and did not deliver yet.
    var hasSavedInput: Bool {
        !savedInput.isEmpty || (ssl.map { SSL_has_pending($0) } ?? 0) != 0
    }

    /// Runs what was kept during a pause through the connection.
    func receiveSaved(plaintext: UnsafeMutableRawBufferPointer) {
        let pending = savedInput
        savedInput = []
        pending.withUnsafeBytes { receive($0, plaintext: plaintext) }
    }

    // MARK: - Re-entrancy

    /// The sink's ``TLSConnectionSink/tlsSend(_:)`` runs inside an OpenSSL call (except for a
    /// handshake flight): whatever it wants done that would call back into the connection
    /// (say, tell an application to pause writing, which may close) waits for
    /// ``requestReturnNotice()``.
    var isInsideOpenSSL: Bool { openSSLDepth > 0 }

    /// Asks for one ``TLSConnectionSink/tlsOpenSSLReturned()`` once the outermost OpenSSL call
    /// returned.
    func requestReturnNotice() { returnNoticeRequested = true }

    /// Withdraws ``requestReturnNotice()``.
    func cancelReturnNotice() { returnNoticeRequested = false }

    /// Runs an OpenSSL call, counted for ``isInsideOpenSSL``.
    @inline(__always)
    func openSSL<T>(_ call: () -> T) -> T {
        openSSLDepth += 1
        let result = call()
        openSSLReturned()
        return result
    }

    /// Counts an OpenSSL call out; the outermost one delivers a requested return notice.
    @inline(__always)
    func openSSLReturned() {
        openSSLDepth -= 1
        if returnNoticeRequested && openSSLDepth == 0 {
            returnNoticeRequested = false
            toSink { $0.tlsOpenSSLReturned() }
        }
    }

    // MARK: - What it negotiated

    /// Received bytes kept for later (tests: memory stays bounded).
    var heldInputCount: Int { savedInput.count }
    /// Written bytes waiting for OpenSSL to finish reading a post-handshake message.
    var heldWriteCount: Int { heldWrites.count }

    /// TLS 1.3 or later (half-close allowed).
    var isTLS13: Bool {
        guard let ssl else { return false }
        return SSL_version(ssl) >= TLS1_3_VERSION
    }

    /// What the connection negotiated, once started and until released.
    var connectionInfo: TLSConnectionInfo? {
        guard let ssl, phase != .idle else { return nil }
        return TLSConnectionInfo(ssl: ssl, session: latestSession)
    }

    /// The idle sweep (``TLSIdleBuffers``): a connection active in two intervals in a row
    /// keeps OpenSSL's record buffers; one idle for an interval frees them (if they hold no
    /// data) and releases them whenever empty again.
    /// - Returns: whether buffers were freed.
    func sweepRecordBuffers() -> Bool {
        guard let ssl else { return false }
        if recordBuffers.recentlyActive {
            recordBuffers.recentlyActive = false
            recordBuffers.activeSweeps += 1
            if recordBuffers.activeSweeps >= 2 && !recordBuffers.kept {
                recordBuffers.kept = true
                casyncio_SSL_clear_mode(ssl, casyncio_SSL_MODE_RELEASE_BUFFERS())
            }
            return false
        }
        recordBuffers.activeSweeps = 0
        guard recordBuffers.kept, SSL_free_buffers(ssl) == 1 else { return false }
        recordBuffers.kept = false
        casyncio_SSL_set_mode(ssl, casyncio_SSL_MODE_RELEASE_BUFFERS())
        return true
    }
}

@available(*, unavailable)
extension TLSConnection: Sendable {}

extension TLSConnection: CustomStringConvertible {
    var description: String {
        "TLSConnection(\(isServer ? "server" : "client"), \(phase), read: \(readSide), write: \(writeSide))"
    }
}
