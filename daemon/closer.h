/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* closer: closes fds that may take long to close (clients', regions'), on threads of a process of its own, counted per uid. */
#pragma once

#include <stdint.h>

/*
 * close() can block: the last close of a file on FUSE waits for its server's
 * answer to FLUSH, a TCP socket with SO_LINGER and unsent data waits for its
 * peer, and a hostile local user can arrange either. Closing a client's fd
 * on the event loop would then stall every client. The transport hands such
 * closes to closer_close(), which queues them to CLOSER_THREADS threads; the
 * queue grows as needed (each entry is an fd the daemon holds, so the
 * daemon's RLIMIT_NOFILE bounds it) and a close never falls back to the
 * event loop (except when memory for one queue entry cannot be had, or the
 * closer process is gone). The daemon's threads run in a process of their
 * own (closer_spawn()), which the daemon sends each fd; keepers run theirs
 * in-process (closer_start()).
 *
 * Every queued fd is counted against the uid that sent it until its close
 * returns (in the daemon: until the closer process says so): the connections of a uid with CLOSER_MAX_PENDING_PER_UID or more
 * fds waiting are not read (conn.c), so one user who wedges the threads
 * stops itself, not the daemon, and cannot pile up the daemon's fds.
 */

#define CLOSER_THREADS 4
#define CLOSER_NO_UID UINT32_MAX /* fds no client sent (region fds): counted to nobody's uid */
#define CLOSER_MAX_PENDING_PER_UID 256u

/* closer_start() - start the threads in this process and make them the transport's closer. Return: 0 or negative errno. */
int closer_start(void);

/*
 * closer_spawn() - the daemon's closer: a process of its own (named
 * iomemd-closer) with the threads, so that the daemon keeps one thread.
 * Closes are sent to it with their fds; closer_drain() must be called when
 * closer_fd() is readable (its answers). Return: 0 or negative errno (then
 * closes happen inline).
 */
int closer_spawn(void);

/* Return: the fd to watch for reading while closes go to the closer process; -1 when they do not. */
int closer_fd(void);

/*
 * closer_drain() - count down the closes the closer process says are done,
 * and send it what waited for room. Return: 0; -EPIPE when the process is
 * gone (logged; closes are inline from then on: stop watching closer_fd()).
 */
int closer_drain(void);

/* closer_stop() - close what is queued (waiting for blocked closes), stop the threads. Return: nothing. */
void closer_stop(void);

/* closer_close() - close @fd, which @uid sent, soon, not necessarily now. Return: nothing. */
void closer_close(int fd, uint32_t uid);

/* Return: the fds @uid sent that are queued or being closed. */
unsigned closer_pending(uint32_t uid);
