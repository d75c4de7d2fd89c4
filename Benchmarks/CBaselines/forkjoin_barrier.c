// Two-thread barrier baselines: a sense-reversing spin barrier and pthread_barrier_wait.
#define _GNU_SOURCE
#include "cbaselines_forkjoin.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct {
    _Atomic int count;
    _Atomic int sense;
    int parties;
} cb_spin_barrier;

static void spin_barrier_wait(cb_spin_barrier *b, int *local_sense) {
    *local_sense = !*local_sense;
    if (atomic_fetch_sub(&b->count, 1) == 1) {
        atomic_store_explicit(&b->count, b->parties, memory_order_relaxed);
        atomic_store(&b->sense, *local_sense);
    } else {
        while (atomic_load(&b->sense) != *local_sense) {}
    }
}

typedef struct {
    cb_spin_barrier *spin;
    pthread_barrier_t *blocking;
    long rounds;
} cb_barrier_job;

static void *spin_peer(void *raw) {
    cb_barrier_job *job = raw;
    int sense = 0;
    spin_barrier_wait(job->spin, &sense);  // start line
    for (long r = 0; r < job->rounds; r++) spin_barrier_wait(job->spin, &sense);
    return NULL;
}

double cb_spin_barrier_roundtrip_ns(long rounds) {
    cb_spin_barrier b;
    atomic_init(&b.count, 2);
    atomic_init(&b.sense, 0);
    b.parties = 2;
    cb_barrier_job job = { &b, NULL, rounds };
    pthread_t peer;
    if (pthread_create(&peer, NULL, spin_peer, &job) != 0) return -1;
    int sense = 0;
    spin_barrier_wait(&b, &sense);
    uint64_t t0 = now_ns();
    for (long r = 0; r < rounds; r++) spin_barrier_wait(&b, &sense);
    uint64_t t1 = now_ns();
    pthread_join(peer, NULL);
    return (double)(t1 - t0) / (double)rounds;
}

static void *blocking_peer(void *raw) {
    cb_barrier_job *job = raw;
    pthread_barrier_wait(job->blocking);
    for (long r = 0; r < job->rounds; r++) pthread_barrier_wait(job->blocking);
    return NULL;
}

double cb_pthread_barrier_roundtrip_ns(long rounds) {
    pthread_barrier_t b;
    if (pthread_barrier_init(&b, NULL, 2) != 0) return -1;
    cb_barrier_job job = { NULL, &b, rounds };
    pthread_t peer;
    if (pthread_create(&peer, NULL, blocking_peer, &job) != 0) {
        pthread_barrier_destroy(&b);
        return -1;
    }
    pthread_barrier_wait(&b);
    uint64_t t0 = now_ns();
    for (long r = 0; r < rounds; r++) pthread_barrier_wait(&b);
    uint64_t t1 = now_ns();
    pthread_join(peer, NULL);
    pthread_barrier_destroy(&b);
    return (double)(t1 - t0) / (double)rounds;
}
