/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* proto: the iomemd wire format (frame header, opcodes, messages), pure encode/decode. */

#include <errno.h>
#include <string.h>

#include "proto.h"

/*
 * Layout rules (docs/protocol.md): every integer is little-endian and written
 * byte by byte; fields follow each other without padding in the order of the
 * structs in proto.h; a string is u16 length, the bytes, one NUL.
 *
 * Decoders check layout first (-EBADMSG: lengths, string bounds, trailing
 * bytes), then values (-EINVAL: strings, names, bits, enums, reserved
 * fields), and write the caller's struct only on success.
 *
 * Encoders check only what the wire format bounds (string lengths against
 * their field's maximum); they do not check names' characters, flag bits or
 * enum values, so tests can build frames that a decoder must refuse.
 *
 * Each message has its own encoder and decoder, written out by hand, so the
 * pairs below look alike (measure, check room, put fields at fixed offsets;
 * check length, locate strings, get fields, check values). That repetition
 * is on purpose: each decoder's value checks are its own (OPEN's timeout
 * only with WAIT, LIST's prefix charset, unknown seal bits accepted in
 * replies: P7), and a plain function per message is what the fuzzers and a
 * reader stepping through a frame want. A duplicate-code scan lists these
 * pairs; they are not a shared rule written twice.
 */

#define HELLO_SIZE 8
#define HELLO_REPLY_FIXED 24
#define PING_SIZE 8
#define STATUS_REPLY_FIXED 40
#define CREATE_FIXED 24
#define REGION_INFO_SIZE 32
#define OPEN_FIXED 8
#define RESIZE_FIXED 8
#define RESIZE_REPLY_SIZE 8
#define SEAL_FIXED 8
#define SEAL_REPLY_SIZE 4
#define STAT_REPLY_SIZE 56
#define LIST_FIXED 16
#define LIST_REPLY_FIXED 16
#define LIST_ENTRY_FIXED 32
#define CHMOD_FIXED 8
#define CHOWN_FIXED 8
#define QUOTA_REPLY_SIZE 80
#define REGISTER_FIXED 16
#define REGISTER_REPLY_SIZE 16
#define WATCH_FIXED 8
#define WATCH_REPLY_SIZE 8
#define UNWATCH_SIZE 8
#define PUBLISH_FIXED 24
#define PUBLISH_REPLY_SIZE 32
#define OPENV_FIXED 16
#define REGION_INFOV_SIZE (REGION_INFO_SIZE + 8)
#define STAT_REPLYV_SIZE (STAT_REPLY_SIZE + 8)
#define EVENT_FIXED 48
#define EVENT_OVERFLOW_SIZE 8
#define ERROR_FIXED 4
#define METRICS_REPLY_FIXED 8
#define METRICS_ENTRY_SIZE 16
#define STRING_OVERHEAD 3 /* u16 length + NUL */

#define ERRNO_MAX 4095 /* the kernel's MAX_ERRNO */
#define MODE_MAX 0777u

/* ---- integers ----------------------------------------------------------- */

/*
 * Little-endian stores: the value in the wire's byte order, then one store (memcpy of a constant size is a single
 * move). Byte by byte, GCC builds each header by shifting its bytes one at a time into a register (~20 instructions
 * for a 20-byte header, which both sides encode for every frame).
 */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define PROTO_LE16(v) __builtin_bswap16(v)
#define PROTO_LE32(v) __builtin_bswap32(v)
#define PROTO_LE64(v) __builtin_bswap64(v)
#else
#define PROTO_LE16(v) (v)
#define PROTO_LE32(v) (v)
#define PROTO_LE64(v) (v)
#endif

static void put_u16(uint8_t *p, uint16_t v)
{
        v = PROTO_LE16(v);
        memcpy(p, &v, sizeof(v));
}

static void put_u32(uint8_t *p, uint32_t v)
{
        v = PROTO_LE32(v);
        memcpy(p, &v, sizeof(v));
}

static void put_u64(uint8_t *p, uint64_t v)
{
        v = PROTO_LE64(v);
        memcpy(p, &v, sizeof(v));
}

/* Little-endian loads, one move each (as the stores above). */
static uint16_t get_u16(const uint8_t *p)
{
        uint16_t v;

        memcpy(&v, p, sizeof(v));
        return PROTO_LE16(v);
}

static uint32_t get_u32(const uint8_t *p)
{
        uint32_t v;

        memcpy(&v, p, sizeof(v));
        return PROTO_LE32(v);
}

static uint64_t get_u64(const uint8_t *p)
{
        uint64_t v;

        memcpy(&v, p, sizeof(v));
        return PROTO_LE64(v);
}

/* ---- strings and names -------------------------------------------------- */

/* Return: 0 with *lenp = strlen(s) (NULL counts as ""), or -EINVAL if longer than @max. */
static int str_measure(const char *s, size_t max, size_t *lenp)
{
        size_t n = s ? strnlen(s, max + 1) : 0;

        if (n > max)
                return -EINVAL;
        *lenp = n;
        return 0;
}

/*
 * A message of @fixed bytes and then the string @s (at most @max bytes): its size in *totalp, the string's length in
 * *lenp. Return: 0; as str_measure(); -ENOBUFS if it is more than @size.
 */
static int str_msg_measure(const char *s, size_t max, size_t fixed, size_t size, size_t *lenp, size_t *totalp)
{
        size_t n;
        int r = str_measure(s, max, &n);

        if (r < 0)
                return r;
        if (fixed + n + STRING_OVERHEAD > size)
                return -ENOBUFS;
        *lenp = n;
        *totalp = fixed + n + STRING_OVERHEAD;
        return 0;
}

/* Write a string of @len bytes at @p (room checked by the caller). Return: bytes written. */
static size_t str_put(uint8_t *p, const char *s, size_t len)
{
        put_u16(p, (uint16_t)len);
        if (len > 0)
                memcpy(p + 2, s, len);
        p[2 + len] = 0;
        return len + STRING_OVERHEAD;
}

/*
 * Locate the string at @off in buf[0..len): its bytes must lie inside the
 * buffer, including the terminator's place. Contents are checked by
 * str_check(). Return: 0 with *sp, *slenp and *endp (offset after the
 * string) set, or -EBADMSG.
 */
static int str_locate(const uint8_t *buf, size_t len, size_t off, const char **sp, size_t *slenp, size_t *endp)
{
        uint64_t end;
        size_t n;

        if (off > len || len - off < 2)
                return -EBADMSG;
        n = get_u16(buf + off);
        end = (uint64_t)off + STRING_OVERHEAD + n;
        if (end > len)
                return -EBADMSG;
        *sp = (const char *)buf + off + 2;
        *slenp = n;
        *endp = (size_t)end;
        return 0;
}

/* Return: 0 if the located string ends with NUL at its declared place, holds no NUL and fits @max; else -EINVAL. */
static int str_check(const char *s, size_t n, size_t max)
{
        if (n > max)
                return -EINVAL;
        if (s[n] != '\0')
                return -EINVAL;
        if (memchr(s, '\0', n))
                return -EINVAL;
        return 0;
}

/* The name characters (docs/protocol.md): ASCII letters, digits and "._-/:@+=,", as a bitmap of the first 128. */
#define NAME_BIT(c) (1ULL << ((c) & 63))
#define NAME_CHARS_LO                                                                                              \
        ((0x3FFULL << '0') | NAME_BIT('.') | NAME_BIT('-') | NAME_BIT('/') | NAME_BIT(':') | NAME_BIT('+') |        \
         NAME_BIT('=') | NAME_BIT(','))
#define NAME_CHARS_HI ((0x3FFFFFFULL << ('A' - 64)) | (0x3FFFFFFULL << ('a' - 64)) | NAME_BIT('@') | NAME_BIT('_'))

/*
 * The same set as a table of every byte, made from the bitmap at compile time: 0 for a byte that is not a name
 * character, NAME_SLASH for '/', NAME_OTHER for the others. One load per byte where the bitmap took a range
 * test, a shift and a load.
 */
enum { NAME_OTHER = 1, NAME_SLASH = 2 };
#define NAME_CLASS(u)                                                                                              \
        ((u) == '/'  ? NAME_SLASH                                                                                  \
         : (u) < 64  ? (int)((NAME_CHARS_LO >> ((u) & 63)) & 1)                                                    \
         : (u) < 128 ? (int)((NAME_CHARS_HI >> ((u) & 63)) & 1)                                                    \
                     : 0)
#define NAME_CLASS4(u) NAME_CLASS(u), NAME_CLASS((u) + 1), NAME_CLASS((u) + 2), NAME_CLASS((u) + 3)
#define NAME_CLASS16(u) NAME_CLASS4(u), NAME_CLASS4((u) + 4), NAME_CLASS4((u) + 8), NAME_CLASS4((u) + 12)
#define NAME_CLASS64(u) NAME_CLASS16(u), NAME_CLASS16((u) + 16), NAME_CLASS16((u) + 32), NAME_CLASS16((u) + 48)
static const uint8_t name_class[256] = { NAME_CLASS64(0), NAME_CLASS64(64), NAME_CLASS64(128), NAME_CLASS64(192) };

static bool name_char_ok(char c)
{
        return name_class[(unsigned char)c] != 0;
}

int proto_name_check(const char *name, size_t len)
{
        if (!name || len == 0 || len > PROTO_NAME_MAX)
                return -EINVAL;
        if (name[0] == '/' || name[0] == '.')
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                unsigned k = name_class[(unsigned char)name[i]];

                if (!k)
                        return -EINVAL;
                if (k == NAME_SLASH && i + 1 < len && name[i + 1] == '/')
                        return -EINVAL;
        }
        return 0;
}

/* A LIST prefix: empty, or up to PROTO_NAME_MAX name characters (no rule on the first one). */
static int prefix_check(const char *prefix, size_t len)
{
        if (len > PROTO_NAME_MAX)
                return -EINVAL;
        for (size_t i = 0; i < len; i++)
                if (!name_char_ok(prefix[i]))
                        return -EINVAL;
        return 0;
}

/* Locate and check a non-empty region name at @off. Return: as str_locate(); -EINVAL. */
static int name_get(const uint8_t *buf, size_t len, size_t off, const char **namep, size_t *endp)
{
        const char *s;
        size_t n;
        int r;

        r = str_locate(buf, len, off, &s, &n, endp);
        if (r < 0)
                return r;
        if (*endp != len)
                return -EBADMSG;
        /* str_check() without its memchr(): proto_name_check() refuses a NUL like any other non-name byte */
        if (n > PROTO_NAME_MAX || s[n] != '\0')
                return -EINVAL;
        r = proto_name_check(s, n);
        if (r < 0)
                return r;
        *namep = s;
        return 0;
}

static bool backend_ok(uint16_t backend, bool allow_auto)
{
        return (allow_auto && backend == PROTO_BACKEND_AUTO) || backend == PROTO_BACKEND_MEMFD ||
               backend == PROTO_BACKEND_SHM || backend == PROTO_BACKEND_FILE;
}

/* ---- header ------------------------------------------------------------- */

void proto_header_encode(const struct proto_header *h, uint8_t *out)
{
        put_u32(out + 0, h->magic);
        out[4] = h->version;
        out[5] = h->flags;
        put_u16(out + 6, h->opcode);
        put_u32(out + 8, h->id);
        put_u32(out + 12, h->length);
        put_u16(out + 16, h->nfds);
        put_u16(out + 18, h->reserved);
}

inline int proto_header_decode(const uint8_t *buf, size_t len, struct proto_header *h)
{
        if (!buf || len < PROTO_HEADER_SIZE)
                return -EBADMSG;
        if (get_u32(buf) != PROTO_MAGIC)
                return -EBADMSG;

        *h = (struct proto_header){
                .magic = PROTO_MAGIC,
                .version = buf[4],
                .flags = buf[5],
                .opcode = get_u16(buf + 6),
                .id = get_u32(buf + 8),
                .length = get_u32(buf + 12),
                .nfds = get_u16(buf + 16),
                .reserved = get_u16(buf + 18),
        };

        /* stream-level errors first: only an unknown version leaves the stream in sync */
        if (h->flags & ~PROTO_FLAGS_KNOWN)
                return -EBADMSG;
        if ((h->flags & PROTO_FLAG_ERROR) && !(h->flags & PROTO_FLAG_REPLY))
                return -EBADMSG;
        if (h->reserved != 0)
                return -EBADMSG;
        if (h->length > PROTO_MAX_PAYLOAD || h->nfds > PROTO_MAX_FDS)
                return -EMSGSIZE;
        if (h->version != PROTO_VERSION)
                return -EPROTONOSUPPORT;
        return 0;
}

/* ---- error -------------------------------------------------------------- */

int proto_error_encode(const struct proto_error *m, uint8_t *buf, size_t size)
{
        size_t n, total;
        int r;

        r = str_msg_measure(m->message, PROTO_MESSAGE_MAX, ERROR_FIXED, size, &n, &total);
        if (r < 0)
                return r;
        put_u32(buf, (uint32_t)m->error);
        str_put(buf + ERROR_FIXED, m->message, n);
        return (int)total;
}

int proto_error_decode(const uint8_t *buf, size_t len, struct proto_error *m)
{
        const char *s;
        size_t n, end;
        int32_t error;
        int r;

        if (!buf || len < ERROR_FIXED)
                return -EBADMSG;
        r = str_locate(buf, len, ERROR_FIXED, &s, &n, &end);
        if (r < 0)
                return r;
        if (end != len)
                return -EBADMSG;
        r = str_check(s, n, PROTO_MESSAGE_MAX);
        if (r < 0)
                return r;
        error = (int32_t)get_u32(buf);
        if (error >= 0 || error < -ERRNO_MAX)
                return -EINVAL;
        *m = (struct proto_error){ .error = error, .message = s };
        return 0;
}

/* ---- HELLO -------------------------------------------------------------- */

int proto_hello_encode(const struct proto_hello *m, uint8_t *buf, size_t size)
{
        if (size < HELLO_SIZE)
                return -ENOBUFS;
        put_u16(buf + 0, m->min_version);
        put_u16(buf + 2, m->max_version);
        put_u32(buf + 4, m->flags);
        return HELLO_SIZE;
}

int proto_hello_decode(const uint8_t *buf, size_t len, struct proto_hello *m)
{
        struct proto_hello v;

        if (!buf || len != HELLO_SIZE)
                return -EBADMSG;
        v = (struct proto_hello){
                .min_version = get_u16(buf + 0),
                .max_version = get_u16(buf + 2),
                .flags = get_u32(buf + 4),
        };
        if (v.min_version == 0 || v.min_version > v.max_version || (v.flags & ~PROTO_HELLO_KNOWN))
                return -EINVAL;
        *m = v;
        return 0;
}

int proto_hello_reply_encode(const struct proto_hello_reply *m, uint8_t *buf, size_t size)
{
        size_t n, total;
        int r;

        r = str_msg_measure(m->server_version, PROTO_VERSION_STRING_MAX, HELLO_REPLY_FIXED, size, &n, &total);
        if (r < 0)
                return r;
        put_u16(buf + 0, m->version);
        put_u16(buf + 2, m->max_fds);
        put_u32(buf + 4, m->max_payload);
        put_u64(buf + 8, m->max_region_size);
        put_u32(buf + 16, m->name_max);
        put_u16(buf + 20, m->backend);
        put_u16(buf + 22, m->reserved);
        str_put(buf + HELLO_REPLY_FIXED, m->server_version, n);
        return (int)total;
}

inline int proto_hello_reply_decode(const uint8_t *buf, size_t len, struct proto_hello_reply *m)
{
        struct proto_hello_reply v;
        const char *s;
        size_t n, end;
        int r;

        if (!buf || len < HELLO_REPLY_FIXED)
                return -EBADMSG;
        r = str_locate(buf, len, HELLO_REPLY_FIXED, &s, &n, &end);
        if (r < 0)
                return r;
        if (end != len)
                return -EBADMSG;
        r = str_check(s, n, PROTO_VERSION_STRING_MAX);
        if (r < 0)
                return r;
        v = (struct proto_hello_reply){
                .version = get_u16(buf + 0),
                .max_fds = get_u16(buf + 2),
                .max_payload = get_u32(buf + 4),
                .max_region_size = get_u64(buf + 8),
                .name_max = get_u32(buf + 16),
                .backend = get_u16(buf + 20),
                .reserved = get_u16(buf + 22),
                .server_version = s,
        };
        if (v.version == 0 || !backend_ok(v.backend, true) || v.reserved != 0)
                return -EINVAL;
        *m = v;
        return 0;
}

/* ---- PING --------------------------------------------------------------- */

int proto_ping_encode(const struct proto_ping *m, uint8_t *buf, size_t size)
{
        if (size < PING_SIZE)
                return -ENOBUFS;
        put_u64(buf, m->cookie);
        return PING_SIZE;
}

int proto_ping_decode(const uint8_t *buf, size_t len, struct proto_ping *m)
{
        if (!buf || len != PING_SIZE)
                return -EBADMSG;
        m->cookie = get_u64(buf);
        return 0;
}

/* ---- STATUS ------------------------------------------------------------- */

int proto_status_reply_encode(const struct proto_status_reply *m, uint8_t *buf, size_t size)
{
        size_t n, total;
        int r;

        r = str_msg_measure(m->server_version, PROTO_VERSION_STRING_MAX, STATUS_REPLY_FIXED, size, &n, &total);
        if (r < 0)
                return r;
        put_u64(buf + 0, m->regions);
        put_u64(buf + 8, m->bytes);
        put_u64(buf + 16, m->connections);
        put_u64(buf + 24, m->uptime_sec);
        put_u16(buf + 32, m->backend);
        put_u16(buf + 34, m->reserved);
        put_u32(buf + 36, m->reserved2);
        str_put(buf + STATUS_REPLY_FIXED, m->server_version, n);
        return (int)total;
}

int proto_status_reply_decode(const uint8_t *buf, size_t len, struct proto_status_reply *m)
{
        struct proto_status_reply v;
        const char *s;
        size_t n, end;
        int r;

        if (!buf || len < STATUS_REPLY_FIXED)
                return -EBADMSG;
        r = str_locate(buf, len, STATUS_REPLY_FIXED, &s, &n, &end);
        if (r < 0)
                return r;
        if (end != len)
                return -EBADMSG;
        r = str_check(s, n, PROTO_VERSION_STRING_MAX);
        if (r < 0)
                return r;
        v = (struct proto_status_reply){
                .regions = get_u64(buf + 0),
                .bytes = get_u64(buf + 8),
                .connections = get_u64(buf + 16),
                .uptime_sec = get_u64(buf + 24),
                .backend = get_u16(buf + 32),
                .reserved = get_u16(buf + 34),
                .reserved2 = get_u32(buf + 36),
                .server_version = s,
        };
        if (!backend_ok(v.backend, true) || v.reserved != 0 || v.reserved2 != 0)
                return -EINVAL;
        *m = v;
        return 0;
}

/* ---- CREATE and its reply (also OPEN's reply) --------------------------- */

int proto_create_encode(const struct proto_create *m, uint8_t *buf, size_t size)
{
        size_t n, total;
        int r;

        r = str_msg_measure(m->name, PROTO_NAME_MAX, CREATE_FIXED, size, &n, &total);
        if (r < 0)
                return r;
        put_u64(buf + 0, m->size);
        put_u32(buf + 8, m->flags);
        put_u32(buf + 12, m->seals);
        put_u32(buf + 16, m->mode);
        put_u16(buf + 20, m->backend);
        put_u16(buf + 22, m->reserved);
        str_put(buf + CREATE_FIXED, m->name, n);
        return (int)total;
}

int proto_create_decode(const uint8_t *buf, size_t len, struct proto_create *m)
{
        struct proto_create v;
        const char *s;
        size_t n, end;
        int r;

        if (!buf || len < CREATE_FIXED)
                return -EBADMSG;
        r = str_locate(buf, len, CREATE_FIXED, &s, &n, &end);
        if (r < 0)
                return r;
        if (end != len)
                return -EBADMSG;
        r = str_check(s, n, PROTO_NAME_MAX);
        if (r < 0)
                return r;
        if (n > 0) { /* "" = anonymous */
                r = proto_name_check(s, n);
                if (r < 0)
                        return r;
        }
        v = (struct proto_create){
                .size = get_u64(buf + 0),
                .flags = get_u32(buf + 8),
                .seals = get_u32(buf + 12),
                .mode = get_u32(buf + 16),
                .backend = get_u16(buf + 20),
                .reserved = get_u16(buf + 22),
                .name = s,
        };
        if ((v.flags & ~PROTO_CREATE_KNOWN) || (v.seals & ~PROTO_SEALS_KNOWN) || v.mode > MODE_MAX ||
            !backend_ok(v.backend, true) || v.reserved != 0)
                return -EINVAL;
        /* a page size says which hugetlb pages: it means nothing without HUGE */
        if ((v.flags & PROTO_CREATE_HUGE_MASK) && !(v.flags & PROTO_CREATE_HUGE))
                return -EINVAL;
        *m = v;
        return 0;
}

/* the mode rule, as every refusal of a mode says it */
#define REFUSAL_MODE "mode above 0777 (owner/group/other: read 4, write 2; no setuid, setgid or sticky bit)"

const char *proto_create_refusal(const uint8_t *buf, size_t len)
{
        const char *s;
        size_t n, end;
        uint32_t flags, seals;

        if (!buf || len < CREATE_FIXED || str_locate(buf, len, CREATE_FIXED, &s, &n, &end) < 0 || end != len ||
            str_check(s, n, PROTO_NAME_MAX) < 0)
                return NULL;
        if (n > 0 && proto_name_check(s, n) < 0)
                return NULL; /* "malformed CREATE", as for every request: iomem_name_check() and the bindings say more */
        flags = get_u32(buf + 8);
        seals = get_u32(buf + 12);
        if (flags & ~PROTO_CREATE_KNOWN)
                return "CREATE: unknown flags (not IOMEM_CREATE_*, or newer than this iomemd)";
        if ((flags & PROTO_CREATE_HUGE_MASK) && !(flags & PROTO_CREATE_HUGE))
                return "CREATE: a huge page size (IOMEM_CREATE_HUGE_2MB/1GB) needs IOMEM_CREATE_HUGE";
        if (seals & ~PROTO_SEALS_KNOWN)
                return "CREATE: unknown seal bits (not IOMEM_SEAL_*)";
        if (get_u32(buf + 16) > MODE_MAX)
                return "CREATE: " REFUSAL_MODE;
        if (!backend_ok(get_u16(buf + 20), true))
                return "CREATE: unknown backend (0 = the daemon's default, 1 memfd, 2 shm, 3 file)";
        return NULL;
}

/*
 * Whether a request of @fixed bytes then a name has its shape and a name that keeps the rule: only then does a
 * refusal say which value it was (a bad name keeps "malformed X", which the bindings recognise).
 */
static bool refusal_name_ok(const uint8_t *buf, size_t len, size_t fixed)
{
        const char *s;
        size_t end;

        return buf && len >= fixed && name_get(buf, len, fixed, &s, &end) == 0;
}

/* OPEN and OPENV (@v): their flags and timeout_ms come first, alike. */
static const char *open_refusal(const uint8_t *buf, size_t len, bool v)
{
        uint32_t flags;

        if (!refusal_name_ok(buf, len, v ? OPENV_FIXED : OPEN_FIXED))
                return NULL;
        flags = get_u32(buf + 0);
        if (flags & ~PROTO_OPEN_KNOWN)
                return v ? "OPENV: unknown flags (RDONLY 0x1 and WAIT 0x2 only, or newer than this iomemd)"
                         : "OPEN: unknown flags (RDONLY 0x1 and WAIT 0x2 only, or newer than this iomemd)";
        if (!(flags & PROTO_OPEN_WAIT) && get_u32(buf + 4) != 0)
                return v ? "OPENV: a timeout without the WAIT flag (timeout_ms must be 0 unless WAIT is set)"
                         : "OPEN: a timeout without the WAIT flag (timeout_ms must be 0 unless WAIT is set)";
        return NULL;
}

static const char *seal_refusal(const uint8_t *buf, size_t len)
{
        if (!refusal_name_ok(buf, len, SEAL_FIXED))
                return NULL;
        if (get_u32(buf + 0) & ~PROTO_SEALS_KNOWN)
                return "SEAL: unknown seal bits (not IOMEM_SEAL_*: SEAL 0x1, SHRINK 0x2, GROW 0x4, WRITE 0x8, "
                       "FUTURE_WRITE 0x10)";
        if (get_u32(buf + 4) != 0)
                return "SEAL: the reserved field is not 0";
        return NULL;
}

static const char *chmod_refusal(const uint8_t *buf, size_t len)
{
        if (!refusal_name_ok(buf, len, CHMOD_FIXED))
                return NULL;
        if (get_u32(buf + 0) > MODE_MAX)
                return "CHMOD: " REFUSAL_MODE;
        if (get_u32(buf + 4) != 0)
                return "CHMOD: the reserved field is not 0";
        return NULL;
}

/* REGISTER and PUBLISH: flags (LEASE 0x1 only) then mode, at @flags_off. */
static const char *flags_mode_refusal(const uint8_t *buf, size_t len, size_t fixed, size_t flags_off, bool publish)
{
        if (!refusal_name_ok(buf, len, fixed))
                return NULL;
        if (get_u32(buf + flags_off) & ~(publish ? PROTO_PUBLISH_KNOWN : PROTO_REGISTER_KNOWN))
                return publish ? "PUBLISH: unknown flags (IOMEM_PUBLISH_LEASE 0x1 only, or newer than this iomemd)"
                               : "REGISTER: unknown flags (IOMEM_REGISTER_LEASE 0x1 only, or newer than this iomemd)";
        if (get_u32(buf + flags_off + 4) > MODE_MAX)
                return publish ? "PUBLISH: " REFUSAL_MODE ", or 0 to keep the replaced version's"
                               : "REGISTER: " REFUSAL_MODE ", or 0 for the daemon's default";
        return NULL;
}

const char *proto_refusal(uint16_t opcode, const uint8_t *buf, size_t len)
{
        switch (opcode) {
        case PROTO_OP_CREATE:
                return proto_create_refusal(buf, len);
        case PROTO_OP_OPEN:
                return open_refusal(buf, len, false);
        case PROTO_OP_OPENV:
                return open_refusal(buf, len, true);
        case PROTO_OP_SEAL:
                return seal_refusal(buf, len);
        case PROTO_OP_CHMOD:
                return chmod_refusal(buf, len);
        case PROTO_OP_REGISTER:
                return flags_mode_refusal(buf, len, REGISTER_FIXED, 8, false);
        case PROTO_OP_PUBLISH:
                return flags_mode_refusal(buf, len, PUBLISH_FIXED, 16, true);
        default: /* STAT, DELETE, CHOWN...: their decoders refuse no value but the name (or the shape) */
                return NULL;
        }
}

int proto_region_info_encode(const struct proto_region_info *m, uint8_t *buf, size_t size)
{
        if (size < REGION_INFO_SIZE)
                return -ENOBUFS;
        put_u64(buf + 0, m->id);
        put_u64(buf + 8, m->size);
        put_u32(buf + 16, m->seals);
        put_u32(buf + 20, m->flags);
        put_u16(buf + 24, m->backend);
        put_u16(buf + 26, m->reserved);
        put_u32(buf + 28, m->reserved2);
        return REGION_INFO_SIZE;
}

inline int proto_region_info_decode(const uint8_t *buf, size_t len, struct proto_region_info *m)
{
        struct proto_region_info v;

        if (!buf || len != REGION_INFO_SIZE)
                return -EBADMSG;
        v = (struct proto_region_info){
                .id = get_u64(buf + 0),
                .size = get_u64(buf + 8),
                .seals = get_u32(buf + 16), /* the kernel's F_GET_SEALS: unknown bits allowed (P7) */
                .flags = get_u32(buf + 20),
                .backend = get_u16(buf + 24),
                .reserved = get_u16(buf + 26),
                .reserved2 = get_u32(buf + 28),
        };
        if ((v.flags & ~PROTO_REGION_KNOWN) || !backend_ok(v.backend, false) || v.reserved != 0 ||
            v.reserved2 != 0)
                return -EINVAL;
        *m = v;
        return 0;
}

/* ---- OPEN --------------------------------------------------------------- */

inline int proto_open_encode(const struct proto_open *m, uint8_t *buf, size_t size)
{
        size_t n, total;
        int r;

        r = str_msg_measure(m->name, PROTO_NAME_MAX, OPEN_FIXED, size, &n, &total);
        if (r < 0)
                return r;
        put_u32(buf + 0, m->flags);
        put_u32(buf + 4, m->timeout_ms);
        str_put(buf + OPEN_FIXED, m->name, n);
        return (int)total;
}

int proto_open_decode(const uint8_t *buf, size_t len, struct proto_open *m)
{
        struct proto_open v = { .name = NULL };
        size_t end;
        int r;

        if (!buf || len < OPEN_FIXED)
                return -EBADMSG;
        r = name_get(buf, len, OPEN_FIXED, &v.name, &end);
        if (r < 0)
                return r;
        v.name_len = end - OPEN_FIXED - STRING_OVERHEAD;
        v.flags = get_u32(buf + 0);
        v.timeout_ms = get_u32(buf + 4);
        if (v.flags & ~PROTO_OPEN_KNOWN)
                return -EINVAL;
        if (!(v.flags & PROTO_OPEN_WAIT) && v.timeout_ms != 0)
                return -EINVAL;
        *m = v;
        return 0;
}

/* ---- RESIZE ------------------------------------------------------------- */

int proto_resize_encode(const struct proto_resize *m, uint8_t *buf, size_t size)
{
        size_t n, total;
        int r;

        r = str_msg_measure(m->name, PROTO_NAME_MAX, RESIZE_FIXED, size, &n, &total);
        if (r < 0)
                return r;
        put_u64(buf + 0, m->size);
        str_put(buf + RESIZE_FIXED, m->name, n);
        return (int)total;
}

int proto_resize_decode(const uint8_t *buf, size_t len, struct proto_resize *m)
{
        struct proto_resize v = { .name = NULL };
        size_t end;
        int r;

        if (!buf || len < RESIZE_FIXED)
                return -EBADMSG;
        r = name_get(buf, len, RESIZE_FIXED, &v.name, &end);
        if (r < 0)
                return r;
        v.size = get_u64(buf + 0);
        *m = v;
        return 0;
}

int proto_resize_reply_encode(const struct proto_resize_reply *m, uint8_t *buf, size_t size)
{
        if (size < RESIZE_REPLY_SIZE)
                return -ENOBUFS;
        put_u64(buf, m->size);
        return RESIZE_REPLY_SIZE;
}

int proto_resize_reply_decode(const uint8_t *buf, size_t len, struct proto_resize_reply *m)
{
        if (!buf || len != RESIZE_REPLY_SIZE)
                return -EBADMSG;
        m->size = get_u64(buf);
        return 0;
}

/* ---- SEAL --------------------------------------------------------------- */

int proto_seal_encode(const struct proto_seal *m, uint8_t *buf, size_t size)
{
        size_t n, total;
        int r;

        r = str_msg_measure(m->name, PROTO_NAME_MAX, SEAL_FIXED, size, &n, &total);
        if (r < 0)
                return r;
        put_u32(buf + 0, m->seals);
        put_u32(buf + 4, m->reserved);
        str_put(buf + SEAL_FIXED, m->name, n);
        return (int)total;
}

int proto_seal_decode(const uint8_t *buf, size_t len, struct proto_seal *m)
{
        struct proto_seal v = { .name = NULL };
        size_t end;
        int r;

        if (!buf || len < SEAL_FIXED)
                return -EBADMSG;
        r = name_get(buf, len, SEAL_FIXED, &v.name, &end);
        if (r < 0)
                return r;
        v.seals = get_u32(buf + 0);
        v.reserved = get_u32(buf + 4);
        if ((v.seals & ~PROTO_SEALS_KNOWN) || v.reserved != 0)
                return -EINVAL;
        *m = v;
        return 0;
}

int proto_seal_reply_encode(const struct proto_seal_reply *m, uint8_t *buf, size_t size)
{
        if (size < SEAL_REPLY_SIZE)
                return -ENOBUFS;
        put_u32(buf, m->seals);
        return SEAL_REPLY_SIZE;
}

int proto_seal_reply_decode(const uint8_t *buf, size_t len, struct proto_seal_reply *m)
{
        if (!buf || len != SEAL_REPLY_SIZE)
                return -EBADMSG;
        m->seals = get_u32(buf); /* the kernel's F_GET_SEALS: unknown bits allowed (P7) */
        return 0;
}

/* ---- CHMOD, CHOWN, QUOTA ------------------------------------------------ */

/* A fixed part of two u32 then a name: CHMOD and CHOWN share this layout. Return: as the encoders. */
static int u32_pair_name_encode(uint32_t a, uint32_t b, const char *name, uint8_t *buf, size_t size)
{
        size_t n, total;
        int r;

        r = str_msg_measure(name, PROTO_NAME_MAX, 8, size, &n, &total);
        if (r < 0)
                return r;
        put_u32(buf + 0, a);
        put_u32(buf + 4, b);
        str_put(buf + 8, name, n);
        return (int)total;
}

/* Return: as the decoders (layout only; the caller checks the values). */
static int u32_pair_name_decode(const uint8_t *buf, size_t len, uint32_t *ap, uint32_t *bp, const char **namep)
{
        size_t end;
        int r;

        if (!buf || len < 8)
                return -EBADMSG;
        r = name_get(buf, len, 8, namep, &end);
        if (r < 0)
                return r;
        *ap = get_u32(buf + 0);
        *bp = get_u32(buf + 4);
        return 0;
}

int proto_chmod_encode(const struct proto_chmod *m, uint8_t *buf, size_t size)
{
        return u32_pair_name_encode(m->mode, m->reserved, m->name, buf, size);
}

int proto_chmod_decode(const uint8_t *buf, size_t len, struct proto_chmod *m)
{
        struct proto_chmod v = { .name = NULL };
        int r;

        r = u32_pair_name_decode(buf, len, &v.mode, &v.reserved, &v.name);
        if (r < 0)
                return r;
        if (v.mode > MODE_MAX || v.reserved != 0)
                return -EINVAL;
        *m = v;
        return 0;
}

int proto_chown_encode(const struct proto_chown *m, uint8_t *buf, size_t size)
{
        return u32_pair_name_encode(m->uid, m->gid, m->name, buf, size);
}

int proto_chown_decode(const uint8_t *buf, size_t len, struct proto_chown *m)
{
        struct proto_chown v = { .name = NULL };
        int r;

        r = u32_pair_name_decode(buf, len, &v.uid, &v.gid, &v.name);
        if (r < 0)
                return r;
        *m = v;
        return 0;
}

int proto_quota_reply_encode(const struct proto_quota_reply *m, uint8_t *buf, size_t size)
{
        if (size < QUOTA_REPLY_SIZE)
                return -ENOBUFS;
        put_u32(buf + 0, m->uid);
        put_u32(buf + 4, m->gid);
        put_u64(buf + 8, m->bytes);
        put_u64(buf + 16, m->max_bytes);
        put_u64(buf + 24, m->regions);
        put_u64(buf + 32, m->max_regions);
        put_u64(buf + 40, m->connections);
        put_u64(buf + 48, m->max_connections);
        put_u64(buf + 56, m->fds);
        put_u64(buf + 64, m->max_fds);
        put_u64(buf + 72, m->max_region_size);
        return QUOTA_REPLY_SIZE;
}

int proto_quota_reply_decode(const uint8_t *buf, size_t len, struct proto_quota_reply *m)
{
        if (!buf || len != QUOTA_REPLY_SIZE)
                return -EBADMSG;
        *m = (struct proto_quota_reply){
                .uid = get_u32(buf + 0),
                .gid = get_u32(buf + 4),
                .bytes = get_u64(buf + 8),
                .max_bytes = get_u64(buf + 16),
                .regions = get_u64(buf + 24),
                .max_regions = get_u64(buf + 32),
                .connections = get_u64(buf + 40),
                .max_connections = get_u64(buf + 48),
                .fds = get_u64(buf + 56),
                .max_fds = get_u64(buf + 64),
                .max_region_size = get_u64(buf + 72),
        };
        return 0;
}

/* ---- REGISTER ----------------------------------------------------------- */

int proto_register_encode(const struct proto_register *m, uint8_t *buf, size_t size)
{
        size_t n, total;
        int r;

        r = str_msg_measure(m->name, PROTO_NAME_MAX, REGISTER_FIXED, size, &n, &total);
        if (r < 0)
                return r;
        put_u64(buf + 0, m->size);
        put_u32(buf + 8, m->flags);
        put_u32(buf + 12, m->mode);
        str_put(buf + REGISTER_FIXED, m->name, n);
        return (int)total;
}

int proto_register_decode(const uint8_t *buf, size_t len, struct proto_register *m)
{
        struct proto_register v = { .name = NULL };
        size_t end;
        int r;

        if (!buf || len < REGISTER_FIXED)
                return -EBADMSG;
        r = name_get(buf, len, REGISTER_FIXED, &v.name, &end);
        if (r < 0)
                return r;
        v.size = get_u64(buf + 0);
        v.flags = get_u32(buf + 8);
        v.mode = get_u32(buf + 12);
        if ((v.flags & ~PROTO_REGISTER_KNOWN) || v.mode > MODE_MAX)
                return -EINVAL;
        *m = v;
        return 0;
}

int proto_register_reply_encode(const struct proto_register_reply *m, uint8_t *buf, size_t size)
{
        if (size < REGISTER_REPLY_SIZE)
                return -ENOBUFS;
        put_u64(buf + 0, m->id);
        put_u32(buf + 8, m->seals);
        put_u32(buf + 12, m->reserved);
        return REGISTER_REPLY_SIZE;
}

int proto_register_reply_decode(const uint8_t *buf, size_t len, struct proto_register_reply *m)
{
        struct proto_register_reply v;

        if (!buf || len != REGISTER_REPLY_SIZE)
                return -EBADMSG;
        v.id = get_u64(buf + 0);
        v.seals = get_u32(buf + 8); /* the kernel's F_GET_SEALS: unknown bits allowed (P7) */
        v.reserved = get_u32(buf + 12);
        if (v.reserved != 0 || v.id == 0)
                return -EINVAL;
        *m = v;
        return 0;
}

/* ---- STAT and DELETE ---------------------------------------------------- */

int proto_name_encode(const struct proto_name *m, uint8_t *buf, size_t size)
{
        size_t n, total;
        int r;

        r = str_msg_measure(m->name, PROTO_NAME_MAX, 0, size, &n, &total);
        if (r < 0)
                return r;
        str_put(buf, m->name, n);
        return (int)total;
}

int proto_name_decode(const uint8_t *buf, size_t len, struct proto_name *m)
{
        const char *s;
        size_t end;
        int r;

        if (!buf)
                return -EBADMSG;
        r = name_get(buf, len, 0, &s, &end);
        if (r < 0)
                return r;
        m->name = s;
        return 0;
}

int proto_stat_reply_encode(const struct proto_stat_reply *m, uint8_t *buf, size_t size)
{
        if (size < STAT_REPLY_SIZE)
                return -ENOBUFS;
        put_u64(buf + 0, m->id);
        put_u64(buf + 8, m->size);
        put_u64(buf + 16, m->ctime_ns);
        put_u64(buf + 24, m->open_count);
        put_u32(buf + 32, m->seals);
        put_u32(buf + 36, m->flags);
        put_u32(buf + 40, m->uid);
        put_u32(buf + 44, m->gid);
        put_u32(buf + 48, m->mode);
        put_u16(buf + 52, m->backend);
        put_u16(buf + 54, m->reserved);
        return STAT_REPLY_SIZE;
}

int proto_stat_reply_decode(const uint8_t *buf, size_t len, struct proto_stat_reply *m)
{
        struct proto_stat_reply v;

        if (!buf || len != STAT_REPLY_SIZE)
                return -EBADMSG;
        v = (struct proto_stat_reply){
                .id = get_u64(buf + 0),
                .size = get_u64(buf + 8),
                .ctime_ns = get_u64(buf + 16),
                .open_count = get_u64(buf + 24),
                .seals = get_u32(buf + 32), /* unknown bits allowed (P7) */
                .flags = get_u32(buf + 36),
                .uid = get_u32(buf + 40),
                .gid = get_u32(buf + 44),
                .mode = get_u32(buf + 48),
                .backend = get_u16(buf + 52),
                .reserved = get_u16(buf + 54),
        };
        if ((v.flags & ~PROTO_REGION_KNOWN) || v.mode > MODE_MAX || !backend_ok(v.backend, false) ||
            v.reserved != 0)
                return -EINVAL;
        *m = v;
        return 0;
}

/* ---- LIST --------------------------------------------------------------- */

int proto_list_encode(const struct proto_list *m, uint8_t *buf, size_t size)
{
        size_t n, total;
        int r;

        r = str_msg_measure(m->prefix, PROTO_NAME_MAX, LIST_FIXED, size, &n, &total);
        if (r < 0)
                return r;
        put_u64(buf + 0, m->cursor);
        put_u32(buf + 8, m->max_entries);
        put_u32(buf + 12, m->reserved);
        str_put(buf + LIST_FIXED, m->prefix, n);
        return (int)total;
}

int proto_list_decode(const uint8_t *buf, size_t len, struct proto_list *m)
{
        struct proto_list v;
        const char *s;
        size_t n, end;
        int r;

        if (!buf || len < LIST_FIXED)
                return -EBADMSG;
        r = str_locate(buf, len, LIST_FIXED, &s, &n, &end);
        if (r < 0)
                return r;
        if (end != len)
                return -EBADMSG;
        r = str_check(s, n, PROTO_NAME_MAX);
        if (r < 0)
                return r;
        r = prefix_check(s, n);
        if (r < 0)
                return r;
        v = (struct proto_list){
                .cursor = get_u64(buf + 0),
                .max_entries = get_u32(buf + 8),
                .reserved = get_u32(buf + 12),
                .prefix = s,
        };
        if (v.reserved != 0)
                return -EINVAL;
        *m = v;
        return 0;
}

void proto_list_writer_init(struct proto_list_writer *w, uint8_t *buf, size_t size)
{
        *w = (struct proto_list_writer){ .buf = buf, .size = size, .len = LIST_REPLY_FIXED, .count = 0 };
}

int proto_list_writer_add(struct proto_list_writer *w, const struct proto_list_entry *e)
{
        uint8_t *p;
        size_t n;
        uint64_t need;
        int r;

        r = str_measure(e->name, PROTO_NAME_MAX, &n);
        if (r < 0)
                return r;
        need = (uint64_t)w->len + LIST_ENTRY_FIXED + n + STRING_OVERHEAD;
        if (need > w->size || w->count == UINT32_MAX)
                return -ENOBUFS;
        p = w->buf + w->len;
        put_u64(p + 0, e->id);
        put_u64(p + 8, e->size);
        put_u32(p + 16, e->seals);
        put_u32(p + 20, e->mode);
        put_u32(p + 24, e->uid);
        put_u32(p + 28, e->gid);
        str_put(p + LIST_ENTRY_FIXED, e->name, n);
        w->len = (size_t)need;
        w->count++;
        return 0;
}

int proto_list_writer_finish(struct proto_list_writer *w, uint64_t next_cursor)
{
        if (w->size < LIST_REPLY_FIXED || w->len > (size_t)INT32_MAX)
                return -ENOBUFS;
        put_u64(w->buf + 0, next_cursor);
        put_u32(w->buf + 8, w->count);
        put_u32(w->buf + 12, 0);
        return (int)w->len;
}

/*
 * Decode the entry at @off of entries[0..len): layout, then values.
 * Return: 0 with *e and *endp set; -EBADMSG; -EINVAL.
 */
static int list_entry_parse(const uint8_t *entries, size_t len, size_t off, struct proto_list_entry *e, size_t *endp)
{
        struct proto_list_entry v;
        const char *s;
        size_t n;
        int r;

        if (off > len || len - off < LIST_ENTRY_FIXED)
                return -EBADMSG;
        r = str_locate(entries, len, off + LIST_ENTRY_FIXED, &s, &n, endp);
        if (r < 0)
                return r;
        r = str_check(s, n, PROTO_NAME_MAX);
        if (r < 0)
                return r;
        r = proto_name_check(s, n);
        if (r < 0)
                return r;
        v = (struct proto_list_entry){
                .id = get_u64(entries + off + 0),
                .size = get_u64(entries + off + 8),
                .seals = get_u32(entries + off + 16), /* unknown bits allowed (P7) */
                .mode = get_u32(entries + off + 20),
                .uid = get_u32(entries + off + 24),
                .gid = get_u32(entries + off + 28),
                .name = s,
        };
        if (v.mode > MODE_MAX)
                return -EINVAL;
        *e = v;
        return 0;
}

int proto_list_reply_decode(const uint8_t *buf, size_t len, struct proto_list_reply *m)
{
        struct proto_list_reply v;
        struct proto_list_entry e;
        size_t off = 0;
        uint32_t i;
        int r;

        if (!buf || len < LIST_REPLY_FIXED)
                return -EBADMSG;
        v = (struct proto_list_reply){
                .next_cursor = get_u64(buf + 0),
                .count = get_u32(buf + 8),
                .reserved = get_u32(buf + 12),
                .entries = buf + LIST_REPLY_FIXED,
                .entries_len = len - LIST_REPLY_FIXED,
        };
        /* every entry is checked here, so walking a decoded reply cannot fail */
        for (i = 0; i < v.count; i++) {
                r = list_entry_parse(v.entries, v.entries_len, off, &e, &off);
                if (r < 0)
                        return r;
        }
        if (off != v.entries_len)
                return -EBADMSG;
        if (v.reserved != 0)
                return -EINVAL;
        *m = v;
        return 0;
}

int proto_list_entry_next(const struct proto_list_reply *r, size_t *offsetp, struct proto_list_entry *e)
{
        size_t end;
        int k;

        if (*offsetp >= r->entries_len)
                return 0;
        k = list_entry_parse(r->entries, r->entries_len, *offsetp, e, &end);
        if (k < 0)
                return k;
        *offsetp = end;
        return 1;
}

/* ---- METRICS ------------------------------------------------------------ */

void proto_metrics_writer_init(struct proto_metrics_writer *w, uint8_t *buf, size_t size)
{
        *w = (struct proto_metrics_writer){ .buf = buf, .size = size, .len = METRICS_REPLY_FIXED, .count = 0 };
}

int proto_metrics_writer_add(struct proto_metrics_writer *w, const struct proto_metric_entry *e)
{
        uint8_t *p;

        if ((uint64_t)w->len + METRICS_ENTRY_SIZE > w->size || w->count == UINT32_MAX)
                return -ENOBUFS;
        p = w->buf + w->len;
        put_u16(p + 0, e->metric);
        put_u16(p + 2, e->reserved);
        put_u32(p + 4, e->label);
        put_u64(p + 8, e->value);
        w->len += METRICS_ENTRY_SIZE;
        w->count++;
        return 0;
}

int proto_metrics_writer_finish(struct proto_metrics_writer *w, uint16_t flags)
{
        if (w->size < METRICS_REPLY_FIXED || w->len > (size_t)INT32_MAX)
                return -ENOBUFS;
        put_u16(w->buf + 0, PROTO_METRICS_VERSION);
        put_u16(w->buf + 2, flags);
        put_u32(w->buf + 4, w->count);
        return (int)w->len;
}

int proto_metrics_reply_decode(const uint8_t *buf, size_t len, struct proto_metrics_reply *m)
{
        struct proto_metrics_reply v;

        if (!buf || len < METRICS_REPLY_FIXED)
                return -EBADMSG;
        v = (struct proto_metrics_reply){
                .version = get_u16(buf + 0),
                .flags = get_u16(buf + 2),
                .count = get_u32(buf + 4),
                .entries = buf + METRICS_REPLY_FIXED,
        };
        if ((uint64_t)v.count * METRICS_ENTRY_SIZE != len - METRICS_REPLY_FIXED)
                return -EBADMSG;
        if (v.version != PROTO_METRICS_VERSION || (v.flags & ~PROTO_METRICS_FLAGS_KNOWN))
                return -EINVAL;
        for (uint32_t i = 0; i < v.count; i++)
                if (get_u16(v.entries + (size_t)i * METRICS_ENTRY_SIZE + 2) != 0)
                        return -EINVAL;
        *m = v;
        return 0;
}

void proto_metrics_entry_get(const struct proto_metrics_reply *m, uint32_t index, struct proto_metric_entry *e)
{
        const uint8_t *p = m->entries + (size_t)index * METRICS_ENTRY_SIZE;

        *e = (struct proto_metric_entry){
                .metric = get_u16(p + 0),
                .reserved = get_u16(p + 2),
                .label = get_u32(p + 4),
                .value = get_u64(p + 8),
        };
}

#define METRIC(id, t, l, n, h) { .metric = PROTO_METRIC_##id, .type = PROTO_METRIC_##t, \
                                 .label = PROTO_METRIC_LABEL_##l, .name = n, .help = h }

/* docs/metrics.md lists the same; names follow Prometheus' conventions (base units, _total only on samples) */
static const struct proto_metric_info proto_metrics[] = {
        METRIC(REGIONS, GAUGE, NONE, "iomemd_regions", "Named regions the daemon holds."),
        METRIC(BYTES, GAUGE, NONE, "iomemd_region_bytes", "Sum of the sizes of the named regions, in bytes."),
        METRIC(CONNECTIONS, GAUGE, NONE, "iomemd_connections", "Client connections open."),
        METRIC(UPTIME, GAUGE, NONE, "iomemd_uptime_seconds", "Seconds since the daemon started."),
        METRIC(CONNECTIONS_ACCEPTED, COUNTER, NONE, "iomemd_connections_accepted",
               "Client connections accepted since start."),
        METRIC(CONNECTIONS_REFUSED, COUNTER, NONE, "iomemd_connections_refused",
               "Client connections refused (allow-list or connection quota) since start."),
        METRIC(WAITING_OPENS, GAUGE, NONE, "iomemd_waiting_opens", "OPEN requests waiting for a name to appear."),
        METRIC(FD_STORE_FDS, GAUGE, NONE, "iomemd_fd_store_fds", "File descriptors in systemd's fd store."),
        METRIC(FD_STORE_MAX, GAUGE, NONE, "iomemd_fd_store_max_fds",
               "Capacity of systemd's fd store (FileDescriptorStoreMax), 0 without a store."),
        METRIC(KEEPERS, GAUGE, NONE, "iomemd_keepers", "Keeper processes holding region fds for the daemon."),
        METRIC(REGION_FDS, GAUGE, NONE, "iomemd_region_fds", "Region fds held by the daemon process itself."),
        METRIC(QUOTA_REFUSALS, COUNTER, NONE, "iomemd_quota_refusals",
               "Requests and connections refused with EDQUOT since start."),
        METRIC(CLOSING_FDS, GAUGE, NONE, "iomemd_closing_fds",
               "Fds the daemon handed to its closer threads that are not closed yet."),
        METRIC(ORPHAN_SOCKETS, GAUGE, NONE, "iomemd_orphan_sockets",
               "Sockets of departed clients kept open because fds sent to them are still unread."),
        METRIC(JOBS, GAUGE, NONE, "iomemd_jobs",
               "RESERVE, RESIZE and SEAL jobs of the worker threads not yet done with, each holding an fd."),
        METRIC(REQUESTS, COUNTER, REQUEST, "iomemd_requests", "Requests received since start, by request."),
        METRIC(REQUEST_ERRORS, COUNTER, REQUEST, "iomemd_request_errors",
               "Error replies sent since start, by request."),
        METRIC(ERRORS, COUNTER, CODE, "iomemd_errors", "Error replies sent since start, by error code."),
        METRIC(UID_REGIONS, GAUGE, UID, "iomemd_uid_regions", "Named regions owned, by uid."),
        METRIC(UID_BYTES, GAUGE, UID, "iomemd_uid_region_bytes", "Bytes of named regions owned, by uid."),
        METRIC(UID_CONNECTIONS, GAUGE, UID, "iomemd_uid_connections", "Connections open, by uid."),
        METRIC(UID_QUEUED_FDS, GAUGE, UID, "iomemd_uid_queued_fds", "Fds queued towards a uid's connections."),
        METRIC(UID_QUOTA_REFUSALS, COUNTER, UID, "iomemd_uid_quota_refusals",
               "Requests and connections refused with EDQUOT since start, by uid."),
};

const struct proto_metric_info *proto_metric_info(uint16_t metric)
{
        for (size_t i = 0; i < sizeof(proto_metrics) / sizeof(proto_metrics[0]); i++)
                if (proto_metrics[i].metric == metric)
                        return &proto_metrics[i];
        return NULL;
}

/* ---- the EVENTS feature: WATCH, UNWATCH, PUBLISH, OPENV, STATV, events -- */

/* A LIST-style prefix string at @off that must end the payload. Return: 0, -EBADMSG, -EINVAL. */
static int prefix_get(const uint8_t *buf, size_t len, size_t off, const char **prefixp)
{
        const char *s;
        size_t n, end;
        int r;

        r = str_locate(buf, len, off, &s, &n, &end);
        if (r < 0)
                return r;
        if (end != len)
                return -EBADMSG;
        r = str_check(s, n, PROTO_NAME_MAX);
        if (r < 0)
                return r;
        r = prefix_check(s, n);
        if (r < 0)
                return r;
        *prefixp = s;
        return 0;
}

int proto_watch_encode(const struct proto_watch *m, uint8_t *buf, size_t size)
{
        size_t n, total;
        int r;

        r = str_msg_measure(m->prefix, PROTO_NAME_MAX, WATCH_FIXED, size, &n, &total);
        if (r < 0)
                return r;
        put_u32(buf + 0, m->flags);
        put_u32(buf + 4, m->reserved);
        str_put(buf + WATCH_FIXED, m->prefix, n);
        return (int)total;
}

int proto_watch_decode(const uint8_t *buf, size_t len, struct proto_watch *m)
{
        struct proto_watch v = { .prefix = NULL };
        int r;

        if (!buf || len < WATCH_FIXED)
                return -EBADMSG;
        r = prefix_get(buf, len, WATCH_FIXED, &v.prefix);
        if (r < 0)
                return r;
        v.flags = get_u32(buf + 0);
        v.reserved = get_u32(buf + 4);
        if ((v.flags & ~PROTO_WATCH_KNOWN) || v.reserved != 0)
                return -EINVAL;
        *m = v;
        return 0;
}

/* WATCH reply and UNWATCH request share one shape: u32 watch_id (not 0), u32 reserved. */
static int watch_id_encode(uint32_t watch_id, uint32_t reserved, uint8_t *buf, size_t size)
{
        if (size < WATCH_REPLY_SIZE)
                return -ENOBUFS;
        put_u32(buf + 0, watch_id);
        put_u32(buf + 4, reserved);
        return WATCH_REPLY_SIZE;
}

static int watch_id_decode(const uint8_t *buf, size_t len, uint32_t *watch_idp)
{
        uint32_t id;

        if (!buf || len != WATCH_REPLY_SIZE)
                return -EBADMSG;
        id = get_u32(buf + 0);
        if (id == 0 || get_u32(buf + 4) != 0)
                return -EINVAL;
        *watch_idp = id;
        return 0;
}

int proto_watch_reply_encode(const struct proto_watch_reply *m, uint8_t *buf, size_t size)
{
        return watch_id_encode(m->watch_id, m->reserved, buf, size);
}

int proto_watch_reply_decode(const uint8_t *buf, size_t len, struct proto_watch_reply *m)
{
        uint32_t id;
        int r;

        r = watch_id_decode(buf, len, &id);
        if (r < 0)
                return r;
        *m = (struct proto_watch_reply){ .watch_id = id };
        return 0;
}

int proto_unwatch_encode(const struct proto_unwatch *m, uint8_t *buf, size_t size)
{
        return watch_id_encode(m->watch_id, m->reserved, buf, size);
}

int proto_unwatch_decode(const uint8_t *buf, size_t len, struct proto_unwatch *m)
{
        uint32_t id;
        int r;

        r = watch_id_decode(buf, len, &id);
        if (r < 0)
                return r;
        *m = (struct proto_unwatch){ .watch_id = id };
        return 0;
}

int proto_publish_encode(const struct proto_publish *m, uint8_t *buf, size_t size)
{
        size_t n, total;
        int r;

        r = str_msg_measure(m->name, PROTO_NAME_MAX, PUBLISH_FIXED, size, &n, &total);
        if (r < 0)
                return r;
        put_u64(buf + 0, m->size);
        put_u64(buf + 8, m->expect_generation);
        put_u32(buf + 16, m->flags);
        put_u32(buf + 20, m->mode);
        str_put(buf + PUBLISH_FIXED, m->name, n);
        return (int)total;
}

int proto_publish_decode(const uint8_t *buf, size_t len, struct proto_publish *m)
{
        struct proto_publish v = { .name = NULL };
        size_t end;
        int r;

        if (!buf || len < PUBLISH_FIXED)
                return -EBADMSG;
        r = name_get(buf, len, PUBLISH_FIXED, &v.name, &end);
        if (r < 0)
                return r;
        v.size = get_u64(buf + 0);
        v.expect_generation = get_u64(buf + 8);
        v.flags = get_u32(buf + 16);
        v.mode = get_u32(buf + 20);
        if ((v.flags & ~PROTO_PUBLISH_KNOWN) || v.mode > MODE_MAX)
                return -EINVAL;
        *m = v;
        return 0;
}

int proto_publish_reply_encode(const struct proto_publish_reply *m, uint8_t *buf, size_t size)
{
        if (size < PUBLISH_REPLY_SIZE)
                return -ENOBUFS;
        put_u64(buf + 0, m->id);
        put_u64(buf + 8, m->generation);
        put_u64(buf + 16, m->replaced_id);
        put_u32(buf + 24, m->seals);
        put_u32(buf + 28, m->reserved);
        return PUBLISH_REPLY_SIZE;
}

int proto_publish_reply_decode(const uint8_t *buf, size_t len, struct proto_publish_reply *m)
{
        struct proto_publish_reply v;

        if (!buf || len != PUBLISH_REPLY_SIZE)
                return -EBADMSG;
        v = (struct proto_publish_reply){
                .id = get_u64(buf + 0),
                .generation = get_u64(buf + 8),
                .replaced_id = get_u64(buf + 16),
                .seals = get_u32(buf + 24), /* the kernel's F_GET_SEALS: unknown bits allowed (P7) */
                .reserved = get_u32(buf + 28),
        };
        if (v.id == 0 || v.generation == 0 || v.reserved != 0)
                return -EINVAL;
        *m = v;
        return 0;
}

int proto_openv_encode(const struct proto_openv *m, uint8_t *buf, size_t size)
{
        size_t n, total;
        int r;

        r = str_msg_measure(m->name, PROTO_NAME_MAX, OPENV_FIXED, size, &n, &total);
        if (r < 0)
                return r;
        put_u32(buf + 0, m->flags);
        put_u32(buf + 4, m->timeout_ms);
        put_u64(buf + 8, m->after_generation);
        str_put(buf + OPENV_FIXED, m->name, n);
        return (int)total;
}

int proto_openv_decode(const uint8_t *buf, size_t len, struct proto_openv *m)
{
        struct proto_openv v = { .name = NULL };
        size_t end;
        int r;

        if (!buf || len < OPENV_FIXED)
                return -EBADMSG;
        r = name_get(buf, len, OPENV_FIXED, &v.name, &end);
        if (r < 0)
                return r;
        v.flags = get_u32(buf + 0);
        v.timeout_ms = get_u32(buf + 4);
        v.after_generation = get_u64(buf + 8);
        if (v.flags & ~PROTO_OPEN_KNOWN)
                return -EINVAL;
        if (!(v.flags & PROTO_OPEN_WAIT) && v.timeout_ms != 0)
                return -EINVAL;
        *m = v;
        return 0;
}

int proto_region_infov_encode(const struct proto_region_infov *m, uint8_t *buf, size_t size)
{
        int r;

        if (size < REGION_INFOV_SIZE)
                return -ENOBUFS;
        r = proto_region_info_encode(&m->info, buf, size);
        if (r < 0)
                return r;
        put_u64(buf + REGION_INFO_SIZE, m->generation);
        return REGION_INFOV_SIZE;
}

int proto_region_infov_decode(const uint8_t *buf, size_t len, struct proto_region_infov *m)
{
        struct proto_region_infov v;
        int r;

        if (!buf || len != REGION_INFOV_SIZE)
                return -EBADMSG;
        r = proto_region_info_decode(buf, REGION_INFO_SIZE, &v.info);
        if (r < 0)
                return r;
        v.generation = get_u64(buf + REGION_INFO_SIZE);
        if (v.generation == 0)
                return -EINVAL;
        *m = v;
        return 0;
}

int proto_stat_replyv_encode(const struct proto_stat_replyv *m, uint8_t *buf, size_t size)
{
        int r;

        if (size < STAT_REPLYV_SIZE)
                return -ENOBUFS;
        r = proto_stat_reply_encode(&m->stat, buf, size);
        if (r < 0)
                return r;
        put_u64(buf + STAT_REPLY_SIZE, m->generation);
        return STAT_REPLYV_SIZE;
}

int proto_stat_replyv_decode(const uint8_t *buf, size_t len, struct proto_stat_replyv *m)
{
        struct proto_stat_replyv v;
        int r;

        if (!buf || len != STAT_REPLYV_SIZE)
                return -EBADMSG;
        r = proto_stat_reply_decode(buf, STAT_REPLY_SIZE, &v.stat);
        if (r < 0)
                return r;
        v.generation = get_u64(buf + STAT_REPLY_SIZE);
        if (v.generation == 0)
                return -EINVAL;
        *m = v;
        return 0;
}

int proto_event_encode(const struct proto_event *m, uint8_t *buf, size_t size)
{
        size_t n, total;
        int r;

        r = str_msg_measure(m->name, PROTO_NAME_MAX, EVENT_FIXED, size, &n, &total);
        if (r < 0)
                return r;
        put_u64(buf + 0, m->id);
        put_u64(buf + 8, m->generation);
        put_u64(buf + 16, m->size);
        put_u64(buf + 24, m->replaced_id);
        put_u32(buf + 32, m->seals);
        put_u32(buf + 36, m->mode);
        put_u32(buf + 40, m->uid);
        put_u32(buf + 44, m->gid);
        str_put(buf + EVENT_FIXED, m->name, n);
        return (int)total;
}

int proto_event_decode(const uint8_t *buf, size_t len, struct proto_event *m)
{
        struct proto_event v = { .name = NULL };
        size_t end;
        int r;

        if (!buf || len < EVENT_FIXED)
                return -EBADMSG;
        r = name_get(buf, len, EVENT_FIXED, &v.name, &end);
        if (r < 0)
                return r;
        v.id = get_u64(buf + 0);
        v.generation = get_u64(buf + 8);
        v.size = get_u64(buf + 16);
        v.replaced_id = get_u64(buf + 24);
        v.seals = get_u32(buf + 32); /* unknown bits allowed (P7) */
        v.mode = get_u32(buf + 36);
        v.uid = get_u32(buf + 40);
        v.gid = get_u32(buf + 44);
        if (v.id == 0 || v.generation == 0 || v.mode > MODE_MAX)
                return -EINVAL;
        *m = v;
        return 0;
}

int proto_event_overflow_encode(const struct proto_event_overflow *m, uint8_t *buf, size_t size)
{
        if (size < EVENT_OVERFLOW_SIZE)
                return -ENOBUFS;
        put_u64(buf, m->dropped);
        return EVENT_OVERFLOW_SIZE;
}

int proto_event_overflow_decode(const uint8_t *buf, size_t len, struct proto_event_overflow *m)
{
        if (!buf || len != EVENT_OVERFLOW_SIZE)
                return -EBADMSG;
        m->dropped = get_u64(buf);
        return 0;
}

bool proto_opcode_is_event(uint16_t opcode)
{
        return opcode >= PROTO_OP_EVENT_FIRST && opcode <= PROTO_OP_EVENT_LAST;
}

const char *proto_event_name(uint16_t opcode)
{
        switch (opcode) {
        case PROTO_EV_OVERFLOW:
                return "overflow";
        case PROTO_EV_CREATED:
                return "created";
        case PROTO_EV_DELETED:
                return "deleted";
        case PROTO_EV_RESIZED:
                return "resized";
        case PROTO_EV_SEALED:
                return "sealed";
        case PROTO_EV_CHMOD:
                return "chmod";
        case PROTO_EV_CHOWN:
                return "chown";
        case PROTO_EV_PUBLISHED:
                return "published";
        default:
                return NULL;
        }
}

/* ---- names of opcodes --------------------------------------------------- */

const char *proto_opcode_name(uint16_t opcode)
{
        switch (opcode) {
        case PROTO_OP_HELLO:
                return "HELLO";
        case PROTO_OP_PING:
                return "PING";
        case PROTO_OP_STATUS:
                return "STATUS";
        case PROTO_OP_METRICS:
                return "METRICS";
        case PROTO_OP_CREATE:
                return "CREATE";
        case PROTO_OP_OPEN:
                return "OPEN";
        case PROTO_OP_RESIZE:
                return "RESIZE";
        case PROTO_OP_SEAL:
                return "SEAL";
        case PROTO_OP_STAT:
                return "STAT";
        case PROTO_OP_LIST:
                return "LIST";
        case PROTO_OP_DELETE:
                return "DELETE";
        case PROTO_OP_CHMOD:
                return "CHMOD";
        case PROTO_OP_CHOWN:
                return "CHOWN";
        case PROTO_OP_QUOTA:
                return "QUOTA";
        case PROTO_OP_REGISTER:
                return "REGISTER";
        case PROTO_OP_WATCH:
                return "WATCH";
        case PROTO_OP_UNWATCH:
                return "UNWATCH";
        case PROTO_OP_PUBLISH:
                return "PUBLISH";
        case PROTO_OP_OPENV:
                return "OPENV";
        case PROTO_OP_STATV:
                return "STATV";
        default:
                return NULL;
        }
}
