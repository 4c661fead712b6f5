#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include "iomem.h"
int main(int argc, char **argv)
{
        long n = atol(argv[2]);
        struct timespec a, b;
        for (int pass = 0; pass < 2; pass++) {
                long m = pass ? n : n / 10;
                clock_gettime(CLOCK_MONOTONIC, &a);
                for (long i = 0; i < m; i++) {
                        struct iomem_client *c = NULL; struct iomem_region *r = NULL; void *p;
                        int e = iomem_connect(argv[1], &c);
                        if (!e) e = iomem_open(c, "cg/r", 0, 0, &r);
                        if (!e) e = iomem_region_map(r, 0, 4096, PROT_READ | PROT_WRITE, &p);
                        if (!e) e = iomem_unmap(p, 4096);
                        iomem_region_free(r); iomem_disconnect(c);
                        if (e) { fprintf(stderr, "err %d at %ld\n", e, i); return 1; }
                }
                clock_gettime(CLOCK_MONOTONIC, &b);
        }
        printf("%.3f us/op\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n / 1000);
        return 0;
}
