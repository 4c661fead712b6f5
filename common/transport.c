/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* transport: framed stream over a Unix socket, with fds tied to frames (SCM_RIGHTS). */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "asan.h"
#include "transport.h"

/*
 * In AddressSanitizer builds the input buffer around a borrowed payload
 * (transport_next_frame_borrowed()) is poisoned until the transport is used
 * again: a decoder that reads past the payload's length, or a caller that
 * keeps a payload across a read, is reported as it was when every payload
 * was an exact-size malloc'd copy (the fuzzers and the ASan test build rely
 * on it). Every function that touches the buffer unpoisons it first.
 */
static void transport_in_unpoison(struct transport *t)
{
        if (t->in)
                ASAN_UNPOISON_MEMORY_REGION(t->in, t->in_cap);
}

static void transport_in_poison_around(struct transport *t, const uint8_t *payload, size_t len)
{
        ASAN_POISON_MEMORY_REGION(t->in, (size_t)(payload - t->in));
        ASAN_POISON_MEMORY_REGION(payload + len, t->in_cap - (size_t)(payload + len - t->in));
}

/* iovecs per sendmsg() batch of fd-less frames */
#define TRANSPORT_IOV_MAX 64

/*
 * Room for exactly one SCM_RIGHTS block of the most fds a frame may carry.
 * Anything larger shows up as MSG_CTRUNC, which is what we want (D5).
 */
#define TRANSPORT_CMSG_SIZE CMSG_SPACE(PROTO_MAX_FDS * sizeof(int))

struct transport_out {
        struct transport_out *next;
        size_t len;    /* header + payload */
        size_t sent;   /* bytes of data[] already sent */
        unsigned nfds; /* fds not yet sent; 0 once the first byte went out */
        bool borrowed; /* fds[] are the caller's, until transport_own_fds() (transport_queue_with_fds()) */
        bool stored;   /* in t->out_store (transport_use_out_storage()): not freed, the storage is reused */
        int fds[PROTO_MAX_FDS];
        uint8_t data[];
};

_Static_assert(_Alignof(struct transport_out) <= _Alignof(struct transport_out_storage),
               "queued frames are built in struct transport_out_storage");

static void (*transport_fd_closer)(int fd, uint32_t owner);

void transport_set_fd_closer(void (*fn)(int fd, uint32_t owner))
{
        transport_fd_closer = fn;
}

static void transport_close_fd(int fd, uint32_t owner)
{
        if (transport_fd_closer)
                transport_fd_closer(fd, owner);
        else
                close(fd);
}

/*
 * Close fds a peer sent (through the process's closer: such a close may block,
 * e.g. on FUSE), or, with @own, fds we made and queued for sending (plain close).
 */
static void transport_close_fds_how(int *fds, unsigned n, bool own, uint32_t owner)
{
        int saved = errno;

        for (unsigned i = 0; i < n; i++) {
                if (fds[i] >= 0) {
                        if (own)
                                close(fds[i]);
                        else
                                transport_close_fd(fds[i], owner);
                }
                fds[i] = -1;
        }
        errno = saved;
}

static void transport_close_fds(int *fds, unsigned n, uint32_t owner)
{
        transport_close_fds_how(fds, n, false, owner);
}

static void transport_close_own_fds(int *fds, unsigned n)
{
        transport_close_fds_how(fds, n, true, 0);
}

/* Return: a batch for fds just received (the spare if it is free), or NULL (-ENOMEM). */
static struct transport_fdbatch *transport_batch_new(struct transport *t)
{
        struct transport_fdbatch *b = t->spare;

        if (b) {
                t->spare = NULL;
                return b;
        }
        b = malloc(sizeof(*b));
        if (b)
                b->from_storage = false;
        return b;
}

/* Free @b, whose fds are gone, or give it back as the spare. */
static void transport_batch_free(struct transport *t, struct transport_fdbatch *b)
{
        if (b->from_storage)
                t->spare = b;
        else
                free(b);
}

/* Close every fd received and not yet handed out in a frame. */
static void transport_drop_batches(struct transport *t)
{
        struct transport_fdbatch *b, *next;

        for (b = t->batches; b; b = next) {
                next = b->next;
                transport_close_fds(b->fds, b->nfds, t->fd_owner);
                transport_batch_free(t, b);
        }
        t->batches = NULL;
        t->batches_tail = NULL;
        t->in_fds = 0;
}

static uint64_t transport_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Return: the deadline for @timeout_ms from now; UINT64_MAX for a negative timeout (forever). */
static uint64_t transport_deadline(int timeout_ms)
{
        return timeout_ms < 0 ? UINT64_MAX : transport_now_ms() + (uint64_t)timeout_ms;
}

int transport_init(struct transport *t, int fd, size_t max_out_bytes, unsigned max_out_fds)
{
        *t = (struct transport){
                .fd = fd,
                .max_out_bytes = max_out_bytes ? max_out_bytes : TRANSPORT_DEFAULT_MAX_OUT_BYTES,
                .max_out_fds = max_out_fds ? max_out_fds : TRANSPORT_DEFAULT_MAX_OUT_FDS,
        };
        t->in = malloc(TRANSPORT_IN_MIN);
        if (!t->in)
                return -ENOMEM;
        t->in_cap = TRANSPORT_IN_MIN;
        return 0;
}

int transport_init_storage(struct transport *t, int fd, size_t max_out_bytes, unsigned max_out_fds,
                           struct transport_storage *storage)
{
        *t = (struct transport){
                .fd = fd,
                .max_out_bytes = max_out_bytes ? max_out_bytes : TRANSPORT_DEFAULT_MAX_OUT_BYTES,
                .max_out_fds = max_out_fds ? max_out_fds : TRANSPORT_DEFAULT_MAX_OUT_FDS,
                .in = storage->in,
                .in_cap = sizeof(storage->in),
                .in_storage = true,
                .spare = &storage->batch,
        };
        storage->batch.from_storage = true;
        return 0;
}

void transport_use_out_storage(struct transport *t, struct transport_out_storage *storage)
{
        assert(!t->out_head && !t->out_store);
        t->out_store = storage->bytes;
        t->out_store_used = 0;
        ASAN_POISON_MEMORY_REGION(t->out_store, TRANSPORT_OUT_STORAGE); /* unpoisoned frame by frame as queued */
}

/*
 * Return: room for a queued frame of @size bytes (header and payload) with its bookkeeping, in the out storage
 * if it fits there (*@storedp true), else allocated; NULL (-ENOMEM). Nothing in it is set.
 */
static struct transport_out *transport_out_new(struct transport *t, size_t size, bool *storedp)
{
        size_t need = (sizeof(struct transport_out) + size + _Alignof(struct transport_out) - 1) &
                      ~(_Alignof(struct transport_out) - 1);
        struct transport_out *o;

        if (t->out_store && TRANSPORT_OUT_STORAGE - t->out_store_used >= need) {
                o = (struct transport_out *)(void *)(t->out_store + t->out_store_used);
                ASAN_UNPOISON_MEMORY_REGION(o, sizeof(*o) + size);
                t->out_store_used += need;
                *storedp = true;
                return o;
        }
        *storedp = false;
        return malloc(sizeof(*o) + size);
}

/* Free @o, sent and unlinked from the queue; once the queue is empty its storage may be used again from the start. */
static void transport_out_free(struct transport *t, struct transport_out *o)
{
        if (o->stored)
                ASAN_POISON_MEMORY_REGION(o, sizeof(*o) + o->len);
        else
                free(o);
        if (!t->out_head)
                t->out_store_used = 0;
}

inline void transport_release(struct transport *t)
{
        struct transport_out *o, *next;

        if (t->batches)
                transport_drop_batches(t);
        transport_in_unpoison(t);
        for (o = t->out_head; o; o = next) {
                next = o->next;
                if (!o->borrowed)
                        transport_close_own_fds(o->fds, o->nfds);
                if (!o->stored)
                        free(o);
        }
        if (t->out_store)
                ASAN_UNPOISON_MEMORY_REGION(t->out_store, TRANSPORT_OUT_STORAGE); /* the caller's again */
        if (!t->in_storage)
                free(t->in);
}

void transport_deinit(struct transport *t)
{
        if (!t)
                return;
        transport_release(t);
        *t = (struct transport){ .fd = -1 };
}

/*
 * Collect the fds of every control message. A peer may send anything here, so
 * everything that carries fds is gathered (and closed by the caller on error)
 * even when the message as a whole is a violation.
 * Return: 0 if the control data is acceptable, -EPROTO otherwise.
 */
static int transport_collect_fds(struct msghdr *msg, int *fds, unsigned size, unsigned *nfdsp, uint32_t owner)
{
        struct cmsghdr *cmsg;
        unsigned nfds = 0, nblocks = 0;
        int r = 0;

        for (cmsg = CMSG_FIRSTHDR(msg); cmsg; cmsg = CMSG_NXTHDR(msg, cmsg)) {
                size_t n;

                if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) {
                        r = -EPROTO;
                        continue;
                }
                nblocks++;
                if (cmsg->cmsg_len < CMSG_LEN(0))
                        continue;
                n = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < n; i++) {
                        int fd;

                        memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(fd));
                        if (nfds < size) {
                                fds[nfds++] = fd;
                        } else {
                                transport_close_fd(fd, owner);
                                r = -EPROTO;
                        }
                }
        }
        *nfdsp = nfds;
        /*
         * MSG_CTRUNC means some fds were dropped by the kernel: the buffer was
         * too small for them, or they could not be installed (RLIMIT_NOFILE, a
         * security module). Either way the frame they belong to is lost.
         */
        if ((msg->msg_flags & MSG_CTRUNC) || nblocks > 1 || nfds > PROTO_MAX_FDS)
                r = -EPROTO;
        return r;
}

/* Attach @nfds fds as one SCM_RIGHTS block to @msg, in @ctrl (room for TRANSPORT_CMSG_SIZE bytes). */
static void transport_attach_fds(struct msghdr *msg, void *ctrl, const int *fds, unsigned nfds)
{
        struct cmsghdr *cmsg;

        assert(nfds > 0 && nfds <= PROTO_MAX_FDS);
        memset(ctrl, 0, TRANSPORT_CMSG_SIZE);
        msg->msg_control = ctrl;
        msg->msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        cmsg = CMSG_FIRSTHDR(msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        for (unsigned i = 0; i < nfds; i++) /* PROTO_MAX_FDS at most: no memcpy call */
                memcpy(CMSG_DATA(cmsg) + i * sizeof(int), &fds[i], sizeof(int));
}

/*
 * One sendmsg() of @iov[@niov] on @fd with @flags, carrying @fds[@nfds] (borrowed: the caller says whose they
 * are once sent) as one SCM_RIGHTS block, or no control data if @nfds is 0; retried while a signal interrupts
 * it. Every send path goes through here; inlined, as the code it replaced was, in the daemon's counted hot
 * path (bench/callgrind.sh). Return: the bytes sent (0 included: the caller decides what that means), or
 * negative errno.
 */
__attribute__((always_inline)) static inline ssize_t transport_sendmsg(int fd, struct iovec *iov, size_t niov,
                                                                       const int *fds, unsigned nfds, int flags)
{
        union {
                struct cmsghdr align;
                uint8_t buf[TRANSPORT_CMSG_SIZE];
        } ctrl;
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = niov };
        ssize_t n;

        if (nfds > 0)
                transport_attach_fds(&msg, ctrl.buf, fds, nfds);
        do
                n = sendmsg(fd, &msg, flags);
        while (n < 0 && errno == EINTR);
        return n < 0 ? -errno : n;
}

/*
 * Make room in the input buffer (its bytes start at in[0]) for the next read:
 * grow it to the size of the buffered frame's whole if its header says it is
 * larger, else double it once full (TRANSPORT_IN_MIN). Return: 0; -ENOBUFS
 * if a whole frame's worth is buffered already (the caller did not parse it);
 * -ENOMEM.
 */
static int transport_in_room(struct transport *t)
{
        size_t want = t->in_end < t->in_cap ? 0 : t->in_cap * 2;
        struct proto_header h = { .length = 0 };
        uint8_t *in;
        int k;

        /* the usual read: no header buffered (nothing to size the buffer by) and room left, as below */
        if (t->in_end < PROTO_HEADER_SIZE && !want)
                return 0;
        if (t->in_end >= TRANSPORT_IN_SIZE)
                return -ENOBUFS;
        if (t->in_end >= PROTO_HEADER_SIZE) {
                /* a bad header is left to transport_next_frame() to report; an unknown version has a length */
                k = proto_header_decode(t->in, PROTO_HEADER_SIZE, &h);
                if (k < 0 && k != -EPROTONOSUPPORT)
                        h.length = 0;
        }
        if (t->in_end >= PROTO_HEADER_SIZE && h.length <= PROTO_MAX_PAYLOAD && PROTO_HEADER_SIZE + (size_t)h.length > t->in_cap &&
            PROTO_HEADER_SIZE + (size_t)h.length > want)
                want = PROTO_HEADER_SIZE + (size_t)h.length;
        if (!want)
                return 0;
        if (want > TRANSPORT_IN_SIZE)
                want = TRANSPORT_IN_SIZE;
        if (t->in_storage) {
                /* out of the caller's storage, into a buffer of our own (the bytes start at in[0]) */
                in = malloc(want);
                if (in)
                        memcpy(in, t->in, t->in_end);
        } else {
                in = realloc(t->in, want);
        }
        if (!in)
                return -ENOMEM;
        t->in_storage = false;
        t->in = in;
        t->in_cap = want;
        return 0;
}

/* One recvmsg with @flags (MSG_DONTWAIT or 0) into the input buffer. Return: as transport_read(). */
static int transport_read_flags(struct transport *t, int flags)
{
        union {
                struct cmsghdr align;
                uint8_t buf[TRANSPORT_CMSG_SIZE];
        } ctrl;
        int fds[TRANSPORT_CMSG_SIZE / sizeof(int)];
        struct transport_fdbatch *b;
        struct iovec iov;
        struct msghdr msg = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = ctrl.buf,
                .msg_controllen = sizeof(ctrl.buf),
        };
        unsigned nfds = 0;
        ssize_t n;
        int r;

        transport_in_unpoison(t);
        if (t->in_start > 0) {
                memmove(t->in, t->in + t->in_start, t->in_end - t->in_start);
                t->in_pos += t->in_start;
                t->in_end -= t->in_start;
                t->in_start = 0;
        }
        r = transport_in_room(t);
        if (r < 0)
                return r;

        iov.iov_base = t->in + t->in_end;
        iov.iov_len = t->in_cap - t->in_end;
        memset(&ctrl, 0, sizeof(ctrl));
        t->in_filled = false;
        do
                n = recvmsg(t->fd, &msg, flags | MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        t->in_filled = (size_t)n == iov.iov_len;

        /* no control data (the kernel sets msg_controllen to what it wrote) and none cut: no fds, nothing wrong */
        r = msg.msg_controllen == 0 && !(msg.msg_flags & MSG_CTRUNC)
                    ? 0
                    : transport_collect_fds(&msg, fds, sizeof(fds) / sizeof(fds[0]), &nfds, t->fd_owner);
        if (r >= 0 && nfds > 0 && (n == 0 || t->in_fds + nfds > TRANSPORT_MAX_HELD_FDS))
                r = -EPROTO; /* fds without bytes, or piling up with no frame to claim them */
        if (r < 0) {
                transport_close_fds(fds, nfds, t->fd_owner);
                transport_drop_batches(t);
                return r;
        }
        if (n == 0) {
                t->eof = true;
                return 0;
        }

        if (nfds > 0) {
                b = transport_batch_new(t);
                if (!b) {
                        transport_close_fds(fds, nfds, t->fd_owner);
                        return -ENOMEM;
                }
                b->next = NULL;
                b->end = t->in_pos + t->in_end + (size_t)n;
                b->nfds = nfds;
                /* all PROTO_MAX_FDS entries in one fixed-size move (fds[] has room): those past @nfds are never read */
                _Static_assert(sizeof(fds) >= sizeof(b->fds), "fds[] holds a batch's whole array");
                memcpy(b->fds, fds, sizeof(b->fds));
                if (t->batches_tail)
                        t->batches_tail->next = b;
                else
                        t->batches = b;
                t->batches_tail = b;
                t->in_fds += nfds;
        }
        t->in_end += (size_t)n;
        return (int)n;
}

int transport_read(struct transport *t)
{
        return transport_read_flags(t, MSG_DONTWAIT);
}

void transport_frame_deinit(struct transport_frame *f)
{
        if (!f)
                return;
        if (f->nfds > 0)
                transport_close_fds(f->fds, f->nfds, f->fd_owner);
        if (!f->payload_borrowed)
                free(f->payload);
        f->payload = NULL;
        f->payload_borrowed = false;
        f->nfds = 0;
}

/*
 * Check the fds held while the frame starting at @start is incomplete: none
 * may belong to an earlier frame, and no more than @limit may have arrived for
 * this one. Catches D1/D3/D4 early, so a peer cannot pile up fds in a frame it
 * never finishes.
 * Return: 0, or -EPROTO with every held fd closed.
 */
static int transport_check_pending(struct transport *t, uint64_t start, unsigned limit)
{
        struct transport_fdbatch *b;
        unsigned n = 0;

        for (b = t->batches; b; b = b->next) {
                /* in order, fds may come with bytes of earlier frames: only their number is bounded */
                if (b->end <= start && !t->in_fds_in_order)
                        goto fail;
                n += b->nfds;
        }
        /*
         * In order, the fds held once every complete frame took its own are those
         * of the writer's last sendmsg() (transport_flush_in_order()), which may
         * belong to frames behind this one: at most PROTO_MAX_FDS, whatever this
         * frame declares.
         */
        if (t->in_fds_in_order)
                limit = PROTO_MAX_FDS;
        if (n > limit)
                goto fail;
        return 0;
fail:
        transport_drop_batches(t);
        return -EPROTO;
}

/*
 * Move the fds of the frame [@start, @end) of the stream into @f: those that
 * arrived with a recvmsg() whose last byte lies inside the frame.
 * Return: 0, or -EPROTO (every held fd closed) if they do not match @nfds or
 * fds of an earlier frame were left over.
 */
/* transport_claim_fds() in order: the next @nfds fds received, which must have arrived by now. */
static inline int transport_claim_fds_in_order(struct transport *t, unsigned nfds, struct transport_frame *f)
{
        struct transport_fdbatch *b;

        if (t->in_fds < nfds) {
                transport_drop_batches(t);
                return -EPROTO;
        }
        while (f->nfds < nfds) {
                unsigned take;

                b = t->batches;
                take = b->nfds < nfds - f->nfds ? b->nfds : nfds - f->nfds;
                /* a few ints (PROTO_MAX_FDS at most): copied in place, without memcpy/memmove calls */
                for (unsigned i = 0; i < take; i++)
                        f->fds[f->nfds + i] = b->fds[i];
                f->nfds += take;
                t->in_fds -= take;
                b->nfds -= take;
                if (b->nfds == 0) {
                        t->batches = b->next;
                        transport_batch_free(t, b);
                } else {
                        for (unsigned i = 0; i < b->nfds; i++)
                                b->fds[i] = b->fds[i + take];
                }
        }
        if (!t->batches)
                t->batches_tail = NULL;
        return 0;
}

static int transport_claim_fds(struct transport *t, uint64_t start, uint64_t end, unsigned nfds,
                               struct transport_frame *f)
{
        struct transport_fdbatch *b;
        unsigned n = 0;

        if (t->in_fds_in_order)
                return transport_claim_fds_in_order(t, nfds, f);

        for (b = t->batches; b && b->end <= end; b = b->next) {
                if (b->end <= start)
                        goto fail;
                n += b->nfds;
        }
        if (n != nfds)
                goto fail;

        while (t->batches && t->batches->end <= end) {
                b = t->batches;
                memcpy(f->fds + f->nfds, b->fds, b->nfds * sizeof(int));
                f->nfds += b->nfds;
                t->in_fds -= b->nfds;
                t->batches = b->next;
                transport_batch_free(t, b);
        }
        if (!t->batches)
                t->batches_tail = NULL;
        return 0;
fail:
        transport_drop_batches(t);
        return -EPROTO;
}

/* Take the @len bytes of a frame off the front of the input buffer. */
static void transport_in_consume(struct transport *t, size_t len)
{
        t->in_start += len;
        if (t->in_start == t->in_end) {
                t->in_pos += t->in_end;
                t->in_start = 0;
                t->in_end = 0;
        }
}

static int transport_next_frame_how(struct transport *t, struct transport_frame *f, bool borrow)
{
        size_t avail = t->in_end - t->in_start;
        uint64_t start = t->in_pos + t->in_start;
        uint64_t len;
        struct proto_header h;
        uint8_t *payload = NULL;
        int r;

        transport_in_unpoison(t);
        *f = (struct transport_frame){ .nfds = 0, .fd_owner = t->fd_owner };
        for (unsigned i = 0; i < PROTO_MAX_FDS; i++)
                f->fds[i] = -1;

        if (avail < PROTO_HEADER_SIZE) {
                r = transport_check_pending(t, start, PROTO_MAX_FDS);
                if (r < 0)
                        return r;
                return t->eof && avail > 0 ? -EPIPE : 0;
        }

        /*
         * An unknown version still has a well-defined header (the caller
         * answers it); every other decode error means the stream cannot be
         * trusted any more. Limits are checked here too so that they hold
         * whatever order the decoder checks things in (F2, F3).
         */
        r = proto_header_decode(t->in + t->in_start, PROTO_HEADER_SIZE, &h);
        if (r < 0 && r != -EPROTONOSUPPORT)
                return r;
        if (h.length > PROTO_MAX_PAYLOAD || h.nfds > PROTO_MAX_FDS)
                return -EMSGSIZE;
        len = (uint64_t)PROTO_HEADER_SIZE + h.length;

        if (avail < len) {
                r = transport_check_pending(t, start, h.nfds);
                if (r < 0)
                        return r;
                return t->eof ? -EPIPE : 0;
        }

        if (h.length > 0 && borrow) {
                payload = t->in + t->in_start + PROTO_HEADER_SIZE;
        } else if (h.length > 0) {
                payload = malloc(h.length);
                if (!payload)
                        return -ENOMEM;
                memcpy(payload, t->in + t->in_start + PROTO_HEADER_SIZE, h.length);
        }
        r = transport_claim_fds(t, start, start + len, h.nfds, f);
        if (r < 0) {
                if (!borrow)
                        free(payload);
                return r;
        }
        f->hdr = h;
        f->payload = payload;
        f->payload_borrowed = borrow && payload;
        if (f->payload_borrowed)
                transport_in_poison_around(t, payload, h.length);
        transport_in_consume(t, (size_t)len);
        return 1;
}

int transport_next_frame(struct transport *t, struct transport_frame *f)
{
        return transport_next_frame_how(t, f, false);
}

int transport_next_frame_borrowed(struct transport *t, struct transport_frame *f)
{
        size_t avail = t->in_end - t->in_start;
        const struct proto_header *h = &f->hdr; /* decoded in place (not copied in): the fallback sets all of *f */
        uint8_t *payload;
        int r;

        /*
         * The usual frame (a request to iomemd, a reply): whole in the buffer, its fds (if any) tied in order, or
         * none declared and none held. transport_next_frame_how() does the same then (the checks of held fds are
         * for incomplete frames), after more set-up; anything else (an incomplete frame, a bad or unknown header,
         * fds tied by position) goes its way, which decodes the header again.
         */
        transport_in_unpoison(t);
        if (avail < PROTO_HEADER_SIZE || proto_header_decode(t->in + t->in_start, PROTO_HEADER_SIZE, &f->hdr) < 0 ||
            avail - PROTO_HEADER_SIZE < h->length || !(t->in_fds_in_order || (!t->batches && h->nfds == 0)))
                return transport_next_frame_how(t, f, true);
        /* each field written once, not zeroed first (a frame is 64 bytes, two per cold connection) */
        f->payload = NULL;
        f->payload_borrowed = false;
        for (unsigned i = 0; i < PROTO_MAX_FDS; i++)
                f->fds[i] = -1;
        f->nfds = 0;
        f->fd_owner = t->fd_owner;
        if (h->nfds > 0) {
                r = transport_claim_fds_in_order(t, h->nfds, f);
                if (r < 0)
                        return r;
        }
        payload = h->length > 0 ? t->in + t->in_start + PROTO_HEADER_SIZE : NULL;
        f->payload = payload;
        f->payload_borrowed = payload != NULL;
        if (payload)
                transport_in_poison_around(t, payload, h->length);
        transport_in_consume(t, PROTO_HEADER_SIZE + (size_t)h->length);
        return 1;
}

__attribute__((always_inline)) static inline int transport_queue_how(struct transport *t, const struct proto_header *h, const void *payload, size_t len,
                               int *fds, unsigned nfds, bool borrowed)
{
        struct proto_header hdr;
        struct transport_out *o;
        uint64_t size;
        bool stored;
        int r;

        if (len > PROTO_MAX_PAYLOAD || nfds > PROTO_MAX_FDS) {
                r = -EMSGSIZE;
                goto fail;
        }
        if (nfds > 0 && !fds)
                return -EINVAL;
        for (unsigned i = 0; i < nfds; i++)
                if (fds[i] < 0) {
                        r = -EBADF;
                        goto fail;
                }
        size = (uint64_t)PROTO_HEADER_SIZE + len;
        if ((uint64_t)t->out_bytes + size > t->max_out_bytes || (uint64_t)t->out_fds + nfds > t->max_out_fds) {
                r = -ENOBUFS;
                goto fail;
        }
        o = transport_out_new(t, (size_t)size, &stored);
        if (!o) {
                r = -ENOMEM;
                goto fail;
        }

        hdr = *h;
        hdr.magic = PROTO_MAGIC;
        hdr.version = PROTO_VERSION;
        hdr.length = (uint32_t)len;
        hdr.nfds = (uint16_t)nfds;
        *o = (struct transport_out){ .len = (size_t)size, .nfds = nfds, .borrowed = borrowed && nfds > 0,
                                     .stored = stored };
        proto_header_encode(&hdr, o->data);
        if (len > 0)
                memcpy(o->data + PROTO_HEADER_SIZE, payload, len);
        for (unsigned i = 0; i < nfds; i++) {
                o->fds[i] = fds[i];
                if (!borrowed)
                        fds[i] = -1; /* consumed */
        }

        if (t->out_tail)
                t->out_tail->next = o;
        else
                t->out_head = o;
        t->out_tail = o;
        t->out_bytes += o->len;
        t->out_fds += nfds;
        t->out_borrowed += o->borrowed;
        return 0;

fail:
        if (fds && !borrowed)
                transport_close_own_fds(fds, nfds);
        return r;
}

int transport_queue(struct transport *t, const struct proto_header *h, const void *payload, size_t len,
                    int *fds, unsigned nfds)
{
        return transport_queue_how(t, h, payload, len, fds, nfds, false);
}

int transport_queue_with_fds(struct transport *t, const struct proto_header *h, const void *payload, size_t len,
                             const int *fds, unsigned nfds)
{
        return transport_queue_how(t, h, payload, len, (int *)fds, nfds, true);
}

/* Give @o's borrowed fds copies of our own. Return: 0, or negative errno (an fd left -1). */
static int transport_out_own_fds(struct transport *t, struct transport_out *o)
{
        int r = 0;

        o->borrowed = false;
        t->out_borrowed--;
        for (unsigned i = 0; i < o->nfds; i++) {
                int fd = fcntl(o->fds[i], F_DUPFD_CLOEXEC, 3);

                if (fd < 0 && r == 0)
                        r = -errno;
                o->fds[i] = fd; /* -1: the caller drops the connection, nothing closes it */
        }
        return r;
}

int transport_own_fds(struct transport *t)
{
        int r = 0;

        /* usually nothing (sent at once) or only the frame just queued: no walk of a long queue */
        if (t->out_borrowed == 1 && t->out_tail && t->out_tail->borrowed)
                return transport_out_own_fds(t, t->out_tail);
        for (struct transport_out *o = t->out_head; o && t->out_borrowed > 0; o = o->next) {
                int k;

                if (!o->borrowed)
                        continue;
                k = transport_out_own_fds(t, o);
                if (k < 0 && r == 0)
                        r = k;
        }
        return r;
}

/* Release the fds of @o, which went with a sendmsg(): the peer's now (ours closed, borrowed ones left). */
static void transport_out_fds_sent(struct transport *t, struct transport_out *o)
{
        if (!o->borrowed)
                transport_close_own_fds(o->fds, o->nfds);
        else
                t->out_borrowed--;
        o->borrowed = false;
        t->out_fds -= o->nfds;
        o->nfds = 0;
}

/* Account for @n bytes sent from the head of the queue. */
__attribute__((always_inline)) static inline void transport_advance(struct transport *t, size_t n)
{
        struct transport_out *o = t->out_head;

        /* fds travel with the first byte of their frame: they are the peer's now */
        if (n > 0 && o->nfds > 0)
                transport_out_fds_sent(t, o);
        t->out_pos += n;
        while (n > 0) {
                size_t take;

                o = t->out_head;
                assert(o);
                take = o->len - o->sent;
                if (take > n)
                        take = n;
                o->sent += take;
                t->out_bytes -= take;
                n -= take;
                if (o->sent == o->len) {
                        t->out_head = o->next;
                        if (!t->out_head)
                                t->out_tail = NULL;
                        transport_out_free(t, o);
                }
        }
}

int transport_flush(struct transport *t)
{
        unsigned budget = UINT_MAX;

        return transport_flush_fds(t, &budget);
}

/*
 * One sendmsg() of frames from the head of the queue, for a peer that ties
 * fds in order: fd-less frames and frames with fds alike, while their fds
 * fit in PROTO_MAX_FDS (one SCM_RIGHTS block, the receiver's buffer) and in
 * *@fd_budget. While frames whose fds went with an earlier call are not all
 * written (a partial write), the call carries only their bytes: the kernel
 * hands a call's fds over with its first bytes, so the receiver then holds
 * the fds of one call at most beyond its complete frames, the bound it
 * checks. Return: as transport_flush_fds(), 1 after a send.
 */
static int transport_flush_in_order(struct transport *t, unsigned *fd_budget)
{
        struct iovec iov[TRANSPORT_IOV_MAX];
        int fds[PROTO_MAX_FDS];
        struct transport_out *o, *end;
        unsigned nfds = 0;
        size_t niov = 0, bytes = 0, fds_end = 0;
        ssize_t n;

        for (o = t->out_head; o && niov < TRANSPORT_IOV_MAX; o = o->next) {
                /* fds that went before are not all written yet: their frames first, no new fds */
                if (t->out_fds_ahead_bytes > 0 && bytes >= t->out_fds_ahead_bytes)
                        break;
                if (o->nfds > 0 && (t->out_fds_ahead_bytes > 0 || nfds + o->nfds > PROTO_MAX_FDS ||
                                    nfds + o->nfds > *fd_budget))
                        break;
                for (unsigned i = 0; i < o->nfds; i++) /* PROTO_MAX_FDS at most: no memcpy call */
                        fds[nfds + i] = o->fds[i];
                nfds += o->nfds;
                iov[niov++] = (struct iovec){ .iov_base = o->data + o->sent, .iov_len = o->len - o->sent };
                bytes += o->len - o->sent;
                if (o->nfds > 0)
                        fds_end = bytes;
        }
        end = o;
        if (niov == 0)
                return -EDQUOT; /* the head's fds do not fit the budget: in order, nothing after it goes either */
        n = transport_sendmsg(t->fd, iov, niov, fds, nfds, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0)
                return (int)n;
        if (n == 0)
                return -EAGAIN;
        /* all the fds went with this call, even where it wrote only part of the bytes */
        for (o = t->out_head; o != end; o = o->next)
                if (o->nfds > 0)
                        transport_out_fds_sent(t, o);
        *fd_budget -= nfds;
        if (t->out_fds_ahead_bytes > 0)
                t->out_fds_ahead_bytes -= (size_t)n < t->out_fds_ahead_bytes ? (size_t)n : t->out_fds_ahead_bytes;
        else if ((size_t)n < fds_end)
                t->out_fds_ahead_bytes = fds_end - (size_t)n;
        transport_advance(t, (size_t)n);
        return 1;
}

/*
 * The frames queued ahead of a frame sent at once by transport_send_with_fds(), as iovecs in @iov (room for
 * TRANSPORT_IOV_MAX - 2). Return: their count, or -1 if the frame cannot go with them in one sendmsg(): fds
 * in flight or queued (their order and bounds are transport_flush_in_order()'s), a peer that does not tie fds
 * in order while any is queued, or too many.
 */
static int transport_send_ahead(const struct transport *t, struct iovec *iov, size_t *bytesp)
{
        size_t niov = 0, bytes = 0;

        if (t->out_fds > 0 || t->out_fds_ahead_bytes > 0 || (t->out_head && !t->out_fds_in_order))
                return -1;
        for (const struct transport_out *o = t->out_head; o; o = o->next) {
                if (niov == TRANSPORT_IOV_MAX - 2)
                        return -1;
                iov[niov++] = (struct iovec){ .iov_base = (void *)(o->data + o->sent), .iov_len = o->len - o->sent };
                bytes += o->len - o->sent;
        }
        *bytesp = bytes;
        return (int)niov;
}

int transport_send_with_fds(struct transport *t, const struct proto_header *h, const void *payload, size_t len,
                            const int *fds, unsigned nfds, unsigned *fd_budget, int *flushp)
{
        struct iovec iov[TRANSPORT_IOV_MAX];
        uint8_t head[PROTO_HEADER_SIZE];
        struct proto_header hdr;
        size_t ahead, size = PROTO_HEADER_SIZE + len;
        int niov, r;
        ssize_t n;

        niov = len <= PROTO_MAX_PAYLOAD && nfds > 0 && nfds <= PROTO_MAX_FDS && nfds <= *fd_budget &&
                               (uint64_t)t->out_bytes + size <= t->max_out_bytes &&
                               (uint64_t)t->out_fds + nfds <= t->max_out_fds
                       ? transport_send_ahead(t, iov, &ahead)
                       : -1;
        for (unsigned i = 0; niov >= 0 && i < nfds; i++)
                if (fds[i] < 0)
                        niov = -1; /* refused below, as transport_queue_with_fds() does */
        if (niov < 0) {
                r = transport_queue_how(t, h, payload, len, (int *)fds, nfds, true);
                if (r < 0)
                        return r;
                *flushp = transport_flush_fds(t, fd_budget);
                return 0;
        }
        hdr = *h;
        hdr.magic = PROTO_MAGIC;
        hdr.version = PROTO_VERSION;
        hdr.length = (uint32_t)len;
        hdr.nfds = (uint16_t)nfds;
        proto_header_encode(&hdr, head);
        iov[niov++] = (struct iovec){ .iov_base = head, .iov_len = PROTO_HEADER_SIZE };
        if (len > 0)
                iov[niov++] = (struct iovec){ .iov_base = (void *)payload, .iov_len = len };
        n = transport_sendmsg(t->fd, iov, (size_t)niov, fds, nfds, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n <= 0) {
                /* nothing went: queued as transport_queue_with_fds() would, for the caller's later flush */
                *flushp = n < 0 ? (int)n : -EAGAIN;
                return transport_queue_how(t, h, payload, len, (int *)fds, nfds, true);
        }
        /* its fds went with this call, whatever part of the bytes it wrote */
        *fd_budget -= nfds;
        *flushp = 0;
        if ((size_t)n == ahead + size) {
                if (ahead > 0)
                        transport_advance(t, ahead);
                t->out_pos += size;
                return 0;
        }
        /* a partial write: the rest is queued, its fds gone, and no new fds go until it is written */
        r = transport_queue_how(t, h, payload, len, (int *)fds, nfds, true);
        if (r < 0)
                return r; /* -ENOMEM only (the bounds were checked above): its fds went, *fd_budget says so */
        transport_out_fds_sent(t, t->out_tail);
        if (t->out_fds_in_order) /* else a frame with fds goes alone from its first byte: nothing to hold back */
                t->out_fds_ahead_bytes = ahead + size - (size_t)n;
        transport_advance(t, (size_t)n);
        *flushp = -EAGAIN;
        return 0;
}

int transport_flush_fds(struct transport *t, unsigned *fd_budget)
{
        while (t->out_head && t->out_fds_in_order) {
                int r = transport_flush_in_order(t, fd_budget);

                if (r <= 0)
                        return r;
        }
        while (t->out_head) {
                struct iovec iov[TRANSPORT_IOV_MAX];
                struct transport_out *o = t->out_head;
                size_t niov = 0;
                ssize_t n;

                if (o->nfds > 0) {
                        /* alone, from its first byte, with all its fds */
                        if (o->nfds > *fd_budget)
                                return -EDQUOT; /* in order: nothing after it goes either */
                        assert(o->sent == 0);
                        iov[niov++] = (struct iovec){ .iov_base = o->data, .iov_len = o->len };
                } else {
                        for (; o && o->nfds == 0 && niov < TRANSPORT_IOV_MAX; o = o->next)
                                iov[niov++] = (struct iovec){ .iov_base = o->data + o->sent,
                                                              .iov_len = o->len - o->sent };
                }
                /* the head's fds: all of them with its first byte, or none (fd-less frames) */
                n = transport_sendmsg(t->fd, iov, niov, t->out_head->fds, t->out_head->nfds,
                                      MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0)
                        return (int)n;
                if (n == 0)
                        return -EAGAIN; /* cannot happen for non-empty iovecs; do not spin */
                if (t->out_head->nfds > 0)
                        *fd_budget -= t->out_head->nfds; /* its first byte went: so did its fds */
                transport_advance(t, (size_t)n);
        }
        return 0;
}

bool transport_has_output(const struct transport *t)
{
        return t->out_head != NULL;
}

static int transport_wait_until(struct transport *t, short events, uint64_t deadline)
{
        struct pollfd p = { .fd = t->fd, .events = events };
        int r;

        for (;;) {
                int timeout = -1;

                if (deadline != UINT64_MAX) {
                        uint64_t now = transport_now_ms();
                        uint64_t left = now >= deadline ? 0 : deadline - now;

                        timeout = left > INT32_MAX ? INT32_MAX : (int)left;
                }
                r = poll(&p, 1, timeout);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0) {
                        if (deadline != UINT64_MAX && transport_now_ms() < deadline)
                                continue; /* woke early: clamped timeout */
                        return -ETIMEDOUT;
                }
                if (p.revents & POLLNVAL)
                        return -EBADF;
                /* POLLHUP/POLLERR: the next read or flush reports what happened */
                return 0;
        }
}

int transport_wait(struct transport *t, short events, int timeout_ms)
{
        return transport_wait_until(t, events, transport_deadline(timeout_ms));
}

/*
 * Send the fd-less frames @msgs[@n] (nothing queued) with one sendmsg() from the caller's memory; queue what it
 * leaves unsent, the frame it cut with its sent bytes marked, or, if it fails, every frame: the queue then holds
 * what transport_queue() and a failed transport_flush() would have left. Return: 0 (sent, or the rest queued);
 * -EMSGSIZE (nothing sent or queued); -EPIPE, -ECONNRESET, other negative errno from sendmsg (nothing sent);
 * -ENOMEM or -ENOBUFS if what is left cannot be queued.
 */
__attribute__((always_inline)) static inline int transport_send_direct(struct transport *t, const struct transport_msg *msgs, unsigned n)
{
        uint8_t hdrs[TRANSPORT_SENDV_MAX][PROTO_HEADER_SIZE];
        struct iovec iov[2 * TRANSPORT_SENDV_MAX];
        size_t niov = 0, total = 0;
        ssize_t sent;
        int r, err = 0;

        if (n > TRANSPORT_SENDV_MAX) /* the callers' bound, said here too (it also bounds the compiler's loop copies) */
                return -EINVAL;
        for (unsigned i = 0; i < n; i++) {
                struct proto_header hdr = *msgs[i].h;

                if (msgs[i].len > PROTO_MAX_PAYLOAD)
                        return -EMSGSIZE;
                total += PROTO_HEADER_SIZE + msgs[i].len;
                hdr.magic = PROTO_MAGIC;
                hdr.version = PROTO_VERSION;
                hdr.length = (uint32_t)msgs[i].len;
                hdr.nfds = 0;
                proto_header_encode(&hdr, hdrs[i]);
                iov[niov++] = (struct iovec){ .iov_base = hdrs[i], .iov_len = PROTO_HEADER_SIZE };
                if (msgs[i].len > 0)
                        iov[niov++] = (struct iovec){ .iov_base = (void *)msgs[i].payload, .iov_len = msgs[i].len };
        }
        sent = transport_sendmsg(t->fd, iov, niov, NULL, 0, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0) {
                err = sent == -EAGAIN ? 0 : (int)sent;
                sent = 0;
        }
        t->out_pos += (size_t)sent;
        if ((size_t)sent == total)
                return 0; /* usually all went: nothing to queue */
        for (unsigned i = 0; i < n; i++) {
                size_t len = PROTO_HEADER_SIZE + msgs[i].len;

                if ((size_t)sent >= len) {
                        sent -= (ssize_t)len;
                        continue;
                }
                r = transport_queue(t, msgs[i].h, msgs[i].payload, msgs[i].len, NULL, 0);
                if (r < 0)
                        return r;
                t->out_tail->sent = (size_t)sent;
                t->out_bytes -= (size_t)sent;
                sent = 0;
        }
        return err;
}

/*
 * transport_sendv()'s body, inlined in transport_sendv_blocking() too: the cold path's request goes through it once
 * per connection, and as an out-of-line call (two callers) it cost libiomem about 70 instructions per cold connection.
 */
__attribute__((always_inline)) static inline int transport_sendv_now(struct transport *t, const struct transport_msg *msgs,
                                                                     unsigned n, int *fds, unsigned nfds)
{
        int r;

        if (n == 0 || n > TRANSPORT_SENDV_MAX) {
                if (fds)
                        transport_close_own_fds(fds, nfds);
                return -EINVAL;
        }
        if (nfds == 0 && !t->out_head)
                return transport_send_direct(t, msgs, n);
        /* fds, or frames queued before: through the queue, whose order and fd rules hold for all */
        for (unsigned i = 0; i + 1 < n; i++) {
                r = transport_queue(t, msgs[i].h, msgs[i].payload, msgs[i].len, NULL, 0);
                if (r < 0) {
                        if (fds)
                                transport_close_own_fds(fds, nfds);
                        return r;
                }
        }
        return transport_queue(t, msgs[n - 1].h, msgs[n - 1].payload, msgs[n - 1].len, fds, nfds);
}

int transport_sendv(struct transport *t, const struct transport_msg *msgs, unsigned n, int *fds, unsigned nfds)
{
        return transport_sendv_now(t, msgs, n, fds, nfds);
}

bool transport_unqueue_tail(struct transport *t, uint64_t end)
{
        struct transport_out *o = t->out_tail, **pp;

        if (!o || o->sent > 0 || t->out_pos + t->out_bytes != end)
                return false;
        /* in order, a frame's fds may go with an earlier sendmsg() than its first byte: then it has begun */
        if (t->out_fds_ahead_bytes > t->out_bytes - o->len)
                return false;
        for (pp = &t->out_head; *pp != o; pp = &(*pp)->next)
                ;
        *pp = NULL;
        t->out_tail = NULL;
        for (struct transport_out *q = t->out_head; q; q = q->next)
                t->out_tail = q;
        t->out_bytes -= o->len;
        if (o->nfds > 0) {
                if (!o->borrowed)
                        transport_close_own_fds(o->fds, o->nfds);
                else
                        t->out_borrowed--;
                t->out_fds -= o->nfds;
        }
        transport_out_free(t, o);
        return true;
}

int transport_sendv_blocking(struct transport *t, const struct transport_msg *msgs, unsigned n, int *fds,
                             unsigned nfds, int timeout_ms)
{
        uint64_t deadline = transport_deadline(timeout_ms);
        int r;

        r = transport_sendv_now(t, msgs, n, fds, nfds);
        if (r < 0 || !t->out_head)
                return r;
        for (;;) {
                r = transport_flush(t);
                if (r != -EAGAIN)
                        return r;
                r = transport_wait_until(t, POLLOUT, deadline);
                if (r < 0)
                        return r;
        }
}

int transport_send_blocking(struct transport *t, const struct proto_header *h, const void *payload, size_t len,
                            int *fds, unsigned nfds, int timeout_ms)
{
        const struct transport_msg m = { .h = h, .payload = payload, .len = len };

        return transport_sendv_blocking(t, &m, 1, fds, nfds, timeout_ms);
}

int transport_recv_blocking(struct transport *t, struct transport_frame *f, int timeout_ms)
{
        uint64_t deadline = transport_deadline(timeout_ms);
        int r;

        for (;;) {
                r = transport_next_frame(t, f);
                if (r != 0)
                        return r;
                if (t->eof)
                        return -EPIPE;
                /*
                 * Without a deadline, on a blocking socket, a plain recvmsg waits for
                 * the reply itself: no recvmsg that says EAGAIN, no poll. A socket
                 * made non-blocking by its owner says EAGAIN and we poll as before.
                 */
                r = transport_read_flags(t, deadline == UINT64_MAX ? 0 : MSG_DONTWAIT);
                if (r == -EAGAIN) {
                        r = transport_wait_until(t, POLLIN, deadline);
                        if (r < 0)
                                return r;
                } else if (r < 0) {
                        return r;
                }
        }
}

int transport_send_fd(int sock, const void *buf, size_t len, int fd)
{
        struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
        ssize_t n;

        /* a blocking socket (a keeper's): no MSG_DONTWAIT */
        n = transport_sendmsg(sock, &iov, 1, &fd, fd >= 0 ? 1 : 0, MSG_NOSIGNAL);
        if (n < 0)
                return (int)n;
        return (size_t)n == len ? 0 : -EIO;
}

int transport_recv_fd(int sock, void *buf, size_t len, int *fdp)
{
        union {
                struct cmsghdr align;
                uint8_t buf[TRANSPORT_CMSG_SIZE];
        } ctrl;
        int fds[TRANSPORT_CMSG_SIZE / sizeof(int)];
        struct iovec iov = { .iov_base = buf, .iov_len = len };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl.buf,
                              .msg_controllen = sizeof(ctrl.buf) };
        unsigned nfds = 0;
        ssize_t n;
        int r;

        *fdp = -1;
        memset(&ctrl, 0, sizeof(ctrl));
        do
                n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        /* fds from a keeper, not from a client: no uid to count them to (UINT32_MAX is nobody's) */
        r = transport_collect_fds(&msg, fds, sizeof(fds) / sizeof(fds[0]), &nfds, UINT32_MAX);
        if (r >= 0 && nfds > 1)
                r = -EPROTO;
        if (r >= 0 && (n == 0 ? nfds > 0 : ((size_t)n != len || (msg.msg_flags & MSG_TRUNC))))
                r = -EBADMSG;
        /*
         * The whole record came, but not its fd: the kernel could not install it
         * here (a full fd table). The stream is in step: the receiver may refuse
         * that one record and go on.
         */
        if (r == -EPROTO && (msg.msg_flags & MSG_CTRUNC) && nfds == 0 && n > 0 && (size_t)n == len &&
            !(msg.msg_flags & MSG_TRUNC))
                r = -EMFILE;
        if (r < 0 || n == 0) {
                transport_close_fds(fds, nfds, UINT32_MAX);
                return r < 0 ? r : 0;
        }
        if (nfds == 1)
                *fdp = fds[0];
        return 1;
}
