#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The profile-guided build (IOMEM_PGO) where it is easiest to break: a copy of the tree under a path with a space,
# reached through a symlink, configured with Ninja where there is one and built from another directory (GCC then
# sees the physical path, CMake the symlinked one), by a non-root user when run as root, with a TMPDIR too long for
# a socket's path and the variables of a systemd service set. Then a source file of iomemd is edited and the build
# run again (the training must run again, with no stale counts), and a training is stopped midway with SIGTERM:
# it must leave no process and no temporary directory behind.
# Usage: pgo-build.sh SOURCE_DIR
set -euo pipefail
src=$(realpath "$1")
fail() { echo "FAIL: $*"; exit 1; }

base=$(mktemp -d /tmp/iomem-pgo-test.XXXXXX)
cleanup() {
  local p
  # only processes started from this test's tree
  for p in $(pgrep -f -- "$base/" || :); do kill -KILL "$p" 2>/dev/null || :; done
  rm -rf "$base"
}
trap cleanup EXIT
chmod 755 "$base"
tree="$base/source tree"
mkdir "$tree"
# the source without build trees (any directory holding a CMakeCache.txt) or git metadata
tar -C "$src" --exclude=./.git --exclude-tag-all=CMakeCache.txt -cf - . | tar -C "$tree" -xf -
ln -s "source tree" "$base/link"
long="$base/tmp/$(printf 'd%.0s' $(seq 1 100))"
mkdir -p "$long"
chmod 1777 "$base/tmp" "$long"

as=()
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  chown -R 4242:4242 "$tree"
  as=(setpriv --reuid 4242 --regid 4242 --clear-groups)
fi
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
b="$base/link/build dir"
run() {
  (cd / && "${as[@]}" env HOME="$base" TMPDIR="$long" NOTIFY_SOCKET="$base/no-such-socket" LISTEN_FDS=1 \
     LISTEN_PID=1 WATCHDOG_USEC=1000000 "$@")
}

run cmake "${gen[@]}" -S "$base/link" -B "$b" >"$base/cfg.log" 2>&1 || { cat "$base/cfg.log"; fail "cmake"; }
if ! run cmake --build "$b" --target help | grep -q "iomem-pgo"; then
  echo "SKIP: this compiler or configuration builds without profile-guided optimisation"
  exit 77
fi
run nice cmake --build "$b" -j2 --target iomemd >"$base/build1.log" 2>&1 || { tail -n 40 "$base/build1.log"; fail "build"; }
grep -q "does not start with profile prefix\|profile count data file not found" "$base/build1.log" \
  && { grep -m3 "profile" "$base/build1.log"; fail "profile not found"; }
gcda="$b/daemon/CMakeFiles/iomemd.dir/main.c.gcda"
[ -s "$gcda" ] || fail "no profile for daemon/main.c in the build ($gcda)"
"$b/daemon/iomemd" --version >/dev/null || fail "the profiled iomemd does not run"

# edit a trained function and build again: trained anew, the edited file compiled with the new counts
touch "$base/marker"
sleep 1.1
sed -i '/^int main(int argc, char \*\*argv)$/,/^{$/ s/^{$/{\n        if (argc < 0)\n                return 3;/' \
  "$tree/daemon/main.c"
grep -q "if (argc < 0)" "$tree/daemon/main.c" || fail "the test's edit of daemon/main.c did not apply"
run nice cmake --build "$b" -j2 --target iomemd >"$base/build2.log" 2>&1 || { tail -n 40 "$base/build2.log"; fail "rebuild after an edit"; }
grep -q "coverage mismatch\|profile count data file not found" "$base/build2.log" && fail "stale profile used"
[ "$gcda" -nt "$base/marker" ] || fail "not trained again after an edit"

# a training stopped midway (make or ninja interrupted, or killed): nothing of it left running or on disk
rm -f "$b/pgo/trained"
run setsid "$tree/bench/pgo-train.sh" "$b/pgo/build" "$b" "$b/pgo/trained" >"$base/train.log" 2>&1 &
i=0
until pgrep -f -- "$b/pgo/build/daemon/iomemd" >/dev/null; do
  i=$((i + 1)); [ $i -lt 300 ] || fail "the training's iomemd did not start"; sleep 0.1
done
sleep 0.5
script=$(pgrep -f -- "^/bin/sh $tree/bench/pgo-train.sh") || fail "no training script to stop"
kill -TERM $script
i=0
while pgrep -f -- "$base/" >/dev/null; do
  i=$((i + 1))
  [ $i -lt 600 ] || { pgrep -af -- "$base/"; fail "processes left after the training was stopped"; }
  sleep 0.1
done
wait || :
[ ! -e "$b/pgo/trained" ] || fail "a stopped training counted as done"
left=$(find "$long" -mindepth 1 -maxdepth 1)
[ -z "$left" ] || fail "the stopped training left $left"
echo "pgo-build test passed"
