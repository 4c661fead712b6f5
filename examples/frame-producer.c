/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * frame-producer: publish a new immutable frame under one name 1000 times a second (issue 12).
 * Usage: frame-producer SOCKET NAME COUNT
 * Each frame is a sealed memfd whose every u64 holds the frame's number; readers of an old frame keep it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "iomem.h"

#define FRAME_SIZE (64u * 1024u)

/* A sealed memfd of FRAME_SIZE bytes holding @value in every u64. Return: 0; negative errno. */
static int frame_make(uint64_t value, struct iomem_region **regionp)
{
        struct iomem_region *r = NULL;
        uint64_t *p;
        int k;

        k = iomem_region_new_local(FRAME_SIZE, IOMEM_BACKEND_MEMFD, 0, &r);
        if (k < 0)
                return k;
        k = iomem_region_map(r, 0, FRAME_SIZE, PROT_READ | PROT_WRITE, (void **)&p);
        if (k == 0) {
                for (size_t i = 0; i < FRAME_SIZE / 8; i++)
                        p[i] = value;
                iomem_unmap(p, FRAME_SIZE);
                /* sealed against writing: every reader gets an immutable snapshot */
                k = iomem_region_seal(r, IOMEM_SEAL_SHRINK | IOMEM_SEAL_GROW | IOMEM_SEAL_WRITE);
        }
        if (k < 0) {
                iomem_region_free(r);
                return k;
        }
        *regionp = r;
        return 0;
}

int main(int argc, char **argv)
{
        struct iomem_client *c = NULL;
        struct timespec next;
        long count;
        int k;

        if (argc != 4 || (count = strtol(argv[3], NULL, 10)) <= 0) {
                fprintf(stderr, "usage: frame-producer SOCKET NAME COUNT\n");
                return 2;
        }
        k = iomem_connect_flags(argv[1], IOMEM_CONNECT_EVENTS, &c);
        if (k < 0) {
                fprintf(stderr, "frame-producer: connect: %s\n", iomem_strerror(k));
                return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &next);
        for (long i = 1; i <= count; i++) {
                struct iomem_region *r = NULL;
                uint64_t gen = 0;

                k = frame_make((uint64_t)i, &r);
                if (k == 0) {
                        k = iomem_publish(c, argv[2], r, NULL, &gen);
                        iomem_region_free(r);
                }
                if (k < 0) {
                        fprintf(stderr, "frame-producer: frame %ld: %s\n", i, iomem_strerror(k));
                        iomem_disconnect(c);
                        return 1;
                }
                /* 1 kHz on an absolute clock: a slow frame does not shift the ones after it */
                next.tv_nsec += 1000000;
                if (next.tv_nsec >= 1000000000) {
                        next.tv_sec++;
                        next.tv_nsec -= 1000000000;
                }
                while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
                        ;
        }
        printf("published %ld frames\n", count);
        iomem_disconnect(c);
        return 0;
}
