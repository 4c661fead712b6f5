/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* testutil: helpers shared by the Check suites (the fd-leak fixture, running a suite). */

#include "testutil.h"

#include <sys/stat.h>

/* the count test_fd_setup() took; Check runs each test's fixture in the test's own process */
static int test_fd_baseline = -1;

void test_fd_setup(void)
{
        test_fd_baseline = fdutil_count(0);
}

void test_fd_teardown(void)
{
        int now = fdutil_count(0);

        ck_assert_msg(now == test_fd_baseline, "fd leak: %d open before the test, %d after", test_fd_baseline,
                      now);
}

bool test_same_file(int a, int b)
{
        struct stat sa, sb;

        ck_assert_int_eq(fstat(a, &sa), 0);
        ck_assert_int_eq(fstat(b, &sb), 0);
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int test_run_suite(Suite *s)
{
        SRunner *sr = srunner_create(s);
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
