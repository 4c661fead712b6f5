/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* conn-metrics: the METRICS request: the counters of struct metrics and the gauges of their owners, per rule. */
#pragma once

#include "conn-internal.h"

/*
 * conn_metrics_handle() - reply with every daemon-wide metric, then the
 * per-uid ones: for root every uid that holds something or was refused,
 * for anyone else only their own uid (docs/metrics.md). A reply that runs
 * out of room is sent with PROTO_METRICS_TRUNCATED.
 * Return: 0; -ENOMEM.
 */
int conn_metrics_handle(struct conn *c, struct transport_frame *f, struct conn_result *res);
