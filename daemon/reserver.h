/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* reserver: RESERVE's fallocate() on threads of its own, so that a reservation never holds the event loop. */
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
 * cancelled their jobs before (conn_free()). Return: nothing.
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
 * reserver_submit_consume_fd() - fallocate bytes @offset..@offset+@len of
 * @fd (consumed, even on error) on a reserver thread, then call @done(@arg,
 * fd, result) from reserver_collect(). With @ahead, past the end of the
 * object without changing its size (backend_reserve_ahead(): a RESIZE's
 * growth, made visible by the completion's ftruncate); a cancelled job then
 * gives that memory back (backend_drop_ahead()) before it closes its fd.
 * Return: 0 with *jobp (for reserver_cancel()); -ENOMEM; -ESHUTDOWN when
 * no thread runs (reserver_available() said false).
 */
int reserver_submit_consume_fd(int fd, uint64_t offset, uint64_t len, bool ahead, reserver_done_fn *done, void *arg,
                               struct reserver_job **jobp);

/* Called on the event loop's thread once a cancelled job's fd is closed (reserver_cancel()). */
typedef void reserver_gone_fn(void *arg);

/*
 * reserver_cancel() - the requester is gone: @job's completion is never
 * called; its fd is closed and its memory freed by the reserver (now, or
 * when its fallocate returns; what a job with @ahead allocated is given back
 * first). Then, if not NULL, @gone(@arg) is called, on the event loop's
 * thread: from here if no thread had taken the job, else from
 * reserver_collect() or reserver_stop(). Until then a fallocate may still
 * hold the object's inode lock, which the loop must not wait for (an
 * ftruncate or F_ADD_SEALS of the same object), and what it allocates past
 * the end would be given back under another job's growth. Return: nothing.
 */
void reserver_cancel(struct reserver_job *job, reserver_gone_fn *gone, void *arg);

/* reserver_collect() - call the completions of the jobs that are done. Return: the number called. */
unsigned reserver_collect(void);

/* Return: the jobs queued or running (for tests and STATUS-like introspection). */
unsigned reserver_pending(void);
