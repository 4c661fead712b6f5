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
