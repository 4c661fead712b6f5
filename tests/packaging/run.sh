#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The packages for real: build them (and a rebuilt newer version), lint them, install them with dpkg into a fresh
# Debian 12 root booted with systemd-nspawn (tests/packaging/inside.sh), and check install, use by a non-root
# user, upgrade, remove and purge. The root comes from a debootstrap tarball cached under /var/cache/iomemd-ci
# (make-root.sh). Needs root, network for the first debootstrap, and .ci/install-deps-packaging.
# Usage: run.sh [SOURCE_DIR]
set -euo pipefail
here=$(dirname "$(realpath "$0")")
src=$(realpath "${1:-$here/../..}")
start=$SECONDS
if [ "$(id -u)" != 0 ]; then echo "FAILED: the package test needs root"; exit 1; fi
# nspawn copies the host's /dev/null into the container: a host whose /dev/null became a plain file fails late
[ -c /dev/null ] || { echo "FAILED: the host's /dev/null is not a character device (mknod -m 666 /dev/null c 1 3)"; exit 1; }

work=$(mktemp -d /tmp/iomemd-pkgtest.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== root file system"
tarball=$("$here/make-root.sh")
echo "using $tarball"

echo "== build"
# the first build runs the package's own tests (the unit suites); the rebuild skips them
DEB_BUILD_OPTIONS="parallel=2" "$here/build-debs.sh" "$src" "$work/v1"
DEB_BUILD_OPTIONS="nocheck parallel=2" "$here/build-debs.sh" "$src" "$work/v2" next

echo "== lintian"
# lintian refuses nothing as root, but says it is not recommended: that line is not a finding
lrc=0
lintian --fail-on error --suppress-tags initial-upload-closes-no-bugs "$work"/v1/*.changes >"$work/lintian.txt" 2>&1 \
  || lrc=$?
grep -v 'running with root privileges' "$work/lintian.txt" || true
[ $lrc = 0 ] || { echo "FAILED: lintian exited $lrc"; exit 1; }
echo "lintian: $(grep -c '^E:' "$work/lintian.txt" || true) errors, $(grep -c '^W:' "$work/lintian.txt" || true) warnings"

echo "== install, use, upgrade, remove, purge in systemd-nspawn"
mkdir -p "$work/root" "$work/out"
tar -C "$work/root" --numeric-owner -xzf "$tarball"
mkdir -p "$work/root/pkgtest" "$work/root/debs1" "$work/root/debs2" "$work/root/out"
cp "$here/inside.sh" "$work/root/pkgtest/"
cat > "$work/root/etc/systemd/system/pkg-test.service" <<UNIT
[Unit]
Description=iomemd package test

[Service]
Type=oneshot
StandardOutput=journal+console
ExecStart=/bin/bash /pkgtest/inside.sh /debs1 /debs2 /out
UNIT
set +e
timeout 300 systemd-nspawn -q -D "$work/root" --boot --register=no --keep-unit --console=pipe --private-network \
  --bind-ro="$work/v1:/debs1" --bind-ro="$work/v2:/debs2" --bind="$work/out:/out" \
  -- systemd.wants=pkg-test.service </dev/null >"$work/console.log" 2>&1
rc=$?
set -e
cat "$work/out/log" 2>/dev/null || true
if [ $rc != 0 ] || ! grep -q '^ALL PASSED$' "$work/out/log"; then
  echo "--- container console (tail) ---"
  tail -n 40 "$work/console.log"
  echo "FAILED: package test (nspawn exit $rc)"
  exit 1
fi
echo "package test passed in $((SECONDS - start)) s"
echo "packaging: $(grep -c '^ok: ' "$work/out/log") passed, 0 failed"
