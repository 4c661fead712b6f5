#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# README's test command is the one .ci/run runs, and it runs both builds even when the first fails, reports both and
# exits non-zero. The command runs for real here, in an empty tree, with cmake, ctest and .ci/install-deps stubbed.
# Usage: readme-commands.sh SOURCE_DIR
set -euo pipefail
src=$(realpath "$1")
cmd=$(sed -n 's/^    \(\.ci\/install-deps --test .*\)$/\1/p' "$src/README.md")
[ -n "$cmd" ] && [ "$(wc -l <<<"$cmd")" = 1 ] || { echo "FAIL: README has no single test command line"; exit 1; }
grep -qxF -- "$cmd" "$src/.ci/run" || { echo "FAIL: .ci/run does not run README's test command"; exit 1; }
quick=$(sed -n 's/^    \(\.ci\/install-deps &&.*\)$/\1/p' "$src/README.md")
grep -q -- "&& .ci/start-iomemd$" <<<"$quick" || { echo "FAIL: no quick start command in README"; exit 1; }

tmp=$(mktemp -d /tmp/iomem-readme.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/tree/.ci"
# stubs: record each call; the ctest of the build named in $FAIL_IN fails
printf '#!/bin/sh\necho "install-deps $*" >>"$LOG"\n' >"$tmp/tree/.ci/install-deps"
printf '#!/bin/sh\necho "cmake $*" >>"$LOG"\n' >"$tmp/bin/cmake"
printf '#!/bin/sh\necho "ctest $*" >>"$LOG"\n[ "$2" != "$FAIL_IN" ]\n' >"$tmp/bin/ctest"
chmod +x "$tmp/tree/.ci/install-deps" "$tmp/bin/cmake" "$tmp/bin/ctest"
for fail_in in build build-asan none; do
  : >"$tmp/log"
  rc=0
  out=$(cd "$tmp/tree" && PATH="$tmp/bin:$PATH" LOG="$tmp/log" FAIL_IN=$fail_in bash -c "$cmd") || rc=$?
  grep -q "^ctest --test-dir build " "$tmp/log" || { echo "FAIL ($fail_in): normal build not tested"; exit 1; }
  grep -q "^ctest --test-dir build-asan " "$tmp/log" \
    || { echo "FAIL ($fail_in): sanitizer build not tested: $(cat "$tmp/log")"; exit 1; }
  grep -q "^install-deps --test$" "$tmp/log" || { echo "FAIL ($fail_in): install-deps --test not run"; exit 1; }
  case $fail_in in
    build) want="normal build exit 1, sanitizer build exit 0" ;;
    build-asan) want="normal build exit 0, sanitizer build exit 1" ;;
    none) want="normal build exit 0, sanitizer build exit 0" ;;
  esac
  grep -q "$want" <<<"$out" || { echo "FAIL ($fail_in): summary '$out', want '$want'"; exit 1; }
  if [ $fail_in = none ]; then [ $rc = 0 ] || { echo "FAIL: exit $rc when all passed"; exit 1; }
  else [ $rc != 0 ] || { echo "FAIL ($fail_in): exit 0 after a failure"; exit 1; }; fi
done
echo "readme-commands test passed"
