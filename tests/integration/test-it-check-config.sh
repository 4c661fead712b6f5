#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-it-check-config: `iomemd --check-config` (-t) reads the configuration file and the options as a start or a
# SIGHUP does, with the daemon's own parser, and says whether they are valid: exit 0 and one line on stdout, exit 1
# and the error iomemd itself gives on stderr, exit 2 for a usage error. It binds, unlinks and creates nothing at the
# socket path, and needs no root. --pid PID checks what the running iomemd PID's SIGHUP would load: its own command
# line and the file it names (what systemd's ExecReload= runs before the SIGHUP).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ALIVE=()
cleanup_more() {
        local p
        for p in "${ALIVE[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
        cleanup
}
trap cleanup_more EXIT

# check WHAT WANT_STATUS WANT_STDOUT WANT_STDERR ARGS...: run iomemd ARGS; exact status, stdout and stderr ("" =
# nothing). CHECK_TIMEOUT=S: under timeout S (against a hang only: the time is not asserted); CHECK_ASMAX=1: under
# $asmax (an address space bound, where no sanitizer needs more)
check() {
        local what=$1 want=$2 out=$3 err=$4
        shift 4
        local rc=0 pre=()
        [ -z "${CHECK_TIMEOUT:-}" ] || pre=(timeout "$CHECK_TIMEOUT")
        [ -z "${CHECK_ASMAX:-}" ] || pre+=("${asmax[@]}")
        "${pre[@]}" "$IOMEMD" "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
        [ "$rc" -eq "$want" ] || fail "$what: exit status $rc, want $want (stderr: $(cat "$TMP/err"))"
        [ "$(cat "$TMP/out")" = "$out" ] || fail "$what: stdout '$(cat "$TMP/out")', want '$out'"
        [ "$(cat "$TMP/err")" = "$err" ] || fail "$what: stderr '$(cat "$TMP/err")', want '$err'"
}

# every check below also names a socket: nothing may appear there, nor at the default paths
export IOMEM_SOCKET=$TMP/env.sock XDG_RUNTIME_DIR=$TMP/xdg
mkdir -p "$TMP/xdg"
S=$TMP/check.sock

printf 'max-regions = 10\ndefault-mode = 0640\n[uid 1000]\nquota-bytes = 1M\n' >"$TMP/ok.conf"
printf 'default-mode = 0640\nmax-regions = lots\n' >"$TMP/bad.conf"
printf 'backend = file\nallowed-backends = memfd,shm\n' >"$TMP/backends.conf"

# 1. a valid file, the short and the long option
check "valid file" 0 "iomemd: the configuration is valid (file $TMP/ok.conf)" "" \
        --check-config --config "$TMP/ok.conf" --socket "$S"
check "valid file, -t" 0 "iomemd: the configuration is valid (file $TMP/ok.conf)" "" -t --config "$TMP/ok.conf"

# 2. no file: the default one if this machine has it, else none
if [ -e /etc/iomemd/iomemd.conf ]; then
        echo "note: /etc/iomemd/iomemd.conf exists here: the no-file case checks that file instead"
        "$IOMEMD" --check-config >"$TMP/out" 2>&1 || true
        grep -q "/etc/iomemd/iomemd.conf" "$TMP/out" \
                || fail "no --config: the default file is not named: $(cat "$TMP/out")"
else
        check "no file" 0 "iomemd: the configuration is valid (no configuration file)" "" --check-config --socket "$S"
fi

# 3. an invalid file: exit 1 and the very line a start gives (which exits 2) and a SIGHUP logs
bad_line="iomemd: $TMP/bad.conf:2: max-regions = 'lots': expected a positive number"
check "invalid file" 1 "" "$bad_line" --check-config --config "$TMP/bad.conf" --socket "$S"
rc=0
"$IOMEMD" --config "$TMP/bad.conf" --socket "$S" 2>"$TMP/start.err" || rc=$?
[ "$rc" -eq 2 ] || fail "a start with the bad file exited $rc, want 2"
[ "$(cat "$TMP/start.err")" = "$bad_line" ] || fail "the start says '$(cat "$TMP/start.err")', the check '$bad_line'"

# 4. a missing file named with --config, and a directory
check "missing file" 1 "" "iomemd: cannot read the configuration file $TMP/nope.conf: No such file or directory" \
        --check-config --config "$TMP/nope.conf" --socket "$S"
check "a directory" 1 "" "iomemd: cannot read the configuration file $TMP: Is a directory" \
        --check-config --config "$TMP"

# 5. the options count as in a start: they win over the file, and they are checked with it
check "file alone: backend not allowed" 1 "" "iomemd: backend file is not in allowed-backends (see --help)" \
        --check-config --config "$TMP/backends.conf"
check "an option overriding the file's backend" 0 "iomemd: the configuration is valid (file $TMP/backends.conf)" "" \
        --check-config --config "$TMP/backends.conf" --backend memfd
check "an option overriding the file's allowed-backends" 0 \
        "iomemd: the configuration is valid (file $TMP/backends.conf)" "" \
        --check-config --config "$TMP/backends.conf" --allowed-backends file
check "an option the valid file contradicts" 1 "" "iomemd: backend shm is not in allowed-backends (see --help)" \
        --check-config --config "$TMP/ok.conf" --backend shm --allowed-backends memfd
check "a bad option value is a usage error" 2 "" \
        "iomemd: invalid --max-regions '0': expected a positive number (see --help)" \
        --check-config --config "$TMP/ok.conf" --max-regions 0
check "an unknown option" 2 "" "iomemd: unknown option '--nope' (see --help)" --check-config --nope
long=$(printf 'x%.0s' $(seq 5000))
check "an unknown option of 5000 bytes: the line whole, with its hint" 2 "" \
        "iomemd: unknown option '--$long' (see --help)" --check-config "--$long"
check "--pid without --check-config" 2 "" "iomemd: --pid goes with --check-config (see --help)" --pid 1
check "--pid with other options" 2 "" \
        "iomemd: --check-config --pid checks the options of that process: give no other option with it (see --help)" \
        --check-config --pid 1 --max-regions 5
check "--pid not a number" 2 "" "iomemd: invalid --pid 'x': expected a process id (see --help)" -t --pid x
"$IOMEMD" --help | grep -q -- "-t, --check-config" || fail "--help does not list --check-config"

# 6. nothing was created at the socket paths (--socket, $IOMEM_SOCKET, $XDG_RUNTIME_DIR's), the start above aside
for p in "$S" "$IOMEM_SOCKET" "$XDG_RUNTIME_DIR/iomemd.sock"; do
        [ ! -e "$p" ] && [ ! -L "$p" ] || fail "something was created at $p: $(ls -l "$p")"
done
# a stale socket file at --socket is left alone (a start would replace it), and so is a live daemon's
"$PYTHON3" -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$S"
ino=$(stat -c %i "$S")
check "stale socket file" 0 "iomemd: the configuration is valid (file $TMP/ok.conf)" "" \
        --check-config --config "$TMP/ok.conf" --socket "$S"
[ -S "$S" ] && [ "$(stat -c %i "$S")" = "$ino" ] || fail "the check touched the stale socket file at $S"
rm -f "$S"

# 7. a running daemon: the check beside it changes nothing there
start_daemon --config "$TMP/ok.conf"
ctl create keep 4K >/dev/null
ino=$(stat -c %i "$SOCK")
check "beside a running daemon" 0 "iomemd: the configuration is valid (file $TMP/ok.conf)" "" \
        --check-config --config "$TMP/ok.conf" --socket "$SOCK"
[ "$(stat -c %i "$SOCK")" = "$ino" ] || fail "the check replaced the running daemon's socket file"
ctl stat keep >/dev/null || fail "the running daemon lost its region or its socket"

# 8. --pid: what that daemon's SIGHUP would load: its own command line (here --config and the options start_daemon
# gives) and the file
check "--pid, valid" 0 "iomemd: the configuration of pid $DAEMON_PID is valid (file $TMP/ok.conf)" "" \
        --check-config --pid "$DAEMON_PID"
cp "$TMP/ok.conf" "$TMP/ok.conf.orig"
sed -i '1i max-events = 0' "$TMP/ok.conf"
check "--pid, the file broken since" 1 "" \
        "iomemd: $TMP/ok.conf:1: max-events = '0': expected a number of events 1..1000000" \
        --check-config --pid "$DAEMON_PID"
cp "$TMP/ok.conf.orig" "$TMP/ok.conf"
stop_daemon

# its own options count: started with --backend memfd, a file that allows only shm is valid alone, not for it
"$IOMEMD" --socket "$SOCK" --config "$TMP/ok.conf" --backend memfd --log-level notice 2>"$TMP/daemon.log" &
DAEMON_PID=$!
while ! ctl ping >/dev/null 2>&1; do kill -0 "$DAEMON_PID" || { fail "iomemd died"; break; }; sleep 0.01; done
printf 'allowed-backends = shm\n' >"$TMP/shm.conf"
cp "$TMP/shm.conf" "$TMP/ok.conf"
check "the file alone" 0 "iomemd: the configuration is valid (file $TMP/ok.conf)" "" \
        --check-config --config "$TMP/ok.conf"
check "--pid: the daemon's --backend memfd" 1 "" "iomemd: backend memfd is not in allowed-backends (see --help)" \
        --check-config --pid "$DAEMON_PID"
cp "$TMP/ok.conf.orig" "$TMP/ok.conf"
# the same broken file as in step 8 through this daemon's SIGHUP: the log line is the check's error
sed -i '1i max-events = 0' "$TMP/ok.conf"
kill -HUP "$DAEMON_PID"
while ! grep -q "configuration reload failed" "$TMP/daemon.log"; do
        kill -0 "$DAEMON_PID" || { fail "iomemd died on SIGHUP"; break; }
        sleep 0.01
done
grep -qxF "iomemd: error: configuration: $TMP/ok.conf:1: max-events = '0': expected a number of events 1..1000000" \
        "$TMP/daemon.log" || fail "SIGHUP's log line differs from the check's: $(cat "$TMP/daemon.log")"
cp "$TMP/ok.conf.orig" "$TMP/ok.conf"
stop_daemon

# a relative --config is the daemon's working directory's, not the checker's
mkdir "$TMP/wd"
cp "$TMP/ok.conf" "$TMP/wd/rel.conf"
(cd "$TMP/wd" && exec "$IOMEMD" --socket "$SOCK" --config rel.conf --log-level warning) &
DAEMON_PID=$!
while ! ctl ping >/dev/null 2>&1; do kill -0 "$DAEMON_PID" || { fail "iomemd died"; break; }; sleep 0.01; done
check "--pid, relative --config" 0 "iomemd: the configuration of pid $DAEMON_PID is valid (file rel.conf)" "" \
        --check-config --pid "$DAEMON_PID"
cp "$TMP/bad.conf" "$TMP/wd/rel.conf"
check "--pid, relative --config broken" 1 "" "iomemd: rel.conf:2: max-regions = 'lots': expected a positive number" \
        --check-config --pid "$DAEMON_PID"
stop_daemon

# a file that its command line names but a FIFO (the check would block on it for good), a device (/dev/zero would
# be an endless line; /dev/null here) or a huge file: the check refuses them, and does not block (timeout: only
# against a hang, the time is not asserted)
printf 'max-regions = 10\n' >"$TMP/swap.conf"
# (its log opened for appending: reload_refused empties it). Its address space bounded, as the checks' below
# (asmax): a read past the 16 MiB (/proc/self/pagemap) is then an error, not gigabytes of this shared machine
asmax=()
ldd "$IOMEMD" | grep -q libasan || asmax=(prlimit --as=1000000000 --)
"${asmax[@]}" "$IOMEMD" --socket "$SOCK" --config "$TMP/swap.conf" --log-level warning 2>>"$TMP/swap.log" &
DAEMON_PID=$!
while ! ctl ping >/dev/null 2>&1; do kill -0 "$DAEMON_PID" || { fail "iomemd died"; break; }; sleep 0.01; done
not_regular="iomemd: cannot read the configuration file $TMP/swap.conf: not a regular file"
rm "$TMP/swap.conf"
mkfifo "$TMP/swap.conf"
CHECK_TIMEOUT=60 check "--pid, the file now a FIFO" 1 "" "$not_regular" --check-config --pid "$DAEMON_PID"
# reload_refused WHAT REASON: SIGHUP the daemon, whose file is now not one to read; its reload logs REASON and keeps
# the running configuration, and the daemon still serves (before, its blocking fopen() of a FIFO nobody writes to
# stopped the event loop for good). The 60 s bound only turns such a hang into a failure: the time is not asserted.
reload_refused() {
        local what=$1 reason=$2 i
        : >"$TMP/swap.log"
        kill -HUP "$DAEMON_PID"
        for ((i = 0; i < 6000; i++)); do
                ! grep -q "configuration reload failed" "$TMP/swap.log" || break
                kill -0 "$DAEMON_PID" || { fail "$what: iomemd died on SIGHUP"; return; }
                sleep 0.01
        done
        if [ "$i" -eq 6000 ]; then
                fail "$what: nothing logged within 60 s of SIGHUP (iomemd hangs in its reload?)"
                # a daemon stuck opening the FIFO: a writer that closes at once lets it read an empty file
                [ ! -p "$TMP/swap.conf" ] || timeout 10 bash -c ': >"$1"' _ "$TMP/swap.conf" || true
        fi
        printf 'iomemd: error: configuration: cannot read the configuration file %s: %s
iomemd: error: configuration reload failed (Invalid argument): keeping the running configuration\n' \
                "$TMP/swap.conf" "$reason" >"$TMP/swap.want"
        cmp -s "$TMP/swap.log" "$TMP/swap.want" || fail "$what: the reload logged '$(cat "$TMP/swap.log")'"
        timeout 60 "$IOMEMCTL" --socket "$SOCK" ping >/dev/null || fail "$what: iomemd no longer answers after SIGHUP"
}
reload_refused "SIGHUP, the file now a FIFO" "not a regular file"
# opened_fifo WHAT CMD...: the FIFO must not even be opened (checked, then read through an O_PATH fd): an open() for
# reading, O_NONBLOCK or not, lets a writer blocked in its open() go on (a device's open can act too: /dev/watchdog).
# A writer blocked in open() (wchan wait_for_partner) is still blocked once CMD is done: the open woke it at once.
opened_fifo() {
        local what=$1 w i
        shift
        bash -c 'exec 3>"$1"' _ "$TMP/swap.conf" &
        w=$!
        ALIVE+=("$w")
        for ((i = 0; i < 6000; i++)); do
                [ "$(cat "/proc/$w/wchan" 2>/dev/null)" != wait_for_partner ] || break
                sleep 0.01
        done
        if [ "$i" -eq 6000 ]; then
                echo "note: no wchan wait_for_partner for a FIFO's blocked writer here: '$what' skipped"
        else
                "$@"
                [ "$(cat "/proc/$w/wchan" 2>/dev/null)" = wait_for_partner ] \
                        || fail "$what: the FIFO was opened (its blocked writer went on)"
        fi
        kill "$w" 2>/dev/null || true
        wait "$w" 2>/dev/null || true
}
opened_fifo "--pid, the file a FIFO with a blocked writer" \
        check "--pid, the file a FIFO with a blocked writer" 1 "" "$not_regular" --check-config --pid "$DAEMON_PID"
opened_fifo "SIGHUP, the file a FIFO with a blocked writer" \
        reload_refused "SIGHUP, the file a FIFO with a blocked writer" "not a regular file"
rm "$TMP/swap.conf"
ln -s /dev/null "$TMP/swap.conf"
check "--pid, the file now a device" 1 "" "$not_regular" --check-config --pid "$DAEMON_PID"
rm "$TMP/swap.conf"
truncate -s 17M "$TMP/swap.conf"
check "--pid, the file now 17 MiB" 1 "" \
        "iomemd: cannot read the configuration file $TMP/swap.conf: larger than 16 MiB" --check-config --pid "$DAEMON_PID"
reload_refused "SIGHUP, the file now 17 MiB" "larger than 16 MiB"
# a regular file that says less than it holds: /proc/self/pagemap's size is 0, its content hundreds of GB (zeros
# for the unmapped addresses: one endless line). The bound holds for the bytes read, not only for fstat()'s size.
rm "$TMP/swap.conf"
ln -s /proc/self/pagemap "$TMP/swap.conf"
CHECK_ASMAX=1 check "--pid, the file now /proc/self/pagemap" 1 "" \
        "iomemd: cannot read the configuration file $TMP/swap.conf: larger than 16 MiB" --check-config --pid "$DAEMON_PID"
reload_refused "SIGHUP, the file now /proc/self/pagemap" "larger than 16 MiB"
rm "$TMP/swap.conf"
printf 'max-regions = 10\n' >"$TMP/swap.conf"
stop_daemon

# a daemon whose binary was replaced since it started (an upgrade): its /proc/PID/exe ends in " (deleted)", and it
# is still an iomemd to the check
mkdir "$TMP/old"
cp "$IOMEMD" "$TMP/old/iomemd"
"$TMP/old/iomemd" --socket "$SOCK" --config "$TMP/ok.conf" --log-level warning &
DAEMON_PID=$!
while ! ctl ping >/dev/null 2>&1; do kill -0 "$DAEMON_PID" || { fail "iomemd died"; break; }; sleep 0.01; done
rm "$TMP/old/iomemd"
check "--pid, its binary deleted since" 0 "iomemd: the configuration of pid $DAEMON_PID is valid (file $TMP/ok.conf)" \
        "" --check-config --pid "$DAEMON_PID"
stop_daemon

# a command line with a control byte (here an escape sequence in the file's name; one of another user would reach
# the checker's terminal raw in the errors and the valid line): not checked
esc=$TMP/$'x\e[1mx'.conf
printf 'max-regions = 10\n' >"$esc"
"$IOMEMD" --socket "$SOCK" --config "$esc" --log-level warning &
DAEMON_PID=$!
while ! ctl ping >/dev/null 2>&1; do kill -0 "$DAEMON_PID" || { fail "iomemd died"; break; }; sleep 0.01; done
check "--pid, a control byte in its command line" 1 "" \
        "iomemd: the command line of pid $DAEMON_PID has a control byte in argument 4: not checked" \
        --check-config --pid "$DAEMON_PID"
stop_daemon

# a process that is not iomemd, and one that is gone
sleep 300 &
ALIVE+=($!)
# until the forked shell has exec'd sleep: before, its command line is this script's
until [ "$(tr '\0' ' ' <"/proc/$!/cmdline")" = "sleep 300 " ]; do sleep 0.01; done
check "--pid of sleep" 1 "" "iomemd: pid $! is not a running iomemd: it runs $(readlink "/proc/$!/exe")" \
        --check-config --pid "$!"
kill "$!"
wait "$!" 2>/dev/null || true
check "--pid of a process gone" 1 "" \
        "iomemd: cannot read the command line of pid $! (/proc/$!/cmdline): no such process" --check-config --pid "$!"

# 9. a reload keeps max-region-fds (read at start only) and says so; the check calls such a file valid
printf 'max-region-fds = 7\n' >"$TMP/fds.conf"
"$IOMEMD" --socket "$SOCK" --config "$TMP/fds.conf" --log-level notice 2>"$TMP/fds.log" &
DAEMON_PID=$!
while ! ctl ping >/dev/null 2>&1; do kill -0 "$DAEMON_PID" || { fail "iomemd died"; break; }; sleep 0.01; done
printf 'max-region-fds = 9\n' >"$TMP/fds.conf"
check "--pid, another max-region-fds" 0 \
        "iomemd: the configuration of pid $DAEMON_PID is valid (file $TMP/fds.conf)" "" \
        --check-config --pid "$DAEMON_PID"
kill -HUP "$DAEMON_PID"
while ! grep -q "configuration reloaded" "$TMP/fds.log"; do # logged after the warning
        kill -0 "$DAEMON_PID" || { fail "iomemd died on SIGHUP"; break; }
        sleep 0.01
done
grep -qxF "iomemd: warning: configuration: max-region-fds = 9 is read at start only: the running iomemd keeps 7 until \
it is restarted" "$TMP/fds.log" || fail "no warning for a max-region-fds the reload keeps: $(cat "$TMP/fds.log")"
stop_daemon

# 10. no root needed: as another uid, on a file it may read (the daemon's install staged where it may run it)
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
        stage_iomemctl
        mkdir -m 0755 "$STAGE/conf"
        cp "$TMP/ok.conf" "$STAGE/conf/ok.conf"
        chmod 0644 "$STAGE/conf/ok.conf"
        out=$(setpriv --reuid 4242 --regid 4242 --clear-groups env -u IOMEM_SOCKET -u XDG_RUNTIME_DIR \
                "$STAGE/bin/iomemd" --check-config --config "$STAGE/conf/ok.conf" 2>&1) \
                || fail "the check as uid 4242 failed: $out"
        [ "$out" = "iomemd: the configuration is valid (file $STAGE/conf/ok.conf)" ] || fail "as uid 4242: $out"
        # root's --pid check of uid 4242's daemon reads the file as that daemon would: a file that only root may
        # read is invalid for it (its reload would fail), though root itself can read it
        mkdir -m 0755 "$STAGE/run"
        chown 4242:4242 "$STAGE/run"
        (cd "$STAGE/conf" && exec setpriv --reuid 4242 --regid 4242 --clear-groups env -u IOMEM_SOCKET \
                -u XDG_RUNTIME_DIR "$STAGE/bin/iomemd" --socket "$STAGE/run/s" --config ok.conf --log-level error) &
        upid=$!
        ALIVE+=("$upid")
        while ! "$IOMEMCTL" --socket "$STAGE/run/s" ping >/dev/null 2>&1; do
                kill -0 "$upid" || { fail "iomemd as uid 4242 died"; break; }
                sleep 0.01
        done
        check "root, --pid of uid 4242's daemon" 0 \
                "iomemd: the configuration of pid $upid is valid (file ok.conf)" "" --check-config --pid "$upid"
        chmod 0600 "$STAGE/conf/ok.conf"
        check "root, --pid of uid 4242's daemon, a file it may not read" 1 "" \
                "iomemd: cannot read the configuration file ok.conf: Permission denied" --check-config --pid "$upid"
        # no way back to root: one whose securebits keep its capabilities across setuid() (no_setuid_fixup) would
        # still read the file as root: the check refuses to go on
        rc=0
        setpriv --securebits +no_setuid_fixup "$IOMEMD" --check-config --pid "$upid" >"$TMP/out" 2>"$TMP/err" || rc=$?
        [ "$rc" -eq 1 ] && [ ! -s "$TMP/out" ] && [ "$(cat "$TMP/err")" = \
                "iomemd: cannot take on the credentials of pid $upid: Operation not permitted" ] \
                || fail "root keeping its capabilities across setuid: exit $rc, $(cat "$TMP/out" "$TMP/err")"
        kill "$upid"
        wait "$upid" || fail "iomemd as uid 4242 exited with $?"

        # a root process that is not iomemd (a setuid program a user started, with arguments of their choice),
        # whose command line names a file only root may read: the check, which stays root for it, does not read
        # the file (its error line would quote it). Here a root python that rewrites its own command line.
        printf 'secret-sentinel: hunter2\n' >"$TMP/secret"
        chmod 0600 "$TMP/secret"
        # shellcheck disable=SC2016
        code='import sys, time
new = b"".join(a.encode() + b"\0" for a in sys.argv[1:])
start, end = (int(x) for x in open("/proc/self/stat").read().rsplit(")", 1)[1].split()[45:47])
pad = end - start - len(new) - len("--tmpdir=") - 1
with open("/proc/self/mem", "r+b", buffering=0) as m:
    m.seek(start)
    m.write(new + b"--tmpdir=" + b"/" * pad + b"\0")
time.sleep(300)'
        "$PYTHON3" -c "$code" x --config "$TMP/secret" &
        fpid=$!
        ALIVE+=("$fpid")
        until tr '\0' ' ' <"/proc/$fpid/cmdline" | grep -q "^x --config $TMP/secret --tmpdir=/"; do
                kill -0 "$fpid" || { fail "the fake process died"; break; }
                sleep 0.01
        done
        check "root, --pid of a root process that is not iomemd" 1 "" \
                "iomemd: pid $fpid is not a running iomemd: it runs $(readlink "/proc/$fpid/exe")" \
                --check-config --pid "$fpid"
        kill "$fpid"

        # /proc mounted with hidepid=2 (invisible): uid 4242 sees no /proc/PID for root's process, which still
        # runs. The check says so (not "no such process"), and what to do; a pid that is gone stays "no such
        # process". A private proc mount in a mount namespace of its own, so the host's /proc is not touched.
        # hidepid=1 (noaccess) shows the directory but not its files: the error names hidepid too.
        # hidden_check PID [HIDEPID]: run uid 4242's check of PID there (hidepid=2, or HIDEPID), into $TMP/out,
        # $TMP/err and $rc
        hidden_check() {
                rc=0
                unshare --mount --propagation private bash -c 'mount -t proc -o "hidepid=$3" proc /proc && exec \
                        setpriv --reuid 4242 --regid 4242 --clear-groups "$1" --check-config --pid "$2"' _ \
                        "$STAGE/bin/iomemd" "$1" "${2:-2}" >"$TMP/out" 2>"$TMP/err" || rc=$?
        }
        if unshare --mount --propagation private bash -c 'mount -t proc -o hidepid=2 proc /proc' 2>/dev/null; then
                sleep 300 &
                hpid=$!
                ALIVE+=("$hpid")
                hidden_check "$hpid"
                [ "$rc" -eq 1 ] && [ ! -s "$TMP/out" ] && [ "$(cat "$TMP/err")" = "iomemd: cannot read the command \
line of pid $hpid (/proc/$hpid/cmdline): the process exists, but its /proc entry is hidden from this user (/proc \
mounted with hidepid=?): run the check as that process's user or root" ] \
                        || fail "hidepid=2, a root process: exit $rc, $(cat "$TMP/out" "$TMP/err")"
                hidden_check "$hpid" 1
                [ "$rc" -eq 1 ] && [ ! -s "$TMP/out" ] && [ "$(cat "$TMP/err")" = "iomemd: cannot read the command \
line of pid $hpid (/proc/$hpid/cmdline): Operation not permitted (/proc mounted with hidepid=?): run the check as \
that process's user or root" ] || fail "hidepid=1, a root process: exit $rc, $(cat "$TMP/out" "$TMP/err")"
                kill "$hpid"
                wait "$hpid" 2>/dev/null || true
                hidden_check "$hpid"
                [ "$rc" -eq 1 ] && [ "$(cat "$TMP/err")" = \
                        "iomemd: cannot read the command line of pid $hpid (/proc/$hpid/cmdline): no such process" ] \
                        || fail "hidepid=2, a process gone: exit $rc, $(cat "$TMP/out" "$TMP/err")"
        else
                echo "note: cannot mount a proc with hidepid=2 in a mount namespace here: the hidepid case is skipped"
        fi
else
        echo "note: not root: the other-uid case is skipped (this test already runs as a non-root uid)"
fi


# 11. under systemd (ExecReload=), stderr is the journal: $JOURNAL_STREAM is its DEV:INO. The check's errors then
# carry the sd-daemon prefix <3> (err), so that `journalctl -p err` shows why a reload failed; a terminal that merely
# inherited $JOURNAL_STREAM (a shell started from a service) sees the bare line
# jcheck WHAT WANT_STATUS WANT_STDERR JOURNAL ARGS...: as check, stderr to $TMP/journal; JOURNAL=1: the variable
# names that file, 0: another file (inherited), "": unset
jcheck() {
        local what=$1 want=$2 err=$3 journal=$4 rc=0 js=
        shift 4
        : >"$TMP/journal"
        case $journal in
        1) js=$(stat -c %d:%i "$TMP/journal") ;;
        0) js=$(stat -c %d:%i "$TMP/ok.conf") ;;
        esac
        if [ -n "$journal" ]; then
                JOURNAL_STREAM=$js "$IOMEMD" "$@" >"$TMP/out" 2>>"$TMP/journal" || rc=$?
        else
                env -u JOURNAL_STREAM "$IOMEMD" "$@" >"$TMP/out" 2>>"$TMP/journal" || rc=$?
        fi
        [ "$rc" -eq "$want" ] || fail "$what: exit status $rc, want $want (stderr: $(cat "$TMP/journal"))"
        [ "$(cat "$TMP/journal")" = "$err" ] || fail "$what: stderr '$(cat "$TMP/journal")', want '$err'"
}
jcheck "journal: an invalid file" 1 "<3>$bad_line" 1 --check-config --config "$TMP/bad.conf" --socket "$S"
jcheck "journal: a usage error" 2 "<3>iomemd: unknown option '--nope' (see --help)" 1 --check-config --nope
jcheck "journal: a start with the invalid file" 2 "<3>$bad_line" 1 --config "$TMP/bad.conf" --socket "$S"
jcheck "journal: a valid file says nothing on stderr" 0 "" 1 --check-config --config "$TMP/ok.conf" --socket "$S"
jcheck "inherited JOURNAL_STREAM, stderr elsewhere" 1 "$bad_line" 0 --check-config --config "$TMP/bad.conf" \
        --socket "$S"
JOURNAL_STREAM=garbage "$IOMEMD" --check-config --config "$TMP/bad.conf" --socket "$S" 2>"$TMP/journal" && \
        fail "the invalid file passed"
[ "$(cat "$TMP/journal")" = "$bad_line" ] || fail "JOURNAL_STREAM=garbage: stderr '$(cat "$TMP/journal")'"
jcheck "no JOURNAL_STREAM" 1 "$bad_line" "" --check-config --config "$TMP/bad.conf" --socket "$S"

# 12. a control byte of an argument or a file's name that reaches a line is escaped ("\xHH"): one call, one line.
# A newline would start a second line, which for the journal could carry a forged priority ("<0>", emerg).
nl=$TMP/$'n\n<0>forged'
jcheck "journal: a missing file whose name has a newline" 1 \
        "<3>iomemd: cannot read the configuration file $TMP/n\\x0a<0>forged: No such file or directory" 1 \
        --check-config --config "$nl" --socket "$S"
check "a missing file whose name has a newline and a tab" 1 "" \
        "iomemd: cannot read the configuration file $TMP/n\\x0a<0>forged\\x09x: No such file or directory" \
        --check-config --config "$nl"$'\tx' --socket "$S"
long=$(printf 'y%.0s' $(seq 5000))
check "an unknown option of 5000 bytes with an ESC: the line whole, escaped" 2 "" \
        "iomemd: unknown option '--$long\\x1b[1m$long' (see --help)" --check-config "--$long"$'\e[1m'"$long"
# the daemon's own log lines (log_message()): a reload's error naming its file
printf 'max-regions = 10\n' >"$nl"
"$IOMEMD" --socket "$SOCK" --config "$nl" --log-level warning 2>"$TMP/nl.log" &
DAEMON_PID=$!
while ! ctl ping >/dev/null 2>&1; do kill -0 "$DAEMON_PID" || { fail "iomemd died"; break; }; sleep 0.01; done
printf 'max-regions = lots\n' >"$nl"
kill -HUP "$DAEMON_PID"
while ! grep -q "configuration reload failed" "$TMP/nl.log"; do
        kill -0 "$DAEMON_PID" || { fail "iomemd died on SIGHUP"; break; }
        sleep 0.01
done
printf '%s\n' "iomemd: error: configuration: $TMP/n\x0a<0>forged:1: max-regions = 'lots': expected a positive number" \
        "iomemd: error: configuration reload failed (Invalid argument): keeping the running configuration" \
        >"$TMP/nl.want"
cmp -s "$TMP/nl.log" "$TMP/nl.want" || fail "a reload's error naming a file with a newline: '$(cat "$TMP/nl.log")'"
stop_daemon
# a line cut at its 2 KiB bound keeps whole UTF-8 characters (else the journal stores it as a blob): a SIGHUP's
# "configuration reloaded from PATH" with PATH > 2 KiB of "é" placed so that the cut falls inside one
long=$("$PYTHON3" - "$TMP" <<'PY'
import sys
tmp = sys.argv[1]
for pad in ("", "a"):
    path = tmp + "/" + pad + "/".join(["\u00e9" * 100] * 11)
    line = ("SIGHUP: configuration reloaded from " + path + "/u.conf").encode()
    if len(line) > 2047 and line[2046] == 0xC3:
        print(path)
        break
PY
)
mkdir -p "$long"
printf 'max-regions = 10\n' >"$long/u.conf"
"$IOMEMD" --socket "$SOCK" --config "$long/u.conf" 2>"$TMP/u.log" &
DAEMON_PID=$!
while ! ctl ping >/dev/null 2>&1; do kill -0 "$DAEMON_PID" || { fail "iomemd died"; break; }; sleep 0.01; done
kill -HUP "$DAEMON_PID"
while ! grep -q "configuration reloaded" "$TMP/u.log"; do
        kill -0 "$DAEMON_PID" || { fail "iomemd died on SIGHUP"; break; }
        sleep 0.01
done
stop_daemon
"$PYTHON3" -c 'import sys; open(sys.argv[1], "rb").read().decode("utf-8")' "$TMP/u.log" 2>/dev/null \
        || fail "a log line cut at 2 KiB is not UTF-8: '$(tail -c 40 "$TMP/u.log" | od -c | head -2)'"
grep -q "^iomemd: notice: SIGHUP: configuration reloaded from $TMP/" "$TMP/u.log" \
        || fail "no reload line: '$(cat "$TMP/u.log")'"
finish
