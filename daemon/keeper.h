/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* keeper: helper processes that hold region fds beyond the daemon's own fd budget. */
#pragma once

/*
 * Every region is a kernel object that stays alive only while someone holds
 * an fd (or a mapping) of it. A daemon that holds one fd per region is
 * limited by RLIMIT_NOFILE, whose hard limit an unprivileged service cannot
 * raise (20,000 on some hosts). Past a budget, region fds are therefore
 * "parked" in keeper processes: children forked by the daemon that do
 * nothing but hold fds, keyed by region id, and hand back a copy on request
 * over a SOCK_SEQPACKET socketpair. Each keeper has its own fd table, so the
 * daemon's capacity grows by a keeper's fd limit per keeper.
 *
 * Keepers exit when the daemon's end of their socket closes (or the daemon
 * dies: PR_SET_PDEATHSIG), closing what they held; clients' fds and mappings
 * are unaffected. One given up, or at the daemon's exit, is also SIGKILLed
 * (one stopped or stuck would not read the EOF), and the event loop never
 * waits for its exit (keepers_reap()). Requests are synchronous round trips
 * of a few microseconds to a process that never blocks on anything else; a
 * reply not there within 5 s gives the keeper up, and one that exited is
 * given up as soon as a 10 ms wait for its reply finds it so (the socket's
 * receive timeout is that 10 ms: a reply there in time costs one recvmsg(),
 * as before). One that a 10 ms wait finds stopped (SIGSTOP, SIGTSTP) is
 * continued (SIGCONT) and waited for again, within the same 5 s.
 */

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

struct keeper_child;

struct keepers {
        struct keeper_child *v;
        size_t n;
        size_t cap;
        unsigned per_keeper; /* fds each keeper may hold */
        size_t drops_pending; /* DROPs not sent yet (a transient error), over all keepers */
        size_t drops_kept, drops_sent; /* since the warning that some went pending: for one line at the end */
        size_t drops_lost; /* DROPs neither sent nor kept (-ENOMEM) since the error that said so: one line each burst */
        size_t unreaped; /* keepers given up (killed) whose exit is not reaped yet: keepers_reap() */
};

/*
 * keepers_init() - set up an empty pool; keepers are forked on demand.
 * @per_keeper: fds a keeper may hold; 0 = its RLIMIT_NOFILE hard limit less a margin.
 * Return: nothing.
 */
void keepers_init(struct keepers *k, unsigned per_keeper);

/*
 * keepers_deinit() - at exit: close every keeper's socket, kill it (SIGKILL:
 * one stopped or stuck would not exit at EOF) and reap it, waiting for its
 * exit (the kernel's teardown of what it held). Return: nothing.
 */
void keepers_deinit(struct keepers *k);

/*
 * keepers_reap() - reap the keepers given up while the daemon runs (a failed
 * round trip closes its socket and SIGKILLs it, and reaps it then only if it
 * is gone already: the event loop never waits for a keeper's exit). The
 * daemon's status timer calls this (regtab_reap_keepers()); free when none
 * is left to reap (a counter's test), else one waitpid(WNOHANG) per keeper
 * given up and not reaped.
 * Return: the number of keepers given up and not reaped yet.
 */
size_t keepers_reap(struct keepers *k);

/*
 * keepers_park_with_fd() - give a copy of @fd (borrowed: the caller closes
 * it once this succeeded) to a keeper under @id.
 * @remote_fdp: if not NULL, receives the fd's number in the keeper, for keepers_open().
 * Return: the keeper's index (>= 0); -ENOMEM/-EAGAIN if no keeper could be
 * made; -EIO if a keeper died; -EMFILE if the keeper's fd table had no room
 * for it (fds it dropped still closing: try again later); negative errno
 * (-ENOMEM, -ENOBUFS: nothing sent; with DROPs pending whose sends failed so
 * just before, after one try of its own, not KEEPER_RETRIES + 1).
 */
int keepers_park_with_fd(struct keepers *k, uint64_t id, int fd, int *remote_fdp);

/*
 * keepers_open() - the fast way back to a parked object: copy the keeper's
 * fd with pidfd_getfd() (keepers_copy()), or where that is refused open it
 * through /proc/PID/fd/N (the keeper is ours: same uid, and the object's
 * inode is ours and mode 0600), with no round trip to the keeper. The
 * result is checked to be the object parked (@dev, @ino) by an fstat, which
 * also gives its size; on any failure the caller falls back to keepers_fetch().
 * *@stp (may be NULL) gets the fstat that checked it.
 * Return: 0 with *fdp (O_RDWR, close-on-exec); negative errno.
 */
int keepers_open(struct keepers *k, int index, int remote_fd, uint64_t dev, uint64_t ino, int *fdp,
                 struct stat *stp);

/*
 * keepers_copy() - the fastest way back to a parked object, for a caller
 * that needs nothing of it but the fd: a copy of the keeper's fd @remote_fd
 * by pidfd_getfd(), without keepers_open()'s fstat. That check of dev/ino is
 * redundant here: the pidfd pins the keeper process itself (no pid reuse), a
 * keeper's fd table changes only by the daemon's own PARK and DROP
 * (synchronous round trips; a keeper that failed one is given up, and its
 * pidfd with it: -EIO), and @remote_fd is the number the keeper's PARK reply
 * gave for the region, forgotten at its DROP. The /proc/PID/fd/N open has no
 * such guarantee (a pid can be reused), so without pidfd_getfd() this is
 * -EOPNOTSUPP and the caller uses keepers_open(), which checks.
 * Return: 0 with *fdp (O_RDWR as parked, close-on-exec); -EOPNOTSUPP (no
 * pidfd, or pidfd_getfd() refused: seccomp, old kernel); -EIO (no such
 * keeper, or it is gone); negative errno.
 */
int keepers_copy(struct keepers *k, int index, int remote_fd, int *fdp);

/*
 * keepers_fetch() - a new fd (close-on-exec, caller owns) to the object
 * parked under @id in keeper @index.
 * Return: 0 with *fdp set; -ENOENT if the keeper does not hold @id; -EIO.
 */
int keepers_fetch(struct keepers *k, int index, uint64_t id, int *fdp);

/*
 * keepers_drop() - the keeper closes what it holds under @id. A DROP that a
 * transient error (-ENOMEM, -ENOBUFS) kept from being sent is kept and sent
 * before the next request to any keeper (a PARK, FETCH or DROP), or at the
 * next keepers_send_pending() (the daemon's timer); one warning is logged
 * when DROPs first go pending, one line when none is any more; until then
 * its fd stays in the keeper and its slot stays used. While earlier ones
 * still cannot be sent, a DROP is queued behind them without a try of its
 * own. @id must not be parked again (region ids are never reused within a
 * daemon, and keepers do not outlive it).
 * Return: 0 (done, or pending as above); -ENOENT if the keeper does not hold
 * @id; -EIO (the keeper is gone, with all it held); -ENOMEM (neither sent nor
 * kept: the fd stays until the keeper exits; one error is logged for a burst
 * of these, and one line with their count once a DROP is sent (here, or a
 * pending one by any request or keepers_send_pending()) or kept again).
 */
int keepers_drop(struct keepers *k, int index, uint64_t id);

/*
 * keepers_send_pending() - send the DROPs kept pending (keepers_drop()) now,
 * without waiting for a request to a keeper: the daemon's status timer calls
 * this (regtab_send_pending_drops()), so a daemon that gets no PARK, FETCH or
 * DROP does not leave a deleted region's object in a keeper. Nothing to do
 * (no syscall) when none is pending; under a lasting failure each call costs
 * one try (KEEPER_RETRIES + 1 sends, 1 ms sleeps between).
 * Return: 0 (none pending now); the transient negative errno that left some pending.
 */
int keepers_send_pending(struct keepers *k);

/*
 * keepers_set_exec() - start keepers as a fresh program: fork, then exec
 * @path (e.g. "/proc/self/exe") with the arguments KEEPER_ARG and the
 * capacity, so that a keeper shares no memory with the daemon (a forked
 * copy would keep every daemon heap page the daemon later writes to). The
 * program's main() must hand such an invocation to keeper_exec_main().
 * Without it (tests) keepers are forked copies. Return: nothing.
 */
#define KEEPER_ARG "--internal-fd-keeper"
void keepers_set_exec(const char *path);

/*
 * keeper_exec_main() - the keeper's main() after exec: serve the socket at
 * fd 3. Return: never returns when argv is a keeper invocation; -EINVAL otherwise.
 */
int keeper_exec_main(int argc, char **argv);

/* Return: the number of keeper processes; their pids through keepers_pid(). */
size_t keepers_count(const struct keepers *k);
pid_t keepers_pid(const struct keepers *k, size_t index);
