/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* child: what the daemon's helper processes (keepers, the closer) do first after fork(). */
#pragma once

/*
 * child_isolate() - in a process just forked from the daemon: die with the
 * daemon (PR_SET_PDEATHSIG), ignore SIGPIPE, take the name @name, and hold
 * nothing of the daemon's (listening socket, clients' sockets, regions, the
 * fd store) but @sock, moved to fd 3. Return: 3, or negative errno (the
 * process should exit: it may hold fds it must not).
 */
int child_isolate(int sock, const char *name);
