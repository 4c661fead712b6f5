#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-it-bind: the socket iomemd binds itself (not socket activation) has its mode 0666 from the moment its file
# appears, so a non-root client never gets EACCES, only ECONNREFUSED in the one window between bind() and listen()
# (docs/daemon.md); a stale socket is replaced; a live daemon's socket and a path that is not a socket are refused and
# left alone; a daemon stopping unlinks only the socket it bound, never another daemon's that took the path over.
#
# The moment between bind() and listen() is held open with a test hook (IOMEMD_TEST_HOOKS with
# IOMEMD_TEST_BIND_GATE=FILE: the daemon creates FILE.taken and waits while FILE exists), so what a client sees then
# is checked without luck or timing. bind-watch.py, run as another uid, is a script that waits for the file to appear
# and connects. Needs root (setpriv to another uid); skipped otherwise.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null; then
        echo "skipped: needs root and setpriv (a client of another uid)"
        exit 0
fi
OTHER=4242
as_other() { setpriv --reuid $OTHER --regid $OTHER --clear-groups "$@"; }
# a python the other uid can run ($PYTHON3 may be a shim under /root)
OPY=
for p in "$PYTHON3" /usr/bin/python3 /usr/local/bin/python3; do
        if as_other "$p" -c '' 2>/dev/null; then
                OPY=$p
                break
        fi
done
[ -n "$OPY" ] || { echo "skipped: no python3 that uid $OTHER can run"; exit 0; }

chmod 0755 "$TMP" # mktemp's 0700: the other uid must reach the socket
RUN=$TMP/run      # the socket's directory: only the socket, and nothing after a stop
mkdir -m 0755 "$RUN"
SOCK=$RUN/sock
GATE=$TMP/gate
W=$TMP/w # the other uid's files
mkdir -m 0777 "$W"
cp "$(dirname "$0")/bind-watch.py" "$W/" # the source tree may be where the other uid cannot read
WATCH=$W/bind-watch.py
# with this umask a socket bind() makes is 0755: a non-root client cannot connect to it (EACCES)
umask 022

PIDS=()
trap 'rm -f "$GATE"; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; cleanup' EXIT

# launch LOG [VAR=VALUE...]: start iomemd on $SOCK in the background with these variables, its stderr in LOG; $LAST
launch() {
        local log=$1
        shift
        env "$@" "$IOMEMD" --socket "$SOCK" --log-level info --tmpdir "$TMP" 2>"$log" &
        LAST=$!
        PIDS+=("$LAST")
}

# launch_gated LOG: launch, held between its bind() and its listen() until `rm $GATE`; returns once it is held there
launch_gated() {
        : >"$GATE"
        rm -f "$GATE.taken"
        launch "$1" IOMEMD_TEST_HOOKS=1 IOMEMD_TEST_BIND_GATE="$GATE"
        while [ ! -e "$GATE.taken" ]; do
                kill -0 "$LAST" 2>/dev/null || { echo "iomemd died before its bind: $(cat "$1")" >&2; exit 1; }
                sleep 0.01
        done
}

# ready PID: wait until a PING on $SOCK is answered (the daemon PID must not die first)
ready() {
        until ctl ping >/dev/null 2>&1; do
                kill -0 "$1" 2>/dev/null || { echo "iomemd died at startup" >&2; exit 1; }
                sleep 0.01
        done
}

# stop PID WHAT: SIGTERM, and it must exit 0
stop() {
        local rc=0
        kill "$1"
        wait "$1" || rc=$?
        [ "$rc" -eq 0 ] || fail "$2: iomemd exited with $rc"
}

# dir_is WHAT NAMES...: the socket's directory holds exactly NAMES
dir_is() {
        local what=$1 want have
        shift
        want=
        [ "$#" -eq 0 ] || want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
        have=$(ls -A "$RUN" | sort | tr '\n' ' ')
        [ "$have" = "$want" ] || fail "$what: the socket's directory holds '$have', want '$want'"
}

# ident PATH: what names one file for good (an inode number alone may be reused at once, on ext4)
ident() { stat -c %d:%i:%.9Z "$1"; }

# other_connect: one connect to $SOCK as the other uid; prints "ok" or the errno's name
other_connect() {
        as_other "$OPY" -c '
import socket, sys, errno
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1]); print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))' "$SOCK"
}

# stale PATH: leave a socket file that nobody listens on at PATH (as a daemon killed by SIGKILL does)
stale() {
        # mode 0777 (umask 0): bind-watch.py tells it from any socket iomemd makes, old (0755 first) or new (0666)
        (umask 0 && "$PYTHON3" -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()' "$1")
}

# --- a start held between bind() and listen(), on a fresh path and over a stale socket: the file is there with its
# final mode 0666 already, and a client of another uid is refused (ECONNREFUSED, the documented window), never denied
# (EACCES: the file's mode before a chmod); let go, the daemon accepts it
for kind in fresh stale; do
        old=-
        if [ "$kind" = stale ]; then
                stale "$SOCK"
                old=$(ident "$SOCK")
        fi
        launch_gated "$TMP/gated.log"
        pid=$LAST
        if [ ! -S "$SOCK" ]; then
                fail "held start ($kind): no socket at $SOCK after the bind"
        else
                [ "$(ident "$SOCK")" != "$old" ] || fail "held start ($kind): the stale socket is still there"
                mode=$(stat -c %a "$SOCK")
                [ "$mode" = 666 ] || fail "held start ($kind): the socket file is $mode between bind and listen"
                got=$(other_connect)
                [ "$got" = ECONNREFUSED ] || fail "held start ($kind): uid $OTHER's connect got $got, want ECONNREFUSED"
        fi
        rm "$GATE"
        ready "$pid"
        got=$(other_connect)
        [ "$got" = ok ] || fail "held start ($kind): uid $OTHER's connect once it listens got $got"
        [ "$(stat -c %a "$SOCK")" = 666 ] || fail "held start ($kind): mode $(stat -c %a "$SOCK") once it listens"
        # the umask is set for the bind alone
        um=$(awk '/^Umask:/ {print $2}' "/proc/$pid/status")
        [ "$um" = 0022 ] || fail "held start ($kind): the daemon's umask is $um after its start, want 0022"
        [ "$kind" = fresh ] || grep -q "removing stale socket $SOCK" "$TMP/gated.log" ||
                fail "held start ($kind): the log does not say: $(cat "$TMP/gated.log")"
        dir_is "held start ($kind), serving" sock
        stop "$pid" "held start ($kind)"
        dir_is "held start ($kind), stopped" # the daemon unlinked its socket
done

# --- unheld starts: a script of another uid waits for the file, then connects; it may be refused in the window,
# never denied, and the file it first sees is 0666
for i in 1 2 3 4 5; do
        for kind in fresh stale; do
                old=-
                if [ "$kind" = stale ]; then
                        stale "$SOCK"
                        old=$(stat -c %d:%i "$SOCK")
                fi
                rm -f "$W/ready" "$W/pid"
                BIND_WATCH_READY=$W/ready as_other "$OPY" "$WATCH" "$SOCK" "$old" "$W/pid" >"$TMP/watch.out" &
                watcher=$!
                while [ ! -e "$W/ready" ] && kill -0 "$watcher" 2>/dev/null; do
                        sleep 0.01
                done
                launch "$TMP/unheld.log"
                pid=$LAST
                echo "$pid" >"$W/pid"
                wait "$watcher" || fail "unheld start $i ($kind): what uid $OTHER saw when the socket appeared (above)"
                ready "$pid"
                stop "$pid" "unheld start $i ($kind)"
                dir_is "unheld start $i ($kind), stopped"
        done
done

# --- a live daemon's socket: a second daemon exits 1 and leaves it alone
launch "$TMP/live.log"
live=$LAST
ready "$live"
old=$(ident "$SOCK")
launch "$TMP/second.log"
second=$LAST
rc=0
wait "$second" || rc=$?
[ "$rc" -eq 1 ] || fail "second daemon on a live socket: exit $rc, want 1"
grep -q "cannot listen on $SOCK: in use: another iomemd (or another program) answers there" "$TMP/second.log" ||
        fail "second daemon on a live socket: $(cat "$TMP/second.log")"
[ "$(ident "$SOCK")" = "$old" ] || fail "second daemon on a live socket: the socket was replaced"
ctl ping >/dev/null || fail "second daemon on a live socket: the first one no longer answers"
dir_is "second daemon on a live socket" sock
stop "$live" "live daemon"
dir_is "live daemon, stopped"

# --- a path that is not a socket is refused and left as it was, whatever it is
stale "$TMP/dead-sock"
echo keep >"$TMP/file"
for kind in file fifo dir link-to-dead-socket link-to-file dangling-link; do
        case $kind in
        file) echo keep >"$SOCK" ;;
        fifo) mkfifo "$SOCK" ;;
        dir) mkdir "$SOCK" ;;
        link-to-dead-socket) ln -s "$TMP/dead-sock" "$SOCK" ;;
        link-to-file) ln -s "$TMP/file" "$SOCK" ;;
        dangling-link) ln -s "$TMP/nowhere" "$SOCK" ;;
        esac
        before=$(stat -c '%F %i %.9Z %a' "$SOCK")
        launch "$TMP/notsock.log"
        rc=0
        wait "$LAST" || rc=$?
        [ "$rc" -eq 1 ] || fail "$kind as --socket: exit $rc, want 1"
        # a dangling link: connect() through it says ENOENT, and that is said (as before)
        if [ "$kind" != dangling-link ]; then
                grep -q "$SOCK exists and is not a socket; refusing to remove it" "$TMP/notsock.log" ||
                        fail "$kind as --socket: $(cat "$TMP/notsock.log")"
        fi
        [ "$(grep -c 'error:' "$TMP/notsock.log")" -eq 1 ] || fail "$kind as --socket: $(cat "$TMP/notsock.log")"
        [ "$(stat -c '%F %i %.9Z %a' "$SOCK")" = "$before" ] || fail "$kind as --socket: it was changed"
        dir_is "$kind as --socket" sock
        rm -r "$SOCK"
done
[ "$(cat "$TMP/file")" = keep ] && [ -S "$TMP/dead-sock" ] || fail "the target of a link given as --socket changed"

# --- a daemon that stops unlinks its socket only if it is still its own: here another daemon took the path over
launch "$TMP/first.log"
first=$LAST
ready "$first"
rm "$SOCK" # say, an administrator cleaning up; then another daemon starts there
launch "$TMP/other.log"
other=$LAST
ready "$other"
old=$(ident "$SOCK")
stop "$first" "the first daemon"
[ -S "$SOCK" ] && [ "$(ident "$SOCK")" = "$old" ] || fail "a daemon stopping unlinked the socket of another"
ctl ping >/dev/null || fail "the daemon now on the path no longer answers after the first one stopped"
grep -q "not removing $SOCK" "$TMP/first.log" || fail "the first daemon does not say why: $(cat "$TMP/first.log")"
stop "$other" "the other daemon"
dir_is "two daemons one after the other, stopped"

finish
