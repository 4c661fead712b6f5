/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* events: publish-to-notified latency (a watcher process learns of a PUBLISH) against a pipe wake-up floor. */
#pragma once

#include "runner.h"
#include "stats.h"

#define EVENTS_RESULTS 3

/*
 * events_run() - in the same run: "floor-pipe-wake" (a forked poller woken
 * by a one-byte pipe write) and "publish-notified" (a forked process watching
 * a name on @socket gets the PUBLISHED event of a PUBLISH made here). Each
 * sample is from just before the write (the PUBLISH request) to the moment
 * the other process holds the byte (the decoded event); one at a time. And
 * "publish-rtt": the PUBLISH round trip with nobody watching.
 * Return: the number of results in @res (EVENTS_RESULTS); negative errno.
 */
int events_run(const char *socket, const struct runner_opts *o, size_t sample_cap,
               struct stats_result res[EVENTS_RESULTS]);
