/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* pyregion: iomem.Region, one memory fd with the buffer protocol (memoryview and numpy without a copy). */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pyiomem.h"
#include "structmember.h"

/* a buffer of 0 bytes must still point somewhere */
static char pyregion_empty[1];

int pyregion_check_open(PyIomemRegion *self)
{
        if (self->region)
                return 0;
        PyErr_SetString(PyExc_ValueError, "I/O operation on a closed region");
        return -1;
}

/* Raise BufferError for @what if buffers (or a call without the GIL) still use the mapping. Return: 0 or -1. */
static int pyregion_check_unexported(PyIomemRegion *self, const char *what)
{
        if (self->exports == 0)
                return 0;
        PyErr_Format(PyExc_BufferError,
                     "cannot %s a region while %zd buffer(s) (memoryview, numpy array) still point into it", what,
                     self->exports);
        return -1;
}

/* every Region with a mapping (self->addr), newest first */
static PyIomemRegion *pyregion_mapped;

/* Drop the buffer mapping (only with no exports). */
static void pyregion_unmap(PyIomemRegion *self)
{
        if (self->addr) {
                iomem_unmap(self->addr, self->mapped);
                if (self->mapped_prev)
                        self->mapped_prev->mapped_next = self->mapped_next;
                else
                        pyregion_mapped = self->mapped_next;
                if (self->mapped_next)
                        self->mapped_next->mapped_prev = self->mapped_prev;
                self->mapped_prev = self->mapped_next = NULL;
        }
        self->addr = NULL;
        self->mapped = 0;
        self->map_writable = 0;
}

/*
 * pyregion_map_all() - make self->addr map the whole region at the size
 * fstat reports now, writable unless the fd is read-only or the region is
 * sealed against writes. Only with no exports (a live buffer pins the mapping)
 * or no mapping yet (a running Client.register() pins the region without one).
 * Return: 0 or -1 with an exception.
 */
static int pyregion_map_all(PyIomemRegion *self)
{
        uint64_t size;
        int r, seals, writable;
        void *addr;

        /*
         * F_GET_SEALS directly, not iomem_region_get_seals(), which first tells a memfd from a file by
         * /proc/self/fd/N (readlink + fstatfs: a third of an OPEN+map's cost): other tmpfs files report
         * F_SEAL_SEAL only, other file systems EINVAL, neither with a write seal.
         */
        /* a region from iomemd is checked at its first use: an fd that is not a regular file is -EINVAL (D7) */
        r = iomem_region_fd(self->region);
        if (r < 0)
                goto fail;
        seals = fcntl(r, F_GET_SEALS);
        if (seals < 0 && errno != EINVAL) {
                r = -errno;
                goto fail;
        }
        writable = !(iomem_region_flags(self->region) & IOMEM_REGION_RDONLY) &&
                   !(seals > 0 && (seals & (IOMEM_SEAL_WRITE | IOMEM_SEAL_FUTURE_WRITE)));
        if (self->addr) {
                /* keep the mapping unless the size or the access changed */
                r = iomem_region_refresh(self->region);
                if (r < 0)
                        goto fail;
                if (self->mapped == iomem_region_size(self->region) && self->map_writable == writable)
                        return 0;
                pyregion_unmap(self);
        }
        /* length 0: all of it, at the size fstat reports now (iomem_region_map refreshes the size) */
        r = iomem_region_map(self->region, 0, 0, PROT_READ | (writable ? PROT_WRITE : 0), &addr);
        size = iomem_region_size(self->region);
        if (r == -EINVAL && size == 0) {
                self->map_writable = writable; /* nothing to map: buffers of 0 bytes, as writable as the region */
                return 0;
        }
        if (r < 0)
                goto fail;
        self->addr = addr;
        self->mapped = (size_t)size;
        self->map_writable = writable;
        self->mapped_prev = NULL;
        self->mapped_next = pyregion_mapped;
        if (pyregion_mapped)
                pyregion_mapped->mapped_prev = self;
        pyregion_mapped = self;
        return 0;

fail:
        pymodule_set_error(r, NULL, self->name != Py_None ? self->name : NULL);
        return -1;
}

int pyregion_drop_idle_maps(void)
{
        PyIomemRegion *next;
        int n = 0;

        for (PyIomemRegion *r = pyregion_mapped; r; r = next) {
                next = r->mapped_next;
                if (r->exports == 0) {
                        pyregion_unmap(r);
                        n++;
                }
        }
        return n;
}

bool pyregion_named_export_past(PyObject *name, uint64_t size, uint64_t id)
{
        for (PyIomemRegion *r = pyregion_mapped; r; r = r->mapped_next) {
                uint64_t rid;
                int eq;

                if (r->exports == 0 || r->mapped <= size || !r->region || !PyUnicode_Check(r->name))
                        continue;
                rid = iomem_region_id(r->region);
                if (!rid || (id && rid != id))
                        continue;
                eq = PyUnicode_Compare(r->name, name);
                if (eq == -1 && PyErr_Occurred())
                        PyErr_Clear();
                else if (eq == 0)
                        return true;
        }
        return false;
}

static int pyregion_getbuffer(PyObject *obj, Py_buffer *view, int flags)
{
        PyIomemRegion *self = (PyIomemRegion *)obj;
        void *buf;

        /*
         * Map when nothing pins the mapping, or when nothing is mapped yet: Client.register() pins the
         * region (exports) without a mapping while it runs without the GIL, and a buffer made meanwhile
         * would otherwise be 0 bytes long.
         */
        if (pyregion_check_open(self) < 0 ||
            ((self->exports == 0 || !self->addr) && pyregion_map_all(self) < 0)) {
                view->obj = NULL;
                return -1;
        }
        buf = self->addr ? self->addr : pyregion_empty;
        if (PyBuffer_FillInfo(view, obj, buf, (Py_ssize_t)self->mapped, !self->map_writable, flags) < 0)
                return -1; /* e.g. a writable buffer asked of a read-only region: BufferError */
        self->exports++;
        return 0;
}

static void pyregion_releasebuffer(PyObject *obj, Py_buffer *view)
{
        ((PyIomemRegion *)obj)->exports--;
}

static PyBufferProcs pyregion_as_buffer = {
        .bf_getbuffer = pyregion_getbuffer,
        .bf_releasebuffer = pyregion_releasebuffer,
};

PyObject *pyregion_new_consume(struct iomem_region *region, PyObject *name)
{
        return pyregion_new_version_consume(region, name, 0);
}

PyObject *pyregion_new_version_consume(struct iomem_region *region, PyObject *name, uint64_t generation)
{
        PyIomemRegion *self = PyObject_New(PyIomemRegion, &pyregion_type);

        if (!self) {
                iomem_region_free(region);
                return NULL;
        }
        self->region = region;
        self->addr = NULL;
        self->mapped = 0;
        self->map_writable = 0;
        self->exports = 0;
        self->weakrefs = NULL;
        self->mapped_prev = self->mapped_next = NULL;
        self->generation = generation;
        self->name = name ? name : Py_None;
        Py_INCREF(self->name);
        return (PyObject *)self;
}

static PyObject *pyregion_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
        static char *kwlist[] = { "size", "backend", "max_size", NULL };
        enum iomem_backend backend = IOMEM_BACKEND_AUTO;
        struct iomem_region *region = NULL;
        uint64_t size, max_size = 0;
        int r;

        if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|O&O&:Region", kwlist, pymodule_u64_converter, &size,
                                         pymodule_backend_converter, &backend, pymodule_u64_converter, &max_size))
                return NULL;
        r = iomem_region_new_local(size, backend, max_size, &region);
        if (r == -EFBIG) { /* libiomem's words ("size above the limit") name neither the limit nor the remedy */
                char text[160];

                if (max_size)
                        snprintf(text, sizeof(text), "size %llu is above max_size %llu: pass a larger max_size",
                                 (unsigned long long)size, (unsigned long long)max_size);
                else
                        snprintf(text, sizeof(text),
                                 "size %llu is above the default max_size (64 GiB): pass a larger max_size",
                                 (unsigned long long)size);
                return pymodule_set_error(r, text, NULL);
        }
        if (r < 0)
                return pymodule_set_error(r, NULL, NULL);
        return pyregion_new_consume(region, NULL);
}

PyDoc_STRVAR(pyregion_from_fd_doc,
             "Region.from_fd(fd) -> Region\n\n"
             "Wrap a memory fd received some other way (socket.recv_fds, multiprocessing.reduction.recv_handle,\n"
             "inheritance). The region works on a close-on-exec duplicate: the caller still owns fd and closes it.\n"
             "Raises OSError(EINVAL) if fd is not a memfd, shm object or regular file.");

static PyObject *pyregion_from_fd(PyObject *cls, PyObject *arg)
{
        struct iomem_region *region = NULL;
        struct stat st;
        int fd, copy, r;
        bool reg;

        fd = PyObject_AsFileDescriptor(arg);
        if (fd < 0)
                return NULL;
        copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0)
                return PyErr_SetFromErrno(PyExc_OSError);
        reg = fstat(copy, &st) == 0 && S_ISREG(st.st_mode);
        r = iomem_region_new_consume_fd(copy, &region);
        copy = -1; /* consumed */
        if (r == -EINVAL) /* libiomem's words would speak of names, flags, sizes and seals */
                return pymodule_set_error(r, reg ? "a memory file opened write-only (or O_PATH): open it readable"
                                                 : "not a memory file (a memfd, shm object or regular file)", NULL);
        if (r < 0)
                return pymodule_set_error(r, NULL, NULL);
        return pyregion_new_consume(region, NULL);
}

PyDoc_STRVAR(pyregion_close_doc,
             "close()\n\n"
             "Unmap the region and close its fd (mappings elsewhere stay valid). Raises BufferError while a\n"
             "memoryview or numpy array still points into it. Calling it again does nothing.");

static PyObject *pyregion_close(PyObject *obj, PyObject *unused)
{
        PyIomemRegion *self = (PyIomemRegion *)obj;

        if (!self->region)
                Py_RETURN_NONE;
        if (pyregion_check_unexported(self, "close") < 0)
                return NULL;
        pyregion_unmap(self);
        self->region = iomem_region_free(self->region);
        Py_RETURN_NONE;
}

static PyObject *pyregion_enter(PyObject *obj, PyObject *unused)
{
        if (pyregion_check_open((PyIomemRegion *)obj) < 0)
                return NULL;
        Py_INCREF(obj);
        return obj;
}

static PyObject *pyregion_exit(PyObject *obj, PyObject *args)
{
        PyIomemRegion *self = (PyIomemRegion *)obj;

        /*
         * Leaving on an exception while buffers still point into the region: let that exception out. close()'s
         * BufferError would replace it (the user's error only in __context__); the region stays open, and is
         * closed by close() or when collected, after its buffers.
         */
        if (self->region && self->exports > 0 && PyTuple_Check(args) && PyTuple_GET_SIZE(args) > 0 &&
            PyTuple_GET_ITEM(args, 0) != Py_None)
                Py_RETURN_NONE;
        return pyregion_close(obj, NULL);
}

PyDoc_STRVAR(pyregion_fileno_doc, "fileno() -> int\n\nThe region's fd (still owned by the region; close-on-exec).");

static PyObject *pyregion_fileno(PyObject *obj, PyObject *unused)
{
        PyIomemRegion *self = (PyIomemRegion *)obj;
        int fd;

        if (pyregion_check_open(self) < 0)
                return NULL;
        /* never a negative errno as if it were an fd: a region whose fd iomemd sent is not a regular file raises */
        fd = iomem_region_fd(self->region);
        if (fd < 0)
                return pymodule_set_error(fd, NULL, NULL);
        return PyLong_FromLong(fd);
}

PyDoc_STRVAR(pyregion_map_doc,
             "map() -> memoryview\n\n"
             "memoryview(region): the whole region, shared with every other mapping of it (read-only for a\n"
             "read-only region or one sealed against writes). Release it (or leave its with block) before close().");

static PyObject *pyregion_map(PyObject *obj, PyObject *unused)
{
        return PyMemoryView_FromObject(obj);
}

PyDoc_STRVAR(pyregion_refresh_doc,
             "refresh() -> int\n\nRe-read the size with fstat (another process may have resized it); return it.");

static PyObject *pyregion_refresh(PyObject *obj, PyObject *unused)
{
        PyIomemRegion *self = (PyIomemRegion *)obj;
        int r;

        if (pyregion_check_open(self) < 0)
                return NULL;
        r = iomem_region_refresh(self->region);
        if (r < 0)
                return pymodule_set_error(r, NULL, NULL);
        return PyLong_FromUnsignedLongLong(iomem_region_size(self->region));
}

PyDoc_STRVAR(pyregion_resize_doc,
             "resize(size)\n\n"
             "Change a local region's size (ftruncate). PermissionError if sealed against it; BufferError while\n"
             "buffers point into the region, or (shrinking) into the same file through another Region. Named regions\n"
             "are resized with Client.resize().");

/*
 * Whether a buffer of another Region of this process (Region.from_fd() of the same fd, a Region received back
 * through multiprocessing) points past @size into the file of @self: shrinking under it would make its next
 * access there SIGBUS. Idle mappings do not count (the next buffer maps again at the size then). Return: the
 * Region, or NULL if none (or the files cannot be told apart).
 */
static PyIomemRegion *pyregion_file_export_past_but(int fd, uint64_t size, const PyIomemRegion *skip)
{
        struct stat st, other;

        if (fd < 0 || fstat(fd, &st) < 0)
                return NULL;
        for (PyIomemRegion *r = pyregion_mapped; r; r = r->mapped_next) {
                int ofd;

                if (r == skip || r->exports == 0 || r->mapped <= size || !r->region)
                        continue;
                ofd = iomem_region_fd(r->region);
                if (ofd >= 0 && fstat(ofd, &other) == 0 && other.st_dev == st.st_dev && other.st_ino == st.st_ino)
                        return r;
        }
        return NULL;
}

static PyIomemRegion *pyregion_other_export_past(PyIomemRegion *self, uint64_t size)
{
        return pyregion_file_export_past_but(iomem_region_fd(self->region), size, self);
}

bool pyregion_file_export_past(int fd, uint64_t size)
{
        return pyregion_file_export_past_but(fd, size, NULL) != NULL;
}

bool pyregion_idless_export_past(uint64_t size)
{
        for (PyIomemRegion *r = pyregion_mapped; r; r = r->mapped_next)
                if (r->exports > 0 && r->mapped > size && r->region && !iomem_region_id(r->region))
                        return true;
        return false;
}

static PyObject *pyregion_resize(PyObject *obj, PyObject *arg)
{
        PyIomemRegion *self = (PyIomemRegion *)obj;
        PyIomemRegion *other;
        uint64_t size;
        int r;

        if (!pymodule_u64_converter(arg, &size) || pyregion_check_open(self) < 0 ||
            pyregion_check_unexported(self, "resize") < 0)
                return NULL;
        other = pyregion_other_export_past(self, size);
        if (other) {
                PyErr_Format(PyExc_BufferError,
                             "cannot shrink the region to %llu bytes while %zd buffer(s) (memoryview, numpy array) "
                             "of another Region of the same file (%R) map %zu bytes of it: release them first",
                             (unsigned long long)size, other->exports, (PyObject *)other, other->mapped);
                return NULL;
        }
        pyregion_unmap(self);
        r = iomem_region_resize(self->region, size);
        if (r < 0)
                return pymodule_set_error(r, NULL, NULL);
        Py_RETURN_NONE;
}

PyDoc_STRVAR(pyregion_seal_doc,
             "seal(seals) -> int\n\n"
             "Add seals to a local memfd region: SEAL_* bits or a string such as \"shrink,grow\"; return the\n"
             "seals now in force. OSError(EOPNOTSUPP) for shm/file, OSError(EBUSY) for SEAL_WRITE while mapped\n"
             "writable elsewhere, PermissionError once sealed with SEAL_SEAL. Sealing against writes needs no\n"
             "buffer alive (BufferError); buffers made afterwards are read-only.");

static PyObject *pyregion_seal(PyObject *obj, PyObject *arg)
{
        PyIomemRegion *self = (PyIomemRegion *)obj;
        uint32_t seals;
        int r;

        if (!pymodule_seals_converter(arg, &seals) || pyregion_check_open(self) < 0)
                return NULL;
        if (seals & (IOMEM_SEAL_WRITE | IOMEM_SEAL_FUTURE_WRITE)) {
                /* our own writable mapping would make F_SEAL_WRITE fail with EBUSY, and outlive FUTURE_WRITE */
                if (pyregion_check_unexported(self, "seal against writes") < 0)
                        return NULL;
                pyregion_unmap(self);
        }
        r = iomem_region_seal(self->region, seals);
        /* other Regions' (Region.from_fd() of the same memfd) idle mappings: let go of them only if they are why */
        if (r == -EBUSY && (seals & IOMEM_SEAL_WRITE) && pyregion_drop_idle_maps() > 0)
                r = iomem_region_seal(self->region, seals);
        if (r < 0)
                return pymodule_set_error(r, NULL, NULL);
        r = iomem_region_get_seals(self->region);
        if (r < 0)
                return pymodule_set_error(r, NULL, NULL);
        return PyLong_FromLong(r);
}

static PyObject *pyregion_get_seals(PyObject *obj, void *closure)
{
        PyIomemRegion *self = (PyIomemRegion *)obj;
        int r;

        if (pyregion_check_open(self) < 0)
                return NULL;
        r = iomem_region_get_seals(self->region);
        if (r < 0)
                return pymodule_set_error(r, NULL, NULL);
        return PyLong_FromLong(r);
}

static PyObject *pyregion_get_size(PyObject *obj, void *closure)
{
        PyIomemRegion *self = (PyIomemRegion *)obj;

        if (pyregion_check_open(self) < 0)
                return NULL;
        return PyLong_FromUnsignedLongLong(iomem_region_size(self->region));
}

static PyObject *pyregion_get_closed(PyObject *obj, void *closure)
{
        return PyBool_FromLong(((PyIomemRegion *)obj)->region == NULL);
}

static PyObject *pyregion_get_read_only(PyObject *obj, void *closure)
{
        PyIomemRegion *self = (PyIomemRegion *)obj;

        if (pyregion_check_open(self) < 0)
                return NULL;
        return PyBool_FromLong(iomem_region_flags(self->region) & IOMEM_REGION_RDONLY);
}

static PyObject *pyregion_get_flags(PyObject *obj, void *closure)
{
        PyIomemRegion *self = (PyIomemRegion *)obj;

        if (pyregion_check_open(self) < 0)
                return NULL;
        return PyLong_FromUnsignedLong(iomem_region_flags(self->region));
}

static PyObject *pyregion_get_id(PyObject *obj, void *closure)
{
        PyIomemRegion *self = (PyIomemRegion *)obj;

        if (pyregion_check_open(self) < 0)
                return NULL;
        return PyLong_FromUnsignedLongLong(iomem_region_id(self->region));
}

static PyObject *pyregion_get_backend(PyObject *obj, void *closure)
{
        PyIomemRegion *self = (PyIomemRegion *)obj;

        if (pyregion_check_open(self) < 0)
                return NULL;
        return pymodule_backend_str(iomem_region_backend(self->region));
}

static PyObject *pyregion_get_name(PyObject *obj, void *closure)
{
        PyObject *name = ((PyIomemRegion *)obj)->name;

        Py_INCREF(name);
        return name;
}

static PyObject *pyregion_repr(PyObject *obj)
{
        PyIomemRegion *self = (PyIomemRegion *)obj;
        const char *backend;
        int fd;

        if (!self->region)
                return PyUnicode_FromFormat("<iomem.Region name=%R closed>", self->name);
        backend = iomem_backend_name(iomem_region_backend(self->region));
        fd = iomem_region_fd(self->region);
        if (fd < 0) /* iomemd sent an fd that is not a regular file (D7) */
                return PyUnicode_FromFormat("<iomem.Region name=%R invalid fd>", self->name);
        return PyUnicode_FromFormat("<iomem.Region name=%R size=%llu backend=%s%s fd=%d>", self->name,
                                    (unsigned long long)iomem_region_size(self->region), backend ? backend : "?",
                                    (iomem_region_flags(self->region) & IOMEM_REGION_RDONLY) ? " read-only" : "",
                                    fd);
}

static void pyregion_dealloc(PyObject *obj)
{
        PyIomemRegion *self = (PyIomemRegion *)obj;

        /* no export can be alive here: each buffer holds a reference to its region */
        if (self->weakrefs)
                PyObject_ClearWeakRefs(obj);
        pyregion_unmap(self);
        self->region = iomem_region_free(self->region);
        Py_CLEAR(self->name);
        PyObject_Free(obj);
}

static PyMethodDef pyregion_methods[] = {
        { "from_fd", pyregion_from_fd, METH_O | METH_CLASS, pyregion_from_fd_doc },
        { "close", pyregion_close, METH_NOARGS, pyregion_close_doc },
        { "fileno", pyregion_fileno, METH_NOARGS, pyregion_fileno_doc },
        { "map", pyregion_map, METH_NOARGS, pyregion_map_doc },
        { "refresh", pyregion_refresh, METH_NOARGS, pyregion_refresh_doc },
        { "resize", pyregion_resize, METH_O, pyregion_resize_doc },
        { "seal", pyregion_seal, METH_O, pyregion_seal_doc },
        { "__enter__", pyregion_enter, METH_NOARGS, NULL },
        { "__exit__", pyregion_exit, METH_VARARGS, NULL },
        { NULL, NULL, 0, NULL },
};

static PyObject *pyregion_get_generation(PyObject *obj, void *closure)
{
        uint64_t g = ((PyIomemRegion *)obj)->generation;

        if (!g)
                Py_RETURN_NONE;
        return PyLong_FromUnsignedLongLong(g);
}

static PyGetSetDef pyregion_getset[] = {
        { "size", pyregion_get_size, NULL, "bytes, as last read (see refresh())", NULL },
        { "closed", pyregion_get_closed, NULL, "True after close()", NULL },
        { "read_only", pyregion_get_read_only, NULL, "True for a read-only fd (buffers are read-only)", NULL },
        { "flags", pyregion_get_flags, NULL, "REGION_* bits", NULL },
        { "id", pyregion_get_id, NULL, "the daemon's id of the region, 0 for local regions", NULL },
        { "backend", pyregion_get_backend, NULL, "\"memfd\", \"shm\" or \"file\"", NULL },
        { "name", pyregion_get_name, NULL, "the name it was created or opened by, else None", NULL },
        { "seals", pyregion_get_seals, NULL, "SEAL_* bits in force (0 for shm/file)", NULL },
        { "generation", pyregion_get_generation, NULL,
          "the generation of the version Client.open(after_generation=...) returned, else None", NULL },
        { NULL, NULL, NULL, NULL, NULL },
};

PyDoc_STRVAR(pyregion_doc,
             "Region(size, backend=None, max_size=0)\n\n"
             "A memory region owning one fd: a local one made here (memfd, then shm, then an unlinked file;\n"
             "backend=\"memfd\"/\"shm\"/\"file\" forces one), or one Client.create()/open() returned.\n"
             "memoryview(region) and numpy.frombuffer(region) share its memory without a copy; a read-only\n"
             "region gives read-only buffers. Use it as a context manager or close() it; fileno() gives the\n"
             "fd to pass on (socket.send_fds, subprocess pass_fds).");

PyTypeObject pyregion_type = {
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "iomem.Region",
        .tp_basicsize = sizeof(PyIomemRegion),
        .tp_dealloc = pyregion_dealloc,
        .tp_repr = pyregion_repr,
        .tp_as_buffer = &pyregion_as_buffer,
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_doc = pyregion_doc,
        .tp_weaklistoffset = offsetof(PyIomemRegion, weakrefs),
        .tp_methods = pyregion_methods,
        .tp_getset = pyregion_getset,
        .tp_new = pyregion_tp_new,
};

/* ---- multiprocessing -------------------------------------------------------------------------------- */

/*
 * Regions travel through multiprocessing (Process arguments with spawn/forkserver, Queue, Pipe) as their fd:
 * multiprocessing.reduction.DupFd hands a duplicate to the other process (inherited at spawn, else sent by
 * its resource sharer over a Unix socket), and the receiver wraps it. Only multiprocessing's ForkingPickler
 * knows this reducer; plain pickle refuses a Region, as it refuses a socket.
 */
PyDoc_STRVAR(pyregion_reduce_doc, "_reduce_region(region): the ForkingPickler reducer of Region (internal).");

static PyObject *pyregion_reduce(PyObject *module, PyObject *obj)
{
        PyIomemRegion *self = (PyIomemRegion *)obj;
        PyObject *reduction, *dupfd, *rebuild;
        int fd;

        if (!PyObject_TypeCheck(obj, &pyregion_type)) {
                PyErr_SetString(PyExc_TypeError, "_reduce_region() takes an iomem.Region");
                return NULL;
        }
        if (pyregion_check_open(self) < 0)
                return NULL;
        fd = iomem_region_fd(self->region);
        if (fd < 0)
                return pymodule_set_error(fd, NULL, NULL);
        reduction = PyImport_ImportModule("multiprocessing.reduction");
        if (!reduction)
                return NULL;
        dupfd = PyObject_CallMethod(reduction, "DupFd", "i", fd);
        Py_DECREF(reduction);
        if (!dupfd)
                return NULL;
        rebuild = PyObject_GetAttrString(module, "_rebuild_region");
        if (!rebuild) {
                Py_DECREF(dupfd);
                return NULL;
        }
        return Py_BuildValue("(N(NO))", rebuild, dupfd, self->name);
}

PyDoc_STRVAR(pyregion_rebuild_doc, "_rebuild_region(dupfd, name): a Region from a multiprocessing DupFd (internal).");

static PyObject *pyregion_rebuild(PyObject *module, PyObject *args)
{
        struct iomem_region *region = NULL;
        PyObject *dupfd, *name, *fdobj;
        long fd;
        int r;

        if (!PyArg_ParseTuple(args, "OO:_rebuild_region", &dupfd, &name))
                return NULL;
        fdobj = PyObject_CallMethod(dupfd, "detach", NULL);
        if (!fdobj)
                return NULL;
        fd = PyLong_AsLong(fdobj);
        Py_DECREF(fdobj);
        if (fd == -1 && PyErr_Occurred())
                return NULL;
        r = iomem_region_new_consume_fd((int)fd, &region); /* fd consumed */
        if (r < 0)
                return pymodule_set_error(r, NULL, NULL);
        return pyregion_new_consume(region, name);
}

static PyMethodDef pyregion_module_methods[] = {
        { "_reduce_region", pyregion_reduce, METH_O, pyregion_reduce_doc },
        { "_rebuild_region", pyregion_rebuild, METH_VARARGS, pyregion_rebuild_doc },
        { NULL, NULL, 0, NULL },
};

/* Register the reducer with multiprocessing's ForkingPickler. Return: 0 or -1. */
static int pyregion_register_reducer(PyObject *module)
{
        PyObject *reduction, *pickler, *reducer, *res;

        if (PyModule_AddFunctions(module, pyregion_module_methods) < 0)
                return -1;
        reduction = PyImport_ImportModule("multiprocessing.reduction");
        if (!reduction) {
                /* an interpreter without multiprocessing: regions just cannot travel through it */
                PyErr_Clear();
                return 0;
        }
        pickler = PyObject_GetAttrString(reduction, "ForkingPickler");
        Py_DECREF(reduction);
        reducer = PyObject_GetAttrString(module, "_reduce_region");
        if (!pickler || !reducer) {
                Py_XDECREF(pickler);
                Py_XDECREF(reducer);
                return -1;
        }
        res = PyObject_CallMethod(pickler, "register", "OO", (PyObject *)&pyregion_type, reducer);
        Py_DECREF(pickler);
        Py_DECREF(reducer);
        if (!res)
                return -1;
        Py_DECREF(res);
        return 0;
}

int pyregion_ready(PyObject *module)
{
        if (PyType_Ready(&pyregion_type) < 0)
                return -1;
        Py_INCREF(&pyregion_type);
        if (PyModule_AddObject(module, "Region", (PyObject *)&pyregion_type) < 0) {
                Py_DECREF(&pyregion_type);
                return -1;
        }
        return pyregion_register_reducer(module);
}
