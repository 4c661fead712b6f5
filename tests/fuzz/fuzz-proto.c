/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fuzz-proto: libFuzzer target for the frame decoder (proto_header_decode, every payload decoder, the transport's framing). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto.h"
#include "transport.h"

#define FUZZ_CHECK(x)                                                                                               \
        do {                                                                                                        \
                if (!(x))                                                                                           \
                        abort();                                                                                    \
        } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A decoded METRICS reply: every entry readable, and writing them again gives the same bytes. */
static void fuzz_metrics_reply(const uint8_t *p, size_t n)
{
        static uint8_t out[PROTO_MAX_PAYLOAD];
        struct proto_metrics_writer w;
        struct proto_metrics_reply mr;
        struct proto_metric_entry e;
        const struct proto_metric_info *info;
        int len;

        if (n > sizeof(out) || proto_metrics_reply_decode(p, n, &mr) != 0)
                return;
        FUZZ_CHECK(mr.version == PROTO_METRICS_VERSION && (mr.flags & ~PROTO_METRICS_FLAGS_KNOWN) == 0);
        proto_metrics_writer_init(&w, out, n); /* exactly the room the entries take */
        for (uint32_t i = 0; i < mr.count; i++) {
                proto_metrics_entry_get(&mr, i, &e);
                FUZZ_CHECK(e.reserved == 0);
                info = proto_metric_info(e.metric);
                FUZZ_CHECK(!info || (info->metric == e.metric && info->name && info->help));
                FUZZ_CHECK(proto_metrics_writer_add(&w, &e) == 0);
        }
        len = proto_metrics_writer_finish(&w, mr.flags);
        FUZZ_CHECK(len >= 0 && (size_t)len == n && memcmp(out, p, n) == 0);
}

/* Every decoder on the same bytes; a successful decode must re-encode to a payload that decodes again. */
static void fuzz_decoders(const uint8_t *p, size_t n)
{
        uint8_t out[PROTO_MAX_PAYLOAD];
        union {
                struct proto_error error;
                struct proto_hello hello;
                struct proto_hello_reply hello_reply;
                struct proto_ping ping;
                struct proto_status_reply status_reply;
                struct proto_create create;
                struct proto_region_info region_info;
                struct proto_open open;
                struct proto_resize resize;
                struct proto_resize_reply resize_reply;
                struct proto_seal seal;
                struct proto_seal_reply seal_reply;
                struct proto_name name;
                struct proto_stat_reply stat_reply;
                struct proto_list list;
                struct proto_chmod chmod;
                struct proto_chown chown;
                struct proto_quota_reply quota_reply;
                struct proto_register register_;
                struct proto_register_reply register_reply;
                struct proto_watch watch;
                struct proto_watch_reply watch_reply;
                struct proto_unwatch unwatch;
                struct proto_publish publish;
                struct proto_publish_reply publish_reply;
                struct proto_openv openv;
                struct proto_region_infov region_infov;
                struct proto_stat_replyv stat_replyv;
                struct proto_event event;
                struct proto_event_overflow event_overflow;
        } m, m2;
        struct proto_list_reply lr;
        struct proto_list_entry e;
        size_t off = 0;
        int len;

#define FUZZ_ROUND_TRIP(kind)                                                                                       \
        do {                                                                                                        \
                if (proto_##kind##_decode(p, n, &m.kind) == 0) {                                                    \
                        len = proto_##kind##_encode(&m.kind, out, sizeof(out));                                    \
                        FUZZ_CHECK(len >= 0);                                                                       \
                        FUZZ_CHECK(proto_##kind##_decode(out, (size_t)len, &m2.kind) == 0);                        \
                        FUZZ_CHECK((size_t)len == n && memcmp(out, p, n) == 0);                                     \
                }                                                                                                   \
        } while (0)

        FUZZ_ROUND_TRIP(error);
        FUZZ_ROUND_TRIP(hello);
        FUZZ_ROUND_TRIP(hello_reply);
        FUZZ_ROUND_TRIP(ping);
        FUZZ_ROUND_TRIP(status_reply);
        FUZZ_ROUND_TRIP(create);
        /* the refusal's words (the daemon's error reply) only for a CREATE its decoder refused with -EINVAL */
        FUZZ_CHECK(!proto_create_refusal(p, n) || proto_create_decode(p, n, &m.create) == -EINVAL);
        FUZZ_CHECK(!proto_refusal(PROTO_OP_CREATE, p, n) || proto_create_decode(p, n, &m.create) == -EINVAL);
        /* and so for every request proto_refusal() explains; none for those whose decoders refuse only the name */
        FUZZ_CHECK(!proto_refusal(PROTO_OP_OPEN, p, n) || proto_open_decode(p, n, &m.open) == -EINVAL);
        FUZZ_CHECK(!proto_refusal(PROTO_OP_OPENV, p, n) || proto_openv_decode(p, n, &m.openv) == -EINVAL);
        FUZZ_CHECK(!proto_refusal(PROTO_OP_SEAL, p, n) || proto_seal_decode(p, n, &m.seal) == -EINVAL);
        FUZZ_CHECK(!proto_refusal(PROTO_OP_CHMOD, p, n) || proto_chmod_decode(p, n, &m.chmod) == -EINVAL);
        FUZZ_CHECK(!proto_refusal(PROTO_OP_REGISTER, p, n) || proto_register_decode(p, n, &m.register_) == -EINVAL);
        FUZZ_CHECK(!proto_refusal(PROTO_OP_PUBLISH, p, n) || proto_publish_decode(p, n, &m.publish) == -EINVAL);
        FUZZ_CHECK(!proto_refusal(PROTO_OP_CHOWN, p, n) && !proto_refusal(PROTO_OP_STAT, p, n) &&
                   !proto_refusal(PROTO_OP_RESIZE, p, n));
        FUZZ_ROUND_TRIP(region_info);
        FUZZ_ROUND_TRIP(open);
        FUZZ_ROUND_TRIP(resize);
        FUZZ_ROUND_TRIP(resize_reply);
        FUZZ_ROUND_TRIP(seal);
        FUZZ_ROUND_TRIP(seal_reply);
        FUZZ_ROUND_TRIP(name);
        FUZZ_ROUND_TRIP(stat_reply);
        FUZZ_ROUND_TRIP(list);
        FUZZ_ROUND_TRIP(chmod);
        FUZZ_ROUND_TRIP(chown);
        FUZZ_ROUND_TRIP(quota_reply);
        FUZZ_ROUND_TRIP(register_reply);
        FUZZ_ROUND_TRIP(watch);
        FUZZ_ROUND_TRIP(watch_reply);
        FUZZ_ROUND_TRIP(unwatch);
        FUZZ_ROUND_TRIP(publish);
        FUZZ_ROUND_TRIP(publish_reply);
        FUZZ_ROUND_TRIP(openv);
        FUZZ_ROUND_TRIP(region_infov);
        FUZZ_ROUND_TRIP(stat_replyv);
        FUZZ_ROUND_TRIP(event);
        FUZZ_ROUND_TRIP(event_overflow);
        if (proto_register_decode(p, n, &m.register_) == 0) { /* "register" is a keyword: no macro */
                len = proto_register_encode(&m.register_, out, sizeof(out));
                FUZZ_CHECK(len >= 0);
                FUZZ_CHECK(proto_register_decode(out, (size_t)len, &m2.register_) == 0);
                FUZZ_CHECK((size_t)len == n && memcmp(out, p, n) == 0);
        }
#undef FUZZ_ROUND_TRIP

        fuzz_metrics_reply(p, n);
        if (proto_list_reply_decode(p, n, &lr) == 0) {
                uint32_t count = 0;
                int k;

                /* a decoded reply was checked entry by entry: walking it cannot fail */
                while ((k = proto_list_entry_next(&lr, &off, &e)) == 1) {
                        FUZZ_CHECK(proto_name_check(e.name, strlen(e.name)) == 0);
                        count++;
                }
                FUZZ_CHECK(k == 0 && count == lr.count);
        }
}

/* The input as a byte stream through a transport: every frame it yields must have a header that decodes. */
static void fuzz_transport(const uint8_t *data, size_t size)
{
        struct transport t;
        struct transport_frame f;
        int sv[2], r;
        size_t sent = 0;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
                abort();
        FUZZ_CHECK(transport_init(&t, sv[0], 0, 0) == 0);
        for (;;) {
                if (sent < size) {
                        ssize_t w = write(sv[1], data + sent, size - sent);

                        if (w > 0)
                                sent += (size_t)w;
                        if (sent == size)
                                shutdown(sv[1], SHUT_WR);
                } else if (size == 0) {
                        shutdown(sv[1], SHUT_WR);
                }
                r = transport_read(&t);
                if (r < 0 && r != -EAGAIN)
                        break;
                while ((r = transport_next_frame(&t, &f)) == 1) {
                        FUZZ_CHECK(f.hdr.length <= PROTO_MAX_PAYLOAD && f.nfds == f.hdr.nfds);
                        FUZZ_CHECK(f.hdr.length == 0 || f.payload);
                        transport_frame_deinit(&f);
                }
                if (r < 0 || t.eof)
                        break;
        }
        transport_deinit(&t);
        close(sv[0]);
        close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct proto_header h;
        int r;

        r = proto_header_decode(data, size, &h);
        if (r == 0) {
                uint8_t out[PROTO_HEADER_SIZE];

                FUZZ_CHECK(h.length <= PROTO_MAX_PAYLOAD && h.nfds <= PROTO_MAX_FDS);
                proto_header_encode(&h, out);
                FUZZ_CHECK(memcmp(out, data, PROTO_HEADER_SIZE) == 0);
                if (size - PROTO_HEADER_SIZE >= h.length)
                        fuzz_decoders(data + PROTO_HEADER_SIZE, h.length);
        }
        fuzz_decoders(data, size);
        if (size <= 4 * TRANSPORT_IN_SIZE)
                fuzz_transport(data, size);
        return 0;
}
