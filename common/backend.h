/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* backend: memory objects from memfd_create, POSIX shm_open or an unlinked temporary file. */
#pragma once

/*
 * Shared by libiomem (local API) and iomemd. Every fd made here is
 * close-on-exec. Nothing is left behind in the file system: shm objects and
 * temporary files are unlinked before backend_create() returns, even on error.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "proto.h"

/* default upper bound on a region's size when the caller passes 0 */
#define BACKEND_DEFAULT_MAX_SIZE (UINT64_C(64) << 30) /* 64 GiB */

/*
 * backend_create() - make a memory object of @size bytes.
 * @backend: PROTO_BACKEND_AUTO tries memfd, then shm, then file.
 * @max_size: sizes above it fail with -EFBIG before anything is created;
 *            0 means BACKEND_DEFAULT_MAX_SIZE.
 * @tmpdir: directory for the file backend; NULL means $TMPDIR or /tmp.
 * @fdp: receives the new fd (O_RDWR, close-on-exec).
 * @chosenp: receives the backend used (may be NULL).
 * Return: 0; -EFBIG; -EINVAL for an unknown backend; -ENOSPC, -ENOMEM,
 * -EMFILE or another negative errno from the kernel.
 */
int backend_create(enum proto_backend backend, uint64_t size, uint64_t max_size, const char *tmpdir,
                   int *fdp, enum proto_backend *chosenp);

/* What backend_create_pages() is asked for. */
struct backend_pages_opts {
        bool huge;           /* huge pages: hugetlb, else transparent huge pages (shmem), else normal pages */
        unsigned huge_shift; /* hugetlb page size 2^huge_shift (e.g. 21, 30); 0 = the system's default */
        bool reserve;        /* allocate all the memory now (fallocate) */
        bool no_hugetlb;     /* with @huge: never hugetlb (its pages are taken from the pool at creation) */
};

/* What backend_create_pages() made. */
struct backend_pages {
        enum proto_backend backend; /* as backend_create()'s *chosenp */
        unsigned page_shift;        /* log2 of the page size: 12, or the hugetlb page size */
        bool hugetlb;               /* hugetlbfs pages, taken from the pool at creation (always reserved) */
        bool thp;                   /* shmem object where the system allows transparent huge pages */
        bool reserved;              /* every byte has memory already: writes cannot fail for lack of it */
        int hugetlb_error;          /* why hugetlb was not used (0: not asked, or used) */
};

/*
 * backend_create_pages() - backend_create() with a choice of pages: with
 * @o->huge, a hugetlb memfd when @backend is AUTO or MEMFD, the pool has the
 * pages and @size is a multiple of the page size (its pages are then taken
 * at once, as a SIGBUS-free hugetlb object needs); else the usual object,
 * marked thp if the system gives shmem transparent huge pages. With
 * @o->reserve, fallocate() the whole size.
 * Return: 0 with *fdp and *pagesp; as backend_create(); -ENOSPC/-ENOMEM when
 * the reservation fails (nothing is left behind).
 */
int backend_create_pages(enum proto_backend backend, uint64_t size, uint64_t max_size, const char *tmpdir,
                         const struct backend_pages_opts *o, int *fdp, struct backend_pages *pagesp);

/*
 * backend_reserve_range() - give bytes @offset..@offset+@len of @fd memory
 * (or blocks) now, with fallocate.
 * Return: 0; -ENOSPC (file system, hugetlb pool), -ENOMEM (memory cgroup),
 * -EOPNOTSUPP (file system without fallocate); negative errno.
 */
int backend_reserve_range(int fd, uint64_t offset, uint64_t len);

/*
 * backend_reserve_ahead() - backend_reserve_range() past the end of @fd's
 * object without changing its size (FALLOC_FL_KEEP_SIZE): memory for a
 * growth that an ftruncate() makes visible later. Until then no mapping can
 * see it, so it can be given back without shrinking anything
 * (backend_drop_ahead()). Return: as backend_reserve_range().
 */
int backend_reserve_ahead(int fd, uint64_t offset, uint64_t len);

/*
 * backend_drop_ahead() - give back what backend_reserve_ahead() allocated
 * past the end of @fd's object: an ftruncate() to the size fstat() says,
 * which frees everything past it and changes no size, seals or not (tmpfs,
 * memfd and ext4; hugetlbfs too on 6.18, measured by review11: pool free 5
 * to 7 pages). Where hugetlbfs kept its pages through it (as seal2 saw), the
 * hole punched past the end on hugetlbfs returns them; on 6.18 that punch
 * finds nothing left, and on a hugetlb memfd sealed F_SEAL_WRITE it is
 * refused (-EPERM, returned: callers ignore it, the ftruncate has done the
 * work where the kernel frees there).
 * Return: 0 or a negative errno.
 */
int backend_drop_ahead(int fd);

/* Return: true if the system gives shmem objects transparent huge pages (shmem_enabled, see backend.c). */
bool backend_shmem_thp(void);

/* Return: 0 if @size is allowed under @max_size (0 = default), else -EFBIG (backend_resize()'s check). */
int backend_check_size(uint64_t size, uint64_t max_size);

/*
 * backend_resize() - change the size with ftruncate.
 * Return: 0; -EFBIG above max_size (0 = default); -EPERM if a seal forbids
 * it; negative errno.
 */
int backend_resize(int fd, uint64_t size, uint64_t max_size);

/*
 * backend_seal() - add seals (PROTO_SEAL_* bits) to a memfd.
 * Return: 0; -EOPNOTSUPP if @fd is not a sealable memfd; -EBUSY if
 * F_SEAL_WRITE is asked while a writable shared mapping exists; -EPERM if
 * F_SEAL_SEAL is already set; -EINVAL for unknown bits.
 */
int backend_seal(int fd, uint32_t seals);

/*
 * backend_get_seals() - the seals in force, limited to PROTO_SEALS_KNOWN (the
 * kernel adds bits such as F_SEAL_EXEC that the protocol does not carry).
 * Return: the seals (>= 0), 0 for objects that cannot be sealed, or negative
 * errno.
 */
int backend_get_seals(int fd);

/* Return: the size of the object behind @fd via fstat, or negative errno. */
int backend_get_size(int fd, uint64_t *sizep);

/*
 * backend_detect() - guess the backend of an fd from its /proc/self/fd link:
 * memfd if the link starts with "/memfd:", shm if it starts with "/dev/shm/"
 * on tmpfs, else file. Without /proc, a tmpfs object that answers
 * F_GET_SEALS is taken for a memfd, anything else for a file.
 * Return: the backend; -EINVAL if @fd is not a regular file; negative errno.
 */
int backend_detect(int fd);

struct stat;
struct statfs;
/*
 * backend_detect_with() - backend_detect() for a caller that has already
 * read @fd's fstat (@st) and fstatfs (@sfs): only the link is read.
 * Return: as backend_detect().
 */
int backend_detect_with(int fd, const struct stat *st, const struct statfs *sfs);

/* Return: "memfd", "shm", "file", "auto" or NULL. */
const char *backend_name(enum proto_backend backend);
/* Return: the backend for a name, or -EINVAL. */
int backend_from_name(const char *name);

/*
 * backend_reopen_rdonly() - a new read-only fd to the same object, made
 * without going through the file system by name: /proc/self/fd/N reopened
 * O_RDONLY, checked to be the same inode. Never blocks: an inode under a
 * lease held by another process (F_SETLEASE) gives -EAGAIN at once instead
 * of waiting for the lease break.
 * Return: 0 with *fdp set; -EAGAIN; negative errno.
 */
int backend_reopen_rdonly(int fd, int *fdp);

/*
 * backend_reopen_rdonly_stat() - as backend_reopen_rdonly(), checked against
 * the inode @dev/@ino if known (both 0: the one @fd has), with the new fd's
 * fstat in *@stp (may be NULL): one fstat when the identity is known.
 * Return: 0 with *fdp set; -ESTALE (another inode); negative errno.
 */
int backend_reopen_rdonly_stat(int fd, uint64_t dev, uint64_t ino, int *fdp, struct stat *stp);
