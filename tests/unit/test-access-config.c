/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-access-config: the configuration file, quota overrides, the allow-list and reloading (config.c). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "config.h"
#include "testutil.h"

static char path_[64];

/* getline() is wrapped (-Wl,--wrap=getline,--wrap=__getdelim, tests/CMakeLists.txt: with optimization glibc's
 * stdio.h inlines getline() as __getdelim()): its @getline_fail_at_-th call fails with ENOMEM */
ssize_t __real_getline(char **line, size_t *size, FILE *f);
ssize_t __wrap_getline(char **line, size_t *size, FILE *f);
ssize_t __real___getdelim(char **line, size_t *size, int delim, FILE *f);
ssize_t __wrap___getdelim(char **line, size_t *size, int delim, FILE *f);
static unsigned getline_calls_, getline_fail_at_;

static bool getline_fails(void)
{
        if (getline_fail_at_ && ++getline_calls_ == getline_fail_at_) {
                errno = ENOMEM;
                return true;
        }
        return false;
}

ssize_t __wrap_getline(char **line, size_t *size, FILE *f)
{
        return getline_fails() ? -1 : __real_getline(line, size, f);
}

ssize_t __wrap___getdelim(char **line, size_t *size, int delim, FILE *f)
{
        return getline_fails() ? -1 : __real___getdelim(line, size, delim, f);
}

static void write_conf(const char *text)
{
        FILE *f = fopen(path_, "w");

        ck_assert_ptr_nonnull(f);
        ck_assert_int_ge(fputs(text, f), 0);
        ck_assert_int_eq(fclose(f), 0);
}

static void setup(void)
{
        int fd;

        test_fd_setup();
        snprintf(path_, sizeof(path_), "/tmp/test-access-config.XXXXXX");
        fd = mkstemp(path_);
        ck_assert_int_ge(fd, 0);
        close(fd);
}

static void teardown(void)
{
        unlink(path_);
        test_fd_teardown();
}

/* Return: config_load_file() on @text into a fresh config @c (caller deinits). */
static int load(struct config *c, const char *text, char *err, size_t errsize)
{
        config_init(c);
        write_conf(text);
        return config_load_file(c, path_, err, errsize);
}

START_TEST(test_file_settings)
{
        struct config c;
        struct config_quota q;
        char err[256] = "";

        ck_assert_int_eq(load(&c,
                              "# comment\n"
                              "  max-region-size = 1G   # trailing comment\n"
                              "default-mode=0640\n"
                              "\n"
                              "quota-bytes = 2G\n"
                              "quota-regions = 100\n"
                              "quota-connections = 8\n"
                              "quota-fds = 64\n"
                              "allow-uids = 1000, 1001,1002\n"
                              "allow-gids = 50\n"
                              "[gid 50]\n"
                              "quota-regions = 5\n"
                              "quota-fds = 1\n"
                              "[uid 1001]\n"
                              "quota-regions = 7\n"
                              "[ gid 60 ]\n"
                              "[uid 1002]\n"
                              "quota-bytes = 0\n",
                              err, sizeof(err)),
                         0);
        ck_assert_uint_eq(c.max_region_size, UINT64_C(1) << 30);
        ck_assert_uint_eq(c.default_mode, 0640);
        ck_assert_uint_eq(c.quota.bytes, UINT64_C(2) << 30);
        ck_assert(c.allow_list);
        ck_assert_uint_eq(c.nallow_uids, 3);
        ck_assert_uint_eq(c.allow_uids[2], 1002);

        /* defaults */
        config_quota_for(&c, 5, 5, &q);
        ck_assert_uint_eq(q.regions, 100);
        ck_assert_uint_eq(q.connections, 8);
        ck_assert_uint_eq(q.fds, 64);
        /* a [gid] section for the primary group */
        config_quota_for(&c, 5, 50, &q);
        ck_assert_uint_eq(q.regions, 5);
        ck_assert_uint_eq(q.fds, 1);
        ck_assert_uint_eq(q.connections, 8);
        /* a [uid] section wins over the group, field by field */
        config_quota_for(&c, 1001, 50, &q);
        ck_assert_uint_eq(q.regions, 7);
        ck_assert_uint_eq(q.fds, 1);
        /* an explicit 0 means unlimited, not "unset" */
        config_quota_for(&c, 1002, 5, &q);
        ck_assert_uint_eq(q.bytes, 0);
        ck_assert_uint_eq(q.regions, 100);
        config_deinit(&c);
}
END_TEST

#define X16 "xxxxxxxxxxxxxxxx"
#define X64 X16 X16 X16 X16
#define X300 X64 X64 X64 X64 X16 X16 "xxxxxxxxxxxx"

/* Each malformed line is refused with its line number. */
START_TEST(test_file_errors)
{
        static const struct {
                const char *text;
                const char *err;
        } bad[] = {
                { "max-regions = 0\n", ":1:" },
                { "\nnope = 1\n", ":2: nope: unknown key (iomemd.conf(5) lists the keys)" },
                { "quota-bytes\n", ":1: quota-bytes: expected key = value" },
                { "quota-regions = -1\n", ":1:" },
                { "quota-regions = 12abc\n", ":1:" },
                { "default-mode = 0800\n", ":1:" },
                { "default-mode = 01777\n", ":1:" },
                { "allow-uids = 1,,2\n", ":1:" },
                { "allow-uids = 4294967295\n", ":1:" },
                { "[uid]\n", ":1:" },
                { "[uid x]\n", ":1:" },
                { "[user 5]\n", ":1:" },
                { "[uid 5\n", ":1:" },
                { "[uid 5]\nmax-regions = 3\n", ":2:" },
                /* the reason names all five keys a section takes (it left quota-watches out) */
                { "[gid 5]\nmax-regions = 3\n",
                  ":2: max-regions: only quota-bytes, quota-regions, quota-connections, quota-fds and quota-watches "
                  "belong in a [uid]/[gid] section" },
                { "socket = /tmp/x\n", ":1: socket: only on the command line" },
                { "backend = tape\n", ":1: backend = 'tape': expected auto, memfd, shm or file" },
                /* the key and the value refused are named (the line alone said "expected a positive size") */
                { "max-region-size = 4Q\n", ":1: max-region-size = '4Q': expected a positive size like 1G" },
                { "[uid 5]\nquota-bytes = lots\n", ":2: quota-bytes = 'lots':" },
                /* a long value is cut, so that the reason still fits; control and non-ASCII bytes are shown as
                 * \xHH, not sent to the terminal or the journal */
                { "max-region-size = " X300 "\n",
                  ":1: max-region-size = '" X64 "...': expected a positive size like 1G" },
                { X300 " = 1\n", ":1: " X64 "...: unknown key (iomemd.conf(5) lists the keys)" },
                { "max-region-size = \x1b[2J\xff evil\r\n",
                  ":1: max-region-size = '\\x1b[2J\\xff evil': expected a positive size like 1G" },
                { "\x1b]0;title\x07\n", ":1: \\x1b]0;title\\x07: expected key = value" },
                { "allowed-backends = auto\n", ":1:" },
                { "allowed-backends = memfd,,shm\n", ":1:" },
                { "allowed-backends =\n", ":1:" },
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct config c;
                char err[256] = "";

                ck_assert_msg(load(&c, bad[i].text, err, sizeof(err)) == -EINVAL, "accepted: %s", bad[i].text);
                ck_assert_msg(strstr(err, bad[i].err), "'%s': error '%s' lacks '%s'", bad[i].text, err, bad[i].err);
                config_deinit(&c);
        }
}
END_TEST

START_TEST(test_file_missing)
{
        struct config c;
        char err[256] = "";

        config_init(&c);
        ck_assert_int_eq(config_load_file(&c, "/nonexistent/iomemd.conf", err, sizeof(err)), -ENOENT);
        /* says what the path is: "iomemd: /x: No such file or directory" did not */
        ck_assert_str_eq(err, "cannot read the configuration file /nonexistent/iomemd.conf: No such file or directory");
        /* a directory opens, and its read fails: that says why (it said "/: read error") */
        ck_assert_int_eq(config_load_file(&c, "/", err, sizeof(err)), -EISDIR);
        ck_assert_str_eq(err, "cannot read the configuration file /: Is a directory");
        config_deinit(&c);
}
END_TEST

/* getline() out of memory partway through: an error, not a file loaded without its last lines */
START_TEST(test_file_getline_enomem)
{
        struct config c;
        struct config_quota q;
        char err[256] = "", want[256];

        getline_calls_ = 0;
        getline_fail_at_ = 2;
        ck_assert_int_eq(load(&c, "quota-regions = 3\nquota-fds = 4\n", err, sizeof(err)), -ENOMEM);
        getline_fail_at_ = 0;
        snprintf(want, sizeof(want), "%s:2: out of memory", path_);
        ck_assert_str_eq(err, want);
        config_deinit(&c);
        /* the same file without the failure loads both lines */
        ck_assert_int_eq(load(&c, "quota-regions = 3\nquota-fds = 4\n", err, sizeof(err)), 0);
        config_quota_for(&c, 1, 1, &q);
        ck_assert_uint_eq(q.fds, 4);
        config_deinit(&c);
}
END_TEST

/* The command line wins over the file; --config names it; a bad reload keeps everything. */
START_TEST(test_parse_and_reload)
{
        char *argv[] = { "iomemd", "--config", path_, "--socket", "/tmp/x.sock", "--quota-regions", "9", NULL };
        struct config c;
        struct config_quota q;

        write_conf("quota-regions = 3\nquota-fds = 4\n[uid 7]\nquota-fds = 5\n");
        config_init(&c);
        ck_assert_int_eq(config_parse(&c, 7, argv), 0);
        ck_assert_str_eq(c.config_file, path_);
        config_quota_for(&c, 1, 1, &q);
        ck_assert_uint_eq(q.regions, 9);
        ck_assert_uint_eq(q.fds, 4);

        write_conf("quota-fds = 6\n");
        ck_assert_int_eq(config_reload(&c), 0);
        ck_assert_str_eq(c.socket_path, "/tmp/x.sock");
        config_quota_for(&c, 7, 1, &q);
        ck_assert_uint_eq(q.fds, 6); /* the [uid 7] section went away with the old file */
        ck_assert_uint_eq(q.regions, 9);

        write_conf("quota-fds = many\n");
        ck_assert_int_lt(config_reload(&c), 0);
        config_quota_for(&c, 7, 1, &q);
        ck_assert_uint_eq(q.fds, 6);
        /* the default backend must be one of the allowed ones */
        write_conf("backend = shm\nallowed-backends = memfd\n");
        ck_assert_int_lt(config_reload(&c), 0);
        ck_assert_uint_eq(c.allowed_backends, CONFIG_ALL_BACKENDS);
        ck_assert_str_eq(c.socket_path, "/tmp/x.sock");
        config_deinit(&c);
}
END_TEST

START_TEST(test_allow_list)
{
        gid_t supp[] = { 70 };
        struct config c;
        char err[256] = "";

        config_init(&c);
        ck_assert(config_allows(&c, 1234, 1234, NULL, 0)); /* no list: everyone */
        config_deinit(&c);
        ck_assert_int_eq(load(&c, "allow-uids = 1000\nallow-gids = 60, 70\n", err, sizeof(err)), 0);
        ck_assert(config_allows(&c, 1000, 5, NULL, 0));
        ck_assert(config_allows(&c, 2000, 60, NULL, 0));
        ck_assert(config_allows(&c, 2000, 5, supp, 1));
        ck_assert(!config_allows(&c, 2000, 5, NULL, 0));
        ck_assert(config_allows(&c, 0, 0, NULL, 0));
        ck_assert(config_allows(&c, geteuid(), 5, NULL, 0));
        config_deinit(&c);
}
END_TEST

/* allowed-backends: what a CREATE asking for each backend gets (issue 10, item 7). */
START_TEST(test_allowed_backends)
{
        struct config c;
        enum proto_backend b;
        char err[256] = "";

        config_init(&c);
        ck_assert_int_eq(config_backend_for(&c, PROTO_BACKEND_AUTO, &b), 0);
        ck_assert_int_eq(b, PROTO_BACKEND_AUTO); /* all allowed: memfd, then shm, then file */
        ck_assert_int_eq(config_backend_for(&c, PROTO_BACKEND_FILE, &b), 0);
        ck_assert_int_eq(b, PROTO_BACKEND_FILE);
        config_deinit(&c);

        ck_assert_int_eq(load(&c, "allowed-backends = memfd\n", err, sizeof(err)), 0);
        ck_assert_int_eq(config_backend_for(&c, PROTO_BACKEND_SHM, &b), -EPERM);
        ck_assert_int_eq(config_backend_for(&c, PROTO_BACKEND_FILE, &b), -EPERM);
        ck_assert_int_eq(config_backend_for(&c, PROTO_BACKEND_MEMFD, &b), 0);
        ck_assert_int_eq(config_backend_for(&c, PROTO_BACKEND_AUTO, &b), 0);
        ck_assert_int_eq(b, PROTO_BACKEND_MEMFD);
        config_deinit(&c);

        ck_assert_int_eq(load(&c, "allowed-backends = file, shm\n", err, sizeof(err)), 0);
        ck_assert_int_eq(config_backend_for(&c, PROTO_BACKEND_AUTO, &b), 0);
        ck_assert_int_eq(b, PROTO_BACKEND_SHM);
        ck_assert_int_eq(config_backend_for(&c, PROTO_BACKEND_MEMFD, &b), -EPERM);
        config_deinit(&c);
}
END_TEST

static Suite *config_suite(void)
{
        Suite *s = suite_create("access-config");
        TCase *tc = tcase_create("config");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_file_settings);
        tcase_add_test(tc, test_file_errors);
        tcase_add_test(tc, test_file_missing);
        tcase_add_test(tc, test_file_getline_enomem);
        tcase_add_test(tc, test_parse_and_reload);
        tcase_add_test(tc, test_allow_list);
        tcase_add_test(tc, test_allowed_backends);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return test_run_suite(config_suite());
}
