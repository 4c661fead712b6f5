# SPDX-License-Identifier: LGPL-2.1-or-later
"""iomem.Client watch/publish/versions/metrics against the real iomemd (docs/protocol.md section 15)."""

import errno
import os
import shutil
import subprocess
import sys
import threading

import iomem
from pyitutil import FdCheckedCase, snapshot, stage_for_other_uid

SNAPSHOT_SEALS = iomem.SEAL_SHRINK | iomem.SEAL_GROW | iomem.SEAL_WRITE


class TestEvents(FdCheckedCase):
    daemon_args = ("--quota-watches", "4")

    def test_watch_created_published_deleted(self):
        c = self.client()
        other = self.client()
        w = c.watch("ev.")
        self.assertGreater(w, 0)
        self.assertIsNone(c.next_event(0))
        with other.create("ev.a", 8192, mode=0o640) as created:
            created_id = created.id
        with other.create("nomatch", 4096):
            pass
        ev = c.next_event(60)
        self.assertIsInstance(ev, iomem.Event)
        self.assertEqual((ev.kind, ev.name, ev.id, ev.size, ev.mode, ev.uid, ev.gid, ev.watch_id),
                         ("created", "ev.a", created_id, 8192, 0o640, os.getuid(), os.getgid(), w))
        gen1 = ev.generation
        self.assertEqual(other.stat("ev.a").generation, gen1)
        with snapshot(b"v2") as snap:
            gen2 = other.publish("ev.a", snap, expect_generation=gen1)
        self.assertGreater(gen2, gen1)
        ev = c.next_event(60)
        self.assertEqual((ev.kind, ev.name, ev.generation, ev.replaced_id, ev.size, ev.mode),
                         ("published", "ev.a", gen2, created_id, 4096, 0o640))  # mode kept from the replaced
        self.assertEqual(ev.seals & SNAPSHOT_SEALS, SNAPSHOT_SEALS)
        self.assertNotEqual(ev.id, created_id)
        other.delete("ev.a")
        ev = c.next_event(60)
        self.assertEqual((ev.kind, ev.name, ev.generation), ("deleted", "ev.a", gen2))
        other.delete("nomatch")
        self.assertIsNone(c.next_event(0))  # "nomatch" is outside the prefix
        with self.assertRaises((ValueError, OverflowError)):  # it was cut to 32 bits: this removed watch w
            c.unwatch(2**32 + w)
        with self.assertRaises((ValueError, OverflowError)):
            c.unwatch(-1)
        c.unwatch(w)
        with other.create("ev.b", 4096):
            pass
        other.delete("ev.b")
        self.assertEqual(list(c.events(timeout=0)), [])  # no event of a removed watch
        with self.assertRaises(FileNotFoundError) as cm:
            c.unwatch(w)
        self.assertEqual(cm.exception.strerror, "no watch with this id")  # was libiomem's "no region with this name"

    def test_events_iterator_and_several_watches(self):
        c = self.client()
        w1, w2 = c.watch("it."), c.watch("it.x")
        self.assertNotEqual(w1, w2)
        with c.create("it.x1", 4096), c.create("it.y1", 4096):
            pass
        got = [(ev.kind, ev.name, ev.watch_id) for ev in c.events(timeout=0)]
        # the requester sees its own change's events before the reply, one per matching watch
        self.assertEqual(sorted(got), sorted([("created", "it.x1", w1), ("created", "it.x1", w2),
                                              ("created", "it.y1", w1)]))
        with self.assertRaises(OSError) as cm:  # --quota-watches 4
            for _ in range(3):
                c.watch("it.")
        self.assertEqual(cm.exception.errno, errno.EDQUOT)

    def test_publish_replaces_and_old_readers_keep_their_bytes(self):
        c = self.client()
        with snapshot(b"first") as s1:
            gen1 = c.publish("pub.a", s1)  # a free name: like a CREATE
        old = c.open("pub.a", read_only=True, after_generation=0)
        self.addCleanup(old.close)
        self.assertEqual(old.generation, gen1)
        with snapshot(b"second") as s2:
            gen2 = c.publish("pub.a", s2, mode=0o644)
        self.assertGreater(gen2, gen1)
        with memoryview(old) as m:
            self.assertEqual(bytes(m[:5]), b"first")  # the holder of the old version keeps it
        with c.open("pub.a", read_only=True) as new, memoryview(new) as m:
            self.assertEqual(bytes(m[:6]), b"second")
            self.assertIsNone(new.generation)  # a plain OPEN does not say
        st = c.stat("pub.a")
        self.assertEqual((st.generation, st.mode), (gen2, 0o644))
        self.assertEqual(len(st), 10)  # generation is an attribute, not in the tuple (unpacking code keeps working)

    def test_publish_errors(self):
        c = self.client()
        with snapshot(b"x") as s:
            gen = c.publish("err.a", s)
            with self.assertRaises(OSError) as cm:
                c.publish("err.a", s, expect_generation=gen + 1000)
            self.assertEqual(cm.exception.errno, errno.ESTALE)
            self.assertEqual(cm.exception.filename, "err.a")
            self.assertEqual(c.stat("err.a").generation, gen)  # nothing changed
            with self.assertRaises(FileNotFoundError):
                c.publish("err.none", s, expect_generation=gen)
            with self.assertRaises(ValueError):
                c.publish("err.a", s, expect_generation=0)
            with self.assertRaisesRegex(ValueError, r"^mode 0o1000: a region's mode is 0 to 0o777 "):
                c.publish("err.a", s, mode=0o1000)
        unsealed = iomem.Region(4096, backend="memfd")
        with unsealed, self.assertRaises(PermissionError):
            c.publish("err.b", unsealed)  # missing seals: EPERM
        with self.assertRaises(TypeError):
            c.publish("err.a", b"bytes")
        with self.assertRaises(FileNotFoundError):
            c.open("err.a", after_generation=gen)  # no newer version, no wait

    def test_open_after_generation_waits_for_another_process(self):
        c = self.client()
        with snapshot(b"gen one") as s:
            gen1 = c.publish("ver.a", s)
        with c.open("ver.a", after_generation=0) as r:
            self.assertEqual(r.generation, gen1)
        with self.assertRaises(TimeoutError):
            c.open("ver.a", after_generation=gen1, wait=True, timeout=0.05)
        waiter = subprocess.Popen([sys.executable, "-c", r"""
import os, sys, iomem
with iomem.Client(sys.argv[1]) as c, c.open("ver.a", read_only=True, wait=True, timeout=120,
                                             after_generation=int(sys.argv[2])) as r, memoryview(r) as m:
    print(r.generation, bytes(m[:7]).decode())
""", self.daemon.socket, str(gen1)], stdout=subprocess.PIPE, text=True)
        with iomem.Client(self.daemon.socket) as probe:  # until the waiter's OPEN is parked in the daemon
            for _ in range(1000):
                if probe.status().connections >= 3:
                    break
                threading.Event().wait(0.01)
        publisher = self.run_python(r"""
import sys, iomem
r = iomem.Region(4096, backend="memfd")
memoryview(r)[:7] = b"gen two"
r.seal("shrink,grow,write")
with iomem.Client(sys.argv[1]) as c:
    print(c.publish("ver.a", r, expect_generation=int(sys.argv[2])))
r.close()
""", self.daemon.socket, str(gen1))
        self.assertEqual(publisher.returncode, 0, publisher.stderr)
        gen2 = int(publisher.stdout)
        out, _ = waiter.communicate(timeout=120)
        self.assertEqual(waiter.returncode, 0)
        self.assertEqual(out.split(), [str(gen2), "gen", "two"])

    def test_blocking_wait_releases_the_gil_and_the_client(self):
        c = self.client()
        c.watch("gil.")
        got = []
        t = threading.Thread(target=lambda: got.append(c.next_event(None)))
        t.start()
        # while the thread waits without limit, this thread runs Python and uses the same Client
        # (the wait lets go of it between slices), then makes the change the thread is waiting for
        c.ping()
        with c.create("gil.a", 4096):
            pass
        t.join(120)
        self.assertFalse(t.is_alive())
        if got[0] is None or got[0].name != "gil.a":
            self.fail(f"unexpected {got}")

    def test_metrics(self):
        c = self.client()
        with c.create("m.a", 4096):
            pass
        samples = c.metrics()
        self.assertTrue(all(isinstance(m, iomem.Metric) for m in samples))
        by_name = {}
        for m in samples:
            by_name.setdefault(m.name, []).append(m)
        regions = by_name["iomemd_regions"][0]
        self.assertEqual((regions.type, regions.label, regions.label_value), ("gauge", None, None))
        self.assertEqual(regions.value, len(c.list()))
        creates = [m for m in by_name["iomemd_requests"] if m.label_value == "CREATE"]
        self.assertEqual(len(creates), 1, by_name["iomemd_requests"])
        self.assertEqual((creates[0].type, creates[0].label), ("counter", "request"))
        self.assertGreaterEqual(creates[0].value, 1)
        self.assertTrue(regions.help)


class TestPublishOtherUid(FdCheckedCase):
    """PUBLISH over a version another uid owns (needs root and setpriv)."""

    daemon_args = ()

    @classmethod
    def setUpClass(cls):
        if os.getuid() != 0 or not shutil.which("setpriv"):
            raise __import__("unittest").SkipTest("needs root and setpriv")
        super().setUpClass()
        os.chmod(cls.daemon.dir, 0o755)

    def test_publish_over_another_uids_version(self):
        c = self.client()
        with snapshot(b"root's") as s:
            c.publish("ou.a", s, mode=0o644)
        w = c.watch("ou.")
        stage = stage_for_other_uid(self.daemon.dir)
        out = subprocess.run(["setpriv", "--reuid", "1501", "--regid", "1601", "--clear-groups", sys.executable,
                              "-c", r"""
import errno, sys, iomem
r = iomem.Region(4096, backend="memfd")
r.seal("shrink,grow,write")
with iomem.Client(sys.argv[1]) as c:
    try:
        c.publish("ou.a", r)
        print("allowed")
    except PermissionError as e:
        print("refused", errno.errorcode[e.errno])
    print(c.publish("ou.mine", r))
r.close()
""", self.daemon.socket], capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, PYTHONPATH=stage, LD_LIBRARY_PATH=stage))
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.splitlines()
        self.assertIn(lines[0], ("refused EPERM", "refused EACCES"))
        with c.open("ou.a", read_only=True) as r, memoryview(r) as m:
            self.assertEqual(bytes(m[:6]), b"root's")
        ev = c.next_event(60)  # root may read the other uid's region: it sees it created
        self.assertEqual((ev.kind, ev.name, ev.uid, ev.gid, ev.generation, ev.watch_id),
                         ("created", "ou.mine", 1501, 1601, int(lines[1]), w))
        self.assertIsNone(c.next_event(0))  # the refused PUBLISH changed nothing


if __name__ == "__main__":
    import unittest
    unittest.main()
