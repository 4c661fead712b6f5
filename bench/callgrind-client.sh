#!/bin/bash
# callgrind-client.sh: libiomem's instructions per operation (the client side), counted by callgrind.
# Usage: bench/callgrind-client.sh IOMEMD IOMEM-COUNT MODE N [TABLE] [OUTDIR]
# Starts iomemd (not under valgrind), then runs iomem-count under callgrind twice, with N and 2N operations of MODE
# (see bench/iomem-count.c); prints "MODE table=TABLE ir_per_op=X" where X = (Ir(2N) - Ir(N)) / N (set-up and
# start-up cancel out), and keeps the two callgrind.out files in OUTDIR (default: a temporary directory) for
# callgrind_annotate or bench/callgrind-diff.py. The count includes iomem-count's own loop (a few dozen Ir/op).
set -euo pipefail
iomemd=$1 count=$2 mode=$3 n=$4 table=${5:-0}
out=${6:-$(mktemp -d)}
mkdir -p "$out"
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; rm -rf "$dir"' EXIT

"$iomemd" --socket "$dir/s" --backend memfd --log-level warning --max-regions 2000000 --max-connections 1000000 &
pid=$!
for _ in $(seq 600); do [ -S "$dir/s" ] && break; sleep 0.1; done
"$count" "$dir/s" "$mode" 10 "$table" >/dev/null # warm up: the daemon's tables, the first regions

run() { # $1 = operations; prints the client's total Ir
        local file="$out/callgrind-client.$mode.$table.$1"
        valgrind --tool=callgrind --vgdb=no --callgrind-out-file="$file" "$count" "$dir/s" "$mode" "$1" "$table" \
                >/dev/null 2>"$dir/vg.log"
        awk '/^summary:/ { print $2 }' "$file"
}

a=$(run "$n")
b=$(run $((2 * n)))
kill -TERM "$pid"
wait "$pid" || true
pid=
echo "$mode table=$table n=$n ir_n=$a ir_2n=$b ir_per_op=$(( (b - a) / n ))"
