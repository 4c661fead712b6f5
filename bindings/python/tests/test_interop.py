# SPDX-License-Identifier: LGPL-2.1-or-later
"""Python and C programs sharing the same bytes through iomemd: the C producer/consumer examples talking to a
Python process, and iomemctl reading what Python (numpy) wrote and writing what Python reads. The programs
are started separately by the test: none is another's parent."""

import os
import struct
import subprocess
import sys
import time

import numpy as np

import iomem
from pyitutil import FdCheckedCase, env

# examples/pc-shared.h: struct pc_page { u32 ready; u32 ack; char message[1024]; char reply[1024]; } in 4096 bytes
PC_SIZE, PC_TEXT = 4096, 1024
PC_READY, PC_ACK, PC_MESSAGE, PC_REPLY = 0, 4, 8, 8 + PC_TEXT

PY_PRODUCER = r"""
import struct, sys, time, iomem
sock, name, message = sys.argv[1:4]
with iomem.Client(sock) as c, c.create(name, 4096, exclusive=True, lease=True) as r, memoryview(r) as m:
    m[8:8 + len(message) + 1] = message.encode() + b"\0"
    struct.pack_into("<I", m, 0, 1)                   # ready, after the text (x86 keeps store order)
    deadline = time.monotonic() + 60
    while struct.unpack_from("<I", m, 4)[0] != 1:     # the C consumer's ack
        if time.monotonic() > deadline:
            sys.exit("no ack")
        time.sleep(0.001)
    print("reply:", bytes(m[1032:2056]).split(b"\0")[0].decode())
"""

PY_CONSUMER = r"""
import struct, sys, time, iomem
sock, name = sys.argv[1:3]
with iomem.Client(sock) as c, c.open(name, wait=True, timeout=60) as r, memoryview(r) as m:
    deadline = time.monotonic() + 60
    while struct.unpack_from("<I", m, 0)[0] != 1:     # the C producer's ready flag
        if time.monotonic() > deadline:
            sys.exit("no message")
        time.sleep(0.001)
    message = bytes(m[8:1032]).split(b"\0")[0]
    print("received:", message.decode())
    reply = b"ack: " + message
    m[1032:1032 + len(reply) + 1] = reply + b"\0"
    struct.pack_into("<I", m, 4, 1)
"""


class TestInterop(FdCheckedCase):
    daemon_args = ()

    def spawn(self, argv):
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def finish(self, proc):
        out, _ = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 0, f"{proc.args}: {out}")
        return out

    def test_c_producer_python_consumer(self):
        consumer = self.spawn([sys.executable, "-c", PY_CONSUMER, self.daemon.socket, "x.c2py"])
        producer = self.spawn([os.path.join(env("IOMEM_EXAMPLES"), "producer"), self.daemon.socket, "x.c2py",
                               "from C to Python"])
        self.assertIn("received: from C to Python", self.finish(consumer))
        self.assertIn('consumer replied "ack: from C to Python"', self.finish(producer))

    def test_python_producer_c_consumer(self):
        consumer = self.spawn([os.path.join(env("IOMEM_EXAMPLES"), "consumer"), self.daemon.socket, "x.py2c",
                               "60000"])
        producer = self.spawn([sys.executable, "-c", PY_PRODUCER, self.daemon.socket, "x.py2c", "from Python to C"])
        self.assertIn('received "from Python to C"', self.finish(consumer))
        self.assertIn("reply: ack: from Python to C", self.finish(producer))

    def ctl(self, *args, stdin=None):
        out = subprocess.run([env("IOMEMCTL"), "--socket", self.daemon.socket, *args], input=stdin,
                             capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout

    def test_iomemctl_and_numpy(self):
        c = self.client()
        # Python (numpy) writes, iomemctl reads the same bytes
        with c.create("x.np", 8 * 1000, mode=0o644) as r:
            a = np.frombuffer(r, dtype=np.int64)
            a[:] = np.arange(1000) * 3
            del a
        self.assertEqual(self.ctl("read", "x.np"), (np.arange(1000, dtype=np.int64) * 3).tobytes())
        # iomemctl writes, a Python mapping made before the write sees it: the same memory, not a copy
        with c.open("x.np", read_only=True) as r:
            view = np.frombuffer(r, dtype=np.int64)
            self.ctl("write", "x.np", "--offset", "8", stdin=struct.pack("<q", -42))
            self.assertEqual((view[0], view[1], view[2]), (0, -42, 6))
            del view
        # a region iomemctl created, opened from Python
        self.ctl("create", "x.ctl", "4K")
        self.ctl("write", "x.ctl", stdin=b"hello from iomemctl")
        with c.open("x.ctl") as r, memoryview(r) as m:
            self.assertEqual(bytes(m[0:19]), b"hello from iomemctl")
        st = c.stat("x.ctl")
        self.assertEqual(st.size, 4096)
        self.assertIn(b"x.ctl", self.ctl("list"))

    def test_numpy_zero_copy_between_mappings(self):
        # write through numpy in one mapping; read through another mapping (another fd, another process)
        c = self.client()
        with c.create("x.zc", 1 << 20) as w:
            a = np.frombuffer(w, dtype=np.float32)
            a[:] = 1.5
            a[12345] = 7.25
            proc = subprocess.Popen([sys.executable, "-c", r"""
import sys, time, numpy as np, iomem
with iomem.Client(sys.argv[1]) as c, c.open("x.zc", read_only=True) as r:
    b = np.frombuffer(r, dtype=np.float32)
    print(b.size, b[12345], float(b.sum()), flush=True)
    for _ in range(60000):  # the parent's next write appears in this array in place
        if b[0] == 9.0:
            print("saw the write", flush=True)
            break
        time.sleep(0.001)
    del b
""", self.daemon.socket], stdout=subprocess.PIPE, text=True)
            first = proc.stdout.readline().split()
            self.assertEqual(first, ["262144", "7.25", str(1.5 * 262143 + 7.25)])
            a[0] = 9.0
            rest, _ = proc.communicate(timeout=120)
            self.assertEqual(proc.returncode, 0)
            self.assertIn("saw the write", rest)
            del a
