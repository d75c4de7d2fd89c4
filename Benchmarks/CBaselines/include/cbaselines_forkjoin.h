#ifndef SPINDLE_CBASELINES_FORKJOIN_H
#define SPINDLE_CBASELINES_FORKJOIN_H
// C baselines for the tasklet benchmarks (our own code): a persistent fork-join pthread pool
// whose idle threads spin briefly before parking (what OpenMP's active wait policy does), a
// sense-reversing spin barrier, and pthread_barrier_wait.
#include <stdint.h>

/// A persistent pool of `lanes - 1` threads; the calling thread is lane 0.
typedef struct cb_forkjoin_pool cb_forkjoin_pool;

/// Starts a pool for `lanes` lanes (2…64) whose waiters spin `spin_ns` before parking.
/// Returns NULL if `lanes` is out of range or a thread cannot start.
cb_forkjoin_pool *cb_forkjoin_create(int lanes, uint64_t spin_ns);

/// Runs `regions` parallel regions back to back: each forks every lane, runs an empty body on
/// all of them (lane 0 included) and joins. Returns the number of lane bodies run.
uint64_t cb_forkjoin_run_empty(cb_forkjoin_pool *pool, long regions);

/// Stops and joins the pool's threads and frees it.
void cb_forkjoin_destroy(cb_forkjoin_pool *pool);

/// Nanoseconds per round of a 2-thread sense-reversing spin barrier (`rounds` rounds, setup
/// excluded).
double cb_spin_barrier_roundtrip_ns(long rounds);

/// Nanoseconds per round of a 2-thread pthread_barrier_wait (`rounds` rounds, setup excluded).
double cb_pthread_barrier_roundtrip_ns(long rounds);

/// Sums `count` int32 values with `threads` pthreads (1…64), each taking one contiguous part
/// in 64 Ki-element chunks, and stores the total in `*total`. Returns the nanoseconds taken,
/// thread creation and joins included, or 0 if `threads` is out of range or a thread cannot
/// start. The hardware's ceiling for the tasklet sum kernel.
uint64_t cb_parallel_sum_ns(const int32_t *data, long count, int threads, int64_t *total);

#endif
