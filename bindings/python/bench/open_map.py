#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""open_map: the Python binding's overhead. OPEN a named region + map it + touch a byte + unmap + close, from
Python (iomem.Client.open + memoryview) and from C (iomem_open + iomem_region_map, bench/open-map.c), against
the same iomemd in the same run, rounds alternating. Prints the median time per operation of each, wall clock
and the client process's own CPU time (the daemon's work is the same for both), and the median of the
per-round ratios Python / C.

Usage: open_map.py IOMEMD OPEN_MAP_BINARY [--iterations N] [--rounds R] [--size BYTES]
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import iomem


def python_round(sock, name, n):
    """Return: (wall ns, CPU ns) per operation."""
    with iomem.Client(sock) as c:
        t0, c0 = time.perf_counter_ns(), time.process_time_ns()
        for _ in range(n):
            with c.open(name) as r:
                m = memoryview(r)
                m[0]
                m.release()
        return (time.perf_counter_ns() - t0) / n, (time.process_time_ns() - c0) / n


def wait_for_socket(path):
    for _ in range(1000):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(0.01)
        finally:
            s.close()
    raise RuntimeError("iomemd did not start")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("iomemd")
    p.add_argument("open_map")
    p.add_argument("--iterations", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--size", type=int, default=1 << 20)
    args = p.parse_args()

    tmp = tempfile.mkdtemp(prefix="iomem-bench-py.")
    sock = os.path.join(tmp, "sock")
    daemon = subprocess.Popen([args.iomemd, "--socket", sock, "--tmpdir", tmp, "--log-level", "warning"])
    try:
        wait_for_socket(sock)
        with iomem.Client(sock) as c, c.create("bench", args.size):
            py, cc = [], []
            for _ in range(args.rounds):
                out = subprocess.run([args.open_map, sock, "bench", str(args.iterations)], capture_output=True,
                                     text=True, check=True)
                cc.append(tuple(float(x) for x in out.stdout.split()))
                py.append(python_round(sock, "bench", args.iterations))
        print(f"OPEN+map of a {args.size}-byte region, {args.iterations} x {args.rounds} rounds (median):")
        for i, what in enumerate(("wall", "cpu ")):
            p_ns = statistics.median(x[i] for x in py)
            c_ns = statistics.median(x[i] for x in cc)
            ratios = sorted(a[i] / b[i] for a, b in zip(py, cc))  # each Python round against the C one before it
            print(f"  {what}  C {c_ns / 1000:6.2f} us/op  Python {p_ns / 1000:6.2f} us/op  "
                  f"ratio {statistics.median(ratios):.2f} (rounds {ratios[0]:.2f} to {ratios[-1]:.2f})")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
