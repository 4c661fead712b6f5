/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* child: what the daemon's helper processes (keepers, the closer) do first after fork(). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "child.h"

int child_isolate(int sock, const char *name)
{
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGPIPE, SIG_IGN);
        prctl(PR_SET_NAME, name);
        if (sock != 3) {
                if (dup3(sock, 3, O_CLOEXEC) < 0)
                        return -errno;
                sock = 3;
        }
        if (close_range(4, ~0U, 0) < 0) {
                /* kernels before 5.9: close one by one, or the child would keep clients' sockets open */
                struct rlimit cur;
                int max = getrlimit(RLIMIT_NOFILE, &cur) == 0 && cur.rlim_cur != RLIM_INFINITY ? (int)cur.rlim_cur
                                                                                               : 1 << 20;

                for (int fd = 4; fd < max; fd++)
                        close(fd);
        }
        return sock;
}
