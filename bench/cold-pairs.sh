#!/bin/bash
# cold-pairs.sh: alternate iomem-bench --only floor,regions between two builds, PAIRS times, and summarize the
# cold rows against the cold floor measured in the same run (issue 15's target: >= 0.8).
# Usage: bench/cold-pairs.sh BUILD_BEFORE BUILD_AFTER PAIRS OUTDIR
# Each build runs its own iomem-bench (linked to its own libiomem) against its own iomemd. Writes
# OUTDIR/{before,after}-N.jsonl and OUTDIR/summary.txt (one line per run, then medians per side).
set -euo pipefail
before=$1 after=$2 pairs=$3 out=$4
mkdir -p "$out"
for i in $(seq "$pairs"); do
        for side in before after; do
                b=$before
                [ "$side" = after ] && b=$after
                "$b/bench/iomem-bench" --only floor,regions --iomemd "$b/daemon/iomemd" \
                        --json "$out/$side-$i.jsonl" >/dev/null
        done
done
python3 - "$out" "$pairs" <<'PY' | tee "$out/summary.txt"
import json, statistics, sys
out, pairs = sys.argv[1], int(sys.argv[2])
cols = ["floor-cold-p50", "cold-small-p50", "cold-big-p50", "floor/small-p50", "floor/big-p50",
        "small/floor-ops", "big/floor-ops"]
print("pair side " + " ".join(cols))
med = {"before": [], "after": []}
for i in range(1, pairs + 1):
    for side in ("before", "after"):
        d, t = {}, {}
        for line in open(f"{out}/{side}-{i}.jsonl"):
            o = json.loads(line)
            if "scenario" in o:
                d[o["scenario"]] = o
            if "target" in o:
                t[o["target"]] = o["value"]
        f, s, g = (d[k]["p50_us"] for k in ("floor-cold", "cold-small-table", "cold-big-table"))
        row = [f, s, g, f / s, f / g, t["cold small/floor ops"], t["cold big/floor ops"]]
        med[side].append(row)
        print(f"{i} {side} " + " ".join(f"{v:.3f}" if v < 1 else f"{v:.2f}" for v in row))
for side in ("before", "after"):
    m = [statistics.median(r[k] for r in med[side]) for k in range(len(cols))]
    print(f"median {side} " + " ".join(f"{v:.3f}" if v < 1 else f"{v:.2f}" for v in m))
PY
