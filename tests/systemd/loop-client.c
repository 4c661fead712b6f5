/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* loop-client: OPEN + map + read-and-check in a loop until told to stop, counting failures and the longest stall. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "iomem.h"

/* The byte at @off of the test region: what inside.sh wrote (tests/systemd/inside.sh, pattern()). */
static unsigned char pattern(uint64_t off)
{
        return (unsigned char)((off * 7 + off / 4096) & 0xff);
}

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Usage: loop-client NAME SIZE STOP_FILE
 * Uses the default socket (iomem_socket_path()). Prints one line at the end:
 * "ops=N failures=F wrong=W reconnects=R max_stall_ms=S stalls_ms=A,B,... first_error=..." and
 * exits 0 only if every operation succeeded with the right bytes.
 */
int main(int argc, char **argv)
{
        uint64_t ops = 0, failures = 0, wrong = 0, size;
        int64_t last, max_stall = 0;
        const char *first_error = "none";
        char stalls[256] = "";
        size_t stalls_len = 0;
        struct iomem_client *c = NULL;
        int r;

        if (argc != 4) {
                fprintf(stderr, "usage: loop-client NAME SIZE STOP_FILE\n");
                return 2;
        }
        size = strtoull(argv[2], NULL, 10);
        r = iomem_connect(NULL, &c);
        if (r < 0) {
                fprintf(stderr, "loop-client: connect: %s\n", iomem_strerror(r));
                return 1;
        }
        last = now_ms();
        while (access(argv[3], F_OK) != 0) {
                struct iomem_region *region = NULL;
                unsigned char *p = NULL;
                int64_t t;

                r = iomem_open(c, argv[1], IOMEM_OPEN_RDONLY, 0, &region);
                if (r == 0)
                        r = iomem_region_map(region, 0, (size_t)size, PROT_READ, (void **)&p);
                if (r < 0) {
                        if (!failures++)
                                first_error = iomem_strerror(r);
                } else {
                        for (uint64_t off = 0; off < size; off += 509)
                                if (p[off] != pattern(off)) {
                                        wrong++;
                                        break;
                                }
                        iomem_unmap(p, (size_t)size);
                        ops++;
                        t = now_ms();
                        if (t - last > max_stall)
                                max_stall = t - last;
                        /* every pause of 100 ms or more: one per restart, in order */
                        if (t - last >= 100 && stalls_len < sizeof(stalls) - 24)
                                stalls_len += (size_t)snprintf(stalls + stalls_len, sizeof(stalls) - stalls_len,
                                                               "%s%" PRId64, stalls_len ? "," : "", t - last);
                        last = t;
                }
                iomem_region_free(region);
        }
        printf("ops=%" PRIu64 " failures=%" PRIu64 " wrong=%" PRIu64 " reconnects=%u max_stall_ms=%" PRId64
               " stalls_ms=%s first_error=%s\n",
               ops, failures, wrong, iomem_client_reconnects(c), max_stall, stalls_len ? stalls : "none", first_error);
        iomem_disconnect(c);
        return failures || wrong || !ops ? 1 : 0;
}
