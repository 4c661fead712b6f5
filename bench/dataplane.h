/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dataplane: scenario 8, moving bytes from one process to another through a region vs through a pipe. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "stats.h"

#define DATAPLANE_MODES 9

/*
 * dataplane_run() - the sender (this process) creates a region of @bytes on
 * the daemon at @socket and fills it; a forked receiver takes it over @reps
 * times in each mode (handover only; reading every byte with several mapping
 * choices; through a pipe), each checked by a checksum of what was read.
 * @pin: sender on CPU 0, receiver on CPU 1 (a stable placement; else the
 * scheduler's, which makes the pipe bimodal).
 * Return: the number of results written to @res (at most DATAPLANE_MODES), or
 * negative errno.
 */
int dataplane_run(const char *socket, uint64_t bytes, int reps, int pin, struct stats_result *res);

/*
 * dataplane_run_pages() - the handover, read-every-byte and kept-mapping rows
 * for a region created with @create_flags (IOMEM_CREATE_HUGE,
 * IOMEM_CREATE_RESERVE...), named with @suffix (e.g. "-huge"); each row
 * records the pages the daemon gave (pages, reserved) and the CREATE's time
 * (create_ms). Return: as dataplane_run().
 */
int dataplane_run_pages(const char *socket, uint64_t bytes, int reps, int pin, uint32_t create_flags,
                        const char *suffix, struct stats_result *res);
