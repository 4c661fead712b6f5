#!/bin/bash
# cg.sh TABLE OPS: the daemon's instructions and cache misses for TABLE regions + OPS random OPENs
D=/work/wt/table/build/daemon/iomemd; table=$1 ops=$2
dir=$(mktemp -d); f=/tmp/tmb/cg.$table.$ops
valgrind --tool=callgrind --cache-sim=yes --vgdb=no --callgrind-out-file=$f $D --socket $dir/s --backend memfd --log-level warning --max-regions 2000000 --max-connections 1000000 2>$dir/vg.log &
pid=$!
for _ in $(seq 600); do [ -S $dir/s ] && break; sleep 0.1; done
LD_LIBRARY_PATH=/work/wt/table/build/client /tmp/tmb/opens $dir/s create $table
LD_LIBRARY_PATH=/work/wt/table/build/client /tmp/tmb/opens $dir/s open 0 $table $ops
kill -TERM $pid; wait $pid; rm -rf $dir
grep -E "^(events|summary):" $f
