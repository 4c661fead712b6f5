/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fuzz-conn: libFuzzer target driving one whole daemon connection (conn.c) with bytes and fuzzer-chosen fds. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "fdutil.h"
#include "log.h"
#include "proto.h"
#include "quota.h"
#include "regtab.h"
#include "transport.h"

/*
 * The input is a little program for a hostile client (one op byte, then
 * its operands; see fuzz_conn_run()). In a frame op, fdspec holds the fds
 * attached (bits 0-2), the nfds declared (bits 4-6) and whether memfds are
 * sealed as REGISTER requires (bit 7). After each input the connection is
 * freed and these must hold, else the target aborts:
 *   - every reply the daemon wrote is a well-formed REPLY frame whose fds
 *     match its nfds (read back through a client-side transport);
 *   - the region table is consistent (count, bytes, lookup by name and by
 *     id, one valid close-on-exec fd per region whose size matches);
 *   - no waiter and no lease survives the connection;
 *   - the process holds exactly one fd per region left, and none once the
 *     table is freed (no fd leaked by any path). Memory leaks are caught
 *     by LeakSanitizer.
 */

#define FUZZ_CHECK(x)                                                                                               \
        do {                                                                                                        \
                if (!(x))                                                                                           \
                        abort();                                                                                    \
        } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argcp, char ***argvp);

enum {
        FUZZ_OP_RAW,
        FUZZ_OP_FRAME,
        FUZZ_OP_HELLO,
        FUZZ_OP_PUMP,
        FUZZ_OP_TIMEOUT,
        FUZZ_OP_SHUTDOWN,
        FUZZ_OP_HELLO_EVENTS, /* HELLO with PROTO_HELLO_EVENTS: watches, events, PUBLISH, OPENV */
        FUZZ_OP_HELLO_IN_ORDER, /* HELLO with EVENTS and FDS_IN_ORDER: replies with fds share sendmsg()s */
        FUZZ_OP_COUNT
};

static const uint16_t fuzz_opcodes[] = {
        PROTO_OP_HELLO, PROTO_OP_PING, PROTO_OP_STATUS, PROTO_OP_CREATE, PROTO_OP_OPEN,  PROTO_OP_RESIZE,
        PROTO_OP_SEAL,  PROTO_OP_STAT, PROTO_OP_LIST,   PROTO_OP_DELETE, PROTO_OP_CHMOD, PROTO_OP_REGISTER,
        0x0300,         0x0000,        0xffff,         PROTO_OP_CHOWN, PROTO_OP_QUOTA,  0x0103,          0x0201,
        PROTO_OP_METRICS,
        /* the EVENTS feature (appended: the seeds above keep their indexes) */
        PROTO_OP_WATCH, PROTO_OP_UNWATCH, PROTO_OP_PUBLISH, PROTO_OP_OPENV, PROTO_OP_STATV, PROTO_EV_CREATED,
};

static struct config fuzz_config;
static struct regtab *fuzz_regtab; /* one per input */

struct fuzz_input {
        const uint8_t *p;
        size_t n;
};

static uint8_t fuzz_byte(struct fuzz_input *in)
{
        uint8_t b;

        if (!in->n)
                return 0;
        b = *in->p++;
        in->n--;
        return b;
}

static size_t fuzz_take(struct fuzz_input *in, size_t want, const uint8_t **bytesp)
{
        size_t n = want < in->n ? want : in->n;

        *bytesp = in->p;
        in->p += n;
        in->n -= n;
        return n;
}

static int fuzz_fd_count(void)
{
        int n = fdutil_count(0);

        FUZZ_CHECK(n >= 0);
        return n;
}

/*
 * One fd of the kind @kind (D7: memfd, pipe, socket, O_PATH); -1 if it
 * cannot be made. With @good, a memfd is what REGISTER wants (sealed
 * SHRINK|GROW, mode 0600), else it lacks the seals (D8).
 */
static int fuzz_make_fd(unsigned kind, bool good)
{
        int p[2], fd;

        switch (kind & 3) {
        case 0:
                fd = memfd_create("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);
                if (fd >= 0 && ftruncate(fd, 4096) < 0) {
                        close(fd);
                        return -1;
                }
                if (fd >= 0 && good) {
                        (void)fchmod(fd, 0600);
                        (void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
                }
                return fd;
        case 1:
                if (pipe2(p, O_CLOEXEC) < 0)
                        return -1;
                close(p[1]);
                return p[0];
        case 2:
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0)
                        return -1;
                close(p[1]);
                return p[0];
        default:
                return open("/tmp", O_PATH | O_CLOEXEC | O_DIRECTORY);
        }
}

/* Send @len bytes with @nfds fds of the kinds in @kinds (2 bits each); our copies are closed after. */
static void fuzz_send(int sock, const void *buf, size_t len, unsigned nfds, unsigned kinds, bool good)
{
        int fds[8];
        unsigned n = 0;

        for (unsigned i = 0; i < nfds && i < 8; i++) {
                int fd = fuzz_make_fd(kinds >> (2 * i), good);

                if (fd >= 0)
                        fds[n++] = fd;
        }
        if (len || n)
                (void)fdutil_sendmsg(sock, buf, len, fds, n, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        for (unsigned i = 0; i < n; i++)
                close(fds[i]);
}

/*
 * Read every reply the daemon sent: each must be a well-formed reply frame (checked before the next read: the
 * payload is borrowed). Return: true at end of stream.
 */
static bool fuzz_drain(struct transport *client)
{
        struct transport_frame f;
        int r;

        for (;;) {
                r = transport_read(client);
                if (r == -EAGAIN)
                        return false;
                if (r < 0)
                        return true; /* the daemon reset the connection */
                /* borrowed, as libiomem reads: its short path takes the daemon's in-order replies with their fds */
                while ((r = transport_next_frame_borrowed(client, &f)) == 1) {
                        FUZZ_CHECK(f.hdr.flags & PROTO_FLAG_REPLY);
                        if (f.hdr.flags & PROTO_FLAG_ERROR) {
                                struct proto_error e;

                                FUZZ_CHECK(proto_error_decode(f.payload, f.hdr.length, &e) == 0);
                                FUZZ_CHECK(e.error < 0 && f.nfds == 0);
                        } else if (f.hdr.opcode == PROTO_OP_METRICS) {
                                struct proto_metrics_reply m;

                                FUZZ_CHECK(proto_metrics_reply_decode(f.payload, f.hdr.length, &m) == 0);
                        }
                        for (unsigned i = 0; i < f.nfds; i++)
                                FUZZ_CHECK(fcntl(f.fds[i], F_GETFD) == FD_CLOEXEC); /* D9 */
                        transport_frame_deinit(&f);
                }
                /* the daemon only ever writes whole, well-formed frames; a cut one is fine only at its close */
                FUZZ_CHECK(r == 0 || (r == -EPIPE && client->eof));
                if (client->eof)
                        return true;
        }
}

static void fuzz_pump(struct conn *c, struct transport *client)
{
        for (int i = 0; i < 4; i++) {
                if (!conn_is_dead(c) && conn_wants_input(c))
                        conn_handle_input(c);
                if (conn_has_output(c))
                        conn_flush(c);
                /* a due deadline of "now": its next turn for requests buffered beyond one turn's work */
                if (!conn_is_dead(c) && conn_deadline(c) && conn_deadline(c) <= conn_now_ns())
                        conn_timeout(c, conn_now_ns());
                fuzz_drain(client);
        }
}

/* The region table agrees with itself and with the kernel. Return: how many regions are leased. */
static uint64_t fuzz_check_regtab(struct regtab *t, const struct conn *c)
{
        uint64_t n = 0, bytes = 0, leased = 0, last_id = 0;

        for (struct region *r = regtab_first(t); r; r = r->tab.next) {
                struct stat st;

                FUZZ_CHECK(r->meta.id > last_id);
                last_id = r->meta.id;
                FUZZ_CHECK(regtab_lookup(t, r->name) == r);
                FUZZ_CHECK(regtab_lookup_id(t, r->meta.id) == r);
                FUZZ_CHECK(strlen(r->name) == r->name_len);
                FUZZ_CHECK(fcntl(r->fd, F_GETFD) == FD_CLOEXEC);
                FUZZ_CHECK(fstat(r->fd, &st) == 0 && (uint64_t)st.st_size == r->size);
                FUZZ_CHECK(r->size <= fuzz_config.max_region_size);
                FUZZ_CHECK(r->lease.conn == NULL || r->lease.conn == c);
                FUZZ_CHECK(!r->lease.conn == !(r->meta.flags & PROTO_REGION_LEASED));
                leased += r->lease.conn != NULL;
                bytes += r->size;
                n++;
        }
        FUZZ_CHECK(n == regtab_count(t));
        FUZZ_CHECK(bytes == regtab_bytes(t));
        FUZZ_CHECK(n <= fuzz_config.max_regions);
        return leased;
}

static void fuzz_conn_run(struct conn *c, int sock, struct transport *client, struct fuzz_input *in)
{
        uint8_t frame[PROTO_HEADER_SIZE + 512];
        const uint8_t *bytes;
        size_t n;

        while (in->n) {
                uint8_t op = fuzz_byte(in) % FUZZ_OP_COUNT;

                switch (op) {
                case FUZZ_OP_RAW: { /* any bytes, any fds: framing and fd-passing violations */
                        uint8_t len = fuzz_byte(in), fdspec = fuzz_byte(in), kinds = fuzz_byte(in);

                        n = fuzz_take(in, len, &bytes);
                        fuzz_send(sock, bytes, n, fdspec & 7, kinds, fdspec & 0x80);
                        break;
                }
                case FUZZ_OP_FRAME: { /* a header that matches its payload, so the dispatch is reached */
                        struct proto_header h = {
                                .magic = PROTO_MAGIC,
                                .version = PROTO_VERSION,
                        };
                        uint8_t opidx = fuzz_byte(in), flags = fuzz_byte(in), len = fuzz_byte(in);
                        uint8_t fdspec = fuzz_byte(in), kinds = fuzz_byte(in);

                        h.opcode = fuzz_opcodes[opidx % (sizeof(fuzz_opcodes) / sizeof(fuzz_opcodes[0]))];
                        h.id = opidx;
                        if (flags & 0x80)
                                h.version = flags & 0x7f;
                        else
                                h.flags = flags & 0x03;
                        n = fuzz_take(in, len, &bytes);
                        h.length = (uint32_t)n;
                        h.nfds = (fdspec >> 4) & 7;
                        proto_header_encode(&h, frame);
                        memcpy(frame + PROTO_HEADER_SIZE, bytes, n);
                        fuzz_send(sock, frame, PROTO_HEADER_SIZE + n, fdspec & 7, kinds, fdspec & 0x80);
                        break;
                }
                case FUZZ_OP_HELLO:
                case FUZZ_OP_HELLO_EVENTS:
                case FUZZ_OP_HELLO_IN_ORDER: {
                        struct proto_hello m = { .min_version = 1, .max_version = 1,
                                                 .flags = op == FUZZ_OP_HELLO_EVENTS ? PROTO_HELLO_EVENTS
                                                          : op == FUZZ_OP_HELLO_IN_ORDER
                                                                  ? PROTO_HELLO_EVENTS | PROTO_HELLO_FDS_IN_ORDER
                                                                  : 0 };
                        struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION,
                                                  .opcode = PROTO_OP_HELLO, .id = 1 };
                        int len = proto_hello_encode(&m, frame + PROTO_HEADER_SIZE, sizeof(frame) - PROTO_HEADER_SIZE);

                        FUZZ_CHECK(len > 0);
                        h.length = (uint32_t)len;
                        proto_header_encode(&h, frame);
                        /* the replies' reader ties fds as it said (fuzz_drain() checks every frame it reads) */
                        if (op == FUZZ_OP_HELLO_IN_ORDER)
                                client->in_fds_in_order = true;
                        fuzz_send(sock, frame, PROTO_HEADER_SIZE + (size_t)len, 0, 0, false);
                        break;
                }
                case FUZZ_OP_PUMP:
                        fuzz_pump(c, client);
                        break;
                case FUZZ_OP_TIMEOUT: /* handshake timeout (F9), parked OPENs, closing grace */
                        if (!conn_is_dead(c))
                                conn_timeout(c, conn_now_ns() + (uint64_t)fuzz_byte(in) * 100000000ULL);
                        break;
                case FUZZ_OP_SHUTDOWN:
                        shutdown(sock, SHUT_WR);
                        break;
                }
                fuzz_pump(c, client);
                fuzz_check_regtab(fuzz_regtab, c);
        }
}

int LLVMFuzzerInitialize(int *argcp, char ***argvp)
{
        (void)argcp;
        (void)argvp;
        log_init();
        log_set_level(LOG_LEVEL_ERROR);
        config_init(&fuzz_config);
        fuzz_config.max_region_size = 1u << 20; /* sparse objects, but keep the fuzzer's memory small */
        fuzz_config.max_regions = 16;
        fuzz_config.max_bytes = 8u << 20;
        fuzz_config.max_out_bytes = 64u * 1024u;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct fuzz_input in = { .p = data, .n = size };
        struct conn_ctx ctx = { .config = &fuzz_config, .start_ns = conn_now_ns() };
        struct transport client;
        struct conn *c = NULL;
        int sv[2], fds_before;
        uint64_t left;

        fds_before = fuzz_fd_count();
        FUZZ_CHECK(regtab_new(&fuzz_regtab) == 0);
        ctx.regtab = fuzz_regtab;
        FUZZ_CHECK(quota_new(fuzz_regtab, &ctx.quota) == 0); /* as server_run() does */
        FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == 0);
        FUZZ_CHECK(conn_new(&ctx, sv[0], &c) == 0); /* sv[0] consumed */
        FUZZ_CHECK(transport_init(&client, sv[1], 0, 0) == 0);

        fuzz_conn_run(c, sv[1], &client, &in);

        /* the client goes away: whatever is in flight is answered or dropped */
        shutdown(sv[1], SHUT_WR);
        for (int i = 0; i < 8 && !conn_is_done(c); i++)
                fuzz_pump(c, &client);
        fuzz_check_regtab(fuzz_regtab, c);
        c = conn_free(c);
        FUZZ_CHECK(ctx.connections == 0);
        FUZZ_CHECK(regtab_waiter_count(fuzz_regtab, REGTAB_WAIT_NAME) == 0);
        FUZZ_CHECK(regtab_waiter_count(fuzz_regtab, REGTAB_WAIT_VERSION) == 0);
        FUZZ_CHECK(fuzz_check_regtab(fuzz_regtab, NULL) == 0); /* L3: leased regions went with their owner */
        fuzz_drain(&client);
        transport_deinit(&client);
        close(sv[1]);

        conn_ctx_release(&ctx);
        ctx.quota = quota_free(ctx.quota);
        left = regtab_count(fuzz_regtab);
        FUZZ_CHECK(fuzz_fd_count() == fds_before + (int)left); /* one fd per region, nothing else */
        fuzz_regtab = regtab_free(fuzz_regtab);
        FUZZ_CHECK(fuzz_fd_count() == fds_before);
        return 0;
}
