/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-it-reserve: CREATE with RESERVE has its fallocate done on a reserver
 * thread, off the event loop, against the real iomemd. A test hook
 * (IOMEMD_TEST_HOOKS with IOMEMD_TEST_RESERVE_GATE=FILE) holds every
 * reservation while FILE exists, so that each test sees one in flight for as
 * long as it needs, without timing: others are served meanwhile, the
 * requester's later requests wait behind it, its name is claimed, its quota
 * charged, and a client gone meanwhile leaves nothing behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdutil.h"
#include "iomem.h"
#include "itutil.h"
#include "proto.h"
#include "transport.h"

#define MIB (1024ull * 1024ull)
#define BIG (64 * MIB)
/* another uid for the tests of the reserver's order (a child connects as it: setresuid, no passwd entry needed) */
#define OTHER_UID 1004u
#define OTHER_GID 3004u

static struct it_daemon daemon_;
static char gate[128];
static char gate_taken[160]; /* the daemon adds a byte for each job a reserver thread takes */
static char gate_ahead_taken[176]; /* and for each RESERVEd growth at GATE.ahead (test_hugetlb_growth_whole) */
static char gate_ran[160];        /* a job that ran waits here while this file exists (GATE.ran) */
static char gate_ran_taken[176];  /* and adds a byte to this one first */
static int settled_fds;
static char raw_message[1100]; /* the text of the last error reply raw_reply() read */

static void gate_close(void)
{
        int fd = open(gate, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

        ck_assert_int_ge(fd, 0);
        close(fd);
}

static void gate_open(void)
{
        ck_assert_int_eq(unlink(gate), 0);
}

static void start(const char *const *extra)
{
        snprintf(gate, sizeof(gate), "/tmp/iomem-reserve-gate.%d", (int)getpid());
        snprintf(gate_taken, sizeof(gate_taken), "%s.taken", gate);
        snprintf(gate_ahead_taken, sizeof(gate_ahead_taken), "%s.ahead.taken", gate);
        snprintf(gate_ran, sizeof(gate_ran), "%s.ran", gate);
        snprintf(gate_ran_taken, sizeof(gate_ran_taken), "%s.ran.taken", gate);
        unlink(gate);
        unlink(gate_taken);
        unlink(gate_ahead_taken);
        unlink(gate_ran);
        unlink(gate_ran_taken);
        setenv("IOMEMD_TEST_HOOKS", "1", 1);
        setenv("IOMEMD_TEST_RESERVE_GATE", gate, 1);
        it_daemon_start(&daemon_, extra);
        settled_fds = it_daemon_settled_fds(&daemon_);
}

/* The daemon holds no more fds than at start (the reserver's jobs closed theirs, bounded polling). */
static void check_daemon_fds(void)
{
        int n = 0;

        for (int i = 0; i < 500; i++) {
                n = it_daemon_settled_fds(&daemon_);
                if (n == settled_fds)
                        break;
                it_sleep_ms(20);
        }
        ck_assert_msg(n == settled_fds, "the daemon holds %d fds, %d at start", n, settled_fds);
}

/* Wait (bounded polling) until reserver threads have taken @n jobs since start(), CREATEs' too: they run. */
static void wait_taken(long n)
{
        struct stat st = { 0 };

        for (int i = 0; i < 3000; i++) {
                if (stat(gate_taken, &st) == 0 && st.st_size >= n)
                        return;
                it_sleep_ms(10);
        }
        ck_abort_msg("reserver threads took %ld jobs, %ld expected", (long)st.st_size, n);
}

/* Wait (bounded polling) until @n jobs since start() have done their work and wait at GATE.ran. */
static void wait_ran(long n)
{
        struct stat st = { 0 };

        for (int i = 0; i < 3000; i++) {
                if (stat(gate_ran_taken, &st) == 0 && st.st_size >= n)
                        return;
                it_sleep_ms(10);
        }
        ck_abort_msg("%ld jobs ran, %ld expected", (long)st.st_size, n);
}

static void finish(void)
{
        unlink(gate);
        unlink(gate_taken);
        unlink(gate_ahead_taken);
        unlink(gate_ran);
        unlink(gate_ran_taken);
        check_daemon_fds();
        it_daemon_stop(&daemon_);
}

/* ---- the wire by hand: a connection whose replies the test reads one by one ---- */

struct raw {
        int fd;
        struct transport t;
        uint8_t out[4096];
        size_t len;
};

static void raw_append(struct raw *w, uint16_t opcode, uint32_t id, const uint8_t *payload, int len)
{
        struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION, .opcode = opcode, .id = id };

        ck_assert_int_ge(len, 0);
        ck_assert_uint_le(w->len + PROTO_HEADER_SIZE + (size_t)len, sizeof(w->out));
        h.length = (uint32_t)len;
        proto_header_encode(&h, w->out + w->len);
        memcpy(w->out + w->len + PROTO_HEADER_SIZE, payload, (size_t)len);
        w->len += PROTO_HEADER_SIZE + (size_t)len;
}

static void raw_append_create(struct raw *w, uint32_t id, const char *name, uint64_t size, uint32_t flags,
                              uint16_t backend)
{
        struct proto_create m = { .size = size, .flags = flags, .backend = backend, .name = name };
        uint8_t payload[512];

        raw_append(w, PROTO_OP_CREATE, id, payload, proto_create_encode(&m, payload, sizeof(payload)));
}

static void raw_append_resize(struct raw *w, uint32_t id, const char *name, uint64_t size)
{
        struct proto_resize m = { .size = size, .name = name };
        uint8_t payload[512];

        raw_append(w, PROTO_OP_RESIZE, id, payload, proto_resize_encode(&m, payload, sizeof(payload)));
}

static void raw_append_seal(struct raw *w, uint32_t id, const char *name, uint32_t seals)
{
        struct proto_seal m = { .seals = seals, .name = name };
        uint8_t payload[512];

        raw_append(w, PROTO_OP_SEAL, id, payload, proto_seal_encode(&m, payload, sizeof(payload)));
}

static void raw_append_ping(struct raw *w, uint32_t id)
{
        struct proto_ping m = { 0 };
        uint8_t payload[64];

        raw_append(w, PROTO_OP_PING, id, payload, proto_ping_encode(&m, payload, sizeof(payload)));
}

/* Return: a new socket connected to the daemon (the peer credentials are this process's now), or -1. */
static int raw_socket(void)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        memcpy(sa.sun_path, daemon_.socket, strlen(daemon_.socket) + 1);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                close(fd);
                fd = -1;
        }
        return fd;
}

/* Queue a HELLO (id 1) on @fd (connected, consumed): the frames appended next go in the same write (raw_send()). */
static void raw_connect_consume_fd(struct raw *w, int fd)
{
        struct proto_hello hello = { .min_version = PROTO_VERSION, .max_version = PROTO_VERSION,
                                     .flags = PROTO_HELLO_FDS_IN_ORDER | PROTO_HELLO_PAGE_INFO };
        uint8_t payload[128];

        w->len = 0;
        w->fd = fd;
        ck_assert_int_ge(w->fd, 0);
        ck_assert_int_eq(transport_init(&w->t, w->fd, 0, 0), 0);
        w->t.in_fds_in_order = true;
        raw_append(w, PROTO_OP_HELLO, 1, payload, proto_hello_encode(&hello, payload, sizeof(payload)));
}

/* Connect and queue a HELLO (id 1), as this process (root). */
static void raw_connect(struct raw *w)
{
        raw_connect_consume_fd(w, raw_socket());
}

/*
 * Connect as OTHER_UID/OTHER_GID and queue a HELLO: a child takes that identity, connects (the daemon reads the
 * peer's credentials at connect) and passes the socket back. Needs root and a daemon directory others may
 * enter (start_for_others()).
 */
static void raw_connect_other(struct raw *w)
{
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } u;
        char x = 0;
        struct iovec iov = { .iov_base = &x, .iov_len = 1 };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
        struct cmsghdr *cm;
        int sv[2], status, fd = -1;
        pid_t pid;

        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        fflush(NULL);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                close(sv[0]);
                if (setgroups(0, NULL) < 0 || setresgid(OTHER_GID, OTHER_GID, OTHER_GID) < 0 ||
                    setresuid(OTHER_UID, OTHER_UID, OTHER_UID) < 0)
                        _exit(1);
                fd = raw_socket();
                if (fd < 0)
                        _exit(2);
                cm = CMSG_FIRSTHDR(&msg);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(cm), &fd, sizeof(int));
                _exit(sendmsg(sv[1], &msg, MSG_NOSIGNAL) == 1 ? 0 : 3);
        }
        close(sv[1]);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child connecting as uid %u: status 0x%x",
                      OTHER_UID, status);
        ck_assert_int_eq(recvmsg(sv[0], &msg, MSG_CMSG_CLOEXEC), 1);
        close(sv[0]);
        cm = CMSG_FIRSTHDR(&msg);
        ck_assert(cm && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len == CMSG_LEN(sizeof(int)));
        memcpy(&fd, CMSG_DATA(cm), sizeof(int));
        raw_connect_consume_fd(w, fd);
}

static void raw_send(struct raw *w)
{
        ck_assert_int_eq(send(w->fd, w->out, w->len, MSG_NOSIGNAL), (ssize_t)w->len); /* one read by the daemon */
        w->len = 0;
}

/* The next reply: it must answer request @id. Return: its error (0 for success); a CREATE's region flags in *flagsp. */
static int raw_reply(struct raw *w, uint32_t id, uint32_t *flagsp)
{
        struct transport_frame f;
        int error = 0;

        ck_assert_int_eq(transport_recv_blocking(&w->t, &f, 120000), 1);
        ck_assert_msg(f.hdr.id == id, "reply to request %u where %u was expected", f.hdr.id, id);
        if (f.hdr.flags & PROTO_FLAG_ERROR) {
                struct proto_error e;

                ck_assert_int_eq(proto_error_decode(f.payload, f.hdr.length, &e), 0);
                error = e.error;
                snprintf(raw_message, sizeof(raw_message), "%s", e.message);
        } else if (f.hdr.opcode == PROTO_OP_CREATE) {
                struct proto_region_info info;
                struct stat st;

                ck_assert_int_eq(proto_region_info_decode(f.payload, f.hdr.length, &info), 0);
                ck_assert_uint_eq(f.nfds, 1);
                ck_assert_int_eq(fstat(f.fds[0], &st), 0);
                ck_assert_uint_eq((uint64_t)st.st_size, info.size);
                if (flagsp)
                        *flagsp = info.flags;
        }
        transport_frame_deinit(&f);
        return error;
}

/* Return: true if a reply (or the end of the stream) waits to be read on @w, without waiting. */
static bool raw_readable(struct raw *w)
{
        struct pollfd p = { .fd = w->fd, .events = POLLIN };

        return w->t.in_start != w->t.in_end || poll(&p, 1, 0) == 1; /* buffered, or on the socket */
}

static void raw_close(struct raw *w)
{
        transport_deinit(&w->t);
        close(w->fd);
        w->fd = -1;
}

/* ---- helpers through libiomem ---- */

static struct iomem_quota quota_of(struct iomem_client *c)
{
        struct iomem_quota q = { 0 };

        ck_assert_int_eq(iomem_quota(c, &q), 0);
        return q;
}

/* Wait (bounded polling, not a timed assertion) until @c's uid is charged @bytes in @regions regions. */
static void wait_charged(struct iomem_client *c, uint64_t bytes, uint64_t regions)
{
        struct iomem_quota q = { 0 };

        for (int i = 0; i < 3000; i++) {
                q = quota_of(c);
                if (q.bytes == bytes && q.regions == regions)
                        return;
                it_sleep_ms(10);
        }
        ck_abort_msg("charged %llu bytes in %llu regions, %llu in %llu expected", (unsigned long long)q.bytes,
                     (unsigned long long)q.regions, (unsigned long long)bytes, (unsigned long long)regions);
}

static int create(struct iomem_client *c, const char *name, uint64_t size, uint32_t flags)
{
        struct iomem_create_opts o = { .flags = flags };
        struct iomem_region *r = NULL;
        int k = iomem_create(c, name, size, &o, &r);

        iomem_region_free(r);
        return k;
}

/*
 * The attack: a reservation's fallocate held the event loop (0.1-0.5 s per GiB), so a uid reserving on many
 * connections at once froze every other client. Now, while one is in flight (held by the gate), another
 * connection is served: PING, STATUS, OPEN of another region, and a CREATE of its own. The requester's own
 * later request (a PING pipelined behind its CREATE) is answered only after the CREATE, in request order.
 * On main this fails at "no reply yet": the reservation is charged only once made, with its reply queued.
 */
START_TEST(test_others_served_while_reserving)
{
        struct iomem_client *other;
        struct iomem_region *reg = NULL;
        struct iomem_status st;
        struct raw a;
        uint32_t flags = 0;

        start(NULL);
        other = it_client_connect(&daemon_);
        ck_assert_int_eq(create(other, "rs.small", 4096, 0), 0);
        gate_close();
        raw_connect(&a);
        raw_append_create(&a, 2, "rs.big", BIG, PROTO_CREATE_RESERVE, 0);
        raw_append_ping(&a, 3);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0); /* HELLO */
        /* the reservation is charged when it starts: then it is in flight */
        wait_charged(other, BIG + 4096, 2);

        ck_assert_int_eq(iomem_ping(other), 0);
        ck_assert_int_eq(iomem_status(other, &st), 0);
        ck_assert_int_eq(iomem_open(other, "rs.small", 0, 0, &reg), 0);
        reg = iomem_region_free(reg);
        ck_assert_int_eq(create(other, "rs.other", 4096, 0), 0);
        ck_assert_msg(!raw_readable(&a), "the reserving connection got a reply while its reservation is held");

        gate_open();
        ck_assert_int_eq(raw_reply(&a, 2, &flags), 0); /* the CREATE first ... */
        ck_assert(flags & PROTO_REGION_RESERVED);
        ck_assert_int_eq(raw_reply(&a, 3, NULL), 0); /* ... then the PING sent after it */
        ck_assert_int_eq(iomem_open(other, "rs.big", 0, 0, &reg), 0);
        reg = iomem_region_free(reg);
        wait_charged(other, BIG + 2 * 4096, 3);
        raw_close(&a);
        ck_assert_int_eq(iomem_delete(other, "rs.big"), 0);
        ck_assert_int_eq(iomem_delete(other, "rs.small"), 0);
        ck_assert_int_eq(iomem_delete(other, "rs.other"), 0);
        wait_charged(other, 0, 0);
        iomem_disconnect(other);
        finish();
}
END_TEST

/*
 * Many reservations at once, more than there are reserver threads: every one is answered, in order on each
 * connection, and PINGs of another connection go through while all are held.
 */
START_TEST(test_many_reservations_at_once)
{
        enum { N = 6 };
        struct iomem_client *other;
        struct raw a[N];
        char name[32];

        start(NULL);
        other = it_client_connect(&daemon_);
        gate_close();
        for (int i = 0; i < N; i++) {
                snprintf(name, sizeof(name), "rs.many.%d", i);
                raw_connect(&a[i]);
                raw_append_create(&a[i], 2, name, 4 * MIB, PROTO_CREATE_RESERVE, 0);
                raw_append_ping(&a[i], 3);
                raw_send(&a[i]);
                ck_assert_int_eq(raw_reply(&a[i], 1, NULL), 0);
        }
        wait_charged(other, N * 4 * MIB, N);
        for (int i = 0; i < 10; i++)
                ck_assert_int_eq(iomem_ping(other), 0);
        for (int i = 0; i < N; i++)
                ck_assert(!raw_readable(&a[i]));
        gate_open();
        for (int i = 0; i < N; i++) {
                ck_assert_int_eq(raw_reply(&a[i], 2, NULL), 0);
                ck_assert_int_eq(raw_reply(&a[i], 3, NULL), 0);
                raw_close(&a[i]);
        }
        for (int i = 0; i < N; i++) {
                snprintf(name, sizeof(name), "rs.many.%d", i);
                ck_assert_int_eq(iomem_delete(other, name), 0);
        }
        wait_charged(other, 0, 0);
        iomem_disconnect(other);
        finish();
}
END_TEST

/*
 * The name is claimed while its reservation runs: CREATE (with or without EXCLUSIVE), REGISTER and PUBLISH of it
 * are -EBUSY; OPEN and DELETE find nothing (-ENOENT); an OPEN with WAIT is answered once it is made.
 */
START_TEST(test_name_claimed_while_reserving)
{
        struct iomem_client *other = NULL, *waiter = NULL;
        struct iomem_region *reg = NULL, *local = NULL;
        struct raw a;

        start(NULL);
        other = it_client_connect_flags(&daemon_, IOMEM_CONNECT_EVENTS);
        waiter = it_client_connect(&daemon_);
        gate_close();
        raw_connect(&a);
        raw_append_create(&a, 2, "rs.claimed", 4 * MIB, PROTO_CREATE_RESERVE, 0);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
        wait_charged(other, 4 * MIB, 1);

        ck_assert_int_eq(create(other, "rs.claimed", 4 * MIB, 0), -EBUSY);
        ck_assert(strstr(iomem_client_error_message(other), "in progress"));
        ck_assert_int_eq(create(other, "rs.claimed", 4 * MIB, IOMEM_CREATE_EXCLUSIVE), -EBUSY);
        ck_assert_int_eq(create(other, "rs.claimed", 8 * MIB, IOMEM_CREATE_RESERVE), -EBUSY);
        ck_assert_int_eq(iomem_region_new_local(4096, IOMEM_BACKEND_MEMFD, 0, &local), 0);
        ck_assert_int_eq(iomem_region_seal(local, IOMEM_SEAL_SHRINK | IOMEM_SEAL_GROW | IOMEM_SEAL_WRITE), 0);
        ck_assert_int_eq(iomem_register(other, "rs.claimed", local, 0, 0, NULL), -EBUSY);
        ck_assert_int_eq(iomem_publish(other, "rs.claimed", local, NULL, NULL), -EBUSY);
        local = iomem_region_free(local);
        ck_assert_int_eq(iomem_open(other, "rs.claimed", 0, 0, &reg), -ENOENT);
        ck_assert_int_eq(iomem_delete(other, "rs.claimed"), -ENOENT);
        /* still nothing for the requester, whose reservation is not refunded by any of these */
        ck_assert(!raw_readable(&a));
        wait_charged(other, 4 * MIB, 1);

        gate_open();
        /* OPEN with WAIT: answered now, or when the region appears */
        ck_assert_int_eq(iomem_open(waiter, "rs.claimed", 0, 60000, &reg), 0);
        ck_assert_uint_eq(iomem_region_size(reg), 4 * MIB);
        reg = iomem_region_free(reg);
        ck_assert_int_eq(raw_reply(&a, 2, NULL), 0);
        /* once made, a CREATE of the same size is an OPEN, as for any region */
        ck_assert_int_eq(create(other, "rs.claimed", 4 * MIB, 0), 0);
        ck_assert_int_eq(create(other, "rs.claimed", 4 * MIB, IOMEM_CREATE_EXCLUSIVE), -EEXIST);
        raw_close(&a);
        ck_assert_int_eq(iomem_delete(other, "rs.claimed"), 0);
        wait_charged(other, 0, 0);
        iomem_disconnect(waiter);
        iomem_disconnect(other);
        finish();
}
END_TEST

/*
 * A client that goes away while its reservation runs: nothing is made, its quota is refunded, its name is free
 * again, and the daemon closes the object's fd (once the fallocate returns). Also for a reservation that was
 * still queued (both reserver threads busy): taken out of the queue at once.
 */
START_TEST(test_disconnect_while_reserving)
{
        enum { N = 4 }; /* more than the reserver's 2 threads: some are queued */
        struct iomem_client *other;
        struct iomem_region *reg = NULL;
        struct raw a[N];
        char name[32];

        start(NULL);
        other = it_client_connect(&daemon_);
        gate_close();
        for (int i = 0; i < N; i++) {
                snprintf(name, sizeof(name), "rs.gone.%d", i);
                raw_connect(&a[i]);
                raw_append_create(&a[i], 2, name, 8 * MIB, PROTO_CREATE_RESERVE, 0);
                raw_send(&a[i]);
                ck_assert_int_eq(raw_reply(&a[i], 1, NULL), 0);
        }
        wait_charged(other, N * 8 * MIB, N);
        wait_taken(1); /* one uid's jobs run one at a time: the others wait in the queue */
        /* every job holds its object's fd: queued or running */
        ck_assert_uint_eq(it_metric(other, "iomemd_jobs"), N);
        for (int i = 0; i < N; i++)
                raw_close(&a[i]);
        /* refunded at once, though two fallocates are still held by the gate */
        wait_charged(other, 0, 0);
        /* the queued ones are gone with their requesters; the running one keeps its fd until it returns */
        ck_assert_uint_eq(it_metric(other, "iomemd_jobs"), 1);
        for (int i = 0; i < N; i++) {
                snprintf(name, sizeof(name), "rs.gone.%d", i);
                ck_assert_int_eq(iomem_open(other, name, 0, 0, &reg), -ENOENT);
        }
        gate_open();
        for (int i = 0; i < N; i++) {
                snprintf(name, sizeof(name), "rs.gone.%d", i);
                ck_assert_int_eq(iomem_open(other, name, 0, 0, &reg), -ENOENT);
                /* the name is free: a new reservation of it is made */
                ck_assert_int_eq(create(other, name, 8 * MIB, IOMEM_CREATE_RESERVE | IOMEM_CREATE_EXCLUSIVE), 0);
                ck_assert_int_eq(iomem_delete(other, name), 0);
        }
        wait_charged(other, 0, 0);
        for (int i = 0; i < 1000 && it_metric(other, "iomemd_jobs") != 0; i++)
                it_sleep_ms(10);
        ck_assert_uint_eq(it_metric(other, "iomemd_jobs"), 0);
        iomem_disconnect(other);
        finish(); /* the abandoned objects' fds are closed */
}
END_TEST

/*
 * A peer that only shuts its sending side (shutdown(SHUT_WR)) after its requests still gets every reply, in
 * order: the daemon, which does not read its socket meanwhile, tells that from a peer gone (which abandons).
 */
START_TEST(test_half_closed_peer_still_answered)
{
        struct iomem_client *other;
        uint32_t flags = 0;
        struct raw a;

        start(NULL);
        other = it_client_connect(&daemon_);
        gate_close();
        raw_connect(&a);
        raw_append_create(&a, 2, "rs.half", 4 * MIB, PROTO_CREATE_RESERVE, 0);
        raw_append_ping(&a, 3);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
        wait_charged(other, 4 * MIB, 1);
        ck_assert_int_eq(shutdown(a.fd, SHUT_WR), 0);
        for (int i = 0; i < 20; i++)
                ck_assert_int_eq(iomem_ping(other), 0);
        wait_charged(other, 4 * MIB, 1); /* not abandoned */
        gate_open();
        ck_assert_int_eq(raw_reply(&a, 2, &flags), 0);
        ck_assert(flags & PROTO_REGION_RESERVED);
        ck_assert_int_eq(raw_reply(&a, 3, NULL), 0);
        raw_close(&a);
        ck_assert_int_eq(iomem_delete(other, "rs.half"), 0);
        wait_charged(other, 0, 0);
        iomem_disconnect(other);
        finish();
}
END_TEST

/*
 * Quotas are charged when a reservation starts: a second one that would not fit beside one in flight is
 * -EDQUOT at once (so a uid cannot queue more than its quota), and max-regions counts it too.
 */
START_TEST(test_quota_charged_while_reserving)
{
        static const char *const extra[] = { "--quota-bytes", "12M", "--max-regions", "2", NULL };
        struct iomem_client *other;
        struct raw a;

        start(extra);
        other = it_client_connect(&daemon_);
        gate_close();
        raw_connect(&a);
        raw_append_create(&a, 2, "rs.q1", 8 * MIB, PROTO_CREATE_RESERVE, 0);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
        wait_charged(other, 8 * MIB, 1);
        ck_assert_int_eq(create(other, "rs.q2", 8 * MIB, IOMEM_CREATE_RESERVE), -EDQUOT);
        ck_assert(strstr(iomem_client_error_message(other), "quota-bytes"));
        ck_assert_int_eq(create(other, "rs.q2", 4 * MIB, 0), 0);
        ck_assert_int_eq(create(other, "rs.q3", 4096, 0), -EDQUOT); /* the one in flight counts: 2 regions */
        ck_assert(strstr(iomem_client_error_message(other), "max-regions"));
        gate_open();
        ck_assert_int_eq(raw_reply(&a, 2, NULL), 0);
        wait_charged(other, 12 * MIB, 2);
        raw_close(&a);
        ck_assert_int_eq(iomem_delete(other, "rs.q1"), 0);
        ck_assert_int_eq(iomem_delete(other, "rs.q2"), 0);
        wait_charged(other, 0, 0);
        iomem_disconnect(other);
        finish();
}
END_TEST

/* Return: the bytes of memory (or blocks) @fd's object has, past its end too. */
static uint64_t allocated(int fd)
{
        struct stat st;

        ck_assert_int_eq(fstat(fd, &st), 0);
        return (uint64_t)st.st_blocks * 512;
}

/* Wait (bounded polling) until @fd's object has @bytes allocated. */
static void wait_allocated(int fd, uint64_t bytes)
{
        for (int i = 0; i < 3000 && allocated(fd) != bytes; i++)
                it_sleep_ms(10);
        ck_assert_msg(allocated(fd) == bytes, "%llu bytes allocated, %llu expected",
                      (unsigned long long)allocated(fd), (unsigned long long)bytes);
}

static uint64_t stat_size(struct iomem_client *c, const char *name)
{
        struct iomem_stat st;

        ck_assert_int_eq(iomem_stat(c, name, &st), 0);
        return st.size;
}

/*
 * A reservation that fails on its thread answers the CREATE with the error and its text, refunds the quota,
 * leaves no region and no fd, and the connection goes on (its pipelined PING answered after). The file
 * backend on a 1 MiB tmpfs: it checks the free space at creation (R4), so two reservations of 768 KiB both
 * start, held by the gate, and once let go one fallocate (or both, if they run at once) gets -ENOSPC. Needs to mount a tmpfs (root, not in
 * every container): else skipped, saying so.
 */
START_TEST(test_reservation_fails_cleanly)
{
        char dir[64];
        struct iomem_client *other;
        struct iomem_region *reg = NULL;
        struct raw a[2];
        int r[2], made = -1;
        char name[32], failed_text[1100] = "";

        snprintf(dir, sizeof(dir), "/tmp/iomem-reserve-enospc.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(dir));
        if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0700") < 0) {
                fprintf(stderr, "test_reservation_fails_cleanly: cannot mount a tmpfs (%s): skipped\n",
                        strerror(errno));
                rmdir(dir);
                return;
        }
        {
                const char *const extra[] = { "--tmpdir", dir, NULL };

                start(extra);
        }
        other = it_client_connect(&daemon_);
        gate_close();
        for (int i = 0; i < 2; i++) {
                snprintf(name, sizeof(name), "rs.full.%d", i);
                raw_connect(&a[i]);
                raw_append_create(&a[i], 2, name, 768 * 1024, PROTO_CREATE_RESERVE, PROTO_BACKEND_FILE);
                raw_append_ping(&a[i], 3);
                raw_send(&a[i]);
                ck_assert_int_eq(raw_reply(&a[i], 1, NULL), 0);
        }
        wait_charged(other, 2 * 768 * 1024, 2);
        gate_open();
        for (int i = 0; i < 2; i++) {
                r[i] = raw_reply(&a[i], 2, NULL);
                if (r[i] < 0)
                        snprintf(failed_text, sizeof(failed_text), "%s", raw_message);
                ck_assert_int_eq(raw_reply(&a[i], 3, NULL), 0); /* the connection goes on */
                raw_close(&a[i]);
                if (r[i] == 0)
                        made = i;
        }
        /* both fallocates may run at once and each fail half-way (tmpfs undoes each): at least one fails */
        ck_assert_msg((r[0] == 0 || r[0] == -ENOSPC) && (r[1] == 0 || r[1] == -ENOSPC) && (r[0] || r[1]),
                      "results %d %d", r[0], r[1]);
        /* only the one made is charged, and it alone exists */
        wait_charged(other, made >= 0 ? 768 * 1024 : 0, made >= 0 ? 1 : 0);
        for (int i = 0; i < 2; i++) {
                snprintf(name, sizeof(name), "rs.full.%d", i);
                ck_assert_int_eq(iomem_open(other, name, 0, 0, &reg), i == made ? 0 : -ENOENT);
                reg = iomem_region_free(reg);
        }
        ck_assert_msg(strstr(failed_text, "cannot reserve the memory"), "text: %s", failed_text);
        /* the space of the one that failed is free again: a reservation that fits is made */
        {
                struct iomem_create_opts o = { .flags = IOMEM_CREATE_RESERVE, .backend = IOMEM_BACKEND_FILE };

                o.flags |= IOMEM_CREATE_RESIZABLE;
                ck_assert_int_eq(iomem_create(other, "rs.more", 200 * 1024, &o, &reg), 0);
                reg = iomem_region_free(reg);
        }
        /* a RESIZE that does not fit: -ENOSPC with its text, the size and the charge as they were */
        ck_assert_int_eq(iomem_resize(other, "rs.more", 4 * MIB), -ENOSPC);
        ck_assert_msg(strstr(iomem_client_error_message(other), "cannot reserve the memory of the new size"),
                      "text: %s", iomem_client_error_message(other));
        ck_assert_uint_eq(stat_size(other, "rs.more"), 200 * 1024);
        wait_charged(other, (made >= 0 ? 768 * 1024 : 0) + 200 * 1024, made >= 0 ? 2 : 1);
        ck_assert_int_eq(iomem_resize(other, "rs.more", 256 * 1024), 0);
        if (made >= 0) {
                snprintf(name, sizeof(name), "rs.full.%d", made);
                ck_assert_int_eq(iomem_delete(other, name), 0);
        }
        ck_assert_int_eq(iomem_delete(other, "rs.more"), 0);
        wait_charged(other, 0, 0);
        iomem_disconnect(other);
        finish();
        ck_assert_int_eq(umount(dir), 0);
        rmdir(dir);
}
END_TEST

/*
 * A RESIZE growing a RESERVEd region reserves the new bytes on a reserver thread too: others are served
 * meanwhile (STAT still says the old size: the size changes once the memory is there), another RESIZE of the
 * region is -EBUSY, the growth is charged at once, and the requester's PING pipelined after it comes after.
 * On main this fails at "no reply yet": the growth was made on the loop before anything else was read.
 */
START_TEST(test_resize_off_the_loop)
{
        struct iomem_client *other;
        struct iomem_region *reg = NULL;
        struct raw a;

        start(NULL);
        other = it_client_connect(&daemon_);
        ck_assert_int_eq(create(other, "rz", 4 * MIB, IOMEM_CREATE_RESERVE | IOMEM_CREATE_RESIZABLE), 0);
        gate_close();
        raw_connect(&a);
        raw_append_resize(&a, 2, "rz", BIG);
        raw_append_ping(&a, 3);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
        wait_charged(other, BIG, 1); /* the growth is charged when it starts */
        ck_assert_int_eq(iomem_ping(other), 0);
        ck_assert_uint_eq(stat_size(other, "rz"), 4 * MIB);
        ck_assert_int_eq(iomem_resize(other, "rz", 8 * MIB), -EBUSY);
        ck_assert_int_eq(iomem_resize(other, "rz", 1 * MIB), -EBUSY);
        ck_assert_msg(!raw_readable(&a), "the resizing connection got a reply while its reservation is held");
        gate_open();
        ck_assert_int_eq(raw_reply(&a, 2, NULL), 0);
        ck_assert_int_eq(raw_reply(&a, 3, NULL), 0);
        raw_close(&a);
        ck_assert_uint_eq(stat_size(other, "rz"), BIG);
        ck_assert_int_eq(iomem_open(other, "rz", 0, 0, &reg), 0);
        ck_assert_uint_eq(allocated(iomem_region_fd(reg)), BIG); /* every byte reserved */
        reg = iomem_region_free(reg);
        wait_charged(other, BIG, 1);
        ck_assert_int_eq(iomem_delete(other, "rz"), 0);
        wait_charged(other, 0, 0);
        iomem_disconnect(other);
        finish();
}
END_TEST

/*
 * RESIZE @name to @size once no reservation holds it (bounded polling): an abandoned RESIZE's job keeps its
 * region -EBUSY until its fallocate has returned. Return: what the RESIZE that was not -EBUSY said.
 */
/* Wait (bounded polling) until the daemon counts @n connections: a closed one's job is cancelled by then. */
static void wait_connections(struct iomem_client *c, uint64_t n)
{
        struct iomem_status st = { 0 };

        for (int i = 0; i < 3000; i++) {
                ck_assert_int_eq(iomem_status(c, &st), 0);
                if (st.connections == n)
                        return;
                it_sleep_ms(10);
        }
        ck_abort_msg("%llu connections, %llu expected", (unsigned long long)st.connections, (unsigned long long)n);
}

static int resize_when_free(struct iomem_client *c, const char *name, uint64_t size)
{
        int k = -EBUSY;

        for (int i = 0; i < 3000 && k == -EBUSY; i++) {
                k = iomem_resize(c, name, size);
                if (k == -EBUSY)
                        it_sleep_ms(10);
        }
        return k;
}

/*
 * A RESIZE's reservation that ends without the resize: its requester gone (the growth refunded once its job is
 * gone, the memory reserved past the end given back then, the region free for another RESIZE), the
 * region deleted meanwhile (-ENOENT), or its size changed by a holder meanwhile (-EBUSY, the memory given back).
 */
START_TEST(test_resize_reservation_abandoned)
{
        struct iomem_client *other;
        struct iomem_region *reg = NULL;
        struct raw a;
        int fd;

        start(NULL);
        other = it_client_connect(&daemon_);
        ck_assert_int_eq(create(other, "rz", 4 * MIB, IOMEM_CREATE_RESERVE | IOMEM_CREATE_RESIZABLE), 0);
        ck_assert_int_eq(iomem_open(other, "rz", 0, 0, &reg), 0);
        fd = iomem_region_fd(reg);
        ck_assert_int_ge(fd, 0);
        ck_assert_uint_eq(allocated(fd), 4 * MIB);

        /* the requester goes */
        gate_close();
        raw_connect(&a);
        raw_append_resize(&a, 2, "rz", BIG);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
        wait_charged(other, BIG, 1);
        wait_taken(2); /* the CREATE's and this one: held by the gate (a job still queued is refunded at once) */
        raw_close(&a);
        wait_connections(other, 1); /* the hang-up is seen: the job cancelled, still held */
        ck_assert_uint_eq(quota_of(other).bytes, BIG); /* charged until the job is gone */
        gate_open();
        wait_charged(other, 4 * MIB, 1);
        wait_allocated(fd, 4 * MIB);
        ck_assert_uint_eq(stat_size(other, "rz"), 4 * MIB);
        ck_assert_int_eq(resize_when_free(other, "rz", 8 * MIB), 0); /* -EBUSY until the abandoned job is gone */
        ck_assert_uint_eq(allocated(fd), 8 * MIB);

        /* a holder changes the size meanwhile */
        gate_close();
        raw_connect(&a);
        raw_append_resize(&a, 2, "rz", BIG);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
        wait_charged(other, BIG, 1);
        ck_assert_int_eq(ftruncate(fd, 6 * MIB), 0);
        gate_open();
        ck_assert_int_eq(raw_reply(&a, 2, NULL), -EBUSY);
        ck_assert_msg(strstr(raw_message, "size changed"), "text: %s", raw_message);
        raw_close(&a);
        wait_allocated(fd, 6 * MIB);
        ck_assert_uint_eq(stat_size(other, "rz"), 6 * MIB);
        reg = iomem_region_free(reg);

        /* the region is deleted meanwhile */
        gate_close();
        raw_connect(&a);
        raw_append_resize(&a, 2, "rz", BIG);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
        wait_charged(other, BIG, 1);
        ck_assert_int_eq(iomem_delete(other, "rz"), 0);
        gate_open();
        ck_assert_int_eq(raw_reply(&a, 2, NULL), -ENOENT);
        raw_close(&a);
        wait_charged(other, 0, 0);
        iomem_disconnect(other);
        finish(); /* the job's copy of the fd is closed */
}
END_TEST

/*
 * The hostile review's attack: a holder of a writable fd runs fallocate() on it (shmem holds the inode lock
 * throughout, 0.1-0.5 s per GiB), and a SEAL (F_ADD_SEALS) or a RESIZE (ftruncate) of that region, which wait
 * for that lock, froze the event loop. Now both run as reserver jobs: while one is held (by the gate), another
 * connection is served and concurrent RESIZEs and SEALs of the region are -EBUSY; then it is answered as
 * before. On main this fails at the first wait_taken(): SEAL and RESIZE ran on the loop, no job was taken.
 */
START_TEST(test_seal_and_resize_off_the_loop)
{
        struct iomem_client *other;
        struct iomem_stat st;
        uint32_t seals = 0;
        struct raw a;

        start(NULL);
        other = it_client_connect(&daemon_);
        ck_assert_int_eq(create(other, "sr", 4 * MIB, IOMEM_CREATE_RESIZABLE), 0);

        /* a RESIZE (a growth of a region that is not RESERVEd: the plain ftruncate) */
        gate_close();
        raw_connect(&a);
        raw_append_resize(&a, 2, "sr", 8 * MIB);
        raw_append_ping(&a, 3);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
        wait_taken(1);
        wait_charged(other, 8 * MIB, 1); /* the growth is charged while it is in flight */
        ck_assert_int_eq(iomem_ping(other), 0);
        ck_assert_int_eq(iomem_resize(other, "sr", 2 * MIB), -EBUSY);
        ck_assert_int_eq(iomem_seal(other, "sr", IOMEM_SEAL_GROW, &seals), -EBUSY);
        ck_assert_msg(!raw_readable(&a), "the RESIZE was answered while its job is held");
        ck_assert_uint_eq(stat_size(other, "sr"), 4 * MIB);
        gate_open();
        ck_assert_int_eq(raw_reply(&a, 2, NULL), 0); /* the RESIZE first ... */
        ck_assert_int_eq(raw_reply(&a, 3, NULL), 0); /* ... then the PING sent after it */
        ck_assert_uint_eq(stat_size(other, "sr"), 8 * MIB);
        wait_charged(other, 8 * MIB, 1);

        /* a shrink */
        gate_close();
        raw_append_resize(&a, 4, "sr", 2 * MIB);
        raw_send(&a);
        wait_taken(2);
        ck_assert_int_eq(iomem_ping(other), 0);
        ck_assert_msg(!raw_readable(&a), "the RESIZE was answered while its job is held");
        gate_open();
        ck_assert_int_eq(raw_reply(&a, 4, NULL), 0);
        ck_assert_uint_eq(stat_size(other, "sr"), 2 * MIB);
        wait_charged(other, 2 * MIB, 1);

        /* a SEAL */
        gate_close();
        raw_append_seal(&a, 5, "sr", PROTO_SEAL_GROW);
        raw_append_ping(&a, 6);
        raw_send(&a);
        wait_taken(3);
        ck_assert_int_eq(iomem_ping(other), 0);
        ck_assert_int_eq(iomem_seal(other, "sr", IOMEM_SEAL_SHRINK, &seals), -EBUSY);
        ck_assert_int_eq(iomem_resize(other, "sr", 4 * MIB), -EBUSY);
        ck_assert_msg(!raw_readable(&a), "the SEAL was answered while its job is held");
        ck_assert_int_eq(iomem_stat(other, "sr", &st), 0);
        ck_assert_uint_eq(st.seals & IOMEM_SEAL_GROW, 0);
        gate_open();
        ck_assert_int_eq(raw_reply(&a, 5, NULL), 0);
        ck_assert_int_eq(raw_reply(&a, 6, NULL), 0);
        ck_assert_int_eq(iomem_stat(other, "sr", &st), 0);
        ck_assert_uint_ne(st.seals & IOMEM_SEAL_GROW, 0);

        /* errors are what they were: a sealed growth is -EPERM, the region unchanged */
        ck_assert_int_eq(iomem_resize(other, "sr", 4 * MIB), -EPERM);
        ck_assert_uint_eq(stat_size(other, "sr"), 2 * MIB);
        wait_charged(other, 2 * MIB, 1);
        raw_close(&a);
        ck_assert_int_eq(iomem_delete(other, "sr"), 0);
        wait_charged(other, 0, 0);
        iomem_disconnect(other);
        finish();
}
END_TEST

/*
 * A RESIZE's or SEAL's requester hangs up while its job is held (before its syscall): nothing changes, the
 * growth is refunded and the region free again once the job is gone, and no fd stays behind.
 */
START_TEST(test_seal_and_resize_abandoned)
{
        struct iomem_client *other;
        struct iomem_stat st;
        struct raw a;
        long taken = 0;

        start(NULL);
        other = it_client_connect(&daemon_);
        ck_assert_int_eq(create(other, "sa", 4 * MIB, IOMEM_CREATE_RESIZABLE), 0);

        gate_close();
        raw_connect(&a);
        raw_append_resize(&a, 2, "sa", 16 * MIB);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
        wait_taken(++taken);
        wait_charged(other, 16 * MIB, 1);
        raw_close(&a);
        wait_connections(other, 1);
        ck_assert_uint_eq(quota_of(other).bytes, 16 * MIB); /* charged until its job is gone */
        gate_open();
        wait_charged(other, 4 * MIB, 1); /* refunded then */
        ck_assert_int_eq(resize_when_free(other, "sa", 4 * MIB), 0); /* -EBUSY until the job is gone */
        taken++;
        ck_assert_uint_eq(stat_size(other, "sa"), 4 * MIB);

        gate_close();
        raw_connect(&a);
        raw_append_seal(&a, 2, "sa", PROTO_SEAL_SEAL);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
        wait_taken(++taken);
        raw_close(&a);
        wait_connections(other, 1); /* the job is cancelled before its F_ADD_SEALS */
        gate_open();
        ck_assert_int_eq(resize_when_free(other, "sa", 8 * MIB), 0); /* not sealed: the SEAL was not made */
        ck_assert_int_eq(iomem_stat(other, "sa", &st), 0);
        ck_assert_uint_eq(st.seals & IOMEM_SEAL_SEAL, 0);
        ck_assert_uint_eq(st.size, 8 * MIB);
        wait_charged(other, 8 * MIB, 1);
        ck_assert_int_eq(iomem_delete(other, "sa"), 0);
        wait_charged(other, 0, 0);
        iomem_disconnect(other);
        finish(); /* the jobs' copies of the fd are closed */
}
END_TEST

/* A helper that fallocates and punches all of @fd's object in a loop (holding its inode lock) until killed. */
static pid_t fallocate_loop_start(int fd, uint64_t size)
{
        pid_t pid = fork();

        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                for (;;) {
                        if (fallocate(fd, 0, 0, (off_t)size) < 0 ||
                            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)size) < 0)
                                _exit(1);
                }
        }
        return pid;
}

static void fallocate_loop_stop(pid_t pid)
{
        int status = 0;

        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFSIGNALED(status)); /* it was still fallocating: it did not fail */
}

/* The holder's region in test_seal_and_resize_under_holder_fallocate: its fallocate takes about 40 ms here. */
#define STALL_SIZE (512 * MIB)

/*
 * The same attack for real, without the gate: a forked holder fallocates a large region in a loop, and a SEAL
 * or RESIZE of it waits for its inode lock. Another connection's PING must be answered before that request:
 * on main the loop was stuck in the syscall and answered the PING only after it, every time. A try where the
 * syscall got the lock before the PING's round trip proves nothing either way, so up to 8 are made and one
 * where the PING came first is required (ordering only, no time limit).
 */
START_TEST(test_seal_and_resize_under_holder_fallocate)
{
        const uint64_t SIZE = STALL_SIZE;
        struct iomem_client *other;
        struct iomem_region *reg = NULL;
        int fd, ping_first = 0, tries = 0;
        struct raw a;
        pid_t pid;

        start(NULL);
        other = it_client_connect(&daemon_);
        ck_assert_int_eq(create(other, "fa", SIZE, IOMEM_CREATE_RESIZABLE), 0);
        ck_assert_int_eq(iomem_open(other, "fa", 0, 0, &reg), 0);
        fd = iomem_region_fd(reg);
        ck_assert_int_ge(fd, 0);
        pid = fallocate_loop_start(fd, SIZE);
        for (int i = 0; i < 200 && allocated(fd) == 0; i++)
                it_sleep_ms(10); /* it runs */
        raw_connect(&a);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
        for (uint32_t id = 2; tries < 8 && !ping_first; id++, tries++) {
                /* alternately a RESIZE (to the size it has: the ftruncate all the same) and a SEAL (GROW, again) */
                if (id % 2)
                        raw_append_seal(&a, id, "fa", PROTO_SEAL_GROW);
                else
                        raw_append_resize(&a, id, "fa", SIZE);
                raw_send(&a);
                it_sleep_ms(5); /* the daemon has read it first (most likely; a try otherwise proves nothing) */
                ck_assert_int_eq(iomem_ping(other), 0);
                if (!raw_readable(&a))
                        ping_first++;
                ck_assert_int_eq(raw_reply(&a, id, NULL), 0);
        }
        fallocate_loop_stop(pid);
        ck_assert_msg(ping_first, "in %d tries, the PING was never answered before the SEAL or RESIZE", tries);
        raw_close(&a);
        reg = iomem_region_free(reg);
        ck_assert_int_eq(iomem_delete(other, "fa"), 0);
        wait_charged(other, 0, 0);
        iomem_disconnect(other);
        finish();
}
END_TEST

/*
 * The hostile review of sealwork, 1: a RESIZE's size check ran on the loop, before its job waited, so a region
 * that is not RESIZABLE (shm, file: no seals) grown meanwhile by another writer was then shrunk under that
 * writer's mapping (S1). Here the job is held by the gate while a holder grows the region past the size the
 * RESIZE asks for: the job checks again right before its ftruncate, -EPERM, the holder's size stays. On
 * sealwork the RESIZE was answered 0 and the region shrunk from 12 to 8 MiB, on both backends.
 */
START_TEST(test_resize_rechecks_size_in_job)
{
        static const enum iomem_backend backends[] = { IOMEM_BACKEND_SHM, IOMEM_BACKEND_FILE };
        struct iomem_client *other;
        struct iomem_region *reg = NULL;
        struct stat st;
        long taken = 0;
        struct raw a;
        int fd;

        start(NULL);
        other = it_client_connect(&daemon_);
        for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
                struct iomem_create_opts o = { .backend = backends[i] };

                ck_assert_int_eq(iomem_create(other, "s1", 4 * MIB, &o, &reg), 0);
                reg = iomem_region_free(reg);
                ck_assert_int_eq(iomem_open(other, "s1", 0, 0, &reg), 0);
                fd = iomem_region_fd(reg);
                ck_assert_int_ge(fd, 0);

                gate_close();
                raw_connect(&a);
                raw_append_resize(&a, 2, "s1", 8 * MIB); /* a growth when the loop checks it */
                raw_send(&a);
                ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
                wait_taken(++taken);
                ck_assert_int_eq(ftruncate(fd, 12 * MIB), 0); /* another writer grows it (and may map it all) */
                gate_open();
                ck_assert_int_eq(raw_reply(&a, 2, NULL), -EPERM);
                ck_assert_msg(strstr(raw_message, "not resizable"), "text: %s", raw_message);
                ck_assert_int_eq(fstat(fd, &st), 0);
                ck_assert_uint_eq((uint64_t)st.st_size, 12 * MIB); /* never shrunk under its holder */
                /* a growth past it is still a growth */
                ck_assert_int_eq(iomem_resize(other, "s1", 16 * MIB), 0);
                ck_assert_int_eq(fstat(fd, &st), 0);
                ck_assert_uint_eq((uint64_t)st.st_size, 16 * MIB);
                taken++;
                raw_close(&a);
                reg = iomem_region_free(reg);
                ck_assert_int_eq(iomem_delete(other, "s1"), 0);
        }
        wait_charged(other, 0, 0);
        iomem_disconnect(other);
        finish();
}
END_TEST

/*
 * The hostile review of sealwork, 2: a RESIZE's requester that hung up while its job waited was refunded at
 * once, and its growth, made all the same, then charged again without a quota check: the uid could hold about
 * twice its quota. Now the growth stays charged until the job is gone: meanwhile a CREATE that would pass the
 * quota with it is -EDQUOT. On sealwork that CREATE succeeded (the charge had dropped to 4 MiB).
 */
START_TEST(test_abandoned_resize_keeps_its_charge)
{
        static const char *const extra[] = { "--quota-bytes", "16M", NULL };
        struct iomem_client *other;
        struct raw a;

        start(extra);
        other = it_client_connect(&daemon_);
        ck_assert_int_eq(create(other, "q", 4 * MIB, IOMEM_CREATE_RESIZABLE), 0);
        gate_close();
        raw_connect(&a);
        raw_append_resize(&a, 2, "q", 12 * MIB);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
        wait_taken(1);
        wait_charged(other, 12 * MIB, 1);
        raw_close(&a);
        wait_connections(other, 1); /* the daemon saw the hang-up: its job is cancelled, still held */
        ck_assert_uint_eq(quota_of(other).bytes, 12 * MIB);
        ck_assert_int_eq(create(other, "q2", 8 * MIB, 0), -EDQUOT);
        ck_assert_msg(strstr(iomem_client_error_message(other), "quota-bytes"), "text: %s",
                      iomem_client_error_message(other));
        gate_open();
        wait_charged(other, 4 * MIB, 1); /* the job saw the cancel before its ftruncate: refunded, unchanged */
        ck_assert_uint_eq(stat_size(other, "q"), 4 * MIB);
        ck_assert_int_eq(create(other, "q2", 8 * MIB, 0), 0);
        ck_assert_int_eq(iomem_delete(other, "q"), 0);
        ck_assert_int_eq(iomem_delete(other, "q2"), 0);
        wait_charged(other, 0, 0);
        iomem_disconnect(other);
        finish();
}
END_TEST

static long pool_at_start = -1; /* the hugetlb pool before the tests (read and put back in the parent) */

static void pool_save(void)
{
        pool_at_start = it_hugepages();
}

/* test_hugetlb_growth_whole puts the pool back itself; a failed one cannot: put it back here. */
static void pool_restore(void)
{
        if (pool_at_start >= 0 && it_hugepages() != pool_at_start)
                (void)it_set_hugepages(pool_at_start);
}

/*
 * The hostile review of sealwork, 3: a RESERVEd hugetlb region's growth was made visible (ftruncate) before its
 * pages were taken (fallocate), so another client could see and map bytes that then vanished when the pool was
 * short (the size was put back: SIGBUS). Now it is one step, as for other backends: its pages are taken past
 * the end first, and a second test gate (GATE.ahead) holds the job right there: the pages are the region's and
 * its size is still the old one. A growth the pool cannot hold is -ENOSPC and gives its pages back. On sealwork
 * the RESIZE was answered without ever stopping at that point (the size changed first). Needs a hugetlb pool
 * that can be grown here (root): else skipped, saying so.
 */
START_TEST(test_hugetlb_growth_whole)
{
        char ahead[160], ahead_taken[176];
        struct iomem_create_opts o = { .flags = IOMEM_CREATE_HUGE | IOMEM_CREATE_HUGE_2MB | IOMEM_CREATE_RESIZABLE };
        struct iomem_client *other;
        struct iomem_region *reg = NULL;
        long total = it_hugepages();
        struct stat st = { 0 };
        struct raw a;
        int fd;

        if (total < 0 || !it_set_hugepages(total + 4)) {
                fprintf(stderr, "test_hugetlb_growth_whole: cannot grow the hugetlb pool here, skipped\n");
                return;
        }
        start(NULL);
        snprintf(ahead, sizeof(ahead), "%s.ahead", gate);
        snprintf(ahead_taken, sizeof(ahead_taken), "%s.ahead.taken", gate);
        unlink(ahead_taken);
        other = it_client_connect(&daemon_);
        if (iomem_create(other, "hg", 2 * MIB, &o, &reg) < 0 || !(iomem_region_flags(reg) & IOMEM_REGION_HUGETLB)) {
                fprintf(stderr, "test_hugetlb_growth_whole: no hugetlb pages for the region, skipped\n");
                goto out;
        }
        ck_assert(iomem_region_flags(reg) & IOMEM_REGION_RESERVED);
        fd = iomem_region_fd(reg);
        ck_assert_int_ge(fd, 0);
        ck_assert_uint_eq(allocated(fd), 2 * MIB);

        close(open(ahead, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
        raw_connect(&a);
        raw_append_resize(&a, 2, "hg", 6 * MIB);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
        /* bounded polling: the job stops at GATE.ahead, or the RESIZE is answered without it */
        for (int i = 0; i < 3000 && !raw_readable(&a) && (stat(ahead_taken, &st) < 0 || st.st_size < 1); i++)
                it_sleep_ms(10);
        ck_assert_msg(!raw_readable(&a), "the hugetlb growth was answered without taking its pages before its size");
        ck_assert_int_eq(stat(ahead_taken, &st), 0);
        ck_assert_uint_eq(allocated(fd), 6 * MIB); /* its pages are taken ... */
        ck_assert_int_eq(fstat(fd, &st), 0);
        ck_assert_uint_eq((uint64_t)st.st_size, 2 * MIB); /* ... and nobody sees the new size yet */
        ck_assert_uint_eq(stat_size(other, "hg"), 2 * MIB);
        ck_assert_int_eq(unlink(ahead), 0);
        ck_assert_int_eq(raw_reply(&a, 2, NULL), 0);
        ck_assert_int_eq(fstat(fd, &st), 0);
        ck_assert_uint_eq((uint64_t)st.st_size, 6 * MIB);
        ck_assert_uint_eq(allocated(fd), 6 * MIB);

        /* more than the pool holds: -ENOSPC, the size unchanged, the pages taken on the way given back */
        raw_append_resize(&a, 3, "hg", 6 * MIB + 2 * MIB * (uint64_t)(total + 8));
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 3, NULL), -ENOSPC);
        ck_assert_int_eq(fstat(fd, &st), 0);
        ck_assert_uint_eq((uint64_t)st.st_size, 6 * MIB);
        wait_allocated(fd, 6 * MIB);
        raw_close(&a);
        ck_assert_int_eq(iomem_delete(other, "hg"), 0);
out:
        reg = iomem_region_free(reg);
        (void)iomem_delete(other, "hg");
        iomem_disconnect(other);
        unlink(ahead);
        unlink(ahead_taken);
        finish(); /* the daemon's copy goes: the pages can leave the pool */
        ck_assert(it_set_hugepages(total));
}
END_TEST

/* The size of @path (a gate's .taken file: the jobs that reached that gate), 0 if it does not exist. */
static long file_size(const char *path)
{
        struct stat st;

        return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/*
 * Two RESIZEs and a SEAL of one uid at the same moment, on three connections and three regions: none is
 * refused; the later two wait (queued: a thread takes no second job of a uid that has one running) and are
 * made once the first is done. On seal2 (one RESIZE or SEAL per uid, 878349d) the second RESIZE and the SEAL
 * were -EBUSY at once, "this uid already has a RESIZE or SEAL in progress".
 */
START_TEST(test_one_uid_jobs_wait_their_turn)
{
        struct iomem_client *other;
        struct iomem_stat st;
        struct raw a, b, c;
        int i;

        start(NULL);
        other = it_client_connect(&daemon_);
        ck_assert_int_eq(create(other, "u1", 4 * MIB, IOMEM_CREATE_RESIZABLE), 0);
        ck_assert_int_eq(create(other, "u2", 4 * MIB, IOMEM_CREATE_RESIZABLE), 0);
        ck_assert_int_eq(create(other, "u3", 4 * MIB, IOMEM_CREATE_RESIZABLE), 0);
        gate_close();
        raw_connect(&a);
        raw_append_resize(&a, 2, "u1", 8 * MIB);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
        wait_taken(1);

        /* the same uid on two other connections, two other regions: both started (the growth charged) */
        raw_connect(&b);
        raw_append_resize(&b, 2, "u2", 8 * MIB);
        raw_send(&b);
        ck_assert_int_eq(raw_reply(&b, 1, NULL), 0);
        raw_connect(&c);
        raw_append_seal(&c, 2, "u3", PROTO_SEAL_GROW);
        raw_send(&c);
        ck_assert_int_eq(raw_reply(&c, 1, NULL), 0);
        for (i = 0; i < 3000 && !raw_readable(&b) && !raw_readable(&c) && quota_of(other).bytes != 20 * MIB; i++)
                it_sleep_ms(10); /* bounded polling: both started, or one answered */
        ck_assert_msg(!raw_readable(&b), "the second RESIZE of the uid was answered while the first is held: %d (%s)",
                      raw_reply(&b, 2, NULL), raw_message);
        ck_assert_msg(!raw_readable(&c), "the SEAL of the uid was answered while its RESIZE is held: %d (%s)",
                      raw_reply(&c, 2, NULL), raw_message);
        wait_charged(other, 20 * MIB, 3); /* 8 + 8 + 4: both growths charged, from the start */
        ck_assert_int_eq(iomem_ping(other), 0);
        /* queued, not running: the second thread takes no job of a uid that runs one (no timing: never 2 now) */
        ck_assert_int_eq(file_size(gate_taken), 1);

        gate_open();
        ck_assert_int_eq(raw_reply(&a, 2, NULL), 0);
        ck_assert_int_eq(raw_reply(&b, 2, NULL), 0);
        ck_assert_int_eq(raw_reply(&c, 2, NULL), 0);
        raw_close(&a);
        raw_close(&b);
        raw_close(&c);
        wait_taken(3);
        ck_assert_uint_eq(stat_size(other, "u1"), 8 * MIB);
        ck_assert_uint_eq(stat_size(other, "u2"), 8 * MIB);
        ck_assert_int_eq(iomem_stat(other, "u3", &st), 0);
        ck_assert_uint_ne(st.seals & IOMEM_SEAL_GROW, 0);
        ck_assert_int_eq(iomem_delete(other, "u1"), 0);
        ck_assert_int_eq(iomem_delete(other, "u2"), 0);
        ck_assert_int_eq(iomem_delete(other, "u3"), 0);
        wait_charged(other, 0, 0);
        iomem_disconnect(other);
        finish();
}
END_TEST

/*
 * The reserver's order: uid A (root) has a RESERVEd growth held by the gate GATE.ahead (its thread busy) and
 * a second one queued; uid B's RESIZE, sent after both, is taken by the other thread and answered while A's
 * second one still waits; A's second one is taken only once A's first is done. A job may wait for a holder's
 * fallocate as long as that holder likes: first come first served, one uid could hold both threads and make
 * every other uid's RESIZE, SEAL and RESERVE wait. With the reserver's pop made FIFO again (the queue's head),
 * this failed: "uid 1004's RESIZE was not answered ... (2 growths of uid 0 at GATE.ahead)".
 */
START_TEST(test_other_uid_skips_ahead)
{
        char ahead[160];
        struct iomem_client *other;
        struct raw a1, a2, b;
        int i;

        if (geteuid() != 0) {
                fprintf(stderr, "test_other_uid_skips_ahead: needs root (another uid), skipped\n");
                return;
        }
        start(NULL);
        ck_assert_int_eq(chmod(daemon_.dir, 0755), 0); /* the socket is 0666: let the other uid reach it */
        snprintf(ahead, sizeof(ahead), "%s.ahead", gate);
        other = it_client_connect(&daemon_);
        ck_assert_int_eq(create(other, "a1", 4 * MIB, IOMEM_CREATE_RESERVE | IOMEM_CREATE_RESIZABLE), 0);
        ck_assert_int_eq(create(other, "a2", 4 * MIB, IOMEM_CREATE_RESERVE | IOMEM_CREATE_RESIZABLE), 0);
        close(open(ahead, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)); /* GATE itself stays open */

        raw_connect(&a1);
        raw_append_resize(&a1, 2, "a1", 8 * MIB);
        raw_send(&a1);
        ck_assert_int_eq(raw_reply(&a1, 1, NULL), 0);
        for (i = 0; i < 3000 && file_size(gate_ahead_taken) < 1; i++)
                it_sleep_ms(10); /* bounded polling: held at GATE.ahead */
        ck_assert_int_eq(file_size(gate_ahead_taken), 1);
        raw_connect(&a2);
        raw_append_resize(&a2, 2, "a2", 8 * MIB);
        raw_send(&a2);
        ck_assert_int_eq(raw_reply(&a2, 1, NULL), 0);
        wait_charged(other, 16 * MIB, 2); /* both growths started */

        raw_connect_other(&b);
        raw_append_create(&b, 2, "b", 4 * MIB, PROTO_CREATE_RESIZABLE, 0); /* not RESERVEd: made on the loop */
        raw_send(&b);
        ck_assert_int_eq(raw_reply(&b, 1, NULL), 0);
        ck_assert_int_eq(raw_reply(&b, 2, NULL), 0);
        raw_append_resize(&b, 3, "b", 8 * MIB); /* a job: the plain ftruncate */
        raw_send(&b);
        for (i = 0; i < 3000 && !raw_readable(&b) && file_size(gate_ahead_taken) < 2; i++)
                it_sleep_ms(10); /* bounded polling: B answered, or A's second growth taken instead */
        ck_assert_msg(raw_readable(&b),
                      "uid %u's RESIZE was not answered while uid 0's first growth is held (%ld growths of uid 0 at "
                      "GATE.ahead): the other thread took uid 0's second job first",
                      OTHER_UID, file_size(gate_ahead_taken));
        ck_assert_int_eq(raw_reply(&b, 3, NULL), 0);
        ck_assert_msg(!raw_readable(&a2), "uid 0's second growth was answered while its first is held");
        ck_assert_msg(!raw_readable(&a1), "uid 0's first growth was answered while held");
        /* A's second is still queued: no thread took it while A's first runs (no timing: never 2 now) */
        ck_assert_int_eq(file_size(gate_ahead_taken), 1);
        ck_assert_uint_eq(stat_size(other, "b"), 8 * MIB);

        ck_assert_int_eq(unlink(ahead), 0);
        ck_assert_int_eq(raw_reply(&a1, 2, NULL), 0);
        ck_assert_int_eq(raw_reply(&a2, 2, NULL), 0);
        ck_assert_int_eq(file_size(gate_ahead_taken), 2);
        ck_assert_uint_eq(stat_size(other, "a1"), 8 * MIB);
        ck_assert_uint_eq(stat_size(other, "a2"), 8 * MIB);
        raw_close(&a1);
        raw_close(&a2);
        raw_close(&b);
        ck_assert_int_eq(iomem_delete(other, "a1"), 0);
        ck_assert_int_eq(iomem_delete(other, "a2"), 0);
        ck_assert_int_eq(iomem_delete(other, "b"), 0);
        wait_charged(other, 0, 0);
        iomem_disconnect(other);
        finish();
}
END_TEST

/* SIGTERM with reservations in flight (held by the gate) and queued: the daemon stops cleanly (exit 0). */
START_TEST(test_stop_while_reserving)
{
        enum { N = 4 };
        struct iomem_client *other;
        struct raw a[N];
        char name[32];

        start(NULL);
        other = it_client_connect(&daemon_);
        gate_close();
        for (int i = 0; i < N; i++) {
                snprintf(name, sizeof(name), "rs.stop.%d", i);
                raw_connect(&a[i]);
                raw_append_create(&a[i], 2, name, 4 * MIB, PROTO_CREATE_RESERVE, 0);
                raw_send(&a[i]);
                ck_assert_int_eq(raw_reply(&a[i], 1, NULL), 0);
        }
        wait_charged(other, N * 4 * MIB, N);
        iomem_disconnect(other);
        it_daemon_stop(&daemon_); /* exit status 0; under ASan, no leak */
        for (int i = 0; i < N; i++)
                raw_close(&a[i]);
        unlink(gate);
        unlink(gate_taken);
        unlink(gate_ahead_taken); /* a RESERVEd growth let go by the stop passes GATE.ahead */
        unlink(gate_ran_taken);   /* and every job that ran, GATE.ran */
}
END_TEST

/*
 * SEAL of a region while a RESIZE reserves its growth is -EBUSY, as another RESIZE is. F_ADD_SEALS takes the
 * object's inode lock, which shmem's fallocate holds from start to end: on the event loop it waited for the
 * whole reservation, so one uid froze every client with a big RESIZE and a SEAL (measured on reservework: a
 * SEAL during a 3 GiB growth answered after 263 ms, once every byte was allocated). The gate holds the job
 * before its fallocate, so this tests the refusal, not a timing. On reservework the SEAL was made (0).
 */
START_TEST(test_seal_refused_while_resizing)
{
        struct iomem_client *other;
        uint32_t seals = 0;
        struct raw a;

        start(NULL);
        other = it_client_connect(&daemon_);
        ck_assert_int_eq(create(other, "rz", 4 * MIB, IOMEM_CREATE_RESERVE | IOMEM_CREATE_RESIZABLE), 0);
        gate_close();
        raw_connect(&a);
        raw_append_resize(&a, 2, "rz", BIG);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
        wait_charged(other, BIG, 1);
        ck_assert_int_eq(iomem_seal(other, "rz", IOMEM_SEAL_SEAL, &seals), -EBUSY);
        ck_assert_msg(strstr(iomem_client_error_message(other), "reserving the memory"), "text: %s",
                      iomem_client_error_message(other));
        gate_open();
        ck_assert_int_eq(raw_reply(&a, 2, NULL), 0);
        raw_close(&a);
        /* once the growth is made, the seal is */
        ck_assert_int_eq(iomem_seal(other, "rz", IOMEM_SEAL_SEAL, &seals), 0);
        ck_assert(seals & IOMEM_SEAL_SEAL);
        ck_assert_uint_eq(stat_size(other, "rz"), BIG);
        ck_assert_int_eq(iomem_delete(other, "rz"), 0);
        wait_charged(other, 0, 0);
        iomem_disconnect(other);
        finish();
}
END_TEST

/*
 * A RESIZE abandoned by its requester keeps its growth charged and its region marked (RESIZE and SEAL:
 * -EBUSY) until its job's fallocate has returned and given the memory back. Before (reservework), the
 * mark ended at once: a second RESIZE was reserved while the first job still ran, and the first one's
 * give-back (an ftruncate to the size, on the loop) freed what the second had reserved past the end, then
 * the second made the size visible: a RESERVEd region of 256 MiB with 4 MiB of memory (1 round in 10 of a
 * loop of this sequence), and that ftruncate waited on the loop for the second job's whole fallocate. Here
 * the second RESIZE is sent while the first job is held by the gate: on reservework it was accepted (0).
 */
START_TEST(test_abandoned_resize_keeps_region_busy)
{
        struct iomem_client *other;
        struct iomem_region *reg = NULL;
        struct raw a, b;
        int fd;

        start(NULL);
        other = it_client_connect(&daemon_);
        ck_assert_int_eq(create(other, "rz", 4 * MIB, IOMEM_CREATE_RESERVE | IOMEM_CREATE_RESIZABLE), 0);
        ck_assert_int_eq(iomem_open(other, "rz", 0, 0, &reg), 0);
        fd = iomem_region_fd(reg);
        gate_close();
        raw_connect(&a);
        raw_append_resize(&a, 2, "rz", 8 * MIB);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
        wait_charged(other, 8 * MIB, 1);
        wait_taken(2); /* the CREATE's and this one: running, held by the gate, not taken out of the queue */
        raw_close(&a);
        wait_connections(other, 1);
        ck_assert_uint_eq(quota_of(other).bytes, 8 * MIB); /* still charged: its job is held */

        raw_connect(&b);
        raw_append_resize(&b, 2, "rz", 4 * BIG);
        raw_send(&b);
        ck_assert_int_eq(raw_reply(&b, 1, NULL), 0);
        ck_assert_int_eq(iomem_seal(other, "rz", IOMEM_SEAL_SEAL, NULL), -EBUSY);
        gate_open();
        ck_assert_int_eq(raw_reply(&b, 2, NULL), -EBUSY);
        ck_assert_msg(strstr(raw_message, "reserving the memory"), "text: %s", raw_message);
        raw_close(&b);
        /* once the abandoned job is gone: the growth is made, and all of it is memory */
        ck_assert_int_eq(resize_when_free(other, "rz", 4 * BIG), 0);
        ck_assert_uint_eq(stat_size(other, "rz"), 4 * BIG);
        ck_assert_uint_eq(allocated(fd), 4 * BIG);
        reg = iomem_region_free(reg);
        ck_assert_int_eq(iomem_delete(other, "rz"), 0);
        wait_charged(other, 0, 0);
        iomem_disconnect(other);
        finish();
}
END_TEST

/*
 * SIGTERM while an abandoned RESIZE's job is held and another abandoned one of the same uid was queued behind
 * it: the daemon stops cleanly (exit 0; under ASan, no leak; the held RESIZE's charge is refunded by its job's
 * end at the stop, the queued one's at its hang-up, since its job never started).
 */
START_TEST(test_stop_with_abandoned_resize)
{
        struct iomem_client *other;
        struct raw a, b;

        start(NULL);
        other = it_client_connect(&daemon_);
        ck_assert_int_eq(create(other, "rz", 4 * MIB, IOMEM_CREATE_RESERVE | IOMEM_CREATE_RESIZABLE), 0);
        ck_assert_int_eq(create(other, "rz2", 4 * MIB, IOMEM_CREATE_RESERVE | IOMEM_CREATE_RESIZABLE), 0);
        gate_close();
        /* two RESIZEs of one uid: the first taken and held by the gate, the second queued behind it */
        raw_connect(&a);
        raw_append_resize(&a, 2, "rz", 8 * MIB);
        raw_send(&a);
        ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
        wait_taken(3); /* the two CREATEs' and this one */
        raw_connect(&b);
        raw_append_resize(&b, 2, "rz2", 8 * MIB);
        raw_send(&b);
        ck_assert_int_eq(raw_reply(&b, 1, NULL), 0);
        wait_charged(other, 16 * MIB, 2);
        raw_close(&a);
        raw_close(&b);
        wait_charged(other, 12 * MIB, 2); /* the queued one's growth refunded at once, the held one's not */
        ck_assert_int_eq(iomem_seal(other, "rz", IOMEM_SEAL_SEAL, NULL), -EBUSY);
        ck_assert_int_eq(file_size(gate_taken), 3);
        iomem_disconnect(other);
        it_daemon_stop(&daemon_); /* exit status 0; under ASan, no leak */
        unlink(gate);
        unlink(gate_taken);
        unlink(gate_ahead_taken); /* a RESERVEd growth let go by the stop passes GATE.ahead */
        unlink(gate_ran_taken);   /* and every job that ran, GATE.ran */
}
END_TEST

/*
 * A RESIZE's growth is charged in full when its job has grown the object, even if the loop saw the new size
 * first. Between the job's ftruncate and its completion on the loop, any STAT or OPEN of the region reads the
 * object's size (conn_region_sync_size()) and charges the growth as a holder's: only as far as the owner's
 * quota room, which the RESIZE's own charge in flight still fills. The completion then refunded the RESIZE's
 * charge and kept that partial charge (the size was no longer a growth): a region of 12 MiB charged 8 MiB
 * under quota-bytes 16M, and 8 MiB more could be created (20 MiB held). Same for a requester gone meanwhile
 * (conn_region_reserve_gone()). A test gate (GATE.ran) holds the job after its work.
 */
START_TEST(test_resize_charged_whole_when_seen_first)
{
        static const char *const extra[] = { "--quota-bytes", "16M", NULL };
        struct iomem_client *other;
        struct raw a;

        start(extra);
        other = it_client_connect(&daemon_);
        for (int abandon = 0; abandon < 2; abandon++) {
                ck_assert_int_eq(create(other, "q", 4 * MIB, IOMEM_CREATE_RESIZABLE), 0);
                close(open(gate_ran, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
                raw_connect(&a);
                raw_append_resize(&a, 2, "q", 12 * MIB);
                raw_send(&a);
                ck_assert_int_eq(raw_reply(&a, 1, NULL), 0);
                wait_ran(abandon + 1); /* the object is 12 MiB now; the loop has not heard of it */
                if (abandon) {
                        raw_close(&a);
                        wait_connections(other, 1);
                }
                ck_assert_uint_eq(stat_size(other, "q"), 12 * MIB); /* the loop sees it first */
                ck_assert_int_eq(unlink(gate_ran), 0);
                if (!abandon) {
                        ck_assert_int_eq(raw_reply(&a, 2, NULL), 0);
                        raw_close(&a);
                }
                wait_charged(other, 12 * MIB, 1);
                ck_assert_int_eq(create(other, "q2", 8 * MIB, 0), -EDQUOT);
                ck_assert_int_eq(create(other, "q2", 4 * MIB, 0), 0);
                ck_assert_int_eq(iomem_delete(other, "q"), 0);
                ck_assert_int_eq(iomem_delete(other, "q2"), 0);
                wait_charged(other, 0, 0);
        }
        iomem_disconnect(other);
        finish();
}
END_TEST

/*
 * Return: true if this process can have STALL_SIZE bytes of shared memory now (the holder of
 * test_seal_and_resize_under_holder_fallocate allocates that much, charged to this test's cgroup): the
 * system has twice that available (so that the probe cannot push it into reclaim or the OOM killer), and a
 * fallocate of that size works here (a memory cgroup's limit makes it fail with ENOMEM).
 */
static bool stall_memory_available(void)
{
        unsigned long long kib = 0;
        char line[256];
        FILE *f = fopen("/proc/meminfo", "re");
        bool ok;
        int fd;

        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
                        break;
        if (f)
                fclose(f);
        if (kib * 1024 < 2 * STALL_SIZE)
                return false;
        fd = memfd_create("it-reserve-probe", MFD_CLOEXEC);
        if (fd < 0)
                return false;
        ok = ftruncate(fd, (off_t)STALL_SIZE) == 0 && fallocate(fd, 0, 0, (off_t)STALL_SIZE) == 0;
        close(fd);
        return ok;
}

int main(int argc, char **argv)
{
        Suite *s = suite_create("it-reserve");
        TCase *tc = tcase_create("reserve");

        /* "stall": only the holder's fallocate test (its own ctest: 512 MiB, skipped with 77 without them) */
        if (argc > 1 && strcmp(argv[1], "stall") == 0) {
                if (!stall_memory_available()) {
                        fprintf(stderr, "test-it-reserve stall: %llu MiB of shared memory not available, skipped\n",
                                (unsigned long long)(STALL_SIZE / MIB));
                        return 77;
                }
                tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
                tcase_set_timeout(tc, 300);
                tcase_add_test(tc, test_seal_and_resize_under_holder_fallocate);
                suite_add_tcase(s, tc);
                return test_run_suite(s);
        }

        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_add_unchecked_fixture(tc, pool_save, pool_restore);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, test_others_served_while_reserving);
        tcase_add_test(tc, test_many_reservations_at_once);
        tcase_add_test(tc, test_name_claimed_while_reserving);
        tcase_add_test(tc, test_disconnect_while_reserving);
        tcase_add_test(tc, test_half_closed_peer_still_answered);
        tcase_add_test(tc, test_quota_charged_while_reserving);
        tcase_add_test(tc, test_reservation_fails_cleanly);
        tcase_add_test(tc, test_resize_off_the_loop);
        tcase_add_test(tc, test_resize_reservation_abandoned);
        tcase_add_test(tc, test_stop_while_reserving);
        tcase_add_test(tc, test_seal_refused_while_resizing);
        tcase_add_test(tc, test_abandoned_resize_keeps_region_busy);
        tcase_add_test(tc, test_stop_with_abandoned_resize);
        tcase_add_test(tc, test_seal_and_resize_off_the_loop);
        tcase_add_test(tc, test_seal_and_resize_abandoned);
        tcase_add_test(tc, test_resize_rechecks_size_in_job);
        tcase_add_test(tc, test_abandoned_resize_keeps_its_charge);
        tcase_add_test(tc, test_hugetlb_growth_whole);
        tcase_add_test(tc, test_one_uid_jobs_wait_their_turn);
        tcase_add_test(tc, test_other_uid_skips_ahead);
        tcase_add_test(tc, test_resize_charged_whole_when_seen_first);
        suite_add_tcase(s, tc);
        return test_run_suite(s);
}
