/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* service: systemd integration (socket activation, readiness, watchdog, fd store of named regions). */
#pragma once

/*
 * Without systemd (or built without libsystemd) every function here is a
 * cheap no-op that succeeds: regions then live as long as the daemon.
 */

#include <stdbool.h>
#include <stdint.h>

struct region;
struct regtab;

/*
 * service_listen_fd() - the listening socket passed by systemd, if any.
 * Return: 1 with *fdp set (non-blocking, close-on-exec, owned by the caller);
 * 0 if systemd passed none; negative errno on a malformed hand-over.
 * Region fds passed back from the fd store are kept aside for service_restore().
 */
int service_listen_fd(int *fdp);

/*
 * service_restore() - put the regions saved in systemd's fd store back into @t.
 * Return: the number of regions restored (>= 0), or negative errno. Regions
 * whose metadata cannot be matched are logged and dropped from the store.
 */
int service_restore(struct regtab *t);

/*
 * service_region_added() - save a named region (its fd and metadata) in the fd store.
 * Return: 0; -ENOSPC if the store is full (FileDescriptorStoreMax) or
 * systemd refused: the caller must then fail the create (L2).
 */
int service_region_added(struct region *r);

/*
 * service_region_update() - rewrite the region's slot in the fd store (its mode or owner changed: the caller
 * refuses the change if this fails, or a restart would quietly undo it). Logs a failure.
 * Return: 0 (also without a store, or for a region not in it); negative errno from the write.
 */
int service_region_update(const struct region *r);

/*
 * service_region_stored_whole() - whether the fd store holds the region's slot as last written (no failed write of
 * it waits to be written again): a change to the values it has then needs no write. True with no store.
 */
bool service_region_stored_whole(const struct region *r);

/*
 * service_store_retry() - write again the fd store slots whose last write failed (with no request to do it, a
 * restart would read what a short write left). Periodic, and at a stop.
 */
void service_store_retry(void);

/* service_region_changed() - the region's size, seals or charge changed (already done): service_region_update(),
 * a failure only logged (the restore reads size and seals from the fd itself). */
void service_region_changed(struct region *r);

/* service_region_removed() - the region is deleted: take it out of the store. */
void service_region_removed(struct region *r);

/* Send READY=1 (once the socket is served). */
void service_ready(void);
/* Send STATUS= with the counts. */
void service_status(uint64_t regions, uint64_t bytes, uint64_t connections);
/* Send STOPPING=1. */
void service_stopping(void);
/* RELOADING=1 before and READY=1 after a configuration reload. */
void service_reloading(bool begin);
/*
 * service_watchdog_usec() - Return: the watchdog interval (WATCHDOG_USEC) in
 * microseconds, 0 if none. The caller pings with service_watchdog() at half of it.
 */
uint64_t service_watchdog_usec(void);
void service_watchdog(void);

/*
 * service_store_usage() - fds in the fd store (the metadata file included)
 * and its capacity; both 0 when the store is not used. Return: nothing.
 */
void service_store_usage(uint64_t *storedp, uint64_t *maxp);
