/*
 * _slots.h: the slots of vspan's slotted Python classes read, written and filled from C
 * without running Python bytecode (shared by datapath/_native.c and ports/_ring.c).
 *
 * Two tools, both checked against the class and falling back to the generic Python
 * protocol whenever the check does not hold:
 *
 * SlotCache  one attribute of one class (a ``__slots__`` member): a read or a write is a
 *            load or a store at the member's offset, as CPython's own LOAD_ATTR_SLOT
 *            specialisation does. The cache keeps the class's version tag
 *            (``tp_version_tag``, unique per class and renewed whenever the class or a
 *            base changes) and the offset; an object of another class, or of a class
 *            changed since, takes ``PyObject_GetAttr``/``PyObject_SetAttr`` and the cache
 *            looks the attribute up again (a member descriptor found through the MRO,
 *            generic ``__getattribute__``/``__setattr__``, an object member).
 * FrameMaker vspan.ports.base.Frame made with ``tp_alloc`` and its five slots stored,
 *            instead of calling the class (which runs ``Frame.__init__`` as bytecode).
 *            Only when the class has exactly the expected layout: a plain class
 *            (metaclass ``type``, one base ``object``, no ``__dict__``/``__weakref__``,
 *            ``object.__new__``, generic ``__setattr__``) whose five slots are the only
 *            members, and whose ``__init__`` takes (data, vnet=b"", ts_ns=0, port=0,
 *            pid=0) and names no attribute or global but those five. Anything else (a
 *            subclass, another layout, another ``__init__``, a class changed at run
 *            time: its version tag moves) calls the class as before.
 *
 * Both hold the GIL's rules: called with it held; no reference is stolen.
 */
#ifndef VSPAN_SLOTS_H
#define VSPAN_SLOTS_H

#include <Python.h>
#include <structmember.h>

#ifndef Py_T_OBJECT_EX
#define Py_T_OBJECT_EX T_OBJECT_EX
#endif
#ifndef Py_READONLY
#define Py_READONLY READONLY
#endif

/* ------------------------------------------------------------------ SlotCache */

typedef struct {
    unsigned int tag;  /* the class's tp_version_tag when looked up; 0: nothing cached */
    Py_ssize_t off;    /* the member's offset in the object; -1: the generic protocol */
    int writable;
} SlotCache;

/* the version tag of a class, assigned if it has none yet; 0 when it cannot have one */
static inline unsigned int slots_tag(PyTypeObject *tp)
{
    if (!(tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG)) {
        /* a lookup through the type's method cache assigns the tag */
        PyObject *probe = PyUnicode_InternFromString("__class__");
        if (!probe)
            return 0;
        (void)_PyType_Lookup(tp, probe);
        Py_DECREF(probe);
    }
    return (tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) ? tp->tp_version_tag : 0;
}

/* the object member ``name`` of class tp (found through its MRO), or NULL; no error set */
static inline PyMemberDef *slots_member(PyTypeObject *tp, PyObject *name)
{
    PyObject *d = _PyType_Lookup(tp, name); /* borrowed; never raises */
    if (!d || !Py_IS_TYPE(d, &PyMemberDescr_Type))
        return NULL;
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    if (m->type != Py_T_OBJECT_EX || m->offset < (Py_ssize_t)sizeof(PyObject) ||
        m->offset + (Py_ssize_t)sizeof(PyObject *) > tp->tp_basicsize)
        return NULL;
    return m;
}

/* the address of obj's slot ``name`` if the cache (refreshed here) answers for its class */
static inline PyObject **slot_addr(SlotCache *c, PyObject *obj, PyObject *name, int writing)
{
    PyTypeObject *tp = Py_TYPE(obj);
    if (!(c->tag && (tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) &&
          tp->tp_version_tag == c->tag)) {
        /* another class, or this one changed: look it up (the answer, a slot or the
         * generic protocol, is kept for the class as it is now) */
        unsigned int tag = slots_tag(tp);
        PyMemberDef *m = tag && tp->tp_getattro == PyObject_GenericGetAttr &&
                                 tp->tp_setattro == PyObject_GenericSetAttr
                             ? slots_member(tp, name)
                             : NULL;
        c->tag = tag;
        c->off = m ? m->offset : -1;
        c->writable = m && !(m->flags & Py_READONLY);
    }
    if (c->off < 0 || (writing && !c->writable))
        return NULL;
    return (PyObject **)((char *)obj + c->off);
}

/* obj.name (a new reference), through the cache when it answers */
static inline PyObject *slot_get(SlotCache *c, PyObject *obj, PyObject *name)
{
    PyObject **a = slot_addr(c, obj, name, 0);
    if (a && *a) {
        Py_INCREF(*a);
        return *a;
    }
    return PyObject_GetAttr(obj, name); /* an unset slot raises AttributeError there */
}

/* obj.name = v (v borrowed), through the cache when it answers */
static inline int slot_set(SlotCache *c, PyObject *obj, PyObject *name, PyObject *v)
{
    PyObject **a = slot_addr(c, obj, name, 1);
    if (!a)
        return PyObject_SetAttr(obj, name, v);
    PyObject *old = *a;
    Py_INCREF(v);
    *a = v;
    Py_XDECREF(old);
    return 0;
}

/* ------------------------------------------------------------------ FrameMaker */

enum { FM_DATA, FM_VNET, FM_TS, FM_PORT, FM_PID, FM_N };
static const char *const fm_names[FM_N] = {"data", "vnet", "ts_ns", "port", "pid"};

typedef struct {
    PyObject *type;       /* the frame class (strong); NULL until fm_set */
    unsigned int checked; /* its version tag when checked (0: to check) */
    int direct;           /* the check's answer: 1 fill the slots, 0 call the class */
    Py_ssize_t off[FM_N]; /* the slots' offsets, in fm_names order */
    PyObject *zero;       /* 0 (strong): the defaults of ts_ns, port, pid */
    PyObject *empty;      /* b"" (strong): the default of vnet */
} FrameMaker;

/* equal(a, b) for two objects of exact builtin types; 0 on error (cleared) */
static inline int fm_equal(PyObject *a, PyObject *b)
{
    int r = Py_IS_TYPE(a, Py_TYPE(b)) && PyObject_RichCompareBool(a, b, Py_EQ) == 1;
    PyErr_Clear();
    return r;
}

/* Frame.__init__ as expected: (self, data, vnet=b"", ts_ns=0, port=0, pid=0), naming only
 * the five slots (so it can do nothing but store them); 1 yes, 0 no (no error set) */
static inline int fm_init_ok(FrameMaker *fm, PyTypeObject *tp)
{
    PyObject *dict = tp->tp_dict;
    PyObject *init = dict ? PyDict_GetItemString(dict, "__init__") : NULL; /* borrowed */
    if (!init || !PyFunction_Check(init))
        return 0;
    PyCodeObject *co = (PyCodeObject *)PyFunction_GET_CODE(init);
    PyObject *defaults = PyFunction_GET_DEFAULTS(init);
    if (co->co_argcount != 6 || co->co_kwonlyargcount || co->co_posonlyargcount ||
        (co->co_flags & (CO_VARARGS | CO_VARKEYWORDS | CO_GENERATOR | CO_COROUTINE)) ||
        PyFunction_GET_KW_DEFAULTS(init) || !defaults || !PyTuple_Check(defaults) ||
        PyTuple_GET_SIZE(defaults) != 4 || !fm_equal(PyTuple_GET_ITEM(defaults, 0), fm->empty))
        return 0;
    for (int i = 1; i < 4; i++)
        if (!fm_equal(PyTuple_GET_ITEM(defaults, i), fm->zero))
            return 0;
    static const char *const params[6] = {"self", "data", "vnet", "ts_ns", "port", "pid"};
    PyObject *varnames = PyObject_GetAttrString((PyObject *)co, "co_varnames");
    PyObject *names = varnames ? PyObject_GetAttrString((PyObject *)co, "co_names") : NULL;
    int ok = names && PyTuple_Check(varnames) && PyTuple_Check(names) &&
             PyTuple_GET_SIZE(varnames) == 6 && PyTuple_GET_SIZE(names) == FM_N &&
             !PyFunction_GET_CLOSURE(init);
    for (int i = 0; ok && i < 6; i++) {
        PyObject *v = PyTuple_GET_ITEM(varnames, i);
        ok = PyUnicode_Check(v) && PyUnicode_CompareWithASCIIString(v, params[i]) == 0;
    }
    for (int i = 0; ok && i < FM_N; i++) { /* every name it uses is one of the slots */
        PyObject *v = PyTuple_GET_ITEM(names, i);
        int found = 0;
        for (int j = 0; PyUnicode_Check(v) && j < FM_N && !found; j++)
            found = PyUnicode_CompareWithASCIIString(v, fm_names[j]) == 0;
        ok = found;
    }
    Py_XDECREF(varnames);
    Py_XDECREF(names);
    PyErr_Clear();
    return ok;
}

/* check fm->type's layout: fm->direct when it is the expected one, at version fm->checked */
static inline void fm_check(FrameMaker *fm)
{
    fm->checked = 0;
    fm->direct = 0;
    if (!PyType_Check(fm->type))
        return;
    PyTypeObject *tp = (PyTypeObject *)fm->type;
    unsigned int tag = slots_tag(tp);
    fm->checked = tag;
    if (!tag || !Py_IS_TYPE(fm->type, &PyType_Type) || tp->tp_base != &PyBaseObject_Type ||
        !tp->tp_bases || PyTuple_GET_SIZE(tp->tp_bases) != 1 || tp->tp_itemsize ||
        tp->tp_dictoffset || tp->tp_weaklistoffset ||
        tp->tp_basicsize != (Py_ssize_t)(sizeof(PyObject) + FM_N * sizeof(PyObject *)) ||
        tp->tp_new != PyBaseObject_Type.tp_new || tp->tp_alloc != PyType_GenericAlloc ||
        tp->tp_setattro != PyObject_GenericSetAttr || !fm_init_ok(fm, tp))
        return;
    int seen = 0; /* each offset once: the five slots fill the object */
    for (int i = 0; i < FM_N; i++) {
        PyObject *name = PyUnicode_InternFromString(fm_names[i]);
        PyObject *d = name ? PyDict_GetItemWithError(tp->tp_dict, name) : NULL;
        Py_XDECREF(name);
        if (!d || !Py_IS_TYPE(d, &PyMemberDescr_Type) ||
            ((PyMemberDescrObject *)d)->d_common.d_type != tp) {
            PyErr_Clear();
            return;
        }
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        Py_ssize_t k = (m->offset - (Py_ssize_t)sizeof(PyObject)) / (Py_ssize_t)sizeof(PyObject *);
        if (m->type != Py_T_OBJECT_EX || (m->flags & Py_READONLY) ||
            m->offset != (Py_ssize_t)sizeof(PyObject) + k * (Py_ssize_t)sizeof(PyObject *) ||
            k < 0 || k >= FM_N || (seen & (1 << k)))
            return;
        seen |= 1 << k;
        fm->off[i] = m->offset;
    }
    fm->direct = 1;
}

/* take ``type`` as the frame class (checked now and whenever it changes); -1 on error */
static inline int fm_set(FrameMaker *fm, PyObject *type)
{
    if (!fm->zero && !(fm->zero = PyLong_FromLong(0)))
        return -1;
    if (!fm->empty && !(fm->empty = PyBytes_FromStringAndSize("", 0)))
        return -1;
    if (fm->type == type)
        return 0;
    Py_INCREF(type);
    Py_XSETREF(fm->type, type);
    fm_check(fm);
    return 0;
}

/* *to = *from with references of its own (a maker for one call that Python code run in the
 * call, a fallback's __init__, cannot change under it) */
static inline void fm_copy(FrameMaker *to, const FrameMaker *from)
{
    *to = *from;
    Py_XINCREF(to->type);
    Py_XINCREF(to->zero);
    Py_XINCREF(to->empty);
}

static inline void fm_clear(FrameMaker *fm)
{
    Py_CLEAR(fm->type);
    Py_CLEAR(fm->zero);
    Py_CLEAR(fm->empty);
    fm->checked = 0;
    fm->direct = 0;
}

/* whether frames are made directly now (the class unchanged since checked, else rechecked) */
static inline int fm_direct(FrameMaker *fm)
{
    if (!fm->type || !PyType_Check(fm->type))
        return 0;
    PyTypeObject *tp = (PyTypeObject *)fm->type;
    if (!(fm->checked && (tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) &&
          tp->tp_version_tag == fm->checked))
        fm_check(fm); /* never checked, or the class changed since: again */
    return fm->direct;
}

/*
 * Frame(data, vnet[, ts_ns[, port[, pid]]]): the arguments up to the first NULL are
 * given, the others take the defaults (borrowed references; a new reference returned).
 */
static inline PyObject *fm_make(FrameMaker *fm, PyObject *data, PyObject *vnet, PyObject *ts,
                         PyObject *port, PyObject *pid)
{
    if (!fm_direct(fm))
        return PyObject_CallFunctionObjArgs(fm->type, data, vnet, ts, port, pid, NULL);
    PyObject *v[FM_N] = {data, vnet ? vnet : fm->empty, NULL, NULL, NULL};
    v[FM_TS] = vnet && ts ? ts : fm->zero;
    v[FM_PORT] = vnet && ts && port ? port : fm->zero;
    v[FM_PID] = vnet && ts && port && pid ? pid : fm->zero;
    PyTypeObject *tp = (PyTypeObject *)fm->type;
    PyObject *f = tp->tp_alloc(tp, 0); /* zeroed; tracked by the GC; holds the class */
    if (!f)
        return NULL;
    for (int i = 0; i < FM_N; i++) {
        Py_INCREF(v[i]);
        *(PyObject **)((char *)f + fm->off[i]) = v[i];
    }
    return f;
}

#endif
