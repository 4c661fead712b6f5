#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# stage-install: install iomemd, iomemctl and libiomem of a build into PREFIX (mode 0755), for tests that run them
# as other uids: the build tree may sit under a directory those uids cannot enter (root's clone in /root, 0700).
# Only the install rules of client/, cli/ and daemon/ run, so targets the tests do not need (the bindings, ...) need
# not be built. The programs find the library through their RUNPATH $ORIGIN/../<libdir>.
# Usage: stage-install.sh BUILD_DIR PREFIX
set -euo pipefail
build=$1 prefix=$2
mkdir -p "$prefix"
chmod 0755 "$prefix"
for dir in client cli daemon; do
  if ! out=$(cmake -DCMAKE_INSTALL_PREFIX="$prefix" -P "$build/$dir/cmake_install.cmake" 2>&1); then
    echo "stage-install: installing $build/$dir into $prefix failed: $out" >&2
    exit 1
  fi
done
