/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fdutil: the tests' raw fd passing (one sendmsg with SCM_RIGHTS), fd counting and raw connect, no framework. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* The most fds one fdutil_sendmsg() block may carry. */
#define FDUTIL_MAX_FDS 256

/*
 * fdutil_sendmsg() - one sendmsg() of @len bytes from @buf on @sock with
 * @nblocks SCM_RIGHTS blocks, each carrying @nfds fds taken in order from
 * @fds (nblocks * nfds of them). No block is attached when @nfds or
 * @nblocks is 0. Nothing is fixed up: the bytes go as given, so a test can
 * send a frame whose header disagrees with the fds attached. @flags are
 * sendmsg()'s (MSG_NOSIGNAL, MSG_DONTWAIT...). The caller keeps its fds.
 * Return: the bytes sent, -E2BIG if @nfds > FDUTIL_MAX_FDS or @nblocks > 2,
 * or sendmsg()'s -errno.
 */
ssize_t fdutil_sendmsg(int sock, const void *buf, size_t len, const int *fds, unsigned nfds, unsigned nblocks,
                       int flags);

/*
 * fdutil_connect() - a blocking, close-on-exec stream socket connected to the
 * Unix socket at @path.
 * Return: the fd (the caller's), or the negative errno of socket()/connect().
 */
int fdutil_connect(const char *path);

/*
 * fdutil_count() - the number of open fds of process @pid, 0 for this
 * process (not counting the fd that reads /proc/self/fd itself).
 * Return: the count, or -1 if /proc/PID/fd cannot be read.
 */
int fdutil_count(pid_t pid);
