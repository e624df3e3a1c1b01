//===----------------------------------------------------------------------===//
// swift-asyncio — TLSError: what can go wrong with a TLS context or connection.
//===----------------------------------------------------------------------===//

import CAsyncIOOpenSSL

/// An error of a ``TLSContext`` or a TLS connection, with a ``code`` to switch on and
/// OpenSSL's reason where there is one.
///
/// ```swift
/// do { try await loop.createConnection(host: "example.com", port: 443, tls: context) { … } }
/// catch let error as TLSError where error.code == .certificateVerificationFailed {
///     print(error.reason)   // "hostname mismatch", "unable to get local issuer certificate", …
/// }
/// ```
public struct TLSError: Error, Hashable, CustomStringConvertible {
    /// The kind of failure. New codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The code's name, e.g. `"handshakeFailed"`.
        public let name: String
        init(_ name: String) { self.name = name }
        /// The code's name.
        public var description: String { name }

        /// A context could not be made: a missing or unreadable file, invalid PEM, a key that
        /// does not match its certificate, an unknown cipher or ALPN list. ``TLSError/path``
        /// names the file.
        public static let configuration = Code("configuration")
        /// The handshake failed: no common version or cipher, the peer's alert (e.g. it did not
        /// trust our certificate), a peer that does not speak TLS.
        public static let handshakeFailed = Code("handshakeFailed")
        /// We did not trust the peer's certificate: ``TLSError/reason`` says why (unknown CA,
        /// hostname mismatch, expired, no certificate from a client that must send one).
        public static let certificateVerificationFailed = Code("certificateVerificationFailed")
        /// The handshake did not finish within the context's ``TLSConfiguration/handshakeTimeout``.
        public static let handshakeTimeout = Code("handshakeTimeout")
        /// A closing connection's peer did not answer close_notify within the context's
        /// ``TLSConfiguration/shutdownTimeout``: the connection was aborted, and data still
        /// queued for the peer may be lost.
        public static let shutdownTimeout = Code("shutdownTimeout")
        /// The connection ended (EOF or reset) before the handshake finished.
        public static let closedDuringHandshake = Code("closedDuringHandshake")
        /// A TLS protocol error after the handshake (a corrupt record, an unexpected message).
        public static let protocolError = Code("protocolError")
    }

    /// The kind of failure.
    public let code: Code
    /// A sentence for people.
    public let message: String
    /// OpenSSL's reason (e.g. `"wrong version number"`, `"hostname mismatch"`), or "".
    public let reason: String
    /// The file a configuration error is about, if any.
    public let path: String?

    /// An error with `code`, a `message` for people, OpenSSL's `reason` and the file concerned.
    public init(_ code: Code, _ message: String, reason: String = "", path: String? = nil) {
        self.code = code
        self.message = message
        self.reason = reason
        self.path = path
    }

    /// The message, then OpenSSL's reason if the message does not already contain it.
    public var description: String {
        reason.isEmpty || message.contains(reason) ? message : "\(message): \(reason)"
    }

    /// A configuration error about `path`, with the reason OpenSSL's error queue holds (which
    /// is emptied).
    static func configuration(_ what: String, path: String? = nil) -> TLSError {
        let reason = OpenSSLErrors.take()
        let subject = path.map { "\(what) \($0)" } ?? what
        return TLSError(.configuration, reason.isEmpty ? subject : "\(subject): \(reason)", reason: reason, path: path)
    }
}

/// OpenSSL's per-thread error queue.
enum OpenSSLErrors {
    /// Empties the queue (before an SSL call whose result is checked with `SSL_get_error`).
    @inline(__always)
    static func clear() {
        ERR_clear_error()
    }

    /// Takes every queued error; returns the reasons, the root cause first, joined by "; ".
    static func take() -> String {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            if let reason = ERR_reason_error_string(code) {
                let text = String(cString: reason)
                if !reasons.contains(text) { reasons.append(text) }
            } else {
                reasons.append("error \(code)")
            }
        }
        return reasons.joined(separator: "; ")
    }
}
