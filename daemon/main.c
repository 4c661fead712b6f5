/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* main: iomemd's entry point: configuration, logging, the event loop. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "keeper.h"
#include "log.h"
#include "server.h"

/*
 * Put /dev/null on whichever of fds 0-2 are closed (a shell's `<&- >&- 2>&-`,
 * a careless init): otherwise the first fds the daemon makes (its socket, a
 * region's memfd) take those numbers, and a log line to stderr lands in a
 * region. They are the only fds made without CLOEXEC: stdio is inherited on
 * purpose (a keeper exec'd from the daemon logs to the same place).
 * Return: 0, or negative errno if /dev/null cannot be opened.
 */
static int main_open_stdio(void)
{
        for (int fd = 0; fd <= 2; fd++) {
                int nfd;

                if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
                        continue;
                nfd = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY); /* the lowest free number: @fd */
                if (nfd < 0)
                        return -errno;
                if (nfd != fd) {
                        close(nfd);
                        return -EBADF;
                }
        }
        return 0;
}

int main(int argc, char **argv)
{
        struct config config;
        int r;

        if (main_open_stdio() < 0)
                return EXIT_FAILURE; /* nowhere to say why: stderr is one of those closed */
        if (argc == 3 && argv[1] && !strcmp(argv[1], KEEPER_ARG))
                return keeper_exec_main(argc, argv) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        log_init();
        /*
         * Each connection mallocs about 64 KiB of buffers from the top of the
         * heap; by default glibc gives the top back (brk) as soon as more than
         * 128 KiB is free there, so every short connection paid brk twice and
         * page faults on fresh memory. Keep up to 4 MiB at the top instead.
         */
        mallopt(M_TRIM_THRESHOLD, 4 << 20);
        mallopt(M_TOP_PAD, 1 << 20);
        keepers_set_exec("/proc/self/exe");
        config_init(&config);
        r = config_parse(&config, argc, argv);
        if (r != 0) {
                /* 2: a usage error; with --check-config, 1: the configuration is invalid (or the check failed) */
                int status = r > 0 ? EXIT_SUCCESS : config.check && r != -EINVAL ? EXIT_FAILURE : 2;

                config_deinit(&config);
                return status;
        }
        log_set_level(config.log_level);
        r = server_run(&config);
        config_deinit(&config);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
