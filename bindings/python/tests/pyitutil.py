# SPDX-License-Identifier: LGPL-2.1-or-later
"""pyitutil: helpers of the Python suites (start the real iomemd on a temporary socket, count fds)."""

import gc
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import iomem


def env(name):
    """A path the build passes through ctest (bindings/python/CMakeLists.txt)."""
    value = os.environ.get(name)
    if not value:
        raise unittest.SkipTest(f"{name} is not set: run the test through ctest")
    return value


def snapshot(data, size=4096):
    """A local memfd holding @data, sealed as an immutable snapshot (what publish() takes)."""
    r = iomem.Region(size, backend="memfd")
    with memoryview(r) as m:
        m[:len(data)] = data
    r.seal("shrink,grow,write")
    return r


def stage_for_other_uid(directory):
    """Copy the module and libiomem into DIRECTORY/stage, where another uid can read them (the source and build
    trees may be under /root, 0700). Return: the stage, for PYTHONPATH and LD_LIBRARY_PATH."""
    stage = os.path.join(directory, "stage")
    if not os.path.isdir(stage):
        os.mkdir(stage)
        os.chmod(stage, 0o755)
        shutil.copytree(os.path.dirname(iomem.__file__), os.path.join(stage, "iomem"))
        with open("/proc/self/maps") as maps:
            lib = next(line.split()[-1] for line in maps if "/libiomem.so" in line)
        shutil.copy(lib, os.path.join(stage, "libiomem.so.0"))
    return stage


def fd_count(pid="self"):
    """The number of open fds of a process."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def _socket_ready(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Daemon:
    """One iomemd on its own socket in its own temporary directory."""

    def __init__(self, *extra):
        self.dir = tempfile.mkdtemp(prefix="iomem-py.")
        self.socket = os.path.join(self.dir, "sock")
        self.extra = extra
        self._start()

    def _start(self):
        self.proc = subprocess.Popen(
            [env("IOMEMD"), "--socket", self.socket, "--log-level", "warning", "--tmpdir", self.dir, *self.extra],
            stdin=subprocess.DEVNULL)
        for _ in range(1000):
            if _socket_ready(self.socket):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"iomemd exited during startup (status {self.proc.returncode})")
            time.sleep(0.01)
        self.proc.kill()
        raise RuntimeError("iomemd did not start listening")

    def kill(self):
        """SIGTERM and wait, keeping the directory (for restart())."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        try:
            os.unlink(self.socket)
        except FileNotFoundError:
            pass

    def restart(self):
        """A new iomemd on the same socket (its regions are gone: a daemon restart)."""
        if self.proc.poll() is None:
            self.kill()
        self._start()

    def settled_fds(self):
        """The daemon's fd count once every other client is gone and nothing is left for it to close later (as
        itutil.h it_daemon_settled_fds)."""
        # A client that closed with fds unread in its socket can leave the daemon holding its side as an
        # orphan (daemon/conn.c): the kernel wakes the daemon with the hang-up before it frees the closed
        # end's queue. Orphans are looked at again at the next departure (or the 2 s status timer): a
        # connection that comes and goes makes one, now and while METRICS still counts an orphan.
        iomem.Client(self.socket).close()
        with iomem.Client(self.socket) as probe:
            # poll until the probe is the only connection (the daemon frees a connection, its fds and leased
            # regions, before it stops counting it), no fd is queued to or being closed by the closer threads,
            # no job holds an fd and no orphan socket is kept: then nothing is closed later
            pending = {}
            for _ in range(1000):
                pending = {m.name: m.value for m in probe.metrics()
                           if m.name in ("iomemd_closing_fds", "iomemd_jobs", "iomemd_orphan_sockets",
                                         "iomemd_connections")}
                if len(pending) != 4:
                    raise AssertionError(f"METRICS lacks a gauge settled_fds() needs: it has {pending}")
                if pending == {"iomemd_closing_fds": 0, "iomemd_jobs": 0, "iomemd_orphan_sockets": 0,
                               "iomemd_connections": 1}:
                    break
                if pending["iomemd_orphan_sockets"]:
                    iomem.Client(self.socket).close()
                time.sleep(0.01)
            else:
                raise AssertionError(f"after 10 s the daemon still has something to close later: {pending} "
                                     "(want closing fds, jobs and orphan sockets 0 and the probe's one connection)")
            return fd_count(self.proc.pid)

    def stop(self):
        """SIGTERM; return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc


class FdCheckedCase(unittest.TestCase):
    """Every test checks it leaked no fd (and, with a daemon, that the daemon leaked none for it)."""

    daemon_args = None  # a tuple of iomemd arguments to start one daemon per test class

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(*cls.daemon_args) if cls.daemon_args is not None else None

    @classmethod
    def tearDownClass(cls):
        if cls.daemon:
            rc = cls.daemon.stop()
            if rc != 0:
                raise AssertionError(f"iomemd exited with {rc}")

    def setUp(self):
        gc.collect()
        self.fds_before = fd_count()
        self.daemon_fds_before = self.daemon.settled_fds() if self.daemon else None
        # cleanups run last-in first-out: this one, added first, runs after every other cleanup of the test
        self.addCleanup(self.check_leaks)

    def check_leaks(self):
        gc.collect()
        self.assertEqual(fd_count(), self.fds_before, "the test leaked fds")
        if self.daemon:
            # the regions a test made hold fds in the daemon: remove them before counting
            with iomem.Client(self.daemon.socket) as c:
                for e in c.list():
                    c.delete(e.name)
            self.assertEqual(self.daemon.settled_fds(), self.daemon_fds_before, "the daemon leaked fds")

    def client(self, **kwargs):
        c = iomem.Client(self.daemon.socket, **kwargs)
        self.addCleanup(c.close)
        return c

    def run_python(self, code, *args, **kwargs):
        """Run @code in a fresh Debian python3 (an unrelated process); return CompletedProcess."""
        return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                              **kwargs)
