#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""fd_passing: the seed guide's second scenario. The region's fd goes to a child over a Unix socket (SCM_RIGHTS)."""

import os
import socket
import sys

import iomem
from _shared import make_region, parse_args

args = parse_args(__doc__)
parent_socket, child_socket = socket.socketpair()

pid = os.fork()
if pid == 0:
    parent_socket.close()
    # receive the fd, wrap it (Region.from_fd works on a duplicate), map it, answer through the memory
    fds = socket.recv_fds(child_socket, 16, 1)[1]
    with iomem.Region.from_fd(fds[0]) as received, memoryview(received) as buffer:
        os.close(fds[0])
        print(f"child read: {bytes(buffer[0:23]).decode()}", flush=True)
        buffer[1000:1020] = b"Data from child proc"
    child_socket.sendall(b"Child processing complete")
    child_socket.close()
    os._exit(0)

child_socket.close()
with make_region(args, 2048) as handle, memoryview(handle) as buffer:
    buffer[0:23] = b"Shared data from parent"
    socket.send_fds(parent_socket, [b"fd"], [handle.fileno()])
    response = parent_socket.recv(100)
    print(f"parent received: {response.decode()}")
    child_data = bytes(buffer[1000:1020])
    print(f"child wrote: {child_data.decode()}")

status = os.waitpid(pid, 0)[1]
parent_socket.close()
sys.exit(0 if os.waitstatus_to_exitcode(status) == 0 and child_data == b"Data from child proc" else 1)
