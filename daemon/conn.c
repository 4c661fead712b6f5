/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* conn: one client connection: lifetime, I/O, replies, throttling, and the request table (dispatch). */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "asan.h"
#include "backend.h"
#include "closer.h"
#include "conn-access.h"
#include "conn-internal.h"
#include "conn-metrics.h"
#include "conn-region.h"
#include "conn-watch.h"
#include "conn.h"
#include "log.h"
#include "proto.h"
#include "quota.h"
#include "service.h"
#include "transport.h"

#define CONN_READS_PER_CALL 16            /* recvmsg calls per readable event, for fairness */
#define CONN_CLOSE_GRACE_NS (5ULL * 1000000000ULL) /* to deliver a last error reply */
#define NSEC_PER_SEC 1000000000ULL
#define CONN_CLOSER_RECHECK_NS (20ULL * 1000000ULL) /* a uid paused for its pending closes: look again */
#define CONN_UNREAD_RECHECK_NS (20ULL * 1000000ULL) /* replies with fds wait for the peer to read: look again */
#define CONN_SWEEP_INTERVAL_NS (1000000ULL)          /* at most one sweep of every connection per ms */

uint64_t conn_now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

void conn_notify(struct conn *c)
{
        if (c->ctx->notify)
                c->ctx->notify(c, c->userdata);
}

/* Take @c off its context's list of held early sends (conn_send_early()), if it is on it. */
static void conn_early_unlink(struct conn *c)
{
        if (!c->early_pprev)
                return;
        *c->early_pprev = c->early_next;
        if (c->early_next)
                c->early_next->early_pprev = c->early_pprev;
        c->early_next = NULL;
        c->early_pprev = NULL;
}

/* Mark the connection for freeing. Only unhooks what must not fire again; conn_free() does the rest. */
int conn_drop(struct conn *c, int error)
{
        if (c->dead)
                return error;
        c->dead = true;
        conn_early_unlink(c); /* a dead connection is sent nothing (and may be freed before the turn ends) */
        /* parked OPENs may already be detached by an ongoing regtab_wake(): their memory stays until conn_free() */
        conn_region_unhook(c);
        log_debug("connection pid=%d uid=%u dropped: %s", (int)c->pid, (unsigned)c->uid, strerror(-error));
        return error;
}

/* ---- lifetime ----------------------------------------------------------- */

/* For __attribute__((cleanup)) in conn_new(). */
static void conn_closep(int *fdp)
{
        if (*fdp >= 0)
                close(*fdp);
}

static void conn_groups_freep(gid_t **groupsp)
{
        free(*groupsp);
}

/* A connection conn_new() has not handed out: not charged, not counted. */
static void conn_unbuilt_freep(struct conn **cp)
{
        struct conn *c = *cp;

        if (!c)
                return;
        if (c->transport_ready)
                transport_deinit(&c->transport);
        free(c->groups);
        free(c);
}

/* The limits of @uid with primary group @gid, as conn_limits() gives them. */
static void conn_limits_read(struct conn_ctx *ctx, uid_t uid, gid_t gid, struct config_quota *limits)
{
        config_quota_for(ctx->config, uid, gid, limits);
        if (!limits->fds)
                limits->fds = conn_uid_fds_default(ctx); /* queued fds are the daemon's: never unbounded */
}

const struct config_quota *conn_limits_reread(const struct conn *c)
{
        struct conn *mc = (struct conn *)c; /* a cache: filling it changes no observable state */

        conn_limits_read(c->ctx, c->uid, c->gid, &mc->limits);
        mc->limits_uid = c->uid;
        mc->limits_generation = c->ctx->config->generation;
        return &c->limits;
}

const struct quota_usage *conn_usage(const struct conn *c, uint32_t uid)
{
        if (c->usage && c->usage->uid == uid)
                return c->usage;
        return quota_get(c->ctx->quota, uid);
}

int conn_new(struct conn_ctx *ctx, int fd, struct conn **connp)
{
        __attribute__((cleanup(conn_closep))) int sock = fd; /* consumed, even on error */
        __attribute__((cleanup(conn_groups_freep))) gid_t *groups = NULL;
        __attribute__((cleanup(conn_unbuilt_freep))) struct conn *c = NULL;
        struct config_quota limits;
        const struct quota_usage *found;
        struct quota_usage *usage;
        struct ucred cred;
        socklen_t len = sizeof(cred);
        size_t ngroups = 0;
        struct quota_excess excess;
        bool allowed, groups_loaded = false;
        int r;

        if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return -errno;
        /* supplementary groups only if the allow-list needs them (they are read lazily otherwise) */
        allowed = config_allows(ctx->config, cred.uid, cred.gid, NULL, 0);
        if (!allowed && ctx->config->nallow_gids) {
                r = conn_access_peer_groups(sock, &groups, &ngroups);
                if (r < 0)
                        return r;
                groups_loaded = true;
                allowed = config_allows(ctx->config, cred.uid, cred.gid, groups, ngroups);
        }
        if (!allowed) {
                uint64_t now = conn_now_ns();

                if (!ctx->refused_logged_ns || now - ctx->refused_logged_ns >= NSEC_PER_SEC) {
                        log_notice("refused connection of pid=%d uid=%u gid=%u: not in the allow-list",
                                   (int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid);
                        ctx->refused_logged_ns = now;
                }
                ctx->metrics.connections_refused++;
                conn_access_refuse(sock, -EACCES, "not allowed to connect");
                sock = -1; /* consumed */
                return -EACCES;
        }
        conn_limits_read(ctx, cred.uid, cred.gid, &limits);
        found = quota_get(ctx->quota, cred.uid); /* for quota_hold_found() below: nothing changes the table between */
        if (quota_check_usage(found, cred.uid, &limits, 0, 0, 1, 0, &excess) < 0) {
                char text[256];

                log_debug("refused connection of pid=%d uid=%u: connection quota (%llu) reached", (int)cred.pid,
                          (unsigned)cred.uid, (unsigned long long)limits.connections);
                ctx->metrics.connections_refused++;
                metrics_count_refusal(&ctx->metrics, cred.uid);
                conn_access_refuse(sock, -EDQUOT, quota_excess_format(&excess, text, sizeof(text)));
                sock = -1; /* consumed */
                return -EDQUOT;
        }
        /* the last connection's block, else malloc() (not calloc(): it skips the per-thread cache, at a cost) */
        c = ctx->spare;
        if (c) {
                ctx->spare = NULL;
                ASAN_UNPOISON_MEMORY_REGION(c, sizeof(*c));
        } else {
                c = malloc(sizeof(*c));
                if (!c)
                        return -ENOMEM;
        }
        memset(c, 0, offsetof(struct conn, transport)); /* the rest: transport_init_storage() below */
        c->ctx = ctx;
        c->uid = cred.uid;
        c->gid = cred.gid;
        c->pid = cred.pid;
        c->groups = groups;
        groups = NULL; /* stolen */
        c->ngroups = ngroups;
        c->groups_loaded = groups_loaded;
        c->limits = limits;
        c->limits_uid = cred.uid;
        c->limits_generation = ctx->config->generation;
        r = transport_init_storage(&c->transport, sock, ctx->config->max_out_bytes, 0, &c->storage);
        if (r < 0)
                return r;
        transport_use_out_storage(&c->transport, &c->out_storage);
        c->transport.fd_owner = cred.uid; /* fds it sends are closed on the closer threads, counted to it */
        c->transport_ready = true;
        /* the last step that can fail: from here on conn_free() gives the charge back */
        if (quota_hold_found(ctx->quota, found, cred.uid, &usage) < 0)
                return -ENOMEM;
        if (usage)
                usage->gid = cred.gid; /* for checks of the uid's limits other uids' requests make */
        c->usage = usage;
        c->fd = sock;
        sock = -1; /* stolen */
        /* the handshake deadline is set when first asked for (conn_deadline()): HELLO usually came with connect() */
        ctx->connections++;
        ctx->metrics.connections_accepted++;
        ctx->generation++;
        *connp = c;
        c = NULL; /* stolen */
        return 0;
}

void conn_refuse_full(struct conn_ctx *ctx, int fd)
{
        char text[192];

        snprintf(text, sizeof(text),
                 "the daemon's connection limit is reached: it has %llu open, max-connections is %llu; try again "
                 "later, or raise max-connections in iomemd.conf",
                 (unsigned long long)ctx->connections, (unsigned long long)ctx->config->max_connections);
        ctx->metrics.connections_refused++;
        conn_access_refuse(fd, -EDQUOT, text);
}

/*
 * Add @unread to @c's fds sent and not known to be received (conn_unread_add()
 * below), then bring the uid's count of fds not yet received in line with the
 * transport's and the unread ones: both in one quota update.
 */
__attribute__((always_inline)) static inline void conn_charge_fds(struct conn *c, int64_t unread)
{
        uint64_t now;
        int64_t fds;

        if (unread) {
                c->fds_unread = (unsigned)((int64_t)c->fds_unread + unread);
                c->ctx->fds_unread = (uint64_t)((int64_t)c->ctx->fds_unread + unread);
        }
        now = (c->transport_ready ? c->transport.out_fds : 0) + c->fds_unread;
        fds = (int64_t)now - (int64_t)c->fds_charged;
        if (!fds && !unread)
                return;
        c->fds_charged = now;
        if (c->usage)
                quota_usage_charge_fds(c->usage, fds, unread);
}

/*
 * Bring the uid's count of fds not yet received in line with the transport's
 * and the unread ones. Inline: after most replies nothing changed.
 */
static inline void conn_sync_fds(struct conn *c)
{
        if ((c->transport_ready ? c->transport.out_fds : 0) + c->fds_unread != c->fds_charged)
                conn_charge_fds(c, 0);
}

/*
 * Fds in flight. Once a reply with fds is written to the socket, its fds sit
 * in the client's receive queue until it reads them, charged by the kernel to
 * the daemon's uid (RLIMIT_NOFILE, then ETOOMANYREFS for every fd the daemon
 * sends, to anyone). The daemon cannot see which replies the client has read,
 * only whether it has read everything: SIOCOUTQ on a Unix socket is what the
 * peer has not consumed yet, 0 once it read all. So the count of fds sent
 * since the queue was last seen empty is what is in flight, at most (a client
 * that reads as it goes brings it back to 0), and it is bounded per
 * connection, per uid and for the daemon (conn.h); replies past the bound
 * stay queued here (the reply queue's own bounds then throttle the client).
 */

/* Return: true if the peer has read everything sent on @c's socket. */
static bool conn_peer_read_all(const struct conn *c)
{
        int n = 0;

        return ioctl(c->fd, SIOCOUTQ, &n) == 0 && n == 0;
}

static void conn_unread_add(struct conn *c, int64_t delta)
{
        c->fds_unread = (unsigned)((int64_t)c->fds_unread + delta);
        c->ctx->fds_unread = (uint64_t)((int64_t)c->ctx->fds_unread + delta);
        if (c->usage)
                quota_usage_charge_fds(c->usage, 0, delta);
}

/* Return: the daemon-wide bound on fds in flight (half of RLIMIT_NOFILE, which the kernel applies). */
static uint64_t conn_max_fds_unread(struct conn_ctx *ctx)
{
        struct rlimit rl;

        if (!ctx->max_fds_unread) {
                if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 22))
                        ctx->max_fds_unread = 1u << 21;
                else
                        ctx->max_fds_unread = rl.rlim_cur / 2 > CONN_MAX_FDS_UNREAD ? rl.rlim_cur / 2
                                                                                   : CONN_MAX_FDS_UNREAD;
        }
        return ctx->max_fds_unread;
}

/*
 * A freed connection's socket whose peer has not read the fds sent to it: the
 * kernel keeps them in flight, charged to the daemon, for as long as the peer
 * keeps its end open, whatever the daemon does with its own (closing it would
 * only forget them). So the socket is kept and its fds stay counted, plus one
 * for the socket itself, which bounds the orphans by the same bounds.
 */
struct conn_orphan {
        int fd;
        uint32_t uid;
        unsigned unread; /* counted in the uid's and the daemon's fds in flight */
};

/* Keep @c's socket as an orphan. Return: true if kept (its fds stay counted), false if it may be closed. */
static bool conn_orphan_add(struct conn *c)
{
        struct conn_ctx *ctx = c->ctx;

        if (!c->fds_unread || conn_peer_read_all(c))
                return false;
        if (ctx->norphans == ctx->orphans_cap) {
                size_t cap = ctx->orphans_cap ? 2 * ctx->orphans_cap : 16;
                struct conn_orphan *grown = realloc(ctx->orphans, cap * sizeof(*grown));

                if (!grown)
                        return false;
                ctx->orphans = grown;
                ctx->orphans_cap = cap;
        }
        shutdown(c->fd, SHUT_RDWR); /* the peer sees the end of the connection as before */
        conn_unread_add(c, 1);      /* the socket itself */
        ctx->orphans[ctx->norphans++] = (struct conn_orphan){ .fd = c->fd, .uid = c->uid, .unread = c->fds_unread };
        c->fds_unread = 0;
        return true;
}

void conn_reap_orphans(struct conn_ctx *ctx, bool all)
{
        for (size_t i = 0; i < ctx->norphans;) {
                struct conn_orphan *o = &ctx->orphans[i];
                int n = 0;

                if (!all && (ioctl(o->fd, SIOCOUTQ, &n) < 0 || n != 0)) {
                        i++;
                        continue;
                }
                ctx->fds_unread -= o->unread;
                quota_charge_unread(ctx->quota, o->uid, -(int64_t)o->unread);
                close(o->fd);
                *o = ctx->orphans[--ctx->norphans];
        }
        if (all) {
                free(ctx->orphans);
                ctx->orphans = NULL;
                ctx->orphans_cap = 0;
        }
}

bool conn_expire_leases(struct conn_ctx *ctx)
{
        return conn_region_expire(ctx);
}

void conn_refresh_unread(struct conn *c)
{
        if (c->fds_unread && conn_peer_read_all(c))
                conn_charge_fds(c, -(int64_t)c->fds_unread);
}

bool conn_recheck_allowed(struct conn *c, bool log)
{
        const struct config *cfg = c->ctx->config;

        if (c->dead || config_allows(cfg, c->uid, c->gid, NULL, 0))
                return true;
        if (cfg->nallow_gids && conn_access_load_groups(c) == 0 &&
            config_allows(cfg, c->uid, c->gid, c->groups, c->ngroups))
                return true;
        if (log)
                log_notice("dropping connection of pid=%d uid=%u gid=%u: no longer in the allow-list", (int)c->pid,
                           (unsigned)c->uid, (unsigned)c->gid);
        conn_drop(c, -EACCES);
        conn_notify(c);
        return false;
}

uint64_t conn_uid_fds_default(struct conn_ctx *ctx)
{
        uint64_t max = conn_max_fds_unread(ctx);

        return max / 16 > CONN_MAX_FDS_UNREAD ? max / 16 : CONN_MAX_FDS_UNREAD;
}

void conn_sweep_unread(struct conn_ctx *ctx)
{
        if (!ctx->sweep || conn_now_ns() - ctx->swept_ns < CONN_SWEEP_INTERVAL_NS)
                return;
        ctx->swept_ns = conn_now_ns();
        ctx->sweep(ctx);
        conn_reap_orphans(ctx, false);
}

/* Return: how many more fds may be sent to @c now. */
__attribute__((always_inline)) static inline unsigned conn_fd_budget(struct conn *c)
{
        struct conn_ctx *ctx = c->ctx;
        const struct quota_usage *u;
        uint64_t room, max, uid_max, used;

        if (c->fds_unread) /* conn_refresh_unread(), called only when it has something to look at */
                conn_refresh_unread(c);
        room = c->fds_unread < CONN_MAX_FDS_UNREAD ? CONN_MAX_FDS_UNREAD - c->fds_unread : 0;
        max = ctx->max_fds_unread ? ctx->max_fds_unread : conn_max_fds_unread(ctx);
        uid_max = conn_limits(c)->fds;
        u = c->usage && c->usage->uid == c->uid ? c->usage : conn_usage(c, c->uid); /* the first: held at accept */
        used = u ? u->fds_unread : 0;
        if (room && (used >= uid_max || ctx->fds_unread >= max)) {
                /* other connections' counts may be stale (idle clients that read everything) */
                conn_sweep_unread(ctx);
                u = conn_usage(c, c->uid);
                used = u ? u->fds_unread : 0;
        }
        if (used >= uid_max)
                room = 0;
        else if (uid_max - used < room)
                room = uid_max - used;
        if (ctx->fds_unread >= max)
                room = 0;
        else if (max - ctx->fds_unread < room)
                room = max - ctx->fds_unread;
        return (unsigned)room;
}

/*
 * Send what may be sent now: everything, except that a reply with fds waits
 * (and whatever follows it) while conn_fd_budget() has no room; c->fds_gated
 * says so. Return: as transport_flush(); 0 if the rest waits for room.
 */
static int conn_transport_flush(struct conn *c)
{
        unsigned budget, before;
        int r;

        if (!transport_has_output(&c->transport)) {
                c->fds_gated = false;
                conn_sync_fds(c);
                return 0; /* nothing to send: no need to ask the kernel what the peer has read */
        }
        budget = before = conn_fd_budget(c);
        r = transport_flush_fds(&c->transport, &budget);

        c->fds_gated = r == -EDQUOT;
        if (r == -EDQUOT)
                r = 0;
        conn_charge_fds(c, (int64_t)(before - budget)); /* the fds just sent are unread */
        return r;
}

void conn_send_early(struct conn *c)
{
        struct conn_ctx *ctx = c->ctx;

        if (c->dead || c->dispatching)
                return;
        if (!ctx->early_hold) {
                (void)conn_transport_flush(c);
                return;
        }
        /* a connection has its turn: sent once when it ends (conn_early_release()) */
        if (c->early_pprev)
                return;
        c->early_next = ctx->early_held;
        if (c->early_next)
                c->early_next->early_pprev = &c->early_next;
        c->early_pprev = &ctx->early_held;
        ctx->early_held = c;
}

bool conn_send_held(struct conn *c)
{
        if (!c->early_pprev)
                return false;
        conn_early_unlink(c);
        if (!c->dead && !c->dispatching)
                (void)conn_transport_flush(c);
        return true;
}

/* Send the early sends held so far, each connection once: before a requester's reply leaves. */
static void conn_early_send_held(struct conn_ctx *ctx)
{
        while (ctx->early_held)
                (void)conn_send_held(ctx->early_held);
}

/* A connection's turn begins (nested: counted): conn_send_early() holds what it would send. */
static void conn_early_hold(struct conn_ctx *ctx)
{
        ctx->early_hold++;
}

/* ... and ends: the outermost sends what was held. */
static void conn_early_release(struct conn_ctx *ctx)
{
        if (--ctx->early_hold == 0 && ctx->early_held)
                conn_early_send_held(ctx);
}

struct conn *conn_free(struct conn *c)
{
        int saved = errno;

        if (!c)
                return NULL;
        if (!c->dead) /* usually dropped already (its peer left) */
                conn_drop(c, -ECONNRESET);
        conn_early_unlink(c); /* done by conn_drop(); a freed connection must never stay on the list */
        conn_region_release(c);
        conn_watch_release(c);
        if (!conn_orphan_add(c)) {
                c->ctx->fds_unread -= c->fds_unread;
                if (c->fds_unread && c->usage)
                        quota_usage_charge_fds(c->usage, 0, -(int64_t)c->fds_unread);
                close(c->fd);
        }
        /* a few orphans are looked at with every departure; many (an attack) only by the timer and sweeps */
        if (c->ctx->norphans && c->ctx->norphans <= CONN_MAX_FDS_UNREAD)
                conn_reap_orphans(c->ctx, false);
        quota_release(c->ctx->quota, c->usage, c->fds_charged);
        if (c->transport_ready)
                transport_release(&c->transport); /* its memory is set up anew by the next conn_new(), if any */
        c->ctx->connections--;
        c->ctx->generation++;
        if (c->groups) /* read only when a decision needed them */
                free(c->groups);
        if (!c->ctx->spare) {
                c->ctx->spare = c; /* for the next conn_new() */
                ASAN_POISON_MEMORY_REGION(c, sizeof(*c));
        } else {
                free(c);
        }
        errno = saved;
        return NULL;
}

void conn_ctx_release(struct conn_ctx *ctx)
{
        if (ctx->spare) {
                ASAN_UNPOISON_MEMORY_REGION(ctx->spare, sizeof(*ctx->spare));
                free(ctx->spare);
                ctx->spare = NULL;
        }
}

int conn_fd(const struct conn *c)
{
        return c->fd;
}

void conn_set_userdata(struct conn *c, void *userdata)
{
        c->userdata = userdata;
}

void *conn_get_userdata(const struct conn *c)
{
        return c->userdata;
}

void conn_peer(const struct conn *c, uid_t *uidp, gid_t *gidp, pid_t *pidp)
{
        if (uidp)
                *uidp = c->uid;
        if (gidp)
                *gidp = c->gid;
        if (pidp)
                *pidp = c->pid;
}

/* ---- replies ------------------------------------------------------------ */

static unsigned conn_request_slot(uint16_t opcode);

/* conn_reply_raw(), with @fds borrowed (@borrowed: conn_reply_encoded_with_fd()) or consumed. */
__attribute__((always_inline)) static inline void conn_reply_queue(struct conn *c, uint16_t opcode, uint32_t id, uint8_t flags, const void *payload,
                             size_t len, int *fds, unsigned nfds, bool borrowed)
{
        struct proto_header h = {
                .flags = PROTO_FLAG_REPLY | flags,
                .opcode = opcode,
                .id = id,
        };
        int r;

        if (c->dead) {
                for (unsigned i = 0; i < nfds && !borrowed; i++)
                        close(fds[i]);
                return;
        }
        /* events queued before this reply go out before it (docs/protocol.md section 15.3) */
        if (conn_watch_pending(c)) {
                conn_watch_pump(c, true);
                if (c->dead) {
                        for (unsigned i = 0; i < nfds && !borrowed; i++)
                                close(fds[i]);
                        return;
                }
        }
        if (borrowed) {
                /*
                 * For conn_reply_encoded_with_fd(): sent now, with whatever is queued before it, as
                 * conn_transport_flush() would send it once queued (the same fd budget and charge), but from
                 * @payload without queueing it when it can go whole. A flush error is left to conn_flush().
                 */
                unsigned budget, before;
                int flushed;

                /* watchers told of a change this turn learn of it before this reply leaves */
                if (c->ctx->early_held)
                        conn_early_send_held(c->ctx);
                budget = before = conn_fd_budget(c);
                r = transport_send_with_fds(&c->transport, &h, payload, len, fds, nfds, &budget, &flushed);
                if (r == 0)
                        c->fds_gated = flushed == -EDQUOT;
                /*
                 * The fds just sent are unread, even on error: a reply cut by a full socket whose rest could not
                 * be queued (-ENOMEM) sent its fds with the part written, and the peer holds them as before.
                 */
                if (before != budget)
                        conn_charge_fds(c, (int64_t)(before - budget));
        } else {
                r = transport_queue(&c->transport, &h, payload, len, fds, nfds);
                if (nfds) /* the queue's fds changed: the uid's count follows */
                        conn_sync_fds(c);
        }
        if (r < 0) {
                if (r == -ENOBUFS && conn_access_log_allowed(c))
                        log_warning("client pid=%d uid=%u does not read its replies: dropping it", (int)c->pid,
                                    (unsigned)c->uid);
                conn_drop(c, r);
        }
}

/* On failure (queue bounds: F8, D10) the connection is dropped. */
void conn_reply_raw(struct conn *c, uint16_t opcode, uint32_t id, uint8_t flags, const void *payload, size_t len,
                    int *fds, unsigned nfds)
{
        conn_reply_queue(c, opcode, id, flags, payload, len, fds, nfds, false);
}

void conn_reply_encoded_with_fd(struct conn *c, const struct proto_header *req, int len, const uint8_t *buf, int fd)
{
        int r;

        if (len < 0) {
                conn_reply_encoded(c, req, len, buf, NULL, 0);
                return;
        }
        /*
         * Sent now, with whatever was queued before it (usually the HELLO
         * reply of the same read): SCM_RIGHTS takes its own reference at
         * sendmsg(). A flush error is left to conn_flush(), which drops the
         * peer; a reply that must wait (socket full, fds-in-flight quota)
         * gets a copy, since a later request may close @fd (DELETE, parking).
         */
        conn_reply_queue(c, req->opcode, req->id, 0, buf, (size_t)len, &fd, 1, true);
        if (c->dead)
                return;
        r = transport_own_fds(&c->transport);
        if (r < 0) {
                log_warning("cannot duplicate a region fd for a queued reply: %s; dropping client pid=%d",
                            strerror(-r), (int)c->pid);
                conn_drop(c, r);
        }
        conn_sync_fds(c);
}

void conn_reply_error(struct conn *c, uint16_t opcode, uint32_t id, int error, const char *message)
{
        struct proto_error e = { .error = error, .message = message ? message : "" };
        uint8_t buf[8 + PROTO_MESSAGE_MAX];
        int len;

        metrics_count_error(&c->ctx->metrics, conn_request_slot(opcode), error, c->uid);
        len = proto_error_encode(&e, buf, sizeof(buf));
        if (len < 0) {
                e.message = "";
                len = proto_error_encode(&e, buf, sizeof(buf));
                if (len < 0) {
                        conn_drop(c, len);
                        return;
                }
        }
        conn_reply_raw(c, opcode, id, PROTO_FLAG_ERROR, buf, (size_t)len, NULL, 0);
}

/* An error after which the connection closes once the reply is sent. */
static void conn_reply_fatal(struct conn *c, uint16_t opcode, uint32_t id, int error, const char *message)
{
        conn_reply_error(c, opcode, id, error, message);
        if (c->dead)
                return;
        c->closing = true;
        c->close_deadline_ns = conn_now_ns() + CONN_CLOSE_GRACE_NS;
}

/* A negative @len is the encoder's errno: a daemon bug, the connection is dropped. */
void conn_reply_encoded(struct conn *c, const struct proto_header *req, int len, const uint8_t *buf, int *fds,
                        unsigned nfds)
{
        if (len < 0) {
                for (unsigned i = 0; i < nfds; i++)
                        close(fds[i]);
                log_error("cannot encode a reply to %s: %s", proto_opcode_name(req->opcode) ?: "?",
                          strerror(-len));
                conn_drop(c, len);
                return;
        }
        conn_reply_queue(c, req->opcode, req->id, 0, buf, (size_t)len, fds, nfds, false); /* conn_reply_raw() */
}

/* ---- requests on the connection itself ---------------------------------- */

/* HELLO: the version handshake; a malformed or incompatible one closes the connection. */
/* Return: the length of the HELLO reply's payload in ctx->hello_reply (a negative errno: a daemon bug). */
static int conn_hello_reply(struct conn_ctx *ctx)
{
        const struct config *cfg = ctx->config;

        if (ctx->hello_reply_generation != cfg->generation + 1) {
                struct proto_hello_reply rep = {
                        .version = PROTO_VERSION,
                        .max_fds = PROTO_MAX_FDS,
                        .max_payload = PROTO_MAX_PAYLOAD,
                        .max_region_size = cfg->max_region_size,
                        .name_max = PROTO_NAME_MAX,
                        .backend = cfg->backend,
                        .server_version = IOMEM_VERSION,
                };

                ctx->hello_reply_len = proto_hello_reply_encode(&rep, ctx->hello_reply, sizeof(ctx->hello_reply));
                ctx->hello_reply_generation = cfg->generation + 1;
        }
        return ctx->hello_reply_len;
}

static int conn_handle_hello(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct proto_hello m;
        int r;

        /* the decoder refuses min_version > max_version */
        r = proto_hello_decode(f->payload, f->hdr.length, &m);
        if (r < 0) {
                res->fatal = true;
                return r;
        }
        if (c->hello_done)
                return conn_fail(res, -EALREADY, "HELLO was already done");
        if (m.min_version > PROTO_VERSION || m.max_version < PROTO_VERSION) {
                res->fatal = true;
                return conn_fail(res, -EPROTONOSUPPORT, "no common protocol version (server speaks 1)");
        }
        c->hello_done = true;
        c->events = m.flags & PROTO_HELLO_EVENTS;
        c->page_info = m.flags & PROTO_HELLO_PAGE_INFO;
        /* replies from this one on may share a sendmsg() with replies that carry fds */
        c->transport.out_fds_in_order = m.flags & PROTO_HELLO_FDS_IN_ORDER;
        c->handshake_deadline_ns = 0;
        conn_reply_encoded(c, &f->hdr, conn_hello_reply(c->ctx), c->ctx->hello_reply, NULL, 0);
        return 0;
}

static int conn_handle_ping(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct proto_ping m;
        uint8_t buf[16];
        int r;

        (void)res;
        r = proto_ping_decode(f->payload, f->hdr.length, &m);
        if (r < 0)
                return r;
        conn_reply_encoded(c, &f->hdr, proto_ping_encode(&m, buf, sizeof(buf)), buf, NULL, 0);
        return 0;
}

/* STATUS: its row says it takes no payload. */
static int conn_handle_status(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct conn_ctx *ctx = c->ctx;
        struct proto_status_reply rep = {
                .regions = regtab_count(ctx->regtab),
                .bytes = regtab_bytes(ctx->regtab),
                .connections = ctx->connections,
                .uptime_sec = (conn_now_ns() - ctx->start_ns) / NSEC_PER_SEC,
                .backend = ctx->config->backend,
                .server_version = IOMEM_VERSION,
        };
        uint8_t buf[128];

        (void)res;
        conn_reply_encoded(c, &f->hdr, proto_status_reply_encode(&rep, buf, sizeof(buf)), buf, NULL, 0);
        return 0;
}

/* ---- the request table and dispatch ------------------------------------- */

/*
 * One row per request the daemon answers; an opcode without a row is
 * answered with -EOPNOTSUPP. Adding a request is one row and one handler.
 * Who may act on a region is checked by the handler (conn-access.h), since it
 * depends on the region and, for OPEN, on the request's flags.
 */
struct conn_request {
        uint16_t opcode;         /* PROTO_OP_* */
        bool before_hello;       /* may come before HELLO (only HELLO itself) */
        bool takes_fds;          /* may carry fds; other requests' fds are refused and closed with the frame */
        bool no_payload;         /* a payload is refused with -EBADMSG "<name> takes no payload" */
        bool needs_events;       /* only after HELLO with PROTO_HELLO_EVENTS; else -EOPNOTSUPP as if unknown */
        const char *malformed;   /* the reply text when the handler's decoder refuses the payload */
        const char *no_payload_text;
        conn_handler_fn *handle;
};

#define CONN_REQUEST(op, fn, ...) { .opcode = PROTO_OP_##op, .malformed = "malformed " #op, \
                                    .no_payload_text = #op " takes no payload", .handle = fn, __VA_ARGS__ }

static const struct conn_request conn_requests[] = {
        CONN_REQUEST(HELLO, conn_handle_hello, .before_hello = true),
        CONN_REQUEST(PING, conn_handle_ping),
        CONN_REQUEST(STATUS, conn_handle_status, .no_payload = true),
        CONN_REQUEST(CREATE, conn_region_handle_create),
        CONN_REQUEST(OPEN, conn_region_handle_open),
        CONN_REQUEST(RESIZE, conn_region_handle_resize),
        CONN_REQUEST(SEAL, conn_region_handle_seal),
        CONN_REQUEST(STAT, conn_region_handle_stat),
        CONN_REQUEST(LIST, conn_region_handle_list),
        CONN_REQUEST(DELETE, conn_region_handle_delete),
        CONN_REQUEST(CHMOD, conn_access_handle_chmod),
        CONN_REQUEST(CHOWN, conn_access_handle_chown),
        CONN_REQUEST(QUOTA, conn_access_handle_quota, .no_payload = true),
        CONN_REQUEST(REGISTER, conn_region_handle_register, .takes_fds = true),
        CONN_REQUEST(WATCH, conn_watch_handle_watch, .needs_events = true),
        CONN_REQUEST(UNWATCH, conn_watch_handle_unwatch, .needs_events = true),
        CONN_REQUEST(PUBLISH, conn_region_handle_publish, .needs_events = true, .takes_fds = true),
        CONN_REQUEST(OPENV, conn_region_handle_openv, .needs_events = true),
        CONN_REQUEST(STATV, conn_region_handle_statv, .needs_events = true),
        /* last: the scan above finds the frequent requests first */
        CONN_REQUEST(METRICS, conn_metrics_handle, .no_payload = true),
};

#define CONN_REQUEST_ROWS (sizeof(conn_requests) / sizeof(conn_requests[0]))
_Static_assert(CONN_REQUEST_ROWS <= METRICS_REQUEST_SLOTS, "struct metrics counts every row");
/* a connection is one block from malloc's per-thread cache (blocks up to 1,032 bytes on 64-bit): outside it a
 * cold connection pays several hundred instructions more for it; watch this when adding fields */
_Static_assert(sizeof(struct conn) <= 1032, "struct conn outgrew malloc's per-thread cache");

/* Return: the index of @opcode's row (also its slot in struct metrics), or METRICS_REQUEST_SLOTS if none. */
static unsigned conn_request_slot(uint16_t opcode)
{
        for (unsigned i = 0; i < CONN_REQUEST_ROWS; i++)
                if (conn_requests[i].opcode == opcode)
                        return i;
        return METRICS_REQUEST_SLOTS;
}

int conn_request_opcode(unsigned slot)
{
        if (slot == METRICS_REQUEST_SLOTS)
                return 0;
        return slot < CONN_REQUEST_ROWS ? conn_requests[slot].opcode : -1;
}

/*
 * Act on one frame: check it against its row, run the handler, and send the
 * error reply if it failed (the only place a request's error is answered).
 * Return: 0, or -ECONNRESET when the connection is dead.
 */
static int conn_dispatch(struct conn *c, struct transport_frame *f)
{
        const struct proto_header *h = &f->hdr;
        unsigned slot = conn_request_slot(h->opcode);
        const struct conn_request *req = slot < CONN_REQUEST_ROWS ? &conn_requests[slot] : NULL;
        struct conn_result res;
        int r;

        conn_result_init(&res);
        c->ctx->metrics.requests[slot]++;
        if (h->version != PROTO_VERSION) {
                r = conn_fail(&res, -EPROTONOSUPPORT, "unknown frame version");
                res.fatal = true;
        } else if (h->flags & PROTO_FLAG_REPLY) {
                r = conn_fail(&res, -EBADMSG, "the server takes requests, not replies");
        } else if (!c->hello_done && !(req && req->before_hello)) {
                r = conn_fail(&res, -EPROTO, "the first request must be HELLO");
                res.fatal = true;
        } else if (!req || (req->needs_events && !c->events)) {
                r = conn_fail(&res, -EOPNOTSUPP, req ? "needs HELLO with the EVENTS flag" : "unknown opcode");
        } else if (f->nfds && !req->takes_fds) {
                /* the fds are closed with the frame */
                r = conn_fail(&res, -EINVAL, "this request takes no fds");
        } else if (req->no_payload && h->length != 0) {
                r = conn_fail(&res, -EBADMSG, req->no_payload_text);
        } else {
                c->in_request = true;
                r = req->handle(c, f, &res);
                c->in_request = false;
                /* a decoder's refusal: which value and what is allowed if it was one; else "malformed X" */
                if (r == -EINVAL && !res.message)
                        res.message = proto_refusal(h->opcode, f->payload, h->length);
                if (r < 0 && !res.message)
                        res.message = req->malformed;
        }
        if (r < 0 && !c->dead) {
                if (res.fatal)
                        conn_reply_fatal(c, h->opcode, h->id, r, res.message);
                else
                        conn_reply_error(c, h->opcode, h->id, r, res.message);
        }
        if (res.after)
                res.after(c, res.after_arg);
        return c->dead ? -ECONNRESET : 0;
}

/* Return: true if the output queue is past half its bounds: time to stop taking requests. */
static bool conn_output_high(const struct conn *c)
{
        const struct transport *t = &c->transport;

        return t->out_bytes > t->max_out_bytes / 2 || t->out_fds > t->max_out_fds / 2;
}

/*
 * Return: false if @c's input buffer is empty and holds no fds: then
 * transport_next_frame_borrowed() could only say "no frame" (0), at the
 * cost of a call that sets up a frame. Each batch of requests ends so.
 */
static bool conn_input_buffered(const struct conn *c)
{
        const struct transport *t = &c->transport;

        return t->in_start != t->in_end || t->in_fds;
}

/*
 * Dispatch every complete buffered frame, unless replies pile up: then send
 * what the socket takes and, if still high, stop until conn_flush() drains
 * them. A client that pipelines requests is slowed down, not dropped; its
 * queue stays bounded (F8, D10), and only replies it did not ask for just
 * now (parked OPENs) can overflow it.
 * Return: 0, or a negative errno when the connection is dead.
 */
static int conn_process_frames_loop(struct conn *c)
{
        struct transport_frame f;
        int r;

        c->backlog = false;
        /* a reservation in flight (conn-region.c): the requests behind it wait for its reply */
        while (!c->dead && !c->closing && !c->reserve) {
                /*
                 * Fairness: a connection does at most CONN_WORK_PER_TURN work
                 * per turn of the loop (frames, not bytes: a pipeline of tiny
                 * requests with tiny replies never throttles); the rest waits
                 * for its next turn (conn_deadline() asks for one at once),
                 * after every other ready connection has had its own.
                 */
                if (c->turn_work >= CONN_WORK_PER_TURN) {
                        c->backlog = true;
                        return 0;
                }
                if (conn_output_high(c)) {
                        if (c->ctx->early_held) /* watchers learn of the changes before these replies leave */
                                conn_early_send_held(c->ctx);
                        r = conn_transport_flush(c);
                        if (r < 0 && r != -EAGAIN && r != -EINTR)
                                return conn_drop(c, r);
                        if (conn_output_high(c)) {
                                c->throttled = true;
                                return 0;
                        }
                }
                if (!conn_input_buffered(c))
                        return 0;
                r = transport_next_frame_borrowed(&c->transport, &f); /* handled before the next read */
                if (r == 0)
                        return 0;
                if (r < 0) /* framing or fd violation: the stream is out of sync (F1-F4, D1-D5) */
                        return conn_drop(c, r);
                c->turn_work++;
                r = conn_dispatch(c, &f);
                /* a borrowed payload and no fds (the usual request): nothing to free or close */
                if (f.nfds || (f.payload && !f.payload_borrowed))
                        transport_frame_deinit(&f);
                if (r < 0)
                        return r;
        }
        return c->dead ? -ECONNRESET : 0;
}

/*
 * conn_process_frames_loop() with @c marked as dispatching its own frames (conn_send_early() waits), and as
 * having its turn: the early sends to other connections that its requests cause are held until it ends.
 */
static int conn_process_frames(struct conn *c)
{
        struct conn_ctx *ctx = c->ctx;
        bool was = c->dispatching;
        int r;

        c->dispatching = true;
        conn_early_hold(ctx);
        r = conn_process_frames_loop(c);
        c->dispatching = was;
        conn_early_release(ctx);
        return r;
}

/*
 * Return: true while the fds @c's uid sent wait for the closer threads past
 * CLOSER_MAX_PENDING_PER_UID: reading more could only add to them (a
 * recvmsg takes what the peer sent), so the uid's connections are not read
 * until they drain. One uid whose closes block (FUSE, lingering sockets)
 * thus stalls itself, not the daemon; its pile is bounded by the limit
 * plus one recvmsg's fds per connection.
 */
static bool conn_closes_pending(const struct conn *c)
{
        return closer_pending(c->uid) >= CLOSER_MAX_PENDING_PER_UID;
}

/* conn_handle_input(), within the turn's hold of early sends. */
static int conn_handle_input_turn(struct conn *c)
{
        int r, r2;

        c->turn_work = 0; /* a new turn */
        if (c->fds_unread) /* a client that sends again has usually read its replies: quotas see that */
                conn_refresh_unread(c);
        for (int i = 0; i < CONN_READS_PER_CALL && !c->closing && !c->throttled && !c->backlog && !c->reserve &&
                        !conn_closes_pending(c);
             i++) {
                r = transport_read(&c->transport);
                if (r == -EAGAIN || r == -EINTR)
                        break;
                if (r < 0)
                        return conn_drop(c, r);
                if (r > 0) {
                        r2 = conn_process_frames(c);
                        if (r2 < 0)
                                return r2;
                        /*
                         * A read that did not fill the buffer most likely emptied the
                         * socket: the event loop (level-triggered) calls again if not,
                         * which spares a recvmsg that would say EAGAIN after every request.
                         */
                        if (!transport_read_filled(&c->transport))
                                break;
                        continue;
                }
                /*
                 * End of stream: whatever is still buffered is a cut frame (F4). Nothing buffered (a client
                 * that read its replies and closed): nothing to parse; replies still queued go out with the
                 * conn_flush() that follows every conn_handle_input() (conn_process_frames() would only have
                 * flushed them sooner if they piled up past half the queue's bounds).
                 */
                if (conn_input_buffered(c)) {
                        r = conn_process_frames(c);
                        if (r < 0)
                                return r;
                }
                if (c->closing)
                        break;
                if (!transport_has_output(&c->transport))
                        return conn_drop(c, -ECONNRESET);
                /* a peer that only shut down its sending side still gets its replies */
                c->closing = true;
                c->close_deadline_ns = conn_now_ns() + CONN_CLOSE_GRACE_NS;
                break;
        }
        return 0;
}

int conn_handle_input(struct conn *c)
{
        struct conn_ctx *ctx = c->ctx;
        int r;

        if (c->dead)
                return -ECONNRESET;
        /*
         * The early sends its requests cause (conn_send_early()) are held for the whole turn, its reads
         * included, not only each read's frames: a watcher gets one sendmsg() per turn, before its replies.
         */
        conn_early_hold(ctx);
        r = conn_handle_input_turn(c);
        conn_early_release(ctx);
        return r;
}

int conn_flush(struct conn *c)
{
        int r;

        if (c->dead)
                return -ECONNRESET;
        r = conn_transport_flush(c);
        if (r < 0 && r != -EAGAIN && r != -EINTR)
                return conn_drop(c, r); /* L4: EPIPE/ECONNRESET are ordinary departures */
        /* the output drained: events waiting for room go next, until the socket is full */
        while (conn_watch_pending(c) && !transport_has_output(&c->transport)) {
                conn_watch_pump(c, false);
                if (c->dead)
                        return -ECONNRESET;
                r = transport_flush(&c->transport);
                if (r < 0 && r != -EAGAIN && r != -EINTR)
                        return conn_drop(c, r);
        }
        if (c->throttled && !conn_output_high(c)) {
                /* resume the requests already buffered */
                c->throttled = false;
                r = conn_process_frames(c);
                if (r < 0)
                        return r;
                r = conn_transport_flush(c);
                if (r < 0 && r != -EAGAIN && r != -EINTR)
                        return conn_drop(c, r);
        }
        /* replies that wait for the peer to read (fds_gated) are not a reason to wait for POLLOUT */
        return transport_has_output(&c->transport) && !c->fds_gated ? -EAGAIN : 0;
}

bool conn_has_output(const struct conn *c)
{
        return !c->dead && transport_has_output(&c->transport);
}

bool conn_wants_input(const struct conn *c)
{
        return !c->dead && !c->closing && !c->throttled && !c->backlog && !c->reserve && !conn_closes_pending(c);
}

bool conn_wants_hangup(const struct conn *c)
{
        return !c->dead && c->reserve && !c->half_closed;
}

int conn_hangup(struct conn *c)
{
        if (c->dead)
                return -ECONNRESET;
        if (conn_region_reserve_hung_up(c))
                return conn_drop(c, -ECONNRESET); /* abandons the reservation (conn_region_unhook()) */
        /* only its sending side is shut: its replies are still wanted; nothing more to watch for */
        c->half_closed = true;
        return 0;
}

bool conn_is_dead(const struct conn *c)
{
        return c->dead;
}

bool conn_is_done(const struct conn *c)
{
        return c->dead || (c->closing && !transport_has_output(&c->transport));
}

/*
 * Return: the handshake deadline of @c (HELLO not done yet), 0 if none. It
 * is set the first time it is asked for, which the event loop does as soon
 * as the connection's first read is handled (server_conn_update()): a client
 * that sends HELLO with its connect(), the usual case, never pays for the
 * clock read. conn_timeout() asks too, so that a caller that never asked
 * conn_deadline() still drops a connection without HELLO (F9). A cache:
 * setting it changes nothing observable.
 */
static uint64_t conn_handshake_deadline(const struct conn *c)
{
        uint64_t timeout = c->ctx->config->handshake_timeout_sec;

        if (!c->handshake_deadline_ns && timeout)
                ((struct conn *)c)->handshake_deadline_ns = conn_now_ns() + timeout * NSEC_PER_SEC;
        return c->handshake_deadline_ns;
}

uint64_t conn_deadline(const struct conn *c)
{
        uint64_t d = 0, w;

        if (c->dead)
                return 0;
        if (c->closing)
                return c->close_deadline_ns;
        if (!c->hello_done)
                d = conn_handshake_deadline(c);
        if (c->backlog && !c->throttled)
                return conn_now_ns(); /* its next turn: at the loop's next iteration */
        if (c->fds_gated) {
                w = conn_now_ns() + CONN_UNREAD_RECHECK_NS; /* has the peer read its fds yet? */
                if (!d || w < d)
                        d = w;
        }
        if (conn_closes_pending(c)) {
                w = conn_now_ns() + CONN_CLOSER_RECHECK_NS;
                if (!d || w < d)
                        d = w;
        }
        w = conn_region_deadline(c);
        if (w && (!d || w < d))
                d = w;
        return d;
}

int conn_timeout(struct conn *c, uint64_t now_ns)
{
        if (c->dead)
                return -ECONNRESET;
        if (c->closing) {
                if (now_ns >= c->close_deadline_ns)
                        return conn_drop(c, -ETIMEDOUT);
                return 0;
        }
        /* conn_handshake_deadline(): set now if nobody asked conn_deadline() yet (F9 holds for any caller) */
        if (!c->hello_done && conn_handshake_deadline(c) && now_ns >= c->handshake_deadline_ns) {
                if (conn_access_log_allowed(c))
                        log_info("client pid=%d uid=%u sent no HELLO in time: dropping it", (int)c->pid,
                                 (unsigned)c->uid);
                return conn_drop(c, -ETIMEDOUT); /* F9 */
        }
        conn_region_timeout(c, now_ns);
        if (c->backlog && !c->throttled && !c->dead) {
                int r;

                /* its next turn for the frames it has buffered */
                c->backlog = false;
                c->turn_work = 0;
                r = conn_process_frames(c);
                if (r < 0)
                        return r;
        }
        return c->dead ? -ECONNRESET : 0;
}
