# SPDX-License-Identifier: LGPL-2.1-or-later
"""examples/python: each seed-guide scenario with a local region and with a named one, the numpy producer and
consumer as unrelated processes (either may start first), and multiprocessing workers sharing one region."""

import os
import subprocess
import sys
import time

import iomem
from pyitutil import FdCheckedCase, env


class TestExamples(FdCheckedCase):
    daemon_args = ()

    def example(self, script, *args, check=True):
        path = os.path.join(env("IOMEM_PY_EXAMPLES"), script)
        out = subprocess.run([sys.executable, path, *args], capture_output=True, text=True, timeout=300)
        if check:
            self.assertEqual(out.returncode, 0, f"{script} {args}: {out.stdout}{out.stderr}")
        return out

    def test_seed_scenarios_local_and_named(self):
        for extra in ((), ("--socket", self.daemon.socket)):
            with self.subTest(named=bool(extra)):
                out = self.example("parent_child.py", *extra).stdout
                self.assertIn("child received: Hello from parent!", out)
                self.assertIn("parent received: Hello from child!", out)
                out = self.example("fd_passing.py", *extra).stdout
                self.assertIn("child read: Shared data from parent", out)
                self.assertIn("child wrote: Data from child proc", out)
                out = self.example("worker_pool.py", *extra).stdout
                self.assertIn('result from worker 2: "CPI ypoC oreZ"', out)
                self.assertEqual(out.count("finished"), 3)
                out = self.example("alignment.py", *extra).stdout
                self.assertIn("Data 2 at offset 128", out)
                self.assertIn("alignment ok", out)
        with iomem.Client(self.daemon.socket) as c:  # the named runs leased their regions: none is left
            for _ in range(500):
                if not c.list("example."):
                    break
                time.sleep(0.01)
            self.assertEqual(c.list("example."), [])

    def test_numpy_consumer_first(self):
        path = os.path.join(env("IOMEM_PY_EXAMPLES"), "numpy_consumer.py")
        consumer = subprocess.Popen([sys.executable, path, self.daemon.socket, "np.a", "60", "--delete"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with iomem.Client(self.daemon.socket) as c:  # wait until the consumer's OPEN is parked in the daemon
            for _ in range(1000):
                if c.status().connections >= 2:
                    break
                time.sleep(0.01)
        out = self.example("numpy_producer.py", self.daemon.socket, "np.a", "100000").stdout
        self.assertIn("producer: 100000 x float64 in np.a", out)
        cout, _ = consumer.communicate(timeout=120)
        self.assertEqual(consumer.returncode, 0, cout)
        self.assertIn("consumer: 100000 x float64 from np.a", cout)
        self.assertIn("matches", cout)
        self.assertEqual(out.split("sum ")[1].strip(), cout.split("sum ")[1].split(",")[0])
        with iomem.Client(self.daemon.socket) as c, self.assertRaises(FileNotFoundError):
            c.stat("np.a")  # --delete

    def test_numpy_producer_first(self):
        self.example("numpy_producer.py", self.daemon.socket, "np.b", "1000")
        with iomem.Client(self.daemon.socket) as c:
            self.assertEqual(c.stat("np.b").size, 64 + 8000)  # the region outlived its producer
        out = self.example("numpy_consumer.py", self.daemon.socket, "np.b").stdout
        self.assertIn("matches", out)
        # nobody produces: the consumer gives up with an error
        out = self.example("numpy_consumer.py", self.daemon.socket, "np.none", "0.1", check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("TimeoutError", out.stderr)

    def test_snapshot_publisher_and_watcher(self):
        path = os.path.join(env("IOMEM_PY_EXAMPLES"), "snapshot_watcher.py")
        watcher = subprocess.Popen([sys.executable, path, self.daemon.socket, "snap.a", "6", "120"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.assertEqual(watcher.stdout.readline(), "watching\n")  # its watch exists: it misses no version
        out = self.example("snapshot_publisher.py", self.daemon.socket, "snap.a", "6").stdout
        self.assertIn("publisher: snapshot 6 is generation", out)
        wout, _ = watcher.communicate(timeout=120)
        self.assertEqual(watcher.returncode, 0, wout)
        self.assertNotIn("CORRUPT", wout)
        self.assertIn(": snapshot 6, intact", wout)
        self.assertIn("watcher: events created 1, published 5", wout)
        generations = [line.split()[-1] for line in out.splitlines()]
        self.assertIn(f"watcher: generation {generations[-1]}: snapshot 6, intact", wout)
        with iomem.Client(self.daemon.socket) as c:
            self.assertEqual(c.stat("snap.a").generation, int(generations[-1]))  # the last version stays
            c.delete("snap.a")

    def test_aio_consumer_waits_then_follows_versions(self):
        path = os.path.join(env("IOMEM_PY_EXAMPLES"), "aio_consumer.py")
        consumer = subprocess.Popen([sys.executable, path, self.daemon.socket, "aio.snap", "6", "120"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.assertEqual(consumer.stdout.readline(), "watching\n")  # and awaiting the name, which nobody made yet
        out = self.example("snapshot_publisher.py", self.daemon.socket, "aio.snap", "6").stdout
        cout, _ = consumer.communicate(timeout=120)
        self.assertEqual(consumer.returncode, 0, cout)
        self.assertNotIn("CORRUPT", cout)
        generations = [line.split()[-1] for line in out.splitlines()]
        self.assertIn(f"aio: generation {generations[-1]}: snapshot 6, intact", cout)
        self.assertIn("aio: events created 1, published 5", cout)
        # started after the name exists: the first version at once; none after it within the timeout: an error
        out = self.example("aio_consumer.py", self.daemon.socket, "aio.snap", "7", "0.2", check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("aio: generation " + generations[-1] + ": snapshot 6, intact", out.stdout)
        self.assertIn("TimeoutError", out.stderr)
        with iomem.Client(self.daemon.socket) as c:
            c.delete("aio.snap")

    def test_mp_workers(self):
        out = self.example("mp_workers.py", self.daemon.socket, "3").stdout
        self.assertIn("squared 64x4096 in place: correct", out)
