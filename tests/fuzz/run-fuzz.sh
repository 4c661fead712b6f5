#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# run-fuzz: build the libFuzzer targets with clang in their own sub-build and run each for a bounded time.
#
#   tests/fuzz/run-fuzz.sh BUILD_DIR [SECONDS_PER_TARGET] [TARGET...]
#
# ctest runs it with 25 s per target. A longer run (docs/reliability.md):
#   tests/fuzz/run-fuzz.sh /tmp/fuzz-long 3600
# New inputs go to BUILD_DIR/corpus-<target>; the seeds in tests/fuzz/corpus-<target> are read, never written.
# A crash leaves BUILD_DIR/crash-* and makes this script fail.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: run-fuzz.sh BUILD_DIR [SECONDS] [TARGET...]}
mkdir -p "$build"
build=$(cd "$build" && pwd)
secs=${2:-25}
shift $(( $# >= 2 ? 2 : 1 ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz-proto fuzz-conn)
cc=$(command -v clang || command -v clang-14)

cmake -S "$here" -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2 --target "${targets[@]}" >/dev/null

# the targets run side by side, one process each (ctest runs fuzz/short alone: RUN_SERIAL), each for the whole
# ${secs} s; one after another they took twice the wall time for the same runs
run_target() {
  local t=$1 corpus="$build/corpus-$1" log="$build/$1.log"
  mkdir -p "$corpus"
  rm -f "$log"
  # detect_leaks stays on (LeakSanitizer): a leak on any path is a failure
  (cd "$build" && ASAN_OPTIONS=abort_on_error=0:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "./$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 -dict="$here/$t.dict" "$corpus" "$here/corpus-$t" >"$log" 2>&1)
}
pids=()
for t in "${targets[@]}"; do
  echo "== $t: ${secs}s"
  run_target "$t" &
  pids+=($!)
done
status=0
for i in "${!targets[@]}"; do
  t=${targets[$i]}
  log="$build/$t.log"
  if ! wait "${pids[$i]}"; then
    echo "$t FAILED; the end of its log ($log):"
    tail -n 60 "$log"
    status=1
  fi
  echo "-- $t"
  grep -E '^stat::number_of_executed_units|^stat::new_units_added|^#[0-9]+ *DONE' "$log" || true
done
exit $status
