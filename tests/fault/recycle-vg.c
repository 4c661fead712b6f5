/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * recycle-vg: libiomem's recycled blocks (client/recycle.h) as valgrind's tools see them, run by recycle-vg.sh.
 *
 *   recycle-vg threads   threads make and free regions (local, no daemon) and clients (a connect that fails)
 *                        at once: under helgrind, a block handed from one thread to another through the slot
 *                        must look new (as from malloc), not raced on; under memcheck, no error
 *   recycle-vg uaf       reads a freed region (on purpose): memcheck must report it, as for a free()d block
 *
 * Exit: 0, or 1 with a message (a failed call or a leaked fd); valgrind's --error-exitcode for what it finds.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fdutil.h"
#include "iomem.h"

#define THREADS 4
#define ROUNDS 50

static void *worker(void *arg)
{
        (void)arg;
        for (unsigned i = 0; i < ROUNDS; i++) {
                struct iomem_region *r = NULL;
                struct iomem_client *c = NULL;

                if (iomem_region_new_local(4096, IOMEM_BACKEND_MEMFD, 0, &r) < 0 || iomem_region_size(r) != 4096)
                        return "iomem_region_new_local";
                r = iomem_region_free(r);
                /* allocates a client, fails to connect, frees it */
                if (iomem_connect_timeout("/nonexistent/iomemd.sock", 0, 100, &c) != -ENOENT || c)
                        return "iomem_connect_timeout";
        }
        return NULL;
}

static int threads(void)
{
        pthread_t t[THREADS];
        int ret = 0;

        for (unsigned i = 0; i < THREADS; i++)
                if (pthread_create(&t[i], NULL, worker, NULL) != 0)
                        return 1;
        for (unsigned i = 0; i < THREADS; i++) {
                void *err;

                pthread_join(t[i], &err);
                if (err) {
                        fprintf(stderr, "recycle-vg: %s failed\n", (const char *)err);
                        ret = 1;
                }
        }
        return ret;
}

static int uaf(void)
{
        struct iomem_region *r = NULL;
        volatile uint32_t flags;

        if (iomem_region_new_local(4096, IOMEM_BACKEND_MEMFD, 0, &r) < 0)
                return 1;
        iomem_region_free(r);
        flags = iomem_region_flags(r); /* the use after free memcheck must see */
        (void)flags;
        return 0;
}

int main(int argc, char **argv)
{
        int base = fdutil_count(0), r;

        if (argc != 2 || (strcmp(argv[1], "threads") != 0 && strcmp(argv[1], "uaf") != 0)) {
                fprintf(stderr, "usage: recycle-vg threads|uaf\n");
                return 2;
        }
        r = strcmp(argv[1], "threads") == 0 ? threads() : uaf();
        if (fdutil_count(0) != base) {
                fprintf(stderr, "recycle-vg: %d fds leaked\n", fdutil_count(0) - base);
                r = 1;
        }
        return r;
}
