# SPDX-License-Identifier: LGPL-2.1-or-later
"""iomem.aio and the asynchronous half of iomem.Client against the real iomemd, in a real asyncio loop."""

import asyncio
import errno
import gc
import os
import select
import signal
import sys
import threading

import iomem
import iomem.aio
from pyitutil import Daemon, FdCheckedCase, fd_count, snapshot


def read(region, n):
    with memoryview(region) as m:
        return bytes(m[:n])


class AioCase(FdCheckedCase):
    def arun(self, coro, timeout=120):
        """Run @coro in a fresh event loop (a hang fails the test instead of the suite)."""
        return asyncio.run(asyncio.wait_for(coro, timeout))

    async def subprocess_python(self, code, *args):
        """Run @code in an unrelated python3 without blocking the loop; return its stdout."""
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, *args,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        self.assertEqual(proc.returncode, 0, err.decode())
        return out.decode()


class TestAio(AioCase):
    daemon_args = ("--quota-watches", "8")

    def test_open_wait_resolves_when_another_process_creates(self):
        async def main():
            async with iomem.aio.connect(self.daemon.socket) as c:
                waiter = asyncio.ensure_future(c.open("aio.made", wait=True))
                waiter_ro = asyncio.ensure_future(c.open("aio.made", wait=True, read_only=True, timeout=60))
                await asyncio.sleep(0)
                self.assertFalse(waiter.done())
                await self.subprocess_python("""if True:
                    import sys, iomem
                    with iomem.Client(sys.argv[1]) as c, c.create("aio.made", 4096) as r:
                        memoryview(r)[:5] = b"hello"
                    """, self.daemon.socket)
                with await waiter as r, await waiter_ro as ro:
                    self.assertEqual((r.name, r.read_only, read(r, 5)), ("aio.made", False, b"hello"))
                    self.assertEqual((ro.read_only, read(ro, 5)), (True, b"hello"))
                    with self.assertRaises(TypeError):
                        memoryview(ro)[0] = 1  # read-only buffer
                # without wait: at once, FileNotFoundError for a missing name
                with self.assertRaises(FileNotFoundError) as cm:
                    await c.open("aio.none")
                self.assertEqual((cm.exception.errno, cm.exception.filename), (errno.ENOENT, "aio.none"))
                st = await c.stat("aio.made")
                self.assertEqual((st.size, st.open_count), (4096, 3))  # the CREATE counts too
                await c.ping()
        self.arun(main())

    def test_watch_yields_created_published_deleted_in_order(self):
        async def main():
            async with iomem.aio.connect(self.daemon.socket) as c, c.watch("ev.") as events:
                self.assertGreater(events.id, 0)
                # the changes come from another process, while this loop waits in the iterator
                changes = asyncio.ensure_future(self.subprocess_python("""if True:
                    import sys, iomem
                    with iomem.Client(sys.argv[1]) as c:
                        c.create("nomatch", 4096).close()
                        c.create("ev.a", 8192).close()
                        g1 = c.stat("ev.a").generation
                        snap = iomem.Region(4096, backend="memfd")
                        snap.seal("shrink,grow,write")
                        g2 = c.publish("ev.a", snap, expect_generation=g1)
                        c.delete("ev.a")
                        c.delete("nomatch")
                        print(g1, g2)
                    """, self.daemon.socket))
                got = []
                async for ev in events:
                    got.append(ev)
                    if len(got) == 3:
                        break
                g1, g2 = map(int, (await changes).split())
                self.assertEqual([(e.kind, e.name, e.generation, e.watch_id) for e in got],
                                 [("created", "ev.a", g1, events.id), ("published", "ev.a", g2, events.id),
                                  ("deleted", "ev.a", g2, events.id)])
                self.assertEqual(got[1].replaced_id, got[0].id)
            # the watch ended with the block: the daemon has none of this uid's left
            self.assertTrue(events._done)
        self.arun(main())

    def test_several_watches_on_one_client_and_lazy_start(self):
        async def main():
            async with iomem.aio.connect(self.daemon.socket) as c:
                wa = await c.watch("s.a")
                wb = c.watch("s.")
                await wb.start()
                other = iomem.Client(self.daemon.socket)
                try:
                    other.create("s.a1", 4096).close()
                    other.create("s.b1", 4096).close()
                finally:
                    other.close()
                ea = await wa.__anext__()
                self.assertEqual((ea.name, ea.watch_id), ("s.a1", wa.id))
                names = [(await wb.__anext__()).name for _ in range(2)]
                self.assertEqual(names, ["s.a1", "s.b1"])
                await wa.aclose()
                with self.assertRaises(StopAsyncIteration):
                    await wa.__anext__()
            # close() ends the other watch's iteration
            with self.assertRaises(StopAsyncIteration):
                await wb.__anext__()
        self.arun(main())

    def test_open_version_resolves_on_publish(self):
        async def main():
            async with iomem.aio.connect(self.daemon.socket) as c:
                producer = iomem.Client(self.daemon.socket)
                try:
                    with snapshot(b"one") as s1:
                        g1 = producer.publish("ver.x", s1)
                    with await c.open_version("ver.x", 0) as r:  # any version: the current one at once
                        self.assertEqual((r.generation, read(r, 3)), (g1, b"one"))
                    nxt = asyncio.ensure_future(c.open_version("ver.x", g1, read_only=True))
                    await asyncio.sleep(0.05)
                    self.assertFalse(nxt.done())
                    out = await self.subprocess_python("""if True:
                        import sys, iomem
                        snap = iomem.Region(4096, backend="memfd")
                        memoryview(snap)[:3] = b"two"
                        snap.seal("shrink,grow,write")
                        with iomem.Client(sys.argv[1]) as c:
                            print(c.publish("ver.x", snap, expect_generation=int(sys.argv[2])))
                        """, self.daemon.socket, str(g1))
                    with await nxt as r:
                        self.assertEqual((r.generation, read(r, 3), r.read_only), (int(out), b"two", True))
                        self.assertGreater(r.generation, g1)
                finally:
                    producer.close()
        self.arun(main())

    def test_timeouts_raise_etimedout_with_the_daemons_detail(self):
        async def main():
            async with iomem.aio.connect(self.daemon.socket) as c:
                with self.assertRaises(FileNotFoundError) as cm:
                    await c.stat("to.none")  # an earlier error reply with another detail
                self.assertEqual(cm.exception.strerror, "no such region")
                with self.assertRaises(TimeoutError) as cm:
                    await c.open("to.none", wait=True, timeout=0.05)
                self.assertEqual((cm.exception.errno, cm.exception.strerror, cm.exception.filename),
                                 (errno.ETIMEDOUT, "no such region yet", "to.none"))
                with snapshot(b"v") as s:
                    g = c.client.publish("to.v", s)
                with self.assertRaises(TimeoutError) as cm:
                    await c.open_version("to.v", g, timeout=0.05)
                self.assertEqual(cm.exception.strerror, "no newer version yet")
                await c.ping()  # a daemon-side wait timeout leaves the connection usable
                with self.assertRaises(ValueError):
                    await c.open("to.none", timeout=1)
        self.arun(main())

    def test_cancelled_awaits_leak_no_fd(self):
        async def main():
            async with iomem.aio.connect(self.daemon.socket) as c:
                base = fd_count()
                tasks = [asyncio.ensure_future(c.open("cx.a", wait=True)) for _ in range(20)]
                await asyncio.sleep(0.05)
                for t in tasks:
                    t.cancel()
                with self.assertRaises(asyncio.TimeoutError):
                    await asyncio.wait_for(c.open_version("cx.a", 0), 0.05)
                results = await asyncio.gather(*tasks, return_exceptions=True)
                self.assertTrue(all(isinstance(r, asyncio.CancelledError) for r in results))
                # the daemon still answers the 21 OPENs once the name exists: each region is closed on arrival
                with c.client.create("cx.a", 4096):
                    pass
                await c.ping()  # replies come in order: every OPEN answer has been processed before this one
                gc.collect()
                self.assertEqual(fd_count(), base)
        self.arun(main())

    def test_many_concurrent_awaits_on_one_client(self):
        n = 60  # waiting OPENs in flight on one connection: the daemon allows 64 (EDQUOT past them)

        async def waiting(c, i):
            r = await c.open(f"many.{i}", wait=True, timeout=60)
            with r:
                self.assertEqual(read(r, 8), i.to_bytes(8, "little"))
            st = await c.stat(f"many.{i}")
            self.assertEqual(st.size, 4096)
            return r.name

        async def at_once(c, i):
            name = f"many.{i % n}"
            with await c.open(name, read_only=True) as r:
                self.assertEqual(read(r, 8), (i % n).to_bytes(8, "little"))
            await c.ping()
            return (await c.stat(name)).id

        async def main():
            async with iomem.aio.connect(self.daemon.socket) as c:
                tasks = [asyncio.ensure_future(waiting(c, i)) for i in range(n)]
                await asyncio.sleep(0)
                maker = iomem.Client(self.daemon.socket)
                try:
                    for i in reversed(range(n)):
                        with maker.create(f"many.{i}", 4096) as r:
                            memoryview(r)[:8] = i.to_bytes(8, "little")
                        if i % 10 == 0:
                            await asyncio.sleep(0)  # let the loop take replies meanwhile
                    more = [asyncio.ensure_future(at_once(c, i)) for i in range(500)]
                    self.assertEqual(await asyncio.gather(*tasks), [f"many.{i}" for i in range(n)])
                    ids = await asyncio.gather(*more)
                    self.assertEqual(ids, [maker.stat(f"many.{i % n}").id for i in range(500)])
                finally:
                    maker.close()
        self.arun(main())

    def test_blocking_calls_of_threads_share_the_connection(self):
        # a thread's blocking call on the same iomem.Client reads the asynchronous OPEN's reply and the
        # watch's events: they reach the loop through the wakeup callback
        async def main():
            async with iomem.aio.connect(self.daemon.socket) as c, c.watch("th.") as events:
                waiter = asyncio.ensure_future(c.open("th.a", wait=True))
                await asyncio.sleep(0.05)
                loop = asyncio.get_running_loop()

                def blocking():
                    with c.client.create("th.a", 4096):
                        pass
                    for _ in range(50):
                        c.client.ping()
                await loop.run_in_executor(None, blocking)
                r = await waiter
                r.close()
                ev = await events.__anext__()
                self.assertEqual((ev.kind, ev.name), ("created", "th.a"))
                c.client.delete("th.a")  # a blocking call from the loop's own thread
                self.assertEqual((await events.__anext__()).kind, "deleted")
        self.arun(main())

    def test_close_with_requests_pending(self):
        async def main():
            c = await iomem.aio.connect(self.daemon.socket)
            t = [asyncio.ensure_future(c.open("cl.none", wait=True)) for _ in range(5)]
            w = await c.watch("cl.")
            await asyncio.sleep(0.05)
            c.close()
            for r in await asyncio.gather(*t, return_exceptions=True):
                self.assertIsInstance(r, OSError)
                self.assertEqual(r.errno, errno.ENOTCONN)
            with self.assertRaises(StopAsyncIteration):
                await w.__anext__()
            with self.assertRaises(ValueError):
                await c.ping()
            c.close()  # idempotent
            self.assertTrue(c.client.closed)
        self.arun(main())


    def test_dropped_without_close(self):
        async def main():
            c = await iomem.aio.connect(self.daemon.socket)
            sync, fd = c.client, c.client.fileno()
            await c.ping()  # (a request in progress would keep it alive: its coroutine refers to it)
            loop = asyncio.get_running_loop()
            self.assertIn(fd, loop._selector.get_map())
            with self.assertWarns(ResourceWarning):
                del c
                gc.collect()
            self.assertTrue(sync.closed)  # and the loop no longer watches its fd
            self.assertNotIn(fd, loop._selector.get_map())
            await asyncio.sleep(0)
        self.arun(main())


class TestAsyncClient(FdCheckedCase):
    """The extension's asynchronous calls without asyncio: process(), callbacks, close and collection."""

    daemon_args = ()

    def drive(self, c, until, rounds=2000):
        for _ in range(rounds):
            if until():
                return
            fd, events, timeout, _ = c.loop_state()
            poll = select.poll()
            poll.register(fd, events)
            poll.poll(50 if timeout is None else min(50, int(timeout * 1000)))
            c.process()
        self.fail("the callbacks did not come")

    def test_callbacks_and_loop_state(self):
        c = self.client()
        got = []
        c.open_async("raw.none", lambda e, r: got.append(("open", e, r)))
        c.stat_async("raw.none", lambda e, r: got.append(("stat", e, r)))
        c.ping_async(lambda e, r: got.append(("ping", e, r)))
        self.assertEqual(got, [])  # never from the call itself
        fd, events, timeout, reconnects = c.loop_state()
        self.assertEqual((fd, reconnects, timeout), (c.fileno(), 0, None))
        self.assertTrue(events & select.POLLIN)
        self.drive(c, lambda: len(got) == 3)
        self.assertEqual([(k, type(e), r) for k, e, r in got],
                         [("open", FileNotFoundError, None), ("stat", FileNotFoundError, None), ("ping", type(None), None)])
        self.assertEqual((got[0][1].filename, got[0][1].strerror), ("raw.none", "no such region"))
        with self.assertRaises(TypeError):
            c.ping_async(None)
        with self.assertRaises(ValueError):
            c.open_async("raw.none", print, timeout=1)

    def test_a_callbacks_exception_comes_out_of_process(self):
        c = self.client()
        seen = []

        def bad(e, r):
            seen.append(1)
            raise KeyError("from the callback")
        c.ping_async(bad)
        c.ping_async(lambda e, r: seen.append(2))
        with self.assertRaises(KeyError):
            self.drive(c, lambda: len(seen) == 2)
        self.drive(c, lambda: len(seen) == 2)  # the other callback ran as well
        self.assertEqual(seen, [1, 2])

    def test_close_and_collection_end_pending_callbacks(self):
        got = []
        c = iomem.Client(self.daemon.socket)
        for _ in range(3):
            c.open_async("col.none", lambda e, r: got.append(e), wait=True)
        c.close()
        self.assertEqual([e.errno for e in got], [errno.ENOTCONN] * 3)
        self.assertIn("closed", got[0].strerror)
        # collected with requests pending, also in a cycle through its own callback
        got.clear()
        c = iomem.Client(self.daemon.socket)
        c.open_async("col.none", lambda e, r, c=c: got.append(e), wait=True)
        c.set_event_callback(lambda ev, c=c: None)
        del c
        gc.collect()
        self.assertEqual([e.errno for e in got], [errno.ENOTCONN])
        # close() from inside a callback of process(): process() disconnects when it returns
        c = iomem.Client(self.daemon.socket)
        c.ping_async(lambda e, r: c.close())
        c.open_async("col.none", lambda e, r: got.append(e), wait=True)
        self.drive(c, lambda: c.closed)
        self.assertEqual(got[-1].errno, errno.ENOTCONN)
        # ... and a callback that closes, then raises: the exception still comes out of process()
        c = iomem.Client(self.daemon.socket)

        def close_and_raise(e, r):
            c.close()
            raise KeyError("after close")
        c.ping_async(close_and_raise)
        with self.assertRaises(KeyError):
            self.drive(c, lambda: c.closed)
        self.assertTrue(c.closed)

    def test_close_from_another_thread_while_processing(self):
        # a stress test (most useful under ASan): one thread submits and processes, another closes meanwhile;
        # close() during process() or a submit (both run without the GIL) is left to them, so nothing is freed
        # under them, and every callback runs exactly once
        for round in range(100):
            c = iomem.Client(self.daemon.socket)
            calls = []
            submitted = [0]
            stop = threading.Event()

            def loop():
                try:
                    while not stop.is_set():
                        c.ping_async(lambda e, r: calls.append(e))
                        submitted[0] += 1
                        c.stat_async("none", lambda e, r: calls.append(e))
                        submitted[0] += 1
                        c.process()
                except ValueError:  # closed
                    pass
            t = threading.Thread(target=loop)
            t.start()
            for _ in range(round % 7):
                os.sched_yield()
            c.close()
            stop.set()
            t.join()
            self.assertTrue(c.closed)
            self.assertEqual(len(calls), submitted[0])
            for e in calls:
                self.assertTrue(e is None or isinstance(e, OSError), e)

    def test_wrong_process(self):
        c = self.client()
        pid = os.fork()
        if pid == 0:
            try:
                c.ping_async(print)
            except RuntimeError:
                os._exit(0)
            os._exit(1)
        self.assertEqual(os.waitpid(pid, 0)[1], 0)

    def test_reply_timeout_has_no_stale_detail(self):
        d = Daemon()
        try:
            c = iomem.Client(d.socket, timeout=0.2)
            got = []
            c.stat_async("st.none", lambda e, r: got.append(e))
            self.drive(c, lambda: got)
            self.assertEqual(got[0].strerror, "no such region")
            d.proc.send_signal(signal.SIGSTOP)  # the daemon does not answer: the client's own reply timeout
            try:
                c.ping_async(lambda e, r: got.append(e))
                # the timeout broke the connection: process() says so, after the ping's callback
                with self.assertRaises(OSError) as cm:
                    self.drive(c, lambda: False)
                self.assertEqual(cm.exception.errno, errno.ENOTCONN)
            finally:
                d.proc.send_signal(signal.SIGCONT)
            self.assertEqual(len(got), 2)
            self.assertEqual(got[1].errno, errno.ETIMEDOUT)
            self.assertEqual(got[1].strerror, iomem.strerror(errno.ETIMEDOUT))  # not the stat's "no such region"
            c.close()
        finally:
            self.assertEqual(d.stop(), 0)


class TestAioRestart(AioCase):
    """A daemon restart while awaiting: OPEN, STAT and PING are sent again on the new connection."""

    def test_daemon_restart_while_awaiting(self):
        d = Daemon()

        async def main():
            async with iomem.aio.connect(d.socket) as c, c.watch("rs.") as events:
                waiter = asyncio.ensure_future(c.open("rs.a", wait=True, timeout=120))
                await asyncio.sleep(0.05)
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, d.restart)  # the regions and the waits die with the daemon
                # the watch comes back with the connection: "overflow" first, changes were missed
                ev = await events.__anext__()
                self.assertEqual(ev.kind, "overflow")
                self.assertFalse(waiter.done())
                with iomem.Client(d.socket) as other, other.create("rs.a", 4096) as r:
                    memoryview(r)[:2] = b"ok"
                with await waiter as r:  # the waiting OPEN was sent again to the new daemon
                    self.assertEqual(read(r, 2), b"ok")
                self.assertEqual((await events.__anext__()).kind, "created")
                self.assertEqual(c.client.loop_state()[3], 1)  # one reconnect
                # no daemon comes back within the reconnect window: ENOTCONN
                c.client.timeout = 0.3
                await loop.run_in_executor(None, d.kill)
                with self.assertRaises(OSError) as cm:
                    await c.stat("rs.a")
                self.assertEqual(cm.exception.errno, errno.ENOTCONN)
                with self.assertRaises(OSError) as cm:
                    await events.__anext__()
                self.assertEqual(cm.exception.errno, errno.ENOTCONN)

        try:
            self.arun(main())
        finally:
            if d.proc.poll() is None:
                self.assertEqual(d.stop(), 0)
            else:
                d.stop()


if __name__ == "__main__":
    import unittest
    unittest.main()
