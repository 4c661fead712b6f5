/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* parse: sizes, modes and seal names as people write them (CLI, config file, libiomem). */

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "parse.h"
#include "proto.h"

int parse_u64(const char *s, uint64_t *np, char **endp)
{
        unsigned long long v;
        char *end;

        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (!endp && *end)
                return -EINVAL;
        if (endp)
                *endp = end;
        *np = v;
        return 0;
}

int parse_size(const char *s, uint64_t *sizep)
{
        uint64_t v;
        unsigned shift = 0;
        char *end;
        int r;

        r = parse_u64(s, &v, &end);
        if (r < 0)
                return r;
        switch (*end) {
        case 'k': case 'K': shift = 10; end++; break;
        case 'm': case 'M': shift = 20; end++; break;
        case 'g': case 'G': shift = 30; end++; break;
        case 't': case 'T': shift = 40; end++; break;
        default: break;
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

const char *parse_size_format(uint64_t size, char *buf, size_t bufsize)
{
        static const char units[] = "KMGT";
        int u = -1;

        while (u < 3 && size != 0 && size % 1024 == 0) {
                size /= 1024;
                u++;
        }
        if (u < 0)
                snprintf(buf, bufsize, "%" PRIu64, size);
        else
                snprintf(buf, bufsize, "%" PRIu64 "%c", size, units[u]);
        return buf;
}

int parse_mode(const char *s, uint32_t *modep)
{
        unsigned long m;
        char *end;

        if (!s || *s < '0' || *s > '7')
                return -EINVAL;
        errno = 0;
        m = strtoul(s, &end, 8);
        if (errno || *end || m > 0777)
                return -EINVAL;
        *modep = (uint32_t)m;
        return 0;
}

static const struct {
        const char *name;
        uint32_t bit;
} parse_seal_table[] = {
        { "seal", PROTO_SEAL_SEAL },
        { "shrink", PROTO_SEAL_SHRINK },
        { "grow", PROTO_SEAL_GROW },
        { "write", PROTO_SEAL_WRITE },
        { "future-write", PROTO_SEAL_FUTURE_WRITE },
        { "future_write", PROTO_SEAL_FUTURE_WRITE }, /* the kernel's spelling; never printed */
};

int parse_seals(const char *text, uint32_t *sealsp)
{
        static const char separators[] = ", \t\n";
        uint32_t seals = 0;

        if (!text || !sealsp)
                return -EINVAL;
        for (const char *p = text; *p;) {
                size_t len;
                bool found = false;

                p += strspn(p, separators);
                len = strcspn(p, separators);
                if (len == 0)
                        break;
                for (size_t i = 0; i < sizeof(parse_seal_table) / sizeof(parse_seal_table[0]); i++) {
                        if (strlen(parse_seal_table[i].name) == len &&
                            strncasecmp(p, parse_seal_table[i].name, len) == 0) {
                                seals |= parse_seal_table[i].bit;
                                found = true;
                                break;
                        }
                }
                if (!found)
                        return -EINVAL;
                p += len;
        }
        *sealsp = seals;
        return 0;
}

const char *parse_seal_name(uint32_t bit)
{
        for (size_t i = 0; i < sizeof(parse_seal_table) / sizeof(parse_seal_table[0]); i++)
                if (parse_seal_table[i].bit == bit)
                        return parse_seal_table[i].name; /* the first spelling */
        return NULL;
}
