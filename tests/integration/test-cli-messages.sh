#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-cli-messages: what a newcomer meets first, said clearly and once (issue 16): an empty name refused, list
# headers on a terminal only, ENOSPC of the file backend in words that fit it, a second daemon on a socket in one line,
# a socket path iomemd cannot bind (what to do).
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

# a socket path iomemd cannot bind: one line that says what to do, not only the C library's words
daemon_err() { # daemon_err WHAT PATTERN CMD...: CMD (an iomemd) exits non-zero with one stderr line matching PATTERN
        local what=$1 pattern=$2 rc=0
        shift 2
        "$@" >"$TMP/bind.out" 2>"$TMP/bind.err" || rc=$?
        [ "$rc" -ne 0 ] || fail "$what: iomemd exited 0"
        [ "$(wc -l <"$TMP/bind.err")" -eq 1 ] || fail "$what: stderr is not one line: $(cat "$TMP/bind.err")"
        grep -Eq "$pattern" "$TMP/bind.err" || fail "$what: $(cat "$TMP/bind.err")"
}
daemon_err "socket directory missing" "cannot listen on $TMP/no-dir/s: its directory does not exist: create it, or \
choose another --socket path$" "$IOMEMD" --socket "$TMP/no-dir/s" --tmpdir "$TMP"
long=$TMP/$(printf 's%.0s' $(seq 1 110))
daemon_err "socket path too long" "cannot listen on $long: the path is too long for a socket \(at most 107 bytes\): \
choose a shorter --socket path$" "$IOMEMD" --socket "$long" --tmpdir "$TMP"
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
        stage_iomemctl # an iomemd uid 1501 can run: the build tree may be under /root (0700)
        chmod 0711 "$TMP" # uid 1501 may pass through $TMP (mktemp's 0700 refused it before $TMP/ro was reached)
        mkdir -m 0555 "$TMP/ro"
        daemon_err "socket directory not writable" "cannot listen on $TMP/ro/s: permission denied on its directory: \
choose a --socket path this user may create" setpriv --reuid 1501 --regid 1501 --clear-groups \
                "$STAGE/bin/iomemd" --socket "$TMP/ro/s" --tmpdir /tmp
        # another user's socket (mode 0600) in a directory it may write: the socket is at fault, not the directory
        mkdir -m 0777 "$TMP/open"
        /usr/bin/python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$TMP/open/s"
        chmod 0600 "$TMP/open/s"
        daemon_err "another user's socket" "cannot listen on $TMP/open/s: a socket is there that uid 1501 may not \
connect to \(another user's iomemd\?\); refusing to remove it: choose another --socket path$" \
                setpriv --reuid 1501 --regid 1501 --clear-groups "$STAGE/bin/iomemd" --socket "$TMP/open/s" --tmpdir /tmp
        [ -S "$TMP/open/s" ] || fail "another user's socket: removed"
fi
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
