/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* conn-internal: the connection state, request results and reply helpers that the request modules use. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "conn.h"
#include "proto.h"
#include "transport.h"

struct conn_event;
struct conn_reserve;
struct conn_wait;
struct quota_usage;
struct region;

struct conn {
        struct conn_ctx *ctx;
        int fd; /* owned */
        bool transport_ready; /* @transport is set up */
        uid_t uid;
        gid_t gid;
        pid_t pid;
        gid_t *groups; /* SO_PEERGROUPS, may be NULL; read when first needed (conn_access_load_groups()) */
        size_t ngroups;
        bool groups_loaded;
        unsigned refusals; /* logged so far (CONN_MAX_LOGGED_REFUSALS) */
        struct quota_usage *usage; /* the uid charged at accept: its entry, held (quota_hold()) until conn_free() */
        struct config_quota limits; /* conn_limits(): those of uid and gid, quota-fds' default filled in */
        uid_t limits_uid;
        uint64_t limits_generation; /* config.generation they were read in */
        uint64_t fds_charged; /* queued and unread fds counted in the uid's quota usage */
        unsigned fds_unread;  /* fds sent since the peer last had read everything (SIOCOUTQ 0) */
        bool fds_gated;       /* a reply with fds waits: too many unread (conn_fd_budget()) */
        bool hello_done;
        bool in_request; /* handling its own request: a reply may lend it a region's fd (conn_region_send()) */
        bool dispatching; /* conn_dispatch() of one of its frames, its after() included: conn_send_early() waits */
        /* conn_send_early() held until the requester's turn ends: @c is on ctx->early_held (NULL: not on it) */
        struct conn *early_next, **early_pprev;
        bool page_info; /* replies may carry the page bits (HELLO PAGE_INFO, or a CREATE with HUGE/RESERVE) */
        bool closing; /* a fatal error reply is queued: read nothing more, free once sent */
        bool throttled; /* replies pile up: parse no more requests until they drain */
        bool backlog;   /* frames are buffered but this turn's work is done: go on at the next turn */
        unsigned turn_work; /* work done in this turn of the loop (CONN_WORK_PER_TURN): 1 per frame, more for LIST */
        bool dead;    /* dropped: nothing more is sent or read; conn_free() comes later */
        uint64_t handshake_deadline_ns; /* 0 = none */
        uint64_t close_deadline_ns;
        struct conn_wait *waits; /* conn-region.c: parked OPENs */
        unsigned nwaits;
        /*
         * conn-region.c: a RESERVE CREATE whose fallocate runs on a reserver
         * thread (reserver.h). While set, nothing more is read or dispatched
         * (replies stay in request order); only a hang-up is looked for.
         */
        struct conn_reserve *reserve;
        bool half_closed; /* conn_hangup() found only the peer's sending side shut */
        struct region *leases; /* conn-region.c: regions deleted with @c, through region.lease */
        /* conn-watch.c: the EVENTS feature */
        bool events;           /* HELLO asked for PROTO_HELLO_EVENTS */
        unsigned nwatches;
        uint32_t next_watch_id;
        struct conn_event *evq_head, *evq_tail; /* events not yet passed to the transport */
        unsigned nevents;
        bool overflow_pending; /* an OVERFLOW goes out before evq_head */
        uint64_t dropped;      /* events dropped since the last OVERFLOW went out */
        void *userdata;
        /*
         * Last, and not zeroed by conn_new(): the transport, which transport_init_storage() sets up, then its
         * first input buffer and fd batch, and room for its queued replies, so that a short-lived connection
         * allocates only itself (the transport sets up what it uses of them).
         */
        struct transport transport;
        struct transport_storage storage;
        struct transport_out_storage out_storage;
};

/*
 * What a request handler reports besides its return value. A handler returns
 * 0 when it has queued its reply (or parked the request), or a negative errno:
 * conn_dispatch() then sends the one error reply, with @message (NULL: the
 * request's "malformed ..." text, or for -EINVAL proto_refusal()'s words, for a payload its decoder refused). Whether
 * the connection died is read from conn.dead, never from the return value.
 */
struct conn_result {
        const char *message; /* text of the error reply: static, or @text */
        char text[256];      /* conn_failf()'s text, with the numbers of a limit */
        bool fatal;          /* close the connection once the error reply is sent */
        /* run once the reply (success or error) is queued, e.g. waking the OPENs parked on a new name */
        void (*after)(struct conn *c, void *arg);
        void *after_arg;
};

/* Set every field but @text's tail: a request's result is made on every request, and 256 zero bytes each time are
 * work on the hot path; conn_failf() writes @text before @message points to it. */
static inline void conn_result_init(struct conn_result *res)
{
        res->message = NULL;
        res->text[0] = '\0';
        res->fatal = false;
        res->after = NULL;
        res->after_arg = NULL;
}

/* A request handler: @f's fds may be taken (set to -1). Return: 0, or a negative errno with @res filled in. */
typedef int conn_handler_fn(struct conn *c, struct transport_frame *f, struct conn_result *res);

/* conn_fail() - @error with the text of its reply. Return: @error. */
static inline int conn_fail(struct conn_result *res, int error, const char *message)
{
        res->message = message;
        return error;
}

/* conn_failf() - @error with a text made of @fmt (a refused limit: its values and what to do). Return: @error. */
__attribute__((format(printf, 3, 4))) static inline int conn_failf(struct conn_result *res, int error,
                                                                   const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(res->text, sizeof(res->text), fmt, ap);
        va_end(ap);
        res->message = res->text;
        return error;
}

/* conn_limits()' slow path: read the limits again. Return: the limits. */
const struct config_quota *conn_limits_reread(const struct conn *c);

/*
 * conn_limits() - @c's quota limits (config_quota_for() of its uid and gid),
 * with quota-fds' default (conn_uid_fds_default()) when it is unset: read
 * once per connection, and again after a reload. Return: the limits.
 */
static inline const struct config_quota *conn_limits(const struct conn *c)
{
        if (c->limits_uid == c->uid && c->limits_generation == c->ctx->config->generation)
                return &c->limits;
        return conn_limits_reread(c);
}

/*
 * conn_usage() - @uid's quota usage: @c's own entry, held for it, when @uid
 * is the uid charged for @c; else looked up (NULL if @uid holds nothing).
 * Return: the usage, or NULL.
 */
const struct quota_usage *conn_usage(const struct conn *c, uint32_t uid);

/* conn_drop() - mark @c dead (freed later by the event loop) because of @error. Return: @error. */
int conn_drop(struct conn *c, int error);

/* conn_notify() - tell the event loop @c got output outside its own callbacks. Return: nothing. */
void conn_notify(struct conn *c);

/*
 * conn_send_early() - send @c's queued output now, from another connection's
 * request (an event it caused), instead of at the loop's later turn for @c:
 * only the transport's flush within the fd budget. Nothing of @c's own runs
 * (no request, no resume) and @c is not dropped here: an error shows again at
 * the flush conn_notify() schedules, which drops it. Does nothing while @c
 * dispatches a frame of its own. While a connection has its turn (its
 * requests' frames, conn_handle_input() and the other calls that dispatch
 * them), @c is only put on a list, once, and sent when that turn ends, before
 * the requester's replies leave (or before any of them leaves sooner): a
 * pipeline of N changes costs a watcher one sendmsg(), not N. Return: nothing.
 */
void conn_send_early(struct conn *c);

/*
 * conn_send_held() - if conn_send_early() holds @c (listed for the end of a
 * turn), send its output now and take it off the list: for a watcher whose
 * held output reached the level under which events are passed on
 * (conn-watch.c), so that the events past it do not pile up in its bounded
 * queue until the turn ends (and overflow it). Return: true if @c was held.
 */
bool conn_send_held(struct conn *c);

/* conn_reply_raw() - queue a reply; @fds consumed. On failure @c is dropped (c->dead). Return: nothing. */
void conn_reply_raw(struct conn *c, uint16_t opcode, uint32_t id, uint8_t flags, const void *payload, size_t len,
                    int *fds, unsigned nfds);

/*
 * conn_reply_encoded_with_fd() - conn_reply_encoded() with one fd, @fd,
 * borrowed (a region's own fd): the reply is sent at once and the caller
 * may close @fd after this returns; only a reply that has to wait is given
 * a copy. On failure @c is dropped. Return: nothing.
 */
void conn_reply_encoded_with_fd(struct conn *c, const struct proto_header *req, int len, const uint8_t *buf, int fd);

/* conn_reply_error() - queue an error reply; as conn_reply_raw(). Return: nothing. */
void conn_reply_error(struct conn *c, uint16_t opcode, uint32_t id, int error, const char *message);

/*
 * conn_reply_encoded() - queue the reply an encoder wrote into @buf (@len < 0:
 * a daemon bug, @c is dropped); @fds consumed. Return: nothing.
 */
void conn_reply_encoded(struct conn *c, const struct proto_header *req, int len, const uint8_t *buf, int *fds,
                        unsigned nfds);

/*
 * conn_request_opcode() - the opcode of row @slot of the request table, for
 * the counters in struct metrics. Return: the opcode; 0 for METRICS_REQUEST_SLOTS
 * (requests without a row); -1 past the last row.
 */
int conn_request_opcode(unsigned slot);
