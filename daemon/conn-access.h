/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* conn-access: who may connect and do what (allow-list, region access, quotas); CHMOD, CHOWN, QUOTA. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "access.h"
#include "conn-internal.h"
#include "conn.h"
#include "quota.h"
#include "regtab.h"

struct region;

/* conn_access_refuse() - one error reply (HELLO, id 0) at once, then close @fd (consumed). Return: nothing. */
void conn_access_refuse(int fd, int error, const char *message);

/*
 * conn_access_peer_groups() - SO_PEERGROUPS of @fd.
 * Return: 0 with *groupsp (malloc'd, may be NULL) and *np; negative errno.
 */
int conn_access_peer_groups(int fd, gid_t **groupsp, size_t *np);

/*
 * conn_access_load_groups() - read @c's supplementary groups (SO_PEERGROUPS)
 * if not yet done; only decisions that depend on them call it.
 * Return: 0, or negative errno (they stay unknown).
 */
int conn_access_load_groups(struct conn *c);

/* Return: @c's identity for access.h (supplementary groups as far as loaded). */
struct access_cred conn_access_cred(const struct conn *c);

/*
 * conn_access_log_allowed() - may one more line about @c's requests be
 * logged? At most CONN_MAX_LOGGED_REFUSALS per connection (then one line
 * saying the rest are not), and CONN_LOG_PER_UID per minute for all of the
 * uid's connections together (then one line saying so). Every line about a
 * client's requests (refusals, CHMOD, CHOWN, REGISTER refused, a drop)
 * asks first. Return: true to log it.
 */
bool conn_access_log_allowed(const struct conn *c);

/*
 * conn_access_log_refusal() - log who was refused @what on @r (within
 * conn_access_log_allowed()). Return: nothing.
 */
void conn_access_log_refusal(const struct conn *c, const char *what, const struct region *r);

/*
 * conn_access_check() - may @c do @what to @r? The single place for
 * owner/mode rules (access.h): read or write by mode, RESIZE, SEAL, DELETE
 * and CHMOD by the owner; uid 0 may do anything. A refusal is logged with
 * who asked for what (rate-limited per connection).
 * Return: 0, or -EACCES.
 */
/* conn_access_check() and conn_access_allowed(), out of line (refusals logged if @log). Return: 0 or -EACCES. */
int conn_access_decide(const struct conn *c, const struct region *r, enum conn_access what, bool log);

static inline int conn_access_check(const struct conn *c, const struct region *r, enum conn_access what)
{
        /* inline, the usual cases as access_check() decides them: root, and an owner reading or writing its region */
        if (c->uid == 0)
                return 0;
        if (r && c->uid == r->meta.uid &&
            ((what == CONN_ACCESS_READ && (r->meta.mode & 0400)) || (what == CONN_ACCESS_WRITE && (r->meta.mode & 0200))))
                return 0;
        return conn_access_decide(c, r, what, true);
}

/* conn_access_allowed() - conn_access_check() without logging a refusal (LIST). Return: 0 or -EACCES. */
int conn_access_allowed(const struct conn *c, const struct region *r, enum conn_access what);

/*
 * conn_access_find() - the prologue of a request on a named region: look up
 * @name and check that @c may do @what to it (a refusal is logged).
 * Return: 0 with *regionp; -ENOENT ("no such region") or -EACCES (@denied,
 * or "permission denied" if NULL) with @res's message set.
 */
int conn_access_find(struct conn *c, const char *name, enum conn_access what, const char *denied,
                     struct region **regionp, struct conn_result *res);

/*
 * conn_access_quota_check() - may @uid (whose limits come from @c's primary gid if
 * @uid is @c's peer, else from the primary gid of @uid's last connection,
 * quota_usage.gid, or from its [uid] section and defaults alone if none is
 * known) take these amounts more? Return: 0; -EDQUOT with @res's message saying which quota,
 * the numbers and what to do (quota_excess_format()).
 */
int conn_access_quota_check(const struct conn *c, uint32_t uid, uint64_t bytes, uint64_t regions, uint64_t fds,
                            struct conn_result *res);

/*
 * conn_access_fd_check() - conn_access_quota_check() of one more fd in
 * flight for @c's own uid (every OPEN's), inline while within the limit.
 * Return: as conn_access_quota_check().
 */
static inline int conn_access_fd_check(const struct conn *c, struct conn_result *res)
{
        const struct quota_usage *u = c->usage;

        if (u && u->uid == c->uid && !quota_over(u->fds, 1, conn_limits(c)->fds))
                return 0;
        return conn_access_quota_check(c, c->uid, 0, 0, 1, res);
}

/* Return: how many more bytes @uid's byte quota allows (limits as for conn_access_quota_check()); UINT64_MAX if unlimited. */
uint64_t conn_access_quota_room(const struct conn *c, uint32_t uid);

/* Request handlers (conn-internal.h's conn_handler_fn). */
conn_handler_fn conn_access_handle_chmod;
conn_handler_fn conn_access_handle_chown;
conn_handler_fn conn_access_handle_quota;
