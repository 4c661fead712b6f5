#!/bin/bash
N=100000
measure() { # label sock client
  perf stat -C 0 -e context-switches,cpu-migrations -x, -o /tmp/exp/cs.txt -- taskset -c 0 $3 $2 $N > /tmp/exp/t.txt
  echo "$1 $(cat /tmp/exp/t.txt) cs/op=$(awk -F, '/context-switches/ {printf "%.2f", $1/('$N'*1.1)}' /tmp/exp/cs.txt)"
}
rm -f /tmp/exp/d.sock; taskset -c 0 /work/main/build/daemon/iomemd --socket /tmp/exp/d.sock --backend memfd --log-level warning & D=$!
for i in $(seq 50); do [ -S /tmp/exp/d.sock ] && break; sleep 0.1; done
/work/main/build/bench/iomem-count /tmp/exp/d.sock cold-map 1 100 >/dev/null
measure lib-iomemd /tmp/exp/d.sock ./cold
measure raw-iomemd /tmp/exp/d.sock ./rawcold
kill $D; wait $D 2>/dev/null
taskset -c 0 ./replay /tmp/exp/r.sock & D=$!; sleep 0.2
measure lib-replay /tmp/exp/r.sock ./cold
measure raw-replay /tmp/exp/r.sock ./rawcold
kill $D; wait $D 2>/dev/null
