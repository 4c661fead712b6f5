/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-it-race: one connection's requests must never run inside another's (a woken, throttled waiter). */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "itutil.h"
#include "proto.h"

static int it_raw_connect(const char *path)
{
        int fd = fdutil_connect(path);

        ck_assert_int_ge(fd, 0);
        return fd;
}

static void it_send_all(int fd, const uint8_t *buf, size_t len)
{
        ck_assert_int_eq(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void it_hello(int fd)
{
        struct proto_hello m = { .min_version = 1, .max_version = 1 };
        uint8_t p[64], f[128], rb[512];
        size_t n = it_frame(f, PROTO_OP_HELLO, 1, p, proto_hello_encode(&m, p, sizeof(p)));

        it_send_all(fd, f, n);
        ck_assert_int_gt(read(fd, rb, sizeof(rb)), 0);
}

/*
 * B parks an OPEN WAIT for "x", then pipelines DELETE "x" until the daemon
 * throttles it (its replies pile up). With the daemon stopped, A sends
 * CREATE "x" and B drains its replies. When the daemon resumes, A's CREATE
 * wakes B; B's buffered DELETEs must run later, in B's own turn, not inside
 * A's request (they used to, freeing the region A's CREATE still used:
 * a use-after-free, seen with ASan). Afterwards the daemon must be up, A must
 * have its region, B its OPEN reply, and the daemon's fds back to baseline.
 */
START_TEST(test_wake_does_not_run_other_requests)
{
        static const char *const extra[] = { "--max-out-bytes", "64K", NULL };
        struct it_daemon d;
        struct proto_name del = { .name = "x" };
        struct proto_open o = { .flags = PROTO_OPEN_WAIT, .timeout_ms = 0xFFFFFFFFu, .name = "x" };
        struct proto_create c = { .size = 4096, .name = "x" };
        uint8_t p[512], f[600], rb[1 << 16];
        int a, b, fails = 0, baseline, dl;
        unsigned sent = 0;
        size_t n;

        it_daemon_start(&d, extra);
        baseline = it_daemon_settled_fds(&d);
        a = it_raw_connect(d.socket);
        b = it_raw_connect(d.socket);
        it_hello(a);
        it_hello(b);

        n = it_frame(f, PROTO_OP_OPEN, 2, p, proto_open_encode(&o, p, sizeof(p)));
        it_send_all(b, f, n);
        ck_assert_int_eq(fcntl(b, F_SETFL, O_NONBLOCK), 0);
        dl = proto_name_encode(&del, p, sizeof(p));
        for (uint32_t id = 3; fails < 200;) {
                n = it_frame(f, PROTO_OP_DELETE, id, p, dl);
                if (send(b, f, n, MSG_NOSIGNAL) != (ssize_t)n) {
                        fails++;
                        it_sleep_ms(1);
                        continue;
                }
                fails = 0;
                id++;
                sent++;
        }
        ck_assert_uint_gt(sent, 100);
        it_sleep_ms(200);

        ck_assert_int_eq(kill(d.pid, SIGSTOP), 0);
        it_sleep_ms(100);
        n = it_frame(f, PROTO_OP_CREATE, 2, p, proto_create_encode(&c, p, sizeof(p)));
        it_send_all(a, f, n); /* A's CREATE is ready first */
        it_sleep_ms(50);
        while (read(b, rb, sizeof(rb)) > 0) /* then B drains */
                ;
        ck_assert_int_eq(kill(d.pid, SIGCONT), 0);

        /* A gets its CREATE reply, with an fd */
        {
                union {
                        char buf[CMSG_SPACE(sizeof(int) * PROTO_MAX_FDS)];
                        struct cmsghdr align;
                } u;
                struct iovec iov = { .iov_base = rb, .iov_len = sizeof(rb) };
                struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                                      .msg_controllen = sizeof(u.buf) };
                struct proto_header h;
                struct pollfd pfd = { .fd = a, .events = POLLIN };
                ssize_t k;

                ck_assert_int_eq(poll(&pfd, 1, 10000), 1);
                k = recvmsg(a, &msg, MSG_CMSG_CLOEXEC);
                ck_assert_int_ge(k, PROTO_HEADER_SIZE);
                ck_assert_int_eq(proto_header_decode(rb, (size_t)k, &h), 0);
                ck_assert_uint_eq(h.opcode, PROTO_OP_CREATE);
                ck_assert_uint_eq(h.flags & PROTO_FLAG_ERROR, 0);
                ck_assert_uint_eq(h.nfds, 1);
                struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
                ck_assert_ptr_nonnull(cm);
                int fd;
                memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
                close(fd);
        }
        /* the daemon is alive and serving */
        it_sleep_ms(300);
        ck_assert_int_eq(waitpid(d.pid, NULL, WNOHANG), 0);
        {
                struct iomem_client *cl = NULL;

                ck_assert_int_eq(iomem_connect(d.socket, &cl), 0);
                ck_assert_int_eq(iomem_ping(cl), 0);
                /* B's DELETEs may have run before or after A's CREATE: either way, clean up */
                int k = iomem_delete(cl, "x");
                ck_assert_msg(k == 0 || k == -ENOENT, "delete: %s", iomem_strerror(k));
                iomem_disconnect(cl);
        }
        close(a);
        close(b);
        ck_assert_int_eq(it_daemon_settled_fds(&d), baseline);
        it_daemon_stop(&d);
}
END_TEST

/*
 * A client sends the daemon an fd whose last close blocks (here a TCP socket
 * with unsent data and SO_LINGER, standing in for a file on a FUSE mount
 * whose server never answers). The daemon closes what clients send on its
 * closer thread: another client is still served meanwhile.
 */
START_TEST(test_blocking_close_stalls_nobody)
{
        struct it_daemon d;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t salen = sizeof(sa);
        struct linger lg = { .l_onoff = 1, .l_linger = 30 };
        int lis, tcp, raw, one = 4096;
        uint8_t p[64], f[128], junk[4096] = { 0 };
        struct proto_ping pm = { .cookie = 7 };
        struct iomem_client *cl = NULL;
        size_t n;

        it_daemon_start(&d, NULL);
        lis = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(lis, 0);
        /* a small receive window (inherited by the connection), so the sender's data cannot all go */
        ck_assert_int_eq(setsockopt(lis, SOL_SOCKET, SO_RCVBUF, &one, sizeof(one)), 0);
        ck_assert_int_eq(bind(lis, (struct sockaddr *)&sa, sizeof(sa)), 0);
        ck_assert_int_eq(getsockname(lis, (struct sockaddr *)&sa, &salen), 0);
        ck_assert_int_eq(listen(lis, 1), 0);
        tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(tcp, 0);
        ck_assert_int_eq(setsockopt(tcp, SOL_SOCKET, SO_SNDBUF, &one, sizeof(one)), 0);
        ck_assert_int_eq(connect(tcp, (struct sockaddr *)&sa, sizeof(sa)), 0);
        /* nobody accepts or reads: fill both buffers so data stays unsent */
        ck_assert_int_eq(fcntl(tcp, F_SETFL, O_NONBLOCK), 0);
        for (int i = 0; i < 5; i++) {
                while (send(tcp, junk, sizeof(junk), MSG_NOSIGNAL) > 0)
                        ;
                it_sleep_ms(50);
        }
        ck_assert_int_eq(setsockopt(tcp, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        ck_assert_int_eq(fcntl(tcp, F_SETFL, 0), 0); /* a blocking close lingers */

        raw = it_raw_connect(d.socket);
        it_hello(raw);
        n = it_frame(f, PROTO_OP_PING, 2, p, proto_ping_encode(&pm, p, sizeof(p)));
        {
                struct proto_header h;

                /* the header declares the fd (nfds 1): a PING must not carry one, -EINVAL, fd closed */
                ck_assert_int_eq(proto_header_decode(f, n, &h), 0);
                h.nfds = 1;
                proto_header_encode(&h, f);
                /* all but the last byte */
                ck_assert_int_eq(fdutil_sendmsg(raw, f, n - 1, &tcp, 1, 1, MSG_NOSIGNAL), (ssize_t)n - 1);
        }
        /* drop our copy while the frame is incomplete: the daemon's copy is then the last one */
        close(tcp);
        it_send_all(raw, f + n - 1, 1);
        it_sleep_ms(200);

        /*
         * Another client is served: its HELLO is answered while the close lingers
         * (30 s). A liveness check with a wide margin, not a timing measurement.
         */
        {
                struct proto_hello hm = { .min_version = 1, .max_version = 1 };
                struct pollfd pfd = { .events = POLLIN };
                int other = it_raw_connect(d.socket);

                n = it_frame(f, PROTO_OP_HELLO, 1, p, proto_hello_encode(&hm, p, sizeof(p)));
                it_send_all(other, f, n);
                pfd.fd = other;
                ck_assert_msg(poll(&pfd, 1, 10000) == 1, "the daemon did not answer while a client's fd lingered");
                close(other);
        }
        ck_assert_int_eq(iomem_connect(d.socket, &cl), 0);
        ck_assert_int_eq(iomem_ping(cl), 0);
        iomem_disconnect(cl);

        /* resetting the connection ends the linger */
        close(lis);
        close(raw);
        it_daemon_stop(&d);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("it-race");
        TCase *tc = tcase_create("race");

        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_wake_does_not_run_other_requests);
        tcase_add_test(tc, test_blocking_close_stalls_nobody);
        suite_add_tcase(s, tc);
        return test_run_suite(s);
}
