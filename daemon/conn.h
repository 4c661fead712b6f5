/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* conn: one client connection: lifetime, I/O, replies, throttling, and the request table (dispatch). */
#pragma once

/*
 * server.c owns the event loop and calls in here: conn_handle_input() when
 * the socket is readable, conn_flush() when it is writable, conn_timeout()
 * when conn_deadline() passes. Anything that happens to a connection outside
 * those calls (a reply to a parked OPEN queued because another client
 * created the name) is reported through ctx->notify so the loop can arm its
 * write event. A connection that must go is marked dead and keeps its
 * memory until conn_free(), which the loop calls later (deferred free).
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "metrics.h"
#include "regtab.h"

struct conn;
struct conn_watch;
struct quota;

/* Lines logged about what one uid does, per CONN_LOG_WINDOW_NS (see conn_access_log_allowed()). */
#define CONN_LOG_SLOTS 256u
#define CONN_LOG_PER_UID 32u
#define CONN_LOG_WINDOW_NS (60ULL * 1000000000ULL)

struct conn_log_slot {
        uint32_t uid;
        unsigned lines;     /* in the window that began at start_ns */
        bool told;          /* "further lines ... not logged" was said in this window */
        uint64_t start_ns;  /* 0 = unused */
};

/* State shared by all connections of one daemon. */
struct conn_ctx {
        struct regtab *regtab;
        const struct config *config;
        uint64_t start_ns;    /* CLOCK_MONOTONIC at startup, for STATUS uptime */
        uint64_t connections; /* live struct conn (maintained by conn_new/conn_free) */
        uint64_t generation;  /* bumped whenever regions or connections change */
        struct quota *quota;  /* per-uid usage: made by the owner of the context (quota_new() once the regions
                               * are restored), freed after the last connection */
        uint64_t refused_logged_ns; /* last log line about a refused connection (one per second at most) */
        struct metrics metrics;     /* counters since start (zeroed with the context), for METRICS */
        struct conn_watch *watches; /* conn-watch.c: every WATCH of every connection */
        /*
         * conn_send_early() while a connection has its turn (early_hold > 0, nested calls counted): the
         * watchers to send to when it ends, each once, linked through conn.early_next
         */
        struct conn *early_held;
        unsigned early_hold;
        /*
         * conn-region.c: RESERVE CREATEs in flight (reserver.h). Their names are
         * claimed (CREATE, REGISTER and PUBLISH of one are -EBUSY) and their sizes
         * and count are charged to their owners and counted against max-bytes
         * and max-regions as if they were in the table already.
         */
        struct conn_reserve *reserves;
        uint64_t reserving_bytes;
        uint64_t reserving_regions;
        struct conn_log_slot log_slots[CONN_LOG_SLOTS]; /* per-uid log budget, by uid hash */
        /* the HELLO reply's payload, the same for every connection: encoded once per configuration */
        uint8_t hello_reply[128];
        int hello_reply_len;
        uint64_t hello_reply_generation; /* config.generation + 1 it was encoded for; 0 = not yet */
        uint64_t fds_unread;     /* fds sent to all clients and not known to be received */
        uint64_t max_fds_unread; /* bound on that: 0 = half of RLIMIT_NOFILE, taken at first use */
        uint64_t swept_ns;       /* last call of sweep */
        /*
         * sockets of freed connections whose peer had not read all the fds sent
         * (conn_free): kept, and still counted in fds_unread and the uid's, until
         * conn_reap_orphans() sees them read or the peer gone
         */
        struct conn_orphan *orphans;
        size_t norphans, orphans_cap;
        /*
         * called when a uid's or the daemon's fds in flight reach their bound: the
         * owner calls conn_refresh_unread() on every connection (idle clients'
         * counts go stale otherwise); may be NULL
         */
        void (*sweep)(struct conn_ctx *ctx);
        /* called when @c got output or died outside its own callbacks; may be NULL */
        void (*notify)(struct conn *c, void *userdata);
        /*
         * leased regions of connections gone, still to delete (conn_region_expire()), linked by region.lease;
         * expire_later is called when the list becomes non-empty: the owner calls conn_region_expire() at a
         * later turn of its loop (NULL: they are deleted at once, all of them)
         */
        struct region *expiring, *expiring_tail; /* oldest hang-up's first: each one's are appended */
        void (*expire_later)(struct conn_ctx *ctx);
        /*
         * a freed connection's block, kept for the next conn_new() (one at most; poisoned for ASan):
         * a short-lived client then costs no malloc and free (~130 instructions); conn_ctx_release() frees it
         */
        struct conn *spare;
};

/* What a request wants to do with a region (conn_access_check(), conn-access.h). */
enum conn_access {
        CONN_ACCESS_READ,   /* OPEN read-only, STAT, LIST */
        CONN_ACCESS_WRITE,  /* OPEN read-write, CREATE of an existing name */
        CONN_ACCESS_RESIZE, /* the others need ownership (or root) */
        CONN_ACCESS_SEAL,
        CONN_ACCESS_DELETE,
        CONN_ACCESS_CHMOD,
};

/*
 * Lines logged about one connection's requests (refusals, CHMOD, CHOWN, REGISTER refused, its drop); later
 * ones are counted, not logged, and a uid's connections together get CONN_LOG_PER_UID lines a minute (a
 * hostile peer cannot flood the log, with one connection or many).
 */
#define CONN_MAX_LOGGED_REFUSALS 16u

/*
 * Work one connection may do per turn of the event loop: one unit per
 * request, and for LIST one more per 256 regions it examined. The rest of
 * its buffered requests waits for its next turn.
 */
#define CONN_WORK_PER_TURN 64u

/*
 * Fds in flight (sent, not yet read by the client): the kernel charges them to
 * the daemon's uid and refuses every further fd the daemon sends
 * (ETOOMANYREFS) once they pass its RLIMIT_NOFILE, for every client. So at
 * most CONN_MAX_FDS_UNREAD per connection, quota-fds (else
 * max(CONN_MAX_FDS_UNREAD, daemon-wide / 16)) per uid, and half of
 * RLIMIT_NOFILE daemon-wide; replies with fds past that wait in the queue.
 */
#define CONN_MAX_FDS_UNREAD 64u

/* Most OPEN requests one connection may have parked (WAIT) at once. */
#define CONN_MAX_WAITS 64u

/* Return: CLOCK_MONOTONIC in nanoseconds. */
uint64_t conn_now_ns(void);

/*
 * conn_new() - a connection over the accepted socket @fd (consumed, even on
 * error). The peer's uid/gid/pid are read here with SO_PEERCRED and its
 * groups with SO_PEERGROUPS (P2). A peer that the allow-list refuses or
 * that is at its connection quota gets one error reply (opcode HELLO, id 0)
 * and the socket is closed, before anything it sent is parsed (P1, R6).
 * Return: 0 with *connp set; -EACCES (allow-list); -EDQUOT (connection
 * quota); -ENOMEM; negative errno from getsockopt.
 */
int conn_new(struct conn_ctx *ctx, int fd, struct conn **connp);

/* conn_ctx_release() - free what @ctx keeps between connections (its spare block); after the last conn_free(). */
void conn_ctx_release(struct conn_ctx *ctx);

/*
 * conn_refuse_full() - refuse a peer accepted while the daemon has
 * max-connections open: an error reply to its HELLO (-EDQUOT, with the
 * numbers and what to do), then close @fd (consumed).
 */
void conn_refuse_full(struct conn_ctx *ctx, int fd);

/*
 * conn_free() - close the socket and every fd queued on it, drop parked
 * OPENs, delete the regions leased to this connection. NULL-safe, keeps
 * errno. Return: NULL.
 */
struct conn *conn_free(struct conn *c);

/* Return: the socket fd (owned by the connection). */
int conn_fd(const struct conn *c);

/* conn_set_userdata() - an opaque pointer for the event loop. Return: nothing. */
void conn_set_userdata(struct conn *c, void *userdata);

/* Return: the pointer set with conn_set_userdata(). */
void *conn_get_userdata(const struct conn *c);

/* conn_peer() - the SO_PEERCRED identity read at accept; NULL outputs are skipped. Return: nothing. */
void conn_peer(const struct conn *c, uid_t *uidp, gid_t *gidp, pid_t *pidp);

/*
 * conn_refresh_unread() - forget the fds in flight to @c if its peer has read
 * everything sent to it (SIOCOUTQ). Return: nothing.
 */
void conn_refresh_unread(struct conn *c);

/*
 * conn_uid_fds_default() - the bound on one uid's fds queued or in flight
 * when quota-fds is not set: 1/16 of the daemon-wide bound on fds in flight
 * (half of RLIMIT_NOFILE), at least CONN_MAX_FDS_UNREAD. Every queued fd is
 * one of the daemon's, so without it one uid's connections that never read
 * could use up the daemon's fds. Return: the bound.
 */
uint64_t conn_uid_fds_default(struct conn_ctx *ctx);

/*
 * conn_recheck_allowed() - after a reload (SIGHUP): drop @c if the allow-list
 * no longer lets its peer connect (with its supplementary groups, read now if
 * the list names groups). A dropped connection gets nothing more: no reply,
 * no parked OPEN's fd, no event; its leases end as at any departure. A
 * line says so if @log (the caller bounds how many: a reload may drop
 * thousands).
 * Return: true if @c stays (or was dead already), false if it was dropped.
 */
bool conn_recheck_allowed(struct conn *c, bool log);

/*
 * conn_sweep_unread() - have every connection's count of fds in flight
 * refreshed (idle clients that read everything keep stale counts) and reap
 * orphans, at most once a millisecond. Return: nothing.
 */
void conn_sweep_unread(struct conn_ctx *ctx);

/*
 * conn_reap_orphans() - close the sockets of freed connections whose peer has
 * since read its fds or closed its end, and stop counting those fds; with
 * @all, close them all (the daemon stops). Return: nothing.
 */
void conn_reap_orphans(struct conn_ctx *ctx, bool all);

/*
 * conn_expire_leases() - delete the next batch of leased regions whose connection is gone (conn_ctx.expiring,
 * conn_region_expire()): at each turn of the loop after conn_ctx.expire_later asked for it.
 * Return: true if some are left (ask again).
 */
bool conn_expire_leases(struct conn_ctx *ctx);

/*
 * conn_handle_input() - read what the socket has (a bounded number of
 * recvmsg calls), then parse and dispatch every complete frame, queueing
 * replies. Return: 0; a negative errno when the connection is dead (the
 * caller frees it later).
 */
int conn_handle_input(struct conn *c);

/*
 * conn_flush() - send queued replies; once they drain below half the queue
 * bound, requests held back by throttling are dispatched. Return: 0 when all is sent; -EAGAIN
 * if output remains (wait until writable); another negative errno when the
 * connection is dead.
 */
int conn_flush(struct conn *c);

/* Return: true if replies are queued. */
bool conn_has_output(const struct conn *c);

/*
 * Return: true while the connection wants its socket read: not dead, not
 * closing, not throttled because its replies are not being read, without a
 * reservation in flight (conn-region.c; conn_wants_hangup() then), and its
 * uid has fewer than
 * CLOSER_MAX_PENDING_PER_UID fds waiting to be closed (closer.h;
 * conn_deadline() then asks to look again shortly).
 */
bool conn_wants_input(const struct conn *c);

/*
 * conn_wants_hangup() - Return: true while the socket is not read (a
 * reservation in flight) but its peer's hang-up matters: the event loop then
 * calls conn_hangup() when the peer shuts its end (EPOLLRDHUP).
 */
bool conn_wants_hangup(const struct conn *c);

/*
 * conn_hangup() - the peer shut (at least) its sending side while the socket
 * is not read: a peer gone altogether is dropped, which abandons its
 * reservation (its quota, name and job released at once); one that only
 * shut its sending side still gets its reply. Return: 0; a negative errno
 * when the connection is dead.
 */
int conn_hangup(struct conn *c);

/* Return: true if the connection was dropped and should be freed. */
bool conn_is_dead(const struct conn *c);

/*
 * conn_is_done() - Return: true if the connection should be freed now: it is
 * dead, or it is closing (after a fatal error reply) and everything is sent.
 */
bool conn_is_done(const struct conn *c);

/*
 * conn_deadline() - Return: the CLOCK_MONOTONIC time (ns) at which
 * conn_timeout() has work (handshake timeout, parked OPEN timeouts, closing
 * grace), or 0 if none.
 */
uint64_t conn_deadline(const struct conn *c);

/*
 * conn_timeout() - act on everything due at @now_ns: answer timed-out OPENs
 * with -ETIMEDOUT, drop a connection that never sent HELLO (F9) or that
 * cannot finish closing. Return: 0; a negative errno when the connection is dead.
 */
int conn_timeout(struct conn *c, uint64_t now_ns);
