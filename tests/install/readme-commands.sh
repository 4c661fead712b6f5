#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# README's test command is the one .ci/run runs first: the normal build and its suite but for the stage2 tests.
# .ci/run then runs the stage2 tests, the sanitizer build's whole suite and the packaging stage, each whatever the
# others gave, reports each on its last line and exits non-zero if any failed. Both run for real here, in an empty
# tree, with cmake, ctest, .ci/install-deps, .ci/install-deps-packaging and tests/packaging/run.sh stubbed.
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
mkdir -p "$tmp/bin" "$tmp/tree/.ci" "$tmp/tree/tests/packaging"
cp "$src/.ci/run" "$tmp/tree/.ci/run"
# stubs: record each call; the one named in $FAIL_IN fails (a ctest as DIR:SELECTION, SELECTION = LE for -LE, L for
# -L, all for neither)
printf '#!/bin/sh\necho "install-deps $*" >>"$LOG"\n' >"$tmp/tree/.ci/install-deps"
printf '#!/bin/sh\necho "install-deps-packaging" >>"$LOG"\n' >"$tmp/tree/.ci/install-deps-packaging"
printf '#!/bin/sh\necho "packaging" >>"$LOG"\n[ "$FAIL_IN" != packaging ]\n' >"$tmp/tree/tests/packaging/run.sh"
printf '#!/bin/sh\necho "cmake $*" >>"$LOG"\n' >"$tmp/bin/cmake"
cat >"$tmp/bin/ctest" <<'STUB'
#!/bin/sh
echo "ctest $*" >>"$LOG"
sel=all
for a; do case $a in -LE) sel=LE ;; -L) sel=L ;; esac; done
[ "$2:$sel" != "$FAIL_IN" ]
STUB
chmod +x "$tmp/tree/.ci/install-deps" "$tmp/tree/.ci/install-deps-packaging" "$tmp/tree/tests/packaging/run.sh" \
  "$tmp/bin/cmake" "$tmp/bin/ctest"

# README's command: the normal build's suite but for stage2, and nothing else
for fail_in in build:LE none; do
  : >"$tmp/log"
  rc=0
  (cd "$tmp/tree" && PATH="$tmp/bin:$PATH" LOG="$tmp/log" FAIL_IN=$fail_in bash -c "$cmd" >/dev/null) || rc=$?
  grep -q "^install-deps --test$" "$tmp/log" || { echo "FAIL ($fail_in): install-deps --test not run"; exit 1; }
  grep -qE "^ctest --test-dir build( .*)? -LE stage2( |$)" "$tmp/log" \
    || { echo "FAIL ($fail_in): README's command does not test the normal build with -LE stage2: $(cat "$tmp/log")"
         exit 1; }
  [ "$(grep -c "^ctest" "$tmp/log")" = 1 ] || { echo "FAIL ($fail_in): README's command runs more than one ctest"; exit 1; }
  if [ $fail_in = none ]; then [ $rc = 0 ] || { echo "FAIL: README's command exits $rc when all passed"; exit 1; }
  else [ $rc != 0 ] || { echo "FAIL ($fail_in): README's command exits 0 after a failure"; exit 1; }; fi
done

# .ci/run: every stage runs whatever the others gave; the last line reports each; non-zero if any failed
for fail_in in build:LE build:L build-asan:all packaging none; do
  : >"$tmp/log"
  rc=0
  out=$(cd "$tmp/tree" && PATH="$tmp/bin:$PATH" LOG="$tmp/log" FAIL_IN=$fail_in bash .ci/run </dev/null) || rc=$?
  grep -q "^install-deps --test$" "$tmp/log" || { echo "FAIL ($fail_in): install-deps --test not run"; exit 1; }
  grep -qE "^ctest --test-dir build( .*)? -LE stage2( |$)" "$tmp/log" \
    || { echo "FAIL ($fail_in): .ci/run does not test the normal build (-LE stage2): $(cat "$tmp/log")"; exit 1; }
  grep -qE "^ctest --test-dir build( .*)? -L stage2( |$)" "$tmp/log" \
    || { echo "FAIL ($fail_in): .ci/run does not run the stage2 tests (-L stage2): $(cat "$tmp/log")"; exit 1; }
  grep "^ctest --test-dir build-asan " "$tmp/log" | grep -qvE -- " -L| -R| -E" \
    || { echo "FAIL ($fail_in): .ci/run does not run the sanitizer build's whole suite: $(cat "$tmp/log")"; exit 1; }
  grep -q "^packaging$" "$tmp/log" || { echo "FAIL ($fail_in): packaging stage not run: $(cat "$tmp/log")"; exit 1; }
  r1=0 r2=0 r3=0 r4=0
  case $fail_in in
    build:LE) r1=1 ;;
    build:L) r2=1 ;;
    build-asan:all) r3=1 ;;
    packaging) r4=1 ;;
  esac
  want="CI: normal build exit $r1, stage2 exit $r2, sanitizer build exit $r3, packaging stage exit $r4"
  [ "$(tail -n 1 <<<"$out")" = "$want" ] || { echo "FAIL ($fail_in): last line '$(tail -n 1 <<<"$out")', want '$want'"; exit 1; }
  if [ $fail_in = none ]; then [ $rc = 0 ] || { echo "FAIL: .ci/run exits $rc when all passed"; exit 1; }
  else [ $rc != 0 ] || { echo "FAIL ($fail_in): .ci/run exits 0 after a failure"; exit 1; }; fi
done
echo "readme-commands test passed"
