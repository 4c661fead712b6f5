#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# valgrind-integration: the integration suites once more, with every iomemd they start running under valgrind memcheck.
#
#   tests/fault/valgrind-integration.sh BUILD_DIR TEST...
#
# IOMEMD points at a wrapper that execs `valgrind --error-exitcode=99 --leak-check=full iomemd ...`:
# the suites already require iomemd to exit with status 0 after SIGTERM, so a memcheck error or a
# definite/indirect leak fails the suite. Each valgrind log is also scanned afterwards, which
# catches errors in daemons the suites kill with SIGKILL (no exit status to look at).
set -euo pipefail
# a command that fails where nothing expected it must say so, not end the test with no word
trap 'echo "valgrind-integration.sh: line $LINENO: exit status $? (set -e)" >&2' ERR
build=$(cd "${1:?usage: valgrind-integration.sh BUILD_DIR TEST...}" && pwd)
shift
command -v valgrind >/dev/null || { echo "valgrind is not installed (run .ci/install-deps --test)"; exit 1; }

work=$(mktemp -d /tmp/iomem-vg.XXXXXX)
touch "$work/.start" # FIFOs older than this run are another's (a pid may come round again)
trap 'rm -rf "$work"' EXIT
cat >"$work/iomemd" <<WRAP
#!/bin/sh
exec valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \\
  --errors-for-leak-kinds=definite,indirect --track-fds=no --vgdb=no --log-file=$work/vg.%p.log \\
  "$build/daemon/iomemd" "\$@"
WRAP
chmod +x "$work/iomemd"

export IOMEMD="$work/iomemd"
export IOMEMCTL="$build/cli/iomemctl"
export IOMEM_EXAMPLES="$build/examples"
export CK_DEFAULT_TIMEOUT=600
status=0
for t in "$@"; do
  echo "== $t (iomemd under valgrind)"
  case "$t" in
    *.sh) bash "$t" || { echo "$t FAILED"; status=1; } ;;
    *) "$t" || { echo "$t FAILED"; status=1; } ;;
  esac
done
logs=$(find "$work" -maxdepth 1 -name 'vg.*.log' | wc -l)
echo "valgrind: $logs iomemd runs checked"
# with -q a log holds only errors: any non-empty log is a failure
for f in "$work"/vg.*.log; do
  [ -s "$f" ] || continue
  echo "--- $f"
  cat "$f"
  status=1
done
[ "$logs" -gt 0 ] || { echo "valgrind: no iomemd ran under valgrind"; status=1; }
# --vgdb=no: no gdbserver, so no /tmp/vgdb-pipe-* FIFOs left behind by a valgrind that was killed
for f in "$work"/vg.*.log; do
  pid=${f##*/vg.}; pid=${pid%.log}
  # /tmp is shared with the tests ctest runs alongside: an entry that goes while find looks makes it exit 1,
  # which under set -e ended this script, silently, after every suite had passed (seen once)
  left=$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name "vgdb-pipe-*-$pid-by-*" -newer "$work/.start" 2>/dev/null || true)
  if [ -n "$left" ]; then
    echo "valgrind: left $left"
    status=1
  fi
done
exit $status
