/* it-attacker: the hostile local user of issue 10, run by test-it-attack as an unprivileged uid (setpriv). */

/*
 * Usage: it-attacker MODE SOCKET
 * Sets an attack up against the daemon on SOCKET, prints "ready ..." on
 * stdout (with what it observed, as key=value words), keeps the attack in
 * place until stdin reaches end of file, then undoes what it must (ends
 * lingers) and exits 0. Exit 2: the attack could not even be set up (a
 * harness failure, not a result).
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "iomem.h"
#include "proto.h"

static const char *sock_path;

static void die(const char *what, int r)
{
        fprintf(stderr, "it-attacker: %s: %s\n", what, r < 0 ? strerror(-r) : "failed");
        exit(2);
}

static void sleep_ms(int ms)
{
        struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Block until stdin ends (the test says: stop). */
static void wait_stdin_eof(void)
{
        char buf[64];

        while (read(STDIN_FILENO, buf, sizeof(buf)) != 0)
                if (errno == EINTR)
                        continue;
}

static void ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ready(const char *fmt, ...)
{
        va_list ap;

        printf("ready ");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
}

/* ---- raw frames ---------------------------------------------------------- */

static int raw_connect(void)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                die("socket", -errno);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                die("connect", -errno);
        return fd;
}

static size_t frame(uint8_t *out, uint16_t op, uint32_t id, const uint8_t *payload, int len, unsigned nfds)
{
        struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION, .opcode = op, .id = id };

        if (len < 0)
                die("encode", len);
        h.length = (uint32_t)len;
        h.nfds = (uint16_t)nfds;
        proto_header_encode(&h, out);
        memcpy(out + PROTO_HEADER_SIZE, payload, (size_t)len);
        return PROTO_HEADER_SIZE + (size_t)len;
}

/* Send one frame (blocking unless the socket is non-blocking) with @nfds copies of fds. Return: 0 or -errno. */
static int send_frame(int sock, const uint8_t *buf, size_t len, const int *fds, unsigned nfds)
{
        union {
                char buf[CMSG_SPACE(sizeof(int) * PROTO_MAX_FDS)];
                struct cmsghdr align;
        } u;
        struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        memset(&u, 0, sizeof(u));
        if (nfds) {
                struct cmsghdr *cm;

                msg.msg_control = u.buf;
                msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
                cm = CMSG_FIRSTHDR(&msg);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
                memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
        }
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n < 0)
                return -errno;
        if ((size_t)n != len) {
                /* the rest without fds */
                size_t off = (size_t)n;

                while (off < len) {
                        n = send(sock, buf + off, len - off, MSG_NOSIGNAL);
                        if (n < 0) {
                                if (errno == EAGAIN) {
                                        struct pollfd p = { .fd = sock, .events = POLLOUT };
                                        poll(&p, 1, 1000);
                                        continue;
                                }
                                return -errno;
                        }
                        off += (size_t)n;
                }
        }
        return 0;
}

/* Read one reply frame (blocking); fds it carries are closed. Return: its error (<= 0). */
static int recv_reply(int sock)
{
        union {
                char buf[CMSG_SPACE(sizeof(int) * PROTO_MAX_FDS)];
                struct cmsghdr align;
        } u;
        static uint8_t buf[PROTO_HEADER_SIZE + PROTO_MAX_PAYLOAD];
        struct proto_header h;
        size_t have = 0, want = PROTO_HEADER_SIZE;
        bool got_hdr = false;

        while (have < want) {
                struct iovec iov = { .iov_base = buf + have, .iov_len = want - have };
                struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                                      .msg_controllen = sizeof(u.buf) };
                ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);

                if (n <= 0)
                        return n == 0 ? -EPIPE : -errno;
                for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
                        if (cm->cmsg_type == SCM_RIGHTS)
                                for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                                        int fd;

                                        memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                                        close(fd);
                                }
                have += (size_t)n;
                if (!got_hdr && have >= PROTO_HEADER_SIZE) {
                        if (proto_header_decode(buf, PROTO_HEADER_SIZE, &h) < 0)
                                return -EBADMSG;
                        want = PROTO_HEADER_SIZE + h.length;
                        got_hdr = true;
                }
        }
        if (h.flags & PROTO_FLAG_ERROR) {
                struct proto_error e;

                if (proto_error_decode(buf + PROTO_HEADER_SIZE, h.length, &e) < 0)
                        return -EBADMSG;
                return e.error;
        }
        return 0;
}

static int raw_connect_hello_flags(uint32_t flags)
{
        struct proto_hello m = { .min_version = 1, .max_version = 1, .flags = flags };
        uint8_t p[64], f[128];
        int fd = raw_connect(), r;

        r = send_frame(fd, f, frame(f, PROTO_OP_HELLO, 1, p, proto_hello_encode(&m, p, sizeof(p)), 0), NULL, 0);
        if (r < 0 || (r = recv_reply(fd)) < 0)
                die("hello", r);
        return fd;
}

static int raw_connect_hello(void)
{
        struct proto_hello m = { .min_version = 1, .max_version = 1 };
        uint8_t p[64], f[128];
        int fd = raw_connect(), r;

        r = send_frame(fd, f, frame(f, PROTO_OP_HELLO, 1, p, proto_hello_encode(&m, p, sizeof(p)), 0), NULL, 0);
        if (r < 0 || (r = recv_reply(fd)) < 0)
                die("hello", r);
        return fd;
}

static struct iomem_client *client(void)
{
        struct iomem_client *c = NULL;
        int r = iomem_connect(sock_path, &c);

        if (r < 0)
                die("iomem_connect", r);
        iomem_client_set_timeout(c, 600000);
        return c;
}

/* Create the named region @name (its fd closed at once: the daemon keeps it), or die. */
static void create_or_die(struct iomem_client *c, const char *name, uint64_t size, const struct iomem_create_opts *co)
{
        struct iomem_region *region = NULL;
        int r = iomem_create(c, name, size, co, &region);

        if (r < 0)
                die("create", r);
        iomem_region_free(region);
}

/* A sealed memfd of @size bytes, mode 0600. */
static struct iomem_region *local_memfd(uint64_t size)
{
        struct iomem_region *region = NULL;
        int r = iomem_region_new_local(size, IOMEM_BACKEND_MEMFD, 0, &region);

        if (r < 0)
                die("new_local", r);
        r = iomem_region_seal(region, IOMEM_REGISTER_SEALS);
        if (r < 0)
                die("seal", r);
        return region;
}

/* ---- 1: a write lease on a REGISTERed memfd ------------------------------ */

/*
 * A write lease on a memfd, through a read-only description of it: a memfd
 * is a pseudo file whose read-write fds do not count as writers
 * (i_writecount stays 0), so F_SETLEASE F_WRLCK on a read-only reopen of it
 * succeeds as long as no other read-only description exists. Every later
 * open of the inode (the daemon's read-only reopen) must then wait for the
 * lease break. Return: the read-only fd holding the lease.
 */
static int lease_memfd(int fd)
{
        char path[64];
        int ro;

        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        ro = open(path, O_RDONLY | O_CLOEXEC);
        if (ro < 0)
                die("reopen", -errno);
        if (fcntl(ro, F_SETLEASE, F_WRLCK) < 0)
                die("F_SETLEASE", -errno);
        return ro;
}

static int attack_lease(void)
{
        struct iomem_client *c = client();
        struct iomem_region *a = local_memfd(4096), *b = local_memfd(4096);
        struct proto_open o = { .flags = PROTO_OPEN_RDONLY, .name = "lease-a" };
        struct proto_register reg = { .size = 4096, .mode = 0644, .name = "lease-b" };
        uint8_t p[512], f[600];
        int s, r, fdb, la, lb;

        /* the lease holder is told with SIGIO, whose default action would end us (and the lease) */
        signal(SIGIO, SIG_IGN);
        r = iomem_register(c, "lease-a", a, 0, 0644, NULL);
        if (r < 0)
                die("register", r);
        la = lease_memfd(iomem_region_fd(a));
        fdb = iomem_region_fd(b);
        lb = lease_memfd(fdb);

        s = raw_connect_hello();
        /* a read-only OPEN makes the daemon reopen the leased inode */
        r = send_frame(s, f, frame(f, PROTO_OP_OPEN, 2, p, proto_open_encode(&o, p, sizeof(p)), 0), NULL, 0);
        if (r < 0)
                die("send open", r);
        /* and REGISTER of an inode leased beforehand (it checks with a read-only reopen) */
        r = send_frame(s, f, frame(f, PROTO_OP_REGISTER, 3, p, proto_register_encode(&reg, p, sizeof(p)), 1), &fdb,
                       1);
        if (r < 0)
                die("send register", r);
        sleep_ms(200);
        ready("lease=1");
        wait_stdin_eof();
        close(s);
        close(la);
        close(lb);
        iomem_region_free(a);
        iomem_region_free(b);
        iomem_disconnect(c);
        return 0;
}

/* ---- 2: lingering closes, then thousands of cheap fds ------------------- */

/* A TCP socket whose last close lingers (unsent data, SO_LINGER, a peer that never reads); *lisp: its listener. */
static int lingering_socket(int lis)
{
        struct sockaddr_in sa;
        socklen_t salen = sizeof(sa);
        struct linger lg = { .l_onoff = 1, .l_linger = 60 };
        int small = 4096, tcp;
        static uint8_t junk[4096];

        if (getsockname(lis, (struct sockaddr *)&sa, &salen) < 0)
                die("getsockname", -errno);
        tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (tcp < 0)
                die("tcp socket", -errno);
        setsockopt(tcp, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
        if (connect(tcp, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                die("tcp connect", -errno);
        fcntl(tcp, F_SETFL, O_NONBLOCK);
        for (int i = 0; i < 5; i++) {
                while (send(tcp, junk, sizeof(junk), MSG_NOSIGNAL) > 0)
                        ;
                sleep_ms(20);
        }
        if (setsockopt(tcp, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
                die("SO_LINGER", -errno);
        fcntl(tcp, F_SETFL, 0);
        return tcp;
}

/* Send @fd (our copy is closed) with a PING that declares it: the daemon refuses the frame and closes the fd. */
static int send_fd_with_ping(int s, const int *fds, unsigned nfds)
{
        struct proto_ping pm = { .cookie = 7 };
        uint8_t p[64], f[128];

        return send_frame(s, f, frame(f, PROTO_OP_PING, 2, p, proto_ping_encode(&pm, p, sizeof(p)), nfds), fds,
                          nfds);
}

#define ATTACK_LINGERS 8 /* more than the daemon has closer threads */

static int attack_linger(void)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int small = 4096, lis, s, t1s[ATTACK_LINGERS], t2, cheap[PROTO_MAX_FDS], r;
        unsigned sent = 0, want = 20000;
        bool second = false;

        lis = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lis < 0)
                die("listen socket", -errno);
        setsockopt(lis, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        if (bind(lis, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lis, 16) < 0)
                die("bind/listen", -errno);
        for (int i = 0; i < ATTACK_LINGERS; i++)
                t1s[i] = lingering_socket(lis);
        t2 = lingering_socket(lis);
        for (int i = 0; i < PROTO_MAX_FDS; i++) {
                cheap[i] = eventfd(0, EFD_CLOEXEC);
                if (cheap[i] < 0)
                        die("eventfd", -errno);
        }

        s = raw_connect_hello();
        /* 1. wedge the closer (every thread it has) with lingering closes */
        for (int i = 0; i < ATTACK_LINGERS; i++) {
                r = send_fd_with_ping(s, &t1s[i], 1);
                if (r < 0)
                        die("send linger", r);
                close(t1s[i]);
        }
        sleep_ms(100);
        /* 2. thousands of cheap fds pile up behind it (until the daemon stops reading us) */
        fcntl(s, F_SETFL, O_NONBLOCK);
        for (int stuck = 0; sent < want && stuck < 100;) {
                r = send_fd_with_ping(s, cheap, PROTO_MAX_FDS);
                if (r == -EAGAIN) {
                        struct pollfd pf = { .fd = s, .events = POLLOUT };

                        if (poll(&pf, 1, 20) == 0)
                                stuck++;
                        continue;
                }
                if (r < 0)
                        break; /* dropped */
                stuck = 0;
                sent += PROTO_MAX_FDS;
        }
        /* 3. a second lingering close: once the closer's queue is full, it used to happen on the event loop */
        if (send_fd_with_ping(s, &t2, 1) == 0) {
                second = true;
        } else {
                /*
                 * Not sent (the daemon had stopped reading us): our fd is its only one, and its close would
                 * linger here, in the attacker, for the full 60 s before "ready" (most of test-it-attack's time).
                 * The daemon never saw it, so end it at once (a zero linger: reset).
                 */
                struct linger now = { .l_onoff = 1, .l_linger = 0 };

                setsockopt(t2, SOL_SOCKET, SO_LINGER, &now, sizeof(now));
        }
        close(t2);
        sleep_ms(300);
        ready("cheap_fds_sent=%u second_linger_sent=%d", sent, second);
        wait_stdin_eof();
        /* closing the listener resets its unaccepted connections: the lingers end */
        close(lis);
        close(s);
        for (int i = 0; i < PROTO_MAX_FDS; i++)
                close(cheap[i]);
        return 0;
}

/* ---- 3: fds in flight that the client never reads ------------------------ */

static int attack_inflight(void)
{
        struct iomem_client *c = client();
        struct iomem_create_opts co = { .mode = 0600 };
        struct proto_open o = { .name = "inflight" };
        uint8_t p[512], f[600];
        int socks[16], dead[16], r, len;
        unsigned sent = 0, dropped = 0, blocked = 0;

        create_or_die(c, "inflight", 4096, &co);
        len = proto_open_encode(&o, p, sizeof(p));
        for (int i = 0; i < 16; i++) {
                socks[i] = raw_connect_hello();
                dead[i] = -1;
                /* a daemon that stops reading us must not stop the attack */
                fcntl(socks[i], F_SETFL, O_NONBLOCK);
        }
        /* paced: a few OPENs per connection at a time, so the daemon's own queue never looks full */
        for (int round = 0; round < 200; round++) {
                for (int i = 0; i < 16; i++) {
                        for (int k = 0; k < 4 && socks[i] >= 0; k++) {
                                size_t n = frame(f, PROTO_OP_OPEN, 10 + sent, p, len, 0);

                                r = send(socks[i], f, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -errno;
                                if (r == -EAGAIN) {
                                        blocked++;
                                        break;
                                }
                                if (r < 0) {
                                        /*
                                         * The daemon dropped this connection; keep our end open: the
                                         * fds queued to it stay in flight, charged to the daemon.
                                         */
                                        dead[i] = socks[i];
                                        socks[i] = -1;
                                        dropped++;
                                        break;
                                }
                                sent++;
                        }
                }
                sleep_ms(5);
        }
        sleep_ms(500);
        ready("opens_sent=%u dropped=%u blocked=%u", sent, dropped, blocked);
        wait_stdin_eof();
        for (int i = 0; i < 16; i++) {
                if (socks[i] >= 0)
                        close(socks[i]);
                if (dead[i] >= 0)
                        close(dead[i]);
        }
        iomem_disconnect(c);
        return 0;
}

/*
 * 3, after the fix (hostile review): the per-connection and per-uid counts of
 * fds in flight ended with the connection. A client that lets 64 fds reach its
 * receive queue, then sends a frame with a bad magic (the daemon drops the
 * connection at once and closes its end), keeps those fds in flight, charged
 * to the daemon, on a socket the daemon no longer counts; one connection
 * after another, as many as its own RLIMIT_NOFILE lets it keep.
 */
static int attack_inflight_orphan(void)
{
        struct iomem_client *c = client();
        struct iomem_create_opts co = { .mode = 0600 };
        struct proto_open o = { .name = "orphan" };
        uint8_t p[512], f[600];
        int socks[48], len;
        unsigned sent = 0;

        create_or_die(c, "orphan", 4096, &co);
        len = proto_open_encode(&o, p, sizeof(p));
        for (int i = 0; i < 48; i++) {
                socks[i] = raw_connect_hello();
                fcntl(socks[i], F_SETFL, O_NONBLOCK);
                for (int k = 0; k < 64; k++) {
                        size_t n = frame(f, PROTO_OP_OPEN, 10 + (uint32_t)k, p, len, 0);

                        if (send(socks[i], f, n, MSG_NOSIGNAL) != (ssize_t)n)
                                break;
                        sent++;
                }
                sleep_ms(30);
                /* a framing violation: the daemon drops the connection; our end, with the fds unread, stays open */
                memset(f, 0xff, PROTO_HEADER_SIZE);
                (void)!send(socks[i], f, PROTO_HEADER_SIZE, MSG_NOSIGNAL);
                sleep_ms(10);
        }
        sleep_ms(500);
        ready("opens_sent=%u sockets=48", sent);
        wait_stdin_eof();
        for (int i = 0; i < 48; i++)
                close(socks[i]);
        iomem_disconnect(c);
        return 0;
}

/*
 * Hostile review after issue 10: fds queued in the daemon. Each connection's
 * OPEN replies past the bound on fds in flight wait in the daemon's queue,
 * each holding a duplicate of the region's fd (up to 64 a connection); with
 * no quota-fds configured nothing bounded them per uid, so enough connections
 * that never read use up the daemon's RLIMIT_NOFILE (accept and every OPEN
 * then fail for everyone).
 */
static int attack_queued_fds(void)
{
        struct iomem_client *c = client();
        struct iomem_create_opts co = { .mode = 0600 };
        struct proto_open o = { .name = "queued" };
        uint8_t p[512], f[600];
        int socks[40], len;
        unsigned sent = 0;

        create_or_die(c, "queued", 4096, &co);
        len = proto_open_encode(&o, p, sizeof(p));
        for (int i = 0; i < 40; i++) {
                socks[i] = raw_connect_hello();
                fcntl(socks[i], F_SETFL, O_NONBLOCK);
        }
        for (int i = 0; i < 40; i++) {
                for (int k = 0; k < 64; k++) {
                        size_t n = frame(f, PROTO_OP_OPEN, 10 + (uint32_t)k, p, len, 0);

                        if (send(socks[i], f, n, MSG_NOSIGNAL) != (ssize_t)n)
                                break;
                        sent++;
                }
        }
        sleep_ms(500);
        ready("opens_sent=%u connections=40", sent);
        wait_stdin_eof();
        for (int i = 0; i < 40; i++)
                close(socks[i]);
        iomem_disconnect(c);
        return 0;
}

/* ---- 4: a writer grows regions far past every limit ---------------------- */

static int grow_one(struct iomem_client *c, const char *name, enum iomem_backend backend, uint64_t to)
{
        struct iomem_create_opts co = { .mode = 0600, .backend = backend };
        struct iomem_region *region = NULL;
        struct iomem_stat st;
        int r;

        r = iomem_create(c, name, 4096, &co, &region);
        if (r < 0)
                return r; /* the daemon-wide limit may already be booked */
        r = ftruncate(iomem_region_fd(region), (off_t)to) < 0 ? -errno : 0;
        iomem_region_free(region);
        /* the daemon looks at the size */
        iomem_stat(c, name, &st);
        return r;
}

static int attack_grow(void)
{
        struct iomem_client *c = client();
        int rm, rs, rw = 0;

        rm = grow_one(c, "grow-memfd", IOMEM_BACKEND_MEMFD, UINT64_C(1) << 40);
        rs = grow_one(c, "grow-shm", IOMEM_BACKEND_SHM, UINT64_C(1) << 40);
        /* three regions near 2^63 each: their sum wraps 64 bits */
        for (int i = 0; i < 3; i++) {
                char name[32];

                snprintf(name, sizeof(name), "grow-wrap-%d", i);
                if (grow_one(c, name, IOMEM_BACKEND_SHM, (uint64_t)INT64_MAX - 4096) == 0)
                        rw++;
        }
        ready("memfd_grow=%d shm_grow=%d wrap_grown=%d", rm, rs, rw);
        wait_stdin_eof();
        iomem_disconnect(c);
        return 0;
}

/* ---- 5 and 6: pipelined cheap LISTs -------------------------------------- */

/* Make @n regions named PREFIX-i. Return: the id of the first. */
static uint64_t make_regions(struct iomem_client *c, const char *prefix, unsigned n)
{
        struct iomem_create_opts co = { .mode = 0600 };
        uint64_t first = 0;

        for (unsigned i = 0; i < n; i++) {
                struct iomem_region *region = NULL;
                char name[64];
                int r;

                snprintf(name, sizeof(name), "%s-%u", prefix, i);
                r = iomem_create(c, name, 4096, &co, &region);
                if (r < 0)
                        die("create", r);
                if (i == 0)
                        first = iomem_region_id(region);
                iomem_region_free(region);
        }
        return first;
}

/*
 * @nconns children each pipeline LISTs until killed, never reading a reply; with @drain a grandchild reads and
 * drops the replies, so that the flood goes on (without it, the daemon stops a connection whose replies pile up
 * unread: stale-cursor's one-entry replies reach that within a second, before test-it-attack's probe runs).
 */
static int list_flood(unsigned nconns, uint64_t cursor, const char *prefix, uint32_t max_entries, bool drain)
{
        struct proto_list m = { .cursor = cursor, .max_entries = max_entries, .prefix = prefix };
        static uint8_t buf[64 * 1024];
        uint8_t p[256];
        pid_t kids[64];
        size_t one, fill = 0;
        int len = proto_list_encode(&m, p, sizeof(p));

        for (one = 0; fill + PROTO_HEADER_SIZE + (size_t)len <= sizeof(buf); fill += one)
                one = frame(buf + fill, PROTO_OP_LIST, 5, p, len, 0);
        for (unsigned i = 0; i < nconns; i++) {
                int s = raw_connect_hello();

                fflush(NULL);
                kids[i] = fork();
                if (kids[i] < 0)
                        die("fork", -errno);
                if (kids[i] == 0) {
                        pid_t reader = drain ? fork() : 1;

                        if (reader < 0)
                                _exit(2);
                        if (reader == 0) {
                                static uint8_t sink[64 * 1024];

                                /* ends with its parent (SIGKILLed), which holds the socket too */
                                prctl(PR_SET_PDEATHSIG, SIGKILL);
                                if (getppid() == 1)
                                        _exit(0);
                                while (read(s, sink, sizeof(sink)) > 0 || errno == EINTR)
                                        ;
                                _exit(0);
                        }
                        /* never read a reply here */
                        for (;;)
                                if (send(s, buf, fill, MSG_NOSIGNAL) < 0 && errno != EINTR)
                                        _exit(0);
                }
                close(s);
        }
        sleep_ms(500);
        ready("connections=%u", nconns);
        wait_stdin_eof();
        for (unsigned i = 0; i < nconns; i++) {
                kill(kids[i], SIGKILL);
                waitpid(kids[i], NULL, 0);
        }
        return 0;
}

static int attack_pipeline(void)
{
        struct iomem_client *c = client();

        int r;

        make_regions(c, "pipe", 8000);
        r = list_flood(16, 0, "nothing-matches", 0, false); /* each scans 8,000 regions */
        iomem_disconnect(c);
        return r;
}

static int attack_stale_cursor(void)
{
        struct iomem_client *c = client();
        uint64_t first = make_regions(c, "stale", 40000);
        int r = iomem_delete(c, "stale-0");

        if (r < 0)
                die("delete", r);
        /* one entry per LIST: cheap, but for the walk to the cursor */
        r = list_flood(4, first, "", 1, true);
        iomem_disconnect(c);
        return r;
}

/* ---- 7: backends the administrator did not allow; anonymous regions ------ */

static int attack_backend(void)
{
        struct iomem_client *c = client();
        struct iomem_create_opts shm = { .mode = 0600, .backend = IOMEM_BACKEND_SHM };
        struct iomem_create_opts file = { .mode = 0600, .backend = IOMEM_BACKEND_FILE };
        struct iomem_create_opts any = { .mode = 0600 };
        struct iomem_region *region = NULL;
        int rs, rf, ra, rn;

        rs = iomem_create(c, "backend-shm", 4096, &shm, &region);
        region = iomem_region_free(region);
        rf = iomem_create(c, NULL, 4096, &file, &region);
        region = iomem_region_free(region);
        /* an anonymous region far above the uid's byte quota */
        ra = iomem_create(c, NULL, UINT64_C(1) << 30, &any, &region);
        region = iomem_region_free(region);
        rn = iomem_create(c, NULL, 4096, &any, &region);
        region = iomem_region_free(region);
        ready("named_shm=%d anon_file=%d anon_big=%d anon_small=%d", rs, rf, ra, rn);
        wait_stdin_eof();
        iomem_disconnect(c);
        return 0;
}

/* ---- 8: refusals and CHMODs by the thousand ------------------------------ */

static int attack_log(void)
{
        struct iomem_client *c = client();
        struct iomem_create_opts co = { .mode = 0600 };
        struct proto_chmod cm = { .mode = 0600, .name = "log-own" };
        uint8_t p[512], f[600], f2[600];
        size_t n, n2;
        int conns[4], mfd;
        unsigned requests = 0;

        create_or_die(c, "log-own", 4096, &co);
        /* an unsealed memfd: every REGISTER of it is refused (-EPERM) and used to be logged */
        mfd = memfd_create("log", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (mfd < 0 || ftruncate(mfd, 4096) < 0 || fchmod(mfd, 0600) < 0)
                die("memfd", -errno);
        {
                struct proto_register reg = { .size = 4096, .mode = 0600, .name = "log-reg" };

                n2 = frame(f2, PROTO_OP_REGISTER, 3, p, proto_register_encode(&reg, p, sizeof(p)), 1);
        }
        n = frame(f, PROTO_OP_CHMOD, 2, p, proto_chmod_encode(&cm, p, sizeof(p)), 0);
        for (int i = 0; i < 4; i++)
                conns[i] = raw_connect_hello();
        for (int round = 0; round < 1000; round++) {
                for (int i = 0; i < 4; i++) {
                        if (send_frame(conns[i], f, n, NULL, 0) < 0 || send_frame(conns[i], f2, n2, &mfd, 1) < 0)
                                die("send", -errno);
                        requests += 2;
                }
                /* read the replies, so that the daemon never throttles us */
                for (int i = 0; i < 4; i++)
                        for (int k = 0; k < 2; k++)
                                recv_reply(conns[i]);
        }
        ready("requests=%u", requests);
        wait_stdin_eof();
        for (int i = 0; i < 4; i++)
                close(conns[i]);
        close(mfd);
        iomem_disconnect(c);
        return 0;
}

/* ---- 9: OPENVs waiting for a new version, by the ten thousand ------------- */

/*
 * per group; CONN_MAX_WAITS (64) waits each. 3,200 (204,800 waits a group), not 400: with 25,600 the quadratic
 * wake stood still 2.4-7.7 s, which only a latency bound saw; at 204,800 it is 64 times that, past the probe's
 * 30 s give-up, while the one pass answers them all in about a second (test-it-attack's hang detector).
 */
#define OPENV_CONNS 3200u

/* @n connections that each park 64 OPENVs for @name after @after (answered by nothing but a new version). */
static void openv_park(int *conns, unsigned n, const char *name, uint64_t after)
{
        struct proto_openv m = { .name = name, .flags = PROTO_OPEN_WAIT | PROTO_OPEN_RDONLY,
                                 .timeout_ms = UINT32_MAX, .after_generation = after };
        struct proto_ping ping = { .cookie = 7 };
        static uint8_t buf[65 * 600];
        uint8_t p[512];
        size_t fill = 0;
        int len = proto_openv_encode(&m, p, sizeof(p)), r;

        for (uint32_t i = 0; i < 64; i++)
                fill += frame(buf + fill, PROTO_OP_OPENV, 100 + i, p, len, 0);
        /* then a PING: its answer says the 64 are parked (requests are handled in order) */
        fill += frame(buf + fill, PROTO_OP_PING, 99, p, proto_ping_encode(&ping, p, sizeof(p)), 0);
        for (unsigned i = 0; i < n; i++) {
                conns[i] = raw_connect_hello_flags(PROTO_HELLO_EVENTS);
                r = send_frame(conns[i], buf, fill, NULL, 0);
                if (r < 0 || (r = recv_reply(conns[i])) < 0)
                        die("openv", r);
        }
}

/*
 * 204,800 OPENVs wait for a version of "openv-target" (which does not exist
 * yet), then 204,800 more, newer, for a name nobody makes. Creating the target
 * answers the first: each used to be found by a scan from the newest wait,
 * past all of the others (quadratic: 204,800 x 204,800 looks).
 */
static int attack_openv(void)
{
        static int target[OPENV_CONNS], other[OPENV_CONNS];
        struct iomem_client *c = client();
        struct iomem_create_opts co = { .mode = 0600 };

        openv_park(target, OPENV_CONNS, "openv-target", 0);
        openv_park(other, OPENV_CONNS, "openv-never", 0);
        ready("waits=%u", 2 * OPENV_CONNS * 64);
        /* the probe runs meanwhile */
        sleep_ms(500);
        create_or_die(c, "openv-target", 4096, &co);
        wait_stdin_eof();
        for (unsigned i = 0; i < OPENV_CONNS; i++) {
                close(target[i]);
                close(other[i]);
        }
        iomem_disconnect(c);
        return 0;
}

/* ---- 10: refused PUBLISHes by the thousand -------------------------------- */

static int attack_log_publish(void)
{
        struct proto_publish pub = { .size = 4096, .mode = 0600, .name = "log-pub" };
        uint8_t p[512], f[600];
        size_t n;
        int conns[4], mfd;
        unsigned requests = 0;

        /* an unsealed memfd: every PUBLISH of it is refused (-EPERM) */
        mfd = memfd_create("log", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (mfd < 0 || ftruncate(mfd, 4096) < 0 || fchmod(mfd, 0600) < 0)
                die("memfd", -errno);
        n = frame(f, PROTO_OP_PUBLISH, 4, p, proto_publish_encode(&pub, p, sizeof(p)), 1);
        for (int i = 0; i < 4; i++)
                conns[i] = raw_connect_hello_flags(PROTO_HELLO_EVENTS);
        for (int round = 0; round < 2000; round++) {
                for (int i = 0; i < 4; i++) {
                        if (send_frame(conns[i], f, n, &mfd, 1) < 0)
                                die("send", -errno);
                        requests++;
                }
                for (int i = 0; i < 4; i++)
                        if (recv_reply(conns[i]) != -EPERM)
                                die("publish not refused", -EPROTO);
        }
        ready("requests=%u", requests);
        wait_stdin_eof();
        for (int i = 0; i < 4; i++)
                close(conns[i]);
        close(mfd);
        return 0;
}

/* ---- 11: reservations by the pipeline ----------------------------------- */

/*
 * A RESIZABLE RESERVEd region grown to 1 GiB and shrunk to nothing, over
 * and over, pipelined on one connection (its replies never read): every
 * growth is a fallocate on the daemon's event loop, and a turn of the loop
 * used to take 32 of them (64 requests).
 */
static int attack_reserve(void)
{
        struct iomem_client *c = client();
        struct iomem_create_opts co = { .mode = 0600, .flags = IOMEM_CREATE_RESERVE | IOMEM_CREATE_RESIZABLE };
        struct proto_resize grow = { .size = UINT64_C(1) << 30, .name = "reserve-x" };
        struct proto_resize shrink = { .size = 0, .name = "reserve-x" };
        static uint8_t buf[64 * 1024];
        uint8_t p[512];
        size_t fill = 0;
        pid_t kid;
        int s;

        create_or_die(c, "reserve-x", 0, &co);
        while (fill + 2 * (PROTO_HEADER_SIZE + 300) <= sizeof(buf)) {
                fill += frame(buf + fill, PROTO_OP_RESIZE, 1, p, proto_resize_encode(&grow, p, sizeof(p)), 0);
                fill += frame(buf + fill, PROTO_OP_RESIZE, 2, p, proto_resize_encode(&shrink, p, sizeof(p)), 0);
        }
        s = raw_connect_hello();
        fflush(NULL);
        kid = fork();
        if (kid < 0)
                die("fork", -errno);
        if (kid == 0) {
                /* never read a reply */
                for (;;)
                        if (send(s, buf, fill, MSG_NOSIGNAL) < 0 && errno != EINTR)
                                _exit(0);
        }
        close(s);
        sleep_ms(300);
        ready("growth=%llu", (unsigned long long)grow.size);
        wait_stdin_eof();
        kill(kid, SIGKILL);
        waitpid(kid, NULL, 0);
        iomem_disconnect(c);
        return 0;
}

int main(int argc, char **argv)
{
        static const struct {
                const char *name;
                int (*fn)(void);
        } modes[] = {
                { "lease", attack_lease },       { "linger", attack_linger },
                { "inflight", attack_inflight }, { "grow", attack_grow },
                { "inflight-orphan", attack_inflight_orphan }, { "queued-fds", attack_queued_fds },
                { "pipeline", attack_pipeline }, { "stale-cursor", attack_stale_cursor },
                { "backend", attack_backend },   { "log", attack_log },
                { "openv", attack_openv }, { "log-publish", attack_log_publish },
                { "reserve", attack_reserve },
        };

        if (argc != 3) {
                fprintf(stderr, "usage: it-attacker MODE SOCKET\n");
                return 2;
        }
        sock_path = argv[2];
        signal(SIGPIPE, SIG_IGN);
        for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
                if (strcmp(argv[1], modes[i].name) == 0)
                        return modes[i].fn();
        fprintf(stderr, "it-attacker: unknown mode %s\n", argv[1]);
        return 2;
}
