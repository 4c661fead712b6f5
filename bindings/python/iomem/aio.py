# SPDX-License-Identifier: LGPL-2.1-or-later
"""iomem.aio: an iomem.Client driven by the running asyncio event loop.

    async with iomem.aio.connect() as c:
        region = await c.open("frames/latest", wait=True)       # the daemon waits, the loop does not
        async with c.watch("frames/") as events:                 # the watch is active inside the block
            async for ev in events:
                ...

The connection's socket is in the loop (loop.add_reader/add_writer per the client's poll events) and a timer
follows the client's deadline (loop.call_later): both call Client.process(), which completes the requests
(open, open_version, stat, ping: libiomem's asynchronous requests) and delivers the events of the watches.
watch() and unwatch() are blocking calls of libiomem, made in the loop's default executor.

Cancelling an await leaves its request to the daemon (libiomem cannot take one back): its answer is dropped
when it comes, and a Region it brings is closed at once.

If the daemon restarts, requests in flight end with ConnectionResetError in libiomem (sent, outcome unknown);
every request here is harmless to repeat (OPEN, OPENV, STAT, PING), so it is sent again once the client has
connected again (a blocking ping() in the executor, within the client's reconnect window), a waiting open with
what is left of its timeout. Watches are made again by libiomem and yield an "overflow" event first: changes
made meanwhile were missed, re-read the state. When no daemon comes back in the window, the awaits and the
watches raise OSError(ENOTCONN).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import select
import warnings
import weakref
from collections.abc import Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import iomem

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath  # what iomem.Client() takes as its socket

__all__ = ["Client", "Watch", "connect"]

# a request lost with its connection this many times in a row gives up (libiomem's own bound)
_MAX_TRIES = 8


def _weak(method: Callable[..., object]) -> Callable[..., object]:
    """A callable that calls @method (a bound method) while its object lives: loop callbacks and the
    extension's callbacks must not keep the Client alive (or make cycles through the extension)."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> object:
        m = ref()
        if m is not None:
            return m(*args)
        return None
    return call


class Client:
    """iomem.Client in an asyncio loop. Make one with ``await iomem.aio.connect(...)`` (or wrap a
    connected iomem.Client: Client(client), in a coroutine); it owns the iomem.Client (``client``) and
    close() closes it. The blocking client stays usable from threads (``client.create(...)``): replies and
    events such a call reads for this one are handed over when it returns (its wakeup callback)."""

    def __init__(self, client: iomem.Client) -> None:
        if not isinstance(client, iomem.Client):
            raise TypeError("iomem.aio.Client wraps an iomem.Client")
        self.client = client
        self._loop = asyncio.get_running_loop()
        self._fd = -1
        self._reconnects: int | None = None
        self._writing = False
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._broken = False
        self._reconnecting: asyncio.Task[None] | None = None  # the task connecting again, while it runs
        self._watches: dict[int, Watch] = {}  # watch id -> Watch
        self._early: list[iomem.Event] = []  # events that came for a watch not yet known (watch() in the executor)
        self._making = 0  # watch() calls in the executor
        self._events_on = False
        self._process_cb = _weak(self._process)
        wake = _weak(self._wake)
        client.set_wakeup_callback(wake)
        self._arm()

    # ---- the loop integration ------------------------------------------------------------------------

    def _wake(self) -> None:
        """After a blocking call, from whichever thread made it: process() in the loop."""
        if self._closed:
            return
        try:
            self._loop.call_soon_threadsafe(self._process_cb)
        except RuntimeError:  # the loop is closed
            pass

    def _disarm(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            if self._writing:
                self._loop.remove_writer(self._fd)
        self._fd = -1
        self._writing = False
        if self._timer:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        """Watch the fd for what the client waits for, and set the timer to its deadline."""
        if self._closed or self._broken:
            return
        fd, events, timeout, reconnects = self.client.loop_state()
        if fd != self._fd or reconnects != self._reconnects:
            # a new connection (after a restart the number may be the same, the socket is not)
            self._disarm()
            self._reconnects = reconnects
            if fd >= 0:
                self._loop.add_reader(fd, self._process_cb)
                self._fd = fd
        want_write = bool(events & select.POLLOUT) and self._fd >= 0
        if want_write != self._writing:
            if want_write:
                self._loop.add_writer(self._fd, self._process_cb)
            else:
                self._loop.remove_writer(self._fd)
            self._writing = want_write
        if self._timer:
            self._timer.cancel()
            self._timer = None
        if timeout is not None:
            self._timer = self._loop.call_later(timeout, self._process_cb)

    def _process(self) -> None:
        if self._closed or self._broken:
            return
        try:
            self.client.process()
        except OSError as e:
            if e.errno != errno.ENOTCONN:
                raise
            # the connection ended: the requests it carried got their errors from this process()
            self._broken = True
            self._disarm()
            if self._watches:
                self._start_reconnect()
            return
        except ValueError:  # closed meanwhile (from a callback)
            return
        finally:
            if not self._broken and not self.client.closed:
                self._arm()

    # ---- connecting again ----------------------------------------------------------------------------

    def _start_reconnect(self) -> asyncio.Task[None]:
        if self._reconnecting is None:
            self._reconnecting = self._loop.create_task(self._reconnect_run())
        return self._reconnecting

    async def _reconnect_run(self) -> None:
        try:
            # a blocking call connects again, within the client's reconnect window, and makes the watches again
            await self._loop.run_in_executor(None, self.client.ping)
        except BaseException as e:
            self._reconnecting = None
            for w in list(self._watches.values()):
                w._fail(e)
            raise
        self._reconnecting = None
        self._broken = False
        self._arm()

    async def _ready(self) -> None:
        """Wait for a reconnect in progress; raise if closed."""
        if self._closed:
            raise ValueError("operation on a closed iomem.aio.Client")
        if self._broken:
            await asyncio.shield(self._start_reconnect())

    # ---- requests ------------------------------------------------------------------------------------

    async def _request(self, submit: Callable[..., None], deadline: float | None = None) -> object:
        """Submit with submit(callback[, wait_left]) and await the callback; again after a reconnect."""
        tries = 0
        while True:
            await self._ready()
            fut: asyncio.Future[object] = self._loop.create_future()

            def done(error: BaseException | None, result: object, fut: asyncio.Future[object] = fut) -> None:
                if fut.done():
                    # cancelled: nobody takes the answer; a region's fd is closed now, not at collection
                    if isinstance(result, iomem.Region):
                        result.close()
                    return
                if error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result(result)

            try:
                if deadline is None:
                    submit(done)
                else:
                    submit(done, max(deadline - self._loop.time(), 0.0))
            except OSError as e:
                # a connection that broke before this loop noticed: connect again (or learn it cannot)
                if e.errno != errno.ENOTCONN or tries >= _MAX_TRIES:
                    raise
                tries += 1
                self._broken = True
                self._disarm()
                continue
            self._arm()  # POLLOUT while the request waits to be sent
            try:
                return await fut
            except ConnectionResetError:
                # sent, and the connection ended: harmless to send again on the next one
                if self._closed or tries >= _MAX_TRIES:
                    raise
                tries += 1

    async def open(self, name: str, *, wait: bool = False, read_only: bool = False,
                   timeout: float | None = None) -> iomem.Region:
        """Open a named region: Region. wait: if the name does not exist yet, the daemon waits for it to
        be created, at most timeout seconds (None = without limit; TimeoutError after, with the daemon's
        detail). Without wait a missing name is FileNotFoundError."""
        if not wait:
            if timeout is not None:
                raise ValueError("timeout is for wait=True")
            return cast(iomem.Region, await self._request(
                lambda cb: self.client.open_async(name, cb, read_only=read_only)))
        if timeout is None:
            return cast(iomem.Region, await self._request(
                lambda cb: self.client.open_async(name, cb, read_only=read_only, wait=True)))
        return cast(iomem.Region, await self._request(
            lambda cb, left: self.client.open_async(name, cb, read_only=read_only, wait=True, timeout=left),
            deadline=self._loop.time() + timeout))

    async def open_version(self, name: str, after_generation: int = 0, *, wait: bool = True, read_only: bool = False,
                           timeout: float | None = None) -> iomem.Region:
        """Open a version of name newer than after_generation (0 = any): Region, whose generation says
        which. wait (default here): the daemon waits for one to be published, at most timeout seconds."""
        if not wait:
            if timeout is not None:
                raise ValueError("timeout is for wait=True")
            return cast(iomem.Region, await self._request(lambda cb: self.client.open_async(
                name, cb, read_only=read_only, after_generation=after_generation)))
        if timeout is None:
            return cast(iomem.Region, await self._request(lambda cb: self.client.open_async(
                name, cb, read_only=read_only, wait=True, after_generation=after_generation)))
        return cast(iomem.Region, await self._request(
            lambda cb, left: self.client.open_async(name, cb, read_only=read_only, wait=True, timeout=left,
                                                    after_generation=after_generation),
            deadline=self._loop.time() + timeout))

    async def stat(self, name: str) -> iomem.StatResult:
        """StatResult of a named region (its generation is None: the asynchronous STAT does not ask)."""
        return cast(iomem.StatResult, await self._request(lambda cb: self.client.stat_async(name, cb)))

    async def ping(self) -> None:
        """One round trip to the daemon."""
        await self._request(lambda cb: self.client.ping_async(cb))

    async def run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A blocking call of the iomem.Client in the loop's default executor, e.g.
        ``await c.run("create", "name", 4096)``; what it reads for this client is handed over after."""
        fn = getattr(self.client, method)
        return await self._loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))

    # ---- events --------------------------------------------------------------------------------------

    def watch(self, prefix: str | None = None) -> Watch:
        """Events of the regions whose name starts with prefix (None or "" = all) that this uid may read:
        a Watch. ``async with c.watch(p) as events`` makes it before the block runs (every change after that
        is reported) and ends it after; ``async for ev in c.watch(p)`` makes it at the first iteration;
        ``await c.watch(p)`` makes it and returns it. Event.kind "overflow": changes were missed (the
        daemon's queue was full, or the daemon restarted), re-read the state."""
        return Watch(self, prefix)

    def _on_event(self, ev: iomem.Event) -> None:
        if ev.watch_id == 0:  # overflow: for every watch
            for each in self._watches.values():
                each._queue.put_nowait(ev)
            if self._making:
                self._early.append(ev)
            return
        w = self._watches.get(ev.watch_id)
        if w is not None:
            w._queue.put_nowait(ev)
        elif self._making:
            self._early.append(ev)  # read together with the WATCH reply, before the executor returned

    async def _watch_start(self, w: Watch) -> int:
        await self._ready()
        if not self._events_on:
            self.client.set_event_callback(_weak(self._on_event))
            self._events_on = True
        self._making += 1
        try:
            wid: int = await self.run("watch", w.prefix)
        finally:
            self._making -= 1
        self._watches[wid] = w
        for ev in self._early:
            if ev.watch_id in (0, wid):
                w._queue.put_nowait(ev)
        if not self._making:
            self._early.clear()
        return wid

    async def _watch_stop(self, w: Watch) -> None:
        if w.id is None or self._watches.pop(w.id, None) is None or self._closed:
            return
        try:
            await self.run("unwatch", w.id)
        except (FileNotFoundError, ValueError):
            pass  # gone with its connection, or the client was closed meanwhile
        except OSError as e:
            if e.errno not in (errno.ENOTCONN, errno.ECONNRESET):
                raise

    # ---- lifetime ------------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the connection: awaits in progress raise OSError(ENOTCONN), watches end. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._disarm()
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            self._reconnecting = None
        for w in list(self._watches.values()):
            w._end()
        self._watches.clear()
        self.client.close()  # pending callbacks get OSError(ENOTCONN) now

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        # dropped without close(): the loop must not keep watching an fd nobody processes
        if not getattr(self, "_closed", True):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
            try:
                self.close()
            except Exception:  # the loop is closed already
                self._closed = True
                self.client.close()

    def __repr__(self) -> str:
        return f"<iomem.aio.Client {self.client!r}>"


_END = object()


class Watch:
    """An asynchronous iterator of a watch's Events (Client.watch())."""

    def __init__(self, aclient: Client, prefix: str | None) -> None:
        self._c = aclient
        self.prefix = prefix
        self.id: int | None = None  # the watch id once made (Event.watch_id)
        # events, then _END or the exception that ended the watch
        self._queue: asyncio.Queue[iomem.Event | BaseException | object] = asyncio.Queue()
        self._starting: asyncio.Future[int] | None = None
        self._done = False

    async def start(self) -> Watch:
        """Make the watch (once): every change after this returns is reported. Return self."""
        if self._done:
            raise ValueError("the watch has ended")
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._c._watch_start(self))
        self.id = await asyncio.shield(self._starting)
        return self

    def __await__(self) -> Generator[Any, None, Watch]:
        return self.start().__await__()

    async def __aenter__(self) -> Watch:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> iomem.Event:
        if self.id is None and not self._done:
            await self.start()
        if self._done and self._queue.empty():
            raise StopAsyncIteration
        ev = await self._queue.get()
        if ev is _END:
            self._done = True
            raise StopAsyncIteration
        if isinstance(ev, BaseException):
            self._done = True
            raise ev
        return cast(iomem.Event, ev)

    async def aclose(self) -> None:
        """End the watch (unwatch): no event of it comes after this. Idempotent."""
        if self._done:
            return
        if self._starting is not None and not self._starting.done():
            try:
                await self._starting
            except Exception:
                pass
        self._end()
        if self.id is not None:
            await self._c._watch_stop(self)

    def _end(self) -> None:
        if not self._done:
            self._done = True
            self._queue.put_nowait(_END)

    def _fail(self, error: BaseException) -> None:
        if not self._done:
            self._queue.put_nowait(error)


class _Connect:
    """connect()'s result: awaitable (the Client) and an async context manager (closes it)."""

    def __init__(self, socket: StrOrBytesPath | None, timeout: float | None) -> None:
        self._args = (socket, timeout)
        self._client: Client | None = None

    async def _connect(self) -> Client:
        socket, timeout = self._args
        loop = asyncio.get_running_loop()
        c = await loop.run_in_executor(None, functools.partial(iomem.Client, socket, timeout=timeout))
        return Client(c)

    def __await__(self) -> Generator[Any, None, Client]:
        return self._connect().__await__()

    async def __aenter__(self) -> Client:
        self._client = await self._connect()
        return self._client

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._client is not None:
            self._client.close()


def connect(socket: StrOrBytesPath | None = None, *, timeout: float | None = None) -> _Connect:
    """Connect to iomemd without blocking the loop (iomem.Client(socket, timeout=timeout) in the executor):
    ``c = await iomem.aio.connect(...)`` or ``async with iomem.aio.connect(...) as c``."""
    return _Connect(socket, timeout)
