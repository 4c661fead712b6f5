/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* pyiomem: what the three files of the CPython module iomem share (region and client types, errors). */
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "iomem.h"

/*
 * iomem.Region: one struct iomem_region (one fd). Buffers (memoryview,
 * numpy.frombuffer) point into a mapping of the whole region that the
 * region makes on the first export and keeps until close or resize; while
 * any export is alive the region refuses close, resize and seal-against-
 * writes with BufferError, so no buffer ever points to unmapped memory.
 */
typedef struct {
        PyObject_HEAD
        struct iomem_region *region; /* owned; NULL once closed */
        void *addr;                  /* the mapping buffers point into, or NULL */
        size_t mapped;               /* its length */
        int map_writable;            /* mapped with PROT_WRITE */
        Py_ssize_t exports;          /* buffers alive + calls running without the GIL */
        PyObject *name;              /* str, or None for local and anonymous regions */
        uint64_t generation;         /* the version's generation when the client knew it, else 0 */
        PyObject *weakrefs;
} PyIomemRegion;

extern PyTypeObject pyregion_type;
extern PyTypeObject pyclient_type;

/* pyregion_new_consume() - a Region object owning @region (taken over, freed on error). Return: new ref or NULL. */
PyObject *pyregion_new_consume(struct iomem_region *region, PyObject *name);

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

/* pymodule_seals_converter() - "O&" converter: an int or a string such as "shrink,grow". Return: 1 or 0. */
int pymodule_seals_converter(PyObject *obj, void *sealsp);
/* pymodule_backend_converter() - "O&" converter: None, "auto", "memfd", "shm" or "file". Return: 1 or 0. */
int pymodule_backend_converter(PyObject *obj, void *backendp);
/* pymodule_u64_converter() - "O&" converter: a non-negative int below 2**64. Return: 1 or 0. */
int pymodule_u64_converter(PyObject *obj, void *u64p);
/* pymodule_backend_str() - the backend's name as str. Return: new ref or NULL. */
PyObject *pymodule_backend_str(enum iomem_backend backend);
