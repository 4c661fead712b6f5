#!/bin/bash
R=$1 N=$2
for r in $(seq $R); do
  rm -f /tmp/exp/d.sock; taskset -c 0 /work/main/build/daemon/iomemd --socket /tmp/exp/d.sock --backend memfd --log-level warning & D=$!
  for i in $(seq 50); do [ -S /tmp/exp/d.sock ] && break; sleep 0.1; done
  /work/main/build/bench/iomem-count /tmp/exp/d.sock cold-map 1 100 >/dev/null
  echo "lib->iomemd $(taskset -c 0 ./cold /tmp/exp/d.sock $N)"
  echo "raw->iomemd $(taskset -c 0 ./rawcold /tmp/exp/d.sock $N)"
  kill $D; wait $D 2>/dev/null
  taskset -c 0 ./replay /tmp/exp/r.sock & D=$!; sleep 0.2
  echo "lib->replay $(taskset -c 0 ./cold /tmp/exp/r.sock $N)"
  echo "raw->replay $(taskset -c 0 ./rawcold /tmp/exp/r.sock $N)"
  kill $D; wait $D 2>/dev/null
done
