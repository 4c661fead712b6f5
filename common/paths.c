/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* paths: the one rule for where iomemd listens and where clients look for it. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "paths.h"

/* Return: snprintf's result checked against @size: the length, -ENAMETOOLONG or -EINVAL. */
static int paths_format(char *buf, size_t size, const char *dir, const char *name)
{
        int n;

        if (!buf || size == 0)
                return -EINVAL;
        n = name ? snprintf(buf, size, "%s/%s", dir, name) : snprintf(buf, size, "%s", dir);
        if (n < 0)
                return -EINVAL;
        if ((size_t)n >= size)
                return -ENAMETOOLONG;
        return n;
}

static const char *paths_env(const char *name)
{
        const char *v = getenv(name);

        return v && *v ? v : NULL;
}

int paths_client_socket(char *buf, size_t size, enum paths_source *sourcep)
{
        const char *env = paths_env("IOMEM_SOCKET");
        const char *xdg = paths_env("XDG_RUNTIME_DIR");
        enum paths_source source;
        struct stat st;
        int n;

        if (env) {
                source = PATHS_FROM_ENV;
                n = paths_format(buf, size, env, NULL);
        } else {
                n = -ENOENT;
                source = PATHS_FROM_USER;
                /* a per-user daemon wins only if its socket is there: otherwise the system service */
                if (xdg) {
                        n = paths_format(buf, size, xdg, PATHS_USER_SOCKET_NAME);
                        if (n >= 0 && (stat(buf, &st) < 0 || !S_ISSOCK(st.st_mode)))
                                n = -ENOENT;
                }
                if (n == -ENOENT) {
                        source = PATHS_FROM_SYSTEM;
                        n = paths_format(buf, size, PATHS_SYSTEM_SOCKET, NULL);
                }
        }
        if (n >= 0 && sourcep)
                *sourcep = source;
        return n;
}

int paths_daemon_socket(char *buf, size_t size, bool system, enum paths_source *sourcep)
{
        const char *env = paths_env("IOMEM_SOCKET");
        const char *xdg = paths_env("XDG_RUNTIME_DIR");
        enum paths_source source;
        int n;

        if (env) {
                source = PATHS_FROM_ENV;
                n = paths_format(buf, size, env, NULL);
        } else if (system) {
                source = PATHS_FROM_SYSTEM;
                n = paths_format(buf, size, PATHS_SYSTEM_SOCKET, NULL);
        } else if (xdg) {
                source = PATHS_FROM_USER;
                n = paths_format(buf, size, xdg, PATHS_USER_SOCKET_NAME);
        } else
                return -ENOENT;
        if (n >= 0 && sourcep)
                *sourcep = source;
        return n;
}

const char *paths_source_name(enum paths_source source)
{
        switch (source) {
        case PATHS_FROM_ENV:
                return "$IOMEM_SOCKET";
        case PATHS_FROM_USER:
                return "the per-user daemon's socket";
        case PATHS_FROM_SYSTEM:
                return "the system service's socket";
        }
        return "the socket";
}
