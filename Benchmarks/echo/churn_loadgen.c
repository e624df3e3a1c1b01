// Connection-churn load generator: N client threads, each in a loop of connect, one S-byte
// echo (every byte checked), close. Measures how many new connections per second an echo
// server takes, and the time of one whole cycle.
//
//   churn_loadgen --host H --port P [--clients N] [--size S]
//                 (--duration SEC | --cycles M) [--timeout SEC]
//
// Prints one line of `key=value` results on stdout:
//
//   clients=10 size=64 cycles=123456 seconds=5.000 conn_per_s=24691.2 p50_us=38.1
//   p99_us=61.0 max_us=1203.0 loadgen_cpu_us=4990000 errors=0
//
// A cycle is timed from socket() to the echo's last byte; close() follows. With --duration
// the threads start cycles until SEC have passed; with --cycles M exactly M cycles run in
// total. --timeout (default 120 s) bounds the run. A refused or failed connect, a byte that
// differs, a connection closed early, or the timeout prints `churn_loadgen: FAIL ...` on
// stderr and exits 1.
//
// The client closes first, so its side of each connection waits in TIME_WAIT; on loopback
// Linux reuses those ports (net.ipv4.tcp_tw_reuse = 2, the default), so a long run does not
// run out of ephemeral ports. Each thread uses its own source address (127.0.0.2, .3, ...)
// when the server is on 127.0.0.1, which spreads the four-tuples further.
//
// Build: cc -O2 -pthread -o churn_loadgen churn_loadgen.c

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZE 65536
#define MAX_CLIENTS 256

static void fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("churn_loadgen: FAIL ", stderr);
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

static struct sockaddr_in server;
static int spread_sources;  // server on 127.0.0.1: bind each thread to its own 127.0.0.x
static size_t size = 64;
static uint64_t deadline_ns;   // --duration: no new cycle after this
static uint64_t timeout_ns;    // the whole run fails after this
static atomic_long cycles_left = -1;  // --cycles: cycles not yet started (-1: by duration)

struct client {
    pthread_t thread;
    int index;
    uint64_t *samples;  // cycle times, ns
    size_t count, capacity;
};

static void record(struct client *c, uint64_t ns) {
    if (c->count == c->capacity) {
        c->capacity = c->capacity ? c->capacity * 2 : 65536;
        c->samples = realloc(c->samples, c->capacity * sizeof *c->samples);
        if (!c->samples) fail("out of memory");
    }
    c->samples[c->count++] = ns;
}

static int take_cycle(void) {
    if (atomic_load(&cycles_left) < 0) return now_ns() < deadline_ns;
    return atomic_fetch_sub(&cycles_left, 1) > 0;
}

static void *client_main(void *arg) {
    struct client *c = arg;
    unsigned char out[MAX_SIZE], in[MAX_SIZE];
    uint64_t cycle = 0;
    while (take_cycle()) {
        uint64_t start = now_ns();
        if (start > timeout_ns) fail("timeout (client %d, %llu cycles)", c->index, (unsigned long long)cycle);
        // Different bytes on every cycle of every client.
        for (size_t i = 0; i < size; i++) out[i] = (unsigned char)(i * 31 + cycle * 7 + (uint64_t)c->index * 131);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) fail("socket: %s", strerror(errno));
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (spread_sources) {
            struct sockaddr_in source = {.sin_family = AF_INET, .sin_port = 0};
            source.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)c->index);
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            if (bind(fd, (struct sockaddr *)&source, sizeof source) != 0) fail("bind 127.0.0.%d: %s", 2 + c->index, strerror(errno));
        }
        if (connect(fd, (struct sockaddr *)&server, sizeof server) != 0)
            fail("connect (client %d, cycle %llu): %s", c->index, (unsigned long long)cycle, strerror(errno));
        size_t sent = 0;
        while (sent < size) {
            ssize_t n = send(fd, out + sent, size - sent, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) fail("send (client %d, cycle %llu): %s", c->index, (unsigned long long)cycle, strerror(errno));
            sent += (size_t)n;
        }
        size_t got = 0;
        while (got < size) {
            ssize_t n = recv(fd, in + got, size - got, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) fail("recv (client %d, cycle %llu): %s", c->index, (unsigned long long)cycle, strerror(errno));
            if (n == 0) fail("server closed after %zu of %zu bytes (client %d, cycle %llu)", got, size, c->index, (unsigned long long)cycle);
            got += (size_t)n;
        }
        if (memcmp(in, out, size) != 0) fail("echo differs (client %d, cycle %llu)", c->index, (unsigned long long)cycle);
        record(c, now_ns() - start);
        close(fd);
        cycle++;
    }
    return NULL;
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0, clients = 10;
    double duration = 0, timeout = 120;
    long cycles = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) fail("%s needs a value", a);
        if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--clients")) clients = atoi(v);
        else if (!strcmp(a, "--size")) size = (size_t)atol(v);
        else if (!strcmp(a, "--duration")) duration = atof(v);
        else if (!strcmp(a, "--cycles")) cycles = atol(v);
        else if (!strcmp(a, "--timeout")) timeout = atof(v);
        else fail("unknown argument %s", a);
        i++;
    }
    if (port <= 0 || port > 65535) fail("--port 1-65535 is required");
    if (clients < 1 || clients > MAX_CLIENTS) fail("--clients must be 1-%d", MAX_CLIENTS);
    if (size < 1 || size > MAX_SIZE) fail("--size must be 1-%d", MAX_SIZE);
    if ((duration > 0) == (cycles > 0)) fail("give one of --duration SEC or --cycles M");
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &server.sin_addr) != 1) fail("--host must be an IPv4 address: %s", host);
    spread_sources = server.sin_addr.s_addr == htonl(0x7f000001u);

    uint64_t start = now_ns();
    deadline_ns = start + (uint64_t)(duration * 1e9);
    timeout_ns = start + (uint64_t)(timeout * 1e9);
    atomic_store(&cycles_left, cycles);
    struct client *all = calloc((size_t)clients, sizeof *all);
    if (!all) fail("out of memory");
    for (int i = 0; i < clients; i++) {
        all[i].index = i;
        if (pthread_create(&all[i].thread, NULL, client_main, &all[i]) != 0) fail("pthread_create");
    }
    size_t total = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(all[i].thread, NULL);
        total += all[i].count;
    }
    double seconds = (double)(now_ns() - start) / 1e9;
    uint64_t *merged = malloc((total ? total : 1) * sizeof *merged);
    if (!merged) fail("out of memory");
    size_t at = 0;
    for (int i = 0; i < clients; i++) {
        memcpy(merged + at, all[i].samples, all[i].count * sizeof *merged);
        at += all[i].count;
        free(all[i].samples);
    }
    qsort(merged, total, sizeof *merged, compare_u64);
    double p50 = total ? merged[total / 2] / 1e3 : 0;
    double p99 = total ? merged[(size_t)((double)total * 0.99)] / 1e3 : 0;
    double max = total ? merged[total - 1] / 1e3 : 0;
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    long long cpu_us = (long long)usage.ru_utime.tv_sec * 1000000 + usage.ru_utime.tv_usec +
                       (long long)usage.ru_stime.tv_sec * 1000000 + usage.ru_stime.tv_usec;
    printf("clients=%d size=%zu cycles=%zu seconds=%.3f conn_per_s=%.1f p50_us=%.1f p99_us=%.1f max_us=%.1f "
           "loadgen_cpu_us=%lld errors=0\n",
           clients, size, total, seconds, total / seconds, p50, p99, max, cpu_us);
    free(merged);
    free(all);
    return 0;
}
