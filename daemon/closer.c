/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* closer: closes fds that clients sent, on threads of its own, counted per uid. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "closer.h"
#include "log.h"
#include "transport.h"

struct closer_item {
        int fd;
        uint32_t uid;
};

struct closer_owner {
        uint32_t uid;
        unsigned pending;
};

static pthread_mutex_t closer_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t closer_cond = PTHREAD_COND_INITIALIZER;
static pthread_t closer_threads[CLOSER_THREADS];
static unsigned closer_nthreads;
static bool closer_armed; /* closer_start() was called: the next closer_close() starts the threads */
static bool closer_stopping;
/* FIFO of fds to close; grows (each entry is an open fd of ours, so RLIMIT_NOFILE bounds it) */
static struct closer_item *closer_queue;
static size_t closer_cap, closer_head, closer_count;
/* uids with fds queued or being closed (few: one per user that sent fds the daemon refused) */
static struct closer_owner *closer_owners;
static size_t closer_nowners, closer_owners_cap;
/*
 * The sum of the owners' pending counts, changed with the lock held but read
 * without it by closer_pending(): when it is 0, as it nearly always is, no
 * uid has anything pending and the event loop takes no lock on its hot path
 * (closer_pending() runs several times per request). A value read as it
 * changes is as good as one read just before or after with the lock: the
 * event loop only ever adds to it itself, so it never reads 0 while one of
 * its own fds is still queued.
 */
atomic_uint closer_total;

/* Return: @uid's entry, or NULL. Called with the lock held. */
static struct closer_owner *closer_owner_find(uint32_t uid)
{
        for (size_t i = 0; i < closer_nowners; i++)
                if (closer_owners[i].uid == uid)
                        return &closer_owners[i];
        return NULL;
}

/* Count one more pending close for @uid. Return: 0 or -ENOMEM. Called with the lock held. */
static int closer_owner_add(uint32_t uid)
{
        struct closer_owner *o = closer_owner_find(uid);

        if (!o) {
                if (closer_nowners == closer_owners_cap) {
                        size_t cap = closer_owners_cap ? 2 * closer_owners_cap : 16;
                        struct closer_owner *grown = realloc(closer_owners, cap * sizeof(*grown));

                        if (!grown)
                                return -ENOMEM;
                        closer_owners = grown;
                        closer_owners_cap = cap;
                }
                o = &closer_owners[closer_nowners++];
                *o = (struct closer_owner){ .uid = uid };
        }
        o->pending++;
        atomic_fetch_add_explicit(&closer_total, 1, memory_order_relaxed);
        return 0;
}

/* Called with the lock held. */
static void closer_owner_done(uint32_t uid)
{
        struct closer_owner *o = closer_owner_find(uid);

        if (!o)
                return;
        atomic_fetch_sub_explicit(&closer_total, 1, memory_order_relaxed);
        if (--o->pending == 0)
                *o = closer_owners[--closer_nowners];
}

/* Append to the queue. Return: 0 or -ENOMEM. Called with the lock held. */
static int closer_push(int fd, uint32_t uid)
{
        if (closer_count == closer_cap) {
                size_t cap = closer_cap ? 2 * closer_cap : 1024;
                struct closer_item *grown = malloc(cap * sizeof(*grown));

                if (!grown)
                        return -ENOMEM;
                for (size_t i = 0; i < closer_count; i++)
                        grown[i] = closer_queue[(closer_head + i) % closer_cap];
                free(closer_queue);
                closer_queue = grown;
                closer_cap = cap;
                closer_head = 0;
        }
        if (closer_owner_add(uid) < 0)
                return -ENOMEM;
        closer_queue[(closer_head + closer_count) % closer_cap] = (struct closer_item){ .fd = fd, .uid = uid };
        closer_count++;
        return 0;
}

static void *closer_main(void *arg)
{
        (void)arg;
        pthread_mutex_lock(&closer_lock);
        for (;;) {
                struct closer_item it;

                while (closer_count == 0 && !closer_stopping)
                        pthread_cond_wait(&closer_cond, &closer_lock);
                if (closer_count == 0)
                        break; /* stopping, and all is drained */
                it = closer_queue[closer_head];
                closer_head = (closer_head + 1) % closer_cap;
                closer_count--;
                pthread_mutex_unlock(&closer_lock);
                close(it.fd); /* may block (FUSE, lingering sockets): only this thread waits */
                pthread_mutex_lock(&closer_lock);
                closer_owner_done(it.uid);
        }
        pthread_mutex_unlock(&closer_lock);
        return NULL;
}

int closer_start(void)
{
        if (closer_nthreads || closer_armed)
                return 0;
        closer_stopping = false;
        closer_armed = true;
        transport_set_fd_closer(closer_close);
        return 0;
}

/* Start the threads, on the first close handed to them. Return: 0 if at least one runs, else negative errno. */
static int closer_spawn(void)
{
        sigset_t all, old;
        int r = 0;

        closer_armed = false; /* one attempt, as when the threads were started with the daemon */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old); /* signals stay with the event loop's thread */
        for (unsigned i = 0; i < CLOSER_THREADS; i++) {
                r = -pthread_create(&closer_threads[i], NULL, closer_main, NULL);
                if (r < 0)
                        break;
                closer_nthreads++;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (closer_nthreads > 0)
                return 0;
        log_warning("cannot start the closer threads (%s): clients' fds are closed inline", strerror(-r));
        transport_set_fd_closer(NULL);
        return r;
}

/* Free the queue and the per-uid counts, and count nothing pending; no fd in it is closed. */
static void closer_forget_queue(void)
{
        free(closer_queue);
        free(closer_owners);
        closer_queue = NULL;
        closer_owners = NULL;
        closer_cap = closer_head = closer_count = 0;
        closer_nowners = closer_owners_cap = 0;
        atomic_store_explicit(&closer_total, 0, memory_order_relaxed);
}

void closer_stop(void)
{
        closer_armed = false;
        if (!closer_nthreads) {
                transport_set_fd_closer(NULL);
                return;
        }
        transport_set_fd_closer(NULL);
        pthread_mutex_lock(&closer_lock);
        closer_stopping = true;
        pthread_cond_broadcast(&closer_cond);
        pthread_mutex_unlock(&closer_lock);
        for (unsigned i = 0; i < closer_nthreads; i++)
                pthread_join(closer_threads[i], NULL);
        closer_nthreads = 0;
        closer_forget_queue(); /* empty already: every close returned */
}

void closer_reset_after_fork(void)
{
        /*
         * fork() copied the parent's closer state but only the thread that
         * forked: closer_nthreads counts threads that do not exist here, so
         * closer_start() would return at once and closer_close() would queue
         * fds that nothing ever closes. One of the parent's threads may have
         * held the lock at the fork (here it would stay locked for good), and
         * the condition variable still counts the parent's waiters (a signal
         * could go to one of them and be lost): both are made anew.
         *
         * The queued entries are the parent's work, left unclosed: their fds
         * are the parent's to close; the child's copies of them are closed
         * with everything else it inherited (a keeper's close_range(), or
         * close-on-exec), after which their numbers may name new fds of the
         * child, so no entry may be acted on by number. The memory of the
         * queue and the owners is the child's copy, and is freed.
         */
        pthread_mutex_init(&closer_lock, NULL);
        pthread_cond_init(&closer_cond, NULL);
        closer_nthreads = 0;
        closer_armed = false; /* no threads start here unless the child calls closer_start() itself */
        closer_stopping = false;
        closer_forget_queue();
        transport_set_fd_closer(NULL); /* no threads here (yet): the transport closes inline */
}

void closer_close(int fd, uint32_t uid)
{
        int r;

        if (fd < 0)
                return;
        if (!closer_nthreads && (!closer_armed || closer_spawn() < 0)) {
                close(fd);
                return;
        }
        pthread_mutex_lock(&closer_lock);
        r = closer_push(fd, uid);
        if (r == 0)
                pthread_cond_signal(&closer_cond);
        pthread_mutex_unlock(&closer_lock);
        if (r < 0) {
                /* out of memory for one more queue entry: nothing else can be done with it */
                log_warning("closer: out of memory, closing an fd of uid %u inline", (unsigned)uid);
                close(fd);
        }
}

unsigned closer_pending_uid(uint32_t uid)
{
        const struct closer_owner *o;
        unsigned n;

        if (!closer_nthreads)
                return 0;
        pthread_mutex_lock(&closer_lock);
        o = closer_owner_find(uid);
        n = o ? o->pending : 0;
        pthread_mutex_unlock(&closer_lock);
        return n;
}
