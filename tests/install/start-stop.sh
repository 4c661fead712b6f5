#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The quick start's .ci/start-iomemd and .ci/stop-iomemd: start once, say clearly when already running, stop that
# daemon and no other iomemd. In a private mount namespace with a tmpfs on /run and /var/log, so the default socket
# and the log are the test's own.
# Usage: start-stop.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$(realpath "$1")
build=$(realpath "$2")
if [ "$(id -u)" != 0 ] || ! unshare -m true 2>/dev/null; then
  echo "SKIP: needs root and unshare -m (a private /run for the default socket)"
  exit 77
fi
tmp=$(mktemp -d /tmp/iomem-start-stop.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# a build dir of its own (the pidfile lives there), with this build's programs
mkdir "$tmp/build"
ln -s "$build/cli" "$tmp/build/cli"
ln -s "$build/daemon" "$tmp/build/daemon"

unshare -m bash -euo pipefail -c '
  src=$1 tmp=$2
  fail() { echo "FAIL: $*"; exit 1; }
  mount --make-rprivate /
  mount -t tmpfs tmpfs /run
  mount -t tmpfs tmpfs /var/log
  cd "$tmp"
  # a bystander: another iomemd that must survive
  build/daemon/iomemd --socket "$tmp/other.sock" --log-level warning &
  other=$!
  trap "kill $other 2>/dev/null; [ -s build/iomemd.pid ] && kill \$(cat build/iomemd.pid) 2>/dev/null; true" EXIT

  out=$("$src/.ci/start-iomemd" build) || fail "start: $out"
  echo "$out"
  echo "$out" | grep -q "^iomemd is running (pid [0-9]*, log: /var/log/iomemd.log)" || fail "start said: $out"
  pid=$(cat build/iomemd.pid)
  [ "$(readlink /proc/$pid/exe)" = "$(realpath build/daemon/iomemd)" ] || fail "pidfile does not hold the daemon"
  build/cli/iomemctl ping >/dev/null || fail "no answer on the default socket"

  out=$("$src/.ci/start-iomemd" build) || fail "second start exited non-zero: $out"
  echo "$out"
  echo "$out" | grep -q "^iomemd is already running (pid $pid," || fail "second start said: $out"
  echo "$out" | grep -qi "version" && fail "second start still speaks of a version: $out"

  out=$("$src/.ci/stop-iomemd" build) || fail "stop: $out"
  echo "$out"
  echo "$out" | grep -q "^iomemd (pid $pid) stopped$" || fail "stop said: $out"
  kill -0 "$pid" 2>/dev/null && fail "the daemon still runs after stop"
  kill -0 "$other" 2>/dev/null || fail "stop also ended another iomemd"
  [ ! -e build/iomemd.pid ] || fail "pidfile left behind"
  out=$("$src/.ci/stop-iomemd" build) || fail "second stop: $out"
  echo "$out" | grep -q "^no build/iomemd.pid" || fail "second stop said: $out"
  echo "start-stop test passed"
' start-stop "$src" "$tmp"
