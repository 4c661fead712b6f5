/* config: iomemd's settings, their defaults and the command line. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "config.h"
#include "log.h"

void config_init(struct config *c)
{
        *c = (struct config){
                .backend = PROTO_BACKEND_AUTO,
                .max_region_size = CONFIG_DEFAULT_MAX_REGION_SIZE,
                .max_regions = CONFIG_DEFAULT_MAX_REGIONS,
                .max_connections = CONFIG_DEFAULT_MAX_CONNECTIONS,
                .max_bytes = 0,
                .default_mode = CONFIG_DEFAULT_MODE,
                .handshake_timeout_sec = CONFIG_DEFAULT_HANDSHAKE_TIMEOUT,
                .max_out_bytes = 0,
                .log_level = LOG_LEVEL_INFO,
        };
}

void config_deinit(struct config *c)
{
        if (!c)
                return;
        free(c->socket_path);
        free(c->tmpdir);
        c->socket_path = NULL;
        c->tmpdir = NULL;
}

/* Return: 0 with *np set; -EINVAL unless @s is a plain decimal number; -ERANGE. */
static int config_parse_u64(const char *s, uint64_t *np, char **endp)
{
        unsigned long long v;
        char *end;

        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (end == s)
                return -EINVAL;
        *np = v;
        if (endp)
                *endp = end;
        else if (*end)
                return -EINVAL;
        return 0;
}

int config_parse_size(const char *s, uint64_t *sizep)
{
        uint64_t v;
        unsigned shift = 0;
        char *end;
        int r;

        r = config_parse_u64(s, &v, &end);
        if (r < 0)
                return r;
        switch (*end) {
        case '\0':
                break;
        case 'k': case 'K': shift = 10; end++; break;
        case 'm': case 'M': shift = 20; end++; break;
        case 'g': case 'G': shift = 30; end++; break;
        case 't': case 'T': shift = 40; end++; break;
        default:
                return -EINVAL;
        }
        /* accept "64G", "64GB", "64GiB" */
        if (shift && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
                end += strlen(end);
        if (*end)
                return -EINVAL;
        if (shift && v > (UINT64_MAX >> shift))
                return -ERANGE;
        *sizep = v << shift;
        return 0;
}

int config_default_socket(char **pathp)
{
        const char *env = getenv("IOMEM_SOCKET");
        const char *xdg;
        char *p;

        if (env && *env) {
                p = strdup(env);
        } else if (geteuid() == 0) {
                if (mkdir(CONFIG_SYSTEM_SOCKET_DIR, 0755) < 0 && errno != EEXIST)
                        return -errno;
                p = strdup(CONFIG_SYSTEM_SOCKET);
        } else {
                xdg = getenv("XDG_RUNTIME_DIR");
                if (!xdg || !*xdg)
                        return -ENOENT;
                if (asprintf(&p, "%s/iomemd.sock", xdg) < 0)
                        p = NULL;
        }
        if (!p)
                return -ENOMEM;
        *pathp = p;
        return 0;
}

static void config_usage(FILE *f)
{
        fprintf(f,
                "Usage: iomemd [OPTIONS]\n"
                "Broker of shared memory regions passed as file descriptors.\n\n"
                "  --socket PATH              listening socket (default: $IOMEM_SOCKET, else\n"
                "                             " CONFIG_SYSTEM_SOCKET " as root, else\n"
                "                             $XDG_RUNTIME_DIR/iomemd.sock)\n"
                "  --backend NAME             auto|memfd|shm|file (default: auto)\n"
                "  --max-region-size SIZE     largest region, K/M/G/T suffixes (default: 64G)\n"
                "  --max-regions N            named regions held at once (default: %u)\n"
                "  --max-connections N        clients connected at once (default: %u)\n"
                "  --max-bytes SIZE           total bytes of named regions, 0 = unlimited (default: 0)\n"
                "  --default-mode OCTAL       mode of regions created with mode 0 (default: %04o)\n"
                "  --handshake-timeout SEC    drop clients that send no HELLO in time, 0 = never (default: %u)\n"
                "  --max-out-bytes SIZE       per-client reply queue bound, 0 = built-in (default: 0)\n"
                "  --log-level LEVEL          error|warning|notice|info|debug (default: info)\n"
                "  --tmpdir DIR               directory for the file backend (default: $TMPDIR or /tmp)\n"
                "  --max-region-fds N         region fds kept in the daemon itself; the others are held by\n"
                "                             keeper processes (default: 0 = derived from the fd limit)\n"
                "  -h, --help                 show this help\n"
                "  -V, --version              show the version\n",
                CONFIG_DEFAULT_MAX_REGIONS, CONFIG_DEFAULT_MAX_CONNECTIONS, CONFIG_DEFAULT_MODE,
                CONFIG_DEFAULT_HANDSHAKE_TIMEOUT);
}

static int config_error(const char *opt, const char *arg, const char *why)
{
        fprintf(stderr, "iomemd: invalid %s '%s': %s (see --help)\n", opt, arg, why);
        return -EINVAL;
}

static int config_replace(char **dstp, const char *s)
{
        char *p = strdup(s);

        if (!p)
                return -ENOMEM;
        free(*dstp);
        *dstp = p;
        return 0;
}

int config_parse(struct config *c, int argc, char **argv)
{
        enum {
                OPT_SOCKET = 0x100, OPT_BACKEND, OPT_MAX_REGION_SIZE, OPT_MAX_REGIONS, OPT_MAX_CONNECTIONS,
                OPT_MAX_BYTES, OPT_DEFAULT_MODE, OPT_HANDSHAKE_TIMEOUT, OPT_MAX_OUT_BYTES, OPT_LOG_LEVEL,
                OPT_TMPDIR, OPT_MAX_REGION_FDS,
        };
        static const struct option options[] = {
                { "socket", required_argument, NULL, OPT_SOCKET },
                { "backend", required_argument, NULL, OPT_BACKEND },
                { "max-region-size", required_argument, NULL, OPT_MAX_REGION_SIZE },
                { "max-regions", required_argument, NULL, OPT_MAX_REGIONS },
                { "max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS },
                { "max-bytes", required_argument, NULL, OPT_MAX_BYTES },
                { "default-mode", required_argument, NULL, OPT_DEFAULT_MODE },
                { "handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT },
                { "max-out-bytes", required_argument, NULL, OPT_MAX_OUT_BYTES },
                { "log-level", required_argument, NULL, OPT_LOG_LEVEL },
                { "tmpdir", required_argument, NULL, OPT_TMPDIR },
                { "max-region-fds", required_argument, NULL, OPT_MAX_REGION_FDS },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        uint64_t v;
        char *end;
        int opt, r;

        optind = 0; /* full reinitialisation: config_parse() may be called more than once */
        opterr = 0;
        while ((opt = getopt_long(argc, argv, ":hV", options, NULL)) >= 0) {
                const char *name = optind > 0 && optind <= argc ? argv[optind - 1] : "?";

                switch (opt) {
                case OPT_SOCKET:
                        if (!*optarg)
                                return config_error("--socket", optarg, "empty path");
                        r = config_replace(&c->socket_path, optarg);
                        if (r < 0)
                                return r;
                        break;
                case OPT_BACKEND:
                        r = backend_from_name(optarg);
                        if (r < 0)
                                return config_error("--backend", optarg, "expected auto, memfd, shm or file");
                        c->backend = r;
                        break;
                case OPT_MAX_REGION_SIZE:
                        if (config_parse_size(optarg, &v) < 0 || v == 0)
                                return config_error("--max-region-size", optarg,
                                                    "expected a positive size like 1G");
                        c->max_region_size = v;
                        break;
                case OPT_MAX_REGIONS:
                        if (config_parse_u64(optarg, &v, NULL) < 0 || v == 0)
                                return config_error("--max-regions", optarg, "expected a positive number");
                        c->max_regions = v;
                        break;
                case OPT_MAX_CONNECTIONS:
                        if (config_parse_u64(optarg, &v, NULL) < 0 || v == 0)
                                return config_error("--max-connections", optarg, "expected a positive number");
                        c->max_connections = v;
                        break;
                case OPT_MAX_REGION_FDS:
                        if (config_parse_u64(optarg, &v, NULL) < 0)
                                return config_error("--max-region-fds", optarg, "expected a number");
                        c->max_region_fds = v;
                        break;
                case OPT_MAX_BYTES:
                        if (config_parse_size(optarg, &v) < 0)
                                return config_error("--max-bytes", optarg, "expected a size like 16G");
                        c->max_bytes = v;
                        break;
                case OPT_DEFAULT_MODE:
                        errno = 0;
                        v = strtoull(optarg, &end, 8);
                        if (errno || end == optarg || *end || optarg[0] == '-' || v == 0 || v > 0777)
                                return config_error("--default-mode", optarg, "expected octal 1..0777");
                        c->default_mode = (uint32_t)v;
                        break;
                case OPT_HANDSHAKE_TIMEOUT:
                        if (config_parse_u64(optarg, &v, NULL) < 0 || v > 86400)
                                return config_error("--handshake-timeout", optarg, "expected seconds 0..86400");
                        c->handshake_timeout_sec = (unsigned)v;
                        break;
                case OPT_MAX_OUT_BYTES:
                        if (config_parse_size(optarg, &v) < 0 || v > SIZE_MAX)
                                return config_error("--max-out-bytes", optarg, "expected a size like 4M");
                        c->max_out_bytes = (size_t)v;
                        break;
                case OPT_LOG_LEVEL:
                        r = log_level_from_name(optarg);
                        if (r < 0)
                                return config_error("--log-level", optarg,
                                                    "expected error, warning, notice, info or debug");
                        c->log_level = r;
                        break;
                case OPT_TMPDIR:
                        if (!*optarg)
                                return config_error("--tmpdir", optarg, "empty path");
                        r = config_replace(&c->tmpdir, optarg);
                        if (r < 0)
                                return r;
                        break;
                case 'h':
                        config_usage(stdout);
                        return 1;
                case 'V':
                        printf("iomemd " IOMEM_VERSION "\n");
                        return 1;
                case ':':
                        fprintf(stderr, "iomemd: option '%s' needs an argument (see --help)\n", name);
                        return -EINVAL;
                default:
                        fprintf(stderr, "iomemd: unknown option '%s' (see --help)\n", name);
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "iomemd: unexpected argument '%s' (see --help)\n", argv[optind]);
                return -EINVAL;
        }
        if (!c->socket_path) {
                r = config_default_socket(&c->socket_path);
                if (r == -ENOENT && getenv("LISTEN_FDS")) {
                        r = 0; /* socket activation: systemd passes the socket, no path needed */
                } else if (r == -ENOENT) {
                        fprintf(stderr, "iomemd: no socket path: pass --socket, or set $IOMEM_SOCKET or "
                                        "$XDG_RUNTIME_DIR\n");
                        return -EINVAL;
                }
                if (r < 0) {
                        fprintf(stderr, "iomemd: cannot prepare %s: %s\n", CONFIG_SYSTEM_SOCKET_DIR, strerror(-r));
                        return -EINVAL;
                }
        }
        return 0;
}
