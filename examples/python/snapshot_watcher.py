#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""snapshot_watcher: react to each new version of NAME that any unrelated process publishes.

Usage: snapshot_watcher.py SOCKET NAME [LAST] [TIMEOUT]

Watches NAME, prints "watching" once the watch exists, then for each CREATED or PUBLISHED event opens the
version (read-only, at least the event's generation: a newer one may have replaced it meanwhile) and checks
it (snapshot_publisher.py's layout). Exits after the event of snapshot LAST, or with an error after TIMEOUT
seconds without events.
"""

import sys

import iomem

socket_path, name = sys.argv[1], sys.argv[2]
last = int(sys.argv[3]) if len(sys.argv) > 3 else 5
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0

with iomem.Client(socket_path) as client:
    client.watch(name)  # a prefix: also NAME.suffix; those are skipped below
    print("watching", flush=True)
    kinds: dict[str | int, int] = {}
    done = False
    while not done:
        ev = client.next_event(timeout)
        if ev is None:
            sys.exit(f"watcher: no event in {timeout} s")
        if ev.kind == "overflow":  # events were dropped: read the current version below anyway
            ev = None
        elif ev.name != name or ev.kind not in ("created", "published"):
            continue
        else:
            kinds[ev.kind] = kinds.get(ev.kind, 0) + 1
        after = ev.generation - 1 if ev else 0
        with client.open(name, read_only=True, after_generation=after) as snap, memoryview(snap) as m:
            n = int(bytes(m[:64]).split(b"\n")[0].split()[1])
            intact = m[64:].tobytes() == bytes([n % 251]) * (len(m) - 64)
            print(f"watcher: generation {snap.generation}: snapshot {n}, {'intact' if intact else 'CORRUPT'}",
                  flush=True)
            if not intact:
                sys.exit(1)
            done = n == last and ev is not None and ev.generation == snap.generation
    print("watcher: events " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
