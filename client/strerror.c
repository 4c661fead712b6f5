/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* strerror: words for the negative errno values libiomem and iomemd return. */

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "iomem.h"
#include "region-internal.h"

/* What each code means coming from iomemd or libiomem; others fall back to the C library's text. */
static const struct {
        int error;
        const char *text;
} strerror_table[] = {
        { 0, "success" },
        { EEXIST, "a region with this name already exists" },
        { ENOENT, "no region with this name" },
        { EDQUOT, "quota exceeded" },
        { EFBIG, "size above the limit" },
        { EPROTO, "protocol error: malformed message or file descriptors from the peer" },
        { EPROTONOSUPPORT, "no protocol version in common with the daemon" },
        { EACCES, "permission denied by the region's mode or owner" },
        { EPERM, "forbidden by the region's seals" },
        { EBUSY, "the region is mapped writable, so it cannot be sealed against writes; or a reservation of this "
                 "name, or of this region's growth, is in progress (try again)" },
        { ETIMEDOUT, "timed out waiting for the daemon or for the name to appear" },
        { EINVAL, "invalid argument: name, flags, size, seals or file descriptor" },
        { EOPNOTSUPP, "not supported: only memfd regions can be sealed, or the daemon lacks this operation" },
        { ENOSPC, "no space left on the file system that holds the region (/dev/shm for shm, the directory of the "
                  "file backend) or in the daemon's fd store" },
        { ENOMEM, "out of memory" },
        { EMFILE, "too many open files in this process" },
        { ENFILE, "too many open files in the system" },
        { EOVERFLOW, "offset plus length overflows" },
        { ERANGE, "range past the end of the region" },
        { EBADMSG, "malformed message" },
        { EMSGSIZE, "message larger than the protocol allows" },
        { ENOBUFS, "too much data or too many file descriptors queued on the connection" },
        { ECONNREFUSED, "the daemon is not running (connection refused)" },
        { ECONNRESET, "the connection to the daemon ended after the request was sent: whether it was applied is "
                      "unknown" },
        { EPIPE, "the daemon had closed the connection: the request was not sent" },
        { ENOTCONN, "not connected to the daemon: an earlier error broke the connection, or the daemon went away "
                    "and did not come back" },
        { ENAMETOOLONG, "name or socket path too long" },
        { EBADF, "bad file descriptor" },
        { ECHILD, "this client was connected by the parent process before fork(): in the child, only "
                  "iomem_disconnect() it, and connect again" },
        { ESHUTDOWN, "a callback disconnected the client: it is freed, do not use it again" },
        { ESTALE, "stale: another version was published first, or the fd no longer refers to the same object" },
};

/*
 * iomem_strerror() - a static description of an error code; negative
 * errno as returned by libiomem (a positive one is accepted as well).
 * Thread-safe: never calls strerror().
 * Return: a static string, never NULL.
 */
IOMEM_EXPORT const char *iomem_strerror(int error)
{
        const char *text;

        if (error == INT_MIN)
                return "unknown error";
        if (error < 0)
                error = -error;

        for (size_t i = 0; i < sizeof(strerror_table) / sizeof(strerror_table[0]); i++)
                if (strerror_table[i].error == error)
                        return strerror_table[i].text;

        text = strerrordesc_np(error);
        return text ? text : "unknown error";
}
