/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* conn-watch: WATCH and UNWATCH, the per-connection event queue, and the fan-out of region changes to watchers. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "config.h"
#include "conn-access.h"
#include "conn-internal.h"
#include "conn-watch.h"
#include "log.h"
#include "proto.h"
#include "quota.h"

/*
 * Events wait in a per-connection queue of at most config.max_events and go
 * to the transport only while its output is below CONN_WATCH_OUT_LOW: a
 * watcher that does not read holds at most that much of the daemon's memory,
 * and the queue overflows (one OVERFLOW replaces what it held) instead of
 * growing. Before any reply the whole queue is passed on (conn_watch_pump
 * with @all), so an event is never overtaken by a reply queued after it.
 */
#define CONN_WATCH_OUT_LOW (64u * 1024u)
#define CONN_WATCH_EVENT_MAX (48u + 3u + PROTO_NAME_MAX)

struct conn_watch {
        struct conn *conn;
        uint32_t id;
        struct conn_watch *prev, *next; /* conn_ctx.watches */
        size_t prefix_len;
        char prefix[];
};

struct conn_event {
        struct conn_event *next;
        uint16_t opcode;
        uint32_t id; /* the watch id */
        uint16_t len;
        uint8_t payload[];
};

static void conn_watch_unlink(struct conn_ctx *ctx, struct conn_watch *w)
{
        if (w->prev)
                w->prev->next = w->next;
        else
                ctx->watches = w->next;
        if (w->next)
                w->next->prev = w->prev;
        w->conn->nwatches--;
}

static void conn_watch_queue_clear(struct conn *c)
{
        struct conn_event *e, *next;

        for (e = c->evq_head; e; e = next) {
                next = e->next;
                free(e);
        }
        c->evq_head = c->evq_tail = NULL;
        c->nevents = 0;
}

/* Return: the output level under which events are passed on. */
static size_t conn_watch_out_low(const struct conn *c)
{
        size_t quarter = c->transport.max_out_bytes / 4;

        return quarter < CONN_WATCH_OUT_LOW ? quarter : CONN_WATCH_OUT_LOW;
}

/* Queue one event frame on @c, or overflow. */
static void conn_watch_enqueue(struct conn *c, uint16_t opcode, uint32_t id, const uint8_t *payload, size_t len)
{
        unsigned max = c->ctx->config->max_events ? c->ctx->config->max_events : CONFIG_DEFAULT_MAX_EVENTS;
        struct conn_event *e = NULL;

        if (c->nevents < max)
                e = malloc(sizeof(*e) + len);
        if (!e) {
                /* full (or out of memory): what the queue held is lost, and the client is told so */
                c->dropped += (uint64_t)c->nevents + 1;
                conn_watch_queue_clear(c);
                c->overflow_pending = true;
                return;
        }
        e->next = NULL;
        e->opcode = opcode;
        e->id = id;
        e->len = (uint16_t)len;
        memcpy(e->payload, payload, len);
        if (c->evq_tail)
                c->evq_tail->next = e;
        else
                c->evq_head = e;
        c->evq_tail = e;
        c->nevents++;
}

/* Pass one frame to the transport; on a queue bound @c is dropped (as for replies). Return: 0 or negative errno. */
static int conn_watch_send(struct conn *c, uint16_t opcode, uint32_t id, const void *payload, size_t len)
{
        struct proto_header h = { .flags = PROTO_FLAG_REPLY, .opcode = opcode, .id = id };
        int r;

        r = transport_queue(&c->transport, &h, payload, len, NULL, 0);
        if (r < 0) {
                log_warning("client pid=%d uid=%u does not read its events: dropping it", (int)c->pid,
                            (unsigned)c->uid);
                conn_drop(c, r);
                conn_watch_queue_clear(c);
                c->overflow_pending = false;
        }
        return r;
}

void conn_watch_pump(struct conn *c, bool all)
{
        size_t low;

        if (c->dead || (!c->overflow_pending && !c->evq_head))
                return;
        low = conn_watch_out_low(c);
        if (!all && c->transport.out_bytes >= low)
                return;
        if (c->overflow_pending) {
                struct proto_event_overflow o = { .dropped = c->dropped };
                uint8_t buf[16];
                int n = proto_event_overflow_encode(&o, buf, sizeof(buf));

                if (n < 0 || conn_watch_send(c, PROTO_EV_OVERFLOW, 0, buf, (size_t)n) < 0)
                        return;
                c->overflow_pending = false;
                c->dropped = 0;
        }
        while (c->evq_head && (all || c->transport.out_bytes < low)) {
                struct conn_event *e = c->evq_head;

                if (conn_watch_send(c, e->opcode, e->id, e->payload, e->len) < 0)
                        return;
                c->evq_head = e->next;
                if (!c->evq_head)
                        c->evq_tail = NULL;
                c->nevents--;
                free(e);
        }
}

bool conn_watch_pending(const struct conn *c)
{
        return c->overflow_pending || c->evq_head;
}

void conn_watch_release(struct conn *c)
{
        struct conn_watch *w, *next;

        for (w = c->ctx->watches; w && c->nwatches; w = next) {
                next = w->next;
                if (w->conn != c)
                        continue;
                conn_watch_unlink(c->ctx, w);
                free(w);
        }
        conn_watch_queue_clear(c);
        c->overflow_pending = false;
}

/* Return: the number of watches @uid holds on all its connections. */
static uint64_t conn_watch_count_uid(const struct conn_ctx *ctx, uid_t uid)
{
        uint64_t n = 0;

        for (const struct conn_watch *w = ctx->watches; w; w = w->next)
                if (w->conn->uid == uid)
                        n++;
        return n;
}

int conn_watch_handle_watch(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct conn_ctx *ctx = c->ctx;
        struct proto_watch_reply rep = {};
        struct config_quota limits;
        struct proto_watch m;
        struct conn_watch *w;
        uint8_t buf[16];
        size_t len;
        uint64_t held;
        int k;

        k = proto_watch_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return k;
        config_quota_for(ctx->config, c->uid, c->gid, &limits);
        held = conn_watch_count_uid(ctx, c->uid);
        if (limits.watches && held >= limits.watches) {
                struct quota_excess e = { QUOTA_WATCHES, c->uid, held, 1, limits.watches };

                return conn_fail(res, -EDQUOT, quota_excess_format(&e, res->text, sizeof(res->text)));
        }
        len = strlen(m.prefix);
        w = calloc(1, sizeof(*w) + len + 1);
        if (!w)
                return conn_fail(res, -ENOMEM, "out of memory");
        memcpy(w->prefix, m.prefix, len + 1);
        w->prefix_len = len;
        w->conn = c;
        /* ids are never 0 and not reused on the connection while it could matter (2^32 watches later) */
        if (++c->next_watch_id == 0)
                c->next_watch_id = 1;
        w->id = c->next_watch_id;
        w->next = ctx->watches;
        if (w->next)
                w->next->prev = w;
        ctx->watches = w;
        c->nwatches++;
        rep.watch_id = w->id;
        conn_reply_encoded(c, &f->hdr, proto_watch_reply_encode(&rep, buf, sizeof(buf)), buf, NULL, 0);
        return 0;
}

int conn_watch_handle_unwatch(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct proto_unwatch m;
        struct conn_watch *w;
        int k;

        k = proto_unwatch_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return k;
        for (w = c->ctx->watches; w; w = w->next)
                if (w->conn == c && w->id == m.watch_id)
                        break;
        if (!w)
                return conn_fail(res, -ENOENT, "no such watch");
        conn_watch_unlink(c->ctx, w);
        free(w);
        /* its events already queued go out before this reply (conn_reply_raw passes the queue on first) */
        conn_reply_raw(c, f->hdr.opcode, f->hdr.id, 0, NULL, 0, NULL, 0);
        return 0;
}

/* Return: @r's seals as the kernel has them now where its fd is here, else the last seen. */
static uint32_t conn_watch_seals(struct region *r)
{
        int k;

        if (r->fd >= 0 && r->meta.backend == PROTO_BACKEND_MEMFD) {
                k = fcntl(r->fd, F_GET_SEALS);
                if (k >= 0)
                        r->seals = (uint32_t)k;
        }
        return r->seals;
}

/*
 * Return: true if @c may read a region described by @meta. As every access
 * decision, with the supplementary groups where they matter (loaded once
 * per connection): without them a group whose bits deny what "other" allows
 * would be judged "other", and a group that may read would not be.
 */
static bool conn_watch_may_read(struct conn *c, const struct region_meta *meta)
{
        struct access_cred cred = conn_access_cred(c);

        if (access_needs_groups(&cred, meta, ACCESS_NEED_READ) && !c->groups_loaded) {
                conn_access_load_groups(c);
                cred = conn_access_cred(c);
        }
        return access_check(&cred, meta, ACCESS_NEED_READ) == 0;
}

void conn_watch_notify(struct conn_ctx *ctx, uint16_t kind, struct region *r, const struct region_meta *before,
                       uint64_t replaced_id)
{
        struct proto_event ev;
        uint8_t buf[CONN_WATCH_EVENT_MAX];
        int n;

        if (!ctx->watches)
                return;
        ev = (struct proto_event){
                .id = r->meta.id,
                .generation = region_generation(r),
                .size = r->size,
                .replaced_id = replaced_id,
                .seals = conn_watch_seals(r),
                .mode = r->meta.mode,
                .uid = r->meta.uid,
                .gid = r->meta.gid,
                .name = r->name,
        };
        n = proto_event_encode(&ev, buf, sizeof(buf));
        if (n < 0) {
                log_error("cannot encode an event for region '%s': %s", r->name, strerror(-n));
                return;
        }
        for (struct conn_watch *w = ctx->watches; w; w = w->next) {
                struct conn *c = w->conn;

                /* a closing connection (its last, fatal reply is queued) gets nothing more */
                if (c->dead || c->closing || r->name_len < w->prefix_len ||
                    memcmp(r->name, w->prefix, w->prefix_len) != 0)
                        continue;
                if (!conn_watch_may_read(c, &r->meta) && (!before || !conn_watch_may_read(c, before)))
                        continue;
                conn_watch_enqueue(c, kind, w->id, buf, (size_t)n);
        }
        /*
         * Then hand them on, each connection once; a watcher of the requester's own connection included. They
         * leave ahead of the reply to the request that caused them (sent when the requester's turn ends): a
         * watcher learns of a change as soon as the daemon made it, not one sendmsg and the requester's
         * wake-up later (docs/protocol.md, section on events). A change made in a connection's turn (by its
         * requests) is sent when that turn ends, still before its replies leave (conn_send_early() holds it):
         * a pipeline of many changes costs a watcher one sendmsg(), not one per change; a change made outside
         * any turn (a timer, a departure's leases, a reservation done) is sent at once. The loop's turn for
         * the watcher still follows (conn_notify()): it sends what did not fit and resumes what waited. Only a
         * connection whose output was empty sends early (a held send counts as output: later changes of the
         * same turn join it): output already queued waits for room in its socket (or for its fd budget, or
         * for its turn) and these go with it then; trying now would mostly be a sendmsg() the full socket
         * refuses, once per watch of a client that reads nothing, for every change of any region.
         */
        for (struct conn_watch *w = ctx->watches; w; w = w->next) {
                struct conn *c = w->conn;
                bool queued;

                if (c->dead || !conn_watch_pending(c))
                        continue;
                queued = transport_has_output(&c->transport);
                conn_watch_pump(c, false);
                /*
                 * Held for the end of the turn (conn_send_early()) and filled up to the pump's level: sent now,
                 * as it would have been at each change without the hold, and the rest follows; else a pipeline
                 * of changes would overflow the queue of a watcher that keeps up.
                 */
                if (!c->dead && conn_watch_pending(c) && conn_send_held(c)) {
                        queued = transport_has_output(&c->transport);
                        conn_watch_pump(c, false);
                }
                if (!transport_has_output(&c->transport) && !c->dead)
                        continue;
                if (!queued)
                        conn_send_early(c);
                conn_notify(c);
        }
}
