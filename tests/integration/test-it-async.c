/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-it-async: the asynchronous client, driven by poll() and by a real libevent loop, and one blocking client
 * shared by 8 threads, against the real iomemd (issue 12). */

#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "fdutil.h"
#include "iomem.h"
#include "itutil.h"

#define WAIT_MS 20000 /* a bound so that a missing reply fails the test instead of hanging it */

static struct it_daemon daemon_;

static void setup(void)
{
        test_fd_setup();
}

static void teardown(void)
{
        it_daemon_stop(&daemon_);
        test_fd_teardown();
}

static struct iomem_client *connect_flags(uint32_t flags)
{
        return it_client_connect_flags(&daemon_, flags);
}

/* A sealed memfd of @size bytes, every u64 = @value. */
static struct iomem_region *snapshot(uint64_t size, uint64_t value)
{
        struct iomem_region *r = NULL;
        uint64_t *p;

        ck_assert_int_eq(iomem_region_new_local(size, IOMEM_BACKEND_MEMFD, 0, &r), 0);
        ck_assert_int_eq(iomem_region_map(r, 0, size, PROT_READ | PROT_WRITE, (void **)&p), 0);
        for (uint64_t i = 0; i < size / 8; i++)
                p[i] = value;
        ck_assert_int_eq(iomem_unmap(p, size), 0);
        ck_assert_int_eq(iomem_region_seal(r, IOMEM_SEAL_SHRINK | IOMEM_SEAL_GROW | IOMEM_SEAL_WRITE), 0);
        return r;
}

/* Return: the first u64 of @r, after checking every other equals it. */
static uint64_t region_value(struct iomem_region *r)
{
        uint64_t size = iomem_region_size(r), *p, v;

        ck_assert_int_eq(iomem_region_map(r, 0, size, PROT_READ, (void **)&p), 0);
        v = p[0];
        for (uint64_t i = 1; i < size / 8; i++)
                ck_assert_uint_eq(p[i], v);
        iomem_unmap(p, size);
        return v;
}

/* Run poll() + iomem_client_process() until *@flag is set (bounded by WAIT_MS of quiet). Return: nothing. */
static void loop_until(struct iomem_client *c, const int *flag)
{
        while (!*flag) {
                struct pollfd pfd = { .fd = iomem_client_fd(c) };
                int ev = iomem_client_get_events(c), t = iomem_client_get_timeout(c), n, r;

                ck_assert_int_gt(ev, 0);
                pfd.events = (short)ev;
                n = poll(&pfd, 1, t < 0 || t > WAIT_MS ? WAIT_MS : t);
                ck_assert_int_ge(n, 0);
                ck_assert_msg(n > 0 || t >= 0, "nothing came in %d ms", WAIT_MS);
                r = iomem_client_process(c);
                ck_assert_msg(r >= 0, "process: %s", iomem_strerror(r));
        }
}

/* ---- poll()-driven async requests ------------------------------------------ */

struct results {
        int done;
        int error;
        uint64_t id, size, generation;
        int order[8], norder;
};

static void on_open(struct iomem_client *c, int error, struct iomem_region *r, uint64_t gen, void *ud)
{
        struct results *res = ud;

        (void)c;
        res->error = error;
        res->generation = gen;
        if (r) {
                res->id = iomem_region_id(r);
                res->size = iomem_region_size(r);
                iomem_region_free(r);
        }
        res->done++;
}

static void on_stat(struct iomem_client *c, int error, const struct iomem_stat *st, void *ud)
{
        struct results *res = ud;

        (void)c;
        res->error = error;
        if (st) {
                res->id = st->id;
                res->size = st->size;
        }
        res->done++;
}

static int order_seen;

static void on_ping(struct iomem_client *c, int error, void *ud)
{
        struct results *res = ud;

        (void)c;
        res->error = error;
        res->order[res->norder++] = ++order_seen;
        res->done++;
}

/* OPEN, WAIT-OPEN, STAT, PING completing through callbacks, interleaved with blocking calls on the same client. */
START_TEST(test_async_requests)
{
        struct results open_ = { 0 }, wait_ = { 0 }, stat_ = { 0 }, missing = { 0 }, ping = { 0 };
        struct iomem_client *c, *other;
        struct iomem_region *r = NULL;
        uint64_t id_a, id_b;

        it_daemon_start(&daemon_, NULL);
        c = connect_flags(0);
        other = connect_flags(0);
        ck_assert_int_eq(iomem_create(c, "as/a", 4096, NULL, &r), 0);
        id_a = iomem_region_id(r);
        iomem_region_free(r);

        ck_assert_int_eq(iomem_open_async(c, "as/a", IOMEM_OPEN_RDONLY, 0, on_open, &open_), 0);
        ck_assert_int_eq(iomem_open_async(c, "as/b", 0, WAIT_MS, on_open, &wait_), 0);
        ck_assert_int_eq(iomem_stat_async(c, "as/a", on_stat, &stat_), 0);
        ck_assert_int_eq(iomem_open_async(c, "as/none", 0, 0, on_open, &missing), 0);
        /* never from the submitting call itself */
        ck_assert_int_eq(open_.done + wait_.done + stat_.done + missing.done, 0);
        /* a blocking call meanwhile reads the replies ahead of its own: they are kept for process() */
        ck_assert_int_eq(iomem_ping(c), 0);
        ck_assert_int_eq(iomem_client_get_timeout(c), 0);
        loop_until(c, &stat_.done);
        ck_assert_int_eq(open_.done, 1);
        ck_assert_int_eq(open_.error, 0);
        ck_assert_uint_eq(open_.id, id_a);
        ck_assert_int_eq(stat_.error, 0);
        ck_assert_uint_eq(stat_.id, id_a);
        ck_assert_uint_eq(stat_.size, 4096);
        ck_assert_int_eq(missing.done, 1);
        ck_assert_int_eq(missing.error, -ENOENT);
        ck_assert_int_eq(wait_.done, 0); /* as/b does not exist yet */

        ck_assert_int_eq(iomem_create(other, "as/b", 8192, NULL, &r), 0);
        id_b = iomem_region_id(r);
        iomem_region_free(r);
        loop_until(c, &wait_.done);
        ck_assert_int_eq(wait_.error, 0);
        ck_assert_uint_eq(wait_.id, id_b);
        ck_assert_uint_eq(wait_.size, 8192);

        /* completions come in the order the replies came */
        struct results p1 = { 0 }, p2 = { 0 };

        order_seen = 0;
        ck_assert_int_eq(iomem_ping_async(c, on_ping, &p1), 0);
        ck_assert_int_eq(iomem_ping_async(c, on_ping, &p2), 0);
        loop_until(c, &p2.done);
        ck_assert_int_eq(p1.error, 0);
        ck_assert_int_eq(p2.error, 0);
        ck_assert_int_eq(p1.order[0], 1);
        ck_assert_int_eq(p2.order[0], 2);
        (void)ping;

        /* argument checks fail at once, without a callback */
        ck_assert_int_eq(iomem_open_async(c, "x", 0x80, 0, on_open, &open_), -EINVAL);
        ck_assert_int_eq(iomem_open_async(c, "x", 0, 0, NULL, NULL), -EINVAL);
        ck_assert_int_eq(iomem_open_version_async(c, "x", 0, 0, 0, on_open, &open_), -EOPNOTSUPP);
        iomem_disconnect(other);
        iomem_disconnect(c);
}
END_TEST

/*
 * iomem_disconnect() with requests outstanding: those not answered yet (a WAIT-OPEN for a region that never comes,
 * sent behind the held-back HELLO of iomem_connect(), so that HELLO's reply may not be read either), those
 * answered but never processed, and a client that sent nothing at all. No callback runs, and nothing is left:
 * LeakSanitizer (ASan build) sees every entry freed, the fd fixture every received fd closed.
 */
static void on_open_never(struct iomem_client *c, int error, struct iomem_region *r, uint64_t gen, void *ud)
{
        (void)c, (void)error, (void)r, (void)gen, (void)ud;
        ck_abort_msg("a callback ran after iomem_disconnect()");
}

static void on_ping_never(struct iomem_client *c, int error, void *ud)
{
        (void)c, (void)error, (void)ud;
        ck_abort_msg("a callback ran after iomem_disconnect()");
}

START_TEST(test_async_disconnect_outstanding)
{
        struct iomem_client *held, *c, *idle;
        struct iomem_region *r = NULL;

        it_daemon_start(&daemon_, NULL);
        /* held back: HELLO goes out with the first request, its reply and the request's never read */
        held = it_client_connect(&daemon_);
        ck_assert_int_eq(iomem_open_async(held, "dc/never", 0, WAIT_MS, on_open_never, NULL), 0);
        ck_assert_int_eq(iomem_ping_async(held, on_ping_never, NULL), 0);
        /* handshaken: an OPEN whose reply (with its fd) is read by a blocking call, then never processed */
        c = connect_flags(0);
        ck_assert_int_eq(iomem_create(c, "dc/a", 4096, NULL, &r), 0);
        iomem_region_free(r);
        ck_assert_int_eq(iomem_open_async(c, "dc/a", IOMEM_OPEN_RDONLY, 0, on_open_never, NULL), 0);
        ck_assert_int_eq(iomem_open_async(c, "dc/never", 0, WAIT_MS, on_open_never, NULL), 0);
        ck_assert_int_eq(iomem_ping(c), 0); /* reads the OPEN reply ahead of its own: kept for process() */
        ck_assert_int_eq(iomem_client_get_timeout(c), 0);
        /* nothing sent at all */
        idle = it_client_connect(&daemon_);
        ck_assert_ptr_null(iomem_disconnect(held));
        ck_assert_ptr_null(iomem_disconnect(c));
        ck_assert_ptr_null(iomem_disconnect(idle));
        /* the daemon dropped their waits: a new client is served at once */
        c = connect_flags(0);
        ck_assert_int_eq(iomem_ping(c), 0);
        iomem_disconnect(c);
}
END_TEST

/* ---- iomem_disconnect() from a callback of iomem_client_process() -------------------------------------------- */

struct dcb {
        struct iomem_client *c;  /* disconnected by the first callback */
        struct iomem_client *c2; /* connected by it: it may take the freed client's memory */
        int first, second, c2_done;
};

static void dcb_on_c2_ping(struct iomem_client *c, int error, void *ud)
{
        struct dcb *d = ud;

        ck_assert_ptr_eq(c, d->c2);
        ck_assert_int_eq(error, 0);
        d->c2_done++;
}

static void dcb_on_first(struct iomem_client *c, int error, void *ud)
{
        struct dcb *d = ud;

        ck_assert_int_eq(error, 0);
        d->first++;
        d->c = iomem_disconnect(c);
        /* a new client, with a completion kept for its own process(): the old one's must not run it */
        d->c2 = connect_flags(0);
        ck_assert_int_eq(iomem_ping_async(d->c2, dcb_on_c2_ping, d), 0);
        ck_assert_int_eq(iomem_ping(d->c2), 0); /* reads the asynchronous reply ahead of its own, keeps it */
        ck_assert_int_eq(iomem_client_get_timeout(d->c2), 0);
}

static void dcb_on_second(struct iomem_client *c, int error, void *ud)
{
        struct dcb *d = ud;

        (void)c;
        (void)error;
        d->second++;
}

static void dcb_on_event(struct iomem_client *c, const struct iomem_event *ev, void *ud)
{
        struct dcb *d = ud;

        (void)ev;
        d->first++;
        d->c = iomem_disconnect(c);
        /* a nested process() of a disconnected client does nothing */
        ck_assert_int_eq(iomem_client_process(c), -ESHUTDOWN);
}

/*
 * A callback disconnects its client: iomem_client_process() stops calling callbacks, frees the client once it
 * returns and says -ESHUTDOWN. Before, it went on with the freed client (a use after free; with the memory taken
 * by a client connected in the callback, it ran that client's completions).
 */
START_TEST(test_async_disconnect_in_callback)
{
        struct dcb d = { 0 };
        struct iomem_client *w;
        struct iomem_region *r = NULL;
        int n;

        it_daemon_start(&daemon_, NULL);
        d.c = connect_flags(0);
        ck_assert_int_eq(iomem_ping_async(d.c, dcb_on_first, &d), 0);
        ck_assert_int_eq(iomem_ping_async(d.c, dcb_on_second, &d), 0);
        ck_assert_int_eq(iomem_ping(d.c), 0); /* both replies read and kept: one process() runs both */
        ck_assert_int_eq(iomem_client_process(d.c), -ESHUTDOWN);
        ck_assert_ptr_null(d.c);
        ck_assert_int_eq(d.first, 1);
        ck_assert_int_eq(d.second, 0); /* dropped with the client, as at any disconnect */
        ck_assert_int_eq(d.c2_done, 0);
        ck_assert_int_eq(iomem_client_process(d.c2), 1);
        ck_assert_int_eq(d.c2_done, 1);
        d.c2 = iomem_disconnect(d.c2);

        /* from the event callback, with events still kept behind it */
        memset(&d, 0, sizeof(d));
        w = connect_flags(IOMEM_CONNECT_EVENTS);
        iomem_client_set_event_cb(w, dcb_on_event, &d);
        ck_assert_int_eq(iomem_watch(w, "dcb/", NULL), 0);
        d.c = connect_flags(0);
        ck_assert_int_eq(iomem_create(d.c, "dcb/a", 4096, NULL, &r), 0);
        iomem_region_free(r);
        ck_assert_int_eq(iomem_delete(d.c, "dcb/a"), 0);
        d.c = iomem_disconnect(d.c);
        ck_assert_int_eq(iomem_ping(w), 0); /* reads the two events ahead of its reply */
        n = iomem_client_process(w);
        ck_assert_int_eq(n, -ESHUTDOWN);
        ck_assert_int_eq(d.first, 1);
}
END_TEST

struct lcb {
        struct iomem_client *c;
        int calls;
};

static int lcb_disconnect(struct lcb *l)
{
        l->calls++;
        l->c = iomem_disconnect(l->c);
        return 0;
}

static int lcb_on_entry(const struct iomem_list_entry *e, void *ud)
{
        (void)e;
        return lcb_disconnect(ud);
}

static int lcb_on_metric(const struct iomem_metric *m, void *ud)
{
        (void)m;
        return lcb_disconnect(ud);
}

static int lcb_on_entry_process(const struct iomem_list_entry *e, void *ud)
{
        struct lcb *l = ud;

        (void)e;
        l->calls++;
        /* a completion of the nested process() disconnects: the list call, the outermost, frees the client */
        ck_assert_int_eq(iomem_client_process(l->c), -ESHUTDOWN);
        return 0;
}

static void lcb_on_ping(struct iomem_client *c, int error, void *ud)
{
        (void)error;
        (void)ud;
        iomem_disconnect(c);
}

/*
 * iomem_list() and iomem_metrics() callbacks disconnect the client: the walk stops, the call frees the client and
 * says -ESHUTDOWN. Before, the walk went on reading entries from the freed client's input buffer and, between
 * pages, took its lock (a use after free: ASan reports it; without ASan, more callbacks ran and 0 came back).
 */
START_TEST(test_list_disconnect_in_callback)
{
        struct iomem_region *r = NULL;
        struct lcb l = { 0 };
        char name[32];

        it_daemon_start(&daemon_, NULL);
        l.c = connect_flags(0);
        for (int i = 0; i < 3; i++) {
                snprintf(name, sizeof(name), "lcb/%d", i);
                ck_assert_int_eq(iomem_create(l.c, name, 4096, NULL, &r), 0);
                r = iomem_region_free(r);
        }
        ck_assert_int_eq(iomem_list(l.c, "lcb/", lcb_on_entry, &l), -ESHUTDOWN);
        ck_assert_ptr_null(l.c);
        ck_assert_int_eq(l.calls, 1);

        l = (struct lcb){ .c = connect_flags(0) };
        ck_assert_int_eq(iomem_metrics(l.c, NULL, lcb_on_metric, &l), -ESHUTDOWN);
        ck_assert_ptr_null(l.c);
        ck_assert_int_eq(l.calls, 1);

        l = (struct lcb){ .c = connect_flags(0) };
        ck_assert_int_eq(iomem_ping_async(l.c, lcb_on_ping, NULL), 0);
        ck_assert_int_eq(iomem_ping(l.c), 0); /* the asynchronous reply read and kept for process() */
        ck_assert_int_eq(iomem_list(l.c, "lcb/", lcb_on_entry_process, &l), -ESHUTDOWN);
        ck_assert_int_eq(l.calls, 1);
}
END_TEST

/* The daemon goes away: outstanding requests complete with -ECONNRESET, process() says -ENOTCONN. */
START_TEST(test_async_daemon_gone)
{
        struct results wait_ = { 0 };
        struct iomem_client *c;
        int r;

        it_daemon_start(&daemon_, NULL);
        c = connect_flags(0);
        ck_assert_int_eq(iomem_open_async(c, "gone/never", 0, -1, on_open, &wait_), 0);
        ck_assert_int_eq(iomem_client_process(c), 0);
        it_daemon_kill(&daemon_, SIGKILL);
        while (!wait_.done) {
                struct pollfd pfd = { .fd = iomem_client_fd(c), .events = POLLIN };

                ck_assert_int_eq(poll(&pfd, 1, WAIT_MS), 1);
                r = iomem_client_process(c);
                ck_assert(r >= 0 || r == -ENOTCONN);
        }
        ck_assert_int_eq(wait_.error, -ECONNRESET);
        ck_assert_int_eq(iomem_client_process(c), -ENOTCONN);
        ck_assert_int_eq(iomem_ping_async(c, on_ping, &wait_), -ENOTCONN);
        /* a blocking call connects again (documented way back), and async works on the new fd */
        it_daemon_spawn(&daemon_, NULL);
        ck_assert_int_eq(iomem_ping(c), 0);
        wait_ = (struct results){ 0 };
        order_seen = 0;
        ck_assert_int_eq(iomem_ping_async(c, on_ping, &wait_), 0);
        loop_until(c, &wait_.done);
        ck_assert_int_eq(wait_.error, 0);
        iomem_disconnect(c);
}
END_TEST

/* ---- libevent --------------------------------------------------------------- */

#define LE_VERSIONS 5

struct le_state {
        struct event_base *base;
        struct event *io, *timer, *producer;
        struct iomem_client *c, *prod;
        int published;          /* versions the producer made */
        uint64_t seen[LE_VERSIONS + 1]; /* value read from each generation opened, by index of arrival */
        int nopened, nevents, npublished_events, finished;
        uint64_t last_gen;
        int error;
};

static void le_rearm(struct le_state *s);

static void le_on_open(struct iomem_client *c, int error, struct iomem_region *r, uint64_t gen, void *ud)
{
        struct le_state *s = ud;

        (void)c;
        if (error) {
                s->error = error;
                event_base_loopbreak(s->base);
                return;
        }
        /* the producer wrote the generation's ordinal into every u64: a torn or mixed version would show */
        s->seen[s->nopened++] = region_value(r);
        ck_assert_uint_gt(gen, s->last_gen);
        s->last_gen = gen;
        iomem_region_free(r);
        if (s->nopened == LE_VERSIONS) {
                s->finished = 1;
                event_base_loopbreak(s->base);
        }
}

static void le_on_event(struct iomem_client *c, const struct iomem_event *ev, void *ud)
{
        struct le_state *s = ud;
        int r;

        s->nevents++;
        /* the first version of a new name is CREATED, each later one PUBLISHED */
        if (ev->kind != IOMEM_EVENT_PUBLISHED && ev->kind != IOMEM_EVENT_CREATED)
                return;
        s->npublished_events += ev->kind == IOMEM_EVENT_PUBLISHED;
        ck_assert_str_eq(ev->name, "le/frame");
        /* open exactly the version announced (or a newer one) without blocking the loop */
        r = iomem_open_version_async(c, ev->name, IOMEM_OPEN_RDONLY, ev->generation - 1, 0, le_on_open, s);
        ck_assert_int_eq(r, 0);
}

static void le_on_io(evutil_socket_t fd, short what, void *ud)
{
        struct le_state *s = ud;
        int r;

        (void)fd;
        (void)what;
        r = iomem_client_process(s->c);
        if (r < 0) {
                s->error = r;
                event_base_loopbreak(s->base);
                return;
        }
        le_rearm(s);
}

/* Arm the io event for what the client wants and the timer for its deadline, as an integration would. */
static void le_rearm(struct le_state *s)
{
        int ev = iomem_client_get_events(s->c), t = iomem_client_get_timeout(s->c);
        struct timeval tv;

        ck_assert_int_gt(ev, 0);
        event_del(s->io);
        event_assign(s->io, s->base, iomem_client_fd(s->c),
                     EV_READ | ((ev & POLLOUT) ? EV_WRITE : 0), le_on_io, s);
        event_add(s->io, NULL);
        if (t >= 0) {
                tv = (struct timeval){ .tv_sec = t / 1000, .tv_usec = (t % 1000) * 1000 };
                evtimer_add(s->timer, &tv);
        }
}

static void le_on_produce(evutil_socket_t fd, short what, void *ud)
{
        struct le_state *s = ud;
        struct iomem_region *r;
        int k;

        (void)fd;
        (void)what;
        if (s->published >= LE_VERSIONS)
                return;
        /* one version at a time: the next once the consumer opened this one */
        if (s->nopened < s->published) {
                struct timeval tv = { 0, 2000 };

                evtimer_add(s->producer, &tv);
                return;
        }
        r = snapshot(4096 * 4, (uint64_t)s->published + 100);
        k = iomem_publish(s->prod, "le/frame", r, NULL, NULL);
        iomem_region_free(r);
        ck_assert_msg(k == 0, "publish: %s", iomem_strerror(k));
        s->published++;
        struct timeval tv = { 0, 1000 };
        evtimer_add(s->producer, &tv);
}

/* A real libevent loop: watch a prefix, react to PUBLISHED events by opening the version through async OPENV. */
START_TEST(test_libevent_consumer)
{
        struct le_state s = { 0 };
        struct timeval tv = { 0, 0 };
        uint32_t wid;

        it_daemon_start(&daemon_, NULL);
        s.c = connect_flags(IOMEM_CONNECT_EVENTS);
        s.prod = connect_flags(IOMEM_CONNECT_EVENTS);
        ck_assert_int_eq(iomem_watch(s.c, "le/", &wid), 0);
        iomem_client_set_event_cb(s.c, le_on_event, &s);
        s.base = event_base_new();
        ck_assert_ptr_nonnull(s.base);
        s.io = event_new(s.base, iomem_client_fd(s.c), EV_READ, le_on_io, &s);
        s.timer = evtimer_new(s.base, le_on_io, &s);
        s.producer = evtimer_new(s.base, le_on_produce, &s);
        le_rearm(&s);
        evtimer_add(s.producer, &tv);
        /* a bound so that a lost event fails the test instead of hanging it */
        struct timeval limit = { WAIT_MS / 1000, 0 };

        event_base_loopexit(s.base, &limit);
        event_base_dispatch(s.base);
        ck_assert_msg(s.error == 0, "error: %s", iomem_strerror(s.error));
        ck_assert_msg(s.finished, "opened %d of %d versions, %d events", s.nopened, LE_VERSIONS, s.nevents);
        for (int i = 0; i < LE_VERSIONS; i++)
                ck_assert_uint_eq(s.seen[i], (uint64_t)i + 100);
        ck_assert_int_eq(s.npublished_events, LE_VERSIONS - 1);
        event_free(s.io);
        event_free(s.timer);
        event_free(s.producer);
        event_base_free(s.base);
        iomem_disconnect(s.prod);
        iomem_disconnect(s.c);
}
END_TEST

/* ---- one blocking client, 8 threads ------------------------------------------ */

#define NTHREADS 8
#define ROUNDS 300

struct worker {
        pthread_t t;
        struct iomem_client *c;
        int index;
        uint64_t id;
        int bad; /* answers that were not this thread's */
        int errors, last_error;
};

static void *worker_main(void *arg)
{
        struct worker *w = arg;
        char name[32];

        snprintf(name, sizeof(name), "thr/%d", w->index);
        for (int i = 0; i < ROUNDS; i++) {
                struct iomem_region *r = NULL;
                struct iomem_stat st;
                int k;

                k = iomem_open(w->c, name, IOMEM_OPEN_RDONLY, 0, &r);
                if (k == 0) {
                        if (iomem_region_id(r) != w->id || iomem_region_size(r) != 4096u * (w->index + 1))
                                w->bad++;
                        iomem_region_free(r);
                } else {
                        w->errors++;
                        w->last_error = k;
                }
                k = iomem_stat(w->c, name, &st);
                if (k == 0) {
                        if (st.id != w->id || st.size != 4096u * (w->index + 1))
                                w->bad++;
                } else {
                        w->errors++;
                        w->last_error = k;
                }
                k = iomem_ping(w->c);
                if (k != 0) {
                        w->errors++;
                        w->last_error = k;
                }
        }
        return NULL;
}

START_TEST(test_threads_share_blocking_client)
{
        struct worker w[NTHREADS];
        struct iomem_client *c;

        it_daemon_start(&daemon_, NULL);
        c = connect_flags(IOMEM_CONNECT_EVENTS);
        /* events arriving meanwhile must not disturb the routing */
        ck_assert_int_eq(iomem_watch(c, "thr/", NULL), 0);
        for (int i = 0; i < NTHREADS; i++) {
                struct iomem_region *r = NULL;
                char name[32];

                snprintf(name, sizeof(name), "thr/%d", i);
                ck_assert_int_eq(iomem_create(c, name, 4096u * (i + 1), NULL, &r), 0);
                w[i] = (struct worker){ .c = c, .index = i, .id = iomem_region_id(r) };
                iomem_region_free(r);
        }
        for (int i = 0; i < NTHREADS; i++)
                ck_assert_int_eq(pthread_create(&w[i].t, NULL, worker_main, &w[i]), 0);
        for (int i = 0; i < NTHREADS; i++) {
                ck_assert_int_eq(pthread_join(w[i].t, NULL), 0);
                ck_assert_msg(w[i].errors == 0, "thread %d: %d errors, last %s", i, w[i].errors,
                              iomem_strerror(w[i].last_error));
                ck_assert_msg(w[i].bad == 0, "thread %d got %d answers of others", i, w[i].bad);
        }
        /* the 8 CREATED events were kept, in order, and nothing else */
        for (int i = 0; i < NTHREADS; i++) {
                struct iomem_event ev;
                char name[32];

                snprintf(name, sizeof(name), "thr/%d", i);
                ck_assert_int_eq(iomem_next_event(c, &ev, 0), 0);
                ck_assert_int_eq(ev.kind, IOMEM_EVENT_CREATED);
                ck_assert_str_eq(ev.name, name);
        }
        ck_assert_int_eq(iomem_ping(c), 0);
        struct iomem_event ev;

        ck_assert_int_eq(iomem_next_event(c, &ev, 0), -EAGAIN);
        iomem_disconnect(c);
}
END_TEST

/*
 * A process that runs one thread skips the client's mutex (client_lock(): __libc_single_threaded); a callback,
 * run with the lock let go, may start threads that use the same client while iomem_client_process() goes on: the
 * lock is then taken for real from the next client_lock() on, and let go by the unlock that pairs with it. A lock
 * left held (or never taken) by the caller that skipped it would hang the threads' blocking calls (bounded here)
 * or mix their replies up (each checks its own).
 */
#define SPAWNED 4

struct spawner {
        struct iomem_client *c;
        pthread_t t[SPAWNED];
        int started, done, r[SPAWNED], finished;
        pthread_mutex_t m;
};

struct spawned {
        struct spawner *s;
        int i;
};

static struct spawned spawned_[SPAWNED];

static void *spawned_main(void *arg)
{
        struct spawned *x = arg;
        struct iomem_region *reg = NULL;
        int r = 0;

        for (int k = 0; k < 50 && r == 0; k++) {
                r = iomem_ping(x->s->c);
                if (r == 0)
                        r = iomem_open(x->s->c, "st/r", 0, 0, &reg);
                if (r == 0 && iomem_region_size(reg) != 4096)
                        r = -EBADMSG;
                reg = iomem_region_free(reg);
        }
        pthread_mutex_lock(&x->s->m);
        x->s->r[x->i] = r;
        x->s->finished++;
        pthread_mutex_unlock(&x->s->m);
        return NULL;
}

static void on_ping_spawn(struct iomem_client *c, int error, void *ud)
{
        struct spawner *s = ud;

        (void)c;
        ck_assert_int_eq(error, 0);
        for (int i = 0; i < SPAWNED; i++) {
                spawned_[i] = (struct spawned){ .s = s, .i = i };
                ck_assert_int_eq(pthread_create(&s->t[i], NULL, spawned_main, &spawned_[i]), 0);
        }
        s->started = 1;
        s->done = 1;
}

START_TEST(test_threads_started_by_callback)
{
        struct spawner s = { .m = PTHREAD_MUTEX_INITIALIZER };
        struct iomem_region *reg = NULL;
        int finished = 0;

        it_daemon_start(&daemon_, NULL);
        /* check forks each test: one thread until the callback starts more (unless CK_FORK=no) */
        s.c = connect_flags(0);
        ck_assert_int_eq(iomem_create(s.c, "st/r", 4096, NULL, &reg), 0);
        reg = iomem_region_free(reg);
        ck_assert_int_eq(iomem_ping_async(s.c, on_ping_spawn, &s), 0);
        loop_until(s.c, &s.done);
        ck_assert(s.started);
        /* the caller goes on with the same client while the threads run */
        for (int k = 0; k < 50; k++) {
                ck_assert_int_eq(iomem_ping(s.c), 0);
                ck_assert_int_eq(iomem_client_process(s.c), 0);
        }
        for (int waited = 0; finished < SPAWNED; waited += 10) {
                ck_assert_msg(waited < WAIT_MS, "%d of %d threads still blocked after %d ms", SPAWNED - finished,
                              SPAWNED, WAIT_MS);
                poll(NULL, 0, 10);
                pthread_mutex_lock(&s.m);
                finished = s.finished;
                pthread_mutex_unlock(&s.m);
        }
        for (int i = 0; i < SPAWNED; i++) {
                ck_assert_int_eq(pthread_join(s.t[i], NULL), 0);
                ck_assert_msg(s.r[i] == 0, "thread %d: %s", i, iomem_strerror(s.r[i]));
        }
        iomem_disconnect(s.c);
}
END_TEST

/*
 * As above, but the threads start in the first of many callbacks of one iomem_client_process() call: the caller
 * then completes the rest, calling client_lock() again after each callback, while the threads already read the
 * socket and route replies (to their own calls and to the caller's queued opens). A caller that kept skipping the
 * lock for the rest of that call (the process was single-threaded when it began) would walk and change the
 * completion queue and the transport unlocked, under the threads' feet: lost or mixed-up replies, a hang (bounded
 * here), or a report from helgrind, drd or ASan.
 */
#define MID_OPENS 64

struct mid {
        struct spawner s;
        int completed, bad, submitted;
        int all_done;
};

static void on_open_mid(struct iomem_client *c, int error, struct iomem_region *region, uint64_t gen, void *ud)
{
        struct mid *m = ud;

        (void)gen;
        if (error != 0 || !region || iomem_region_size(region) != 4096)
                m->bad++;
        iomem_region_free(region);
        if (!m->s.started) {
                for (int i = 0; i < SPAWNED; i++) {
                        spawned_[i] = (struct spawned){ .s = &m->s, .i = i };
                        ck_assert_int_eq(pthread_create(&m->s.t[i], NULL, spawned_main, &spawned_[i]), 0);
                }
                m->s.started = 1;
        }
        /* more work for the loop while the threads run: a second wave from inside the callbacks */
        if (m->submitted < 2 * MID_OPENS) {
                ck_assert_int_eq(iomem_open_async(c, "sm/r", 0, 0, on_open_mid, m), 0);
                m->submitted++;
        }
        if (++m->completed == 2 * MID_OPENS)
                m->all_done = 1;
}

START_TEST(test_threads_started_mid_process)
{
        static struct mid m;
        struct iomem_region *reg = NULL;
        const char *fork_env = getenv("CK_FORK");
        int finished = 0;

        m = (struct mid){ .s = { .m = PTHREAD_MUTEX_INITIALIZER } };
        /* forked by check: this process has one thread (else the test proves nothing about the skipped lock) */
        if (!fork_env || strcmp(fork_env, "no") != 0)
                ck_assert_msg(__libc_single_threaded, "the test process already runs several threads");
        it_daemon_start(&daemon_, NULL);
        m.s.c = connect_flags(0);
        ck_assert_int_eq(iomem_create(m.s.c, "sm/r", 4096, NULL, &reg), 0);
        reg = iomem_region_free(reg);
        /* st/r for spawned_main() */
        ck_assert_int_eq(iomem_create(m.s.c, "st/r", 4096, NULL, &reg), 0);
        reg = iomem_region_free(reg);
        for (int i = 0; i < MID_OPENS; i++)
                ck_assert_int_eq(iomem_open_async(m.s.c, "sm/r", 0, 0, on_open_mid, &m), 0);
        m.submitted = MID_OPENS;
        /* a blocking call reads (and queues) every earlier reply first: the daemon answers in order */
        ck_assert_int_eq(iomem_ping(m.s.c), 0);
        ck_assert(__libc_single_threaded || (fork_env && strcmp(fork_env, "no") == 0));
        /* one call: the first callback starts the threads, the caller completes the others meanwhile */
        ck_assert_int_ge(iomem_client_process(m.s.c), MID_OPENS);
        ck_assert(m.s.started);
        loop_until(m.s.c, &m.all_done);
        ck_assert_int_eq(m.completed, 2 * MID_OPENS);
        ck_assert_int_eq(m.bad, 0);
        for (int waited = 0; finished < SPAWNED; waited += 10) {
                ck_assert_msg(waited < WAIT_MS, "%d of %d threads still blocked after %d ms", SPAWNED - finished,
                              SPAWNED, WAIT_MS);
                poll(NULL, 0, 10);
                pthread_mutex_lock(&m.s.m);
                finished = m.s.finished;
                pthread_mutex_unlock(&m.s.m);
        }
        for (int i = 0; i < SPAWNED; i++) {
                ck_assert_int_eq(pthread_join(m.s.t[i], NULL), 0);
                ck_assert_msg(m.s.r[i] == 0, "thread %d: %s", i, iomem_strerror(m.s.r[i]));
        }
        iomem_disconnect(m.s.c);
}
END_TEST

/* ---- cached opens ---------------------------------------------------------------- */

/* Return: the daemon's open count of @name (hits of the cache do not count). */
static uint64_t open_count(struct iomem_client *c, const char *name)
{
        struct iomem_stat st;

        ck_assert_int_eq(iomem_stat(c, name, &st), 0);
        return st.open_count;
}

/* Repeated opens come from the cache; DELETE and PUBLISH by another process invalidate it. */
START_TEST(test_open_cache_invalidation)
{
        struct iomem_client *c, *other, *v1;
        struct iomem_region *r = NULL, *r2 = NULL, *snap;
        uint64_t id, n0, gen;
        struct iomem_event ev;

        it_daemon_start(&daemon_, NULL);
        c = connect_flags(IOMEM_CONNECT_EVENTS);
        other = connect_flags(IOMEM_CONNECT_EVENTS);
        v1 = connect_flags(0);
        ck_assert_int_eq(iomem_client_set_open_cache(v1, 1), -EOPNOTSUPP);
        ck_assert_int_eq(iomem_client_set_open_cache(c, 1), 0);
        ck_assert_int_eq(iomem_create(other, "cache/a", 4096, NULL, &r), 0);
        id = iomem_region_id(r);
        iomem_region_free(r);

        /* the first open asks the daemon, the second is a hit: same region, no open counted */
        ck_assert_int_eq(iomem_open(c, "cache/a", IOMEM_OPEN_RDONLY, 0, &r), 0);
        n0 = open_count(other, "cache/a");
        ck_assert_int_eq(iomem_open(c, "cache/a", IOMEM_OPEN_RDONLY, 0, &r2), 0);
        ck_assert_uint_eq(iomem_client_open_cache_hits(c), 1);
        ck_assert_uint_eq(open_count(other, "cache/a"), n0);
        ck_assert_uint_eq(iomem_region_id(r2), id);
        ck_assert_uint_eq(iomem_region_flags(r2) & IOMEM_REGION_RDONLY, IOMEM_REGION_RDONLY);
        ck_assert_int_ne(iomem_region_fd(r2), iomem_region_fd(r)); /* a duplicate of its own */
        iomem_region_free(r2);
        /* other flags are another entry: read-write asks the daemon */
        ck_assert_int_eq(iomem_open(c, "cache/a", 0, 0, &r2), 0);
        ck_assert_uint_eq(iomem_client_open_cache_hits(c), 1);
        ck_assert_uint_eq(iomem_region_flags(r2) & IOMEM_REGION_RDONLY, 0);
        iomem_region_free(r2);
        iomem_region_free(r);

        /* DELETE by another process: once its event is in (a PING orders it), the cache answers no more */
        ck_assert_int_eq(iomem_delete(other, "cache/a"), 0);
        ck_assert_int_eq(iomem_ping(c), 0);
        ck_assert_int_eq(iomem_open(c, "cache/a", IOMEM_OPEN_RDONLY, 0, &r), -ENOENT);
        ck_assert_uint_eq(iomem_client_open_cache_hits(c), 1);

        /* PUBLISH of a new version: the next open gets the new one, not the cached old one */
        snap = snapshot(4096, 1);
        ck_assert_int_eq(iomem_publish(other, "cache/p", snap, NULL, &gen), 0);
        iomem_region_free(snap);
        ck_assert_int_eq(iomem_open(c, "cache/p", IOMEM_OPEN_RDONLY, 0, &r), 0);
        ck_assert_uint_eq(region_value(r), 1);
        iomem_region_free(r);
        ck_assert_int_eq(iomem_open(c, "cache/p", IOMEM_OPEN_RDONLY, 0, &r), 0); /* a hit */
        ck_assert_uint_eq(iomem_client_open_cache_hits(c), 2);
        ck_assert_uint_eq(region_value(r), 1);
        iomem_region_free(r);
        snap = snapshot(4096, 2);
        ck_assert_int_eq(iomem_publish(other, "cache/p", snap, NULL, &gen), 0);
        iomem_region_free(snap);
        ck_assert_int_eq(iomem_ping(c), 0);
        ck_assert_int_eq(iomem_open(c, "cache/p", IOMEM_OPEN_RDONLY, 0, &r), 0);
        ck_assert_uint_eq(region_value(r), 2);
        ck_assert_uint_eq(iomem_client_open_cache_hits(c), 2);
        iomem_region_free(r);

        /* CHMOD drops the entry too */
        ck_assert_int_eq(iomem_open(c, "cache/p", IOMEM_OPEN_RDONLY, 0, &r), 0);
        ck_assert_uint_eq(iomem_client_open_cache_hits(c), 3);
        iomem_region_free(r);
        ck_assert_int_eq(iomem_chmod(other, "cache/p", 0644), 0);
        ck_assert_int_eq(iomem_ping(c), 0);
        ck_assert_int_eq(iomem_open(c, "cache/p", IOMEM_OPEN_RDONLY, 0, &r), 0);
        ck_assert_uint_eq(iomem_client_open_cache_hits(c), 3);
        iomem_region_free(r);

        /* the cache's own watch is not the caller's: no event was delivered */
        ck_assert_int_eq(iomem_next_event(c, &ev, 0), -EAGAIN);
        ck_assert_int_eq(iomem_client_set_open_cache(c, 0), 0);
        ck_assert_int_eq(iomem_open(c, "cache/p", IOMEM_OPEN_RDONLY, 0, &r), 0);
        iomem_region_free(r);
        ck_assert_int_eq(iomem_open(c, "cache/p", IOMEM_OPEN_RDONLY, 0, &r), 0);
        iomem_region_free(r);
        ck_assert_uint_eq(iomem_client_open_cache_hits(c), 3);
        iomem_disconnect(v1);
        iomem_disconnect(other);
        iomem_disconnect(c);
}
END_TEST

/* ---- a blocking call whose request finds the socket full ------------------- */

struct tally {
        int done, ok, enoent, other;
};

static void on_open_tally(struct iomem_client *c, int error, struct iomem_region *r, uint64_t gen, void *ud)
{
        struct tally *t = ud;

        (void)c;
        (void)gen;
        iomem_region_free(r);
        t->done++;
        if (error == 0)
                t->ok++;
        else
                t->other++;
}

static void on_stat_tally(struct iomem_client *c, int error, const struct iomem_stat *st, void *ud)
{
        struct tally *t = ud;

        (void)c;
        (void)st;
        t->done++;
        if (error == -ENOENT)
                t->enoent++;
        else
                t->other++;
}

static void on_ping_tally(struct iomem_client *c, int error, void *ud)
{
        struct tally *t = ud;

        (void)c;
        t->done++;
        if (error == 0)
                t->ok++;
        else
                t->other++;
}

#define PIPELINED_OPENS 100 /* more than the daemon sends a connection unread (64 fds): then it stops reading it */

/* Run iomem_client_process() (poll()-driven) until *@done reaches @want. */
static void loop_until_count(struct iomem_client *c, const int *done, int want)
{
        while (*done < want) {
                struct pollfd pfd = { .fd = iomem_client_fd(c) };
                int ev = iomem_client_get_events(c), t = iomem_client_get_timeout(c), n;

                ck_assert_int_gt(ev, 0);
                pfd.events = (short)ev;
                n = poll(&pfd, 1, t < 0 || t > WAIT_MS ? WAIT_MS : t);
                ck_assert_int_ge(n, 0);
                ck_assert_msg(n > 0 || t >= 0, "nothing came in %d ms", WAIT_MS);
                ck_assert_int_ge(iomem_client_process(c), 0);
        }
}

/*
 * One thread pipelines OPENs (whose replies carry fds) and STATs without reading, until its socket buffer is full:
 * the daemon stopped reading it once 64 fds it sent were unread (docs/protocol.md, section 5, "Fds in flight"),
 * and waits for it to read them. Then a blocking call: its request waits for room, and room comes only once the
 * replies are read. Its wait must read them (as sd-bus's sd_bus_call() does); a wait that only polled for POLLOUT,
 * holding the client's lock, waited for ever (here: for the client's timeout, -ETIMEDOUT, the connection broken).
 */
START_TEST(test_blocking_send_reads_while_waiting)
{
        struct tally opens = { 0 }, stats = { 0 };
        struct iomem_region *r = NULL;
        struct iomem_client *c;
        char name[255 + 1]; /* the longest name */
        int nstat = 0;

        it_daemon_start(&daemon_, NULL);
        c = connect_flags(0);
        iomem_client_set_timeout(c, WAIT_MS); /* a bound for the old behaviour's hang, not a timed assertion */
        ck_assert_int_eq(iomem_create(c, "fl/a", 4096, NULL, &r), 0);
        iomem_region_free(r);
        for (int i = 0; i < PIPELINED_OPENS; i++)
                ck_assert_int_eq(iomem_open_async(c, "fl/a", IOMEM_OPEN_RDONLY, 0, on_open_tally, &opens), 0);
        /* long names that do not exist: few requests fill the buffer, and each reply says -ENOENT */
        memset(name, 'x', sizeof(name) - 1);
        memcpy(name, "fl/", 3);
        name[sizeof(name) - 1] = '\0';
        while (!(iomem_client_get_events(c) & POLLOUT)) { /* POLLOUT: the socket took not all, the rest is queued */
                ck_assert_int_eq(iomem_stat_async(c, name, on_stat_tally, &stats), 0);
                ck_assert_int_lt(++nstat, 100000);
        }
        ck_assert_int_eq(opens.done + stats.done, 0);
        ck_assert_int_eq(iomem_ping(c), 0);
        loop_until_count(c, &stats.done, nstat);
        ck_assert_int_eq(opens.done, PIPELINED_OPENS);
        ck_assert_int_eq(opens.ok, PIPELINED_OPENS);
        ck_assert_int_eq(stats.enoent, nstat);
        ck_assert_int_eq(opens.other + stats.other, 0);
        ck_assert_int_eq(iomem_ping(c), 0);
        fprintf(stderr, "test_blocking_send_reads_while_waiting: %d STATs filled the socket\n", nstat);
        iomem_disconnect(c);
}
END_TEST

/* ---- many requests in flight: each reply reaches its own request ---------- */

#define MF_REGIONS 64  /* "mf/kN", N * 4096 + 4096 bytes: a STAT's reply says which name it answers */
#define MF_PARKED 24   /* WAIT-OPENs parked per set (the daemon parks at most 64 per connection) */
#define MF_TABLE 4096  /* the client's id table once more than 2048 requests were outstanding (client.c) */

struct mf_expect {
        uint64_t size; /* what the reply must say */
        int done, bad, order;
};

static struct mf_expect mf_stat_[MF_REGIONS], mf_a_[MF_PARKED], mf_b_[MF_PARKED];
static int mf_pings, mf_errors, mf_done, mf_seq;

static void mf_on_stat(struct iomem_client *c, int error, const struct iomem_stat *st, void *ud)
{
        struct mf_expect *e = ud;

        (void)c;
        e->done++;
        mf_done++;
        if (error < 0)
                mf_errors++;
        else if (st->size != e->size)
                e->bad++;
}

static void mf_on_open(struct iomem_client *c, int error, struct iomem_region *r, uint64_t gen, void *ud)
{
        struct mf_expect *e = ud;

        (void)c, (void)gen;
        e->done++;
        e->order = ++mf_seq;
        mf_done++;
        if (error < 0)
                mf_errors++;
        else if (iomem_region_size(r) != e->size)
                e->bad++;
        iomem_region_free(r);
}

static void mf_on_ping(struct iomem_client *c, int error, void *ud)
{
        (void)c, (void)ud;
        mf_pings++;
        mf_done++;
        if (error < 0)
                mf_errors++;
}

/* Queue @n requests without reading: STATs of "mf/kN" (N = i % MF_REGIONS) and PINGs, alternately. */
static void mf_queue(struct iomem_client *c, int n)
{
        char name[32];

        for (int i = 0; i < n; i++) {
                if (i % 2) {
                        ck_assert_int_eq(iomem_ping_async(c, mf_on_ping, NULL), 0);
                        continue;
                }
                snprintf(name, sizeof(name), "mf/k%d", i / 2 % MF_REGIONS);
                ck_assert_int_eq(iomem_stat_async(c, name, mf_on_stat, &mf_stat_[i / 2 % MF_REGIONS]), 0);
        }
}

static void mf_reset(void)
{
        memset(mf_stat_, 0, sizeof(mf_stat_));
        memset(mf_a_, 0, sizeof(mf_a_));
        memset(mf_b_, 0, sizeof(mf_b_));
        mf_pings = mf_errors = mf_done = mf_seq = 0;
        for (int k = 0; k < MF_REGIONS; k++)
                mf_stat_[k].size = 4096 * (uint64_t)(k + 1);
}

static void mf_check_stats(void)
{
        for (int k = 0; k < MF_REGIONS; k++)
                ck_assert_msg(mf_stat_[k].bad == 0, "%d STAT replies of mf/k%d went to another name's request",
                              mf_stat_[k].bad, k);
}

/*
 * mf_start() - start the daemon; through *@pp (connected) make "mf/k0".."mf/kN"; return a client (timeout
 * WAIT_MS) with the first set of WAIT-OPENs parked ("mf/a0".."mf/aN": HELLO is held back, id 1; they get ids
 * 2..MF_PARKED + 1).
 */
static struct iomem_client *mf_start(struct iomem_client **pp)
{
        struct iomem_client *c;
        struct iomem_region *r = NULL;
        char name[32];

        it_daemon_start(&daemon_, NULL);
        mf_reset();
        *pp = connect_flags(0);
        for (int k = 0; k < MF_REGIONS; k++) {
                snprintf(name, sizeof(name), "mf/k%d", k);
                ck_assert_int_eq(iomem_create(*pp, name, mf_stat_[k].size, NULL, &r), 0);
                r = iomem_region_free(r);
        }
        c = connect_flags(0);
        iomem_client_set_timeout(c, WAIT_MS);
        for (int i = 0; i < MF_PARKED; i++) {
                snprintf(name, sizeof(name), "mf/a%d", i);
                mf_a_[i].size = 4096 * (uint64_t)(i + 1);
                ck_assert_int_eq(iomem_open_async(c, name, 0, WAIT_MS, mf_on_open, &mf_a_[i]), 0);
        }
        return c;
}

/*
 * Thousands of requests outstanding on one connection, replies routed by id (client.c's table): STATs whose
 * replies name their region by its size, PINGs, and two sets of parked WAIT-OPENs answered out of order (the
 * first in reverse, while the second is still parked). The second set's ids are the first's plus MF_TABLE (the
 * PINGs and STATs between them use up the ids in between), so each pair shares a chain of the table, the later
 * one first: a lookup that took a chain's first entry without comparing ids gave the first set's replies to the
 * second set's requests (a wrong size). A reconnect then ends every request still outstanding exactly once.
 */
START_TEST(test_many_in_flight_routed)
{
        struct iomem_client *c, *p;
        struct iomem_region *r = NULL;
        char name[32];
        int sent = 0, want;

        c = mf_start(&p);
        /* MF_TABLE - MF_PARKED requests in two halves, more than 2048 outstanding at a time */
        for (int half = 0; half < 2; half++) {
                int n = (MF_TABLE - MF_PARKED) / 2 + half * ((MF_TABLE - MF_PARKED) % 2);

                mf_queue(c, n);
                sent += n;
                loop_until_count(c, &mf_done, sent);
        }
        ck_assert_int_eq(mf_errors, 0);
        ck_assert_int_eq(mf_pings, (MF_TABLE - MF_PARKED) / 2);
        mf_check_stats();
        for (int i = 0; i < MF_PARKED; i++) {
                snprintf(name, sizeof(name), "mf/b%d", i);
                mf_b_[i].size = 4096 * (uint64_t)(i + 1 + MF_PARKED);
                ck_assert_int_eq(iomem_open_async(c, name, 0, WAIT_MS, mf_on_open, &mf_b_[i]), 0);
        }
        mf_queue(c, 3000);
        sent += 3000;
        /* the first set is answered in reverse, with the second still parked and 3000 requests queued behind */
        for (int i = MF_PARKED - 1; i >= 0; i--) {
                snprintf(name, sizeof(name), "mf/a%d", i);
                ck_assert_int_eq(iomem_create(p, name, mf_a_[i].size, NULL, &r), 0);
                r = iomem_region_free(r);
        }
        loop_until_count(c, &mf_done, sent + MF_PARKED);
        for (int i = 0; i < MF_PARKED; i++) {
                ck_assert_int_eq(mf_b_[i].done, 0);
                ck_assert_msg(mf_a_[i].done == 1 && mf_a_[i].bad == 0, "mf/a%d: %d replies, %d of another's", i,
                              mf_a_[i].done, mf_a_[i].bad);
                ck_assert_int_eq(mf_a_[i].order, MF_PARKED - i); /* out of order: as the names appeared */
        }
        for (int i = 0; i < MF_PARKED; i++) {
                snprintf(name, sizeof(name), "mf/b%d", i);
                ck_assert_int_eq(iomem_create(p, name, mf_b_[i].size, NULL, &r), 0);
                r = iomem_region_free(r);
        }
        loop_until_count(c, &mf_done, sent + 2 * MF_PARKED);
        for (int i = 0; i < MF_PARKED; i++)
                ck_assert_msg(mf_b_[i].done == 1 && mf_b_[i].bad == 0, "mf/b%d: %d replies, %d of another's", i,
                              mf_b_[i].done, mf_b_[i].bad);
        ck_assert_int_eq(mf_errors, 0);
        mf_check_stats();

        /* a reconnect with thousands outstanding (a parked set, requests maybe not yet sent): each ends once */
        mf_reset();
        for (int i = 0; i < MF_PARKED; i++) {
                snprintf(name, sizeof(name), "mf/c%d", i);
                ck_assert_int_eq(iomem_open_async(c, name, 0, WAIT_MS, mf_on_open, &mf_a_[i]), 0);
        }
        mf_queue(c, 5000);
        it_daemon_kill(&daemon_, SIGKILL);
        want = 5000 + MF_PARKED;
        while (mf_done < want) {
                struct pollfd pfd = { .fd = iomem_client_fd(c), .events = POLLIN };
                int k;

                ck_assert_int_eq(poll(&pfd, 1, WAIT_MS), 1);
                k = iomem_client_process(c);
                ck_assert(k >= 0 || k == -ENOTCONN);
        }
        ck_assert_int_eq(mf_done, want);
        /* those answered before the kill are right; the rest (the parked set at least) ended with an error */
        ck_assert_int_ge(mf_errors, MF_PARKED);
        mf_check_stats();
        for (int i = 0; i < MF_PARKED; i++)
                ck_assert_int_eq(mf_a_[i].done, 1);
        ck_assert_int_eq(iomem_client_process(c), -ENOTCONN);
        it_daemon_spawn(&daemon_, NULL);
        p = iomem_disconnect(p);
        p = connect_flags(0);
        for (int k = 0; k < MF_REGIONS; k++) {
                snprintf(name, sizeof(name), "mf/k%d", k);
                (void)iomem_delete(p, name); /* kept across the restart or not: made again */
                ck_assert_int_eq(iomem_create(p, name, mf_stat_[k].size, NULL, &r), 0);
                r = iomem_region_free(r);
        }
        ck_assert_int_eq(iomem_ping(c), 0); /* a blocking call connects again */
        mf_reset();
        mf_queue(c, 5000);
        loop_until_count(c, &mf_done, 5000);
        ck_assert_int_eq(mf_errors, 0);
        ck_assert_int_eq(mf_pings, 2500);
        mf_check_stats();
        iomem_disconnect(c);
        iomem_disconnect(p);
}
END_TEST

/*
 * The id table's allocation fails (the test is linked with -Wl,--wrap=calloc): a calloc() of 64 or more
 * pointers is client.c's client_ptab_grow() (no other calloc() linked into this program asks for that shape).
 * With @ptab_fail_from N > 0, every such calloc() of N or more chains returns NULL (ENOMEM).
 */
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
static atomic_int ptab_fail_from, ptab_made, ptab_failed;

void *__wrap_calloc(size_t n, size_t size)
{
        int from = atomic_load(&ptab_fail_from);

        if (from > 0 && size == sizeof(void *) && n >= 64) {
                if (n >= (size_t)from) {
                        atomic_fetch_add(&ptab_failed, 1);
                        errno = ENOMEM;
                        return NULL;
                }
                atomic_fetch_add(&ptab_made, 1);
        }
        return __real_calloc(n, size);
}

/*
 * mf_routed_run() - @n STATs and PINGs outstanding on one connection, with MF_PARKED WAIT-OPENs parked and
 * answered in reverse, then 2 * @n more: each reply reaches its own request, each request completes once.
 */
static void mf_routed_run(int n)
{
        struct iomem_client *c, *p;
        struct iomem_region *r = NULL;
        char name[32];

        c = mf_start(&p);
        mf_queue(c, n);
        loop_until_count(c, &mf_done, n);
        for (int i = MF_PARKED - 1; i >= 0; i--) {
                snprintf(name, sizeof(name), "mf/a%d", i);
                ck_assert_int_eq(iomem_create(p, name, mf_a_[i].size, NULL, &r), 0);
                r = iomem_region_free(r);
        }
        mf_queue(c, 2 * n);
        loop_until_count(c, &mf_done, 3 * n + MF_PARKED);
        ck_assert_int_eq(mf_done, 3 * n + MF_PARKED);
        ck_assert_int_eq(mf_errors, 0);
        ck_assert_int_eq(mf_pings, 3 * n / 2);
        mf_check_stats();
        for (int i = 0; i < MF_PARKED; i++) {
                ck_assert_msg(mf_a_[i].done == 1 && mf_a_[i].bad == 0, "mf/a%d: %d replies, %d of another's", i,
                              mf_a_[i].done, mf_a_[i].bad);
                ck_assert_int_eq(mf_a_[i].order, MF_PARKED - i);
        }
        ck_assert_int_eq(iomem_ping(c), 0);
        iomem_disconnect(c);
        iomem_disconnect(p);
}

/* mf_routed_run(600) with every id table of @fail_from chains or more failing to be made; @made were made. */
static void mf_routed_failing(int fail_from, int made)
{
        atomic_store(&ptab_fail_from, fail_from);
        mf_routed_run(600);
        ck_assert_int_gt(atomic_load(&ptab_failed), 0);
        ck_assert_int_eq(atomic_load(&ptab_made), made);
}

/*
 * Past 8 outstanding requests libiomem indexes them by id in a table; when that table cannot be allocated, the
 * requests stay findable (the pending list, or the smaller table that stays). Here no table is ever made (every
 * allocation of one fails): 600 outstanding requests are found by walking the list.
 */
START_TEST(test_many_in_flight_no_table)
{
        mf_routed_failing(64, 0);
}
END_TEST

/* The first table (64 chains) is made, every growth of it fails: 600 outstanding requests share its 64 chains. */
START_TEST(test_many_in_flight_table_stays)
{
        mf_routed_failing(128, 1);
}
END_TEST

static int dl_timedout, dl_notconn, dl_other, dl_done;

static void dl_on_ping(struct iomem_client *c, int error, void *ud)
{
        (void)c, (void)ud;
        dl_done++;
        if (error == -ETIMEDOUT)
                dl_timedout++;
        else if (error == -ENOTCONN)
                dl_notconn++;
        else
                dl_other++;
}

/*
 * Deadlines of asynchronous requests with thousands outstanding (client.c keeps a lower bound of the earliest,
 * walking the requests only once it passed): requests answered leave no deadline behind
 * (iomem_client_get_timeout() is -1 again), and with the daemon stopped the first request due ends with
 * -ETIMEDOUT and breaks the connection (every other one: -ENOTCONN), through iomem_client_process() alone.
 */
START_TEST(test_many_in_flight_deadlines)
{
        struct iomem_client *c;

        it_daemon_start(&daemon_, NULL);
        c = connect_flags(0);
        iomem_client_set_timeout(c, WAIT_MS);
        for (int i = 0; i < 3000; i++)
                ck_assert_int_eq(iomem_ping_async(c, dl_on_ping, NULL), 0);
        loop_until_count(c, &dl_done, 3000);
        ck_assert_int_eq(dl_other, 3000); /* answered: 0 */
        /*
         * 0 may come first, by the contract (iomem.h): the last iomem_client_process()'s bounded reads each took
         * something, so it cannot tell that nothing is left; the next call finds that out. Never > 0: that would
         * be a deadline left behind by a request answered.
         */
        for (int i = 0; i < 100 && iomem_client_get_timeout(c) == 0; i++)
                ck_assert_int_ge(iomem_client_process(c), 0);
        ck_assert_int_eq(iomem_client_get_timeout(c), -1);
        dl_done = dl_other = 0;
        iomem_client_set_timeout(c, 200); /* short: the test waits for it to pass */
        ck_assert_int_eq(kill(daemon_.pid, SIGSTOP), 0);
        for (int i = 0; i < 3000; i++)
                ck_assert_int_eq(iomem_ping_async(c, dl_on_ping, NULL), 0);
        ck_assert_int_ge(iomem_client_get_timeout(c), 0);
        while (dl_done < 3000) {
                struct pollfd pfd = { .fd = iomem_client_fd(c) };
                int ev = iomem_client_get_events(c), t = iomem_client_get_timeout(c), k;

                ck_assert_int_gt(ev, 0);
                ck_assert_int_ge(t, 0); /* a request is outstanding with a deadline */
                pfd.events = (short)ev;
                ck_assert_int_ge(poll(&pfd, 1, t), 0);
                k = iomem_client_process(c);
                ck_assert(k >= 0 || k == -ENOTCONN);
        }
        ck_assert_int_eq(kill(daemon_.pid, SIGCONT), 0);
        ck_assert_int_eq(dl_timedout, 1);
        ck_assert_int_eq(dl_notconn, 2999);
        ck_assert_int_eq(dl_other, 0);
        ck_assert_int_eq(iomem_client_process(c), -ENOTCONN);
        iomem_disconnect(c);
}
END_TEST

/*
 * Return: the system call thread @tid is in (/proc: its syscall file's first number; "running" reads as 0), or -1
 * if the thread has exited (its task is gone, or going: ENOENT, ESRCH): it waits in none. Callers loop until the
 * thread waits or their thread's "finished" flag is set, which the thread sets before it exits: a gone thread
 * ends such a loop (it is finished), and the caller then sees that it did not wait.
 */
static long thread_syscall(pid_t tid)
{
        char path[64], buf[64] = "";
        FILE *f;

        snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
        f = fopen(path, "re");
        if (!f && (errno == ENOENT || errno == ESRCH))
                return -1;
        ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
        if (!fgets(buf, sizeof(buf), f)) {
                int gone = ferror(f) && errno == ESRCH;

                fclose(f);
                return gone ? -1 : 0;
        }
        fclose(f);
        return strtol(buf, NULL, 10);
}

/*
 * Return: true if system call @nr is poll() or ppoll(), or restart_syscall(): a poll() with a timeout that a stop
 * and continue of the process (or a signal it ignores but that still woke it) interrupted is continued by the
 * kernel as restart_syscall(), and /proc shows that number while it still waits. Before, the waits on a thread's
 * system call spun until the thread's call timed out (20 s), then failed ("last seen in system call 219").
 */
static bool syscall_polls(long nr)
{
        return nr == SYS_poll || nr == SYS_ppoll || nr == SYS_restart_syscall;
}

/* Return: true once thread @tid waits in poll() or ppoll(); false once it exited. */
static bool thread_in_poll(pid_t tid)
{
        return syscall_polls(thread_syscall(tid));
}

/* Return: true if system call @nr is one a blocking call waits in: syscall_polls(), recvmsg(), a futex. */
static bool syscall_waits(long nr)
{
        return syscall_polls(nr) || nr == SYS_recvmsg || nr == SYS_futex;
}

struct sender {
        struct iomem_client *c;
        pid_t tid;
        int r;
        atomic_int started, finished;
};

static void *sender_main(void *arg)
{
        struct sender *s = arg;

        atomic_store(&s->tid, (int)gettid());
        atomic_store(&s->started, 1);
        s->r = iomem_ping(s->c);
        atomic_store(&s->finished, 1);
        return NULL;
}

/*
 * Return once @s's thread (started) waits in a system call @waits() accepts. If its call returns instead, the
 * failure says with what, after how long, and the system call it was last seen in (-1: gone, 0: running).
 */
static void sender_await(struct sender *s, bool (*waits)(long nr))
{
        struct timespec t0, t1;
        long nr = 0;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (!atomic_load(&s->started))
                it_sleep_ms(1);
        while (!atomic_load(&s->finished)) {
                nr = thread_syscall(atomic_load(&s->tid));
                if (waits(nr))
                        return;
                it_sleep_ms(1);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ck_abort_msg("the call that was to wait returned after %lld ms: %s (last seen in system call %ld)",
                     (long long)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000,
                     iomem_strerror(s->r), nr);
}

/*
 * A thread's blocking call waits for room to send (the daemon stopped, SIGSTOP, with a full socket buffer); the
 * event loop's thread meanwhile calls iomem_client_process() and iomem_client_get_events() on the same client.
 * They must return while the other call still waits: the waiting sender does not hold the client's lock. Before,
 * they waited for the lock until the sender's timeout (which then broke the connection).
 */
START_TEST(test_send_wait_lets_go_of_lock)
{
        struct tally pings = { 0 };
        struct sender s = { 0 };
        struct iomem_client *c;
        pthread_t t;
        int fd, k, one = 1, n = 0;

        it_daemon_start(&daemon_, NULL);
        c = connect_flags(0);
        iomem_client_set_timeout(c, WAIT_MS); /* a bound for the old behaviour's hang, not a timed assertion */
        ck_assert_int_eq(iomem_ping(c), 0);
        fd = iomem_client_fd(c);
        ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &one, sizeof(one)), 0);
        ck_assert_int_eq(kill(daemon_.pid, SIGSTOP), 0);
        while (!(iomem_client_get_events(c) & POLLOUT)) {
                ck_assert_int_eq(iomem_ping_async(c, on_ping_tally, &pings), 0);
                ck_assert_int_lt(++n, 100000);
        }
        s.c = c;
        ck_assert_int_eq(pthread_create(&t, NULL, sender_main, &s), 0);
        sender_await(&s, syscall_polls);
        /* the sender waits for room (or, before, held the lock while it did) */
        k = iomem_client_process(c);
        ck_assert_msg(k == 0, "iomem_client_process(): %s (%s); the sender %s: %s", iomem_strerror(k),
                      iomem_client_error_message(c), atomic_load(&s.finished) ? "returned" : "waits",
                      atomic_load(&s.finished) ? iomem_strerror(s.r) : "-");
        ck_assert_int_eq(iomem_client_get_events(c), POLLIN | POLLOUT);
        ck_assert_int_eq(atomic_load(&s.finished), 0);
        ck_assert_int_eq(kill(daemon_.pid, SIGCONT), 0);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_int_eq(s.r, 0);
        loop_until_count(c, &pings.done, n);
        ck_assert_int_eq(pings.ok, n);
        ck_assert_int_eq(iomem_ping(c), 0);
        iomem_disconnect(c);
}
END_TEST


/* Return: true once thread @tid waits in one of those (syscall_waits()); false once it exited. */
static bool thread_waits(pid_t tid)
{
        return syscall_waits(thread_syscall(tid));
}

/*
 * The waits above (thread_in_poll(), thread_waits(), loops that also end on the thread's "finished") read a thread
 * that may have exited meanwhile: its task gone, that thread waits in nothing, and the loop ends. Before, its
 * thread_syscall() failed the test ("Assertion 'f != NULL'", seen in test_send_wait_lets_go_of_lock and
 * test_forked_child_disconnect when the thread's call had returned).
 */
START_TEST(test_thread_gone_waits_in_nothing)
{
        struct sender s = { .c = NULL }; /* iomem_ping(NULL): -EINVAL at once */
        pthread_t t;

        ck_assert_int_eq(pthread_create(&t, NULL, sender_main, &s), 0);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_int_eq(s.r, -EINVAL);
        /* its task goes away shortly after the join (the kernel releases it after waking the joiner) */
        while (thread_syscall(atomic_load(&s.tid)) != -1)
                it_sleep_ms(1);
        ck_assert(!thread_waits(atomic_load(&s.tid)));
        ck_assert(!thread_in_poll(atomic_load(&s.tid)));
}
END_TEST


/* Start @s's thread on @c (sender_main(): one iomem_ping()) and return once it waits (syscall_waits()). */
static void sender_start_waiting(struct sender *s, struct iomem_client *c, pthread_t *t)
{
        s->c = c;
        ck_assert_int_eq(pthread_create(t, NULL, sender_main, s), 0);
        sender_await(s, syscall_waits);
}

/*
 * Return: a client (its timeout WAIT_MS, a bound for a lost reply, not a timed assertion) of a daemon started and
 * then stopped (SIGSTOP): the calls made on it wait unanswered until SIGCONT.
 */
static struct iomem_client *stopped_daemon_client(void)
{
        struct iomem_client *c;

        it_daemon_start(&daemon_, NULL);
        c = connect_flags(0);
        iomem_client_set_timeout(c, WAIT_MS);
        ck_assert_int_eq(iomem_ping(c), 0);
        ck_assert_int_eq(kill(daemon_.pid, SIGSTOP), 0);
        return c;
}

/* In a child: stop the parent (this test's process), wait until it is stopped, continue it. */
static void stop_and_continue_parent(void)
{
        pid_t parent = getppid();
        char path[64], buf[256];
        bool stopped = false;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)parent);
        if (kill(parent, SIGSTOP) < 0)
                _exit(1);
        while (!stopped) {
                FILE *f = fopen(path, "re");
                char *e;

                if (!f)
                        _exit(2);
                e = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
                fclose(f);
                stopped = e && e[1] == ' ' && e[2] == 'T';
                if (!stopped)
                        usleep(1000);
        }
        _exit(kill(parent, SIGCONT) < 0 ? 3 : 0);
}

/*
 * A thread waiting in poll() (its call's reply, the daemon stopped) while its process is stopped and continued:
 * the kernel continues the poll() as restart_syscall(), and sender_await() still sees it waiting, rather than
 * spinning until the call times out. The flake of test_forked_child_disconnect and test_send_wait_lets_go_of_lock
 * under load ("the call that was to wait returned after 20016 ms: timed out ... (last seen in system call 219)").
 */
START_TEST(test_restarted_wait_still_waits)
{
        struct sender s = { 0 };
        struct iomem_client *c;
        pthread_t t;
        int status;
        pid_t pid;

        c = stopped_daemon_client();
        sender_start_waiting(&s, c, &t);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
                stop_and_continue_parent();
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "stop and continue: status 0x%x", status);
        sender_await(&s, syscall_polls); /* it waits in poll() again, or still (restart_syscall()) */
        ck_assert_int_eq(kill(daemon_.pid, SIGCONT), 0);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_int_eq(s.r, 0);
        iomem_disconnect(c);
}
END_TEST

/*
 * In a forked child of a test: a hang fails the test (the child dies of SIGALRM) instead of hanging it. SIGALRM's
 * handler inherited from Check's runner would kill the test's whole process group: the default action instead.
 */
static void child_alarm(void)
{
        signal(SIGALRM, SIG_DFL);
        alarm(WAIT_MS / 1000);
}

/*
 * forked_child_disconnect_run() - a forked child disconnects its copy of a client while threads of the parent
 * were inside blocking calls on it at the fork (one reading the socket, one waiting for its turn) and an
 * asynchronous request was outstanding. The parent's calls and request must all complete, and the child's
 * disconnect must return.
 */
static void forked_child_disconnect_run(void)
{
        struct tally pings = { 0 };
        struct sender s[2] = { 0 };
        struct iomem_client *c;
        pthread_t t[2];
        int status;
        pid_t pid;

        c = stopped_daemon_client(); /* the calls below wait unanswered */
        for (int i = 0; i < 2; i++)
                sender_start_waiting(&s[i], c, &t[i]);
        ck_assert_int_eq(iomem_ping_async(c, on_ping_tally, &pings), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                child_alarm();
                iomem_disconnect(c); /* the child's copy: its socket fd is the parent's socket too */
                _exit(0);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's disconnect: status 0x%x", status);
        ck_assert_int_eq(kill(daemon_.pid, SIGCONT), 0);
        for (int i = 0; i < 2; i++) {
                ck_assert_int_eq(pthread_join(t[i], NULL), 0);
                ck_assert_msg(s[i].r == 0, "the parent's call %d after the child's disconnect: %s", i,
                              iomem_strerror(s[i].r));
        }
        loop_until_count(c, &pings.done, 1);
        ck_assert_int_eq(pings.ok, 1);
        ck_assert_int_eq(iomem_ping(c), 0);
        iomem_disconnect(c);
}

/*
 * The child's copy said "a thread reads": before, iomem_disconnect() woke that reader by shutting down the
 * receiving side of the socket, which the parent shares: the parent's calls then failed with -ECONNRESET and its
 * connection was gone.
 */
static void on_ping_count(struct iomem_client *c, int error, void *ud)
{
        (void)c;
        *(int *)ud += error == 0;
}

static void on_ping_child(struct iomem_client *c, int error, void *ud)
{
        (void)c;
        (void)error;
        (void)ud;
        _exit(10); /* a completion in the child: its request went out on the parent's connection */
}

/*
 * A forked child's copy of a client refuses every call that would use the socket it shares with the parent
 * (-ECHILD); its disconnect still works, and the parent's connection goes on. Before, the child's requests went
 * out on the parent's connection and the child read replies from it.
 */
START_TEST(test_forked_child_calls_refused)
{
        struct iomem_client *c, *e;
        struct iomem_region *r = NULL;
        struct iomem_event ev;
        struct iomem_stat st;
        int status;
        pid_t pid;

        it_daemon_start(&daemon_, NULL);
        c = connect_flags(0);
        ck_assert_int_eq(iomem_create(c, "fk/a", 4096, NULL, &r), 0);
        r = iomem_region_free(r);
        e = connect_flags(IOMEM_CONNECT_EVENTS);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                int code = 0;

                child_alarm();
                if (iomem_ping(c) != -ECHILD)
                        code = 1;
                else if (iomem_stat(c, "fk/a", &st) != -ECHILD)
                        code = 2;
                else if (iomem_open(c, "fk/a", 0, 0, &r) != -ECHILD)
                        code = 3;
                else if (iomem_ping_async(c, on_ping_child, NULL) != -ECHILD)
                        code = 4;
                else if (iomem_client_process(c) != -ECHILD || iomem_client_get_events(c) != -ECHILD)
                        code = 5;
                else if (iomem_client_handshake(c) != -ECHILD || iomem_next_event(e, &ev, 0) != -ECHILD)
                        code = 6;
                else if (strcmp(iomem_strerror(-ECHILD), "No child processes") == 0)
                        code = 7;
                iomem_disconnect(c);
                iomem_disconnect(e);
                if (code == 0) {
                        /* a client the child connects itself is its own: its calls and callbacks work */
                        struct iomem_client *own = connect_flags(0);
                        int pings = 0;

                        if (!own || iomem_ping(own) != 0 || iomem_stat(own, "fk/a", &st) != 0)
                                code = 8;
                        else if (iomem_ping_async(own, on_ping_count, &pings) != 0 || iomem_ping(own) != 0 ||
                                 iomem_client_process(own) != 1 || pings != 1)
                                code = 9;
                        iomem_disconnect(own);
                }
                _exit(code);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's calls: status 0x%x", status);
        ck_assert_int_eq(iomem_ping(c), 0);
        ck_assert_int_eq(iomem_stat(c, "fk/a", &st), 0);
        ck_assert_int_eq(iomem_ping(e), 0);
        iomem_disconnect(e);
        iomem_disconnect(c);
}
END_TEST

/* A thread of the parent in a completion callback of iomem_client_process() at the fork: it waits for the fork. */
struct incb {
        struct iomem_client *c;
        int in[2], go[2]; /* the callback says it runs; the test lets it return */
        int r;
};

static void incb_on_ping(struct iomem_client *c, int error, void *ud)
{
        struct incb *b = ud;
        char x = 1;

        (void)c;
        (void)error;
        ck_assert_int_eq(write(b->in[1], &x, 1), 1);
        ck_assert_int_eq(read(b->go[0], &x, 1), 1);
}

static void *incb_main(void *arg)
{
        struct incb *b = arg;

        b->r = iomem_client_process(b->c);
        return NULL;
}

/*
 * A forked child disconnects its copy of a client while a thread of the parent was in a callback of
 * iomem_client_process() at the fork. That thread is not in the child: the disconnect must close the child's copy
 * of the socket at once. Before, it was deferred to a process() call that never returns in the child: the client
 * leaked, and the child kept the parent's socket open (the daemon would not see the parent go).
 */
static void forked_child_disconnect_in_callback_of_parent_run(void)
{
        struct incb b = { 0 };
        pthread_t t;
        int status, fd;
        char x;
        pid_t pid;

        it_daemon_start(&daemon_, NULL);
        b.c = connect_flags(0);
        fd = iomem_client_fd(b.c);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pipe2(b.in, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(b.go, O_CLOEXEC), 0);
        ck_assert_int_eq(iomem_ping_async(b.c, incb_on_ping, &b), 0);
        ck_assert_int_eq(iomem_ping(b.c), 0); /* the asynchronous reply read and kept for process() */
        ck_assert_int_eq(pthread_create(&t, NULL, incb_main, &b), 0);
        ck_assert_int_eq(read(b.in[0], &x, 1), 1); /* the thread is in the callback */
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                child_alarm();
                iomem_disconnect(b.c);
                /* the child's copy of the socket is closed: fd is free again (or reused by nothing here) */
                _exit(fcntl(fd, F_GETFD) == -1 && errno == EBADF ? 0 : 1);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        x = 1;
        ck_assert_int_eq(write(b.go[1], &x, 1), 1);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "the child's disconnect left the parent's socket open in the child: status 0x%x", status);
        ck_assert_int_eq(b.r, 1);
        ck_assert_int_eq(iomem_ping(b.c), 0);
        iomem_disconnect(b.c);
        for (int i = 0; i < 2; i++) {
                close(b.in[i]);
                close(b.go[i]);
        }
}

START_TEST(test_forked_child_disconnect_in_callback_of_parent)
{
        forked_child_disconnect_in_callback_of_parent_run();
}
END_TEST

static pid_t fkcb_parent;

static void fkcb_on_ping(struct iomem_client *c, int error, void *ud)
{
        int *status = ud;
        pid_t pid;

        (void)error;
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                child_alarm();
                iomem_disconnect(c); /* the child returns to its process(), which frees the copy */
                return;
        }
        ck_assert_int_eq(waitpid(pid, status, 0), pid);
}

/*
 * A callback forks and the child disconnects its copy there: the child returns to its copy of
 * iomem_client_process(), so the disconnect is still deferred to it (freed at once, it would go on with a freed
 * client), which says -ESHUTDOWN.
 */
START_TEST(test_forked_child_disconnect_in_own_callback)
{
        struct iomem_client *c;
        int status = -1, r;

        it_daemon_start(&daemon_, NULL);
        fkcb_parent = getpid();
        c = connect_flags(0);
        ck_assert_int_eq(iomem_ping_async(c, fkcb_on_ping, &status), 0);
        ck_assert_int_eq(iomem_ping(c), 0);
        r = iomem_client_process(c);
        if (getpid() != fkcb_parent)
                _exit(r == -ESHUTDOWN ? 0 : 1);
        ck_assert_int_eq(r, 1);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's process(): status 0x%x", status);
        ck_assert_int_eq(iomem_ping(c), 0);
        iomem_disconnect(c);
}
END_TEST

START_TEST(test_forked_child_disconnect)
{
        forked_child_disconnect_run();
}
END_TEST

/* pthread_atfork() fails on demand (-Wl,--wrap=pthread_atfork): libiomem registers its fork count with it. */
int __real_pthread_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));
int __wrap_pthread_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));
static atomic_int atfork_fail, atfork_calls;

int __wrap_pthread_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void))
{
        atomic_fetch_add(&atfork_calls, 1);
        if (atomic_load(&atfork_fail))
                return ENOMEM;
        return __real_pthread_atfork(prepare, parent, child);
}

/*
 * libiomem's pthread_atfork() registration failed (ENOMEM) at its first connect: a forked child's copy is still
 * told apart (by the pid at connect, in that case only), and its disconnect leaves the parent's connection alone.
 */
/* The same without the fork count (pthread_atfork() failed): the pid tells the copy apart. */
START_TEST(test_forked_child_disconnect_in_callback_no_atfork)
{
        atomic_store(&atfork_fail, 1);
        forked_child_disconnect_in_callback_of_parent_run();
        ck_assert_int_eq(atomic_load(&atfork_calls), 1);
}
END_TEST

START_TEST(test_forked_child_disconnect_no_atfork)
{
        atomic_store(&atfork_fail, 1);
        forked_child_disconnect_run();
        /* registered in this test's process, at its first connect (check runs each test in a process of its own) */
        ck_assert_msg(atomic_load(&atfork_calls) == 1, "pthread_atfork() called %d times (CK_FORK=no?)",
                      atomic_load(&atfork_calls));
}
END_TEST

/* SIGUSR1's handler for test_forked_child_disconnect_copied_waiters: the thread it runs in waits on @hold_pipe */
static int hold_pipe[2] = { -1, -1 };
static atomic_int hold_in;

static void hold_handler(int sig)
{
        int saved = errno;
        char b;

        (void)sig;
        atomic_store(&hold_in, 1);
        while (read(hold_pipe[0], &b, 1) < 0 && errno == EINTR)
                ;
        errno = saved;
}

/*
 * The child's copy of the client's condition variable holds waiters that exist only in the parent: thread A was
 * woken by a broadcast but had not yet left pthread_cond_wait() (it runs a signal handler that waits, so it keeps
 * its place in glibc's group of woken waiters), and thread B waits after it. A broadcast on that copy waits for A
 * to leave (glibc 2.36's __condvar_quiesce_and_switch_g1()), which never happens in the child: its
 * iomem_disconnect() must broadcast to nobody. Before, the child hung (here: killed by its alarm()).
 */
START_TEST(test_forked_child_disconnect_copied_waiters)
{
        struct sigaction sa = { .sa_handler = hold_handler }, old;
        struct sender r = { 0 }, a = { 0 }, r2 = { 0 }, b = { 0 };
        struct iomem_client *c;
        pthread_t tr, ta, tr2, tb;
        int status;
        pid_t pid;

        ck_assert_int_eq(pipe2(hold_pipe, O_CLOEXEC), 0);
        sigemptyset(&sa.sa_mask);
        ck_assert_int_eq(sigaction(SIGUSR1, &sa, &old), 0);
        c = stopped_daemon_client();
        sender_start_waiting(&r, c, &tr); /* the reader */
        sender_start_waiting(&a, c, &ta); /* waits on the condition variable */
        ck_assert_int_eq(pthread_kill(ta, SIGUSR1), 0);
        /* A waits in the handler's read() (thread_syscall() is -1 once it exited: then it is finished) */
        while ((!atomic_load(&hold_in) || thread_syscall(atomic_load(&a.tid)) != SYS_read) &&
               !atomic_load(&a.finished))
                it_sleep_ms(1);
        ck_assert_int_eq(atomic_load(&a.finished), 0);
        /* R's reply comes: R routes it and broadcasts (A counted as a waiter) before its call returns */
        ck_assert_int_eq(kill(daemon_.pid, SIGCONT), 0);
        ck_assert_int_eq(pthread_join(tr, NULL), 0);
        ck_assert_int_eq(r.r, 0);
        ck_assert_int_eq(kill(daemon_.pid, SIGSTOP), 0);
        sender_start_waiting(&r2, c, &tr2); /* the reader again */
        sender_start_waiting(&b, c, &tb);   /* a waiter after the broadcast */
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                child_alarm();
                iomem_disconnect(c);
                _exit(0);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "the child's disconnect did not return (status 0x%x: %s)", status,
                      WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "exited");
        ck_assert_int_eq(write(hold_pipe[1], "x", 1), 1);
        ck_assert_int_eq(kill(daemon_.pid, SIGCONT), 0);
        ck_assert_int_eq(pthread_join(ta, NULL), 0);
        ck_assert_int_eq(pthread_join(tr2, NULL), 0);
        ck_assert_int_eq(pthread_join(tb, NULL), 0);
        ck_assert_int_eq(a.r, 0);
        ck_assert_int_eq(r2.r, 0);
        ck_assert_int_eq(b.r, 0);
        ck_assert_int_eq(iomem_ping(c), 0);
        iomem_disconnect(c);
        ck_assert_int_eq(sigaction(SIGUSR1, &old, NULL), 0);
        close(hold_pipe[0]);
        close(hold_pipe[1]);
}
END_TEST

static Suite *suite(void)
{
        Suite *s = suite_create("integration-async");
        TCase *tc = tcase_create("async");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 240);
        tcase_add_test(tc, test_async_requests);
        tcase_add_test(tc, test_async_daemon_gone);
        tcase_add_test(tc, test_async_disconnect_outstanding);
        tcase_add_test(tc, test_async_disconnect_in_callback);
        tcase_add_test(tc, test_list_disconnect_in_callback);
        tcase_add_test(tc, test_libevent_consumer);
        tcase_add_test(tc, test_threads_share_blocking_client);
        tcase_add_test(tc, test_threads_started_by_callback);
        tcase_add_test(tc, test_threads_started_mid_process);
        tcase_add_test(tc, test_open_cache_invalidation);
        tcase_add_test(tc, test_blocking_send_reads_while_waiting);
        tcase_add_test(tc, test_send_wait_lets_go_of_lock);
        tcase_add_test(tc, test_thread_gone_waits_in_nothing);
        tcase_add_test(tc, test_restarted_wait_still_waits);
        tcase_add_test(tc, test_many_in_flight_routed);
        tcase_add_test(tc, test_many_in_flight_deadlines);
        tcase_add_test(tc, test_many_in_flight_no_table);
        tcase_add_test(tc, test_many_in_flight_table_stays);
        tcase_add_test(tc, test_forked_child_disconnect);
        tcase_add_test(tc, test_forked_child_calls_refused);
        tcase_add_test(tc, test_forked_child_disconnect_in_callback_of_parent);
        tcase_add_test(tc, test_forked_child_disconnect_in_own_callback);
        tcase_add_test(tc, test_forked_child_disconnect_no_atfork);
        tcase_add_test(tc, test_forked_child_disconnect_in_callback_no_atfork);
        tcase_add_test(tc, test_forked_child_disconnect_copied_waiters);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return test_run_suite(suite());
}
