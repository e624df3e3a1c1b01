// TLS echo load generator (OpenSSL): loadgen.c over TLS, plus a handshake mode.
//
//   tls_loadgen --host H --port P [--connections N] [--size S] [--pipeline D]
//               (--messages M | --duration SEC) [--rate R] [--timeout SEC] [TLS options]
//   tls_loadgen --host H --port P --handshakes [--connections N]
//               (--count M | --duration SEC) [--timeout SEC] [TLS options]
//
// TLS options: --tls-version 1.3|1.2 (1.3; the only version offered), --ciphersuites LIST
// (TLS 1.3 suites offered, default TLS_AES_128_GCM_SHA256), --cipher-list LIST (TLS 1.2,
// default ECDHE-ECDSA-AES128-GCM-SHA256), --groups LIST (key exchange groups offered, default
// X25519:P-256: a TLS 1.3 key share for X25519 only; TLS 1.2 needs P-256 listed for the ECDSA
// P-256 certificate), --cafile PEM (verify the server's certificate against it and its IP address; by
// default nothing is verified beyond what the protocol itself checks, to spare the client's
// CPU). The client alone restricts these, so every server, whatever its own defaults,
// negotiates the same suite and group; the result line names what was negotiated.
//
// Echo mode: N connections are opened (blocking connect, TCP_NODELAY) and each does its full
// handshake before the clock starts; then each sends S-byte messages (one SSL_write, so one
// record up to 16 KiB, per message) with D in flight, checking every decrypted byte against
// what was sent (each connection's stream is a distinct window onto a fixed pseudo-random
// pattern, as in loadgen.c). A message is timed from when it is queued to when the last byte
// of its echo is decrypted. By default the load is a closed loop (a connection sends its
// next message as soon as the echo of one is back); --rate R (messages per second, all
// connections together) makes it an open one: messages start on a fixed schedule, R per
// second, each on a connection that has a free slot (the schedule is checked every
// millisecond; if the server falls behind, the messages due start as soon as a slot frees,
// so req_per_s shows what it managed). At the end every connection sends close_notify and waits (up to
// --close-wait SEC, default 5) for the server's close_notify or EOF: the line counts clean
// closes (close_notify came back), closes with a bare EOF, resets (ECONNRESET or EPIPE), and
// connections the server had not closed by then. One line on stdout:
//
//   mode=echo connections=10 size=1024 pipeline=1 messages=123456 seconds=5.000
//   req_per_s=24691.2 mb_per_s=25.28 p50_us=38.1 p99_us=61.0 p999_us=95.2 max_us=1203.0
//   loadgen_cpu_us=4990000 protocol=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256 group=x25519
//   closed_clean=10 closed_eof=0 closed_reset=0 not_closed=0 errors=0
//
// Handshake mode: N connection slots, each in a loop: connect, full handshake (no session is
// ever offered for resumption: the client keeps none; the line counts resumed handshakes,
// which must be 0), send close_notify, read until the server's close_notify or EOF (the
// session tickets a TLS 1.3 server sends after the handshake are read, counted in tickets=,
// and dropped), close,
// start again; until --count handshakes in all or --duration SEC. A handshake is timed from
// connect() to the client's Finished; it counts when the server has closed afterwards, so
// handshakes_per_s counts whole connections. One line on stdout:
//
//   mode=handshake connections=10 handshakes=12345 seconds=5.000 handshakes_per_s=2469.0
//   p50_us=3000.1 p99_us=9000.2 max_us=12000.0 loadgen_cpu_us=4990000 resumed=0 tickets=24690
//   closed_clean=12345 closed_eof=0 closed_reset=0 protocol=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256
//   group=x25519 errors=0
//
// Either mode: a wrong byte, a connection closed or reset by the server when it should not
// be, a failed handshake, or passing --timeout (default 120 s) prints `tls_loadgen: FAIL ...`
// on stderr (with OpenSSL's reason) and exits 1. Single-threaded, epoll, level-triggered;
// after a readiness event a connection is read until OpenSSL wants more bytes from the
// socket (so no decrypted byte waits in OpenSSL's buffers with no event to come).
//
// Build: cc -O2 -o tls_loadgen tls_loadgen.c -lssl -lcrypto

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PATTERN_LEN 262147u
#define CONN_STRIDE 7919u
static unsigned char doubled[2 * PATTERN_LEN];

static void fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("tls_loadgen: FAIL ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(1);
}

// OpenSSL's queued error reasons, as one string (empties the queue).
static const char *ssl_reasons(void) {
    static char text[1024];
    size_t used = 0;
    unsigned long code;
    text[0] = 0;
    while ((code = ERR_get_error()) != 0 && used + 2 < sizeof text) {
        if (used) text[used++] = ';', text[used] = 0;
        ERR_error_string_n(code, text + used, sizeof text - used);
        used = strlen(text);
    }
    return used ? text : "no OpenSSL reason";
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// ---- latency histogram: log-linear, 64 sub-buckets per power of two (as loadgen.c) ----

#define SUB_BITS 6
#define SUB_COUNT (1u << SUB_BITS)
#define BUCKETS (2 * SUB_COUNT + 64 * SUB_COUNT)
static uint64_t histogram[BUCKETS];
static uint64_t histogram_count;
static uint64_t latency_max_ns;

static unsigned bucket_of(uint64_t v) {
    if (v < 2 * SUB_COUNT) return (unsigned)v;
    unsigned msb = 63 - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - SUB_BITS;
    return 2 * SUB_COUNT + (shift - 1) * SUB_COUNT + (unsigned)((v >> shift) - SUB_COUNT);
}

static double bucket_value(unsigned index) {
    if (index < 2 * SUB_COUNT) return index;
    unsigned shift = (index - 2 * SUB_COUNT) / SUB_COUNT + 1;
    uint64_t sub = (index - 2 * SUB_COUNT) % SUB_COUNT + SUB_COUNT;
    return (double)(sub << shift) + (double)(1ull << shift) / 2.0;
}

static void record_latency(uint64_t ns) {
    histogram[bucket_of(ns)]++;
    histogram_count++;
    if (ns > latency_max_ns) latency_max_ns = ns;
}

static double percentile_us(double fraction) {
    if (histogram_count == 0) return 0;
    uint64_t rank = (uint64_t)(fraction * (double)histogram_count);
    if (rank >= histogram_count) rank = histogram_count - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BUCKETS; i++) {
        seen += histogram[i];
        if (seen > rank) return bucket_value(i) / 1000.0;
    }
    return latency_max_ns / 1000.0;
}

// ---- options ----

static const char *opt_host = "127.0.0.1";
static int opt_port = -1;
static unsigned opt_connections = 10, opt_pipeline = 1;
static uint64_t opt_size = 1024, opt_messages = 0, opt_count = 0;
static double opt_duration = 0, opt_timeout = 120, opt_close_wait = 5, opt_rate = 0;
static int opt_handshakes = 0;
static const char *opt_version = "1.3";
static const char *opt_ciphersuites = "TLS_AES_128_GCM_SHA256";
static const char *opt_cipher_list = "ECDHE-ECDSA-AES128-GCM-SHA256";
static const char *opt_groups = "X25519:P-256";
static const char *opt_cafile = NULL;

// ---- connections ----

enum { HANDSHAKING, OPEN, CLOSING, DONE };

typedef struct {
    int fd;
    SSL *ssl;
    unsigned index;
    int state;
    uint32_t events;       // registered epoll events
    uint64_t sent, queued, received, started, completed;
    uint64_t *start_ns;    // ring of queue times, `pipeline` entries
    uint64_t connect_ns;   // handshake mode: when connect() was called
    int waiting;           // --rate: in the queue of connections waiting for their turn
} Conn;

static SSL_CTX *ctx;
static struct addrinfo *server_ai;
static int epfd;
static Conn *conns;
static uint64_t messages_started, messages_completed;
static int accepting_new = 1;
static uint64_t deadline_ns, timeout_ns;
static unsigned char *read_buffer;
#define READ_BUFFER_SIZE (256 * 1024)
static uint64_t handshakes_done, handshakes_started, resumed, closed_clean, closed_eof, closed_reset;
static uint64_t tickets;   // session tickets received (counted, never kept)

static int count_ticket(SSL *ssl, SSL_SESSION *session) {
    (void)ssl, (void)session;
    tickets++;
    return 0;   // not kept: OpenSSL frees it
}
static char negotiated[256];

static void set_events(Conn *c, uint32_t events) {
    if (c->events == events) return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) < 0)
        fail("epoll_ctl: %s", strerror(errno));
    c->events = events;
}

// Connects (blocking; loopback), makes the SSL object; the handshake is driven by the loop.
static void open_connection(Conn *c) {
    int fd = socket(server_ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket: %s", strerror(errno));
    c->connect_ns = now_ns();
    if (connect(fd, server_ai->ai_addr, server_ai->ai_addrlen) < 0)
        fail("connect %s:%d: %s", opt_host, opt_port, strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    c->fd = fd;
    c->events = 0;
    c->ssl = SSL_new(ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, fd)) fail("SSL_new: %s", ssl_reasons());
    if (opt_cafile && !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), opt_host))
        fail("cannot check the server's certificate for %s", opt_host);
    SSL_set_connect_state(c->ssl);
    c->state = HANDSHAKING;
    handshakes_started++;
}

static void close_connection(Conn *c) {
    if (c->events) epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    c->events = 0;
    SSL_free(c->ssl);
    c->ssl = NULL;
    close(c->fd);
    c->fd = -1;
    c->state = DONE;
}

static void note_negotiated(SSL *ssl) {
    if (negotiated[0]) return;
    int nid = SSL_get_negotiated_group(ssl);
    const char *group = nid > 0 ? OBJ_nid2sn(nid) : "none";
    snprintf(negotiated, sizeof negotiated, "protocol=%s cipher=%s group=%s", SSL_get_version(ssl),
             SSL_get_cipher_name(ssl), group);
}

// Waits for `want` (WANT_READ / WANT_WRITE) on the connection, or fails on an error.
static void want_or_fail(Conn *c, int rc, const char *what) {
    int code = SSL_get_error(c->ssl, rc);
    if (code == SSL_ERROR_WANT_READ) { set_events(c, EPOLLIN); return; }
    if (code == SSL_ERROR_WANT_WRITE) { set_events(c, EPOLLIN | EPOLLOUT); return; }
    int saved = errno;
    if (code == SSL_ERROR_ZERO_RETURN)
        fail("connection %u: %s: the server sent close_notify", c->index, what);
    if (code == SSL_ERROR_SYSCALL)
        fail("connection %u: %s: %s (%s)", c->index, what,
             rc == 0 || saved == 0 ? "EOF from the server" : strerror(saved), ssl_reasons());
    fail("connection %u: %s: SSL error %d: %s", c->index, what, code, ssl_reasons());
}

// ---- echo mode ----

static const unsigned char *stream_bytes(const Conn *c, uint64_t position) {
    return doubled + (position + (uint64_t)c->index * CONN_STRIDE) % PATTERN_LEN;
}

// --rate: the connections with a free slot that wait for the schedule, in order.
static Conn **rate_queue;
static unsigned rate_head, rate_count;
static uint64_t load_start_ns;

// --rate: how many messages the schedule allows to have started by `now`.
static uint64_t rate_allowance(uint64_t now) {
    return (uint64_t)((double)(now - load_start_ns) * opt_rate / 1e9) + 1;
}

static void start_messages(Conn *c, uint64_t now) {
    while (accepting_new && c->started - c->completed < opt_pipeline) {
        if (opt_messages && messages_started >= opt_messages) break;
        if (opt_rate > 0 && messages_started >= rate_allowance(now)) {
            if (!c->waiting) {
                c->waiting = 1;
                rate_queue[(rate_head + rate_count++) % opt_connections] = c;
            }
            break;
        }
        c->start_ns[c->started % opt_pipeline] = now;
        c->started++;
        c->queued += opt_size;
        messages_started++;
    }
}

// Sends what is queued, one SSL_write per message (so one record for messages up to 16 KiB).
static void flush_writes(Conn *c) {
    while (c->sent < c->queued) {
        uint64_t left = opt_size - c->sent % opt_size;  // the rest of the current message
        size_t chunk = left < PATTERN_LEN ? (size_t)left : PATTERN_LEN;
        ERR_clear_error();
        int n = SSL_write(c->ssl, stream_bytes(c, c->sent), (int)chunk);
        if (n <= 0) {
            want_or_fail(c, n, "SSL_write");
            return;
        }
        c->sent += (uint64_t)n;
    }
    set_events(c, EPOLLIN);
}

static void read_echo(Conn *c) {
    for (;;) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, read_buffer, READ_BUFFER_SIZE);
        if (n <= 0) {
            if (c->sent < c->queued && SSL_get_error(c->ssl, n) == SSL_ERROR_WANT_READ) {
                set_events(c, EPOLLIN | EPOLLOUT);   // a write is still waiting for room
                return;
            }
            want_or_fail(c, n, "SSL_read");
            return;
        }
        if (c->received + (uint64_t)n > c->sent)
            fail("connection %u: %llu bytes echoed but only %llu sent", c->index,
                 (unsigned long long)(c->received + (uint64_t)n), (unsigned long long)c->sent);
        size_t off = 0;
        while (off < (size_t)n) {
            size_t piece = (size_t)n - off < PATTERN_LEN ? (size_t)n - off : PATTERN_LEN;
            const unsigned char *want = stream_bytes(c, c->received + off);
            if (memcmp(read_buffer + off, want, piece) != 0) {
                size_t i = 0;
                while (read_buffer[off + i] == want[i]) i++;
                uint64_t at = c->received + off + i;
                fail("connection %u: wrong byte at stream offset %llu (message %llu, byte %llu): "
                     "expected 0x%02x, got 0x%02x",
                     c->index, (unsigned long long)at, (unsigned long long)(at / opt_size),
                     (unsigned long long)(at % opt_size), want[i], read_buffer[off + i]);
            }
            off += piece;
        }
        c->received += (uint64_t)n;
        uint64_t now = 0;
        while (c->completed < c->started && c->received >= (c->completed + 1) * opt_size) {
            if (!now) now = now_ns();
            record_latency(now - c->start_ns[c->completed % opt_pipeline]);
            c->completed++;
            messages_completed++;
        }
        if (now) {
            if (accepting_new && opt_duration > 0 && now >= deadline_ns) accepting_new = 0;
            start_messages(c, now);
            flush_writes(c);
        }
    }
}

// Drives a handshake; returns 1 once it is done.
static int step_handshake(Conn *c) {
    ERR_clear_error();
    int rc = SSL_connect(c->ssl);
    if (rc == 1) {
        note_negotiated(c->ssl);
        if (SSL_session_reused(c->ssl)) resumed++;
        c->state = OPEN;
        set_events(c, EPOLLIN);
        return 1;
    }
    want_or_fail(c, rc, "handshake");
    return 0;
}

// Closing: sends close_notify (first call) and reads until the server's close_notify or EOF;
// returns 1 once the connection is closed.
static int step_close(Conn *c) {
    if (c->state != CLOSING) {
        c->state = CLOSING;
        ERR_clear_error();
        int rc = SSL_shutdown(c->ssl);   // 0: sent, the server's not seen yet; 1: both done
        if (rc == 1) { closed_clean++; close_connection(c); return 1; }
        if (rc < 0) {
            int saved = errno, code = SSL_get_error(c->ssl, rc);
            if (code == SSL_ERROR_SYSCALL && (saved == ECONNRESET || saved == EPIPE)) {
                closed_reset++;   // the server had closed already
                close_connection(c);
                return 1;
            }
            if (code != SSL_ERROR_WANT_WRITE && code != SSL_ERROR_WANT_READ)
                fail("connection %u: SSL_shutdown: %s", c->index, ssl_reasons());
        }
        set_events(c, EPOLLIN);
    }
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(c->ssl, read_buffer, READ_BUFFER_SIZE);
        if (n > 0) continue;   // (echo mode: nothing is in flight; drop anything late)
        int saved = errno;
        int code = SSL_get_error(c->ssl, n);
        if (code == SSL_ERROR_WANT_READ) return 0;
        if (code == SSL_ERROR_ZERO_RETURN) { closed_clean++; close_connection(c); return 1; }
        // EOF without close_notify: OpenSSL 3 reports "unexpected eof while reading".
        unsigned long error = ERR_peek_error();
        if ((code == SSL_ERROR_SYSCALL && saved == 0) ||
            (code == SSL_ERROR_SSL && ERR_GET_REASON(error) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
            closed_eof++;
            close_connection(c);
            return 1;
        }
        if (code == SSL_ERROR_SYSCALL && (saved == ECONNRESET || saved == EPIPE)) {
            closed_reset++;   // counted, not fatal: the scripts note it
            close_connection(c);
            return 1;
        }
        fail("connection %u: closing: SSL error %d: %s (%s)", c->index, code,
             saved ? strerror(saved) : "-", ssl_reasons());
    }
}

// ---- the loop ----

// Drives a connection as far as it goes without waiting; in handshake mode a slot whose
// connection closed opens the next one (a loop, not recursion: a handshake may complete
// without waiting).
static void handle(Conn *c, uint32_t events) {
    for (;;) {
        if (c->state == HANDSHAKING) {
            if (!step_handshake(c)) return;
            if (!opt_handshakes) return;   // echo mode: the load starts once all are open
            record_latency(now_ns() - c->connect_ns);
            if (!step_close(c)) return;
        } else if (c->state == OPEN) {
            if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) read_echo(c);
            if ((events & EPOLLOUT) && c->state == OPEN) flush_writes(c);
            return;
        } else if (c->state == CLOSING) {
            if (!step_close(c)) return;
        }
        if (!opt_handshakes || c->state != DONE) return;
        handshakes_done++;
        int more = accepting_new && (!opt_count || handshakes_started < opt_count);
        if (more && opt_duration > 0 && now_ns() >= deadline_ns) accepting_new = more = 0;
        if (!more) return;
        open_connection(c);
    }
}

static void poll_once(int timeout_ms) {
    struct epoll_event events[256];
    int n = epoll_wait(epfd, events, 256, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return;
        fail("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) handle(events[i].data.ptr, events[i].events);
    if (now_ns() > timeout_ns)
        fail("timeout after %.1f s: %llu of %llu messages echoed, %llu handshakes", opt_timeout,
             (unsigned long long)messages_completed, (unsigned long long)messages_started,
             (unsigned long long)handshakes_done);
}

static double parse_number(const char *flag, const char *value) {
    char *end;
    double d = strtod(value, &end);
    if (!*value || *end || d < 0) {
        fprintf(stderr, "tls_loadgen: bad value for %s: %s\n", flag, value);
        exit(2);
    }
    return d;
}

static void usage(void) {
    fputs("usage: tls_loadgen --host H --port P [--connections N] [--size S] [--pipeline D]\n"
          "                   (--messages M | --duration SEC) [--rate R] [--timeout SEC] [--close-wait SEC]\n"
          "       tls_loadgen --host H --port P --handshakes [--connections N]\n"
          "                   (--count M | --duration SEC) [--timeout SEC]\n"
          "       TLS: [--tls-version 1.3|1.2] [--ciphersuites L] [--cipher-list L] [--groups L]\n"
          "            [--cafile PEM]\n",
          stderr);
    exit(2);
}

static double cpu_us_self(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_utime.tv_sec * 1e6 + usage.ru_utime.tv_usec + usage.ru_stime.tv_sec * 1e6 +
           usage.ru_stime.tv_usec;
}

static void make_context(void) {
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) fail("SSL_CTX_new: %s", ssl_reasons());
    int version = !strcmp(opt_version, "1.3") ? TLS1_3_VERSION
                : !strcmp(opt_version, "1.2") ? TLS1_2_VERSION : 0;
    if (!version) fail("--tls-version must be 1.3 or 1.2");
    if (!SSL_CTX_set_min_proto_version(ctx, version) || !SSL_CTX_set_max_proto_version(ctx, version))
        fail("cannot restrict to TLS %s: %s", opt_version, ssl_reasons());
    if (!SSL_CTX_set_ciphersuites(ctx, opt_ciphersuites))
        fail("bad --ciphersuites %s: %s", opt_ciphersuites, ssl_reasons());
    if (!SSL_CTX_set_cipher_list(ctx, opt_cipher_list))
        fail("bad --cipher-list %s: %s", opt_cipher_list, ssl_reasons());
    if (!SSL_CTX_set1_groups_list(ctx, opt_groups)) fail("bad --groups %s: %s", opt_groups, ssl_reasons());
    // No session is kept, so none is ever offered: every handshake is a full one. The
    // tickets the server sends are only counted (the new-session callback needs the client
    // cache mode; nothing is stored).
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, count_ticket);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (opt_cafile) {
        if (!SSL_CTX_load_verify_locations(ctx, opt_cafile, NULL))
            fail("cannot load --cafile %s: %s", opt_cafile, ssl_reasons());
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (!strcmp(flag, "--handshakes")) { opt_handshakes = 1; continue; }
        if (i + 1 >= argc) usage();
        const char *value = argv[++i];
        if (!strcmp(flag, "--host")) opt_host = value;
        else if (!strcmp(flag, "--port")) opt_port = (int)parse_number(flag, value);
        else if (!strcmp(flag, "--connections")) opt_connections = (unsigned)parse_number(flag, value);
        else if (!strcmp(flag, "--size")) opt_size = (uint64_t)parse_number(flag, value);
        else if (!strcmp(flag, "--pipeline")) opt_pipeline = (unsigned)parse_number(flag, value);
        else if (!strcmp(flag, "--messages")) opt_messages = (uint64_t)parse_number(flag, value);
        else if (!strcmp(flag, "--count")) opt_count = (uint64_t)parse_number(flag, value);
        else if (!strcmp(flag, "--duration")) opt_duration = parse_number(flag, value);
        else if (!strcmp(flag, "--timeout")) opt_timeout = parse_number(flag, value);
        else if (!strcmp(flag, "--close-wait")) opt_close_wait = parse_number(flag, value);
        else if (!strcmp(flag, "--rate")) opt_rate = parse_number(flag, value);
        else if (!strcmp(flag, "--tls-version")) opt_version = value;
        else if (!strcmp(flag, "--ciphersuites")) opt_ciphersuites = value;
        else if (!strcmp(flag, "--cipher-list")) opt_cipher_list = value;
        else if (!strcmp(flag, "--groups")) opt_groups = value;
        else if (!strcmp(flag, "--cafile")) opt_cafile = value;
        else usage();
    }
    if (opt_port < 0 || opt_port > 65535 || opt_connections == 0 || opt_size == 0 || opt_pipeline == 0)
        usage();
    uint64_t bound = opt_handshakes ? opt_count : opt_messages;
    if ((bound == 0) == (opt_duration == 0)) {
        fprintf(stderr, "tls_loadgen: give exactly one of %s and --duration SEC\n",
                opt_handshakes ? "--count M" : "--messages M");
        exit(2);
    }
    signal(SIGPIPE, SIG_IGN);
    make_context();

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    char port[16];
    snprintf(port, sizeof port, "%d", opt_port);
    int rc = getaddrinfo(opt_host, port, &hints, &server_ai);
    if (rc != 0) fail("getaddrinfo %s: %s", opt_host, gai_strerror(rc));

    uint64_t state = 0x9E3779B97F4A7C15ull;  // xorshift64*: the fixed pattern of loadgen.c
    for (unsigned i = 0; i < PATTERN_LEN; i++) {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
        doubled[i] = doubled[i + PATTERN_LEN] = (unsigned char)((state * 0x2545F4914F6CDD1Dull) >> 56);
    }
    read_buffer = malloc(READ_BUFFER_SIZE);
    conns = calloc(opt_connections, sizeof *conns);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!read_buffer || !conns || epfd < 0) fail("setup: %s", strerror(errno));
    timeout_ns = now_ns() + (uint64_t)(opt_timeout * 1e9);

    if (opt_handshakes) {
        uint64_t start = now_ns();
        deadline_ns = start + (uint64_t)(opt_duration * 1e9);
        for (unsigned i = 0; i < opt_connections; i++) {
            conns[i].index = i;
            conns[i].state = DONE;
            if (opt_count && handshakes_started >= opt_count) continue;
            open_connection(&conns[i]);
            handle(&conns[i], 0);   // sends the ClientHello
        }
        for (;;) {
            unsigned live = 0;
            for (unsigned i = 0; i < opt_connections; i++) live += conns[i].state != DONE;
            if (!live) break;
            poll_once(100);
        }
        double seconds = (double)(now_ns() - start) / 1e9;
        printf("mode=handshake connections=%u handshakes=%llu seconds=%.3f handshakes_per_s=%.1f "
               "p50_us=%.1f p99_us=%.1f max_us=%.1f loadgen_cpu_us=%.0f resumed=%llu tickets=%llu "
               "closed_clean=%llu closed_eof=%llu closed_reset=%llu %s errors=0\n",
               opt_connections, (unsigned long long)handshakes_done, seconds, handshakes_done / seconds,
               percentile_us(0.50), percentile_us(0.99), latency_max_ns / 1000.0, cpu_us_self(),
               (unsigned long long)resumed, (unsigned long long)tickets, (unsigned long long)closed_clean,
               (unsigned long long)closed_eof, (unsigned long long)closed_reset, negotiated);
        fflush(stdout);
        return resumed ? (fprintf(stderr, "tls_loadgen: FAIL %llu handshakes were resumed\n",
                                  (unsigned long long)resumed), 1) : 0;
    }

    // Echo mode: all connections open and handshake first.
    for (unsigned i = 0; i < opt_connections; i++) {
        Conn *c = &conns[i];
        c->index = i;
        c->start_ns = calloc(opt_pipeline, sizeof *c->start_ns);
        if (!c->start_ns) fail("out of memory");
        open_connection(c);
        step_handshake(c);
    }
    for (;;) {
        unsigned open = 0;
        for (unsigned i = 0; i < opt_connections; i++) open += conns[i].state == OPEN;
        if (open == opt_connections) break;
        poll_once(100);
    }

    uint64_t start = now_ns();
    deadline_ns = start + (uint64_t)(opt_duration * 1e9);
    load_start_ns = start;
    rate_queue = calloc(opt_connections, sizeof *rate_queue);
    if (!rate_queue) fail("out of memory");
    for (unsigned i = 0; i < opt_connections; i++) {
        start_messages(&conns[i], start);
        flush_writes(&conns[i]);
    }
    uint64_t end = start;
    for (;;) {
        if (messages_completed == messages_started &&
            (!accepting_new || (opt_messages && messages_started >= opt_messages))) {
            end = now_ns();
            break;
        }
        poll_once(opt_rate > 0 ? 1 : 100);
        uint64_t now = now_ns();
        if (accepting_new && opt_duration > 0 && now >= deadline_ns) accepting_new = 0;
        // --rate: connections whose turn has come send their next message.
        while (rate_count && accepting_new && messages_started < rate_allowance(now) &&
               (!opt_messages || messages_started < opt_messages)) {
            Conn *c = rate_queue[rate_head];
            rate_head = (rate_head + 1) % opt_connections;
            rate_count--;
            c->waiting = 0;
            start_messages(c, now);
            flush_writes(c);
        }
    }
    double cpu_us = cpu_us_self();

    // Close: close_notify on every connection, then wait for the server's close.
    uint64_t close_deadline = now_ns() + (uint64_t)(opt_close_wait * 1e9);
    if (close_deadline > timeout_ns) timeout_ns = close_deadline + 1000000000ull;
    for (unsigned i = 0; i < opt_connections; i++) step_close(&conns[i]);
    unsigned not_closed;
    for (;;) {
        not_closed = 0;
        for (unsigned i = 0; i < opt_connections; i++) not_closed += conns[i].state != DONE;
        if (!not_closed || now_ns() >= close_deadline) break;
        poll_once(50);
    }
    if (not_closed)
        fprintf(stderr, "tls_loadgen: warning: %u connections not closed by the server %.1f s after "
                "our close_notify\n", not_closed, opt_close_wait);

    double seconds = (double)(end - start) / 1e9;
    printf("mode=echo connections=%u size=%llu pipeline=%u messages=%llu seconds=%.3f req_per_s=%.1f "
           "mb_per_s=%.2f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f loadgen_cpu_us=%.0f "
           "%s closed_clean=%llu closed_eof=%llu closed_reset=%llu not_closed=%u errors=0\n",
           opt_connections, (unsigned long long)opt_size, opt_pipeline,
           (unsigned long long)messages_completed, seconds, messages_completed / seconds,
           (double)messages_completed * (double)opt_size / seconds / 1e6, percentile_us(0.50),
           percentile_us(0.99), percentile_us(0.999), latency_max_ns / 1000.0, cpu_us, negotiated,
           (unsigned long long)closed_clean, (unsigned long long)closed_eof,
           (unsigned long long)closed_reset, not_closed);
    fflush(stdout);
    for (unsigned i = 0; i < opt_connections; i++)
        if (conns[i].state != DONE) close_connection(&conns[i]);
    return 0;
}
