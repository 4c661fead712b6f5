/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* regtab: the daemon's table of named regions (hash by name and by id), waiters for names and versions. */
#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "closer.h"
#include "keeper.h"
#include "regtab.h"

#define REGTAB_MIN_BUCKETS 64u
/*
 * At first, and at least, per waiter set; doubled at 2 waiters per bucket,
 * halved (never below this) once down to half a waiter per bucket.
 */
#define REGTAB_WAITER_BUCKETS 1024u

/*
 * One set of waiters (enum regtab_wait_set): chained per bucket by name hash,
 * each name's newest first (the only order a wake needs: it takes one name's).
 */
struct regtab_waitset {
        struct regtab_waiter **buckets; /* @initial while REGTAB_WAITER_BUCKETS */
        size_t nbuckets;                /* power of two */
        uint64_t count;
        uint64_t grow_at; /* double at this count: 2 per bucket, or later after a doubling failed */
        struct regtab_waiter *initial[REGTAB_WAITER_BUCKETS];
};

struct regtab {
        struct region **by_name; /* chained through hnext_name */
        struct region **by_id;   /* chained through hnext_id */
        size_t nbuckets;         /* power of two, same for both */
        struct region *head, *tail; /* id order */
        uint64_t count;
        unsigned __int128 bytes; /* sum of charged sizes: up to max_regions of 2^63 each, never wraps */
        uint64_t next_id;
        uint64_t key[2]; /* siphash key: names come from clients, so the hash must not be predictable */
        struct regtab_waitset waiters[REGTAB_WAIT_SETS];
        uint64_t waiter_visits; /* regtab_waiter_visits() */
        /* fd budget: region fds beyond hot_max live in keepers */
        struct keepers keepers;
        uint64_t hot_max; /* 0 = no limit */
        uint64_t hot_fds;
};

/*
 * SipHash-1-3 (Aumasson, Bernstein: one compression round per 8 bytes, three
 * finalization rounds), keyed, on the bytes of a name. The reduced-round
 * variant the Linux kernel (hsiphash on 64-bit), Rust's std and Python's
 * dict use for hash tables: it keeps what a table needs from the key (a
 * client that does not know it cannot aim names at one bucket) at half the
 * rounds of SipHash-2-4, which was a tenth of the daemon's own instructions
 * in an OPEN. Words are read little-endian, as the reference does.
 */
#define SIP_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIP_ROUND(v0, v1, v2, v3)                                                                              \
        do {                                                                                                   \
                v0 += v1; v1 = SIP_ROTL(v1, 13); v1 ^= v0; v0 = SIP_ROTL(v0, 32);                              \
                v2 += v3; v3 = SIP_ROTL(v3, 16); v3 ^= v2;                                                     \
                v0 += v3; v3 = SIP_ROTL(v3, 21); v3 ^= v0;                                                     \
                v2 += v1; v1 = SIP_ROTL(v1, 17); v1 ^= v2; v2 = SIP_ROTL(v2, 32);                              \
        } while (0)

static uint64_t regtab_siphash(const uint64_t key[2], const void *data, size_t len)
{
        const uint8_t *p = data, *end = p + (len & ~(size_t)7);
        uint64_t v0 = 0x736f6d6570736575ULL ^ key[0];
        uint64_t v1 = 0x646f72616e646f6dULL ^ key[1];
        uint64_t v2 = 0x6c7967656e657261ULL ^ key[0];
        uint64_t v3 = 0x7465646279746573ULL ^ key[1];
        uint64_t b = (uint64_t)len << 56, m;

        for (; p != end; p += 8) {
                memcpy(&m, p, sizeof(m));
                m = le64toh(m);
                v3 ^= m;
                SIP_ROUND(v0, v1, v2, v3);
                v0 ^= m;
        }
        switch (len & 7) {
        case 7:
                b |= (uint64_t)p[6] << 48;
                /* fall through */
        case 6:
                b |= (uint64_t)p[5] << 40;
                /* fall through */
        case 5:
                b |= (uint64_t)p[4] << 32;
                /* fall through */
        case 4:
                b |= (uint64_t)p[3] << 24;
                /* fall through */
        case 3:
                b |= (uint64_t)p[2] << 16;
                /* fall through */
        case 2:
                b |= (uint64_t)p[1] << 8;
                /* fall through */
        case 1:
                b |= (uint64_t)p[0];
                break;
        default:
                break;
        }
        v3 ^= b;
        SIP_ROUND(v0, v1, v2, v3);
        v0 ^= b;
        v2 ^= 0xff;
        SIP_ROUND(v0, v1, v2, v3);
        SIP_ROUND(v0, v1, v2, v3);
        SIP_ROUND(v0, v1, v2, v3);
        return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t regtab_hash_id(uint64_t id)
{
        /* ids are ours, not the client's: a multiplicative hash spreads consecutive ids */
        return id * 0x9E3779B97F4A7C15ULL;
}

static uint64_t regtab_name_hash(const struct regtab *t, const char *name, size_t len)
{
        return regtab_siphash(t->key, name, len);
}

static size_t regtab_name_bucket(const struct regtab *t, uint64_t hash)
{
        return hash & (t->nbuckets - 1);
}

static size_t regtab_id_bucket(const struct regtab *t, uint64_t id)
{
        return (regtab_hash_id(id) >> 32) & (t->nbuckets - 1);
}

int regtab_region_new(const char *name, int fd, uint64_t size, const struct region_meta *meta,
                      struct region **regionp)
{
        struct region *r;
        size_t len;

        if (fd < 0)
                return -EINVAL;
        len = name ? strnlen(name, PROTO_NAME_MAX + 1) : 0;
        if (len == 0 || len > PROTO_NAME_MAX) {
                close(fd);
                return -EINVAL;
        }
        /* not calloc(): glibc's skips the per-thread cache that malloc() takes from, at several times the cost */
        r = malloc(sizeof(*r));
        if (!r) {
                close(fd);
                return -ENOMEM;
        }
        *r = (struct region){ 0 };
        r->name = strndup(name, len);
        if (!r->name) {
                free(r);
                close(fd);
                return -ENOMEM;
        }
        r->name_len = len;
        r->fd = fd; /* consumed */
        r->park.keeper = -1;
        r->size = size;
        r->charged = size;
        if (meta)
                r->meta = *meta;
        r->store.slot = UINT32_MAX;
        r->store.gid = REGION_STORE_GID_UNKNOWN;
        *regionp = r;
        return 0;
}

struct region *regtab_region_free(struct region *r)
{
        int saved = errno;

        if (!r)
                return NULL;
        /*
         * The last close of a region frees its pages: seconds for tens of
         * GiB a client filled. Not on the event loop (the closer threads).
         */
        if (r->fd >= 0)
                closer_close(r->fd, CLOSER_NO_UID);
        free(r->name);
        free(r);
        errno = saved;
        return NULL;
}

void regtab_region_freep(struct region **rp)
{
        *rp = regtab_region_free(*rp);
}

int regtab_new(struct regtab **tp)
{
        struct regtab *t = calloc(1, sizeof(*t));

        if (!t)
                return -ENOMEM;
        t->nbuckets = REGTAB_MIN_BUCKETS;
        t->by_name = calloc(t->nbuckets, sizeof(*t->by_name));
        t->by_id = calloc(t->nbuckets, sizeof(*t->by_id));
        if (!t->by_name || !t->by_id) {
                free(t->by_name);
                free(t->by_id);
                free(t);
                return -ENOMEM;
        }
        t->next_id = 1;
        for (int i = 0; i < REGTAB_WAIT_SETS; i++) {
                t->waiters[i].buckets = t->waiters[i].initial;
                t->waiters[i].nbuckets = REGTAB_WAITER_BUCKETS;
                t->waiters[i].grow_at = 2 * REGTAB_WAITER_BUCKETS;
        }
        if (getrandom(t->key, sizeof(t->key), GRND_NONBLOCK) != sizeof(t->key)) {
                /* no entropy yet (early boot): degrade to a time- and address-based key */
                struct timespec ts;

                clock_gettime(CLOCK_MONOTONIC, &ts);
                t->key[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)t;
                t->key[1] = regtab_hash_id(t->key[0] ^ (uint64_t)getpid());
        }
        *tp = t;
        return 0;
}

struct regtab *regtab_free(struct regtab *t)
{
        struct region *r, *next;

        if (!t)
                return NULL;
        for (r = t->head; r; r = next) {
                next = r->tab.next;
                regtab_region_free(r);
        }
        keepers_deinit(&t->keepers);
        free(t->by_name);
        free(t->by_id);
        for (int i = 0; i < REGTAB_WAIT_SETS; i++)
                if (t->waiters[i].buckets != t->waiters[i].initial)
                        free(t->waiters[i].buckets);
        free(t);
        return NULL;
}

/* Double the bucket arrays. Return: 0 or -ENOMEM (the table stays usable). */
static int regtab_grow(struct regtab *t)
{
        size_t n = t->nbuckets * 2;
        struct region **by_name = calloc(n, sizeof(*by_name));
        struct region **by_id = calloc(n, sizeof(*by_id));

        if (!by_name || !by_id) {
                free(by_name);
                free(by_id);
                return -ENOMEM;
        }
        free(t->by_name);
        free(t->by_id);
        t->by_name = by_name;
        t->by_id = by_id;
        t->nbuckets = n;
        /* rebuild both chains from the id-ordered list */
        for (struct region *r = t->head; r; r = r->tab.next) {
                size_t b = regtab_name_bucket(t, r->tab.hash);

                r->tab.hnext_name = t->by_name[b];
                t->by_name[b] = r;
                b = regtab_id_bucket(t, r->meta.id);
                r->tab.hnext_id = t->by_id[b];
                t->by_id[b] = r;
        }
        return 0;
}

/* Return: the region named @name (@len bytes, whose hash is @hash), or NULL. */
static struct region *regtab_lookup_hashed(struct regtab *t, const char *name, size_t len, uint64_t hash)
{
        for (struct region *r = t->by_name[regtab_name_bucket(t, hash)]; r; r = r->tab.hnext_name)
                if (r->name_len == len && memcmp(r->name, name, len) == 0)
                        return r;
        return NULL;
}

struct region *regtab_lookup(struct regtab *t, const char *name)
{
        size_t len;

        if (!name)
                return NULL;
        len = strnlen(name, PROTO_NAME_MAX + 1);
        if (len == 0 || len > PROTO_NAME_MAX)
                return NULL;
        return regtab_lookup_hashed(t, name, len, regtab_name_hash(t, name, len));
}

struct region *regtab_lookup_len(struct regtab *t, const char *name, size_t len)
{
        if (!name || len == 0 || len > PROTO_NAME_MAX)
                return NULL;
        return regtab_lookup_hashed(t, name, len, regtab_name_hash(t, name, len));
}

struct region *regtab_lookup_id(struct regtab *t, uint64_t id)
{
        for (struct region *r = t->by_id[regtab_id_bucket(t, id)]; r; r = r->tab.hnext_id)
                if (r->meta.id == id)
                        return r;
        return NULL;
}

int regtab_add(struct regtab *t, struct region *r)
{
        struct region *after;
        size_t b;

        r->tab.hash = regtab_name_hash(t, r->name, r->name_len);
        if (regtab_lookup_hashed(t, r->name, r->name_len, r->tab.hash))
                return -EEXIST;
        if (r->meta.id != 0 && regtab_lookup_id(t, r->meta.id))
                return -EEXIST;
        if (t->count >= t->nbuckets)
                (void)regtab_grow(t); /* on -ENOMEM the chains just get longer */
        if (r->meta.id == 0)
                r->meta.id = t->next_id++;
        else if (r->meta.id >= t->next_id)
                t->next_id = r->meta.id + 1;

        b = regtab_name_bucket(t, r->tab.hash);
        r->tab.hnext_name = t->by_name[b];
        t->by_name[b] = r;
        b = regtab_id_bucket(t, r->meta.id);
        r->tab.hnext_id = t->by_id[b];
        t->by_id[b] = r;

        /* new ids go at the tail; restored ones may need to go further back */
        for (after = t->tail; after && after->meta.id > r->meta.id; after = after->tab.prev)
                ;
        r->tab.prev = after;
        r->tab.next = after ? after->tab.next : t->head;
        if (r->tab.next)
                r->tab.next->tab.prev = r;
        else
                t->tail = r;
        if (after)
                after->tab.next = r;
        else
                t->head = r;

        t->count++;
        if (r->fd >= 0)
                t->hot_fds++;
        t->bytes += r->charged;
        return 0;
}

void regtab_remove(struct regtab *t, struct region *r)
{
        struct region **pp;

        for (pp = &t->by_name[regtab_name_bucket(t, r->tab.hash)]; *pp; pp = &(*pp)->tab.hnext_name)
                if (*pp == r) {
                        *pp = r->tab.hnext_name;
                        break;
                }
        for (pp = &t->by_id[regtab_id_bucket(t, r->meta.id)]; *pp; pp = &(*pp)->tab.hnext_id)
                if (*pp == r) {
                        *pp = r->tab.hnext_id;
                        break;
                }
        if (r->tab.prev)
                r->tab.prev->tab.next = r->tab.next;
        else
                t->head = r->tab.next;
        if (r->tab.next)
                r->tab.next->tab.prev = r->tab.prev;
        else
                t->tail = r->tab.prev;
        r->tab.prev = r->tab.next = r->tab.hnext_name = r->tab.hnext_id = NULL;
        t->count--;
        t->bytes -= r->charged;
        if (r->fd >= 0) {
                t->hot_fds--;
        } else if (r->park.keeper >= 0) {
                /* the object lives on in clients' fds and mappings only */
                (void)keepers_drop(&t->keepers, r->park.keeper, r->meta.id);
                r->park.keeper = -1;
        }
}

void regtab_set_fd_budget(struct regtab *t, unsigned hot_max, unsigned per_keeper)
{
        t->hot_max = hot_max;
        keepers_init(&t->keepers, per_keeper);
}

void regtab_set_hot_max(struct regtab *t, unsigned hot_max)
{
        t->hot_max = hot_max;
}

unsigned regtab_fd_budget(const struct regtab *t)
{
        return (unsigned)t->hot_max;
}

bool regtab_over_fd_budget(const struct regtab *t)
{
        return t->hot_max && t->hot_fds > t->hot_max;
}

/* Park @r's own fd (@r->fd >= 0) in a keeper. Return: 1; negative errno (the fd stays here). */
static int regtab_park(struct regtab *t, struct region *r)
{
        struct stat st;
        int k;

        if (fstat(r->fd, &st) < 0)
                return -errno;
        k = keepers_park_with_fd(&t->keepers, r->meta.id, r->fd, &r->park.fd);
        if (k < 0)
                return k;
        r->park.dev = (uint64_t)st.st_dev;
        r->park.ino = (uint64_t)st.st_ino;
        close(r->fd);
        r->fd = -1;
        r->park.keeper = k;
        t->hot_fds--;
        return 1;
}

int regtab_settle(struct regtab *t, struct region *r)
{
        if (r->fd < 0 || !regtab_over_fd_budget(t))
                return 0;
        return regtab_park(t, r);
}

int regtab_park_excess(struct regtab *t, unsigned max)
{
        unsigned parked = 0;

        /* the oldest first: a region made lately is the likeliest to be opened soon */
        for (struct region *r = t->head; r && parked < max && regtab_over_fd_budget(t); r = r->tab.next) {
                int k;

                if (r->fd < 0)
                        continue;
                k = regtab_park(t, r);
                if (k < 0)
                        return k;
                parked++;
        }
        return (int)parked;
}

int regtab_region_get_fd(struct regtab *t, struct region *r, struct regtab_fd *fdp)
{
        struct stat st;
        int k;

        if (r->fd >= 0) {
                *fdp = (struct regtab_fd){ .fd = r->fd, .owned = false };
                return 0;
        }
        if (r->park.keeper < 0)
                return -EIO;
        *fdp = (struct regtab_fd){ .fd = -1, .owned = true };
        /* one pidfd_getfd() and its check instead of a round trip to the keeper; the round trip if that fails */
        if (keepers_open(&t->keepers, r->park.keeper, r->park.fd, r->park.dev, r->park.ino, &fdp->fd, &st) == 0) {
                fdp->has_size = st.st_size >= 0;
                fdp->size = (uint64_t)st.st_size;
                return 0;
        }
        k = keepers_fetch(&t->keepers, r->park.keeper, r->meta.id, &fdp->fd);
        if (k < 0)
                fdp->fd = -1;
        return k;
}

int regtab_region_get_send_fd(struct regtab *t, struct region *r, struct regtab_fd *fdp)
{
        /*
         * A final size needs no fstat: then the copy alone, one pidfd_getfd().
         * In a big table the fstat of a parked object was the most expensive
         * part of its OPEN after the copy: its inode is seldom in the cache.
         */
        if (r->fd < 0 && r->park.keeper >= 0 && r->size_final) {
                *fdp = (struct regtab_fd){ .fd = -1, .owned = true };
                if (keepers_copy(&t->keepers, r->park.keeper, r->park.fd, &fdp->fd) == 0)
                        return 0;
        }
        return regtab_region_get_fd(t, r, fdp);
}

void regtab_fd_put(struct regtab_fd *h)
{
        if (!h)
                return;
        if (h->owned && h->fd >= 0)
                close(h->fd);
        *h = (struct regtab_fd){ .fd = -1 };
}

int regtab_fd_take(struct regtab_fd *h, int *fdp)
{
        int fd;

        if (h->owned) {
                *fdp = h->fd;
                h->owned = false; /* stolen: the handle only borrows it now */
                return 0;
        }
        fd = fcntl(h->fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        *fdp = fd;
        return 0;
}

size_t regtab_keeper_count(const struct regtab *t)
{
        return keepers_count(&t->keepers);
}

pid_t regtab_keeper_pid(const struct regtab *t, size_t index)
{
        return keepers_pid(&t->keepers, index);
}

uint64_t regtab_hot_fds(const struct regtab *t)
{
        return t->hot_fds;
}

int regtab_send_pending_drops(struct regtab *t)
{
        return keepers_send_pending(&t->keepers);
}

size_t regtab_reap_keepers(struct regtab *t)
{
        return keepers_reap(&t->keepers);
}

struct region *regtab_first(struct regtab *t)
{
        return t->head;
}

struct region *regtab_next_after(struct regtab *t, uint64_t cursor, uint64_t *resumep)
{
        struct region *r;
        unsigned steps = 0;

        *resumep = 0;
        if (cursor == 0)
                return t->head;
        r = regtab_lookup_id(t, cursor);
        if (r)
                return r->tab.next;
        /*
         * The cursor's region is gone. Every LIST must stay bounded (a client
         * can send stale cursors by the thousand), so look only a little: a
         * few steps back from the tail and forward from the head (where a
         * paging client's cursor usually is), then the next ids by hash
         * (ids only grow, so the first that exists is the answer). If none
         * of that finds it, say where to go on from: a later cursor.
         */
        if (!t->tail || t->tail->meta.id <= cursor)
                return NULL;
        if (t->head->meta.id > cursor)
                return t->head;
        for (r = t->tail; r->tab.prev && r->tab.prev->meta.id > cursor; r = r->tab.prev)
                if (++steps >= REGTAB_STALE_CURSOR_STEPS)
                        break;
        if (!r->tab.prev || r->tab.prev->meta.id <= cursor)
                return r;
        steps = 0;
        for (r = t->head; r->tab.next && r->meta.id <= cursor; r = r->tab.next)
                if (++steps >= REGTAB_STALE_CURSOR_STEPS)
                        break;
        if (r->meta.id > cursor)
                return r;
        for (uint64_t id = cursor + 1; id <= cursor + REGTAB_STALE_CURSOR_STEPS; id++) {
                r = regtab_lookup_id(t, id);
                if (r)
                        return r;
        }
        *resumep = cursor + REGTAB_STALE_CURSOR_STEPS;
        return NULL;
}

void regtab_set_size(struct regtab *t, struct region *r, uint64_t size, uint64_t charged)
{
        if (charged > size)
                charged = size;
        t->bytes = t->bytes - r->charged + charged;
        r->size = size;
        r->charged = charged;
}

uint64_t regtab_count(const struct regtab *t)
{
        return t->count;
}

uint64_t regtab_bytes(const struct regtab *t)
{
        return t->bytes > UINT64_MAX ? UINT64_MAX : (uint64_t)t->bytes;
}

uint64_t regtab_next_id(const struct regtab *t)
{
        return t->next_id;
}

void regtab_keep_ids_below(struct regtab *t, uint64_t next_id)
{
        if (next_id > t->next_id)
                t->next_id = next_id;
}

static struct regtab_waiter **regtab_waitset_bucket(struct regtab_waitset *ws, uint64_t hash)
{
        return &ws->buckets[hash & (ws->nbuckets - 1)];
}

/*
 * Double @ws's buckets, keeping each bucket's order: the waiters of a new
 * bucket all come from one old bucket (the same low bits of the hash), which
 * is moved last first onto the heads. On -ENOMEM nothing changes (buckets
 * just get longer), and the next try waits for as many waiters again as
 * there are buckets, not the next park (each try is a calloc of the doubled
 * array; a removal brings that mark down with the count,
 * regtab_waitset_maybe_shrink()). Return: nothing.
 */
static void regtab_waitset_grow(struct regtab_waitset *ws)
{
        size_t n = ws->nbuckets * 2;
        struct regtab_waiter **b = calloc(n, sizeof(*b)), *w, *prev;

        if (!b) {
                ws->grow_at = ws->count + ws->nbuckets;
                return;
        }
        for (size_t i = 0; i < ws->nbuckets; i++) {
                w = ws->buckets[i];
                while (w && w->next)
                        w = w->next;
                for (; w; w = prev) {
                        struct regtab_waiter **head = &b[w->hash & (n - 1)];

                        prev = w->prev;
                        w->prev = NULL;
                        w->next = *head;
                        if (w->next)
                                w->next->prev = w;
                        *head = w;
                }
        }
        if (ws->buckets != ws->initial)
                free(ws->buckets);
        ws->buckets = b;
        ws->nbuckets = n;
        ws->grow_at = 2 * n;
}

/*
 * Halve @ws's buckets once a burst is gone (half a waiter per bucket, a
 * quarter of the doubling's mark, so that a count going up and down around
 * one mark does not resize at each step): bucket i + n/2's waiters all go to
 * bucket i (the same low bits of the hash), appended after its own, so each
 * name's stay newest first. In place, then the array is given back (to the
 * inline one at REGTAB_WAITER_BUCKETS); it never fails: a realloc that does
 * keeps the larger block. Return: nothing.
 */
static void regtab_waitset_shrink(struct regtab_waitset *ws)
{
        size_t n = ws->nbuckets / 2;
        struct regtab_waiter **b;

        for (size_t i = 0; i < n; i++) {
                struct regtab_waiter *moved = ws->buckets[i + n], **tailp = &ws->buckets[i], *last = NULL;

                if (!moved)
                        continue;
                for (; *tailp; tailp = &(*tailp)->next)
                        last = *tailp;
                *tailp = moved;
                moved->prev = last;
        }
        if (n == REGTAB_WAITER_BUCKETS) {
                memcpy(ws->initial, ws->buckets, n * sizeof(*b));
                free(ws->buckets);
                ws->buckets = ws->initial;
        } else if ((b = realloc(ws->buckets, n * sizeof(*b)))) {
                ws->buckets = b;
        }
        ws->nbuckets = n;
        ws->grow_at = 2 * n;
}

static void regtab_waitset_unlink(struct regtab_waitset *ws, struct regtab_waiter *w)
{
        if (w->prev)
                w->prev->next = w->next;
        else
                *regtab_waitset_bucket(ws, w->hash) = w->next;
        if (w->next)
                w->next->prev = w->prev;
        w->prev = w->next = NULL;
        w->linked = false;
        ws->count--;
}

/*
 * After a removal: halve @ws's buckets while the count allows, and bring a
 * mark a failed doubling raised down with the count (never below 2 per
 * bucket): the next try still waits for as many waiters again as there are
 * buckets, counted from the lowest count since the failure (so a count moving
 * at the mark tries no calloc()), but a mark left where the shortage put it
 * kept every later burst's buckets long for good at the first size, where no
 * halving resets it. Return: nothing.
 */
static void regtab_waitset_maybe_shrink(struct regtab_waitset *ws)
{
        while (ws->nbuckets > REGTAB_WAITER_BUCKETS && ws->count <= ws->nbuckets / 2)
                regtab_waitset_shrink(ws);
        if (ws->grow_at > ws->count + ws->nbuckets)
                ws->grow_at = ws->count < ws->nbuckets ? 2 * ws->nbuckets : ws->count + ws->nbuckets;
}

void regtab_waiter_add(struct regtab *t, struct regtab_waiter *w)
{
        struct regtab_waitset *ws;
        struct regtab_waiter **b;

        if (w->linked)
                return;
        assert(w->set < REGTAB_WAIT_SETS);
        ws = &t->waiters[w->set];
        if (ws->count >= ws->grow_at)
                regtab_waitset_grow(ws);
        w->hash = regtab_name_hash(t, w->name, w->name_len);
        b = regtab_waitset_bucket(ws, w->hash);
        w->prev = NULL;
        w->next = *b;
        if (w->next)
                w->next->prev = w;
        *b = w;
        w->linked = true;
        ws->count++;
}

void regtab_waiter_remove(struct regtab *t, struct regtab_waiter *w)
{
        struct regtab_waitset *ws;

        if (!w->linked)
                return;
        ws = &t->waiters[w->set];
        regtab_waitset_unlink(ws, w);
        regtab_waitset_maybe_shrink(ws);
}

uint64_t regtab_waiter_count(const struct regtab *t, enum regtab_wait_set set)
{
        return set < REGTAB_WAIT_SETS ? t->waiters[set].count : 0;
}

uint64_t regtab_waiter_visits(const struct regtab *t)
{
        return t->waiter_visits;
}

size_t regtab_waiter_buckets(const struct regtab *t, enum regtab_wait_set set)
{
        return set < REGTAB_WAIT_SETS ? t->waiters[set].nbuckets : 0;
}

/* Wake @set's waiters that @r satisfies: only @r's bucket is looked at. Return: how many. */
static unsigned regtab_wake_set(struct regtab *t, enum regtab_wait_set set, struct region *r)
{
        uint64_t h = r->tab.hash, gen = region_generation(r); /* regtab_add() hashed the name with the same key */
        struct regtab_waitset *ws = &t->waiters[set];
        struct regtab_waiter *w, *next, *woken = NULL;
        unsigned n = 0;

        /* detach first, then call: callbacks may free their waiter, or remove others (no-ops on these) */
        for (w = *regtab_waitset_bucket(ws, h); w; w = next) {
                next = w->next;
                t->waiter_visits++;
                if (w->hash != h || gen <= w->after_generation || w->name_len != r->name_len ||
                    memcmp(w->name, r->name, r->name_len) != 0)
                        continue;
                regtab_waitset_unlink(ws, w); /* not regtab_waiter_remove(): no shrink under this loop */
                w->next = woken;
                woken = w;
        }
        regtab_waitset_maybe_shrink(ws);
        /* each name's are newest first in its bucket, so prepending made woken oldest first: arrival order */
        for (w = woken; w; w = next) {
                next = w->next;
                w->next = NULL;
                n++;
                w->wake(w, r);
        }
        return n;
}

unsigned regtab_wake(struct regtab *t, struct region *r)
{
        unsigned n = 0;

        for (int set = 0; set < REGTAB_WAIT_SETS; set++)
                n += regtab_wake_set(t, (enum regtab_wait_set)set, r);
        return n;
}
