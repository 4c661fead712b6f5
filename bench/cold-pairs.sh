#!/bin/bash
# cold-pairs.sh: alternate iomem-bench --only floor,regions between two builds, PAIRS times, and summarize the
# cold rows against the cold floor (issue 15's target: >= 0.8), in two ways: the old, against floor-cold measured
# once at the start of the run ("old" columns), and the verdict's since the adjacent floor, against
# floor-cold-small / floor-cold-big, measured in alternating rounds with each cold row ("adj" columns; "-" in
# runs of a bench that predates them).
# Usage: bench/cold-pairs.sh BUILD_BEFORE BUILD_AFTER PAIRS OUTDIR
#        bench/cold-pairs.sh BUILD - RUNS OUTDIR        (one build only: OUTDIR/run-N.jsonl)
#        bench/cold-pairs.sh --summary OUTDIR           (summarize the runs already in OUTDIR again)
# Each build runs its own iomem-bench (linked to its own libiomem) against its own iomemd. Writes
# OUTDIR/{before,after}-N.jsonl and OUTDIR/summary.txt (one line per run, then median, min and max per side).
set -euo pipefail
if [ "$1" = --summary ]; then
        out=$2
else
        before=$1 after=$2 pairs=$3 out=$4
        mkdir -p "$out"
        sides="before after"
        [ "$after" = - ] && sides=run
        for i in $(seq "$pairs"); do
                for side in $sides; do
                        b=$before
                        [ "$side" = after ] && b=$after
                        "$b/bench/iomem-bench" --only floor,regions --iomemd "$b/daemon/iomemd" \
                                --json "$out/$side-$i.jsonl" >/dev/null
                done
        done
fi
python3 - "$out" <<'PY' | tee "$out/summary.txt"
import glob, json, os, re, statistics, sys
out = sys.argv[1]
cols = ["floor-cold-p50", "cold-small-p50", "cold-big-p50",
        "old:floor/small-p50", "old:floor/big-p50", "old:small/floor-ops", "old:big/floor-ops",
        "floor-small-p50", "floor-big-p50",
        "adj:floor/small-p50", "adj:floor/big-p50", "adj:small/floor-ops", "adj:big/floor-ops"]
runs = {}
for path in glob.glob(f"{out}/*-*.jsonl"):
    m = re.fullmatch(r"(\w+)-(\d+)\.jsonl", os.path.basename(path))
    if m:
        runs.setdefault(m[1], []).append(int(m[2]))
sides = [s for s in ("before", "after", "run") if s in runs] + sorted(set(runs) - {"before", "after", "run"})


def fmt(v):
    return "-" if v is None else f"{v:.3f}" if v < 1 else f"{v:.2f}"


print("run side " + " ".join(cols))
rows = {s: [] for s in sides}
for i in sorted(set(n for s in sides for n in runs[s])):
    for side in sides:
        if i not in runs[side]:
            continue
        d, t = {}, {}
        for line in open(f"{out}/{side}-{i}.jsonl"):
            o = json.loads(line)
            if "scenario" in o:
                d[o["scenario"]] = o
            if "target" in o:
                t[o["target"]] = o["value"]
        f, s, g = (d[k]["p50_us"] for k in ("floor-cold", "cold-small-table", "cold-big-table"))
        row = [f, s, g, f / s, f / g, t["cold small/floor ops"], t["cold big/floor ops"]]
        if "floor-cold-small" in d and "floor-cold-big" in d:
            fs, fb = d["floor-cold-small"]["p50_us"], d["floor-cold-big"]["p50_us"]
            row += [fs, fb, fs / s, fb / g, t["cold small/adj-floor ops"], t["cold big/adj-floor ops"]]
        else:
            row += [None] * 6
        rows[side].append(row)
        print(f"{i} {side} " + " ".join(fmt(v) for v in row))
for side in sides:
    for name, fn in (("median", statistics.median), ("min", min), ("max", max)):
        vals = []
        for k in range(len(cols)):
            col = [r[k] for r in rows[side] if r[k] is not None]
            vals.append(fn(col) if col else None)
        print(f"{name} {side} " + " ".join(fmt(v) for v in vals))
for side in sides:
    for label, k in (("old small", 5), ("old big", 6), ("adj small", 11), ("adj big", 12)):
        col = [r[k] for r in rows[side] if r[k] is not None]
        if col:
            print(f"{side}: {label}/floor ops >= 0.8 in {sum(v >= 0.8 for v in col)} of {len(col)} runs")
PY
