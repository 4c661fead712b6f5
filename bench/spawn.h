/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* spawn: start and stop a private iomemd for the benchmark, and read a process's RSS. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#define SPAWN_MAX_EXTRA 16 /* extra iomemd arguments (iomem-bench --iomemd-arg) */

struct spawn {
        pid_t pid;
        char dir[64];     /* private temporary directory, holds the socket */
        char socket[128];
};

struct spawn_rss {
        uint64_t rss_kb;   /* VmRSS */
        uint64_t anon_kb;  /* RssAnon */
        uint64_t file_kb;  /* RssFile */
        uint64_t shmem_kb; /* RssShmem: mapped region memory, if the daemon maps any */
        uint64_t keepers_kb; /* private memory of the daemon's fd keeper children (included in rss_kb) */
        unsigned keepers;    /* number of those children */
};

/*
 * spawn_raise_nofile() - raise RLIMIT_NOFILE: to @want for soft and hard if
 * permitted (root), else soft to hard. Children (iomemd) inherit it.
 * Return: the soft limit now in force.
 */
long spawn_raise_nofile(long want);

/*
 * spawn_iomemd() - run @binary on a socket in a new temporary directory with
 * generous limits, @backend ("memfd", ...) and @tmpdir (NULL = its default)
 * for the file backend, then the NULL-terminated @extra arguments (NULL = none,
 * at most SPAWN_MAX_EXTRA), and wait until it answers a connect.
 * Return: 0 with *d filled; -ECHILD if it exited; -ETIMEDOUT; negative errno.
 */
int spawn_iomemd(const char *binary, const char *backend, const char *tmpdir, const char *const *extra,
                 struct spawn *d);

/* What spawn_iomemd_opts() starts. */
struct spawn_opts {
        const char *binary;
        const char *backend;
        const char *tmpdir;        /* NULL = the daemon's default */
        const char *const *extra;  /* NULL-terminated, NULL = none; at most SPAWN_MAX_EXTRA */
        long nofile;               /* > 0: the daemon's RLIMIT_NOFILE, soft and hard (LimitNOFILE=), and
                                    * CAP_SYS_RESOURCE out of its bounding set, as the unit has it; 0 = inherit */
        unsigned max_region_fds;   /* > 0: --max-region-fds (before @extra); 0 = the daemon's default */
};

/*
 * spawn_iomemd_opts() - spawn_iomemd() with the daemon's fd limit and fd
 * budget set (@o). The limit is set in the child before exec: one below
 * this process's hard limit always works; above it, the child exits (-ECHILD).
 * Return: as spawn_iomemd().
 */
int spawn_iomemd_opts(const struct spawn_opts *o, struct spawn *d);

/*
 * spawn_nofile() - the soft RLIMIT_NOFILE of @pid, from /proc/PID/limits
 * (what the daemon runs with after its own raise to its hard limit).
 * Return: the limit (LONG_MAX for unlimited); negative errno.
 */
long spawn_nofile(pid_t pid);

/* spawn_stop() - SIGTERM (then SIGKILL), reap, remove the directory. NULL-safe. Return: nothing. */
void spawn_stop(struct spawn *d);

/*
 * spawn_rss() - read /proc/@pid/status.
 * Return: 0; negative errno.
 */
int spawn_rss(pid_t pid, struct spawn_rss *rssp);

/*
 * spawn_pin() - set the CPU affinity of @pid (0 = this process) to @cpu, or
 * to every online CPU for @cpu < 0.
 * Return: 0; negative errno.
 */
int spawn_pin(pid_t pid, int cpu);

/*
 * spawn_pin_children() - spawn_pin() every child process of @pid (iomemd's fd
 * keepers) that exists now.
 * Return: the number of children pinned; negative errno.
 */
int spawn_pin_children(pid_t pid, int cpu);
