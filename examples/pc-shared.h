/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* pc-shared: the layout producer.c and consumer.c agree on inside their shared region. */
#pragma once

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define PC_REGION_SIZE 4096
#define PC_TEXT_MAX 1024

/*
 * Lock-free atomics work between processes on a shared mapping: the
 * producer fills text then publishes it with a release store of ready; the
 * consumer answers the same way through ack.
 */
struct pc_page {
        _Atomic uint32_t ready; /* 1 once message is complete */
        _Atomic uint32_t ack;   /* 1 once reply is complete */
        char message[PC_TEXT_MAX];
        char reply[PC_TEXT_MAX];
};

_Static_assert(sizeof(struct pc_page) <= PC_REGION_SIZE, "layout fits the region");

/* Spin politely until *flag is 1, for at most @timeout_ms. Return: 1 if set, 0 on timeout. */
static inline int pc_wait_flag(_Atomic uint32_t *flag, int timeout_ms)
{
        struct timespec pause = { 0, 1000000 }; /* 1 ms */

        for (int waited = 0; waited <= timeout_ms; waited++) {
                if (atomic_load_explicit(flag, memory_order_acquire) == 1)
                        return 1;
                nanosleep(&pause, NULL);
        }
        return 0;
}
