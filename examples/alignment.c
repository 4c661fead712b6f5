/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* alignment: place records at 64-byte (cache line) aligned offsets in a region and check them. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "iomem.h"

#define CACHE_LINE_SIZE 64
#define SIZE 4096

static uint64_t aligned_offset(uint64_t offset)
{
        return (offset + CACHE_LINE_SIZE - 1) & ~(uint64_t)(CACHE_LINE_SIZE - 1);
}

int main(void)
{
        static const struct {
                uint64_t wanted;
                uint64_t expected;
                const char *data;
        } records[] = {
                { 0, 0, "Data 1" }, { 100, 128, "Data 2" }, { 200, 256, "Data 3" }, { 257, 320, "Data 4" },
        };
        struct iomem_region *region = NULL;
        uint64_t prev_end = 0;
        char *buf;
        void *addr;
        int r;

        r = iomem_region_new_local(SIZE, IOMEM_BACKEND_AUTO, 0, &region);
        if (r < 0) {
                fprintf(stderr, "alignment: new region: %s\n", iomem_strerror(r));
                return EXIT_FAILURE;
        }
        r = iomem_region_map(region, 0, SIZE, PROT_READ | PROT_WRITE, &addr);
        if (r < 0) {
                fprintf(stderr, "alignment: map: %s\n", iomem_strerror(r));
                return EXIT_FAILURE;
        }
        buf = addr;
        /* a mapping starts on a page boundary, so aligned offsets give aligned addresses */
        if ((uintptr_t)buf % CACHE_LINE_SIZE != 0) {
                fprintf(stderr, "alignment: mapping at %p is not cache-line aligned\n", addr);
                return EXIT_FAILURE;
        }
        for (size_t i = 0; i < sizeof(records) / sizeof(records[0]); i++) {
                uint64_t off = aligned_offset(records[i].wanted);
                size_t len = strlen(records[i].data) + 1;

                if (off != records[i].expected || off % CACHE_LINE_SIZE != 0 ||
                    (uintptr_t)(buf + off) % CACHE_LINE_SIZE != 0 || off < prev_end || off + len > SIZE) {
                        fprintf(stderr, "alignment: record %zu at offset %llu is misplaced\n", i,
                                (unsigned long long)off);
                        return EXIT_FAILURE;
                }
                memcpy(buf + off, records[i].data, len);
                prev_end = off + len;
                printf("%s at offset %llu\n", records[i].data, (unsigned long long)off);
        }
        for (size_t i = 0; i < sizeof(records) / sizeof(records[0]); i++)
                if (strcmp(buf + records[i].expected, records[i].data) != 0) {
                        fprintf(stderr, "alignment: record %zu did not read back\n", i);
                        return EXIT_FAILURE;
                }
        iomem_unmap(addr, SIZE);
        iomem_region_free(region);
        return EXIT_SUCCESS;
}
