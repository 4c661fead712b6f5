# SPDX-License-Identifier: LGPL-2.1-or-later
"""npshm: a numpy array in a region, as numpy_producer.py writes it and numpy_consumer.py reads it.

Header (64 bytes, little-endian): magic b"NPSHM\\0\\0\\0", u32 ready, u32 reserved, dtype string (16 bytes,
NUL-padded, numpy's dtype.str such as "<f8"), u64 count; the data starts at byte 64, a cache line.
The producer writes the data, then the header fields, then ready = 1 last. Python stores to a shared
mapping are ordinary stores: on x86 (total store order) a reader that sees ready = 1 sees the data; on
weakly ordered CPUs (ARM) pair this with a real synchronisation (a pipe, a socket, a futex).
"""

import struct
from typing import Any

import numpy as np
import numpy.typing as npt

import iomem

MAGIC = b"NPSHM\0\0\0"
HEADER = struct.Struct("<8sII16sQ")
HEADER_SIZE = 64


def array(region: iomem.Region, dtype: npt.DTypeLike, count: int) -> npt.NDArray[Any]:
    """The data part of @region as a numpy array (read-only if the region is): no copy."""
    data: npt.NDArray[Any] = np.frombuffer(region, dtype=dtype, count=count, offset=HEADER_SIZE)
    return data


def publish(region: iomem.Region, dtype: npt.DTypeLike, count: int) -> None:
    with memoryview(region) as m:
        HEADER.pack_into(m, 0, MAGIC, 0, 0, np.dtype(dtype).str.encode(), count)
        struct.pack_into("<I", m, 8, 1)  # ready, last


def read_header(region: iomem.Region) -> tuple[np.dtype[Any], int] | None:
    """Return: (dtype, count) once published, else None."""
    with memoryview(region) as m:
        magic, ready, _, dtype, count = HEADER.unpack_from(m, 0)
    if magic != MAGIC or ready != 1:
        return None
    return np.dtype(dtype.rstrip(b"\0").decode()), count
