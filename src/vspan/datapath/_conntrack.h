/*
 * The established-connection step of the port firewall in the native replay
 * (issue 9 item 2; docs/datapath.md, "Stateful checks split").
 *
 * Python's connection tracking (vspan.policy.conntrack) stays authoritative: it
 * creates, changes and ends connections.  Each port's ConnTrack publishes, in a
 * dict it owns (ConnTrack.native), a record per IPv4 TCP/UDP connection whose next
 * frame could only refresh it:
 *
 *   native key (proto, local addr, local port, remote addr, remote port; 13 bytes)
 *     -> (conn, idle timeout of its state, mask, originator's TcpPeer, responder's TcpPeer)
 *
 * mask: CT_IN / CT_OUT (which directions, seen from the port, may be stepped here: a
 * UDP connection in SINGLE only its originator's), CT_ORIGIN_IN (the connection was
 * opened by an "in" frame), CT_TCP (the segment must pass the window step).  A
 * stateful extended ACL's sessions (ExtAclSessions.native) are published the same way,
 * key -> (session, idle timeout); a live one is refreshed (expires = now + idle).  A
 * compiled program's FIREWALL or EXT_ACL check holds the port's *cell* (a one-item list: the
 * dict, or None while the policy layer has not resolved the port's firewall since the
 * last reload: PolicyChecks.native_cell).
 *
 * For a frame whose program has checks, ct_prepare looks every check's connection up
 * and decides, without changing anything, whether all of them would be ESTABLISHED
 * and passed by Python with no state change: the record present, the direction in its
 * mask, not expired (expires > now), for TCP an ACK / PSH+ACK segment in window
 * (_tcpstep.h).  Only then does ct_commit do what ConnTrack._touch (and, for TCP,
 * TcpTrack._advance) would: the Python Conn and TcpPeer objects themselves are
 * updated (packets, bytes, last, expires = now + timeout, the window edges), so every
 * Python reader (listing, expiry, trace's peek, export, the state file) sees exactly
 * what the Python path would have left.  Anything else - no record, expired, another
 * direction, SYN/FIN/RST/URG, out of window, the same connection twice in one frame -
 * hands the frame back unchanged, and Python decides it (and republishes or withdraws
 * the record).
 */
#ifndef VSPAN_CONNTRACK_H
#define VSPAN_CONNTRACK_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_tcpstep.h"

#define CT_IN 1
#define CT_OUT 2
#define CT_ORIGIN_IN 4
#define CT_TCP 8
#define CT_KEY_LEN 13
#define CT_MAX_CHECKS 8 /* checks per program (more: not compiled natively) */
#define CT_KIND_EXT_ACL 3  /* decision.CheckKind */
#define CT_KIND_FIREWALL 4

/* a compiled FIREWALL or EXT_ACL check */
typedef struct {
    long port;
    int dir_in;     /* the check's direction is "in" (delivered to the port) */
    int kind;       /* CT_KIND_FIREWALL or CT_KIND_EXT_ACL */
    PyObject *cell; /* strong: [the port's index dict | None] */
} FwCheck;

/* one check's step, between ct_prepare and ct_commit (strong references) */
typedef struct {
    PyObject *conn, *timeout; /* EXT_ACL: the session and its idle timeout */
    int session;              /* an EXT_ACL session: only its expiry is refreshed */
    PyObject *peer[2]; /* TCP: the sender's and the receiver's TcpPeer */
    int idx;           /* 0: sent by the originator, 1: by the responder */
    int tcp;
    struct ts_peer before[2], after[2];
} CtStep;

/* interned attribute names (set once by ct_init) */
static PyObject *ct_s_packets, *ct_s_bytes, *ct_s_last, *ct_s_expires, *ct_s_end, *ct_s_maxend,
    *ct_s_maxwin, *ct_s_scale, *ct_s_maxack, *ct_one;
/* ... read and written at their slots' offsets while the classes are as looked up (_slots.h) */
static SlotCache ct_c_packets, ct_c_bytes, ct_c_last, ct_c_expires, ct_c_end, ct_c_maxend,
    ct_c_maxwin, ct_c_scale, ct_c_maxack;
#define CT_GET(o, name) slot_get(&ct_c_##name, (o), ct_s_##name)
#define CT_SET(o, name, v) slot_set(&ct_c_##name, (o), ct_s_##name, (v))

static int ct_init(void)
{
    ct_s_packets = PyUnicode_InternFromString("packets");
    ct_s_bytes = PyUnicode_InternFromString("bytes");
    ct_s_last = PyUnicode_InternFromString("last");
    ct_s_expires = PyUnicode_InternFromString("expires");
    ct_s_end = PyUnicode_InternFromString("end");
    ct_s_maxend = PyUnicode_InternFromString("maxend");
    ct_s_maxwin = PyUnicode_InternFromString("maxwin");
    ct_s_scale = PyUnicode_InternFromString("scale");
    ct_s_maxack = PyUnicode_InternFromString("maxack");
    ct_one = PyLong_FromLong(1);
    return ct_s_packets && ct_s_bytes && ct_s_last && ct_s_expires && ct_s_end && ct_s_maxend &&
                   ct_s_maxwin && ct_s_scale && ct_s_maxack && ct_one
               ? 0
               : -1;
}

/*
 * The connection's native key for a frame (conntrack.native_key of conn_key): the IPv4
 * header at l3 (no options: the native flow key guarantees it), TCP or UDP ports at l3 +
 * 20.  0 when the frame is not IPv4 TCP/UDP with whole ports.
 */
static int ct_key(const unsigned char *d, Py_ssize_t n, Py_ssize_t l3, int dir_in,
                  unsigned char *out)
{
    if (l3 < 0 || n < l3 + 24 || d[l3] != 0x45)
        return 0;
    unsigned proto = d[l3 + 9];
    if (proto != 6 && proto != 17)
        return 0;
    const unsigned char *src = d + l3 + 12, *dst = d + l3 + 16, *sp = d + l3 + 20,
                        *dp = d + l3 + 22;
    out[0] = (unsigned char)proto;
    memcpy(out + 1, dir_in ? dst : src, 4);
    memcpy(out + 5, dir_in ? dp : sp, 2);
    memcpy(out + 7, dir_in ? src : dst, 4);
    memcpy(out + 11, dir_in ? sp : dp, 2);
    return CT_KEY_LEN;
}

/* the frame's IPv4 header offset (Ethernet, or one 802.1Q tag: what native_key takes) */
static Py_ssize_t ct_l3(const unsigned char *d, Py_ssize_t n)
{
    if (n >= 18 && d[12] == 0x81 && d[13] == 0x00)
        return 18;
    return 14;
}

static void ct_release(CtStep *st, int n)
{
    for (int i = 0; i < n; i++) {
        Py_CLEAR(st[i].conn);
        Py_CLEAR(st[i].timeout);
        Py_CLEAR(st[i].peer[0]);
        Py_CLEAR(st[i].peer[1]);
    }
}

/* obj.expires <= now: 1 expired, 0 live, -1 error */
static int ct_expired(PyObject *obj, PyObject *now)
{
    PyObject *exp = CT_GET(obj, expires);
    if (!exp)
        return -1;
    int expired;
    if (PyFloat_CheckExact(exp) && PyFloat_CheckExact(now))
        expired = PyFloat_AS_DOUBLE(exp) <= PyFloat_AS_DOUBLE(now);
    else
        expired = PyObject_RichCompareBool(exp, now, Py_LE);
    Py_DECREF(exp);
    return expired;
}

/* a TcpPeer's (end, maxend, maxwin, scale, maxack); 0 when out of what the C step takes */
static int ct_read_peer(PyObject *p, struct ts_peer *out)
{
    PyObject *v[5] = {CT_GET(p, end), CT_GET(p, maxend), CT_GET(p, maxwin), CT_GET(p, scale),
                      CT_GET(p, maxack)};
    int ok = v[0] && v[1] && v[2] && v[3] && v[4] && PyLong_CheckExact(v[0]) &&
             PyLong_CheckExact(v[1]) && PyLong_CheckExact(v[2]) && PyLong_CheckExact(v[3]) &&
             PyLong_CheckExact(v[4]);
    if (ok) {
        unsigned long long end = PyLong_AsUnsignedLongLong(v[0]);
        unsigned long long maxend = PyLong_AsUnsignedLongLong(v[1]);
        unsigned long long maxwin = PyLong_AsUnsignedLongLong(v[2]);
        long scale = PyLong_AsLong(v[3]);
        long long maxack = PyLong_AsLongLong(v[4]);
        if (PyErr_Occurred()) {
            PyErr_Clear(); /* negative or huge: Python's business */
            ok = 0;
        } else if (end > 0xFFFFFFFFull || maxend > 0xFFFFFFFFull || scale < 0 || scale > 14 ||
                   maxack < -1 || maxack > 0xFFFFFFFFll) {
            ok = 0;
        } else {
            out->end = (uint32_t)end;
            out->maxend = (uint32_t)maxend;
            out->maxwin = maxwin;
            out->scale = (unsigned)scale;
            out->maxack = maxack;
        }
    }
    for (int i = 0; i < 5; i++)
        Py_XDECREF(v[i]);
    if (!ok && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
    }
    return ok;
}

/* st[i] holds the record's object and timeout; 0 when an earlier check of the frame holds
 * the same object */
static int ct_hold(CtStep *st, int i, PyObject *rec)
{
    CtStep *s = &st[i];
    s->conn = PyTuple_GET_ITEM(rec, 0);
    Py_INCREF(s->conn);
    s->timeout = PyTuple_GET_ITEM(rec, 1);
    Py_INCREF(s->timeout);
    for (int j = 0; j < i; j++)
        if (st[j].conn == s->conn)
            return 0;
    return 1;
}

/*
 * Would every check of the program pass this frame as an established
 * connection Python would only refresh?  1 yes (st[0..nchecks) filled: release with
 * ct_release after ct_commit), 0 hand back (nothing held), -1 error.  Changes nothing
 * but the entry's cached key objects (ckey: one per direction, made from the first
 * frame; every frame of a native flow entry has the same addresses and ports).
 */
static int ct_prepare(const FwCheck *checks, int nchecks, PyObject **ckey,
                      const unsigned char *d, Py_ssize_t n, PyObject *now, CtStep *st)
{
    Py_ssize_t l3 = ct_l3(d, n);
    int done = 0, rc = 0;
    memset(st, 0, sizeof(CtStep) * (size_t)nchecks);
    for (int i = 0; i < nchecks; i++) {
        const FwCheck *c = &checks[i];
        PyObject *index = PyList_GET_ITEM(c->cell, 0);
        if (!PyDict_CheckExact(index))
            goto back; /* not resolved since the last reload */
        PyObject **kp = &ckey[c->dir_in ? 1 : 0];
        if (*kp == NULL) {
            unsigned char k[CT_KEY_LEN];
            if (!ct_key(d, n, l3, c->dir_in, k))
                goto back;
            *kp = PyBytes_FromStringAndSize((const char *)k, CT_KEY_LEN);
            if (!*kp)
                goto fail;
        }
        PyObject *rec = PyDict_GetItemWithError(index, *kp);
        if (!rec) {
            if (PyErr_Occurred())
                goto fail;
            goto back;
        }
        CtStep *s = &st[i];
        int ext = c->kind == CT_KIND_EXT_ACL;
        if (!PyTuple_CheckExact(rec) || PyTuple_GET_SIZE(rec) != (ext ? 2 : 5))
            goto back;
        long mask = 0;
        if (!ext) {
            mask = PyLong_AsLong(PyTuple_GET_ITEM(rec, 2));
            if (mask == -1 && PyErr_Occurred())
                goto fail;
            if (!(mask & (c->dir_in ? CT_IN : CT_OUT)))
                goto back;
        }
        done = i + 1;
        if (!ct_hold(st, i, rec))
            goto back; /* one connection twice in a frame: Python steps it in order */
        int expired = ct_expired(s->conn, now);
        if (expired < 0)
            goto fail;
        if (expired)
            goto back; /* Python removes it (counted expired) and judges the frame afresh */
        if (ext) {
            /* ExtAclSessions.process with a live session: admitted, expires = now + idle */
            s->session = 1;
            continue;
        }
        s->idx = (c->dir_in == ((mask & CT_ORIGIN_IN) != 0)) ? 0 : 1;
        if (mask & CT_TCP) {
            s->tcp = 1;
            s->peer[0] = PyTuple_GET_ITEM(rec, s->idx == 0 ? 3 : 4); /* the sender */
            s->peer[1] = PyTuple_GET_ITEM(rec, s->idx == 0 ? 4 : 3); /* the receiver */
            Py_INCREF(s->peer[0]);
            Py_INCREF(s->peer[1]);
            for (int k = 0; k < 2; k++) {
                int r = ct_read_peer(s->peer[k], &s->before[k]);
                if (r < 0)
                    goto fail;
                if (!r)
                    goto back;
                s->after[k] = s->before[k];
            }
            struct ts_seg seg;
            if (!ts_parse(d, n, l3, l3 + 20, 1, &seg))
                goto back;
            if (!ts_est_step(&s->after[0], &s->after[1], &seg))
                goto back;
        }
    }
    return 1;
fail:
    rc = -1;
back:
    ct_release(st, done);
    return rc;
}

static int ct_set_u64(PyObject *o, SlotCache *c, PyObject *name, unsigned long long v)
{
    PyObject *x = PyLong_FromUnsignedLongLong(v);
    if (!x)
        return -1;
    int r = slot_set(c, o, name, x);
    Py_DECREF(x);
    return r;
}

/* c.packets[i] += 1 / c.bytes[i] += nbytes */
static int ct_add(PyObject *conn, SlotCache *c, PyObject *name, int idx, PyObject *delta)
{
    PyObject *lst = slot_get(c, conn, name);
    if (!lst)
        return -1;
    int r = -1;
    if (PyList_CheckExact(lst) && PyList_GET_SIZE(lst) > idx) {
        PyObject *sum = PyNumber_Add(PyList_GET_ITEM(lst, idx), delta);
        if (sum)
            r = PyList_SetItem(lst, idx, sum); /* steals sum */
    } else {
        PyErr_SetString(PyExc_TypeError, "connection counters are not a list of two");
    }
    Py_DECREF(lst);
    return r;
}

/*
 * ConnTrack._touch (and TcpTrack._advance) for every prepared check: the Python objects
 * updated in place.  Releases st.
 */
static int ct_commit(CtStep *st, int nchecks, PyObject *now, Py_ssize_t nbytes)
{
    int rc = 0;
    PyObject *nb = PyLong_FromSsize_t(nbytes);
    if (!nb)
        rc = -1;
    for (int i = 0; rc == 0 && i < nchecks; i++) {
        CtStep *s = &st[i];
        if (s->tcp) {
            for (int k = 0; rc == 0 && k < 2; k++) {
                const struct ts_peer *b = &s->before[k], *a = &s->after[k];
                if (a->end != b->end)
                    rc = ct_set_u64(s->peer[k], &ct_c_end, ct_s_end, a->end);
                if (rc == 0 && a->maxend != b->maxend)
                    rc = ct_set_u64(s->peer[k], &ct_c_maxend, ct_s_maxend, a->maxend);
                if (rc == 0 && a->maxwin != b->maxwin)
                    rc = ct_set_u64(s->peer[k], &ct_c_maxwin, ct_s_maxwin, a->maxwin);
                if (rc == 0 && a->maxack != b->maxack) /* moved: a sequence number, >= 0 */
                    rc = ct_set_u64(s->peer[k], &ct_c_maxack, ct_s_maxack, (uint64_t)a->maxack);
            }
        }
        if (rc == 0 && !s->session)
            rc = ct_add(s->conn, &ct_c_packets, ct_s_packets, s->idx, ct_one);
        if (rc == 0 && !s->session)
            rc = ct_add(s->conn, &ct_c_bytes, ct_s_bytes, s->idx, nb);
        if (rc == 0 && !s->session)
            rc = CT_SET(s->conn, last, now);
        if (rc == 0) {
            PyObject *exp = PyFloat_CheckExact(now) && PyFloat_CheckExact(s->timeout)
                                ? PyFloat_FromDouble(PyFloat_AS_DOUBLE(now) +
                                                     PyFloat_AS_DOUBLE(s->timeout))
                                : PyNumber_Add(now, s->timeout);
            rc = exp ? CT_SET(s->conn, expires, exp) : -1;
            Py_XDECREF(exp);
        }
    }
    Py_XDECREF(nb);
    ct_release(st, nchecks);
    return rc;
}

/* module-level conn_key(data, dir_in) -> bytes | None: ct_key of a frame (tests) */
static PyObject *mod_conn_key(PyObject *mod, PyObject *args)
{
    const char *d;
    Py_ssize_t n;
    int dir_in;
    if (!PyArg_ParseTuple(args, "y#p", &d, &n, &dir_in))
        return NULL;
    unsigned char k[CT_KEY_LEN];
    const unsigned char *u = (const unsigned char *)d;
    if (!ct_key(u, n, ct_l3(u, n), dir_in, k))
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)k, CT_KEY_LEN);
}

#endif
