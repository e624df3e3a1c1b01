// A minimal epoll echo server in C: the speed-of-light baseline of the echo benchmarks.
//
//   c_echo_server [--host 127.0.0.1] [--port 0] [--unix PATH]
//
// Prints `listening on HOST:PORT` (or `listening on unix:PATH`) on stdout, flushed, once it
// listens (--port 0 picks an ephemeral port), echoes every byte, and exits 0 on SIGTERM or
// SIGINT. Single-threaded, level-triggered; reads into one 256 KiB buffer and writes straight
// back; whatever the socket does not take is kept per connection and the connection stops
// reading until that backlog is written (so a slow reader cannot make the server buffer
// without bound).
//
// Build: cc -O2 -o c_echo_server c_echo_server.c

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BUFFER_SIZE (256 * 1024)

typedef struct {
    int fd;
    char *pending;    // bytes read but not yet written back
    size_t pending_len, pending_off;
} Conn;

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static int epfd, listen_fd;
static char buffer[BUFFER_SIZE];

static void die(const char *what) {
    fprintf(stderr, "c_echo_server: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void close_conn(Conn *c) {
    close(c->fd);  // also removes it from the epoll set
    free(c->pending);
    free(c);
}

static void watch(Conn *c, unsigned events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
}

// Writes what is pending; returns -1 if the connection failed, 0 if all is written, 1 if not.
static int write_pending(Conn *c) {
    while (c->pending_off < c->pending_len) {
        ssize_t n = send(c->fd, c->pending + c->pending_off, c->pending_len - c->pending_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
            return -1;
        }
        c->pending_off += (size_t)n;
    }
    free(c->pending);
    c->pending = NULL;
    c->pending_len = c->pending_off = 0;
    return 0;
}

static void on_readable(Conn *c) {
    for (int round = 0; round < 16; round++) {
        ssize_t n = recv(c->fd, buffer, BUFFER_SIZE, 0);
        if (n == 0) { close_conn(c); return; }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            close_conn(c);
            return;
        }
        size_t off = 0;
        while (off < (size_t)n) {
            ssize_t w = send(c->fd, buffer + off, (size_t)n - off, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                close_conn(c);
                return;
            }
            off += (size_t)w;
        }
        if (off < (size_t)n) {  // the socket is full: keep the rest, wait for EPOLLOUT
            c->pending_len = (size_t)n - off;
            c->pending_off = 0;
            c->pending = malloc(c->pending_len);
            if (!c->pending) die("malloc");
            memcpy(c->pending, buffer + off, c->pending_len);
            watch(c, EPOLLOUT);
            return;
        }
        if ((size_t)n < BUFFER_SIZE) return;
    }
}

static void on_writable(Conn *c) {
    int rc = write_pending(c);
    if (rc < 0) close_conn(c);
    else if (rc == 0) watch(c, EPOLLIN);
}

static void on_accept(void) {
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) return;
            if (errno == EMFILE || errno == ENFILE) { perror("c_echo_server: accept"); return; }
            die("accept");
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // fails harmlessly on unix sockets
        Conn *c = calloc(1, sizeof *c);
        if (!c) die("calloc");
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    }
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *unix_path = NULL;
    int port = 0;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc) goto usage;
        if (!strcmp(argv[i], "--host")) host = argv[i + 1];
        else if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--unix")) unix_path = argv[i + 1];
        else goto usage;
    }

    struct sigaction sa = {.sa_handler = on_signal};  // no SA_RESTART: epoll_wait returns EINTR
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (unix_path) {
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        if (strlen(unix_path) >= sizeof addr.sun_path) { fputs("c_echo_server: path too long\n", stderr); return 2; }
        strcpy(addr.sun_path, unix_path);
        unlink(unix_path);
        listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (listen_fd < 0) die("socket");
        if (bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    } else {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_PASSIVE}, *res;
        char service[16];
        snprintf(service, sizeof service, "%d", port);
        int rc = getaddrinfo(host, service, &hints, &res);
        if (rc) { fprintf(stderr, "c_echo_server: %s: %s\n", host, gai_strerror(rc)); return 2; }
        listen_fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (listen_fd < 0) die("socket");
        int one = 1;
        setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(listen_fd, res->ai_addr, res->ai_addrlen) < 0) die("bind");
        freeaddrinfo(res);
    }
    if (listen(listen_fd, 4096) < 0) die("listen");

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev) < 0) die("epoll_ctl");

    if (unix_path) {
        printf("listening on unix:%s\n", unix_path);
    } else {
        struct sockaddr_storage bound;
        socklen_t len = sizeof bound;
        getsockname(listen_fd, (struct sockaddr *)&bound, &len);
        int actual = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                       : ((struct sockaddr_in *)&bound)->sin_port);
        printf("listening on %s:%d\n", host, actual);
    }
    fflush(stdout);

    struct epoll_event events[256];
    while (!stop) {
        int n = epoll_wait(epfd, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            Conn *c = events[i].data.ptr;
            if (!c) { on_accept(); continue; }
            if (events[i].events & EPOLLOUT) on_writable(c);
            else if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
        }
    }
    if (unix_path) unlink(unix_path);
    return 0;

usage:
    fputs("usage: c_echo_server [--host H] [--port P] [--unix PATH]\n", stderr);
    return 2;
}
