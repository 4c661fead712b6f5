/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* service: systemd integration (socket activation, readiness, watchdog, fd store of named regions). */

/*
 * Named regions survive a restart or a crash of iomemd through systemd's
 * file descriptor store. An fd carries the bytes, the size and the seals;
 * the rest of a region (name, owner, mode, flags, id, creation time) lives in
 * one more memfd, also kept in the store under the name "meta": a header and
 * an array of fixed-size slots, one per stored region, written in place with
 * pwrite(). Each region's fd is stored under FDNAME "r<slot>.<id in hex>",
 * which fits FDNAME's rules (printable ASCII, no ':', at most 255 bytes)
 * whatever the region's name is.
 *
 * Order of writes, so that a crash at any point loses nothing that was
 * acknowledged and leaves nothing half-made:
 *   add:    write the slot, then FDSTORE=1 the fd; only then is the client told.
 *   remove: clear the slot, then FDSTOREREMOVE=1.
 * At start an fd without a matching slot was being deleted (it is dropped
 * from the store), and a slot without an fd was never acknowledged (cleared).
 *
 * Region ids are generations (regtab.h), which must grow across a restart
 * for every name, also one whose last region the store did not keep (deleted,
 * or LEASEd): the header keeps a bound on the ids handed out (next_id),
 * raised in batches of META_ID_BATCH before a region with an id past it is
 * acknowledged, and the restored table's ids start at it.
 *
 * systemd silently ignores FDSTORE=1 once FileDescriptorStoreMax is reached,
 * so the daemon counts what it stored and refuses the create itself (L2).
 * The limit comes from $FDSTORE (systemd >= 254) or $IOMEMD_FDSTORE_MAX (set
 * in the unit next to FileDescriptorStoreMax=).
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "log.h"
#include "regtab.h"
#include "service.h"

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#define META_MAGIC UINT64_C(0x315441454D444D49) /* "IMDMETA1" */
#define META_VERSION 1
#define META_SLOT_USED 0x44455355u /* "USED" */
#define META_FDNAME "meta"
#define META_ID_BATCH 4096u /* ids the header's next_id is raised by at once: one pwrite() per so many regions */
#define LISTEN_FDNAME "iomemd"

struct meta_header {
        uint64_t magic;
        uint32_t version;
        uint32_t slot_size;
        uint64_t next_id; /* every id handed out is below it; 0 in headers written before it was kept */
        uint8_t pad[304 - 24];
};

struct meta_slot {
        uint32_t state;
        uint32_t name_len;
        uint64_t id;
        uint64_t ctime_ns;
        uint32_t uid;
        uint32_t gid;
        uint32_t mode;
        uint32_t flags;
        uint16_t backend;
        uint16_t partial; /* 1: charged less than its size when written (a holder's growth past the limits); 0 in
                           * slots written before it was kept */
        uint32_t charge_gid; /* region_store.gid + 1: 0 if not known (and in slots written before it was kept) */
        char name[PROTO_NAME_MAX + 1];
};

_Static_assert(sizeof(struct meta_slot) == 304, "slot layout");
_Static_assert(sizeof(struct meta_header) == sizeof(struct meta_slot), "header fills slot 0");

/* A slot whose last write failed (a short one may have left part of it): what it should hold, written again. */
struct pending_slot {
        uint32_t slot;
        struct meta_slot s;
};

struct passed_fd {
        int fd;
        char *name;
};

static struct {
        bool notify;          /* NOTIFY_SOCKET is set */
        uint64_t store_max;   /* fds the store holds; 0 = no store */
        uint64_t stored;      /* fds we put there (meta included) */
        int meta_fd;          /* -1 if the store is not used */
        uint32_t *free_slots; /* stack of free slot numbers */
        size_t n_free;
        size_t free_cap;
        uint32_t n_slots; /* slots the meta file has room for */
        uint64_t next_id; /* the header's next_id: ids below it may be handed out without writing it again */
        struct pending_slot *pending; /* slots to write again before the next slot write (slot_put()) */
        size_t n_pending;
        size_t pending_cap;
        struct passed_fd *passed;
        size_t n_passed;
} svc = { .meta_fd = -1 };

static off_t slot_offset(uint32_t slot)
{
        return (off_t)(slot + 1) * (off_t)sizeof(struct meta_slot);
}

#ifdef HAVE_LIBSYSTEMD
static int notify_fd(const char *state, int fd)
{
        int r = sd_pid_notify_with_fds(0, 0, state, &fd, 1);

        if (r < 0)
                return r;
        return r == 0 ? -ENOTCONN : 0;
}
#endif

static int notify(const char *state)
{
#ifdef HAVE_LIBSYSTEMD
        if (!svc.notify)
                return 0;
        return sd_notify(0, state);
#else
        (void)state;
        return 0;
#endif
}

static uint64_t env_u64(const char *name)
{
        const char *v = getenv(name);
        char *end;
        unsigned long long n;

        if (!v || !*v)
                return 0;
        errno = 0;
        n = strtoull(v, &end, 10);
        if (errno || *end)
                return 0;
        return n;
}

static void passed_clear(void)
{
        for (size_t i = 0; i < svc.n_passed; i++) {
                if (svc.passed[i].fd >= 0)
                        close(svc.passed[i].fd);
                free(svc.passed[i].name);
        }
        free(svc.passed);
        svc.passed = NULL;
        svc.n_passed = 0;
}

int service_listen_fd(int *fdp)
{
        int listen_fd = -1;

        svc.notify = getenv("NOTIFY_SOCKET") != NULL;
        svc.store_max = env_u64("FDSTORE");
        if (!svc.store_max)
                svc.store_max = env_u64("IOMEMD_FDSTORE_MAX");

#ifdef HAVE_LIBSYSTEMD
        char **names = NULL;
        int n = sd_listen_fds_with_names(1, &names);

        if (n < 0) {
                log_error("systemd passed malformed LISTEN_FDS: %s", strerror(-n));
                return n;
        }
        if (n > 0) {
                svc.passed = calloc((size_t)n, sizeof(*svc.passed));
                if (!svc.passed) {
                        for (int i = 0; i < n; i++) {
                                close(SD_LISTEN_FDS_START + i);
                                free(names ? names[i] : NULL);
                        }
                        free(names);
                        return -ENOMEM;
                }
        }
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                char *name = names ? names[i] : NULL;

                if (listen_fd < 0 && (!name || !strcmp(name, LISTEN_FDNAME) || !strcmp(name, "unknown")) &&
                    sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0) {
                        int fl = fcntl(fd, F_GETFL);

                        if (fl >= 0)
                                fcntl(fd, F_SETFL, fl | O_NONBLOCK);
                        listen_fd = fd;
                        free(name);
                        continue;
                }
                svc.passed[svc.n_passed].fd = fd;
                svc.passed[svc.n_passed].name = name;
                svc.n_passed++;
        }
        free(names);
#endif
        if (listen_fd < 0)
                return 0;
        *fdp = listen_fd;
        return 1;
}

static int meta_create(void)
{
        struct meta_header h = { .magic = META_MAGIC, .version = META_VERSION,
                                 .slot_size = sizeof(struct meta_slot) };
        enum proto_backend chosen;
        int fd = -1, r;

        r = backend_create(PROTO_BACKEND_MEMFD, sizeof(h), 0, NULL, &fd, &chosen);
        if (r < 0)
                return r;
        if (pwrite(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
                r = -errno;
                close(fd);
                return r;
        }
        svc.meta_fd = fd;
        svc.n_slots = 0;
        svc.next_id = 0;
        return 0;
}

static int meta_check(int fd, uint32_t *n_slotsp, uint64_t *next_idp)
{
        struct meta_header h;
        struct stat st;

        if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
                return -EBADMSG;
        if (h.magic != META_MAGIC || h.version != META_VERSION || h.slot_size != sizeof(struct meta_slot))
                return -EBADMSG;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(h))
                return -EBADMSG;
        *n_slotsp = (uint32_t)((uint64_t)st.st_size / sizeof(struct meta_slot) - 1);
        *next_idp = h.next_id;
        return 0;
}

static int free_push(uint32_t slot)
{
        if (svc.n_free == svc.free_cap) {
                size_t cap = svc.free_cap ? svc.free_cap * 2 : 64;
                uint32_t *p = realloc(svc.free_slots, cap * sizeof(*p));

                if (!p)
                        return -ENOMEM;
                svc.free_slots = p;
                svc.free_cap = cap;
        }
        svc.free_slots[svc.n_free++] = slot;
        return 0;
}

static int slot_alloc(uint32_t *slotp)
{
        if (svc.n_free) {
                *slotp = svc.free_slots[--svc.n_free];
                return 0;
        }
        /* grow the meta file by a batch of slots */
        uint32_t grow = svc.n_slots < 64 ? 64 : svc.n_slots / 2;
        uint32_t first = svc.n_slots;
        int r;

        if (ftruncate(svc.meta_fd, slot_offset(first + grow)) < 0)
                return -errno;
        svc.n_slots += grow;
        for (uint32_t s = first + grow; s-- > first + 1;) {
                r = free_push(s);
                if (r < 0)
                        return r;
        }
        *slotp = first;
        return 0;
}

/*
 * Write @n bytes at @off of the metadata file. Return: 0; negative errno; -EIO for a short write (it sets no
 * errno: the one left from an earlier call would name a wrong cause).
 */
static int meta_pwrite(const void *buf, size_t n, off_t off)
{
        ssize_t w = pwrite(svc.meta_fd, buf, n, off);

        if (w == (ssize_t)n)
                return 0;
        return w < 0 ? -errno : -EIO;
}

static struct pending_slot *pending_find(uint32_t slot)
{
        for (size_t i = 0; i < svc.n_pending; i++)
                if (svc.pending[i].slot == slot)
                        return &svc.pending[i];
        return NULL;
}

/* @slot's write of @s failed: remember @s, to be written again (without memory, the slot stays as it is). */
static void pending_set(uint32_t slot, const struct meta_slot *s)
{
        struct pending_slot *p = pending_find(slot);

        if (!p) {
                if (svc.n_pending == svc.pending_cap) {
                        size_t cap = svc.pending_cap ? svc.pending_cap * 2 : 8;

                        p = realloc(svc.pending, cap * sizeof(*p));
                        if (!p) {
                                log_error("fd store: no memory to remember slot %" PRIu32 " for a rewrite", slot);
                                return;
                        }
                        svc.pending = p;
                        svc.pending_cap = cap;
                }
                p = &svc.pending[svc.n_pending++];
        }
        p->slot = slot;
        p->s = *s;
}

static void pending_drop(uint32_t slot)
{
        struct pending_slot *p = pending_find(slot);

        if (p)
                *p = svc.pending[--svc.n_pending];
}

/*
 * Write every slot whose last write failed again (but @skip), dropping each that works. The first write that
 * fails ends the pass (the store is still failing: one failing write per call, not one per pending slot, which
 * made every slot write of a start or a burst of requests against a full store cost a pwrite() per slot already
 * pending); that slot goes to the end, the others keeping their order, so that slots that cannot be written do
 * not keep the others from their turn: a slot's place only moves to the front until a pass tries it.
 */
static void pending_flush(uint32_t skip)
{
        for (size_t i = 0; i < svc.n_pending;) {
                struct pending_slot p = svc.pending[i];

                if (p.slot == skip) {
                        i++;
                        continue;
                }
                if (meta_pwrite(&p.s, sizeof(p.s), slot_offset(p.slot)) < 0) {
                        /* to the end, the others in their order: a swap with the last brought the slot that
                         * failed last time to the front, so the first and the last took turns for ever */
                        memmove(&svc.pending[i], &svc.pending[i + 1], (svc.n_pending - i - 1) * sizeof(p));
                        svc.pending[svc.n_pending - 1] = p;
                        return;
                }
                svc.pending[i] = svc.pending[--svc.n_pending];
        }
}

/*
 * Write @s to @slot. First every slot whose last write failed is written again (but @slot: @s replaces what it
 * should hold), so that one a short write left half-made is made whole at the next write that works, not left for
 * a restart to read. Return: 0; negative errno, with @s then pending for @slot.
 */
static int slot_put(uint32_t slot, const struct meta_slot *s)
{
        int r;

        pending_flush(slot);
        r = meta_pwrite(s, sizeof(*s), slot_offset(slot));
        if (r < 0)
                pending_set(slot, s);
        else
                pending_drop(slot);
        return r;
}

static int slot_write(uint32_t slot, const struct region *reg)
{
        struct meta_slot s = { 0 };

        s.state = META_SLOT_USED;
        s.name_len = (uint32_t)reg->name_len;
        s.id = reg->meta.id;
        s.ctime_ns = reg->meta.ctime_ns;
        s.uid = reg->meta.uid;
        s.gid = reg->meta.gid;
        s.mode = reg->meta.mode;
        s.flags = reg->meta.flags;
        s.backend = reg->meta.backend;
        s.partial = reg->charged < reg->size;
        s.charge_gid = reg->store.gid == REGION_STORE_GID_UNKNOWN ? 0 : reg->store.gid + 1;
        memcpy(s.name, reg->name, reg->name_len);
        return slot_put(slot, &s);
}

static int slot_clear(uint32_t slot)
{
        struct meta_slot s = { 0 };

        return slot_put(slot, &s);
}

static void fdname_format(char *buf, size_t size, uint32_t slot, uint64_t id)
{
        snprintf(buf, size, "r%" PRIu32 ".%" PRIx64, slot, id);
}

static int fdname_parse(const char *name, uint32_t *slotp, uint64_t *idp)
{
        unsigned long slot;
        unsigned long long id;
        char *end;

        if (!name || name[0] != 'r')
                return -EINVAL;
        errno = 0;
        slot = strtoul(name + 1, &end, 10);
        if (errno || end == name + 1 || *end != '.' || slot >= UINT32_MAX)
                return -EINVAL;
        id = strtoull(end + 1, &end, 16);
        if (errno || *end)
                return -EINVAL;
        *slotp = (uint32_t)slot;
        *idp = id;
        return 0;
}

static void store_remove(const char *fdname)
{
#ifdef HAVE_LIBSYSTEMD
        char state[300];

        snprintf(state, sizeof(state), "FDSTOREREMOVE=1\nFDNAME=%s", fdname);
        notify(state);
#else
        (void)fdname;
#endif
}

/* Put the meta memfd in the store (first start), or adopt the one passed back. */
static int meta_setup(void)
{
        int r;

        for (size_t i = 0; i < svc.n_passed; i++) {
                struct passed_fd *p = &svc.passed[i];
                uint32_t n = 0;
                uint64_t next_id = 0;

                if (!p->name || strcmp(p->name, META_FDNAME) != 0 || p->fd < 0)
                        continue;
                if (svc.meta_fd >= 0 || meta_check(p->fd, &n, &next_id) < 0) {
                        log_error("fd store: ignoring an invalid or duplicate region metadata file");
                        continue;
                }
                svc.meta_fd = p->fd;
                svc.n_slots = n;
                svc.next_id = next_id;
                p->fd = -1;
        }
        if (svc.meta_fd >= 0) {
                svc.stored = 1;
                return 0;
        }
        r = meta_create();
        if (r < 0)
                return r;
#ifdef HAVE_LIBSYSTEMD
        r = notify_fd("FDSTORE=1\nFDNAME=" META_FDNAME "\nFDPOLL=0", svc.meta_fd);
#else
        r = -EOPNOTSUPP;
#endif
        if (r < 0) {
                close(svc.meta_fd);
                svc.meta_fd = -1;
                return r;
        }
        svc.stored = 1;
        return 0;
}

int service_restore(struct regtab *t)
{
        uint8_t *claimed = NULL;
        int restored = 0, r;

        if (!svc.notify || svc.store_max < 2) {
                if (svc.n_passed)
                        log_warning("systemd passed %zu fds but no fd store is configured; closing them",
                                    svc.n_passed);
                passed_clear();
                log_info("no systemd fd store: named regions live as long as the daemon");
                return 0;
        }
        r = meta_setup();
        if (r < 0) {
                log_error("fd store: cannot set up region metadata (%s); regions will not survive a restart",
                          strerror(-r));
                passed_clear();
                return 0;
        }
        if (svc.n_slots) {
                claimed = calloc(svc.n_slots, 1);
                if (!claimed) {
                        passed_clear();
                        return -ENOMEM;
                }
        }
        for (size_t i = 0; i < svc.n_passed; i++) {
                struct passed_fd *p = &svc.passed[i];
                struct meta_slot s;
                struct region_meta meta;
                struct region *reg = NULL;
                uint64_t id, size;
                uint32_t slot;

                if (p->fd < 0)
                        continue;
                if (fdname_parse(p->name, &slot, &id) < 0 || slot >= svc.n_slots || claimed[slot] ||
                    pread(svc.meta_fd, &s, sizeof(s), slot_offset(slot)) != (ssize_t)sizeof(s) ||
                    s.state != META_SLOT_USED || s.id != id || s.name_len == 0 || s.name_len > PROTO_NAME_MAX ||
                    s.name[s.name_len] != '\0' || proto_name_check(s.name, s.name_len) < 0 ||
                    backend_get_size(p->fd, &size) < 0) {
                        log_warning("fd store: dropping fd \"%s\" with no valid metadata (deleted before a crash?)",
                                    p->name ? p->name : "?");
                        if (p->name)
                                store_remove(p->name);
                        close(p->fd);
                        p->fd = -1;
                        continue;
                }
                meta = (struct region_meta){ .id = s.id, .ctime_ns = s.ctime_ns, .uid = s.uid, .gid = s.gid,
                                             .mode = s.mode, .flags = s.flags, .backend = s.backend };
                int seals = s.backend == PROTO_BACKEND_MEMFD ? fcntl(p->fd, F_GET_SEALS) : 0;

                r = regtab_region_new(s.name, p->fd, size, &meta, &reg);
                p->fd = -1; /* consumed */
                if (r >= 0) {
                        reg->store.slot = slot;
                        reg->store.partial = s.partial != 0;
                        reg->store.gid = s.charge_gid ? s.charge_gid - 1 : REGION_STORE_GID_UNKNOWN;
                        reg->seals = seals > 0 ? (uint32_t)seals & PROTO_SEALS_KNOWN : 0;
                        r = regtab_add(t, reg);
                        if (r < 0)
                                reg = regtab_region_free(reg);
                }
                if (r == -ENOMEM) {
                        /*
                         * Out of memory is not the region's fault: stop here with the store
                         * untouched, so that the restart systemd makes tries again.
                         */
                        log_error("fd store: out of memory restoring region \"%s\"; leaving the store as it is",
                                  s.name);
                        free(claimed);
                        passed_clear();
                        return -ENOMEM;
                }
                if (r < 0) {
                        log_error("fd store: cannot restore region \"%s\": %s", s.name, strerror(-r));
                        store_remove(p->name);
                        continue;
                }
                claimed[slot] = 1;
                svc.stored++;
                restored++;
                r = regtab_settle(t, reg);
                if (r < 0)
                        log_warning("cannot park restored region \"%s\" in an fd keeper: %s", s.name, strerror(-r));
        }
        /* slots nobody claimed: never acknowledged, or their fd was lost */
        for (uint32_t s = svc.n_slots; s-- > 0;) {
                if (claimed[s])
                        continue;
                slot_clear(s);
                r = free_push(s);
                if (r < 0)
                        break;
        }
        free(claimed);
        passed_clear();
        /* no id handed out before (a region deleted, or leased, since the store kept it) is handed out again */
        regtab_keep_ids_below(t, svc.next_id);
        if (restored)
                log_notice("restored %d named region(s) from the systemd fd store", restored);
        return restored;
}

/*
 * Make the header say that @id was handed out (raise its next_id past @id, by a batch), before a region with
 * that id is acknowledged. Return: 0 or negative errno.
 */
static int meta_keep_id(uint64_t id)
{
        uint64_t next_id;
        int r;

        if (id < svc.next_id)
                return 0;
        next_id = id > UINT64_MAX - META_ID_BATCH ? UINT64_MAX : id + META_ID_BATCH;
        r = meta_pwrite(&next_id, sizeof(next_id), offsetof(struct meta_header, next_id));
        if (r < 0)
                return r;
        svc.next_id = next_id;
        return 0;
}

int service_region_added(struct region *reg)
{
        char state[400], fdname[64];
        uint32_t slot = 0;
        int r;

        reg->store.slot = UINT32_MAX;
        if (svc.meta_fd < 0)
                return 0;
        /* leased ones too: their ids are generations as well (a name may be made again after a restart) */
        r = meta_keep_id(reg->meta.id);
        if (r < 0) {
                log_error("fd store: cannot record region ids in its metadata file: %s", strerror(-r));
                return -ENOSPC;
        }
        if (reg->meta.flags & PROTO_REGION_LEASED)
                return 0;
        if (svc.stored >= svc.store_max) {
                log_error("fd store full (%" PRIu64 " fds, FileDescriptorStoreMax): refusing region \"%s\"",
                          svc.stored, reg->name);
                return -ENOSPC;
        }
        r = slot_alloc(&slot);
        if (r < 0)
                goto fail;
        r = slot_write(slot, reg);
        if (r < 0) {
                (void)slot_clear(slot); /* a short write left part of it: the free slot is to be empty (slot_put()) */
                free_push(slot);
                goto fail;
        }
        fdname_format(fdname, sizeof(fdname), slot, reg->meta.id);
        snprintf(state, sizeof(state), "FDSTORE=1\nFDNAME=%s\nFDPOLL=0", fdname);
#ifdef HAVE_LIBSYSTEMD
        r = notify_fd(state, reg->fd);
#else
        r = -EOPNOTSUPP;
#endif
        if (r < 0) {
                slot_clear(slot);
                free_push(slot);
                goto fail;
        }
        reg->store.slot = slot;
        svc.stored++;
        return 0;
fail:
        log_error("fd store refused region \"%s\": %s", reg->name, strerror(-r));
        return -ENOSPC;
}

int service_region_update(const struct region *reg)
{
        int r;

        if (svc.meta_fd < 0 || reg->store.slot == UINT32_MAX)
                return 0;
        r = slot_write(reg->store.slot, reg);
        if (r < 0)
                log_error("fd store: cannot update metadata of region \"%s\": %s", reg->name, strerror(-r));
        return r;
}

bool service_region_stored_whole(const struct region *reg)
{
        return svc.meta_fd < 0 || reg->store.slot == UINT32_MAX || !pending_find(reg->store.slot);
}

void service_region_changed(struct region *reg)
{
        (void)service_region_update(reg);
}

void service_region_removed(struct region *reg)
{
        char fdname[64];

        if (svc.meta_fd < 0 || reg->store.slot == UINT32_MAX)
                return;
        slot_clear(reg->store.slot);
        fdname_format(fdname, sizeof(fdname), reg->store.slot, reg->meta.id);
        store_remove(fdname);
        free_push(reg->store.slot);
        reg->store.slot = UINT32_MAX;
        if (svc.stored)
                svc.stored--;
}

void service_ready(void)
{
        notify("READY=1");
}

void service_status(uint64_t regions, uint64_t bytes, uint64_t connections)
{
        char state[160];

        snprintf(state, sizeof(state), "STATUS=%" PRIu64 " regions, %" PRIu64 " bytes, %" PRIu64 " connections",
                 regions, bytes, connections);
        notify(state);
}

void service_store_retry(void)
{
        if (svc.meta_fd >= 0)
                pending_flush(UINT32_MAX);
}

void service_stopping(void)
{
        /*
         * A slot a failed write left half-made, not for the next start to read: the last chance, so every pending
         * slot is tried (one pass per slot: a pass ends at its first failing write, which goes to the end).
         */
        for (size_t n = svc.n_pending; n > 0 && svc.n_pending > 0; n--)
                service_store_retry();
        notify("STOPPING=1");
}

void service_reloading(bool begin)
{
        notify(begin ? "RELOADING=1" : "READY=1");
}

uint64_t service_watchdog_usec(void)
{
#ifdef HAVE_LIBSYSTEMD
        uint64_t usec = 0;

        if (sd_watchdog_enabled(0, &usec) > 0)
                return usec;
#endif
        return 0;
}

void service_watchdog(void)
{
        notify("WATCHDOG=1");
}

void service_store_usage(uint64_t *storedp, uint64_t *maxp)
{
        bool used = svc.meta_fd >= 0;

        *storedp = used ? svc.stored : 0;
        *maxp = used ? svc.store_max : 0;
}
