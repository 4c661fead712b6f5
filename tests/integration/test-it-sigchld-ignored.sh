#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-it-sigchld-ignored: iomemd started with SIGCHLD ignored (inherited across exec, e.g. from a shell's
# `trap '' CHLD` or a supervisor) must not ignore it: with SIGCHLD ignored the kernel reaps its fd keepers by
# itself, and a keeper's pid can then be reused while the daemon still has it, so its kill() of a keeper given up
# (the fallback without a pidfd) could hit another process, and its waitpid() would reap nothing of its own.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

trap '' CHLD # inherited as SIG_IGN by the daemon started next
start_daemon --max-region-fds 1
trap - CHLD
ign=$(awk '/^SigIgn:/ {print $2}' "/proc/$DAEMON_PID/status")
# SIGCHLD is signal 17: bit 16 of the mask
if (((0x$ign >> 16) & 1)); then
        fail "iomemd runs with SIGCHLD ignored (SigIgn $ign): its keepers are reaped by the kernel, pids reusable"
fi
# and keepers still work: a region parked in one is written and read
ctl create keep0 4K >/dev/null
ctl create r1 4K >/dev/null
echo kept | ctl write r1
[ "$(ctl read r1 --length 4)" = kept ] || fail "read of a region parked in a keeper"

stop_daemon
[ "$FAILURES" -eq 0 ] || exit 1
echo "PASS: iomemd does not ignore SIGCHLD, whatever it inherited"
