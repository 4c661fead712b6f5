#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-it-keeper-fallback: the real iomemd whose fd keepers cannot be exec'd serves from keepers that are forked
# copies of itself (keepers_spawn()'s fallback), and those close the region fds they drop (closer_reset_after_fork():
# a forked copy inherited the daemon's closer state without its threads, so every dropped region stayed open).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

N=16

# fd_count PID: the open fds of PID
fd_count() {
        local n
        n=$(ls "/proc/$1/fd" | wc -l) || return 1
        echo "$n"
}

# The daemon runs from a copy of its binary that loses its x bits once it runs: the keepers' exec of
# /proc/self/exe then fails with EACCES (for root too: no x bit at all), and the forked copy serves instead.
cp "$IOMEMD" "$TMP/iomemd"
IOMEMD=$TMP/iomemd
start_daemon --max-region-fds 1
chmod a-x "$TMP/iomemd"

# two regions that stay: one the daemon holds itself, one that starts the keeper
ctl create keep0 4K >/dev/null
ctl create keep1 4K >/dev/null
keeper=$(keeper_pid)
[ -n "$keeper" ] || { echo "FAIL: no keeper process was started" >&2; exit 1; }
# it is the fallback: a forked copy runs with the daemon's arguments, an exec'd keeper with --internal-fd-keeper
if tr '\0' '\n' <"/proc/$keeper/cmdline" | grep -qx -- --internal-fd-keeper; then
        echo "FAIL: keeper $keeper was exec'd (the test did not reach the fallback)" >&2
        exit 1
fi
if ! tr '\0' '\n' <"/proc/$keeper/cmdline" | grep -qx -- --max-region-fds; then
        fail "keeper $keeper does not run with the daemon's arguments: $(tr '\0' ' ' <"/proc/$keeper/cmdline")"
fi

base=$(fd_count "$keeper")
for i in $(seq 1 $N); do
        ctl create "r$i" 1M >/dev/null
        echo "region $i" | ctl write "r$i"
done
held=$(fd_count "$keeper")
[ "$held" -ge $((base + N - 1)) ] || fail "the keeper holds $((held - base)) fds more after $N creates, want $N or $((N - 1))"
[ "$(ctl read r$N --length 9)" = "region $N" ] || fail "read of a parked region"

for i in $(seq 1 $N); do
        ctl rm "r$i"
done
# the keeper's closer threads close the dropped fds soon after its replies: poll, with a generous bound
for _ in $(seq 1 3000); do
        n=$(fd_count "$keeper")
        [ "$n" -gt "$base" ] || break
        sleep 0.01
done
[ "$n" -le "$base" ] || fail "the keeper still holds $((n - base)) of the $N region fds it dropped"
memfds=$(ls -l "/proc/$keeper/fd" | grep -c 'memfd:' || true)
[ "$memfds" -le 1 ] || fail "the keeper still holds $memfds regions, want at most keep0 and keep1's one"
kill -0 "$keeper" || fail "the keeper died"
# the regions that stayed are still served
echo kept | ctl write keep1
[ "$(ctl read keep1 --length 4)" = kept ] || fail "read of keep1 after the drops"
[ "$(ctl read keep0 --length 1 | od -An -tx1 | tr -d ' ')" = 00 ] || fail "read of keep0 after the drops"

stop_daemon
[ "$FAILURES" -eq 0 ] || exit 1
echo "PASS: a forked keeper (exec failed) closes what it drops"
