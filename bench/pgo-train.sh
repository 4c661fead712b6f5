#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# pgo-train.sh: the training run of a profile-guided build (IOMEM_PGO, CMakeLists.txt).
# Usage: bench/pgo-train.sh INSTRUMENTED-BUILD PROFILED-BUILD STAMP
# Runs the instrumented iomemd of INSTRUMENTED-BUILD on a socket of its own, drives it with the instrumented
# iomem-count (libiomem) through each of its modes, then with the instrumented iomemctl through the rest of the
# protocol, stops it with SIGTERM (the counts are written as the processes exit, each object's next to it), copies the counts to the same relative paths in PROFILED-BUILD, where GCC's
# -fprofile-use looks for them, and touches STAMP.
# Skipped when STAMP is newer than the programs and the library: nothing was rebuilt.
# The old counts are removed first, in both builds, so counts from an older build never mix with the new ones.
set -eu
pgo=$(cd "$1" && pwd) build=$(cd "$2" && pwd) stamp=$3
iomemd=$pgo/daemon/iomemd count=$pgo/bench/iomem-count iomemctl=$pgo/cli/iomemctl lib=$pgo/client/libiomem.so

if [ -e "$stamp" ] && [ "$stamp" -nt "$iomemd" ] && [ "$stamp" -nt "$count" ] && [ "$stamp" -nt "$iomemctl" ] &&
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

# Start a fresh instrumented iomemd on $dir/s.
start() {
        rm -f "$dir/s"
        # not a service's child here, whatever the environment says; the socket "s" relative to $dir, where the
        # programs run: a socket's path has at most 107 bytes
        (cd "$dir" && exec env -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID -u LISTEN_FDNAMES -u WATCHDOG_USEC \
                -u WATCHDOG_PID "$iomemd" --config iomemd.conf --socket s --backend memfd --log-level warning) &
        pid=$!
        i=0
        # answering, not just bound (the socket's file exists before it listens)
        until (cd "$dir" && exec "$iomemctl" --socket s ping) >/dev/null 2>&1; do
                i=$((i + 1))
                if [ "$i" -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
                        echo "pgo-train: the instrumented iomemd did not start; configure with -DIOMEM_PGO=OFF to build" \
                             "without profile-guided optimisation" >&2
                        exit 1
                fi
                sleep 0.1
        done
}

stop() {
        kill -TERM "$pid"
        wait "$pid"
        pid=
}

failed() {
        echo "pgo-train: $* failed; configure with -DIOMEM_PGO=OFF to build without profile-guided optimisation" >&2
        exit 1
}

# Run iomem-count MODE N TABLE against a fresh iomemd (iomem-count creates its regions anew each time).
train() {
        start
        (cd "$dir" && exec "$count" s "$@" >/dev/null) || failed "iomem-count $*"
        stop
}

ctl() {
        (cd "$dir" && exec "$iomemctl" --socket s "$@" >/dev/null) || failed "iomemctl $*"
}

# An error the daemon answers (not a failure of the training).
ctl_error() {
        if (cd "$dir" && exec "$iomemctl" --socket s "$@" >/dev/null 2>&1); then
                failed "iomemctl $* (expected an error)"
        fi
}

# The hot paths, many times: cold and warm clients, read-write and read-only opens, creates; a table of 100
# regions, then of 5,000. These are also what bench/callgrind.sh counts (docs/performance.md).
for table in 100 5000; do
        for mode in cold-map cold open open-ro create; do
                train "$mode" 4000 "$table"
        done
done

# The rest of the protocol, fewer times, so that its paths do not count as never taken (they would be laid out
# and optimised as cold code): a watcher's events, write and read, stat, resize, seal, publish, wait, chmod,
# list, delete, metrics, status, quota, and the errors of a name that does not exist or already does.
start
(cd "$dir" && exec "$iomemctl" --socket s watch pgo/ --timeout 2 >/dev/null 2>&1) &
watcher=$!
n=0
while [ "$n" -lt 50 ]; do
        ctl create "pgo/r$n" 4K --resizable
        echo x | ctl write "pgo/r$n"
        ctl read "pgo/r$n" --length 1
        ctl --json stat "pgo/r$n"
        ctl resize "pgo/r$n" 8K
        ctl seal "pgo/r$n" shrink
        echo v | ctl publish "pgo/p$n"
        ctl wait "pgo/p$n" --timeout 1
        ctl chmod "pgo/r$n" 600
        ctl list pgo/
        ctl rm "pgo/r$n"
        ctl_error stat "pgo/none$n"
        ctl_error create "pgo/p$n" 4K --exclusive
        if [ $((n % 10)) = 0 ]; then
                ctl metrics
                ctl status
                ctl quota
        fi
        n=$((n + 1))
done
wait "$watcher" || :
stop
(cd "$pgo" && find . -name '*.gcda' -exec cp --parents {} "$build" \;)
touch "$stamp"
