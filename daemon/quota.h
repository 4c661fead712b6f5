/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* quota: what each uid holds in the daemon (bytes, regions, connections, fds in flight) against its limits. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "regtab.h"

/* quota_usage.gid when no connection of the uid was accepted since its entry was made. */
#define QUOTA_GID_UNKNOWN UINT32_MAX
_Static_assert(QUOTA_GID_UNKNOWN == REGION_STORE_GID_UNKNOWN, "a gid not known is the same in both");

/* One uid's usage. */
struct quota_usage {
        uint32_t uid;
        /*
         * The primary gid of the uid's last connection accepted (conn_new() sets it), kept while the entry
         * lives (the uid has connections or owns regions): the [gid] section that a quota check for this uid
         * made by another uid's request reads, as the uid's own requests would. QUOTA_GID_UNKNOWN until one
         * connects (regions restored after a restart, given to it by CHOWN).
         */
        uint32_t gid;
        uint64_t bytes;       /* sizes of the named regions it owns */
        uint64_t regions;     /* named regions it owns */
        uint64_t connections; /* connections open */
        uint64_t fds;         /* fds queued towards its connections or sent and not yet received */
        uint64_t fds_unread;  /* of those, sent and not known to be received (conn.c) */
};

/*
 * The table of usages, sorted by uid. The server makes it once, after
 * restoring regions from the fd store (quota_new() counts the regions
 * already in the table), and frees it when it stops.
 */
struct quota;

/*
 * quota_new() - an empty table, then charge every region of @t (may be
 * NULL) to its owner. Return: 0 with *qp set; -ENOMEM.
 */
int quota_new(struct regtab *t, struct quota **qp);

/*
 * quota_new_restored() - quota_new() for the regions restored from the fd
 * store, whose charges are not stored: each region is charged its size (as
 * a holder's ftruncate may have left it) as far as @cfg's max-region-size,
 * its owner's byte quota (with the [gid] section of region_store.gid, the
 * primary group its charge was judged by before the restart; in a slot
 * written before that was kept, of the region's group, and for a partly
 * charged region, a holder's growth, only where it is tighter than the uid's
 * limits without a group section) and max-bytes allow, as conn-region.c charges a
 * holder's growth; first the regions charged in full before the restart
 * (region_store.partial false), sealed SHRINK and GROW ones first, then the
 * partly charged ones, each in id order. Records the charges in @t. Return: 0 with *qp set; -ENOMEM.
 */
int quota_new_restored(struct regtab *t, const struct config *cfg, struct quota **qp);

/* quota_free() - NULL-safe. Return: NULL. */
struct quota *quota_free(struct quota *q);

/* Return: @uid's usage, or NULL if it holds nothing (all counts zero). */
const struct quota_usage *quota_get(const struct quota *q, uint32_t uid);

/* Return: @v + @delta, saturating at 0 and UINT64_MAX (counts never wrap). */
static inline uint64_t quota_add(uint64_t v, int64_t delta)
{
        uint64_t r;

        if (delta >= 0)
                return __builtin_add_overflow(v, (uint64_t)delta, &r) ? UINT64_MAX : r;
        /* -(uint64_t)delta: no overflow for INT64_MIN */
        return __builtin_sub_overflow(v, -(uint64_t)delta, &r) ? 0 : r;
}

/*
 * quota_hold() - charge one connection to @uid and give its entry, which
 * stays at the same address, and in the table, until the matching
 * quota_release(): a connection's own charges then need no lookup
 * (quota_usage_charge_fds()). A NULL @q gives a NULL entry (no accounting).
 * Return: 0 with *usagep set; -ENOMEM (nothing changed).
 */
int quota_hold(struct quota *q, uint32_t uid, struct quota_usage **usagep);

/*
 * quota_hold_found() - quota_hold() of @uid whose entry @found is (quota_get() of @q, with nothing added to or
 * removed from @q since; NULL: it had none), without looking it up again. Return: as quota_hold().
 */
int quota_hold_found(struct quota *q, const struct quota_usage *found, uint32_t uid, struct quota_usage **usagep);

/*
 * quota_release() - give back the connection quota_hold() charged to @u and
 * @fds of its fds; the entry goes if it then holds nothing. NULL @q or @u:
 * nothing. Return: nothing.
 */
void quota_release(struct quota *q, struct quota_usage *u, uint64_t fds);

/*
 * quota_usage_charge_fds() - quota_charge_fds() on an entry held with
 * quota_hold() (never removed by this: its connection is counted).
 * Return: nothing.
 */
static inline void quota_usage_charge_fds(struct quota_usage *u, int64_t fds, int64_t unread)
{
        if (fds)
                u->fds = quota_add(u->fds, fds);
        if (unread)
                u->fds_unread = quota_add(u->fds_unread, unread);
}

/*
 * quota_charge() - add the deltas (which may be negative) to @uid's usage,
 * making its entry if needed; entries whose counts all drop to zero are
 * removed. Counts never go below zero. A NULL @q is ignored. Return: 0;
 * -ENOMEM (nothing changed).
 */
int quota_charge(struct quota *q, uint32_t uid, int64_t bytes, int64_t regions, int64_t connections, int64_t fds);

/*
 * quota_charge_unread() - add @delta (may be negative) to @uid's count of fds
 * sent and not known to be received (fds_unread; conn.c counts them in fds
 * too). Return: 0; -ENOMEM.
 */
int quota_charge_unread(struct quota *q, uint32_t uid, int64_t delta);

/*
 * quota_charge_fds() - quota_charge() of @fds and quota_charge_unread() of
 * @unread in one update. Return: 0; -ENOMEM (nothing changed).
 */
int quota_charge_fds(struct quota *q, uint32_t uid, int64_t fds, int64_t unread);

/* The per-uid limits, by their key in iomemd.conf. */
enum quota_kind {
        QUOTA_BYTES,       /* quota-bytes */
        QUOTA_REGIONS,     /* quota-regions */
        QUOTA_CONNECTIONS, /* quota-connections */
        QUOTA_FDS,         /* quota-fds */
        QUOTA_WATCHES,     /* quota-watches (counted by conn-watch.c, not in this table) */
};

/* A limit a request would pass: which, whose, and the numbers, for its error text. */
struct quota_excess {
        enum quota_kind kind;
        uint32_t uid;
        uint64_t used;  /* held now */
        uint64_t add;   /* asked for */
        uint64_t limit; /* the limit in force */
};

/*
 * quota_check() - would adding these amounts to @uid's usage pass @limits
 * (0 = unlimited)? Sums are done without wrapping. On -EDQUOT, *@excessp
 * (may be NULL) says the first limit passed, in the order of the arguments.
 * Return: 0, or -EDQUOT.
 */
int quota_check(const struct quota *q, uint32_t uid, const struct config_quota *limits, uint64_t bytes,
                uint64_t regions, uint64_t connections, uint64_t fds, struct quota_excess *excessp);

/* Return: true if @used + @add passes @limit (0 = unlimited). */
static inline bool quota_over(uint64_t used, uint64_t add, uint64_t limit)
{
        return add && limit && (used > limit || add > limit - used);
}

/* quota_check_usage()'s refusal, out of line: the limit passed, in *@excessp. Return: -EDQUOT, or 0. */
int quota_check_excess(const struct quota_usage *u, uint32_t uid, const struct config_quota *limits, uint64_t bytes,
                       uint64_t regions, uint64_t connections, uint64_t fds, struct quota_excess *excessp);

/*
 * quota_check_usage() - quota_check() against @u (may be NULL: nothing held),
 * the entry of @uid found before (quota_get(), quota_hold()). Always inline
 * (GCC kept it a call of 8 arguments): a request usually asks for one kind,
 * within its limit, and the kinds it does not ask for (0) fold away.
 * Return: as quota_check().
 */
__attribute__((always_inline)) static inline int quota_check_usage(const struct quota_usage *u, uint32_t uid,
                                                                  const struct config_quota *limits, uint64_t bytes,
                                                                  uint64_t regions, uint64_t connections,
                                                                  uint64_t fds, struct quota_excess *excessp)
{
        uint64_t zero = 0;

        if (!quota_over(u ? u->bytes : zero, bytes, limits->bytes) &&
            !quota_over(u ? u->regions : zero, regions, limits->regions) &&
            !quota_over(u ? u->connections : zero, connections, limits->connections) &&
            !quota_over(u ? u->fds : zero, fds, limits->fds))
                return 0;
        return quota_check_excess(u, uid, limits, bytes, regions, connections, fds, excessp);
}

/*
 * quota_excess_format() - the error text of @e: which quota, what the uid
 * holds and asks, the limit, and what to do ("region quota is reached: uid
 * 1000 owns 8, quota-regions is 8; delete regions, or raise quota-regions in
 * iomemd.conf"). Sizes as parse_size_format() writes them. Return: @buf.
 */
const char *quota_excess_format(const struct quota_excess *e, char *buf, size_t size);

/* Return: the number of uids with an entry. */
size_t quota_count(const struct quota *q);

/* Return: the @index-th usage in uid order (@index < quota_count()), for METRICS. */
const struct quota_usage *quota_nth(const struct quota *q, size_t index);
