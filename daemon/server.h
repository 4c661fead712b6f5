/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* server: the event loop of iomemd (libevent): listening socket, connections, timers, signals. */
#pragma once

#include "config.h"

/*
 * server_run() - serve @config->socket_path (or the socket systemd passed)
 * until SIGTERM or SIGINT.
 * Return: 0 after a clean stop; a negative errno if the daemon could not
 * start (the reason is logged).
 */
int server_run(const struct config *config);
