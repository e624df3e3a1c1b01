// CAsyncIOLinux: the Linux system calls and macros that Swift's Glibc module does not expose.
//
// Do not define _GNU_SOURCE here: in a header it changes declarations that every Swift file
// touching fd_set sees. The functions that need it are wrapped in shim.c instead.

#ifndef CASYNCIO_LINUX_H
#define CASYNCIO_LINUX_H

#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/types.h>

/// accept4(2) with SOCK_NONBLOCK / SOCK_CLOEXEC flags.
int casyncio_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);

/// pipe2(2).
int casyncio_pipe2(int fds[2], int flags);

/// Names the calling thread (at most 15 bytes are kept by the kernel).
void casyncio_set_thread_name(const char *name);

/// The kernel thread id of the calling thread.
int casyncio_gettid(void);

/// glibc's malloc_trim(0): gives free heap pages back to the kernel (not only the top of the
/// heap). Returns 1 if memory was released.
int casyncio_malloc_trim(void);

/// Installs a handler for `signo` that writes the signal number as one byte to `fd`
/// (non-blocking, async-signal-safe; errno is preserved). Returns 0 or -1 with errno set.
int casyncio_signal_install(int signo, int fd);

/// Restores the default disposition of `signo` and forgets its fd. Returns 0 or -1.
int casyncio_signal_restore_default(int signo);

/// The largest signal number (inclusive) that casyncio_signal_install accepts.
int casyncio_signal_max(void);

/// struct mmsghdr (a _GNU_SOURCE type, so declared here with the same layout).
struct casyncio_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};

/// recvmmsg(2) / sendmmsg(2): several datagrams in one system call.
int casyncio_recvmmsg(int fd, struct casyncio_mmsghdr *messages, unsigned int count, int flags);
int casyncio_sendmmsg(int fd, struct casyncio_mmsghdr *messages, unsigned int count, int flags);

/// pidfd_open(2): an fd that becomes readable when process `pid` exits; -1 with errno
/// (ENOSYS on kernels before 5.3).
int casyncio_pidfd_open(int pid);

/// Spawns `path` (searched in PATH if it has no slash) with `argv`/`envp`, its stdin, stdout
/// and stderr taken from `fds` (-1: inherit; -2: /dev/null; for fds[2], -3: same as stdout),
/// all signals reset to their default action and unblocked in the child, and optionally in
/// `cwd`. Returns 0 and sets *pid, or an errno value.
int casyncio_spawn(int *pid, const char *path, char *const argv[], char *const envp[],
                   const int fds[3], const char *cwd);

/// Decodes a wait status: sets *code to the exit code (returns 1) or the terminating signal
/// (returns 2); 0 if the process has not ended.
int casyncio_wait_status(int status, int *code);

/// Thread-local pointer to the event loop running on this thread (NULL if none).
void *casyncio_current_loop(void);
void casyncio_set_current_loop(void *loop);

/// A hint to the CPU inside a spin-wait loop (x86 `pause`, Arm `yield`): lets a sibling
/// hyperthread run and saves power while a thread polls an atomic for a few microseconds.
static inline void casyncio_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

/// Flags and constants that are macros or enums in glibc.
static inline uint32_t casyncio_epollin(void) { return EPOLLIN; }
static inline uint32_t casyncio_epollout(void) { return EPOLLOUT; }
static inline uint32_t casyncio_epollerr(void) { return EPOLLERR; }
static inline uint32_t casyncio_epollhup(void) { return EPOLLHUP; }
static inline uint32_t casyncio_epollrdhup(void) { return EPOLLRDHUP; }
static inline int casyncio_efd_nonblock_cloexec(void) { return EFD_NONBLOCK | EFD_CLOEXEC; }
static inline int casyncio_epoll_cloexec(void) { return EPOLL_CLOEXEC; }
static inline int casyncio_sock_stream(void) { return SOCK_STREAM; }
static inline int casyncio_msg_nosignal(void) { return MSG_NOSIGNAL; }
static inline int casyncio_sock_dgram(void) { return SOCK_DGRAM; }
static inline int casyncio_sock_nonblock_cloexec(void) { return SOCK_NONBLOCK | SOCK_CLOEXEC; }

/// The most descriptors one message may carry (the kernel's SCM_MAX_FD).
static inline int casyncio_max_passed_fds(void) { return 253; }

/// sendmsg(2) of `len` bytes (at least 1) with `nfds` descriptors (0 to 253) attached as
/// SCM_RIGHTS, MSG_NOSIGNAL. Returns the bytes sent, or -1 with errno.
long casyncio_send_with_fds(int sock, const void *buf, unsigned long len, const int *fds, int nfds);

/// recvmsg(2) of up to `len` bytes and up to `maxfds` descriptors (0 to 253), received
/// close-on-exec. Stores the descriptors in `fds` and their number in `*nfds`; `*truncated`
/// is set when more were sent than fit (the kernel closed the rest: MSG_CTRUNC). Returns the
/// bytes received, or -1 with errno.
long casyncio_recv_with_fds(int sock, void *buf, unsigned long len, int *fds, int maxfds, int *nfds, int *truncated);

/// SO_PEERCRED: the pid, uid and gid of the process at the other end of a connected Unix
/// socket (as it was when it connected). 0, or -1 with errno.
int casyncio_peer_credentials(int sock, int *pid, unsigned *uid, unsigned *gid);

#endif
