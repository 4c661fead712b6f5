# SPDX-License-Identifier: LGPL-2.1-or-later
"""`cmake --install` puts the module where Debian's python3 looks: <prefix>/lib/python3.X/dist-packages for
/usr/local and other prefixes, /usr/lib/python3/dist-packages for /usr; the installed module imports and works."""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import unittest

from pyitutil import FdCheckedCase, env

VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"
MODULE = os.path.join("iomem", "_iomem" + sysconfig.get_config_var("EXT_SUFFIX"))  # the package's C half


class TestInstall(FdCheckedCase):
    def test_debian_python_searches_both_directories(self):
        path = subprocess.run(["/usr/bin/python3", "-c", "import sys; print('\\n'.join(sys.path))"],
                              capture_output=True, text=True, check=True).stdout.splitlines()
        self.assertIn(f"/usr/local/lib/{VERSION}/dist-packages", path)
        self.assertIn("/usr/lib/python3/dist-packages", path)

    def test_install_into_prefix(self):
        build = env("IOMEM_BUILD_DIR")
        cache = open(os.path.join(build, "CMakeCache.txt")).read()
        if "CMAKE_INSTALL_PREFIX:PATH=/usr\n" in cache:
            raise unittest.SkipTest("this build is configured for /usr: the other test covers it")
        prefix = tempfile.mkdtemp(prefix="iomem-py-install.")
        try:
            subprocess.run(["cmake", "--install", build, "--prefix", prefix], check=True, capture_output=True)
            site = os.path.join(prefix, "lib", VERSION, "dist-packages")
            target = os.path.join(site, MODULE)
            for f in (target, *(os.path.join(site, "iomem", f) for f in ("__init__.py", "aio.py", "_iomem.pyi", "py.typed"))):
                self.assertTrue(os.path.exists(f), f"{f} not installed")
            out = subprocess.run(
                [sys.executable, "-c", "import iomem, iomem.aio; r = iomem.Region(4096); memoryview(r)[0] = 1; "
                 "print(iomem._iomem.__file__, iomem.aio.__file__, r.backend)"],
                env=dict(os.environ, PYTHONPATH=site, LD_LIBRARY_PATH=os.path.join(prefix, "lib")),
                capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(out.stdout.split(), [target, os.path.join(site, "iomem", "aio.py"), "memfd"])
            # the installed module uses the installed libiomem, not the build tree's
            deps = subprocess.run(["ldd", target], env=dict(os.environ, LD_LIBRARY_PATH=os.path.join(prefix, "lib")),
                                  capture_output=True, text=True).stdout
            self.assertIn(os.path.join(prefix, "lib", "libiomem.so.0"), deps)
        finally:
            shutil.rmtree(prefix)

    def test_prefix_usr_goes_to_python3_dist_packages(self):
        build = tempfile.mkdtemp(prefix="iomem-py-cfg.")
        try:
            subprocess.run(["cmake", "-S", env("IOMEM_SOURCE_DIR"), "-B", build, "-DCMAKE_INSTALL_PREFIX=/usr",
                            "-DIOMEM_BUILD_TESTS=OFF"], check=True, capture_output=True)
            script = open(os.path.join(build, "bindings", "python", "cmake_install.cmake")).read()
            self.assertIn('"${CMAKE_INSTALL_PREFIX}/lib/python3/dist-packages/iomem"', script)
        finally:
            shutil.rmtree(build)
