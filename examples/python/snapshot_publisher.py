#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""snapshot_publisher: publish COUNT immutable snapshots under NAME, each replacing the last in one step.

Usage: snapshot_publisher.py SOCKET NAME [COUNT]

Each snapshot is a local memfd written here, sealed against writes (readers can trust it never changes) and
published with the generation it replaces (expect_generation), so two publishers cannot overwrite each
other's versions unseen. Readers of an older version keep it. Layout: "snapshot N\\n" at 0, then SIZE bytes
of N % 251 from offset 64 (snapshot_watcher.py checks them).
"""

import sys

import iomem

SIZE = 64 * 1024

socket_path, name = sys.argv[1], sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 3 else 5

with iomem.Client(socket_path) as client:
    generation = None
    for n in range(1, count + 1):
        with iomem.Region(64 + SIZE, backend="memfd") as snap:
            with memoryview(snap) as m:
                header = f"snapshot {n}\n".encode()
                m[:len(header)] = header
                m[64:] = bytes([n % 251]) * SIZE
            snap.seal("shrink,grow,write")  # immutable from here on, for every holder
            generation = client.publish(name, snap, expect_generation=generation, mode=0o644)
        print(f"publisher: snapshot {n} is generation {generation}", flush=True)
