/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* pyiomem: what the three files of the CPython module iomem share (region and client types, errors). */
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "pythread.h"

#include "iomem.h"

/*
 * iomem.Region: one struct iomem_region (one fd). Buffers (memoryview,
 * numpy.frombuffer) point into a mapping of the whole region that the
 * region makes on the first export and keeps until close or resize; while
 * any export is alive the region refuses close, resize and seal-against-
 * writes with BufferError, so no buffer ever points to unmapped memory.
 */
typedef struct PyIomemRegion_ {
        PyObject_HEAD
        struct iomem_region *region; /* owned; NULL once closed */
        void *addr;                  /* the mapping buffers point into, or NULL */
        size_t mapped;               /* its length */
        int map_writable;            /* mapped with PROT_WRITE */
        Py_ssize_t exports;          /* buffers alive + calls running without the GIL */
        PyObject *name;              /* str, or None for local and anonymous regions */
        uint64_t generation;         /* the version's generation when the client knew it, else 0 */
        PyObject *weakrefs;
        /* the list of every Region with a mapping (pyregion_drop_idle_maps()), under the GIL */
        struct PyIomemRegion_ *mapped_prev, *mapped_next;
} PyIomemRegion;

struct pyasync_pending;

/*
 * iomem.Client: one struct iomem_client. Blocking calls take turns on
 * @lock (held without the GIL while libiomem waits): the daemon's detail of
 * an error is then the caller's own. The asynchronous calls (pyasync.c)
 * never wait for @lock: they count themselves in @busy, and close() while
 * one runs (from a callback or another thread) only marks @closing; the
 * last of them disconnects.
 */
typedef struct {
        PyObject_HEAD
        struct iomem_client *client; /* owned; NULL once closed */
        PyThread_type_lock lock;     /* blocking calls take turns; close() waits for them */
        pid_t pid;                   /* the process that connected: a forked child must connect again */
        int timeout_ms;              /* -1 = none */
        int events;                  /* connected with IOMEM_CONNECT_EVENTS (watch, publish, generations) */
        PyObject *socket;            /* str, the path given, or None for the default */
        /* iomem_client_fd() and iomem_client_reconnects() as the last blocking call left them (they change
         * only in blocking calls): what an event loop watches, read without waiting for @lock */
        int fd;
        unsigned reconnects;
        /* the asynchronous client (pyasync.c) */
        struct pyasync_pending *pending; /* submitted, callback not called yet: failed by close() */
        PyObject *event_cb;              /* callable or NULL */
        PyObject *wakeup_cb;             /* callable or NULL: called after blocking calls (any thread) */
        unsigned busy;                   /* asynchronous calls running without the GIL */
        int closing;                     /* close() came while @busy: the last one disconnects */
        /* the thread whose blocking call runs signal handlers (pyclient_interrupted()), holding @lock; 0 = none */
        unsigned long handler_thread;
        PyObject *cb_error_type, *cb_error_value, *cb_error_tb; /* the first exception a callback raised */
} PyIomemClient;

extern PyTypeObject pyregion_type;
extern PyTypeObject pyclient_type;

/* pyregion_new_consume() - a Region object owning @region (taken over, freed on error). Return: new ref or NULL. */
PyObject *pyregion_new_consume(struct iomem_region *region, PyObject *name);
/*
 * pyregion_new_version_consume() - pyregion_new_consume() for a region
 * opened with its version's @generation (0: not asked for; Region.generation
 * None). Return: new ref or NULL.
 */
PyObject *pyregion_new_version_consume(struct iomem_region *region, PyObject *name, uint64_t generation);

/*
 * pyregion_drop_idle_maps() - unmap every Region's mapping that no buffer
 * (nor a call without the GIL) uses: kept for the next buffer, it would
 * make a write seal of its memfd fail with EBUSY. The next buffer maps again.
 * Called only after a write seal failed with EBUSY (other regions' mappings
 * are worth keeping). Return: how many were unmapped.
 */
int pyregion_drop_idle_maps(void);

/*
 * pyregion_named_export_past() - whether a Region of this process opened or created by @name (a str), of daemon
 * id @id (0: any), has live buffers mapping more than @size bytes: Client.resize(name, size) of that version would
 * make those buffers' next access past the new end SIGBUS. Every Region is looked at (no cap on how many).
 */
bool pyregion_named_export_past(PyObject *name, uint64_t size, uint64_t id);

/*
 * pyregion_idless_export_past() - whether a Region of this process without a daemon id (Region.from_fd(), one
 * received through multiprocessing, a local one) has live buffers mapping more than @size bytes: only then may
 * Client.resize() have to find out which file a name is (pyregion_file_export_past()).
 */
bool pyregion_idless_export_past(uint64_t size);

/*
 * pyregion_file_export_past() - whether a Region of this process over the file @fd is (st_dev and st_ino) has
 * live buffers mapping more than @size bytes. False if @fd cannot be fstat()ed.
 */
bool pyregion_file_export_past(int fd, uint64_t size);

/* pyregion_check_open() - raise ValueError for a closed Region. Return: 0, or -1 with the exception set. */
int pyregion_check_open(PyIomemRegion *self);
/* pyregion_ready() - PyType_Ready of Region. Return: 0 or -1. */
int pyregion_ready(PyObject *module);
/* pyclient_ready() - PyType_Ready of Client and its result types. Return: 0 or -1. */
int pyclient_ready(PyObject *module);

/*
 * pymodule_set_error() - raise the OSError subclass for negative errno @r
 * (FileNotFoundError, PermissionError, FileExistsError, ...) with @message
 * (the daemon's detail) or, if empty, iomem_strerror(@r); @filename (may be
 * NULL) becomes the exception's filename, e.g. the region name.
 * Return: NULL.
 */
PyObject *pymodule_set_error(int r, const char *message, PyObject *filename);

/* pymodule_error_new() - the exception pymodule_set_error() raises, as an object. Return: new ref or NULL. */
PyObject *pymodule_error_new(int r, const char *message, PyObject *filename);

/* pymodule_seals_converter() - "O&" converter: an int or a string such as "shrink,grow". Return: 1 or 0. */
int pymodule_seals_converter(PyObject *obj, void *sealsp);
/* pymodule_backend_converter() - "O&" converter: None, "auto", "memfd", "shm" or "file". Return: 1 or 0. */
int pymodule_backend_converter(PyObject *obj, void *backendp);
/* pymodule_u64_converter() - "O&" converter: a non-negative int below 2**64. Return: 1 or 0. */
int pymodule_u64_converter(PyObject *obj, void *u64p);
/*
 * pymodule_u32_converter() - "O&" converter: an int from 0 to 2**32 - 1 (a mode, a watch id), else
 * ValueError; unlike PyArg's "I", never cut to its low 32 bits. Return: 1 or 0.
 */
int pymodule_u32_converter(PyObject *obj, void *u32p);
/*
 * pymodule_mode_converter() - "O&" converter: a region's mode, an int from 0 to 0o777 (what the daemon accepts;
 * 0 is "the daemon's default" where the call says so), else ValueError naming it in octal. Return: 1 or 0.
 */
int pymodule_mode_converter(PyObject *obj, void *modep);
/* pymodule_backend_str() - the backend's name as str. Return: new ref or NULL. */
PyObject *pymodule_backend_str(enum iomem_backend backend);

/* pyclient_name_converter() - "O&" converter for a region name: a str without NUL. Return: 1 or 0. */
int pyclient_name_converter(PyObject *obj, void *namep);
/* pyclient_timeout_converter() - "O&" converter: seconds (>= 0) or None (-1) to milliseconds. Return: 1 or 0. */
int pyclient_timeout_converter(PyObject *obj, void *msp);
/*
 * pyclient_wait_converter() - open()'s wait and timeout arguments to the
 * milliseconds libiomem waits for the name: 0 without @wait (then @timeout
 * must be None: ValueError), at least 1 with it (-1 = without limit).
 * Return: 0; -1 with an exception.
 */
int pyclient_wait_converter(int wait, PyObject *timeout, int *wait_ms);
/*
 * pyclient_check_usable() - raise unless @self is connected, not closing
 * and used by the process that connected it (ValueError, RuntimeError after
 * a fork). Return: 0; -1 with the exception.
 */
int pyclient_check_usable(const PyIomemClient *self);
/* pyclient_stat_new() - an iomem.StatResult (@generation 0 = None). Return: new ref or NULL. */
struct iomem_stat;
PyObject *pyclient_stat_new(const struct iomem_stat *st, uint64_t generation);
/* pyclient_event_new() - an iomem.Event. Return: new ref or NULL. */
struct iomem_event;
PyObject *pyclient_event_new(const struct iomem_event *ev);

/*
 * pyasync: the asynchronous half of iomem.Client (methods listed in
 * pyasync_methods, merged into Client's table).
 */
extern PyMethodDef pyasync_methods[];
/*
 * pyasync_shutdown() - disconnect @self and end every pending request: with
 * @notify, call its callback with OSError(ENOTCONN) (the GIL held, after
 * the client is gone); without, just drop it. Clears the callbacks.
 */
void pyasync_shutdown(PyIomemClient *self, int notify);
/* pyasync_traverse() - tp_traverse of what pyasync keeps in @self. Return: as visit. */
int pyasync_traverse(PyIomemClient *self, visitproc visit, void *arg);
/* pyasync_wakeup() - call the wakeup callback, if any (after a blocking call; the GIL held, the lock not). */
void pyasync_wakeup(PyIomemClient *self);
