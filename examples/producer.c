/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* producer: create a named region in iomemd, publish a message in it, wait for the consumer's reply. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "iomem.h"
#include "pc-shared.h"

static int fail(const char *what, int r)
{
        fprintf(stderr, "producer: %s: %s\n", what, iomem_strerror(r));
        return EXIT_FAILURE;
}

int main(int argc, char **argv)
{
        struct iomem_create_opts opts = { .flags = IOMEM_CREATE_EXCLUSIVE | IOMEM_CREATE_LEASE };
        struct iomem_client *client = NULL;
        struct iomem_region *region = NULL;
        const char *socket, *name, *message;
        struct pc_page *page;
        char expect[PC_TEXT_MAX + 8];
        void *addr;
        int r, ok;

        if (argc < 3 || argc > 4) {
                fprintf(stderr, "usage: producer SOCKET NAME [MESSAGE]\n");
                return 2;
        }
        socket = argv[1];
        name = argv[2];
        message = argc > 3 ? argv[3] : "Hello from the producer!";
        if (strlen(message) >= PC_TEXT_MAX - 8) {
                fprintf(stderr, "producer: message too long\n");
                return 2;
        }

        r = iomem_connect(socket, &client);
        if (r < 0)
                return fail("connect", r);
        /* a lease: the name goes away when this program disconnects, whatever happens */
        r = iomem_create(client, name, PC_REGION_SIZE, &opts, &region);
        if (r < 0)
                return fail("create", r);
        r = iomem_region_map(region, 0, PC_REGION_SIZE, PROT_READ | PROT_WRITE, &addr);
        if (r < 0)
                return fail("map", r);
        page = addr;
        snprintf(page->message, sizeof(page->message), "%s", message);
        atomic_store_explicit(&page->ready, 1, memory_order_release);
        printf("producer: published \"%s\" in %s\n", message, name);
        fflush(stdout);

        /* the reply arrives through the shared memory only: no request to the daemon */
        ok = pc_wait_flag(&page->ack, 30000);
        snprintf(expect, sizeof(expect), "ack: %s", message);
        if (!ok || strcmp(page->reply, expect) != 0) {
                fprintf(stderr, "producer: %s\n", ok ? "wrong reply from the consumer" : "no reply from the consumer");
                return EXIT_FAILURE;
        }
        printf("producer: consumer replied \"%s\"\n", page->reply);
        iomem_unmap(addr, PC_REGION_SIZE);
        iomem_region_free(region);
        iomem_disconnect(client);
        return EXIT_SUCCESS;
}
