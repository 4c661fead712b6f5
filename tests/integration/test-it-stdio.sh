#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-it-stdio: iomemd started with stdin, stdout and stderr closed (a shell's `<&- >&- 2>&-`, a careless init)
# puts /dev/null on them before it makes any fd: its socket, the regions' memfds and its keepers' channels never
# take numbers 0-2, so no log line can land in a region (docs/reliability.md, tenth pass).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# debug logging: every request writes to fd 2; at most 2 region fds in the daemon, so a keeper is made too
"$IOMEMD" --socket "$SOCK" --tmpdir "$TMP" --log-level debug --max-region-fds 2 <&- >&- 2>&- &
DAEMON_PID=$!
for _ in $(seq 1 500); do
        ctl ping >/dev/null 2>&1 && break
        kill -0 "$DAEMON_PID" 2>/dev/null || { echo "FAIL: iomemd died at startup with stdio closed" >&2; exit 1; }
        sleep 0.01
done
ctl ping >/dev/null || { echo "FAIL: iomemd did not start with stdio closed" >&2; exit 1; }

for name in a b c d; do
        ctl create "$name" 4K
        printf 'region %s\n' "$name" | ctl write "$name"
done
for name in a b c d; do
        got=$(ctl read "$name" --length 9)
        [ "$got" = "region $name" ] || fail "region $name holds '$got'"
        [ "$(ctl --json stat "$name" | grep -o '"size":[0-9]*')" = '"size":4096' ] || fail "region $name: size"
done

# fds 0-2 of the daemon and of every keeper it made are /dev/null
pids="$DAEMON_PID $(pgrep -P "$DAEMON_PID" || true)"
[ "$(wc -w <<<"$pids")" -ge 2 ] || fail "no keeper was made (pids: $pids)"
for pid in $pids; do
        for fd in 0 1 2; do
                link=$(readlink "/proc/$pid/fd/$fd" || echo closed)
                [ "$link" = /dev/null ] || fail "pid $pid: fd $fd is $link, not /dev/null"
        done
done
stop_daemon
[ "$FAILURES" -eq 0 ] || exit 1
echo "test-it-stdio passed"
