#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `cmake --install --prefix P` gives everything a user needs: iomemd, iomemctl, libiomem with its soname, iomem.h,
# iomem.pc, the units (ExecStart= pointing into P), the manuals and the commented configuration (under
# share/doc: iomemd reads /etc/iomemd/iomemd.conf, not P/etc); a program built against P with pkg-config runs.
# Usage: install-test.sh BUILD_DIR
set -euo pipefail
build=$1
prefix=$(mktemp -d /tmp/iomem-install.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/iomemd bin/iomemctl include/iomem.h lib/pkgconfig/iomem.pc lib/systemd/system/iomemd.socket \
         lib/systemd/system/iomemd.service lib/systemd/user/iomemd.socket lib/systemd/user/iomemd.service \
         share/man/man1/iomemctl.1 share/man/man8/iomemd.8 \
         share/man/man5/iomemd.conf.5 share/man/man3/iomem.3 share/man/man3/iomem_client.3 \
         share/man/man3/iomem_create.3 share/doc/iomemd/iomemd.conf; do
  [ -e "$prefix/$f" ] || { echo "FAIL: $f not installed"; exit 1; }
done
ls "$prefix"/lib/libiomem.so.0* >/dev/null || { echo "FAIL: no libiomem.so.0"; exit 1; }
grep -qx "ExecStart=$prefix/bin/iomemd --log-level=info" "$prefix/lib/systemd/system/iomemd.service" \
  || { echo "FAIL: ExecStart does not point into the prefix"; grep ExecStart "$prefix/lib/systemd/system/iomemd.service"; exit 1; }
grep -qx "ExecStart=$prefix/bin/iomemd --log-level=info" "$prefix/lib/systemd/user/iomemd.service" \
  || { echo "FAIL: the user unit's ExecStart does not point into the prefix"; exit 1; }
for u in system user; do
  grep -qx "ExecReload=$prefix/bin/iomemd --check-config --pid \$MAINPID" "$prefix/lib/systemd/$u/iomemd.service" \
    || { echo "FAIL: the $u unit's reload check does not point into the prefix"; exit 1; }
done
grep -qx "ListenStream=%t/iomemd.sock" "$prefix/lib/systemd/user/iomemd.socket" \
  || { echo "FAIL: the user socket does not listen on \$XDG_RUNTIME_DIR/iomemd.sock"; exit 1; }
# The installed programs run at once, with no LD_LIBRARY_PATH and no ldconfig: their RUNPATH is $ORIGIN/../lib
# (relative to the binary), never the build tree.
unset LD_LIBRARY_PATH
for b in iomemd iomemctl; do
  rp=$(readelf -d "$prefix/bin/$b" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]$/\1/p')
  [ "$rp" = '$ORIGIN/../lib' ] || { echo "FAIL: RUNPATH of bin/$b is '$rp', want '\$ORIGIN/../lib'"; exit 1; }
done
"$prefix/bin/iomemd" --version | grep -q iomemd || { echo "FAIL: iomemd --version"; exit 1; }
"$prefix/bin/iomemctl" --version | grep -q iomemctl || { echo "FAIL: iomemctl --version"; "$prefix/bin/iomemctl" --version; exit 1; }
# and they talk to each other
"$prefix/bin/iomemd" --socket "$prefix/sock" --tmpdir "$prefix" --log-level warning &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$prefix"' EXIT
for _ in $(seq 100); do "$prefix/bin/iomemctl" --socket "$prefix/sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
"$prefix/bin/iomemctl" --socket "$prefix/sock" create installed 4K >/dev/null || { echo "FAIL: installed iomemctl create"; exit 1; }
"$prefix/bin/iomemctl" --socket "$prefix/sock" stat installed >/dev/null || { echo "FAIL: installed iomemctl stat"; exit 1; }
cat > "$prefix/hello.c" <<'C'
#include <iomem.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
int main(void)
{
        struct iomem_region *r = NULL;
        void *p = NULL;
        if (iomem_region_new_local(4096, IOMEM_BACKEND_AUTO, 0, &r) < 0 ||
            iomem_region_map(r, 0, 0, PROT_READ | PROT_WRITE, &p) < 0)
                return 1;
        strcpy(p, "installed");
        printf("%s %s\n", (char *)p, iomem_backend_name(iomem_region_backend(r)));
        iomem_unmap(p, 4096);
        iomem_region_free(r);
        return 0;
}
C
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cc -std=c11 -Wall -Werror ${HELLO_CFLAGS:-} $(pkg-config --cflags iomem) "$prefix/hello.c" -o "$prefix/hello" $(pkg-config --libs iomem)
# a user's own program has no RUNPATH: it finds the library through LD_LIBRARY_PATH here (ldconfig for /usr/local)
out=$(LD_LIBRARY_PATH="$prefix/lib" "$prefix/hello")
[ "$out" = "installed memfd" ] || { echo "FAIL: program built against the install printed '$out'"; exit 1; }
echo "install test passed"
