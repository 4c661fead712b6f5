#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-cli-messages: what a newcomer meets first, said clearly and once (issue 16): an empty name refused, list
# headers on a terminal only, ENOSPC of the file backend in words that fit it, a second daemon on a socket in one line.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# `create ""` would make an anonymous region that vanishes with iomemctl: a usage error instead, before connecting
expect_err "create empty name" 2 "create: empty name" "$IOMEMCTL" --socket "$TMP/nothing-here" create "" 4K

start_daemon --max-region-size 16000T

# a second daemon on the same socket: exit non-zero with one error line
rc=0
"$IOMEMD" --socket "$SOCK" --tmpdir "$TMP" >"$TMP/second.out" 2>"$TMP/second.err" || rc=$?
[ "$rc" -ne 0 ] || fail "second daemon on the same socket exited 0"
[ "$(wc -l <"$TMP/second.err")" -eq 1 ] || fail "second daemon: stderr is not one line: $(cat "$TMP/second.err")"
grep -q "cannot listen on $SOCK: in use" "$TMP/second.err" || fail "second daemon: $(cat "$TMP/second.err")"
[ ! -s "$TMP/second.out" ] || fail "second daemon: unexpected stdout: $(cat "$TMP/second.out")"
ctl ping >/dev/null || fail "the first daemon no longer answers"

# ENOSPC from the file backend speaks of its file system, not of shared memory
expect_err "file backend full" 1 "create huge: no space left on the file system" \
        ctl create huge 15000T --backend file
grep -q "shared memory" "$TMP/err" && fail "ENOSPC still says shared memory: $(cat "$TMP/err")"
expect_err "shm full" 1 "create huge: no space left on the file system" ctl create huge 15000T --backend shm

# list: headers when stdout is a terminal (script gives it a pty), bare rows into a pipe
ctl create msg.a 4K
ctl create msg.b 8K
[ "$(ctl list msg. | head -1 | cut -f1)" = msg.a ] || fail "list into a pipe: $(ctl list msg.)"
script -qec "$(printf '%q ' "$IOMEMCTL" --socket "$SOCK" list msg.)" /dev/null >"$TMP/tty" </dev/null \
        || fail "list on a pty failed: $(cat "$TMP/tty")"
tr -d '\r' <"$TMP/tty" >"$TMP/tty.txt"
[ "$(head -1 "$TMP/tty.txt")" = "$(printf 'NAME\tSIZE\tMODE\tOWNER\tSEALS')" ] \
        || fail "list on a terminal: no header line: $(cat "$TMP/tty.txt")"
[ "$(sed -n 2p "$TMP/tty.txt" | cut -f1,2)" = "$(printf 'msg.a\t4096')" ] || fail "list on a terminal: rows: $(cat "$TMP/tty.txt")"
[ "$(wc -l <"$TMP/tty.txt")" -eq 3 ] || fail "list on a terminal: $(cat "$TMP/tty.txt")"
[ "$(ctl --json list msg. | head -c1)" = "[" ] || fail "list --json has a header"

stop_daemon
finish
