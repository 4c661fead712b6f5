/* regtab: the daemon's table of named regions (hash by name and by id), waiters for names. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

struct conn;
struct regtab;

/* What describes a region besides its fd: all of it must survive a restart (service.c). */
struct region_meta {
        uint64_t id;
        uint64_t ctime_ns;  /* CLOCK_REALTIME at create */
        uint32_t uid;       /* owner */
        uint32_t gid;
        uint32_t mode;      /* permission bits 0..0777 */
        uint32_t flags;     /* PROTO_REGION_LEASED / RESIZABLE */
        uint16_t backend;   /* PROTO_BACKEND_* */
};

struct region {
        struct region_meta meta;
        char *name;          /* NUL-terminated, valid per proto_name_check() */
        size_t name_len;
        int fd;              /* owned: O_RDWR, close-on-exec */
        uint64_t size;       /* as last set by create/resize */
        uint64_t open_count;
        struct conn *lease;  /* the connection whose close deletes this region, or NULL */
        uint32_t store_slot; /* service.c's bookkeeping (fd store slot), UINT32_MAX if none */
        /* regtab's own links */
        struct region *hnext_name;
        struct region *hnext_id;
        struct region *prev, *next; /* all regions in id order (ids only grow) */
        struct region *lease_prev, *lease_next; /* regions leased to the same conn */
};
