// The _GNU_SOURCE calls, kept out of the header (see CAsyncIOLinux.h).
#define _GNU_SOURCE 1

#include "CAsyncIOLinux.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <malloc.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

int casyncio_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
    return accept4(fd, addr, len, flags);
}

int casyncio_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

void casyncio_set_thread_name(const char *name) {
    char buf[16];
    strncpy(buf, name, sizeof(buf) - 1);
    buf[sizeof(buf) - 1] = 0;
    pthread_setname_np(pthread_self(), buf);
}

int casyncio_gettid(void) { return (int)syscall(SYS_gettid); }

int casyncio_malloc_trim(void) { return malloc_trim(0); }

// One write end per signal number. The handler only reads this table and calls write(2),
// both async-signal-safe.
#define CASYNCIO_NSIG 65
static _Atomic int signal_fds[CASYNCIO_NSIG];

static void casyncio_signal_handler(int signo) {
    int saved = errno;
    if (signo > 0 && signo < CASYNCIO_NSIG) {
        int fd = atomic_load(&signal_fds[signo]);
        if (fd > 0) {
            unsigned char byte = (unsigned char)signo;
            ssize_t ignored = write(fd, &byte, 1);
            (void)ignored;  // a full pipe already holds a wake-up; signals coalesce anyway
        }
    }
    errno = saved;
}

int casyncio_signal_max(void) { return CASYNCIO_NSIG - 1; }

int casyncio_signal_install(int signo, int fd) {
    if (signo <= 0 || signo >= CASYNCIO_NSIG) {
        errno = EINVAL;
        return -1;
    }
    atomic_store(&signal_fds[signo], fd);
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = casyncio_signal_handler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(signo, &action, NULL) != 0) {
        atomic_store(&signal_fds[signo], 0);
        return -1;
    }
    // The signal may have been blocked by whoever started us; make sure it is delivered.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    return 0;
}

int casyncio_signal_restore_default(int signo) {
    if (signo <= 0 || signo >= CASYNCIO_NSIG) {
        errno = EINVAL;
        return -1;
    }
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = SIG_DFL;
    sigemptyset(&action.sa_mask);
    int rc = sigaction(signo, &action, NULL);
    atomic_store(&signal_fds[signo], 0);
    return rc;
}

static __thread void *current_loop;

void *casyncio_current_loop(void) { return current_loop; }
void casyncio_set_current_loop(void *loop) { current_loop = loop; }

int casyncio_pidfd_open(int pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

extern char **environ;

int casyncio_spawn(int *pid, const char *path, char *const argv[], char *const envp[],
                   const int fds[3], const char *cwd) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) return rc;
    rc = posix_spawnattr_init(&attributes);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&actions);
        return rc;
    }
    for (int target = 0; target < 3 && rc == 0; target++) {
        int fd = fds[target];
        if (fd >= 0) {
            rc = posix_spawn_file_actions_adddup2(&actions, fd, target);
        } else if (fd == -2) {
            rc = posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_RDWR, 0);
        } else if (fd == -3 && target == 2) {
            rc = posix_spawn_file_actions_adddup2(&actions, 1, 2);
        }
    }
    if (rc == 0 && cwd != NULL) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 29))
        rc = posix_spawn_file_actions_addchdir_np(&actions, cwd);
#else
        rc = ENOSYS;
#endif
    }
    // The parent may ignore SIGPIPE or block signals (test runners do): the child starts clean.
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if (rc == 0) rc = posix_spawnattr_setsigmask(&attributes, &none);
    if (rc == 0) rc = posix_spawnattr_setsigdefault(&attributes, &all);
    if (rc == 0) rc = posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (rc == 0) rc = posix_spawnp(pid, path, &actions, &attributes, argv, envp != NULL ? envp : environ);
    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
    return rc;
}

int casyncio_wait_status(int status, int *code) {
    if (WIFEXITED(status)) {
        *code = WEXITSTATUS(status);
        return 1;
    }
    if (WIFSIGNALED(status)) {
        *code = WTERMSIG(status);
        return 2;
    }
    return 0;
}

_Static_assert(sizeof(struct casyncio_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr layout");

int casyncio_recvmmsg(int fd, struct casyncio_mmsghdr *messages, unsigned int count, int flags) {
    return recvmmsg(fd, (struct mmsghdr *)messages, count, flags, NULL);
}

int casyncio_sendmmsg(int fd, struct casyncio_mmsghdr *messages, unsigned int count, int flags) {
    return sendmmsg(fd, (struct mmsghdr *)messages, count, flags);
}

// MARK: - Passing file descriptors over Unix sockets

/// Room for the largest SCM_RIGHTS message, aligned for a cmsghdr.
union casyncio_fd_control {
    char buffer[CMSG_SPACE(sizeof(int) * 253)];
    struct cmsghdr align;
};

long casyncio_send_with_fds(int sock, const void *buf, unsigned long len, const int *fds, int nfds) {
    if (nfds < 0 || nfds > 253) { errno = EINVAL; return -1; }
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    union casyncio_fd_control control;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.buffer;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *header = CMSG_FIRSTHDR(&msg);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(header), fds, sizeof(int) * (size_t)nfds);
    }
    return (long)sendmsg(sock, &msg, MSG_NOSIGNAL);
}

long casyncio_recv_with_fds(int sock, void *buf, unsigned long len, int *fds, int maxfds, int *nfds, int *truncated) {
    *nfds = 0;
    *truncated = 0;
    if (maxfds < 0 || maxfds > 253) { errno = EINVAL; return -1; }
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    union casyncio_fd_control control;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (maxfds > 0) {
        msg.msg_control = control.buffer;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)maxfds);
    }
    ssize_t received = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (received < 0) return -1;
    if (msg.msg_flags & MSG_CTRUNC) *truncated = 1;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&msg); header; header = CMSG_NXTHDR(&msg, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((header->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(header) + sizeof(int) * (size_t)i, sizeof fd);
            if (*nfds < maxfds) {
                fds[(*nfds)++] = fd;
            } else {
                close(fd);   // cannot happen with our buffer size; never leak one
                *truncated = 1;
            }
        }
    }
    return (long)received;
}

int casyncio_peer_credentials(int sock, int *pid, unsigned *uid, unsigned *gid) {
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    *pid = credentials.pid;
    *uid = credentials.uid;
    *gid = credentials.gid;
    return 0;
}
