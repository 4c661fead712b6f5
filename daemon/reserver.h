/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * reserver: RESERVE's fallocate(), and the ftruncate and F_ADD_SEALS of RESIZE and SEAL (which wait for a
 * holder's fallocate), on threads of their own, so that none of them holds the event loop.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/*
 * fallocate() of a RESERVEd region's bytes takes about 0.1-0.5 s per GiB
 * (the kernel zeroes every page), and a local user may reserve on many
 * connections at once: on the event loop that froze every other client.
 * conn-region.c hands each reservation to reserver_submit_consume_fd(); one
 * of RESERVER_THREADS threads fallocates while the loop goes on, then the
 * job's completion is called on the event loop's thread from
 * reserver_collect(), which server.c runs when reserver_fd() is readable.
 *
 * Order: every job names the uid that asked for it. A thread takes the first
 * queued job whose uid has no job running on another thread
 * (reserver_pick()), so one uid never holds two threads: while one of its
 * jobs waits for a holder's fallocate (a RESIZE's ftruncate, a SEAL's
 * F_ADD_SEALS) as long as that holder likes, its later jobs wait and other
 * uids' are served by the other thread. (Two uids each with such a job still
 * hold both threads: the bound is one thread per uid.) A uid's queued jobs
 * are bounded by its connections (each requester waits for its reply), so no
 * job is refused for this; the rule holds for every kind of job (RESERVE,
 * RESIZE, SEAL share one queue).
 *
 * Fd ownership: a job owns the fd it was given from submission until its
 * completion is called, which receives it (and must close or keep it). A
 * cancelled job's fd is closed by the reserver: at once if no thread had
 * taken it yet, else once its fallocate returns. No other code closes it,
 * so its number cannot be reused under a running fallocate.
 *
 * Threading: every field of a job but the fd's fallocate is read and written
 * under the reserver's lock; completions, cancels and submissions all run on
 * the event loop's thread, so a completion never races a cancel.
 */

#define RESERVER_THREADS 2

struct reserver_job;

/*
 * Completion, on the event loop's thread: @result is 0 or the negative errno
 * of fallocate() (-ENOSPC, -ENOMEM, ...); @fd is the job's fd, now the
 * callee's. Not called for a cancelled job.
 */
typedef void reserver_done_fn(void *arg, int fd, int result);

/*
 * reserver_start() - make the eventfd that says completions are waiting; the
 * threads start with the first reservation (reserver_available()), not
 * before, so that a daemon nobody asks to reserve stays on one thread.
 * Return: 0 or a negative errno (then reserver_running() is false and callers
 * reserve inline).
 */
int reserver_start(void);

/*
 * reserver_stop() - stop the threads: jobs not started are abandoned (their
 * fds closed, no completion), running ones finish their fallocate first;
 * completions not yet collected are dropped the same way. Callers have
 * cancelled their jobs before (conn_free()). Joined, not detached: a running
 * job may wait for a holder's inode lock, but a SEAL's or fallocate's wait
 * there outlasts even SIGKILL (the process is not gone before its last
 * thread), and the join lets each cancelled job be settled (its gone
 * callback) before the table and the quota go (docs/reliability.md, item 16
 * of "Low findings fixed later"). Return: nothing.
 */
void reserver_stop(void);

/* Return: true between a successful reserver_start() and reserver_stop() (the threads may not run yet). */
bool reserver_running(void);

/*
 * reserver_available() - for a reservation about to be made: start the
 * threads if they do not run yet (one attempt; a failure is logged).
 * Return: true if reservations go to the threads (reserver_submit_consume_fd()),
 * false if the caller reserves inline (not started, or no thread could be).
 */
bool reserver_available(void);

/* Return: the eventfd to watch for reading (-1 when not running); readable when reserver_collect() has work. */
int reserver_fd(void);

/*
 * reserver_submit_consume_fd() - for @uid (the requester: see "Order"
 * above), fallocate bytes @offset..@offset+@len of @fd (consumed, even on
 * error) on a reserver thread, then call @done(@arg,
 * fd, result) from reserver_collect() (a RESERVEd growth is a RESIZE job:
 * reserver_submit_resize_consume_fd() with RESERVER_RESIZE_AHEAD).
 * Return: 0 with *jobp (for reserver_cancel()); -ENOMEM; -ESHUTDOWN when
 * no thread runs (reserver_available() said false).
 */
int reserver_submit_consume_fd(int fd, uint32_t uid, uint64_t offset, uint64_t len, reserver_done_fn *done, void *arg,
                               struct reserver_job **jobp);

#define RESERVER_RESIZE_AHEAD 1u     /* a RESERVEd growth: fallocate past the end first (hugetlb too) */
#define RESERVER_RESIZE_NO_SHRINK 2u /* not RESIZABLE: never below the size the object has at the ftruncate */

/*
 * reserver_submit_resize_consume_fd() - for @uid, change the size of @fd's object
 * (@fd consumed, even on error) from @from to @to bytes on a reserver
 * thread: its ftruncate, like F_ADD_SEALS, waits for the inode lock that
 * any holder's fallocate holds throughout. The size is checked again right
 * before the ftruncate (see reserver_resize() in reserver.c). @done gets 0
 * (resized) or a negative errno (nothing changed; -EBUSY: with
 * RESERVER_RESIZE_AHEAD, a holder changed the size meanwhile; -EPERM: with
 * RESERVER_RESIZE_NO_SHRINK, a holder grew it past @to meanwhile, or a
 * seal). A job cancelled before its ftruncate does not resize; once it ran,
 * its gone callback gets 0. Return: as reserver_submit_consume_fd().
 */
int reserver_submit_resize_consume_fd(int fd, uint32_t uid, uint64_t from, uint64_t to, unsigned flags,
                                      reserver_done_fn *done, void *arg, struct reserver_job **jobp);

/*
 * reserver_submit_seal_consume_fd() - for @uid, backend_seal(@fd, @seals) on a
 * reserver thread (@fd consumed, even on error); @done gets the seals now
 * (>= 0) or backend_seal()'s negative errno. Return: as
 * reserver_submit_consume_fd().
 */
int reserver_submit_seal_consume_fd(int fd, uint32_t uid, uint32_t seals, reserver_done_fn *done, void *arg,
                                    struct reserver_job **jobp);

/*
 * Called on the event loop's thread once a cancelled job's fd is closed
 * (reserver_cancel()), with what its work returned if it ran (a RESIZE or
 * SEAL that ran changed the object: the daemon's state must follow), else
 * -ECANCELED.
 */
typedef void reserver_gone_fn(void *arg, int result);

/*
 * reserver_cancel() - the requester is gone: @job's completion is never
 * called; its fd is closed and its memory freed by the reserver (now, or
 * when its fallocate returns). Then, if not NULL, @gone(@arg) is called, on
 * the event loop's thread: from here if no thread had taken the job, else from
 * reserver_collect() or reserver_stop(). Until then a fallocate may still
 * hold the object's inode lock, which the loop must not wait for (an
 * ftruncate or F_ADD_SEALS of the same object), and what it allocates past
 * the end would be given back under another job's growth. Return: nothing.
 */
void reserver_cancel(struct reserver_job *job, reserver_gone_fn *gone, void *arg);

/* reserver_collect() - call the completions of the jobs that are done. Return: the number called. */
unsigned reserver_collect(void);

/*
 * reserver_jobs() - the jobs not yet freed: queued, running, or done and not
 * yet collected (a cancelled one among them). Each holds the fd it was given
 * until it is freed, when the closer takes it (the METRICS gauge). Called on
 * the event loop's thread. Return: the count.
 */
unsigned reserver_jobs(void);

/* Return: the jobs queued or running (for tests and STATUS-like introspection). */
unsigned reserver_pending(void);
