/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-parse: common/parse.c (sizes, modes, seal names), common/paths.c (the default socket rule) and common/quote.c
 * (bytes as a terminal shows them). */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "parse.h"
#include "quote.h"
#include "paths.h"
#include "proto.h"
#include "testutil.h"

START_TEST(test_size)
{
        static const struct {
                const char *text;
                int r;
                uint64_t v;
        } cases[] = {
                { "0", 0, 0 },
                { "4096", 0, 4096 },
                { "4K", 0, 4096 },
                { "4k", 0, 4096 },
                { "4KiB", 0, 4096 },
                { "4KB", 0, 4096 },
                { "3M", 0, 3u << 20 },
                { "64G", 0, UINT64_C(64) << 30 },
                { "2T", 0, UINT64_C(2) << 40 },
                { "16777215T", 0, UINT64_C(16777215) << 40 },
                { "16777216T", -ERANGE, 0 },
                { "18446744073709551615", 0, UINT64_MAX },
                { "18446744073709551616", -ERANGE, 0 },
                { "", -EINVAL, 0 },
                { " 4K", -EINVAL, 0 },
                { "+4K", -EINVAL, 0 },
                { "-1", -EINVAL, 0 },
                { "4X", -EINVAL, 0 },
                { "4Kx", -EINVAL, 0 },
                { "4 K", -EINVAL, 0 },
                { "K", -EINVAL, 0 },
                { "4iB", -EINVAL, 0 },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                uint64_t v = 12345;
                int r = parse_size(cases[i].text, &v);

                ck_assert_msg(r == cases[i].r, "'%s': %d", cases[i].text, r);
                ck_assert_msg(v == (r == 0 ? cases[i].v : 12345), "'%s': %llu", cases[i].text,
                              (unsigned long long)v);
        }
        ck_assert_int_eq(parse_size(NULL, &(uint64_t){ 0 }), -EINVAL);
}
END_TEST

/* Every byte: printable ASCII as itself, every other byte (controls, DEL, >= 0x80) as \xHH; names stay as they are. */
START_TEST(test_quote_byte)
{
        char q[QUOTE_BYTE_MAX], want[QUOTE_BYTE_MAX];
        const char *name = "Az09._-/:@+=,";

        for (unsigned ch = 1; ch < 256; ch++) {
                size_t n = quote_byte(q, (unsigned char)ch);

                if (ch >= 0x20 && ch < 0x7f)
                        snprintf(want, sizeof(want), "%c", (char)ch);
                else
                        snprintf(want, sizeof(want), "\\x%02x", ch);
                ck_assert_str_eq(q, want);
                ck_assert_uint_eq(n, strlen(want));
        }
        for (const char *p = name; *p; p++) {
                ck_assert_uint_eq(quote_byte(q, (unsigned char)*p), 1);
                ck_assert_int_eq(q[0], *p);
        }
        quote_byte(q, 0x1b);
        ck_assert_str_eq(q, "\\x1b");
        quote_byte(q, 0x9b);
        ck_assert_str_eq(q, "\\x9b");
}
END_TEST

START_TEST(test_size_format)
{
        char buf[32];
        uint64_t v;

        ck_assert_str_eq(parse_size_format(0, buf, sizeof(buf)), "0");
        ck_assert_str_eq(parse_size_format(1000, buf, sizeof(buf)), "1000");
        ck_assert_str_eq(parse_size_format(4096, buf, sizeof(buf)), "4K");
        ck_assert_str_eq(parse_size_format(UINT64_C(64) << 30, buf, sizeof(buf)), "64G");
        ck_assert_str_eq(parse_size_format(UINT64_C(100) << 40, buf, sizeof(buf)), "100T");
        ck_assert_str_eq(parse_size_format(UINT64_C(1) << 50, buf, sizeof(buf)), "1024T");
        ck_assert_str_eq(parse_size_format((UINT64_C(1) << 20) + 1024, buf, sizeof(buf)), "1025K");
        /* what it prints, parse_size() reads back */
        for (uint64_t x = 1; x < (UINT64_C(1) << 60); x = x * 3 + 1024) {
                ck_assert_int_eq(parse_size(parse_size_format(x, buf, sizeof(buf)), &v), 0);
                ck_assert_uint_eq(v, x);
        }
}
END_TEST

START_TEST(test_mode)
{
        uint32_t m = 1;

        ck_assert_int_eq(parse_mode("0640", &m), 0);
        ck_assert_uint_eq(m, 0640);
        ck_assert_int_eq(parse_mode("0", &m), 0);
        ck_assert_uint_eq(m, 0);
        ck_assert_int_eq(parse_mode("777", &m), 0);
        ck_assert_uint_eq(m, 0777);
        m = 5;
        ck_assert_int_eq(parse_mode("1000", &m), -EINVAL);
        ck_assert_int_eq(parse_mode("0999", &m), -EINVAL);
        ck_assert_int_eq(parse_mode("8", &m), -EINVAL);
        ck_assert_int_eq(parse_mode("-1", &m), -EINVAL);
        ck_assert_int_eq(parse_mode("+1", &m), -EINVAL);
        ck_assert_int_eq(parse_mode(" 1", &m), -EINVAL);
        ck_assert_int_eq(parse_mode("", &m), -EINVAL);
        ck_assert_int_eq(parse_mode("06x", &m), -EINVAL);
        ck_assert_int_eq(parse_mode(NULL, &m), -EINVAL);
        ck_assert_uint_eq(m, 5);
}
END_TEST

START_TEST(test_seals)
{
        uint32_t s = 77;

        ck_assert_int_eq(parse_seals("seal,shrink,grow,write,future-write", &s), 0);
        ck_assert_uint_eq(s, PROTO_SEALS_KNOWN);
        ck_assert_int_eq(parse_seals(" Grow  SHRINK\t", &s), 0);
        ck_assert_uint_eq(s, PROTO_SEAL_GROW | PROTO_SEAL_SHRINK);
        ck_assert_int_eq(parse_seals("future_write", &s), 0);
        ck_assert_uint_eq(s, PROTO_SEAL_FUTURE_WRITE);
        ck_assert_int_eq(parse_seals("", &s), 0);
        ck_assert_uint_eq(s, 0);
        s = 77;
        ck_assert_int_eq(parse_seals("grow,glue", &s), -EINVAL);
        ck_assert_int_eq(parse_seals("grows", &s), -EINVAL);
        ck_assert_int_eq(parse_seals(NULL, &s), -EINVAL);
        ck_assert_uint_eq(s, 77);
        /* each known bit has one printed name, the one parse_seals() reads */
        for (uint32_t bit = 1; bit <= PROTO_SEAL_FUTURE_WRITE; bit <<= 1) {
                ck_assert_ptr_nonnull(parse_seal_name(bit));
                ck_assert_int_eq(parse_seals(parse_seal_name(bit), &s), 0);
                ck_assert_uint_eq(s, bit);
        }
        ck_assert_str_eq(parse_seal_name(PROTO_SEAL_FUTURE_WRITE), "future-write");
        ck_assert_ptr_null(parse_seal_name(0x20));
}
END_TEST

/* A bound Unix socket at @path, as a per-user daemon leaves it. Return: its fd. */
static int bind_socket(const char *path) /* shorter than sun_path */
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        ck_assert_uint_lt(strlen(path), sizeof(sa.sun_path));
        memcpy(sa.sun_path, path, strlen(path) + 1);
        ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        return fd;
}

START_TEST(test_paths)
{
        char dir[] = "/tmp/iomem-paths.XXXXXX", sock[64], buf[256];
        enum paths_source src = 0;
        int fd;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/%s", dir, PATHS_USER_SOCKET_NAME);
        unsetenv("IOMEM_SOCKET");
        setenv("XDG_RUNTIME_DIR", dir, 1);

        /* clients: no per-user socket yet -> the system service, whatever the uid */
        ck_assert_int_gt(paths_client_socket(buf, sizeof(buf), &src), 0);
        ck_assert_str_eq(buf, PATHS_SYSTEM_SOCKET);
        ck_assert_int_eq(src, PATHS_FROM_SYSTEM);
        fd = bind_socket(sock);
        ck_assert_int_gt(paths_client_socket(buf, sizeof(buf), &src), 0);
        ck_assert_str_eq(buf, sock);
        ck_assert_int_eq(src, PATHS_FROM_USER);
        setenv("IOMEM_SOCKET", "/x.sock", 1);
        ck_assert_int_eq(paths_client_socket(buf, sizeof(buf), &src), 7);
        ck_assert_str_eq(buf, "/x.sock");
        ck_assert_int_eq(src, PATHS_FROM_ENV);
        ck_assert_int_eq(paths_client_socket(buf, 7, &src), -ENAMETOOLONG);
        setenv("IOMEM_SOCKET", "", 1); /* empty = unset */
        ck_assert_int_gt(paths_client_socket(buf, sizeof(buf), NULL), 0);
        ck_assert_str_eq(buf, sock);

        /* the daemon: root binds the system path, others their per-user path, $IOMEM_SOCKET wins */
        ck_assert_int_gt(paths_daemon_socket(buf, sizeof(buf), true, &src), 0);
        ck_assert_str_eq(buf, PATHS_SYSTEM_SOCKET);
        ck_assert_int_gt(paths_daemon_socket(buf, sizeof(buf), false, &src), 0);
        ck_assert_str_eq(buf, sock);
        ck_assert_int_eq(src, PATHS_FROM_USER);
        unsetenv("XDG_RUNTIME_DIR");
        ck_assert_int_eq(paths_daemon_socket(buf, sizeof(buf), false, &src), -ENOENT);
        setenv("IOMEM_SOCKET", "/y.sock", 1);
        ck_assert_int_gt(paths_daemon_socket(buf, sizeof(buf), false, &src), 0);
        ck_assert_str_eq(buf, "/y.sock");
        unsetenv("IOMEM_SOCKET");
        ck_assert_str_eq(paths_source_name(PATHS_FROM_ENV), "$IOMEM_SOCKET");

        close(fd);
        unlink(sock);
        rmdir(dir);
}
END_TEST

static Suite *parse_suite(void)
{
        Suite *s = suite_create("parse");
        TCase *tc = tcase_create("parse");

        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_add_test(tc, test_size);
        tcase_add_test(tc, test_size_format);
        tcase_add_test(tc, test_mode);
        tcase_add_test(tc, test_seals);
        tcase_add_test(tc, test_paths);
        tcase_add_test(tc, test_quote_byte);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return test_run_suite(parse_suite());
}
