/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* open-map: the C side of bindings/ruby/bench/open_map.rb: N times OPEN + map + unmap + free of one named region. */

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "iomem.h"

static double now_ns(clockid_t clock)
{
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Usage: open-map SOCKET NAME N. Prints the mean nanoseconds per cycle: wall clock, then this process's CPU. */
int main(int argc, char **argv)
{
        struct iomem_client *client = NULL;
        double start, cpu;
        long n;
        int r;

        if (argc != 4 || (n = strtol(argv[3], NULL, 10)) <= 0) {
                fprintf(stderr, "usage: open-map SOCKET NAME N\n");
                return 2;
        }
        r = iomem_connect(argv[1], &client);
        if (r < 0) {
                fprintf(stderr, "open-map: connect: %s\n", iomem_strerror(r));
                return 1;
        }
        start = now_ns(CLOCK_MONOTONIC);
        cpu = now_ns(CLOCK_PROCESS_CPUTIME_ID);
        for (long i = 0; i < n; i++) {
                struct iomem_region *region = NULL;
                void *addr;
                size_t size;

                r = iomem_open(client, argv[2], 0, 0, &region);
                if (r == 0)
                        r = iomem_region_map(region, 0, 0, PROT_READ | PROT_WRITE, &addr);
                if (r < 0) {
                        fprintf(stderr, "open-map: %s\n", iomem_strerror(r));
                        return 1;
                }
                size = (size_t)iomem_region_size(region);
                ((volatile char *)addr)[0] = (char)i; /* touch it, as the Ruby side does */
                iomem_unmap(addr, size);
                iomem_region_free(region);
        }
        printf("%.0f %.0f\n", (now_ns(CLOCK_MONOTONIC) - start) / (double)n,
               (now_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu) / (double)n);
        iomem_disconnect(client);
        return 0;
}
