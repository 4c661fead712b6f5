/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* pyclient: iomem.Client, one connection to iomemd; blocking requests run without the GIL, one at a time. */

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pyiomem.h"

static PyTypeObject pyclient_stat_type, pyclient_entry_type, pyclient_status_type, pyclient_quota_type,
        pyclient_event_type, pyclient_metric_type;

/* blocking waits (open with wait, next_event) run in slices this long, so that signals (Ctrl-C) get through */
#define PYCLIENT_WAIT_SLICE_MS 200

/* ---- locking and errors ---------------------------------------------------------------------------- */

/* Take the client's lock, waiting without the GIL. */
static void pyclient_lock(PyIomemClient *self)
{
        if (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
                Py_BEGIN_ALLOW_THREADS
                PyThread_acquire_lock(self->lock, WAIT_LOCK);
                Py_END_ALLOW_THREADS
        }
}

/*
 * pyclient_unlock() - let go of the lock after a blocking call: keep the fd
 * and reconnect count an event loop watches (a reconnect changes them, and
 * only blocking calls reconnect), then tell the loop (pyasync_wakeup()):
 * replies and events this call read for the asynchronous client wait for
 * its next process(). An exception already set is kept.
 */
static void pyclient_unlock(PyIomemClient *self)
{
        if (self->client) {
                int fd = iomem_client_fd(self->client);

                self->fd = fd >= 0 ? fd : -1;
                self->reconnects = iomem_client_reconnects(self->client);
        }
        PyThread_release_lock(self->lock);
        if (self->closing && !self->busy) {
                /* close() came from a signal handler during the call (pyclient_interrupted()) */
                PyObject *type, *value, *tb;

                PyErr_Fetch(&type, &value, &tb);
                pyasync_shutdown(self, 1);
                PyErr_Restore(type, value, tb);
                return;
        }
        pyasync_wakeup(self);
}

/*
 * pyclient_enter() - take the client's lock (waiting without the GIL) and
 * check the connection is usable from this process.
 * Return: 0 with the lock held; -1 with an exception and the lock free.
 */
static int pyclient_enter(PyIomemClient *self)
{
        /* a forked child raises without the lock: a thread of the parent may have held it at the fork, and
         * the child's copy stays held for ever */
        if (self->pid != getpid())
                return pyclient_check_usable(self);
        if (self->handler_thread && self->handler_thread == PyThread_get_thread_ident()) {
                /* the lock is this thread's, held by the call the handler interrupted: waiting would hang */
                PyErr_SetString(PyExc_RuntimeError, "a signal handler cannot use the iomem.Client whose call it "
                                                    "interrupted (close() it, or use another client)");
                return -1;
        }
        pyclient_lock(self);
        if (pyclient_check_usable(self) < 0) {
                PyThread_release_lock(self->lock);
                return -1;
        }
        return 0;
}

int pyclient_check_usable(const PyIomemClient *self)
{
        if (!self->client || self->closing) {
                PyErr_SetString(PyExc_ValueError, "operation on a closed iomem.Client");
                return -1;
        }
        if (self->pid != getpid()) {
                PyErr_SetString(PyExc_RuntimeError,
                                "this iomem.Client was connected by another process (fork): connect again");
                return -1;
        }
        return 0;
}

/*
 * pyclient_leave() - release the lock taken by pyclient_enter(); for @r < 0
 * raise the errno's OSError with the daemon's message (read before another
 * thread can make a call) and @filename (may be NULL).
 * Return: 0, or -1 with the exception set.
 */
static int pyclient_leave(PyIomemClient *self, int r, PyObject *filename)
{
        /* -EINTR: a signal handler raised during the wait (pyclient_interrupted()): its exception goes out */
        if (r == -EINTR && PyErr_Occurred())
                ;
        else if (r == -EINTR && self->closing)
                PyErr_SetString(PyExc_ValueError, "the iomem.Client was closed (by a signal handler) during the call");
        else if (r < 0)
                pymodule_set_error(r, iomem_client_error_message(self->client), filename);
        pyclient_unlock(self);
        return r < 0 ? -1 : 0;
}

/*
 * iomem_client_set_interrupt_cb(): a signal interrupted a blocking call's wait for the daemon. Python's handlers
 * run here, as PEP 475 has it for system calls: if one raised (Ctrl-C), the call gives up (libiomem drops the
 * reply still to come, the connection stays usable) and returns -EINTR with the exception set, which
 * pyclient_leave() lets out; if none did, the wait goes on. Called without the GIL (the caller let it go) and
 * without libiomem's lock, but with @lock held by this thread: a handler's close() of this client only marks it
 * (@busy) and ends the call, the client is disconnected as the call leaves (pyclient_unlock()); its other
 * blocking calls raise RuntimeError (pyclient_enter()) instead of waiting for ever. In threads other than the
 * main one PyErr_CheckSignals() does nothing.
 */
static int pyclient_interrupted(struct iomem_client *client, void *userdata)
{
        PyIomemClient *self = userdata;
        PyGILState_STATE g = PyGILState_Ensure();
        int stop;

        (void)client;
        self->handler_thread = PyThread_get_thread_ident();
        self->busy++;
        stop = PyErr_CheckSignals() < 0;
        self->busy--;
        self->handler_thread = 0;
        stop = stop || self->closing;
        PyGILState_Release(g);
        return stop;
}

int pyclient_name_converter(PyObject *obj, void *namep)
{
        Py_ssize_t len;
        const char *name;

        if (!PyUnicode_Check(obj)) {
                PyErr_Format(PyExc_TypeError, "a region name must be a str, not %.100s", Py_TYPE(obj)->tp_name);
                return 0;
        }
        name = PyUnicode_AsUTF8AndSize(obj, &len);
        if (!name)
                return 0;
        if ((size_t)len != strlen(name)) {
                PyErr_SetString(PyExc_ValueError, "embedded null character in region name");
                return 0;
        }
        *(const char **)namep = name;
        return 1;
}

int pyclient_timeout_converter(PyObject *obj, void *msp)
{
        double s;

        if (obj == Py_None) {
                *(int *)msp = -1;
                return 1;
        }
        s = PyFloat_AsDouble(obj);
        if (s == -1.0 && PyErr_Occurred())
                return 0;
        if (!(s >= 0.0) || s * 1000.0 > (double)INT_MAX) {
                PyErr_SetString(PyExc_ValueError, "timeout must be None or seconds between 0 and about 24 days");
                return 0;
        }
        *(int *)msp = (int)ceil(s * 1000.0);
        return 1;
}

int pyclient_wait_converter(int wait, PyObject *timeout, int *wait_ms)
{
        *wait_ms = 0;
        if (!wait && timeout != Py_None) {
                PyErr_SetString(PyExc_ValueError, "timeout is for wait=True");
                return -1;
        }
        if (wait) {
                if (!pyclient_timeout_converter(timeout, wait_ms))
                        return -1;
                if (*wait_ms == 0)
                        *wait_ms = 1; /* 0 means "do not wait" to libiomem */
        }
        return 0;
}

/* Return: CLOCK_MONOTONIC in milliseconds. */
static int64_t pyclient_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- connection ------------------------------------------------------------------------------------ */

static PyObject *pyclient_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
        static char *kwlist[] = { "socket", "timeout", NULL };
        PyObject *socket = Py_None, *path_bytes = NULL, *timeout = Py_None;
        struct iomem_client *client = NULL;
        PyIomemClient *self;
        const char *path = NULL;
        int timeout_ms = -1, events = 1, r;

        if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OO:Client", kwlist, &socket, &timeout))
                return NULL;
        if (!pyclient_timeout_converter(timeout, &timeout_ms))
                return NULL;
        if (socket != Py_None) {
                if (!PyUnicode_FSConverter(socket, &path_bytes))
                        return NULL;
                path = PyBytes_AS_STRING(path_bytes);
        }
        self = (PyIomemClient *)type->tp_alloc(type, 0);
        if (!self) {
                Py_XDECREF(path_bytes);
                return NULL;
        }
        self->lock = PyThread_allocate_lock();
        if (!self->lock) {
                Py_XDECREF(path_bytes);
                Py_DECREF(self);
                return PyErr_NoMemory();
        }
        /* NULL: libiomem's default socket rule. EVENTS costs nothing until watch() is called; a daemon that
         * predates it refuses it with EINVAL: then connect without (watch, publish and generations fail with
         * EOPNOTSUPP) */
        Py_BEGIN_ALLOW_THREADS
        r = iomem_connect_timeout(path, IOMEM_CONNECT_EVENTS, timeout_ms, &client); /* a stopped daemon: ETIMEDOUT */
        if (r == -EINVAL) {
                events = 0;
                r = iomem_connect_timeout(path, 0, timeout_ms, &client);
                /* a plain connect may not wait for HELLO's answer: read it here, so that a refusal is ours */
                if (r == 0) {
                        r = iomem_client_handshake(client);
                        if (r < 0)
                                client = iomem_disconnect(client);
                }
        }
        Py_END_ALLOW_THREADS
        if (r < 0) {
                pymodule_set_error(r, r == -ENOENT ? "no socket at this path (is iomemd running?)" : NULL,
                                   socket != Py_None ? socket : NULL);
                Py_XDECREF(path_bytes);
                Py_DECREF(self);
                return NULL;
        }
        Py_XDECREF(path_bytes);
        iomem_client_set_timeout(client, timeout_ms);
        iomem_client_set_interrupt_cb(client, pyclient_interrupted, self);
        self->client = client;
        self->fd = iomem_client_fd(client);
        self->pid = getpid();
        self->timeout_ms = timeout_ms;
        self->events = events;
        self->socket = socket;
        Py_INCREF(socket);
        return (PyObject *)self;
}

PyDoc_STRVAR(pyclient_close_doc,
             "close()\n\nDisconnect (regions created with lease=True go away). Regions stay usable. Idempotent.");

static PyObject *pyclient_close(PyObject *obj, PyObject *unused)
{
        PyIomemClient *self = (PyIomemClient *)obj;

        if (self->client && self->pid != getpid()) {
                /*
                 * A forked child: close its copy of the socket without the lock (a thread of the parent may
                 * have held it at the fork) and without waiting for @busy (counted by threads that are not
                 * here); no call of the child runs on this client (pyclient_check_usable()).
                 */
                pyasync_shutdown(self, 1);
                Py_RETURN_NONE;
        }
        if (self->client && self->handler_thread && self->handler_thread == PyThread_get_thread_ident()) {
                /* a signal handler, inside this thread's blocking call (holding the lock): the call ends and
                 * disconnects as it leaves (pyclient_interrupted(), pyclient_unlock()) */
                self->closing = 1;
                Py_RETURN_NONE;
        }
        pyclient_lock(self); /* no blocking call runs from here on */
        if (self->busy) {
                /* an asynchronous call runs (this is its callback, or another thread): it disconnects */
                self->closing = 1;
                PyThread_release_lock(self->lock);
                Py_RETURN_NONE;
        }
        PyThread_release_lock(self->lock);
        /* pending requests' callbacks are told, after the client is gone */
        pyasync_shutdown(self, 1);
        Py_RETURN_NONE;
}

static PyObject *pyclient_enter_ctx(PyObject *obj, PyObject *unused)
{
        if (!((PyIomemClient *)obj)->client || ((PyIomemClient *)obj)->closing) {
                PyErr_SetString(PyExc_ValueError, "operation on a closed iomem.Client");
                return NULL;
        }
        Py_INCREF(obj);
        return obj;
}

static PyObject *pyclient_exit_ctx(PyObject *obj, PyObject *args)
{
        return pyclient_close(obj, NULL);
}

PyDoc_STRVAR(pyclient_fileno_doc,
             "fileno() -> int\n\n"
             "The connection's socket (borrowed), e.g. to poll it. It changes when the client connects again\n"
             "after a daemon restart: this waits for a call of another thread that may be doing so.\n"
             "OSError(ENOTCONN) while there is no connection (the daemon went away and did not come back).");

static PyObject *pyclient_fileno(PyObject *obj, PyObject *unused)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        int fd;

        /* under the lock: another thread's call may be reconnecting (closing the fd, making another), and
         * close() may not free the client meanwhile */
        if (pyclient_enter(self) < 0)
                return NULL;
        fd = iomem_client_fd(self->client);
        if (pyclient_leave(self, fd < 0 ? fd : 0, NULL) < 0)
                return NULL;
        return PyLong_FromLong(fd);
}

/* Pending requests' callbacks get OSError(ENOTCONN) when the client is collected (PEP 442: before tp_clear). */
static void pyclient_finalize(PyObject *obj)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        PyObject *type, *value, *tb;

        if (!self->client && !self->pending)
                return;
        PyErr_Fetch(&type, &value, &tb);
        pyasync_shutdown(self, 1); /* no call can be running: it would hold a reference */
        PyErr_Restore(type, value, tb);
}

static int pyclient_traverse(PyObject *obj, visitproc visit, void *arg)
{
        PyIomemClient *self = (PyIomemClient *)obj;

        Py_VISIT(self->socket);
        return pyasync_traverse(self, visit, arg);
}

static int pyclient_clear(PyObject *obj)
{
        PyIomemClient *self = (PyIomemClient *)obj;

        pyasync_shutdown(self, 0);
        Py_CLEAR(self->cb_error_type);
        Py_CLEAR(self->cb_error_value);
        Py_CLEAR(self->cb_error_tb);
        return 0;
}

static void pyclient_dealloc(PyObject *obj)
{
        PyIomemClient *self = (PyIomemClient *)obj;

        if (PyObject_CallFinalizerFromDealloc(obj) < 0)
                return; /* resurrected (still tracked by the GC, as it must be) */
        PyObject_GC_UnTrack(obj);
        pyclient_clear(obj);
        if (self->lock)
                PyThread_free_lock(self->lock);
        Py_CLEAR(self->socket);
        Py_TYPE(obj)->tp_free(obj);
}

static PyObject *pyclient_get_closed(PyObject *obj, void *closure)
{
        return PyBool_FromLong(((PyIomemClient *)obj)->client == NULL || ((PyIomemClient *)obj)->closing);
}

static PyObject *pyclient_get_socket(PyObject *obj, void *closure)
{
        PyObject *socket = ((PyIomemClient *)obj)->socket;

        Py_INCREF(socket);
        return socket;
}

static PyObject *pyclient_get_timeout(PyObject *obj, void *closure)
{
        int ms = ((PyIomemClient *)obj)->timeout_ms;

        if (ms < 0)
                Py_RETURN_NONE;
        return PyFloat_FromDouble(ms / 1000.0);
}

static int pyclient_set_timeout(PyObject *obj, PyObject *value, void *closure)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        int ms;

        if (!value) {
                PyErr_SetString(PyExc_AttributeError, "cannot delete timeout");
                return -1;
        }
        if (!pyclient_timeout_converter(value, &ms) || pyclient_enter(self) < 0)
                return -1;
        iomem_client_set_timeout(self->client, ms);
        self->timeout_ms = ms;
        return pyclient_leave(self, 0, NULL);
}

static PyObject *pyclient_repr(PyObject *obj)
{
        PyIomemClient *self = (PyIomemClient *)obj;

        if (!self->client)
                return PyUnicode_FromFormat("<iomem.Client socket=%R closed>", self->socket);
        return PyUnicode_FromFormat("<iomem.Client socket=%R fd=%d>", self->socket, self->fd);
}

/* ---- regions --------------------------------------------------------------------------------------- */

PyDoc_STRVAR(pyclient_create_doc,
             "create(name, size, *, exclusive=False, lease=False, resizable=False, seals=0, mode=0, backend=None)\n"
             "-> Region\n\n"
             "Create a region in the daemon (read-write). name=None makes an anonymous one. exclusive: fail\n"
             "with FileExistsError if the name exists; lease: the name goes away when this connection closes;\n"
             "resizable: allow shrinking later; seals: initial seals (memfd); mode: 0..0o777, 0 = daemon default.");

static PyObject *pyclient_create(PyObject *obj, PyObject *args, PyObject *kwargs)
{
        static char *kwlist[] = { "name", "size", "exclusive", "lease", "resizable", "seals", "mode", "backend", NULL };
        PyIomemClient *self = (PyIomemClient *)obj;
        struct iomem_create_opts opts = { 0 };
        struct iomem_region *region = NULL;
        PyObject *nameobj;
        const char *name = NULL;
        int exclusive = 0, lease = 0, resizable = 0, r;
        uint32_t mode = 0;
        uint64_t size;

        if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO&|$pppO&O&O&:create", kwlist, &nameobj,
                                         pymodule_u64_converter, &size, &exclusive, &lease, &resizable,
                                         pymodule_seals_converter, &opts.seals, pymodule_mode_converter, &mode,
                                         pymodule_backend_converter,
                                         &opts.backend))
                return NULL;
        if (nameobj != Py_None && !pyclient_name_converter(nameobj, &name))
                return NULL;
        opts.flags = (exclusive ? IOMEM_CREATE_EXCLUSIVE : 0) | (lease ? IOMEM_CREATE_LEASE : 0) |
                     (resizable ? IOMEM_CREATE_RESIZABLE : 0);
        opts.mode = mode;
        if (pyclient_enter(self) < 0)
                return NULL;
        Py_BEGIN_ALLOW_THREADS
        r = iomem_create(self->client, name, size, &opts, &region);
        Py_END_ALLOW_THREADS
        if (pyclient_leave(self, r, nameobj != Py_None ? nameobj : NULL) < 0)
                return NULL;
        return pyregion_new_consume(region, nameobj);
}

PyDoc_STRVAR(pyclient_open_doc,
             "open(name, *, read_only=False, wait=False, timeout=None, after_generation=None) -> Region\n\n"
             "Open a named region. read_only: a read-only fd (needs read permission; buffers are read-only).\n"
             "wait: if the name does not exist yet, wait for it to be created, at most timeout seconds\n"
             "(None = without limit; TimeoutError after). Without wait a missing name is FileNotFoundError.\n"
             "after_generation: open only a version newer than this generation (with wait: wait for one to\n"
             "be published); after_generation=0: any version, and the region's generation attribute tells which\n"
             "one was opened (it is None when opened without after_generation).");

static PyObject *pyclient_open(PyObject *obj, PyObject *args, PyObject *kwargs)
{
        static char *kwlist[] = { "name", "read_only", "wait", "timeout", "after_generation", NULL };
        PyIomemClient *self = (PyIomemClient *)obj;
        struct iomem_region *region = NULL;
        PyObject *nameobj, *timeout = Py_None, *afterobj = Py_None;
        const char *name;
        uint64_t after = 0, generation = 0;
        int read_only = 0, wait = 0, wait_ms = 0, slice, r;
        int64_t deadline = 0;

        if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$ppOO:open", kwlist, &nameobj, &read_only, &wait, &timeout,
                                         &afterobj))
                return NULL;
        if (afterobj != Py_None && !pymodule_u64_converter(afterobj, &after))
                return NULL;
        if (!pyclient_name_converter(nameobj, &name))
                return NULL;
        if (pyclient_wait_converter(wait, timeout, &wait_ms) < 0)
                return NULL;
        if (wait_ms > 0)
                deadline = pyclient_now_ms() + wait_ms;
        /* a wait is asked of the daemon in slices, the lock let go in between: signals and other threads
         * get through */
        for (;;) {
                slice = wait_ms;
                if (wait_ms < 0 || wait_ms > PYCLIENT_WAIT_SLICE_MS)
                        slice = PYCLIENT_WAIT_SLICE_MS;
                if (pyclient_enter(self) < 0)
                        return NULL;
                if (!self->events && afterobj != Py_None) {
                        r = -EOPNOTSUPP;
                } else {
                        /* OPEN unless a version was asked for: its errors keep their words ("no region ...") */
                        Py_BEGIN_ALLOW_THREADS
                        if (afterobj != Py_None)
                                r = iomem_open_version(self->client, name, read_only ? IOMEM_OPEN_RDONLY : 0, after,
                                                       slice, &region, &generation);
                        else
                                r = iomem_open(self->client, name, read_only ? IOMEM_OPEN_RDONLY : 0, slice, &region);
                        Py_END_ALLOW_THREADS
                }
                if (r == -ETIMEDOUT && slice != wait_ms) {
                        pyclient_unlock(self);
                        if (PyErr_CheckSignals() < 0)
                                return NULL;
                        if (wait_ms > 0) {
                                int64_t left = deadline - pyclient_now_ms();

                                wait_ms = left > 0 ? (int)left : 1; /* 1: a last try that barely waits */
                        }
                        continue;
                }
                break;
        }
        if (pyclient_leave(self, r, nameobj) < 0)
                return NULL;
        return pyregion_new_version_consume(region, nameobj, generation);
}

PyDoc_STRVAR(pyclient_stat_doc, "stat(name) -> StatResult\n\nA named region's size, seals, owner, mode, generation, ...");

static PyObject *pyclient_stat(PyObject *obj, PyObject *args)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        struct iomem_stat st;
        PyObject *nameobj;
        const char *name;
        uint64_t generation = 0;
        int r;

        if (!PyArg_ParseTuple(args, "O:stat", &nameobj) || !pyclient_name_converter(nameobj, &name) ||
            pyclient_enter(self) < 0)
                return NULL;
        Py_BEGIN_ALLOW_THREADS
        if (self->events)
                r = iomem_stat_version(self->client, name, &st, &generation);
        else
                r = iomem_stat(self->client, name, &st);
        Py_END_ALLOW_THREADS
        if (pyclient_leave(self, r, nameobj) < 0)
                return NULL;
        return pyclient_stat_new(&st, generation);
}

/* Return: the struct sequence @res just filled in, or NULL (@res dropped) if making one of its items raised. */
static PyObject *pyclient_struct_done(PyObject *res)
{
        if (PyErr_Occurred()) {
                Py_DECREF(res);
                return NULL;
        }
        return res;
}

PyObject *pyclient_stat_new(const struct iomem_stat *st, uint64_t generation)
{
        PyObject *res = PyStructSequence_New(&pyclient_stat_type);

        if (!res)
                return NULL;
        PyStructSequence_SET_ITEM(res, 0, PyLong_FromUnsignedLongLong(st->id));
        PyStructSequence_SET_ITEM(res, 1, PyLong_FromUnsignedLongLong(st->size));
        PyStructSequence_SET_ITEM(res, 2, PyLong_FromUnsignedLongLong(st->ctime_ns));
        PyStructSequence_SET_ITEM(res, 3, PyLong_FromUnsignedLongLong(st->open_count));
        PyStructSequence_SET_ITEM(res, 4, PyLong_FromUnsignedLong(st->seals));
        PyStructSequence_SET_ITEM(res, 5, PyLong_FromUnsignedLong(st->flags));
        PyStructSequence_SET_ITEM(res, 6, PyLong_FromUnsignedLong(st->uid));
        PyStructSequence_SET_ITEM(res, 7, PyLong_FromUnsignedLong(st->gid));
        PyStructSequence_SET_ITEM(res, 8, PyLong_FromUnsignedLong(st->mode));
        PyStructSequence_SET_ITEM(res, 9, pymodule_backend_str(st->backend));
        if (generation)
                PyStructSequence_SET_ITEM(res, 10, PyLong_FromUnsignedLongLong(generation));
        else
                PyStructSequence_SET_ITEM(res, 10, Py_NewRef(Py_None));
        return pyclient_struct_done(res);
}

/* LIST entries gathered without the GIL, turned into Python objects after */
struct pyclient_list {
        struct iomem_list_entry *v;
        size_t n, cap;
};

static int pyclient_list_add(const struct iomem_list_entry *e, void *userdata)
{
        struct pyclient_list *l = userdata;

        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 64;
                struct iomem_list_entry *v = realloc(l->v, cap * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        l->v[l->n] = *e;
        l->v[l->n].name = strdup(e->name);
        if (!l->v[l->n].name)
                return -ENOMEM;
        l->n++;
        return 0;
}

static void pyclient_list_free(struct pyclient_list *l)
{
        for (size_t i = 0; i < l->n; i++)
                free((char *)l->v[i].name);
        free(l->v);
}

PyDoc_STRVAR(pyclient_list_doc,
             "list(prefix=None) -> list of ListEntry\n\nThe named regions whose name starts with prefix (all if None).");

static PyObject *pyclient_list(PyObject *obj, PyObject *args, PyObject *kwargs)
{
        static char *kwlist[] = { "prefix", NULL };
        PyIomemClient *self = (PyIomemClient *)obj;
        struct pyclient_list l = { 0 };
        PyObject *prefixobj = Py_None, *res = NULL;
        const char *prefix = NULL;
        int r;

        if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:list", kwlist, &prefixobj))
                return NULL;
        if (prefixobj != Py_None && !pyclient_name_converter(prefixobj, &prefix))
                return NULL;
        if (pyclient_enter(self) < 0)
                return NULL;
        Py_BEGIN_ALLOW_THREADS
        r = iomem_list(self->client, prefix, pyclient_list_add, &l);
        Py_END_ALLOW_THREADS
        if (pyclient_leave(self, r, NULL) < 0)
                goto out;
        res = PyList_New((Py_ssize_t)l.n);
        for (size_t i = 0; res && i < l.n; i++) {
                PyObject *e = PyStructSequence_New(&pyclient_entry_type);

                if (!e) {
                        Py_CLEAR(res);
                        break;
                }
                PyStructSequence_SET_ITEM(e, 0, PyUnicode_FromString(l.v[i].name));
                PyStructSequence_SET_ITEM(e, 1, PyLong_FromUnsignedLongLong(l.v[i].id));
                PyStructSequence_SET_ITEM(e, 2, PyLong_FromUnsignedLongLong(l.v[i].size));
                PyStructSequence_SET_ITEM(e, 3, PyLong_FromUnsignedLong(l.v[i].seals));
                PyStructSequence_SET_ITEM(e, 4, PyLong_FromUnsignedLong(l.v[i].mode));
                PyStructSequence_SET_ITEM(e, 5, PyLong_FromUnsignedLong(l.v[i].uid));
                PyStructSequence_SET_ITEM(e, 6, PyLong_FromUnsignedLong(l.v[i].gid));
                PyList_SET_ITEM(res, (Py_ssize_t)i, e);
                if (PyErr_Occurred())
                        Py_CLEAR(res);
        }
out:
        pyclient_list_free(&l);
        return res;
}

PyDoc_STRVAR(pyclient_delete_doc,
             "delete(name)\n\nRemove the name; fds and mappings already handed out stay valid. Owner or root.");

static PyObject *pyclient_delete(PyObject *obj, PyObject *args)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        PyObject *nameobj;
        const char *name;
        int r;

        if (!PyArg_ParseTuple(args, "O:delete", &nameobj) || !pyclient_name_converter(nameobj, &name) ||
            pyclient_enter(self) < 0)
                return NULL;
        Py_BEGIN_ALLOW_THREADS
        r = iomem_delete(self->client, name);
        Py_END_ALLOW_THREADS
        if (pyclient_leave(self, r, nameobj) < 0)
                return NULL;
        Py_RETURN_NONE;
}

PyDoc_STRVAR(pyclient_resize_doc,
             "resize(name, size)\n\nChange a named region's size (owner or root; shrinking needs resizable=True).\n"
             "BufferError, nothing resized, shrinking under buffers of a Region of this process of that name or of\n"
             "its file (Region.from_fd()).");

/* Client.resize()'s refusal to shrink under this process's buffers: unlock, BufferError. Return: NULL. */
static PyObject *pyclient_resize_refuse(PyIomemClient *self, PyObject *nameobj, uint64_t size)
{
        pyclient_unlock(self);
        PyErr_Format(PyExc_BufferError,
                     "cannot shrink %R to %llu bytes while buffers (memoryview, numpy array) of a Region of it in "
                     "this process map more: release them first",
                     nameobj, (unsigned long long)size);
        return NULL;
}

static PyObject *pyclient_resize(PyObject *obj, PyObject *args)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        PyObject *nameobj;
        const char *name;
        uint64_t size;
        int r;

        if (!PyArg_ParseTuple(args, "OO&:resize", &nameobj, pymodule_u64_converter, &size) ||
            !pyclient_name_converter(nameobj, &name) || pyclient_enter(self) < 0)
                return NULL;
        /*
         * Shrinking a region under a buffer of this process kills the interpreter (SIGBUS) at the buffer's next
         * access past the new end. A Region of the name with live buffers past @size: ask the daemon which version
         * the name is now (one round trip, only then), and refuse if a Region of that version has such buffers.
         */
        if (pyregion_named_export_past(nameobj, size, 0)) {
                struct iomem_stat st;

                Py_BEGIN_ALLOW_THREADS
                r = iomem_stat(self->client, name, &st);
                Py_END_ALLOW_THREADS
                if (r == -EINTR) { /* a signal handler raised (or closed the client): the resize is not sent */
                        pyclient_leave(self, r, nameobj);
                        return NULL;
                }
                if (r == 0 && pyregion_named_export_past(nameobj, size, st.id))
                        return pyclient_resize_refuse(self, nameobj, size);
        }
        /*
         * A Region with no daemon id (Region.from_fd() of a name's fd, received from another process) has live
         * buffers past @size: open the name (one round trip more, only then; not the open cache, which may hold
         * an older version) and compare its file with theirs. If it cannot be opened (no read permission, no
         * such name), nothing is known: the RESIZE says what it says.
         */
        if (pyregion_idless_export_past(size)) {
                struct iomem_region *cur = NULL;
                bool past;

                Py_BEGIN_ALLOW_THREADS
                r = iomem_open_version(self->client, name, IOMEM_OPEN_RDONLY, 0, 0, &cur, NULL);
                Py_END_ALLOW_THREADS
                if (r == -EINTR) {
                        pyclient_leave(self, r, nameobj);
                        return NULL;
                }
                past = r == 0 && pyregion_file_export_past(iomem_region_fd(cur), size);
                iomem_region_free(cur);
                if (past)
                        return pyclient_resize_refuse(self, nameobj, size);
        }
        Py_BEGIN_ALLOW_THREADS
        r = iomem_resize(self->client, name, size);
        Py_END_ALLOW_THREADS
        if (pyclient_leave(self, r, nameobj) < 0)
                return NULL;
        Py_RETURN_NONE;
}

PyDoc_STRVAR(pyclient_seal_doc,
             "seal(name, seals) -> int\n\n"
             "Add seals (SEAL_* bits or a string such as \"write\") to a named memfd region; return the seals now.");

static PyObject *pyclient_seal(PyObject *obj, PyObject *args)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        PyObject *nameobj;
        const char *name;
        uint32_t seals, now = 0;
        int r;

        if (!PyArg_ParseTuple(args, "OO&:seal", &nameobj, pymodule_seals_converter, &seals) ||
            !pyclient_name_converter(nameobj, &name))
                return NULL;
        if (pyclient_enter(self) < 0)
                return NULL;
        Py_BEGIN_ALLOW_THREADS
        r = iomem_seal(self->client, name, seals, &now);
        Py_END_ALLOW_THREADS
        /*
         * A mapping a Region of this process keeps for its next buffer makes a write seal EBUSY: let go of those
         * no buffer uses and try once more (nothing was applied). Only then: other regions keep theirs.
         */
        if (r == -EBUSY && (seals & IOMEM_SEAL_WRITE) && pyregion_drop_idle_maps() > 0) {
                Py_BEGIN_ALLOW_THREADS
                r = iomem_seal(self->client, name, seals, &now);
                Py_END_ALLOW_THREADS
        }
        if (pyclient_leave(self, r, nameobj) < 0)
                return NULL;
        return PyLong_FromUnsignedLong(now);
}

PyDoc_STRVAR(pyclient_chmod_doc, "chmod(name, mode)\n\nSet a named region's mode (0..0o777). Owner or root.");

static PyObject *pyclient_chmod(PyObject *obj, PyObject *args)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        PyObject *nameobj;
        const char *name;
        uint32_t mode;
        int r;

        if (!PyArg_ParseTuple(args, "OO&:chmod", &nameobj, pymodule_mode_converter, &mode) ||
            !pyclient_name_converter(nameobj, &name) || pyclient_enter(self) < 0)
                return NULL;
        Py_BEGIN_ALLOW_THREADS
        r = iomem_chmod(self->client, name, mode);
        Py_END_ALLOW_THREADS
        if (pyclient_leave(self, r, nameobj) < 0)
                return NULL;
        Py_RETURN_NONE;
}

/* "O&" converter: a uid/gid, or None for IOMEM_ID_UNCHANGED */
static int pyclient_id_converter(PyObject *obj, void *idp)
{
        long long v;

        if (obj == Py_None) {
                *(uint32_t *)idp = IOMEM_ID_UNCHANGED;
                return 1;
        }
        if (!PyLong_Check(obj)) {
                PyErr_Format(PyExc_TypeError, "uid/gid must be an int or None, not %.100s", Py_TYPE(obj)->tp_name);
                return 0;
        }
        v = PyLong_AsLongLong(obj);
        if (v == -1 && PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_OverflowError))
                return 0;
        if (PyErr_Occurred() || v < 0 || v >= IOMEM_ID_UNCHANGED) {
                PyErr_Clear();
                PyErr_SetString(PyExc_ValueError, "uid/gid out of range");
                return 0;
        }
        *(uint32_t *)idp = (uint32_t)v;
        return 1;
}

PyDoc_STRVAR(pyclient_chown_doc,
             "chown(name, uid=None, gid=None)\n\n"
             "Set a named region's owner (root only) and/or group (None keeps it).");

static PyObject *pyclient_chown(PyObject *obj, PyObject *args, PyObject *kwargs)
{
        static char *kwlist[] = { "name", "uid", "gid", NULL };
        PyIomemClient *self = (PyIomemClient *)obj;
        PyObject *nameobj;
        const char *name;
        uint32_t uid = IOMEM_ID_UNCHANGED, gid = IOMEM_ID_UNCHANGED;
        int r;

        if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O&O&:chown", kwlist, &nameobj, pyclient_id_converter, &uid,
                                         pyclient_id_converter, &gid) ||
            !pyclient_name_converter(nameobj, &name) || pyclient_enter(self) < 0)
                return NULL;
        Py_BEGIN_ALLOW_THREADS
        r = iomem_chown(self->client, name, uid, gid);
        Py_END_ALLOW_THREADS
        if (pyclient_leave(self, r, nameobj) < 0)
                return NULL;
        Py_RETURN_NONE;
}

PyDoc_STRVAR(pyclient_register_doc,
             "register(name, region, *, lease=False, mode=0) -> int\n\n"
             "Publish a local memfd Region under name; return the daemon's id. The memfd must be sealed with\n"
             "at least REGISTER_SEALS (\"shrink,grow\"); the region stays yours (the daemon keeps a copy).");

static PyObject *pyclient_register(PyObject *obj, PyObject *args, PyObject *kwargs)
{
        static char *kwlist[] = { "name", "region", "lease", "mode", NULL };
        PyIomemClient *self = (PyIomemClient *)obj;
        PyIomemRegion *region;
        PyObject *nameobj;
        const char *name;
        uint32_t mode = 0;
        uint64_t id = 0;
        int lease = 0, r;

        if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!|$pO&:register", kwlist, &nameobj, &pyregion_type, &region,
                                         &lease, pymodule_mode_converter, &mode) ||
            !pyclient_name_converter(nameobj, &name) || pyregion_check_open(region) < 0 || pyclient_enter(self) < 0)
                return NULL;
        region->exports++; /* close() and resize() wait for this call: it uses the region without the GIL */
        Py_BEGIN_ALLOW_THREADS
        r = iomem_register(self->client, name, region->region, lease ? IOMEM_REGISTER_LEASE : 0, mode, &id);
        Py_END_ALLOW_THREADS
        region->exports--;
        if (pyclient_leave(self, r, nameobj) < 0)
                return NULL;
        return PyLong_FromUnsignedLongLong(id);
}

/* ---- events, publishing ---------------------------------------------------------------------------- */

PyDoc_STRVAR(pyclient_watch_doc,
             "watch(prefix=None) -> int\n\n"
             "Get events for the regions whose name starts with prefix (None or \"\" = all) that this uid may\n"
             "read; every change made after watch() returns is reported. Return the watch id (Event.watch_id).\n"
             "Take the events with next_event() or events(). OSError(EDQUOT) past the daemon's watches per uid.");

static PyObject *pyclient_watch(PyObject *obj, PyObject *args, PyObject *kwargs)
{
        static char *kwlist[] = { "prefix", NULL };
        PyIomemClient *self = (PyIomemClient *)obj;
        PyObject *prefixobj = Py_None;
        const char *prefix = NULL;
        uint32_t id = 0;
        int r;

        if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:watch", kwlist, &prefixobj))
                return NULL;
        if (prefixobj != Py_None && !pyclient_name_converter(prefixobj, &prefix))
                return NULL;
        if (pyclient_enter(self) < 0)
                return NULL;
        Py_BEGIN_ALLOW_THREADS
        r = iomem_watch(self->client, prefix, &id);
        Py_END_ALLOW_THREADS
        if (pyclient_leave(self, r, prefixobj != Py_None ? prefixobj : NULL) < 0)
                return NULL;
        return PyLong_FromUnsignedLong(id);
}

PyDoc_STRVAR(pyclient_unwatch_doc, "unwatch(watch_id)\n\nStop a watch: no event of it comes after this returns.");

static PyObject *pyclient_unwatch(PyObject *obj, PyObject *args)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        uint32_t id;
        int r;

        if (!PyArg_ParseTuple(args, "O&:unwatch", pymodule_u32_converter, &id) || pyclient_enter(self) < 0)
                return NULL;
        Py_BEGIN_ALLOW_THREADS
        r = iomem_unwatch(self->client, id);
        Py_END_ALLOW_THREADS
        /* libiomem's words for ENOENT are about regions ("no region with this name") */
        if (r == -ENOENT) {
                pymodule_set_error(r, "no watch with this id", NULL);
                pyclient_unlock(self);
                return NULL;
        }
        if (pyclient_leave(self, r, NULL) < 0)
                return NULL;
        Py_RETURN_NONE;
}

static const char *const pyclient_event_kinds[] = {
        [IOMEM_EVENT_OVERFLOW - IOMEM_EVENT_OVERFLOW] = "overflow",
        [IOMEM_EVENT_CREATED - IOMEM_EVENT_OVERFLOW] = "created",
        [IOMEM_EVENT_DELETED - IOMEM_EVENT_OVERFLOW] = "deleted",
        [IOMEM_EVENT_RESIZED - IOMEM_EVENT_OVERFLOW] = "resized",
        [IOMEM_EVENT_SEALED - IOMEM_EVENT_OVERFLOW] = "sealed",
        [IOMEM_EVENT_CHMOD - IOMEM_EVENT_OVERFLOW] = "chmod",
        [IOMEM_EVENT_CHOWN - IOMEM_EVENT_OVERFLOW] = "chown",
        [IOMEM_EVENT_PUBLISHED - IOMEM_EVENT_OVERFLOW] = "published",
};

PyObject *pyclient_event_new(const struct iomem_event *ev)
{
        uint32_t k = ev->kind - IOMEM_EVENT_OVERFLOW;
        PyObject *res = PyStructSequence_New(&pyclient_event_type);

        if (!res)
                return NULL;
        if (ev->kind >= IOMEM_EVENT_OVERFLOW && k < sizeof(pyclient_event_kinds) / sizeof(pyclient_event_kinds[0]))
                PyStructSequence_SET_ITEM(res, 0, PyUnicode_FromString(pyclient_event_kinds[k]));
        else
                PyStructSequence_SET_ITEM(res, 0, PyLong_FromUnsignedLong(ev->kind));
        PyStructSequence_SET_ITEM(res, 1, PyUnicode_DecodeUTF8(ev->name, strlen(ev->name), "surrogateescape"));
        PyStructSequence_SET_ITEM(res, 2, PyLong_FromUnsignedLongLong(ev->id));
        PyStructSequence_SET_ITEM(res, 3, PyLong_FromUnsignedLongLong(ev->generation));
        PyStructSequence_SET_ITEM(res, 4, PyLong_FromUnsignedLongLong(ev->size));
        PyStructSequence_SET_ITEM(res, 5, PyLong_FromUnsignedLong(ev->seals));
        PyStructSequence_SET_ITEM(res, 6, PyLong_FromUnsignedLong(ev->mode));
        PyStructSequence_SET_ITEM(res, 7, PyLong_FromUnsignedLong(ev->uid));
        PyStructSequence_SET_ITEM(res, 8, PyLong_FromUnsignedLong(ev->gid));
        PyStructSequence_SET_ITEM(res, 9, PyLong_FromUnsignedLong(ev->watch_id));
        PyStructSequence_SET_ITEM(res, 10, PyLong_FromUnsignedLongLong(ev->replaced_id));
        PyStructSequence_SET_ITEM(res, 11, PyLong_FromUnsignedLongLong(ev->dropped));
        return pyclient_struct_done(res);
}

PyDoc_STRVAR(pyclient_next_event_doc,
             "next_event(timeout=None) -> Event or None\n\n"
             "The next event of this connection's watches, waiting at most timeout seconds (None = without\n"
             "limit, 0 = not at all); None if none came in time. The wait releases the GIL and lets other\n"
             "threads' calls on this Client and signals through every 0.2 s. After an event of kind\n"
             "\"overflow\" changes were missed: re-read the state with list() and stat().");

static PyObject *pyclient_next_event(PyObject *obj, PyObject *args, PyObject *kwargs)
{
        static char *kwlist[] = { "timeout", NULL };
        PyIomemClient *self = (PyIomemClient *)obj;
        PyObject *timeout = Py_None;
        struct iomem_event ev;
        int wait_ms, slice, r;
        int64_t deadline = 0;

        if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:next_event", kwlist, &timeout) ||
            !pyclient_timeout_converter(timeout, &wait_ms))
                return NULL;
        if (wait_ms > 0)
                deadline = pyclient_now_ms() + wait_ms;
        for (;;) {
                slice = wait_ms < 0 || wait_ms > PYCLIENT_WAIT_SLICE_MS ? PYCLIENT_WAIT_SLICE_MS : wait_ms;
                if (pyclient_enter(self) < 0)
                        return NULL;
                Py_BEGIN_ALLOW_THREADS
                r = iomem_next_event(self->client, &ev, slice);
                Py_END_ALLOW_THREADS
                if (r != -EAGAIN)
                        break;
                pyclient_unlock(self);
                if (slice == wait_ms)
                        Py_RETURN_NONE;
                if (PyErr_CheckSignals() < 0)
                        return NULL;
                if (wait_ms > 0) {
                        int64_t left = deadline - pyclient_now_ms();

                        wait_ms = left > 0 ? (int)left : 0;
                }
        }
        if (pyclient_leave(self, r, NULL) < 0)
                return NULL;
        return pyclient_event_new(&ev);
}

PyDoc_STRVAR(pyclient_events_doc,
             "events(timeout=None) -> iterator of Event\n\n"
             "next_event(timeout) again and again: the iterator ends when no event came within timeout seconds\n"
             "(with None, never: break out of the loop).");

static PyObject *pyclient_events(PyObject *obj, PyObject *args, PyObject *kwargs)
{
        static char *kwlist[] = { "timeout", NULL };
        PyObject *timeout = Py_None, *functools, *method, *partial, *iter;
        int ms;

        if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:events", kwlist, &timeout) ||
            !pyclient_timeout_converter(timeout, &ms))
                return NULL;
        functools = PyImport_ImportModule("functools");
        if (!functools)
                return NULL;
        method = PyObject_GetAttrString(obj, "next_event");
        partial = method ? PyObject_CallMethod(functools, "partial", "OO", method, timeout) : NULL;
        Py_DECREF(functools);
        Py_XDECREF(method);
        if (!partial)
                return NULL;
        iter = PyCallIter_New(partial, Py_None); /* ends when next_event() returns None */
        Py_DECREF(partial);
        return iter;
}

PyDoc_STRVAR(pyclient_publish_doc,
             "publish(name, region, *, expect_generation=None, mode=None, lease=False) -> int\n\n"
             "Make region (a local memfd Region, sealed \"shrink,grow\", and \"write\" for an immutable snapshot)\n"
             "the version of name that open() returns from now on, in one step; holders of the old version keep\n"
             "it. Return the new generation. expect_generation: replace only that version (OSError(ESTALE)\n"
             "if another is current, FileNotFoundError if none is). mode: None keeps the replaced version's.\n"
             "lease: the new version goes away when this connection closes. PermissionError replacing a\n"
             "version another uid owns.");

static PyObject *pyclient_publish(PyObject *obj, PyObject *args, PyObject *kwargs)
{
        static char *kwlist[] = { "name", "region", "expect_generation", "mode", "lease", NULL };
        PyIomemClient *self = (PyIomemClient *)obj;
        struct iomem_publish_opts opts = { 0 };
        PyIomemRegion *region;
        PyObject *nameobj, *expectobj = Py_None, *modeobj = Py_None;
        const char *name;
        uint64_t generation = 0;
        int lease = 0, r;

        if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!|$OOp:publish", kwlist, &nameobj, &pyregion_type, &region,
                                         &expectobj, &modeobj, &lease) ||
            !pyclient_name_converter(nameobj, &name))
                return NULL;
        if (expectobj != Py_None) {
                if (!pymodule_u64_converter(expectobj, &opts.expect_generation))
                        return NULL;
                if (!opts.expect_generation) {
                        PyErr_SetString(PyExc_ValueError, "expect_generation must be None or a generation (>= 1)");
                        return NULL;
                }
        }
        if (modeobj != Py_None && !pymodule_mode_converter(modeobj, &opts.mode))
                return NULL;
        opts.flags = lease ? IOMEM_PUBLISH_LEASE : 0;
        if (pyregion_check_open(region) < 0 || pyclient_enter(self) < 0)
                return NULL;
        region->exports++; /* close() and resize() wait for this call: it uses the region without the GIL */
        Py_BEGIN_ALLOW_THREADS
        r = iomem_publish(self->client, name, region->region, &opts, &generation);
        Py_END_ALLOW_THREADS
        region->exports--;
        if (pyclient_leave(self, r, nameobj) < 0)
                return NULL;
        return PyLong_FromUnsignedLongLong(generation);
}

/* METRICS samples gathered without the GIL (names and help texts are libiomem's static strings) */
struct pyclient_metrics {
        struct iomem_metric *v;
        size_t n, cap;
};

static int pyclient_metrics_add(const struct iomem_metric *m, void *userdata)
{
        struct pyclient_metrics *l = userdata;

        if (!m->name)
                return 0; /* a newer daemon's metric this library does not know */
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 64;
                struct iomem_metric *v = realloc(l->v, cap * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        l->v[l->n++] = *m;
        return 0;
}

PyDoc_STRVAR(pyclient_metrics_doc,
             "metrics() -> list of Metric\n\n"
             "The daemon's counters and gauges (docs/metrics.md) in one request: daemon-wide samples first, then\n"
             "per uid (root sees every uid, others their own). Metric.name is the OpenMetrics family name\n"
             "(counters' samples are name + \"_total\"), type \"gauge\" or \"counter\", label the label's name\n"
             "(\"request\", \"code\", \"uid\") or None, label_value its text (\"OPEN\", \"EDQUOT\", \"1000\").");

static PyObject *pyclient_metrics(PyObject *obj, PyObject *unused)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        struct pyclient_metrics l = { 0 };
        PyObject *res = NULL;
        int r;

        if (pyclient_enter(self) < 0)
                return NULL;
        Py_BEGIN_ALLOW_THREADS
        r = iomem_metrics(self->client, NULL, pyclient_metrics_add, &l);
        Py_END_ALLOW_THREADS
        if (pyclient_leave(self, r, NULL) < 0)
                goto out;
        res = PyList_New((Py_ssize_t)l.n);
        for (size_t i = 0; res && i < l.n; i++) {
                const struct iomem_metric *m = &l.v[i];
                PyObject *e = PyStructSequence_New(&pyclient_metric_type);

                if (!e) {
                        Py_CLEAR(res);
                        break;
                }
                PyStructSequence_SET_ITEM(e, 0, PyUnicode_FromString(m->name));
                PyStructSequence_SET_ITEM(e, 1, PyUnicode_FromString(m->type == IOMEM_METRIC_COUNTER ? "counter"
                                                                                                   : "gauge"));
                PyStructSequence_SET_ITEM(e, 2, m->label_name ? PyUnicode_FromString(m->label_name)
                                                              : Py_NewRef(Py_None));
                PyStructSequence_SET_ITEM(e, 3, m->label_name ? PyUnicode_FromString(m->label_value)
                                                              : Py_NewRef(Py_None));
                PyStructSequence_SET_ITEM(e, 4, PyLong_FromUnsignedLongLong(m->value));
                PyStructSequence_SET_ITEM(e, 5, PyUnicode_FromString(m->help ? m->help : ""));
                PyStructSequence_SET_ITEM(e, 6, PyLong_FromUnsignedLong(m->id));
                PyList_SET_ITEM(res, (Py_ssize_t)i, e);
                if (PyErr_Occurred())
                        Py_CLEAR(res);
        }
out:
        free(l.v);
        return res;
}

/* ---- the daemon ------------------------------------------------------------------------------------ */

PyDoc_STRVAR(pyclient_ping_doc, "ping()\n\nOne round trip to the daemon.");

static PyObject *pyclient_ping(PyObject *obj, PyObject *unused)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        int r;

        if (pyclient_enter(self) < 0)
                return NULL;
        Py_BEGIN_ALLOW_THREADS
        r = iomem_ping(self->client);
        Py_END_ALLOW_THREADS
        if (pyclient_leave(self, r, NULL) < 0)
                return NULL;
        Py_RETURN_NONE;
}

PyDoc_STRVAR(pyclient_status_doc, "status() -> Status\n\nThe daemon's region, byte and connection counts.");

static PyObject *pyclient_status(PyObject *obj, PyObject *unused)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        struct iomem_status st;
        PyObject *res;
        int r;

        if (pyclient_enter(self) < 0)
                return NULL;
        Py_BEGIN_ALLOW_THREADS
        r = iomem_status(self->client, &st);
        Py_END_ALLOW_THREADS
        if (pyclient_leave(self, r, NULL) < 0)
                return NULL;
        res = PyStructSequence_New(&pyclient_status_type);
        if (!res)
                return NULL;
        PyStructSequence_SET_ITEM(res, 0, PyLong_FromUnsignedLongLong(st.regions));
        PyStructSequence_SET_ITEM(res, 1, PyLong_FromUnsignedLongLong(st.bytes));
        PyStructSequence_SET_ITEM(res, 2, PyLong_FromUnsignedLongLong(st.connections));
        PyStructSequence_SET_ITEM(res, 3, PyLong_FromUnsignedLongLong(st.uptime_sec));
        PyStructSequence_SET_ITEM(res, 4, pymodule_backend_str(st.backend));
        PyStructSequence_SET_ITEM(res, 5, PyUnicode_DecodeUTF8(st.server_version, strlen(st.server_version), "replace"));
        return pyclient_struct_done(res);
}

PyDoc_STRVAR(pyclient_quota_doc, "quota() -> Quota\n\nThis uid's usage and limits as the daemon counts them (0 = unlimited).");

static PyObject *pyclient_quota(PyObject *obj, PyObject *unused)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        struct iomem_quota q;
        uint64_t v[11];
        PyObject *res;
        int r;

        if (pyclient_enter(self) < 0)
                return NULL;
        Py_BEGIN_ALLOW_THREADS
        r = iomem_quota(self->client, &q);
        Py_END_ALLOW_THREADS
        if (pyclient_leave(self, r, NULL) < 0)
                return NULL;
        res = PyStructSequence_New(&pyclient_quota_type);
        if (!res)
                return NULL;
        v[0] = q.uid, v[1] = q.gid, v[2] = q.bytes, v[3] = q.max_bytes, v[4] = q.regions, v[5] = q.max_regions;
        v[6] = q.connections, v[7] = q.max_connections, v[8] = q.fds, v[9] = q.max_fds, v[10] = q.max_region_size;
        for (int i = 0; i < 11; i++)
                PyStructSequence_SET_ITEM(res, i, PyLong_FromUnsignedLongLong(v[i]));
        return pyclient_struct_done(res);
}

static PyMethodDef pyclient_methods[] = {
        { "close", pyclient_close, METH_NOARGS, pyclient_close_doc },
        { "fileno", pyclient_fileno, METH_NOARGS, pyclient_fileno_doc },
        { "create", (PyCFunction)(void (*)(void))pyclient_create, METH_VARARGS | METH_KEYWORDS, pyclient_create_doc },
        { "open", (PyCFunction)(void (*)(void))pyclient_open, METH_VARARGS | METH_KEYWORDS, pyclient_open_doc },
        { "stat", pyclient_stat, METH_VARARGS, pyclient_stat_doc },
        { "list", (PyCFunction)(void (*)(void))pyclient_list, METH_VARARGS | METH_KEYWORDS, pyclient_list_doc },
        { "delete", pyclient_delete, METH_VARARGS, pyclient_delete_doc },
        { "resize", pyclient_resize, METH_VARARGS, pyclient_resize_doc },
        { "seal", pyclient_seal, METH_VARARGS, pyclient_seal_doc },
        { "chmod", pyclient_chmod, METH_VARARGS, pyclient_chmod_doc },
        { "chown", (PyCFunction)(void (*)(void))pyclient_chown, METH_VARARGS | METH_KEYWORDS, pyclient_chown_doc },
        { "register", (PyCFunction)(void (*)(void))pyclient_register, METH_VARARGS | METH_KEYWORDS,
          pyclient_register_doc },
        { "ping", pyclient_ping, METH_NOARGS, pyclient_ping_doc },
        { "status", pyclient_status, METH_NOARGS, pyclient_status_doc },
        { "quota", pyclient_quota, METH_NOARGS, pyclient_quota_doc },
        { "metrics", pyclient_metrics, METH_NOARGS, pyclient_metrics_doc },
        { "watch", (PyCFunction)(void (*)(void))pyclient_watch, METH_VARARGS | METH_KEYWORDS, pyclient_watch_doc },
        { "unwatch", pyclient_unwatch, METH_VARARGS, pyclient_unwatch_doc },
        { "next_event", (PyCFunction)(void (*)(void))pyclient_next_event, METH_VARARGS | METH_KEYWORDS,
          pyclient_next_event_doc },
        { "events", (PyCFunction)(void (*)(void))pyclient_events, METH_VARARGS | METH_KEYWORDS, pyclient_events_doc },
        { "publish", (PyCFunction)(void (*)(void))pyclient_publish, METH_VARARGS | METH_KEYWORDS,
          pyclient_publish_doc },
        { "__enter__", pyclient_enter_ctx, METH_NOARGS, NULL },
        { "__exit__", pyclient_exit_ctx, METH_VARARGS, NULL },
        { NULL, NULL, 0, NULL },
};

static PyGetSetDef pyclient_getset[] = {
        { "closed", pyclient_get_closed, NULL, "True after close()", NULL },
        { "socket", pyclient_get_socket, NULL, "the socket path given, or None for the default", NULL },
        { "timeout", pyclient_get_timeout, pyclient_set_timeout,
          "seconds to wait for each reply (None = forever); a timeout breaks the connection", NULL },
        { NULL, NULL, NULL, NULL, NULL },
};

PyDoc_STRVAR(pyclient_doc,
             "Client(socket=None, timeout=None)\n\n"
             "A connection to iomemd. socket=None follows libiomem's rule: $IOMEM_SOCKET; else\n"
             "$XDG_RUNTIME_DIR/iomemd.sock if a per-user daemon listens there; else /run/iomemd/iomemd.sock.\n"
             "timeout: seconds per reply. Requests release the GIL; calls from several threads on one Client\n"
             "take turns. If the daemon restarts, the next call connects again and repeats what changes\n"
             "nothing; a change whose reply was lost fails with ConnectionResetError (outcome unknown).\n"
             "After a timeout or a broken reply every call fails with OSError(ENOTCONN): connect again.\n"
             "A forked child cannot use its parent's Client (RuntimeError): connect again there.");

PyTypeObject pyclient_type = {
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "iomem.Client",
        .tp_basicsize = sizeof(PyIomemClient),
        .tp_dealloc = pyclient_dealloc,
        .tp_finalize = pyclient_finalize,
        .tp_traverse = pyclient_traverse,
        .tp_clear = pyclient_clear,
        .tp_repr = pyclient_repr,
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
        .tp_doc = pyclient_doc,
        .tp_methods = pyclient_methods,
        .tp_getset = pyclient_getset,
        .tp_new = pyclient_tp_new,
};

/* ---- result types ---------------------------------------------------------------------------------- */

static PyStructSequence_Field pyclient_stat_fields[] = {
        { "id", "the daemon's id" }, { "size", "bytes" }, { "ctime_ns", "creation, CLOCK_REALTIME ns" },
        { "open_count", "times opened" }, { "seals", "SEAL_* bits" }, { "flags", "REGION_* bits" },
        { "uid", "owner" }, { "gid", "group" }, { "mode", "permission bits" }, { "backend", "memfd, shm or file" },
        { "generation", "the version's generation (None from a daemon without EVENTS); not in the tuple" },
        { NULL, NULL },
};
static PyStructSequence_Desc pyclient_stat_desc = { "iomem.StatResult", "Client.stat()", pyclient_stat_fields, 10 };

static PyStructSequence_Field pyclient_event_fields[] = {
        { "kind", "\"created\", \"deleted\", \"resized\", \"sealed\", \"chmod\", \"chown\", \"published\", \"overflow\"" },
        { "name", "the region name (\"\" for overflow)" },
        { "id", "the region id (published: the new version's)" },
        { "generation", "the region's generation" },
        { "size", "bytes after the change" },
        { "seals", "SEAL_* bits after the change" },
        { "mode", "permission bits after the change" },
        { "uid", "owner after the change" },
        { "gid", "group after the change" },
        { "watch_id", "the watch that matched (0 for overflow)" },
        { "replaced_id", "published: the id of the version replaced" },
        { "dropped", "overflow: events lost" },
        { NULL, NULL },
};
static PyStructSequence_Desc pyclient_event_desc = { "iomem.Event", "Client.next_event()", pyclient_event_fields, 12 };

static PyStructSequence_Field pyclient_metric_fields[] = {
        { "name", NULL }, { "type", NULL }, { "label", NULL }, { "label_value", NULL },
        { "value", NULL }, { "help", NULL }, { "id", NULL }, { NULL, NULL },
};
static PyStructSequence_Desc pyclient_metric_desc = { "iomem.Metric", "Client.metrics()", pyclient_metric_fields, 7 };

static PyStructSequence_Field pyclient_entry_fields[] = {
        { "name", NULL }, { "id", NULL }, { "size", NULL }, { "seals", NULL },
        { "mode", NULL }, { "uid", NULL }, { "gid", NULL }, { NULL, NULL },
};
static PyStructSequence_Desc pyclient_entry_desc = { "iomem.ListEntry", "Client.list()", pyclient_entry_fields, 7 };

static PyStructSequence_Field pyclient_status_fields[] = {
        { "regions", NULL }, { "bytes", NULL },   { "connections", NULL },    { "uptime_sec", NULL },
        { "backend", NULL }, { "server_version", NULL }, { NULL, NULL },
};
static PyStructSequence_Desc pyclient_status_desc = { "iomem.Status", "Client.status()", pyclient_status_fields, 6 };

static PyStructSequence_Field pyclient_quota_fields[] = {
        { "uid", NULL },         { "gid", NULL },          { "bytes", NULL },          { "max_bytes", NULL },
        { "regions", NULL },     { "max_regions", NULL },  { "connections", NULL },    { "max_connections", NULL },
        { "fds", NULL },         { "max_fds", NULL },      { "max_region_size", NULL }, { NULL, NULL },
};
static PyStructSequence_Desc pyclient_quota_desc = { "iomem.Quota", "Client.quota()", pyclient_quota_fields, 11 };

int pyclient_ready(PyObject *module)
{
        struct {
                PyTypeObject *type;
                PyStructSequence_Desc *desc;
                const char *name;
        } results[] = {
                { &pyclient_stat_type, &pyclient_stat_desc, "StatResult" },
                { &pyclient_entry_type, &pyclient_entry_desc, "ListEntry" },
                { &pyclient_status_type, &pyclient_status_desc, "Status" },
                { &pyclient_quota_type, &pyclient_quota_desc, "Quota" },
                { &pyclient_event_type, &pyclient_event_desc, "Event" },
                { &pyclient_metric_type, &pyclient_metric_desc, "Metric" },
        };

        if (PyType_Ready(&pyclient_type) < 0)
                return -1;
        /* the asynchronous methods live in pyasync.c */
        for (PyMethodDef *m = pyasync_methods; m->ml_name; m++) {
                PyObject *descr = PyDescr_NewMethod(&pyclient_type, m);

                if (!descr || PyDict_SetItemString(pyclient_type.tp_dict, m->ml_name, descr) < 0) {
                        Py_XDECREF(descr);
                        return -1;
                }
                Py_DECREF(descr);
        }
        PyType_Modified(&pyclient_type);
        Py_INCREF(&pyclient_type);
        if (PyModule_AddObject(module, "Client", (PyObject *)&pyclient_type) < 0) {
                Py_DECREF(&pyclient_type);
                return -1;
        }
        for (size_t i = 0; i < sizeof(results) / sizeof(results[0]); i++) {
                if (PyStructSequence_InitType2(results[i].type, results[i].desc) < 0)
                        return -1;
                Py_INCREF(results[i].type);
                if (PyModule_AddObject(module, results[i].name, (PyObject *)results[i].type) < 0) {
                        Py_DECREF(results[i].type);
                        return -1;
                }
        }
        return 0;
}
