/* config: iomemd's settings, their defaults and the command line. */
#pragma once

#include <stdint.h>
#include <stddef.h>

#include "proto.h"

#define CONFIG_DEFAULT_MAX_REGION_SIZE (UINT64_C(64) << 30)
#define CONFIG_DEFAULT_MAX_REGIONS 1000000u
#define CONFIG_DEFAULT_MAX_CONNECTIONS 65536u
#define CONFIG_DEFAULT_MODE 0600u
#define CONFIG_DEFAULT_HANDSHAKE_TIMEOUT 10u
#define CONFIG_SYSTEM_SOCKET_DIR "/run/iomemd"
#define CONFIG_SYSTEM_SOCKET CONFIG_SYSTEM_SOCKET_DIR "/iomemd.sock"

struct config {
        char *socket_path;          /* owned; NULL until config_parse() picks one */
        enum proto_backend backend; /* default backend for CREATE with AUTO */
        uint64_t max_region_size;
        uint64_t max_regions;
        uint64_t max_connections;
        uint64_t max_bytes;         /* total bytes held in named regions; 0 = unlimited */
        uint32_t default_mode;
        unsigned handshake_timeout_sec; /* 0 = no timeout */
        size_t max_out_bytes;       /* per-connection output queue; 0 = transport default */
        int log_level;              /* enum log_level */
        char *tmpdir;               /* owned; file backend directory, NULL = $TMPDIR or /tmp */
        uint64_t max_region_fds;    /* region fds held in-process, the rest in keepers; 0 = from the fd limit */
};

/* config_init() - fill in the defaults. Return: nothing. */
void config_init(struct config *c);

/* config_deinit() - free owned strings. NULL-safe. Return: nothing. */
void config_deinit(struct config *c);

/*
 * config_parse_size() - parse "123", "4K", "64G", "1T" (binary multiples).
 * Return: 0 with *sizep set; -EINVAL for a malformed number; -ERANGE on overflow.
 */
int config_parse_size(const char *s, uint64_t *sizep);

/*
 * config_default_socket() - the socket path when --socket is not given:
 * $IOMEM_SOCKET, else /run/iomemd/iomemd.sock for euid 0 (the directory is
 * made 0755 if missing), else $XDG_RUNTIME_DIR/iomemd.sock.
 * Return: 0 with *pathp malloc'd; -ENOENT if none applies
 * (no $XDG_RUNTIME_DIR); -ENOMEM; negative errno from mkdir.
 */
int config_default_socket(char **pathp);

/*
 * config_parse() - apply the command line on top of the defaults in @c.
 * Errors and --help/--version output are written here.
 * Return: 0 to run; 1 if --help or --version was handled (exit 0);
 * -EINVAL for a usage error (one line on stderr; exit 2); -ENOMEM.
 */
int config_parse(struct config *c, int argc, char **argv);
