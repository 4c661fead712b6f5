# SPDX-License-Identifier: LGPL-2.1-or-later
# bash completion for iomemctl: commands, each command's options, seal and backend names, and region names
# asked of the daemon (`iomemctl list PREFIX`, on the --socket given on the line if any). The commands and
# options are read from `iomemctl --help` of the iomemctl being completed, so they cannot drift from it.
# Installed as /usr/share/bash-completion/completions/iomemctl (loaded on demand by bash-completion); works
# when sourced in a plain bash too: it uses no bash-completion helper.

# _iomemctl_help PROG: _iomemctl_help_text = `PROG --help`, read once per PROG per shell (not in a $(...): the
# cache would be lost with the subshell)
_iomemctl_help() {
        if [[ ${_iomemctl_help_prog-} != "$1" ]]; then
                _iomemctl_help_text=$("$1" --help 2>/dev/null) || true
                _iomemctl_help_prog=$1
        fi
}

# _iomemctl_strip VALUE: take off each COMPREPLY the part of VALUE (a suffix of the caller's $cur) that bash will
# not replace: bash replaces only what follows the last COMP_WORDBREAKS character ('=', ':') before the cursor
_iomemctl_strip() {
        local n=$((keep - (${#cur} - ${#1}))) i
        if ((n > 0)); then
                for i in "${!COMPREPLY[@]}"; do
                        COMPREPLY[i]=${COMPREPLY[i]:n}
                done
        fi
        return 0
}

# _iomemctl_reply WORDS VALUE: COMPREPLY = the WORDS (blank-separated, whatever the user's IFS) starting with
# VALUE. Not `compgen -W`, which expands each word ($(...) included): names come from a daemon
_iomemctl_reply() {
        local IFS=$' \t\n' w
        local -a list
        COMPREPLY=()
        read -r -d '' -a list <<<"$1" || true
        for w in "${list[@]}"; do
                [[ $w == "$2"* ]] && COMPREPLY+=("$w")
        done
        _iomemctl_strip "$2"
}

# _iomemctl_files -f|-c VALUE: COMPREPLY = the files (-f) or commands (-c) starting with VALUE, one word each even
# with blanks in them; bash quotes them as file names
_iomemctl_files() {
        mapfile -t COMPREPLY < <(compgen "$1" -- "$2")
        _iomemctl_strip "$2"
        [[ $1 == -f ]] && compopt -o filenames 2>/dev/null
        return 0
}

# _iomemctl_words: words = the line's words as typed: bash splits "--socket=PATH" and "ns:one" at the
# COMP_WORDBREAKS characters, and the pieces no blank separates are joined again here; cword = the word at the
# cursor, cur = that word up to the cursor, keep = how many of cur's first characters bash will not replace
_iomemctl_words() {
        local k pos=0 start=0 piece blank i
        words=() cword=0 cur='' keep=0
        for ((k = 0; k < ${#COMP_WORDS[@]}; k++)); do
                piece=${COMP_WORDS[k]}
                blank=0
                while [[ ${COMP_LINE:pos:1} == [[:space:]] ]]; do
                        pos=$((pos + 1)) blank=1
                done
                if [[ ${COMP_LINE:pos:${#piece}} != "$piece" ]]; then
                        # not the line as expected: bash's own words
                        words=("${COMP_WORDS[@]}") cword=$COMP_CWORD cur=${COMP_WORDS[COMP_CWORD]-} keep=0
                        return 0
                fi
                if ((k == 0 || blank)); then
                        words+=("$piece")
                        start=$pos
                else
                        words[${#words[@]} - 1]+=$piece
                fi
                if ((k == COMP_CWORD)); then
                        cword=$((${#words[@]} - 1))
                        ((COMP_POINT > start)) && cur=${COMP_LINE:start:COMP_POINT - start}
                        i=$COMP_POINT
                        while ((i > start)) && [[ ${COMP_WORDBREAKS-} != *"${COMP_LINE:i-1:1}"* ]]; do
                                i=$((i - 1))
                        done
                        keep=$((i - start))
                fi
                pos=$((pos + ${#piece}))
        done
        return 0
}

_iomemctl() {
        local prog=${COMP_WORDS[0]} cur prev='' cmd='' ncmdargs=0 cword keep i w
        local -a words sock=()
        _iomemctl_words
        ((cword > 0)) && prev=${words[cword - 1]}

        # the command, the --socket given, and how many arguments the command has before the cursor
        for ((i = 1; i < cword; i++)); do
                w=${words[i]}
                case $w in
                --socket) sock=(--socket "${words[i + 1]}") i=$((i + 1)); continue ;;
                --socket=*) sock=(--socket "${w#--socket=}"); continue ;;
                esac
                if [[ -z $cmd ]]; then
                        [[ $w != -* ]] && cmd=$w
                elif [[ $w == -- && $cmd == exec ]]; then
                        # exec's COMMAND, then its arguments
                        if ((i + 1 == cword)); then
                                _iomemctl_files -c "$cur"
                        else
                                _iomemctl_files -f "$cur"
                        fi
                        return
                elif [[ $w != -* ]]; then
                        case ${words[i - 1]} in
                        --offset | --length | --mode | --backend | --seal | --timeout | --count | --expect) ;;
                        *) ncmdargs=$((ncmdargs + 1)) ;;
                        esac
                fi
        done

        _iomemctl_help "$prog"
        local help=$_iomemctl_help_text
        case $prev in
        --socket) _iomemctl_files -f "$cur"; return ;;
        --backend) _iomemctl_reply "memfd shm file auto" "$cur"; return ;;
        --seal) _iomemctl_reply "seal shrink grow write future-write" "$cur"; return ;;
        --offset | --length | --mode | --timeout | --count | --expect) return ;;
        esac
        case $cur in
        --socket=*) _iomemctl_files -f "${cur#*=}"; return ;;
        --backend=*) _iomemctl_reply "memfd shm file auto" "${cur#*=}"; return ;;
        --seal=*) _iomemctl_reply "seal shrink grow write future-write" "${cur#*=}"; return ;;
        --*=*) return ;;
        esac

        if [[ -z $cmd ]]; then
                local cmds
                cmds=$(sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p; s/^  \([a-z][a-z-]*\)$/\1/p' <<<"$help")
                if [[ $cur == -* ]]; then
                        _iomemctl_reply "--socket --json --help --version" "$cur"
                else
                        _iomemctl_reply "$cmds" "$cur"
                fi
                return
        fi

        if [[ $cur == -* ]]; then
                # the options of $cmd: the --words of its lines in the help, up to the next command's line
                local opts
                opts=$(awk -v c="$cmd" '
                        /^  [a-z]/ { on = ($1 == c) }
                        on && /^  / { for (i = 1; i <= NF; i++) if (match($i, /^\[?--[a-z-]+/)) {
                                w = substr($i, RSTART, RLENGTH); sub(/^\[/, "", w); print w } }' <<<"$help")
                _iomemctl_reply "$opts --json" "$cur"
                return
        fi

        # the first argument of most commands is a region name; seal's later ones are seal names; a FILE is a file
        case $cmd:$ncmdargs in
        seal:[1-9]*) _iomemctl_reply "seal shrink grow write future-write" "$cur" ;;
        write:1 | register:2 | publish:1) _iomemctl_files -f "$cur" ;;
        metrics:0) _iomemctl_reply "openmetrics prometheus" "$cur" ;;
        stat:0 | rm:0 | resize:0 | seal:0 | read:0 | write:0 | exec:0 | chmod:0 | chown:0 | wait:0 | list:0 | \
                watch:0 | publish:0)
                local names
                # a daemon that never answers must not hang the shell: iomemctl waits for a reply for ever
                names=$(timeout --foreground "${IOMEM_COMPLETION_TIMEOUT:-2}" "$prog" "${sock[@]}" list "$cur" \
                        2>/dev/null | head -n 1000 | cut -f1) || true
                # only names a daemon can have (what else came is not from iomemd, and no command would take
                # it): no blank, quote, $, ` or glob character, nothing for the terminal (\x9b is CSI to some)
                local n valid=
                while IFS= read -r n; do
                        [[ -n $n && $n != *[!A-Za-z0-9._/:@+=,-]* ]] && valid+="$n "
                done <<<"$names"
                _iomemctl_reply "$valid" "$cur"
                ;;
        esac
        return 0
}

complete -F _iomemctl iomemctl
