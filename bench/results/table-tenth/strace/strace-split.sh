#!/bin/bash
# strace-split.sh IOMEMD OUTDIR: syscalls per OPEN in the daemon, held vs parked names (2000 regions, budget 1000)
set -e
D=$1; out=$2; mkdir -p $out
dir=$(mktemp -d); sock=$dir/s
$D --socket $sock --backend memfd --log-level warning --max-connections 1000000 --max-regions 2000000 --max-region-fds 1000 &
dpid=$!
for i in $(seq 100); do [ -S $sock ] && break; sleep 0.05; done
LD_LIBRARY_PATH=/work/wt/table/build/client /tmp/tmb/opens $sock create 2000
for what in held:0:990 parked:1010:990 parked-ro:1010:990:ro; do
  IFS=: read name first count ro <<< "$what"
  strace -c -f -p $dpid -o $out/strace-$name.txt &
  spid=$!; sleep 0.5
  LD_LIBRARY_PATH=/work/wt/table/build/client /tmp/tmb/opens $sock open $first $count 10000 $ro
  sleep 0.2; kill -INT $spid; wait $spid || true
done
kill $dpid; wait $dpid || true; rm -rf $dir
