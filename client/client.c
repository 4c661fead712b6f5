/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* client: the daemon half of libiomem (connect, HELLO, and one blocking request per call). */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "iomem.h"
#include "paths.h"
#include "proto.h"
#include "recycle.h"
#include "region-internal.h"
#include "transport.h"

#define CLIENT_REQUEST_MAX 1024 /* every request we send: fixed fields + one name */
#define CLIENT_MESSAGE_SIZE (PROTO_MESSAGE_MAX + 1)
#define CLIENT_REPLY_SPACE 64 /* a blocking caller's room for a small reply's payload (a region's info: 32 bytes) */
#define CLIENT_REGION_INFO_SIZE 32 /* the payload of an OPEN or CREATE reply (proto_region_info_decode() checks it) */

/* what an asynchronous request completes with */
enum client_async {
        CLIENT_SYNC = 0, /* a blocking caller waits for it */
        CLIENT_ASYNC_OPEN,
        CLIENT_ASYNC_OPENV,
        CLIENT_ASYNC_STAT,
        CLIENT_ASYNC_PING,
        CLIENT_HELLO, /* the held-back HELLO (@hello_entry, not in @pending): its reply is checked where it is read */
        CLIENT_DISCARD, /* a blocking call gave up waiting (iomem_client_set_interrupt_cb()): its reply is dropped */
};

/* A request sent and not yet completed. */
struct client_pending {
        struct client_pending *next; /* in @pending, or in @done once completed */
        struct client_pending **pprev; /* where it is linked from in @pending; NULL when not in it */
        struct client_pending *hnext;  /* its chain in @ptab (while in @pending and @ptab exists) */
        uint32_t id;
        uint16_t opcode;
        unsigned want_fds;
        int64_t deadline; /* CLOCK_MONOTONIC ms, -1 = none */
        bool done;
        int result; /* once done: 0 with @reply, or negative errno */
        uint64_t cache_gen; /* the client's cache_gen when it completed */
        struct transport_frame reply;
        /* where the reply goes if not @reply: a blocking caller's own frame (client_exchange()), written once */
        struct transport_frame *out;
        uint8_t *space; /* CLIENT_REPLY_SPACE bytes of the waiter's, for the reply's payload; NULL = malloc'd */
        enum client_async kind;
        void (*cb)(void);
        void *userdata;
        uint64_t cookie; /* PING */
        /*
         * Once client_break() completed it: how far its connection's output had gone then (c->t.out_pos), for a
         * blocking sender that sees it done only after another thread connected again (a new transport, whose
         * out_pos says nothing of this request): UINT64_MAX until then.
         */
        uint64_t broke_at;
};

struct iomem_client {
        int fd; /* the socket, owned; a new one after each reconnect */
        bool transport_ready; /* @t is set up (it is written before it is read: not zeroed at connect) */
        uint32_t next_id;
        int timeout_ms;
        int reconnect_ms;    /* 0 = never reconnect; -1 = no limit */
        unsigned reconnects; /* successful reconnects so far */
        /*
         * One window per call, however often the daemon goes away during
         * it: the deadline is set by the call's first reconnect and kept
         * while the call sends its request again (@same_call, set by
         * client_again() and between LIST pages).
         */
        int64_t reconnect_deadline; /* -1 = none */
        bool reconnect_deadline_set;
        bool same_call;
        /*
         * Once a reply may have been missed (timeout) or the stream is out of
         * sync, a later reply could be mistaken for the answer to a later
         * request: the connection is then unusable and every call fails.
         * @gone: it broke because the daemon closed it (EOF, reset): the
         * next call may connect again (iomem_client_set_reconnect()).
         */
        int broken;
        bool gone;
        /*
         * iomem_connect() holds HELLO back: it goes out with the first
         * request, in the same sendmsg() (docs/protocol.md, section 6), and
         * its reply is routed to @hello_p, which is not in @pending (one
         * entry, always there: client_dispatch() looks at it first, before
         * the table; it completes like any other). @hello_dropped: the
         * connection ended before any HELLO reply came and before any byte
         * of HELLO left (the daemon had closed it: its handshake timeout), so
         * nothing sent on it was applied: the call that finds this connects
         * once more and sends its request again. Once HELLO left, an end
         * without its reply is "outcome unknown" (-ECONNRESET): a daemon
         * that died after applying the requests read with HELLO also ends
         * the stream before replying.
         */
        bool hello_held;
        bool hello_dropped;
        /*
         * HELLO asks for FDS_IN_ORDER (docs/protocol.md, section 5): the
         * daemon may then send the HELLO reply and the first reply, fd and
         * all, in one sendmsg(). A daemon older than that flag refuses it
         * with -EINVAL (nothing applied): @no_fds_in_order, and connect again.
         */
        bool no_fds_in_order;
        unsigned ndeadlines; /* see @deadline_min (here, it fills padding: the struct's size is bounded below) */
        /*
         * The last error reply's detail, "" otherwise: CLIENT_MESSAGE_SIZE bytes allocated apart from the client
         * (which then stays small enough for malloc's per-thread cache: one block of 1.8 KiB took ~570
         * instructions to calloc), and only when a first detail comes (client_message_buffer()): a short-lived
         * connection that gets none allocates nothing for it. NULL until then; written under @lock, set once
         * (atomically: iomem_client_error_message() reads it without the lock) and freed with the client.
         */
        char *error_message;
        /* the EVENTS feature: events that arrived while waiting for replies, for iomem_next_event() */
        uint32_t hello_flags;
        struct client_event *evq_head, *evq_tail;
        unsigned nevents;
        bool overflow_pending;
        uint64_t dropped;
        /* its watches: the id the caller knows, the daemon's on this connection, made again after a reconnect */
        struct client_watch *watches;
        unsigned nwatches;
        uint32_t next_watch;
        /*
         * One implementation for blocking and asynchronous requests: every
         * request sent and not yet answered is in @pending (but the held-back
         * HELLO, @hello_p); whoever reads
         * the socket (one thread at a time: @reading) routes each reply to
         * its request by id and wakes the waiters (@cond). Blocking callers
         * wait for their own entry; asynchronous ones are moved to @done and
         * completed by iomem_client_process(). @lock (below, with @cond) guards everything here.
         */
        unsigned waiters; /* threads in client_cond_wait(): @cond is broadcast only if one is */
        bool reading;
        bool unread; /* iomem_client_process() left input on the socket (its reads are bounded) */
        bool disconnect_deferred; /* a callback of iomem_client_process() called iomem_disconnect(): see @dispatching */
        unsigned send_waiters; /* threads in client_send() polling without the lock, not as the reader */
        struct client_pending *pending;
        /*
         * @pending indexed by id (client_pending_find()), made once more than CLIENT_PENDING_SCAN requests are
         * outstanding (a short-lived connection allocates nothing for it): @ptab_mask + 1 chains (a power of
         * two), chosen by the id's low bits; ids are handed out in sequence, so outstanding ones spread evenly.
         * It grows (doubling) when @npending passes the number of chains, and stays until the client is freed.
         */
        struct client_pending **ptab;
        unsigned ptab_mask;
        unsigned npending;
        /*
         * No asynchronous request outstanding with a deadline (@ndeadlines of them) is due before this: a
         * lower bound (a completion leaves it), made exact again by client_deadline_next() once it passed, so
         * that iomem_client_process() and iomem_client_get_timeout() walk @pending only then, not at each call.
         */
        int64_t deadline_min;
        struct client_pending *done_head, *done_tail;
        iomem_event_cb event_cb;
        void *event_userdata;
        iomem_interrupt_cb interrupt_cb; /* iomem_client_set_interrupt_cb(); NULL = signals do not end a wait */
        void *interrupt_userdata;
        bool rewatching; /* client_rewatch() runs: part of a reconnect, which no interrupt ends */
        /*
         * The open cache (iomem_client_set_open_cache()): fds of regions
         * opened by name, dropped on any event naming them. @cache_gen
         * counts invalidations; an OPEN reply is cached only if none came
         * after it (@reply_cache_gen: the count when the last reply came).
         */
        bool cache_on;
        /*
         * iomem_client_process(), iomem_list() and iomem_metrics() calls (nested ones included) running callbacks: an
         * iomem_disconnect() from one of their callbacks sets @disconnect_deferred and the outermost frees the
         * client when it returns (it would otherwise go on with a freed client).
         */
        uint16_t dispatching;
        uint32_t cache_watch; /* the internal watch of "" (caller id), 0 = none */
        struct client_cache_entry *cache;
        unsigned ncache;
        uint64_t cache_gen, reply_cache_gen, cache_hits;
        struct client_pending *hello_p; /* &hello_entry once a held-back HELLO was sent on this connection */
        bool locked; /* @lock is held by the thread inside (client_lock() took it rather than skipping it) */
        unsigned forks; /* client_fork_mark() when it connected: iomem_disconnect() in a forked child wakes no reader */
        /*
         * From here on, fields are written before they are read: client_connect() zeroes only what comes before
         * (a cold connection's client is allocated, zeroed and freed each time).
         */
        pthread_mutex_t lock; /* set by client_connect() */
        pthread_cond_t cond;
        struct transport t; /* set up by client_open_socket() before any use (@transport_ready) */
        /* the daemon's address, set by client_connect(): sa.sun_path is the socket's path, NUL-terminated */
        struct sockaddr_un sa;
        uint8_t sa_len; /* what connect() is told (at most sizeof(sa)): the path, its NUL, nothing past them */
        struct client_pending hello_entry;   /* set by client_hello_prepare(), read through @hello_p */
        /* @t's first input buffer and fd batch: a short-lived connection's transport allocates nothing */
        struct transport_storage storage;
};

/*
 * A cold connection allocates and frees its client: within glibc's per-thread cache (blocks up to 1,032 bytes on
 * 64-bit) that costs ~100 instructions, outside it several hundred. Watch this when adding fields.
 */
_Static_assert(sizeof(struct iomem_client) <= 1032, "struct iomem_client outgrew malloc's per-thread cache");

/* a disconnected client's block, for the next connect (recycle.h: a cold connection's client costs no malloc/free) */
static void *client_spare;

__attribute__((destructor)) static void client_spare_drain(void)
{
        recycle_drain(&client_spare, sizeof(struct iomem_client));
}

#define CLIENT_CACHE_MAX 64 /* names kept; the oldest goes first */

struct client_cache_entry {
        char name[PROTO_NAME_MAX + 1];
        uint32_t open_flags; /* IOMEM_OPEN_* asked */
        int fd;              /* a duplicate, owned */
        uint64_t size, id;
        uint32_t region_flags;
        enum iomem_backend backend;
};

/* a call repeated this often after losing its connection each time gives up */
#define CLIENT_MAX_TRIES 8

static void client_events_clear(struct iomem_client *c);
static void client_cache_drop(struct iomem_client *c, const char *name);
static int client_cache_get(struct iomem_client *c, const char *name, uint32_t flags, struct iomem_region **regionp);
static void client_cache_put(struct iomem_client *c, const char *name, uint32_t flags, const struct iomem_region *r,
                             uint64_t gen);
static int client_rewatch(struct iomem_client *c);

/* the forks this process's libiomem has seen (see client_fork_mark() below) */
static unsigned client_forks;
static bool client_forks_unwatched; /* pthread_atfork() failed: client_fork_mark() is the pid */

/*
 * client_fork_copy() - whether @c is a forked child's copy of its parent's client (the fork count differs): any
 * call on it but iomem_disconnect() would share the socket, and the replies, with the parent, so it is refused with
 * -ECHILD. No system call: not told if pthread_atfork() failed (the pid would be needed; a copy then goes on as
 * before).
 */
static inline bool client_fork_copy(const struct iomem_client *c)
{
        return __builtin_expect(c->forks != __atomic_load_n(&client_forks, __ATOMIC_RELAXED), 0) &&
               !client_forks_unwatched;
}

/*
 * The clients whose callbacks this thread runs (iomem_client_process(), iomem_list(), iomem_metrics(); innermost
 * first), each entry on that call's stack. A forked child's copy of a client counts the calls of every thread of
 * the parent in @dispatching; of those, only the forking thread's come back in the child (its callback returns there), so a
 * disconnect of the copy is deferred only if this thread runs one of them (client_dispatching_here()).
 */
struct client_dispatch {
        const struct iomem_client *c;
        struct client_dispatch *up;
};
/* initial-exec: one %fs-relative load, not a __tls_get_addr() call per process() (8 bytes of static TLS, as a
 * dlopen()ed extension module may take) */
static _Thread_local struct client_dispatch *client_dispatch_top __attribute__((tls_model("initial-exec")));

static bool client_dispatching_here(const struct iomem_client *c)
{
        for (const struct client_dispatch *d = client_dispatch_top; d; d = d->up)
                if (d->c == c)
                        return true;
        return false;
}

/*
 * client_lock() - take the client's lock; in a process that runs one thread, nothing to take (glibc's
 * __libc_single_threaded, as libstdc++ skips its atomics): no other thread can want it then, and none can be made
 * while this one is inside, since no code of the caller's runs under the lock (callbacks are called with it let
 * go, after client_unlock(), and the next client_lock() takes it for real if they made threads). @locked says
 * whether it was taken, for client_unlock(); it is read and written only by the thread holding the lock, or by the
 * only thread there is.
 */
static inline void client_lock(struct iomem_client *c)
{
        if (__libc_single_threaded)
                return;
        pthread_mutex_lock(&c->lock);
        c->locked = true;
}

/* Let go of what client_lock() took, if anything. */
static inline void client_unlock(struct iomem_client *c)
{
        if (!c->locked)
                return;
        c->locked = false;
        pthread_mutex_unlock(&c->lock);
}

/* client_dispatch_enter_locked() - callbacks of @c's user are about to run in this call (@here on its stack). */
static inline void client_dispatch_enter_locked(struct iomem_client *c, struct client_dispatch *here)
{
        c->dispatching++;
        here->c = c;
        here->up = client_dispatch_top;
        client_dispatch_top = here;
}

/* The slow path of client_dispatch_leave_locked(): a callback disconnected @c. Return: -ESHUTDOWN. */
static __attribute__((noinline, cold)) int client_dispatch_leave_deferred(struct iomem_client *c)
{
        /* the disconnect a callback asked for: by the outermost call, once no callback runs any more */
        bool last = --c->dispatching == 0;

        client_unlock(c);
        if (last)
                iomem_disconnect(c);
        return -ESHUTDOWN;
}

/*
 * client_dispatch_leave_locked() - the callbacks of this call are done; unlocks @c. If one disconnected it, the
 * outermost such call frees it. Return: @r; -ESHUTDOWN if a callback disconnected @c (then gone if outermost).
 */
static inline int client_dispatch_leave_locked(struct iomem_client *c, struct client_dispatch *here, int r)
{
        client_dispatch_top = here->up;
        if (__builtin_expect(c->disconnect_deferred, 0))
                return client_dispatch_leave_deferred(c);
        c->dispatching--;
        client_unlock(c);
        return r;
}

/* Copy @src (NULL = "") into @dst of @size > 0 bytes, cut to fit, NUL-terminated: snprintf("%s") without its cost. */
static void client_copy(char *dst, size_t size, const char *src)
{
        size_t n = src ? strnlen(src, size - 1) : 0;

        memcpy(dst, src ? src : "", n);
        dst[n] = '\0';
}

IOMEM_EXPORT int iomem_socket_path(char *buf, size_t size)
{
        if (!buf && size > 0)
                return -EINVAL;
        return paths_client_socket(buf, size, NULL);
}

/* Clear the last error detail. Called with the lock held. */
static void client_message_clear(struct iomem_client *c)
{
        if (c->error_message)
                c->error_message[0] = '\0';
}

/*
 * client_message_buffer() - the error detail's buffer (CLIENT_MESSAGE_SIZE bytes), allocated at its first use.
 * Called with the lock held. Return: the buffer; NULL if it cannot be allocated (the detail is then lost: it is for
 * people, the call's result does not depend on it).
 */
static char *client_message_buffer(struct iomem_client *c)
{
        char *m = c->error_message;

        if (!m) {
                m = malloc(CLIENT_MESSAGE_SIZE);
                if (!m)
                        return NULL;
                m[0] = '\0';
                __atomic_store_n(&c->error_message, m, __ATOMIC_RELEASE); /* read without the lock */
        }
        return m;
}

/* Return: CLOCK_MONOTONIC in milliseconds. */
static int64_t client_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Return: the milliseconds left until @deadline (-1 = none), at least 0. */
static int client_left_ms(int64_t deadline)
{
        int64_t left;

        if (deadline < 0)
                return -1;
        left = deadline - client_now_ms();
        return left < 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/* Return: the timeout for one reply when the daemon may itself wait @extra_ms (-1 = forever). */
static int client_timeout(const struct iomem_client *c, int extra_ms)
{
        long long sum;

        if (c->timeout_ms < 0 || extra_ms < 0)
                return -1;
        sum = (long long)c->timeout_ms + extra_ms;
        return sum > INT_MAX ? INT_MAX : (int)sum;
}

/* The connection ended from the daemon's side (it exited, crashed or closed us). */
static bool client_error_is_gone(int r)
{
        return r == -EPIPE || r == -ECONNRESET;
}

/* ---- requests and replies: one implementation for blocking and asynchronous calls ---- */

/*
 * Wait on the client's condition variable (until the CLOCK_MONOTONIC time *@ts, if not NULL), counted in
 * c->waiters. Called with the lock held, as every client_wake() is: a waiter counted is woken by any later wake-up.
 * Return: as pthread_cond_wait()/pthread_cond_clockwait().
 */
static int client_cond_wait(struct iomem_client *c, const struct timespec *ts)
{
        int r;

        c->waiters++;
        r = ts ? pthread_cond_clockwait(&c->cond, &c->lock, CLOCK_MONOTONIC, ts) : pthread_cond_wait(&c->cond, &c->lock);
        c->locked = true; /* taken again (another thread's client_unlock() cleared it meanwhile) */
        c->waiters--;
        return r;
}

/* Wake every thread in client_cond_wait(), if any (a broadcast with none costs a few dozen instructions). */
static void client_wake(struct iomem_client *c)
{
        if (c->waiters)
                pthread_cond_broadcast(&c->cond);
}

static int client_event_stash(struct iomem_client *c, const struct transport_frame *f);

/*
 * client_pending_init() - set up @p for a request of @kind: what is read before it completes. Its reply is written
 * when it completes with one (client_pending_complete()) and read only then: not zeroed here (64 bytes, twice per
 * cold connection); @cb, @userdata and @cookie are the asynchronous caller's to set.
 */
static void client_pending_init(struct client_pending *p, enum client_async kind, uint16_t opcode, unsigned want_fds,
                                uint8_t *space)
{
        p->next = NULL;
        p->pprev = NULL;
        p->id = 0;
        p->opcode = opcode;
        p->want_fds = want_fds;
        p->deadline = -1;
        p->done = false;
        p->result = 0;
        p->cache_gen = 0;
        p->out = NULL;
        p->space = space;
        p->kind = kind;
        p->broke_at = UINT64_MAX;
}

/*
 * client_pending_new() - an entry of its own for a request of @kind (an asynchronous one's, with @cb and @userdata;
 * or CLIENT_DISCARD's, whose reply nobody waits for), set up by client_pending_init(), its reply's fds -1 (it is
 * deinit'd whatever came). Return: the entry (the caller's until it is linked); NULL (-ENOMEM).
 */
static struct client_pending *client_pending_new(enum client_async kind, uint16_t opcode, unsigned want_fds,
                                                 void (*cb)(void), void *userdata)
{
        struct client_pending *p = calloc(1, sizeof(*p));

        if (!p)
                return NULL;
        client_pending_init(p, kind, opcode, want_fds, NULL);
        p->cb = cb;
        p->userdata = userdata;
        for (unsigned i = 0; i < PROTO_MAX_FDS; i++)
                p->reply.fds[i] = -1;
        return p;
}

/* outstanding requests found by walking @pending; past this many, through @ptab */
#define CLIENT_PENDING_SCAN 8u
#define CLIENT_PTAB_MIN 64u /* @ptab's first number of chains */

static inline void client_ptab_insert(struct iomem_client *c, struct client_pending *p)
{
        struct client_pending **b = &c->ptab[p->id & c->ptab_mask];

        p->hnext = *b;
        *b = p;
}

/*
 * client_ptab_grow() - make @ptab (CLIENT_PTAB_MIN chains) or double it, with every entry of @pending in it.
 * Return: true; false if out of memory (the old table, or none, stays: lookups are slower, never wrong).
 */
static bool client_ptab_grow(struct iomem_client *c)
{
        unsigned n = c->ptab ? (c->ptab_mask + 1) * 2 : CLIENT_PTAB_MIN;
        struct client_pending **t;

        if (n == 0 || !(t = calloc(n, sizeof(*t))))
                return false;
        free(c->ptab);
        c->ptab = t;
        c->ptab_mask = n - 1;
        /*
         * Each entry goes to the end of its chain: @pending runs newest first and so must a chain, for
         * client_pending_find() to find the newest of an id that wrapped round (client_ptab_insert() puts new ones
         * first); inserting at the front here would reverse every chain.
         */
        for (struct client_pending *p = c->pending; p; p = p->next) {
                struct client_pending **b = &t[p->id & c->ptab_mask];

                while (*b)
                        b = &(*b)->hnext;
                p->hnext = NULL;
                *b = p;
        }
        return true;
}

/* Whether @p is an asynchronous request whose deadline iomem_client_process() enforces. */
static inline bool client_pending_timed(const struct client_pending *p)
{
        return p->kind != CLIENT_SYNC && p->deadline >= 0;
}

/* Make @p (its id and deadline set) outstanding: first in @pending, and in @ptab. Called with the lock held. */
static void client_pending_link(struct iomem_client *c, struct client_pending *p)
{
        if (client_pending_timed(p)) {
                if (c->ndeadlines++ == 0 || p->deadline < c->deadline_min)
                        c->deadline_min = p->deadline;
        }
        p->next = c->pending;
        if (p->next)
                p->next->pprev = &p->next;
        p->pprev = &c->pending;
        c->pending = p;
        c->npending++;
        if (c->ptab ? c->npending > c->ptab_mask + 1 : c->npending > CLIENT_PENDING_SCAN)
                if (client_ptab_grow(c))
                        return; /* @p is in it */
        if (c->ptab)
                client_ptab_insert(c, p);
}

/* Take @p out of @pending (nothing if it is not in it: completed, or never linked). Called with the lock held. */
static void client_pending_unlink(struct iomem_client *c, struct client_pending *p)
{
        if (!p->pprev)
                return;
        *p->pprev = p->next;
        if (p->next)
                p->next->pprev = p->pprev;
        p->pprev = NULL;
        p->next = NULL;
        c->npending--;
        if (client_pending_timed(p))
                c->ndeadlines--;
        if (c->ptab) {
                struct client_pending **pp = &c->ptab[p->id & c->ptab_mask];

                while (*pp != p)
                        pp = &(*pp)->hnext;
                *pp = p->hnext;
        }
}

/*
 * Return: a time (CLOCK_MONOTONIC ms) no outstanding asynchronous request is due before, exact if it has come (a
 * request is due now if it is not in the future), or -1 if none has a deadline. Called with the lock held.
 */
static int64_t client_deadline_next(struct iomem_client *c)
{
        if (c->ndeadlines == 0)
                return -1;
        if (client_left_ms(c->deadline_min) == 0) {
                c->deadline_min = INT64_MAX;
                for (struct client_pending *p = c->pending; p; p = p->next)
                        if (client_pending_timed(p) && p->deadline < c->deadline_min)
                                c->deadline_min = p->deadline;
        }
        return c->deadline_min;
}

/* Return: the outstanding request with id @id (the newest if ids wrapped round), or NULL. */
static struct client_pending *client_pending_find(const struct iomem_client *c, uint32_t id)
{
        struct client_pending *p;

        if (c->ptab) {
                for (p = c->ptab[id & c->ptab_mask]; p && p->id != id; p = p->hnext)
                        ;
                return p;
        }
        for (p = c->pending; p && p->id != id; p = p->next)
                ;
        return p;
}

/* Where @p's reply is (once it completed with one): its own, or its blocking caller's frame. */
static struct transport_frame *client_pending_reply(struct client_pending *p)
{
        return p->out ? p->out : &p->reply;
}

static void client_frame_done(struct transport_frame *f);
static void client_unwatch_stray(struct iomem_client *c, uint16_t opcode, const struct transport_frame *f);

/*
 * Complete @p with @result (and the reply in *@f, taken over, if @f: its fds and payload are @p's from now on, and
 * *@f is left as it was, for the caller to forget, never to deinit): wake its waiter or queue its callback.
 */
static inline void client_pending_complete(struct iomem_client *c, struct client_pending *p, int result,
                                    const struct transport_frame *f)
{
        client_pending_unlink(c, p);
        p->done = true;
        p->result = result;
        p->cache_gen = c->cache_gen;
        if (f)
                *client_pending_reply(p) = *f;
        if (p->kind == CLIENT_DISCARD) {
                /* nobody waits for it: its fds are closed, its payload freed (a copy: client_frame_own()) */
                if (f) {
                        client_unwatch_stray(c, p->opcode, &p->reply);
                        client_frame_done(&p->reply);
                }
                free(p);
                return;
        }
        if (p->kind != CLIENT_SYNC && p->kind != CLIENT_HELLO) {
                p->next = NULL;
                if (c->done_tail)
                        c->done_tail->next = p;
                else
                        c->done_head = p;
                c->done_tail = p;
        }
        client_wake(c);
}

/*
 * client_hello_complete() - complete the held-back HELLO's entry (@hello_p, outstanding) with @result, as
 * client_pending_complete() does a request's (it has no reply to keep and is in no list: client_hello_prepare()).
 */
static inline void client_hello_complete(struct iomem_client *c, int result)
{
        struct client_pending *h = c->hello_p;

        h->done = true;
        h->result = result;
        h->cache_gen = c->cache_gen;
        client_wake(c);
}

/*
 * The connection broke: end the wait of the thread reading the socket
 * without the lock (in poll() or recvmsg()), if one is, and of the senders
 * waiting for room without it (client_send(): their poll() asks for
 * POLLIN), by shutting down our receiving side; the connection is not
 * used again. (Output queued meanwhile needs no wake-up: blocking senders
 * flush it themselves, and iomem_client_process() does for asynchronous ones.)
 */
static void client_wake_reader(struct iomem_client *c)
{
        if ((c->reading || c->send_waiters) && c->broken && c->fd >= 0)
                shutdown(c->fd, SHUT_RD);
}

/*
 * The connection is unusable from now on (@r says why). Every request
 * outstanding on it completes: with the daemon's refusal of our HELLO if
 * that is why; with -EPIPE (not applied) if the daemon had closed it
 * before our HELLO left (c->hello_dropped); with -ECONNRESET if it closed
 * it later (outcome unknown); with -ENOTCONN otherwise.
 */
static void client_break(struct iomem_client *c, int r)
{
        struct client_pending *h = c->hello_p;
        int result;

        if (!c->broken) {
                c->broken = r;
                c->gone = client_error_is_gone(r);
        }
        if (h && !h->done) {
                /* no HELLO reply came: nothing was applied if nothing left (else the daemon may have died mid-way) */
                c->hello_dropped = c->gone && c->t.out_pos == 0;
                client_hello_complete(c, !c->gone ? -ENOTCONN : c->hello_dropped ? -EPIPE : -ECONNRESET);
        }
        if (h && h->result < 0 && h->result != -EPIPE && h->result != -ENOTCONN)
                result = h->result; /* refused: allow-list, quota, version */
        else if (c->gone)
                result = c->hello_dropped ? -EPIPE : -ECONNRESET;
        else
                result = -ENOTCONN;
        while (c->pending) {
                c->pending->broke_at = c->transport_ready ? c->t.out_pos : 0;
                client_pending_complete(c, c->pending, result, NULL);
        }
        client_wake_reader(c);
        client_wake(c);
}

static inline int client_hello_result(struct iomem_client *c, const struct transport_frame *f);
static int client_hello_queue(struct iomem_client *c, bool in_order);

/* The held-back HELLO, encoded to go out in front of the first request (client_hello_prepare()). */
struct client_hello_msg {
        struct proto_header h;
        uint8_t buf[32];
        struct transport_msg m;
};

static inline int client_hello_prepare(struct iomem_client *c, bool in_order, struct client_hello_msg *hm);

/* transport_frame_deinit(@f) where it has anything to close or free (iomemd's conn_process_frames() does the same) */
static void client_frame_done(struct transport_frame *f)
{
        if (f->nfds || (f->payload && !f->payload_borrowed))
                transport_frame_deinit(f);
}

/*
 * client_frame_own() - give @f, the reply to @p, a payload that outlives the transport's input buffer if it
 * borrows it (transport_next_frame_borrowed(), valid only until the next read): a copy in @p's reply space if it
 * has one and the payload fits (still not the frame's to free), else a malloc'd one. Return: 0; -ENOMEM.
 */
static int client_frame_own(struct transport_frame *f, const struct client_pending *p)
{
        uint8_t *copy;

        if (!f->payload_borrowed)
                return 0;
        if (f->payload && p->space && f->hdr.length <= CLIENT_REPLY_SPACE) {
                /* a region's info (OPEN, CREATE: the usual reply) as a fixed-size move, not a memcpy() call */
                if (f->hdr.length == CLIENT_REGION_INFO_SIZE)
                        memcpy(p->space, f->payload, CLIENT_REGION_INFO_SIZE);
                else
                        memcpy(p->space, f->payload, f->hdr.length);
                f->payload = p->space;
                return 0;
        }
        if (f->payload) {
                copy = malloc(f->hdr.length);
                if (!copy)
                        return -ENOMEM;
                memcpy(copy, f->payload, f->hdr.length);
                f->payload = copy;
        }
        f->payload_borrowed = false;
        return 0;
}

/* Whether @f is the HELLO refusal a daemon sends at accept, before it read our HELLO: id 0. */
static inline bool client_frame_is_refusal(const struct transport_frame *f)
{
        return f->hdr.id == 0 && f->hdr.opcode == PROTO_OP_HELLO && (f->hdr.flags & PROTO_FLAG_ERROR);
}

/*
 * Route one received frame, whose payload may borrow the transport's input buffer: an event is decoded and kept
 * (copied), the HELLO reply checked (its version string copied), a reply goes to its request with a payload of its
 * own. Return: 0; -EPROTO.
 */
static int client_dispatch(struct iomem_client *c, struct transport_frame *f)
{
        struct client_pending *p;
        int r;

        if (c->hello_flags && proto_opcode_is_event(f->hdr.opcode)) {
                r = client_event_stash(c, f);
                transport_frame_deinit(f);
                client_wake(c);
                return r;
        }
        /*
         * A daemon that refuses the connection at accept answers HELLO with id 0 (allow-list, quota): no request
         * has id 0 (client_next_id() never gives it), so it goes to the HELLO outstanding: the held-back one
         * (outside the table, looked at first), or one sent by client_hello() (in it, looked for only then).
         */
        p = c->hello_p;
        if (p && !p->done && (f->hdr.id == p->id || client_frame_is_refusal(f))) {
                if (f->hdr.opcode != PROTO_OP_HELLO || !(f->hdr.flags & PROTO_FLAG_REPLY)) {
                        transport_frame_deinit(f);
                        client_hello_complete(c, -EPROTO);
                        return -EPROTO;
                }
                /* checked here: a refusal breaks the connection for every request sent behind it */
                r = client_hello_result(c, f);
                client_frame_done(f);
                if (r == -EINVAL && c->t.in_fds_in_order) {
                        /* a daemon older than FDS_IN_ORDER: nothing was applied, the call connects again without it */
                        c->no_fds_in_order = true;
                        c->hello_dropped = true;
                        r = -EPIPE;
                }
                client_hello_complete(c, r);
                return r;
        }
        p = client_pending_find(c, f->hdr.id);
        if (!p && client_frame_is_refusal(f))
                for (p = c->pending; p; p = p->next)
                        if (p->opcode == PROTO_OP_HELLO)
                                break;
        if (!p || f->hdr.opcode != p->opcode || !(f->hdr.flags & PROTO_FLAG_REPLY)) {
                transport_frame_deinit(f);
                if (p)
                        client_pending_complete(c, p, -EPROTO, NULL);
                return -EPROTO;
        }
        /* read by its caller after the lock is let go, when another thread may have read again: a copy */
        r = client_frame_own(f, p);
        if (r < 0) {
                transport_frame_deinit(f);
                client_pending_complete(c, p, r, NULL);
                return 0; /* the frame was read whole: the stream is still in sync */
        }
        client_pending_complete(c, p, 0, f); /* *f is p's now: the caller forgets it */
        return 0;
}

/*
 * Route every complete frame after a read that returned @n (transport_read()).
 * The caller holds the lock and is the reader.
 * Return: > 0 bytes were read; 0 nothing to read now; negative errno after
 * which the connection is broken (every outstanding request completed).
 */
static int client_route(struct iomem_client *c, int n)
{
        struct transport_frame f;
        int r;

        if (n == -EAGAIN || n == -EINTR)
                return 0;
        if (n < 0 && n != -EPIPE) {
                client_break(c, n);
                return n;
        }
        /*
         * Frames first, even at the end of the stream: a refusal may be queued before the close. An input buffer
         * with no bytes and no fds left could only give "no frame" (as iomemd's conn_input_buffered()).
         */
        while (c->t.in_start != c->t.in_end || c->t.in_fds) {
                r = transport_next_frame_borrowed(&c->t, &f); /* client_dispatch() uses it or owns it */
                if (r == 0)
                        break;
                if (r < 0) {
                        client_break(c, r == -EPIPE ? -ECONNRESET : r);
                        return c->broken;
                }
                r = client_dispatch(c, &f);
                if (r < 0) {
                        client_break(c, r);
                        return r;
                }
        }
        if (n <= 0 || c->t.eof) {
                client_break(c, -ECONNRESET);
                return -ECONNRESET;
        }
        return n;
}

/* Read what the socket has (without waiting) and route it. Return: as client_route(). */
static int client_read(struct iomem_client *c)
{
        return client_route(c, transport_read(&c->t));
}

/* recvmsg calls one non-blocking call makes at most: a daemon that never stops sending cannot hold it */
#define CLIENT_READS_PER_CALL 16

/*
 * Read and route what the socket holds now, without waiting, in at most
 * CLIENT_READS_PER_CALL reads. The caller holds the lock and no other
 * thread is reading. Return: true if the socket was seen empty (or the
 * connection broke): everything that had arrived is routed; false if more
 * may be there.
 */
static bool client_read_available(struct iomem_client *c)
{
        for (unsigned i = 0; i < CLIENT_READS_PER_CALL; i++)
                if (c->broken || client_read(c) <= 0)
                        return true;
        return false;
}

/* Return: true if input waits on the socket (or it cannot be told). */
static bool client_input_waiting(const struct iomem_client *c)
{
        struct pollfd p = { .fd = c->fd, .events = POLLIN };

        return poll(&p, 1, 0) != 0;
}

/* Whether what the waiter waits for is there: its reply, or (for @p NULL) an event. */
static bool client_wait_done(const struct iomem_client *c, const struct client_pending *p)
{
        return p ? p->done : (c->overflow_pending || c->evq_head != NULL);
}

/*
 * client_wait() - wait until @p completes (or, @p NULL, an event is kept),
 * at most until @deadline (ms, -1 = none). Called with the lock held; one
 * thread at a time reads the socket, the others sleep on the condition
 * variable until the reader has routed what it read.
 * Return: 0; -ETIMEDOUT; -ENOTCONN if the connection is broken (@p is
 * then completed with the reason); -EINTR if a signal interrupted the
 * reader's poll() and the interrupt callback said to give up (a request's
 * wait, not HELLO's; @p is still outstanding: client_abandon()).
 */
static int client_wait(struct iomem_client *c, struct client_pending *p, int64_t deadline)
{
        bool tried = false;

        for (;;) {
                if (client_wait_done(c, p))
                        return 0;
                if (c->broken)
                        return -ENOTCONN;
                if (tried && deadline >= 0 && client_left_ms(deadline) == 0)
                        return -ETIMEDOUT;
                if (c->reading) {
                        if (deadline < 0) {
                                client_cond_wait(c, NULL);
                        } else {
                                struct timespec ts = { .tv_sec = deadline / 1000,
                                                       .tv_nsec = (deadline % 1000) * 1000000 };

                                if (client_cond_wait(c, &ts) == ETIMEDOUT)
                                        tried = true;
                        }
                        continue;
                }
                /* become the reader: wait without the lock, so that others can send meanwhile */
                struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
                int n;

                if (transport_has_output(&c->t))
                        pfd.events |= POLLOUT;
                /* the interrupt callback, read under the lock; only a request's wait (not HELLO's) or an event's */
                iomem_interrupt_cb icb =
                        !c->rewatching && (!p || (p->kind == CLIENT_SYNC && p->opcode != PROTO_OP_HELLO))
                                ? c->interrupt_cb
                                : NULL;
                void *iud = c->interrupt_userdata;

                c->reading = true;
                client_unlock(c);
                /*
                 * poll(), then a read that does not wait; never a blocking recvmsg(). A thread asleep in
                 * recvmsg() on a Unix stream socket is woken by every wake-up on the socket's queue, and
                 * the daemon's read of our request makes one (the kernel frees our sent bytes and wakes
                 * writers waiting for room, EPOLLOUT): the reader woke, found nothing and slept again, an
                 * extra switch pair per request on a busy CPU. poll() for POLLIN sleeps through it. With
                 * an interrupt callback, a signal ends the poll() with EINTR even under SA_RESTART.
                 */
                n = poll(&pfd, 1, client_left_ms(deadline));
                if (n < 0)
                        n = -errno;
                if (n == -EINTR && icb) {
                        /* the caller's to say whether the signal ends the wait (its handler raised): still
                         * without the lock, and still the reader (nobody else reads meanwhile) */
                        int stop = icb(c, iud);

                        client_lock(c);
                        c->reading = false;
                        client_wake(c);
                        if (stop)
                                return -EINTR;
                        continue;
                }
                client_lock(c);
                c->reading = false;
                tried = true;
                if (n < 0 && n != -EINTR)
                        client_break(c, n);
                else if (n > 0 && (pfd.revents & POLLNVAL))
                        client_break(c, -EBADF);
                else if (n > 0) {
                        /* read first: a daemon that refuses us answers, then closes before reading */
                        if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
                                client_read(c);
                        if (!c->broken && transport_has_output(&c->t)) {
                                int r = transport_flush(&c->t);

                                if (r < 0 && r != -EAGAIN)
                                        client_break(c, r);
                        }
                }
                client_wake(c);
        }
}

/* Return: the deadline (CLOCK_MONOTONIC ms) for a reply when the daemon may itself wait @extra_ms; -1 = none. */
static int64_t client_deadline(const struct iomem_client *c, int extra_ms)
{
        int timeout = client_timeout(c, extra_ms);

        return timeout < 0 ? -1 : client_now_ms() + timeout;
}

/* Return: a new request id. Called with the lock held. */
static uint32_t client_next_id(struct iomem_client *c)
{
        uint32_t id = c->next_id++;

        if (c->next_id == 0)
                c->next_id = 1;
        return id;
}

/*
 * The result of a completed request: 0 with the reply in p->reply (want_fds
 * fds), the daemon's negative errno (its message kept), or -EPROTO.
 */
static inline int client_reply_result(struct iomem_client *c, struct client_pending *p)
{
        struct transport_frame *f = client_pending_reply(p);
        struct proto_error err;
        int r;

        if (p->result < 0)
                return p->result;
        if (f->hdr.flags & PROTO_FLAG_ERROR) {
                r = proto_error_decode(f->payload, f->hdr.length, &err);
                if (r < 0 || err.error >= 0 || f->nfds != 0) {
                        r = -EPROTO;
                } else {
                        char *m = client_message_buffer(c);

                        r = err.error;
                        if (m)
                                client_copy(m, CLIENT_MESSAGE_SIZE, err.message);
                }
                transport_frame_deinit(f);
                return r;
        }
        if (f->nfds != p->want_fds) {
                transport_frame_deinit(f);
                return -EPROTO;
        }
        return 0;
}

/*
 * client_abandon() - the blocking caller of @p (on its stack) gives up waiting for the reply
 * (iomem_client_set_interrupt_cb()): the reply still to come is dropped when it arrives (an entry of its own
 * takes @p's place), so the connection stays in step; a reply already here is dropped now. Called with the
 * lock held. Return: -EINTR.
 */
static int client_abandon(struct iomem_client *c, struct client_pending *p)
{
        struct client_pending *q;

        if (p->done) {
                if (client_reply_result(c, p) == 0) {
                        client_unwatch_stray(c, p->opcode, client_pending_reply(p));
                        client_frame_done(client_pending_reply(p)); /* a region's fd is closed */
                }
                client_message_clear(c);
                return -EINTR;
        }
        q = client_pending_new(CLIENT_DISCARD, p->opcode, p->want_fds, NULL, NULL);
        if (!q) {
                /* nothing to match the reply with: a later reply could be taken for it */
                client_pending_unlink(c, p);
                client_break(c, -ENOMEM);
                return -EINTR;
        }
        q->id = p->id;
        client_pending_unlink(c, p);
        client_pending_link(c, q);
        return -EINTR;
}

/*
 * client_send() - send @msgs (the request @p last, @fds consumed) and wait until the socket took all of @p. Called
 * with the lock held; it is let go while waiting, as for a reply (client_wait()). A daemon stops reading a
 * client whose replies pile up unread (docs/protocol.md, section 5, "Fds in flight"): a wait for room that held the
 * lock kept every thread from reading them (and the waiting thread itself did not), so the daemon and the client
 * waited for each other until the call's timeout, and other threads' calls, iomem_client_process() and
 * iomem_client_get_events() waited behind it. So, as sd-bus's sd_bus_call() does, the sender reads while it waits:
 * with no other reader it is the reader meanwhile (poll() for POLLIN too, and what comes is routed); with one, it
 * polls the same way without being the reader: input wakes it, and it waits for the reader to route it (a reader
 * whose own wait ended leaves input to nobody: the sender then reads it), and client_wake_reader()'s shutdown ends
 * its poll on a break. Requests keep
 * their order: @p went into the queue whole, under the lock, behind every request queued before it; later ones
 * queue behind it, and whoever flushes sends the queue in order. With an interrupt callback (not for HELLO nor a
 * reconnect's WATCH), a wait a signal ends asks it (without the lock, and not as the reader: it may let another
 * thread call the client): to give up, if nothing of the request went out, it is taken back and the call ends with
 * nothing sent; if some of it went (a frame cannot be left half-written: the daemon would read the next one from its
 * middle), the rest stays queued, goes out before anything sent later, and its reply is dropped as an interrupted
 * wait's (client_abandon()).
 * Return: 0 once the request went out (or @p completed meanwhile: the connection broke, client_wait() says how);
 * -EPIPE if it broke from the daemon's side before any of @p went (not applied); -EINTR (@p is then no longer
 * outstanding); -ETIMEDOUT; negative errno from the transport.
 */
static int client_send(struct iomem_client *c, struct client_pending *p, const struct transport_msg *msgs, unsigned n,
                       int *fds, unsigned nfds)
{
        bool interruptible = c->interrupt_cb && p->opcode != PROTO_OP_HELLO && !c->rewatching, readable = false;
        int64_t deadline;
        uint64_t end, start;
        int r;

        r = transport_sendv(&c->t, msgs, n, fds, nfds);
        if (r < 0 || !c->t.out_head)
                return r; /* usually all went at once: nothing queued */
        deadline = client_deadline(c, 0);
        end = c->t.out_pos + c->t.out_bytes; /* stream offsets: the request ends here, starts at @start */
        start = end - (PROTO_HEADER_SIZE + msgs[n - 1].len);
        for (;;) {
                struct pollfd pfd = { .fd = c->fd, .events = POLLIN | POLLOUT };
                iomem_interrupt_cb icb;
                void *iud;
                bool reader;
                int k, stop;

                /*
                 * Broken meanwhile (client_break() completed it): unsent, it was not applied. Told by how far
                 * the output had gone when it broke, not by c->t now: after a wait on @cond (not counted in
                 * @send_waiters) another thread may have connected again, and c->t is then the new connection's.
                 */
                if (p->done)
                        return p->result == -ECONNRESET && p->broke_at <= start ? -EPIPE : 0;
                r = transport_flush(&c->t);
                if (r != -EAGAIN)
                        return r; /* 0: the queue is empty, the request went */
                if (c->t.out_pos >= end)
                        return 0;
                if (readable && !c->reading) {
                        /* input came, and nobody else reads it: route it (the daemon may wait for that) */
                        readable = false;
                        client_read(c);
                        continue;
                }
                readable = false;
                if (deadline >= 0 && client_left_ms(deadline) == 0)
                        return -ETIMEDOUT;
                reader = !c->reading;
                if (reader)
                        c->reading = true;
                else
                        c->send_waiters++;
                icb = interruptible ? c->interrupt_cb : NULL;
                iud = c->interrupt_userdata;
                client_unlock(c);
                k = poll(&pfd, 1, client_left_ms(deadline));
                if (k < 0)
                        k = -errno;
                client_lock(c);
                if (reader)
                        c->reading = false;
                else
                        c->send_waiters--;
                client_wake(c); /* a reader's turn, or a reconnect that waits for the old socket's pollers */
                if (k == -EINTR && icb) {
                        client_unlock(c);
                        stop = icb(c, iud);
                        client_lock(c);
                        /*
                         * Another thread sent the rest of the request meanwhile and read its reply, or broke the
                         * connection (and may have made a new one): the call ends as a wait for the reply would,
                         * with it if the callback says to go on (client_wait() finds it done), else given up.
                         */
                        if (p->done)
                                return stop ? client_abandon(c, p) : 0;
                        if (!stop)
                                continue;
                        if (c->t.out_pos <= start && transport_unqueue_tail(&c->t, end)) {
                                client_pending_unlink(c, p); /* never sent: nothing to drop later */
                                return -EINTR;
                        }
                        return client_abandon(c, p);
                }
                if (k < 0 && k != -EINTR)
                        return k;
                if (k > 0 && (pfd.revents & POLLNVAL))
                        return -EBADF;
                if (k <= 0 || !(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
                        continue;
                if (reader || !c->reading) {
                        readable = true; /* read after the flush: a daemon gone says -EPIPE there first */
                } else if (!(pfd.revents & POLLOUT) && !c->broken) {
                        /* the reader reads it and wakes us (or leaves, and then we read) */
                        if (deadline < 0) {
                                client_cond_wait(c, NULL);
                        } else {
                                struct timespec ts = { .tv_sec = deadline / 1000,
                                                       .tv_nsec = (deadline % 1000) * 1000000 };

                                client_cond_wait(c, &ts);
                        }
                }
        }
}

/*
 * client_exchange() - send one request (with @nsend fds, consumed) and wait
 * for its reply (a small payload copied to @reply_space, CLIENT_REPLY_SPACE bytes, if not NULL: it must outlive
 * the use of *@replyp). Called with the lock held.
 * Return: 0 with *replyp; the daemon's negative errno; -EPIPE if the
 * request could not be sent because the daemon had closed the connection
 * (it was not applied); -ECONNRESET if the connection ended after it was
 * sent (outcome unknown); -EPROTO; -ETIMEDOUT; negative errno.
 */
static int client_exchange(struct iomem_client *c, uint16_t opcode, const uint8_t *payload, size_t len,
                           int *send_fds, unsigned nsend, int extra_ms, unsigned want_fds,
                           struct transport_frame *replyp, uint8_t *reply_space)
{
        struct proto_header h = { .opcode = opcode };
        struct client_pending p;
        struct client_hello_msg hello;
        struct transport_msg msgs[2];
        unsigned n = 0;
        int r;

        client_pending_init(&p, CLIENT_SYNC, opcode, want_fds, reply_space);
        p.out = replyp; /* the reply is written there at once, not copied twice */
        client_message_clear(c);
        if (c->hello_held) {
                /* the first request: HELLO goes in front of it, in the same sendmsg() */
                r = client_hello_prepare(c, true, &hello);
                if (r < 0) {
                        for (unsigned i = 0; i < nsend; i++)
                                close(send_fds[i]); /* consumed */
                        client_break(c, r);
                        return r;
                }
                msgs[n++] = hello.m;
        }
        h.id = p.id = client_next_id(c);
        p.deadline = client_deadline(c, extra_ms);
        client_pending_link(c, &p);
        msgs[n++] = (struct transport_msg){ .h = &h, .payload = payload, .len = len };
        r = client_send(c, &p, msgs, n, send_fds, nsend);
        if (r == -EINTR)
                return r;
        /*
         * A daemon refusing us at accept may have closed before HELLO went out: its
         * answer is queued, and the end of the stream after it (or only the end, after
         * its handshake timeout: nothing applied). Both are there to read now: wait for
         * them as for a reply, with the usual deadline. Not with none left: another thread
         * may be the reader, and giving up at once would break the connection with
         * -ETIMEDOUT under it, before it routes the refusal or the end.
         */
        if (r < 0 && !(client_error_is_gone(r) &&
                       (opcode == PROTO_OP_HELLO || (c->hello_p && !c->hello_p->done)))) {
                bool gone = client_error_is_gone(r);

                client_pending_unlink(c, &p);
                client_break(c, r);
                return gone ? -EPIPE : r;
        }
        r = client_wait(c, &p, p.deadline);
        if (r == -EINTR)
                return client_abandon(c, &p);
        if (r == -ETIMEDOUT && !p.done) {
                client_pending_unlink(c, &p);
                client_break(c, -ETIMEDOUT);
                return -ETIMEDOUT;
        }
        if (!p.done) { /* cannot happen: a broken connection completes every request */
                client_pending_unlink(c, &p);
                return -ENOTCONN;
        }
        c->reply_cache_gen = p.cache_gen;
        if (p.result == -ENOTCONN && c->broken)
                p.result = c->broken; /* what broke it, as before: -EBADMSG, -EPROTO... */
        return client_reply_result(c, &p); /* 0 with the reply in *replyp */
}

static int client_hello(struct iomem_client *c);

/*
 * Close the socket (leased regions of this connection go away). @final: the client is freed next (its transport is
 * released, not reset for a later use).
 */
static inline void client_close_how(struct iomem_client *c, bool final)
{
        if (c->transport_ready) {
                if (final)
                        transport_release(&c->t);
                else
                        transport_deinit(&c->t);
        }
        c->transport_ready = false;
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
}

static void client_close(struct iomem_client *c)
{
        client_close_how(c, false);
}

/*
 * client_open() - a new socket connected to c->sa, and the HELLO
 * handshake; the HELLO reply is awaited at most @timeout_ms (-1 = forever),
 * or, with @hold, HELLO is not even sent: it goes out with the first
 * request, and its reply is routed before that request's.
 * Return: 0; negative errno from socket/connect (-ENOENT, -ECONNREFUSED,
 * -EACCES, -EAGAIN for a full backlog with a time limit...) or from HELLO.
 */
static int client_open(struct iomem_client *c, int timeout_ms, bool hold);

/* client_open()'s work; client_open() marks the client broken when it fails. */
static int client_open_socket(struct iomem_client *c, int timeout_ms, bool hold)
{
        int saved_timeout = c->timeout_ms;
        int r;

        while (c->reading || c->send_waiters) /* other threads poll the old socket: let them finish */
                client_cond_wait(c, NULL);
        if (c->transport_ready || c->pending) /* else nothing to end: a new client, or one closed already */
                client_break(c, c->broken ? c->broken : -ENOTCONN);
        client_close(c);
        c->broken = 0;
        c->gone = false;
        c->hello_held = false;
        c->hello_dropped = false;
        c->hello_p = NULL;
        /*
         * With a time limit, connect without blocking: connect() to a Unix
         * socket whose listen backlog is full (a daemon that stopped
         * accepting, or a socket unit whose service is still starting)
         * blocks until a slot frees, however long that takes. Non-blocking,
         * it fails at once with EAGAIN, which client_reconnect() retries
         * until its window ends. A Unix stream connect never returns
         * EINPROGRESS: it is done or refused.
         */
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (timeout_ms >= 0 ? SOCK_NONBLOCK : 0), 0);
        if (c->fd < 0)
                return -errno;
        do
                r = connect(c->fd, (const struct sockaddr *)&c->sa, c->sa_len);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        if (timeout_ms >= 0) {
                /* the socket blocks as before for whoever polls iomem_client_fd(); the transport never blocks */
                r = fcntl(c->fd, F_GETFL);
                if (r < 0 || fcntl(c->fd, F_SETFL, r & ~O_NONBLOCK) < 0)
                        return -errno;
        }
        r = transport_init_storage(&c->t, c->fd, 0, 0, &c->storage);
        if (r < 0)
                return r;
        c->transport_ready = true;
        if (hold) {
                c->hello_held = true;
                return 0;
        }
        c->timeout_ms = timeout_ms;
        r = client_hello(c);
        c->timeout_ms = saved_timeout;
        if (r == -EINVAL && !c->no_fds_in_order) {
                /* a daemon older than FDS_IN_ORDER: the same without it */
                c->no_fds_in_order = true;
                return client_open(c, timeout_ms, false);
        }
        if (r < 0 && !c->broken)
                c->broken = r;
        return r;
}

static int client_open(struct iomem_client *c, int timeout_ms, bool hold)
{
        int r = client_open_socket(c, timeout_ms, hold);

        /* the old connection is closed: a failed open must leave the client broken, never with no transport */
        if (r < 0 && !c->broken)
                c->broken = r;
        return r;
}

/* Errors of connect/HELLO that a restarting daemon gives for a moment: try again. */
static bool client_error_is_transient(int r)
{
        return r == -ENOENT || r == -ECONNREFUSED || r == -EPIPE || r == -ECONNRESET || r == -EAGAIN;
}

/*
 * client_reconnect() - connect again after the daemon closed the
 * connection, retrying with backoff (10 ms doubling to 500 ms) for up to
 * the reconnect window, capped by the reply timeout if one is set. The
 * window counts from the call's first reconnect: a call whose daemon goes
 * away again and again does not get a new one each time. @count: a
 * reconnect the caller sees (iomem_client_reconnects()).
 * Return: 0; the last connect/HELLO error once the window is over.
 */
static int client_reconnect_how(struct iomem_client *c, bool count)
{
        int window = c->reconnect_ms;
        int64_t deadline;
        int delay = 10, r;

        if (!c->reconnect_deadline_set) {
                if (c->timeout_ms >= 0 && (window < 0 || c->timeout_ms < window))
                        window = c->timeout_ms;
                c->reconnect_deadline = window < 0 ? -1 : client_now_ms() + window;
                c->reconnect_deadline_set = true;
        }
        deadline = c->reconnect_deadline;
        for (;;) {
                /* a reconnect waits for its HELLO reply: a refusal then is told from a daemon still starting */
                r = client_open(c, client_left_ms(deadline), false);
                if (r == 0)
                        r = client_rewatch(c);
                if (r == 0) {
                        if (count)
                                c->reconnects++;
                        return 0;
                }
                if (!client_error_is_transient(r) || client_left_ms(deadline) == 0)
                        break;
                if (deadline >= 0 && delay > client_left_ms(deadline))
                        delay = client_left_ms(deadline);
                poll(NULL, 0, delay);
                delay = delay * 2 > 500 ? 500 : delay * 2;
        }
        /* keep the connection marked as gone: a later call tries again */
        client_close(c);
        c->broken = r;
        c->gone = true;
        return r;
}

static int client_reconnect(struct iomem_client *c)
{
        return client_reconnect_how(c, true);
}

/*
 * client_reopen() - open iomem_connect()'s connection once more after the
 * daemon closed it before answering the HELLO sent with the first request
 * (nothing was applied): as client_reconnect(), within the reconnect window,
 * if reconnecting is on; one attempt if it is off. Not counted as a
 * reconnect: nothing the caller had on that connection was lost.
 * Return: 0; negative errno, the connection then closed and marked gone (a
 * later call connects again if reconnecting is on).
 */
static int client_reopen(struct iomem_client *c)
{
        int r;

        if (c->reconnect_ms != 0)
                return client_reconnect_how(c, false);
        r = client_open(c, c->timeout_ms, false);
        if (r < 0) {
                client_close(c);
                c->broken = r;
                c->gone = true;
        }
        return r;
}

/* After a failed reconnect @r: -ENOTCONN, with why in the error message (-ENOENT would read as "no such region"). */
static int client_gone_error(struct iomem_client *c, int r)
{
        const char *why = strerrordesc_np(-r);
        char *m = client_message_buffer(c);

        if (m)
                snprintf(m, CLIENT_MESSAGE_SIZE, "the daemon went away and none answered again on %s (%s)", c->sa.sun_path,
                         why ? why : "unknown error");
        return -ENOTCONN;
}

/*
 * client_call_fds() - send one request, with @nsend fds (consumed, even on
 * error), and receive its reply. A connection the daemon closed is opened
 * again first (unless reconnecting is off); a request that could not be sent
 * because the daemon had gone is sent again on the new connection (it was
 * not applied). A reply lost after sending is not retried here: see
 * client_again().
 * @len: the encoder's result; a negative value is returned as is.
 * @want_fds: how many fds the successful reply must carry.
 * On success *replyp holds the reply frame (caller deinits it).
 * Return: 0; the daemon's negative errno from an error reply; -EPROTO for a
 * reply that does not answer this request; -ETIMEDOUT; -ECONNRESET when the
 * connection ended after the request was sent (outcome unknown); -EPIPE
 * when the daemon was gone and reconnecting is off; -ENOTCONN after a
 * previous failure broke the stream; a connect error when reconnecting
 * failed; negative errno from the transport.
 */
static int client_call_fds_locked(struct iomem_client *c, uint16_t opcode, const uint8_t *payload, int len,
                                  int *send_fds, unsigned nsend, int extra_ms, unsigned want_fds,
                                  struct transport_frame *replyp, uint8_t *reply_space)
{
        int copies[PROTO_MAX_FDS];
        bool reopened = false;
        int r = len;

        /* a new call gets a new reconnect window; HELLO is part of a reconnect, a repeat is part of its call */
        if (opcode != PROTO_OP_HELLO) {
                if (!c->same_call)
                        c->reconnect_deadline_set = false;
                c->same_call = false;
        }
        client_message_clear(c);
        if (nsend > PROTO_MAX_FDS)
                r = -EINVAL;
        if (client_fork_copy(c))
                r = -ECHILD;
        if (r < 0)
                goto out;
        for (unsigned tries = 0;; tries++) {
                if (c->broken) {
                        r = -ENOTCONN;
                        if (!c->gone || c->reconnect_ms == 0 || opcode == PROTO_OP_HELLO)
                                break;
                        r = client_reconnect(c);
                        if (r < 0) {
                                r = client_gone_error(c, r);
                                break;
                        }
                }
                /* the fds go out as copies, so that a request that could not be sent can be sent again */
                for (unsigned i = 0; i < nsend; i++) {
                        copies[i] = fcntl(send_fds[i], F_DUPFD_CLOEXEC, 3);
                        if (copies[i] < 0) {
                                r = -errno;
                                while (i-- > 0)
                                        close(copies[i]);
                                goto out;
                        }
                }
                r = client_exchange(c, opcode, payload, (size_t)len, copies, nsend, extra_ms, want_fds, replyp,
                                    reply_space);
                if (r == -EPIPE && opcode != PROTO_OP_HELLO && !reopened && (c->hello_dropped || !c->broken)) {
                        /*
                         * Closed before it answered the HELLO sent with this request (its handshake
                         * timeout, for a client that connected long before its first call): the daemon
                         * reads nothing before HELLO, so nothing was applied. Connect once more, whether
                         * reconnecting is on (within its window) or not (one attempt): to the caller this
                         * is still iomem_connect()'s connection. (!c->broken: another thread did that
                         * already.)
                         */
                        reopened = true;
                        if (c->broken) {
                                r = client_reopen(c);
                                if (r < 0) {
                                        r = client_gone_error(c, r);
                                        break;
                                }
                        }
                        continue;
                }
                if (r != -EPIPE || c->reconnect_ms == 0 || opcode == PROTO_OP_HELLO || tries + 1 >= CLIENT_MAX_TRIES)
                        break;
        }
out:
        for (unsigned i = 0; i < nsend; i++)
                close(send_fds[i]);
        return r;
}

/* client_call_fds_locked() taking the client's lock (the blocking calls may come from several threads). */
static int client_call_fds(struct iomem_client *c, uint16_t opcode, const uint8_t *payload, int len,
                           int *send_fds, unsigned nsend, int extra_ms, unsigned want_fds,
                           struct transport_frame *replyp)
{
        int r;

        client_lock(c);
        r = client_call_fds_locked(c, opcode, payload, len, send_fds, nsend, extra_ms, want_fds, replyp, NULL);
        client_unlock(c);
        return r;
}

/*
 * client_again() - whether a request that is safe to repeat (OPEN, STAT,
 * LIST, PING, STATUS, QUOTA, METRICS) should be sent again after it failed with @r:
 * the connection ended after it was sent, reconnecting is on, and it was
 * not already tried CLIENT_MAX_TRIES times (*triesp counts).
 * Return: true to send it again (the next call reconnects first, within
 * the window the first reconnect of this call started).
 */
static bool client_again(struct iomem_client *c, int r, unsigned *triesp)
{
        bool again;

        if (r != -ECONNRESET)
                return false; /* the call is over: nothing to change (the call's next request clears @same_call) */
        client_lock(c);
        again = c->same_call = r == -ECONNRESET && c->gone && c->reconnect_ms != 0 && ++*triesp < CLIENT_MAX_TRIES;
        client_unlock(c);
        return again;
}

/* client_call_fds() without fds to send. Return: as client_call_fds(). */
static int client_call(struct iomem_client *c, uint16_t opcode, const uint8_t *payload, int len, int extra_ms,
                       unsigned want_fds, struct transport_frame *replyp)
{
        return client_call_fds(c, opcode, payload, len, NULL, 0, extra_ms, want_fds, replyp);
}

/*
 * client_call() for a request that is safe to repeat, sent again for as long as client_again() says so.
 * @triesp: counts the tries where several requests make one call (the pages of a LIST); NULL for one request.
 * Return: as client_call().
 */
static int client_call_again(struct iomem_client *c, uint16_t opcode, const uint8_t *payload, int len,
                             unsigned *triesp, struct transport_frame *replyp)
{
        unsigned tries = 0;
        int r;

        if (!triesp)
                triesp = &tries;
        do
                r = client_call(c, opcode, payload, len, 0, 0, replyp);
        while (client_again(c, r, triesp));
        return r;
}

/* A request whose successful reply is empty. Return: 0 or as client_call(). */
static int client_call_empty(struct iomem_client *c, uint16_t opcode, const uint8_t *payload, int len)
{
        struct transport_frame f;
        int r;

        r = client_call(c, opcode, payload, len, 0, 0, &f);
        if (r < 0)
                return r;
        r = f.hdr.length == 0 ? 0 : -EPROTO;
        transport_frame_deinit(&f);
        return r;
}

/* Return: 0 if @f is a HELLO reply we can work with; -EPROTO, -EPROTONOSUPPORT. */
static inline int client_hello_check(const struct transport_frame *f)
{
        struct proto_hello_reply hello;

        /* checked whole, as ever; nothing of it is kept (no call gives the daemon's limits or version out) */
        if (proto_hello_reply_decode(f->payload, f->hdr.length, &hello) < 0)
                return -EPROTO;
        return hello.version == PROTO_VERSION ? 0 : -EPROTONOSUPPORT;
}

/* HELLO: agree on the protocol version. Return: 0, -EPROTONOSUPPORT, negative errno. */
static int client_hello(struct iomem_client *c)
{
        struct proto_hello m = { .min_version = PROTO_VERSION, .max_version = PROTO_VERSION,
                                 .flags = c->hello_flags | (c->no_fds_in_order ? 0 : PROTO_HELLO_FDS_IN_ORDER) };
        struct transport_frame f;
        uint8_t buf[CLIENT_REQUEST_MAX];
        int r;

        c->t.in_fds_in_order = !c->no_fds_in_order;
        r = client_call_fds_locked(c, PROTO_OP_HELLO, buf, proto_hello_encode(&m, buf, sizeof(buf)), NULL, 0, 0, 0,
                                   &f, NULL);
        if (r < 0)
                return r;
        r = client_hello_check(&f);
        transport_frame_deinit(&f);
        return r;
}

/*
 * client_hello_queue() - queue the held-back HELLO in front of the first
 * request, so that both go out in one sendmsg() (docs/protocol.md,
 * section 6), and set up its entry (@hello_p, outside the table): client_dispatch() checks
 * its reply when it comes, before the request's. Held back rather than sent
 * at connect, a HELLO never waits in the daemon for a request: a connection
 * that stays silent past the daemon's handshake timeout is closed without an
 * answer, which client_break() reports as -EPIPE (nothing applied) and
 * client_call_fds_locked() answers by connecting once more. Called with the
 * lock held. Return: 0; negative errno.
 */
static int client_hello_queue(struct iomem_client *c, bool in_order)
{
        struct client_hello_msg hello;
        int r;

        r = client_hello_prepare(c, in_order, &hello);
        if (r < 0)
                return r;
        r = transport_queue(&c->t, &hello.h, hello.buf, hello.m.len, NULL, 0);
        if (r < 0) {
                /* not sent: its entry goes, the HELLO stays held */
                c->hello_p = NULL;
                c->hello_held = true;
                c->t.in_fds_in_order = false;
        }
        return r;
}

/*
 * client_hello_prepare() - encode the held-back HELLO into *@hm (@in_order: ask for FDS_IN_ORDER), for the caller
 * to send or queue at once, and set up its entry (@hello_p) as sent (client_hello_queue()). Called with the
 * lock held. Return: 0; negative errno (nothing changed).
 */
static inline int client_hello_prepare(struct iomem_client *c, bool in_order, struct client_hello_msg *hm)
{
        struct proto_hello m = { .min_version = PROTO_VERSION, .max_version = PROTO_VERSION,
                                 .flags = c->hello_flags |
                                          (in_order && !c->no_fds_in_order ? PROTO_HELLO_FDS_IN_ORDER : 0) };
        int len;

        len = proto_hello_encode(&m, hm->buf, sizeof(hm->buf));
        if (len < 0)
                return len;
        hm->h = (struct proto_header){ .opcode = PROTO_OP_HELLO, .id = client_next_id(c) };
        hm->m = (struct transport_msg){ .h = &hm->h, .payload = hm->buf, .len = (size_t)len };
        c->t.in_fds_in_order = m.flags & PROTO_HELLO_FDS_IN_ORDER;
        c->hello_held = false;
        client_pending_init(&c->hello_entry, CLIENT_HELLO, PROTO_OP_HELLO, 0, NULL);
        c->hello_entry.id = hm->h.id;
        c->hello_p = &c->hello_entry; /* not in @pending: client_dispatch() looks at it first */
        return 0;
}

/*
 * The HELLO reply in @f (a routed one: its id and opcode matched), checked:
 * a refusal's message is kept for iomem_client_error_message().
 * Return: 0; the daemon's refusal (-EACCES, -EDQUOT...); -EPROTONOSUPPORT; -EPROTO.
 */
static inline int client_hello_result(struct iomem_client *c, const struct transport_frame *f)
{
        struct proto_error err;
        char *m;
        int r;

        if (f->nfds != 0)
                return -EPROTO;
        if (!(f->hdr.flags & PROTO_FLAG_ERROR))
                return client_hello_check(f);
        r = proto_error_decode(f->payload, f->hdr.length, &err);
        if (r < 0 || err.error >= 0)
                return -EPROTO;
        m = client_message_buffer(c);
        if (m)
                client_copy(m, CLIENT_MESSAGE_SIZE, err.message);
        return err.error;
}

/*
 * client_hello_send_now() - queue and send the HELLO iomem_connect() held
 * back, if it still is (@in_order: ask for FDS_IN_ORDER). Called with the
 * lock held. A connection found gone is not broken here: a refusal may be
 * queued before the close, for the reader to route.
 */
static void client_hello_send_now(struct iomem_client *c, bool in_order)
{
        int r;

        if (!c->hello_held || c->broken)
                return;
        r = client_hello_queue(c, in_order);
        if (r == 0)
                r = transport_flush(&c->t);
        if (r < 0 && r != -EAGAIN && !client_error_is_gone(r))
                client_break(c, r);
}

IOMEM_EXPORT int iomem_client_handshake(struct iomem_client *c)
{
        int r;

        if (!c)
                return -EINVAL;
        if (client_fork_copy(c))
                return -ECHILD;
        client_lock(c);
        client_hello_send_now(c, true);
        if (c->hello_p && !c->hello_p->done) {
                r = client_wait(c, c->hello_p, client_deadline(c, 0));
                if (r == -ETIMEDOUT && !c->hello_p->done) {
                        client_break(c, -ETIMEDOUT);
                }
        }
        if (c->hello_dropped) {
                /* closed before answering HELLO (the daemon's handshake timeout): nothing was applied, connect again */
                r = client_reopen(c);
        } else if (c->hello_p && c->hello_p->done && c->hello_p->result < 0) {
                r = c->hello_p->result;
                if (r == -ENOTCONN && c->broken)
                        r = c->broken;
        } else {
                r = c->broken ? -ENOTCONN : 0;
        }
        client_unlock(c);
        return r;
}

/*
 * The forks this process's libiomem has seen (counted in each child by a pthread_atfork() handler, registered at the
 * first connect): a client whose count differs is a forked child's copy (iomem_disconnect()). Not getpid() at
 * connect: a system call on every connection (a cold one makes about nine) for what only a fork changes. If
 * registering fails (ENOMEM), forks are not counted: the process's pid at connect tells a copy apart instead
 * (client_fork_mark(); a getpid() per connect in that case only). A child made without fork handlers (a raw
 * clone()) is not seen.
 */
static pthread_once_t client_forks_once = PTHREAD_ONCE_INIT;

static void client_forked(void)
{
        __atomic_add_fetch(&client_forks, 1, __ATOMIC_RELAXED);
}

static void client_forks_watch(void)
{
        if (pthread_atfork(NULL, NULL, client_forked) != 0)
                client_forks_unwatched = true;
}

/*
 * Return: what tells this process's clients from the copies a forked child has (kept in c->forks at connect,
 * compared in iomem_disconnect()): the fork count, or the pid if the count cannot be kept. Set by the
 * pthread_once() of the first connect, before any client has a mark; a child inherits which one it is.
 */
static inline unsigned client_fork_mark(void)
{
        if (__builtin_expect(client_forks_unwatched, 0))
                return (unsigned)getpid();
        return __atomic_load_n(&client_forks, __ATOMIC_RELAXED);
}

static int client_connect(const char *path, uint32_t hello_flags, int timeout_ms, bool hold_hello,
                          struct iomem_client **clientp)
{
        struct iomem_client *c;
        size_t len;
        int r;

        if (!clientp)
                return -EINVAL;
        /* not calloc (glibc's never takes from the per-thread cache): what is read before it is written is zeroed */
        c = recycle_take(&client_spare, sizeof(*c));
        if (!c)
                return -ENOMEM;
        /* zero all but the fields written before they are read (struct iomem_client, from @lock on) */
        memset(c, 0, offsetof(struct iomem_client, lock));
        c->fd = -1;
        pthread_once(&client_forks_once, client_forks_watch);
        c->forks = client_fork_mark();
        c->timeout_ms = timeout_ms < 0 ? -1 : timeout_ms;
        /*
         * The static initializers: what pthread_mutex_init(NULL) and pthread_cond_init(NULL) make, without the
         * calls; the condition variable's clock is chosen per wait (client_cond_wait(): CLOCK_MONOTONIC).
         */
        c->lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
        c->cond = (pthread_cond_t)PTHREAD_COND_INITIALIZER;
        c->reconnect_ms = IOMEM_RECONNECT_DEFAULT_MS;
        c->next_id = 1;
        c->hello_flags = hello_flags;
        c->sa.sun_family = AF_UNIX;
        if (!path) {
                r = iomem_socket_path(c->sa.sun_path, sizeof(c->sa.sun_path));
                if (r < 0)
                        goto fail;
                len = strlen(c->sa.sun_path);
        } else {
                len = strlen(path);
                if (len == 0) {
                        r = -EINVAL;
                        goto fail;
                }
                if (len >= sizeof(c->sa.sun_path)) {
                        r = -ENAMETOOLONG;
                        goto fail;
                }
                memcpy(c->sa.sun_path, path, len + 1);
        }
        /* the same address as the whole zero-padded struct: a pathname ends at its NUL */
        c->sa_len = (uint8_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
        /*
         * iomem_connect(): HELLO goes out with the first request; with flags or a time limit, it is awaited
         * (client_open() then waits, letting go of the lock while it reads). Held back, nothing waits and no
         * other thread can know @c before it is returned: the lock client_open() expects would guard nothing.
         */
        if (hold_hello) {
                r = client_open(c, c->timeout_ms, true);
        } else {
                client_lock(c);
                r = client_open(c, c->timeout_ms, false);
                client_unlock(c);
        }
        if (r < 0)
                goto fail;
        *clientp = c;
        return 0;

fail:
        iomem_disconnect(c);
        return r;
}

IOMEM_EXPORT int iomem_connect(const char *path, struct iomem_client **clientp)
{
        return client_connect(path, 0, -1, true, clientp);
}

IOMEM_EXPORT int iomem_connect_flags(const char *path, uint32_t flags, struct iomem_client **clientp)
{
        if (flags & ~IOMEM_CONNECT_EVENTS)
                return -EINVAL;
        return iomem_connect_timeout(path, flags, -1, clientp);
}

IOMEM_EXPORT int iomem_connect_timeout(const char *path, uint32_t flags, int timeout_ms, struct iomem_client **clientp)
{
        if (flags & ~IOMEM_CONNECT_EVENTS)
                return -EINVAL;
        return client_connect(path, flags & IOMEM_CONNECT_EVENTS ? PROTO_HELLO_EVENTS : 0, timeout_ms, false, clientp);
}

IOMEM_EXPORT struct iomem_client *iomem_disconnect(struct iomem_client *client)
{
        int saved = errno;

        if (!client)
                return NULL;
        if (__builtin_expect(client->dispatching != 0, 0) &&
            (client->forks == client_fork_mark() || client_dispatching_here(client))) {
                /*
                 * From a callback of iomem_client_process(), iomem_list() or iomem_metrics(), which frees the
                 * client when it returns. Not in a
                 * forked child if no call of this thread runs: the parent's threads that did are not copied, the
                 * client would never be freed and the child would keep the parent's socket open.
                 */
                client->disconnect_deferred = true;
                errno = saved;
                return NULL;
        }
        /*
         * Asynchronous requests still outstanding are dropped without their callbacks. Without the lock: no other
         * call may overlap this one (iomem.h), and the library runs no thread of its own.
         */
        if (client->pending || (client->hello_p && !client->hello_p->done)) {
                /*
                 * A forked child's copy may say a thread reads the socket, waits to send or waits on @cond (the
                 * parent's, at the fork): none of this process does. client_wake_reader()'s shutdown() would end
                 * the connection of the parent, which shares the socket; a broadcast on the copy of @cond may wait
                 * for ever for those waiters to leave it (glibc waits for the woken ones of a group to leave
                 * before it wakes the next group).
                 */
                if ((client->reading || client->send_waiters || client->waiters) &&
                    client->forks != client_fork_mark()) {
                        client->reading = false;
                        client->send_waiters = 0;
                        client->waiters = 0;
                }
                client_break(client, -ENOTCONN); /* else nothing is outstanding: nothing to complete or wake */
        }
        client_close_how(client, true);
        while (client->done_head) {
                struct client_pending *p = client->done_head;

                client->done_head = p->next;
                transport_frame_deinit(&p->reply);
                free(p);
        }
        /* what a short-lived connection never made is not walked or freed (each call costs a few dozen) */
        if (client->evq_head)
                client_events_clear(client);
        if (client->cache) {
                client_cache_drop(client, NULL);
                free(client->cache);
        }
        if (client->watches)
                free(client->watches);
        if (client->ptab)
                free(client->ptab);
        /*
         * No pthread_cond_destroy()/pthread_mutex_destroy(): both were made by their static initializers and hold
         * nothing (glibc's destroy calls only mark them, ~30 instructions), and no thread may use them any more.
         */
        if (client->error_message)
                free(client->error_message);
        recycle_give(&client_spare, client, sizeof(*client));
        errno = saved;
        return NULL;
}

IOMEM_EXPORT int iomem_client_fd(const struct iomem_client *client)
{
        if (!client)
                return -EINVAL;
        return client->fd >= 0 ? client->fd : -ENOTCONN;
}

IOMEM_EXPORT const char *iomem_client_error_message(const struct iomem_client *client)
{
        const char *m = client ? __atomic_load_n(&client->error_message, __ATOMIC_ACQUIRE) : NULL;

        return m ? m : "";
}

IOMEM_EXPORT void iomem_client_set_timeout(struct iomem_client *client, int timeout_ms)
{
        if (client)
                client->timeout_ms = timeout_ms < 0 ? -1 : timeout_ms;
}

IOMEM_EXPORT void iomem_client_set_interrupt_cb(struct iomem_client *client, iomem_interrupt_cb cb, void *userdata)
{
        if (!client)
                return;
        client_lock(client);
        client->interrupt_cb = cb;
        client->interrupt_userdata = userdata;
        client_unlock(client);
}

IOMEM_EXPORT void iomem_client_set_reconnect(struct iomem_client *client, int max_wait_ms)
{
        if (client)
                client->reconnect_ms = max_wait_ms < 0 ? -1 : max_wait_ms;
}

IOMEM_EXPORT unsigned iomem_client_reconnects(const struct iomem_client *client)
{
        return client ? client->reconnects : 0;
}

/* The error detail cleared for a call that fails before it asks the daemon: none is left of an earlier call. NULL-safe. */
static int client_fail_early(struct iomem_client *c, int r)
{
        if (!c)
                return r;
        client_lock(c);
        client_message_clear(c);
        client_unlock(c);
        return r;
}

/*
 * Return: -EINVAL for a name that cannot go on the wire at all (the error detail of @c's last call cleared: it is
 * not this call's); the daemon judges the rest.
 */
static int client_name_check(struct iomem_client *c, const char *name)
{
        if (!name || strlen(name) > PROTO_NAME_MAX)
                return client_fail_early(c, -EINVAL);
        return 0;
}

IOMEM_EXPORT int iomem_name_check(const char *name)
{
        return name ? proto_name_check(name, strlen(name)) : -EINVAL;
}

/* The checks that begin a call on region @name. Return: -EINVAL without a client, else as client_name_check(). */
static int client_name_start(struct iomem_client *c, const char *name)
{
        return c ? client_name_check(c, name) : -EINVAL;
}

/*
 * Turn a CREATE/OPEN reply into a region: the fd is taken over, without a
 * syscall. Its kind and size are read with fstat at the region's first use
 * (iomem_region_map(), _size(), _fd(), _refresh()): before anything maps it
 * or gives it or its size out, a non-regular fd is refused (D7) and the size
 * is the object's own (S1), whatever the daemon announced.
 * Return: 0; -EPROTO; negative errno.
 */
static inline int client_region_from_info(struct transport_frame *f, const struct proto_region_info *infop,
                                   struct iomem_region **regionp)
{
        int fd = f->fds[0];

        f->fds[0] = -1;
        f->nfds = 0;
        /* the transport received it with MSG_CMSG_CLOEXEC (D9); the access mode is the reply's RDONLY flag */
        return region_new_reply_consume_fd(fd, infop->size, (enum iomem_backend)infop->backend, infop->flags,
                                          infop->id, regionp); /* fd consumed */
}

static inline int client_region_from_reply(struct transport_frame *f, struct iomem_region **regionp)
{
        struct proto_region_info info;

        if (proto_region_info_decode(f->payload, f->hdr.length, &info) < 0)
                return -EPROTO;
        return client_region_from_info(f, &info, regionp);
}

IOMEM_EXPORT int iomem_create(struct iomem_client *client, const char *name, uint64_t size,
                              const struct iomem_create_opts *opts, struct iomem_region **regionp)
{
        struct proto_create m = { .size = size, .name = name ? name : "" };
        struct transport_frame f;
        uint8_t buf[CLIENT_REQUEST_MAX], reply_space[CLIENT_REPLY_SPACE];
        int r;

        if (!client || !regionp)
                return client_fail_early(client, -EINVAL);
        r = client_name_check(client, m.name);
        if (r < 0)
                return r;
        if (opts) {
                m.flags = opts->flags;
                m.seals = opts->seals;
                m.mode = opts->mode;
                m.backend = (uint16_t)opts->backend;
        }
        client_lock(client);
        r = client_call_fds_locked(client, PROTO_OP_CREATE, buf, proto_create_encode(&m, buf, sizeof(buf)), NULL, 0,
                                   0, 1, &f, reply_space);
        client_unlock(client);
        if (r < 0)
                return r;
        r = client_region_from_reply(&f, regionp);
        client_frame_done(&f);
        return r;
}

IOMEM_EXPORT int iomem_open(struct iomem_client *client, const char *name, uint32_t flags, int wait_ms,
                            struct iomem_region **regionp)
{
        struct proto_open m = { .name = name, .timeout_ms = wait_ms < 0 ? UINT32_MAX : (uint32_t)wait_ms };
        struct transport_frame f;
        uint8_t buf[CLIENT_REQUEST_MAX], reply_space[CLIENT_REPLY_SPACE];
        unsigned tries = 0;
        int64_t deadline;
        uint64_t gen;
        int len, r;

        if (!client || !regionp || !name || (flags & ~IOMEM_OPEN_RDONLY))
                return client_fail_early(client, -EINVAL);
        if (flags & IOMEM_OPEN_RDONLY)
                m.flags |= PROTO_OPEN_RDONLY;
        if (wait_ms != 0)
                m.flags |= PROTO_OPEN_WAIT;
        /* encoded before the lock, and the name's check (-EINVAL past PROTO_NAME_MAX, as client_name_check()) */
        len = proto_open_encode(&m, buf, sizeof(buf));
        if (len < 0)
                return client_fail_early(client, len);
        if (client_cache_get(client, name, flags, regionp) == 0)
                return 0;
        deadline = wait_ms > 0 ? client_now_ms() + wait_ms : -1;
        do {
                if (wait_ms > 0) {
                        /* sent again after a reconnect: a waiting OPEN waits only for what is left of its time */
                        int left = client_left_ms(deadline);

                        m.timeout_ms = left == 0 ? 1 : (uint32_t)left; /* 0 would mean "do not wait" */
                        len = proto_open_encode(&m, buf, sizeof(buf)); /* the same name: it fits */
                }
                client_lock(client);
                r = client_call_fds_locked(client, PROTO_OP_OPEN, buf, len, NULL, 0,
                                           wait_ms > 0 ? (int)m.timeout_ms : wait_ms, 1, &f, reply_space);
                gen = client->reply_cache_gen;
                client_unlock(client);
        } while (client_again(client, r, &tries));
        if (r < 0)
                return r;
        r = client_region_from_reply(&f, regionp);
        client_frame_done(&f);
        if (r == 0)
                client_cache_put(client, name, flags, *regionp, gen);
        return r;
}

/* Decode a STAT (@v false) or STATV reply into *st and *generationp. Return: 0; -EPROTO. */
static int client_stat_from_reply(const struct transport_frame *f, bool v, struct iomem_stat *st,
                                  uint64_t *generationp)
{
        struct proto_stat_replyv repv = { .generation = 0 };
        struct proto_stat_reply *rep = &repv.stat;

        if (v ? proto_stat_replyv_decode(f->payload, f->hdr.length, &repv) < 0
              : proto_stat_reply_decode(f->payload, f->hdr.length, rep) < 0)
                return -EPROTO;
        *st = (struct iomem_stat){
                .id = rep->id,
                .size = rep->size,
                .ctime_ns = rep->ctime_ns,
                .open_count = rep->open_count,
                .seals = rep->seals,
                .flags = rep->flags,
                .uid = rep->uid,
                .gid = rep->gid,
                .mode = rep->mode,
                .backend = (enum iomem_backend)rep->backend,
        };
        if (generationp)
                *generationp = repv.generation;
        return 0;
}

IOMEM_EXPORT int iomem_stat(struct iomem_client *client, const char *name, struct iomem_stat *st)
{
        struct proto_name m = { .name = name };
        struct transport_frame f;
        uint8_t buf[CLIENT_REQUEST_MAX];
        int r;

        if (!client || !st)
                return client_fail_early(client, -EINVAL);
        r = client_name_check(client, name);
        if (r < 0)
                return r;
        r = client_call_again(client, PROTO_OP_STAT, buf, proto_name_encode(&m, buf, sizeof(buf)), NULL, &f);
        if (r < 0)
                return r;
        r = client_stat_from_reply(&f, false, st, NULL);
        transport_frame_deinit(&f);
        return r;
}

IOMEM_EXPORT int iomem_list(struct iomem_client *client, const char *prefix,
                            int (*cb)(const struct iomem_list_entry *e, void *userdata), void *userdata)
{
        struct proto_list m = { .prefix = prefix ? prefix : "" };
        uint8_t buf[CLIENT_REQUEST_MAX];
        unsigned tries = 0;
        int r;

        if (!client || !cb)
                return client_fail_early(client, -EINVAL);
        r = client_name_check(client, m.prefix);
        if (r < 0)
                return r;
        do {
                struct proto_list_reply rep;
                struct proto_list_entry pe;
                struct client_dispatch here;
                struct transport_frame f;
                size_t off = 0;

                /* a page is asked again with the same cursor: region ids survive a restart */
                r = client_call_again(client, PROTO_OP_LIST, buf, proto_list_encode(&m, buf, sizeof(buf)), &tries, &f);
                if (r < 0)
                        return r;
                r = proto_list_reply_decode(f.payload, f.hdr.length, &rep);
                if (r < 0)
                        r = -EPROTO;
                /*
                 * Region ids only grow and the walk goes on after the cursor, so a
                 * next cursor is past the one sent: one that stays or goes back
                 * (a daemon cycling cursors) would make us loop forever.
                 */
                else if (rep.next_cursor != 0 && rep.next_cursor <= m.cursor)
                        r = -EPROTO;
                client_lock(client);
                client_dispatch_enter_locked(client, &here); /* @cb may disconnect: see iomem_disconnect() */
                client_unlock(client);
                while (r >= 0) {
                        struct iomem_list_entry e;

                        r = proto_list_entry_next(&rep, &off, &pe);
                        if (r <= 0) {
                                r = r < 0 ? -EPROTO : 0;
                                break;
                        }
                        e = (struct iomem_list_entry){
                                .id = pe.id,
                                .size = pe.size,
                                .seals = pe.seals,
                                .mode = pe.mode,
                                .uid = pe.uid,
                                .gid = pe.gid,
                                .name = pe.name,
                        };
                        r = cb(&e, userdata);
                        if (r != 0 || client->disconnect_deferred)
                                break;
                }
                transport_frame_deinit(&f); /* before a deferred disconnect: its payload may be the client's */
                client_lock(client);
                r = client_dispatch_leave_locked(client, &here, r);
                if (r != 0)
                        return r;
                m.cursor = rep.next_cursor;
                client_lock(client);
                client->same_call = m.cursor != 0; /* the next page shares this call's reconnect window */
                client_unlock(client);
        } while (m.cursor != 0);
        return 0;
}

IOMEM_EXPORT int iomem_resize(struct iomem_client *client, const char *name, uint64_t size)
{
        struct proto_resize m = { .size = size, .name = name };
        struct proto_resize_reply rep;
        struct transport_frame f;
        uint8_t buf[CLIENT_REQUEST_MAX];
        int r;

        r = client_name_start(client, name);
        if (r < 0)
                return r;
        r = client_call(client, PROTO_OP_RESIZE, buf, proto_resize_encode(&m, buf, sizeof(buf)), 0, 0, &f);
        if (r < 0)
                return r;
        r = proto_resize_reply_decode(f.payload, f.hdr.length, &rep);
        transport_frame_deinit(&f);
        return r < 0 ? -EPROTO : 0;
}

IOMEM_EXPORT int iomem_seal(struct iomem_client *client, const char *name, uint32_t seals, uint32_t *sealsp)
{
        struct proto_seal m = { .seals = seals, .name = name };
        struct proto_seal_reply rep;
        struct transport_frame f;
        uint8_t buf[CLIENT_REQUEST_MAX];
        int r;

        r = client_name_start(client, name);
        if (r < 0)
                return r;
        r = client_call(client, PROTO_OP_SEAL, buf, proto_seal_encode(&m, buf, sizeof(buf)), 0, 0, &f);
        if (r < 0)
                return r;
        r = proto_seal_reply_decode(f.payload, f.hdr.length, &rep);
        transport_frame_deinit(&f);
        if (r < 0)
                return -EPROTO;
        if (sealsp)
                *sealsp = rep.seals;
        return 0;
}

IOMEM_EXPORT int iomem_delete(struct iomem_client *client, const char *name)
{
        struct proto_name m = { .name = name };
        uint8_t buf[CLIENT_REQUEST_MAX];
        int r;

        r = client_name_start(client, name);
        if (r < 0)
                return r;
        return client_call_empty(client, PROTO_OP_DELETE, buf, proto_name_encode(&m, buf, sizeof(buf)));
}

IOMEM_EXPORT int iomem_ping(struct iomem_client *client)
{
        static uint64_t counter; /* shared by threads */
        struct proto_ping m = { .cookie = ((uint64_t)getpid() << 32) ^
                                          __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) };
        struct proto_ping rep;
        struct transport_frame f;
        uint8_t buf[CLIENT_REQUEST_MAX];
        int r;

        if (!client)
                return -EINVAL;
        r = client_call_again(client, PROTO_OP_PING, buf, proto_ping_encode(&m, buf, sizeof(buf)), NULL, &f);
        if (r < 0)
                return r;
        r = proto_ping_decode(f.payload, f.hdr.length, &rep);
        transport_frame_deinit(&f);
        return r < 0 || rep.cookie != m.cookie ? -EPROTO : 0;
}

IOMEM_EXPORT int iomem_status(struct iomem_client *client, struct iomem_status *st)
{
        struct proto_status_reply rep;
        struct transport_frame f;
        int r;

        if (!client || !st)
                return client_fail_early(client, -EINVAL);
        r = client_call_again(client, PROTO_OP_STATUS, NULL, 0, NULL, &f);
        if (r < 0)
                return r;
        r = proto_status_reply_decode(f.payload, f.hdr.length, &rep);
        if (r < 0) {
                transport_frame_deinit(&f);
                return -EPROTO;
        }
        *st = (struct iomem_status){
                .regions = rep.regions,
                .bytes = rep.bytes,
                .connections = rep.connections,
                .uptime_sec = rep.uptime_sec,
                .backend = (enum iomem_backend)rep.backend,
        };
        client_copy(st->server_version, sizeof(st->server_version), rep.server_version);
        transport_frame_deinit(&f);
        return 0;
}

/* The text of a metric's label, as iomem.h describes it. */
static void client_metric_label(struct iomem_metric *m)
{
        const char *s = NULL;

        switch (m->label_kind) {
        case IOMEM_METRIC_LABEL_REQUEST:
                s = m->label ? proto_opcode_name((uint16_t)m->label) : "other";
                if (!s) {
                        snprintf(m->label_value, sizeof(m->label_value), "0x%04x", (unsigned)m->label);
                        return;
                }
                break;
        case IOMEM_METRIC_LABEL_CODE:
                s = m->label ? strerrorname_np((int)m->label) : "other";
                if (!s) {
                        snprintf(m->label_value, sizeof(m->label_value), "%u", (unsigned)m->label);
                        return;
                }
                break;
        case IOMEM_METRIC_LABEL_UID:
                snprintf(m->label_value, sizeof(m->label_value), "%u", (unsigned)m->label);
                return;
        case IOMEM_METRIC_LABEL_NONE:
        default:
                s = "";
                break;
        }
        client_copy(m->label_value, sizeof(m->label_value), s);
}

IOMEM_EXPORT int iomem_metrics(struct iomem_client *client, uint32_t *flagsp,
                               int (*cb)(const struct iomem_metric *m, void *userdata), void *userdata)
{
        static const char *const label_names[] = { NULL, "request", "code", "uid" };
        struct proto_metrics_reply rep;
        struct client_dispatch here;
        struct transport_frame f;
        int r;

        if (!client || !cb)
                return client_fail_early(client, -EINVAL);
        r = client_call_again(client, PROTO_OP_METRICS, NULL, 0, NULL, &f); /* safe to repeat: it changes nothing */
        if (r < 0)
                return r;
        if (proto_metrics_reply_decode(f.payload, f.hdr.length, &rep) < 0) {
                transport_frame_deinit(&f);
                return -EPROTO;
        }
        if (flagsp)
                *flagsp = rep.flags;
        r = 0;
        client_lock(client);
        client_dispatch_enter_locked(client, &here); /* @cb may disconnect: see iomem_disconnect() */
        client_unlock(client);
        for (uint32_t i = 0; i < rep.count && r == 0 && !client->disconnect_deferred; i++) {
                const struct proto_metric_info *info;
                struct proto_metric_entry e;
                struct iomem_metric m;

                proto_metrics_entry_get(&rep, i, &e);
                info = proto_metric_info(e.metric);
                m = (struct iomem_metric){ .id = e.metric, .label = e.label, .value = e.value };
                if (info && info->label < sizeof(label_names) / sizeof(label_names[0])) {
                        m.name = info->name;
                        m.help = info->help;
                        m.type = (enum iomem_metric_type)info->type;
                        m.label_kind = (enum iomem_metric_label)info->label;
                        m.label_name = label_names[info->label];
                        client_metric_label(&m);
                }
                r = cb(&m, userdata);
        }
        transport_frame_deinit(&f); /* before a deferred disconnect: its payload may be the client's */
        client_lock(client);
        return client_dispatch_leave_locked(client, &here, r);
}

IOMEM_EXPORT int iomem_chmod(struct iomem_client *client, const char *name, uint32_t mode)
{
        struct proto_chmod m = { .mode = mode, .name = name };
        uint8_t buf[CLIENT_REQUEST_MAX];
        int r;

        r = client_name_start(client, name);
        if (r < 0)
                return r;
        return client_call_empty(client, PROTO_OP_CHMOD, buf, proto_chmod_encode(&m, buf, sizeof(buf)));
}

IOMEM_EXPORT int iomem_chown(struct iomem_client *client, const char *name, uint32_t uid, uint32_t gid)
{
        struct proto_chown m = { .uid = uid, .gid = gid, .name = name };
        uint8_t buf[CLIENT_REQUEST_MAX];
        int r;

        r = client_name_start(client, name);
        if (r < 0)
                return r;
        return client_call_empty(client, PROTO_OP_CHOWN, buf, proto_chown_encode(&m, buf, sizeof(buf)));
}

IOMEM_EXPORT int iomem_quota(struct iomem_client *client, struct iomem_quota *q)
{
        struct proto_quota_reply rep;
        struct transport_frame f;
        int r;

        if (!client || !q)
                return client_fail_early(client, -EINVAL);
        r = client_call_again(client, PROTO_OP_QUOTA, NULL, 0, NULL, &f);
        if (r < 0)
                return r;
        r = proto_quota_reply_decode(f.payload, f.hdr.length, &rep);
        transport_frame_deinit(&f);
        if (r < 0)
                return -EPROTO;
        *q = (struct iomem_quota){
                .uid = rep.uid,
                .gid = rep.gid,
                .bytes = rep.bytes,
                .max_bytes = rep.max_bytes,
                .regions = rep.regions,
                .max_regions = rep.max_regions,
                .connections = rep.connections,
                .max_connections = rep.max_connections,
                .fds = rep.fds,
                .max_fds = rep.max_fds,
                .max_region_size = rep.max_region_size,
        };
        return 0;
}

/*
 * The fd to send for @region with a REGISTER or PUBLISH: a copy (F_DUPFD_CLOEXEC) for the call to consume; its size,
 * refreshed first, in *sizep. Return: the fd, or the error of iomem_region_refresh() or iomem_region_dup_fd().
 */
static int client_region_send_fd(const struct iomem_region *region, uint64_t *sizep)
{
        int r;

        r = iomem_region_refresh((struct iomem_region *)region);
        if (r < 0)
                return r;
        *sizep = iomem_region_size(region);
        return iomem_region_dup_fd(region);
}

IOMEM_EXPORT int iomem_register(struct iomem_client *client, const char *name, const struct iomem_region *region,
                                uint32_t flags, uint32_t mode, uint64_t *idp)
{
        struct proto_register m = { .flags = flags, .mode = mode, .name = name };
        struct proto_register_reply rep;
        struct transport_frame f;
        uint8_t buf[CLIENT_REQUEST_MAX];
        int fd, r;

        if (!client || !region || !name || !*name)
                return client_fail_early(client, -EINVAL);
        r = client_name_check(client, name);
        if (r < 0)
                return r;
        if (flags & ~IOMEM_REGISTER_LEASE)
                return client_fail_early(client, -EINVAL);
        fd = client_region_send_fd(region, &m.size);
        if (fd < 0)
                return fd;
        /* fd consumed */
        r = client_call_fds(client, PROTO_OP_REGISTER, buf, proto_register_encode(&m, buf, sizeof(buf)), &fd, 1, 0,
                            0, &f);
        if (r < 0)
                return r;
        r = proto_register_reply_decode(f.payload, f.hdr.length, &rep);
        transport_frame_deinit(&f);
        if (r < 0)
                return -EPROTO;
        if (idp)
                *idp = rep.id;
        return 0;
}

/* ---- the EVENTS feature: watching, events, publishing, versions ---------- */

#define CLIENT_EVENTS_MAX 4096u /* events kept while the caller does not take them; then one OVERFLOW */

struct client_event {
        struct client_event *next;
        struct iomem_event ev;
};

struct client_watch {
        uint32_t id;   /* what iomem_watch() returned; stays across reconnects */
        uint32_t wire; /* the daemon's id on the current connection */
        char prefix[PROTO_NAME_MAX + 1];
};

/* Return: the watch whose daemon id is @wire, or NULL. */
static struct client_watch *client_watch_by_wire(struct iomem_client *c, uint32_t wire)
{
        for (unsigned i = 0; i < c->nwatches; i++)
                if (c->watches[i].wire == wire)
                        return &c->watches[i];
        return NULL;
}

/* WATCH @prefix on the current connection, without reconnecting. Return: 0 with *wirep; negative errno. */
static int client_watch_send(struct iomem_client *c, const char *prefix, uint32_t *wirep)
{
        struct proto_watch m = { .prefix = prefix };
        struct proto_watch_reply rep;
        struct transport_frame f;
        uint8_t buf[CLIENT_REQUEST_MAX];
        int len = proto_watch_encode(&m, buf, sizeof(buf)), r;

        if (len < 0)
                return len;
        r = client_exchange(c, PROTO_OP_WATCH, buf, (size_t)len, NULL, 0, 0, 0, &f, NULL);
        if (r < 0)
                return r;
        r = proto_watch_reply_decode(f.payload, f.hdr.length, &rep);
        transport_frame_deinit(&f);
        if (r < 0)
                return -EPROTO;
        *wirep = rep.watch_id;
        return 0;
}

/*
 * client_unwatch_stray() - @f is the reply to a request of @opcode that nobody waits for any more (a blocking call
 * interrupted: client_abandon()). If it is a WATCH that succeeded, the daemon made a watch the caller never got an
 * id for: it would stay until the connection ends, counted against the uid's watch quota and sending events that
 * are dropped here (client_event_decode() knows no such watch). UNWATCH it, fire and forget: queued behind what is
 * already queued (never in the middle of a frame), with an entry of its own in @pending whose reply is dropped too,
 * and sent now if the socket takes it, else by the next call that sends or waits (client_wait() flushes the queue).
 * If it cannot be queued (no memory), the watch stays, as before: harmless to the stream. Called with the lock held.
 */
static void client_unwatch_stray(struct iomem_client *c, uint16_t opcode, const struct transport_frame *f)
{
        struct proto_watch_reply rep;
        struct proto_unwatch m = { 0 };
        struct proto_header h = { .opcode = PROTO_OP_UNWATCH };
        struct client_pending *q;
        uint8_t buf[16];
        int len, r;

        if (opcode != PROTO_OP_WATCH || c->broken || (f->hdr.flags & PROTO_FLAG_ERROR) ||
            proto_watch_reply_decode(f->payload, f->hdr.length, &rep) < 0)
                return;
        m.watch_id = rep.watch_id;
        len = proto_unwatch_encode(&m, buf, sizeof(buf));
        if (len < 0)
                return;
        q = client_pending_new(CLIENT_DISCARD, PROTO_OP_UNWATCH, 0, NULL, NULL);
        if (!q)
                return;
        h.id = q->id = client_next_id(c);
        r = transport_queue(&c->t, &h, buf, (size_t)len, NULL, 0);
        if (r < 0) {
                free(q);
                return;
        }
        client_pending_link(c, q);
        /* a failure here shows at the next read or flush, where the connection breaks as usual */
        (void)transport_flush(&c->t);
}

/*
 * After a reconnect: the daemon's watches ended with the old connection.
 * Make each again (the caller's ids stay) and put one OVERFLOW first, since
 * changes made while no connection existed were missed: the caller
 * re-reads the state as after any OVERFLOW. Return: 0; negative errno.
 */
static int client_rewatch(struct iomem_client *c)
{
        int r;

        if (!c->hello_flags || !c->nwatches)
                return 0;
        c->rewatching = true; /* as HELLO's wait: the header says a reconnect is not ended by an interrupt */
        for (unsigned i = 0; i < c->nwatches; i++) {
                r = client_watch_send(c, c->watches[i].prefix, &c->watches[i].wire);
                if (r < 0) {
                        c->rewatching = false;
                        return r;
                }
        }
        c->rewatching = false;
        c->dropped += c->nevents;
        client_events_clear(c);
        c->overflow_pending = c->nwatches > (c->cache_watch ? 1u : 0u);
        c->cache_gen++;
        client_cache_drop(c, NULL);
        return 0;
}

/* Drop the open cache's entries for @name (NULL = all). Called with the lock held. */
static void client_cache_drop(struct iomem_client *c, const char *name)
{
        for (unsigned i = 0; i < c->ncache;) {
                if (!name || strcmp(c->cache[i].name, name) == 0) {
                        close(c->cache[i].fd);
                        memmove(&c->cache[i], &c->cache[i + 1], (c->ncache - i - 1) * sizeof(c->cache[0]));
                        c->ncache--;
                } else {
                        i++;
                }
        }
}

static void client_events_clear(struct iomem_client *c)
{
        struct client_event *e, *next;

        for (e = c->evq_head; e; e = next) {
                next = e->next;
                free(e);
        }
        c->evq_head = c->evq_tail = NULL;
        c->nevents = 0;
}

/*
 * Decode an event frame into @ev. Return: 1; 0 for an event this library
 * does not know (skipped, as the protocol says); -EPROTO if malformed.
 */
static int client_event_decode(struct iomem_client *c, const struct transport_frame *f, struct iomem_event *ev)
{
        struct proto_event_overflow o;
        struct proto_event m;

        if (f->nfds != 0 || !(f->hdr.flags & PROTO_FLAG_REPLY) || (f->hdr.flags & PROTO_FLAG_ERROR))
                return -EPROTO;
        *ev = (struct iomem_event){ .kind = f->hdr.opcode, .watch_id = f->hdr.id };
        if (f->hdr.opcode != PROTO_EV_OVERFLOW) {
                const struct client_watch *w = client_watch_by_wire(c, f->hdr.id);

                if (!w)
                        return 0; /* a watch this client no longer has */
                ev->watch_id = w->id;
        }
        if (f->hdr.opcode == PROTO_EV_OVERFLOW) {
                if (proto_event_overflow_decode(f->payload, f->hdr.length, &o) < 0)
                        return -EPROTO;
                ev->dropped = o.dropped;
                return 1;
        }
        if (!proto_event_name(f->hdr.opcode))
                return 0;
        if (proto_event_decode(f->payload, f->hdr.length, &m) < 0)
                return -EPROTO;
        ev->id = m.id;
        ev->generation = m.generation;
        ev->size = m.size;
        ev->replaced_id = m.replaced_id;
        ev->seals = m.seals;
        ev->mode = m.mode;
        ev->uid = m.uid;
        ev->gid = m.gid;
        client_copy(ev->name, sizeof(ev->name), m.name);
        return 1;
}

/* Keep an event that came while a reply was awaited. Return: 0; -EPROTO. */
static int client_event_stash(struct iomem_client *c, const struct transport_frame *f)
{
        struct iomem_event ev;
        struct client_event *e;
        int r;

        r = client_event_decode(c, f, &ev);
        if (r <= 0)
                return r;
        if (c->cache_on) {
                /* any change to a name drops what the open cache holds for it; an OVERFLOW drops everything */
                c->cache_gen++;
                client_cache_drop(c, ev.kind == IOMEM_EVENT_OVERFLOW ? NULL : ev.name);
                /* the cache's own watch is not the caller's: its events stop here */
                if (ev.kind == IOMEM_EVENT_OVERFLOW ? c->nwatches == 1 : ev.watch_id == c->cache_watch)
                        return 0;
        }
        if (c->nevents >= CLIENT_EVENTS_MAX || !(e = malloc(sizeof(*e)))) {
                c->dropped += (uint64_t)c->nevents + 1;
                client_events_clear(c);
                c->overflow_pending = true;
                return 0;
        }
        e->ev = ev;
        if (e->ev.kind == IOMEM_EVENT_OVERFLOW) {
                /* the caller resynchronises anyway: what we hold goes too, and one OVERFLOW comes first */
                c->dropped += e->ev.dropped + c->nevents;
                client_events_clear(c);
                c->overflow_pending = true;
                free(e);
                return 0;
        }
        e->next = NULL;
        if (c->evq_tail)
                c->evq_tail->next = e;
        else
                c->evq_head = e;
        c->evq_tail = e;
        c->nevents++;
        return 0;
}

/* Take the next kept event into *@ev. Called with the lock held. Return: true; false if none is kept. */
static bool client_event_pop(struct iomem_client *c, struct iomem_event *ev)
{
        struct client_event *e = c->evq_head;

        /* an OVERFLOW stands for the events it replaced, before those that came after it */
        if (c->overflow_pending) {
                *ev = (struct iomem_event){ .kind = IOMEM_EVENT_OVERFLOW, .dropped = c->dropped };
                c->overflow_pending = false;
                c->dropped = 0;
                return true;
        }
        if (!e)
                return false;
        *ev = e->ev;
        c->evq_head = e->next;
        if (!c->evq_head)
                c->evq_tail = NULL;
        c->nevents--;
        free(e);
        return true;
}

IOMEM_EXPORT int iomem_next_event(struct iomem_client *client, struct iomem_event *ev, int timeout_ms)
{
        int64_t deadline;
        int r;

        if (!client || !ev)
                return client_fail_early(client, -EINVAL);
        if (!client->hello_flags)
                return client_fail_early(client, -EOPNOTSUPP);
        if (client_fork_copy(client))
                return -ECHILD;
        deadline = timeout_ms < 0 ? -1 : client_now_ms() + timeout_ms;
        client_lock(client);
        /* a call of its own: its reconnects get a new window (client_reconnect() is called here directly) */
        client->reconnect_deadline_set = false;
        client->same_call = false;
        for (;;) {
                if (client_event_pop(client, ev)) {
                        r = 0;
                        break;
                }
                if (client->broken) {
                        /* the daemon went away: connect again (its watches are made again, OVERFLOW first) */
                        r = -ENOTCONN;
                        if (!client->gone || client->reconnect_ms == 0 || client_reconnect(client) < 0)
                                break;
                        continue;
                }
                r = client_wait(client, NULL, deadline);
                if (r == -EINTR)
                        break; /* iomem_client_set_interrupt_cb(): nothing was asked, nothing is left behind */
                if (r == -ETIMEDOUT) {
                        r = -EAGAIN; /* nothing came: the stream is still in sync */
                        break;
                }
                if (r < 0 && !(client->gone && client->reconnect_ms != 0)) {
                        /* what ended it, once; -ENOTCONN from then on */
                        r = client->gone ? -ECONNRESET : client->broken ? client->broken : r;
                        break;
                }
        }
        client_unlock(client);
        return r;
}

IOMEM_EXPORT int iomem_watch(struct iomem_client *client, const char *prefix, uint32_t *watch_idp)
{
        struct proto_watch m = { .prefix = prefix ? prefix : "" };
        struct proto_watch_reply rep;
        struct client_watch *ws, *w;
        struct transport_frame f;
        uint8_t buf[CLIENT_REQUEST_MAX];
        int r;

        if (!client)
                return -EINVAL;
        r = client_name_check(client, m.prefix);
        if (r < 0)
                return r;
        client_lock(client);
        ws = realloc(client->watches, (client->nwatches + 1) * sizeof(*ws));
        if (!ws) {
                client_message_clear(client);
                client_unlock(client);
                return -ENOMEM;
        }
        client->watches = ws;
        r = client_call_fds_locked(client, PROTO_OP_WATCH, buf, proto_watch_encode(&m, buf, sizeof(buf)), NULL, 0,
                                   0, 0, &f, NULL);
        if (r == 0) {
                r = proto_watch_reply_decode(f.payload, f.hdr.length, &rep);
                transport_frame_deinit(&f);
                if (r < 0)
                        r = -EPROTO;
        }
        if (r < 0) {
                client_unlock(client);
                return r;
        }
        w = &client->watches[client->nwatches++];
        if (++client->next_watch == 0)
                client->next_watch = 1;
        w->id = client->next_watch;
        w->wire = rep.watch_id;
        client_copy(w->prefix, sizeof(w->prefix), m.prefix);
        if (watch_idp)
                *watch_idp = w->id;
        client_unlock(client);
        return 0;
}

IOMEM_EXPORT int iomem_unwatch(struct iomem_client *client, uint32_t watch_id)
{
        struct proto_unwatch m = { 0 };
        uint8_t buf[CLIENT_REQUEST_MAX];
        unsigned i;
        int r;

        struct transport_frame f;

        if (!client || watch_id == 0)
                return client_fail_early(client, -EINVAL);
        client_lock(client);
        for (i = 0; i < client->nwatches && client->watches[i].id != watch_id; i++)
                ;
        if (i == client->nwatches) {
                client_message_clear(client);
                client_unlock(client);
                return client->hello_flags ? -ENOENT : -EOPNOTSUPP;
        }
        m.watch_id = client->watches[i].wire;
        r = client_call_fds_locked(client, PROTO_OP_UNWATCH, buf, proto_unwatch_encode(&m, buf, sizeof(buf)), NULL,
                                   0, 0, 0, &f, NULL);
        if (r == 0) {
                r = f.hdr.length == 0 ? 0 : -EPROTO;
                transport_frame_deinit(&f);
        }
        /* gone either way: the daemon's ended with the request or with the connection */
        if (r == 0 || r == -ENOENT || r == -ECONNRESET) {
                /* the watch may have moved while the lock was released in waiting */
                for (i = 0; i < client->nwatches && client->watches[i].id != watch_id; i++)
                        ;
                if (i < client->nwatches)
                        client->watches[i] = client->watches[--client->nwatches];
                if (r == -ENOENT)
                        r = 0;
        }
        client_unlock(client);
        return r;
}

IOMEM_EXPORT int iomem_publish(struct iomem_client *client, const char *name, const struct iomem_region *region,
                               const struct iomem_publish_opts *opts, uint64_t *generationp)
{
        struct proto_publish m = { .name = name };
        struct proto_publish_reply rep;
        struct transport_frame f;
        uint8_t buf[CLIENT_REQUEST_MAX];
        int fd, r;

        if (!client || !region || !name || !*name)
                return client_fail_early(client, -EINVAL);
        r = client_name_check(client, name);
        if (r < 0)
                return r;
        if (opts) {
                if (opts->flags & ~IOMEM_PUBLISH_LEASE)
                        return client_fail_early(client, -EINVAL);
                m.flags = opts->flags;
                m.mode = opts->mode;
                m.expect_generation = opts->expect_generation;
        }
        fd = client_region_send_fd(region, &m.size);
        if (fd < 0)
                return fd;
        /* fd consumed */
        r = client_call_fds(client, PROTO_OP_PUBLISH, buf, proto_publish_encode(&m, buf, sizeof(buf)), &fd, 1, 0, 0,
                            &f);
        if (r < 0)
                return r;
        r = proto_publish_reply_decode(f.payload, f.hdr.length, &rep);
        transport_frame_deinit(&f);
        if (r < 0)
                return -EPROTO;
        if (generationp)
                *generationp = rep.generation;
        return 0;
}

IOMEM_EXPORT int iomem_open_version(struct iomem_client *client, const char *name, uint32_t flags,
                                    uint64_t after_generation, int wait_ms, struct iomem_region **regionp,
                                    uint64_t *generationp)
{
        struct proto_openv m = { .name = name, .after_generation = after_generation };
        struct proto_region_infov info;
        struct transport_frame f;
        uint8_t buf[CLIENT_REQUEST_MAX];
        int r;

        if (!client || !regionp)
                return client_fail_early(client, -EINVAL);
        r = client_name_check(client, name);
        if (r < 0)
                return r;
        if (flags & ~IOMEM_OPEN_RDONLY)
                return client_fail_early(client, -EINVAL);
        if (flags & IOMEM_OPEN_RDONLY)
                m.flags |= PROTO_OPEN_RDONLY;
        if (wait_ms != 0) {
                m.flags |= PROTO_OPEN_WAIT;
                m.timeout_ms = wait_ms < 0 ? UINT32_MAX : (uint32_t)wait_ms;
        }
        r = client_call(client, PROTO_OP_OPENV, buf, proto_openv_encode(&m, buf, sizeof(buf)), wait_ms, 1, &f);
        if (r < 0)
                return r;
        if (proto_region_infov_decode(f.payload, f.hdr.length, &info) < 0)
                r = -EPROTO;
        else
                r = client_region_from_info(&f, &info.info, regionp);
        transport_frame_deinit(&f);
        if (r == 0 && generationp)
                *generationp = info.generation;
        return r;
}

IOMEM_EXPORT int iomem_stat_version(struct iomem_client *client, const char *name, struct iomem_stat *st,
                                    uint64_t *generationp)
{
        struct proto_name m = { .name = name };
        struct transport_frame f;
        uint8_t buf[CLIENT_REQUEST_MAX];
        int r;

        if (!client || !st)
                return client_fail_early(client, -EINVAL);
        r = client_name_check(client, name);
        if (r < 0)
                return r;
        r = client_call(client, PROTO_OP_STATV, buf, proto_name_encode(&m, buf, sizeof(buf)), 0, 0, &f);
        if (r < 0)
                return r;
        r = client_stat_from_reply(&f, true, st, generationp);
        transport_frame_deinit(&f);
        return r;
}

/* ---- the asynchronous client --------------------------------------------- */

IOMEM_EXPORT void iomem_client_set_event_cb(struct iomem_client *client, iomem_event_cb cb, void *userdata)
{
        if (!client)
                return;
        client_lock(client);
        client->event_cb = cb;
        client->event_userdata = userdata;
        client_unlock(client);
}

IOMEM_EXPORT int iomem_client_get_events(struct iomem_client *client)
{
        int r;

        if (!client)
                return -EINVAL;
        if (client_fork_copy(client))
                return -ECHILD;
        client_lock(client);
        /* driven by a loop: send the HELLO now, so that an idle loop is not closed by the handshake timeout */
        client_hello_send_now(client, false);
        if (client->broken)
                r = -ENOTCONN;
        else
                r = POLLIN | (transport_has_output(&client->t) ? POLLOUT : 0);
        client_unlock(client);
        return r;
}

IOMEM_EXPORT int iomem_client_get_timeout(struct iomem_client *client)
{
        int64_t deadline = -1;
        int r;

        if (!client)
                return -1;
        client_lock(client);
        if (client->done_head || (client->unread && !client->broken) ||
            (client->event_cb && (client->overflow_pending || client->evq_head))) {
                r = 0;
        } else {
                /* a lower bound: a loop may wake before the first deadline, never after it */
                deadline = client_deadline_next(client);
                r = client_left_ms(deadline);
        }
        client_unlock(client);
        return r;
}

/*
 * Queue an asynchronous request (@p, filled by the caller: kind, cb,
 * userdata, want_fds, opcode) and start sending it.
 * Return: 0 (p is the client's now); -ENOTCONN; negative errno (p freed).
 */
static int client_submit(struct iomem_client *c, struct client_pending *p, const uint8_t *payload, int len,
                         int extra_ms)
{
        struct proto_header h = { .opcode = p->opcode };
        int r = len;

        if (r < 0) {
                free(p);
                return r;
        }
        client_lock(c);
        if (c->broken || client_fork_copy(c)) {
                r = c->broken ? -ENOTCONN : -ECHILD;
                goto fail;
        }
        if (c->hello_held) {
                /* the first request: HELLO goes in front of it (without FDS_IN_ORDER: an older daemon's refusal
                 * of the flag could not be retried from here) */
                r = client_hello_queue(c, false);
                if (r < 0)
                        goto fail;
        }
        h.id = p->id = client_next_id(c);
        p->deadline = client_deadline(c, extra_ms);
        r = transport_queue(&c->t, &h, payload, (size_t)len, NULL, 0);
        if (r < 0)
                goto fail;
        client_pending_link(c, p);
        r = transport_flush(&c->t);
        if (client_error_is_gone(r) && c->hello_p && !c->hello_p->done)
                r = 0; /* a refusal may be queued before the close: iomem_client_process() reads it */
        if (r < 0 && r != -EAGAIN)
                client_break(c, r); /* the callback says so */
        /* -EAGAIN: the rest goes from iomem_client_process() (POLLOUT) or with the next blocking call */
        client_unlock(c);
        return 0;

fail:
        client_unlock(c);
        free(p);
        return r;
}

/* Decode an OPEN (@v false) or OPENV reply into a region. Return: 0; -EPROTO; negative errno. */
static int client_open_from_reply(struct transport_frame *f, bool v, struct iomem_region **regionp,
                                  uint64_t *generationp)
{
        struct proto_region_infov info = { .generation = 0 };

        if (v ? proto_region_infov_decode(f->payload, f->hdr.length, &info) < 0
              : proto_region_info_decode(f->payload, f->hdr.length, &info.info) < 0)
                return -EPROTO;
        if (generationp)
                *generationp = info.generation;
        return client_region_from_info(f, &info.info, regionp);
}

/* Decode a completed asynchronous request and call its callback (without the lock). */
static void client_complete_async(struct iomem_client *c, struct client_pending *p, int r)
{
        struct iomem_region *region = NULL;
        struct iomem_stat st;
        uint64_t generation = 0;

        switch (p->kind) {
        case CLIENT_ASYNC_OPEN:
        case CLIENT_ASYNC_OPENV:
                if (r == 0)
                        r = client_open_from_reply(&p->reply, p->kind == CLIENT_ASYNC_OPENV, &region, &generation);
                ((iomem_open_cb)(void (*)(void))p->cb)(c, r, r == 0 ? region : NULL, generation, p->userdata);
                break;
        case CLIENT_ASYNC_STAT:
                if (r == 0)
                        r = client_stat_from_reply(&p->reply, false, &st, NULL);
                ((iomem_stat_cb)(void (*)(void))p->cb)(c, r, r == 0 ? &st : NULL, p->userdata);
                break;
        case CLIENT_ASYNC_PING:
                if (r == 0) {
                        struct proto_ping rep;

                        if (proto_ping_decode(p->reply.payload, p->reply.hdr.length, &rep) < 0 ||
                            rep.cookie != p->cookie)
                                r = -EPROTO;
                }
                ((iomem_done_cb)(void (*)(void))p->cb)(c, r, p->userdata);
                break;
        case CLIENT_SYNC:
        default:
                break;
        }
        transport_frame_deinit(&p->reply);
        free(p);
}

IOMEM_EXPORT int iomem_client_process(struct iomem_client *client)
{
        struct client_dispatch here;
        struct iomem_event ev;
        int n = 0, r;

        if (!client)
                return -EINVAL;
        if (client_fork_copy(client))
                return -ECHILD;
        client_lock(client);
        if (client->disconnect_deferred) {
                /* a nested call after a callback disconnected the client: it is freed when the outermost returns */
                client_unlock(client);
                return -ESHUTDOWN;
        }
        client_dispatch_enter_locked(client, &here);
        if (!client->broken && !client->reading) {
                /* the rest, if any, at the next call (iomem_client_get_timeout() says 0 meanwhile) */
                client->unread = !client_read_available(client);
        }
        /* sending needs no reader's turn: a thread blocked reading does not watch for POLLOUT */
        if (!client->broken && transport_has_output(&client->t)) {
                r = transport_flush(&client->t);
                if (client_error_is_gone(r) && client->reading)
                        r = -EAGAIN; /* the reader will find the end of the stream, and what came before it */
                if (r < 0 && r != -EAGAIN)
                        client_break(client, r);
        }
        /* requests whose time is up: a later reply could be taken for another's, so the connection breaks */
        if (client_left_ms(client_deadline_next(client)) == 0) {
                for (struct client_pending *p = client->pending; p; p = p->next) {
                        if (client_pending_timed(p) && client_left_ms(p->deadline) == 0) {
                                client_pending_complete(client, p, -ETIMEDOUT, NULL);
                                client_break(client, -ETIMEDOUT);
                                break;
                        }
                }
        }
        while (!client->disconnect_deferred && client->event_cb && client_event_pop(client, &ev)) {
                iomem_event_cb cb = client->event_cb;
                void *ud = client->event_userdata;

                client_unlock(client);
                cb(client, &ev, ud);
                n++;
                client_lock(client);
        }
        while (!client->disconnect_deferred && client->done_head) {
                struct client_pending *p = client->done_head;

                client->done_head = p->next;
                if (!client->done_head)
                        client->done_tail = NULL;
                /* the callback may read iomem_client_error_message(): this completion's detail, or "" */
                client_message_clear(client);
                r = client_reply_result(client, p);
                client_unlock(client);
                client_complete_async(client, p, r);
                n++;
                client_lock(client);
        }
        return client_dispatch_leave_locked(client, &here, client->broken ? -ENOTCONN : n);
}

static int client_open_async(struct iomem_client *client, uint16_t opcode, const char *name, uint32_t flags,
                             uint64_t after_generation, int wait_ms, iomem_open_cb cb, void *userdata)
{
        uint8_t buf[CLIENT_REQUEST_MAX];
        struct client_pending *p;
        uint32_t pflags = 0, timeout = 0;
        int len;

        if (!client || !cb || client_name_check(client, name) < 0 || (flags & ~IOMEM_OPEN_RDONLY))
                return client_fail_early(client, -EINVAL);
        if (flags & IOMEM_OPEN_RDONLY)
                pflags |= PROTO_OPEN_RDONLY;
        if (wait_ms != 0) {
                pflags |= PROTO_OPEN_WAIT;
                timeout = wait_ms < 0 ? UINT32_MAX : (uint32_t)wait_ms;
        }
        if (opcode == PROTO_OP_OPENV) {
                struct proto_openv m = { .name = name, .flags = pflags, .timeout_ms = timeout,
                                         .after_generation = after_generation };

                if (!client->hello_flags)
                        return client_fail_early(client, -EOPNOTSUPP);
                len = proto_openv_encode(&m, buf, sizeof(buf));
        } else {
                struct proto_open m = { .name = name, .flags = pflags, .timeout_ms = timeout };

                len = proto_open_encode(&m, buf, sizeof(buf));
        }
        p = client_pending_new(opcode == PROTO_OP_OPENV ? CLIENT_ASYNC_OPENV : CLIENT_ASYNC_OPEN, opcode, 1,
                               (void (*)(void))cb, userdata);
        if (!p)
                return -ENOMEM;
        return client_submit(client, p, buf, len, wait_ms);
}

IOMEM_EXPORT int iomem_open_async(struct iomem_client *client, const char *name, uint32_t flags, int wait_ms,
                                  iomem_open_cb cb, void *userdata)
{
        return client_open_async(client, PROTO_OP_OPEN, name, flags, 0, wait_ms, cb, userdata);
}

IOMEM_EXPORT int iomem_open_version_async(struct iomem_client *client, const char *name, uint32_t flags,
                                          uint64_t after_generation, int wait_ms, iomem_open_cb cb, void *userdata)
{
        return client_open_async(client, PROTO_OP_OPENV, name, flags, after_generation, wait_ms, cb, userdata);
}

IOMEM_EXPORT int iomem_stat_async(struct iomem_client *client, const char *name, iomem_stat_cb cb, void *userdata)
{
        struct proto_name m = { .name = name };
        uint8_t buf[CLIENT_REQUEST_MAX];
        struct client_pending *p;

        if (!client || !cb || client_name_check(client, name) < 0)
                return client_fail_early(client, -EINVAL);
        p = client_pending_new(CLIENT_ASYNC_STAT, PROTO_OP_STAT, 0, (void (*)(void))cb, userdata);
        if (!p)
                return -ENOMEM;
        return client_submit(client, p, buf, proto_name_encode(&m, buf, sizeof(buf)), 0);
}

IOMEM_EXPORT int iomem_ping_async(struct iomem_client *client, iomem_done_cb cb, void *userdata)
{
        static uint64_t counter;
        struct proto_ping m;
        uint8_t buf[CLIENT_REQUEST_MAX];
        struct client_pending *p;

        if (!client || !cb)
                return client_fail_early(client, -EINVAL);
        p = client_pending_new(CLIENT_ASYNC_PING, PROTO_OP_PING, 0, (void (*)(void))cb, userdata);
        if (!p)
                return -ENOMEM;
        m.cookie = ((uint64_t)getpid() << 32) ^ __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
        p->cookie = m.cookie;
        return client_submit(client, p, buf, proto_ping_encode(&m, buf, sizeof(buf)), 0);
}

/* ---- cached opens ------------------------------------------------------------ */

/*
 * client_cache_get() - answer an OPEN from the cache: events already on the
 * socket are read first (without waiting), so a change whose event has
 * arrived is never missed.
 * Return: 0 with *regionp (a new duplicate of the cached fd); -ENOENT if not cached.
 */
static int client_cache_get(struct iomem_client *c, const char *name, uint32_t flags, struct iomem_region **regionp)
{
        struct client_cache_entry e;
        bool drained;
        unsigned i;
        int fd;

        if (!c->cache_on || client_fork_copy(c))
                return -ENOENT; /* a forked child's copy: iomem_open() refuses it (-ECHILD) */
        client_lock(c);
        /*
         * Events still unread may be about this name: then ask the daemon. They
         * are unread if more came than a bounded read takes, or, while another
         * thread is the reader (it polls without the lock, and routes what
         * arrives only once it has the lock), if anything waits on the socket.
         */
        drained = c->broken || (c->reading ? !client_input_waiting(c) : client_read_available(c));
        for (i = 0; i < c->ncache; i++)
                if (c->cache[i].open_flags == flags && strcmp(c->cache[i].name, name) == 0)
                        break;
        if (c->broken || !drained || i == c->ncache) {
                client_unlock(c);
                return -ENOENT;
        }
        e = c->cache[i];
        fd = fcntl(e.fd, F_DUPFD_CLOEXEC, 3);
        if (fd >= 0)
                c->cache_hits++;
        client_unlock(c);
        if (fd < 0)
                return -ENOENT; /* ask the daemon */
        return region_new_consume_fd(fd, e.size, e.backend, e.region_flags, e.id, regionp) == 0 ? 0 : -ENOENT;
}

/* Keep a duplicate of a region just opened, unless an event came after its reply (@gen). */
static void client_cache_put(struct iomem_client *c, const char *name, uint32_t flags, const struct iomem_region *r,
                             uint64_t gen)
{
        struct client_cache_entry *e;

        if (!c->cache_on)
                return;
        client_lock(c);
        if (c->cache_gen != gen || c->broken || !c->cache)
                goto out;
        client_cache_drop(c, name); /* one entry per name: the newest open */
        if (c->ncache == CLIENT_CACHE_MAX) {
                close(c->cache[0].fd);
                memmove(&c->cache[0], &c->cache[1], (c->ncache - 1) * sizeof(c->cache[0]));
                c->ncache--;
        }
        e = &c->cache[c->ncache];
        e->fd = iomem_region_dup_fd(r);
        if (e->fd < 0)
                goto out;
        client_copy(e->name, sizeof(e->name), name);
        e->open_flags = flags;
        e->size = iomem_region_size(r);
        e->id = iomem_region_id(r);
        e->region_flags = iomem_region_flags(r);
        e->backend = iomem_region_backend(r);
        c->ncache++;
out:
        client_unlock(c);
}

IOMEM_EXPORT int iomem_client_set_open_cache(struct iomem_client *client, int enable)
{
        uint32_t wid = 0;
        int r;

        if (!client)
                return -EINVAL;
        if (!client->hello_flags)
                return client_fail_early(client, -EOPNOTSUPP);
        if (!enable) {
                client_lock(client);
                client->cache_on = false;
                client_cache_drop(client, NULL);
                wid = client->cache_watch;
                client->cache_watch = 0;
                client_unlock(client);
                return wid ? iomem_unwatch(client, wid) : 0;
        }
        if (client->cache_on)
                return 0;
        client_lock(client);
        if (!client->cache)
                client->cache = calloc(CLIENT_CACHE_MAX, sizeof(*client->cache));
        client_unlock(client);
        if (!client->cache)
                return -ENOMEM;
        /* every change to every name this uid may read: the daemon's events invalidate the cache */
        r = iomem_watch(client, "", &wid);
        if (r < 0)
                return r;
        client_lock(client);
        client->cache_watch = wid;
        client->cache_gen++;
        client->cache_on = true;
        client_unlock(client);
        return 0;
}

IOMEM_EXPORT uint64_t iomem_client_open_cache_hits(const struct iomem_client *client)
{
        return client ? client->cache_hits : 0;
}
