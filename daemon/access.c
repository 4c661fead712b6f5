/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* access: who may do what to a named region (owner, group, mode), from SO_PEERCRED identities. */
#include <errno.h>

#include "access.h"
#include "proto.h"

bool access_in_group(const struct access_cred *cred, gid_t gid)
{
        if (cred->gid == gid)
                return true;
        for (size_t i = 0; i < cred->ngroups; i++)
                if (cred->groups[i] == gid)
                        return true;
        return false;
}

bool access_needs_groups(const struct access_cred *cred, const struct region_meta *meta, enum access_need need)
{
        uint32_t group = (meta->mode >> 3) & 7u, other = meta->mode & 7u;

        return cred->uid != 0 && need != ACCESS_NEED_OWNER && cred->uid != meta->uid && cred->gid != meta->gid &&
               group != other;
}

int access_check(const struct access_cred *cred, const struct region_meta *meta, enum access_need need)
{
        uint32_t bits;

        if (cred->uid == 0)
                return 0;
        if (need == ACCESS_NEED_OWNER)
                return cred->uid == meta->uid ? 0 : -EACCES;
        if (cred->uid == meta->uid)
                bits = (meta->mode >> 6) & 7u;
        else if (access_in_group(cred, meta->gid))
                bits = (meta->mode >> 3) & 7u;
        else
                bits = meta->mode & 7u;
        if (need == ACCESS_NEED_READ)
                return bits & 4u ? 0 : -EACCES;
        return bits & 2u ? 0 : -EACCES;
}

int access_check_chown(const struct access_cred *cred, const struct region_meta *meta, uint32_t uid, uint32_t gid)
{
        if (cred->uid == 0)
                return 0;
        if (cred->uid != meta->uid)
                return -EACCES;
        if (uid != PROTO_ID_UNCHANGED && uid != meta->uid)
                return -EACCES; /* giving a region away would charge someone else's quota */
        if (gid != PROTO_ID_UNCHANGED && !access_in_group(cred, (gid_t)gid))
                return -EACCES;
        return 0;
}

const char *access_need_name(enum access_need need)
{
        switch (need) {
        case ACCESS_NEED_READ:
                return "read";
        case ACCESS_NEED_WRITE:
                return "write";
        case ACCESS_NEED_OWNER:
                return "ownership";
        }
        return "?";
}
