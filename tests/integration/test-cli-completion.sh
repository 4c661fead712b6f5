#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-cli-completion: cli/iomemctl.bash in a plain bash: every command of `iomemctl --help` is offered, each
# command's options, seal and backend names, and region names asked of a real iomemd (names with ':' too).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# shellcheck source=../../cli/iomemctl.bash
. "$(dirname "$0")/../../cli/iomemctl.bash"

# comp LINE: what completing at the end of LINE offers, sorted, one per line. COMP_WORDS is split as bash splits
# it with the default COMP_WORDBREAKS (':' and '=' are words of their own; a line ending in one ends with it, not
# with an empty word: bash 5.2 gives "iomemctl --socket=" as iomemctl, --socket, =). _iomemctl runs with the IFS
# $COMP_IFS (a user's) if set
comp() {
        local line="$1" w IFS=$' \t\n'
        COMP_LINE=$line
        COMP_POINT=${#line}
        COMP_WORDBREAKS=$' \t\n"\'><=;|&(:'
        COMP_WORDS=()
        for w in $(sed 's/\([:=]\)/ \1 /g' <<<"$line"); do
                COMP_WORDS+=("$w")
        done
        [[ $line == *[[:space:]] ]] && COMP_WORDS+=("")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        COMPREPLY=()
        IFS=${COMP_IFS-$IFS} _iomemctl
        printf '%s\n' "${COMPREPLY[@]}" | sort | grep . || true
}

# expect_comp WHAT LINE WORD...: completing LINE offers exactly WORDs
expect_comp() {
        local what=$1 line=$2 got want
        shift 2
        got=$(comp "$line")
        want=$(printf '%s\n' "$@" | sort | grep . || true)
        [ "$got" = "$want" ] || fail "$what: completing '$line' offered [$(echo $got)], expected [$(echo $want)]"
}

# expect_has WHAT LINE WORD...: completing LINE offers at least WORDs
expect_has() {
        local what=$1 line=$2 got w
        shift 2
        got=$(comp "$line")
        for w in "$@"; do
                grep -qxF -- "$w" <<<"$got" || fail "$what: completing '$line' did not offer $w (offered: $(echo $got))"
        done
}

C=$IOMEMCTL
# a loaded machine may take long to answer: only the check of a daemon that never answers sets it short
export IOMEM_COMPLETION_TIMEOUT=120

# every command the help lists, and only those
cmds=$("$C" --help | sed -n 's/^  \([a-z][a-z-]*\)\( .*\)\{0,1\}$/\1/p')
[ "$(wc -l <<<"$cmds")" -ge 19 ] || fail "the help lists only $(wc -l <<<"$cmds") commands: its format changed?"
# shellcheck disable=SC2086
expect_comp "commands" "$C " $cmds
expect_comp "one command" "$C cr" create
expect_comp "two commands" "$C re" read register resize
expect_comp "global options" "$C --j" --json
expect_comp "after --socket" "$C --socket /nonexistent st" stat status
expect_comp "after --socket=PATH" "$C --socket=/nonexistent st" stat status
COMP_IFS=, expect_comp "a user's IFS" "$C re" read register resize

# each command's options, from its lines of the help
expect_comp "create's options" "$C create x 4K --" --backend --exclusive --huge --json --lease --mode --reserve \
        --resizable --seal
expect_comp "read's options" "$C read x --" --json --length --offset
expect_comp "publish's options" "$C publish x --e" --expect
expect_comp "backends" "$C create x 4K --backend " auto file memfd shm
expect_comp "backends after --backend=" "$C create x 4K --backend=" auto file memfd shm
expect_comp "backends after --backend=m" "$C create x 4K --backend=m" memfd
expect_comp "seal names" "$C seal x " future-write grow seal shrink write
expect_comp "seal names, second" "$C seal x grow w" write
expect_comp "--seal names" "$C register x 4K --seal sh" shrink
expect_comp "an option's value is not completed" "$C create x 4K --mode " 
expect_comp "metrics formats" "$C metrics " openmetrics prometheus
expect_has "write's FILE" "$C write x /etc/host" /etc/hostname
mkdir "$TMP/d i r" && : >"$TMP/d i r/a file"
expect_comp "a FILE with blanks is one word" "$C write x $TMP/d" "$TMP/d i r"
expect_has "exec's COMMAND" "$C exec x -- bas" bash
expect_has "write's FILE after an option's value" "$C write x --offset 4 /etc/host" /etc/hostname
expect_has "register's FILE" "$C register x 4K /etc/host" /etc/hostname
expect_has "publish's FILE" "$C publish x --mode 0600 /etc/host" /etc/hostname
# bash is told they are file names (quoted, '/' after a directory): compopt, seen through a function of its name
compopt() { echo "$*" >>"$TMP/compopt"; }
comp "$C write x $TMP/d" >/dev/null
unset -f compopt
grep -qx -- '-o filenames' "$TMP/compopt" || fail "a FILE is not completed as a file name (compopt: $(cat "$TMP/compopt" 2>/dev/null))"
expect_has "exec COMMAND's argument" "$C exec x -- cat /etc/host" /etc/hostname

# region names, asked of a real daemon on the --socket given on the line
start_daemon
ctl create demo 4K >/dev/null
ctl create demo2 4K >/dev/null
ctl create other 4K >/dev/null
ctl create ns:one 4K >/dev/null
ctl create ns:two 4K >/dev/null
expect_comp "names" "$C --socket $SOCK stat de" demo demo2
expect_comp "names, --json after the command" "$C --socket $SOCK rm --json o" other
expect_comp "names, every one" "$C --socket $SOCK read " demo demo2 ns:one ns:two other
# with ':' a word break, bash replaces only what follows the last ':'
expect_comp "names with ':'" "$C --socket $SOCK stat ns:o" one
expect_comp "names with ':' at the ':'" "$C --socket $SOCK stat ns:" one two
# '=' breaks words too: "--socket=PATH" is the socket, a name with '=' completes after it
ctl create k=v 4K >/dev/null
expect_comp "names, --socket=PATH" "$C --socket=$SOCK stat de" demo demo2
expect_comp "names with '=' at the '='" "$C --socket $SOCK stat k=" v
expect_comp "the socket after --socket=" "$C --socket=$TMP/soc" "$TMP/sock"
expect_comp "resize's SIZE is not a name" "$C --socket $SOCK resize demo " 
expect_comp "names after a name with ':'" "$C --socket $SOCK seal ns:one " future-write grow seal shrink write
# no daemon there: nothing offered, nothing printed, no error
expect_comp "no daemon" "$C --socket $TMP/none stat de"
out=$(comp "$C --socket $TMP/none stat de" 2>&1)
[ -z "$out" ] || fail "completing against no daemon printed: $out"

# a daemon that accepts and never answers: completing gives up (after $IOMEM_COMPLETION_TIMEOUT s) and offers
# nothing; the outer timeout only detects a hang
"$PYTHON3" "$IOMEM_FAKE_DAEMON" mute "$TMP/mute.sock" "$TMP/mute.ready" &
MUTE_PID=$!
while [ ! -e "$TMP/mute.ready" ]; do sleep 0.01; done
# shellcheck disable=SC2046
export -f comp $(compgen -A function _iomemctl)
out=$(C=$C TMP=$TMP IOMEM_COMPLETION_TIMEOUT=1 timeout 120 bash -c 'comp "$C --socket $TMP/mute.sock stat de"' 2>&1) ||
        fail "completing against a daemon that never answers hung (status $?): $out"
[ -z "$out" ] || fail "completing against a daemon that never answers offered or printed: $out"
kill "$MUTE_PID"
wait "$MUTE_PID" 2>/dev/null || true

# a user's `set -euo pipefail` (errexit ends an interactive shell too): completing must not fail a command
for line in "$C --socket $TMP/none stat de" "$C --socket $TMP/none seal x " "$C --socket $TMP/none read x --"; do
        out=$(C=$C TMP=$TMP line=$line timeout 120 bash -c 'set -euo pipefail; comp "$line" >/dev/null; echo alive' 2>&1) || true
        [ "$out" = alive ] || fail "completing '$line' under set -euo pipefail ended the shell: $out"
done

# nothing of the user's shell changes but COMPREPLY and the help's cache
out=$(C=$C TMP=$TMP timeout 120 bash -c 'before=$(compgen -v | sort)
        for line in "$C --socket $TMP/none stat de" "$C --socket=$TMP/none create x --backend=" "$C exec x -- ls /"; do
                comp "$line" >/dev/null
        done
        comm -13 <(echo "$before") <(compgen -v | sort)' 2>&1 | grep -v '^COMP_\|^COMPREPLY$\|^before$\|^line$\|^PIPESTATUS$\|^_iomemctl_help_') || true
[ -z "$out" ] || fail "completing set the shell's variables: $(echo $out)"

# names are never expanded (compgen -W would run a $(...) that a hostile daemon sent as a name), and only names
# a daemon can have are offered: not these, nor one with a blank, nor one that is a terminal's CSI (\xc2\x9b)
cat >"$TMP/fakectl" <<FAKE
#!/bin/bash
case "\$*" in
*list*) printf '%s\t4096\n' 'a\$(>$TMP/ran1)' 'a\`>$TMP/ran2\`' 'a*' 'a\$HOME' 'a b' \$'a\xc2\x9b2J' 'a.ok' ;;
*) exec "$C" "\$@" ;;
esac
FAKE
chmod +x "$TMP/fakectl"
cd "$TMP"
expect_comp "names are not expanded, only valid ones offered" "$TMP/fakectl stat a" a.ok
# at most the first 1,000 names
printf '#!/bin/bash\nfor i in $(seq 1500); do printf "n%%04d\\t4096\\n" $i; done\n' >"$TMP/manyctl"
chmod +x "$TMP/manyctl"
n=$(comp "$TMP/manyctl stat n" | wc -l)
[ "$n" -eq 1000 ] || fail "a list of 1500 names offered $n, expected the first 1000"
cd - >/dev/null
[ ! -e "$TMP/ran1" ] && [ ! -e "$TMP/ran2" ] || fail "completing ran a command that came as a region name"

[ "$FAILURES" -eq 0 ] || exit 1
echo "test-cli-completion: ok"
