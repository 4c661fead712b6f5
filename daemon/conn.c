/* conn: one client connection's state and request dispatch (policy; no libevent here). */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "backend.h"
#include "conn.h"
#include "conn-internal.h"
#include "log.h"
#include "proto.h"
#include "quota.h"
#include "service.h"
#include "transport.h"

#define CONN_READS_PER_CALL 16            /* recvmsg calls per readable event, for fairness */
#define CONN_CLOSE_GRACE_NS (5ULL * 1000000000ULL) /* to deliver a last error reply */
#define CONN_WAIT_FOREVER 0xFFFFFFFFu
#define NSEC_PER_MSEC 1000000ULL
#define NSEC_PER_SEC 1000000000ULL

/* An OPEN with WAIT whose name does not exist yet. */
struct conn_wait {
        struct regtab_waiter waiter;
        struct conn *conn;
        uint32_t request_id;
        uint32_t flags;        /* PROTO_OPEN_* */
        uint64_t deadline_ns;  /* 0 = forever */
        struct conn_wait *prev, *next;
        char name[];
};

uint64_t conn_now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

uint64_t conn_realtime_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static void conn_notify(struct conn *c)
{
        if (c->ctx->notify)
                c->ctx->notify(c, c->userdata);
}

/* Mark the connection for freeing. Only unhooks what must not fire again; conn_free() does the rest. */
static int conn_drop(struct conn *c, int error)
{
        if (c->dead)
                return error;
        c->dead = true;
        /* parked OPENs may already be detached by an ongoing regtab_wake(): their memory stays until conn_free() */
        for (struct conn_wait *w = c->waits; w; w = w->next)
                regtab_waiter_remove(c->ctx->regtab, &w->waiter);
        log_debug("connection pid=%d uid=%u dropped: %s", (int)c->pid, (unsigned)c->uid, strerror(-error));
        return error;
}

/* ---- leases and deletion ------------------------------------------------ */

void conn_lease_link(struct conn *c, struct region *r)
{
        r->lease = c;
        r->lease_prev = NULL;
        r->lease_next = c->leases;
        if (c->leases)
                c->leases->lease_prev = r;
        c->leases = r;
}

static void conn_lease_unlink(struct region *r)
{
        struct conn *owner = r->lease;

        if (!owner)
                return;
        if (r->lease_prev)
                r->lease_prev->lease_next = r->lease_next;
        else
                owner->leases = r->lease_next;
        if (r->lease_next)
                r->lease_next->lease_prev = r->lease_prev;
        r->lease = NULL;
        r->lease_prev = r->lease_next = NULL;
}

/* Take a region out of the table and the fd store and free the daemon's copy; holders' fds stay valid. */
static void conn_region_delete(struct conn_ctx *ctx, struct region *r)
{
        /* a refund never allocates */
        quota_charge(ctx->quota, r->meta.uid, -(int64_t)r->size, -1, 0, 0);
        conn_lease_unlink(r);
        regtab_remove(ctx->regtab, r);
        service_region_removed(r);
        regtab_region_free(r);
        ctx->generation++;
}

/* Return: true if replacing @old_size bytes by @new_size would pass --max-bytes (sums in 64 bits, no wrap). */
bool conn_over_bytes(const struct conn_ctx *ctx, uint64_t old_size, uint64_t new_size)
{
        uint64_t limit = ctx->config->max_bytes;
        uint64_t held = regtab_bytes(ctx->regtab) - old_size;

        if (!limit)
                return false;
        return held > limit || new_size > limit - held;
}

/* ---- lifetime ----------------------------------------------------------- */

int conn_new(struct conn_ctx *ctx, int fd, struct conn **connp)
{
        struct config_quota limits;
        struct ucred cred;
        socklen_t len = sizeof(cred);
        gid_t *groups = NULL;
        size_t ngroups = 0;
        struct conn *c;
        int r;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        r = conn_peer_groups(fd, &groups, &ngroups);
        if (r < 0) {
                close(fd);
                return r;
        }
        if (!config_allows(ctx->config, cred.uid, cred.gid, groups, ngroups)) {
                uint64_t now = conn_now_ns();

                if (!ctx->refused_logged_ns || now - ctx->refused_logged_ns >= NSEC_PER_SEC) {
                        log_notice("refused connection of pid=%d uid=%u gid=%u: not in the allow-list",
                                   (int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid);
                        ctx->refused_logged_ns = now;
                }
                free(groups);
                conn_refuse(fd, -EACCES, "not allowed to connect");
                return -EACCES;
        }
        if (!ctx->quota) {
                r = quota_new(ctx->regtab, &ctx->quota);
                if (r < 0) {
                        free(groups);
                        close(fd);
                        return r;
                }
        }
        config_quota_for(ctx->config, cred.uid, cred.gid, &limits);
        if (quota_check(ctx->quota, cred.uid, &limits, 0, 0, 1, 0) < 0) {
                log_debug("refused connection of pid=%d uid=%u: connection quota (%llu) reached", (int)cred.pid,
                          (unsigned)cred.uid, (unsigned long long)limits.connections);
                free(groups);
                conn_refuse(fd, -EDQUOT, "connection quota reached");
                r = -EDQUOT;
                goto fail_quota;
        }
        c = calloc(1, sizeof(*c));
        if (!c || quota_charge(ctx->quota, cred.uid, 0, 0, 1, 0) < 0) {
                free(c);
                free(groups);
                close(fd);
                r = -ENOMEM;
                goto fail_quota;
        }
        c->ctx = ctx;
        c->fd = fd; /* consumed */
        c->uid = cred.uid;
        c->gid = cred.gid;
        c->pid = cred.pid;
        c->groups = groups;
        c->ngroups = ngroups;
        r = transport_init(&c->transport, fd, ctx->config->max_out_bytes, 0);
        if (r < 0) {
                quota_charge(ctx->quota, cred.uid, 0, 0, -1, 0);
                close(fd);
                free(c->groups);
                free(c);
                goto fail_quota;
        }
        c->transport_ready = true;
        if (ctx->config->handshake_timeout_sec)
                c->handshake_deadline_ns = conn_now_ns() + ctx->config->handshake_timeout_sec * NSEC_PER_SEC;
        ctx->connections++;
        ctx->generation++;
        *connp = c;
        return 0;

fail_quota:
        if (ctx->connections == 0)
                ctx->quota = quota_free(ctx->quota);
        return r;
}

/* Bring the uid's count of queued fds in line with the transport's (after every queue and flush). */
static void conn_sync_fds(struct conn *c)
{
        uint64_t now = c->transport_ready ? c->transport.out_fds : 0;

        if (now == c->fds_charged)
                return;
        /* the uid has an entry (its connection is counted): this never allocates */
        quota_charge(c->ctx->quota, c->uid, 0, 0, 0, (int64_t)now - (int64_t)c->fds_charged);
        c->fds_charged = now;
}

struct conn *conn_free(struct conn *c)
{
        struct conn_wait *w, *next;
        int saved = errno;

        if (!c)
                return NULL;
        conn_drop(c, -ECONNRESET);
        for (w = c->waits; w; w = next) {
                next = w->next;
                free(w);
        }
        while (c->leases) {
                log_debug("deleting leased region '%s'", c->leases->name);
                conn_region_delete(c->ctx, c->leases);
        }
        quota_charge(c->ctx->quota, c->uid, 0, 0, -1, -(int64_t)c->fds_charged);
        if (c->transport_ready)
                transport_deinit(&c->transport);
        close(c->fd);
        c->ctx->connections--;
        c->ctx->generation++;
        if (c->ctx->connections == 0)
                c->ctx->quota = quota_free(c->ctx->quota); /* rebuilt from the table by the next conn_new() */
        free(c->groups);
        free(c);
        errno = saved;
        return NULL;
}

int conn_fd(const struct conn *c)
{
        return c->fd;
}

void conn_set_userdata(struct conn *c, void *userdata)
{
        c->userdata = userdata;
}

void *conn_get_userdata(const struct conn *c)
{
        return c->userdata;
}

void conn_peer(const struct conn *c, uid_t *uidp, gid_t *gidp, pid_t *pidp)
{
        if (uidp)
                *uidp = c->uid;
        if (gidp)
                *gidp = c->gid;
        if (pidp)
                *pidp = c->pid;
}

/* ---- replies ------------------------------------------------------------ */

/* Queue a reply; @fds are consumed. Return: 0, or a negative errno after dropping the connection (F8, D10). */
int conn_reply_raw(struct conn *c, uint16_t opcode, uint32_t id, uint8_t flags, const void *payload,
                          size_t len, int *fds, unsigned nfds)
{
        struct proto_header h = {
                .flags = PROTO_FLAG_REPLY | flags,
                .opcode = opcode,
                .id = id,
        };
        int r;

        if (c->dead) {
                for (unsigned i = 0; i < nfds; i++)
                        close(fds[i]);
                return -ECONNRESET;
        }
        r = transport_queue(&c->transport, &h, payload, len, fds, nfds);
        conn_sync_fds(c);
        if (r < 0) {
                if (r == -ENOBUFS)
                        log_warning("client pid=%d uid=%u does not read its replies: dropping it", (int)c->pid,
                                    (unsigned)c->uid);
                return conn_drop(c, r);
        }
        return 0;
}

int conn_reply_error(struct conn *c, uint16_t opcode, uint32_t id, int error, const char *message)
{
        struct proto_error e = { .error = error, .message = message ? message : "" };
        uint8_t buf[8 + PROTO_MESSAGE_MAX];
        int len;

        len = proto_error_encode(&e, buf, sizeof(buf));
        if (len < 0) {
                e.message = "";
                len = proto_error_encode(&e, buf, sizeof(buf));
                if (len < 0)
                        return conn_drop(c, len);
        }
        return conn_reply_raw(c, opcode, id, PROTO_FLAG_ERROR, buf, (size_t)len, NULL, 0);
}

/* An error after which the connection closes once the reply is sent. */
static int conn_reply_fatal(struct conn *c, uint16_t opcode, uint32_t id, int error, const char *message)
{
        int r = conn_reply_error(c, opcode, id, error, message);

        if (r < 0)
                return r;
        c->closing = true;
        c->close_deadline_ns = conn_now_ns() + CONN_CLOSE_GRACE_NS;
        return 0;
}

/* Return: 0 or the negative errno of the encoder (a daemon bug: the connection is dropped). */
int conn_reply_encoded(struct conn *c, const struct proto_header *req, int len, const uint8_t *buf,
                              int *fds, unsigned nfds)
{
        if (len < 0) {
                for (unsigned i = 0; i < nfds; i++)
                        close(fds[i]);
                log_error("cannot encode a reply to %s: %s", proto_opcode_name(req->opcode) ?: "?",
                          strerror(-len));
                return conn_drop(c, len);
        }
        return conn_reply_raw(c, req->opcode, req->id, 0, buf, (size_t)len, fds, nfds);
}

/* ---- regions ------------------------------------------------------------ */

/*
 * The seals of an object whose backend we know. Cheaper than
 * backend_get_seals(), which must first find out whether the fd is a memfd
 * (fstat, fstatfs and a readlink): this is on every OPEN's path.
 */
static uint32_t conn_seals_of(int fd, uint16_t backend)
{
        int k;

        if (backend != PROTO_BACKEND_MEMFD)
                return 0;
        k = fcntl(fd, F_GET_SEALS);
        return k > 0 ? (uint32_t)k & PROTO_SEALS_KNOWN : 0;
}

/* Return: @r's seals, read live when its fd is here, else the last seen (parked regions). */
static uint32_t conn_region_seals(struct region *r)
{
        if (r->fd >= 0)
                r->seals = conn_seals_of(r->fd, r->meta.backend);
        return r->seals;
}

/*
 * Holders of a writable fd can change a region's size with ftruncate where no
 * seal forbids it (RESIZABLE memfds grow and shrink, other memfds only grow,
 * shm and file regions do both). The daemon takes the size it finds whenever
 * it hands out, reports or resizes a region, and charges the owner for it:
 * quotas then refuse the owner's next CREATE or RESIZE (docs/security.md).
 */
static void conn_region_sync_size(struct conn_ctx *ctx, struct region *r, int fd)
{
        uint64_t size;

        if (backend_get_size(fd, &size) < 0 || size == r->size)
                return;
        (void)quota_charge(ctx->quota, r->meta.uid, (int64_t)size - (int64_t)r->size, 0, 0, 0);
        regtab_set_size(ctx->regtab, r, size);
        ctx->generation++;
}

/* Send the holder's fd to @r: a read-only reopen or a read-write dup, with its description. */
static int conn_reply_region_checked(struct conn *c, uint16_t opcode, uint32_t id, struct region *r, bool rdonly,
                                     bool check)
{
        struct proto_region_info info = {
                .id = r->meta.id,
                .size = r->size,
                .flags = r->meta.flags & (PROTO_REGION_LEASED | PROTO_REGION_RESIZABLE),
                .backend = r->meta.backend,
        };
        struct proto_header req = { .opcode = opcode, .id = id };
        uint8_t buf[64];
        int fd, rfd, k;

        if (check && conn_check_access(c, r, rdonly ? CONN_ACCESS_READ : CONN_ACCESS_WRITE) < 0)
                return conn_reply_error(c, opcode, id, -EACCES, "permission denied");
        if (check && conn_quota_check(c, c->uid, 0, 0, 1) < 0)
                return conn_reply_error(c, opcode, id, -EDQUOT, "fds in flight quota reached: read your replies");
        k = regtab_region_get_fd(c->ctx->regtab, r, &rfd);
        if (k < 0)
                return conn_reply_error(c, opcode, id, k, "the region's fd keeper is gone");
        if (rdonly) {
                k = backend_reopen_rdonly(rfd, &fd);
                if (k < 0) {
                        regtab_region_put_fd(r, rfd);
                        return conn_reply_error(c, opcode, id, k, "cannot make a read-only fd");
                }
                info.flags |= PROTO_REGION_RDONLY;
        } else if (rfd != r->fd) {
                fd = rfd; /* a parked region's fd fetched for this request: send it as it is */
        } else {
                fd = fcntl(rfd, F_DUPFD_CLOEXEC, 3);
                if (fd < 0) {
                        k = -errno;
                        regtab_region_put_fd(r, rfd);
                        return conn_reply_error(c, opcode, id, k, "cannot duplicate the region fd");
                }
        }
        r->seals = conn_seals_of(rfd, r->meta.backend);
        info.seals = r->seals;
        conn_region_sync_size(c->ctx, r, rfd);
        info.size = r->size;
        if (rfd != fd)
                regtab_region_put_fd(r, rfd);
        r->open_count++;
        return conn_reply_encoded(c, &req, proto_region_info_encode(&info, buf, sizeof(buf)), buf, &fd, 1);
}

/* Send @r to a peer that asked for it: access and the fds-in-flight quota are checked. Return: as conn_reply_raw(). */
static int conn_reply_region(struct conn *c, uint16_t opcode, uint32_t id, struct region *r, bool rdonly)
{
        return conn_reply_region_checked(c, opcode, id, r, rdonly, true);
}

static int conn_handle_hello(struct conn *c, const struct transport_frame *f)
{
        const struct config *cfg = c->ctx->config;
        struct proto_hello m;
        struct proto_hello_reply rep = {
                .version = PROTO_VERSION,
                .max_fds = PROTO_MAX_FDS,
                .max_payload = PROTO_MAX_PAYLOAD,
                .max_region_size = cfg->max_region_size,
                .name_max = PROTO_NAME_MAX,
                .backend = cfg->backend,
                .server_version = IOMEM_VERSION,
        };
        uint8_t buf[128];
        int r;

        r = proto_hello_decode(f->payload, f->hdr.length, &m);
        if (r < 0)
                return conn_reply_fatal(c, f->hdr.opcode, f->hdr.id, r, "malformed HELLO");
        if (c->hello_done)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EALREADY, "HELLO was already done");
        if (m.min_version > PROTO_VERSION || m.max_version < PROTO_VERSION || m.min_version > m.max_version)
                return conn_reply_fatal(c, f->hdr.opcode, f->hdr.id, -EPROTONOSUPPORT,
                                        "no common protocol version (server speaks 1)");
        c->hello_done = true;
        c->handshake_deadline_ns = 0;
        return conn_reply_encoded(c, &f->hdr, proto_hello_reply_encode(&rep, buf, sizeof(buf)), buf, NULL, 0);
}

static int conn_handle_ping(struct conn *c, const struct transport_frame *f)
{
        struct proto_ping m;
        uint8_t buf[16];
        int r;

        r = proto_ping_decode(f->payload, f->hdr.length, &m);
        if (r < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, r, "malformed PING");
        return conn_reply_encoded(c, &f->hdr, proto_ping_encode(&m, buf, sizeof(buf)), buf, NULL, 0);
}

static int conn_handle_status(struct conn *c, const struct transport_frame *f)
{
        struct conn_ctx *ctx = c->ctx;
        struct proto_status_reply rep = {
                .regions = regtab_count(ctx->regtab),
                .bytes = regtab_bytes(ctx->regtab),
                .connections = ctx->connections,
                .uptime_sec = (conn_now_ns() - ctx->start_ns) / NSEC_PER_SEC,
                .backend = ctx->config->backend,
                .server_version = IOMEM_VERSION,
        };
        uint8_t buf[128];

        if (f->hdr.length != 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EBADMSG, "STATUS takes no payload");
        return conn_reply_encoded(c, &f->hdr, proto_status_reply_encode(&rep, buf, sizeof(buf)), buf, NULL, 0);
}

/* CREATE with an empty name: a fresh object for the requester alone; nothing is kept. */
static int conn_create_anonymous(struct conn *c, const struct transport_frame *f, const struct proto_create *m)
{
        const struct config *cfg = c->ctx->config;
        struct proto_region_info info = { .size = m->size, .flags = PROTO_REGION_ANONYMOUS };
        enum proto_backend chosen;
        uint8_t buf[64];
        int fd, r;

        if (m->flags & (PROTO_CREATE_EXCLUSIVE | PROTO_CREATE_LEASE))
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EINVAL,
                                        "EXCLUSIVE and LEASE need a name");
        if (m->seals && m->backend != PROTO_BACKEND_AUTO && m->backend != PROTO_BACKEND_MEMFD)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EOPNOTSUPP, "only memfd can be sealed");
        if (conn_quota_check(c, c->uid, 0, 0, 1) < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EDQUOT, "fds in flight quota reached");
        r = backend_create(m->backend != PROTO_BACKEND_AUTO ? m->backend : cfg->backend, m->size,
                           cfg->max_region_size, cfg->tmpdir, &fd, &chosen);
        if (r < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, r, "cannot create the memory object");
        if (m->seals) {
                r = chosen == PROTO_BACKEND_MEMFD ? backend_seal(fd, m->seals) : -EOPNOTSUPP;
                if (r < 0) {
                        close(fd);
                        return conn_reply_error(c, f->hdr.opcode, f->hdr.id, r, "cannot apply the seals");
                }
        }
        info.seals = conn_seals_of(fd, (uint16_t)chosen);
        info.backend = chosen;
        /* the transport closes the daemon's copy once it is sent */
        return conn_reply_encoded(c, &f->hdr, proto_region_info_encode(&info, buf, sizeof(buf)), buf, &fd, 1);
}

/*
 * conn_region_publish() - make a new named region public: add it to the table,
 * save it in the fd store (a region that would not survive a restart is
 * refused, not silently kept: L2), lease it to @c if asked, charge its owner.
 * On failure @r is not in the table (the caller frees it) and an error reply
 * is queued. Return: 1 if published; else what conn_reply_error() returned.
 */
int conn_region_publish(struct conn *c, const struct transport_frame *f, struct region *r, bool lease,
                        const char *what)
{
        struct conn_ctx *ctx = c->ctx;
        int k;

        k = regtab_add(ctx->regtab, r);
        if (k < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, k, "cannot add the region");
        k = service_region_added(r);
        if (k < 0) {
                log_error("cannot save region '%s' in the service manager's fd store: %s", r->name, strerror(-k));
                regtab_remove(ctx->regtab, r);
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, k, "cannot save the region (fd store)");
        }
        if (lease)
                conn_lease_link(c, r);
        quota_charge(ctx->quota, c->uid, (int64_t)r->size, 1, 0, 0); /* the uid has an entry: never allocates */
        ctx->generation++;
        log_debug("%s region '%s' id=%llu size=%llu for uid %u", what, r->name, (unsigned long long)r->meta.id,
                  (unsigned long long)r->size, (unsigned)c->uid);
        return 1;
}

/*
 * conn_region_announce() - after the creator's reply: wake the OPENs waiting
 * for the name, then park the fd in a keeper if the daemon is over its fd
 * budget. Return: nothing.
 */
void conn_region_announce(struct conn *c, struct region *r)
{
        int k;

        regtab_wake(c->ctx->regtab, r);
        k = regtab_settle(c->ctx->regtab, r);
        if (k < 0)
                log_warning("cannot park region '%s' in an fd keeper: %s", r->name, strerror(-k));
}

static int conn_handle_create(struct conn *c, const struct transport_frame *f)
{
        struct conn_ctx *ctx = c->ctx;
        const struct config *cfg = ctx->config;
        __attribute__((cleanup(regtab_region_freep))) struct region *region = NULL;
        struct region_meta meta = {};
        struct proto_create m;
        enum proto_backend backend, chosen;
        struct region *existing;
        uint32_t seals;
        int fd, r;

        r = proto_create_decode(f->payload, f->hdr.length, &m);
        if (r < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, r, "malformed CREATE");
        if (m.size > cfg->max_region_size)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EFBIG, "size above the daemon's limit");
        if (m.mode > 0777)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EINVAL, "mode must be within 0777");
        if (m.name[0] == '\0')
                return conn_create_anonymous(c, f, &m);

        existing = regtab_lookup(ctx->regtab, m.name);
        if (existing) {
                if (m.flags & PROTO_CREATE_EXCLUSIVE)
                        return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EEXIST, "name exists");
                if (existing->size != m.size)
                        return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EEXIST,
                                                "name exists with another size");
                return conn_reply_region(c, f->hdr.opcode, f->hdr.id, existing, false);
        }

        if (regtab_count(ctx->regtab) >= cfg->max_regions)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EDQUOT, "too many regions");
        if (conn_over_bytes(ctx, 0, m.size))
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EDQUOT, "daemon byte quota reached");
        /* the fd of the reply too: a CREATE is never half-applied (made, then refused) */
        if (conn_quota_check(c, c->uid, m.size, 1, 1) < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EDQUOT,
                                        "your region, byte or fds-in-flight quota is reached");
        backend = m.backend != PROTO_BACKEND_AUTO ? (enum proto_backend)m.backend : cfg->backend;
        if (m.seals && backend != PROTO_BACKEND_AUTO && backend != PROTO_BACKEND_MEMFD)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EOPNOTSUPP, "only memfd can be sealed");

        r = backend_create(backend, m.size, cfg->max_region_size, cfg->tmpdir, &fd, &chosen);
        if (r < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, r, "cannot create the memory object");
        /*
         * F_SEAL_SHRINK on named memfds: another client's mapping can never
         * fault (SIGBUS) because someone shrank the object under it (S1).
         */
        seals = m.seals | (m.flags & PROTO_CREATE_RESIZABLE ? 0 : PROTO_SEAL_SHRINK);
        if (chosen == PROTO_BACKEND_MEMFD)
                r = backend_seal(fd, seals);
        else
                r = m.seals ? -EOPNOTSUPP : 0;
        if (r < 0) {
                close(fd);
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, r, "cannot apply the seals");
        }

        meta.ctime_ns = conn_realtime_ns();
        meta.uid = c->uid;
        meta.gid = c->gid;
        meta.mode = m.mode ? m.mode : cfg->default_mode;
        meta.flags = (m.flags & PROTO_CREATE_LEASE ? PROTO_REGION_LEASED : 0) |
                     (m.flags & PROTO_CREATE_RESIZABLE ? PROTO_REGION_RESIZABLE : 0);
        meta.backend = chosen;
        r = regtab_region_new(m.name, fd, m.size, &meta, &region);
        fd = -1; /* consumed */
        if (r < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, r, "out of memory");
        r = conn_region_publish(c, f, region, m.flags & PROTO_CREATE_LEASE, "created");
        if (r <= 0)
                return r;
        /* the table owns it now */
        struct region *added = region;
        region = NULL;
        /* the creator gets its read-write fd whatever the mode says (as open(O_CREAT) with 0444 does) */
        r = conn_reply_region_checked(c, f->hdr.opcode, f->hdr.id, added, false, false);
        conn_region_announce(c, added);
        return r;
}

/* ---- OPEN and its waiters ---------------------------------------------- */

static void conn_wait_unlink(struct conn *c, struct conn_wait *w)
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

static void conn_wait_wake(struct regtab_waiter *waiter, struct region *r)
{
        struct conn_wait *w = (struct conn_wait *)((char *)waiter - offsetof(struct conn_wait, waiter));
        struct conn *c = w->conn;

        conn_wait_unlink(c, w);
        if (!c->dead) {
                conn_reply_region(c, PROTO_OP_OPEN, w->request_id, r, w->flags & PROTO_OPEN_RDONLY);
                conn_notify(c);
        }
        free(w);
}

static int conn_handle_open(struct conn *c, const struct transport_frame *f)
{
        struct proto_open m;
        struct conn_wait *w;
        struct region *r;
        size_t len;
        int k;

        k = proto_open_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, k, "malformed OPEN");
        if (m.name[0] == '\0')
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EINVAL, "OPEN needs a name");
        r = regtab_lookup(c->ctx->regtab, m.name);
        if (r)
                return conn_reply_region(c, f->hdr.opcode, f->hdr.id, r, m.flags & PROTO_OPEN_RDONLY);
        if (!(m.flags & PROTO_OPEN_WAIT))
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -ENOENT, "no such region");
        if (m.timeout_ms == 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -ETIMEDOUT, "no such region");
        if (c->nwaits >= CONN_MAX_WAITS)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EDQUOT, "too many waiting OPENs");

        len = strlen(m.name);
        w = calloc(1, sizeof(*w) + len + 1);
        if (!w)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -ENOMEM, "out of memory");
        memcpy(w->name, m.name, len + 1);
        w->waiter.name = w->name;
        w->waiter.name_len = len;
        w->waiter.wake = conn_wait_wake;
        w->conn = c;
        w->request_id = f->hdr.id;
        w->flags = m.flags;
        if (m.timeout_ms != CONN_WAIT_FOREVER)
                w->deadline_ns = conn_now_ns() + (uint64_t)m.timeout_ms * NSEC_PER_MSEC;
        w->next = c->waits;
        if (w->next)
                w->next->prev = w;
        c->waits = w;
        c->nwaits++;
        regtab_waiter_add(c->ctx->regtab, &w->waiter);
        return 0;
}

/* ---- RESIZE, SEAL, STAT, LIST, DELETE ----------------------------------- */

static int conn_handle_resize(struct conn *c, const struct transport_frame *f)
{
        struct conn_ctx *ctx = c->ctx;
        const struct config *cfg = ctx->config;
        struct proto_resize_reply rep;
        struct proto_resize m;
        struct region *r;
        uint8_t buf[16];
        int fd, k;

        k = proto_resize_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, k, "malformed RESIZE");
        r = regtab_lookup(ctx->regtab, m.name);
        if (!r)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -ENOENT, "no such region");
        if (conn_check_access(c, r, CONN_ACCESS_RESIZE) < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EACCES, "permission denied");
        if (m.size > cfg->max_region_size)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EFBIG, "size above the daemon's limit");
        k = regtab_region_get_fd(ctx->regtab, r, &fd);
        if (k < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, k, "the region's fd keeper is gone");
        /* decide on the size the object has now, not the one last recorded */
        conn_region_sync_size(ctx, r, fd);
        regtab_region_put_fd(r, fd);
        /* S1 for backends without seals: only RESIZABLE regions may shrink under their holders */
        if (m.size < r->size && !(r->meta.flags & PROTO_REGION_RESIZABLE))
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EPERM, "region is not resizable");
        if (m.size > r->size && conn_over_bytes(ctx, r->size, m.size))
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EDQUOT, "daemon byte quota reached");
        /* the owner pays, whoever asks (only the owner or root may) */
        if (m.size > r->size && conn_quota_check(c, r->meta.uid, m.size - r->size, 0, 0) < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EDQUOT, "the owner's byte quota is reached");
        k = regtab_region_get_fd(ctx->regtab, r, &fd);
        if (k < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, k, "the region's fd keeper is gone");
        k = backend_resize(fd, m.size, cfg->max_region_size);
        regtab_region_put_fd(r, fd);
        if (k < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, k, "cannot resize");
        /* the owner has an entry (it owns this region): never allocates */
        quota_charge(ctx->quota, r->meta.uid, (int64_t)m.size - (int64_t)r->size, 0, 0, 0);
        regtab_set_size(ctx->regtab, r, m.size);
        service_region_changed(r);
        ctx->generation++;
        rep.size = r->size;
        return conn_reply_encoded(c, &f->hdr, proto_resize_reply_encode(&rep, buf, sizeof(buf)), buf, NULL, 0);
}

static int conn_handle_seal(struct conn *c, const struct transport_frame *f)
{
        struct proto_seal_reply rep;
        struct proto_seal m;
        struct region *r;
        uint8_t buf[16];
        int fd, k;

        k = proto_seal_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, k, "malformed SEAL");
        r = regtab_lookup(c->ctx->regtab, m.name);
        if (!r)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -ENOENT, "no such region");
        if (conn_check_access(c, r, CONN_ACCESS_SEAL) < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EACCES, "permission denied");
        if (r->meta.backend != PROTO_BACKEND_MEMFD)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EOPNOTSUPP, "only memfd can be sealed");
        k = regtab_region_get_fd(c->ctx->regtab, r, &fd);
        if (k < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, k, "the region's fd keeper is gone");
        k = backend_seal(fd, m.seals);
        if (k < 0) {
                regtab_region_put_fd(r, fd);
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, k,
                                        k == -EBUSY ? "a writable mapping exists" : "cannot seal");
        }
        k = backend_get_seals(fd);
        regtab_region_put_fd(r, fd);
        if (k >= 0)
                r->seals = (uint32_t)k;
        if (k < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, k, "cannot read the seals");
        service_region_changed(r);
        c->ctx->generation++;
        rep.seals = (uint32_t)k;
        return conn_reply_encoded(c, &f->hdr, proto_seal_reply_encode(&rep, buf, sizeof(buf)), buf, NULL, 0);
}

static int conn_handle_stat(struct conn *c, const struct transport_frame *f)
{
        struct proto_stat_reply rep = {};
        struct proto_name m;
        struct region *r;
        uint8_t buf[128];
        int fd, k;

        k = proto_name_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, k, "malformed STAT");
        r = regtab_lookup(c->ctx->regtab, m.name);
        if (!r)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -ENOENT, "no such region");
        if (conn_check_access(c, r, CONN_ACCESS_READ) < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EACCES, "permission denied");
        if (regtab_region_get_fd(c->ctx->regtab, r, &fd) == 0) {
                conn_region_sync_size(c->ctx, r, fd);
                regtab_region_put_fd(r, fd);
        }
        rep.id = r->meta.id;
        rep.size = r->size;
        rep.ctime_ns = r->meta.ctime_ns;
        rep.open_count = r->open_count;
        rep.seals = conn_region_seals(r);
        rep.flags = r->meta.flags & (PROTO_REGION_LEASED | PROTO_REGION_RESIZABLE);
        rep.uid = r->meta.uid;
        rep.gid = r->meta.gid;
        rep.mode = r->meta.mode;
        rep.backend = r->meta.backend;
        return conn_reply_encoded(c, &f->hdr, proto_stat_reply_encode(&rep, buf, sizeof(buf)), buf, NULL, 0);
}

static bool conn_list_match(const struct region *r, const char *prefix, size_t prefix_len)
{
        return r->name_len >= prefix_len && memcmp(r->name, prefix, prefix_len) == 0;
}

/* regions one LIST request examines at most (whatever its prefix matches) */
#define CONN_LIST_SCAN_MAX 16384u

static int conn_handle_list(struct conn *c, const struct transport_frame *f)
{
        struct regtab *t = c->ctx->regtab;
        struct proto_list_writer w;
        struct proto_list m;
        struct region *r;
        uint64_t last = 0, next_cursor = 0;
        size_t prefix_len, scanned = 0;
        uint8_t *buf;
        int k;

        k = proto_list_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, k, "malformed LIST");
        buf = malloc(PROTO_MAX_PAYLOAD);
        if (!buf)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -ENOMEM, "out of memory");
        prefix_len = strlen(m.prefix);
        proto_list_writer_init(&w, buf, PROTO_MAX_PAYLOAD);
        for (r = regtab_next_after(t, m.cursor); r; r = r->next) {
                struct proto_list_entry e;

                /*
                 * One LIST looks at a bounded number of regions, so that a prefix
                 * matching nothing in a huge table cannot stall every other client:
                 * the reply then says where to go on, with fewer entries (maybe none).
                 */
                if (++scanned > CONN_LIST_SCAN_MAX) {
                        last = r->prev ? r->prev->meta.id : 0;
                        break;
                }
                /* not seeing a region in LIST is not worth a log line */
                if (!conn_list_match(r, m.prefix, prefix_len) || conn_access(c, r, CONN_ACCESS_READ, false) < 0)
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
        k = conn_reply_encoded(c, &f->hdr, proto_list_writer_finish(&w, next_cursor), buf, NULL, 0);
        free(buf);
        return k;
}

static int conn_handle_delete(struct conn *c, const struct transport_frame *f)
{
        struct proto_name m;
        struct region *r;
        int k;

        k = proto_name_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, k, "malformed DELETE");
        r = regtab_lookup(c->ctx->regtab, m.name);
        if (!r)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -ENOENT, "no such region");
        if (conn_check_access(c, r, CONN_ACCESS_DELETE) < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EACCES, "permission denied");
        log_debug("deleting region '%s' for uid %u", r->name, (unsigned)c->uid);
        conn_region_delete(c->ctx, r);
        return conn_reply_raw(c, f->hdr.opcode, f->hdr.id, 0, NULL, 0, NULL, 0);
}


/* ---- dispatch ----------------------------------------------------------- */

static bool conn_opcode_known(uint16_t opcode)
{
        switch (opcode) {
        case PROTO_OP_HELLO: case PROTO_OP_PING: case PROTO_OP_STATUS: case PROTO_OP_CREATE: case PROTO_OP_OPEN:
        case PROTO_OP_RESIZE: case PROTO_OP_SEAL: case PROTO_OP_STAT: case PROTO_OP_LIST: case PROTO_OP_DELETE:
        case PROTO_OP_CHMOD: case PROTO_OP_CHOWN: case PROTO_OP_QUOTA: case PROTO_OP_REGISTER:
                return true;
        default:
                return false;
        }
}

/* Act on one frame. Return: 0, or a negative errno when the connection is dead. */
static int conn_dispatch(struct conn *c, struct transport_frame *f)
{
        const struct proto_header *h = &f->hdr;

        if (h->version != PROTO_VERSION)
                return conn_reply_fatal(c, h->opcode, h->id, -EPROTONOSUPPORT, "unknown frame version");
        if (h->flags & PROTO_FLAG_REPLY)
                return conn_reply_error(c, h->opcode, h->id, -EBADMSG, "the server takes requests, not replies");
        if (!c->hello_done && h->opcode != PROTO_OP_HELLO)
                return conn_reply_fatal(c, h->opcode, h->id, -EPROTO, "the first request must be HELLO");
        if (!conn_opcode_known(h->opcode))
                return conn_reply_error(c, h->opcode, h->id, -EOPNOTSUPP, "unknown opcode");
        /* only REGISTER carries an fd; fds of other requests are closed with the frame */
        if (f->nfds && h->opcode != PROTO_OP_REGISTER)
                return conn_reply_error(c, h->opcode, h->id, -EINVAL, "this request takes no fds");

        switch (h->opcode) {
        case PROTO_OP_HELLO:
                return conn_handle_hello(c, f);
        case PROTO_OP_PING:
                return conn_handle_ping(c, f);
        case PROTO_OP_STATUS:
                return conn_handle_status(c, f);
        case PROTO_OP_CREATE:
                return conn_handle_create(c, f);
        case PROTO_OP_OPEN:
                return conn_handle_open(c, f);
        case PROTO_OP_RESIZE:
                return conn_handle_resize(c, f);
        case PROTO_OP_SEAL:
                return conn_handle_seal(c, f);
        case PROTO_OP_STAT:
                return conn_handle_stat(c, f);
        case PROTO_OP_LIST:
                return conn_handle_list(c, f);
        case PROTO_OP_DELETE:
                return conn_handle_delete(c, f);
        case PROTO_OP_CHMOD:
                return conn_handle_chmod(c, f);
        case PROTO_OP_CHOWN:
                return conn_handle_chown(c, f);
        case PROTO_OP_QUOTA:
                return conn_handle_quota(c, f);
        case PROTO_OP_REGISTER:
                return conn_handle_register(c, f);
        }
        return conn_reply_error(c, h->opcode, h->id, -EOPNOTSUPP, "unknown opcode");
}

/* Return: true if the output queue is past half its bounds: time to stop taking requests. */
static bool conn_output_high(const struct conn *c)
{
        const struct transport *t = &c->transport;

        return t->out_bytes > t->max_out_bytes / 2 || t->out_fds > t->max_out_fds / 2;
}

/*
 * Dispatch every complete buffered frame, unless replies pile up: then send
 * what the socket takes and, if still high, stop until conn_flush() drains
 * them. A client that pipelines requests is slowed down, not dropped; its
 * queue stays bounded (F8, D10), and only replies it did not ask for just
 * now (parked OPENs) can overflow it.
 * Return: 0, or a negative errno when the connection is dead.
 */
static int conn_process_frames(struct conn *c)
{
        struct transport_frame f;
        int r;

        while (!c->dead && !c->closing) {
                if (conn_output_high(c)) {
                        r = transport_flush(&c->transport);
                        conn_sync_fds(c);
                        if (r < 0 && r != -EAGAIN && r != -EINTR)
                                return conn_drop(c, r);
                        if (conn_output_high(c)) {
                                c->throttled = true;
                                return 0;
                        }
                }
                r = transport_next_frame(&c->transport, &f);
                if (r == 0)
                        return 0;
                if (r < 0) /* framing or fd violation: the stream is out of sync (F1-F4, D1-D5) */
                        return conn_drop(c, r);
                r = conn_dispatch(c, &f);
                transport_frame_deinit(&f);
                if (r < 0)
                        return r;
        }
        return c->dead ? -ECONNRESET : 0;
}

int conn_handle_input(struct conn *c)
{
        int r;

        if (c->dead)
                return -ECONNRESET;
        for (int i = 0; i < CONN_READS_PER_CALL && !c->closing && !c->throttled; i++) {
                r = transport_read(&c->transport);
                if (r == -EAGAIN || r == -EINTR)
                        break;
                if (r < 0)
                        return conn_drop(c, r);
                if (r > 0) {
                        r = conn_process_frames(c);
                        if (r < 0)
                                return r;
                        continue;
                }
                /* end of stream: whatever is still buffered is a cut frame (F4) */
                r = conn_process_frames(c);
                if (r < 0)
                        return r;
                if (c->closing)
                        break;
                if (!transport_has_output(&c->transport))
                        return conn_drop(c, -ECONNRESET);
                /* a peer that only shut down its sending side still gets its replies */
                c->closing = true;
                c->close_deadline_ns = conn_now_ns() + CONN_CLOSE_GRACE_NS;
                break;
        }
        return 0;
}

int conn_flush(struct conn *c)
{
        int r;

        if (c->dead)
                return -ECONNRESET;
        r = transport_flush(&c->transport);
        conn_sync_fds(c);
        if (r < 0 && r != -EAGAIN && r != -EINTR)
                return conn_drop(c, r); /* L4: EPIPE/ECONNRESET are ordinary departures */
        if (c->throttled && !conn_output_high(c)) {
                /* resume the requests already buffered */
                c->throttled = false;
                r = conn_process_frames(c);
                if (r < 0)
                        return r;
                r = transport_flush(&c->transport);
                conn_sync_fds(c);
                if (r < 0 && r != -EAGAIN && r != -EINTR)
                        return conn_drop(c, r);
        }
        return transport_has_output(&c->transport) ? -EAGAIN : 0;
}

bool conn_has_output(const struct conn *c)
{
        return !c->dead && transport_has_output(&c->transport);
}

bool conn_wants_input(const struct conn *c)
{
        return !c->dead && !c->closing && !c->throttled;
}

bool conn_is_dead(const struct conn *c)
{
        return c->dead;
}

bool conn_is_done(const struct conn *c)
{
        return c->dead || (c->closing && !transport_has_output(&c->transport));
}

uint64_t conn_deadline(const struct conn *c)
{
        uint64_t d = 0;

        if (c->dead)
                return 0;
        if (c->closing)
                return c->close_deadline_ns;
        if (!c->hello_done)
                d = c->handshake_deadline_ns;
        for (const struct conn_wait *w = c->waits; w; w = w->next)
                if (w->deadline_ns && (!d || w->deadline_ns < d))
                        d = w->deadline_ns;
        return d;
}

int conn_timeout(struct conn *c, uint64_t now_ns)
{
        struct conn_wait *w, *next;

        if (c->dead)
                return -ECONNRESET;
        if (c->closing) {
                if (now_ns >= c->close_deadline_ns)
                        return conn_drop(c, -ETIMEDOUT);
                return 0;
        }
        if (!c->hello_done && c->handshake_deadline_ns && now_ns >= c->handshake_deadline_ns) {
                log_info("client pid=%d uid=%u sent no HELLO in time: dropping it", (int)c->pid,
                         (unsigned)c->uid);
                return conn_drop(c, -ETIMEDOUT); /* F9 */
        }
        for (w = c->waits; w && !c->dead; w = next) {
                next = w->next;
                if (!w->deadline_ns || now_ns < w->deadline_ns)
                        continue;
                conn_wait_unlink(c, w);
                conn_reply_error(c, PROTO_OP_OPEN, w->request_id, -ETIMEDOUT, "no such region yet");
                free(w);
        }
        return c->dead ? -ECONNRESET : 0;
}
