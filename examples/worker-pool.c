/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* worker-pool: pass one region's fd to N workers with SCM_RIGHTS; work and results travel through it. */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "iomem.h"

#define WORKERS 3
#define REGION_SIZE (1024 * 1024)
#define RESULT_DISTANCE 65536 /* a result lands this far after its input */

/* What goes over the sockets: only offsets and lengths, never the data. */
struct job {
        uint64_t offset; /* length 0 = quit */
        uint64_t length;
};

static int send_fd(int sock, int fd)
{
        char dummy = 'F';
        struct iovec iov = { .iov_base = &dummy, .iov_len = 1 };
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } ctl = { 0 };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                              .msg_controllen = sizeof(ctl.buf) };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
        return sendmsg(sock, &msg, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

static int recv_fd(int sock, int *fdp)
{
        char dummy;
        struct iovec iov = { .iov_base = &dummy, .iov_len = 1 };
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } ctl;
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                              .msg_controllen = sizeof(ctl.buf) };
        struct cmsghdr *cm;

        if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
                return -EIO;
        cm = CMSG_FIRSTHDR(&msg);
        if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
            cm->cmsg_len != CMSG_LEN(sizeof(int)) || (msg.msg_flags & MSG_CTRUNC))
                return -EPROTO;
        memcpy(fdp, CMSG_DATA(cm), sizeof(int));
        return 0;
}

/* A worker: receive the region, then reverse each job's bytes into the result area. */
static int worker(int id, int sock)
{
        struct iomem_region *region = NULL;
        struct job job;
        char *buf;
        void *addr;
        int fd, r;

        r = recv_fd(sock, &fd);
        if (r < 0)
                return EXIT_FAILURE;
        r = iomem_region_new_consume_fd(fd, &region); /* fd consumed */
        if (r < 0)
                return EXIT_FAILURE;
        r = iomem_region_map(region, 0, REGION_SIZE, PROT_READ | PROT_WRITE, &addr);
        if (r < 0)
                return EXIT_FAILURE;
        buf = addr;
        printf("worker %d started\n", id);
        fflush(stdout);
        while (read(sock, &job, sizeof(job)) == sizeof(job) && job.length > 0) {
                if (job.offset + job.length * 2 + RESULT_DISTANCE > REGION_SIZE)
                        return EXIT_FAILURE;
                for (uint64_t i = 0; i < job.length; i++)
                        buf[job.offset + RESULT_DISTANCE + i] = buf[job.offset + job.length - 1 - i];
                job.offset += RESULT_DISTANCE;
                if (write(sock, &job, sizeof(job)) != sizeof(job))
                        return EXIT_FAILURE;
        }
        iomem_unmap(addr, REGION_SIZE);
        iomem_region_free(region);
        close(sock);
        printf("worker %d finished\n", id);
        fflush(stdout); /* workers leave with _exit() */
        return EXIT_SUCCESS;
}

int main(void)
{
        static const char *const work[] = { "Hello World", "Shared Memory", "Zero Copy IPC", "fd passing",
                                            "SCM_RIGHTS" };
        int socks[WORKERS];
        pid_t pids[WORKERS];
        struct iomem_region *region = NULL;
        char *buf;
        void *addr;
        int failed = 0, r;

        /*
         * Workers are forked before the region exists, so the only way they
         * can reach it is the fd sent over their socket.
         */
        fflush(stdout);
        for (int i = 0; i < WORKERS; i++) {
                int sv[2];

                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                        perror("worker-pool: socketpair");
                        return EXIT_FAILURE;
                }
                pids[i] = fork();
                if (pids[i] < 0) {
                        perror("worker-pool: fork");
                        return EXIT_FAILURE;
                }
                if (pids[i] == 0) {
                        for (int j = 0; j < i; j++)
                                close(socks[j]);
                        close(sv[0]);
                        _exit(worker(i, sv[1]));
                }
                close(sv[1]);
                socks[i] = sv[0];
        }

        r = iomem_region_new_local(REGION_SIZE, IOMEM_BACKEND_AUTO, 0, &region);
        if (r < 0) {
                fprintf(stderr, "worker-pool: new region: %s\n", iomem_strerror(r));
                return EXIT_FAILURE;
        }
        r = iomem_region_map(region, 0, REGION_SIZE, PROT_READ | PROT_WRITE, &addr);
        if (r < 0) {
                fprintf(stderr, "worker-pool: map: %s\n", iomem_strerror(r));
                return EXIT_FAILURE;
        }
        buf = addr;
        for (int i = 0; i < WORKERS; i++)
                if (send_fd(socks[i], iomem_region_fd(region)) < 0) {
                        fprintf(stderr, "worker-pool: send fd to worker %d failed\n", i);
                        return EXIT_FAILURE;
                }

        for (size_t n = 0; n < sizeof(work) / sizeof(work[0]); n++) {
                struct job job = { .offset = n * 100, .length = strlen(work[n]) };
                int w = (int)(n % WORKERS);
                char expect[64];

                memcpy(buf + job.offset, work[n], job.length);
                if (write(socks[w], &job, sizeof(job)) != sizeof(job) ||
                    read(socks[w], &job, sizeof(job)) != sizeof(job)) {
                        fprintf(stderr, "worker-pool: worker %d did not answer\n", w);
                        return EXIT_FAILURE;
                }
                for (size_t i = 0; i < job.length; i++)
                        expect[i] = work[n][job.length - 1 - i];
                if (job.length != strlen(work[n]) || job.offset != n * 100 + RESULT_DISTANCE ||
                    memcmp(buf + job.offset, expect, job.length) != 0) {
                        fprintf(stderr, "worker-pool: wrong result for \"%s\"\n", work[n]);
                        failed = 1;
                        continue;
                }
                printf("result from worker %d: \"%.*s\"\n", w, (int)job.length, buf + job.offset);
        }

        for (int i = 0; i < WORKERS; i++) {
                struct job quit = { 0 };
                int status;

                if (write(socks[i], &quit, sizeof(quit)) != sizeof(quit))
                        failed = 1;
                if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                        fprintf(stderr, "worker-pool: worker %d failed\n", i);
                        failed = 1;
                }
                close(socks[i]);
        }
        iomem_unmap(addr, REGION_SIZE);
        iomem_region_free(region);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
