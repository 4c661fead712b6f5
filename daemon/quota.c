/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* quota: what each uid holds in the daemon (bytes, regions, connections, fds in flight) against its limits. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"
#include "quota.h"

struct quota {
        /* sorted by uid; each entry is its own allocation, so that an entry held by a connection (quota_hold())
         * stays where it is while others come and go */
        struct quota_usage **v;
        size_t n, cap;
        /*
         * Where the last uid looked up was found: a connection's requests
         * look up its uid several times each (quota checks, fds charged and
         * received), usually with no other uid's in between. Only a hint: it
         * is used when the entry there has the uid, so inserts and removals
         * that shift the array need not keep it right.
         */
        size_t hint;
};

/* Return: the index of @uid, or of where it would go, with *foundp. */
static size_t quota_find(const struct quota *q, uint32_t uid, bool *foundp)
{
        size_t lo = 0, hi = q->n;

        if (q->hint < q->n && q->v[q->hint]->uid == uid) {
                *foundp = true;
                return q->hint;
        }

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (q->v[mid]->uid < uid)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *foundp = lo < q->n && q->v[lo]->uid == uid;
        if (*foundp)
                ((struct quota *)q)->hint = lo; /* a cache: lookups change no observable state */
        return lo;
}

int quota_new(struct regtab *t, struct quota **qp)
{
        struct quota *q = calloc(1, sizeof(*q));
        int r;

        if (!q)
                return -ENOMEM;
        for (struct region *reg = t ? regtab_first(t) : NULL; reg; reg = reg->tab.next) {
                r = quota_charge(q, reg->meta.uid, (int64_t)reg->charged, 1, 0, 0);
                if (r < 0) {
                        quota_free(q);
                        return r;
                }
        }
        *qp = q;
        return 0;
}

/* Return: @a - @b, 0 if @b >= @a. */
static uint64_t quota_room(uint64_t a, uint64_t b)
{
        return b >= a ? 0 : a - b;
}

/* Charge restored @reg to its owner in @q and @t: its size, within @cfg's limits. Return: 0; -ENOMEM. */
static int quota_restore_charge(struct quota *q, struct regtab *t, const struct config *cfg, struct region *reg)
{
        const struct quota_usage *u = quota_get(q, reg->meta.uid);
        struct config_quota limits;
        uint64_t charged, room;

        charged = reg->size < cfg->max_region_size ? reg->size : cfg->max_region_size;
        if (reg->store.gid != REGION_STORE_GID_UNKNOWN) {
                /*
                 * The limits it was charged within before the restart: those of the primary group its owner
                 * connected with. Not the region's group, which the owner picks (CHOWN to any group it is in):
                 * a tighter section there charged it less, and the owner had room for it twice; a looser one
                 * charged a growth the daemon never saw past the owner's limits.
                 */
                config_quota_for(cfg, reg->meta.uid, reg->store.gid, &limits);
        } else {
                /* a slot written before the gid was kept: the region's group stands for it */
                config_quota_for(cfg, reg->meta.uid, reg->meta.gid, &limits);
                if (reg->store.partial) {
                        struct config_quota own;

                        /*
                         * A holder's growth: the region's group is the owner's choice (CHOWN to any group it
                         * is in), so its [gid] section may not raise the charge past the limits the uid has
                         * without one.
                         */
                        config_quota_for(cfg, reg->meta.uid, UINT32_MAX, &own);
                        if (own.bytes && (!limits.bytes || own.bytes < limits.bytes))
                                limits.bytes = own.bytes;
                }
        }
        if (limits.bytes) {
                room = quota_room(limits.bytes, u ? u->bytes : 0);
                charged = charged < room ? charged : room;
        }
        if (cfg->max_bytes) {
                room = quota_room(cfg->max_bytes, regtab_bytes(t));
                charged = charged < room ? charged : room;
        }
        regtab_set_size(t, reg, reg->size, charged);
        return quota_charge(q, reg->meta.uid, (int64_t)charged, 1, 0, 0);
}

int quota_new_restored(struct regtab *t, const struct config *cfg, struct quota **qp)
{
        const uint32_t fixed = PROTO_SEAL_SHRINK | PROTO_SEAL_GROW;
        struct quota *q;
        struct region *reg;
        int r;

        r = quota_new(NULL, &q);
        if (r < 0)
                return r;
        for (reg = regtab_first(t); reg; reg = reg->tab.next)
                regtab_set_size(t, reg, reg->size, 0);
        /*
         * The regions charged in full before the restart (their slot says so; a CREATE's, a RESIZE's) first,
         * so that a holder's growth, which was charged only the room they left, takes only that room again
         * and never the charge of a region made within the limits: else deleting the grown region would
         * leave the other held and uncharged. Among them (all of them in a store written before the slots
         * kept it), sealed SHRINK and GROW first: most were charged their size since they were made. Then the
         * partly charged ones.
         */
        for (int pass = 0; pass < 3; pass++)
                for (reg = regtab_first(t); reg; reg = reg->tab.next) {
                        int p = reg->store.partial ? 2 : (reg->seals & fixed) == fixed ? 0 : 1;

                        if (p != pass)
                                continue;
                        r = quota_restore_charge(q, t, cfg, reg);
                        if (r < 0) {
                                quota_free(q);
                                return r;
                        }
                }
        *qp = q;
        return 0;
}

struct quota *quota_free(struct quota *q)
{
        if (!q)
                return NULL;
        for (size_t i = 0; i < q->n; i++)
                free(q->v[i]);
        free(q->v);
        free(q);
        return NULL;
}

const struct quota_usage *quota_get(const struct quota *q, uint32_t uid)
{
        bool found;
        size_t i;

        if (!q)
                return NULL;
        i = quota_find(q, uid, &found);
        return found ? q->v[i] : NULL;
}

/* Make an entry for @uid at @i (where quota_find() said it goes). Return: the entry, or NULL (-ENOMEM). */
static struct quota_usage *quota_insert(struct quota *q, size_t i, uint32_t uid)
{
        struct quota_usage *u;

        if (q->n == q->cap) {
                size_t cap = q->cap ? q->cap * 2 : 8;
                struct quota_usage **v = realloc(q->v, cap * sizeof(*v));

                if (!v)
                        return NULL;
                q->v = v;
                q->cap = cap;
        }
        u = malloc(sizeof(*u));
        if (!u)
                return NULL;
        *u = (struct quota_usage){ .uid = uid, .gid = QUOTA_GID_UNKNOWN };
        memmove(&q->v[i + 1], &q->v[i], (q->n - i) * sizeof(*q->v));
        q->v[i] = u;
        q->n++;
        return u;
}

/* Remove @u, at @i, if it holds nothing. */
static void quota_drop_if_empty(struct quota *q, size_t i, struct quota_usage *u)
{
        if (u->bytes || u->regions || u->connections || u->fds || u->fds_unread)
                return;
        memmove(&q->v[i], &q->v[i + 1], (q->n - i - 1) * sizeof(*q->v));
        q->n--;
        free(u);
}

static int quota_charge_all(struct quota *q, uint32_t uid, int64_t bytes, int64_t regions, int64_t connections,
                            int64_t fds, int64_t unread)
{
        struct quota_usage *u;
        bool found;
        size_t i;

        if (!q)
                return 0; /* no connection, no accounting (see quota.h) */
        i = quota_find(q, uid, &found);
        if (found) {
                u = q->v[i];
        } else {
                if (bytes <= 0 && regions <= 0 && connections <= 0 && fds <= 0 && unread <= 0)
                        return 0; /* nothing held, nothing to refund */
                u = quota_insert(q, i, uid);
                if (!u)
                        return -ENOMEM;
        }
        u->bytes = quota_add(u->bytes, bytes);
        u->regions = quota_add(u->regions, regions);
        u->connections = quota_add(u->connections, connections);
        u->fds = quota_add(u->fds, fds);
        u->fds_unread = quota_add(u->fds_unread, unread);
        quota_drop_if_empty(q, i, u);
        return 0;
}

int quota_hold(struct quota *q, uint32_t uid, struct quota_usage **usagep)
{
        struct quota_usage *u;
        bool found;
        size_t i;

        if (!q) {
                *usagep = NULL;
                return 0;
        }
        i = quota_find(q, uid, &found);
        u = found ? q->v[i] : quota_insert(q, i, uid);
        if (!u)
                return -ENOMEM;
        u->connections = quota_add(u->connections, 1);
        *usagep = u;
        return 0;
}

int quota_hold_found(struct quota *q, const struct quota_usage *found, uint32_t uid, struct quota_usage **usagep)
{
        struct quota_usage *u = (struct quota_usage *)found; /* the table's own entry: quota_get() gave it const */

        if (!u)
                return quota_hold(q, uid, usagep);
        u->connections = quota_add(u->connections, 1);
        *usagep = u;
        return 0;
}

void quota_release(struct quota *q, struct quota_usage *u, uint64_t fds)
{
        bool found;
        size_t i;

        if (!q || !u)
                return;
        u->connections = quota_add(u->connections, -1);
        u->fds = fds > u->fds ? 0 : u->fds - fds;
        if (u->connections)
                return; /* the common case: other connections of the uid, or regions it owns */
        i = quota_find(q, u->uid, &found);
        if (found && q->v[i] == u)
                quota_drop_if_empty(q, i, u);
}

int quota_charge(struct quota *q, uint32_t uid, int64_t bytes, int64_t regions, int64_t connections, int64_t fds)
{
        return quota_charge_all(q, uid, bytes, regions, connections, fds, 0);
}

int quota_charge_unread(struct quota *q, uint32_t uid, int64_t delta)
{
        return quota_charge_all(q, uid, 0, 0, 0, 0, delta);
}

int quota_charge_fds(struct quota *q, uint32_t uid, int64_t fds, int64_t unread)
{
        return quota_charge_all(q, uid, 0, 0, 0, fds, unread);
}

int quota_check(const struct quota *q, uint32_t uid, const struct config_quota *limits, uint64_t bytes,
                uint64_t regions, uint64_t connections, uint64_t fds, struct quota_excess *excessp)
{
        return quota_check_usage(quota_get(q, uid), uid, limits, bytes, regions, connections, fds, excessp);
}

int quota_check_excess(const struct quota_usage *u, uint32_t uid, const struct config_quota *limits, uint64_t bytes,
                       uint64_t regions, uint64_t connections, uint64_t fds, struct quota_excess *excessp)
{
        static const struct quota_usage none;

        if (!u)
                u = &none;
        const struct quota_excess rows[] = {
                { QUOTA_BYTES, uid, u->bytes, bytes, limits->bytes },
                { QUOTA_REGIONS, uid, u->regions, regions, limits->regions },
                { QUOTA_CONNECTIONS, uid, u->connections, connections, limits->connections },
                { QUOTA_FDS, uid, u->fds, fds, limits->fds },
        };

        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
                if (!quota_over(rows[i].used, rows[i].add, rows[i].limit))
                        continue;
                if (excessp)
                        *excessp = rows[i];
                return -EDQUOT;
        }
        return 0;
}

/* How each quota is said: "<quota> quota is reached: uid N <verb> <used><what>, <key> is <limit>; <remedy>". */
static const struct quota_words {
        const char *quota, *key, *verb, *what, *remedy;
} quota_words[] = {
        [QUOTA_BYTES] = { "byte", "quota-bytes", "owns", " in regions", "delete or shrink regions" },
        [QUOTA_REGIONS] = { "region", "quota-regions", "owns", "", "delete regions" },
        [QUOTA_CONNECTIONS] = { "connection", "quota-connections", "has", " open", "close some" },
        [QUOTA_FDS] = { "fd", "quota-fds", "has", " queued or unread", "read your replies" },
        [QUOTA_WATCHES] = { "watch", "quota-watches", "holds", "", "unwatch some" },
};

/* Return: @v in @buf, as a size (64K) if @size. */
static const char *quota_number(uint64_t v, bool size, char *buf, size_t bufsize)
{
        if (size)
                return parse_size_format(v, buf, bufsize);
        snprintf(buf, bufsize, "%" PRIu64, v);
        return buf;
}

const char *quota_excess_format(const struct quota_excess *e, char *buf, size_t size)
{
        const struct quota_words *w = &quota_words[e->kind];
        bool bytes = e->kind == QUOTA_BYTES;
        char used[32], add[32], limit[32], asked[64] = "";

        /* a count of bytes says how many more were asked: the request may be far under the limit alone */
        if (bytes)
                snprintf(asked, sizeof(asked), ", %s more are asked", quota_number(e->add, true, add, sizeof(add)));
        snprintf(buf, size, "%s quota is reached: uid %" PRIu32 " %s %s%s%s, %s is %s; %s, or raise %s in iomemd.conf",
                 w->quota, e->uid, w->verb, quota_number(e->used, bytes, used, sizeof(used)), w->what, asked, w->key,
                 quota_number(e->limit, bytes, limit, sizeof(limit)), w->remedy, w->key);
        return buf;
}

size_t quota_count(const struct quota *q)
{
        return q ? q->n : 0;
}

const struct quota_usage *quota_nth(const struct quota *q, size_t index)
{
        return q->v[index];
}
