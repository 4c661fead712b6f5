#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-examples (Ruby): every seed-guide example in examples/ruby/, once with local regions (fork, send_io) and
# once with named regions of a real iomemd shared by unrelated Ruby programs (started here side by side, none
# forked from another); then Ruby and C programs sharing the same bytes (examples/producer.c, consumer.c).
set -euo pipefail
. "$(dirname "$0")/../integration/lib.sh"
: "${IOMEM_EXAMPLES:?run through ctest (IOMEM_EXAMPLES unset)}"
: "${IOMEM_RUBY_EXAMPLES:?run through ctest (IOMEM_RUBY_EXAMPLES unset)}"
RUBY=${RUBY:-ruby}
EX=$IOMEM_RUBY_EXAMPLES

# expect_out FILE PATTERN: the output must contain PATTERN
expect_out() {
        grep -q -- "$2" "$1" || fail "$(basename "$1"): no '$2' in: $(cat "$1")"
}

# local regions
for ex in parent_child send_io worker_pool alignment batch; do
        "$RUBY" "$EX/$ex.rb" local >"$TMP/$ex.local" 2>&1 || fail "$ex local: $(cat "$TMP/$ex.local")"
done
expect_out "$TMP/parent_child.local" "Child received: Hello from parent!"
expect_out "$TMP/parent_child.local" "Parent received: Hello from child!"
expect_out "$TMP/send_io.local" "Child wrote: Data from child proc"
expect_out "$TMP/worker_pool.local" 'result from worker 2: "CPI ypoC oreZ"'
expect_out "$TMP/alignment.local" "offset 256: Data 3"
expect_out "$TMP/batch.local" 'last "rec 0064........"'

# named regions: run_pair EXAMPLE ROLE_A ROLE_B: two unrelated programs; B starts first and waits for the name
run_pair() {
        local ex=$1 a=$2 b=$3 rc=0 pid
        "$RUBY" "$EX/$ex.rb" named "$SOCK" "ex.$ex" "$b" >"$TMP/$ex.$b" 2>&1 &
        pid=$!
        "$RUBY" "$EX/$ex.rb" named "$SOCK" "ex.$ex" "$a" >"$TMP/$ex.$a" 2>&1 || fail "$ex $a: $(cat "$TMP/$ex.$a")"
        wait "$pid" || rc=$?
        [ "$rc" -eq 0 ] || fail "$ex $b: $(cat "$TMP/$ex.$b")"
}

start_daemon
chmod 0755 "$TMP"
run_pair parent_child parent child
expect_out "$TMP/parent_child.child" "Child received: Hello from parent!"
expect_out "$TMP/parent_child.parent" "Parent received: Hello from child!"
run_pair send_io parent child
expect_out "$TMP/send_io.child" "Child read: Shared data from parent"
expect_out "$TMP/send_io.parent" "Child wrote: Data from child proc"
run_pair alignment writer reader
expect_out "$TMP/alignment.reader" "offset 128: Data 2"
run_pair batch writer reader
expect_out "$TMP/batch.reader" "read ABC and 64 records"

# the worker pool: one pool and three workers, four unrelated programs
pids=()
for id in 0 1 2; do
        "$RUBY" "$EX/worker_pool.rb" named "$SOCK" ex.pool worker "$TMP/ctrl" "$id" >"$TMP/worker.$id" 2>&1 &
        pids+=($!)
done
"$RUBY" "$EX/worker_pool.rb" named "$SOCK" ex.pool pool "$TMP/ctrl" 3 >"$TMP/pool" 2>&1 || fail "pool: $(cat "$TMP/pool")"
for id in 0 1 2; do
        wait "${pids[$id]}" || fail "worker $id: $(cat "$TMP/worker.$id")"
        expect_out "$TMP/worker.$id" "Worker $id finished"
done
expect_out "$TMP/pool" 'result from worker [0-2]: "CPI ypoC oreZ"'

# every name is gone: leases ended with their programs, signals were deleted by their readers
for _ in $(seq 1 100); do [ -z "$(ctl list 2>/dev/null)" ] && break; sleep 0.02; done
[ -z "$(ctl list)" ] || fail "names left behind: $(ctl list)"

# Ruby and C share the same bytes, each way round (consumer first: it waits for the name)
"$RUBY" "$EX/consumer.rb" "$SOCK" x.rb 30000 >"$TMP/rb-consumer" 2>&1 &
pid=$!
"$IOMEM_EXAMPLES/producer" "$SOCK" x.rb "from C to Ruby" >"$TMP/c-producer" 2>&1 || fail "C producer: $(cat "$TMP/c-producer")"
wait "$pid" || fail "Ruby consumer: $(cat "$TMP/rb-consumer")"
expect_out "$TMP/rb-consumer" 'received "from C to Ruby"'
expect_out "$TMP/c-producer" 'consumer replied "ack: from C to Ruby"'

"$IOMEM_EXAMPLES/consumer" "$SOCK" x.c 30000 >"$TMP/c-consumer" 2>&1 &
pid=$!
"$RUBY" "$EX/producer.rb" "$SOCK" x.c "from Ruby to C" >"$TMP/rb-producer" 2>&1 || fail "Ruby producer: $(cat "$TMP/rb-producer")"
wait "$pid" || fail "C consumer: $(cat "$TMP/c-consumer")"
expect_out "$TMP/c-consumer" 'received "from Ruby to C"'
expect_out "$TMP/rb-producer" 'consumer replied "ack: from Ruby to C"'

# sealed snapshots: an unrelated watcher reacts to each CREATED/PUBLISHED event of a publisher.
# run_snapshots WATCHER_CMD... -- PUBLISHER_CMD...: the watcher first; the publisher once its watch exists
run_snapshots() {
        local watcher=() pid
        while [ "$1" != -- ]; do watcher+=("$1"); shift; done
        shift
        "${watcher[@]}" >"$TMP/snap-watcher" 2>&1 &
        pid=$!
        for _ in $(seq 1 3000); do grep -q '^watching$' "$TMP/snap-watcher" && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.01; done
        grep -q '^watching$' "$TMP/snap-watcher" || fail "snapshot watcher did not start: $(cat "$TMP/snap-watcher")"
        "$@" >"$TMP/snap-publisher" 2>&1 || fail "snapshot publisher: $(cat "$TMP/snap-publisher")"
        wait "$pid" || fail "snapshot watcher: $(cat "$TMP/snap-watcher")"
        expect_out "$TMP/snap-publisher" "publisher: snapshot 6 is generation"
        expect_out "$TMP/snap-watcher" ": snapshot 6, intact"
        expect_out "$TMP/snap-watcher" "watcher: events created 1, published 5"
        ! grep -q CORRUPT "$TMP/snap-watcher" || fail "snapshot watcher read a torn snapshot: $(cat "$TMP/snap-watcher")"
}
run_snapshots "$RUBY" "$EX/snapshot_watcher.rb" "$SOCK" x.snap 6 -- "$RUBY" "$EX/snapshot_publisher.rb" "$SOCK" x.snap 6
ctl rm x.snap >/dev/null || fail "the last snapshot did not stay under x.snap"

# Ruby, Python and C on the same bytes, when the Python module is built (bindings/python): a Ruby producer and a
# Python consumer, a Python producer and a Ruby consumer, and one region that Ruby writes and Python and iomemctl
# (C) read while it waits: unrelated programs, all started from here
if [ -n "${IOMEM_PYTHONPATH:-}" ]; then
        export PYTHONPATH=$IOMEM_PYTHONPATH
        # a Ruby publisher's snapshots, watched by a Python program (and the other way round)
        run_snapshots python3 "$EX/../python/snapshot_watcher.py" "$SOCK" x.snap2 6 -- \
                "$RUBY" "$EX/snapshot_publisher.rb" "$SOCK" x.snap2 6
        ctl rm x.snap2 >/dev/null || fail "the last snapshot did not stay under x.snap2"
        run_snapshots "$RUBY" "$EX/snapshot_watcher.rb" "$SOCK" x.snap3 6 -- \
                python3 "$EX/../python/snapshot_publisher.py" "$SOCK" x.snap3 6
        ctl rm x.snap3 >/dev/null || fail "the last snapshot did not stay under x.snap3"
        py_consumer='
import struct, sys, time, iomem
with iomem.Client(sys.argv[1]) as c, c.open(sys.argv[2], wait=True, timeout=30) as r, memoryview(r) as m:
    for _ in range(30000):
        if struct.unpack_from("<I", m, 0)[0] == 1:
            break
        time.sleep(0.001)
    message = bytes(m[8:1032]).split(b"\0")[0]
    print("received:", message.decode())
    m[1032:1032 + len(message) + 6] = b"ack: " + message + b"\0"
    struct.pack_into("<I", m, 4, 1)
'
        py_producer='
import struct, sys, time, iomem
with iomem.Client(sys.argv[1]) as c, c.create(sys.argv[2], 4096, exclusive=True, lease=True) as r, memoryview(r) as m:
    m[8:8 + len(sys.argv[3]) + 1] = sys.argv[3].encode() + b"\0"
    struct.pack_into("<I", m, 0, 1)
    for _ in range(30000):
        if struct.unpack_from("<I", m, 4)[0] == 1:
            break
        time.sleep(0.001)
    print("reply:", bytes(m[1032:2056]).split(b"\0")[0].decode())
'
        python3 -c "$py_consumer" "$SOCK" x.rb2py >"$TMP/py-consumer" 2>&1 &
        pid=$!
        "$RUBY" "$EX/producer.rb" "$SOCK" x.rb2py "from Ruby to Python" >"$TMP/rb-producer2" 2>&1 \
                || fail "Ruby producer (Python): $(cat "$TMP/rb-producer2")"
        wait "$pid" || fail "Python consumer: $(cat "$TMP/py-consumer")"
        expect_out "$TMP/py-consumer" "received: from Ruby to Python"
        expect_out "$TMP/rb-producer2" 'consumer replied "ack: from Ruby to Python"'

        "$RUBY" "$EX/consumer.rb" "$SOCK" x.py2rb 30000 >"$TMP/rb-consumer2" 2>&1 &
        pid=$!
        python3 -c "$py_producer" "$SOCK" x.py2rb "from Python to Ruby" >"$TMP/py-producer" 2>&1 \
                || fail "Python producer: $(cat "$TMP/py-producer")"
        wait "$pid" || fail "Ruby consumer (Python): $(cat "$TMP/rb-consumer2")"
        expect_out "$TMP/rb-consumer2" 'received "from Python to Ruby"'
        expect_out "$TMP/py-producer" "reply: ack: from Python to Ruby"

        # three at once on one region: the Ruby batch writer waits for "done" while Python (read-only, zero-copy
        # memoryview) and iomemctl (C) read what it wrote
        "$RUBY" "$EX/batch.rb" named "$SOCK" x.three writer >"$TMP/rb-three" 2>&1 &
        pid=$!
        ctl wait x.three.ready --timeout 30 >/dev/null && ctl rm x.three.ready || fail "batch writer (three) not ready"
        python3 -c '
import sys, iomem
with iomem.Client(sys.argv[1]) as c, c.open("x.three", read_only=True) as r, memoryview(r) as m:
    print("python read:", bytes(m[0:3]).decode(), bytes(m[64:80]).decode(), "readonly" if m.readonly else "WRITABLE")
' "$SOCK" >"$TMP/py-three" 2>&1 || fail "Python (three): $(cat "$TMP/py-three")"
        ctl read x.three --offset 64 --length 16 >"$TMP/c-three" 2>&1 || fail "iomemctl read (three): $(cat "$TMP/c-three")"
        ctl create x.three.done 1 >/dev/null || fail "create x.three.done"
        wait "$pid" || fail "Ruby batch writer (three): $(cat "$TMP/rb-three")"
        expect_out "$TMP/py-three" "python read: ABC rec 0001........ readonly"
        expect_out "$TMP/c-three" "rec 0001........"
else
        echo "no Python module in this build: Ruby-Python sharing not tested"
fi

# a consumer with nobody producing gives up with the daemon's error
if "$RUBY" "$EX/consumer.rb" "$SOCK" x.nobody 100 >"$TMP/nobody" 2>&1; then
        fail "Ruby consumer without producer succeeded"
fi
expect_out "$TMP/nobody" 'consumer: Connection timed out - open "x.nobody": no such region yet'
# the three lines at the top of docs/ruby.md (and README.md), on the default socket rule ($IOMEM_SOCKET)
doc=$EX/../../docs/ruby.md
awk '/^```ruby$/ { on = 1; next } on && /^```$/ { exit } on' "$doc" >"$TMP/three.rb"
[ "$(wc -l <"$TMP/three.rb")" -eq 3 ] || fail "docs/ruby.md: the first example is not three lines: $(cat "$TMP/three.rb")"
out=$(IOMEM_SOCKET=$SOCK "$RUBY" -W:no-experimental "$TMP/three.rb" 2>&1) || fail "docs/ruby.md three lines: $out"
[ "$out" = hello ] || fail "docs/ruby.md three lines printed '$out'"
stop_daemon
finish
