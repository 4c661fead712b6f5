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

# a raised max-connections lowers the budget: the oldest regions' fds are parked
echo "max-connections = 500" >"$CONF"
kill -HUP "$DAEMON_PID"
n=
for _ in $(seq 1 500); do
        n=$(region_fds)
        [ "$n" -gt 268 ] || break
        sleep 0.01
done
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
kill -0 "$DAEMON_PID" || fail "the daemon died"
stop_daemon

[ "$FAILURES" -eq 0 ] || exit 1
echo "ok"
