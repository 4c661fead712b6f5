/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* closer: closes fds that clients sent, on a thread of its own. */
#pragma once

/*
 * close() can block: the last close of a file on FUSE waits for its server's
 * answer to FLUSH, and a hostile local user can run a server that never
 * answers. Closing a client's fd on the event loop would then stall every
 * client. The transport hands such closes to closer_close(), which queues
 * them to one thread through a pipe; if the queue is full (the thread is
 * stuck and 16,384 fds wait), the close happens inline.
 */

/* closer_start() - start the thread and make it the transport's closer. Return: 0 or negative errno. */
int closer_start(void);

/* closer_stop() - close what is queued, stop the thread. Return: nothing. */
void closer_stop(void);

/* closer_close() - close @fd soon, not necessarily now. Return: nothing. */
void closer_close(int fd);
