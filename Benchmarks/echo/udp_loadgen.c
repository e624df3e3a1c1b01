// UDP echo load generator: N sockets, each sending S-byte datagrams with D in flight, checking
// that every echoed datagram is, byte for byte and length for length, one that socket sent and
// is still waiting for. Single-threaded, epoll, level-triggered; the UDP sibling of loadgen.c.
//
//   udp_loadgen --port P [--host 127.0.0.1] [--connections N] [--size S] [--pipeline D]
//               (--messages M | --duration SEC) [--timeout SEC] [--loss-timeout SEC]
//               [--allow-loss]
//
// Prints one line of `key=value` results on stdout, loadgen.c's line plus `lost=`:
//
//   connections=10 size=1024 pipeline=1 messages=123456 seconds=5.000 req_per_s=24691.2
//   mb_per_s=25.28 p50_us=38.1 p99_us=61.0 p999_us=95.2 max_us=1203.0 loadgen_cpu_us=4990000
//   errors=0 lost=0
//
// `connections` is the number of client sockets: each is connect()ed to the server, so the
// kernel hands it only the server's datagrams (and reports an ICMP port unreachable as
// ECONNREFUSED). A datagram is timed from when it is sent to when its echo is read; MB/s counts
// echoed payload bytes (10^6 bytes) per second, one direction. With --messages M the run sends
// exactly M datagrams in total and ends when all have come back; with --duration SEC it sends
// until SEC have passed and ends once those in flight have come back; --timeout (default 120 s)
// bounds the whole run.
//
// Every datagram starts with its socket's sequence number (8 bytes, little-endian); the rest is
// a window onto a fixed pseudo-random pattern chosen by socket and sequence number, so every
// datagram of the run is distinct. An echo must have exactly S bytes and equal a datagram of
// that socket that is still in flight; otherwise (wrong byte, wrong length, duplicate, a
// datagram never sent) loadgen prints `udp_loadgen: FAIL ...` on stderr and exits 1. A datagram
// not echoed within --loss-timeout (default 1 s) is lost: a FAIL too, unless --allow-loss, which
// counts it in `lost=` and sends another in its place. On loopback with a bounded number in
// flight, nothing should be lost.
//
// Build: cc -O2 -o udp_loadgen udp_loadgen.c

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
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

#define PATTERN_LEN 262147u  // prime: consecutive datagrams start at different offsets
#define MAX_DATAGRAM 65507u  // the largest UDP payload over IPv4
#define HEADER 8u
static unsigned char doubled[2 * PATTERN_LEN];

static void fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("udp_loadgen: FAIL ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// ---- latency histogram: 64 linear sub-buckets per power of two of nanoseconds ----

#define SUB_BITS 6
#define SUB_COUNT (1u << SUB_BITS)
#define BUCKETS (2 * SUB_COUNT + 64 * SUB_COUNT)
static uint64_t histogram[BUCKETS], histogram_count, latency_max_ns;

static unsigned bucket_of(uint64_t v) {
    if (v < 2 * SUB_COUNT) return (unsigned)v;
    unsigned msb = 63 - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - SUB_BITS;
    return 2 * SUB_COUNT + (shift - 1) * SUB_COUNT + (unsigned)((v >> shift) - SUB_COUNT);
}

static double bucket_middle(unsigned index) {
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
        if (seen > rank) return bucket_middle(i) / 1000.0;
    }
    return latency_max_ns / 1000.0;
}

// ---- sockets ----

typedef struct {
    uint64_t seq;
    uint64_t sent_ns;  // 0: the slot is free
} Slot;

typedef struct {
    int fd;
    unsigned index;
    uint64_t next_seq;
    unsigned to_send;  // slots filled but not yet sent (the socket said EAGAIN)
    unsigned in_flight;
    Slot *slots;       // `pipeline` of them
    int want_out;
} Sock;

static const char *opt_host = "127.0.0.1";
static int opt_port = -1;
static unsigned opt_connections = 10, opt_pipeline = 1;
static uint64_t opt_size = 1024, opt_messages = 0;
static double opt_duration = 0, opt_timeout = 120, opt_loss_timeout = 1;
static int opt_allow_loss = 0;

static int epfd;
static Sock *socks;
static uint64_t messages_started, messages_completed, messages_lost;
static int accepting_new = 1;
static uint64_t deadline_ns;
static unsigned char send_buffer[MAX_DATAGRAM], recv_buffer[MAX_DATAGRAM + 1];

// The payload (after the header) of datagram `seq` of socket `index`.
static const unsigned char *payload_of(unsigned index, uint64_t seq) {
    return doubled + (seq * 7919u + (uint64_t)index * 104729u) % PATTERN_LEN;
}

static void set_want_out(Sock *s, int want) {
    if (s->want_out == want) return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = s};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev) < 0) fail("epoll_ctl: %s", strerror(errno));
    s->want_out = want;
}

// Fills free slots (up to the pipeline depth) with new datagrams, then sends what is unsent.
// Unsent slots have sent_ns == 1 until they go out (then the send time).
static void pump(Sock *s, uint64_t now) {
    while (accepting_new && s->in_flight < opt_pipeline) {
        if (opt_messages && messages_started >= opt_messages) break;
        for (unsigned i = 0; i < opt_pipeline; i++) {
            if (s->slots[i].sent_ns == 0) {
                s->slots[i].seq = s->next_seq++;
                s->slots[i].sent_ns = 1;
                break;
            }
        }
        s->in_flight++;
        s->to_send++;
        messages_started++;
    }
    for (unsigned i = 0; i < opt_pipeline && s->to_send > 0; i++) {
        Slot *slot = &s->slots[i];
        if (slot->sent_ns != 1) continue;
        memcpy(send_buffer, &slot->seq, HEADER);  // little-endian on every Linux we run on
        memcpy(send_buffer + HEADER, payload_of(s->index, slot->seq), opt_size - HEADER);
        ssize_t n;
        do n = send(s->fd, send_buffer, opt_size, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) break;
            fail("socket %u: send: %s", s->index, strerror(errno));
        }
        if ((uint64_t)n != opt_size) fail("socket %u: short send: %zd of %llu", s->index, n, (unsigned long long)opt_size);
        slot->sent_ns = now > 1 ? now : 2;
        s->to_send--;
    }
    set_want_out(s, s->to_send > 0);
}

// One recv per readiness event, as in loadgen.c: no socket starves the others.
static void read_echo(Sock *s) {
    ssize_t n = recv(s->fd, recv_buffer, sizeof recv_buffer, MSG_TRUNC);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        fail("socket %u: recv: %s (%llu datagrams echoed)", s->index, strerror(errno),
             (unsigned long long)messages_completed);
    }
    if ((uint64_t)n != opt_size)
        fail("socket %u: echoed datagram of %zd bytes, sent %llu", s->index, n, (unsigned long long)opt_size);
    uint64_t seq;
    memcpy(&seq, recv_buffer, HEADER);
    Slot *slot = NULL;
    for (unsigned i = 0; i < opt_pipeline; i++)
        if (s->slots[i].sent_ns > 1 && s->slots[i].seq == seq) { slot = &s->slots[i]; break; }
    if (!slot)
        fail("socket %u: echo of datagram %llu, which is not in flight (next to send: %llu): a "
             "duplicate, a lost one's late echo, or garbage", s->index, (unsigned long long)seq,
             (unsigned long long)s->next_seq);
    const unsigned char *want = payload_of(s->index, seq);
    if (memcmp(recv_buffer + HEADER, want, opt_size - HEADER) != 0) {
        size_t i = 0;
        while (recv_buffer[HEADER + i] == want[i]) i++;
        fail("socket %u: datagram %llu: wrong byte at offset %zu: expected 0x%02x, got 0x%02x",
             s->index, (unsigned long long)seq, HEADER + i, want[i], recv_buffer[HEADER + i]);
    }
    uint64_t now = now_ns();
    record_latency(now - slot->sent_ns);
    slot->sent_ns = 0;
    s->in_flight--;
    messages_completed++;
    if (accepting_new && opt_duration > 0 && now >= deadline_ns) accepting_new = 0;
    pump(s, now);
}

// Slots in flight for longer than --loss-timeout: FAIL, or with --allow-loss freed and counted.
static void check_losses(uint64_t now) {
    uint64_t limit = (uint64_t)(opt_loss_timeout * 1e9);
    for (unsigned c = 0; c < opt_connections; c++) {
        Sock *s = &socks[c];
        int freed = 0;
        for (unsigned i = 0; i < opt_pipeline; i++) {
            Slot *slot = &s->slots[i];
            if (slot->sent_ns <= 1 || now - slot->sent_ns < limit) continue;
            if (!opt_allow_loss)
                fail("socket %u: datagram %llu not echoed within %.1f s (%llu of %llu echoed in all)",
                     s->index, (unsigned long long)slot->seq, opt_loss_timeout,
                     (unsigned long long)messages_completed, (unsigned long long)messages_started);
            slot->sent_ns = 0;
            s->in_flight--;
            messages_started--;  // replaced by a new one, which counts instead
            messages_lost++;
            freed = 1;
        }
        if (freed) pump(s, now);
    }
}

static double parse_number(const char *flag, const char *value) {
    char *end;
    double d = strtod(value, &end);
    if (!*value || *end || d < 0) {
        fprintf(stderr, "udp_loadgen: bad value for %s: %s\n", flag, value);
        exit(2);
    }
    return d;
}

static void usage(void) {
    fputs("usage: udp_loadgen --port P [--host H] [--connections N] [--size S] [--pipeline D]\n"
          "                   (--messages M | --duration SEC) [--timeout SEC] [--loss-timeout SEC]\n"
          "                   [--allow-loss]\n",
          stderr);
    exit(2);
}

static int open_socket(void) {
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICHOST}, *res;
    char port[16];
    snprintf(port, sizeof port, "%d", opt_port);
    int rc = getaddrinfo(opt_host, port, &hints, &res);
    if (rc != 0) fail("getaddrinfo %s: %s", opt_host, gai_strerror(rc));
    int fd = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) fail("socket: %s", strerror(errno));
    if (connect(fd, res->ai_addr, res->ai_addrlen) < 0)
        fail("connect %s:%d: %s", opt_host, opt_port, strerror(errno));
    freeaddrinfo(res);
    return fd;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (!strcmp(flag, "--allow-loss")) { opt_allow_loss = 1; continue; }
        if (i + 1 >= argc) usage();
        const char *value = argv[++i];
        if (!strcmp(flag, "--host")) opt_host = value;
        else if (!strcmp(flag, "--port")) opt_port = (int)parse_number(flag, value);
        else if (!strcmp(flag, "--connections")) opt_connections = (unsigned)parse_number(flag, value);
        else if (!strcmp(flag, "--size")) opt_size = (uint64_t)parse_number(flag, value);
        else if (!strcmp(flag, "--pipeline")) opt_pipeline = (unsigned)parse_number(flag, value);
        else if (!strcmp(flag, "--messages")) opt_messages = (uint64_t)parse_number(flag, value);
        else if (!strcmp(flag, "--duration")) opt_duration = parse_number(flag, value);
        else if (!strcmp(flag, "--timeout")) opt_timeout = parse_number(flag, value);
        else if (!strcmp(flag, "--loss-timeout")) opt_loss_timeout = parse_number(flag, value);
        else usage();
    }
    if (opt_port <= 0 || opt_port > 65535 || opt_connections == 0 || opt_pipeline == 0) usage();
    if (opt_size < HEADER || opt_size > MAX_DATAGRAM) {
        fprintf(stderr, "udp_loadgen: --size must be %u to %u\n", HEADER, MAX_DATAGRAM);
        exit(2);
    }
    if ((opt_messages == 0) == (opt_duration == 0)) {
        fputs("udp_loadgen: give exactly one of --messages M and --duration SEC\n", stderr);
        exit(2);
    }

    uint64_t state = 0x9E3779B97F4A7C15ull;  // xorshift64*: the fixed pattern
    for (unsigned i = 0; i < PATTERN_LEN; i++) {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
        doubled[i] = doubled[i + PATTERN_LEN] = (unsigned char)((state * 0x2545F4914F6CDD1Dull) >> 56);
    }
    socks = calloc(opt_connections, sizeof *socks);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!socks || epfd < 0) fail("setup: %s", strerror(errno));
    for (unsigned i = 0; i < opt_connections; i++) {
        Sock *s = &socks[i];
        s->index = i;
        s->fd = open_socket();
        s->slots = calloc(opt_pipeline, sizeof *s->slots);
        if (!s->slots) fail("out of memory");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev) < 0) fail("epoll_ctl: %s", strerror(errno));
    }

    uint64_t start = now_ns();
    uint64_t timeout_at = start + (uint64_t)(opt_timeout * 1e9);
    uint64_t next_loss_check = start + 100000000u;
    deadline_ns = start + (uint64_t)(opt_duration * 1e9);
    for (unsigned i = 0; i < opt_connections; i++) pump(&socks[i], start);

    struct epoll_event events[256];
    uint64_t end = start;
    for (;;) {
        if (messages_completed == messages_started &&
            (!accepting_new || (opt_messages && messages_started >= opt_messages))) {
            end = now_ns();
            break;
        }
        int n = epoll_wait(epfd, events, 256, 100);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            Sock *s = events[i].data.ptr;
            if (events[i].events & (EPOLLIN | EPOLLERR)) read_echo(s);
            if (events[i].events & EPOLLOUT) pump(s, now_ns());
        }
        uint64_t now = now_ns();
        if (accepting_new && opt_duration > 0 && now >= deadline_ns) accepting_new = 0;
        if (now >= next_loss_check) {
            check_losses(now);
            next_loss_check = now + 100000000u;
        }
        if (now > timeout_at)
            fail("timeout after %.1f s: %llu of %llu datagrams echoed", opt_timeout,
                 (unsigned long long)messages_completed, (unsigned long long)messages_started);
    }

    double seconds = (double)(end - start) / 1e9;
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    double cpu_us = usage.ru_utime.tv_sec * 1e6 + usage.ru_utime.tv_usec +
                    usage.ru_stime.tv_sec * 1e6 + usage.ru_stime.tv_usec;
    printf("connections=%u size=%llu pipeline=%u messages=%llu seconds=%.3f req_per_s=%.1f "
           "mb_per_s=%.2f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f loadgen_cpu_us=%.0f "
           "errors=0 lost=%llu\n",
           opt_connections, (unsigned long long)opt_size, opt_pipeline,
           (unsigned long long)messages_completed, seconds, messages_completed / seconds,
           (double)messages_completed * (double)opt_size / seconds / 1e6, percentile_us(0.50),
           percentile_us(0.99), percentile_us(0.999), latency_max_ns / 1000.0, cpu_us,
           (unsigned long long)messages_lost);
    fflush(stdout);
    for (unsigned i = 0; i < opt_connections; i++) close(socks[i].fd);
    return 0;
}
