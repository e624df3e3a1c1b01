// TLS echo server in C over OpenSSL: the baseline of the TLS benchmarks (what the same
// OpenSSL costs with no event-loop library around it).
//
//   c_tls_echo_server [--host 127.0.0.1] [--port 0] [--cert Certificates/server.crt]
//                     [--key Certificates/server.key]
//
// epoll, level-triggered, one thread. Each connection has an SSL object on a socket BIO
// (OpenSSL reads and writes the socket itself) with OpenSSL's default server settings (TLS
// 1.2 and 1.3, session tickets on); the client picks the cipher suite. After a readiness
// event, SSL_read (into one shared 64 KiB buffer) until OpenSSL wants more bytes, and
// SSL_write of each piece straight back; what the socket does not take is kept (copied) and
// reading stops until it is written. On the client's close_notify: close_notify back, close.
// Prints `listening on HOST:PORT` on stdout (flushed) and exits 0 on SIGTERM or SIGINT.
//
// Build: cc -O2 -o c_tls_echo_server c_tls_echo_server.c -lssl -lcrypto

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int fd;
    SSL *ssl;
    int open;              // handshake done
    uint32_t events;
    unsigned char *pending;  // plaintext SSL_write has not taken yet
    size_t pending_len, pending_cap;
} Conn;

static int epfd;
static SSL_CTX *ctx;
static unsigned char buffer[65536];
static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static void set_events(Conn *c, uint32_t events) {
    if (c->events == events) return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->events = events;
}

static void drop(Conn *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    SSL_free(c->ssl);
    close(c->fd);
    free(c->pending);
    free(c);
}

// Writes what is pending; returns 1 when all is written, 0 to wait, -1 on error.
static int flush(Conn *c) {
    while (c->pending_len) {
        size_t written = 0;
        ERR_clear_error();
        if (SSL_write_ex(c->ssl, c->pending, c->pending_len, &written) == 1) {
            memmove(c->pending, c->pending + written, c->pending_len - written);
            c->pending_len -= written;
            continue;
        }
        return SSL_get_error(c->ssl, 0) == SSL_ERROR_WANT_WRITE ? 0 : -1;
    }
    return 1;
}

// Echoes `n` bytes of `buffer`; returns 1 if all went out, 0 if some wait, -1 on error.
static int echo(Conn *c, size_t n) {
    size_t done = 0;
    while (done < n) {
        size_t written = 0;
        ERR_clear_error();
        if (SSL_write_ex(c->ssl, buffer + done, n - done, &written) == 1) {
            done += written;
            continue;
        }
        if (SSL_get_error(c->ssl, 0) != SSL_ERROR_WANT_WRITE) return -1;
        // Keep the rest (OpenSSL accepts a moved buffer with the same bytes on the retry).
        size_t left = n - done;
        if (c->pending_cap < left) {
            c->pending = realloc(c->pending, left);
            if (!c->pending) return -1;
            c->pending_cap = left;
        }
        memcpy(c->pending, buffer + done, left);
        c->pending_len = left;
        return 0;
    }
    return 1;
}

static void serve(Conn *c, uint32_t events) {
    if (!c->open) {
        ERR_clear_error();
        int rc = SSL_do_handshake(c->ssl);
        if (rc != 1) {
            int code = SSL_get_error(c->ssl, rc);
            if (code == SSL_ERROR_WANT_READ) { set_events(c, EPOLLIN); return; }
            if (code == SSL_ERROR_WANT_WRITE) { set_events(c, EPOLLOUT); return; }
            drop(c);
            return;
        }
        c->open = 1;
        set_events(c, EPOLLIN);
    }
    if (c->pending_len) {
        if (!(events & EPOLLOUT)) return;
        int rc = flush(c);
        if (rc < 0) { drop(c); return; }
        if (rc == 0) return;
        set_events(c, EPOLLIN);
    }
    for (;;) {
        size_t n = 0;
        ERR_clear_error();
        if (SSL_read_ex(c->ssl, buffer, sizeof buffer, &n) == 1) {
            int rc = echo(c, n);
            if (rc < 0) { drop(c); return; }
            if (rc == 0) { set_events(c, EPOLLOUT); return; }
            continue;
        }
        int code = SSL_get_error(c->ssl, 0);
        if (code == SSL_ERROR_WANT_READ) return;
        if (code == SSL_ERROR_ZERO_RETURN) SSL_shutdown(c->ssl);   // answer close_notify
        drop(c);
        return;
    }
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *port = "0";
    const char *cert = "Certificates/server.crt", *key = "Certificates/server.key";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--host")) host = argv[i + 1];
        else if (!strcmp(argv[i], "--port")) port = argv[i + 1];
        else if (!strcmp(argv[i], "--cert")) cert = argv[i + 1];
        else if (!strcmp(argv[i], "--key")) key = argv[i + 1];
        else { fprintf(stderr, "unknown flag %s\n", argv[i]); return 2; }
    }
    if (argc % 2 == 0) { fprintf(stderr, "usage: c_tls_echo_server [--host H] [--port P] [--cert PEM] [--key PEM]\n"); return 2; }

    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "c_tls_echo_server: cannot load %s / %s\n", cert, key);
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICHOST}, *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) { fprintf(stderr, "getaddrinfo: %s\n", gai_strerror(rc)); return 1; }
    int lfd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, res->ai_addr, res->ai_addrlen) < 0 || listen(lfd, 4096) < 0) {
        perror("c_tls_echo_server: listen");
        return 1;
    }
    freeaddrinfo(res);
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    getsockname(lfd, (struct sockaddr *)&bound, &len);
    int bound_port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                       : ((struct sockaddr_in *)&bound)->sin_port);

    struct sigaction sa = {.sa_handler = on_signal};  // no SA_RESTART: epoll_wait returns EINTR
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
    printf("listening on %s:%d\n", host, bound_port);
    fflush(stdout);

    struct epoll_event events[256];
    while (!stop) {
        int n = epoll_wait(epfd, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr) { serve(events[i].data.ptr, events[i].events); continue; }
            for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) break;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                Conn *c = calloc(1, sizeof *c);
                c->fd = fd;
                c->ssl = SSL_new(ctx);
                SSL_set_fd(c->ssl, fd);
                SSL_set_accept_state(c->ssl);
                c->events = EPOLLIN;
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
            }
        }
    }
    close(lfd);
    SSL_CTX_free(ctx);
    return 0;
}
