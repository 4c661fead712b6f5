/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* stats: latency samples of one scenario, their percentiles, and its JSON line and table row. */
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <stddef.h>

/* A scenario's latency samples, in nanoseconds; past @cap only @ops still counts. */
struct stats {
        uint64_t *ns;
        size_t n;
        size_t cap;
        uint64_t ops;
};

/* One scenario's outcome: what is printed and what the targets compare. */
struct stats_result {
        char scenario[48];
        char desc[112];
        int clients;          /* concurrent clients, 0 where it does not apply */
        uint64_t ops;
        double seconds;
        double ops_per_s;
        double p50_us;
        double p99_us;
        double p999_us;
        char extra[384];      /* more JSON members, each as ",\"key\":value" */
};

/* Return: CLOCK_MONOTONIC now, in nanoseconds. */
uint64_t stats_now_ns(void);

/*
 * stats_init() - room for @cap samples.
 * Return: 0; -ENOMEM.
 */
int stats_init(struct stats *s, size_t cap);

/* stats_deinit() - free the samples. NULL-safe. Return: nothing. */
void stats_deinit(struct stats *s);

/* stats_add() - count one op that took @ns. Return: nothing. */
void stats_add(struct stats *s, uint64_t ns);

/*
 * stats_finish() - sort the samples and fill @res from them (@seconds of wall
 * time for s->ops operations). @scenario and @desc are copied.
 * Return: nothing.
 */
void stats_finish(struct stats *s, double seconds, const char *scenario, const char *desc,
                  struct stats_result *res);

/*
 * stats_percentile() - the @q quantile (0..1) of sorted samples, nearest rank.
 * Return: the sample in nanoseconds, 0 if there are none.
 */
uint64_t stats_percentile(const uint64_t *sorted, size_t n, double q);

/*
 * stats_extra() - append ",\"key\":value" to res->extra; @fmt formats the value
 * (already JSON: a number, or a quoted string).
 * Return: 0; -ENOBUFS if it does not fit.
 */
int stats_extra(struct stats_result *res, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* stats_print_json() - one JSON object on one line. Return: nothing. */
void stats_print_json(FILE *f, const struct stats_result *res);

/* stats_print_table_header() / stats_print_table_row() - the human table. Return: nothing. */
void stats_print_table_header(FILE *f);
void stats_print_table_row(FILE *f, const struct stats_result *res);
