// swift-asyncio: the system OpenSSL (libssl-dev, found with pkg-config) for Swift, plus
// static inline wrappers for what OpenSSL defines as macros (Swift cannot call macros) and
// the two callbacks that are simpler in C (ALPN selection, the SNI hook's trampoline).
#ifndef CASYNCIO_OPENSSL_SHIM_H
#define CASYNCIO_OPENSSL_SHIM_H

#include <string.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/bio.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/crypto.h>

static inline long casyncio_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_min_proto_version(ctx, version);
}
static inline long casyncio_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_max_proto_version(ctx, version);
}
static inline long casyncio_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}
static inline long casyncio_SSL_set_mode(SSL *ssl, long mode) {
    return SSL_set_mode(ssl, mode);
}
static inline long casyncio_SSL_clear_mode(SSL *ssl, long mode) {
    return SSL_clear_mode(ssl, mode);
}
static inline long casyncio_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}
static inline long casyncio_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}
static inline int casyncio_SSL_set_app_data(SSL *ssl, void *data) {
    return SSL_set_ex_data(ssl, 0, data);
}
static inline void *casyncio_SSL_get_app_data(const SSL *ssl) {
    return SSL_get_ex_data(ssl, 0);
}
static inline int casyncio_SSL_CTX_set_app_data(SSL_CTX *ctx, void *data) {
    return SSL_CTX_set_ex_data(ctx, 0, data);
}
static inline void *casyncio_SSL_CTX_get_app_data(const SSL_CTX *ctx) {
    return SSL_CTX_get_ex_data(ctx, 0);
}
static inline void casyncio_OPENSSL_free(void *pointer) {
    OPENSSL_free(pointer);
}

// MARK: Options (uint64_t in OpenSSL 3)

static inline uint64_t casyncio_SSL_OP_NO_RENEGOTIATION(void) { return SSL_OP_NO_RENEGOTIATION; }
static inline uint64_t casyncio_SSL_OP_NO_TICKET(void) { return SSL_OP_NO_TICKET; }
static inline uint64_t casyncio_SSL_OP_NO_COMPRESSION(void) { return SSL_OP_NO_COMPRESSION; }
static inline uint64_t casyncio_SSL_OP_CIPHER_SERVER_PREFERENCE(void) { return SSL_OP_CIPHER_SERVER_PREFERENCE; }
static inline long casyncio_SSL_MODE_ENABLE_PARTIAL_WRITE(void) { return SSL_MODE_ENABLE_PARTIAL_WRITE; }
static inline long casyncio_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER(void) { return SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER; }
static inline long casyncio_SSL_MODE_RELEASE_BUFFERS(void) { return SSL_MODE_RELEASE_BUFFERS; }

// MARK: BIO retry flags (macros over BIO_set_flags)

static inline void casyncio_BIO_set_retry_read(BIO *bio) { BIO_set_retry_read(bio); }
static inline void casyncio_BIO_clear_retry_flags(BIO *bio) { BIO_clear_retry_flags(bio); }

static inline unsigned long casyncio_XN_FLAG_RFC2253(void) { return XN_FLAG_RFC2253; }

// MARK: Subject alternative names (the stack macros)

static inline int casyncio_sk_GENERAL_NAME_num(const GENERAL_NAMES *names) {
    return sk_GENERAL_NAME_num(names);
}
static inline const GENERAL_NAME *casyncio_sk_GENERAL_NAME_value(const GENERAL_NAMES *names, int i) {
    return sk_GENERAL_NAME_value(names, i);
}
static inline void casyncio_GENERAL_NAMES_free(GENERAL_NAMES *names) {
    GENERAL_NAMES_free(names);
}
/// The DNS name (type 0) or IP address bytes (type 1) of a SAN entry; -1 for other types.
static inline int casyncio_general_name(const GENERAL_NAME *name, const unsigned char **data, int *length) {
    if (name->type == GEN_DNS) {
        *data = ASN1_STRING_get0_data(name->d.dNSName);
        *length = ASN1_STRING_length(name->d.dNSName);
        return 0;
    }
    if (name->type == GEN_IPADD) {
        *data = ASN1_STRING_get0_data(name->d.iPAddress);
        *length = ASN1_STRING_length(name->d.iPAddress);
        return 1;
    }
    return -1;
}

// MARK: ALPN on the server: the first of the server's protocols (wire format) the client offers

static int casyncio_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl;
    const unsigned char *server = (const unsigned char *)arg;
    unsigned int serverLength = server[0] | (server[1] << 8);   // 2-byte length prefix
    server += 2;
    for (unsigned int i = 0; i < serverLength; i += 1 + server[i]) {
        for (unsigned int j = 0; j < inlen; j += 1 + in[j]) {
            if (server[i] == in[j] && j + 1 + in[j] <= inlen
                && memcmp(server + i + 1, in + j + 1, server[i]) == 0) {
                *out = in + j + 1;
                *outlen = in[j];
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    return SSL_TLSEXT_ERR_NOACK;   // no common protocol: go on without ALPN
}

/// `protocols`: a 2-byte little-endian length, then the wire format (length-prefixed names);
/// it must outlive the context.
static inline void casyncio_SSL_CTX_set_alpn_server(SSL_CTX *ctx, const unsigned char *protocols) {
    SSL_CTX_set_alpn_select_cb(ctx, casyncio_alpn_select, (void *)protocols);
}

// MARK: SNI on the server

static inline long casyncio_SSL_CTX_set_servername_callback(SSL_CTX *ctx, int (*callback)(SSL *, int *, void *)) {
    return SSL_CTX_set_tlsext_servername_callback(ctx, callback);
}
static inline int casyncio_SSL_TLSEXT_ERR_OK(void) { return SSL_TLSEXT_ERR_OK; }
static inline int casyncio_SSL_TLSEXT_ERR_ALERT_FATAL(void) { return SSL_TLSEXT_ERR_ALERT_FATAL; }
static inline int casyncio_SSL_AD_UNRECOGNIZED_NAME(void) { return SSL_AD_UNRECOGNIZED_NAME; }

#endif
