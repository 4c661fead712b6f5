/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* conn-region: a connection's region requests (CREATE, OPEN and its waiters, RESIZE, SEAL, STAT, LIST, ...). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "closer.h"
#include "conn-access.h"
#include "conn-internal.h"
#include "conn-region.h"
#include "conn-watch.h"
#include "log.h"
#include "parse.h"
#include "proto.h"
#include "quota.h"
#include "regtab.h"
#include "reserver.h"
#include "service.h"

#define CONN_WAIT_FOREVER 0xFFFFFFFFu
#define NSEC_PER_MSEC 1000000ULL
#define NSEC_PER_SEC 1000000000ULL

/* regions one LIST request examines at most (whatever its prefix matches) */
#define CONN_LIST_SCAN_MAX 16384u

/*
 * An OPEN with WAIT whose name does not exist yet, or an OPENV with WAIT for
 * a version newer than waiter.after_generation: in the table's waiters
 * (REGTAB_WAIT_NAME or REGTAB_WAIT_VERSION), woken by conn_region_announce().
 */
struct conn_wait {
        struct regtab_waiter waiter;
        struct conn *conn;
        uint16_t opcode;       /* PROTO_OP_OPEN or PROTO_OP_OPENV */
        uint32_t request_id;
        uint32_t flags;        /* PROTO_OPEN_* */
        uint64_t deadline_ns;  /* 0 = forever */
        struct conn_wait *prev, *next; /* the connection's */
        char name[];
};

/*
 * A request whose slow syscalls run on a reserver thread (reserver.h): a
 * named CREATE with RESERVE (its fallocate), a RESIZE (its ftruncate, and a
 * RESERVEd growth's fallocate) or a SEAL (its F_ADD_SEALS: like ftruncate,
 * it waits for the inode lock any holder's fallocate holds). Its
 * connection reads nothing more until it is done (its reply stays in
 * request order). What it asks for (@charge bytes and @regions regions) is
 * charged to @owner when it starts and refunded when it ends, whatever the
 * end: for a RESIZE or SEAL whose requester hangs up, that is when its job
 * is gone (conn_region_reserve_gone()), not at the hang-up, since its
 * ftruncate may still run (a refund at the hang-up let the uid spend the
 * growth twice). The job owns its fd (the new object, or a copy of the
 * region's) until the completion.
 *
 * A CREATE claims its name meanwhile (@claimed: in conn_ctx.reserves). A
 * RESIZE's or SEAL's region is marked resizing (other RESIZEs and SEALs of it:
 * -EBUSY) and found again by its id, which is never reused: a DELETE or
 * PUBLISH may free it meanwhile. The mark stays until the job's fallocate
 * has returned, even when its requester left before (then @conn is NULL
 * and @cr lives until conn_region_reserve_gone()): the loop must not
 * ftruncate or seal an object whose inode lock a fallocate holds (it would
 * wait for all of it), and a second growth must not be reserved under the
 * first one's give-back (which would free it).
 */
struct conn_reserve {
        struct conn_ctx *ctx;
        struct conn *conn; /* NULL once abandoned (a RESIZE's, until its job is gone) */
        struct reserver_job *job; /* until the completion, or reserver_cancel() */
        uint16_t opcode;           /* PROTO_OP_CREATE, PROTO_OP_RESIZE or PROTO_OP_SEAL */
        uint32_t request_id;
        uint32_t owner;            /* charged */
        uint64_t charge;           /* bytes charged to @owner and counted in conn_ctx.reserving_bytes */
        uint64_t regions;          /* 1 for a CREATE, 0 for a RESIZE */
        /* CREATE */
        struct proto_create m;     /* the request, m.name pointing to @name */
        enum proto_backend chosen; /* the backend the object was made with */
        uint32_t page_flags;       /* PROTO_REGION_* page bits so far (RESERVED is added when done) */
        bool claimed;              /* in conn_ctx.reserves */
        /* RESIZE and SEAL */
        uint64_t region_id;
        uint64_t old_size, new_size;
        /* a RESIZE growing its owner's region: the gid its charge was judged by, kept (store.gid) once it is done */
        bool set_gid;
        uint32_t gid;
        size_t name_len;
        struct conn_reserve *prev, *next; /* conn_ctx.reserves */
        char name[];
};

static uint64_t conn_region_realtime_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* ---- leases and deletion ------------------------------------------------ */

static void conn_region_lease_link(struct conn *c, struct region *r)
{
        r->lease.conn = c;
        r->lease.prev = NULL;
        r->lease.next = c->leases;
        if (c->leases)
                c->leases->lease.prev = r;
        c->leases = r;
}

static void conn_region_lease_unlink(struct conn_ctx *ctx, struct region *r)
{
        struct region **head;

        if (r->lease.conn)
                head = &r->lease.conn->leases;
        else if (r->lease.expiring)
                head = &ctx->expiring;
        else
                return;
        if (r->lease.prev)
                r->lease.prev->lease.next = r->lease.next;
        else
                *head = r->lease.next;
        if (r->lease.next)
                r->lease.next->lease.prev = r->lease.prev;
        else if (r->lease.expiring)
                ctx->expiring_tail = r->lease.prev;
        r->lease = (struct region_lease){ NULL, NULL, NULL, false };
}

/* Take a region out of the table and the fd store and free the daemon's copy; holders' fds stay valid. */
static void conn_region_delete(struct conn_ctx *ctx, struct region *r)
{
        conn_watch_notify(ctx, PROTO_EV_DELETED, r, NULL, 0);
        /* a refund never allocates */
        quota_charge(ctx->quota, r->meta.uid, -(int64_t)r->charged, -1, 0, 0);
        conn_region_lease_unlink(ctx, r);
        regtab_remove(ctx->regtab, r);
        service_region_removed(r);
        regtab_region_free(r);
        ctx->generation++;
}

/* Return: the bytes the regions in the table and the reservations in flight are charged (saturated). */
static uint64_t conn_region_held_bytes(const struct conn_ctx *ctx)
{
        uint64_t t = regtab_bytes(ctx->regtab);

        return t > UINT64_MAX - ctx->reserving_bytes ? UINT64_MAX : t + ctx->reserving_bytes;
}

/* Return: the regions in the table and the reservations in flight (each will be one). */
static uint64_t conn_region_held_regions(const struct conn_ctx *ctx)
{
        return regtab_count(ctx->regtab) + ctx->reserving_regions;
}

/* Return: true if replacing @old_size bytes by @new_size would pass --max-bytes (sums in 64 bits, no wrap). */
static bool conn_region_over_bytes(const struct conn_ctx *ctx, uint64_t old_size, uint64_t new_size)
{
        uint64_t limit = ctx->config->max_bytes;
        uint64_t held = conn_region_held_bytes(ctx) - old_size;

        if (!limit)
                return false;
        return held > limit || new_size > limit - held;
}

/* Return: 0 if @size is at most max-region-size; -EFBIG with @res filled in. */
static int conn_region_check_size(const struct conn *c, uint64_t size, struct conn_result *res)
{
        uint64_t max = c->ctx->config->max_region_size;
        char a[32], b[32];

        if (size <= max)
                return 0;
        return conn_failf(res, -EFBIG,
                          "size above the daemon's limit: %s asked, max-region-size is %s; ask for less, or raise "
                          "max-region-size in iomemd.conf",
                          parse_size_format(size, a, sizeof(a)), parse_size_format(max, b, sizeof(b)));
}

/*
 * conn_region_check_room() - is there room for @size bytes in place of @old
 * (RESIZE: what the region has charged; else 0), @regions more named regions
 * (0 or 1) owned by @owner, and @fds more fds in flight to @owner: the
 * daemon's max-regions and max-bytes, then @owner's quotas.
 * Return: 0; -EDQUOT with @res filled in (the limit, the numbers, what to do).
 */
static int conn_region_check_room(struct conn *c, uint32_t owner, uint64_t old, uint64_t size, uint64_t regions,
                                  uint64_t fds, struct conn_result *res)
{
        const struct conn_ctx *ctx = c->ctx;
        const struct config *cfg = ctx->config;
        uint64_t more = size > old ? size - old : 0;
        char a[32], b[32], d[32];

        if (regions && conn_region_held_regions(ctx) >= cfg->max_regions)
                return conn_failf(res, -EDQUOT,
                                  "the daemon's region limit is reached: it holds %" PRIu64 ", max-regions is %" PRIu64
                                  "; delete regions, or raise max-regions in iomemd.conf",
                                  conn_region_held_regions(ctx), cfg->max_regions);
        if (conn_region_over_bytes(ctx, old, size))
                return conn_failf(res, -EDQUOT,
                                  "the daemon's byte limit is reached: its regions hold %s, %s more are asked, "
                                  "max-bytes is %s; delete or shrink regions, or raise max-bytes in iomemd.conf",
                                  parse_size_format(conn_region_held_bytes(ctx), a, sizeof(a)),
                                  parse_size_format(more, b, sizeof(b)),
                                  parse_size_format(cfg->max_bytes, d, sizeof(d)));
        return conn_access_quota_check(c, owner, more, regions, fds, res);
}


/* ---- handing regions out ------------------------------------------------ */

/*
 * The region flags @c may be sent: the page bits only to a peer that showed it
 * knows them (HELLO with PAGE_INFO, or a CREATE with HUGE or RESERVE), since a
 * version-1 peer takes unknown bits in a reply for a malformed reply.
 */
static uint32_t conn_region_flags_shown(const struct conn *c)
{
        return PROTO_REGION_LEASED | PROTO_REGION_RESIZABLE | (c->page_info ? PROTO_REGION_PAGES : 0);
}

/* bytes of a reservation that count as one request of a turn's work (CONN_WORK_PER_TURN) */
#define CONN_RESERVE_WORK_BYTES (1024u * 1024u)

/*
 * A reservation (RESERVE's fallocate, hugetlb pages taken at creation) is
 * made on the event loop, about 0.1-0.5 s per GiB: count it as work, one
 * request per MiB, so that one connection's turn reserves about 64 MiB and
 * others are served between its reservations (a pipeline of them used to
 * take 32 per turn).
 */
static void conn_region_count_reserved(struct conn *c, uint64_t bytes)
{
        uint64_t units = bytes / CONN_RESERVE_WORK_BYTES;

        c->turn_work += units > CONN_WORK_PER_TURN ? CONN_WORK_PER_TURN : (unsigned)units;
}

/* Return: the PROTO_REGION_* page bits describing what backend_create_pages() made. */
static uint32_t conn_region_page_flags(const struct backend_pages *pages)
{
        return (pages->hugetlb ? PROTO_REGION_HUGETLB : 0) | (pages->thp ? PROTO_REGION_THP : 0) |
               (pages->reserved ? PROTO_REGION_RESERVED : 0);
}

/* The text of a RESIZE or SEAL of a region whose growth is being reserved (struct conn_reserve). */
#define CONN_RESIZE_BUSY                                                                                  \
        "a RESIZE or SEAL of this region is in progress (resizing, sealing, or reserving the memory of its new "   \
        "size): try again once it is done"

/* The text of a RESIZE that would grow a memfd region made without RESIZABLE (iomemctl matches it). */
#define CONN_NOT_RESIZABLE_GROW "region is not resizable: its memfd is sealed against growing"

/* The text of a failed reservation (-ENOSPC, -ENOMEM). */
#define CONN_RESERVE_FAILED                                                                                      \
        "cannot reserve the memory: the backing file system, the memory cgroup or the system is out of space"

/*
 * A memory object that could not be made. The file backend's directory is the administrator's to fix: the reply
 * says which setting (not the path, which is the daemon's business) and the log says the path.
 * Return: @r, with @res filled in.
 */
static int conn_region_make_failed(struct conn *c, enum proto_backend backend, int r, struct conn_result *res)
{
        static uint64_t logged_ns; /* at most one line per 10 s: clients may repeat the request */
        const char *dir = c->ctx->config->tmpdir;

        if (backend != PROTO_BACKEND_FILE || (r != -ENOENT && r != -ENOTDIR && r != -EACCES && r != -EROFS))
                return conn_fail(res, r, "cannot create the memory object");
        if (!dir || !*dir)
                dir = secure_getenv("TMPDIR"); /* as backend_create() chooses */
        if (!dir || !*dir)
                dir = "/tmp";
        if (!logged_ns || conn_now_ns() - logged_ns >= 10000000000ull) {
                logged_ns = conn_now_ns();
                log_error("cannot create a file-backend region in %s: %s (tmpdir in iomemd.conf)", dir, strerror(-r));
        }
        return conn_fail(res, r, "cannot create the memory object in the file backend's directory (tmpdir in "
                                 "iomemd.conf)");
}

/*
 * Make a CREATE's object: with HUGE or RESERVE through backend_create_pages()
 * (and @c may see the page bits from now on), else backend_create(). An
 * anonymous one (@anonymous) never gets hugetlb pages: see
 * conn_region_create_anonymous(). With @deferredp (not NULL), RESERVE's
 * fallocate is left to the caller (a reserver thread): *deferredp says
 * whether it is still to do (not for hugetlb pages, taken at creation).
 * Return: 0 with *fdp, *chosenp and *page_flagsp; negative errno with @res filled in.
 */
static int conn_region_make(struct conn *c, const struct proto_create *m, enum proto_backend backend,
                            bool anonymous, int *fdp, enum proto_backend *chosenp, uint32_t *page_flagsp,
                            bool *deferredp, struct conn_result *res)
{
        const struct config *cfg = c->ctx->config;
        struct backend_pages_opts o = {
                .huge = m->flags & PROTO_CREATE_HUGE,
                .huge_shift = (m->flags & PROTO_CREATE_HUGE_MASK) >> PROTO_CREATE_HUGE_SHIFT,
                .reserve = m->flags & PROTO_CREATE_RESERVE,
                .no_hugetlb = anonymous,
        };
        struct backend_pages pages;
        int r;

        *page_flagsp = 0;
        if (deferredp) {
                *deferredp = o.reserve;
                o.reserve = false;
        }
        if (!o.huge && !o.reserve && !(deferredp && *deferredp)) {
                r = backend_create(backend, m->size, cfg->max_region_size, cfg->tmpdir, fdp, chosenp);
                return r < 0 ? conn_region_make_failed(c, backend, r, res) : 0;
        }
        c->page_info = true;
        r = backend_create_pages(backend, m->size, cfg->max_region_size, cfg->tmpdir, &o, fdp, &pages);
        /* a full file system found at creation (R4) fails a RESERVE as its fallocate would */
        if (r == -ENOSPC || r == -ENOMEM)
                return conn_fail(res, r, m->flags & PROTO_CREATE_RESERVE
                                                 ? CONN_RESERVE_FAILED
                                                 : "cannot create the memory object: out of space");
        if (r < 0)
                return conn_region_make_failed(c, backend, r, res);
        if (o.huge && !pages.hugetlb)
                log_debug("huge pages for a %llu-byte region: no hugetlb (%s), %s",
                          (unsigned long long)m->size, strerror(-pages.hugetlb_error),
                          pages.thp ? "transparent huge pages" : "normal pages");
        if (pages.reserved)
                conn_region_count_reserved(c, m->size);
        if (deferredp && pages.hugetlb)
                *deferredp = false; /* its pages were taken at creation */
        *chosenp = pages.backend;
        *page_flagsp = conn_region_page_flags(&pages);
        return 0;
}

/*
 * The seals of an object whose backend we know. Cheaper than
 * backend_get_seals(), which must first find out whether the fd is a memfd
 * (fstat, fstatfs and a readlink): this is on every OPEN's path.
 */
static uint32_t conn_region_seals_of(int fd, uint16_t backend)
{
        int k;

        if (backend != PROTO_BACKEND_MEMFD)
                return 0;
        k = fcntl(fd, F_GET_SEALS);
        return k > 0 ? (uint32_t)k & PROTO_SEALS_KNOWN : 0;
}

/*
 * Seal a memfd this daemon has just made (backend_create() or
 * backend_create_pages() said MEMFD): backend_seal() without its check that
 * the fd is a memfd (fstat, fstatfs, a readlink of /proc/self/fd and a
 * snprintf), which the CREATE that made it knows. Same errors as
 * backend_seal(). Return: 0 or a negative errno.
 */
static int conn_region_seal_new(int fd, uint32_t seals)
{
        if (seals & ~PROTO_SEALS_KNOWN)
                return -EINVAL;
        if (fcntl(fd, F_ADD_SEALS, (int)seals) < 0)
                return errno == EINVAL ? -EOPNOTSUPP : -errno;
        return 0;
}

/*
 * Return: @r's seals, read from @fd (its object's fd; -1: none here, the
 * last seen). Any holder of a writable fd may add seals at any time, so they
 * are read again for every reply, except once F_SEAL_SEAL is among them:
 * seals are never removed and no more can be added, so the last seen are
 * the seals for good.
 */
static uint32_t conn_region_seals_with_fd(struct region *r, int fd)
{
        if (fd >= 0 && !(r->seals & PROTO_SEAL_SEAL))
                r->seals = conn_region_seals_of(fd, r->meta.backend);
        return r->seals;
}

/* Return: @r's seals, read live when its fd is here, else the last seen (parked regions). */
static uint32_t conn_region_seals(struct region *r)
{
        return conn_region_seals_with_fd(r, r->fd);
}

/*
 * Holders of a writable fd can change a region's size with ftruncate where no
 * seal forbids it: RESIZABLE memfds, and shm and file regions, both ways
 * (other named memfds are sealed against SHRINK and GROW). The daemon takes
 * the size it finds whenever it hands out, reports or resizes a region. It
 * charges the owner for growth only as far as the owner's byte quota,
 * --max-bytes and --max-region-size allow, so one uid's growth never takes
 * more than its own limits from any total (issue 10). The rest is kept, not
 * charged and not lost: the region keeps its real size (STAT and OPEN say
 * it), the owner's quota is then full, and a RESIZE charges its whole new
 * size (docs/security.md).
 */
static void conn_region_sync_size_to(struct conn *c, struct region *r, uint64_t size)
{
        struct conn_ctx *ctx = c->ctx;
        const struct config *cfg = ctx->config;
        uint64_t charged;
        bool partial = r->charged < r->size;

        if (size == r->size)
                return;
        charged = r->charged < size ? r->charged : size;
        if (size > charged) {
                uint64_t room = conn_access_quota_room(c, r->meta.uid), total = conn_region_held_bytes(ctx);

                if (cfg->max_bytes) {
                        uint64_t left = total >= cfg->max_bytes ? 0 : cfg->max_bytes - total;

                        if (left < room)
                                room = left;
                }
                if (charged >= cfg->max_region_size)
                        room = 0;
                else if (cfg->max_region_size - charged < room)
                        room = cfg->max_region_size - charged;
                charged += size - charged < room ? size - charged : room;
                if (charged < size)
                        log_debug("region '%s' grown to %llu by a holder: %llu charged to uid %u (its limits)",
                                  r->name, (unsigned long long)size, (unsigned long long)charged,
                                  (unsigned)r->meta.uid);
        }
        /* the owner has an entry (it owns this region): never allocates */
        (void)quota_charge(ctx->quota, r->meta.uid, (int64_t)charged - (int64_t)r->charged, 0, 0, 0);
        regtab_set_size(ctx->regtab, r, size, charged);
        if ((charged < size) != partial)
                service_region_changed(r); /* the fd store keeps whether it is charged in full: restore order */
        ctx->generation++;
        conn_watch_notify(ctx, PROTO_EV_RESIZED, r, NULL, 0);
}

/*
 * conn_region_sync_size_to() with the size @fd's object has now (one fstat),
 * which once r->seals (read from the object before) hold SHRINK and GROW is
 * final: later calls then need no fstat.
 */
static void conn_region_sync_size(struct conn *c, struct region *r, int fd)
{
        const uint32_t fixed = PROTO_SEAL_SHRINK | PROTO_SEAL_GROW;
        uint64_t size;

        if (r->size_final)
                return;
        if (backend_get_size(fd, &size) == 0) {
                conn_region_sync_size_to(c, r, size);
                r->size_final = (r->seals & fixed) == fixed;
        }
}

/*
 * Send the holder's fd to @r: a read-only reopen or a read-write dup, with
 * its description. With @check, access and the fds-in-flight quota are
 * checked first, and the size is re-read; without, @r is the requester's
 * region just created, whose size is known. Return: 0 (the reply is queued); a negative errno with @res
 * filled in (nothing was queued).
 */
static int conn_region_send(struct conn *c, uint16_t opcode, uint32_t id, struct region *r, bool rdonly, bool check,
                            struct conn_result *res)
{
        struct proto_region_info info = {
                .id = r->meta.id,
                .size = r->size,
                .flags = r->meta.flags & conn_region_flags_shown(c),
                .backend = r->meta.backend,
        };
        struct proto_header req = { .opcode = opcode, .id = id };
        struct regtab_fd h;
        uint8_t buf[64];
        int fd = -1, k, len;

        if (check && conn_access_check(c, r, rdonly ? CONN_ACCESS_READ : CONN_ACCESS_WRITE) < 0)
                return conn_fail(res, -EACCES, "permission denied");
        if (check && conn_access_fd_check(c, res) < 0)
                return -EDQUOT;
        k = regtab_region_get_send_fd(c->ctx->regtab, r, &h);
        if (k < 0)
                return conn_fail(res, k, "the region's fd keeper is gone");
        if (rdonly) {
                struct stat st;

                /* the identity recorded at CREATE (or parking) spares an fstat; the new fd's gives the size */
                k = backend_reopen_rdonly_stat(h.fd, r->park.dev, r->park.ino, &fd, &st);
                if (k < 0) {
                        regtab_fd_put(&h);
                        return conn_fail(res, k, "cannot make a read-only fd");
                }
                h.has_size = true;
                h.size = (uint64_t)st.st_size;
                info.flags |= PROTO_REGION_RDONLY;
        } else if (h.owned || !c->in_request) {
                /*
                 * A parked region's fd fetched for this request is sent as it is; for a
                 * reply made outside its request (a waiting OPEN answered by another
                 * connection's CREATE), the region's own fd is duplicated.
                 */
                k = regtab_fd_take(&h, &fd);
                if (k < 0) {
                        regtab_fd_put(&h);
                        return conn_fail(res, k, "cannot duplicate the region fd");
                }
        }
        /* else fd stays -1: the region's own fd (h.fd) is lent to the reply below, not duplicated */
        info.seals = conn_region_seals_with_fd(r, h.fd);
        /* one fstat per OPEN: the size comes from the check that fetched or reopened the fd, if any */
        if (!check)
                ; /* the creator's own fresh region: its size is the one just made */
        else if (h.has_size)
                conn_region_sync_size_to(c, r, h.size);
        else
                conn_region_sync_size(c, r, h.fd);
        info.size = r->size;
        r->open_count++;
        if (opcode == PROTO_OP_OPENV) {
                struct proto_region_infov v = { .info = info, .generation = region_generation(r) };

                len = proto_region_infov_encode(&v, buf, sizeof(buf));
        } else {
                len = proto_region_info_encode(&info, buf, sizeof(buf));
        }
        if (fd >= 0)
                conn_reply_encoded(c, &req, len, buf, &fd, 1);
        else
                conn_reply_encoded_with_fd(c, &req, len, buf, h.fd); /* sent now, or copied if it must wait */
        regtab_fd_put(&h);
        return 0;
}

/*
 * Make a new named region public: add it to the table, save it in the fd
 * store (a region that would not survive a restart is refused, not silently
 * kept: L2), lease it to @c if asked, charge its owner. On failure @r is not
 * in the table (the caller frees it). Return: 0, or a negative errno with
 * @res filled in.
 */
static int conn_region_publish(struct conn *c, struct region *r, bool lease, const char *what,
                               struct conn_result *res)
{
        struct conn_ctx *ctx = c->ctx;
        int k;

        k = regtab_add(ctx->regtab, r);
        if (k < 0)
                return conn_fail(res, k, "cannot add the region");
        r->store.gid = c->gid; /* its owner's limits it is charged within (below): kept for a restart */
        k = service_region_added(r);
        if (k < 0) {
                uint64_t stored, max;

                log_error("cannot save region '%s' in the service manager's fd store: %s", r->name, strerror(-k));
                regtab_remove(ctx->regtab, r);
                service_store_usage(&stored, &max);
                if (k == -ENOSPC && max && stored >= max)
                        return conn_failf(res, k,
                                          "no space in the service manager's fd store: it holds %" PRIu64
                                          " fds, FileDescriptorStoreMax is %" PRIu64 "; delete regions, or raise "
                                          "FileDescriptorStoreMax and IOMEMD_FDSTORE_MAX in iomemd.service",
                                          stored, max);
                return conn_fail(res, k, "cannot save the region (fd store)");
        }
        if (lease)
                conn_region_lease_link(c, r);
        quota_charge(ctx->quota, c->uid, (int64_t)r->charged, 1, 0, 0); /* the uid has an entry: never allocates */
        ctx->generation++;
        conn_watch_notify(ctx, PROTO_EV_CREATED, r, NULL, 0);
        log_debug("%s region '%s' id=%llu size=%llu for uid %u", what, r->name, (unsigned long long)r->meta.id,
                  (unsigned long long)r->size, (unsigned)c->uid);
        return 0;
}

/*
 * After the creator's reply (conn_result.after): wake the OPENs waiting for
 * the name, then the OPENVs waiting for a version this one is (only those
 * of this name and their buckets' others are looked at: conn_region_wait_wake()),
 * then park the fd in a keeper if the daemon is over its fd budget.
 */
static void conn_region_announce(struct conn *c, void *arg)
{
        struct region *r = arg;
        int k;

        regtab_wake(c->ctx->regtab, r);
        k = regtab_settle(c->ctx->regtab, r);
        if (k < 0)
                log_warning("cannot park region '%s' in an fd keeper: %s", r->name, strerror(-k));
}

/* ---- CREATE ------------------------------------------------------------- */

/* CREATE with an empty name: a fresh object for the requester alone; nothing is kept. */
static int conn_region_create_anonymous(struct conn *c, const struct transport_frame *f, const struct proto_create *m,
                                        struct conn_result *res)
{
        const struct config *cfg = c->ctx->config;
        struct proto_region_info info = { .size = m->size, .flags = PROTO_REGION_ANONYMOUS };
        enum proto_backend backend, chosen;
        uint32_t page_flags;
        uint8_t buf[64];
        int fd, r;

        if (m->flags & (PROTO_CREATE_EXCLUSIVE | PROTO_CREATE_LEASE))
                return conn_fail(res, -EINVAL, "EXCLUSIVE and LEASE need a name");
        /*
         * Memory the daemon allocates itself (RESERVE's fallocate, hugetlb pages
         * taken from the pool at creation) is charged to the daemon's memory
         * cgroup or the system's pool for as long as any fd of the object
         * lives. The daemon keeps nothing of an anonymous region, so nothing
         * could stay charged to the uid: one anonymous RESERVE after another
         * would allocate without bound. The requester may fallocate its own fd
         * (charged to its own cgroup); HUGE gives transparent huge pages or
         * normal ones, whose pages are allocated by whoever touches them.
         */
        if (m->flags & PROTO_CREATE_RESERVE)
                return conn_fail(res, -EINVAL, "RESERVE needs a name (the daemon keeps nothing of an anonymous "
                                               "region to charge): fallocate the fd instead");
        if (m->seals && m->backend != PROTO_BACKEND_AUTO && m->backend != PROTO_BACKEND_MEMFD)
                return conn_fail(res, -EOPNOTSUPP, "only memfd can be sealed");
        if (config_backend_for(cfg, (enum proto_backend)m->backend, &backend) < 0)
                return conn_fail(res, -EPERM, "this backend is not in the daemon's allowed-backends");
        /*
         * Nothing of an anonymous region is kept, so nothing can stay charged
         * (the daemon cannot tell when its last holder closes it), but it must
         * fit where a named one would: in the uid's byte quota and under
         * --max-bytes, as if held. Its fd counts as in flight until sent.
         */
        r = conn_region_check_room(c, c->uid, 0, m->size, 0, 1, res);
        if (r < 0)
                return r;
        r = conn_region_make(c, m, backend, true, &fd, &chosen, &page_flags, NULL, res);
        if (r < 0)
                return r;
        info.flags |= page_flags;
        if (m->seals) {
                r = chosen == PROTO_BACKEND_MEMFD ? conn_region_seal_new(fd, m->seals) : -EOPNOTSUPP;
                if (r < 0) {
                        close(fd);
                        return conn_fail(res, r, "cannot apply the seals");
                }
        }
        info.seals = conn_region_seals_of(fd, (uint16_t)chosen);
        info.backend = chosen;
        /* the transport closes the daemon's copy once it is sent */
        conn_reply_encoded(c, &f->hdr, proto_region_info_encode(&info, buf, sizeof(buf)), buf, &fd, 1);
        return 0;
}

/*
 * The rest of a named CREATE once its object @fd (consumed) exists, made with
 * @chosen and @page_flags (RESERVE done, if asked): seals, the region, the
 * table, and the reply to request @id with its read-write fd.
 * Return: 0 (the reply is queued, @res->after set); a negative errno with
 * @res filled in (nothing is left behind).
 */
static int conn_region_create_finish(struct conn *c, uint32_t id, const struct proto_create *m, int fd,
                                     enum proto_backend chosen, uint32_t page_flags, struct conn_result *res)
{
        const struct config *cfg = c->ctx->config;
        __attribute__((cleanup(regtab_region_freep))) struct region *region = NULL;
        struct region_meta meta = {};
        struct region *added;
        struct stat st;
        uint32_t seals;
        int r;

        /*
         * F_SEAL_SHRINK on named memfds: another client's mapping can never
         * fault (SIGBUS) because someone shrank the object under it (S1).
         */
        seals = m->seals | (m->flags & PROTO_CREATE_RESIZABLE ? 0 : PROTO_SEAL_SHRINK | PROTO_SEAL_GROW);
        if (chosen == PROTO_BACKEND_MEMFD)
                r = conn_region_seal_new(fd, seals);
        else
                r = m->seals ? -EOPNOTSUPP : 0;
        if (r < 0) {
                close(fd);
                return conn_fail(res, r, "cannot apply the seals");
        }

        meta.ctime_ns = conn_region_realtime_ns();
        meta.uid = c->uid;
        meta.gid = c->gid;
        meta.mode = m->mode ? m->mode : cfg->default_mode;
        meta.flags = (m->flags & PROTO_CREATE_LEASE ? PROTO_REGION_LEASED : 0) |
                     (m->flags & PROTO_CREATE_RESIZABLE ? PROTO_REGION_RESIZABLE : 0) | page_flags;
        meta.backend = chosen;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                close(fd);
                return conn_fail(res, r, "cannot stat the memory object");
        }
        r = regtab_region_new(m->name, fd, m->size, &meta, &region);
        fd = -1; /* consumed */
        if (r < 0)
                return conn_fail(res, r, "out of memory");
        /* its identity, for read-only reopens without a second fstat */
        region->park.dev = (uint64_t)st.st_dev;
        region->park.ino = (uint64_t)st.st_ino;
        /*
         * Sealed against SHRINK and GROW above, before any fd of it left the
         * daemon, and fstat'ed since: its size is final now (regtab.h), so no
         * OPEN of it needs an fstat, held or parked.
         */
        region->size_final = chosen == PROTO_BACKEND_MEMFD &&
                             (seals & (PROTO_SEAL_SHRINK | PROTO_SEAL_GROW)) == (PROTO_SEAL_SHRINK | PROTO_SEAL_GROW) &&
                             (uint64_t)st.st_size == region->size;
        r = conn_region_publish(c, region, m->flags & PROTO_CREATE_LEASE, "created", res);
        if (r < 0)
                return r;
        added = region;
        region = NULL; /* stolen: the table owns it */
        /* waiters are woken after the creator's reply, whatever it is */
        res->after = conn_region_announce;
        res->after_arg = added;
        /* the creator gets its read-write fd whatever the mode says (as open(O_CREAT) with 0444 does) */
        return conn_region_send(c, PROTO_OP_CREATE, id, added, false, false, res);
}

/* ---- RESERVE on a reserver thread --------------------------------------- */

/* Return: the reservation in flight for @name, or NULL. */
static struct conn_reserve *conn_region_reserve_find(const struct conn_ctx *ctx, const char *name)
{
        size_t len = strlen(name);

        for (struct conn_reserve *cr = ctx->reserves; cr; cr = cr->next) /* CREATEs only */
                if (cr->name_len == len && memcmp(cr->name, name, len) == 0)
                        return cr;
        return NULL;
}

/* Return: 0 unless a reservation of @name is in flight: -EBUSY with @res filled in. */
static int conn_region_check_unclaimed(const struct conn *c, const char *name, struct conn_result *res)
{
        if (!c->ctx->reserves || !conn_region_reserve_find(c->ctx, name))
                return 0;
        return conn_fail(res, -EBUSY, "a CREATE with RESERVE of this name is in progress: try again once it is "
                                      "done (OPEN with WAIT is answered when it is)");
}

/*
 * End @cr: unlink it from its connection (if it still has one), end a
 * CREATE's claim or a RESIZE's or SEAL's mark on its region,
 * refund what it charged (a refund never allocates: the charge kept the
 * owner's entry). Its job is the caller's business. Return: the RESIZE's or
 * SEAL's region if it still exists, else NULL.
 */
static struct region *conn_region_reserve_end(struct conn_reserve *cr)
{
        struct conn *c = cr->conn;
        struct conn_ctx *ctx = cr->ctx;
        struct region *r = NULL;

        if (cr->claimed) {
                if (cr->prev)
                        cr->prev->next = cr->next;
                else
                        ctx->reserves = cr->next;
                if (cr->next)
                        cr->next->prev = cr->prev;
        }
        if (cr->opcode != PROTO_OP_CREATE) {
                r = regtab_lookup_id(ctx->regtab, cr->region_id);
                if (r)
                        r->resizing = false;
        }
        if (c)
                c->reserve = NULL;
        ctx->reserving_bytes -= cr->charge;
        ctx->reserving_regions -= cr->regions;
        quota_charge(ctx->quota, cr->owner, -(int64_t)cr->charge, -(int64_t)cr->regions, 0, 0);
        return r;
}

/* Charge @cr's @charge and @regions to its @owner, and make it @c's reservation in flight. */
static void conn_region_reserve_charge(struct conn *c, struct conn_reserve *cr)
{
        struct conn_ctx *ctx = c->ctx;

        /* the owner has an entry (its connection, or the region it owns, holds it): never allocates */
        quota_charge(ctx->quota, cr->owner, (int64_t)cr->charge, (int64_t)cr->regions, 0, 0);
        ctx->reserving_bytes += cr->charge;
        ctx->reserving_regions += cr->regions;
        c->reserve = cr;
}

/*
 * Return: true if @c's peer closed its socket (not merely shut its sending
 * side: that peer still reads). Unix stream sockets say POLLHUP only once
 * both directions are shut, which a close of the peer's last fd does.
 */
static bool conn_region_peer_gone(const struct conn *c)
{
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

        return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLERR));
}

static void conn_region_resize_apply(struct conn *c, const struct proto_header *req, struct region *r,
                                     uint64_t from, uint64_t size);
static void conn_region_resize_record(struct conn_ctx *ctx, struct region *r, uint64_t from, uint64_t size);
static void conn_region_seal_record(struct conn_ctx *ctx, struct region *r, uint32_t seals);

/*
 * Close a job's fd (a completion's): on the closer's threads, as the
 * table's region fds are (regtab.c). It may be the object's last reference
 * (its region deleted or replaced while the job ran, its holders gone; a
 * failed CREATE's object, allocated in part), and that close frees all of
 * its memory, 50-90 ms a GiB here: not on the event loop.
 */
static void conn_region_job_fd_close(int fd)
{
        closer_close(fd, CLOSER_NO_UID);
}

/*
 * A RESIZE's or SEAL's job that ran (@result >= 0) changed the object: make
 * the daemon's record of @r (NULL: gone) say so, whoever is told. Return: nothing.
 */
static void conn_region_job_record(struct conn_reserve *cr, struct region *r, int result)
{
        if (!r || result < 0)
                return;
        if (cr->opcode == PROTO_OP_RESIZE) {
                if (cr->set_gid)
                        r->store.gid = cr->gid;
                conn_region_resize_record(cr->ctx, r, cr->old_size, cr->new_size);
        }
        else if (cr->opcode == PROTO_OP_SEAL)
                conn_region_seal_record(cr->ctx, r, (uint32_t)result);
}

/*
 * A RESIZE's job is done (@result: 0, the object now has the new size, or a
 * negative errno, nothing changed; @fd the job's copy of the region's fd,
 * consumed): answer it. @r is the region if it still exists. Return: nothing.
 */
static void conn_region_resize_done(struct conn *c, struct conn_reserve *cr, struct region *r, int fd, int result)
{
        struct proto_header req = { .opcode = PROTO_OP_RESIZE, .id = cr->request_id };
        const char *why = "cannot resize";

        conn_region_job_fd_close(fd);
        if (!r) {
                conn_reply_error(c, PROTO_OP_RESIZE, cr->request_id, -ENOENT,
                                 "the region was deleted or replaced while it was resized");
                return;
        }
        if (result == -EBUSY)
                why = "the region's size changed while the memory of its new size was reserved";
        else if (result == -EPERM && !(r->meta.flags & PROTO_REGION_RESIZABLE) &&
                 r->meta.backend != PROTO_BACKEND_MEMFD) /* a memfd's -EPERM is its seals' */
                why = "region is not resizable: another holder grew it past this size meanwhile";
        else if (result < 0 && cr->new_size > cr->old_size && (r->meta.flags & PROTO_REGION_RESERVED))
                why = "cannot reserve the memory of the new size";
        if (result < 0) {
                conn_reply_error(c, PROTO_OP_RESIZE, cr->request_id, result, why);
                return;
        }
        if (cr->set_gid)
                r->store.gid = cr->gid; /* done: the growth is charged within that gid's limits */
        conn_region_resize_apply(c, &req, r, cr->old_size, cr->new_size);
}

/* A SEAL's job is done (@result: the seals now, or a negative errno; @fd consumed): answer it. */
static void conn_region_seal_done(struct conn *c, struct conn_reserve *cr, struct region *r, int fd, int result)
{
        struct proto_seal_reply rep;
        struct proto_header req = { .opcode = PROTO_OP_SEAL, .id = cr->request_id };
        uint8_t buf[16];

        conn_region_job_fd_close(fd);
        if (!r) {
                conn_reply_error(c, PROTO_OP_SEAL, cr->request_id, -ENOENT,
                                 "the region was deleted or replaced while it was sealed");
                return;
        }
        if (result < 0) {
                conn_reply_error(c, PROTO_OP_SEAL, cr->request_id, result,
                                 result == -EBUSY ? "a writable mapping exists" : "cannot seal");
                return;
        }
        conn_region_seal_record(c->ctx, r, (uint32_t)result);
        rep.seals = r->seals; /* the job's and any seen since: all in force */
        conn_reply_encoded(c, &req, proto_seal_reply_encode(&rep, buf, sizeof(buf)), buf, NULL, 0);
}

/* A reservation is done (reserver_collect(), on the event loop): finish its request and answer it. */
static void conn_region_reserve_done(void *arg, int fd, int result)
{
        struct conn_reserve *cr = arg;
        struct conn *c = cr->conn;
        struct conn_result res;
        struct region *resized;
        int r;

        conn_result_init(&res);
        resized = conn_region_reserve_end(cr);
        /*
         * A peer gone meanwhile gets nothing it never heard of: nothing is made or resized. (A dropped
         * connection cancelled its job; this is for a hang-up the loop has not acted on yet, or cannot see.)
         */
        if (conn_region_peer_gone(c)) {
                conn_region_job_record(cr, resized, result); /* the object changed all the same */
                conn_region_job_fd_close(fd);
                free(cr);
                conn_drop(c, -ECONNRESET);
                conn_notify(c);
                return;
        }
        if (cr->opcode == PROTO_OP_RESIZE) {
                conn_region_resize_done(c, cr, resized, fd, result);
        } else if (cr->opcode == PROTO_OP_SEAL) {
                conn_region_seal_done(c, cr, resized, fd, result);
        } else {
                if (result < 0) {
                        conn_region_job_fd_close(fd);
                        r = conn_fail(&res, result,
                                      result == -ENOSPC || result == -ENOMEM ? CONN_RESERVE_FAILED
                                                                             : "cannot create the memory object");
                } else {
                        r = conn_region_create_finish(c, cr->request_id, &cr->m, fd, cr->chosen,
                                                      cr->page_flags | PROTO_REGION_RESERVED, &res);
                }
                if (r < 0 && !c->dead)
                        conn_reply_error(c, PROTO_OP_CREATE, cr->request_id, r, res.message);
                if (res.after)
                        res.after(c, res.after_arg);
        }
        fd = -1; /* consumed */
        free(cr);
        /* the requests it read behind this one: at its next turn (conn_deadline()) */
        c->backlog = true;
        conn_notify(c);
}

/*
 * Park a named CREATE with RESERVE: claim the name, charge the size and one
 * region, and hand @fd (consumed) to a reserver thread;
 * conn_region_reserve_done() answers it. @m's name is copied.
 * Return: 0 (no reply now; @c reads nothing more until then); a negative
 * errno with @res filled in (nothing charged, @fd closed).
 */
static int conn_region_reserve_start(struct conn *c, uint32_t id, const struct proto_create *m, int fd,
                                     enum proto_backend chosen, uint32_t page_flags, struct conn_result *res)
{
        struct conn_ctx *ctx = c->ctx;
        size_t len = strlen(m->name);
        struct conn_reserve *cr;
        int r;

        cr = calloc(1, sizeof(*cr) + len + 1);
        if (!cr) {
                close(fd);
                return conn_fail(res, -ENOMEM, "out of memory");
        }
        memcpy(cr->name, m->name, len + 1);
        cr->name_len = len;
        cr->ctx = ctx;
        cr->conn = c;
        cr->opcode = PROTO_OP_CREATE;
        cr->request_id = id;
        cr->owner = c->uid;
        cr->charge = m->size;
        cr->regions = 1;
        cr->m = *m;
        cr->m.name = cr->name;
        cr->chosen = chosen;
        cr->page_flags = page_flags;
        cr->claimed = true;
        cr->next = ctx->reserves;
        if (cr->next)
                cr->next->prev = cr;
        ctx->reserves = cr;
        conn_region_reserve_charge(c, cr);
        r = reserver_submit_consume_fd(fd, c->uid, 0, m->size, conn_region_reserve_done, cr, &cr->job);
        fd = -1; /* consumed */
        if (r < 0) {
                conn_region_reserve_end(cr);
                free(cr);
                return conn_fail(res, r, "cannot start the reservation");
        }
        log_debug("reserving %llu bytes for region '%s' of uid %u on a reserver thread",
                  (unsigned long long)m->size, cr->name, (unsigned)c->uid);
        return 0;
}

/*
 * Park a RESIZE of region @r from @r->size to @size, or (@opcode
 * PROTO_OP_SEAL) a SEAL adding @seals: charge a growth (as the inline RESIZE
 * would: @size less what @r is charged) to its owner, mark @r resizing, and
 * hand @fd (a copy of @r's, consumed) to a reserver thread, which makes the
 * inode-locking calls (reserver_submit_resize_consume_fd(),
 * reserver_submit_seal_consume_fd()); conn_region_reserve_done() answers.
 * Return: 0 (no reply now); a negative errno with @res filled in.
 */
static int conn_region_resize_start(struct conn *c, uint16_t opcode, uint32_t id, struct region *r, uint64_t size,
                                    uint32_t seals, int fd, struct conn_result *res)
{
        struct conn_reserve *cr;
        unsigned flags = 0;
        int k;

        cr = calloc(1, sizeof(*cr) + r->name_len + 1);
        if (!cr) {
                close(fd);
                return conn_fail(res, -ENOMEM, "out of memory");
        }
        memcpy(cr->name, r->name, r->name_len + 1);
        cr->name_len = r->name_len;
        cr->ctx = c->ctx;
        cr->conn = c;
        cr->opcode = opcode;
        cr->request_id = id;
        cr->owner = r->meta.uid;
        cr->charge = opcode == PROTO_OP_RESIZE && size > r->charged ? size - r->charged : 0;
        cr->region_id = r->meta.id;
        cr->old_size = r->size;
        cr->new_size = size;
        /* as the inline RESIZE: kept only once the job succeeded (a failed one leaves the region's gid as it was) */
        cr->set_gid = opcode == PROTO_OP_RESIZE && size > r->size && c->uid == r->meta.uid;
        cr->gid = c->gid;
        conn_region_reserve_charge(c, cr);
        r->resizing = true;
        if (opcode == PROTO_OP_SEAL) {
                k = reserver_submit_seal_consume_fd(fd, c->uid, seals, conn_region_reserve_done, cr, &cr->job);
        } else {
                /* hugetlb too: its pages are taken before the new size is visible, never after */
                if ((r->meta.flags & PROTO_REGION_RESERVED) && size > r->size)
                        flags |= RESERVER_RESIZE_AHEAD;
                /* the loop's S1 rule again, on the size the object has when the job's ftruncate runs */
                if (!(r->meta.flags & PROTO_REGION_RESIZABLE))
                        flags |= RESERVER_RESIZE_NO_SHRINK;
                k = reserver_submit_resize_consume_fd(fd, c->uid, r->size, size, flags, conn_region_reserve_done,
                                                      cr, &cr->job);
        }
        fd = -1; /* consumed */
        if (k < 0) {
                conn_region_reserve_end(cr);
                free(cr);
                return conn_fail(res, k, "cannot start the job");
        }
        log_debug("%s region '%s' on a reserver thread", opcode == PROTO_OP_SEAL ? "sealing" : "resizing", cr->name);
        return 0;
}

/*
 * An abandoned RESIZE's or SEAL's job is gone (its work returned @result, its
 * fd closed): only now is its charge refunded and its region free for
 * another RESIZE or SEAL (until now its ftruncate could run); then what it
 * changed, if it ran (the object changed, wanted or not), is recorded: a
 * growth is then charged as a RESIZE's is.
 */
static void conn_region_reserve_gone(void *arg, int result)
{
        struct conn_reserve *cr = arg;
        struct region *r = conn_region_reserve_end(cr);

        conn_region_job_record(cr, r, result);
        free(cr);
}

/*
 * @c is dropped with a job in flight: its result is not wanted. A CREATE's
 * claim and charge end now (its fallocate only fills an object nobody will
 * see). A RESIZE's or SEAL's charge and mark on its region stay until its
 * job is gone
 * (conn_region_reserve_gone()): its ftruncate or F_ADD_SEALS may still run.
 */
static void conn_region_reserve_abandon(struct conn *c)
{
        struct conn_reserve *cr = c->reserve;

        if (!cr)
                return;
        log_debug("job for region '%s' abandoned: its client is gone", cr->name);
        /* the reserver closes the fd, now or once its work returns */
        if (cr->opcode != PROTO_OP_CREATE) {
                c->reserve = NULL;
                cr->conn = NULL;
                reserver_cancel(cr->job, conn_region_reserve_gone, cr); /* frees cr, now or later */
                return;
        }
        conn_region_reserve_end(cr);
        cr->conn = NULL;
        reserver_cancel(cr->job, NULL, NULL);
        free(cr);
}

bool conn_region_reserve_hung_up(const struct conn *c)
{
        return c->reserve && conn_region_peer_gone(c);
}

int conn_region_handle_create(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct conn_ctx *ctx = c->ctx;
        const struct config *cfg = ctx->config;
        struct proto_create m;
        enum proto_backend backend, chosen;
        struct region *existing;
        uint32_t page_flags;
        bool deferred = false;
        int fd, r;

        r = proto_create_decode(f->payload, f->hdr.length, &m);
        if (r < 0)
                return r; /* conn_dispatch() says which value (proto_refusal()) */
        r = conn_region_check_size(c, m.size, res);
        if (r < 0)
                return r;
        if (m.name[0] == '\0')
                return conn_region_create_anonymous(c, f, &m, res);

        existing = regtab_lookup(ctx->regtab, m.name);
        if (existing) {
                if (m.flags & PROTO_CREATE_EXCLUSIVE)
                        return conn_fail(res, -EEXIST, "name exists");
                /* access before the size: comparing first told anyone the size, one guess at a time */
                if (conn_access_check(c, existing, CONN_ACCESS_WRITE) < 0)
                        return conn_fail(res, -EACCES, "permission denied");
                if (existing->size != m.size)
                        return conn_fail(res, -EEXIST, "name exists with another size");
                return conn_region_send(c, f->hdr.opcode, f->hdr.id, existing, false, true, res);
        }
        r = conn_region_check_unclaimed(c, m.name, res);
        if (r < 0)
                return r;

        /* the fd of the reply too: a CREATE is never half-applied (made, then refused) */
        r = conn_region_check_room(c, c->uid, 0, m.size, 1, 1, res);
        if (r < 0)
                return r;
        if (config_backend_for(cfg, (enum proto_backend)m.backend, &backend) < 0)
                return conn_fail(res, -EPERM, "this backend is not in the daemon's allowed-backends");
        if (m.seals && backend != PROTO_BACKEND_AUTO && backend != PROTO_BACKEND_MEMFD)
                return conn_fail(res, -EOPNOTSUPP, "only memfd can be sealed");

        /* RESERVE's fallocate goes to a reserver thread when there is one (not in unit tests) */
        r = conn_region_make(c, &m, backend, false, &fd, &chosen, &page_flags,
                             (m.flags & PROTO_CREATE_RESERVE) && reserver_available() ? &deferred : NULL, res);
        if (r < 0)
                return r;
        if (deferred)
                return conn_region_reserve_start(c, f->hdr.id, &m, fd, chosen, page_flags, res);
        return conn_region_create_finish(c, f->hdr.id, &m, fd, chosen, page_flags, res);
}

/* ---- OPEN and its waiters ---------------------------------------------- */

static void conn_region_wait_wake(struct regtab_waiter *waiter, struct region *r);

/*
 * conn_region_wait_new() - park an OPEN or OPENV (@opcode, request @id) for
 * @name: within the connection's bound on waiting OPENs, with its deadline,
 * linked into c->waits, and registered in the table's waiters of @set
 * (REGTAB_WAIT_VERSION: for a version newer than @after_generation).
 * Return: 0; -EDQUOT or -ENOMEM with @res filled in.
 */
static int conn_region_wait_new(struct conn *c, uint16_t opcode, uint32_t id, const char *name, uint32_t flags,
                                uint32_t timeout_ms, enum regtab_wait_set set, uint64_t after_generation,
                                struct conn_result *res)
{
        size_t len = strlen(name);
        struct conn_wait *w;

        if (c->nwaits >= CONN_MAX_WAITS)
                return conn_failf(res, -EDQUOT,
                                  "too many waiting OPENs: %u wait on this connection, the most one may; wait for "
                                  "fewer names at once, or open another connection",
                                  c->nwaits);
        w = calloc(1, sizeof(*w) + len + 1);
        if (!w)
                return conn_fail(res, -ENOMEM, "out of memory");
        memcpy(w->name, name, len + 1);
        w->waiter.name = w->name;
        w->waiter.name_len = len;
        w->waiter.set = set;
        w->waiter.after_generation = after_generation;
        w->waiter.wake = conn_region_wait_wake;
        w->conn = c;
        w->opcode = opcode;
        w->request_id = id;
        w->flags = flags;
        if (timeout_ms != CONN_WAIT_FOREVER)
                w->deadline_ns = conn_now_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
        w->next = c->waits;
        if (w->next)
                w->next->prev = w;
        c->waits = w;
        c->nwaits++;
        regtab_waiter_add(c->ctx->regtab, &w->waiter);
        return 0;
}

static void conn_region_wait_unlink(struct conn *c, struct conn_wait *w)
{
        regtab_waiter_remove(c->ctx->regtab, &w->waiter);
        if (w->prev)
                w->prev->next = w->next;
        else
                c->waits = w->next;
        if (w->next)
                w->next->prev = w->prev;
        c->nwaits--;
}

/*
 * A parked OPEN's name was created, or a version a parked OPENV waits for was
 * published: its reply (or error) goes out now, outside any request of @c.
 * regtab_wake() took every wait @r satisfies out of the table before it
 * calls the first of them, in the order they came; so a reply that drops
 * its connection (conn_drop(): its output queue overflowed) only unlinks
 * that connection's waits still in the table (for the others, already
 * taken out, regtab_waiter_remove() does nothing), and frees nothing before
 * conn_free(), which the event loop calls later: the ones still to be
 * called here stay valid, see c->dead and are freed without a reply. A wait
 * @r does not satisfy (an OPENV for a later version) stays in the table.
 * (Finding each from the head of one list of all OPENVs instead was
 * quadratic, and scanning that list at all made every PUBLISH cost every
 * parked OPENV of every name: the table's buckets by name hash bound it to
 * this name's waits and their bucket's others.)
 */
static void conn_region_wait_wake(struct regtab_waiter *waiter, struct region *r)
{
        struct conn_wait *w = (struct conn_wait *)((char *)waiter - offsetof(struct conn_wait, waiter));
        struct conn *c = w->conn;
        struct conn_result res;
        int k;

        conn_result_init(&res);
        conn_region_wait_unlink(c, w);
        if (!c->dead) {
                k = conn_region_send(c, w->opcode, w->request_id, r, w->flags & PROTO_OPEN_RDONLY, true, &res);
                if (k < 0)
                        conn_reply_error(c, w->opcode, w->request_id, k, res.message);
                conn_notify(c);
        }
        free(w);
}

void conn_region_unhook(struct conn *c)
{
        conn_region_reserve_abandon(c);
        for (struct conn_wait *w = c->waits; w; w = w->next)
                regtab_waiter_remove(c->ctx->regtab, &w->waiter);
}

bool conn_region_expire(struct conn_ctx *ctx)
{
        for (unsigned n = 0; ctx->expiring && n < CONN_WORK_PER_TURN; n++) {
                log_debug("deleting leased region '%s' (its connection is gone)", ctx->expiring->name);
                conn_region_delete(ctx, ctx->expiring);
        }
        return ctx->expiring != NULL;
}

void conn_region_release(struct conn *c)
{
        struct conn_ctx *ctx = c->ctx;
        struct conn_wait *w, *next;
        struct region *r, *tail = NULL;

        for (w = c->waits; w; w = next) {
                next = w->next;
                free(w);
        }
        c->waits = NULL;
        c->nwaits = 0;
        /*
         * A batch now, as a request's turn does; the rest at later turns of the loop: each region parked in an
         * fd keeper costs a round trip (DROP), and a client with thousands of leased regions held every other
         * client for all of them in one go (docs/reliability.md item 31).
         */
        for (unsigned n = 0; c->leases && (n < CONN_WORK_PER_TURN || !ctx->expire_later); n++) {
                log_debug("deleting leased region '%s'", c->leases->name);
                conn_region_delete(ctx, c->leases);
        }
        if (!c->leases)
                return;
        for (r = c->leases; r; r = r->lease.next) {
                r->lease.conn = NULL;
                r->lease.expiring = true;
                tail = r;
        }
        /*
         * Behind those of earlier hang-ups, not before them: a uid hanging up a connection with more than a
         * batch to spare at every turn would otherwise keep another's leased regions (their names, their
         * owner's charge) in the table for as long as it went on.
         */
        c->leases->lease.prev = ctx->expiring_tail;
        if (ctx->expiring_tail) {
                ctx->expiring_tail->lease.next = c->leases;
        } else {
                ctx->expiring = c->leases;
                ctx->expire_later(ctx);
        }
        ctx->expiring_tail = tail;
        c->leases = NULL;
}

uint64_t conn_region_deadline(const struct conn *c)
{
        uint64_t d = 0;

        for (const struct conn_wait *w = c->waits; w; w = w->next)
                if (w->deadline_ns && (!d || w->deadline_ns < d))
                        d = w->deadline_ns;
        return d;
}

void conn_region_timeout(struct conn *c, uint64_t now_ns)
{
        struct conn_wait *w, *next;

        for (w = c->waits; w && !c->dead; w = next) {
                next = w->next;
                if (!w->deadline_ns || now_ns < w->deadline_ns)
                        continue;
                conn_region_wait_unlink(c, w);
                conn_reply_error(c, w->opcode, w->request_id, -ETIMEDOUT,
                                 w->opcode == PROTO_OP_OPENV ? "no newer version yet" : "no such region yet");
                free(w);
        }
}

int conn_region_handle_open(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct proto_open m;
        struct region *r;
        int k;

        /* the decoder refuses an empty name */
        k = proto_open_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return k;
        r = regtab_lookup_len(c->ctx->regtab, m.name, m.name_len);
        if (r)
                return conn_region_send(c, f->hdr.opcode, f->hdr.id, r, m.flags & PROTO_OPEN_RDONLY, true, res);
        if (!(m.flags & PROTO_OPEN_WAIT))
                return conn_fail(res, -ENOENT, "no such region");
        if (m.timeout_ms == 0)
                return conn_fail(res, -ETIMEDOUT, "no such region");
        return conn_region_wait_new(c, PROTO_OP_OPEN, f->hdr.id, m.name, m.flags, m.timeout_ms, REGTAB_WAIT_NAME, 0,
                                    res);
}

/* ---- RESIZE, SEAL, STAT, LIST, DELETE ----------------------------------- */

/*
 * Record @r's new size @size, made by a RESIZE from @from bytes, charge its
 * owner and tell watchers. A growth (@size > @from) is charged in full, as
 * the RESIZE's quota check counted it, even when the loop saw the new size
 * before (a job's ftruncate is visible before its completion: a STAT or
 * OPEN meanwhile charged it as a holder's growth, only as far as the quota
 * room the RESIZE's own charge in flight left). Return: nothing.
 */
static void conn_region_resize_record(struct conn_ctx *ctx, struct region *r, uint64_t from, uint64_t size)
{
        uint64_t charged;

        /*
         * A size found final meanwhile (an OPEN or STAT while a RESIZE's job ran)
         * was read after seals against SHRINK and GROW: the job's ftruncate came
         * before them (after, it fails), and a holder may have changed the size
         * in between. The final size is the object's; the job's may not be. The
         * growth the RESIZE booked is charged as far as the object has it; past
         * that, what the OPEN or STAT charged (a holder's growth: within the
         * owner's limits) stands.
         */
        if (r->size_final) {
                uint64_t booked = size < r->size ? size : r->size;

                size = r->size;
                charged = r->charged > booked ? r->charged : booked;
        } else {
                charged = size > from ? size : (r->charged < size ? r->charged : size);
        }
        /* the owner has an entry (it owns this region): never allocates */
        quota_charge(ctx->quota, r->meta.uid, (int64_t)charged - (int64_t)r->charged, 0, 0, 0);
        regtab_set_size(ctx->regtab, r, size, charged);
        service_region_changed(r);
        ctx->generation++;
        conn_watch_notify(ctx, PROTO_EV_RESIZED, r, NULL, 0);
}

/*
 * Record @r's new seals @seals (read after a SEAL) and tell watchers. Seals
 * are only ever added, and a SEAL's job read its @seals on its thread, maybe
 * before an OPEN or STAT read newer ones meanwhile (a holder's): add them to
 * the record, never replace it, or LIST would tell a parked region's seals
 * (its record: it has no fd of it) as fewer than its object has. Return: nothing.
 */
static void conn_region_seal_record(struct conn_ctx *ctx, struct region *r, uint32_t seals)
{
        r->seals |= seals;
        service_region_changed(r);
        ctx->generation++;
        conn_watch_notify(ctx, PROTO_EV_SEALED, r, NULL, 0);
}

/* conn_region_resize_record(), and answer request @req with the size. Return: nothing. */
static void conn_region_resize_apply(struct conn *c, const struct proto_header *req, struct region *r,
                                     uint64_t from, uint64_t size)
{
        struct proto_resize_reply rep;
        uint8_t buf[16];

        conn_region_resize_record(c->ctx, r, from, size);
        rep.size = r->size;
        conn_reply_encoded(c, req, proto_resize_reply_encode(&rep, buf, sizeof(buf)), buf, NULL, 0);
}

int conn_region_handle_resize(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct conn_ctx *ctx = c->ctx;
        const struct config *cfg = ctx->config;
        struct proto_resize m;
        struct regtab_fd h;
        struct region *r;
        bool set_gid = false;
        int k;

        k = proto_resize_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return k;
        k = conn_access_find(c, m.name, CONN_ACCESS_RESIZE, NULL, &r, res);
        if (k < 0)
                return k;
        k = conn_region_check_size(c, m.size, res);
        if (k < 0)
                return k;
        if (r->resizing)
                return conn_fail(res, -EBUSY, CONN_RESIZE_BUSY);
        k = regtab_region_get_fd(ctx->regtab, r, &h);
        if (k < 0)
                return conn_fail(res, k, "the region's fd keeper is gone");
        /* decide on the size the object has now, not the one last recorded */
        conn_region_sync_size(c, r, h.fd);
        regtab_fd_put(&h);
        /* S1 for backends without seals: only RESIZABLE regions may shrink under their holders */
        if (m.size < r->size && !(r->meta.flags & PROTO_REGION_RESIZABLE))
                return conn_fail(res, -EPERM, "region is not resizable");
        /*
         * Growth is charged in full, including what a holder's growth left uncharged (r->charged);
         * the owner pays, whoever asks (only the owner or root may).
         */
        if (m.size > r->size) {
                k = conn_region_check_room(c, r->meta.uid, r->charged, m.size, 0, 0, res);
                if (k < 0)
                        return k;
                /* a memfd made without RESIZABLE (or REGISTERed) is sealed against growing: say so, not "seals" */
                if (!(r->meta.flags & PROTO_REGION_RESIZABLE) && r->meta.backend == PROTO_BACKEND_MEMFD)
                        return conn_fail(res, -EPERM, CONN_NOT_RESIZABLE_GROW);
                /*
                 * Charged in full within the limits just checked: a restart charges it within them again. Set
                 * once the RESIZE succeeded (below; a job's, at its completion): one that fails after this point
                 * (no keeper, ftruncate or the reservation refused) changes nothing, its gid included.
                 */
                set_gid = c->uid == r->meta.uid;
        }
        k = regtab_region_get_fd(ctx->regtab, r, &h);
        if (k < 0)
                return conn_fail(res, k, "the region's fd keeper is gone");
        /*
         * ftruncate waits for the inode lock, which any holder's fallocate holds throughout: on a
         * reserver thread when there is one. A RESERVEd region stays reserved: the new bytes get
         * their memory there too, before the size changes (hugetlb: after).
         */
        if (reserver_available()) {
                int fd;

                k = backend_check_size(m.size, cfg->max_region_size);
                if (k < 0) {
                        regtab_fd_put(&h);
                        return conn_fail(res, k, "cannot resize");
                }
                fd = fcntl(h.fd, F_DUPFD_CLOEXEC, 3);
                k = fd < 0 ? -errno : 0;
                regtab_fd_put(&h);
                if (k < 0)
                        return conn_fail(res, k, "cannot duplicate the region fd");
                return conn_region_resize_start(c, PROTO_OP_RESIZE, f->hdr.id, r, m.size, 0, fd, res);
        }
        k = backend_resize(h.fd, m.size, cfg->max_region_size);
        if (k == 0 && (r->meta.flags & PROTO_REGION_RESERVED) && m.size > r->size) {
                /* a RESERVEd region stays reserved: the new bytes get their memory now, or the resize fails */
                k = backend_reserve_range(h.fd, r->size, m.size - r->size);
                conn_region_count_reserved(c, m.size - r->size);
                if (k < 0) {
                        (void)!ftruncate(h.fd, (off_t)r->size);
                        regtab_fd_put(&h);
                        return conn_fail(res, k, "cannot reserve the memory of the new size");
                }
        }
        regtab_fd_put(&h);
        if (k < 0)
                return conn_fail(res, k, "cannot resize");
        if (set_gid)
                r->store.gid = c->gid;
        conn_region_resize_apply(c, &f->hdr, r, r->size, m.size);
        return 0;
}

int conn_region_handle_seal(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct proto_seal_reply rep;
        struct proto_seal m;
        struct regtab_fd h;
        struct region *r;
        uint8_t buf[16];
        int k;

        k = proto_seal_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return k;
        k = conn_access_find(c, m.name, CONN_ACCESS_SEAL, NULL, &r, res);
        if (k < 0)
                return k;
        if (r->meta.backend != PROTO_BACKEND_MEMFD)
                return conn_fail(res, -EOPNOTSUPP, "only memfd can be sealed");
        if (r->resizing)
                return conn_fail(res, -EBUSY, CONN_RESIZE_BUSY);
        k = regtab_region_get_fd(c->ctx->regtab, r, &h);
        if (k < 0)
                return conn_fail(res, k, "the region's fd keeper is gone");
        /* F_ADD_SEALS takes the inode lock, which any holder's fallocate holds throughout: on a reserver thread */
        if (reserver_available()) {
                int fd = fcntl(h.fd, F_DUPFD_CLOEXEC, 3);

                k = fd < 0 ? -errno : 0;
                regtab_fd_put(&h);
                if (k < 0)
                        return conn_fail(res, k, "cannot duplicate the region fd");
                return conn_region_resize_start(c, PROTO_OP_SEAL, f->hdr.id, r, 0, m.seals, fd, res);
        }
        k = backend_seal(h.fd, m.seals);
        if (k < 0) {
                regtab_fd_put(&h);
                return conn_fail(res, k, k == -EBUSY ? "a writable mapping exists" : "cannot seal");
        }
        k = backend_get_seals(h.fd);
        regtab_fd_put(&h);
        if (k < 0)
                return conn_fail(res, k, "cannot read the seals");
        conn_region_seal_record(c->ctx, r, (uint32_t)k);
        rep.seals = r->seals;
        conn_reply_encoded(c, &f->hdr, proto_seal_reply_encode(&rep, buf, sizeof(buf)), buf, NULL, 0);
        return 0;
}

/* STAT and STATV: find @f's name for reading and describe it in *rep. Return: 0, or negative errno with @res. */
static int conn_region_stat(struct conn *c, struct transport_frame *f, struct proto_stat_reply *repp,
                            struct region **regionp, struct conn_result *res)
{
        struct proto_stat_reply rep = {};
        struct proto_name m;
        struct regtab_fd h;
        struct region *r;
        int k;

        k = proto_name_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return k;
        k = conn_access_find(c, m.name, CONN_ACCESS_READ, NULL, &r, res);
        if (k < 0)
                return k;
        if (regtab_region_get_fd(c->ctx->regtab, r, &h) == 0) {
                conn_region_sync_size(c, r, h.fd);
                /* a parked region's too, with the fd at hand: a holder may have added seals since they were seen */
                rep.seals = conn_region_seals_with_fd(r, h.fd);
                regtab_fd_put(&h);
        } else {
                rep.seals = r->seals; /* the last seen */
        }
        rep.id = r->meta.id;
        rep.size = r->size;
        rep.ctime_ns = r->meta.ctime_ns;
        rep.open_count = r->open_count;
        rep.flags = r->meta.flags & conn_region_flags_shown(c);
        rep.uid = r->meta.uid;
        rep.gid = r->meta.gid;
        rep.mode = r->meta.mode;
        rep.backend = r->meta.backend;
        *repp = rep;
        *regionp = r;
        return 0;
}

int conn_region_handle_stat(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct proto_stat_reply rep;
        struct region *r;
        uint8_t buf[128];
        int k;

        k = conn_region_stat(c, f, &rep, &r, res);
        if (k < 0)
                return k;
        conn_reply_encoded(c, &f->hdr, proto_stat_reply_encode(&rep, buf, sizeof(buf)), buf, NULL, 0);
        return 0;
}

int conn_region_handle_statv(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct proto_stat_replyv rep;
        struct region *r;
        uint8_t buf[128];
        int k;

        k = conn_region_stat(c, f, &rep.stat, &r, res);
        if (k < 0)
                return k;
        rep.generation = region_generation(r);
        conn_reply_encoded(c, &f->hdr, proto_stat_replyv_encode(&rep, buf, sizeof(buf)), buf, NULL, 0);
        return 0;
}

static bool conn_region_list_match(const struct region *r, const char *prefix, size_t prefix_len)
{
        return r->name_len >= prefix_len && memcmp(r->name, prefix, prefix_len) == 0;
}

int conn_region_handle_list(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct regtab *t = c->ctx->regtab;
        struct proto_list_writer w;
        struct proto_list m;
        struct region *r;
        uint64_t last = 0, next_cursor = 0, resume;
        size_t prefix_len, scanned = 0;
        uint8_t *buf;
        int k;

        k = proto_list_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return k;
        buf = malloc(PROTO_MAX_PAYLOAD);
        if (!buf)
                return conn_fail(res, -ENOMEM, "out of memory");
        prefix_len = strlen(m.prefix);
        proto_list_writer_init(&w, buf, PROTO_MAX_PAYLOAD);
        r = regtab_next_after(t, m.cursor, &resume);
        if (!r && resume)
                next_cursor = resume; /* a stale cursor: an empty page, and where to go on from */
        for (; r; r = r->tab.next) {
                struct proto_list_entry e;

                /*
                 * One LIST looks at a bounded number of regions, so that a prefix
                 * matching nothing in a huge table cannot stall every other client:
                 * the reply then says where to go on, with fewer entries (maybe none).
                 */
                if (++scanned > CONN_LIST_SCAN_MAX) {
                        last = r->tab.prev ? r->tab.prev->meta.id : 0;
                        break;
                }
                /* not seeing a region in LIST is not worth a log line */
                if (!conn_region_list_match(r, m.prefix, prefix_len) ||
                    conn_access_allowed(c, r, CONN_ACCESS_READ) < 0)
                        continue;
                if (m.max_entries && w.count >= m.max_entries)
                        break;
                e = (struct proto_list_entry){
                        .id = r->meta.id,
                        .size = r->size,
                        .seals = conn_region_seals(r),
                        .mode = r->meta.mode,
                        .uid = r->meta.uid,
                        .gid = r->meta.gid,
                        .name = r->name,
                };
                if (proto_list_writer_add(&w, &e) < 0)
                        break;
                last = r->meta.id;
        }
        /*
         * r is the first region not looked at or not written, if any: then the
         * client asks again after `last`, the last region looked at or written.
         */
        if (r && last)
                next_cursor = last;
        c->turn_work += (unsigned)(scanned / 256); /* a long scan counts as that many requests (fairness) */
        conn_reply_encoded(c, &f->hdr, proto_list_writer_finish(&w, next_cursor), buf, NULL, 0);
        free(buf);
        return 0;
}

int conn_region_handle_delete(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct proto_name m;
        struct region *r;
        int k;

        k = proto_name_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return k;
        k = conn_access_find(c, m.name, CONN_ACCESS_DELETE, NULL, &r, res);
        if (k < 0)
                return k;
        log_debug("deleting region '%s' for uid %u", r->name, (unsigned)c->uid);
        conn_region_delete(c->ctx, r);
        conn_reply_raw(c, f->hdr.opcode, f->hdr.id, 0, NULL, 0, NULL, 0);
        return 0;
}

/* ---- REGISTER ----------------------------------------------------------- */

/*
 * Is a client's @fd a memfd the daemon may publish under a name (D7, D8)?
 * Only fstat, fcntl, fstatfs and readlink are used on it: nothing that can
 * block on a pipe or socket, nothing that maps it. Read-only hand-outs are
 * reopened through /proc by the daemon, so the inode's own mode is what a
 * reader's reopen is checked against: group and other must not be able to
 * write it unless writes are sealed off.
 * Return: 0 with *sealsp; -EINVAL (wrong kind, size, access mode); -EPERM
 * (missing seals, mode too open); -EACCES (the daemon cannot reopen it).
 */
static int conn_region_register_check(int fd, uint64_t size, uint32_t *sealsp, const char **whyp)
{
        struct statfs sfs;
        struct stat st;
        int fl, seals, rfd, k;

        fl = fcntl(fd, F_GETFL);
        if (fl < 0 || (fl & O_PATH)) {
                *whyp = "an O_PATH fd is not a memory object";
                return -EINVAL;
        }
        /*
         * Ask the kernel first, before anything that could reach a file system:
         * only shmem answers F_GET_SEALS, and fstat of a FUSE file would wait for
         * its (hostile) server while every other client waits for us.
         */
        seals = fcntl(fd, F_GET_SEALS);
        if (seals < 0) {
                *whyp = "not a sealable memfd (a socket, pipe, directory, device or regular file)";
                return -EINVAL;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                *whyp = "not a memfd (a socket, pipe, directory or device)";
                return -EINVAL;
        }
        if ((fl & O_ACCMODE) != O_RDWR) {
                *whyp = "the memfd must be passed open read-write";
                return -EINVAL;
        }
        /* each read once: the checks below share this fstat and fstatfs (a PUBLISH's latency is in its syscalls) */
        if (fstatfs(fd, &sfs) < 0 || backend_detect_with(fd, &st, &sfs) != PROTO_BACKEND_MEMFD) {
                *whyp = "not a memfd (a regular file)";
                return -EINVAL;
        }
        if (st.st_size < 0 || (uint64_t)st.st_size != size) {
                *whyp = "the memfd's size is not the declared size";
                return -EINVAL;
        }
        /* P7: the bits we need must be set; other bits (F_SEAL_EXEC, future ones) do not matter */
        if (((uint32_t)seals & PROTO_REGISTER_SEALS_REQUIRED) != PROTO_REGISTER_SEALS_REQUIRED) {
                /* what is needed, and how to add it; F_SEAL_SEAL (or no MFD_ALLOW_SEALING) means it never can be */
                *whyp = (uint32_t)seals & PROTO_SEAL_SEAL
                                ? "the memfd must be sealed with F_SEAL_SHRINK and F_SEAL_GROW, and this one takes no "
                                  "more seals (F_SEAL_SEAL, or made without MFD_ALLOW_SEALING): make one with "
                                  "memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING), fill it, then add them "
                                  "with fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW)"
                                : "the memfd must be sealed with F_SEAL_SHRINK and F_SEAL_GROW: add them with "
                                  "fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), or iomem_region_seal(region, "
                                  "IOMEM_SEAL_SHRINK | IOMEM_SEAL_GROW), once its size is final";
                return -EPERM;
        }
        /*
         * A hugetlb memfd (MFD_HUGETLB): its owner can punch holes
         * (FALLOC_FL_PUNCH_HOLE, which SHRINK and GROW do not stop), and a
         * reader's later fault needs a fresh huge page; with the pool empty
         * that is SIGBUS in the reader. Only a write seal stops punching.
         */
        if (sfs.f_type == HUGETLBFS_MAGIC && !((uint32_t)seals & (PROTO_SEAL_WRITE | PROTO_SEAL_FUTURE_WRITE))) {
                *whyp = "a hugetlb memfd must be sealed F_SEAL_WRITE or F_SEAL_FUTURE_WRITE (holes punched in it "
                        "would make readers fault)";
                return -EPERM;
        }
        if ((st.st_mode & 0022) && !((uint32_t)seals & (PROTO_SEAL_WRITE | PROTO_SEAL_FUTURE_WRITE))) {
                *whyp = "group or other may write the memfd's inode: fchmod it (0600 or 0644) first";
                return -EPERM;
        }
        if (st.st_mode & 0111) {
                *whyp = "the memfd's inode is executable: fchmod it (0600 or 0644) first";
                return -EPERM;
        }
        /* read-only hand-outs are reopened: find out now, not at the first OPEN */
        k = backend_reopen_rdonly_stat(fd, (uint64_t)st.st_dev, (uint64_t)st.st_ino, &rfd, NULL);
        if (k == -EAGAIN) {
                *whyp = "the memfd is under a lease (F_SETLEASE): release it first";
                return -EAGAIN;
        }
        if (k < 0) {
                *whyp = "the daemon cannot reopen the memfd read-only (its uid may not read the inode)";
                return -EACCES;
        }
        close(rfd);
        *sealsp = (uint32_t)seals;
        return 0;
}

/*
 * conn_region_adopt() - the region of a REGISTER or PUBLISH (@what) named
 * @name from @f's one fd: check the memfd (conn_region_register_check(), a
 * refusal logged), then take the fd into a new region with @meta.
 * Return: 0 with *regionp and *sealsp (the memfd's seals); a negative errno
 * with @res filled in.
 */
static int conn_region_adopt(struct conn *c, struct transport_frame *f, const char *what, const char *name,
                             uint64_t size, const struct region_meta *meta, struct region **regionp,
                             uint32_t *sealsp, struct conn_result *res)
{
        const char *why = "";
        int fd, r;

        r = conn_region_register_check(f->fds[0], size, sealsp, &why);
        if (r < 0) {
                if (conn_access_log_allowed(c))
                        log_info("%s of '%s' by pid=%d uid=%u refused: %s", what, name, (int)c->pid,
                                 (unsigned)c->uid, why);
                return conn_fail(res, r, why);
        }
        fd = f->fds[0];
        f->fds[0] = -1; /* ours now */
        r = regtab_region_new(name, fd, size, meta, regionp);
        fd = -1; /* consumed */
        if (r < 0)
                return conn_fail(res, r, "out of memory");
        (*regionp)->seals = *sealsp & PROTO_SEALS_KNOWN;
        /*
         * conn_region_register_check() saw SHRINK and GROW (required) before its
         * fstat found the declared size: the size can no longer change, and a
         * parked OPEN of the region needs no fstat (regtab_region_get_send_fd()).
         */
        (*regionp)->size_final = true;
        return 0;
}

int conn_region_handle_register(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct conn_ctx *ctx = c->ctx;
        const struct config *cfg = ctx->config;
        __attribute__((cleanup(regtab_region_freep))) struct region *region = NULL;
        struct region_meta meta = {};
        struct proto_register_reply rep = {};
        struct proto_register m;
        struct region *added;
        uint32_t seals = 0;
        uint8_t buf[32];
        int r;

        r = proto_register_decode(f->payload, f->hdr.length, &m);
        if (r < 0)
                return r;
        if (f->nfds != 1)
                return conn_fail(res, -EINVAL, "REGISTER carries exactly one fd");
        r = conn_region_check_size(c, m.size, res);
        if (r < 0)
                return r;
        if (regtab_lookup(ctx->regtab, m.name))
                return conn_fail(res, -EEXIST, "name exists");
        r = conn_region_check_unclaimed(c, m.name, res);
        if (r < 0)
                return r;
        r = conn_region_check_room(c, c->uid, 0, m.size, 1, 0, res);
        if (r < 0)
                return r;

        meta.ctime_ns = conn_region_realtime_ns();
        meta.uid = c->uid;
        meta.gid = c->gid;
        meta.mode = m.mode ? m.mode : cfg->default_mode;
        meta.flags = m.flags & PROTO_REGISTER_LEASE ? PROTO_REGION_LEASED : 0;
        meta.backend = PROTO_BACKEND_MEMFD;
        r = conn_region_adopt(c, f, "REGISTER", m.name, m.size, &meta, &region, &seals, res);
        if (r < 0)
                return r;
        r = conn_region_publish(c, region, m.flags & PROTO_REGISTER_LEASE, "registered", res);
        if (r < 0)
                return r;
        added = region;
        region = NULL; /* stolen: the table owns it */
        rep.id = added->meta.id;
        rep.seals = added->seals; /* the protocol's bits, as every other reply (docs/protocol.md) */
        conn_reply_encoded(c, &f->hdr, proto_register_reply_encode(&rep, buf, sizeof(buf)), buf, NULL, 0);
        res->after = conn_region_announce;
        res->after_arg = added;
        return 0;
}

/* ---- OPENV and PUBLISH (the EVENTS feature) ------------------------------ */

int conn_region_handle_openv(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct conn_ctx *ctx = c->ctx;
        struct proto_openv m;
        struct region *r;
        int k;

        k = proto_openv_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return k;
        r = regtab_lookup(ctx->regtab, m.name);
        /* as OPEN: a region the caller may not read tells it nothing more, its generation included */
        if (r && conn_access_check(c, r, m.flags & PROTO_OPEN_RDONLY ? CONN_ACCESS_READ : CONN_ACCESS_WRITE) < 0)
                return conn_fail(res, -EACCES, "permission denied");
        if (r && region_generation(r) > m.after_generation)
                return conn_region_send(c, f->hdr.opcode, f->hdr.id, r, m.flags & PROTO_OPEN_RDONLY, true, res);
        if (!(m.flags & PROTO_OPEN_WAIT))
                return conn_fail(res, -ENOENT, r ? "no newer version" : "no such region");
        if (m.timeout_ms == 0)
                return conn_fail(res, -ETIMEDOUT, r ? "no newer version" : "no such region");
        return conn_region_wait_new(c, PROTO_OP_OPENV, f->hdr.id, m.name, m.flags, m.timeout_ms, REGTAB_WAIT_VERSION,
                                    m.after_generation, res);
}

/*
 * Put @new in @old's place under its name, in one step as seen by every
 * other request: table, fd store, quota (the owner is charged for both only
 * until the old one is gone), lease. @old is freed (holders keep their fds).
 * Return: 0; a negative errno with @res filled in and @old still in place.
 */
static int conn_region_replace(struct conn *c, struct region *old, struct region *new, bool lease,
                               struct conn_result *res)
{
        struct conn_ctx *ctx = c->ctx;
        struct region_meta before = old->meta;
        int k;

        /*
         * Into the fd store first, under the id it is about to get, while the old
         * version is untouched: a failure changes nothing (taking a parked region
         * out of the table also drops its keeper's copy, so @old cannot go back),
         * and a crash before the old one leaves the store keeps one of the two.
         */
        new->meta.id = regtab_next_id(ctx->regtab);
        /* the owner's limits it was checked within: the requester's own, or those root's request read (the old's) */
        new->store.gid = c->uid == new->meta.uid ? c->gid : old->store.gid;
        k = service_region_added(new);
        if (k < 0) {
                log_error("cannot save region '%s' in the service manager's fd store: %s", new->name, strerror(-k));
                return conn_fail(res, k, "cannot save the new version (fd store)");
        }
        regtab_remove(ctx->regtab, old);
        k = regtab_add(ctx->regtab, new); /* the name was just freed and the id is unused: cannot fail */
        assert(k == 0);
        service_region_removed(old);
        /* the owner has an entry (it owns @old): these never allocate */
        quota_charge(ctx->quota, new->meta.uid, (int64_t)new->charged, 1, 0, 0);
        quota_charge(ctx->quota, old->meta.uid, -(int64_t)old->charged, -1, 0, 0);
        conn_region_lease_unlink(ctx, old);
        if (lease)
                conn_region_lease_link(c, new);
        ctx->generation++;
        log_debug("published region '%s' id=%llu size=%llu replacing id=%llu for uid %u", new->name,
                  (unsigned long long)new->meta.id, (unsigned long long)new->size,
                  (unsigned long long)old->meta.id, (unsigned)c->uid);
        conn_watch_notify(ctx, PROTO_EV_PUBLISHED, new, &before, old->meta.id);
        regtab_region_free(old);
        return 0;
}

int conn_region_handle_publish(struct conn *c, struct transport_frame *f, struct conn_result *res)
{
        struct conn_ctx *ctx = c->ctx;
        const struct config *cfg = ctx->config;
        __attribute__((cleanup(regtab_region_freep))) struct region *region = NULL;
        struct region_meta meta = {};
        struct proto_publish_reply rep = {};
        struct proto_publish m;
        struct region *old, *added;
        uint32_t seals = 0, owner;
        uint8_t buf[64];
        bool lease;
        int r;

        r = proto_publish_decode(f->payload, f->hdr.length, &m);
        if (r < 0)
                return r;
        if (f->nfds != 1)
                return conn_fail(res, -EINVAL, "PUBLISH carries exactly one fd");
        r = conn_region_check_size(c, m.size, res);
        if (r < 0)
                return r;
        old = regtab_lookup(ctx->regtab, m.name);
        if (old) {
                if (conn_access_check(c, old, CONN_ACCESS_DELETE) < 0)
                        return conn_fail(res, -EACCES, "only the owner may publish a new version");
                if (m.expect_generation && m.expect_generation != region_generation(old))
                        return conn_failf(res, -ESTALE,
                                          "the current version is generation %llu, not the %llu expected: another "
                                          "was published first; read it, then publish against %llu",
                                          (unsigned long long)region_generation(old),
                                          (unsigned long long)m.expect_generation,
                                          (unsigned long long)region_generation(old));
        } else if (m.expect_generation) {
                return conn_fail(res, -ENOENT, "no such region (a version was expected)");
        } else {
                r = conn_region_check_unclaimed(c, m.name, res);
                if (r < 0)
                        return r;
        }
        /* the old version is still counted: there must be room for both while they switch */
        owner = old ? old->meta.uid : c->uid;
        r = conn_region_check_room(c, owner, 0, m.size, 1, 0, res);
        if (r < 0)
                return r;

        lease = m.flags & PROTO_PUBLISH_LEASE;
        meta.ctime_ns = conn_region_realtime_ns();
        meta.uid = old ? old->meta.uid : c->uid;
        meta.gid = old ? old->meta.gid : c->gid;
        meta.mode = m.mode ? m.mode : old ? old->meta.mode : cfg->default_mode;
        meta.flags = lease ? PROTO_REGION_LEASED : 0;
        meta.backend = PROTO_BACKEND_MEMFD;
        r = conn_region_adopt(c, f, "PUBLISH", m.name, m.size, &meta, &region, &seals, res);
        if (r < 0)
                return r;
        if (old) {
                rep.replaced_id = old->meta.id;
                r = conn_region_replace(c, old, region, lease, res);
                old = NULL; /* freed */
        } else {
                r = conn_region_publish(c, region, lease, "published", res);
        }
        if (r < 0)
                return r;
        added = region;
        region = NULL; /* stolen: the table owns it */
        rep.id = added->meta.id;
        rep.generation = region_generation(added);
        rep.seals = seals;
        conn_reply_encoded(c, &f->hdr, proto_publish_reply_encode(&rep, buf, sizeof(buf)), buf, NULL, 0);
        res->after = conn_region_announce;
        res->after_arg = added;
        return 0;
}
