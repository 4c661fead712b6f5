/* conn-internal: what conn.c shares with conn-access.c (the connection's state, reply helpers). Not an API. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "access.h"
#include "conn.h"
#include "proto.h"
#include "regtab.h"
#include "transport.h"

struct conn_wait;

struct conn {
        struct conn_ctx *ctx;
        int fd; /* owned */
        struct transport transport;
        bool transport_ready;
        uid_t uid;
        gid_t gid;
        pid_t pid;
        gid_t *groups; /* SO_PEERGROUPS, may be NULL */
        size_t ngroups;
        unsigned refusals; /* logged so far (CONN_MAX_LOGGED_REFUSALS) */
        uint64_t fds_charged; /* queued fds counted in the uid's quota usage */
        bool hello_done;
        bool closing; /* a fatal error reply is queued: read nothing more, free once sent */
        bool throttled; /* replies pile up: parse no more requests until they drain */
        bool dead;
        uint64_t handshake_deadline_ns; /* 0 = none */
        uint64_t close_deadline_ns;
        struct conn_wait *waits;
        unsigned nwaits;
        struct region *leases; /* through region.lease_next */
        void *userdata;
};

/* ---- conn.c ------------------------------------------------------------- */

/* Return: CLOCK_REALTIME in nanoseconds. */
uint64_t conn_realtime_ns(void);

struct transport_frame;
int conn_region_publish(struct conn *c, const struct transport_frame *f, struct region *r, bool lease,
                        const char *what);
void conn_region_announce(struct conn *c, struct region *r);

/* conn_lease_link() - @r goes away when @c is freed. Return: nothing. */
void conn_lease_link(struct conn *c, struct region *r);

/* Return: true if replacing @old_size bytes by @new_size would pass --max-bytes (no wrap). */
bool conn_over_bytes(const struct conn_ctx *ctx, uint64_t old_size, uint64_t new_size);

/* conn_reply_raw() - queue a reply; @fds consumed. Return: 0, or a negative errno after dropping @c. */
int conn_reply_raw(struct conn *c, uint16_t opcode, uint32_t id, uint8_t flags, const void *payload, size_t len,
                   int *fds, unsigned nfds);

/* conn_reply_error() - queue an error reply. Return: as conn_reply_raw(). */
int conn_reply_error(struct conn *c, uint16_t opcode, uint32_t id, int error, const char *message);

/* conn_reply_encoded() - queue the reply an encoder wrote (@len < 0: a daemon bug, @c dropped). Return: as conn_reply_raw(). */
int conn_reply_encoded(struct conn *c, const struct proto_header *req, int len, const uint8_t *buf, int *fds,
                       unsigned nfds);

/* ---- conn-access.c ------------------------------------------------------ */

/* conn_refuse() - one error reply (HELLO, id 0) without waiting, then close @fd (consumed). Return: nothing. */
void conn_refuse(int fd, int error, const char *message);

/* conn_peer_groups() - SO_PEERGROUPS of @fd. Return: 0 with *groupsp (malloc'd, may be NULL) and *np; negative errno. */
int conn_peer_groups(int fd, gid_t **groupsp, size_t *np);

/* Return: @c's identity for access.h. */
struct access_cred conn_cred(const struct conn *c);

/* conn_log_refusal() - log who was refused @what on @r (at most CONN_MAX_LOGGED_REFUSALS per connection). Return: nothing. */
void conn_log_refusal(const struct conn *c, const char *what, const struct region *r);

/* conn_access() - conn_check_access(), logging refusals only if @log. Return: 0 or -EACCES. */
int conn_access(const struct conn *c, const struct region *r, enum conn_access what, bool log);

/*
 * conn_quota_check() - may @uid (whose limits come from @c's primary gid if
 * @uid is @c's peer, else from its [uid] section and defaults) take these
 * amounts more? Return: 0 or -EDQUOT.
 */
int conn_quota_check(const struct conn *c, uint32_t uid, uint64_t bytes, uint64_t regions, uint64_t fds);

/* Request handlers: Return: 0, or a negative errno when @c is dead. */
int conn_handle_chmod(struct conn *c, const struct transport_frame *f);
int conn_handle_chown(struct conn *c, const struct transport_frame *f);
int conn_handle_quota(struct conn *c, const struct transport_frame *f);
int conn_handle_register(struct conn *c, struct transport_frame *f);
