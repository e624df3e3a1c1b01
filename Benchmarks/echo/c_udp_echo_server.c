// A minimal epoll UDP echo server in C: the speed-of-light baseline of the UDP benchmarks.
//
//   c_udp_echo_server [--host 127.0.0.1] [--port 0]
//
// Prints `listening on HOST:PORT` on stdout, flushed, once bound (--port 0 picks an ephemeral
// port), sends every datagram back to its sender, and exits 0 on SIGTERM or SIGINT.
// Single-threaded, level-triggered, one socket: on each readiness event it does recvfrom and
// sendto, from and to one 64 KiB buffer, until recvfrom says EAGAIN or 64 datagrams have
// been echoed (the same bound as swift-asyncio's datagram transport, so that one wake-up
// costs the same number of syscalls in both). A datagram the socket will not take (EAGAIN)
// is dropped, as UDP may; the count of drops is printed on stderr at exit if not zero.
//
// Build: cc -O2 -o c_udp_echo_server c_udp_echo_server.c

#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PER_WAKEUP 64

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static char buffer[65536];

static void die(const char *what) {
    fprintf(stderr, "c_udp_echo_server: %s: %s\n", what, strerror(errno));
    exit(1);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc) goto usage;
        if (!strcmp(argv[i], "--host")) host = argv[i + 1];
        else if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else goto usage;
    }

    struct sigaction sa = {.sa_handler = on_signal};  // no SA_RESTART: epoll_wait returns EINTR
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICHOST | AI_PASSIVE}, *res;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc) { fprintf(stderr, "c_udp_echo_server: %s: %s\n", host, gai_strerror(rc)); return 2; }
    int fd = socket(res->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) die("bind");
    freeaddrinfo(res);

    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");

    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof bound;
    getsockname(fd, (struct sockaddr *)&bound, &bound_len);
    int actual = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                   : ((struct sockaddr_in *)&bound)->sin_port);
    printf("listening on %s:%d\n", host, actual);
    fflush(stdout);

    unsigned long long dropped = 0;
    struct epoll_event events[8];
    while (!stop) {
        int n = epoll_wait(epfd, events, 8, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int round = 0; round < MAX_PER_WAKEUP; round++) {
            struct sockaddr_storage from;
            socklen_t from_len = sizeof from;
            ssize_t got = recvfrom(fd, buffer, sizeof buffer, 0, (struct sockaddr *)&from, &from_len);
            if (got < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                continue;  // an ICMP error from an earlier sendto: nothing to do
            }
            ssize_t sent;
            do sent = sendto(fd, buffer, (size_t)got, 0, (struct sockaddr *)&from, from_len);
            while (sent < 0 && errno == EINTR);
            if (sent < 0) dropped++;
        }
    }
    if (dropped) fprintf(stderr, "c_udp_echo_server: dropped %llu datagrams\n", dropped);
    return 0;

usage:
    fputs("usage: c_udp_echo_server [--host H] [--port P]\n", stderr);
    return 2;
}
