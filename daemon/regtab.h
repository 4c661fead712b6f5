/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* regtab: the daemon's table of named regions (hash by name and by id), waiters for names and versions. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

struct conn;
struct regtab;

/* What describes a region besides its fd: all of it must survive a restart (service.c). */
struct region_meta {
        uint64_t id;
        uint64_t ctime_ns;  /* CLOCK_REALTIME at create */
        uint32_t uid;       /* owner */
        uint32_t gid;
        uint32_t mode;      /* permission bits 0..0777 */
        uint32_t flags;     /* PROTO_REGION_LEASED / RESIZABLE */
        uint16_t backend;   /* PROTO_BACKEND_* */
};

/* Where a region's fd is while it is parked in a keeper process (regtab.c, keeper.h). */
struct region_park {
        int keeper;          /* index of the keeper holding the fd while region.fd is -1, else -1 */
        int fd;              /* the fd's number in that keeper */
        uint64_t dev, ino;   /* the object's identity (0 0: not known yet), checked when reopened from the
                                keeper or read-only; set at CREATE and when parked */
};

/* The connection whose close deletes a region (conn-region.c), and the other regions leased to it. */
struct region_lease {
        struct conn *conn;   /* NULL if not leased, or if its connection is gone (@expiring) */
        struct region *prev, *next;
        bool expiring;       /* its connection is gone: in conn_ctx.expiring, deleted at a later turn */
};

/* region_store.gid when not known (a region restored from a slot written before it was kept). */
#define REGION_STORE_GID_UNKNOWN UINT32_MAX

/* service.c's bookkeeping in the service manager's fd store. */
struct region_store {
        uint32_t slot;       /* UINT32_MAX if none */
        bool partial;        /* restored from a slot that said: charged less than its size (a holder's growth
                              * past the owner's limits); quota_new_restored() charges these last */
        /*
         * The primary gid whose [gid] section the owner's limits were read with when the region was charged
         * (the owner's connection that made it, or last grew it with RESIZE; for another uid's request, the
         * gid that request judged the owner by), kept in the fd store: quota_new_restored() charges the
         * region within those limits again, not within the section of the region's group, which the owner
         * chooses (CHOWN). REGION_STORE_GID_UNKNOWN if not known.
         */
        uint32_t gid;
};

/* regtab's own links. */
struct region_tab {
        uint64_t hash; /* of the name with the table's key, set by regtab_add(): hashed once, not at every grow */
        struct region *hnext_name;
        struct region *hnext_id;
        struct region *prev, *next; /* all regions in id order (ids only grow) */
};

struct region {
        struct region_meta meta;
        char *name;          /* NUL-terminated, valid per proto_name_check() */
        size_t name_len;
        int fd;              /* owned: O_RDWR, close-on-exec; -1 while parked in a keeper */
        uint32_t seals;      /* last seals seen (LIST shows it for parked regions) */
        uint64_t size;       /* as last set by create/resize, or found (a holder's ftruncate) */
        bool size_final;     /* @size was read (fstat) after seals against SHRINK and GROW were seen on the
                              * object (or, at CREATE, applied by the daemon before any fd of it left): seals
                              * are never removed, so it can no longer change */
        uint64_t charged;    /* what counts in regtab_bytes() and the owner's quota: size, except growth
                              * by a holder past the owner's limits (regtab_set_size()) */
        uint64_t open_count;
        bool resizing;       /* conn-region.c: a RESIZE's reservation is in flight (other RESIZEs: -EBUSY) */
        /* each owning module's fields */
        struct region_park park;
        struct region_lease lease;
        struct region_store store;
        struct region_tab tab;
};

/*
 * region_generation() - the version number of @r under its name
 * (docs/protocol.md section 15.1): its id, which only grows, is never reused
 * while the daemon runs and is kept across restarts by the fd store; every
 * PUBLISH makes a new region and so a new id.
 * Return: the generation, >= 1 once @r is in a table.
 */
static inline uint64_t region_generation(const struct region *r)
{
        return r->meta.id;
}

/*
 * A waiter (OPEN or OPENV with WAIT). The caller embeds it and keeps @name
 * alive while it is registered. Waiters are kept per set and hashed by name
 * (buckets keyed by the table's name hash, doubled whenever a set passes two
 * waiters per bucket, halved once it is down to half a waiter per bucket,
 * never below the first size), so waking a name costs the waiters of that name and
 * their bucket's few others, never all waiters.
 * When a region of that name whose generation is greater than
 * @after_generation is announced with regtab_wake(), the waiter is
 * unregistered and @wake is called once; a waiter the region does not
 * satisfy stays registered. A wake callback may remove waiters (its own
 * connection's, when the answer drops it) but must not register any.
 */
struct regtab_waiter;
typedef void (*regtab_wake_fn)(struct regtab_waiter *w, struct region *r);

/* The table's waiter sets: regtab_wake() wakes them in this order. */
enum regtab_wait_set {
        REGTAB_WAIT_NAME,    /* OPEN: for a name that does not exist yet (after_generation 0) */
        REGTAB_WAIT_VERSION, /* OPENV: for a version of the name newer than after_generation */
        REGTAB_WAIT_SETS,
};

struct regtab_waiter {
        const char *name; /* borrowed */
        size_t name_len;
        enum regtab_wait_set set;
        uint64_t after_generation; /* woken only by a region whose generation is greater (0: any) */
        regtab_wake_fn wake;
        /* regtab's own links */
        uint64_t hash;
        struct regtab_waiter *prev, *next;
        bool linked;
};

/*
 * regtab_region_new() - make a region (not yet in any table).
 * @fd: consumed, even on error. @name must be 1..PROTO_NAME_MAX bytes.
 * Return: 0 with *regionp set; -EINVAL for a bad name or fd; -ENOMEM.
 */
int regtab_region_new(const char *name, int fd, uint64_t size, const struct region_meta *meta,
                      struct region **regionp);

/*
 * regtab_region_free() - close the fd and free. The region must not be in a
 * table. NULL-safe, keeps errno. Return: NULL.
 */
struct region *regtab_region_free(struct region *r);

/* For __attribute__((cleanup)). */
void regtab_region_freep(struct region **rp);

/*
 * regtab_new() - an empty table; the hash key for names is random.
 * Return: 0 with *tp set, or -ENOMEM.
 */
int regtab_new(struct regtab **tp);

/*
 * regtab_free() - free every region still in the table (closing their fds).
 * Waiters must have been removed by their owners. NULL-safe. Return: NULL.
 */
struct regtab *regtab_free(struct regtab *t);

/*
 * regtab_add() - insert @r (the table owns it from then on). If r->meta.id
 * is 0 the next id is assigned; otherwise it is kept and the counter moves
 * past it. Waiters are not woken here: see regtab_wake().
 * Return: 0; -EEXIST if the name or the id is taken; -ENOMEM.
 */
int regtab_add(struct regtab *t, struct region *r);

/*
 * regtab_remove() - take @r out of the table; the caller owns it again
 * (free it with regtab_region_free()). Return: nothing.
 */
void regtab_remove(struct regtab *t, struct region *r);

/* Return: the region named @name, or NULL. */
struct region *regtab_lookup(struct regtab *t, const char *name);

/* regtab_lookup_len() - regtab_lookup() of a name whose length @len is known (a decoded request's). Return: as it. */
struct region *regtab_lookup_len(struct regtab *t, const char *name, size_t len);

/* Return: the region with id @id, or NULL. */
struct region *regtab_lookup_id(struct regtab *t, uint64_t id);

/* Regions and ids regtab_next_after() looks at, each way, for a cursor whose region is gone. */
#define REGTAB_STALE_CURSOR_STEPS 1024u

/*
 * regtab_next_after() - iteration in id order for LIST: the first region
 * whose id is greater than @cursor (0 = from the start). O(1) when the
 * region @cursor still exists; else bounded: REGTAB_STALE_CURSOR_STEPS
 * steps back from the tail, forward from the head, and id lookups after
 * @cursor. Return: the region; NULL with *resumep = 0 at the end; NULL
 * with *resumep > @cursor if none was found within those bounds (no
 * region has an id in (@cursor, *resumep]: go on from there).
 */
struct region *regtab_next_after(struct regtab *t, uint64_t cursor, uint64_t *resumep);

/* Return: the first region in id order, or NULL. */
struct region *regtab_first(struct regtab *t);

/*
 * regtab_set_size() - record a new size of @r and what of it is charged
 * (@charged <= @size), keeping the byte count right. Return: nothing.
 */
void regtab_set_size(struct regtab *t, struct region *r, uint64_t size, uint64_t charged);

/* Return: the number of regions in the table. */
uint64_t regtab_count(const struct regtab *t);

/* Return: the sum of what the regions in the table are charged (saturated at UINT64_MAX; never wraps). */
uint64_t regtab_bytes(const struct regtab *t);

/* Return: the id the next regtab_add() of an id-less region will assign. */
uint64_t regtab_next_id(const struct regtab *t);

/*
 * regtab_keep_ids_below() - the ids below @next_id were handed out before (by an earlier run: regions the fd
 * store did not keep, deleted or LEASEd): never give them again. Raises the next id to @next_id if lower.
 * Return: nothing.
 */
void regtab_keep_ids_below(struct regtab *t, uint64_t next_id);

/*
 * regtab_waiter_add() - register @w in its set (name, name_len, set,
 * after_generation and wake filled in). Return: nothing.
 */
void regtab_waiter_add(struct regtab *t, struct regtab_waiter *w);

/* regtab_waiter_remove() - unregister @w if registered. Return: nothing. */
void regtab_waiter_remove(struct regtab *t, struct regtab_waiter *w);

/*
 * regtab_set_fd_budget() - keep at most @hot_max region fds in this process
 * and park the others in keeper processes (keeper.h). 0 = no limit.
 * @per_keeper: fds per keeper, 0 = a keeper's fd hard limit. Return: nothing.
 */
void regtab_set_fd_budget(struct regtab *t, unsigned hot_max, unsigned per_keeper);

/*
 * regtab_set_hot_max() - change the budget regtab_set_fd_budget() set (a
 * reload): keepers and what they hold stay. Regions held here beyond a lowered
 * budget stay until regtab_park_excess() parks them; parked ones stay parked
 * under a raised one (regions made later are kept here up to it). Return: nothing.
 */
void regtab_set_hot_max(struct regtab *t, unsigned hot_max);

/* Return: the budget of region fds held here (0 = no limit). */
unsigned regtab_fd_budget(const struct regtab *t);

/* Return: true if this process holds more region fds than its budget. */
bool regtab_over_fd_budget(const struct regtab *t);

/*
 * regtab_park_excess() - park region fds held here, the oldest regions first,
 * until the budget is met or @max were parked. Stops at the first failure
 * (that fd and the rest stay here). Return: how many were parked; negative errno.
 */
int regtab_park_excess(struct regtab *t, unsigned max);

/*
 * regtab_settle() - once @r is in the table for good (stored, acknowledged),
 * park its fd if this process is over its fd budget. On failure the fd just
 * stays here. Return: 1 if parked, 0 if not, negative errno on failure.
 */
int regtab_settle(struct regtab *t, struct region *r);

/* An fd to a region's object for one request, saying whether it must be closed. */
struct regtab_fd {
        int fd;
        bool owned; /* a copy fetched from a keeper (close it); else the region's own fd, borrowed */
        bool has_size; /* @size is the object's size, read by the fetch's own check (no fstat needed) */
        uint64_t size;
};

/*
 * regtab_region_get_fd() - an fd to @r's object for the duration of one
 * request: r's own fd (borrowed) or a copy fetched from its keeper (owned).
 * Give it back with regtab_fd_put(). Return: 0 with *fdp; -EIO if the keeper is gone.
 */
int regtab_region_get_fd(struct regtab *t, struct region *r, struct regtab_fd *fdp);

/*
 * regtab_region_get_send_fd() - regtab_region_get_fd() for an fd that is only
 * sent (an OPEN's reply) and whose size need not be read (@r->size_final):
 * a parked one is then copied from its keeper with one pidfd_getfd() and no
 * fstat (keepers_copy() says why that is safe). Everything else as
 * regtab_region_get_fd(). Return: the same.
 */
int regtab_region_get_send_fd(struct regtab *t, struct region *r, struct regtab_fd *fdp);

/* regtab_fd_put() - close @h's fd if it owns it; @h is then empty. NULL-safe. Return: nothing. */
void regtab_fd_put(struct regtab_fd *h);

/*
 * regtab_fd_take() - an fd of the caller's own to the same object: @h's fd
 * itself if @h owns it (@h then borrows it until regtab_fd_put(), which no
 * longer closes it), else a F_DUPFD_CLOEXEC copy.
 * Return: 0 with *fdp; negative errno from fcntl.
 */
int regtab_fd_take(struct regtab_fd *h, int *fdp);

/* Return: the number of keeper processes, and the pid of one (for tests and benchmarks). */
size_t regtab_keeper_count(const struct regtab *t);
pid_t regtab_keeper_pid(const struct regtab *t, size_t index);
/* Return: region fds held by this process itself. */
uint64_t regtab_hot_fds(const struct regtab *t);
/*
 * regtab_send_pending_drops() - send the keepers' DROPs that a transient
 * error kept pending (keepers_send_pending()); the daemon's status timer
 * calls it. Return: 0 (none pending now); negative errno (some still are).
 */
int regtab_send_pending_drops(struct regtab *t);
/*
 * regtab_reap_keepers() - reap the keepers given up and killed, without
 * waiting (keepers_reap()); the daemon's status timer calls it.
 * Return: the number of them not reaped yet.
 */
size_t regtab_reap_keepers(struct regtab *t);

/* Return: the number of waiters registered in @set. */
uint64_t regtab_waiter_count(const struct regtab *t, enum regtab_wait_set set);

/*
 * regtab_waiter_visits() - waiters regtab_wake() has looked at since the
 * table was made: those of the woken name and the others in its buckets
 * (for tests and benchmarks: it shows a wake does not scan every waiter).
 * Return: the count.
 */
uint64_t regtab_waiter_visits(const struct regtab *t);

/* Return: the buckets of @set's table now (for tests: it grows and shrinks with the count). */
size_t regtab_waiter_buckets(const struct regtab *t, enum regtab_wait_set set);

/*
 * regtab_wake() - wake the waiters that @r satisfies (call once the region is
 * in the table for good): those of the name set, then those of the version
 * set, each set's in the order they were registered. Each set's are all
 * unregistered before the first of them is called, so a callback that
 * removes other waiters (already woken or not) is safe; the memory of a
 * waiter woken but not yet called must stay valid until it is called.
 * Return: how many were woken.
 */
unsigned regtab_wake(struct regtab *t, struct region *r);
