/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* server: the event loop of iomemd (libevent): listening socket, connections, timers, signals. */
#include <errno.h>
#include <stddef.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "asan.h"
#include "closer.h"
#include "conn.h"
#include "log.h"
#include "quota.h"
#include "regtab.h"
#include "reserver.h"
#include "server.h"
#include "service.h"

#define SERVER_BACKLOG 1024
#define SERVER_ACCEPT_PAUSE_MS 100
#define SERVER_STATUS_INTERVAL_SEC 2
#define SERVER_LIMIT_LOG_INTERVAL_NS (10ULL * 1000000000ULL)
/* a reload logs each connection it drops up to this many, then their count in one line */
#define SERVER_RELOAD_DROP_LOG_MAX 10
/* region fds over a lowered budget parked per turn (the reload's, then each status tick's): one round trip each */
#define SERVER_PARK_BATCH 4096

struct server;

static void server_park_excess(struct server *s);
static void server_reload_fd_budget(struct server *s);

/*
 * The loop's view of one connection: its events and list links. The events
 * live in the same allocation (event_assign(), no event_new() each), and only
 * the read event is set up at once: a short-lived client that sends HELLO
 * with its connect() and reads its replies needs neither the write event nor
 * the timer, so it never pays for them (server_conn_wev(), server_conn_timer()).
 */
struct server_conn {
        struct server *server;
        struct conn *conn;
        struct event *rev;          /* always set up */
        struct event *wev, *timer;  /* NULL until first needed */
        struct event *hup;          /* EV_CLOSED, while the socket is not read (conn_wants_hangup()); NULL until then */
        uint64_t armed_deadline_ns; /* timer added for this deadline; 0 = not added */
        bool reading, writing; /* rev, wev added: no libevent call when nothing changes */
        bool watching_hup;     /* hup added */
        bool doomed; /* being freed (server_conn_finish()) */
        struct server_conn *prev, *next;
        _Alignas(max_align_t) unsigned char events[]; /* SERVER_CONN_EVENTS, server_event_size() bytes each */
};

enum { SERVER_CONN_REV, SERVER_CONN_WEV, SERVER_CONN_TIMER, SERVER_CONN_HUP, SERVER_CONN_EVENTS };

struct server {
        const struct config *config;
        struct event_base *base;
        struct regtab *regtab;
        struct conn_ctx ctx;
        int listen_fd;
        bool bound;           /* we bound the socket file, so we unlink it at exit, if it is still ours: */
        struct stat bound_st; /* the socket file, as bound */
        struct event *listen_ev, *accept_pause_ev, *status_ev, *watchdog_ev;
        struct event *reserver_ev; /* reserver_fd(): reservations done on a reserver thread */
        struct event *expire_ev;   /* leased regions of connections gone: a batch per turn (conn_region_expire()) */
        struct event *signal_evs[4];
        struct server_conn *conns; /* live */
        struct server_conn *spare; /* a freed one's block, for the next connection (server_conn_block()); poisoned */
        int spare_rev_fd; /* the socket @spare's read event is set up for (not pending), or -1 */
        bool accept_paused_logged;
        uint64_t limit_logged_ns;
        bool park_failed_logged; /* server_park_excess(): one warning per reload */
        uint64_t status_generation;
        size_t event_size; /* event_get_struct_event_size(), rounded up for the next event's alignment */
};

/* ---- connections -------------------------------------------------------- */

static void server_conn_read_cb(evutil_socket_t fd, short what, void *arg);
static void server_conn_write_cb(evutil_socket_t fd, short what, void *arg);
static void server_conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void server_conn_hup_cb(evutil_socket_t fd, short what, void *arg);

/* Return: the storage of @sc's event @which (SERVER_CONN_*). */
static struct event *server_conn_event(struct server_conn *sc, unsigned which)
{
        return (struct event *)(void *)(sc->events + which * sc->server->event_size);
}

/*
 * event_assign() fails only for a signal event that also asks for I/O, which
 * these are not: its result is not looked at.
 */

/* Return: @sc's write event, set up on first use. */
static struct event *server_conn_wev(struct server_conn *sc)
{
        if (!sc->wev) {
                sc->wev = server_conn_event(sc, SERVER_CONN_WEV);
                (void)event_assign(sc->wev, sc->server->base, conn_fd(sc->conn), EV_WRITE | EV_PERSIST,
                                   server_conn_write_cb, sc);
        }
        return sc->wev;
}

/*
 * Return: @sc's hang-up event, set up on first use. EV_CLOSED is EPOLLRDHUP:
 * a socket that is not read (EV_READ off, a reservation in flight) still
 * says that its peer shut its end, without a read and without waking the
 * loop for data that waits.
 */
static struct event *server_conn_hup(struct server_conn *sc)
{
        if (!sc->hup) {
                sc->hup = server_conn_event(sc, SERVER_CONN_HUP);
                (void)event_assign(sc->hup, sc->server->base, conn_fd(sc->conn), EV_CLOSED | EV_PERSIST,
                                   server_conn_hup_cb, sc);
        }
        return sc->hup;
}

/* Return: @sc's timer, set up on first use. */
static struct event *server_conn_timer(struct server_conn *sc)
{
        if (!sc->timer) {
                sc->timer = server_conn_event(sc, SERVER_CONN_TIMER);
                (void)evtimer_assign(sc->timer, sc->server->base, server_conn_timer_cb, sc);
        }
        return sc->timer;
}

/*
 * Take @sc's events out of the loop (pending or active), so that its memory
 * may go: only those set up and, for the read event, added (it is never
 * active when not added: event_del() takes it out of both).
 */
static void server_conn_unwatch(struct server_conn *sc)
{
        if (sc->reading)
                event_del(sc->rev);
        sc->reading = false;
        if (sc->wev)
                event_del(sc->wev); /* it may be active without being added (server_conn_notify()) */
        sc->writing = false;
        if (sc->timer)
                event_del(sc->timer);
        sc->armed_deadline_ns = 0;
        if (sc->hup)
                event_del(sc->hup);
        sc->watching_hup = false;
}

/* Return: the size of a struct server_conn's block, its events included. */
static size_t server_conn_size(const struct server *s)
{
        return sizeof(struct server_conn) + SERVER_CONN_EVENTS * s->event_size;
}

/*
 * Return: a block for a struct server_conn (uninitialised): the last freed one's if kept (a short-lived client
 * then costs no malloc and free), else malloc'd; NULL (-ENOMEM).
 */
static struct server_conn *server_conn_block(struct server *s)
{
        struct server_conn *sc = s->spare;

        if (!sc)
                return malloc(server_conn_size(s));
        s->spare = NULL;
        ASAN_UNPOISON_MEMORY_REGION(sc, server_conn_size(s));
        return sc;
}

/*
 * Give @sc's block back: kept for the next connection (one at most), else freed. @rev_fd is the socket its read
 * event was set up for (taken out of the loop: server_conn_unwatch()), or -1.
 */
static void server_conn_block_free(struct server *s, struct server_conn *sc, int rev_fd)
{
        if (s->spare) {
                free(sc);
                return;
        }
        s->spare = sc;
        s->spare_rev_fd = rev_fd;
        ASAN_POISON_MEMORY_REGION(sc, server_conn_size(s));
}

static struct server_conn *server_conn_free(struct server_conn *sc)
{
        int rev_fd;

        if (!sc)
                return NULL;
        rev_fd = sc->rev ? conn_fd(sc->conn) : -1; /* the read event is set up for the connection's socket */
        server_conn_unwatch(sc);
        conn_free(sc->conn);
        server_conn_block_free(sc->server, sc, rev_fd);
        return NULL;
}

static void server_list_unlink(struct server_conn **headp, struct server_conn *sc)
{
        if (sc->prev)
                sc->prev->next = sc->next;
        else
                *headp = sc->next;
        if (sc->next)
                sc->next->prev = sc->prev;
        sc->prev = sc->next = NULL;
}

static void server_list_push(struct server_conn **headp, struct server_conn *sc)
{
        sc->prev = NULL;
        sc->next = *headp;
        if (sc->next)
                sc->next->prev = sc;
        *headp = sc;
}

/*
 * Free a finished connection. Called last in its own callbacks (and in
 * server_conn_add()), when nothing of it is left on the stack: libevent lets
 * an event's memory go in its own callback, and unwatching takes its events
 * out of the queue of active events as well. doomed keeps a notification
 * from conn_free() (server_conn_notify()) from setting up its write event again.
 */
static void server_conn_finish(struct server_conn *sc)
{
        sc->doomed = true;
        server_list_unlink(&sc->server->conns, sc);
        server_conn_free(sc);
}

/* Bring the events of @sc in line with its connection's state. */
static void server_conn_update(struct server_conn *sc)
{
        uint64_t deadline, now;
        int r;

        r = conn_flush(sc->conn); /* also resumes a throttled connection whose replies drained */
        if ((r == -EAGAIN) != sc->writing) {
                sc->writing = r == -EAGAIN;
                if (sc->writing)
                        event_add(server_conn_wev(sc), NULL);
                else
                        event_del(sc->wev);
        }
        if (conn_is_done(sc->conn)) {
                server_conn_finish(sc); /* sc is gone */
                return;
        }
        if (conn_wants_input(sc->conn) != sc->reading) {
                sc->reading = !sc->reading;
                if (sc->reading)
                        event_add(sc->rev, NULL);
                else
                        event_del(sc->rev); /* closing, or throttled until its replies drain */
        }
        if (conn_wants_hangup(sc->conn) != sc->watching_hup) {
                sc->watching_hup = !sc->watching_hup;
                if (sc->watching_hup)
                        event_add(server_conn_hup(sc), NULL);
                else
                        event_del(sc->hup);
        }

        deadline = conn_deadline(sc->conn);
        if (deadline != sc->armed_deadline_ns) {
                sc->armed_deadline_ns = deadline;
                if (!deadline) {
                        evtimer_del(sc->timer);
                } else {
                        uint64_t delta;
                        struct timeval tv;

                        now = conn_now_ns();
                        delta = deadline > now ? deadline - now : 0;
                        tv.tv_sec = (time_t)(delta / 1000000000ULL);
                        tv.tv_usec = (suseconds_t)((delta % 1000000000ULL) / 1000);
                        evtimer_add(server_conn_timer(sc), &tv);
                }
        }
}

static void server_conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
        struct server_conn *sc = arg;

        (void)fd;
        (void)what;
        conn_handle_input(sc->conn);
        server_conn_update(sc);
}

static void server_conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
        struct server_conn *sc = arg;

        (void)fd;
        (void)what;
        server_conn_update(sc); /* flushes */
}

static void server_conn_hup_cb(evutil_socket_t fd, short what, void *arg)
{
        struct server_conn *sc = arg;

        (void)fd;
        (void)what;
        conn_hangup(sc->conn);
        server_conn_update(sc);
}

static void server_conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
        struct server_conn *sc = arg;

        (void)fd;
        (void)what;
        sc->armed_deadline_ns = 0;
        conn_timeout(sc->conn, conn_now_ns());
        server_conn_update(sc);
}

/*
 * conn.c reports output or death outside our callbacks (a parked OPEN
 * answered by another client's CREATE). Only schedule the work: running this
 * connection's flush now could dispatch its buffered requests (a throttled
 * connection resumes in conn_flush) in the middle of the other connection's
 * request, which may then use a region those requests deleted.
 */
/* conn_ctx.sweep: refresh every connection's count of fds in flight. */
static void server_conn_sweep(struct conn_ctx *ctx)
{
        struct server *s = (struct server *)((char *)ctx - offsetof(struct server, ctx));

        for (struct server_conn *sc = s->conns; sc; sc = sc->next)
                conn_refresh_unread(sc->conn);
}

static void server_conn_notify(struct conn *c, void *userdata)
{
        struct server_conn *sc = userdata;

        (void)c;
        if (!sc->doomed)
                event_active(server_conn_wev(sc), EV_WRITE, 0);
}

static int server_conn_add(struct server *s, int fd)
{
        int rev_fd = s->spare ? s->spare_rev_fd : -1;
        struct server_conn *sc;
        int r;

        /* the events' storage is left as it is: event_assign() sets every field it reads */
        sc = server_conn_block(s);
        if (!sc) {
                close(fd);
                return -ENOMEM;
        }
        *sc = (struct server_conn){ .server = s };
        r = conn_new(&s->ctx, fd, &sc->conn);
        fd = -1; /* consumed */
        if (r < 0) {
                server_conn_block_free(s, sc, -1);
                return r;
        }
        conn_set_userdata(sc->conn, sc);
        sc->rev = server_conn_event(sc, SERVER_CONN_REV);
        /*
         * A kept block's read event was set up for the same base, flags, callback and argument (the block
         * itself), and taken out of the loop: it needs setting up again only for another socket. The kernel
         * gives the lowest free fd, so a short-lived client usually gets its predecessor's.
         */
        if (conn_fd(sc->conn) != rev_fd &&
            event_assign(sc->rev, s->base, conn_fd(sc->conn), EV_READ | EV_PERSIST, server_conn_read_cb, sc) < 0) {
                sc->rev = NULL; /* not set up: the block is not kept as set up for this socket */
                server_conn_free(sc);
                return -ENOMEM;
        }
        server_list_push(&s->conns, sc);
        /*
         * A client usually sends HELLO (and its first request: docs/protocol.md,
         * section 6) right after connect(), so it is often here already: read
         * now rather than after one more turn of the loop. Nothing there: EAGAIN.
         */
        conn_handle_input(sc->conn);
        server_conn_update(sc); /* watches the socket; arms the handshake timer if HELLO is still to come */
        return 0;
}

/* ---- listening ---------------------------------------------------------- */

static void server_accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
        struct server *s = arg;

        (void)fd;
        (void)what;
        event_add(s->listen_ev, NULL);
}

/*
 * One connection per wake-up of the listener: its event is level-triggered,
 * so the loop calls again at once while more wait (after the connections
 * that are ready had their turn). Looping until accept4() says EAGAIN
 * cost that extra syscall on every short-lived connection, the common
 * case, to spare an epoll_wait() only when several arrive at once.
 */
static void server_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
        struct server *s = arg;
        int fd, r, tries = 0;

        (void)what;
        do
                fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        while (fd < 0 && (errno == EINTR || errno == ECONNABORTED) && ++tries < 64);
        if (fd < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
                        return;
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                        /* R1: out of fds; pause instead of spinning on a level-triggered event */
                        struct timeval tv = { 0, SERVER_ACCEPT_PAUSE_MS * 1000 };

                        if (!s->accept_paused_logged)
                                log_warning("accept: %s; pausing new connections", strerror(errno));
                        s->accept_paused_logged = true;
                        event_del(s->listen_ev);
                        evtimer_add(s->accept_pause_ev, &tv);
                        return;
                }
                log_error("accept: %s", strerror(errno));
                return;
        }
        s->accept_paused_logged = false;
        if (s->ctx.connections >= s->config->max_connections) {
                uint64_t now = conn_now_ns();

                conn_refuse_full(&s->ctx, fd); /* fd consumed */
                if (now - s->limit_logged_ns >= SERVER_LIMIT_LOG_INTERVAL_NS || !s->limit_logged_ns) {
                        log_warning("connection limit (%llu) reached: refusing new clients",
                                    (unsigned long long)s->config->max_connections);
                        s->limit_logged_ns = now;
                }
                return;
        }
        r = server_conn_add(s, fd);
        if (r < 0 && r != -EACCES && r != -EDQUOT) /* refusals are logged by conn.c */
                log_warning("cannot set up a connection: %s", strerror(-r));
}

/*
 * Test hook (IOMEMD_TEST_HOOKS with IOMEMD_TEST_BIND_GATE=PATH): between the bind() of the listening socket and its
 * listen(), create PATH.taken and wait while PATH exists, so that a test sees, for as long as it needs, what a client
 * would see at that moment of a start (no timing).
 */
static void server_test_bind_gate(void)
{
        const struct timespec tick = { 0, 5 * 1000 * 1000 };
        const char *gate = getenv("IOMEMD_TEST_BIND_GATE");
        char taken[PATH_MAX];
        int fd;

        if (!gate || !getenv("IOMEMD_TEST_HOOKS"))
                return;
        if (snprintf(taken, sizeof(taken), "%s.taken", gate) >= (int)sizeof(taken))
                return;
        log_warning("IOMEMD_TEST_BIND_GATE with IOMEMD_TEST_HOOKS set: the socket waits to listen while %s exists",
                    gate);
        fd = open(taken, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0)
                close(fd);
        while (access(gate, F_OK) == 0)
                nanosleep(&tick, NULL);
}

/*
 * Bind @fd to @sa's path and listen, the file made with its final mode 0666 by bind() itself: a client never sees it
 * with another mode (no EACCES for a non-root client, as when bind() made it with the umask's mode and a chmod()
 * followed). unix_bind() gives the file the socket inode's mode (0777 for every new socket) less the umask, so the
 * umask is 0111 for the bind() alone. The umask is the whole process's: no other thread runs here, none can create a
 * file under it (the closer's and reserver's threads start with their first job, after the event loop runs;
 * libevent and logging start none; keepers are forked later). listen() follows at once: connect() gets ECONNREFUSED
 * between the two, one syscall's window (docs/daemon.md), none with socket activation. Where the directory has a
 * default ACL, the umask is not used and the mode is the ACL's: then chmod() after listen(), as before. Return: 0
 * (*stp: the socket file) or -errno (-EADDRINUSE: bind() found the path taken; on any failure nothing is left).
 */
static int server_bind_listen(int fd, const struct sockaddr_un *sa, struct stat *stp)
{
        mode_t old = umask(0111);
        int r;

        if (bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
                r = -errno;
                umask(old);
                return r;
        }
        server_test_bind_gate();
        r = listen(fd, SERVER_BACKLOG) < 0 ? -errno : 0;
        umask(old);
        if (r == 0 && lstat(sa->sun_path, stp) < 0)
                r = -errno;
        /* access is decided by the daemon's checks (P1), not by the socket file */
        if (r == 0 && (stp->st_mode & 07777) != 0666 && (chmod(sa->sun_path, 0666) < 0 || lstat(sa->sun_path, stp) < 0))
                r = -errno;
        if (r < 0)
                unlink(sa->sun_path);
        return r;
}

/*
 * Bind the configured path and listen, replacing a stale socket file only if nobody answers on it.
 * Return: fd (*stp: the socket file, for server_unlink_socket()) or -errno.
 */
static int server_bind(const char *path, struct stat *stp)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        int fd, probe, r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        r = server_bind_listen(fd, &sa, stp);
        if (r == -EADDRINUSE) {
                probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (probe < 0) {
                        r = -errno;
                        goto fail;
                }
                r = connect(probe, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? errno : 0;
                close(probe);
                if (r == EACCES || r == EPERM) {
                        /* the socket file is there but not ours to try: "permission denied on its directory"
                         * would send the reader to the wrong place, and whether a daemon answers is unknown */
                        r = -ENOTSOCK; /* said here, in full: the caller adds nothing */
                        log_error("cannot listen on %s: a socket is there that uid %u may not connect to (another "
                                  "user's iomemd?); refusing to remove it: choose another --socket path",
                                  path, (unsigned)geteuid());
                        goto fail;
                }
                if (r != ECONNREFUSED) {
                        r = r == 0 ? -EADDRINUSE : -r; /* the caller says so, in one line */
                        goto fail;
                }
                /* only a socket is ours to replace: never unlink a file, device or link someone named by mistake */
                if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
                        r = -ENOTSOCK; /* said here, in full: the caller adds nothing */
                        log_error("%s exists and is not a socket; refusing to remove it: choose another --socket "
                                  "path or remove the file yourself", path);
                        goto fail;
                }
                log_info("removing stale socket %s", path);
                if (unlink(path) < 0 && errno != ENOENT) {
                        r = -errno;
                        goto fail;
                }
                r = server_bind_listen(fd, &sa, stp);
        }
        if (r < 0)
                goto fail;
        return fd;
fail:
        close(fd);
        return r;
}

/*
 * At exit, unlink the socket file we bound at @path only if it is still ours (@ours): an administrator may have
 * removed it and started another daemon there. Called while our listening socket is still open: the socket holds
 * its file's inode, so no other file on that file system can have its number yet (ext4 hands a freed number out
 * again at once), and device and inode number name it for sure; its ctime is not compared, as a chmod or chown of
 * the socket by someone would change it and leave our socket behind.
 */
static void server_unlink_socket(const char *path, const struct stat *ours)
{
        struct stat st;

        if (lstat(path, &st) < 0)
                return;
        if (st.st_dev == ours->st_dev && st.st_ino == ours->st_ino)
                unlink(path);
        else
                log_info("not removing %s: it is no longer the socket this iomemd bound", path);
}

/* ---- signals and periodic work ----------------------------------------- */

static void server_signal_cb(evutil_socket_t sig, short what, void *arg)
{
        struct server *s = arg;

        (void)what;
        if (sig == SIGUSR2) {
                /* test hook (IOMEMD_TEST_HOOKS=1): stop answering, so the watchdog test sees a hung loop */
                log_warning("SIGUSR2 with IOMEMD_TEST_HOOKS set: hanging the event loop on purpose");
                for (;;)
                        sleep(1);
        }
        if (sig == SIGHUP) {
                /* the config is main()'s, not const; a bad file keeps the running settings (config.c) */
                service_reloading(true);
                if (config_reload((struct config *)s->config) == 0) {
                        log_set_level(s->config->log_level);
                        unsigned long dropped = 0;

                        /*
                         * The allow-list holds for connections already open too, as the limits do. A line for
                         * each of the first few dropped, then only their count: one reload may drop thousands.
                         */
                        for (struct server_conn *sc = s->conns; sc; sc = sc->next)
                                if (!conn_recheck_allowed(sc->conn, dropped < SERVER_RELOAD_DROP_LOG_MAX))
                                        dropped++;
                        if (dropped)
                                log_notice("SIGHUP: %lu connection%s dropped: no longer in the allow-list (%lu "
                                           "logged above)",
                                           dropped, dropped == 1 ? "" : "s",
                                           dropped < SERVER_RELOAD_DROP_LOG_MAX ? dropped
                                                                                : (unsigned long)SERVER_RELOAD_DROP_LOG_MAX);
                        server_reload_fd_budget(s);
                        log_notice("SIGHUP: configuration reloaded%s%s", s->config->config_file ? " from " : "",
                                   s->config->config_file ? s->config->config_file : "");
                }
                service_reloading(false);
                return;
        }
        log_notice("%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        service_stopping();
        event_base_loopbreak(s->base);
}

static void server_status_cb(evutil_socket_t fd, short what, void *arg)
{
        struct server *s = arg;

        (void)fd;
        (void)what;
        /* sockets of dropped connections kept for their unread fds: closed once read or gone */
        if (s->ctx.norphans)
                conn_reap_orphans(&s->ctx, false);
        /* keeper DROPs a transient error kept: sent here too, not only before the next request to a keeper */
        (void)regtab_send_pending_drops(s->regtab);
        /* fd store slots a failed write left half-made: written whole once the store takes writes again */
        service_store_retry();
        /* keepers given up (killed, never waited for on the loop): reaped once they have exited */
        (void)regtab_reap_keepers(s->regtab);
        /* region fds over a budget a reload lowered: the next batch */
        server_park_excess(s);
        if (s->ctx.generation == s->status_generation)
                return;
        s->status_generation = s->ctx.generation;
        service_status(regtab_count(s->regtab), regtab_bytes(s->regtab), s->ctx.connections);
}

/* The next batch of leased regions of connections gone, at the next turn of the loop (after a poll). */
static void server_expire_later(struct conn_ctx *ctx)
{
        struct server *s = (struct server *)((char *)ctx - offsetof(struct server, ctx));
        struct timeval now = { 0, 0 };

        if (s->expire_ev)
                evtimer_add(s->expire_ev, &now);
}

static void server_expire_cb(evutil_socket_t fd, short what, void *arg)
{
        struct server *s = arg;

        (void)fd;
        (void)what;
        if (conn_expire_leases(&s->ctx))
                server_expire_later(&s->ctx);
}

/* Reservations are done (reserver.h): their CREATEs are answered, from here, outside any connection's callback. */
static void server_reserver_cb(evutil_socket_t fd, short what, void *arg)
{
        (void)fd;
        (void)what;
        (void)arg;
        reserver_collect();
}

static void server_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
        (void)fd;
        (void)what;
        (void)arg;
        service_watchdog();
}

/*
 * Every named region and every client is an fd: take every fd allowed. With
 * CAP_SYS_RESOURCE the hard limit itself may go up to fs.nr_open.
 */
static void server_raise_nofile(void)
{
        struct rlimit rl;
        unsigned long long nr_open = 0;
        FILE *f;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return;
        f = fopen("/proc/sys/fs/nr_open", "re");
        if (f) {
                if (fscanf(f, "%llu", &nr_open) != 1)
                        nr_open = 0;
                fclose(f);
        }
        if (nr_open > rl.rlim_max) {
                struct rlimit more = { .rlim_cur = nr_open, .rlim_max = nr_open };

                if (setrlimit(RLIMIT_NOFILE, &more) == 0) {
                        log_debug("fd limit raised to %llu", nr_open);
                        return;
                }
        }
        if (rl.rlim_cur >= rl.rlim_max)
                return;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                log_warning("cannot raise the fd limit: %s", strerror(errno));
}

/*
 * Each region costs the daemon one fd. Keep those that fit next to the
 * connections' fds, and park the rest in keeper processes (keeper.h), so
 * that the number of regions is not bounded by RLIMIT_NOFILE.
 */
static unsigned server_fd_budget(const struct config *cfg, uint64_t open)
{
        uint64_t budget = cfg->max_region_fds;
        struct rlimit rl;

        if (!budget && getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
                uint64_t limit = rl.rlim_cur;
                /*
                 * @open: the connections open now (a reload): a lowered max-connections drops none of them, so
                 * their fds are not room for region fds until they close
                 */
                uint64_t most = cfg->max_connections > open ? cfg->max_connections : open;
                uint64_t conns = most < limit / 2 ? most : limit / 2;

                budget = limit > conns + 256 + 64 ? limit - conns - 256 : 64;
        }
        return (unsigned)(budget > UINT32_MAX ? UINT32_MAX : budget);
}

static void server_set_fd_budget(struct server *s)
{
        unsigned budget = server_fd_budget(s->config, 0);

        regtab_set_fd_budget(s->regtab, budget, 0);
        log_debug("keeping up to %u region fds in the daemon", budget);
}

/*
 * Region fds held beyond the budget (a reload lowered it): park a batch now,
 * the rest on the next status ticks, so that no turn of the loop makes
 * thousands of round trips to the keepers. A failure leaves the fds here
 * (nothing is lost; the daemon only has fewer fds for connections) and is
 * tried again on the next tick, logged once per reload.
 */
static void server_park_excess(struct server *s)
{
        int k;

        if (!regtab_over_fd_budget(s->regtab))
                return;
        k = regtab_park_excess(s->regtab, SERVER_PARK_BATCH);
        if (k < 0 && !s->park_failed_logged) {
                log_warning("cannot park region fds over the daemon's budget in fd keepers: %s (%llu held, "
                            "trying again)",
                            strerror(-k), (unsigned long long)regtab_hot_fds(s->regtab));
                s->park_failed_logged = true;
        }
}

/*
 * A reload may change max-connections, so the room left for region fds:
 * the budget follows (max-region-fds, the socket and RLIMIT_NOFILE's part
 * stay as at startup, and so does each keeper's capacity, which comes from
 * RLIMIT_NOFILE alone). Connections open beyond a lowered max-connections
 * stay open, so their count is used if it is larger.
 */
static void server_reload_fd_budget(struct server *s)
{
        unsigned budget = server_fd_budget(s->config, s->ctx.connections);

        if (budget == regtab_fd_budget(s->regtab))
                return;
        log_info("keeping up to %u region fds in the daemon (was %u; %llu held now)", budget,
                 regtab_fd_budget(s->regtab), (unsigned long long)regtab_hot_fds(s->regtab));
        regtab_set_hot_max(s->regtab, budget);
        s->park_failed_logged = false;
        server_park_excess(s);
}

/* ---- setup and teardown ------------------------------------------------- */

static void server_deinit(struct server *s)
{
        struct server_conn *sc;

        while ((sc = s->conns)) {
                server_list_unlink(&s->conns, sc);
                server_conn_free(sc); /* cancels its reservation in flight, if any */
        }
        if (s->reserver_ev)
                event_free(s->reserver_ev);
        reserver_stop(); /* every job was cancelled: running ones finish their fallocate, then their fds close */
        for (size_t i = 0; i < sizeof(s->signal_evs) / sizeof(s->signal_evs[0]); i++)
                if (s->signal_evs[i])
                        event_free(s->signal_evs[i]);
        if (s->listen_ev)
                event_free(s->listen_ev);
        if (s->accept_pause_ev)
                event_free(s->accept_pause_ev);
        if (s->status_ev)
                event_free(s->status_ev);
        if (s->expire_ev)
                event_free(s->expire_ev);
        if (s->watchdog_ev)
                event_free(s->watchdog_ev);
        if (s->bound) /* before the close: while our socket holds its file, its inode number is its own */
                server_unlink_socket(s->config->socket_path, &s->bound_st);
        if (s->listen_fd >= 0)
                close(s->listen_fd);
        conn_reap_orphans(&s->ctx, true);
        conn_ctx_release(&s->ctx);
        if (s->spare) {
                ASAN_UNPOISON_MEMORY_REGION(s->spare, server_conn_size(s));
                free(s->spare);
                s->spare = NULL;
        }
        s->ctx.quota = quota_free(s->ctx.quota); /* after the last connection */
        s->regtab = regtab_free(s->regtab);
        closer_stop();
        if (s->base)
                event_base_free(s->base);
}

static int server_setup_events(struct server *s)
{
        static const int signals[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR2 };
        struct timeval status_tv = { SERVER_STATUS_INTERVAL_SEC, 0 };
        uint64_t wd = service_watchdog_usec();

        s->listen_ev = event_new(s->base, s->listen_fd, EV_READ | EV_PERSIST, server_accept_cb, s);
        s->accept_pause_ev = evtimer_new(s->base, server_accept_resume_cb, s);
        s->status_ev = event_new(s->base, -1, EV_PERSIST, server_status_cb, s);
        s->expire_ev = evtimer_new(s->base, server_expire_cb, s);
        if (!s->listen_ev || !s->accept_pause_ev || !s->status_ev || !s->expire_ev)
                return -ENOMEM;
        s->ctx.expire_later = server_expire_later;
        for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
                if (signals[i] == SIGUSR2 && !getenv("IOMEMD_TEST_HOOKS"))
                        continue;
                s->signal_evs[i] = evsignal_new(s->base, signals[i], server_signal_cb, s);
                if (!s->signal_evs[i] || event_add(s->signal_evs[i], NULL) < 0)
                        return -ENOMEM;
        }
        if (event_add(s->status_ev, &status_tv) < 0)
                return -ENOMEM;
        if (reserver_running()) {
                s->reserver_ev = event_new(s->base, reserver_fd(), EV_READ | EV_PERSIST, server_reserver_cb, s);
                if (!s->reserver_ev || event_add(s->reserver_ev, NULL) < 0)
                        return -ENOMEM;
        }
        if (wd > 0) {
                struct timeval tv = { (time_t)(wd / 2 / 1000000), (suseconds_t)(wd / 2 % 1000000) };

                s->watchdog_ev = event_new(s->base, -1, EV_PERSIST, server_watchdog_cb, s);
                if (!s->watchdog_ev || event_add(s->watchdog_ev, &tv) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* Return: why binding the socket failed, in words that say what to do. */
static const char *server_bind_why(int r)
{
        switch (r) {
        case -EADDRINUSE:
                return "in use: another iomemd (or another program) answers there";
        case -ENOENT:
                return "its directory does not exist: create it, or choose another --socket path";
        case -EACCES:
                return "permission denied on its directory: choose a --socket path this user may create, or run "
                       "iomemd as a user that may";
        case -ENAMETOOLONG:
                return "the path is too long for a socket (at most 107 bytes): choose a shorter --socket path";
        default:
                return strerror(-r);
        }
}

int server_run(const struct config *config)
{
        struct server s = { .config = config, .listen_fd = -1 };
        int r;

        signal(SIGPIPE, SIG_IGN); /* L4: sendmsg uses MSG_NOSIGNAL; this covers everything else */
        /*
         * SIGCHLD ignored (inherited across exec) would have the kernel reap our fd
         * keepers itself: their pids could then be reused while keeper.c still
         * kill()s (no pidfd) and waitpid()s them. Ours to reap: the default.
         */
        signal(SIGCHLD, SIG_DFL);
        /* neither starts a thread yet: each does with the first job it gets (a process on one thread is faster) */
        (void)closer_start();
        r = reserver_start();
        if (r < 0)
                log_warning("cannot start the reserver (%s): RESERVE's fallocate runs on the event loop", strerror(-r));
        server_raise_nofile();
        s.ctx.config = config;
        s.ctx.start_ns = conn_now_ns();
        s.ctx.notify = server_conn_notify;
        s.ctx.sweep = server_conn_sweep;
        r = regtab_new(&s.regtab);
        if (r < 0)
                goto out;
        s.ctx.regtab = s.regtab;
        server_set_fd_budget(&s);
        s.base = event_base_new();
        if (!s.base) {
                r = -ENOMEM;
                goto out;
        }
        s.event_size = (event_get_struct_event_size() + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);

        r = service_listen_fd(&s.listen_fd);
        if (r < 0) {
                log_error("cannot use the socket passed by the service manager: %s", strerror(-r));
                goto out;
        }
        if (r == 0 && !config->socket_path) {
                log_error("no socket passed by the service manager and no socket path: pass --socket");
                r = -EINVAL;
                goto out;
        }
        if (r == 0) {
                r = server_bind(config->socket_path, &s.bound_st);
                if (r == -ENOTSOCK)
                        goto out;
                if (r < 0) {
                        log_error("cannot listen on %s: %s", config->socket_path, server_bind_why(r));
                        goto out;
                }
                s.listen_fd = r;
                s.bound = true;
        }

        r = service_restore(s.regtab);
        if (r < 0) {
                log_error("cannot restore regions from the fd store: %s", strerror(-r));
                goto out;
        }
        /*
         * the restored regions are charged to their owners, a holder's growth within their limits as before the
         * restart (quota_new_restored()); the table lives as long as the server
         */
        r = quota_new_restored(s.regtab, config, &s.ctx.quota);
        if (r < 0) {
                log_error("cannot make the quota table: %s", strerror(-r));
                goto out;
        }
        /* a region now charged in full (or no longer) says so in its slot, for the next restore's order */
        for (struct region *reg = regtab_first(s.regtab); reg; reg = reg->tab.next)
                if ((reg->charged < reg->size) != reg->store.partial)
                        service_region_changed(reg);

        r = server_setup_events(&s);
        if (r < 0 || event_add(s.listen_ev, NULL) < 0) {
                log_error("cannot set up the event loop");
                r = r < 0 ? r : -ENOMEM;
                goto out;
        }
        service_ready();
        log_notice("iomemd " IOMEM_VERSION " serving %s", s.bound ? config->socket_path : "the activated socket");

        if (event_base_dispatch(s.base) < 0) {
                log_error("event loop failed");
                r = -EIO;
                goto out;
        }
        r = 0;
out:
        server_deinit(&s);
        return r;
}
