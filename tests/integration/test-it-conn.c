/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-it-conn: waiting for names, leases, pipelined requests and the daemon's fds, against the real iomemd. */

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <poll.h>
#include <stdio.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "iomem.h"
#include "itutil.h"
#include "proto.h"
#include "transport.h"

static struct it_daemon daemon_;

static struct iomem_client *it_connect(void)
{
        return it_client_connect(&daemon_);
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

struct waiter {
        pthread_t thread;
        struct iomem_client *client;
        const char *name;
        int wait_ms;
        int r;
        struct iomem_region *region;
        atomic_bool done;
};

static void *waiter_run(void *userdata)
{
        struct waiter *w = userdata;

        w->r = iomem_open(w->client, w->name, 0, w->wait_ms, &w->region);
        atomic_store(&w->done, true);
        return NULL;
}

/* The consumer asks first and waits; another client is served meanwhile; the producer's create wakes it. */
START_TEST(test_wait_for_name)
{
        struct waiter w = { .client = it_connect(), .name = "it.later", .wait_ms = _i == 0 ? 60000 : -1 };
        struct iomem_client *producer = it_connect();
        struct iomem_region *region = NULL;
        struct iomem_stat st;
        char *p, *q;

        ck_assert_int_eq(pthread_create(&w.thread, NULL, waiter_run, &w), 0);
        /* give the OPEN time to reach the daemon; correctness does not depend on it */
        it_sleep_ms(200);
        ck_assert_msg(!atomic_load(&w.done), "open returned before the name existed: %s", iomem_strerror(w.r));

        /* the daemon keeps serving others while one client waits */
        ck_assert_int_eq(iomem_ping(producer), 0);
        ck_assert_int_eq(iomem_stat(producer, "it.later", &st), -ENOENT);
        ck_assert(!atomic_load(&w.done));

        ck_assert_int_eq(iomem_create(producer, "it.later", 4096, NULL, &region), 0);
        ck_assert_int_eq(pthread_join(w.thread, NULL), 0);
        ck_assert_msg(w.r == 0, "waiting open: %s", iomem_strerror(w.r));
        ck_assert_uint_eq(iomem_region_id(w.region), iomem_region_id(region));
        ck_assert_int_eq(iomem_region_map(region, 0, 4096, PROT_READ | PROT_WRITE, (void **)&p), 0);
        ck_assert_int_eq(iomem_region_map(w.region, 0, 4096, PROT_READ, (void **)&q), 0);
        strcpy(p, "hello waiter");
        ck_assert_str_eq(q, "hello waiter");
        iomem_unmap(p, 4096);
        iomem_unmap(q, 4096);
        /* the waiting connection is usable again */
        ck_assert_int_eq(iomem_ping(w.client), 0);
        iomem_region_free(region);
        iomem_region_free(w.region);
        iomem_disconnect(w.client);
        iomem_disconnect(producer);
}
END_TEST

START_TEST(test_wait_timeout)
{
        struct iomem_client *c = it_connect();
        struct iomem_region *region = NULL;

        ck_assert_int_eq(iomem_open(c, "it.never", 0, 100, &region), -ETIMEDOUT);
        ck_assert_ptr_null(region);
        ck_assert_int_eq(iomem_open(c, "it.never", 0, 0, &region), -ENOENT);
        ck_assert_int_eq(iomem_ping(c), 0);
        iomem_disconnect(c);
}
END_TEST

/* A waiter that disconnects while parked leaves nothing behind in the daemon. */
START_TEST(test_wait_disconnect)
{
        int base = it_daemon_settled_fds(&daemon_);
        struct iomem_region *region = NULL;
        struct iomem_client *c;
        pid_t pid;
        int status;

        fflush(NULL);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                if (iomem_connect(daemon_.socket, &c) < 0)
                        _exit(1);
                iomem_open(c, "it.never", 0, -1, &region);
                _exit(2);
        }
        it_sleep_ms(200);
        kill(pid, SIGKILL);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFSIGNALED(status));
        ck_assert_int_eq(it_daemon_settled_fds(&daemon_), base);
        /* creating the name the dead client waited for wakes nobody and works */
        c = it_connect();
        ck_assert_int_eq(iomem_create(c, "it.never", 4096, NULL, &region), 0);
        region = iomem_region_free(region);
        iomem_disconnect(c);
}
END_TEST

/* L3: a leased region goes away with the connection that created it; fds already handed out stay valid. */
START_TEST(test_lease)
{
        struct iomem_create_opts o = { .flags = IOMEM_CREATE_LEASE };
        struct iomem_client *owner = it_connect(), *other = it_connect();
        struct iomem_region *mine = NULL, *theirs = NULL;
        struct iomem_stat st;
        char *p;
        int r = 0;

        ck_assert_int_eq(iomem_create(owner, "it.lease", 4096, &o, &mine), 0);
        ck_assert_uint_eq(iomem_region_flags(mine) & IOMEM_REGION_LEASED, IOMEM_REGION_LEASED);
        ck_assert_int_eq(iomem_stat(other, "it.lease", &st), 0);
        ck_assert_uint_eq(st.flags & IOMEM_REGION_LEASED, IOMEM_REGION_LEASED);
        ck_assert_int_eq(iomem_open(other, "it.lease", 0, 0, &theirs), 0);

        owner = iomem_disconnect(owner);
        /* the daemon sees the close asynchronously: poll, bounded */
        for (int i = 0; i < 500; i++) {
                r = iomem_stat(other, "it.lease", &st);
                if (r == -ENOENT)
                        break;
                it_sleep_ms(10);
        }
        ck_assert_int_eq(r, -ENOENT);
        ck_assert_int_eq(iomem_region_map(theirs, 0, 4096, PROT_READ | PROT_WRITE, (void **)&p), 0);
        strcpy(p, "still mapped");
        iomem_unmap(p, 4096);
        iomem_region_free(mine);
        iomem_region_free(theirs);
        iomem_disconnect(other);
}
END_TEST

/* A client killed while holding leased regions: its regions go, the daemon's fd count returns (L3). */
START_TEST(test_lease_killed_client)
{
        int base = it_daemon_settled_fds(&daemon_);
        struct iomem_client *c;
        struct iomem_stat st;
        int p[2], status, r = 0;
        pid_t pid;
        char ok;

        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        fflush(NULL);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                struct iomem_create_opts o = { .flags = IOMEM_CREATE_LEASE };
                struct iomem_region *region;

                close(p[0]);
                if (iomem_connect(daemon_.socket, &c) < 0)
                        _exit(1);
                for (int i = 0; i < 10; i++) {
                        char name[32];

                        snprintf(name, sizeof(name), "it.killed.%d", i);
                        if (iomem_create(c, name, 4096, &o, &region) < 0)
                                _exit(1);
                }
                if (write(p[1], "k", 1) != 1)
                        _exit(1);
                pause();
                _exit(0);
        }
        close(p[1]);
        ck_assert_int_eq(read(p[0], &ok, 1), 1);
        close(p[0]);
        c = it_connect();
        ck_assert_int_eq(iomem_stat(c, "it.killed.9", &st), 0);
        kill(pid, SIGKILL);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        for (int i = 0; i < 500; i++) {
                r = iomem_stat(c, "it.killed.9", &st);
                if (r == -ENOENT)
                        break;
                it_sleep_ms(10);
        }
        ck_assert_int_eq(r, -ENOENT);
        iomem_disconnect(c);
        ck_assert_int_eq(it_daemon_settled_fds(&daemon_), base);
}
END_TEST

/* Queue a version-1 HELLO (request id 1) on a raw connection's transport. */
static void raw_queue_hello(struct transport *t)
{
        uint8_t buf[64];
        int len = proto_hello_encode(&(struct proto_hello){ .min_version = 1, .max_version = 1 }, buf, sizeof(buf));

        ck_assert_int_gt(len, 0);
        ck_assert_int_eq(transport_queue(t, &(struct proto_header){ .opcode = PROTO_OP_HELLO, .id = 1 }, buf,
                                         (size_t)len, NULL, 0),
                         0);
}

/*
 * A hang-up deletes the connection's leased regions a batch per turn of the event loop, not all in one: each
 * region parked in an fd keeper costs a round trip (DROP), and a client holding thousands of leased regions
 * held every other client for all of them at once (20,000: 1.4 s). Here every region is parked
 * (--max-region-fds 64); another client pipelines STATUS requests right after the hang-up: the daemon reads
 * them 64 a turn, and some must see the leased regions part deleted. Before: every STATUS saw all of them or
 * none. They all go in the end.
 */
START_TEST(test_lease_release_takes_turns)
{
        const char *const extra[] = { "--max-region-fds", "64", NULL };
        enum { N = 2000, K = 640 };
        struct iomem_create_opts o = { .flags = IOMEM_CREATE_LEASE };
        struct iomem_client *owner, *c;
        struct iomem_status st = { 0 };
        struct transport t;
        struct transport_frame f;
        uint64_t seen_between = 0;
        int fd;

        char exe[64], path[PATH_MAX] = "";

        it_daemon_stop(&daemon_);
        it_daemon_start(&daemon_, extra);
        /*
         * Not under valgrind (fault/valgrind-integration): its daemon cannot start an fd keeper (valgrind will
         * not run the keeper's exec), so nothing is parked, and each of the 2,000 CREATEs tries to start one.
         */
        snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)daemon_.pid);
        if (readlink(exe, path, sizeof(path) - 1) > 0 && strstr(path, "memcheck")) {
                fprintf(stderr, "test_lease_release_takes_turns: skipped, the daemon runs under valgrind\n");
                return;
        }
        owner = it_connect();
        for (int i = 0; i < N; i++) {
                struct iomem_region *r = NULL;
                char name[32];

                snprintf(name, sizeof(name), "it.leased%d", i);
                ck_assert_int_eq(iomem_create(owner, name, 4096, &o, &r), 0);
                iomem_region_free(r);
        }
        fd = fdutil_connect(daemon_.socket);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(transport_init(&t, fd, 0, 0), 0);
        raw_queue_hello(&t);
        ck_assert_int_eq(transport_flush(&t), 0);
        ck_assert_int_eq(transport_recv_blocking(&t, &f, 10000), 1);
        transport_frame_deinit(&f);

        owner = iomem_disconnect(owner);
        for (unsigned i = 0; i < K; i++)
                ck_assert_int_eq(transport_queue(&t, &(struct proto_header){ .opcode = PROTO_OP_STATUS, .id = 2 + i },
                                                 NULL, 0, NULL, 0),
                                 0);
        ck_assert_int_eq(transport_flush(&t), 0);
        for (unsigned i = 0; i < K; i++) {
                struct proto_status_reply rep;

                ck_assert_int_eq(transport_recv_blocking(&t, &f, 10000), 1);
                ck_assert_uint_eq(f.hdr.id, 2 + i);
                ck_assert_int_eq(proto_status_reply_decode(f.payload, f.hdr.length, &rep), 0);
                if (rep.regions > 0 && rep.regions < N && !seen_between)
                        seen_between = rep.regions;
                transport_frame_deinit(&f);
        }
        transport_deinit(&t);
        close(fd);
        ck_assert_msg(seen_between, "every STATUS saw the %d leased regions all there or all gone: deleted in one "
                                    "turn of the event loop", N);
        c = it_connect();
        for (int i = 0; i < 1000; i++) {
                ck_assert_int_eq(iomem_status(c, &st), 0);
                if (st.regions == 0)
                        break;
                it_sleep_ms(10);
        }
        ck_assert_uint_eq(st.regions, 0);
        iomem_disconnect(c);
}
END_TEST

/* Raw protocol: HELLO, then several requests in one write before reading any reply; ids match in order. */
START_TEST(test_pipelining)
{
        struct transport t;
        struct transport_frame f;
        uint8_t buf[512];
        static const uint16_t ops[] = { PROTO_OP_PING, PROTO_OP_STAT, PROTO_OP_CREATE, PROTO_OP_PING,
                                        PROTO_OP_OPEN, PROTO_OP_STATUS, PROTO_OP_DELETE, PROTO_OP_STAT };
        int fd, len;

        fd = fdutil_connect(daemon_.socket);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(transport_init(&t, fd, 0, 0), 0);

        raw_queue_hello(&t);
        for (unsigned i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
                struct proto_header h = { .opcode = ops[i], .id = 1000 + i * 7 };

                switch (ops[i]) {
                case PROTO_OP_PING:
                        len = proto_ping_encode(&(struct proto_ping){ .cookie = i }, buf, sizeof(buf));
                        break;
                case PROTO_OP_STAT:
                case PROTO_OP_DELETE:
                        len = proto_name_encode(&(struct proto_name){ .name = "it.pipe" }, buf, sizeof(buf));
                        break;
                case PROTO_OP_CREATE:
                        len = proto_create_encode(&(struct proto_create){ .size = 4096, .name = "it.pipe" }, buf,
                                                  sizeof(buf));
                        break;
                case PROTO_OP_OPEN:
                        len = proto_open_encode(&(struct proto_open){ .name = "it.pipe" }, buf, sizeof(buf));
                        break;
                default:
                        len = 0;
                }
                ck_assert_int_ge(len, 0);
                ck_assert_int_eq(transport_queue(&t, &h, buf, (size_t)len, NULL, 0), 0);
        }
        ck_assert_int_eq(transport_flush(&t), 0);

        ck_assert_int_eq(transport_recv_blocking(&t, &f, 10000), 1);
        ck_assert_uint_eq(f.hdr.id, 1);
        ck_assert_uint_eq(f.hdr.opcode, PROTO_OP_HELLO);
        transport_frame_deinit(&f);
        for (unsigned i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
                bool error;

                ck_assert_int_eq(transport_recv_blocking(&t, &f, 10000), 1);
                ck_assert_uint_eq(f.hdr.id, 1000 + i * 7);
                ck_assert_uint_eq(f.hdr.opcode, ops[i]);
                ck_assert(f.hdr.flags & PROTO_FLAG_REPLY);
                error = f.hdr.flags & PROTO_FLAG_ERROR;
                /* the first STAT comes before CREATE, the last after DELETE */
                ck_assert_int_eq(error, ops[i] == PROTO_OP_STAT);
                ck_assert_uint_eq(f.nfds, ops[i] == PROTO_OP_CREATE || ops[i] == PROTO_OP_OPEN ? 1 : 0);
                if (ops[i] == PROTO_OP_PING) {
                        struct proto_ping ping;

                        ck_assert_int_eq(proto_ping_decode(f.payload, f.hdr.length, &ping), 0);
                        ck_assert_uint_eq(ping.cookie, i);
                }
                transport_frame_deinit(&f);
        }
        transport_deinit(&t);
        close(fd);
}
END_TEST

/* No fd stays behind in the daemon once clients that created, opened and deleted regions are gone. */
START_TEST(test_daemon_fds)
{
        int base = it_daemon_settled_fds(&daemon_);
        struct iomem_client *clients[50];
        struct iomem_region *regions[50];
        char name[32];

        ck_assert_int_gt(base, 0);
        for (int i = 0; i < 50; i++) {
                clients[i] = it_connect();
                snprintf(name, sizeof(name), "it.fds.%d", i / 2);
                ck_assert_int_eq(iomem_create(clients[i], name, 4096,
                                              &(struct iomem_create_opts){ .backend = 1 + i % 3 }, &regions[i]),
                                 0);
        }
        ck_assert_int_gt(fdutil_count(daemon_.pid), base + 50);
        for (int i = 0; i < 50; i += 2) {
                snprintf(name, sizeof(name), "it.fds.%d", i / 2);
                ck_assert_int_eq(iomem_delete(clients[i], name), 0);
        }
        for (int i = 0; i < 50; i++) {
                clients[i] = iomem_disconnect(clients[i]);
                regions[i] = iomem_region_free(regions[i]);
        }
        ck_assert_int_eq(it_daemon_settled_fds(&daemon_), base);
}
END_TEST

/*
 * A client that leaves with an fd unread in its socket: it shuts down its
 * sending side (the daemon frees the connection, but keeps its socket as an
 * orphan while the fd is in flight, charged to it: daemon/conn.c), then
 * closes. The orphan must go at the next departure, and
 * it_daemon_settled_fds() must make one: CI once saw the daemon one fd over
 * its baseline after a client closed with an fd unread (test-it-race), the
 * daemon having looked at the socket between the kernel's hang-up and its
 * freeing of the closed end's queue.
 */
START_TEST(test_orphan_closed_at_next_departure)
{
        struct iomem_client *c = it_connect();
        struct iomem_region *r = NULL;
        struct iomem_status st = { 0 };
        struct iomem_quota q = { 0 };
        struct transport t;
        uint8_t buf[128];
        int base, fd, len;

        ck_assert_int_eq(iomem_create(c, "it.orphan", 4096, NULL, &r), 0);
        r = iomem_region_free(r);
        c = iomem_disconnect(c);
        base = it_daemon_settled_fds(&daemon_);
        c = it_connect();

        fd = fdutil_connect(daemon_.socket);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(transport_init(&t, fd, 0, 0), 0);
        raw_queue_hello(&t);
        len = proto_open_encode(&(struct proto_open){ .name = "it.orphan" }, buf, sizeof(buf));
        ck_assert_int_gt(len, 0);
        ck_assert_int_eq(transport_queue(&t, &(struct proto_header){ .opcode = PROTO_OP_OPEN, .id = 2 }, buf,
                                         (size_t)len, NULL, 0),
                         0);
        ck_assert_int_eq(transport_flush(&t), 0);
        /* the OPEN reply's fd is in flight: the uid's count of fds not yet received says so */
        for (int i = 0; i < 1000; i++) {
                ck_assert_int_eq(iomem_quota(c, &q), 0);
                if (q.fds == 1)
                        break;
                it_sleep_ms(10);
        }
        ck_assert_uint_eq(q.fds, 1);
        ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
        for (int i = 0; i < 1000; i++) { /* gone from the count, its socket kept: the fd is unread */
                ck_assert_int_eq(iomem_status(c, &st), 0);
                if (st.connections == 1)
                        break;
                it_sleep_ms(10);
        }
        ck_assert_uint_eq(st.connections, 1);
        /* c in the place of base's probe, and the orphan */
        ck_assert_int_eq(fdutil_count(daemon_.pid), base + 1);
        ck_assert_uint_eq(it_metric(c, "iomemd_orphan_sockets"), 1);
        /* c's departure, with the orphan's reader still there, leaves it */
        c = iomem_disconnect(c);
        for (int i = 0; i < 1000 && fdutil_count(daemon_.pid) != base; i++)
                it_sleep_ms(10);
        ck_assert_int_eq(fdutil_count(daemon_.pid), base);
        /* still kept: its reader is still there (a departure reaps only what was read or abandoned) */
        c = it_connect();
        ck_assert_uint_eq(it_metric(c, "iomemd_orphan_sockets"), 1);
        c = iomem_disconnect(c);
        transport_deinit(&t);
        close(fd); /* no departure follows; the status timer would close it within 2 s */
        ck_assert_int_eq(it_daemon_settled_fds(&daemon_), base);
        c = it_connect();
        ck_assert_uint_eq(it_metric(c, "iomemd_orphan_sockets"), 0);
        c = iomem_disconnect(c);
}
END_TEST

/*
 * iomem_connect() sends HELLO at once though it does not wait for the answer:
 * a client that connects and makes its first call after the daemon's
 * handshake timeout is served, not dropped.
 */
START_TEST(test_connect_then_idle)
{
        const char *const extra[] = { "--handshake-timeout", "1", NULL };
        struct iomem_client *c = NULL;

        it_daemon_stop(&daemon_);
        it_daemon_start(&daemon_, extra);
        ck_assert_int_eq(iomem_connect(daemon_.socket, &c), 0);
        it_sleep_ms(1500); /* past the 1 s handshake timeout */
        ck_assert_int_eq(iomem_ping(c), 0);
        iomem_disconnect(c);
}
END_TEST

/*
 * The first request of a client that connected long before it, after the daemon's handshake timeout closed the
 * silent connection (iomem_connect() holds HELLO back, to send it with the first request): the daemon applied
 * nothing (it reads nothing before HELLO), so libiomem connects once more and sends it again, even with
 * reconnecting off. A DELETE (never repeated after a lost reply: a second one would be -ENOENT) shows it is
 * applied once, and not failed with -EPIPE.
 */
START_TEST(test_connect_then_idle_delete)
{
        const char *const extra[] = { "--handshake-timeout", "1", NULL };
        struct iomem_client *c = NULL, *owner;
        struct iomem_region *reg = NULL;
        struct iomem_stat st;

        it_daemon_stop(&daemon_);
        it_daemon_start(&daemon_, extra);
        owner = it_connect();
        ck_assert_int_eq(iomem_create(owner, "idle-delete", 4096, NULL, &reg), 0);
        reg = iomem_region_free(reg);
        ck_assert_int_eq(iomem_connect(daemon_.socket, &c), 0);
        iomem_client_set_reconnect(c, 0);
        it_sleep_ms(1500); /* past the 1 s handshake timeout: the daemon closed the connection */
        ck_assert_int_eq(iomem_delete(c, "idle-delete"), 0);
        ck_assert_int_eq(iomem_stat(owner, "idle-delete", &st), -ENOENT);
        ck_assert_uint_eq(iomem_client_reconnects(c), 0); /* a lease holder has lost nothing */
        iomem_disconnect(c);
        iomem_disconnect(owner);
}
END_TEST

static void idle_ping_done(struct iomem_client *c, int r, void *userdata)
{
        (void)c;
        *(int *)userdata = r;
}

/* An event-loop client announces itself (iomem_client_get_events()): its HELLO goes then, so idling is fine. */
START_TEST(test_async_connect_then_idle)
{
        const char *const extra[] = { "--handshake-timeout", "1", NULL };
        struct iomem_client *c = NULL;
        int result = 1;

        it_daemon_stop(&daemon_);
        it_daemon_start(&daemon_, extra);
        ck_assert_int_eq(iomem_connect(daemon_.socket, &c), 0);
        ck_assert_int_gt(iomem_client_get_events(c), 0);
        it_sleep_ms(1500); /* past the 1 s handshake timeout */
        ck_assert_int_eq(iomem_ping_async(c, idle_ping_done, &result), 0);
        while (result == 1) {
                struct pollfd pfd = { .fd = iomem_client_fd(c), .events = (short)iomem_client_get_events(c) };

                ck_assert_int_ge(poll(&pfd, 1, -1), 0);
                ck_assert_int_ge(iomem_client_process(c), 0);
        }
        ck_assert_int_eq(result, 0);
        iomem_disconnect(c);
}
END_TEST

/* A server that answers HELLO and nothing else: requests after it stay unanswered. */
struct mute_server {
        int lfd, sfd;
        atomic_int requests; /* frames read after HELLO */
        pthread_t thread;
};

static void *mute_server_run(void *userdata)
{
        struct mute_server *m = userdata;
        struct transport t;
        struct transport_frame f;
        struct proto_hello_reply rep = { .version = PROTO_VERSION, .max_fds = PROTO_MAX_FDS,
                                         .max_payload = PROTO_MAX_PAYLOAD, .max_region_size = 1u << 20,
                                         .name_max = PROTO_NAME_MAX, .server_version = "mute" };
        uint8_t buf[128];

        m->sfd = accept4(m->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (m->sfd < 0 || transport_init(&t, m->sfd, 0, 0) < 0)
                return NULL;
        while (transport_recv_blocking(&t, &f, -1) == 1) {
                if (f.hdr.opcode == PROTO_OP_HELLO) {
                        struct proto_header h = { .flags = PROTO_FLAG_REPLY, .opcode = PROTO_OP_HELLO,
                                                  .id = f.hdr.id };

                        transport_send_blocking(&t, &h, buf, (size_t)proto_hello_reply_encode(&rep, buf, sizeof(buf)),
                                                NULL, 0, -1);
                } else {
                        atomic_fetch_add(&m->requests, 1);
                }
                transport_frame_deinit(&f);
        }
        transport_deinit(&t);
        return NULL;
}

struct blocked_call {
        struct iomem_client *c;
        int r;
};

static void *blocked_ping(void *userdata)
{
        struct blocked_call *b = userdata;

        b->r = iomem_ping(b->c); /* no time limit: it waits in recvmsg() itself */
        return NULL;
}

/*
 * A thread that waits for its reply without a time limit reads the socket with a blocking recvmsg() (no poll,
 * no eventfd); when another thread's call times out and breaks the connection, that wait must end too (the
 * client shuts its receiving side down). Without that, the first thread would wait forever here.
 */
START_TEST(test_break_ends_blocked_reader)
{
        struct mute_server m = { .sfd = -1 };
        struct blocked_call b = { .r = 1 };
        pthread_t reader;
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];

        snprintf(path, sizeof(path), "%s/mute", daemon_.dir);
        m.lfd = it_listen(path, 4);
        ck_assert_int_eq(pthread_create(&m.thread, NULL, mute_server_run, &m), 0);
        ck_assert_int_eq(iomem_connect(path, &b.c), 0);
        iomem_client_set_reconnect(b.c, 0);
        ck_assert_int_eq(pthread_create(&reader, NULL, blocked_ping, &b), 0);
        while (atomic_load(&m.requests) < 1)
                it_sleep_ms(5);
        it_sleep_ms(100); /* let the first thread get into its recvmsg() (ordering only, nothing timed is asserted) */
        iomem_client_set_timeout(b.c, 50);
        ck_assert_int_eq(iomem_ping(b.c), -ETIMEDOUT); /* unanswered: breaks the connection */
        ck_assert_int_eq(pthread_join(reader, NULL), 0);
        ck_assert_int_lt(b.r, 0);
        iomem_disconnect(b.c);
        ck_assert_int_eq(pthread_join(m.thread, NULL), 0);
        close(m.sfd);
        close(m.lfd);
        unlink(path);
}
END_TEST

/*
 * A daemon older than FDS_IN_ORDER: it refuses HELLO flags it does not know (-EINVAL, connection closed) and
 * answers PING. Serves two connections. @flags: each HELLO's flags, in order.
 */
struct old_server {
        int lfd;
        uint32_t flags[2];
        atomic_int hellos;
        pthread_t thread;
};

static void *old_server_run(void *userdata)
{
        struct old_server *o = userdata;

        for (int n = 0; n < 2; n++) {
                struct proto_hello_reply rep = { .version = PROTO_VERSION, .max_fds = PROTO_MAX_FDS,
                                                 .max_payload = PROTO_MAX_PAYLOAD, .max_region_size = 1u << 20,
                                                 .name_max = PROTO_NAME_MAX, .server_version = "old" };
                int sfd = accept4(o->lfd, NULL, NULL, SOCK_CLOEXEC);
                struct transport t;
                struct transport_frame f;
                uint8_t buf[128];

                if (sfd < 0 || transport_init(&t, sfd, 0, 0) < 0)
                        return NULL;
                while (transport_recv_blocking(&t, &f, -1) == 1) {
                        struct proto_header h = { .flags = PROTO_FLAG_REPLY, .opcode = f.hdr.opcode, .id = f.hdr.id };
                        struct proto_hello m;
                        bool refuse = false;
                        int len;

                        if (f.hdr.opcode == PROTO_OP_HELLO) {
                                ck_assert_int_eq(proto_hello_decode(f.payload, f.hdr.length, &m), 0);
                                o->flags[atomic_fetch_add(&o->hellos, 1) % 2] = m.flags;
                                refuse = m.flags & ~(uint32_t)(PROTO_HELLO_EVENTS | PROTO_HELLO_PAGE_INFO);
                        }
                        if (refuse) {
                                struct proto_error e = { .error = -EINVAL, .message = "unknown HELLO flag" };

                                h.flags |= PROTO_FLAG_ERROR;
                                len = proto_error_encode(&e, buf, sizeof(buf));
                        } else if (f.hdr.opcode == PROTO_OP_HELLO) {
                                len = proto_hello_reply_encode(&rep, buf, sizeof(buf));
                        } else { /* PING: echo */
                                len = (int)f.hdr.length;
                                memcpy(buf, f.payload, f.hdr.length);
                        }
                        transport_send_blocking(&t, &h, buf, (size_t)len, NULL, 0, -1);
                        transport_frame_deinit(&f);
                        if (refuse)
                                break; /* and close, unapplied whatever came after the HELLO */
                }
                transport_deinit(&t);
                close(sfd);
        }
        return NULL;
}

/* libiomem asks for FDS_IN_ORDER; refused by an older daemon, the call connects again without it and succeeds. */
START_TEST(test_older_daemon_without_fds_in_order)
{
        struct old_server o = { .lfd = -1 };
        struct iomem_client *c = NULL;
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];

        snprintf(path, sizeof(path), "%s/old", daemon_.dir);
        o.lfd = it_listen(path, 4);
        ck_assert_int_eq(pthread_create(&o.thread, NULL, old_server_run, &o), 0);
        ck_assert_int_eq(iomem_connect(path, &c), 0);
        iomem_client_set_reconnect(c, 0);
        ck_assert_int_eq(iomem_ping(c), 0);
        ck_assert_int_eq(atomic_load(&o.hellos), 2);
        ck_assert_uint_eq(o.flags[0], PROTO_HELLO_FDS_IN_ORDER);
        ck_assert_uint_eq(o.flags[1], 0);
        iomem_disconnect(c);
        ck_assert_int_eq(pthread_join(o.thread, NULL), 0);
        close(o.lfd);
        unlink(path);
}
END_TEST

/* Make @n regions whose names take 250 bytes, so that one LIST reply is large (about 290 bytes an entry). */
static void make_long_named_regions(struct iomem_client *owner, unsigned n)
{
        for (unsigned i = 0; i < n; i++) {
                struct iomem_region *reg = NULL;
                char name[251];

                memset(name, 'x', 250);
                name[250] = '\0';
                snprintf(name, 8, "big%04u", i);
                name[7] = 'x';
                ck_assert_int_eq(iomem_create(owner, name, 4096, NULL, &reg), 0);
                reg = iomem_region_free(reg);
        }
}

/* Append one request frame to @buf at *@lenp. */
static void frame_append(uint8_t *buf, size_t *lenp, uint16_t opcode, uint32_t id, const uint8_t *payload, int len)
{
        struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION, .opcode = opcode, .id = id };

        ck_assert_int_ge(len, 0);
        h.length = (uint32_t)len;
        proto_header_encode(&h, buf + *lenp);
        memcpy(buf + *lenp + PROTO_HEADER_SIZE, payload, (size_t)len);
        *lenp += PROTO_HEADER_SIZE + (size_t)len;
}

/*
 * FDS_IN_ORDER against the real daemon: HELLO with the flag, a LIST whose reply is large (about 58 KiB) and an
 * OPEN, read by the daemon at once. It sends the three replies in one sendmsg(), the OPEN reply's fd with it;
 * the kernel cuts so large a write into several buffers and hands the fd over with the first, so the reader
 * holds it while the LIST reply is still incomplete. The reader libiomem uses (the transport, in order) must
 * take that as the rule it is, not as a violation that drops the connection.
 */
START_TEST(test_fds_in_order_behind_large_reply)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct iomem_client *owner = it_connect();
        struct proto_hello hello = { .min_version = PROTO_VERSION, .max_version = PROTO_VERSION,
                                     .flags = PROTO_HELLO_FDS_IN_ORDER };
        struct proto_list list = { .prefix = "big" };
        struct proto_open open = { .name = NULL };
        static uint8_t out[4096], payload[1024];
        char name[251];
        size_t len = 0;
        struct transport t;
        struct transport_frame f;
        struct stat st;
        int fd;

        make_long_named_regions(owner, 200);
        memset(name, 'x', 250);
        name[250] = '\0';
        memcpy(name, "big0000", 7);
        open.name = name;
        frame_append(out, &len, PROTO_OP_HELLO, 1, payload, proto_hello_encode(&hello, payload, sizeof(payload)));
        frame_append(out, &len, PROTO_OP_LIST, 2, payload, proto_list_encode(&list, payload, sizeof(payload)));
        frame_append(out, &len, PROTO_OP_OPEN, 3, payload, proto_open_encode(&open, payload, sizeof(payload)));

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        memcpy(sa.sun_path, daemon_.socket, strlen(daemon_.socket) + 1);
        ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        ck_assert_int_eq(send(fd, out, len, MSG_NOSIGNAL), (ssize_t)len); /* one write: one read by the daemon */
        ck_assert_int_eq(transport_init(&t, fd, 0, 0), 0);
        t.in_fds_in_order = true;
        for (uint32_t id = 1; id <= 3; id++) {
                ck_assert_int_eq(transport_recv_blocking(&t, &f, 60000), 1);
                ck_assert_uint_eq(f.hdr.id, id);
                ck_assert(!(f.hdr.flags & PROTO_FLAG_ERROR));
                if (id == 2)
                        ck_assert_uint_gt(f.hdr.length, 48 * 1024); /* large enough to be cut */
                ck_assert_uint_eq(f.nfds, id == 3 ? 1 : 0);
                if (id == 3) {
                        ck_assert_int_eq(fstat(f.fds[0], &st), 0);
                        ck_assert_int_eq(st.st_size, 4096);
                }
                transport_frame_deinit(&f);
        }
        transport_deinit(&t);
        close(fd);
        iomem_disconnect(owner);
}
END_TEST

struct list_loop {
        struct iomem_client *c;
        atomic_bool stop;
        int r;
};

static int list_count(const struct iomem_list_entry *e, void *userdata)
{
        (void)e;
        (*(unsigned *)userdata)++;
        return 0;
}

static void *list_loop_run(void *userdata)
{
        struct list_loop *l = userdata;

        while (!atomic_load(&l->stop) && l->r == 0) {
                unsigned n = 0;

                l->r = iomem_list(l->c, "big", list_count, &n);
                if (l->r == 0 && n != 200)
                        l->r = -EBADMSG;
        }
        return NULL;
}

/*
 * The same through libiomem: one connection, one thread listing (large replies), another opening (replies with
 * an fd), so that the daemon often has an OPEN reply queued behind a LIST reply. Every call must succeed; the
 * connection must never be dropped for a protocol violation.
 */
START_TEST(test_fds_in_order_list_and_open_threads)
{
        struct iomem_client *owner = it_connect(), *c = it_connect();
        struct list_loop l = { .c = c };
        pthread_t thread;
        char name[251];

        make_long_named_regions(owner, 200);
        memset(name, 'x', 250);
        name[250] = '\0';
        memcpy(name, "big0000", 7);
        iomem_client_set_reconnect(c, 0);
        ck_assert_int_eq(pthread_create(&thread, NULL, list_loop_run, &l), 0);
        for (unsigned i = 0; i < 2000 && l.r == 0; i++) {
                struct iomem_region *reg = NULL;
                int r = iomem_open(c, name, 0, 0, &reg);

                ck_assert_msg(r == 0, "open %u: %s", i, iomem_strerror(r));
                reg = iomem_region_free(reg);
        }
        atomic_store(&l.stop, true);
        ck_assert_int_eq(pthread_join(thread, NULL), 0);
        ck_assert_msg(l.r == 0, "list: %s", iomem_strerror(l.r));
        ck_assert_uint_eq(iomem_client_reconnects(c), 0);
        iomem_disconnect(c);
        iomem_disconnect(owner);
}
END_TEST

/* Connect to the daemon's socket without a word. Return: the socket (the caller's). */
static int raw_connect(void)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        memcpy(sa.sun_path, daemon_.socket, strlen(daemon_.socket) + 1);
        ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        return fd;
}

/* Wait (no time limit: the test's own timeout fails a daemon that never closes) for the daemon to close @fd. */
static void wait_closed_by_daemon(int fd)
{
        char byte;
        ssize_t n = recv(fd, &byte, 1, 0);

        /* nothing was ever answered: the end of the stream, or a reset if it closed with our bytes unread */
        ck_assert_msg(n == 0 || (n < 0 && errno == ECONNRESET), "recv: %zd (%s)", n, n < 0 ? strerror(errno) : "");
}

/*
 * F9 against the real daemon: a client that never completes HELLO is dropped once the handshake timeout
 * passes, whether it sends nothing or half a frame header. The daemon sets up a connection's timer only when it
 * needs one (its event loop), so this is the test that it does so for a client whose HELLO is still to come,
 * including one whose first read brought only part of it. A client that sent its HELLO stays.
 */
START_TEST(test_silent_clients_dropped)
{
        const char *const extra[] = { "--handshake-timeout", "1", NULL };
        struct proto_hello hello = { .min_version = PROTO_VERSION, .max_version = PROTO_VERSION };
        uint8_t out[256], payload[128];
        size_t len = 0;
        struct iomem_client *c;
        int silent, partial, base;

        it_daemon_stop(&daemon_);
        it_daemon_start(&daemon_, extra);
        base = it_daemon_settled_fds(&daemon_);
        c = it_connect();
        ck_assert_int_eq(iomem_ping(c), 0); /* HELLO sent and answered */
        frame_append(out, &len, PROTO_OP_HELLO, 1, payload, proto_hello_encode(&hello, payload, sizeof(payload)));
        silent = raw_connect();
        partial = raw_connect();
        ck_assert_int_eq(send(partial, out, PROTO_HEADER_SIZE / 2, MSG_NOSIGNAL), PROTO_HEADER_SIZE / 2);
        wait_closed_by_daemon(silent);
        wait_closed_by_daemon(partial);
        close(silent);
        close(partial);
        ck_assert_int_eq(iomem_ping(c), 0); /* past the timeout too, and still served */
        ck_assert_uint_eq(iomem_client_reconnects(c), 0);
        iomem_disconnect(c);
        ck_assert_int_eq(it_daemon_settled_fds(&daemon_), base);
}
END_TEST

/* twice the daemon's closer threads (CLOSER_THREADS), sent PROTO_MAX_FDS to a connection */
enum { LINGERERS = 8, LINGER_CONNS = LINGERERS / PROTO_MAX_FDS };

/* Read the TCP peers' fds to their end, after a while: until then the daemon's lingering closes wait. */
static void *late_reader_run(void *userdata)
{
        int *p = userdata;
        char buf[65536];

        struct pollfd pfd[LINGERERS];
        int open = LINGERERS;

        it_sleep_ms(300);
        /* all at once: a socket queued behind the threads' closes ends only once one of those returned */
        for (int i = 0; i < LINGERERS; i++)
                pfd[i] = (struct pollfd){ .fd = p[i], .events = POLLIN };
        while (open > 0 && poll(pfd, LINGERERS, -1) > 0)
                for (int i = 0; i < LINGERERS; i++)
                        if (pfd[i].revents && read(p[i], buf, sizeof(buf)) <= 0) {
                                pfd[i].fd = -1; /* at its end */
                                open--;
                        }
        return NULL;
}

/*
 * Closes that block: TCP sockets with SO_LINGER and data their peer has not
 * read, sent to the daemon with a PING (which takes no fd: the transport
 * hands them to the closer threads). Twice as many as there are closer
 * threads: while each thread waits in one close, the other half stays
 * queued, open in the daemon. iomemd_closing_fds counts them all until their
 * close returns, which the peers' reading allows, here from a thread of the
 * test that reads only after a while (closer threads off the CPU, as on a
 * loaded machine). it_daemon_settled_fds() waits for that fact: the old
 * harness, which took the count once it held for 50 ms, counted the queued
 * fds as leaked.
 *
 * Our copies must be closed while the daemon still holds its own, or our
 * close() is the last one and lingers itself (60 s). So each of two
 * connections sends PROTO_MAX_FDS of them with its PING's first byte, which
 * breaks no rule the daemon can check yet: only the rest of the frame (nfds
 * 0), sent after our closes, makes them a violation. The first version sent
 * all 8 on one connection, 4 with each of the PING's first two bytes: 8 fds
 * tied to a frame whose header is not in yet are more than a frame carries,
 * and transport_check_pending() rightly dropped the connection, closing
 * them, as soon as the daemon read the second byte. Whenever that came
 * before our close() loop, one of our closes was the last and hung
 * (docs/reliability.md).
 */
START_TEST(test_closing_fds_gauge)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        struct linger lg = { .l_onoff = 1, .l_linger = 60 };
        socklen_t salen = sizeof(sa);
        struct iomem_client *c;
        struct transport t[LINGER_CONNS];
        int base, l, s[LINGERERS], p[LINGERERS], fd[LINGER_CONNS], small = 4096;
        char chunk[4096] = { 0 };
        uint8_t ping[PROTO_HEADER_SIZE];
        size_t plen = 0;
        pthread_t reader;
        struct transport_frame f;

        char exe[64], path[PATH_MAX] = "";

        /*
         * Not under valgrind (fault/valgrind-integration): valgrind runs one
         * thread at a time and keeps that lock through a close(), so a closer
         * thread's lingering close froze every thread of the daemon, its event
         * loop too, for the whole linger (a two-thread program shows it: 10
         * ticks of 100 ms took 3.9 s beside a 3 s lingering close under
         * valgrind, 1.0 s without). --sim-hints=fuse-compatible lets close()
         * block alone, but in the one run tried with it two other suites
         * failed (their daemon exited), not looked into: not taken. The
         * gauges are checked by every other run.
         */
        snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)daemon_.pid);
        if (readlink(exe, path, sizeof(path) - 1) > 0 && strstr(path, "memcheck")) {
                fprintf(stderr, "test_closing_fds_gauge: skipped, the daemon runs under valgrind\n");
                return;
        }
        base = it_daemon_settled_fds(&daemon_);
        c = it_connect();
        ck_assert_uint_eq(it_metric(c, "iomemd_closing_fds"), 0);
        ck_assert_uint_eq(it_metric(c, "iomemd_jobs"), 0);
        ck_assert_uint_eq(it_metric(c, "iomemd_orphan_sockets"), 0);

        l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(l, 0);
        ck_assert_int_eq(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(l, LINGERERS), 0);
        ck_assert_int_eq(getsockname(l, (struct sockaddr *)&sa, &salen), 0);
        for (int i = 0; i < LINGERERS; i++) {
                int n = 0;

                s[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                ck_assert_int_ge(s[i], 0);
                ck_assert_int_eq(setsockopt(s[i], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
                ck_assert_int_eq(connect(s[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
                p[i] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
                ck_assert_int_ge(p[i], 0);
                ck_assert_int_eq(setsockopt(p[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
                /* fill both buffers: what is left unsent keeps a lingering close waiting for the peer */
                while (send(s[i], chunk, sizeof(chunk), MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
                        n++;
                ck_assert_int_gt(n, 0);
                ck_assert_int_eq(setsockopt(s[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        }
        close(l);

        frame_append(ping, &plen, PROTO_OP_PING, 2, (const uint8_t *)"", 0); /* memcpy() wants a pointer */
        for (int k = 0; k < LINGER_CONNS; k++) {
                fd[k] = fdutil_connect(daemon_.socket);
                ck_assert_int_ge(fd[k], 0);
                ck_assert_int_eq(transport_init(&t[k], fd[k], 0, 0), 0);
                raw_queue_hello(&t[k]);
                ck_assert_int_eq(transport_flush(&t[k]), 0);
                /* the HELLO is read and answered first: fds that came with its bytes would be a violation of it */
                ck_assert_int_eq(transport_recv_blocking(&t[k], &f, 10000), 1);
                ck_assert_uint_eq(f.hdr.id, 1);
                transport_frame_deinit(&f);
                /*
                 * The PING's first byte carries PROTO_MAX_FDS sockets (what one
                 * receive takes, and what the daemon lets a frame whose header
                 * it has not seen hold): nothing wrong yet, so the daemon holds
                 * them, or they wait in the socket, until the rest comes.
                 */
                ck_assert_int_eq(fdutil_sendmsg(fd[k], ping, 1, s + k * PROTO_MAX_FDS, PROTO_MAX_FDS, 1, MSG_NOSIGNAL),
                                 1);
        }
        /* the daemon's copies stay: ours are not the last, these do not linger */
        for (int i = 0; i < LINGERERS; i++)
                close(s[i]);
        /* the rest of each PING: a frame of nfds 0 with fds tied to it, the daemon closes them with the connection */
        for (int k = 0; k < LINGER_CONNS; k++)
                ck_assert_int_eq(fdutil_sendmsg(fd[k], ping + 1, plen - 1, NULL, 0, 0, MSG_NOSIGNAL),
                                 (ssize_t)(plen - 1));
        for (int i = 0; i < 1000 && it_metric(c, "iomemd_closing_fds") != LINGERERS; i++)
                it_sleep_ms(10);
        ck_assert_uint_eq(it_metric(c, "iomemd_closing_fds"), LINGERERS);

        ck_assert_int_eq(pthread_create(&reader, NULL, late_reader_run, p), 0);
        for (int k = 0; k < LINGER_CONNS; k++) {
                transport_deinit(&t[k]);
                close(fd[k]);
        }
        c = iomem_disconnect(c);
        ck_assert_int_eq(it_daemon_settled_fds(&daemon_), base);
        ck_assert_int_eq(pthread_join(reader, NULL), 0);
        for (int i = 0; i < LINGERERS; i++)
                close(p[i]);
        c = it_connect();
        ck_assert_uint_eq(it_metric(c, "iomemd_closing_fds"), 0);
        c = iomem_disconnect(c);
}
END_TEST

static Suite *suite(void)
{
        Suite *s = suite_create("integration-conn");
        TCase *tc = tcase_create("conn");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_loop_test(tc, test_wait_for_name, 0, 2);
        tcase_add_test(tc, test_wait_timeout);
        tcase_add_test(tc, test_wait_disconnect);
        tcase_add_test(tc, test_lease);
        tcase_add_test(tc, test_lease_killed_client);
        tcase_add_test(tc, test_lease_release_takes_turns);
        tcase_add_test(tc, test_pipelining);
        tcase_add_test(tc, test_daemon_fds);
        tcase_add_test(tc, test_orphan_closed_at_next_departure);
        tcase_add_test(tc, test_closing_fds_gauge);
        tcase_add_test(tc, test_connect_then_idle);
        tcase_add_test(tc, test_connect_then_idle_delete);
        tcase_add_test(tc, test_async_connect_then_idle);
        tcase_add_test(tc, test_break_ends_blocked_reader);
        tcase_add_test(tc, test_older_daemon_without_fds_in_order);
        tcase_add_test(tc, test_fds_in_order_behind_large_reply);
        tcase_add_test(tc, test_fds_in_order_list_and_open_threads);
        tcase_add_test(tc, test_silent_clients_dropped);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return test_run_suite(suite());
}
