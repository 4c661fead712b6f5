/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* open-map: the C side of bench/open_map.py: N times OPEN a named region, map it, touch a byte, unmap, free. */
/* Prints: wall ns per operation, CPU ns per operation of this process. */

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "iomem.h"

int main(int argc, char **argv)
{
        struct iomem_client *client = NULL;
        struct timespec t0, t1, c0, c1;
        volatile unsigned char sink = 0;
        long n;
        int r;

        if (argc != 4) {
                fprintf(stderr, "usage: open-map SOCKET NAME ITERATIONS\n");
                return 2;
        }
        n = atol(argv[3]);
        r = iomem_connect(argv[1], &client);
        if (r < 0) {
                fprintf(stderr, "open-map: connect: %s\n", iomem_strerror(r));
                return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        for (long i = 0; i < n; i++) {
                struct iomem_region *region = NULL;
                size_t size;
                void *addr;

                r = iomem_open(client, argv[2], 0, 0, &region);
                if (r < 0)
                        break;
                size = (size_t)iomem_region_size(region);
                r = iomem_region_map(region, 0, size, PROT_READ | PROT_WRITE, &addr);
                if (r < 0) {
                        iomem_region_free(region);
                        break;
                }
                sink = *(volatile unsigned char *)addr;
                iomem_unmap(addr, size);
                iomem_region_free(region);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        iomem_disconnect(client);
        if (r < 0) {
                fprintf(stderr, "open-map: %s\n", iomem_strerror(r));
                return 1;
        }
        (void)sink;
        /* wall time, and this process's CPU time (the daemon's share is the same for every client) */
        printf("%.1f %.1f\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / (double)n,
               ((c1.tv_sec - c0.tv_sec) * 1e9 + (c1.tv_nsec - c0.tv_nsec)) / (double)n);
        return 0;
}
