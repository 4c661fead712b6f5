#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The manuals: every page (hand-written and generated) passes `mandoc -T lint` without a warning, every .so link
# points at a page that exists, every function that iomem.h declares or libiomem.so exports has its own
# section, with its prototype, in a generated iomem(3) page and a page of its own name (`man iomem_create`), and
# the hand-written pages cover every option of iomemd and every command of iomemctl, and docs/protocol.md every
# opcode, event, flag bit and backend of proto/proto.h (protocol-doc.py).
# Usage: man-test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
man3=$build/docs/man/man3
fail=0
bad() { echo "FAIL: $*"; fail=1; }

command -v mandoc >/dev/null || { echo "FAIL: mandoc is not installed (.ci/install-deps installs it)"; exit 1; }
# the linter must see a warning where there is one, or a clean run proves nothing
printf '.TH X 1 2024 x x\n.SH NAME\nx \\- y\n.SH DESCRIPTION\n.PP\ntext \n' > "${TMPDIR:-/tmp}/man-test-$$.1"
if mandoc -T lint -W warning "${TMPDIR:-/tmp}/man-test-$$.1" >/dev/null 2>&1; then
  rm -f "${TMPDIR:-/tmp}/man-test-$$.1"; bad "mandoc -T lint accepts a page with warnings"; exit 1
fi
rm -f "${TMPDIR:-/tmp}/man-test-$$.1"

[ -s "$man3/iomem.3" ] || { echo "FAIL: $man3/iomem.3 was not generated"; exit 1; }
pages=("$src"/docs/man/*.[1-8])
links=()
for f in "$man3"/*.3; do
  if grep -q '^\.so ' "$f"; then links+=("$f"); else pages+=("$f"); fi
done
for f in "${pages[@]}"; do
  out=$(mandoc -T lint -W warning "$f" 2>&1) || true
  [ -z "$out" ] || bad "$(basename "$f"): $out"
done
for f in "${links[@]}"; do
  target=$(sed -n 's/^\.so man3\///p' "$f")
  [ "$(wc -l < "$f")" = 1 ] && [ -f "$man3/$target" ] && ! grep -q '^\.so ' "$man3/$target" \
    || bad "$(basename "$f"): not one .so line to an existing page"
done

# the functions, read from the header independently of the generator: comments removed, then every
# identifier iomem_* followed by '(' at the start of a declaration
funcs=$(perl -0777 -pe 's{/\*.*?\*/}{}gs' "$src/client/iomem.h" | tr '\n' ' ' | tr ';' '\n' \
        | sed -n 's/^[^(]*[ *]\(iomem_[a-z0-9_]*\) *(.*/\1/p' | sort -u)
[ "$(echo "$funcs" | wc -w)" -ge 20 ] || bad "read only $(echo "$funcs" | wc -w) functions from iomem.h"
lib=$(ls "$build"/client/libiomem.so.0* 2>/dev/null | head -n 1)
if [ -n "$lib" ]; then
  exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" { print $3 }' | sort -u)
  for s in $(comm -13 <(echo "$funcs") <(echo "$exported")); do bad "libiomem exports $s, which iomem.h does not declare"; done
else
  bad "no libiomem.so.0 in $build/client"
fi
for fn in $funcs; do
  [ -f "$man3/$fn.3" ] || bad "no page $fn.3"
  page=$(grep -l "^\.SS $fn()\$" "$man3"/*.3 || true)
  [ -n "$page" ] || { bad "no section for $fn() in a generated page"; continue; }
  # its section shows its prototype, and the page's NAME line lists it
  awk -v fn="$fn" '$0 == ".SS " fn "()" { s = 1; next } s && /^\.S[SH] / { exit } s && index($0, fn "(") { ok = 1 }
                   END { exit !ok }' "$page" || bad "$fn: no prototype in its section of $(basename "$page")"
  sed -n '/^\.SH NAME/{n;p;}' "$page" | grep -qw "$fn" || bad "$fn: not in the NAME line of $(basename "$page")"
done
# the hand-written pages in step with the code: every option of iomemd (daemon/config.c's table) in iomemd(8),
# every key of the file in iomemd.conf(5) and in the shipped commented iomemd.conf, every command of iomemctl
# (cli/iomemctl.c's table) in iomemctl(1)
opts=$(grep -o '{ "[a-z-]*", required_argument' "$src/daemon/config.c" | cut -d'"' -f2)
[ "$(echo "$opts" | wc -w)" -ge 15 ] || bad "read only $(echo "$opts" | wc -w) options from daemon/config.c"
for o in $opts; do
  roff=${o//-/\\-} # max-regions -> max\-regions, as roff writes it
  grep -qF -- "\\-\\-$roff" "$src/docs/man/iomemd.8" || bad "iomemd.8 does not document --$o"
  case $o in socket|config|pid) continue ;; esac # command line only
  grep -qF -- ".BI \"$roff = " "$src/docs/man/iomemd.conf.5" || bad "iomemd.conf.5 does not document $o"
  grep -q "^#$o = " "$src/daemon/iomemd.conf" || bad "daemon/iomemd.conf does not show $o"
done
cmds=$(grep -o '{ "[a-z]*", cmd_' "$src/cli/iomemctl.c" | cut -d'"' -f2)
[ "$(echo "$cmds" | wc -w)" -ge 10 ] || bad "read only $(echo "$cmds" | wc -w) commands from cli/iomemctl.c"
for c in $cmds; do
  grep -q "^\.B[IR]* \"\?$c\b" "$src/docs/man/iomemctl.1" || bad "iomemctl.1 does not document the command $c"
done

# iomemctl's options (its getopt tables) and commands in iomemctl(1), in docs/iomemctl.md and in `iomemctl --help`
ctl_opts=$(grep -o '{ "[a-z-]*", [a-z_]*_argument' "$src/cli/iomemctl.c" | cut -d'"' -f2 | sort -u)
[ "$(echo "$ctl_opts" | wc -w)" -ge 15 ] || bad "read only $(echo "$ctl_opts" | wc -w) options from cli/iomemctl.c"
ctl_help=$("$build/cli/iomemctl" --help) || bad "iomemctl --help failed"
for o in $ctl_opts; do
  grep -qF -- "\\-\\-${o//-/\\-}" "$src/docs/man/iomemctl.1" || bad "iomemctl.1 does not document --$o"
  grep -qF -- "--$o" "$src/docs/iomemctl.md" || bad "docs/iomemctl.md does not document --$o"
  grep -qF -- "--$o" <<<"$ctl_help" || bad "iomemctl --help does not show --$o"
done
for c in $cmds; do
  grep -q "^| \`$c\b" "$src/docs/iomemctl.md" || bad "docs/iomemctl.md's table does not document the command $c"
  grep -q "^  $c\b" <<<"$ctl_help" || bad "iomemctl --help does not show the command $c"
done

# docs/protocol.md, the wire's manual: every opcode, event, flag bit and backend of proto/proto.h in its tables
command -v python3 >/dev/null || bad "python3 is not installed"
python3 "$src/tests/man/protocol-doc.py" "$src" || fail=1

[ $fail = 0 ] || exit 1
echo "man test passed: ${#pages[@]} pages lint clean, ${#links[@]} links, $(echo "$funcs" | wc -w) functions," \
     "$(echo "$opts" | wc -w) options, $(echo "$cmds" | wc -w) commands and $(echo "$ctl_opts" | wc -w) iomemctl" \
     "options documented"
