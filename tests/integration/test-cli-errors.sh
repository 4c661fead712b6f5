#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-cli-errors: every error path of iomemctl, with the exact line it prints (one line, the cause and what to do,
# limits with their values, no phrase twice). Paths that need other uids run when the test runs as root.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

FAKE="$PYTHON3 $(dirname "$0")/fake-daemon.py"
FAKE_PID=
as() { # as UID GID CMD...; iomemctl as OTHER_IOMEMCTL (stage_iomemctl in lib.sh: the build may be under /root)
        local uid=$1 gid=$2
        shift 2
        [ "$1" != "$IOMEMCTL" ] || set -- "$OTHER_IOMEMCTL" "${@:2}"
        setpriv --reuid "$uid" --regid "$gid" --clear-groups "$@"
}
root=false
[ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && root=true
! $root || stage_iomemctl

# fake MODE PATH: a misbehaving peer on PATH (tests/integration/fake-daemon.py)
fake() {
        rm -f "$TMP/fake-ready"
        $FAKE "$1" "$2" "$TMP/fake-ready" &
        FAKE_PID=$!
        for _ in $(seq 1 500); do [ -e "$TMP/fake-ready" ] && return 0; sleep 0.01; done
        echo "fake daemon did not start" >&2
        exit 1
}
fake_stop() { # fake_stop [SOCKET]: stop the fake daemon, then remove its socket if one is named
        [ -n "${FAKE_PID:-}" ] && { kill "$FAKE_PID" 2>/dev/null || true; wait "$FAKE_PID" 2>/dev/null || true; }
        FAKE_PID=
        [ $# -eq 0 ] || rm -f "$1"
}
trap 'fake_stop; cleanup' EXIT

# ---- usage errors (exit 2), one per check in the argument parsers
expect_err "bad global option" 2 "bad option '--frob' \(see iomemctl --help\)$" "$IOMEMCTL" --frob ping
expect_err "no command" 2 "no command given \(see iomemctl --help\)$" "$IOMEMCTL"
expect_err "unknown command" 2 "unknown command 'frob' \(see iomemctl --help\)$" "$IOMEMCTL" frob
expect_err "unexpected argument" 2 "stat: unexpected argument 'b' \(see iomemctl --help\)$" "$IOMEMCTL" stat a b
expect_err "bad command option" 2 "stat: bad option '--frob' \(see iomemctl --help\)$" "$IOMEMCTL" stat a --frob
expect_err "option does not apply" 2 "read: option '--lease' does not apply \(see iomemctl --help\)$" \
        "$IOMEMCTL" read a --lease
expect_err "missing argument" 2 "resize: missing SIZE \(resize NAME SIZE\) \(see iomemctl --help\)$" \
        "$IOMEMCTL" resize a
expect_err "missing first argument" 2 "create: missing NAME \(create NAME SIZE\) \(see iomemctl --help\)$" \
        "$IOMEMCTL" create
expect_err "missing seal" 2 "seal: missing SEAL\.\.\. \(seal NAME SEAL\.\.\.\) \(see iomemctl --help\)$" \
        "$IOMEMCTL" seal a
# an option without its value, or with one it does not take, is said so (not "bad option")
expect_err "global option without value" 2 "option '--socket' needs a value \(see iomemctl --help\)$" \
        "$IOMEMCTL" --socket
expect_err "command option without value" 2 "stat: option '--socket' needs a value \(see iomemctl --help\)$" \
        "$IOMEMCTL" stat a --socket
expect_err "--help with a value" 2 "option '--help' takes no value \(see iomemctl --help\)$" "$IOMEMCTL" --help=1
expect_err "--version with a value" 2 "option '--version' takes no value \(see iomemctl --help\)$" \
        "$IOMEMCTL" --version=x
expect_err "option with a value it does not take" 2 "stat: option '--json' takes no value \(see iomemctl --help\)$" \
        "$IOMEMCTL" stat a --json=1
# the element at fault is named, also in a cluster of letters or after a positional argument
expect_err "bad short options" 2 "stat: bad option '-xy' \(see iomemctl --help\)$" "$IOMEMCTL" stat a -xy
expect_err "bad global short options" 2 "bad option '-xy' \(see iomemctl --help\)$" "$IOMEMCTL" -xy ping
expect_err "negative size" 2 "create: bad option '-12' \(numbers cannot be negative; a NAME that starts with '-' goes \
after '--'\) \(see iomemctl --help\)$" "$IOMEMCTL" create a -12
expect_err "one positional too many after --" 2 "stat: unexpected argument '-b' \(see iomemctl --help\)$" \
        "$IOMEMCTL" stat -- -a -b
expect_err "bad --mode" 2 "create: bad mode '8' \(octal, at most 0777\) \(see iomemctl --help\)$" \
        "$IOMEMCTL" create a 4K --mode 8
expect_err "bad --backend" 2 "create: unknown backend 'tape' \(memfd, shm, file, auto\) \(see iomemctl --help\)$" \
        "$IOMEMCTL" create a 4K --backend tape
expect_err "bad --seal" 2 "create: bad seal list 'glue' \(comma-separated: seal, shrink, grow, write, \
future-write\) \(see iomemctl --help\)$" "$IOMEMCTL" create a 4K --seal glue
expect_err "bad --offset" 2 "read: bad offset '1Q' \(bytes, with an optional K, M, G or T suffix: 4096, 64K, 1G\) \
\(see iomemctl --help\)$" "$IOMEMCTL" read a --offset 1Q
expect_err "bad --length" 2 "read: bad length '-1' \(bytes, with an optional K, M, G or T suffix: 4096, 64K, 1G\) \
\(see iomemctl --help\)$" "$IOMEMCTL" read a --length=-1
expect_err "bad --timeout" 2 "wait: bad timeout 'soon' \(seconds\) \(see iomemctl --help\)$" \
        "$IOMEMCTL" wait a --timeout soon
expect_err "create bad size" 2 "create: bad size '4X' \(bytes, with an optional K, M, G or T suffix: 4096, 64K, 1G\) \
\(see iomemctl --help\)$" "$IOMEMCTL" create a 4X
expect_err "create size too large" 2 "create: bad size '99999999T': too large \(at most 16E - 1 bytes\) \
\(see iomemctl --help\)$" "$IOMEMCTL" create a 99999999T
expect_err "resize bad size" 2 "resize: bad size ' 4K' \(bytes, with an optional K, M, G or T suffix: 4096, 64K, \
1G\) \(see iomemctl --help\)$" "$IOMEMCTL" resize a ' 4K'
expect_err "register bad size" 2 "register: bad size '\+4K' \(bytes, with an optional K, M, G or T suffix: 4096, \
64K, 1G\) \(see iomemctl --help\)$" "$IOMEMCTL" register a +4K
# an argument longer than the 8192-byte buffer ctl_vline() formats into: the line still ends as it should
long_size=$(printf 'x%.0s' $(seq 9000))
expect_err "bad size longer than 8K" 2 "create: bad size '${long_size}' \(bytes, with an optional K, M, G or T suffix: \
4096, 64K, 1G\) \(see iomemctl --help\)$" "$IOMEMCTL" create a "$long_size"
expect_err "seal bad name" 2 \
        "seal: bad seal 'glue' \(seal, shrink, grow, write, future-write\) \(see iomemctl --help\)$" \
        "$IOMEMCTL" seal a glue
expect_err "exec without --" 2 "exec: expected NAME \[--read-only\] -- COMMAND \[ARG...\] \(see iomemctl --help\)$" \
        "$IOMEMCTL" exec a true
# exec's first "--" starts COMMAND: a NAME missing before it is said with exec's whole synopsis
expect_err "exec without NAME" 2 "exec: missing NAME \(exec NAME \[--read-only\] -- COMMAND \[ARG\.\.\.\]\) \(see \
iomemctl --help\)$" "$IOMEMCTL" exec -- -x -- true
expect_err "chmod bad mode" 2 "chmod: bad mode '999' \(octal, at most 0777\) \(see iomemctl --help\)$" \
        "$IOMEMCTL" chmod a 999
expect_err "chown bad owner" 2 "chown: bad owner 'root' \(UID, UID:GID or :GID, numeric\) \(see iomemctl --help\)$" \
        "$IOMEMCTL" chown a root

# ---- connecting: the path, where it came from, the cause and the remedy
expect_err "no socket (--socket)" 1 "connect to $SOCK \(--socket\): no such socket, so no daemon is running there: \
start iomemd on it \(\`iomemd --socket PATH\`\) or point --socket or \\\$IOMEM_SOCKET at the running one$" ctl ping
expect_err "no socket (\$IOMEM_SOCKET)" 1 "connect to $SOCK \(\\\$IOMEM_SOCKET\): no such socket" \
        env IOMEM_SOCKET="$SOCK" "$IOMEMCTL" ping
if [ ! -e /run/iomemd/iomemd.sock ]; then
        expect_err "no system service" 1 "connect to /run/iomemd/iomemd.sock \(the system service's socket\): no such \
socket, so no daemon is running there: start it with \`systemctl start iomemd.socket\` \(as root\)$" \
                env -u IOMEM_SOCKET -u XDG_RUNTIME_DIR "$IOMEMCTL" ping
fi
# a per-user daemon that exited and left its socket behind
mkdir -p "$TMP/xdg"
"$PYTHON3" -c "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])" "$TMP/xdg/iomemd.sock"
expect_err "per-user socket, nobody listening" 1 "connect to $TMP/xdg/iomemd.sock \(the per-user daemon's socket\): \
nothing listens on the socket \(the daemon exited\): start it with \`systemctl --user start iomemd.socket\`$" \
        env -u IOMEM_SOCKET XDG_RUNTIME_DIR="$TMP/xdg" "$IOMEMCTL" ping
expect_err "not a socket" 1 "connect to /etc/passwd \(--socket\): this is a regular file, not a socket: point \
--socket or \\\$IOMEM_SOCKET at the socket the daemon listens on \(\`iomemd --socket PATH\`\)$" \
        "$IOMEMCTL" --socket /etc/passwd ping
expect_err "a directory" 1 "connect to $TMP \(--socket\): this is a directory, not a socket: point" \
        "$IOMEMCTL" --socket "$TMP" ping
expect_err "empty --socket" 1 "connect \(--socket\): the socket path is empty: give the daemon's socket, such as \
/run/iomemd/iomemd.sock$" "$IOMEMCTL" --socket "" ping
expect_err "other connect error" 1 "connect to /etc/passwd/x \(--socket\): Not a directory$" \
        "$IOMEMCTL" --socket /etc/passwd/x ping
long=$(printf 'a%.0s' $(seq 1 200))
expect_err "path too long" 1 "connect to $long \(--socket\): the path is too long for a socket \(at most 107 bytes\)$" \
        "$IOMEMCTL" --socket "$long" ping
expect_err "default path too long" 1 \
        "connect: the default socket path is too long \(\\\$IOMEM_SOCKET or \\\$XDG_RUNTIME_DIR\)$" \
        env IOMEM_SOCKET="/$(printf 'a%.0s' $(seq 1 5000))" "$IOMEMCTL" ping
fake version "$TMP/fake.sock"
expect_err "protocol version" 1 "connect to $TMP/fake.sock \(--socket\): the daemon speaks another protocol version \
than iomemctl [0-9.]+: use an iomemctl and libiomem from the daemon's release$" \
        "$IOMEMCTL" --socket "$TMP/fake.sock" ping
fake_stop "$TMP/fake.sock"
fake garbage "$TMP/fake.sock"
expect_err "not iomemd" 1 "connect to $TMP/fake.sock \(--socket\): the peer does not speak the iomemd protocol$" \
        "$IOMEMCTL" --socket "$TMP/fake.sock" ping
fake_stop "$TMP/fake.sock"
fake close "$TMP/fake.sock"
expect_err "closed in handshake" 1 "connect to $TMP/fake.sock \(--socket\): the daemon closed the connection during \
the handshake \(see its log: \`journalctl -u iomemd\`\)$" "$IOMEMCTL" --socket "$TMP/fake.sock" ping
fake_stop "$TMP/fake.sock"
# a daemon's words go to the terminal escaped: its escape sequences, C1 controls and other bytes >= 0x80 as \xHH
fake escape "$TMP/fake.sock"
expect_err "daemon's message with escapes" 1 'ping: \\x1b\]0;pwned\\x07\\x1b\[2J\\x9b31m caf\\xc3\\xa9$' \
        "$IOMEMCTL" --socket "$TMP/fake.sock" ping
LC_ALL=C grep -q $'[\x01-\x1f\x7f\x80-\xff]' "$TMP/err" && fail "daemon's message with escapes: a raw byte went out"
fake_stop "$TMP/fake.sock"

# ---- the daemon goes away with a request in flight (it answers HELLO, then drops every request unanswered)
fake hello "$TMP/fake.sock"
unknown="the connection to the daemon ended after the request was sent: whether it was applied is unknown$"
expect_err "create in flight" 1 "create x: $unknown" "$IOMEMCTL" --socket "$TMP/fake.sock" create x 4K
expect_err "rm in flight" 1 "rm x: $unknown" "$IOMEMCTL" --socket "$TMP/fake.sock" rm x
expect_err "resize in flight" 1 "resize x: $unknown" "$IOMEMCTL" --socket "$TMP/fake.sock" resize x 8K
expect_err "seal in flight" 1 "seal x: $unknown" "$IOMEMCTL" --socket "$TMP/fake.sock" seal x grow
expect_err "chmod in flight" 1 "chmod x: $unknown" "$IOMEMCTL" --socket "$TMP/fake.sock" chmod x 0600
expect_err "chown in flight" 1 "chown x: $unknown" "$IOMEMCTL" --socket "$TMP/fake.sock" chown x :0
expect_err "register in flight" 1 "register x: $unknown" "$IOMEMCTL" --socket "$TMP/fake.sock" register x 4K
# safe requests are repeated on a new connection, a few times, before giving up with the same words
expect_err "ping, dropped every time" 1 "ping: $unknown" "$IOMEMCTL" --socket "$TMP/fake.sock" ping
expect_err "status, dropped every time" 1 "status: $unknown" "$IOMEMCTL" --socket "$TMP/fake.sock" status
expect_err "quota, dropped every time" 1 "quota: $unknown" "$IOMEMCTL" --socket "$TMP/fake.sock" quota
expect_err "stat, dropped every time" 1 "stat x: $unknown" "$IOMEMCTL" --socket "$TMP/fake.sock" stat x
expect_err "list, dropped every time" 1 "list: $unknown" "$IOMEMCTL" --socket "$TMP/fake.sock" list
expect_err "read, dropped every time" 1 "read x: $unknown" "$IOMEMCTL" --socket "$TMP/fake.sock" read x
expect_err "write, dropped every time" 1 "write x: $unknown" "$IOMEMCTL" --socket "$TMP/fake.sock" write x /dev/null
expect_err "exec, dropped every time" 1 "exec x: $unknown" "$IOMEMCTL" --socket "$TMP/fake.sock" exec x -- true
expect_err "wait, dropped every time" 1 "wait x: $unknown" "$IOMEMCTL" --socket "$TMP/fake.sock" wait x --timeout 1
fake_stop "$TMP/fake.sock"
# ... and never comes back (libiomem tries for 15 s)
fake gone "$TMP/fake.sock"
expect_err "daemon gone for good" 1 "ping: the daemon went away and none answered again on $TMP/fake.sock \
\(No such file or directory\)$" "$IOMEMCTL" --socket "$TMP/fake.sock" ping
fake_stop "$TMP/fake.sock"

# ---- requests the daemon refuses
start_daemon --max-region-size 64G
chmod 0755 "$TMP"
ctl create a 8K --mode 0644
ctl create m 8K --backend memfd --seal grow --mode 0666
# a NAME may start with '-' (docs/protocol.md): after '--' iomemctl takes it as one, not as an option
ctl create -- -dash 4K >/dev/null || fail "create -- -dash failed"
[ "$(ctl stat -- -dash | sed -n 's/^name: *//p')" = -dash ] || fail "stat -- -dash: $(ctl stat -- -dash 2>&1)"
ctl rm -- -dash || fail "rm -- -dash failed"
expect_err "create exists" 1 "create a: a region with this name already exists$" ctl create a 8K --exclusive
toobig="size above the daemon's limit: 100T asked, max-region-size is 64G; ask for less, or raise max-region-size \
in iomemd\.conf$"
expect_err "create too big" 1 "create big: $toobig" ctl create big 100T
expect_err "create bad name" 1 "create bad name: invalid region name \(1 to 255 bytes of A-Z a-z 0-9 \. _ - / : @ \+ = , \
not starting with / or \. and without //\)$" ctl create 'bad name' 4K
expect_err "create sealed shm" 1 "create s: only memfd can be sealed$" ctl create s 4K --backend shm --seal grow
expect_err "write open input" 1 "write a: open /nonexistent: No such file or directory$" ctl write a /nonexistent
expect_err "write missing region" 1 "write nope: no region with this name$" ctl write nope /dev/null
expect_err "write offset past end" 1 "write a: offset 9000 is past the end of the region \(8192 bytes\)$" \
        ctl write a --offset 9000 /dev/null
head -c 5000 /dev/zero >"$TMP/blob"
expect_err "write file too big" 1 \
        "write a: 5000 bytes at offset 4096 do not fit in the region \(8192 bytes\); nothing was written$" \
        ctl write a --offset 4K "$TMP/blob"
expect_err "write stdin too big" 1 \
        "write a: the input does not fit in the region \(8192 bytes\) at offset 4096; nothing was written$" \
        bash -c "cat '$TMP/blob' | '$IOMEMCTL' --socket '$SOCK' write a --offset 4K"
expect_err "write unreadable input" 1 "write a: read input: Is a directory$" bash -c "'$IOMEMCTL' --socket '$SOCK' write a < /"
expect_err "read missing region" 1 "read nope: no region with this name$" ctl read nope
expect_err "read offset past end" 1 "read a: offset 8193 is past the end of the region \(8192 bytes\)$" \
        ctl read a --offset 8193
expect_err "read range past end" 1 "read a: offset 8191 \+ length 2 is past the end of the region \(8192 bytes\)$" \
        ctl read a --offset 8191 --length 2
expect_err "read to a full stdout" 1 "read a: write to stdout: No space left on device$" \
        bash -c "'$IOMEMCTL' --socket '$SOCK' read a >/dev/full"
expect_err "status to a full stdout" 1 "write to stdout: No space left on device$" \
        bash -c "'$IOMEMCTL' --socket '$SOCK' status >/dev/full"
expect_err "stat missing" 1 "stat nope: no region with this name$" ctl stat nope
expect_err "list bad prefix" 1 "list: invalid prefix 'a b' \(only A-Z a-z 0-9 \. _ - / : @ \+ = ,\)$" ctl list 'a b'
expect_err "rm missing" 1 "rm nope: no region with this name$" ctl rm nope
expect_err "resize too big" 1 "resize a: $toobig" ctl resize a 100T
expect_err "resize shrink" 1 "resize a: it was not created --resizable, so it cannot shrink$" ctl resize a 4K
# m was made without --resizable (and sealed grow besides): that is the reason to give; ms only has the seal
expect_err "resize grow not resizable" 1 "resize m: it was not created --resizable, so it cannot grow$" ctl resize m 16K
ctl create ms 8K --backend memfd --resizable --seal grow
expect_err "resize sealed" 1 "resize ms: forbidden by the region's seals$" ctl resize ms 16K
ctl create h 4K --backend shm
expect_err "seal shm" 1 "seal h: only memfd can be sealed$" ctl seal h grow
ctl seal m seal
expect_err "seal sealed" 1 "seal m: forbidden by the region's seals$" ctl seal m write
expect_err "wait timeout" 1 "wait later: no region with this name after 0.2 s$" ctl wait later --timeout 0.2
expect_err "exec missing region" 1 "exec nope: no region with this name$" ctl exec nope -- true
expect_err "exec missing program" 127 "exec a: /nonexistent: No such file or directory$" ctl exec a -- /nonexistent
expect_err "exec not a program" 126 "exec a: /etc/passwd: Permission denied$" ctl exec a -- /etc/passwd
expect_err "chmod missing" 1 "chmod nope: no region with this name$" ctl chmod nope 0600
expect_err "chown missing" 1 "chown nope: no region with this name$" ctl chown nope :0
expect_err "register input" 1 "register r: /nonexistent: No such file or directory$" ctl register r 4K /nonexistent
# input longer than SIZE is refused whole, not registered cut to SIZE (it used to be, silently)
head -c 4097 /dev/zero >"$TMP/4097.bin"
expect_err "register input too long" 1 "register r: $TMP/4097\.bin holds more than the 4096 bytes asked; nothing was \
registered: give a SIZE that fits it$" ctl register r 4K "$TMP/4097.bin"
expect_err "register stdin too long" 1 "register r: the input holds more than the 4096 bytes asked; nothing was \
registered: give a SIZE that fits it$" ctl register r 4K - <"$TMP/4097.bin"
expect_err "register too long left no name" 1 "stat r: no region with this name$" ctl stat r
expect_err "register exists" 1 "register a: a region with this name already exists$" ctl register a 4K
# without --exclusive an existing name is opened only at its size; the line said just "already exists"
expect_err "create other size" 1 "create a: a region with this name already exists, of another size: \
\`iomemctl stat a\` shows it$" ctl create a 12K
expect_err "register bad name" 1 "register bad name: invalid region name" ctl register 'bad name' 4K
# a NAME as typed is echoed escaped: an escape sequence, a C1 control or UTF-8 in it cannot act on the terminal
expect_err "name with escapes" 1 'stat a\\x1b\]0;x\\x07\\x9bb\\xc3\\xa9: invalid region name \(' \
        ctl stat $'a\e]0;x\a\x9bb\xc3\xa9'
LC_ALL=C grep -q $'[\x01-\x1f\x7f\x80-\xff]' "$TMP/err" && fail "name with escapes: a raw byte went out"
expect_err "watch prefix with escapes" 1 'watch \\x1b\[2J: invalid region name \(' ctl watch $'\e[2J'
stop_daemon

# the file backend's directory missing: the daemon's setting to fix, not "no region with this name" (ENOENT's words)
start_daemon --tmpdir "$TMP/no-such-dir"
expect_err "file backend without its directory" 1 "create f: cannot create the memory object in the file backend's \
directory \(tmpdir in iomemd\.conf\): No such file or directory$" ctl create f 4K --backend file
stop_daemon

start_daemon --max-region-size 1M --quota-regions 1 --quota-bytes 64K --quota-connections 2
chmod 0755 "$TMP"
expect_err "register too big" 1 "register r: size above the daemon's limit: 2M asked, max-region-size is 1M; ask for \
less, or raise max-region-size in iomemd\.conf$" ctl register r 2M
expect_err "create too big, small limit" 1 "create r: size above the daemon's limit: 1000000000 asked, \
max-region-size is 1M; ask for less, or raise max-region-size in iomemd\.conf$" ctl create r 1000000000
ctl create q1 4K
expect_err "region quota" 1 "create q2: region quota is reached: uid $(id -u) owns 1, quota-regions is 1; delete \
regions, or raise quota-regions in iomemd\.conf$" ctl create q2 4K
expect_err "byte quota" 1 "create q2: byte quota is reached: uid $(id -u) owns 4K in regions, 64K more are asked, \
quota-bytes is 64K; delete or shrink regions, or raise quota-bytes in iomemd\.conf$" ctl create q2 64K
if $root; then
        # the uid's own connection quota: two held, the third refused at accept
        # setpriv itself in the background (not the as function, whose subshell $! would name): kill reaches them
        setpriv --reuid 4242 --regid 4242 --clear-groups "$OTHER_IOMEMCTL" --socket "$SOCK" wait never1 --timeout 30 \
                2>/dev/null &
        w1=$!
        setpriv --reuid 4242 --regid 4242 --clear-groups "$OTHER_IOMEMCTL" --socket "$SOCK" wait never2 --timeout 30 \
                2>/dev/null &
        w2=$!
        for _ in $(seq 1 500); do
                [ "$(ctl --json status | "$PYTHON3" -c 'import json,sys; print(json.load(sys.stdin)["connections"])')" \
                        -ge 3 ] && break
                sleep 0.01
        done
        expect_err "connection quota" 1 "connect to $SOCK \(--socket\): uid 4242 is at its connection quota \
\(quota-connections in /etc/iomemd/iomemd.conf\): close other connections$" as 4242 4242 "$IOMEMCTL" --socket "$SOCK" ping
        kill "$w1" "$w2" 2>/dev/null || true
        wait "$w1" "$w2" 2>/dev/null || true
        for _ in $(seq 1 500); do
                [ "$(ctl --json status | "$PYTHON3" -c 'import json,sys; print(json.load(sys.stdin)["connections"])')" \
                        -eq 1 ] && break
                sleep 0.01
        done
        # refusals by the region's owner
        expect_err "chmod not owner" 1 "chmod q1: only the owner may change the mode$" \
                as 4242 4242 "$IOMEMCTL" --socket "$SOCK" chmod q1 0666
        expect_err "chown not root" 1 "chown q1: " as 4242 4242 "$IOMEMCTL" --socket "$SOCK" chown q1 4242
        expect_err "open without permission" 1 "read q1: permission denied by the region's mode or owner \
\(you are uid 4242\)$" bash -c "'$IOMEMCTL' --socket '$SOCK' chmod q1 0600 && exec setpriv --reuid 4242 --regid 4242 \
--clear-groups '$OTHER_IOMEMCTL' --socket '$SOCK' read q1"
fi
stop_daemon

if $root; then
        # the socket's directory refuses the uid
        start_daemon
        chmod 0700 "$TMP"
        expect_err "socket permission" 1 "connect to $SOCK \(--socket\): permission denied on the socket or its \
directory for uid 4242: ask the socket's owner for access, or run your own daemon \
\(\`systemctl --user start iomemd.socket\`\)$" as 4242 4242 "$IOMEMCTL" --socket "$SOCK" ping
        stop_daemon
        # the daemon's allow-list refuses the uid
        start_daemon --allow-uids 0
        chmod 0755 "$TMP"
        expect_err "allow-list" 1 "connect to $SOCK \(--socket\): the daemon's allow-list refuses uid 4242 \
\(allow-uids and allow-gids in /etc/iomemd/iomemd.conf\)$" as 4242 4242 "$IOMEMCTL" --socket "$SOCK" ping
        stop_daemon
else
        echo "not root: the other-uid cases were not run"
fi

finish
