#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "reply.h"
static int memfd, peercred, outq, del, seals;
static int answer(int sock)
{
        unsigned char buf[1024];
        union { struct cmsghdr a; char b[CMSG_SPACE(sizeof(int))]; } c;
        struct iovec iov = { (void *)REPLY, REPLY_LEN };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.b, .msg_controllen = sizeof(c.b) };
        struct cmsghdr *cm;
        ssize_t k;
        int q;
        if (outq) ioctl(sock, SIOCOUTQ, &q);
        k = recv(sock, buf, sizeof(buf), MSG_DONTWAIT);
        if (k == 0) return 0;
        if (k < 0) return errno == EAGAIN ? 1 : -1;
        if (seals) fcntl(memfd, F_GET_SEALS);
        cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &memfd, sizeof(int));
        if (sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) != REPLY_LEN) return -1;
        return 1;
}
int main(int argc, char **argv)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct epoll_event ev, evs[32];
        int lfd, ep;
        peercred = !!getenv("PEERCRED"); outq = !!getenv("OUTQ"); del = !!getenv("DEL"); seals = !!getenv("SEALS");
        memfd = memfd_create("x", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        ftruncate(memfd, 4096);
        fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
        strcpy(sa.sun_path, argv[1]);
        unlink(argv[1]);
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (bind(lfd, (void *)&sa, sizeof(sa)) < 0 || listen(lfd, 1024) < 0) return 1;
        ep = epoll_create1(EPOLL_CLOEXEC);
        ev = (struct epoll_event){ .events = EPOLLIN, .data.fd = lfd };
        epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
        for (;;) {
                int n = epoll_wait(ep, evs, 32, -1);
                for (int i = 0; i < n; i++) {
                        int fd = evs[i].data.fd, r;
                        if (fd == lfd) {
                                fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                                if (fd < 0) continue;
                                if (peercred) { struct ucred u; socklen_t l = sizeof(u); getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &u, &l); }
                                r = answer(fd);
                                ev = (struct epoll_event){ .events = EPOLLIN, .data.fd = fd };
                                if (r <= 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) close(fd);
                                continue;
                        }
                        r = answer(fd);
                        if (r <= 0) { if (del) epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL); close(fd); }
                }
        }
}
