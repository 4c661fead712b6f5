/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-it-hostile: libiomem against a hostile daemon: one that never stops sending, one whose LIST cursors cycle
 * (hostile review of the asynchronous client), one that dies after applying what it read with HELLO, one whose
 * OPEN replies carry an fd that is not a regular file or is smaller than announced. */

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
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdutil.h"
#include "iomem.h"
#include "itutil.h"
#include "proto.h"

static struct it_daemon daemon_;
static int flood_fd = -1;
static unsigned long flood_reads;

ssize_t __real_recvmsg(int fd, struct msghdr *msg, int flags);
ssize_t __wrap_recvmsg(int fd, struct msghdr *msg, int flags);

/*
 * The replies cut short: once chop_fd is set, every recvmsg() on it takes at most chop_size bytes (the fds come
 * with the first piece of the daemon's sendmsg, as the kernel gives them), and the first one fails with EINTR.
 */
static int chop_fd = -1;
static size_t chop_size;
static bool chop_eintr;
static unsigned long chop_reads;

static ssize_t chop_recvmsg(int fd, struct msghdr *msg, int flags)
{
        size_t len = msg->msg_iov[0].iov_len;
        ssize_t r;

        if (chop_eintr) {
                chop_eintr = false;
                errno = EINTR;
                return -1;
        }
        if (len > chop_size)
                msg->msg_iov[0].iov_len = chop_size;
        r = __real_recvmsg(fd, msg, flags);
        msg->msg_iov[0].iov_len = len;
        chop_reads++;
        return r;
}

/* One OVERFLOW event frame, repeated forever; @pos is where the stream is within it. */
ssize_t __wrap_recvmsg(int fd, struct msghdr *msg, int flags)
{
        static uint8_t one[PROTO_HEADER_SIZE + 8];
        static size_t pos;
        struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION, .flags = PROTO_FLAG_REPLY,
                                  .opcode = PROTO_EV_OVERFLOW, .id = 0, .length = 8 };
        uint8_t *out;
        size_t len;

        if (fd == chop_fd && fd >= 0 && msg->msg_iovlen == 1)
                return chop_recvmsg(fd, msg, flags);
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

/*
 * poll() is wrapped too (-Wl,--wrap=poll): a thread named in hold_thread,
 * once its poll() has seen input on the socket, stops there (before it takes
 * the client's lock to read) until released; it is released by the first
 * poll() with a 0 timeout from another thread (a look at the socket), or by
 * the test. That is the moment a reader thread has input it has not routed.
 */
static pthread_t hold_thread;
static int hold_armed, hold_wait_probe;
static sem_t hold_held, hold_release;

int __real_poll(struct pollfd *fds, nfds_t n, int timeout);
int __wrap_poll(struct pollfd *fds, nfds_t n, int timeout);

int __wrap_poll(struct pollfd *fds, nfds_t n, int timeout)
{
        int r = __real_poll(fds, n, timeout);

        if (__atomic_load_n(&hold_armed, __ATOMIC_ACQUIRE) && pthread_equal(pthread_self(), hold_thread) && r > 0 &&
            (fds[0].revents & POLLIN)) {
                __atomic_store_n(&hold_armed, 0, __ATOMIC_RELEASE);
                sem_post(&hold_held);
                sem_wait(&hold_release);
        } else if (timeout == 0 && !pthread_equal(pthread_self(), hold_thread) &&
                   __atomic_exchange_n(&hold_wait_probe, 0, __ATOMIC_ACQ_REL)) {
                sem_post(&hold_release);
        }
        return r;
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
        return it_client_connect_flags(&daemon_, IOMEM_CONNECT_EVENTS);
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
        ck_assert_int_ge(r, 0);
        ck_assert_uint_gt(flood_reads, 0);
        /* input was left: a loop that waits for the fd to change (edge-triggered) is told to call again */
        ck_assert_int_eq(iomem_client_get_timeout(c), 0);
        flood_fd = -1;
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

/* ---- a fake daemon whose LIST cursors go round in a circle ---------------- */

struct fake_daemon {
        int listen_fd;
        char dir[64];
        char path[108];
        pthread_t thread;
        unsigned pages; /* LIST requests answered */
        int open_fd;        /* what every OPEN is answered with (the test's, lent): -1 = OPEN ends the fake */
        uint64_t open_size; /* the size the OPEN replies announce */
        size_t open_cut;    /* > 0: an OPEN reply is cut after this many bytes (its fd with them), the rest never sent */
        int order;          /* fake_reordering_daemon(): FAKE_OPEN_FIRST or FAKE_HELLO_WRONG_OPCODE */
        pid_t waiter;       /* fake_reading_daemon(): the thread that waits for the replies */
        unsigned waits;     /* fake_reading_daemon(): the waits it saw the waiter in */
        unsigned woken;     /* fake_reading_daemon(): those the waiter slept again in after the request was read */
};

/* Return: true once @len bytes were read into @buf. */
static bool fake_read_all(int fd, uint8_t *buf, size_t len)
{
        size_t have = 0;

        while (have < len) {
                ssize_t n = read(fd, buf + have, len - have);

                if (n <= 0)
                        return false;
                have += (size_t)n;
        }
        return true;
}

static bool fake_reply(int fd, const struct proto_header *req, const uint8_t *payload, int len)
{
        static uint8_t out[PROTO_HEADER_SIZE + 4096];
        struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION, .flags = PROTO_FLAG_REPLY,
                                  .opcode = req->opcode, .id = req->id };

        if (len < 0 || (size_t)len > sizeof(out) - PROTO_HEADER_SIZE)
                return false;
        h.length = (uint32_t)len;
        proto_header_encode(&h, out);
        memcpy(out + PROTO_HEADER_SIZE, payload, (size_t)len);
        return write(fd, out, PROTO_HEADER_SIZE + (size_t)len) == (ssize_t)(PROTO_HEADER_SIZE + (size_t)len);
}

/*
 * The reply to @req with @payload and @pass_fd (lent) in one sendmsg(), only its first @cut bytes if @cut > 0.
 * Return: true if it was all sent.
 */
static bool fake_reply_fd(int fd, const struct proto_header *req, const uint8_t *payload, int len, int pass_fd,
                          size_t cut)
{
        uint8_t out[PROTO_HEADER_SIZE + 256];
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } ctl = { 0 };
        struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION, .flags = PROTO_FLAG_REPLY,
                                  .opcode = req->opcode, .id = req->id, .nfds = 1 };
        struct iovec iov = { .iov_base = out };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                              .msg_controllen = sizeof(ctl.buf) };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

        if (len < 0 || (size_t)len > sizeof(out) - PROTO_HEADER_SIZE)
                return false;
        h.length = (uint32_t)len;
        proto_header_encode(&h, out);
        memcpy(out + PROTO_HEADER_SIZE, payload, (size_t)len);
        iov.iov_len = PROTO_HEADER_SIZE + (size_t)len;
        if (cut > 0 && cut < iov.iov_len)
                iov.iov_len = cut;
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
        return sendmsg(fd, &msg, MSG_NOSIGNAL) == (ssize_t)iov.iov_len;
}

/*
 * HELLO is answered properly; every LIST with an empty page whose next cursor is 5 after 3, else 3; every OPEN
 * with d->open_fd and a memfd region of d->open_size bytes.
 */
static void *fake_serving_daemon(void *arg)
{
        struct fake_daemon *d = arg;
        static uint8_t payload[PROTO_MAX_PAYLOAD];
        uint8_t hdr[PROTO_HEADER_SIZE], out[4096];
        int s = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC);

        while (s >= 0 && fake_read_all(s, hdr, sizeof(hdr))) {
                struct proto_header h;
                int len;

                if (proto_header_decode(hdr, sizeof(hdr), &h) < 0 || h.length > sizeof(payload) ||
                    !fake_read_all(s, payload, h.length))
                        break;
                if (h.opcode == PROTO_OP_HELLO) {
                        struct proto_hello_reply rep = { .version = PROTO_VERSION, .max_fds = PROTO_MAX_FDS,
                                                         .max_payload = PROTO_MAX_PAYLOAD,
                                                         .max_region_size = 1u << 20, .name_max = PROTO_NAME_MAX,
                                                         .server_version = "fake" };

                        len = proto_hello_reply_encode(&rep, out, sizeof(out));
                } else if (h.opcode == PROTO_OP_LIST) {
                        struct proto_list_writer w;
                        struct proto_list m;

                        if (proto_list_decode(payload, h.length, &m) < 0)
                                break;
                        proto_list_writer_init(&w, out, sizeof(out));
                        len = proto_list_writer_finish(&w, m.cursor == 3 ? 5 : 3);
                        __atomic_add_fetch(&d->pages, 1, __ATOMIC_RELAXED);
                } else if (h.opcode == PROTO_OP_OPEN && d->open_fd >= 0) {
                        struct proto_region_info info = { .id = 7, .size = d->open_size,
                                                          .backend = PROTO_BACKEND_MEMFD };

                        len = proto_region_info_encode(&info, out, sizeof(out));
                        if (!fake_reply_fd(s, &h, out, len, d->open_fd, d->open_cut))
                                break;
                        continue;
                } else {
                        break;
                }
                if (!fake_reply(s, &h, out, len))
                        break;
        }
        if (s >= 0)
                close(s);
        return NULL;
}

static void fake_start(struct fake_daemon *d, void *(*fn)(void *))
{
        snprintf(d->dir, sizeof(d->dir), "/tmp/iomem-it-hostile.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(d->dir));
        snprintf(d->path, sizeof(d->path), "%s/sock", d->dir);
        d->listen_fd = it_listen(d->path, 4);
        d->pages = 0;
        d->open_fd = -1;
        d->open_cut = 0;
        ck_assert_int_eq(pthread_create(&d->thread, NULL, fn, d), 0);
}

static void fake_stop(struct fake_daemon *d)
{
        pthread_join(d->thread, NULL);
        close(d->listen_fd);
        unlink(d->path);
        rmdir(d->dir);
}

/* A client of the fake daemon @d with reconnecting off: each test's fake serves the connections it expects. */
static struct iomem_client *fake_client(const struct fake_daemon *d)
{
        struct iomem_client *c = NULL;

        ck_assert_int_eq(iomem_connect(d->path, &c), 0);
        iomem_client_set_reconnect(c, 0);
        return c;
}

static int count_entry(const struct iomem_list_entry *e, void *userdata)
{
        (void)e;
        ++*(unsigned *)userdata;
        return 0;
}

/* Region ids only grow, so every next cursor is past the one sent: a cursor going back is malformed. */
START_TEST(test_list_cycling_cursors)
{
        struct fake_daemon d;
        struct iomem_client *c = NULL;
        unsigned entries = 0;
        int r;

        fake_start(&d, fake_serving_daemon);
        c = fake_client(&d);
        r = iomem_list(c, "", count_entry, &entries);
        ck_assert_msg(r == -EPROTO, "LIST with cycling cursors: %s", iomem_strerror(r));
        ck_assert_uint_eq(entries, 0);
        fprintf(stderr, "test_list_cycling_cursors: %u pages asked\n", d.pages);
        iomem_disconnect(c);
        fake_stop(&d);
}
END_TEST

/* ---- a daemon that reads the request and waits before it answers --------------------------- */

/* Return: the state letter of thread @tid of this process ('S' asleep, 'R' running, ...); 0 if unreadable. */
static char thread_state(pid_t tid)
{
        char path[64], buf[512], *p;
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return 0;
        buf[n] = '\0';
        p = strrchr(buf, ')'); /* after the name, which may hold anything */
        return p && p[1] == ' ' ? p[2] : 0;
}

/* Return: how often thread @tid of this process went to sleep (voluntary_ctxt_switches); ULONG_MAX if unreadable. */
static unsigned long thread_sleeps(pid_t tid)
{
        char path[64], line[128];
        unsigned long v = ULONG_MAX;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
        f = fopen(path, "re");
        if (!f)
                return ULONG_MAX;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "voluntary_ctxt_switches: %lu", &v) == 1)
                        break;
        fclose(f);
        return v;
}

/*
 * Once the client's bytes are there and its waiting thread asleep (the same count of sleeps over 20 ms, so the
 * sleep itself is counted), they are read, and the thread is watched for 300 ms before the answer: a thread that
 * sleeps in recvmsg() is woken by the kernel's wake-up of its socket when the bytes it sent are read (room to
 * write, EPOLLOUT), finds nothing and sleeps again (one more sleep); one in poll() for POLLIN is not woken.
 * HELLO and PING are answered; anything else, or the client's close, ends it.
 */
static void *fake_reading_daemon(void *arg)
{
        struct fake_daemon *d = arg;
        static uint8_t in[PROTO_HEADER_SIZE + PROTO_MAX_PAYLOAD];
        uint8_t out[4096];
        size_t have = 0;
        int s = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC);

        while (s >= 0) {
                struct pollfd pfd = { .fd = s, .events = POLLIN };
                unsigned long before = ULONG_MAX, now = ULONG_MAX;
                bool asleep = false;
                struct proto_header h;
                ssize_t n;

                if (poll(&pfd, 1, 10000) != 1)
                        break;
                for (int i = 0; i < 1000 && !asleep; i++) { /* at most 10 s for the waiter to be asleep */
                        usleep(10000);
                        now = thread_sleeps(d->waiter);
                        asleep = thread_state(d->waiter) == 'S' && now == before && now != ULONG_MAX;
                        before = now;
                }
                n = recv(s, in + have, sizeof(in) - have, MSG_DONTWAIT);
                if (n <= 0)
                        break;
                have += (size_t)n;
                if (asleep) {
                        d->waits++;
                        for (int i = 0; i < 300; i++) {
                                now = thread_sleeps(d->waiter);
                                if (now != before)
                                        break;
                                usleep(1000);
                        }
                        if (now != before)
                                d->woken++;
                }
                while (have >= PROTO_HEADER_SIZE && proto_header_decode(in, have, &h) == 0 &&
                       have >= PROTO_HEADER_SIZE + h.length) {
                        size_t used = PROTO_HEADER_SIZE + h.length;
                        int len = -1;

                        if (h.opcode == PROTO_OP_HELLO) {
                                struct proto_hello_reply rep = { .version = PROTO_VERSION, .max_fds = PROTO_MAX_FDS,
                                                                 .max_payload = PROTO_MAX_PAYLOAD,
                                                                 .max_region_size = 1u << 20,
                                                                 .name_max = PROTO_NAME_MAX, .server_version = "fake" };

                                len = proto_hello_reply_encode(&rep, out, sizeof(out));
                        } else if (h.opcode == PROTO_OP_PING) {
                                struct proto_ping m;

                                if (proto_ping_decode(in + PROTO_HEADER_SIZE, h.length, &m) == 0)
                                        len = proto_ping_encode(&m, out, sizeof(out));
                        }
                        if (len < 0 || !fake_reply(s, &h, out, len)) {
                                close(s);
                                return NULL;
                        }
                        memmove(in, in + used, have - used);
                        have -= used;
                }
        }
        if (s >= 0)
                close(s);
        return NULL;
}

/*
 * A synchronous call waits for its reply in poll(), not in a blocking recvmsg(): the daemon's read of the request
 * wakes every thread asleep in recvmsg() on the client's socket (the kernel's room-to-write wake-up), which then
 * finds nothing and sleeps again; on a CPU shared with the daemon that is a switch to the client and back in the
 * middle of every request (docs/performance.md, "the reply waited for in poll()").
 */
START_TEST(test_reply_wait_sleeps_through_the_read)
{
        struct fake_daemon d = { .waiter = (pid_t)syscall(SYS_gettid) };
        struct iomem_client *c;

        fake_start(&d, fake_reading_daemon);
        c = fake_client(&d);
        ck_assert_int_eq(iomem_ping(c), 0);
        ck_assert_int_eq(iomem_ping(c), 0);
        c = iomem_disconnect(c);
        fake_stop(&d);
        ck_assert_msg(d.waits >= 2, "the fake daemon saw the client asleep in %u waits, want 2 or more", d.waits);
        ck_assert_msg(d.woken == 0,
                      "%u of %u waits for a reply were woken when the daemon read the request (a blocking recvmsg)",
                      d.woken, d.waits);
}
END_TEST

/* ---- a daemon that refuses the connection at accept --------------------------- */

/*
 * As iomemd's allow-list or connection quota: at accept, before reading anything, a HELLO error reply with id 0
 * (EACCES, "not on the list"); then it reads what the client sends (HELLO and its first request), counting the
 * requests in d->pages, and closes.
 */
static void *fake_refusing_daemon(void *arg)
{
        struct fake_daemon *d = arg;
        static uint8_t payload[PROTO_MAX_PAYLOAD];
        uint8_t hdr[PROTO_HEADER_SIZE], out[256];
        struct proto_error err = { .error = -EACCES, .message = "not on the list" };
        struct proto_header h = { .opcode = PROTO_OP_HELLO, .id = 0 }, rep = { .magic = PROTO_MAGIC,
                .version = PROTO_VERSION, .flags = PROTO_FLAG_REPLY | PROTO_FLAG_ERROR, .opcode = PROTO_OP_HELLO };
        int s = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC), len;

        if (s < 0)
                return NULL;
        len = proto_error_encode(&err, out + PROTO_HEADER_SIZE, sizeof(out) - PROTO_HEADER_SIZE);
        if (len > 0) {
                rep.length = (uint32_t)len;
                proto_header_encode(&rep, out);
                if (write(s, out, PROTO_HEADER_SIZE + (size_t)len) != (ssize_t)(PROTO_HEADER_SIZE + (size_t)len))
                        len = -1;
        }
        while (len > 0 && fake_read_all(s, hdr, sizeof(hdr))) {
                if (proto_header_decode(hdr, sizeof(hdr), &h) < 0 || h.length > sizeof(payload) ||
                    !fake_read_all(s, payload, h.length))
                        break;
                if (h.opcode != PROTO_OP_HELLO) {
                        __atomic_add_fetch(&d->pages, 1, __ATOMIC_RELAXED);
                        break;
                }
        }
        close(s);
        return NULL;
}

/*
 * The refusal's id is 0, which no request has: it answers the HELLO sent with the first call (client_dispatch()),
 * and the call fails with the daemon's reason and message, not -EPROTO or -ECONNRESET.
 */
START_TEST(test_refused_at_accept_hello_id_0)
{
        struct fake_daemon d;
        struct iomem_client *c = NULL;
        struct iomem_region *r = NULL;
        int ret;

        fake_start(&d, fake_refusing_daemon);
        c = fake_client(&d);
        ret = iomem_open(c, "x", 0, 0, &r);
        ck_assert_msg(ret == -EACCES, "OPEN on a refused connection: %s", iomem_strerror(ret));
        ck_assert_ptr_null(r);
        ck_assert_str_eq(iomem_client_error_message(c), "not on the list");
        iomem_disconnect(c);
        fake_stop(&d);
}
END_TEST

/* ---- a daemon that answers the held-back HELLO and the first request oddly ------ */

enum {
        FAKE_OPEN_FIRST,         /* the OPEN's reply (with d->open_fd) before HELLO's */
        FAKE_HELLO_WRONG_OPCODE, /* HELLO's id answered with an OPEN reply (no fd) */
};

/* Reads HELLO and the OPEN sent with it, then answers both as d->order says, and waits for the client to close. */
static void *fake_reordering_daemon(void *arg)
{
        struct fake_daemon *d = arg;
        static uint8_t payload[PROTO_MAX_PAYLOAD];
        uint8_t hdr[PROTO_HEADER_SIZE], hello_out[256], open_out[256];
        struct proto_header hello_h = { .id = 0 }, open_h = { .id = 0 };
        struct proto_hello_reply hello = { .version = PROTO_VERSION, .max_fds = PROTO_MAX_FDS,
                                           .max_payload = PROTO_MAX_PAYLOAD, .max_region_size = 1u << 20,
                                           .name_max = PROTO_NAME_MAX, .server_version = "fake" };
        struct proto_region_info info = { .id = 7, .size = d->open_size, .backend = PROTO_BACKEND_MEMFD };
        int s = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC), hello_len, open_len;

        for (int i = 0; s >= 0 && i < 2 && fake_read_all(s, hdr, sizeof(hdr)); i++) {
                struct proto_header h;

                if (proto_header_decode(hdr, sizeof(hdr), &h) < 0 || h.length > sizeof(payload) ||
                    !fake_read_all(s, payload, h.length))
                        break;
                if (h.opcode == PROTO_OP_HELLO)
                        hello_h = h;
                else if (h.opcode == PROTO_OP_OPEN)
                        open_h = h;
        }
        hello_len = proto_hello_reply_encode(&hello, hello_out, sizeof(hello_out));
        open_len = proto_region_info_encode(&info, open_out, sizeof(open_out));
        if (s >= 0 && hello_h.id != 0 && open_h.id != 0) {
                if (d->order == FAKE_OPEN_FIRST) {
                        /* both in one sendmsg() (the client reads them together), the OPEN's fd with them */
                        uint8_t out[2 * PROTO_HEADER_SIZE + 512];
                        union {
                                struct cmsghdr align;
                                char buf[CMSG_SPACE(sizeof(int))];
                        } ctl = { 0 };
                        struct proto_header oh = { .magic = PROTO_MAGIC, .version = PROTO_VERSION,
                                                   .flags = PROTO_FLAG_REPLY, .opcode = PROTO_OP_OPEN,
                                                   .id = open_h.id, .length = (uint32_t)open_len, .nfds = 1 };
                        struct proto_header hh = { .magic = PROTO_MAGIC, .version = PROTO_VERSION,
                                                   .flags = PROTO_FLAG_REPLY, .opcode = PROTO_OP_HELLO,
                                                   .id = hello_h.id, .length = (uint32_t)hello_len };
                        size_t n = 0;
                        struct iovec iov = { .iov_base = out };
                        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                                              .msg_controllen = sizeof(ctl.buf) };
                        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

                        if (open_len > 0 && hello_len > 0 && (size_t)(open_len + hello_len) <= 512) {
                                proto_header_encode(&oh, out);
                                n += PROTO_HEADER_SIZE;
                                memcpy(out + n, open_out, (size_t)open_len);
                                n += (size_t)open_len;
                                proto_header_encode(&hh, out + n);
                                n += PROTO_HEADER_SIZE;
                                memcpy(out + n, hello_out, (size_t)hello_len);
                                n += (size_t)hello_len;
                                iov.iov_len = n;
                                cm->cmsg_level = SOL_SOCKET;
                                cm->cmsg_type = SCM_RIGHTS;
                                cm->cmsg_len = CMSG_LEN(sizeof(int));
                                memcpy(CMSG_DATA(cm), &d->open_fd, sizeof(int));
                                (void)sendmsg(s, &msg, MSG_NOSIGNAL);
                        }
                } else {
                        struct proto_header wrong = { .opcode = PROTO_OP_OPEN, .id = hello_h.id };

                        fake_reply(s, &wrong, open_out, open_len);
                }
                while (read(s, hdr, sizeof(hdr)) > 0) /* until the client closes */
                        ;
        }
        if (s >= 0)
                close(s);
        return NULL;
}

/*
 * The held-back HELLO's entry is outside the reply table (client_dispatch() looks at it first): a daemon that
 * answers the OPEN before the HELLO still gets both routed, and the OPEN's region is the caller's.
 */
START_TEST(test_open_answered_before_hello)
{
        struct fake_daemon d;
        struct iomem_client *c = NULL;
        struct iomem_region *r = NULL;
        void *addr = NULL;
        int ret;

        fake_start(&d, fake_reordering_daemon);
        d.order = FAKE_OPEN_FIRST;
        d.open_size = 4096;
        d.open_fd = memfd_create("it-hostile", MFD_CLOEXEC);
        ck_assert_int_ge(d.open_fd, 0);
        ck_assert_int_eq(ftruncate(d.open_fd, 4096), 0);
        c = fake_client(&d);
        ret = iomem_open(c, "x", 0, 0, &r);
        ck_assert_msg(ret == 0, "OPEN answered before HELLO: %s", iomem_strerror(ret));
        ck_assert_int_eq(iomem_region_map(r, 0, 4096, PROT_READ | PROT_WRITE, &addr), 0);
        ck_assert_int_eq(iomem_unmap(addr, 4096), 0);
        iomem_region_free(r);
        iomem_disconnect(c);
        fake_stop(&d);
        close(d.open_fd);
}
END_TEST

/* A reply with the held-back HELLO's id but another opcode is malformed: the call fails with -EPROTO. */
START_TEST(test_hello_id_answered_with_other_opcode)
{
        struct fake_daemon d;
        struct iomem_client *c = NULL;
        struct iomem_region *r = NULL;
        int ret;

        fake_start(&d, fake_reordering_daemon);
        d.order = FAKE_HELLO_WRONG_OPCODE;
        c = fake_client(&d);
        ret = iomem_open(c, "x", 0, 0, &r);
        ck_assert_msg(ret == -EPROTO, "HELLO's id answered as OPEN: %s", iomem_strerror(ret));
        ck_assert_ptr_null(r);
        iomem_disconnect(c);
        fake_stop(&d);
}
END_TEST

/* ---- a daemon that dies after applying what it read with HELLO -------------- */

/*
 * Reads HELLO and the request sent with it, "applies" the request (counts it
 * in d->pages) and closes without a reply, as a daemon killed at that moment
 * would; then accepts whatever connection comes within a second, the same
 * way. Every request that reaches it is counted.
 */
static void *fake_dying_daemon(void *arg)
{
        struct fake_daemon *d = arg;
        static uint8_t payload[PROTO_MAX_PAYLOAD];
        uint8_t hdr[PROTO_HEADER_SIZE];

        for (int conns = 0; conns < 3; conns++) {
                struct pollfd pfd = { .fd = d->listen_fd, .events = POLLIN };
                int s;

                if (poll(&pfd, 1, conns == 0 ? 10000 : 1000) <= 0)
                        break;
                s = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (s < 0)
                        break;
                while (fake_read_all(s, hdr, sizeof(hdr))) {
                        struct proto_header h;

                        if (proto_header_decode(hdr, sizeof(hdr), &h) < 0 || h.length > sizeof(payload) ||
                            !fake_read_all(s, payload, h.length))
                                break;
                        if (h.opcode != PROTO_OP_HELLO) {
                                __atomic_add_fetch(&d->pages, 1, __ATOMIC_RELAXED);
                                break; /* applied; the daemon dies before any reply */
                        }
                }
                close(s);
        }
        return NULL;
}

/* The end of the stream after HELLO went out is "outcome unknown": a DELETE is not sent again (it was applied). */
START_TEST(test_no_resend_after_hello_read)
{
        struct fake_daemon d;
        struct iomem_client *c = NULL;
        int r;

        fake_start(&d, fake_dying_daemon);
        ck_assert_int_eq(iomem_connect(d.path, &c), 0);
        iomem_client_set_reconnect(c, 2000); /* on: DELETE is still not one to repeat */
        r = iomem_delete(c, "applied-once");
        ck_assert_msg(r == -ECONNRESET, "DELETE whose connection ended after HELLO went out: %s", iomem_strerror(r));
        iomem_disconnect(c);
        fake_stop(&d); /* waits for the fake daemon's last second of accepting */
        ck_assert_uint_eq(d.pages, 1);
}
END_TEST

/* ---- a cached OPEN while another thread is the reader ----------------------- */

struct reader_arg {
        struct iomem_client *c;
        struct iomem_event ev;
        int r;
};

static void *reader_thread(void *p)
{
        struct reader_arg *a = p;

        hold_thread = pthread_self();
        __atomic_store_n(&hold_armed, 1, __ATOMIC_RELEASE);
        a->r = iomem_next_event(a->c, &a->ev, 20000);
        return NULL;
}

/*
 * Another thread polls the socket (iomem_next_event()); the DELETE's event
 * has arrived but that thread has not routed it yet. A cached iomem_open()
 * answered from the cache without looking: the deleted region, although its
 * event had reached the process (async.md promises that is never missed).
 */
START_TEST(test_cached_open_sees_event_another_thread_holds)
{
        struct iomem_create_opts co = { .mode = 0644 };
        struct iomem_client *c = connect_events(), *a = connect_events();
        struct iomem_region *region = NULL;
        struct reader_arg ra = { .c = c };
        pthread_t th;
        uint32_t wid;
        int r;

        ck_assert_int_eq(sem_init(&hold_held, 0, 0), 0);
        ck_assert_int_eq(sem_init(&hold_release, 0, 0), 0);
        ck_assert_int_eq(iomem_client_set_open_cache(c, 1), 0);
        ck_assert_int_eq(iomem_watch(c, "", &wid), 0);
        ck_assert_int_eq(iomem_create(a, "held", 4096, &co, &region), 0);
        region = iomem_region_free(region);
        ck_assert_int_eq(iomem_open(c, "held", IOMEM_OPEN_RDONLY, 0, &region), 0);
        region = iomem_region_free(region);
        ck_assert_int_eq(iomem_open(c, "held", IOMEM_OPEN_RDONLY, 0, &region), 0); /* from the cache */
        region = iomem_region_free(region);
        ck_assert_uint_eq(iomem_client_open_cache_hits(c), 1);
        /* the CREATED event the reader would take first */
        {
                struct iomem_event ev;

                ck_assert_int_eq(iomem_next_event(c, &ev, 0), 0);
                ck_assert_int_eq(ev.kind, IOMEM_EVENT_CREATED);
        }
        ck_assert_int_eq(pthread_create(&th, NULL, reader_thread, &ra), 0);
        ck_assert_int_eq(iomem_delete(a, "held"), 0);
        ck_assert_int_eq(sem_wait(&hold_held), 0); /* the reader saw the event arrive, and stands still */
        __atomic_store_n(&hold_wait_probe, 1, __ATOMIC_RELEASE);
        r = iomem_open(c, "held", IOMEM_OPEN_RDONLY, 0, &region);
        region = iomem_region_free(region);
        if (__atomic_exchange_n(&hold_wait_probe, 0, __ATOMIC_ACQ_REL))
                sem_post(&hold_release); /* nobody looked: let the reader go */
        ck_assert_int_eq(pthread_join(th, NULL), 0);
        ck_assert_int_eq(ra.r, 0);
        ck_assert_int_eq(ra.ev.kind, IOMEM_EVENT_DELETED);
        ck_assert_msg(r == -ENOENT, "open of a deleted region whose event had arrived: %s", iomem_strerror(r));
        ck_assert_uint_eq(iomem_client_open_cache_hits(c), 1);
        sem_destroy(&hold_held);
        sem_destroy(&hold_release);
        iomem_disconnect(a);
        iomem_disconnect(c);
}
END_TEST

/* ---- first calls on a connection the daemon closed before HELLO ------------------ */

struct first_call_arg {
        struct iomem_client *c;
        bool hold;
        int r;
};

static void *first_call_thread(void *p)
{
        struct first_call_arg *a = p;
        struct iomem_stat st;

        if (a->hold) {
                hold_thread = pthread_self();
                __atomic_store_n(&hold_armed, 1, __ATOMIC_RELEASE);
        }
        a->r = iomem_stat(a->c, "idle", &st);
        return NULL;
}

/*
 * iomem_connect() holds HELLO back; the daemon's handshake timeout closed the idle connection. Thread A's
 * first call finds it gone (its send: -EPIPE) and, as the reader, has seen the end of the stream but not
 * routed it yet (held in poll()). Thread B's call meanwhile fails to send too. B must wait for A's reading
 * (the daemon applied nothing: both calls are sent again on a new connection), not give up at once with
 * -ETIMEDOUT (no time limit is set) and break the connection under A, which then fails too.
 */
START_TEST(test_first_calls_after_handshake_timeout)
{
        const char *const extra[] = { "--handshake-timeout", "1", NULL };
        struct first_call_arg a = { .hold = true, .r = 1 }, b = { .hold = false, .r = 1 };
        struct iomem_client *owner = NULL, *c = NULL;
        struct iomem_region *region = NULL;
        pthread_t ta, tb;

        it_daemon_stop(&daemon_);
        it_daemon_start(&daemon_, extra);
        ck_assert_int_eq(sem_init(&hold_held, 0, 0), 0);
        ck_assert_int_eq(sem_init(&hold_release, 0, 0), 0);
        ck_assert_int_eq(iomem_connect(daemon_.socket, &owner), 0);
        ck_assert_int_eq(iomem_create(owner, "idle", 4096, NULL, &region), 0);
        region = iomem_region_free(region);
        ck_assert_int_eq(iomem_connect(daemon_.socket, &c), 0);
        iomem_client_set_reconnect(c, 0);
        it_sleep_ms(1500); /* past the 1 s handshake timeout: the daemon closed the connection */
        a.c = b.c = c;
        ck_assert_int_eq(pthread_create(&ta, NULL, first_call_thread, &a), 0);
        ck_assert_int_eq(sem_wait(&hold_held), 0); /* A saw the end of the stream and stands still */
        ck_assert_int_eq(pthread_create(&tb, NULL, first_call_thread, &b), 0);
        it_sleep_ms(200); /* ordering only: B sends and waits meanwhile; nothing timed is asserted */
        sem_post(&hold_release);
        ck_assert_int_eq(pthread_join(ta, NULL), 0);
        ck_assert_int_eq(pthread_join(tb, NULL), 0);
        ck_assert_msg(a.r == 0 && b.r == 0, "first calls: %s, %s", iomem_strerror(a.r), iomem_strerror(b.r));
        sem_destroy(&hold_held);
        sem_destroy(&hold_release);
        iomem_disconnect(c);
        iomem_disconnect(owner);
}
END_TEST

/* ---- OPEN replies whose fd is not what was announced ---------------------- */

/* iomem_open() with d->open_fd answering it. Return: the region. */
static struct iomem_region *fake_open(struct fake_daemon *d, int fd, uint64_t announced)
{
        struct iomem_client *c = NULL;
        struct iomem_region *region = NULL;

        fake_start(d, fake_serving_daemon);
        d->open_fd = fd;
        d->open_size = announced;
        ck_assert_int_eq(iomem_connect(d->path, &c), 0);
        iomem_client_set_reconnect(c, 0);
        /* no fstat at receipt: the fd is looked at when the region is first used */
        ck_assert_int_eq(iomem_open(c, "any", 0, 0, &region), 0);
        iomem_disconnect(c);
        fake_stop(d);
        return region;
}

/*
 * A cold connection's replies (HELLO's and the first request's, with its fd, which iomemd sends with one
 * sendmsg) and later ones, read in pieces of every size around the frame boundaries, after an EINTR: each piece
 * is routed as it comes (an incomplete frame waits for the rest, its fd held), as a whole buffer would be.
 */
START_TEST(test_replies_in_pieces)
{
        static const size_t sizes[] = { 1, 2, 7, 19, 20, 21, 40, 47, 64, 100, 175, 4096 };
        struct iomem_client *c = it_client_connect(&daemon_);
        struct iomem_region *region = NULL;
        char *addr;

        ck_assert_int_eq(iomem_create(c, "pieces", 4096, NULL, &region), 0);
        region = iomem_region_free(region);
        c = iomem_disconnect(c);
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                void *p = NULL;

                c = it_client_connect(&daemon_);
                chop_size = sizes[i];
                chop_eintr = true;
                chop_reads = 0;
                __atomic_store_n(&chop_fd, iomem_client_fd(c), __ATOMIC_RELEASE);
                ck_assert_msg(iomem_open(c, "pieces", 0, 0, &region) == 0, "open, pieces of %zu", sizes[i]);
                ck_assert_int_eq(iomem_region_map(region, 0, 4096, PROT_READ | PROT_WRITE, &p), 0);
                addr = p;
                addr[sizes[i] % 4096] = 'x';
                ck_assert_int_eq(iomem_unmap(p, 4096), 0);
                /* an error reply, and a reply after it, in pieces too */
                ck_assert_int_eq(iomem_open(c, "pieces-missing", 0, 0, &region), -ENOENT);
                ck_assert_msg(iomem_client_error_message(c)[0] != '\0', "no error detail");
                ck_assert_int_eq(iomem_ping(c), 0);
                ck_assert_msg(chop_reads > 2 || sizes[i] >= 100, "%lu reads of %zu bytes", chop_reads, sizes[i]);
                __atomic_store_n(&chop_fd, -1, __ATOMIC_RELEASE);
                c = iomem_disconnect(c);
                region = iomem_region_free(region);
        }
}
END_TEST

/*
 * A client disconnected while its transport holds an fd that came ahead of the rest of its frame (an OPEN reply
 * cut after 8 bytes, the fd with them; the call times out): iomem_disconnect() closes it (transport_release());
 * the teardown's fd-leak check fails otherwise.
 */
START_TEST(test_disconnect_holding_fd)
{
        struct fake_daemon d;
        struct iomem_client *c = NULL;
        struct iomem_region *region = NULL;
        int fd = memfd_create("held", MFD_CLOEXEC), base;

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, 4096), 0);
        fake_start(&d, fake_serving_daemon);
        d.open_fd = fd;
        d.open_size = 4096;
        d.open_cut = 8;
        base = fdutil_count(0);
        c = fake_client(&d);
        iomem_client_set_timeout(c, 300);
        ck_assert_int_eq(iomem_open(c, "any", 0, 0, &region), -ETIMEDOUT);
        ck_assert_ptr_null(region);
        /* the client's socket, the fake's end of it, and the copy of the fd, held */
        ck_assert_int_eq(fdutil_count(0), base + 3);
        c = iomem_disconnect(c);
        fake_stop(&d);
        close(fd);
}
END_TEST

/*
 * D7 on the client: an fd that is not a regular file (here a pipe, which a read would block on) is never mapped
 * nor given out: every use of the region fails with -EINVAL, and its size is 0, never the announced one.
 */
START_TEST(test_open_reply_fd_not_regular)
{
        struct fake_daemon d;
        struct iomem_region *region;
        void *addr = NULL;
        int p[2];

        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        region = fake_open(&d, p[0], 4096);
        ck_assert_int_eq(iomem_region_map(region, 0, 4096, PROT_READ, &addr), -EINVAL);
        ck_assert_int_eq(iomem_region_map(region, 0, 0, PROT_READ, &addr), -EINVAL);
        ck_assert_ptr_null(addr);
        ck_assert_int_eq(iomem_region_fd(region), -EINVAL);
        ck_assert_int_eq(iomem_region_dup_fd(region), -EINVAL);
        ck_assert_uint_eq(iomem_region_size(region), 0);
        ck_assert_int_eq(iomem_region_refresh(region), -EINVAL);
        iomem_region_free(region);
        close(p[0]);
        close(p[1]);
}
END_TEST

/*
 * S1 on the client: a region is what its object is, whatever the daemon announced: a 4 KiB memfd announced as
 * 8 KiB reports 4 KiB, maps 4 KiB when asked for all of it, and refuses 8 KiB (-ERANGE) instead of a mapping whose
 * second page would SIGBUS.
 */
START_TEST(test_open_reply_fd_smaller_than_announced)
{
        struct fake_daemon d;
        struct iomem_region *region;
        void *addr = NULL;
        int fd = memfd_create("small", MFD_CLOEXEC);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, 4096), 0);
        region = fake_open(&d, fd, 8192);
        ck_assert_int_eq(iomem_region_map(region, 0, 8192, PROT_READ | PROT_WRITE, &addr), -ERANGE);
        ck_assert_uint_eq(iomem_region_size(region), 4096);
        ck_assert_int_eq(iomem_region_map(region, 0, 0, PROT_READ | PROT_WRITE, &addr), 0);
        memset(addr, 0x5a, 4096);
        ck_assert_int_eq(iomem_unmap(addr, 4096), 0);
        iomem_region_free(region);
        close(fd);
}
END_TEST

/* ---- OPEN replies with more or fewer fds than they declare, or than OPEN wants ----- */

/* One OPEN reply: the fds its header declares, those sent (in up to 3 sendmsg() calls), its flags. */
struct fd_case {
        const char *what;
        uint16_t declared;
        unsigned chunks[3]; /* fds sent with each piece of the frame (a piece per entry up to the last non-zero) */
        unsigned npieces;
        uint8_t flags;
        bool may_succeed; /* an fd the frame does not declare is indistinguishable from the next frame's */
};

static const struct fd_case *fd_case_now;
static int fd_case_fds[8]; /* memfds the fake sends (the test's, lent) */

/* HELLO answered; the OPEN with fd_case_now's frame, then the fake waits for the client to close. */
static void *fake_fd_count_daemon(void *arg)
{
        struct fake_daemon *d = arg;
        static uint8_t payload[PROTO_MAX_PAYLOAD];
        uint8_t hdr[PROTO_HEADER_SIZE], out[PROTO_HEADER_SIZE + 256];
        int s = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        const struct fd_case *fc = fd_case_now;

        while (s >= 0 && fake_read_all(s, hdr, sizeof(hdr))) {
                struct proto_header h;

                if (proto_header_decode(hdr, sizeof(hdr), &h) < 0 || h.length > sizeof(payload) ||
                    !fake_read_all(s, payload, h.length))
                        break;
                if (h.opcode == PROTO_OP_HELLO) {
                        struct proto_hello_reply rep = { .version = PROTO_VERSION, .max_fds = PROTO_MAX_FDS,
                                                         .max_payload = PROTO_MAX_PAYLOAD,
                                                         .max_region_size = 1u << 20, .name_max = PROTO_NAME_MAX,
                                                         .server_version = "fake" };
                        uint8_t rb[256];

                        if (!fake_reply(s, &h, rb, proto_hello_reply_encode(&rep, rb, sizeof(rb))))
                                break;
                } else if (h.opcode == PROTO_OP_OPEN) {
                        struct proto_region_info info = { .id = 7, .size = 4096, .backend = PROTO_BACKEND_MEMFD };
                        struct proto_error err = { .error = -EACCES, .message = "no" };
                        struct proto_header rh = { .magic = PROTO_MAGIC, .version = PROTO_VERSION,
                                                   .flags = fc->flags, .opcode = PROTO_OP_OPEN, .id = h.id,
                                                   .nfds = fc->declared };
                        int len = (fc->flags & PROTO_FLAG_ERROR)
                                          ? proto_error_encode(&err, out + PROTO_HEADER_SIZE, sizeof(out) - PROTO_HEADER_SIZE)
                                          : proto_region_info_encode(&info, out + PROTO_HEADER_SIZE,
                                                                     sizeof(out) - PROTO_HEADER_SIZE);
                        size_t total, off = 0;
                        unsigned next_fd = 0;

                        if (len < 0)
                                break;
                        rh.length = (uint32_t)len;
                        proto_header_encode(&rh, out);
                        total = PROTO_HEADER_SIZE + (size_t)len;
                        for (unsigned k = 0; k < fc->npieces; k++) {
                                /* pieces of the frame: the last takes what is left */
                                size_t n = k + 1 == fc->npieces ? total - off : 1 + k;
                                union {
                                        struct cmsghdr align;
                                        char buf[CMSG_SPACE(8 * sizeof(int))];
                                } ctl = { 0 };
                                struct iovec iov = { .iov_base = out + off, .iov_len = n };
                                struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

                                if (fc->chunks[k] > 0) {
                                        struct cmsghdr *cm;

                                        msg.msg_control = ctl.buf;
                                        msg.msg_controllen = CMSG_SPACE(fc->chunks[k] * sizeof(int));
                                        cm = CMSG_FIRSTHDR(&msg);
                                        cm->cmsg_level = SOL_SOCKET;
                                        cm->cmsg_type = SCM_RIGHTS;
                                        cm->cmsg_len = CMSG_LEN(fc->chunks[k] * sizeof(int));
                                        memcpy(CMSG_DATA(cm), fd_case_fds + next_fd, fc->chunks[k] * sizeof(int));
                                        next_fd += fc->chunks[k];
                                }
                                if (sendmsg(s, &msg, MSG_NOSIGNAL) != (ssize_t)n)
                                        break;
                                off += n;
                                poll(NULL, 0, 5); /* a separate recvmsg() per piece, mostly */
                        }
                } else {
                        break;
                }
        }
        if (s >= 0)
                close(s);
        return NULL;
}

/*
 * A hostile daemon's OPEN reply with more or fewer fds than it declares, or than OPEN takes (one), or an error
 * reply carrying one, in one piece or several (the fds split between them): the call fails (-EPROTO or the
 * broken connection's error), every fd received is closed (none leaks once the client is gone), and nothing
 * outside a frame's four fds is read or written (the ASan build). Exercises transport_read_flags()' fixed-size
 * copy of a batch and transport_next_frame_borrowed()'s header decoded into the frame.
 */
START_TEST(test_open_reply_fd_counts)
{
        static const struct fd_case cases[] = {
                { "two declared and sent", 2, { 2 }, 1, PROTO_FLAG_REPLY, false },
                { "one declared, none sent", 1, { 0 }, 1, PROTO_FLAG_REPLY, false },
                { "none declared, one sent", 0, { 1 }, 1, PROTO_FLAG_REPLY, false },
                { "four declared and sent", 4, { 4 }, 1, PROTO_FLAG_REPLY, false },
                { "three declared, sent 2 + 1", 3, { 2, 1 }, 2, PROTO_FLAG_REPLY, false },
                { "one declared, four sent", 1, { 4 }, 1, PROTO_FLAG_REPLY, true },
                { "four declared, five sent", 4, { 5 }, 1, PROTO_FLAG_REPLY, false },
                { "five declared, sent 4 + 1", 5, { 4, 1 }, 2, PROTO_FLAG_REPLY, false },
                { "four declared, sent 1 + 1 + 2", 4, { 1, 1, 2 }, 3, PROTO_FLAG_REPLY, false },
                { "one declared, sent 0 + 1", 1, { 0, 1 }, 2, PROTO_FLAG_REPLY, true },
                { "an error reply with one", 1, { 1 }, 1, PROTO_FLAG_REPLY | PROTO_FLAG_ERROR, false },
                { "eight sent 4 + 4, one declared", 1, { 4, 4 }, 2, PROTO_FLAG_REPLY, true },
        };
        int base;

        for (unsigned i = 0; i < 8; i++) {
                fd_case_fds[i] = memfd_create("fdcase", MFD_CLOEXEC);
                ck_assert_int_ge(fd_case_fds[i], 0);
                ck_assert_int_eq(ftruncate(fd_case_fds[i], 4096), 0);
        }
        base = fdutil_count(0);
        for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct fake_daemon d;
                struct iomem_client *c = NULL;
                struct iomem_region *region = NULL;
                int r;

                fd_case_now = &cases[i];
                fake_start(&d, fake_fd_count_daemon);
                c = fake_client(&d);
                iomem_client_set_timeout(c, 2000);
                r = iomem_open(c, "any", 0, 0, &region);
                ck_assert_msg(r < 0 || cases[i].may_succeed, "%s: OPEN succeeded", cases[i].what);
                ck_assert_msg(r != -ETIMEDOUT, "%s: no answer routed (%s)", cases[i].what, iomem_strerror(r));
                if (r == 0) {
                        ck_assert_uint_eq(iomem_region_size(region), 4096);
                        region = iomem_region_free(region);
                }
                ck_assert_ptr_null(region);
                iomem_disconnect(c);
                fake_stop(&d);
                ck_assert_msg(fdutil_count(0) == base, "%s: %d fds left", cases[i].what, fdutil_count(0) - base);
        }
        for (unsigned i = 0; i < 8; i++)
                close(fd_case_fds[i]);
}
END_TEST

/*
 * iomemctl exec against a daemon whose OPEN reply carries a pipe: refused as libiomem refuses it (-EINVAL, D7),
 * before anything runs; it used to fork and fail in the child's fcntl(-22) with "Bad file descriptor".
 */
START_TEST(test_ctl_exec_reply_fd_not_regular)
{
        struct fake_daemon d;
        char out[256], err[512];
        int p[2], status;

        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        fake_start(&d, fake_serving_daemon);
        d.open_fd = p[0];
        d.open_size = 4096;
        const char *const argv[] = { it_env("IOMEMCTL"), "--socket", d.path, "exec", "any", "--", "true", NULL };
        status = it_run(argv, NULL, 0, out, sizeof(out), err, sizeof(err));
        fake_stop(&d);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 0, "iomemctl exec succeeded: %s", out);
        ck_assert_msg(strstr(err, "Invalid argument") && !strstr(err, "Bad file descriptor"), "stderr: %s", err);
        close(p[0]);
        close(p[1]);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("it-hostile");
        TCase *tc = tcase_create("hostile");

        tcase_add_checked_fixture(tc, setup, teardown);
        /* a hang (the old endless read) fails here; passing takes well under a second */
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_process_returns_under_flood);
        tcase_add_test(tc, test_disconnect_holding_fd);
        tcase_add_test(tc, test_cached_open_returns_under_flood);
        tcase_add_test(tc, test_list_cycling_cursors);
        tcase_add_test(tc, test_cached_open_sees_event_another_thread_holds);
        tcase_add_test(tc, test_first_calls_after_handshake_timeout);
        tcase_add_test(tc, test_no_resend_after_hello_read);
        tcase_add_test(tc, test_refused_at_accept_hello_id_0);
        tcase_add_test(tc, test_open_answered_before_hello);
        tcase_add_test(tc, test_hello_id_answered_with_other_opcode);
        tcase_add_test(tc, test_replies_in_pieces);
        tcase_add_test(tc, test_reply_wait_sleeps_through_the_read);
        tcase_add_test(tc, test_open_reply_fd_not_regular);
        tcase_add_test(tc, test_open_reply_fd_smaller_than_announced);
        tcase_add_test(tc, test_open_reply_fd_counts);
        tcase_add_test(tc, test_ctl_exec_reply_fd_not_regular);
        suite_add_tcase(s, tc);
        return test_run_suite(s);
}
