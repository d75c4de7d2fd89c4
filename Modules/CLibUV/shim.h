#ifndef SPINDLE_CLIBUV_SHIM_H
#define SPINDLE_CLIBUV_SHIM_H
// libuv as seen from Swift. Debian's libuv1-dev (1.44) provides uv.h and libuv.pc.
#include <uv.h>
#include <signal.h>
#include <unistd.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

// Small helpers that are awkward to express in Swift (C unions, enum flag arithmetic).

/// Makes stdio slot `c` a new pipe over `stream`; `child_reads` selects the direction.
static inline void spindle_stdio_pipe(uv_stdio_container_t *c, uv_stream_t *stream, int child_reads) {
    c->flags = (uv_stdio_flags)(UV_CREATE_PIPE | (child_reads ? UV_READABLE_PIPE : UV_WRITABLE_PIPE));
    c->data.stream = stream;
}

/// Makes stdio slot `c` inherit the parent's descriptor `fd`.
static inline void spindle_stdio_inherit(uv_stdio_container_t *c, int fd) {
    c->flags = UV_INHERIT_FD;
    c->data.fd = fd;
}

/// Makes stdio slot `c` point at /dev/null (libuv opens it for fds 0-2).
static inline void spindle_stdio_ignore(uv_stdio_container_t *c) {
    c->flags = UV_IGNORE;
    c->data.fd = -1;
}

/// Unblocks every signal on the calling thread. Threads inherit their creator's mask, and
/// Swift's cooperative threads block all signals; a loop thread must be able to take
/// process-directed signals (SIGCHLD, watched signals) for libuv to see them.
static inline void spindle_unblock_signals(void) {
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
}

/// Ignores SIGPIPE unless the program installed its own handler, so a write to a closed
/// socket or pipe fails with EPIPE instead of killing the process.
static inline void spindle_ignore_sigpipe(void) {
    struct sigaction current;
    if (sigaction(SIGPIPE, NULL, &current) == 0 && current.sa_handler == SIG_DFL) {
        signal(SIGPIPE, SIG_IGN);
    }
}

/// A close-on-exec duplicate of `fd` (so children never inherit it), or -errno.
static inline int spindle_dup_cloexec(int fd) {
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return copy >= 0 ? copy : -errno;
}

/// Sets an int socket option; 0 or -errno.
static inline int spindle_setsockopt_int(int fd, int level, int name, int value) {
    return setsockopt(fd, level, name, &value, sizeof value) == 0 ? 0 : -errno;
}

/// Reads an int socket option into `*value`; 0 or -errno.
static inline int spindle_getsockopt_int(int fd, int level, int name, int *value) {
    socklen_t length = sizeof *value;
    return getsockopt(fd, level, name, value, &length) == 0 ? 0 : -errno;
}

/// Socket option numbers, for Swift (some are macros Swift does not import).
static const int SPINDLE_SOL_SOCKET = SOL_SOCKET;
static const int SPINDLE_SO_KEEPALIVE = SO_KEEPALIVE;
static const int SPINDLE_SO_LINGER = SO_LINGER;
static const int SPINDLE_IPPROTO_TCP = IPPROTO_TCP;
static const int SPINDLE_TCP_KEEPIDLE = TCP_KEEPIDLE;
static const int SPINDLE_TCP_KEEPINTVL = TCP_KEEPINTVL;
static const int SPINDLE_TCP_KEEPCNT = TCP_KEEPCNT;
static const int SPINDLE_TCP_USER_TIMEOUT = TCP_USER_TIMEOUT;

/// A pidfd for child `pid` (close-on-exec), or -errno (-ENOSYS before Linux 5.3).
static inline int spindle_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd >= 0 ? (int)fd : -errno;
#else
    (void)pid;
    return -ENOSYS;
#endif
}

/// Sends `sig` to the process `pidfd` refers to; 0 or -errno (-ESRCH once it has exited,
/// even if its pid has been reused since).
static inline int spindle_pidfd_send_signal(int pidfd, int sig) {
#ifdef SYS_pidfd_send_signal
    return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) == 0 ? 0 : -errno;
#else
    (void)pidfd; (void)sig;
    return -ENOSYS;
#endif
}

/// Whether child `pid` is still ours and unreaped, without reaping it: 1 running, 0 exited
/// (a zombie: its pid cannot be reused yet), -errno otherwise (-ECHILD: reaped already, or
/// not our child).
static inline int spindle_child_state(pid_t pid) {
    siginfo_t info;
    info.si_pid = 0;
    for (;;) {
        if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0) {
            return info.si_pid == pid ? 0 : 1;
        }
        if (errno != EINTR) return -errno;
    }
}

#endif
