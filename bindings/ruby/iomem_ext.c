/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* iomem_ext: the Ruby binding of libiomem (module IOMem: Region, Client), built on client/iomem.h only. */

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <ruby.h>
#include <ruby/io.h>
#include <ruby/io/buffer.h>
#include <ruby/thread.h>
#include <ruby/fiber/scheduler.h>

#include "iomem.h"

/* names are copied out of Ruby strings before the GVL is released (a string may move or change meanwhile) */
#define NAME_COPY_MAX 1024
/* a region name's (or prefix's) limit (docs/protocol.md), and a socket path's (sun_path, its NUL included) */
#define NAME_MAX_BYTES 255
#define SOCKET_PATH_MAX_BYTES (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/*
 * rb_thread_interrupted()'s value is Ruby's interrupt flag, whose bits say what is pending (ruby/thread.h: "if you
 * know which bit means which"): PENDING_INTERRUPT_MASK (an exception or kill from another thread, or raised on
 * itself) is 0x02, TRAP_INTERRUPT_MASK (a signal's trap, main thread only) 0x08 (vm_core.h, Ruby 2.x to 3.3).
 */
#define RB_PENDING_INTERRUPT 0x02

/*
 * A signal's trap pending this long ends a call that cannot be asked again (client_interrupted()): Ctrl-C and
 * SIGTERM must stop a process whose daemon stopped answering, while a trap that returns (Ruby's own SIGCHLD) must
 * not fail a call a live daemon answers within this time.
 */
#define TRAP_GRACE_MS 2000

/* OPEN with a wait asks the daemon in slices this long, so that Ctrl-C and Thread#kill get through in between */
#define WAIT_SLICE_MS 200

static VALUE mIOMem, cRegion, cClient, cStat, cEntry, cStatus, cQuota, cEvent, cMetric;

/* ---- errors ------------------------------------------------------------- */

/*
 * Raise the Errno:: class of the negative errno @r. The message says what
 * was asked (@what, and @name when not nil) and what the error means for
 * iomemd (iomem_strerror), e.g. Errno::ENOENT "... - open "x": no region
 * with this name". Daemon calls use raise_op_error(), which prefers the
 * daemon's own detail.
 */
static void NORETURN(raise_error(int r, const char *what, VALUE name));
static void raise_error(int r, const char *what, VALUE name)
{
        VALUE msg;

        if (NIL_P(name))
                msg = rb_sprintf("%s: %s", what, iomem_strerror(r));
        else
                msg = rb_sprintf("%s \"%" PRIsVALUE "\": %s", what, name, iomem_strerror(r));
        rb_syserr_fail_str(r < 0 ? -r : r, msg);
}

/* Raise for a failed daemon call: the daemon's own detail when it sent one, else iomem_strerror's words. */
struct op;
static void NORETURN(raise_op_error(const struct op *o, const char *what, VALUE name));

/* Raise the Errno:: class of @r with @what alone (checks of our own, where iomem_strerror's words would mislead). */
static void NORETURN(raise_errno(int r, const char *what));
static void raise_errno(int r, const char *what)
{
        rb_syserr_fail(r < 0 ? -r : r, what);
}

/* Return: @v (an Integer) as uint64_t; Errno::EINVAL "@what: negative size" below 0. */
static uint64_t to_u64(VALUE v, const char *what)
{
        v = rb_to_int(v);
        if (FIXNUM_P(v) ? FIX2LONG(v) < 0 : RTEST(rb_funcall(v, '<', 1, INT2FIX(0))))
                raise_errno(-EINVAL, what);
        return NUM2ULL(v);
}

/*
 * Return: @v (an Integer) as uint32_t; Errno::EINVAL "@what" below 0 (NUM2UINT would wrap -2 to 4294967294),
 * RangeError past 2**32 - 1.
 */
static uint32_t to_u32(VALUE v, const char *what)
{
        v = rb_to_int(v);
        if (FIXNUM_P(v) ? FIX2LONG(v) < 0 : RTEST(rb_funcall(v, '<', 1, INT2FIX(0))))
                raise_errno(-EINVAL, what);
        return NUM2UINT(v);
}

/*
 * A region's mode: 0 to 0o777, what the daemon accepts (setuid, setgid and sticky bits included, it answers
 * "malformed CREATE", CHMOD..., which names no argument): ArgumentError above, Errno::EINVAL @what when negative.
 */
static uint32_t to_mode(VALUE v, const char *what)
{
        v = rb_to_int(v);
        if (FIXNUM_P(v) ? FIX2LONG(v) > 0777 : RTEST(rb_funcall(v, '>', 1, INT2FIX(0777))))
                rb_raise(rb_eArgError, "mode 0o%" PRIsVALUE ": a region's mode is 0 to 0o777 (permission bits only)",
                         rb_funcall(v, rb_intern("to_s"), 1, INT2FIX(8)));
        return to_u32(v, what);
}

static bool io_closed(VALUE io)
{
        return RTEST(rb_funcall(io, rb_intern("closed?"), 0));
}

/* ---- seals -------------------------------------------------------------- */

static const struct {
        const char *name;
        uint32_t bit;
} seal_names[] = {
        { "seal", IOMEM_SEAL_SEAL },   { "shrink", IOMEM_SEAL_SHRINK },
        { "grow", IOMEM_SEAL_GROW },   { "write", IOMEM_SEAL_WRITE },
        { "future_write", IOMEM_SEAL_FUTURE_WRITE },
};

#define SEAL_ALL (IOMEM_SEAL_SEAL | IOMEM_SEAL_SHRINK | IOMEM_SEAL_GROW | IOMEM_SEAL_WRITE | IOMEM_SEAL_FUTURE_WRITE)

/* Return: the seal bits as an Array of Symbols (:seal, :shrink, :grow, :write, :future_write). */
static VALUE seals_to_ruby(uint32_t seals)
{
        VALUE a = rb_ary_new();

        for (size_t i = 0; i < sizeof(seal_names) / sizeof(seal_names[0]); i++)
                if (seals & seal_names[i].bit)
                        rb_ary_push(a, ID2SYM(rb_intern(seal_names[i].name)));
        return a;
}

/* Return: the bits of @v: an Integer, a Symbol or String such as "shrink,grow", or an Array of those. */
static uint32_t seals_from_ruby(VALUE v)
{
        uint32_t seals = 0;
        int r;

        if (RB_TYPE_P(v, T_ARRAY)) {
                for (long i = 0; i < RARRAY_LEN(v); i++)
                        seals |= seals_from_ruby(RARRAY_AREF(v, i));
                return seals;
        }
        if (RB_INTEGER_TYPE_P(v)) {
                /* never wrapped (NUM2UINT takes -1 as every bit); unknown bits said here, not as "malformed" */
                seals = to_u32(v, "seals: negative");
                if (seals & ~SEAL_ALL)
                        rb_raise(rb_eArgError, "unknown seal bits 0x%x (IOMem::SEAL_*: seal, shrink, grow, write, "
                                               "future_write)", seals & ~SEAL_ALL);
                return seals;
        }
        if (SYMBOL_P(v))
                v = rb_sym2str(v);
        r = iomem_seals_parse(StringValueCStr(v), &seals);
        if (r < 0)
                rb_raise(rb_eArgError, "unknown seal in %" PRIsVALUE " (seal, shrink, grow, write, future_write)", v);
        return seals;
}

static enum iomem_backend backend_from_ruby(VALUE v)
{
        static const char *const names[] = { "auto", "memfd", "shm", "file" };

        if (NIL_P(v))
                return IOMEM_BACKEND_AUTO;
        if (SYMBOL_P(v))
                v = rb_sym2str(v);
        for (int i = 0; i < 4; i++)
                if (strcmp(StringValueCStr(v), names[i]) == 0)
                        return (enum iomem_backend)i;
        rb_raise(rb_eArgError, "unknown backend %" PRIsVALUE " (auto, memfd, shm, file)", v);
}

static VALUE backend_to_ruby(enum iomem_backend b)
{
        const char *name = iomem_backend_name(b);

        return name ? ID2SYM(rb_intern(name)) : INT2NUM((int)b);
}

/*
 * Copy a region name (or prefix; @socket: a socket path) out of @v (nil or "" gives NULL when @allow_null).
 * Too long: Errno::EINVAL for a name, Errno::ENAMETOOLONG for a socket path (as libiomem), saying the limit
 * and the length, whatever the length (the copy's room, NAME_COPY_MAX, is not a limit of anyone's).
 */
static const char *name_copy_how(VALUE v, char buf[NAME_COPY_MAX + 1], bool allow_null, bool socket)
{
        const char *s;
        long len;

        if (allow_null && NIL_P(v))
                return NULL;
        s = StringValueCStr(v); /* ArgumentError for an embedded NUL */
        len = RSTRING_LEN(v);
        if (allow_null && len == 0)
                return NULL;
        if (socket && (unsigned long)len > SOCKET_PATH_MAX_BYTES)
                rb_syserr_fail_str(ENAMETOOLONG, rb_sprintf("socket path longer than %u bytes (%ld bytes)",
                                                            (unsigned)SOCKET_PATH_MAX_BYTES, len));
        if (!socket && len > NAME_MAX_BYTES)
                rb_syserr_fail_str(EINVAL, rb_sprintf("name longer than %d bytes (%ld bytes)", NAME_MAX_BYTES, len));
        memcpy(buf, s, (size_t)len + 1);
        return buf;
}

/* name_copy_how() for a region name or prefix */
static const char *name_copy(VALUE v, char buf[NAME_COPY_MAX + 1], bool allow_null)
{
        return name_copy_how(v, buf, allow_null, false);
}

/* ---- IOMem::Region ------------------------------------------------------ */

/*
 * A Region owns one struct iomem_region, hence one fd. Region#io hands out
 * an IO over a duplicate of that fd (so IO#close and Region#close never
 * close each other's fd); it is remembered and closed by Region#close.
 * Mappings are IO::Buffers flagged MAPPED: Ruby unmaps them when the
 * buffer is freed or collected, and they stay valid after Region#close,
 * as mmap() does.
 */
struct rb_region {
        struct iomem_region *region;
        VALUE io;
        uint64_t generation; /* the version Client#open returned, 0 if unknown */
        VALUE name;          /* the name Client#create/open was given (a frozen copy), nil for local/anonymous */
};

static void region_mark(void *p)
{
        struct rb_region *rr = p;

        rb_gc_mark(rr->io);
        rb_gc_mark(rr->name);
}

static void region_free(void *p)
{
        struct rb_region *rr = p;

        iomem_region_free(rr->region);
        xfree(rr);
}

static size_t region_memsize(const void *p)
{
        return sizeof(struct rb_region);
}

static const rb_data_type_t region_type = {
        .wrap_struct_name = "IOMem::Region",
        .function = { .dmark = region_mark, .dfree = region_free, .dsize = region_memsize },
        .flags = RUBY_TYPED_FREE_IMMEDIATELY,
};

static VALUE region_alloc(VALUE klass)
{
        struct rb_region *rr;
        VALUE obj = TypedData_Make_Struct(klass, struct rb_region, &region_type, rr);

        rr->io = Qnil;
        rr->name = Qnil;
        return obj;
}

static struct rb_region *region_get(VALUE self)
{
        return rb_check_typeddata(self, &region_type);
}

/* Remember the name @obj was created or opened by (nil or "" is anonymous: nil), for Region#name and #inspect. */
static void region_set_name(VALUE obj, VALUE name)
{
        region_get(obj)->name = RB_TYPE_P(name, T_STRING) && RSTRING_LEN(name) > 0
                                        ? rb_obj_freeze(rb_str_dup(name))
                                        : Qnil;
}

static struct iomem_region *region_open_get(VALUE self)
{
        struct rb_region *rr = region_get(self);

        if (!rr->region)
                rb_raise(rb_eIOError, "closed region");
        return rr->region;
}

/*
 * Region.new(size, backend: :auto, max_size: 0) - a local region (memfd,
 * shm or unlinked file), no daemon involved.
 */
static VALUE region_initialize(int argc, VALUE *argv, VALUE self)
{
        static ID kw[2];
        struct rb_region *rr = region_get(self);
        VALUE size, opts, vals[2] = { Qundef, Qundef };
        enum iomem_backend backend = IOMEM_BACKEND_AUTO;
        uint64_t max_size = 0, n;
        int r;

        if (!kw[0]) {
                kw[0] = rb_intern("backend");
                kw[1] = rb_intern("max_size");
        }
        rb_scan_args(argc, argv, "1:", &size, &opts);
        if (!NIL_P(opts))
                rb_get_kwargs(opts, kw, 0, 2, vals);
        if (vals[0] != Qundef)
                backend = backend_from_ruby(vals[0]);
        if (vals[1] != Qundef)
                max_size = to_u64(vals[1], "new region: negative max_size");
        if (rr->region)
                rb_raise(rb_eRuntimeError, "region already initialized");
        n = to_u64(size, "new region: negative size");
        r = iomem_region_new_local(n, backend, max_size, &rr->region);
        if (r == -EFBIG) /* libiomem's words ("size above the limit") name neither the limit nor the remedy */
                rb_syserr_fail_str(EFBIG, max_size ? rb_sprintf("new region: size %llu is above max_size %llu: pass "
                                                                "a larger max_size:", (unsigned long long)n,
                                                                (unsigned long long)max_size)
                                                   : rb_sprintf("new region: size %llu is above the default "
                                                                "max_size (64 GiB): pass a larger max_size:",
                                                                (unsigned long long)n));
        if (r < 0)
                raise_error(r, "new region", Qnil);
        return self;
}

/* Region.from_io(io) - a region over a duplicate of an IO's fd (e.g. one received with recv_io). */
static VALUE region_s_from_io(VALUE klass, VALUE io)
{
        VALUE obj = region_alloc(klass);
        struct rb_region *rr = region_get(obj);
        struct stat st;
        int fd, r;
        bool reg;

        io = rb_convert_type(io, T_FILE, "IO", "to_io");
        fd = fcntl(rb_io_descriptor(io), F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                raise_errno(-errno, "from_io: dup");
        reg = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
        r = iomem_region_new_consume_fd(fd, &rr->region);
        fd = -1; /* consumed */
        if (r == -EINVAL) /* libiomem's words would speak of names, flags, sizes and seals */
                raise_errno(r, reg ? "from_io: a memory file opened write-only (or O_PATH): open it readable"
                                   : "from_io: not a memory file (a memfd, shm object or regular file)");
        if (r < 0)
                raise_error(r, "from_io", Qnil);
        return obj;
}

static VALUE region_close(VALUE self)
{
        struct rb_region *rr = region_get(self);
        VALUE io = rr->io;

        rr->io = Qnil;
        if (!NIL_P(io) && !io_closed(io))
                rb_io_close(io);
        rr->region = iomem_region_free(rr->region);
        return Qnil;
}

static VALUE region_closed_p(VALUE self)
{
        return region_get(self)->region ? Qfalse : Qtrue;
}

static VALUE region_size(VALUE self)
{
        return ULL2NUM(iomem_region_size(region_open_get(self)));
}

static bool region_read_only(struct iomem_region *region)
{
        return iomem_region_flags(region) & IOMEM_REGION_RDONLY;
}

static VALUE region_read_only_p(VALUE self)
{
        return region_read_only(region_open_get(self)) ? Qtrue : Qfalse;
}

static VALUE region_id(VALUE self)
{
        return ULL2NUM(iomem_region_id(region_open_get(self)));
}

static VALUE region_backend(VALUE self)
{
        return backend_to_ruby(iomem_region_backend(region_open_get(self)));
}

/* Region#generation - the generation of the version Client#open(after_generation:) returned, else nil. */
static VALUE region_generation(VALUE self)
{
        uint64_t g = region_get(self)->generation;

        return g ? ULL2NUM(g) : Qnil;
}

/* Region#name - the name Client#create or #open was given, nil for a local or anonymous region. */
static VALUE region_name(VALUE self)
{
        return region_get(self)->name;
}

/* Region#inspect - what it is: name, size, backend, access, fd (or closed). */
static VALUE region_inspect(VALUE self)
{
        struct rb_region *rr = region_get(self);
        VALUE klass = rb_class_name(rb_obj_class(self));
        const char *backend;
        int fd;

        if (!rr->region)
                return rb_sprintf("#<%" PRIsVALUE " name=%+" PRIsVALUE " closed>", klass, rr->name);
        backend = iomem_backend_name(iomem_region_backend(rr->region));
        fd = iomem_region_fd(rr->region);
        if (fd < 0) /* iomemd sent an fd that is not a regular file */
                return rb_sprintf("#<%" PRIsVALUE " name=%+" PRIsVALUE " invalid fd>", klass, rr->name);
        return rb_sprintf("#<%" PRIsVALUE " name=%+" PRIsVALUE " size=%llu backend=%s%s fd=%d>", klass, rr->name,
                          (unsigned long long)iomem_region_size(rr->region), backend ? backend : "?",
                          region_read_only(rr->region) ? " read-only" : "", fd);
}

static VALUE region_flags(VALUE self)
{
        return UINT2NUM(iomem_region_flags(region_open_get(self)));
}

/* Region#refresh - re-read the size with fstat (another process may have resized it). Return: the size. */
static VALUE region_refresh(VALUE self)
{
        struct iomem_region *region = region_open_get(self);
        int r = iomem_region_refresh(region);

        if (r < 0)
                raise_error(r, "refresh", Qnil);
        return ULL2NUM(iomem_region_size(region));
}

struct map_args {
        void *addr;
        size_t length;
        int flags;
};

static VALUE map_wrap(VALUE p)
{
        struct map_args *a = (struct map_args *)p;

        return rb_io_buffer_new(a->addr, a->length, (enum rb_io_buffer_flags)a->flags);
}

/*
 * Region#map(size = nil, offset = 0, read_only: nil) - an IO::Buffer over a
 * new shared mapping (no copy). size nil = to the end. read_only nil =
 * read-only if the region's fd is read-only or it is sealed against
 * writes; read_only: false on such a region raises Errno::EACCES/EPERM.
 * A read-only mapping gives a READONLY buffer: writes raise
 * IO::Buffer::AccessError. The buffer owns the mapping (IO::Buffer#free or
 * GC unmaps it), and stays valid after Region#close.
 */
static VALUE region_map(int argc, VALUE *argv, VALUE self)
{
        static ID kw;
        struct iomem_region *region = region_open_get(self);
        VALUE vsize, voffset, opts, ro = Qundef, buf;
        struct map_args a = { 0 };
        uint64_t offset = 0, size;
        bool read_only, guess;
        int r, prot, state = 0;

        if (!kw)
                kw = rb_intern("read_only");
        rb_scan_args(argc, argv, "02:", &vsize, &voffset, &opts);
        if (!NIL_P(opts))
                rb_get_kwargs(opts, &kw, 0, 1, &ro);
        if (!NIL_P(voffset))
                offset = to_u64(voffset, "map: negative offset");
        guess = ro == Qundef || NIL_P(ro);
        read_only = guess ? region_read_only(region) : RTEST(ro);
        /* nil = to the end: libiomem maps from its own fstat and updates the region's size */
        size = NIL_P(vsize) ? 0 : to_u64(vsize, "map: negative size");
        if (!NIL_P(vsize) && size == 0) /* libiomem reads 0 as "to the end"; an empty mapping is invalid */
                raise_errno(-EINVAL, "map: zero length");
        if (size > SIZE_MAX)
                raise_error(-EOVERFLOW, "map", Qnil);
        if (offset % (uint64_t)sysconf(_SC_PAGESIZE)) /* libiomem's EINVAL would not say which argument */
                rb_syserr_fail_str(EINVAL, rb_sprintf("map: offset %llu is not a multiple of the page size (%ld)",
                                                      (unsigned long long)offset, sysconf(_SC_PAGESIZE)));
        prot = read_only ? PROT_READ : PROT_READ | PROT_WRITE;
        r = iomem_region_map(region, offset, (size_t)size, prot, &a.addr);
        if (r == -EPERM && guess && !read_only) {
                /* sealed against writes (F_SEAL_WRITE, F_SEAL_FUTURE_WRITE): mmap refuses PROT_WRITE; asking
                 * the seals first would cost four syscalls on every map, so only a refusal falls back */
                read_only = true;
                prot = PROT_READ;
                r = iomem_region_map(region, offset, (size_t)size, prot, &a.addr);
        }
        if (r == -EINVAL && size == 0 && iomem_region_size(region) == offset)
                raise_errno(-EINVAL, "map: zero length");
        if (r < 0)
                raise_error(r, "map", Qnil);
        a.length = size ? (size_t)size : (size_t)(iomem_region_size(region) - offset);
        /* EXTERNAL: shared with others, never resized; MAPPED: IO::Buffer munmaps it when freed */
        a.flags = RB_IO_BUFFER_EXTERNAL | RB_IO_BUFFER_MAPPED | (read_only ? RB_IO_BUFFER_READONLY : 0);
        buf = rb_protect(map_wrap, (VALUE)&a, &state);
        if (state) {
                iomem_unmap(a.addr, a.length);
                rb_jump_tag(state);
        }
        return buf;
}

/* Region#io (alias to_io) - an IO over a close-on-exec duplicate of the fd; send_io works with it. */
static VALUE region_io(VALUE self)
{
        struct rb_region *rr = region_get(self);
        int fd;

        if (!rr->region)
                rb_raise(rb_eIOError, "closed region");
        if (!NIL_P(rr->io) && !io_closed(rr->io))
                return rr->io;
        fd = iomem_region_dup_fd(rr->region);
        if (fd < 0)
                raise_error(fd, "io: dup", Qnil);
        rr->io = rb_io_fdopen(fd, region_read_only(rr->region) ? O_RDONLY : O_RDWR, NULL);
        return rr->io;
}

/*
 * Whether this process maps bytes past @size rounded up to a page of the file @st (a buffer of Region#map, alive or
 * not collected yet, or any other mapping), or with @st NULL of any file it maps shared: shrinking under such a
 * mapping would make its next access there SIGBUS. Read from /proc/self/maps, only when shrinking.
 * Return: true if so; false if not or it cannot be told.
 */
static bool maps_past(const struct stat *st, uint64_t size)
{
        uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), end = (size + page - 1) & ~(page - 1);
        char line[PATH_MAX + 256];
        bool busy = false;
        FILE *f;

        f = fopen("/proc/self/maps", "re");
        if (!f)
                return false;
        while (!busy && fgets(line, sizeof(line), f)) {
                unsigned long lo, hi, ino;
                unsigned long long off;
                unsigned maj, min;
                char perms[8];

                if (sscanf(line, "%lx-%lx %7s %llx %x:%x %lu", &lo, &hi, perms, &off, &maj, &min, &ino) != 7 ||
                    off + (hi - lo) <= end)
                        continue;
                if (st ? ino == (unsigned long)st->st_ino && maj == major(st->st_dev) && min == minor(st->st_dev)
                       : ino != 0 && perms[3] == 's')
                        busy = true;
        }
        fclose(f);
        return busy;
}

/* maps_past() of @fd's file. Return: as maps_past(); false if @fd cannot be read. */
static bool region_mapped_past(int fd, uint64_t size)
{
        struct stat st;

        return fd >= 0 && fstat(fd, &st) == 0 && maps_past(&st, size);
}

/*
 * Region#resize(size) - a local region's new size (ftruncate). Shrinking while this process maps the bytes cut
 * off (a buffer of #map not freed yet) raises Errno::EBUSY: that buffer's next access there would kill the
 * interpreter (SIGBUS). Another process's mappings cannot be seen: seal against shrinking to protect them.
 */
static VALUE region_resize(VALUE self, VALUE size)
{
        struct iomem_region *region = region_open_get(self);
        uint64_t n = to_u64(size, "resize: negative size");
        int r;

        r = iomem_region_refresh(region);
        if (r < 0)
                raise_error(r, "resize", Qnil);
        if (n < iomem_region_size(region) && region_mapped_past(iomem_region_fd(region), n))
                raise_errno(-EBUSY, "resize: bytes past the new size are mapped in this process (IO::Buffer#free "
                                    "the buffers of Region#map first)");
        r = iomem_region_resize(region, n);
        if (r < 0)
                raise_error(r, "resize", Qnil);
        return self;
}

/* Region#seal(*seals) - add seals to a memfd region. Return: the seals now in force. */
static VALUE region_seal(int argc, VALUE *argv, VALUE self)
{
        struct iomem_region *region = region_open_get(self);
        uint32_t seals = seals_from_ruby(rb_ary_new_from_values(argc, argv));
        int r = iomem_region_seal(region, seals);

        if (r < 0)
                raise_error(r, "seal", Qnil);
        r = iomem_region_get_seals(region);
        if (r < 0)
                raise_error(r, "seals", Qnil);
        return seals_to_ruby((uint32_t)r);
}

/* Region#seals - the seals in force, e.g. [:shrink, :grow] ([] for shm/file). */
static VALUE region_seals(VALUE self)
{
        int r = iomem_region_get_seals(region_open_get(self));

        if (r < 0)
                raise_error(r, "seals", Qnil);
        return seals_to_ruby((uint32_t)r);
}

/* With a block: yield @region and close it when the block ends (Return: the block's value); else @region. */
static VALUE region_yield_closing(VALUE region)
{
        if (!rb_block_given_p())
                return region;
        return rb_ensure(rb_yield, region, region_close, region);
}

/* ---- IOMem::Client ------------------------------------------------------ */

/*
 * Watches an interrupt took from the caller, remembered per client: once this many, the oldest already unwatched
 * is forgotten first; one still to unwatch (pending) never is: the list grows instead (client_stray_add()).
 */
#define STRAYS_KEEP 32

/*
 * A Client owns one connection. libiomem's client is not thread-safe, and
 * calls run without the GVL, so each call holds the client's Mutex.
 */
struct rb_client {
        struct iomem_client *client;
        VALUE lock;
        bool events; /* connected with IOMEM_CONNECT_EVENTS (watch, publish, generations) */
        pid_t pid;   /* the process that connected: a forked child shares the socket and must connect again */
        /* client_interrupted(): a call runs without the GVL (under the Mutex), for @thread (Qnil between calls) */
        bool in_call;
        bool reads_only; /* the call only reads (op_asks_again()): a signal's trap may end its wait too */
        int64_t trap_since_ms; /* client_interrupted(): when a trap was first seen pending in this call (0: not) */
        VALUE thread;
        /* next_event: an event read by a call an interrupt ended after it (client_call_drop()), returned first */
        bool has_kept_ev;
        struct iomem_event kept_ev;
        /* client_strays_unwatch() waits: any signal ends the wait, no interrupt is run (none may raise there) */
        bool dropping;
        /*
         * Watches made by a call an interrupt ended after its reply: the caller never got their ids. Unwatched at
         * once, or (pending) at the start of the next call; their events are never returned (client_stray_p()).
         */
        struct client_stray {
                uint32_t id;
                bool pending;
        } *strays; /* xmalloc()ed, nstrays of cstrays used */
        unsigned nstrays, cstrays;
        struct fiber_req *reqs; /* asynchronous requests of fibers whose callback is still to come */
        unsigned long fiber_ended; /* fibers' requests ended so far (Client#__fiber_ended) */
        VALUE socket;  /* the socket path connected to (frozen String), nil before initialize */
        VALUE timeout; /* the reply timeout as given (seconds), nil for none */
};

static void client_mark(void *p)
{
        struct rb_client *rc = p;

        rb_gc_mark(rc->lock);
        rb_gc_mark(rc->thread);
        rb_gc_mark(rc->socket);
        rb_gc_mark(rc->timeout);
}

static void fiber_reqs_end(struct rb_client *rc);

static void client_free(void *p)
{
        struct rb_client *rc = p;

        iomem_disconnect(rc->client);
        fiber_reqs_end(rc);
        xfree(rc->strays);
        xfree(rc);
}

static size_t client_memsize(const void *p)
{
        const struct rb_client *rc = p;

        return sizeof(struct rb_client) + rc->cstrays * sizeof(rc->strays[0]);
}

static const rb_data_type_t client_type = {
        .wrap_struct_name = "IOMem::Client",
        .function = { .dmark = client_mark, .dfree = client_free, .dsize = client_memsize },
        .flags = RUBY_TYPED_FREE_IMMEDIATELY,
};

static VALUE client_alloc(VALUE klass)
{
        struct rb_client *rc;
        VALUE obj = TypedData_Make_Struct(klass, struct rb_client, &client_type, rc);

        rc->lock = rb_mutex_new();
        rc->thread = Qnil;
        rc->socket = Qnil;
        rc->timeout = Qnil;
        return obj;
}

static struct rb_client *client_get(VALUE self)
{
        return rb_check_typeddata(self, &client_type);
}

/*
 * Raise unless @rc is connected and was connected by this process: IOError
 * once closed, RuntimeError in a forked child (its requests would share the
 * parent's socket: each process could read the other's replies, or wait for
 * ever for the reader the parent had at the fork).
 */
static void client_check_usable(const struct rb_client *rc)
{
        if (!rc->client)
                rb_raise(rb_eIOError, "closed client");
        if (rc->pid != getpid())
                rb_raise(rb_eRuntimeError, "this IOMem::Client was connected by another process (fork): connect again");
}

/*
 * One request, run without the GVL. Fields are filled by the method, the
 * result goes to r (and the outputs). Regions land in a Region object made
 * before the call, so an exception raised afterwards cannot leak their fd:
 * the object owns it (an interrupt raised as the call returns closes it at
 * once, client_call_drop()).
 */
struct op {
        struct iomem_client *client;
        const char *name;
        uint64_t size;
        uint32_t flags, mode, seals, uid, gid;
        int wait_ms;
        struct iomem_create_opts opts;
        struct iomem_region **regionp;
        const struct iomem_region *region;
        uint64_t id;
        struct iomem_stat st;
        struct iomem_status status;
        struct iomem_quota quota;
        struct list_acc *list;
        struct metric_acc *metrics;
        bool events;              /* the client's, set by client_call */
        bool versioned;           /* open: after_generation given */
        uint64_t after, generation;
        uint32_t watch_id;
        struct iomem_publish_opts popts;
        struct iomem_event ev;
        int r;
        bool ran;      /* @fn ran (op_run()): rb_thread_call_without_gvl2() skips it if an interrupt is pending */
        char msg[256]; /* the daemon's detail for a failed call, copied under the client's lock */
};

static void *op_connect(void *p)
{
        struct op *o = p;

        /* EVENTS costs nothing until a watch is made; a daemon that predates it refuses it with EINVAL */
        o->events = true;
        /* wait_ms: the reply timeout, also for the HELLO of a stopped daemon */
        o->r = iomem_connect_timeout(o->name, IOMEM_CONNECT_EVENTS, o->wait_ms, &o->client);
        if (o->r == -EINVAL) {
                o->events = false;
                o->r = iomem_connect_timeout(o->name, 0, o->wait_ms, &o->client);
        }
        return NULL;
}

static void *op_create(void *p)
{
        struct op *o = p;

        o->r = iomem_create(o->client, o->name, o->size, &o->opts, o->regionp);
        return NULL;
}

static void *op_open(void *p)
{
        struct op *o = p;

        /* OPEN unless a version was asked for: its errors keep their words ("no region ...") */
        if (o->versioned && o->events)
                o->r = iomem_open_version(o->client, o->name, o->flags, o->after, o->wait_ms, o->regionp,
                                          &o->generation);
        else if (o->versioned)
                o->r = -EOPNOTSUPP;
        else
                o->r = iomem_open(o->client, o->name, o->flags, o->wait_ms, o->regionp);
        return NULL;
}

static void *op_stat(void *p)
{
        struct op *o = p;

        if (o->events)
                o->r = iomem_stat_version(o->client, o->name, &o->st, &o->generation);
        else
                o->r = iomem_stat(o->client, o->name, &o->st);
        return NULL;
}

static void *op_delete(void *p)
{
        struct op *o = p;

        o->r = iomem_delete(o->client, o->name);
        return NULL;
}

static void *op_resize(void *p)
{
        struct op *o = p;

        o->r = iomem_resize(o->client, o->name, o->size);
        return NULL;
}

static void *op_seal(void *p)
{
        struct op *o = p;

        o->r = iomem_seal(o->client, o->name, o->seals, &o->seals);
        return NULL;
}

static void *op_chmod(void *p)
{
        struct op *o = p;

        o->r = iomem_chmod(o->client, o->name, o->mode);
        return NULL;
}

static void *op_chown(void *p)
{
        struct op *o = p;

        o->r = iomem_chown(o->client, o->name, o->uid, o->gid);
        return NULL;
}

static void *op_register(void *p)
{
        struct op *o = p;

        o->r = iomem_register(o->client, o->name, o->region, o->flags, o->mode, &o->id);
        return NULL;
}

static void *op_publish(void *p)
{
        struct op *o = p;

        o->r = iomem_publish(o->client, o->name, o->region, &o->popts, &o->generation);
        return NULL;
}

static void *op_watch(void *p)
{
        struct op *o = p;

        o->r = iomem_watch(o->client, o->name, &o->watch_id);
        return NULL;
}

static void *op_unwatch(void *p)
{
        struct op *o = p;

        o->r = iomem_unwatch(o->client, o->watch_id);
        return NULL;
}

static void *op_next_event(void *p)
{
        struct op *o = p;

        o->r = iomem_next_event(o->client, &o->ev, o->wait_ms);
        return NULL;
}

/* METRICS samples gathered without the GVL (names and help texts are libiomem's static strings) */
struct metric_acc {
        struct iomem_metric *v;
        size_t n, cap;
};

static int metric_cb(const struct iomem_metric *m, void *userdata)
{
        struct metric_acc *acc = userdata;

        if (!m->name)
                return 0; /* a newer daemon's metric this library does not know */
        if (acc->n == acc->cap) {
                size_t cap = acc->cap ? acc->cap * 2 : 64;
                struct iomem_metric *v = realloc(acc->v, cap * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                acc->v = v;
                acc->cap = cap;
        }
        acc->v[acc->n++] = *m;
        return 0;
}

static void *op_metrics(void *p)
{
        struct op *o = p;

        o->r = iomem_metrics(o->client, NULL, metric_cb, o->metrics);
        return NULL;
}

static void metric_acc_free(void *p)
{
        struct metric_acc *acc = p;

        free(acc->v);
        xfree(acc);
}

static const rb_data_type_t metric_acc_type = {
        .wrap_struct_name = "IOMem::MetricBuffer",
        .function = { .dfree = metric_acc_free },
        .flags = RUBY_TYPED_FREE_IMMEDIATELY,
};

static void *op_ping(void *p)
{
        struct op *o = p;

        o->r = iomem_ping(o->client);
        return NULL;
}

static void *op_status(void *p)
{
        struct op *o = p;

        o->r = iomem_status(o->client, &o->status);
        return NULL;
}

static void *op_quota(void *p)
{
        struct op *o = p;

        o->r = iomem_quota(o->client, &o->quota);
        return NULL;
}

/* LIST entries gathered without the GVL (the callback cannot touch Ruby objects), freed by the holder object */
struct list_acc {
        struct iomem_list_entry *v;
        size_t n, cap;
        bool nomem;
};

static int list_cb(const struct iomem_list_entry *e, void *userdata)
{
        struct list_acc *acc = userdata;
        char *name;

        if (acc->n == acc->cap) {
                size_t cap = acc->cap ? acc->cap * 2 : 64;
                struct iomem_list_entry *v = realloc(acc->v, cap * sizeof(*v));

                if (!v) {
                        acc->nomem = true;
                        return -ENOMEM;
                }
                acc->v = v;
                acc->cap = cap;
        }
        name = strdup(e->name);
        if (!name) {
                acc->nomem = true;
                return -ENOMEM;
        }
        acc->v[acc->n] = *e;
        acc->v[acc->n].name = name;
        acc->n++;
        return 0;
}

static void *op_list(void *p)
{
        struct op *o = p;

        o->r = iomem_list(o->client, o->name, list_cb, o->list);
        return NULL;
}

static void list_acc_free(void *p)
{
        struct list_acc *acc = p;

        for (size_t i = 0; i < acc->n; i++)
                free((char *)acc->v[i].name);
        free(acc->v);
        xfree(acc);
}

static const rb_data_type_t list_acc_type = {
        .wrap_struct_name = "IOMem::ListBuffer",
        .function = { .dfree = list_acc_free },
        .flags = RUBY_TYPED_FREE_IMMEDIATELY,
};

struct locked_call {
        VALUE self;
        void *(*fn)(void *);
        struct op *o;
};

/*
 * The daemon refuses a bad region name as it refuses any payload it cannot decode: EINVAL "malformed CREATE"
 * (OPEN, STATV...), which names neither the argument nor the rule. Return: the rule's words when @name breaks it
 * and that is what the daemon said, else @msg.
 */
static const char *name_detail(int r, const char *msg, VALUE name)
{
        if (r != -EINVAL || strncmp(msg, "malformed ", 10) != 0 || !RB_TYPE_P(name, T_STRING) ||
            memchr(RSTRING_PTR(name), '\0', (size_t)RSTRING_LEN(name)))
                return msg;
        return iomem_name_check(RSTRING_PTR(name)) < 0 ? "invalid region name (" IOMEM_NAME_RULE ")" : msg;
}

static void raise_op_error(const struct op *o, const char *what, VALUE name)
{
        VALUE msg;

        if (!o->msg[0])
                raise_error(o->r, what, name);
        if (NIL_P(name))
                msg = rb_sprintf("%s: %s", what, o->msg);
        else
                msg = rb_sprintf("%s \"%" PRIsVALUE "\": %s", what, name, name_detail(o->r, o->msg, name));
        rb_syserr_fail_str(o->r < 0 ? -o->r : o->r, msg);
}

/* Without the GVL: run the op, and say it ran (rb_thread_call_without_gvl2() skips it if an interrupt is pending). */
static void *op_run(void *p)
{
        struct locked_call *lc = p;

        lc->fn(lc->o);
        lc->o->ran = true;
        return NULL;
}

/* Return: whether @id is a watch the caller never got (client_stray_add()): its events are not returned. */
static bool client_stray_p(const struct rb_client *rc, uint32_t id)
{
        for (unsigned i = 0; i < rc->nstrays; i++)
                if (rc->strays[i].id == id)
                        return true;
        return false;
}

/*
 * Remember @id, a watch made by a call an interrupt ended after its reply, to unwatch it (client_strays_unwatch()).
 * Past STRAYS_KEEP the oldest entry already unwatched is forgotten (its events, read before its UNWATCH's reply,
 * are long gone); an entry still to unwatch never is (its watch would stay, holding one of the uid's watch quota
 * and sending events next_event would return): with none unwatched the list grows. Memory for it is made before
 * anything changes, so that a NoMemoryError loses nothing already remembered.
 */
static void client_stray_add(struct rb_client *rc, uint32_t id)
{
        unsigned i;

        if (rc->nstrays >= STRAYS_KEEP) {
                for (i = 0; i < rc->nstrays && rc->strays[i].pending; i++)
                        ;
                if (i < rc->nstrays) {
                        memmove(&rc->strays[i], &rc->strays[i + 1], (rc->nstrays - i - 1) * sizeof(rc->strays[0]));
                        rc->nstrays--;
                }
        }
        if (rc->nstrays == rc->cstrays) {
                unsigned n = rc->cstrays ? rc->cstrays * 2 : STRAYS_KEEP;

                rc->strays = ruby_xrealloc2(rc->strays, n, sizeof(rc->strays[0]));
                rc->cstrays = n;
        }
        rc->strays[rc->nstrays].id = id;
        rc->strays[rc->nstrays].pending = true;
        rc->nstrays++;
}

/*
 * UNWATCH the watches an interrupt took from the caller (client_call_drop()), under the client's Mutex, with the
 * GVL. Called with an interrupt being raised (the late one) and before each call: it must not raise, nor wait for
 * ever inside a raise. So the wait runs without the GVL with rc->dropping set: any signal (a further Thread#raise,
 * Thread#kill, Ctrl-C, Timeout, a trap) ends it at once, without running the interrupt (it stays pending and is
 * raised by the call in progress, or after the one being raised); an interrupt pending on entry skips it. A watch
 * whose UNWATCH did not complete stays pending and is tried again before the next call (libiomem keeps it in its
 * table after an interrupted iomem_unwatch(), and answers a second one with 0 once the daemon's is gone). A reply
 * timeout (Client.new(timeout:)) bounds the wait as any call's. The ids stay remembered after the UNWATCH: events
 * of the watch read before it are in libiomem's queue and are skipped by next_event.
 */
static void client_strays_unwatch(struct rb_client *rc)
{
        for (unsigned i = 0; i < rc->nstrays; i++) {
                struct op o = { .client = rc->client, .watch_id = rc->strays[i].id };
                struct locked_call lc = { Qnil, op_unwatch, &o };

                if (!rc->strays[i].pending)
                        continue;
                rc->dropping = true;
                rc->in_call = true;
                rb_thread_call_without_gvl2(op_run, &lc, RUBY_UBF_IO, NULL);
                rc->in_call = false;
                rc->dropping = false;
                /*
                 * Done only once libiomem no longer holds the watch: 0 (the daemon's -ENOENT is 0 there: its
                 * watch had gone), -ECONNRESET (dropped with the connection), -ENOENT (not in libiomem's table:
                 * nothing to unwatch). On any other error it keeps it, and its next connection makes it again
                 * (client_rewatch()): -ENOTCONN (a daemon gone and none answering within the reconnect window),
                 * -ETIMEDOUT, -ENOMEM... It stays pending, as after an interrupt (-EINTR, or not run), and so
                 * does the rest: tried again before the next call.
                 */
                if (!o.ran || (o.r < 0 && o.r != -ECONNRESET && o.r != -ENOENT))
                        return;
                rc->strays[i].pending = false;
        }
}

/* rb_protect()ed: raise an interrupt left pending by rb_thread_call_without_gvl2(). */
static VALUE client_check_ints(VALUE unused)
{
        rb_thread_check_ints();
        return Qnil;
}

/*
 * An interrupt is raised after a call that ran to its end (its reply came
 * before the interrupt, or Thread.handle_interrupt(on_blocking) deferred
 * it): what the reply gave must not be lost with the result. A region is
 * closed now (not left to the garbage collector), an event kept for the
 * next next_event, a watch unwatched (the caller never gets its id: it
 * would hold a watch of the uid's quota and send events nobody asked for;
 * client_strays_unwatch()). What the daemon did stays done (as for an
 * interrupted call whose request was sent): a publish's generation,
 * register's id, seal's seals are lost with the call (docs/ruby.md: stat
 * tells them).
 */
static void client_call_drop(struct rb_client *rc, struct op *o, void *(*fn)(void *))
{
        if (o->r < 0)
                return;
        if (o->regionp)
                *o->regionp = iomem_region_free(*o->regionp);
        if (fn == op_next_event) {
                rc->kept_ev = o->ev;
                rc->has_kept_ev = true;
        }
        if (fn == op_watch) {
                client_stray_add(rc, o->watch_id);
                client_strays_unwatch(rc);
        }
}

/*
 * Whether @fn may be asked again after a signal ended its wait and raised nothing (a trap handler that returned, an
 * interrupt Thread.handle_interrupt defers): it only reads (what the daemon did for the first ask is dropped with
 * its reply, as for any interrupted call), so asking again is the same as having waited on.
 */
static bool op_asks_again(void *(*fn)(void *))
{
        return fn == op_ping || fn == op_stat || fn == op_list || fn == op_status || fn == op_quota ||
               fn == op_metrics || fn == op_open || fn == op_next_event;
}

/* rb_ensure()d: the call is over, no interrupt is checked for @rc's thread any more (client_interrupted()) */
static VALUE client_call_unwatch_thread(VALUE p)
{
        ((struct rb_client *)p)->thread = Qnil;
        return Qnil;
}

static VALUE client_call_locked_body(VALUE p)
{
        struct locked_call *lc = (struct locked_call *)p;
        struct rb_client *rc = client_get(lc->self);
        int state;

        /*
         * rb_thread_call_without_gvl() raised pending interrupts as the call
         * returned, before the result below was seen (a region's fd was left
         * to the GC, an event lost), and on entry with in_call left true.
         * The "2" variant raises nothing: it skips the call if an interrupt
         * is pending on entry (o->ran stays false) and leaves one that came
         * during the call pending (client_interrupted() only ends the wait);
         * both are run here, with the GVL, once libiomem's call has returned,
         * after client_call_drop(). If none raises (a trap handler that
         * returned, an interrupt Thread.handle_interrupt defers), a skipped
         * call runs, a read-only call whose wait it ended is asked again
         * (op_asks_again()), and any other returns -EINTR: its request was
         * sent, its outcome is unknown (raised as Errno::EINTR). Only an
         * exception from a thread (not a signal's trap) ends such a call's
         * wait: client_interrupted().
         */
        do {
                client_strays_unwatch(rc); /* left by an earlier call: before anything else is asked */
                lc->o->ran = false;
                rc->reads_only = op_asks_again(lc->fn);
                rc->trap_since_ms = 0;
                rc->in_call = true;
                rb_thread_call_without_gvl2(op_run, lc, RUBY_UBF_IO, NULL);
                rc->in_call = false;
                state = 0;
                rb_protect(client_check_ints, Qnil, &state);
                if (state) {
                        if (lc->o->ran)
                                client_call_drop(rc, lc->o, lc->fn);
                        rb_jump_tag(state);
                }
                if (lc->o->ran && lc->o->r == -EINTR && op_asks_again(lc->fn)) {
                        /*
                         * A slice of a wait (open's wait:, next_event's timeout:) ends here as if its time was
                         * up: its caller's loop asks again with what is left of its deadline. Asked again here
                         * with a whole slice, a trap every < 200 ms cut every slice short and the call never
                         * came back to its loop: next_event(timeout: 0.5) or open(timeout: 0.5) waited for ever.
                         */
                        if (lc->o->wait_ms > 0 && (lc->fn == op_open || lc->fn == op_next_event)) {
                                lc->o->r = lc->fn == op_open ? -ETIMEDOUT : -EAGAIN;
                                snprintf(lc->o->msg, sizeof(lc->o->msg), "%s", "no such region yet");
                                return Qnil;
                        }
                        lc->o->ran = false;
                }
        } while (!lc->o->ran);
        if (lc->o->r == -EINTR)
                snprintf(lc->o->msg, sizeof(lc->o->msg), "%s",
                         "a signal ended the wait for the daemon's reply and its handler raised nothing (or "
                         "Thread.handle_interrupt defers the interrupt): the request's outcome is unknown");
        else if (lc->o->r < 0)
                snprintf(lc->o->msg, sizeof(lc->o->msg), "%s", iomem_client_error_message(rc->client));
        /* replies to fibers' requests this call read are kept until iomem_client_process(): a late one's region */
        if (rc->reqs && iomem_client_get_timeout(rc->client) == 0)
                iomem_client_process(rc->client);
        return Qnil;
}

static VALUE client_call_locked(VALUE p)
{
        struct locked_call *lc = (struct locked_call *)p;
        struct rb_client *rc = client_get(lc->self);

        client_check_usable(rc);
        lc->o->client = rc->client;
        lc->o->events = rc->events;
        rc->thread = rb_thread_current();
        return rb_ensure(client_call_locked_body, p, client_call_unwatch_thread, (VALUE)rc);
}

/*
 * Run @fn(@o) on the client's connection without the GVL, holding the
 * client's Mutex. An interrupt (Thread#raise, Thread#kill, Timeout,
 * Ctrl-C) during the wait for the daemon ends the call and is raised
 * (client_interrupted()); the connection stays usable. One that comes
 * once the reply is in is raised after it (client_call_drop()).
 */
static void client_call(VALUE self, void *(*fn)(void *), struct op *o)
{
        struct locked_call lc = { self, fn, o };

        rb_mutex_synchronize(client_get(self)->lock, client_call_locked, (VALUE)&lc);
}

/*
 * A reply timeout in seconds as libiomem's milliseconds: nil or negative =
 * -1 (forever). NaN or more than INT_MAX ms (about 24 days) raise
 * RangeError: converting them to int would be undefined behaviour.
 */
static int timeout_to_ms(VALUE t)
{
        double d;

        if (NIL_P(t))
                return -1;
        d = NUM2DBL(t);
        if (d != d || d * 1000.0 + 0.5 >= (double)INT_MAX)
                rb_raise(rb_eRangeError, "timeout must be nil or seconds up to about 24 days");
        return d < 0 ? -1 : (int)(d * 1000.0 + 0.5);
}

/*
 * iomem_client_set_interrupt_cb(): a signal interrupted a call's wait for
 * the daemon (Ruby wakes a thread blocked without the GVL with one for
 * Thread#raise, Thread#kill, Timeout, Ctrl-C and trap handlers,
 * RUBY_UBF_IO). Runs without the GVL, inside libiomem's call (its reader):
 * it must never raise. So it runs no interrupt: it only says whether Ruby
 * has one pending for the calling thread (rb_thread_interrupted(), made to
 * be called without the GVL), and if so the call gives up (libiomem drops
 * the reply still to come: the connection stays in step and usable) and
 * client_call_locked_body() runs it once the call has returned. A signal
 * that is not Ruby's interrupt (its own retries of the wake-up, SIGCHLD
 * without a trap) lets the wait go on.
 *
 * It used to run the interrupts itself with rb_thread_call_with_gvl() under
 * rb_protect(); but rb_thread_call_with_gvl(), as it gives the GVL back,
 * checks for interrupts once more (blocking_region_begin() ->
 * unblock_function_set() -> RUBY_VM_CHECK_INTS(), Ruby 3.1's thread.c),
 * outside rb_protect(): one that came meanwhile (a second signal to a
 * trap that raises; a Thread#raise while that check gave the GVL to another
 * thread) raised there, through libiomem's frames, leaving its reader flag
 * set for good (the next call waited for ever) and its pending request's
 * entry on a dead stack.
 */
static int64_t mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int client_interrupted(struct iomem_client *client, void *userdata)
{
        struct rb_client *rc = userdata;
        int64_t now;
        int v;

        (void)client;
        if (!rc->in_call) /* not inside rb_thread_call_without_gvl2() (cannot happen: no other call waits) */
                return 0;
        if (rc->dropping) /* client_strays_unwatch(): give up, raise nothing (the interrupt stays pending) */
                return 1;
        if (NIL_P(rc->thread))
                return 0;
        v = rb_thread_interrupted(rc->thread);
        /*
         * A signal's trap (Ctrl-C's default one too) ends a call that reads at once: it is asked again if the trap
         * returns. Any other call cannot be asked again, and most traps return (Ruby's own for SIGCHLD, which a
         * child's exit sends): it waits on, up to TRAP_GRACE_MS (below). An exception another thread sent
         * (Thread#raise, Thread#kill, Timeout) ends any call.
         */
        if (rc->reads_only || (v & RB_PENDING_INTERRUPT))
                return v != 0;
        if (!v)
                return 0;
        /*
         * A trap pending during a call that cannot be asked again: wait on for TRAP_GRACE_MS (Ruby wakes us again
         * every 100 ms or so while its interrupt is pending), so that a trap that returns (SIGCHLD) lets a live
         * daemon's reply come; past it the daemon is not answering and the trap may be Ctrl-C's or SIGTERM's,
         * which must not wait for ever: the call gives up and the trap runs (if it returns, Errno::EINTR).
         */
        now = mono_ms();
        if (!rc->trap_since_ms)
                rc->trap_since_ms = now ? now : 1;
        return now - rc->trap_since_ms >= TRAP_GRACE_MS;
}

/*
 * Client.new(socket: nil, timeout: nil) - connect to iomemd. socket nil =
 * libiomem's default ($IOMEM_SOCKET, else a per-user daemon's
 * $XDG_RUNTIME_DIR/iomemd.sock, else /run/iomemd/iomemd.sock). timeout:
 * seconds to wait for each reply
 * (a call that times out breaks the connection).
 */
static VALUE client_initialize(int argc, VALUE *argv, VALUE self)
{
        static ID kw[2];
        struct rb_client *rc = client_get(self);
        VALUE opts, vals[2] = { Qundef, Qundef }, sock = Qnil;
        char path[NAME_COPY_MAX + 1];
        struct op o = { 0 };
        struct locked_call lc = { self, op_connect, &o };
        int state = 0;

        if (!kw[0]) {
                kw[0] = rb_intern("socket");
                kw[1] = rb_intern("timeout");
        }
        rb_scan_args(argc, argv, ":", &opts);
        if (!NIL_P(opts))
                rb_get_kwargs(opts, kw, 0, 2, vals);
        if (vals[0] != Qundef && !NIL_P(vals[0]))
                sock = rb_get_path(vals[0]);
        if (rc->client)
                rb_raise(rb_eRuntimeError, "client already connected");
        o.wait_ms = vals[1] != Qundef ? timeout_to_ms(vals[1]) : -1; /* a bad timeout raises before connecting */
        o.name = name_copy_how(sock, path, true, true);
        /*
         * An interrupt (Thread#raise, Timeout, Ctrl-C) that comes while
         * connecting is raised when the call returns: by
         * rb_thread_call_without_gvl() itself, before the connection it
         * made has an owner, which leaked it. The "2" variant leaves the
         * interrupt pending (and skips op_connect if one is pending before);
         * it is raised here, after the connection is closed. An interrupt
         * that raises nothing (a trap handler) lets the connect run again.
         */
        do {
                o.ran = false;
                rb_thread_call_without_gvl2(op_run, &lc, RUBY_UBF_IO, NULL);
                rb_protect(client_check_ints, Qnil, &state);
                if (state) {
                        o.client = iomem_disconnect(o.client);
                        rb_jump_tag(state);
                }
        } while (!o.ran);
        if (o.r == -ENOENT) { /* iomem_strerror() would speak of a region */
                if (NIL_P(sock) && iomem_socket_path(path, sizeof(path)) < 0)
                        snprintf(path, sizeof(path), "(no default socket: XDG_RUNTIME_DIR unset)");
                rb_syserr_fail_str(ENOENT, rb_sprintf("connect \"%s\": no daemon socket there (is iomemd running? "
                                                      "socket: or $IOMEM_SOCKET names another)",
                                                      NIL_P(sock) ? path : RSTRING_PTR(sock)));
        }
        if (o.r < 0)
                raise_op_error(&o, "connect", sock);
        rc->client = o.client;
        iomem_client_set_interrupt_cb(rc->client, client_interrupted, rc);
        rc->events = o.events;
        rc->pid = getpid();
        if (vals[1] != Qundef) {
                iomem_client_set_timeout(rc->client, timeout_to_ms(vals[1]));
                rc->timeout = vals[1];
        }
        if (NIL_P(sock) && iomem_socket_path(path, sizeof(path)) >= 0)
                sock = rb_str_new_cstr(path);
        rc->socket = NIL_P(sock) ? Qnil : rb_obj_freeze(rb_str_dup(sock));
        return self;
}

static VALUE client_close_locked(VALUE self)
{
        struct rb_client *rc = client_get(self);

        rc->client = iomem_disconnect(rc->client);
        fiber_reqs_end(rc); /* iomem_disconnect() calls no callback */
        /*
         * What the connection left ends with it: its watches' ids come again on a connection made again
         * (initialize), so neither a stray's id (unwatched or skipped there) nor a kept event may outlive it.
         */
        rc->nstrays = 0;
        rc->has_kept_ev = false;
        return Qnil;
}

/* Client#close - disconnect (leased regions of this connection go away). */
static VALUE client_close(VALUE self)
{
        return rb_mutex_synchronize(client_get(self)->lock, client_close_locked, self);
}

static VALUE client_closed_p(VALUE self)
{
        return client_get(self)->client ? Qfalse : Qtrue;
}

static VALUE client_fileno_locked(VALUE self)
{
        struct rb_client *rc = client_get(self);
        int fd;

        client_check_usable(rc);
        fd = iomem_client_fd(rc->client);
        if (fd < 0) /* never a negative errno as if it were an fd */
                raise_error(fd, "fileno", Qnil);
        return INT2NUM(fd);
}

/*
 * Client#fileno - the connection's socket fd (borrowed: do not close it).
 * Under the client's Mutex: another thread's call may be connecting again
 * (closing the fd, making another). Errno::ENOTCONN while there is no
 * connection (the daemon went away and none answered again).
 */
static VALUE client_fileno(VALUE self)
{
        return rb_mutex_synchronize(client_get(self)->lock, client_fileno_locked, self);
}

struct set_timeout_args {
        VALUE self;
        int ms;
        VALUE t;
};

static VALUE client_set_timeout_locked(VALUE p)
{
        struct set_timeout_args *a = (struct set_timeout_args *)p;
        struct rb_client *rc = client_get(a->self);

        client_check_usable(rc);
        iomem_client_set_timeout(rc->client, a->ms); /* read by a call running without the GVL: take turns */
        rc->timeout = a->t;
        return Qnil;
}

/* Client#timeout = seconds (nil or negative = wait forever) */
static VALUE client_set_timeout(VALUE self, VALUE t)
{
        struct set_timeout_args a = { self, timeout_to_ms(t), t };

        rb_mutex_synchronize(client_get(self)->lock, client_set_timeout_locked, (VALUE)&a);
        return t;
}

/* Client#timeout - the reply timeout in seconds as last given (new(timeout:), timeout=), nil for none. */
static VALUE client_timeout(VALUE self)
{
        return client_get(self)->timeout;
}

/* Client#socket - the socket path the client connected to (the default one resolved), nil before it did. */
static VALUE client_socket(VALUE self)
{
        return client_get(self)->socket;
}

/* Client#inspect - the socket and whether it is closed (no lock: the fd may change under a reconnect). */
static VALUE client_inspect(VALUE self)
{
        struct rb_client *rc = client_get(self);

        return rb_sprintf("#<%" PRIsVALUE " socket=%+" PRIsVALUE "%s>", rb_class_name(rb_obj_class(self)),
                          rc->socket, rc->client ? "" : " closed");
}

/* kwargs helper: fetch the keywords @names (NULL-terminated) of @opts into @vals (Qundef when absent) */
static void kwargs(VALUE opts, const char *const *names, VALUE *vals)
{
        ID ids[8];
        int n = 0;

        for (; names[n]; n++) {
                ids[n] = rb_intern(names[n]);
                vals[n] = Qundef;
        }
        if (!NIL_P(opts))
                rb_get_kwargs(opts, ids, 0, n, vals);
}

static bool kw_true(VALUE v)
{
        return v != Qundef && RTEST(v);
}

/*
 * Client#create(name, size, exclusive: false, lease: false, resizable:
 * false, seals: nil, mode: nil, backend: nil) - name nil = anonymous.
 * Return: a read-write Region; with a block, the block's value (the region is closed when it ends).
 */
static VALUE client_create(int argc, VALUE *argv, VALUE self)
{
        static const char *const names[] = { "exclusive", "lease", "resizable", "seals", "mode", "backend", NULL };
        VALUE name, size, opts, v[6], obj;
        char buf[NAME_COPY_MAX + 1];
        struct op o = { 0 };

        rb_scan_args(argc, argv, "2:", &name, &size, &opts);
        kwargs(opts, names, v);
        if (kw_true(v[0]))
                o.opts.flags |= IOMEM_CREATE_EXCLUSIVE;
        if (kw_true(v[1]))
                o.opts.flags |= IOMEM_CREATE_LEASE;
        if (kw_true(v[2]))
                o.opts.flags |= IOMEM_CREATE_RESIZABLE;
        if (v[3] != Qundef && !NIL_P(v[3]))
                o.opts.seals = seals_from_ruby(v[3]);
        if (v[4] != Qundef && !NIL_P(v[4]))
                o.opts.mode = to_mode(v[4], "create: negative mode");
        if (v[5] != Qundef)
                o.opts.backend = backend_from_ruby(v[5]);
        o.size = to_u64(size, "create: negative size");
        o.name = name_copy(name, buf, true);
        obj = region_alloc(cRegion);
        o.regionp = &region_get(obj)->region;
        client_call(self, op_create, &o);
        if (o.r < 0)
                raise_op_error(&o, "create", name);
        region_set_name(obj, name);
        return region_yield_closing(obj);
}

/*
 * A wait's timeout: seconds as a double; NaN raises RangeError (it compares false with everything: open
 * silently did not wait, next_event converted it to an int, undefined behaviour that waited for ever).
 */
static double wait_seconds(VALUE t)
{
        double d = NUM2DBL(t);

        if (d != d)
                rb_raise(rb_eRangeError, "timeout must be nil or a number of seconds, not NaN");
        return d;
}

static double now_sec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- under a Fiber::Scheduler (docs/ruby.md "Fiber scheduler") --------- */

/*
 * When the current fiber is non-blocking under a scheduler (rb_fiber_scheduler_current()), open, ping, next_event
 * (and stat against a daemon without EVENTS: client_stat()) go through libiomem's asynchronous calls instead: the
 * C methods below submit a request and run iomem_client_process(), each a short step under the client's Mutex
 * (never held across a wait), and lib/iomem.rb waits between them with the scheduler's io_wait on the client's socket (Client#fiber_request, #fiber_wait).
 */
enum fiber_kind { FIBER_OPEN, FIBER_STAT, FIBER_PING };

static const char *const fiber_what[] = { "open", "stat", "ping" };

/*
 * One asynchronous request of a fiber. Its callback fills it from iomem_client_process(); the
 * IOMem::Client::Request the fiber holds points to it. Freed by whichever ends last: the request (its callback,
 * or the client's close, which ends it without one) or the Request object (its free function). malloc()ed, not
 * xmalloc()ed: the callbacks run inside libiomem, where nothing may start the garbage collector.
 */
struct fiber_req {
        struct fiber_req *next; /* in rc->reqs while outstanding */
        struct rb_client *rc;   /* while outstanding */
        bool outstanding;       /* the callback is still to come */
        bool alive;             /* the Request object exists */
        bool abandoned;         /* the fiber gave up (an exception): a late region is closed on arrival */
        bool done;
        int r;
        char msg[256];
        struct iomem_region *region;
        uint64_t generation;
        struct iomem_stat st;
};

static void fiber_req_free(struct fiber_req *q)
{
        iomem_region_free(q->region);
        free(q);
}

static void fiber_req_done(struct iomem_client *client, struct fiber_req *q, int error)
{
        q->rc->fiber_ended++;
        for (struct fiber_req **pp = &q->rc->reqs; *pp; pp = &(*pp)->next)
                if (*pp == q) {
                        *pp = q->next;
                        break;
                }
        q->rc = NULL;
        q->outstanding = false;
        q->done = true;
        q->r = error;
        if (error < 0 && client)
                snprintf(q->msg, sizeof(q->msg), "%s", iomem_client_error_message(client));
        if (!q->alive)
                fiber_req_free(q);
        else if (q->abandoned)
                q->region = iomem_region_free(q->region);
}

static void fiber_open_cb(struct iomem_client *client, int error, struct iomem_region *region, uint64_t generation,
                          void *userdata)
{
        struct fiber_req *q = userdata;

        q->region = region;
        q->generation = generation;
        fiber_req_done(client, q, error);
}

static void fiber_stat_cb(struct iomem_client *client, int error, const struct iomem_stat *st, void *userdata)
{
        struct fiber_req *q = userdata;

        if (st)
                q->st = *st;
        fiber_req_done(client, q, error);
}

static void fiber_done_cb(struct iomem_client *client, int error, void *userdata)
{
        fiber_req_done(client, userdata, error);
}

/* The connection is gone (close, or the client collected): iomem_disconnect() calls no callback, end them here. */
static void fiber_reqs_end(struct rb_client *rc)
{
        while (rc->reqs) {
                struct fiber_req *q = rc->reqs;

                snprintf(q->msg, sizeof(q->msg), "%s", "the IOMem::Client was closed");
                fiber_req_done(NULL, q, -ENOTCONN);
        }
}

struct rb_request {
        struct fiber_req *q;
        VALUE client, name;
        int kind;
};

static void request_mark(void *p)
{
        struct rb_request *rq = p;

        rb_gc_mark(rq->client);
        rb_gc_mark(rq->name);
}

static void request_free(void *p)
{
        struct rb_request *rq = p;

        if (rq->q) {
                rq->q->alive = false;
                if (!rq->q->outstanding) {
                        fiber_req_free(rq->q);
                } else {
                        rq->q->abandoned = true;
                        rq->q->region = iomem_region_free(rq->q->region);
                }
        }
        xfree(rq);
}

static const rb_data_type_t request_type = {
        .wrap_struct_name = "IOMem::Client::Request",
        .function = { .dmark = request_mark, .dfree = request_free },
        .flags = RUBY_TYPED_FREE_IMMEDIATELY,
};

static VALUE cRequest;

static struct rb_request *request_get(VALUE self)
{
        return rb_check_typeddata(self, &request_type);
}

struct fiber_submit_args {
        VALUE self;
        int kind;
        const char *name;
        uint32_t flags;
        int wait_ms;
        bool versioned;
        uint64_t after;
        struct fiber_req *q;
        int r;
};

static VALUE fiber_submit_locked(VALUE p)
{
        struct fiber_submit_args *a = (struct fiber_submit_args *)p;
        struct rb_client *rc = client_get(a->self);

        client_check_usable(rc);
        if (a->kind == FIBER_OPEN && a->versioned)
                a->r = rc->events ? iomem_open_version_async(rc->client, a->name, a->flags, a->after, a->wait_ms,
                                                             fiber_open_cb, a->q)
                                  : -EOPNOTSUPP;
        else if (a->kind == FIBER_OPEN)
                a->r = iomem_open_async(rc->client, a->name, a->flags, a->wait_ms, fiber_open_cb, a->q);
        else if (a->kind == FIBER_STAT)
                a->r = iomem_stat_async(rc->client, a->name, fiber_stat_cb, a->q);
        else
                a->r = iomem_ping_async(rc->client, fiber_done_cb, a->q);
        if (a->r == 0) {
                a->q->outstanding = true;
                a->q->rc = rc;
                a->q->next = rc->reqs;
                rc->reqs = a->q;
        }
        return Qnil;
}

/*
 * Client#__fiber_submit(kind, name, flags, wait_ms, after_generation) - submit an OPEN (OPENV with
 * after_generation), STAT or PING without waiting. Return: an IOMem::Client::Request (#done?, #take, #abandon).
 */
static VALUE client_fiber_submit(VALUE self, VALUE kind, VALUE name, VALUE flags, VALUE wait_ms, VALUE after)
{
        char buf[NAME_COPY_MAX + 1];
        struct rb_request *rq;
        struct fiber_submit_args a = { .self = self, .kind = NUM2INT(kind), .flags = NUM2UINT(flags),
                                       .wait_ms = NUM2INT(wait_ms) };
        VALUE obj;

        if (a.kind < FIBER_OPEN || a.kind > FIBER_PING)
                rb_raise(rb_eArgError, "unknown request kind %d", a.kind);
        if (a.kind != FIBER_PING)
                a.name = name_copy(name, buf, false);
        if (!NIL_P(after)) {
                a.after = to_u64(after, "open: negative after_generation");
                a.versioned = true;
        }
        obj = TypedData_Make_Struct(cRequest, struct rb_request, &request_type, rq);
        rq->client = self;
        rq->name = name;
        rq->kind = a.kind;
        rq->q = calloc(1, sizeof(*rq->q));
        if (!rq->q)
                rb_memerror();
        rq->q->alive = true;
        a.q = rq->q;
        rb_mutex_synchronize(client_get(self)->lock, fiber_submit_locked, (VALUE)&a);
        if (a.r < 0)
                raise_error(a.r, fiber_what[a.kind], a.kind == FIBER_PING ? Qnil : name);
        return obj;
}

/* Request#done? - whether its reply came (or the connection ended) */
static VALUE request_done_p(VALUE self)
{
        struct rb_request *rq = request_get(self);

        return rq->q->done ? Qtrue : Qfalse;
}

/* Request#abandon - the fiber gives up waiting: a region its reply brings (or brought) is closed on arrival */
static VALUE request_abandon(VALUE self)
{
        struct fiber_req *q = request_get(self)->q;

        q->abandoned = true;
        q->region = iomem_region_free(q->region);
        return Qnil;
}

static VALUE stat_to_ruby(const struct iomem_stat *st, uint64_t generation);

/* Request#take - the result of a done request: a Region (open), an IOMem::Stat (stat), true (ping); or raise. */
static VALUE request_take(VALUE self)
{
        struct rb_request *rq = request_get(self);
        struct fiber_req *q = rq->q;
        VALUE name = rq->kind == FIBER_PING ? Qnil : rq->name, obj;

        if (!q->done)
                rb_raise(rb_eRuntimeError, "IOMem::Client::Request#take before its reply");
        if (q->abandoned)
                rb_raise(rb_eIOError, "IOMem::Client::Request#take after abandon");
        if (q->r < 0) {
                if (!q->msg[0])
                        raise_error(q->r, fiber_what[rq->kind], name);
                rb_syserr_fail_str(-q->r, NIL_P(name) ? rb_sprintf("%s: %s", fiber_what[rq->kind], q->msg)
                                                       : rb_sprintf("%s \"%" PRIsVALUE "\": %s",
                                                                    fiber_what[rq->kind], name,
                                                                    name_detail(q->r, q->msg, name)));
        }
        if (rq->kind == FIBER_STAT)
                return stat_to_ruby(&q->st, 0); /* the asynchronous STAT has no generation: nil */
        if (rq->kind == FIBER_PING)
                return Qtrue;
        obj = region_alloc(cRegion);
        region_get(obj)->region = q->region;
        region_get(obj)->generation = q->generation;
        region_set_name(obj, name);
        q->region = NULL;
        q->abandoned = true; /* taken once */
        return obj;
}

static VALUE client_fiber_state_locked(VALUE self)
{
        struct rb_client *rc = client_get(self);
        int ev, ms;

        if (!rc->client) /* closed by another fiber while this one waited: its request is done (fiber_reqs_end()) */
                return rb_assoc_new(INT2FIX(RUBY_IO_READABLE), DBL2NUM(0.0));
        client_check_usable(rc);
        ev = iomem_client_get_events(rc->client);
        if (ev < 0) /* broken: iomem_client_process() ends what is outstanding at once */
                return rb_assoc_new(INT2FIX(RUBY_IO_READABLE), DBL2NUM(0.0));
        ms = iomem_client_get_timeout(rc->client);
        return rb_assoc_new(INT2FIX((ev & POLLIN ? RUBY_IO_READABLE : 0) | (ev & POLLOUT ? RUBY_IO_WRITABLE : 0)),
                            ms < 0 ? Qnil : DBL2NUM(ms / 1000.0));
}

/* Client#__fiber_state - [IO::READABLE | IO::WRITABLE bits to wait for on fileno, seconds until due (nil: none)] */
static VALUE client_fiber_state(VALUE self)
{
        return rb_mutex_synchronize(client_get(self)->lock, client_fiber_state_locked, self);
}

static VALUE client_fiber_process_locked(VALUE self)
{
        struct rb_client *rc = client_get(self);

        if (!rc->client) /* as in client_fiber_state_locked() */
                return INT2NUM(-ENOTCONN);
        client_check_usable(rc);
        return INT2NUM(iomem_client_process(rc->client)); /* the callbacks only fill their fiber_req */
}

static VALUE client_fiber_io_locked(VALUE self)
{
        struct rb_client *rc = client_get(self);
        int fd, dup;

        client_check_usable(rc);
        fd = iomem_client_fd(rc->client);
        if (fd < 0)
                raise_error(fd, "fileno", Qnil);
        dup = rb_cloexec_dup(fd);
        if (dup < 0)
                rb_sys_fail("dup of the client's socket");
        rb_update_max_fd(dup);
        return rb_io_fdopen(dup, O_RDWR, NULL);
}

/*
 * Client#__fiber_io - an IO over a close-on-exec duplicate of the client's socket, for the scheduler's io_wait. A
 * duplicate, not the socket itself: closing the IO (after each wait) never closes the client's socket, and a
 * Client#close by another fiber during the wait leaves the scheduler an fd that is still open (the socket's own
 * number may be closed, or reused by another file), so its select() neither fails (EBADF) nor watches a stranger.
 */
static VALUE client_fiber_io(VALUE self)
{
        return rb_mutex_synchronize(client_get(self)->lock, client_fiber_io_locked, self);
}

/* Client#__reconnect - a blocking ping: it connects again (within the reconnect window) after the daemon went away */
static VALUE client_fiber_reconnect(VALUE self)
{
        struct op o = { 0 };

        client_call(self, op_ping, &o);
        if (o.r < 0)
                raise_op_error(&o, "ping", Qnil);
        return Qnil;
}

static VALUE client_fiber_slots_locked(VALUE self)
{
        struct rb_client *rc = client_get(self);

        return rb_assoc_new(ULONG2NUM(rc->fiber_ended), rc->reqs ? Qtrue : Qfalse);
}

/*
 * Client#__fiber_slots - [fibers' requests ended so far, whether any is outstanding]: a waiting open that found
 * the connection's waiting OPENs full waits for the first to change while the second is true.
 */
static VALUE client_fiber_slots(VALUE self)
{
        return rb_mutex_synchronize(client_get(self)->lock, client_fiber_slots_locked, self);
}

static VALUE client_fiber_broken_locked(VALUE self)
{
        struct rb_client *rc = client_get(self);

        return !rc->client || iomem_client_get_events(rc->client) < 0 ? Qtrue : Qfalse;
}

/* Client#__fiber_broken? - whether the connection is gone (a reply timeout ends it: docs/async.md) */
static VALUE client_fiber_broken_p(VALUE self)
{
        return rb_mutex_synchronize(client_get(self)->lock, client_fiber_broken_locked, self);
}

/* Client#__fiber_process - iomem_client_process(), without blocking. Return: callbacks run, or -ENOTCONN. */
static VALUE client_fiber_process(VALUE self)
{
        return rb_mutex_synchronize(client_get(self)->lock, client_fiber_process_locked, self);
}

/*
 * Client#open(name, read_only: false, wait: false, timeout: nil,
 * after_generation: nil) - wait: true waits for the name to be created,
 * without limit or up to timeout: seconds (then Errno::ETIMEDOUT); timeout:
 * alone implies wait. after_generation: only a version newer than that
 * generation (with wait, wait for one to be published). The wait is asked
 * of the daemon in slices so interrupts get through. Under a Fiber::Scheduler
 * (a non-blocking fiber): one asynchronous OPEN with the whole wait, the
 * fiber yielding to the scheduler meanwhile (Client#fiber_request).
 * Return: a Region (read-only fd with read_only: true; with
 * after_generation:, 0 for any, Region#generation tells the version); with
 * a block, the block's value (closed at its end).
 */
static VALUE client_open(int argc, VALUE *argv, VALUE self)
{
        static const char *const names[] = { "read_only", "wait", "timeout", "after_generation", NULL };
        VALUE name, opts, v[4], obj;
        char buf[NAME_COPY_MAX + 1];
        struct op o = { 0 };
        bool wait = false, forever = false;
        double deadline = 0;

        rb_scan_args(argc, argv, "1:", &name, &opts);
        kwargs(opts, names, v);
        if (kw_true(v[0]))
                o.flags |= IOMEM_OPEN_RDONLY;
        if (v[2] != Qundef && !NIL_P(v[2])) {
                double t = wait_seconds(v[2]);

                wait = true;
                deadline = now_sec() + (t < 0 ? 0 : t);
        } else if (kw_true(v[1])) {
                wait = forever = true;
        }
        if (v[3] != Qundef && !NIL_P(v[3])) {
                o.after = to_u64(v[3], "open: negative after_generation");
                o.versioned = true;
        }
        o.name = name_copy(name, buf, false);
        if (rb_fiber_scheduler_current() != Qnil) { /* one waiting OPEN: the daemon waits, the fiber yields */
                double left = forever ? -1 : wait ? (deadline - now_sec()) * 1000.0 : 0;
                int ms = left < 0 ? (forever ? -1 : 0) : left >= INT_MAX - 1 ? INT_MAX - 1 : (int)left + 1;

                obj = rb_funcall(self, rb_intern("fiber_request"), 5, INT2FIX(FIBER_OPEN), name, UINT2NUM(o.flags),
                                 INT2NUM(wait ? ms : 0), o.versioned ? ULL2NUM(o.after) : Qnil);
                return region_yield_closing(obj);
        }
        obj = region_alloc(cRegion);
        o.regionp = &region_get(obj)->region;
        for (;;) {
                double left = wait && !forever ? deadline - now_sec() : 0;

                o.wait_ms = 0;
                if (forever)
                        o.wait_ms = WAIT_SLICE_MS;
                else if (wait && left > 0)
                        o.wait_ms = left * 1000.0 > WAIT_SLICE_MS ? WAIT_SLICE_MS : (int)(left * 1000.0) + 1;
                client_call(self, op_open, &o);
                if (o.r != -ETIMEDOUT || o.wait_ms == 0 || !wait)
                        break;
                if (!forever && deadline - now_sec() <= 0)
                        break;
                rb_thread_check_ints(); /* Ctrl-C, Thread#kill, Timeout between slices */
        }
        if (o.r < 0)
                raise_op_error(&o, "open", name);
        region_get(obj)->generation = o.generation;
        region_set_name(obj, name);
        return region_yield_closing(obj);
}

static VALUE time_from_ns(uint64_t ns)
{
        struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u) };

        return rb_time_timespec_new(&ts, INT_MAX); /* local time */
}

/*
 * Client#stat(name) - an IOMem::Stat (generation nil from a daemon without EVENTS). Under a Fiber::Scheduler the
 * asynchronous STAT, which lets the fiber yield, only where it loses nothing: libiomem's has no generation, so
 * against a daemon with EVENTS stat stays the blocking round trip (one, as create's) and Stat#generation is there.
 */
static VALUE client_stat(VALUE self, VALUE name)
{
        char buf[NAME_COPY_MAX + 1];
        struct op o = { 0 };

        o.name = name_copy(name, buf, false);
        if (rb_fiber_scheduler_current() != Qnil && !client_get(self)->events)
                return rb_funcall(self, rb_intern("fiber_request"), 5, INT2FIX(FIBER_STAT), name, INT2FIX(0),
                                  INT2FIX(0), Qnil);
        client_call(self, op_stat, &o);
        if (o.r < 0)
                raise_op_error(&o, "stat", name);
        return stat_to_ruby(&o.st, o.generation);
}

/* an IOMem::Stat; generation 0 (a daemon without EVENTS, or the asynchronous STAT) is nil */
static VALUE stat_to_ruby(const struct iomem_stat *st, uint64_t generation)
{
        return rb_struct_new(cStat, ULL2NUM(st->id), ULL2NUM(st->size), time_from_ns(st->ctime_ns),
                             ULL2NUM(st->open_count), seals_to_ruby(st->seals), UINT2NUM(st->flags),
                             UINT2NUM(st->uid), UINT2NUM(st->gid), UINT2NUM(st->mode), backend_to_ruby(st->backend),
                             generation ? ULL2NUM(generation) : Qnil);
}

/* Client#list(prefix = nil) - IOMem::Entry for each named region (yielded with a block, else an Array). */
static VALUE client_list(int argc, VALUE *argv, VALUE self)
{
        VALUE prefix, holder, result;
        char buf[NAME_COPY_MAX + 1];
        struct list_acc *acc;
        struct op o = { 0 };

        rb_scan_args(argc, argv, "01", &prefix);
        o.name = name_copy(prefix, buf, true);
        holder = TypedData_Make_Struct(0, struct list_acc, &list_acc_type, acc); /* hidden */
        o.list = acc;
        client_call(self, op_list, &o);
        if (o.r < 0)
                raise_error(acc->nomem ? -ENOMEM : o.r, "list", prefix);
        result = rb_ary_new_capa((long)acc->n);
        for (size_t i = 0; i < acc->n; i++) {
                const struct iomem_list_entry *e = &acc->v[i];

                rb_ary_push(result, rb_struct_new(cEntry, rb_str_new_cstr(e->name), ULL2NUM(e->id), ULL2NUM(e->size),
                                                  seals_to_ruby(e->seals), UINT2NUM(e->mode), UINT2NUM(e->uid),
                                                  UINT2NUM(e->gid)));
        }
        RB_GC_GUARD(holder);
        if (rb_block_given_p()) {
                for (long i = 0; i < RARRAY_LEN(result); i++)
                        rb_yield(RARRAY_AREF(result, i));
                return self;
        }
        return result;
}

/* Client#delete(name) */
static VALUE client_delete(VALUE self, VALUE name)
{
        char buf[NAME_COPY_MAX + 1];
        struct op o = { 0 };

        o.name = name_copy(name, buf, false);
        client_call(self, op_delete, &o);
        if (o.r < 0)
                raise_op_error(&o, "delete", name);
        return Qnil;
}

/* Client#resize(name, size) */
static VALUE client_resize(VALUE self, VALUE name, VALUE size)
{
        char buf[NAME_COPY_MAX + 1];
        struct op o = { 0 };

        o.size = to_u64(size, "resize: negative size");
        o.name = name_copy(name, buf, false);
        /*
         * Shrinking under a buffer of this process kills the interpreter (SIGBUS) at its next access past the new end.
         * If the process maps any file shared past the new size, open the name (read-only, one round trip more, only
         * then) to see whether that file is the name's, and refuse as Region#resize does.
         */
        if (maps_past(NULL, o.size)) {
                struct iomem_region *probe = NULL;
                struct op p = { 0 };
                bool busy;

                p.name = o.name;
                p.flags = IOMEM_OPEN_RDONLY;
                p.regionp = &probe;
                client_call(self, op_open, &p); /* an interrupt raised here: client_call_drop() closed @probe */
                busy = p.r == 0 && region_mapped_past(iomem_region_fd(probe), o.size);
                iomem_region_free(probe);
                if (busy)
                        rb_syserr_fail_str(EBUSY, rb_sprintf("resize \"%" PRIsVALUE "\": bytes past the new size are "
                                                             "mapped in this process (IO::Buffer#free the buffers "
                                                             "of Region#map first)", name));
        }
        client_call(self, op_resize, &o);
        if (o.r < 0)
                raise_op_error(&o, "resize", name);
        return Qnil;
}

/* Client#seal(name, *seals) - Return: the seals now in force. */
static VALUE client_seal(int argc, VALUE *argv, VALUE self)
{
        char buf[NAME_COPY_MAX + 1];
        struct op o = { 0 };
        VALUE name, seals;

        rb_scan_args(argc, argv, "1*", &name, &seals);
        o.seals = seals_from_ruby(seals);
        o.name = name_copy(name, buf, false);
        client_call(self, op_seal, &o);
        if (o.r < 0)
                raise_op_error(&o, "seal", name);
        return seals_to_ruby(o.seals);
}

/* Client#chmod(name, mode) */
static VALUE client_chmod(VALUE self, VALUE name, VALUE mode)
{
        char buf[NAME_COPY_MAX + 1];
        struct op o = { 0 };

        o.mode = to_mode(mode, "chmod: negative mode");
        o.name = name_copy(name, buf, false);
        client_call(self, op_chmod, &o);
        if (o.r < 0)
                raise_op_error(&o, "chmod", name);
        return Qnil;
}

/* Client#chown(name, uid, gid) - nil keeps one. */
static VALUE client_chown(VALUE self, VALUE name, VALUE uid, VALUE gid)
{
        char buf[NAME_COPY_MAX + 1];
        struct op o = { 0 };

        o.uid = NIL_P(uid) ? IOMEM_ID_UNCHANGED : to_u32(uid, "chown: negative uid");
        o.gid = NIL_P(gid) ? IOMEM_ID_UNCHANGED : to_u32(gid, "chown: negative gid");
        o.name = name_copy(name, buf, false);
        client_call(self, op_chown, &o);
        if (o.r < 0)
                raise_op_error(&o, "chown", name);
        return Qnil;
}

struct copy_call {
        VALUE self;
        void *(*fn)(void *);
        struct op *o;
};

static VALUE copy_call_run(VALUE p)
{
        struct copy_call *cc = (struct copy_call *)p;

        client_call(cc->self, cc->fn, cc->o);
        return Qnil;
}

/*
 * client_call_with_copy() - client_call() with @o->region a private copy of
 * @region's fd (another thread may close the caller's region while the GVL is
 * released), closed when the call ends, also by an exception (a closed
 * client, an interrupt): it is not left to the garbage collector.
 */
static void client_call_with_copy(VALUE self, void *(*fn)(void *), struct op *o, VALUE region, const char *what,
                                  VALUE name)
{
        struct copy_call cc = { self, fn, o };
        struct iomem_region *src = region_open_get(region);
        VALUE tmp = region_alloc(cRegion); /* first: nothing to leak if it raises */
        int fd, r;

        fd = iomem_region_dup_fd(src);
        if (fd < 0)
                raise_error(fd, what, Qnil);
        r = iomem_region_new_consume_fd(fd, &region_get(tmp)->region);
        fd = -1; /* consumed */
        if (r < 0)
                raise_error(r, what, name);
        o->region = region_get(tmp)->region;
        rb_ensure(copy_call_run, (VALUE)&cc, region_close, tmp);
}

/*
 * Client#register(name, region, lease: false, mode: nil) - publish a local
 * memfd region (sealed against shrink and grow) under name. The daemon
 * gets a copy of the fd; the region stays the caller's. Return: the id.
 */
static VALUE client_register(int argc, VALUE *argv, VALUE self)
{
        static const char *const names[] = { "lease", "mode", NULL };
        VALUE name, region, opts, v[2];
        char buf[NAME_COPY_MAX + 1];
        struct op o = { 0 };

        rb_scan_args(argc, argv, "2:", &name, &region, &opts);
        kwargs(opts, names, v);
        if (kw_true(v[0]))
                o.flags |= IOMEM_REGISTER_LEASE;
        if (v[1] != Qundef && !NIL_P(v[1]))
                o.mode = to_mode(v[1], "register: negative mode");
        o.name = name_copy(name, buf, false);
        client_call_with_copy(self, op_register, &o, region, "register", name);
        if (o.r < 0)
                raise_op_error(&o, "register", name);
        return ULL2NUM(o.id);
}

/*
 * Client#publish(name, region, expect_generation: nil, mode: nil, lease:
 * false) - make a local memfd region (sealed against shrink and grow, and
 * write for an immutable snapshot) the version of name that open returns
 * from now on, in one step; holders of the old version keep it.
 * expect_generation: replace only that version (Errno::ESTALE if another
 * is current, Errno::ENOENT if none is). mode: nil keeps the replaced one's.
 * Return: the new generation.
 */
static VALUE client_publish(int argc, VALUE *argv, VALUE self)
{
        static const char *const names[] = { "expect_generation", "mode", "lease", NULL };
        VALUE name, region, opts, v[3];
        char buf[NAME_COPY_MAX + 1];
        struct op o = { 0 };

        rb_scan_args(argc, argv, "2:", &name, &region, &opts);
        kwargs(opts, names, v);
        if (v[0] != Qundef && !NIL_P(v[0])) {
                o.popts.expect_generation = to_u64(v[0], "publish: negative expect_generation");
                if (!o.popts.expect_generation)
                        raise_errno(-EINVAL, "publish: expect_generation must be nil or a generation (>= 1)");
        }
        if (v[1] != Qundef && !NIL_P(v[1]))
                o.popts.mode = to_mode(v[1], "publish: negative mode");
        if (kw_true(v[2]))
                o.popts.flags |= IOMEM_PUBLISH_LEASE;
        o.name = name_copy(name, buf, false);
        client_call_with_copy(self, op_publish, &o, region, "publish", name);
        if (o.r < 0)
                raise_op_error(&o, "publish", name);
        return ULL2NUM(o.generation);
}

/* Client#add_watch(prefix = nil) - make a watch (Client#watch in iomem.rb wraps it). Return: its id. */
static VALUE client_add_watch(int argc, VALUE *argv, VALUE self)
{
        VALUE prefix;
        char buf[NAME_COPY_MAX + 1];
        struct op o = { 0 };

        rb_scan_args(argc, argv, "01", &prefix);
        o.name = name_copy(prefix, buf, true);
        client_call(self, op_watch, &o);
        if (o.r < 0)
                raise_op_error(&o, "watch", prefix);
        return UINT2NUM(o.watch_id);
}

/* Client#unwatch(id) - no event of this watch comes after it returns. */
static VALUE client_unwatch(VALUE self, VALUE id)
{
        struct op o = { 0 };

        o.watch_id = to_u32(id, "unwatch: negative watch id");
        client_call(self, op_unwatch, &o);
        if (o.r < 0)
                raise_op_error(&o, "unwatch", Qnil);
        return self;
}

static const char *const event_kinds[] = {
        [IOMEM_EVENT_OVERFLOW - IOMEM_EVENT_OVERFLOW] = "overflow",
        [IOMEM_EVENT_CREATED - IOMEM_EVENT_OVERFLOW] = "created",
        [IOMEM_EVENT_DELETED - IOMEM_EVENT_OVERFLOW] = "deleted",
        [IOMEM_EVENT_RESIZED - IOMEM_EVENT_OVERFLOW] = "resized",
        [IOMEM_EVENT_SEALED - IOMEM_EVENT_OVERFLOW] = "sealed",
        [IOMEM_EVENT_CHMOD - IOMEM_EVENT_OVERFLOW] = "chmod",
        [IOMEM_EVENT_CHOWN - IOMEM_EVENT_OVERFLOW] = "chown",
        [IOMEM_EVENT_PUBLISHED - IOMEM_EVENT_OVERFLOW] = "published",
};

static VALUE event_to_ruby(const struct iomem_event *ev)
{
        uint32_t k = ev->kind - IOMEM_EVENT_OVERFLOW;
        VALUE kind;

        if (ev->kind >= IOMEM_EVENT_OVERFLOW && k < sizeof(event_kinds) / sizeof(event_kinds[0]))
                kind = ID2SYM(rb_intern(event_kinds[k]));
        else
                kind = UINT2NUM(ev->kind);
        return rb_struct_new(cEvent, kind, rb_str_new_cstr(ev->name), ULL2NUM(ev->id), ULL2NUM(ev->generation),
                             ULL2NUM(ev->size), seals_to_ruby(ev->seals), UINT2NUM(ev->mode), UINT2NUM(ev->uid),
                             UINT2NUM(ev->gid), UINT2NUM(ev->watch_id), ULL2NUM(ev->replaced_id),
                             ULL2NUM(ev->dropped));
}

/*
 * One try of next_event with @o->wait_ms: the event an interrupted call kept first, else libiomem's. Return: true
 * when the event got is one of a watch the caller never got (client_stray_p()): skip it, try again.
 */
static bool next_event_once(VALUE self, struct op *o)
{
        struct rb_client *rc = client_get(self);

        if (rc->has_kept_ev) { /* read by a call an interrupt ended: first in line */
                client_check_usable(rc);
                o->ev = rc->kept_ev;
                rc->has_kept_ev = false;
                o->r = 0;
        } else {
                client_call(self, op_next_event, o);
        }
        /* of a watch an interrupt took from the caller (client_call_drop()): read before its UNWATCH */
        return o->r == 0 && o->ev.kind != IOMEM_EVENT_OVERFLOW && client_stray_p(client_get(self), o->ev.watch_id);
}

/* Client#__fiber_next_event - next_event(timeout: 0): an event already read or on the socket, else nil */
static VALUE client_fiber_next_event(VALUE self)
{
        struct op o = { 0 };

        while (next_event_once(self, &o))
                ;
        if (o.r == -EAGAIN)
                return Qnil;
        if (o.r < 0)
                raise_op_error(&o, "next_event", Qnil);
        return event_to_ruby(&o.ev);
}

/*
 * Client#next_event(timeout: nil) - the next event of this connection's
 * watches, waiting up to timeout seconds (nil = without limit, 0 = not at
 * all). The wait runs without the GVL in slices, the client's Mutex let go
 * in between: interrupts and other threads' calls get through.
 * Under a Fiber::Scheduler (a non-blocking fiber) the wait yields to it (Client#fiber_next_event).
 * Return: an IOMem::Event, or nil if none came in time.
 */
static VALUE client_next_event(int argc, VALUE *argv, VALUE self)
{
        static const char *const names[] = { "timeout", NULL };
        VALUE opts, v[1];
        struct op o = { 0 };
        bool forever = true;
        double deadline = 0;

        rb_scan_args(argc, argv, ":", &opts);
        kwargs(opts, names, v);
        if (v[0] != Qundef && !NIL_P(v[0])) {
                double t = wait_seconds(v[0]);

                forever = false;
                deadline = now_sec() + (t < 0 ? 0 : t);
        }
        if (rb_fiber_scheduler_current() != Qnil)
                return rb_funcall(self, rb_intern("fiber_next_event"), 1,
                                  forever ? Qnil : DBL2NUM(deadline - now_sec()));
        for (;;) {
                double left = forever ? 0 : deadline - now_sec();

                if (forever)
                        o.wait_ms = WAIT_SLICE_MS;
                else
                        o.wait_ms = left <= 0 ? 0 : left * 1000.0 > WAIT_SLICE_MS ? WAIT_SLICE_MS
                                                                               : (int)(left * 1000.0) + 1;
                if (next_event_once(self, &o))
                        continue;
                if (o.r != -EAGAIN)
                        break;
                if (o.wait_ms == 0)
                        return Qnil;
                rb_thread_check_ints(); /* Ctrl-C, Thread#kill, Timeout between slices */
        }
        if (o.r < 0)
                raise_op_error(&o, "next_event", Qnil);
        return event_to_ruby(&o.ev);
}

/*
 * Client#metrics - the daemon's counters and gauges (docs/metrics.md):
 * an Array of IOMem::Metric (name: the OpenMetrics family name, type
 * :gauge or :counter, label: "request"/"code"/"uid" or nil, label_value,
 * value, help, id), daemon-wide samples first, then per uid.
 */
static VALUE client_metrics(VALUE self)
{
        VALUE holder, result;
        struct metric_acc *acc;
        struct op o = { 0 };

        holder = TypedData_Make_Struct(0, struct metric_acc, &metric_acc_type, acc); /* hidden */
        o.metrics = acc;
        client_call(self, op_metrics, &o);
        if (o.r < 0)
                raise_op_error(&o, "metrics", Qnil);
        result = rb_ary_new_capa((long)acc->n);
        for (size_t i = 0; i < acc->n; i++) {
                const struct iomem_metric *m = &acc->v[i];

                rb_ary_push(result, rb_struct_new(cMetric, rb_str_new_cstr(m->name),
                                                  ID2SYM(rb_intern(m->type == IOMEM_METRIC_COUNTER ? "counter"
                                                                                                   : "gauge")),
                                                  m->label_name ? rb_str_new_cstr(m->label_name) : Qnil,
                                                  m->label_name ? rb_str_new_cstr(m->label_value) : Qnil,
                                                  ULL2NUM(m->value), rb_str_new_cstr(m->help ? m->help : ""),
                                                  UINT2NUM(m->id)));
        }
        RB_GC_GUARD(holder);
        return result;
}

/* Client#ping - one round trip (yielding to a Fiber::Scheduler meanwhile, in a non-blocking fiber). */
static VALUE client_ping(VALUE self)
{
        struct op o = { 0 };

        if (rb_fiber_scheduler_current() != Qnil) {
                rb_funcall(self, rb_intern("fiber_request"), 5, INT2FIX(FIBER_PING), Qnil, INT2FIX(0), INT2FIX(0),
                           Qnil);
                return self;
        }
        client_call(self, op_ping, &o);
        if (o.r < 0)
                raise_op_error(&o, "ping", Qnil);
        return self;
}

/* Client#status - an IOMem::Status. */
static VALUE client_status(VALUE self)
{
        struct op o = { 0 };

        client_call(self, op_status, &o);
        if (o.r < 0)
                raise_op_error(&o, "status", Qnil);
        return rb_struct_new(cStatus, ULL2NUM(o.status.regions), ULL2NUM(o.status.bytes),
                             ULL2NUM(o.status.connections), ULL2NUM(o.status.uptime_sec),
                             backend_to_ruby(o.status.backend), rb_str_new_cstr(o.status.server_version));
}

/* Client#quota - an IOMem::Quota (0 = unlimited). */
static VALUE client_quota(VALUE self)
{
        struct op o = { 0 };
        const struct iomem_quota *q = &o.quota;

        client_call(self, op_quota, &o);
        if (o.r < 0)
                raise_op_error(&o, "quota", Qnil);
        return rb_struct_new(cQuota, UINT2NUM(q->uid), UINT2NUM(q->gid), ULL2NUM(q->bytes), ULL2NUM(q->max_bytes),
                             ULL2NUM(q->regions), ULL2NUM(q->max_regions), ULL2NUM(q->connections),
                             ULL2NUM(q->max_connections), ULL2NUM(q->fds), ULL2NUM(q->max_fds),
                             ULL2NUM(q->max_region_size));
}

/* IOMem.socket_path - libiomem's default socket path. */
static VALUE iomem_s_socket_path(VALUE mod)
{
        char buf[4096];
        int r = iomem_socket_path(buf, sizeof(buf));

        if (r < 0)
                raise_error(r, "socket_path", Qnil);
        return rb_str_new(buf, r);
}

/* IOMem.strerror(errno) - iomemd's words for an error code. */
static VALUE iomem_s_strerror(VALUE mod, VALUE e)
{
        return rb_str_new_cstr(iomem_strerror(NUM2INT(e)));
}

/*
 * #dup and #clone of a Region or Client: the typed data (an fd, a connection) is not copied, so the copy would
 * be an object around nothing (closed? true, or "closed client"). Refuse, as Marshal does.
 * Region.from_io(region.io) makes a second Region over the same memory.
 */
static VALUE refuse_copy(VALUE self, VALUE orig)
{
        rb_raise(rb_eTypeError, "can't copy %" PRIsVALUE " (it owns an fd)%s", rb_obj_class(orig),
                 rb_obj_is_kind_of(orig, cRegion) ? ": Region.from_io(region.io) shares its memory" : "");
}

__attribute__((visibility("default"))) void Init_iomem_ext(void);
void Init_iomem_ext(void)
{
        mIOMem = rb_define_module("IOMem");

        rb_define_const(mIOMem, "SEAL_SEAL", UINT2NUM(IOMEM_SEAL_SEAL));
        rb_define_const(mIOMem, "SEAL_SHRINK", UINT2NUM(IOMEM_SEAL_SHRINK));
        rb_define_const(mIOMem, "SEAL_GROW", UINT2NUM(IOMEM_SEAL_GROW));
        rb_define_const(mIOMem, "SEAL_WRITE", UINT2NUM(IOMEM_SEAL_WRITE));
        rb_define_const(mIOMem, "SEAL_FUTURE_WRITE", UINT2NUM(IOMEM_SEAL_FUTURE_WRITE));
        rb_define_const(mIOMem, "REGION_RDONLY", UINT2NUM(IOMEM_REGION_RDONLY));
        rb_define_const(mIOMem, "REGION_LEASED", UINT2NUM(IOMEM_REGION_LEASED));
        rb_define_const(mIOMem, "REGION_RESIZABLE", UINT2NUM(IOMEM_REGION_RESIZABLE));
        rb_define_const(mIOMem, "REGION_ANONYMOUS", UINT2NUM(IOMEM_REGION_ANONYMOUS));
        rb_define_module_function(mIOMem, "socket_path", iomem_s_socket_path, 0);
        rb_define_module_function(mIOMem, "strerror", iomem_s_strerror, 1);

        cStat = rb_struct_define_under(mIOMem, "Stat", "id", "size", "ctime", "open_count", "seals", "flags", "uid",
                                       "gid", "mode", "backend", "generation", NULL);
        cEvent = rb_struct_define_under(mIOMem, "Event", "kind", "name", "id", "generation", "size", "seals", "mode",
                                        "uid", "gid", "watch_id", "replaced_id", "dropped", NULL);
        cMetric = rb_struct_define_under(mIOMem, "Metric", "name", "type", "label", "label_value", "value", "help",
                                         "id", NULL);
        cEntry = rb_struct_define_under(mIOMem, "Entry", "name", "id", "size", "seals", "mode", "uid", "gid", NULL);
        cStatus = rb_struct_define_under(mIOMem, "Status", "regions", "bytes", "connections", "uptime",
                                         "backend", "server_version", NULL);
        cQuota = rb_struct_define_under(mIOMem, "Quota", "uid", "gid", "bytes", "max_bytes", "regions",
                                        "max_regions", "connections", "max_connections", "fds", "max_fds",
                                        "max_region_size", NULL);

        cRegion = rb_define_class_under(mIOMem, "Region", rb_cObject);
        rb_define_alloc_func(cRegion, region_alloc);
        rb_define_method(cRegion, "initialize", region_initialize, -1);
        rb_define_method(cRegion, "initialize_copy", refuse_copy, 1);
        rb_define_singleton_method(cRegion, "from_io", region_s_from_io, 1);
        rb_define_method(cRegion, "close", region_close, 0);
        rb_define_method(cRegion, "closed?", region_closed_p, 0);
        rb_define_method(cRegion, "size", region_size, 0);
        rb_define_method(cRegion, "read_only?", region_read_only_p, 0);
        rb_define_method(cRegion, "id", region_id, 0);
        rb_define_method(cRegion, "backend", region_backend, 0);
        rb_define_method(cRegion, "flags", region_flags, 0);
        rb_define_method(cRegion, "generation", region_generation, 0);
        rb_define_method(cRegion, "name", region_name, 0);
        rb_define_method(cRegion, "inspect", region_inspect, 0);
        rb_define_method(cRegion, "refresh", region_refresh, 0);
        rb_define_method(cRegion, "map", region_map, -1);
        rb_define_method(cRegion, "io", region_io, 0);
        rb_define_method(cRegion, "to_io", region_io, 0);
        rb_define_method(cRegion, "resize", region_resize, 1);
        rb_define_method(cRegion, "seal", region_seal, -1);
        rb_define_method(cRegion, "seals", region_seals, 0);

        cClient = rb_define_class_under(mIOMem, "Client", rb_cObject);
        rb_define_alloc_func(cClient, client_alloc);
        rb_define_method(cClient, "initialize", client_initialize, -1);
        rb_define_method(cClient, "initialize_copy", refuse_copy, 1);
        rb_define_method(cClient, "close", client_close, 0);
        rb_define_method(cClient, "closed?", client_closed_p, 0);
        rb_define_method(cClient, "fileno", client_fileno, 0);
        rb_define_method(cClient, "timeout=", client_set_timeout, 1);
        rb_define_method(cClient, "timeout", client_timeout, 0);
        rb_define_method(cClient, "socket", client_socket, 0);
        rb_define_method(cClient, "inspect", client_inspect, 0);
        rb_define_method(cClient, "create", client_create, -1);
        rb_define_method(cClient, "open", client_open, -1);
        rb_define_method(cClient, "stat", client_stat, 1);
        rb_define_method(cClient, "list", client_list, -1);
        rb_define_method(cClient, "delete", client_delete, 1);
        rb_define_method(cClient, "resize", client_resize, 2);
        rb_define_method(cClient, "seal", client_seal, -1);
        rb_define_method(cClient, "chmod", client_chmod, 2);
        rb_define_method(cClient, "chown", client_chown, 3);
        rb_define_method(cClient, "register", client_register, -1);
        rb_define_method(cClient, "ping", client_ping, 0);
        rb_define_method(cClient, "status", client_status, 0);
        rb_define_method(cClient, "quota", client_quota, 0);
        rb_define_method(cClient, "metrics", client_metrics, 0);
        rb_define_method(cClient, "publish", client_publish, -1);
        rb_define_method(cClient, "add_watch", client_add_watch, -1);
        rb_define_method(cClient, "unwatch", client_unwatch, 1);
        rb_define_method(cClient, "next_event", client_next_event, -1);
        rb_define_private_method(cClient, "__fiber_submit", client_fiber_submit, 5);
        rb_define_private_method(cClient, "__fiber_state", client_fiber_state, 0);
        rb_define_private_method(cClient, "__fiber_process", client_fiber_process, 0);
        rb_define_private_method(cClient, "__fiber_next_event", client_fiber_next_event, 0);
        rb_define_private_method(cClient, "__reconnect", client_fiber_reconnect, 0);
        rb_define_private_method(cClient, "__fiber_io", client_fiber_io, 0);
        rb_define_private_method(cClient, "__fiber_slots", client_fiber_slots, 0);
        rb_define_private_method(cClient, "__fiber_broken?", client_fiber_broken_p, 0);
        cRequest = rb_define_class_under(cClient, "Request", rb_cObject);
        rb_undef_alloc_func(cRequest);
        rb_define_method(cRequest, "done?", request_done_p, 0);
        rb_define_method(cRequest, "take", request_take, 0);
        rb_define_method(cRequest, "abandon", request_abandon, 0);
}
