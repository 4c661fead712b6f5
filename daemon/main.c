/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* main: iomemd's entry point: configuration, logging, the event loop. */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "keeper.h"
#include "log.h"
#include "server.h"

int main(int argc, char **argv)
{
        struct config config;
        int r;

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
                config_deinit(&config);
                return r > 0 ? EXIT_SUCCESS : 2;
        }
        log_set_level(config.log_level);
        r = server_run(&config);
        config_deinit(&config);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
