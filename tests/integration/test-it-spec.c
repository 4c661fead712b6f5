/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-it-spec: where docs/protocol.md and the daemon used to disagree (issue 11, "what a client written from
 * the spec alone found"), the daemon does what the spec now says. Raw frames where libiomem would hide the point.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "itutil.h"
#include "proto.h"
#include "transport.h"

static struct it_daemon daemon_;

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

/* A raw connection: the socket and its transport. */
struct raw {
        int fd;
        struct transport t;
};

static void raw_open(struct raw *r)
{
        r->fd = fdutil_connect(daemon_.socket);
        ck_assert_int_ge(r->fd, 0);
        ck_assert_int_eq(transport_init(&r->t, r->fd, 0, 0), 0);
}

static void raw_close(struct raw *r)
{
        transport_deinit(&r->t);
        close(r->fd);
}

/* Send one frame (@fds consumed). */
static void raw_send(struct raw *r, uint16_t opcode, uint32_t id, uint8_t flags, const uint8_t *payload, int len,
                     int *fds, unsigned nfds)
{
        struct proto_header h = { .opcode = opcode, .id = id, .flags = flags };

        ck_assert_int_ge(len, 0);
        ck_assert_int_eq(transport_send_blocking(&r->t, &h, payload, (size_t)len, fds, nfds, 10000), 0);
}

/* Return: the error of the next reply (0 if it is not an error); *fp keeps the frame if @fp. */
static int raw_reply(struct raw *r, uint16_t opcode, uint32_t id, struct transport_frame *fp)
{
        struct transport_frame f;
        struct proto_error e;
        int err = 0;

        ck_assert_int_eq(transport_recv_blocking(&r->t, &f, 10000), 1);
        ck_assert_uint_eq(f.hdr.opcode, opcode);
        ck_assert_uint_eq(f.hdr.id, id);
        ck_assert(f.hdr.flags & PROTO_FLAG_REPLY);
        if (f.hdr.flags & PROTO_FLAG_ERROR) {
                ck_assert_int_eq(proto_error_decode(f.payload, f.hdr.length, &e), 0);
                err = e.error;
        }
        if (fp)
                *fp = f;
        else
                transport_frame_deinit(&f);
        return err;
}

/* Return: true once the daemon closed the connection (end of stream). */
static bool raw_closed(struct raw *r)
{
        struct transport_frame f;
        int k = transport_recv_blocking(&r->t, &f, 10000);

        if (k == 1)
                transport_frame_deinit(&f);
        return k == -EPIPE || k == -ECONNRESET;
}

static void raw_hello(struct raw *r, uint32_t id)
{
        uint8_t buf[64];

        raw_send(r, PROTO_OP_HELLO, id, 0, buf,
                 proto_hello_encode(&(struct proto_hello){ .min_version = 1, .max_version = 1 }, buf, sizeof(buf)),
                 NULL, 0);
        ck_assert_int_eq(raw_reply(r, PROTO_OP_HELLO, id, NULL), 0);
}

static int raw_create(struct raw *r, uint32_t id, const struct proto_create *m, struct proto_region_info *infop)
{
        struct transport_frame f;
        uint8_t buf[512];
        int err;

        raw_send(r, PROTO_OP_CREATE, id, 0, buf, proto_create_encode(m, buf, sizeof(buf)), NULL, 0);
        err = raw_reply(r, PROTO_OP_CREATE, id, &f);
        if (!err && infop)
                ck_assert_int_eq(proto_region_info_decode(f.payload, f.hdr.length, infop), 0);
        transport_frame_deinit(&f);
        return err;
}

/*
 * Seals in replies are the kernel's, restricted to the protocol's five bits: the daemon's memfds may carry
 * F_SEAL_EXEC (0x20, Linux 6.3+) which the fd shows and no reply reports.
 */
START_TEST(test_seals_protocol_bits_only)
{
        struct iomem_client *c = NULL;
        struct iomem_region *region = NULL;
        struct iomem_stat st;
        struct raw r;
        struct proto_region_info info;
        struct transport_frame f;
        struct proto_list_reply lr;
        struct proto_list_entry le;
        uint8_t buf[256];
        uint32_t sealed;
        size_t off = 0;
        int kernel;

        raw_open(&r);
        raw_hello(&r, 1);
        ck_assert_int_eq(raw_create(&r, 2, &(struct proto_create){ .size = 4096, .backend = PROTO_BACKEND_MEMFD,
                                                                   .seals = PROTO_SEAL_GROW, .name = "sealed" },
                                    &info),
                         0);
        ck_assert_uint_eq(info.seals & ~PROTO_SEALS_KNOWN, 0);
        ck_assert_int_eq(iomem_connect(daemon_.socket, &c), 0);
        ck_assert_int_eq(iomem_open(c, "sealed", IOMEM_OPEN_RDONLY, 0, &region), 0);
        /* the kernel's own value, not iomem_region_get_seals() (which keeps the protocol's bits too) */
        kernel = fcntl(iomem_region_fd(region), F_GET_SEALS);
        ck_assert_int_ge(kernel, 0);
        /* what the fd says, less the bits the protocol does not define */
        ck_assert_uint_eq(info.seals, (uint32_t)kernel & PROTO_SEALS_KNOWN);
        ck_assert_uint_eq(info.seals, PROTO_SEAL_GROW | PROTO_SEAL_SHRINK);
        ck_assert_int_eq(iomem_stat(c, "sealed", &st), 0);
        ck_assert_uint_eq(st.seals, info.seals);
        ck_assert_int_eq(iomem_seal(c, "sealed", IOMEM_SEAL_WRITE, &sealed), 0);
        ck_assert_uint_eq(sealed, (uint32_t)fcntl(iomem_region_fd(region), F_GET_SEALS) & PROTO_SEALS_KNOWN);
        /* LIST */
        raw_send(&r, PROTO_OP_LIST, 3, 0, buf,
                 proto_list_encode(&(struct proto_list){ .prefix = "sealed" }, buf, sizeof(buf)), NULL, 0);
        ck_assert_int_eq(raw_reply(&r, PROTO_OP_LIST, 3, &f), 0);
        ck_assert_int_eq(proto_list_reply_decode(f.payload, f.hdr.length, &lr), 0);
        ck_assert_int_eq(proto_list_entry_next(&lr, &off, &le), 1);
        ck_assert_uint_eq(le.seals, sealed);
        transport_frame_deinit(&f);
        iomem_region_free(region);
        iomem_disconnect(c);
        raw_close(&r);
}
END_TEST

/*
 * REGISTER's reply reports seals as every other reply does: the kernel's value restricted to the protocol's bits.
 * A memfd sealed with F_SEAL_EXEC (0x20, Linux 6.3+) too used to come back as 0x26 where STAT said 0x06.
 */
START_TEST(test_register_reply_seals)
{
        struct iomem_client *c = NULL;
        struct iomem_stat st;
        struct raw r;
        struct transport_frame f;
        struct proto_register_reply rep;
        uint8_t buf[256];
        int fd, kernel;

        fd = memfd_create("spec-register", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, 4096), 0);
        ck_assert_int_eq(fchmod(fd, 0600), 0); /* the daemon refuses an inode others may write or execute */
        ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
        if (fcntl(fd, F_ADD_SEALS, 0x0020 /* F_SEAL_EXEC */) < 0)
                ck_assert_int_eq(errno, EINVAL); /* older kernel: the point is then only the protocol bits */
        kernel = fcntl(fd, F_GET_SEALS);
        ck_assert_int_ge(kernel, 0);
        raw_open(&r);
        raw_hello(&r, 1);
        raw_send(&r, PROTO_OP_REGISTER, 2, 0, buf,
                 proto_register_encode(&(struct proto_register){ .size = 4096, .mode = 0644, .name = "reg-seals" },
                                       buf, sizeof(buf)),
                 &fd, 1);
        fd = -1; /* consumed */
        ck_assert_int_eq(raw_reply(&r, PROTO_OP_REGISTER, 2, &f), 0);
        ck_assert_int_eq(proto_register_reply_decode(f.payload, f.hdr.length, &rep), 0);
        transport_frame_deinit(&f);
        ck_assert_uint_eq(rep.seals, (uint32_t)kernel & PROTO_SEALS_KNOWN);
        ck_assert_int_eq(iomem_connect(daemon_.socket, &c), 0);
        ck_assert_int_eq(iomem_stat(c, "reg-seals", &st), 0);
        ck_assert_uint_eq(st.seals, rep.seals);
        iomem_disconnect(c);
        raw_close(&r);
}
END_TEST

/*
 * Before the handshake, a HELLO with REPLY set gets -EBADMSG and a HELLO carrying an fd -EINVAL; neither closes
 * the connection nor completes the handshake: a PING then is -EPROTO and closes; a proper HELLO would succeed.
 */
START_TEST(test_first_frame_checks)
{
        uint8_t buf[64];
        int hello_len = proto_hello_encode(&(struct proto_hello){ .min_version = 1, .max_version = 1 }, buf,
                                           sizeof(buf));
        struct raw r;
        int fd;

        /* REPLY set: -EBADMSG, stays; then a proper HELLO completes the handshake */
        raw_open(&r);
        raw_send(&r, PROTO_OP_HELLO, 1, PROTO_FLAG_REPLY, buf, hello_len, NULL, 0);
        ck_assert_int_eq(raw_reply(&r, PROTO_OP_HELLO, 1, NULL), -EBADMSG);
        raw_hello(&r, 2);
        raw_close(&r);

        /* an fd: -EINVAL, stays, the handshake is not done: a PING is -EPROTO and the connection closes */
        raw_open(&r);
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        raw_send(&r, PROTO_OP_HELLO, 1, 0, buf, hello_len, &fd, 1);
        ck_assert_int_eq(raw_reply(&r, PROTO_OP_HELLO, 1, NULL), -EINVAL);
        raw_send(&r, PROTO_OP_PING, 2, 0, buf, proto_ping_encode(&(struct proto_ping){ .cookie = 7 }, buf, sizeof(buf)),
                 NULL, 0);
        ck_assert_int_eq(raw_reply(&r, PROTO_OP_PING, 2, NULL), -EPROTO);
        ck_assert(raw_closed(&r));
        raw_close(&r);

        /* any id, 0 included, is a valid HELLO id: answered, not refused */
        raw_open(&r);
        raw_hello(&r, 0);
        raw_close(&r);
}
END_TEST

/* OPEN with a timeout but without WAIT is -EINVAL; the connection stays. */
START_TEST(test_open_timeout_without_wait)
{
        struct raw r;
        uint8_t buf[256];

        raw_open(&r);
        raw_hello(&r, 1);
        raw_send(&r, PROTO_OP_OPEN, 2, 0, buf,
                 proto_open_encode(&(struct proto_open){ .timeout_ms = 5, .name = "x" }, buf, sizeof(buf)), NULL, 0);
        ck_assert_int_eq(raw_reply(&r, PROTO_OP_OPEN, 2, NULL), -EINVAL);
        raw_send(&r, PROTO_OP_PING, 3, 0, buf, proto_ping_encode(&(struct proto_ping){ .cookie = 1 }, buf, sizeof(buf)),
                 NULL, 0);
        ck_assert_int_eq(raw_reply(&r, PROTO_OP_PING, 3, NULL), 0); /* the connection stays */
        raw_close(&r);
}
END_TEST

/* CREATE's order of checks, as docs/protocol.md writes it. */
START_TEST(test_create_order)
{
        struct raw r;
        struct proto_region_info info;

        raw_open(&r);
        raw_hello(&r, 1);
        ck_assert_int_eq(raw_create(&r, 2, &(struct proto_create){ .size = 4096, .name = "o" }, NULL), 0);
        /* the size limit before the name: an existing name with another, oversize, size */
        ck_assert_int_eq(raw_create(&r, 3, &(struct proto_create){ .size = UINT64_C(1) << 50, .name = "o" }, NULL),
                         -EFBIG);
        /* the values before the size limit: a bad mode with an oversize size */
        ck_assert_int_eq(raw_create(&r, 4, &(struct proto_create){ .size = UINT64_C(1) << 50, .mode = 01000,
                                                                   .name = "p" },
                                    NULL),
                         -EINVAL);
        /* an existing same-size name is opened: seals with a non-memfd backend are not judged */
        ck_assert_int_eq(raw_create(&r, 5, &(struct proto_create){ .size = 4096, .backend = PROTO_BACKEND_SHM,
                                                                   .seals = PROTO_SEAL_GROW, .name = "o" },
                                    &info),
                         0);
        ck_assert_uint_ne(info.id, 0);
        /* ... while for a new name they are -EOPNOTSUPP */
        ck_assert_int_eq(raw_create(&r, 6, &(struct proto_create){ .size = 4096, .backend = PROTO_BACKEND_SHM,
                                                                   .seals = PROTO_SEAL_GROW, .name = "q" },
                                    NULL),
                         -EOPNOTSUPP);
        /* an existing name with another size: -EEXIST */
        ck_assert_int_eq(raw_create(&r, 7, &(struct proto_create){ .size = 8192, .name = "o" }, NULL), -EEXIST);
        raw_close(&r);
}
END_TEST

/* An anonymous CREATE applies the requested seals (and no automatic SHRINK). */
START_TEST(test_anonymous_seals)
{
        struct iomem_client *c = NULL;
        struct iomem_region *region = NULL;
        struct iomem_create_opts o = { .seals = IOMEM_SEAL_GROW, .backend = IOMEM_BACKEND_MEMFD };

        ck_assert_int_eq(iomem_connect(daemon_.socket, &c), 0);
        ck_assert_int_eq(iomem_create(c, NULL, 4096, &o, &region), 0);
        ck_assert_uint_eq((uint32_t)iomem_region_get_seals(region) & PROTO_SEALS_KNOWN, IOMEM_SEAL_GROW);
        ck_assert(iomem_region_flags(region) & IOMEM_REGION_ANONYMOUS);
        iomem_region_free(region);
        iomem_disconnect(c);
}
END_TEST

/* LEASED and RESIZABLE describe the region (another client's OPEN shows them); RDONLY describes the fd. */
START_TEST(test_region_flags)
{
        struct iomem_client *a = NULL, *b = NULL;
        struct iomem_region *ra = NULL, *rb = NULL;
        struct iomem_create_opts o = { .flags = IOMEM_CREATE_LEASE | IOMEM_CREATE_RESIZABLE, .mode = 0666 };

        ck_assert_int_eq(iomem_connect(daemon_.socket, &a), 0);
        ck_assert_int_eq(iomem_connect(daemon_.socket, &b), 0);
        ck_assert_int_eq(iomem_create(a, "flags", 4096, &o, &ra), 0);
        ck_assert_uint_eq(iomem_region_flags(ra), IOMEM_REGION_LEASED | IOMEM_REGION_RESIZABLE);
        ck_assert_int_eq(iomem_open(b, "flags", 0, 0, &rb), 0);
        ck_assert_uint_eq(iomem_region_flags(rb), IOMEM_REGION_LEASED | IOMEM_REGION_RESIZABLE);
        rb = iomem_region_free(rb);
        ck_assert_int_eq(iomem_open(b, "flags", IOMEM_OPEN_RDONLY, 0, &rb), 0);
        ck_assert_uint_eq(iomem_region_flags(rb), IOMEM_REGION_LEASED | IOMEM_REGION_RESIZABLE | IOMEM_REGION_RDONLY);
        iomem_region_free(rb);
        iomem_region_free(ra);
        iomem_disconnect(b);
        iomem_disconnect(a);
}
END_TEST

struct waiter {
        int r;
        uint64_t id;
};

static void *waiter_run(void *arg)
{
        struct waiter *w = arg;
        struct iomem_client *c = NULL;
        struct iomem_region *region = NULL;

        w->r = iomem_connect(daemon_.socket, &c);
        if (w->r == 0)
                w->r = iomem_open(c, "registered", IOMEM_OPEN_RDONLY, 30000, &region);
        if (w->r == 0)
                w->id = iomem_region_id(region);
        iomem_region_free(region);
        iomem_disconnect(c);
        return NULL;
}

/* REGISTER answers the OPENs waiting for the name, as CREATE does. */
START_TEST(test_register_wakes_waiters)
{
        struct iomem_client *c = NULL, *probe = NULL;
        struct iomem_region *local = NULL;
        struct iomem_status st;
        struct waiter w = { .r = 1 };
        pthread_t t;
        uint64_t id = 0;

        ck_assert_int_eq(iomem_connect(daemon_.socket, &probe), 0);
        ck_assert_int_eq(pthread_create(&t, NULL, waiter_run, &w), 0);
        /* the waiter is connected (2 connections) before the name appears; its OPEN is then in flight or waiting */
        for (int i = 0; i < 1000; i++) {
                ck_assert_int_eq(iomem_status(probe, &st), 0);
                if (st.connections >= 2)
                        break;
                it_sleep_ms(5);
        }
        it_sleep_ms(50);
        ck_assert_int_eq(iomem_connect(daemon_.socket, &c), 0);
        ck_assert_int_eq(iomem_region_new_local(4096, IOMEM_BACKEND_MEMFD, 0, &local), 0);
        ck_assert_int_eq(iomem_region_seal(local, IOMEM_REGISTER_SEALS), 0);
        ck_assert_int_eq(iomem_register(c, "registered", local, 0, 0644, &id), 0);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_int_eq(w.r, 0);
        ck_assert_uint_eq(w.id, id);
        iomem_region_free(local);
        iomem_disconnect(c);
        iomem_disconnect(probe);
}
END_TEST

/* LIST accepts any cursor: the walk continues with the regions whose id is greater. */
START_TEST(test_list_any_cursor)
{
        struct raw r;
        struct proto_region_info info[4];
        char name[8];
        uint8_t buf[256];

        raw_open(&r);
        raw_hello(&r, 1);
        for (int i = 0; i < 4; i++) {
                snprintf(name, sizeof(name), "l%d", i);
                ck_assert_int_eq(raw_create(&r, 10 + i, &(struct proto_create){ .size = 4096, .name = name }, &info[i]),
                                 0);
        }
        /* the id of the second region, never given as a cursor: the third and fourth follow */
        for (int k = 0; k < 2; k++) {
                uint64_t cursor = k == 0 ? info[1].id : info[3].id + 1000; /* past every id: nothing */
                struct transport_frame f;
                struct proto_list_reply lr;
                struct proto_list_entry le;
                size_t off = 0;
                int n = 0;

                raw_send(&r, PROTO_OP_LIST, 20 + k, 0, buf,
                         proto_list_encode(&(struct proto_list){ .cursor = cursor, .prefix = "l" }, buf, sizeof(buf)),
                         NULL, 0);
                ck_assert_int_eq(raw_reply(&r, PROTO_OP_LIST, 20 + k, &f), 0);
                ck_assert_int_eq(proto_list_reply_decode(f.payload, f.hdr.length, &lr), 0);
                while (proto_list_entry_next(&lr, &off, &le) == 1) {
                        ck_assert_uint_gt(le.id, cursor);
                        ck_assert_uint_eq(le.id, info[2 + n].id);
                        n++;
                }
                ck_assert_int_eq(n, k == 0 ? 2 : 0);
                ck_assert_uint_eq(lr.next_cursor, 0);
                transport_frame_deinit(&f);
        }
        raw_close(&r);
}
END_TEST

static Suite *spec_suite(void)
{
        Suite *s = suite_create("spec");
        TCase *tc = tcase_create("spec");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_seals_protocol_bits_only);
        tcase_add_test(tc, test_register_reply_seals);
        tcase_add_test(tc, test_first_frame_checks);
        tcase_add_test(tc, test_open_timeout_without_wait);
        tcase_add_test(tc, test_create_order);
        tcase_add_test(tc, test_anonymous_seals);
        tcase_add_test(tc, test_region_flags);
        tcase_add_test(tc, test_register_wakes_waiters);
        tcase_add_test(tc, test_list_any_cursor);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        signal(SIGPIPE, SIG_IGN);
        return test_run_suite(spec_suite());
}
