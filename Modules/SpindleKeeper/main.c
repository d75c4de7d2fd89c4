// spindle-keeper: the process-group keeper a host agent starts for every proc.
//
//   spindle-keeper --parent AGENT_PID -- PROGRAM ARGV0 [ARGS...]
//
// The keeper stays alive between the agent and the proc so that nothing the proc starts can
// outlive the agent, even when the agent is killed with SIGKILL:
//
//   agent ──uv_spawn──▶ keeper (own session; PR_SET_PDEATHSIG = SIGUSR1; child subreaper)
//                         └─fork─▶ proc (setsid: its own session and process group) ─▶ its children …
//
// - It writes one header line on stdout, "SPINDLE-KEEPER <keeper pid> <proc pid>", before the
//   proc runs, so the agent learns the proc's pid (the proc's own output follows on the same
//   pipe). The proc runs PROGRAM with ARGV0 as argv[0], the keeper's environment and stdio.
// - SIGTERM, SIGINT, SIGHUP, SIGQUIT and SIGUSR2 are forwarded to the proc's process group.
// - SIGUSR1 means "kill": SIGKILL to the group and to every remaining descendant.
// - When the agent dies (PR_SET_PDEATHSIG delivers SIGUSR1; a once-a-second getppid() check
//   covers the race before the prctl) the keeper kills everything the same way and exits.
// - When the proc exits, whatever it left behind (background children, daemons that left the
//   group with setsid and were re-parented to the keeper, its subreaper) is killed and reaped,
//   and the keeper exits the way the proc did: the same exit code, or the same signal.
// - A keeper that cannot start the proc exits 127 with the reason on stderr.
//
// Limits: Linux only for the guarantees (prctl); a keeper killed with SIGKILL itself cannot
// clean up, so the agent never sends it SIGKILL (it sends SIGUSR1).
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

static void say(const char *what, const char *detail) {
    dprintf(2, "spindle-keeper: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
}

/// Sends SIGKILL to every direct child (after the proc's death every surviving descendant is
/// re-parented to this subreaper, so repeating this until none is left reaches them all).
static void kill_children(void) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
    FILE *f = fopen(path, "r");
    if (!f) return;
    long pid;
    while (fscanf(f, "%ld", &pid) == 1) {
        if (pid > 0) kill((pid_t)pid, SIGKILL);
    }
    fclose(f);
}

static int proc_status = 0;
static int proc_done = 0;

/// Kills the proc's group and every descendant, and reaps them all.
static void kill_everything(pid_t group) {
    for (;;) {
        // The group id is the proc's pid, held until the proc is reaped; after that every
        // survivor is (a descendant of) a child of this subreaper and `kill_children` reaches
        // it, so a recycled pid is never signalled as a group.
        if (!proc_done) kill(-group, SIGKILL);
        kill_children();
        int status = 0;
        pid_t r = waitpid(-1, &status, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;   // ECHILD: nothing left
        }
        if (r == group && !proc_done) {
            proc_done = 1;
            proc_status = status;
        }
    }
}

/// Exits the way the proc did.
static void exit_like(int status) {
    if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        signal(sig, SIG_DFL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        sigprocmask(SIG_UNBLOCK, &one, NULL);
        kill(getpid(), sig);
        _exit(128 + sig);
    }
    _exit(1);
}

int main(int argc, char **argv) {
    pid_t parent = 0;
    int i = 1;
    while (i < argc && strcmp(argv[i], "--") != 0) {
        if (strcmp(argv[i], "--parent") == 0 && i + 1 < argc) {
            parent = (pid_t)atol(argv[i + 1]);
            i += 2;
        } else {
            say("unknown argument", argv[i]);
            return 127;
        }
    }
    // argv[i] is "--", then PROGRAM and ARGV0 at least.
    if (i + 2 >= argc) {
        say("usage", "spindle-keeper --parent PID -- PROGRAM ARGV0 [ARGS...]");
        return 127;
    }
    const char *program = argv[i + 1];
    char **proc_argv = &argv[i + 2];
    if (parent <= 0) parent = getppid();

    sigset_t handled, original;
    sigemptyset(&handled);
    int signals[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    for (size_t k = 0; k < sizeof signals / sizeof signals[0]; k++) sigaddset(&handled, signals[k]);
    sigprocmask(SIG_BLOCK, &handled, &original);

#ifdef __linux__
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    prctl(PR_SET_PDEATHSIG, SIGUSR1, 0, 0, 0);
#endif
    if (getppid() != parent) {
        say("the agent is gone", NULL);
        return 127;
    }

    // `grouped`: the child says it has its own session and group (so from the header on, a
    // signal to the group reaches it); `gate`: the keeper lets it run once the header is out.
    int gate[2], grouped[2];
    if (pipe2(gate, O_CLOEXEC) != 0 || pipe2(grouped, O_CLOEXEC) != 0) {
        say("cannot create a pipe", strerror(errno));
        return 127;
    }
    pid_t proc = fork();
    if (proc < 0) {
        say("cannot fork", strerror(errno));
        return 127;
    }
    if (proc == 0) {
        close(gate[1]);
        close(grouped[0]);
        setsid();
        while (write(grouped[1], "g", 1) < 0 && errno == EINTR) {}
        close(grouped[1]);
        char c;
        while (read(gate[0], &c, 1) < 0 && errno == EINTR) {}
        close(gate[0]);
        // Signals sent meanwhile stay pending until here, then act (default dispositions).
        sigprocmask(SIG_SETMASK, &original, NULL);
        execv(program, proc_argv);
        dprintf(2, "spindle-keeper: cannot run %s: %s\n", program, strerror(errno));
        _exit(127);
    }
    close(gate[0]);
    close(grouped[1]);
    char c;
    while (read(grouped[0], &c, 1) < 0 && errno == EINTR) {}
    close(grouped[0]);
    // The header reaches the pipe before the proc can write anything (it waits on `gate`).
    char header[96];
    int n = snprintf(header, sizeof header, "SPINDLE-KEEPER %d %d\n", (int)getpid(), (int)proc);
    ssize_t off = 0;
    while (off < n) {
        ssize_t w = write(1, header + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += w;
    }
    close(gate[1]);

    for (;;) {
        siginfo_t info;
        struct timespec second = {1, 0};
        int sig = sigtimedwait(&handled, &info, &second);
        if (sig < 0) {
            if (errno == EAGAIN && getppid() != parent) {
                kill_everything(proc);
                break;
            }
            continue;
        }
        switch (sig) {
        case SIGCHLD: {
            int status;
            pid_t r;
            while ((r = waitpid(-1, &status, WNOHANG)) > 0) {
                if (r == proc) {
                    proc_done = 1;
                    proc_status = status;
                }
            }
            break;
        }
        case SIGUSR1:
            kill_everything(proc);
            break;
        default:
            if (!proc_done) kill(-proc, sig);
            break;
        }
        if (proc_done) {
            kill_everything(proc);
            break;
        }
    }
    if (!proc_done) _exit(128 + SIGKILL);
    exit_like(proc_status);
    return 1;
}
