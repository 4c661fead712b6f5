/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* recycle: one freed block of a fixed size, kept for the next allocation of its kind (libiomem-internal). */
#pragma once

#include <stddef.h>
#include <stdlib.h>

#include "asan.h" /* ASAN_(UN)POISON_MEMORY_REGION, no-ops without ASan */

/*
 * As ASan's poisoning, for a program run under valgrind, which sees malloc and free but not a block handed over
 * through the slot: memcheck is told the slot's block is not addressable (a use after free is still reported) and a
 * block taken out is undefined (as malloc's); helgrind that a block taken out is new (else the next thread's first
 * writes look like a race with the last one's, the exchange being no hand-over it knows). Client requests, made
 * only under valgrind (asked once, at load: outside it a load and a branch per block), and only if valgrind's
 * headers were there at build time (Debian's valgrind package).
 */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>) && __has_include(<valgrind/helgrind.h>)
#include <valgrind/helgrind.h>
#include <valgrind/memcheck.h>
static int recycle_on_valgrind; /* set before main() (or by dlopen), read only then: no thread can race it */

__attribute__((constructor)) static void recycle_valgrind_init(void)
{
        recycle_on_valgrind = RUNNING_ON_VALGRIND != 0;
}

#define RECYCLE_VG_GIVE(addr, size) \
        do { \
                if (recycle_on_valgrind) \
                        (void)VALGRIND_MAKE_MEM_NOACCESS((addr), (size)); \
        } while (0)
#define RECYCLE_VG_TAKE(addr, size) \
        do { \
                if (recycle_on_valgrind) { \
                        VALGRIND_HG_CLEAN_MEMORY((addr), (size)); \
                        (void)VALGRIND_MAKE_MEM_UNDEFINED((addr), (size)); \
                } \
        } while (0)
#define RECYCLE_VG_FREE(addr, size) \
        do { \
                if (recycle_on_valgrind) \
                        (void)VALGRIND_MAKE_MEM_UNDEFINED((addr), (size)); \
        } while (0)
#endif
#endif
#ifndef RECYCLE_VG_GIVE
#define RECYCLE_VG_GIVE(addr, size) ((void)(addr), (void)(size))
#define RECYCLE_VG_TAKE(addr, size) ((void)(addr), (void)(size))
#define RECYCLE_VG_FREE(addr, size) ((void)(addr), (void)(size))
#endif

/*
 * A short-lived program connects, opens one region and frees both: malloc and free of each block cost ~130
 * instructions (glibc's per-thread cache), an atomic exchange with a slot a few. A slot holds at most one block
 * of one size (the caller's: struct iomem_client, struct iomem_region), owned by nobody but the slot: a block is
 * given to it when freed and taken out whole by the next allocation, by any thread (one exchange each way, so a
 * block is never in two hands). A second block freed while the slot is full goes to free(). The block in a slot
 * is poisoned for AddressSanitizer and marked for valgrind (a use after iomem_disconnect() or iomem_region_free()
 * is still reported, see above) and freed when the library is unloaded or the process exits (recycle_drain()).
 */

/* Return: a block of @size bytes (uninitialised, as malloc's), the slot's if it holds one; NULL (-ENOMEM). */
static inline void *recycle_take(void **slot, size_t size)
{
        void *p = __atomic_exchange_n(slot, NULL, __ATOMIC_ACQUIRE);

        if (!p)
                return malloc(size);
        ASAN_UNPOISON_MEMORY_REGION(p, size);
        RECYCLE_VG_TAKE(p, size);
        return p;
}

/* Give @p (@size bytes, from recycle_take(); NULL is ignored) back: into the slot, or to free() if it is full. */
static inline void recycle_give(void **slot, void *p, size_t size)
{
        void *old;

        if (!p)
                return;
        ASAN_POISON_MEMORY_REGION(p, size);
        RECYCLE_VG_GIVE(p, size);
        old = __atomic_exchange_n(slot, p, __ATOMIC_ACQ_REL);
        if (old == p)
                return; /* the caller's double free, its block still here: kept once, not also given to free() */
        p = old;
        if (p) {
                ASAN_UNPOISON_MEMORY_REGION(p, size);
                RECYCLE_VG_FREE(p, size);
                free(p);
        }
}

/* Free what the slot holds (at unload or exit). */
static inline void recycle_drain(void **slot, size_t size)
{
        void *p = __atomic_exchange_n(slot, NULL, __ATOMIC_ACQUIRE);

        if (p) {
                ASAN_UNPOISON_MEMORY_REGION(p, size);
                RECYCLE_VG_FREE(p, size);
                free(p);
        }
}
