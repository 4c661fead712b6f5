# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench/open_map.py runs and reports both sides and their ratio (a smoke run: no timing is asserted)."""

import os
import re
import subprocess
import sys

from pyitutil import FdCheckedCase, env


class TestBench(FdCheckedCase):
    def test_smoke(self):
        out = subprocess.run([sys.executable, os.path.join(env("IOMEM_PY_BENCH"), "open_map.py"), env("IOMEMD"),
                              env("IOMEM_PY_BENCH_C"), "--iterations", "200", "--rounds", "2"],
                             capture_output=True, text=True, timeout=300)
        self.assertEqual(out.returncode, 0, out.stderr)
        for what in ("wall", "cpu"):
            m = re.search(what + r" +C +(\d+\.\d\d) us/op +Python +(\d+\.\d\d) us/op +ratio (\d+\.\d\d)", out.stdout)
            self.assertIsNotNone(m, out.stdout)
            self.assertTrue(all(float(x) > 0 for x in m.groups()), out.stdout)
