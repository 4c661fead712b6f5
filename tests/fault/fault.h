/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fault: the control page shared by the fault-injection preload library (fault.c) and its driver. */
#pragma once

#include <stdint.h>

/*
 * The driver creates a file of sizeof(struct fault_ctl) bytes and names it
 * in $IOMEM_FAULT_CTL for the daemon, which maps it shared (fault.c's
 * constructor). To arm, the driver sets func and err, then countdown = N:
 * the Nth call of that function from then on fails with err, once. With
 * sticky set, every call of func fails instead (a lasting EMFILE).
 * calls[] counts every call of each function (the driver's counting pass);
 * live_allocs is allocations minus frees, to find leaks (R5).
 */

#define FAULT_MAGIC 0x544c5546u /* "FULT" */

enum fault_func {
        FAULT_MALLOC, /* malloc, calloc, realloc: one counter */
        FAULT_MEMFD_CREATE,
        FAULT_SHM_OPEN,
        FAULT_OPEN, /* open, openat (and their 64 names) */
        FAULT_FTRUNCATE,
        FAULT_FALLOCATE,
        FAULT_ACCEPT4,
        FAULT_RECVMSG,
        FAULT_SENDMSG,
        FAULT_DUPFD, /* fcntl(F_DUPFD_CLOEXEC) */
        FAULT_PWRITE, /* pwrite (and pwrite64): the fd store's metadata file (test-it-size) */
        FAULT_COUNT,
};

struct fault_ctl {
        uint32_t magic;
        int32_t func;      /* enum fault_func, -1 = none */
        int32_t err;       /* errno to fail with (FAULT_PWRITE: 0 = a short write instead, half written) */
        int32_t countdown; /* fail when this reaches 0 from 1; 0 = disarmed */
        int32_t sticky;    /* nonzero: every call of func fails (err) until cleared */
        int32_t then_err;  /* FAULT_PWRITE: nonzero, a short write sets err to it (with sticky, the next ones
                            * then fail with it, as on a full disk; armed by countdown, none does) */
        uint64_t injected; /* faults injected so far */
        int64_t live_allocs;
        uint64_t calls[FAULT_COUNT];
        int64_t pass_offset; /* FAULT_PWRITE: nonzero, a pwrite() at this offset is never failed (one slot of the
                              * fd store's metadata file that can be written while the others cannot) */
        uint64_t pass_hits;  /* pwrite()s at pass_offset while it was set */
        int64_t last_offset; /* the offset of the last pwrite() */
};
