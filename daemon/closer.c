/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* closer: closes fds that clients sent, on a thread of its own. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <unistd.h>

#include "closer.h"
#include "transport.h"

static int closer_pipe[2] = { -1, -1 };
static pthread_t closer_thread;
static bool closer_running;

static void *closer_main(void *arg)
{
        (void)arg;
        for (;;) {
                int fd;
                ssize_t n = read(closer_pipe[0], &fd, sizeof(fd));

                if (n == (ssize_t)sizeof(fd))
                        close(fd);
                else if (n == 0 || (n < 0 && errno != EINTR))
                        return NULL; /* closer_stop() closed the write end: all is drained */
        }
}

int closer_start(void)
{
        sigset_t all, old;
        int r;

        if (closer_running)
                return 0;
        if (pipe2(closer_pipe, O_CLOEXEC) < 0)
                return -errno;
        /* the write end must never block the event loop; a pipe holds 16,384 fd numbers */
        if (fcntl(closer_pipe[1], F_SETFL, O_NONBLOCK) < 0) {
                r = -errno;
                goto fail;
        }
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old); /* signals stay with the event loop's thread */
        r = -pthread_create(&closer_thread, NULL, closer_main, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0)
                goto fail;
        closer_running = true;
        transport_set_fd_closer(closer_close);
        return 0;
fail:
        close(closer_pipe[0]);
        close(closer_pipe[1]);
        closer_pipe[0] = closer_pipe[1] = -1;
        return r;
}

void closer_stop(void)
{
        if (!closer_running)
                return;
        transport_set_fd_closer(NULL);
        close(closer_pipe[1]);
        pthread_join(closer_thread, NULL);
        close(closer_pipe[0]);
        closer_pipe[0] = closer_pipe[1] = -1;
        closer_running = false;
}

void closer_close(int fd)
{
        if (fd < 0)
                return;
        if (!closer_running || write(closer_pipe[1], &fd, sizeof(fd)) != (ssize_t)sizeof(fd))
                close(fd); /* no thread, or it is stuck with a full queue: close here */
}
