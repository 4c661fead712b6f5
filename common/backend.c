/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* backend: memory objects from memfd_create, POSIX shm_open or an unlinked temporary file. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "backend.h"

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

#define BACKEND_MEMFD_NAME "iomem"
#define BACKEND_SHM_ATTEMPTS 8

_Static_assert(PROTO_SEAL_SEAL == F_SEAL_SEAL && PROTO_SEAL_SHRINK == F_SEAL_SHRINK &&
                       PROTO_SEAL_GROW == F_SEAL_GROW && PROTO_SEAL_WRITE == F_SEAL_WRITE &&
                       PROTO_SEAL_FUTURE_WRITE == F_SEAL_FUTURE_WRITE,
               "PROTO_SEAL_* must be the kernel's F_SEAL_* bits");

int backend_check_size(uint64_t size, uint64_t max_size)
{
        if (max_size == 0)
                max_size = BACKEND_DEFAULT_MAX_SIZE;
        if (size > max_size || size > (uint64_t)INT64_MAX)
                return -EFBIG;
        return 0;
}

/*
 * tmpfs and disk file systems accept a sparse ftruncate of any size below
 * their file size limit, and the missing space would only show later as
 * SIGBUS in whoever touches the pages. Refuse sizes the file system cannot
 * hold right now with -ENOSPC instead (R4). Not done for memfd: its
 * internal mount has no size limit, memory accounting applies instead.
 */
static int backend_check_space(int fd, uint64_t size)
{
        struct statvfs sv;

        if (fstatvfs(fd, &sv) < 0)
                return -errno;
        if (sv.f_blocks == 0) /* no limit reported */
                return 0;
        if ((uint64_t)sv.f_bavail > UINT64_MAX / sv.f_frsize)
                return 0;
        if (size > (uint64_t)sv.f_bavail * sv.f_frsize)
                return -ENOSPC;
        return 0;
}

/*
 * Give a new object @fd its @size, after checking that its file system can hold it now (backend_check_space())
 * when @check_space, and hand it to *fdp.
 * Return: 0, or negative errno from fstatvfs/ftruncate, -ENOSPC; closes @fd on error.
 */
static int backend_size_or_close(int fd, uint64_t size, bool check_space, int *fdp)
{
        int r = check_space ? backend_check_space(fd, size) : 0;

        if (r == 0 && ftruncate(fd, (off_t)size) < 0)
                r = -errno;
        if (r < 0) {
                close(fd);
                return r;
        }
        *fdp = fd;
        return 0;
}

static int backend_create_memfd(uint64_t size, int *fdp)
{
        int fd, r;

        /* P6: never executable; kernels before 6.3 do not know the flag and say EINVAL */
        fd = memfd_create(BACKEND_MEMFD_NAME, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
        if (fd < 0 && errno == EINVAL)
                fd = memfd_create(BACKEND_MEMFD_NAME, MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return -errno;

        /*
         * A memfd is born 0777 (0666 with MFD_NOEXEC_SEAL), and whoever holds
         * any fd to it may reopen /proc/<pid>/fd/N with the access the mode
         * grants. 0600, like the other backends: a read-only fd handed to
         * another uid cannot be turned into a writable one (P4), and without
         * MFD_NOEXEC_SEAL the object is still not executable (P6).
         */
        if (fchmod(fd, 0600) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        return backend_size_or_close(fd, size, false, fdp);
}

static int backend_random_u64(uint64_t *valuep)
{
        ssize_t n;

        /* the name need not be secret (O_EXCL and the checks below protect it), so never block at boot */
        n = getrandom(valuep, sizeof(*valuep), GRND_INSECURE);
        if (n < 0 && errno == EINVAL)
                n = getrandom(valuep, sizeof(*valuep), GRND_NONBLOCK);
        if (n < 0)
                return -errno;
        if ((size_t)n != sizeof(*valuep))
                return -EIO;
        return 0;
}

static int backend_create_shm(uint64_t size, int *fdp)
{
        for (int attempt = 0; attempt < BACKEND_SHM_ATTEMPTS; attempt++) {
                char name[64];
                uint64_t rnd[2];
                struct stat st;
                int fd, r;

                r = backend_random_u64(&rnd[0]);
                if (r < 0)
                        return r;
                r = backend_random_u64(&rnd[1]);
                if (r < 0)
                        return r;
                snprintf(name, sizeof(name), "/iomem-%016" PRIx64 "%016" PRIx64, rnd[0], rnd[1]);

                /* P5: a fresh random name, never an existing object or a symlink planted there */
                fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd < 0) {
                        if (errno == EEXIST)
                                continue;
                        return -errno;
                }

                /*
                 * O_EXCL made the name ours and /dev/shm is sticky, so
                 * unlinking it is safe and comes first: nothing is left
                 * behind whatever happens next. After that the object
                 * must have no link at all: a hard link planted between
                 * shm_open and here would let its maker reopen it.
                 */
                shm_unlink(name);
                if (fstat(fd, &st) < 0) {
                        r = -errno;
                        close(fd);
                        return r;
                }
                if (st.st_uid != geteuid() || !S_ISREG(st.st_mode) || st.st_nlink != 0) {
                        close(fd);
                        continue;
                }
                return backend_size_or_close(fd, size, true, fdp);
        }
        return -EEXIST;
}

static const char *backend_tmpdir(const char *tmpdir)
{
        if (tmpdir && *tmpdir)
                return tmpdir;
        tmpdir = secure_getenv("TMPDIR");
        if (tmpdir && *tmpdir)
                return tmpdir;
        return "/tmp";
}

/* mkostemp + unlink, for file systems without O_TMPFILE. */
static int backend_open_mkostemp(const char *dir, int *fdp)
{
        char path[4096];
        int fd, n;

        n = snprintf(path, sizeof(path), "%s/iomem-XXXXXX", dir);
        if (n < 0 || (size_t)n >= sizeof(path))
                return -ENAMETOOLONG;
        fd = mkostemp(path, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        unlink(path);
        *fdp = fd;
        return 0;
}

static int backend_create_file(uint64_t size, const char *tmpdir, int *fdp)
{
        const char *dir = backend_tmpdir(tmpdir);
        int fd, r;

        /* O_EXCL: the file can never be given a name with linkat() */
        fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC | O_EXCL, 0600);
        if (fd < 0) {
                /* EISDIR/EINVAL: kernel or libc without O_TMPFILE; EOPNOTSUPP: the file system lacks it */
                if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
                        return -errno;
                r = backend_open_mkostemp(dir, &fd);
                if (r < 0)
                        return r;
        }
        return backend_size_or_close(fd, size, true, fdp);
}

/* Return: true if @error means "this backend is not available here", so AUTO may try the next one. */
static bool backend_unavailable(int error)
{
        switch (error) {
        case -ENOSYS:
        case -EOPNOTSUPP:
        case -EACCES:
        case -EPERM: /* seccomp filters often answer EPERM */
        case -ENOENT:
                return true;
        default:
                return false;
        }
}

int backend_create(enum proto_backend backend, uint64_t size, uint64_t max_size, const char *tmpdir,
                   int *fdp, enum proto_backend *chosenp)
{
        int fd = -1, r;

        if (!fdp)
                return -EINVAL;
        switch (backend) {
        case PROTO_BACKEND_AUTO:
        case PROTO_BACKEND_MEMFD:
        case PROTO_BACKEND_SHM:
        case PROTO_BACKEND_FILE:
                break;
        default:
                return -EINVAL;
        }

        /* R3: before anything exists */
        r = backend_check_size(size, max_size);
        if (r < 0)
                return r;

        switch (backend) {
        case PROTO_BACKEND_MEMFD:
                r = backend_create_memfd(size, &fd);
                break;
        case PROTO_BACKEND_SHM:
                r = backend_create_shm(size, &fd);
                break;
        case PROTO_BACKEND_FILE:
                r = backend_create_file(size, tmpdir, &fd);
                break;
        default:
                backend = PROTO_BACKEND_MEMFD;
                r = backend_create_memfd(size, &fd);
                if (r < 0 && backend_unavailable(r)) {
                        backend = PROTO_BACKEND_SHM;
                        r = backend_create_shm(size, &fd);
                }
                if (r < 0 && backend_unavailable(r)) {
                        backend = PROTO_BACKEND_FILE;
                        r = backend_create_file(size, tmpdir, &fd);
                }
                break;
        }
        if (r < 0)
                return r;

        *fdp = fd;
        if (chosenp)
                *chosenp = backend;
        return 0;
}

/* ---- huge pages and reservation ----------------------------------------- */

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif
#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

/*
 * The system's policy for transparent huge pages in shmem (memfd, shm,
 * tmpfs), from /sys/kernel/mm/transparent_hugepage/shmem_enabled: the word
 * in brackets. Return: true if shmem objects get huge pages where the kernel
 * can ("always", "within_size", "force"), or through a mapping that asks with
 * MADV_HUGEPAGE ("advise"); false for "never", "deny" or no THP at all.
 */
bool backend_shmem_thp(void)
{
        char buf[256], *open_b, *close_b;
        ssize_t n;
        int fd;

        fd = open("/sys/kernel/mm/transparent_hugepage/shmem_enabled", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return false;
        buf[n] = '\0';
        open_b = strchr(buf, '[');
        close_b = open_b ? strchr(open_b, ']') : NULL;
        if (!close_b)
                return false;
        *close_b = '\0';
        open_b++;
        return strcmp(open_b, "always") == 0 || strcmp(open_b, "within_size") == 0 ||
               strcmp(open_b, "advise") == 0 || strcmp(open_b, "force") == 0;
}

int backend_reserve_range(int fd, uint64_t offset, uint64_t len)
{
        int r;

        if (len == 0)
                return 0;
        if (offset > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - offset)
                return -EFBIG;
        do
                r = fallocate(fd, 0, (off_t)offset, (off_t)len);
        while (r < 0 && errno == EINTR);
        return r < 0 ? -errno : 0;
}

int backend_reserve_ahead(int fd, uint64_t offset, uint64_t len)
{
        int r;

        if (len == 0)
                return 0;
        if (offset > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - offset)
                return -EFBIG;
        do
                r = fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len);
        while (r < 0 && errno == EINTR);
        return r < 0 ? -errno : 0;
}

int backend_drop_ahead(int fd)
{
        struct statfs sfs;
        struct stat st;
        int r;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (ftruncate(fd, st.st_size) < 0)
                return -errno;
        /*
         * hugetlbfs kept its pages past the end through a same-size ftruncate
         * where seal2 measured it (6.18 frees them, and this punch then finds
         * nothing): punch them out as well (-EPERM under F_SEAL_WRITE)
         */
        if (fstatfs(fd, &sfs) < 0 || sfs.f_type != HUGETLBFS_MAGIC)
                return 0;
        do
                r = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, st.st_size, INT64_MAX - st.st_size);
        while (r < 0 && errno == EINTR);
        return r < 0 ? -errno : 0;
}

static int backend_reserve(int fd, uint64_t size)
{
        return backend_reserve_range(fd, 0, size);
}

/*
 * A hugetlbfs memfd of @size bytes in pages of 2^@shift bytes (0: the
 * system's default size), with its pages taken from the pool now: hugetlb
 * pages that are not there at fault time are a SIGBUS, never a wait.
 * Return: 0 with *fdp and *page_shiftp; -EINVAL (size not a multiple of the
 * page size, or no such page size); -ENOSPC/-ENOMEM (the pool is short);
 * negative errno.
 */
static int backend_create_hugetlb(uint64_t size, unsigned shift, int *fdp, unsigned *page_shiftp)
{
        unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | (shift << MFD_HUGE_SHIFT);
        struct statfs sfs;
        uint64_t page;
        int fd, r;

        if (shift && (shift < 16 || shift > 40))
                return -EINVAL;
        fd = memfd_create(BACKEND_MEMFD_NAME, flags | MFD_NOEXEC_SEAL);
        if (fd < 0 && errno == EINVAL)
                fd = memfd_create(BACKEND_MEMFD_NAME, flags);
        if (fd < 0)
                return -errno;
        if (fstatfs(fd, &sfs) < 0 || sfs.f_type != HUGETLBFS_MAGIC || sfs.f_bsize <= 0) {
                r = -EINVAL;
                goto fail;
        }
        page = (uint64_t)sfs.f_bsize;
        if (size % page != 0) {
                r = -EINVAL; /* hugetlbfs sizes and mappings are whole pages */
                goto fail;
        }
        if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t)size) < 0) {
                r = -errno;
                goto fail;
        }
        r = backend_reserve(fd, size);
        if (r < 0)
                goto fail;
        *page_shiftp = (unsigned)__builtin_ctzll(page);
        *fdp = fd;
        return 0;
fail:
        close(fd);
        return r;
}

int backend_create_pages(enum proto_backend backend, uint64_t size, uint64_t max_size, const char *tmpdir,
                         const struct backend_pages_opts *o, int *fdp, struct backend_pages *pagesp)
{
        struct backend_pages pages = { .backend = backend, .page_shift = 12 };
        enum proto_backend chosen;
        int fd = -1, r;

        if (!fdp || !o || !pagesp)
                return -EINVAL;
        r = backend_check_size(size, max_size);
        if (r < 0)
                return r;
        if (o->huge && o->no_hugetlb)
                pages.hugetlb_error = -EPERM;
        if (o->huge && !o->no_hugetlb && (backend == PROTO_BACKEND_AUTO || backend == PROTO_BACKEND_MEMFD)) {
                /* first choice: hugetlb pages, if the pool has them and the size is whole pages */
                r = backend_create_hugetlb(size, o->huge_shift, &fd, &pages.page_shift);
                if (r == 0) {
                        pages.backend = PROTO_BACKEND_MEMFD;
                        pages.hugetlb = true;
                        pages.reserved = true;
                        *fdp = fd;
                        *pagesp = pages;
                        return 0;
                }
                pages.hugetlb_error = r;
        }
        r = backend_create(backend, size, max_size, tmpdir, &fd, &chosen);
        if (r < 0)
                return r;
        pages.backend = chosen;
        /* then transparent huge pages, where the system gives them to shmem objects */
        if (o->huge && chosen != PROTO_BACKEND_FILE && backend_shmem_thp())
                pages.thp = true;
        if (o->reserve) {
                r = backend_reserve(fd, size);
                if (r < 0) {
                        close(fd);
                        return r;
                }
                pages.reserved = true;
        }
        *fdp = fd;
        *pagesp = pages;
        return 0;
}

int backend_resize(int fd, uint64_t size, uint64_t max_size)
{
        int r;

        r = backend_check_size(size, max_size);
        if (r < 0)
                return r;
        if (ftruncate(fd, (off_t)size) < 0)
                return -errno;
        return 0;
}

/*
 * A regular tmpfs file (what shm_open makes) also answers F_GET_SEALS,
 * with F_SEAL_SEAL set from birth, and F_ADD_SEALS on it says EPERM. Only
 * a memfd can really be sealed, so ask what the object is first.
 */
static int backend_is_memfd(int fd)
{
        int r = backend_detect(fd);

        if (r < 0)
                return r;
        return r == PROTO_BACKEND_MEMFD;
}

int backend_seal(int fd, uint32_t seals)
{
        int r;

        if (seals & ~PROTO_SEALS_KNOWN)
                return -EINVAL;
        r = backend_is_memfd(fd);
        if (r < 0)
                return r;
        if (r == 0)
                return -EOPNOTSUPP;
        if (fcntl(fd, F_ADD_SEALS, (int)seals) < 0)
                return errno == EINVAL ? -EOPNOTSUPP : -errno;
        return 0;
}

int backend_get_seals(int fd)
{
        int r;

        r = backend_is_memfd(fd);
        if (r < 0)
                return r;
        if (r == 0)
                return 0;
        r = fcntl(fd, F_GET_SEALS);
        if (r < 0)
                return errno == EINVAL ? 0 : -errno;
        return (int)((uint32_t)r & PROTO_SEALS_KNOWN);
}

int backend_get_size(int fd, uint64_t *sizep)
{
        struct stat st;

        if (!sizep)
                return -EINVAL;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (st.st_size < 0)
                return -EINVAL;
        *sizep = (uint64_t)st.st_size;
        return 0;
}

/* Return: the length of the /proc/self/fd link read into @buf, or negative errno. */
static int backend_fd_link(int fd, char *buf, size_t size)
{
        char path[64];
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        n = readlink(path, buf, size - 1);
        if (n < 0)
                return -errno;
        buf[n] = '\0';
        return (int)n;
}

int backend_detect_with(int fd, const struct stat *st, const struct statfs *sfs)
{
        char link[4096];
        bool tmpfs;
        int r;

        if (!S_ISREG(st->st_mode))
                return -EINVAL;
        tmpfs = sfs->f_type == TMPFS_MAGIC;

        r = backend_fd_link(fd, link, sizeof(link));
        if (r >= 0) {
                if (strncmp(link, "/memfd:", strlen("/memfd:")) == 0)
                        return PROTO_BACKEND_MEMFD;
                if (tmpfs && strncmp(link, "/dev/shm/", strlen("/dev/shm/")) == 0)
                        return PROTO_BACKEND_SHM;
                return PROTO_BACKEND_FILE;
        }

        if (fcntl(fd, F_GET_SEALS) >= 0 && tmpfs)
                return PROTO_BACKEND_MEMFD;
        return PROTO_BACKEND_FILE;
}

int backend_detect(int fd)
{
        struct stat st;
        struct statfs sfs;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        if (fstatfs(fd, &sfs) < 0)
                return -errno;
        return backend_detect_with(fd, &st, &sfs);
}

/* Return: "memfd", "shm", "file", "auto" or NULL. */
const char *backend_name(enum proto_backend backend)
{
        switch (backend) {
        case PROTO_BACKEND_AUTO:
                return "auto";
        case PROTO_BACKEND_MEMFD:
                return "memfd";
        case PROTO_BACKEND_SHM:
                return "shm";
        case PROTO_BACKEND_FILE:
                return "file";
        }
        return NULL;
}

/* Return: the backend for a name, or -EINVAL. */
int backend_from_name(const char *name)
{
        static const enum proto_backend all[] = {
                PROTO_BACKEND_AUTO,
                PROTO_BACKEND_MEMFD,
                PROTO_BACKEND_SHM,
                PROTO_BACKEND_FILE,
        };

        if (!name)
                return -EINVAL;
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
                if (strcmp(name, backend_name(all[i])) == 0)
                        return (int)all[i];
        return -EINVAL;
}

/*
 * backend_reopen_rdonly_stat() - a new read-only fd to the same object via
 * /proc/self/fd, checked to be the same inode: the one @dev/@ino name, or, if
 * both are 0, the one @fd has now (one more fstat). *@stp gets the new fd's
 * fstat (its size is the object's size now), so a caller needs no other.
 * Return: 0 with *fdp set, or negative errno (-ESTALE: another inode).
 */
int backend_reopen_rdonly_stat(int fd, uint64_t dev, uint64_t ino, int *fdp, struct stat *stp)
{
        char path[64];
        struct stat a, b;
        int nfd, r;

        if (!fdp)
                return -EINVAL;
        if (!dev && !ino) {
                if (fstat(fd, &a) < 0)
                        return -errno;
                if (!S_ISREG(a.st_mode))
                        return -EINVAL;
                dev = (uint64_t)a.st_dev;
                ino = (uint64_t)a.st_ino;
        }

        /*
         * O_NONBLOCK: whoever owns the inode (a REGISTER client) may hold a
         * write lease on it (F_SETLEASE), and a blocking open() waits for the
         * lease break, up to /proc/sys/fs/lease-break-time (45 s), with the
         * daemon's whole event loop. Non-blocking, the open starts the break
         * and fails at once with EWOULDBLOCK: the request says -EAGAIN. The
         * flag is cleared on the new description before it is handed out.
         */
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        nfd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (nfd < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        if (fcntl(nfd, F_SETFL, 0) < 0 || fstat(nfd, &b) < 0) {
                r = -errno;
                close(nfd);
                return r;
        }
        if ((uint64_t)b.st_dev != dev || (uint64_t)b.st_ino != ino || !S_ISREG(b.st_mode)) {
                close(nfd);
                return -ESTALE;
        }
        if (stp)
                *stp = b;
        *fdp = nfd;
        return 0;
}

int backend_reopen_rdonly(int fd, int *fdp)
{
        return backend_reopen_rdonly_stat(fd, 0, 0, fdp, NULL);
}
