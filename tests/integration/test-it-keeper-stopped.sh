#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-it-keeper-stopped: the real iomemd continues an fd keeper that is stopped (SIGSTOP), and the regions it holds
# stay readable. A round trip to the keeper (the DROP of a DELETE, the PARK of a CREATE) finds it stopped at its first
# 10 ms wait for the reply, sends it SIGCONT, gets the reply, and logs one warning a round trip. Before, the keeper
# was given up at once ("failed: it is stopped"): killed, the regions it held lost (their reads failed). Before
# review22, giving a keeper up waited for its exit in a blocking waitpid(), and this test hung until ctest's timeout.
# No timing: ctest's timeout is the only bound.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

LOG=$TMP/iomemd.log
start_daemon --max-region-fds 1 2>"$LOG"
ctl create keep0 4K >/dev/null
ctl create r1 4K >/dev/null # parked: starts keeper 0
ctl create r2 4K >/dev/null # parked there too
keeper=$(keeper_pid)
[ -n "$keeper" ] || { echo "FAIL: no keeper process was started" >&2; exit 1; }
echo one | ctl write r1
echo two | ctl write r2

# the keeper runs: sleeping (S) or running (R), not stopped (T), a zombie (Z, given up) or gone
keeper_runs() {
        local state
        state=$(awk '{print $3}' "/proc/$keeper/stat" 2>/dev/null || echo gone)
        case $state in
        R | S | D) ;;
        *) fail "$1: the keeper (pid $keeper) is not running: state $state" ;;
        esac
}

stop_keeper() {
        local state
        kill -STOP "$keeper"
        while state=$(awk '{print $3}' "/proc/$keeper/stat" 2>/dev/null || echo gone) && [ "$state" != T ]; do
                case $state in
                Z | X | gone) fail "the keeper (pid $keeper) was given up: state $state"; exit 1 ;;
                esac
                sleep 0.01
        done
}

# r1's DROP is a round trip to the stopped keeper: it is continued, and the DELETE done
stop_keeper
expect_ok "a DELETE of a region parked in the stopped keeper" ctl rm r1
expect_ok "a PING after the keeper was continued" ctl ping
keeper_runs "after the DELETE"
[ "$(cat "/proc/$keeper/comm" 2>/dev/null)" = iomemd-keeper ] || fail "the keeper (pid $keeper) is gone"
[ "$(ctl read r2 --length 3 2>&1)" = two ] || fail "a region the stopped keeper held was not intact after it was continued"
ctl read r1 --length 3 >/dev/null 2>&1 && fail "r1 still readable after its DELETE"

# r3's PARK (after its CREATE's reply: the PING waits for it) is another round trip to it stopped again
stop_keeper
ctl create r3 4K >/dev/null
expect_ok "a PING after the keeper was continued again" ctl ping
echo three | ctl write r3
[ "$(ctl read r3 --length 5 2>&1)" = three ] || fail "a region parked in the keeper continued was not served"
[ "$(ctl read r2 --length 3 2>&1)" = two ] || fail "r2 not intact after the second stop"
keeper_runs "after the CREATE"

n=$(grep -c "fd keeper 0 (pid $keeper) was found stopped, and was continued" "$LOG" || true)
[ "$n" -eq 2 ] || fail "expected 2 lines saying the keeper was found stopped and continued, got $n: $(grep 'fd keeper' "$LOG" || echo 'no line')"
! grep -q "fd keeper .* failed" "$LOG" || fail "a keeper was given up: $(grep 'failed' "$LOG")"
! grep -q "started fd keeper 1" "$LOG" || fail "a second keeper was started: the first was given up"

stop_daemon
[ "$FAILURES" -eq 0 ] || exit 1
echo "PASS: a stopped keeper is continued, its regions stay readable"
