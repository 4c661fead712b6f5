#!/bin/bash
# usage: run.sh ROUNDS N
R=$1 N=$2
run_iomemd() {
  rm -f /tmp/exp/d.sock; taskset -c 0 /work/main/build/daemon/iomemd --socket /tmp/exp/d.sock --backend memfd --log-level warning & local D=$!
  for i in $(seq 50); do [ -S /tmp/exp/d.sock ] && break; sleep 0.1; done
  /work/main/build/bench/iomem-count /tmp/exp/d.sock cold-map 1 100 >/dev/null
  echo "iomemd $(taskset -c 0 ./cold /tmp/exp/d.sock $N)"; kill $D; wait $D 2>/dev/null
}
run_replay() { # name env...
  local name=$1; shift
  env "$@" taskset -c 0 ./replay /tmp/exp/r.sock & local D=$!; sleep 0.2
  echo "$name $(taskset -c 0 ./cold /tmp/exp/r.sock $N)"; kill $D; wait $D 2>/dev/null
}
for r in $(seq $R); do
  run_iomemd
  run_replay replay X=1
  run_replay replay+all PEERCRED=1 OUTQ=1 DEL=1 SEALS=1
done
