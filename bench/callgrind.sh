#!/bin/bash
# callgrind.sh: the daemon's instructions per operation, counted by callgrind (same on a noisy machine).
# Usage: bench/callgrind.sh IOMEMD IOMEM-COUNT MODE N [TABLE] [OUTDIR]
# Runs iomemd under callgrind twice, driven by iomem-count with N and 2N operations of MODE (see
# bench/iomem-count.c); prints "MODE table=TABLE ir_per_op=X" where X = (Ir(2N) - Ir(N)) / N, and keeps the
# two callgrind.out files in OUTDIR (default: a temporary directory) for callgrind_annotate.
set -euo pipefail
iomemd=$1 count=$2 mode=$3 n=$4 table=${5:-0}
out=${6:-$(mktemp -d)}
mkdir -p "$out"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

run() { # $1 = operations; prints the daemon's total Ir
        local ops=$1 file="$out/callgrind.$mode.$table.$1" pid
        valgrind --tool=callgrind --vgdb=no --callgrind-out-file="$file" "$iomemd" --socket "$dir/s" --backend memfd \
                --log-level warning --max-regions 2000000 --max-connections 1000000 2>"$dir/vg.log" &
        pid=$!
        for _ in $(seq 600); do [ -S "$dir/s" ] && break; sleep 0.1; done
        "$count" "$dir/s" "$mode" "$ops" "$table"
        kill -TERM "$pid"
        wait "$pid" || true
        rm -f "$dir/s"
        awk '/^summary:/ { print $2 }' "$file"
}

a=$(run "$n")
b=$(run $((2 * n)))
echo "$mode table=$table n=$n ir_n=$a ir_2n=$b ir_per_op=$(( (b - a) / n ))"
