/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* consumer: wait for a name in iomemd, read the producer's message from the region, reply in it. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "iomem.h"
#include "pc-shared.h"

static int fail(const char *what, int r)
{
        fprintf(stderr, "consumer: %s: %s\n", what, iomem_strerror(r));
        return EXIT_FAILURE;
}

int main(int argc, char **argv)
{
        struct iomem_client *client = NULL;
        struct iomem_region *region = NULL;
        struct pc_page *page;
        void *addr;
        int timeout_ms, r;

        if (argc < 3 || argc > 4) {
                fprintf(stderr, "usage: consumer SOCKET NAME [TIMEOUT_MS]\n");
                return 2;
        }
        timeout_ms = argc > 3 ? atoi(argv[3]) : 30000;

        r = iomem_connect(argv[1], &client);
        if (r < 0)
                return fail("connect", r);
        /* the consumer may start first: the daemon holds the OPEN until the name exists */
        r = iomem_open(client, argv[2], 0, timeout_ms, &region);
        if (r < 0)
                return fail("open", r);
        if (iomem_region_size(region) < PC_REGION_SIZE) {
                fprintf(stderr, "consumer: region too small\n");
                return EXIT_FAILURE;
        }
        r = iomem_region_map(region, 0, PC_REGION_SIZE, PROT_READ | PROT_WRITE, &addr);
        if (r < 0)
                return fail("map", r);
        page = addr;
        if (!pc_wait_flag(&page->ready, timeout_ms)) {
                fprintf(stderr, "consumer: no message from the producer\n");
                return EXIT_FAILURE;
        }
        printf("consumer: received \"%s\"\n", page->message);
        snprintf(page->reply, sizeof(page->reply), "ack: %.1000s", page->message);
        atomic_store_explicit(&page->ack, 1, memory_order_release);
        iomem_unmap(addr, PC_REGION_SIZE);
        iomem_region_free(region);
        iomem_disconnect(client);
        return EXIT_SUCCESS;
}
