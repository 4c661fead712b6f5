/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-it-reconnect: libiomem across a daemon killed and started again on the same socket (issue 11). */
#include <linux/sockios.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "itutil.h"

/*
 * A request "in flight" when the daemon dies: the daemon is stopped
 * (SIGSTOP) so that the request sits unread in its socket, a thread sends
 * it, then the daemon is killed and a new one started on the same socket.
 * The request was sent and its reply lost: the library must repeat it only
 * if that is harmless.
 */
struct inflight {
        struct iomem_client *c;
        int op; /* 'o' OPEN, 'w' waiting OPEN, 'c' CREATE, 's' STAT, 'l' LIST, 'd' DELETE */
        const char *name;
        int r;
        pthread_t thread;
};

static int count_one(const struct iomem_list_entry *e, void *userdata)
{
        (void)e;
        ++*(int *)userdata;
        return 0;
}

static void *inflight_run(void *arg)
{
        struct inflight *in = arg;
        struct iomem_region *region = NULL;
        struct iomem_stat st;
        int n = 0;

        switch (in->op) {
        case 'o':
                in->r = iomem_open(in->c, in->name, 0, 0, &region);
                break;
        case 'w':
                in->r = iomem_open(in->c, in->name, 0, 60000, &region);
                break;
        case 'c':
                in->r = iomem_create(in->c, in->name, 4096, NULL, &region);
                break;
        case 's':
                in->r = iomem_stat(in->c, in->name, &st);
                break;
        case 'l':
                in->r = iomem_list(in->c, NULL, count_one, &n);
                if (in->r == 0)
                        in->r = n;
                break;
        case 'd':
                in->r = iomem_delete(in->c, in->name);
                break;
        }
        iomem_region_free(region);
        return NULL;
}

/* Return: true once the daemon process is stopped (state T in /proc). */
static bool daemon_stopped(pid_t pid)
{
        char path[64], buf[512], *p;
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return false;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        p = strrchr(buf, ')');
        return p && p[1] == ' ' && (p[2] == 'T' || p[2] == 't');
}

/* Return: once the request of @in is queued in the stopped daemon's socket (the thread is blocked on its reply). */
static void inflight_start(struct it_daemon *d, struct inflight *in)
{
        kill(d->pid, SIGSTOP);
        for (int i = 0; i < 500 && !daemon_stopped(d->pid); i++)
                it_sleep_ms(2);
        ck_assert(daemon_stopped(d->pid));
        ck_assert_int_eq(pthread_create(&in->thread, NULL, inflight_run, in), 0);
        /* the request goes out at once (the socket buffer takes it) and stays unread there */
        for (int i = 0; i < 1000; i++) {
                int q = 0;

                if (ioctl(iomem_client_fd(in->c), SIOCOUTQ, &q) == 0 && q > 0)
                        return;
                it_sleep_ms(5);
        }
        ck_abort_msg("the request was not sent");
}

/* Kill the stopped daemon (its unread requests die with it) and start a new one on the same socket. */
static void daemon_replace(struct it_daemon *d)
{
        it_daemon_kill(d, SIGKILL);
        it_daemon_spawn(d, NULL);
}

static struct iomem_client *connect_to(const struct it_daemon *d)
{
        struct iomem_client *c = NULL;

        ck_assert_int_eq(iomem_connect(d->socket, &c), 0);
        /* iomem_connect() does not wait for the HELLO reply: wait here, so that the only bytes a test later finds
         * queued towards the daemon (SIOCOUTQ) are its in-flight request's, not an unread HELLO */
        ck_assert_int_eq(iomem_client_handshake(c), 0);
        return c;
}

/* An idle client whose daemon was killed and replaced: every request works on the new one, even CREATE. */
START_TEST(test_idle_client_reconnects)
{
        struct it_daemon d;
        struct iomem_client *c, *other;
        struct iomem_region *region = NULL, *local = NULL;
        struct iomem_stat st;
        int fd0;

        it_daemon_start(&d, NULL);
        c = connect_to(&d);
        fd0 = iomem_client_fd(c);
        ck_assert_int_ge(fd0, 0);

        it_daemon_kill(&d, SIGKILL);
        it_daemon_spawn(&d, NULL);
        /* CREATE is sent on the new connection: the old one was closed before it went out, so it was not applied */
        ck_assert_int_eq(iomem_create(c, "after", 4096, NULL, &region), 0);
        ck_assert_uint_eq(iomem_client_reconnects(c), 1);
        iomem_region_free(region);
        ck_assert_int_eq(iomem_stat(c, "after", &st), 0);
        ck_assert_uint_eq(st.size, 4096);

        /* REGISTER's fd survives a resend too */
        it_daemon_kill(&d, SIGKILL);
        it_daemon_spawn(&d, NULL);
        ck_assert_int_eq(iomem_region_new_local(4096, IOMEM_BACKEND_MEMFD, 0, &local), 0);
        ck_assert_int_eq(iomem_region_seal(local, IOMEM_REGISTER_SEALS), 0);
        ck_assert_int_eq(iomem_register(c, "registered", local, 0, 0, NULL), 0);
        ck_assert_uint_eq(iomem_client_reconnects(c), 2);
        other = connect_to(&d);
        ck_assert_int_eq(iomem_stat(other, "registered", &st), 0);
        iomem_disconnect(other);
        iomem_region_free(local);

        iomem_disconnect(c);
        it_daemon_stop(&d);
}
END_TEST

/* Requests safe to repeat are repeated when their reply was lost; the result is the new daemon's answer. */
START_TEST(test_lost_reply_repeated)
{
        static const int ops[] = { 'o', 's', 'l' };
        struct it_daemon d;
        struct inflight in = { .name = "missing" };

        it_daemon_start(&d, NULL);
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
                in.c = connect_to(&d);
                in.op = ops[i];
                inflight_start(&d, &in);
                daemon_replace(&d);
                ck_assert_int_eq(pthread_join(in.thread, NULL), 0);
                switch (in.op) {
                case 'o':
                case 's':
                        /* repeated, and answered by the new daemon: no such name (not a connection error) */
                        ck_assert_msg(in.r == -ENOENT, "op %c: %s", in.op, iomem_strerror(in.r));
                        break;
                case 'l':
                        ck_assert_msg(in.r == 0, "LIST: %s", iomem_strerror(in.r));
                        break;
                }
                ck_assert_uint_eq(iomem_client_reconnects(in.c), 1);
                iomem_disconnect(in.c);
        }
        it_daemon_stop(&d);
}
END_TEST

/* A waiting OPEN lost with its daemon waits again on the new one, and gets the region created there. */
START_TEST(test_waiting_open_repeated)
{
        struct it_daemon d;
        struct inflight in = { .op = 'w', .name = "later" };
        struct iomem_client *producer;
        struct iomem_region *region = NULL;

        it_daemon_start(&d, NULL);
        in.c = connect_to(&d);
        inflight_start(&d, &in);
        daemon_replace(&d);
        producer = connect_to(&d);
        /* whether the repeated OPEN is already waiting in the new daemon or not, it gets the region */
        ck_assert_int_eq(iomem_create(producer, "later", 8192, NULL, &region), 0);
        iomem_region_free(region);
        ck_assert_int_eq(pthread_join(in.thread, NULL), 0);
        ck_assert_msg(in.r == 0, "waiting OPEN: %s", iomem_strerror(in.r));
        ck_assert_uint_eq(iomem_client_reconnects(in.c), 1);
        iomem_disconnect(in.c);
        iomem_disconnect(producer);
        it_daemon_stop(&d);
}
END_TEST

/* CREATE and DELETE whose reply was lost are not sent again: -ECONNRESET, and the new daemon never saw them. */
START_TEST(test_lost_reply_not_repeated)
{
        static const int ops[] = { 'c', 'd' };
        struct it_daemon d;

        it_daemon_start(&d, NULL);
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
                struct inflight in = { .op = ops[i], .name = "once" };
                struct iomem_client *check;
                struct iomem_region *region = NULL;
                struct iomem_stat st;

                check = connect_to(&d);
                if (in.op == 'd') /* DELETE of a region the new daemon has too: it must still be there */
                        ck_assert_int_eq(iomem_create(check, "once", 4096, NULL, &region), 0);
                iomem_region_free(region);
                iomem_disconnect(check);
                in.c = connect_to(&d);
                inflight_start(&d, &in);
                daemon_replace(&d);
                check = connect_to(&d);
                if (in.op == 'd')
                        ck_assert_int_eq(iomem_create(check, "once", 4096, NULL, &region), 0);
                iomem_region_free(region);
                ck_assert_int_eq(pthread_join(in.thread, NULL), 0);
                ck_assert_msg(in.r == -ECONNRESET, "op %c: %d %s", in.op, in.r, iomem_strerror(in.r));
                ck_assert_ptr_nonnull(strstr(iomem_strerror(in.r), "unknown"));
                if (in.op == 'c')
                        ck_assert_int_eq(iomem_stat(check, "once", &st), -ENOENT);
                else
                        ck_assert_int_eq(iomem_stat(check, "once", &st), 0);
                /* the client is usable again: the next call reconnects */
                ck_assert_int_eq(iomem_ping(in.c), 0);
                ck_assert_uint_eq(iomem_client_reconnects(in.c), 1);
                iomem_delete(check, "once");
                iomem_disconnect(in.c);
                iomem_disconnect(check);
        }
        it_daemon_stop(&d);
}
END_TEST

/* With reconnecting off, a connection the daemon closed stays closed, as before. */
START_TEST(test_reconnect_off)
{
        struct it_daemon d;
        struct iomem_client *c;
        struct iomem_stat st;

        it_daemon_start(&d, NULL);
        c = connect_to(&d);
        iomem_client_set_reconnect(c, 0);
        it_daemon_kill(&d, SIGKILL);
        it_daemon_spawn(&d, NULL);
        ck_assert_int_eq(iomem_stat(c, "x", &st), -EPIPE);
        ck_assert_int_eq(iomem_ping(c), -ENOTCONN);
        ck_assert_uint_eq(iomem_client_reconnects(c), 0);
        iomem_disconnect(c);
        it_daemon_stop(&d);
}
END_TEST

/* No daemon comes back within the window: -ENOTCONN (never -ENOENT, "no region") with the reason; later, it works. */
START_TEST(test_reconnect_window)
{
        struct it_daemon d;
        struct iomem_client *c;
        struct iomem_stat st;

        it_daemon_start(&d, NULL);
        c = connect_to(&d);
        iomem_client_set_reconnect(c, 200);
        it_daemon_kill(&d, SIGKILL);
        unlink(d.socket);
        ck_assert_int_eq(iomem_stat(c, "x", &st), -ENOTCONN);
        ck_assert_ptr_nonnull(strstr(iomem_client_error_message(c), d.socket));
        ck_assert_ptr_nonnull(strstr(iomem_client_error_message(c), "went away"));
        /* a socket nobody listens on: refused, also within the window */
        it_daemon_spawn(&d, NULL);
        it_daemon_kill(&d, SIGKILL);
        ck_assert_int_eq(iomem_stat(c, "x", &st), -ENOTCONN);
        it_daemon_spawn(&d, NULL);
        ck_assert_int_eq(iomem_stat(c, "x", &st), -ENOENT);
        ck_assert_uint_eq(iomem_client_reconnects(c), 1);
        iomem_disconnect(c);
        it_daemon_stop(&d);
}
END_TEST

/*
 * Start @d and connect to it without a call (iomem_connect() holds HELLO back until the first), reconnecting
 * within @ms; then the daemon goes away for good (killed, its socket removed) and the first call fails with
 * -ENOTCONN, saying it went away. Return: the client.
 */
static struct iomem_client *unsent_client_of_gone_daemon(struct it_daemon *d, int ms)
{
        struct iomem_client *c = NULL;
        struct iomem_stat st;

        it_daemon_start(d, NULL);
        ck_assert_int_eq(iomem_connect(d->socket, &c), 0); /* nothing sent yet */
        iomem_client_set_reconnect(c, ms);
        it_daemon_kill(d, SIGKILL);
        unlink(d->socket);
        ck_assert_int_eq(iomem_stat(c, "x", &st), -ENOTCONN);
        ck_assert_ptr_nonnull(strstr(iomem_client_error_message(c), "went away"));
        return c;
}

/*
 * The same for a client that made no call yet (iomem_connect() holds HELLO back until the first): its daemon
 * went away before the first call, which is then not applied and opens the connection once more; that gets
 * the reconnect window like any reconnect, and a failure is -ENOTCONN with the reason (never -ENOENT, "no
 * region"), after which the client stays usable.
 */
START_TEST(test_reconnect_window_before_hello)
{
        struct it_daemon d;
        struct iomem_client *c;
        struct iomem_stat st;

        c = unsent_client_of_gone_daemon(&d, 200);
        ck_assert_int_eq(iomem_stat(c, "x", &st), -ENOTCONN);
        it_daemon_spawn(&d, NULL);
        ck_assert_int_eq(iomem_stat(c, "x", &st), -ENOENT);
        ck_assert_int_eq(iomem_ping(c), 0);
        iomem_disconnect(c);
        it_daemon_stop(&d);
}
END_TEST

/* Reconnecting off: the first call still opens it once more; if no daemon answers, -ENOTCONN, and it stays closed. */
START_TEST(test_reconnect_off_before_hello)
{
        struct it_daemon d;
        struct iomem_client *c;

        c = unsent_client_of_gone_daemon(&d, 0);
        ck_assert_int_eq(iomem_ping(c), -ENOTCONN);
        it_daemon_spawn(&d, NULL);
        ck_assert_int_eq(iomem_ping(c), -ENOTCONN);
        ck_assert_uint_eq(iomem_client_reconnects(c), 0);
        iomem_disconnect(c);
        it_daemon_stop(&d);
}
END_TEST

/* The default socket: $IOMEM_SOCKET; else a per-user daemon's socket if there is one; else the system one. */
START_TEST(test_default_socket)
{
        struct it_daemon d;
        struct iomem_client *c = NULL;
        char path[256], want[256];

        it_daemon_start(&d, NULL); /* d.dir/sock: rename it to d.dir/iomemd.sock, a per-user daemon's path */
        snprintf(want, sizeof(want), "%s/iomemd.sock", d.dir);
        ck_assert_int_eq(rename(d.socket, want), 0);

        unsetenv("IOMEM_SOCKET");
        setenv("XDG_RUNTIME_DIR", d.dir, 1);
        ck_assert_int_gt(iomem_socket_path(path, sizeof(path)), 0);
        ck_assert_str_eq(path, want);
        ck_assert_int_eq(iomem_connect(NULL, &c), 0);
        ck_assert_int_eq(iomem_ping(c), 0);
        c = iomem_disconnect(c);

        /* no socket under XDG_RUNTIME_DIR: the system service, for every uid */
        setenv("XDG_RUNTIME_DIR", "/nonexistent", 1);
        ck_assert_int_gt(iomem_socket_path(path, sizeof(path)), 0);
        ck_assert_str_eq(path, "/run/iomemd/iomemd.sock");
        unsetenv("XDG_RUNTIME_DIR");
        ck_assert_int_gt(iomem_socket_path(path, sizeof(path)), 0);
        ck_assert_str_eq(path, "/run/iomemd/iomemd.sock");
        /* a plain file there is not a daemon's socket */
        setenv("XDG_RUNTIME_DIR", "/etc", 1);
        ck_assert_int_gt(iomem_socket_path(path, sizeof(path)), 0);
        ck_assert_str_eq(path, "/run/iomemd/iomemd.sock");

        /* $IOMEM_SOCKET wins, even over a per-user daemon */
        setenv("XDG_RUNTIME_DIR", d.dir, 1);
        setenv("IOMEM_SOCKET", "/some/where.sock", 1);
        ck_assert_int_gt(iomem_socket_path(path, sizeof(path)), 0);
        ck_assert_str_eq(path, "/some/where.sock");
        ck_assert_int_eq(iomem_socket_path(path, 5), -ENAMETOOLONG);
        unsetenv("IOMEM_SOCKET");
        unsetenv("XDG_RUNTIME_DIR");

        ck_assert_int_eq(rename(want, d.socket), 0);
        it_daemon_stop(&d);
}
END_TEST

/*
 * backlog_fill() - connect non-blocking sockets to the listener at @path
 * until its backlog is full (connect() fails with EAGAIN), at most @max.
 * Return: how many connected; they are in @fill, the caller's to close.
 */
static int backlog_fill(const char *path, int *fill, int max)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int n = 0;

        ck_assert_uint_lt(strlen(path), sizeof(sa.sun_path));
        strcpy(sa.sun_path, path);
        for (;;) {
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

                ck_assert_int_ge(fd, 0);
                if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                        ck_assert_int_eq(errno, EAGAIN); /* the backlog is full */
                        close(fd);
                        return n;
                }
                ck_assert_int_lt(n, max);
                fill[n++] = fd;
        }
}

/*
 * The daemon went away and its socket now belongs to a listener that never
 * accepts, with a full backlog (a hung daemon, a socket unit whose service
 * is still starting): connect() would wait for a free slot without end.
 * The call must still give up when its window ends (it blocked for ever).
 */
START_TEST(test_reconnect_backlog_full)
{
        struct it_daemon d;
        struct iomem_client *c;
        struct iomem_stat st;
        int lfd, fill[64], nfill;

        it_daemon_start(&d, NULL);
        c = connect_to(&d);
        iomem_client_set_reconnect(c, 200);
        it_daemon_kill(&d, SIGKILL);
        unlink(d.socket);
        lfd = it_listen(d.socket, 0);
        nfill = backlog_fill(d.socket, fill, 64);
        ck_assert_int_eq(iomem_stat(c, "x", &st), -ENOTCONN);
        ck_assert_ptr_nonnull(strstr(iomem_client_error_message(c), "went away"));
        /* with a reply timeout and no reconnect window of its own, the timeout caps the wait */
        iomem_client_set_reconnect(c, -1);
        iomem_client_set_timeout(c, 200);
        ck_assert_int_eq(iomem_stat(c, "x", &st), -ENOTCONN);
        iomem_client_set_timeout(c, -1);
        iomem_client_set_reconnect(c, 200);
        while (nfill > 0)
                close(fill[--nfill]);
        close(lfd);
        unlink(d.socket);
        it_daemon_spawn(&d, NULL);
        ck_assert_int_eq(iomem_stat(c, "x", &st), -ENOENT);
        ck_assert_uint_eq(iomem_client_reconnects(c), 1);
        iomem_disconnect(c);
        it_daemon_stop(&d);
}
END_TEST

/*
 * A daemon that dies on every request and takes 0.6 windows to come back:
 * a repeated OPEN reconnects again and again, and the window counts from
 * the call's first reconnect, so the call gives up at the second slow
 * reconnect (-ENOTCONN). Before, every reconnect got a new window, and the
 * call waited 8 x 0.6 windows before its -ECONNRESET. The sleeps only make
 * time pass: a slow machine makes the call give up earlier, never later.
 */
START_TEST(test_reconnect_window_per_call)
{
        const char *fake = getenv("IOMEM_FAKE_DAEMON");
        char dir[] = "/tmp/test-it-reconnect.XXXXXX", sock[128], ready[128];
        struct iomem_client *c = NULL;
        struct iomem_region *region = NULL;
        pid_t pid;
        int status;

        ck_assert_ptr_nonnull(fake);
        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/sock", dir);
        snprintf(ready, sizeof(ready), "%s/ready", dir);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                setenv("FAKE_DELAY", "1.2", 1);
                execlp("python3", "python3", fake, "slow", sock, ready, (char *)NULL);
                _exit(127);
        }
        while (access(ready, F_OK) < 0) {
                ck_assert_int_eq(waitpid(pid, &status, WNOHANG), 0);
                it_sleep_ms(10);
        }
        ck_assert_int_eq(iomem_connect(sock, &c), 0);
        iomem_client_set_reconnect(c, 2000);
        ck_assert_int_eq(iomem_open(c, "x", 0, 0, &region), -ENOTCONN);
        ck_assert_ptr_nonnull(strstr(iomem_client_error_message(c), "went away"));
        ck_assert_uint_le(iomem_client_reconnects(c), 2);
        iomem_disconnect(c);
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        unlink(sock);
        unlink(ready);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* A daemon that never answers HELLO (stopped, hung): iomem_connect_timeout() gives up (iomem_connect() waits). */
START_TEST(test_connect_timeout)
{
        char dir[] = "/tmp/test-it-reconnect.XXXXXX";
        char path[sizeof(dir) + 5];
        struct iomem_client *c = NULL;
        int lfd, fill[64], nfill;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/sock", dir);
        lfd = it_listen(path, 1); /* never accepted */
        ck_assert_int_eq(iomem_connect_timeout(path, 0, 200, &c), -ETIMEDOUT);
        ck_assert_ptr_null(c);
        /* the backlog full: refused at once rather than waiting for a slot */
        nfill = backlog_fill(path, fill, 64);
        ck_assert_int_eq(iomem_connect_timeout(path, 0, 200, &c), -EAGAIN);
        ck_assert_ptr_null(c);
        while (nfill > 0)
                close(fill[--nfill]);
        close(lfd);
        unlink(path);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

static Suite *reconnect_suite(void)
{
        Suite *s = suite_create("reconnect");
        TCase *tc = tcase_create("reconnect");

        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_idle_client_reconnects);
        tcase_add_test(tc, test_lost_reply_repeated);
        tcase_add_test(tc, test_waiting_open_repeated);
        tcase_add_test(tc, test_lost_reply_not_repeated);
        tcase_add_test(tc, test_reconnect_off);
        tcase_add_test(tc, test_reconnect_window);
        tcase_add_test(tc, test_reconnect_window_before_hello);
        tcase_add_test(tc, test_reconnect_off_before_hello);
        tcase_add_test(tc, test_reconnect_backlog_full);
        tcase_add_test(tc, test_reconnect_window_per_call);
        tcase_add_test(tc, test_connect_timeout);
        tcase_add_test(tc, test_default_socket);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        signal(SIGPIPE, SIG_IGN);
        return test_run_suite(reconnect_suite());
}
