/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* itutil: helpers of the integration suites (start the real iomemd, wait for it, run programs). */

#include "itutil.h"

const char *it_env(const char *name)
{
        const char *v = getenv(name);

        ck_assert_msg(v && *v, "%s is not set: run the test through ctest", name);
        return v;
}

void it_sleep_ms(int ms)
{
        struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

bool it_socket_ready(const char *path)
{
        int fd = fdutil_connect(path);

        if (fd < 0)
                return false;
        close(fd);
        return true;
}

void it_daemon_start(struct it_daemon *d, const char *const *extra)
{
        snprintf(d->dir, sizeof(d->dir), "/tmp/iomem-it.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(d->dir));
        snprintf(d->socket, sizeof(d->socket), "%s/sock", d->dir);
        it_daemon_spawn(d, extra);
}

/*
 * Return: true once @pid catches SIGTERM (its SigCgt mask in /proc). The socket
 * listens before the event loop installs its signal handlers, so a test that
 * stopped a daemon right after its socket appeared could kill it by SIGTERM's
 * default action (seen under ASan: "did not exit cleanly (status 0xf)").
 */
static bool it_sigterm_caught(pid_t pid)
{
        char path[64], line[256];
        unsigned long long mask = 0;
        bool found = false;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return false;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "SigCgt: %llx", &mask) == 1) {
                        found = true;
                        break;
                }
        fclose(f);
        return found && (mask & (1ULL << (SIGTERM - 1)));
}

void it_daemon_spawn(struct it_daemon *d, const char *const *extra)
{
        const char *argv[32];
        int n = 0;

        argv[n++] = it_env("IOMEMD");
        argv[n++] = "--socket";
        argv[n++] = d->socket;
        argv[n++] = "--log-level";
        argv[n++] = "warning";
        argv[n++] = "--tmpdir";
        argv[n++] = d->dir;
        for (; extra && *extra && n < 30; extra++)
                argv[n++] = *extra;
        argv[n] = NULL;

        fflush(NULL);
        d->pid = fork();
        ck_assert_int_ge(d->pid, 0);
        if (d->pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                execv(argv[0], (char *const *)argv);
                fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
                _exit(127);
        }
        for (int i = 0; i < 1000; i++) {
                int status;

                if (it_socket_ready(d->socket) && it_sigterm_caught(d->pid))
                        return;
                ck_assert_msg(waitpid(d->pid, &status, WNOHANG) == 0, "iomemd exited during startup (status %d)",
                              status);
                it_sleep_ms(10);
        }
        ck_abort_msg("iomemd did not start listening on %s", d->socket);
}

void it_daemon_kill(struct it_daemon *d, int sig)
{
        int status = 0;

        ck_assert_int_gt(d->pid, 0);
        kill(d->pid, sig);
        ck_assert_int_eq(waitpid(d->pid, &status, 0), d->pid);
        d->pid = 0;
}

void it_daemon_stop(struct it_daemon *d)
{
        int status = 0;

        if (d->pid <= 0)
                return;
        kill(d->pid, SIGTERM);
        ck_assert_int_eq(waitpid(d->pid, &status, 0), d->pid);
        d->pid = 0;
        unlink(d->socket);
        rmdir(d->dir);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "iomemd did not exit cleanly (status 0x%x)",
                      status);
}

struct iomem_client *it_client_connect(const struct it_daemon *d)
{
        struct iomem_client *c = NULL;
        int r = iomem_connect(d->socket, &c);

        ck_assert_msg(r == 0, "connect: %s", iomem_strerror(r));
        return c;
}

struct iomem_client *it_client_connect_flags(const struct it_daemon *d, uint32_t flags)
{
        struct iomem_client *c = NULL;
        int r = iomem_connect_flags(d->socket, flags, &c);

        ck_assert_msg(r == 0, "connect: %s", iomem_strerror(r));
        return c;
}

int it_listen(const char *path, int backlog)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        ck_assert_uint_lt(strlen(path), sizeof(sa.sun_path));
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(fd, backlog), 0);
        return fd;
}

int it_daemon_settled_fds(const struct it_daemon *d)
{
        struct iomem_client *probe = NULL;
        struct iomem_status st = { 0 };
        int r, n;

        /*
         * A client that closed with fds unread in its socket can leave the
         * daemon holding its side as an orphan (daemon/conn.c): the kernel
         * wakes the daemon with the hang-up before it frees the closed end's
         * queue, so the daemon may still see bytes unread then. Orphans are
         * looked at again at the next departure (or the 2 s status timer):
         * one connection that comes and goes, all clients being gone, makes
         * that departure, and the probe's STATUS below sees it done.
         */
        r = iomem_connect(d->socket, &probe);
        ck_assert_msg(r == 0, "sweep connect: %s", iomem_strerror(r));
        iomem_disconnect(probe);
        probe = NULL;
        r = iomem_connect(d->socket, &probe);
        ck_assert_msg(r == 0, "probe connect: %s", iomem_strerror(r));
        for (int i = 0; i < 1000; i++) {
                r = iomem_status(probe, &st);
                ck_assert_msg(r == 0, "probe status: %s", iomem_strerror(r));
                if (st.connections == 1)
                        break;
                it_sleep_ms(10);
        }
        ck_assert_msg(st.connections == 1, "the daemon still counts %llu connections",
                      (unsigned long long)st.connections);
        n = it_daemon_steady_fds(d);
        iomem_disconnect(probe);
        return n;
}

int it_daemon_steady_fds(const struct it_daemon *d)
{
        int n;

        /*
         * fds clients sent, and the copies a RESIZE's or SEAL's job worked on,
         * are closed by the daemon's closer threads, a little later: wait until
         * the count holds. On a loaded machine a closer thread can be off the
         * CPU for more than one 10 ms sample with hundreds of closes queued, so
         * the count must hold for 5 samples in a row.
         */
        n = fdutil_count(d->pid);
        for (int i = 0, same = 0; i < 1000 && same < 5; i++) {
                int again;

                it_sleep_ms(10);
                again = fdutil_count(d->pid);
                same = again == n ? same + 1 : 0;
                n = again;
        }
        ck_assert_int_gt(n, 0);
        return n;
}

int it_raise_nofile(rlim_t n)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        if (rl.rlim_cur >= n)
                return 0;
        if (rl.rlim_max < n)
                rl.rlim_max = n;
        rl.rlim_cur = n;
        return setrlimit(RLIMIT_NOFILE, &rl) < 0 ? -errno : 0;
}

int it_run(const char *const *argv, const char *input, size_t inlen, char *out, size_t outsize, char *err,
           size_t errsize)
{
        int pin[2], pout[2], perr[2], status;
        size_t olen = 0, elen = 0, ilen = 0;
        pid_t pid;

        ck_assert_int_eq(pipe2(pin, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(pout, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(perr, O_CLOEXEC), 0);
        fflush(NULL);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                dup2(pin[0], STDIN_FILENO);
                dup2(pout[1], STDOUT_FILENO);
                dup2(perr[1], STDERR_FILENO);
                execv(argv[0], (char *const *)argv);
                _exit(127);
        }
        close(pin[0]);
        close(pout[1]);
        close(perr[1]);
        if (!input || inlen == 0) {
                close(pin[1]);
                pin[1] = -1;
        }
        for (;;) {
                struct pollfd p[3] = { { pout[0], POLLIN, 0 }, { perr[0], POLLIN, 0 }, { pin[1], POLLOUT, 0 } };
                char buf[4096];
                ssize_t n;

                if (pout[0] < 0 && perr[0] < 0)
                        break;
                if (poll(p, 3, -1) < 0) {
                        ck_assert_int_eq(errno, EINTR);
                        continue;
                }
                if (p[2].revents) {
                        n = write(pin[1], input + ilen, inlen - ilen);
                        if (n > 0)
                                ilen += (size_t)n;
                        if (n <= 0 || ilen == inlen) {
                                close(pin[1]);
                                pin[1] = -1;
                        }
                }
                for (int i = 0; i < 2; i++) {
                        int *fd = i == 0 ? &pout[0] : &perr[0];
                        char *dst = i == 0 ? out : err;
                        size_t size = i == 0 ? outsize : errsize, *len = i == 0 ? &olen : &elen;

                        if (!p[i].revents)
                                continue;
                        n = read(*fd, buf, sizeof(buf));
                        if (n <= 0) {
                                close(*fd);
                                *fd = -1;
                                continue;
                        }
                        if (dst && size > 0) {
                                size_t k = (size_t)n < size - 1 - *len ? (size_t)n : size - 1 - *len;

                                memcpy(dst + *len, buf, k);
                                *len += k;
                        }
                }
        }
        if (pin[1] >= 0)
                close(pin[1]);
        if (out && outsize)
                out[olen] = '\0';
        if (err && errsize)
                err[elen] = '\0';
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        return status;
}
