/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ctl-metrics: `iomemctl metrics`: the daemon's metrics as OpenMetrics, Prometheus text or JSON. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-metrics.h"

struct ctl_metrics_list {
        struct iomem_metric *v;
        size_t n, cap;
};

static int ctl_metrics_collect(const struct iomem_metric *m, void *userdata)
{
        struct ctl_metrics_list *l = userdata;

        if (!m->name)
                return 0; /* a newer daemon's metric: we know neither its name nor its type */
        if (l->n == l->cap) {
                size_t cap = l->cap ? 2 * l->cap : 64;
                struct iomem_metric *v = realloc(l->v, cap * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        l->v[l->n++] = *m;
        return 0;
}

int ctl_metrics_parse_format(const char *text, enum ctl_metrics_format *formatp)
{
        if (!strcmp(text, "openmetrics"))
                *formatp = CTL_METRICS_OPENMETRICS;
        else if (!strcmp(text, "prometheus"))
                *formatp = CTL_METRICS_PROMETHEUS;
        else
                return -EINVAL;
        return 0;
}

/* Label values are request names, errno names and numbers; escaped anyway as the text formats require. */
static void ctl_metrics_label_value(const char *s, FILE *out)
{
        for (; *s; s++) {
                if (*s == '\\' || *s == '"')
                        fprintf(out, "\\%c", *s);
                else if (*s == '\n')
                        fputs("\\n", out);
                else
                        fputc(*s, out);
        }
}

static void ctl_metrics_sample_name(const struct iomem_metric *m, FILE *out)
{
        fprintf(out, "%s%s", m->name, m->type == IOMEM_METRIC_COUNTER ? "_total" : "");
}

static void ctl_metrics_text_sample(const struct iomem_metric *m, FILE *out)
{
        ctl_metrics_sample_name(m, out);
        if (m->label_name) {
                fprintf(out, "{%s=\"", m->label_name);
                ctl_metrics_label_value(m->label_value, out);
                fputs("\"}", out);
        }
        fprintf(out, " %" PRIu64 "\n", m->value);
}

/* Return: 0; -ENOMEM. */
static int ctl_metrics_text(const struct ctl_metrics_list *l, bool openmetrics, FILE *out)
{
        bool *done = calloc(l->n ? l->n : 1, sizeof(*done));

        if (!done)
                return -ENOMEM;
        for (size_t i = 0; i < l->n; i++) {
                const struct iomem_metric *m = &l->v[i];
                const char *type = m->type == IOMEM_METRIC_COUNTER ? "counter" : "gauge";
                /* OpenMetrics names the counter family without _total; the 0.0.4 text format names it as its samples */
                const char *suffix = !openmetrics && m->type == IOMEM_METRIC_COUNTER ? "_total" : "";

                if (done[i])
                        continue;
                fprintf(out, "# HELP %s%s %s\n# TYPE %s%s %s\n", m->name, suffix, m->help, m->name, suffix, type);
                /* the daemon interleaves per-uid metrics uid by uid; a family's samples must be together */
                for (size_t j = i; j < l->n; j++) {
                        if (l->v[j].id != m->id || done[j])
                                continue;
                        ctl_metrics_text_sample(&l->v[j], out);
                        done[j] = true;
                }
        }
        if (openmetrics)
                fputs("# EOF\n", out);
        free(done);
        return 0;
}

static void ctl_metrics_json(const struct ctl_metrics_list *l, bool truncated, FILE *out)
{
        fprintf(out, "{\"truncated\":%s,\"samples\":[", truncated ? "true" : "false");
        for (size_t i = 0; i < l->n; i++) {
                const struct iomem_metric *m = &l->v[i];

                fprintf(out, "%s{\"name\":\"", i ? "," : "");
                ctl_metrics_sample_name(m, out);
                fprintf(out, "\",\"type\":\"%s\",\"labels\":{",
                        m->type == IOMEM_METRIC_COUNTER ? "counter" : "gauge");
                if (m->label_name) {
                        fprintf(out, "\"%s\":\"", m->label_name);
                        ctl_metrics_label_value(m->label_value, out);
                        fputc('"', out);
                }
                fprintf(out, "},\"value\":%" PRIu64 "}", m->value);
        }
        fputs("]}\n", out);
}

int ctl_metrics_print(struct iomem_client *client, enum ctl_metrics_format format, FILE *out)
{
        struct ctl_metrics_list l = { 0 };
        uint32_t flags = 0;
        int r;

        r = iomem_metrics(client, &flags, ctl_metrics_collect, &l);
        if (r < 0) {
                free(l.v);
                return r;
        }
        if (flags & IOMEM_METRICS_TRUNCATED)
                fputs("iomemctl: metrics: the daemon's reply was full; some per-uid samples are missing\n", stderr);
        if (format == CTL_METRICS_JSON)
                ctl_metrics_json(&l, flags & IOMEM_METRICS_TRUNCATED, out);
        else
                r = ctl_metrics_text(&l, format == CTL_METRICS_OPENMETRICS, out);
        free(l.v);
        return r;
}
