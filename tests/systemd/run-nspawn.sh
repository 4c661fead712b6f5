#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Boot a real systemd as PID 1 in systemd-nspawn over the host's root (read-only, tmpfs on top), install the
# project's units pointing at an install of the build (tests/common/stage-install.sh: a temporary prefix that every
# uid can read, as the build tree may be under a 0700 directory such as /root), and run tests/systemd/inside.sh as a
# oneshot unit.
# Usage: run-nspawn.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(realpath "$1")
src=$(realpath "$2")

if [ "$(id -u)" != 0 ] || ! command -v systemd-nspawn >/dev/null; then
  echo "SKIP: needs root and systemd-nspawn (package systemd-container)"
  exit 77
fi

work=$(mktemp -d /tmp/iomemd-nspawn.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/out" "$work/units/iomemd.service.d"
chmod 0755 "$work"
bash "$src/tests/common/stage-install.sh" "$build" "$work/prefix" || { echo "FAILED: staging the install"; exit 1; }
cp "$build/tests/systemd/iomem-loop-client" "$work/prefix/bin/"

# The shipped units; only the binary's path changes: the install is bind-mounted at /it for the service (a
# hardened service sees neither /tmp nor /home of the host) and for the test's clients (also as other uids).
sed "s#@CMAKE_INSTALL_FULL_BINDIR@/iomemd#/it/bin/iomemd#" "$src/systemd/iomemd.service.in" \
  > "$work/units/iomemd.service"
cp "$src/systemd/iomemd.socket" "$work/units/iomemd.socket"
# the per-user units, installed under their installed names into the user unit directory
mkdir -p "$work/units/user"
sed "s#@CMAKE_INSTALL_FULL_BINDIR@/iomemd#/it/bin/iomemd#" "$src/systemd/iomemd-user.service.in" \
  > "$work/units/user/iomemd.service"
cp "$src/systemd/iomemd-user.socket" "$work/units/user/iomemd.socket"
# test-only: SIGUSR2 makes the daemon stop answering, to exercise the watchdog
printf '[Service]\nEnvironment=IOMEMD_TEST_HOOKS=1\n' > "$work/units/iomemd.service.d/test-hooks.conf"
# A sanitized build: LeakSanitizer cannot run under the units' SystemCallFilter= (no ptrace, @debug) and ends the
# process with status 1 ("LeakSanitizer has encountered a fatal error"), which made the reload's check
# (ExecReload=iomemd --check-config) fail; leaks are looked for in the integration tests, outside the sandbox.
if grep -q '^IOMEM_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  mkdir -p "$work/units/user/iomemd.service.d"
  for d in "$work/units/iomemd.service.d" "$work/units/user/iomemd.service.d"; do
    printf '[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n' > "$d/no-lsan.conf"
  done
fi
cat > "$work/units/it-test.service" <<UNIT
[Unit]
Description=iomemd integration test under systemd
After=iomemd.socket
Requires=iomemd.socket

[Service]
Type=oneshot
StandardOutput=journal+console
ExecStart=/bin/bash $src/tests/systemd/inside.sh /it $src /out
UNIT

set +e
timeout 360 systemd-nspawn -q -D / --volatile=yes --boot --register=no --keep-unit --console=pipe \
  --private-network \
  --bind-ro="$work/prefix:/it" --bind-ro="$src:$src" --bind="$work/out:/out" \
  --bind-ro="$work/units/iomemd.socket:/etc/systemd/system/iomemd.socket" \
  --bind-ro="$work/units/iomemd.service:/etc/systemd/system/iomemd.service" \
  --bind-ro="$work/units/iomemd.service.d:/etc/systemd/system/iomemd.service.d" \
  --bind-ro="$work/units/it-test.service:/etc/systemd/system/it-test.service" \
  --bind-ro="$work/units/user:/etc/systemd/user" \
  -- systemd.wants=it-test.service systemd.wants=iomemd.socket </dev/null >"$work/console.log" 2>&1
rc=$?
set -e
cat "$work/out/log" 2>/dev/null || true
if [ $rc != 0 ]; then
  echo "--- container console (tail) ---"
  tail -n 60 "$work/console.log"
  echo "FAILED: systemd test exited with $rc"
  exit 1
fi
grep -q '^ALL PASSED$' "$work/out/log" || { echo "FAILED: no completion line"; exit 1; }
echo "systemd test passed"
