#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# pgo-train.sh: the training run of a profile-guided build (IOMEM_PGO, CMakeLists.txt).
# Usage: bench/pgo-train.sh INSTRUMENTED-BUILD PROFILED-BUILD STAMP
# Runs the instrumented iomemd of INSTRUMENTED-BUILD on a socket of its own, drives it with the instrumented
# iomem-count (libiomem) through each of its modes, stops it with SIGTERM (the counts are written as the processes
# exit, each object's next to it), copies the counts to the same relative paths in PROFILED-BUILD, where GCC's
# -fprofile-use looks for them, and touches STAMP.
# Skipped when STAMP is newer than both programs and the library: nothing was rebuilt.
# The old counts are removed first, in both builds, so counts from an older build never mix with the new ones.
set -eu
pgo=$(cd "$1" && pwd) build=$(cd "$2" && pwd) stamp=$3
iomemd=$pgo/daemon/iomemd count=$pgo/bench/iomem-count lib=$pgo/client/libiomem.so

if [ -e "$stamp" ] && [ "$stamp" -nt "$iomemd" ] && [ "$stamp" -nt "$count" ] &&
   { [ ! -e "$lib" ] || [ "$stamp" -nt "$lib" ]; }; then
        exit 0
fi
rm -f "$stamp"
# GNU find puts the file name in place of {} within an argument too
(cd "$pgo" && find . -name '*.gcda' -exec rm -f "$build/{}" {} \;)
# a TMPDIR that does not exist is not a reason to fail the build; the socket's path is relative (below), so a long
# one is not either
tmp=${TMPDIR:-/tmp}
[ -d "$tmp" ] && [ -w "$tmp" ] || tmp=/tmp
dir=$(mktemp -d "$tmp/iomem-pgo-XXXXXX")
pid=
cleanup() {
        if [ -n "$pid" ]; then
                kill -KILL "$pid" 2>/dev/null || :
        fi
        rm -rf "$dir"
}
trap cleanup EXIT
# interrupted (^C, make killed): the EXIT trap still stops the daemon and removes the directory
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
: >"$dir/iomemd.conf" # not /etc/iomemd/iomemd.conf: the machine's allow-lists and quotas are not the training's

# Run iomem-count MODE N TABLE against a fresh iomemd (iomem-count creates its regions anew each time).
train() {
        rm -f "$dir/s"
        # not a service's child here, whatever the environment says
        # the socket "s" relative to $dir, where both run: a socket's path has at most 107 bytes
        (cd "$dir" && exec env -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID -u LISTEN_FDNAMES -u WATCHDOG_USEC \
                -u WATCHDOG_PID "$iomemd" --config iomemd.conf --socket s --backend memfd --log-level warning) &
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
        if ! (cd "$dir" && exec "$count" s "$@" >/dev/null); then
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
(cd "$pgo" && find . -name '*.gcda' -exec cp --parents {} "$build" \;)
touch "$stamp"
