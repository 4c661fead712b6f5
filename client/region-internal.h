/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* region-internal: the libiomem-internal constructor of struct iomem_region (used by client.c). */
#pragma once

#include <stdint.h>

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
 * region_new_reply_consume_fd() - wrap the fd of a CREATE/OPEN reply, with no
 * syscall: received with MSG_CMSG_CLOEXEC (D9), its access mode stated by the
 * reply's flags (IOMEM_REGION_RDONLY; were the daemon wrong, the kernel
 * refuses a writable mapping of a read-only fd: -EACCES), its kind and size
 * read with fstat at the region's first use (iomem_region_map(), _size(),
 * _fd(), _dup_fd(), _refresh()), which refuses an fd that is not a regular
 * file (D7: -EINVAL, never mapped) and records the object's own size (S1);
 * until then @size, the daemon's, is never given out. A @backend to detect
 * (AUTO, or one this library does not know) makes it read the fd at once.
 * Return: 0 with *regionp set; -EBADF; -EINVAL; -ENOMEM; negative errno from fstat.
 */
int region_new_reply_consume_fd(int fd, uint64_t size, enum iomem_backend backend, uint32_t flags, uint64_t id,
                                struct iomem_region **regionp);

/* For __attribute__((cleanup(region_freep))). */
static inline void region_freep(struct iomem_region **regionp)
{
        if (*regionp)
                *regionp = iomem_region_free(*regionp);
}
