#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""aio_consumer: an asyncio program that waits for NAME to appear and then follows its versions.

Usage: aio_consumer.py SOCKET NAME [LAST] [TIMEOUT]

One iomem.aio connection, its socket in the event loop: open(wait=True) waits for NAME (the daemon waits, the
loop keeps running other tasks: a ticker here), a watch reports each version snapshot_publisher.py publishes,
and open_version() takes it read-only and checks it (snapshot_publisher.py's layout). Prints "watching" once
the watch exists, and exits after snapshot LAST, or with an error after TIMEOUT seconds without a new version.
"""

import asyncio
import sys

import iomem
import iomem.aio

socket_path, name = sys.argv[1], sys.argv[2]
last = int(sys.argv[3]) if len(sys.argv) > 3 else 5
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0


def check(snap: iomem.Region) -> tuple[int, int]:
    """The snapshot's generation and number, after checking its bytes."""
    assert snap.generation is not None  # opened with after_generation
    with memoryview(snap) as m:
        n = int(bytes(m[:64]).split(b"\n")[0].split()[1])
        intact = m[64:].tobytes() == bytes([n % 251]) * (len(m) - 64)
    print(f"aio: generation {snap.generation}: snapshot {n}, {'intact' if intact else 'CORRUPT'}", flush=True)
    if not intact:
        sys.exit(1)
    return snap.generation, n


async def ticker(ticks: list[int]) -> None:
    """Other work of the program: it runs while the daemon holds the waiting OPEN."""
    while True:
        await asyncio.sleep(0.01)
        ticks[0] += 1


async def main() -> None:
    ticks = [0]
    other_work = asyncio.ensure_future(ticker(ticks))
    kinds: dict[str | int, int] = {}
    async with iomem.aio.connect(socket_path) as client, client.watch(name) as events:
        print("watching", flush=True)  # from here on no version is missed
        # the first version: wait for the name (a publisher may not have started yet)
        first = await client.open_version(name, 0, read_only=True, timeout=timeout)
        with first:
            seen, n = check(first)
        print(f"aio: other tasks ran meanwhile ({ticks[0]} ticks)", flush=True)
        evgen = 0  # the newest generation an event told of
        while n != last or evgen < seen:  # until snapshot LAST and its own event
            ev = await asyncio.wait_for(events.__anext__(), timeout)
            if ev.kind == "overflow":  # events were dropped: the newest version below covers them
                evgen = seen
            elif ev.name != name or ev.kind not in ("created", "published"):
                continue  # a watch is a prefix: NAME.suffix too
            else:
                kinds[ev.kind] = kinds.get(ev.kind, 0) + 1
                evgen = max(evgen, ev.generation)
                if ev.generation <= seen:
                    continue  # the version already read
            # the newest version after the one read (it may already be newer than the event's)
            with await client.open_version(name, seen, read_only=True, timeout=timeout) as snap:
                seen, n = check(snap)
    other_work.cancel()
    print("aio: events " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())), flush=True)


asyncio.run(main())
