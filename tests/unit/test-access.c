/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-access: the access rules (access.c) and per-uid usage accounting (quota.c). */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "access.h"
#include "config.h"
#include "proto.h"
#include "quota.h"
#include "regtab.h"
#include "testutil.h"

static const struct region_meta meta_ = { .uid = 100, .gid = 200, .mode = 0640 };

/* The rule of each need for owner, group member (primary and supplementary), other and root. */
START_TEST(test_access_rules)
{
        gid_t supp[] = { 7, 200 };
        struct access_cred owner = { .uid = 100, .gid = 999 };
        struct access_cred primary = { .uid = 101, .gid = 200 };
        struct access_cred member = { .uid = 102, .gid = 5, .groups = supp, .ngroups = 2 };
        struct access_cred other = { .uid = 103, .gid = 5, .groups = supp, .ngroups = 1 };
        struct access_cred root = { .uid = 0, .gid = 0 };
        struct region_meta m = meta_;

        ck_assert_int_eq(access_check(&owner, &m, ACCESS_NEED_READ), 0);
        ck_assert_int_eq(access_check(&owner, &m, ACCESS_NEED_WRITE), 0);
        ck_assert_int_eq(access_check(&owner, &m, ACCESS_NEED_OWNER), 0);
        ck_assert_int_eq(access_check(&primary, &m, ACCESS_NEED_READ), 0);
        ck_assert_int_eq(access_check(&primary, &m, ACCESS_NEED_WRITE), -EACCES);
        ck_assert_int_eq(access_check(&primary, &m, ACCESS_NEED_OWNER), -EACCES);
        ck_assert_int_eq(access_check(&member, &m, ACCESS_NEED_READ), 0);
        ck_assert_int_eq(access_check(&member, &m, ACCESS_NEED_WRITE), -EACCES);
        ck_assert_int_eq(access_check(&other, &m, ACCESS_NEED_READ), -EACCES);
        ck_assert_int_eq(access_check(&other, &m, ACCESS_NEED_WRITE), -EACCES);
        ck_assert_int_eq(access_check(&root, &m, ACCESS_NEED_WRITE), 0);
        ck_assert_int_eq(access_check(&root, &m, ACCESS_NEED_OWNER), 0);

        /* the owner gets the owner bits, even when they give less than the others */
        m.mode = 0066;
        ck_assert_int_eq(access_check(&owner, &m, ACCESS_NEED_READ), -EACCES);
        ck_assert_int_eq(access_check(&owner, &m, ACCESS_NEED_WRITE), -EACCES);
        ck_assert_int_eq(access_check(&owner, &m, ACCESS_NEED_OWNER), 0);
        ck_assert_int_eq(access_check(&other, &m, ACCESS_NEED_WRITE), 0);
        /* a group member gets the group bits, even when other has more */
        m.mode = 0604;
        ck_assert_int_eq(access_check(&member, &m, ACCESS_NEED_READ), -EACCES);
        ck_assert_int_eq(access_check(&other, &m, ACCESS_NEED_READ), 0);
        /* write without read and the reverse */
        m.mode = 0020;
        ck_assert_int_eq(access_check(&member, &m, ACCESS_NEED_WRITE), 0);
        ck_assert_int_eq(access_check(&member, &m, ACCESS_NEED_READ), -EACCES);
        /* execute bits mean nothing */
        m.mode = 0111;
        ck_assert_int_eq(access_check(&other, &m, ACCESS_NEED_READ), -EACCES);
}
END_TEST

START_TEST(test_access_chown)
{
        gid_t supp[] = { 300 };
        struct access_cred owner = { .uid = 100, .gid = 200, .groups = supp, .ngroups = 1 };
        struct access_cred other = { .uid = 103, .gid = 200 };
        struct access_cred root = { .uid = 0, .gid = 0 };

        ck_assert_int_eq(access_check_chown(&owner, &meta_, PROTO_ID_UNCHANGED, 300), 0);
        ck_assert_int_eq(access_check_chown(&owner, &meta_, PROTO_ID_UNCHANGED, 200), 0);
        ck_assert_int_eq(access_check_chown(&owner, &meta_, 100, PROTO_ID_UNCHANGED), 0); /* to itself */
        ck_assert_int_eq(access_check_chown(&owner, &meta_, PROTO_ID_UNCHANGED, 301), -EACCES);
        ck_assert_int_eq(access_check_chown(&owner, &meta_, 103, PROTO_ID_UNCHANGED), -EACCES);
        ck_assert_int_eq(access_check_chown(&other, &meta_, PROTO_ID_UNCHANGED, 200), -EACCES);
        ck_assert_int_eq(access_check_chown(&root, &meta_, 5, 6), 0);
        ck_assert_str_eq(access_need_name(ACCESS_NEED_OWNER), "ownership");
}
END_TEST

/* Charges and refunds per uid; entries vanish at zero; counts never wrap. */
START_TEST(test_quota_charge)
{
        struct quota *q = NULL;
        const struct quota_usage *u;

        ck_assert_int_eq(quota_new(NULL, &q), 0);
        ck_assert_ptr_null(quota_get(q, 5));
        ck_assert_int_eq(quota_charge(q, 5, 100, 1, 1, 0), 0);
        ck_assert_int_eq(quota_charge(q, 3, 0, 0, 1, 0), 0);
        ck_assert_int_eq(quota_charge(q, 9, 0, 0, 1, 2), 0);
        ck_assert_uint_eq(quota_count(q), 3);
        u = quota_get(q, 5);
        ck_assert_ptr_nonnull(u);
        ck_assert_uint_eq(u->bytes, 100);
        ck_assert_uint_eq(u->regions, 1);
        ck_assert_uint_eq(quota_get(q, 9)->fds, 2);
        /* a refund to nobody allocates nothing */
        ck_assert_int_eq(quota_charge(q, 42, -5, -1, 0, 0), 0);
        ck_assert_ptr_null(quota_get(q, 42));
        /* never below zero */
        ck_assert_int_eq(quota_charge(q, 5, -1000, -5, 0, 0), 0);
        ck_assert_uint_eq(quota_get(q, 5)->bytes, 0);
        ck_assert_uint_eq(quota_get(q, 5)->regions, 0);
        ck_assert_int_eq(quota_charge(q, 5, 0, 0, -1, 0), 0);
        ck_assert_ptr_null(quota_get(q, 5));
        ck_assert_uint_eq(quota_count(q), 2);
        /* INT64_MIN refund does not overflow */
        ck_assert_int_eq(quota_charge(q, 3, INT64_MIN, 0, 0, 0), 0);
        ck_assert_uint_eq(quota_get(q, 3)->connections, 1);
        /* saturates instead of wrapping */
        ck_assert_int_eq(quota_charge(q, 3, INT64_MAX, 0, 0, 0), 0);
        ck_assert_int_eq(quota_charge(q, 3, INT64_MAX, 0, 0, 0), 0);
        ck_assert_int_eq(quota_charge(q, 3, INT64_MAX, 0, 0, 0), 0);
        ck_assert_uint_eq(quota_get(q, 3)->bytes, UINT64_MAX);
        ck_assert_int_eq(quota_charge(NULL, 1, 1, 1, 1, 1), 0);
        q = quota_free(q);
        ck_assert_ptr_null(q);
        ck_assert_ptr_null(quota_free(NULL));
}
END_TEST

/* Limits: 0 is unlimited; used + asked is compared without wrapping; each limit alone. */
START_TEST(test_quota_check)
{
        struct config_quota lim = { .bytes = 1000, .regions = 2, .connections = 3, .fds = 4 };
        struct config_quota none = { 0 };
        struct quota *q = NULL;

        ck_assert_int_eq(quota_new(NULL, &q), 0);
        ck_assert_int_eq(quota_check(q, 7, &lim, 1000, 2, 3, 4, NULL), 0);
        ck_assert_int_eq(quota_check(q, 7, &lim, 1001, 0, 0, 0, NULL), -EDQUOT);
        ck_assert_int_eq(quota_check(q, 7, &lim, 0, 3, 0, 0, NULL), -EDQUOT);
        ck_assert_int_eq(quota_check(q, 7, &lim, 0, 0, 4, 0, NULL), -EDQUOT);
        ck_assert_int_eq(quota_check(q, 7, &lim, 0, 0, 0, 5, NULL), -EDQUOT);
        ck_assert_int_eq(quota_charge(q, 7, 999, 2, 3, 4), 0);
        ck_assert_int_eq(quota_check(q, 7, &lim, 1, 0, 0, 0, NULL), 0);
        ck_assert_int_eq(quota_check(q, 7, &lim, 2, 0, 0, 0, NULL), -EDQUOT);
        ck_assert_int_eq(quota_check(q, 7, &lim, UINT64_MAX, 0, 0, 0, NULL), -EDQUOT);
        ck_assert_int_eq(quota_check(q, 7, &lim, 0, 1, 0, 0, NULL), -EDQUOT);
        ck_assert_int_eq(quota_check(q, 7, &lim, 0, 0, 1, 0, NULL), -EDQUOT);
        ck_assert_int_eq(quota_check(q, 7, &lim, 0, 0, 0, 1, NULL), -EDQUOT);
        /* asking for nothing more is always fine, even at the limit */
        ck_assert_int_eq(quota_check(q, 7, &lim, 0, 0, 0, 0, NULL), 0);
        /* other uids are not affected */
        ck_assert_int_eq(quota_check(q, 8, &lim, 1000, 2, 3, 4, NULL), 0);
        ck_assert_int_eq(quota_check(q, 7, &none, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, NULL), 0);
        quota_free(q);
}
END_TEST

/* A refusal names the first limit passed, with what the uid holds and asks; the text says what to do. */
START_TEST(test_quota_excess)
{
        struct config_quota lim = { .bytes = 64 << 10, .regions = 2, .connections = 3, .fds = 4 };
        struct quota_excess e, watches = { QUOTA_WATCHES, 7, 64, 1, 64 };
        struct quota *q = NULL;
        char text[256];

        ck_assert_int_eq(quota_new(NULL, &q), 0);
        ck_assert_int_eq(quota_charge(q, 7, 60 << 10, 2, 3, 4), 0);
        ck_assert_int_eq(quota_check(q, 7, &lim, 8 << 10, 1, 1, 1, &e), -EDQUOT);
        ck_assert_int_eq(e.kind, QUOTA_BYTES);
        ck_assert_uint_eq(e.uid, 7);
        ck_assert_uint_eq(e.used, 60 << 10);
        ck_assert_uint_eq(e.add, 8 << 10);
        ck_assert_uint_eq(e.limit, 64 << 10);
        ck_assert_str_eq(quota_excess_format(&e, text, sizeof(text)),
                         "byte quota is reached: uid 7 owns 60K in regions, 8K more are asked, quota-bytes is 64K; "
                         "delete or shrink regions, or raise quota-bytes in iomemd.conf");
        ck_assert_int_eq(quota_check(q, 7, &lim, 0, 1, 1, 1, &e), -EDQUOT);
        ck_assert_str_eq(quota_excess_format(&e, text, sizeof(text)),
                         "region quota is reached: uid 7 owns 2, quota-regions is 2; delete regions, or raise "
                         "quota-regions in iomemd.conf");
        ck_assert_int_eq(quota_check(q, 7, &lim, 0, 0, 1, 1, &e), -EDQUOT);
        ck_assert_str_eq(quota_excess_format(&e, text, sizeof(text)),
                         "connection quota is reached: uid 7 has 3 open, quota-connections is 3; close some, or "
                         "raise quota-connections in iomemd.conf");
        ck_assert_int_eq(quota_check(q, 7, &lim, 0, 0, 0, 1, &e), -EDQUOT);
        ck_assert_str_eq(quota_excess_format(&e, text, sizeof(text)),
                         "fd quota is reached: uid 7 has 4 queued or unread, quota-fds is 4; read your replies, or "
                         "raise quota-fds in iomemd.conf");
        ck_assert_str_eq(quota_excess_format(&watches, text, sizeof(text)),
                         "watch quota is reached: uid 7 holds 64, quota-watches is 64; unwatch some, or raise "
                         "quota-watches in iomemd.conf");
        /* a byte count that is no whole K, M, G or T is written in bytes */
        ck_assert_int_eq(quota_check(q, 7, &lim, 5000, 0, 0, 0, &e), -EDQUOT);
        ck_assert_ptr_nonnull(strstr(quota_excess_format(&e, text, sizeof(text)), "60K in regions, 5000 more"));
        quota_free(q);
}
END_TEST

/* quota_new() charges the regions already in the table (a restart, or the first connection after idle). */
START_TEST(test_quota_from_table)
{
        struct region_meta m1 = { .uid = 10, .mode = 0600, .backend = PROTO_BACKEND_MEMFD };
        struct region_meta m2 = { .uid = 11, .mode = 0600, .backend = PROTO_BACKEND_MEMFD };
        struct regtab *t = NULL;
        struct region *r;
        struct quota *q = NULL;
        int fd;

        ck_assert_int_eq(regtab_new(&t), 0);
        for (int i = 0; i < 3; i++) {
                char name[8];

                fd = memfd_create("t", MFD_CLOEXEC);
                ck_assert_int_ge(fd, 0);
                snprintf(name, sizeof(name), "r%d", i);
                ck_assert_int_eq(regtab_region_new(name, fd, 100 + (uint64_t)i, i < 2 ? &m1 : &m2, &r), 0);
                ck_assert_int_eq(regtab_add(t, r), 0);
        }
        ck_assert_int_eq(quota_new(t, &q), 0);
        ck_assert_uint_eq(quota_get(q, 10)->regions, 2);
        ck_assert_uint_eq(quota_get(q, 10)->bytes, 201);
        ck_assert_uint_eq(quota_get(q, 11)->regions, 1);
        ck_assert_uint_eq(quota_get(q, 11)->bytes, 102);
        ck_assert_uint_eq(quota_get(q, 10)->connections, 0);
        quota_free(q);
        regtab_free(t);
}
END_TEST

/* Many uids in any order: lookups stay right (the table is kept sorted). */
START_TEST(test_quota_many_uids)
{
        struct quota *q = NULL;

        ck_assert_int_eq(quota_new(NULL, &q), 0);
        for (uint32_t i = 0; i < 1000; i++)
                ck_assert_int_eq(quota_charge(q, (i * 7919u) % 1000u, 0, 0, 1, (int64_t)((i * 7919u) % 1000u)), 0);
        ck_assert_uint_eq(quota_count(q), 1000);
        for (uint32_t uid = 0; uid < 1000; uid++) {
                ck_assert_ptr_nonnull(quota_get(q, uid));
                ck_assert_uint_eq(quota_get(q, uid)->fds, uid);
        }
        for (uint32_t uid = 0; uid < 1000; uid += 2)
                ck_assert_int_eq(quota_charge(q, uid, 0, 0, -1, -(int64_t)uid), 0);
        ck_assert_uint_eq(quota_count(q), 500);
        ck_assert_ptr_null(quota_get(q, 500));
        ck_assert_uint_eq(quota_get(q, 501)->fds, 501);
        quota_free(q);
}
END_TEST

/*
 * The table remembers where it last found a uid (quota.c): entries inserted before it and removed before it
 * shift that place, and the last entry may go; every lookup and charge still finds its own uid, never a
 * neighbour's, and charges and checks the fd counts together (quota_charge_fds()).
 */
START_TEST(test_quota_lookup_after_shifts)
{
        const struct config_quota lim = { .fds = 3 };
        struct quota *q = NULL;

        ck_assert_int_eq(quota_new(NULL, &q), 0);
        ck_assert_int_eq(quota_charge(q, 50, 0, 0, 1, 0), 0);
        ck_assert_uint_eq(quota_get(q, 50)->connections, 1); /* found at 0 */
        ck_assert_int_eq(quota_charge(q, 10, 0, 0, 1, 0), 0); /* inserted before: 50 moves to 1 */
        ck_assert_int_eq(quota_charge_fds(q, 50, 2, 1), 0);
        ck_assert_uint_eq(quota_get(q, 50)->fds, 2);
        ck_assert_uint_eq(quota_get(q, 50)->fds_unread, 1);
        ck_assert_uint_eq(quota_get(q, 10)->fds, 0);
        ck_assert_int_eq(quota_check(q, 50, &lim, 0, 0, 0, 1, NULL), 0);
        ck_assert_int_eq(quota_check(q, 50, &lim, 0, 0, 0, 2, NULL), -EDQUOT);
        ck_assert_int_eq(quota_check(q, 10, &lim, 0, 0, 0, 3, NULL), 0);
        ck_assert_uint_eq(quota_get(q, 50)->connections, 1); /* found at 1 */
        ck_assert_int_eq(quota_charge(q, 10, 0, 0, -1, 0), 0); /* removed before: 50 moves back to 0 */
        ck_assert_uint_eq(quota_count(q), 1);
        ck_assert_ptr_null(quota_get(q, 10));
        ck_assert_int_eq(quota_charge_fds(q, 50, -2, -1), 0);
        ck_assert_uint_eq(quota_get(q, 50)->fds, 0);
        ck_assert_uint_eq(quota_get(q, 50)->fds_unread, 0);
        ck_assert_int_eq(quota_charge(q, 60, 0, 0, 1, 0), 0); /* after it, then gone: the place is past the end */
        ck_assert_uint_eq(quota_get(q, 60)->connections, 1);
        ck_assert_int_eq(quota_charge(q, 60, 0, 0, -1, 0), 0);
        ck_assert_ptr_null(quota_get(q, 60));
        ck_assert_int_eq(quota_charge(q, 50, 0, 0, -1, 0), 0);
        ck_assert_uint_eq(quota_count(q), 0);
        ck_assert_ptr_null(quota_get(q, 50));
        quota_free(q);
}
END_TEST

/*
 * quota_hold(): a connection's entry stays at its address while other uids come and go around it, its charges
 * (quota_usage_charge_fds()) are the table's, and quota_release() removes it only once it holds nothing.
 */
START_TEST(test_quota_hold)
{
        const struct config_quota lim = { .connections = 2, .fds = 3 };
        struct quota_usage *u = NULL, *u2 = NULL;
        struct quota *q = NULL;

        ck_assert_int_eq(quota_new(NULL, &q), 0);
        ck_assert_int_eq(quota_hold(q, 50, &u), 0);
        ck_assert_ptr_nonnull(u);
        ck_assert_ptr_eq(quota_get(q, 50), u);
        ck_assert_uint_eq(u->connections, 1);
        /* more uids than the first array holds, before and after it: the array grows and shifts, u stays */
        for (uint32_t uid = 0; uid < 100; uid++)
                if (uid != 50)
                        ck_assert_int_eq(quota_charge(q, uid, 1, 1, 0, 0), 0);
        ck_assert_ptr_eq(quota_get(q, 50), u);
        quota_usage_charge_fds(u, 2, 1);
        ck_assert_uint_eq(quota_get(q, 50)->fds, 2);
        ck_assert_uint_eq(quota_get(q, 50)->fds_unread, 1);
        ck_assert_int_eq(quota_check(q, 50, &lim, 0, 0, 1, 1, NULL), 0);
        ck_assert_int_eq(quota_check(q, 50, &lim, 0, 0, 0, 2, NULL), -EDQUOT);
        ck_assert_int_eq(quota_check_usage(u, 50, &lim, 0, 0, 2, 0, NULL), -EDQUOT);
        quota_usage_charge_fds(u, -5, -5); /* never below zero */
        ck_assert_uint_eq(u->fds, 0);
        ck_assert_uint_eq(u->fds_unread, 0);
        for (uint32_t uid = 0; uid < 100; uid++)
                if (uid != 50)
                        ck_assert_int_eq(quota_charge(q, uid, -1, -1, 0, 0), 0);
        ck_assert_uint_eq(quota_count(q), 1);
        ck_assert_ptr_eq(quota_get(q, 50), u);
        /* a second hold on the same uid shares the entry; the last release removes it */
        ck_assert_int_eq(quota_hold(q, 50, &u2), 0);
        ck_assert_ptr_eq(u2, u);
        ck_assert_uint_eq(u->connections, 2);
        quota_usage_charge_fds(u, 4, 0);
        quota_release(q, u2, 3);
        ck_assert_ptr_eq(quota_get(q, 50), u);
        ck_assert_uint_eq(u->connections, 1);
        ck_assert_uint_eq(u->fds, 1);
        /* an entry that still owns something stays after its last connection */
        ck_assert_int_eq(quota_charge(q, 50, 10, 1, 0, 0), 0);
        quota_release(q, u, 1);
        ck_assert_ptr_nonnull(quota_get(q, 50));
        ck_assert_uint_eq(quota_get(q, 50)->connections, 0);
        ck_assert_int_eq(quota_charge(q, 50, -10, -1, 0, 0), 0);
        ck_assert_ptr_null(quota_get(q, 50));
        ck_assert_uint_eq(quota_count(q), 0);
        /* held and released with nothing else: gone at once */
        ck_assert_int_eq(quota_hold(q, 7, &u), 0);
        quota_release(q, u, 0);
        ck_assert_ptr_null(quota_get(q, 7));
        /* no table, no accounting */
        ck_assert_int_eq(quota_hold(NULL, 7, &u), 0);
        ck_assert_ptr_null(u);
        quota_release(NULL, NULL, 0);
        quota_free(q);
}
END_TEST

static Suite *access_suite(void)
{
        Suite *s = suite_create("access");
        TCase *tc = tcase_create("access");

        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_add_test(tc, test_access_rules);
        tcase_add_test(tc, test_access_chown);
        tcase_add_test(tc, test_quota_charge);
        tcase_add_test(tc, test_quota_check);
        tcase_add_test(tc, test_quota_excess);
        tcase_add_test(tc, test_quota_from_table);
        tcase_add_test(tc, test_quota_many_uids);
        tcase_add_test(tc, test_quota_lookup_after_shifts);
        tcase_add_test(tc, test_quota_hold);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return test_run_suite(access_suite());
}
