// The tasklet sum kernel in plain C with pthreads: what the hardware allows for a
// memory-bound parallel sum, so the Spindle figure can be read against it.
#define _GNU_SOURCE
#include "cbaselines_forkjoin.h"

#include <pthread.h>
#include <time.h>

enum { SUM_CHUNK = 64 << 10, SUM_MAX_THREADS = 64 };

typedef struct {
    const int32_t *data;
    long lo, hi;
    int64_t total;
} sum_part;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// Not inlined into the thread body, like the Swift kernel's `sumChunk`, so both compilers
// see the same loop.
__attribute__((noinline)) static int64_t sum_chunk(const int32_t *p, long lo, long hi) {
    int64_t s = 0;
    for (long i = lo; i < hi; i++) s += p[i];
    return s;
}

static void *sum_thread(void *raw) {
    sum_part *part = raw;
    int64_t total = 0;
    for (long start = part->lo; start < part->hi; start += SUM_CHUNK) {
        long end = start + SUM_CHUNK < part->hi ? start + SUM_CHUNK : part->hi;
        total += sum_chunk(part->data, start, end);
    }
    part->total = total;
    return NULL;
}

uint64_t cb_parallel_sum_ns(const int32_t *data, long count, int threads, int64_t *total) {
    if (threads < 1 || threads > SUM_MAX_THREADS || count < 0) return 0;
    sum_part parts[SUM_MAX_THREADS];
    pthread_t handles[SUM_MAX_THREADS];
    long per = ((count / threads + SUM_CHUNK - 1) / SUM_CHUNK) * SUM_CHUNK;
    uint64_t t0 = now_ns();
    int started = 0;
    for (int i = 0; i < threads; i++) {
        long lo = (long)i * per < count ? (long)i * per : count;
        long hi = lo + per < count ? lo + per : count;
        parts[i] = (sum_part){ .data = data, .lo = lo, .hi = hi, .total = 0 };
        if (pthread_create(&handles[i], NULL, sum_thread, &parts[i]) != 0) break;
        started++;
    }
    int64_t sum = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(handles[i], NULL);
        sum += parts[i].total;
    }
    uint64_t elapsed = now_ns() - t0;
    if (started != threads) return 0;
    *total = sum;
    return elapsed == 0 ? 1 : elapsed;
}
