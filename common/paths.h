/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* paths: the one rule for where iomemd listens and where clients look for it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define PATHS_SYSTEM_SOCKET_DIR "/run/iomemd"
#define PATHS_SYSTEM_SOCKET PATHS_SYSTEM_SOCKET_DIR "/iomemd.sock"
#define PATHS_USER_SOCKET_NAME "iomemd.sock" /* under $XDG_RUNTIME_DIR (systemd: %t) */

/* Where a default socket path came from (for error messages). */
enum paths_source {
        PATHS_FROM_ENV = 1, /* $IOMEM_SOCKET */
        PATHS_FROM_USER,    /* $XDG_RUNTIME_DIR/iomemd.sock: a per-user daemon */
        PATHS_FROM_SYSTEM,  /* /run/iomemd/iomemd.sock: the system service */
};

/*
 * paths_client_socket() - the socket a client connects to when given none,
 * for every uid: $IOMEM_SOCKET if set and not empty; else
 * $XDG_RUNTIME_DIR/iomemd.sock if a socket exists there (a per-user daemon);
 * else the system service's PATHS_SYSTEM_SOCKET.
 * @sourcep: where the path came from (may be NULL).
 * Return: the length written (without NUL); -ENAMETOOLONG; -EINVAL.
 */
int paths_client_socket(char *buf, size_t size, enum paths_source *sourcep);

/*
 * paths_daemon_socket() - where iomemd binds when given no --socket:
 * $IOMEM_SOCKET if set; else PATHS_SYSTEM_SOCKET for root (@system);
 * else $XDG_RUNTIME_DIR/iomemd.sock, the per-user daemon's path that
 * paths_client_socket() looks at.
 * Return: the length written; -ENOENT if none applies (not root and no
 * XDG_RUNTIME_DIR); -ENAMETOOLONG; -EINVAL.
 */
int paths_daemon_socket(char *buf, size_t size, bool system, enum paths_source *sourcep);

/* Return: a short phrase naming the source ("$IOMEM_SOCKET", ...), never NULL. */
const char *paths_source_name(enum paths_source source);
