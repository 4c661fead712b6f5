/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* config: iomemd's settings, their defaults and the command line. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "config.h"
#include "log.h"
#include "parse.h"
#include "paths.h"
#include "quote.h"

void config_init(struct config *c)
{
        *c = (struct config){
                .backend = PROTO_BACKEND_AUTO,
                .allowed_backends = CONFIG_ALL_BACKENDS,
                .max_region_size = CONFIG_DEFAULT_MAX_REGION_SIZE,
                .max_regions = CONFIG_DEFAULT_MAX_REGIONS,
                .max_connections = CONFIG_DEFAULT_MAX_CONNECTIONS,
                .max_bytes = 0,
                .default_mode = CONFIG_DEFAULT_MODE,
                .handshake_timeout_sec = CONFIG_DEFAULT_HANDSHAKE_TIMEOUT,
                .max_out_bytes = 0,
                .max_events = CONFIG_DEFAULT_MAX_EVENTS,
                .quota = { .watches = CONFIG_DEFAULT_QUOTA_WATCHES },
                .log_level = LOG_LEVEL_INFO,
        };
}

void config_deinit(struct config *c)
{
        if (!c)
                return;
        free(c->socket_path);
        free(c->tmpdir);
        free(c->config_file);
        free(c->rules);
        free(c->allow_uids);
        free(c->allow_gids);
        c->socket_path = NULL;
        c->tmpdir = NULL;
        c->config_file = NULL;
        c->rules = NULL;
        c->allow_uids = c->allow_gids = NULL;
        c->nrules = c->nallow_uids = c->nallow_gids = 0;
}

int config_default_socket(char **pathp)
{
        char path[PATH_MAX];
        enum paths_source source;
        int r;

        r = paths_daemon_socket(path, sizeof(path), geteuid() == 0, &source);
        if (r < 0)
                return r;
        if (source == PATHS_FROM_SYSTEM && mkdir(PATHS_SYSTEM_SOCKET_DIR, 0755) < 0 && errno != EEXIST)
                return -errno;
        *pathp = strdup(path);
        return *pathp ? 0 : -ENOMEM;
}

static void config_usage(FILE *f)
{
        fprintf(f,
                "Usage: iomemd [OPTIONS]\n"
                "Broker of shared memory regions passed as file descriptors.\n\n"
                "  --config PATH              configuration file (default: " CONFIG_DEFAULT_FILE " if it\n"
                "                             exists); options given here win over it; SIGHUP rereads it\n"
                "  --socket PATH              listening socket (default: $IOMEM_SOCKET, else\n"
                "                             " CONFIG_SYSTEM_SOCKET " as root, else\n"
                "                             $XDG_RUNTIME_DIR/iomemd.sock)\n"
                "  --backend NAME             auto|memfd|shm|file (default: auto)\n"
                "  --allowed-backends LIST    backends clients may ask for, comma-separated (default:\n"
                "                             memfd,shm,file); --backend must be one of them or auto\n"
                "  --max-region-size SIZE     largest region, K/M/G/T suffixes (default: 64G)\n"
                "  --max-regions N            named regions held at once (default: %u)\n"
                "  --max-connections N        clients connected at once (default: %u)\n"
                "  --max-bytes SIZE           total bytes of named regions, 0 = unlimited (default: 0)\n"
                "  --default-mode OCTAL       mode of regions created with mode 0 (default: %04o)\n"
                "  --quota-bytes SIZE         per uid: bytes of named regions owned, 0 = unlimited (default: 0)\n"
                "  --quota-regions N          per uid: named regions owned, 0 = unlimited (default: 0)\n"
                "  --quota-connections N      per uid: connections at once, 0 = unlimited (default: 0)\n"
                "  --quota-fds N              per uid: fds queued towards it, 0 = 1/16 of half the fd limit (default: 0)\n"
                "  --quota-watches N          per uid: WATCHes held, 0 = unlimited (default: %u)\n"
                "  --allow-uids LIST          only these uids (comma-separated) and --allow-gids may connect\n"
                "  --allow-gids LIST          only members of these gids and --allow-uids may connect\n"
                "  --handshake-timeout SEC    drop clients that send no HELLO in time, 0 = never (default: %u)\n"
                "  --max-out-bytes SIZE       per-client reply queue bound, 0 = built-in (default: 0)\n"
                "  --max-events N             per client: events queued before they are dropped for one\n"
                "                             OVERFLOW event (default: %u)\n"
                "  --log-level LEVEL          error|warning|notice|info|debug (default: info)\n"
                "  --tmpdir DIR               directory for the file backend (default: $TMPDIR or /tmp)\n"
                "  --max-region-fds N         region fds kept in the daemon itself; the others are held by\n"
                "                             keeper processes (default: 0 = derived from the fd limit)\n"
                "  -t, --check-config         check the configuration file and options as a start or SIGHUP\n"
                "                             would read them, then exit: 0 valid, 1 invalid (the error on\n"
                "                             stderr), 2 usage; nothing is bound, started or changed\n"
                "  --pid PID                  with --check-config: check the command line of the running\n"
                "                             iomemd PID (/proc/PID/cmdline) and the file it names, what its\n"
                "                             SIGHUP would load; no other option with it\n"
                "  -h, --help                 show this help\n"
                "  -V, --version              show the version\n",
                CONFIG_DEFAULT_MAX_REGIONS, CONFIG_DEFAULT_MAX_CONNECTIONS, CONFIG_DEFAULT_MODE,
                CONFIG_DEFAULT_QUOTA_WATCHES, CONFIG_DEFAULT_HANDSHAKE_TIMEOUT, CONFIG_DEFAULT_MAX_EVENTS);
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

/* Parse "1000, 1001,1002" into a fresh array. Return: 0; -EINVAL with *whyp; -ENOMEM. */
static int config_parse_ids(const char *s, uint32_t **idsp, size_t *np, const char **whyp)
{
        uint32_t *ids = NULL;
        size_t n = 0;

        for (const char *p = s;;) {
                uint64_t v;
                char *end;

                while (*p == ' ' || *p == '\t')
                        p++;
                if (parse_u64(p, &v, &end) < 0 || v >= UINT32_MAX) {
                        free(ids);
                        *whyp = "expected comma-separated numeric ids below 4294967295";
                        return -EINVAL;
                }
                if (n >= CONFIG_MAX_ALLOW) {
                        free(ids);
                        *whyp = "too many ids";
                        return -EINVAL;
                }
                uint32_t *grown = realloc(ids, (n + 1) * sizeof(*ids));
                if (!grown) {
                        free(ids);
                        return -ENOMEM;
                }
                ids = grown;
                ids[n++] = (uint32_t)v;
                p = end;
                while (*p == ' ' || *p == '\t')
                        p++;
                if (*p == '\0')
                        break;
                if (*p != ',') {
                        free(ids);
                        *whyp = "expected comma-separated numeric ids";
                        return -EINVAL;
                }
                p++;
        }
        *idsp = ids;
        *np = n;
        return 0;
}

/* "memfd, shm" into CONFIG_BACKEND_BIT()s. Return: 0 with *maskp; -EINVAL with *whyp. */
static int config_parse_backends(const char *s, uint32_t *maskp, const char **whyp)
{
        uint32_t mask = 0;

        *whyp = "expected a comma-separated list of memfd, shm and file";
        for (const char *p = s;;) {
                char name[16];
                size_t len;
                int b;

                while (*p == ' ' || *p == '\t')
                        p++;
                len = strcspn(p, ", \t");
                if (len == 0 || len >= sizeof(name))
                        return -EINVAL;
                memcpy(name, p, len);
                name[len] = '\0';
                b = backend_from_name(name);
                if (b < 0 || b == PROTO_BACKEND_AUTO)
                        return -EINVAL;
                mask |= CONFIG_BACKEND_BIT(b);
                p += len;
                while (*p == ' ' || *p == '\t')
                        p++;
                if (*p == '\0')
                        break;
                if (*p != ',')
                        return -EINVAL;
                p++;
        }
        *maskp = mask;
        return 0;
}

int config_backend_for(const struct config *c, enum proto_backend requested, enum proto_backend *backendp)
{
        static const enum proto_backend order[] = { PROTO_BACKEND_MEMFD, PROTO_BACKEND_SHM, PROTO_BACKEND_FILE };

        if (requested != PROTO_BACKEND_AUTO) {
                if (!(c->allowed_backends & CONFIG_BACKEND_BIT(requested)))
                        return -EPERM;
                *backendp = requested;
                return 0;
        }
        if (c->backend != PROTO_BACKEND_AUTO || (c->allowed_backends & CONFIG_ALL_BACKENDS) == CONFIG_ALL_BACKENDS) {
                *backendp = c->backend;
                return 0;
        }
        for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
                if (c->allowed_backends & CONFIG_BACKEND_BIT(order[i])) {
                        *backendp = order[i];
                        return 0;
                }
        }
        return -EPERM;
}

/* Return: 0 with *vp; -EINVAL with *whyp. */
static int config_value_count(const char *value, uint64_t *vp, const char **whyp)
{
        if (parse_u64(value, vp, NULL) < 0) {
                *whyp = "expected a number";
                return -EINVAL;
        }
        return 0;
}

static int config_value_size(const char *value, uint64_t *vp, const char **whyp)
{
        if (parse_size(value, vp) < 0) {
                *whyp = "expected a size like 16G";
                return -EINVAL;
        }
        return 0;
}

/*
 * A quota-* key, for the defaults (@rule NULL) or a [uid]/[gid] section.
 * Return: 1 if @key is a quota key (applied), 0 if not, -EINVAL with *whyp.
 */
static int config_set_quota(struct config *c, struct config_quota_rule *rule, const char *key, const char *value,
                            const char **whyp)
{
        struct config_quota *q = rule ? &rule->quota : &c->quota;
        uint64_t v;
        uint32_t bit;
        int r;

        if (strcmp(key, "quota-bytes") == 0) {
                r = config_value_size(value, &v, whyp);
                q->bytes = v;
                bit = CONFIG_QUOTA_SET_BYTES;
        } else if (strcmp(key, "quota-regions") == 0) {
                r = config_value_count(value, &v, whyp);
                q->regions = v;
                bit = CONFIG_QUOTA_SET_REGIONS;
        } else if (strcmp(key, "quota-connections") == 0) {
                r = config_value_count(value, &v, whyp);
                q->connections = v;
                bit = CONFIG_QUOTA_SET_CONNECTIONS;
        } else if (strcmp(key, "quota-fds") == 0) {
                r = config_value_count(value, &v, whyp);
                q->fds = v;
                bit = CONFIG_QUOTA_SET_FDS;
        } else if (strcmp(key, "quota-watches") == 0) {
                r = config_value_count(value, &v, whyp);
                q->watches = v;
                bit = CONFIG_QUOTA_SET_WATCHES;
        } else {
                return 0;
        }
        if (r < 0)
                return r;
        if (rule)
                rule->set |= bit;
        return 1;
}

/*
 * config_set() - one setting, by its long option name, from the command
 * line or the file. Return: 0; -ENOENT for an unknown key; -EINVAL with
 * *whyp; -ENOMEM.
 */
static int config_set(struct config *c, const char *key, const char *value, const char **whyp)
{
        uint64_t v;
        int r;

        r = config_set_quota(c, NULL, key, value, whyp);
        if (r != 0)
                return r < 0 ? r : 0;
        if (strcmp(key, "backend") == 0) {
                r = backend_from_name(value);
                if (r < 0) {
                        *whyp = "expected auto, memfd, shm or file";
                        return -EINVAL;
                }
                c->backend = r;
        } else if (strcmp(key, "allowed-backends") == 0) {
                r = config_parse_backends(value, &c->allowed_backends, whyp);
                if (r < 0)
                        return r;
        } else if (strcmp(key, "max-region-size") == 0) {
                if (parse_size(value, &v) < 0 || v == 0) {
                        *whyp = "expected a positive size like 1G";
                        return -EINVAL;
                }
                c->max_region_size = v;
        } else if (strcmp(key, "max-regions") == 0 || strcmp(key, "max-connections") == 0) {
                if (parse_u64(value, &v, NULL) < 0 || v == 0) {
                        *whyp = "expected a positive number";
                        return -EINVAL;
                }
                if (key[4] == 'r')
                        c->max_regions = v;
                else
                        c->max_connections = v;
        } else if (strcmp(key, "max-region-fds") == 0) {
                r = config_value_count(value, &c->max_region_fds, whyp);
                if (r < 0)
                        return r;
        } else if (strcmp(key, "max-bytes") == 0) {
                r = config_value_size(value, &c->max_bytes, whyp);
                if (r < 0)
                        return r;
        } else if (strcmp(key, "default-mode") == 0) {
                uint32_t mode;

                if (parse_mode(value, &mode) < 0 || mode == 0) {
                        *whyp = "expected octal 1..0777";
                        return -EINVAL;
                }
                c->default_mode = mode;
        } else if (strcmp(key, "handshake-timeout") == 0) {
                if (parse_u64(value, &v, NULL) < 0 || v > 86400) {
                        *whyp = "expected seconds 0..86400";
                        return -EINVAL;
                }
                c->handshake_timeout_sec = (unsigned)v;
        } else if (strcmp(key, "max-out-bytes") == 0) {
                if (parse_size(value, &v) < 0 || v > SIZE_MAX) {
                        *whyp = "expected a size like 4M";
                        return -EINVAL;
                }
                c->max_out_bytes = (size_t)v;
        } else if (strcmp(key, "max-events") == 0) {
                if (parse_u64(value, &v, NULL) < 0 || v == 0 || v > 1000000) {
                        *whyp = "expected a number of events 1..1000000";
                        return -EINVAL;
                }
                c->max_events = (uint32_t)v;
        } else if (strcmp(key, "log-level") == 0) {
                r = log_level_from_name(value);
                if (r < 0) {
                        *whyp = "expected error, warning, notice, info or debug";
                        return -EINVAL;
                }
                c->log_level = r;
        } else if (strcmp(key, "tmpdir") == 0) {
                if (!*value) {
                        *whyp = "empty path";
                        return -EINVAL;
                }
                return config_replace(&c->tmpdir, value);
        } else if (strcmp(key, "allow-uids") == 0 || strcmp(key, "allow-gids") == 0) {
                bool uids = key[6] == 'u';
                uint32_t *ids;
                size_t n;

                r = config_parse_ids(value, &ids, &n, whyp);
                if (r < 0)
                        return r;
                free(uids ? c->allow_uids : c->allow_gids);
                if (uids) {
                        c->allow_uids = ids;
                        c->nallow_uids = n;
                } else {
                        c->allow_gids = ids;
                        c->nallow_gids = n;
                }
                c->allow_list = true;
        } else {
                return -ENOENT;
        }
        return 0;
}

/* "[uid 1000]" or "[gid 100]" (spaces trimmed by the caller). Return: 0; -EINVAL with *whyp; -ENOMEM. */
static int config_section(struct config *c, char *line, struct config_quota_rule **rulep, const char **whyp)
{
        size_t len = strlen(line);
        struct config_quota_rule *rules;
        bool group;
        uint64_t v;
        char *p;

        *whyp = "expected [uid N] or [gid N]";
        if (len < 2 || line[len - 1] != ']')
                return -EINVAL;
        line[len - 1] = '\0';
        p = line + 1;
        while (*p == ' ' || *p == '\t')
                p++;
        if (strncmp(p, "uid", 3) != 0 && strncmp(p, "gid", 3) != 0)
                return -EINVAL;
        group = p[0] == 'g';
        p += 3;
        if (*p != ' ' && *p != '\t')
                return -EINVAL;
        while (*p == ' ' || *p == '\t')
                p++;
        len = strlen(p);
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                p[--len] = '\0';
        if (parse_u64(p, &v, NULL) < 0 || v >= UINT32_MAX)
                return -EINVAL;
        for (size_t i = 0; i < c->nrules; i++) {
                if (c->rules[i].group == group && c->rules[i].id == v) {
                        *rulep = &c->rules[i];
                        return 0;
                }
        }
        if (c->nrules >= CONFIG_MAX_RULES) {
                *whyp = "too many sections";
                return -EINVAL;
        }
        rules = realloc(c->rules, (c->nrules + 1) * sizeof(*rules));
        if (!rules)
                return -ENOMEM;
        c->rules = rules;
        c->rules[c->nrules] = (struct config_quota_rule){ .group = group, .id = (uint32_t)v };
        *rulep = &c->rules[c->nrules++];
        return 0;
}

static char *config_trim(char *s)
{
        size_t len;

        while (isspace((unsigned char)*s))
                s++;
        len = strlen(s);
        while (len && isspace((unsigned char)s[len - 1]))
                s[--len] = '\0';
        return s;
}

/*
 * config_quote() - @s as an error message shows it, in @out (@size bytes): printable ASCII as is, every other byte
 * (a control character, an escape sequence, a byte of a non-ASCII or broken UTF-8 character) as \xHH, and cut
 * after CONFIG_QUOTE_MAX bytes with "..." so that the reason after it fits in the message.
 * Return: @out.
 */
#define CONFIG_QUOTE_MAX 64
static const char *config_quote(char *out, size_t size, const char *s)
{
        size_t n = 0, in;

        for (in = 0; s[in] && in < CONFIG_QUOTE_MAX && n + QUOTE_BYTE_MAX < size; in++)
                n += quote_byte(out + n, (unsigned char)s[in]);
        if (s[in] && n + 4 <= size) {
                memcpy(out + n, "...", 3);
                n += 3;
        }
        out[n] = '\0';
        return out;
}

/*
 * Open @path for config_load_file() where the file may have changed since the start (a SIGHUP's reload, which must
 * not block the event loop) or is named by another process's command line (--check-config --pid): never blocking
 * (a FIFO), and only a regular file (or a directory, which fails the read as in a start) of at most
 * CONFIG_REGULAR_FILE_MAX bytes: not /dev/zero, nor a huge file. The bound holds for what is read too (struct
 * config_capped): *@toobig is set when the stream's read fails past it. Return: the stream; NULL, *rp and @err set.
 */
#define CONFIG_REGULAR_FILE_MAX (16u << 20)

/*
 * The bound holds for the bytes read, not only for the size fstat() gave: a regular file can say less than it
 * holds (/proc/self/pagemap says 0 and gives hundreds of GB, one endless line of zeros for getline()) or grow
 * after the check. config_open_regular()'s stream reads through this cookie, which fails with EFBIG past the bound.
 */
struct config_capped {
        int fd;
        size_t left; /* bytes that may still be read */
        int *toobig;  /* set past the bound (getline() does not keep the EFBIG for its caller) */
};

static ssize_t config_capped_read(void *cookie, char *buf, size_t size)
{
        struct config_capped *cc = cookie;
        char probe[512]; /* at the bound: is there more? (not 1 byte: /proc's pagemap reads whole 8-byte words) */
        ssize_t n;

        if (cc->left == 0) {
                buf = probe;
                size = sizeof(probe);
        } else if (size > cc->left) {
                size = cc->left;
        }
        do
                n = read(cc->fd, buf, size);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -1;
        if (n > 0 && cc->left == 0) {
                *cc->toobig = 1;
                errno = EFBIG;
                return -1;
        }
        cc->left -= (size_t)n;
        return n;
}

static int config_capped_close(void *cookie)
{
        struct config_capped *cc = cookie;
        int r = close(cc->fd);

        free(cc);
        return r;
}

/*
 * Open @path for reading only once it is known to be a regular file or a directory: an open() of anything else
 * can act by itself (a FIFO's blocked writer goes on, a tape rewinds, /dev/watchdog is armed), even O_NONBLOCK.
 * The inode is pinned with O_PATH, checked, and opened again through /proc/self/fd (the same inode, whatever
 * @path names by then); without /proc, @path again (the caller checks the type of what it got). Return: the fd;
 * -EINVAL, not a regular file nor a directory; -errno.
 */
static int config_open_checked(const char *path)
{
        char self[40];
        struct stat st;
        int pfd, fd;

        pfd = open(path, O_PATH | O_CLOEXEC);
        if (pfd < 0)
                return -errno;
        if (fstat(pfd, &st) < 0)
                fd = -errno;
        else if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
                fd = -EINVAL;
        else
                fd = 0;
        if (fd < 0) {
                close(pfd);
                return fd;
        }
        snprintf(self, sizeof(self), "/proc/self/fd/%d", pfd);
        fd = open(self, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0 && errno == ENOENT)
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0)
                fd = -errno;
        close(pfd);
        return fd;
}

static FILE *config_open_regular(const char *path, char *err, size_t errsize, int *rp, int *toobig)
{
        static const cookie_io_functions_t capped_io = { .read = config_capped_read, .close = config_capped_close };
        struct config_capped *cc = NULL;
        struct stat st;
        FILE *f = NULL;
        int fd;

        fd = config_open_checked(path);
        if (fd >= 0 && fstat(fd, &st) < 0) {
                int r = -errno;

                close(fd);
                fd = r;
        }
        if (fd < 0 && fd != -EINVAL) {
                *rp = fd;
                snprintf(err, errsize, "cannot read the configuration file %s: %s", path, strerror(-*rp));
        } else if (fd < 0 || (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))) {
                *rp = -EINVAL;
                snprintf(err, errsize, "cannot read the configuration file %s: not a regular file", path);
        } else if (st.st_size > (off_t)CONFIG_REGULAR_FILE_MAX) {
                *rp = -EFBIG;
                snprintf(err, errsize, "cannot read the configuration file %s: larger than %u MiB", path,
                         CONFIG_REGULAR_FILE_MAX >> 20);
        } else if (!(cc = malloc(sizeof(*cc))) || !(f = fopencookie(cc, "r", capped_io))) {
                *rp = -ENOMEM;
                snprintf(err, errsize, "cannot read the configuration file %s: %s", path, strerror(-*rp));
        } else {
                cc->fd = fd;
                cc->left = CONFIG_REGULAR_FILE_MAX;
                cc->toobig = toobig;
        }
        if (!f) {
                free(cc);
                if (fd >= 0)
                        close(fd);
        }
        return f;
}

int config_load_file(struct config *c, const char *path, char *err, size_t errsize)
{
        struct config_quota_rule *rule = NULL;
        const char *why = "", *key = NULL, *value = NULL; /* the refused line's key and value, for the error */
        /* ...quoted: a long one would push the reason out of @err, a control byte reach the terminal or journal */
        char qkey[4 * CONFIG_QUOTE_MAX + 4], qvalue[4 * CONFIG_QUOTE_MAX + 4];
        unsigned lineno = 0;
        bool readerr = false;
        int toobig = 0; /* config_open_regular()'s stream read past its bound */
        char *buf = NULL;
        size_t bufsize = 0;
        FILE *f;
        int r = 0;

        f = c->file_regular_only ? config_open_regular(path, err, errsize, &r, &toobig) : fopen(path, "re");
        if (!f) {
                if (!c->file_regular_only) {
                        r = -errno;
                        snprintf(err, errsize, "cannot read the configuration file %s: %s", path, strerror(-r));
                }
                return r;
        }
        for (;;) {
                char *line, *eq;

                errno = 0;
                if (getline(&buf, &bufsize, f) < 0) {
                        /* not the end: ENOMEM partway through read the file's last lines as missing (loaded) */
                        if (!feof(f) || ferror(f)) {
                                r = toobig ? -EFBIG : errno ? -errno : -EIO;
                                readerr = true;
                                lineno++;
                        }
                        break;
                }
                lineno++;
                key = value = NULL;
                line = buf;
                if ((eq = strchr(line, '#')))
                        *eq = '\0';
                line = config_trim(line);
                if (!*line)
                        continue;
                if (*line == '[') {
                        r = config_section(c, line, &rule, &why);
                        if (r < 0)
                                break;
                        continue;
                }
                eq = strchr(line, '=');
                if (!eq) {
                        key = line;
                        why = "expected key = value";
                        r = -EINVAL;
                        break;
                }
                *eq = '\0';
                key = config_trim(line);
                value = config_trim(eq + 1);
                if (rule) {
                        r = config_set_quota(c, rule, key, value, &why);
                        if (r == 0) {
                                value = NULL; /* the key is at fault, not its value */
                                why = "only quota-bytes, quota-regions, quota-connections, quota-fds and "
                                      "quota-watches belong in a [uid]/[gid] section";
                                r = -EINVAL;
                        }
                        if (r < 0)
                                break;
                        r = 0;
                        continue;
                }
                if (strcmp(key, "socket") == 0 || strcmp(key, "config") == 0) {
                        why = "only on the command line";
                        value = NULL;
                        r = -EINVAL;
                        break;
                }
                r = config_set(c, key, value, &why);
                if (r == -ENOENT) {
                        why = "unknown key (iomemd.conf(5) lists the keys)";
                        value = NULL;
                        r = -EINVAL;
                }
                if (r < 0)
                        break;
        }
        if (r == -ENOMEM)
                snprintf(err, errsize, "%s:%u: out of memory", path, lineno);
        else if (readerr && r == -EFBIG) /* config_capped_read(): more than fstat() said */
                snprintf(err, errsize, "cannot read the configuration file %s: larger than %u MiB", path,
                         CONFIG_REGULAR_FILE_MAX >> 20);
        else if (readerr) /* getline()'s errno: "Is a directory" for --config /etc/iomemd (it said "read error") */
                snprintf(err, errsize, "cannot read the configuration file %s: %s", path, strerror(-r));
        else if (r < 0 && value) /* "max-regions = 'x': expected a positive number" */
                snprintf(err, errsize, "%s:%u: %s = '%s': %s", path, lineno, config_quote(qkey, sizeof(qkey), key),
                         config_quote(qvalue, sizeof(qvalue), value), why);
        else if (r < 0 && key) /* "nope: unknown key (...)" */
                snprintf(err, errsize, "%s:%u: %s: %s", path, lineno, config_quote(qkey, sizeof(qkey), key), why);
        else if (r < 0)
                snprintf(err, errsize, "%s:%u: %s", path, lineno, why);
        free(buf);
        fclose(f);
        return r;
}

void config_quota_for(const struct config *c, uint32_t uid, uint32_t gid, struct config_quota *q)
{
        *q = c->quota;
        /* groups first, so that a [uid] section wins */
        for (int pass = 0; pass < 2; pass++) {
                for (size_t i = 0; i < c->nrules; i++) {
                        const struct config_quota_rule *rule = &c->rules[i];

                        if (rule->group != (pass == 0) || rule->id != (pass == 0 ? gid : uid))
                                continue;
                        if (rule->set & CONFIG_QUOTA_SET_BYTES)
                                q->bytes = rule->quota.bytes;
                        if (rule->set & CONFIG_QUOTA_SET_REGIONS)
                                q->regions = rule->quota.regions;
                        if (rule->set & CONFIG_QUOTA_SET_CONNECTIONS)
                                q->connections = rule->quota.connections;
                        if (rule->set & CONFIG_QUOTA_SET_FDS)
                                q->fds = rule->quota.fds;
                        if (rule->set & CONFIG_QUOTA_SET_WATCHES)
                                q->watches = rule->quota.watches;
                }
        }
}

bool config_allows(const struct config *c, uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups)
{
        if (!c->allow_list || uid == 0 || uid == geteuid())
                return true;
        for (size_t i = 0; i < c->nallow_uids; i++)
                if (c->allow_uids[i] == uid)
                        return true;
        for (size_t i = 0; i < c->nallow_gids; i++) {
                if (c->allow_gids[i] == gid)
                        return true;
                for (size_t j = 0; j < ngroups; j++)
                        if (c->allow_gids[i] == groups[j])
                                return true;
        }
        return false;
}

static const struct option config_options[] = {
        { "config", required_argument, NULL, 'c' },
        { "socket", required_argument, NULL, 's' },
        { "backend", required_argument, NULL, 0 },
        { "allowed-backends", required_argument, NULL, 0 },
        { "max-region-size", required_argument, NULL, 0 },
        { "max-regions", required_argument, NULL, 0 },
        { "max-connections", required_argument, NULL, 0 },
        { "max-bytes", required_argument, NULL, 0 },
        { "default-mode", required_argument, NULL, 0 },
        { "quota-bytes", required_argument, NULL, 0 },
        { "quota-regions", required_argument, NULL, 0 },
        { "quota-connections", required_argument, NULL, 0 },
        { "quota-fds", required_argument, NULL, 0 },
        { "allow-uids", required_argument, NULL, 0 },
        { "allow-gids", required_argument, NULL, 0 },
        { "handshake-timeout", required_argument, NULL, 0 },
        { "max-out-bytes", required_argument, NULL, 0 },
        { "max-events", required_argument, NULL, 0 },
        { "quota-watches", required_argument, NULL, 0 },
        { "log-level", required_argument, NULL, 0 },
        { "tmpdir", required_argument, NULL, 0 },
        { "max-region-fds", required_argument, NULL, 0 },
        { "check-config", no_argument, NULL, 't' },
        { "pid", required_argument, NULL, 'p' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        {},
};

/*
 * One pass over the command line. @config_only: handle --config, --help,
 * --version and usage errors only (the file is read between the passes).
 * Return: as config_parse().
 */
static int config_parse_args(struct config *c, int argc, char **argv, bool config_only, bool quiet)
{
        int opt, idx, r;

        optind = 0; /* full reinitialisation: this runs more than once */
        opterr = 0;
        while ((opt = getopt_long(argc, argv, ":hVt", config_options, &idx)) >= 0) {
                const char *name = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
                const char *why = "";

                if (config_only && (opt == 'c' || opt == 's' || opt == 0))
                        c->nsettings++;
                switch (opt) {
                case 't':
                        c->check = true;
                        break;
                case 'p': {
                        uint64_t pid;

                        if (!config_only)
                                break;
                        if (parse_u64(optarg, &pid, NULL) < 0 || pid == 0 || pid > INT_MAX) {
                                if (!quiet)
                                        log_stderr_error("invalid --pid '%s': expected a process id (see "
                                                         "--help)", optarg);
                                return -EINVAL;
                        }
                        c->check_pid = (int)pid;
                        break;
                }
                case 'c':
                        if (!config_only)
                                break;
                        if (!*optarg) {
                                if (!quiet)
                                        log_stderr_error("invalid --config '': empty path (see --help)");
                                return -EINVAL;
                        }
                        r = config_replace(&c->config_file, optarg);
                        if (r < 0)
                                return r;
                        break;
                case 's':
                        if (config_only)
                                break;
                        if (!*optarg) {
                                if (!quiet)
                                        log_stderr_error("invalid --socket '': empty path (see --help)");
                                return -EINVAL;
                        }
                        r = config_replace(&c->socket_path, optarg);
                        if (r < 0)
                                return r;
                        break;
                case 0:
                        if (config_only)
                                break;
                        r = config_set(c, config_options[idx].name, optarg, &why);
                        if (r == -EINVAL && !quiet)
                                log_stderr_error("invalid --%s '%s': %s (see --help)",
                                                 config_options[idx].name, optarg, why);
                        if (r < 0)
                                return r;
                        break;
                case 'h':
                        if (config_only)
                                config_usage(stdout);
                        return 1;
                case 'V':
                        if (config_only)
                                printf("iomemd " IOMEM_VERSION "\n");
                        return 1;
                case ':':
                        if (!quiet)
                                log_stderr_error("option '%s' needs an argument (see --help)", name);
                        return -EINVAL;
                default:
                        if (!quiet)
                                log_stderr_error("unknown option '%s' (see --help)", name);
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                if (!quiet)
                        log_stderr_error("unexpected argument '%s' (see --help)", argv[optind]);
                return -EINVAL;
        }
        return 0;
}

/*
 * The file, then the command line. With --pid, only the command line's first pass: the file and the settings are
 * the other process's (config_check_pid()). Return: as config_parse(), -EBADMSG for a bad file or backend (a
 * usage error is -EINVAL); errors go to stderr or, if @quiet, the log.
 */
static int config_apply(struct config *c, int argc, char **argv, bool quiet)
{
        char err[512];
        int r;

        c->argc = argc;
        c->argv = argv;
        r = config_parse_args(c, argc, argv, true, quiet);
        if (r != 0)
                return r;
        if (c->check_pid && !c->check) {
                if (!quiet)
                        log_stderr_error("--pid goes with --check-config (see --help)");
                return -EINVAL;
        }
        if (c->check_pid && c->nsettings) {
                if (!quiet)
                        log_stderr_error("--check-config --pid checks the options of that process: give no "
                                         "other option with it (see --help)");
                return -EINVAL;
        }
        if (c->check_pid)
                return 0;
        if (!c->config_file && access(CONFIG_DEFAULT_FILE, F_OK) == 0) {
                r = config_replace(&c->config_file, CONFIG_DEFAULT_FILE);
                if (r < 0)
                        return r;
        }
        if (c->config_file) {
                r = config_load_file(c, c->config_file, err, sizeof(err));
                if (r < 0) {
                        if (quiet)
                                log_error("configuration: %s", err);
                        else
                                log_stderr_error("%s", err);
                        return r == -ENOMEM ? r : -EBADMSG;
                }
        }
        r = config_parse_args(c, argc, argv, false, quiet);
        if (r != 0)
                return r;
        if (c->backend != PROTO_BACKEND_AUTO && !(c->allowed_backends & CONFIG_BACKEND_BIT(c->backend))) {
                if (quiet)
                        log_error("configuration: backend %s is not in allowed-backends", backend_name(c->backend));
                else
                        log_stderr_error("backend %s is not in allowed-backends (see --help)",
                                         backend_name(c->backend));
                return -EBADMSG;
        }
        return 0;
}

/*
 * The running iomemd @pid's command line, as its SIGHUP reads it again (its argv: /proc/PID/cmdline), into
 * *argcp and *argvp (one malloc'd block: argv's pointers, then the strings). Return: 0; -errno, said on stderr.
 */
static int config_read_cmdline(int procfd, int pid, int *argcp, char ***argvp)
{
        char path[64], *buf = NULL, **argv;
        size_t len = 0, size = 0;
        int fd, argc = 0;

        snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
        fd = procfd < 0 ? -1 : openat(procfd, "cmdline", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                int r = -errno;

                /* /proc mounted hidepid=invisible (2) hides another user's process: no /proc/PID, yet it runs;
                 * hidepid=noaccess (1) shows the directory, not its files */
                if (r == -ENOENT && (kill(pid, 0) == 0 || errno == EPERM))
                        log_stderr_error("cannot read the command line of pid %d (%s): the process exists, but "
                                         "its /proc entry is hidden from this user (/proc mounted with hidepid=?): "
                                         "run the check as that process's user or root", pid, path);
                else if (r == -EPERM || r == -EACCES)
                        log_stderr_error("cannot read the command line of pid %d (%s): %s (/proc mounted with "
                                         "hidepid=?): run the check as that process's user or root", pid, path,
                                         strerror(-r));
                else
                        log_stderr_error("cannot read the command line of pid %d (%s): %s", pid, path,
                                         r == -ENOENT ? "no such process" : strerror(-r));
                return r;
        }
        for (;;) {
                ssize_t n;

                if (len == size) {
                        char *grown = size >= (1u << 24) ? NULL : realloc(buf, size ? size * 2 : 4096);

                        if (!grown) {
                                free(buf);
                                close(fd);
                                log_stderr_error("cannot read the command line of pid %d: %s", pid,
                                                 size >= (1u << 24) ? "longer than 16 MiB" : strerror(ENOMEM));
                                return -ENOMEM;
                        }
                        buf = grown;
                        size = size ? size * 2 : 4096;
                }
                n = read(fd, buf + len, size - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int r = -errno;

                        free(buf);
                        close(fd);
                        log_stderr_error("cannot read the command line of pid %d: %s", pid, strerror(-r));
                        return r;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        close(fd);
        if (len == 0 || buf[len - 1] != '\0') { /* a kernel thread (empty), or a process that rewrote its argv */
                free(buf);
                log_stderr_error("pid %d has no command line to check: is it iomemd?", pid);
                return -EINVAL;
        }
        for (size_t i = 0; i < len; i++) {
                /* printed raw in its errors ("unexpected argument '%s'", the file's name): no escape sequence
                 * written by another user reaches the terminal or journal of the one who checks */
                if (buf[i] != '\0' && ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)) {
                        free(buf);
                        log_stderr_error("the command line of pid %d has a control byte in argument %d: not "
                                         "checked", pid, argc);
                        return -EINVAL;
                }
                argc += buf[i] == '\0';
        }
        argv = malloc((size_t)(argc + 1) * sizeof(*argv) + len);
        if (!argv) {
                free(buf);
                log_stderr_error("%s", strerror(ENOMEM));
                return -ENOMEM;
        }
        memcpy(argv + argc + 1, buf, len);
        free(buf);
        buf = (char *)(argv + argc + 1);
        for (int i = 0; i < argc; i++) {
                argv[i] = buf;
                buf += strlen(buf) + 1;
        }
        argv[argc] = NULL;
        *argcp = argc;
        *argvp = argv;
        return 0;
}

/*
 * Run as root, take on the file-access credentials of @pid (its fs uid and gid and its supplementary groups, from
 * /proc/PID/status) before its file is read: the check then reads what that daemon's reload can read, and opens
 * nothing a process of another user named in its command line (a FIFO, a device) that its owner could not.
 * Not root: nothing to do (entering /proc/PID/cwd already needs the process's uid). @procfd: /proc/PID.
 * Return: 0; -errno, said.
 */
static int config_become(int procfd, int pid)
{
        char path[64], *line = NULL;
        size_t linesize = 0;
        long uid = -1, gid = -1;
        gid_t *groups = NULL;
        size_t ngroups = 0;
        bool have_groups = false;
        FILE *f;
        int fd, r = 0;

        if (geteuid() != 0)
                return 0;
        snprintf(path, sizeof(path), "/proc/%d/status", pid);
        fd = openat(procfd, "status", O_RDONLY | O_CLOEXEC);
        f = fd < 0 ? NULL : fdopen(fd, "re");
        if (!f) {
                r = -errno;
                if (fd >= 0)
                        close(fd);
                log_stderr_error("cannot read the credentials of pid %d (%s): %s", pid, path, strerror(-r));
                return r;
        }
        while (r == 0 && getline(&line, &linesize, f) >= 0) {
                unsigned long ids[4];

                if (sscanf(line, "Uid: %lu %lu %lu %lu", &ids[0], &ids[1], &ids[2], &ids[3]) == 4)
                        uid = (long)ids[3]; /* the fs uid: what file access is checked against */
                else if (sscanf(line, "Gid: %lu %lu %lu %lu", &ids[0], &ids[1], &ids[2], &ids[3]) == 4)
                        gid = (long)ids[3];
                else if (strncmp(line, "Groups:", 7) == 0) {
                        char *p = line + 7, *end;

                        have_groups = true;
                        for (unsigned long g; (g = strtoul(p, &end, 10)), end != p; p = end) {
                                gid_t *grown = realloc(groups, (ngroups + 1) * sizeof(*groups));

                                if (!grown) {
                                        r = -ENOMEM;
                                        break;
                                }
                                groups = grown;
                                groups[ngroups++] = (gid_t)g;
                        }
                }
        }
        free(line);
        fclose(f);
        if (r == 0 && (uid < 0 || gid < 0 || !have_groups))
                r = -EPROTO;
        if (r == 0 && uid != 0 &&
            (setgroups(ngroups, groups) < 0 || setgid((gid_t)gid) < 0 || setuid((uid_t)uid) < 0))
                r = -errno;
        /* no way back: a root whose securebits keep its capabilities across setuid() (no_setuid_fixup) would
         * still read any file */
        if (r == 0 && uid != 0 && (geteuid() != (uid_t)uid || setuid(0) == 0))
                r = -EPERM;
        free(groups);
        if (r < 0)
                log_stderr_error("cannot take on the credentials of pid %d: %s", pid, strerror(-r));
        return r;
}

/*
 * Whether the process at @procfd (/proc/PID) runs an iomemd: its executable has the name of ours. A root check of
 * a process of uid 0 stays root, so it must not follow the command line of another program (a setuid one that a
 * user started with --config naming a file only root may read, whose error line would quote it); and a reused pid
 * gets a clear error. Return: 0; -errno or -EBADMSG, said.
 */
static int config_check_exe(int procfd, int pid)
{
        char exe[PATH_MAX], self[PATH_MAX];
        const char *name, *own;
        ssize_t n, m;
        char *deleted;

        n = readlinkat(procfd, "exe", exe, sizeof(exe) - 1);
        if (n < 0) {
                int r = -errno;

                log_stderr_error("cannot read the executable of pid %d (/proc/%d/exe): %s: run the check as "
                                 "that process's user or root", pid, pid, r == -ENOENT ? "no such process" :
                                 strerror(-r));
                return r;
        }
        m = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (m < 0) {
                int r = -errno;

                log_stderr_error("cannot read /proc/self/exe: %s", strerror(-r));
                return r;
        }
        exe[n] = self[m] = '\0';
        /* a daemon whose binary was replaced since (an upgrade) */
        if ((deleted = strstr(exe, " (deleted)")) && deleted[10] == '\0')
                *deleted = '\0';
        name = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
        own = strrchr(self, '/') ? strrchr(self, '/') + 1 : self;
        if (strcmp(name, own) != 0) {
                char q[4 * CONFIG_QUOTE_MAX + 4];

                log_stderr_error("pid %d is not a running iomemd: it runs %s", pid,
                                 config_quote(q, sizeof(q), exe));
                return -EBADMSG;
        }
        return 0;
}

/*
 * --check-config --pid: check what the running iomemd @pid would load on SIGHUP: its command line and the file
 * it names, relative paths from its working directory, with its credentials (config_become()).
 * Return: as config_check().
 */
static int config_check_pid(int pid, char *file, size_t filesize)
{
        struct config other;
        char cwd[64], **argv;
        int procfd, cwdfd, argc, r;

        /* every read below is of this one process: if it ends and its pid is reused, they fail */
        snprintf(cwd, sizeof(cwd), "/proc/%d", pid);
        procfd = open(cwd, O_PATH | O_DIRECTORY | O_CLOEXEC);
        r = config_read_cmdline(procfd, pid, &argc, &argv);
        if (r < 0) {
                if (procfd >= 0)
                        close(procfd);
                return r == -ENOMEM ? r : -EBADMSG;
        }
        r = config_become(procfd, pid);
        if (r == 0)
                r = config_check_exe(procfd, pid);
        if (r < 0) {
                close(procfd);
                free(argv);
                return r == -ENOMEM ? r : -EBADMSG;
        }
        snprintf(cwd, sizeof(cwd), "/proc/%d/cwd", pid);
        cwdfd = openat(procfd, "cwd", O_PATH | O_DIRECTORY | O_CLOEXEC);
        close(procfd);
        if (cwdfd < 0 || fchdir(cwdfd) < 0) {
                r = -errno;
                if (cwdfd >= 0)
                        close(cwdfd);
                log_stderr_error("cannot enter the working directory of pid %d (%s): %s: run the check as "
                                 "that process's user or root", pid, cwd, strerror(-r));
                free(argv);
                return -EBADMSG;
        }
        close(cwdfd);
        config_init(&other);
        other.file_regular_only = true;
        r = config_apply(&other, argc, argv, false);
        if (r == 0 && other.check) {
                log_stderr_error("pid %d is not a running iomemd: its command line has --check-config",
                                 pid);
                r = -EBADMSG;
        }
        if (r == 1 || r == -EINVAL) /* its --help or --version, or a usage error: not how that iomemd started */
                r = -EBADMSG;
        if (r == 0)
                snprintf(file, filesize, "%s", other.config_file ? other.config_file : "");
        config_deinit(&other);
        free(argv);
        return r;
}

/*
 * config_check() - --check-config, after config_apply() gave @r: say whether the configuration is valid. The
 * socket is not looked at (nor its default path: its directory would be made), nor anything a start does after
 * reading the configuration. Return: 1 valid (one line on stdout); -EBADMSG invalid, -EINVAL a usage error, -ENOMEM
 * (the reason on stderr, as config_apply() said it).
 */
static int config_check(struct config *c, int r)
{
        char file[PATH_MAX + 1] = "";

        if (r == 0 && c->check_pid)
                r = config_check_pid(c->check_pid, file, sizeof(file));
        else if (r == 0 && c->config_file)
                snprintf(file, sizeof(file), "%s", c->config_file);
        if (r < 0)
                return r;
        if (c->check_pid)
                printf("iomemd: the configuration of pid %d is valid (%s%s)\n", c->check_pid,
                       *file ? "file " : "no configuration file", file);
        else
                printf("iomemd: the configuration is valid (%s%s)\n", *file ? "file " : "no configuration file",
                       file);
        return fflush(stdout) == 0 ? 1 : -EIO;
}

int config_parse(struct config *c, int argc, char **argv)
{
        int r;

        r = config_apply(c, argc, argv, false);
        if (c->check && r <= 0)
                return config_check(c, r);
        if (r == -EBADMSG)
                r = -EINVAL; /* a start with a bad file exits 2 */
        if (r != 0)
                return r;
        if (!c->socket_path) {
                r = config_default_socket(&c->socket_path);
                if (r == -ENOENT && getenv("LISTEN_FDS")) {
                        r = 0; /* socket activation: systemd passes the socket, no path needed */
                } else if (r == -ENOENT) {
                        log_stderr_error("no socket path: pass --socket, or set $IOMEM_SOCKET or "
                                         "$XDG_RUNTIME_DIR");
                        return -EINVAL;
                }
                if (r < 0) {
                        log_stderr_error("cannot prepare %s: %s", CONFIG_SYSTEM_SOCKET_DIR, strerror(-r));
                        return -EINVAL;
                }
        }
        return 0;
}

int config_reload(struct config *c)
{
        struct config fresh;
        int r;

        config_init(&fresh);
        /* a file replaced since the start by a FIFO would block the event loop, /dev/zero fill its memory */
        fresh.file_regular_only = true;
        r = config_apply(&fresh, c->argc, c->argv, true);
        if (r != 0) {
                config_deinit(&fresh);
                if (r > 0 || r == -EBADMSG)
                        r = -EINVAL;
                log_error("configuration reload failed (%s): keeping the running configuration", strerror(-r));
                return r;
        }
        /* startup-only settings: kept, and said so if the file now sets another (--check-config cannot know) */
        if (fresh.max_region_fds != c->max_region_fds)
                log_warning("configuration: max-region-fds = %llu is read at start only: the running iomemd keeps "
                            "%llu%s until it is restarted",
                            (unsigned long long)fresh.max_region_fds, (unsigned long long)c->max_region_fds,
                            c->max_region_fds ? "" : " (from the fd limit)");
        free(fresh.socket_path);
        fresh.socket_path = c->socket_path;
        fresh.max_region_fds = c->max_region_fds;
        c->socket_path = NULL;
        fresh.generation = c->generation + 1;
        config_deinit(c);
        *c = fresh;
        return 0;
}
