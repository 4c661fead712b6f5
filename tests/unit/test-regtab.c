/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-regtab: the daemon's region table: hashing by name and id, id order, LIST cursors, waiters. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "regtab.h"
#include "testutil.h"

#define MANY 100000u

#ifndef __SANITIZE_ADDRESS__ /* ASan owns malloc */
/*
 * An allocator short of memory, at will: while calloc_fail is set, calloc()
 * fails with ENOMEM (counted); unset, it is the C library's. Only the waiter
 * buckets' doubling calls calloc() while a test sets it.
 */
#define TEST_CALLOC_FAULT 1
extern void *__libc_calloc(size_t n, size_t size);
static bool calloc_fail;
static unsigned calloc_failed;

void *calloc(size_t n, size_t size)
{
        if (calloc_fail) {
                calloc_failed++;
                errno = ENOMEM;
                return NULL;
        }
        return __libc_calloc(n, size);
}
#endif

/* A region without an fd: the table never touches fds, and 100,000 fds exceed the test's limit. */
static struct region *fake_region(const char *name, uint64_t size)
{
        struct region *r = calloc(1, sizeof(*r));

        ck_assert_ptr_nonnull(r);
        r->name = strdup(name);
        ck_assert_ptr_nonnull(r->name);
        r->name_len = strlen(name);
        r->fd = -1;
        r->size = size;
        r->charged = size;
        r->store.slot = UINT32_MAX;
        return r;
}

static void fake_name(char *buf, size_t size, unsigned i)
{
        snprintf(buf, size, "region-%u", i);
}

START_TEST(test_region_new_consumes_fd)
{
        struct region_meta meta = { .uid = 1, .mode = 0600 };
        struct region *r = NULL;
        char longname[PROTO_NAME_MAX + 2];
        int fd;

        fd = memfd_create("t", MFD_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(regtab_region_new("a", fd, 7, &meta, &r), 0);
        ck_assert_str_eq(r->name, "a");
        ck_assert_uint_eq(r->name_len, 1);
        ck_assert_int_eq(r->fd, fd);
        ck_assert_uint_eq(r->size, 7);
        ck_assert_uint_eq(r->meta.mode, 0600);
        ck_assert_uint_eq(r->store.slot, UINT32_MAX);
        ck_assert_ptr_null(regtab_region_free(r));

        /* errors still consume the fd: the fixture's fd count proves it */
        fd = memfd_create("t", MFD_CLOEXEC);
        ck_assert_int_eq(regtab_region_new("", fd, 1, NULL, &r), -EINVAL);
        memset(longname, 'x', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        fd = memfd_create("t", MFD_CLOEXEC);
        ck_assert_int_eq(regtab_region_new(longname, fd, 1, NULL, &r), -EINVAL);
        fd = memfd_create("t", MFD_CLOEXEC);
        ck_assert_int_eq(regtab_region_new(NULL, fd, 1, NULL, &r), -EINVAL);
        ck_assert_int_eq(regtab_region_new("b", -1, 1, NULL, &r), -EINVAL);
        ck_assert_ptr_null(regtab_region_free(NULL));
}
END_TEST

START_TEST(test_add_lookup_remove_many)
{
        struct regtab *t = NULL;
        char name[64];
        uint64_t bytes = 0;

        ck_assert_int_eq(regtab_new(&t), 0);
        for (unsigned i = 0; i < MANY; i++) {
                fake_name(name, sizeof(name), i);
                ck_assert_int_eq(regtab_add(t, fake_region(name, i)), 0);
                bytes += i;
        }
        ck_assert_uint_eq(regtab_count(t), MANY);
        ck_assert_uint_eq(regtab_bytes(t), bytes);
        ck_assert_uint_eq(regtab_next_id(t), MANY + 1);

        for (unsigned i = 0; i < MANY; i++) {
                struct region *r;

                fake_name(name, sizeof(name), i);
                r = regtab_lookup(t, name);
                ck_assert_ptr_nonnull(r);
                ck_assert_str_eq(r->name, name);
                ck_assert_uint_eq(r->meta.id, i + 1); /* ids from 1, in add order */
                ck_assert_ptr_eq(regtab_lookup_id(t, i + 1), r);
                ck_assert_ptr_eq(regtab_lookup_len(t, name, strlen(name)), r);
                ck_assert_ptr_ne(regtab_lookup_len(t, name, strlen(name) - 1), r); /* a prefix is another name */
        }
        ck_assert_ptr_null(regtab_lookup(t, "region-x"));
        ck_assert_ptr_null(regtab_lookup_len(t, "", 0));
        ck_assert_ptr_null(regtab_lookup(t, ""));
        ck_assert_ptr_null(regtab_lookup_id(t, 0));
        ck_assert_ptr_null(regtab_lookup_id(t, MANY + 1));

        /* duplicate names are refused and not inserted */
        {
                struct region *dup = fake_region("region-5", 1);

                ck_assert_int_eq(regtab_add(t, dup), -EEXIST);
                ck_assert_uint_eq(dup->meta.id, 0);
                regtab_region_free(dup);
        }

        /* remove the even ones */
        for (unsigned i = 0; i < MANY; i += 2) {
                struct region *r;

                fake_name(name, sizeof(name), i);
                r = regtab_lookup(t, name);
                ck_assert_ptr_nonnull(r);
                regtab_remove(t, r);
                bytes -= r->size;
                regtab_region_free(r);
        }
        ck_assert_uint_eq(regtab_count(t), MANY / 2);
        ck_assert_uint_eq(regtab_bytes(t), bytes);
        for (unsigned i = 0; i < MANY; i++) {
                fake_name(name, sizeof(name), i);
                if (i % 2)
                        ck_assert_ptr_nonnull(regtab_lookup(t, name));
                else
                        ck_assert_ptr_null(regtab_lookup(t, name));
        }

        /* a name can come back; it gets a new id, never an old one (S3) */
        {
                struct region *again = fake_region("region-0", 3);

                ck_assert_int_eq(regtab_add(t, again), 0);
                ck_assert_uint_eq(again->meta.id, MANY + 1);
        }
        ck_assert_ptr_null(regtab_free(t));
}
END_TEST

START_TEST(test_id_order_and_kept_ids)
{
        struct regtab *t = NULL;
        const uint64_t kept[] = { 50, 10, 30 };
        uint64_t prev = 0, n = 0;
        struct region *r;

        ck_assert_int_eq(regtab_new(&t), 0);
        /* restored regions keep their ids, in any order; the counter moves past the largest */
        for (size_t i = 0; i < 3; i++) {
                char name[16];

                snprintf(name, sizeof(name), "kept-%zu", i);
                r = fake_region(name, 1);
                r->meta.id = kept[i];
                ck_assert_int_eq(regtab_add(t, r), 0);
                ck_assert_uint_eq(r->meta.id, kept[i]);
        }
        ck_assert_uint_eq(regtab_next_id(t), 51);
        r = fake_region("fresh", 1);
        ck_assert_int_eq(regtab_add(t, r), 0);
        ck_assert_uint_eq(r->meta.id, 51);

        /* an id already in use is refused */
        r = fake_region("clash", 1);
        r->meta.id = 30;
        ck_assert_int_eq(regtab_add(t, r), -EEXIST);
        regtab_region_free(r);

        for (r = regtab_first(t); r; r = r->tab.next) {
                ck_assert_uint_gt(r->meta.id, prev);
                prev = r->meta.id;
                n++;
        }
        ck_assert_uint_eq(n, 4);
        ck_assert_uint_eq(prev, 51);
        regtab_free(t);
}
END_TEST

/* regtab_next_after() for cursors it answers within its bounds. */
static struct region *next_after(struct regtab *t, uint64_t cursor)
{
        uint64_t resume = 1;
        struct region *r = regtab_next_after(t, cursor, &resume);

        ck_assert_uint_eq(resume, 0);
        return r;
}

START_TEST(test_cursor_resume)
{
        struct regtab *t = NULL;
        struct region *r;
        char name[32];

        ck_assert_int_eq(regtab_new(&t), 0);
        for (unsigned i = 0; i < 10; i++) {
                fake_name(name, sizeof(name), i);
                ck_assert_int_eq(regtab_add(t, fake_region(name, 1)), 0); /* ids 1..10 */
        }
        ck_assert_uint_eq(next_after(t, 0)->meta.id, 1);
        ck_assert_uint_eq(next_after(t, 4)->meta.id, 5);
        ck_assert_ptr_null(next_after(t, 10));
        ck_assert_ptr_null(next_after(t, 1000));

        /* the cursor's own region is deleted (and its neighbour): resume at the first greater id */
        r = regtab_lookup_id(t, 4);
        regtab_remove(t, r);
        regtab_region_free(r);
        r = regtab_lookup_id(t, 5);
        regtab_remove(t, r);
        regtab_region_free(r);
        ck_assert_uint_eq(next_after(t, 4)->meta.id, 6);
        ck_assert_uint_eq(next_after(t, 3)->meta.id, 6);

        /* the last region deleted: nothing follows */
        r = regtab_lookup_id(t, 10);
        regtab_remove(t, r);
        regtab_region_free(r);
        ck_assert_ptr_null(next_after(t, 10));
        ck_assert_uint_eq(next_after(t, 8)->meta.id, 9);

        /* the first region deleted with cursor 0 */
        r = regtab_lookup_id(t, 1);
        regtab_remove(t, r);
        regtab_region_free(r);
        ck_assert_uint_eq(next_after(t, 0)->meta.id, 2);
        ck_assert_uint_eq(next_after(t, 1)->meta.id, 2);
        regtab_free(t);
}
END_TEST


/*
 * A stale cursor far from both ends of a big table, in a wide gap of ids:
 * each call looks at a bounded number of regions and ids and says where to
 * go on; following the resume cursors reaches the next region (issue 10,
 * item 6: the walk used to start at the tail and go all the way back).
 */
START_TEST(test_stale_cursor_bounded)
{
        const unsigned side = 3 * REGTAB_STALE_CURSOR_STEPS;
        struct regtab *t = NULL;
        struct region *r;
        uint64_t cursor = 500000, resume = 0;
        unsigned calls = 0;
        char name[32];

        ck_assert_int_eq(regtab_new(&t), 0);
        for (unsigned i = 0; i < 2 * side; i++) {
                fake_name(name, sizeof(name), i);
                r = fake_region(name, 1);
                r->meta.id = i < side ? i + 1 : 1000000 + i; /* ids 1..side, then from 1,000,000 on */
                ck_assert_int_eq(regtab_add(t, r), 0);
        }
        /* near the head: found by walking forward from the head */
        r = regtab_lookup_id(t, 10);
        regtab_remove(t, r);
        regtab_region_free(r);
        ck_assert_uint_eq(next_after(t, 10)->meta.id, 11);
        /* in the middle of the gap: empty answers with later cursors, each bounded */
        for (;;) {
                r = regtab_next_after(t, cursor, &resume);
                calls++;
                if (r)
                        break;
                ck_assert_uint_eq(resume, cursor + REGTAB_STALE_CURSOR_STEPS);
                cursor = resume;
        }
        ck_assert_uint_eq(r->meta.id, 1000000 + side);
        ck_assert_uint_le(calls, (1000000 + side - 500000) / REGTAB_STALE_CURSOR_STEPS + 2);
        /* just before the second run, in the middle of the table: found by id lookups */
        ck_assert_uint_eq(next_after(t, 1000000 + side - 5)->meta.id, 1000000 + side);
        regtab_free(t);
}
END_TEST

START_TEST(test_set_size)
{
        struct regtab *t = NULL;
        struct region *a = fake_region("a", 100), *b = fake_region("b", 50);

        ck_assert_int_eq(regtab_new(&t), 0);
        ck_assert_int_eq(regtab_add(t, a), 0);
        ck_assert_int_eq(regtab_add(t, b), 0);
        ck_assert_uint_eq(regtab_bytes(t), 150);
        regtab_set_size(t, a, 10, 10);
        ck_assert_uint_eq(a->size, 10);
        ck_assert_uint_eq(regtab_bytes(t), 60);
        regtab_set_size(t, b, 1000, 1000);
        ck_assert_uint_eq(regtab_bytes(t), 1010);
        /* growth charged only in part: the total counts what is charged */
        regtab_set_size(t, b, 5000, 2000);
        ck_assert_uint_eq(b->size, 5000);
        ck_assert_uint_eq(b->charged, 2000);
        ck_assert_uint_eq(regtab_bytes(t), 2010);
        /* charged never above the size */
        regtab_set_size(t, b, 1000, 2000);
        ck_assert_uint_eq(b->charged, 1000);
        /* sizes near 2^63 each: the total saturates, it never wraps, and comes back exactly (issue 10) */
        regtab_set_size(t, a, (uint64_t)INT64_MAX, (uint64_t)INT64_MAX);
        regtab_set_size(t, b, (uint64_t)INT64_MAX, (uint64_t)INT64_MAX);
        ck_assert_uint_eq(regtab_bytes(t), UINT64_MAX - 1);
        {
                struct region *c = fake_region("c", (uint64_t)INT64_MAX);

                ck_assert_int_eq(regtab_add(t, c), 0);
                ck_assert_uint_eq(regtab_bytes(t), UINT64_MAX);
                regtab_remove(t, c);
                regtab_region_free(c);
        }
        regtab_set_size(t, a, 10, 10);
        regtab_set_size(t, b, 1000, 1000);
        ck_assert_uint_eq(regtab_bytes(t), 1010);
        regtab_remove(t, b);
        ck_assert_uint_eq(regtab_bytes(t), 10);
        regtab_region_free(b);
        regtab_free(t);
}
END_TEST

struct test_waiter {
        struct regtab_waiter w;
        struct region *woken_by;
        int order;
};

static int test_wake_seq;

static void test_wake(struct regtab_waiter *w, struct region *r)
{
        struct test_waiter *tw = (struct test_waiter *)w;

        ck_assert(!w->linked);
        ck_assert_ptr_null(tw->woken_by);
        tw->woken_by = r;
        tw->order = ++test_wake_seq;
}

static void test_waiter_init(struct test_waiter *tw, const char *name)
{
        memset(tw, 0, sizeof(*tw));
        tw->w.name = name;
        tw->w.name_len = strlen(name);
        tw->w.wake = test_wake;
}

START_TEST(test_waiters)
{
        struct test_waiter a1, a2, b, gone;
        struct regtab *t = NULL;
        struct region *ra, *rb;

        test_wake_seq = 0;
        ck_assert_int_eq(regtab_new(&t), 0);
        test_waiter_init(&a1, "a");
        test_waiter_init(&a2, "a");
        test_waiter_init(&b, "b");
        test_waiter_init(&gone, "a");
        regtab_waiter_add(t, &a1.w);
        regtab_waiter_add(t, &gone.w);
        regtab_waiter_add(t, &a2.w);
        regtab_waiter_add(t, &b.w);
        regtab_waiter_remove(t, &gone.w); /* a connection that went away */
        regtab_waiter_remove(t, &gone.w); /* twice is harmless */
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_NAME), 3);

        /* adding alone wakes nobody: the caller decides when the region is there for good */
        ra = fake_region("a", 1);
        ck_assert_int_eq(regtab_add(t, ra), 0);
        ck_assert_ptr_null(a1.woken_by);
        ck_assert_uint_eq(regtab_wake(t, ra), 2);
        ck_assert_ptr_eq(a1.woken_by, ra);
        ck_assert_ptr_eq(a2.woken_by, ra);
        ck_assert_int_eq(a1.order, 1); /* in the order they came */
        ck_assert_int_eq(a2.order, 2);
        ck_assert_ptr_null(gone.woken_by);
        ck_assert_ptr_null(b.woken_by);
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_NAME), 1);

        /* woken once only */
        ck_assert_uint_eq(regtab_wake(t, ra), 0);

        /* a name with no waiters, then the other one */
        rb = fake_region("bb", 1);
        ck_assert_int_eq(regtab_add(t, rb), 0);
        ck_assert_uint_eq(regtab_wake(t, rb), 0);
        ck_assert_ptr_null(b.woken_by);
        regtab_waiter_remove(t, &b.w);
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_NAME), 0);
        regtab_free(t);
}
END_TEST

START_TEST(test_many_waiters)
{
        enum { N = 5000 };
        struct test_waiter *w = calloc(N, sizeof(*w));
        char (*names)[32] = calloc(N, sizeof(*names));
        struct regtab *t = NULL;
        unsigned woken = 0;

        ck_assert_ptr_nonnull(w);
        ck_assert_ptr_nonnull(names);
        test_wake_seq = 0;
        ck_assert_int_eq(regtab_new(&t), 0);
        for (unsigned i = 0; i < N; i++) {
                fake_name(names[i], sizeof(names[i]), i % (N / 2));
                test_waiter_init(&w[i], names[i]);
                regtab_waiter_add(t, &w[i].w);
        }
        for (unsigned i = 0; i < N / 2; i += 2) {
                struct region *r = fake_region(names[i], 1);

                ck_assert_int_eq(regtab_add(t, r), 0);
                woken += regtab_wake(t, r);
        }
        ck_assert_uint_eq(woken, N / 2); /* two waiters per even name */
        for (unsigned i = 0; i < N; i++) {
                bool even = (i % (N / 2)) % 2 == 0;

                ck_assert_int_eq(w[i].woken_by != NULL, even);
                if (w[i].woken_by)
                        ck_assert_str_eq(w[i].woken_by->name, names[i]);
                regtab_waiter_remove(t, &w[i].w);
        }
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_NAME), 0);
        regtab_free(t);
        free(w);
        free(names);
}
END_TEST

static void test_vwaiter_init(struct test_waiter *tw, const char *name, uint64_t after)
{
        test_waiter_init(tw, name);
        tw->w.set = REGTAB_WAIT_VERSION;
        tw->w.after_generation = after;
}

/*
 * Version waiters (OPENV): woken only by a generation above theirs, after the
 * name set's, in the order they came; the others stay registered for a later
 * version. Many names share buckets here (2,500 names over the 1,024
 * buckets), so satisfied and unsatisfied waiters of different names mix in them.
 */
START_TEST(test_version_waiters)
{
        enum { NAMES = 2500, PER = 3 };
        struct test_waiter *w = calloc(NAMES * PER, sizeof(*w));
        char (*names)[32] = calloc(NAMES, sizeof(*names));
        struct test_waiter open_a;
        struct regtab *t = NULL;
        struct region *v1, *v2, *v3;
        uint64_t g1, g2;

        ck_assert_ptr_nonnull(w);
        ck_assert_ptr_nonnull(names);
        test_wake_seq = 0;
        ck_assert_int_eq(regtab_new(&t), 0);
        for (unsigned i = 0; i < NAMES; i++)
                fake_name(names[i], sizeof(names[i]), i);
        v1 = fake_region(names[0], 1);
        ck_assert_int_eq(regtab_add(t, v1), 0);
        g1 = region_generation(v1);
        g2 = regtab_next_id(t); /* the next version's */
        /* per name, in this order: after g1 (the next version does), after g2 (the one after), after g1 again */
        for (unsigned i = 0; i < NAMES; i++) {
                test_vwaiter_init(&w[i * PER + 0], names[i], g1);
                test_vwaiter_init(&w[i * PER + 1], names[i], g2);
                test_vwaiter_init(&w[i * PER + 2], names[i], g1);
                for (unsigned k = 0; k < PER; k++)
                        regtab_waiter_add(t, &w[i * PER + k].w);
        }
        /* an OPEN for the name of the next version, registered last: the name set still goes first */
        test_waiter_init(&open_a, names[1]);
        regtab_waiter_add(t, &open_a.w);
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_VERSION), NAMES * PER);
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_NAME), 1);

        /* the version already there satisfies nobody (all wait past g1) */
        ck_assert_uint_eq(regtab_wake(t, v1), 0);

        /* the next version of names[0]: its first and third waiters, in that order */
        regtab_remove(t, v1);
        regtab_region_free(v1);
        v2 = fake_region(names[0], 1);
        ck_assert_int_eq(regtab_add(t, v2), 0);
        ck_assert_uint_eq(region_generation(v2), g2);
        ck_assert_uint_eq(regtab_wake(t, v2), 2);
        ck_assert_ptr_eq(w[0].woken_by, v2);
        ck_assert_ptr_null(w[1].woken_by);
        ck_assert_ptr_eq(w[2].woken_by, v2);
        ck_assert_int_eq(w[0].order, 1);
        ck_assert_int_eq(w[2].order, 2);
        ck_assert(w[1].w.linked);
        for (unsigned i = PER; i < NAMES * PER; i++)
                ck_assert_ptr_null(w[i].woken_by);
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_VERSION), NAMES * PER - 2);

        /* names[1] appears (a generation past g2): its OPEN first, then all three of its OPENVs in order */
        v3 = fake_region(names[1], 1);
        ck_assert_int_eq(regtab_add(t, v3), 0);
        ck_assert_uint_gt(region_generation(v3), g2);
        ck_assert_uint_eq(regtab_wake(t, v3), 4);
        ck_assert_int_eq(open_a.order, 3);
        for (unsigned k = 0; k < PER; k++) {
                ck_assert_ptr_eq(w[PER + k].woken_by, v3);
                ck_assert_int_eq(w[PER + k].order, 4 + (int)k);
        }
        /* woken once only; names[0]'s second waiter is still there for a version after g2 */
        ck_assert_uint_eq(regtab_wake(t, v3), 0);
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_VERSION), NAMES * PER - 5);
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_NAME), 0);
        for (unsigned i = 2 * PER; i < NAMES * PER; i++)
                ck_assert_ptr_null(w[i].woken_by);
        for (unsigned i = 0; i < NAMES * PER; i++)
                regtab_waiter_remove(t, &w[i].w);
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_VERSION), 0);
        regtab_free(t);
        free(w);
        free(names);
}
END_TEST

/*
 * A wake looks at the announced name's bucket only: with 1,000 OPENVs and
 * 1,000 OPENs parked on other names, waking a name with 3 waiters looks at
 * those 3 and the few others hashed to their bucket (about 2 on average over
 * 1,024 buckets; 24 allows for the random key's worst luck, at odds below
 * 1e-12), never at the 2,000. A wake that scanned every waiter fails here.
 */
START_TEST(test_wake_visits_its_bucket_only)
{
        enum { OTHERS = 1000, BOUND = 3 + 24 };
        struct test_waiter *w = calloc(2 * OTHERS, sizeof(*w));
        char (*names)[32] = calloc(OTHERS, sizeof(*names));
        struct test_waiter mine[3];
        struct regtab *t = NULL;
        struct region *r;
        uint64_t before, total = 0;

        ck_assert_ptr_nonnull(w);
        ck_assert_ptr_nonnull(names);
        test_wake_seq = 0;
        ck_assert_int_eq(regtab_new(&t), 0);
        for (unsigned i = 0; i < OTHERS; i++) {
                snprintf(names[i], sizeof(names[i]), "other/%u", i);
                test_vwaiter_init(&w[i], names[i], 0);
                regtab_waiter_add(t, &w[i].w);
                test_waiter_init(&w[OTHERS + i], names[i]);
                regtab_waiter_add(t, &w[OTHERS + i].w);
        }
        test_vwaiter_init(&mine[0], "A", 0);
        test_vwaiter_init(&mine[1], "A", 0);
        test_waiter_init(&mine[2], "A");
        for (unsigned k = 0; k < 3; k++)
                regtab_waiter_add(t, &mine[k].w);
        ck_assert_uint_eq(regtab_waiter_visits(t), 0);

        r = fake_region("A", 1);
        ck_assert_int_eq(regtab_add(t, r), 0);
        ck_assert_uint_eq(regtab_wake(t, r), 3);
        ck_assert_uint_ge(regtab_waiter_visits(t), 3);
        ck_assert_msg(regtab_waiter_visits(t) <= BOUND, "one wake looked at %llu waiters",
                      (unsigned long long)regtab_waiter_visits(t));
        for (unsigned i = 0; i < 2 * OTHERS; i++)
                ck_assert_ptr_null(w[i].woken_by);

        /*
         * Waking every other name once looks at each waiter once per wake of
         * its bucket: the sum of the squares of the bucket sizes, about 2 per
         * waiter, not 2,000 per wake.
         */
        before = regtab_waiter_visits(t);
        for (unsigned i = 0; i < OTHERS; i++) {
                struct region *o = fake_region(names[i], 1);

                ck_assert_int_eq(regtab_add(t, o), 0);
                ck_assert_uint_eq(regtab_wake(t, o), 2);
        }
        total = regtab_waiter_visits(t) - before;
        ck_assert_msg(total <= 8u * 2 * OTHERS, "%u wakes looked at %llu waiters", OTHERS,
                      (unsigned long long)total);
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_VERSION), 0);
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_NAME), 0);
        regtab_free(t);
        free(w);
        free(names);
}
END_TEST

/*
 * The buckets grow with the waiters: with 50,000 OPENVs parked on other
 * names (49 per bucket if they stayed 1,024; 2 at most per bucket on average
 * once doubled), a wake of a name with 2 waiters still looks at only a few.
 * Waiters registered before and after the doublings stay in arrival order.
 */
START_TEST(test_waiter_buckets_grow)
{
        enum { OTHERS = 50000, BOUND = 2 + 24 };
        struct test_waiter *w = calloc(OTHERS, sizeof(*w));
        char (*names)[32] = calloc(OTHERS / 2, sizeof(*names));
        struct test_waiter first, last;
        struct regtab *t = NULL;
        struct region *r;
        uint64_t before;

        ck_assert_ptr_nonnull(w);
        ck_assert_ptr_nonnull(names);
        test_wake_seq = 0;
        ck_assert_int_eq(regtab_new(&t), 0);
        test_vwaiter_init(&first, "A", 0);
        regtab_waiter_add(t, &first.w);
        for (unsigned i = 0; i < OTHERS; i++) {
                if (i < OTHERS / 2)
                        snprintf(names[i], sizeof(names[i]), "grow/%u", i);
                test_vwaiter_init(&w[i], names[i % (OTHERS / 2)], 0);
                regtab_waiter_add(t, &w[i].w);
        }
        test_vwaiter_init(&last, "A", 0);
        regtab_waiter_add(t, &last.w);
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_VERSION), OTHERS + 2);

        r = fake_region("A", 1);
        ck_assert_int_eq(regtab_add(t, r), 0);
        ck_assert_uint_eq(regtab_wake(t, r), 2);
        ck_assert_msg(regtab_waiter_visits(t) <= BOUND, "one wake looked at %llu of %u waiters",
                      (unsigned long long)regtab_waiter_visits(t), OTHERS + 2);
        ck_assert_int_eq(first.order, 1);
        ck_assert_int_eq(last.order, 2);

        /* a name's two waiters, registered 25,000 apart across doublings, wake in that order */
        for (unsigned i = 0; i < OTHERS / 2; i += 997) {
                int seq = test_wake_seq;

                r = fake_region(names[i], 1);
                ck_assert_int_eq(regtab_add(t, r), 0);
                before = regtab_waiter_visits(t);
                ck_assert_uint_eq(regtab_wake(t, r), 2);
                ck_assert_uint_le(regtab_waiter_visits(t) - before, BOUND);
                ck_assert_int_eq(w[i].order, seq + 1);
                ck_assert_int_eq(w[i + OTHERS / 2].order, seq + 2);
        }
        for (unsigned i = 0; i < OTHERS; i++) {
                ck_assert_int_eq(w[i].woken_by != NULL, (i % (OTHERS / 2)) % 997 == 0);
                regtab_waiter_remove(t, &w[i].w);
        }
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_VERSION), 0);
        regtab_free(t);
        free(w);
        free(names);
}
END_TEST

/*
 * The buckets shrink once a burst is gone. Before, they stayed at the peak's
 * size (16,384 here, about 4 bytes per waiter of the peak) for the daemon's
 * life. They halve at half a waiter per bucket, a quarter of the doubling's
 * mark, so a count going up and down around either mark resizes nothing; a
 * wake that takes a whole burst at once shrinks them after its scan. Every
 * waiter is still found where a wake looks, in arrival order.
 */
START_TEST(test_waiter_buckets_shrink)
{
        enum { N = 20000, NAMES = 5000, BURST = 8000, BOUND = 1 + 24 };
        struct test_waiter *w = calloc(N, sizeof(*w)), *b = calloc(BURST, sizeof(*b));
        char (*names)[32] = calloc(NAMES, sizeof(*names));
        size_t base, peak;
        struct regtab *t = NULL;
        struct region *r;
        uint64_t count, before;

        ck_assert_ptr_nonnull(w);
        ck_assert_ptr_nonnull(b);
        ck_assert_ptr_nonnull(names);
        test_wake_seq = 0;
        ck_assert_int_eq(regtab_new(&t), 0);
        base = regtab_waiter_buckets(t, REGTAB_WAIT_NAME);
        for (unsigned i = 0; i < NAMES; i++)
                fake_name(names[i], sizeof(names[i]), i);
        for (unsigned i = 0; i < N; i++) {
                test_waiter_init(&w[i], names[i % NAMES]);
                regtab_waiter_add(t, &w[i].w);
        }
        peak = regtab_waiter_buckets(t, REGTAB_WAIT_NAME);
        ck_assert_uint_ge(peak, N / 2); /* 2 per bucket at most: 16,384 */

        /* down to just over half a waiter per bucket: still the peak's */
        count = N;
        while (count > peak / 2 + 1)
                regtab_waiter_remove(t, &w[--count].w);
        ck_assert_uint_eq(regtab_waiter_buckets(t, REGTAB_WAIT_NAME), peak);
        /* one more: halved */
        regtab_waiter_remove(t, &w[--count].w);
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_NAME), peak / 2);
        ck_assert_uint_eq(regtab_waiter_buckets(t, REGTAB_WAIT_NAME), peak / 2);
        /* up and down at that mark: nothing resized */
        for (int k = 0; k < 100; k++) {
                regtab_waiter_add(t, &w[count].w);
                ck_assert_uint_eq(regtab_waiter_buckets(t, REGTAB_WAIT_NAME), peak / 2);
                regtab_waiter_remove(t, &w[count].w);
                ck_assert_uint_eq(regtab_waiter_buckets(t, REGTAB_WAIT_NAME), peak / 2);
        }
        /* down to 600 (names 0..599, one waiter each): back to the first size, every one still found */
        while (count > 600)
                regtab_waiter_remove(t, &w[--count].w);
        ck_assert_uint_eq(regtab_waiter_buckets(t, REGTAB_WAIT_NAME), base);
        for (unsigned i = 0; i < 600; i++) {
                r = fake_region(names[i], 1);
                ck_assert_int_eq(regtab_add(t, r), 0);
                before = regtab_waiter_visits(t);
                ck_assert_uint_eq(regtab_wake(t, r), 1);
                ck_assert_uint_le(regtab_waiter_visits(t) - before, BOUND);
                ck_assert_ptr_eq(w[i].woken_by, r);
        }
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_NAME), 0);
        ck_assert_uint_eq(regtab_waiter_buckets(t, REGTAB_WAIT_NAME), base);

        /* a burst on one name, among others, taken by one wake: in arrival order, then shrunk */
        test_wake_seq = 0;
        for (unsigned i = 0; i < BURST; i++) {
                test_waiter_init(&b[i], "burst");
                regtab_waiter_add(t, &b[i].w);
                if (i % 1000 == 0) {
                        test_waiter_init(&w[NAMES + i / 1000], names[1000 + i / 1000]);
                        regtab_waiter_add(t, &w[NAMES + i / 1000].w);
                }
        }
        ck_assert_uint_gt(regtab_waiter_buckets(t, REGTAB_WAIT_NAME), base);
        r = fake_region("burst", 1);
        ck_assert_int_eq(regtab_add(t, r), 0);
        ck_assert_uint_eq(regtab_wake(t, r), BURST);
        for (unsigned i = 0; i < BURST; i++)
                ck_assert_int_eq(b[i].order, (int)i + 1);
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_NAME), BURST / 1000);
        ck_assert_uint_eq(regtab_waiter_buckets(t, REGTAB_WAIT_NAME), base);
        for (unsigned i = 0; i < BURST / 1000; i++) {
                r = fake_region(names[1000 + i], 1);
                ck_assert_int_eq(regtab_add(t, r), 0);
                ck_assert_uint_eq(regtab_wake(t, r), 1);
                ck_assert_ptr_eq(w[NAMES + i].woken_by, r);
        }
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_NAME), 0);
        regtab_free(t);
        free(w);
        free(b);
        free(names);
}
END_TEST

/*
 * A doubling that fails (ENOMEM) is not tried again at every park: the next
 * try waits for as many waiters again as there are buckets. Before, each of
 * the 1,023 parks after the failed one made its own calloc() of the doubled
 * array, and each failed. The table stays usable meanwhile (longer buckets),
 * and the doubling is done once memory is back.
 */
START_TEST(test_waiter_buckets_grow_enomem)
{
#ifdef TEST_CALLOC_FAULT
        struct test_waiter *w;
        char (*names)[32];
        struct regtab *t = NULL;
        struct region *r;
        size_t base, i = 0;

        ck_assert_int_eq(regtab_new(&t), 0);
        base = regtab_waiter_buckets(t, REGTAB_WAIT_NAME);
        w = calloc(4 * base + 1, sizeof(*w));
        names = calloc(4 * base + 1, sizeof(*names));
        ck_assert_ptr_nonnull(w);
        ck_assert_ptr_nonnull(names);
        for (size_t k = 0; k < 4 * base + 1; k++) {
                fake_name(names[k], sizeof(names[k]), (unsigned)k);
                test_waiter_init(&w[k], names[k]);
        }
        for (; i < 2 * base; i++)
                regtab_waiter_add(t, &w[i].w);
        ck_assert_uint_eq(regtab_waiter_buckets(t, REGTAB_WAIT_NAME), base);

        calloc_fail = true;
        calloc_failed = 0;
        regtab_waiter_add(t, &w[i++].w); /* at 2 per bucket: the doubling is tried, and fails */
        ck_assert_uint_eq(calloc_failed, 1);
        for (; i < 3 * base; i++)
                regtab_waiter_add(t, &w[i].w);
        ck_assert_uint_eq(calloc_failed, 1); /* not again at each of these */
        regtab_waiter_add(t, &w[i++].w); /* as many again as there are buckets: tried again */
        ck_assert_uint_eq(calloc_failed, 2);
        calloc_fail = false;
        ck_assert_uint_eq(regtab_waiter_buckets(t, REGTAB_WAIT_NAME), base);
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_NAME), 3 * base + 1);

        /* memory is back: the next try (one more bucket's worth later) doubles */
        for (; i < 4 * base + 1; i++)
                regtab_waiter_add(t, &w[i].w);
        ck_assert_uint_eq(regtab_waiter_buckets(t, REGTAB_WAIT_NAME), 2 * base);
        /* every waiter, added before, during and after the failures, is found by its name's wake */
        for (size_t k = 0; k < 4 * base + 1; k += 7) {
                r = fake_region(names[k], 1);
                ck_assert_int_eq(regtab_add(t, r), 0);
                ck_assert_uint_eq(regtab_wake(t, r), 1);
                ck_assert_ptr_eq(w[k].woken_by, r);
        }
        for (size_t k = 0; k < 4 * base + 1; k++)
                regtab_waiter_remove(t, &w[k].w);
        regtab_free(t);
        free(w);
        free(names);
#else
        fprintf(stderr, "test_waiter_buckets_grow_enomem: ASan owns calloc, skipped\n");
#endif
}
END_TEST

/*
 * The mark a failed doubling raised comes down with the count: once the
 * shortage is over and its waiters are gone, a new burst doubles at 2 per
 * bucket again. Before (review20), the raised mark stayed for good at the
 * first size (where no halving resets it): after failures while a burst grew
 * to 4 per bucket, every later burst ran at up to 5 per bucket before a
 * doubling was tried, and a longer shortage left it higher still (each
 * failure raised it by the buckets' count). The back-off itself stays: a
 * count moving up and down at the failure's mark tries no calloc() again.
 */
START_TEST(test_waiter_buckets_grow_mark_comes_down)
{
#ifdef TEST_CALLOC_FAULT
        struct test_waiter *w;
        char (*names)[32];
        struct regtab *t = NULL;
        size_t base, i = 0;

        ck_assert_int_eq(regtab_new(&t), 0);
        base = regtab_waiter_buckets(t, REGTAB_WAIT_NAME);
        w = calloc(4 * base + 1, sizeof(*w));
        names = calloc(4 * base + 1, sizeof(*names));
        ck_assert_ptr_nonnull(w);
        ck_assert_ptr_nonnull(names);
        for (size_t k = 0; k < 4 * base + 1; k++) {
                fake_name(names[k], sizeof(names[k]), (unsigned)k);
                test_waiter_init(&w[k], names[k]);
        }
        for (; i < 2 * base; i++)
                regtab_waiter_add(t, &w[i].w);

        /* a shortage while the burst grows to 4 per bucket: tried at 2, 3 and 4 per bucket, each fails */
        calloc_fail = true;
        calloc_failed = 0;
        for (; i < 4 * base + 1; i++)
                regtab_waiter_add(t, &w[i].w);
        ck_assert_uint_eq(calloc_failed, 3);
        /* the back-off holds at the mark: one down, one up, many times, no new try */
        for (int k = 0; k < 100; k++) {
                regtab_waiter_remove(t, &w[--i].w);
                regtab_waiter_add(t, &w[i++].w);
        }
        ck_assert_uint_eq(calloc_failed, 3);
        calloc_fail = false;
        ck_assert_uint_eq(regtab_waiter_buckets(t, REGTAB_WAIT_NAME), base);

        /* the burst goes, memory is back; a new one doubles at 2 per bucket, as the first did */
        while (i)
                regtab_waiter_remove(t, &w[--i].w);
        ck_assert_uint_eq(regtab_waiter_count(t, REGTAB_WAIT_NAME), 0);
        for (; i < 2 * base + 1; i++)
                regtab_waiter_add(t, &w[i].w);
        ck_assert_uint_eq(regtab_waiter_buckets(t, REGTAB_WAIT_NAME), 2 * base);
        while (i)
                regtab_waiter_remove(t, &w[--i].w);
        regtab_free(t);
        free(w);
        free(names);
#else
        fprintf(stderr, "test_waiter_buckets_grow_mark_comes_down: ASan owns calloc, skipped\n");
#endif
}
END_TEST

static Suite *regtab_suite(void)
{
        Suite *s = suite_create("regtab");
        TCase *tc = tcase_create("regtab");

        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_region_new_consumes_fd);
        tcase_add_test(tc, test_add_lookup_remove_many);
        tcase_add_test(tc, test_id_order_and_kept_ids);
        tcase_add_test(tc, test_cursor_resume);
        tcase_add_test(tc, test_stale_cursor_bounded);
        tcase_add_test(tc, test_set_size);
        tcase_add_test(tc, test_waiters);
        tcase_add_test(tc, test_many_waiters);
        tcase_add_test(tc, test_version_waiters);
        tcase_add_test(tc, test_wake_visits_its_bucket_only);
        tcase_add_test(tc, test_waiter_buckets_grow);
        tcase_add_test(tc, test_waiter_buckets_shrink);
        tcase_add_test(tc, test_waiter_buckets_grow_enomem);
        tcase_add_test(tc, test_waiter_buckets_grow_mark_comes_down);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return test_run_suite(regtab_suite());
}
