/*
 * The engine's wake path (included by _native.c; docs/datapath.md, "The native wake path").
 *
 * Waker.wait() is one turn of the engine's loop in one C call: the blocking wait
 * (epoll_wait with the GIL released), the drain of every woken AF_PACKET ring
 * (vspan.ports._ring.drain), the native replay of the batch (Table.run) and the
 * send of its transmit queues (vspan.ports._ring.send: sendmmsg, GIL released) —
 * then, while the last round brought frames, further rounds without blocking (the
 * echo a send produced is usually in a ring already: it leaves at once).  Python
 * runs nothing between the wake-up and the send: every piece of bookkeeping (port
 * and switch counters, the native counters taken per batch, poll counters) is
 * handed back in the report and applied by vspan.datapath.wake afterwards, before
 * the engine does anything else.
 *
 * It returns to Python for everything it cannot finish alone, in order:
 *   - an event of a file descriptor that is not a registered ring port (the
 *     engine's control pipe, a TAP, VXLAN, team port) or an error-only event;
 *   - a batch the native table cannot answer whole (a miss, a check...): its
 *     frames and the first Table.run result, continued by the Python replay;
 *   - a transmit queue for a port without a native sender, or one _ring.send did
 *     not finish (the Python send loop takes the rest);
 *   - a timeout (timers and housekeeping).
 * After any of these it makes no further round, so nothing overtakes what Python
 * still has to do.
 */

#include <sys/epoll.h>

#include "_waitns.h" /* wait_ns: epoll_pwait2, a timeout under a millisecond */

#define WAKE_EVENTS 64

typedef struct {
    PyObject_HEAD
    Table *table;
    int epfd;
    PyObject *drain, *send, *frame_type, *clock;
    PyObject *s_ring, *s_map, *s_offsets, *s_head, *s_frame_size, *s_sock, *s_index,
        *s_native_tx, *s_bypass_now, *s_gso, *s_table, *s_max_size;
    int64_t gil_waits;   /* re-acquisitions of the GIL after epoll_wait slower than 20 µs */
    int64_t gil_wait_ns; /* ... and their total time */
    int64_t gil_wait_max_ns;
} Waker;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void Waker_dealloc(Waker *self)
{
    Py_XDECREF(self->table);
    Py_XDECREF(self->drain);
    Py_XDECREF(self->send);
    Py_XDECREF(self->frame_type);
    Py_XDECREF(self->clock);
    PyObject **names[] = {&self->s_ring, &self->s_map, &self->s_offsets, &self->s_head,
                          &self->s_frame_size, &self->s_sock, &self->s_index,
                          &self->s_native_tx, &self->s_bypass_now, &self->s_gso,
                          &self->s_table, &self->s_max_size};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        Py_XDECREF(*names[i]);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Waker(table, epfd, drain, send, frame_type, clock) */
static PyObject *Waker_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    PyObject *table, *drain, *send, *frame_type, *clock;
    int epfd;
    if (!PyArg_ParseTuple(args, "O!iOOOO", &TableType, &table, &epfd, &drain, &send,
                          &frame_type, &clock))
        return NULL;
    if (!PyCallable_Check(drain) || !PyCallable_Check(send) || !PyCallable_Check(clock)) {
        PyErr_SetString(PyExc_TypeError, "drain, send and clock must be callable");
        return NULL;
    }
    Waker *self = (Waker *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    self->epfd = epfd;
    Py_INCREF(table);
    self->table = (Table *)table;
    Py_INCREF(drain);
    self->drain = drain;
    Py_INCREF(send);
    self->send = send;
    Py_INCREF(frame_type);
    self->frame_type = frame_type;
    Py_INCREF(clock);
    self->clock = clock;
    struct {
        PyObject **slot;
        const char *name;
    } names[] = {{&self->s_ring, "_ring"},           {&self->s_map, "_map"},
                 {&self->s_offsets, "_offsets"},     {&self->s_head, "_head"},
                 {&self->s_frame_size, "_frame_size"}, {&self->s_sock, "_sock"},
                 {&self->s_index, "_index"},         {&self->s_native_tx, "_native_tx"},
                 {&self->s_bypass_now, "_bypass_now"}, {&self->s_gso, "gso"},
                 {&self->s_table, "table"},          {&self->s_max_size, "max_size"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        *names[i].slot = PyUnicode_InternFromString(names[i].name);
        if (!*names[i].slot) {
            Py_DECREF(self);
            return NULL;
        }
    }
    return (PyObject *)self;
}

/*
 * The send arguments of an AF_PACKET backend (AfPacketPort: the socket, bound, C send
 * on, the qdisc bypass, its GsoSupport), read at send time so they are never stale:
 * 1 filled in, 0 not sendable here (the Python send loop takes the queue), -1 error.
 */
static int tx_spec(Waker *w, PyObject *backend, int *fd, PyObject **table, Py_ssize_t *max_size,
                   int *kernel_gso)
{
    int rc = 0;
    PyObject *sock = NULL, *index = NULL, *native = NULL, *bypass = NULL, *gso = NULL,
             *tab = NULL, *mx = NULL;
    if (!(sock = PyObject_GetAttr(backend, w->s_sock)) ||
        !(index = PyObject_GetAttr(backend, w->s_index)) ||
        !(native = PyObject_GetAttr(backend, w->s_native_tx)) ||
        !(bypass = PyObject_GetAttr(backend, w->s_bypass_now)) ||
        !(gso = PyObject_GetAttr(backend, w->s_gso)) || !(tab = PyObject_GetAttr(gso, w->s_table)) ||
        !(mx = PyObject_GetAttr(gso, w->s_max_size))) {
        rc = -1;
        goto out;
    }
    if (sock == Py_None || !PyObject_IsTrue(index) || !PyObject_IsTrue(native) ||
        !PyBytes_CheckExact(tab) || PyBytes_GET_SIZE(tab) != 256)
        goto out; /* not bound (send_batch counts the errors), or the Python loop */
    *fd = PyObject_AsFileDescriptor(sock);
    *max_size = PyLong_AsSsize_t(mx);
    if (*fd < 0 || (*max_size == -1 && PyErr_Occurred())) {
        rc = -1;
        goto out;
    }
    int b = PyObject_IsTrue(bypass);
    if (b < 0) {
        rc = -1;
        goto out;
    }
    *kernel_gso = !b;
    Py_INCREF(tab);
    *table = tab;
    rc = 1;
out:
    Py_XDECREF(sock);
    Py_XDECREF(index);
    Py_XDECREF(native);
    Py_XDECREF(bypass);
    Py_XDECREF(gso);
    Py_XDECREF(tab);
    Py_XDECREF(mx);
    return rc;
}

/*
 * FastPath.flush for a batch the native table answered whole: every transmit queue of
 * a port in `senders` goes out by _ring.send; the queue of any other port is left to
 * the Python send loop (next -1: not started; else the first frame _ring.send left).  Appends one (port, frames, next, sent, wire, nbytes,
 * segmented, segments, errors) per queue to `sends` and empties `tx`; *left is set
 * when a queue was not sent whole (no further round may overtake it).
 */
static int wake_flush(Waker *w, PyObject *tx, PyObject *senders, PyObject *sends, int *left)
{
    Py_ssize_t pos = 0;
    PyObject *port, *frames;
    while (PyDict_Next(tx, &pos, &port, &frames)) {
        if (!PyList_Check(frames) || PyList_GET_SIZE(frames) == 0)
            continue;
        PyObject *backend = PyDict_GetItemWithError(senders, port);
        PyObject *r = NULL;
        if (backend) {
            int fd = -1, kernel_gso = 0;
            PyObject *table = NULL;
            Py_ssize_t max_size = 0;
            int ok = tx_spec(w, backend, &fd, &table, &max_size, &kernel_gso);
            if (ok < 0)
                return -1;
            if (ok) {
                r = PyObject_CallFunction(w->send, "iOnOni", fd, frames, (Py_ssize_t)0, table,
                                          max_size, kernel_gso);
                Py_DECREF(table);
                if (!r)
                    return -1;
            }
        } else if (PyErr_Occurred()) {
            return -1;
        }
        PyObject *row;
        if (r) {
            Py_ssize_t next, sent, wire, segmented, segments, errors;
            long long nbytes;
            int err;
            if (!PyArg_ParseTuple(r, "nnnLnnni", &next, &sent, &wire, &nbytes, &segmented,
                                  &segments, &errors, &err)) {
                Py_DECREF(r);
                return -1;
            }
            Py_DECREF(r);
            if (next < PyList_GET_SIZE(frames))
                *left = 1;
            row = Py_BuildValue("(OOnnnLnnn)", port, frames, next, sent, wire, nbytes,
                                segmented, segments, errors);
        } else {
            *left = 1;
            row = Py_BuildValue("(OOnnnLnnn)", port, frames, (Py_ssize_t)-1, (Py_ssize_t)0,
                                (Py_ssize_t)0, 0LL, (Py_ssize_t)0, (Py_ssize_t)0,
                                (Py_ssize_t)0);
        }
        if (!row || PyList_Append(sends, row) < 0) {
            Py_XDECREF(row);
            return -1;
        }
        Py_DECREF(row);
    }
    PyDict_Clear(tx);
    return 0;
}

/*
 * One ready ring: drain, replay, send.  Returns 1 when the batch was answered and sent
 * whole (a row appended to `batches`, *handled increased), 0 when Python must continue
 * (*partial set: (in_port, frames, i, j, now, nbytes, errors, losing)), -1 on error.
 * *left: a queue was left to the Python send loop.
 */
static int wake_port(Waker *w, PyObject *spec, int fd, Py_ssize_t batch, PyObject *tx,
                     PyObject *senders, PyObject *batches, PyObject **partial, Py_ssize_t *handled,
                     int *left)
{
    long in_port;
    PyObject *backend;
    if (!PyArg_ParseTuple(spec, "lO", &in_port, &backend))
        return -1;
    PyObject *ring = PyObject_GetAttr(backend, w->s_ring);
    if (!ring)
        return -1;
    if (ring == Py_None) {
        Py_DECREF(ring);
        return 2; /* closed: the Python loop's recv_batch says so */
    }
    PyObject *map = PyObject_GetAttr(ring, w->s_map), *offsets = NULL, *head = NULL,
             *fsize = NULL, *r = NULL;
    int rc = -1;
    if (!map || !(offsets = PyObject_GetAttr(ring, w->s_offsets)) ||
        !(head = PyObject_GetAttr(ring, w->s_head)) ||
        !(fsize = PyObject_GetAttr(ring, w->s_frame_size)))
        goto out;
    r = PyObject_CallFunction(w->drain, "OOOnOO", map, offsets, head, batch, fsize,
                              w->frame_type);
    if (!r)
        goto out;
    PyObject *frames, *nhead;
    long long nbytes;
    long errors;
    int losing;
    if (!PyArg_ParseTuple(r, "O!OLli", &PyList_Type, &frames, &nhead, &nbytes, &errors, &losing) ||
        PyObject_SetAttr(ring, w->s_head, nhead) < 0)
        goto out;
    Py_ssize_t n = PyList_GET_SIZE(frames);
    if (n == 0) {
        /* woken without frames: clear a pending socket error (AfPacketPort.recv_batch) */
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    }
    PyObject *now = PyObject_CallNoArgs(w->clock);
    if (!now)
        goto out;
    Py_ssize_t i = n, j = n;
    if (n) {
        PyObject *a = Py_BuildValue("(OnlOO)", frames, (Py_ssize_t)0, in_port, tx, now);
        PyObject *res = a ? Table_run(w->table, a) : NULL;
        Py_XDECREF(a);
        if (!res || !PyArg_ParseTuple(res, "nn", &i, &j)) {
            Py_XDECREF(res);
            Py_DECREF(now);
            goto out;
        }
        Py_DECREF(res);
    }
    if (i < n) {
        *partial = Py_BuildValue("(lOnnOLli)", in_port, frames, i, j, now, nbytes, errors, losing);
        Py_DECREF(now);
        rc = *partial ? 0 : -1;
        goto out;
    }
    PyObject *taken = Table_take(w->table, NULL);
    PyObject *sends = taken ? PyList_New(0) : NULL;
    if (!sends || wake_flush(w, tx, senders, sends, left) < 0) {
        Py_XDECREF(taken);
        Py_XDECREF(sends);
        Py_DECREF(now);
        goto out;
    }
    PyObject *row = Py_BuildValue("(lNnLliNN)", in_port, now, n, nbytes, errors, losing, taken,
                                  sends);
    if (!row || PyList_Append(batches, row) < 0) {
        Py_XDECREF(row);
        goto out;
    }
    Py_DECREF(row);
    *handled += n;
    rc = 1;
out:
    Py_DECREF(ring);
    Py_XDECREF(map);
    Py_XDECREF(offsets);
    Py_XDECREF(head);
    Py_XDECREF(fsize);
    Py_XDECREF(r);
    return rc;
}

/*
 * Waker.wait(timeout_ms, ports, senders, batch, tx, rounds, count_empty, spin_ns[, timeout_ns])
 *   -> (rounds, rest, partial, (spun, spun_seconds, since, polled))
 *
 * ports: {fd: (port index, AfPacketPort)} of the rings this call may drain; senders:
 * {port index: AfPacketPort} of the ports it may send on.  Round 0 waits up to
 * timeout_ms (0: a poll); later rounds (at most `rounds` in all) poll, made only
 * while the previous one brought frames and left Python nothing to do.  A later
 * round that finds nothing is reported only with count_empty (a busy poll the
 * Python loop would have made too; in poll mode `off` it would have blocked).
 * spin_ns: with timeout_ms 0, round 0 keeps polling (the GIL released throughout) until
 * something comes or spin_ns have passed: the busy-poll window of poll modes adaptive
 * and always polled in C; the empty polls before round 0's last are (spun, seconds).
 * timeout_ns: round 0's timeout in ns instead (> 0: epoll_pwait2, see _waitns.h); with
 * spin_ns too, a timed wait that ends with nothing is followed by a window of spin_ns
 * (a predicted window, datapath/arrivals.py): polled is then 1.
 * since: seconds from round 0's wake-up (its last epoll_wait returning) to the return.
 *   rounds: [(handled, seconds, batches)], batches: [(in_port, now, frames, rx_bytes,
 *           rx_errors, losing, taken, sends)] (see wake_flush for sends)
 *   rest: [(fd, events)] for the Python loop, in order;
 *   partial: None or the batch the Python replay continues (see wake_port).
 */
static PyObject *Waker_wait(Waker *self, PyObject *args)
{
    int timeout_ms, max_rounds, count_empty;
    long long spin_ns, timeout_ns = -1;
    PyObject *ports, *senders, *tx;
    Py_ssize_t batch;
    if (!PyArg_ParseTuple(args, "iO!O!nO!ipL|L", &timeout_ms, &PyDict_Type, &ports, &PyDict_Type,
                          &senders, &batch, &PyDict_Type, &tx, &max_rounds, &count_empty,
                          &spin_ns, &timeout_ns))
        return NULL;
    PyObject *rounds = PyList_New(0), *rest = PyList_New(0), *partial = NULL;
    if (!rounds || !rest)
        goto fail;
    struct epoll_event evs[WAKE_EVENTS];
    long long spun = 0, spun_ns = 0; /* round 0's empty polls before its last (spin_ns) */
    int64_t woke = 0;                   /* when round 0's wait returned */
    int polled = 0;                     /* round 0: a timed wait, then a window polled */
    for (int round = 0; round < max_rounds; round++) {
        int64_t t0 = mono_ns(), t1 = 0;
        int n;
        int to = round == 0 ? timeout_ms : 0;
        Py_BEGIN_ALLOW_THREADS
        n = round == 0 && timeout_ns > 0 ? wait_ns(self->epfd, evs, WAKE_EVENTS, timeout_ns)
                                         : epoll_wait(self->epfd, evs, WAKE_EVENTS, to);
        t1 = mono_ns();
        if (round == 0 && n == 0 && spin_ns > 0 && (to == 0 || timeout_ns > 0)) {
            /* the busy-poll window, polled here without the GIL: each empty poll is
             * counted (with its time); the last one (frames, or the window over) is
             * round 0.  After a timed wait (a predicted window, timeout_ns) the window
             * starts when the wait ends: the wait is no poll of it */
            int64_t end = (to == 0 ? t0 : t1) + spin_ns;
            if (to != 0) {
                polled = 1;
                t0 = t1;
                n = epoll_wait(self->epfd, evs, WAKE_EVENTS, 0);
                t1 = mono_ns();
            }
            while (n == 0 && t1 < end) {
                spun++;
                spun_ns += t1 - t0;
                t0 = t1;
                n = epoll_wait(self->epfd, evs, WAKE_EVENTS, 0);
                t1 = mono_ns();
            }
        }
        Py_END_ALLOW_THREADS
        if (round == 0)
            woke = t1;
        int64_t back = mono_ns() - t1; /* waiting for the GIL after the wake-up */
        if (back > 20000) {
            self->gil_waits++;
            self->gil_wait_ns += back;
            if (back > self->gil_wait_max_ns)
                self->gil_wait_max_ns = back;
        }
        if (n < 0) {
            if (errno != EINTR) {
                PyErr_SetFromErrno(PyExc_OSError);
                goto fail;
            }
            n = 0;
        }
        if (n == 0 && round > 0 && !count_empty)
            break; /* not a poll the Python loop would have made: it blocks next */
        PyObject *batches = PyList_New(0);
        if (!batches)
            goto fail;
        Py_ssize_t handled = 0;
        int stop = 0, left = 0;
        for (int k = 0; k < n; k++) {
            int fd = evs[k].data.fd;
            uint32_t ev = evs[k].events;
            int r = 2;
            if (!stop && !partial && (ev & EPOLLIN)) {
                PyObject *key = PyLong_FromLong(fd);
                PyObject *spec = key ? PyDict_GetItemWithError(ports, key) : NULL;
                Py_XDECREF(key);
                if (!spec && PyErr_Occurred()) {
                    Py_DECREF(batches);
                    goto fail;
                }
                if (spec)
                    r = wake_port(self, spec, fd, batch, tx, senders, batches, &partial,
                                  &handled, &left);
                if (r < 0) {
                    Py_DECREF(batches);
                    goto fail;
                }
            }
            if (r == 2) { /* the Python loop's event */
                PyObject *row = Py_BuildValue("(iI)", fd, ev);
                if (!row || PyList_Append(rest, row) < 0) {
                    Py_XDECREF(row);
                    Py_DECREF(batches);
                    goto fail;
                }
                Py_DECREF(row);
                stop = 1;
            }
        }
        double secs = (double)(mono_ns() - t0) / 1e9;
        PyObject *row = Py_BuildValue("(ndN)", handled, secs, batches);
        if (!row || PyList_Append(rounds, row) < 0) {
            Py_XDECREF(row);
            goto fail;
        }
        Py_DECREF(row);
        if (stop || left || partial || handled == 0)
            break;
    }
    return Py_BuildValue("(NNN(Lddi))", rounds, rest,
                         partial ? partial : (Py_INCREF(Py_None), Py_None), spun,
                         (double)spun_ns / 1e9, woke ? (double)(mono_ns() - woke) / 1e9 : 0.0, polled);
fail:
    Py_XDECREF(rounds);
    Py_XDECREF(rest);
    Py_XDECREF(partial);
    return NULL;
}

/* Waker.gil() -> (waits, total_ns, max_ns): GIL re-acquisitions after a wake-up slower than
 * 20 µs (another thread held it) */
static PyObject *Waker_gil(Waker *self, PyObject *unused)
{
    return Py_BuildValue("(LLL)", (long long)self->gil_waits, (long long)self->gil_wait_ns,
                         (long long)self->gil_wait_max_ns);
}

static PyMethodDef Waker_methods[] = {
    {"wait", (PyCFunction)Waker_wait, METH_VARARGS,
     "wait, drain, replay and send in one call (see _wake.h)"},
    {"gil", (PyCFunction)Waker_gil, METH_NOARGS, "slow GIL re-acquisitions after a wake-up"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WakerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vspan.datapath._native.Waker",
    .tp_basicsize = sizeof(Waker),
    .tp_dealloc = (destructor)Waker_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The engine's wake path: wait, drain, replay and send in one call.",
    .tp_new = Waker_new,
    .tp_methods = Waker_methods,
};
