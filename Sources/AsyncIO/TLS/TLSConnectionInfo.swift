//===----------------------------------------------------------------------===//
// swift-asyncio — What a TLS connection negotiated: version, cipher, ALPN, certificates.
//===----------------------------------------------------------------------===//

import CAsyncIOOpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// A snapshot of a TLS connection's parameters (asyncio's `get_extra_info("ssl_object")`,
/// `"peercert"`, `"cipher"`): ``StreamTransport/tlsInfo`` of a TLS transport.
public struct TLSConnectionInfo: Sendable {
    /// The protocol version, e.g. `"TLSv1.3"`.
    public let version: String
    /// The cipher suite, e.g. `"TLS_AES_128_GCM_SHA256"` (OpenSSL's name for TLS 1.2 suites,
    /// e.g. `"ECDHE-ECDSA-AES128-GCM-SHA256"`).
    public let cipher: String
    /// The protocol ALPN settled on, if any.
    public let alpnProtocol: String?
    /// The server name the client asked for (SNI), if any.
    public let serverName: String?
    /// The peer's certificate, if it sent one.
    public let peerCertificate: TLSCertificate?
    /// Whether the handshake resumed an earlier session.
    public let sessionReused: Bool
    /// Clients: the newest session the server issued on this connection, to offer on a
    /// later one (TLS 1.3 sends it just after the handshake, so read it after the first
    /// response). `nil` for servers.
    public let session: TLSSession?

    init(ssl: OpaquePointer, session: TLSSession?) {
        version = String(cString: SSL_get_version(ssl))
        cipher = SSL_get_current_cipher(ssl).map { String(cString: SSL_CIPHER_get_name($0)) } ?? ""
        var alpn: UnsafePointer<UInt8>?
        var alpnLength: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &alpn, &alpnLength)
        alpnProtocol = alpn.flatMap { alpnLength > 0 ? String(decoding: UnsafeBufferPointer(start: $0, count: Int(alpnLength)), as: UTF8.self) : nil }
        serverName = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) }
        if let certificate = SSL_get1_peer_certificate(ssl) {
            peerCertificate = TLSCertificate(certificate)
            X509_free(certificate)
        } else {
            peerCertificate = nil
        }
        sessionReused = SSL_session_reused(ssl) == 1
        self.session = session
    }
}

/// A peer's X.509 certificate, decoded.
public struct TLSCertificate: Sendable, Hashable {
    /// The subject, RFC 2253 style, e.g. `"CN=localhost,O=swift-asyncio test"`.
    public let subject: String
    /// The issuer, in the same style.
    public let issuer: String
    /// The subject alternative names: DNS names as they are, IP addresses in text form.
    public let subjectAlternativeNames: [String]
    /// The certificate in DER.
    public let der: [UInt8]

    init(_ certificate: OpaquePointer) {
        subject = Self.text(X509_get_subject_name(certificate))
        issuer = Self.text(X509_get_issuer_name(certificate))
        var names: [String] = []
        if let raw = X509_get_ext_d2i(certificate, NID_subject_alt_name, nil, nil) {
            let list = OpaquePointer(raw)
            for i in 0..<casyncio_sk_GENERAL_NAME_num(list) {
                var data: UnsafePointer<UInt8>?
                var length: Int32 = 0
                let kind = casyncio_general_name(casyncio_sk_GENERAL_NAME_value(list, i), &data, &length)
                guard let data, length > 0 else { continue }
                let bytes = UnsafeBufferPointer(start: data, count: Int(length))
                if kind == 0 {
                    names.append(String(decoding: bytes, as: UTF8.self))
                } else if kind == 1, let address = Self.ipText(bytes) {
                    names.append(address)
                }
            }
            casyncio_GENERAL_NAMES_free(list)
        }
        subjectAlternativeNames = names
        var der: [UInt8] = []
        let length = i2d_X509(certificate, nil)
        if length > 0 {
            der = [UInt8](repeating: 0, count: Int(length))
            der.withUnsafeMutableBufferPointer { buffer in
                var cursor = buffer.baseAddress
                _ = i2d_X509(certificate, &cursor)
            }
        }
        self.der = der
    }

    private static func text(_ name: OpaquePointer?) -> String {
        guard let name, let bio = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(bio) }
        guard X509_NAME_print_ex(bio, name, 0, casyncio_XN_FLAG_RFC2253()) >= 0 else { return "" }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 256)
        while true {
            let n = chunk.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32($0.count)) }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<Int(n)])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func ipText(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
        let family = bytes.count == 4 ? AF_INET : bytes.count == 16 ? AF_INET6 : -1
        guard family != -1 else { return nil }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(family, bytes.baseAddress, &text, socklen_t(text.count)) != nil else { return nil }
        let end = text.firstIndex(of: 0) ?? text.count
        return String(decoding: text[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension StreamTransport {
    /// What TLS negotiated (version, cipher, ALPN, peer certificate, session); `nil` if the
    /// transport is not TLS or its handshake has not started.
    ///
    /// Defined by the TLS layer: the transport protocol itself knows nothing of TLS.
    /// - Important: Loop-bound.
    public var tlsInfo: TLSConnectionInfo? {
        (self as? TLSTransport)?.connectionInfo
    }
}
