#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""mp_workers: a multiprocessing pool whose workers share one named region (a numpy matrix) in iomemd.

Usage: mp_workers.py SOCKET [WORKERS]

The workers are started with "spawn" (fresh interpreters, nothing inherited): each one opens the region
by name and squares its own rows in place. Nothing but the name and row numbers goes through the pool's
pipes; the parent sees the results in the same memory.
"""

import multiprocessing
import os
import sys

import numpy as np
import numpy.typing as npt

import iomem

ROWS, COLS = 64, 4096
_matrix: npt.NDArray[np.float64] | None = None  # per worker: the shared matrix


def init_worker(socket_path: str, name: str) -> None:
    global _matrix
    with iomem.Client(socket_path) as client:
        region = client.open(name)  # the connection may close: the region and its mapping stay
    _matrix = np.frombuffer(region, dtype=np.float64).reshape(ROWS, COLS)


def square_rows(rows: tuple[int, int]) -> int:
    start, stop = rows
    assert _matrix is not None  # init_worker() ran
    np.square(_matrix[start:stop], out=_matrix[start:stop])
    return os.getpid()


def main() -> int:
    socket_path = sys.argv[1]
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    name = f"mp_workers.{os.getpid()}"
    with iomem.Client(socket_path) as client:
        # leased: the name goes away with this connection, even if we crash
        with client.create(name, ROWS * COLS * 8, exclusive=True, lease=True) as region:
            matrix = np.frombuffer(region, dtype=np.float64).reshape(ROWS, COLS)
            matrix[:] = np.arange(ROWS * COLS, dtype=np.float64).reshape(ROWS, COLS)
            chunks = [(i, i + ROWS // (workers * 2)) for i in range(0, ROWS, ROWS // (workers * 2))]
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers, initializer=init_worker, initargs=(socket_path, name)) as pool:
                pids = set(pool.map(square_rows, chunks))
            ok = np.array_equal(matrix, np.square(np.arange(ROWS * COLS, dtype=np.float64)).reshape(ROWS, COLS))
            print(f"mp_workers: {len(pids)} worker processes squared {ROWS}x{COLS} in place: "
                  f"{'correct' if ok else 'WRONG'}")
            del matrix
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
