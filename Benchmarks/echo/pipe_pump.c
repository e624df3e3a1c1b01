// Pipe throughput driver: runs COMMAND with a pipe on its stdin and a pipe on its stdout,
// writes --bytes N bytes of a fixed pseudo-random pattern into the first (a writer thread),
// reads the second to EOF (the main thread), checks every byte, and reports how fast the
// bytes went through and how much CPU the command used.
//
//   pipe_pump --bytes N [--chunk 65536] [--read-size 131072] [--timeout 120] [--no-verify]
//             -- COMMAND [ARG...]
//
// Prints one line on stdout:
//
//   bytes=1073741824 seconds=0.812 mb_per_s=1322.3 child_cpu_us=790000 child_user_us=...
//   child_sys_us=... child_status=exit0 errors=0
//
// MB/s is 10^6 bytes per second, from the first write to EOF on the command's stdout.
// child_cpu_us is the command's user + system time (all its threads; from wait4), so
// child_cpu_us / (bytes / 2^20) is its CPU per MiB moved. The writer writes --chunk bytes per
// write(2) (64 KiB: a default pipe's capacity); the reader reads up to --read-size bytes per
// read(2) (128 KiB, what cat uses). The command must copy its input to its output unchanged:
// a wrong byte, missing or extra output, a command that exits non-zero or by a signal, or a
// run longer than --timeout seconds (the command is then killed) prints `pipe_pump: FAIL ...`
// on stderr and exits 1. If pipe_pump itself is killed, the command gets SIGKILL.
//
// Build: cc -O2 -pthread -o pipe_pump pipe_pump.c

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PATTERN_LEN 262147u  // prime: successive chunks start at different offsets
static unsigned char doubled[2 * PATTERN_LEN];

static uint64_t opt_bytes = 0;
static size_t opt_chunk = 65536, opt_read_size = 131072;
static double opt_timeout = 120;
static int opt_verify = 1;
static int to_child = -1;
static volatile pid_t child = -1;

static void fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("pipe_pump: FAIL ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    if (child > 0) kill(child, SIGKILL);
    exit(1);
}

static void on_alarm(int sig) {
    (void)sig;
    if (child > 0) kill(child, SIGKILL);
    static const char message[] = "pipe_pump: FAIL timeout: the command was killed\n";
    ssize_t ignored = write(2, message, sizeof message - 1);
    (void)ignored;
    _exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *writer(void *unused) {
    (void)unused;
    uint64_t written = 0;
    while (written < opt_bytes) {
        uint64_t left = opt_bytes - written;
        size_t n = left < opt_chunk ? (size_t)left : opt_chunk;
        ssize_t w = write(to_child, doubled + written % PATTERN_LEN, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            fail("write to the command's stdin: %s (after %llu bytes)", strerror(errno),
                 (unsigned long long)written);
        }
        written += (uint64_t)w;
    }
    close(to_child);
    return NULL;
}

static void usage(void) {
    fputs("usage: pipe_pump --bytes N [--chunk B] [--read-size B] [--timeout SEC] [--no-verify]"
          " -- COMMAND [ARG...]\n", stderr);
    exit(2);
}

int main(int argc, char **argv) {
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) { i++; break; }
        if (!strcmp(argv[i], "--no-verify")) { opt_verify = 0; continue; }
        if (i + 1 >= argc) usage();
        double v = strtod(argv[i + 1], NULL);
        if (v < 0) usage();
        if (!strcmp(argv[i], "--bytes")) opt_bytes = (uint64_t)v;
        else if (!strcmp(argv[i], "--chunk")) opt_chunk = (size_t)v;
        else if (!strcmp(argv[i], "--read-size")) opt_read_size = (size_t)v;
        else if (!strcmp(argv[i], "--timeout")) opt_timeout = v;
        else usage();
        i++;
    }
    if (i >= argc || opt_chunk == 0 || opt_chunk > PATTERN_LEN || opt_read_size == 0 ||
        opt_read_size > PATTERN_LEN)
        usage();

    uint64_t state = 0x9E3779B97F4A7C15ull;  // xorshift64*: the fixed pattern
    for (unsigned k = 0; k < PATTERN_LEN; k++) {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
        doubled[k] = doubled[k + PATTERN_LEN] = (unsigned char)((state * 0x2545F4914F6CDD1Dull) >> 56);
    }
    unsigned char *buffer = malloc(opt_read_size);
    if (!buffer) fail("out of memory");

    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) fail("pipe: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
    pid_t pid = fork();
    if (pid < 0) fail("fork: %s", strerror(errno));
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);  // pipe_pump killed: the command goes too
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0) _exit(126);
        execvp(argv[i], argv + i);
        fprintf(stderr, "pipe_pump: exec %s: %s\n", argv[i], strerror(errno));
        _exit(127);
    }
    child = pid;
    close(in[0]);
    close(out[1]);
    to_child = in[1];
    signal(SIGALRM, on_alarm);
    alarm((unsigned)(opt_timeout + 0.999));

    uint64_t start = now_ns();
    pthread_t thread;
    if (pthread_create(&thread, NULL, writer, NULL) != 0) fail("pthread_create");
    uint64_t received = 0;
    for (;;) {
        ssize_t n = read(out[0], buffer, opt_read_size);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("read from the command's stdout: %s", strerror(errno));
        }
        if (n == 0) break;
        if (received + (uint64_t)n > opt_bytes)
            fail("the command wrote %llu bytes or more; %llu were sent",
                 (unsigned long long)(received + (uint64_t)n), (unsigned long long)opt_bytes);
        if (opt_verify) {
            const unsigned char *want = doubled + received % PATTERN_LEN;
            if (memcmp(buffer, want, (size_t)n) != 0) {
                size_t k = 0;
                while (buffer[k] == want[k]) k++;
                fail("wrong byte at offset %llu: expected 0x%02x, got 0x%02x",
                     (unsigned long long)(received + k), want[k], buffer[k]);
            }
        }
        received += (uint64_t)n;
    }
    uint64_t end = now_ns();
    pthread_join(thread, NULL);
    int status;
    struct rusage usage;
    if (wait4(pid, &status, 0, &usage) < 0) fail("wait4: %s", strerror(errno));
    child = -1;
    alarm(0);
    if (received != opt_bytes)
        fail("the command wrote %llu bytes; %llu were sent", (unsigned long long)received,
             (unsigned long long)opt_bytes);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (WIFSIGNALED(status)) fail("the command was killed by signal %d", WTERMSIG(status));
        fail("the command exited %d", WEXITSTATUS(status));
    }
    double seconds = (double)(end - start) / 1e9;
    double user = usage.ru_utime.tv_sec * 1e6 + usage.ru_utime.tv_usec;
    double sys = usage.ru_stime.tv_sec * 1e6 + usage.ru_stime.tv_usec;
    printf("bytes=%llu seconds=%.3f mb_per_s=%.1f child_cpu_us=%.0f child_user_us=%.0f "
           "child_sys_us=%.0f child_status=exit0 errors=0\n",
           (unsigned long long)opt_bytes, seconds, (double)opt_bytes / seconds / 1e6, user + sys,
           user, sys);
    return 0;
}
