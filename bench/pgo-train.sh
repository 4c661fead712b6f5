#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# pgo-train.sh: the training run of a profile-guided build (IOMEM_PGO, CMakeLists.txt).
# Usage: bench/pgo-train.sh IOMEMD IOMEM-COUNT PROFILE-DIR STAMP
# Runs the instrumented IOMEMD on a socket of its own, drives it with the instrumented IOMEM-COUNT (libiomem) through
# each of its modes, stops it with SIGTERM (the profile is written as the processes exit) and touches STAMP.
# Skipped when STAMP is newer than both programs and the library next to IOMEM-COUNT's: nothing was rebuilt.
# The old profile is removed first, so counts from an older build never mix with the new ones.
set -eu
iomemd=$1 count=$2 profile=$3 stamp=$4
lib=$(dirname "$count")/../client/libiomem.so

if [ -e "$stamp" ] && [ "$stamp" -nt "$iomemd" ] && [ "$stamp" -nt "$count" ] &&
   { [ ! -e "$lib" ] || [ "$stamp" -nt "$lib" ]; }; then
        exit 0
fi
rm -f "$stamp"
mkdir -p "$profile"
find "$profile" -name '*.gcda' -delete
dir=$(mktemp -d "${TMPDIR:-/tmp}/iomem-pgo-XXXXXX")
pid=
cleanup() {
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
        rm -rf "$dir"
}
trap cleanup EXIT
: >"$dir/iomemd.conf" # not /etc/iomemd/iomemd.conf: the machine's allow-lists and quotas are not the training's

# Run iomem-count MODE N TABLE against a fresh iomemd (iomem-count creates its regions anew each time).
train() {
        rm -f "$dir/s"
        # not a service's child here, whatever the environment says
        env -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID -u LISTEN_FDNAMES -u WATCHDOG_USEC -u WATCHDOG_PID \
                "$iomemd" --config "$dir/iomemd.conf" --socket "$dir/s" --backend memfd --log-level warning &
        pid=$!
        i=0
        while [ ! -S "$dir/s" ]; do
                i=$((i + 1))
                if [ "$i" -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
                        echo "pgo-train: the instrumented iomemd did not start; configure with -DIOMEM_PGO=OFF to build" \
                             "without profile-guided optimisation" >&2
                        exit 1
                fi
                sleep 0.1
        done
        if ! "$count" "$dir/s" "$@" >/dev/null; then
                echo "pgo-train: iomem-count $* failed; configure with -DIOMEM_PGO=OFF to build without" \
                     "profile-guided optimisation" >&2
                exit 1
        fi
        kill -TERM "$pid"
        wait "$pid"
        pid=
}

# the requests of a running system, each path many times: cold and warm clients, read-write and read-only
# opens, creates; a table of 100 regions, then of 5,000
for table in 100 5000; do
        for mode in cold-map cold open open-ro create; do
                train "$mode" 4000 "$table"
        done
done
touch "$stamp"
