/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* region: libiomem's struct iomem_region, one memory fd that can be mapped, resized and sealed. */

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "iomem.h"
#include "parse.h"
#include "recycle.h"
#include "region-internal.h"

/*
 * The public constants repeat the wire's (iomem.h must not include proto.h); these asserts keep the two in step.
 */
_Static_assert(IOMEM_SEAL_SEAL == PROTO_SEAL_SEAL && IOMEM_SEAL_SHRINK == PROTO_SEAL_SHRINK &&
                       IOMEM_SEAL_GROW == PROTO_SEAL_GROW && IOMEM_SEAL_WRITE == PROTO_SEAL_WRITE &&
                       IOMEM_SEAL_FUTURE_WRITE == PROTO_SEAL_FUTURE_WRITE,
               "IOMEM_SEAL_* must be the PROTO_SEAL_* bits");
_Static_assert((int)IOMEM_BACKEND_AUTO == (int)PROTO_BACKEND_AUTO &&
                       (int)IOMEM_BACKEND_MEMFD == (int)PROTO_BACKEND_MEMFD &&
                       (int)IOMEM_BACKEND_SHM == (int)PROTO_BACKEND_SHM &&
                       (int)IOMEM_BACKEND_FILE == (int)PROTO_BACKEND_FILE,
               "IOMEM_BACKEND_* must be the PROTO_BACKEND_* values");
_Static_assert(IOMEM_REGION_RDONLY == PROTO_REGION_RDONLY && IOMEM_REGION_LEASED == PROTO_REGION_LEASED &&
                       IOMEM_REGION_RESIZABLE == PROTO_REGION_RESIZABLE &&
                       IOMEM_REGION_ANONYMOUS == PROTO_REGION_ANONYMOUS,
               "IOMEM_REGION_* must be the PROTO_REGION_* bits");

_Static_assert(IOMEM_REGION_HUGETLB == PROTO_REGION_HUGETLB && IOMEM_REGION_THP == PROTO_REGION_THP &&
                       IOMEM_REGION_RESERVED == PROTO_REGION_RESERVED &&
                       IOMEM_CREATE_HUGE == PROTO_CREATE_HUGE && IOMEM_CREATE_RESERVE == PROTO_CREATE_RESERVE &&
                       IOMEM_CREATE_HUGE_2MB == (21u << PROTO_CREATE_HUGE_SHIFT),
               "IOMEM_REGION_*/IOMEM_CREATE_* page bits must be the PROTO_* bits");

#define REGION_FLAGS_KNOWN                                                                          \
        (IOMEM_REGION_RDONLY | IOMEM_REGION_LEASED | IOMEM_REGION_RESIZABLE | IOMEM_REGION_ANONYMOUS | \
         IOMEM_REGION_HUGETLB | IOMEM_REGION_THP | IOMEM_REGION_RESERVED)

struct iomem_region {
        int fd;
        /*
         * @size: the last size read with fstat or set by resize. @checked: fstat has seen the fd (a regular
         * file, D7) and set @size; false only for a region received from iomemd and not yet used
         * (region_new_reply_consume_fd()), whose @size is then the daemon's word and never given out.
         * Both are atomics (@checked stored with release after @size, loaded with acquire): the first use may
         * come from any thread.
         */
        uint64_t size;
        bool checked;
        uint64_t max_size; /* for local resizes; 0 = BACKEND_DEFAULT_MAX_SIZE */
        uint64_t id;       /* the daemon's id, 0 if local */
        uint32_t flags;    /* IOMEM_REGION_* */
        enum iomem_backend backend;
};

/* a freed region's block, for the next region (recycle.h: a cold connection's region costs no malloc/free) */
static void *region_spare;

__attribute__((destructor)) static void region_spare_drain(void)
{
        recycle_drain(&region_spare, sizeof(struct iomem_region));
}

static bool region_backend_valid(enum iomem_backend backend)
{
        switch (backend) {
        case IOMEM_BACKEND_AUTO:
        case IOMEM_BACKEND_MEMFD:
        case IOMEM_BACKEND_SHM:
        case IOMEM_BACKEND_FILE:
                return true;
        }
        return false;
}

static int region_new_stat_consume_fd_how(int fd, const struct stat *st, enum iomem_backend backend, uint32_t flags,
                                          uint64_t id, bool check_mode, struct iomem_region **regionp);

int region_new_consume_fd(int fd, uint64_t size, enum iomem_backend backend, uint32_t flags, uint64_t id,
                          struct iomem_region **regionp)
{
        struct stat st;
        int r;

        (void)size; /* the fd is the truth (S1): fstat below */

        if (fd < 0)
                return -EBADF;
        /* D7: only regular files can be memory regions; this also refuses O_PATH fds below */
        if (fstat(fd, &st) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        /* D9: whatever the sender did, our copy does not survive exec */
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        return region_new_stat_consume_fd_how(fd, &st, backend, flags, id, true, regionp);
}

/*
 * Wrap @fd, checked with fstat (*@st) and known to be close-on-exec; with @check_mode, F_GETFL tells the access
 * mode, else @flags do. Return: as region_new_consume_fd().
 */
static int region_new_stat_consume_fd_how(int fd, const struct stat *st, enum iomem_backend backend, uint32_t flags,
                                          uint64_t id, bool check_mode, struct iomem_region **regionp)
{
        struct iomem_region *region;
        int fl, r;

        if (fd < 0)
                return -EBADF;
        if (!regionp) {
                r = -EINVAL;
                goto fail;
        }
        /* a newer daemon may send bits or backends we do not know: keep what we understand */
        flags &= REGION_FLAGS_KNOWN;
        if (!region_backend_valid(backend))
                backend = IOMEM_BACKEND_AUTO;

        if (!S_ISREG(st->st_mode) || st->st_size < 0) {
                r = -EINVAL;
                goto fail;
        }
        fl = check_mode ? fcntl(fd, F_GETFL) : O_RDWR;
        if (fl < 0) {
                r = -errno;
                goto fail;
        }
        if ((fl & O_PATH) || (fl & O_ACCMODE) == O_WRONLY) {
                r = -EINVAL;
                goto fail;
        }
        if ((fl & O_ACCMODE) == O_RDONLY)
                flags |= IOMEM_REGION_RDONLY;

        if (backend == IOMEM_BACKEND_AUTO) {
                r = backend_detect(fd);
                if (r < 0)
                        goto fail;
                backend = (enum iomem_backend)r;
        }

        region = recycle_take(&region_spare, sizeof(*region));
        if (!region) {
                r = -ENOMEM;
                goto fail;
        }
        *region = (struct iomem_region){ .fd = fd, .size = (uint64_t)st->st_size, .checked = true, .id = id,
                                         .flags = flags, .backend = backend };
        *regionp = region;
        return 0;

fail:
        close(fd);
        return r;
}

inline int region_new_reply_consume_fd(int fd, uint64_t size, enum iomem_backend backend, uint32_t flags, uint64_t id,
                                struct iomem_region **regionp)
{
        struct iomem_region *region;

        if (fd < 0)
                return -EBADF;
        if (!regionp) {
                close(fd);
                return -EINVAL;
        }
        if (backend == IOMEM_BACKEND_AUTO || !region_backend_valid(backend)) {
                /* a backend to detect from the fd (a newer daemon's, or none said): the fd is read now */
                struct stat st;

                if (fstat(fd, &st) < 0) {
                        int r = -errno;

                        close(fd);
                        return r;
                }
                return region_new_stat_consume_fd_how(fd, &st, IOMEM_BACKEND_AUTO, flags, id, false, regionp);
        }
        region = recycle_take(&region_spare, sizeof(*region));
        if (!region) {
                close(fd);
                return -ENOMEM;
        }
        *region = (struct iomem_region){ .fd = fd, .size = size, .checked = false, .id = id,
                                         .flags = flags & REGION_FLAGS_KNOWN, .backend = backend };
        *regionp = region;
        return 0;
}

/*
 * region_stat() - fstat the region's fd: it must be a regular file (D7: else -EINVAL, and it is never mapped);
 * its size becomes the region's (S1). Return: 0; -EINVAL; negative errno from fstat.
 */
static inline __attribute__((always_inline)) int region_stat(struct iomem_region *region)
{
        struct stat st;

        if (fstat(region->fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || st.st_size < 0)
                return -EINVAL;
        __atomic_store_n(&region->size, (uint64_t)st.st_size, __ATOMIC_RELAXED);
        __atomic_store_n(&region->checked, true, __ATOMIC_RELEASE); /* after the size it vouches for */
        return 0;
}

/*
 * region_check() - the first use of a region received from iomemd: region_stat() once. A region whose fd is
 * not a regular file stays unchecked and fails every use. @region is written although the getters that call
 * this take it const: every region is allocated here, never const itself.
 * Return: 0; -EINVAL; negative errno from fstat.
 */
static int region_check(const struct iomem_region *region)
{
        if (__atomic_load_n(&region->checked, __ATOMIC_ACQUIRE)) /* then @size is an fstat size */
                return 0;
        return region_stat((struct iomem_region *)region);
}

/*
 * iomem_region_new_local() - make a memory object without a daemon.
 * Return: 0; -EFBIG; -EINVAL; -ENOSPC, -ENOMEM, -EMFILE...
 */
IOMEM_EXPORT int iomem_region_new_local(uint64_t size, enum iomem_backend backend, uint64_t max_size,
                                        struct iomem_region **regionp)
{
        enum proto_backend chosen = PROTO_BACKEND_AUTO;
        struct iomem_region *region = NULL;
        int fd = -1, r;

        if (!regionp || !region_backend_valid(backend))
                return -EINVAL;

        r = backend_create((enum proto_backend)backend, size, max_size, NULL, &fd, &chosen);
        if (r < 0)
                return r;
        r = region_new_consume_fd(fd, size, (enum iomem_backend)chosen, 0, 0, &region);
        fd = -1; /* consumed */
        if (r < 0)
                return r;
        region->max_size = max_size;
        *regionp = region;
        return 0;
}

/*
 * iomem_region_new_consume_fd() - wrap an fd received some other way.
 * Return: 0; -EBADF; -EINVAL if it is not a regular memory-like file.
 */
IOMEM_EXPORT int iomem_region_new_consume_fd(int fd, struct iomem_region **regionp)
{
        return region_new_consume_fd(fd, 0, IOMEM_BACKEND_AUTO, 0, 0, regionp);
}

/* Close the fd and free; errno is kept. NULL-safe. Return: NULL. */
IOMEM_EXPORT struct iomem_region *iomem_region_free(struct iomem_region *region)
{
        int saved = errno;

        if (!region)
                return NULL;
        if (region->fd >= 0)
                close(region->fd);
        recycle_give(&region_spare, region, sizeof(*region));
        errno = saved;
        return NULL;
}

/* Return: the region's fd (borrowed); -EINVAL for NULL or an fd iomemd sent that is not a regular file (D7). */
IOMEM_EXPORT int iomem_region_fd(const struct iomem_region *region)
{
        int r;

        if (!region)
                return -EINVAL;
        r = region_check(region);
        return r < 0 ? r : region->fd;
}

/* Return: a close-on-exec duplicate of the fd (caller owns it), or negative errno (as iomem_region_fd()). */
IOMEM_EXPORT int iomem_region_dup_fd(const struct iomem_region *region)
{
        int fd;

        if (!region)
                return -EINVAL;
        fd = region_check(region);
        if (fd < 0)
                return fd;
        fd = fcntl(region->fd, F_DUPFD_CLOEXEC, 3);
        return fd < 0 ? -errno : fd;
}

/* Return: the size known to the region (an fstat size, S1); 0 for NULL or an fd that fails region_check(). */
IOMEM_EXPORT uint64_t iomem_region_size(const struct iomem_region *region)
{
        if (!region || region_check(region) < 0)
                return 0;
        return __atomic_load_n(&region->size, __ATOMIC_RELAXED);
}

/* Return: the region's backend (AUTO for NULL). */
IOMEM_EXPORT enum iomem_backend iomem_region_backend(const struct iomem_region *region)
{
        return region ? region->backend : IOMEM_BACKEND_AUTO;
}

/* Return: IOMEM_REGION_* bits, 0 for NULL. */
IOMEM_EXPORT uint32_t iomem_region_flags(const struct iomem_region *region)
{
        return region ? region->flags : 0;
}

/* Return: the daemon's id for the region, 0 for local regions. */
IOMEM_EXPORT uint64_t iomem_region_id(const struct iomem_region *region)
{
        return region ? region->id : 0;
}

/* Return: 0 with the size re-read by fstat; -EINVAL (as iomem_region_fd()); negative errno. */
IOMEM_EXPORT int iomem_region_refresh(struct iomem_region *region)
{
        if (!region)
                return -EINVAL;
        return region_stat(region);
}

/* Return: the page size, asked of sysconf() once (a few dozen instructions per map otherwise). */
static uint64_t region_page_size(void)
{
        static uint64_t page; /* 0 = not asked yet; any thread may ask, all get the same answer */
        uint64_t p = __atomic_load_n(&page, __ATOMIC_RELAXED);

        if (!p) {
                p = (uint64_t)sysconf(_SC_PAGESIZE);
                __atomic_store_n(&page, p, __ATOMIC_RELAXED);
        }
        return p;
}

/*
 * iomem_region_map() - mmap(MAP_SHARED) a range of the region, checked
 * against the size fstat reports now.
 * Return: 0 with *addrp set; -EINVAL; -EOVERFLOW; -ERANGE; -EACCES; negative errno from mmap.
 */
IOMEM_EXPORT int iomem_region_map(struct iomem_region *region, uint64_t offset, size_t length, int prot,
                                  void **addrp)
{
        uint64_t page, end, size;
        void *addr;
        int r;

        if (!region || !addrp)
                return -EINVAL;
        if (prot == 0 || (prot & ~(PROT_READ | PROT_WRITE)))
                return -EINVAL;
        page = region_page_size(); /* a power of two */
        if (offset & (page - 1))
                return -EINVAL;
        if ((prot & PROT_WRITE) && (region->flags & IOMEM_REGION_RDONLY))
                return -EACCES;

        /* S1: a range past the end would map, then SIGBUS on first touch; D7: only a regular file is mapped */
        r = region_stat(region);
        if (r < 0)
                return r;
        size = __atomic_load_n(&region->size, __ATOMIC_RELAXED);

        if (length == 0) {
                if (offset > size)
                        return -ERANGE;
                if (size - offset > SIZE_MAX)
                        return -EOVERFLOW;
                length = (size_t)(size - offset);
                if (length == 0)
                        return -EINVAL;
        } else {
                if (offset > UINT64_MAX - length)
                        return -EOVERFLOW;
                end = offset + length;
                if (end > size)
                        return -ERANGE;
        }
        if (offset > (uint64_t)INT64_MAX)
                return -EOVERFLOW;

        addr = mmap(NULL, length, prot, MAP_SHARED, region->fd, (off_t)offset);
        if (addr == MAP_FAILED)
                return -errno;
        /* shmem_enabled=advise gives shmem huge pages only through mappings that ask; harmless otherwise */
        if (region->flags & IOMEM_REGION_THP)
                (void)madvise(addr, length, MADV_HUGEPAGE);
        *addrp = addr;
        return 0;
}

/* Return: 0 or negative errno from munmap; -EINVAL for NULL. */
IOMEM_EXPORT int iomem_unmap(void *addr, size_t length)
{
        if (!addr)
                return -EINVAL;
        if (munmap(addr, length) < 0)
                return -errno;
        return 0;
}

/*
 * iomem_region_resize() - change the region's size with ftruncate.
 * Return: 0; -EFBIG; -EPERM if sealed against it; -EACCES for a read-only region.
 */
IOMEM_EXPORT int iomem_region_resize(struct iomem_region *region, uint64_t size)
{
        int r;

        if (!region)
                return -EINVAL;
        if (region->flags & IOMEM_REGION_RDONLY)
                return -EACCES;
        r = backend_resize(region->fd, size, region->max_size);
        if (r < 0)
                return r;
        region->size = size;
        return 0;
}

/*
 * iomem_region_seal() - add seals to a memfd region.
 * Return: 0; -EOPNOTSUPP for shm/file; -EBUSY; -EPERM; -EINVAL for unknown bits.
 */
IOMEM_EXPORT int iomem_region_seal(struct iomem_region *region, uint32_t seals)
{
        if (!region)
                return -EINVAL;
        return backend_seal(region->fd, seals);
}

/* Return: seals in force (>= 0, 0 for shm/file), or negative errno. */
IOMEM_EXPORT int iomem_region_get_seals(const struct iomem_region *region)
{
        if (!region)
                return -EINVAL;
        return backend_get_seals(region->fd);
}

/* Return: "memfd", "shm", "file", "auto", or NULL for an unknown value. */
IOMEM_EXPORT const char *iomem_backend_name(enum iomem_backend backend)
{
        return backend_name((enum proto_backend)backend);
}

/*
 * iomem_seals_parse() - seal bits from a list such as "shrink,grow" or
 * "seal write" (the one table is common/parse.c). *sealsp is only written
 * on success.
 * Return: 0; -EINVAL for NULL or an unknown name.
 */
IOMEM_EXPORT int iomem_seals_parse(const char *text, uint32_t *sealsp)
{
        return parse_seals(text, sealsp);
}
