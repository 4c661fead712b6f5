#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-cli-events: iomemctl watch and publish against the real iomemd: event lines (text and --json), versions, errors.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# wait_watching FILE: until the watcher says its watch is in place (stderr line), bounded
wait_watching() {
        for _ in $(seq 1 1000); do
                grep -q "^iomemctl: watching" "$1" 2>/dev/null && return 0
                sleep 0.01
        done
        fail "the watcher never started"
}

expect_err "watch: bad count" 2 "watch: bad count 'x'" "$IOMEMCTL" watch --count x
expect_err "publish: missing name" 2 "publish: missing NAME \(publish NAME \[FILE\]\)" "$IOMEMCTL" publish
expect_err "publish: bad expect" 2 "publish: bad generation '-1'" "$IOMEMCTL" publish n --expect -1

start_daemon

# --- watch: every kind of change, one line each, in order
ctl watch ev/ --count 9 >"$TMP/watch.txt" 2>"$TMP/watch.err" &
W=$!
ctl --json watch ev/ --count 9 >"$TMP/watch.json" 2>"$TMP/watch-json.err" &
WJ=$!
wait_watching "$TMP/watch.err"
wait_watching "$TMP/watch-json.err"

expect_ok "create" ctl create ev/a 4K --mode 0640 --resizable
expect_ok "create outside the prefix" ctl create other 4K
expect_ok "resize" ctl resize ev/a 8K
expect_ok "seal" ctl seal ev/a grow
expect_ok "chmod" ctl chmod ev/a 0600
expect_ok "chown" ctl chown ev/a ":$(id -g)"
printf 'first version' >"$TMP/v1"
gen1=$(ctl publish ev/a "$TMP/v1")
gen2=$(printf 'second' | ctl publish ev/a)
[ "$gen2" -gt "$gen1" ] || fail "generations $gen1 then $gen2"
expect_ok "rm" ctl rm ev/a
printf 'fresh' | ctl publish ev/b --mode 0644 >/dev/null
wait "$W" || fail "watch exited with $?"
wait "$WJ" || fail "watch --json exited with $?"

cut -d' ' -f1,2 "$TMP/watch.txt" >"$TMP/kinds"
cat >"$TMP/want" <<EOW
created ev/a
resized ev/a
sealed ev/a
chmod ev/a
chown ev/a
published ev/a
published ev/a
deleted ev/a
created ev/b
EOW
diff -u "$TMP/want" "$TMP/kinds" || fail "watch: kinds and names"
grep -q "^created ev/a id=[0-9]* generation=[0-9]* size=4096 seals=0x20 mode=0640 owner=" "$TMP/watch.txt" ||
        grep -q "^created ev/a id=[0-9]* generation=[0-9]* size=4096 seals=- mode=0640 owner=" "$TMP/watch.txt" ||
        fail "watch: created line: $(head -1 "$TMP/watch.txt")"
grep -q "^resized ev/a .* size=8192 " "$TMP/watch.txt" || fail "watch: resized line"
grep -q "^published ev/a id=$gen1 generation=$gen1 size=13 seals=shrink,grow,write" "$TMP/watch.txt" ||
        fail "watch: first published line"
grep -q "^published ev/a id=$gen2 generation=$gen2 size=6 .* replaced=$gen1\$" "$TMP/watch.txt" ||
        fail "watch: second published line"
grep -q "^created ev/b .* mode=0644 " "$TMP/watch.txt" || fail "watch: publish of a free name is created"
# --json: one object per line, the same events
"$PYTHON3" - "$TMP/watch.json" "$gen1" "$gen2" <<'EOP' || fail "watch --json"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
kinds = [(e["event"], e["name"]) for e in lines]
assert kinds == [("created", "ev/a"), ("resized", "ev/a"), ("sealed", "ev/a"), ("chmod", "ev/a"), ("chown", "ev/a"),
                 ("published", "ev/a"), ("published", "ev/a"), ("deleted", "ev/a"), ("created", "ev/b")], kinds
pub = lines[6]
assert pub["generation"] == int(sys.argv[3]) and pub["replaced_id"] == int(sys.argv[2]), pub
assert "write" in pub["seals"] and pub["size"] == 6, pub
assert lines[3]["mode"] == "0600" and lines[0]["mode"] == "0640", lines
EOP

# --- publish: the bytes, immutable, versions and errors
[ "$(ctl read ev/b)" = "fresh" ] || fail "publish: bytes"
gen=$(ctl --json stat ev/b | "$PYTHON3" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
# the daemon's words: which generation is current, and what to do (was the generic "stale: ... or the fd ...")
expect_err "publish: not the expected version" 1 "publish ev/b: the current version is generation $gen, not the 1 \
expected: another was published first; read it, then publish against $gen$" ctl publish ev/b "$TMP/v1" --expect 1
[ "$(ctl --json publish ev/b "$TMP/v1" --expect "$gen")" = "{\"generation\":$((gen + 1))}" ] ||
        fail "publish --expect with the current generation"
[ "$(ctl read ev/b)" = "first version" ] || fail "publish: new bytes"
expect_err "publish: sealed against writes" 1 "write ev/b: " ctl write ev/b "$TMP/v1"
expect_err "publish: missing file" 1 "publish ev/c: open $TMP/nope: " ctl publish ev/c "$TMP/nope"

# --- watch --timeout ends when nothing happens
expect_ok "watch --timeout" ctl watch nothing/ --timeout 0.2

# --- publish streams its input into the memfd: a daemon with a 1M max-region-size refuses more at once, nothing is
# published, and iomemctl's peak memory stays small whatever the input's size (a size bound against a baseline
# measured here, not a time)
# peak_kb FILE: the peak resident size (KiB) /usr/bin/time wrote to FILE
peak_kb() { tail -n 1 "$1"; }
/usr/bin/time -f %M -o "$TMP/base.kb" "$IOMEMCTL" --socket "$SOCK" ping >/dev/null
base=$(peak_kb "$TMP/base.kb")
# an input that is published (within the default 64G limit) is not held in iomemctl's memory either: only the memfd,
# whose pages are not mapped here, holds it (a copy held up to the limit would pass the refused cases below)
head -c 32M /dev/urandom >"$TMP/32m"
cat "$TMP/32m" | /usr/bin/time -f %M -o "$TMP/32m.kb" "$IOMEMCTL" --socket "$SOCK" publish ev/32m >/dev/null ||
        fail "publish: 32M through a pipe"
[ "$(peak_kb "$TMP/32m.kb")" -le $((base + 16384)) ] ||
        fail "publish: peak memory $(peak_kb "$TMP/32m.kb")K for a published 32M input, ping's is ${base}K"
ctl read ev/32m | cmp -s - "$TMP/32m" || fail "publish: the bytes of 32M through a pipe"
rm -f "$TMP/32m"
stop_daemon
start_daemon --max-region-size 1M
LIMIT=$((1 << 20))
printf 'kept' | ctl publish ev/keep >/dev/null
# too_big INPUT: the error of publishing INPUT to ev/keep past the limit
too_big() {
        echo "publish ev/keep: $1 is larger than the daemon's max-region-size \\(1M\\); nothing was published: \
publish less, or raise max-region-size in iomemd.conf\$"
}
# 64M through a pipe: the old code held all of it (peak > 64M) before the daemon refused the size
expect_err "publish: 64M on stdin past a 1M limit" 1 "$(too_big "the input")" \
        bash -c 'head -c 64M /dev/zero | /usr/bin/time -f %M -o "$0/big.kb" "$1" --socket "$2" publish ev/keep' \
        "$TMP" "$IOMEMCTL" "$SOCK"
big=$(peak_kb "$TMP/big.kb")
if [ "$big" -gt $((base + 16384)) ]; then
        fail "publish: peak memory ${big}K for a 64M input, ping's is ${base}K: the input is held in memory"
else
        # endless inputs (only once the bounded one is known to stop: the old code would read 64G of them)
        expect_err "publish: /dev/zero through a pipe" 1 "$(too_big "the input")" \
                bash -c 'cat /dev/zero | /usr/bin/time -f %M -o "$0/pipe.kb" "$1" --socket "$2" publish ev/keep' \
                "$TMP" "$IOMEMCTL" "$SOCK"
        [ "$(peak_kb "$TMP/pipe.kb")" -le $((base + 16384)) ] || fail "publish: peak memory of /dev/zero on a pipe"
        expect_err "publish: /dev/zero as FILE" 1 "$(too_big /dev/zero)" \
                /usr/bin/time -f %M -o "$TMP/dev.kb" "$IOMEMCTL" --socket "$SOCK" publish ev/keep /dev/zero
        [ "$(peak_kb "$TMP/dev.kb")" -le $((base + 16384)) ] || fail "publish: peak memory of /dev/zero as FILE"
fi
head -c $((LIMIT + 1)) /dev/urandom >"$TMP/over"
expect_err "publish: a file one byte past the limit" 1 "$(too_big "$TMP/over")" ctl publish ev/keep "$TMP/over"
[ "$(ctl read ev/keep)" = "kept" ] || fail "publish: a refused input changed the published version"
expect_err "publish: nothing published on a free name" 1 "publish ev/none: $TMP/over is larger" \
        ctl publish ev/none "$TMP/over"
expect_err "publish: the free name stays free" 1 "stat ev/none: " ctl stat ev/none
# what fits still publishes, byte for byte: a file and stdin exactly at the limit, a small file, empty input
head -c "$LIMIT" /dev/urandom >"$TMP/exact"
ctl publish ev/exact "$TMP/exact" >/dev/null || fail "publish: a file exactly at the limit"
ctl read ev/exact | cmp -s - "$TMP/exact" || fail "publish: the bytes of a file exactly at the limit"
ctl publish ev/exact <"$TMP/exact" >/dev/null || fail "publish: stdin exactly at the limit"
cat "$TMP/exact" | ctl publish ev/exact >/dev/null || fail "publish: a pipe exactly at the limit"
ctl read ev/exact | cmp -s - "$TMP/exact" || fail "publish: the bytes of a pipe exactly at the limit"
head -c 70000 /dev/urandom >"$TMP/small"
ctl publish ev/small - <"$TMP/small" >/dev/null || fail "publish: a small file on stdin"
ctl read ev/small | cmp -s - "$TMP/small" || fail "publish: the bytes of a small file"
ctl publish ev/empty </dev/null >/dev/null || fail "publish: empty input"
[ "$(ctl stat ev/empty | awk '$1 == "size:" { print $2 }')" = 0 ] || fail "publish: empty input's size"
# how far iomemctl read its stdin: a command after it in one { } <FILE shares the open file, so its offset. A regular
# file already past the limit is refused before any of it is read (fstat), with the error of a longer input
head -c $((2 * LIMIT)) /dev/zero >"$TMP/two"
{
        expect_err "publish: a regular file past the limit" 1 "publish ev/keep: the input is larger than the \
daemon's max-region-size \\(1M\\); nothing was published" ctl publish ev/keep
        awk '$1 == "pos:" { print $2 }' /proc/self/fdinfo/0 >"$TMP/pos"
} <"$TMP/two"
[ "$(cat "$TMP/pos")" = 0 ] || fail "publish: read $(cat "$TMP/pos") bytes of a regular file past the limit"
# what is left of it counts, not its size: 2 * LIMIT bytes with LIMIT + 1 of them read already leave LIMIT - 1
{
        dd of=/dev/null bs=$((LIMIT + 1)) count=1 status=none
        ctl publish ev/rest >/dev/null || fail "publish: the rest of a regular file, within the limit"
} <"$TMP/two"
[ "$(ctl stat ev/rest | awk '$1 == "size:" { print $2 }')" = $((LIMIT - 1)) ] || fail "publish: the rest's size"
# register of a SIZE past the limit reads none of its input: the daemon would refuse it once filled. The error is
# the one register without FILE gets from the daemon (and register with FILE got before it was checked here)
too_big_reg="register ev/reg: size above the daemon's limit: 2M asked, max-region-size is 1M; ask for less, or \
raise max-region-size in iomemd.conf\$"
expect_err "register: SIZE past the limit, no FILE" 1 "$too_big_reg" ctl register ev/reg 2M
{
        expect_err "register: SIZE past the limit" 1 "$too_big_reg" ctl register ev/reg 2M -
        awk '$1 == "pos:" { print $2 }' /proc/self/fdinfo/0 >"$TMP/pos"
} <"$TMP/two"
[ "$(cat "$TMP/pos")" = 0 ] || fail "register: read $(cat "$TMP/pos") bytes of input for a SIZE past the limit"
# register stops at its SIZE, however long the input
expect_err "register: endless input" 1 "register ev/reg: /dev/zero holds more than the 4096 bytes asked" \
        ctl register ev/reg 4K /dev/zero

# a file-size limit (ulimit -f, SIGXFSZ ignored) makes pwrite(2) into the memfd fail with EFBIG: that is said as
# itself, not as the daemon's max-region-size, which the 200K input is well within
head -c 200K /dev/urandom >"$TMP/200k"
expect_err "publish: past ulimit -f" 1 "publish ev/fsize: copy $TMP/200k into a memfd: File too large$" \
        bash -c 'ulimit -f 100; trap "" XFSZ; exec "$0" --socket "$1" publish ev/fsize "$2"' "$IOMEMCTL" "$SOCK" "$TMP/200k"
# a non-blocking stdin (O_NONBLOCK is on the open pipe, kept across exec): an empty pipe whose writer is still there
# is not the end. nonblocking_stdin WHAT ARGS...: run iomemctl ARGS with such a pipe, write 'abc', wait (no clock)
# until iomemctl has read it and either exited or sleeps in poll(2), and only then close the pipe; without the wait
# iomemctl read EAGAIN and failed.
nonblocking_stdin() {
        local what=$1
        shift
        "$PYTHON3" - "$IOMEMCTL" --socket "$SOCK" "$@" <<'PY' >"$TMP/nb.out" 2>&1 || fail "$what: $(cat "$TMP/nb.out")"
import array, fcntl, os, subprocess, sys, termios, time
r, w = os.pipe()
fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_NONBLOCK)
p = subprocess.Popen(sys.argv[1:], stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
os.close(r)
os.write(w, b"abc")
end = time.monotonic() + 120  # a hang detector only
while p.poll() is None and time.monotonic() < end:
    left = array.array("i", [0])
    fcntl.ioctl(w, termios.FIONREAD, left)
    try:
        wchan = open("/proc/%d/wchan" % p.pid).read()
    except OSError:
        wchan = ""
    if left[0] == 0 and "poll" in wchan:
        break
    time.sleep(0.005)
os.close(w)
out, err = p.communicate()
if p.returncode != 0:
    sys.exit("exit %d: %s" % (p.returncode, err.decode().strip()))
PY
}
nonblocking_stdin "publish: a non-blocking stdin" publish ev/nb
[ "$(ctl read ev/nb)" = abc ] || fail "publish: the bytes of a non-blocking stdin"
ctl create ev/nbw 4K || fail "create ev/nbw"
nonblocking_stdin "write: a non-blocking stdin" write ev/nbw
[ "$(ctl read ev/nbw --length 3)" = abc ] || fail "write: the bytes of a non-blocking stdin"

# a uid's quota-bytes below max-region-size bounds publish's input too: a version larger than all the bytes the uid
# may own is never accepted, so more is not read (the daemon's default max-region-size, 64G, would be read first)
stop_daemon
start_daemon --quota-bytes 1M
printf 'kept' | ctl publish ev/keep >/dev/null || fail "publish: under quota-bytes"
too_big_q() {
        echo "publish ev/keep: $1 is larger than your quota-bytes \\(1M\\); nothing was published: publish less, or \
raise quota-bytes in iomemd.conf\$"
}
{
        expect_err "publish: 2M past a 1M quota-bytes" 1 "$(too_big_q "the input")" ctl publish ev/keep
        awk '$1 == "pos:" { print $2 }' /proc/self/fdinfo/0 >"$TMP/pos"
} <"$TMP/two"
if [ "$(cat "$TMP/pos")" = 0 ]; then # a regular file: none of it read
        # endless input, only once the bounded case stops
        expect_err "publish: /dev/zero past a 1M quota-bytes" 1 "$(too_big_q /dev/zero)" ctl publish ev/keep /dev/zero
else
        fail "publish: read $(cat "$TMP/pos") bytes of a regular file past a 1M quota-bytes"
fi
[ "$(ctl read ev/keep)" = kept ] || fail "publish: a refused input changed the version (quota-bytes)"
# what the quota leaves (the 4 bytes of ev/keep are owned: the daemon counts them) still publishes
head -c $((LIMIT - 4)) /dev/urandom >"$TMP/room"
ctl publish ev/room <"$TMP/room" >/dev/null || fail "publish: a file filling quota-bytes"
ctl read ev/room | cmp -s - "$TMP/room" || fail "publish: the bytes of a file filling quota-bytes"

finish
