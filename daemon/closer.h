/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* closer: closes fds that clients sent, on threads of its own, counted per uid. */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

/*
 * close() can block: the last close of a file on FUSE waits for its server's
 * answer to FLUSH, a TCP socket with SO_LINGER and unsent data waits for its
 * peer, and a hostile local user can arrange either. Closing a client's fd
 * on the event loop would then stall every client. The transport hands such
 * closes to closer_close(), which queues them to CLOSER_THREADS threads; the
 * queue grows as needed (each entry is an fd the daemon holds, so the
 * daemon's RLIMIT_NOFILE bounds it) and a close never falls back to the
 * event loop (except when memory for one queue entry cannot be had).
 *
 * Every queued fd is counted against the uid that sent it until its close
 * returns: the connections of a uid with CLOSER_MAX_PENDING_PER_UID or more
 * fds waiting are not read (conn.c), so one user who wedges the threads
 * stops itself, not the daemon, and cannot pile up the daemon's fds.
 */

#define CLOSER_THREADS 4
#define CLOSER_NO_UID UINT32_MAX /* fds no client sent (region fds): counted to nobody's uid */
#define CLOSER_MAX_PENDING_PER_UID 256u

/*
 * closer_start() - make closer_close() the transport's closer, its threads started by the first close handed
 * to it (closer_close()), not before: a process that never gets such a close (iomemd serving OPENs of regions
 * that outlive their clients) stays on one thread, where glibc's syscall wrappers skip their cancellation
 * bookkeeping and the kernel looks fds up without a reference. Return: 0.
 */
int closer_start(void);

/* closer_stop() - close what is queued (waiting for blocked closes), stop the threads. Return: nothing. */
void closer_stop(void);

/*
 * closer_reset_after_fork() - in a child forked without exec from a process
 * whose closer may run (an fd keeper started as a forked copy of the daemon):
 * forget the parent's threads, lock and queue, so that closer_start() starts
 * threads of the child's own. The parent's queued fds are not closed (see
 * closer.c). Call it before the child makes any thread or fd. Harmless in a
 * process whose closer never ran. Return: nothing.
 */
void closer_reset_after_fork(void);

/*
 * closer_close() - close @fd, which @uid sent, soon, not necessarily now: on the threads, which the first call
 * after closer_start() starts (if none can be, the warning is logged once and closes happen inline, as without
 * closer_start()). Called on one thread (the event loop's). Return: nothing.
 */
void closer_close(int fd, uint32_t uid);

/* closer_pending()'s look under the lock, when something is pending. */
unsigned closer_pending_uid(uint32_t uid);

/*
 * The fds queued or being closed, all uids together: changed under the closer's lock, read without it by
 * closer_pending() (closer.c says why that is enough). Nobody else's to touch.
 */
extern atomic_uint closer_total;

/*
 * closer_closing() - the fds queued or being closed, all uids together (the
 * METRICS gauge): a close is counted until close() returned. Return: the count.
 */
static inline unsigned closer_closing(void)
{
        return atomic_load_explicit(&closer_total, memory_order_relaxed);
}

/*
 * Return: the fds @uid sent that are queued or being closed. Inline: it runs several times per request, and
 * nearly always finds nothing pending at all (no lock, no call then).
 */
static inline unsigned closer_pending(uint32_t uid)
{
        if (atomic_load_explicit(&closer_total, memory_order_relaxed) == 0)
                return 0;
        return closer_pending_uid(uid);
}
