// The cores this process may run on, for the tasklet pool's default lane count.
#define _GNU_SOURCE
#include "spindle_cycles.h"

#include <sched.h>
#include <unistd.h>

int spindle_active_cores(void) {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}
