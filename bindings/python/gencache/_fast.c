/*
 * gencache._fast: the hot calls of the Python package in C (Cache.get_bytes, Cache.get_tensor,
 * Handle.__dlpack__), where ctypes costs more than the lookup itself.
 *
 * The module does not link libgencache. The package has already loaded one with ctypes (the
 * library $GENCACHE_LIB or the search order names), and a cache pointer made by that library
 * must only ever reach that library's functions: bind() receives their addresses from ctypes
 * and every call here goes through them. The types and the error codes come from
 * include/gencache.h; bind() checks the layout of gencache_meta against the library's own.
 *
 * A Core holds a cache pointer for the calls made here. Lookups run with the GIL released;
 * a call counts itself in (users) while it holds the GIL and out once it holds it again, and
 * detach() clears the pointer and then waits until no call is inside, so the cache is never
 * closed under a lookup.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <dlpack/dlpack.h>
#include <gencache.h>
#include <string.h>
#include <time.h>

/* ---- the library's functions, from the ctypes-loaded library --------------------------------- */

/* clang-format off */
static struct {
    int (*get)(gencache *, const char *, gencache_handle **);
    int (*peek)(gencache *, const char *, gencache_handle **);
    const void *(*data)(const gencache_handle *);
    size_t (*size)(const gencache_handle *);
    const gencache_meta *(*meta)(const gencache_handle *);
    gencache_handle *(*retain)(gencache_handle *);
    void (*release)(gencache_handle *);
    void (*meta_init)(gencache_meta *);
} api;
/* clang-format on */

static PyObject *error_hook; /* error(code, what) -> the exception to raise */
static PyObject *torch_hook; /* torch_from_numpy(array, dtype code) -> tensor */
static int numpy_ready;      /* numpy's C API imported (on first use: numpy is optional) */

static const char legacy_quant_ct[] = "application/vnd.gencache.quant";
static const char torch_ct[] = "application/vnd.gencache.torch";

static int bound(void)
{
    if (api.get == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "gencache._fast: bind() was not called");
        return 0;
    }
    return 1;
}

static void *address(PyObject *dict, const char *name)
{
    PyObject *v = PyDict_GetItemString(dict, name); /* borrowed */
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "gencache._fast.bind: no address for %s", name);
        return NULL;
    }
    void *p = PyLong_AsVoidPtr(v);
    if (p == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_ValueError, "gencache._fast.bind: %s is NULL", name);
    return p;
}

/* bind(addresses, error, torch_from_numpy): addresses maps the names of the library functions
 * used here to their addresses in the library the package loaded. */
static PyObject *fast_bind(PyObject *self, PyObject *args)
{
    PyObject *dict, *err, *torch;
    if (!PyArg_ParseTuple(args, "O!OO", &PyDict_Type, &dict, &err, &torch))
        return NULL;
    /* clang-format off */
    void *p[8];
    const char *names[8] = {"gencache_get", "gencache_peek", "gencache_handle_data",
                            "gencache_handle_size", "gencache_handle_meta",
                            "gencache_handle_retain", "gencache_handle_release",
                            "gencache_meta_init"};
    /* clang-format on */
    for (int i = 0; i < 8; i++)
        if ((p[i] = address(dict, names[i])) == NULL)
            return NULL;
    void (*meta_init)(gencache_meta *) = (void (*)(gencache_meta *))p[7];
    /* The library writes struct_size first: a larger struct than this module's would be
     * written past the end, so the probe gets generous room. */
    union {
        gencache_meta m;
        unsigned char room[4096];
    } probe;
    memset(&probe, 0, sizeof(probe));
    meta_init(&probe.m);
    if (probe.m.struct_size != sizeof(gencache_meta)) {
        PyErr_Format(PyExc_ImportError,
                     "gencache._fast was built for a gencache_meta of %zu bytes, the library's "
                     "is %zu",
                     sizeof(gencache_meta), probe.m.struct_size);
        return NULL;
    }
    api.get = (int (*)(gencache *, const char *, gencache_handle **))p[0];
    api.peek = (int (*)(gencache *, const char *, gencache_handle **))p[1];
    api.data = (const void *(*)(const gencache_handle *))p[2];
    api.size = (size_t(*)(const gencache_handle *))p[3];
    api.meta = (const gencache_meta *(*)(const gencache_handle *))p[4];
    api.retain = (gencache_handle * (*)(gencache_handle *)) p[5];
    api.release = (void (*)(gencache_handle *))p[6];
    api.meta_init = meta_init;
    Py_INCREF(err);
    Py_XSETREF(error_hook, err);
    Py_INCREF(torch);
    Py_XSETREF(torch_hook, torch);
    Py_RETURN_NONE;
}

/* Raises the package's exception for a failed call on `key`. */
static PyObject *raise_error(int rc, const char *verb, PyObject *key)
{
    PyObject *what = PyUnicode_FromFormat("%s %S", verb, key);
    if (what == NULL)
        return NULL;
    PyObject *exc = PyObject_CallFunction(error_hook, "iO", rc, what);
    Py_DECREF(what);
    if (exc == NULL)
        return NULL;
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

/* The UTF-8 bytes of a key (str or bytes), borrowed from the object; NULL with an exception
 * for another type or an embedded NUL. */
static const char *key_chars(PyObject *key)
{
    const char *s;
    Py_ssize_t n;
    if (PyUnicode_Check(key)) {
        s = PyUnicode_AsUTF8AndSize(key, &n);
        if (s == NULL)
            return NULL;
    } else if (PyBytes_Check(key)) {
        s = PyBytes_AS_STRING(key);
        n = PyBytes_GET_SIZE(key);
    } else {
        PyErr_Format(PyExc_TypeError, "key must be str, not %s", Py_TYPE(key)->tp_name);
        return NULL;
    }
    if ((size_t)n != strlen(s)) {
        PyErr_SetString(PyExc_ValueError, "key contains a NUL character");
        return NULL;
    }
    return s;
}

/* ---- Ref: one reference to a gencache_handle --------------------------------------------------
 * Released when the object goes. It is the .base of the arrays made here, and exposes the bytes
 * as a read-only buffer, so numpy refuses to make those arrays writable. */

typedef struct {
    PyObject_HEAD gencache_handle *h;
} Ref;

static void ref_dealloc(Ref *self)
{
    if (self->h != NULL)
        api.release(self->h);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int ref_getbuffer(Ref *self, Py_buffer *view, int flags)
{
    if (flags & PyBUF_WRITABLE) {
        PyErr_SetString(PyExc_BufferError, "a gencache value is read-only");
        view->obj = NULL;
        return -1;
    }
    return PyBuffer_FillInfo(view, (PyObject *)self, (void *)api.data(self->h),
                             (Py_ssize_t)api.size(self->h), 1, flags);
}

static PyBufferProcs ref_as_buffer = {(getbufferproc)ref_getbuffer, NULL};

static PyObject *ref_ptr(Ref *self, void *closure)
{
    return PyLong_FromVoidPtr(self->h);
}

/* (checksum, created_ms, size): what tells one stored version of a key from another. */
static PyObject *ref_stamp(Ref *self, void *closure)
{
    const gencache_meta *m = api.meta(self->h);
    return Py_BuildValue("(KKK)", (unsigned long long)m->checksum,
                         (unsigned long long)m->created_ms, (unsigned long long)m->size);
}

static PyGetSetDef ref_getset[] = {
    {"ptr", (getter)ref_ptr, NULL, "the gencache_handle's address", NULL},
    {"stamp", (getter)ref_stamp, NULL, "(checksum, created_ms, size) of the value", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RefType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gencache._fast.Ref",
    .tp_basicsize = sizeof(Ref),
    .tp_dealloc = (destructor)ref_dealloc,
    .tp_as_buffer = &ref_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One reference to a stored value (a gencache_handle), released with the object.",
    .tp_getset = ref_getset,
};

static PyObject *ref_new(gencache_handle *h)
{
    Ref *r = PyObject_New(Ref, &RefType);
    if (r == NULL) {
        api.release(h);
        return NULL;
    }
    r->h = h;
    return (PyObject *)r;
}

/* ---- Core: the cache pointer and the calls in progress ----------------------------------------
 */

typedef struct {
    PyObject_HEAD gencache *cache; /* NULL once detached */
    Py_ssize_t users;              /* calls inside the library; changed with the GIL held */
} Core;

static int core_init(Core *self, PyObject *args, PyObject *kwds)
{
    PyObject *addr;
    if (!PyArg_ParseTuple(args, "O", &addr))
        return -1;
    if (!bound())
        return -1;
    self->cache = PyLong_AsVoidPtr(addr);
    if (self->cache == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "gencache._fast.Core: NULL cache");
        return -1;
    }
    self->users = 0;
    return 0;
}

/* Looks `key` up (get, or peek when `peek`) with the GIL released. Returns the library's code;
 * -100 with a Python exception set for a closed cache or a bad key. */
static int core_lookup(Core *self, PyObject *key, int peek, gencache_handle **out)
{
    const char *k = key_chars(key);
    if (k == NULL)
        return -100;
    gencache *c = self->cache;
    if (c == NULL) {
        PyErr_SetString(PyExc_ValueError, "the cache is closed");
        return -100;
    }
    int rc;
    self->users++;
    Py_BEGIN_ALLOW_THREADS rc = peek ? api.peek(c, k, out) : api.get(c, k, out);
    Py_END_ALLOW_THREADS self->users--;
    return rc;
}

/* get_bytes(key) -> a copy of the stored bytes, or None on a miss. */
static PyObject *core_get_bytes(Core *self, PyObject *key)
{
    gencache_handle *h = NULL;
    int rc = core_lookup(self, key, 0, &h);
    if (rc == GENCACHE_ENOTFOUND)
        Py_RETURN_NONE;
    if (rc == -100)
        return NULL;
    if (rc < 0)
        return raise_error(rc, "get", key);
    PyObject *b = PyBytes_FromStringAndSize(api.data(h), (Py_ssize_t)api.size(h));
    api.release(h);
    return b;
}

/* get(key) / peek(key) -> a Ref, or None on a miss. */
static PyObject *core_get_ref(Core *self, PyObject *key, int peek)
{
    gencache_handle *h = NULL;
    int rc = core_lookup(self, key, peek, &h);
    if (rc == GENCACHE_ENOTFOUND)
        Py_RETURN_NONE;
    if (rc == -100)
        return NULL;
    if (rc < 0)
        return raise_error(rc, peek ? "peek" : "get", key);
    return ref_new(h);
}

static PyObject *core_get(Core *self, PyObject *key)
{
    return core_get_ref(self, key, 0);
}

static PyObject *core_peek(Core *self, PyObject *key)
{
    return core_get_ref(self, key, 1);
}

static int numpy_type(gencache_dtype dt)
{
    switch (dt) {
    case GENCACHE_DTYPE_F32:
        return NPY_FLOAT32;
    case GENCACHE_DTYPE_F16:
        return NPY_FLOAT16;
    case GENCACHE_DTYPE_BF16:
        return NPY_INT16; /* numpy has no bf16: the words as they are */
    case GENCACHE_DTYPE_I8:
        return NPY_INT8;
    case GENCACHE_DTYPE_U8:
        return NPY_UINT8;
    case GENCACHE_DTYPE_I32:
        return NPY_INT32;
    case GENCACHE_DTYPE_I64:
        return NPY_INT64;
    default:
        return -1;
    }
}

/* A read-only numpy array of the tensor `ref` holds; the array keeps ref as its base. */
static PyObject *array_of(PyObject *ref, const gencache_meta *m)
{
    Ref *r = (Ref *)ref;
    npy_intp dims[GENCACHE_MAX_DIMS];
    for (uint32_t i = 0; i < m->ndim; i++)
        dims[i] = (npy_intp)m->shape[i];
    PyArray_Descr *descr = PyArray_DescrFromType(numpy_type(m->dtype));
    if (descr == NULL)
        return NULL;
    void *data = api.size(r->h) ? (void *)api.data(r->h) : NULL;
    PyObject *arr = PyArray_NewFromDescr(&PyArray_Type, descr, (int)m->ndim, dims, NULL, data,
                                         NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED, NULL);
    if (arr == NULL)
        return NULL;
    if (data == NULL) { /* an empty tensor: numpy allocated the (zero) bytes itself */
        PyArray_CLEARFLAGS((PyArrayObject *)arr, NPY_ARRAY_WRITEABLE);
        return arr;
    }
    Py_INCREF(ref);
    if (PyArray_SetBaseObject((PyArrayObject *)arr, ref) < 0) { /* steals ref */
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

/* The view of the tensor `ref` holds (a reference the caller gives up): a read-only numpy array
 * (kind 0: as stored, 1: numpy) or torch tensor (kind 2, or a torch/bf16 entry with kind 0)
 * sharing the stored bytes; or `ref` itself when the entry needs the package's general path
 * (not a tensor, an int8 payload, a legacy quantized entry, bf16 asked for as numpy). */
static PyObject *view_of(PyObject *ref, int kind)
{
    if (!numpy_ready) {
        if (_import_array() < 0) {
            Py_DECREF(ref);
            return NULL;
        }
        numpy_ready = 1;
    }
    const gencache_meta *m = api.meta(((Ref *)ref)->h);
    const char *ct = m->content_type;
    if (m->dtype == GENCACHE_DTYPE_NONE || numpy_type(m->dtype) < 0 ||
        m->ndim > GENCACHE_MAX_DIMS ||
        (ct != NULL && strncmp(ct, legacy_quant_ct, sizeof(legacy_quant_ct) - 1) == 0) ||
        (kind == 1 && m->dtype == GENCACHE_DTYPE_BF16))
        return ref;
    PyObject *arr = array_of(ref, m);
    int torch = kind == 2 || (kind == 0 && ((ct != NULL && strcmp(ct, torch_ct) == 0) ||
                                            m->dtype == GENCACHE_DTYPE_BF16));
    gencache_dtype dt = m->dtype;
    Py_DECREF(ref);
    if (arr == NULL || !torch)
        return arr;
    PyObject *t = PyObject_CallFunction(torch_hook, "Oi", arr, (int)dt);
    Py_DECREF(arr);
    return t;
}

/* get_tensor(key, kind) -> None on a miss, else what view_of() makes of the value. */
static PyObject *core_get_tensor(Core *self, PyObject *args)
{
    PyObject *key;
    int kind = 0;
    if (!PyArg_ParseTuple(args, "O|i", &key, &kind))
        return NULL;
    PyObject *ref = core_get_ref(self, key, 0);
    if (ref == NULL || ref == Py_None)
        return ref;
    return view_of(ref, kind);
}

/* detach(): no new call may start; waits for the calls inside the library, then returns the
 * cache pointer (None when already detached) for the caller to close. */
static PyObject *core_detach(Core *self, PyObject *unused)
{
    gencache *c = self->cache;
    self->cache = NULL;
    while (self->users > 0) {
        Py_BEGIN_ALLOW_THREADS struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
        Py_END_ALLOW_THREADS
    }
    if (c == NULL)
        Py_RETURN_NONE;
    return PyLong_FromVoidPtr(c);
}

static PyMethodDef core_methods[] = {
    {"get_bytes", (PyCFunction)core_get_bytes, METH_O, "A copy of the bytes, or None."},
    {"get", (PyCFunction)core_get, METH_O, "A Ref on the value, or None."},
    {"peek", (PyCFunction)core_peek, METH_O, "Like get(), counting no access."},
    {"get_tensor", (PyCFunction)core_get_tensor, METH_VARARGS,
     "A view of a stored tensor, the Ref for the general path, or None."},
    {"detach", (PyCFunction)core_detach, METH_NOARGS,
     "Stops new calls, waits for those inside, returns the cache pointer."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gencache._fast.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Core(cache_address): the hot lookups of one open cache.",
    .tp_methods = core_methods,
    .tp_init = (initproc)core_init,
    .tp_new = PyType_GenericNew,
};

/* ---- DLPack -----------------------------------------------------------------------------------
 */

/* DLPack's type of each gencache_dtype, indexed by it (bits 0: not a tensor). */
static const struct {
    uint8_t code, bits;
} dl_types[] = {
    [GENCACHE_DTYPE_F32] = {kDLFloat, 32},   [GENCACHE_DTYPE_F16] = {kDLFloat, 16},
    [GENCACHE_DTYPE_BF16] = {kDLBfloat, 16}, [GENCACHE_DTYPE_I8] = {kDLInt, 8},
    [GENCACHE_DTYPE_U8] = {kDLUInt, 8},      [GENCACHE_DTYPE_I32] = {kDLInt, 32},
    [GENCACHE_DTYPE_I64] = {kDLInt, 64},
};

static int dl_dtype(gencache_dtype dt, DLDataType *out)
{
    if ((unsigned)dt >= sizeof(dl_types) / sizeof(dl_types[0]) || dl_types[dt].bits == 0)
        return 0;
    out->code = dl_types[dt].code;
    out->bits = dl_types[dt].bits;
    out->lanes = 1;
    return 1;
}

/* What a DLManagedTensor of a handle owns: the struct, the shape, and one handle reference. */
typedef struct {
    DLManagedTensor managed;
    int64_t shape[GENCACHE_MAX_DIMS];
    gencache_handle *h;
} dl_owner;

static void dl_deleter(DLManagedTensor *self)
{
    dl_owner *o = self->manager_ctx;
    api.release(o->h);
    PyMem_RawFree(o);
}

static void dl_capsule_destructor(PyObject *capsule)
{
    /* A capsule a consumer took is renamed "used_dltensor" and is the consumer's to free. */
    if (!PyCapsule_IsValid(capsule, "dltensor"))
        return;
    DLManagedTensor *t = PyCapsule_GetPointer(capsule, "dltensor");
    if (t != NULL && t->deleter != NULL)
        t->deleter(t);
}

/* dlpack(handle_address) -> a "dltensor" capsule of the tensor the handle holds, on the CPU,
 * holding a reference of its own to the value. Raises TypeError for a value that is not a
 * tensor. */
static PyObject *fast_dlpack(PyObject *self, PyObject *addr)
{
    if (!bound())
        return NULL;
    gencache_handle *h = PyLong_AsVoidPtr(addr);
    if (h == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "the handle is closed");
        return NULL;
    }
    const gencache_meta *m = api.meta(h);
    DLDataType dtype;
    if (!dl_dtype(m->dtype, &dtype) || m->ndim > GENCACHE_MAX_DIMS) {
        PyErr_Format(PyExc_TypeError, "%s is not a tensor entry", m->key ? m->key : "the value");
        return NULL;
    }
    dl_owner *o = PyMem_RawCalloc(1, sizeof(*o));
    if (o == NULL)
        return PyErr_NoMemory();
    o->h = api.retain(h);
    for (uint32_t i = 0; i < m->ndim; i++)
        o->shape[i] = m->shape[i];
    DLTensor *t = &o->managed.dl_tensor;
    t->data = (void *)api.data(h);
    t->device.device_type = kDLCPU;
    t->device.device_id = 0;
    t->ndim = (int)m->ndim;
    t->dtype = dtype;
    t->shape = o->shape;
    t->strides = NULL; /* row-major, contiguous */
    t->byte_offset = 0;
    o->managed.manager_ctx = o;
    o->managed.deleter = dl_deleter;
    PyObject *cap = PyCapsule_New(&o->managed, "dltensor", dl_capsule_destructor);
    if (cap == NULL)
        dl_deleter(&o->managed);
    return cap;
}

/* view(ref, kind) -> the view of a Ref's tensor, or the Ref itself (see view_of()). */
static PyObject *fast_view(PyObject *self, PyObject *args)
{
    PyObject *ref;
    int kind = 0;
    if (!PyArg_ParseTuple(args, "O!|i", &RefType, &ref, &kind))
        return NULL;
    Py_INCREF(ref);
    return view_of(ref, kind);
}

static PyMethodDef fast_methods[] = {
    {"bind", fast_bind, METH_VARARGS, "bind(addresses, error, torch_from_numpy)"},
    {"dlpack", fast_dlpack, METH_O, "dlpack(handle_address) -> a dltensor capsule"},
    {"view", fast_view, METH_VARARGS, "view(ref, kind) -> the tensor's view, or the Ref"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fast_module = {
    PyModuleDef_HEAD_INIT,
    "gencache._fast",
    "The hot calls of the gencache package in C, over the library the package loaded.",
    -1,
    fast_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__fast(void)
{
    if (PyType_Ready(&RefType) < 0 || PyType_Ready(&CoreType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fast_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RefType);
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(m, "Ref", (PyObject *)&RefType) < 0 ||
        PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0 ||
        PyModule_AddIntConstant(m, "DLPACK_VERSION", DLPACK_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
