/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ctl-metrics: `iomemctl metrics`: the daemon's metrics as OpenMetrics, Prometheus text or JSON. */
#pragma once

#include <stdio.h>

#include "iomem.h"

enum ctl_metrics_format {
        CTL_METRICS_OPENMETRICS, /* application/openmetrics-text 1.0.0: counter families without _total, # EOF */
        CTL_METRICS_PROMETHEUS,  /* text format 0.0.4 (node_exporter's textfile collector): no # EOF */
        CTL_METRICS_JSON,        /* {"truncated":BOOL,"samples":[{"name","type","labels","value"}...]} */
};

/* Return: 0 and *formatp for "openmetrics" or "prometheus"; -EINVAL. */
int ctl_metrics_parse_format(const char *text, enum ctl_metrics_format *formatp);

/*
 * ctl_metrics_print() - fetch the metrics (one METRICS request) and write
 * them to @out: every family's samples together, in the daemon's order,
 * HELP and TYPE before them; samples of metric ids this build does not know
 * are left out. A truncated reply is said on stderr.
 * Return: 0; negative errno from iomem_metrics().
 */
int ctl_metrics_print(struct iomem_client *client, enum ctl_metrics_format format, FILE *out);
