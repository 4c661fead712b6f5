#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""plot: ops/s and latency against the number of clients, from iomem-bench JSON lines, as a PNG."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot.py RESULTS.jsonl OUT.png")
    rows = []
    meta = {}
    with open(sys.argv[1]) as f:
        for line in f:
            obj = json.loads(line)
            if obj.get("meta"):
                meta = obj
            elif obj.get("scenario", "").startswith("clients-"):
                rows.append(obj)
    if not rows:
        sys.exit("no clients-N scenarios in the input")
    rows.sort(key=lambda r: r["clients"])
    n = [r["clients"] for r in rows]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(n, [r["ops_per_s"] for r in rows], "o-", label="OPEN + mmap + munmap + close")
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(n, [str(x) for x in n])
    ax1.set_xlabel("concurrent clients")
    ax1.set_ylabel("ops/s (all clients)")
    ax1.set_ylim(bottom=0)
    ax1.grid(True, alpha=0.3)
    ax1.legend(loc="lower left")
    for key, label in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")):
        ax2.plot(n, [r[key] for r in rows], "o-", label=label)
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xticks(n, [str(x) for x in n])
    ax2.set_xlabel("concurrent clients")
    ax2.set_ylabel("latency per op (us)")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(loc="upper left")
    fig.suptitle(f"iomemd, {meta.get('cpus', '?')} CPUs, Linux {meta.get('kernel', '?')} ({meta.get('mode', '?')} run)")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=100)


if __name__ == "__main__":
    main()
