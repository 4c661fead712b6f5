#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# recycle-vg: libiomem's recycled client and region blocks (client/recycle.h) under valgrind: a program's memcheck
# still reports a use of a freed region, and its helgrind sees no race where a freed block went from one thread to
# another (a slot handing blocks over with an atomic exchange, which helgrind cannot see, would look like one).
#
#   tests/fault/recycle-vg.sh RECYCLE_VG
set -euo pipefail
prog=${1:?usage: recycle-vg.sh RECYCLE_VG}
command -v valgrind >/dev/null || { echo "valgrind is not installed (run .ci/install-deps --test)"; exit 1; }
log=$(mktemp /tmp/iomem-recycle-vg.XXXXXX)
trap 'rm -f "$log"' EXIT
status=0

run() { # EXPECTED-STATUS WHAT VALGRIND-ARGS... -- ARGS
  local want=$1 what=$2 got=0
  shift 2
  valgrind -q --error-exitcode=99 --vgdb=no --log-file="$log" "$@" || got=$?
  if [ "$got" != "$want" ]; then
    echo "FAIL: $what: exit $got, expected $want"
    cat "$log"
    status=1
  else
    echo "ok: $what"
  fi
}

run 0 "memcheck, threads" --tool=memcheck "$prog" threads
run 0 "helgrind, threads" --tool=helgrind "$prog" threads
run 99 "memcheck sees a use of a freed region" --tool=memcheck "$prog" uaf
grep -q "Invalid read" "$log" || { echo "FAIL: no invalid read reported"; cat "$log"; status=1; }
exit $status
