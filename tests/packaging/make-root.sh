#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A minimal Debian 12 root with systemd, for the package test: made once with debootstrap and kept as a tarball
# under $IOMEMD_CI_CACHE (default /var/cache/iomemd-ci), keyed by suite and package list so a change of either
# makes a new one. Prints the tarball's path.
# Usage: make-root.sh
set -euo pipefail
cache=${IOMEMD_CI_CACHE:-/var/cache/iomemd-ci}
suite=bookworm
mirror=${IOMEMD_CI_MIRROR:-http://deb.debian.org/debian}
# systemd as PID 1, and what the packages depend on (libc6 and libsystemd0 come with these; procps has the
# /bin/kill of the unit's ExecReload=; python3 for python3-iomem, ruby for ruby-iomem)
include=systemd,systemd-sysv,libevent-core-2.1-7,procps,python3,ruby
key=$(printf '%s %s %s\n' "$suite" minbase "$include" | sha1sum | cut -c1-12)
tarball=$cache/$suite-minbase-$key.tar.gz
if [ -s "$tarball" ]; then
  echo "$tarball"
  exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d "$cache/root.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "make-root: debootstrap $suite (minbase + $include) into $work, once; cached as $tarball" >&2
debootstrap --variant=minbase --include="$include" "$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}
# no apt caches or lists in the image (nothing is downloaded inside the test)
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
tar -C "$work/root" --numeric-owner -czf "$work/root.tar.gz" .
mv "$work/root.tar.gz" "$tarball"
# roots made for an older package list are not used again
find "$cache" -maxdepth 1 -name "$suite-minbase-*.tar.gz" ! -name "$(basename "$tarball")" -delete
echo "$tarball"
