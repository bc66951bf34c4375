/*
 * vspan.ports._ring: the AF_PACKET port's per-frame I/O loops in C.
 *
 * drain()  takes frames out of a TPACKET_V2 rx ring (the mmap'ed ring reached
 *          through the buffer protocol), exactly as afpacket.RxRing.drain does
 *          in Python: the stripped VLAN tag put back, the virtio-net header
 *          attached (offsets moved past the tag), each slot handed back to the
 *          kernel with one aligned 32-bit store.
 * send()   writes a run of frames behind their virtio-net headers with
 *          sendmmsg(2) (one system call per up to 64 frames), as
 *          tx.send_frames does with one send per frame; it stops at the first
 *          frame that needs the Python loop (a GSO frame to cut in software, a
 *          malformed one, a send that failed) and says where.
 *
 * Every slot header is checked against the slot and the mapping before a
 * byte of the frame is read.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "_segment.h" /* software GSO / checksum (offload.finalize) */
#include "../datapath/_slots.h" /* Frame made and read without bytecode */

#define TP_STATUS_USER 1u
#define TP_STATUS_LOSING (1u << 2)
#define TP_STATUS_VLAN_VALID (1u << 4)
#define TP_STATUS_VLAN_TPID_VALID (1u << 6)
#define TPACKET2_HDRLEN 32
#define VNET_LEN 10
#define MIN_MAC (TPACKET2_HDRLEN + VNET_LEN)
#define F_NEEDS_CSUM 1
#define SEND_BATCH 64

/* the frame class drain was last given, checked (a cache: see _slots.h) */
static FrameMaker ring_fm;
/* "data", "vnet" (interned at import) and their slot caches */
static PyObject *s_data, *s_vnet;
static SlotCache c_data, c_vnet;

static inline uint32_t rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline unsigned rd16h(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* the frame's vnet header with offsets moved by +4 (vnet.shift); -1 if out of range */
static int shift4(unsigned char *v)
{
    if (!(v[0] & F_NEEDS_CSUM) && v[1] == 0)
        return 0; /* plain: unchanged */
    unsigned hdr_len = v[2] | ((unsigned)v[3] << 8), csum_start = v[6] | ((unsigned)v[7] << 8);
    if (hdr_len)
        hdr_len += 4;
    if (v[0] & F_NEEDS_CSUM)
        csum_start += 4;
    if (hdr_len > 0xFFFF || csum_start > 0xFFFF)
        return -1;
    v[2] = hdr_len & 0xFF;
    v[3] = hdr_len >> 8;
    v[6] = csum_start & 0xFF;
    v[7] = csum_start >> 8;
    return 0;
}

/*
 * drain(buffer, offsets, head, max_frames, frame_size, frame_type)
 *   -> (frames, head, nbytes, errors, losing)
 */
static PyObject *drain(PyObject *mod, PyObject *args)
{
    PyObject *bufobj, *offsets, *frame_type;
    Py_ssize_t head, max_frames, frame_size;
    if (!PyArg_ParseTuple(args, "OO!nnnO", &bufobj, &PyTuple_Type, &offsets, &head, &max_frames,
                          &frame_size, &frame_type) || fm_set(&ring_fm, frame_type) < 0)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(bufobj, &view, PyBUF_WRITABLE) < 0)
        return NULL;
    FrameMaker fm; /* this call's: another thread's drain may set ring_fm meanwhile */
    fm_copy(&fm, &ring_fm);
    unsigned char *m = view.buf;
    Py_ssize_t blen = view.len, nslots = PyTuple_GET_SIZE(offsets);
    long long nbytes = 0;
    long errors = 0;
    int losing = 0;
    PyObject *out = PyList_New(0);
    if (!out || nslots == 0 || head < 0 || head >= nslots)
        goto done;
    while (PyList_GET_SIZE(out) < max_frames) {
        Py_ssize_t off = PyLong_AsSsize_t(PyTuple_GET_ITEM(offsets, head));
        if (off < 0 || off % 4 || off + TPACKET2_HDRLEN > blen) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "ring slot outside the mapping");
            Py_CLEAR(out);
            goto done;
        }
        uint32_t *status_word = (uint32_t *)(m + off);
        uint32_t status = __atomic_load_n(status_word, __ATOMIC_ACQUIRE);
        if (!(status & TP_STATUS_USER))
            break;
        const unsigned char *h = m + off;
        uint32_t tp_len = rd32(h + 4), snaplen = rd32(h + 8);
        unsigned mac = rd16h(h + 12);
        uint32_t sec = rd32(h + 16), nsec = rd32(h + 20);
        unsigned tci = rd16h(h + 24), tpid = rd16h(h + 26);
        if (status & TP_STATUS_LOSING)
            losing = 1;
        Py_ssize_t start = off + mac, end = start + (Py_ssize_t)snaplen;
        if (snaplen != tp_len || mac < MIN_MAC || (Py_ssize_t)mac + snaplen > frame_size ||
            end > blen) {
            errors++; /* cut to fit the slot, or a corrupt header */
        } else {
            unsigned char vn[VNET_LEN];
            memcpy(vn, m + start - VNET_LEN, VNET_LEN);
            int has_vnet = (vn[0] & F_NEEDS_CSUM) || vn[1];
            PyObject *data, *vnet = NULL;
            int tagged = ((status & TP_STATUS_VLAN_VALID) || tci) && snaplen >= 12;
            if (tagged) {
                if (!(status & TP_STATUS_VLAN_TPID_VALID) || !tpid)
                    tpid = 0x8100;
                data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)snaplen + 4);
                if (data) {
                    unsigned char *d = (unsigned char *)PyBytes_AS_STRING(data);
                    memcpy(d, m + start, 12);
                    d[12] = tpid >> 8;
                    d[13] = tpid & 0xFF;
                    d[14] = tci >> 8;
                    d[15] = tci & 0xFF;
                    memcpy(d + 16, m + start + 12, snaplen - 12);
                }
                if (has_vnet && shift4(vn) < 0) {
                    Py_XDECREF(data);
                    data = NULL;
                    errors++;
                    goto release;
                }
            } else {
                data = PyBytes_FromStringAndSize((const char *)m + start, snaplen);
            }
            if (data)
                vnet = has_vnet ? PyBytes_FromStringAndSize((const char *)vn, VNET_LEN)
                                : PyBytes_FromStringAndSize("", 0);
            PyObject *ts = PyLong_FromLongLong((long long)sec * 1000000000LL + nsec);
            PyObject *f = (data && vnet && ts)
                              ? fm_make(&fm, data, vnet, ts, NULL, NULL)
                              : NULL;
            Py_XDECREF(data);
            Py_XDECREF(vnet);
            Py_XDECREF(ts);
            if (!f || PyList_Append(out, f) < 0) {
                Py_XDECREF(f);
                Py_CLEAR(out);
                goto done; /* the slot stays the user's: taken again next time */
            }
            Py_DECREF(f);
            nbytes += snaplen + (tagged ? 4 : 0);
        }
    release:
        __atomic_store_n(status_word, 0u, __ATOMIC_RELEASE); /* TP_STATUS_KERNEL, one store */
        if (++head == nslots)
            head = 0;
    }
done:
    PyBuffer_Release(&view);
    fm_clear(&fm);
    if (!out)
        return NULL;
    PyObject *r = Py_BuildValue("(NnLli)", out, head, nbytes, errors, losing);
    return r;
}

/*
 * send(fd, frames, start, gso_types, gso_max_size, kernel_gso)
 *   -> (next, sent, wire, nbytes, segmented, segments, errors, errno)
 *
 * gso_types: 256 bytes, nonzero at the gso_type values the device takes whole.
 * Frames are written from ``start`` on until one needs the Python loop; ``next``
 * is its position (len(frames) when all went). A GSO frame the device cannot take
 * is cut here (tx.cut_and_send: ``segmented`` once, ``segments`` per piece sent,
 * ``errors`` once when a piece failed) unless the kernel cuts it (``kernel_gso``).
 * ``errno`` is that of a failed sendmmsg (0 when none failed): the failing frame
 * is at ``next``.
 */

/* tx.cut_and_send for one frame: 1 all pieces went, 0 one failed, -1 cannot cut */
static int cut_and_send(int fd, const unsigned char *d, Py_ssize_t n, const unsigned char *v,
                        Py_ssize_t *segments, long long *nbytes)
{
    static const unsigned char zeros[VNET_LEN];
    PyObject *pieces = seg_finalize(d, n, v, VNET_LEN);
    if (!pieces)
        return PyErr_Occurred() ? -2 : -1;
    int ok = 1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pieces); i++) {
        PyObject *pc = PyList_GET_ITEM(pieces, i);
        struct iovec iov[2] = {{(void *)zeros, VNET_LEN},
                               {PyBytes_AS_STRING(pc), (size_t)PyBytes_GET_SIZE(pc)}};
        struct msghdr mh;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov;
        mh.msg_iovlen = 2;
        ssize_t r;
        do {
            Py_BEGIN_ALLOW_THREADS
            r = sendmsg(fd, &mh, MSG_DONTWAIT);
            Py_END_ALLOW_THREADS
        } while (r < 0 && errno == EINTR);
        if (r < 0) {
            ok = 0;
            continue;
        }
        (*segments)++;
        *nbytes += PyBytes_GET_SIZE(pc);
    }
    Py_DECREF(pieces);
    return ok;
}
static PyObject *send_run(PyObject *mod, PyObject *args)
{
    int fd, kernel_gso;
    PyObject *frames;
    Py_ssize_t start, max_size;
    const char *types;
    Py_ssize_t ntypes;
    if (!PyArg_ParseTuple(args, "iO!ny#np", &fd, &PyList_Type, &frames, &start, &types, &ntypes,
                          &max_size, &kernel_gso))
        return NULL;
    if (ntypes != 256) {
        PyErr_SetString(PyExc_ValueError, "gso_types must have 256 bytes");
        return NULL;
    }
    static const unsigned char zeros[VNET_LEN];
    Py_ssize_t n = PyList_GET_SIZE(frames), i = start < 0 ? 0 : start;
    long long nbytes = 0;
    Py_ssize_t sent = 0, wire = 0, segmented = 0, segments = 0, errors = 0;
    int err = 0, stop = 0;
    while (i < n && !stop) {
        struct mmsghdr msgs[SEND_BATCH];
        struct iovec iov[SEND_BATCH][2];
        PyObject *keep[SEND_BATCH * 2];
        Py_ssize_t lens[SEND_BATCH];
        int seg[SEND_BATCH];
        int k = 0, nkeep = 0;
        memset(msgs, 0, sizeof(msgs));
        /* collect a run of frames that go out as they are */
        while (i + k < n && k < SEND_BATCH) {
            PyObject *f = PyList_GET_ITEM(frames, i + k);
            PyObject *data = slot_get(&c_data, f, s_data);
            PyObject *vnet = data ? slot_get(&c_vnet, f, s_vnet) : NULL;
            if (!data || !vnet) {
                Py_XDECREF(data);
                for (int j = 0; j < nkeep; j++)
                    Py_DECREF(keep[j]);
                return NULL;
            }
            keep[nkeep++] = data;
            keep[nkeep++] = vnet;
            if (!PyBytes_CheckExact(data) || !PyBytes_CheckExact(vnet)) {
                stop = 1;
                break;
            }
            Py_ssize_t dn = PyBytes_GET_SIZE(data), vn = PyBytes_GET_SIZE(vnet);
            if ((vn != 0 && vn != VNET_LEN) || dn < 14) {
                stop = 1; /* malformed: the Python loop counts it */
                break;
            }
            unsigned kind = vn ? (unsigned char)PyBytes_AS_STRING(vnet)[1] : 0;
            seg[k] = 0;
            if (kind && (!types[kind] || dn >= max_size)) {
                if (!kernel_gso) {
                    if (k > 0)
                        break; /* send what came before it first */
                    int r = cut_and_send(fd, (const unsigned char *)PyBytes_AS_STRING(data), dn,
                                         (const unsigned char *)PyBytes_AS_STRING(vnet),
                                         &segments, &nbytes);
                    if (r == -2) {
                        for (int j = 0; j < nkeep; j++)
                            Py_DECREF(keep[j]);
                        return NULL;
                    }
                    if (r == -1) {
                        stop = 1; /* cannot be cut: the Python loop counts it */
                        break;
                    }
                    segmented++;
                    sent += r;
                    errors += !r;
                    i++;
                    break;
                }
                seg[k] = 1; /* the kernel's software GSO cuts it */
            }
            iov[k][0].iov_base = vn ? (void *)PyBytes_AS_STRING(vnet) : (void *)zeros;
            iov[k][0].iov_len = VNET_LEN;
            iov[k][1].iov_base = PyBytes_AS_STRING(data);
            iov[k][1].iov_len = (size_t)dn;
            msgs[k].msg_hdr.msg_iov = iov[k];
            msgs[k].msg_hdr.msg_iovlen = 2;
            lens[k] = dn;
            k++;
        }
        int done = 0;
        while (done < k) {
            int r;
            Py_BEGIN_ALLOW_THREADS
            r = sendmmsg(fd, msgs + done, (unsigned)(k - done), MSG_DONTWAIT);
            Py_END_ALLOW_THREADS
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                err = errno;
                break;
            }
            if (r == 0)
                break;
            for (int j = done; j < done + r; j++) {
                nbytes += lens[j];
                segmented += seg[j];
            }
            done += r;
        }
        for (int j = 0; j < nkeep; j++)
            Py_DECREF(keep[j]);
        sent += done;
        wire += done;
        i += done;
        if (done < k) {
            stop = 1; /* the frame at i failed: the Python loop tries it and counts */
            if (!err)
                err = EAGAIN;
        }
    }
    return Py_BuildValue("(nnnLnnni)", i, sent, wire, nbytes, segmented, segments, errors, err);
}

/*
 * make_frame(frame_type, data[, vnet[, ts_ns[, port[, pid]]]]) -> (frame, direct): one
 * frame made as drain makes them (tests: direct says whether the class's slots were
 * filled without calling it).
 */
static PyObject *make_frame(PyObject *mod, PyObject *args)
{
    PyObject *type, *a[5] = {NULL, NULL, NULL, NULL, NULL};
    if (!PyArg_ParseTuple(args, "OO|OOOO", &type, &a[0], &a[1], &a[2], &a[3], &a[4]))
        return NULL;
    FrameMaker fm = {NULL, 0, 0, {0}, NULL, NULL};
    PyObject *f = NULL;
    int direct = 0;
    if (fm_set(&fm, type) == 0) {
        direct = fm_direct(&fm);
        f = fm_make(&fm, a[0], a[1], a[2], a[3], a[4]);
    }
    fm_clear(&fm);
    return f ? Py_BuildValue("(Ni)", f, direct) : NULL;
}

static PyMethodDef methods[] = {
    {"drain", drain, METH_VARARGS, "take frames out of a TPACKET_V2 rx ring"},
    {"send", send_run, METH_VARARGS, "sendmmsg a run of frames behind their vnet headers"},
    {"make_frame", make_frame, METH_VARARGS, "one frame made as drain makes them (tests)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, "vspan.ports._ring",
    "AF_PACKET ring receive and batched send in C (see afpacket.py, tx.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__ring(void)
{
    if (!s_data && !(s_data = PyUnicode_InternFromString("data")))
        return NULL;
    if (!s_vnet && !(s_vnet = PyUnicode_InternFromString("vnet")))
        return NULL;
    return PyModule_Create(&moddef);
}
