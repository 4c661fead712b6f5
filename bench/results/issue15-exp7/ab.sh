#!/bin/bash
# ab.sh ROUNDS N BUILD... : lib->iomemd cold-map per build (own daemon + own libiomem), pinned on CPU 0, alternating
R=$1 N=$2; shift 2
for b in "$@"; do gcc -O2 -I/work/main/client -o /tmp/exp/cold.$(echo $b | tr / _) /tmp/exp/cold.c -L$b/client -liomem -Wl,-rpath,$b/client; done
for r in $(seq $R); do
 for b in "$@"; do
  rm -f /tmp/exp/d.sock; taskset -c 0 $b/daemon/iomemd --socket /tmp/exp/d.sock --backend memfd --log-level warning & D=$!
  for i in $(seq 50); do [ -S /tmp/exp/d.sock ] && break; sleep 0.1; done
  $b/bench/iomem-count /tmp/exp/d.sock cold-map 1 100 >/dev/null
  echo "$b $(taskset -c 0 /tmp/exp/cold.$(echo $b | tr / _) /tmp/exp/d.sock $N)"
  kill $D; wait $D 2>/dev/null
 done
done
