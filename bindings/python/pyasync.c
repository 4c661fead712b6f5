/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* pyasync: the asynchronous half of iomem.Client (fd, events, timeout, process, requests with callbacks). */

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "pyiomem.h"

/*
 * A request submitted to libiomem whose callback it has not called yet. The
 * client owns it (a list, so that close() can end it: libiomem drops the
 * callbacks of a client it frees); libiomem's callback frees it.
 */
struct pyasync_pending {
        struct pyasync_pending *prev, *next;
        PyIomemClient *owner; /* borrowed: the record does not outlive the client's connection */
        PyObject *callback;   /* callback(error, result) */
        PyObject *name;       /* the region name (Region.name, the error's filename), or NULL */
};

/* ---- the calls' frame: not closed under them ------------------------------------------------------- */

/*
 * pyasync_enter() - check @self is usable and count a call in it: close()
 * meanwhile (from a callback this call runs, or from another thread while
 * the call runs without the GIL) is left to pyasync_leave().
 * Return: 0; -1 with an exception.
 */
static int pyasync_enter(PyIomemClient *self)
{
        if (pyclient_check_usable(self) < 0)
                return -1;
        self->busy++;
        return 0;
}

/* End a call counted by pyasync_enter(); the last one out after a close() disconnects. */
static void pyasync_leave(PyIomemClient *self)
{
        self->busy--;
        if (!self->busy && self->closing) {
                PyObject *type, *value, *tb;

                PyErr_Fetch(&type, &value, &tb);
                pyasync_shutdown(self, 1);
                PyErr_Restore(type, value, tb);
        }
}

static void pyasync_pending_unlink(struct pyasync_pending *p)
{
        PyIomemClient *self = p->owner;

        if (p->prev)
                p->prev->next = p->next;
        else
                self->pending = p->next;
        if (p->next)
                p->next->prev = p->prev;
        p->prev = p->next = NULL;
}

static struct pyasync_pending *pyasync_pending_free(struct pyasync_pending *p)
{
        if (!p)
                return NULL;
        Py_XDECREF(p->callback);
        Py_XDECREF(p->name);
        free(p);
        return NULL;
}

/* Return: a new record linked into @self's list, or NULL with MemoryError. */
static struct pyasync_pending *pyasync_pending_new(PyIomemClient *self, PyObject *callback, PyObject *name)
{
        struct pyasync_pending *p = calloc(1, sizeof(*p));

        if (!p) {
                PyErr_NoMemory();
                return NULL;
        }
        p->owner = self;
        p->callback = Py_NewRef(callback);
        p->name = Py_XNewRef(name);
        p->next = self->pending;
        if (p->next)
                p->next->prev = p;
        self->pending = p;
        return p;
}

/*
 * Keep the exception a callback raised (the GIL held): the first one is
 * raised by process() once it returns, later ones are reported as
 * unraisable.
 */
static void pyasync_callback_failed(PyIomemClient *self)
{
        if (self->cb_error_type) {
                PyErr_WriteUnraisable(NULL);
                return;
        }
        PyErr_Fetch(&self->cb_error_type, &self->cb_error_value, &self->cb_error_tb);
}

/* Call p->callback(error, result) and free @p (unlinked already). Steals @error and @result. */
static void pyasync_pending_call(struct pyasync_pending *p, PyObject *error, PyObject *result)
{
        PyObject *res;

        if (!error && !result) {
                /* building the result failed: that exception is the callback's error */
                PyObject *type, *tb;

                PyErr_Fetch(&type, &error, &tb);
                PyErr_NormalizeException(&type, &error, &tb);
                Py_XDECREF(type);
                Py_XDECREF(tb);
        }
        res = PyObject_CallFunctionObjArgs(p->callback, error ? error : Py_None, result ? result : Py_None, NULL);
        if (!res)
                pyasync_callback_failed(p->owner);
        Py_XDECREF(res);
        Py_XDECREF(error);
        Py_XDECREF(result);
        pyasync_pending_free(p);
}

/* The error a completion reports: the daemon's detail is libiomem's last error message (process() cleared it). */
static PyObject *pyasync_error(struct iomem_client *c, int error, PyObject *name)
{
        return pymodule_error_new(error, iomem_client_error_message(c), name);
}

/* ---- libiomem's callbacks: from iomem_client_process(), run without the GIL ------------------------- */

static void pyasync_open_done(struct iomem_client *c, int error, struct iomem_region *region, uint64_t generation,
                              void *userdata)
{
        struct pyasync_pending *p = userdata;
        PyGILState_STATE g = PyGILState_Ensure();
        PyObject *res = NULL, *err = NULL;

        pyasync_pending_unlink(p);
        if (error < 0) {
                err = pyasync_error(c, error, p->name);
        } else {
                /* a callback that drops it (a cancelled await) closes the fd with the Region */
                res = pyregion_new_version_consume(region, p->name ? p->name : Py_None, generation);
        }
        pyasync_pending_call(p, err, res);
        PyGILState_Release(g);
}

static void pyasync_stat_done(struct iomem_client *c, int error, const struct iomem_stat *st, void *userdata)
{
        struct pyasync_pending *p = userdata;
        PyGILState_STATE g = PyGILState_Ensure();

        pyasync_pending_unlink(p);
        if (error < 0)
                pyasync_pending_call(p, pyasync_error(c, error, p->name), NULL);
        else
                pyasync_pending_call(p, NULL, pyclient_stat_new(st, 0));
        PyGILState_Release(g);
}

static void pyasync_ping_done(struct iomem_client *c, int error, void *userdata)
{
        struct pyasync_pending *p = userdata;
        PyGILState_STATE g = PyGILState_Ensure();

        pyasync_pending_unlink(p);
        if (error < 0)
                pyasync_pending_call(p, pyasync_error(c, error, NULL), NULL);
        else
                pyasync_pending_call(p, NULL, Py_NewRef(Py_None));
        PyGILState_Release(g);
}

static void pyasync_event(struct iomem_client *c, const struct iomem_event *ev, void *userdata)
{
        PyIomemClient *self = userdata;
        PyGILState_STATE g = PyGILState_Ensure();
        PyObject *cb = Py_XNewRef(self->event_cb), *event, *res = NULL;

        if (cb) {
                event = pyclient_event_new(ev);
                if (event)
                        res = PyObject_CallOneArg(cb, event);
                Py_XDECREF(event);
                if (!res)
                        pyasync_callback_failed(self);
                Py_XDECREF(res);
                Py_DECREF(cb);
        }
        PyGILState_Release(g);
}

/* ---- shared with pyclient.c -------------------------------------------------------------------------- */

void pyasync_shutdown(PyIomemClient *self, int notify)
{
        struct pyasync_pending *list = self->pending;
        /* a callback's exception that a process() returning now will raise (close() from its callback) */
        PyObject *et = self->cb_error_type, *ev = self->cb_error_value, *etb = self->cb_error_tb;

        /* libiomem calls no callback of a client it frees; the records are ours to end */
        self->pending = NULL;
        /* a forked child's disconnect closes its fd only: libiomem wakes no reader of the parent's (iomem.h) */
        self->client = iomem_disconnect(self->client);
        self->fd = -1;
        self->closing = 0;
        Py_CLEAR(self->event_cb);
        Py_CLEAR(self->wakeup_cb);
        self->cb_error_type = self->cb_error_value = self->cb_error_tb = NULL;
        while (list) {
                struct pyasync_pending *p = list;

                list = p->next;
                p->prev = p->next = NULL;
                if (notify)
                        pyasync_pending_call(p, pymodule_error_new(-ENOTCONN, "the iomem.Client was closed", p->name),
                                             NULL);
                else
                        pyasync_pending_free(p);
        }
        /* an exception of the callbacks just called has nowhere to go */
        if (self->cb_error_type) {
                PyErr_Restore(self->cb_error_type, self->cb_error_value, self->cb_error_tb);
                PyErr_WriteUnraisable((PyObject *)self);
        }
        self->cb_error_type = et;
        self->cb_error_value = ev;
        self->cb_error_tb = etb;
}

int pyasync_traverse(PyIomemClient *self, visitproc visit, void *arg)
{
        Py_VISIT(self->event_cb);
        Py_VISIT(self->wakeup_cb);
        for (struct pyasync_pending *p = self->pending; p; p = p->next)
                Py_VISIT(p->callback);
        return 0;
}

void pyasync_wakeup(PyIomemClient *self)
{
        PyObject *cb = Py_XNewRef(self->wakeup_cb), *res, *type, *value, *tb;

        if (!cb)
                return;
        PyErr_Fetch(&type, &value, &tb);
        res = PyObject_CallNoArgs(cb);
        if (!res)
                PyErr_WriteUnraisable(cb);
        Py_XDECREF(res);
        Py_DECREF(cb);
        PyErr_Restore(type, value, tb);
}

/* ---- the methods ------------------------------------------------------------------------------------- */

/* Set or clear a callback slot with a callable or None. Return: 0; -1 with TypeError. */
static int pyasync_set_callable(PyObject **slot, PyObject *cb)
{
        if (cb != Py_None && !PyCallable_Check(cb)) {
                PyErr_SetString(PyExc_TypeError, "a callable or None is required");
                return -1;
        }
        Py_XSETREF(*slot, cb == Py_None ? NULL : Py_NewRef(cb));
        return 0;
}

/* Raise the first exception a callback of the last process() raised, if any. Return: -1 if one was raised. */
static int pyasync_raise_callback_error(PyIomemClient *self)
{
        if (!self->cb_error_type)
                return 0;
        PyErr_Restore(self->cb_error_type, self->cb_error_value, self->cb_error_tb);
        self->cb_error_type = self->cb_error_value = self->cb_error_tb = NULL;
        return -1;
}

/*
 * pyasync_set_error() - raise the OSError of a failed submit or process():
 * -ENOTCONN (the connection is broken) says that a blocking call connects
 * again. Return: NULL.
 */
static PyObject *pyasync_set_error(int r, PyObject *filename)
{
        return pymodule_set_error(r, r == -ENOTCONN ? "the connection is broken: a blocking call such as ping() "
                                                      "connects again"
                                                    : NULL,
                                  filename);
}

/*
 * pyasync_submitted() - finish a submit: on error libiomem will not call
 * the callback, so @p goes now and the error is raised.
 * Return: None, or NULL with the exception.
 */
static PyObject *pyasync_submitted(PyIomemClient *self, struct pyasync_pending *p, int r)
{
        if (r < 0) {
                PyObject *name = Py_XNewRef(p->name);

                pyasync_pending_unlink(p);
                pyasync_pending_free(p);
                pyasync_leave(self);
                pyasync_set_error(r, name);
                Py_XDECREF(name);
                return NULL;
        }
        pyasync_leave(self);
        Py_RETURN_NONE;
}

/* Raise TypeError unless @callback is callable. Return: 0; -1 with the exception. */
static int pyasync_check_callback(PyObject *callback)
{
        if (!PyCallable_Check(callback)) {
                PyErr_SetString(PyExc_TypeError, "callback must be callable");
                return -1;
        }
        return 0;
}

/*
 * pyasync_pending_start() - the record of a request about to be submitted
 * within a call counted by pyasync_enter(); on failure that call is ended
 * (pyasync_leave()). Return: the record, or NULL with MemoryError.
 */
static struct pyasync_pending *pyasync_pending_start(PyIomemClient *self, PyObject *callback, PyObject *name)
{
        struct pyasync_pending *p = pyasync_pending_new(self, callback, name);

        if (!p)
                pyasync_leave(self);
        return p;
}

PyDoc_STRVAR(pyasync_process_doc,
             "process() -> int\n\n"
             "Without blocking: send what is queued, read what the socket holds, complete the asynchronous\n"
             "requests whose reply came or whose time is up, and call their callbacks and the event callback\n"
             "(in this thread). Return how many callbacks ran. Raises the first exception a callback raised;\n"
             "OSError(ENOTCONN) once the connection is broken (after the callbacks of what it ended: they got\n"
             "ConnectionResetError, outcome unknown, or OSError(ENOTCONN)); a blocking call such as ping()\n"
             "connects again (watches are made again, an \"overflow\" event first).");

static PyObject *pyasync_process(PyObject *obj, PyObject *unused)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        struct iomem_client *c = self->client;
        int r;

        if (pyasync_enter(self) < 0)
                return NULL;
        /* without the GIL: the callbacks take it (PyGILState_Ensure), and libiomem's lock may be held a
         * moment by another thread's blocking call meanwhile */
        Py_BEGIN_ALLOW_THREADS
        r = iomem_client_process(c);
        Py_END_ALLOW_THREADS
        pyasync_leave(self);
        if (pyasync_raise_callback_error(self) < 0)
                return NULL;
        if (r < 0)
                return pyasync_set_error(r, NULL);
        return PyLong_FromLong(r);
}

PyDoc_STRVAR(pyasync_loop_state_doc,
             "loop_state() -> (fd, events, timeout, reconnects)\n\n"
             "What an event loop needs, without waiting for another thread's blocking call: fd, the socket as\n"
             "the last blocking call left it (-1 once closed); events, the poll bits to wait for on it (POLLIN,\n"
             "and POLLOUT while requests wait to be sent; 0 once the connection is broken); timeout, when to\n"
             "call process() even if the fd stays quiet, in seconds from now (None = no deadline, 0.0 = at\n"
             "once: callbacks are ready); reconnects, how often the client connected again (a change means a\n"
             "new fd, even with the same number: register it again).");

static PyObject *pyasync_loop_state(PyObject *obj, PyObject *unused)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        struct iomem_client *c = self->client;
        PyObject *timeout;
        int events, ms;

        if (pyasync_enter(self) < 0)
                return NULL;
        Py_BEGIN_ALLOW_THREADS
        events = iomem_client_get_events(c);
        ms = iomem_client_get_timeout(c);
        Py_END_ALLOW_THREADS
        pyasync_leave(self);
        if (events < 0)
                events = 0;
        timeout = ms < 0 ? Py_NewRef(Py_None) : PyFloat_FromDouble(ms / 1000.0);
        if (!timeout)
                return NULL;
        return Py_BuildValue("(iiNI)", self->fd, events, timeout, self->reconnects);
}

PyDoc_STRVAR(pyasync_open_async_doc,
             "open_async(name, callback, *, read_only=False, wait=False, timeout=None, after_generation=None)\n\n"
             "open() that does not block: callback(error, region) is called exactly once, by a later process()\n"
             "(never by this call), with error None and the Region, or an OSError and None. wait, timeout and\n"
             "after_generation as open(): the daemon waits, not the caller. A Region the callback drops is\n"
             "closed. close() before the reply calls it with OSError(ENOTCONN).");

static PyObject *pyasync_open_async(PyObject *obj, PyObject *args, PyObject *kwargs)
{
        static char *kwlist[] = { "name", "callback", "read_only", "wait", "timeout", "after_generation", NULL };
        PyIomemClient *self = (PyIomemClient *)obj;
        PyObject *nameobj, *callback, *timeout = Py_None, *afterobj = Py_None;
        struct pyasync_pending *p;
        const char *name;
        uint64_t after = 0;
        uint32_t flags;
        int read_only = 0, wait = 0, wait_ms = 0, r;
        struct iomem_client *c;

        if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|$ppOO:open_async", kwlist, &nameobj, &callback, &read_only,
                                         &wait, &timeout, &afterobj))
                return NULL;
        if (!pyclient_name_converter(nameobj, &name))
                return NULL;
        if (pyasync_check_callback(callback) < 0)
                return NULL;
        if (afterobj != Py_None && !pymodule_u64_converter(afterobj, &after))
                return NULL;
        if (pyclient_wait_converter(wait, timeout, &wait_ms) < 0)
                return NULL;
        if (pyasync_enter(self) < 0)
                return NULL;
        if (afterobj != Py_None && !self->events) {
                pyasync_leave(self);
                return pymodule_set_error(-EOPNOTSUPP, NULL, nameobj);
        }
        p = pyasync_pending_start(self, callback, nameobj);
        if (!p)
                return NULL;
        c = self->client;
        flags = read_only ? IOMEM_OPEN_RDONLY : 0;
        Py_BEGIN_ALLOW_THREADS
        if (afterobj != Py_None)
                r = iomem_open_version_async(c, name, flags, after, wait_ms, pyasync_open_done, p);
        else
                r = iomem_open_async(c, name, flags, wait_ms, pyasync_open_done, p);
        Py_END_ALLOW_THREADS
        return pyasync_submitted(self, p, r);
}

PyDoc_STRVAR(pyasync_stat_async_doc,
             "stat_async(name, callback)\n\n"
             "stat() that does not block: callback(error, StatResult) from a later process(), as open_async().\n"
             "The result's generation is None (the asynchronous STAT does not ask for it).");

static PyObject *pyasync_stat_async(PyObject *obj, PyObject *args)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        PyObject *nameobj, *callback;
        struct pyasync_pending *p;
        struct iomem_client *c;
        const char *name;
        int r;

        if (!PyArg_ParseTuple(args, "OO:stat_async", &nameobj, &callback) ||
            !pyclient_name_converter(nameobj, &name))
                return NULL;
        if (pyasync_check_callback(callback) < 0)
                return NULL;
        if (pyasync_enter(self) < 0)
                return NULL;
        p = pyasync_pending_start(self, callback, nameobj);
        if (!p)
                return NULL;
        c = self->client;
        Py_BEGIN_ALLOW_THREADS
        r = iomem_stat_async(c, name, pyasync_stat_done, p);
        Py_END_ALLOW_THREADS
        return pyasync_submitted(self, p, r);
}

PyDoc_STRVAR(pyasync_ping_async_doc,
             "ping_async(callback)\n\nping() that does not block: callback(error, None) from a later process().");

static PyObject *pyasync_ping_async(PyObject *obj, PyObject *callback)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        struct pyasync_pending *p;
        struct iomem_client *c;
        int r;

        if (pyasync_check_callback(callback) < 0)
                return NULL;
        if (pyasync_enter(self) < 0)
                return NULL;
        p = pyasync_pending_start(self, callback, NULL);
        if (!p)
                return NULL;
        c = self->client;
        Py_BEGIN_ALLOW_THREADS
        r = iomem_ping_async(c, pyasync_ping_done, p);
        Py_END_ALLOW_THREADS
        return pyasync_submitted(self, p, r);
}

PyDoc_STRVAR(pyasync_set_event_callback_doc,
             "set_event_callback(callback)\n\n"
             "Deliver the events of this connection's watches to callback(Event), called by process(), instead\n"
             "of keeping them for next_event(). None: keep them for next_event() again.");

static PyObject *pyasync_set_event_callback(PyObject *obj, PyObject *callback)
{
        PyIomemClient *self = (PyIomemClient *)obj;
        struct iomem_client *c = self->client;

        if (pyasync_enter(self) < 0)
                return NULL;
        if (pyasync_set_callable(&self->event_cb, callback) < 0) {
                pyasync_leave(self);
                return NULL;
        }
        Py_BEGIN_ALLOW_THREADS
        iomem_client_set_event_cb(c, callback == Py_None ? NULL : pyasync_event, self);
        Py_END_ALLOW_THREADS
        pyasync_leave(self);
        Py_RETURN_NONE;
}

PyDoc_STRVAR(pyasync_set_wakeup_callback_doc,
             "set_wakeup_callback(callback)\n\n"
             "callback() is called after every blocking call on this Client returns, in the thread that made\n"
             "it: that call may have read replies and events for process(), which do not wake a poll() of the\n"
             "fd, or connected again (a new fd). An event loop schedules process() from it (thread-safely).\n"
             "None: no callback.");

static PyObject *pyasync_set_wakeup_callback(PyObject *obj, PyObject *callback)
{
        PyIomemClient *self = (PyIomemClient *)obj;

        if (pyasync_enter(self) < 0)
                return NULL;
        if (pyasync_set_callable(&self->wakeup_cb, callback) < 0) {
                pyasync_leave(self);
                return NULL;
        }
        pyasync_leave(self);
        Py_RETURN_NONE;
}

PyMethodDef pyasync_methods[] = {
        { "process", pyasync_process, METH_NOARGS, pyasync_process_doc },
        { "loop_state", pyasync_loop_state, METH_NOARGS, pyasync_loop_state_doc },
        { "open_async", (PyCFunction)(void (*)(void))pyasync_open_async, METH_VARARGS | METH_KEYWORDS,
          pyasync_open_async_doc },
        { "stat_async", pyasync_stat_async, METH_VARARGS, pyasync_stat_async_doc },
        { "ping_async", pyasync_ping_async, METH_O, pyasync_ping_async_doc },
        { "set_event_callback", pyasync_set_event_callback, METH_O, pyasync_set_event_callback_doc },
        { "set_wakeup_callback", pyasync_set_wakeup_callback, METH_O, pyasync_set_wakeup_callback_doc },
        { NULL, NULL, 0, NULL },
};
