#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""parent_child: the seed guide's first scenario. A parent writes, a forked child reads and answers."""

import os
import sys

from _shared import make_region, open_region, parse_args

args = parse_args(__doc__)
message = b"Hello from parent!"

with make_region(args, 1024) as handle:
    buffer = memoryview(handle)  # the region's memory itself: no copy
    buffer[0:len(message)] = message

    pid = os.fork()
    if pid == 0:
        # the child has the parent's mapping and fd; it maps the region again, as the guide's child does
        with open_region(args, handle) as mine, memoryview(mine) as child_buffer:
            received = bytes(child_buffer[0:len(message)])
            print(f"child received: {received.decode()}", flush=True)
            child_buffer[100:117] = b"Hello from child!"
        os._exit(0 if received == message else 1)

    _, status = os.waitpid(pid, 0)
    response = bytes(buffer[100:117])
    print(f"parent received: {response.decode()}")
    buffer.release()

sys.exit(0 if os.waitstatus_to_exitcode(status) == 0 and response == b"Hello from child!" else 1)
