/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* config: iomemd's settings, their defaults and the command line. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#include "paths.h"
#include "proto.h"

#define CONFIG_DEFAULT_MAX_REGION_SIZE (UINT64_C(64) << 30)
#define CONFIG_DEFAULT_MAX_REGIONS 1000000u
#define CONFIG_DEFAULT_MAX_CONNECTIONS 65536u
#define CONFIG_DEFAULT_MODE 0600u
#define CONFIG_DEFAULT_HANDSHAKE_TIMEOUT 10u
#define CONFIG_DEFAULT_QUOTA_WATCHES 64u /* per uid */
#define CONFIG_DEFAULT_MAX_EVENTS 1024u  /* events queued per connection before OVERFLOW */
#define CONFIG_SYSTEM_SOCKET_DIR PATHS_SYSTEM_SOCKET_DIR
#define CONFIG_SYSTEM_SOCKET PATHS_SYSTEM_SOCKET
#define CONFIG_DEFAULT_FILE "/etc/iomemd/iomemd.conf"
#define CONFIG_MAX_RULES 4096u    /* [uid N] / [gid N] sections */
#define CONFIG_MAX_ALLOW 4096u    /* entries of allow-uids plus allow-gids */

/* Per-uid limits; 0 = unlimited. */
struct config_quota {
        uint64_t bytes;       /* bytes of named regions owned */
        uint64_t regions;     /* named regions owned */
        uint64_t connections; /* connections open at once */
        uint64_t fds;         /* fds queued towards the uid's connections, not yet received */
        uint64_t watches;     /* WATCHes held on all the uid's connections (docs/protocol.md section 15) */
};

/* config_quota_rule.set bits: which fields of the rule override the defaults */
#define CONFIG_QUOTA_SET_BYTES 0x1u
#define CONFIG_QUOTA_SET_REGIONS 0x2u
#define CONFIG_QUOTA_SET_CONNECTIONS 0x4u
#define CONFIG_QUOTA_SET_FDS 0x8u
#define CONFIG_QUOTA_SET_WATCHES 0x10u

/* A [uid N] or [gid N] section of the configuration file. */
struct config_quota_rule {
        bool group;
        uint32_t id;
        uint32_t set; /* CONFIG_QUOTA_SET_* */
        struct config_quota quota;
};

/* config.allowed_backends bits */
#define CONFIG_BACKEND_BIT(b) (1u << (unsigned)(b))
#define CONFIG_ALL_BACKENDS                                                                      \
        (CONFIG_BACKEND_BIT(PROTO_BACKEND_MEMFD) | CONFIG_BACKEND_BIT(PROTO_BACKEND_SHM) |       \
         CONFIG_BACKEND_BIT(PROTO_BACKEND_FILE))

struct config {
        char *socket_path;          /* owned; NULL until config_parse() picks one */
        enum proto_backend backend; /* default backend for CREATE with AUTO */
        uint32_t allowed_backends;  /* CONFIG_BACKEND_BIT()s a CREATE may get; backend must be one (or AUTO) */
        uint64_t max_region_size;
        uint64_t max_regions;
        uint64_t max_connections;
        uint64_t max_bytes;         /* total bytes held in named regions; 0 = unlimited */
        uint32_t default_mode;
        unsigned handshake_timeout_sec; /* 0 = no timeout */
        size_t max_out_bytes;       /* per-connection output queue; 0 = transport default */
        uint32_t max_events;        /* events queued per connection before they are dropped for one OVERFLOW */
        int log_level;              /* enum log_level */
        char *tmpdir;               /* owned; file backend directory, NULL = $TMPDIR or /tmp */
        uint64_t max_region_fds;    /* region fds held in-process, the rest in keepers; 0 = from the fd limit */
        /* access control and quotas (docs/security.md) */
        char *config_file;          /* owned; the file read, NULL = none */
        struct config_quota quota;  /* per-uid defaults */
        struct config_quota_rule *rules; /* owned; per-uid and per-group overrides */
        size_t nrules;
        uint32_t *allow_uids;       /* owned; with allow_gids: who may connect, if allow_list */
        size_t nallow_uids;
        uint32_t *allow_gids;
        size_t nallow_gids;
        bool allow_list;            /* allow-uids or allow-gids was given */
        bool check;                 /* --check-config: config_parse() checks the configuration and ends */
        int check_pid;              /* --pid: the command line checked is that process's; 0 = our own */
        unsigned nsettings;         /* options other than --check-config and --pid on the command line */
        bool file_regular_only;     /* a reload's file, or one named by another process (--pid): only a regular
                                     * file of at most 16 MiB is read, opened without blocking (no FIFO, device) */
        int argc;                   /* the command line, borrowed, for config_reload() */
        /* bumped by config_reload(): what was derived from the configuration and kept (a connection's limits,
         * conn_limits()) is derived again */
        uint64_t generation;
        char **argv;
};

/* config_init() - fill in the defaults. Return: nothing. */
void config_init(struct config *c);

/* config_deinit() - free owned strings. NULL-safe. Return: nothing. */
void config_deinit(struct config *c);

/*
 * config_default_socket() - the socket path when --socket is not given:
 * paths_daemon_socket() (common/paths.h): $IOMEM_SOCKET, else
 * /run/iomemd/iomemd.sock for euid 0 (the directory is made 0755 if
 * missing), else $XDG_RUNTIME_DIR/iomemd.sock.
 * Return: 0 with *pathp malloc'd; -ENOENT if none applies
 * (no $XDG_RUNTIME_DIR); -ENOMEM; negative errno from mkdir.
 */
int config_default_socket(char **pathp);

/*
 * config_parse() - read the configuration file (--config PATH, else
 * CONFIG_DEFAULT_FILE if it exists), then apply the command line on top:
 * the command line wins.
 * Errors and --help/--version output are written here.
 * With --check-config (config.check) nothing is run: the configuration is
 * checked as a start would read it, without the socket (config_check()).
 * Return: 0 to run; 1 if --help, --version or a --check-config that found
 * the configuration valid was handled (exit 0); -EINVAL for a usage error
 * (one line on stderr; exit 2); -EBADMSG if --check-config found the
 * configuration invalid (exit 1); -ENOMEM.
 */
int config_parse(struct config *c, int argc, char **argv);

/*
 * config_load_file() - apply the settings of file @path to @c. Lines are
 * "key = value" with the long option names as keys, "#" comments, and
 * "[uid N]" / "[gid N]" sections holding quota-* keys. On error, one line
 * (file:line: why) is written to @err. With @c->file_regular_only, only a
 * regular file of at most 16 MiB, opened without blocking.
 * Return: 0; -ENOENT and other errors from opening it; -EINVAL for a bad
 * line (or, file_regular_only, not a regular file); -EFBIG (larger);
 * -ENOMEM.
 */
int config_load_file(struct config *c, const char *path, char *err, size_t errsize);

/*
 * config_reload() - read the configuration file and command line again
 * into a fresh configuration and, only if that succeeds, replace @c's
 * settings with it (the socket path and max_region_fds stay: they are used
 * at startup only). @c must have come from config_parse(). The file is
 * read as for --check-config --pid: a regular file of at most 16 MiB,
 * opened without blocking (a FIFO or a device fails the reload).
 * Return: 0; a negative errno with the old settings kept and the reason logged.
 */
int config_reload(struct config *c);

/*
 * config_quota_for() - the limits of @uid whose primary group is @gid: the
 * defaults, then what a [gid] section of @gid sets, then what a [uid]
 * section of @uid sets. Return: nothing.
 */
void config_quota_for(const struct config *c, uint32_t uid, uint32_t gid, struct config_quota *q);

/*
 * config_backend_for() - the backend a CREATE asking for @requested gets:
 * @requested itself if allowed; for AUTO the configured backend, or AUTO
 * (memfd, then shm, then file) if every backend is allowed, else the first
 * allowed of memfd, shm, file. Return: 0 with *backendp; -EPERM if
 * @requested is not allowed.
 */
int config_backend_for(const struct config *c, enum proto_backend requested, enum proto_backend *backendp);

/*
 * config_allows() - may a peer connect? True if no allow-list is set, for
 * uid 0 and the daemon's own uid, for a listed uid, or a listed gid among
 * @gid and @groups. Return: true or false.
 */
bool config_allows(const struct config *c, uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups);
