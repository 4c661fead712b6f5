/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* region-internal: the libiomem-internal constructor of struct iomem_region (used by client.c). */
#pragma once

#include <stdint.h>
#include <sys/stat.h>

#include "iomem.h"

/* The shared library is built with hidden visibility: mark each public function with this. */
#define IOMEM_EXPORT __attribute__((visibility("default")))

/*
 * region_new_consume_fd() - wrap an fd received from iomemd (or made locally).
 * @fd: taken over, even on error (closed then).
 * @size: the size the sender reported; the region records the size read
 *        with fstat, which is the truth if they differ (S1).
 * @backend: IOMEM_BACKEND_MEMFD/SHM/FILE as reported; AUTO (or a value
 *           this library does not know) = detect from the fd.
 * @flags: IOMEM_REGION_* bits (unknown bits are dropped); IOMEM_REGION_RDONLY
 *         is also set when the fd itself is not writable (O_RDONLY).
 * @id: the daemon's id, 0 for local regions.
 * The fd must be a regular file (memfd, shm object or file), else -EINVAL (D7).
 * Return: 0 with *regionp set; -EBADF; -EINVAL; -ENOMEM.
 */
int region_new_consume_fd(int fd, uint64_t size, enum iomem_backend backend, uint32_t flags, uint64_t id,
                          struct iomem_region **regionp);

/*
 * region_new_stat_consume_fd() - region_new_consume_fd() for an fd already
 * checked with fstat (*@st) and known to be close-on-exec (received with
 * MSG_CMSG_CLOEXEC): two syscalls fewer per OPEN. Return: as region_new_consume_fd().
 */
int region_new_stat_consume_fd(int fd, const struct stat *st, enum iomem_backend backend, uint32_t flags,
                               uint64_t id, struct iomem_region **regionp);

/*
 * region_new_reply_consume_fd() - region_new_stat_consume_fd() for an fd in
 * a CREATE/OPEN reply, whose access mode the reply's flags state
 * (IOMEM_REGION_RDONLY): one syscall fewer (no F_GETFL). Were the daemon
 * wrong, nothing could fault: the kernel refuses a writable mapping of a
 * read-only fd (mmap: -EACCES), and any mapping of an O_PATH or write-only
 * one; S1 rests on the fstat size, which is still checked here and at every
 * map. Return: as region_new_consume_fd().
 */
int region_new_reply_consume_fd(int fd, const struct stat *st, enum iomem_backend backend, uint32_t flags,
                                uint64_t id, struct iomem_region **regionp);

/* For __attribute__((cleanup(region_freep))). */
static inline void region_freep(struct iomem_region **regionp)
{
        if (*regionp)
                *regionp = iomem_region_free(*regionp);
}
