# SPDX-License-Identifier: LGPL-2.1-or-later
"""_shared: what the seed-guide examples have in common: a region that is local or named in iomemd."""

import argparse
import os

import iomem

_clients: list[iomem.Client] = []  # the connections our leases last as long as: kept open


def parse_args(description: str | None) -> argparse.Namespace:
    """--socket SOCK makes the examples use a named region in iomemd instead of a local one."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--socket", help="use a named region from the iomemd listening here (default: a local region)")
    p.add_argument("--name", default=f"example.{os.getpid()}", help="the region's name with --socket")
    return p.parse_args()


def make_region(args: argparse.Namespace, size: int) -> iomem.Region:
    """A new read-write region of @size bytes: local (memfd), or named and leased to a connection we keep."""
    if not args.socket:
        return iomem.Region(size)
    client = iomem.Client(args.socket)
    region = client.create(args.name, size, exclusive=True, lease=True)
    _clients.append(client)  # the lease lasts as long as this connection: keep it open
    return region


def open_region(args: argparse.Namespace, region: iomem.Region) -> iomem.Region:
    """In another process: the same memory, by name through iomemd, or by the fd we inherited/received."""
    if not args.socket:
        return iomem.Region.from_fd(region.fileno())
    with iomem.Client(args.socket) as client:  # a new connection: a forked child cannot use its parent's
        return client.open(args.name)
