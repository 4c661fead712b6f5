/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* conn-access: who may connect and do what (allow-list, region access, quotas); CHMOD, CHOWN, QUOTA. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access.h"
#include "backend.h"
#include "conn-access.h"
#include "conn-internal.h"
#include "conn-watch.h"
#include "conn.h"
#include "log.h"
#include "proto.h"
#include "quota.h"
#include "service.h"

/* ---- at accept ---------------------------------------------------------- */

/*
 * Refuse a peer at accept: one error reply it can read as the answer to its
 * HELLO, sent without waiting (a fresh socket's buffer has room), then close.
 */
void conn_access_refuse(int fd, int error, const char *message)
{
        struct proto_error e = { .error = error, .message = message };
        struct proto_header h = {
                .magic = PROTO_MAGIC,
                .version = PROTO_VERSION,
                .flags = PROTO_FLAG_REPLY | PROTO_FLAG_ERROR,
                .opcode = PROTO_OP_HELLO,
                .id = 0,
        };
        uint8_t buf[PROTO_HEADER_SIZE + 256];
        int len;

        len = proto_error_encode(&e, buf + PROTO_HEADER_SIZE, sizeof(buf) - PROTO_HEADER_SIZE);
        if (len >= 0) {
                h.length = (uint32_t)len;
                proto_header_encode(&h, buf);
                (void)!send(fd, buf, PROTO_HEADER_SIZE + (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        close(fd);
}

/* Return: 0 with the peer's supplementary groups (malloc'd, may be NULL with 0); negative errno. */
int conn_access_peer_groups(int fd, gid_t **groupsp, size_t *np)
{
        socklen_t len = 16 * sizeof(gid_t);
        gid_t *groups = NULL;

        for (int attempt = 0; attempt < 4; attempt++) {
                gid_t *grown = realloc(groups, len ? len : sizeof(gid_t));

                if (!grown) {
                        free(groups);
                        return -ENOMEM;
                }
                groups = grown;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
                        *groupsp = groups;
                        *np = len / sizeof(gid_t);
                        return 0;
                }
                if (errno != ERANGE) {
                        free(groups);
                        /* kernels before 4.13: primary group only */
                        if (errno == ENOPROTOOPT) {
                                *groupsp = NULL;
                                *np = 0;
                                return 0;
                        }
                        return -errno;
                }
        }
        free(groups);
        return -ERANGE;
}

/* ---- access checks ------------------------------------------------------ */

static const char *conn_access_name(enum conn_access what)
{
        switch (what) {
        case CONN_ACCESS_READ:
                return "read";
        case CONN_ACCESS_WRITE:
                return "write";
        case CONN_ACCESS_RESIZE:
                return "resize";
        case CONN_ACCESS_SEAL:
                return "seal";
        case CONN_ACCESS_DELETE:
                return "delete";
        case CONN_ACCESS_CHMOD:
                return "chmod/chown";
        }
        return "?";
}

/*
 * Read @c's supplementary groups once, when a decision first depends on them.
 * SO_PEERGROUPS reports the groups the peer had when it connected, whenever
 * it is asked, so reading late gives the same answer. Return: 0, negative errno
 * (the groups stay unknown: no group match, and the next check tries again).
 */
int conn_access_load_groups(struct conn *c)
{
        int r;

        if (c->groups_loaded)
                return 0;
        r = conn_access_peer_groups(c->fd, &c->groups, &c->ngroups);
        if (r < 0) {
                log_warning("cannot read the groups of pid=%d uid=%u: %s", (int)c->pid, (unsigned)c->uid,
                            strerror(-r));
                return r;
        }
        c->groups_loaded = true;
        return 0;
}

/* Return: the identity of @c for access.h (its groups as far as loaded). */
struct access_cred conn_access_cred(const struct conn *c)
{
        return (struct access_cred){ .uid = c->uid, .gid = c->gid, .groups = c->groups, .ngroups = c->ngroups };
}

/*
 * One more line about @c's uid within the uid's budget: CONN_LOG_PER_UID per
 * CONN_LOG_WINDOW_NS, in a slot chosen by uid hash (two uids sharing a slot
 * share a budget: their lines are fewer, never more). Return: true if it may be logged.
 */
static bool conn_access_log_uid(struct conn *c)
{
        struct conn_log_slot *s = &c->ctx->log_slots[(c->uid * 2654435761u) % CONN_LOG_SLOTS];
        uint64_t now = conn_now_ns();

        if (s->start_ns == 0 || s->uid != c->uid || now - s->start_ns >= CONN_LOG_WINDOW_NS)
                *s = (struct conn_log_slot){ .uid = c->uid, .start_ns = now ? now : 1 };
        if (s->lines < CONN_LOG_PER_UID) {
                s->lines++;
                return true;
        }
        if (!s->told) {
                s->told = true;
                log_notice("uid=%u: further lines about its requests are not logged for up to a minute",
                           (unsigned)c->uid);
        }
        return false;
}

bool conn_access_log_allowed(const struct conn *c)
{
        struct conn *mc = (struct conn *)c; /* the counters are bookkeeping, not state */

        if (mc->refusals > CONN_MAX_LOGGED_REFUSALS)
                return false;
        if (++mc->refusals > CONN_MAX_LOGGED_REFUSALS) {
                if (conn_access_log_uid(mc))
                        log_notice("pid=%d uid=%u: further lines about this connection are not logged", (int)c->pid,
                                   (unsigned)c->uid);
                return false;
        }
        return conn_access_log_uid(mc);
}

/* Log a refusal, within conn_access_log_allowed(). */
void conn_access_log_refusal(const struct conn *c, const char *what, const struct region *r)
{
        if (!conn_access_log_allowed(c))
                return;
        log_notice("refused %s of region '%s' (owner %u:%u mode %04o) to pid=%d uid=%u gid=%u", what,
                   r ? r->name : "?", r ? (unsigned)r->meta.uid : 0, r ? (unsigned)r->meta.gid : 0,
                   r ? (unsigned)r->meta.mode : 0, (int)c->pid, (unsigned)c->uid, (unsigned)c->gid);
}

int conn_access_decide(const struct conn *c, const struct region *r, enum conn_access what, bool log)
{
        struct access_cred cred = conn_access_cred(c);
        enum access_need need;
        int k;

        switch (what) {
        case CONN_ACCESS_READ:
                need = ACCESS_NEED_READ;
                break;
        case CONN_ACCESS_WRITE:
                need = ACCESS_NEED_WRITE;
                break;
        default:
                need = ACCESS_NEED_OWNER;
                break;
        }
        if (!r)
                return c->uid == 0 ? 0 : -EACCES;
        if (access_needs_groups(&cred, &r->meta, need)) {
                /* the groups are a cache: loading them changes no observable state */
                conn_access_load_groups((struct conn *)c);
                cred = conn_access_cred(c);
        }
        k = access_check(&cred, &r->meta, need);
        if (k < 0 && log)
                conn_access_log_refusal(c, conn_access_name(what), r);
        return k;
}

int conn_access_allowed(const struct conn *c, const struct region *r, enum conn_access what)
{
        return conn_access_decide(c, r, what, false);
}

int conn_access_find(struct conn *c, const char *name, enum conn_access what, const char *denied,
                     struct region **regionp, struct conn_result *res)
{
        struct region *r = regtab_lookup(c->ctx->regtab, name);

        if (!r)
                return conn_fail(res, -ENOENT, "no such region");
        if (conn_access_check(c, r, what) < 0)
                return conn_fail(res, -EACCES, denied ? denied : "permission denied");
        *regionp = r;
        return 0;
}

/*
 * The limits of @uid, another uid than @c's, as that uid's own requests have them: with the [gid] section of
 * the primary group of its last connection (quota_usage.gid); the uid's limits without a group section if
 * none of its connections was accepted since its entry was made (after a restart, or a region given to it by
 * CHOWN, until it connects).
 */
static void conn_access_other_limits(const struct conn *c, uint32_t uid, struct config_quota *limits)
{
        const struct quota_usage *u = conn_usage(c, uid);

        config_quota_for(c->ctx->config, uid, u ? u->gid : QUOTA_GID_UNKNOWN, limits);
}

int conn_access_quota_check(const struct conn *c, uint32_t uid, uint64_t bytes, uint64_t regions, uint64_t fds,
                            struct conn_result *res)
{
        struct config_quota other;
        const struct config_quota *limits;
        struct quota_excess e;

        if (uid == c->uid) {
                limits = conn_limits(c);
        } else {
                conn_access_other_limits(c, uid, &other);
                if (!other.fds)
                        other.fds = conn_uid_fds_default(c->ctx); /* queued fds are the daemon's: never unbounded */
                limits = &other;
        }
        if (quota_check_usage(conn_usage(c, uid), uid, limits, bytes, regions, 0, fds, &e) == 0)
                return 0;
        /* idle connections that read everything still count their last fds: look again before refusing */
        if (fds) {
                conn_sweep_unread(c->ctx);
                if (quota_check_usage(conn_usage(c, uid), uid, limits, bytes, regions, 0, fds, &e) == 0)
                        return 0;
        }
        quota_excess_format(&e, res->text, sizeof(res->text));
        return conn_fail(res, -EDQUOT, res->text);
}

uint64_t conn_access_quota_room(const struct conn *c, uint32_t uid)
{
        const struct quota_usage *u = conn_usage(c, uid);
        struct config_quota other;
        const struct config_quota *limits = &other;
        uint64_t used = u ? u->bytes : 0;

        if (uid == c->uid)
                limits = conn_limits(c);
        else
                conn_access_other_limits(c, uid, &other);
        if (!limits->bytes)
                return UINT64_MAX;
        return used >= limits->bytes ? 0 : limits->bytes - used;
}


/* ---- CHMOD, CHOWN, QUOTA ------------------------------------------------ */

/*
 * Keep CHMOD's or CHOWN's change of @r's meta (it was @before, its charge gid @before_gid) in the fd store. On a
 * failure @r gets its old meta back (its slot rewritten with it, in case a short write left half of the new one).
 * A change to the values @r already has writes nothing when its slot holds them (a store that cannot be written
 * does not refuse it); not when an earlier write of the slot failed (half of a refused change may be there): the
 * call is acknowledged, so the store must hold what it says.
 * Return: 0; -ENOSPC with @res filled in.
 */
static int conn_access_meta_store(struct region *r, const struct region_meta *before, uint32_t before_gid,
                                  const char *what, struct conn_result *res)
{
        if (r->meta.mode == before->mode && r->meta.uid == before->uid && r->meta.gid == before->gid &&
            r->store.gid == before_gid && service_region_stored_whole(r))
                return 0;
        if (service_region_update(r) == 0)
                return 0;
        r->meta = *before;
        r->store.gid = before_gid;
        (void)service_region_update(r);
        return conn_failf(res, -ENOSPC, "cannot record the new %s in the service manager's fd store (see the "
                          "daemon's log): nothing changed, try again", what);
}

/* After CHMOD or CHOWN changed @r's meta (it was @before; stored: conn_access_meta_store()): tell watchers, answer. */
static void conn_access_meta_changed(struct conn *c, const struct transport_frame *f, uint16_t kind, struct region *r,
                                     const struct region_meta *before)
{
        c->ctx->generation++;
        conn_watch_notify(c->ctx, kind, r, before, 0);
        conn_reply_raw(c, f->hdr.opcode, f->hdr.id, 0, NULL, 0, NULL, 0);
}

int conn_access_handle_chmod(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct region_meta before;
        struct proto_chmod m;
        struct region *r;
        int k;

        k = proto_chmod_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return k;
        k = conn_access_find(c, m.name, CONN_ACCESS_CHMOD, "only the owner may change the mode", &r, res);
        if (k < 0)
                return k;
        before = r->meta;
        r->meta.mode = m.mode;
        k = conn_access_meta_store(r, &before, r->store.gid, "mode", res);
        if (k < 0)
                return k;
        if (conn_access_log_allowed(c))
                log_info("region '%s': mode %04o -> %04o by uid %u", r->name, (unsigned)before.mode,
                         (unsigned)m.mode, (unsigned)c->uid);
        conn_access_meta_changed(c, f, PROTO_EV_CHMOD, r, &before);
        return 0;
}

int conn_access_handle_chown(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct access_cred cred;
        struct region_meta before;
        struct proto_chown m;
        struct region *r;
        uint32_t before_gid;
        bool new_owner;
        int k;

        k = proto_chown_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return k;
        r = regtab_lookup(c->ctx->regtab, m.name);
        if (!r)
                return conn_fail(res, -ENOENT, "no such region");
        if (c->uid != 0 && m.gid != PROTO_ID_UNCHANGED && m.gid != c->gid)
                conn_access_load_groups(c);
        cred = conn_access_cred(c);
        if (access_check_chown(&cred, &r->meta, m.uid, m.gid) < 0) {
                conn_access_log_refusal(c, "chown", r);
                return conn_fail(res, -EACCES,
                                 "only root may change the owner; the owner may change the group to "
                                 "one of its groups");
        }
        before = r->meta;
        before_gid = r->store.gid;
        new_owner = m.uid != PROTO_ID_UNCHANGED && m.uid != r->meta.uid;
        if (new_owner) {
                /* the new owner pays from now on; root is trusted with other users' quotas */
                k = quota_charge(c->ctx->quota, m.uid, (int64_t)r->charged, 1, 0, 0);
                if (k < 0)
                        return conn_fail(res, k, "out of memory");
                r->meta.uid = m.uid;
                /* a restart charges it within the new owner's limits: its last connection's group, if any */
                r->store.gid = quota_get(c->ctx->quota, m.uid) ? quota_get(c->ctx->quota, m.uid)->gid
                                                               : REGION_STORE_GID_UNKNOWN;
        }
        if (m.gid != PROTO_ID_UNCHANGED)
                r->meta.gid = m.gid;
        k = conn_access_meta_store(r, &before, before_gid, "owner", res);
        if (k < 0) {
                if (new_owner) /* it has an entry (charged just above): never allocates */
                        quota_charge(c->ctx->quota, m.uid, -(int64_t)r->charged, -1, 0, 0);
                return k;
        }
        if (new_owner)
                quota_charge(c->ctx->quota, before.uid, -(int64_t)r->charged, -1, 0, 0);
        if (conn_access_log_allowed(c))
                log_info("region '%s': owner now %u:%u (by uid %u)", r->name, (unsigned)r->meta.uid,
                         (unsigned)r->meta.gid, (unsigned)c->uid);
        conn_access_meta_changed(c, f, PROTO_EV_CHOWN, r, &before);
        return 0;
}

/* QUOTA: its row says it takes no payload. */
int conn_access_handle_quota(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        const struct quota_usage *u = quota_get(c->ctx->quota, c->uid);
        struct proto_quota_reply rep = {
                .uid = c->uid,
                .gid = c->gid,
                .max_region_size = c->ctx->config->max_region_size,
        };
        struct config_quota limits;
        uint8_t buf[128];

        (void)res;
        config_quota_for(c->ctx->config, c->uid, c->gid, &limits);
        if (u) {
                rep.bytes = u->bytes;
                rep.regions = u->regions;
                rep.connections = u->connections;
                rep.fds = u->fds;
        }
        rep.max_bytes = limits.bytes;
        rep.max_regions = limits.regions;
        rep.max_connections = limits.connections;
        /* quota-fds 0 is not unlimited: report the default bound conn_access_quota_check() applies */
        rep.max_fds = limits.fds ? limits.fds : conn_uid_fds_default(c->ctx);
        conn_reply_encoded(c, &f->hdr, proto_quota_reply_encode(&rep, buf, sizeof(buf)), buf, NULL, 0);
        return 0;
}
