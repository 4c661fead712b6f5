/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* sparse: how big a sparse test object the file systems under /dev/shm and $TMPDIR can hold right now. */
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* where a backend keeps its objects */
enum sparse_where {
        SPARSE_MEMFD, /* the kernel's internal tmpfs: no size limit, memory accounting instead */
        SPARSE_SHM,   /* /dev/shm */
        SPARSE_FILE,  /* $TMPDIR, else /tmp */
        SPARSE_AUTO,  /* memfd where it works, else shm, else file */
};

/* Below this much the big sparse tests prove nothing a small test does not: they skip. */
#define SPARSE_MIN (UINT64_C(16) << 20)

/* Return: bytes free to an unprivileged user in @dir's file system; UINT64_MAX when it reports no limit. */
static inline uint64_t sparse_free(const char *dir)
{
        struct statvfs sv;

        if (statvfs(dir, &sv) < 0 || sv.f_blocks == 0 || (uint64_t)sv.f_bavail > UINT64_MAX / sv.f_frsize)
                return UINT64_MAX;
        return (uint64_t)sv.f_bavail * sv.f_frsize;
}

static inline uint64_t sparse_free_where(enum sparse_where where)
{
        const char *tmp = getenv("TMPDIR");
        uint64_t shm, file;
        int fd;

        if (!tmp || !*tmp)
                tmp = "/tmp";
        switch (where) {
        case SPARSE_MEMFD:
                return UINT64_MAX;
        case SPARSE_SHM:
                return sparse_free("/dev/shm");
        case SPARSE_FILE:
                return sparse_free(tmp);
        default:
                fd = memfd_create("iomem-sparse-probe", MFD_CLOEXEC);
                if (fd >= 0) {
                        close(fd);
                        return UINT64_MAX;
                }
                shm = sparse_free("/dev/shm");
                file = sparse_free(tmp);
                return shm < file ? shm : file;
        }
}

/*
 * sparse_size() - @want bytes for a sparse object of @where, or less when its file system has less free (the
 * backends refuse sizes above the free space with -ENOSPC): the largest power of two up to half of what is free,
 * said on stderr. Return: the size; 0 when even SPARSE_MIN does not fit (the test should skip; said on stderr).
 */
static inline uint64_t sparse_size(const char *test, enum sparse_where where, uint64_t want)
{
        static const char *const names[] = { "memfd", "/dev/shm", "$TMPDIR", "auto" };
        uint64_t avail = sparse_free_where(where), size = want;

        if (avail / 2 >= want)
                return want;
        while (size > avail / 2)
                size /= 2;
        if (size < SPARSE_MIN) {
                fprintf(stderr, "%s (%s): SKIPPED: only %llu bytes free, it needs %llu\n", test,
                        names[where], (unsigned long long)avail, (unsigned long long)(2 * SPARSE_MIN));
                return 0;
        }
        fprintf(stderr, "%s (%s): %llu bytes free: testing with %llu bytes instead of %llu\n", test, names[where],
                (unsigned long long)avail, (unsigned long long)size, (unsigned long long)want);
        return size;
}
