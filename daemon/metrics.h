/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* metrics: the daemon's counters since start (requests, errors, refusals), read by the METRICS request. */
#pragma once

/*
 * Counting is plain integer increments by the code that sees the event
 * (conn.c's dispatch, error replies and accept); nothing here allocates, so a
 * zeroed struct is ready and needs no teardown. The gauges (regions, bytes,
 * connections, keepers, fd store) are not kept here: the METRICS handler
 * (conn-metrics.c) reads them from their owners when asked.
 */

#include <stdint.h>

#define METRICS_REQUEST_SLOTS 64 /* rows of conn_requests[]; slot METRICS_REQUEST_SLOTS is "no row" */
#define METRICS_ERRNO_MAX 160    /* errors above this are counted under 0 */
#define METRICS_UIDS_MAX 256     /* distinct uids whose quota refusals are counted one by one */

struct metrics_uid_count {
        uint32_t uid;
        uint64_t count;
};

struct metrics {
        uint64_t requests[METRICS_REQUEST_SLOTS + 1];       /* by row of the request table */
        uint64_t request_errors[METRICS_REQUEST_SLOTS + 1]; /* error replies, by row */
        uint64_t errors[METRICS_ERRNO_MAX + 1];             /* error replies, by errno; [0] = above the range */
        uint64_t connections_accepted;
        uint64_t connections_refused;
        uint64_t quota_refusals;                            /* every -EDQUOT, also beyond METRICS_UIDS_MAX uids */
        struct metrics_uid_count refused[METRICS_UIDS_MAX]; /* sorted by uid */
        uint32_t n_refused;
};

/*
 * metrics_count_error() - an error reply with @error (negative errno) to a
 * request in table row @slot (METRICS_REQUEST_SLOTS: no row) from @uid.
 * -EDQUOT is also a quota refusal of @uid. Return: nothing.
 */
void metrics_count_error(struct metrics *m, unsigned slot, int error, uint32_t uid);

/* metrics_count_refusal() - @uid was refused with -EDQUOT. Return: nothing. */
void metrics_count_refusal(struct metrics *m, uint32_t uid);

/* Return: the quota refusals counted for @uid (0 if it has none or is beyond METRICS_UIDS_MAX). */
uint64_t metrics_refusals(const struct metrics *m, uint32_t uid);
