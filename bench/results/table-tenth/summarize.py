#!/usr/bin/env python3
"""summarize: medians and ranges of scenario-6 p50s over the alternating runs in a directory (per experiment prefix)."""
import collections
import glob
import json
import os
import statistics
import sys

d = sys.argv[1]
rows = collections.defaultdict(lambda: collections.defaultdict(list))
ratios = collections.defaultdict(lambda: collections.defaultdict(list))
for path in sorted(glob.glob(os.path.join(d, "*.jsonl"))):
    exp = os.path.basename(path).rsplit("-r", 1)[0]
    with open(path) as f:
        objs = [json.loads(line) for line in f]
    for o in objs:
        if "scenario" in o:
            rows[exp][o["scenario"]].append(o["p50_us"])
        elif "target" in o and o["value"] >= 0 and ("table" in o["target"] or "parked" in o["target"]):
            ratios[exp][o["target"]].append(o["value"])
for exp in sorted(rows):
    print(f"== {exp}")
    for scen, v in rows[exp].items():
        if "rss" in scen:
            continue
        print(f"  {scen:22s} p50 median {statistics.median(v):6.2f} us  range {min(v):6.2f}-{max(v):6.2f}  n={len(v)}")
    for t, v in ratios[exp].items():
        print(f"  [{t}] median {statistics.median(v):.3f}  range {min(v):.3f}-{max(v):.3f}  n={len(v)}")
