/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * reserver: RESERVE's fallocate(), and the ftruncate and F_ADD_SEALS of RESIZE and SEAL (which wait for a
 * holder's fallocate), on threads of their own, so that none of them holds the event loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "closer.h"
#include "log.h"
#include "reserver.h"

enum reserver_state {
        RESERVER_QUEUED,  /* in reserver_queue: no thread has it */
        RESERVER_RUNNING, /* a thread fallocates its fd */
        RESERVER_DONE,    /* in reserver_done: waits for reserver_collect() */
};

enum reserver_op {
        RESERVER_OP_RESERVE, /* fallocate offset..offset+len */
        RESERVER_OP_RESIZE,  /* reserver_resize(): ftruncate, with a RESERVEd region's fallocate */
        RESERVER_OP_SEAL,    /* backend_seal(), then the seals */
};

struct reserver_job {
        int fd; /* owned by the job until its completion is called */
        uint32_t uid; /* who asked: no two threads run jobs of one uid (reserver_pick()) */
        enum reserver_op op;
        uint64_t offset, len; /* RESIZE: from offset to len bytes */
        unsigned flags;       /* RESIZE: RESERVER_RESIZE_*; SEAL: the seals */
        bool ran;   /* its fallocate was called (set by its thread before it is DONE) */
        int result;
        enum reserver_state state;
        bool cancelled; /* the requester is gone: no completion, the reserver closes fd and frees */
        reserver_done_fn *done;
        void *arg;
        reserver_gone_fn *gone; /* cancelled: called once its fd is closed */
        void *gone_arg;
        struct reserver_job *next; /* in reserver_queue or reserver_done */
};

static pthread_mutex_t reserver_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reserver_cond = PTHREAD_COND_INITIALIZER;
static pthread_t reserver_threads[RESERVER_THREADS];
static unsigned reserver_nthreads;
static bool reserver_spawned; /* the threads were asked for once (reserver_available()) */
static bool reserver_stopping;
static int reserver_efd = -1; /* eventfd: completions are waiting */
/* in submission order; a thread takes the first one reserver_pick() allows, not always the head */
static struct reserver_job *reserver_queue, **reserver_queue_tail = &reserver_queue;
static struct reserver_job *reserver_running_jobs[RESERVER_THREADS]; /* each thread's RUNNING job, or NULL */
static struct reserver_job *reserver_done;   /* done, newest first (collect reverses it) */
static unsigned reserver_count;              /* queued or running */
static unsigned reserver_live;               /* allocated, not yet freed: each holds its fd (event loop's thread) */
/* test hook (IOMEMD_TEST_HOOKS): a thread holds each job while this file exists */
static char *reserver_gate;

/* Free @job and close its fd, if it still has it. Then a cancelled job's @gone. */
static void reserver_job_free(struct reserver_job *job)
{
        reserver_gone_fn *gone = job->gone;
        void *gone_arg = job->gone_arg;
        int result = job->ran ? job->result : -ECANCELED;

        /* on the loop's thread: the closer's threads close what may be the object's last reference */
        if (job->fd >= 0)
                closer_close(job->fd, CLOSER_NO_UID);
        free(job);
        reserver_live--;
        if (gone)
                gone(gone_arg, result);
}

/*
 * IOMEMD_TEST_HOOKS with IOMEMD_TEST_RESERVE_GATE=PATH: hold the job while
 * PATH@suffix exists (or until the reserver stops), so that a test sees a
 * job in flight for as long as it needs, without timing. Each job a thread
 * holds here adds a byte to PATH@suffix.taken first: a test knows that a job
 * is running (not queued) when that file has grown. @suffix "" is every
 * job's start; ".ahead" is a RESERVEd growth's point between its fallocate
 * and the ftruncate that makes it visible (reserver_resize()); ".ran" is
 * every job's end, its work done (the object changed) and not yet handed
 * to the event loop.
 */
static void reserver_wait_gate(const char *suffix)
{
        const struct timespec tick = { 0, 5 * 1000 * 1000 };
        char path[PATH_MAX], taken[PATH_MAX + 8];
        bool stopping;
        int fd;

        if (!reserver_gate || snprintf(path, sizeof(path), "%s%s", reserver_gate, suffix) >= (int)sizeof(path))
                return;
        if (snprintf(taken, sizeof(taken), "%s.taken", path) < (int)sizeof(taken)) {
                fd = open(taken, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
                if (fd >= 0) {
                        (void)!write(fd, "j", 1);
                        close(fd);
                }
        }
        for (;;) {
                pthread_mutex_lock(&reserver_lock);
                stopping = reserver_stopping;
                pthread_mutex_unlock(&reserver_lock);
                if (stopping || access(path, F_OK) < 0)
                        return;
                nanosleep(&tick, NULL);
        }
}

/* Return: true if @job was cancelled (read under the reserver's lock). */
static bool reserver_job_cancelled(struct reserver_job *job)
{
        bool cancelled;

        pthread_mutex_lock(&reserver_lock);
        cancelled = job->cancelled;
        pthread_mutex_unlock(&reserver_lock);
        return cancelled;
}

/*
 * A RESIZE's work, on a reserver thread: everything that takes the object's
 * inode lock (which a holder's fallocate may hold for seconds). A RESERVEd
 * growth (RESERVER_RESIZE_AHEAD, hugetlb too) is reserved past the end first,
 * and made visible only if the job is still wanted and the size is still the
 * one it grows from: no holder ever sees new bytes whose memory is not taken;
 * what it reserved goes back otherwise. Any other resize checks the size the
 * object has now, right before its ftruncate, with the event loop's rule
 * (conn_region_handle_resize()): with RESERVER_RESIZE_NO_SHRINK (a region
 * that is not RESIZABLE), never below it, since a holder may have grown it
 * (and mapped the new bytes) while the job waited. Return: 0 (the size is
 * now @job->len); a negative errno (-ECANCELED: not wanted any more; -EBUSY:
 * a holder changed a RESERVEd region's size meanwhile; -EPERM: it would
 * shrink a region that is not RESIZABLE, or a seal forbids it), the size
 * unchanged.
 */
static int reserver_resize(struct reserver_job *job, int fd)
{
        uint64_t from = job->offset, to = job->len;
        bool ahead = job->flags & RESERVER_RESIZE_AHEAD;
        struct stat st;
        int k = 0;

        if (ahead) {
                k = backend_reserve_ahead(fd, from, to - from);
                if (k == 0)
                        reserver_wait_gate(".ahead");
        }
        if (k == 0 && reserver_job_cancelled(job))
                k = -ECANCELED;
        if (k == 0 && fstat(fd, &st) < 0)
                k = -errno;
        if (k == 0 && ahead && (uint64_t)st.st_size != from)
                k = -EBUSY;
        if (k == 0 && !ahead && (job->flags & RESERVER_RESIZE_NO_SHRINK) && to < (uint64_t)st.st_size)
                k = -EPERM;
        if (k == 0 && ftruncate(fd, (off_t)to) < 0)
                k = -errno;
        if (k < 0 && ahead)
                (void)backend_drop_ahead(fd); /* a failed fallocate may have left some too */
        return k;
}

/* A SEAL's work, on a reserver thread. Return: the seals now, or a negative errno (backend_seal()'s). */
static int reserver_seal(struct reserver_job *job, int fd)
{
        int k;

        if (reserver_job_cancelled(job))
                return -ECANCELED;
        k = backend_seal(fd, job->flags);
        return k < 0 ? k : backend_get_seals(fd);
}

/*
 * The job a thread with nothing to do takes next (under the reserver's lock):
 * the first queued one whose uid has no job running on another thread
 * ("skip-ahead"). A job may wait for a holder's fallocate as long as that
 * holder likes, so one uid never runs on two threads at once: while it runs
 * on one, the other serves every other uid's jobs in their order, and a uid
 * with many jobs queued (at most one per connection: each requester is
 * parked until its reply) has them run one after the other. Return: the
 * link (&reserver_queue or a job's &next) that points to it, or NULL if
 * every queued job's uid is running (the thread then waits for a job to
 * end, which wakes it).
 */
static struct reserver_job **reserver_pick(void)
{
        struct reserver_job **p;
        unsigned i;

        for (p = &reserver_queue; *p; p = &(*p)->next) {
                for (i = 0; i < RESERVER_THREADS; i++) {
                        if (reserver_running_jobs[i] && reserver_running_jobs[i]->uid == (*p)->uid)
                                break;
                }
                if (i == RESERVER_THREADS)
                        return p;
        }
        return NULL;
}

/* Thread @arg (its index in reserver_running_jobs) of RESERVER_THREADS. */
static void *reserver_main(void *arg)
{
        unsigned self = (unsigned)(uintptr_t)arg;

        pthread_mutex_lock(&reserver_lock);
        for (;;) {
                struct reserver_job *job, **link = NULL;
                uint64_t one = 1;
                int fd;

                while (!reserver_stopping && !(link = reserver_pick()))
                        pthread_cond_wait(&reserver_cond, &reserver_lock);
                if (reserver_stopping)
                        break; /* queued jobs are abandoned by reserver_stop() */
                job = *link;
                *link = job->next;
                if (reserver_queue_tail == &job->next)
                        reserver_queue_tail = link;
                job->next = NULL;
                job->state = RESERVER_RUNNING;
                reserver_running_jobs[self] = job;
                fd = job->fd; /* stays open: only the completion, or the reserver after it, closes it */
                pthread_mutex_unlock(&reserver_lock);

                reserver_wait_gate("");
                /* only this thread touches result and ran now; the lock below publishes them */
                if (job->op == RESERVER_OP_RESIZE) {
                        job->result = reserver_resize(job, fd);
                } else if (job->op == RESERVER_OP_SEAL) {
                        job->result = reserver_seal(job, fd);
                } else {
                        job->result = backend_reserve_range(fd, job->offset, job->len);
                }
                job->ran = true;
                reserver_wait_gate(".ran");

                pthread_mutex_lock(&reserver_lock);
                reserver_running_jobs[self] = NULL;
                if (reserver_queue)
                        pthread_cond_broadcast(&reserver_cond); /* a job of this uid may wait for an idle thread */
                job->state = RESERVER_DONE;
                job->next = reserver_done;
                reserver_done = job;
                reserver_count--;
                /* a full counter (never, at 2^64 - 2) would only delay the wake-up to the next write */
                (void)!write(reserver_efd, &one, sizeof(one));
        }
        pthread_mutex_unlock(&reserver_lock);
        return NULL;
}

int reserver_start(void)
{
        if (reserver_efd >= 0)
                return 0;
        reserver_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (reserver_efd < 0)
                return -errno;
        if (getenv("IOMEMD_TEST_HOOKS") && getenv("IOMEMD_TEST_RESERVE_GATE")) {
                reserver_gate = strdup(getenv("IOMEMD_TEST_RESERVE_GATE"));
                log_warning("IOMEMD_TEST_RESERVE_GATE with IOMEMD_TEST_HOOKS set: reservations wait while %s exists",
                            reserver_gate ? reserver_gate : "(out of memory)");
        }
        reserver_stopping = false;
        reserver_spawned = false;
        return 0;
}

bool reserver_available(void)
{
        sigset_t all, old;
        int r = 0;

        if (reserver_nthreads || reserver_efd < 0 || reserver_spawned)
                return reserver_nthreads > 0;
        reserver_spawned = true; /* one attempt, as when the threads were started with the daemon */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old); /* signals stay with the event loop's thread */
        for (unsigned i = 0; i < RESERVER_THREADS; i++) {
                r = -pthread_create(&reserver_threads[i], NULL, reserver_main, (void *)(uintptr_t)i);
                if (r < 0)
                        break;
                reserver_nthreads++;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (reserver_nthreads == 0)
                log_warning("cannot start the reserver threads (%s): RESERVE's fallocate runs on the event loop",
                            strerror(-r));
        return reserver_nthreads > 0;
}

void reserver_stop(void)
{
        struct reserver_job *job, *next;

        if (reserver_efd < 0)
                return;
        pthread_mutex_lock(&reserver_lock);
        reserver_stopping = true;
        pthread_cond_broadcast(&reserver_cond);
        pthread_mutex_unlock(&reserver_lock);
        for (unsigned i = 0; i < reserver_nthreads; i++)
                pthread_join(reserver_threads[i], NULL); /* a running fallocate finishes first */
        reserver_nthreads = 0;
        /* no thread left: what is queued was never started, what is done was never collected */
        for (job = reserver_queue; job; job = next) {
                next = job->next;
                reserver_job_free(job);
        }
        for (job = reserver_done; job; job = next) {
                next = job->next;
                reserver_job_free(job);
        }
        reserver_queue = reserver_done = NULL;
        reserver_queue_tail = &reserver_queue;
        reserver_count = 0;
        close(reserver_efd);
        reserver_efd = -1;
        reserver_spawned = false;
        free(reserver_gate);
        reserver_gate = NULL;
}

bool reserver_running(void)
{
        return reserver_efd >= 0;
}

int reserver_fd(void)
{
        return reserver_efd;
}

/* Queue a job of @op on @fd (consumed, even on error) for @uid. Return: 0 with *jobp; -ENOMEM; -ESHUTDOWN. */
static int reserver_submit(int fd, uint32_t uid, enum reserver_op op, uint64_t offset, uint64_t len, unsigned flags,
                           reserver_done_fn *done, void *arg, struct reserver_job **jobp)
{
        struct reserver_job *job;

        if (!reserver_nthreads) {
                close(fd);
                return -ESHUTDOWN;
        }
        job = calloc(1, sizeof(*job));
        if (!job) {
                close(fd);
                return -ENOMEM;
        }
        reserver_live++;
        job->fd = fd;
        fd = -1; /* consumed: the job's */
        job->uid = uid;
        job->op = op;
        job->offset = offset;
        job->len = len;
        job->flags = flags;
        job->done = done;
        job->arg = arg;
        job->state = RESERVER_QUEUED;
        pthread_mutex_lock(&reserver_lock);
        *reserver_queue_tail = job;
        reserver_queue_tail = &job->next;
        reserver_count++;
        pthread_cond_signal(&reserver_cond);
        pthread_mutex_unlock(&reserver_lock);
        *jobp = job;
        return 0;
}

int reserver_submit_consume_fd(int fd, uint32_t uid, uint64_t offset, uint64_t len, reserver_done_fn *done, void *arg,
                               struct reserver_job **jobp)
{
        return reserver_submit(fd, uid, RESERVER_OP_RESERVE, offset, len, 0, done, arg, jobp);
}

int reserver_submit_resize_consume_fd(int fd, uint32_t uid, uint64_t from, uint64_t to, unsigned flags,
                                      reserver_done_fn *done, void *arg, struct reserver_job **jobp)
{
        return reserver_submit(fd, uid, RESERVER_OP_RESIZE, from, to, flags, done, arg, jobp);
}

int reserver_submit_seal_consume_fd(int fd, uint32_t uid, uint32_t seals, reserver_done_fn *done, void *arg,
                                    struct reserver_job **jobp)
{
        return reserver_submit(fd, uid, RESERVER_OP_SEAL, 0, 0, seals, done, arg, jobp);
}

void reserver_cancel(struct reserver_job *job, reserver_gone_fn *gone, void *arg)
{
        struct reserver_job **p;

        if (!job) {
                if (gone)
                        gone(arg, -ECANCELED);
                return;
        }
        pthread_mutex_lock(&reserver_lock);
        job->gone = gone; /* read on this thread only (reserver_job_free()) */
        job->gone_arg = arg;
        if (job->state == RESERVER_QUEUED) {
                /* no thread has it: out of the queue, its fd closed now (no fallocate can be using it) */
                for (p = &reserver_queue; *p != job; p = &(*p)->next)
                        ;
                *p = job->next;
                if (reserver_queue_tail == &job->next)
                        reserver_queue_tail = p;
                reserver_count--;
                pthread_mutex_unlock(&reserver_lock);
                reserver_job_free(job);
                return;
        }
        /* running (its thread uses the fd) or done (in reserver_done): reserver_collect() frees it */
        job->cancelled = true;
        pthread_mutex_unlock(&reserver_lock);
}

unsigned reserver_collect(void)
{
        struct reserver_job *done, *job, *next, *ordered = NULL;
        uint64_t n;
        unsigned called = 0;

        if (reserver_efd < 0)
                return 0;
        (void)!read(reserver_efd, &n, sizeof(n)); /* EAGAIN: nothing new, the list says the same */
        pthread_mutex_lock(&reserver_lock);
        done = reserver_done;
        reserver_done = NULL;
        pthread_mutex_unlock(&reserver_lock);
        for (job = done; job; job = next) { /* oldest first */
                next = job->next;
                job->next = ordered;
                ordered = job;
        }
        for (job = ordered; job; job = next) {
                int fd;

                next = job->next;
                /*
                 * cancelled is set on this thread only (reserver_cancel()), and a
                 * completion may cancel other jobs (a reply that drops a connection):
                 * read it now, not before the loop.
                 */
                if (!job->cancelled) {
                        fd = job->fd;
                        job->fd = -1; /* the completion's now */
                        job->done(job->arg, fd, job->result);
                        called++;
                }
                reserver_job_free(job);
        }
        return called;
}

unsigned reserver_jobs(void)
{
        return reserver_live;
}

unsigned reserver_pending(void)
{
        unsigned n;

        pthread_mutex_lock(&reserver_lock);
        n = reserver_count;
        pthread_mutex_unlock(&reserver_lock);
        return n;
}
