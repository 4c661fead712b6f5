/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* iomemctl: command-line client of iomemd (create, read, write, list, exec with a region...). */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "ctl-metrics.h"
#include "iomem.h"
#include "parse.h"
#include "paths.h"
#include "proto.h"
#include "quote.h"

#define EXIT_USAGE 2

struct ctl {
        const char *socket; /* NULL = iomem_socket_path() */
        bool json;
        uint32_t connect_flags; /* IOMEM_CONNECT_* (watch, publish) */
        struct iomem_client *client;
        const char *name; /* the current command's NAME, to explain a refusal */
};

static const char usage_text[] =
        "Usage: iomemctl [--socket PATH] [--json] COMMAND [ARGS]\n"
        "\n"
        "Commands:\n"
        "  create NAME SIZE [--exclusive] [--lease] [--resizable] [--mode MODE]\n"
        "                   [--backend memfd|shm|file|auto] [--seal SEAL,...]\n"
        "                   [--huge[=2M|1G]] [--reserve]   huge pages (with fallback), memory allocated now\n"
        "  write NAME [--offset N] [FILE]     copy FILE (or stdin) into the region\n"
        "  read NAME [--offset N] [--length N]  copy region bytes to stdout\n"
        "  stat NAME                          show a region (--json: one object)\n"
        "  list [PREFIX]                      list regions (--json: an array)\n"
        "  rm NAME                            delete the name\n"
        "  resize NAME SIZE\n"
        "  seal NAME SEAL...                  add seals: " PARSE_SEAL_NAMES "\n"
        "  wait NAME [--timeout SECONDS]      wait until NAME exists\n"
        "  exec NAME [--read-only] -- COMMAND [ARG...]\n"
        "                                     run COMMAND with the region's fd in IOMEM_FD\n"
        "                                     and its size in IOMEM_SIZE\n"
        "  chmod NAME MODE                    set the mode (octal, owner or root only)\n"
        "  chown NAME [UID][:GID]             set owner (root only) and/or group (numeric ids)\n"
        "  quota                              your usage and limits (--json: one object)\n"
        "  register NAME SIZE [FILE] [--mode MODE] [--lease] [--seal SEAL,...]\n"
        "                                     make a memfd here (filled from FILE, - = stdin),\n"
        "                                     seal it shrink,grow and publish it as NAME\n"
        "  watch [PREFIX] [--count N] [--timeout SECONDS]\n"
        "                                     print one line per change of a region under PREFIX\n"
        "                                     (--json: one object per line); stop after N events\n"
        "                                     or when none came for SECONDS\n"
        "  publish NAME [FILE] [--mode MODE] [--lease] [--seal SEAL,...] [--expect GENERATION]\n"
        "                                     make a memfd here with FILE's bytes (- or none =\n"
        "                                     stdin), seal it shrink,grow,write and make it the\n"
        "                                     version of NAME that opens get from now on\n"
        "  status                             daemon totals (--json: one object)\n"
        "  ping                               check that the daemon answers\n"
        "  metrics [openmetrics|prometheus]   counters and gauges for monitoring (--json: one object)\n"
        "  -h, --help                         show this help\n"
        "  -V, --version                      show the version\n"
        "\n"
        "Sizes and offsets take K, M, G, T suffixes (powers of 1024).\n"
        "A NAME that starts with '-' goes after '--': iomemctl stat -- -x (not for exec)\n"
        "The socket is --socket PATH, else $IOMEM_SOCKET, else $XDG_RUNTIME_DIR/iomemd.sock\n"
        "if a per-user daemon listens there, else the system service's " PATHS_SYSTEM_SOCKET ".\n"
        "A --lease region is deleted when its creator disconnects: with iomemctl,\n"
        "that is as soon as the create command exits.\n";

/* Print @s on @f as quote_byte() shows it: a control byte or a byte >= 0x80 as \xHH (and '\' too with @backslash, so
 * that the output reads back unambiguously). */
static void ctl_quoted(FILE *f, const char *s, bool backslash)
{
        char q[QUOTE_BYTE_MAX];

        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (backslash && *p == '\\')
                        snprintf(q, sizeof(q), "\\x%02x", *p);
                else
                        quote_byte(q, *p);
                fputs(q, f);
        }
}

/*
 * Print "iomemctl: " + @fmt + @tail + newline on stderr: every line iomemctl prints about a failure. What it echoes
 * (a NAME or FILE as typed, the daemon's own words) may hold an escape sequence: non-printable bytes are shown as
 * \xHH, never sent to the terminal.
 */
static void ctl_vline(const char *fmt, va_list ap, const char *tail)
{
        char buf[8192], *line = buf, *big = NULL;
        va_list again;
        int n;

        /* an argument echoed (a SIZE or FILE as typed) may be longer than @buf: format it whole, else the end of the
         * line (what was expected, the closing quote) would be cut off */
        va_copy(again, ap);
        n = vsnprintf(buf, sizeof(buf), fmt, ap);
        if (n >= (int)sizeof(buf) && (big = malloc((size_t)n + 1))) {
                vsnprintf(big, (size_t)n + 1, fmt, again);
                line = big;
        }
        va_end(again);
        fputs("iomemctl: ", stderr);
        ctl_quoted(stderr, line, false);
        ctl_quoted(stderr, tail, false);
        fputc('\n', stderr);
        free(big);
}

/* Print one error line, "iomemctl: <text>". Return: EXIT_FAILURE. */
__attribute__((format(printf, 1, 2))) static int ctl_error(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        ctl_vline(fmt, ap, "");
        va_end(ap);
        return EXIT_FAILURE;
}

/* Print "iomemctl: <what>: <the C library's text for a system call's error>". Return: EXIT_FAILURE. */
__attribute__((format(printf, 2, 3))) static int ctl_fail_os(int error, const char *fmt, ...)
{
        const char *text = strerrordesc_np(error < 0 ? -error : error);
        char tail[128];
        va_list ap;

        snprintf(tail, sizeof(tail), ": %s", text ? text : "unknown error");
        va_start(ap, fmt);
        ctl_vline(fmt, ap, tail);
        va_end(ap);
        return EXIT_FAILURE;
}

/* A usage error: one line, then exit status 2. Return: EXIT_USAGE. */
__attribute__((format(printf, 1, 2))) static int ctl_usage(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        ctl_vline(fmt, ap, " (see iomemctl --help)");
        va_end(ap);
        return EXIT_USAGE;
}

static const char *ctl_backend_name(enum iomem_backend b)
{
        const char *name = iomem_backend_name(b);

        return name ? name : "unknown";
}

struct bit_name {
        uint32_t bit;
        const char *name;
};

static const struct bit_name flag_names[] = {
        { IOMEM_REGION_RDONLY, "read-only" },
        { IOMEM_REGION_LEASED, "leased" },
        { IOMEM_REGION_RESIZABLE, "resizable" },
        { IOMEM_REGION_ANONYMOUS, "anonymous" },
};

/* Print the names of @bits, comma-separated (JSON strings if @json); @name gives one bit's name or NULL. */
static void ctl_print_bits(uint32_t bits, const char *(*name)(uint32_t bit), bool json)
{
        bool first = true;

        for (uint32_t bit = 1; bit; bit <<= 1) {
                const char *n = bits & bit ? name(bit) : NULL;

                if (!n)
                        continue;
                printf(json ? "%s\"%s\"" : "%s%s", first ? "" : ",", n);
                first = false;
                bits &= ~bit;
        }
        if (bits)
                printf(json ? "%s\"0x%" PRIx32 "\"" : "%s0x%" PRIx32, first ? "" : ",", bits);
        else if (first && !json)
                fputs("none", stdout);
}

static const char *ctl_flag_name(uint32_t bit)
{
        for (size_t i = 0; i < sizeof(flag_names) / sizeof(flag_names[0]); i++)
                if (flag_names[i].bit == bit)
                        return flag_names[i].name;
        return NULL;
}

#define SEAL_NAMES parse_seal_name
#define FLAG_NAMES ctl_flag_name

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t ctl_utf8_len(const unsigned char *s)
{
        size_t n;
        uint32_t cp;

        if (s[0] < 0x80)
                return 1;
        if ((s[0] & 0xe0) == 0xc0) {
                n = 2;
                cp = s[0] & 0x1f;
        } else if ((s[0] & 0xf0) == 0xe0) {
                n = 3;
                cp = s[0] & 0x0f;
        } else if ((s[0] & 0xf8) == 0xf0) {
                n = 4;
                cp = s[0] & 0x07;
        } else
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return n;
}

/* Print @s as a JSON string; bytes that are not UTF-8 become U+FFFD. */
static void ctl_json_string(const char *s)
{
        const unsigned char *p = (const unsigned char *)s;

        putchar('"');
        while (*p) {
                size_t n;

                if (*p == '"' || *p == '\\') {
                        printf("\\%c", *p++);
                        continue;
                }
                if (*p < 0x20 || *p == 0x7f) {
                        printf("\\u%04x", *p++);
                        continue;
                }
                n = ctl_utf8_len(p);
                if (!n) {
                        fputs("\\ufffd", stdout);
                        p++;
                        continue;
                }
                fwrite(p, 1, n, stdout);
                p += n;
        }
        putchar('"');
}

/* Print @s for a terminal: control characters, bytes >= 0x80 and '\' are shown as \xNN. */
static void ctl_text_string(const char *s)
{
        ctl_quoted(stdout, s, true);
}

/*
 * ctl_reason() - the words for an error a request to the daemon returned:
 * the daemon's own text where it says more than the error code (a limit
 * with its values and what to do, REGISTER's requirements, a daemon that
 * did not come back), else iomem_strerror().
 * Return: @buf or a static string.
 */
static const char *ctl_reason(struct ctl *c, int error, char *buf, size_t size)
{
        char msg[PROTO_MESSAGE_MAX + 1];

        snprintf(msg, sizeof(msg), "%s", c->client ? iomem_client_error_message(c->client) : "");
        switch (error) {
        case -EFBIG:
        case -EDQUOT:
        case -ESTALE: /* PUBLISH --expect: the daemon says which generation is current */
                /* the daemon names the limit, the numbers and the remedy; libiomem's own EFBIG has no text */
                break;
        case -EINVAL:
                if (c->name && iomem_name_check(c->name) < 0)
                        return "invalid region name (" IOMEM_NAME_RULE ")";
                if (*msg && strncmp(msg, "malformed", 9) != 0)
                        break;
                return iomem_strerror(error);
        case -EPERM:
                if (!strcmp(msg, "region is not resizable"))
                        return "it was not created --resizable, so it cannot shrink";
                if (!strcmp(msg, "region is not resizable: its memfd is sealed against growing"))
                        return "it was not created --resizable, so it cannot grow";
                if (*msg && strncmp(msg, "cannot", 6) != 0)
                        break;
                return iomem_strerror(error);
        case -EACCES:
                if (*msg && strcmp(msg, "permission denied") != 0)
                        break;
                snprintf(buf, size, "%s (you are uid %u)", iomem_strerror(error), (unsigned)geteuid());
                return buf;
        case -ENOSPC:
        case -ENOMEM:
                /* a full fd store says its numbers; a failed reservation (create --reserve) which limit it met;
                 * the error's own words cover the rest */
                if (!strncmp(msg, "no space in", 11))
                        break;
                if (strncmp(msg, "cannot reserve", 14) != 0)
                        return iomem_strerror(error);
                snprintf(buf, size, "%s: %s", msg, iomem_strerror(error));
                return buf;
        case -EOPNOTSUPP:
        case -ENOTCONN:
                if (*msg)
                        break;
                return iomem_strerror(error);
        case -EEXIST:
                /* without --exclusive an existing name is opened, but only at its own size: say that it differs */
                if (strcmp(msg, "name exists with another size") != 0 || !c->name)
                        return iomem_strerror(error);
                snprintf(buf, size, "%s, of another size: `iomemctl stat %s` shows it", iomem_strerror(error), c->name);
                return buf;
        case -ENOENT:
                /* not "no region with this name": the daemon could not make the object (file backend's directory) */
                if (strncmp(msg, "cannot create", 13) != 0)
                        return iomem_strerror(error);
                snprintf(buf, size, "%s: %s", msg, strerror(-error));
                return buf;
        default:
                return iomem_strerror(error);
        }
        if (!*msg)
                return iomem_strerror(error);
        snprintf(buf, size, "%s", msg);
        return buf;
}

/* Print "iomemctl: <what>: <ctl_reason()>" for an error from the daemon or libiomem. Return: EXIT_FAILURE. */
__attribute__((format(printf, 3, 4))) static int ctl_fail(struct ctl *c, int error, const char *fmt, ...)
{
        char reason[PROTO_MESSAGE_MAX + 64];
        char tail[sizeof(reason) + 2];
        va_list ap;

        snprintf(tail, sizeof(tail), ": %s", ctl_reason(c, error, reason, sizeof(reason)));
        va_start(ap, fmt);
        ctl_vline(fmt, ap, tail);
        va_end(ap);
        return EXIT_FAILURE;
}

/* Return: how to start the daemon that should listen on the socket of @source. */
static const char *ctl_start_hint(enum paths_source source)
{
        switch (source) {
        case PATHS_FROM_SYSTEM:
                return "start it with `systemctl start iomemd.socket` (as root)";
        case PATHS_FROM_USER:
                return "start it with `systemctl --user start iomemd.socket`";
        case PATHS_FROM_ENV:
                break;
        }
        return "start iomemd on it (`iomemd --socket PATH`) or point --socket or $IOMEM_SOCKET at the running one";
}

/*
 * ctl_connect() - connect once per command; a failure is explained with the
 * path, where it came from, the likely cause and what to do.
 * Return: 0, or EXIT_FAILURE after printing the error.
 */
static int ctl_connect(struct ctl *c)
{
        enum paths_source source = PATHS_FROM_ENV;
        char path[4096], where[4200];
        const char *from = "--socket";
        struct stat st;
        int r;

        if (c->client)
                return 0;
        if (c->socket)
                snprintf(path, sizeof(path), "%s", c->socket);
        else if (paths_client_socket(path, sizeof(path), &source) >= 0)
                from = paths_source_name(source);
        else
                return ctl_error("connect: the default socket path is too long ($IOMEM_SOCKET or $XDG_RUNTIME_DIR)");
        snprintf(where, sizeof(where), "connect to %s (%s)", path, from);
        if (!*path) /* the kernel's EINVAL would say nothing of the cause */
                return ctl_error("connect (%s): the socket path is empty: give the daemon's socket, such as %s", from,
                                 PATHS_SYSTEM_SOCKET);
        r = iomem_connect_flags(path, c->connect_flags, &c->client);
        if (r == 0) {
                /* wait for the HELLO answer here (libiomem would read it with the first reply): a refusal is
                 * reported as a connection error, with its remedy, not as the command's failure */
                r = iomem_client_handshake(c->client);
                if (r < 0)
                        c->client = iomem_disconnect(c->client);
        }
        switch (r) {
        case 0:
                return 0;
        case -ENOENT:
                return ctl_error("%s: no such socket, so no daemon is running there: %s", where,
                                 ctl_start_hint(source));
        case -ECONNREFUSED:
                if (stat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
                        return ctl_error("%s: this is a %s, not a socket: point %s at the socket the daemon listens "
                                         "on (`iomemd --socket PATH`)",
                                         where,
                                         S_ISDIR(st.st_mode)   ? "directory"
                                         : S_ISREG(st.st_mode) ? "regular file"
                                                               : "file",
                                         source == PATHS_FROM_ENV ? "--socket or $IOMEM_SOCKET" : "$IOMEM_SOCKET");
                return ctl_error("%s: nothing listens on the socket (the daemon exited): %s", where,
                                 ctl_start_hint(source));
        case -EACCES:
        case -EPERM:
                /* refused by the file system (socket or a directory on the way), or by the daemon's allow-list */
                if (faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) < 0)
                        return ctl_error("%s: permission denied on the socket or its directory for uid %u: ask the "
                                         "socket's owner for access, or run your own daemon "
                                         "(`systemctl --user start iomemd.socket`)",
                                         where, (unsigned)geteuid());
                return ctl_error("%s: the daemon's allow-list refuses uid %u (allow-uids and allow-gids in "
                                 "/etc/iomemd/iomemd.conf)",
                                 where, (unsigned)geteuid());
        case -EPROTONOSUPPORT:
                return ctl_error("%s: the daemon speaks another protocol version than iomemctl %s: use an iomemctl "
                                 "and libiomem from the daemon's release",
                                 where, IOMEM_VERSION);
        case -EPROTO:
        case -EBADMSG:
        case -EMSGSIZE:
                return ctl_error("%s: the peer does not speak the iomemd protocol", where);
        case -EDQUOT:
                return ctl_error("%s: uid %u is at its connection quota (quota-connections in "
                                 "/etc/iomemd/iomemd.conf): close other connections",
                                 where, (unsigned)geteuid());
        case -ENAMETOOLONG:
                return ctl_error("%s: the path is too long for a socket (at most 107 bytes)", where);
        case -ECONNRESET:
        case -EPIPE:
                return ctl_error("%s: the daemon closed the connection during the handshake (see its log: "
                                 "`journalctl -u iomemd`)",
                                 where);
        default:
                return ctl_fail_os(r, "%s", where);
        }
}

/* ---- option parsing ---------------------------------------------------- */

enum {
        OPT_SOCKET = 0x100,
        OPT_JSON,
        OPT_EXCLUSIVE,
        OPT_LEASE,
        OPT_RESIZABLE,
        OPT_MODE,
        OPT_BACKEND,
        OPT_SEAL,
        OPT_OFFSET,
        OPT_LENGTH,
        OPT_TIMEOUT,
        OPT_READ_ONLY,
        OPT_HUGE,
        OPT_RESERVE,
        OPT_HELP,
        OPT_COUNT,
        OPT_EXPECT,
};

/*
 * ctl_size() - parse @text, the @what ("size", "offset", "length") of @cmd,
 * into *@v; a usage error says what a size looks like, or that it is too large.
 * Return: 0, or EXIT_USAGE after printing the error.
 */
static int ctl_size(const char *cmd, const char *what, const char *text, uint64_t *v)
{
        int r = parse_size(text, v);

        if (r == -ERANGE)
                return ctl_usage("%s: bad %s '%s': too large (at most 16E - 1 bytes)", cmd, what, text);
        if (r < 0)
                return ctl_usage("%s: bad %s '%s' (bytes, with an optional K, M, G or T suffix: 4096, 64K, 1G)", cmd,
                                 what, text);
        return 0;
}

/*
 * ctl_bad_option() - the usage error for the option at @arg that getopt_long()
 * refused: unknown, missing its value, given one it does not take, or a
 * negative number taken for an option.
 * Return: EXIT_USAGE.
 */
static int ctl_bad_option(const char *cmd, const char *arg)
{
        const char *prefix = cmd ? cmd : "", *sep = cmd ? ": " : "";
        /* getopt_long() names a known long option in optopt (OPT_*, or 'h' and 'V' for --help and --version) */
        bool known_long = optopt != 0 && strncmp(arg, "--", 2) == 0;

        if (known_long && strchr(arg, '='))
                return ctl_usage("%s%soption '%.*s' takes no value", prefix, sep, (int)(strchr(arg, '=') - arg), arg);
        if (known_long)
                return ctl_usage("%s%soption '%s' needs a value", prefix, sep, arg);
        if (arg[0] == '-' && arg[1] >= '0' && arg[1] <= '9')
                return ctl_usage("%s%sbad option '%s' (numbers cannot be negative; a NAME that starts with '-' goes "
                                 "after '--')",
                                 prefix, sep, arg);
        return ctl_usage("%s%sbad option '%s'", prefix, sep, arg);
}

struct ctl_args {
        /* positional arguments, in order */
        char *pos[8];
        int npos;
        /* options seen */
        uint32_t create_flags;
        uint32_t mode;
        enum iomem_backend backend;
        uint32_t seals;
        uint64_t offset;
        uint64_t length;
        bool have_length;
        double timeout;
        bool have_timeout;
        bool read_only;
        uint64_t count;  /* --count, 0 = none */
        uint64_t expect; /* --expect, 0 = none */
        /* what a command's prepare step made of its arguments (struct ctl_command) */
        const char *cmd;      /* the command's name */
        uint64_t size;        /* SIZE of create, register, resize */
        uint32_t uid, gid;    /* chown's owner, IOMEM_ID_UNCHANGED for none */
        enum ctl_metrics_format format;
        char **rest;          /* exec: COMMAND [ARG...] after "--" */
        int in;               /* write, publish: the input file, -1 = stdin; closed by ctl_run() */
};

/* Return: the word @n (from 0) of @synopsis, up to its next space, in a static buffer. */
static const char *ctl_word(const char *synopsis, int n)
{
        static char word[64];
        size_t len;

        for (; n > 0 && strchr(synopsis, ' '); n--)
                synopsis = strchr(synopsis, ' ') + 1;
        len = strcspn(synopsis, " ");
        snprintf(word, sizeof(word), "%.*s", (int)(len < sizeof(word) ? len : sizeof(word) - 1), synopsis);
        return word;
}

/*
 * ctl_parse_args() - parse a command's options (permuted: options may come
 * before or after positionals) and up to @max_pos positional arguments.
 * @allowed: which OPT_* the command takes (bit OPT_x - OPT_SOCKET).
 * @synopsis: its arguments ("NAME SIZE"), to say which one is missing.
 * Return: 0, or an exit status after printing a usage error.
 */
static int ctl_parse_args(struct ctl *c, int argc, char **argv, unsigned allowed, int min_pos, int max_pos,
                          const char *synopsis, struct ctl_args *a)
{
        static const struct option opts[] = {
                { "socket", required_argument, NULL, OPT_SOCKET },
                { "json", no_argument, NULL, OPT_JSON },
                { "exclusive", no_argument, NULL, OPT_EXCLUSIVE },
                { "lease", no_argument, NULL, OPT_LEASE },
                { "resizable", no_argument, NULL, OPT_RESIZABLE },
                { "mode", required_argument, NULL, OPT_MODE },
                { "backend", required_argument, NULL, OPT_BACKEND },
                { "seal", required_argument, NULL, OPT_SEAL },
                { "offset", required_argument, NULL, OPT_OFFSET },
                { "length", required_argument, NULL, OPT_LENGTH },
                { "timeout", required_argument, NULL, OPT_TIMEOUT },
                { "read-only", no_argument, NULL, OPT_READ_ONLY },
                { "huge", optional_argument, NULL, OPT_HUGE },
                { "reserve", no_argument, NULL, OPT_RESERVE },
                { "help", no_argument, NULL, OPT_HELP },
                { "count", required_argument, NULL, OPT_COUNT },
                { "expect", required_argument, NULL, OPT_EXPECT },
                {},
        };
        const char *cmd = argv[0];
        int o, r;

        a->cmd = cmd;
        allowed |= 1u << (OPT_SOCKET - OPT_SOCKET) | 1u << (OPT_JSON - OPT_SOCKET) | 1u << (OPT_HELP - OPT_SOCKET);
        optind = 0; /* GNU: reinitialize */
        opterr = 0;
        /* every element is taken in order ("-"), and an error stops at the element's first letter: the
         * element being looked at is the one optind pointed to before the call */
        for (int at = 1; (o = getopt_long(argc, argv, "-", opts, NULL)) != -1; at = optind) {
                char *end;

                if (o == 1) {
                        if (a->npos >= max_pos)
                                return ctl_usage("%s: unexpected argument '%s'", cmd, optarg);
                        a->pos[a->npos++] = optarg;
                        continue;
                }
                if (o == '?' || o == ':')
                        return ctl_bad_option(cmd, argv[at]);
                if (!(allowed & (1u << (o - OPT_SOCKET))))
                        return ctl_usage("%s: option '%s' does not apply", cmd, argv[at]);
                switch (o) {
                case OPT_SOCKET:
                        c->socket = optarg;
                        break;
                case OPT_JSON:
                        c->json = true;
                        break;
                case OPT_HELP:
                        fputs(usage_text, stdout);
                        exit(EXIT_SUCCESS);
                case OPT_EXCLUSIVE:
                        a->create_flags |= IOMEM_CREATE_EXCLUSIVE;
                        break;
                case OPT_LEASE:
                        a->create_flags |= IOMEM_CREATE_LEASE;
                        break;
                case OPT_RESIZABLE:
                        a->create_flags |= IOMEM_CREATE_RESIZABLE;
                        break;
                case OPT_HUGE:
                        a->create_flags |= IOMEM_CREATE_HUGE;
                        if (!optarg)
                                break;
                        if (strcasecmp(optarg, "2M") == 0 || strcasecmp(optarg, "2MiB") == 0)
                                a->create_flags |= IOMEM_CREATE_HUGE_2MB;
                        else if (strcasecmp(optarg, "1G") == 0 || strcasecmp(optarg, "1GiB") == 0)
                                a->create_flags |= IOMEM_CREATE_HUGE_1GB;
                        else
                                return ctl_usage("%s: bad page size '%s' (2M or 1G)", cmd, optarg);
                        break;
                case OPT_RESERVE:
                        a->create_flags |= IOMEM_CREATE_RESERVE;
                        break;
                case OPT_MODE:
                        if (parse_mode(optarg, &a->mode) < 0)
                                return ctl_usage("%s: bad mode '%s' (octal, at most 0777)", cmd, optarg);
                        break;
                case OPT_BACKEND:
                        r = backend_from_name(optarg);
                        if (r < 0)
                                return ctl_usage("%s: unknown backend '%s' (memfd, shm, file, auto)", cmd, optarg);
                        a->backend = (enum iomem_backend)r;
                        break;
                case OPT_SEAL: {
                        uint32_t s;

                        if (iomem_seals_parse(optarg, &s) < 0)
                                return ctl_usage("%s: bad seal list '%s' (comma-separated: " PARSE_SEAL_NAMES ")", cmd,
                                                 optarg);
                        a->seals |= s;
                        break;
                }
                case OPT_OFFSET:
                case OPT_LENGTH: {
                        uint64_t v;

                        r = ctl_size(cmd, o == OPT_OFFSET ? "offset" : "length", optarg, &v);
                        if (r)
                                return r;
                        if (o == OPT_OFFSET)
                                a->offset = v;
                        else {
                                a->length = v;
                                a->have_length = true;
                        }
                        break;
                }
                case OPT_TIMEOUT:
                        errno = 0;
                        a->timeout = strtod(optarg, &end);
                        if (errno || end == optarg || *end || !(a->timeout >= 0) || a->timeout > INT_MAX / 1000)
                                return ctl_usage("%s: bad timeout '%s' (seconds)", cmd, optarg);
                        a->have_timeout = true;
                        break;
                case OPT_READ_ONLY:
                        a->read_only = true;
                        break;
                case OPT_COUNT:
                case OPT_EXPECT: {
                        unsigned long long v;

                        errno = 0;
                        v = strtoull(optarg, &end, 10);
                        if (errno || end == optarg || *end || *optarg == '-' || v == 0)
                                return ctl_usage("%s: bad %s '%s' (a positive number)", cmd,
                                                 o == OPT_COUNT ? "count" : "generation", optarg);
                        if (o == OPT_COUNT)
                                a->count = v;
                        else
                                a->expect = v;
                        break;
                }
                }
        }
        /* after "--", everything is a positional argument: a NAME may start with '-' */
        for (; optind < argc; optind++) {
                if (a->npos >= max_pos)
                        return ctl_usage("%s: unexpected argument '%s'", cmd, argv[optind]);
                a->pos[a->npos++] = argv[optind];
        }
        if (a->npos < min_pos)
                return ctl_usage("%s: missing %s (%s %s)", cmd, ctl_word(synopsis, a->npos), cmd, synopsis);
        c->name = a->npos ? a->pos[0] : NULL;
        return 0;
}

#define ALLOW(o) (1u << ((o) - OPT_SOCKET))

/* ---- commands ---------------------------------------------------------- */

/*
 * A command's steps: ctl_run() parses its arguments, calls prepare (checks
 * that need no daemon: usage errors come before connection errors), connects,
 * then calls run. prepare and run return 0, an exit status after printing an
 * error, or a negative errno that ctl_run() prints as the command's failure
 * ("CMD NAME: reason" for commands that take a NAME, else "CMD: reason").
 */
struct ctl_command {
        const char *name;
        int (*run)(struct ctl *c, struct ctl_args *a);
        int (*prepare)(struct ctl *c, struct ctl_args *a); /* NULL: nothing to check */
        unsigned allowed;                                   /* ALLOW(OPT_*) */
        int min_pos, max_pos;
        uint32_t connect_flags; /* IOMEM_CONNECT_* */
        const char *dashdash;   /* non-NULL: takes "-- COMMAND [ARG...]"; the synopsis for a usage error */
        const char *synopsis;   /* the positional arguments, to say which one is missing */
};

/* prepare of the commands whose second argument is a SIZE. */
static int ctl_prepare_size(struct ctl *c, struct ctl_args *a)
{
        (void)c;
        return ctl_size(a->cmd, "size", a->pos[1], &a->size);
}

static int ctl_prepare_create(struct ctl *c, struct ctl_args *a)
{
        if (!*a->pos[0]) /* the library would make an anonymous region, gone when iomemctl exits */
                return ctl_usage("create: empty name");
        return ctl_prepare_size(c, a);
}

static int cmd_create(struct ctl *c, struct ctl_args *a)
{
        struct iomem_create_opts opts = {
                .flags = a->create_flags, .seals = a->seals, .mode = a->mode, .backend = a->backend
        };
        struct iomem_region *region = NULL;
        int r;

        r = iomem_create(c->client, a->pos[0], a->size, &opts, &region);
        if (r < 0)
                return r;
        if (a->create_flags & (IOMEM_CREATE_HUGE | IOMEM_CREATE_RESERVE)) {
                uint32_t fl = iomem_region_flags(region);

                /* what the daemon made: the pages it could get, and whether the memory is already there */
                printf("pages: %s%s\n",
                       fl & IOMEM_REGION_HUGETLB ? "hugetlb" : fl & IOMEM_REGION_THP ? "transparent-huge" : "normal",
                       fl & IOMEM_REGION_RESERVED ? ", reserved" : "");
        }
        region = iomem_region_free(region);
        return 0;
}

/*
 * ctl_read() - read(2) that retries EINTR and waits with poll(2) where @fd is non-blocking (-EAGAIN): a shell may hand
 * on a stdin that another program set O_NONBLOCK, and an empty pipe then is not the end of the input.
 * Return: the bytes read, 0 at the end, or negative errno.
 */
static ssize_t ctl_read(int fd, void *buf, size_t len)
{
        for (;;) {
                ssize_t n = read(fd, buf, len);

                if (n >= 0)
                        return n;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                        struct pollfd p = { .fd = fd, .events = POLLIN };

                        if (poll(&p, 1, -1) < 0 && errno != EINTR)
                                return -errno;
                } else if (errno != EINTR)
                        return -errno;
        }
}

/* Read all of @fd (not a regular file) into a buffer, failing past @limit bytes. Return: 0; -EFBIG; negative errno. */
static int ctl_slurp(int fd, uint64_t limit, char **bufp, size_t *lenp)
{
        char *buf = NULL;
        size_t len = 0, cap = 0;

        for (;;) {
                ssize_t n;

                if (len == cap) {
                        size_t ncap = cap ? cap * 2 : 65536;
                        char *nbuf;

                        if ((uint64_t)cap > limit) {
                                free(buf);
                                return -EFBIG;
                        }
                        nbuf = realloc(buf, ncap);
                        if (!nbuf) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = nbuf;
                        cap = ncap;
                }
                n = ctl_read(fd, buf + len, cap - len);
                if (n < 0) {
                        free(buf);
                        return (int)n;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
                if ((uint64_t)len > limit) {
                        free(buf);
                        return -EFBIG;
                }
        }
        *bufp = buf;
        *lenp = len;
        return 0;
}

/* Map [offset, offset+length) of @region; *basep and *maplenp are what to unmap. Return: 0 or negative errno. */
static int ctl_map_range(struct iomem_region *region, uint64_t offset, uint64_t length, int prot, char **datap,
                         void **basep, size_t *maplenp)
{
        uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
        uint64_t start = offset - offset % page;
        uint64_t maplen = offset - start + length;
        void *base;
        int r;

        if (maplen > SIZE_MAX)
                return -ENOMEM;
        r = iomem_region_map(region, start, (size_t)maplen, prot, &base);
        if (r < 0)
                return r;
        *basep = base;
        *maplenp = (size_t)maplen;
        *datap = (char *)base + (offset - start);
        return 0;
}

/* Return: the input file of write and publish, NULL for stdin. */
static const char *ctl_input_file(const struct ctl_args *a)
{
        return a->npos > 1 && strcmp(a->pos[1], "-") ? a->pos[1] : NULL;
}

/* write's and publish's input is opened before connecting: a missing file is said first. */
static int ctl_prepare_input(struct ctl *c, struct ctl_args *a)
{
        const char *file = ctl_input_file(a);

        (void)c;
        if (!file)
                return 0;
        a->in = open(file, O_RDONLY | O_CLOEXEC);
        if (a->in < 0)
                return ctl_fail_os(-errno, "%s %s: open %s", a->cmd, a->pos[0], file);
        return 0;
}

static int cmd_write(struct ctl *c, struct ctl_args *a)
{
        struct iomem_region *region = NULL;
        const char *name = a->pos[0], *file = ctl_input_file(a);
        char *data, *buf = NULL;
        void *base;
        size_t maplen, len = 0;
        uint64_t size, room;
        struct stat st;
        int in = a->in >= 0 ? a->in : STDIN_FILENO, r;

        r = iomem_open(c->client, name, 0, 0, &region);
        if (r < 0)
                return r;
        size = iomem_region_size(region);
        room = a->offset <= size ? size - a->offset : 0;
        if (a->offset > size) {
                r = ctl_error("write %s: offset %" PRIu64 " is past the end of the region (%" PRIu64 " bytes)", name,
                             a->offset, size);
                goto out;
        }

        if (fstat(in, &st) == 0 && S_ISREG(st.st_mode)) {
                off_t pos = lseek(in, 0, SEEK_CUR);

                /* stdin may be left past the end of the file: nothing is left to write then */
                len = pos >= 0 && pos < st.st_size ? (size_t)(st.st_size - pos) : pos < 0 ? (size_t)st.st_size : 0;
                if ((uint64_t)len > room) {
                        r = ctl_error("write %s: %zu bytes at offset %" PRIu64 " do not fit in the region (%" PRIu64
                                      " bytes); nothing was written",
                                      name, len, a->offset, size);
                        goto out;
                }
        } else {
                r = ctl_slurp(in, room, &buf, &len);
                if (r == -EFBIG) {
                        r = ctl_error("write %s: the input does not fit in the region (%" PRIu64
                                      " bytes) at offset %" PRIu64 "; nothing was written",
                                      name, size, a->offset);
                        goto out;
                }
                if (r < 0) {
                        r = ctl_fail_os(r, "write %s: read input", name);
                        goto out;
                }
        }
        if (len == 0) {
                r = 0;
                goto out;
        }

        r = ctl_map_range(region, a->offset, len, PROT_READ | PROT_WRITE, &data, &base, &maplen);
        if (r < 0) {
                r = ctl_fail(c, r, "write %s: map", name);
                goto out;
        }
        if (buf)
                memcpy(data, buf, len);
        else {
                /* read(2) straight into the mapping: no copy through a buffer */
                size_t done = 0;

                while (done < len) {
                        ssize_t n = read(in, data + done, len - done);

                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0) {
                                r = ctl_fail_os(n < 0 ? -errno : -EIO, "write %s: read %s", name,
                                                file ? file : "stdin");
                                break;
                        }
                        done += (size_t)n;
                }
        }
        iomem_unmap(base, maplen);
out:
        free(buf);
        iomem_region_free(region);
        return r;
}

static int ctl_write_all(int fd, const char *p, size_t len)
{
        while (len > 0) {
                ssize_t n = write(fd, p, len > (1u << 30) ? (1u << 30) : len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static int cmd_read(struct ctl *c, struct ctl_args *a)
{
        struct iomem_region *region = NULL;
        const char *name = a->pos[0];
        uint64_t size, length;
        char num[32], *data;
        void *base;
        size_t maplen;
        int r;

        r = iomem_open(c->client, name, IOMEM_OPEN_RDONLY, 0, &region);
        if (r < 0)
                return r;
        r = iomem_region_refresh(region);
        size = iomem_region_size(region);
        if (r < 0)
                goto out;
        if (a->offset > size || (a->have_length && a->length > size - a->offset)) {
                r = ctl_error("read %s: offset %" PRIu64 "%s%s is past the end of the region (%" PRIu64 " bytes)",
                              name, a->offset, a->have_length ? " + length " : "",
                              a->have_length ? parse_size_format(a->length, num, sizeof(num)) : "", size);
                goto out;
        }
        length = a->have_length ? a->length : size - a->offset;
        if (length == 0)
                goto out;
        r = ctl_map_range(region, a->offset, length, PROT_READ, &data, &base, &maplen);
        if (r < 0) {
                r = ctl_fail(c, r, "read %s: map", name);
                goto out;
        }
        r = ctl_write_all(STDOUT_FILENO, data, (size_t)length);
        iomem_unmap(base, maplen);
        if (r < 0)
                r = ctl_fail_os(r, "read %s: write to stdout", name);
out:
        iomem_region_free(region);
        return r;
}

static int cmd_stat(struct ctl *c, struct ctl_args *a)
{
        struct iomem_stat st;
        char when[64] = "";
        time_t t;
        struct tm tm;
        int r;

        r = iomem_stat(c->client, a->pos[0], &st);
        if (r < 0)
                return r;
        t = (time_t)(st.ctime_ns / 1000000000u);
        if (gmtime_r(&t, &tm))
                strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);

        if (c->json) {
                fputs("{\"name\":", stdout);
                ctl_json_string(a->pos[0]);
                printf(",\"id\":%" PRIu64 ",\"size\":%" PRIu64 ",\"backend\":\"%s\",\"seals\":[", st.id, st.size,
                       ctl_backend_name(st.backend));
                ctl_print_bits(st.seals, SEAL_NAMES, true);
                fputs("],\"flags\":[", stdout);
                ctl_print_bits(st.flags, FLAG_NAMES, true);
                printf("],\"mode\":\"%04o\",\"uid\":%" PRIu32 ",\"gid\":%" PRIu32 ",\"open_count\":%" PRIu64
                       ",\"ctime_ns\":%" PRIu64 ",\"ctime\":\"%s\"}\n",
                       st.mode, st.uid, st.gid, st.open_count, st.ctime_ns, when);
        } else {
                fputs("name:       ", stdout);
                ctl_text_string(a->pos[0]);
                printf("\nid:         %" PRIu64 "\nsize:       %" PRIu64 "\nbackend:    %s\nseals:      ", st.id,
                       st.size, ctl_backend_name(st.backend));
                ctl_print_bits(st.seals, SEAL_NAMES, false);
                fputs("\nflags:      ", stdout);
                ctl_print_bits(st.flags, FLAG_NAMES, false);
                printf("\nmode:       %04o\nowner:      %" PRIu32 ":%" PRIu32 "\nopen count: %" PRIu64
                       "\ncreated:    %s\n",
                       st.mode, st.uid, st.gid, st.open_count, when);
        }
        return 0;
}

struct list_state {
        bool json;
        uint64_t n;
};

static int list_one(const struct iomem_list_entry *e, void *userdata)
{
        struct list_state *s = userdata;

        if (s->json) {
                fputs(s->n ? ",\n{\"name\":" : "{\"name\":", stdout);
                ctl_json_string(e->name);
                printf(",\"id\":%" PRIu64 ",\"size\":%" PRIu64 ",\"seals\":[", e->id, e->size);
                ctl_print_bits(e->seals, SEAL_NAMES, true);
                printf("],\"mode\":\"%04o\",\"uid\":%" PRIu32 ",\"gid\":%" PRIu32 "}", e->mode, e->uid, e->gid);
        } else {
                ctl_text_string(e->name);
                printf("\t%" PRIu64 "\t%04o\t%" PRIu32 ":%" PRIu32 "\t", e->size, e->mode, e->uid, e->gid);
                ctl_print_bits(e->seals, SEAL_NAMES, false);
                putchar('\n');
        }
        s->n++;
        return 0;
}

static int cmd_list(struct ctl *c, struct ctl_args *a)
{
        struct list_state s = { .json = c->json };
        int r;

        if (s.json)
                putchar('[');
        else if (isatty(STDOUT_FILENO)) /* headers for people; scripts reading a pipe get the bare rows */
                puts("NAME\tSIZE\tMODE\tOWNER\tSEALS");
        r = iomem_list(c->client, a->npos ? a->pos[0] : NULL, list_one, &s);
        if (r < 0) {
                /* do not leave half a JSON document behind a failure */
                fflush(stdout);
                if (r == -EINVAL && a->npos)
                        return ctl_error("list: invalid prefix '%s' (only A-Z a-z 0-9 . _ - / : @ + = ,)", a->pos[0]);
                return r;
        }
        if (s.json)
                puts("]");
        return 0;
}

static int cmd_rm(struct ctl *c, struct ctl_args *a)
{
        return iomem_delete(c->client, a->pos[0]);
}

static int cmd_resize(struct ctl *c, struct ctl_args *a)
{
        return iomem_resize(c->client, a->pos[0], a->size);
}

static int ctl_prepare_seal(struct ctl *c, struct ctl_args *a)
{
        uint32_t s;

        (void)c;
        for (int i = 1; i < a->npos; i++) {
                if (iomem_seals_parse(a->pos[i], &s) < 0)
                        return ctl_usage("seal: bad seal '%s' (" PARSE_SEAL_NAMES ")", a->pos[i]);
                a->seals |= s;
        }
        return 0;
}

static int cmd_seal(struct ctl *c, struct ctl_args *a)
{
        return iomem_seal(c->client, a->pos[0], a->seals, NULL);
}

/* Return: --timeout in milliseconds (a fraction of one rounds up: --timeout 0 still asks once), -1 = none. */
static int ctl_timeout_ms(const struct ctl_args *a)
{
        return !a->have_timeout ? -1 : (int)(a->timeout * 1000.0 + 0.999);
}

static int cmd_wait(struct ctl *c, struct ctl_args *a)
{
        struct iomem_region *region = NULL;
        int r;

        r = iomem_open(c->client, a->pos[0], IOMEM_OPEN_RDONLY, ctl_timeout_ms(a), &region);
        if (r == -ETIMEDOUT)
                return ctl_error("wait %s: no region with this name after %g s", a->pos[0], a->timeout);
        if (r < 0)
                return r;
        iomem_region_free(region);
        return 0;
}

static int cmd_exec(struct ctl *c, struct ctl_args *a)
{
        struct iomem_region *region = NULL;
        char **child_argv = a->rest;
        int status, fd, r;
        pid_t pid;

        r = iomem_open(c->client, a->pos[0], a->read_only ? IOMEM_OPEN_RDONLY : 0, 0, &region);
        if (r < 0)
                return r;
        fd = iomem_region_fd(region); /* checked at this first use: -EINVAL for an fd that is not a regular file */
        if (fd < 0) {
                iomem_region_free(region);
                return ctl_fail_os(fd, "exec %s", a->pos[0]);
        }
        fflush(NULL);
        pid = fork();
        if (pid < 0) {
                r = ctl_fail_os(-errno, "exec %s: fork", a->pos[0]);
                iomem_region_free(region);
                return r;
        }
        if (pid == 0) {
                char num[32];

                /* the one fd the child is meant to inherit: clear close-on-exec in the child only */
                if (fcntl(fd, F_SETFD, 0) < 0)
                        _exit(ctl_fail_os(-errno, "exec %s: fcntl", a->pos[0]));
                snprintf(num, sizeof(num), "%d", fd);
                setenv("IOMEM_FD", num, 1);
                snprintf(num, sizeof(num), "%" PRIu64, iomem_region_size(region));
                setenv("IOMEM_SIZE", num, 1);
                execvp(child_argv[0], child_argv);
                r = errno;
                ctl_fail_os(-r, "exec %s: %s", a->pos[0], child_argv[0]);
                _exit(r == ENOENT ? 127 : 126);
        }
        /* the daemon connection is not needed while the child runs */
        c->client = iomem_disconnect(c->client);
        region = iomem_region_free(region);
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return ctl_fail_os(-errno, "exec %s: waitpid", a->pos[0]);
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return 128 + WTERMSIG(status);
}

static int cmd_status(struct ctl *c, struct ctl_args *a)
{
        struct iomem_status st;
        int r;

        (void)a;
        r = iomem_status(c->client, &st);
        if (r < 0)
                return r;
        if (c->json) {
                printf("{\"version\":");
                ctl_json_string(st.server_version);
                printf(",\"regions\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"connections\":%" PRIu64
                       ",\"uptime_sec\":%" PRIu64 ",\"backend\":\"%s\"}\n",
                       st.regions, st.bytes, st.connections, st.uptime_sec, ctl_backend_name(st.backend));
        } else {
                fputs("version:     ", stdout);
                ctl_text_string(st.server_version);
                printf("\nregions:     %" PRIu64 "\nbytes:       %" PRIu64 "\nconnections: %" PRIu64
                       "\nuptime:      %" PRIu64 " s\nbackend:     %s\n",
                       st.regions, st.bytes, st.connections, st.uptime_sec, ctl_backend_name(st.backend));
        }
        return 0;
}

static int cmd_ping(struct ctl *c, struct ctl_args *a)
{
        int r;

        (void)a;
        r = iomem_ping(c->client);
        if (r < 0)
                return r;
        puts("pong");
        return 0;
}

/* Return: 0 with *idp, or -EINVAL unless @s (up to @end) is a decimal id below 2^32-1. */
static int ctl_parse_id(const char *s, const char *end, uint32_t *idp)
{
        uint64_t v = 0;

        if (s == end)
                return -EINVAL;
        for (const char *p = s; p < end; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t)(*p - '0');
                if (v >= UINT32_MAX)
                        return -EINVAL;
        }
        *idp = (uint32_t)v;
        return 0;
}

static int ctl_prepare_chmod(struct ctl *c, struct ctl_args *a)
{
        (void)c;
        if (parse_mode(a->pos[1], &a->mode) < 0)
                return ctl_usage("chmod: bad mode '%s' (octal, at most 0777)", a->pos[1]);
        return 0;
}

static int cmd_chmod(struct ctl *c, struct ctl_args *a)
{
        return iomem_chmod(c->client, a->pos[0], a->mode);
}

static int ctl_prepare_chown(struct ctl *c, struct ctl_args *a)
{
        const char *spec = a->pos[1], *colon = strchr(spec, ':');

        (void)c;
        a->uid = a->gid = IOMEM_ID_UNCHANGED;
        if (!colon)
                colon = spec + strlen(spec);
        if ((colon > spec && ctl_parse_id(spec, colon, &a->uid) < 0) ||
            (*colon && colon[1] && ctl_parse_id(colon + 1, colon + 1 + strlen(colon + 1), &a->gid) < 0) ||
            (a->uid == IOMEM_ID_UNCHANGED && a->gid == IOMEM_ID_UNCHANGED))
                return ctl_usage("chown: bad owner '%s' (UID, UID:GID or :GID, numeric)", spec);
        return 0;
}

static int cmd_chown(struct ctl *c, struct ctl_args *a)
{
        return iomem_chown(c->client, a->pos[0], a->uid, a->gid);
}

/* One "used / limit" line; a limit of 0 is "unlimited". */
static void ctl_print_quota_line(const char *label, uint64_t used, uint64_t limit)
{
        if (limit)
                printf("%-13s%" PRIu64 " / %" PRIu64 "\n", label, used, limit);
        else
                printf("%-13s%" PRIu64 " / unlimited\n", label, used);
}

static int cmd_quota(struct ctl *c, struct ctl_args *a)
{
        struct iomem_quota q;
        int r;

        (void)a;
        r = iomem_quota(c->client, &q);
        if (r < 0)
                return r;
        if (c->json) {
                printf("{\"uid\":%" PRIu32 ",\"gid\":%" PRIu32 ",\"bytes\":%" PRIu64 ",\"max_bytes\":%" PRIu64
                       ",\"regions\":%" PRIu64 ",\"max_regions\":%" PRIu64 ",\"connections\":%" PRIu64
                       ",\"max_connections\":%" PRIu64 ",\"fds\":%" PRIu64 ",\"max_fds\":%" PRIu64
                       ",\"max_region_size\":%" PRIu64 "}\n",
                       q.uid, q.gid, q.bytes, q.max_bytes, q.regions, q.max_regions, q.connections,
                       q.max_connections, q.fds, q.max_fds, q.max_region_size);
                return 0;
        }
        printf("uid:         %" PRIu32 " (gid %" PRIu32 ")\n", q.uid, q.gid);
        ctl_print_quota_line("bytes:", q.bytes, q.max_bytes);
        ctl_print_quota_line("regions:", q.regions, q.max_regions);
        ctl_print_quota_line("connections:", q.connections, q.max_connections);
        ctl_print_quota_line("fds:", q.fds, q.max_fds);
        printf("region size: at most %" PRIu64 "\n", q.max_region_size);
        return 0;
}

/*
 * ctl_copy_fd() - copy what is left of @in into @fd from offset 0 through a small buffer, so the memory used does not
 * grow with the input; a memfd not sealed against growing grows as the bytes come. One byte past @limit ends the
 * copy as soon as it is read: an input that never ends (a pipe, /dev/zero) is refused after @limit + 1 bytes.
 * Return: 0 once @in ended; CTL_COPY_OVER past @limit (positive: an -EFBIG of pwrite(2), the file size limit of
 * `ulimit -f`, is another error); negative errno of read(2) or pwrite(2).
 */
#define CTL_COPY_OVER 1
static int ctl_copy_fd(int fd, int in, uint64_t limit)
{
        char buf[65536];
        uint64_t off = 0;

        for (;;) {
                size_t want = limit - off < sizeof(buf) ? (size_t)(limit - off) + 1 : sizeof(buf);
                ssize_t n = ctl_read(in, buf, want);

                if (n < 0)
                        return (int)n;
                if (n == 0)
                        break;
                if ((uint64_t)n > limit - off)
                        return CTL_COPY_OVER;
                for (ssize_t done = 0; done < n;) {
                        ssize_t w = pwrite(fd, buf + done, (size_t)(n - done), (off_t)(off + (uint64_t)done));

                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w < 0)
                                return -errno;
                        done += w;
                }
                off += (uint64_t)n;
        }
        return 0;
}

/*
 * The daemon's max-region-size (QUOTA), in *maxp; UINT64_MAX for none. With @bytes_limit, *maxp is lowered to the
 * uid's quota-bytes where that is smaller (a version larger than all the bytes the uid may own is never accepted),
 * and *keyp names the iomemd.conf key of the limit that applies. Return: 0 or iomem_quota()'s error.
 */
static int ctl_max_region_size(struct ctl *c, uint64_t *maxp, bool bytes_limit, const char **keyp)
{
        struct iomem_quota q;
        int r;

        r = iomem_quota(c->client, &q);
        if (r < 0)
                return r;
        *maxp = q.max_region_size ? q.max_region_size : UINT64_MAX;
        if (keyp)
                *keyp = "max-region-size";
        if (bytes_limit && q.max_bytes && q.max_bytes < *maxp) {
                *maxp = q.max_bytes;
                if (keyp)
                        *keyp = "quota-bytes";
        }
        return 0;
}

/* Copy @path ("-" = stdin) into @fd, at most @size bytes. Return: 0; CTL_COPY_OVER (more than @size); negative errno. */
static int ctl_fill_fd(int fd, const char *path, uint64_t size)
{
        int in = STDIN_FILENO, r;

        if (strcmp(path, "-") != 0) {
                in = open(path, O_RDONLY | O_CLOEXEC);
                if (in < 0)
                        return -errno;
        }
        /* more input than SIZE: refuse rather than register a silently cut copy (CTL_COPY_OVER, the caller says so) */
        r = ctl_copy_fd(fd, in, size);
        if (in != STDIN_FILENO)
                close(in);
        return r;
}

static int cmd_register(struct ctl *c, struct ctl_args *a)
{
        struct iomem_region *region = NULL;
        uint64_t id, max;
        char num[2][32];
        int r;

        /* a SIZE the daemon refuses is said before FILE is read into it, not after */
        if (a->npos > 2) {
                r = ctl_max_region_size(c, &max, false, NULL);
                if (r < 0)
                        return r;
                /* in the daemon's words (daemon/conn-region.c), as register without FILE and before pubstream */
                if (a->size > max)
                        return ctl_error("register %s: size above the daemon's limit: %s asked, max-region-size is "
                                         "%s; ask for less, or raise max-region-size in iomemd.conf",
                                         a->pos[0], parse_size_format(a->size, num[0], sizeof(num[0])),
                                         parse_size_format(max, num[1], sizeof(num[1])));
        }
        /* a memfd made here, 0600: its pages are charged to whoever first touches them, this process for FILE */
        r = iomem_region_new_local(a->size, IOMEM_BACKEND_MEMFD, 0, &region);
        if (r < 0)
                return ctl_fail(c, r, "register %s: memfd", a->pos[0]);
        if (a->npos > 2) {
                r = ctl_fill_fd(iomem_region_fd(region), a->pos[2], a->size);
                if (r == CTL_COPY_OVER) {
                        iomem_region_free(region);
                        return ctl_error("register %s: %s holds more than the %" PRIu64 " bytes asked; nothing "
                                         "was registered: give a SIZE that fits it",
                                         a->pos[0], strcmp(a->pos[2], "-") ? a->pos[2] : "the input", a->size);
                }
                if (r < 0) {
                        iomem_region_free(region);
                        return ctl_fail_os(r, "register %s: %s", a->pos[0], a->pos[2]);
                }
        }
        r = iomem_region_seal(region, IOMEM_REGISTER_SEALS | a->seals);
        if (r < 0) {
                iomem_region_free(region);
                return ctl_fail(c, r, "register %s: seal", a->pos[0]);
        }
        r = iomem_register(c->client, a->pos[0], region,
                           a->create_flags & IOMEM_CREATE_LEASE ? IOMEM_REGISTER_LEASE : 0, a->mode, &id);
        iomem_region_free(region);
        if (r < 0)
                return r;
        if (c->json)
                printf("{\"id\":%" PRIu64 "}\n", id);
        return 0;
}

static int ctl_prepare_metrics(struct ctl *c, struct ctl_args *a)
{
        a->format = CTL_METRICS_OPENMETRICS;
        if (a->npos && ctl_metrics_parse_format(a->pos[0], &a->format) < 0)
                return ctl_usage("metrics: unknown format '%s' (openmetrics, prometheus)", a->pos[0]);
        if (c->json)
                a->format = CTL_METRICS_JSON;
        return 0;
}

static int cmd_metrics(struct ctl *c, struct ctl_args *a)
{
        return ctl_metrics_print(c->client, a->format, stdout);
}

/* ---- watch and publish (events) ---------------------------------------- */

static void ctl_print_event(const struct ctl *c, const struct iomem_event *ev)
{
        const char *kind;

        switch (ev->kind) {
        case IOMEM_EVENT_OVERFLOW:
                kind = "overflow";
                break;
        case IOMEM_EVENT_CREATED:
                kind = "created";
                break;
        case IOMEM_EVENT_DELETED:
                kind = "deleted";
                break;
        case IOMEM_EVENT_RESIZED:
                kind = "resized";
                break;
        case IOMEM_EVENT_SEALED:
                kind = "sealed";
                break;
        case IOMEM_EVENT_CHMOD:
                kind = "chmod";
                break;
        case IOMEM_EVENT_CHOWN:
                kind = "chown";
                break;
        case IOMEM_EVENT_PUBLISHED:
                kind = "published";
                break;
        default:
                kind = "unknown";
                break;
        }
        if (ev->kind == IOMEM_EVENT_OVERFLOW) {
                if (c->json)
                        printf("{\"event\":\"overflow\",\"dropped\":%" PRIu64 "}\n", ev->dropped);
                else
                        printf("overflow dropped=%" PRIu64 "\n", ev->dropped);
                return;
        }
        if (c->json) {
                printf("{\"event\":\"%s\",\"name\":", kind);
                ctl_json_string(ev->name);
                printf(",\"id\":%" PRIu64 ",\"generation\":%" PRIu64 ",\"size\":%" PRIu64 ",\"seals\":[", ev->id,
                       ev->generation, ev->size);
                ctl_print_bits(ev->seals, SEAL_NAMES, true);
                printf("],\"mode\":\"%04o\",\"uid\":%" PRIu32 ",\"gid\":%" PRIu32, ev->mode, ev->uid, ev->gid);
                if (ev->kind == IOMEM_EVENT_PUBLISHED)
                        printf(",\"replaced_id\":%" PRIu64, ev->replaced_id);
                fputs("}\n", stdout);
                return;
        }
        printf("%s ", kind);
        ctl_text_string(ev->name);
        printf(" id=%" PRIu64 " generation=%" PRIu64 " size=%" PRIu64 " seals=", ev->id, ev->generation, ev->size);
        ctl_print_bits(ev->seals, SEAL_NAMES, false);
        printf(" mode=%04o owner=%" PRIu32 ":%" PRIu32, ev->mode, ev->uid, ev->gid);
        if (ev->kind == IOMEM_EVENT_PUBLISHED)
                printf(" replaced=%" PRIu64, ev->replaced_id);
        putchar('\n');
}

static int cmd_watch(struct ctl *c, struct ctl_args *a)
{
        const char *prefix = a->npos ? a->pos[0] : "";
        struct iomem_event ev;
        uint64_t seen = 0;
        int wait_ms = ctl_timeout_ms(a), r;

        r = iomem_watch(c->client, prefix, NULL);
        if (r < 0)
                return ctl_fail(c, r, "watch %s", prefix);
        /* the watch is in place: a script may now make the changes it wants to see (stderr: stdout stays events) */
        fputs("iomemctl: watching '", stderr);
        ctl_quoted(stderr, prefix, false);
        fputs("'\n", stderr);
        while (!a->count || seen < a->count) {
                r = iomem_next_event(c->client, &ev, wait_ms);
                if (r == -EAGAIN)
                        return 0; /* quiet for --timeout */
                if (r < 0)
                        return r;
                ctl_print_event(c, &ev);
                if (fflush(stdout) != 0)
                        return ctl_fail_os(-errno, "write to stdout");
                seen++;
        }
        return 0;
}

/*
 * publish streams its input into a memfd it makes, which grows as the bytes come, and stops reading one byte past the
 * daemon's max-region-size (from QUOTA): an endless input is refused at once and the memory used stays one buffer.
 * The version is sent only once the input ended within that size: it is whole or not sent.
 */
static int cmd_publish(struct ctl *c, struct ctl_args *a)
{
        struct iomem_publish_opts opts = { 0 };
        struct iomem_region *region = NULL;
        const char *file = ctl_input_file(a), *key;
        int in = a->in >= 0 ? a->in : STDIN_FILENO, r;
        uint64_t generation, max;
        struct stat st;
        char num[32];

        r = ctl_max_region_size(c, &max, true, &key);
        if (r < 0)
                return r;
        /* a regular file whose rest is already past the limit is refused before a byte of it is read (the copy
         * would stop one byte past it: up to max-region-size read and written into a memfd for nothing) */
        if (fstat(in, &st) == 0 && S_ISREG(st.st_mode)) {
                off_t pos = lseek(in, 0, SEEK_CUR);

                if (pos >= 0 && st.st_size > pos && (uint64_t)(st.st_size - pos) > max)
                        r = CTL_COPY_OVER;
        }
        if (r == 0) {
                r = iomem_region_new_local(0, IOMEM_BACKEND_MEMFD, 0, &region);
                if (r < 0)
                        return ctl_fail_os(r, "publish %s: memfd", a->pos[0]);
                r = ctl_copy_fd(iomem_region_fd(region), in, max);
        }
        if (r == CTL_COPY_OVER) {
                iomem_region_free(region);
                return ctl_error("publish %s: %s is larger than %s %s (%s); nothing was published: publish less, or "
                                 "raise %s in iomemd.conf",
                                 a->pos[0], file ? file : "the input",
                                 strcmp(key, "quota-bytes") ? "the daemon's" : "your", key,
                                 parse_size_format(max, num, sizeof(num)), key);
        }
        if (r < 0) {
                iomem_region_free(region);
                return ctl_fail_os(r, "publish %s: copy %s into a memfd", a->pos[0], file ? file : "stdin");
        }
        /*
         * The daemon, which may run as another uid (DynamicUser), reopens the memfd
         * read-only through /proc to hand it out: its inode must be readable by others.
         * Sealed against writes below, nobody can change it through that.
         */
        if (fchmod(iomem_region_fd(region), 0644) < 0)
                r = -errno;
        /* an immutable snapshot: readers of this generation all see these bytes */
        if (r >= 0)
                r = iomem_region_seal(region, IOMEM_REGISTER_SEALS | IOMEM_SEAL_WRITE | a->seals);
        if (r < 0) {
                iomem_region_free(region);
                return ctl_fail_os(r, "publish %s: memfd", a->pos[0]);
        }
        opts.flags = a->create_flags & IOMEM_CREATE_LEASE ? IOMEM_PUBLISH_LEASE : 0;
        opts.mode = a->mode;
        opts.expect_generation = a->expect;
        r = iomem_publish(c->client, a->pos[0], region, &opts, &generation);
        iomem_region_free(region);
        if (r < 0)
                return r;
        if (c->json)
                printf("{\"generation\":%" PRIu64 "}\n", generation);
        else
                printf("%" PRIu64 "\n", generation);
        return 0;
}

#define ALLOW_CREATE                                                                                          \
        (ALLOW(OPT_EXCLUSIVE) | ALLOW(OPT_LEASE) | ALLOW(OPT_RESIZABLE) | ALLOW(OPT_MODE) | ALLOW(OPT_BACKEND) |     \
         ALLOW(OPT_SEAL) | ALLOW(OPT_HUGE) | ALLOW(OPT_RESERVE))
/* register and publish: a memfd made here */
#define ALLOW_REGISTER (ALLOW(OPT_LEASE) | ALLOW(OPT_MODE) | ALLOW(OPT_SEAL))

static const struct ctl_command commands[] = {
        /* name, run, prepare, options, min and max positional arguments, connect flags, "--" synopsis,
         * positional arguments */
        { "create", cmd_create, ctl_prepare_create, ALLOW_CREATE, 2, 2, 0, NULL, "NAME SIZE" },
        { "write", cmd_write, ctl_prepare_input, ALLOW(OPT_OFFSET), 1, 2, 0, NULL, "NAME [FILE]" },
        { "read", cmd_read, NULL, ALLOW(OPT_OFFSET) | ALLOW(OPT_LENGTH), 1, 1, 0, NULL, "NAME" },
        { "stat", cmd_stat, NULL, 0, 1, 1, 0, NULL, "NAME" },
        { "list", cmd_list, NULL, 0, 0, 1, 0, NULL, "[PREFIX]" },
        { "rm", cmd_rm, NULL, 0, 1, 1, 0, NULL, "NAME" },
        { "resize", cmd_resize, ctl_prepare_size, 0, 2, 2, 0, NULL, "NAME SIZE" },
        { "seal", cmd_seal, ctl_prepare_seal, 0, 2, 8, 0, NULL, "NAME SEAL..." },
        { "wait", cmd_wait, NULL, ALLOW(OPT_TIMEOUT), 1, 1, 0, NULL, "NAME" },
        { "exec", cmd_exec, NULL, ALLOW(OPT_READ_ONLY), 1, 1, 0, "NAME [--read-only] -- COMMAND [ARG...]",
          "NAME [--read-only] -- COMMAND [ARG...]" },
        { "chmod", cmd_chmod, ctl_prepare_chmod, 0, 2, 2, 0, NULL, "NAME MODE" },
        { "chown", cmd_chown, ctl_prepare_chown, 0, 2, 2, 0, NULL, "NAME [UID][:GID]" },
        { "quota", cmd_quota, NULL, 0, 0, 0, 0, NULL, "" },
        { "register", cmd_register, ctl_prepare_size, ALLOW_REGISTER, 2, 3, 0, NULL, "NAME SIZE [FILE]" },
        { "watch", cmd_watch, NULL, ALLOW(OPT_COUNT) | ALLOW(OPT_TIMEOUT), 0, 1, IOMEM_CONNECT_EVENTS, NULL,
          "[PREFIX]" },
        { "publish", cmd_publish, ctl_prepare_input, ALLOW_REGISTER | ALLOW(OPT_EXPECT), 1, 2,
          IOMEM_CONNECT_EVENTS, NULL, "NAME [FILE]" },
        { "status", cmd_status, NULL, 0, 0, 0, 0, NULL, "" },
        { "ping", cmd_ping, NULL, 0, 0, 0, 0, NULL, "" },
        { "metrics", cmd_metrics, ctl_prepare_metrics, 0, 0, 1, 0, NULL, "[FORMAT]" },
};

/*
 * ctl_run() - run @cmd with its @argc arguments @argv (argv[0] is its name):
 * parse, prepare, connect, run, and print a negative result as its failure.
 * Return: the exit status.
 */
static int ctl_run(struct ctl *c, const struct ctl_command *cmd, int argc, char **argv)
{
        struct ctl_args a = { .backend = IOMEM_BACKEND_AUTO, .in = -1 };
        int r;

        if (cmd->dashdash) {
                int sep = 1;

                while (sep < argc && strcmp(argv[sep], "--") != 0)
                        sep++;
                /* `iomemctl exec --help` is a request for help, as for every other command, not a usage error */
                for (int i = 1; i < sep; i++)
                        if (strcmp(argv[i], "--help") == 0) {
                                fputs(usage_text, stdout);
                                exit(EXIT_SUCCESS);
                        }
                if (sep + 1 >= argc)
                        return ctl_usage("%s: expected %s", cmd->name, cmd->dashdash);
                a.rest = argv + sep + 1;
                argc = sep;
        }
        r = ctl_parse_args(c, argc, argv, cmd->allowed, cmd->min_pos, cmd->max_pos, cmd->synopsis, &a);
        if (r == 0 && cmd->prepare)
                r = cmd->prepare(c, &a);
        if (r == 0) {
                c->connect_flags |= cmd->connect_flags;
                r = ctl_connect(c);
        }
        if (r == 0)
                r = cmd->run(c, &a);
        if (r < 0 && cmd->min_pos > 0)
                r = ctl_fail(c, r, "%s %s", cmd->name, a.pos[0]);
        else if (r < 0)
                r = ctl_fail(c, r, "%s", cmd->name);
        if (a.in >= 0)
                close(a.in);
        return r;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "socket", required_argument, NULL, OPT_SOCKET },
                { "json", no_argument, NULL, OPT_JSON },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        struct ctl c = { 0 };
        int o, r;

        opterr = 0;
        for (int at = 1; (o = getopt_long(argc, argv, "+hV", opts, NULL)) != -1; at = optind) {
                switch (o) {
                case OPT_SOCKET:
                        c.socket = optarg;
                        break;
                case OPT_JSON:
                        c.json = true;
                        break;
                case 'h':
                        fputs(usage_text, stdout);
                        return EXIT_SUCCESS;
                case 'V':
                        printf("iomemctl %s\n", IOMEM_VERSION);
                        return EXIT_SUCCESS;
                default:
                        return ctl_bad_option(NULL, argv[at]);
                }
        }
        if (optind >= argc)
                return ctl_usage("no command given");
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
                if (strcmp(commands[i].name, argv[optind]))
                        continue;
                r = ctl_run(&c, &commands[i], argc - optind, argv + optind);
                c.client = iomem_disconnect(c.client);
                if (fflush(stdout) != 0 && r == 0)
                        r = ctl_fail_os(-errno, "write to stdout");
                return r;
        }
        return ctl_usage("unknown command '%s'", argv[optind]);
}
