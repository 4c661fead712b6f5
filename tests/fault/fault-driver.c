/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fault-driver: run iomemd under the fault library and fail each allocation/syscall site in turn (R5, R1, L4). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "fdutil.h"
#include "proto.h"
#include "transport.h"

/*
 * usage: fault-driver IOMEMD LIBFAULT [MAX_N [IOMEMD-OPTION...]]
 *
 * (ctest runs it twice: as is, and with --max-region-fds=1 so that region
 * fds go through keeper processes and their sendmsg/recvmsg are failed too.)
 *
 * For every (function, errno) pair below and N = 1..min(calls, MAX_N),
 * where calls is how often the daemon calls that function during one
 * request mix: arm "fail the Nth call", run the mix on a new connection,
 * disarm, and check
 *   - every request got a reply (success or an error frame) or the
 *     connection was closed by the daemon: never a hang (reply timeout)
 *     and never a crash (the daemon is still running);
 *   - once the mix's names are deleted and its connection is gone, the
 *     daemon is back at its baseline: same open fd count (/proc/PID/fd),
 *     same number of live heap allocations, STATUS regions 0, LIST empty.
 * Exits 1 on the first broken check, printing the site; prints a summary.
 */

/*
 * Bounds of waits that end as soon as what they wait for is there: generous, so that a loaded machine (a CPU-starved
 * daemon or closer thread) is never taken for a hang or a leak; ctest's timeout is the test's own bound.
 */
#define REPLY_TIMEOUT_MS 60000
#define SETTLE_TRIES 6000 /* x 10 ms: how long the daemon may take to free a closed connection and close its fds */

static const struct {
        enum fault_func func;
        const char *name;
        int errors[4];
} fault_sites[] = {
        { FAULT_MALLOC, "malloc/calloc/realloc", { ENOMEM } },
        { FAULT_MEMFD_CREATE, "memfd_create", { EMFILE, ENOMEM } },
        { FAULT_SHM_OPEN, "shm_open", { EMFILE, ENOSPC } },
        { FAULT_OPEN, "open/openat", { EMFILE, EINTR, ENOSPC } },
        { FAULT_FTRUNCATE, "ftruncate", { ENOSPC, EINTR } },
        { FAULT_FALLOCATE, "fallocate", { ENOSPC, EINTR } },
        { FAULT_ACCEPT4, "accept4", { EMFILE, ENFILE, ENOMEM, EINTR } },
        { FAULT_RECVMSG, "recvmsg", { EINTR, ENOMEM, EAGAIN } },
        { FAULT_SENDMSG, "sendmsg", { EINTR, EAGAIN, ENOBUFS } },
        { FAULT_DUPFD, "fcntl(F_DUPFD_CLOEXEC)", { EMFILE } },
};

static struct fault_ctl *ctl;
static bool sentinels_made;
static pid_t daemon_pid;
static char socket_path[108];
static unsigned long n_ok, n_error, n_dropped, n_runs;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        fprintf(stderr, "fault-driver: FAIL: ");
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        if (daemon_pid > 0)
                kill(daemon_pid, SIGKILL);
        exit(1);
}

static void sleep_ms(int ms)
{
        struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static void daemon_check_alive(const char *when)
{
        int status;

        if (waitpid(daemon_pid, &status, WNOHANG) == daemon_pid) {
                daemon_pid = 0;
                die("iomemd died %s (status 0x%x)", when, status);
        }
}

/* ---- a raw client over the shared transport ------------------------------ */

struct client {
        int fd;
        struct transport t;
        uint32_t next_id;
        bool gone;
};

static int client_connect(struct client *cl)
{
        memset(cl, 0, sizeof(*cl));
        cl->next_id = 1;
        cl->fd = fdutil_connect(socket_path);
        if (cl->fd < 0)
                return cl->fd;
        if (transport_init(&cl->t, cl->fd, 0, 0) < 0)
                die("transport_init");
        return 0;
}

static void client_close(struct client *cl)
{
        transport_deinit(&cl->t);
        close(cl->fd);
        cl->fd = -1;
}

/*
 * One request, one reply. Return: 1 success, 0 error reply (*errp set),
 * -1 the daemon closed the connection. A reply timeout is a failure (hang).
 */
static int client_call_fds(struct client *cl, uint16_t opcode, const uint8_t *payload, int len, int *fds,
                           unsigned nfds, const char *what, int *errp, struct transport_frame *replyp)
{
        struct proto_header h = { .opcode = opcode, .id = cl->next_id++ };
        struct transport_frame f;
        int r;

        if (cl->gone) {
                for (unsigned i = 0; i < nfds; i++)
                        close(fds[i]);
                return -1;
        }
        if (len < 0)
                die("cannot encode %s", what);
        r = transport_send_blocking(&cl->t, &h, payload, (size_t)len, fds, nfds, REPLY_TIMEOUT_MS); /* consumed */
        if (r == -ETIMEDOUT)
                die("%s: the daemon does not read (hang)", what);
        if (r < 0) {
                cl->gone = true;
                return -1;
        }
        r = transport_recv_blocking(&cl->t, &f, REPLY_TIMEOUT_MS);
        if (r == -ETIMEDOUT)
                die("%s: no reply within %d ms (hang)", what, REPLY_TIMEOUT_MS);
        if (r < 0) {
                cl->gone = true;
                return -1;
        }
        if (!(f.hdr.flags & PROTO_FLAG_REPLY) || f.hdr.id != h.id || f.hdr.opcode != opcode)
                die("%s: reply does not match the request (flags %#x id %u opcode %#x)", what, f.hdr.flags,
                    f.hdr.id, f.hdr.opcode);
        if (f.hdr.flags & PROTO_FLAG_ERROR) {
                struct proto_error e;

                if (proto_error_decode(f.payload, f.hdr.length, &e) < 0 || e.error >= 0 || f.nfds)
                        die("%s: malformed error reply", what);
                *errp = e.error;
                transport_frame_deinit(&f);
                return 0;
        }
        if (replyp)
                *replyp = f;
        else
                transport_frame_deinit(&f);
        return 1;
}

static int client_call(struct client *cl, uint16_t opcode, const uint8_t *payload, int len, const char *what,
                       int *errp, struct transport_frame *replyp)
{
        return client_call_fds(cl, opcode, payload, len, NULL, 0, what, errp, replyp);
}

static void tally(int r)
{
        if (r > 0)
                n_ok++;
        else if (r == 0)
                n_error++;
        else
                n_dropped++;
}

/* A region reply must carry one fd whose size is at least the size announced (S1). */
static void check_region_reply(struct transport_frame *f, const char *what)
{
        struct proto_region_info info;
        struct stat st;

        if (proto_region_info_decode(f->payload, f->hdr.length, &info) < 0 || f->nfds != 1)
                die("%s: malformed region reply", what);
        if (fstat(f->fds[0], &st) < 0 || (uint64_t)st.st_size < info.size)
                die("%s: fd smaller than announced", what);
        transport_frame_deinit(f);
}

/* Regions made before any fault: every fault must leave them openable with their bytes (R5: others untouched). */
#define SENTINELS 4
static const char *const sentinel_names[SENTINELS] = { "sentinel-0", "sentinel-1", "sentinel-2", "sentinel-3" };

static uint8_t sentinel_byte(unsigned k, size_t i)
{
        return (uint8_t)(k * 31u + i * 7u + 1u);
}

static const char *const mix_names[] = { "fault-memfd", "fault-shm", "fault-file", "fault-lease", "fault-reg" };

/* A memfd as REGISTER wants it: sealed against shrinking and growing, no write for group/other. */
static int register_memfd(void)
{
        int fd = memfd_create("fault-reg", MFD_CLOEXEC | MFD_ALLOW_SEALING);

        if (fd < 0 || ftruncate(fd, 8192) < 0 || fchmod(fd, 0600) < 0 ||
            fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
                die("register memfd: %m");
        return fd;
}

/* The request mix: every request kind, every backend, the daemon's fd-making and fd-receiving paths. */
static void run_mix(void)
{
        uint8_t buf[512];
        struct transport_frame f;
        struct client cl;
        int err, r;

        if (client_connect(&cl) < 0) {
                n_dropped++; /* accept/listen fault: the connection may be refused */
                return;
        }
#define CALL(op, len, what) (r = client_call(&cl, op, buf, len, what, &err, NULL), tally(r))
#define CALL_REGION(op, len, what)                                                                                  \
        do {                                                                                                        \
                r = client_call(&cl, op, buf, len, what, &err, &f);                                                \
                tally(r);                                                                                           \
                if (r > 0)                                                                                          \
                        check_region_reply(&f, what);                                                               \
        } while (0)

        CALL(PROTO_OP_HELLO, proto_hello_encode(&(struct proto_hello){ 1, 1, 0 }, buf, sizeof(buf)), "HELLO");
        CALL(PROTO_OP_PING, proto_ping_encode(&(struct proto_ping){ 42 }, buf, sizeof(buf)), "PING");
        CALL(PROTO_OP_STATUS, 0, "STATUS");
        CALL_REGION(PROTO_OP_CREATE,
                    proto_create_encode(&(struct proto_create){ .size = 65536, .backend = PROTO_BACKEND_MEMFD,
                                                                 .flags = PROTO_CREATE_RESIZABLE,
                                                                 .name = mix_names[0] },
                                        buf, sizeof(buf)),
                    "CREATE memfd");
        CALL_REGION(PROTO_OP_CREATE,
                    proto_create_encode(&(struct proto_create){ .size = 4096, .backend = PROTO_BACKEND_SHM,
                                                                 .name = mix_names[1] },
                                        buf, sizeof(buf)),
                    "CREATE shm");
        CALL_REGION(PROTO_OP_CREATE,
                    proto_create_encode(&(struct proto_create){ .size = 4096, .backend = PROTO_BACKEND_FILE,
                                                                 .name = mix_names[2] },
                                        buf, sizeof(buf)),
                    "CREATE file");
        CALL_REGION(PROTO_OP_CREATE,
                    proto_create_encode(&(struct proto_create){ .size = 4096, .flags = PROTO_CREATE_LEASE,
                                                                 .name = mix_names[3] },
                                        buf, sizeof(buf)),
                    "CREATE lease");
        CALL_REGION(PROTO_OP_CREATE,
                    proto_create_encode(&(struct proto_create){ .size = 4096, .seals = PROTO_SEAL_GROW, .name = "" },
                                        buf, sizeof(buf)),
                    "CREATE anonymous");
        CALL_REGION(PROTO_OP_OPEN, proto_open_encode(&(struct proto_open){ .name = mix_names[0] }, buf, sizeof(buf)),
                    "OPEN rw");
        CALL_REGION(PROTO_OP_OPEN,
                    proto_open_encode(&(struct proto_open){ .flags = PROTO_OPEN_RDONLY, .name = mix_names[1] }, buf,
                                      sizeof(buf)),
                    "OPEN ro shm");
        CALL_REGION(PROTO_OP_OPEN,
                    proto_open_encode(&(struct proto_open){ .flags = PROTO_OPEN_RDONLY, .name = mix_names[0] }, buf,
                                      sizeof(buf)),
                    "OPEN ro memfd");
        CALL(PROTO_OP_OPEN,
             proto_open_encode(&(struct proto_open){ .flags = PROTO_OPEN_WAIT, .timeout_ms = 20, .name = "fault-none" },
                               buf, sizeof(buf)),
             "OPEN wait");
        CALL(PROTO_OP_RESIZE, proto_resize_encode(&(struct proto_resize){ 131072, mix_names[0] }, buf, sizeof(buf)),
             "RESIZE grow");
        CALL(PROTO_OP_RESIZE, proto_resize_encode(&(struct proto_resize){ 8192, mix_names[2] }, buf, sizeof(buf)),
             "RESIZE file");
        CALL(PROTO_OP_SEAL, proto_seal_encode(&(struct proto_seal){ PROTO_SEAL_GROW, 0, mix_names[0] }, buf, sizeof(buf)),
             "SEAL");
        CALL(PROTO_OP_STAT, proto_name_encode(&(struct proto_name){ mix_names[0] }, buf, sizeof(buf)), "STAT");
        CALL(PROTO_OP_LIST, proto_list_encode(&(struct proto_list){ .prefix = "fault-" }, buf, sizeof(buf)), "LIST");
        CALL(PROTO_OP_CHMOD, proto_chmod_encode(&(struct proto_chmod){ 0640, 0, mix_names[0] }, buf, sizeof(buf)),
             "CHMOD");
        CALL(PROTO_OP_QUOTA, 0, "QUOTA");
        {
                int fd = register_memfd();

                r = client_call_fds(&cl, PROTO_OP_REGISTER, buf,
                                    proto_register_encode(&(struct proto_register){ .size = 8192, .name = mix_names[4] },
                                                          buf, sizeof(buf)),
                                    &fd, 1, "REGISTER", &err, NULL);
                tally(r);
        }
        CALL(PROTO_OP_DELETE, proto_name_encode(&(struct proto_name){ mix_names[2] }, buf, sizeof(buf)), "DELETE");
        CALL(0x0777, 0, "unknown opcode");
#undef CALL
#undef CALL_REGION
        client_close(&cl); /* the leased region goes with this connection (L3) */
}

static void sentinels_create(void)
{
        uint8_t buf[512];
        struct transport_frame f;
        struct client cl;
        int e;

        e = client_connect(&cl);
        if (e < 0)
                die("sentinels: connect: %s", strerror(-e));
        if (client_call(&cl, PROTO_OP_HELLO, buf, proto_hello_encode(&(struct proto_hello){ 1, 1, 0 }, buf, sizeof(buf)),
                        "HELLO", &e, NULL) != 1)
                die("sentinels: HELLO");
        for (unsigned k = 0; k < SENTINELS; k++) {
                uint8_t *p;

                if (client_call(&cl, PROTO_OP_CREATE, buf,
                                proto_create_encode(&(struct proto_create){ .size = 4096, .name = sentinel_names[k] },
                                                    buf, sizeof(buf)),
                                "CREATE sentinel", &e, &f) != 1 || f.nfds != 1)
                        die("sentinels: CREATE %s", sentinel_names[k]);
                p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, f.fds[0], 0);
                if (p == MAP_FAILED)
                        die("sentinels: mmap: %m");
                for (size_t i = 0; i < 4096; i++)
                        p[i] = sentinel_byte(k, i);
                munmap(p, 4096);
                transport_frame_deinit(&f);
        }
        client_close(&cl);
}

/* Every sentinel opens read-only with its bytes intact. */
static void sentinels_check(struct client *cl, const char *site, int err, unsigned n)
{
        uint8_t buf[512];
        struct transport_frame f;
        int e, r;

        for (unsigned k = 0; k < SENTINELS; k++) {
                const uint8_t *p;
                bool ok = true;

                r = client_call(cl, PROTO_OP_OPEN, buf,
                                proto_open_encode(&(struct proto_open){ .flags = PROTO_OPEN_RDONLY,
                                                                        .name = sentinel_names[k] },
                                                  buf, sizeof(buf)),
                                "OPEN sentinel", &e, &f);
                if (r != 1)
                        die("%s=%s #%u: region %s made before the fault cannot be opened any more (%s)", site,
                            strerrorname_np(err), n, sentinel_names[k], r == 0 ? strerror(-e) : "connection closed");
                p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, f.fds[0], 0);
                if (p == MAP_FAILED)
                        die("%s=%s #%u: sentinel %s: mmap: %m", site, strerrorname_np(err), n, sentinel_names[k]);
                for (size_t i = 0; i < 4096 && ok; i++)
                        ok = p[i] == sentinel_byte(k, i);
                munmap((void *)p, 4096);
                transport_frame_deinit(&f);
                if (!ok)
                        die("%s=%s #%u: the bytes of region %s changed", site, strerrorname_np(err), n,
                            sentinel_names[k]);
        }
}

/* Delete what a mix left, then wait until the daemon is back at its baseline. */
static void settle(int fds_base, int64_t allocs_base, const char *site, int err, unsigned n)
{
        uint8_t buf[512];
        struct transport_frame f;
        struct proto_status_reply st;
        struct proto_list_reply lr;
        struct client cl;
        int fds = -1, e, r, i;
        int64_t allocs = 0;

        for (i = 0; i < SETTLE_TRIES; i++) {
                if (client_connect(&cl) == 0)
                        break;
                sleep_ms(10); /* accept paused after an injected EMFILE (R1) */
        }
        if (i == SETTLE_TRIES)
                die("%s=%s #%u: cannot connect afterwards", site, strerrorname_np(err), n);
        r = client_call(&cl, PROTO_OP_HELLO, buf, proto_hello_encode(&(struct proto_hello){ 1, 1, 0 }, buf, sizeof(buf)),
                        "HELLO", &e, NULL);
        if (r != 1)
                die("%s=%s #%u: HELLO afterwards failed", site, strerrorname_np(err), n);
        for (size_t k = 0; k < sizeof(mix_names) / sizeof(mix_names[0]); k++) {
                r = client_call(&cl, PROTO_OP_DELETE, buf,
                                proto_name_encode(&(struct proto_name){ mix_names[k] }, buf, sizeof(buf)), "DELETE",
                                &e, NULL);
                if (r < 0 || (r == 0 && e != -ENOENT))
                        die("%s=%s #%u: cleanup DELETE %s: %d", site, strerrorname_np(err), n, mix_names[k], e);
        }
        if (sentinels_made)
                sentinels_check(&cl, site, err, n);
        /* the lease of the mix's connection may take a moment to go: poll STATUS */
        for (i = 0; i < SETTLE_TRIES; i++) {
                r = client_call(&cl, PROTO_OP_STATUS, buf, 0, "STATUS", &e, &f);
                if (r != 1 || proto_status_reply_decode(f.payload, f.hdr.length, &st) < 0)
                        die("%s=%s #%u: STATUS afterwards failed", site, strerrorname_np(err), n);
                transport_frame_deinit(&f);
                if (st.regions == (sentinels_made ? SENTINELS : 0) && st.connections == 1)
                        break;
                sleep_ms(10);
        }
        if (i == SETTLE_TRIES)
                die("%s=%s #%u: %llu regions and %llu connections left", site, strerrorname_np(err), n,
                    (unsigned long long)st.regions, (unsigned long long)st.connections);
        r = client_call(&cl, PROTO_OP_LIST, buf, proto_list_encode(&(struct proto_list){ .prefix = "" }, buf, sizeof(buf)),
                        "LIST", &e, &f);
        if (r != 1 || proto_list_reply_decode(f.payload, f.hdr.length, &lr) < 0 ||
            lr.count != (sentinels_made ? SENTINELS : 0))
                die("%s=%s #%u: LIST afterwards shows regions other than the sentinels", site, strerrorname_np(err), n);
        transport_frame_deinit(&f);
        client_close(&cl);

        if (fds_base < 0)
                return; /* warm-up: no baseline yet */
        for (i = 0; i < SETTLE_TRIES; i++) {
                fds = fdutil_count(daemon_pid);
                allocs = __atomic_load_n(&ctl->live_allocs, __ATOMIC_ACQUIRE);
                if (fds == fds_base && (allocs_base < 0 || allocs == allocs_base))
                        break;
                sleep_ms(10);
        }
        if (fds != fds_base)
                die("%s=%s #%u: the daemon holds %d fds, %d before (fd leak)", site, strerrorname_np(err), n, fds,
                    fds_base);
        if (allocs_base >= 0 && allocs != allocs_base)
                die("%s=%s #%u: the daemon holds %lld heap blocks, %lld before (memory leak)", site,
                    strerrorname_np(err), n, (long long)allocs, (long long)allocs_base);
        daemon_check_alive("after a fault");
}

/* Return: the daemon's live heap blocks once it is idle (the last connection freed, nothing moving). */
static int64_t idle_allocs(void)
{
        int64_t last = -1, now;
        int stable = 0;

        for (int i = 0; i < 1000 && stable < 10; i++) {
                now = __atomic_load_n(&ctl->live_allocs, __ATOMIC_ACQUIRE);
                stable = now == last ? stable + 1 : 0;
                last = now;
                sleep_ms(2);
        }
        return last;
}

static void arm(enum fault_func func, int err, unsigned n)
{
        __atomic_store_n(&ctl->countdown, 0, __ATOMIC_RELEASE);
        __atomic_store_n(&ctl->err, err, __ATOMIC_RELEASE);
        __atomic_store_n(&ctl->func, (int32_t)func, __ATOMIC_RELEASE);
        __atomic_store_n(&ctl->countdown, (int32_t)n, __ATOMIC_RELEASE);
}

static void disarm(void)
{
        __atomic_store_n(&ctl->countdown, 0, __ATOMIC_RELEASE);
        __atomic_store_n(&ctl->func, -1, __ATOMIC_RELEASE);
}

/*
 * R1: with accept4 failing EMFILE/ENFILE for as long as it lasts, the daemon
 * pauses accepting instead of spinning, stays up, and serves the waiting
 * client once the fds are back. Spinning is measured as accept4 calls, not
 * time: during the window a pausing daemon makes a handful (one per pause),
 * a spinning one thousands.
 */
static void check_accept_pause(int err)
{
        uint8_t buf[64];
        struct client cl;
        uint64_t before, calls;
        int e, r;

        __atomic_store_n(&ctl->err, err, __ATOMIC_RELEASE);
        __atomic_store_n(&ctl->func, (int32_t)FAULT_ACCEPT4, __ATOMIC_RELEASE);
        __atomic_store_n(&ctl->sticky, 1, __ATOMIC_RELEASE);
        before = __atomic_load_n(&ctl->calls[FAULT_ACCEPT4], __ATOMIC_ACQUIRE);
        if (client_connect(&cl) < 0) /* queued in the backlog: connect succeeds */
                die("R1: connect during %s", strerrorname_np(err));
        sleep_ms(500);
        calls = __atomic_load_n(&ctl->calls[FAULT_ACCEPT4], __ATOMIC_ACQUIRE) - before;
        __atomic_store_n(&ctl->sticky, 0, __ATOMIC_RELEASE);
        disarm();
        daemon_check_alive("while accept4 failed");
        if (calls < 1 || calls > 50)
                die("R1: %llu accept4 calls in 500 ms of %s (expected a pause between tries, not a spin)",
                    (unsigned long long)calls, strerrorname_np(err));
        r = client_call(&cl, PROTO_OP_HELLO, buf, proto_hello_encode(&(struct proto_hello){ 1, 1, 0 }, buf, sizeof(buf)),
                        "HELLO after the pause", &e, NULL);
        if (r != 1)
                die("R1: the waiting client was not served after %s ended", strerrorname_np(err));
        client_close(&cl);
        printf("accept4 %-6s lasting:    %3llu tries in 500 ms, client served afterwards: ok\n", strerrorname_np(err),
               (unsigned long long)calls);
}

int main(int argc, char **argv)
{
        char dir[] = "/tmp/iomem-fault.XXXXXX", ctl_path[128], env_ctl[160], env_preload[1024];
        unsigned max_n = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 400;
        uint64_t counts[FAULT_COUNT];
        int64_t allocs_base;
        bool keepers = false;
        int fd, fds_base, i;

        if (argc < 3) {
                fprintf(stderr, "usage: fault-driver IOMEMD LIBFAULT [MAX_N]\n");
                return 2;
        }
        for (i = 4; i < argc; i++)
                keepers |= strncmp(argv[i], "--max-region-fds", 16) == 0;
        signal(SIGPIPE, SIG_IGN);
        if (!mkdtemp(dir))
                die("mkdtemp: %m");
        snprintf(socket_path, sizeof(socket_path), "%s/sock", dir);
        snprintf(ctl_path, sizeof(ctl_path), "%s/ctl", dir);
        fd = open(ctl_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || ftruncate(fd, sizeof(struct fault_ctl)) < 0)
                die("ctl file: %m");
        ctl = mmap(NULL, sizeof(*ctl), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (ctl == MAP_FAILED)
                die("mmap: %m");
        ctl->magic = FAULT_MAGIC;
        ctl->func = -1;

        snprintf(env_ctl, sizeof(env_ctl), "IOMEM_FAULT_CTL=%s", ctl_path);
        snprintf(env_preload, sizeof(env_preload), "LD_PRELOAD=%s", argv[2]);
        daemon_pid = fork();
        if (daemon_pid < 0)
                die("fork: %m");
        if (daemon_pid == 0) {
                char env_pid[64];
                char *env[] = { env_ctl, env_preload, "PATH=/usr/bin:/bin", env_pid,
                                getenv("IOMEM_FAULT_TRACE") ? "IOMEM_FAULT_TRACE=1" : NULL, NULL };

                snprintf(env_pid, sizeof(env_pid), "IOMEM_FAULT_COUNT_PID=%d", (int)getpid());
                char tmpdir_arg[160];

                prctl(PR_SET_PDEATHSIG, SIGKILL);
                snprintf(tmpdir_arg, sizeof(tmpdir_arg), "--tmpdir=%s", dir);
                const char *args[32] = { argv[1], "--socket", socket_path, "--log-level=error", tmpdir_arg };
                int n = 5;

                for (int k = 4; k < argc && n < 31; k++)
                        args[n++] = argv[k];
                args[n] = NULL;
                execve(argv[1], (char *const *)args, env);
                _exit(127);
        }
        /*
         * Until a connect() succeeds, not until the file exists: bind() makes the file before listen(), and on a
         * loaded machine the first connect landed in between (ECONNREFUSED: "sentinels: HELLO"). 30 s: a hang
         * detector, not a speed bound.
         */
        for (i = 0; i < 3000; i++) {
                fd = fdutil_connect(socket_path);
                if (fd >= 0) {
                        close(fd);
                        break;
                }
                daemon_check_alive("at start");
                sleep_ms(10);
        }
        if (i == 3000)
                die("at start: the daemon did not listen on %s within 30 s", socket_path);
        sentinels_create();
        sentinels_made = true;
        /*
         * warm up: libevent and libc grow their tables once. libevent keeps an
         * entry per fd number it ever watched, so first make the daemon watch
         * more fd numbers at once than any run below will (a connection freed
         * late under load makes the next one take a higher number).
         */
        {
                struct client many[32];
                uint8_t buf[16];
                int e;

                for (i = 0; i < 32; i++) {
                        if (client_connect(&many[i]) < 0 ||
                            client_call(&many[i], PROTO_OP_HELLO, buf,
                                        proto_hello_encode(&(struct proto_hello){ 1, 1, 0 }, buf, sizeof(buf)), "HELLO",
                                        &e, NULL) != 1)
                                die("warm-up: connection %d", i);
                }
                for (i = 0; i < 32; i++)
                        client_close(&many[i]);
        }
        for (i = 0; i < 3; i++) {
                run_mix();
                settle(-1, 0, "warm-up", 0, 0); /* only to delete; baseline is taken below */
        }
        /* the baseline is the idle daemon: wait until the last cleanup connection is freed and nothing moves */
        fds_base = -1;
        allocs_base = 0;
        for (i = 0, fd = 0; i < 1000 && fd < 20; i++) {
                int now_fds = fdutil_count(daemon_pid);
                int64_t now_allocs = __atomic_load_n(&ctl->live_allocs, __ATOMIC_ACQUIRE);

                fd = now_fds == fds_base && now_allocs == allocs_base ? fd + 1 : 0;
                fds_base = now_fds;
                allocs_base = now_allocs;
                sleep_ms(5);
        }
        settle(fds_base, allocs_base, "baseline", 0, 0);

        /* counting pass: how often does one mix reach each site? */
        memset(ctl->calls, 0, sizeof(ctl->calls));
        run_mix();
        memcpy(counts, ctl->calls, sizeof(counts));
        settle(fds_base, allocs_base, "counting", 0, 0);

        for (size_t s = 0; s < sizeof(fault_sites) / sizeof(fault_sites[0]); s++) {
                unsigned calls = (unsigned)counts[fault_sites[s].func];
                unsigned limit = calls < max_n ? calls : max_n;
                unsigned long injected = 0;
                const char *only = getenv("IOMEM_FAULT_ONLY"); /* debugging: one site, by name */

                if (only && !strstr(fault_sites[s].name, only))
                        continue;

                /* accept4 runs once per connection: fail the next accept, not a count within the mix */
                for (int k = 0; k < 4 && fault_sites[s].errors[k]; k++) {
                        int err = fault_sites[s].errors[k];
                        uint64_t before = ctl->injected;
                        const char *only_err = getenv("IOMEM_FAULT_ERRNO"); /* debugging: one errno, by name */

                        if (only_err && strcmp(only_err, strerrorname_np(err)) != 0)
                                continue;
                        /*
                         * With keepers, EAGAIN from a blocking keeper socket means its SO_RCVTIMEO/
                         * SO_SNDTIMEO expired: the keeper is dead by definition, and its regions
                         * with it. The injection cannot tell sockets apart, so skip it there.
                         */
                        if (keepers && err == EAGAIN &&
                            (fault_sites[s].func == FAULT_RECVMSG || fault_sites[s].func == FAULT_SENDMSG))
                                continue;

                        for (unsigned n = 1; n <= limit; n++) {
                                /*
                                 * Twice: the first run may take a path for the first time, and libc or
                                 * libevent allocate some things once (stdio, locale, tables). Fds must be
                                 * back at once; heap blocks must not grow on the second run.
                                 */
                                arm(fault_sites[s].func, err, n);
                                run_mix();
                                disarm();
                                settle(fds_base, -1, fault_sites[s].name, err, n);
                                allocs_base = idle_allocs();
                                arm(fault_sites[s].func, err, n);
                                run_mix();
                                disarm();
                                n_runs += 2;
                                settle(fds_base, allocs_base, fault_sites[s].name, err, n);
                        }
                        injected += (unsigned long)(ctl->injected - before);
                }
                printf("%-24s %4u calls per mix, %5lu faults injected: ok\n", fault_sites[s].name, calls, injected);
                fflush(stdout);
        }
        check_accept_pause(EMFILE);
        check_accept_pause(ENFILE);
        settle(fds_base, allocs_base, "accept pause", 0, 0);
        printf("%lu runs; replies: %lu success, %lu error, %lu connection closed by the daemon\n", n_runs, n_ok,
               n_error, n_dropped);
        kill(daemon_pid, SIGTERM);
        {
                int status;

                if (waitpid(daemon_pid, &status, 0) != daemon_pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        die("iomemd did not exit cleanly (status 0x%x)", status);
        }
        daemon_pid = 0;
        unlink(socket_path);
        unlink(ctl_path);
        rmdir(dir);
        return 0;
}
