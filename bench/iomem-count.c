/* iomem-count: a fixed number of requests against iomemd, for instruction counts (valgrind --tool=callgrind). */

#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>

#include "iomem.h"

/*
 * Usage: iomem-count SOCKET MODE N [TABLE]
 * Setup (in every run): one connection creates TABLE size-0 regions "cg/tK" and the 4 KiB region "cg/r".
 * Then N operations of MODE:
 *   open     iomem_open("cg/r") read-write + free, on the setup connection
 *   open-ro  the same, read-only
 *   create   iomem_create("cg/cK", 4 KiB) + free (the regions stay)
 *   cold     iomem_connect + iomem_open("cg/r") + free + iomem_disconnect
 *   cold-map the same with iomem_region_map() of the 4 KiB and munmap before the free (iomem-bench's cold rows)
 * Run it twice against a daemon under callgrind, with N and 2N: the daemon's
 * instructions per operation are the difference divided by N (setup and
 * start-up cancel out).
 */
enum { MODE_OPEN, MODE_OPEN_RO, MODE_CREATE, MODE_COLD, MODE_COLD_MAP, MODE_N };
static const char *const modes[MODE_N] = { "open", "open-ro", "create", "cold", "cold-map" };

int main(int argc, char **argv)
{
        struct iomem_client *c = NULL;
        struct iomem_region *reg = NULL;
        const char *sock, *mode;
        unsigned long n, table = 0;
        char name[64];
        int r, m;

        if (argc < 4) {
                fprintf(stderr, "usage: %s SOCKET open|open-ro|create|cold|cold-map N [TABLE]\n", argv[0]);
                return 2;
        }
        sock = argv[1];
        mode = argv[2];
        n = strtoul(argv[3], NULL, 10);
        if (argc > 4)
                table = strtoul(argv[4], NULL, 10);
        /* the mode is told once: string compares per operation would count in a client-side run (callgrind-client.sh) */
        for (m = 0; m < MODE_N && strcmp(mode, modes[m]) != 0; m++)
                ;
        if (m == MODE_N) {
                fprintf(stderr, "unknown mode %s\n", mode);
                return 2;
        }

        r = iomem_connect(sock, &c);
        if (r < 0)
                goto fail;
        for (unsigned long i = 0; i < table; i++) {
                snprintf(name, sizeof(name), "cg/t%lu", i);
                r = iomem_create(c, name, 0, NULL, &reg);
                if (r < 0)
                        goto fail;
                reg = iomem_region_free(reg);
        }
        r = iomem_create(c, "cg/r", 4096, NULL, &reg);
        if (r < 0)
                goto fail;
        reg = iomem_region_free(reg);

        for (unsigned long i = 0; i < n; i++) {
                if (m == MODE_OPEN || m == MODE_OPEN_RO) {
                        r = iomem_open(c, "cg/r", m == MODE_OPEN_RO ? IOMEM_OPEN_RDONLY : 0, 0, &reg);
                } else if (m == MODE_CREATE) {
                        snprintf(name, sizeof(name), "cg/c%lu", i);
                        r = iomem_create(c, name, 4096, NULL, &reg);
                } else { /* MODE_COLD, MODE_COLD_MAP */
                        struct iomem_client *k = NULL;
                        void *addr;

                        r = iomem_connect(sock, &k);
                        if (r == 0)
                                r = iomem_open(k, "cg/r", 0, 0, &reg);
                        if (r == 0 && m == MODE_COLD_MAP) {
                                r = iomem_region_map(reg, 0, 4096, PROT_READ | PROT_WRITE, &addr);
                                if (r == 0)
                                        r = iomem_unmap(addr, 4096);
                        }
                        k = iomem_disconnect(k);
                }
                if (r < 0)
                        goto fail;
                reg = iomem_region_free(reg);
        }
        iomem_disconnect(c);
        return 0;

fail:
        fprintf(stderr, "iomem-count: %s\n", iomem_strerror(r));
        iomem_disconnect(c);
        return 1;
}
