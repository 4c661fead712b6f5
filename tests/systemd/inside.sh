#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs inside systemd-nspawn as a oneshot unit, with systemd as PID 1 and the project's own units installed.
# Usage: inside.sh PREFIX SOURCE_DIR OUT_DIR (PREFIX: a `cmake --install` of the build, readable by every uid).
# Ends the container with `systemctl exit 0` on success.
set -uo pipefail
B=$1; S=$2; OUT=$3
SOCK=/run/iomemd/iomemd.sock
ctl() { "$B/bin/iomemctl" --socket "$SOCK" "$@"; }
log() { echo "$*" >> "$OUT/log"; }
finish() {
  log "--- journal of iomemd ---"
  journalctl -u iomemd.service --no-pager -o cat 2>/dev/null | tail -n 80 >> "$OUT/log"
  systemctl exit "$1"; exit "$1"
}
fail() { log "FAIL: $*"; finish 1; }
pass() { log "ok: $*"; }
mainpid() { systemctl show -p MainPID --value iomemd.service; }
wait_active_new_pid() { # OLD_PID SECONDS
  local old=$1 n=$(( $2 * 10 )) pid
  for ((i = 0; i < n; i++)); do
    pid=$(mainpid)
    if [ "$pid" != 0 ] && [ "$pid" != "$old" ] && [ "$(systemctl is-active iomemd.service)" = active ]; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}
check_regions() { # WHEN
  local when=$1 st
  for r in r1 r2 r3; do
    ctl read "$r" --length "$(stat -c %s "$OUT/$r.data")" > "$OUT/$r.back" 2>>"$OUT/log" || fail "$when: read $r"
    cmp -s "$OUT/$r.data" "$OUT/$r.back" || fail "$when: bytes of $r differ"
  done
  st=$(ctl --json stat r2) || fail "$when: stat r2"
  echo "$st" | /usr/bin/python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["uid"]==4242 and s["gid"]==4343 and int(s["mode"],8)==0o604 else 1)' \
    || fail "$when: owner/mode of r2 not kept: $st"
  st=$(ctl --json stat r1) || fail "$when: stat r1"
  echo "$st" | /usr/bin/python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["uid"]==0 and int(s["mode"],8)==0o640 else 1)' \
    || fail "$when: owner/mode of r1 not kept: $st"
  local names; names=$(ctl list | cut -f1) || fail "$when: list"
  for r in r1 r2 r3 dir/r4; do
    grep -qx -- "$r" <<<"$names" || fail "$when: $r missing from list: $(tr '\n' ' ' <<<"$names")"
  done
  pass "$when: every region back with its bytes, name, owner and mode"
}

: > "$OUT/log"
# every step's stderr goes to the log too, just before the FAIL line that a failing step writes
exec 2>>"$OUT/log"
log "systemd $(systemctl --version | head -1)"

# 1. socket activation and readiness
[ "$(systemctl is-active iomemd.socket)" = active ] || fail "iomemd.socket not active"
[ "$(systemctl is-active iomemd.service)" != active ] || fail "service active before any client"
ctl ping >>"$OUT/log" 2>&1 || fail "first client could not reach the daemon"
[ "$(systemctl is-active iomemd.service)" = active ] || fail "service not active (READY=1) after a client connected"
[ "$(systemctl show -p Type --value iomemd.service)" = notify ] || fail "not Type=notify"
pass "a client's connection activated iomemd and READY=1 was reached"
[ "$(systemctl show -p User --value iomemd.service)" = iomemd ] || fail "not running as its own user"
uid=$(ps -o uid= -p "$(mainpid)" | tr -d ' ')
[ "$uid" != 0 ] || fail "daemon runs as root"
pass "daemon runs as dynamic user uid $uid"

# 2. regions of several owners and modes, with bytes
head -c 12288 /dev/urandom > "$OUT/r1.data"
head -c 1000 /dev/urandom > "$OUT/r2.data"
head -c 1048576 /dev/urandom > "$OUT/r3.data"
ctl create r1 12288 --mode 0640 >/dev/null || fail "create r1"
setpriv --reuid 4242 --regid 4343 --clear-groups "$B/bin/iomemctl" --socket "$SOCK" create r2 4096 --mode 0604 \
  >/dev/null || fail "create r2 as uid 4242"
ctl create r3 1M >/dev/null || fail "create r3"
ctl create dir/r4 100 >/dev/null || fail "create dir/r4"
ctl write r1 "$OUT/r1.data" || fail "write r1"
setpriv --reuid 4242 --regid 4343 --clear-groups "$B/bin/iomemctl" --socket "$SOCK" write r2 "$OUT/r2.data" \
  || fail "write r2"
ctl write r3 "$OUT/r3.data" || fail "write r3"
sleep 2.5
systemctl show -p StatusText --value iomemd.service | grep -q "4 regions" \
  || fail "STATUS= does not report the regions: $(systemctl show -p StatusText --value iomemd.service)"
pass "STATUS=$(systemctl show -p StatusText --value iomemd.service)"

# 2b. the default socket (no --socket, no $IOMEM_SOCKET) of a non-root uid is the system service, with or without
# XDG_RUNTIME_DIR (issue 11: it used to be $XDG_RUNTIME_DIR/iomemd.sock, or nothing)
as4242() { setpriv --reuid 4242 --regid 4343 --clear-groups "$@"; }
as4242 env -u IOMEM_SOCKET -u XDG_RUNTIME_DIR "$B/bin/iomemctl" stat r2 >/dev/null 2>>"$OUT/log" \
  || fail "uid 4242 without XDG_RUNTIME_DIR does not reach the system service"
mkdir -p /run/user/4242 && chown 4242:4343 /run/user/4242 && chmod 0700 /run/user/4242
as4242 env -u IOMEM_SOCKET XDG_RUNTIME_DIR=/run/user/4242 "$B/bin/iomemctl" stat r2 >/dev/null 2>>"$OUT/log" \
  || fail "uid 4242 with XDG_RUNTIME_DIR (no per-user daemon) does not reach the system service"
pass "uid 4242 reaches the system service by default, with and without XDG_RUNTIME_DIR"

# 2c. 8 clients loop OPEN + map + read-and-check through the restarts below (sections 3-5); default socket
LOOP_SIZE=262144
/usr/bin/python3 -c 'import sys; sys.stdout.buffer.write(bytes((o * 7 + o // 4096) & 255 for o in range(int(sys.argv[1]))))' \
  "$LOOP_SIZE" > "$OUT/loop.data"
ctl create loop "$LOOP_SIZE" --mode 0644 >/dev/null || fail "create loop"
ctl write loop "$OUT/loop.data" || fail "write loop"
loopers=()
for i in 1 2 3 4 5 6 7 8; do
  if [ $((i % 2)) = 0 ]; then run=as4242; else run=env; fi
  # a test program, not installed: run-nspawn.sh copies it next to iomemctl; libiomem from the install beside it
  $run env -u IOMEM_SOCKET -u XDG_RUNTIME_DIR LD_LIBRARY_PATH="$B/lib" "$B/bin/iomem-loop-client" loop "$LOOP_SIZE" "$OUT/loop-stop" \
    > "$OUT/loop-$i.out" 2>&1 &
  loopers+=($!)
done
sleep 1

# a client holding a mapping across restarts
ctl exec r1 -- /usr/bin/python3 "$S/tests/systemd/holder.py" "$OUT" 3 >>"$OUT/log" 2>&1 &
holder=$!
for ((i = 0; i < 100; i++)); do [ -e "$OUT/holder-ready" ] && break; sleep 0.1; done
[ -e "$OUT/holder-ready" ] || fail "holder did not start"
holder_round() { # N WHEN
  touch "$OUT/holder-go-$1"
  for ((i = 0; i < 100; i++)); do [ -e "$OUT/holder-done-$1" ] && break; sleep 0.1; done
  [ "$(cat "$OUT/holder-done-$1" 2>/dev/null)" = ok ] || fail "$2: the holder's mapping lost its bytes"
  ctl read r1 --offset 8192 --length 15 | grep -q "holder-round-$1" \
    || fail "$2: a new client does not see what the holder wrote"
  # the holder's write is now part of r1's expected bytes
  ctl read r1 > "$OUT/r1.data" || fail "$2: read r1"
  pass "$2: the holder kept reading and writing its mapping; a new client sees the same bytes"
}

# 3. systemctl restart; a published version keeps its generation (PUBLISH, docs/protocol.md section 15)
printf 'version one' | ctl publish versioned >/dev/null || fail "publish versioned"
gen=$(printf 'version two' | ctl publish versioned) || fail "publish versioned again"
pid=$(mainpid)
systemctl restart iomemd.service || fail "systemctl restart"
wait_active_new_pid "$pid" 10 || fail "no new daemon after restart"
check_regions "after systemctl restart"
holder_round 1 "after systemctl restart"
[ "$(ctl read versioned)" = "version two" ] || fail "the published version's bytes after a restart"
gen2=$(printf 'version three' | ctl publish versioned --expect "$gen") \
  || fail "generation $gen not kept across a restart"
[ "$gen2" -gt "$gen" ] || fail "generation after a restart: $gen2, not above $gen"
ctl rm versioned || fail "rm versioned" # the fd store's count in step 7 is of the regions above
pass "a published version keeps its generation across a restart; the next one is greater"

# 4. kill -9
pid=$(mainpid)
kill -9 "$pid"
wait_active_new_pid "$pid" 10 || fail "no new daemon after kill -9"
check_regions "after kill -9"
holder_round 2 "after kill -9"

# 5. the watchdog restarts a daemon that stops answering (test hook: SIGUSR2 hangs the event loop)
pid=$(mainpid)
kill -USR2 "$pid"
sleep 0.5
timeout 2 "$B/bin/iomemctl" --socket "$SOCK" ping >/dev/null 2>&1 && fail "hung daemon still answers"
wait_active_new_pid "$pid" 40 || fail "the watchdog did not restart the hung daemon"
journalctl -u iomemd.service --no-pager | grep -qi watchdog || fail "no watchdog line in the journal"
check_regions "after a watchdog restart"
holder_round 3 "after a watchdog restart"
wait "$holder" || fail "holder exited with an error"

# the 8 loop clients went through a restart, a kill -9 and a watchdog restart
sleep 1
touch "$OUT/loop-stop"
stall=0
for i in 1 2 3 4 5 6 7 8; do
  wait "${loopers[$((i - 1))]}"; rc=$?
  line=$(cat "$OUT/loop-$i.out")
  log "loop client $i: $line"
  [ "$rc" = 0 ] || fail "loop client $i saw failures or wrong bytes: $line"
  r=$(sed -n 's/.*reconnects=\([0-9]*\).*/\1/p' <<<"$line")
  [ "${r:-0}" -ge 3 ] || fail "loop client $i did not reconnect after each of the 3 restarts: $line"
  s=$(sed -n 's/.*max_stall_ms=\([0-9]*\).*/\1/p' <<<"$line")
  [ "${s:-0}" -gt "$stall" ] && stall=$s
done
ctl rm loop || fail "rm loop" # section 7 counts the fd store's slots
log "LONGEST STALL: ${stall} ms (8 loop clients, across systemctl restart, kill -9 and a watchdog restart)"
pass "8 clients looping OPEN + map + check saw no failed operation and no wrong byte; longest stall ${stall} ms"

# 5b. systemctl reload: SIGHUP rereads /etc/iomemd/iomemd.conf between RELOADING=1 and READY=1; same process
mkdir -p /etc/iomemd
printf 'default-mode = 0644\n' > /etc/iomemd/iomemd.conf
pid=$(mainpid)
systemctl reload iomemd.service || fail "systemctl reload"
for ((i = 0; i < 50; i++)); do
  journalctl -u iomemd.service --no-pager -o cat | grep -q "configuration reloaded" && break
  sleep 0.1
done
journalctl -u iomemd.service --no-pager -o cat | grep -q "configuration reloaded" || fail "no reload line"
[ "$(mainpid)" = "$pid" ] || fail "reload restarted the daemon"
[ "$(systemctl is-active iomemd.service)" = active ] || fail "not active after reload"
ctl create reloaded 10 >/dev/null || fail "create after reload"
st=$(ctl --json stat reloaded) || fail "stat reloaded"
echo "$st" | /usr/bin/python3 -c 'import json,sys; sys.exit(0 if int(json.load(sys.stdin)["mode"],8)==0o644 else 1)' \
  || fail "the reloaded default mode is not applied: $st"
ctl rm reloaded || fail "rm reloaded"
rm /etc/iomemd/iomemd.conf
pass "systemctl reload applied the configuration file in the same process"

# 5c. a broken file fails `systemctl reload` (ExecReload= runs iomemd --check-config --pid $MAINPID first, under the
# unit's sandbox): the error is in the journal, the daemon is not signalled and keeps its regions and settings
reloads() { journalctl -u iomemd.service --no-pager -o cat | grep -c "configuration reloaded"; }
before=$(reloads)
printf 'default-mode = 0600\nmax-regions = lots\n' > /etc/iomemd/iomemd.conf
pid=$(mainpid)
systemctl reload iomemd.service 2>>"$OUT/log" && fail "systemctl reload of a broken iomemd.conf succeeded"
journalctl -u iomemd.service --no-pager -o cat \
  | grep -qx "iomemd: /etc/iomemd/iomemd.conf:2: max-regions = 'lots': expected a positive number" \
  || fail "the check's error is not in the journal"
[ "$(mainpid)" = "$pid" ] || fail "a failed reload restarted the daemon"
[ "$(systemctl is-active iomemd.service)" = active ] || fail "not active after a failed reload"
[ "$(reloads)" = "$before" ] || fail "the daemon reloaded a broken file"
journalctl -u iomemd.service --no-pager -o cat | grep -q "configuration reload failed" \
  && fail "the daemon was signalled after the check failed"
check_regions "after a failed reload"
ctl create kept-mode 10 >/dev/null || fail "create after a failed reload"
st=$(ctl --json stat kept-mode) || fail "stat kept-mode"
echo "$st" | /usr/bin/python3 -c 'import json,sys; sys.exit(0 if int(json.load(sys.stdin)["mode"],8)==0o644 else 1)' \
  || fail "a failed reload changed the default mode: $st"
ctl rm kept-mode || fail "rm kept-mode"
printf 'default-mode = 0604\n' > /etc/iomemd/iomemd.conf
systemctl reload iomemd.service || fail "systemctl reload of the fixed file"
# the SIGHUP is sent, not necessarily handled, when systemctl returns: wait for its log line (no time bound here,
# the test's own timeout ends a hang), then exactly one reload: the check did not signal, kill -HUP once
until [ "$(reloads)" -gt "$before" ]; do sleep 0.1; done
[ "$(reloads)" = $((before + 1)) ] || fail "one systemctl reload, $(($(reloads) - before)) reloads of the daemon"
[ "$(mainpid)" = "$pid" ] || fail "reload of the fixed file restarted the daemon"
ctl create new-mode 10 >/dev/null || fail "create after the fixed reload"
st=$(ctl --json stat new-mode) || fail "stat new-mode"
echo "$st" | /usr/bin/python3 -c 'import json,sys; sys.exit(0 if int(json.load(sys.stdin)["mode"],8)==0o604 else 1)' \
  || fail "the fixed file's default mode is not applied: $st"
ctl rm new-mode || fail "rm new-mode"
rm /etc/iomemd/iomemd.conf
pass "a broken iomemd.conf fails systemctl reload (error in the journal; daemon, regions and settings kept); the fixed file reloads"

# 6. delete takes a region out of the store for good
ctl create gone 4096 >/dev/null || fail "create gone"
ctl rm gone || fail "rm gone"
pid=$(mainpid)
systemctl restart iomemd.service
wait_active_new_pid "$pid" 10 || fail "no new daemon after restart"
ctl stat gone >/dev/null 2>&1 && fail "a deleted region came back"
check_regions "after delete + restart"

# 7. L2: a full fd store gives the creator a clear error and a log line, and loses nothing.
# The daemon also keeps only 2 region fds itself here, so restored and new regions go through its fd keepers
# (keeper processes exec'd from /proc/self/exe, under the hardened unit).
mkdir -p /run/systemd/system/iomemd.service.d
printf '[Service]\nFileDescriptorStoreMax=7\nEnvironment=IOMEMD_FDSTORE_MAX=7\nExecStart=\nExecStart=%s/bin/iomemd --log-level=info --max-region-fds=2 --backend=memfd\n' "$B" \
  > /run/systemd/system/iomemd.service.d/small-store.conf
systemctl daemon-reload
pid=$(mainpid)
systemctl restart iomemd.service
wait_active_new_pid "$pid" 10 || fail "no new daemon after restart"
# meta + r1 r2 r3 dir/r4 = 5 fds; two more fit
ctl create f1 10 >/dev/null || fail "create f1"
ctl create f2 10 >/dev/null || fail "create f2"
err=$(ctl create f3 10 2>&1 >/dev/null) && fail "create past a full fd store succeeded"
log "full store: $err"
echo "$err" | grep -q "create f3: no space in the service manager's fd store: it holds 7 fds, FileDescriptorStoreMax is 7; \
delete regions, or raise FileDescriptorStoreMax and IOMEMD_FDSTORE_MAX in iomemd.service$" \
        || fail "unclear error for a full store: $err"
journalctl -u iomemd.service --no-pager | grep -q "fd store full" || fail "no log line for the full store"
ctl stat f3 >/dev/null 2>&1 && fail "refused region exists anyway"
check_regions "with a full fd store"
pass "a full fd store is refused with a clear error and a log line"
journalctl -u iomemd.service --no-pager | grep -q "started fd keeper" || fail "no fd keeper was started"
pgrep -f -- "--internal-fd-keeper" >/dev/null || fail "no keeper process"
echo kept | ctl write f2 || fail "write through a keeper"
[ "$(ctl read f2 --length 4)" = kept ] || fail "read through a keeper"
pass "regions parked in fd keepers (exec'd under the hardened unit) are served"
# the reload's check reads the options of this ExecStart= (a drop-in's), not only the file: the file alone is
# valid, with the running daemon's --backend=memfd it is not
printf 'allowed-backends = shm,file\n' > /etc/iomemd/iomemd.conf
"$B/bin/iomemd" --check-config >/dev/null 2>>"$OUT/log" || fail "the file alone does not check valid"
systemctl reload iomemd.service 2>>"$OUT/log" && fail "reload with a file that the daemon's own --backend contradicts"
journalctl -u iomemd.service --no-pager -o cat | grep -qx "iomemd: backend memfd is not in allowed-backends (see --help)" \
  || fail "no journal line for the backend the daemon's command line sets"
rm /etc/iomemd/iomemd.conf
systemctl reload iomemd.service || fail "reload without a file, daemon started by a drop-in's ExecStart="
pass "the reload's check takes the running daemon's own options (a drop-in's ExecStart=) into account"
# the metrics see the store and the keepers: meta + 6 regions in a store of 7, at most 2 region fds in the daemon
metrics=$(ctl metrics) || fail "iomemctl metrics"
metric() { local k v; while read -r k v; do [ "$k" != "$1" ] || echo "$v"; done <<<"$metrics"; }
[ "$(metric iomemd_fd_store_fds)" = 7 ] || fail "fd store fds in metrics: $(metric iomemd_fd_store_fds)"
[ "$(metric iomemd_fd_store_max_fds)" = 7 ] || fail "fd store max in metrics: $(metric iomemd_fd_store_max_fds)"
[ "$(metric iomemd_regions)" = 6 ] || fail "regions in metrics: $(metric iomemd_regions)"
[ "$(metric iomemd_keepers)" -ge 1 ] || fail "keepers in metrics: $(metric iomemd_keepers)"
[ "$(metric iomemd_region_fds)" -le 2 ] || fail "region fds in metrics: $(metric iomemd_region_fds)"
[ "$(metric 'iomemd_errors_total{code="ENOSPC"}')" = 1 ] || fail "the full store's ENOSPC is not counted"
pass "metrics show the fd store, the keepers and the refused create"
pid=$(mainpid)
systemctl restart iomemd.service
wait_active_new_pid "$pid" 10 || fail "no new daemon after restart"
check_regions "after a restart with keepers"
[ "$(ctl read f2 --length 4)" = kept ] || fail "f2 lost across a restart with keepers"
pass "regions come back from the fd store into keepers after a restart"

# 8. a per-user daemon from the user units, for uid 4300: its clients find it first; the system service otherwise
U=4300
echo "iomtest:x:$U:$U:iomemd test:/tmp/home-$U:/bin/sh" >> /etc/passwd
echo "iomtest:x:$U:" >> /etc/group
mkdir -p "/tmp/home-$U" && chown "$U:$U" "/tmp/home-$U"
# this volatile container has an empty /etc: give user@.service the PAM stack it asks for (permit, nothing else)
if [ ! -e /etc/pam.d/systemd-user ]; then
  mkdir -p /etc/pam.d
  printf 'auth required pam_permit.so\naccount required pam_permit.so\nsession required pam_permit.so\n' \
    > /etc/pam.d/systemd-user
fi
# no logind here to set XDG_RUNTIME_DIR for the session (pam_systemd): the unit sets it
mkdir -p "/run/systemd/system/user@$U.service.d"
printf '[Service]\nEnvironment=XDG_RUNTIME_DIR=/run/user/%s\n' "$U" > "/run/systemd/system/user@$U.service.d/xdg.conf"
systemctl daemon-reload
systemctl start "user@$U.service" 2>>"$OUT/log" || {
  journalctl -u "user@$U.service" --no-pager -o cat | tail -n 30 >> "$OUT/log"
  fail "systemctl start user@$U.service"
}
how="user@$U.service"
for ((i = 0; i < 100; i++)); do [ -S "/run/user/$U/systemd/private" ] && break; sleep 0.1; done
asU() {
  setpriv --reuid $U --regid $U --clear-groups env HOME=/tmp/home-$U XDG_RUNTIME_DIR=/run/user/$U \
    DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$U/bus "$@"
}
asU systemctl --user enable --now iomemd.socket >>"$OUT/log" 2>&1 || fail "systemctl --user enable --now iomemd.socket"
[ -S "/run/user/$U/iomemd.sock" ] || fail "the user socket is not at \$XDG_RUNTIME_DIR/iomemd.sock"
asU env -u IOMEM_SOCKET "$B/bin/iomemctl" create mine 4096 >/dev/null 2>>"$OUT/log" \
  || fail "uid $U does not reach its per-user daemon"
asU env -u IOMEM_SOCKET "$B/bin/iomemctl" stat mine >/dev/null 2>>"$OUT/log" || fail "stat mine in the per-user daemon"
upid=$(asU systemctl --user show -p MainPID --value iomemd.service)
[ "$(ps -o uid= -p "$upid" | tr -d ' ')" = "$U" ] || fail "the per-user daemon does not run as uid $U"
ctl stat mine >/dev/null 2>&1 && fail "the region went to the system service instead"
setpriv --reuid $U --regid $U --clear-groups env -u IOMEM_SOCKET -u XDG_RUNTIME_DIR "$B/bin/iomemctl" stat r2 \
  >/dev/null 2>>"$OUT/log" || fail "uid $U without XDG_RUNTIME_DIR does not reach the system service"
setpriv --reuid $U --regid $U --clear-groups env -u IOMEM_SOCKET -u XDG_RUNTIME_DIR "$B/bin/iomemctl" stat mine \
  >/dev/null 2>&1 && fail "without XDG_RUNTIME_DIR, uid $U still reached its per-user daemon"
# its regions survive a restart of the per-user service too (the user manager's fd store)
asU systemctl --user restart iomemd.service || fail "systemctl --user restart iomemd.service"
asU env -u IOMEM_SOCKET "$B/bin/iomemctl" stat mine >/dev/null 2>>"$OUT/log" \
  || fail "the per-user daemon lost its region across a restart"
# its reload runs the same check, under the user manager
upid=$(asU systemctl --user show -p MainPID --value iomemd.service)
asU systemctl --user reload iomemd.service 2>>"$OUT/log" || fail "systemctl --user reload iomemd.service"
printf 'max-events = 0\n' > /etc/iomemd/iomemd.conf && chmod 0644 /etc/iomemd/iomemd.conf
asU systemctl --user reload iomemd.service 2>>"$OUT/log" && fail "systemctl --user reload of a broken file succeeded"
[ "$(asU systemctl --user show -p MainPID --value iomemd.service)" = "$upid" ] || fail "the per-user daemon changed"
asU env -u IOMEM_SOCKET "$B/bin/iomemctl" stat mine >/dev/null 2>>"$OUT/log" || fail "mine after a failed user reload"
rm /etc/iomemd/iomemd.conf
pass "systemctl --user reload checks first: a broken file fails it, the per-user daemon keeps running"
pass "per-user daemon ($how, user units enabled with systemctl --user): found by its uid's clients first, keeps its regions across a restart; without XDG_RUNTIME_DIR the uid reaches the system service"

log "ALL PASSED"
finish 0
