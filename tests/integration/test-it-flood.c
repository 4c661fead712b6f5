/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-it-flood: libiomem's non-blocking paths against a daemon that never stops sending (hostile review of the
 * asynchronous client). */

/*
 * A daemon that sends events faster than the client reads them is modelled
 * deterministically: the test is linked with -Wl,--wrap=recvmsg, and once
 * flood_fd is set every recvmsg() on that fd returns a full buffer of valid
 * OVERFLOW event frames, as a socket that is never empty would. The real
 * iomemd serves everything before that (HELLO, WATCH, CREATE, OPEN).
 * iomem_client_process() and a cached iomem_open() read "what the socket
 * holds": they used to read until it was empty, that is never, and a test
 * that hangs fails by the Check timeout.
 */

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "fdutil.h"
#include "iomem.h"
#include "itutil.h"
#include "proto.h"

static struct it_daemon daemon_;
static int flood_fd = -1;
static unsigned long flood_reads;

ssize_t __real_recvmsg(int fd, struct msghdr *msg, int flags);
ssize_t __wrap_recvmsg(int fd, struct msghdr *msg, int flags);

/* One OVERFLOW event frame, repeated forever; @pos is where the stream is within it. */
ssize_t __wrap_recvmsg(int fd, struct msghdr *msg, int flags)
{
        static uint8_t one[PROTO_HEADER_SIZE + 8];
        static size_t pos;
        struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION, .flags = PROTO_FLAG_REPLY,
                                  .opcode = PROTO_EV_OVERFLOW, .id = 0, .length = 8 };
        uint8_t *out;
        size_t len;

        if (fd != flood_fd || fd < 0 || msg->msg_iovlen < 1)
                return __real_recvmsg(fd, msg, flags);
        proto_header_encode(&h, one);
        memset(one + PROTO_HEADER_SIZE, 0, 8);
        one[PROTO_HEADER_SIZE] = 1; /* dropped = 1 */
        out = msg->msg_iov[0].iov_base;
        len = msg->msg_iov[0].iov_len;
        for (size_t i = 0; i < len; i++) {
                out[i] = one[pos];
                pos = (pos + 1) % sizeof(one);
        }
        msg->msg_controllen = 0;
        msg->msg_flags = 0;
        flood_reads++;
        return (ssize_t)len;
}

static void setup(void)
{
        test_fd_setup();
        it_daemon_start(&daemon_, NULL);
}

static void teardown(void)
{
        it_daemon_stop(&daemon_);
        test_fd_teardown();
}

static struct iomem_client *connect_events(void)
{
        struct iomem_client *c = NULL;
        int r = iomem_connect_flags(daemon_.socket, IOMEM_CONNECT_EVENTS, &c);

        ck_assert_msg(r == 0, "connect: %s", iomem_strerror(r));
        return c;
}

/* iomem_client_process() is non-blocking: it returns whatever the daemon keeps sending. */
START_TEST(test_process_returns_under_flood)
{
        struct iomem_client *c = connect_events();
        struct iomem_event ev;
        int r;

        flood_reads = 0;
        flood_fd = iomem_client_fd(c);
        r = iomem_client_process(c);
        flood_fd = -1;
        ck_assert_int_ge(r, 0);
        ck_assert_uint_gt(flood_reads, 0);
        /* what it read was kept: one OVERFLOW for all of it */
        ck_assert_int_eq(iomem_next_event(c, &ev, 0), 0);
        ck_assert_int_eq(ev.kind, IOMEM_EVENT_OVERFLOW);
        ck_assert_uint_gt(ev.dropped, 0);
        iomem_disconnect(c);
}
END_TEST

/* A cached iomem_open() reads the events already there first; under a flood it must still return. */
START_TEST(test_cached_open_returns_under_flood)
{
        struct iomem_create_opts co = { .mode = 0600 };
        struct iomem_client *c = connect_events();
        struct iomem_region *region = NULL;
        int r;

        iomem_client_set_timeout(c, 1000); /* the daemon's reply is never read under the flood: the call times out */
        iomem_client_set_reconnect(c, 0);
        ck_assert_int_eq(iomem_client_set_open_cache(c, 1), 0);
        ck_assert_int_eq(iomem_create(c, "flood", 4096, &co, &region), 0);
        region = iomem_region_free(region);
        ck_assert_int_eq(iomem_open(c, "flood", 0, 0, &region), 0);
        region = iomem_region_free(region);
        flood_reads = 0;
        flood_fd = iomem_client_fd(c);
        r = iomem_open(c, "flood", 0, 0, &region);
        flood_fd = -1;
        region = iomem_region_free(region);
        /* not answered from the cache with events still unread: the daemon was asked (and its reply drowned) */
        ck_assert_uint_gt(flood_reads, 0);
        ck_assert_msg(r == -ETIMEDOUT, "open under a flood: %s", iomem_strerror(r));
        iomem_disconnect(c);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("it-flood");
        TCase *tc = tcase_create("flood");

        tcase_add_checked_fixture(tc, setup, teardown);
        /* a hang (the old endless read) fails here; passing takes well under a second */
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_process_returns_under_flood);
        tcase_add_test(tc, test_cached_open_returns_under_flood);
        suite_add_tcase(s, tc);
        return test_run_suite(s);
}
