/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * frame-consumer: a libevent program that reacts to published frames without a thread or a busy loop (issue 12).
 * Usage: frame-consumer SOCKET NAME LAST
 * It watches NAME, and for each new version opens it with iomem_open_version_async() from the event callback,
 * checks the frame is whole (every u64 equal: never torn or mixed), and exits once it has seen frame LAST.
 * Frames published faster than it reads are skipped, never mixed: it always opens the newest.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <event2/event.h>

#include "iomem.h"

struct consumer {
        struct event_base *base;
        struct event *io, *timer;
        struct iomem_client *c;
        const char *name;
        uint64_t last, seen_frames, newest, opened_gen;
        int result;
};

static void consumer_arm(struct consumer *s);

/* Stop the loop with @result (0 = done). */
static void consumer_stop(struct consumer *s, int result)
{
        s->result = result;
        event_base_loopbreak(s->base);
}

static void on_frame(struct iomem_client *c, int error, struct iomem_region *r, uint64_t gen, void *userdata)
{
        struct consumer *s = userdata;
        uint64_t size, *p;

        (void)c;
        if (error == -ENOENT)
                return; /* an older request found nothing newer: the next event brings it */
        if (error < 0) {
                fprintf(stderr, "frame-consumer: open: %s\n", iomem_strerror(error));
                consumer_stop(s, 1);
                return;
        }
        size = iomem_region_size(r);
        if (gen > s->opened_gen && iomem_region_map(r, 0, size, PROT_READ, (void **)&p) == 0) {
                for (uint64_t i = 1; i < size / 8; i++) {
                        if (p[i] != p[0]) {
                                fprintf(stderr, "frame-consumer: torn frame at generation %llu\n",
                                        (unsigned long long)gen);
                                consumer_stop(s, 1);
                                break;
                        }
                }
                s->opened_gen = gen;
                s->newest = p[0];
                s->seen_frames++;
                iomem_unmap(p, size);
                if (s->newest >= s->last)
                        consumer_stop(s, 0);
        }
        iomem_region_free(r);
}

static void on_event(struct iomem_client *c, const struct iomem_event *ev, void *userdata)
{
        struct consumer *s = userdata;
        int k;

        if (ev->kind != IOMEM_EVENT_CREATED && ev->kind != IOMEM_EVENT_PUBLISHED &&
            ev->kind != IOMEM_EVENT_OVERFLOW)
                return;
        if (ev->kind != IOMEM_EVENT_OVERFLOW && strcmp(ev->name, s->name) != 0)
                return;
        /* the newest version after the one we hold; no wait: an event said it exists */
        k = iomem_open_version_async(c, s->name, IOMEM_OPEN_RDONLY, s->opened_gen, 0, on_frame, s);
        if (k < 0) {
                fprintf(stderr, "frame-consumer: open: %s\n", iomem_strerror(k));
                consumer_stop(s, 1);
        }
}

static void on_ready(evutil_socket_t fd, short what, void *userdata)
{
        struct consumer *s = userdata;
        int k;

        (void)fd;
        (void)what;
        k = iomem_client_process(s->c);
        if (k < 0) {
                fprintf(stderr, "frame-consumer: %s\n", iomem_strerror(k));
                consumer_stop(s, 1);
                return;
        }
        consumer_arm(s);
}

/* Wait for what the client asks: its fd for reading (and writing while it has output), and its deadline. */
static void consumer_arm(struct consumer *s)
{
        int events = iomem_client_get_events(s->c), timeout = iomem_client_get_timeout(s->c);

        if (events < 0)
                return;
        event_del(s->io);
        event_assign(s->io, s->base, iomem_client_fd(s->c), EV_READ | ((events & POLLOUT) ? EV_WRITE : 0),
                     on_ready, s);
        event_add(s->io, NULL);
        evtimer_del(s->timer);
        if (timeout >= 0) {
                struct timeval tv = { timeout / 1000, (timeout % 1000) * 1000 };

                evtimer_add(s->timer, &tv);
        }
}

int main(int argc, char **argv)
{
        struct consumer s = { .result = 1 };
        struct timeval limit = { 60, 0 };
        int k;

        if (argc != 4 || (s.last = strtoull(argv[3], NULL, 10)) == 0) {
                fprintf(stderr, "usage: frame-consumer SOCKET NAME LAST\n");
                return 2;
        }
        s.name = argv[2];
        k = iomem_connect_flags(argv[1], IOMEM_CONNECT_EVENTS, &s.c);
        if (k == 0)
                k = iomem_watch(s.c, s.name, NULL);
        if (k < 0) {
                fprintf(stderr, "frame-consumer: %s\n", iomem_strerror(k));
                iomem_disconnect(s.c);
                return 1;
        }
        iomem_client_set_event_cb(s.c, on_event, &s);
        s.base = event_base_new();
        s.io = event_new(s.base, iomem_client_fd(s.c), EV_READ, on_ready, &s);
        s.timer = evtimer_new(s.base, on_ready, &s);
        /* a version published before the watch began: ask once */
        k = iomem_open_version_async(s.c, s.name, IOMEM_OPEN_RDONLY, 0, 0, on_frame, &s);
        if (k < 0) {
                fprintf(stderr, "frame-consumer: %s\n", iomem_strerror(k));
                return 1;
        }
        consumer_arm(&s);
        event_base_loopexit(s.base, &limit);
        event_base_dispatch(s.base);
        if (s.result == 0)
                printf("saw %llu whole frames, the last %llu\n", (unsigned long long)s.seen_frames,
                       (unsigned long long)s.newest);
        else if (s.newest < s.last)
                fprintf(stderr, "frame-consumer: stopped at frame %llu of %llu\n", (unsigned long long)s.newest,
                        (unsigned long long)s.last);
        event_free(s.io);
        event_free(s.timer);
        event_base_free(s.base);
        iomem_disconnect(s.c);
        return s.result;
}
