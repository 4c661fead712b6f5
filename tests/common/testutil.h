/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* testutil: helpers shared by the Check suites (the fd-leak fixture, running a suite). */
#pragma once

#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fdutil.h"

/*
 * Every test checks that it leaked no fd: add these as a checked fixture
 * (tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown)). Setup
 * takes the count; teardown fails the test if it changed.
 */
void test_fd_setup(void);
void test_fd_teardown(void);

/* Return: true if @a and @b are fds of the same file (device and inode); a failed fstat fails the test. */
bool test_same_file(int a, int b);

/* Run a suite. Return: the exit status for main(). */
int test_run_suite(Suite *s);
