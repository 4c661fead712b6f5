/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* runner: run one operation in a timed loop, in this process or in N forked clients started together. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "stats.h"

struct runner_opts {
        double seconds;   /* measured window */
        uint64_t max_ops; /* stop earlier after this many (0 = no limit) */
        uint64_t warmup;  /* untimed ops first */
};

/* One timed operation. Return: 0, or negative errno (stops the run). */
typedef int (*runner_op_fn)(void *ctx);

/*
 * runner_loop() - warm up, then run @op until the window or max_ops is over,
 * timing each call into @s (initialized by the caller).
 * Return: 0 with *secondsp = the measured wall time; the op's negative errno.
 */
int runner_loop(runner_op_fn op, void *ctx, const struct runner_opts *o, struct stats *s, double *secondsp);

/* What each forked client does: setup before the start signal, then op in a loop, then teardown. */
struct runner_client {
        int (*setup)(int index, void *arg, void **ctxp); /* Return: 0 or negative errno */
        runner_op_fn op;
        void (*teardown)(void *ctx);
        void *arg;
};

/*
 * runner_clients() - fork @n clients; each runs setup, then all start at once
 * and run op for o->seconds (ops that end past the window are not counted,
 * except each client's first op: every client counts at least one).
 * Samples of all clients are merged into @s (initialized by the caller,
 * at most s->cap / @n samples per client).
 * Return: 0 with *secondsp = the window, stretched to the end of the last
 * counted op when a first op ended past it; the first client's negative errno;
 * -ECHILD if a client died.
 */
int runner_clients(int n, const struct runner_client *rc, const struct runner_opts *o, struct stats *s,
                   double *secondsp);
