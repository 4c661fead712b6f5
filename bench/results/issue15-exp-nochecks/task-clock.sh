#!/bin/bash
# per-op: context switches, user/kernel instructions, task-clock; floor replica vs iomemd, both pinned on CPU 0
N=${1:-20000}
pkill -f "fl server" ; pkill -f "iomemd --socket /tmp/st/s"; sleep 0.3
(taskset -c 0 setsid /tmp/fl/fl server /tmp/fl/s >/dev/null 2>&1 &); sleep 0.3
spid=$(pgrep -f "fl server /tmp/fl/s")
taskset -c 0 /tmp/fl/fl client /tmp/fl/s 2000
(perf stat -x, -e context-switches,instructions:u,instructions:k,task-clock -p $spid -o /tmp/fl/s.txt &) ; sleep 0.3
perf stat -x, -e context-switches,instructions:u,instructions:k,task-clock -o /tmp/fl/c.txt taskset -c 0 /tmp/fl/fl client /tmp/fl/s $N
pkill -INT -f "perf stat -x, -e context-switches,instructions:u,instructions:k,task-clock -p"; sleep 0.3
(taskset -c 0 setsid ${IOMEMD:-/tmp/b/daemon/iomemd} --socket /tmp/st/s >/dev/null 2>&1 &); sleep 0.5
dpid=$(pgrep -f "iomemd --socket /tmp/st/s")
taskset -c 0 /tmp/b/bench/iomem-count /tmp/st/s cold-map 2000 100 >/dev/null
(perf stat -x, -e context-switches,instructions:u,instructions:k,task-clock -p $dpid -o /tmp/fl/d.txt &) ; sleep 0.3
perf stat -x, -e context-switches,instructions:u,instructions:k,task-clock -o /tmp/fl/i.txt taskset -c 0 /tmp/b/bench/iomem-count /tmp/st/s cold-map $N 100 >/dev/null
pkill -INT -f "perf stat -x, -e context-switches,instructions:u,instructions:k,task-clock -p"; sleep 0.3
pkill -f "fl server" ; pkill -f "iomemd --socket /tmp/st/s"
for f in s c d i; do echo "== $f"; grep -v '^#' /tmp/fl/$f.txt | grep . | awk -F, -v n=$N '{printf "%-20s %10.1f per op\n", $3, $1/n}'; done
