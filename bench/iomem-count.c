/* iomem-count: a fixed number of requests against iomemd, for instruction counts (valgrind --tool=callgrind). */

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>

#include "iomem.h"

/*
 * Usage: iomem-count SOCKET MODE N [TABLE]
 * Setup (in every run): one connection creates TABLE size-0 regions "cg/tK" and the 4 KiB region "cg/r".
 * Then N operations of MODE:
 *   open     iomem_open("cg/r") read-write + free, on the setup connection
 *   open-ro  the same, read-only
 *   create   iomem_create("cg/cK", 4 KiB) + free (the regions stay)
 *   cold     iomem_connect + iomem_open("cg/r") + free + iomem_disconnect
 *   cold-map the same with iomem_region_map() of the 4 KiB and munmap before the free (iomem-bench's cold rows)
 *   publish  iomem_publish("cg/p") of one sealed 4 KiB memfd, on the setup connection (an EVENTS one); here
 *            TABLE is instead the number of OPENVs parked (WAIT, forever) on other names "cg/vK", 64 per
 *            connection over as many connections as that takes, kept open for the run
 *   inflight iomem_ping_async() on the setup connection with TABLE of them kept in flight (a new one as each
 *            completes; iomem_client_process() when poll() says so): the client's cost per reply as a function of
 *            the requests outstanding (reply matching). TABLE is not a region count here; use N >= TABLE, so
 *            that the N and 2N runs differ only in steady-state replies (the ramp up and the drain cancel out)
 * Run it twice against a daemon under callgrind, with N and 2N: the daemon's
 * instructions per operation are the difference divided by N (setup and
 * start-up cancel out).
 */
enum { MODE_OPEN, MODE_OPEN_RO, MODE_CREATE, MODE_COLD, MODE_COLD_MAP, MODE_PUBLISH, MODE_INFLIGHT, MODE_N };
static const char *const modes[MODE_N] = { "open", "open-ro", "create", "cold", "cold-map", "publish", "inflight" };

/* OPENVs parked per connection: the daemon's bound (CONN_MAX_WAITS) */
#define COUNT_WAITS_PER_CONN 64ul

static void count_parked_cb(struct iomem_client *client, int error, struct iomem_region *region, uint64_t generation,
                            void *userdata)
{
        (void)client;
        (void)generation;
        (void)userdata;
        /* only when the run ends and the connection goes (-ECONNRESET), or if a name appeared */
        if (error == 0)
                iomem_region_free(region);
}

static void count_ping_cb(struct iomem_client *client, int error, void *userdata)
{
        unsigned long *done = userdata;

        (void)client;
        if (error < 0) {
                fprintf(stderr, "iomem-count: ping: %s\n", iomem_strerror(error));
                exit(1);
        }
        (*done)++;
}

/* MODE_INFLIGHT: @n pings, @k kept outstanding. Return: 0; negative errno. */
static int count_inflight(struct iomem_client *c, unsigned long n, unsigned long k)
{
        unsigned long sent = 0, done = 0;
        int r = 0;

        if (k == 0)
                k = 1;
        while (done < n) {
                struct pollfd pfd = { .fd = iomem_client_fd(c) };

                while (sent < n && sent - done < k) {
                        r = iomem_ping_async(c, count_ping_cb, &done);
                        if (r < 0)
                                return r;
                        sent++;
                }
                r = iomem_client_get_events(c);
                if (r < 0)
                        return r;
                pfd.events = (short)r;
                if (poll(&pfd, 1, iomem_client_get_timeout(c)) < 0)
                        return -errno;
                r = iomem_client_process(c);
                if (r < 0)
                        return r;
        }
        return 0;
}

/*
 * Park @n OPENVs on the names "cg/v0".. (never made) over connections of
 * COUNT_WAITS_PER_CONN each, stored in *waitersp (*nwaitersp of them).
 * Return: 0; negative errno.
 */
static int count_park_openvs(const char *sock, unsigned long n, struct iomem_client ***waitersp, size_t *nwaitersp)
{
        size_t nconn = (n + COUNT_WAITS_PER_CONN - 1) / COUNT_WAITS_PER_CONN;
        struct iomem_client **w = calloc(nconn ? nconn : 1, sizeof(*w));
        char name[64];
        int r = 0;

        if (!w)
                return -ENOMEM;
        *waitersp = w;
        *nwaitersp = nconn;
        for (unsigned long i = 0; i < n && r == 0; i++) {
                size_t k = i / COUNT_WAITS_PER_CONN;

                if (!w[k]) {
                        r = iomem_connect_flags(sock, IOMEM_CONNECT_EVENTS, &w[k]);
                        if (r < 0)
                                break;
                }
                snprintf(name, sizeof(name), "cg/v%lu", i);
                r = iomem_open_version_async(w[k], name, 0, 0, -1, count_parked_cb, NULL);
                /* a PING's reply after the connection's last OPENV: the daemon parked them all (requests in order) */
                if (r == 0 && ((i + 1) % COUNT_WAITS_PER_CONN == 0 || i + 1 == n))
                        r = iomem_ping(w[k]);
        }
        return r;
}

int main(int argc, char **argv)
{
        struct iomem_client *c = NULL, **waiters = NULL;
        struct iomem_region *reg = NULL, *snap = NULL;
        size_t nwaiters = 0;
        const char *sock, *mode;
        unsigned long n, table = 0;
        char name[64];
        int r, m;

        if (argc < 4) {
                fprintf(stderr, "usage: %s SOCKET open|open-ro|create|cold|cold-map|publish|inflight N [TABLE]\n", argv[0]);
                return 2;
        }
        sock = argv[1];
        mode = argv[2];
        n = strtoul(argv[3], NULL, 10);
        if (argc > 4)
                table = strtoul(argv[4], NULL, 10);
        /* the mode is told once: string compares per operation would count in a client-side run (callgrind-client.sh) */
        for (m = 0; m < MODE_N && strcmp(mode, modes[m]) != 0; m++)
                ;
        if (m == MODE_N) {
                fprintf(stderr, "unknown mode %s\n", mode);
                return 2;
        }

        r = m == MODE_PUBLISH ? iomem_connect_flags(sock, IOMEM_CONNECT_EVENTS, &c) : iomem_connect(sock, &c);
        if (r < 0)
                goto fail;
        if (m == MODE_PUBLISH) {
                r = count_park_openvs(sock, table, &waiters, &nwaiters);
                if (r == 0)
                        r = iomem_region_new_local(4096, IOMEM_BACKEND_MEMFD, 0, &snap);
                if (r == 0)
                        r = iomem_region_seal(snap, IOMEM_SEAL_SHRINK | IOMEM_SEAL_GROW | IOMEM_SEAL_WRITE);
                if (r < 0)
                        goto fail;
                table = 0; /* no regions "cg/tK" */
        }
        if (m == MODE_INFLIGHT) {
                r = count_inflight(c, n, table);
                goto fail;
        }
        for (unsigned long i = 0; i < table; i++) {
                snprintf(name, sizeof(name), "cg/t%lu", i);
                r = iomem_create(c, name, 0, NULL, &reg);
                if (r < 0)
                        goto fail;
                reg = iomem_region_free(reg);
        }
        r = iomem_create(c, "cg/r", 4096, NULL, &reg);
        if (r < 0)
                goto fail;
        reg = iomem_region_free(reg);

        for (unsigned long i = 0; i < n; i++) {
                if (m == MODE_OPEN || m == MODE_OPEN_RO) {
                        r = iomem_open(c, "cg/r", m == MODE_OPEN_RO ? IOMEM_OPEN_RDONLY : 0, 0, &reg);
                } else if (m == MODE_PUBLISH) {
                        r = iomem_publish(c, "cg/p", snap, NULL, NULL);
                } else if (m == MODE_CREATE) {
                        snprintf(name, sizeof(name), "cg/c%lu", i);
                        r = iomem_create(c, name, 4096, NULL, &reg);
                } else { /* MODE_COLD, MODE_COLD_MAP */
                        struct iomem_client *k = NULL;
                        void *addr;

                        r = iomem_connect(sock, &k);
                        if (r == 0)
                                r = iomem_open(k, "cg/r", 0, 0, &reg);
                        if (r == 0 && m == MODE_COLD_MAP) {
                                r = iomem_region_map(reg, 0, 4096, PROT_READ | PROT_WRITE, &addr);
                                if (r == 0)
                                        r = iomem_unmap(addr, 4096);
                        }
                        k = iomem_disconnect(k);
                }
                if (r < 0)
                        goto fail;
                reg = iomem_region_free(reg);
        }
        r = 0;
fail:
        if (r < 0)
                fprintf(stderr, "iomem-count: %s\n", iomem_strerror(r));
        for (size_t k = 0; k < nwaiters; k++)
                iomem_disconnect(waiters[k]);
        free(waiters);
        iomem_region_free(snap);
        iomem_disconnect(c);
        return r < 0 ? 1 : 0;
}
