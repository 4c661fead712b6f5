#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-it-access-cli: iomemctl chmod, chown, quota and register against the real iomemd, as root and as other uids.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

json() { # json EXPR: evaluate a Python expression over the JSON document on stdin (as j)
        "$PYTHON3" -c "import json,sys; j=json.load(sys.stdin); v=($1); print(v)"
}

# as UID GID CMD...: run a command as another uid/gid (no passwd entry needed); iomemctl as OTHER_IOMEMCTL
# (stage_iomemctl in lib.sh: the build tree may sit under a directory other uids cannot enter, /root).
as() {
        local uid=$1 gid=$2
        shift 2
        [ "$1" != "$IOMEMCTL" ] || set -- "$OTHER_IOMEMCTL" "${@:2}"
        setpriv --reuid "$uid" --regid "$gid" --clear-groups "$@"
}

[ "$(id -u)" -eq 0 ] || { echo "needs root (switches to other uids): skipped"; exit 77; }
command -v setpriv >/dev/null || { echo "setpriv missing: skipped"; exit 77; }
stage_iomemctl

# usage errors, without a daemon
expect_err "chmod bad mode" 2 "chmod: bad mode '0999'" "$IOMEMCTL" chmod x 0999
expect_err "chown bad owner" 2 "chown: bad owner 'me'" "$IOMEMCTL" chown x me
expect_err "chown nothing" 2 "chown: bad owner ':'" "$IOMEMCTL" chown x :
expect_err "register bad size" 2 "register: bad size 'lots'" "$IOMEMCTL" register x lots
expect_err "quota extra argument" 2 "quota: unexpected argument" "$IOMEMCTL" quota x

start_daemon --quota-regions 2
chmod 0755 "$TMP"

# chmod / chown as root, seen by stat
expect_ok "create" ctl create a 4K --mode 0600
expect_ok "chmod" ctl chmod a 0640
expect_ok "chown" ctl chown a 1500:1600
out=$(ctl --json stat a)
[ "$(echo "$out" | json 'j["mode"]')" = 0640 ] || fail "mode after chmod: $out"
[ "$(echo "$out" | json 'j["uid"]')" = 1500 ] || fail "uid after chown: $out"
[ "$(echo "$out" | json 'j["gid"]')" = 1600 ] || fail "gid after chown: $out"

# another uid: refused with one line, exit 1
expect_err "chmod by other" 1 "chmod a: only the owner may change the mode$" as 1501 1601 "$IOMEMCTL" --socket "$SOCK" chmod a 0666
expect_err "chown by owner to another uid" 1 "chown a: only root may change the owner" as 1500 1600 "$IOMEMCTL" --socket "$SOCK" chown a 1501
expect_err "rm by other" 1 "rm a: permission denied" as 1501 1601 "$IOMEMCTL" --socket "$SOCK" rm a
expect_ok "chmod by owner" as 1500 1600 "$IOMEMCTL" --socket "$SOCK" chmod a 0604
expect_ok "read by other (0604)" as 1501 1601 "$IOMEMCTL" --socket "$SOCK" read a --length 1
expect_err "write by other (0604)" 1 "write a: permission denied" as 1501 1601 "$IOMEMCTL" --socket "$SOCK" write a /dev/null

# quota: usage of the caller's uid, limits
out=$(as 1500 1600 "$IOMEMCTL" --socket "$SOCK" --json quota)
[ "$(echo "$out" | json 'j["uid"]')" = 1500 ] || fail "quota uid: $out"
[ "$(echo "$out" | json 'j["regions"]')" = 1 ] || fail "quota regions (chown moved the charge): $out"
[ "$(echo "$out" | json 'j["bytes"]')" = 4096 ] || fail "quota bytes: $out"
[ "$(echo "$out" | json 'j["max_regions"]')" = 2 ] || fail "quota max_regions: $out"
as 1500 1600 "$IOMEMCTL" --socket "$SOCK" quota | grep -Eq "^regions: +1 / 2$" || fail "quota text"
as 1500 1600 "$IOMEMCTL" --socket "$SOCK" quota | grep -Eq "^bytes: +4096 / unlimited$" || fail "quota text bytes"

# register: a memfd made by iomemctl as uid 1502, filled from stdin, readable by others, owned by 1502
printf 'registered bytes' | as 1502 1602 "$IOMEMCTL" --socket "$SOCK" register pub 4K - --mode 0644 \
        || fail "register"
[ "$(as 1501 1601 "$IOMEMCTL" --socket "$SOCK" read pub --length 16)" = "registered bytes" ] || fail "register content"
out=$(ctl --json stat pub)
[ "$(echo "$out" | json 'j["uid"]')" = 1502 ] || fail "register owner: $out"
[ "$(echo "$out" | json '"shrink" in j["seals"] and "grow" in j["seals"]')" = True ] || fail "register seals: $out"
expect_err "register existing" 1 "register pub: " as 1502 1602 "$IOMEMCTL" --socket "$SOCK" register pub 4K
expect_err "write to a registered region without write permission" 1 "write pub: permission denied" \
        as 1501 1601 "$IOMEMCTL" --socket "$SOCK" write pub /dev/null
out=$(as 1502 1602 "$IOMEMCTL" --socket "$SOCK" --json register pub2 1K --seal write)
echo "$out" | json 'j["id"] > 0' | grep -q True || fail "register --json id: $out"
expect_err "register past the region quota" 1 "register pub3: region quota is reached: uid 1502 owns 2, quota-regions is 2; \
delete regions, or raise quota-regions in iomemd\.conf$" \
        as 1502 1602 "$IOMEMCTL" --socket "$SOCK" register pub3 1K

# status shows the totals
out=$(ctl --json status)
[ "$(echo "$out" | json 'j["regions"]')" = 3 ] || fail "status regions: $out"

stop_daemon
finish
