#ifndef SPINDLE_CLIBUV_SHIM_H
#define SPINDLE_CLIBUV_SHIM_H
// libuv as seen from Swift. Debian's libuv1-dev (1.44) provides uv.h and libuv.pc.
#include <uv.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <pthread.h>

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

/// The calling thread's id as an integer (pthread_t is an unsigned long on Linux).
static inline unsigned long spindle_thread_self(void) {
    return (unsigned long)pthread_self();
}

/// Names the calling thread (Linux keeps the first 15 bytes).
static inline void spindle_set_thread_name(const char *name) {
    prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
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

#endif
