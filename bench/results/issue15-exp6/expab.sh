#!/bin/bash
# expab2.sh OUT ROUNDS ENVSPEC...: ENVSPEC like "A=1,B=1" or none
out=$1 rounds=$2; shift 2; mkdir -p $out
B=/work/wt/exp/build
for r in $(seq $rounds); do for v in "$@"; do
  e=""; [ $v != none ] && e=$(echo $v | tr ',' ' ')
  env $e $B/bench/iomem-bench --only floor,regions --iomemd $B/daemon/iomemd --json $out/$v-$r.jsonl >/dev/null 2>&1
done; done
python3 - $out $rounds "$@" <<'PY'
import json,statistics,sys
out,rounds,vs=sys.argv[1],int(sys.argv[2]),sys.argv[3:]
for v in vs:
  rows=[]
  for r in range(1,rounds+1):
    d={}
    for l in open(f"{out}/{v}-{r}.jsonl"):
      o=json.loads(l)
      if "scenario" in o: d[o["scenario"]]=o
    f,s,g=(d[k]["p50_us"] for k in ("floor-cold","cold-small-table","cold-big-table"))
    rows.append((f,s,g,f/s,f/g))
  print(f"{v:40s}", " ".join(f"{statistics.median(x[i] for x in rows):.3f}" for i in range(5)), " small:", " ".join(f"{x[3]:.3f}" for x in rows))
PY
