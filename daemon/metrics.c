/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* metrics: the daemon's counters since start (requests, errors, refusals), read by the METRICS request. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "metrics.h"

/* Return: the index of @uid in m->refused, or where it would go, with *foundp. */
static uint32_t metrics_find(const struct metrics *m, uint32_t uid, bool *foundp)
{
        uint32_t lo = 0, hi = m->n_refused;

        while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;

                if (m->refused[mid].uid < uid)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *foundp = lo < m->n_refused && m->refused[lo].uid == uid;
        return lo;
}

void metrics_count_refusal(struct metrics *m, uint32_t uid)
{
        bool found;
        uint32_t i = metrics_find(m, uid, &found);

        m->quota_refusals++;
        if (!found) {
                if (m->n_refused == METRICS_UIDS_MAX)
                        return; /* still in the total */
                memmove(&m->refused[i + 1], &m->refused[i], (m->n_refused - i) * sizeof(m->refused[0]));
                m->refused[i] = (struct metrics_uid_count){ .uid = uid };
                m->n_refused++;
        }
        m->refused[i].count++;
}

void metrics_count_error(struct metrics *m, unsigned slot, int error, uint32_t uid)
{
        if (slot > METRICS_REQUEST_SLOTS)
                slot = METRICS_REQUEST_SLOTS;
        m->request_errors[slot]++;
        m->errors[error < 0 && -error <= METRICS_ERRNO_MAX ? -error : 0]++;
        if (error == -EDQUOT)
                metrics_count_refusal(m, uid);
}

uint64_t metrics_refusals(const struct metrics *m, uint32_t uid)
{
        bool found;
        uint32_t i = metrics_find(m, uid, &found);

        return found ? m->refused[i].count : 0;
}
