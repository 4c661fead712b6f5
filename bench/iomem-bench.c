/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* iomem-bench: the benchmark of iomemd and libiomem against the daemon-less floor (docs/performance.md). */

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "dataplane.h"
#include "events.h"
#include "floor.h"
#include "iomem.h"
#include "runner.h"
#include "spawn.h"
#include "stats.h"

#ifndef IOMEM_BENCH_IOMEMD
#define IOMEM_BENCH_IOMEMD "iomemd"
#endif

#define BENCH_MAP_SIZE 4096
#define BENCH_OPEN_NAME "bench-open"
#define BENCH_COLD_NAME "bench-cold"
#define BENCH_MAX_RESULTS 64
#define BENCH_SAMPLE_CAP (1u << 22)
#define BENCH_UNIT_NOFILE 262144L /* systemd/iomemd.service.in: LimitNOFILE= */
#define BENCH_COLD_ROUNDS 8       /* a cold row and its adjacent cold floor: alternating segments per side */

struct bench_plan {
        const char *mode;
        double seconds;         /* window of each single-process scenario */
        double clients_seconds; /* window of each concurrency scenario */
        uint64_t warmup;
        unsigned regions;       /* scenario 6/7 table size */
        unsigned small_regions; /* scenario 6 small table */
        unsigned parked_budget; /* scenario 6, parked configuration: the daemon's --max-region-fds */
        unsigned idle_conns;    /* scenario 7 */
        uint64_t dp_bytes;      /* scenario 8 */
        int dp_reps;
};

static const struct bench_plan bench_full = {
        .mode = "full", .seconds = 2.0, .clients_seconds = 3.0, .warmup = 2000, .regions = 100000,
        .small_regions = 100, .parked_budget = 9744, .idle_conns = 10000, .dp_bytes = UINT64_C(1) << 30, .dp_reps = 5,
};

static const struct bench_plan bench_quick = {
        .mode = "quick", .seconds = 0.05, .clients_seconds = 0.1, .warmup = 20, .regions = 2000,
        .small_regions = 100, .parked_budget = 200, .idle_conns = 200, .dp_bytes = UINT64_C(16) << 20, .dp_reps = 2,
};

static const int bench_client_counts[] = { 1, 8, 64, 512 };

struct bench {
        struct bench_plan plan;
        const char *iomemd;
        FILE *json; /* --json FILE, or NULL */
        struct stats_result results[BENCH_MAX_RESULTS];
        int nresults;
        int failures;
        const char *only; /* --only: comma-separated groups, NULL = all */
        int pin;          /* one-to-one scenarios: client and server on one CPU */
        int pin_keepers;  /* --pin-keepers: the server's fd keepers on that CPU too */
        const char *backend; /* iomemd --backend */
        const char *tmpdir;  /* iomemd --tmpdir, or NULL */
        const char *extra[SPAWN_MAX_EXTRA + 1]; /* --iomemd-arg, NULL-terminated */
        int nextra;
        long nofile;          /* this process's RLIMIT_NOFILE (soft = hard) after spawn_raise_nofile() */
        long unit_nofile;     /* scenario 6 as deployed: the daemon's LimitNOFILE= (--unit-nofile) */
        char table_note[160]; /* scenario 6: the big table's daemon fd limit and what was parked */
};

/* Put this process and @server (0 = none) on one CPU, or back on all CPUs (@on = 0). */
static void bench_pin(const struct bench *b, pid_t server, int on)
{
        if (!b->pin)
                return;
        (void)spawn_pin(0, on ? 0 : -1);
        if (server > 0) {
                (void)spawn_pin(server, on ? 0 : -1);
                if (b->pin_keepers)
                        (void)spawn_pin_children(server, on ? 0 : -1);
        }
}

/* Return: whether the group @name is to run (--only). */
static int bench_wants(const struct bench *b, const char *name)
{
        size_t len = strlen(name);

        for (const char *p = b->only; p && *p;) {
                const char *end = strchrnul(p, ',');

                if ((size_t)(end - p) == len && strncmp(p, name, len) == 0)
                        return 1;
                p = *end ? end + 1 : end;
        }
        return !b->only;
}

/* Emit a line of JSON on stdout and to the --json file. */
static void bench_json_line(struct bench *b, const char *line)
{
        fputs(line, stdout);
        if (b->json)
                fputs(line, b->json);
        fflush(stdout);
}

static void bench_record(struct bench *b, const struct stats_result *res)
{
        char *line = NULL;
        size_t len = 0;
        FILE *f;

        if (b->nresults < BENCH_MAX_RESULTS)
                b->results[b->nresults++] = *res;
        f = open_memstream(&line, &len);
        if (!f)
                return;
        stats_print_json(f, res);
        fclose(f);
        bench_json_line(b, line);
        free(line);
}

static void bench_fail(struct bench *b, const char *scenario, int r)
{
        fprintf(stderr, "iomem-bench: %s: %s\n", scenario, iomem_strerror(r));
        b->failures++;
}

static const struct stats_result *bench_find(const struct bench *b, const char *scenario)
{
        for (int i = 0; i < b->nresults; i++)
                if (strcmp(b->results[i].scenario, scenario) == 0)
                        return &b->results[i];
        return NULL;
}

/* Run @op in this process and record it. Return: 0 or negative errno. */
static int bench_loop(struct bench *b, const char *scenario, const char *desc, runner_op_fn op, void *ctx,
                      struct stats_result *resp)
{
        struct runner_opts o = { .seconds = b->plan.seconds, .warmup = b->plan.warmup };
        struct stats_result res;
        struct stats s;
        double seconds;
        int r;

        r = stats_init(&s, BENCH_SAMPLE_CAP);
        if (r == 0)
                r = runner_loop(op, ctx, &o, &s, &seconds);
        if (r == 0) {
                stats_finish(&s, seconds, scenario, desc, &res);
                if (resp)
                        *resp = res;
                else
                        bench_record(b, &res);
        } else {
                bench_fail(b, scenario, r);
        }
        stats_deinit(&s);
        return r;
}

/* ---- scenarios 2-5: one daemon, persistent and cold clients ---------------------------------------- */

struct bench_conn {
        struct iomem_client *c;
        const char *socket;
        const char *name;
        unsigned counter;
        unsigned first;   /* scenario 6: names bench-r-first..first+nnames-1 */
        unsigned nnames;
        uint64_t rng;
};

static int bench_open_map_op(void *userdata)
{
        struct bench_conn *x = userdata;
        struct iomem_region *region = NULL;
        void *p;
        int r;

        r = iomem_open(x->c, x->name, 0, 0, &region);
        if (r < 0)
                return r;
        r = iomem_region_map(region, 0, BENCH_MAP_SIZE, PROT_READ | PROT_WRITE, &p);
        if (r == 0)
                r = iomem_unmap(p, BENCH_MAP_SIZE);
        iomem_region_free(region);
        return r;
}

static int bench_create_delete_op(void *userdata)
{
        struct bench_conn *x = userdata;
        struct iomem_region *region = NULL;
        int r;

        r = iomem_create(x->c, "bench-create", BENCH_MAP_SIZE, NULL, &region);
        if (r < 0)
                return r;
        iomem_region_free(region);
        return iomem_delete(x->c, "bench-create");
}

static int bench_create_anon_op(void *userdata)
{
        struct bench_conn *x = userdata;
        struct iomem_region *region = NULL;
        int r;

        r = iomem_create(x->c, NULL, BENCH_MAP_SIZE, NULL, &region);
        iomem_region_free(region);
        return r;
}

static int bench_cold_open_op(void *userdata)
{
        struct bench_conn *x = userdata;
        struct iomem_client *c = NULL;
        struct iomem_region *region = NULL;
        int r;

        r = iomem_connect(x->socket, &c);
        if (r == 0)
                r = iomem_open(c, x->name, 0, 0, &region);
        iomem_region_free(region);
        iomem_disconnect(c);
        return r;
}

/* A short-lived program: connect + HELLO + OPEN (pipelined by libiomem) + map + unmap + close + disconnect. */
static int bench_cold_map_op(void *userdata)
{
        struct bench_conn *x = userdata;
        struct iomem_client *c = NULL;
        struct iomem_region *region = NULL;
        void *p;
        int r;

        r = iomem_connect(x->socket, &c);
        if (r == 0)
                r = iomem_open(c, BENCH_COLD_NAME, 0, 0, &region);
        if (r == 0)
                r = iomem_region_map(region, 0, BENCH_MAP_SIZE, PROT_READ | PROT_WRITE, &p);
        if (r == 0)
                r = iomem_unmap(p, BENCH_MAP_SIZE);
        iomem_region_free(region);
        iomem_disconnect(c);
        return r;
}

static int bench_client_setup(int index, void *arg, void **ctxp)
{
        static struct bench_conn x; /* one per forked client process */
        int r;

        x = *(const struct bench_conn *)arg;
        x.c = NULL;
        r = iomem_connect(x.socket, &x.c);
        if (r < 0)
                return r;
        *ctxp = &x;
        return 0;
}

static void bench_client_teardown(void *ctx)
{
        struct bench_conn *x = ctx;

        x->c = iomem_disconnect(x->c);
}

static void bench_clients(struct bench *b, struct bench_conn *proto)
{
        struct runner_client rc = { .setup = bench_client_setup, .op = bench_open_map_op,
                                    .teardown = bench_client_teardown, .arg = proto };
        struct runner_opts o = { .seconds = b->plan.clients_seconds };

        for (size_t i = 0; i < sizeof(bench_client_counts) / sizeof(bench_client_counts[0]); i++) {
                int n = bench_client_counts[i], r;
                char scenario[32], desc[112];
                struct stats_result res;
                struct stats s;
                double seconds;

                snprintf(scenario, sizeof(scenario), "clients-%d", n);
                snprintf(desc, sizeof(desc), "%d forked clients, each OPEN + mmap + munmap + close in a loop", n);
                r = stats_init(&s, BENCH_SAMPLE_CAP);
                if (r == 0)
                        r = runner_clients(n, &rc, &o, &s, &seconds);
                if (r == 0) {
                        stats_finish(&s, seconds, scenario, desc, &res);
                        res.clients = n;
                        bench_record(b, &res);
                } else {
                        bench_fail(b, scenario, r);
                }
                stats_deinit(&s);
        }
}

static void bench_daemon_ops(struct bench *b)
{
        struct iomem_region *region = NULL;
        struct spawn d;
        struct bench_conn x = { .name = BENCH_OPEN_NAME };
        struct stats_result res[DATAPLANE_MODES];
        int r, n;

        r = spawn_iomemd(b->iomemd, b->backend, b->tmpdir, b->extra, &d);
        if (r < 0) {
                bench_fail(b, "spawn iomemd", r);
                return;
        }
        x.socket = d.socket;
        r = iomem_connect(d.socket, &x.c);
        if (r == 0)
                r = iomem_create(x.c, BENCH_OPEN_NAME, BENCH_MAP_SIZE, NULL, &region);
        region = iomem_region_free(region);
        if (r < 0) {
                bench_fail(b, "setup", r);
                goto out;
        }
        if (!bench_wants(b, "ops"))
                goto clients;
        bench_pin(b, d.pid, 1);
        bench_loop(b, "open-map", "OPEN + mmap + munmap + close on a persistent connection", bench_open_map_op,
                   &x, NULL);
        {
                /* the same OPEN answered by the client's open cache (issue 12): a local dup, no round trip */
                struct bench_conn cx = x;

                cx.c = NULL;
                r = iomem_connect_flags(d.socket, IOMEM_CONNECT_EVENTS, &cx.c);
                if (r == 0)
                        r = iomem_client_set_open_cache(cx.c, 1);
                if (r == 0)
                        bench_loop(b, "open-map-cached", "open-map with iomem_client_set_open_cache(): repeated OPEN "
                                   "of an unchanged name from a local dup", bench_open_map_op, &cx, NULL);
                else
                        bench_fail(b, "open-map-cached", r);
                iomem_disconnect(cx.c);
        }
        bench_loop(b, "create-delete", "CREATE + DELETE of a named region (4 KiB)", bench_create_delete_op, &x,
                   NULL);
        bench_loop(b, "create-anon", "anonymous CREATE (4 KiB) + close", bench_create_anon_op, &x, NULL);
        bench_loop(b, "cold-open", "connect + HELLO + OPEN + close + disconnect per op", bench_cold_open_op, &x,
                   NULL);
clients:
        if (bench_wants(b, "events")) {
                struct runner_opts eo = { .seconds = b->plan.seconds, .warmup = b->plan.warmup / 10 };
                struct stats_result ev[EVENTS_RESULTS];

                bench_pin(b, d.pid, 1); /* the forked poller and watcher inherit the CPU */
                n = events_run(d.socket, &eo, BENCH_SAMPLE_CAP, ev);
                if (n < 0)
                        bench_fail(b, "events", n);
                for (int i = 0; i < n; i++)
                        bench_record(b, &ev[i]);
        }
        bench_pin(b, d.pid, 0);
        if (bench_wants(b, "clients"))
                bench_clients(b, &x);
        if (!bench_wants(b, "dataplane"))
                goto out;
        n = dataplane_run(d.socket, b->plan.dp_bytes, b->plan.dp_reps, b->pin && sysconf(_SC_NPROCESSORS_ONLN) > 1, res);
        if (n < 0)
                bench_fail(b, "dataplane", n);
        for (int i = 0; i < n; i++)
                bench_record(b, &res[i]);
        /* the same 1 GiB handed over with huge pages (what the system gives) and reserved up front */
        {
                static const struct {
                        uint32_t flags;
                        const char *suffix;
                } pages[] = {
                        { IOMEM_CREATE_HUGE, "-huge" },
                        { IOMEM_CREATE_RESERVE, "-reserve" },
                        { IOMEM_CREATE_HUGE | IOMEM_CREATE_RESERVE, "-huge-reserve" },
                };

                for (size_t k = 0; k < sizeof(pages) / sizeof(pages[0]); k++) {
                        n = dataplane_run_pages(d.socket, b->plan.dp_bytes, b->plan.dp_reps,
                                                b->pin && sysconf(_SC_NPROCESSORS_ONLN) > 1, pages[k].flags,
                                                pages[k].suffix, res);
                        if (n < 0)
                                bench_fail(b, pages[k].suffix, n);
                        for (int i = 0; i < n; i++)
                                bench_record(b, &res[i]);
                }
        }
out:
        iomem_disconnect(x.c);
        spawn_stop(&d);
}

/*
 * A cold row (@scenario: bench_cold_map_op against the daemon @x->socket) and
 * the cold floor (floor_cold()'s bare server and op, row @floor_scenario)
 * measured at the same time: BENCH_COLD_ROUNDS rounds, each a segment of
 * either side of seconds / BENCH_COLD_ROUNDS, the order alternating (floor
 * first, then the daemon first, ...) so a drift in the machine's speed weighs
 * on both alike. Each side's samples and ops are merged over its segments, so
 * it gets the same total window as a bench_loop() row. Each side's first
 * segment has the full warm-up; every later one warmup / BENCH_COLD_ROUNDS
 * untimed ops first, so that a switch's cold caches are not timed. The floor's
 * server is forked here and inherits this process's CPU pin (the caller's
 * bench_pin()), as in the floor group. @resp and @floorp get the two rows; a
 * floor that cannot run is reported and the cold row measured alone.
 * Return: 0 (the cold row measured) or negative errno.
 */
static int bench_cold_adjacent(struct bench *b, const char *scenario, const char *desc, struct bench_conn *x,
                               const char *floor_scenario, struct stats_result *resp, struct stats_result *floorp,
                               int *floor_okp)
{
        struct floor_cold *f = NULL;
        struct stats sd = { 0 }, sf = { 0 };
        double secd = 0, secf = 0;
        char fdesc[112];
        int r, rf;

        *floor_okp = 0;
        rf = floor_cold_start(BENCH_MAP_SIZE, false, &f);
        if (rf == 0)
                rf = stats_init(&sf, BENCH_SAMPLE_CAP);
        r = stats_init(&sd, BENCH_SAMPLE_CAP);
        for (int i = 0; i < BENCH_COLD_ROUNDS && r == 0; i++) {
                struct runner_opts o = { .seconds = b->plan.seconds / BENCH_COLD_ROUNDS };
                double t;

                for (int k = 0; k < 2 && r == 0; k++) {
                        int floor_side = (k == 0) == (i % 2 == 0);
                        const struct stats *side = floor_side ? &sf : &sd;

                        /* a side's first segment: the full warm-up; later ones (most after a switch) a short one */
                        o.warmup = side->ops ? b->plan.warmup / BENCH_COLD_ROUNDS : b->plan.warmup;
                        if (floor_side) {
                                if (rf < 0)
                                        continue;
                                rf = floor_cold_run(f, &o, &sf, &t);
                                if (rf == 0)
                                        secf += t;
                        } else {
                                r = runner_loop(bench_cold_map_op, x, &o, &sd, &t);
                                if (r == 0)
                                        secd += t;
                        }
                }
        }
        if (f) {
                int k = floor_cold_stop(f);

                if (rf == 0)
                        rf = k;
        }
        if (r == 0)
                stats_finish(&sd, secd, scenario, desc, resp);
        else
                bench_fail(b, scenario, r);
        if (r == 0 && rf == 0) {
                snprintf(fdesc, sizeof(fdesc), "floor-cold's op, in %d rounds alternating with %s", BENCH_COLD_ROUNDS,
                         scenario);
                stats_finish(&sf, secf, floor_scenario, fdesc, floorp);
                stats_extra(floorp, "rounds", "%d", BENCH_COLD_ROUNDS);
                stats_extra(floorp, "adjacent_to", "\"%s\"", scenario);
                stats_extra(resp, "rounds", "%d", BENCH_COLD_ROUNDS);
                stats_extra(resp, "adjacent_floor", "\"%s\"", floor_scenario);
                *floor_okp = 1;
        } else if (rf < 0) {
                bench_fail(b, floor_scenario, rf);
        }
        stats_deinit(&sd);
        stats_deinit(&sf);
        return r;
}

/* ---- scenarios 6 and 7: a big table, many idle connections, and the daemon's RSS ------------------ */

static int bench_open_random_op(void *userdata)
{
        struct bench_conn *x = userdata;
        struct iomem_region *region = NULL;
        char name[32];
        int r;

        /* xorshift64: a spread of names, so the hash table is not walked in one hot spot */
        x->rng ^= x->rng << 13;
        x->rng ^= x->rng >> 7;
        x->rng ^= x->rng << 17;
        snprintf(name, sizeof(name), "bench-r-%06u", x->first + (unsigned)(x->rng % x->nnames));
        r = iomem_open(x->c, name, 0, 0, &region);
        iomem_region_free(region);
        return r;
}

struct bench_creator {
        struct bench_conn *x;
        uint64_t size;
};

static int bench_create_next_op(void *userdata)
{
        struct bench_creator *cr = userdata;
        struct iomem_region *region = NULL;
        char name[32];
        int r;

        snprintf(name, sizeof(name), "bench-r-%06u", cr->x->counter);
        r = iomem_create(cr->x->c, name, cr->size, NULL, &region);
        iomem_region_free(region);
        if (r == 0)
                cr->x->counter++;
        return r;
}

/* Create regions until @count exist, timing each. Return: 0 or negative errno. */
static int bench_fill_table(struct bench_creator *cr, unsigned count, struct stats *s, double *secondsp)
{
        struct runner_opts o = { .seconds = 1e6, .max_ops = count - cr->x->counter };

        return runner_loop(bench_create_next_op, cr, &o, s, secondsp);
}

static double bench_rss_delta(const struct spawn_rss *a, const struct spawn_rss *b)
{
        /* the daemon's own memory: resident minus any region memory it maps (shmem) */
        return ((double)b->rss_kb - (double)b->shmem_kb - ((double)a->rss_kb - (double)a->shmem_kb)) * 1024.0;
}

struct bench_table_fds {
        uint64_t region_fds; /* held by the daemon itself */
        uint64_t keepers;
};

static int bench_table_metric(const struct iomem_metric *m, void *userdata)
{
        struct bench_table_fds *f = userdata;

        if (m->name && strcmp(m->name, "iomemd_region_fds") == 0)
                f->region_fds = m->value;
        else if (m->name && strcmp(m->name, "iomemd_keepers") == 0)
                f->keepers = m->value;
        return 0;
}

/* Tag a scenario 6 row with the daemon's fd limit and what of the table was parked then. */
static void bench_table_extra(struct stats_result *res, long nofile, const char *limit_from, unsigned regions,
                              const struct bench_table_fds *f)
{
        stats_extra(res, "daemon_nofile", "%ld", nofile);
        stats_extra(res, "nofile_from", "\"%s\"", limit_from);
        stats_extra(res, "region_fds", "%llu", (unsigned long long)f->region_fds);
        stats_extra(res, "parked", "%llu",
                    (unsigned long long)(regions > f->region_fds ? regions - f->region_fds : 0));
        stats_extra(res, "keepers", "%llu", (unsigned long long)f->keepers);
}

/*
 * Scenario 6 and the per-region RSS. @parked = 0: as deployed, the daemon
 * with the shipped unit's LimitNOFILE= where this process may give it that
 * (else its own limit, said in the rows: "nofile_from"), which holds every
 * region fd itself. @parked = 1: the daemon's region-fd budget set to what a
 * 20,000 fd limit gives it (plan.parked_budget), so most of the big table is
 * parked in keepers; informational rows, the OPENs also split into names held
 * by the daemon and names parked (the daemon parks each region created past
 * its budget, so the held ones are the first region_fds created).
 */
static void bench_regions(struct bench *b, int parked)
{
        struct spawn_opts so = { .binary = b->iomemd, .backend = b->backend, .tmpdir = b->tmpdir,
                                 .extra = b->extra };
        struct spawn d;
        struct spawn_rss rss0, rss1;
        struct bench_conn x = { .rng = 0x9E3779B97F4A7C15u };
        struct bench_creator cr = { .x = &x, .size = 0 };
        struct bench_table_fds f = { 0 };
        struct stats_result res, fres;
        struct stats s = { 0 };
        const char *limit_from;
        int floor_ok;
        const char *pre = parked ? "parked-" : "";
        char desc[112], scenario[48];
        double seconds;
        long dnofile;
        int r;

        if (parked) {
                so.max_region_fds = b->plan.parked_budget;
                limit_from = "inherited";
        } else if (b->nofile >= b->unit_nofile) {
                so.nofile = b->unit_nofile;
                limit_from = "unit";
        } else {
                limit_from = "fallback"; /* no CAP_SYS_RESOURCE: this process's hard limit is all there is */
        }
        r = spawn_iomemd_opts(&so, &d);
        if (r < 0) {
                bench_fail(b, "spawn iomemd", r);
                return;
        }
        dnofile = spawn_nofile(d.pid);
        r = iomem_connect(d.socket, &x.c);
        if (r == 0) {
                /* size 0 keeps the regions' own memory out of the count; 4 KiB untouched if 0 is refused */
                r = bench_create_next_op(&cr);
                if (r == -EINVAL) {
                        cr.size = BENCH_MAP_SIZE;
                        r = bench_create_next_op(&cr);
                }
        }
        if (r == 0)
                r = stats_init(&s, BENCH_SAMPLE_CAP);
        if (r == 0)
                r = bench_fill_table(&cr, b->plan.small_regions, &s, &seconds);
        stats_deinit(&s);
        if (r < 0) {
                bench_fail(b, "regions setup", r);
                goto out;
        }
        x.nnames = x.counter;
        snprintf(scenario, sizeof(scenario), "%s%s", parked ? "parked-" : "open-", "small-table");
        snprintf(desc, sizeof(desc), "OPEN + close of a random name, %u regions in the table", x.counter);
        bench_pin(b, d.pid, 1);
        bench_loop(b, scenario, desc, bench_open_random_op, &x, NULL);
        if (!parked) {
                /* a 4 KiB region made now stays in the daemon (within its fd budget) whatever the table grows to */
                struct iomem_region *cold = NULL;

                r = iomem_create(x.c, BENCH_COLD_NAME, BENCH_MAP_SIZE, NULL, &cold);
                iomem_region_free(cold);
                if (r < 0) {
                        bench_fail(b, "cold setup", r);
                        goto out;
                }
                x.socket = d.socket;
                snprintf(desc, sizeof(desc), "connect + OPEN + mmap + munmap + close + disconnect, %u regions",
                         x.counter + 1);
                if (bench_cold_adjacent(b, "cold-small-table", desc, &x, "floor-cold-small", &res, &fres,
                                        &floor_ok) == 0) {
                        if (floor_ok)
                                bench_record(b, &fres);
                        bench_record(b, &res);
                }
        }
        bench_pin(b, d.pid, 0);

        r = spawn_rss(d.pid, &rss0);
        if (r == 0)
                r = stats_init(&s, BENCH_SAMPLE_CAP);
        if (r == 0)
                r = bench_fill_table(&cr, b->plan.regions, &s, &seconds);
        if (r == 0)
                r = spawn_rss(d.pid, &rss1);
        if (r == 0)
                r = iomem_metrics(x.c, NULL, bench_table_metric, &f);
        if (r == 0) {
                unsigned added = x.counter - x.nnames;

                snprintf(desc, sizeof(desc), "CREATE of named regions of %llu bytes until %u exist; daemon RSS",
                         (unsigned long long)cr.size, x.counter);
                snprintf(scenario, sizeof(scenario), "%sregions-rss", pre);
                stats_finish(&s, seconds, scenario, desc, &res);
                stats_extra(&res, "regions", "%u", x.counter);
                stats_extra(&res, "region_size", "%llu", (unsigned long long)cr.size);
                stats_extra(&res, "rss_before_kb", "%llu", (unsigned long long)rss0.rss_kb);
                stats_extra(&res, "rss_after_kb", "%llu", (unsigned long long)rss1.rss_kb);
                stats_extra(&res, "shmem_after_kb", "%llu", (unsigned long long)rss1.shmem_kb);
                stats_extra(&res, "keepers_after_kb", "%llu", (unsigned long long)rss1.keepers_kb);
                stats_extra(&res, "keepers", "%u", rss1.keepers);
                stats_extra(&res, "rss_per_region_bytes", "%.1f", bench_rss_delta(&rss0, &rss1) / added);
                stats_extra(&res, "daemon_nofile", "%ld", dnofile);
                bench_record(b, &res);
        }
        stats_deinit(&s);
        if (r < 0) {
                bench_fail(b, parked ? "parked-regions-rss" : "regions-rss", r);
                goto out;
        }
        {
                /* every region in the table: the bench's names, and bench-cold in the deployed run */
                unsigned total = x.counter + !parked, held = (unsigned)f.region_fds;

                x.nnames = x.counter;
                snprintf(scenario, sizeof(scenario), "%s%s", parked ? "parked-" : "open-", "big-table");
                snprintf(desc, sizeof(desc), "OPEN + close of a random name, %u regions in the table, %u parked",
                         total, total > held ? total - held : 0);
                bench_pin(b, d.pid, 1);
                if (bench_loop(b, scenario, desc, bench_open_random_op, &x, &res) == 0) {
                        bench_table_extra(&res, dnofile, limit_from, total, &f);
                        bench_record(b, &res);
                }
                if (!parked) {
                        snprintf(b->table_note, sizeof(b->table_note),
                                 "iomemd RLIMIT_NOFILE %ld (%s), %u of %u regions parked", dnofile,
                                 so.nofile ? "the unit's LimitNOFILE=" : "FALLBACK: the bench cannot raise it",
                                 total > held ? total - held : 0, total);
                        snprintf(desc, sizeof(desc),
                                 "connect + OPEN + mmap + munmap + close + disconnect, %u regions", total);
                        if (bench_cold_adjacent(b, "cold-big-table", desc, &x, "floor-cold-big", &res, &fres,
                                                &floor_ok) == 0) {
                                bench_table_extra(&res, dnofile, limit_from, total, &f);
                                if (floor_ok)
                                        bench_record(b, &fres);
                                bench_record(b, &res);
                        }
                } else if (held < x.counter) {
                        /* the split: names the daemon holds, then names parked, in the same big table */
                        struct bench_conn hx = x;

                        hx.first = 0;
                        hx.nnames = held;
                        snprintf(desc, sizeof(desc), "parked-big-table's OPEN of one of the %u names held by the "
                                 "daemon", held);
                        if (held && bench_loop(b, "parked-big-held", desc, bench_open_random_op, &hx, &res) == 0) {
                                bench_table_extra(&res, dnofile, limit_from, total, &f);
                                bench_record(b, &res);
                        }
                        hx.first = held;
                        hx.nnames = x.counter - held;
                        snprintf(desc, sizeof(desc), "parked-big-table's OPEN of one of the %u parked names",
                                 x.counter - held);
                        if (bench_loop(b, "parked-big-parked", desc, bench_open_random_op, &hx, &res) == 0) {
                                bench_table_extra(&res, dnofile, limit_from, total, &f);
                                bench_record(b, &res);
                        }
                }
        }
out:
        bench_pin(b, d.pid, 0); /* on every path: a failed step must not leave the later groups on one CPU */
        iomem_disconnect(x.c);
        spawn_stop(&d);
}

struct bench_idle {
        const char *socket;
        struct iomem_client **clients;
        unsigned n;
};

static int bench_idle_connect_op(void *userdata)
{
        struct bench_idle *idle = userdata;
        int r;

        r = iomem_connect(idle->socket, &idle->clients[idle->n]);
        if (r == 0)
                idle->n++;
        return r;
}

static void bench_idle_connections(struct bench *b, unsigned count)
{
        struct spawn d;
        struct spawn_rss rss0, rss1;
        struct bench_idle idle = { 0 };
        struct runner_opts o = { .seconds = 1e6, .max_ops = count };
        struct stats_result res;
        struct stats s = { 0 };
        double seconds;
        char desc[112];
        int r;

        r = spawn_iomemd(b->iomemd, b->backend, b->tmpdir, b->extra, &d);
        if (r < 0) {
                bench_fail(b, "spawn iomemd", r);
                return;
        }
        idle.socket = d.socket;
        idle.clients = calloc(count, sizeof(*idle.clients));
        r = idle.clients ? 0 : -ENOMEM;
        if (r == 0)
                r = spawn_rss(d.pid, &rss0);
        if (r == 0)
                r = stats_init(&s, BENCH_SAMPLE_CAP);
        if (r == 0)
                r = runner_loop(bench_idle_connect_op, &idle, &o, &s, &seconds);
        if (r == 0)
                r = spawn_rss(d.pid, &rss1);
        if (r == 0) {
                snprintf(desc, sizeof(desc), "connect + HELLO, %u connections kept open idle; daemon RSS",
                         idle.n);
                stats_finish(&s, seconds, "idle-connections", desc, &res);
                stats_extra(&res, "connections", "%u", idle.n);
                stats_extra(&res, "rss_before_kb", "%llu", (unsigned long long)rss0.rss_kb);
                stats_extra(&res, "rss_after_kb", "%llu", (unsigned long long)rss1.rss_kb);
                stats_extra(&res, "rss_per_connection_bytes", "%.1f", bench_rss_delta(&rss0, &rss1) / idle.n);
                bench_record(b, &res);
        } else {
                bench_fail(b, "idle-connections", r);
        }
        stats_deinit(&s);
        for (unsigned i = 0; i < idle.n; i++)
                iomem_disconnect(idle.clients[i]);
        free(idle.clients);
        spawn_stop(&d);
}

/* ---- targets ------------------------------------------------------------------------------------- */

/* Print and record one target line with @verdict ("INFO": informational, no verdict). */
static void bench_target_line(struct bench *b, FILE *table, const char *verdict, const char *target,
                              const char *what, double value, double limit, int higher)
{
        char line[640];

        fprintf(table, "%-4s %-28s %12.3f %s %-10g %s\n", verdict, target, value, higher ? ">=" : "<=", limit,
                what);
        snprintf(line, sizeof(line),
                 "{\"target\":\"%s\",\"desc\":\"%s\",\"value\":%.4f,\"limit\":%g,\"op\":\"%s\",\"verdict\":\"%s\"}\n",
                 target, what, value, limit, higher ? ">=" : "<=", verdict);
        bench_json_line(b, line);
}

/* Print and record one target. @higher: the value must be >= @limit, else <= @limit. */
static void bench_target(struct bench *b, FILE *table, const char *target, const char *what, double value,
                         double limit, int higher)
{
        const char *verdict = value < 0 ? "N/A" : (higher ? value >= limit : value <= limit) ? "PASS" : "MISS";

        bench_target_line(b, table, verdict, target, what, value, limit, higher);
}

static double bench_ratio(const struct stats_result *num, double numv, const struct stats_result *den,
                          double denv)
{
        return num && den && denv > 0 ? numv / denv : -1;
}

static double bench_extra_value(const struct stats_result *res, const char *key)
{
        char pat[64];
        const char *p;

        if (!res)
                return -1;
        snprintf(pat, sizeof(pat), "\"%s\":", key);
        p = strstr(res->extra, pat);
        return p ? strtod(p + strlen(pat), NULL) : -1;
}

static void bench_targets(struct bench *b)
{
        const struct stats_result *floor = bench_find(b, "floor-socketpair"), *om = bench_find(b, "open-map"),
                                  *c64 = bench_find(b, "clients-64"), *small = bench_find(b, "open-small-table"),
                                  *big = bench_find(b, "open-big-table"), *reg = bench_find(b, "regions-rss"),
                                  *idle = bench_find(b, "idle-connections"),
                                  *pcopy = bench_find(b, "dp-pipe-copy"), *hand = bench_find(b, "dp-handover"),
                                  *pread = bench_find(b, "dp-pipe-read"), *rd = bench_find(b, "dp-read"),
                                  *wake = bench_find(b, "floor-pipe-wake"), *pubn = bench_find(b, "publish-notified"),
                                  *cfloor = bench_find(b, "floor-cold"), *csmall = bench_find(b, "cold-small-table"),
                                  *cbig = bench_find(b, "cold-big-table"),
                                  *afsmall = bench_find(b, "floor-cold-small"), *afbig = bench_find(b, "floor-cold-big"),
                                  *psmall = bench_find(b, "parked-small-table"),
                                  *pbig = bench_find(b, "parked-big-table"), *pheld = bench_find(b, "parked-big-held"),
                                  *ppark = bench_find(b, "parked-big-parked");
        const struct stats_result *best = NULL;
        char what[256];
        FILE *t = stdout;

        for (int i = 0; i < b->nresults; i++)
                if (strncmp(b->results[i].scenario, "dp-read", 7) == 0 &&
                    (!best || b->results[i].p50_us < best->p50_us))
                        best = &b->results[i];

        fprintf(t, "\nTargets (ratios within this run; informational):\n");
        bench_target(b, t, "open-map/floor ops", "scenario 2 ops/s over the socketpair floor's",
                     bench_ratio(om, om ? om->ops_per_s : 0, floor, floor ? floor->ops_per_s : 0), 0.8, 1);
        /* issue 15's cold target: against the cold floor measured interleaved with each cold row */
        snprintf(what, sizeof(what), "cold connect + OPEN + map, 100 regions, over floor-cold-small's (the cold floor "
                 "measured in %d rounds alternating with it)", BENCH_COLD_ROUNDS);
        bench_target(b, t, "cold small/adj-floor ops", what,
                     bench_ratio(csmall, csmall ? csmall->ops_per_s : 0, afsmall, afsmall ? afsmall->ops_per_s : 0),
                     0.8, 1);
        bench_target(b, t, "cold big/adj-floor ops", "the same with the big table, over floor-cold-big's",
                     bench_ratio(cbig, cbig ? cbig->ops_per_s : 0, afbig, afbig ? afbig->ops_per_s : 0), 0.8, 1);
        /* the verdict before: the floor measured once at the start of the run, shown for comparison */
        bench_target_line(b, t, "INFO", "cold small/floor ops",
                          "the same over floor-cold's, measured at the start of the run (the earlier verdict)",
                          bench_ratio(csmall, csmall ? csmall->ops_per_s : 0, cfloor, cfloor ? cfloor->ops_per_s : 0),
                          0.8, 1);
        bench_target_line(b, t, "INFO", "cold big/floor ops", "the big table's over floor-cold's, start of the run",
                          bench_ratio(cbig, cbig ? cbig->ops_per_s : 0, cfloor, cfloor ? cfloor->ops_per_s : 0),
                          0.8, 1);
        bench_target(b, t, "clients-64 p99/p50", "latency spread at 64 clients",
                     bench_ratio(c64, c64 ? c64->p99_us : 0, c64, c64 ? c64->p50_us : 0), 3.0, 0);
        snprintf(what, sizeof(what), "OPEN p50 with the big table over the small one; %s",
                 b->table_note[0] ? b->table_note : "not run");
        bench_target(b, t, "open big/small table p50", what,
                     bench_ratio(big, big ? big->p50_us : 0, small, small ? small->p50_us : 0), 1.2, 0);
        if (psmall || pbig) {
                /* the parked configuration: no verdict, but its cost in plain view */
                snprintf(what, sizeof(what), "the same with iomemd --max-region-fds %u (what a 20,000 fd limit "
                         "gives): %s", b->plan.parked_budget, pbig ? "most of the big table parked" : "not run");
                bench_target_line(b, t, "INFO", "parked big/small p50", what,
                                  bench_ratio(pbig, pbig ? pbig->p50_us : 0, psmall, psmall ? psmall->p50_us : 0),
                                  1.2, 0);
                bench_target_line(b, t, "INFO", "parked: held-name/small p50",
                                  "OPEN of names the daemon holds in the big table, over the small table",
                                  bench_ratio(pheld, pheld ? pheld->p50_us : 0, psmall, psmall ? psmall->p50_us : 0),
                                  1.2, 0);
                bench_target_line(b, t, "INFO", "parked: parked/held-name p50",
                                  "OPEN of parked names over OPEN of held names, same big table",
                                  bench_ratio(ppark, ppark ? ppark->p50_us : 0, pheld, pheld ? pheld->p50_us : 0),
                                  1.2, 0);
        }
        bench_target(b, t, "RSS bytes per region", "daemon RSS per named region (region memory excluded)",
                     bench_extra_value(reg, "rss_per_region_bytes"), 1024, 0);
        bench_target(b, t, "RSS bytes per idle conn", "daemon RSS per idle connection",
                     bench_extra_value(idle, "rss_per_connection_bytes"), 16384, 0);
        bench_target(b, t, "pipe/handover time", "8a: pipe copy p50 time over handover p50 time",
                     bench_ratio(pcopy, pcopy ? pcopy->p50_us : 0, hand, hand ? hand->p50_us : 0), 100, 1);
        bench_target(b, t, "pipe/read-all time", "8b: pipe + read p50 time over OPEN + map + read (default map)",
                     bench_ratio(pread, pread ? pread->p50_us : 0, rd, rd ? rd->p50_us : 0), 5, 1);
        bench_target(b, t, "publish-notified/wake p50", "PUBLISH-to-event p50 over the pipe wake-up floor's",
                     bench_ratio(pubn, pubn ? pubn->p50_us : 0, wake, wake ? wake->p50_us : 0), 10, 0);
        bench_target(b, t, "publish-notified/wake p99", "PUBLISH-to-event p99 over the pipe wake-up floor's",
                     bench_ratio(pubn, pubn ? pubn->p99_us : 0, wake, wake ? wake->p99_us : 0), 10, 0);
        if (best)
                fprintf(t, "     (best 8b receiver variant: %s)\n", best->scenario);
        bench_target(b, t, "pipe/read-all time, best", "8b: as above with the best receiver-side mapping choice",
                     bench_ratio(pread, pread ? pread->p50_us : 0, best, best ? best->p50_us : 0), 5, 1);
}

static void bench_meta(struct bench *b, long nofile)
{
        struct utsname u;
        char line[1024], args[512] = "";
        size_t n = 0;

        uname(&u);
        /* the extra daemon arguments, space-separated; quotes and backslashes dropped to keep the JSON valid */
        for (int i = 0; i < b->nextra; i++)
                for (const char *p = b->extra[i]; n + 2 < sizeof(args); p++) {
                        if (!*p) {
                                args[n++] = i + 1 < b->nextra ? ' ' : '\0';
                                break;
                        }
                        if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
                                args[n++] = *p;
                }
        args[n < sizeof(args) ? n : sizeof(args) - 1] = '\0';
        snprintf(line, sizeof(line),
                 "{\"meta\":\"iomem-bench\",\"mode\":\"%s\",\"kernel\":\"%s\",\"machine\":\"%s\",\"cpus\":%ld,"
                 "\"time\":%lld,\"nofile\":%ld,\"backend\":\"%s\",\"pin\":%d,\"pin_keepers\":%d,\"regions\":%u,"
                 "\"iomemd_args\":\"%s\",\"unit_nofile\":%ld}\n",
                 b->plan.mode, u.release, u.machine, sysconf(_SC_NPROCESSORS_ONLN), (long long)time(NULL),
                 nofile, b->backend, b->pin, b->pin_keepers, b->plan.regions, args, b->unit_nofile);
        bench_json_line(b, line);
}

static void bench_usage(FILE *f)
{
        fprintf(f,
                "Usage: iomem-bench [--quick] [--iomemd PATH] [--json FILE] [--only GROUPS] [--no-pin]\n"
                "                   [--backend NAME] [--tmpdir DIR] [--regions N] [--unit-nofile N]\n"
                "                   [--iomemd-arg ARG]...\n"
                "  --quick        smoke run: small counts, a few seconds\n"
                "  --iomemd PATH  the daemon to start (default: %s)\n"
                "  --json FILE    also write the JSON lines to FILE\n"
                "  --only GROUPS  run only these (comma-separated): floor, ops, clients,\n"
                "                 dataplane, regions, idle, events; regions is table (scenario 6\n"
                "                 as deployed: iomemd with the unit's LimitNOFILE=%ld where this\n"
                "                 process may raise it, else its own limit, said in the output)\n"
                "                 and parked (informational: most of the big table parked in\n"
                "                 fd keepers)\n"
                "  --no-pin       do not put client and server of the one-to-one scenarios\n"
                "                 (floor, ops, table size) on one CPU\n"
                "  --pin-keepers  put iomemd's fd keeper processes on that CPU too (default:\n"
                "                 they run where the scheduler puts them)\n"
                "  --backend NAME iomemd's backend: memfd (default), shm, file\n"
                "  --tmpdir DIR   iomemd's directory for the file backend\n"
                "  --regions N    scenario 6/7 big table size (default: 100000; --quick: 2000)\n"
                "  --unit-nofile N\n"
                "                 the daemon's fd limit in scenario 6 as deployed (default: %ld,\n"
                "                 systemd/iomemd.service.in's LimitNOFILE=)\n"
                "  --iomemd-arg ARG\n"
                "                 one more argument for every iomemd started, after the benchmark's\n"
                "                 own (repeat for each word, e.g. --iomemd-arg=--max-region-fds\n"
                "                 --iomemd-arg=1); at most %d\n",
                IOMEM_BENCH_IOMEMD, BENCH_UNIT_NOFILE, BENCH_UNIT_NOFILE, SPAWN_MAX_EXTRA);
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "quick", no_argument, NULL, 'q' },
                { "iomemd", required_argument, NULL, 'd' },
                { "json", required_argument, NULL, 'j' },
                { "only", required_argument, NULL, 'o' },
                { "no-pin", no_argument, NULL, 'P' },
                { "backend", required_argument, NULL, 'b' },
                { "tmpdir", required_argument, NULL, 't' },
                { "regions", required_argument, NULL, 'r' },
                { "pin-keepers", no_argument, NULL, 'K' },
                { "unit-nofile", required_argument, NULL, 'U' },
                { "iomemd-arg", required_argument, NULL, 'a' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        struct bench *b;
        struct runner_opts fo = { 0 };
        unsigned regions = 0;
        struct stats_result res;
        long nofile;
        unsigned conns;
        int c, r;

        b = calloc(1, sizeof(*b));
        if (!b)
                return 1;
        b->plan = bench_full;
        b->iomemd = IOMEM_BENCH_IOMEMD;
        b->pin = 1;
        b->backend = "memfd";
        b->unit_nofile = BENCH_UNIT_NOFILE;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case 'q':
                        b->plan = bench_quick;
                        break;
                case 'd':
                        b->iomemd = optarg;
                        break;
                case 'j':
                        if (b->json)
                                fclose(b->json);
                        b->json = fopen(optarg, "we");
                        if (!b->json) {
                                fprintf(stderr, "iomem-bench: %s: %m\n", optarg);
                                return 1;
                        }
                        break;
                case 'o':
                        b->only = optarg;
                        break;
                case 'P':
                        b->pin = 0;
                        break;
                case 'K':
                        b->pin_keepers = 1;
                        break;
                case 'b':
                        b->backend = optarg;
                        break;
                case 't':
                        b->tmpdir = optarg;
                        break;
                case 'r': {
                        char *end;
                        unsigned long v;

                        errno = 0;
                        v = strtoul(optarg, &end, 10);
                        if (errno || *end || v < 200 || v > 10000000) {
                                fprintf(stderr, "iomem-bench: --regions: expected 200..10000000\n");
                                return 2;
                        }
                        regions = (unsigned)v;
                        break;
                }
                case 'U': {
                        char *end;
                        long v;

                        errno = 0;
                        v = strtol(optarg, &end, 10);
                        if (errno || *end || v < 1024 || v > (1L << 30)) {
                                fprintf(stderr, "iomem-bench: --unit-nofile: expected 1024..2^30\n");
                                return 2;
                        }
                        b->unit_nofile = v;
                        break;
                }
                case 'a':
                        if (b->nextra >= SPAWN_MAX_EXTRA) {
                                fprintf(stderr, "iomem-bench: at most %d --iomemd-arg\n", SPAWN_MAX_EXTRA);
                                return 2;
                        }
                        b->extra[b->nextra++] = optarg;
                        break;
                case 'h':
                        bench_usage(stdout);
                        return 0;
                default:
                        bench_usage(stderr);
                        return 2;
                }
        }
        if (regions)
                b->plan.regions = regions;
        signal(SIGPIPE, SIG_IGN);
        nofile = spawn_raise_nofile(1L << 20);
        b->nofile = nofile;
        /*
         * Each connection is one fd in the daemon; keep headroom. Regions past the
         * daemon's fd budget live in its keeper processes, so they are not capped.
         */
        conns = b->plan.idle_conns;
        if (nofile > 0 && (long)conns + 1000 > nofile)
                conns = (unsigned)(nofile - 1000);
        bench_meta(b, nofile);

        fo = (struct runner_opts){ .seconds = b->plan.seconds, .warmup = b->plan.warmup };
        if (bench_wants(b, "floor")) {
                bench_pin(b, 0, 1); /* the floor's server is forked: it inherits the CPU */
                r = floor_socketpair(&fo, BENCH_MAP_SIZE, BENCH_SAMPLE_CAP, &res);
                if (r == 0)
                        bench_record(b, &res);
                else
                        bench_fail(b, "floor-socketpair", r);
                for (int e = 0; e < 2; e++) {
                        r = floor_cold(&fo, BENCH_MAP_SIZE, BENCH_SAMPLE_CAP, e == 1, &res);
                        if (r == 0)
                                bench_record(b, &res);
                        else
                                bench_fail(b, e ? "floor-cold-epoll" : "floor-cold", r);
                }
                r = floor_shm(&fo, BENCH_MAP_SIZE, BENCH_SAMPLE_CAP, &res);
                if (r == 0)
                        bench_record(b, &res);
                else
                        bench_fail(b, "floor-shm-open", r);
                bench_pin(b, 0, 0);
        }
        if (bench_wants(b, "ops") || bench_wants(b, "clients") || bench_wants(b, "dataplane") ||
            bench_wants(b, "events"))
                bench_daemon_ops(b);
        if (bench_wants(b, "regions") || bench_wants(b, "table"))
                bench_regions(b, 0);
        if (bench_wants(b, "regions") || bench_wants(b, "parked"))
                bench_regions(b, 1);
        if (bench_wants(b, "idle"))
                bench_idle_connections(b, conns);

        printf("\n");
        stats_print_table_header(stdout);
        for (int i = 0; i < b->nresults; i++)
                stats_print_table_row(stdout, &b->results[i]);
        bench_targets(b);
        if (b->json)
                fclose(b->json);
        r = b->failures ? 1 : 0;
        free(b);
        return r;
}
