// Echo load generator: N connections, each sending S-byte messages with D in flight, verifying
// that every echoed byte is the byte that was sent. Single-threaded, epoll, level-triggered.
//
//   loadgen (--host H --port P | --unix PATH) [--connections N] [--size S] [--pipeline D]
//           (--messages M | --duration SEC) [--timeout SEC] [--busy-poll]
//   loadgen (--host H --port P | --unix PATH) --idle N [--hold SEC]
//
// Load mode prints one line of `key=value` results on stdout:
//
//   connections=10 size=1024 pipeline=1 messages=123456 seconds=5.000 req_per_s=24691.2
//   mb_per_s=25.28 p50_us=38.1 p99_us=61.0 p999_us=95.2 max_us=1203.0 loadgen_cpu_us=4990000
//   errors=0
//
// (one line; loadgen_cpu_us is loadgen's own user + system time, connecting included). A message is timed from when it is queued for sending to when the last byte of
// its echo has been read; MB/s counts echoed payload bytes (10^6 bytes) per second, one
// direction. With --messages M the run starts exactly M messages in total (spread over the
// connections) and ends when all have come back; with --duration SEC it starts messages until
// SEC have passed and ends once those in flight have come back. Either way --timeout (default
// 120 s) bounds the whole run: past it loadgen fails. A byte that differs from the one sent, a
// connection closed or reset by the server, or a timeout prints `loadgen: FAIL ...` on stderr
// and exits 1.
//
// Idle mode opens N connections and sends nothing, prints `connected N` (flushed), and then
// waits: on SIGUSR1 it echoes 16 bytes on every connection (verified) and prints `pinged N`;
// on SIGTERM/SIGINT, or after --hold seconds (default 300), it closes them all and exits 0.
//
// Build: cc -O2 -o loadgen loadgen.c

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

// Every connection's byte stream is a window onto one pseudo-random pattern: stream byte p of
// connection c is pattern[(p + c * CONN_STRIDE) % PATTERN_LEN]. PATTERN_LEN is prime, so
// consecutive messages (and connections) carry different bytes, and `doubled` holds the
// pattern twice so any run of up to PATTERN_LEN bytes is contiguous for send and memcmp.
#define PATTERN_LEN 262147u
#define CONN_STRIDE 7919u
static unsigned char doubled[2 * PATTERN_LEN];

static void fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("loadgen: FAIL ", stderr);
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

// ---- latency histogram: log-linear, 64 sub-buckets per power of two (about 1.6% error) ----

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
    return (double)(sub << shift) + (double)(1ull << shift) / 2.0;  // middle of the bucket
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

// ---- connections ----

typedef struct {
    int fd;
    unsigned index;
    uint64_t sent;         // bytes written
    uint64_t queued;       // bytes the connection has been asked to send
    uint64_t received;     // echoed bytes read and verified
    uint64_t started;      // messages queued
    uint64_t completed;    // messages whose echo has fully arrived
    uint64_t *start_ns;    // ring of queue times, `pipeline` entries
    int want_out;          // EPOLLOUT registered
} Conn;

static const char *opt_host = NULL, *opt_unix = NULL;
static int opt_port = -1;
static unsigned opt_connections = 10, opt_pipeline = 1;
static uint64_t opt_size = 1024, opt_messages = 0;
static double opt_duration = 0, opt_timeout = 120, opt_hold = 300;
static int opt_busy_poll = 0;
static long opt_idle = -1;

static int epfd;
static Conn *conns;
static uint64_t messages_started, messages_completed;
static int accepting_new = 1;
static uint64_t deadline_ns;
static unsigned char *read_buffer;
#define READ_BUFFER_SIZE (256 * 1024)

static volatile sig_atomic_t got_stop, got_ping;
static void on_stop(int sig) { (void)sig; got_stop = 1; }
static void on_ping(int sig) { (void)sig; got_ping = 1; }

static int open_connection(void) {
    int fd;
    if (opt_unix) {
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        if (strlen(opt_unix) >= sizeof addr.sun_path) fail("unix path too long");
        strcpy(addr.sun_path, opt_unix);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) fail("socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
            fail("connect %s: %s", opt_unix, strerror(errno));
    } else {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST}, *res;
        char port[16];
        snprintf(port, sizeof port, "%d", opt_port);
        int rc = getaddrinfo(opt_host, port, &hints, &res);
        if (rc != 0) fail("getaddrinfo %s: %s", opt_host, gai_strerror(rc));
        fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) fail("socket: %s", strerror(errno));
        if (connect(fd, res->ai_addr, res->ai_addrlen) < 0)
            fail("connect %s:%d: %s", opt_host, opt_port, strerror(errno));
        freeaddrinfo(res);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static const unsigned char *stream_bytes(const Conn *c, uint64_t position) {
    return doubled + (position + (uint64_t)c->index * CONN_STRIDE) % PATTERN_LEN;
}

static void set_want_out(Conn *c, int want) {
    if (c->want_out == want) return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) fail("epoll_ctl: %s", strerror(errno));
    c->want_out = want;
}

static void flush_writes(Conn *c) {
    while (c->sent < c->queued) {
        uint64_t left = c->queued - c->sent;
        size_t chunk = left < PATTERN_LEN ? (size_t)left : PATTERN_LEN;
        ssize_t n = send(c->fd, stream_bytes(c, c->sent), chunk, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            fail("connection %u: send: %s (after %llu bytes sent)", c->index, strerror(errno),
                 (unsigned long long)c->sent);
        }
        c->sent += (uint64_t)n;
    }
    set_want_out(c, c->sent < c->queued);
}

static void start_messages(Conn *c, uint64_t now) {
    while (accepting_new && c->started - c->completed < opt_pipeline) {
        if (opt_messages && messages_started >= opt_messages) break;
        c->start_ns[c->started % opt_pipeline] = now;
        c->started++;
        c->queued += opt_size;
        messages_started++;
    }
}

// One recv per readiness event (epoll is level-triggered, so whatever is left comes back in the
// next round): with many connections and deep pipelines of large messages, looping here
// until the socket is dry would let one connection starve the others and show up as the
// tail latency of theirs.
static void read_echo(Conn *c) {
    for (int once = 1; once; once = 0) {
        ssize_t n = recv(c->fd, read_buffer, READ_BUFFER_SIZE, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            fail("connection %u: recv: %s (after %llu bytes echoed of %llu sent)", c->index,
                 strerror(errno), (unsigned long long)c->received, (unsigned long long)c->sent);
        }
        if (n == 0)
            fail("connection %u: closed by the server after %llu bytes echoed of %llu sent",
                 c->index, (unsigned long long)c->received, (unsigned long long)c->sent);
        if (c->received + (uint64_t)n > c->sent)
            fail("connection %u: %llu bytes echoed but only %llu sent", c->index,
                 (unsigned long long)(c->received + (uint64_t)n), (unsigned long long)c->sent);
        // Verify in pieces that stay inside the doubled pattern.
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

static double parse_number(const char *flag, const char *value) {
    char *end;
    double d = strtod(value, &end);
    if (!*value || *end || d < 0) {
        fprintf(stderr, "loadgen: bad value for %s: %s\n", flag, value);
        exit(2);
    }
    return d;
}

static void usage(void) {
    fputs("usage: loadgen (--host H --port P | --unix PATH) [--connections N] [--size S]\n"
          "               [--pipeline D] (--messages M | --duration SEC) [--timeout SEC]\n"
          "       loadgen (--host H --port P | --unix PATH) --idle N [--hold SEC]\n",
          stderr);
    exit(2);
}

static void run_idle(void) {
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    signal(SIGUSR1, on_ping);
    int *fds = calloc((size_t)opt_idle, sizeof *fds);
    if (!fds) fail("out of memory");
    for (long i = 0; i < opt_idle; i++) fds[i] = open_connection();
    printf("connected %ld\n", opt_idle);
    fflush(stdout);
    uint64_t end = now_ns() + (uint64_t)(opt_hold * 1e9);
    while (!got_stop && now_ns() < end) {
        if (got_ping) {
            got_ping = 0;
            static const char ping[16] = "ping-0123456789";
            for (long i = 0; i < opt_idle; i++)
                if (send(fds[i], ping, sizeof ping, MSG_NOSIGNAL) != (ssize_t)sizeof ping)
                    fail("idle connection %ld: send: %s", i, strerror(errno));
            uint64_t ping_deadline = now_ns() + 60ull * 1000000000u;
            for (long i = 0; i < opt_idle; i++) {
                char got[16];
                size_t have = 0;
                while (have < sizeof got) {
                    ssize_t n = recv(fds[i], got + have, sizeof got - have, 0);
                    if (n > 0) { have += (size_t)n; continue; }
                    if (n == 0) fail("idle connection %ld: closed by the server", i);
                    if (errno != EAGAIN && errno != EINTR) fail("idle connection %ld: recv: %s", i, strerror(errno));
                    if (now_ns() > ping_deadline) fail("idle connections: ping timed out at %ld", i);
                    usleep(200);
                }
                if (memcmp(got, ping, sizeof got) != 0) fail("idle connection %ld: wrong echo", i);
            }
            printf("pinged %ld\n", opt_idle);
            fflush(stdout);
        }
        usleep(20000);
    }
    for (long i = 0; i < opt_idle; i++) close(fds[i]);
    free(fds);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (!strcmp(flag, "--busy-poll")) { opt_busy_poll = 1; continue; }
        if (i + 1 >= argc) usage();
        const char *value = argv[++i];
        if (!strcmp(flag, "--host")) opt_host = value;
        else if (!strcmp(flag, "--port")) opt_port = (int)parse_number(flag, value);
        else if (!strcmp(flag, "--unix")) opt_unix = value;
        else if (!strcmp(flag, "--connections")) opt_connections = (unsigned)parse_number(flag, value);
        else if (!strcmp(flag, "--size")) opt_size = (uint64_t)parse_number(flag, value);
        else if (!strcmp(flag, "--pipeline")) opt_pipeline = (unsigned)parse_number(flag, value);
        else if (!strcmp(flag, "--messages")) opt_messages = (uint64_t)parse_number(flag, value);
        else if (!strcmp(flag, "--duration")) opt_duration = parse_number(flag, value);
        else if (!strcmp(flag, "--timeout")) opt_timeout = parse_number(flag, value);
        else if (!strcmp(flag, "--idle")) opt_idle = (long)parse_number(flag, value);
        else if (!strcmp(flag, "--hold")) opt_hold = parse_number(flag, value);
        else usage();
    }
    if (!opt_unix && (opt_port < 0 || opt_port > 65535)) usage();
    if (!opt_unix && !opt_host) opt_host = "127.0.0.1";
    signal(SIGPIPE, SIG_IGN);

    if (opt_idle >= 0) {
        run_idle();
        return 0;
    }
    if (opt_connections == 0 || opt_size == 0 || opt_pipeline == 0) usage();
    if ((opt_messages == 0) == (opt_duration == 0)) {
        fputs("loadgen: give exactly one of --messages M and --duration SEC\n", stderr);
        exit(2);
    }

    uint64_t state = 0x9E3779B97F4A7C15ull;  // xorshift64*: the fixed pattern
    for (unsigned i = 0; i < PATTERN_LEN; i++) {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
        doubled[i] = doubled[i + PATTERN_LEN] = (unsigned char)((state * 0x2545F4914F6CDD1Dull) >> 56);
    }
    read_buffer = malloc(READ_BUFFER_SIZE);
    conns = calloc(opt_connections, sizeof *conns);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!read_buffer || !conns || epfd < 0) fail("setup: %s", strerror(errno));
    for (unsigned i = 0; i < opt_connections; i++) {
        Conn *c = &conns[i];
        c->index = i;
        c->fd = open_connection();
        c->start_ns = calloc(opt_pipeline, sizeof *c->start_ns);
        if (!c->start_ns) fail("out of memory");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) fail("epoll_ctl: %s", strerror(errno));
    }

    uint64_t start = now_ns();
    uint64_t timeout_at = start + (uint64_t)(opt_timeout * 1e9);
    deadline_ns = start + (uint64_t)(opt_duration * 1e9);
    for (unsigned i = 0; i < opt_connections; i++) {
        start_messages(&conns[i], start);
        flush_writes(&conns[i]);
    }

    struct epoll_event events[256];
    uint64_t end = start;
    for (;;) {
        if (messages_completed == messages_started && (!accepting_new || (opt_messages && messages_started >= opt_messages))) {
            end = now_ns();
            break;
        }
        int n = epoll_wait(epfd, events, 256, opt_busy_poll ? 0 : 100);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            Conn *c = events[i].data.ptr;
            if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) read_echo(c);
            if (events[i].events & EPOLLOUT) flush_writes(c);
        }
        uint64_t now = now_ns();
        if (accepting_new && opt_duration > 0 && now >= deadline_ns) accepting_new = 0;
        if (now > timeout_at)
            fail("timeout after %.1f s: %llu of %llu messages echoed", opt_timeout,
                 (unsigned long long)messages_completed, (unsigned long long)messages_started);
    }

    double seconds = (double)(end - start) / 1e9;
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    double cpu_us = usage.ru_utime.tv_sec * 1e6 + usage.ru_utime.tv_usec + usage.ru_stime.tv_sec * 1e6 +
                    usage.ru_stime.tv_usec;
    printf("connections=%u size=%llu pipeline=%u messages=%llu seconds=%.3f req_per_s=%.1f "
           "mb_per_s=%.2f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f loadgen_cpu_us=%.0f "
           "errors=0\n",
           opt_connections, (unsigned long long)opt_size, opt_pipeline,
           (unsigned long long)messages_completed, seconds, messages_completed / seconds,
           (double)messages_completed * (double)opt_size / seconds / 1e6, percentile_us(0.50),
           percentile_us(0.99), percentile_us(0.999), latency_max_ns / 1000.0, cpu_us);
    fflush(stdout);
    for (unsigned i = 0; i < opt_connections; i++) close(conns[i].fd);
    return 0;
}
