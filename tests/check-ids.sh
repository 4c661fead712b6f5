#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# check-ids: every checklist id (F1, D7, P4, S1...) that code, tests or docs cite is defined in docs/reliability.md.
#
#   tests/check-ids.sh SOURCE_DIR
#
# The definitions are the lines "- **ID** ..." of docs/reliability.md. Fails, listing file:line, for a cited id
# without one. It first runs itself on a made-up tree with an undefined id, so it cannot pass by matching nothing.
set -euo pipefail
src=${1:?usage: check-ids.sh SOURCE_DIR}

# check ROOT: print "file:line: ID" for each cited id ROOT/docs/reliability.md does not define; status 1 if any
check() {
  local root=$1 defined cited bad=0
  defined=$(grep -oE '^- \*\*[FDRPLS][0-9]+\*\*' "$root/docs/reliability.md" | tr -d '* -' | sort -u)
  [ -n "$defined" ] || { echo "check-ids: $root/docs/reliability.md defines no id" >&2; return 1; }
  # source, scripts, build files and docs; not build trees, fuzz corpora or binary files
  cited=$(cd "$root" && grep -rIonwE '[FDRPLS][0-9]{1,2}' \
            --include='*.[ch]' --include='*.sh' --include='*.py' --include='*.md' --include='*.txt' \
            --include='*.in' --include='*.dict' --include='*.[0-9]' --include='*.service' --include='*.socket' \
            --exclude-dir='build*' --exclude-dir='corpus-*' --exclude-dir='.git' . || true)
  [ -n "$cited" ] || { echo "check-ids: $root cites no id at all" >&2; return 1; }
  while IFS= read -r hit; do
    id=${hit##*:}
    if ! grep -qx "$id" <<<"$defined"; then
      echo "check-ids: ${hit%:*}: $id is not defined in docs/reliability.md" >&2
      bad=1
    fi
  done <<<"$cited"
  return $bad
}

selftest=$(mktemp -d)
trap 'rm -rf "$selftest"' EXIT
mkdir -p "$selftest/docs" "$selftest/daemon"
printf -- '- **F1** a definition\n' >"$selftest/docs/reliability.md"
printf '/* F1 and F2 */\n' >"$selftest/daemon/x.c"
if check "$selftest" 2>/dev/null; then
  echo "check-ids: FAIL: the self-test's undefined F2 was not found" >&2
  exit 1
fi

check "$src"
echo "check-ids: every cited id is defined ($(grep -cE '^- \*\*[FDRPLS][0-9]+\*\*' "$src/docs/reliability.md") definitions)"
