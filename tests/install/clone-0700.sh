#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The tests that run programs as other uids pass from a tree under a directory only root may enter, as when root
# clones into /root (mode 0700 on Debian): copy the source into a fresh 0700 directory, build what those tests run,
# and run them from there.
# Usage: clone-0700.sh SOURCE_DIR
set -euo pipefail
src=$(realpath "$1")

if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
  echo "SKIP: needs root and setpriv (switches to other uids)"
  exit 77
fi

# Under /root itself where it exists: inside the systemd test's container systemd-tmpfiles makes /root 0700 again,
# whatever mode the bind mounts' parents were created with, so only /root shows that case.
base=/root
[ -d "$base" ] && [ -w "$base" ] || base=/tmp
home=$(mktemp -d "$base/iomem-0700.XXXXXX")
trap 'rm -rf "$home"' EXIT
[ "$(stat -c %a "$home")" = 700 ] || { echo "FAIL: $home is not mode 0700"; exit 1; }
# the source without build trees (any directory holding a CMakeCache.txt) or git metadata
tar -C "$src" --exclude=./.git --exclude-tag-all=CMakeCache.txt -cf - . | { mkdir "$home/iomemd"; tar -C "$home/iomemd" -xf -; }
# ...and prove other uids really cannot reach it
if setpriv --reuid 4242 --regid 4242 --clear-groups test -r "$home/iomemd/CMakeLists.txt"; then
  echo "FAIL: uid 4242 can read $home/iomemd; the test would prove nothing"
  exit 1
fi

cd "$home/iomemd"
cmake -S . -B build >build.log 2>&1 || { cat build.log; echo "FAIL: cmake"; exit 1; }
# what the uid-switching tests run; the Python and Ruby bindings' ones where this machine builds the bindings
targets=(iomem iomemd iomemctl test-it-access iomem-loop-client test-it-attack it-attacker)
tests='integration/test-it-access|integration/test-it-check-config|integration/test-it-access-cli|integration/test-cli-errors|integration/test-it-metrics|integration/test-it-attack-0|systemd/service'
# of the attacks, the one that runs both iomemd and the attacker as other uids (all of them take minutes), in the
# first of test-it-attack's parts (IT_ATTACK_ONLY overrides the part's choice)
export IT_ATTACK_ONLY=test_fds_in_flight_bounded
help=$(cmake --build build --target help)
for t in iomem-python:python/test_client iomem-python:python/test_events iomem-ruby:ruby/access iomem-ruby:ruby/events; do
  if grep -q "^\.\.\. ${t%%:*}\$" <<<"$help"; then
    targets+=("${t%%:*}")
    tests+="|${t#*:}"
  fi
done
nice cmake --build build -j2 --target "${targets[@]}" >>build.log 2>&1 || { tail -n 40 build.log; echo "FAIL: build"; exit 1; }
want=$(ctest --test-dir build -N -R "^($tests)\$" | sed -n 's/^Total Tests: //p')
ctest --test-dir build -R "^($tests)\$" --output-on-failure >ctest.log 2>&1 || { cat ctest.log; echo "FAIL: ctest"; exit 1; }
cat ctest.log
# skipped tests would pass without proving anything
if grep -q "Skipped\|Not Run" ctest.log || [ "$want" -lt 6 ] \
   || ! grep -q "100% tests passed, 0 tests failed out of $want\$" ctest.log; then
  echo "FAIL: not all $want uid-switching tests ran"
  exit 1
fi
echo "clone-0700 test passed: the uid-switching tests pass from $home/iomemd (mode 0700 above it)"
