/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dataplane: scenario 8, moving bytes from one process to another through a region vs through a pipe. */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dataplane.h"
#include "iomem.h"
#include "spawn.h"

#define DP_CHUNK (1u << 20) /* pattern size, pipe write and read size */
#define DP_NAME "bench-dataplane"

enum dp_mode {
        DP_HANDOVER,          /* OPEN + map: the receiver has the region mapped */
        DP_PIPE_COPY,         /* the bytes through a pipe, read(2) into a buffer */
        DP_READ,              /* OPEN + iomem_region_map + read every byte */
        DP_READ_POPULATE,     /* ... mmap with MAP_POPULATE */
        DP_READ_POPULATE_READ, /* ... madvise(MADV_POPULATE_READ) before reading */
        DP_READ_HUGEPAGE,     /* ... madvise(MADV_HUGEPAGE) before reading */
        DP_READ_PREMAPPED,    /* the receiver kept its mapping from before: read every byte */
        DP_PIPE_READ,         /* through a pipe, and read every byte of the buffer */
        DP_HANDOVER_NOTIFY,   /* the receiver kept its mapping: the notification alone */
        DP_PREMAP,            /* untimed: make the kept mapping */
        DP_QUIT,
};

static const struct {
        const char *scenario;
        const char *desc;
} dp_names[DATAPLANE_MODES] = {
        [DP_HANDOVER] = { "dp-handover", "8a: notify + OPEN + map of the region (receiver has it mapped)" },
        [DP_PIPE_COPY] = { "dp-pipe-copy", "8a baseline: the same bytes through a pipe into a 1 MiB buffer" },
        [DP_READ] = { "dp-read", "8b: notify + OPEN + iomem_region_map + read every byte" },
        [DP_READ_POPULATE] = { "dp-read-populate", "8b: as dp-read, mmap with MAP_POPULATE" },
        [DP_READ_POPULATE_READ] = { "dp-read-populate-read", "8b: as dp-read, madvise(MADV_POPULATE_READ)" },
        [DP_READ_HUGEPAGE] = { "dp-read-hugepage", "8b: as dp-read, madvise(MADV_HUGEPAGE)" },
        [DP_READ_PREMAPPED] = { "dp-read-premapped", "8b: receiver kept an earlier mapping, read every byte" },
        [DP_PIPE_READ] = { "dp-pipe-read", "8b baseline: through a pipe, read(2) + read every byte" },
        [DP_HANDOVER_NOTIFY] = { "dp-handover-notify", "8a: receiver kept an earlier mapping, notify only" },
};

struct dp_cmd {
        int mode;
        uint64_t bytes;
};

struct dp_reply {
        int error;
        uint64_t t1_ns;
        uint64_t sum;
        uint64_t faults; /* the receiver's page faults (minor + major) during the command: counted, not timed */
};

static uint64_t dp_faults(void)
{
        struct rusage ru;

        if (getrusage(RUSAGE_SELF, &ru) < 0)
                return 0;
        return (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

/* Read every byte: sum the 64-bit words. */
static uint64_t dp_sum(const void *p, size_t len)
{
        const uint64_t *w = p;
        uint64_t s = 0;

        for (size_t i = 0; i < len / sizeof(uint64_t); i++)
                s += w[i];
        return s;
}

static int dp_io_full(int fd, void *buf, size_t len, int writing)
{
        size_t done = 0;

        while (done < len) {
                ssize_t k = writing ? write(fd, (char *)buf + done, len - done)
                                    : read(fd, (char *)buf + done, len - done);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EPIPE;
                done += (size_t)k;
        }
        return 0;
}

/* The receiver's side of one OPEN-based mode. Return: 0 with *sump; negative errno. */
static int dp_receive_region(struct iomem_client *c, int mode, uint64_t bytes, uint64_t *sump, uint64_t *t1p)
{
        struct iomem_region *region = NULL;
        void *p = NULL;
        int r;

        r = iomem_open(c, DP_NAME, IOMEM_OPEN_RDONLY, 0, &region);
        if (r < 0)
                return r;
        if (mode == DP_READ_POPULATE) {
                p = mmap(NULL, bytes, PROT_READ, MAP_SHARED | MAP_POPULATE, iomem_region_fd(region), 0);
                r = p == MAP_FAILED ? -errno : 0;
        } else {
                r = iomem_region_map(region, 0, bytes, PROT_READ, &p);
        }
        if (r < 0)
                goto out;
        if (mode == DP_READ_POPULATE_READ && madvise(p, bytes, MADV_POPULATE_READ) < 0)
                r = -errno;
        if (mode == DP_READ_HUGEPAGE)
                (void)madvise(p, bytes, MADV_HUGEPAGE); /* advisory; shmem THP may be off */
        if (r == 0 && mode != DP_HANDOVER)
                *sump = dp_sum(p, bytes);
        *t1p = stats_now_ns();
        iomem_unmap(p, bytes);
out:
        iomem_region_free(region);
        return r;
}

/* The receiver process: serve commands until DP_QUIT. Return: exit status. */
static int dp_receiver(const char *socket, int ctl, int pipe_rd)
{
        struct iomem_client *c = NULL;
        struct iomem_region *kept = NULL;
        void *kept_map = NULL;
        uint64_t kept_len = 0;
        char *buf;
        int r;

        buf = malloc(DP_CHUNK);
        if (!buf)
                return 1;
        r = iomem_connect(socket, &c);
        for (;;) {
                struct dp_cmd cmd;
                struct dp_reply rep = { 0 };
                uint64_t faults0;

                if (dp_io_full(ctl, &cmd, sizeof(cmd), 0) < 0 || cmd.mode == DP_QUIT)
                        break;
                faults0 = dp_faults();
                if (cmd.mode == DP_PIPE_COPY || cmd.mode == DP_PIPE_READ) {
                        for (uint64_t left = cmd.bytes; left > 0 && rep.error == 0;) {
                                size_t n = left < DP_CHUNK ? (size_t)left : DP_CHUNK;

                                rep.error = dp_io_full(pipe_rd, buf, n, 0);
                                if (cmd.mode == DP_PIPE_READ)
                                        rep.sum += dp_sum(buf, n);
                                left -= n;
                        }
                        rep.t1_ns = stats_now_ns();
                } else if (r < 0) {
                        rep.error = r; /* no connection to the daemon */
                } else if (cmd.mode == DP_PREMAP) {
                        if (kept_map)
                                iomem_unmap(kept_map, kept_len);
                        kept = iomem_region_free(kept);
                        kept_map = NULL;
                        rep.error = iomem_open(c, DP_NAME, IOMEM_OPEN_RDONLY, 0, &kept);
                        if (rep.error == 0)
                                rep.error = iomem_region_map(kept, 0, cmd.bytes, PROT_READ, &kept_map);
                        if (rep.error == 0) {
                                kept_len = cmd.bytes;
                                rep.sum = dp_sum(kept_map, kept_len); /* fault it all in, untimed */
                        }
                } else if (cmd.mode == DP_READ_PREMAPPED || cmd.mode == DP_HANDOVER_NOTIFY) {
                        if (!kept_map || kept_len != cmd.bytes)
                                rep.error = -EINVAL;
                        else if (cmd.mode == DP_READ_PREMAPPED)
                                rep.sum = dp_sum(kept_map, kept_len);
                        rep.t1_ns = stats_now_ns();
                } else {
                        rep.error = dp_receive_region(c, cmd.mode, cmd.bytes, &rep.sum, &rep.t1_ns);
                }
                rep.faults = dp_faults() - faults0;
                if (dp_io_full(ctl, &rep, sizeof(rep), 1) < 0)
                        break;
        }
        if (kept_map)
                iomem_unmap(kept_map, kept_len);
        iomem_region_free(kept);
        iomem_disconnect(c);
        free(buf);
        return 0;
}

struct dp_sender {
        int ctl;
        int pipe_wr;
        const char *pattern;
        uint64_t bytes;
        uint64_t expect; /* checksum of every byte */
};

/* One timed transfer in @mode. Return: 0 with *nsp (and *faultsp); negative errno; -EBADMSG on a wrong checksum. */
static int dp_once_faults(struct dp_sender *s, int mode, uint64_t *nsp, uint64_t *faultsp)
{
        struct dp_cmd cmd = { .mode = mode, .bytes = s->bytes };
        struct dp_reply rep;
        uint64_t t0;
        int r;

        t0 = stats_now_ns();
        r = dp_io_full(s->ctl, &cmd, sizeof(cmd), 1);
        if (r < 0)
                return r;
        if (mode == DP_PIPE_COPY || mode == DP_PIPE_READ)
                for (uint64_t left = s->bytes; left > 0 && r == 0;) {
                        size_t n = left < DP_CHUNK ? (size_t)left : DP_CHUNK;

                        r = dp_io_full(s->pipe_wr, (void *)s->pattern, n, 1);
                        left -= n;
                }
        if (r == 0)
                r = dp_io_full(s->ctl, &rep, sizeof(rep), 0);
        if (r < 0)
                return r;
        if (rep.error < 0)
                return rep.error;
        if (mode != DP_HANDOVER && mode != DP_PIPE_COPY && mode != DP_HANDOVER_NOTIFY && mode != DP_PREMAP &&
            rep.sum != s->expect)
                return -EBADMSG;
        *nsp = rep.t1_ns - t0;
        if (faultsp)
                *faultsp = rep.faults;
        return 0;
}

static int dp_once(struct dp_sender *s, int mode, uint64_t *nsp)
{
        return dp_once_faults(s, mode, nsp, NULL);
}

/* Return: "hugetlb", "thp" or "normal" for a region's flags. */
static const char *dp_pages_name(uint32_t flags)
{
        return flags & IOMEM_REGION_HUGETLB ? "hugetlb" : flags & IOMEM_REGION_THP ? "thp" : "normal";
}

/*
 * The run: a region of @bytes made with @create_flags, the modes of @order
 * in turn; each row's scenario name gets @suffix. Return: as dataplane_run().
 */
static int dataplane_run_modes(const char *socket, uint64_t bytes, int reps, int pin, uint32_t create_flags,
                               const char *suffix, const int *order, size_t norder, struct stats_result *res)
{
        struct iomem_create_opts opts = { .flags = create_flags };
        uint64_t create_ns = 0;
        struct iomem_client *c = NULL;
        struct iomem_region *region = NULL;
        struct dp_sender s = { .ctl = -1, .pipe_wr = -1, .bytes = bytes };
        int sv[2] = { -1, -1 }, pfd[2] = { -1, -1 }, r, nres = 0, status;
        uint64_t *pattern = NULL;
        void *map = NULL;
        pid_t pid = -1;

        bytes -= bytes % DP_CHUNK;
        if (bytes == 0)
                return -EINVAL;
        s.bytes = bytes;
        pattern = malloc(DP_CHUNK);
        if (!pattern)
                return -ENOMEM;
        for (size_t i = 0; i < DP_CHUNK / sizeof(uint64_t); i++)
                pattern[i] = (uint64_t)i * UINT64_C(0x9E3779B97F4A7C15);
        s.pattern = (const char *)pattern;
        s.expect = dp_sum(pattern, DP_CHUNK) * (bytes / DP_CHUNK);

        r = iomem_connect(socket, &c);
        if (r == 0) {
                create_ns = stats_now_ns();
                r = iomem_create(c, DP_NAME, bytes, &opts, &region);
                create_ns = stats_now_ns() - create_ns;
        }
        if (r == 0)
                r = iomem_region_map(region, 0, bytes, PROT_READ | PROT_WRITE, &map);
        if (r < 0)
                goto out;
        for (uint64_t off = 0; off < bytes; off += DP_CHUNK)
                memcpy((char *)map + off, pattern, DP_CHUNK);

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || pipe2(pfd, O_CLOEXEC) < 0) {
                r = -errno;
                goto out;
        }
        pid = fork();
        if (pid < 0) {
                r = -errno;
                goto out;
        }
        if (pid == 0) {
                close(sv[0]);
                close(pfd[1]);
                if (pin)
                        (void)spawn_pin(0, 1);
                _exit(dp_receiver(socket, sv[1], pfd[0]));
        }
        close(sv[1]);
        close(pfd[0]);
        sv[1] = pfd[0] = -1;
        if (pin)
                (void)spawn_pin(0, 0);
        s.ctl = sv[0];
        s.pipe_wr = pfd[1];

        for (size_t k = 0; k < norder && r == 0; k++) {
                int mode = order[k];
                struct stats st;
                uint64_t ns, total = 0, faults = 0, f = 0;

                if (mode == DP_PREMAP) {
                        r = dp_once(&s, mode, &ns);
                        continue;
                }
                r = stats_init(&st, (size_t)reps);
                if (r < 0)
                        break;
                r = dp_once(&s, mode, &ns); /* warm-up */
                for (int i = 0; i < reps && r == 0; i++) {
                        r = dp_once_faults(&s, mode, &ns, &f);
                        if (r == 0) {
                                stats_add(&st, ns);
                                total += ns;
                                faults += f;
                        }
                }
                if (r == 0) {
                        struct stats_result *x = &res[nres++];
                        char name[48];
                        double p50_s;

                        snprintf(name, sizeof(name), "%s%s", dp_names[mode].scenario, suffix);
                        stats_finish(&st, (double)total / 1e9, name, dp_names[mode].desc, x);
                        p50_s = x->p50_us / 1e6;
                        stats_extra(x, "bytes", "%llu", (unsigned long long)bytes);
                        stats_extra(x, "gib_per_s", "%.3f", p50_s > 0 ? (double)bytes / (1u << 30) / p50_s : 0);
                        /* page faults are counted, not timed: they hold still on a loaded machine */
                        stats_extra(x, "receiver_faults", "%llu", (unsigned long long)(reps ? faults / (uint64_t)reps : 0));
                        if (create_flags) {
                                /* what the daemon made, and what making it cost (a reservation allocates it all) */
                                stats_extra(x, "pages", "\"%s\"", dp_pages_name(iomem_region_flags(region)));
                                stats_extra(x, "reserved", "%s",
                                            iomem_region_flags(region) & IOMEM_REGION_RESERVED ? "true" : "false");
                                stats_extra(x, "create_ms", "%.1f", (double)create_ns / 1e6);
                        }
                } else {
                        fprintf(stderr, "iomem-bench: %s: %s\n", dp_names[mode].scenario, strerror(-r));
                }
                stats_deinit(&st);
        }
out:
        if (s.ctl >= 0) {
                struct dp_cmd quit = { .mode = DP_QUIT };

                (void)dp_io_full(s.ctl, &quit, sizeof(quit), 1);
                close(s.ctl);
        }
        if (s.pipe_wr >= 0)
                close(s.pipe_wr);
        if (sv[1] >= 0)
                close(sv[1]);
        if (pfd[0] >= 0)
                close(pfd[0]);
        if (pid > 0)
                waitpid(pid, &status, 0);
        if (pin)
                (void)spawn_pin(0, -1);
        if (map)
                iomem_unmap(map, bytes);
        iomem_region_free(region);
        if (c)
                (void)iomem_delete(c, DP_NAME);
        iomem_disconnect(c);
        free(pattern);
        return r < 0 ? r : nres;
}

int dataplane_run(const char *socket, uint64_t bytes, int reps, int pin, struct stats_result *res)
{
        static const int order[] = { DP_PIPE_COPY, DP_HANDOVER, DP_PIPE_READ, DP_READ, DP_READ_POPULATE,
                                     DP_READ_POPULATE_READ, DP_READ_HUGEPAGE, DP_PREMAP, DP_READ_PREMAPPED,
                                     DP_HANDOVER_NOTIFY };

        return dataplane_run_modes(socket, bytes, reps, pin, 0, "", order, sizeof(order) / sizeof(order[0]), res);
}

int dataplane_run_pages(const char *socket, uint64_t bytes, int reps, int pin, uint32_t create_flags,
                        const char *suffix, struct stats_result *res)
{
        static const int order[] = { DP_HANDOVER, DP_READ, DP_PREMAP, DP_READ_PREMAPPED };

        return dataplane_run_modes(socket, bytes, reps, pin, create_flags, suffix, order,
                                   sizeof(order) / sizeof(order[0]), res);
}
