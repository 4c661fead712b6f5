/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* floor: the daemon-less floor, the same exchanges done by hand (socketpair with one fd; shm_open). */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "floor.h"
#include "proto.h"

#define FLOOR_NAME "bench-open"

struct floor_ctx {
        int sock;
        size_t map_size;
        uint8_t req[PROTO_HEADER_SIZE + 64];
        size_t req_len;
        size_t reply_len;
        const char *shm_name;
};

static int floor_write_full(int fd, const void *buf, size_t len)
{
        size_t done = 0;

        while (done < len) {
                ssize_t k = write(fd, (const char *)buf + done, len - done);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                done += (size_t)k;
        }
        return 0;
}

static int floor_read_full(int fd, void *buf, size_t len)
{
        size_t done = 0;

        while (done < len) {
                ssize_t k = read(fd, (char *)buf + done, len - done);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EPIPE;
                done += (size_t)k;
        }
        return 0;
}

/* Return: the frame length, header included, or negative errno. */
static int floor_frame(uint16_t opcode, uint8_t flags, uint16_t nfds, const uint8_t *payload, int len,
                       uint8_t *out, size_t size)
{
        struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION, .flags = flags,
                                  .opcode = opcode, .id = 1, .length = (uint32_t)len, .nfds = nfds };

        if (len < 0)
                return len;
        if ((size_t)len + PROTO_HEADER_SIZE > size)
                return -ENOBUFS;
        proto_header_encode(&h, out);
        memmove(out + PROTO_HEADER_SIZE, payload, (size_t)len);
        return PROTO_HEADER_SIZE + len;
}

/* The server: read a request frame, answer with the region-info reply and the memfd. Return: exit status. */
static int floor_server(int sock, int memfd)
{
        uint8_t payload[256], reply[PROTO_HEADER_SIZE + 256], buf[PROTO_HEADER_SIZE + 256];
        struct proto_region_info info = { .id = 1, .size = 4096, .backend = PROTO_BACKEND_MEMFD };
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } control;
        int len, r;

        len = floor_frame(PROTO_OP_OPEN, PROTO_FLAG_REPLY, 1, payload,
                          proto_region_info_encode(&info, payload, sizeof(payload)), reply, sizeof(reply));
        if (len < 0)
                return 1;
        for (;;) {
                struct proto_header h;
                struct iovec iov = { .iov_base = reply, .iov_len = (size_t)len };
                struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                                      .msg_controllen = sizeof(control.buf) };
                struct cmsghdr *cm;

                r = floor_read_full(sock, buf, PROTO_HEADER_SIZE);
                if (r == -EPIPE)
                        return 0;
                if (r < 0 || proto_header_decode(buf, PROTO_HEADER_SIZE, &h) < 0 ||
                    h.length > sizeof(buf) - PROTO_HEADER_SIZE)
                        return 1;
                if (floor_read_full(sock, buf + PROTO_HEADER_SIZE, h.length) < 0)
                        return 1;
                cm = CMSG_FIRSTHDR(&msg);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(cm), &memfd, sizeof(int));
                if (sendmsg(sock, &msg, MSG_NOSIGNAL) != len)
                        return 1;
        }
}

static int floor_socketpair_op(void *userdata)
{
        struct floor_ctx *c = userdata;
        uint8_t buf[PROTO_HEADER_SIZE + 256];
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * PROTO_MAX_FDS)];
        } control;
        struct iovec iov = { .iov_base = buf, .iov_len = c->reply_len };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                              .msg_controllen = sizeof(control.buf) };
        struct cmsghdr *cm;
        int fd = -1, r;
        ssize_t k;
        void *p;

        r = floor_write_full(c->sock, c->req, c->req_len);
        if (r < 0)
                return r;
        k = recvmsg(c->sock, &msg, MSG_CMSG_CLOEXEC);
        if (k <= 0)
                return k < 0 ? -errno : -EPIPE;
        for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
                if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
                    cm->cmsg_len == CMSG_LEN(sizeof(int)))
                        memcpy(&fd, CMSG_DATA(cm), sizeof(int));
        if (fd < 0)
                return -EPROTO;
        if ((size_t)k < c->reply_len) {
                r = floor_read_full(c->sock, buf + k, c->reply_len - (size_t)k);
                if (r < 0)
                        goto out;
        }
        p = mmap(NULL, c->map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
                r = -errno;
                goto out;
        }
        r = munmap(p, c->map_size) < 0 ? -errno : 0;
out:
        close(fd);
        return r;
}

int floor_socketpair(const struct runner_opts *o, size_t map_size, size_t sample_cap, struct stats_result *res)
{
        struct proto_region_info info = { 0 };
        struct floor_ctx c = { .sock = -1, .map_size = map_size };
        struct proto_open open_req = { .name = FLOOR_NAME };
        uint8_t payload[256];
        struct stats s;
        int sv[2], memfd, len, r, status;
        double seconds;
        pid_t pid;

        len = floor_frame(PROTO_OP_OPEN, 0, 0, payload, proto_open_encode(&open_req, payload, sizeof(payload)),
                          c.req, sizeof(c.req));
        if (len < 0)
                return len;
        c.req_len = (size_t)len;
        len = proto_region_info_encode(&info, payload, sizeof(payload));
        if (len < 0)
                return len;
        c.reply_len = PROTO_HEADER_SIZE + (size_t)len;

        memfd = memfd_create("iomem-bench-floor", MFD_CLOEXEC);
        if (memfd < 0)
                return -errno;
        if (ftruncate(memfd, (off_t)map_size) < 0 ||
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                r = -errno;
                close(memfd);
                return r;
        }
        pid = fork();
        if (pid < 0) {
                r = -errno;
                close(sv[0]);
                close(sv[1]);
                close(memfd);
                return r;
        }
        if (pid == 0) {
                close(sv[0]);
                _exit(floor_server(sv[1], memfd));
        }
        close(sv[1]);
        close(memfd);
        c.sock = sv[0];

        r = stats_init(&s, sample_cap);
        if (r == 0)
                r = runner_loop(floor_socketpair_op, &c, o, &s, &seconds);
        close(c.sock); /* the server sees EOF and exits */
        waitpid(pid, &status, 0);
        if (r == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
                r = -ECHILD;
        if (r == 0)
                stats_finish(&s, seconds, "floor-socketpair",
                             "socketpair request + reply with 1 memfd, mmap + munmap + close, no daemon", res);
        stats_deinit(&s);
        return r;
}

static int floor_shm_op(void *userdata)
{
        struct floor_ctx *c = userdata;
        int fd, r;
        void *p;

        fd = shm_open(c->shm_name, O_RDWR | O_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        p = mmap(NULL, c->map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
                r = -errno;
        else
                r = munmap(p, c->map_size) < 0 ? -errno : 0;
        close(fd);
        return r;
}

int floor_shm(const struct runner_opts *o, size_t map_size, size_t sample_cap, struct stats_result *res)
{
        char name[64];
        struct floor_ctx c = { .map_size = map_size, .shm_name = name };
        struct stats s;
        double seconds;
        int fd, r;

        snprintf(name, sizeof(name), "/iomem-bench-floor-%d", (int)getpid());
        fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        r = ftruncate(fd, (off_t)map_size) < 0 ? -errno : 0;
        close(fd);
        if (r == 0)
                r = stats_init(&s, sample_cap);
        if (r == 0) {
                r = runner_loop(floor_shm_op, &c, o, &s, &seconds);
                if (r == 0)
                        stats_finish(&s, seconds, "floor-shm-open",
                                     "shm_open of an existing object + mmap + munmap + close, no daemon", res);
                stats_deinit(&s);
        }
        shm_unlink(name);
        return r;
}

/* ---- the cold floor: a fresh connection per operation to a bare server ---- */

struct floor_cold_ctx {
        struct sockaddr_un sa;
        size_t map_size;
        uint8_t req[PROTO_HEADER_SIZE + 64];
        size_t req_len;
        size_t reply_len;
};

/* The bare server: accept, read one request, answer with the reply and the memfd, close; forever. */
static int floor_cold_server(int lfd, int memfd)
{
        for (;;) {
                int sock = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

                if (sock < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        return 1;
                }
                /* floor_server() answers until EOF: the client closes after its one reply */
                if (floor_server(sock, memfd) != 0) {
                        close(sock);
                        return 1;
                }
                close(sock);
        }
}

/*
 * The bare event-loop server, for floor-cold-epoll: what a server that serves
 * many clients at once must do beyond the blocking one, and nothing more.
 * One accept4() per wake-up of the listener; the request tried at once (a
 * client sends it right after connect) and answered; the socket registered
 * with epoll only to learn of its next request or its end; at the end,
 * close() (which takes it out of epoll). No parsing beyond the frame header,
 * no timers, no accounting.
 * Return: 1 answered or nothing there yet, 0 at the end, negative errno.
 */
static int floor_cold_epoll_answer(int sock, int memfd, const uint8_t *reply, int len)
{
        uint8_t buf[PROTO_HEADER_SIZE + 256];
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } control;
        struct iovec iov = { .iov_base = (void *)reply, .iov_len = (size_t)len };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                              .msg_controllen = sizeof(control.buf) };
        struct cmsghdr *cm;
        struct proto_header h;
        ssize_t k;

        k = recv(sock, buf, sizeof(buf), MSG_DONTWAIT);
        if (k == 0)
                return 0;
        if (k < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 1 : -errno;
        /* the bench's client sends one whole frame and waits: a short read does not happen here */
        if ((size_t)k < PROTO_HEADER_SIZE || proto_header_decode(buf, (size_t)k, &h) < 0 ||
            (size_t)k != PROTO_HEADER_SIZE + h.length)
                return -EPROTO;
        cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &memfd, sizeof(int));
        if (sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) != len)
                return -EIO;
        return 1;
}

static int floor_cold_epoll_server(int lfd, int memfd)
{
        uint8_t payload[256], reply[PROTO_HEADER_SIZE + 256];
        struct proto_region_info info = { .id = 1, .size = 4096, .backend = PROTO_BACKEND_MEMFD };
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd }, evs[32];
        int ep, len;

        len = floor_frame(PROTO_OP_OPEN, PROTO_FLAG_REPLY, 1, payload,
                          proto_region_info_encode(&info, payload, sizeof(payload)), reply, sizeof(reply));
        ep = epoll_create1(EPOLL_CLOEXEC);
        if (len < 0 || ep < 0 || fcntl(lfd, F_SETFL, O_NONBLOCK) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
                return 1;
        for (;;) {
                int n = epoll_wait(ep, evs, 32, -1);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return 1;
                for (int i = 0; i < n; i++) {
                        int fd = evs[i].data.fd, r;

                        if (fd == lfd) {
                                fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                                if (fd < 0)
                                        continue;
                                r = floor_cold_epoll_answer(fd, memfd, reply, len);
                                ev = (struct epoll_event){ .events = EPOLLIN, .data.fd = fd };
                                if (r <= 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
                                        close(fd);
                                continue;
                        }
                        r = floor_cold_epoll_answer(fd, memfd, reply, len);
                        if (r < 0)
                                return 1;
                        if (r == 0)
                                close(fd);
                }
        }
}

static int floor_cold_op(void *userdata)
{
        struct floor_cold_ctx *c = userdata;
        struct floor_ctx x = { .map_size = c->map_size, .req_len = c->req_len, .reply_len = c->reply_len };
        int r;

        memcpy(x.req, c->req, c->req_len);
        x.sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (x.sock < 0)
                return -errno;
        if (connect(x.sock, (const struct sockaddr *)&c->sa, sizeof(c->sa)) < 0) {
                r = -errno;
                close(x.sock);
                return r;
        }
        r = floor_socketpair_op(&x);
        close(x.sock);
        return r;
}

struct floor_cold {
        struct floor_cold_ctx c;
        char dir[32];
        int lfd;
        int memfd;
        pid_t pid;
};

int floor_cold_stop(struct floor_cold *f)
{
        int r = 0, status;

        if (!f)
                return 0;
        if (f->pid > 0) {
                kill(f->pid, SIGTERM);
                while (waitpid(f->pid, &status, 0) < 0 && errno == EINTR)
                        ;
                if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM))
                        r = -ECHILD;
        }
        if (f->lfd >= 0)
                close(f->lfd);
        if (f->memfd >= 0)
                close(f->memfd);
        if (f->c.sa.sun_path[0])
                unlink(f->c.sa.sun_path);
        if (f->dir[0])
                rmdir(f->dir);
        free(f);
        return r;
}

int floor_cold_start(size_t map_size, bool epoll, struct floor_cold **fp)
{
        struct proto_region_info info = { 0 };
        struct proto_open open_req = { .name = FLOOR_NAME };
        uint8_t payload[256];
        struct floor_cold *f;
        int len, r;

        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->c = (struct floor_cold_ctx){ .sa = { .sun_family = AF_UNIX }, .map_size = map_size };
        f->lfd = f->memfd = -1;
        len = floor_frame(PROTO_OP_OPEN, 0, 0, payload, proto_open_encode(&open_req, payload, sizeof(payload)),
                          f->c.req, sizeof(f->c.req));
        if (len < 0) {
                r = len;
                goto fail;
        }
        f->c.req_len = (size_t)len;
        len = proto_region_info_encode(&info, payload, sizeof(payload));
        if (len < 0) {
                r = len;
                goto fail;
        }
        f->c.reply_len = PROTO_HEADER_SIZE + (size_t)len;
        snprintf(f->dir, sizeof(f->dir), "/tmp/iomem-bench-cold-XXXXXX");
        if (!mkdtemp(f->dir)) {
                r = -errno;
                f->dir[0] = '\0';
                goto fail;
        }
        f->memfd = memfd_create("iomem-bench-floor", MFD_CLOEXEC);
        if (f->memfd < 0) {
                r = -errno;
                goto fail;
        }
        f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (ftruncate(f->memfd, (off_t)map_size) < 0 || f->lfd < 0) {
                r = -errno;
                goto fail;
        }
        snprintf(f->c.sa.sun_path, sizeof(f->c.sa.sun_path), "%s/s", f->dir);
        if (bind(f->lfd, (const struct sockaddr *)&f->c.sa, sizeof(f->c.sa)) < 0) {
                r = -errno;
                f->c.sa.sun_path[0] = '\0'; /* not ours to unlink */
                goto fail;
        }
        if (listen(f->lfd, 1024) < 0) {
                r = -errno;
                goto fail;
        }
        f->pid = fork();
        if (f->pid < 0) {
                r = -errno;
                goto fail;
        }
        if (f->pid == 0)
                _exit(epoll ? floor_cold_epoll_server(f->lfd, f->memfd) : floor_cold_server(f->lfd, f->memfd));
        *fp = f;
        return 0;
fail:
        floor_cold_stop(f);
        return r;
}

int floor_cold_run(struct floor_cold *f, const struct runner_opts *o, struct stats *s, double *secondsp)
{
        return runner_loop(floor_cold_op, &f->c, o, s, secondsp);
}

int floor_cold(const struct runner_opts *o, size_t map_size, size_t sample_cap, bool epoll, struct stats_result *res)
{
        struct floor_cold *f = NULL;
        struct stats s;
        double seconds;
        int r, k;

        r = floor_cold_start(map_size, epoll, &f);
        if (r < 0)
                return r;
        r = stats_init(&s, sample_cap);
        if (r == 0)
                r = floor_cold_run(f, o, &s, &seconds);
        k = floor_cold_stop(f);
        if (r == 0)
                r = k;
        if (r == 0)
                stats_finish(&s, seconds, epoll ? "floor-cold-epoll" : "floor-cold",
                             epoll ? "the same to a bare epoll server (many clients at once)"
                                   : "connect to a bare server + request + reply with 1 memfd, mmap + munmap + close, "
                                     "no daemon",
                             res);
        stats_deinit(&s);
        return r;
}
