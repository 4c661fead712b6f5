/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-proto: the wire format: round trips, exact shapes, truncations, hostile fields (F1-F3, F5-F7). */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "testutil.h"

#define BUF_MAX (PROTO_HEADER_SIZE + PROTO_MAX_PAYLOAD)

/* ---- helpers ------------------------------------------------------------- */

/* A heap copy of exactly @len bytes, so that ASan sees any read past the end. */
static uint8_t *dup_exact(const uint8_t *src, size_t len)
{
        uint8_t *p = malloc(len ? len : 1);

        ck_assert_ptr_nonnull(p);
        if (len)
                memcpy(p, src, len);
        return p;
}

static void name_fill(char *s, size_t n, char c)
{
        memset(s, c, n);
        s[n] = '\0';
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void)
{
        uint64_t x = rng_state;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        rng_state = x;
        return x;
}

/*
 * Each message kind: a sample encoder and a "recode" function that decodes
 * and, on success, encodes the result again (decode -> encode must give back
 * the same bytes: the encoding is canonical).
 */
struct codec {
        const char *what;
        uint16_t opcode;
        uint8_t flags; /* header flags of a frame carrying it */
        int (*sample)(uint8_t *buf, size_t size);
        int (*recode)(const uint8_t *in, size_t len, uint8_t *out, size_t size);
};

#define RECODE(type)                                                                                     \
        static int recode_##type(const uint8_t *in, size_t len, uint8_t *out, size_t size)             \
        {                                                                                                \
                struct proto_##type m;                                                                   \
                int r = proto_##type##_decode(in, len, &m);                                              \
                if (r < 0)                                                                               \
                        return r;                                                                        \
                return proto_##type##_encode(&m, out, size);                                             \
        }

RECODE(error)
RECODE(hello)
RECODE(hello_reply)
RECODE(ping)
RECODE(status_reply)
RECODE(create)
RECODE(region_info)
RECODE(open)
RECODE(resize)
RECODE(resize_reply)
RECODE(seal)
RECODE(seal_reply)
RECODE(name)
RECODE(stat_reply)
RECODE(list)
RECODE(chmod)
RECODE(chown)
RECODE(quota_reply)
RECODE(register)
RECODE(register_reply)
RECODE(watch)
RECODE(watch_reply)
RECODE(unwatch)
RECODE(publish)
RECODE(publish_reply)
RECODE(openv)
RECODE(region_infov)
RECODE(stat_replyv)
RECODE(event)
RECODE(event_overflow)

static int recode_list_reply(const uint8_t *in, size_t len, uint8_t *out, size_t size)
{
        struct proto_list_writer w;
        struct proto_list_reply rep;
        struct proto_list_entry e;
        size_t off = 0;
        int r;

        r = proto_list_reply_decode(in, len, &rep);
        if (r < 0)
                return r;
        proto_list_writer_init(&w, out, size);
        while ((r = proto_list_entry_next(&rep, &off, &e)) > 0) {
                r = proto_list_writer_add(&w, &e);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return proto_list_writer_finish(&w, rep.next_cursor);
}

static int recode_metrics_reply(const uint8_t *in, size_t len, uint8_t *out, size_t size)
{
        struct proto_metrics_writer w;
        struct proto_metrics_reply rep;
        struct proto_metric_entry e;
        int r;

        r = proto_metrics_reply_decode(in, len, &rep);
        if (r < 0)
                return r;
        proto_metrics_writer_init(&w, out, size);
        for (uint32_t i = 0; i < rep.count; i++) {
                proto_metrics_entry_get(&rep, i, &e);
                r = proto_metrics_writer_add(&w, &e);
                if (r < 0)
                        return r;
        }
        return proto_metrics_writer_finish(&w, rep.flags);
}

static int sample_error(uint8_t *buf, size_t size)
{
        struct proto_error m = { .error = -ENOENT, .message = "no such region: cam/0" };
        return proto_error_encode(&m, buf, size);
}

static int sample_hello(uint8_t *buf, size_t size)
{
        struct proto_hello m = { .min_version = 1, .max_version = 3, .flags = 0 };
        return proto_hello_encode(&m, buf, size);
}

static int sample_hello_reply(uint8_t *buf, size_t size)
{
        struct proto_hello_reply m = {
                .version = 1,
                .max_fds = PROTO_MAX_FDS,
                .max_payload = PROTO_MAX_PAYLOAD,
                .max_region_size = UINT64_C(0x0123456789ABCDEF),
                .name_max = PROTO_NAME_MAX,
                .backend = PROTO_BACKEND_MEMFD,
                .server_version = "iomemd 0.1.0",
        };
        return proto_hello_reply_encode(&m, buf, size);
}

static int sample_ping(uint8_t *buf, size_t size)
{
        struct proto_ping m = { .cookie = UINT64_C(0xFEDCBA9876543210) };
        return proto_ping_encode(&m, buf, size);
}

static int sample_status_reply(uint8_t *buf, size_t size)
{
        struct proto_status_reply m = {
                .regions = 3,
                .bytes = UINT64_C(1) << 40,
                .connections = 7,
                .uptime_sec = UINT64_MAX,
                .backend = PROTO_BACKEND_SHM,
                .server_version = "0.1.0",
        };
        return proto_status_reply_encode(&m, buf, size);
}

static int sample_create(uint8_t *buf, size_t size)
{
        struct proto_create m = {
                .size = UINT64_C(1) << 20,
                .flags = PROTO_CREATE_EXCLUSIVE | PROTO_CREATE_LEASE,
                .seals = PROTO_SEAL_GROW,
                .mode = 0640,
                .backend = PROTO_BACKEND_MEMFD,
                .name = "cam/frame0",
        };
        return proto_create_encode(&m, buf, size);
}

static int sample_create_anon(uint8_t *buf, size_t size)
{
        struct proto_create m = { .size = 4096, .name = "" };
        return proto_create_encode(&m, buf, size);
}

static int sample_region_info(uint8_t *buf, size_t size)
{
        struct proto_region_info m = {
                .id = UINT64_MAX - 1,
                .size = 8192,
                .seals = PROTO_SEAL_SHRINK | 0x20, /* F_SEAL_EXEC from newer kernels is accepted (P7) */
                .flags = PROTO_REGION_RDONLY | PROTO_REGION_ANONYMOUS,
                .backend = PROTO_BACKEND_FILE,
        };
        return proto_region_info_encode(&m, buf, size);
}

static int sample_open(uint8_t *buf, size_t size)
{
        struct proto_open m = { .flags = PROTO_OPEN_RDONLY | PROTO_OPEN_WAIT, .timeout_ms = 0xFFFFFFFFu, .name = "a" };
        return proto_open_encode(&m, buf, size);
}

static int sample_resize(uint8_t *buf, size_t size)
{
        struct proto_resize m = { .size = UINT64_MAX, .name = "x.y-z_1:2@3+4=5,6/7" };
        return proto_resize_encode(&m, buf, size);
}

static int sample_resize_reply(uint8_t *buf, size_t size)
{
        struct proto_resize_reply m = { .size = UINT64_C(0x8000000000000001) };
        return proto_resize_reply_encode(&m, buf, size);
}

static int sample_seal(uint8_t *buf, size_t size)
{
        struct proto_seal m = { .seals = PROTO_SEALS_KNOWN, .name = "sealed" };
        return proto_seal_encode(&m, buf, size);
}

static int sample_seal_reply(uint8_t *buf, size_t size)
{
        struct proto_seal_reply m = { .seals = 0x8000003Fu };
        return proto_seal_reply_encode(&m, buf, size);
}

static int sample_name(uint8_t *buf, size_t size)
{
        struct proto_name m = { .name = "stat/me" };
        return proto_name_encode(&m, buf, size);
}

static int sample_stat_reply(uint8_t *buf, size_t size)
{
        struct proto_stat_reply m = {
                .id = 42,
                .size = 1000,
                .ctime_ns = UINT64_C(1700000000123456789),
                .open_count = 9,
                .seals = PROTO_SEAL_SHRINK,
                .flags = PROTO_REGION_LEASED | PROTO_REGION_RESIZABLE,
                .uid = 1000,
                .gid = 0xFFFFFFFEu,
                .mode = 0777,
                .backend = PROTO_BACKEND_MEMFD,
        };
        return proto_stat_reply_encode(&m, buf, size);
}

static int sample_list(uint8_t *buf, size_t size)
{
        struct proto_list m = { .cursor = 77, .max_entries = 10, .prefix = "/cam." };
        return proto_list_encode(&m, buf, size);
}

static int sample_list_reply(uint8_t *buf, size_t size)
{
        static const struct proto_list_entry entries[] = {
                { .id = 1, .size = 10, .seals = 2, .mode = 0600, .uid = 0, .gid = 0, .name = "a" },
                { .id = 2, .size = UINT64_MAX, .seals = 0x3f, .mode = 0644, .uid = 1, .gid = 2, .name = "b/c" },
                { .id = 3, .size = 0, .seals = 0, .mode = 0, .uid = 3, .gid = 4, .name = "d.e" },
        };
        struct proto_list_writer w;

        proto_list_writer_init(&w, buf, size);
        for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++)
                if (proto_list_writer_add(&w, &entries[i]) < 0)
                        return -ENOBUFS;
        return proto_list_writer_finish(&w, 123);
}

static int sample_list_reply_empty(uint8_t *buf, size_t size)
{
        struct proto_list_writer w;

        proto_list_writer_init(&w, buf, size);
        return proto_list_writer_finish(&w, 0);
}

static int sample_chmod(uint8_t *buf, size_t size)
{
        struct proto_chmod m = { .mode = 0640, .name = "cam/frame0" };
        return proto_chmod_encode(&m, buf, size);
}

static int sample_chown(uint8_t *buf, size_t size)
{
        struct proto_chown m = { .uid = PROTO_ID_UNCHANGED, .gid = 100, .name = "c" };
        return proto_chown_encode(&m, buf, size);
}

static int sample_quota_reply(uint8_t *buf, size_t size)
{
        struct proto_quota_reply m = {
                .uid = 1000, .gid = 100, .bytes = 1, .max_bytes = UINT64_MAX, .regions = 3, .max_regions = 4,
                .connections = 5, .max_connections = 6, .fds = 7, .max_fds = 8, .max_region_size = 9,
        };
        return proto_quota_reply_encode(&m, buf, size);
}

static int sample_register(uint8_t *buf, size_t size)
{
        struct proto_register m = { .size = 4096, .flags = PROTO_REGISTER_LEASE, .mode = 0644, .name = "pub" };
        return proto_register_encode(&m, buf, size);
}

static int sample_register_reply(uint8_t *buf, size_t size)
{
        struct proto_register_reply m = { .id = 12, .seals = 0x26 };
        return proto_register_reply_encode(&m, buf, size);
}

static int sample_metrics_reply(uint8_t *buf, size_t size)
{
        static const struct proto_metric_entry e[] = {
                { .metric = PROTO_METRIC_REGIONS, .value = 3 },
                { .metric = PROTO_METRIC_REQUESTS, .label = PROTO_OP_OPEN, .value = UINT64_MAX },
                { .metric = PROTO_METRIC_ERRORS, .label = EDQUOT, .value = 2 },
                { .metric = PROTO_METRIC_UID_BYTES, .label = 1000, .value = 4096 },
                { .metric = 0xFFFF, .label = 0xFFFFFFFF, .value = 1 }, /* a newer daemon's metric */
        };
        struct proto_metrics_writer w;

        proto_metrics_writer_init(&w, buf, size);
        for (size_t i = 0; i < sizeof(e) / sizeof(e[0]); i++)
                if (proto_metrics_writer_add(&w, &e[i]) < 0)
                        return -ENOBUFS;
        return proto_metrics_writer_finish(&w, PROTO_METRICS_TRUNCATED);
}

static int sample_metrics_reply_empty(uint8_t *buf, size_t size)
{
        struct proto_metrics_writer w;

        proto_metrics_writer_init(&w, buf, size);
        return proto_metrics_writer_finish(&w, 0);
}

static int sample_watch(uint8_t *buf, size_t size)
{
        struct proto_watch m = { .prefix = "cam/" };
        return proto_watch_encode(&m, buf, size);
}

static int sample_watch_all(uint8_t *buf, size_t size)
{
        struct proto_watch m = { .prefix = "" };
        return proto_watch_encode(&m, buf, size);
}

static int sample_watch_reply(uint8_t *buf, size_t size)
{
        struct proto_watch_reply m = { .watch_id = 0x01020304u };
        return proto_watch_reply_encode(&m, buf, size);
}

static int sample_unwatch(uint8_t *buf, size_t size)
{
        struct proto_unwatch m = { .watch_id = 7 };
        return proto_unwatch_encode(&m, buf, size);
}

static int sample_publish(uint8_t *buf, size_t size)
{
        struct proto_publish m = { .size = 1u << 20, .expect_generation = UINT64_C(0x1122334455667788),
                                   .flags = PROTO_PUBLISH_LEASE, .mode = 0644, .name = "model/weights" };
        return proto_publish_encode(&m, buf, size);
}

static int sample_publish_reply(uint8_t *buf, size_t size)
{
        struct proto_publish_reply m = { .id = 9, .generation = 9, .replaced_id = 3, .seals = 0x2f };
        return proto_publish_reply_encode(&m, buf, size);
}

static int sample_openv(uint8_t *buf, size_t size)
{
        struct proto_openv m = { .flags = PROTO_OPEN_RDONLY | PROTO_OPEN_WAIT, .timeout_ms = 1000,
                                 .after_generation = UINT64_MAX - 3, .name = "frame" };
        return proto_openv_encode(&m, buf, size);
}

static int sample_region_infov(uint8_t *buf, size_t size)
{
        struct proto_region_infov m = {
                .info = { .id = 5, .size = 4096, .seals = 0x2e, .flags = PROTO_REGION_RDONLY,
                          .backend = PROTO_BACKEND_MEMFD },
                .generation = 5,
        };
        return proto_region_infov_encode(&m, buf, size);
}

static int sample_stat_replyv(uint8_t *buf, size_t size)
{
        struct proto_stat_replyv m = {
                .stat = { .id = 42, .size = 1000, .ctime_ns = 1, .open_count = 2, .seals = 0x8, .flags = 0,
                          .uid = 1000, .gid = 1000, .mode = 0644, .backend = PROTO_BACKEND_MEMFD },
                .generation = UINT64_MAX,
        };
        return proto_stat_replyv_encode(&m, buf, size);
}

static int sample_event(uint8_t *buf, size_t size)
{
        struct proto_event m = { .id = 12, .generation = 12, .size = 8192, .replaced_id = 4, .seals = 0x0f,
                                 .mode = 0640, .uid = 1000, .gid = 100, .name = "cam/frame0" };
        return proto_event_encode(&m, buf, size);
}

static int sample_event_overflow(uint8_t *buf, size_t size)
{
        struct proto_event_overflow m = { .dropped = 1025 };
        return proto_event_overflow_encode(&m, buf, size);
}

static const struct codec codecs[] = {
        { "metrics_reply", PROTO_OP_METRICS, PROTO_FLAG_REPLY, sample_metrics_reply, recode_metrics_reply },
        { "metrics_reply_empty", PROTO_OP_METRICS, PROTO_FLAG_REPLY, sample_metrics_reply_empty,
          recode_metrics_reply },
        { "watch", PROTO_OP_WATCH, 0, sample_watch, recode_watch },
        { "watch_all", PROTO_OP_WATCH, 0, sample_watch_all, recode_watch },
        { "watch_reply", PROTO_OP_WATCH, PROTO_FLAG_REPLY, sample_watch_reply, recode_watch_reply },
        { "unwatch", PROTO_OP_UNWATCH, 0, sample_unwatch, recode_unwatch },
        { "publish", PROTO_OP_PUBLISH, 0, sample_publish, recode_publish },
        { "publish_reply", PROTO_OP_PUBLISH, PROTO_FLAG_REPLY, sample_publish_reply, recode_publish_reply },
        { "openv", PROTO_OP_OPENV, 0, sample_openv, recode_openv },
        { "region_infov", PROTO_OP_OPENV, PROTO_FLAG_REPLY, sample_region_infov, recode_region_infov },
        { "stat_replyv", PROTO_OP_STATV, PROTO_FLAG_REPLY, sample_stat_replyv, recode_stat_replyv },
        { "event", PROTO_EV_PUBLISHED, PROTO_FLAG_REPLY, sample_event, recode_event },
        { "event_overflow", PROTO_EV_OVERFLOW, PROTO_FLAG_REPLY, sample_event_overflow, recode_event_overflow },
        { "chmod", PROTO_OP_CHMOD, 0, sample_chmod, recode_chmod },
        { "chown", PROTO_OP_CHOWN, 0, sample_chown, recode_chown },
        { "quota_reply", PROTO_OP_QUOTA, PROTO_FLAG_REPLY, sample_quota_reply, recode_quota_reply },
        { "register", PROTO_OP_REGISTER, 0, sample_register, recode_register },
        { "register_reply", PROTO_OP_REGISTER, PROTO_FLAG_REPLY, sample_register_reply, recode_register_reply },
        { "error", PROTO_OP_OPEN, PROTO_FLAG_REPLY | PROTO_FLAG_ERROR, sample_error, recode_error },
        { "hello", PROTO_OP_HELLO, 0, sample_hello, recode_hello },
        { "hello_reply", PROTO_OP_HELLO, PROTO_FLAG_REPLY, sample_hello_reply, recode_hello_reply },
        { "ping", PROTO_OP_PING, 0, sample_ping, recode_ping },
        { "status_reply", PROTO_OP_STATUS, PROTO_FLAG_REPLY, sample_status_reply, recode_status_reply },
        { "create", PROTO_OP_CREATE, 0, sample_create, recode_create },
        { "create_anon", PROTO_OP_CREATE, 0, sample_create_anon, recode_create },
        { "region_info", PROTO_OP_CREATE, PROTO_FLAG_REPLY, sample_region_info, recode_region_info },
        { "open", PROTO_OP_OPEN, 0, sample_open, recode_open },
        { "resize", PROTO_OP_RESIZE, 0, sample_resize, recode_resize },
        { "resize_reply", PROTO_OP_RESIZE, PROTO_FLAG_REPLY, sample_resize_reply, recode_resize_reply },
        { "seal", PROTO_OP_SEAL, 0, sample_seal, recode_seal },
        { "seal_reply", PROTO_OP_SEAL, PROTO_FLAG_REPLY, sample_seal_reply, recode_seal_reply },
        { "name", PROTO_OP_STAT, 0, sample_name, recode_name },
        { "stat_reply", PROTO_OP_STAT, PROTO_FLAG_REPLY, sample_stat_reply, recode_stat_reply },
        { "list", PROTO_OP_LIST, 0, sample_list, recode_list },
        { "list_reply", PROTO_OP_LIST, PROTO_FLAG_REPLY, sample_list_reply, recode_list_reply },
        { "list_reply_empty", PROTO_OP_LIST, PROTO_FLAG_REPLY, sample_list_reply_empty, recode_list_reply },
};
#define N_CODECS (sizeof(codecs) / sizeof(codecs[0]))

/* Build a whole frame for codec @c. Return: its length. */
static size_t frame_build(const struct codec *c, uint32_t id, uint8_t *out, size_t size)
{
        struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION, .flags = c->flags,
                                  .opcode = c->opcode, .id = id };
        int n = c->sample(out + PROTO_HEADER_SIZE, size - PROTO_HEADER_SIZE);

        ck_assert_int_ge(n, 0);
        h.length = (uint32_t)n;
        proto_header_encode(&h, out);
        return PROTO_HEADER_SIZE + (size_t)n;
}

/* Decode a whole frame of codec @c in exactly buf[0..len). Return: 0 or negative errno. */
static int frame_decode(const struct codec *c, const uint8_t *buf, size_t len)
{
        static uint8_t scratch[BUF_MAX];
        struct proto_header h;
        int r;

        r = proto_header_decode(buf, len, &h);
        if (r < 0)
                return r;
        if ((uint64_t)len != (uint64_t)PROTO_HEADER_SIZE + h.length)
                return -EBADMSG;
        r = c->recode(buf + PROTO_HEADER_SIZE, h.length, scratch, sizeof(scratch));
        return r < 0 ? r : 0;
}

static void header_make(uint8_t *out, uint8_t version, uint8_t flags, uint16_t opcode, uint32_t length,
                        uint16_t nfds, uint16_t reserved)
{
        struct proto_header h = { .magic = PROTO_MAGIC, .version = version, .flags = flags, .opcode = opcode,
                                  .id = 0xA1B2C3D4u, .length = length, .nfds = nfds, .reserved = reserved };
        proto_header_encode(&h, out);
}

/* ---- header -------------------------------------------------------------- */

START_TEST(test_header_layout)
{
        static const uint8_t expect[PROTO_HEADER_SIZE] = {
                'I', 'O', 'M', 'D', 0x01, 0x03, 0x34, 0x12, 0x78, 0x56, 0x34, 0x12,
                0x00, 0x00, 0x01, 0x00, 0x04, 0x00, 0x00, 0x00,
        };
        struct proto_header h = { .magic = PROTO_MAGIC, .version = 1, .flags = 3, .opcode = 0x1234,
                                  .id = 0x12345678u, .length = PROTO_MAX_PAYLOAD, .nfds = 4 };
        struct proto_header d;
        uint8_t buf[PROTO_HEADER_SIZE];

        proto_header_encode(&h, buf);
        ck_assert_mem_eq(buf, expect, sizeof(expect));
        ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &d), 0);
        ck_assert_uint_eq(d.magic, PROTO_MAGIC);
        ck_assert_uint_eq(d.version, 1);
        ck_assert_uint_eq(d.flags, 3);
        ck_assert_uint_eq(d.opcode, 0x1234);
        ck_assert_uint_eq(d.id, 0x12345678u);
        ck_assert_uint_eq(d.length, PROTO_MAX_PAYLOAD);
        ck_assert_uint_eq(d.nfds, 4);
        ck_assert_uint_eq(d.reserved, 0);
}
END_TEST

/* F1: fewer bytes than a header never decode. */
START_TEST(test_header_f1_short)
{
        uint8_t full[PROTO_HEADER_SIZE];
        struct proto_header h;

        header_make(full, PROTO_VERSION, 0, PROTO_OP_PING, 8, 0, 0);
        for (size_t k = 0; k < PROTO_HEADER_SIZE; k++) {
                uint8_t *p = dup_exact(full, k);
                ck_assert_int_eq(proto_header_decode(p, k, &h), -EBADMSG);
                free(p);
        }
        ck_assert_int_eq(proto_header_decode(NULL, 0, &h), -EBADMSG);
}
END_TEST

/* F1: a frame whose length is 0 where the opcode needs a payload fails its decoder. */
START_TEST(test_payload_f1_empty)
{
        static uint8_t out[BUF_MAX];

        for (size_t i = 0; i < N_CODECS; i++) {
                uint8_t *p = dup_exact(NULL, 0);
                ck_assert_msg(codecs[i].recode(p, 0, out, sizeof(out)) == -EBADMSG, "%s", codecs[i].what);
                ck_assert_msg(codecs[i].recode(NULL, 0, out, sizeof(out)) == -EBADMSG, "%s", codecs[i].what);
                free(p);
        }
}
END_TEST

/* F2: lengths above the maximum, up to 0xFFFFFFFF, are refused by the header alone. */
START_TEST(test_header_f2_length_max)
{
        static const uint32_t bad[] = { PROTO_MAX_PAYLOAD + 1, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFFu };
        uint8_t buf[PROTO_HEADER_SIZE];
        struct proto_header h;

        header_make(buf, PROTO_VERSION, 0, PROTO_OP_CREATE, PROTO_MAX_PAYLOAD, 0, 0);
        ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &h), 0);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                header_make(buf, PROTO_VERSION, 0, PROTO_OP_CREATE, bad[i], 0, 0);
                ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &h), -EMSGSIZE);
                ck_assert_uint_eq(h.length, bad[i]);
        }
}
END_TEST

/* F3: header + length that wraps in 32 bits, and nfds over the limit, are refused. */
START_TEST(test_header_f3_wrap_and_nfds)
{
        uint8_t buf[PROTO_HEADER_SIZE];
        struct proto_header h;

        header_make(buf, PROTO_VERSION, 0, PROTO_OP_PING, UINT32_MAX - PROTO_HEADER_SIZE + 1, 0, 0);
        ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &h), -EMSGSIZE);
        header_make(buf, PROTO_VERSION, 0, PROTO_OP_PING, UINT32_MAX - PROTO_HEADER_SIZE, 0, 0);
        ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &h), -EMSGSIZE);

        header_make(buf, PROTO_VERSION, PROTO_FLAG_REPLY, PROTO_OP_OPEN, 32, PROTO_MAX_FDS, 0);
        ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &h), 0);
        header_make(buf, PROTO_VERSION, PROTO_FLAG_REPLY, PROTO_OP_OPEN, 32, PROTO_MAX_FDS + 1, 0);
        ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &h), -EMSGSIZE);
        header_make(buf, PROTO_VERSION, PROTO_FLAG_REPLY, PROTO_OP_OPEN, 32, 0xFFFF, 0);
        ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &h), -EMSGSIZE);
}
END_TEST

/* F5: bad magic; the header is left untouched. */
START_TEST(test_header_f5_magic)
{
        uint8_t buf[PROTO_HEADER_SIZE];
        struct proto_header h;

        for (size_t byte = 0; byte < 4; byte++) {
                header_make(buf, PROTO_VERSION, 0, PROTO_OP_PING, 8, 0, 0);
                buf[byte] ^= 0x20;
                memset(&h, 0x5A, sizeof(h));
                ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &h), -EBADMSG);
                ck_assert_uint_eq(h.id, 0x5A5A5A5Au);
        }
}
END_TEST

/* F5: an unknown version is -EPROTONOSUPPORT with the header filled (an error reply is possible). */
START_TEST(test_header_f5_version)
{
        static const uint8_t versions[] = { 0, 2, 3, 0x80, 0xFF };
        uint8_t buf[PROTO_HEADER_SIZE];
        struct proto_header h;

        for (size_t i = 0; i < sizeof(versions); i++) {
                header_make(buf, versions[i], 0, PROTO_OP_HELLO, 8, 0, 0);
                memset(&h, 0, sizeof(h));
                ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &h), -EPROTONOSUPPORT);
                ck_assert_uint_eq(h.version, versions[i]);
                ck_assert_uint_eq(h.id, 0xA1B2C3D4u);
                ck_assert_uint_eq(h.opcode, PROTO_OP_HELLO);
                ck_assert_uint_eq(h.length, 8);
        }
        /* out of sync beats an unknown version: the stream cannot be trusted */
        header_make(buf, 2, 0, PROTO_OP_HELLO, 0xFFFFFFFFu, 0, 0);
        ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &h), -EMSGSIZE);
        header_make(buf, 2, 0x80, PROTO_OP_HELLO, 8, 0, 0);
        ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &h), -EBADMSG);
}
END_TEST

/* F5: unknown flag bits, ERROR without REPLY, nonzero reserved. */
START_TEST(test_header_f5_flags_reserved)
{
        uint8_t buf[PROTO_HEADER_SIZE];
        struct proto_header h;

        for (unsigned bit = 2; bit < 8; bit++) {
                header_make(buf, PROTO_VERSION, (uint8_t)(1u << bit), PROTO_OP_PING, 8, 0, 0);
                ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &h), -EBADMSG);
                ck_assert_uint_eq(h.flags, 1u << bit);
        }
        header_make(buf, PROTO_VERSION, PROTO_FLAG_ERROR, PROTO_OP_PING, 8, 0, 0);
        ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &h), -EBADMSG);
        header_make(buf, PROTO_VERSION, PROTO_FLAG_ERROR | PROTO_FLAG_REPLY, PROTO_OP_PING, 8, 0, 0);
        ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &h), 0);
        header_make(buf, PROTO_VERSION, PROTO_FLAG_REPLY, PROTO_OP_PING, 8, 0, 0);
        ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &h), 0);

        for (unsigned bit = 0; bit < 16; bit++) {
                header_make(buf, PROTO_VERSION, 0, PROTO_OP_PING, 8, 0, (uint16_t)(1u << bit));
                ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &h), -EBADMSG);
        }
}
END_TEST

/* F5: unknown opcodes have no name; the header itself does not judge opcodes. */
START_TEST(test_opcode_names)
{
        static const uint16_t known[] = { PROTO_OP_HELLO, PROTO_OP_PING, PROTO_OP_STATUS, PROTO_OP_METRICS,
                                          PROTO_OP_CREATE,
                                          PROTO_OP_OPEN, PROTO_OP_RESIZE, PROTO_OP_SEAL, PROTO_OP_STAT,
                                          PROTO_OP_LIST, PROTO_OP_DELETE, PROTO_OP_CHMOD, PROTO_OP_CHOWN,
                                          PROTO_OP_QUOTA, PROTO_OP_REGISTER };
        static const uint16_t unknown[] = { 0x0000, 0x0005, 0x000F, 0x0017, 0x00FF, 0x0103,
                                            PROTO_OP_ACCESS_LAST, 0x0201, PROTO_OP_REGISTER_LAST,
                                            PROTO_OP_EVENT_FIRST, PROTO_OP_EVENT_LAST, 0x8000, 0xFFFF };
        uint8_t buf[PROTO_HEADER_SIZE];
        struct proto_header h;

        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
                const char *n = proto_opcode_name(known[i]);
                ck_assert_ptr_nonnull(n);
                for (size_t j = 0; j < i; j++)
                        ck_assert_str_ne(n, proto_opcode_name(known[j]));
        }
        ck_assert_str_eq(proto_opcode_name(PROTO_OP_CREATE), "CREATE");
        for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
                ck_assert_ptr_null(proto_opcode_name(unknown[i]));
                header_make(buf, PROTO_VERSION, 0, unknown[i], 0, 0, 0);
                ck_assert_int_eq(proto_header_decode(buf, sizeof(buf), &h), 0);
                ck_assert_uint_eq(h.opcode, unknown[i]);
        }
}
END_TEST

/* ---- every message -------------------------------------------------------- */

/* Encoded lengths are exact, the encoding is canonical, and one byte less of room is -ENOBUFS. */
START_TEST(test_codec_roundtrip_canonical)
{
        static uint8_t a[BUF_MAX], b[BUF_MAX];

        for (size_t i = 0; i < N_CODECS; i++) {
                const struct codec *c = &codecs[i];
                int n = c->sample(a, sizeof(a));
                int m;

                ck_assert_msg(n > 0, "%s: %d", c->what, n);
                m = c->recode(a, (size_t)n, b, sizeof(b));
                ck_assert_msg(m == n, "%s: recode %d, want %d", c->what, m, n);
                ck_assert_msg(memcmp(a, b, (size_t)n) == 0, "%s: not canonical", c->what);

                ck_assert_msg(c->sample(b, (size_t)n) == n, "%s: exact room", c->what);
                ck_assert_msg(c->sample(b, (size_t)n - 1) == -ENOBUFS, "%s: short room", c->what);
                ck_assert_msg(c->sample(b, 0) == -ENOBUFS, "%s: no room", c->what);
        }
}
END_TEST

/* F1/F4 at the message level: every prefix of every payload fails, and never reads past its end. */
START_TEST(test_codec_every_payload_truncation)
{
        static uint8_t a[BUF_MAX], out[BUF_MAX];

        for (size_t i = 0; i < N_CODECS; i++) {
                const struct codec *c = &codecs[i];
                int n = c->sample(a, sizeof(a));

                ck_assert_int_gt(n, 0);
                for (size_t k = 0; k < (size_t)n; k++) {
                        uint8_t *p = dup_exact(a, k);
                        int r = c->recode(p, k, out, sizeof(out));
                        ck_assert_msg(r == -EBADMSG, "%s: prefix %zu of %d gave %d", c->what, k, n, r);
                        free(p);
                }
        }
}
END_TEST

/* Every prefix of every whole frame fails to decode as a frame. */
START_TEST(test_codec_every_frame_truncation)
{
        static uint8_t a[BUF_MAX];

        for (size_t i = 0; i < N_CODECS; i++) {
                const struct codec *c = &codecs[i];
                size_t n = frame_build(c, 7, a, sizeof(a));
                uint8_t *whole = dup_exact(a, n);

                ck_assert_msg(frame_decode(c, whole, n) == 0, "%s: whole frame", c->what);
                free(whole);
                for (size_t k = 0; k < n; k++) {
                        uint8_t *p = dup_exact(a, k);
                        ck_assert_msg(frame_decode(c, p, k) < 0, "%s: frame prefix %zu of %zu", c->what, k, n);
                        free(p);
                }
        }
}
END_TEST

/* F5: trailing garbage after a valid payload is a shape mismatch. */
START_TEST(test_codec_trailing_garbage)
{
        static uint8_t a[BUF_MAX], out[BUF_MAX];
        static const uint8_t junk[] = { 0x00, 'x', 0xFF };

        for (size_t i = 0; i < N_CODECS; i++) {
                const struct codec *c = &codecs[i];
                int n = c->sample(a, sizeof(a));

                for (size_t j = 0; j < sizeof(junk); j++) {
                        uint8_t *p;
                        a[n] = junk[j];
                        p = dup_exact(a, (size_t)n + 1);
                        ck_assert_msg(c->recode(p, (size_t)n + 1, out, sizeof(out)) == -EBADMSG, "%s", c->what);
                        free(p);
                }
        }
}
END_TEST

/* Random corruption: decoders never crash or over-read; whatever they accept re-encodes to the same bytes. */
START_TEST(test_codec_mutations)
{
        static uint8_t a[BUF_MAX], out[BUF_MAX];

        rng_state = 0x9E3779B97F4A7C15ull;
        for (size_t i = 0; i < N_CODECS; i++) {
                const struct codec *c = &codecs[i];
                int n = c->sample(a, sizeof(a));
                unsigned accepted = 0;

                for (unsigned round = 0; round < 4000; round++) {
                        uint8_t *p = dup_exact(a, (size_t)n);
                        unsigned flips = 1 + (unsigned)(rng_next() % 3);
                        int r;

                        for (unsigned f = 0; f < flips; f++)
                                p[rng_next() % (uint64_t)n] ^= (uint8_t)(1u << (rng_next() % 8));
                        r = c->recode(p, (size_t)n, out, sizeof(out));
                        if (r >= 0) {
                                ck_assert_msg(r == n && memcmp(p, out, (size_t)n) == 0, "%s: not canonical",
                                              c->what);
                                accepted++;
                        } else {
                                ck_assert_msg(r == -EBADMSG || r == -EINVAL, "%s: %d", c->what, r);
                        }
                        free(p);
                }
                /* some flips hit free-valued fields (ids, sizes): the decoder must not refuse everything */
                ck_assert_msg(accepted > 0, "%s accepted nothing", c->what);
        }
}
END_TEST

START_TEST(test_roundtrip_error)
{
        struct proto_error m = { .error = -EPROTONOSUPPORT, .message = "speaks 1..1" }, d;
        uint8_t buf[64];
        int n = proto_error_encode(&m, buf, sizeof(buf));

        ck_assert_int_eq(n, 4 + 2 + 11 + 1);
        ck_assert_int_eq(proto_error_decode(buf, (size_t)n, &d), 0);
        ck_assert_int_eq(d.error, -EPROTONOSUPPORT);
        ck_assert_str_eq(d.message, "speaks 1..1");
        ck_assert_uint_eq(buf[0], (uint8_t)-EPROTONOSUPPORT);
        ck_assert_uint_eq(buf[3], 0xFF);

        m.message = NULL; /* written as "" */
        n = proto_error_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(n, 7);
        ck_assert_int_eq(proto_error_decode(buf, (size_t)n, &d), 0);
        ck_assert_str_eq(d.message, "");
}
END_TEST

/* An error reply must carry a negative errno within the kernel's range. */
START_TEST(test_error_code_range)
{
        static const int32_t bad[] = { 0, 1, 4096, INT32_MAX, -4096, INT32_MIN };
        struct proto_error m = { .message = "" }, d;
        uint8_t buf[16];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                m.error = bad[i];
                ck_assert_int_eq(proto_error_encode(&m, buf, sizeof(buf)), 7);
                ck_assert_int_eq(proto_error_decode(buf, 7, &d), -EINVAL);
        }
        m.error = -4095;
        proto_error_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_error_decode(buf, 7, &d), 0);
        m.error = -1;
        proto_error_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_error_decode(buf, 7, &d), 0);
}
END_TEST

START_TEST(test_error_message_max)
{
        static char msg[PROTO_MESSAGE_MAX + 2];
        static uint8_t buf[2048];
        struct proto_error m = { .error = -EIO, .message = msg }, d;
        int n;

        name_fill(msg, PROTO_MESSAGE_MAX, 'm');
        n = proto_error_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(n, 4 + 3 + PROTO_MESSAGE_MAX);
        ck_assert_int_eq(proto_error_decode(buf, (size_t)n, &d), 0);
        ck_assert_uint_eq(strlen(d.message), PROTO_MESSAGE_MAX);

        name_fill(msg, PROTO_MESSAGE_MAX + 1, 'm');
        ck_assert_int_eq(proto_error_encode(&m, buf, sizeof(buf)), -EINVAL);
        /* hand-made: one byte too long */
        buf[4] = (uint8_t)((PROTO_MESSAGE_MAX + 1) & 0xFF);
        buf[5] = (uint8_t)((PROTO_MESSAGE_MAX + 1) >> 8);
        memset(buf + 6, 'm', PROTO_MESSAGE_MAX + 1);
        buf[6 + PROTO_MESSAGE_MAX + 1] = 0;
        ck_assert_int_eq(proto_error_decode(buf, 4 + 3 + PROTO_MESSAGE_MAX + 1, &d), -EINVAL);
}
END_TEST

START_TEST(test_roundtrip_hello)
{
        struct proto_hello m = { .min_version = 1, .max_version = 0xFFFF }, d;
        struct proto_hello_reply rm = { .version = 1, .max_fds = 4, .max_payload = 65536,
                                        .max_region_size = UINT64_MAX, .name_max = 255,
                                        .backend = PROTO_BACKEND_FILE, .server_version = "v" }, rd;
        uint8_t buf[128];
        int n;

        ck_assert_int_eq(proto_hello_encode(&m, buf, sizeof(buf)), 8);
        ck_assert_int_eq(proto_hello_decode(buf, 8, &d), 0);
        ck_assert_uint_eq(d.min_version, 1);
        ck_assert_uint_eq(d.max_version, 0xFFFF);
        ck_assert_uint_eq(d.flags, 0);

        n = proto_hello_reply_encode(&rm, buf, sizeof(buf));
        ck_assert_int_eq(n, 24 + 3 + 1);
        ck_assert_int_eq(proto_hello_reply_decode(buf, (size_t)n, &rd), 0);
        ck_assert_uint_eq(rd.version, 1);
        ck_assert_uint_eq(rd.max_fds, 4);
        ck_assert_uint_eq(rd.max_payload, 65536);
        ck_assert_uint_eq(rd.max_region_size, UINT64_MAX);
        ck_assert_uint_eq(rd.name_max, 255);
        ck_assert_uint_eq(rd.backend, PROTO_BACKEND_FILE);
        ck_assert_str_eq(rd.server_version, "v");
}
END_TEST

START_TEST(test_hello_bad_values)
{
        struct proto_hello m, d;
        struct proto_hello_reply rm = { .version = 1, .backend = PROTO_BACKEND_MEMFD, .server_version = "x" }, rd;
        uint8_t buf[128];
        int n;

        m = (struct proto_hello){ .min_version = 1, .max_version = 1, .flags = PROTO_HELLO_PAGE_INFO };
        proto_hello_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_hello_decode(buf, 8, &d), 0);
        ck_assert_uint_eq(d.flags, PROTO_HELLO_PAGE_INFO);
        for (unsigned bit = 0; bit < 32; bit++) {
                m = (struct proto_hello){ .min_version = 1, .max_version = 1, .flags = 1u << bit };
                proto_hello_encode(&m, buf, sizeof(buf));
                ck_assert_int_eq(proto_hello_decode(buf, 8, &d), (m.flags & PROTO_HELLO_KNOWN) ? 0 : -EINVAL);
        }
        m = (struct proto_hello){ .min_version = 2, .max_version = 1 };
        proto_hello_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_hello_decode(buf, 8, &d), -EINVAL);
        m = (struct proto_hello){ .min_version = 0, .max_version = 1 };
        proto_hello_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_hello_decode(buf, 8, &d), -EINVAL);
        /* no overlap with our version is still a well-formed HELLO: the daemon answers -EPROTONOSUPPORT */
        m = (struct proto_hello){ .min_version = 7, .max_version = 9 };
        proto_hello_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_hello_decode(buf, 8, &d), 0);

        n = proto_hello_reply_encode(&rm, buf, sizeof(buf));
        ck_assert_int_eq(proto_hello_reply_decode(buf, (size_t)n, &rd), 0);
        rm.backend = PROTO_BACKEND_AUTO; /* the daemon's default may be "auto" */
        n = proto_hello_reply_encode(&rm, buf, sizeof(buf));
        ck_assert_int_eq(proto_hello_reply_decode(buf, (size_t)n, &rd), 0);
        ck_assert_uint_eq(rd.backend, PROTO_BACKEND_AUTO);
        rm.backend = 4;
        n = proto_hello_reply_encode(&rm, buf, sizeof(buf));
        ck_assert_int_eq(proto_hello_reply_decode(buf, (size_t)n, &rd), -EINVAL);
        rm.backend = PROTO_BACKEND_MEMFD;
        rm.reserved = 1;
        n = proto_hello_reply_encode(&rm, buf, sizeof(buf));
        ck_assert_int_eq(proto_hello_reply_decode(buf, (size_t)n, &rd), -EINVAL);
        rm.reserved = 0;
        rm.version = 0;
        n = proto_hello_reply_encode(&rm, buf, sizeof(buf));
        ck_assert_int_eq(proto_hello_reply_decode(buf, (size_t)n, &rd), -EINVAL);
}
END_TEST

START_TEST(test_version_string_max)
{
        static char v[PROTO_VERSION_STRING_MAX + 2];
        struct proto_status_reply m = { .backend = PROTO_BACKEND_SHM, .server_version = v }, d;
        uint8_t buf[256];
        int n;

        name_fill(v, PROTO_VERSION_STRING_MAX, '9');
        n = proto_status_reply_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(n, 40 + 3 + PROTO_VERSION_STRING_MAX);
        ck_assert_int_eq(proto_status_reply_decode(buf, (size_t)n, &d), 0);
        name_fill(v, PROTO_VERSION_STRING_MAX + 1, '9');
        ck_assert_int_eq(proto_status_reply_encode(&m, buf, sizeof(buf)), -EINVAL);
}
END_TEST

START_TEST(test_roundtrip_ping_status)
{
        struct proto_ping p = { .cookie = 0x0102030405060708ull }, pd;
        struct proto_status_reply s = { .regions = 1, .bytes = 2, .connections = 3, .uptime_sec = 4,
                                        .backend = PROTO_BACKEND_MEMFD, .server_version = "0.1.0" }, sd;
        uint8_t buf[128];
        int n;

        ck_assert_int_eq(proto_ping_encode(&p, buf, sizeof(buf)), 8);
        ck_assert_uint_eq(buf[0], 0x08);
        ck_assert_uint_eq(buf[7], 0x01);
        ck_assert_int_eq(proto_ping_decode(buf, 8, &pd), 0);
        ck_assert_uint_eq(pd.cookie, p.cookie);

        n = proto_status_reply_encode(&s, buf, sizeof(buf));
        ck_assert_int_eq(n, 40 + 3 + 5);
        ck_assert_int_eq(proto_status_reply_decode(buf, (size_t)n, &sd), 0);
        ck_assert_uint_eq(sd.regions, 1);
        ck_assert_uint_eq(sd.bytes, 2);
        ck_assert_uint_eq(sd.connections, 3);
        ck_assert_uint_eq(sd.uptime_sec, 4);
        ck_assert_uint_eq(sd.backend, PROTO_BACKEND_MEMFD);
        ck_assert_str_eq(sd.server_version, "0.1.0");

        s.backend = 4;
        n = proto_status_reply_encode(&s, buf, sizeof(buf));
        ck_assert_int_eq(proto_status_reply_decode(buf, (size_t)n, &sd), -EINVAL);
        s.backend = PROTO_BACKEND_AUTO;
        n = proto_status_reply_encode(&s, buf, sizeof(buf));
        ck_assert_int_eq(proto_status_reply_decode(buf, (size_t)n, &sd), 0);
        s.reserved2 = 1;
        n = proto_status_reply_encode(&s, buf, sizeof(buf));
        ck_assert_int_eq(proto_status_reply_decode(buf, (size_t)n, &sd), -EINVAL);
        s.reserved2 = 0;
        s.reserved = 1;
        n = proto_status_reply_encode(&s, buf, sizeof(buf));
        ck_assert_int_eq(proto_status_reply_decode(buf, (size_t)n, &sd), -EINVAL);
}
END_TEST

START_TEST(test_roundtrip_create)
{
        struct proto_create m = { .size = UINT64_MAX, .flags = PROTO_CREATE_KNOWN, .seals = PROTO_SEALS_KNOWN,
                                  .mode = 0777, .backend = PROTO_BACKEND_FILE, .name = "n" }, d;
        uint8_t buf[512];
        int n = proto_create_encode(&m, buf, sizeof(buf));

        ck_assert_int_eq(n, 24 + 3 + 1);
        ck_assert_int_eq(proto_create_decode(buf, (size_t)n, &d), 0);
        ck_assert_uint_eq(d.size, UINT64_MAX); /* F7: sizes pass through whole; the daemon's limit says -EFBIG */
        ck_assert_uint_eq(d.flags, PROTO_CREATE_KNOWN);
        ck_assert_uint_eq(d.seals, PROTO_SEALS_KNOWN);
        ck_assert_uint_eq(d.mode, 0777);
        ck_assert_uint_eq(d.backend, PROTO_BACKEND_FILE);
        ck_assert_str_eq(d.name, "n");

        m = (struct proto_create){ .size = 0, .name = NULL }; /* anonymous, daemon defaults */
        n = proto_create_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(n, 27);
        ck_assert_int_eq(proto_create_decode(buf, (size_t)n, &d), 0);
        ck_assert_str_eq(d.name, "");
        ck_assert_uint_eq(d.size, 0);
        ck_assert_uint_eq(d.backend, PROTO_BACKEND_AUTO);
        ck_assert_uint_eq(d.mode, 0);
}
END_TEST

/* F5/F6: bad flag, seal, mode, backend and reserved values in CREATE are -EINVAL. */
/*
 * proto_refusal(): a request refused for one of its values names it and what is allowed (the daemon's error reply);
 * NULL for a bad name (the reply stays "malformed X", which the bindings recognise), and for a request it accepts.
 */
START_TEST(test_refusal_words)
{
        uint8_t buf[512];
        int n;

#define REFUSED_SAYS(op, says)                                                                                     \
        do {                                                                                                        \
                const char *why_ = proto_refusal(PROTO_OP_##op, buf, (size_t)n);                                    \
                ck_assert_msg(n > 0 && why_ && strstr(why_, says), #op ": '%s' does not say '%s'",                  \
                              why_ ? why_ : "(null)", says);                                                        \
        } while (0)

        n = proto_open_encode(&(struct proto_open){ .flags = 0x8u, .name = "ok" }, buf, sizeof(buf));
        REFUSED_SAYS(OPEN, "OPEN: unknown flags (RDONLY 0x1 and WAIT 0x2 only");
        n = proto_open_encode(&(struct proto_open){ .timeout_ms = 5, .name = "ok" }, buf, sizeof(buf));
        REFUSED_SAYS(OPEN, "OPEN: a timeout without the WAIT flag");
        n = proto_open_encode(&(struct proto_open){ .flags = PROTO_OPEN_WAIT, .timeout_ms = 5, .name = "ok" }, buf,
                              sizeof(buf));
        ck_assert_ptr_null(proto_refusal(PROTO_OP_OPEN, buf, (size_t)n)); /* accepted: no words */
        n = proto_open_encode(&(struct proto_open){ .flags = 0x8u, .name = "a//b" }, buf, sizeof(buf));
        ck_assert_ptr_null(proto_refusal(PROTO_OP_OPEN, buf, (size_t)n)); /* the name first: "malformed OPEN" */
        n = proto_openv_encode(&(struct proto_openv){ .timeout_ms = 5, .name = "ok" }, buf, sizeof(buf));
        REFUSED_SAYS(OPENV, "OPENV: a timeout without the WAIT flag");
        n = proto_seal_encode(&(struct proto_seal){ .seals = 0x100u, .name = "ok" }, buf, sizeof(buf));
        REFUSED_SAYS(SEAL, "SEAL: unknown seal bits");
        n = proto_seal_encode(&(struct proto_seal){ .seals = PROTO_SEAL_GROW, .reserved = 1, .name = "ok" }, buf,
                              sizeof(buf));
        REFUSED_SAYS(SEAL, "SEAL: the reserved field is not 0");
        n = proto_chmod_encode(&(struct proto_chmod){ .mode = 01000, .name = "ok" }, buf, sizeof(buf));
        REFUSED_SAYS(CHMOD, "CHMOD: mode above 0777");
        n = proto_chmod_encode(&(struct proto_chmod){ .mode = 0640, .reserved = 1, .name = "ok" }, buf, sizeof(buf));
        REFUSED_SAYS(CHMOD, "CHMOD: the reserved field is not 0");
        n = proto_chmod_encode(&(struct proto_chmod){ .mode = 01000, .name = ".hidden" }, buf, sizeof(buf));
        ck_assert_ptr_null(proto_refusal(PROTO_OP_CHMOD, buf, (size_t)n));
        n = proto_register_encode(&(struct proto_register){ .size = 4096, .flags = 2, .name = "ok" }, buf,
                                  sizeof(buf));
        REFUSED_SAYS(REGISTER, "REGISTER: unknown flags (IOMEM_REGISTER_LEASE");
        n = proto_register_encode(&(struct proto_register){ .size = 4096, .mode = 04755, .name = "ok" }, buf,
                                  sizeof(buf));
        REFUSED_SAYS(REGISTER, "REGISTER: mode above 0777");
        n = proto_publish_encode(&(struct proto_publish){ .size = 4096, .flags = 2, .name = "ok" }, buf, sizeof(buf));
        REFUSED_SAYS(PUBLISH, "PUBLISH: unknown flags (IOMEM_PUBLISH_LEASE");
        n = proto_publish_encode(&(struct proto_publish){ .size = 4096, .mode = 01000, .name = "ok" }, buf,
                                 sizeof(buf));
        REFUSED_SAYS(PUBLISH, "PUBLISH: mode above 0777");
        n = proto_create_encode(&(struct proto_create){ .size = 4096, .mode = 01000, .name = "ok" }, buf, sizeof(buf));
        REFUSED_SAYS(CREATE, "CREATE: mode above 0777");
        /* CHOWN's and STAT's decoders refuse nothing but the name and the shape */
        n = proto_chown_encode(&(struct proto_chown){ .uid = 7, .gid = 7, .name = "a//b" }, buf, sizeof(buf));
        ck_assert_ptr_null(proto_refusal(PROTO_OP_CHOWN, buf, (size_t)n));
        ck_assert_ptr_null(proto_refusal(PROTO_OP_OPEN, NULL, 0));
        ck_assert_ptr_null(proto_refusal(PROTO_OP_OPEN, buf, 3)); /* cut short: -EBADMSG, no words */
#undef REFUSED_SAYS
}
END_TEST

START_TEST(test_create_bad_values)
{
        struct proto_create base = { .size = 4096, .name = "ok" }, m, d;
        uint8_t buf[512];
        int n;

        for (unsigned bit = 0; bit < 32; bit++) {
                m = base;
                m.flags = 1u << bit;
                n = proto_create_encode(&m, buf, sizeof(buf));
                /* a hugetlb page size (bits 26-31) is only valid with HUGE */
                ck_assert_int_eq(proto_create_decode(buf, (size_t)n, &d),
                                 !(m.flags & ~PROTO_CREATE_KNOWN) && !(m.flags & PROTO_CREATE_HUGE_MASK) ? 0 : -EINVAL);
                m.flags |= PROTO_CREATE_HUGE;
                n = proto_create_encode(&m, buf, sizeof(buf));
                ck_assert_int_eq(proto_create_decode(buf, (size_t)n, &d), (m.flags & ~PROTO_CREATE_KNOWN) ? -EINVAL : 0);
                m = base;
                m.seals = 1u << bit;
                n = proto_create_encode(&m, buf, sizeof(buf));
                ck_assert_int_eq(proto_create_decode(buf, (size_t)n, &d), (m.seals & PROTO_SEALS_KNOWN) ? 0 : -EINVAL);
        }
        m = base;
        m.mode = 01000;
        n = proto_create_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_create_decode(buf, (size_t)n, &d), -EINVAL);
        m.mode = 04755; /* setuid bits are not permission bits here */
        n = proto_create_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_create_decode(buf, (size_t)n, &d), -EINVAL);
        m = base;
        m.backend = 4;
        n = proto_create_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_create_decode(buf, (size_t)n, &d), -EINVAL);
        m.backend = 0xFFFF;
        n = proto_create_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_create_decode(buf, (size_t)n, &d), -EINVAL);
        m = base;
        m.reserved = 0x8000;
        n = proto_create_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_create_decode(buf, (size_t)n, &d), -EINVAL);
        m = base;
        m.name = "/abs";
        n = proto_create_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_create_decode(buf, (size_t)n, &d), -EINVAL);
}
END_TEST

START_TEST(test_roundtrip_region_info)
{
        struct proto_region_info m = { .id = 1, .size = UINT64_MAX, .seals = 0xFFFFFFFFu,
                                       .flags = PROTO_REGION_KNOWN, .backend = PROTO_BACKEND_SHM }, d;
        uint8_t buf[64];

        ck_assert_int_eq(proto_region_info_encode(&m, buf, sizeof(buf)), 32);
        ck_assert_int_eq(proto_region_info_decode(buf, 32, &d), 0);
        ck_assert_uint_eq(d.id, 1);
        ck_assert_uint_eq(d.size, UINT64_MAX);
        ck_assert_uint_eq(d.seals, 0xFFFFFFFFu); /* P7: reply seals are the kernel's, unknown bits kept */
        ck_assert_uint_eq(d.flags, PROTO_REGION_KNOWN);
        ck_assert_uint_eq(d.backend, PROTO_BACKEND_SHM);

        m.flags = PROTO_REGION_KNOWN + 1;
        proto_region_info_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_region_info_decode(buf, 32, &d), -EINVAL);
        m.flags = 0;
        m.backend = PROTO_BACKEND_AUTO;
        proto_region_info_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_region_info_decode(buf, 32, &d), -EINVAL);
        m.backend = PROTO_BACKEND_MEMFD;
        m.reserved2 = 1;
        proto_region_info_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_region_info_decode(buf, 32, &d), -EINVAL);
        m.reserved2 = 0;
        m.reserved = 1;
        proto_region_info_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_region_info_decode(buf, 32, &d), -EINVAL);
}
END_TEST

START_TEST(test_roundtrip_open)
{
        struct proto_open m = { .flags = PROTO_OPEN_WAIT, .timeout_ms = 1500, .name = "q" }, d;
        uint8_t buf[512];
        int n = proto_open_encode(&m, buf, sizeof(buf));

        ck_assert_int_eq(n, 8 + 3 + 1);
        ck_assert_int_eq(proto_open_decode(buf, (size_t)n, &d), 0);
        ck_assert_uint_eq(d.flags, PROTO_OPEN_WAIT);
        ck_assert_uint_eq(d.timeout_ms, 1500);
        ck_assert_str_eq(d.name, "q");
        ck_assert_uint_eq(d.name_len, 1);
        m.name = "some/longer.name";
        n = proto_open_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_open_decode(buf, (size_t)n, &d), 0);
        ck_assert_str_eq(d.name, "some/longer.name");
        ck_assert_uint_eq(d.name_len, strlen("some/longer.name")); /* the daemon looks the name up by it */
        m.name = "q";

        m.flags = PROTO_OPEN_RDONLY; /* a timeout without WAIT is a shape error */
        n = proto_open_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_open_decode(buf, (size_t)n, &d), -EINVAL);
        m.timeout_ms = 0;
        n = proto_open_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_open_decode(buf, (size_t)n, &d), 0);
        ck_assert_uint_eq(d.flags, PROTO_OPEN_RDONLY);
        for (unsigned bit = 2; bit < 32; bit++) {
                m.flags = 1u << bit;
                n = proto_open_encode(&m, buf, sizeof(buf));
                ck_assert_int_eq(proto_open_decode(buf, (size_t)n, &d), -EINVAL);
        }
}
END_TEST

START_TEST(test_roundtrip_resize_seal)
{
        struct proto_resize rm = { .size = 12345, .name = "r" }, rd;
        struct proto_resize_reply rr = { .size = 999 }, rrd;
        struct proto_seal sm = { .seals = PROTO_SEAL_WRITE | PROTO_SEAL_SEAL, .name = "s" }, sd;
        struct proto_seal_reply sr = { .seals = PROTO_SEAL_WRITE }, srd;
        uint8_t buf[512];
        int n;

        n = proto_resize_encode(&rm, buf, sizeof(buf));
        ck_assert_int_eq(n, 8 + 3 + 1);
        ck_assert_int_eq(proto_resize_decode(buf, (size_t)n, &rd), 0);
        ck_assert_uint_eq(rd.size, 12345);
        ck_assert_str_eq(rd.name, "r");
        ck_assert_int_eq(proto_resize_reply_encode(&rr, buf, sizeof(buf)), 8);
        ck_assert_int_eq(proto_resize_reply_decode(buf, 8, &rrd), 0);
        ck_assert_uint_eq(rrd.size, 999);

        n = proto_seal_encode(&sm, buf, sizeof(buf));
        ck_assert_int_eq(n, 8 + 3 + 1);
        ck_assert_int_eq(proto_seal_decode(buf, (size_t)n, &sd), 0);
        ck_assert_uint_eq(sd.seals, PROTO_SEAL_WRITE | PROTO_SEAL_SEAL);
        ck_assert_str_eq(sd.name, "s");
        ck_assert_int_eq(proto_seal_reply_encode(&sr, buf, sizeof(buf)), 4);
        ck_assert_int_eq(proto_seal_reply_decode(buf, 4, &srd), 0);
        ck_assert_uint_eq(srd.seals, PROTO_SEAL_WRITE);

        sm.seals = PROTO_SEALS_KNOWN + 1; /* F_SEAL_EXEC and newer: not in requests */
        n = proto_seal_encode(&sm, buf, sizeof(buf));
        ck_assert_int_eq(proto_seal_decode(buf, (size_t)n, &sd), -EINVAL);
        sm.seals = PROTO_SEAL_GROW;
        sm.reserved = 1;
        n = proto_seal_encode(&sm, buf, sizeof(buf));
        ck_assert_int_eq(proto_seal_decode(buf, (size_t)n, &sd), -EINVAL);
}
END_TEST

START_TEST(test_roundtrip_stat)
{
        struct proto_name nm = { .name = "stat/x" }, nd;
        struct proto_stat_reply m = { .id = 5, .size = 6, .ctime_ns = 7, .open_count = 8, .seals = 9,
                                      .flags = PROTO_REGION_LEASED, .uid = 10, .gid = 11, .mode = 0640,
                                      .backend = PROTO_BACKEND_FILE }, d;
        uint8_t buf[512];
        int n;

        n = proto_name_encode(&nm, buf, sizeof(buf));
        ck_assert_int_eq(n, 3 + 6);
        ck_assert_int_eq(proto_name_decode(buf, (size_t)n, &nd), 0);
        ck_assert_str_eq(nd.name, "stat/x");

        ck_assert_int_eq(proto_stat_reply_encode(&m, buf, sizeof(buf)), 56);
        ck_assert_int_eq(proto_stat_reply_decode(buf, 56, &d), 0);
        ck_assert_uint_eq(d.id, 5);
        ck_assert_uint_eq(d.size, 6);
        ck_assert_uint_eq(d.ctime_ns, 7);
        ck_assert_uint_eq(d.open_count, 8);
        ck_assert_uint_eq(d.seals, 9);
        ck_assert_uint_eq(d.flags, PROTO_REGION_LEASED);
        ck_assert_uint_eq(d.uid, 10);
        ck_assert_uint_eq(d.gid, 11);
        ck_assert_uint_eq(d.mode, 0640);
        ck_assert_uint_eq(d.backend, PROTO_BACKEND_FILE);

        m.mode = 01000;
        proto_stat_reply_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_stat_reply_decode(buf, 56, &d), -EINVAL);
        m.mode = 0;
        m.flags = PROTO_REGION_KNOWN + 1;
        proto_stat_reply_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_stat_reply_decode(buf, 56, &d), -EINVAL);
        m.flags = 0;
        m.reserved = 2;
        proto_stat_reply_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_stat_reply_decode(buf, 56, &d), -EINVAL);
}
END_TEST

START_TEST(test_roundtrip_list_request)
{
        struct proto_list m = { .cursor = UINT64_MAX, .max_entries = 0xFFFFFFFFu, .prefix = NULL }, d;
        uint8_t buf[512];
        int n;

        n = proto_list_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(n, 16 + 3);
        ck_assert_int_eq(proto_list_decode(buf, (size_t)n, &d), 0);
        ck_assert_uint_eq(d.cursor, UINT64_MAX);
        ck_assert_uint_eq(d.max_entries, 0xFFFFFFFFu);
        ck_assert_str_eq(d.prefix, "");

        m.prefix = "/."; /* no leading-character rule for prefixes */
        n = proto_list_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_list_decode(buf, (size_t)n, &d), 0);
        ck_assert_str_eq(d.prefix, "/.");
        m.prefix = "a b";
        n = proto_list_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_list_decode(buf, (size_t)n, &d), -EINVAL);
        m.prefix = "ok";
        m.reserved = 1;
        n = proto_list_encode(&m, buf, sizeof(buf));
        ck_assert_int_eq(proto_list_decode(buf, (size_t)n, &d), -EINVAL);
}
END_TEST

/* ---- strings and names (F6) ----------------------------------------------- */

/* Hand-build a STAT request: u16 length (as declared), the bytes as given, no terminator added. */
static size_t raw_name_payload(uint8_t *buf, uint16_t declared, const void *bytes, size_t nbytes)
{
        buf[0] = (uint8_t)declared;
        buf[1] = (uint8_t)(declared >> 8);
        memcpy(buf + 2, bytes, nbytes);
        return 2 + nbytes;
}

static int decode_raw(const uint8_t *buf, size_t len)
{
        struct proto_name d;
        uint8_t *p = dup_exact(buf, len);
        int r = proto_name_decode(p, len, &d);

        free(p);
        return r;
}

START_TEST(test_f6_string_nul)
{
        uint8_t buf[64];
        size_t n;

        n = raw_name_payload(buf, 3, "abc", 4); /* the NUL at its place */
        ck_assert_int_eq(decode_raw(buf, n), 0);
        n = raw_name_payload(buf, 3, "abcx", 4); /* F6: no NUL where declared */
        ck_assert_int_eq(decode_raw(buf, n), -EINVAL);
        n = raw_name_payload(buf, 3, "abc", 3); /* F6: no NUL at all: truncated */
        ck_assert_int_eq(decode_raw(buf, n), -EBADMSG);
        n = raw_name_payload(buf, 3, "a\0c", 4); /* F6: NUL inside */
        ck_assert_int_eq(decode_raw(buf, n), -EINVAL);
        n = raw_name_payload(buf, 3, "\0bc", 4);
        ck_assert_int_eq(decode_raw(buf, n), -EINVAL);
        n = raw_name_payload(buf, 2, "abc", 4); /* declared length short: bytes left over */
        ck_assert_int_eq(decode_raw(buf, n), -EBADMSG);
        n = raw_name_payload(buf, 0xFFFF, "abc", 4); /* declared length far past the end */
        ck_assert_int_eq(decode_raw(buf, n), -EBADMSG);
        n = raw_name_payload(buf, 1, "", 0); /* only a length */
        ck_assert_int_eq(decode_raw(buf, n), -EBADMSG);
        ck_assert_int_eq(decode_raw(buf, 1), -EBADMSG); /* half a length */
}
END_TEST

START_TEST(test_f6_empty_name)
{
        uint8_t buf[64];
        struct proto_open od;
        struct proto_resize rd;
        struct proto_seal sd;
        struct proto_name nd;
        struct proto_create cd;
        int n;

        n = proto_name_encode(&(struct proto_name){ .name = "" }, buf, sizeof(buf));
        ck_assert_int_eq(n, 3);
        ck_assert_int_eq(proto_name_decode(buf, (size_t)n, &nd), -EINVAL);
        n = proto_open_encode(&(struct proto_open){ .name = "" }, buf, sizeof(buf));
        ck_assert_int_eq(proto_open_decode(buf, (size_t)n, &od), -EINVAL);
        n = proto_resize_encode(&(struct proto_resize){ .size = 1, .name = "" }, buf, sizeof(buf));
        ck_assert_int_eq(proto_resize_decode(buf, (size_t)n, &rd), -EINVAL);
        n = proto_seal_encode(&(struct proto_seal){ .seals = 1, .name = "" }, buf, sizeof(buf));
        ck_assert_int_eq(proto_seal_decode(buf, (size_t)n, &sd), -EINVAL);
        n = proto_create_encode(&(struct proto_create){ .size = 1, .name = "" }, buf, sizeof(buf));
        ck_assert_int_eq(proto_create_decode(buf, (size_t)n, &cd), 0); /* anonymous */
}
END_TEST

START_TEST(test_f6_name_too_long)
{
        static char name[PROTO_NAME_MAX + 2];
        static uint8_t buf[1024];
        struct proto_name d;
        int n;

        name_fill(name, PROTO_NAME_MAX, 'a');
        n = proto_name_encode(&(struct proto_name){ .name = name }, buf, sizeof(buf));
        ck_assert_int_eq(n, PROTO_NAME_MAX + 3);
        ck_assert_int_eq(proto_name_decode(buf, (size_t)n, &d), 0);
        ck_assert_int_eq(proto_name_check(name, PROTO_NAME_MAX), 0);

        name_fill(name, PROTO_NAME_MAX + 1, 'a');
        ck_assert_int_eq(proto_name_check(name, PROTO_NAME_MAX + 1), -EINVAL);
        ck_assert_int_eq(proto_name_encode(&(struct proto_name){ .name = name }, buf, sizeof(buf)), -EINVAL);
        ck_assert_int_eq(proto_create_encode(&(struct proto_create){ .name = name }, buf, sizeof(buf)), -EINVAL);
        ck_assert_int_eq(proto_list_encode(&(struct proto_list){ .prefix = name }, buf, sizeof(buf)), -EINVAL);
        n = (int)raw_name_payload(buf, PROTO_NAME_MAX + 1, name, PROTO_NAME_MAX + 2); /* with its NUL */
        ck_assert_int_eq(decode_raw(buf, (size_t)n), -EINVAL);
        {
                struct proto_list ld;
                uint8_t lb[1024] = { 0 };
                memcpy(lb + 16, buf, (size_t)n);
                ck_assert_int_eq(proto_list_decode(lb, 16 + (size_t)n, &ld), -EINVAL);
        }
}
END_TEST

START_TEST(test_f6_name_charset)
{
        static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:@+=,";
        uint8_t buf[64];
        char name[4];

        for (unsigned c = 1; c < 256; c++) {
                bool ok = strchr(allowed, (int)c) != NULL;
                int want_name, want_prefix;
                struct proto_list ld;
                int n;

                name[0] = 'a';
                name[1] = (char)c;
                name[2] = 'b';
                name[3] = '\0';
                want_name = ok ? 0 : -EINVAL;
                ck_assert_msg(proto_name_check(name, 3) == want_name, "char 0x%02x", c);
                n = (int)raw_name_payload(buf, 3, name, 4);
                ck_assert_msg(decode_raw(buf, (size_t)n) == want_name, "char 0x%02x", c);
                want_prefix = ok ? 0 : -EINVAL;
                n = proto_list_encode(&(struct proto_list){ .prefix = name }, buf, sizeof(buf));
                ck_assert_msg(proto_list_decode(buf, (size_t)n, &ld) == want_prefix, "prefix char 0x%02x", c);
        }
}
END_TEST

START_TEST(test_f6_name_rules)
{
        static const char *good[] = { "a", "A9", "a/b", "a/b/", "x.y-z_1:2@3+4=5,6", "a/.b", "a.", "-", "_x",
                                      "0", "a/../b", "user@host:1" };
        static const char *bad[] = { "/a", ".a", "..", ".", "/", "a//b", "a//", "ab//", "a b", "a\tb",
                                     "a\\b", "a*b", "a%b", "a#b", "a~b", "ä" };

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                ck_assert_msg(proto_name_check(good[i], strlen(good[i])) == 0, "%s", good[i]);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                ck_assert_msg(proto_name_check(bad[i], strlen(bad[i])) == -EINVAL, "%s", bad[i]);
        ck_assert_int_eq(proto_name_check("", 0), -EINVAL);
        ck_assert_int_eq(proto_name_check(NULL, 1), -EINVAL);
        ck_assert_int_eq(proto_name_check("a\0b", 3), -EINVAL); /* NUL inside */
}
END_TEST

/* ---- LIST replies --------------------------------------------------------- */

static void entry_make(struct proto_list_entry *e, char *name, unsigned i, size_t name_len)
{
        memset(name, 'a' + (int)(i % 26), name_len);
        name[name_len] = '\0';
        *e = (struct proto_list_entry){ .id = i + 1, .size = (uint64_t)i * 4096, .seals = i & 0x1f,
                                        .mode = i & 0777, .uid = i, .gid = i * 2, .name = name };
}

/* Fill a writer until -ENOBUFS; a failed add leaves it unchanged; the reply walks back to what was added. */
START_TEST(test_list_writer_fill_and_walk)
{
        static const size_t sizes[] = { 16, 50, 51, 52, 200, 1000, PROTO_MAX_PAYLOAD };
        static uint8_t buf[PROTO_MAX_PAYLOAD];
        char name[PROTO_NAME_MAX + 1];

        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
                struct proto_list_writer w;
                struct proto_list_reply rep;
                struct proto_list_entry e, got;
                size_t off = 0, name_len = 1 + (sizes[s] % 40);
                unsigned added = 0;
                int n, r;

                proto_list_writer_init(&w, buf, sizes[s]);
                for (;;) {
                        size_t len_before = w.len;
                        uint32_t count_before = w.count;

                        entry_make(&e, name, added, name_len);
                        r = proto_list_writer_add(&w, &e);
                        if (r == -ENOBUFS) {
                                ck_assert_uint_eq(w.len, len_before);
                                ck_assert_uint_eq(w.count, count_before);
                                ck_assert_uint_gt(len_before + 32 + 3 + name_len, sizes[s]);
                                break;
                        }
                        ck_assert_int_eq(r, 0);
                        ck_assert_uint_eq(w.len, len_before + 32 + 3 + name_len);
                        added++;
                }
                ck_assert_uint_eq(w.count, added);
                ck_assert_uint_eq(added, (sizes[s] - 16) / (32 + 3 + name_len));

                n = proto_list_writer_finish(&w, 0xC0FFEE);
                ck_assert_int_eq(n, (int)w.len);
                ck_assert_int_eq(proto_list_reply_decode(buf, (size_t)n, &rep), 0);
                ck_assert_uint_eq(rep.next_cursor, 0xC0FFEE);
                ck_assert_uint_eq(rep.count, added);
                for (unsigned i = 0; i < added; i++) {
                        entry_make(&e, name, i, name_len);
                        ck_assert_int_eq(proto_list_entry_next(&rep, &off, &got), 1);
                        ck_assert_uint_eq(got.id, e.id);
                        ck_assert_uint_eq(got.size, e.size);
                        ck_assert_uint_eq(got.seals, e.seals);
                        ck_assert_uint_eq(got.mode, e.mode);
                        ck_assert_uint_eq(got.uid, e.uid);
                        ck_assert_uint_eq(got.gid, e.gid);
                        ck_assert_str_eq(got.name, name);
                }
                ck_assert_int_eq(proto_list_entry_next(&rep, &off, &got), 0);
                ck_assert_int_eq(proto_list_entry_next(&rep, &off, &got), 0);
                ck_assert_uint_eq(off, rep.entries_len);
        }
}
END_TEST

START_TEST(test_list_writer_tiny_buffer)
{
        uint8_t buf[16];
        struct proto_list_writer w;
        struct proto_list_entry e = { .name = "a" };

        proto_list_writer_init(&w, buf, 15);
        ck_assert_int_eq(proto_list_writer_add(&w, &e), -ENOBUFS);
        ck_assert_int_eq(proto_list_writer_finish(&w, 0), -ENOBUFS);
        proto_list_writer_init(&w, buf, 16);
        ck_assert_int_eq(proto_list_writer_add(&w, &e), -ENOBUFS);
        ck_assert_int_eq(proto_list_writer_finish(&w, 0), 16);
}
END_TEST

/* F5/F7: count and entries that disagree, and entry lengths that run past the end. */
START_TEST(test_list_reply_bad_shapes)
{
        static uint8_t buf[1024];
        struct proto_list_writer w;
        struct proto_list_reply rep;
        struct proto_list_entry e = { .id = 1, .mode = 0600, .name = "abc" };
        int n;

        proto_list_writer_init(&w, buf, sizeof(buf));
        ck_assert_int_eq(proto_list_writer_add(&w, &e), 0);
        ck_assert_int_eq(proto_list_writer_add(&w, &e), 0);
        n = proto_list_writer_finish(&w, 0);
        ck_assert_int_eq(proto_list_reply_decode(buf, (size_t)n, &rep), 0);

        buf[8] = 3; /* count says three, two present */
        ck_assert_int_eq(proto_list_reply_decode(buf, (size_t)n, &rep), -EBADMSG);
        buf[8] = 1; /* count says one, two present */
        ck_assert_int_eq(proto_list_reply_decode(buf, (size_t)n, &rep), -EBADMSG);
        buf[8] = 0xFF;
        buf[9] = 0xFF;
        buf[10] = 0xFF;
        buf[11] = 0xFF; /* count 0xFFFFFFFF */
        ck_assert_int_eq(proto_list_reply_decode(buf, (size_t)n, &rep), -EBADMSG);
        buf[8] = 2;
        buf[9] = buf[10] = buf[11] = 0;
        ck_assert_int_eq(proto_list_reply_decode(buf, (size_t)n, &rep), 0);

        buf[16 + 32] = 0xFF; /* first entry's name length 0xFF03: past the end */
        buf[16 + 33] = 0xFF;
        ck_assert_int_eq(proto_list_reply_decode(buf, (size_t)n, &rep), -EBADMSG);
        buf[16 + 32] = 3;
        buf[16 + 33] = 0;
        buf[16 + 34] = '/'; /* first entry's name is not a valid name */
        ck_assert_int_eq(proto_list_reply_decode(buf, (size_t)n, &rep), -EINVAL);
        buf[16 + 34] = 'a';
        buf[16 + 20] = 0x00;
        buf[16 + 21] = 0x02; /* mode 01000 */
        ck_assert_int_eq(proto_list_reply_decode(buf, (size_t)n, &rep), -EINVAL);
        buf[16 + 21] = 0;
        buf[12] = 1; /* reserved */
        ck_assert_int_eq(proto_list_reply_decode(buf, (size_t)n, &rep), -EINVAL);
        buf[12] = 0;
        ck_assert_int_eq(proto_list_reply_decode(buf, (size_t)n, &rep), 0);
}
END_TEST

/* F7: walking with offsets at or past the end, or into a corrupt entry, never reads out of bounds. */
START_TEST(test_list_entry_next_offsets)
{
        static uint8_t buf[256];
        struct proto_list_writer w;
        struct proto_list_reply rep;
        struct proto_list_entry e = { .id = 9, .name = "zz" }, got;
        size_t off;
        uint8_t *copy;
        int n;

        proto_list_writer_init(&w, buf, sizeof(buf));
        ck_assert_int_eq(proto_list_writer_add(&w, &e), 0);
        n = proto_list_writer_finish(&w, 0);
        copy = dup_exact(buf, (size_t)n);
        ck_assert_int_eq(proto_list_reply_decode(copy, (size_t)n, &rep), 0);

        off = SIZE_MAX;
        ck_assert_int_eq(proto_list_entry_next(&rep, &off, &got), 0);
        off = rep.entries_len;
        ck_assert_int_eq(proto_list_entry_next(&rep, &off, &got), 0);
        for (off = 1; off < rep.entries_len; off++) {
                size_t o = off;
                ck_assert_int_lt(proto_list_entry_next(&rep, &o, &got), 0);
                ck_assert_uint_eq(o, off);
        }
        off = 0;
        ck_assert_int_eq(proto_list_entry_next(&rep, &off, &got), 1);
        ck_assert_uint_eq(got.id, 9);
        ck_assert_str_eq(got.name, "zz");
        free(copy);
}
END_TEST

/* ---- the worked example in docs/protocol.md -------------------------------- */

/* The byte layouts of docs/protocol.md for CHMOD, CHOWN, QUOTA and REGISTER, and their value checks. */
START_TEST(test_access_messages)
{
        static const uint8_t chmod_bytes[] = { 0xa0, 0x01, 0, 0, 0, 0, 0, 0, 1, 0, 'm', 0 };
        static const uint8_t chown_bytes[] = { 0xff, 0xff, 0xff, 0xff, 0x64, 0, 0, 0, 1, 0, 'm', 0 };
        static const uint8_t register_bytes[] = { 0, 0x10, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xa4, 0x01, 0, 0,
                                                  1, 0, 'm', 0 };
        struct proto_chmod cm = { .mode = 0640, .name = "m" }, cmd;
        struct proto_chown co = { .uid = PROTO_ID_UNCHANGED, .gid = 100, .name = "m" }, cod;
        struct proto_register rg = { .size = 4096, .flags = PROTO_REGISTER_LEASE, .mode = 0644, .name = "m" }, rgd;
        struct proto_register_reply rr = { .id = 5, .seals = 0x22 }, rrd;
        struct proto_quota_reply qr = { .uid = 1, .max_region_size = 2 }, qrd;
        uint8_t buf[128];

        ck_assert_int_eq(proto_chmod_encode(&cm, buf, sizeof(buf)), (int)sizeof(chmod_bytes));
        ck_assert_mem_eq(buf, chmod_bytes, sizeof(chmod_bytes));
        ck_assert_int_eq(proto_chmod_decode(buf, sizeof(chmod_bytes), &cmd), 0);
        ck_assert_uint_eq(cmd.mode, 0640);
        ck_assert_int_eq(proto_chown_encode(&co, buf, sizeof(buf)), (int)sizeof(chown_bytes));
        ck_assert_mem_eq(buf, chown_bytes, sizeof(chown_bytes));
        ck_assert_int_eq(proto_chown_decode(buf, sizeof(chown_bytes), &cod), 0);
        ck_assert_uint_eq(cod.uid, PROTO_ID_UNCHANGED);
        ck_assert_uint_eq(cod.gid, 100);
        ck_assert_int_eq(proto_register_encode(&rg, buf, sizeof(buf)), (int)sizeof(register_bytes));
        ck_assert_mem_eq(buf, register_bytes, sizeof(register_bytes));
        ck_assert_int_eq(proto_register_decode(buf, sizeof(register_bytes), &rgd), 0);
        ck_assert_uint_eq(rgd.size, 4096);
        ck_assert_int_eq(proto_register_reply_encode(&rr, buf, sizeof(buf)), 16);
        ck_assert_int_eq(proto_register_reply_decode(buf, 16, &rrd), 0);
        ck_assert_uint_eq(rrd.seals, 0x22); /* unknown kernel bits pass (P7) */
        ck_assert_int_eq(proto_quota_reply_encode(&qr, buf, sizeof(buf)), 80);
        ck_assert_int_eq(proto_quota_reply_encode(&qr, buf, 79), -ENOBUFS);
        ck_assert_int_eq(proto_quota_reply_decode(buf, 80, &qrd), 0);
        ck_assert_uint_eq(qrd.max_region_size, 2);
        ck_assert_int_eq(proto_quota_reply_decode(buf, 81, &qrd), -EBADMSG);

        /* values */
        cm.mode = 01000;
        ck_assert_int_gt(proto_chmod_encode(&cm, buf, sizeof(buf)), 0);
        ck_assert_int_eq(proto_chmod_decode(buf, sizeof(chmod_bytes), &cmd), -EINVAL);
        cm.mode = 0;
        cm.reserved = 1;
        ck_assert_int_gt(proto_chmod_encode(&cm, buf, sizeof(buf)), 0);
        ck_assert_int_eq(proto_chmod_decode(buf, sizeof(chmod_bytes), &cmd), -EINVAL);
        co.name = "";
        ck_assert_int_gt(proto_chown_encode(&co, buf, sizeof(buf)), 0);
        ck_assert_int_eq(proto_chown_decode(buf, 11, &cod), -EINVAL);
        rg.flags = 2;
        ck_assert_int_gt(proto_register_encode(&rg, buf, sizeof(buf)), 0);
        ck_assert_int_eq(proto_register_decode(buf, sizeof(register_bytes), &rgd), -EINVAL);
        rg.flags = 0;
        rg.mode = 01000;
        ck_assert_int_gt(proto_register_encode(&rg, buf, sizeof(buf)), 0);
        ck_assert_int_eq(proto_register_decode(buf, sizeof(register_bytes), &rgd), -EINVAL);
        rr.id = 0;
        ck_assert_int_eq(proto_register_reply_encode(&rr, buf, sizeof(buf)), 16);
        ck_assert_int_eq(proto_register_reply_decode(buf, 16, &rrd), -EINVAL);
        rr.id = 1;
        rr.reserved = 1;
        ck_assert_int_eq(proto_register_reply_encode(&rr, buf, sizeof(buf)), 16);
        ck_assert_int_eq(proto_register_reply_decode(buf, 16, &rrd), -EINVAL);
}
END_TEST

START_TEST(test_doc_example_bytes)
{
        static const uint8_t hello[] = {
                0x49, 0x4f, 0x4d, 0x44, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x08, 0x00,
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
        };
        static const uint8_t create[] = {
                0x49, 0x4f, 0x4d, 0x44, 0x01, 0x00, 0x10, 0x00, 0x02, 0x00, 0x00, 0x00, 0x25, 0x00,
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x01, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x0a, 0x00, 0x63, 0x61, 0x6d, 0x2f, 0x66, 0x72, 0x61, 0x6d, 0x65, 0x30,
                0x00,
        };
        struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION, .opcode = PROTO_OP_HELLO,
                                  .id = 1 };
        struct proto_create c = { .size = 1048576, .flags = PROTO_CREATE_EXCLUSIVE, .mode = 0640,
                                  .name = "cam/frame0" };
        uint8_t buf[128];
        int n;

        n = proto_hello_encode(&(struct proto_hello){ .min_version = 1, .max_version = 1 }, buf + 20, 100);
        h.length = (uint32_t)n;
        proto_header_encode(&h, buf);
        ck_assert_uint_eq(20 + (size_t)n, sizeof(hello));
        ck_assert_mem_eq(buf, hello, sizeof(hello));

        n = proto_create_encode(&c, buf + 20, 100);
        h.opcode = PROTO_OP_CREATE;
        h.id = 2;
        h.length = (uint32_t)n;
        proto_header_encode(&h, buf);
        ck_assert_uint_eq(20 + (size_t)n, sizeof(create));
        ck_assert_mem_eq(buf, create, sizeof(create));
}
END_TEST

/* ---- METRICS ------------------------------------------------------------ */

START_TEST(test_metrics_writer_fill_and_decode)
{
        static const size_t sizes[] = { 8, 23, 24, 40, 1000, PROTO_MAX_PAYLOAD };
        static uint8_t buf[PROTO_MAX_PAYLOAD];

        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
                struct proto_metrics_writer w;
                struct proto_metrics_reply rep;
                struct proto_metric_entry e, got;
                uint32_t added = 0;
                int n, r;

                proto_metrics_writer_init(&w, buf, sizes[s]);
                for (;;) {
                        size_t len_before = w.len;

                        e = (struct proto_metric_entry){ .metric = (uint16_t)(added + 1), .label = added * 7,
                                                         .value = (uint64_t)added << 40 | added };
                        r = proto_metrics_writer_add(&w, &e);
                        if (r == -ENOBUFS) {
                                ck_assert_uint_eq(w.len, len_before);
                                ck_assert_uint_eq(w.count, added);
                                break;
                        }
                        ck_assert_int_eq(r, 0);
                        ck_assert_uint_eq(w.len, len_before + 16);
                        added++;
                }
                ck_assert_uint_eq(added, (sizes[s] - 8) / 16);
                n = proto_metrics_writer_finish(&w, PROTO_METRICS_TRUNCATED);
                ck_assert_int_eq(n, (int)(8 + 16 * added));
                ck_assert_int_eq(proto_metrics_reply_decode(buf, (size_t)n, &rep), 0);
                ck_assert_uint_eq(rep.version, PROTO_METRICS_VERSION);
                ck_assert_uint_eq(rep.flags, PROTO_METRICS_TRUNCATED);
                ck_assert_uint_eq(rep.count, added);
                for (uint32_t i = 0; i < added; i++) {
                        proto_metrics_entry_get(&rep, i, &got);
                        ck_assert_uint_eq(got.metric, i + 1);
                        ck_assert_uint_eq(got.reserved, 0);
                        ck_assert_uint_eq(got.label, i * 7);
                        ck_assert_uint_eq(got.value, (uint64_t)i << 40 | i);
                }
        }
}
END_TEST

START_TEST(test_metrics_tiny_buffer)
{
        uint8_t buf[8];
        struct proto_metrics_writer w;
        struct proto_metric_entry e = { .metric = 1 };

        proto_metrics_writer_init(&w, buf, 7);
        ck_assert_int_eq(proto_metrics_writer_add(&w, &e), -ENOBUFS);
        ck_assert_int_eq(proto_metrics_writer_finish(&w, 0), -ENOBUFS);
        proto_metrics_writer_init(&w, buf, 8);
        ck_assert_int_eq(proto_metrics_writer_add(&w, &e), -ENOBUFS);
        ck_assert_int_eq(proto_metrics_writer_finish(&w, 0), 8);
}
END_TEST

/* F5/F7: count and entries that disagree, other versions, unknown flags, reserved bits; unknown ids pass. */
START_TEST(test_metrics_reply_bad_shapes)
{
        static uint8_t buf[256];
        struct proto_metrics_writer w;
        struct proto_metrics_reply rep;
        struct proto_metric_entry e = { .metric = PROTO_METRIC_BYTES, .value = 5 };
        int n;

        ck_assert_int_eq(proto_metrics_reply_decode(NULL, 0, &rep), -EBADMSG);
        proto_metrics_writer_init(&w, buf, sizeof(buf));
        ck_assert_int_eq(proto_metrics_writer_add(&w, &e), 0);
        e.metric = 0x7777; /* unknown to this build: accepted */
        ck_assert_int_eq(proto_metrics_writer_add(&w, &e), 0);
        n = proto_metrics_writer_finish(&w, 0);
        ck_assert_int_eq(n, 40);
        ck_assert_int_eq(proto_metrics_reply_decode(buf, (size_t)n, &rep), 0);
        ck_assert_uint_eq(rep.count, 2);

        ck_assert_int_eq(proto_metrics_reply_decode(buf, 7, &rep), -EBADMSG);
        ck_assert_int_eq(proto_metrics_reply_decode(buf, (size_t)n - 1, &rep), -EBADMSG);
        buf[4] = 3; /* count says three, two present */
        ck_assert_int_eq(proto_metrics_reply_decode(buf, (size_t)n, &rep), -EBADMSG);
        buf[4] = 1;
        ck_assert_int_eq(proto_metrics_reply_decode(buf, (size_t)n, &rep), -EBADMSG);
        memset(buf + 4, 0xFF, 4); /* count 0xFFFFFFFF: 16 * count must not wrap */
        ck_assert_int_eq(proto_metrics_reply_decode(buf, (size_t)n, &rep), -EBADMSG);
        buf[4] = 2;
        buf[5] = buf[6] = buf[7] = 0;
        ck_assert_int_eq(proto_metrics_reply_decode(buf, (size_t)n, &rep), 0);

        buf[0] = 2; /* version 2 */
        ck_assert_int_eq(proto_metrics_reply_decode(buf, (size_t)n, &rep), -EINVAL);
        buf[0] = 0;
        ck_assert_int_eq(proto_metrics_reply_decode(buf, (size_t)n, &rep), -EINVAL);
        buf[0] = 1;
        buf[2] = 0x02; /* unknown flag */
        ck_assert_int_eq(proto_metrics_reply_decode(buf, (size_t)n, &rep), -EINVAL);
        buf[2] = 0;
        buf[8 + 16 + 3] = 0x80; /* second entry's reserved field */
        ck_assert_int_eq(proto_metrics_reply_decode(buf, (size_t)n, &rep), -EINVAL);
        buf[8 + 16 + 3] = 0;
        ck_assert_int_eq(proto_metrics_reply_decode(buf, (size_t)n, &rep), 0);
}
END_TEST

/* The table the CLI prints from: every metric named once, with a valid name, help text, type and label. */
START_TEST(test_metric_info)
{
        static const uint16_t ids[] = {
                PROTO_METRIC_REGIONS, PROTO_METRIC_BYTES, PROTO_METRIC_CONNECTIONS, PROTO_METRIC_UPTIME,
                PROTO_METRIC_CONNECTIONS_ACCEPTED, PROTO_METRIC_CONNECTIONS_REFUSED, PROTO_METRIC_WAITING_OPENS,
                PROTO_METRIC_FD_STORE_FDS, PROTO_METRIC_FD_STORE_MAX, PROTO_METRIC_KEEPERS,
                PROTO_METRIC_REGION_FDS, PROTO_METRIC_QUOTA_REFUSALS, PROTO_METRIC_REQUESTS,
                PROTO_METRIC_REQUEST_ERRORS, PROTO_METRIC_ERRORS, PROTO_METRIC_UID_REGIONS,
                PROTO_METRIC_UID_BYTES, PROTO_METRIC_UID_CONNECTIONS, PROTO_METRIC_UID_QUEUED_FDS,
                PROTO_METRIC_UID_QUOTA_REFUSALS, PROTO_METRIC_CLOSING_FDS, PROTO_METRIC_ORPHAN_SOCKETS,
                PROTO_METRIC_JOBS,
        };
        const struct proto_metric_info *info[sizeof(ids) / sizeof(ids[0])];

        for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
                const char *n;
                size_t len;

                info[i] = proto_metric_info(ids[i]);
                ck_assert_ptr_nonnull(info[i]);
                ck_assert_uint_eq(info[i]->metric, ids[i]);
                n = info[i]->name;
                len = strlen(n);
                ck_assert_int_eq(strncmp(n, "iomemd_", 7), 0);
                ck_assert_uint_eq(strspn(n, "abcdefghijklmnopqrstuvwxyz_"), len);
                ck_assert(len < 6 || strcmp(n + len - 6, "_total") != 0);
                ck_assert(info[i]->type == PROTO_METRIC_GAUGE || info[i]->type == PROTO_METRIC_COUNTER);
                ck_assert_uint_le(info[i]->label, PROTO_METRIC_LABEL_UID);
                ck_assert_uint_gt(strlen(info[i]->help), 0);
                ck_assert_ptr_null(strchr(info[i]->help, '\n'));
                ck_assert_ptr_null(strchr(info[i]->help, '\\'));
                for (size_t j = 0; j < i; j++)
                        ck_assert_str_ne(n, info[j]->name);
        }
        ck_assert_uint_eq(proto_metric_info(PROTO_METRIC_REQUESTS)->label, PROTO_METRIC_LABEL_REQUEST);
        ck_assert_uint_eq(proto_metric_info(PROTO_METRIC_ERRORS)->label, PROTO_METRIC_LABEL_CODE);
        ck_assert_uint_eq(proto_metric_info(PROTO_METRIC_UID_BYTES)->label, PROTO_METRIC_LABEL_UID);
        ck_assert_ptr_null(proto_metric_info(0));
        ck_assert_ptr_null(proto_metric_info(16));
        ck_assert_ptr_null(proto_metric_info(0xFFFF));
}
END_TEST

/* ---- the EVENTS feature (docs/protocol.md section 15) ------------------- */

/* HELLO: EVENTS (and PAGE_INFO, issue 15) are accepted; bit 0 and every other bit stay -EINVAL. */
START_TEST(test_hello_events_flag)
{
        struct proto_hello m = { .min_version = 1, .max_version = 1, .flags = PROTO_HELLO_EVENTS }, d;
        uint8_t buf[16];

        ck_assert_int_eq(proto_hello_encode(&m, buf, sizeof(buf)), 8);
        ck_assert_uint_eq(buf[4], 0x02);
        ck_assert_int_eq(proto_hello_decode(buf, 8, &d), 0);
        ck_assert_uint_eq(d.flags, PROTO_HELLO_EVENTS);
        for (unsigned bit = 0; bit < 32; bit++) {
                m.flags = 1u << bit;
                proto_hello_encode(&m, buf, sizeof(buf));
                ck_assert_int_eq(proto_hello_decode(buf, 8, &d), (m.flags & PROTO_HELLO_KNOWN) ? 0 : -EINVAL);
        }
}
END_TEST

/* The byte tables of section 15: a region event frame and a PUBLISH request. */
START_TEST(test_event_layout)
{
        static const uint8_t ev[] = {
                0x49, 0x4f, 0x4d, 0x44, 0x01, 0x01, 0x08, 0x03, 0x03, 0x00, 0x00, 0x00, 0x35, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x00, 0x00, /* header: REPLY, opcode 0x0308 PUBLISHED, id (watch) 3, length 53 */
                0x0c, 0, 0, 0, 0, 0, 0, 0, /* id 12 */
                0x0c, 0, 0, 0, 0, 0, 0, 0, /* generation 12 */
                0x00, 0x20, 0, 0, 0, 0, 0, 0, /* size 8192 */
                0x04, 0, 0, 0, 0, 0, 0, 0, /* replaced_id 4 */
                0x0f, 0, 0, 0, 0xa0, 0x01, 0, 0, 0xe8, 0x03, 0, 0, 0x64, 0, 0, 0, /* seals, mode, uid, gid */
                0x02, 0x00, 'f', 'm', 0x00,
        };
        static const uint8_t pub[] = {
                0x00, 0x10, 0, 0, 0, 0, 0, 0, /* size 4096 */
                0x07, 0, 0, 0, 0, 0, 0, 0,    /* expect_generation 7 */
                0x01, 0, 0, 0, 0xa4, 0x01, 0, 0, /* LEASE, 0644 */
                0x01, 0x00, 'p', 0x00,
        };
        struct proto_event e = { .id = 12, .generation = 12, .size = 8192, .replaced_id = 4, .seals = 0x0f,
                                 .mode = 0640, .uid = 1000, .gid = 100, .name = "fm" }, d;
        struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION, .flags = PROTO_FLAG_REPLY,
                                  .opcode = PROTO_EV_PUBLISHED, .id = 3 }, hd;
        struct proto_publish p = { .size = 4096, .expect_generation = 7, .flags = PROTO_PUBLISH_LEASE,
                                   .mode = 0644, .name = "p" };
        uint8_t buf[128];
        int n;

        n = proto_event_encode(&e, buf + PROTO_HEADER_SIZE, sizeof(buf) - PROTO_HEADER_SIZE);
        ck_assert_int_eq(n, 53);
        h.length = (uint32_t)n;
        proto_header_encode(&h, buf);
        ck_assert_mem_eq(buf, ev, sizeof(ev));
        ck_assert_int_eq(proto_header_decode(ev, sizeof(ev), &hd), 0);
        ck_assert(proto_opcode_is_event(hd.opcode));
        ck_assert_int_eq(proto_event_decode(ev + PROTO_HEADER_SIZE, hd.length, &d), 0);
        ck_assert_str_eq(d.name, "fm");
        ck_assert_uint_eq(d.replaced_id, 4);
        ck_assert_uint_eq(d.gid, 100);

        n = proto_publish_encode(&p, buf, sizeof(buf));
        ck_assert_int_eq(n, (int)sizeof(pub));
        ck_assert_mem_eq(buf, pub, sizeof(pub));
}
END_TEST

/* Values the decoders refuse: zero ids and generations, unknown flags, reserved fields, bad names and modes. */
START_TEST(test_events_bad_values)
{
        struct proto_watch w = { .prefix = "a" }, wd;
        struct proto_publish p = { .size = 1, .name = "n" }, pd;
        struct proto_openv o = { .name = "n" }, od;
        struct proto_event e = { .id = 1, .generation = 1, .name = "n" }, ed;
        struct proto_publish_reply pr = { .id = 1, .generation = 1 }, prd;
        struct proto_region_infov ri = { .info = { .backend = PROTO_BACKEND_MEMFD }, .generation = 1 }, rid;
        struct proto_stat_replyv sr = { .stat = { .backend = PROTO_BACKEND_MEMFD }, .generation = 1 }, srd;
        struct proto_watch_reply wr = { .watch_id = 1 }, wrd;
        struct proto_unwatch u = { .watch_id = 1 }, ud;
        uint8_t buf[512];
        int n;

        for (unsigned bit = 0; bit < 32; bit++) {
                w.flags = 1u << bit;
                n = proto_watch_encode(&w, buf, sizeof(buf));
                ck_assert_int_eq(proto_watch_decode(buf, (size_t)n, &wd), -EINVAL);
                p.flags = 1u << bit;
                n = proto_publish_encode(&p, buf, sizeof(buf));
                ck_assert_int_eq(proto_publish_decode(buf, (size_t)n, &pd),
                                 (p.flags & PROTO_PUBLISH_KNOWN) ? 0 : -EINVAL);
                o.flags = 1u << bit;
                o.timeout_ms = (o.flags & PROTO_OPEN_WAIT) ? 5 : 0;
                n = proto_openv_encode(&o, buf, sizeof(buf));
                ck_assert_int_eq(proto_openv_decode(buf, (size_t)n, &od), (o.flags & PROTO_OPEN_KNOWN) ? 0 : -EINVAL);
        }
        w = (struct proto_watch){ .reserved = 1, .prefix = "" };
        n = proto_watch_encode(&w, buf, sizeof(buf));
        ck_assert_int_eq(proto_watch_decode(buf, (size_t)n, &wd), -EINVAL);
        w = (struct proto_watch){ .prefix = "bad prefix" };
        n = proto_watch_encode(&w, buf, sizeof(buf));
        ck_assert_int_eq(proto_watch_decode(buf, (size_t)n, &wd), -EINVAL);
        w = (struct proto_watch){ .prefix = "/ok-for-a-prefix" };
        n = proto_watch_encode(&w, buf, sizeof(buf));
        ck_assert_int_eq(proto_watch_decode(buf, (size_t)n, &wd), 0);

        p = (struct proto_publish){ .size = 1, .mode = 01000, .name = "n" };
        n = proto_publish_encode(&p, buf, sizeof(buf));
        ck_assert_int_eq(proto_publish_decode(buf, (size_t)n, &pd), -EINVAL);
        p = (struct proto_publish){ .size = 1, .name = "" };
        n = proto_publish_encode(&p, buf, sizeof(buf));
        ck_assert_int_eq(proto_publish_decode(buf, (size_t)n, &pd), -EINVAL);

        o = (struct proto_openv){ .timeout_ms = 5, .name = "n" }; /* timeout without WAIT */
        n = proto_openv_encode(&o, buf, sizeof(buf));
        ck_assert_int_eq(proto_openv_decode(buf, (size_t)n, &od), -EINVAL);

        e.id = 0;
        n = proto_event_encode(&e, buf, sizeof(buf));
        ck_assert_int_eq(proto_event_decode(buf, (size_t)n, &ed), -EINVAL);
        e = (struct proto_event){ .id = 1, .generation = 0, .name = "n" };
        n = proto_event_encode(&e, buf, sizeof(buf));
        ck_assert_int_eq(proto_event_decode(buf, (size_t)n, &ed), -EINVAL);
        e = (struct proto_event){ .id = 1, .generation = 1, .mode = 01000, .name = "n" };
        n = proto_event_encode(&e, buf, sizeof(buf));
        ck_assert_int_eq(proto_event_decode(buf, (size_t)n, &ed), -EINVAL);
        e = (struct proto_event){ .id = 1, .generation = 1, .name = "" };
        n = proto_event_encode(&e, buf, sizeof(buf));
        ck_assert_int_eq(proto_event_decode(buf, (size_t)n, &ed), -EINVAL);

        pr.reserved = 1;
        n = proto_publish_reply_encode(&pr, buf, sizeof(buf));
        ck_assert_int_eq(proto_publish_reply_decode(buf, (size_t)n, &prd), -EINVAL);
        pr = (struct proto_publish_reply){ .id = 1, .generation = 0 };
        n = proto_publish_reply_encode(&pr, buf, sizeof(buf));
        ck_assert_int_eq(proto_publish_reply_decode(buf, (size_t)n, &prd), -EINVAL);

        ri.generation = 0;
        n = proto_region_infov_encode(&ri, buf, sizeof(buf));
        ck_assert_int_eq(proto_region_infov_decode(buf, (size_t)n, &rid), -EINVAL);
        ri = (struct proto_region_infov){ .info = { .backend = 9 }, .generation = 1 };
        n = proto_region_infov_encode(&ri, buf, sizeof(buf));
        ck_assert_int_eq(proto_region_infov_decode(buf, (size_t)n, &rid), -EINVAL);
        sr.generation = 0;
        n = proto_stat_replyv_encode(&sr, buf, sizeof(buf));
        ck_assert_int_eq(proto_stat_replyv_decode(buf, (size_t)n, &srd), -EINVAL);

        wr.watch_id = 0;
        n = proto_watch_reply_encode(&wr, buf, sizeof(buf));
        ck_assert_int_eq(proto_watch_reply_decode(buf, (size_t)n, &wrd), -EINVAL);
        u.reserved = 2;
        n = proto_unwatch_encode(&u, buf, sizeof(buf));
        ck_assert_int_eq(proto_unwatch_decode(buf, (size_t)n, &ud), -EINVAL);
        u = (struct proto_unwatch){ .watch_id = 0 };
        n = proto_unwatch_encode(&u, buf, sizeof(buf));
        ck_assert_int_eq(proto_unwatch_decode(buf, (size_t)n, &ud), -EINVAL);
}
END_TEST

/* Names: requests of the feature are named, events are named apart and only events are in the event band. */
START_TEST(test_event_names)
{
        static const uint16_t requests[] = { PROTO_OP_WATCH, PROTO_OP_UNWATCH, PROTO_OP_PUBLISH, PROTO_OP_OPENV,
                                             PROTO_OP_STATV };

        for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
                ck_assert_ptr_nonnull(proto_opcode_name(requests[i]));
                ck_assert(!proto_opcode_is_event(requests[i]));
                ck_assert_ptr_null(proto_event_name(requests[i]));
        }
        for (uint16_t op = PROTO_EV_FIRST; op <= PROTO_EV_LAST; op++) {
                ck_assert_ptr_nonnull(proto_event_name(op));
                ck_assert(proto_opcode_is_event(op));
                ck_assert_ptr_null(proto_opcode_name(op));
        }
        ck_assert_str_eq(proto_event_name(PROTO_EV_PUBLISHED), "published");
        ck_assert_ptr_null(proto_event_name(PROTO_OP_EVENT_FIRST));
        ck_assert_ptr_null(proto_event_name(PROTO_OP_EVENT_LAST));
        ck_assert(proto_opcode_is_event(PROTO_OP_EVENT_LAST));
        ck_assert(!proto_opcode_is_event(PROTO_OP_REGISTER_LAST));
        ck_assert(!proto_opcode_is_event(PROTO_OP_WATCH_FIRST));
}
END_TEST

static Suite *proto_suite(void)
{
        Suite *s = suite_create("proto");
        TCase *tc;

        tc = tcase_create("header");
        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_add_test(tc, test_header_layout);
        tcase_add_test(tc, test_header_f1_short);
        tcase_add_test(tc, test_payload_f1_empty);
        tcase_add_test(tc, test_header_f2_length_max);
        tcase_add_test(tc, test_header_f3_wrap_and_nfds);
        tcase_add_test(tc, test_header_f5_magic);
        tcase_add_test(tc, test_header_f5_version);
        tcase_add_test(tc, test_header_f5_flags_reserved);
        tcase_add_test(tc, test_opcode_names);
        tcase_add_test(tc, test_event_names);
        suite_add_tcase(s, tc);

        tc = tcase_create("messages");
        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_add_test(tc, test_codec_roundtrip_canonical);
        tcase_add_test(tc, test_codec_every_payload_truncation);
        tcase_add_test(tc, test_codec_every_frame_truncation);
        tcase_add_test(tc, test_codec_trailing_garbage);
        tcase_add_test(tc, test_codec_mutations);
        tcase_add_test(tc, test_roundtrip_error);
        tcase_add_test(tc, test_error_code_range);
        tcase_add_test(tc, test_error_message_max);
        tcase_add_test(tc, test_roundtrip_hello);
        tcase_add_test(tc, test_hello_bad_values);
        tcase_add_test(tc, test_hello_events_flag);
        tcase_add_test(tc, test_event_layout);
        tcase_add_test(tc, test_events_bad_values);
        tcase_add_test(tc, test_version_string_max);
        tcase_add_test(tc, test_roundtrip_ping_status);
        tcase_add_test(tc, test_roundtrip_create);
        tcase_add_test(tc, test_create_bad_values);
        tcase_add_test(tc, test_refusal_words);
        tcase_add_test(tc, test_roundtrip_region_info);
        tcase_add_test(tc, test_roundtrip_open);
        tcase_add_test(tc, test_roundtrip_resize_seal);
        tcase_add_test(tc, test_roundtrip_stat);
        tcase_add_test(tc, test_roundtrip_list_request);
        tcase_add_test(tc, test_doc_example_bytes);
        tcase_add_test(tc, test_access_messages);
        suite_add_tcase(s, tc);

        tc = tcase_create("names");
        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_add_test(tc, test_f6_string_nul);
        tcase_add_test(tc, test_f6_empty_name);
        tcase_add_test(tc, test_f6_name_too_long);
        tcase_add_test(tc, test_f6_name_charset);
        tcase_add_test(tc, test_f6_name_rules);
        suite_add_tcase(s, tc);

        tc = tcase_create("list");
        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_add_test(tc, test_list_writer_fill_and_walk);
        tcase_add_test(tc, test_list_writer_tiny_buffer);
        tcase_add_test(tc, test_list_reply_bad_shapes);
        tcase_add_test(tc, test_list_entry_next_offsets);
        suite_add_tcase(s, tc);

        tc = tcase_create("metrics");
        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_add_test(tc, test_metrics_writer_fill_and_decode);
        tcase_add_test(tc, test_metrics_tiny_buffer);
        tcase_add_test(tc, test_metrics_reply_bad_shapes);
        tcase_add_test(tc, test_metric_info);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return test_run_suite(proto_suite());
}
