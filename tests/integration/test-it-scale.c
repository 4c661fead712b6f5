/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-it-scale: 100,000 regions through LIST pagination, and 1,000 concurrent connections, on the real iomemd. */

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "iomem.h"
#include "itutil.h"
#include "proto.h"

#define NREGIONS 100000u
#define NCONNS 1000

static struct it_daemon daemon_;

/*
 * 1,000 connections need more than the usual 1,024 fds, here and in the
 * daemon (which inherits the limit). 100,000 regions do not: the daemon keeps
 * region fds beyond its own budget in keeper processes.
 */
static void setup(void)
{
        struct rlimit rl;

        ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
        ck_assert_uint_ge(rl.rlim_max, 4096);
        ck_assert_int_eq(it_raise_nofile(rl.rlim_max), 0);
        test_fd_setup();
        it_daemon_start(&daemon_, (const char *const[]){ "--backend", "memfd", NULL });
}

static void teardown(void)
{
        it_daemon_stop(&daemon_);
        test_fd_teardown();
}

struct seen {
        uint8_t *bits;
        unsigned n;
        unsigned dup;
        unsigned bad;
};

static int seen_cb(const struct iomem_list_entry *e, void *userdata)
{
        struct seen *s = userdata;
        unsigned i;
        char tail;

        if (sscanf(e->name, "r.%6u%c", &i, &tail) != 1 || i >= NREGIONS) {
                s->bad++;
                return 0;
        }
        if (s->bits[i / 8] & (1u << (i % 8)))
                s->dup++;
        s->bits[i / 8] |= (uint8_t)(1u << (i % 8));
        s->n++;
        return 0;
}

START_TEST(test_100k_regions)
{
        struct iomem_client *c = NULL;
        struct iomem_status st;
        struct seen s = { .bits = calloc(NREGIONS / 8 + 1, 1) };
        char name[32];
        int r;

        ck_assert_ptr_nonnull(s.bits);
        ck_assert_int_eq(iomem_connect(daemon_.socket, &c), 0);
        for (unsigned i = 0; i < NREGIONS; i++) {
                struct iomem_region *region = NULL;

                snprintf(name, sizeof(name), "r.%06u", i);
                r = iomem_create(c, name, 4096, NULL, &region);
                ck_assert_msg(r == 0, "create %s: %s", name, iomem_strerror(r));
                iomem_region_free(region);
        }
        ck_assert_int_eq(iomem_status(c, &st), 0);
        ck_assert_uint_eq(st.regions, NREGIONS);

        ck_assert_int_eq(iomem_list(c, NULL, seen_cb, &s), 0);
        ck_assert_uint_eq(s.bad, 0);
        ck_assert_uint_eq(s.dup, 0);
        ck_assert_uint_eq(s.n, NREGIONS);

        memset(s.bits, 0, NREGIONS / 8 + 1);
        s.n = 0;
        /* a prefix selects exactly the names r.00999x: ten of them */
        ck_assert_int_eq(iomem_list(c, "r.00999", seen_cb, &s), 0);
        ck_assert_uint_eq(s.n, 10);
        for (unsigned i = 9990; i < 10000; i++)
                ck_assert(s.bits[i / 8] & (1u << (i % 8)));

        /*
         * A prefix that only the last regions match: one LIST request examines a
         * bounded number of regions, so the walk goes through pages with no entries
         * and still finds them.
         */
        memset(s.bits, 0, NREGIONS / 8 + 1);
        s.n = 0;
        snprintf(name, sizeof(name), "r.%05u", (NREGIONS - 1) / 10);
        ck_assert_int_eq(iomem_list(c, name, seen_cb, &s), 0);
        ck_assert_uint_eq(s.n, 10);
        ck_assert(s.bits[(NREGIONS - 1) / 8] & (1u << ((NREGIONS - 1) % 8)));
        {
                /* the raw reply of one request is bounded: no entries and a cursor to go on */
                uint8_t req[64], rep[PROTO_HEADER_SIZE + 64];
                struct proto_list lm = { .prefix = "nothing-matches" };
                struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION,
                                          .opcode = PROTO_OP_LIST, .id = 77 };
                struct proto_list_reply lr;
                int len = proto_list_encode(&lm, req + PROTO_HEADER_SIZE, sizeof(req) - PROTO_HEADER_SIZE);
                int fd = iomem_client_fd(c);
                ssize_t k;

                ck_assert_int_gt(len, 0);
                h.length = (uint32_t)len;
                proto_header_encode(&h, req);
                ck_assert_int_eq(send(fd, req, PROTO_HEADER_SIZE + (size_t)len, MSG_NOSIGNAL),
                                 PROTO_HEADER_SIZE + len);
                k = recv(fd, rep, PROTO_HEADER_SIZE + 16, MSG_WAITALL);
                ck_assert_int_eq(k, PROTO_HEADER_SIZE + 16);
                ck_assert_int_eq(proto_header_decode(rep, (size_t)k, &h), 0);
                ck_assert_uint_eq(h.id, 77);
                ck_assert_int_eq(proto_list_reply_decode(rep + PROTO_HEADER_SIZE, h.length, &lr), 0);
                ck_assert_uint_eq(lr.count, 0);
                ck_assert_uint_ne(lr.next_cursor, 0);
                ck_assert_uint_lt(lr.next_cursor, NREGIONS);
        }

        for (unsigned i = 0; i < NREGIONS; i++) {
                snprintf(name, sizeof(name), "r.%06u", i);
                r = iomem_delete(c, name);
                ck_assert_msg(r == 0, "delete %s: %s", name, iomem_strerror(r));
        }
        s.n = 0;
        ck_assert_int_eq(iomem_list(c, NULL, seen_cb, &s), 0);
        ck_assert_uint_eq(s.n, 0);
        ck_assert_int_eq(iomem_status(c, &st), 0);
        ck_assert_uint_eq(st.regions, 0);
        iomem_disconnect(c);
        free(s.bits);
}
END_TEST

START_TEST(test_1000_connections)
{
        int base = it_daemon_settled_fds(&daemon_);
        struct iomem_create_opts lease = { .flags = IOMEM_CREATE_LEASE };
        struct iomem_client **c = calloc(NCONNS, sizeof(*c));
        struct iomem_status st;
        struct iomem_stat rs;
        char name[32];

        ck_assert_ptr_nonnull(c);
        for (int i = 0; i < NCONNS; i++) {
                int r = iomem_connect(daemon_.socket, &c[i]);

                ck_assert_msg(r == 0, "connection %d: %s", i, iomem_strerror(r));
        }
        /* all connected at once; each does requests in turn, interleaved with the others */
        for (int round = 0; round < 3; round++)
                for (int i = 0; i < NCONNS; i++) {
                        struct iomem_region *region = NULL;

                        snprintf(name, sizeof(name), "c.%d", i);
                        switch (round) {
                        case 0:
                                ck_assert_int_eq(iomem_create(c[i], name, 4096, &lease, &region), 0);
                                iomem_region_free(region);
                                break;
                        case 1:
                                ck_assert_int_eq(iomem_ping(c[i]), 0);
                                snprintf(name, sizeof(name), "c.%d", (i + 1) % NCONNS);
                                ck_assert_int_eq(iomem_stat(c[i], name, &rs), 0);
                                break;
                        case 2:
                                ck_assert_int_eq(iomem_open(c[i], name, IOMEM_OPEN_RDONLY, 0, &region), 0);
                                iomem_region_free(region);
                                break;
                        }
                }
        ck_assert_int_eq(iomem_status(c[0], &st), 0);
        ck_assert_uint_ge(st.connections, NCONNS);
        ck_assert_uint_eq(st.regions, NCONNS);
        for (int i = 0; i < NCONNS; i++)
                c[i] = iomem_disconnect(c[i]);
        free(c);
        /* leases end, sockets close: the daemon is back where it started */
        ck_assert_int_eq(it_daemon_settled_fds(&daemon_), base);
}
END_TEST

static Suite *suite(void)
{
        Suite *s = suite_create("integration-scale");
        TCase *tc = tcase_create("scale");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_100k_regions);
        tcase_add_test(tc, test_1000_connections);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return test_run_suite(suite());
}
