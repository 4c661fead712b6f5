/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* events: publish-to-notified latency (a watcher process learns of a PUBLISH) against a pipe wake-up floor. */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "events.h"
#include "iomem.h"

#define EVENTS_NAME "bench-publish"

/*
 * The sender writes its start time into a shared page before it acts; the
 * receiver takes the time when it holds the notification and sends the
 * difference back on the ack pipe, which also paces the sender (one sample at
 * a time). CLOCK_MONOTONIC is the same clock in both processes.
 */
struct events_shared {
        volatile uint64_t t0;
};

struct events_ctx {
        struct events_shared *sh;
        int wake_w;   /* floor: the pipe the poller waits on */
        int ack_r;    /* latency back from the receiver */
        struct iomem_client *c;
        struct iomem_region *snap;
        struct stats *s;
};

static int events_read_u64(int fd, uint64_t *v)
{
        size_t done = 0;

        while (done < sizeof(*v)) {
                ssize_t k = read(fd, (char *)v + done, sizeof(*v) - done);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EPIPE;
                done += (size_t)k;
        }
        return 0;
}

static int events_write_u64(int fd, uint64_t v)
{
        ssize_t k;

        do
                k = write(fd, &v, sizeof(v));
        while (k < 0 && errno == EINTR);
        return k == (ssize_t)sizeof(v) ? 0 : -EPIPE;
}

/* The floor's receiver: poll the pipe, read the byte, report. */
static void events_poller(int wake_r, int ack_w, struct events_shared *sh)
{
        for (;;) {
                struct pollfd p = { .fd = wake_r, .events = POLLIN };
                char x;

                if (poll(&p, 1, -1) < 0 && errno != EINTR)
                        _exit(1);
                if (read(wake_r, &x, 1) != 1)
                        _exit(0);
                if (events_write_u64(ack_w, stats_now_ns() - sh->t0) < 0)
                        _exit(0);
        }
}

/* The watcher: its own connection, a watch on the name, one report per PUBLISHED. */
static void events_watcher(const char *socket, int ready_w, int ack_w, struct events_shared *sh)
{
        struct iomem_client *c = NULL;
        struct iomem_event ev;

        if (iomem_connect_flags(socket, IOMEM_CONNECT_EVENTS, &c) < 0 || iomem_watch(c, EVENTS_NAME, NULL) < 0)
                _exit(1);
        if (events_write_u64(ready_w, 0) < 0)
                _exit(1);
        for (;;) {
                if (iomem_next_event(c, &ev, -1) < 0)
                        _exit(0);
                /* the first PUBLISH makes the name: CREATED; every later one replaces it: PUBLISHED */
                if (ev.kind != IOMEM_EVENT_PUBLISHED && ev.kind != IOMEM_EVENT_CREATED)
                        continue;
                if (events_write_u64(ack_w, stats_now_ns() - sh->t0) < 0)
                        _exit(0);
        }
}

static int events_floor_op(void *userdata)
{
        struct events_ctx *x = userdata;
        uint64_t ns;
        int r;

        x->sh->t0 = stats_now_ns();
        if (write(x->wake_w, "x", 1) != 1)
                return -errno;
        r = events_read_u64(x->ack_r, &ns);
        if (r == 0)
                stats_add(x->s, ns);
        return r;
}

static int events_publish_only_op(void *userdata)
{
        struct events_ctx *x = userdata;

        return iomem_publish(x->c, EVENTS_NAME, x->snap, NULL, NULL);
}

static int events_publish_op(void *userdata)
{
        struct events_ctx *x = userdata;
        uint64_t ns;
        int r;

        x->sh->t0 = stats_now_ns();
        r = iomem_publish(x->c, EVENTS_NAME, x->snap, NULL, NULL);
        if (r == 0)
                r = events_read_u64(x->ack_r, &ns);
        if (r == 0)
                stats_add(x->s, ns);
        return r;
}

/*
 * Run @op for the window; the samples are the receiver's (runner_loop's own
 * timing of the whole op goes to a scratch stats). Return: 0; negative errno.
 */
static int events_measure(runner_op_fn op, struct events_ctx *x, const struct runner_opts *o, size_t cap,
                          const char *scenario, const char *desc, struct stats_result *res)
{
        struct runner_opts warm = { .seconds = 0, .max_ops = o->warmup ? o->warmup : 1 };
        struct stats s, scratch;
        double seconds;
        int r;

        r = stats_init(&s, cap);
        if (r < 0)
                return r;
        r = stats_init(&scratch, cap);
        if (r < 0) {
                stats_deinit(&s);
                return r;
        }
        /* warm up without keeping the receiver's samples */
        x->s = &scratch;
        for (uint64_t i = 0; i < warm.max_ops && r == 0; i++)
                r = op(x);
        x->s = &s;
        if (r == 0) {
                struct runner_opts window = *o;

                window.warmup = 0;
                scratch.n = 0;
                scratch.ops = 0;
                r = runner_loop(op, x, &window, &scratch, &seconds);
        }
        if (r == 0)
                stats_finish(&s, seconds, scenario, desc, res);
        stats_deinit(&s);
        stats_deinit(&scratch);
        return r;
}

static void events_reap(pid_t pid)
{
        if (pid <= 0)
                return;
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
}

int events_run(const char *socket, const struct runner_opts *o, size_t sample_cap,
               struct stats_result res[EVENTS_RESULTS])
{
        struct events_ctx x = { .wake_w = -1, .ack_r = -1 };
        int wake[2] = { -1, -1 }, ack[2] = { -1, -1 }, ready[2] = { -1, -1 };
        pid_t poller = -1, watcher = -1;
        uint64_t dummy;
        void *page;
        int r;

        page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED)
                return -errno;
        x.sh = page;

        /* the floor: a pipe write waking a poller in another process */
        if (pipe2(wake, O_CLOEXEC) < 0 || pipe2(ack, O_CLOEXEC) < 0) {
                r = -errno;
                goto out;
        }
        poller = fork();
        if (poller < 0) {
                r = -errno;
                goto out;
        }
        if (poller == 0) {
                close(wake[1]);
                close(ack[0]);
                events_poller(wake[0], ack[1], x.sh);
        }
        close(wake[0]);
        close(ack[1]);
        wake[0] = ack[1] = -1;
        x.wake_w = wake[1];
        x.ack_r = ack[0];
        r = events_measure(events_floor_op, &x, o, sample_cap, "floor-pipe-wake",
                           "floor: 1-byte pipe write wakes a poll()ing process, which takes the time", &res[0]);
        close(wake[1]);
        close(ack[0]);
        wake[1] = ack[0] = -1;
        events_reap(poller);
        poller = -1;
        if (r < 0)
                goto out;

        /* PUBLISH here, PUBLISHED in a watching process */
        r = iomem_connect_flags(socket, IOMEM_CONNECT_EVENTS, &x.c);
        if (r == 0)
                r = iomem_region_new_local(4096, IOMEM_BACKEND_MEMFD, 0, &x.snap);
        if (r == 0)
                r = iomem_region_seal(x.snap, IOMEM_SEAL_SHRINK | IOMEM_SEAL_GROW | IOMEM_SEAL_WRITE);
        if (r < 0)
                goto out;
        /* the PUBLISH round trip alone, nobody watching: what the notification adds is the difference */
        {
                struct stats s;
                double seconds;

                r = stats_init(&s, sample_cap);
                if (r == 0)
                        r = runner_loop(events_publish_only_op, &x, o, &s, &seconds);
                if (r == 0)
                        stats_finish(&s, seconds, "publish-rtt",
                                     "PUBLISH of a sealed 4 KiB memfd, round trip, nobody watching", &res[2]);
                stats_deinit(&s);
                if (r < 0)
                        goto out;
        }
        if (pipe2(ack, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0) {
                r = -errno;
                goto out;
        }
        watcher = fork();
        if (watcher < 0) {
                r = -errno;
                goto out;
        }
        if (watcher == 0) {
                close(ack[0]);
                close(ready[0]);
                events_watcher(socket, ready[1], ack[1], x.sh);
        }
        close(ack[1]);
        close(ready[1]);
        ack[1] = ready[1] = -1;
        r = events_read_u64(ready[0], &dummy);
        if (r < 0)
                goto out;
        x.ack_r = ack[0];
        r = events_measure(events_publish_op, &x, o, sample_cap, "publish-notified",
                           "PUBLISH of a sealed 4 KiB memfd until a watching process holds the PUBLISHED event",
                           &res[1]);
        if (r == 0)
                r = EVENTS_RESULTS;
out:
        for (int i = 0; i < 2; i++) {
                if (wake[i] >= 0)
                        close(wake[i]);
                if (ack[i] >= 0)
                        close(ack[i]);
                if (ready[i] >= 0)
                        close(ready[i]);
        }
        events_reap(watcher);
        events_reap(poller);
        iomem_region_free(x.snap);
        iomem_disconnect(x.c);
        munmap(page, 4096);
        return r;
}
