#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs inside a fresh Debian 12 root booted with systemd-nspawn, as a oneshot unit with systemd as PID 1:
# installs the packages with dpkg as an administrator would, and checks install, use by a non-root user,
# upgrade (the region's bytes survive the restart through the fd store), remove and purge.
# Usage: inside.sh DEBS_V1 DEBS_V2 OUT_DIR. Ends the container with `systemctl exit N`.
set -uo pipefail
V1=$1; V2=$2; OUT=$3
SOCK=/run/iomemd/iomemd.sock
PKGS="iomemd iomemctl libiomem0 libiomem-dev python3-iomem ruby-iomem"
export DEBIAN_FRONTEND=noninteractive
log() { echo "$*" >> "$OUT/log"; }
finish() {
  if [ "$1" != 0 ]; then
    log "--- dpkg (tail) ---"
    tail -n 30 "$OUT/dpkg.log" >> "$OUT/log" 2>/dev/null
    log "--- journal of iomemd ---"
    journalctl -u iomemd.service -u iomemd.socket --no-pager -o short-monotonic 2>/dev/null | tail -n 60 >> "$OUT/log"
  fi
  systemctl exit "$1"; exit "$1"
}
fail() { log "FAIL: $*"; finish 1; }
pass() { log "ok: $*"; }
# as the unprivileged user alice, against the system socket (non-root iomemctl defaults to $XDG_RUNTIME_DIR)
as_alice() { setpriv --reuid=alice --regid=alice --init-groups -- "$@"; }
actl() { as_alice iomemctl --socket "$SOCK" "$@"; }
mainpid() { systemctl show -p MainPID --value iomemd.service; }
daemon_pids() { grep -lx 'iomemd\|iomemd-keeper' /proc/[0-9]*/comm 2>/dev/null | cut -d/ -f3 | tr '\n' ' '; }
json_num() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }
# every path of the root file system, less what changes by itself (logs, caches, dpkg's and apt's own records)
snapshot() {
  find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp -o -path /var/tmp \
    -o -path /var/log -o -path /var/cache -o -path /var/lib/dpkg -o -path /var/lib/apt \
    -o -path /var/lib/systemd/catalog -o -path /var/lib/systemd/random-seed -o -path /var/lib/systemd/timers \
    -o -path /var/lib/systemd/coredump -o -path /var/lib/private -o -path /etc/ld.so.cache \
    -o -path "$OUT" -o -path "$V1" -o -path "$V2" -o -path /pkgtest \) -prune -o -print | sort
}

: > "$OUT/log"
log "$(. /etc/os-release; echo "$PRETTY_NAME"), systemd $(systemctl --version | head -1 | cut -d' ' -f2)"
useradd -u 1000 -U alice || fail "useradd alice"
snapshot > "$OUT/before"

# 1. install
dpkg -i "$V1"/libiomem0_*.deb "$V1"/iomemctl_*.deb "$V1"/iomemd_*.deb "$V1"/libiomem-dev_*.deb \
  "$V1"/python3-iomem_*.deb "$V1"/ruby-iomem_*.deb >>"$OUT/dpkg.log" 2>&1 \
  || fail "dpkg -i of the first build"
v1=$(dpkg-query -W -f '${Version}' iomemd)
[ "$(systemctl is-enabled iomemd.socket)" = enabled ] || fail "iomemd.socket not enabled after install"
[ "$(systemctl is-active iomemd.socket)" = active ] || fail "iomemd.socket not active after install"
[ "$(systemctl is-active iomemd.service)" != active ] || fail "iomemd.service started by the install (socket activation should)"
[ -S "$SOCK" ] || fail "no socket at $SOCK"
dpkg-query -W -f '${Conffiles}\n' iomemd | grep -q '^ /etc/iomemd/iomemd.conf ' || fail "iomemd.conf is not a conffile"
for f in /lib/systemd/system/iomemd.service /lib/systemd/system/iomemd.socket /usr/bin/iomemd /usr/bin/iomemctl \
         /usr/include/iomem.h /usr/share/man/man3/iomem.3.gz /usr/share/man/man3/iomem_create.3.gz \
         /usr/share/man/man5/iomemd.conf.5.gz /usr/share/man/man8/iomemd.8.gz /usr/share/man/man1/iomemctl.1.gz \
         /usr/share/bash-completion/completions/iomemctl \
         /usr/lib/python3/dist-packages/iomem/_iomem.cpython-*.so /usr/lib/python3/dist-packages/iomem/aio.py \
         /usr/lib/python3/dist-packages/iomem/_iomem.pyi /usr/lib/python3/dist-packages/iomem/py.typed \
         /usr/lib/*/ruby/vendor_ruby/*/iomem_ext.so; do
  [ -e "$f" ] || fail "$f not installed"
done
grep -qx 'ExecStart=/usr/bin/iomemd --log-level=info' /lib/systemd/system/iomemd.service || fail "ExecStart= of the unit"
if [ -e /usr/lib/systemd/user/iomemd.socket ]; then # the per-user units: installed, opt-in for each user
  [ ! -e /etc/systemd/user/sockets.target.wants/iomemd.socket ] || fail "user socket enabled for every user"
  pass "user units installed in /usr/lib/systemd/user, not enabled globally"
fi
pass "install $v1: socket enabled and active, service waiting for a client, conffile, units and manuals in place"

# 2. a non-root user creates, writes and reads a region
printf 'bytes written by alice before the upgrade\n' > "$OUT/data"
actl create demo 4K >>"$OUT/log" 2>&1 || fail "alice: create"
actl write demo < "$OUT/data" >>"$OUT/log" 2>&1 || fail "alice: write"
actl read demo --length "$(stat -c %s "$OUT/data")" > "$OUT/back" 2>>"$OUT/log" || fail "alice: read"
cmp -s "$OUT/data" "$OUT/back" || fail "alice read other bytes than she wrote"
st=$(actl --json stat demo) || fail "alice: stat"
[ "$(json_num uid <<<"$st")" = 1000 ] || fail "region not owned by alice: $st"
[ "$(systemctl is-active iomemd.service)" = active ] || fail "service not active after a client connected"
[ "$(systemctl show -p User --value iomemd.service)" = iomemd ] || fail "service user"
pid1=$(mainpid)
[ "$(stat -c %u "/proc/$pid1")" != 0 ] || fail "daemon runs as root"
pass "alice (uid 1000) created, wrote and read region demo; the daemon (pid $pid1) runs as uid $(stat -c %u "/proc/$pid1")"
# the same region from Python, as alice, with the packaged module
as_alice python3 -c 'import iomem, sys
with iomem.Client(sys.argv[1]) as c, c.open("demo", read_only=True) as r:
    sys.stdout.buffer.write(bytes(r)[:int(sys.argv[2])])' "$SOCK" "$(stat -c %s "$OUT/data")" > "$OUT/back.py" \
  2>>"$OUT/log" || fail "alice: python3 -c 'import iomem' and open demo"
cmp -s "$OUT/data" "$OUT/back.py" || fail "python3-iomem read other bytes"
pass "alice read the same bytes through python3-iomem"
as_alice ruby -e 'require "iomem"
IOMem::Client.connect(socket: ARGV[0]) { |c| c.open("demo", read_only: true) { |r| $stdout.write(r.map.get_string(0, ARGV[1].to_i)) } }' \
  "$SOCK" "$(stat -c %s "$OUT/data")" > "$OUT/back.rb" 2>>"$OUT/log" || fail "alice: ruby -e 'require \"iomem\"' and open demo"
cmp -s "$OUT/data" "$OUT/back.rb" || fail "ruby-iomem read other bytes"
pass "alice read the same bytes through ruby-iomem"

# the shipped configuration: every example line uncommented is valid and applies on reload
sed -i 's/^#\([a-z[]\)/\1/' /etc/iomemd/iomemd.conf
systemctl reload iomemd.service || fail "reload with the shipped examples uncommented"
q=$(actl --json quota) || fail "alice: quota"
[ "$(json_num max_regions <<<"$q")" = 10000 ] && [ "$(json_num max_bytes <<<"$q")" = $((16 << 30)) ] \
  || fail "the [uid 1000] section of the shipped file did not apply: $q"
[ "$(mainpid)" = "$pid1" ] || fail "reload restarted the daemon"
pass "the shipped iomemd.conf with its examples uncommented reloads and applies ([uid 1000]: $q)"

# 3. upgrade: the service restarts, the region's bytes come back from the fd store, the edited conffile stays
dpkg -i "$V2"/libiomem0_*.deb "$V2"/iomemctl_*.deb "$V2"/iomemd_*.deb "$V2"/libiomem-dev_*.deb \
  "$V2"/python3-iomem_*.deb "$V2"/ruby-iomem_*.deb >>"$OUT/dpkg.log" 2>&1 \
  || fail "dpkg -i of the second build"
v2=$(dpkg-query -W -f '${Version}' iomemd)
[ "$v2" != "$v1" ] && dpkg --compare-versions "$v2" gt "$v1" || fail "version after upgrade: $v2 (was $v1)"
for i in $(seq 50); do [ "$(systemctl is-active iomemd.service)" = active ] && break; sleep 0.1; done
pid2=$(mainpid)
[ "$pid2" != 0 ] && [ "$pid2" != "$pid1" ] || fail "service not restarted by the upgrade (pid $pid1 -> $pid2)"
[ "$(systemctl is-active iomemd.socket)" = active ] || fail "socket not active after upgrade"
actl read demo --length "$(stat -c %s "$OUT/data")" > "$OUT/back2" 2>>"$OUT/log" || fail "alice: read after upgrade"
cmp -s "$OUT/data" "$OUT/back2" || fail "region's bytes changed across the upgrade"
grep -q '^quota-regions = 10000' /etc/iomemd/iomemd.conf || fail "the administrator's edit of iomemd.conf was lost"
q=$(actl --json quota) || fail "alice: quota after upgrade"
[ "$(json_num max_regions <<<"$q")" = 10000 ] || fail "restarted daemon does not read the edited conffile: $q"
pass "upgrade $v1 -> $v2: service restarted (pid $pid1 -> $pid2), region demo kept its bytes, edited conffile kept"

# 4. remove: units stopped and gone, no daemon left, the conffile stays (Debian's rule) until purge
dpkg -r $PKGS >>"$OUT/dpkg.log" 2>&1 || fail "dpkg -r"
for i in $(seq 50); do [ -z "$(daemon_pids)" ] && break; sleep 0.1; done
[ -z "$(daemon_pids)" ] || fail "iomemd processes left after remove: $(daemon_pids)"
for u in iomemd.socket iomemd.service; do
  [ "$(systemctl is-active "$u")" != active ] || fail "$u still active after remove"
  [ "$(systemctl show -p LoadState --value "$u")" = not-found ] || fail "$u still loaded after remove"
done
[ ! -e "$SOCK" ] || fail "$SOCK left after remove"
[ -f /etc/iomemd/iomemd.conf ] || fail "remove (not purge) deleted the conffile"
pass "remove: units stopped and unloaded, no iomemd process, socket file gone, conffile kept"

# 5. purge: nothing of the packages is left
dpkg -P $PKGS >>"$OUT/dpkg.log" 2>&1 || fail "dpkg -P"
for p in $PKGS; do
  s=$(dpkg-query -W -f '${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  [ -z "$s" ] || [ "$s" = "un " ] || fail "$p still known to dpkg after purge: '$s'"
done
[ ! -e /etc/iomemd ] || fail "/etc/iomemd left after purge"
! grep -q iomemd /etc/passwd /etc/group /etc/shadow /etc/gshadow || fail "a user or group iomemd left behind"
left=$(find /etc/systemd /var/lib/systemd /lib/systemd /usr/lib/systemd -name '*iomemd*' 2>/dev/null)
[ -z "$left" ] || fail "systemd state left after purge: $left"
[ ! -e /run/iomemd ] || [ -z "$(ls -A /run/iomemd)" ] || fail "files left in /run/iomemd: $(ls -A /run/iomemd)"
snapshot > "$OUT/after"
diff "$OUT/before" "$OUT/after" > "$OUT/diff" || fail "files differ before install and after purge: $(head -c 2000 "$OUT/diff")"
pass "purge: no package, conffile, unit, enablement state, user or file left ($(wc -l < "$OUT/before") paths compared)"

log "ALL PASSED"
finish 0
