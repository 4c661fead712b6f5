# SPDX-License-Identifier: LGPL-2.1-or-later
"""Not run: type-checked by test_types.py (mypy --strict). Every call of the package once, every result's type
asserted exactly (assert_type), and calls the stub must refuse (each with a type: ignore that mypy --strict
reports as unused if the stub stops refusing it). A stub that drifts from the extension makes this fail."""

import asyncio
import pathlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from typing_extensions import Literal, assert_type

import iomem
import iomem.aio
from iomem import Region

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath


def module_level() -> None:
    assert_type(iomem.__version__, str)
    assert_type(iomem.strerror(2), str)
    assert_type(iomem.parse_seals("shrink,grow"), int)
    assert_type(iomem.default_socket(), str)
    for bit in (iomem.SEAL_SEAL, iomem.SEAL_SHRINK, iomem.SEAL_GROW, iomem.SEAL_WRITE, iomem.SEAL_FUTURE_WRITE,
                iomem.REGISTER_SEALS, iomem.REGION_RDONLY, iomem.REGION_LEASED, iomem.REGION_RESIZABLE,
                iomem.REGION_ANONYMOUS):
        assert_type(bit, int)
    iomem.SEAL_WRITE = 0  # type: ignore[misc]  # Final
    iomem.strerror(errno=2)  # type: ignore[call-arg]  # positional only


def regions() -> None:
    r = Region(4096)
    assert_type(r, Region)
    assert_type(Region(4096, "memfd", 8192), Region)
    assert_type(Region(size=4096, backend=None, max_size=0), Region)
    assert_type(Region.from_fd(r.fileno()), Region)
    with open("/dev/null") as f:
        assert_type(Region.from_fd(f), Region)  # an object with fileno()
    with r as same:
        assert_type(same, Region)
    assert_type(r.fileno(), int)
    assert_type(r.map(), memoryview)
    assert_type(r.refresh(), int)
    assert_type(r.resize(8192), None)
    assert_type(r.seal("shrink"), int)
    assert_type(r.seal(iomem.SEAL_GROW), int)
    assert_type(r.close(), None)
    assert_type(r.__exit__(None, None, None), None)
    assert_type(r.size, int)
    assert_type(r.closed, bool)
    assert_type(r.read_only, bool)
    assert_type(r.flags, int)
    assert_type(r.id, int)
    assert_type(r.backend, str)
    assert_type(r.name, str | None)
    assert_type(r.seals, int)
    assert_type(r.generation, int | None)
    assert_type(r.__buffer__(0), memoryview)
    r.size = 1  # type: ignore[misc]  # read-only property
    r.resize(size=1)  # type: ignore[call-arg]  # positional only
    Region(4096, max_size=None)  # type: ignore[arg-type]
    Region.from_fd("3")  # type: ignore[arg-type]


def buffers(r: Region) -> None:
    # mypy 1.0's typeshed predates PEP 688: test_types.py expects exactly these two errors from it
    with memoryview(r) as m:
        assert_type(m, memoryview)
    array = np.frombuffer(r, dtype=np.uint8)
    array[0] = 1


def results(c: iomem.Client) -> None:
    st = c.stat("a")
    assert_type(st, iomem.StatResult)
    assert_type((st.id, st.size, st.ctime_ns, st.open_count, st.seals, st.flags, st.uid, st.gid, st.mode),
                tuple[int, int, int, int, int, int, int, int, int])
    assert_type(st.backend, str)
    assert_type(st.generation, int | None)
    assert_type(st[9], str)
    sid, size, ctime, opens, seals, flags, uid, gid, mode, backend = st  # ten items: generation is not in the tuple
    entries = c.list()
    assert_type(entries, list[iomem.ListEntry])
    e = entries[0]
    assert_type(e.name, str)
    assert_type((e.id, e.size, e.seals, e.mode, e.uid, e.gid), tuple[int, int, int, int, int, int])
    assert_type(c.list("pre/"), list[iomem.ListEntry])
    assert_type(c.list(prefix=None), list[iomem.ListEntry])
    s = c.status()
    assert_type(s, iomem.Status)
    assert_type((s.regions, s.bytes, s.connections, s.uptime_sec), tuple[int, int, int, int])
    assert_type((s.backend, s.server_version), tuple[str, str])
    q = c.quota()
    assert_type(q, iomem.Quota)
    assert_type((q.uid, q.gid, q.bytes, q.max_bytes, q.regions, q.max_regions, q.connections, q.max_connections,
                 q.fds, q.max_fds, q.max_region_size), tuple[int, int, int, int, int, int, int, int, int, int, int])
    metrics = c.metrics()
    assert_type(metrics, list[iomem.Metric])
    mt = metrics[0]
    assert_type((mt.name, mt.help), tuple[str, str])
    assert_type(mt.type, Literal["gauge", "counter"])
    assert_type((mt.label, mt.label_value), tuple[str | None, str | None])
    assert_type((mt.value, mt.id), tuple[int, int])
    ev = c.next_event()
    assert_type(ev, iomem.Event | None)
    assert ev is not None
    assert_type(ev.kind, str | int)
    assert_type(ev.name, str)
    assert_type((ev.id, ev.generation, ev.size, ev.seals, ev.mode, ev.uid, ev.gid, ev.watch_id, ev.replaced_id,
                 ev.dropped), tuple[int, int, int, int, int, int, int, int, int, int])
    assert_type(iomem.StatResult.n_fields, int)


def client() -> None:
    c = iomem.Client()
    assert_type(c, iomem.Client)
    assert_type(iomem.Client("/run/iomemd/iomemd.sock", 5.0), iomem.Client)
    assert_type(iomem.Client(socket=pathlib.Path("/tmp/s"), timeout=None), iomem.Client)
    with c as same:
        assert_type(same, iomem.Client)
    assert_type(c.fileno(), int)
    assert_type(c.create("a", 4096), Region)
    assert_type(c.create(None, 4096, exclusive=True, lease=True, resizable=True, seals="shrink", mode=0o600,
                         backend="memfd"), Region)
    assert_type(c.open("a"), Region)
    assert_type(c.open("a", read_only=True, wait=True, timeout=1.5, after_generation=0), Region)
    assert_type(c.delete("a"), None)
    assert_type(c.resize("a", 8192), None)
    assert_type(c.seal("a", "write"), int)
    assert_type(c.chmod("a", 0o640), None)
    assert_type(c.chown("a", 1000, gid=None), None)
    r = Region(4096)
    assert_type(c.register("a", r), int)
    assert_type(c.register("a", r, lease=True, mode=0o600), int)
    assert_type(c.ping(), None)
    assert_type(c.watch(), int)
    assert_type(c.watch(prefix="pre/"), int)
    assert_type(c.unwatch(1), None)
    assert_type(c.next_event(timeout=0), iomem.Event | None)
    assert_type(c.events(), Iterator[iomem.Event])
    assert_type(c.events(timeout=1), Iterator[iomem.Event])
    assert_type(c.publish("a", r), int)
    assert_type(c.publish("a", r, expect_generation=3, mode=None, lease=False), int)
    assert_type(c.close(), None)
    assert_type(c.__exit__(None, None, None), None)
    assert_type(c.closed, bool)
    assert_type(c.timeout, float | None)
    assert_type(c.socket, StrOrBytesPath | None)  # what Client() was given: None for the default socket
    c.timeout = 2.5
    c.timeout = None
    c.closed = True  # type: ignore[misc]  # read-only property
    c.create("a", 4096, True)  # type: ignore[misc]  # keyword-only
    c.open("a", True)  # type: ignore[misc]  # keyword-only
    c.stat(name="a")  # type: ignore[call-arg]  # positional only
    c.publish("a", b"bytes")  # type: ignore[arg-type]  # a Region
    c.register("a", r, True)  # type: ignore[misc]  # keyword-only


def asynchronous(c: iomem.Client) -> None:
    def opened(error: BaseException | None, region: Region | None) -> None:
        pass

    def statted(error: BaseException | None, st: iomem.StatResult | None) -> None:
        pass

    def pinged(error: BaseException | None, nothing: None) -> None:
        pass

    # callbacks that forget the result is None on error: the stub refuses them (Optional, contravariant)
    def opened_no_none(error: BaseException | None, region: Region) -> None:
        pass

    def statted_no_none(error: BaseException | None, st: iomem.StatResult) -> None:
        pass

    def on_event(ev: iomem.Event) -> None:
        pass

    def wakeup() -> None:
        pass

    assert_type(c.process(), int)
    fd, events, timeout, reconnects = c.loop_state()
    assert_type((fd, events, reconnects), tuple[int, int, int])
    assert_type(timeout, float | None)
    assert_type(c.open_async("a", opened), None)
    assert_type(c.open_async("a", opened, read_only=True, wait=True, timeout=1.0, after_generation=2), None)
    assert_type(c.stat_async("a", statted), None)
    assert_type(c.ping_async(pinged), None)
    assert_type(c.set_event_callback(on_event), None)
    assert_type(c.set_event_callback(None), None)
    assert_type(c.set_wakeup_callback(wakeup), None)
    assert_type(c.set_wakeup_callback(None), None)
    c.open_async("a", on_event)  # type: ignore[arg-type]  # callback(error, region)
    c.stat_async("a", opened)  # type: ignore[arg-type]  # callback(error, StatResult)
    c.open_async("a", opened_no_none)  # type: ignore[arg-type]  # region is None when error is not
    c.stat_async("a", statted_no_none)  # type: ignore[arg-type]  # StatResult is None when error is not


async def aio() -> None:
    c = await iomem.aio.connect()
    assert_type(c, iomem.aio.Client)
    async with iomem.aio.connect("/tmp/s", timeout=2.0) as c2:
        assert_type(c2, iomem.aio.Client)
    assert_type(iomem.aio.Client(iomem.Client()), iomem.aio.Client)
    assert_type(await iomem.aio.connect(pathlib.Path("/tmp/s")), iomem.aio.Client)
    assert_type(c.client, iomem.Client)
    assert_type(await c.open("a"), Region)
    assert_type(await c.open("a", wait=True, read_only=True, timeout=1.0), Region)
    assert_type(await c.open_version("a"), Region)
    assert_type(await c.open_version("a", 3, wait=False, read_only=True, timeout=None), Region)
    assert_type(await c.stat("a"), iomem.StatResult)
    assert_type(await c.ping(), None)
    assert_type(await c.run("create", "a", 4096), Any)  # any blocking call by its name
    w = c.watch("pre/")
    assert_type(w, iomem.aio.Watch)
    assert_type(w.id, int | None)
    assert_type(w.prefix, str | None)
    assert_type(await w, iomem.aio.Watch)
    assert_type(await w.start(), iomem.aio.Watch)
    async with c.watch() as events:
        async for ev in events:
            assert_type(ev, iomem.Event)
    await w.aclose()
    assert_type(c.closed, bool)
    c.close()
    async with c as same:
        assert_type(same, iomem.aio.Client)
    await c.open("a", True)  # type: ignore[misc]  # keyword-only


def unused() -> tuple[Callable[[], None], ...]:
    return (module_level, regions, client, lambda: asyncio.run(aio()))
