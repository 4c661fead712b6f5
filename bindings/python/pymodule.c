/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* pymodule: the CPython module iomem (constants, errors, argument converters, module functions). */

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "pyiomem.h"

/*
 * The daemon refuses a bad region name as it refuses any payload it cannot decode: EINVAL "malformed CREATE"
 * (OPEN, STATV...), which names neither the argument nor the rule. Return: the rule's words when @filename (the
 * call's name) breaks it and that is what the daemon said, else @text.
 */
static const char *pymodule_name_detail(int e, const char *text, PyObject *filename)
{
        const char *name;

        if (e != EINVAL || strncmp(text, "malformed ", 10) != 0 || !filename || !PyUnicode_Check(filename))
                return text;
        name = PyUnicode_AsUTF8(filename);
        if (!name) {
                PyErr_Clear();
                return text;
        }
        return iomem_name_check(name) < 0 ? "invalid region name (" IOMEM_NAME_RULE ")" : text;
}

PyObject *pymodule_error_new(int r, const char *message, PyObject *filename)
{
        int e = r < 0 ? -r : r;
        const char *text = pymodule_name_detail(e, message && *message ? message : iomem_strerror(-e), filename);
        PyObject *args, *exc;

        args = filename ? Py_BuildValue("(isO)", e, text, filename) : Py_BuildValue("(is)", e, text);
        if (!args)
                return NULL;
        /* OSError's constructor picks the subclass for the errno, as PyErr_SetFromErrno does */
        exc = PyObject_Call(PyExc_OSError, args, NULL);
        Py_DECREF(args);
        return exc;
}

PyObject *pymodule_set_error(int r, const char *message, PyObject *filename)
{
        PyObject *exc;

        if ((r == -ENOMEM || r == ENOMEM) && !(message && *message))
                return PyErr_NoMemory();
        exc = pymodule_error_new(r, message, filename);
        if (exc) {
                PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                Py_DECREF(exc);
        }
        return NULL;
}

/*
 * pymodule_to_ull() - the check the integer converters share: @obj must be an int (else TypeError); its value in
 * *@vp, or *@overflowp set (no exception) when it is negative or does not fit in 64 bits, for the caller to
 * report with its own range. Return: 1; 0 with an exception.
 */
static int pymodule_to_ull(PyObject *obj, unsigned long long *vp, int *overflowp)
{
        unsigned long long v;

        *overflowp = 0;
        if (!PyLong_Check(obj)) {
                PyErr_Format(PyExc_TypeError, "an integer is required, not %.100s", Py_TYPE(obj)->tp_name);
                return 0;
        }
        v = PyLong_AsUnsignedLongLong(obj);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) {
                if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                        return 0;
                PyErr_Clear();
                *overflowp = 1; /* negative, or past 64 bits */
        }
        *vp = v;
        return 1;
}

int pymodule_u64_converter(PyObject *obj, void *u64p)
{
        unsigned long long v;
        int overflow;

        if (!pymodule_to_ull(obj, &v, &overflow))
                return 0;
        if (overflow) {
                PyErr_SetString(PyExc_ValueError, "size must be between 0 and 2**64 - 1");
                return 0;
        }
        *(uint64_t *)u64p = v;
        return 1;
}

int pymodule_u32_converter(PyObject *obj, void *u32p)
{
        unsigned long long v;
        int overflow;

        if (!pymodule_to_ull(obj, &v, &overflow))
                return 0;
        if (overflow || v > UINT32_MAX) { /* never cut to 32 bits */
                PyErr_Format(PyExc_ValueError, "%R is out of range (0 to 2**32 - 1)", obj);
                return 0;
        }
        *(uint32_t *)u32p = (uint32_t)v;
        return 1;
}

int pymodule_mode_converter(PyObject *obj, void *modep)
{
        unsigned long long v;
        int overflow;

        if (!pymodule_to_ull(obj, &v, &overflow))
                return 0;
        if (overflow || v > 0777) { /* else the daemon's "malformed CREATE" (CHMOD...), which names no argument */
                PyObject *oct = PyNumber_ToBase(obj, 8);

                if (oct) {
                        PyErr_Format(PyExc_ValueError, "mode %U: a region's mode is 0 to 0o777 (permission bits only)",
                                     oct);
                        Py_DECREF(oct);
                }
                return 0;
        }
        *(uint32_t *)modep = (uint32_t)v;
        return 1;
}

#define PYMODULE_SEAL_ALL \
        (IOMEM_SEAL_SEAL | IOMEM_SEAL_SHRINK | IOMEM_SEAL_GROW | IOMEM_SEAL_WRITE | IOMEM_SEAL_FUTURE_WRITE)

int pymodule_seals_converter(PyObject *obj, void *sealsp)
{
        uint32_t seals = 0;

        if (PyUnicode_Check(obj)) {
                Py_ssize_t len;
                const char *text = PyUnicode_AsUTF8AndSize(obj, &len);

                if (!text)
                        return 0;
                if ((size_t)len != strlen(text) || iomem_seals_parse(text, &seals) < 0) {
                        PyErr_Format(PyExc_ValueError, "unknown seals %R (want e.g. \"shrink,grow\")", obj);
                        return 0;
                }
        } else if (PyLong_Check(obj)) {
                unsigned long v = PyLong_AsUnsignedLong(obj);

                if (v == (unsigned long)-1 && PyErr_Occurred())
                        return 0;
                if (v > UINT32_MAX) {
                        PyErr_SetString(PyExc_ValueError, "seals must fit in 32 bits");
                        return 0;
                }
                seals = (uint32_t)v;
                if (seals & ~PYMODULE_SEAL_ALL) { /* said here, not as the daemon's "malformed CREATE" */
                        PyErr_Format(PyExc_ValueError,
                                     "unknown seal bits 0x%x (SEAL_SEAL, SEAL_SHRINK, SEAL_GROW, SEAL_WRITE, "
                                     "SEAL_FUTURE_WRITE)", (unsigned)(seals & ~PYMODULE_SEAL_ALL));
                        return 0;
                }
        } else {
                PyErr_Format(PyExc_TypeError, "seals must be an int or a str, not %.100s", Py_TYPE(obj)->tp_name);
                return 0;
        }
        *(uint32_t *)sealsp = seals;
        return 1;
}

int pymodule_backend_converter(PyObject *obj, void *backendp)
{
        static const enum iomem_backend all[] = { IOMEM_BACKEND_AUTO, IOMEM_BACKEND_MEMFD, IOMEM_BACKEND_SHM,
                                                  IOMEM_BACKEND_FILE };
        const char *text;

        if (obj == Py_None) {
                *(enum iomem_backend *)backendp = IOMEM_BACKEND_AUTO;
                return 1;
        }
        if (!PyUnicode_Check(obj)) {
                PyErr_Format(PyExc_TypeError, "backend must be a str or None, not %.100s", Py_TYPE(obj)->tp_name);
                return 0;
        }
        text = PyUnicode_AsUTF8(obj);
        if (!text)
                return 0;
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
                if (strcmp(text, iomem_backend_name(all[i])) == 0) {
                        *(enum iomem_backend *)backendp = all[i];
                        return 1;
                }
        }
        PyErr_Format(PyExc_ValueError, "unknown backend %R (want \"auto\", \"memfd\", \"shm\" or \"file\")", obj);
        return 0;
}

PyObject *pymodule_backend_str(enum iomem_backend backend)
{
        const char *name = iomem_backend_name(backend);

        return PyUnicode_FromString(name ? name : "unknown");
}

PyDoc_STRVAR(pymodule_strerror_doc, "strerror(errno) -> str\n\n"
                                    "What an errno means coming from iomemd or libiomem.");

static PyObject *pymodule_strerror(PyObject *module, PyObject *arg)
{
        long e = PyLong_AsLong(arg);

        if (e == -1 && PyErr_Occurred())
                return NULL;
        if (e < -INT_MAX || e > INT_MAX)
                return PyUnicode_FromString("unknown error");
        return PyUnicode_FromString(iomem_strerror(e < 0 ? (int)e : (int)-e));
}

PyDoc_STRVAR(pymodule_parse_seals_doc, "parse_seals(text) -> int\n\n"
                                       "The SEAL_* bits of a list such as \"shrink,grow\" or \"write seal\".");

static PyObject *pymodule_parse_seals(PyObject *module, PyObject *arg)
{
        uint32_t seals;

        if (!PyUnicode_Check(arg)) {
                PyErr_SetString(PyExc_TypeError, "parse_seals() takes a str");
                return NULL;
        }
        if (!pymodule_seals_converter(arg, &seals))
                return NULL;
        return PyLong_FromUnsignedLong(seals);
}

PyDoc_STRVAR(pymodule_default_socket_doc,
             "default_socket() -> str\n\n"
             "The socket Client() uses when given none: $IOMEM_SOCKET; else /run/iomemd/iomemd.sock for root;\n"
             "else $XDG_RUNTIME_DIR/iomemd.sock. Raises FileNotFoundError if none can be determined.");

static PyObject *pymodule_default_socket(PyObject *module, PyObject *unused)
{
        char path[PATH_MAX];
        int r = iomem_socket_path(path, sizeof(path));

        if (r < 0)
                return pymodule_set_error(r, r == -ENOENT ? "no default socket: set IOMEM_SOCKET or XDG_RUNTIME_DIR"
                                                          : NULL,
                                          NULL);
        return PyUnicode_DecodeFSDefaultAndSize(path, r);
}

static PyMethodDef pymodule_methods[] = {
        { "strerror", pymodule_strerror, METH_O, pymodule_strerror_doc },
        { "parse_seals", pymodule_parse_seals, METH_O, pymodule_parse_seals_doc },
        { "default_socket", pymodule_default_socket, METH_NOARGS, pymodule_default_socket_doc },
        { NULL, NULL, 0, NULL },
};

PyDoc_STRVAR(pymodule_doc,
             "iomem: memory regions shared by fd, locally or named through the iomemd daemon (libiomem).\n\n"
             "Region(size): a local memory object (memfd, shm or file); Client(): a connection to iomemd\n"
             "that creates and opens named regions. Regions support the buffer protocol: memoryview(region)\n"
             "and numpy.frombuffer(region) read and write the shared memory without a copy.\n"
             "Errors are OSError subclasses (FileNotFoundError, FileExistsError, PermissionError, ...)\n"
             "whose errno is what iomemd or the kernel returned.");

static struct PyModuleDef pymodule_def = {
        PyModuleDef_HEAD_INIT, .m_name = "iomem._iomem", .m_doc = pymodule_doc, .m_size = -1, .m_methods = pymodule_methods,
};

/* the C half of the package iomem (iomem/__init__.py re-exports it) */
PyMODINIT_FUNC PyInit__iomem(void);

PyMODINIT_FUNC PyInit__iomem(void)
{
        static const struct {
                const char *name;
                long value;
        } constants[] = {
                { "SEAL_SEAL", IOMEM_SEAL_SEAL },
                { "SEAL_SHRINK", IOMEM_SEAL_SHRINK },
                { "SEAL_GROW", IOMEM_SEAL_GROW },
                { "SEAL_WRITE", IOMEM_SEAL_WRITE },
                { "SEAL_FUTURE_WRITE", IOMEM_SEAL_FUTURE_WRITE },
                { "REGISTER_SEALS", IOMEM_REGISTER_SEALS },
                { "REGION_RDONLY", IOMEM_REGION_RDONLY },
                { "REGION_LEASED", IOMEM_REGION_LEASED },
                { "REGION_RESIZABLE", IOMEM_REGION_RESIZABLE },
                { "REGION_ANONYMOUS", IOMEM_REGION_ANONYMOUS },
        };
        PyObject *m = PyModule_Create(&pymodule_def);

        if (!m)
                return NULL;
        for (size_t i = 0; i < sizeof(constants) / sizeof(constants[0]); i++)
                if (PyModule_AddIntConstant(m, constants[i].name, constants[i].value) < 0)
                        goto fail;
        if (PyModule_AddStringConstant(m, "__version__", IOMEM_VERSION) < 0)
                goto fail;
        if (pyregion_ready(m) < 0 || pyclient_ready(m) < 0)
                goto fail;
        return m;

fail:
        Py_DECREF(m);
        return NULL;
}
