/* conn-access: the access-control half of conn (who may do what, quotas, CHMOD/CHOWN/QUOTA/REGISTER). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access.h"
#include "backend.h"
#include "conn-internal.h"
#include "conn.h"
#include "log.h"
#include "proto.h"
#include "quota.h"
#include "service.h"

/* ---- at accept ---------------------------------------------------------- */

/*
 * Refuse a peer at accept: one error reply it can read as the answer to its
 * HELLO, sent without waiting (a fresh socket's buffer has room), then close.
 */
void conn_refuse(int fd, int error, const char *message)
{
        struct proto_error e = { .error = error, .message = message };
        struct proto_header h = {
                .magic = PROTO_MAGIC,
                .version = PROTO_VERSION,
                .flags = PROTO_FLAG_REPLY | PROTO_FLAG_ERROR,
                .opcode = PROTO_OP_HELLO,
                .id = 0,
        };
        uint8_t buf[PROTO_HEADER_SIZE + 128];
        int len;

        len = proto_error_encode(&e, buf + PROTO_HEADER_SIZE, sizeof(buf) - PROTO_HEADER_SIZE);
        if (len >= 0) {
                h.length = (uint32_t)len;
                proto_header_encode(&h, buf);
                (void)!send(fd, buf, PROTO_HEADER_SIZE + (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        close(fd);
}

/* Return: 0 with the peer's supplementary groups (malloc'd, may be NULL with 0); negative errno. */
int conn_peer_groups(int fd, gid_t **groupsp, size_t *np)
{
        socklen_t len = 16 * sizeof(gid_t);
        gid_t *groups = NULL;

        for (int attempt = 0; attempt < 4; attempt++) {
                gid_t *grown = realloc(groups, len ? len : sizeof(gid_t));

                if (!grown) {
                        free(groups);
                        return -ENOMEM;
                }
                groups = grown;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
                        *groupsp = groups;
                        *np = len / sizeof(gid_t);
                        return 0;
                }
                if (errno != ERANGE) {
                        free(groups);
                        /* kernels before 4.13: primary group only */
                        if (errno == ENOPROTOOPT) {
                                *groupsp = NULL;
                                *np = 0;
                                return 0;
                        }
                        return -errno;
                }
        }
        free(groups);
        return -ERANGE;
}

/* ---- access checks ------------------------------------------------------ */

static const char *conn_access_name(enum conn_access what)
{
        switch (what) {
        case CONN_ACCESS_READ:
                return "read";
        case CONN_ACCESS_WRITE:
                return "write";
        case CONN_ACCESS_RESIZE:
                return "resize";
        case CONN_ACCESS_SEAL:
                return "seal";
        case CONN_ACCESS_DELETE:
                return "delete";
        case CONN_ACCESS_CHMOD:
                return "chmod/chown";
        }
        return "?";
}

/* Return: the identity of @c for access.h. */
struct access_cred conn_cred(const struct conn *c)
{
        return (struct access_cred){ .uid = c->uid, .gid = c->gid, .groups = c->groups, .ngroups = c->ngroups };
}

/* Log a refusal, at most CONN_MAX_LOGGED_REFUSALS times per connection. */
void conn_log_refusal(const struct conn *c, const char *what, const struct region *r)
{
        struct conn *mc = (struct conn *)c; /* the counter is bookkeeping, not state */

        if (mc->refusals > CONN_MAX_LOGGED_REFUSALS)
                return;
        if (++mc->refusals > CONN_MAX_LOGGED_REFUSALS) {
                log_notice("pid=%d uid=%u: further refusals on this connection are not logged", (int)c->pid,
                           (unsigned)c->uid);
                return;
        }
        log_notice("refused %s of region '%s' (owner %u:%u mode %04o) to pid=%d uid=%u gid=%u", what,
                   r ? r->name : "?", r ? (unsigned)r->meta.uid : 0, r ? (unsigned)r->meta.gid : 0,
                   r ? (unsigned)r->meta.mode : 0, (int)c->pid, (unsigned)c->uid, (unsigned)c->gid);
}

/* Return: as conn_check_access(); refusals are logged only if @log. */
int conn_access(const struct conn *c, const struct region *r, enum conn_access what, bool log)
{
        struct access_cred cred = conn_cred(c);
        enum access_need need;
        int k;

        switch (what) {
        case CONN_ACCESS_READ:
                need = ACCESS_NEED_READ;
                break;
        case CONN_ACCESS_WRITE:
                need = ACCESS_NEED_WRITE;
                break;
        default:
                need = ACCESS_NEED_OWNER;
                break;
        }
        if (!r)
                return c->uid == 0 ? 0 : -EACCES;
        k = access_check(&cred, &r->meta, need);
        if (k < 0 && log)
                conn_log_refusal(c, conn_access_name(what), r);
        return k;
}

int conn_check_access(const struct conn *c, const struct region *r, enum conn_access what)
{
        return conn_access(c, r, what, true);
}

/*
 * conn_quota_check() - may @uid (whose limits come from @c's primary gid if
 * @uid is @c's peer, else from its [uid] section and defaults) take these
 * amounts more? Return: 0 or -EDQUOT.
 */
int conn_quota_check(const struct conn *c, uint32_t uid, uint64_t bytes, uint64_t regions, uint64_t fds)
{
        struct config_quota limits;

        config_quota_for(c->ctx->config, uid, uid == c->uid ? c->gid : UINT32_MAX, &limits);
        return quota_check(c->ctx->quota, uid, &limits, bytes, regions, 0, fds);
}


/* ---- CHMOD, CHOWN, QUOTA ------------------------------------------------ */

int conn_handle_chmod(struct conn *c, const struct transport_frame *f)
{
        struct proto_chmod m;
        struct region *r;
        int k;

        k = proto_chmod_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, k, "malformed CHMOD");
        r = regtab_lookup(c->ctx->regtab, m.name);
        if (!r)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -ENOENT, "no such region");
        if (conn_check_access(c, r, CONN_ACCESS_CHMOD) < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EACCES, "only the owner may change the mode");
        log_info("region '%s': mode %04o -> %04o by uid %u", r->name, (unsigned)r->meta.mode, (unsigned)m.mode,
                 (unsigned)c->uid);
        r->meta.mode = m.mode;
        service_region_changed(r);
        c->ctx->generation++;
        return conn_reply_raw(c, f->hdr.opcode, f->hdr.id, 0, NULL, 0, NULL, 0);
}

int conn_handle_chown(struct conn *c, const struct transport_frame *f)
{
        struct access_cred cred = conn_cred(c);
        struct proto_chown m;
        struct region *r;
        int k;

        k = proto_chown_decode(f->payload, f->hdr.length, &m);
        if (k < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, k, "malformed CHOWN");
        r = regtab_lookup(c->ctx->regtab, m.name);
        if (!r)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -ENOENT, "no such region");
        if (access_check_chown(&cred, &r->meta, m.uid, m.gid) < 0) {
                conn_log_refusal(c, "chown", r);
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EACCES,
                                        "only root may change the owner; the owner may change the group to "
                                        "one of its groups");
        }
        if (m.uid != PROTO_ID_UNCHANGED && m.uid != r->meta.uid) {
                /* the new owner pays from now on; root is trusted with other users' quotas */
                k = quota_charge(c->ctx->quota, m.uid, (int64_t)r->size, 1, 0, 0);
                if (k < 0)
                        return conn_reply_error(c, f->hdr.opcode, f->hdr.id, k, "out of memory");
                quota_charge(c->ctx->quota, r->meta.uid, -(int64_t)r->size, -1, 0, 0);
                r->meta.uid = m.uid;
        }
        if (m.gid != PROTO_ID_UNCHANGED)
                r->meta.gid = m.gid;
        log_info("region '%s': owner now %u:%u (by uid %u)", r->name, (unsigned)r->meta.uid,
                 (unsigned)r->meta.gid, (unsigned)c->uid);
        service_region_changed(r);
        c->ctx->generation++;
        return conn_reply_raw(c, f->hdr.opcode, f->hdr.id, 0, NULL, 0, NULL, 0);
}

int conn_handle_quota(struct conn *c, const struct transport_frame *f)
{
        const struct quota_usage *u = quota_get(c->ctx->quota, c->uid);
        struct proto_quota_reply rep = {
                .uid = c->uid,
                .gid = c->gid,
                .max_region_size = c->ctx->config->max_region_size,
        };
        struct config_quota limits;
        uint8_t buf[128];

        if (f->hdr.length != 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EBADMSG, "QUOTA takes no payload");
        config_quota_for(c->ctx->config, c->uid, c->gid, &limits);
        if (u) {
                rep.bytes = u->bytes;
                rep.regions = u->regions;
                rep.connections = u->connections;
                rep.fds = u->fds;
        }
        rep.max_bytes = limits.bytes;
        rep.max_regions = limits.regions;
        rep.max_connections = limits.connections;
        rep.max_fds = limits.fds;
        return conn_reply_encoded(c, &f->hdr, proto_quota_reply_encode(&rep, buf, sizeof(buf)), buf, NULL, 0);
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
static int conn_register_check(int fd, uint64_t size, uint32_t *sealsp, const char **whyp)
{
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
        if (backend_detect(fd) != PROTO_BACKEND_MEMFD) {
                *whyp = "not a memfd (a regular file)";
                return -EINVAL;
        }
        if (st.st_size < 0 || (uint64_t)st.st_size != size) {
                *whyp = "the memfd's size is not the declared size";
                return -EINVAL;
        }
        /* P7: the bits we need must be set; other bits (F_SEAL_EXEC, future ones) do not matter */
        if (((uint32_t)seals & PROTO_REGISTER_SEALS_REQUIRED) != PROTO_REGISTER_SEALS_REQUIRED) {
                *whyp = "the memfd must be sealed with F_SEAL_SHRINK and F_SEAL_GROW";
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
        k = backend_reopen_rdonly(fd, &rfd);
        if (k < 0) {
                *whyp = "the daemon cannot reopen the memfd read-only (its uid may not read the inode)";
                return -EACCES;
        }
        close(rfd);
        *sealsp = (uint32_t)seals;
        return 0;
}

int conn_handle_register(struct conn *c, struct transport_frame *f)
{
        struct conn_ctx *ctx = c->ctx;
        const struct config *cfg = ctx->config;
        __attribute__((cleanup(regtab_region_freep))) struct region *region = NULL;
        struct region_meta meta = {};
        struct proto_register_reply rep = {};
        struct proto_register m;
        const char *why = "";
        uint32_t seals = 0;
        uint8_t buf[32];
        int fd, r;

        r = proto_register_decode(f->payload, f->hdr.length, &m);
        if (r < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, r, "malformed REGISTER");
        if (f->nfds != 1)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EINVAL, "REGISTER carries exactly one fd");
        if (m.size > cfg->max_region_size)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EFBIG, "size above the daemon's limit");
        if (regtab_lookup(ctx->regtab, m.name))
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EEXIST, "name exists");
        if (regtab_count(ctx->regtab) >= cfg->max_regions)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EDQUOT, "too many regions");
        if (conn_over_bytes(ctx, 0, m.size))
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EDQUOT, "daemon byte quota reached");
        if (conn_quota_check(c, c->uid, m.size, 1, 0) < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, -EDQUOT, "your region or byte quota is reached");
        r = conn_register_check(f->fds[0], m.size, &seals, &why);
        if (r < 0) {
                log_info("REGISTER of '%s' by pid=%d uid=%u refused: %s", m.name, (int)c->pid, (unsigned)c->uid,
                         why);
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, r, why);
        }

        meta.ctime_ns = conn_realtime_ns();
        meta.uid = c->uid;
        meta.gid = c->gid;
        meta.mode = m.mode ? m.mode : cfg->default_mode;
        meta.flags = m.flags & PROTO_REGISTER_LEASE ? PROTO_REGION_LEASED : 0;
        meta.backend = PROTO_BACKEND_MEMFD;
        fd = f->fds[0];
        f->fds[0] = -1; /* ours now */
        r = regtab_region_new(m.name, fd, m.size, &meta, &region);
        fd = -1; /* consumed */
        if (r < 0)
                return conn_reply_error(c, f->hdr.opcode, f->hdr.id, r, "out of memory");
        region->seals = seals & PROTO_SEALS_KNOWN;
        r = conn_region_publish(c, f, region, m.flags & PROTO_REGISTER_LEASE, "registered");
        if (r <= 0)
                return r;
        struct region *added = region;
        region = NULL; /* the table owns it now */
        rep.id = added->meta.id;
        rep.seals = seals;
        r = conn_reply_encoded(c, &f->hdr, proto_register_reply_encode(&rep, buf, sizeof(buf)), buf, NULL, 0);
        conn_region_announce(c, added);
        return r;
}
