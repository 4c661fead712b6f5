/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* itutil: helpers of the integration suites (start the real iomemd, wait for it, run programs). */

#include "itutil.h"
#include "proto.h"

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
        /*
         * 120 s: a hang detector, not a speed bound. Under valgrind on a loaded machine (load average 12 on two
         * cores) iomemd took 9 to 23 s to listen: the 10 s this waited were a timed assertion there.
         */
        for (int i = 0; i < 12000; i++) {
                int status;

                if (it_socket_ready(d->socket) && it_sigterm_caught(d->pid))
                        return;
                ck_assert_msg(waitpid(d->pid, &status, WNOHANG) == 0, "iomemd exited during startup (status %d)",
                              status);
                it_sleep_ms(10);
        }
        ck_abort_msg("iomemd did not start listening on %s within 120 s", d->socket);
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

/* The gauges of what the daemon closes later, from METRICS; -1 for one the reply lacked. */
struct it_pending {
        int64_t closing, orphans, jobs, connections;
};

static int it_pending_cb(const struct iomem_metric *m, void *userdata)
{
        struct it_pending *p = userdata;

        if (!m->name)
                return 0;
        if (!strcmp(m->name, "iomemd_closing_fds"))
                p->closing = (int64_t)m->value;
        else if (!strcmp(m->name, "iomemd_orphan_sockets"))
                p->orphans = (int64_t)m->value;
        else if (!strcmp(m->name, "iomemd_jobs"))
                p->jobs = (int64_t)m->value;
        else if (!strcmp(m->name, "iomemd_connections"))
                p->connections = (int64_t)m->value;
        return 0;
}

static void it_pending_get(struct iomem_client *probe, struct it_pending *p)
{
        int r;

        *p = (struct it_pending){ -1, -1, -1, -1 };
        r = iomem_metrics(probe, NULL, it_pending_cb, p);
        ck_assert_msg(r == 0, "probe metrics: %s", iomem_strerror(r));
        ck_assert_msg(p->closing >= 0 && p->orphans >= 0 && p->jobs >= 0 && p->connections >= 0,
                      "METRICS lacks iomemd_closing_fds, iomemd_orphan_sockets, iomemd_jobs or iomemd_connections");
}

/*
 * Poll METRICS over @probe, 10 ms apart for at most 10 s, until nothing the
 * daemon closes later is pending: no fd queued to or being closed by the
 * closer threads, no job (each holds an fd), and, with @connections > 0, no
 * orphan socket and exactly @connections connections (the probe's included:
 * the daemon frees a connection, its socket, fds and leased regions, before
 * it stops counting it). An orphan is looked at again at the next departure:
 * a connection that comes and goes makes one, all other clients being gone.
 */
static void it_daemon_wait_pending(const struct it_daemon *d, struct iomem_client *probe, int64_t connections)
{
        struct it_pending p;

        for (int i = 0; i < 1000; i++) {
                it_pending_get(probe, &p);
                if (p.closing == 0 && p.jobs == 0 &&
                    (connections <= 0 || (p.orphans == 0 && p.connections == connections)))
                        return;
                if (connections > 0 && p.orphans > 0) {
                        struct iomem_client *sweep = NULL;
                        int r = iomem_connect(d->socket, &sweep);

                        ck_assert_msg(r == 0, "sweep connect: %s", iomem_strerror(r));
                        iomem_disconnect(sweep);
                }
                it_sleep_ms(10);
        }
        ck_abort_msg("after 10 s the daemon still has %lld fds closing, %lld jobs, %lld orphan sockets and "
                     "%lld connections (want %lld)",
                     (long long)p.closing, (long long)p.jobs, (long long)p.orphans, (long long)p.connections,
                     (long long)connections);
}

struct it_metric_find {
        const char *name;
        uint64_t value;
        bool found;
};

static int it_metric_cb(const struct iomem_metric *m, void *userdata)
{
        struct it_metric_find *f = userdata;

        if (m->name && !strcmp(m->name, f->name) && !m->label_value[0]) {
                f->value = m->value;
                f->found = true;
        }
        return 0;
}

uint64_t it_metric(struct iomem_client *c, const char *name)
{
        struct it_metric_find f = { .name = name };
        int r = iomem_metrics(c, NULL, it_metric_cb, &f);

        ck_assert_msg(r == 0, "metrics: %s", iomem_strerror(r));
        ck_assert_msg(f.found, "METRICS has no %s", name);
        return f.value;
}

int it_daemon_settled_fds(const struct it_daemon *d)
{
        struct iomem_client *probe = NULL;
        int r, n;

        /*
         * A client that closed with fds unread in its socket can leave the
         * daemon holding its side as an orphan (daemon/conn.c): the kernel
         * wakes the daemon with the hang-up before it frees the closed end's
         * queue, so the daemon may still see bytes unread then. One departure
         * first, then more while METRICS still counts an orphan.
         */
        r = iomem_connect(d->socket, &probe);
        ck_assert_msg(r == 0, "sweep connect: %s", iomem_strerror(r));
        iomem_disconnect(probe);
        probe = NULL;
        r = iomem_connect(d->socket, &probe);
        ck_assert_msg(r == 0, "probe connect: %s", iomem_strerror(r));
        it_daemon_wait_pending(d, probe, 1);
        /* nothing is left to close later: the count is what the daemon holds, the probe's socket included */
        n = fdutil_count(d->pid);
        ck_assert_int_gt(n, 0);
        iomem_disconnect(probe);
        return n;
}

int it_daemon_steady_fds(const struct it_daemon *d, struct iomem_client *c)
{
        int n;

        /* fds clients sent, region fds and the copies a RESIZE's or SEAL's job worked on: closed a little later */
        it_daemon_wait_pending(d, c, 0);
        n = fdutil_count(d->pid);
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

long it_hugepages(void)
{
        FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "re");
        long n = -1;

        if (f) {
                if (fscanf(f, "%ld", &n) != 1)
                        n = -1;
                fclose(f);
        }
        return n;
}

bool it_set_hugepages(long n)
{
        FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "we");

        if (!f)
                return false;
        fprintf(f, "%ld\n", n);
        return fclose(f) == 0;
}

size_t it_frame(uint8_t *out, uint16_t op, uint32_t id, const uint8_t *payload, int len)
{
        struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION, .opcode = op, .id = id };

        ck_assert_int_ge(len, 0);
        h.length = (uint32_t)len;
        proto_header_encode(&h, out);
        memcpy(out + PROTO_HEADER_SIZE, payload, (size_t)len);
        return PROTO_HEADER_SIZE + (size_t)len;
}
