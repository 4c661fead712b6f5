/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fdutil: the tests' raw fd passing (one sendmsg with SCM_RIGHTS), fd counting and raw connect, no framework. */

#include "fdutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

ssize_t fdutil_sendmsg(int sock, const void *buf, size_t len, const int *fds, unsigned nfds, unsigned nblocks,
                       int flags)
{
        union {
                struct cmsghdr align;
                uint8_t buf[CMSG_SPACE(FDUTIL_MAX_FDS * sizeof(int)) * 2];
        } ctrl;
        struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        if (nfds > FDUTIL_MAX_FDS || nblocks > 2)
                return -E2BIG;
        if (nfds > 0 && nblocks > 0) {
                struct cmsghdr *cmsg;

                memset(&ctrl, 0, sizeof(ctrl));
                msg.msg_control = ctrl.buf;
                msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int)) * nblocks;
                cmsg = CMSG_FIRSTHDR(&msg);
                for (unsigned b = 0; b < nblocks; b++) {
                        cmsg->cmsg_level = SOL_SOCKET;
                        cmsg->cmsg_type = SCM_RIGHTS;
                        cmsg->cmsg_len = CMSG_LEN(nfds * sizeof(int));
                        memcpy(CMSG_DATA(cmsg), fds + b * nfds, nfds * sizeof(int));
                        cmsg = CMSG_NXTHDR(&msg, cmsg);
                }
        }
        n = sendmsg(sock, &msg, flags);
        return n < 0 ? -errno : n;
}

int fdutil_connect(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        return fd;
}

int fdutil_count(pid_t pid)
{
        char path[64];
        struct dirent *e;
        DIR *d;
        int n = 0;

        if (pid == 0)
                snprintf(path, sizeof(path), "/proc/self/fd");
        else
                snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
        d = opendir(path);
        if (!d)
                return -1;
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return pid == 0 ? n - 1 : n; /* our own listing holds one fd: the DIR's */
}
