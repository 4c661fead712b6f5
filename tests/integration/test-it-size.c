/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-it-size: a region whose holder changed its size with ftruncate is reported and charged as it is. */
#include <grp.h>
#include <inttypes.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "itutil.h"
#include "../fault/fault.h"

static const enum iomem_backend backends[] = { IOMEM_BACKEND_MEMFD, IOMEM_BACKEND_SHM, IOMEM_BACKEND_FILE };

/*
 * The byte quota cannot be dodged by growing one's own region with ftruncate
 * (where no seal forbids it: RESIZABLE memfds, shm, file): the daemon takes
 * the real size when it next reports or hands out the region and charges the
 * owner up to its quota, never beyond (issue 10: growth must not take more
 * than the grower's own limits from any total); the owner's next CREATE is
 * refused, and the region keeps its real size.
 */
START_TEST(test_grown_by_holder_is_charged)
{
        static const char *const extra[] = { "--quota-bytes", "1M", NULL };
        struct it_daemon d;
        struct iomem_client *c = NULL;
        struct iomem_region *r = NULL, *r2 = NULL;
        struct iomem_create_opts o = { .flags = IOMEM_CREATE_RESIZABLE, .backend = backends[_i] };
        struct iomem_quota q;
        struct iomem_stat st;

        it_daemon_start(&d, extra);
        ck_assert_int_eq(iomem_connect(d.socket, &c), 0);
        ck_assert_int_eq(iomem_create(c, "grow", 4096, &o, &r), 0);
        ck_assert_int_eq(iomem_quota(c, &q), 0);
        ck_assert_uint_eq(q.bytes, 4096);

        /* the holder grows it behind the daemon's back: 64 MiB, sparse */
        ck_assert_int_eq(ftruncate(iomem_region_fd(r), 64 << 20), 0);
        ck_assert_int_eq(iomem_stat(c, "grow", &st), 0);
        ck_assert_uint_eq(st.size, 64 << 20);
        ck_assert_int_eq(iomem_quota(c, &q), 0);
        ck_assert_uint_eq(q.bytes, 1 << 20); /* its whole quota, not more */
        ck_assert_int_eq(iomem_create(c, "more", 4096, &o, &r2), -EDQUOT);

        /* an OPEN reports the real size too */
        iomem_region_free(r);
        ck_assert_int_eq(iomem_open(c, "grow", 0, 0, &r), 0);
        ck_assert_uint_eq(iomem_region_size(r), 64 << 20);

        /* deleting it refunds what was charged */
        ck_assert_int_eq(iomem_delete(c, "grow"), 0);
        ck_assert_int_eq(iomem_quota(c, &q), 0);
        ck_assert_uint_eq(q.bytes, 0);
        ck_assert_int_eq(iomem_create(c, "more", 4096, &o, &r2), 0);
        iomem_region_free(r2);
        iomem_region_free(r);
        iomem_disconnect(c);
        it_daemon_stop(&d);
}
END_TEST

/*
 * S1 with backends that cannot be sealed: a RESIZE that shrinks a region not
 * created RESIZABLE is refused even if a holder grew it meanwhile (the check
 * is against the real size, not the one last recorded).
 */
START_TEST(test_no_shrink_below_real_size)
{
        struct it_daemon d;
        struct iomem_client *c = NULL;
        struct iomem_region *r = NULL;
        struct iomem_create_opts o = { .backend = backends[_i] };

        it_daemon_start(&d, NULL);
        ck_assert_int_eq(iomem_connect(d.socket, &c), 0);
        ck_assert_int_eq(iomem_create(c, "fixed", 4096, &o, &r), 0);
        if (backends[_i] == IOMEM_BACKEND_MEMFD) {
                /* sealed SHRINK and GROW: the holder cannot change it at all */
                ck_assert_int_eq(ftruncate(iomem_region_fd(r), 65536), -1);
                ck_assert_int_eq(errno, EPERM);
                iomem_region_free(r);
                ck_assert_int_eq(iomem_delete(c, "fixed"), 0);
                iomem_disconnect(c);
                it_daemon_stop(&d);
                return;
        }
        ck_assert_int_eq(ftruncate(iomem_region_fd(r), 65536), 0);
        /* 8192 is more than recorded but less than real: a shrink, refused */
        ck_assert_int_eq(iomem_resize(c, "fixed", 8192), -EPERM);
        ck_assert_int_eq(iomem_region_refresh(r), 0);
        ck_assert_uint_eq(iomem_region_size(r), 65536);
        iomem_region_free(r);
        ck_assert_int_eq(iomem_delete(c, "fixed"), 0);
        iomem_disconnect(c);
        it_daemon_stop(&d);
}
END_TEST

/*
 * S1 at the map, not at the OPEN: libiomem reads a received region's size with fstat when the region is first
 * used. Another holder shrinks the object between B's OPEN and B's map: the map of the size B was told is refused
 * (-ERANGE) instead of a mapping whose second page would SIGBUS, and B's region then reports the object's size.
 */
START_TEST(test_shrunk_between_open_and_map)
{
        struct it_daemon d;
        struct iomem_client *a = NULL, *b = NULL;
        struct iomem_region *ra = NULL, *rb = NULL;
        struct iomem_create_opts o = { .flags = IOMEM_CREATE_RESIZABLE, .backend = backends[_i] };
        uint8_t *addr = NULL;

        it_daemon_start(&d, NULL);
        a = it_client_connect(&d);
        b = it_client_connect(&d);
        ck_assert_int_eq(iomem_create(a, "shrunk", 8192, &o, &ra), 0);
        ck_assert_int_eq(iomem_open(b, "shrunk", 0, 0, &rb), 0);
        ck_assert_int_eq(ftruncate(iomem_region_fd(ra), 4096), 0);

        ck_assert_int_eq(iomem_region_map(rb, 0, 8192, PROT_READ | PROT_WRITE, (void **)&addr), -ERANGE);
        ck_assert_int_eq(iomem_region_map(rb, 4096, 4096, PROT_READ, (void **)&addr), -ERANGE);
        ck_assert_uint_eq(iomem_region_size(rb), 4096);
        ck_assert_int_eq(iomem_region_map(rb, 0, 0, PROT_READ | PROT_WRITE, (void **)&addr), 0);
        memset(addr, 0x5a, 4096);
        ck_assert_int_eq(iomem_unmap(addr, 4096), 0);

        /* shrunk again after that first use: the map still reads the size anew */
        ck_assert_int_eq(ftruncate(iomem_region_fd(ra), 0), 0);
        ck_assert_int_eq(iomem_region_map(rb, 0, 4096, PROT_READ, (void **)&addr), -ERANGE);
        ck_assert_uint_eq(iomem_region_size(rb), 0);

        iomem_region_free(rb);
        iomem_region_free(ra);
        ck_assert_int_eq(iomem_delete(a, "shrunk"), 0);
        iomem_disconnect(b);
        iomem_disconnect(a);
        it_daemon_stop(&d);
}
END_TEST

static int region_fds_cb(const struct iomem_metric *m, void *userdata)
{
        if (m->name && strcmp(m->name, "iomemd_region_fds") == 0)
                *(uint64_t *)userdata = m->value;
        return 0;
}

/*
 * Parked regions (--max-region-fds 1: all but the first live in fd keepers)
 * are opened as the objects they are, with the sizes they have: a memfd
 * sealed against SHRINK and GROW at its CREATE (its size final from then on:
 * its OPENs are a bare copy from the keeper, no fstat) and a RESIZABLE one a
 * holder grew (size read again at every OPEN, the copy checked by dev/ino).
 */
START_TEST(test_parked_open_same_object_and_size)
{
        static const char *const extra[] = { "--max-region-fds", "1", NULL };
        struct iomem_create_opts ro = { .flags = IOMEM_CREATE_RESIZABLE, .backend = IOMEM_BACKEND_MEMFD };
        struct it_daemon d;
        struct iomem_client *c = NULL;
        struct iomem_region *held = NULL, *sealed = NULL, *grown = NULL;
        struct stat want, got;
        uint64_t region_fds = 0;
        char *p;

        it_daemon_start(&d, extra);
        ck_assert_int_eq(iomem_connect(d.socket, &c), 0);
        ck_assert_int_eq(iomem_create(c, "held", 4096, NULL, &held), 0);
        ck_assert_int_eq(iomem_create(c, "sealed", 8192, NULL, &sealed), 0);
        ck_assert_int_eq(iomem_create(c, "grown", 4096, &ro, &grown), 0);
        ck_assert_int_eq(iomem_metrics(c, NULL, region_fds_cb, &region_fds), 0);
        ck_assert_uint_eq(region_fds, 1); /* "sealed" and "grown" are parked */
        ck_assert_int_eq(pwrite(iomem_region_fd(sealed), "parked", 7, 4096), 7);
        ck_assert_int_eq(fstat(iomem_region_fd(sealed), &want), 0);
        for (int i = 0; i < 3; i++) {
                struct iomem_region *r = NULL;

                ck_assert_int_eq(iomem_open(c, "sealed", 0, 0, &r), 0);
                ck_assert_uint_eq(iomem_region_size(r), 8192);
                ck_assert_int_eq(fstat(iomem_region_fd(r), &got), 0);
                ck_assert_msg(got.st_dev == want.st_dev && got.st_ino == want.st_ino,
                              "OPEN of a parked region gave another object");
                ck_assert_int_eq(fcntl(iomem_region_fd(r), F_GETFL) & O_ACCMODE, O_RDWR);
                ck_assert_int_eq(iomem_region_map(r, 0, 8192, PROT_READ, (void **)&p), 0);
                ck_assert_str_eq(p + 4096, "parked");
                ck_assert_int_eq(iomem_unmap(p, 8192), 0);
                iomem_region_free(r);
                /* read-only: a reopen of the copy, checked by dev/ino */
                ck_assert_int_eq(iomem_open(c, "sealed", IOMEM_OPEN_RDONLY, 0, &r), 0);
                ck_assert_int_eq(fstat(iomem_region_fd(r), &got), 0);
                ck_assert(got.st_dev == want.st_dev && got.st_ino == want.st_ino);
                ck_assert_int_eq(fcntl(iomem_region_fd(r), F_GETFL) & O_ACCMODE, O_RDONLY);
                iomem_region_free(r);
        }
        /* a holder grows the RESIZABLE one behind the daemon's back: each OPEN tells the size it has now */
        for (int i = 1; i <= 3; i++) {
                struct iomem_region *r = NULL;

                ck_assert_int_eq(ftruncate(iomem_region_fd(grown), (off_t)i << 16), 0);
                ck_assert_int_eq(iomem_open(c, "grown", 0, 0, &r), 0);
                ck_assert_uint_eq(iomem_region_size(r), (uint64_t)i << 16);
                ck_assert_int_eq(fstat(iomem_region_fd(r), &got), 0);
                ck_assert_int_eq(fstat(iomem_region_fd(grown), &want), 0);
                ck_assert(got.st_dev == want.st_dev && got.st_ino == want.st_ino);
                iomem_region_free(r);
        }
        iomem_region_free(held);
        iomem_region_free(sealed);
        iomem_region_free(grown);
        ck_assert_int_eq(iomem_delete(c, "held"), 0);
        ck_assert_int_eq(iomem_delete(c, "sealed"), 0);
        ck_assert_int_eq(iomem_delete(c, "grown"), 0);
        iomem_disconnect(c);
        it_daemon_stop(&d);
}
END_TEST

/* ---- a stand-in for systemd's fd store (NOTIFY_SOCKET, FDSTORE=1, LISTEN_FDS on the next start) ---- */

#define STORE_MAX 16

struct fake_store {
        int sock;           /* the NOTIFY_SOCKET the daemon sends to */
        char path[108];
        int n;
        char names[STORE_MAX][64];
        int fds[STORE_MAX];
        char log[128]; /* not empty: the daemon's stderr goes to this file (appended) */
        const char *preload;  /* not NULL: the daemon runs under this LD_PRELOAD (tests/fault's library) ... */
        char ctl[128];        /* ... driven through this control page ($IOMEM_FAULT_CTL) */
};

static void store_open(struct fake_store *st, const char *dir)
{
        struct sockaddr_un a = { .sun_family = AF_UNIX };

        memset(st, 0, sizeof(*st));
        snprintf(st->path, sizeof(st->path), "%s/notify", dir);
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", st->path);
        st->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(st->sock, 0);
        ck_assert_int_eq(bind(st->sock, (struct sockaddr *)&a, sizeof(a)), 0);
}

/* Take every notification the daemon sent so far: FDSTORE=1 keeps the fd under its FDNAME, FDSTOREREMOVE=1 drops it. */
static void store_drain(struct fake_store *st)
{
        for (;;) {
                char buf[512], cbuf[CMSG_SPACE(sizeof(int) * 4)];
                struct iovec iov = { buf, sizeof(buf) - 1 };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                                     .msg_controllen = sizeof(cbuf) };
                const char *name;
                int fd = -1;
                ssize_t n = recvmsg(st->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

                if (n < 0) {
                        ck_assert_int_eq(errno, EAGAIN);
                        return;
                }
                buf[n] = '\0';
                for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
                        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
                                memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
                name = strstr(buf, "FDNAME=");
                if (strstr(buf, "FDSTORE=1") && name && fd >= 0) {
                        ck_assert_int_lt(st->n, STORE_MAX);
                        snprintf(st->names[st->n], sizeof(st->names[0]), "%.*s", (int)strcspn(name + 7, "\n"),
                                 name + 7);
                        st->fds[st->n++] = fd;
                        continue;
                }
                if (fd >= 0)
                        close(fd);
                if (strstr(buf, "FDSTOREREMOVE=1") && name) {
                        size_t len = strcspn(name + 7, "\n");

                        for (int i = 0; i < st->n; i++)
                                if (strlen(st->names[i]) == len && !strncmp(st->names[i], name + 7, len)) {
                                        close(st->fds[i]);
                                        st->fds[i] = st->fds[--st->n];
                                        memcpy(st->names[i], st->names[st->n], sizeof(st->names[0]));
                                        break;
                                }
                }
        }
}

static void store_close(struct fake_store *st)
{
        for (int i = 0; i < st->n; i++)
                close(st->fds[i]);
        st->n = 0;
        close(st->sock);
        unlink(st->path);
}

/* Start iomemd on @d (its directory made) as systemd would under the store: NOTIFY_SOCKET, FDSTORE and the stored fds. */
static void store_spawn(struct it_daemon *d, const struct fake_store *st, const char *const *extra)
{
        const char *argv[32];
        int n = 0;

        argv[n++] = it_env("IOMEMD");
        argv[n++] = "--socket";
        argv[n++] = d->socket;
        argv[n++] = "--log-level";
        argv[n++] = "warning";
        for (; extra && *extra && n < 30; extra++)
                argv[n++] = *extra;
        argv[n] = NULL;
        fflush(NULL);
        d->pid = fork();
        ck_assert_int_ge(d->pid, 0);
        if (d->pid == 0) {
                char names[STORE_MAX * 65] = "", num[32];

                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (st->log[0]) {
                        int lfd = open(st->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

                        if (lfd < 0 || dup2(lfd, 2) < 0)
                                _exit(126);
                }
                /* above every number they go to, then to 3, 4, ... without CLOEXEC */
                for (int i = 0; i < st->n; i++)
                        if (dup2(st->fds[i], 200 + i) < 0)
                                _exit(126);
                for (int i = 0; i < st->n; i++) {
                        if (dup2(200 + i, 3 + i) < 0)
                                _exit(126);
                        strcat(names, i ? ":" : "");
                        strcat(names, st->names[i]);
                }
                if (st->preload) {
                        setenv("LD_PRELOAD", st->preload, 1);
                        setenv("IOMEM_FAULT_CTL", st->ctl, 1);
                }
                setenv("NOTIFY_SOCKET", st->path, 1);
                setenv("FDSTORE", "16", 1);
                if (st->n) {
                        snprintf(num, sizeof(num), "%d", st->n);
                        setenv("LISTEN_FDS", num, 1);
                        snprintf(num, sizeof(num), "%d", (int)getpid());
                        setenv("LISTEN_PID", num, 1);
                        setenv("LISTEN_FDNAMES", names, 1);
                }
                execv(argv[0], (char *const *)argv);
                _exit(127);
        }
        for (int i = 0; i < 1000; i++) {
                int status;

                if (it_socket_ready(d->socket)) {
                        it_sleep_ms(50); /* its signal handlers come right after the socket */
                        return;
                }
                ck_assert_msg(waitpid(d->pid, &status, WNOHANG) == 0, "iomemd exited during startup (status %d)",
                              status);
                it_sleep_ms(10);
        }
        ck_abort_msg("iomemd did not start listening on %s", d->socket);
}

/*
 * Fork a child that drops to uid 1000 (gid 1000, supplementary @groups) and connects to @socket; in the child
 * return the client (exit 100 if the drop fails, 101 if the connect does), in the parent *@pid the child's pid.
 */
static struct iomem_client *fork_uid1000(const char *socket, const gid_t *groups, size_t ngroups, pid_t *pid)
{
        struct iomem_client *c = NULL;

        fflush(NULL);
        *pid = fork();
        ck_assert_int_ge(*pid, 0);
        if (*pid != 0)
                return NULL;
        if (setgroups(ngroups, groups) < 0 || setresgid(1000, 1000, 1000) < 0 || setresuid(1000, 1000, 1000) < 0)
                _exit(100);
        if (iomem_connect(socket, &c) < 0)
                _exit(101);
        return c;
}

/* Reap the child of fork_uid1000() (@what names it if it died) and return its exit status. */
static int wait_uid1000(pid_t pid, const char *what)
{
        int status;

        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status), "%s died (0x%x)", what, status);
        return WEXITSTATUS(status);
}

/* A daemon directory uid 1000 can reach the socket (0666) in: @d's dir made, its socket path set. */
static void restart_dir(struct it_daemon *d)
{
        snprintf(d->dir, sizeof(d->dir), "/tmp/iomem-it.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(d->dir));
        ck_assert_int_eq(chmod(d->dir, 0755), 0); /* uid 1000 reaches the socket (0666) */
        snprintf(d->socket, sizeof(d->socket), "%s/sock", d->dir);
}

/* Open the fake store in @d's directory and start iomemd under it. */
static void store_start(struct it_daemon *d, struct fake_store *st, const char *const *extra)
{
        store_open(st, d->dir);
        store_spawn(d, st, extra);
}

/* A crash, and systemd starts it again with what its store holds. */
static void store_restart(struct it_daemon *d, const struct fake_store *st, const char *const *extra)
{
        it_daemon_kill(d, SIGKILL);
        unlink(d->socket);
        store_spawn(d, st, extra);
}

/* Kill the daemon, close the store and remove @d's directory (after @also, a file in it, if not NULL). */
static void store_finish(struct it_daemon *d, struct fake_store *st, const char *also)
{
        it_daemon_kill(d, SIGKILL);
        store_close(st);
        unlink(d->socket);
        if (also)
                unlink(also);
        rmdir(d->dir);
}

/*
 * As uid 1000: make RESIZABLE "big2" and "big" and grow each to 1 TiB (sparse) with ftruncate; STAT makes the
 * daemon see it. "big2" is then sealed SHRINK and GROW.
 */
static int grow_as_other_uid(const char *socket)
{
        struct iomem_create_opts o = { .flags = IOMEM_CREATE_RESIZABLE };
        struct iomem_client *c;
        struct iomem_region *r = NULL, *r2 = NULL;
        struct iomem_stat s;
        pid_t pid;

        c = fork_uid1000(socket, NULL, 0, &pid);
        if (pid == 0) {
                if (iomem_create(c, "big2", 4096, &o, &r2) < 0 || iomem_create(c, "big", 4096, &o, &r) < 0)
                        _exit(101);
                /* sealed once grown: its size is fixed now, but it was never charged in full */
                if (ftruncate(iomem_region_fd(r2), (off_t)(UINT64_C(1) << 40)) < 0 || iomem_stat(c, "big2", &s) < 0 ||
                    iomem_seal(c, "big2", IOMEM_SEAL_SHRINK | IOMEM_SEAL_GROW, NULL) < 0)
                        _exit(102);
                if (ftruncate(iomem_region_fd(r), (off_t)(UINT64_C(1) << 40)) < 0)
                        _exit(103);
                if (iomem_stat(c, "big", &s) < 0 || s.size != UINT64_C(1) << 40)
                        _exit(104);
                _exit(0);
        }
        return wait_uid1000(pid, "grower");
}

/*
 * A holder's growth is charged within the owner's limits (issue 10, item 4),
 * and must stay so across a restart: the regions the fd store gives back are
 * charged by their real size only as far as those limits allow. Before,
 * uid 1000's 1 TiB region counted in full after the restart, past
 * --max-bytes, and every other uid's CREATE was -EDQUOT until it was deleted.
 */
START_TEST(test_growth_charged_within_limits_after_restart)
{
        static const char *const extra[] = { "--max-bytes", "1G", "--quota-bytes", "256M", NULL };
        struct fake_store st;
        struct it_daemon d;
        struct iomem_client *c = NULL;
        struct iomem_region *r = NULL;
        struct iomem_status s;
        struct iomem_stat rs;
        int k;

        restart_dir(&d);
        store_start(&d, &st, extra);

        ck_assert_int_eq(grow_as_other_uid(d.socket), 0);
        ck_assert_int_eq(iomem_connect(d.socket, &c), 0);
        ck_assert_int_eq(iomem_status(c, &s), 0);
        ck_assert_uint_le(s.bytes, UINT64_C(256) << 20); /* charged up to its owner's quota */
        ck_assert_int_eq(iomem_create(c, "before", 4096, NULL, &r), 0);
        iomem_region_free(r);
        r = NULL;
        iomem_disconnect(c);
        c = NULL;
        store_drain(&st);
        ck_assert_int_eq(st.n, 4); /* "meta", "big", "big2", "before" */

        store_restart(&d, &st, extra);
        ck_assert_int_eq(iomem_connect(d.socket, &c), 0);
        ck_assert_int_eq(iomem_stat(c, "big", &rs), 0);
        ck_assert_uint_eq(rs.size, UINT64_C(1) << 40); /* the region kept its real size */
        ck_assert_int_eq(iomem_status(c, &s), 0);
        fprintf(stderr, "after the restart the daemon counts %llu bytes\n", (unsigned long long)s.bytes);
        k = iomem_create(c, "after", 4096, NULL, &r);
        ck_assert_msg(k == 0, "another uid's CREATE after the restart: %s", iomem_strerror(k));
        ck_assert_uint_le(s.bytes, (UINT64_C(256) << 20) + 4096);
        iomem_region_free(r);
        iomem_disconnect(c);
        store_finish(&d, &st, NULL);
}
END_TEST

/*
 * As uid 1000, @step 0: RESIZABLE "grown" (4 KiB), then RESIZABLE "made" (128 MiB, charged in full by its
 * CREATE), then "grown" to 1 TiB with ftruncate and STAT (charged only the rest of the 256 MiB quota).
 * @step 1 (after the restart): DELETE "grown", then CREATE 200 MiB. Return: 0 if that CREATE succeeded,
 * 1 if -EDQUOT, >= 100 on a harness failure.
 */
static int charged_order_as_other_uid(const char *socket, int step)
{
        struct iomem_create_opts o = { .flags = IOMEM_CREATE_RESIZABLE };
        struct iomem_client *c;
        struct iomem_region *r = NULL, *r2 = NULL;
        struct iomem_stat s;
        int k;
        pid_t pid;

        c = fork_uid1000(socket, NULL, 0, &pid);
        if (pid == 0) {
                if (step == 0) {
                        if (iomem_create(c, "grown", 4096, &o, &r) < 0 ||
                            iomem_create(c, "made", UINT64_C(128) << 20, &o, &r2) < 0)
                                _exit(102);
                        if (ftruncate(iomem_region_fd(r), (off_t)(UINT64_C(1) << 40)) < 0 ||
                            iomem_stat(c, "grown", &s) < 0 || s.size != UINT64_C(1) << 40)
                                _exit(103);
                        _exit(0);
                }
                if (iomem_delete(c, "grown") < 0)
                        _exit(104);
                k = iomem_create(c, "more", UINT64_C(200) << 20, NULL, &r);
                _exit(k == 0 ? 0 : k == -EDQUOT ? 1 : 105);
        }
        return wait_uid1000(pid, "child");
}

/*
 * The restore must not move a holder's growth's missing charge onto a region
 * its CREATE charged in full. Before the restart uid 1000 held "made"
 * (128 MiB, charged) and "grown" (1 TiB, charged the other 128 MiB of its
 * 256 MiB quota): deleting "grown" would leave 128 MiB charged, room for
 * 128 MiB more. Charged in id order after the restart, "grown" took the whole
 * quota and "made" nothing: once "grown" was deleted, uid 1000 had 0 charged
 * with 128 MiB held, and could CREATE 200 MiB (328 MiB held, quota 256 MiB).
 */
START_TEST(test_restart_keeps_created_regions_charged)
{
        static const char *const extra[] = { "--max-bytes", "1G", "--quota-bytes", "256M", NULL };
        struct fake_store st;
        struct it_daemon d;

        restart_dir(&d);
        store_start(&d, &st, extra);
        ck_assert_int_eq(charged_order_as_other_uid(d.socket, 0), 0);
        store_drain(&st);
        ck_assert_int_eq(st.n, 3); /* "meta", "grown", "made" */

        store_restart(&d, &st, extra);
        ck_assert_int_eq(charged_order_as_other_uid(d.socket, 1), 1);
        store_finish(&d, &st, NULL);
}
END_TEST

/*
 * As uid 1000 (primary group 1000, member of 1005 too): RESIZABLE "g", its group changed to 1005, grown to
 * 1 TiB with ftruncate, then with @look a STAT (without it, never looked at since: no STAT, no OPEN, so the
 * daemon does not know it grew). Return: 0, >= 100 on a harness failure.
 */
static int grow_in_other_group(const char *socket, bool look)
{
        struct iomem_create_opts o = { .flags = IOMEM_CREATE_RESIZABLE };
        struct iomem_client *c;
        struct iomem_region *r = NULL;
        struct iomem_stat s;
        gid_t extra = 1005;
        pid_t pid;

        c = fork_uid1000(socket, &extra, 1, &pid);
        if (pid == 0) {
                if (iomem_create(c, "g", 4096, &o, &r) < 0)
                        _exit(101);
                if (iomem_chown(c, "g", IOMEM_ID_UNCHANGED, 1005) < 0)
                        _exit(102);
                if (ftruncate(iomem_region_fd(r), (off_t)(UINT64_C(1) << 40)) < 0)
                        _exit(103);
                if (look && (iomem_stat(c, "g", &s) < 0 || s.size != UINT64_C(1) << 40))
                        _exit(103);
                _exit(0);
        }
        return wait_uid1000(pid, "grower");
}

/*
 * Both tests below: uid 1000's limit is the default 256M; [gid 1005] (for uids whose primary group is 1005)
 * has no byte limit. "g" is grown to 1 TiB in group 1005 (grow_in_other_group(), with @look), then the daemon
 * restarts, and root's CREATE must still fit: the daemon charges "g" at most uid 1000's 256M.
 */
static void restart_after_growth_in_other_group(bool look)
{
        char conf[128];
        const char *extra[] = { "--config", conf, NULL };
        struct fake_store st;
        struct it_daemon d;
        struct iomem_client *c = NULL;
        struct iomem_region *r = NULL;
        struct iomem_status s;
        FILE *f;
        int k;

        restart_dir(&d);
        snprintf(conf, sizeof(conf), "%s/iomemd.conf", d.dir);
        f = fopen(conf, "we");
        ck_assert_ptr_nonnull(f);
        fputs("max-bytes = 1G\nquota-bytes = 256M\n[gid 1005]\nquota-bytes = 0\n", f);
        ck_assert_int_eq(fclose(f), 0);
        store_start(&d, &st, extra);
        ck_assert_int_eq(grow_in_other_group(d.socket, look), 0);
        store_drain(&st);
        ck_assert_int_eq(st.n, 2); /* "meta", "g" */

        store_restart(&d, &st, extra);
        ck_assert_int_eq(iomem_connect(d.socket, &c), 0);
        ck_assert_int_eq(iomem_status(c, &s), 0);
        k = iomem_create(c, "after", 4096, NULL, &r);
        ck_assert_msg(k == 0, "root's CREATE after the restart: %s (the daemon counts %llu bytes)", iomem_strerror(k),
                      (unsigned long long)s.bytes);
        ck_assert_uint_le(s.bytes, UINT64_C(256) << 20);
        iomem_region_free(r);
        iomem_disconnect(c);
        store_finish(&d, &st, conf);
}

/*
 * The region's group is the owner's choice (CHOWN to any group it is a member
 * of), not its primary group: the [gid] section of that group must not raise
 * what a holder's growth is charged after a restart. uid 1000's limit is the
 * default 256M; [gid 1005] (for uids whose primary group is 1005) has no
 * byte limit. Before, after the restart "g" was charged within [gid 1005]'s
 * limits: the whole --max-bytes, and root's CREATE was -EDQUOT.
 */
START_TEST(test_restart_growth_not_charged_by_chosen_group)
{
        restart_after_growth_in_other_group(true);
}
END_TEST

/*
 * As uid 1000 (primary group 1000, member of 1005 too), @step 0: "a" (200 MiB, sparse: charged in full by its
 * CREATE, within the 256M quota of its primary group), its group changed to 1005. @step 1 (after the restart):
 * CREATE "b" of 200 MiB. Return: 0 if that CREATE succeeded, 1 if -EDQUOT, >= 100 on a harness failure.
 */
static int tight_group_as_other_uid(const char *socket, int step)
{
        struct iomem_client *c;
        struct iomem_region *r = NULL;
        gid_t extra = 1005;
        pid_t pid;
        int k;

        c = fork_uid1000(socket, &extra, 1, &pid);
        if (pid == 0) {
                if (step == 0) {
                        if (iomem_create(c, "a", UINT64_C(200) << 20, NULL, &r) < 0)
                                _exit(102);
                        if (iomem_chown(c, "a", IOMEM_ID_UNCHANGED, 1005) < 0)
                                _exit(103);
                        _exit(0);
                }
                k = iomem_create(c, "b", UINT64_C(200) << 20, NULL, &r);
                _exit(k == 0 ? 0 : k == -EDQUOT ? 1 : 104);
        }
        return wait_uid1000(pid, "child");
}

/*
 * The region's group is the owner's choice, and the [gid] section of a group with a tighter byte quota than
 * the owner's must not lower what its regions are charged after a restart: else the owner, connecting again
 * with its own primary group, had room for them twice. uid 1000's limit is 256M; [gid 1005] has 1M. Before,
 * after the restart "a" (200 MiB) was charged 1M, and uid 1000's CREATE of 200 MiB more succeeded: 400 MiB
 * held under a 256M quota, and as much again after each restart.
 */
START_TEST(test_restart_charge_not_lowered_by_chosen_group)
{
        char conf[128];
        const char *extra[] = { "--config", conf, NULL };
        struct fake_store st;
        struct it_daemon d;
        FILE *f;

        restart_dir(&d);
        snprintf(conf, sizeof(conf), "%s/iomemd.conf", d.dir);
        f = fopen(conf, "we");
        ck_assert_ptr_nonnull(f);
        fputs("quota-bytes = 256M\n[gid 1005]\nquota-bytes = 1M\n", f);
        ck_assert_int_eq(fclose(f), 0);
        store_start(&d, &st, extra);
        ck_assert_int_eq(tight_group_as_other_uid(d.socket, 0), 0);
        store_drain(&st);
        ck_assert_int_eq(st.n, 2); /* "meta", "a" */

        store_restart(&d, &st, extra);
        ck_assert_msg(tight_group_as_other_uid(d.socket, 1) == 1,
                      "uid 1000 created 200 MiB more after the restart: 400 MiB held, quota-bytes 256M");
        store_finish(&d, &st, conf);
}
END_TEST

/*
 * test_restart_growth_not_charged_by_chosen_group, without the STAT: a growth the daemon never saw leaves the
 * region's slot saying "charged in full", and such regions were charged within the [gid] section of the group
 * the owner chose (1005: no byte limit), so the whole --max-bytes after the restart, and root's CREATE was
 * -EDQUOT until the region was deleted.
 */
START_TEST(test_restart_unseen_growth_not_charged_by_chosen_group)
{
        restart_after_growth_in_other_group(false);
}
END_TEST

/* The generation of @name (STATV) on a connection made with EVENTS to @socket. */
static uint64_t generation_of(const char *socket, const char *name)
{
        struct iomem_client *c = NULL;
        struct iomem_stat st;
        uint64_t gen = 0;

        ck_assert_int_eq(iomem_connect_flags(socket, IOMEM_CONNECT_EVENTS, &c), 0);
        ck_assert_int_eq(iomem_stat_version(c, name, &st, &gen), 0);
        iomem_disconnect(c);
        return gen;
}

/*
 * A name's generation grows across a DELETE and a new CREATE of it (iomem.h), and a restart must not take that
 * back: the fd store does not keep a deleted region, nor a LEASEd one, so the id counter, set past the ids
 * restored, went back below theirs. Before: "v" deleted at generation 3 (and "w", leased, at 4 dying with the
 * daemon) came back after the restart at generation 3, and a PUBLISH expecting generation 3 of the old "v"
 * replaced the new one.
 */
START_TEST(test_restart_generations_keep_growing)
{
        struct iomem_publish_opts po = { 0 };
        struct iomem_create_opts lease = { .flags = IOMEM_CREATE_LEASE };
        struct fake_store st;
        struct it_daemon d;
        struct iomem_client *c = NULL, *holder = NULL;
        struct iomem_region *r = NULL;
        uint64_t v_old, w_old, v_new, w_new;
        int fd, k;

        restart_dir(&d);
        store_start(&d, &st, NULL);
        ck_assert_int_eq(iomem_connect(d.socket, &c), 0);
        ck_assert_int_eq(iomem_create(c, "keep", 4096, NULL, &r), 0);
        iomem_region_free(r);
        ck_assert_int_eq(iomem_create(c, "v", 4096, NULL, &r), 0);
        iomem_region_free(r);
        v_old = generation_of(d.socket, "v");
        ck_assert_int_eq(iomem_delete(c, "v"), 0);
        ck_assert_int_eq(iomem_connect(d.socket, &holder), 0);
        ck_assert_int_eq(iomem_create(holder, "w", 4096, &lease, &r), 0); /* leased: not in the store */
        iomem_region_free(r);
        w_old = generation_of(d.socket, "w");
        iomem_disconnect(c);
        c = NULL;
        store_drain(&st);
        ck_assert_int_eq(st.n, 2); /* "meta", "keep" */

        store_restart(&d, &st, NULL);
        iomem_disconnect(holder);
        ck_assert_int_eq(iomem_connect_flags(d.socket, IOMEM_CONNECT_EVENTS, &c), 0);
        ck_assert_int_eq(iomem_create(c, "v", 4096, NULL, &r), 0);
        iomem_region_free(r);
        ck_assert_int_eq(iomem_create(c, "w", 4096, NULL, &r), 0);
        iomem_region_free(r);
        v_new = generation_of(d.socket, "v");
        w_new = generation_of(d.socket, "w");
        fprintf(stderr, "generations: v %llu -> %llu, w %llu -> %llu\n", (unsigned long long)v_old,
                (unsigned long long)v_new, (unsigned long long)w_old, (unsigned long long)w_new);
        ck_assert_msg(v_new > v_old, "\"v\" made again after the restart at generation %llu, deleted at %llu",
                      (unsigned long long)v_new, (unsigned long long)v_old);
        ck_assert_msg(w_new > w_old, "\"w\" made again after the restart at generation %llu, leased at %llu",
                      (unsigned long long)w_new, (unsigned long long)w_old);
        /* a publisher that read the old "v" must not replace the new one */
        fd = memfd_create("v", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, 4096), 0);
        ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
        ck_assert_int_eq(iomem_region_new_consume_fd(fd, &r), 0);
        po.expect_generation = v_old;
        k = iomem_publish(c, "v", r, &po, NULL);
        ck_assert_msg(k == -ESTALE, "PUBLISH expecting the deleted \"v\"'s generation: %s", iomem_strerror(k));
        iomem_region_free(r);
        iomem_disconnect(c);
        store_finish(&d, &st, NULL);
}
END_TEST

/*
 * As above, with nothing but leased regions before the restart: the store keeps none of them and no slot raised
 * the header's bound, so only the leased region's own CREATE can have (service_region_added(): "leased ones too").
 * test_restart_generations_keep_growing does not see it: its stored "keep" raises the bound 4096 past the leased
 * "w" made after it.
 */
START_TEST(test_restart_leased_only_generations_keep_growing)
{
        struct iomem_create_opts lease = { .flags = IOMEM_CREATE_LEASE };
        struct fake_store st;
        struct it_daemon d;
        struct iomem_client *c = NULL, *holder = NULL;
        struct iomem_region *r = NULL;
        uint64_t w_old, w_new;

        restart_dir(&d);
        store_start(&d, &st, NULL);
        ck_assert_int_eq(iomem_connect(d.socket, &holder), 0);
        ck_assert_int_eq(iomem_create(holder, "w", 4096, &lease, &r), 0); /* the first region: leased */
        iomem_region_free(r);
        w_old = generation_of(d.socket, "w");
        store_drain(&st);
        ck_assert_int_eq(st.n, 1); /* "meta" */

        store_restart(&d, &st, NULL);
        iomem_disconnect(holder);
        ck_assert_int_eq(iomem_connect(d.socket, &c), 0);
        ck_assert_int_eq(iomem_create(c, "w", 4096, NULL, &r), 0);
        iomem_region_free(r);
        w_new = generation_of(d.socket, "w");
        ck_assert_msg(w_new > w_old, "\"w\" made again after the restart at generation %llu, leased at %llu",
                      (unsigned long long)w_new, (unsigned long long)w_old);
        iomem_disconnect(c);
        store_finish(&d, &st, NULL);
}
END_TEST

/* Return: the fd the fake store keeps under @name (borrowed). */
static int store_fd(const struct fake_store *st, const char *name)
{
        for (int i = 0; i < st->n; i++)
                if (!strcmp(st->names[i], name))
                        return st->fds[i];
        ck_abort_msg("the fd store holds no \"%s\"", name);
        return -1;
}

/* Make @name (4096 bytes, every byte @v) through @c. Return: iomem_create()'s result. */
static int create_filled(struct iomem_client *c, const char *name, uint8_t v)
{
        struct iomem_region *r = NULL;
        void *p;
        int k = iomem_create(c, name, 4096, NULL, &r);

        if (k < 0)
                return k;
        ck_assert_int_eq(iomem_region_map(r, 0, 4096, PROT_READ | PROT_WRITE, &p), 0);
        memset(p, v, 4096);
        ck_assert_int_eq(iomem_unmap(p, 4096), 0);
        iomem_region_free(r);
        return 0;
}

/* Assert that @name opens through @c and every byte of it is @v. */
static void check_filled(struct iomem_client *c, const char *name, uint8_t v)
{
        struct iomem_region *r = NULL;
        uint8_t *p;
        int k = iomem_open(c, name, 0, 0, &r);

        ck_assert_msg(k == 0, "\"%s\" after the fd store's failed write: %s", name, iomem_strerror(k));
        ck_assert_int_eq(iomem_region_map(r, 0, 4096, PROT_READ, (void **)&p), 0);
        for (int i = 0; i < 4096; i++)
                ck_assert_msg(p[i] == v, "\"%s\" byte %d is %u, want %u", name, i, p[i], v);
        ck_assert_int_eq(iomem_unmap(p, 4096), 0);
        iomem_region_free(r);
}

/* Assert that @path (the daemon's log) has a line with @what in it. */
static void check_logged(const char *path, const char *what)
{
        char line[512];
        FILE *f = fopen(path, "re");
        bool found = false;

        ck_assert_ptr_nonnull(f);
        while (!found && fgets(line, sizeof(line), f))
                found = strstr(line, what) != NULL;
        fclose(f);
        ck_assert_msg(found, "the daemon's log has no line with \"%s\"", what);
}

/*
 * meta_restart_check() - for test_store_meta_write_fails: @c (still answering) is let go, the store holds "meta",
 * "keep" and "x" and nothing else; after a crash and a restart from it, "keep" and "x" are back with their bytes
 * and @absent is not. Return: a client of the new daemon.
 */
static struct iomem_client *meta_restart_check(struct it_daemon *d, struct fake_store *st, struct iomem_client *c,
                                               const char *absent)
{
        struct iomem_region *r = NULL;

        ck_assert_int_eq(iomem_ping(c), 0);
        iomem_disconnect(c);
        store_drain(st);
        ck_assert_int_eq(st->n, 3);
        store_restart(d, st, NULL);
        ck_assert_int_eq(iomem_connect(d->socket, &c), 0);
        check_filled(c, "keep", 0x11);
        check_filled(c, "x", 0x22);
        ck_assert_int_eq(iomem_open(c, absent, 0, 0, &r), -ENOENT);
        return c;
}

/*
 * The fd store's metadata file cannot be written (its pwrite()s fail: here F_SEAL_WRITE, added through the copy
 * the store keeps; ENOSPC or EIO take the same path): a slot's write (a CREATE whose id the header already
 * covers), the header's (the first CREATE after a restart raises next_id) and a PUBLISH's slot. Each request is
 * refused with an error, the daemon logs why and stays up, and every region stored before (and its content) is
 * there, also after two more restarts, the refused ones not.
 */
START_TEST(test_store_meta_write_fails)
{
        struct iomem_stat sb, s2;
        struct iomem_event ev;
        struct fake_store st;
        struct it_daemon d;
        struct iomem_client *c = NULL;
        struct iomem_region *r = NULL;
        int fd, k;

        restart_dir(&d);
        store_open(&st, d.dir);
        snprintf(st.log, sizeof(st.log), "%s/log", d.dir);
        store_spawn(&d, &st, NULL);
        ck_assert_int_eq(iomem_connect_flags(d.socket, IOMEM_CONNECT_EVENTS, &c), 0); /* PUBLISH needs it */
        ck_assert_int_eq(create_filled(c, "keep", 0x11), 0);
        ck_assert_int_eq(create_filled(c, "x", 0x22), 0); /* the header already covers its id: a slot only */
        store_drain(&st);
        ck_assert_int_eq(st.n, 3); /* "meta", "keep", "x" */
        ck_assert_int_eq(fcntl(store_fd(&st, "meta"), F_ADD_SEALS, F_SEAL_WRITE), 0);

        /* a slot's write fails */
        k = create_filled(c, "y", 0x33);
        ck_assert_msg(k == -ENOSPC, "CREATE with the metadata file unwritable: %s", iomem_strerror(k));
        ck_assert_str_eq(iomem_client_error_message(c), "cannot save the region (fd store)");
        check_logged(st.log, "fd store refused region \"y\": Operation not permitted");
        /* PUBLISH of a new version: refused, the old version stays */
        fd = memfd_create("keep", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, 4096), 0);
        ck_assert_int_eq(fchmod(fd, 0600), 0);
        ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
        ck_assert_int_eq(iomem_region_new_consume_fd(fd, &r), 0);
        k = iomem_publish(c, "keep", r, NULL, NULL);
        ck_assert_msg(k == -ENOSPC, "PUBLISH with the metadata file unwritable: %s", iomem_strerror(k));
        r = iomem_region_free(r);
        check_filled(c, "keep", 0x11);
        check_filled(c, "x", 0x22);
        ck_assert_int_eq(iomem_open(c, "y", 0, 0, &r), -ENOENT);
        /* CHMOD and CHOWN to the values "keep" has change nothing, need no write: they succeed (with their event,
         * as with a store that works); a real change is refused */
        ck_assert_int_eq(iomem_stat(c, "keep", &sb), 0);
        ck_assert_int_eq(iomem_watch(c, "keep", NULL), 0);
        k = iomem_chmod(c, "keep", sb.mode);
        ck_assert_msg(k == 0, "CHMOD to the mode it has, the metadata file unwritable: %s", iomem_strerror(k));
        k = iomem_chown(c, "keep", sb.uid, sb.gid);
        ck_assert_msg(k == 0, "CHOWN to the owner it has, the metadata file unwritable: %s", iomem_strerror(k));
        ck_assert_int_eq(iomem_chown(c, "keep", IOMEM_ID_UNCHANGED, IOMEM_ID_UNCHANGED), 0);
        k = iomem_chmod(c, "keep", sb.mode ^ 0004);
        ck_assert_msg(k == -ENOSPC, "CHMOD to a new mode, the metadata file unwritable: %s", iomem_strerror(k));
        ck_assert_int_eq(iomem_next_event(c, &ev, 0), 0);
        ck_assert_int_eq(ev.kind, IOMEM_EVENT_CHMOD);
        ck_assert_int_eq(iomem_next_event(c, &ev, 0), 0);
        ck_assert_int_eq(ev.kind, IOMEM_EVENT_CHOWN);
        ck_assert_int_eq(iomem_next_event(c, &ev, 0), 0);
        ck_assert_int_eq(ev.kind, IOMEM_EVENT_CHOWN);
        ck_assert_int_eq(iomem_next_event(c, &ev, 0), -EAGAIN);
        ck_assert_int_eq(iomem_stat(c, "keep", &s2), 0);
        ck_assert_uint_eq(s2.mode, sb.mode);
        c = meta_restart_check(&d, &st, c, "y");
        /* after the crash, the header's write fails (the first CREATE's id is past next_id) */
        k = create_filled(c, "z", 0x44);
        ck_assert_msg(k == -ENOSPC, "CREATE with the header unwritable: %s", iomem_strerror(k));
        check_logged(st.log, "fd store: cannot record region ids in its metadata file: Operation not permitted");
        iomem_disconnect(meta_restart_check(&d, &st, c, "z"));
        store_finish(&d, &st, st.log);
}
END_TEST

/*
 * meta_slot_mode() - the mode the fd store's metadata file (@fd) holds for region @name (the slot layout of
 * daemon/service.c: state at 0, name_len at 4, mode at 32, name at 48, 304 bytes a slot after a header as big).
 * Return: the mode; UINT32_MAX if no used slot names it.
 */
static uint32_t meta_slot_mode(int fd, const char *name)
{
        unsigned char s[304];
        uint32_t state, len, mode;

        for (off_t off = sizeof(s); pread(fd, s, sizeof(s), off) == (ssize_t)sizeof(s); off += sizeof(s)) {
                memcpy(&state, s, 4);
                memcpy(&len, s + 4, 4);
                memcpy(&mode, s + 32, 4);
                if (state == 0x44455355u && len == strlen(name) && !memcmp(s + 48, name, len))
                        return mode;
        }
        return UINT32_MAX;
}

/*
 * chmod_half_slot() - CHMOD of @name to @mode with the fd store's disk full (tests/fault armed through @ctl: the
 * slot's write short, the rollback's rewrite failing with ENOSPC): refused with -ENOSPC, the slot left with half of
 * @mode in it. The store works again after it.
 */
static void chmod_half_slot(struct fault_ctl *ctl, struct iomem_client *c, const char *name, uint32_t mode)
{
        int k;

        ctl->err = 0;
        ctl->then_err = ENOSPC;
        ctl->sticky = 1;
        k = iomem_chmod(c, name, mode);
        ctl->sticky = 0;
        ctl->err = 0;
        ck_assert_msg(k == -ENOSPC, "CHMOD of \"%s\" whose write and rollback were short: %s", name,
                      iomem_strerror(k));
}

/*
 * h_mode_after_start() - for test_store_pwrite_fails: @c is let go, the store holds "meta", "keep", "h" and "s";
 * the daemon ends by @sig (SIGKILL: a crash; SIGTERM: a stop) and starts again from the store: "h" is back with
 * its bytes and mode @mode (@what says after what). Return: a client of the new daemon.
 */
static struct iomem_client *h_mode_after_start(struct it_daemon *d, struct fake_store *st, struct iomem_client *c,
                                               int sig, uint32_t mode, const char *what)
{
        struct iomem_stat sb;

        iomem_disconnect(c);
        store_drain(st);
        ck_assert_int_eq(st->n, 4);
        it_daemon_kill(d, sig);
        unlink(d->socket);
        store_spawn(d, st, NULL);
        ck_assert_int_eq(iomem_connect(d->socket, &c), 0);
        check_filled(c, "h", 0x22);
        ck_assert_int_eq(iomem_stat(c, "h", &sb), 0);
        ck_assert_msg(sb.mode == mode, "\"h\" after %s: mode %04o, not %04o", what, sb.mode, mode);
        return c;
}

/*
 * One pwrite() of the fd store's metadata file fails with a real errno (tests/fault's preload, armed for the next
 * pwrite(): the daemon makes no other): the header's, the first CREATE after a restart raising next_id (ENOSPC),
 * then a slot's (EIO). Each CREATE is refused with -ENOSPC, the daemon logs why and stays up, the same CREATE
 * then succeeds, and after a restart every region acknowledged is there with its content.
 */
START_TEST(test_store_pwrite_fails)
{
        const char *lib = getenv("IOMEM_FAULT_LIB");
        struct iomem_stat sb, s2, hb;
        struct iomem_quota q;
        struct fault_ctl *ctl;
        struct fake_store st;
        struct it_daemon d;
        struct iomem_client *c = NULL, *w = NULL, *u;
        struct iomem_region *r = NULL;
        struct iomem_event ev;
        pid_t pid;
        int fd, k;

        if (!lib) {
                fprintf(stderr, "test_store_pwrite_fails: skipped (no IOMEM_FAULT_LIB: a sanitizer build)\n");
                return;
        }
        restart_dir(&d);
        store_open(&st, d.dir);
        snprintf(st.log, sizeof(st.log), "%s/log", d.dir);
        snprintf(st.ctl, sizeof(st.ctl), "%s/ctl", d.dir);
        st.preload = lib;
        fd = open(st.ctl, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, sizeof(*ctl)), 0);
        ctl = mmap(NULL, sizeof(*ctl), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ck_assert_ptr_ne(ctl, MAP_FAILED);
        close(fd);
        ctl->magic = FAULT_MAGIC;
        ctl->func = -1;
        store_spawn(&d, &st, NULL);
        ck_assert_int_eq(iomem_connect(d.socket, &c), 0);
        ck_assert_int_eq(create_filled(c, "keep", 0x11), 0);
        iomem_disconnect(c);
        c = NULL;
        store_drain(&st);
        ck_assert_int_eq(st.n, 2); /* "meta", "keep" */
        store_restart(&d, &st, NULL); /* the restored table's ids start at the header's next_id */

        ck_assert_int_eq(iomem_connect(d.socket, &c), 0);
        ctl->err = ENOSPC;
        ctl->func = FAULT_PWRITE;
        ctl->countdown = 1;
        k = create_filled(c, "h", 0x22);
        ck_assert_msg(k == -ENOSPC, "CREATE whose header write failed: %s", iomem_strerror(k));
        ck_assert_uint_eq(ctl->injected, 1);
        check_logged(st.log, "fd store: cannot record region ids in its metadata file: No space left on device");
        ck_assert_int_eq(iomem_open(c, "h", 0, 0, &r), -ENOENT);
        ck_assert_int_eq(create_filled(c, "h", 0x22), 0);
        ctl->err = EIO;
        ctl->countdown = 1;
        k = create_filled(c, "s", 0x33); /* its id is below next_id now: a slot's write only */
        ck_assert_msg(k == -ENOSPC, "CREATE whose slot write failed: %s", iomem_strerror(k));
        ck_assert_uint_eq(ctl->injected, 2);
        check_logged(st.log, "fd store refused region \"s\": Input/output error");
        ck_assert_int_eq(iomem_open(c, "s", 0, 0, &r), -ENOENT);
        ck_assert_int_eq(create_filled(c, "s", 0x33), 0);
        /* CHMOD and CHOWN rewrite the slot: refused if that fails (a restart would undo an acknowledged change) */
        ck_assert_int_eq(iomem_connect_flags(d.socket, IOMEM_CONNECT_EVENTS, &w), 0);
        ck_assert_int_eq(iomem_watch(w, "", NULL), 0);
        ck_assert_int_eq(iomem_stat(c, "keep", &sb), 0);
        ck_assert_uint_ne(sb.mode, 0640);
        ck_assert_uint_eq(sb.uid, 0);
        ctl->countdown = 1;
        k = iomem_chmod(c, "keep", 0640);
        ck_assert_msg(k == -ENOSPC, "CHMOD whose slot write failed: %s", iomem_strerror(k));
        ck_assert_uint_eq(ctl->injected, 3);
        ctl->countdown = 1;
        k = iomem_chown(c, "keep", 1000, 1000);
        ck_assert_msg(k == -ENOSPC, "CHOWN whose slot write failed: %s", iomem_strerror(k));
        ck_assert_uint_eq(ctl->injected, 4);
        check_logged(st.log, "fd store: cannot update metadata of region \"keep\": Input/output error");
        ck_assert_int_eq(iomem_stat(c, "keep", &s2), 0);
        ck_assert_uint_eq(s2.mode, sb.mode);
        ck_assert_uint_eq(s2.uid, 0);
        ck_assert_uint_eq(s2.gid, sb.gid);
        ck_assert_int_eq(iomem_quota(c, &q), 0);
        ck_assert_uint_eq(q.regions, 3); /* root still owns (and is charged for) "keep", "h" and "s" */
        /* ... and uid 1000, whose charge CHOWN took back, is charged for nothing */
        u = fork_uid1000(d.socket, NULL, 0, &pid);
        if (pid == 0)
                _exit(iomem_quota(u, &q) < 0 ? 102 : q.regions || q.bytes ? 103 : 0);
        k = wait_uid1000(pid, "uid 1000's QUOTA");
        ck_assert_msg(k == 0, "uid 1000's QUOTA: exit %d (103: it is charged after the refused CHOWN)", k);
        /*
         * A short write (the slot's first half, the new mode in it, then an error): refused, the slot written again
         * with the old mode (else the restart below brings the refused one back), the cause logged as EIO (a short
         * write sets no errno: not whatever an earlier call left in it)
         */
        ck_assert_int_eq(iomem_stat(c, "h", &hb), 0);
        ck_assert_uint_ne(hb.mode, 0640);
        ctl->err = 0;
        ctl->countdown = 1;
        k = iomem_chmod(c, "h", 0640);
        ck_assert_msg(k == -ENOSPC, "CHMOD whose slot write was short: %s", iomem_strerror(k));
        ck_assert_uint_eq(ctl->injected, 5);
        check_logged(st.log, "fd store: cannot update metadata of region \"h\": Input/output error");
        ck_assert_int_eq(iomem_stat(c, "h", &s2), 0);
        ck_assert_uint_eq(s2.mode, hb.mode);
        /*
         * The write short and the rollback's rewrite failing (a full disk: what fits, then ENOSPC): the slot keeps
         * half of the refused mode (0604 in it) until the next slot write that works (CHMOD of "keep" just below)
         * writes it whole again first, else the restart below brings 0604 back
         */
        chmod_half_slot(ctl, c, "h", 0604);
        ck_assert_uint_eq(ctl->injected, 7);
        ck_assert_int_eq(iomem_stat(c, "h", &s2), 0);
        ck_assert_uint_eq(s2.mode, hb.mode);
        ck_assert_int_eq(iomem_chmod(c, "keep", 0640), 0);
        ck_assert_int_eq(iomem_chown(c, "s", 1000, 1000), 0);
        ck_assert_int_eq(iomem_ping(c), 0);
        /* the watcher heard of the two changes made, not of the two refused (the daemon queued them before
         * answering @c; the PING reads them in) */
        ck_assert_int_eq(iomem_ping(w), 0);
        ck_assert_int_eq(iomem_next_event(w, &ev, 0), 0);
        ck_assert_msg(ev.kind == IOMEM_EVENT_CHMOD && !strcmp(ev.name, "keep") && ev.mode == 0640,
                      "first event: kind %u \"%s\" mode %04o", ev.kind, ev.name, ev.mode);
        ck_assert_int_eq(iomem_next_event(w, &ev, 0), 0);
        ck_assert_msg(ev.kind == IOMEM_EVENT_CHOWN && !strcmp(ev.name, "s") && ev.uid == 1000,
                      "second event: kind %u \"%s\" uid %u (an event of a refused change?)", ev.kind, ev.name,
                      ev.uid);
        ck_assert_int_eq(iomem_next_event(w, &ev, 0), -EAGAIN);
        iomem_disconnect(w);
        iomem_disconnect(c);
        c = NULL;
        store_drain(&st);
        ck_assert_int_eq(st.n, 4); /* "meta", "keep", "h", "s" */

        store_restart(&d, &st, NULL);
        ck_assert_int_eq(iomem_connect(d.socket, &c), 0);
        check_filled(c, "keep", 0x11);
        check_filled(c, "h", 0x22);
        check_filled(c, "s", 0x33);
        ck_assert_int_eq(iomem_stat(c, "keep", &s2), 0);
        ck_assert_uint_eq(s2.mode, 0640);
        ck_assert_uint_eq(s2.uid, 0);
        ck_assert_int_eq(iomem_stat(c, "s", &s2), 0);
        ck_assert_uint_eq(s2.uid, 1000);
        ck_assert_int_eq(iomem_stat(c, "h", &s2), 0);
        ck_assert_msg(s2.mode == hb.mode, "\"h\" after a restart: mode %04o, a refused CHMOD's 0640 or 0604?",
                      s2.mode);
        /*
         * The same half-written slot, then a CHMOD to the mode "h" has, with the store working again: acknowledged,
         * so it must be in the store (the slot made whole) though it changes no value; the restart straight after
         * it (no other slot write between) must bring that mode back, not the refused 0604
         */
        chmod_half_slot(ctl, c, "h", 0604);
        k = iomem_chmod(c, "h", hb.mode);
        ck_assert_msg(k == 0, "CHMOD to the mode it has, the store working again: %s", iomem_strerror(k));
        /* at once (the status timer, 47, would write it too, up to 2 s later) */
        store_drain(&st);
        ck_assert_msg(meta_slot_mode(store_fd(&st, "meta"), "h") == hb.mode,
                      "\"h\"'s slot after an acknowledged CHMOD to %04o: mode %04o", hb.mode,
                      meta_slot_mode(store_fd(&st, "meta"), "h"));
        c = h_mode_after_start(&d, &st, c, SIGKILL, hb.mode, "an acknowledged CHMOD to its mode and a restart");
        /*
         * The same half-written slot, the store working again, and no request after it: the daemon writes it whole
         * by itself (its 2 s status timer), else a crash then brings 0604 back. The loop waits for that write (its
         * bound, 20 s, only detects that it never comes)
         */
        chmod_half_slot(ctl, c, "h", 0604);
        store_drain(&st);
        ck_assert_uint_eq(meta_slot_mode(store_fd(&st, "meta"), "h") & 0777, 0604); /* half of the refused one */
        for (int i = 0; i < 2000 && meta_slot_mode(store_fd(&st, "meta"), "h") != hb.mode; i++)
                it_sleep_ms(10);
        ck_assert_msg(meta_slot_mode(store_fd(&st, "meta"), "h") == hb.mode,
                      "\"h\"'s slot after a refused CHMOD, the store working again: mode %04o, not %04o",
                      meta_slot_mode(store_fd(&st, "meta"), "h"), hb.mode);
        c = h_mode_after_start(&d, &st, c, SIGKILL, hb.mode, "the timer's rewrite and a restart");
        /*
         * The same half-written slot, the store working again, and no request after it: a stop (SIGTERM, as a
         * `systemctl restart` sends) writes the slot whole before the daemon exits, else the restart brings 0604
         */
        chmod_half_slot(ctl, c, "h", 0604);
        c = h_mode_after_start(&d, &st, c, SIGTERM, hb.mode, "a refused CHMOD, a stop and a start");
        /*
         * Ten slots pending against a store that stays full (every pwrite() fails): a refused CHMOD tries one of
         * them again, not all ten (each slot write used to write every pending slot first: n^2/2 failing pwrite()s
         * for a start clearing n slots of an unwritable store). Its pwrite()s: the slot's and its rollback's, each
         * after one pending slot's, and at most one of the status timer's pass, which tries one too.
         */
        int64_t off[11];

        for (int i = 0; i < 11; i++) {
                char nm[8];

                snprintf(nm, sizeof(nm), "p%d", i);
                ck_assert_int_eq(create_filled(c, nm, 0x44), 0);
                off[i] = __atomic_load_n(&ctl->last_offset, __ATOMIC_ACQUIRE); /* nothing pending: its slot's */
                store_drain(&st); /* the store's datagram queue holds 10: a daemon's notify would wait */
        }
        ctl->err = ENOSPC;
        ctl->then_err = 0;
        ctl->sticky = 1;
        for (int i = 0; i < 11; i++) {
                char nm[8];
                uint64_t n = __atomic_load_n(&ctl->calls[FAULT_PWRITE], __ATOMIC_ACQUIRE);

                snprintf(nm, sizeof(nm), "p%d", i);
                k = iomem_chmod(c, nm, 0640);
                n = __atomic_load_n(&ctl->calls[FAULT_PWRITE], __ATOMIC_ACQUIRE) - n;
                ck_assert_msg(k == -ENOSPC, "CHMOD of \"%s\", the store full: %s", nm, iomem_strerror(k));
                ck_assert_msg(n <= 5, "CHMOD of \"%s\" with %d slots pending, the store full: %" PRIu64
                              " pwrite() calls, want at most 5", nm, i, n);
        }
        /*
         * One pending slot that can be written again while the others still cannot (a full tmpfs fails only writes
         * into pages not there yet): refused CHMODs of "p0" must reach it within a few passes, whatever its place in
         * the set. Each pass used to put its failing slot at the end and the last one first, so the first and the
         * last took turns and the ones between were never tried again. The bound, 40 CHMODs, is a count of passes
         * (11 pending), not a time.
         */
        for (int p = 1; p < 11; p++) {
                uint64_t hits = __atomic_load_n(&ctl->pass_hits, __ATOMIC_ACQUIRE);
                int j;

                ck_assert(off[p] > 0);
                __atomic_store_n(&ctl->pass_offset, off[p], __ATOMIC_RELEASE);
                for (j = 0; j < 40 && __atomic_load_n(&ctl->pass_hits, __ATOMIC_ACQUIRE) == hits; j++)
                        ck_assert_int_eq(iomem_chmod(c, "p0", 0640), -ENOSPC);
                __atomic_store_n(&ctl->pass_offset, 0, __ATOMIC_RELEASE);
                ck_assert_msg(__atomic_load_n(&ctl->pass_hits, __ATOMIC_ACQUIRE) != hits,
                              "\"p%d\"'s pending slot, writable again, not written after %d refused CHMODs of "
                              "\"p0\" (the others still failing)", p, j);
        }
        /*
         * A stop is the last chance for a pending slot: it tries every one, not one pass that ends at the first
         * failing write. "p10"'s slot, pending last (behind p0..p9's, which still fail), is the one writable again.
         */
        for (int p = 1; p < 11; p++) {
                char nm[8];

                snprintf(nm, sizeof(nm), "p%d", p);
                ck_assert_int_eq(iomem_chmod(c, nm, 0640), -ENOSPC);
        }
        uint64_t hits = __atomic_load_n(&ctl->pass_hits, __ATOMIC_ACQUIRE);

        __atomic_store_n(&ctl->pass_offset, off[10], __ATOMIC_RELEASE);
        iomem_disconnect(c);
        store_drain(&st);
        it_daemon_kill(&d, SIGTERM);
        __atomic_store_n(&ctl->pass_offset, 0, __ATOMIC_RELEASE);
        ck_assert_msg(__atomic_load_n(&ctl->pass_hits, __ATOMIC_ACQUIRE) != hits,
                      "a stop with 11 slots pending, \"p10\"'s (the last) writable again: not written");
        ctl->sticky = 0;
        ck_assert_int_eq(munmap(ctl, sizeof(*ctl)), 0);
        unlink(st.ctl);
        store_close(&st);
        unlink(d.socket);
        unlink(st.log);
        rmdir(d.dir);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("it-size");
        TCase *tc = tcase_create("size");

        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_loop_test(tc, test_grown_by_holder_is_charged, 0, 3);
        tcase_add_loop_test(tc, test_no_shrink_below_real_size, 0, 3);
        tcase_add_loop_test(tc, test_shrunk_between_open_and_map, 0, 3);
        tcase_add_test(tc, test_parked_open_same_object_and_size);
        tcase_add_test(tc, test_growth_charged_within_limits_after_restart);
        tcase_add_test(tc, test_restart_keeps_created_regions_charged);
        tcase_add_test(tc, test_restart_growth_not_charged_by_chosen_group);
        tcase_add_test(tc, test_restart_charge_not_lowered_by_chosen_group);
        tcase_add_test(tc, test_restart_unseen_growth_not_charged_by_chosen_group);
        tcase_add_test(tc, test_restart_generations_keep_growing);
        tcase_add_test(tc, test_store_meta_write_fails);
        tcase_add_test(tc, test_store_pwrite_fails);
        tcase_add_test(tc, test_restart_leased_only_generations_keep_growing);
        suite_add_tcase(s, tc);
        return test_run_suite(s);
}
