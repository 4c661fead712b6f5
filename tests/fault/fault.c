/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fault: LD_PRELOAD library that fails the Nth call of an allocator or syscall in iomemd (test builds only). */
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fault.h"

/*
 * Interposed: malloc/calloc/realloc (counted in live_allocs with free and
 * the aligned allocators), memfd_create, shm_open, open/openat,
 * ftruncate, fallocate, accept4, recvmsg, sendmsg, fcntl(F_DUPFD_CLOEXEC), pwrite.
 * Without $IOMEM_FAULT_CTL every call passes straight through. Helper
 * processes of the daemon (fd keepers, forked or exec'd) share the control
 * page: their calls are counted and failed like the daemon's, but only the
 * process named by $IOMEM_FAULT_COUNT_PID (default: the first to load us)
 * counts heap blocks.
 * The allocators call glibc's __libc_* entry points, so dlsym's own
 * allocations cannot recurse into us.
 */

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t size);

static struct fault_ctl *fault_ctl;
static bool fault_trace; /* $IOMEM_FAULT_TRACE: print a backtrace at each injected fault */
static pid_t fault_pid;  /* live_allocs counts this process only, not children forked without exec (keepers) */

__attribute__((constructor)) static void fault_init(void)
{
        const char *path = getenv("IOMEM_FAULT_CTL");
        void *p;
        int fd;

        if (!path)
                return;
        if (getenv("IOMEM_FAULT_TRACE")) {
                void *frames[2];

                backtrace(frames, 2); /* loads libgcc now, not inside a fault */
                fault_trace = true;
        }
        fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return;
        p = mmap(NULL, sizeof(struct fault_ctl), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        syscall(SYS_close, fd);
        if (p != MAP_FAILED && ((struct fault_ctl *)p)->magic == FAULT_MAGIC) {
                const char *owner = getenv("IOMEM_FAULT_COUNT_PID");

                /* exec'd helpers (fd keepers run /proc/self/exe) inherit the env: count the daemon's blocks only */
                fault_pid = owner ? (pid_t)atoi(owner) : (pid_t)syscall(SYS_getpid);
                fault_ctl = p;
        }
}

/* Count a call of @f. Return: true if this call must fail (errno is set). */
static bool fault_hit(enum fault_func f)
{
        struct fault_ctl *c = fault_ctl;

        if (!c)
                return false;
        __atomic_fetch_add(&c->calls[f], 1, __ATOMIC_RELAXED);
        if (__atomic_load_n(&c->func, __ATOMIC_ACQUIRE) != (int32_t)f)
                return false;
        if (__atomic_load_n(&c->sticky, __ATOMIC_ACQUIRE)) {
                __atomic_fetch_add(&c->injected, 1, __ATOMIC_RELAXED);
                errno = c->err;
                return true;
        }
        if (__atomic_load_n(&c->countdown, __ATOMIC_ACQUIRE) <= 0)
                return false;
        if (__atomic_sub_fetch(&c->countdown, 1, __ATOMIC_ACQ_REL) != 0)
                return false;
        __atomic_fetch_add(&c->injected, 1, __ATOMIC_RELAXED);
        if (fault_trace) {
                void *frames[16];
                int n = backtrace(frames, 16);

                (void)!write(2, "fault: injected here:\n", 22);
                backtrace_symbols_fd(frames, n, 2);
        }
        errno = c->err;
        return true;
}

static void fault_allocs(int64_t delta)
{
        if (fault_ctl && (pid_t)syscall(SYS_getpid) == fault_pid)
                __atomic_fetch_add(&fault_ctl->live_allocs, delta, __ATOMIC_RELAXED);
}

#define FAULT_REAL(name) ((__typeof__(&name))fault_real(#name))

static void *fault_real(const char *name)
{
        void *p = dlsym(RTLD_NEXT, name);

        if (!p)
                abort();
        return p;
}

/* ---- allocators --------------------------------------------------------- */

void *malloc(size_t size)
{
        void *p;

        if (fault_hit(FAULT_MALLOC))
                return NULL;
        p = __libc_malloc(size);
        if (p)
                fault_allocs(1);
        return p;
}

void *calloc(size_t n, size_t size)
{
        void *p;

        if (fault_hit(FAULT_MALLOC))
                return NULL;
        p = __libc_calloc(n, size);
        if (p)
                fault_allocs(1);
        return p;
}

void *realloc(void *old, size_t size)
{
        void *p;

        if (old && size == 0) {
                fault_allocs(-1);
                return __libc_realloc(old, 0);
        }
        if (fault_hit(FAULT_MALLOC))
                return NULL;
        p = __libc_realloc(old, size);
        if (p && !old)
                fault_allocs(1);
        return p;
}

void free(void *p)
{
        if (p)
                fault_allocs(-1);
        __libc_free(p);
}

int posix_memalign(void **pp, size_t align, size_t size)
{
        void *p = __libc_memalign(align, size);

        if (!p)
                return ENOMEM;
        fault_allocs(1);
        *pp = p;
        return 0;
}

void *aligned_alloc(size_t align, size_t size)
{
        void *p = __libc_memalign(align, size);

        if (p)
                fault_allocs(1);
        return p;
}

void *memalign(size_t align, size_t size);
void *memalign(size_t align, size_t size)
{
        return aligned_alloc(align, size);
}

/* ---- syscalls ----------------------------------------------------------- */

int memfd_create(const char *name, unsigned flags)
{
        if (fault_hit(FAULT_MEMFD_CREATE))
                return -1;
        return FAULT_REAL(memfd_create)(name, flags);
}

int shm_open(const char *name, int flags, mode_t mode)
{
        if (fault_hit(FAULT_SHM_OPEN))
                return -1;
        return FAULT_REAL(shm_open)(name, flags, mode);
}

static mode_t fault_mode(int flags, va_list ap)
{
        return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...);
int open64(const char *path, int flags, ...);
int openat(int dirfd, const char *path, int flags, ...);
int openat64(int dirfd, const char *path, int flags, ...);

int open(const char *path, int flags, ...)
{
        va_list ap;
        mode_t mode;

        va_start(ap, flags);
        mode = fault_mode(flags, ap);
        va_end(ap);
        if (fault_hit(FAULT_OPEN))
                return -1;
        return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
        va_list ap;
        mode_t mode;

        va_start(ap, flags);
        mode = fault_mode(flags, ap);
        va_end(ap);
        if (fault_hit(FAULT_OPEN))
                return -1;
        return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
        va_list ap;
        mode_t mode;

        va_start(ap, flags);
        mode = fault_mode(flags, ap);
        va_end(ap);
        if (fault_hit(FAULT_OPEN))
                return -1;
        return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
        va_list ap;
        mode_t mode;

        va_start(ap, flags);
        mode = fault_mode(flags, ap);
        va_end(ap);
        if (fault_hit(FAULT_OPEN))
                return -1;
        return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

int ftruncate(int fd, off_t length)
{
        if (fault_hit(FAULT_FTRUNCATE))
                return -1;
        return FAULT_REAL(ftruncate)(fd, length);
}

int ftruncate64(int fd, off_t length);
int ftruncate64(int fd, off_t length)
{
        return ftruncate(fd, length);
}

int fallocate(int fd, int mode, off_t offset, off_t len)
{
        if (fault_hit(FAULT_FALLOCATE))
                return -1;
        return FAULT_REAL(fallocate)(fd, mode, offset, len);
}

int fallocate64(int fd, int mode, off_t offset, off_t len);
int fallocate64(int fd, int mode, off_t offset, off_t len)
{
        return fallocate(fd, mode, offset, len);
}

int accept4(int fd, struct sockaddr *addr, socklen_t *lenp, int flags)
{
        if (fault_hit(FAULT_ACCEPT4))
                return -1;
        return FAULT_REAL(accept4)(fd, addr, lenp, flags);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
        if (fault_hit(FAULT_RECVMSG))
                return -1;
        return FAULT_REAL(recvmsg)(fd, msg, flags);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
        if (fault_hit(FAULT_SENDMSG))
                return -1;
        return FAULT_REAL(sendmsg)(fd, msg, flags);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t offset)
{
        int saved = errno;

        if (fault_ctl) {
                __atomic_store_n(&fault_ctl->last_offset, (int64_t)offset, __ATOMIC_RELEASE);
                if (offset != 0 && __atomic_load_n(&fault_ctl->pass_offset, __ATOMIC_ACQUIRE) == (int64_t)offset) {
                        __atomic_fetch_add(&fault_ctl->calls[FAULT_PWRITE], 1, __ATOMIC_RELAXED);
                        __atomic_fetch_add(&fault_ctl->pass_hits, 1, __ATOMIC_RELEASE);
                        return FAULT_REAL(pwrite)(fd, buf, n, offset);
                }
        }
        if (fault_hit(FAULT_PWRITE)) {
                if (fault_ctl->err)
                        return -1;
                /* err 0: a short write, as a full disk makes it: the first half written, errno left as it was */
                if (fault_ctl->then_err) {
                        fault_ctl->err = fault_ctl->then_err;
                        fault_ctl->then_err = 0;
                }
                errno = saved;
                return FAULT_REAL(pwrite)(fd, buf, n / 2, offset);
        }
        return FAULT_REAL(pwrite)(fd, buf, n, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t offset);
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t offset)
{
        return pwrite(fd, buf, n, offset);
}

static int fault_fcntl(int fd, int cmd, va_list ap)
{
        /* every fcntl command the daemon uses takes an int or a pointer; pass the word through */
        unsigned long arg = va_arg(ap, unsigned long);

        if (cmd == F_DUPFD_CLOEXEC && fault_hit(FAULT_DUPFD))
                return -1;
        return (int)syscall(SYS_fcntl, fd, cmd, arg);
}

int fcntl(int fd, int cmd, ...)
{
        va_list ap;
        int r;

        va_start(ap, cmd);
        r = fault_fcntl(fd, cmd, ap);
        va_end(ap);
        return r;
}

int fcntl64(int fd, int cmd, ...);
int fcntl64(int fd, int cmd, ...)
{
        va_list ap;
        int r;

        va_start(ap, cmd);
        r = fault_fcntl(fd, cmd, ap);
        va_end(ap);
        return r;
}
