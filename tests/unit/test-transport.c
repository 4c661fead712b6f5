/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-transport: framing and fd passing over a socketpair, with the test playing a hostile peer. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "testutil.h"
#include "transport.h"

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#endif

#define TIMEOUT_MS 10000 /* a safety net against hangs, never asserted on */

/*
 * sendmsg() as this suite sees it: every call is recorded (flags, bytes offered, the fds of its one SCM_RIGHTS
 * block), and is the kernel's unless a test scripted the results of the next calls (a negative errno, or 0 for
 * "nothing sent"), which then fail before the kernel sees them. It stands in for the C library's in the
 * transport code linked into this program, as in test-conn.c.
 */
#define SM_CALLS_MAX 16

struct sm_call {
        int flags;
        size_t bytes;       /* offered: the sum of the iovecs */
        size_t controllen;
        unsigned nfds;      /* in its SCM_RIGHTS block; UINT_MAX if the control data is not one such block */
        int fds[PROTO_MAX_FDS];
};

static struct {
        unsigned ncalls;
        struct sm_call calls[SM_CALLS_MAX];
        int script[8];
        unsigned nscript, scripted;
} sm;

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
        if (sm.ncalls < SM_CALLS_MAX) {
                struct sm_call *c = &sm.calls[sm.ncalls];
                struct cmsghdr *cmsg = msg->msg_controllen > 0 ? CMSG_FIRSTHDR(msg) : NULL;

                *c = (struct sm_call){ .flags = flags, .controllen = msg->msg_controllen };
                for (size_t i = 0; i < msg->msg_iovlen; i++)
                        c->bytes += msg->msg_iov[i].iov_len;
                if (cmsg) {
                        size_t n = cmsg->cmsg_len >= CMSG_LEN(0) ? (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int) : 0;

                        c->nfds = UINT_MAX;
                        if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS &&
                            cmsg->cmsg_len == CMSG_LEN(n * sizeof(int)) && n <= PROTO_MAX_FDS &&
                            !CMSG_NXTHDR((struct msghdr *)msg, cmsg)) {
                                c->nfds = (unsigned)n;
                                memcpy(c->fds, CMSG_DATA(cmsg), n * sizeof(int));
                        }
                }
        }
        sm.ncalls++;
        if (sm.scripted < sm.nscript) {
                int r = sm.script[sm.scripted++];

                if (r == 0)
                        return 0;
                errno = -r;
                return -1;
        }
        return syscall(SYS_sendmsg, fd, msg, flags);
}

/* Forget the calls so far; the next @n calls return @script[] (a negative errno, or 0) instead of the kernel's. */
static void sm_reset(const int *script, unsigned n)
{
        memset(&sm, 0, sizeof(sm));
        ck_assert_uint_le(n, sizeof(sm.script) / sizeof(sm.script[0]));
        for (unsigned i = 0; i < n; i++)
                sm.script[i] = script[i];
        sm.nscript = n;
}

/* Call @i was made with @flags and offered @bytes with exactly the fds @fds[@nfds] (none: no control data). */
static void sm_check(unsigned i, int flags, size_t bytes, const int *fds, unsigned nfds)
{
        const struct sm_call *c = &sm.calls[i];

        ck_assert_uint_lt(i, sm.ncalls);
        ck_assert_int_eq(c->flags, flags);
        ck_assert_uint_eq(c->bytes, bytes);
        if (nfds == 0) {
                ck_assert_uint_eq(c->controllen, 0);
                return;
        }
        ck_assert_uint_eq(c->controllen, CMSG_SPACE(nfds * sizeof(int)));
        ck_assert_uint_eq(c->nfds, nfds);
        for (unsigned k = 0; k < nfds; k++)
                ck_assert_int_eq(c->fds[k], fds[k]);
}

/* ---- helpers: the hostile peer ---- */

static void pair_new(int sv[2])
{
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void pair_close(int sv[2])
{
        if (sv[0] >= 0)
                close(sv[0]);
        if (sv[1] >= 0)
                close(sv[1]);
        sv[0] = sv[1] = -1;
}

/* A socket pair @sv with a transport on each end (@a on sv[0], @b on sv[1]). */
static void tpair_new(int sv[2], struct transport *a, struct transport *b)
{
        pair_new(sv);
        ck_assert_int_eq(transport_init(a, sv[0], 0, 0), 0);
        ck_assert_int_eq(transport_init(b, sv[1], 0, 0), 0);
}

/* End what tpair_new() made. */
static void tpair_close(int sv[2], struct transport *a, struct transport *b)
{
        transport_deinit(a);
        transport_deinit(b);
        pair_close(sv);
}

/* A socket pair whose sv[1] end is transport @t; the test writes raw bytes at sv[0]. */
static void rx_new(int sv[2], struct transport *t)
{
        pair_new(sv);
        ck_assert_int_eq(transport_init(t, sv[1], 0, 0), 0);
}

/* End what rx_new() made (or any pair with @t on one end). */
static void rx_close(int sv[2], struct transport *t)
{
        transport_deinit(t);
        pair_close(sv);
}

/* a fresh memfd: every one has its own inode, so fds can be told apart */
static int memfd_new(void)
{
        int fd = memfd_create("test-transport", MFD_CLOEXEC);

        ck_assert_int_ge(fd, 0);
        return fd;
}

static void fds_close(int *fds, unsigned n)
{
        for (unsigned i = 0; i < n; i++)
                if (fds[i] >= 0) {
                        close(fds[i]);
                        fds[i] = -1;
                }
}

static bool is_cloexec(int fd)
{
        int flags = fcntl(fd, F_GETFD);

        ck_assert_int_ge(flags, 0);
        return flags & FD_CLOEXEC;
}

/* Encode a header with arbitrary (possibly hostile) values. */
static size_t hdr_put(uint8_t *buf, uint8_t version, uint16_t opcode, uint32_t id, uint32_t length,
                      uint16_t nfds)
{
        struct proto_header h = {
                .magic = PROTO_MAGIC,
                .version = version,
                .opcode = opcode,
                .id = id,
                .length = length,
                .nfds = nfds,
        };

        proto_header_encode(&h, buf);
        return PROTO_HEADER_SIZE;
}

/* Build a whole frame with a recognisable payload into buf. Return: its size. */
static size_t frame_put(uint8_t *buf, uint16_t opcode, uint32_t id, uint32_t length, uint16_t nfds)
{
        hdr_put(buf, PROTO_VERSION, opcode, id, length, nfds);
        for (uint32_t i = 0; i < length; i++)
                buf[PROTO_HEADER_SIZE + i] = (uint8_t)(id * 31u + i);
        return PROTO_HEADER_SIZE + length;
}

static void payload_check(const struct transport_frame *f, uint32_t id, uint32_t length)
{
        ck_assert_uint_eq(f->hdr.length, length);
        if (length == 0) {
                ck_assert_ptr_null(f->payload);
                return;
        }
        ck_assert_ptr_nonnull(f->payload);
        for (uint32_t i = 0; i < length; i++)
                ck_assert_uint_eq(f->payload[i], (uint8_t)(id * 31u + i));
}

static void raw_send(int sock, const void *buf, size_t len, const int *fds, unsigned nfds)
{
        ck_assert_int_eq(fdutil_sendmsg(sock, buf, len, fds, nfds, nfds ? 1 : 0, MSG_NOSIGNAL), (ssize_t)len);
}

/* Send @n fresh memfds with @buf; they are closed here (the kernel holds them in flight). */
static void raw_send_new_fds(int sock, const void *buf, size_t len, unsigned n)
{
        int fds[256];

        ck_assert_uint_le(n, 256);
        for (unsigned i = 0; i < n; i++)
                fds[i] = memfd_new();
        raw_send(sock, buf, len, fds, n);
        fds_close(fds, n);
}

/*
 * Read and parse until a frame or an error comes out, or nothing more is
 * available. Return: transport_next_frame()'s result, a read error, or 0.
 */
static bool pump_borrowed; /* the *-borrowed test cases: parse as iomemd and libiomem do */

static int pump(struct transport *t, struct transport_frame *f)
{
        for (;;) {
                int r = pump_borrowed ? transport_next_frame_borrowed(t, f) : transport_next_frame(t, f);

                if (r != 0)
                        return r;
                if (t->eof)
                        return 0;
                r = transport_read(t);
                if (r == -EAGAIN)
                        return 0;
                if (r < 0)
                        return r;
        }
}

/* ---- round trips ---- */

static void roundtrip(unsigned nfds, uint32_t length)
{
        struct transport a, b;
        struct transport_frame f;
        struct proto_header h = { .opcode = PROTO_OP_PING, .id = 7 + nfds, .flags = PROTO_FLAG_REPLY };
        uint8_t *payload = malloc(length + 1);
        int fds[PROTO_MAX_FDS], orig[PROTO_MAX_FDS];
        int sv[2];

        ck_assert_ptr_nonnull(payload);
        for (uint32_t i = 0; i < length; i++)
                payload[i] = (uint8_t)(i * 7u + nfds);
        tpair_new(sv, &a, &b);
        for (unsigned i = 0; i < nfds; i++) {
                fds[i] = memfd_new();
                orig[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
                ck_assert_int_ge(orig[i], 0);
        }

        ck_assert_int_eq(transport_send_blocking(&a, &h, payload, length, fds, nfds, TIMEOUT_MS), 0);
        for (unsigned i = 0; i < nfds; i++)
                ck_assert_int_eq(fds[i], -1); /* consumed */
        ck_assert(!transport_has_output(&a));

        ck_assert_int_eq(transport_recv_blocking(&b, &f, TIMEOUT_MS), 1);
        ck_assert_uint_eq(f.hdr.magic, PROTO_MAGIC);
        ck_assert_uint_eq(f.hdr.version, PROTO_VERSION);
        ck_assert_uint_eq(f.hdr.opcode, PROTO_OP_PING);
        ck_assert_uint_eq(f.hdr.flags, PROTO_FLAG_REPLY);
        ck_assert_uint_eq(f.hdr.id, 7 + nfds);
        ck_assert_uint_eq(f.hdr.length, length);
        ck_assert_uint_eq(f.hdr.nfds, nfds);
        ck_assert_uint_eq(f.nfds, nfds);
        if (length)
                ck_assert_mem_eq(f.payload, payload, length);
        else
                ck_assert_ptr_null(f.payload);
        for (unsigned i = 0; i < nfds; i++) {
                ck_assert(is_cloexec(f.fds[i])); /* D9 */
                ck_assert(test_same_file(f.fds[i], orig[i]));
        }

        transport_frame_deinit(&f);
        ck_assert_uint_eq(f.nfds, 0);
        ck_assert_ptr_null(f.payload);
        fds_close(orig, nfds);
        tpair_close(sv, &a, &b);
        free(payload);
}

START_TEST(test_roundtrip_0_fds)
{
        roundtrip(0, 13);
        roundtrip(0, 0); /* length 0 is a valid payload length */
}
END_TEST

START_TEST(test_roundtrip_1_fd)
{
        roundtrip(1, 100);
        roundtrip(1, 0);
}
END_TEST

START_TEST(test_roundtrip_max_fds)
{
        roundtrip(PROTO_MAX_FDS, 4096);
}
END_TEST

START_TEST(test_roundtrip_max_payload)
{
        /* exactly fills the input buffer */
        roundtrip(1, PROTO_MAX_PAYLOAD);
}
END_TEST

/* F4: many frames in one write */
START_TEST(test_many_frames_one_write)
{
        enum { N = 200 };
        uint8_t *buf = malloc(N * (PROTO_HEADER_SIZE + 64));
        struct transport t;
        struct transport_frame f;
        size_t len = 0;
        int sv[2];

        ck_assert_ptr_nonnull(buf);
        for (uint32_t i = 0; i < N; i++)
                len += frame_put(buf + len, PROTO_OP_STAT, i, i % 64, 0);
        rx_new(sv, &t);
        raw_send(sv[0], buf, len, NULL, 0);

        for (uint32_t i = 0; i < N; i++) {
                ck_assert_int_eq(pump(&t, &f), 1);
                ck_assert_uint_eq(f.hdr.id, i);
                ck_assert_uint_eq(f.nfds, 0);
                payload_check(&f, i, i % 64);
                transport_frame_deinit(&f);
        }
        ck_assert_int_eq(pump(&t, &f), 0);

        rx_close(sv, &t);
        free(buf);
}
END_TEST

/* The mixed-batch tests' frames: frame i has id i, i bytes valued i and mixed_pattern[i] fds. */
static const unsigned mixed_pattern[] = { 0, 0, 1, 0, 2, 4, 0, 0, 0, 3, 1, 0 };
enum { MIXED_N = sizeof(mixed_pattern) / sizeof(mixed_pattern[0]) };

/* Queue the mixed frames on @a (new memfds, consumed), a duplicate of each fd kept in @orig. */
static void mixed_queue(struct transport *a, int orig[MIXED_N][PROTO_MAX_FDS])
{
        for (unsigned i = 0; i < MIXED_N; i++) {
                struct proto_header h = { .opcode = PROTO_OP_OPEN, .id = i };
                uint8_t payload[32];
                int fds[PROTO_MAX_FDS];

                memset(payload, (int)i, sizeof(payload));
                for (unsigned k = 0; k < mixed_pattern[i]; k++) {
                        fds[k] = memfd_new();
                        orig[i][k] = fcntl(fds[k], F_DUPFD_CLOEXEC, 0);
                }
                ck_assert_int_eq(transport_queue(a, &h, payload, i, fds, mixed_pattern[i]), 0);
        }
}

/* Read the mixed frames from @b: each in order with its payload and its own fds, then nothing; @orig closed. */
static void mixed_expect(struct transport *b, int orig[MIXED_N][PROTO_MAX_FDS])
{
        struct transport_frame f;

        for (unsigned i = 0; i < MIXED_N; i++) {
                ck_assert_int_eq(pump(b, &f), 1);
                ck_assert_uint_eq(f.hdr.id, i);
                ck_assert_uint_eq(f.hdr.length, i);
                ck_assert_uint_eq(f.nfds, mixed_pattern[i]);
                for (unsigned k = 0; k < i; k++)
                        ck_assert_uint_eq(f.payload[k], i);
                for (unsigned k = 0; k < mixed_pattern[i]; k++)
                        ck_assert(test_same_file(f.fds[k], orig[i][k]));
                transport_frame_deinit(&f);
                fds_close(orig[i], mixed_pattern[i]);
        }
        ck_assert_int_eq(pump(b, &f), 0);
}

/* The writer batches fd-less frames but sends every frame with fds on its own. */
START_TEST(test_queue_mixed_batch)
{
        int orig[MIXED_N][PROTO_MAX_FDS];
        struct transport a, b;
        int sv[2];

        tpair_new(sv, &a, &b);
        mixed_queue(&a, orig);
        ck_assert(transport_has_output(&a));
        ck_assert_int_eq(transport_flush(&a), 0);
        ck_assert(!transport_has_output(&a));
        ck_assert_uint_eq(a.out_bytes, 0);
        ck_assert_uint_eq(a.out_fds, 0);
        mixed_expect(&b, orig);

        tpair_close(sv, &a, &b);
}
END_TEST

/*
 * FDS_IN_ORDER (docs/protocol.md section 5): a writer whose peer ties fds in order puts frames with fds in one
 * sendmsg() with others, up to PROTO_MAX_FDS fds; the reader gives each frame the next nfds fds received.
 */
START_TEST(test_queue_mixed_batch_in_order)
{
        int orig[MIXED_N][PROTO_MAX_FDS];
        struct transport a, b;
        int sv[2];

        tpair_new(sv, &a, &b);
        a.out_fds_in_order = true;
        b.in_fds_in_order = true;
        mixed_queue(&a, orig);
        ck_assert_int_eq(transport_flush(&a), 0);
        ck_assert_uint_eq(a.out_fds, 0);
        /* the first sendmsg() held frames 0-4 and their 3 fds (frame 5's 4 would pass PROTO_MAX_FDS) */
        ck_assert_int_gt(transport_read(&b), 0);
        ck_assert_uint_eq(b.in_fds, 3);
        mixed_expect(&b, orig);
        tpair_close(sv, &a, &b);
}
END_TEST

/*
 * In order, an fd may come with bytes of an earlier frame (fd-less A, then B with nfds 1, the fd sent with A);
 * the last-byte rule of a version-1 reader calls that a violation. A frame complete without its fds is one
 * either way.
 */
START_TEST(test_fds_in_order_rules)
{
        uint8_t a[PROTO_HEADER_SIZE + 8], bb[PROTO_HEADER_SIZE + 8];
        size_t alen = frame_put(a, PROTO_OP_STAT, 1, 8, 0), blen = frame_put(bb, PROTO_OP_OPEN, 2, 8, 1);

        for (int in_order = 0; in_order <= 1; in_order++) {
                struct transport t;
                struct transport_frame f;
                int sv[2];

                rx_new(sv, &t);
                t.in_fds_in_order = in_order;
                raw_send_new_fds(sv[0], a, alen, 1); /* B's fd, early */
                raw_send(sv[0], bb, blen, NULL, 0);
                if (in_order) {
                        ck_assert_int_eq(pump(&t, &f), 1);
                        ck_assert_uint_eq(f.nfds, 0);
                        transport_frame_deinit(&f);
                        ck_assert_int_eq(pump(&t, &f), 1);
                        ck_assert_uint_eq(f.hdr.id, 2);
                        ck_assert_uint_eq(f.nfds, 1);
                        ck_assert(is_cloexec(f.fds[0]));
                        transport_frame_deinit(&f);
                } else {
                        ck_assert_int_eq(pump(&t, &f), -EPROTO);
                }
                rx_close(sv, &t);
        }
        /* in order, B complete with no fd received: missing fds */
        {
                struct transport t;
                struct transport_frame f;
                int sv[2];

                rx_new(sv, &t);
                t.in_fds_in_order = true;
                raw_send(sv[0], bb, blen, NULL, 0);
                ck_assert_int_eq(pump(&t, &f), -EPROTO);
                rx_close(sv, &t);
        }
}
END_TEST

/*
 * In order, a writer may put a frame with fds behind a large fd-less frame in one sendmsg(); the kernel
 * splits a large write into several buffers and gives the fds with the first, so the reader gets them while
 * the fd-less frame is still incomplete (held fds > that frame's nfds, 0). That is the writer following the
 * rule, not a violation.
 */
START_TEST(test_in_order_fds_ahead_of_large_frame)
{
        struct proto_header ha = { .opcode = PROTO_OP_LIST, .id = 1 }, hb = { .opcode = PROTO_OP_OPEN, .id = 2 };
        uint8_t *payload = malloc(PROTO_MAX_PAYLOAD);
        struct transport a, b;
        struct transport_frame f;
        int sv[2], fd, orig;

        ck_assert_ptr_nonnull(payload);
        for (uint32_t k = 0; k < PROTO_MAX_PAYLOAD; k++)
                payload[k] = (uint8_t)(1 * 31u + k);
        pair_new(sv);
        ck_assert_int_eq(transport_init(&a, sv[0], 0, 0), 0);
        ck_assert_int_eq(transport_init(&b, sv[1], 0, 0), 0);
        a.out_fds_in_order = true;
        b.in_fds_in_order = true;
        fd = memfd_new();
        orig = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        ck_assert_int_eq(transport_queue(&a, &ha, payload, PROTO_MAX_PAYLOAD, NULL, 0), 0);
        ck_assert_int_eq(transport_queue(&a, &hb, payload, 8, &fd, 1), 0);
        ck_assert_int_eq(transport_flush(&a), 0);

        ck_assert_int_eq(pump(&b, &f), 1);
        ck_assert_uint_eq(f.hdr.id, 1);
        ck_assert_uint_eq(f.nfds, 0);
        payload_check(&f, 1, PROTO_MAX_PAYLOAD);
        transport_frame_deinit(&f);
        ck_assert_int_eq(pump(&b, &f), 1);
        ck_assert_uint_eq(f.hdr.id, 2);
        ck_assert_uint_eq(f.nfds, 1);
        ck_assert(test_same_file(f.fds[0], orig));
        transport_frame_deinit(&f);
        ck_assert_int_eq(pump(&b, &f), 0);
        close(orig);
        transport_deinit(&a);
        transport_deinit(&b);
        pair_close(sv);
        free(payload);
}
END_TEST

/*
 * transport_unqueue_tail() (libiomem's interrupted send): it takes back the last frame only if the queue ends
 * where the caller's frame ended and nothing of it went, no byte (a partial write) and no fd (fds in order go
 * with an earlier sendmsg() than the frame's first byte); a frame taken back has its own fds closed, and the
 * peer reads the stream in step without it.
 */
START_TEST(test_unqueue_tail)
{
        struct proto_header h1 = { .opcode = PROTO_OP_LIST, .id = 1 }, h2 = { .opcode = PROTO_OP_OPEN, .id = 2 },
                            h3 = { .opcode = PROTO_OP_OPEN, .id = 3 };
        uint8_t *payload = malloc(PROTO_MAX_PAYLOAD);
        struct transport a, b;
        struct transport_frame f;
        int sv[2], fd, fdnum, orig, one = 1;
        uint64_t end, pos0;
        size_t bytes;

        ck_assert_ptr_nonnull(payload);
        for (uint32_t k = 0; k < PROTO_MAX_PAYLOAD; k++)
                payload[k] = (uint8_t)(1 * 31u + k);
        tpair_new(sv, &a, &b);
        a.out_fds_in_order = true;
        b.in_fds_in_order = true;
        ck_assert(!transport_unqueue_tail(&a, a.out_pos)); /* nothing queued */
        /* untouched: taken back, its fd closed */
        fd = memfd_new();
        fdnum = fd;
        ck_assert_int_eq(transport_queue(&a, &h1, payload, 8, NULL, 0), 0);
        ck_assert_int_eq(transport_queue(&a, &h2, payload, 8, &fd, 1), 0);
        end = a.out_pos + a.out_bytes;
        ck_assert(!transport_unqueue_tail(&a, end - 1)); /* another frame's end */
        ck_assert(transport_unqueue_tail(&a, end));
        ck_assert_int_eq(fcntl(fdnum, F_GETFD), -1);
        ck_assert_int_eq(errno, EBADF);
        ck_assert_uint_eq(a.out_fds, 0);
        ck_assert_int_eq(transport_flush(&a), 0);
        ck_assert_int_eq(pump(&b, &f), 1);
        ck_assert_uint_eq(f.hdr.id, 1);
        transport_frame_deinit(&f);
        ck_assert_int_eq(pump(&b, &f), 0);

        /* partly written: not taken back */
        ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one)), 0);
        pos0 = a.out_pos;
        ck_assert_int_eq(transport_queue(&a, &h1, payload, PROTO_MAX_PAYLOAD, NULL, 0), 0);
        ck_assert_int_eq(transport_flush(&a), -EAGAIN);
        ck_assert_uint_gt(a.out_pos, pos0); /* some of it went */
        end = a.out_pos + a.out_bytes;
        bytes = a.out_bytes;
        ck_assert(!transport_unqueue_tail(&a, end));
        ck_assert_uint_eq(a.out_bytes, bytes);

        /* its fds went ahead of its first byte (in order, with the rest of the frame before it): not taken back */
        fd = memfd_new();
        orig = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        ck_assert_int_eq(transport_queue(&a, &h3, payload, 8, &fd, 1), 0);
        end = a.out_pos + a.out_bytes;
        ck_assert_int_eq(pump(&b, &f), 0); /* room again, less than the first frame's rest */
        ck_assert_int_eq(transport_flush(&a), -EAGAIN);
        ck_assert_uint_gt(a.out_fds_ahead_bytes, 0);
        ck_assert_uint_lt(a.out_pos, end - PROTO_HEADER_SIZE - 8); /* no byte of it */
        ck_assert(!transport_unqueue_tail(&a, end));
        for (int k = 0; k < 100000 && a.out_head; k++) {
                ck_assert_int_eq(pump(&b, &f), 0);
                int r = transport_flush(&a);
                ck_assert(r == 0 || r == -EAGAIN);
        }
        ck_assert_ptr_null(a.out_head);
        ck_assert_int_eq(pump(&b, &f), 1);
        ck_assert_uint_eq(f.hdr.id, 1);
        payload_check(&f, 1, PROTO_MAX_PAYLOAD);
        transport_frame_deinit(&f);
        ck_assert_int_eq(pump(&b, &f), 1);
        ck_assert_uint_eq(f.hdr.id, 3);
        ck_assert_uint_eq(f.nfds, 1);
        ck_assert(test_same_file(f.fds[0], orig));
        transport_frame_deinit(&f);
        ck_assert_int_eq(pump(&b, &f), 0);
        close(orig);
        tpair_close(sv, &a, &b);
        free(payload);
}
END_TEST

/* F4: a frame sent one byte per write, parsed after every byte; the fd rides with the first byte. */
static void one_byte_per_write(unsigned nfds, bool read_each)
{
        uint8_t buf[PROTO_HEADER_SIZE + 50];
        int fds[PROTO_MAX_FDS], orig[PROTO_MAX_FDS];
        struct transport t;
        struct transport_frame f;
        size_t len = frame_put(buf, PROTO_OP_CREATE, 99, 50, (uint16_t)nfds);
        int sv[2];

        rx_new(sv, &t);
        for (unsigned k = 0; k < nfds; k++) {
                fds[k] = memfd_new();
                orig[k] = fcntl(fds[k], F_DUPFD_CLOEXEC, 0);
        }
        for (size_t i = 0; i < len; i++) {
                raw_send(sv[0], buf + i, 1, fds, i == 0 ? nfds : 0);
                if (i == 0)
                        fds_close(fds, nfds);
                if (read_each && i + 1 < len)
                        ck_assert_int_eq(pump(&t, &f), 0);
        }
        ck_assert_int_eq(pump(&t, &f), 1);
        ck_assert_uint_eq(f.hdr.id, 99);
        payload_check(&f, 99, 50);
        ck_assert_uint_eq(f.nfds, nfds);
        for (unsigned k = 0; k < nfds; k++) {
                ck_assert(is_cloexec(f.fds[k]));
                ck_assert(test_same_file(f.fds[k], orig[k]));
        }
        transport_frame_deinit(&f);
        ck_assert_int_eq(pump(&t, &f), 0);
        fds_close(orig, nfds);
        rx_close(sv, &t);
}

START_TEST(test_f4_one_byte_per_write)
{
        one_byte_per_write(0, true);
        one_byte_per_write(0, false);
}
END_TEST

START_TEST(test_f4_one_byte_per_write_fds)
{
        one_byte_per_write(1, true);
        one_byte_per_write(1, false);
        one_byte_per_write(PROTO_MAX_FDS, true);
        one_byte_per_write(PROTO_MAX_FDS, false);
}
END_TEST

/* ---- end of stream ---- */

/* F4: EOF in the middle of a frame's payload, with its fd already received */
START_TEST(test_f4_eof_mid_frame)
{
        uint8_t buf[PROTO_HEADER_SIZE + 100];
        struct transport t;
        struct transport_frame f;
        int sv[2];

        frame_put(buf, PROTO_OP_CREATE, 1, 100, 1);
        rx_new(sv, &t);
        raw_send_new_fds(sv[0], buf, PROTO_HEADER_SIZE + 40, 1);
        ck_assert_int_eq(pump(&t, &f), 0);
        close(sv[0]);
        sv[0] = -1;
        ck_assert_int_eq(pump(&t, &f), -EPIPE);
        ck_assert_int_eq(transport_next_frame(&t, &f), -EPIPE);
        ck_assert_int_eq(transport_recv_blocking(&t, &f, TIMEOUT_MS), -EPIPE);
        transport_deinit(&t); /* closes the held fd: the fixture checks */
        pair_close(sv);
}
END_TEST

/* F4: EOF in the middle of a header */
START_TEST(test_f4_eof_mid_header)
{
        uint8_t buf[PROTO_HEADER_SIZE];
        struct transport t;
        struct transport_frame f;
        int sv[2];

        hdr_put(buf, PROTO_VERSION, PROTO_OP_PING, 1, 8, 0);
        rx_new(sv, &t);
        raw_send(sv[0], buf, PROTO_HEADER_SIZE - 1, NULL, 0);
        ck_assert_int_eq(pump(&t, &f), 0);
        shutdown(sv[0], SHUT_WR);
        ck_assert_int_eq(pump(&t, &f), -EPIPE);
        rx_close(sv, &t);
}
END_TEST

/* A clean EOF between frames is not an error for the parser; the blocking reader reports -EPIPE. */
START_TEST(test_eof_between_frames)
{
        uint8_t buf[PROTO_HEADER_SIZE + 4];
        struct transport t;
        struct transport_frame f;
        int sv[2];

        rx_new(sv, &t);
        raw_send(sv[0], buf, frame_put(buf, PROTO_OP_PING, 5, 4, 0), NULL, 0);
        shutdown(sv[0], SHUT_WR);
        ck_assert_int_eq(transport_recv_blocking(&t, &f, TIMEOUT_MS), 1);
        transport_frame_deinit(&f);
        ck_assert_int_eq(pump(&t, &f), 0);
        ck_assert(t.eof);
        ck_assert_int_eq(transport_read(&t), 0);
        ck_assert_int_eq(transport_recv_blocking(&t, &f, TIMEOUT_MS), -EPIPE);
        rx_close(sv, &t);
}
END_TEST

/* ---- framing attacks ---- */

/* F1: garbage shorter than a header, then EOF */
START_TEST(test_f1_short_garbage_eof)
{
        static const uint8_t junk[7] = { 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00 };
        struct transport t;
        struct transport_frame f;
        int sv[2];

        rx_new(sv, &t);
        raw_send(sv[0], junk, sizeof(junk), NULL, 0);
        shutdown(sv[0], SHUT_WR);
        ck_assert_int_eq(pump(&t, &f), -EPIPE);
        rx_close(sv, &t);
}
END_TEST

/* F1: a header-sized block of garbage is rejected as soon as it is complete, fd and all */
START_TEST(test_f1_garbage_header)
{
        uint8_t junk[PROTO_HEADER_SIZE];
        struct transport t;
        struct transport_frame f;
        int sv[2];

        memset(junk, 0x5a, sizeof(junk));
        rx_new(sv, &t);
        raw_send_new_fds(sv[0], junk, sizeof(junk), 1);
        ck_assert_int_eq(pump(&t, &f), -EBADMSG);
        rx_close(sv, &t);
}
END_TEST

/* F2: length 0xFFFFFFFF is refused from the header alone, before any payload arrives */
START_TEST(test_f2_huge_length)
{
        static const uint32_t lengths[] = { 0xffffffffu, PROTO_MAX_PAYLOAD + 1u, 0x80000000u };
        uint8_t buf[PROTO_HEADER_SIZE];
        struct transport t;
        struct transport_frame f;
        int sv[2];

        for (unsigned i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
                rx_new(sv, &t);
                hdr_put(buf, PROTO_VERSION, PROTO_OP_CREATE, 1, lengths[i], 0);
                raw_send(sv[0], buf, sizeof(buf), NULL, 0);
                ck_assert_int_eq(pump(&t, &f), -EMSGSIZE);
                ck_assert_ptr_null(f.payload);
                rx_close(sv, &t);
        }
}
END_TEST

/* F2: too many fds declared */
START_TEST(test_f2_too_many_nfds)
{
        uint8_t buf[PROTO_HEADER_SIZE];
        struct transport t;
        struct transport_frame f;
        int sv[2];

        rx_new(sv, &t);
        hdr_put(buf, PROTO_VERSION, PROTO_OP_CREATE, 1, 0, PROTO_MAX_FDS + 1);
        raw_send(sv[0], buf, sizeof(buf), NULL, 0);
        ck_assert_int_eq(pump(&t, &f), -EMSGSIZE);
        rx_close(sv, &t);
}
END_TEST

/* F3: lengths for which header + payload wraps around in 32 bits */
START_TEST(test_f3_wrapping_length)
{
        static const uint32_t lengths[] = {
                UINT32_MAX - PROTO_HEADER_SIZE + 1u, /* header + length == 2^32 == 0 */
                UINT32_MAX - PROTO_HEADER_SIZE + 2u, /* == 1 */
                UINT32_MAX - PROTO_HEADER_SIZE + 20u,
        };
        uint8_t buf[PROTO_HEADER_SIZE + 32];
        struct transport t;
        struct transport_frame f;
        int sv[2];

        for (unsigned i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
                rx_new(sv, &t);
                hdr_put(buf, PROTO_VERSION, PROTO_OP_CREATE, 1, lengths[i], 0);
                memset(buf + PROTO_HEADER_SIZE, 0, 32); /* what a wrapped size might "cover" */
                raw_send(sv[0], buf, sizeof(buf), NULL, 0);
                ck_assert_int_eq(pump(&t, &f), -EMSGSIZE);
                rx_close(sv, &t);
        }
}
END_TEST

/* F5: unknown opcode or version with a sane header is handed to the caller */
START_TEST(test_f5_unknown_opcode_version)
{
        uint8_t buf[2 * PROTO_HEADER_SIZE + 8];
        struct transport t;
        struct transport_frame f;
        size_t len;
        int sv[2];

        rx_new(sv, &t);
        len = frame_put(buf, 0x7777, 3, 8, 0);
        len += hdr_put(buf + len, PROTO_VERSION + 41, PROTO_OP_HELLO, 4, 0, 0);
        raw_send(sv[0], buf, len, NULL, 0);

        ck_assert_int_eq(pump(&t, &f), 1);
        ck_assert_uint_eq(f.hdr.opcode, 0x7777);
        payload_check(&f, 3, 8);
        transport_frame_deinit(&f);
        ck_assert_int_eq(pump(&t, &f), 1);
        ck_assert_uint_eq(f.hdr.version, PROTO_VERSION + 41);
        ck_assert_uint_eq(f.hdr.id, 4);
        transport_frame_deinit(&f);
        ck_assert_int_eq(pump(&t, &f), 0);

        rx_close(sv, &t);
}
END_TEST

/* F2 with an unknown version: the size limit holds whatever the version */
START_TEST(test_f2_unknown_version_huge_length)
{
        uint8_t buf[PROTO_HEADER_SIZE];
        struct transport t;
        struct transport_frame f;
        int sv[2];

        rx_new(sv, &t);
        hdr_put(buf, PROTO_VERSION + 1, PROTO_OP_HELLO, 1, 0xffffffffu, 0);
        raw_send(sv[0], buf, sizeof(buf), NULL, 0);
        ck_assert_int_eq(pump(&t, &f), -EMSGSIZE);
        rx_close(sv, &t);
}
END_TEST

/* ---- fd attacks ---- */

/* D1: fds attached to a frame that declares none */
START_TEST(test_d1_undeclared_fds)
{
        uint8_t buf[PROTO_HEADER_SIZE + 16];
        struct transport t;
        struct transport_frame f;
        int sv[2];

        rx_new(sv, &t);
        raw_send_new_fds(sv[0], buf, frame_put(buf, PROTO_OP_PING, 1, 16, 0), 1);
        ck_assert_int_eq(pump(&t, &f), -EPROTO);
        ck_assert_uint_eq(t.in_fds, 0); /* closed at once, not left for deinit */
        ck_assert_uint_eq(f.nfds, 0);
        rx_close(sv, &t);
}
END_TEST

/* D2: fewer fds than declared (one of two, and none of one) */
START_TEST(test_d2_missing_fds)
{
        uint8_t buf[PROTO_HEADER_SIZE + 16];
        struct transport t;
        struct transport_frame f;
        int sv[2];

        rx_new(sv, &t);
        raw_send_new_fds(sv[0], buf, frame_put(buf, PROTO_OP_OPEN, 1, 16, 2), 1);
        ck_assert_int_eq(pump(&t, &f), -EPROTO);
        ck_assert_uint_eq(t.in_fds, 0);
        rx_close(sv, &t);

        rx_new(sv, &t);
        raw_send(sv[0], buf, frame_put(buf, PROTO_OP_OPEN, 1, 16, 1), NULL, 0);
        ck_assert_int_eq(pump(&t, &f), -EPROTO);
        rx_close(sv, &t);
}
END_TEST

/* D3: more fds than declared, in one go or piled up over several writes of an unfinished frame */
START_TEST(test_d3_extra_fds)
{
        uint8_t buf[PROTO_HEADER_SIZE + 100];
        struct transport t;
        struct transport_frame f;
        int sv[2];

        /* whole frame with 3 fds declaring 1 */
        rx_new(sv, &t);
        raw_send_new_fds(sv[0], buf, frame_put(buf, PROTO_OP_OPEN, 1, 100, 1), 3);
        ck_assert_int_eq(pump(&t, &f), -EPROTO);
        ck_assert_uint_eq(t.in_fds, 0);
        rx_close(sv, &t);

        /* the frame is never finished: the extras are caught before it completes */
        rx_new(sv, &t);
        frame_put(buf, PROTO_OP_OPEN, 1, 100, 1);
        raw_send_new_fds(sv[0], buf, PROTO_HEADER_SIZE + 10, 1);
        ck_assert_int_eq(pump(&t, &f), 0);
        raw_send_new_fds(sv[0], buf + PROTO_HEADER_SIZE + 10, 1, 1);
        ck_assert_int_eq(pump(&t, &f), -EPROTO);
        ck_assert_uint_eq(t.in_fds, 0);
        rx_close(sv, &t);

        /* before the header is even complete: at most one frame's worth */
        rx_new(sv, &t);
        raw_send_new_fds(sv[0], buf, 3, PROTO_MAX_FDS);
        ck_assert_int_eq(pump(&t, &f), 0);
        raw_send_new_fds(sv[0], buf + 3, 3, 1);
        ck_assert_int_eq(pump(&t, &f), -EPROTO);
        ck_assert_uint_eq(t.in_fds, 0);
        rx_close(sv, &t);
}
END_TEST

/* A reader that does not parse between reads cannot be made to hoard fds. */
START_TEST(test_d3_held_fds_cap)
{
        uint8_t byte = 0;
        struct transport t;
        int sv[2];
        int r = 0;

        rx_new(sv, &t);
        for (unsigned i = 0; i <= TRANSPORT_MAX_HELD_FDS / PROTO_MAX_FDS; i++) {
                raw_send_new_fds(sv[0], &byte, 1, PROTO_MAX_FDS);
                r = transport_read(&t);
                if (r < 0)
                        break;
                ck_assert_uint_le(t.in_fds, TRANSPORT_MAX_HELD_FDS);
        }
        ck_assert_int_eq(r, -EPROTO);
        ck_assert_uint_eq(t.in_fds, 0);
        rx_close(sv, &t);
}
END_TEST

/* D4: fds sent with frame N's bytes but declared by frame N+1 */
START_TEST(test_d4_fd_on_previous_frame)
{
        uint8_t n0[PROTO_HEADER_SIZE + 8], n1[PROTO_HEADER_SIZE + 8];
        struct transport t;
        struct transport_frame f;
        int sv[2];

        rx_new(sv, &t);
        raw_send_new_fds(sv[0], n0, frame_put(n0, PROTO_OP_PING, 1, 8, 0), 1);
        raw_send(sv[0], n1, frame_put(n1, PROTO_OP_OPEN, 2, 8, 1), NULL, 0);
        ck_assert_int_eq(pump(&t, &f), -EPROTO);
        ck_assert_uint_eq(t.in_fds, 0);
        rx_close(sv, &t);

        /* same, with frame N+1 already buffered when frame N is parsed */
        rx_new(sv, &t);
        raw_send_new_fds(sv[0], n0, sizeof(n0), 1);
        raw_send(sv[0], n1, sizeof(n1), NULL, 0);
        ck_assert_int_gt(transport_read(&t), 0);
        ck_assert_int_gt(transport_read(&t), 0);
        ck_assert_int_eq(transport_next_frame(&t, &f), -EPROTO);
        rx_close(sv, &t);
}
END_TEST

/* D5: two SCM_RIGHTS blocks in one sendmsg: -EPROTO or correct attribution, never a leak */
START_TEST(test_d5_two_scm_rights)
{
        uint8_t buf[PROTO_HEADER_SIZE + 8];
        int fds[2], orig[2];
        struct transport t;
        struct transport_frame f;
        ssize_t n;
        int sv[2], r;

        rx_new(sv, &t);
        for (unsigned k = 0; k < 2; k++) {
                fds[k] = memfd_new();
                orig[k] = fcntl(fds[k], F_DUPFD_CLOEXEC, 0);
        }
        frame_put(buf, PROTO_OP_OPEN, 1, 8, 2);
        n = fdutil_sendmsg(sv[0], buf, sizeof(buf), fds, 1, 2, MSG_NOSIGNAL);
        fds_close(fds, 2);
        if (n < 0) {
                /* the kernel refused the message itself: nothing to receive */
                ck_assert_int_eq(pump(&t, &f), 0);
        } else {
                r = pump(&t, &f);
                if (r == 1) {
                        ck_assert_uint_eq(f.nfds, 2);
                        ck_assert(test_same_file(f.fds[0], orig[0]));
                        ck_assert(test_same_file(f.fds[1], orig[1]));
                        transport_frame_deinit(&f);
                } else {
                        ck_assert_int_eq(r, -EPROTO);
                        ck_assert_uint_eq(t.in_fds, 0);
                }
        }
        fds_close(orig, 2);
        rx_close(sv, &t);
}
END_TEST

/* D5: more than PROTO_MAX_FDS fds in one message overflow the control buffer: -EPROTO, all closed */
START_TEST(test_d5_too_many_fds)
{
        static const unsigned counts[] = { PROTO_MAX_FDS + 1, 2 * PROTO_MAX_FDS, 64, 253 };
        uint8_t buf[PROTO_HEADER_SIZE + 8];
        struct transport t;
        struct transport_frame f;
        int sv[2];

        for (unsigned i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
                rx_new(sv, &t);
                raw_send_new_fds(sv[0], buf, frame_put(buf, PROTO_OP_OPEN, 1, 8, PROTO_MAX_FDS), counts[i]);
                ck_assert_int_eq(transport_read(&t), -EPROTO);
                ck_assert_uint_eq(t.in_fds, 0);
                ck_assert_int_eq(pump(&t, &f), 0); /* the bytes of a violating read are not kept */
                rx_close(sv, &t);
        }
}
END_TEST

/* D6: received fds cannot be installed (RLIMIT_NOFILE): MSG_CTRUNC => -EPROTO, the process goes on */
/* (valgrind fakes RLIMIT_NOFILE instead of lowering it, so this one needs a real run) */
START_TEST(test_d6_ctrunc_rlimit)
{
        pid_t pid;
        int status;

        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                uint8_t buf[PROTO_HEADER_SIZE + 8];
                struct rlimit saved, low;
                struct transport t;
                struct transport_frame f;
                int sv[2], fds[2], before, after, lowest, r;

                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                        _exit(2);
                if (transport_init(&t, sv[1], 0, 0) < 0)
                        _exit(3);
                before = fdutil_count(0);
                fds[0] = memfd_create("d6", MFD_CLOEXEC);
                fds[1] = memfd_create("d6", MFD_CLOEXEC);
                frame_put(buf, PROTO_OP_OPEN, 1, 8, 2);
                if (fds[0] < 0 || fds[1] < 0 ||
                    fdutil_sendmsg(sv[0], buf, sizeof(buf), fds, 2, 1, MSG_NOSIGNAL) != sizeof(buf))
                        _exit(4);
                close(fds[0]);
                close(fds[1]);

                /* no free fd number below the limit: the kernel cannot install what arrives */
                lowest = fcntl(0, F_DUPFD_CLOEXEC, 0);
                if (lowest < 0)
                        _exit(5);
                close(lowest);
                if (getrlimit(RLIMIT_NOFILE, &saved) < 0)
                        _exit(6);
                low = saved;
                low.rlim_cur = (rlim_t)lowest;
                if (setrlimit(RLIMIT_NOFILE, &low) < 0)
                        _exit(7);
                r = transport_read(&t);
                if (setrlimit(RLIMIT_NOFILE, &saved) < 0)
                        _exit(8);
                if (r != -EPROTO)
                        _exit(9);
                if (transport_next_frame(&t, &f) != 0 || t.in_fds != 0)
                        _exit(10);
                after = fdutil_count(0);
                if (after != before)
                        _exit(11);
                transport_deinit(&t);
                close(sv[0]);
                close(sv[1]);
                _exit(0);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status), "child died (signal %d)", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

/* One malformed session of kind @kind over a fresh socketpair. */
static void malformed_session(unsigned kind)
{
        uint8_t buf[2 * PROTO_HEADER_SIZE + 64];
        struct transport t;
        struct transport_frame f;
        int sv[2], r;
        size_t len;

        rx_new(sv, &t);
        switch (kind) {
        case 0: /* D1 */
                raw_send_new_fds(sv[0], buf, frame_put(buf, PROTO_OP_PING, 1, 8, 0), 2);
                break;
        case 1: /* D3 */
                raw_send_new_fds(sv[0], buf, frame_put(buf, PROTO_OP_OPEN, 1, 8, 1), 3);
                break;
        case 2: /* D4 */
                raw_send_new_fds(sv[0], buf, frame_put(buf, PROTO_OP_PING, 1, 8, 0), 1);
                raw_send(sv[0], buf, frame_put(buf, PROTO_OP_OPEN, 2, 8, 1), NULL, 0);
                break;
        case 3: /* D5 */
                raw_send_new_fds(sv[0], buf, frame_put(buf, PROTO_OP_OPEN, 1, 8, 4), PROTO_MAX_FDS + 2);
                break;
        case 4: /* F2 with fds */
                len = hdr_put(buf, PROTO_VERSION, PROTO_OP_CREATE, 1, 0xffffffffu, 1);
                raw_send_new_fds(sv[0], buf, len, 1);
                break;
        case 5: /* EOF mid-frame, holding fds */
                frame_put(buf, PROTO_OP_OPEN, 1, 64, 2);
                raw_send_new_fds(sv[0], buf, PROTO_HEADER_SIZE + 3, 2);
                shutdown(sv[0], SHUT_WR);
                break;
        default: /* F1 with an fd */
                memset(buf, 0xee, PROTO_HEADER_SIZE);
                raw_send_new_fds(sv[0], buf, PROTO_HEADER_SIZE, 1);
                break;
        }
        r = pump(&t, &f);
        ck_assert_int_lt(r, 0);
        rx_close(sv, &t);
}

/* Collect the fds of this process that an exec'd child would inherit. */
static unsigned inheritable_fds(int *out, unsigned max)
{
        unsigned n = 0;

        for (int fd = 0; fd < 1024 && n < max; fd++) {
                int flags = fcntl(fd, F_GETFD);

                if (flags >= 0 && !(flags & FD_CLOEXEC))
                        out[n++] = fd;
        }
        return n;
}

static bool fd_in(int fd, const int *set, unsigned n)
{
        for (unsigned i = 0; i < n; i++)
                if (set[i] == fd)
                        return true;
        return false;
}

/* D9: after 10,000 malformed sessions, and while holding received fds, an exec'd child inherits none */
START_TEST(test_d9_cloexec_after_malformed_sessions)
{
        uint8_t buf[PROTO_HEADER_SIZE + 8];
        int harness[64], seen[256];
        unsigned nharness, nseen = 0, extra = 0;
        struct transport t;
        struct transport_frame f;
        char out[4096];
        size_t outlen = 0;
        int sv[2], pipefd[2], status;
        pid_t pid;

        /* the test harness's own inheritable fds (stdio, Check's) are not under test */
        nharness = inheritable_fds(harness, 64);

        for (unsigned i = 0; i < 10000; i++)
                malformed_session(i % 7);

        /* hold fds received in a frame and fds still waiting for theirs */
        rx_new(sv, &t);
        raw_send_new_fds(sv[0], buf, frame_put(buf, PROTO_OP_OPEN, 1, 8, PROTO_MAX_FDS), PROTO_MAX_FDS);
        ck_assert_int_eq(pump(&t, &f), 1);
        raw_send_new_fds(sv[0], buf, 5, 2);
        ck_assert_int_gt(transport_read(&t), 0);
        ck_assert_uint_eq(t.in_fds, 2);
        for (unsigned k = 0; k < f.nfds; k++)
                ck_assert(is_cloexec(f.fds[k]));

        ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                if (dup2(pipefd[1], 1) < 0)
                        _exit(126);
                execl("/bin/sh", "sh", "-c", "ls /proc/self/fd", (char *)NULL);
                _exit(127);
        }
        close(pipefd[1]);
        for (;;) {
                ssize_t n = read(pipefd[0], out + outlen, sizeof(out) - 1 - outlen);

                if (n < 0 && errno == EINTR)
                        continue;
                ck_assert_int_ge(n, 0);
                if (n == 0)
                        break;
                outlen += (size_t)n;
        }
        out[outlen] = 0;
        close(pipefd[0]);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        for (char *s = strtok(out, " \n"); s && nseen < 256; s = strtok(NULL, " \n"))
                seen[nseen++] = atoi(s);
        ck_assert_uint_ge(nseen, 3);
        for (unsigned i = 0; i < nseen; i++) {
                if (seen[i] <= 2 || fd_in(seen[i], harness, nharness))
                        continue;
                extra++;
        }
        /* the only fd beyond stdio and the harness's is the one ls reads /proc/self/fd with */
        ck_assert_msg(extra <= 1, "the exec'd child holds %u unexpected fds: %s", extra, out);

        transport_frame_deinit(&f);
        rx_close(sv, &t);
}
END_TEST

/* ---- output side ---- */

/* F8/D10: the output queue is bounded in bytes and in fds; a refused frame's fds are closed */
START_TEST(test_f8_queue_bounds)
{
        struct proto_header h = { .opcode = PROTO_OP_STAT };
        uint8_t payload[100] = { 0 };
        struct transport t;
        int sv[2], fds[PROTO_MAX_FDS + 1];
        unsigned queued = 0;

        pair_new(sv);
        ck_assert_int_eq(transport_init(&t, sv[0], 1000, 3), 0);
        while (transport_queue(&t, &h, payload, sizeof(payload), NULL, 0) == 0)
                queued++;
        ck_assert_uint_eq(queued, 1000 / (PROTO_HEADER_SIZE + sizeof(payload)));
        ck_assert_uint_le(t.out_bytes, 1000);
        transport_deinit(&t);

        ck_assert_int_eq(transport_init(&t, sv[0], 0, 3), 0);
        fds[0] = memfd_new();
        fds[1] = memfd_new();
        ck_assert_int_eq(transport_queue(&t, &h, NULL, 0, fds, 2), 0);
        fds[0] = memfd_new();
        fds[1] = memfd_new();
        ck_assert_int_eq(transport_queue(&t, &h, NULL, 0, fds, 2), -ENOBUFS);
        ck_assert_uint_eq(t.out_fds, 2);
        /* protocol limits */
        ck_assert_int_eq(transport_queue(&t, &h, NULL, PROTO_MAX_PAYLOAD + 1, NULL, 0), -EMSGSIZE);
        for (unsigned k = 0; k < PROTO_MAX_FDS + 1; k++)
                fds[k] = memfd_new();
        ck_assert_int_eq(transport_queue(&t, &h, NULL, 0, fds, PROTO_MAX_FDS + 1), -EMSGSIZE);
        fds[0] = -1;
        ck_assert_int_eq(transport_queue(&t, &h, NULL, 0, fds, 1), -EBADF);
        ck_assert_int_eq(transport_queue(&t, &h, NULL, 0, NULL, 1), -EINVAL);
        transport_deinit(&t); /* closes the 2 queued fds: the fixture checks */
        pair_close(sv);
}
END_TEST

/* F8: a peer that never reads: flushing stalls, queueing hits the bound */
START_TEST(test_f8_peer_never_reads)
{
        struct proto_header h = { .opcode = PROTO_OP_STAT };
        uint8_t *payload = calloc(1, 4096);
        struct transport t;
        bool stalled = false;
        int sv[2], r = 0;

        ck_assert_ptr_nonnull(payload);
        pair_new(sv);
        ck_assert_int_eq(transport_init(&t, sv[0], 0, 0), 0);
        for (unsigned i = 0; i < 100000; i++) {
                r = transport_queue(&t, &h, payload, 4096, NULL, 0);
                if (r < 0)
                        break;
                r = transport_flush(&t);
                if (r == -EAGAIN)
                        stalled = true;
                else
                        ck_assert_int_eq(r, 0);
        }
        ck_assert_int_eq(r, -ENOBUFS);
        ck_assert(stalled);
        ck_assert_uint_le(t.out_bytes, TRANSPORT_DEFAULT_MAX_OUT_BYTES);
        transport_deinit(&t);
        /* the socket is full too: nothing can be sent within a zero timeout while the peer does not read */
        ck_assert_int_eq(transport_init(&t, sv[0], 0, 0), 0);
        ck_assert_int_eq(transport_send_blocking(&t, &h, payload, 16, NULL, 0, 0), -ETIMEDOUT);
        rx_close(sv, &t);
        free(payload);
}
END_TEST

/* Partial writes: small socket buffers, a large frame with an fd, then more frames. */
enum { PARTIAL_MAX = 8 };

/* @N frames of @lengths and @nfds through 4 KiB socket buffers: many partial writes. */
static void partial_writes_of(bool in_order, unsigned N, const uint32_t *lengths, const unsigned *nfds)
{
        int orig[PARTIAL_MAX][PROTO_MAX_FDS];
        struct transport a, b;
        struct transport_frame f;
        uint8_t *payload = malloc(PROTO_MAX_PAYLOAD);
        int small = 4096, sv[2], r;
        unsigned got = 0, eagain = 0, rounds = 0;

        ck_assert_uint_le(N, PARTIAL_MAX);
        ck_assert_ptr_nonnull(payload);
        pair_new(sv);
        ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
        ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
        ck_assert_int_eq(transport_init(&a, sv[0], 0, 0), 0);
        ck_assert_int_eq(transport_init(&b, sv[1], 0, 0), 0);
        a.out_fds_in_order = in_order;
        b.in_fds_in_order = in_order;
        for (unsigned i = 0; i < N; i++) {
                struct proto_header h = { .opcode = PROTO_OP_CREATE, .id = i };
                int fds[PROTO_MAX_FDS];

                for (uint32_t k = 0; k < lengths[i]; k++)
                        payload[k] = (uint8_t)(i * 31u + k);
                for (unsigned k = 0; k < nfds[i]; k++) {
                        fds[k] = memfd_new();
                        orig[i][k] = fcntl(fds[k], F_DUPFD_CLOEXEC, 0);
                }
                ck_assert_int_eq(transport_queue(&a, &h, payload, lengths[i], fds, nfds[i]), 0);
        }

        while (got < N) {
                ck_assert_uint_lt(rounds++, 1000000);
                r = transport_flush(&a);
                if (r == -EAGAIN)
                        eagain++;
                else
                        ck_assert_int_eq(r, 0);
                for (;;) {
                        r = pump(&b, &f);
                        if (r == 0)
                                break;
                        ck_assert_int_eq(r, 1);
                        ck_assert_uint_eq(f.hdr.id, got);
                        payload_check(&f, got, lengths[got]);
                        ck_assert_uint_eq(f.nfds, nfds[got]);
                        for (unsigned k = 0; k < f.nfds; k++)
                                ck_assert(test_same_file(f.fds[k], orig[got][k]));
                        transport_frame_deinit(&f);
                        fds_close(orig[got], nfds[got]);
                        got++;
                }
        }
        ck_assert_uint_gt(eagain, 0); /* the buffers really were too small for one sendmsg */
        ck_assert(!transport_has_output(&a));
        ck_assert_uint_eq(a.out_fds, 0);

        tpair_close(sv, &a, &b);
        free(payload);
}

static void partial_writes(bool in_order)
{
        static const uint32_t lengths[] = { PROTO_MAX_PAYLOAD, 300, PROTO_MAX_PAYLOAD - 1, 0 };
        static const unsigned nfds[] = { 1, 0, 2, 1 };

        partial_writes_of(in_order, 4, lengths, nfds);
}

START_TEST(test_partial_writes)
{
        partial_writes(false);
}
END_TEST

/* The same in order (FDS_IN_ORDER): a partial sendmsg() took the fds of frames whose bytes had not gone yet. */
START_TEST(test_partial_writes_in_order)
{
        partial_writes(true);
}
END_TEST

/*
 * In order, after a partial write that took fds ahead of their frames, the next calls carry only bytes until
 * those frames are written: the reader never holds more than one call's fds (PROTO_MAX_FDS) beyond its complete
 * frames, which it checks. Without that, the second call's fds would come with the rest of the first frame.
 */
START_TEST(test_partial_writes_in_order_fds_bound)
{
        static const uint32_t lengths[] = { PROTO_MAX_PAYLOAD, 8, 8, PROTO_MAX_PAYLOAD, 8, 16, 0 };
        static const unsigned nfds[] = { 0, 4, 4, 0, 3, 1, 4 };

        partial_writes_of(true, 7, lengths, nfds);
}
END_TEST

/*
 * transport_init_storage(): the first reads land in the caller's storage and the first fds in its batch; a frame
 * that does not fit moves the input to a buffer of the transport's own (the bytes kept), fds of two reads held at
 * once take the spare batch and an allocated one, and deinit frees neither piece of the storage (an ASan build
 * would report a free of it). Used again after deinit, as a client does when it reconnects.
 */
START_TEST(test_storage)
{
        const uint32_t lengths[] = { 8, 32, TRANSPORT_STORAGE_IN, 3000, 8 };
        const unsigned n = sizeof(lengths) / sizeof(lengths[0]);
        struct transport_storage storage;
        uint8_t *buf = malloc(PROTO_HEADER_SIZE + 3000);
        struct transport t;
        struct transport_frame f;
        struct stat st[5], got;
        int sv[2], fds[5];

        ck_assert_ptr_nonnull(buf);
        for (int round = 0; round < 2; round++) {
                unsigned next = 0;

                pair_new(sv);
                for (unsigned i = 0; i < n; i++) {
                        fds[i] = memfd_new();
                        ck_assert_int_eq(fstat(fds[i], &st[i]), 0);
                }
                ck_assert_int_eq(transport_init_storage(&t, sv[1], 0, 0, &storage), 0);
                ck_assert_ptr_eq(t.in, storage.in);
                /* two small frames, each with its fd, read before either is parsed: two batches held */
                raw_send(sv[0], buf, frame_put(buf, PROTO_OP_PING, 1, lengths[0], 1), &fds[0], 1);
                ck_assert_int_gt(transport_read(&t), 0);
                raw_send(sv[0], buf, frame_put(buf, PROTO_OP_PING, 2, lengths[1], 1), &fds[1], 1);
                ck_assert_int_gt(transport_read(&t), 0);
                ck_assert_ptr_eq(t.in, storage.in);
                ck_assert_ptr_eq(t.batches, &storage.batch);
                ck_assert_ptr_nonnull(t.batches->next);
                for (unsigned i = 2; i < n; i++)
                        raw_send(sv[0], buf, frame_put(buf, PROTO_OP_PING, i + 1, lengths[i], 1), &fds[i], 1);
                fds_close(fds, n);
                while (next < n) {
                        int r;

                        while (next < n && (r = transport_next_frame_borrowed(&t, &f)) == 1) {
                                ck_assert_uint_eq(f.hdr.id, next + 1);
                                payload_check(&f, next + 1, lengths[next]);
                                ck_assert_uint_eq(f.nfds, 1);
                                ck_assert_int_eq(fstat(f.fds[0], &got), 0);
                                ck_assert_uint_eq(got.st_ino, st[next].st_ino);
                                transport_frame_deinit(&f);
                                next++;
                        }
                        ck_assert_int_ge(r, 0);
                        if (next < n)
                                ck_assert_int_gt(transport_read(&t), 0);
                }
                ck_assert_ptr_ne(t.in, storage.in); /* the 3000-byte frame did not fit */
                ck_assert_ptr_eq(t.spare, &storage.batch);
                ck_assert_int_eq(transport_read(&t), -EAGAIN);
                rx_close(sv, &t);
        }
        free(buf);
}
END_TEST

/* Return: true if the frame @o (a queued struct transport_out) lies in @storage. */
static bool in_out_storage(const void *o, const struct transport_out_storage *storage)
{
        uintptr_t p = (uintptr_t)o, start = (uintptr_t)storage->bytes;

        return p >= start && p < start + sizeof(storage->bytes);
}

/*
 * transport_use_out_storage(): small frames are built in the caller's storage and a large one is allocated, in one
 * queue whose order, partial writes and fds are what they are without it. The storage is used again from its start
 * only once the queue is empty: a frame queued while one cut by a partial write (and the small ones behind it)
 * still wait must not be built over those. Deinit frees none of it (an ASan build would report that).
 */
static void out_storage(bool in_order)
{
        /* frames 0 and 2 in the storage, 1 too large for it, 3 (borrowed fds) behind 2, 4 once the queue drained */
        static const uint32_t lengths[] = { 0, PROTO_MAX_PAYLOAD, 0, 24, 8 };
        static const unsigned nfds[] = { 1, 0, 1, 2, 1 };
        enum { N = 5 };
        struct transport_out_storage storage;
        int orig[N][PROTO_MAX_FDS];
        struct transport a, b;
        struct transport_frame f;
        uint8_t *payload = malloc(PROTO_MAX_PAYLOAD);
        int small = 4096, sv[2], r;
        unsigned got = 0, rounds = 0;

        ck_assert_ptr_nonnull(payload);
        pair_new(sv);
        ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
        ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
        ck_assert_int_eq(transport_init(&a, sv[0], 0, 0), 0);
        ck_assert_int_eq(transport_init(&b, sv[1], 0, 0), 0);
        transport_use_out_storage(&a, &storage);
        a.out_fds_in_order = in_order;
        b.in_fds_in_order = in_order;
        for (unsigned i = 0; i < N; i++) {
                struct proto_header h = { .opcode = PROTO_OP_OPEN, .id = i, .flags = PROTO_FLAG_REPLY };
                int fds[PROTO_MAX_FDS];

                for (uint32_t k = 0; k < lengths[i]; k++)
                        payload[k] = (uint8_t)(i * 31u + k);
                for (unsigned k = 0; k < nfds[i]; k++) {
                        fds[k] = memfd_new();
                        orig[i][k] = fcntl(fds[k], F_DUPFD_CLOEXEC, 0);
                        ck_assert_int_ge(orig[i][k], 0);
                }
                if (i == 3) {
                        /* as iomemd lends a region's fd: borrowed, then copied since the frame waits */
                        ck_assert_int_eq(transport_queue_with_fds(&a, &h, payload, lengths[i], fds, nfds[i]), 0);
                        ck_assert_int_eq(transport_own_fds(&a), 0);
                        fds_close(fds, nfds[i]);
                } else {
                        ck_assert_int_eq(transport_queue(&a, &h, payload, lengths[i], fds, nfds[i]), 0);
                }
                if (i == 0)
                        ck_assert_ptr_eq((void *)a.out_head, (void *)storage.bytes);
                if (i == 1)
                        ck_assert(!in_out_storage(a.out_tail, &storage));
                if (i == 2) {
                        ck_assert(in_out_storage(a.out_tail, &storage));
                        /* frame 0 and a part of 1 go; the rest of 1, and 2, wait */
                        ck_assert_int_eq(transport_flush(&a), -EAGAIN);
                        ck_assert(!in_out_storage(a.out_head, &storage));
                }
                if (i == 3) /* behind frame 2, not over it: the queue did not empty */
                        ck_assert(in_out_storage(a.out_tail, &storage) && (void *)a.out_tail != (void *)storage.bytes);
                if (i == 4) {
                        /* the queue emptied: its storage is used from the start again */
                        ck_assert_ptr_eq((void *)a.out_head, (void *)storage.bytes);
                }
                while (got < (i == 3 ? 4u : i == 4 ? 5u : 0u)) {
                        ck_assert_uint_lt(rounds++, 1000000);
                        r = transport_flush(&a);
                        if (r != -EAGAIN)
                                ck_assert_int_eq(r, 0);
                        while ((r = pump(&b, &f)) != 0) {
                                ck_assert_int_eq(r, 1);
                                ck_assert_uint_eq(f.hdr.id, got);
                                payload_check(&f, got, lengths[got]);
                                ck_assert_uint_eq(f.nfds, nfds[got]);
                                for (unsigned k = 0; k < f.nfds; k++)
                                        ck_assert(test_same_file(f.fds[k], orig[got][k]));
                                transport_frame_deinit(&f);
                                fds_close(orig[got], nfds[got]);
                                got++;
                        }
                }
        }
        ck_assert_uint_eq(got, N);
        ck_assert(!transport_has_output(&a));
        ck_assert_uint_eq(a.out_fds, 0);
        /* queued and never sent: deinit closes its fd and leaves the storage alone */
        {
                struct proto_header h = { .opcode = PROTO_OP_OPEN, .flags = PROTO_FLAG_REPLY };
                int fd = memfd_new();

                ck_assert_int_eq(transport_queue(&a, &h, NULL, 0, &fd, 1), 0);
                ck_assert_ptr_eq((void *)a.out_head, (void *)storage.bytes);
        }
        tpair_close(sv, &a, &b);
        free(payload);
}

/*
 * transport_use_out_storage() under a random mix of what iomemd does: frames of every size (some fitting the
 * storage, some not), with own or borrowed fds (made own while they wait), flushes cut by a small socket buffer and
 * by fd budgets, the queue draining and refilling at random points. Whatever the storage holds, the peer must get
 * every frame intact, in order, with its own fds: a frame built over one still queued (or partly sent) would show
 * as a wrong payload or a wrong fd here, and as a use of poisoned memory in an ASan build.
 */
static void out_storage_random(bool in_order, uint32_t seed)
{
        enum { FRAMES = 1500, MAX_WAIT = 48 };
        struct expect {
                uint32_t len;
                unsigned nfds;
                int orig[3];
        };
        struct expect *want = calloc(FRAMES, sizeof(*want));
        struct transport_out_storage *storage = malloc(sizeof(*storage));
        uint8_t *payload = malloc(8192);
        struct transport a, b;
        struct transport_frame f;
        unsigned queued = 0, got = 0, rounds = 0;
        uint32_t x = seed;
        int small = 4096, sv[2], r;

        ck_assert_ptr_nonnull(want);
        ck_assert_ptr_nonnull(storage);
        ck_assert_ptr_nonnull(payload);
        pair_new(sv);
        ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
        ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
        ck_assert_int_eq(transport_init(&a, sv[0], 0, 0), 0);
        ck_assert_int_eq(transport_init(&b, sv[1], 0, 0), 0);
        transport_use_out_storage(&a, storage);
        a.out_fds_in_order = in_order;
        b.in_fds_in_order = in_order;
#define NEXT() (x ^= x << 13, x ^= x >> 17, x ^= x << 5, x)
        while (got < FRAMES) {
                unsigned action = NEXT() % 8;

                ck_assert_uint_lt(rounds++, 10000000);
                if (action < 4 && queued < FRAMES && queued - got < MAX_WAIT) {
                        static const uint32_t sizes[] = { 0, 8, 24, 40, 64, 100, 150, 200, 1000, 5000 };
                        struct proto_header h = { .opcode = PROTO_OP_OPEN, .id = queued, .flags = PROTO_FLAG_REPLY };
                        struct expect *e = &want[queued];
                        bool borrowed = NEXT() % 3 == 0;
                        int fds[3];

                        e->len = sizes[NEXT() % (sizeof(sizes) / sizeof(sizes[0]))];
                        e->nfds = NEXT() % 4 == 0 ? 1 + NEXT() % 3 : 0;
                        for (uint32_t k = 0; k < e->len; k++)
                                payload[k] = (uint8_t)(queued * 31u + k);
                        for (unsigned k = 0; k < e->nfds; k++) {
                                fds[k] = memfd_new();
                                e->orig[k] = fcntl(fds[k], F_DUPFD_CLOEXEC, 0);
                                ck_assert_int_ge(e->orig[k], 0);
                        }
                        if (borrowed && e->nfds > 0) {
                                ck_assert_int_eq(transport_queue_with_fds(&a, &h, payload, e->len, fds, e->nfds), 0);
                                /* as iomemd: one try to send at once, then the frame's fds become its own */
                                r = transport_flush(&a);
                                ck_assert(r == 0 || r == -EAGAIN);
                                ck_assert_int_eq(transport_own_fds(&a), 0);
                                fds_close(fds, e->nfds);
                        } else {
                                ck_assert_int_eq(transport_queue(&a, &h, payload, e->len, fds, e->nfds), 0);
                        }
                        /* scribble over the caller's payload: the queued copy must not change */
                        memset(payload, 0xa5, e->len);
                        queued++;
                } else if (action < 6) {
                        unsigned budget = NEXT() % 3 == 0 ? NEXT() % 4 : UINT_MAX;

                        r = transport_flush_fds(&a, &budget);
                        ck_assert_msg(r == 0 || r == -EAGAIN || r == -EDQUOT, "flush: %d", r);
                } else {
                        while ((r = pump(&b, &f)) != 0) {
                                struct expect *e = &want[got];

                                ck_assert_int_eq(r, 1);
                                ck_assert_uint_lt(got, queued);
                                ck_assert_uint_eq(f.hdr.id, got);
                                payload_check(&f, got, e->len);
                                ck_assert_uint_eq(f.nfds, e->nfds);
                                for (unsigned k = 0; k < f.nfds; k++)
                                        ck_assert(test_same_file(f.fds[k], e->orig[k]));
                                transport_frame_deinit(&f);
                                fds_close(e->orig, e->nfds);
                                got++;
                        }
                }
        }
#undef NEXT
        ck_assert(!transport_has_output(&a));
        ck_assert_uint_eq(a.out_fds, 0);
        ck_assert_uint_eq(a.out_bytes, 0);
        tpair_close(sv, &a, &b);
        free(payload);
        free(storage);
        free(want);
}

START_TEST(test_out_storage_random)
{
        for (uint32_t seed = 1; seed <= 3; seed++)
                out_storage_random(false, seed * 2654435761u);
}
END_TEST

START_TEST(test_out_storage_random_in_order)
{
        for (uint32_t seed = 1; seed <= 3; seed++)
                out_storage_random(true, seed * 2654435761u);
}
END_TEST

START_TEST(test_out_storage)
{
        out_storage(false);
}
END_TEST

START_TEST(test_out_storage_in_order)
{
        out_storage(true);
}
END_TEST

/* Receive the frames @first.. on @b until @n came, flushing @a between reads; check ids, lengths and fds. */
static void send_with_fds_expect(struct transport *a, struct transport *b, uint32_t first, unsigned n,
                                 const uint32_t *lengths, const int *orig)
{
        struct transport_frame f;
        unsigned got = 0, rounds = 0;
        int r;

        while (got < n) {
                ck_assert_uint_lt(rounds++, 1000000);
                r = transport_flush(a);
                ck_assert(r == 0 || r == -EAGAIN);
                while (got < n && (r = pump(b, &f)) == 1) {
                        ck_assert_uint_eq(f.hdr.id, first + got);
                        payload_check(&f, first + got, lengths[got]);
                        ck_assert_uint_eq(f.nfds, orig[got] >= 0 ? 1 : 0);
                        if (orig[got] >= 0)
                                ck_assert(test_same_file(f.fds[0], orig[got]));
                        transport_frame_deinit(&f);
                        got++;
                }
                ck_assert_int_ge(r, 0);
        }
}

/* A frame with @id and frame_put()'s payload of @length bytes, in @payload. */
static struct proto_header send_with_fds_frame(uint8_t *payload, uint32_t id, uint32_t length)
{
        for (uint32_t i = 0; i < length; i++)
                payload[i] = (uint8_t)(id * 31u + i);
        return (struct proto_header){ .opcode = PROTO_OP_OPEN, .flags = PROTO_FLAG_REPLY, .id = id };
}

/*
 * transport_send_with_fds() (iomemd's replies that lend a region's fd): sent whole from the caller's buffer behind
 * the fd-less frames queued before it, in one sendmsg(); cut by a full socket, the rest queued without its fd,
 * which went with the cut (the caller may close its own at once); through the queue with the fd borrowed when
 * the fd budget is spent or fds are queued ahead of it; in order in every case.
 */
START_TEST(test_send_with_fds)
{
        static const uint32_t big = PROTO_MAX_PAYLOAD, lengths[] = { 12, 40 };
        uint8_t *payload = malloc(PROTO_MAX_PAYLOAD);
        struct transport a, b;
        struct proto_header h;
        int sv[2], fd, orig[2], r, flushed, small = 4096;
        unsigned budget;
        uint64_t pos;

        ck_assert_ptr_nonnull(payload);
        tpair_new(sv, &a, &b);
        a.out_fds_in_order = b.in_fds_in_order = true;

        /* whole: behind a queued fd-less frame, in one sendmsg(), nothing left queued */
        h = send_with_fds_frame(payload, 0, lengths[0]);
        ck_assert_int_eq(transport_queue(&a, &h, payload, lengths[0], NULL, 0), 0);
        fd = memfd_new();
        h = send_with_fds_frame(payload, 1, lengths[1]);
        budget = 3;
        ck_assert_int_eq(transport_send_with_fds(&a, &h, payload, lengths[1], &fd, 1, &budget, &flushed), 0);
        ck_assert_int_eq(flushed, 0);
        ck_assert_uint_eq(budget, 2);
        ck_assert(!transport_has_output(&a));
        ck_assert_uint_eq(a.out_fds + a.out_borrowed + a.out_store_used, 0);
        ck_assert_uint_eq(a.out_pos, 2 * PROTO_HEADER_SIZE + lengths[0] + lengths[1]);
        orig[0] = -1;
        orig[1] = fd; /* borrowed: still ours */
        send_with_fds_expect(&a, &b, 0, 2, lengths, orig);
        close(fd);

        /* the fd budget spent: queued with the fd borrowed; the caller's copy, then the flush with room */
        fd = memfd_new();
        h = send_with_fds_frame(payload, 2, lengths[1]);
        budget = 0;
        ck_assert_int_eq(transport_send_with_fds(&a, &h, payload, lengths[1], &fd, 1, &budget, &flushed), 0);
        ck_assert_int_eq(flushed, -EDQUOT);
        ck_assert(transport_has_output(&a));
        ck_assert_uint_eq(a.out_borrowed, 1);
        ck_assert_int_eq(transport_own_fds(&a), 0);
        orig[0] = fd;
        send_with_fds_expect(&a, &b, 2, 1, lengths + 1, orig);
        close(fd);

        /* an fd queued ahead: through the queue, both in order */
        orig[0] = memfd_new();
        fd = fcntl(orig[0], F_DUPFD_CLOEXEC, 0);
        h = send_with_fds_frame(payload, 3, lengths[0]);
        ck_assert_int_eq(transport_queue(&a, &h, payload, lengths[0], &fd, 1), 0);
        orig[1] = memfd_new();
        h = send_with_fds_frame(payload, 4, lengths[1]);
        budget = 8;
        ck_assert_int_eq(transport_send_with_fds(&a, &h, payload, lengths[1], &orig[1], 1, &budget, &flushed), 0);
        ck_assert_int_eq(flushed, 0);
        ck_assert_uint_eq(budget, 6);
        send_with_fds_expect(&a, &b, 3, 2, lengths, orig);
        fds_close(orig, 2);

        /* cut by a full socket: the fd went with the part written, the rest is queued without it */
        ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
        ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
        fd = memfd_new();
        orig[0] = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        pos = a.out_pos;
        h = send_with_fds_frame(payload, 5, big);
        budget = 1;
        ck_assert_int_eq(transport_send_with_fds(&a, &h, payload, big, &fd, 1, &budget, &flushed), 0);
        ck_assert_int_eq(flushed, -EAGAIN);
        ck_assert_uint_eq(budget, 0);
        ck_assert(transport_has_output(&a));
        ck_assert_uint_gt(a.out_pos, pos);
        ck_assert_uint_eq(a.out_fds + a.out_borrowed, 0);
        ck_assert_uint_gt(a.out_fds_ahead_bytes, 0);
        close(fd); /* the peer's already: nothing waits for it */
        /* an fd-less frame may queue behind the rest; another with an fd waits until the first is written */
        h = send_with_fds_frame(payload, 6, lengths[0]);
        ck_assert_int_eq(transport_queue(&a, &h, payload, lengths[0], NULL, 0), 0);
        orig[1] = memfd_new();
        h = send_with_fds_frame(payload, 7, lengths[1]);
        budget = 1;
        r = transport_send_with_fds(&a, &h, payload, lengths[1], &orig[1], 1, &budget, &flushed);
        ck_assert_int_eq(r, 0);
        ck_assert(transport_has_output(&a));
        ck_assert_uint_eq(a.out_borrowed, 1); /* queued, not sent ahead of the cut frame's bytes */
        ck_assert_int_eq(transport_own_fds(&a), 0);
        {
                static const uint32_t rest[] = { PROTO_MAX_PAYLOAD, 12, 40 };
                int fds3[3] = { orig[0], -1, orig[1] };

                send_with_fds_expect(&a, &b, 5, 3, rest, fds3);
        }
        fds_close(orig, 2);
        ck_assert(!transport_has_output(&a));
        ck_assert_uint_eq(a.out_fds + a.out_borrowed + a.out_fds_ahead_bytes, 0);

        tpair_close(sv, &a, &b);
        free(payload);
}
END_TEST

/*
 * transport_send_with_fds() at random, as iomemd uses it (a reply lending 1..4 fds, the caller's copies closed at
 * once after transport_own_fds(), its payload scribbled over), mixed with fd-less and fd-carrying frames queued
 * ahead, flushes with random fd budgets, and a reader that reads when it likes, through a 4 KiB socket: frames
 * arrive whole and in order with their own fds (the reader checks the in-order bound of 4 held fds), and the fd
 * budget spent by every call equals the fds that left the queue (the daemon's fds-in-flight accounting).
 */
static void send_with_fds_random(bool in_order, bool storage_on, uint32_t seed)
{
        enum { FRAMES = 1000, MAX_WAIT = 48 };
        struct expect {
                uint32_t len;
                unsigned nfds;
                int orig[PROTO_MAX_FDS];
        };
        struct expect *want = calloc(FRAMES, sizeof(*want));
        struct transport_out_storage *storage = malloc(sizeof(*storage));
        uint8_t *payload = malloc(PROTO_MAX_PAYLOAD);
        struct transport a, b;
        struct transport_frame f;
        unsigned queued = 0, got = 0, rounds = 0, fast = 0, cut = 0;
        uint32_t x = seed;
        int small = 4096, sv[2], r;

        ck_assert_ptr_nonnull(want);
        ck_assert_ptr_nonnull(storage);
        ck_assert_ptr_nonnull(payload);
        pair_new(sv);
        ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
        ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
        ck_assert_int_eq(transport_init(&a, sv[0], 0, 0), 0);
        ck_assert_int_eq(transport_init(&b, sv[1], 0, 0), 0);
        if (storage_on)
                transport_use_out_storage(&a, storage);
        a.out_fds_in_order = in_order;
        b.in_fds_in_order = in_order;
#define NEXT() (x ^= x << 13, x ^= x >> 17, x ^= x << 5, x)
        while (got < FRAMES) {
                unsigned action = NEXT() % 8;

                ck_assert_uint_lt(rounds++, 10000000);
                if (action < 4 && queued < FRAMES && queued - got < MAX_WAIT) {
                        static const uint32_t sizes[] = { 0, 8, 24, 40, 100, 1000, 3000, 5000, 20000,
                                                          PROTO_MAX_PAYLOAD };
                        struct proto_header h = { .opcode = PROTO_OP_OPEN, .id = queued, .flags = PROTO_FLAG_REPLY };
                        struct expect *e = &want[queued];
                        unsigned kind = NEXT() % 4; /* 0, 1: send_with_fds; 2: queued with fds or not; 3: fd-less */
                        int fds[PROTO_MAX_FDS];

                        unsigned nsizes = NEXT() % 8 == 0 ? sizeof(sizes) / sizeof(sizes[0]) : 6;

                        e->len = sizes[NEXT() % nsizes];
                        if (a.out_bytes + PROTO_HEADER_SIZE + e->len > a.max_out_bytes)
                                e->len = 8; /* within the queue's bound (F8): not what this test is about */
                        if (a.out_fds + PROTO_MAX_FDS > a.max_out_fds)
                                kind = 3; /* within the queue's bound on fds (D10) */
                        e->nfds = kind < 2 ? 1 + NEXT() % PROTO_MAX_FDS : kind == 2 ? NEXT() % (PROTO_MAX_FDS + 1) : 0;
                        for (uint32_t k = 0; k < e->len; k++)
                                payload[k] = (uint8_t)(queued * 31u + k);
                        for (unsigned k = 0; k < e->nfds; k++) {
                                fds[k] = memfd_new();
                                e->orig[k] = fcntl(fds[k], F_DUPFD_CLOEXEC, 0);
                                ck_assert_int_ge(e->orig[k], 0);
                        }
                        if (kind < 2) {
                                unsigned budget = NEXT() % 3 == 0 ? NEXT() % 6 : UINT_MAX, before = budget;
                                unsigned fds_before = a.out_fds;
                                uint64_t pos = a.out_pos;
                                bool empty = !transport_has_output(&a);
                                int flushed = 1;

                                r = transport_send_with_fds(&a, &h, payload, e->len, fds, e->nfds, &budget, &flushed);
                                ck_assert_int_eq(r, 0);
                                ck_assert_msg(flushed == 0 || flushed == -EAGAIN || flushed == -EDQUOT,
                                              "flushed: %d", flushed);
                                /* what the budget lost is what left the queue or never entered it */
                                ck_assert_uint_eq(before - budget, fds_before + e->nfds - a.out_fds);
                                ck_assert_uint_le(a.out_borrowed, 1);
                                if (empty && !transport_has_output(&a))
                                        fast++;
                                if (a.out_pos > pos && transport_has_output(&a) && a.out_fds == 0)
                                        cut++;
                                ck_assert_int_eq(transport_own_fds(&a), 0);
                                ck_assert_uint_eq(a.out_borrowed, 0);
                                fds_close(fds, e->nfds); /* as iomemd: its region may go at once */
                        } else {
                                ck_assert_int_eq(transport_queue(&a, &h, payload, e->len, fds, e->nfds), 0);
                        }
                        memset(payload, 0xa5, e->len); /* the queued copy must not change */
                        queued++;
                } else if (action < 6) {
                        unsigned budget = NEXT() % 3 == 0 ? NEXT() % 5 : UINT_MAX, before = budget;
                        unsigned fds_before = a.out_fds;

                        r = transport_flush_fds(&a, &budget);
                        ck_assert_msg(r == 0 || r == -EAGAIN || r == -EDQUOT, "flush: %d", r);
                        ck_assert_uint_eq(before - budget, fds_before - a.out_fds);
                } else {
                        while ((r = pump(&b, &f)) != 0) {
                                struct expect *e = &want[got];

                                ck_assert_msg(r == 1, "frame %u: %d", got, r);
                                ck_assert_uint_lt(got, queued);
                                ck_assert_uint_eq(f.hdr.id, got);
                                ck_assert_uint_eq(f.hdr.length, e->len);
                                for (uint32_t k = 0; k < e->len; k++)
                                        payload[k] = (uint8_t)(got * 31u + k);
                                if (e->len && memcmp(f.payload, payload, e->len) != 0)
                                        payload_check(&f, got, e->len); /* says where */
                                ck_assert_uint_eq(f.nfds, e->nfds);
                                for (unsigned k = 0; k < f.nfds; k++) {
                                        ck_assert(test_same_file(f.fds[k], e->orig[k]));
                                        ck_assert(is_cloexec(f.fds[k]));
                                }
                                transport_frame_deinit(&f);
                                fds_close(e->orig, e->nfds);
                                got++;
                        }
                        if (queued == FRAMES) {
                                unsigned budget = UINT_MAX;

                                r = transport_flush_fds(&a, &budget);
                                ck_assert(r == 0 || r == -EAGAIN);
                        }
                }
        }
#undef NEXT
        ck_assert_uint_gt(fast, 0);
        ck_assert_uint_gt(cut, 0);
        ck_assert(!transport_has_output(&a));
        ck_assert_uint_eq(a.out_fds + a.out_borrowed + a.out_fds_ahead_bytes, 0);
        ck_assert_uint_eq(a.out_bytes, 0);
        tpair_close(sv, &a, &b);
        free(payload);
        free(storage);
        free(want);
}

/*
 * In order, a send cut inside the fd-less frames queued ahead of the frame that lends fds: those fds went with
 * the ahead frames' bytes (allowed in order), the reply's bytes follow later without them, and no later call
 * carries fds before the reply is written (the reader would hold more than one call's fds otherwise).
 */
START_TEST(test_send_with_fds_cut_ahead)
{
        static const uint32_t lengths[] = { PROTO_MAX_PAYLOAD, 40, 12, 40 };
        static const unsigned nfds[] = { 0, PROTO_MAX_FDS, 1, 1 };
        uint8_t *payload = malloc(PROTO_MAX_PAYLOAD);
        struct transport a, b;
        struct transport_frame f;
        struct proto_header h;
        int sv[2], fds[PROTO_MAX_FDS], orig[4][PROTO_MAX_FDS], small = 4096, flushed, r;
        unsigned budget, got = 0, rounds = 0;
        uint64_t pos;

        ck_assert_ptr_nonnull(payload);
        pair_new(sv);
        ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
        ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
        ck_assert_int_eq(transport_init(&a, sv[0], 0, 0), 0);
        ck_assert_int_eq(transport_init(&b, sv[1], 0, 0), 0);
        a.out_fds_in_order = b.in_fds_in_order = true;

        /* a big fd-less frame fills the socket; the reader takes what is there: room for part of the rest */
        h = send_with_fds_frame(payload, 0, lengths[0]);
        ck_assert_int_eq(transport_queue(&a, &h, payload, lengths[0], NULL, 0), 0);
        ck_assert_int_eq(transport_flush(&a), -EAGAIN);
        while (b.in_end < 4096) /* past the socket's first skb: its memory is the writer's again */
                ck_assert_int_gt(transport_read(&b), 0);
        /* a reply lending 4 fds: sent with the rest of the big frame, cut inside it */
        for (unsigned k = 0; k < PROTO_MAX_FDS; k++) {
                fds[k] = memfd_new();
                orig[1][k] = fcntl(fds[k], F_DUPFD_CLOEXEC, 0);
        }
        h = send_with_fds_frame(payload, 1, lengths[1]);
        budget = PROTO_MAX_FDS;
        pos = a.out_pos;
        ck_assert_int_eq(transport_send_with_fds(&a, &h, payload, lengths[1], fds, PROTO_MAX_FDS, &budget, &flushed),
                         0);
        ck_assert_int_eq(flushed, -EAGAIN);
        ck_assert_uint_eq(budget, 0);
        ck_assert_uint_gt(a.out_pos, pos);
        ck_assert_uint_gt(a.out_bytes, PROTO_HEADER_SIZE + lengths[1]); /* cut ahead of the reply */
        ck_assert_uint_eq(a.out_fds + a.out_borrowed, 0);
        ck_assert_int_eq(transport_own_fds(&a), 0);
        fds_close(fds, PROTO_MAX_FDS); /* the peer's already */
        /* two more replies with fds: they wait until reply 1 is written */
        for (uint32_t id = 2; id <= 3; id++) {
                int fd = memfd_new();

                orig[id][0] = fcntl(fd, F_DUPFD_CLOEXEC, 0);
                h = send_with_fds_frame(payload, id, lengths[id]);
                budget = 8;
                ck_assert_int_eq(transport_send_with_fds(&a, &h, payload, lengths[id], &fd, 1, &budget, &flushed), 0);
                ck_assert_uint_eq(budget, 8); /* nothing with fds went */
                ck_assert_int_eq(transport_own_fds(&a), 0);
                close(fd);
        }
        while (got < 4) {
                ck_assert_uint_lt(rounds++, 1000000);
                r = transport_flush(&a);
                ck_assert(r == 0 || r == -EAGAIN);
                while (got < 4 && (r = pump(&b, &f)) == 1) {
                        ck_assert_uint_eq(f.hdr.id, got);
                        payload_check(&f, got, lengths[got]);
                        ck_assert_uint_eq(f.nfds, nfds[got]);
                        for (unsigned k = 0; k < f.nfds; k++)
                                ck_assert(test_same_file(f.fds[k], orig[got][k]));
                        transport_frame_deinit(&f);
                        fds_close(orig[got], nfds[got]);
                        got++;
                }
                ck_assert_int_ge(r, 0);
        }
        ck_assert(!transport_has_output(&a));
        ck_assert_uint_eq(a.out_fds + a.out_borrowed + a.out_fds_ahead_bytes, 0);
        tpair_close(sv, &a, &b);
        free(payload);
}
END_TEST

START_TEST(test_send_with_fds_random)
{
        for (uint32_t seed = 1; seed <= 3; seed++) {
                send_with_fds_random(false, false, seed * 2654435761u);
                send_with_fds_random(false, true, seed * 2246822519u);
        }
}
END_TEST

START_TEST(test_send_with_fds_random_in_order)
{
        for (uint32_t seed = 1; seed <= 3; seed++) {
                send_with_fds_random(true, false, seed * 2654435761u);
                send_with_fds_random(true, true, seed * 2246822519u);
        }
}
END_TEST

/*
 * transport_sendv_blocking(): frames go in order whether they leave with one sendmsg() from the caller's memory,
 * are cut by a full socket (the rest queued and flushed later, the cut frame from where it stopped), or go
 * through the queue behind frames queued before or with fds; a failed send leaves them queued, as
 * transport_send_blocking() did.
 */
START_TEST(test_sendv)
{
        static const uint32_t lengths[] = { 8, PROTO_MAX_PAYLOAD, 300, 0, PROTO_MAX_PAYLOAD - 1, 12 };
        uint8_t *payload = malloc(PROTO_MAX_PAYLOAD);
        struct proto_header h[6];
        struct transport_msg m[6];
        struct transport a, b;
        struct transport_frame f;
        int sv[2], fd, size = 4096, r;
        uint32_t got = 0;

        ck_assert_ptr_nonnull(payload);
        tpair_new(sv, &a, &b);
        for (unsigned i = 0; i < 6; i++) {
                h[i] = (struct proto_header){ .opcode = PROTO_OP_PING, .id = i };
                m[i] = (struct transport_msg){ .h = &h[i], .payload = payload, .len = lengths[i] };
        }
        for (uint32_t i = 0; i < PROTO_MAX_PAYLOAD; i++)
                payload[i] = (uint8_t)i;
        ck_assert_int_eq(transport_sendv_blocking(&a, m, 0, NULL, 0, TIMEOUT_MS), -EINVAL);
        ck_assert_int_eq(transport_sendv_blocking(&a, m, TRANSPORT_SENDV_MAX + 1, NULL, 0, TIMEOUT_MS), -EINVAL);
        /* all at once, from our memory */
        ck_assert_int_eq(transport_sendv_blocking(&a, m, 1, NULL, 0, TIMEOUT_MS), 0);
        ck_assert(!transport_has_output(&a));
        ck_assert_uint_eq(a.out_pos, PROTO_HEADER_SIZE + lengths[0]);
        ck_assert_int_eq(transport_recv_blocking(&b, &f, TIMEOUT_MS), 1);
        ck_assert_uint_eq(f.hdr.id, 0);
        ck_assert_uint_eq(f.hdr.length, lengths[0]);
        ck_assert_mem_eq(f.payload, payload, lengths[0]);
        transport_frame_deinit(&f);
        /* a small socket buffer cuts them: no time to wait, so the rest stays queued, then goes in order */
        ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)), 0);
        ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)), 0);
        r = transport_sendv_blocking(&a, m + 1, 4, NULL, 0, 0);
        ck_assert_int_eq(r, -ETIMEDOUT);
        ck_assert(transport_has_output(&a));
        ck_assert_uint_gt(a.out_pos, PROTO_HEADER_SIZE + lengths[0]); /* part went */
        /* behind what is queued, with an fd: through the queue */
        fd = memfd_new();
        h[5].nfds = 0;
        ck_assert_int_eq(transport_queue(&a, &h[5], payload, lengths[5], &fd, 1), 0);
        got = 1;
        while (got < 6) {
                r = transport_flush(&a);
                ck_assert(r == 0 || r == -EAGAIN);
                while ((r = pump(&b, &f)) == 1) {
                        ck_assert_uint_eq(f.hdr.id, got);
                        ck_assert_uint_eq(f.hdr.length, lengths[got]);
                        if (lengths[got])
                                ck_assert_mem_eq(f.payload, payload, lengths[got]);
                        ck_assert_uint_eq(f.nfds, got == 5 ? 1 : 0);
                        transport_frame_deinit(&f);
                        got++;
                }
                ck_assert_int_eq(r, 0);
        }
        ck_assert(!transport_has_output(&a));
        /* the peer gone: the error, and the frames queued as a failed flush leaves them */
        close(sv[1]);
        sv[1] = -1;
        r = transport_sendv_blocking(&a, m, 2, NULL, 0, TIMEOUT_MS);
        ck_assert_msg(r == -EPIPE || r == -ECONNRESET, "r = %d", r);
        ck_assert(transport_has_output(&a));
        tpair_close(sv, &a, &b);
        free(payload);
}
END_TEST

/* L4: the peer has gone: -EPIPE (or -ECONNRESET), no SIGPIPE, queued fds closed */
START_TEST(test_l4_epipe_no_sigpipe)
{
        struct proto_header h = { .opcode = PROTO_OP_PING };
        uint8_t payload[8] = { 0 };
        struct transport t;
        int sv[2], fds[1], r;

        signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill this test */
        pair_new(sv);
        ck_assert_int_eq(transport_init(&t, sv[0], 0, 0), 0);
        close(sv[1]);
        sv[1] = -1;
        r = transport_send_blocking(&t, &h, payload, sizeof(payload), NULL, 0, TIMEOUT_MS);
        ck_assert_msg(r == -EPIPE || r == -ECONNRESET, "r = %d", r);
        fds[0] = memfd_new();
        ck_assert_int_eq(transport_queue(&t, &h, payload, sizeof(payload), fds, 1), 0);
        r = transport_flush(&t);
        ck_assert_msg(r == -EPIPE || r == -ECONNRESET, "r = %d", r);
        ck_assert(transport_has_output(&t));
        /* transport_send_with_fds() (iomemd's replies lending a region's fd): queued with its fd borrowed, no SIGPIPE */
        {
                unsigned budget = 4;
                int lent = memfd_new(), flushed = 0;

                ck_assert_int_eq(transport_send_with_fds(&t, &h, payload, sizeof(payload), &lent, 1, &budget,
                                                         &flushed), 0);
                ck_assert_uint_eq(budget, 4); /* its fd went nowhere */
                transport_flush(&t); /* the head's error first: queued behind it, the frame was not tried */
                ck_assert_uint_eq(t.out_borrowed, 1);
                ck_assert_int_eq(transport_own_fds(&t), 0);
                close(lent);
                /* alone in the queue: tried at once, and the error said */
                transport_deinit(&t);
                ck_assert_int_eq(transport_init(&t, sv[0], 0, 0), 0);
                lent = memfd_new();
                ck_assert_int_eq(transport_send_with_fds(&t, &h, payload, sizeof(payload), &lent, 1, &budget,
                                                         &flushed), 0);
                ck_assert_msg(flushed == -EPIPE || flushed == -ECONNRESET, "flushed = %d", flushed);
                ck_assert_uint_eq(budget, 4);
                ck_assert_uint_eq(t.out_borrowed, 1);
                ck_assert_int_eq(transport_own_fds(&t), 0);
                close(lent);
        }
        transport_deinit(&t); /* closes what was never sent */
        pair_close(sv);
}
END_TEST

/* ---- odds and ends ---- */

START_TEST(test_read_buffer_full)
{
        uint8_t *buf = malloc(2 * TRANSPORT_IN_SIZE);
        struct transport t;
        struct transport_frame f;
        size_t len = 0;
        int sv[2], r, size = 4 * TRANSPORT_IN_SIZE;

        ck_assert_ptr_nonnull(buf);
        pair_new(sv);
        ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)), 0);
        while (len + PROTO_HEADER_SIZE + 100 <= 2 * TRANSPORT_IN_SIZE)
                len += frame_put(buf + len, PROTO_OP_PING, 1, 100, 0);
        ck_assert_int_eq(transport_init(&t, sv[1], 0, 0), 0);
        raw_send(sv[0], buf, len, NULL, 0);
        do
                r = transport_read(&t);
        while (r > 0);
        ck_assert_int_eq(r, -ENOBUFS);
        /* parsing makes room again */
        ck_assert_int_eq(transport_next_frame(&t, &f), 1);
        transport_frame_deinit(&f);
        ck_assert_int_gt(transport_read(&t), 0);
        rx_close(sv, &t);
        free(buf);
}
END_TEST

/*
 * The input buffer starts small (TRANSPORT_IN_MIN) and grows: frames of every
 * size up to the largest, each sent with its fd by one sendmsg(), arrive whole
 * and with their own fd, however the small first reads split them.
 */
START_TEST(test_read_buffer_grows)
{
        const uint32_t lengths[] = { 8, TRANSPORT_IN_MIN - PROTO_HEADER_SIZE, TRANSPORT_IN_MIN, 3000,
                                     PROTO_MAX_PAYLOAD, 8, PROTO_MAX_PAYLOAD - 1, 0 };
        const unsigned n = sizeof(lengths) / sizeof(lengths[0]);
        uint8_t *buf = malloc(TRANSPORT_IN_SIZE);
        struct transport t;
        struct transport_frame f;
        struct stat st[8], got;
        int sv[2], fds[8], size = 8 * TRANSPORT_IN_SIZE, r;
        unsigned next = 0, reads = 0, filled = 0;

        ck_assert_ptr_nonnull(buf);
        pair_new(sv);
        ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)), 0);
        for (unsigned i = 0; i < n; i++) {
                fds[i] = memfd_new();
                ck_assert_int_eq(fstat(fds[i], &st[i]), 0);
                raw_send(sv[0], buf, frame_put(buf, PROTO_OP_PING, i + 1, lengths[i], 1), &fds[i], 1);
        }
        fds_close(fds, n);
        ck_assert_int_eq(transport_init(&t, sv[1], 0, 0), 0);
        while (next < n) {
                r = transport_read(&t);
                ck_assert_int_gt(r, 0);
                reads++;
                filled += transport_read_filled(&t);
                while (next < n && (r = transport_next_frame(&t, &f)) == 1) {
                        ck_assert_uint_eq(f.hdr.id, next + 1);
                        payload_check(&f, next + 1, lengths[next]);
                        ck_assert_uint_eq(f.nfds, 1);
                        ck_assert_int_eq(fstat(f.fds[0], &got), 0);
                        ck_assert_uint_eq(got.st_ino, st[next].st_ino);
                        transport_frame_deinit(&f);
                        next++;
                }
                ck_assert_int_ge(r, 0);
        }
        /* the first read filled the small buffer; the socket is empty now */
        ck_assert_uint_gt(filled, 0);
        ck_assert_uint_gt(reads, 1);
        ck_assert_int_eq(transport_read(&t), -EAGAIN);
        rx_close(sv, &t);
        free(buf);
}
END_TEST

/* Borrowed payloads point into the input buffer (no copy), whole and right, and are not freed by deinit. */
START_TEST(test_next_frame_borrowed)
{
        uint8_t buf[3 * (PROTO_HEADER_SIZE + 300)];
        struct transport t;
        struct transport_frame f;
        size_t len = 0;
        int sv[2], fd = memfd_new();

        pair_new(sv);
        len += frame_put(buf + len, PROTO_OP_PING, 1, 300, 0);
        len += frame_put(buf + len, PROTO_OP_PING, 2, 0, 0);
        raw_send(sv[0], buf, len, NULL, 0);
        raw_send(sv[0], buf, frame_put(buf, PROTO_OP_PING, 3, 200, 1), &fd, 1);
        close(fd);
        ck_assert_int_eq(transport_init(&t, sv[1], 0, 0), 0);
        for (uint32_t id = 1; id <= 3; id++) {
                while (transport_next_frame_borrowed(&t, &f) == 0)
                        ck_assert_int_gt(transport_read(&t), 0);
                ck_assert_uint_eq(f.hdr.id, id);
                payload_check(&f, id, id == 1 ? 300 : id == 2 ? 0 : 200);
                ck_assert(f.payload_borrowed == (f.hdr.length > 0));
                if (f.payload)
                        ck_assert(f.payload > t.in && f.payload < t.in + t.in_cap);
#ifdef __SANITIZE_ADDRESS__
                /* ASan builds: the payload is readable, the bytes after it (the next frame's) are not */
                if (f.payload) {
                        ck_assert_ptr_null(__asan_region_is_poisoned(f.payload, f.hdr.length));
                        ck_assert(__asan_address_is_poisoned(f.payload + f.hdr.length));
                }
#endif
                ck_assert_uint_eq(f.nfds, id == 3 ? 1 : 0);
                transport_frame_deinit(&f); /* closes the fd, leaves the payload */
                ck_assert_ptr_null(f.payload);
        }
        rx_close(sv, &t);
}
END_TEST

START_TEST(test_wait_and_timeouts)
{
        struct transport t;
        struct transport_frame f;
        int sv[2];

        rx_new(sv, &t);
        ck_assert_int_eq(transport_wait(&t, POLLIN, 0), -ETIMEDOUT);
        ck_assert_int_eq(transport_recv_blocking(&t, &f, 0), -ETIMEDOUT);
        ck_assert_int_eq(transport_wait(&t, POLLOUT, 0), 0);
        ck_assert_int_eq(write(sv[0], "x", 1), 1);
        ck_assert_int_eq(transport_wait(&t, POLLIN, -1), 0);
        rx_close(sv, &t);
}
END_TEST

START_TEST(test_null_safe)
{
        transport_deinit(NULL);
        transport_frame_deinit(NULL);
}
END_TEST

/* ---- records with at most one fd (transport_send_fd / transport_recv_fd) ---- */

static void seqpacket_pair(int sv[2])
{
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
}

START_TEST(test_record_roundtrip)
{
        uint64_t out[2] = { 1, 2 }, in[2] = { 0 };
        int sv[2], fd = memfd_new(), got = -2;

        seqpacket_pair(sv);
        /* with an fd: the caller keeps its own; the received one is another fd on the same file, close-on-exec */
        ck_assert_int_eq(transport_send_fd(sv[0], out, sizeof(out), fd), 0);
        ck_assert_int_eq(transport_recv_fd(sv[1], in, sizeof(in), &got), 1);
        ck_assert_mem_eq(in, out, sizeof(in));
        ck_assert_int_ge(got, 0);
        ck_assert_int_ne(got, fd);
        ck_assert(test_same_file(got, fd));
        ck_assert_int_eq(fcntl(got, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
        close(got);
        /* without one */
        out[0] = 3;
        ck_assert_int_eq(transport_send_fd(sv[0], out, sizeof(out), -1), 0);
        ck_assert_int_eq(transport_recv_fd(sv[1], in, sizeof(in), &got), 1);
        ck_assert_uint_eq(in[0], 3);
        ck_assert_int_eq(got, -1);
        /* end of stream */
        close(sv[0]);
        sv[0] = -1;
        ck_assert_int_eq(transport_recv_fd(sv[1], in, sizeof(in), &got), 0);
        ck_assert_int_eq(got, -1);
        close(fd);
        pair_close(sv);
}
END_TEST

/* a record of another size, or control data the stream refuses: an error, and nothing that arrived stays open */
START_TEST(test_record_refused)
{
        uint64_t in[2], big[3] = { 0 };
        int sv[2], fds[2] = { memfd_new(), memfd_new() }, got = -2;

        seqpacket_pair(sv);
        /* too short */
        ck_assert_int_eq(fdutil_sendmsg(sv[0], big, 8, fds, 1, 1, MSG_NOSIGNAL), 8);
        ck_assert_int_eq(transport_recv_fd(sv[1], in, sizeof(in), &got), -EBADMSG);
        ck_assert_int_eq(got, -1);
        /* too long: MSG_TRUNC */
        ck_assert_int_eq(fdutil_sendmsg(sv[0], big, sizeof(big), fds, 1, 1, MSG_NOSIGNAL), (ssize_t)sizeof(big));
        ck_assert_int_eq(transport_recv_fd(sv[1], in, sizeof(in), &got), -EBADMSG);
        ck_assert_int_eq(got, -1);
        /* two fds in one block (D3), then two blocks (D5) */
        ck_assert_int_eq(fdutil_sendmsg(sv[0], big, sizeof(in), fds, 2, 1, MSG_NOSIGNAL), (ssize_t)sizeof(in));
        ck_assert_int_eq(transport_recv_fd(sv[1], in, sizeof(in), &got), -EPROTO);
        ck_assert_int_eq(got, -1);
        if (fdutil_sendmsg(sv[0], big, sizeof(in), fds, 1, 2, MSG_NOSIGNAL) == (ssize_t)sizeof(in)) {
                ck_assert_int_eq(transport_recv_fd(sv[1], in, sizeof(in), &got), -EPROTO);
                ck_assert_int_eq(got, -1);
        }
        fds_close(fds, 2);
        pair_close(sv); /* the fd-leak fixture proves every received fd was closed */
}
END_TEST

/*
 * ---- the one sendmsg() of every send path (transport_sendmsg()) ----
 *
 * Through the recording sendmsg() above: each path makes the calls it always made (MSG_NOSIGNAL | MSG_DONTWAIT on
 * the stream, MSG_NOSIGNAL alone on a keeper's blocking record socket), retries one a signal interrupted (EINTR:
 * the same call again, nothing lost, nothing sent twice), attaches no control data without fds and exactly one
 * SCM_RIGHTS block of the frame's fds otherwise, and maps a failed call (or one that sent nothing) to the same
 * result and queue state as before.
 */
#define SM_STREAM (MSG_NOSIGNAL | MSG_DONTWAIT)

/* Read @n frames from @b: ids @first.., payloads of @lengths[], with @nfds[] fds on the files of @orig[][]. */
static void sm_expect(struct transport *b, uint32_t first, unsigned n, const uint32_t *lengths, const unsigned *nfds,
                      int orig[][PROTO_MAX_FDS])
{
        struct transport_frame f;

        for (unsigned i = 0; i < n; i++) {
                ck_assert_int_eq(pump(b, &f), 1);
                ck_assert_uint_eq(f.hdr.id, first + i);
                payload_check(&f, first + i, lengths[i]);
                ck_assert_uint_eq(f.nfds, nfds[i]);
                for (unsigned k = 0; k < nfds[i]; k++)
                        ck_assert(test_same_file(f.fds[k], orig[i][k]));
                transport_frame_deinit(&f);
        }
        ck_assert_int_eq(pump(b, &f), 0); /* nothing more, nothing twice */
}

/* Queue frames @first.. with @lengths[] and @nfds[] fresh memfds each, noting the files in @orig, the fds in @fds. */
static void sm_queue(struct transport *a, uint32_t first, unsigned n, const uint32_t *lengths, const unsigned *nfds,
                     int orig[][PROTO_MAX_FDS], int fds[][PROTO_MAX_FDS])
{
        uint8_t buf[PROTO_HEADER_SIZE + 64];

        for (unsigned i = 0; i < n; i++) {
                struct proto_header h = { .opcode = PROTO_OP_PING, .id = first + i };
                int mine[PROTO_MAX_FDS];

                ck_assert_uint_le(lengths[i], 64);
                frame_put(buf, PROTO_OP_PING, first + i, lengths[i], 0);
                for (unsigned k = 0; k < nfds[i]; k++) {
                        fds[i][k] = mine[k] = memfd_new();
                        orig[i][k] = fcntl(mine[k], F_DUPFD_CLOEXEC, 0);
                        ck_assert_int_ge(orig[i][k], 0);
                }
                ck_assert_int_eq(transport_queue(a, &h, buf + PROTO_HEADER_SIZE, lengths[i], mine, nfds[i]), 0);
        }
}

static void sm_close_orig(int orig[][PROTO_MAX_FDS], const unsigned *nfds, unsigned n)
{
        for (unsigned i = 0; i < n; i++)
                fds_close(orig[i], nfds[i]);
}

/* transport_flush() (transport_flush_fds() and transport_flush_in_order()) */
static void sendmsg_flush(bool in_order)
{
        static const uint32_t lengths[3] = { 10, 20, 0 }, lengths2[3] = { 20, 0, 10 };
        static const unsigned nfds[3] = { 0, 2, 0 }, nfds2[3] = { 2, 0, 0 };
        static const int eintr2[] = { -EINTR, -EINTR }, nobufs[] = { -ENOBUFS }, nothing[] = { 0 };
        int orig[3][PROTO_MAX_FDS], fds[3][PROTO_MAX_FDS], sv[2];
        size_t len[3];
        struct transport a, b;

        for (unsigned i = 0; i < 3; i++)
                len[i] = PROTO_HEADER_SIZE + lengths[i];
        tpair_new(sv, &a, &b);
        a.out_fds_in_order = b.in_fds_in_order = in_order;

        /* interrupted twice: the same call again each time, then on as usual */
        sm_queue(&a, 0, 3, lengths, nfds, orig, fds);
        sm_reset(eintr2, 2);
        ck_assert_int_eq(transport_flush(&a), 0);
        ck_assert(!transport_has_output(&a));
        ck_assert_uint_eq(a.out_fds, 0);
        if (in_order) {
                /* all three frames and the two fds in one call */
                ck_assert_uint_eq(sm.ncalls, 3);
                for (unsigned i = 0; i < 3; i++)
                        sm_check(i, SM_STREAM, len[0] + len[1] + len[2], fds[1], 2);
        } else {
                /* the fd-less frame before it, the frame with fds alone, the one after it */
                ck_assert_uint_eq(sm.ncalls, 5);
                for (unsigned i = 0; i < 3; i++)
                        sm_check(i, SM_STREAM, len[0], NULL, 0);
                sm_check(3, SM_STREAM, len[1], fds[1], 2);
                sm_check(4, SM_STREAM, len[2], NULL, 0);
        }
        sm_expect(&b, 0, 3, lengths, nfds, orig);
        sm_close_orig(orig, nfds, 3);

        /* the frame with fds first: an error, said as it is, nothing sent, the queue and its fds as they were */
        sm_queue(&a, 3, 3, lengths2, nfds2, orig, fds);
        sm_reset(nobufs, 1);
        ck_assert_int_eq(transport_flush(&a), -ENOBUFS);
        ck_assert_uint_eq(sm.ncalls, 1);
        sm_check(0, SM_STREAM, in_order ? len[0] + len[1] + len[2] : len[1], fds[0], 2);
        ck_assert_uint_eq(a.out_fds, 2);
        ck_assert_uint_eq(a.out_pos, len[0] + len[1] + len[2]); /* the first three frames' */
        /* nothing sent without an error: -EAGAIN, as a full socket */
        sm_reset(nothing, 1);
        ck_assert_int_eq(transport_flush(&a), -EAGAIN);
        ck_assert_uint_eq(sm.ncalls, 1);
        ck_assert_uint_eq(a.out_fds, 2);
        ck_assert_uint_eq(a.out_pos, len[0] + len[1] + len[2]);
        /* then all of it: in order in one call, else the frame with fds alone, then the other two together */
        sm_reset(NULL, 0);
        ck_assert_int_eq(transport_flush(&a), 0);
        if (in_order) {
                ck_assert_uint_eq(sm.ncalls, 1);
                sm_check(0, SM_STREAM, len[0] + len[1] + len[2], fds[0], 2);
        } else {
                ck_assert_uint_eq(sm.ncalls, 2);
                sm_check(0, SM_STREAM, len[1], fds[0], 2);
                sm_check(1, SM_STREAM, len[0] + len[2], NULL, 0);
        }
        ck_assert_uint_eq(a.out_fds, 0);
        sm_expect(&b, 3, 3, lengths2, nfds2, orig);
        sm_close_orig(orig, nfds2, 3);
        tpair_close(sv, &a, &b);
}

START_TEST(test_sendmsg_flush)
{
        sendmsg_flush(false);
}
END_TEST

START_TEST(test_sendmsg_flush_in_order)
{
        sendmsg_flush(true);
}
END_TEST

/* transport_send_with_fds(): behind a queued fd-less frame, in one call with the fd borrowed */
START_TEST(test_sendmsg_send_with_fds)
{
        static const uint32_t lengths[2] = { 10, 30 };
        static const unsigned nfds[2] = { 0, 1 };
        static const int eintr[] = { -EINTR }, nobufs[] = { -ENOBUFS }, nothing[] = { 0 };
        static const int *scripts[3] = { eintr, nobufs, nothing };
        uint8_t payload[64];
        int orig[2][PROTO_MAX_FDS], fds[2][PROTO_MAX_FDS], sv[2], flushed;
        size_t size = 2 * PROTO_HEADER_SIZE + lengths[0] + lengths[1];
        struct transport a, b;

        tpair_new(sv, &a, &b);
        a.out_fds_in_order = b.in_fds_in_order = true;
        for (unsigned k = 0; k < 3; k++) {
                uint32_t first = 2 * k;
                struct proto_header h = send_with_fds_frame(payload, first + 1, lengths[1]);
                unsigned budget = 4;

                sm_queue(&a, first, 1, lengths, nfds, orig, fds);
                orig[1][0] = memfd_new(); /* lent: stays the caller's */
                sm_reset(scripts[k], 1);
                ck_assert_int_eq(transport_send_with_fds(&a, &h, payload, lengths[1], orig[1], 1, &budget, &flushed),
                                 0);
                sm_check(0, SM_STREAM, size, orig[1], 1);
                if (k == 0) {
                        /* interrupted: the same call again, which sent both */
                        ck_assert_uint_eq(sm.ncalls, 2);
                        sm_check(1, SM_STREAM, size, orig[1], 1);
                        ck_assert_int_eq(flushed, 0);
                        ck_assert_uint_eq(budget, 3);
                        ck_assert(!transport_has_output(&a));
                } else {
                        /* failed, or nothing sent: said, and queued with its fd borrowed, the budget untouched */
                        ck_assert_uint_eq(sm.ncalls, 1);
                        ck_assert_int_eq(flushed, k == 1 ? -ENOBUFS : -EAGAIN);
                        ck_assert_uint_eq(budget, 4);
                        ck_assert_uint_eq(a.out_borrowed, 1);
                        ck_assert_int_eq(transport_own_fds(&a), 0);
                        sm_reset(NULL, 0);
                        ck_assert_int_eq(transport_flush(&a), 0);
                        ck_assert_uint_eq(sm.ncalls, 1);
                        ck_assert_uint_eq(sm.calls[0].nfds, 1); /* our copy of it */
                }
                sm_expect(&b, first, 2, lengths, nfds, orig);
                close(orig[1][0]);
        }
        tpair_close(sv, &a, &b);
}
END_TEST

/* transport_sendv_blocking() with nothing queued and no fds (transport_send_direct()) */
START_TEST(test_sendmsg_sendv_direct)
{
        static const uint32_t lengths[2] = { 0, 40 };
        static const unsigned nfds[2] = { 0, 0 };
        static const int eintr[] = { -EINTR }, again[] = { -EAGAIN }, nobufs[] = { -ENOBUFS }, nothing[] = { 0 };
        uint8_t payload[2][64];
        struct proto_header h[2];
        struct transport_msg m[2];
        struct transport a, b;
        size_t size = 2 * PROTO_HEADER_SIZE + lengths[0] + lengths[1];
        int sv[2];

        tpair_new(sv, &a, &b);
        for (unsigned k = 0; k < 4; k++) {
                for (unsigned i = 0; i < 2; i++) {
                        h[i] = send_with_fds_frame(payload[i], 2 * k + i, lengths[i]);
                        m[i] = (struct transport_msg){ .h = &h[i], .payload = payload[i], .len = lengths[i] };
                }
                switch (k) {
                case 0: /* interrupted: the same call again */
                        sm_reset(eintr, 1);
                        ck_assert_int_eq(transport_sendv_blocking(&a, m, 2, NULL, 0, TIMEOUT_MS), 0);
                        ck_assert_uint_eq(sm.ncalls, 2);
                        break;
                case 1: /* a full socket, or nothing sent: all queued, then flushed */
                case 2:
                        sm_reset(k == 1 ? again : nothing, 1);
                        ck_assert_int_eq(transport_sendv_blocking(&a, m, 2, NULL, 0, TIMEOUT_MS), 0);
                        ck_assert_uint_eq(sm.ncalls, 2);
                        break;
                case 3: /* another error: said, with all queued as a failed flush leaves them */
                        sm_reset(nobufs, 1);
                        ck_assert_int_eq(transport_sendv_blocking(&a, m, 2, NULL, 0, TIMEOUT_MS), -ENOBUFS);
                        ck_assert_uint_eq(sm.ncalls, 1);
                        ck_assert(transport_has_output(&a));
                        ck_assert_uint_eq(a.out_bytes, size);
                        ck_assert_int_eq(transport_flush(&a), 0);
                        ck_assert_uint_eq(sm.ncalls, 2);
                        break;
                }
                for (unsigned i = 0; i < sm.ncalls; i++)
                        sm_check(i, SM_STREAM, size, NULL, 0);
                ck_assert(!transport_has_output(&a));
                sm_expect(&b, 2 * k, 2, lengths, nfds, NULL);
        }
        tpair_close(sv, &a, &b);
}
END_TEST

/* transport_send_fd() on a keeper's blocking record socket: MSG_NOSIGNAL alone, one call, at most one fd */
START_TEST(test_sendmsg_send_fd)
{
        static const int eintr2[] = { -EINTR, -EINTR }, nobufs[] = { -ENOBUFS }, nothing[] = { 0 };
        uint64_t out[2] = { 1, 2 }, in[2];
        int sv[2], fd = memfd_new(), got = -2;

        seqpacket_pair(sv);
        sm_reset(eintr2, 2);
        ck_assert_int_eq(transport_send_fd(sv[0], out, sizeof(out), fd), 0);
        ck_assert_uint_eq(sm.ncalls, 3);
        for (unsigned i = 0; i < 3; i++)
                sm_check(i, MSG_NOSIGNAL, sizeof(out), &fd, 1);
        ck_assert_int_eq(transport_recv_fd(sv[1], in, sizeof(in), &got), 1);
        ck_assert(test_same_file(got, fd));
        close(got);
        sm_reset(eintr2, 1);
        ck_assert_int_eq(transport_send_fd(sv[0], out, sizeof(out), -1), 0);
        ck_assert_uint_eq(sm.ncalls, 2);
        for (unsigned i = 0; i < 2; i++)
                sm_check(i, MSG_NOSIGNAL, sizeof(out), NULL, 0);
        ck_assert_int_eq(transport_recv_fd(sv[1], in, sizeof(in), &got), 1);
        ck_assert_int_eq(got, -1);
        sm_reset(nobufs, 1);
        ck_assert_int_eq(transport_send_fd(sv[0], out, sizeof(out), fd), -ENOBUFS);
        ck_assert_uint_eq(sm.ncalls, 1);
        sm_reset(nothing, 1);
        ck_assert_int_eq(transport_send_fd(sv[0], out, sizeof(out), fd), -EIO); /* a record sent short */
        ck_assert_uint_eq(sm.ncalls, 1);
        close(fd);
        pair_close(sv); /* nothing else was sent: the fd-leak fixture sees no fd left in flight */
}
END_TEST

/*
 * ---- differential: transport_next_frame_borrowed() (its short path for the usual frame, the general path for the
 * rest) against transport_next_frame(), on identical input ----
 *
 * Two socket pairs get the same writes (a hostile peer's: whole and cut frames, pipelined ones, bad headers,
 * lengths past what is buffered or past the maximum, unknown versions, fds with their frame, ahead of it, behind
 * it, undeclared, too many; by position and in order), each read the same way; one side is parsed with
 * transport_next_frame(), the other with transport_next_frame_borrowed(). Every result must be the same: return
 * codes, headers, payload bytes, the fds (the same files, in the same order) and what stays buffered or held.
 */
static uint64_t diff_state;

static unsigned diff_rnd(void)
{
        diff_state ^= diff_state << 13;
        diff_state ^= diff_state >> 7;
        diff_state ^= diff_state << 17;
        return (unsigned)(diff_state >> 11);
}

/* One frame declaring @want_nfds fds (maybe damaged) at @p, at most @room bytes. Return: its size. */
static size_t diff_frame(uint8_t *p, size_t room, unsigned want_nfds)
{
        struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION, .opcode = diff_rnd() % 8,
                                  .id = diff_rnd(), .nfds = want_nfds };
        uint32_t len = diff_rnd() % 8 == 0 ? diff_rnd() % 3000 : diff_rnd() % 40;

        h.flags = diff_rnd() % 2 ? PROTO_FLAG_REPLY : 0;
        if (diff_rnd() % 30 == 0)
                h.version = PROTO_VERSION + 1; /* unknown: still a frame */
        if (PROTO_HEADER_SIZE + (size_t)len > room)
                len = 0;
        h.length = len;
        proto_header_encode(&h, p);
        for (uint32_t i = 0; i < len; i++)
                p[PROTO_HEADER_SIZE + i] = (uint8_t)diff_rnd();
        switch (diff_rnd() % 40) {
        case 0: /* a bad bit anywhere in the header */
                p[diff_rnd() % PROTO_HEADER_SIZE] ^= (uint8_t)(1u << (diff_rnd() % 8));
                break;
        case 1: /* a length past the maximum, or past anything that will be buffered */
        case 2: {
                uint32_t l = diff_rnd() % 2 ? PROTO_MAX_PAYLOAD + 1 + diff_rnd() % 3 : PROTO_MAX_PAYLOAD;

                memcpy(p + 12, &l, sizeof(l));
                break;
        }
        case 3: { /* an nfds past the maximum */
                uint16_t n = PROTO_MAX_FDS + 1 + diff_rnd() % 3;

                memcpy(p + 16, &n, sizeof(n));
                break;
        }
        default:
                break;
        }
        return PROTO_HEADER_SIZE + len;
}

static void diff_one(uint64_t seed, const int files[8], unsigned long *framesp)
{
        static uint8_t buf[32 * 1024];
        struct transport_storage sta, stb;
        struct transport ta, tb;
        int sva[2], svb[2];
        bool in_order, dead = false, shut = false;
        unsigned steps;

        diff_state = seed * 0x9E3779B97F4A7C15ull + 1;
        in_order = diff_rnd() % 2;
        steps = 1 + diff_rnd() % 12;
        pair_new(sva);
        pair_new(svb);
        if (diff_rnd() % 2) {
                ck_assert_int_eq(transport_init_storage(&ta, sva[1], 0, 0, &sta), 0);
                ck_assert_int_eq(transport_init_storage(&tb, svb[1], 0, 0, &stb), 0);
        } else {
                ck_assert_int_eq(transport_init(&ta, sva[1], 0, 0), 0);
                ck_assert_int_eq(transport_init(&tb, svb[1], 0, 0), 0);
        }
        ta.in_fds_in_order = tb.in_fds_in_order = in_order;
        for (unsigned s = 0; s < steps && !dead; s++) {
                unsigned nframes = diff_rnd() % 4, nfds = 0;
                bool matched = diff_rnd() % 2; /* fds as the rules want them, or anyhow */
                int fds[8];
                size_t len = 0;

                for (unsigned i = 0; i < nframes; i++) {
                        unsigned want = matched && (in_order || i == 0) ? diff_rnd() % 3 : diff_rnd() % 3 == 0 ? diff_rnd() % 6 : 0;

                        if (matched && nfds + want > 7)
                                want = 0;
                        len += diff_frame(buf + len, sizeof(buf) / 4, want);
                        nfds += matched ? want : 0;
                        if (matched && !in_order)
                                break; /* by position: one frame with fds, first in its write (and last) */
                }
                if (!matched && diff_rnd() % 4 == 0)
                        nfds = diff_rnd() % 7;
                if (len > 0 && diff_rnd() % 3 == 0)
                        len = diff_rnd() % len + 1; /* a cut frame, its rest never sent */
                if (len == 0 && nfds > 0)
                        buf[len++] = 0;
                for (unsigned i = 0; i < nfds; i++)
                        fds[i] = files[diff_rnd() % 8];
                if (len > 0 && !shut) {
                        ck_assert_int_eq(fdutil_sendmsg(sva[0], buf, len, fds, nfds, nfds ? 1 : 0, MSG_NOSIGNAL),
                                         (ssize_t)len);
                        ck_assert_int_eq(fdutil_sendmsg(svb[0], buf, len, fds, nfds, nfds ? 1 : 0, MSG_NOSIGNAL),
                                         (ssize_t)len);
                }
                if (diff_rnd() % 20 == 0 && !shut) {
                        shutdown(sva[0], SHUT_WR);
                        shutdown(svb[0], SHUT_WR);
                        shut = true;
                }
                for (;;) { /* read both until EAGAIN, parsing after each read */
                        int na = transport_read(&ta), nb = transport_read(&tb);

                        ck_assert_int_eq(na, nb);
                        if (na < 0 && na != -EAGAIN) {
                                dead = true;
                                break;
                        }
                        for (;;) {
                                struct transport_frame fa, fb;
                                int ra = transport_next_frame(&ta, &fa), rb = transport_next_frame_borrowed(&tb, &fb);

                                ck_assert_msg(ra == rb, "seed %" PRIu64 ": transport_next_frame() %d, borrowed %d",
                                              seed, ra, rb);
                                ck_assert_uint_eq(ta.in_end - ta.in_start, tb.in_end - tb.in_start);
                                ck_assert_uint_eq(ta.in_pos + ta.in_start, tb.in_pos + tb.in_start);
                                ck_assert_uint_eq(ta.in_fds, tb.in_fds);
                                ck_assert((ta.batches == NULL) == (tb.batches == NULL));
                                ck_assert((ta.batches_tail == NULL) == (tb.batches_tail == NULL));
                                if (ra <= 0) {
                                        dead = ra < 0;
                                        break;
                                }
                                ck_assert_mem_eq(&fa.hdr, &fb.hdr, sizeof(fa.hdr));
                                ck_assert_uint_eq(fa.nfds, fb.nfds);
                                ck_assert((fa.payload == NULL) == (fb.payload == NULL));
                                if (fa.payload)
                                        ck_assert_mem_eq(fa.payload, fb.payload, fa.hdr.length);
                                for (unsigned i = 0; i < PROTO_MAX_FDS; i++) {
                                        if (i < fa.nfds)
                                                ck_assert(test_same_file(fa.fds[i], fb.fds[i]));
                                        else
                                                ck_assert(fa.fds[i] == -1 && fb.fds[i] == -1);
                                }
                                (*framesp)++;
                                transport_frame_deinit(&fa);
                                transport_frame_deinit(&fb);
                        }
                        if (dead || na <= 0)
                                break;
                }
        }
        transport_deinit(&ta);
        transport_deinit(&tb);
        pair_close(sva);
        pair_close(svb);
}

START_TEST(test_borrowed_matches_copied)
{
        unsigned long frames = 0;
        int files[8];

        for (unsigned i = 0; i < 8; i++)
                files[i] = memfd_new();
        for (uint64_t seed = 1; seed <= 3000; seed++)
                diff_one(seed, files, &frames);
        ck_assert_uint_gt(frames, 1000); /* the frames compared, not only errors */
        fds_close(files, 8);
}
END_TEST

/*
 * The *-borrowed cases run the same tests through transport_next_frame_borrowed(), whose usual frame (whole, its
 * fds tied in order or none) takes a shorter way than transport_next_frame()'s: every rule must hold on both.
 */
static void borrowed_setup(void)
{
        test_fd_setup();
        pump_borrowed = true;
}

static void borrowed_teardown(void)
{
        pump_borrowed = false;
        test_fd_teardown();
}

/*
 * Add @tests to @s twice: as tcase @name with the copying read buffer, and as @borrowed_name through
 * transport_next_frame_borrowed(). Return: the first tcase, for tests that only it runs.
 */
static TCase *add_both_buffers(Suite *s, const char *name, const char *borrowed_name, const TTest *const *tests,
                               size_t n)
{
        TCase *tc = tcase_create(name), *tcb = tcase_create(borrowed_name);

        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_add_checked_fixture(tcb, borrowed_setup, borrowed_teardown);
        for (size_t i = 0; i < n; i++) {
                tcase_add_test(tc, tests[i]);
                tcase_add_test(tcb, tests[i]);
        }
        suite_add_tcase(s, tc);
        suite_add_tcase(s, tcb);
        return tc;
}

static Suite *transport_suite(void)
{
        const TTest *roundtrip[] = {
                test_roundtrip_0_fds,
                test_roundtrip_1_fd,
                test_roundtrip_max_fds,
                test_roundtrip_max_payload,
                test_many_frames_one_write,
                test_queue_mixed_batch,
                test_queue_mixed_batch_in_order,
                test_fds_in_order_rules,
                test_in_order_fds_ahead_of_large_frame,
                test_f4_one_byte_per_write,
                test_f4_one_byte_per_write_fds,
        };
        const TTest *framing[] = {
                test_f4_eof_mid_frame,
                test_f4_eof_mid_header,
                test_eof_between_frames,
                test_f1_short_garbage_eof,
                test_f1_garbage_header,
                test_f2_huge_length,
                test_f2_too_many_nfds,
                test_f2_unknown_version_huge_length,
                test_f3_wrapping_length,
                test_f5_unknown_opcode_version,
        };
        const TTest *fds[] = {
                test_d1_undeclared_fds,
                test_d2_missing_fds,
                test_d3_extra_fds,
                test_d3_held_fds_cap,
                test_d4_fd_on_previous_frame,
                test_d5_two_scm_rights,
                test_d5_too_many_fds,
                test_d6_ctrunc_rlimit,
                test_d9_cloexec_after_malformed_sessions,
        };
        Suite *s = suite_create("transport");
        TCase *tc;

        tc = add_both_buffers(s, "roundtrip", "roundtrip-borrowed", roundtrip,
                              sizeof(roundtrip) / sizeof(roundtrip[0]));
        tcase_add_test(tc, test_unqueue_tail); /* the copying buffer only */
        add_both_buffers(s, "framing", "framing-borrowed", framing, sizeof(framing) / sizeof(framing[0]));
        add_both_buffers(s, "fds", "fds-borrowed", fds, sizeof(fds) / sizeof(fds[0]));

        tc = tcase_create("output");
        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_add_test(tc, test_f8_queue_bounds);
        tcase_add_test(tc, test_f8_peer_never_reads);
        tcase_add_test(tc, test_partial_writes);
        tcase_add_test(tc, test_partial_writes_in_order);
        tcase_add_test(tc, test_partial_writes_in_order_fds_bound);
        tcase_add_test(tc, test_storage);
        tcase_add_test(tc, test_out_storage);
        tcase_add_test(tc, test_out_storage_in_order);
        tcase_add_test(tc, test_out_storage_random);
        tcase_add_test(tc, test_out_storage_random_in_order);
        tcase_add_test(tc, test_sendv);
        tcase_add_test(tc, test_send_with_fds);
        tcase_add_test(tc, test_send_with_fds_cut_ahead);
        tcase_add_test(tc, test_send_with_fds_random);
        tcase_add_test(tc, test_send_with_fds_random_in_order);
        tcase_add_test(tc, test_l4_epipe_no_sigpipe);
        tcase_add_test(tc, test_read_buffer_full);
        tcase_add_test(tc, test_read_buffer_grows);
        tcase_add_test(tc, test_next_frame_borrowed);
        tcase_add_test(tc, test_borrowed_matches_copied);
        tcase_add_test(tc, test_wait_and_timeouts);
        tcase_add_test(tc, test_null_safe);
        suite_add_tcase(s, tc);

        tc = tcase_create("records");
        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_add_test(tc, test_record_roundtrip);
        tcase_add_test(tc, test_record_refused);
        suite_add_tcase(s, tc);

        tc = tcase_create("sendmsg");
        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_add_test(tc, test_sendmsg_flush);
        tcase_add_test(tc, test_sendmsg_flush_in_order);
        tcase_add_test(tc, test_sendmsg_send_with_fds);
        tcase_add_test(tc, test_sendmsg_sendv_direct);
        tcase_add_test(tc, test_sendmsg_send_fd);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return test_run_suite(transport_suite());
}
