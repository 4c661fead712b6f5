#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-it-keeper-stopped: the real iomemd gives up an fd keeper that is stopped (SIGSTOP) and goes on serving.
# Before, giving a keeper up waited for its exit in a blocking waitpid(): a stopped keeper never reads the EOF, so
# the event loop hung for ever (and this test until ctest's timeout). Now the keeper is killed and reaped by the
# status timer. No timing: ctest's timeout is the only bound. The round trip to the stopped keeper is given up as soon
# as a short wait for its reply finds the keeper stopped, not after its 5 s receive timeout: the daemon's log line
# must say why ("it is stopped"; before: "Input/output error", the timeout).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

LOG=$TMP/iomemd.log
start_daemon --max-region-fds 1 2>"$LOG"
ctl create keep0 4K >/dev/null
ctl create r1 4K >/dev/null # parked: starts keeper 0
keeper=$(keeper_pid)
[ -n "$keeper" ] || { echo "FAIL: no keeper process was started" >&2; exit 1; }

kill -STOP "$keeper"
until [ "$(awk '{print $3}' "/proc/$keeper/stat")" = T ]; do
        sleep 0.01
done
# its DROP is a round trip to the stopped keeper: no reply, the keeper is given up (the DELETE is done anyway)
ctl rm r1 >/dev/null 2>&1 || true
expect_ok "a PING after the keeper was given up" ctl ping
grep -q "fd keeper 0 (pid $keeper) failed: it is stopped" "$LOG" ||
        fail "the stopped keeper was not given up for being stopped: $(grep 'fd keeper' "$LOG" || echo 'no line')"
# killed, and reaped (by the status timer): gone from /proc, not left a zombie
while [ -e "/proc/$keeper" ] && [ "$(cat "/proc/$keeper/comm" 2>/dev/null)" = iomemd-keeper ]; do
        sleep 0.05
done
# a new parked region gets a new keeper and is served
ctl create r2 4K >/dev/null
echo kept | ctl write r2
[ "$(ctl read r2 --length 4)" = kept ] || fail "read of a region parked after the keeper was given up"

stop_daemon
[ "$FAILURES" -eq 0 ] || exit 1
echo "PASS: a stopped keeper given up, the daemon goes on serving"
