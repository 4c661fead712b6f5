/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* access: who may do what to a named region (owner, group, mode), from SO_PEERCRED identities. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "regtab.h"

/* A peer's identity as the kernel reported it at accept (SO_PEERCRED, SO_PEERGROUPS). */
struct access_cred {
        uid_t uid;
        gid_t gid;
        const gid_t *groups; /* supplementary groups, borrowed; may be NULL */
        size_t ngroups;
};

/* What a request needs. */
enum access_need {
        ACCESS_NEED_READ,  /* OPEN read-only, STAT, seeing it in LIST */
        ACCESS_NEED_WRITE, /* OPEN read-write, CREATE of an existing name */
        ACCESS_NEED_OWNER, /* RESIZE, SEAL, DELETE, CHMOD */
};

/* Return: true if @cred is in group @gid (primary or supplementary). */
bool access_in_group(const struct access_cred *cred, gid_t gid);

/*
 * access_needs_groups() - may access_check()'s answer depend on @cred's
 * supplementary groups? Only for a peer that is neither root, nor the owner,
 * nor in the region's group by its primary gid, where the group bits differ
 * from the other bits. Return: true if so.
 */
bool access_needs_groups(const struct access_cred *cred, const struct region_meta *meta, enum access_need need);

/*
 * access_check() - the file-like rule: uid 0 may do anything; the owner
 * bits apply to the owner, else the group bits to members of the region's
 * group, else the other bits. Ownership needs uid == owner.
 * Return: 0, or -EACCES.
 */
int access_check(const struct access_cred *cred, const struct region_meta *meta, enum access_need need);

/*
 * access_check_chown() - may @cred give the region owner @uid and group @gid
 * (PROTO_ID_UNCHANGED keeps one)? Root may do anything; the owner may only
 * change the group, to one it is a member of.
 * Return: 0, or -EACCES.
 */
int access_check_chown(const struct access_cred *cred, const struct region_meta *meta, uint32_t uid, uint32_t gid);

/* Return: "read", "write" or "ownership", for logs. */
const char *access_need_name(enum access_need need);
