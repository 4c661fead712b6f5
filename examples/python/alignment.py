#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""alignment: the seed guide's performance notes. Records at cache-line aligned offsets, one batch write
instead of many small ones, and a numpy view whose rows start on cache lines."""

import ctypes
import sys

import numpy as np

from _shared import make_region, parse_args

CACHE_LINE_SIZE = 64


def aligned_offset(offset: int) -> int:
    return (offset + CACHE_LINE_SIZE - 1) & ~(CACHE_LINE_SIZE - 1)


args = parse_args(__doc__)
ok = True
with make_region(args, 4096) as handle, memoryview(handle) as buffer:
    base = ctypes.addressof(ctypes.c_char.from_buffer(buffer))  # a mapping starts on a page boundary
    ok &= base % CACHE_LINE_SIZE == 0
    for wanted, data in ((0, b"Data 1"), (100, b"Data 2"), (200, b"Data 3")):
        offset = aligned_offset(wanted)
        buffer[offset:offset + len(data)] = data
        print(f"{data.decode()} at offset {offset}")
        ok &= offset % CACHE_LINE_SIZE == 0 and (base + offset) % CACHE_LINE_SIZE == 0
    ok &= [aligned_offset(x) for x in (0, 100, 200, 257)] == [0, 128, 256, 320]

    # batch operations: one slice assignment instead of one write per byte
    buffer[1024:1027] = b"ABC"
    ok &= bytes(buffer[1024:1027]) == b"ABC"

    # numpy: 8 rows of 8 float64 each fill exactly one cache line; the array is the region's memory
    rows = np.frombuffer(handle, dtype=np.float64, count=64, offset=2048).reshape(8, 8)
    rows[:] = np.arange(64).reshape(8, 8)
    ok &= rows.ctypes.data % CACHE_LINE_SIZE == 0 and rows.strides[0] == CACHE_LINE_SIZE
    ok &= np.frombuffer(bytes(buffer[2048:2048 + 512]), dtype=np.float64).sum() == sum(range(64))
    del rows
    del base
print("alignment ok" if ok else "alignment FAILED")
sys.exit(0 if ok else 1)
