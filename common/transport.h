/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* transport: framed stream over a Unix socket, with fds tied to frames (SCM_RIGHTS). */
#pragma once

/*
 * Shared by iomemd (non-blocking, driven by an event loop) and libiomem
 * (blocking, through transport_wait()). One struct transport per connection.
 *
 * Rules on the wire (docs/protocol.md, "File descriptors"):
 *   - a frame that carries fds is sent by one sendmsg() that starts at the
 *     frame's first byte, carries all its fds, and holds no other frame's bytes;
 *   - the receiver ties fds to the frame holding the last byte of the
 *     recvmsg() they arrived with. A frame whose tied fds differ in number
 *     from its header's nfds is a protocol violation (D1-D4).
 *
 * Fds received are close-on-exec (MSG_CMSG_CLOEXEC). MSG_CTRUNC, a control
 * message other than one SCM_RIGHTS block, or more than PROTO_MAX_FDS fds in
 * one recvmsg is a violation: everything received is closed (D5, D6).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

#define TRANSPORT_IN_SIZE (PROTO_HEADER_SIZE + PROTO_MAX_PAYLOAD) /* the input buffer at most: one whole frame */
/*
 * The input buffer at first: a cold connection's frames fit (HELLO and a
 * request, their replies), and a buffer this small comes from the allocator's
 * per-thread cache, where a 64 KiB one was split from and merged back into the
 * heap on every connection. It doubles when a read fills it, and grows at once
 * to the size of a frame that does not fit, up to TRANSPORT_IN_SIZE.
 */
#define TRANSPORT_IN_MIN 1024u
#define TRANSPORT_DEFAULT_MAX_OUT_BYTES (4u * 1024u * 1024u)
#define TRANSPORT_DEFAULT_MAX_OUT_FDS 64u
/*
 * Received fds not yet claimed by a complete frame. Callers parse every
 * complete frame after each transport_read(), so a well-behaved peer never
 * gets past one frame's worth from the previous read plus one from this one.
 */
#define TRANSPORT_MAX_HELD_FDS (2u * PROTO_MAX_FDS)

/* Fds received with one recvmsg(), until the frames they belong to claim them. */
struct transport_fdbatch {
        struct transport_fdbatch *next;
        uint64_t end; /* stream offset one past the last byte received with these fds */
        unsigned nfds;
        bool from_storage; /* the transport_storage batch: given back to t->spare, not freed */
        int fds[PROTO_MAX_FDS];
};

struct transport_out; /* internal */

/*
 * What a transport may use before it allocates (transport_init_storage()): enough for a short-lived
 * connection's few small frames (libiomem's: HELLO and one request; their replies, one of them with an fd).
 */
#define TRANSPORT_STORAGE_IN 176u
struct transport_storage {
        struct transport_fdbatch batch;   /* the first fds received */
        uint8_t in[TRANSPORT_STORAGE_IN]; /* the first input buffer */
};

/*
 * Room for the first frames queued (transport_use_out_storage()): a reply or two to a short-lived connection's
 * requests (iomemd's to HELLO and one OPEN or CREATE, with their bookkeeping), built here instead of in a block of
 * their own each. Used again whenever the queue empties, as it does once each batch of replies is sent.
 */
#define TRANSPORT_OUT_STORAGE 256u
struct transport_out_storage {
        _Alignas(8) uint8_t bytes[TRANSPORT_OUT_STORAGE];
};

struct transport {
        int fd; /* the socket, borrowed: transport_deinit() does not close it */
        uint32_t fd_owner; /* who sends us fds (the peer's uid), passed to the fd closer */

        /* input */
        uint8_t *in;     /* in_cap bytes */
        size_t in_cap;   /* TRANSPORT_IN_MIN up to TRANSPORT_IN_SIZE */
        size_t in_start; /* first unparsed byte */
        size_t in_end;   /* one past the last received byte */
        uint64_t in_pos; /* stream offset of in[0] */
        struct transport_fdbatch *batches; /* fds received, oldest first */
        struct transport_fdbatch *batches_tail;
        unsigned in_fds; /* fds held in batches */
        bool in_storage; /* @in is the caller's (transport_init_storage()): copied out, never freed, to grow */
        bool eof;
        bool in_filled; /* the last read filled the buffer: the socket may hold more */
        /*
         * Tie received fds to frames in stream order by their nfds
         * (docs/protocol.md section 5, HELLO flag FDS_IN_ORDER), instead
         * of to the frame holding the last byte of their recvmsg().
         */
        bool in_fds_in_order;
        struct transport_fdbatch *spare; /* a batch to use before allocating one (transport_init_storage()) */

        /* output */
        struct transport_out *out_head;
        struct transport_out *out_tail;
        uint8_t *out_store;     /* transport_use_out_storage()'s, or NULL: queued frames are built here first */
        size_t out_store_used;  /* bytes of @out_store that queued frames use, from its start; 0 when none is queued */
        size_t out_bytes; /* queued, not yet sent */
        uint64_t out_pos; /* bytes sent so far: the stream offset of the queue's first unsent byte */
        unsigned out_borrowed; /* queued frames whose fds are borrowed (transport_queue_with_fds()) */
        unsigned out_fds;
        size_t max_out_bytes;
        unsigned max_out_fds;
        /*
         * The peer ties fds to frames in order (it said FDS_IN_ORDER): frames
         * with fds may share a sendmsg() with others, up to PROTO_MAX_FDS fds
         * in one, each sent with the call that carries its frame's first byte
         * or an earlier one.
         */
        bool out_fds_in_order;
        /*
         * In order: queued bytes, from the head, up to the end of the last
         * frame whose fds went with an earlier sendmsg(). No call carries new
         * fds before they are written, so that a receiver holds the fds of
         * one sendmsg() at most (PROTO_MAX_FDS) beyond its complete frames.
         */
        size_t out_fds_ahead_bytes;
};

/* A received frame. The caller owns fds[] and payload (free with transport_frame_deinit()). */
struct transport_frame {
        struct proto_header hdr;
        /* hdr.length bytes, malloc'd, or the transport's own with payload_borrowed; NULL if length is 0 */
        uint8_t *payload;
        bool payload_borrowed; /* transport_next_frame_borrowed(): not freed by transport_frame_deinit() */
        int fds[PROTO_MAX_FDS];
        unsigned nfds;
        uint32_t fd_owner; /* the transport's fd_owner, for closing fds[] */
};

/*
 * transport_init() - set up a transport over the socket @fd (borrowed).
 * @max_out_bytes, @max_out_fds: bounds of the output queue (F8, D10); 0 = defaults.
 * Return: 0 or -ENOMEM.
 */
int transport_init(struct transport *t, int fd, size_t max_out_bytes, unsigned max_out_fds);

/*
 * transport_init_storage() - transport_init() that uses @storage (borrowed: it must outlive the transport, until
 * transport_deinit()) for its first input buffer and its first batch of received fds, and allocates only when
 * they do not suffice: a short-lived connection (libiomem's connect, one request, disconnect) allocates nothing.
 * Return: 0.
 */
int transport_init_storage(struct transport *t, int fd, size_t max_out_bytes, unsigned max_out_fds,
                           struct transport_storage *storage);

/*
 * transport_use_out_storage() - build queued frames in @storage (borrowed: it must outlive the transport, until
 * transport_deinit()) while they fit, rather than allocate each: it holds the frames queued since the queue was
 * last empty, and frames that do not fit are allocated as usual, behind them in the same queue (order, fds and
 * bounds are the same either way). Call it on an empty queue, once. Return: nothing.
 */
void transport_use_out_storage(struct transport *t, struct transport_out_storage *storage);

/* Free buffers and close every fd still queued in either direction. NULL-safe. */
void transport_deinit(struct transport *t);

/*
 * transport_release() - transport_deinit() of a transport that is not used again before its memory is freed or
 * set up anew by transport_init*(): the same, without resetting *@t (144 bytes: a short-lived client's, freed
 * at once). Not NULL-safe.
 */
void transport_release(struct transport *t);

/*
 * transport_read() - one recvmsg(MSG_DONTWAIT|MSG_CMSG_CLOEXEC) into the input buffer.
 * Return: bytes read (> 0); 0 at end of stream (t->eof set); -EAGAIN;
 * -EPROTO for a control-message violation (D5, D6), fds with no bytes, or
 * more than TRANSPORT_MAX_HELD_FDS unclaimed fds (every held fd closed);
 * -ENOBUFS if the input buffer is full (a caller bug: parse frames first);
 * -ENOMEM (drop the peer); other negative errno from recvmsg.
 * transport_read_filled() then says whether the read filled the buffer's
 * room (the socket may hold more; a shorter read most likely emptied it).
 */
int transport_read(struct transport *t);

static inline bool transport_read_filled(const struct transport *t)
{
        return t->in_filled;
}

/*
 * transport_next_frame() - take the next complete frame out of the input buffer.
 * Return: 1 with *f filled (caller owns it); 0 if no complete frame is
 * buffered yet; -EBADMSG/-EMSGSIZE for a bad header (F1-F3, drop);
 * -EPROTO for fds not matching the header's nfds (D1-D4, drop; fds closed);
 * -EPIPE if the stream ended inside a frame (F4); -ENOMEM.
 * A header with an unknown version or opcode is returned as a frame: the
 * caller answers it with an error reply (F5).
 */
int transport_next_frame(struct transport *t, struct transport_frame *f);

/*
 * transport_next_frame_borrowed() - transport_next_frame() without a copy of
 * the payload: f->payload points into @t's input buffer and stays valid until
 * the next transport_read() on @t (which may move or grow the buffer), for a
 * caller that handles each frame before reading again (iomemd). The fds are
 * the caller's as with transport_next_frame(). Return: as transport_next_frame().
 */
int transport_next_frame_borrowed(struct transport *t, struct transport_frame *f);

/*
 * transport_set_fd_closer() - how this process closes the fds that peers sent
 * (received fds not yet handed out, and frames' fds): @fn, told the
 * transport's fd_owner, or close() when NULL. Fds queued for sending are ours
 * and closed with close(). The daemon passes a closer that cannot block its
 * event loop (daemon/closer.h). Return: nothing.
 */
void transport_set_fd_closer(void (*fn)(int fd, uint32_t owner));

/* Close fds, free the payload, reset *f. NULL-safe. */
void transport_frame_deinit(struct transport_frame *f);

/*
 * transport_queue() - append a frame to the output queue.
 * The header's magic, version, length and nfds are filled in here from the
 * arguments. @fds are consumed: they are closed once sent, or by
 * transport_deinit(), or here on error.
 * Return: 0; -ENOBUFS if the queue bounds would be exceeded (the caller
 * should drop the peer); -EMSGSIZE if @len or @nfds exceed the protocol
 * limits; -EBADF for a negative fd; -EINVAL for @nfds > 0 without @fds;
 * -ENOMEM.
 */
int transport_queue(struct transport *t, const struct proto_header *h, const void *payload, size_t len,
                    int *fds, unsigned nfds);

/*
 * transport_queue_with_fds() - transport_queue() with @fds borrowed: the
 * caller keeps them open, and must call transport_own_fds() before it
 * may close them (after trying transport_flush(): a frame whose first byte
 * went needs nothing more, its fds are the peer's). Spares a dup and a
 * close for a reply sent at once. Return: as transport_queue(); nothing is
 * closed on error.
 */
int transport_queue_with_fds(struct transport *t, const struct proto_header *h, const void *payload, size_t len,
                             const int *fds, unsigned nfds);

/*
 * transport_own_fds() - replace the borrowed fds of every frame still queued
 * by copies of our own (F_DUPFD_CLOEXEC), closed once sent as usual.
 * Return: 0; negative errno from fcntl (EMFILE...): the queue then holds a
 * frame without its fds, and the caller must drop the connection.
 */
int transport_own_fds(struct transport *t);

/*
 * transport_flush() - send queued frames with sendmsg(MSG_NOSIGNAL|MSG_DONTWAIT).
 * Return: 0 when the queue is empty; -EAGAIN if bytes remain (wait for
 * POLLOUT); -EPIPE/-ECONNRESET if the peer is gone; other negative errno.
 */
int transport_flush(struct transport *t);

/*
 * transport_flush_fds() - transport_flush(), sending frames that carry fds
 * only while their fds fit in *@fd_budget (decreased by what is sent).
 * Return: as transport_flush(); -EDQUOT if it stopped at a frame whose fds
 * do not fit (frames after it wait too: order is kept).
 */
int transport_flush_fds(struct transport *t, unsigned *fd_budget);

/*
 * transport_send_with_fds() - transport_queue_with_fds() then transport_flush_fds(@fd_budget), in one: when the
 * frame may go out with the queued frames in one sendmsg() (no fds queued or in flight ahead of it, a peer that
 * ties fds in order if any frame is queued, @nfds > 0 within *@fd_budget), it is sent from @payload without being
 * queued; only what the socket did not take is queued (its fds already sent with the call). Otherwise, or if
 * nothing went, it is queued with @fds borrowed, as transport_queue_with_fds(): the caller then calls
 * transport_own_fds() before it closes them. *@fd_budget is decreased by the fds sent, on error too.
 * Return: as transport_queue_with_fds(), with *@flushp set (on success) to what transport_flush_fds() would have
 * returned. On error nothing is queued, and nothing sent except in one case: -ENOMEM queueing the rest of a frame
 * cut by a full socket, whose fds and first bytes went (*@fd_budget says so); the caller must drop the peer.
 */
int transport_send_with_fds(struct transport *t, const struct proto_header *h, const void *payload, size_t len,
                            const int *fds, unsigned nfds, unsigned *fd_budget, int *flushp);

/* Return: true if output is queued. */
bool transport_has_output(const struct transport *t);

/*
 * transport_wait() - poll the socket for @events (POLLIN/POLLOUT) for up to
 * @timeout_ms (-1 = forever), retrying on EINTR. For blocking clients.
 * Return: 0 when ready; -ETIMEDOUT; negative errno.
 */
int transport_wait(struct transport *t, short events, int timeout_ms);

/*
 * transport_send_blocking() / transport_recv_blocking() -
 * convenience for blocking clients: queue + flush until sent; read until a
 * whole frame is buffered. Return as above (recv: 1 with a frame); -ETIMEDOUT
 * after @timeout_ms; recv: -EPIPE at end of stream, even between frames.
 */
int transport_send_blocking(struct transport *t, const struct proto_header *h, const void *payload, size_t len,
                            int *fds, unsigned nfds, int timeout_ms);

/* One frame for transport_sendv_blocking(): a header (magic, version, length and nfds filled in) and a payload. */
struct transport_msg {
        const struct proto_header *h;
        const void *payload;
        size_t len;
};

#define TRANSPORT_SENDV_MAX 4 /* frames per transport_sendv_blocking() */

/*
 * transport_sendv_blocking() - transport_send_blocking() of @n frames (at most TRANSPORT_SENDV_MAX) in order,
 * @fds (consumed) going with the last. With nothing queued and no fds, the frames go with one sendmsg() from the
 * caller's memory, and only what it leaves unsent is queued (copied): no allocation in the usual case.
 * Return: as transport_send_blocking(); -EINVAL for @n 0 or above TRANSPORT_SENDV_MAX (fds closed).
 */
int transport_sendv_blocking(struct transport *t, const struct transport_msg *msgs, unsigned n, int *fds,
                             unsigned nfds, int timeout_ms);

/*
 * transport_sendv() - transport_sendv_blocking() without the wait: the frames are sent as far as the socket takes
 * them now, the rest queued (transport_has_output(); transport_flush() sends it). Return: 0; as
 * transport_sendv_blocking() otherwise (nothing queued, fds closed).
 */
int transport_sendv(struct transport *t, const struct transport_msg *msgs, unsigned n, int *fds, unsigned nfds);

/*
 * transport_unqueue_tail() - take back the last queued frame, if the queue ends at stream offset @end (no frame
 * was queued after the caller's) and nothing of that frame went out (no byte, no fd): the peer never sees it.
 * Its own fds are closed. Return: true if it was taken back; false (nothing changed) otherwise.
 */
bool transport_unqueue_tail(struct transport *t, uint64_t end);
int transport_recv_blocking(struct transport *t, struct transport_frame *f, int timeout_ms);

/*
 * Records with at most one fd, for a private channel between two processes
 * that speak no frames (iomemd and its fd keepers, over SOCK_SEQPACKET): the
 * same rules as the stream above, without the framing.
 *
 * transport_send_fd() - one blocking sendmsg(MSG_NOSIGNAL) of the @len bytes
 * at @buf with @fd (borrowed: the caller still owns it; -1 for none) as one
 * SCM_RIGHTS block. EINTR is retried; other errors, transient ones included
 * (ENOMEM, ENOBUFS, ETOOMANYREFS), are the caller's to retry.
 * Return: 0 once all @len bytes went; -EIO on a short send; sendmsg()'s
 * negative errno (nothing was sent).
 */
int transport_send_fd(int sock, const void *buf, size_t len, int fd);

/*
 * transport_recv_fd() - one blocking recvmsg(MSG_CMSG_CLOEXEC) of a record of
 * exactly @len bytes into @buf, with at most one fd. EINTR is retried.
 * Return: 1 with the record and *@fdp (received, owned by the caller, close-
 * on-exec; -1 if none); 0 at end of stream; -EBADMSG for a record of another
 * size (or cut short: MSG_TRUNC); -EPROTO for control data the stream would
 * refuse too (MSG_CTRUNC, more than one fd or block, anything but
 * SCM_RIGHTS), except -EMFILE for a whole record whose one fd the kernel
 * could not install (a full fd table: @buf holds the record, the stream is
 * in step). On every error *@fdp is -1 and whatever arrived is closed.
 * Otherwise recvmsg()'s negative errno (-EAGAIN after SO_RCVTIMEO).
 */
int transport_recv_fd(int sock, void *buf, size_t len, int *fdp);
