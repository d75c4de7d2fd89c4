#ifndef SPINDLE_CYCLES_H
#define SPINDLE_CYCLES_H
// The CPU's cycle counter, for timing short intervals (tasklet lanes) more cheaply than
// clock_gettime: `rdtsc` costs ~15 ns on the project VM where the vDSO clock costs 27–40 ns.
#include <stdint.h>

/// The time-stamp counter, or 0 where there is none (see `spindle_cycles_usable`).
static inline uint64_t spindle_cycles(void) {
#if defined(__x86_64__)
    return __builtin_ia32_rdtsc();
#else
    return 0;
#endif
}

/// 1 when `spindle_cycles` can stand in for the monotonic clock: an x86-64 CPU whose TSC runs
/// at a constant rate through sleep states (CPUID "invariant TSC"), and a kernel that itself
/// uses the TSC as its clock source (so it found the counters in sync across cores). Else 0.
int spindle_cycles_usable(void);

/// The number of cores this process may run on (its CPU affinity; else the online cores), ≥ 1.
int spindle_active_cores(void);

#endif
