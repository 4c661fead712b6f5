#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-cli: every iomemctl command against the real iomemd, per backend: output, exit codes, one-line errors, --json.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

json() { # json EXPR: evaluate a Python expression over the JSON document on stdin (as j)
        "$PYTHON3" -c "import json,sys; j=json.load(sys.stdin); v=($1); print(v)"
}

# --- without a daemon
expect_ok "--help" "$IOMEMCTL" --help
"$IOMEMCTL" --help | grep -q "^Usage: iomemctl" || fail "--help text"
# every --backend value create takes is in the help (auto was missing)
"$IOMEMCTL" --help | grep -qF -- "--backend memfd|shm|file|auto" || fail "--help lacks --backend auto"
# a command's --help prints the help, also for exec, whose arguments end at -- (it was a usage error, exit 2)
for c in create exec "exec NAME"; do
        # shellcheck disable=SC2086
        "$IOMEMCTL" $c --help | grep -q "^Usage: iomemctl" || fail "$c --help"
done
[ "$("$IOMEMCTL" --version)" = "iomemctl $("$IOMEMCTL" --version | cut -d' ' -f2)" ] || fail "--version"
"$IOMEMCTL" --version | grep -Eq '^iomemctl [0-9]+\.[0-9]+' || fail "--version format"
expect_err "no command" 2 "no command given" "$IOMEMCTL"
expect_err "unknown command" 2 "unknown command 'frobnicate'" "$IOMEMCTL" frobnicate
expect_err "bad option" 2 "bad option" "$IOMEMCTL" --frob ping
expect_err "missing argument" 2 "create: missing SIZE \(create NAME SIZE\)" "$IOMEMCTL" create onlyname
expect_err "bad size" 2 "create: bad size '12Q'" "$IOMEMCTL" create x 12Q
expect_err "bad mode" 2 "create: bad mode '0999'" "$IOMEMCTL" create x 4K --mode 0999
expect_err "bad backend" 2 "create: unknown backend 'tape'" "$IOMEMCTL" create x 4K --backend tape
expect_err "bad seal" 2 "seal: bad seal 'glue'" "$IOMEMCTL" seal x glue
expect_err "option for another command" 2 "read: option '--exclusive' does not apply" "$IOMEMCTL" read x --exclusive
expect_err "exec without --" 2 "exec: expected" "$IOMEMCTL" exec x true
expect_err "no daemon" 1 "connect to $SOCK \(--socket\): no such socket, so no daemon is running there: " ctl ping

# --- a --socket path that is not a socket is refused and left alone (it used to be unlinked as "stale")
echo keep >"$TMP/not-a-socket"
# 120 s: a hang detector (under valgrind on a loaded machine iomemd needed more than 10 s to get here). Exit 0
# (it ran and stopped) and 124 (still running when timeout killed it: it started, or hung) both fail: an "if"
# on the command alone took timeout's 124 for a refusal.
rc=0
timeout 120 "$IOMEMD" --socket "$TMP/not-a-socket" --log-level warning --tmpdir "$TMP" 2>"$TMP/notsock.err" || rc=$?
if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
        fail "iomemd started on a regular file (exit $rc; 124: still running after 120 s)"
fi
[ "$(cat "$TMP/not-a-socket")" = keep ] || fail "iomemd removed a regular file given as --socket"
grep -q "not-a-socket exists and is not a socket; refusing to remove it" "$TMP/notsock.err" ||
        fail "no clear error for a --socket that is not a socket: $(cat "$TMP/notsock.err")"
# and only that: it used to go on "cannot listen on PATH: in use: another iomemd (or another program) answers there"
[ "$(grep -c 'error:' "$TMP/notsock.err")" -eq 1 ] ||
        fail "a --socket that is not a socket gives more than one error line: $(cat "$TMP/notsock.err")"

start_daemon

for backend in memfd shm file; do
        n="cli.$backend"
        # create / stat
        # resizable: a named memfd otherwise is sealed against SHRINK and GROW (its size never changes)
        expect_ok "create $backend" ctl create "$n" 8K --resizable --backend "$backend" --mode 0640
        expect_err "create exclusive $backend" 1 "create $n: .*exists" ctl create "$n" 8K --exclusive --backend "$backend"
        out=$(ctl --json stat "$n")
        [ "$(echo "$out" | json 'j["size"]')" = 8192 ] || fail "stat size $backend: $out"
        [ "$(echo "$out" | json 'j["backend"]')" = "$backend" ] || fail "stat backend $backend: $out"
        [ "$(echo "$out" | json 'j["mode"]')" = 0640 ] || fail "stat mode $backend: $out"
        [ "$(echo "$out" | json 'j["name"]')" = "$n" ] || fail "stat name $backend: $out"
        [ "$(echo "$out" | json 'j["uid"]')" = "$(id -u)" ] || fail "stat uid $backend: $out"
        ctl stat "$n" | grep -Eq "^size: +8192$" || fail "stat text $backend"
        # S4 with two unrelated iomemctl processes: one writes, another reads by name
        printf 'hello %s' "$backend" | ctl write "$n" --offset 4000
        [ "$(ctl read "$n" --offset 4000 --length $((6 + ${#backend})))" = "hello $backend" ] || fail "write/read $backend"
        # FILE argument, page-crossing offset, whole-region read length
        head -c 5000 /dev/urandom >"$TMP/blob"
        ctl write "$n" --offset 3000 "$TMP/blob"
        ctl read "$n" --offset 3000 --length 5000 >"$TMP/back"
        cmp -s "$TMP/blob" "$TMP/back" || fail "file round trip $backend"
        [ "$(ctl read "$n" | wc -c)" -eq 8192 ] || fail "read whole region $backend"
        # too big: clear -ERANGE-style error, nothing written
        expect_err "write too big $backend" 1 \
                "write $n: 5000 bytes at offset 4000 do not fit in the region \(8192 bytes\); nothing was written$" \
                ctl write "$n" --offset 4000 "$TMP/blob"
        head -c 9000 /dev/zero | expect_err "write too big from stdin $backend" 1 \
                "write $n: the input does not fit in the region \(8192 bytes\) at offset 0; nothing was written$" \
                ctl write "$n"
        cmp -s "$TMP/blob" <(ctl read "$n" --offset 3000 --length 5000) || fail "failed write changed bytes $backend"
        # stdin a regular file whose offset is past its end (a shared fd another program moved): nothing to write
        (exec <"$TMP/blob" && "$PYTHON3" -c 'import os; os.lseek(0, 6000, os.SEEK_SET)' &&
                expect_ok "write from stdin past its file's end $backend" ctl write "$n" && exit "$FAILURES") ||
                fail "write from stdin past its file's end $backend"
        cmp -s "$TMP/blob" <(ctl read "$n" --offset 3000 --length 5000) || fail "write past stdin's end changed bytes"
        expect_err "read past end $backend" 1 \
                "read $n: offset 8192 \+ length 1 is past the end of the region \(8192 bytes\)$" \
                ctl read "$n" --offset 8K --length 1
        # resize
        expect_ok "resize $backend" ctl resize "$n" 16K
        [ "$(ctl --json stat "$n" | json 'j["size"]')" = 16384 ] || fail "resize $backend"
        expect_err "resize huge $backend" 1 "resize $n: " ctl resize "$n" 2T
        # seal
        if [ "$backend" = memfd ]; then
                expect_ok "seal memfd" ctl seal "$n" grow
                [ "$(ctl --json stat "$n" | json '",".join(j["seals"])')" = "grow" ] ||
                        fail "seals after seal: $(ctl --json stat "$n")"
                expect_err "resize sealed" 1 "resize $n: " ctl resize "$n" 32K
        else
                expect_err "seal $backend" 1 "seal $n: " ctl seal "$n" grow
        fi
        # exec: the child gets the fd and the size
        [ "$(ctl exec "$n" -- sh -c 'echo "$IOMEM_SIZE"')" = 16384 ] || fail "exec IOMEM_SIZE $backend"
        ctl exec "$n" -- sh -c 'printf exec-wrote 1<>/proc/self/fd/$IOMEM_FD' || fail "exec write $backend"
        [ "$(ctl read "$n" --length 10)" = exec-wrote ] || fail "exec child write not seen $backend"
        rc=0; ctl exec "$n" -- sh -c 'exit 7' || rc=$?
        [ "$rc" -eq 7 ] || fail "exec exit status $rc $backend"
        rc=0; ctl exec "$n" --read-only -- sh -c 'printf x >&$IOMEM_FD' 2>/dev/null || rc=$?
        [ "$rc" -ne 0 ] || fail "exec --read-only allowed a write $backend"
        # rm
        expect_ok "rm $backend" ctl rm "$n"
        expect_err "rm again $backend" 1 "rm $n: " ctl rm "$n"
        expect_err "stat removed $backend" 1 "stat $n: " ctl stat "$n"
done

# exec of a missing program: 127 and one line
expect_err "exec missing program" 127 "exec cli.x: /nonexistent: " bash -c \
        "'$IOMEMCTL' --socket '$SOCK' create cli.x 4K && '$IOMEMCTL' --socket '$SOCK' exec cli.x -- /nonexistent"

# D9: the exec'd child holds what a child of the caller holds, plus the region fd, and nothing else
fdnum=$(ctl exec cli.x -- sh -c 'echo "$IOMEM_FD"')
want=$( (sh -c 'ls /proc/$$/fd'; echo "$fdnum") | sort -n | tr '\n' ' ')
got=$(ctl exec cli.x -- sh -c 'ls /proc/$$/fd' | sort -n | tr '\n' ' ')
[ "$got" = "$want" ] || fail "exec child fds: got '$got', want '$want'"

# list, text and JSON, with a name that needs no escaping and prefixes
ctl create 'cli.list/a:b@c+d=e,f' 4K
ctl create cli.list.2 1M --seal shrink,grow
ctl create other 4K
out=$(ctl --json list cli.list)
[ "$(echo "$out" | json 'len(j)')" = 2 ] || fail "list --json prefix: $out"
[ "$(echo "$out" | json 'sorted(e["name"] for e in j)')" = "['cli.list.2', 'cli.list/a:b@c+d=e,f']" ] || fail "list names: $out"
[ "$(echo "$out" | json '[e["size"] for e in j if e["name"]=="cli.list.2"][0]')" = 1048576 ] || fail "list size"
[ "$(ctl --json list | json 'len(j)')" = 4 ] || fail "list all"
[ "$(ctl --json list nothing | json 'len(j)')" = 0 ] || fail "list empty"
[ "$(ctl list cli.list | wc -l)" -eq 2 ] || fail "list text"
expect_err "list bad prefix" 1 "list: " ctl list 'bad prefix'
expect_err "bad name" 1 "create bad name: " ctl create 'bad name' 4K
expect_err "too big" 1 "create big: " ctl create big 1T

# status and ping
[ "$(ctl ping)" = pong ] || fail "ping"
out=$(ctl --json status)
[ "$(echo "$out" | json 'j["regions"]')" = 4 ] || fail "status regions: $out"
[ "$(echo "$out" | json 'j["connections"] >= 1')" = True ] || fail "status connections: $out"
echo "$out" | json 'j["version"]' | grep -q . || fail "status version"
ctl status | grep -q "^regions: *4$" || fail "status text"

# wait: times out with a short timeout; succeeds when another process creates the name later
expect_err "wait timeout" 1 "wait cli.later: " ctl wait cli.later --timeout 0.2
ctl wait cli.later --timeout 30 &
waiter=$!
sleep 0.2
ctl create cli.later 4K
wait "$waiter" || fail "wait did not succeed after create"

# a --lease region ends with the iomemctl process that created it
ctl create cli.lease 4K --lease
for _ in $(seq 1 100); do ctl stat cli.lease >/dev/null 2>&1 || break; sleep 0.02; done
expect_err "lease ended" 1 "stat cli.lease: " ctl stat cli.lease

# --huge and --reserve: the reply says what the daemon made
out=$(ctl create cli.res 1M --reserve) || fail "create --reserve"
[ "$out" = "pages: normal, reserved" ] || fail "create --reserve said '$out'"
out=$(ctl create cli.huge 3M --huge) || fail "create --huge"
# 3 MiB is not whole 2 MiB pages: never hugetlb; transparent huge pages where the system gives them to shmem
case "$out" in "pages: normal" | "pages: transparent-huge") ;; *) fail "create --huge said '$out'" ;; esac
expect_err "bad page size" 2 "create: bad page size" ctl create cli.bad 4M --huge=3M
expect_err "reserve too big" 1 "create cli.res2: size above the daemon's limit: 1T asked, max-region-size is [0-9]+[KMGT]?;" \
        ctl create cli.res2 1T --reserve

stop_daemon

# a reservation the backing file system cannot hold fails now, with the daemon's reason
if unshare -m true 2>/dev/null; then
        mkdir "$TMP/small"
        rc=0
        unshare -m sh -c '
                mount -t tmpfs -o size=1m tmpfs "$1" || exit 77
                "$2" --socket "$1/sock" --log-level warning --backend file --tmpdir "$1" &
                pid=$!
                # up to 120 s, as start_daemon (lib.sh): under valgrind and load iomemd takes 9 to 23 s to listen
                end=$(($(date +%s) + 120))
                until "$3" --socket "$1/sock" ping >/dev/null 2>&1 || [ "$(date +%s)" -ge "$end" ]; do sleep 0.01; done
                "$3" --socket "$1/sock" create small 4M --reserve 2>"$1/err"; echo "rc=$?" >>"$1/err"
                "$3" --socket "$1/sock" create fits 256K --reserve >>"$1/err" 2>&1; echo "rc=$?" >>"$1/err"
                cp "$1/err" "$4"
                kill $pid; wait $pid
        ' sh "$TMP/small" "$IOMEMD" "$IOMEMCTL" "$TMP/reserve.err" || rc=$?
        if [ "$rc" -eq 77 ]; then
                echo "no tmpfs mount here: reserve ENOSPC part skipped"
        else
                grep -q "^iomemctl: create small: cannot reserve the memory" "$TMP/reserve.err" ||
                        fail "reserve ENOSPC: $(cat "$TMP/reserve.err")"
                grep -q "^rc=1$" "$TMP/reserve.err" || fail "reserve ENOSPC exit status: $(cat "$TMP/reserve.err")"
                grep -q "^pages: normal, reserved$" "$TMP/reserve.err" || fail "reserve that fits: $(cat "$TMP/reserve.err")"
        fi
else
        echo "no mount namespace here: reserve ENOSPC part skipped"
fi

finish
