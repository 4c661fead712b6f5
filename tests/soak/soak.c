/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* soak: 64 hostile and well-behaved clients against one iomemd; afterwards its RSS, fds and regions are checked. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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

#include "../fault/fault.h"
#include "fdutil.h"
#include "proto.h"
#include "transport.h"

/*
 * usage: soak IOMEMD [SECONDS] [CLIENTS] [LIBFAULT]
 *
 * Starts iomemd (--max-out-bytes 256K so slow readers reach the bound), runs
 * a warm-up round (a quarter of SECONDS), records the idle daemon's RSS and
 * fd count, then lets CLIENTS threads (default 64) loop for three rounds
 * (the rest of SECONDS, default 24) over:
 * valid sessions on their own regions (create on every backend, write a
 * pattern through a mapping, reopen read-only and compare, resize, stat,
 * list, delete), malformed frames (F1-F3, F5), frames cut by a disconnect
 * (F4), fd floods declared and undeclared (D1-D3, D5, D7), slow readers
 * that never read (F8, D10) and clients that die with fds in flight (L3).
 * At the end every surviving region's bytes are compared, all regions are
 * deleted, and the idle daemon must hold the same fds as at the baseline,
 * an RSS within SOAK_RSS_MARGIN_KB of it, and no region. RSS is coarse
 * (the allocator keeps its high-water mark); with LIBFAULT (the fault
 * library, unarmed) the daemon's live heap blocks are printed too. No
 * timing assertion: SECONDS only bounds the run.
 */

#define SOAK_RSS_MARGIN_KB (8 * 1024)
#define SOAK_REPLY_TIMEOUT_MS 10000
#define SOAK_MAX_OWN 6
#define SOAK_MAX_SIZE (16 * 4096)

static char socket_path[108];
static pid_t daemon_pid;
static volatile int soak_failed;
static pthread_mutex_t soak_lock = PTHREAD_MUTEX_INITIALIZER;
static time_t soak_end;
static unsigned long stat_sessions[8];
static struct fault_ctl *heap_ctl; /* with LIBFAULT: the daemon's live heap blocks */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
        va_list ap;

        pthread_mutex_lock(&soak_lock);
        va_start(ap, fmt);
        fprintf(stderr, "soak: FAIL: ");
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        soak_failed = 1;
        pthread_mutex_unlock(&soak_lock);
}

static void sleep_ms(int ms)
{
        struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static long rss_kb_of(pid_t pid)
{
        char path[64], line[256];
        long kb = -1;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
                        break;
        fclose(f);
        return kb;
}

/* ---- a raw client ------------------------------------------------------- */

struct client {
        int fd;
        struct transport t;
        uint32_t next_id;
        bool up;
};

static int client_connect(struct client *cl)
{
        memset(cl, 0, sizeof(*cl));
        cl->next_id = 1;
        cl->fd = fdutil_connect(socket_path);
        if (cl->fd < 0)
                return cl->fd;
        if (transport_init(&cl->t, cl->fd, 0, 0) < 0) {
                close(cl->fd);
                return -ENOMEM;
        }
        cl->up = true;
        return 0;
}

static void client_close(struct client *cl)
{
        if (!cl->up)
                return;
        transport_deinit(&cl->t);
        close(cl->fd);
        cl->up = false;
}

static int client_send_timeout(struct client *cl, uint16_t opcode, const void *payload, int len, int *fds,
                               unsigned nfds, int timeout_ms)
{
        struct proto_header h = { .opcode = opcode, .id = cl->next_id++ };

        if (len < 0)
                return len;
        return transport_send_blocking(&cl->t, &h, payload, (size_t)len, fds, nfds, timeout_ms);
}

static int client_send(struct client *cl, uint16_t opcode, const void *payload, int len, int *fds, unsigned nfds)
{
        return client_send_timeout(cl, opcode, payload, len, fds, nfds, SOAK_REPLY_TIMEOUT_MS);
}

/* Return: 1 success (*f filled if f), 0 error reply (*errp), negative errno if the connection failed. */
static int client_call(struct client *cl, uint16_t opcode, const void *payload, int len, int *errp,
                       struct transport_frame *f)
{
        struct transport_frame reply;
        int r = client_send(cl, opcode, payload, len, NULL, 0);

        if (r < 0)
                return r;
        r = transport_recv_blocking(&cl->t, &reply, SOAK_REPLY_TIMEOUT_MS);
        if (r < 0)
                return r;
        if (reply.hdr.opcode != opcode || !(reply.hdr.flags & PROTO_FLAG_REPLY)) {
                transport_frame_deinit(&reply);
                return -EBADMSG;
        }
        if (reply.hdr.flags & PROTO_FLAG_ERROR) {
                struct proto_error e;

                r = proto_error_decode(reply.payload, reply.hdr.length, &e);
                transport_frame_deinit(&reply);
                if (r < 0)
                        return -EBADMSG;
                *errp = e.error;
                return 0;
        }
        if (f)
                *f = reply;
        else
                transport_frame_deinit(&reply);
        return 1;
}

static int client_hello(struct client *cl)
{
        uint8_t buf[16];
        int e;

        return client_call(cl, PROTO_OP_HELLO, buf, proto_hello_encode(&(struct proto_hello){ 1, 1, 0 }, buf, sizeof(buf)),
                           &e, NULL) == 1 ? 0 : -EPROTO;
}

/* Wait until the daemon closes the connection (or gives up after a while). Return: true if it did. */
static bool client_wait_closed(struct client *cl)
{
        struct transport_frame f;
        int r;

        for (int i = 0; i < 1000; i++) {
                r = transport_recv_blocking(&cl->t, &f, SOAK_REPLY_TIMEOUT_MS);
                if (r < 0)
                        return r != -ETIMEDOUT;
                transport_frame_deinit(&f);
        }
        return false;
}

/* ---- one client's regions ------------------------------------------------ */

struct own_region {
        char name[64];
        uint64_t size;
        uint32_t seed;
};

struct worker {
        unsigned index;
        unsigned seed;
        unsigned k; /* names made so far */
        struct own_region own[SOAK_MAX_OWN];
        unsigned nown;
        pthread_t thread;
};

static uint8_t pattern_byte(uint32_t seed, uint64_t i)
{
        return (uint8_t)((seed * 2654435761u) ^ (uint32_t)(i * 40503u) ^ (uint32_t)(i >> 8));
}

/* Map @fd and write or compare the pattern. Return: true if the bytes are as expected (always on write). */
static bool region_bytes(int fd, uint64_t size, uint32_t seed, bool write)
{
        uint8_t *p = mmap(NULL, size, write ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
        bool ok = true;

        if (p == MAP_FAILED)
                return false;
        for (uint64_t i = 0; i < size; i++) {
                if (write)
                        p[i] = pattern_byte(seed, i);
                else if (p[i] != pattern_byte(seed, i)) {
                        ok = false;
                        break;
                }
        }
        munmap(p, size);
        return ok;
}

/* OPEN @o read-only and compare its bytes. Return: 1 intact, 0 corrupt, -1 request failed. */
static int region_verify(struct client *cl, const struct own_region *o)
{
        uint8_t buf[512];
        struct transport_frame f;
        struct proto_region_info info;
        struct stat st;
        int e, r, ok;

        r = client_call(cl, PROTO_OP_OPEN, buf,
                        proto_open_encode(&(struct proto_open){ .flags = PROTO_OPEN_RDONLY, .name = o->name }, buf,
                                          sizeof(buf)),
                        &e, &f);
        if (r != 1)
                return -1;
        if (proto_region_info_decode(f.payload, f.hdr.length, &info) < 0 || f.nfds != 1 || info.size != o->size ||
            fstat(f.fds[0], &st) < 0 || (uint64_t)st.st_size < o->size) {
                transport_frame_deinit(&f);
                return 0;
        }
        ok = region_bytes(f.fds[0], o->size, o->seed, false);
        transport_frame_deinit(&f);
        return ok;
}

static void own_remove(struct worker *w, unsigned i)
{
        w->own[i] = w->own[--w->nown];
}

static void session_valid(struct worker *w)
{
        static const uint16_t backends[] = { PROTO_BACKEND_MEMFD, PROTO_BACKEND_SHM, PROTO_BACKEND_FILE };
        uint8_t buf[1024];
        struct transport_frame f;
        struct client cl;
        int e, r;

        if (client_connect(&cl) < 0 || client_hello(&cl) < 0) {
                fail("client %u: cannot connect and HELLO", w->index);
                client_close(&cl);
                return;
        }
        for (int step = 0; step < 8 && !soak_failed; step++) {
                unsigned what = (unsigned)rand_r(&w->seed) % 6;

                if (what <= 1 && w->nown < SOAK_MAX_OWN) { /* create and fill */
                        struct own_region o;
                        struct proto_region_info info;

                        snprintf(o.name, sizeof(o.name), "soak-%u-%u", w->index, w->k++);
                        o.size = 4096u * (1 + (unsigned)rand_r(&w->seed) % (SOAK_MAX_SIZE / 4096));
                        o.seed = (uint32_t)rand_r(&w->seed);
                        r = client_call(&cl, PROTO_OP_CREATE, buf,
                                        proto_create_encode(&(struct proto_create){
                                                                    .size = o.size,
                                                                    .flags = PROTO_CREATE_EXCLUSIVE,
                                                                    .backend = backends[w->k % 3],
                                                                    .name = o.name },
                                                            buf, sizeof(buf)),
                                        &e, &f);
                        if (r != 1) {
                                fail("client %u: CREATE %s: %d/%d", w->index, o.name, r, r == 0 ? e : 0);
                                break;
                        }
                        if (proto_region_info_decode(f.payload, f.hdr.length, &info) < 0 || f.nfds != 1 ||
                            !region_bytes(f.fds[0], o.size, o.seed, true))
                                fail("client %u: CREATE %s: bad reply or fd", w->index, o.name);
                        transport_frame_deinit(&f);
                        w->own[w->nown++] = o;
                } else if (what == 2 && w->nown) { /* reopen and compare */
                        unsigned i = (unsigned)rand_r(&w->seed) % w->nown;

                        if (region_verify(&cl, &w->own[i]) != 1)
                                fail("client %u: region %s is not intact", w->index, w->own[i].name);
                } else if (what == 3 && w->nown) { /* delete */
                        unsigned i = (unsigned)rand_r(&w->seed) % w->nown;

                        r = client_call(&cl, PROTO_OP_DELETE, buf,
                                        proto_name_encode(&(struct proto_name){ w->own[i].name }, buf, sizeof(buf)),
                                        &e, NULL);
                        if (r != 1)
                                fail("client %u: DELETE %s: %d", w->index, w->own[i].name, r == 0 ? e : r);
                        own_remove(w, i);
                } else if (what == 4) { /* list own prefix */
                        char prefix[32];
                        struct proto_list_reply lr;

                        snprintf(prefix, sizeof(prefix), "soak-%u-", w->index);
                        r = client_call(&cl, PROTO_OP_LIST, buf,
                                        proto_list_encode(&(struct proto_list){ .prefix = prefix }, buf, sizeof(buf)),
                                        &e, &f);
                        if (r != 1 || proto_list_reply_decode(f.payload, f.hdr.length, &lr) < 0)
                                fail("client %u: LIST", w->index);
                        else if (lr.count != w->nown)
                                fail("client %u: LIST shows %u regions, the client has %u", w->index, lr.count,
                                     w->nown);
                        if (r == 1)
                                transport_frame_deinit(&f);
                } else { /* stat / ping */
                        r = w->nown ? client_call(&cl, PROTO_OP_STAT, buf,
                                                  proto_name_encode(&(struct proto_name){ w->own[0].name }, buf,
                                                                    sizeof(buf)),
                                                  &e, NULL)
                                    : client_call(&cl, PROTO_OP_PING, buf,
                                                  proto_ping_encode(&(struct proto_ping){ w->k }, buf, sizeof(buf)),
                                                  &e, NULL);
                        if (r != 1)
                                fail("client %u: STAT/PING: %d", w->index, r == 0 ? e : r);
                }
        }
        client_close(&cl);
}

/* Malformed frames: the daemon answers with an error or drops the connection, nothing else. */
static void session_malformed(struct worker *w)
{
        uint8_t frame[PROTO_HEADER_SIZE + 64];
        struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION, .opcode = PROTO_OP_PING, .id = 9 };
        struct client cl;
        ssize_t n;

        if (client_connect(&cl) < 0 || client_hello(&cl) < 0) {
                fail("client %u: cannot connect and HELLO", w->index);
                client_close(&cl);
                return;
        }
        switch ((unsigned)rand_r(&w->seed) % 5) {
        case 0: h.length = 0xFFFFFFFFu; break;  /* F2 */
        case 1: h.magic = 0x12345678; break;    /* bad magic */
        case 2: h.nfds = 2; break;              /* D2: fds declared, none sent */
        case 3: h.version = 7; h.length = 8; break; /* F5 */
        default: h.opcode = 0x4242; h.length = 8; break;
        }
        proto_header_encode(&h, frame);
        memset(frame + PROTO_HEADER_SIZE, 0xA5, 8);
        n = send(cl.fd, frame, PROTO_HEADER_SIZE + (h.length == 8 ? 8 : 0), MSG_NOSIGNAL);
        if (n < 0)
                fail("client %u: send: %m", w->index);
        shutdown(cl.fd, SHUT_WR);
        if (!client_wait_closed(&cl))
                fail("client %u: the daemon kept a malformed connection open", w->index);
        client_close(&cl);
}

/* A frame cut by the client's departure (F4). */
static void session_cut(struct worker *w)
{
        uint8_t frame[PROTO_HEADER_SIZE + 64];
        struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION, .opcode = PROTO_OP_CREATE,
                                  .id = 3, .length = 60 };
        struct client cl;
        size_t cut;

        if (client_connect(&cl) < 0) {
                fail("client %u: cannot connect", w->index);
                return;
        }
        if (rand_r(&w->seed) % 2 && client_hello(&cl) < 0)
                fail("client %u: HELLO", w->index);
        proto_header_encode(&h, frame);
        memset(frame + PROTO_HEADER_SIZE, 1, 60);
        cut = 1 + (unsigned)rand_r(&w->seed) % (PROTO_HEADER_SIZE + 59);
        (void)!send(cl.fd, frame, cut, MSG_NOSIGNAL);
        client_close(&cl);
}

static int make_fd(unsigned kind)
{
        int p[2];

        if (kind % 2 == 0)
                return memfd_create("soak", MFD_CLOEXEC);
        if (pipe2(p, O_CLOEXEC) < 0)
                return -1;
        close(p[1]);
        return p[0];
}

/* Fds attached to requests that take none (declared: -EINVAL reply) and undeclared (dropped). */
static void session_fd_flood(struct worker *w)
{
        uint8_t buf[16];
        struct client cl;
        struct transport_frame f;
        int e, r;

        if (client_connect(&cl) < 0 || client_hello(&cl) < 0) {
                fail("client %u: cannot connect and HELLO", w->index);
                client_close(&cl);
                return;
        }
        for (int i = 0; i < 16; i++) {
                int fds[PROTO_MAX_FDS];
                unsigned n = 1 + (unsigned)rand_r(&w->seed) % PROTO_MAX_FDS;

                for (unsigned k = 0; k < n; k++)
                        fds[k] = make_fd(k + (unsigned)i);
                r = client_send(&cl, PROTO_OP_PING, buf, proto_ping_encode(&(struct proto_ping){ 1 }, buf, sizeof(buf)),
                                fds, n); /* fds consumed */
                if (r < 0)
                        break;
                r = transport_recv_blocking(&cl.t, &f, SOAK_REPLY_TIMEOUT_MS);
                if (r < 0) {
                        fail("client %u: no reply to a PING with fds", w->index);
                        break;
                }
                if (!(f.hdr.flags & PROTO_FLAG_ERROR))
                        fail("client %u: PING with fds was accepted", w->index);
                transport_frame_deinit(&f);
        }
        /* then undeclared fds: D1, the connection goes */
        {
                int fd = make_fd(0);
                uint8_t frame[PROTO_HEADER_SIZE];
                struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION, .opcode = PROTO_OP_STATUS };

                proto_header_encode(&h, frame);
                (void)fdutil_sendmsg(cl.fd, frame, sizeof(frame), &fd, 1, 1, MSG_NOSIGNAL);
                close(fd);
                if (!client_wait_closed(&cl))
                        fail("client %u: undeclared fds did not drop the connection", w->index);
        }
        (void)e;
        client_close(&cl);
}

/* A reader that never reads: OPENs (fds in flight, D10) or LISTs (bytes, F8) until the daemon drops it. */
static void session_slow_reader(struct worker *w)
{
        uint8_t buf[512];
        struct client cl;
        char name[64];
        bool by_fds = w->nown && rand_r(&w->seed) % 2;
        int sent = 0, r = 0;

        if (client_connect(&cl) < 0 || client_hello(&cl) < 0) {
                fail("client %u: cannot connect and HELLO", w->index);
                client_close(&cl);
                return;
        }
        uint64_t cursor = rand_r(&w->seed) % 4 ? (uint64_t)rand_r(&w->seed) % 100000 : 0;

        /* a third of them also watch everything and never read their events (issue 10 review) */
        if (rand_r(&w->seed) % 3 == 0 &&
            client_send_timeout(&cl, PROTO_OP_WATCH, buf,
                                proto_watch_encode(&(struct proto_watch){ .prefix = "" }, buf, sizeof(buf)), NULL,
                                0, 1000) < 0) {
                fail("client %u: cannot send WATCH", w->index);
                client_close(&cl);
                return;
        }

        snprintf(name, sizeof(name), "%s", by_fds ? w->own[0].name : "");
        for (int i = 0; i < 4000; i++) {
                r = by_fds ? client_send_timeout(&cl, PROTO_OP_OPEN, buf,
                                                 proto_open_encode(&(struct proto_open){ .flags = PROTO_OPEN_RDONLY,
                                                                                         .name = name },
                                                                   buf, sizeof(buf)),
                                                 NULL, 0, 1000)
                           : client_send_timeout(&cl, PROTO_OP_LIST, buf,
                                                 /* cursors mostly stale or unknown: each LIST must stay bounded */
                                                 proto_list_encode(&(struct proto_list){ .cursor = cursor,
                                                                                         .prefix = "" },
                                                                   buf, sizeof(buf)),
                                                 NULL, 0, 1000);
                if (r < 0)
                        break; /* dropped (EPIPE) or the socket buffers are full (ETIMEDOUT) */
                sent++;
        }
        if (getenv("IOMEM_SOAK_DEBUG"))
                fprintf(stderr, "slow reader %u (%s): %d requests, then %s\n", w->index, by_fds ? "fds" : "bytes", sent,
                        strerror(-r));
        /*
         * leave with everything unread, sometimes after the daemon noticed, sometimes before, sometimes
         * after a framing violation that makes the daemon drop us while our end, and the fds in it, stay
         */
        if (rand_r(&w->seed) % 4 == 0) {
                memset(buf, 0xff, PROTO_HEADER_SIZE);
                (void)!send(cl.fd, buf, PROTO_HEADER_SIZE, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        if (rand_r(&w->seed) % 2)
                sleep_ms(50);
        client_close(&cl);
}

static void *worker_main(void *arg)
{
        struct worker *w = arg;

        while (time(NULL) < soak_end && !soak_failed) {
                unsigned kind = (unsigned)rand_r(&w->seed) % 10;

                if (kind < 5)
                        session_valid(w);
                else if (kind == 5)
                        session_malformed(w);
                else if (kind == 6)
                        session_cut(w);
                else if (kind == 7)
                        session_fd_flood(w);
                else
                        session_slow_reader(w);
                __atomic_fetch_add(&stat_sessions[kind < 5 ? 0 : kind - 4], 1, __ATOMIC_RELAXED);
        }
        return NULL;
}

/* Compare and delete every region of @w. */
static void worker_finish(struct worker *w)
{
        uint8_t buf[512];
        struct client cl;
        int e;

        if (client_connect(&cl) < 0 || client_hello(&cl) < 0) {
                fail("client %u: cannot connect at the end", w->index);
                client_close(&cl);
                return;
        }
        while (w->nown) {
                if (region_verify(&cl, &w->own[0]) != 1)
                        fail("client %u: region %s is not intact at the end", w->index, w->own[0].name);
                if (client_call(&cl, PROTO_OP_DELETE, buf,
                                proto_name_encode(&(struct proto_name){ w->own[0].name }, buf, sizeof(buf)), &e,
                                NULL) != 1)
                        fail("client %u: DELETE %s at the end", w->index, w->own[0].name);
                own_remove(w, 0);
        }
        client_close(&cl);
}

static void run_round(struct worker *workers, unsigned n, unsigned seconds)
{
        soak_end = time(NULL) + (time_t)seconds;
        for (unsigned i = 0; i < n; i++)
                if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
                        fail("pthread_create");
        for (unsigned i = 0; i < n; i++)
                pthread_join(workers[i].thread, NULL);
        for (unsigned i = 0; i < n; i++)
                worker_finish(&workers[i]);
}

/* STATUS on a fresh connection. Return: 0 with the counts, or -1. */
static int daemon_status(struct proto_status_reply *st)
{
        struct transport_frame f;
        struct client cl;
        int e, r = -1;

        if (client_connect(&cl) < 0 || client_hello(&cl) < 0) {
                client_close(&cl);
                return -1;
        }
        if (client_call(&cl, PROTO_OP_STATUS, NULL, 0, &e, &f) == 1) {
                r = proto_status_reply_decode(f.payload, f.hdr.length, st) < 0 ? -1 : 0;
                transport_frame_deinit(&f);
        }
        client_close(&cl);
        return r;
}

/* Wait until the daemon has no client and its fd count stops moving. Return: that fd count. */
static int daemon_idle(void)
{
        struct proto_status_reply st = {};
        int fds = -1, stable = 0;

        for (int i = 0; i < 2000 && stable < 20; i++) {
                int now = fdutil_count(daemon_pid);

                stable = now == fds ? stable + 1 : 0;
                fds = now;
                sleep_ms(5);
        }
        for (int i = 0; i < 500; i++) {
                if (daemon_status(&st) == 0 && st.connections == 1)
                        break;
                sleep_ms(10);
        }
        if (st.regions != 0)
                fail("%llu regions left in the daemon", (unsigned long long)st.regions);
        for (int i = 0; i < 200 && fdutil_count(daemon_pid) != fds; i++)
                sleep_ms(5);
        return fdutil_count(daemon_pid);
}

int main(int argc, char **argv)
{
        char dir[] = "/tmp/iomem-soak.XXXXXX", tmpdir_arg[64];
        unsigned seconds = argc > 2 ? (unsigned)atoi(argv[2]) : 24;
        char env_ctl[128], env_preload[1024], ctl_path[64];
        int64_t heap_base = 0, heap_end = 0;
        unsigned nclients = argc > 3 ? (unsigned)atoi(argv[3]) : 64;
        struct worker *workers;
        /* $IOMEM_SOAK_RSS_MARGIN_KB: another margin, or "off" (sanitizer builds: ASan's quarantine holds freed memory) */
        const char *margin_env = getenv("IOMEM_SOAK_RSS_MARGIN_KB");
        bool rss_check = !margin_env || strcmp(margin_env, "off") != 0;
        long rss_margin_kb = margin_env && rss_check ? atol(margin_env) : SOAK_RSS_MARGIN_KB;
        int fds_base, fds_end = -1, status;
        long rss_base, rss_end = -1;

        if (argc < 2) {
                fprintf(stderr, "usage: soak IOMEMD [SECONDS] [CLIENTS]\n");
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        if (!mkdtemp(dir))
                return 1;
        snprintf(socket_path, sizeof(socket_path), "%s/sock", dir);
        snprintf(tmpdir_arg, sizeof(tmpdir_arg), "--tmpdir=%s", dir);
        if (argc > 4) {
                int fd;

                snprintf(ctl_path, sizeof(ctl_path), "%s/ctl", dir);
                fd = open(ctl_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                if (fd < 0 || ftruncate(fd, sizeof(struct fault_ctl)) < 0)
                        return 1;
                heap_ctl = mmap(NULL, sizeof(*heap_ctl), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                close(fd);
                if (heap_ctl == MAP_FAILED)
                        return 1;
                heap_ctl->magic = FAULT_MAGIC;
                heap_ctl->func = -1;
                snprintf(env_ctl, sizeof(env_ctl), "IOMEM_FAULT_CTL=%s", ctl_path);
                snprintf(env_preload, sizeof(env_preload), "LD_PRELOAD=%s", argv[4]);
        }
        daemon_pid = fork();
        if (daemon_pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (heap_ctl) {
                        char env_pid[64];

                        snprintf(env_pid, sizeof(env_pid), "%d", (int)getpid());
                        setenv("IOMEM_FAULT_COUNT_PID", env_pid, 1);
                        putenv(env_ctl);
                        putenv(env_preload);
                }
                /*
                 * every client is one uid, the slow readers included: a quota-fds the valid sessions never
                 * reach (by default a uid's fds queued or in flight are bounded by 1/16 of half the daemon's
                 * RLIMIT_NOFILE, which the slow readers would fill for everyone of the uid)
                 */
                execl(argv[1], argv[1], "--socket", socket_path, "--log-level=error", "--max-out-bytes=256K",
                      "--quota-fds=1000000", tmpdir_arg, (char *)NULL);
                _exit(127);
        }
        /*
         * until the daemon accepts a connection, not only until its socket exists: it binds, then listens, and
         * a connect in between is refused (seen once in CI, the daemon's start slowed by a parallel build)
         */
        for (int i = 0; i < 3000; i++) {
                int fd = fdutil_connect(socket_path);

                if (fd >= 0) {
                        close(fd);
                        break;
                }
                sleep_ms(10);
        }
        workers = calloc(nclients, sizeof(*workers));
        for (unsigned i = 0; i < nclients; i++) {
                workers[i].index = i;
                workers[i].seed = 0x5eed + i;
        }

        /* warm-up: the allocator and libevent reach their working size */
        run_round(workers, nclients, seconds / 4 ? seconds / 4 : 1);
        fds_base = daemon_idle();
        rss_base = rss_kb_of(daemon_pid);
        if (heap_ctl)
                heap_base = __atomic_load_n(&heap_ctl->live_allocs, __ATOMIC_ACQUIRE);
        printf("baseline after warm-up: %d fds, RSS %ld kB, %lld heap blocks\n", fds_base, rss_base,
               (long long)heap_base);

        for (unsigned round = 0; round < 3 && !soak_failed; round++) {
                run_round(workers, nclients, seconds / 4 ? seconds / 4 : 1);
                fds_end = daemon_idle();
                rss_end = rss_kb_of(daemon_pid);
                if (heap_ctl)
                        heap_end = __atomic_load_n(&heap_ctl->live_allocs, __ATOMIC_ACQUIRE);
                printf("round %u: %d fds, RSS %ld kB, %lld heap blocks\n", round, fds_end, rss_end,
                       (long long)heap_end);
                fflush(stdout);
        }
        printf("after %u s with %u clients: %d fds, RSS %ld kB; sessions: %lu valid, %lu malformed, %lu cut, "
               "%lu fd floods, %lu slow readers\n",
               seconds, nclients, fds_end, rss_end, stat_sessions[0], stat_sessions[1], stat_sessions[2],
               stat_sessions[3], stat_sessions[4] + stat_sessions[5]);
        if (fds_end != fds_base)
                fail("the daemon holds %d fds, %d at the baseline", fds_end, fds_base);
        /*
         * Not asserted: libevent keeps one 16-byte evmap entry per fd number it
         * ever watched (freed with the event base), so the block count grows
         * with the highest fd number reached, not with work done. Exact leak
         * checks: fault-driver (one connection at a time) and valgrind (at exit).
         */
        if (!rss_check)
                printf("RSS not checked (IOMEM_SOAK_RSS_MARGIN_KB=off)\n");
        if (heap_ctl)
                printf("heap blocks: %lld at the baseline, %lld at the end\n", (long long)heap_base,
                       (long long)heap_end);
        if (rss_check && (rss_end < 0 || rss_end > rss_base + rss_margin_kb))
                fail("the daemon's RSS grew from %ld kB to %ld kB", rss_base, rss_end);
        if (getenv("IOMEM_SOAK_PAUSE")) { /* debugging: inspect the idle daemon (e.g. vgdb leak_check) */
                printf("daemon pid %d idle; pausing %s s\n", (int)daemon_pid, getenv("IOMEM_SOAK_PAUSE"));
                fflush(stdout);
                sleep((unsigned)atoi(getenv("IOMEM_SOAK_PAUSE")));
        }
        if (waitpid(daemon_pid, &status, WNOHANG) == daemon_pid)
                fail("iomemd died during the soak (status 0x%x)", status);
        kill(daemon_pid, SIGTERM);
        if (waitpid(daemon_pid, &status, 0) != daemon_pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail("iomemd did not exit cleanly (status 0x%x)", status);
        unlink(socket_path);
        if (heap_ctl)
                unlink(ctl_path);
        rmdir(dir);
        free(workers);
        if (!soak_failed)
                printf("soak: ok\n");
        return soak_failed ? 1 : 0;
}
