/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* conn-watch: WATCH and UNWATCH, the per-connection event queue, and the fan-out of region changes to watchers. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "conn-internal.h"
#include "regtab.h"

struct conn;
struct conn_ctx;

/* Request handlers (conn-internal.h's conn_handler_fn). */
conn_handler_fn conn_watch_handle_watch;
conn_handler_fn conn_watch_handle_unwatch;

/*
 * conn_watch_notify() - @r changed (@kind, a PROTO_EV_* region event): queue
 * an event on every connection with a watch whose prefix matches r->name and
 * that may read @r (or could read it as described by @before, for CHMOD,
 * CHOWN and PUBLISHED; NULL = no "before"). @replaced_id is the id of the
 * version a PUBLISHED replaced, else 0. Cheap when nobody watches.
 * Return: nothing.
 */
void conn_watch_notify(struct conn_ctx *ctx, uint16_t kind, struct region *r, const struct region_meta *before,
                       uint64_t replaced_id);

/*
 * conn_watch_pump() - move @c's queued events to its output while the output
 * is small (@all: every one of them, whatever the output holds: before a reply,
 * so that events come first). Return: nothing; on a queue bound @c is dropped.
 */
void conn_watch_pump(struct conn *c, bool all);

/* Return: true if @c has events not yet passed to its output. */
bool conn_watch_pending(const struct conn *c);

/* conn_watch_release() - @c goes away: end its watches and free its queued events. Return: nothing. */
void conn_watch_release(struct conn *c);
