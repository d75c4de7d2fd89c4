// A persistent fork-join pool in C: the OpenMP-style baseline for tasklet launches.
//
// Each worker has a mailbox (a ticket on its own cache line). A region bumps every ticket,
// runs lane 0's body on the caller, and waits for a join counter to reach zero. Every wait
// spins for `spin_ns` (reading the clock every 64 checks, yielding every 1024) and then parks
// on a condition variable, counting itself as a waiter so wakers skip the lock when nobody
// is parked. The same policy as SpindleTasklets, so the comparison measures the runtime.
#define _GNU_SOURCE
#include "cbaselines_forkjoin.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
    _Atomic uint32_t word;
    _Atomic int waiters;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
} __attribute__((aligned(128))) cb_mailbox;

struct cb_forkjoin_pool {
    int lanes;
    uint64_t spin_ns;
    cb_mailbox join;          // word = lanes still running the region
    cb_mailbox *slots;        // one per worker thread
    pthread_t *threads;
    _Atomic int stopping;
    _Atomic uint64_t bodies;  // bodies run (keeps the empty region observable)
};

typedef struct { cb_forkjoin_pool *pool; int index; } cb_worker_arg;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void mailbox_init(cb_mailbox *m) {
    atomic_init(&m->word, 0);
    atomic_init(&m->waiters, 0);
    pthread_mutex_init(&m->mutex, NULL);
    pthread_cond_init(&m->cond, NULL);
}

static void mailbox_wake(cb_mailbox *m) {
    if (atomic_load(&m->waiters) == 0) return;
    pthread_mutex_lock(&m->mutex);
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->mutex);
}

// Waits until m->word != avoid (or *stop is set): spin, then park.
static uint32_t mailbox_wait_change(cb_mailbox *m, uint32_t avoid, _Atomic int *stop, uint64_t spin_ns) {
    uint64_t deadline = 0;
    for (uint32_t i = 1;; i++) {
        uint32_t w = atomic_load(&m->word);
        if (w != avoid || (stop && atomic_load(stop))) return w;
        if ((i & 63) == 0) {
            uint64_t t = now_ns();
            if (deadline == 0) deadline = t + spin_ns;
            else if (t >= deadline) break;
            if ((i & 1023) == 0) sched_yield();
        }
    }
    pthread_mutex_lock(&m->mutex);
    atomic_fetch_add(&m->waiters, 1);
    uint32_t w;
    while ((w = atomic_load(&m->word)) == avoid && !(stop && atomic_load(stop))) {
        pthread_cond_wait(&m->cond, &m->mutex);
    }
    atomic_fetch_sub(&m->waiters, 1);
    pthread_mutex_unlock(&m->mutex);
    return w;
}

// Waits until m->word == 0: spin, then park.
static void mailbox_wait_zero(cb_mailbox *m, uint64_t spin_ns) {
    uint64_t deadline = 0;
    for (uint32_t i = 1;; i++) {
        if (atomic_load(&m->word) == 0) return;
        if ((i & 63) == 0) {
            uint64_t t = now_ns();
            if (deadline == 0) deadline = t + spin_ns;
            else if (t >= deadline) break;
            if ((i & 1023) == 0) sched_yield();
        }
    }
    pthread_mutex_lock(&m->mutex);
    atomic_fetch_add(&m->waiters, 1);
    while (atomic_load(&m->word) != 0) pthread_cond_wait(&m->cond, &m->mutex);
    atomic_fetch_sub(&m->waiters, 1);
    pthread_mutex_unlock(&m->mutex);
}

static void empty_body(cb_forkjoin_pool *pool) {
    atomic_fetch_add_explicit(&pool->bodies, 1, memory_order_relaxed);
}

static void *worker_main(void *raw) {
    cb_worker_arg arg = *(cb_worker_arg *)raw;
    free(raw);
    cb_forkjoin_pool *pool = arg.pool;
    cb_mailbox *slot = &pool->slots[arg.index];
    uint32_t seen = 0;
    for (;;) {
        seen = mailbox_wait_change(slot, seen, &pool->stopping, pool->spin_ns);
        if (atomic_load(&pool->stopping)) return NULL;
        empty_body(pool);
        if (atomic_fetch_sub(&pool->join.word, 1) == 1) mailbox_wake(&pool->join);
    }
}

cb_forkjoin_pool *cb_forkjoin_create(int lanes, uint64_t spin_ns) {
    if (lanes < 2 || lanes > 64) return NULL;
    cb_forkjoin_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->lanes = lanes;
    pool->spin_ns = spin_ns;
    mailbox_init(&pool->join);
    atomic_init(&pool->stopping, 0);
    atomic_init(&pool->bodies, 0);
    if (posix_memalign((void **)&pool->slots, 128, sizeof(cb_mailbox) * (size_t)(lanes - 1)) != 0) {
        free(pool);
        return NULL;
    }
    pool->threads = calloc((size_t)(lanes - 1), sizeof(pthread_t));
    for (int i = 0; i < lanes - 1; i++) mailbox_init(&pool->slots[i]);
    for (int i = 0; i < lanes - 1; i++) {
        cb_worker_arg *arg = malloc(sizeof *arg);
        arg->pool = pool;
        arg->index = i;
        if (pthread_create(&pool->threads[i], NULL, worker_main, arg) != 0) {
            free(arg);
            pool->lanes = i + 1;   // only join what started
            cb_forkjoin_destroy(pool);
            return NULL;
        }
    }
    return pool;
}

uint64_t cb_forkjoin_run_empty(cb_forkjoin_pool *pool, long regions) {
    int workers = pool->lanes - 1;
    for (long r = 0; r < regions; r++) {
        atomic_store(&pool->join.word, (uint32_t)workers);
        for (int i = 0; i < workers; i++) {
            atomic_fetch_add(&pool->slots[i].word, 1);
            mailbox_wake(&pool->slots[i]);
        }
        empty_body(pool);  // lane 0 takes part, as OpenMP's master thread does
        mailbox_wait_zero(&pool->join, pool->spin_ns);
    }
    return atomic_load(&pool->bodies);
}

void cb_forkjoin_destroy(cb_forkjoin_pool *pool) {
    if (!pool) return;
    atomic_store(&pool->stopping, 1);
    for (int i = 0; i < pool->lanes - 1; i++) mailbox_wake(&pool->slots[i]);
    for (int i = 0; i < pool->lanes - 1; i++) pthread_join(pool->threads[i], NULL);
    for (int i = 0; i < pool->lanes - 1; i++) {
        pthread_mutex_destroy(&pool->slots[i].mutex);
        pthread_cond_destroy(&pool->slots[i].cond);
    }
    pthread_mutex_destroy(&pool->join.mutex);
    pthread_cond_destroy(&pool->join.cond);
    free(pool->threads);
    free(pool->slots);
    free(pool);
}
