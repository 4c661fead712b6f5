/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* floor: the daemon-less floor, the same exchanges done by hand (socketpair with one fd; shm_open). */
#pragma once

#include <stdbool.h>

#include "runner.h"
#include "stats.h"

/*
 * floor_socketpair() - a request frame of the size of an OPEN, answered by a
 * forked server with a reply frame of the size of OPEN's reply carrying one
 * memfd, which the client maps (@map_size bytes, read-write), unmaps and closes.
 * Return: 0 with *res filled; negative errno.
 */
int floor_socketpair(const struct runner_opts *o, size_t map_size, size_t sample_cap, struct stats_result *res);

/*
 * floor_cold() - the cold floor: per operation, connect to a forked bare
 * server (blocking accept, no event loop, no parsing), one request frame of
 * the size of an OPEN, one reply of the size of OPEN's reply carrying one
 * memfd, map (@map_size, read-write), unmap, close both. With @epoll the
 * server is a bare epoll loop instead (accept4, the request read at once,
 * the socket registered to see its end, closed at it): the least a server
 * that serves many clients at once adds (row floor-cold-epoll).
 * Return: 0 with *res filled; negative errno.
 */
int floor_cold(const struct runner_opts *o, size_t map_size, size_t sample_cap, bool epoll, struct stats_result *res);

/*
 * The cold floor's server kept running between measurements, so that it can
 * be measured in segments (iomem-bench alternates it with the cold rows):
 * floor_cold_start() forks the server (it inherits this process's CPU
 * affinity), floor_cold_run() runs floor_cold()'s very op through
 * runner_loop() into @s (samples and ops add up over calls; *secondsp is this
 * call's window), floor_cold_stop() ends the server and frees (NULL-safe).
 * floor_cold() is start + one run + stop.
 * Return: 0 (*fp set); negative errno. floor_cold_stop(): 0; -ECHILD if the
 * server had died before it.
 */
struct floor_cold;
int floor_cold_start(size_t map_size, bool epoll, struct floor_cold **fp);
int floor_cold_run(struct floor_cold *f, const struct runner_opts *o, struct stats *s, double *secondsp);
int floor_cold_stop(struct floor_cold *f);

/*
 * floor_shm() - shm_open of an existing object, mmap, munmap, close.
 * Return: 0 with *res filled; negative errno.
 */
int floor_shm(const struct runner_opts *o, size_t map_size, size_t sample_cap, struct stats_result *res);
