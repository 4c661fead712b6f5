/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* conn-metrics: the METRICS request: the counters of struct metrics and the gauges of their owners, per rule. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "closer.h"
#include "conn-metrics.h"
#include "metrics.h"
#include "proto.h"
#include "quota.h"
#include "regtab.h"
#include "reserver.h"
#include "service.h"

#define NSEC_PER_SEC 1000000000ULL

struct conn_metrics_out {
        struct proto_metrics_writer w;
        bool truncated;
};

static void conn_metrics_put(struct conn_metrics_out *o, uint16_t metric, uint32_t label, uint64_t value)
{
        struct proto_metric_entry e = { .metric = metric, .label = label, .value = value };

        if (!o->truncated && proto_metrics_writer_add(&o->w, &e) < 0)
                o->truncated = true;
}

/* One uid's entries; @u may be NULL (it holds nothing). */
static void conn_metrics_put_uid(struct conn_metrics_out *o, const struct metrics *m, uint32_t uid,
                                 const struct quota_usage *u)
{
        conn_metrics_put(o, PROTO_METRIC_UID_REGIONS, uid, u ? u->regions : 0);
        conn_metrics_put(o, PROTO_METRIC_UID_BYTES, uid, u ? u->bytes : 0);
        conn_metrics_put(o, PROTO_METRIC_UID_CONNECTIONS, uid, u ? u->connections : 0);
        conn_metrics_put(o, PROTO_METRIC_UID_QUEUED_FDS, uid, u ? u->fds : 0);
        conn_metrics_put(o, PROTO_METRIC_UID_QUOTA_REFUSALS, uid, metrics_refusals(m, uid));
}

/* Every uid in the quota table or the refusal table, in uid order (both are sorted). */
static void conn_metrics_put_all_uids(struct conn_metrics_out *o, const struct metrics *m, const struct quota *q)
{
        size_t nq = quota_count(q), iq = 0;
        uint32_t ir = 0;

        while (iq < nq || ir < m->n_refused) {
                const struct quota_usage *u = iq < nq ? quota_nth(q, iq) : NULL;
                uint32_t uid;

                if (u && (ir == m->n_refused || u->uid <= m->refused[ir].uid)) {
                        uid = u->uid;
                        iq++;
                } else {
                        uid = m->refused[ir].uid;
                        u = NULL;
                }
                if (ir < m->n_refused && m->refused[ir].uid == uid)
                        ir++;
                conn_metrics_put_uid(o, m, uid, u);
        }
}

int conn_metrics_handle(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct conn_ctx *ctx = c->ctx;
        const struct metrics *m = &ctx->metrics;
        struct conn_metrics_out o = { .truncated = false };
        uint64_t store_fds, store_max;
        uint8_t *buf;
        int op, len;

        buf = malloc(PROTO_MAX_PAYLOAD);
        if (!buf)
                return conn_fail(res, -ENOMEM, "out of memory");
        proto_metrics_writer_init(&o.w, buf, PROTO_MAX_PAYLOAD);
        service_store_usage(&store_fds, &store_max);
        conn_metrics_put(&o, PROTO_METRIC_REGIONS, 0, regtab_count(ctx->regtab));
        conn_metrics_put(&o, PROTO_METRIC_BYTES, 0, regtab_bytes(ctx->regtab));
        conn_metrics_put(&o, PROTO_METRIC_CONNECTIONS, 0, ctx->connections);
        conn_metrics_put(&o, PROTO_METRIC_UPTIME, 0, (conn_now_ns() - ctx->start_ns) / NSEC_PER_SEC);
        conn_metrics_put(&o, PROTO_METRIC_CONNECTIONS_ACCEPTED, 0, m->connections_accepted);
        conn_metrics_put(&o, PROTO_METRIC_CONNECTIONS_REFUSED, 0, m->connections_refused);
        conn_metrics_put(&o, PROTO_METRIC_WAITING_OPENS, 0, regtab_waiter_count(ctx->regtab, REGTAB_WAIT_NAME));
        conn_metrics_put(&o, PROTO_METRIC_FD_STORE_FDS, 0, store_fds);
        conn_metrics_put(&o, PROTO_METRIC_FD_STORE_MAX, 0, store_max);
        conn_metrics_put(&o, PROTO_METRIC_KEEPERS, 0, regtab_keeper_count(ctx->regtab));
        conn_metrics_put(&o, PROTO_METRIC_REGION_FDS, 0, regtab_hot_fds(ctx->regtab));
        conn_metrics_put(&o, PROTO_METRIC_QUOTA_REFUSALS, 0, m->quota_refusals);
        /* what the daemon closes later: a test waits for these to be 0 before it counts the daemon's fds */
        conn_metrics_put(&o, PROTO_METRIC_CLOSING_FDS, 0, closer_closing());
        conn_metrics_put(&o, PROTO_METRIC_ORPHAN_SOCKETS, 0, ctx->norphans);
        conn_metrics_put(&o, PROTO_METRIC_JOBS, 0, reserver_jobs());
        /* every request with a row, even at 0 (a rate needs the series from the start); unknown opcodes once seen */
        for (unsigned slot = 0; (op = conn_request_opcode(slot)) >= 0; slot++)
                conn_metrics_put(&o, PROTO_METRIC_REQUESTS, (uint32_t)op, m->requests[slot]);
        if (m->requests[METRICS_REQUEST_SLOTS])
                conn_metrics_put(&o, PROTO_METRIC_REQUESTS, 0, m->requests[METRICS_REQUEST_SLOTS]);
        for (unsigned slot = 0; (op = conn_request_opcode(slot)) >= 0; slot++)
                conn_metrics_put(&o, PROTO_METRIC_REQUEST_ERRORS, (uint32_t)op, m->request_errors[slot]);
        if (m->request_errors[METRICS_REQUEST_SLOTS])
                conn_metrics_put(&o, PROTO_METRIC_REQUEST_ERRORS, 0, m->request_errors[METRICS_REQUEST_SLOTS]);
        /* codes only once seen: the set of errnos is large and most never happen */
        for (unsigned code = 0; code <= METRICS_ERRNO_MAX; code++)
                if (m->errors[code])
                        conn_metrics_put(&o, PROTO_METRIC_ERRORS, code, m->errors[code]);
        if (c->uid == 0)
                conn_metrics_put_all_uids(&o, m, ctx->quota);
        else
                conn_metrics_put_uid(&o, m, c->uid, quota_get(ctx->quota, c->uid));
        len = proto_metrics_writer_finish(&o.w, o.truncated ? PROTO_METRICS_TRUNCATED : 0);
        conn_reply_encoded(c, &f->hdr, len, buf, NULL, 0);
        free(buf);
        return 0;
}
