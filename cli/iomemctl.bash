# SPDX-License-Identifier: LGPL-2.1-or-later
# bash completion for iomemctl: commands, each command's options, seal and backend names, and region names
# asked of the daemon (`iomemctl list PREFIX`, on the --socket given on the line if any). The commands and
# options are read from `iomemctl --help` of the iomemctl being completed, so they cannot drift from it.
# Installed as /usr/share/bash-completion/completions/iomemctl (loaded on demand by bash-completion); works
# when sourced in a plain bash too: it uses no bash-completion helper.

# _iomemctl_help PROG: `PROG --help`, read once per PROG per shell
_iomemctl_help() {
        if [[ ${_iomemctl_help_prog-} != "$1" ]]; then
                _iomemctl_help_text=$("$1" --help 2>/dev/null)
                _iomemctl_help_prog=$1
        fi
        printf '%s\n' "$_iomemctl_help_text"
}

# _iomemctl_reply WORDS CUR: COMPREPLY = the WORDS (blank-separated) starting with CUR; with ':' in
# COMP_WORDBREAKS, what bash takes for the word is only the part after the last ':' of CUR, so that part is
# taken off each match. Not `compgen -W`, which expands each word ($(...) included): names come from a daemon
_iomemctl_reply() {
        local cur=$2 w
        local -a words
        COMPREPLY=()
        read -r -d '' -a words <<<"$1" || true
        for w in "${words[@]}"; do
                [[ $w == "$cur"* ]] && COMPREPLY+=("$w")
        done
        if [[ $cur == *:* && $COMP_WORDBREAKS == *:* ]]; then
                local colon=${cur%"${cur##*:}"}
                for w in "${!COMPREPLY[@]}"; do
                        COMPREPLY[w]=${COMPREPLY[w]#"$colon"}
                done
        fi
}

# _iomemctl_files -f|-c CUR: COMPREPLY = the files (-f) or commands (-c) starting with CUR, one word each even
# with blanks in them; bash quotes them as file names
_iomemctl_files() {
        mapfile -t COMPREPLY < <(compgen "$1" -- "$2")
        [[ $1 == -f ]] && compopt -o filenames 2>/dev/null
        return 0
}

_iomemctl() {
        local prog=${COMP_WORDS[0]} cur=${COMP_WORDS[COMP_CWORD]} prev= cmd= ncmdargs=0 first=$COMP_CWORD i w
        local -a sock=()
        # bash splits "a:b" into a, :, b when ':' breaks words: the word being completed is what follows the
        # line's last blank, and starts at the first of its pieces
        if [[ $COMP_WORDBREAKS == *:* ]]; then
                local line=${COMP_LINE:0:COMP_POINT}
                cur=${line##*[[:space:]]}
                while ((first > 1)) && [[ ${COMP_WORDS[first]} == : || ${COMP_WORDS[first - 1]} == : ]]; do
                        ((first--))
                done
        fi
        ((first > 0)) && prev=${COMP_WORDS[first - 1]}

        # the command, the --socket given, and how many arguments the command has before the cursor
        for ((i = 1; i < first; i++)); do
                w=${COMP_WORDS[i]}
                case $w in
                --socket) sock=(--socket "${COMP_WORDS[i + 1]}"); ((i++)); continue ;;
                --socket=*) sock=(--socket "${w#--socket=}"); continue ;;
                esac
                if [[ -z $cmd ]]; then
                        [[ $w != -* ]] && cmd=$w
                elif [[ $w == -- && $cmd == exec ]]; then
                        # exec's COMMAND, then its arguments
                        if ((i + 1 == first)); then
                                _iomemctl_files -c "$cur"
                        else
                                _iomemctl_files -f "$cur"
                        fi
                        return
                elif [[ $w != -* && $w != : && ${COMP_WORDS[i - 1]} != : ]]; then
                        case ${COMP_WORDS[i - 1]} in
                        --offset | --length | --mode | --backend | --seal | --timeout | --count | --expect) ;;
                        *) ((ncmdargs++)) ;;
                        esac
                fi
        done

        local help
        help=$(_iomemctl_help "$prog")
        case $prev in
        --socket) _iomemctl_files -f "$cur"; return ;;
        --backend) _iomemctl_reply "memfd shm file auto" "$cur"; return ;;
        --seal) _iomemctl_reply "seal shrink grow write future-write" "$cur"; return ;;
        --offset | --length | --mode | --timeout | --count | --expect) return ;;
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
                _iomemctl_reply "$names" "$cur"
                ;;
        esac
}

complete -F _iomemctl iomemctl
