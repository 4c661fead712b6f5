#!/usr/bin/env python3
"""callgrind-diff.py: per-operation self cost by function, from two callgrind_annotate outputs (N and 2N runs).

Usage: bench/callgrind-diff.py callgrind.out.N callgrind.out.2N N [TOP]
"""
import re
import subprocess
import sys


def costs(path):
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", path], capture_output=True, text=True,
                         check=True).stdout
    d = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        fn = re.sub(r"\s*\[(.*)\]$", lambda o: " [" + o.group(1).rsplit("/", 1)[-1] + "]", m.group(2).strip())
        fn = re.sub(r"^[^ ]*:(?=[^:/ ]+ \[)", "", fn)
        d[fn] = d.get(fn, 0) + int(m.group(1).replace(",", ""))
    return d


a, b, n = costs(sys.argv[1]), costs(sys.argv[2]), int(sys.argv[3])
top = int(sys.argv[4]) if len(sys.argv) > 4 else 20
diff = {k: (b.get(k, 0) - a.get(k, 0)) / n for k in set(a) | set(b)}
total = sum(diff.values())
print(f"{'Ir/op':>8}  function   (total {total:.0f} Ir/op)")
for k, v in sorted(diff.items(), key=lambda kv: -kv[1])[:top]:
    print(f"{v:8.0f}  {k}")
