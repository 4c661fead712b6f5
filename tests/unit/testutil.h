/* testutil: helpers shared by the Check suites (fd-leak checks, temp dirs). */
#pragma once

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Return: the number of open fds of this process, or -1. */
static inline int test_fd_count(void)
{
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        int n = 0;

        if (!d)
                return -1;
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n - 1; /* the DIR's own fd */
}

/*
 * Every test checks that it leaked no fd: add these as a checked fixture
 * (tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown)).
 */
static int test_fd_baseline = -1;

static inline void test_fd_setup(void)
{
        test_fd_baseline = test_fd_count();
}

static inline void test_fd_teardown(void)
{
        int now = test_fd_count();

        ck_assert_msg(now == test_fd_baseline, "fd leak: %d open before the test, %d after", test_fd_baseline,
                      now);
}

/* Run a suite; Return: exit status for main(). */
static inline int test_run_suite(Suite *s)
{
        SRunner *sr = srunner_create(s);
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
