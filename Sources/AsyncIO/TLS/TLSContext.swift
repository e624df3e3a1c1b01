//===----------------------------------------------------------------------===//
// swift-asyncio — TLSConfiguration and TLSContext (asyncio's SSLContext), TLS sessions.
//===----------------------------------------------------------------------===//

import CAsyncIOOpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// A TLS protocol version.
public enum TLSVersion: Int, Sendable, Comparable, CustomStringConvertible {
    /// TLS 1.0, 1.1, 1.2 and 1.3; the raw value is the version's number on the wire.
    case v1_0 = 0x0301, v1_1 = 0x0302, v1_2 = 0x0303, v1_3 = 0x0304

    /// Older versions are smaller: `.v1_2 < .v1_3`.
    public static func < (a: TLSVersion, b: TLSVersion) -> Bool { a.rawValue < b.rawValue }

    /// OpenSSL's name for the version: `"TLSv1"`, `"TLSv1.1"`, `"TLSv1.2"`, `"TLSv1.3"`.
    public var description: String {
        switch self {
        case .v1_0: "TLSv1"
        case .v1_1: "TLSv1.1"
        case .v1_2: "TLSv1.2"
        case .v1_3: "TLSv1.3"
        }
    }
}

/// Everything a ``TLSContext`` is made from. Start from ``server(certificateChain:privateKey:)``
/// or ``client(caFile:)`` and change what you need:
///
/// ```swift
/// var configuration = TLSConfiguration.server(
///     certificateChain: "Certificates/server.crt", privateKey: "Certificates/server.key")
/// configuration.alpnProtocols = ["h2", "http/1.1"]
/// let context = try TLSContext(configuration)
/// ```
public struct TLSConfiguration: Sendable {
    /// How a server asks for client certificates.
    public enum ClientVerification: Sendable {
        /// Clients are not asked for a certificate.
        case none
        /// Clients are asked; one that sends a certificate must send a valid one.
        case optional
        /// Clients must send a valid certificate (mTLS).
        case required
    }

    /// Whether this is the server's side of connections.
    public var isServer: Bool
    /// PEM file with our certificate followed by its intermediates. Required for servers,
    /// optional for clients (a client certificate for mTLS).
    public var certificateChain: String?
    /// PEM file with the private key of ``certificateChain``.
    public var privateKey: String?
    /// The password of an encrypted ``privateKey``. Without one, an encrypted key is an error
    /// (OpenSSL is never allowed to prompt on the terminal).
    public var privateKeyPassword: String?
    /// PEM file of the CAs trusted to sign the peer's certificate. A client with `nil` uses
    /// the system trust store; a server uses it to verify client certificates.
    public var caFile: String?
    /// Whether a client verifies the server's certificate (default true; turning it off
    /// leaves the connection open to anyone in the middle).
    public var verifyPeer: Bool
    /// Whether a client checks that the server's certificate is for the name it connects to
    /// (default true). Needs ``verifyPeer``.
    public var verifyHostname: Bool
    /// Whether and how a server asks for client certificates (needs ``caFile``).
    public var clientVerification: ClientVerification
    /// The lowest version accepted (default TLS 1.2).
    public var minimumVersion: TLSVersion
    /// The highest version offered (default: the newest OpenSSL has, TLS 1.3).
    public var maximumVersion: TLSVersion?
    /// ALPN protocols in order of preference, e.g. `["h2", "http/1.1"]`. A server picks the
    /// first of its own that the client offers; none in common means no ALPN.
    public var alpnProtocols: [String]
    /// The TLS 1.2 cipher list (OpenSSL syntax); default ``defaultCiphers`` (AEAD suites
    /// with forward secrecy only). `nil` leaves OpenSSL's own default, which includes CBC
    /// suites (obsolete, and what LUCKY13 attacks) and suites without forward secrecy.
    public var ciphers: String?
    /// The TLS 1.3 cipher suites, e.g. `"TLS_AES_128_GCM_SHA256"`, `nil` for OpenSSL's
    /// default (AES-GCM and ChaCha20-Poly1305: every TLS 1.3 suite is AEAD with forward
    /// secrecy).
    public var cipherSuites: String?

    /// The default TLS 1.2 cipher list: Mozilla's "intermediate" server configuration
    /// (version 5.7) without its DHE suites — ECDHE key exchange, ECDSA or RSA certificates,
    /// AES-GCM and ChaCha20-Poly1305, the server's order of preference. No CBC suite, no
    /// static RSA key exchange, no SHA-1 MAC. DHE is left out because it needs DH parameters
    /// of our own to be safe; add it to ``ciphers`` with them if old clients need it.
    ///
    /// A TLS 1.2 client that offers none of these is refused with a handshake_failure alert.
    /// Every suite here needs TLS 1.2: a ``minimumVersion`` below it needs a ``ciphers`` list
    /// with suites of the older versions too.
    public static let defaultCiphers = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")
    /// Whether a server issues session tickets so clients can resume (default true).
    public var sessionTickets: Bool
    /// How many TLS 1.3 tickets a server sends after each handshake (default 1, as Go does;
    /// OpenSSL's own default is 2). Each costs about 6 % of a full handshake; clients that
    /// open several connections at once from one handshake need one per connection.
    public var sessionTicketCount: Int
    /// A file to append the session keys to, in the SSLKEYLOGFILE format Wireshark reads.
    /// For debugging only: anyone with the file can decrypt the traffic.
    public var keyLogFile: String?
    /// Whether idle connections give OpenSSL's record buffers (about 34 KiB) back (default
    /// true): an idle connection then costs a few KiB instead of ~40. A connection frees them
    /// whenever they are empty (`SSL_MODE_RELEASE_BUFFERS`) until it has been busy for more
    /// than a second; from then on it keeps them (no malloc/free per record) until a second
    /// passes with no traffic, when they are freed and the mode comes back. Turn it off to
    /// keep every connection's buffers for its lifetime.
    public var releaseIdleBuffers: Bool
    /// How long a handshake may take before the connection is aborted (default 60 s); also
    /// how long a connection that failed or closed during its handshake may take to flush.
    public var handshakeTimeout: Duration
    /// How long a closing connection waits for the peer's close_notify (default 30 s). It
    /// counts from when everything written before `close()` has been sent: while a slow
    /// peer still reads a response the wait goes on, but one that stops reading for this
    /// long is aborted (`TLSError.Code.shutdownTimeout`).
    public var shutdownTimeout: Duration
    /// For servers: picks the context for the name a client asks for (SNI), or `nil` to keep
    /// this one. Called on the loop during the handshake.
    public var serverNameCallback: (@Sendable (String) -> TLSContext?)?

    init(isServer: Bool) {
        self.isServer = isServer
        verifyPeer = true
        verifyHostname = true
        clientVerification = .none
        minimumVersion = .v1_2
        alpnProtocols = []
        ciphers = Self.defaultCiphers
        sessionTickets = true
        sessionTicketCount = 1
        releaseIdleBuffers = true
        handshakeTimeout = .seconds(60)
        shutdownTimeout = .seconds(30)
    }

    /// A server with the certificate chain and key in the given PEM files.
    public static func server(certificateChain: String, privateKey: String) -> TLSConfiguration {
        var configuration = TLSConfiguration(isServer: true)
        configuration.certificateChain = certificateChain
        configuration.privateKey = privateKey
        return configuration
    }

    /// A client trusting the CAs in `caFile` (the system trust store if `nil`), verifying
    /// the server's certificate and name.
    public static func client(caFile: String? = nil) -> TLSConfiguration {
        var configuration = TLSConfiguration(isServer: false)
        configuration.caFile = caFile
        return configuration
    }
}

/// A TLS configuration loaded into OpenSSL (asyncio's `SSLContext`): made once, shared by any
/// number of connections on any loops.
///
/// ```swift
/// let server = try TLSContext.server(certificateChain: "Certificates/server.crt",
///                                    privateKey: "Certificates/server.key")
/// let client = try TLSContext.client(caFile: "Certificates/ca.crt")
/// ```
public final class TLSContext: @unchecked Sendable {
    /// What the context was made from.
    public let configuration: TLSConfiguration
    /// The `SSL_CTX`; immutable once made, so safe to share between threads.
    let context: OpaquePointer
    /// ALPN wire format with a 2-byte length prefix (for the C selection callback).
    private let alpnServerList: UnsafeMutablePointer<UInt8>?
    private let keyLog: KeyLogFile?
    private let password: UnsafeMutablePointer<CChar>?

    /// Loads `configuration` into OpenSSL.
    /// - Throws: ``TLSError`` `.configuration`, naming the file and OpenSSL's reason.
    public init(_ configuration: TLSConfiguration) throws(TLSError) {
        OpenSSLErrors.clear()
        guard let context = SSL_CTX_new(configuration.isServer ? TLS_server_method() : TLS_client_method()) else {
            throw TLSError.configuration("cannot create an SSL_CTX")
        }
        self.configuration = configuration
        self.context = context
        password = configuration.privateKeyPassword.map { strdup($0) } ?? nil
        var alpnServerList: UnsafeMutablePointer<UInt8>?
        var keyLog: KeyLogFile?
        do throws(TLSError) {
            try Self.configure(context, configuration, password: password)
            if !configuration.alpnProtocols.isEmpty {
                let wire = try Self.alpnWireFormat(configuration.alpnProtocols)
                if configuration.isServer {
                    let list = UnsafeMutablePointer<UInt8>.allocate(capacity: wire.count + 2)
                    list[0] = UInt8(wire.count & 0xFF)
                    list[1] = UInt8(wire.count >> 8)
                    for (i, byte) in wire.enumerated() { list[i + 2] = byte }
                    alpnServerList = list
                    casyncio_SSL_CTX_set_alpn_server(context, list)
                } else if SSL_CTX_set_alpn_protos(context, wire, UInt32(wire.count)) != 0 {
                    throw TLSError.configuration("invalid ALPN protocol list \(configuration.alpnProtocols)")
                }
            }
            if let path = configuration.keyLogFile {
                keyLog = try KeyLogFile(path: path)
            }
        } catch {
            SSL_CTX_free(context)
            alpnServerList?.deallocate()
            free(password)
            throw error
        }
        self.alpnServerList = alpnServerList
        self.keyLog = keyLog
        OpenSSLErrors.clear()   // loading can leave entries behind even when it succeeds
        casyncio_SSL_CTX_set_app_data(context, Unmanaged.passUnretained(self).toOpaque())
        if keyLog != nil {
            SSL_CTX_set_keylog_callback(context) { ssl, line in
                guard let ssl, let line, let owner = casyncio_SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) else { return }
                Unmanaged<TLSContext>.fromOpaque(owner).takeUnretainedValue().keyLog?.append(line)
            }
        }
    }

    /// A server context; see ``TLSConfiguration/server(certificateChain:privateKey:)``.
    public static func server(certificateChain: String, privateKey: String) throws(TLSError) -> TLSContext {
        try TLSContext(.server(certificateChain: certificateChain, privateKey: privateKey))
    }

    /// A client context; see ``TLSConfiguration/client(caFile:)``.
    public static func client(caFile: String? = nil) throws(TLSError) -> TLSContext {
        try TLSContext(.client(caFile: caFile))
    }

    deinit {
        SSL_CTX_free(context)
        alpnServerList?.deallocate()
        free(password)
    }

    /// Whether this context is for the server's side.
    public var isServer: Bool { configuration.isServer }

    // MARK: - Loading

    private static func configure(
        _ context: OpaquePointer, _ configuration: TLSConfiguration, password: UnsafeMutablePointer<CChar>?
    ) throws(TLSError) {
        // Never prompt on the terminal for a key's password: give the configured one or none.
        SSL_CTX_set_default_passwd_cb_userdata(context, password)
        SSL_CTX_set_default_passwd_cb(context) { buffer, size, _, userdata in
            guard let buffer, let userdata else { return 0 }
            let password = userdata.assumingMemoryBound(to: CChar.self)
            let length = min(Int(strlen(password)), Int(size))
            buffer.update(from: password, count: length)
            return Int32(length)
        }
        var mode = casyncio_SSL_MODE_ENABLE_PARTIAL_WRITE() | casyncio_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER()
        // Connections busy for more than a second leave this mode (see TLSIdleBuffers).
        if configuration.releaseIdleBuffers { mode |= casyncio_SSL_MODE_RELEASE_BUFFERS() }
        casyncio_SSL_CTX_set_mode(context, mode)
        var options = casyncio_SSL_OP_NO_RENEGOTIATION() | casyncio_SSL_OP_NO_COMPRESSION()
        if configuration.isServer { options |= casyncio_SSL_OP_CIPHER_SERVER_PREFERENCE() }
        if configuration.sessionTickets {
            SSL_CTX_set_num_tickets(context, max(0, configuration.sessionTicketCount))
        } else {
            options |= casyncio_SSL_OP_NO_TICKET()
            SSL_CTX_set_num_tickets(context, 0)
        }
        SSL_CTX_set_options(context, options)
        if casyncio_SSL_CTX_set_min_proto_version(context, Int32(configuration.minimumVersion.rawValue)) != 1 {
            throw TLSError.configuration("unsupported minimum version \(configuration.minimumVersion)")
        }
        if let maximum = configuration.maximumVersion {
            guard maximum >= configuration.minimumVersion,
                  casyncio_SSL_CTX_set_max_proto_version(context, Int32(maximum.rawValue)) == 1 else {
                throw TLSError.configuration("invalid maximum version \(maximum)")
            }
        }
        if configuration.minimumVersion < .v1_2 {
            // Debian's default security level 2 refuses TLS 1.0/1.1 outright.
            SSL_CTX_set_security_level(context, 0)
        }
        if let ciphers = configuration.ciphers, SSL_CTX_set_cipher_list(context, ciphers) != 1 {
            throw TLSError.configuration("invalid cipher list \"\(ciphers)\"")
        }
        if let suites = configuration.cipherSuites, SSL_CTX_set_ciphersuites(context, suites) != 1 {
            throw TLSError.configuration("invalid TLS 1.3 cipher suites \"\(suites)\"")
        }

        if configuration.isServer && configuration.certificateChain == nil {
            throw TLSError(.configuration, "a server needs a certificate chain and a private key")
        }
        if let chain = configuration.certificateChain {
            guard let key = configuration.privateKey else {
                throw TLSError(.configuration, "certificate chain \(chain) has no private key")
            }
            try checkReadable(chain, "certificate file")
            if SSL_CTX_use_certificate_chain_file(context, chain) != 1 {
                throw TLSError.configuration("cannot load certificate file", path: chain)
            }
            try checkReadable(key, "private key file")
            if SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) != 1 {
                let error = TLSError.configuration("cannot load private key file", path: key)
                if error.reason.contains("key values mismatch") {
                    throw TLSError(
                        .configuration, "private key \(key) does not match certificate \(chain)",
                        reason: error.reason, path: key)
                }
                throw error
            }
            if SSL_CTX_check_private_key(context) != 1 {
                throw TLSError.configuration("private key \(key) does not match certificate", path: chain)
            }
        }

        if let caFile = configuration.caFile {
            try checkReadable(caFile, "CA file")
            if SSL_CTX_load_verify_file(context, caFile) != 1 {
                throw TLSError.configuration("cannot load CA file", path: caFile)
            }
        } else if !configuration.isServer && configuration.verifyPeer {
            if SSL_CTX_set_default_verify_paths(context) != 1 {
                throw TLSError.configuration("cannot load the system trust store")
            }
        }

        if configuration.isServer {
            let sessionContext = Array("swift-asyncio".utf8)
            SSL_CTX_set_session_id_context(context, sessionContext, UInt32(sessionContext.count))
            switch configuration.clientVerification {
            case .none:
                SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
            case .optional, .required:
                guard let caFile = configuration.caFile else {
                    throw TLSError(.configuration, "verifying client certificates needs a CA file")
                }
                if let names = SSL_load_client_CA_file(caFile) {
                    SSL_CTX_set_client_CA_list(context, names)
                }
                let required = configuration.clientVerification == .required
                SSL_CTX_set_verify(
                    context, SSL_VERIFY_PEER | (required ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), nil)
            }
            if configuration.serverNameCallback != nil {
                casyncio_SSL_CTX_set_servername_callback(context) { ssl, alert, _ in
                    guard let ssl, let layer = casyncio_SSL_get_app_data(ssl) else { return casyncio_SSL_TLSEXT_ERR_OK() }
                    return Unmanaged<TLSConnection>.fromOpaque(layer).takeUnretainedValue().serverNameIndicated()
                }
            }
        } else {
            SSL_CTX_set_verify(context, configuration.verifyPeer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nil)
            // Sessions go to the connection (for `TLSConnectionInfo.session`), not to a cache.
            casyncio_SSL_CTX_set_session_cache_mode(
                context, Int(SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE))
            SSL_CTX_sess_set_new_cb(context) { ssl, session in
                guard let ssl, let session, let layer = casyncio_SSL_get_app_data(ssl) else { return 0 }
                Unmanaged<TLSConnection>.fromOpaque(layer).takeUnretainedValue().sessionIssued(TLSSession(session))
                return 1   // we own the reference now
            }
        }
    }

    /// Names a missing or unreadable file with the system's reason, before OpenSSL gives a
    /// vaguer one.
    private static func checkReadable(_ path: String, _ what: String) throws(TLSError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let reason = String(cString: strerror(errno))
            throw TLSError(.configuration, "cannot read \(what) \(path): \(reason)", reason: reason, path: path)
        }
        Glibc.close(fd)
    }

    static func alpnWireFormat(_ protocols: [String]) throws(TLSError) -> [UInt8] {
        var wire: [UInt8] = []
        for name in protocols {
            let bytes = Array(name.utf8)
            guard (1...255).contains(bytes.count) else {
                throw TLSError(.configuration, "invalid ALPN protocol name \"\(name)\" (1 to 255 bytes)")
            }
            wire.append(UInt8(bytes.count))
            wire.append(contentsOf: bytes)
        }
        return wire
    }
}

/// A finished connection's TLS session, to offer on a later connection to the same server so
/// the handshake resumes instead of starting over (no certificate exchange; with TLS 1.3,
/// one round trip and no signature).
///
/// ```swift
/// let session = firstTransport.tlsInfo?.session
/// let (transport, _) = try await loop.createConnection(
///     host: "127.0.0.1", port: 8443, tls: client, session: session) { … }
/// transport.tlsInfo?.sessionReused   // true
/// ```
public final class TLSSession: @unchecked Sendable {
    /// The `SSL_SESSION`, reference-counted by OpenSSL (thread-safe).
    let session: OpaquePointer

    /// Takes ownership of one reference.
    init(_ session: OpaquePointer) {
        self.session = session
    }

    deinit {
        SSL_SESSION_free(session)
    }

    /// Whether the session can still be offered (it has a ticket or an id).
    public var isResumable: Bool { SSL_SESSION_is_resumable(session) == 1 }
}

/// Appends key-log lines to a file, one `write` per line (O_APPEND: lines from several
/// threads never interleave).
final class KeyLogFile: Sendable {
    let fd: Int32

    init(path: String) throws(TLSError) {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        if fd < 0 {
            let reason = String(cString: strerror(errno))
            throw TLSError(.configuration, "cannot open key log file \(path): \(reason)", reason: reason, path: path)
        }
    }

    deinit {
        Glibc.close(fd)
    }

    func append(_ line: UnsafePointer<CChar>) {
        var text = Array(UnsafeBufferPointer(start: line, count: strlen(line)))
        text.append(0x0A)
        _ = text.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }
}
