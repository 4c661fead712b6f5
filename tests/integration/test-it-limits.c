/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-it-limits: a request refused at a limit (max-region-size, max-regions,
 * max-bytes, the uid's quota-bytes, quota-regions, quota-watches,
 * max-connections) gets an
 * error text, through iomem_client_error_message(), that names the limit and
 * its key, says what is held and asked, and what to do.
 */
#include <stdarg.h>

#include "itutil.h"

static struct it_daemon daemon_;
static struct iomem_client *client_;

static void start(const char *const *args, uint32_t connect_flags)
{
        it_daemon_start(&daemon_, args);
        ck_assert_int_eq(iomem_connect_flags(daemon_.socket, connect_flags, &client_), 0);
}

static void stop(void)
{
        client_ = iomem_disconnect(client_);
        it_daemon_stop(&daemon_);
}

/* The exact refusal: @r is @error and the daemon's text is @text (printf-style). */
__attribute__((format(printf, 4, 5))) static void expect_refusal(const char *what, int r, int error,
                                                                  const char *text, ...)
{
        char want[1024];
        va_list ap;

        va_start(ap, text);
        vsnprintf(want, sizeof(want), text, ap);
        va_end(ap);
        ck_assert_msg(r == error, "%s: got %d (%s), want %d (%s)", what, r, iomem_strerror(r), error,
                      iomem_strerror(error));
        ck_assert_msg(strcmp(iomem_client_error_message(client_), want) == 0, "%s: text\n  '%s'\nwant\n  '%s'", what,
                      iomem_client_error_message(client_), want);
}

static int create(const char *name, uint64_t size)
{
        struct iomem_create_opts o = { 0 };
        struct iomem_region *r = NULL;
        int k = iomem_create(client_, name, size, &o, &r);

        iomem_region_free(r);
        return k;
}

/* A local memfd of @size, sealed as REGISTER and PUBLISH want it. */
static struct iomem_region *local_region(uint64_t size)
{
        struct iomem_region *r = NULL;

        ck_assert_int_eq(iomem_region_new_local(size, IOMEM_BACKEND_MEMFD, 0, &r), 0);
        ck_assert_int_eq(iomem_region_seal(r, IOMEM_SEAL_SHRINK | IOMEM_SEAL_GROW | IOMEM_SEAL_WRITE), 0);
        return r;
}

static int do_register(const char *name, uint64_t size)
{
        struct iomem_region *r = local_region(size);
        int k = iomem_register(client_, name, r, 0, 0, NULL);

        iomem_region_free(r);
        return k;
}

static int do_publish(const char *name, uint64_t size)
{
        struct iomem_region *r = local_region(size);
        int k = iomem_publish(client_, name, r, NULL, NULL);

        iomem_region_free(r);
        return k;
}

#define TOO_BIG                                                                                                   \
        "size above the daemon's limit: %s asked, max-region-size is 1M; ask for less, or raise max-region-size in " \
        "iomemd.conf"

/* EFBIG: the size asked and max-region-size, for every request that makes or grows a region. */
START_TEST(test_max_region_size)
{
        static const char *const args[] = { "--max-region-size", "1M", NULL };

        start(args, IOMEM_CONNECT_EVENTS);
        expect_refusal("create", create("big", 2 << 20), -EFBIG, TOO_BIG, "2M");
        expect_refusal("create, no whole unit", create("big", (1 << 20) + 1), -EFBIG, TOO_BIG, "1048577");
        expect_refusal("anonymous create", create("", 2 << 20), -EFBIG, TOO_BIG, "2M");
        ck_assert_int_eq(create("r", 4096), 0);
        expect_refusal("resize", iomem_resize(client_, "r", 3 << 20), -EFBIG, TOO_BIG, "3M");
        expect_refusal("register", do_register("reg", 2 << 20), -EFBIG, TOO_BIG, "2M");
        expect_refusal("publish", do_publish("pub", 2 << 20), -EFBIG, TOO_BIG, "2M");
        /* at the limit is allowed */
        ck_assert_int_eq(create("max", 1 << 20), 0);
        ck_assert_str_eq(iomem_client_error_message(client_), "");
        stop();
}
END_TEST

#define DAEMON_REGIONS                                                                                      \
        "the daemon's region limit is reached: it holds 2, max-regions is 2; delete regions, or raise max-regions " \
        "in iomemd.conf"
#define DAEMON_BYTES                                                                                             \
        "the daemon's byte limit is reached: its regions hold 32K, %s more are asked, max-bytes is 64K; delete or " \
        "shrink regions, or raise max-bytes in iomemd.conf"

/* The daemon's own totals: max-regions, then max-bytes, with what it holds and what is asked. */
START_TEST(test_daemon_limits)
{
        static const char *const args[] = { "--max-regions", "2", "--max-bytes", "64K", NULL };

        start(args, IOMEM_CONNECT_EVENTS);
        ck_assert_int_eq(create("a", 32 << 10), 0);
        ck_assert_int_eq(create("b", 28 << 10), 0);
        expect_refusal("create past max-regions", create("c", 4096), -EDQUOT, DAEMON_REGIONS);
        expect_refusal("register past max-regions", do_register("c", 4096), -EDQUOT, DAEMON_REGIONS);
        expect_refusal("publish past max-regions", do_publish("c", 4096), -EDQUOT, DAEMON_REGIONS);
        ck_assert_int_eq(iomem_delete(client_, "b"), 0);
        expect_refusal("create past max-bytes", create("c", 36 << 10), -EDQUOT, DAEMON_BYTES, "36K");
        expect_refusal("anonymous create past max-bytes", create("", 40 << 10), -EDQUOT, DAEMON_BYTES, "40K");
        /* a RESIZE asks for the growth only */
        expect_refusal("resize past max-bytes", iomem_resize(client_, "a", 72 << 10), -EDQUOT, DAEMON_BYTES, "40K");
        stop();
}
END_TEST

#define UID_REGIONS                                                                                         \
        "region quota is reached: uid %u owns 2, quota-regions is 2; delete regions, or raise quota-regions in "    \
        "iomemd.conf"
#define UID_BYTES                                                                                                \
        "byte quota is reached: uid %u owns 32K in regions, %s more are asked, quota-bytes is 64K; delete or "      \
        "shrink regions, or raise quota-bytes in iomemd.conf"

/* The uid's own quotas: bytes and regions, with its uid, what it owns and asks. */
START_TEST(test_uid_quotas)
{
        static const char *const args[] = { "--quota-regions", "2", "--quota-bytes", "64K", NULL };
        unsigned uid = (unsigned)getuid();

        start(args, IOMEM_CONNECT_EVENTS);
        ck_assert_int_eq(create("a", 16 << 10), 0);
        ck_assert_int_eq(create("b", 16 << 10), 0);
        expect_refusal("create past quota-regions", create("c", 4096), -EDQUOT, UID_REGIONS, uid);
        expect_refusal("register past quota-regions", do_register("c", 4096), -EDQUOT, UID_REGIONS, uid);
        expect_refusal("publish past quota-regions", do_publish("c", 4096), -EDQUOT, UID_REGIONS, uid);
        expect_refusal("resize past quota-bytes", iomem_resize(client_, "a", 56 << 10), -EDQUOT, UID_BYTES, uid,
                       "40K");
        expect_refusal("anonymous create past quota-bytes", create("", 36 << 10), -EDQUOT, UID_BYTES, uid, "36K");
        /* the byte quota is looked at first */
        expect_refusal("create past quota-bytes", create("c", 48 << 10), -EDQUOT, UID_BYTES, uid, "48K");
        stop();
}
END_TEST

/* WATCH past quota-watches. */
START_TEST(test_watch_quota)
{
        static const char *const args[] = { "--quota-watches", "2", NULL };

        start(args, IOMEM_CONNECT_EVENTS);
        ck_assert_int_eq(iomem_watch(client_, "a", NULL), 0);
        ck_assert_int_eq(iomem_watch(client_, "b", NULL), 0);
        expect_refusal("watch", iomem_watch(client_, "c", NULL), -EDQUOT,
                       "watch quota is reached: uid %u holds 2, quota-watches is 2; unwatch some, or raise "
                       "quota-watches in iomemd.conf",
                       (unsigned)getuid());
        stop();
}
END_TEST

/*
 * Past max-connections the daemon answers the HELLO with -EDQUOT and the
 * numbers (it used to close the socket without a word); once a connection
 * ends, a new one is served.
 */
START_TEST(test_max_connections)
{
        static const char *const args[] = { "--max-connections", "1", NULL };
        struct iomem_client *more = NULL;
        int r = -1;

        start(args, 0);
        ck_assert_int_eq(iomem_ping(client_), 0);
        ck_assert_int_eq(iomem_connect(daemon_.socket, &more), 0);
        ck_assert_int_eq(iomem_client_handshake(more), -EDQUOT);
        ck_assert_str_eq(iomem_client_error_message(more),
                         "the daemon's connection limit is reached: it has 1 open, max-connections is 1; try again "
                         "later, or raise max-connections in iomemd.conf");
        ck_assert_int_eq(iomem_ping(more), -ENOTCONN);
        more = iomem_disconnect(more);
        client_ = iomem_disconnect(client_);
        /* the daemon sees the first one go when it reads its end: a later connect is served */
        for (int i = 0; i < 500 && r != 0; i++) {
                ck_assert_int_eq(iomem_connect(daemon_.socket, &more), 0);
                r = iomem_client_handshake(more);
                ck_assert_msg(r == 0 || r == -EDQUOT, "r = %d", r);
                more = iomem_disconnect(more);
                if (r)
                        usleep(10000);
        }
        ck_assert_int_eq(r, 0);
        it_daemon_stop(&daemon_);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("it-limits");
        TCase *tc = tcase_create("limits");

        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_max_region_size);
        tcase_add_test(tc, test_daemon_limits);
        tcase_add_test(tc, test_uid_quotas);
        tcase_add_test(tc, test_watch_quota);
        tcase_add_test(tc, test_max_connections);
        suite_add_tcase(s, tc);
        return test_run_suite(s);
}
