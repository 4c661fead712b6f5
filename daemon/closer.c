/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* closer: closes fds that may take long to close, on threads of a process of its own, counted per uid. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "closer.h"
#include "log.h"
#include "transport.h"

struct closer_item {
        int fd;
        uint32_t uid;
};

struct closer_owner {
        uint32_t uid;
        unsigned pending;
};

static pthread_mutex_t closer_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t closer_cond = PTHREAD_COND_INITIALIZER;
static pthread_t closer_threads[CLOSER_THREADS];
static unsigned closer_nthreads;
static bool closer_stopping;
/* FIFO of fds to close; grows (each entry is an open fd of ours, so RLIMIT_NOFILE bounds it) */
static struct closer_item *closer_queue;
static size_t closer_cap, closer_head, closer_count;
/* uids with fds queued or being closed (few: one per user that sent fds the daemon refused) */
static struct closer_owner *closer_owners;
static size_t closer_nowners, closer_owners_cap;
/*
 * The sum of the owners' pending counts, changed with the lock held but read
 * without it by closer_pending(): when it is 0, as it nearly always is, no
 * uid has anything pending and the event loop takes no lock on its hot path
 * (closer_pending() runs several times per request). A value read as it
 * changes is as good as one read just before or after with the lock: the
 * event loop only ever adds to it itself, so it never reads 0 while one of
 * its own fds is still queued.
 */
static atomic_uint closer_total;

/*
 * The daemon's closer is a process (closer_spawn()), so that the daemon
 * itself runs one thread: the kernel then looks fds up without taking a
 * reference (fdget() of a process whose fd table no thread shares), and
 * glibc's syscall wrappers skip their cancellation bookkeeping. A close is
 * handed over as one record on a SOCK_SEQPACKET socketpair, with the fd;
 * the fd in flight keeps the file open, so the daemon's own close() of it
 * right after the send is never the last one and never blocks. The process
 * answers each close, once done, with a record of the uid, and the event
 * loop reads those (closer_drain()) to count the uid's pending closes down.
 * Records that do not fit in the socket wait in the queue above, fds still
 * open in the daemon, until the process has taken some (its answers come).
 */
struct closer_record {
        uint32_t uid;
};

static int closer_chan = -1;     /* the daemon: its end of the channel; -1 when the closes are not sent */
static pid_t closer_child = -1;  /* the daemon: the closer process */
static int closer_answer = -1;   /* the closer process: its end, to answer each close done */

/* Return: @uid's entry, or NULL. Called with the lock held. */
static struct closer_owner *closer_owner_find(uint32_t uid)
{
        for (size_t i = 0; i < closer_nowners; i++)
                if (closer_owners[i].uid == uid)
                        return &closer_owners[i];
        return NULL;
}

/* Count one more pending close for @uid. Return: 0 or -ENOMEM. Called with the lock held. */
static int closer_owner_add(uint32_t uid)
{
        struct closer_owner *o = closer_owner_find(uid);

        if (!o) {
                if (closer_nowners == closer_owners_cap) {
                        size_t cap = closer_owners_cap ? 2 * closer_owners_cap : 16;
                        struct closer_owner *grown = realloc(closer_owners, cap * sizeof(*grown));

                        if (!grown)
                                return -ENOMEM;
                        closer_owners = grown;
                        closer_owners_cap = cap;
                }
                o = &closer_owners[closer_nowners++];
                *o = (struct closer_owner){ .uid = uid };
        }
        o->pending++;
        atomic_fetch_add_explicit(&closer_total, 1, memory_order_relaxed);
        return 0;
}

/* Called with the lock held. */
static void closer_owner_done(uint32_t uid)
{
        struct closer_owner *o = closer_owner_find(uid);

        if (!o)
                return;
        atomic_fetch_sub_explicit(&closer_total, 1, memory_order_relaxed);
        if (--o->pending == 0)
                *o = closer_owners[--closer_nowners];
}

/* Append to the queue. Return: 0 or -ENOMEM. Called with the lock held. */
static int closer_push(int fd, uint32_t uid)
{
        if (closer_count == closer_cap) {
                size_t cap = closer_cap ? 2 * closer_cap : 1024;
                struct closer_item *grown = malloc(cap * sizeof(*grown));

                if (!grown)
                        return -ENOMEM;
                for (size_t i = 0; i < closer_count; i++)
                        grown[i] = closer_queue[(closer_head + i) % closer_cap];
                free(closer_queue);
                closer_queue = grown;
                closer_cap = cap;
                closer_head = 0;
        }
        if (closer_owner_add(uid) < 0)
                return -ENOMEM;
        closer_queue[(closer_head + closer_count) % closer_cap] = (struct closer_item){ .fd = fd, .uid = uid };
        closer_count++;
        return 0;
}

/* Return: true if @err (from the channel) says that the other end is gone. */
static bool closer_channel_gone(int err)
{
        return err == EPIPE || err == ECONNRESET || err == ENOTCONN || err == EBADF || err == ENOTSOCK;
}

/* In the closer process: tell the daemon that a close of @uid's is done. */
static void closer_answer_done(uint32_t uid)
{
        struct closer_record rec = { .uid = uid };

        if (closer_answer < 0)
                return;
        /* blocks while the daemon's end is full: the daemon reads answers on its loop */
        while (send(closer_answer, &rec, sizeof(rec), MSG_NOSIGNAL) < 0) {
                if (closer_channel_gone(errno))
                        return;
                if (errno != EINTR)
                        usleep(1000); /* a lost answer would leave the close counted for good: again */
        }
}

static void *closer_main(void *arg)
{
        (void)arg;
        pthread_mutex_lock(&closer_lock);
        for (;;) {
                struct closer_item it;

                while (closer_count == 0 && !closer_stopping)
                        pthread_cond_wait(&closer_cond, &closer_lock);
                if (closer_count == 0)
                        break; /* stopping, and all is drained */
                it = closer_queue[closer_head];
                closer_head = (closer_head + 1) % closer_cap;
                closer_count--;
                pthread_mutex_unlock(&closer_lock);
                close(it.fd); /* may block (FUSE, lingering sockets): only this thread waits */
                closer_answer_done(it.uid);
                pthread_mutex_lock(&closer_lock);
                closer_owner_done(it.uid);
        }
        pthread_mutex_unlock(&closer_lock);
        return NULL;
}

int closer_start(void)
{
        sigset_t all, old;
        int r = 0;

        if (closer_nthreads)
                return 0;
        /* threads here: a process forked from the daemon (a keeper) does not send its closes on */
        closer_chan = -1;
        closer_child = -1;
        closer_stopping = false;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old); /* signals stay with the event loop's thread */
        for (unsigned i = 0; i < CLOSER_THREADS; i++) {
                r = -pthread_create(&closer_threads[i], NULL, closer_main, NULL);
                if (r < 0)
                        break;
                closer_nthreads++;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (closer_nthreads == 0)
                return r;
        transport_set_fd_closer(closer_close);
        return 0;
}

/* The daemon: stop sending closes; close what was queued here. */
static void closer_lost_quietly(void)
{
        close(closer_chan);
        closer_chan = -1;
        /* what was queued was never sent; what was sent is closed by the kernel with the process's socket */
        pthread_mutex_lock(&closer_lock);
        while (closer_count) {
                close(closer_queue[closer_head].fd);
                closer_head = (closer_head + 1) % closer_cap;
                closer_count--;
        }
        closer_nowners = 0;
        atomic_store_explicit(&closer_total, 0, memory_order_relaxed);
        pthread_mutex_unlock(&closer_lock);
}

/* The daemon: the closer process is gone (or its channel broke): close inline from now on. */
static void closer_lost(const char *why)
{
        log_error("the closer process is gone (%s): fds are closed on the event loop from now on", why);
        closer_lost_quietly();
        if (closer_child > 0 && waitpid(closer_child, NULL, WNOHANG) == closer_child)
                closer_child = -1;
}

/*
 * The daemon (which has no other thread: the queue is its own here): send
 * what is queued, until the channel is full. Return: 0, or -EPIPE if the
 * process is gone.
 */
static int closer_flush(void)
{
        while (closer_chan >= 0 && closer_count) {
                struct closer_item it = closer_queue[closer_head];
                struct closer_record rec = { .uid = it.uid };
                int r = transport_send_fd(closer_chan, &rec, sizeof(rec), it.fd);

                if (r == -EAGAIN || r == -ETOOMANYREFS)
                        return 0; /* its records (or fds) in flight are many: again at its next answer */
                if (r < 0 && closer_channel_gone(-r)) {
                        closer_lost(strerror(-r));
                        return -EPIPE;
                }
                if (r < 0) {
                        /* ENOMEM and the like; nothing may be in flight to bring an answer: close this one here */
                        close(it.fd);
                        pthread_mutex_lock(&closer_lock);
                        closer_owner_done(it.uid);
                        pthread_mutex_unlock(&closer_lock);
                } else {
                        close(it.fd); /* the fd in flight holds the file: not the last close */
                }
                closer_head = (closer_head + 1) % closer_cap;
                closer_count--;
        }
        return closer_chan >= 0 ? 0 : -EPIPE;
}

int closer_drain(void)
{
        struct closer_record rec;
        ssize_t n;

        if (closer_chan < 0)
                return -EPIPE;
        for (;;) {
                n = recv(closer_chan, &rec, sizeof(rec), MSG_DONTWAIT);
                if (n == (ssize_t)sizeof(rec)) {
                        pthread_mutex_lock(&closer_lock);
                        closer_owner_done(rec.uid);
                        pthread_mutex_unlock(&closer_lock);
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n == 0 || (n < 0 && closer_channel_gone(errno))) {
                        closer_lost(n == 0 ? "end of its channel" : strerror(errno));
                        return -EPIPE;
                }
                break; /* EAGAIN; or ENOMEM and the like: again when the loop sees it readable again */
        }
        return closer_flush();
}

int closer_fd(void)
{
        return closer_chan;
}

/* The closer process: take closes from the daemon until it closes the channel. */
static _Noreturn void closer_process_main(int sock)
{
        static const int ignored[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2 };
        struct closer_record rec;
        int fd, r;

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* a service manager's SIGTERM to the whole unit: the daemon closes the channel when it is done */
        for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
                signal(ignored[i], SIG_IGN);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGPIPE, SIG_IGN);
        prctl(PR_SET_NAME, "iomemd-closer");
        /* hold nothing of the daemon's (listening socket, fd store): only the channel, at fd 3 */
        if (sock != 3) {
                if (dup3(sock, 3, O_CLOEXEC) < 0)
                        _exit(1);
                sock = 3;
        }
        if (close_range(4, ~0U, 0) < 0) {
                struct rlimit cur;
                int max = getrlimit(RLIMIT_NOFILE, &cur) == 0 && cur.rlim_cur != RLIM_INFINITY ? (int)cur.rlim_cur
                                                                                               : 1 << 20;

                for (fd = 4; fd < max; fd++)
                        close(fd);
        }
        closer_answer = sock;
        if (closer_start() < 0)
                log_warning("closer process: no threads; closing one fd at a time");
        for (;;) {
                r = transport_recv_fd(sock, &rec, sizeof(rec), &fd);
                if (r == 0 || (r < 0 && closer_channel_gone(-r)))
                        break; /* the daemon is done (or gone) */
                if (r < 0) {
                        if (r != -EINTR)
                                usleep(1000); /* ENOMEM and the like: again */
                        continue;
                }
                if (fd < 0)
                        continue;
                if (closer_nthreads) {
                        closer_close(fd, rec.uid);
                } else {
                        close(fd);
                        closer_answer_done(rec.uid);
                }
        }
        closer_stop(); /* the closes already taken, then the threads */
        _exit(0);
}

int closer_spawn(void)
{
        int sv[2], r;
        pid_t pid;

        if (closer_chan >= 0)
                return 0;
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                r = -errno;
                close(sv[0]);
                close(sv[1]);
                return r;
        }
        if (pid == 0) {
                close(sv[0]);
                closer_process_main(sv[1]);
        }
        close(sv[1]);
        if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0) {
                r = -errno;
                close(sv[0]); /* the process sees the end of its channel and leaves */
                waitpid(pid, NULL, 0);
                return r;
        }
        closer_chan = sv[0];
        closer_child = pid;
        transport_set_fd_closer(closer_close);
        log_debug("closer process started (pid %d)", (int)pid);
        return 0;
}

void closer_stop(void)
{
        if (closer_chan >= 0 || closer_child > 0) {
                transport_set_fd_closer(NULL);
                /* not sent yet: close here (it may block, as joining the threads did); then its closes end */
                if (closer_chan >= 0)
                        closer_lost_quietly();
                while (closer_child > 0 && waitpid(closer_child, NULL, 0) < 0 && errno == EINTR)
                        ;
                closer_child = -1;
                return;
        }
        if (!closer_nthreads)
                return;
        transport_set_fd_closer(NULL);
        pthread_mutex_lock(&closer_lock);
        closer_stopping = true;
        pthread_cond_broadcast(&closer_cond);
        pthread_mutex_unlock(&closer_lock);
        for (unsigned i = 0; i < closer_nthreads; i++)
                pthread_join(closer_threads[i], NULL);
        closer_nthreads = 0;
        free(closer_queue);
        free(closer_owners);
        closer_queue = NULL;
        closer_owners = NULL;
        closer_cap = closer_head = closer_count = 0;
        closer_nowners = closer_owners_cap = 0;
        atomic_store_explicit(&closer_total, 0, memory_order_relaxed); /* 0 already: every close returned */
}

void closer_close(int fd, uint32_t uid)
{
        int r;

        if (fd < 0)
                return;
        if (!closer_nthreads && closer_chan < 0) {
                close(fd);
                return;
        }
        pthread_mutex_lock(&closer_lock);
        r = closer_push(fd, uid);
        if (r == 0 && closer_nthreads)
                pthread_cond_signal(&closer_cond);
        pthread_mutex_unlock(&closer_lock);
        if (r == 0 && closer_chan >= 0) {
                closer_flush();
                return;
        }
        if (r < 0) {
                /* out of memory for one more queue entry: nothing else can be done with it */
                log_warning("closer: out of memory, closing an fd of uid %u inline", (unsigned)uid);
                close(fd);
        }
}

unsigned closer_pending(uint32_t uid)
{
        const struct closer_owner *o;
        unsigned n;

        if (atomic_load_explicit(&closer_total, memory_order_relaxed) == 0)
                return 0;
        pthread_mutex_lock(&closer_lock);
        o = closer_owner_find(uid);
        n = o ? o->pending : 0;
        pthread_mutex_unlock(&closer_lock);
        return n;
}
