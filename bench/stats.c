/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* stats: latency samples of one scenario, their percentiles, and its JSON line and table row. */

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stats.h"

uint64_t stats_now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int stats_init(struct stats *s, size_t cap)
{
        *s = (struct stats){ 0 };
        s->ns = malloc((cap ? cap : 1) * sizeof(*s->ns));
        if (!s->ns)
                return -ENOMEM;
        s->cap = cap;
        return 0;
}

void stats_deinit(struct stats *s)
{
        if (!s)
                return;
        free(s->ns);
        *s = (struct stats){ 0 };
}

void stats_add(struct stats *s, uint64_t ns)
{
        if (s->n < s->cap)
                s->ns[s->n++] = ns;
        s->ops++;
}

static int stats_cmp(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

        return x < y ? -1 : x > y;
}

uint64_t stats_percentile(const uint64_t *sorted, size_t n, double q)
{
        size_t rank;

        if (n == 0)
                return 0;
        rank = (size_t)ceil(q * (double)n);
        if (rank < 1)
                rank = 1;
        if (rank > n)
                rank = n;
        return sorted[rank - 1];
}

void stats_finish(struct stats *s, double seconds, const char *scenario, const char *desc,
                  struct stats_result *res)
{
        *res = (struct stats_result){ 0 };
        snprintf(res->scenario, sizeof(res->scenario), "%s", scenario);
        snprintf(res->desc, sizeof(res->desc), "%s", desc);
        qsort(s->ns, s->n, sizeof(*s->ns), stats_cmp);
        res->ops = s->ops;
        res->seconds = seconds;
        res->ops_per_s = seconds > 0 ? (double)s->ops / seconds : 0;
        res->p50_us = (double)stats_percentile(s->ns, s->n, 0.50) / 1e3;
        res->p99_us = (double)stats_percentile(s->ns, s->n, 0.99) / 1e3;
        res->p999_us = (double)stats_percentile(s->ns, s->n, 0.999) / 1e3;
}

int stats_extra(struct stats_result *res, const char *key, const char *fmt, ...)
{
        size_t used = strlen(res->extra), left = sizeof(res->extra) - used;
        va_list ap;
        int n, m;

        n = snprintf(res->extra + used, left, ",\"%s\":", key);
        if (n < 0 || (size_t)n >= left)
                goto full;
        va_start(ap, fmt);
        m = vsnprintf(res->extra + used + n, left - (size_t)n, fmt, ap);
        va_end(ap);
        if (m < 0 || (size_t)m >= left - (size_t)n)
                goto full;
        return 0;
full:
        res->extra[used] = '\0';
        return -ENOBUFS;
}

void stats_print_json(FILE *f, const struct stats_result *res)
{
        fprintf(f,
                "{\"scenario\":\"%s\",\"desc\":\"%s\",\"clients\":%d,\"ops\":%llu,\"seconds\":%.6f,"
                "\"ops_per_s\":%.1f,\"p50_us\":%.3f,\"p99_us\":%.3f,\"p999_us\":%.3f%s}\n",
                res->scenario, res->desc, res->clients, (unsigned long long)res->ops, res->seconds,
                res->ops_per_s, res->p50_us, res->p99_us, res->p999_us, res->extra);
}

void stats_print_table_header(FILE *f)
{
        fprintf(f, "%-24s %7s %10s %12s %10s %10s %10s\n", "scenario", "clients", "ops", "ops/s", "p50 us",
                "p99 us", "p99.9 us");
}

void stats_print_table_row(FILE *f, const struct stats_result *res)
{
        fprintf(f, "%-24s %7d %10llu %12.1f %10.2f %10.2f %10.2f\n", res->scenario, res->clients,
                (unsigned long long)res->ops, res->ops_per_s, res->p50_us, res->p99_us, res->p999_us);
}
