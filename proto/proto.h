/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* proto: the iomemd wire format (frame header, opcodes, messages), pure encode/decode. */
#pragma once

/*
 * Everything here is a pure function over caller-provided byte buffers: no
 * syscalls, no allocation, no global state. docs/protocol.md is the normative
 * description; this header mirrors it.
 *
 * All integers are little-endian on the wire. Decoders check the exact shape
 * of a payload (length, string terminators, enum ranges) and return a
 * negative errno on any mismatch. Decoded strings point into the decoded
 * buffer: they are valid as long as that buffer is.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_MAGIC 0x444D4F49u /* the bytes "IOMD" */
#define PROTO_VERSION 1
#define PROTO_HEADER_SIZE 20
#define PROTO_MAX_PAYLOAD (64u * 1024u)
#define PROTO_MAX_FDS 4           /* per frame */
#define PROTO_NAME_MAX 255        /* bytes, not counting the NUL */
#define PROTO_MESSAGE_MAX 1024    /* error message bytes, not counting the NUL */
#define PROTO_VERSION_STRING_MAX 64

/* header flags */
#define PROTO_FLAG_REPLY 0x01u
#define PROTO_FLAG_ERROR 0x02u /* only with REPLY: payload is struct proto_error */
#define PROTO_FLAGS_KNOWN (PROTO_FLAG_REPLY | PROTO_FLAG_ERROR)

enum proto_opcode {
        PROTO_OP_HELLO = 0x0001,
        PROTO_OP_PING = 0x0002,
        PROTO_OP_STATUS = 0x0003,
        PROTO_OP_METRICS = 0x0004,
        PROTO_OP_CREATE = 0x0010,
        PROTO_OP_OPEN = 0x0011,
        PROTO_OP_RESIZE = 0x0012,
        PROTO_OP_SEAL = 0x0013,
        PROTO_OP_STAT = 0x0014,
        PROTO_OP_LIST = 0x0015,
        PROTO_OP_DELETE = 0x0016,
        PROTO_OP_CHMOD = 0x0100,
        PROTO_OP_CHOWN = 0x0101,
        PROTO_OP_QUOTA = 0x0102,
        PROTO_OP_REGISTER = 0x0200,
        /* watching and publishing (only after HELLO with PROTO_HELLO_EVENTS) */
        PROTO_OP_WATCH = 0x0400,
        PROTO_OP_UNWATCH = 0x0401,
        PROTO_OP_PUBLISH = 0x0402,
        PROTO_OP_OPENV = 0x0403,
        PROTO_OP_STATV = 0x0404,
        /* ranges; values not assigned above are answered with -EOPNOTSUPP */
        PROTO_OP_ACCESS_FIRST = 0x0100, /* access control: chmod, chown, quota */
        PROTO_OP_ACCESS_LAST = 0x01ff,
        PROTO_OP_REGISTER_FIRST = 0x0200, /* registering a client-made memfd */
        PROTO_OP_REGISTER_LAST = 0x02ff,
        PROTO_OP_EVENT_FIRST = 0x0300, /* daemon-initiated event frames; never a request or a reply */
        PROTO_OP_EVENT_LAST = 0x03ff,
        PROTO_OP_WATCH_FIRST = 0x0400, /* requests of the EVENTS feature */
        PROTO_OP_WATCH_LAST = 0x04ff,
};

/*
 * Event frames (daemon to client, only on connections that negotiated
 * PROTO_HELLO_EVENTS and only after a WATCH): header flags REPLY, nfds 0, id
 * the watch id (0 for OVERFLOW), opcode one of these. A client tells an event
 * from a reply by the opcode alone (PROTO_OP_EVENT_FIRST..LAST).
 */
enum proto_event_kind {
        PROTO_EV_OVERFLOW = 0x0301,  /* payload proto_event_overflow; queued events were dropped */
        PROTO_EV_CREATED = 0x0302,   /* payload proto_event for all of the following */
        PROTO_EV_DELETED = 0x0303,
        PROTO_EV_RESIZED = 0x0304,
        PROTO_EV_SEALED = 0x0305,
        PROTO_EV_CHMOD = 0x0306,
        PROTO_EV_CHOWN = 0x0307,
        PROTO_EV_PUBLISHED = 0x0308, /* a new version replaced the region of that name */
};
#define PROTO_EV_FIRST PROTO_EV_OVERFLOW
#define PROTO_EV_LAST PROTO_EV_PUBLISHED

/* HELLO flags */
#define PROTO_HELLO_EVENTS 0x0002u    /* WATCH, UNWATCH, PUBLISH, OPENV, STATV and event frames */
#define PROTO_HELLO_PAGE_INFO 0x0004u /* send the page bits of region flags in OPEN and STAT replies too */
#define PROTO_HELLO_FDS_IN_ORDER 0x0008u /* the client ties received fds to frames in order (protocol.md s. 5) */
#define PROTO_HELLO_KNOWN 0x000Eu     /* bit 0 stays reserved (-EINVAL), as version-1 daemons answer it */

enum proto_backend {
        PROTO_BACKEND_AUTO = 0, /* requests, configuration, and the daemon default in HELLO/STATUS replies */
        PROTO_BACKEND_MEMFD = 1,
        PROTO_BACKEND_SHM = 2,
        PROTO_BACKEND_FILE = 3,
};

/*
 * seal bits: the Linux F_SEAL_* values. Requests may only use
 * PROTO_SEALS_KNOWN; seals in replies are what the kernel reports
 * (F_GET_SEALS) and may hold newer bits such as F_SEAL_EXEC (0x0020), which
 * decoders accept and clients must ignore (P7).
 */
#define PROTO_SEAL_SEAL 0x0001u
#define PROTO_SEAL_SHRINK 0x0002u
#define PROTO_SEAL_GROW 0x0004u
#define PROTO_SEAL_WRITE 0x0008u
#define PROTO_SEAL_FUTURE_WRITE 0x0010u
#define PROTO_SEALS_KNOWN 0x001fu

/* CREATE flags */
#define PROTO_CREATE_EXCLUSIVE 0x0001u /* fail with -EEXIST if the name exists */
#define PROTO_CREATE_LEASE 0x0002u     /* delete when the creating connection closes */
#define PROTO_CREATE_RESIZABLE 0x0004u /* do not seal against shrinking */
#define PROTO_CREATE_HUGE 0x0008u      /* huge pages: hugetlb, else transparent huge pages, else normal ones */
#define PROTO_CREATE_RESERVE 0x0010u   /* allocate all the memory at creation (fallocate) */
#define PROTO_CREATE_HUGE_SHIFT 26     /* bits 26-31: log2 of the hugetlb page size, 0 = default (HUGE only) */
#define PROTO_CREATE_HUGE_MASK (0x3fu << PROTO_CREATE_HUGE_SHIFT)
#define PROTO_CREATE_KNOWN (0x001fu | PROTO_CREATE_HUGE_MASK)


/* OPEN flags */
#define PROTO_OPEN_RDONLY 0x0001u /* read-only fd; default is read-write */
#define PROTO_OPEN_WAIT 0x0002u   /* wait up to timeout_ms for the name to appear */
#define PROTO_OPEN_KNOWN 0x0003u

/* REGISTER flags */
#define PROTO_REGISTER_LEASE 0x0001u /* delete when the registering connection closes */
#define PROTO_REGISTER_KNOWN 0x0001u

/* PUBLISH flags */
#define PROTO_PUBLISH_LEASE 0x0001u /* delete the new version when the publishing connection closes */
#define PROTO_PUBLISH_KNOWN 0x0001u

/* WATCH flags: none defined yet */
#define PROTO_WATCH_KNOWN 0x0000u

/* seals a REGISTERed memfd must carry (tested as "all set", never equality: P7) */
#define PROTO_REGISTER_SEALS_REQUIRED (PROTO_SEAL_SHRINK | PROTO_SEAL_GROW)

/* CHOWN: leave this id as it is */
#define PROTO_ID_UNCHANGED 0xFFFFFFFFu

/* region_info.flags / stat.flags */
#define PROTO_REGION_RDONLY 0x0001u    /* the fd in this reply is read-only */
#define PROTO_REGION_LEASED 0x0002u
#define PROTO_REGION_RESIZABLE 0x0004u
#define PROTO_REGION_ANONYMOUS 0x0008u
/* the page bits: only in replies to a CREATE with HUGE or RESERVE, or on a connection whose HELLO had PAGE_INFO */
#define PROTO_REGION_HUGETLB 0x0010u   /* hugetlb pages (their size: fstatfs of the fd, f_bsize) */
#define PROTO_REGION_THP 0x0020u       /* shmem where the system allows transparent huge pages */
#define PROTO_REGION_RESERVED 0x0040u  /* all memory allocated at creation */
#define PROTO_REGION_PAGES 0x0070u
#define PROTO_REGION_KNOWN 0x007fu

struct proto_header {
        uint32_t magic;
        uint8_t version;
        uint8_t flags;
        uint16_t opcode;
        uint32_t id;     /* request id, echoed in the reply */
        uint32_t length; /* payload bytes following the header */
        uint16_t nfds;   /* fds carried by this frame */
        uint16_t reserved;
};

/* A string on the wire: u16 length (excluding NUL), bytes, one NUL byte. */

struct proto_error {
        int32_t error; /* negative errno */
        const char *message; /* may be "" */
};

struct proto_hello {
        uint16_t min_version;
        uint16_t max_version;
        uint32_t flags; /* PROTO_HELLO_* (0 for a version-1 session) */
};

struct proto_hello_reply {
        uint16_t version;
        uint16_t max_fds;
        uint32_t max_payload;
        uint64_t max_region_size;
        uint32_t name_max;
        uint16_t backend; /* daemon's default backend; AUTO = memfd, else shm, else file */
        uint16_t reserved;
        const char *server_version;
};

struct proto_ping {
        uint64_t cookie; /* echoed */
};

struct proto_status_reply {
        uint64_t regions;
        uint64_t bytes;
        uint64_t connections;
        uint64_t uptime_sec;
        uint16_t backend;
        uint16_t reserved;
        uint32_t reserved2;
        const char *server_version;
};

struct proto_create {
        uint64_t size;
        uint32_t flags;   /* PROTO_CREATE_* */
        uint32_t seals;   /* initial seals (PROTO_SEAL_*) */
        uint32_t mode;    /* 0 = daemon default; else permission bits 0..0777 */
        uint16_t backend; /* PROTO_BACKEND_*, AUTO = daemon's choice */
        uint16_t reserved;
        const char *name; /* "" = anonymous */
};

/* reply to CREATE and OPEN; the frame carries exactly one fd */
struct proto_region_info {
        uint64_t id;
        uint64_t size;
        uint32_t seals;
        uint32_t flags; /* PROTO_REGION_* */
        uint16_t backend;
        uint16_t reserved;
        uint32_t reserved2;
};

struct proto_open {
        uint32_t flags; /* PROTO_OPEN_* */
        uint32_t timeout_ms;
        const char *name;
        size_t name_len; /* set by proto_open_decode() (strlen(name)); the encoder reads only name */
};

struct proto_resize {
        uint64_t size;
        const char *name;
};

struct proto_resize_reply {
        uint64_t size;
};

struct proto_seal {
        uint32_t seals; /* seals to add */
        uint32_t reserved;
        const char *name;
};

struct proto_seal_reply {
        uint32_t seals; /* seals now in force */
};

struct proto_name { /* STAT and DELETE requests */
        const char *name;
};

struct proto_stat_reply {
        uint64_t id;
        uint64_t size;
        uint64_t ctime_ns; /* CLOCK_REALTIME at create */
        uint64_t open_count;
        uint32_t seals;
        uint32_t flags;
        uint32_t uid;
        uint32_t gid;
        uint32_t mode;
        uint16_t backend;
        uint16_t reserved;
};

struct proto_list {
        uint64_t cursor; /* 0 = from the start; else next_cursor of the previous page */
        uint32_t max_entries; /* 0 = as many as fit */
        uint32_t reserved;
        const char *prefix; /* "" = all */
};

struct proto_list_reply {
        uint64_t next_cursor; /* 0 = no more */
        uint32_t count;
        uint32_t reserved;
        /* followed by count entries; walk them with proto_list_entry_next() */
        const uint8_t *entries;
        size_t entries_len;
};

struct proto_list_entry {
        uint64_t id;
        uint64_t size;
        uint32_t seals;
        uint32_t mode;
        uint32_t uid;
        uint32_t gid;
        const char *name;
};

struct proto_chmod {
        uint32_t mode; /* 0..0777 */
        uint32_t reserved;
        const char *name;
};

struct proto_chown {
        uint32_t uid; /* PROTO_ID_UNCHANGED = keep */
        uint32_t gid; /* PROTO_ID_UNCHANGED = keep */
        const char *name;
};

/* reply to QUOTA (the request has no payload): the peer's usage and limits, 0 = unlimited */
struct proto_quota_reply {
        uint32_t uid;
        uint32_t gid;
        uint64_t bytes, max_bytes;             /* bytes of named regions owned */
        uint64_t regions, max_regions;         /* named regions owned */
        uint64_t connections, max_connections; /* connections open */
        uint64_t fds, max_fds;                 /* fds queued towards the uid's connections */
        uint64_t max_region_size;              /* the daemon's size limit */
};

/* REGISTER request; the frame carries exactly one fd, a memfd of @size bytes */
struct proto_register {
        uint64_t size;
        uint32_t flags; /* PROTO_REGISTER_* */
        uint32_t mode;  /* 0 = daemon default; else 1..0777 */
        const char *name;
};

struct proto_register_reply {
        uint64_t id;
        uint32_t seals; /* kernel value */
        uint32_t reserved;
};

/*
 * METRICS reply: a version, flags, then @count entries of (metric, label,
 * value). New metrics come as new ids in version 1; a client skips ids it
 * does not know. What a label means depends on the metric (enum
 * proto_metric_label): nothing, an opcode, an errno (positive) or a uid.
 */
#define PROTO_METRICS_VERSION 1
#define PROTO_METRICS_TRUNCATED 0x0001u /* entries were left out: the reply was full */
#define PROTO_METRICS_FLAGS_KNOWN 0x0001u

enum proto_metric {
        /* daemon-wide: every caller gets these */
        PROTO_METRIC_REGIONS = 1,              /* gauge: named regions held */
        PROTO_METRIC_BYTES = 2,                /* gauge: sum of their sizes */
        PROTO_METRIC_CONNECTIONS = 3,          /* gauge: connections open */
        PROTO_METRIC_UPTIME = 4,               /* gauge: seconds since start */
        PROTO_METRIC_CONNECTIONS_ACCEPTED = 5, /* counter */
        PROTO_METRIC_CONNECTIONS_REFUSED = 6,  /* counter: allow-list or connection quota */
        PROTO_METRIC_WAITING_OPENS = 7,        /* gauge: OPENs parked with WAIT */
        PROTO_METRIC_FD_STORE_FDS = 8,         /* gauge: fds in systemd's fd store */
        PROTO_METRIC_FD_STORE_MAX = 9,         /* gauge: FileDescriptorStoreMax, 0 = no store */
        PROTO_METRIC_KEEPERS = 10,             /* gauge: keeper processes */
        PROTO_METRIC_REGION_FDS = 11,          /* gauge: region fds the daemon holds itself */
        PROTO_METRIC_QUOTA_REFUSALS = 12,      /* counter: -EDQUOT replies and quota-refused connections */
        PROTO_METRIC_CLOSING_FDS = 13,         /* gauge: fds handed to the closer threads, not yet closed */
        PROTO_METRIC_ORPHAN_SOCKETS = 14,      /* gauge: departed clients' sockets kept for their unread fds */
        PROTO_METRIC_JOBS = 15,                /* gauge: RESERVE/RESIZE/SEAL jobs not yet freed, one fd each */
        /* label: opcode (0 = a request without a row: unknown opcode) */
        PROTO_METRIC_REQUESTS = 32,       /* counter: requests received */
        PROTO_METRIC_REQUEST_ERRORS = 33, /* counter: error replies sent */
        /* label: errno, positive (0 = beyond the counted range) */
        PROTO_METRIC_ERRORS = 48, /* counter: error replies sent */
        /* label: uid; root sees every uid, others their own */
        PROTO_METRIC_UID_REGIONS = 64,        /* gauge */
        PROTO_METRIC_UID_BYTES = 65,          /* gauge */
        PROTO_METRIC_UID_CONNECTIONS = 66,    /* gauge */
        PROTO_METRIC_UID_QUEUED_FDS = 67,     /* gauge: fds queued towards its connections */
        PROTO_METRIC_UID_QUOTA_REFUSALS = 68, /* counter */
};

enum proto_metric_type {
        PROTO_METRIC_GAUGE = 1,
        PROTO_METRIC_COUNTER = 2,
};

enum proto_metric_label {
        PROTO_METRIC_LABEL_NONE = 0,
        PROTO_METRIC_LABEL_REQUEST = 1, /* an opcode */
        PROTO_METRIC_LABEL_CODE = 2,    /* an errno, positive */
        PROTO_METRIC_LABEL_UID = 3,
};

struct proto_metric_entry {
        uint16_t metric; /* enum proto_metric, or a newer id */
        uint16_t reserved;
        uint32_t label;
        uint64_t value;
};

struct proto_metrics_reply {
        uint16_t version; /* PROTO_METRICS_VERSION */
        uint16_t flags;   /* PROTO_METRICS_* */
        uint32_t count;
        /* followed by count entries; walk them with proto_metrics_entry_get() */
        const uint8_t *entries;
};

/* What a known metric is: its name (OpenMetrics family name, without _total), type, label and help text. */
struct proto_metric_info {
        uint16_t metric;
        uint8_t type;  /* enum proto_metric_type */
        uint8_t label; /* enum proto_metric_label */
        const char *name;
        const char *help;
};

/* ---- the EVENTS feature (docs/protocol.md section 15) ---- */

struct proto_watch {
        uint32_t flags;    /* PROTO_WATCH_*, none defined: 0 */
        uint32_t reserved;
        const char *prefix; /* "" = every name */
};

struct proto_watch_reply {
        uint32_t watch_id; /* never 0 */
        uint32_t reserved;
};

struct proto_unwatch {
        uint32_t watch_id;
        uint32_t reserved;
};

/* PUBLISH request; the frame carries exactly one fd, a memfd of @size bytes (as REGISTER) */
struct proto_publish {
        uint64_t size;
        uint64_t expect_generation; /* 0 = whatever is there (or nothing); else -ESTALE unless it is current */
        uint32_t flags;             /* PROTO_PUBLISH_* */
        uint32_t mode;              /* 0 = the replaced version's mode (daemon default for a new name) */
        const char *name;
};

struct proto_publish_reply {
        uint64_t id;
        uint64_t generation;
        uint64_t replaced_id; /* id of the version this one replaced, 0 if the name was free */
        uint32_t seals;       /* kernel value */
        uint32_t reserved;
};

/* OPENV: OPEN of a version newer than @after_generation */
struct proto_openv {
        uint32_t flags; /* PROTO_OPEN_* */
        uint32_t timeout_ms;
        uint64_t after_generation; /* 0 = any version */
        const char *name;
};

/* reply to OPENV: region info and the version's generation; one fd */
struct proto_region_infov {
        struct proto_region_info info;
        uint64_t generation;
};

/* reply to STATV: stat reply and the version's generation */
struct proto_stat_replyv {
        struct proto_stat_reply stat;
        uint64_t generation;
};

/* payload of every region event (PROTO_EV_CREATED..PUBLISHED) */
struct proto_event {
        uint64_t id;
        uint64_t generation;
        uint64_t size;
        uint64_t replaced_id; /* PUBLISHED: the version replaced; else 0 */
        uint32_t seals;       /* kernel value */
        uint32_t mode;
        uint32_t uid;
        uint32_t gid;
        const char *name;
};

struct proto_event_overflow {
        uint64_t dropped; /* events dropped since the last OVERFLOW */
};

/* Return: 0 if name is a valid region name, -EINVAL otherwise. */
int proto_name_check(const char *name, size_t len);

/*
 * proto_header_encode() - write a header into out[PROTO_HEADER_SIZE], as given
 * (no checks: tests use it to build bad headers).
 * Return: nothing.
 */
void proto_header_encode(const struct proto_header *h, uint8_t *out);

/*
 * proto_header_decode() - parse and check a header.
 * Return: 0 on success; -EBADMSG for fewer than PROTO_HEADER_SIZE bytes, bad
 * magic, unknown flag bits, ERROR without REPLY or nonzero reserved field;
 * -EMSGSIZE for a length above PROTO_MAX_PAYLOAD or nfds above PROTO_MAX_FDS;
 * -EPROTONOSUPPORT for an unknown version, returned only when nothing else
 * is wrong, so the stream is still in sync and an error reply is possible.
 * The header is filled in on every error except a short buffer or bad magic.
 */
int proto_header_decode(const uint8_t *buf, size_t len, struct proto_header *h);

/*
 * Encoders: write the payload into buf (size bytes). A NULL string is
 * written as "". Encoders check only string lengths against their field's
 * maximum, not characters, flag bits or enum values, so that tests can build
 * frames a decoder must refuse.
 * Return: payload length (>= 0), -ENOBUFS if it does not fit, -EINVAL for a
 * value that cannot be represented (string too long).
 *
 * Decoders: parse exactly len bytes.
 * Return: 0; -EBADMSG if the length or layout does not match; -EINVAL for a
 * malformed string (missing NUL, NUL inside, too long) or invalid name, an
 * unknown flag or seal bit, a bad enum value, or a nonzero reserved field.
 * *m is written only on success.
 *
 * Requests without a payload (STATUS) and replies without one (DELETE) have
 * length 0 and no decoder: any other length is -EBADMSG.
 */
int proto_error_encode(const struct proto_error *m, uint8_t *buf, size_t size);
int proto_error_decode(const uint8_t *buf, size_t len, struct proto_error *m);
int proto_hello_encode(const struct proto_hello *m, uint8_t *buf, size_t size);
int proto_hello_decode(const uint8_t *buf, size_t len, struct proto_hello *m);
int proto_hello_reply_encode(const struct proto_hello_reply *m, uint8_t *buf, size_t size);
int proto_hello_reply_decode(const uint8_t *buf, size_t len, struct proto_hello_reply *m);
int proto_ping_encode(const struct proto_ping *m, uint8_t *buf, size_t size);
int proto_ping_decode(const uint8_t *buf, size_t len, struct proto_ping *m);
int proto_status_reply_encode(const struct proto_status_reply *m, uint8_t *buf, size_t size);
int proto_status_reply_decode(const uint8_t *buf, size_t len, struct proto_status_reply *m);
int proto_create_encode(const struct proto_create *m, uint8_t *buf, size_t size);
int proto_create_decode(const uint8_t *buf, size_t len, struct proto_create *m);
/*
 * proto_create_refusal() - why proto_create_decode() refused @buf with -EINVAL, in words for the error reply (the
 * flags, seals, mode or backend, and what is allowed); the slow path of a refusal only.
 * Return: a static string; NULL if it did not refuse one of those values (-EBADMSG, a bad name, nothing wrong):
 * the reply then says "malformed CREATE", which libiomem's callers and the bindings recognise for a bad name.
 */
const char *proto_create_refusal(const uint8_t *buf, size_t len);
/*
 * proto_refusal() - why the decoder of request @opcode refused @buf with -EINVAL, in words for the error reply:
 * which value (flags, timeout, seals, mode, reserved) and what is allowed, for CREATE (proto_create_refusal()),
 * OPEN, OPENV, SEAL, CHMOD, REGISTER and PUBLISH. Pure (no I/O); the slow path of a refusal only.
 * Return: a static string; NULL for a bad name (the reply stays "malformed X", which the bindings recognise), a
 * bad shape, a request whose decoder refuses no other value (STAT, DELETE, CHOWN, RESIZE...), or nothing wrong.
 */
const char *proto_refusal(uint16_t opcode, const uint8_t *buf, size_t len);
int proto_region_info_encode(const struct proto_region_info *m, uint8_t *buf, size_t size);
int proto_region_info_decode(const uint8_t *buf, size_t len, struct proto_region_info *m);
int proto_open_encode(const struct proto_open *m, uint8_t *buf, size_t size);
int proto_open_decode(const uint8_t *buf, size_t len, struct proto_open *m);
int proto_resize_encode(const struct proto_resize *m, uint8_t *buf, size_t size);
int proto_resize_decode(const uint8_t *buf, size_t len, struct proto_resize *m);
int proto_resize_reply_encode(const struct proto_resize_reply *m, uint8_t *buf, size_t size);
int proto_resize_reply_decode(const uint8_t *buf, size_t len, struct proto_resize_reply *m);
int proto_seal_encode(const struct proto_seal *m, uint8_t *buf, size_t size);
int proto_seal_decode(const uint8_t *buf, size_t len, struct proto_seal *m);
int proto_seal_reply_encode(const struct proto_seal_reply *m, uint8_t *buf, size_t size);
int proto_seal_reply_decode(const uint8_t *buf, size_t len, struct proto_seal_reply *m);
int proto_name_encode(const struct proto_name *m, uint8_t *buf, size_t size);
int proto_name_decode(const uint8_t *buf, size_t len, struct proto_name *m);
int proto_stat_reply_encode(const struct proto_stat_reply *m, uint8_t *buf, size_t size);
int proto_stat_reply_decode(const uint8_t *buf, size_t len, struct proto_stat_reply *m);
int proto_list_encode(const struct proto_list *m, uint8_t *buf, size_t size);
int proto_list_decode(const uint8_t *buf, size_t len, struct proto_list *m);
int proto_chmod_encode(const struct proto_chmod *m, uint8_t *buf, size_t size);
int proto_chmod_decode(const uint8_t *buf, size_t len, struct proto_chmod *m);
int proto_chown_encode(const struct proto_chown *m, uint8_t *buf, size_t size);
int proto_chown_decode(const uint8_t *buf, size_t len, struct proto_chown *m);
int proto_quota_reply_encode(const struct proto_quota_reply *m, uint8_t *buf, size_t size);
int proto_quota_reply_decode(const uint8_t *buf, size_t len, struct proto_quota_reply *m);
int proto_register_encode(const struct proto_register *m, uint8_t *buf, size_t size);
int proto_register_decode(const uint8_t *buf, size_t len, struct proto_register *m);
int proto_register_reply_encode(const struct proto_register_reply *m, uint8_t *buf, size_t size);
int proto_register_reply_decode(const uint8_t *buf, size_t len, struct proto_register_reply *m);

int proto_watch_encode(const struct proto_watch *m, uint8_t *buf, size_t size);
int proto_watch_decode(const uint8_t *buf, size_t len, struct proto_watch *m);
int proto_watch_reply_encode(const struct proto_watch_reply *m, uint8_t *buf, size_t size);
int proto_watch_reply_decode(const uint8_t *buf, size_t len, struct proto_watch_reply *m);
int proto_unwatch_encode(const struct proto_unwatch *m, uint8_t *buf, size_t size);
int proto_unwatch_decode(const uint8_t *buf, size_t len, struct proto_unwatch *m);
int proto_publish_encode(const struct proto_publish *m, uint8_t *buf, size_t size);
int proto_publish_decode(const uint8_t *buf, size_t len, struct proto_publish *m);
int proto_publish_reply_encode(const struct proto_publish_reply *m, uint8_t *buf, size_t size);
int proto_publish_reply_decode(const uint8_t *buf, size_t len, struct proto_publish_reply *m);
int proto_openv_encode(const struct proto_openv *m, uint8_t *buf, size_t size);
int proto_openv_decode(const uint8_t *buf, size_t len, struct proto_openv *m);
int proto_region_infov_encode(const struct proto_region_infov *m, uint8_t *buf, size_t size);
int proto_region_infov_decode(const uint8_t *buf, size_t len, struct proto_region_infov *m);
int proto_stat_replyv_encode(const struct proto_stat_replyv *m, uint8_t *buf, size_t size);
int proto_stat_replyv_decode(const uint8_t *buf, size_t len, struct proto_stat_replyv *m);
int proto_event_encode(const struct proto_event *m, uint8_t *buf, size_t size);
int proto_event_decode(const uint8_t *buf, size_t len, struct proto_event *m);
int proto_event_overflow_encode(const struct proto_event_overflow *m, uint8_t *buf, size_t size);
int proto_event_overflow_decode(const uint8_t *buf, size_t len, struct proto_event_overflow *m);

/* Return: true if @opcode is in the event band (PROTO_OP_EVENT_FIRST..LAST): the frame is an event, not a reply. */
bool proto_opcode_is_event(uint16_t opcode);

/*
 * LIST replies are built incrementally: begin, then append entries until
 * -ENOBUFS, then finish with the cursor.
 */
struct proto_list_writer {
        uint8_t *buf;
        size_t size;
        size_t len;
        uint32_t count;
};
void proto_list_writer_init(struct proto_list_writer *w, uint8_t *buf, size_t size);
/* Return: 0, or -ENOBUFS if the entry does not fit (the writer is unchanged). */
int proto_list_writer_add(struct proto_list_writer *w, const struct proto_list_entry *e);
/* Return: the payload length, or -ENOBUFS if the buffer cannot hold even the fixed part. */
int proto_list_writer_finish(struct proto_list_writer *w, uint64_t next_cursor);
/* Decodes and checks every entry, so walking a decoded reply does not fail. Return: as the decoders above. */
int proto_list_reply_decode(const uint8_t *buf, size_t len, struct proto_list_reply *m);
/*
 * proto_list_entry_next() - decode the entry at *offsetp in r->entries and
 * advance *offsetp. Return: 1 if an entry was decoded, 0 at the end,
 * negative errno on a malformed entry.
 */
int proto_list_entry_next(const struct proto_list_reply *r, size_t *offsetp, struct proto_list_entry *e);

/* METRICS replies are built like LIST replies: begin, add until -ENOBUFS, finish with the flags. */
struct proto_metrics_writer {
        uint8_t *buf;
        size_t size;
        size_t len;
        uint32_t count;
};
void proto_metrics_writer_init(struct proto_metrics_writer *w, uint8_t *buf, size_t size);
/* Return: 0, or -ENOBUFS if the entry does not fit (the writer is unchanged). */
int proto_metrics_writer_add(struct proto_metrics_writer *w, const struct proto_metric_entry *e);
/* Return: the payload length, or -ENOBUFS if the buffer cannot hold even the fixed part. */
int proto_metrics_writer_finish(struct proto_metrics_writer *w, uint16_t flags);
/*
 * proto_metrics_reply_decode() - checks the fixed part and every entry
 * (reserved fields 0); unknown metric ids are accepted. Return: as the
 * decoders above; -EINVAL also for a version other than PROTO_METRICS_VERSION.
 */
int proto_metrics_reply_decode(const uint8_t *buf, size_t len, struct proto_metrics_reply *m);
/* proto_metrics_entry_get() - entry @index (< m->count) of a decoded reply. Return: nothing. */
void proto_metrics_entry_get(const struct proto_metrics_reply *m, uint32_t index, struct proto_metric_entry *e);
/* Return: what @metric is, or NULL for an id this build does not know. */
const struct proto_metric_info *proto_metric_info(uint16_t metric);

/* Return: a static name for a request opcode, or NULL (event opcodes too: see proto_event_name()). */
const char *proto_opcode_name(uint16_t opcode);

/* Return: a static lower-case name for an event opcode ("created", "overflow", ...), or NULL. */
const char *proto_event_name(uint16_t opcode);
