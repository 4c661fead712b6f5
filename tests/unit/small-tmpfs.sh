#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The unit tests with big sparse objects pass in a container whose /dev/shm and $TMPDIR are 64 MiB tmpfs: they
# size themselves to what is free and say so. Runs them in a private mount namespace (needs root).
# Usage: small-tmpfs.sh TEST_BINARY...
set -euo pipefail
if [ "$(id -u)" != 0 ] || ! unshare -m true 2>/dev/null; then
  echo "SKIP: needs root and unshare -m (mounts a 64 MiB tmpfs over /dev/shm)"
  exit 77
fi
tmp=$(mktemp -d /tmp/iomem-small-tmpfs.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/tmpdir"
rc=0
unshare -m bash -euo pipefail -c '
  tmp=$1; shift
  mount --make-rprivate /
  mount -t tmpfs -o size=64m,mode=1777 iomem-test-shm /dev/shm
  mount -t tmpfs -o size=64m,mode=1777 iomem-test-tmp "$tmp/tmpdir"
  df -h /dev/shm "$tmp/tmpdir"
  for t in "$@"; do
    echo "--- $t (TMPDIR=$tmp/tmpdir)"
    TMPDIR=$tmp/tmpdir "$t" 2>&1 | tee -a "$tmp/log"
  done
' small-tmpfs "$tmp" "$@" || rc=$?
[ "$rc" = 0 ] || { echo "FAIL: a test failed with a 64 MiB /dev/shm and TMPDIR"; exit 1; }
# each big sparse test really ran shrunk for both shm and file, in each binary
for where in /dev/shm '$TMPDIR'; do
  n=$(grep -cF "($where): " "$tmp/log" | tr -d ' ' || true)
  grep -F "($where): " "$tmp/log" | grep -q "testing with" || { echo "FAIL: no shrunk test for $where"; exit 1; }
  [ "$n" -ge "$#" ] || { echo "FAIL: $where: $n shrunk tests for $# binaries"; exit 1; }
done
echo "small-tmpfs test passed"
