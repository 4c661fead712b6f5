# SPDX-License-Identifier: LGPL-2.1-or-later
# Holds a mapping of the region whose fd iomemctl exec passed in IOMEM_FD across daemon restarts.
# Protocol with inside.sh through files in $OUT: writes holder-ready, waits for holder-go-N, checks that its
# mapping still shows the expected bytes, writes a marker, answers holder-done-N.
import mmap, os, sys, time

out = sys.argv[1]
rounds = int(sys.argv[2])
fd = int(os.environ["IOMEM_FD"])
size = int(os.environ["IOMEM_SIZE"])
m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
open(os.path.join(out, "holder-ready"), "w").close()
for n in range(1, rounds + 1):
    go = os.path.join(out, "holder-go-%d" % n)
    deadline = time.time() + 120
    while not os.path.exists(go):
        if time.time() > deadline:
            sys.exit("holder: timed out waiting for " + go)
        time.sleep(0.05)
    # inside.sh refreshes r1.data (through a new client) after each round
    expected = open(os.path.join(out, "r1.data"), "rb").read()
    ok = m[:len(expected)] == expected
    marker = b"holder-round-%d" % n
    m[8192:8192 + len(marker)] = marker
    with open(os.path.join(out, "holder-done-%d" % n), "w") as f:
        f.write("ok" if ok else "MISMATCH")
m.close()
