# SPDX-License-Identifier: LGPL-2.1-or-later
"""The package's types (PEP 561) against the extension: iomem/_iomem.pyi read with ast and compared both ways with
the module as it runs (the names of the module and of each class) and with what the C code accepts (each method's
PyArg_Parse* format and keyword list, METH_* flags, getters and setters, the signature line of its docstring);
then mypy --strict over the examples and typed_sample.py, which makes every call and asserts every result type."""

import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import iomem
import iomem._iomem as ext

from pyitutil import FdCheckedCase, env

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.dirname(os.path.abspath(iomem.__file__))  # the build tree's (PYTHONPATH)
C_SOURCES = ("pymodule.c", "pyregion.c", "pyclient.c", "pyasync.c")
# which class each PyMethodDef/PyGetSetDef table fills (None: the module), and which type object is which class
TABLES = {"pymodule_methods": None, "pyregion_module_methods": None, "pyregion_methods": "Region",
          "pyclient_methods": "Client", "pyasync_methods": "Client", "pyregion_getset": "Region",
          "pyclient_getset": "Client"}
TYPES = {"pyregion_type": "Region", "pyclient_type": "Client"}
# what every module or type has, not part of the API
MODULE_STANDARD = {"__doc__", "__file__", "__loader__", "__name__", "__package__", "__spec__"}
CLASS_STANDARD = {"__doc__", "__module__", "__repr__", "__reduce__", "__del__", "__weakref__", "__dict__"}
# the buffer protocol's names (PEP 688): Python has them at run time from 3.12, the stub on every version
BUFFER = {"__buffer__", "__release_buffer__"}


def load_stub(path):
    """The stub's API: {"": {name: node} for the module, class name: {name: [nodes]}}; a property with a setter is
    two nodes. Type aliases (name: TypeAlias = ...) are the stub's own, not the module's."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    api = {"": {}}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            api[""][node.name] = node
        elif isinstance(node, ast.AnnAssign):
            if not (isinstance(node.annotation, ast.Name) and node.annotation.id == "TypeAlias"):
                api[""][node.target.id] = node
        elif isinstance(node, ast.ClassDef):
            api[""][node.name] = node
            members = api[node.name] = {}
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    members.setdefault(item.name, []).append(item)
                elif isinstance(item, ast.AnnAssign):
                    members.setdefault(item.target.id, []).append(item)
    return api


def decorators(node):
    return {ast.unparse(d) for d in node.decorator_list}


def stub_params(fn):
    """(positional-only names, positional-or-keyword names, keyword-only names, *args?, {name: default text}),
    without self/cls."""
    a = fn.args
    pos = [p.arg for p in a.posonlyargs + a.args]
    names = pos[1:]
    npos_only = len(a.posonlyargs) - (1 if a.posonlyargs else 0)
    defaults = {}
    for p, d in zip(pos[len(pos) - len(a.defaults):], a.defaults):
        defaults[p] = ast.unparse(d)
    for p, d in zip(a.kwonlyargs, a.kw_defaults):
        if d is not None:
            defaults[p.arg] = ast.unparse(d)
    return names[:npos_only], names[npos_only:], [p.arg for p in a.kwonlyargs], a.vararg is not None, defaults


def module_stub_params(fn):
    """stub_params() of a module-level function (no self)."""
    a = fn.args
    names = [p.arg for p in a.posonlyargs + a.args]
    defaults = {p: ast.unparse(d) for p, d in zip(names[len(names) - len(a.defaults):], a.defaults)}
    return (names[:len(a.posonlyargs)], names[len(a.posonlyargs):], [p.arg for p in a.kwonlyargs],
            a.vararg is not None, defaults)


def format_units(fmt):
    """A PyArg_Parse* format (before ':'): the number of required and optional arguments, and where keyword-only
    ones start (None if none are)."""
    required = optional = 0
    kwonly = None
    seen_bar = False
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "|":
            seen_bar = True
        elif c == "$":
            kwonly = required + optional
        elif c.isalpha() or c == "(":
            if seen_bar:
                optional += 1
            else:
                required += 1
            while i + 1 < len(fmt) and fmt[i + 1] in "&!#*":
                i += 1
        i += 1
    return required, optional, kwonly


class CSource:
    """What the C files say: the methods of each table, each C function's body, getters/setters, tp_new."""

    def __init__(self, directory):
        self.text = ""
        for name in C_SOURCES:
            with open(os.path.join(directory, name)) as f:
                self.text += f.read()
        self.methods = {}  # (owner, name) -> (C function, flags)
        self.getset = {}  # (owner, name) -> has a setter
        for table, body in re.findall(r"(?:static )?Py(?:MethodDef|GetSetDef) (\w+)\[\] = \{(.*?)\n\};", self.text,
                                      re.S):
            owner = TABLES[table]  # KeyError: a table this test does not know of: add it to TABLES
            if "getset" in table:
                for name, getter, setter in re.findall(r'\{\s*"(\w+)",\s*(\w+),\s*(\w+),', body):
                    self.getset[(owner, name)] = setter != "NULL"
            else:
                for name, fn, flags in re.findall(
                        r'\{\s*"(\w+)",\s*(?:\(PyCFunction\)\(void \(\*\)\(void\)\))?(\w+),\s*([A-Z_ |]+),', body):
                    self.methods[(owner, name)] = (fn, {f.strip() for f in flags.split("|")})
        for typ, fn in re.findall(r"PyTypeObject (\w+) = \{.*?\.tp_new = (\w+),", self.text, re.S):
            self.methods[(TYPES[typ], "__new__")] = (fn, {"METH_VARARGS", "METH_KEYWORDS"})

    def body(self, fn):
        m = re.search(r"\nstatic PyObject \*" + fn + r"\(.*?\n\{\n(.*?)\n\}\n", self.text, re.S)
        if not m:
            raise AssertionError(f"no C function {fn}()")
        return m.group(1)

    def params(self, fn, flags):
        """(positional-only count, positional-or-keyword names, keyword-only names, *args?, required count) of the
        C function as Python sees it."""
        if "METH_NOARGS" in flags:
            return 0, [], [], False, 0
        if "METH_O" in flags:
            return 1, [], [], False, 1
        body = self.body(fn)
        m = re.search(r'PyArg_ParseTuple(AndKeywords)?\(args, (?:kwargs, )?"([^":]*)', body)
        if not m:
            return 0, [], [], True, 0  # takes any arguments (e.g. __exit__)
        required, optional, kwonly = format_units(m.group(2))
        if not m.group(1):
            return required + optional, [], [], False, required
        kwlist = re.search(r"kwlist\[\] = \{ (.*?), NULL \};", body).group(1)
        names = [n.strip().strip('"') for n in kwlist.split(",")]
        if len(names) != required + optional:
            raise AssertionError(f"{fn}(): kwlist {names} does not match its format {m.group(2)!r}")
        if kwonly is None:
            kwonly = len(names)
        return 0, names[:kwonly], names[kwonly:], False, required


def doc_signature(obj):
    """The parameters of the first line of a docstring, "name(a, b=None, *, c=0) -> ...": [(name, default)]."""
    doc = getattr(obj, "__doc__", None)
    m = re.match(r"[\w.]+\((.*?)\)", doc or "", re.S)
    if not m:
        return None
    params = []
    for p in filter(None, (p.strip() for p in m.group(1).split(","))):
        name, _, default = p.partition("=")
        params.append((name, default or None))
    return params


class TestStubDrift(FdCheckedCase):
    """iomem/_iomem.pyi against the extension, without mypy."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stub_path = os.path.join(PACKAGE, "_iomem.pyi")
        cls.stub = load_stub(cls.stub_path)
        cls.c = CSource(os.path.join(env("IOMEM_SOURCE_DIR"), "bindings", "python"))

    def test_package_is_typed(self):
        self.assertTrue(os.path.exists(os.path.join(PACKAGE, "py.typed")), "no py.typed marker next to the module")
        self.assertTrue(os.path.exists(self.stub_path))

    def test_module_names(self):
        runtime = set(vars(ext)) - MODULE_STANDARD
        stub = set(self.stub[""])
        self.assertEqual((sorted(runtime - stub), sorted(stub - runtime)), ([], []),
                         "(names in the extension only, in the stub only)")
        # and the package re-exports them all (the stub is the package's types through its star import)
        for name in runtime:
            if not name.startswith("_") or name == "__version__":
                self.assertIs(getattr(iomem, name), getattr(ext, name), name)

    def test_constants(self):
        for name, node in self.stub[""].items():
            if isinstance(node, ast.AnnAssign):
                want = {int: "Final[int]", str: "Final[str]"}[type(getattr(ext, name))]
                self.assertEqual(ast.unparse(node.annotation), want, name)

    def test_class_names(self):
        for cls_name in (n for n, v in vars(ext).items() if isinstance(v, type)):
            with self.subTest(cls=cls_name):
                cls = getattr(ext, cls_name)
                runtime = set(vars(cls)) - CLASS_STANDARD
                stub = set(self.stub[cls_name])
                if sys.version_info < (3, 12) and stub & BUFFER:
                    with cls(4096) as region, memoryview(region):  # the stub's __buffer__ is true: TypeError if not
                        pass
                    stub -= BUFFER
                self.assertEqual((sorted(runtime - stub), sorted(stub - runtime)), ([], []),
                                 f"{cls_name}: (names in the extension only, in the stub only)")
                # attributes: properties in the stub, with a setter exactly where the C code has one
                for name, value in vars(cls).items():
                    if name in CLASS_STANDARD or callable(value) or isinstance(value, (int, tuple)):
                        continue
                    nodes = self.stub[cls_name][name]
                    self.assertIn("property", decorators(nodes[0]), f"{cls_name}.{name} is not a property")
                    setter = any(f"{name}.setter" in decorators(n) for n in nodes)
                    self.assertEqual(setter, self.c.getset.get((cls_name, name), False),
                                     f"{cls_name}.{name}: a setter in the stub and the C code disagree")

    def test_struct_sequences(self):
        """Result types: the tuple's items and __match_args__ in the order of the C fields."""
        for cls_name in ("StatResult", "ListEntry", "Status", "Quota", "Event", "Metric"):
            with self.subTest(cls=cls_name):
                cls = getattr(ext, cls_name)
                node = self.stub[""][cls_name]
                base = node.bases[0]
                self.assertEqual(ast.unparse(base.value), "tuple")
                self.assertEqual(len(base.slice.elts), cls.n_sequence_fields, "tuple items")
                match_args = ast.literal_eval(self.stub[cls_name]["__match_args__"][0].value)
                self.assertEqual(match_args, cls.__match_args__)
                # the tuple's item types are the properties' types
                for i, field in enumerate(match_args):
                    ret = self.stub[cls_name][field][0].returns
                    self.assertEqual(ast.unparse(base.slice.elts[i]), ast.unparse(ret), f"{cls_name}.{field}")

    def check_call(self, where, fn_node, c_key, doc_obj, module_level=False):
        self.assertIn(c_key, self.c.methods, f"{where}: in the stub, in no PyMethodDef table of the C code")
        fn, flags = self.c.methods[c_key]
        posonly_n, c_pos, c_kwonly, c_varargs, c_required = self.c.params(fn, flags)
        s_posonly, s_pos, s_kwonly, s_varargs, s_defaults = (module_stub_params if module_level
                                                             else stub_params)(fn_node)
        self.assertEqual(("METH_CLASS" in flags), "classmethod" in decorators(fn_node), f"{where}: classmethod")
        self.assertEqual(s_varargs, c_varargs, f"{where}: *args")
        self.assertEqual(len(s_posonly), posonly_n, f"{where}: positional-only parameters (/)")
        self.assertEqual(s_pos, c_pos, f"{where}: parameters (the C keyword list)")
        self.assertEqual(s_kwonly, c_kwonly, f"{where}: keyword-only parameters (after *)")
        names = s_posonly + s_pos + s_kwonly
        self.assertEqual(sorted(n for n in names if n not in s_defaults), sorted(names[:c_required]),
                         f"{where}: the parameters without a default are the required ones")
        doc = doc_signature(doc_obj)
        if doc is not None:  # names and defaults as the docstring gives them
            doc = [p for p in doc if p[0] != "*"]
            self.assertEqual([n for n, _ in doc], names, f"{where}: names in the docstring")
            for name, default in doc:
                if default is not None:
                    self.assertEqual(s_defaults.get(name), default, f"{where}: default of {name}")

    def test_module_functions(self):
        for name, node in self.stub[""].items():
            if isinstance(node, ast.FunctionDef):
                with self.subTest(function=name):
                    self.check_call(name, node, (None, name), getattr(ext, name, None), module_level=True)

    def test_methods(self):
        for cls_name in ("Region", "Client"):
            cls = getattr(ext, cls_name)
            for name, nodes in self.stub[cls_name].items():
                if name in BUFFER or "property" in decorators(nodes[0]):
                    continue
                with self.subTest(method=f"{cls_name}.{name}"):
                    doc = cls if name == "__new__" else getattr(cls, name, None)
                    self.check_call(f"{cls_name}.{name}", nodes[0], (cls_name, name), doc)
            # every C method is in the stub (the names test checks it at run time, this one in the tables)
            c_names = {n for owner, n in list(self.c.methods) + list(self.c.getset) if owner == cls_name}
            self.assertEqual(sorted(c_names - set(self.stub[cls_name])), [], cls_name)


def mypy_command():
    """Debian's mypy (python3-mypy) for /usr/bin/python3, or None."""
    r = subprocess.run(["/usr/bin/python3", "-c", "import mypy"], capture_output=True)
    return ["/usr/bin/python3", "-m", "mypy"] if r.returncode == 0 else None


# mypy 1.0 (Debian 12) has typeshed from before PEP 688: memoryview() and numpy.frombuffer() take a union of known
# buffer classes, not a protocol, so they refuse a Region whatever its stub says (typeshed's Buffer and mypy >= 1.5
# accept it through the stub's __buffer__). These two errors are expected, nothing else.
BUFFER_ERRORS = re.compile(r'error: (Argument 1 to "memoryview" has incompatible type "Region"|'
                           r'No overload variant of "frombuffer" matches argument types "Region")')


def mypy_env(package, mypypath):
    """mypy reads the stub, it never loads the extension: no ASan runtime for it (the sanitizer build's)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "MYPYPATH")}
    env["PYTHONPATH"] = os.path.dirname(package)
    if mypypath:
        env["MYPYPATH"] = env["PYTHONPATH"]
    return env


def run_mypy(files, package=PACKAGE, mypypath=True, extra_env=None):
    """mypy --strict over @files with @package's directory on PYTHONPATH (and MYPYPATH unless @mypypath is False:
    then mypy takes it as an installed package, PEP 561), its cache in a temporary directory, and a config
    file of its own without settings: no mypy.ini, setup.cfg or pyproject.toml of the working directory and no ~/.mypy.ini or
    ~/.config/mypy/config of the user changes the result. Return: (exit code, output without the expected buffer
    errors and their notes)."""
    cmd = mypy_command()
    if cmd is None:
        # a failure, not a skip: as a missing numpy fails the other suites (a skip let ctest report the test passed)
        raise AssertionError("mypy is not installed: run .ci/install-deps --test (Debian package python3-mypy)")
    tmp = tempfile.mkdtemp(prefix="iomem-mypy.")
    config = os.path.join(tmp, "empty.ini")
    with open(config, "w") as f:
        f.write("[mypy]\n")  # no setting: the command line's only
    try:
        r = subprocess.run(cmd + ["--config-file", config, "--strict", "--python-version", "3.11",
                                  "--cache-dir", os.path.join(tmp, "cache"),
                                  "--no-error-summary", "--show-error-codes", *files],
                           env={**mypy_env(package, mypypath), **(extra_env or {})},
                           capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines, skip_notes = [], False
    for line in r.stdout.splitlines():
        if BUFFER_ERRORS.search(line):
            skip_notes = True
            continue
        if skip_notes and ": note: " in line:
            continue
        skip_notes = False
        lines.append(line)
    return r.returncode, "\n".join(lines) + r.stderr


class TestMypy(FdCheckedCase):
    """mypy --strict over the examples and a sample that makes every call with assert_type() on every result."""

    def test_examples_and_sample(self):
        examples = env("IOMEM_PY_EXAMPLES")
        files = sorted(os.path.join(examples, f) for f in os.listdir(examples) if f.endswith(".py"))
        files.append(os.path.join(HERE, "typed_sample.py"))
        files.append(os.path.join(PACKAGE, "aio.py"))
        code, out = run_mypy(files)
        self.assertEqual(out.strip(), "", "mypy --strict found errors")
        self.assertIn(code, (0, 1))  # 1: only the expected buffer errors

    def test_user_config_is_ignored(self):
        """A developer's own mypy configuration does not change the verdict (here one that makes the sample's
        deliberate Any results errors)."""
        home = tempfile.mkdtemp(prefix="iomem-home.")
        try:
            with open(os.path.join(home, ".mypy.ini"), "w") as f:
                f.write("[mypy]\ndisallow_any_expr = True\n")
            code, out = run_mypy([os.path.join(HERE, "typed_sample.py")],
                                 extra_env={"HOME": home, "XDG_CONFIG_HOME": os.path.join(home, ".config")})
            self.assertEqual(out.strip(), "", "mypy read the user's ~/.mypy.ini")
        finally:
            shutil.rmtree(home)

    def test_installed_package_needs_py_typed(self):
        """On sys.path only, as installed: mypy uses the stub because of py.typed, and refuses the package
        without it."""
        tmp = tempfile.mkdtemp(prefix="iomem-site.")
        try:
            site = os.path.join(tmp, "site")
            package = shutil.copytree(PACKAGE, os.path.join(site, "iomem"),
                                      ignore=shutil.ignore_patterns("__pycache__"))
            sample = os.path.join(tmp, "use.py")
            with open(sample, "w") as f:
                f.write("import iomem\nfrom iomem import Region\n"
                        "reveal_type(iomem.Client().open('x'))\nreveal_type(Region(1).size)\n")
            code, out = run_mypy([sample], package=package, mypypath=False)
            self.assertIn('Revealed type is "iomem._iomem.Region"', out)
            self.assertIn('Revealed type is "builtins.int"', out)
            self.assertNotIn("error", out)
            os.unlink(os.path.join(package, "py.typed"))
            code, out = run_mypy([sample], package=package, mypypath=False)
            self.assertIn("missing library stubs or py.typed marker", out)
        finally:
            shutil.rmtree(tmp)

    def test_broken_stub_is_caught(self):
        """The sample is strict enough: a stub whose Client.open() returns the wrong type makes mypy fail."""
        tmp = tempfile.mkdtemp(prefix="iomem-stub.")
        try:
            broken = shutil.copytree(PACKAGE, os.path.join(tmp, "iomem"),
                                     ignore=shutil.ignore_patterns("*.so", "__pycache__"))
            stub = os.path.join(broken, "_iomem.pyi")
            with open(stub) as f:
                text = f.read()
            good = "        after_generation: int | None = None,\n    ) -> Region: ..."
            self.assertEqual(text.count(good), 1)
            with open(stub, "w") as f:
                f.write(text.replace(good, good.replace("-> Region", "-> Region | None")))
            code, out = run_mypy([os.path.join(HERE, "typed_sample.py")], package=broken)
            self.assertEqual(code, 1, out)
            self.assertIn("typed_sample.py", out)
        finally:
            shutil.rmtree(tmp)


class TestMypyMissing(unittest.TestCase):
    """Without mypy the mypy tests fail and say what to install (they were skipped: ctest said passed)."""

    def test_missing_mypy_fails(self):
        tmp = tempfile.mkdtemp(prefix="iomem-nomypy.")
        try:
            os.mkdir(os.path.join(tmp, "mypy"))
            with open(os.path.join(tmp, "mypy", "__init__.py"), "w") as f:
                f.write("raise ImportError('hidden by test_missing_mypy_fails')\n")
            path = os.pathsep.join(p for p in (tmp, os.environ.get("PYTHONPATH")) if p)
            r = subprocess.run([sys.executable, "-m", "unittest", "test_types.TestMypy.test_broken_stub_is_caught"],
                               cwd=HERE, env={**os.environ, "PYTHONPATH": path},
                               capture_output=True, text=True, timeout=600)
            self.assertNotEqual(r.returncode, 0, r.stderr)
            self.assertIn("mypy is not installed: run .ci/install-deps --test", r.stderr)
            self.assertNotIn("skipped", r.stderr)
        finally:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    unittest.main()
