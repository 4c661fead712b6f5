#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-examples: run every example; producer and consumer are unrelated processes meeting by name through iomemd.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
: "${IOMEM_EXAMPLES:?run through ctest (IOMEM_EXAMPLES unset)}"

for ex in parent-child worker-pool alignment; do
        "$IOMEM_EXAMPLES/$ex" >"$TMP/$ex.out" 2>&1 || fail "$ex: $(cat "$TMP/$ex.out")"
done
grep -q "child received: Hello from parent!" "$TMP/parent-child.out" || fail "parent-child output"
grep -q 'result from worker 2: "CPI ypoC oreZ"' "$TMP/worker-pool.out" || fail "worker-pool output"

for backend in memfd shm file; do
        start_daemon --backend "$backend"
        # the consumer starts first and waits for the name; the producer comes later
        "$IOMEM_EXAMPLES/consumer" "$SOCK" "ex.$backend" 30000 >"$TMP/consumer.out" 2>&1 &
        consumer=$!
        sleep 0.1
        rc=0
        "$IOMEM_EXAMPLES/producer" "$SOCK" "ex.$backend" "message via $backend" >"$TMP/producer.out" 2>&1 || rc=$?
        [ "$rc" -eq 0 ] || fail "producer ($backend): $(cat "$TMP/producer.out")"
        rc=0
        wait "$consumer" || rc=$?
        [ "$rc" -eq 0 ] || fail "consumer ($backend): $(cat "$TMP/consumer.out")"
        grep -q "received \"message via $backend\"" "$TMP/consumer.out" || fail "consumer output ($backend)"
        # the producer's lease ended: the name is gone
        for _ in $(seq 1 100); do ctl stat "ex.$backend" >/dev/null 2>&1 || break; sleep 0.02; done
        ctl stat "ex.$backend" >/dev/null 2>&1 && fail "ex.$backend survived its producer"
        # a consumer with nobody producing gives up with an error
        if "$IOMEM_EXAMPLES/consumer" "$SOCK" ex.nobody 100 >/dev/null 2>&1; then
                fail "consumer without producer succeeded ($backend)"
        fi
        stop_daemon
done
# issue 12: a libevent consumer reacting to frames published at 1 kHz (it may skip frames, never see a torn one)
start_daemon
"$IOMEM_EXAMPLES/frame-consumer" "$SOCK" frames 500 >"$TMP/frame-consumer.out" 2>&1 &
consumer=$!
sleep 0.1
rc=0
"$IOMEM_EXAMPLES/frame-producer" "$SOCK" frames 500 >"$TMP/frame-producer.out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "frame-producer: $(cat "$TMP/frame-producer.out")"
rc=0
wait "$consumer" || rc=$?
[ "$rc" -eq 0 ] || fail "frame-consumer: $(cat "$TMP/frame-consumer.out")"
grep -q "the last 500$" "$TMP/frame-consumer.out" || fail "frame-consumer output: $(cat "$TMP/frame-consumer.out")"
# README.md's "Examples" lines, as written, from the source tree (build/ is this build; the Python and Ruby lines
# need their binding built), with $IOMEM_SOCKET naming a running daemon
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$IOMEM_EXAMPLES/.." && pwd)
# in a sanitizer build the bindings need libasan preloaded into python3 and ruby, which a reader of README.md does
# not do: there the lines are the normal build's, and the bindings' own suites run the examples with the preload
bindings=true
grep -q '^IOMEM_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null && bindings=false
readme_lines=$(awk '/^## /{ on = ($0 == "## Examples") } on && /^    [^ ]/' "$src/README.md")
[ "$(echo "$readme_lines" | grep -c .)" -ge 9 ] || fail "README.md's Examples section has no command lines"
while IFS= read -r line; do
        line=${line#    }
        case $line in
        *build/bindings/python*) $bindings && [ -d "$build/bindings/python/iomem" ] || continue ;;
        *build/bindings/ruby*) $bindings && [ -e "$build/bindings/ruby/iomem_ext.so" ] || continue ;;
        esac
        rc=0
        (cd "$src" && IOMEM_SOCKET=$SOCK bash -c "${line//build\//$build/}") \
                >"$TMP/readme.out" 2>&1 </dev/null || rc=$?
        [ "$rc" -eq 0 ] || fail "README.md's example '$line' exited $rc: $(cat "$TMP/readme.out")"
done <<<"$readme_lines"
stop_daemon
finish
