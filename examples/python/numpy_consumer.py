#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""numpy_consumer: read the array numpy_producer.py published, without copying it.

Usage: numpy_consumer.py SOCKET NAME [TIMEOUT_SECONDS] [--delete]

Opens NAME read-only, waiting for it if the producer has not created it yet, and maps it: the numpy array
is the producer's memory (read-only here: writing to it raises ValueError). --delete removes the name after.
"""

import sys
import time

import numpy as np

import iomem
import npshm

args = [a for a in sys.argv[1:] if a != "--delete"]
socket_path, name = args[0], args[1]
timeout = float(args[2]) if len(args) > 2 else 30.0

with iomem.Client(socket_path) as client:
    with client.open(name, read_only=True, wait=True, timeout=timeout) as region:
        deadline = time.monotonic() + timeout
        while (header := npshm.read_header(region)) is None:  # created, but maybe not filled yet
            if time.monotonic() > deadline:
                sys.exit("consumer: the producer never published")
            time.sleep(0.001)
        dtype, count = header
        array = npshm.array(region, dtype, count)
        assert not array.flags.writeable and not array.flags.owndata  # a read-only view of shared memory
        expected = np.sin(np.arange(count, dtype=dtype) / count)
        ok = np.array_equal(array, expected)
        print(f"consumer: {count} x {dtype} from {name}, sum {float(array.sum()):.6f}, "
              f"{'matches' if ok else 'DIFFERS'}")
        del array
    if "--delete" in sys.argv:
        client.delete(name)
sys.exit(0 if ok else 1)
