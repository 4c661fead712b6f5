#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-it-fd-budget-reload: a SIGHUP that changes max-connections changes the budget of region fds the daemon keeps
# itself (RLIMIT_NOFILE less max-connections less 256; the rest parked in fd keepers). Lowered: the fds over it are
# parked, their regions still served; raised: regions made later are kept up to it. Before, the budget stayed as
# computed at startup, so a raised max-connections could meet EMFILE for connections it allowed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null || ! command -v prlimit >/dev/null; then
        echo "SKIP: needs root, setpriv and prlimit (a daemon that cannot raise RLIMIT_NOFILE)" >&2
        exit 77
fi

N=300
# the daemon under RLIMIT_NOFILE 1024:1024 and without CAP_SYS_RESOURCE, so that it cannot raise the limit:
# max-connections 50 leaves 1024 - 50 - 256 = 718 region fds, 500 leaves 1024 - 500 - 256 = 268
REAL_IOMEMD=$IOMEMD
IOMEMD=$TMP/iomemd-limited
cat >"$IOMEMD" <<WRAP
#!/bin/bash
exec prlimit --nofile=1024:1024 setpriv --bounding-set=-sys_resource --inh-caps=-sys_resource "$REAL_IOMEMD" "\$@"
WRAP
chmod +x "$IOMEMD"
CONF=$TMP/iomemd.conf
echo "max-connections = 50" >"$CONF"
start_daemon --config "$CONF"

# region_fds: the region fds the daemon holds itself
region_fds() {
        ctl metrics | awk '$1 == "iomemd_region_fds" { print $2 }'
}

for i in $(seq 1 $N); do
        ctl create "r$i" 4K >/dev/null
done
echo "region 1" | ctl write r1
echo "region $N" | ctl write "r$N"
[ "$(region_fds)" -eq $N ] || fail "before the reload the daemon holds $(region_fds) region fds, want $N"

# wait_region_fds_at_most N: wait (up to 5 s: a reload's parking is one batch in its own turn) until the daemon holds
# at most N region fds; print the count last seen
wait_region_fds_at_most() {
        local n
        for _ in $(seq 1 500); do
                n=$(region_fds)
                [ "$n" -gt "$1" ] || break
                sleep 0.01
        done
        echo "$n"
}

# a raised max-connections lowers the budget: the oldest regions' fds are parked
echo "max-connections = 500" >"$CONF"
kill -HUP "$DAEMON_PID"
n=
n=$(wait_region_fds_at_most 268)
[ "$n" -eq 268 ] || fail "after max-connections 50 -> 500 the daemon holds $n region fds, want 268 (1024 - 500 - 256)"
[ "$(ctl read r1 --length 8)" = "region 1" ] || fail "read of r1, parked at the reload"
[ "$(ctl read "r$N" --length 10)" = "region $N" ] || fail "read of r$N, kept in the daemon"
[ "$(ctl list r | wc -l)" -eq $N ] || fail "regions lost: $(ctl list r | wc -l) listed, want $N"

# lowered again: the budget is 718; parked regions stay parked, new ones are kept in the daemon up to it
echo "max-connections = 50" >"$CONF"
kill -HUP "$DAEMON_PID"
for _ in $(seq 1 500); do # the reload is done once a region made after it stays here
        ctl create probe 4K >/dev/null
        n=$(region_fds)
        ctl rm probe
        [ "$n" -le 268 ] || break
        sleep 0.01
done
[ "$n" -eq 269 ] || fail "after max-connections 500 -> 50 the daemon holds $n region fds with one region made after the reload, want 269"
for i in $(seq 1 40); do
        ctl create "s$i" 4K >/dev/null
done
[ "$(region_fds)" -eq 308 ] || fail "after 40 more regions the daemon holds $(region_fds) region fds, want 308"

# a lowered max-connections drops none of the connections open: their fds are no room for region fds. Budget 268
# again (max-connections 500), 400 connections held open, then max-connections 50: the budget is
# 1024 - 400 - 256 = 368, not 718 (with which the daemon would meet EMFILE before its region fds reached it)
echo "max-connections = 500" >"$CONF"
kill -HUP "$DAEMON_PID"
n=$(wait_region_fds_at_most 268)
[ "$n" -eq 268 ] || fail "after max-connections 50 -> 500 again the daemon holds $n region fds, want 268"
HOLD_READY=$TMP/hold-ready
# connections that said HELLO (a bare one would be dropped after the handshake timeout), held until killed
"$PYTHON3" - "$SOCK" 400 "$HOLD_READY" <<'PY' &
import socket, struct, sys, time
path, n, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
held = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(struct.pack("<IBBHIIHH", 0x444D4F49, 1, 0, 0x0001, 1, 8, 0, 0) + struct.pack("<HHI", 1, 1, 0))
    held.append(s)
for s in held:
    hdr = b""
    while len(hdr) < 20:
        part = s.recv(20 - len(hdr))
        assert part, "connection closed before HELLO's reply"
        hdr += part
    length = struct.unpack("<IBBHIIHH", hdr)[5]
    while length:
        length -= len(s.recv(length))
open(ready, "w").close()
while True:
    time.sleep(3600)
PY
HOLD_PID=$!
for _ in $(seq 1 3000); do
        [ -e "$HOLD_READY" ] && break
        kill -0 "$HOLD_PID" 2>/dev/null || break
        sleep 0.1
done
[ -e "$HOLD_READY" ] || fail "400 connections could not be opened"
echo "max-connections = 50" >"$CONF"
kill -HUP "$DAEMON_PID"
# the reload is done once a new connection is refused (400 open, at most 50); then the 400 close
for _ in $(seq 1 3000); do
        ctl ping >/dev/null 2>&1 || break
        sleep 0.01
done
ctl ping >/dev/null 2>&1 && fail "a connection was accepted after max-connections 500 -> 50 with 400 open"
kill "$HOLD_PID"
wait "$HOLD_PID" 2>/dev/null || true
for _ in $(seq 1 3000); do
        ctl ping >/dev/null 2>&1 && break
        sleep 0.01
done
for i in $(seq 1 150); do
        ctl create "t$i" 4K >/dev/null
done
# 367 if a ping's connection was open too when the SIGHUP was handled
n=$(region_fds)
[ "$n" -eq 368 ] || [ "$n" -eq 367 ] ||
        fail "after max-connections 500 -> 50 with 400 connections open and 150 more regions the daemon holds $n region fds, want 368 (1024 - 400 - 256)"
kill -0 "$DAEMON_PID" || fail "the daemon died"
stop_daemon

[ "$FAILURES" -eq 0 ] || exit 1
echo "ok"
