/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* conn-region: a connection's region requests (CREATE, OPEN and its waiters, RESIZE, SEAL, STAT, LIST, ...). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "conn-internal.h"

struct conn;

/* Request handlers (conn-internal.h's conn_handler_fn). */
conn_handler_fn conn_region_handle_create;
conn_handler_fn conn_region_handle_open;
conn_handler_fn conn_region_handle_resize;
conn_handler_fn conn_region_handle_seal;
conn_handler_fn conn_region_handle_stat;
conn_handler_fn conn_region_handle_list;
conn_handler_fn conn_region_handle_delete;
conn_handler_fn conn_region_handle_register;
conn_handler_fn conn_region_handle_publish;
conn_handler_fn conn_region_handle_openv;
conn_handler_fn conn_region_handle_statv;

/*
 * conn_region_unhook() - @c is dropped: take its parked OPENs out of the
 * table's waiters (their memory stays until conn_region_release()), and
 * abandon its reservation in flight, if any (its name, quota and region
 * count are released now; its job is cancelled). Return: nothing.
 */
void conn_region_unhook(struct conn *c);

/*
 * conn_region_release() - free @c's parked OPENs and delete the regions leased to it: CONN_WORK_PER_TURN of
 * them now, the others put in ctx.expiring for conn_region_expire() (all now if ctx.expire_later is NULL).
 * Return: nothing.
 */
void conn_region_release(struct conn *c);

/*
 * conn_region_expire() - delete the next CONN_WORK_PER_TURN leased regions of connections gone (ctx.expiring).
 * Return: true if some are left (call again at a later turn).
 */
bool conn_region_expire(struct conn_ctx *ctx);

/*
 * conn_region_reserve_hung_up() - Return: true if @c has a reservation in
 * flight (it reads nothing meanwhile) and its peer has closed its socket.
 */
bool conn_region_reserve_hung_up(const struct conn *c);

/* Return: the earliest deadline (CLOCK_MONOTONIC ns) of @c's parked OPENs, or 0 if none has one. */
uint64_t conn_region_deadline(const struct conn *c);

/* conn_region_timeout() - answer the parked OPENs due at @now_ns with -ETIMEDOUT. Return: nothing. */
void conn_region_timeout(struct conn *c, uint64_t now_ns);
