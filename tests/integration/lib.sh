# SPDX-License-Identifier: LGPL-2.1-or-later
# lib.sh: shared helpers of the integration shell tests (sourced, not run).
# Needs IOMEMD and IOMEMCTL from the environment (set by ctest).

: "${IOMEMD:?run through ctest (IOMEMD unset)}"
: "${IOMEMCTL:?run through ctest (IOMEMCTL unset)}"

# $PYTHON3: the interpreter CMake found (Python3_EXECUTABLE, the one the bindings are built for), not whatever
# "python3" comes first in $PATH (a version manager's shim there costs most of a second per start)
PYTHON3=${IOMEM_PYTHON3:-python3}

TMP=$(mktemp -d /tmp/iomem-it-sh.XXXXXX)
SOCK=$TMP/sock
DAEMON_PID=
FAILURES=0

cleanup() {
        if [ -n "$DAEMON_PID" ]; then
                kill "$DAEMON_PID" 2>/dev/null || true
                wait "$DAEMON_PID" 2>/dev/null || true
        fi
        rm -rf "$TMP" ${STAGE:+"$STAGE"}
}
trap cleanup EXIT

# stage_iomemctl: set OTHER_IOMEMCTL to an iomemctl other uids can run: an install of the build (iomemctl and
# libiomem) in a 0755 directory of its own, as the build tree may be under /root (0700) and a test may close $TMP
STAGE=
OTHER_IOMEMCTL=
stage_iomemctl() {
        : "${IOMEM_BUILD_DIR:?run through ctest (IOMEM_BUILD_DIR unset)}"
        STAGE=$(mktemp -d /tmp/iomem-it-stage.XXXXXX)
        bash "$(dirname "${BASH_SOURCE[0]}")/../common/stage-install.sh" "$IOMEM_BUILD_DIR" "$STAGE" || exit 1
        OTHER_IOMEMCTL=$STAGE/bin/iomemctl
}

fail() {
        echo "FAIL: $*" >&2
        FAILURES=$((FAILURES + 1))
}

# start_daemon [ARGS...]: run iomemd on $SOCK and wait until it accepts connections (for up to 120 s: a hang
# detector; under valgrind on a loaded machine iomemd took 9 to 23 s to listen, past the 500 tries once here)
start_daemon() {
        local end=$((SECONDS + 120))

        "$IOMEMD" --socket "$SOCK" --log-level warning --tmpdir "$TMP" "$@" &
        DAEMON_PID=$!
        while [ "$SECONDS" -lt "$end" ]; do
                if "$IOMEMCTL" --socket "$SOCK" ping >/dev/null 2>&1; then
                        return 0
                fi
                kill -0 "$DAEMON_PID" 2>/dev/null || { echo "iomemd died at startup" >&2; exit 1; }
                sleep 0.01
        done
        echo "iomemd did not start within 120 s" >&2
        exit 1
}

stop_daemon() {
        kill "$DAEMON_PID"
        local rc=0
        wait "$DAEMON_PID" || rc=$?
        DAEMON_PID=
        [ "$rc" -eq 0 ] || fail "iomemd exited with $rc"
        rm -f "$SOCK"
}

ctl() {
        "$IOMEMCTL" --socket "$SOCK" "$@"
}

# keeper_pid: the pid of the daemon's fd keeper, or nothing. A region is parked after its CREATE's reply is sent
# (conn_region_announce()), so the keeper may not exist yet, or not yet be named, when iomemctl returns: a PING on a
# new connection is served only after that (one event loop), and by then the keeper answered its PARK, so it runs
# keeper_main() and is named iomemd-keeper.
keeper_pid() {
        local p
        ctl ping >/dev/null || return 0
        for p in $(pgrep -P "$DAEMON_PID"); do
                [ "$(cat "/proc/$p/comm" 2>/dev/null)" != iomemd-keeper ] || { echo "$p"; return 0; }
        done
}

# expect_ok DESCRIPTION COMMAND...: the command must exit 0
expect_ok() {
        local what=$1
        shift
        local err
        if ! err=$("$@" 2>&1 >/dev/null); then
                fail "$what: exit status non-zero: $err"
        fi
}

# expect_err DESCRIPTION STATUS PATTERN COMMAND...: exit STATUS, exactly one stderr line matching PATTERN, no stdout
expect_err() {
        local what=$1 want=$2 pattern=$3
        shift 3
        local rc=0
        "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
        [ "$rc" -eq "$want" ] || fail "$what: exit status $rc, want $want"
        [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "$what: stderr is not one line: $(cat "$TMP/err")"
        grep -Eq "^iomemctl: $pattern" "$TMP/err" || fail "$what: stderr '$(cat "$TMP/err")' does not match '$pattern'"
        [ ! -s "$TMP/out" ] || fail "$what: unexpected stdout: $(cat "$TMP/out")"
        no_repeated_phrase "$what" "$(cat "$TMP/err")"
}

# no_repeated_phrase DESCRIPTION LINE: no run of 4 words appears twice in an error line ("range past the end (4096
# bytes): range past the end of the region" says it twice), and a socket is never "no region with this name"
no_repeated_phrase() {
        local what=$1 line=$2
        # the words are the runs of a-z in the lowercased line; in bash, as a python3 start per error line was most
        # of test-cli-errors' time
        local lower=${line,,} i run
        local -a words
        local -A seen=()
        read -r -a words <<<"${lower//[^a-z]/ }"
        for ((i = 0; i + 3 < ${#words[@]}; i++)); do
                run="${words[i]} ${words[i + 1]} ${words[i + 2]} ${words[i + 3]}"
                if [ -n "${seen[$run]:-}" ]; then
                        fail "$what: a phrase is repeated in '$line'"
                        break
                fi
                seen[$run]=1
        done
        case "$line" in
        *connect*"no region"*) fail "$what: a connect error speaks of regions: $line" ;;
        esac
}

finish() {
        if [ "$FAILURES" -ne 0 ]; then
                echo "$FAILURES failure(s)" >&2
                exit 1
        fi
        echo "all passed"
}
