# SPDX-License-Identifier: LGPL-2.1-or-later
"""Local regions (no daemon): construction, the buffer protocol, numpy, seals, resize, lifetimes, fds."""

import ctypes
import errno
import fcntl
import gc
import os
import socket
import weakref

import numpy as np

import iomem
from pyitutil import FdCheckedCase, fd_count

PAGE = os.sysconf("SC_PAGE_SIZE")


def _mp_child_writes(region, text):
    """multiprocessing target (spawn: a fresh interpreter): write into the region it was given."""
    with region, memoryview(region) as m:
        m[0:len(text)] = text


def _mp_child_echoes(conn):
    """multiprocessing target: receive regions over a Pipe, write their name's length into each, close them."""
    while (region := conn.recv()) is not None:
        with region, memoryview(region) as m:
            if not region.read_only:
                m[0] = 42
            conn.send(region.read_only)
    conn.close()


class TestRegion(FdCheckedCase):
    @staticmethod
    def maps_lines():
        with open("/proc/self/maps") as f:
            return len(f.read().splitlines())

    def test_backends(self):
        for backend in ("memfd", "shm", "file"):
            with iomem.Region(8192, backend=backend) as r:
                self.assertEqual(r.backend, backend)
                self.assertEqual(r.size, 8192)
                self.assertEqual(r.id, 0)
                self.assertIsNone(r.name)
                self.assertFalse(r.read_only)
                self.assertEqual(os.fstat(r.fileno()).st_size, 8192)
        with iomem.Region(1) as r:
            self.assertEqual(r.backend, "memfd")  # auto picks memfd first

    def test_bad_arguments(self):
        with self.assertRaises(ValueError):
            iomem.Region(1, backend="tmpfs")
        with self.assertRaises(ValueError):
            iomem.Region(-1)
        with self.assertRaises(TypeError):
            iomem.Region("4096")
        with self.assertRaises(TypeError):
            iomem.Region(4096, backend=1)
        with self.assertRaises(OSError) as cm:
            iomem.Region(2 * PAGE, max_size=PAGE)
        self.assertEqual(cm.exception.errno, errno.EFBIG)
        # the limit and the remedy, not libiomem's "size above the limit"
        self.assertEqual(cm.exception.strerror, f"size {2 * PAGE} is above max_size {PAGE}: pass a larger max_size")
        with self.assertRaises(OSError) as cm:
            iomem.Region(1 << 40)
        self.assertEqual((cm.exception.errno, cm.exception.strerror),
                         (errno.EFBIG, f"size {1 << 40} is above the default max_size (64 GiB): pass a larger max_size"))
        with self.assertRaises(TypeError):
            class Sub(iomem.Region):  # noqa: F841 - not a base type
                pass

    def test_buffer_is_the_memory(self):
        with iomem.Region(4096) as r:
            m = memoryview(r)
            self.assertEqual((m.nbytes, m.readonly, m.format, m.ndim), (4096, False, "B", 1))
            m[0:5] = b"hello"
            # a second, independent mapping of the same fd sees the bytes: no copy anywhere
            self.assertEqual(os.pread(r.fileno(), 5, 0), b"hello")
            os.pwrite(r.fileno(), b"world", 100)
            self.assertEqual(bytes(m[100:105]), b"world")
            self.assertEqual(bytes(r.map()[0:5]), b"hello")
            m.release()

    def test_close_refused_while_exported(self):
        r = iomem.Region(4096)
        m = memoryview(r)
        a = np.frombuffer(r, dtype=np.uint8)
        with self.assertRaises(BufferError):
            r.close()
        with self.assertRaises(BufferError):
            r.resize(8192)
        with self.assertRaises(BufferError):
            r.seal("write")
        self.assertFalse(r.closed)
        a[0] = 42
        self.assertEqual(m[0], 42)
        del a
        with self.assertRaises(BufferError):
            r.close()
        m.release()
        r.close()
        self.assertTrue(r.closed)
        r.close()  # idempotent

    def test_context_manager_exit_with_live_view(self):
        with self.assertRaises(BufferError):
            with iomem.Region(4096) as r:
                m = memoryview(r)
        m.release()
        r.close()

    def test_closed_region(self):
        r = iomem.Region(4096)
        r.close()
        for call in (r.fileno, r.refresh, lambda: r.size, lambda: r.seals, lambda: memoryview(r),
                     lambda: r.resize(1), lambda: r.seal(0), lambda: r.backend):
            with self.assertRaises(ValueError):
                call()
        self.assertIn("closed", repr(r))
        with self.assertRaises(ValueError):
            with r:
                pass

    def test_unknown_seal_bits(self):
        # said here: it was libiomem's "invalid argument: name, flags, size, seals or file descriptor"
        with iomem.Region(PAGE) as r:
            with self.assertRaisesRegex(ValueError, r"^unknown seal bits 0x100000 \(SEAL_SEAL, SEAL_SHRINK"):
                r.seal(iomem.SEAL_GROW | 1 << 20)
            self.assertEqual(r.seals, 0)

    def test_dealloc_unmaps_and_closes(self):
        before = self.maps_lines()
        r = iomem.Region(1 << 20)
        m = memoryview(r)
        m[-1] = 1
        ref = weakref.ref(r)
        del r
        self.assertIsNotNone(ref())  # the view keeps the region alive
        m.release()
        del m
        gc.collect()
        self.assertIsNone(ref())
        after = self.maps_lines()
        self.assertLessEqual(after, before)

    def test_empty_region(self):
        with iomem.Region(0) as r:
            m = memoryview(r)
            self.assertEqual(m.nbytes, 0)
            self.assertEqual(np.frombuffer(r, dtype=np.uint8).size, 0)
            m.release()
            r.resize(PAGE)
            with memoryview(r) as m2:
                self.assertEqual(m2.nbytes, PAGE)

    def test_empty_region_is_writable(self):
        # a writable region of 0 bytes gave read-only buffers: readinto()/recv_into() of it raised BufferError
        # where a bytearray(0) reads 0 bytes, and numpy's array was not writeable
        rfd, wfd = os.pipe()
        try:
            with iomem.Region(0, backend="memfd") as r:
                with memoryview(r) as m:
                    self.assertFalse(m.readonly)
                a = np.frombuffer(r, dtype=np.uint8)
                self.assertTrue(a.flags.writeable)
                del a
                with os.fdopen(os.dup(rfd), "rb", buffering=0) as f:
                    self.assertEqual(f.readinto(r), 0)
                r.seal("write")
                with memoryview(r) as m:  # sealed: read-only, as a region with bytes
                    self.assertTrue(m.readonly)
        finally:
            os.close(rfd)
            os.close(wfd)

    def test_numpy_zero_copy(self):
        with iomem.Region(8 * 1024) as r:
            a = np.frombuffer(r, dtype=np.float64)
            self.assertTrue(a.flags.writeable)
            a[:] = np.arange(1024)
            with memoryview(r).cast("d") as view:
                self.assertEqual(view[1023], 1023.0)
            self.assertEqual(np.frombuffer(os.pread(r.fileno(), 8 * 1024, 0), dtype=np.float64).sum(),
                             1023 * 1024 / 2)
            del a

    def test_fileno_cloexec_and_from_fd(self):
        with iomem.Region(4096) as r:
            self.assertTrue(fcntl.fcntl(r.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
            with memoryview(r) as m:
                m[0:3] = b"abc"
            fd = os.dup(r.fileno())
            with iomem.Region.from_fd(fd) as copy:
                self.assertNotEqual(copy.fileno(), fd)  # a duplicate: fd stays the caller's
                self.assertTrue(fcntl.fcntl(copy.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
                self.assertEqual(copy.size, 4096)
                self.assertEqual(copy.backend, "memfd")
                with memoryview(copy) as m:
                    self.assertEqual(bytes(m[0:3]), b"abc")
            os.close(fd)
        with self.assertRaises(OSError) as cm:
            iomem.Region.from_fd(12345)
        self.assertEqual(cm.exception.errno, errno.EBADF)
        rd, wr = os.pipe()
        with self.assertRaises(OSError) as cm:
            iomem.Region.from_fd(rd)
        self.assertEqual(cm.exception.errno, errno.EINVAL)
        # says what is wrong (it was libiomem's "invalid argument: name, flags, size, seals or file descriptor")
        self.assertEqual(cm.exception.strerror, "not a memory file (a memfd, shm object or regular file)")
        # a memory file opened write-only is one: the error says what is wrong with it instead
        with iomem.Region(PAGE) as r:
            wo = os.open(f"/proc/self/fd/{r.fileno()}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                with self.assertRaises(OSError) as cm:
                    iomem.Region.from_fd(wo)
                self.assertEqual((cm.exception.errno, cm.exception.strerror),
                                 (errno.EINVAL, "a memory file opened write-only (or O_PATH): open it readable"))
            finally:
                os.close(wo)
        os.close(rd)
        os.close(wr)

    def test_from_fd_read_only(self):
        with iomem.Region(4096, backend="file") as r:
            path = f"/proc/self/fd/{r.fileno()}"
            fd = os.open(path, os.O_RDONLY)
            with iomem.Region.from_fd(fd) as ro:
                self.assertTrue(ro.read_only)
                m = memoryview(ro)
                self.assertTrue(m.readonly)
                with self.assertRaises(TypeError):
                    m[0] = 1
                a = np.frombuffer(ro, dtype=np.uint8)
                self.assertFalse(a.flags.writeable)
                with self.assertRaises(ValueError):
                    a[0] = 1
                with self.assertRaises(TypeError):  # "underlying buffer is not writable"
                    ctypes.c_char.from_buffer(ro)
                del a
                m.release()
            os.close(fd)

    def test_seals(self):
        with iomem.Region(4096) as r:
            self.assertEqual(r.seals, 0)
            self.assertEqual(r.seal("shrink,grow"), iomem.SEAL_SHRINK | iomem.SEAL_GROW)
            with self.assertRaises(PermissionError):
                r.resize(8192)
            with memoryview(r) as m:
                m[0] = 7  # still writable
            self.assertEqual(r.seal(iomem.SEAL_WRITE) & iomem.SEAL_WRITE, iomem.SEAL_WRITE)
            m = memoryview(r)
            self.assertTrue(m.readonly)  # sealed against writes: buffers are read-only from now on
            self.assertEqual(m[0], 7)
            with self.assertRaises(TypeError):
                m[0] = 8
            m.release()
            r.seal(iomem.SEAL_SEAL)
            with self.assertRaises(PermissionError):
                r.seal(iomem.SEAL_FUTURE_WRITE)
            with self.assertRaises(ValueError):
                r.seal("bogus")
            with self.assertRaises(TypeError):
                r.seal(1.5)
        self.assertEqual(iomem.parse_seals("write seal"), iomem.SEAL_WRITE | iomem.SEAL_SEAL)

    def test_seal_write_busy_elsewhere(self):
        with iomem.Region(4096) as r:
            import mmap
            other = mmap.mmap(r.fileno(), 4096)  # a writable shared mapping not ours
            with self.assertRaises(OSError) as cm:
                r.seal("write")
            self.assertEqual(cm.exception.errno, errno.EBUSY)
            other.close()
            r.seal("write")

    def test_seal_unsupported(self):
        for backend in ("shm", "file"):
            with iomem.Region(4096, backend=backend) as r:
                self.assertEqual(r.seals, 0)
                with self.assertRaises(OSError) as cm:
                    r.seal("grow")
                self.assertEqual(cm.exception.errno, errno.EOPNOTSUPP)

    def test_with_block_left_by_an_exception_under_a_live_buffer_keeps_the_exception(self):
        # close()'s BufferError replaced the body's exception (KeyError only as __context__)
        with self.assertRaises(KeyError):
            with iomem.Region(PAGE) as r:
                m = memoryview(r)
                raise KeyError("the body's error")
        self.assertFalse(r.closed)  # left open: its buffer is alive
        m.release()
        r.close()
        with self.assertRaises(BufferError):  # leaving normally still refuses to close under a buffer
            with iomem.Region(PAGE) as r:
                m = memoryview(r)
        m.release()
        r.close()

    def test_resize_remaps(self):
        with iomem.Region(PAGE) as r:
            with memoryview(r) as m:
                m[0] = 1
            r.resize(4 * PAGE)
            self.assertEqual(r.size, 4 * PAGE)
            with memoryview(r) as m:
                self.assertEqual((m.nbytes, m[0]), (4 * PAGE, 1))
                m[-1] = 2
            os.ftruncate(r.fileno(), 2 * PAGE)  # someone else resizes it
            self.assertEqual(r.refresh(), 2 * PAGE)
            with memoryview(r) as m:
                self.assertEqual(m.nbytes, 2 * PAGE)

    def test_resize_refuses_to_shrink_under_another_regions_buffer(self):
        # Two Regions of one file (Region.from_fd of its fd): shrinking through one under a buffer of the other
        # made that buffer's next access past the new end kill the interpreter with SIGBUS.
        with iomem.Region(4 * PAGE) as r1, iomem.Region.from_fd(r1.fileno()) as r2:
            with memoryview(r1) as m:
                with self.assertRaisesRegex(BufferError, "another Region of the same file"):
                    r2.resize(PAGE)
                self.assertEqual(os.fstat(r1.fileno()).st_size, 4 * PAGE)  # nothing was cut
                m[-1] = 3  # still mapped and backed
                r2.resize(8 * PAGE)  # growing cuts nothing off: allowed
                arr = np.frombuffer(r1, dtype=np.uint8)  # the mapping the buffers share: 4 pages
                with self.assertRaises(BufferError):
                    r2.resize(4 * PAGE - 1)
                r2.resize(4 * PAGE)  # down to what the buffers map: allowed
                del arr
            r2.resize(PAGE)  # every buffer released: the idle mapping is no obstacle, the next one maps again
            self.assertEqual(r2.size, PAGE)
            with memoryview(r1) as m:
                self.assertEqual(m.nbytes, PAGE)
            with iomem.Region(PAGE) as other, memoryview(other):
                r2.resize(0)  # a buffer of another file does not count

    def test_fork_parent_child(self):
        with iomem.Region(1024) as r:
            m = memoryview(r)
            m[0:18] = b"Hello from parent!"
            pid = os.fork()
            if pid == 0:
                ok = bytes(m[0:18]) == b"Hello from parent!"
                m[100:117] = b"Hello from child!"
                os._exit(0 if ok else 1)
            _, status = os.waitpid(pid, 0)
            self.assertEqual(os.waitstatus_to_exitcode(status), 0)
            self.assertEqual(bytes(m[100:117]), b"Hello from child!")
            m.release()

    def test_send_fds(self):
        with iomem.Region(2048) as r:
            a, b = socket.socketpair()
            socket.send_fds(a, [b"region"], [r.fileno()])
            msg, fds, _, _ = socket.recv_fds(b, 100, 1)
            self.assertEqual(msg, b"region")
            with iomem.Region.from_fd(fds[0]) as got:
                os.close(fds[0])
                with memoryview(got) as m:
                    m[1000:1004] = b"back"
            with memoryview(r) as m:
                self.assertEqual(bytes(m[1000:1004]), b"back")
            a.close()
            b.close()

    def test_pickle_only_through_multiprocessing(self):
        import pickle
        with iomem.Region(4096) as r:
            with self.assertRaises(TypeError):
                pickle.dumps(r)

    def spawn_context(self):
        """multiprocessing's spawn context, with its resource tracker (a process-lifetime fd) already running."""
        import multiprocessing
        from multiprocessing import resource_tracker
        resource_tracker.ensure_running()
        self.fds_before = fd_count()
        return multiprocessing.get_context("spawn")

    def test_multiprocessing_spawn_argument(self):
        ctx = self.spawn_context()
        with iomem.Region(4096) as r:
            p = ctx.Process(target=_mp_child_writes, args=(r, b"from a spawned child"))
            p.start()
            p.join(120)
            self.assertEqual(p.exitcode, 0)
            with memoryview(r) as m:
                self.assertEqual(bytes(m[0:20]), b"from a spawned child")

    def test_multiprocessing_pipe(self):
        ctx = self.spawn_context()
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_mp_child_echoes, args=(child,))
        p.start()
        child.close()
        with iomem.Region(4096) as r:
            parent.send(r)  # the fd goes over multiprocessing's resource sharer
            self.assertFalse(parent.recv())
            with memoryview(r) as m:
                self.assertEqual(m[0], 42)
        with iomem.Region(4096, backend="file") as f:
            fd = os.open(f"/proc/self/fd/{f.fileno()}", os.O_RDONLY)
            with iomem.Region.from_fd(fd) as ro:
                os.close(fd)
                parent.send(ro)
                self.assertTrue(parent.recv())  # a read-only fd stays read-only on the other side
        parent.send(None)
        p.join(120)
        self.assertEqual(p.exitcode, 0)
        parent.close()
        from multiprocessing import resource_sharer
        resource_sharer.stop()  # its listening socket is an fd of this process

    def test_many_regions_no_leak(self):
        for _ in range(2000):
            with iomem.Region(4096) as r:
                memoryview(r)[0] = 1
        for _ in range(2000):
            r = iomem.Region(4096)
            memoryview(r)[0] = 1
            del r  # dealloc without close

    def test_module(self):
        self.assertEqual(iomem.strerror(errno.EEXIST), "a region with this name already exists")
        self.assertEqual(iomem.strerror(-errno.ENOENT), "no region with this name")
        self.assertIsInstance(iomem.__version__, str)
        old = os.environ.get("IOMEM_SOCKET")
        os.environ["IOMEM_SOCKET"] = "/tmp/x.sock"
        try:
            self.assertEqual(iomem.default_socket(), "/tmp/x.sock")
        finally:
            if old is None:
                del os.environ["IOMEM_SOCKET"]
            else:
                os.environ["IOMEM_SOCKET"] = old

    def test_sanitizer_runtime_loaded(self):
        # the sanitized build runs this suite with libasan preloaded: make sure it really is in this process
        with open("/proc/self/maps") as f:
            maps = f.read()
        if os.environ.get("IOMEM_PY_SANITIZED"):
            self.assertTrue("libasan" in maps or "clang_rt.asan" in maps, "ASan runtime not loaded")
        else:
            self.assertNotIn("libasan", maps)
