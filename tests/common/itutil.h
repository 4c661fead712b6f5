/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* itutil: helpers of the integration suites (start the real iomemd, wait for it, run programs). */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "iomem.h"
#include "testutil.h"

/*
 * The binaries under test come from the build through the environment
 * (tests/integration/CMakeLists.txt sets IOMEMD, IOMEMCTL, IOMEM_EXAMPLES).
 */
const char *it_env(const char *name);

/* One running iomemd on its own socket in its own temporary directory. */
struct it_daemon {
        pid_t pid;
        char dir[64];
        char socket[108]; /* sizeof(sockaddr_un.sun_path) */
};

/* Sleep @ms milliseconds (polling helpers only; no test asserts on time). */
void it_sleep_ms(int ms);

/* Write into @out a frame of @op with request @id and @len bytes of @payload (@len >= 0). Return: its size. */
size_t it_frame(uint8_t *out, uint16_t op, uint32_t id, const uint8_t *payload, int len);

/* Return: true once something accepts connections on @path. */
bool it_socket_ready(const char *path);

/*
 * it_daemon_start() - run iomemd --socket DIR/sock with @extra arguments
 * (NULL-terminated, may be NULL) and wait until it accepts connections.
 * The daemon dies with the test process (PR_SET_PDEATHSIG), so a failed
 * assertion cannot leave it behind.
 */
void it_daemon_start(struct it_daemon *d, const char *const *extra);

/*
 * it_daemon_spawn() - start iomemd again on d->socket in d->dir (made by
 * it_daemon_start()) and wait until it accepts connections: a restart on
 * the same socket after it_daemon_kill().
 */
void it_daemon_spawn(struct it_daemon *d, const char *const *extra);

/* Kill the daemon with @sig (e.g. SIGKILL, a crash) and reap it; its directory stays for it_daemon_spawn(). */
void it_daemon_kill(struct it_daemon *d, int sig);

/* Stop the daemon with SIGTERM and check it exited cleanly. Return: nothing. */
void it_daemon_stop(struct it_daemon *d);

/*
 * it_daemon_settled_fds() - the daemon's fd count once every other client is
 * gone and nothing is left for it to close later. A connection comes and goes
 * first, whose departure makes the daemon close the sockets it kept for
 * unread fds whose readers are gone by now. Then a probe polls METRICS (10 ms
 * apart, failing after 10 s with what is still pending) until the probe is
 * the only connection (the daemon frees a connection, its fds and its leased
 * regions, before it stops counting it), no fd is queued to or being closed
 * by the closer threads (iomemd_closing_fds), no job holds an fd
 * (iomemd_jobs) and no orphan socket is kept (iomemd_orphan_sockets; another
 * connection comes and goes while one is). Then the count is taken with the
 * probe still connected, so two results are comparable.
 * Return: the count (including the probe's one socket).
 */
int it_daemon_settled_fds(const struct it_daemon *d);

/*
 * it_daemon_steady_fds() - the daemon's fd count, clients staying connected,
 * once METRICS over @c says nothing is queued to or being closed by the
 * closer threads and no job holds an fd (bounded polling as above).
 * Return: the count.
 */
int it_daemon_steady_fds(const struct it_daemon *d, struct iomem_client *c);

/* it_metric() - the value of METRICS sample @name (one without a label) over @c, asserting it is there. */
uint64_t it_metric(struct iomem_client *c, const char *name);

/* it_client_connect() - iomem_connect() to @d's socket, asserting it succeeds. Return: the client (the caller's). */
struct iomem_client *it_client_connect(const struct it_daemon *d);

/* it_client_connect_flags() - iomem_connect_flags() to @d's socket with @flags, asserting it succeeds. */
struct iomem_client *it_client_connect_flags(const struct it_daemon *d, uint32_t flags);

/*
 * it_listen() - a close-on-exec stream socket bound to the Unix socket
 * @path and listening with @backlog (a stand-in daemon the test plays),
 * asserting every step. Return: the fd (the caller's).
 */
int it_listen(const char *path, int backlog);

/* Raise RLIMIT_NOFILE (soft and, if needed, hard) to at least @n. Return: 0 or -errno. */
int it_raise_nofile(rlim_t n);

/* Return: the size of the 2 MiB hugetlb pool (nr_hugepages), or -1 if it cannot be read. */
long it_hugepages(void);

/* Return: true if the 2 MiB hugetlb pool could be set to @n pages (needs root). */
bool it_set_hugepages(long n);

/*
 * it_run() - run argv (argv[0] a path), feeding @input (may be NULL) on stdin
 * and collecting up to @outsize-1 bytes of stdout into @out (NUL-terminated;
 * may be NULL) and stderr into @err (may be NULL).
 * Return: the wait status.
 */
int it_run(const char *const *argv, const char *input, size_t inlen, char *out, size_t outsize, char *err,
           size_t errsize);
