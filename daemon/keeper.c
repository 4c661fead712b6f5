/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* keeper: helper processes that hold region fds beyond the daemon's own fd budget. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "closer.h"
#include "keeper.h"
#include "log.h"
#include "transport.h"

#define KEEPER_MARGIN 32 /* fds a keeper keeps free for itself */
#define KEEPER_TIMEOUT_SEC 5
#define KEEPER_STR_(x) #x
#define KEEPER_STR(x) KEEPER_STR_(x)
#define KEEPER_NO_REPLY "no reply within " KEEPER_STR(KEEPER_TIMEOUT_SEC) " s" /* for the give-up lines */
#define KEEPER_SLICE_MS 10 /* a reply not there after this: is the keeper still running? */

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

enum {
        KEEPER_PARK = 1,
        KEEPER_FETCH = 2,
        KEEPER_DROP = 3,
};

struct keeper_msg {
        uint32_t op;
        int32_t status;
        uint64_t id;
};

struct keeper_child {
        pid_t pid;
        int pidfd; /* for pidfd_getfd(); -1 if the kernel has none */
        int sock;  /* our end; -1 once the keeper is gone */
        unsigned held; /* its slots in use: the DROPs pending too, until sent */
        /*
         * DROPs that a transient error kept from being sent (nothing went): the
         * keeper still holds their fds. Their regions are gone from the daemon,
         * and region ids are never reused, so they are sent later, before the
         * next request to any keeper (keepers_send_drops()).
         */
        uint64_t *drops;
        size_t ndrops, drops_cap;
        /*
         * Round trips that found it stopped, and when the last warning said so:
         * warned at the 1st, 2nd, 4th, 8th... and at any after a minute
         * without a line (keeper_recv_reply()), not at each of a burst.
         */
        unsigned long stops_found;
        struct timespec stop_warned;
};

/* ---- the keeper process ------------------------------------------------- */

struct keeper_slot {
        uint64_t id; /* 0 = empty, UINT64_MAX = deleted */
        int fd;
};

static size_t keeper_hash(uint64_t id, size_t mask)
{
        id ^= id >> 33;
        id *= UINT64_C(0xff51afd7ed558ccd);
        id ^= id >> 33;
        return (size_t)id & mask;
}

/*
 * Drops leave tombstones; once live slots and tombstones fill 3/4 of the
 * table, rehash the live ones into a clean table of the same size, so that
 * lookups stay short however many regions come and go.
 */
static void keeper_rehash(struct keeper_slot **tabp, size_t mask, size_t *tombsp)
{
        struct keeper_slot *old = *tabp, *tab = calloc(mask + 1, sizeof(*tab));

        if (!tab)
                return; /* keep the old one: slower, still correct */
        for (size_t i = 0; i <= mask; i++) {
                if (old[i].id == 0 || old[i].id == UINT64_MAX)
                        continue;
                size_t j = keeper_hash(old[i].id, mask);

                while (tab[j].id)
                        j = (j + 1) & mask;
                tab[j] = old[i];
        }
        free(old);
        *tabp = tab;
        *tombsp = 0;
}

static struct keeper_slot *keeper_find(struct keeper_slot *tab, size_t mask, uint64_t id, bool insert)
{
        struct keeper_slot *tomb = NULL;

        for (size_t i = keeper_hash(id, mask), n = 0; n <= mask; i = (i + 1) & mask, n++) {
                if (tab[i].id == id)
                        return &tab[i];
                if (tab[i].id == UINT64_MAX && !tomb)
                        tomb = &tab[i];
                if (tab[i].id == 0)
                        return insert ? (tomb ? tomb : &tab[i]) : NULL;
        }
        return insert ? tomb : NULL;
}

/* The keeper channel is a SOCK_SEQPACKET socketpair: one struct keeper_msg a record, with at most one fd. */
static int keeper_send(int sock, const struct keeper_msg *m, int fd)
{
        return transport_send_fd(sock, m, sizeof(*m), fd);
}

/*
 * The keeper's receive (its socket has no timeout; the daemon's side is
 * keeper_recv_reply()). Return: 1 with *m (and *fdp, -1 if none); 0 at EOF;
 * negative errno.
 */
static int keeper_recv(int sock, struct keeper_msg *m, int *fdp)
{
        int r = transport_recv_fd(sock, m, sizeof(*m), fdp);

        return r == -EAGAIN ? -EIO : r;
}

/* Errors of a syscall that say nothing about the keeper: try again. */
static bool keeper_transient(int r)
{
        return r == -ENOMEM || r == -ENOBUFS || r == -ETOOMANYREFS;
}

#define KEEPER_RETRIES 8

/*
 * @exec_ed: the keeper is the daemon's binary run afresh (true), or the daemon's
 * forked copy, its exec having failed (false).
 */
static _Noreturn void keeper_main(int sock, unsigned capacity, bool exec_ed)
{
        static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD };
        struct keeper_slot *tab;
        struct rlimit rl;
        size_t mask = 1;

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        /*
         * A keeper forked without exec (keepers_spawn()'s fallback) inherits the
         * daemon's closer state but not its threads: without this its DROPs would
         * be queued to threads that are not there, and never closed. After an
         * exec there is nothing to forget: harmless.
         */
        closer_reset_after_fork();
        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
                signal(sigs[i], SIG_DFL);
        signal(SIGPIPE, SIG_IGN);
        prctl(PR_SET_NAME, "iomemd-keeper");
        /* hold nothing of the daemon's: only the socket, at fd 3 */
        if (sock != 3) {
                if (dup3(sock, 3, O_CLOEXEC) < 0)
                        _exit(1);
                sock = 3;
        }
        if (close_range(4, ~0U, 0) < 0) {
                /* kernels before 5.9: close one by one, or the keeper would keep clients' sockets open */
                struct rlimit cur;
                int max = getrlimit(RLIMIT_NOFILE, &cur) == 0 && cur.rlim_cur != RLIM_INFINITY ? (int)cur.rlim_cur
                                                                                               : 1 << 20;

                for (int fd = 4; fd < max; fd++)
                        close(fd);
        }
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                setrlimit(RLIMIT_NOFILE, &rl);
        }
        while (mask + 1 < (size_t)capacity * 2)
                mask = mask * 2 + 1;
        tab = calloc(mask + 1, sizeof(*tab));
        if (!tab)
                _exit(1);
        /*
         * DROPs close on threads (after the fd table is set up: the threads hold
         * no fd). Not in a forked copy of the multithreaded daemon: until an exec,
         * POSIX allows such a child only async-signal-safe calls, and a thread
         * made there can hang on a lock another daemon thread held at the fork
         * (it did under ASan, whose allocator is not glibc's); it closes inline.
         */
        if (!exec_ed || closer_start() < 0)
                transport_set_fd_closer(NULL); /* no threads: closes happen here, as before */
        size_t live = 0, tombs = 0;

        for (;;) {
                struct keeper_msg m;
                struct keeper_slot *s;
                int fd, r, reply_fd = -1;

                r = keeper_recv(sock, &m, &fd);
                if (r < 0 && keeper_transient(r)) {
                        usleep(1000); /* the request is still queued */
                        continue;
                }
                if (r == -EMFILE) {
                        /*
                         * A PARK whose fd did not fit in our fd table: DROPped fds still
                         * waiting for the closer threads count there, not in @live. Refuse
                         * that one (the region stays with the daemon), or all we hold is lost.
                         */
                        m.status = -EMFILE;
                        goto reply;
                }
                if (r <= 0)
                        _exit(r == 0 ? 0 : 1); /* the daemon is gone: what we hold is closed */
                switch (m.op) {
                case KEEPER_PARK:
                        if ((live + tombs + 1) * 4 > (mask + 1) * 3)
                                keeper_rehash(&tab, mask, &tombs);
                        s = (fd >= 0 && m.id && m.id != UINT64_MAX && live < capacity)
                                    ? keeper_find(tab, mask, m.id, true)
                                    : NULL;
                        if (!s || s->id == m.id) {
                                m.status = fd < 0 ? -EBADF : s ? -EEXIST : -ENOSPC;
                                if (fd >= 0)
                                        close(fd);
                                fd = -1;
                                break;
                        }
                        if (s->id == UINT64_MAX)
                                tombs--;
                        live++;
                        s->id = m.id;
                        s->fd = fd;
                        m.status = fd; /* its number here, for the daemon's /proc/PID/fd/N open */
                        fd = -1;
                        break;
                case KEEPER_FETCH:
                        s = keeper_find(tab, mask, m.id, false);
                        m.status = s ? 0 : -ENOENT;
                        reply_fd = s ? s->fd : -1;
                        break;
                case KEEPER_DROP:
                        s = keeper_find(tab, mask, m.id, false);
                        m.status = s ? 0 : -ENOENT;
                        if (s) {
                                /*
                                 * The last close of a huge region frees its pages (seconds for tens
                                 * of GiB): on a thread, so the reply goes now; a keeper silent for
                                 * KEEPER_TIMEOUT_SEC is taken for dead and its regions lost.
                                 */
                                closer_close(s->fd, CLOSER_NO_UID);
                                s->id = UINT64_MAX;
                                s->fd = -1;
                                live--;
                                tombs++;
                        }
                        break;
                default:
                        m.status = -EOPNOTSUPP;
                        break;
                }
                if (fd >= 0)
                        close(fd);
        reply:
                for (int tries = 0;; tries++) {
                        r = keeper_send(sock, &m, reply_fd);
                        if (r >= 0)
                                break;
                        if (!keeper_transient(r) || tries == KEEPER_RETRIES)
                                _exit(1);
                        usleep(1000);
                }
        }
}

int keeper_exec_main(int argc, char **argv)
{
        unsigned long capacity;
        char *end;

        if (argc != 3 || strcmp(argv[1], KEEPER_ARG) != 0)
                return -EINVAL;
        errno = 0;
        capacity = strtoul(argv[2], &end, 10);
        if (errno || *end || capacity == 0 || capacity > (1ul << 24))
                return -EINVAL;
        if (fcntl(3, F_GETFD) < 0)
                return -EBADF;
        keeper_main(3, (unsigned)capacity, true);
}

/* ---- the daemon's side -------------------------------------------------- */

static const char *keeper_exec_path;
static bool keepers_no_getfd; /* pidfd_getfd() was refused once: use /proc */

void keepers_set_exec(const char *path)
{
        keeper_exec_path = path;
}

void keepers_init(struct keepers *k, unsigned per_keeper)
{
        *k = (struct keepers){ .per_keeper = per_keeper };
        if (!k->per_keeper) {
                struct rlimit rl;

                if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY && rl.rlim_max > 2 * KEEPER_MARGIN)
                        k->per_keeper = rl.rlim_max > 1u << 20 ? 1u << 20 : (unsigned)rl.rlim_max - KEEPER_MARGIN;
                else
                        k->per_keeper = 1024 - KEEPER_MARGIN;
        }
}

/*
 * Once no DROP is pending any more, one line for all that were kept since
 * keepers_drop_later() warned (not one per DROP: a mass deletion under memory
 * shortage would log one per region). Return: nothing.
 */
static void keepers_drops_settled(struct keepers *k)
{
        if (k->drops_pending || !k->drops_kept)
                return;
        if (k->drops_sent == k->drops_kept)
                log_notice("fd keepers: all DROPs kept pending are sent (%zu)", k->drops_kept);
        else
                log_notice("fd keepers: no DROP is pending any more: %zu of the %zu kept were sent, the others "
                           "closed with their keeper", k->drops_sent, k->drops_kept);
        k->drops_kept = k->drops_sent = 0;
}

/*
 * A DROP was sent or kept again after a burst of DROPs neither sent nor kept
 * (keepers_drop_later()), or the daemon exits during one: one line with
 * their count, not one each. Return: nothing.
 */
static void keepers_drops_lost_end(struct keepers *k)
{
        if (!k->drops_lost)
                return;
        if (k->drops_lost > 1)
                log_error("fd keepers: %zu DROPs in all could neither be sent nor kept; their fds stay in their keepers "
                          "until those exit", k->drops_lost);
        k->drops_lost = 0;
}

/*
 * Reap a keeper given up: @flags WNOHANG (on the event loop) or 0 (at exit).
 * Return: true once it is reaped (or was not ours to reap any more: ECHILD).
 */
static bool keeper_child_reap(struct keepers *k, struct keeper_child *c, int flags)
{
        pid_t r;

        if (c->pid <= 0)
                return true;
        do
                r = waitpid(c->pid, NULL, flags);
        while (r < 0 && errno == EINTR);
        if (r == 0)
                return false; /* not yet: keepers_reap() (the status timer) tries again */
        c->pid = -1;
        if (c->pidfd >= 0) {
                close(c->pidfd);
                c->pidfd = -1;
        }
        k->unreaped--;
        return true;
}

/*
 * Send @sig to a keeper not yet reaped: through its pidfd (no pid reuse), or
 * on any refusal of that (ENOSYS, a seccomp filter's EPERM) with kill(), safe
 * on our unreaped child (keeper_child_reap() clears c->pid when it reaps).
 * Return: 0; negative errno (kill()'s).
 */
static int keeper_child_signal(const struct keeper_child *c, int sig)
{
        if (c->pid <= 0)
                return -ESRCH;
        if (c->pidfd >= 0 && syscall(SYS_pidfd_send_signal, c->pidfd, sig, NULL, 0) == 0)
                return 0;
        return kill(c->pid, sig) < 0 ? -errno : 0;
}

/*
 * Give a keeper up: close our end and kill it. It would exit at EOF, but a
 * keeper stopped (SIGSTOP) or stuck reads nothing, and a blocking waitpid()
 * on the event loop then waited for ever; so SIGKILL (through the pidfd: no
 * pid reuse; else, or if that is refused, kill(): safe while it is our
 * unreaped child, and server_run() keeps SIGCHLD from being ignored), and reap it
 * now if it is gone already, else later from keepers_reap(). Its pidfd is
 * kept until it is reaped. @wait: at exit (keepers_deinit()), wait for its
 * exit instead, which SIGKILL bounds to the kernel's teardown.
 */
static void keeper_child_close(struct keepers *k, struct keeper_child *c, bool wait)
{
        /* its pending DROPs die with it: it closes all it holds */
        k->drops_pending -= c->ndrops;
        free(c->drops);
        c->drops = NULL;
        c->ndrops = c->drops_cap = 0;
        keepers_drops_settled(k);
        if (c->sock >= 0) {
                close(c->sock);
                c->sock = -1;
                if (c->pid > 0) {
                        k->unreaped++;
                        (void)keeper_child_signal(c, SIGKILL);
                }
        }
        (void)keeper_child_reap(k, c, wait ? 0 : WNOHANG);
}

void keepers_deinit(struct keepers *k)
{
        keepers_drops_lost_end(k);
        for (size_t i = 0; i < k->n; i++)
                keeper_child_close(k, &k->v[i], true);
        free(k->v);
        *k = (struct keepers){ .per_keeper = k->per_keeper };
}

size_t keepers_reap(struct keepers *k)
{
        for (size_t i = 0; i < k->n && k->unreaped; i++)
                if (k->v[i].sock < 0)
                        (void)keeper_child_reap(k, &k->v[i], WNOHANG);
        return k->unreaped;
}

static int keepers_spawn(struct keepers *k)
{
        struct timeval tv = { KEEPER_TIMEOUT_SEC, 0 }, slice = { 0, KEEPER_SLICE_MS * 1000 };
        int sv[2];
        pid_t pid;

        if (k->n == k->cap) {
                size_t cap = k->cap ? k->cap * 2 : 4;
                struct keeper_child *v = realloc(k->v, cap * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                k->v = v;
                k->cap = cap;
        }
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                int r = -errno;

                close(sv[0]);
                close(sv[1]);
                return r;
        }
        if (pid == 0) {
                close(sv[0]);
                if (keeper_exec_path) {
                        char cap[16];
                        char *argv[] = { (char *)"iomemd-keeper", (char *)KEEPER_ARG, cap, NULL };

                        snprintf(cap, sizeof(cap), "%u", k->per_keeper);
                        /* the socket goes to fd 3 and stays open across exec; all else is close-on-exec */
                        if (sv[1] == 3 ? fcntl(3, F_SETFD, 0) == 0 : dup2(sv[1], 3) == 3)
                                execv(keeper_exec_path, argv);
                        /* no exec (e.g. the binary is gone): serve as a forked copy */
                }
                keeper_main(sv[1], k->per_keeper, false);
        }
        close(sv[1]);
        /* a reply is waited for in slices of this (keeper_recv_reply()), KEEPER_TIMEOUT_SEC in all */
        setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &slice, sizeof(slice));
        setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        k->v[k->n++] = (struct keeper_child){ .pid = pid, .sock = sv[0], .pidfd = (int)syscall(SYS_pidfd_open, pid, 0) };
        if (k->v[k->n - 1].pidfd >= 0)
                fcntl(k->v[k->n - 1].pidfd, F_SETFD, FD_CLOEXEC); /* pidfds are close-on-exec already; say so */
        log_info("started fd keeper %zu (pid %d) for up to %u region fds", k->n - 1, (int)pid, k->per_keeper);
        return (int)(k->n - 1);
}

enum keeper_state {
        KEEPER_RUNS,
        KEEPER_STOPPED,
        KEEPER_EXITED,
};

/*
 * Is the keeper stopped (SIGSTOP, SIGTSTP...) or gone? Asked of the kernel
 * with WNOWAIT, so nothing is reaped (keeper_child_reap() does that) and a
 * stop report is not consumed (a SIGCONT clears it). A keeper traced by a
 * debugger is not seen as stopped (its stops go to the tracer): the round
 * trip then waits its full timeout.
 * Return: what the keeper is; KEEPER_RUNS also when the kernel will not say.
 */
static enum keeper_state keeper_child_state(const struct keeper_child *c)
{
        const int flags = WSTOPPED | WEXITED | WNOHANG | WNOWAIT;
        siginfo_t info;
        int r = -1;

        if (c->pid <= 0)
                return KEEPER_RUNS;
        memset(&info, 0, sizeof(info));
        if (c->pidfd >= 0)
                r = waitid(P_PIDFD, (id_t)c->pidfd, &info, flags);
        if (r < 0) /* no pidfd, or a kernel before 5.4: the pid of our unreaped child is ours */
                r = waitid(P_PID, (id_t)c->pid, &info, flags);
        if (r < 0 || info.si_pid == 0)
                return KEEPER_RUNS; /* running (or not ours to ask: the receive timeout decides) */
        return info.si_code == CLD_STOPPED ? KEEPER_STOPPED : KEEPER_EXITED;
}

/*
 * A round trip found keeper @c stopped (at @now): count it, and say whether to
 * log it. A keeper stopped again before each request (by someone with the
 * daemon's uid, a tool that throttles processes with SIGSTOP/SIGCONT) would
 * otherwise log a line per round trip, up to about 100 a second (each costs a
 * 10 ms slice): lines at the 1st, 2nd, 4th, 8th... of its round trips found
 * stopped (each says how many), and at the first after a minute without one.
 * Return: whether to log.
 */
static bool keeper_stop_warn(struct keeper_child *c, const struct timespec *now)
{
        unsigned long n = ++c->stops_found;

        if ((n & (n - 1)) != 0 && now->tv_sec - c->stop_warned.tv_sec < 60)
                return false;
        c->stop_warned = *now;
        return true;
}

/*
 * Receive keeper @index's reply, waiting up to KEEPER_TIMEOUT_SEC in slices:
 * the socket's receive timeout is KEEPER_SLICE_MS (keepers_spawn()), and each
 * slice that ends without the reply asks what the keeper is doing. One that
 * exited is given up at once. One that is stopped (SIGSTOP, SIGTSTP: by hand,
 * a tool, a job control sweep) would never answer and its regions would be
 * lost: it is continued (SIGCONT), and waited for again; at most one warning
 * a round trip, however many slices find it stopped (keeper_stop_warn() thins
 * a burst of them). A running one, however
 * slow (a loaded machine), is waited for. Stopped or running, the wait ends
 * KEEPER_TIMEOUT_SEC after the first slice. A reply that comes within the
 * first slice (the normal case) costs the one recvmsg() it always did: no
 * poll() before it, no waitid(), no clock.
 * *@whyp says why a keeper was given up.
 * Return: 1 with *m (and *fdp, -1 if none); 0 at EOF; negative errno (-EIO
 * with *@whyp set: given up).
 */
static int keeper_recv_reply(struct keeper_child *c, int index, struct keeper_msg *m, int *fdp,
                             const char **whyp)
{
        struct timespec now, end;
        bool timing = false;
        unsigned stops = 0; /* slices that found it stopped */

        for (int tries = 0;;) {
                int r = transport_recv_fd(c->sock, m, sizeof(*m), fdp);

                if (r == -EAGAIN) { /* a slice without the reply */
                        enum keeper_state state = keeper_child_state(c);

                        if (state == KEEPER_EXITED) {
                                *whyp = "it exited";
                                return -EIO;
                        }
                        clock_gettime(CLOCK_MONOTONIC, &now);
                        if (!timing) {
                                end = now; /* the clock starts at the first slice: nothing on the normal path */
                                end.tv_sec += KEEPER_TIMEOUT_SEC;
                                timing = true;
                        } else if (now.tv_sec > end.tv_sec ||
                                   (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec)) {
                                if (state == KEEPER_STOPPED)
                                        *whyp = stops ? KEEPER_NO_REPLY ": it was stopped again and again, "
                                                        "and continued each time"
                                                      : KEEPER_NO_REPLY ", and it is stopped";
                                else
                                        *whyp = stops ? KEEPER_NO_REPLY " (it was stopped, and continued)"
                                                      : KEEPER_NO_REPLY " (it runs, but does not answer)";
                                return -EIO;
                        }
                        if (state == KEEPER_STOPPED) {
                                /* the stop report goes with the SIGCONT: the next slice sees a new stop only */
                                int s = keeper_child_signal(c, SIGCONT);

                                if (!stops++ && keeper_stop_warn(c, &now)) {
                                        if (s < 0)
                                                log_warning("fd keeper %d (pid %d) was found stopped, and could not "
                                                            "be continued (%s); still waiting for its reply (%lu "
                                                            "round trips found it stopped)",
                                                            index, (int)c->pid, strerror(-s), c->stops_found);
                                        else
                                                log_warning("fd keeper %d (pid %d) was found stopped, and was "
                                                            "continued (SIGCONT); do not stop a keeper (%lu round "
                                                            "trips found it stopped)",
                                                            index, (int)c->pid, c->stops_found);
                                }
                        }
                        continue;
                }
                if (!keeper_transient(r) || tries++ == KEEPER_RETRIES)
                        return r;
                usleep(1000);
        }
}

/*
 * One round trip; @fd is sent (not consumed) when >= 0; *fdp receives a reply
 * fd. A transient failure to send fails only this request; once the request
 * is sent its reply must be read, or the stream is out of step and the keeper
 * is given up (its fds are then lost: logged loudly): at once if the keeper
 * exited, else after KEEPER_TIMEOUT_SEC without a reply (a stopped keeper is
 * continued meanwhile: keeper_recv_reply()).
 * @retries: of a send that fails on a transient error, 1 ms apart
 * (KEEPER_RETRIES; 0 when the pending DROPs' sends just failed so).
 */
static int keepers_call_once(struct keepers *k, int index, uint32_t op, uint64_t id, int fd, int *fdp,
                             int retries)
{
        struct keeper_child *c;
        struct keeper_msg m = { .op = op, .id = id };
        const char *why = NULL;
        int r, reply_fd = -1;

        if (index < 0 || (size_t)index >= k->n || k->v[index].sock < 0)
                return -EIO;
        c = &k->v[index];
        for (int tries = 0;; tries++) {
                r = keeper_send(c->sock, &m, fd);
                if (r >= 0 || !keeper_transient(r) || tries >= retries)
                        break;
                usleep(1000);
        }
        if (r < 0 && keeper_transient(r))
                return r; /* nothing was sent: the keeper is fine */
        if (r >= 0)
                r = keeper_recv_reply(c, index, &m, &reply_fd, &why);
        if (r > 0 && (m.op != op || m.id != id)) {
                if (reply_fd >= 0)
                        close(reply_fd);
                r = -EBADMSG;
        }
        if (r <= 0) {
                log_error("fd keeper %d (pid %d) failed: %s; the region fds it held are lost", index, (int)c->pid,
                          why ? why : r == 0 ? "it exited" : strerror(-r));
                keeper_child_close(k, c, false);
                return -EIO;
        }
        if (fdp)
                *fdp = reply_fd;
        else if (reply_fd >= 0)
                close(reply_fd);
        return m.status;
}

/*
 * Send every keeper's pending DROPs (keepers_drop() after a transient error).
 * At the first that still cannot be sent, stop: it and the rest stay pending,
 * with their slots (each try costs KEEPER_RETRIES sleeps; the next request,
 * or the daemon's timer through keepers_send_pending(), tries again).
 * Return: 0 (none pending now); the transient error that left some pending.
 */
static int keepers_send_drops(struct keepers *k)
{
        for (size_t i = 0; i < k->n && k->drops_pending; i++) {
                struct keeper_child *c = &k->v[i];

                while (c->ndrops) {
                        int r = keepers_call_once(k, (int)i, KEEPER_DROP, c->drops[c->ndrops - 1], -1, NULL,
                                                  KEEPER_RETRIES);

                        if (r < 0 && keeper_transient(r))
                                return r; /* nothing was sent: later */
                        if (!c->ndrops)
                                break; /* given up (-EIO): it closed all it held */
                        c->ndrops--;
                        k->drops_pending--;
                        k->drops_sent++;
                        keepers_drops_lost_end(k); /* a DROP sent: the burst of lost ones is over */
                        if (r >= 0 && c->held)
                                c->held--;
                }
                free(c->drops); /* none left (or given up: NULL already) */
                c->drops = NULL;
                c->drops_cap = 0;
        }
        keepers_drops_settled(k);
        return 0;
}

int keepers_send_pending(struct keepers *k)
{
        return k->drops_pending ? keepers_send_drops(k) : 0;
}

/*
 * keepers_call_once(), after the pending DROPs. If their sends just failed
 * on a transient error (KEEPER_RETRIES + 1 tries, 1 ms apart), this
 * request's send is tried once, without sleeps of its own: a PARK or FETCH
 * cannot wait for later as a DROP does, but under a lasting shortage it paid
 * a second round of sleeps (about 16 ms on the event loop where one try
 * costs 8) to learn what the DROPs' try had just told.
 */
static int keepers_call(struct keepers *k, int index, uint32_t op, uint64_t id, int fd, int *fdp)
{
        int r = k->drops_pending ? keepers_send_drops(k) : 0;

        return keepers_call_once(k, index, op, id, fd, fdp, r < 0 ? 0 : KEEPER_RETRIES);
}

int keepers_park_with_fd(struct keepers *k, uint64_t id, int fd, int *remote_fdp)
{
        int index = -1, r = 0;

        /* a DROP pending holds a slot: send it first, the slot may be the one this takes */
        if (k->drops_pending)
                r = keepers_send_drops(k);
        for (size_t i = 0; i < k->n; i++) {
                if (k->v[i].sock >= 0 && k->v[i].held < k->per_keeper) {
                        index = (int)i;
                        break;
                }
        }
        if (index < 0) {
                index = keepers_spawn(k);
                if (index < 0)
                        return index;
        }
        /* their sends just failed (transient): one try, as in keepers_call() */
        r = keepers_call_once(k, index, KEEPER_PARK, id, fd, NULL, r < 0 ? 0 : KEEPER_RETRIES);
        if (r < 0)
                return r;
        k->v[index].held++;
        if (remote_fdp)
                *remote_fdp = r;
        return index;
}

int keepers_copy(struct keepers *k, int index, int remote_fd, int *fdp)
{
        int fd;

        if (index < 0 || (size_t)index >= k->n || k->v[index].sock < 0 || remote_fd < 0)
                return -EIO;
        if (k->v[index].pidfd < 0 || keepers_no_getfd)
                return -EOPNOTSUPP;
        /*
         * pidfd_getfd() copies the keeper's fd in one syscall (the keeper is our
         * child: ptrace access, even with Yama's scope 1); a seccomp filter or an
         * old kernel refusing it leaves keepers_open()'s /proc/PID/fd/N open.
         */
        fd = (int)syscall(SYS_pidfd_getfd, k->v[index].pidfd, remote_fd, 0);
        if (fd < 0) {
                if (errno == ENOSYS || errno == EPERM || errno == EACCES) {
                        keepers_no_getfd = true;
                        return -EOPNOTSUPP;
                }
                return -errno;
        }
        *fdp = fd; /* close-on-exec: pidfd_getfd sets it */
        return 0;
}

int keepers_open(struct keepers *k, int index, int remote_fd, uint64_t dev, uint64_t ino, int *fdp,
                 struct stat *stp)
{
        char path[64];
        struct stat st;
        int fd;

        if (index < 0 || (size_t)index >= k->n || k->v[index].sock < 0 || remote_fd < 0)
                return -EIO;
        if (keepers_copy(k, index, remote_fd, &fd) == 0) {
                if (fstat(fd, &st) < 0 || (uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino) {
                        close(fd);
                        return -ESTALE;
                }
                if (stp)
                        *stp = st;
                *fdp = fd;
                return 0;
        }
        snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)k->v[index].pid, remote_fd);
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0 || (uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino) {
                close(fd);
                return -ESTALE;
        }
        fcntl(fd, F_SETFL, 0); /* O_NONBLOCK was only for the open of an fd not yet checked */
        if (stp)
                *stp = st;
        *fdp = fd;
        return 0;
}

int keepers_fetch(struct keepers *k, int index, uint64_t id, int *fdp)
{
        int fd = -1, r;

        r = keepers_call(k, index, KEEPER_FETCH, id, -1, &fd);
        if (r < 0) {
                if (fd >= 0)
                        close(fd);
                return r;
        }
        if (fd < 0)
                return -EIO;
        *fdp = fd;
        return 0;
}

/*
 * A DROP that a transient error kept from being sent: send it later
 * (keepers_send_drops()). The caller forgets the region now (regtab_remove()
 * cannot fail); until then the keeper holds the fd and its slot stays used.
 * Return: 0; -ENOMEM (not even that: the fd stays in the keeper until it exits).
 */
static int keepers_drop_later(struct keepers *k, int index, uint64_t id, int error)
{
        struct keeper_child *c = &k->v[index];

        if (c->ndrops == c->drops_cap) {
                size_t cap = c->drops_cap ? c->drops_cap * 2 : 8;
                uint64_t *v = realloc(c->drops, cap * sizeof(*v));

                if (!v) {
                        /* one error for a burst (a mass deletion under memory shortage), not one per DROP */
                        if (!k->drops_lost++)
                                log_error("fd keeper %d (pid %d): cannot send the DROP of region %llu (%s), nor keep "
                                          "it for later: its fd stays there until the keeper exits (the same for the "
                                          "DROPs after it: one line when a DROP is sent or kept again)",
                                          index, (int)c->pid, (unsigned long long)id, strerror(-error));
                        return -ENOMEM;
                }
                c->drops = v;
                c->drops_cap = cap;
        }
        c->drops[c->ndrops++] = id;
        /* one warning while any are pending, not one per DROP: keepers_drops_settled() logs the end */
        k->drops_pending++;
        if (!k->drops_kept++)
                log_warning("fd keeper %d (pid %d): cannot send the DROP of region %llu now (%s): it and the DROPs "
                            "after it are kept, and sent at the next request to a keeper or the next status tick "
                            "(one line when all are)", index, (int)c->pid, (unsigned long long)id, strerror(-error));
        return 0;
}

int keepers_drop(struct keepers *k, int index, uint64_t id)
{
        /*
         * DROPs still pending after a transient failure (its KEEPER_RETRIES
         * sleeps just paid): this one waits behind them, without sleeps of its
         * own (before, a DELETE then cost twice the sleeps of one before the
         * DROPs were kept, and a hang-up that deletes many leased regions
         * paid that for each).
         */
        int r = k->drops_pending ? keepers_send_drops(k) : 0;

        /* (the keeper may have been given up meanwhile: then it holds nothing) */
        if (index < 0 || (size_t)index >= k->n || k->v[index].sock < 0)
                return -EIO;
        if (r == 0)
                r = keepers_call_once(k, index, KEEPER_DROP, id, -1, NULL, KEEPER_RETRIES);
        /* nothing was sent (keepers_call_once() gives up a keeper on any other failure): later */
        if (r < 0 && keeper_transient(r))
                r = keepers_drop_later(k, index, id, r);
        else if (r >= 0 && k->v[index].held)
                k->v[index].held--;
        if (r != -ENOMEM)
                keepers_drops_lost_end(k); /* sent or kept (or refused: memory is not what failed) */
        return r;
}

size_t keepers_count(const struct keepers *k)
{
        return k->n;
}

pid_t keepers_pid(const struct keepers *k, size_t index)
{
        return index < k->n ? k->v[index].pid : -1;
}
