#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""numpy_producer: compute a numpy array directly in a named iomemd region, for any program to read.

Usage: numpy_producer.py SOCKET NAME [COUNT]

The region outlives this process (no lease): numpy_consumer.py, started before or after, unrelated to this
one, reads the array without a copy and may delete the name. Layout (npshm.py): a 64-byte header, then
the data, cache-line aligned.
"""

import sys

import numpy as np

import iomem
import npshm

socket_path, name = sys.argv[1], sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
dtype = np.dtype(np.float64)

with iomem.Client(socket_path) as client:
    # mode 0o644: other uids may open it read-only; exclusive: never scribble over someone else's region
    with client.create(name, npshm.HEADER_SIZE + count * dtype.itemsize, exclusive=True, mode=0o644) as region:
        array = npshm.array(region, dtype, count)  # the region's memory itself
        np.sin(np.arange(count, dtype=dtype) / count, out=array)  # computed in place: no copy into the region
        checksum = float(array.sum())
        del array
        npshm.publish(region, dtype, count)  # consumers see the header only after the data
print(f"producer: {count} x {dtype} in {name}, sum {checksum:.6f}")
