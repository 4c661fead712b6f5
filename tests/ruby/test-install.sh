#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-install (Ruby): `cmake --install --prefix P` puts iomem.rb and iomem_ext.so where ruby finds them (for a
# private prefix: P plus the vendorarchdir path, given to ruby as RUBYLIB), without the build tree's RPATH.
# Usage: test-install.sh BUILD_DIR
set -euo pipefail
build=$1
RUBY=${RUBY:-ruby}
prefix=$(mktemp -d /tmp/iomem-rb-install.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
rel=$("$RUBY" -rrbconfig -e 'print RbConfig::CONFIG["vendorarchdir"].delete_prefix(RbConfig::CONFIG["prefix"])')
dir=$prefix$rel
for f in iomem.rb iomem_ext.so; do
  [ -e "$dir/$f" ] || { echo "FAIL: $dir/$f not installed"; find "$prefix" -name 'iomem*'; exit 1; }
done
if readelf -d "$dir/iomem_ext.so" | grep -Eq 'RPATH|RUNPATH'; then
  echo "FAIL: installed iomem_ext.so keeps an RPATH: $(readelf -d "$dir/iomem_ext.so" | grep -E 'RPATH|RUNPATH')"
  exit 1
fi
# only the install is on the paths: not the build tree (the ctest environment's RUBYLIB is replaced)
out=$(env RUBYLIB="$dir" LD_LIBRARY_PATH="$prefix/lib" "$RUBY" -W:no-experimental -e '
  require "iomem"
  abort "loaded from #{$LOADED_FEATURES.grep(/iomem_ext/)}" unless $LOADED_FEATURES.grep(/iomem_ext/).all? { |f| f.start_with?(ARGV[0]) }
  IOMem.with(4096) { |r| r.map.set_string("installed"); print r.map.get_string(0, 9), " ", r.backend }' "$dir")
[ "$out" = "installed memfd" ] || { echo "FAIL: ruby with the installed binding printed '$out'"; exit 1; }
echo "ruby install test passed"
