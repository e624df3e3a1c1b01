// The C side of run-sendfile-bench.sh: two reference file servers and the client.
//
//   sendfile_peer server-sendfile PORT FILE   one blocking sendfile(2) loop per connection
//   sendfile_peer server-copy PORT FILE       read(2) 256 KiB, write(2) it, per connection
//   sendfile_peer client PORT EXPECTED        reads one connection to EOF into a 1 MiB
//                                             buffer; prints "BYTES SECONDS"; exits 1 if
//                                             BYTES != EXPECTED
//
// The servers print "listening on 127.0.0.1:PORT" once listening, serve one connection at a
// time (the benchmark makes one at a time) and exit on SIGTERM.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(fd, 16) != 0) {
        perror("bind/listen");
        exit(1);
    }
    socklen_t length = sizeof address;
    getsockname(fd, (struct sockaddr *)&address, &length);
    printf("listening on 127.0.0.1:%d\n", ntohs(address.sin_port));
    fflush(stdout);
    return fd;
}

static void serve(int port, const char *path, int use_sendfile) {
    signal(SIGPIPE, SIG_IGN);
    int listener = listen_on(port);
    static char buffer[256 * 1024];
    for (;;) {
        int client = accept(listener, NULL, NULL);
        if (client < 0) continue;
        int file = open(path, O_RDONLY | O_CLOEXEC);
        if (file < 0) { perror("open"); exit(1); }
        if (use_sendfile) {
            struct stat info;
            fstat(file, &info);
            off_t offset = 0;
            while (offset < info.st_size) {
                ssize_t n = sendfile(client, file, &offset, info.st_size - offset);
                if (n <= 0 && errno != EINTR) break;
            }
        } else {
            ssize_t n;
            while ((n = read(file, buffer, sizeof buffer)) > 0) {
                char *p = buffer;
                while (n > 0) {
                    ssize_t w = write(client, p, n);
                    if (w < 0) { if (errno == EINTR) continue; goto done; }
                    p += w; n -= w;
                }
            }
        }
    done:
        close(file);
        close(client);
    }
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int client(int port, long long expected) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    double start = now();
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) { perror("connect"); return 1; }
    static char buffer[1 << 20];
    long long total = 0;
    for (;;) {
        ssize_t n = read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        total += n;
    }
    double seconds = now() - start;
    printf("%lld %.6f\n", total, seconds);
    return total == expected ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "server-sendfile") == 0) serve(atoi(argv[2]), argv[3], 1);
    if (argc == 4 && strcmp(argv[1], "server-copy") == 0) serve(atoi(argv[2]), argv[3], 0);
    if (argc == 4 && strcmp(argv[1], "client") == 0) return client(atoi(argv[2]), atoll(argv[3]));
    fprintf(stderr, "usage: sendfile_peer server-sendfile|server-copy PORT FILE | client PORT EXPECTED\n");
    return 2;
}
