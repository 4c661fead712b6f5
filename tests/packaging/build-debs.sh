#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Build the Debian packages from a clean copy of the tree (its tracked and not-ignored files) with
# `dpkg-buildpackage -us -uc -b`, and put the .debs and .changes in OUT_DIR. With NEXT, the copy first gets a
# changelog entry one Debian revision above the current one (an upgrade to install over the first build).
# Usage: build-debs.sh SOURCE_DIR OUT_DIR [NEXT]
set -euo pipefail
src=$(realpath "$1")
out=$2
next=${3:-}
mkdir -p "$out"
out=$(realpath "$out")
work=$(mktemp -d /tmp/iomemd-debs.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/iomemd"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  # tracked and new files as they are in the tree (a tracked file deleted there is left out)
  (cd "$src" && git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do
     [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"; done | xargs -0 tar -c) | tar -x -C "$work/iomemd"
else
  tar -C "$src" --exclude='./build*' --exclude='./obj-*' -c . | tar -x -C "$work/iomemd"
fi
cd "$work/iomemd"
if [ -n "$next" ]; then
  v=$(dpkg-parsechangelog -S Version)
  nv="${v%-*}-$(( ${v##*-} + 1 ))"
  {
    printf 'iomemd (%s) unstable; urgency=medium\n\n  * Rebuild for the upgrade test.\n\n' "$nv"
    printf ' -- %s  %s\n\n' "$(dpkg-parsechangelog -S Maintainer)" "$(date -R)"
    cat debian/changelog
  } > debian/changelog.new
  mv debian/changelog.new debian/changelog
fi
dpkg-buildpackage -us -uc -b >"$out/build.log" 2>&1 || { tail -n 40 "$out/build.log"; echo "FAILED: dpkg-buildpackage"; exit 1; }
mv "$work"/*.deb "$work"/*.changes "$work"/*.buildinfo "$out"/
echo "built $(dpkg-parsechangelog -S Version): $(cd "$out" && ls *.deb | grep -v dbgsym | tr '\n' ' ')"
