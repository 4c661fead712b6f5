# SPDX-License-Identifier: LGPL-2.1-or-later
"""iomem: memory regions shared by fd, locally or named through the iomemd daemon (libiomem).

The C extension iomem._iomem is the whole blocking API (Region, Client, errors, constants), re-exported here;
iomem.aio drives a Client from an asyncio event loop.
"""

from ._iomem import *  # noqa: F401,F403 (the package's API is the extension's)
from ._iomem import __version__ as __version__  # noqa: F401 (as: re-exported, for type checkers)
