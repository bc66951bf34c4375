/*
 * vspan.datapath._native: the native replay of cached decisions (issue 9, phase B).
 *
 * The Python slow path decides once per flow and installs a plain action list
 * (vspan.datapath.decision.Decision).  vspan.datapath.native compiles the lists
 * this module can run alone into Program objects and installs them in a Table
 * under the flow's native key.  Table.run() then takes over the per-frame loop
 * for the frames of cached flows:
 *
 *   key (the raw header bytes of vspan.datapath.flowkey.fast_key) -> lookup ->
 *   Output (VLAN keep/pop/push/set, virtio-net offsets, MTU check), Mirror
 *   (local and RSPAN: length ranges, 1-in-n sampling, truncation, RSPAN tag),
 *   Drop (counted per drop id), Refresh (the MAC entry's last_seen), flood count
 *
 * and appends the frames it delivers to the same per-port transmit queues
 * (a dict of lists of Frame objects) the Python replay fills, so transmit,
 * captures' absence and ordering stay the Python ones.
 *
 * run() stops at the first frame it cannot answer alone (no key, a miss, a
 * frame whose program needs something this module does not do: see
 * frame_ok()) and returns its position: the caller replays that frame in
 * Python (which may install or forget entries) and calls run() again for the
 * rest.  A frame is handled wholly by one side, in order.
 *
 * Counters are kept here as deltas and handed to Python by take() at the end
 * of every batch (the Python counter objects stay the ones `vspan show` and
 * the metrics read).
 *
 * Every read of frame bytes is bounds-checked: frames come from VMs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "../ports/_segment.h" /* software GSO / checksum (offload.finalize) */
#include "_slots.h"              /* Frame made, slots read and written without bytecode */
#include "_tcpstep.h"            /* established-connection TCP step (policy/tcp.py) */
#include "_erspan_tx.h"          /* ERSPAN copies as Ethernet frames (mirror/l2path.py) */
#include "_conntrack.h"          /* firewall checks of established connections */

/* opcodes: the same numbers as vspan.datapath.decision.OP_* */
#define OP_OUTPUT 0
#define OP_MIRROR 2
#define OP_REFRESH 3
#define OP_DROP 4

#define VLAN_KEEP 0
#define VLAN_POP 1
#define VLAN_PUSH 2
#define VLAN_SET 3

/* mirror session kinds, as vspan.datapath.native pushes them */
#define KIND_LOCAL 0
#define KIND_RSPAN 1
#define KIND_REMOTE 2 /* copies for the Python MirrorOut (a Python sender, a byte cap) */
#define KIND_ERSPAN 3 /* ERSPAN/GRE encapsulated and sent here (see Encap) */

/* encapsulations (mirror.encap.EncapType) */
#define ENC_GRE 0
#define ENC_ERSPAN2 1
#define ENC_ERSPAN3 2
#define GRE_FLAG_K 0x2000
#define GRE_FLAG_S 0x1000
#define GRE_PROTO_TEB 0x6558
#define GRE_PROTO_ERSPAN2 0x88BE
#define GRE_PROTO_ERSPAN3 0x22EB
#define GRA_100US 0
#define GRA_100NS 1
#define PLATF_SWITCH_PORT_SECONDS 5
#define ENCAP_MAX 32 /* the longest header: ERSPAN III with the platform subheader */
#define SEND_BATCH 64
#define PENDING_FLUSH (64 * 1024) /* ERSPAN copies' bytes sent within a run */

#define VNET_LEN 10
#define F_NEEDS_CSUM 1
#define GSO_ECN 0x80
#define GSO_UDP 3
#define GSO_UDP_L4 5

#define KEY_MAX 40
#define MAX_LENGTHS 16

/* ------------------------------------------------------------------ helpers */

static inline unsigned rd16(const unsigned char *p) { return ((unsigned)p[0] << 8) | p[1]; }
static inline unsigned le16(const unsigned char *p) { return p[0] | ((unsigned)p[1] << 8); }

static int is_tpid(unsigned t) { return t == 0x8100 || t == 0x88A8 || t == 0x9100; }

/* A virtio-net header that asks for no offload work (vnet.is_plain). */
static int vnet_plain(const unsigned char *v, Py_ssize_t n)
{
    return n == 0 || ((v[0] & F_NEEDS_CSUM) == 0 && (n < 2 || v[1] == 0));
}

/*
 * The native flow key: in_port (4 bytes LE) + data[:off] + proto + IPv4
 * addresses + ports (4 bytes TCP/UDP, ICMP type and code).  Exactly the
 * concatenation of the fields of flowkey.fast_key's tuple, so two frames have
 * equal native keys iff they have equal fast keys (same equivalence classes,
 * hence equal FlowKeys).  Returns the key length, 0 when the frame has none.
 */
static int native_key(const unsigned char *d, Py_ssize_t n, long in_port, unsigned char *out)
{
    Py_ssize_t off = 14;
    if (n < 14)
        return 0;
    unsigned et = rd16(d + 12);
    if (et == 0x8100) {
        if (n < 18)
            return 0;
        et = rd16(d + 16);
        off = 18;
    }
    if (et != 0x0800 || n < off + 28)
        return 0;
    if (d[off] != 0x45 || (d[off + 6] & 0x3F) || d[off + 7])
        return 0; /* IP options or a fragment */
    unsigned proto = d[off + 9];
    Py_ssize_t l4 = off + 20, nports;
    if (proto == 6) {
        if (n < l4 + 20)
            return 0;
        nports = 4;
    } else if (proto == 17) {
        nports = 4;
    } else if (proto == 1) {
        nports = 2;
    } else {
        return 0;
    }
    uint32_t p = (uint32_t)in_port;
    int k = 0;
    out[k++] = p & 0xFF;
    out[k++] = (p >> 8) & 0xFF;
    out[k++] = (p >> 16) & 0xFF;
    out[k++] = (p >> 24) & 0xFF;
    memcpy(out + k, d, (size_t)off);
    k += (int)off;
    out[k++] = (unsigned char)proto;
    memcpy(out + k, d + off + 12, 8);
    k += 8;
    memcpy(out + k, d + l4, (size_t)nports);
    k += (int)nports;
    return k;
}

/* mtu.l3_offset: after Ethernet and up to 8 VLAN tags */
static Py_ssize_t l3_offset(const unsigned char *d, Py_ssize_t n)
{
    Py_ssize_t off = 12;
    for (int i = 0; i < 8; i++) {
        if (off + 2 > n || !is_tpid(rd16(d + off)))
            break;
        off += 4;
    }
    return off + 2;
}

/* mtu.too_big: 0 when the frame's IP packets fit mtu, else their size */
static long too_big(const unsigned char *d, Py_ssize_t n, const unsigned char *v, Py_ssize_t vn,
                    long mtu)
{
    if (n - 14 <= mtu)
        return 0;
    Py_ssize_t l3 = l3_offset(d, n);
    long whole = (long)(n - l3), size = whole;
    if (vn == VNET_LEN && (v[1] & ~GSO_ECN) != 0) {
        unsigned gso_type = v[1], gso_size = le16(v + 4), csum_start = le16(v + 6);
        if (!(gso_size == 0 || (Py_ssize_t)csum_start <= l3 || (Py_ssize_t)csum_start + 13 > n)) {
            unsigned t = gso_type & ~GSO_ECN;
            long l4h = (t == GSO_UDP || t == GSO_UDP_L4) ? 8 : (d[csum_start + 12] >> 4) * 4;
            long seg = (long)csum_start - (long)l3 + l4h + (long)gso_size;
            size = seg < whole ? seg : whole;
        }
    }
    return size > mtu ? size : 0;
}

/*
 * vnet.shift: the header with its frame offsets moved by delta (a tag pushed
 * or popped).  NULL with no error set when a field would leave 0..65535 (the
 * caller checked that beforehand: see frame_ok).
 */
static PyObject *vnet_shift(PyObject *vnet, int delta)
{
    const unsigned char *v = (const unsigned char *)PyBytes_AS_STRING(vnet);
    Py_ssize_t vn = PyBytes_GET_SIZE(vnet);
    if (vn == 0 || vnet_plain(v, vn) || vn != VNET_LEN) {
        Py_INCREF(vnet);
        return vnet;
    }
    unsigned char o[VNET_LEN];
    memcpy(o, v, VNET_LEN);
    long hdr_len = le16(v + 2), csum_start = le16(v + 6);
    if (hdr_len)
        hdr_len += delta;
    if (v[0] & F_NEEDS_CSUM)
        csum_start += delta;
    o[2] = hdr_len & 0xFF;
    o[3] = (hdr_len >> 8) & 0xFF;
    o[6] = csum_start & 0xFF;
    o[7] = (csum_start >> 8) & 0xFF;
    return PyBytes_FromStringAndSize((const char *)o, VNET_LEN);
}

/* vnet shift by up to +-8 stays in range (what the Python struct.pack would accept) */
static int vnet_shift_safe(const unsigned char *v, Py_ssize_t vn)
{
    if (vn != VNET_LEN || vnet_plain(v, vn))
        return 1;
    unsigned hdr_len = le16(v + 2), csum_start = le16(v + 6);
    if (hdr_len && (hdr_len < 8 || hdr_len > 65535 - 8))
        return 0;
    if ((v[0] & F_NEEDS_CSUM) && (csum_start < 8 || csum_start > 65535 - 8))
        return 0;
    return 1;
}

/* vlanops.apply for a non-KEEP op; the caller guarantees n >= 16 for POP/SET */
static PyObject *vlan_apply(int op, int vid, const unsigned char *d, Py_ssize_t n)
{
    PyObject *out;
    unsigned char *o;
    switch (op) {
    case VLAN_POP:
        out = PyBytes_FromStringAndSize(NULL, n - 4);
        if (!out)
            return NULL;
        o = (unsigned char *)PyBytes_AS_STRING(out);
        memcpy(o, d, 12);
        memcpy(o + 12, d + 16, (size_t)(n - 16));
        return out;
    case VLAN_PUSH:
        out = PyBytes_FromStringAndSize(NULL, n + 4);
        if (!out)
            return NULL;
        o = (unsigned char *)PyBytes_AS_STRING(out);
        memcpy(o, d, 12);
        o[12] = 0x81;
        o[13] = 0x00;
        o[14] = (vid >> 8) & 0x0F;
        o[15] = vid & 0xFF;
        memcpy(o + 16, d + 12, (size_t)(n - 12));
        return out;
    case VLAN_SET: {
        out = PyBytes_FromStringAndSize((const char *)d, n);
        if (!out)
            return NULL;
        o = (unsigned char *)PyBytes_AS_STRING(out);
        unsigned tci = ((unsigned)(d[14] & 0xF0) << 8) | (unsigned)vid;
        o[12] = 0x81;
        o[13] = 0x00;
        o[14] = (tci >> 8) & 0xFF;
        o[15] = tci & 0xFF;
        return out;
    }
    }
    PyErr_SetString(PyExc_ValueError, "unknown VLAN operation");
    return NULL;
}

static void put_tag(unsigned char *o, unsigned tci)
{
    o[0] = 0x81;
    o[1] = 0x00;
    o[2] = (tci >> 8) & 0xFF;
    o[3] = tci & 0xFF;
}

/*
 * vlanops.rspan_copy(frame, vlan, keep, pcp=None, original_vlan=orig) for a
 * frame of at least 14 bytes and valid VLAN ids (checked at compile/push).
 */
static PyObject *rspan_copy(const unsigned char *d, Py_ssize_t n, int vlan, int keep, int orig)
{
    /* at most two tags are added: work in a buffer of n + 8 */
    unsigned char *buf = PyMem_Malloc((size_t)n + 8);
    if (!buf)
        return PyErr_NoMemory();
    Py_ssize_t m = n;
    memcpy(buf, d, (size_t)n);
    int tagged = m >= 18 && is_tpid(rd16(buf + 12));
    unsigned tag_vid = 0, tag_pcp = 0;
    if (tagged) {
        unsigned tci = rd16(buf + 14);
        tag_vid = tci & 0xFFF;
        tag_pcp = tci >> 13;
    }
    if (keep && orig) {
        if (!tagged) {
            memmove(buf + 16, buf + 12, (size_t)(m - 12));
            put_tag(buf + 12, (unsigned)orig);
            m += 4;
            tagged = 1;
            tag_vid = (unsigned)orig;
            tag_pcp = 0;
        } else if (tag_vid == 0) {
            unsigned tci = ((unsigned)(buf[14] & 0xF0) << 8) | (unsigned)orig;
            put_tag(buf + 12, tci);
        }
    }
    PyObject *out;
    if (!tagged || keep) {
        unsigned prio = tagged ? tag_pcp : 0;
        out = PyBytes_FromStringAndSize(NULL, m + 4);
        if (out) {
            unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
            memcpy(o, buf, 12);
            put_tag(o + 12, (prio << 13) | (unsigned)vlan);
            memcpy(o + 16, buf + 12, (size_t)(m - 12));
        }
    } else {
        unsigned old = rd16(buf + 14);
        unsigned tci = ((old >> 13) << 13) | (old & 0x1000) | (unsigned)vlan;
        out = PyBytes_FromStringAndSize((const char *)buf, m);
        if (out)
            put_tag((unsigned char *)PyBytes_AS_STRING(out) + 12, tci);
    }
    PyMem_Free(buf);
    return out;
}


/* ------------------------------------------------------------------ ERSPAN / GRE */

/*
 * One remote session's encapsulation, as mirror.encap.ErspanEncapsulator and
 * RawGreSender.send build it (the byte layout is tested against them).
 */
typedef struct {
    int type;             /* ENC_* */
    int session_id, hw_id, gra, plat, switch_id;
    long index;
    long long gre_key;    /* -1: none */
    int gre_seq;
    uint32_t seq;         /* the next GRE sequence number */
    long max_frame;       /* the longest mirrored frame sent whole (path MTU) */
    int fd;
    int family;           /* 4 or 6 */
    unsigned char local[16], remote[16];
    int has_local;
    L2Tx l2;              /* the link-layer path (l2.fd < 0: the raw socket fd) */
} Encap;

static void be16(unsigned char *o, unsigned v) { o[0] = (v >> 8) & 0xFF; o[1] = v & 0xFF; }
static void be32(unsigned char *o, uint32_t v)
{
    o[0] = v >> 24;
    o[1] = (v >> 16) & 0xFF;
    o[2] = (v >> 8) & 0xFF;
    o[3] = v & 0xFF;
}

/* RawGreSender.is_own_output: GRE to the session's remote (from its local address) */
static int own_output(const Encap *e, const unsigned char *f, Py_ssize_t n)
{
    Py_ssize_t off = 12;
    if (n < 14)
        return 0;
    unsigned et = rd16(f + 12);
    while (is_tpid(et) && n >= off + 6) {
        off += 4;
        et = rd16(f + off);
    }
    off += 2;
    if (et == 0x0800 && n >= off + 20) {
        if (e->family != 4 || f[off + 9] != 47 || memcmp(f + off + 16, e->remote, 4))
            return 0;
        return !e->has_local || memcmp(f + off + 12, e->local, 4) == 0;
    }
    if (et == 0x86DD && n >= off + 40) {
        if (e->family != 6 || f[off + 6] != 47 || memcmp(f + off + 24, e->remote, 16))
            return 0;
        return !e->has_local || memcmp(f + off + 8, e->local, 16) == 0;
    }
    return 0;
}

/*
 * The GRE payload carrying f[0:n] (ErspanEncapsulator.encapsulate): writes the
 * header into hdr, returns its length; the frame follows it.  vlan < 0: none.
 */
static int encap_header(Encap *e, unsigned char *hdr, const unsigned char *f, Py_ssize_t n,
                        int egress, int truncated, int vlan, long long ts_ns)
{
    uint32_t seq = e->seq;
    e->seq = seq + 1;
    int k = 0;
    if (e->type == ENC_GRE) {
        be16(hdr, (e->gre_key >= 0 ? GRE_FLAG_K : 0) | (e->gre_seq ? GRE_FLAG_S : 0));
        be16(hdr + 2, GRE_PROTO_TEB);
        k = 4;
        if (e->gre_key >= 0) {
            be32(hdr + k, (uint32_t)e->gre_key);
            k += 4;
        }
        if (e->gre_seq) {
            be32(hdr + k, seq);
            k += 4;
        }
        return k;
    }
    unsigned vid, pcp, en;
    if (n >= 18 && is_tpid(rd16(f + 12))) {
        unsigned tci = rd16(f + 14);
        vid = tci & 0xFFF;
        pcp = tci >> 13;
        en = 3;
        if (vid == 0 && vlan >= 0)
            vid = (unsigned)vlan & 0xFFF; /* priority-tagged: the VLAN it was switched in */
    } else {
        vid = vlan >= 0 ? (unsigned)vlan & 0xFFF : 0;
        pcp = 0;
        en = 0;
    }
    be16(hdr, GRE_FLAG_S);
    if (e->type == ENC_ERSPAN2) {
        be16(hdr + 2, GRE_PROTO_ERSPAN2);
        be32(hdr + 4, seq);
        be16(hdr + 8, 0x1000 | vid);
        be16(hdr + 10, (pcp << 13) | (en << 11) | ((unsigned)truncated << 10) |
                           (unsigned)e->session_id);
        be32(hdr + 12, (uint32_t)e->index);
        return 16;
    }
    uint32_t ts;
    if (e->gra == GRA_100US)
        ts = (uint32_t)((unsigned long long)ts_ns / 100000ULL);
    else if (e->gra == GRA_100NS)
        ts = (uint32_t)((unsigned long long)ts_ns / 100ULL);
    else
        ts = (uint32_t)((unsigned long long)ts_ns % 1000000000ULL);
    be16(hdr + 2, GRE_PROTO_ERSPAN3);
    be32(hdr + 4, seq);
    be16(hdr + 8, 0x2000 | vid);
    be16(hdr + 10, (pcp << 13) | ((unsigned)truncated << 10) | (unsigned)e->session_id);
    be32(hdr + 12, ts);
    be16(hdr + 16, 0); /* SGT */
    be16(hdr + 18, 0x8000 | ((unsigned)e->hw_id << 4) | ((unsigned)egress << 3) |
                       ((unsigned)e->gra << 1) | (unsigned)e->plat);
    k = 20;
    if (e->plat) {
        be32(hdr + 20, ((uint32_t)PLATF_SWITCH_PORT_SECONDS << 26) |
                           ((uint32_t)e->switch_id << 16) | ((uint32_t)e->index & 0xFFFF));
        be32(hdr + 24, (uint32_t)((unsigned long long)ts_ns / 1000000000ULL));
        k = 28;
    }
    return k;
}

/* the length of the header encap_header() writes for e (it depends on e alone) */
static int encap_len(const Encap *e)
{
    if (e->type == ENC_GRE)
        return 4 + (e->gre_key >= 0 ? 4 : 0) + (e->gre_seq ? 4 : 0);
    if (e->type == ENC_ERSPAN2)
        return 16;
    return e->plat ? 28 : 20;
}

static long long wall_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int parse_encap(PyObject *t, Encap *e)
{
    Py_buffer local, remote;
    unsigned long seq;
    PyObject *l2 = NULL;
    if (!PyArg_ParseTuple(t, "iiiliiiLpkliy*y*|O", &e->type, &e->session_id, &e->hw_id,
                          &e->index, &e->gra, &e->plat, &e->switch_id, &e->gre_key, &e->gre_seq,
                          &seq, &e->max_frame, &e->fd, &local, &remote, &l2))
        return -1;
    if (l2tx_parse(l2, &e->l2) < 0) {
        PyBuffer_Release(&local);
        PyBuffer_Release(&remote);
        return -1;
    }
    e->seq = (uint32_t)seq;
    int ok = (remote.len == 4 || remote.len == 16) && (local.len == 0 || local.len == remote.len);
    if (ok) {
        e->family = remote.len == 4 ? 4 : 6;
        memcpy(e->remote, remote.buf, (size_t)remote.len);
        e->has_local = local.len != 0;
        if (local.len)
            memcpy(e->local, local.buf, (size_t)local.len);
    }
    PyBuffer_Release(&local);
    PyBuffer_Release(&remote);
    if (!ok || e->type < 0 || e->type > 2) {
        PyErr_SetString(PyExc_ValueError, "bad encapsulation parameters");
        return -1;
    }
    return 0;
}

/*
 * erspan_payload(params, frame, egress, truncated, vlan, ts_ns) -> (payload, next seq,
 * cut): the payload the native side sends (tests compare it with the Python one).
 */
static PyObject *mod_erspan_payload(PyObject *mod, PyObject *args)
{
    PyObject *params;
    const char *f;
    Py_ssize_t n;
    int egress, truncated, vlan;
    long long ts;
    if (!PyArg_ParseTuple(args, "O!y#ppiL", &PyTuple_Type, &params, &f, &n, &egress, &truncated,
                          &vlan, &ts))
        return NULL;
    Encap e;
    memset(&e, 0, sizeof(e));
    if (parse_encap(params, &e) < 0)
        return NULL;
    int cut = 0;
    if (n > e.max_frame) {
        n = e.max_frame > 0 ? e.max_frame : 0;
        truncated = 1;
        cut = 1;
    }
    unsigned char hdr[ENCAP_MAX];
    int k = encap_header(&e, hdr, (const unsigned char *)f, n, egress, truncated, vlan, ts);
    size_t pre = l2tx_prefix(&e.l2);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)pre + k + n);
    if (!out)
        return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    if (pre)
        l2tx_write(&e.l2, o, (size_t)k + (size_t)n);
    memcpy(o + pre, hdr, (size_t)k);
    memcpy(o + pre + k, f, (size_t)n);
    return Py_BuildValue("(Nkil)", out, (unsigned long)e.seq, cut,
                         pre ? (long)e.l2.ip_id : -1L);
}

/* ------------------------------------------------------------------ programs */

typedef struct {
    int session;
    int vlan_op, vid;
    long truncate;
    long sample;
    int vlan; /* the VLAN the frame is switched in (RSPAN inner tag, ERSPAN VLAN) */
    int egress; /* copied on egress (the ERSPAN direction bit) */
    int nlengths;
    long lo[MAX_LENGTHS], hi[MAX_LENGTHS];
} MirrorOp;

typedef struct {
    int op;
    long port;       /* OUTPUT */
    int vlan_op, vid; /* OUTPUT */
    long mtu;        /* OUTPUT: 0 = unchecked */
    long mtu_drop;   /* OUTPUT: the drop id of (port, mtu, "") */
    long drop;       /* DROP: drop id */
    int first_mirror, nmirrors; /* OUTPUT: its egress mirrors; MIRROR: the one */
} Op;

typedef struct {
    PyObject_HEAD
    int nops, nmirrors;
    Op *ops;
    MirrorOp *mirrors;
    int flood;
    int has_refresh;
    int has_cut;      /* a mirror truncates: an offloaded frame would need segmenting */
    int shifts_vnet;  /* a VLAN op or an RSPAN copy moves virtio-net offsets */
    PyObject **ports; /* PyLong per op (OUTPUT), the tx dict keys */
    int nchecks;      /* FIREWALL checks, stepped before any effect (_conntrack.h) */
    FwCheck *checks;
} Program;

static void Program_dealloc(Program *self)
{
    if (self->ports) {
        for (int i = 0; i < self->nops; i++)
            Py_XDECREF(self->ports[i]);
        PyMem_Free(self->ports);
    }
    PyMem_Free(self->ops);
    PyMem_Free(self->mirrors);
    for (int i = 0; i < self->nchecks; i++)
        Py_XDECREF(self->checks[i].cell);
    PyMem_Free(self->checks);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int parse_mirror(PyObject *t, MirrorOp *m)
{
    PyObject *lengths;
    if (!PyArg_ParseTuple(t, "iiilliiiO!", &m->session, &m->vlan_op, &m->vid, &m->truncate,
                          &m->sample, &m->vlan, &m->egress, &m->nlengths, &PyTuple_Type,
                          &lengths))
        return -1;
    Py_ssize_t nl = PyTuple_GET_SIZE(lengths);
    if (nl > MAX_LENGTHS || nl != m->nlengths) {
        PyErr_SetString(PyExc_ValueError, "too many length ranges");
        return -1;
    }
    for (Py_ssize_t i = 0; i < nl; i++) {
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(lengths, i), "ll", &m->lo[i], &m->hi[i]))
            return -1;
    }
    if (m->vlan_op < 0 || m->vlan_op > 3 || m->vid < 0 || m->vid > 4095 || m->vlan < 0 ||
        m->vlan > 4094 || m->truncate < 0) {
        PyErr_SetString(PyExc_ValueError, "mirror field out of range");
        return -1;
    }
    return 0;
}

/*
 * Program(ops, mirrors, flood): ops is a tuple of
 *   (OP_OUTPUT, port, vlan_op, vid, mtu, mtu_drop, first_mirror, nmirrors)
 *   (OP_MIRROR, mirror)  (OP_REFRESH,)  (OP_DROP, drop_id)
 * and mirrors a tuple of (session, vlan_op, vid, truncate, sample, vlan, egress, n, lengths).
 */
static PyObject *Program_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    PyObject *ops, *mirrors, *checks = NULL;
    int flood;
    if (!PyArg_ParseTuple(args, "O!O!p|O!", &PyTuple_Type, &ops, &PyTuple_Type, &mirrors, &flood,
                          &PyTuple_Type, &checks))
        return NULL;
    if (checks && PyTuple_GET_SIZE(checks) > CT_MAX_CHECKS) {
        PyErr_SetString(PyExc_ValueError, "too many firewall checks");
        return NULL;
    }
    Program *self = (Program *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    self->nops = (int)PyTuple_GET_SIZE(ops);
    self->nmirrors = (int)PyTuple_GET_SIZE(mirrors);
    self->flood = flood;
    self->ops = PyMem_Calloc((size_t)self->nops + 1, sizeof(Op));
    self->mirrors = PyMem_Calloc((size_t)self->nmirrors + 1, sizeof(MirrorOp));
    self->ports = PyMem_Calloc((size_t)self->nops + 1, sizeof(PyObject *));
    if (!self->ops || !self->mirrors || !self->ports) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    if (checks && PyTuple_GET_SIZE(checks)) {
        Py_ssize_t nc = PyTuple_GET_SIZE(checks);
        self->checks = PyMem_Calloc((size_t)nc, sizeof(FwCheck));
        if (!self->checks) {
            Py_DECREF(self);
            return PyErr_NoMemory();
        }
        for (Py_ssize_t i = 0; i < nc; i++) {
            FwCheck *c = &self->checks[i];
            PyObject *cell;
            if (!PyArg_ParseTuple(PyTuple_GET_ITEM(checks, i), "lpO!i", &c->port, &c->dir_in,
                                  &PyList_Type, &cell, &c->kind)) {
                Py_DECREF(self);
                return NULL;
            }
            if (c->kind != CT_KIND_FIREWALL && c->kind != CT_KIND_EXT_ACL) {
                PyErr_SetString(PyExc_ValueError, "check kind not stepped natively");
                Py_DECREF(self);
                return NULL;
            }
            if (PyList_GET_SIZE(cell) != 1) {
                PyErr_SetString(PyExc_ValueError, "a check's cell is a list of one");
                Py_DECREF(self);
                return NULL;
            }
            Py_INCREF(cell);
            c->cell = cell;
            self->nchecks = (int)i + 1;
        }
    }
    for (int i = 0; i < self->nmirrors; i++) {
        if (parse_mirror(PyTuple_GET_ITEM(mirrors, i), &self->mirrors[i]) < 0) {
            Py_DECREF(self);
            return NULL;
        }
        if (self->mirrors[i].truncate)
            self->has_cut = 1;
        if (self->mirrors[i].vlan_op != VLAN_KEEP)
            self->shifts_vnet = 1;
    }
    for (int i = 0; i < self->nops; i++) {
        PyObject *t = PyTuple_GET_ITEM(ops, i);
        Op *o = &self->ops[i];
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) < 1) {
            PyErr_SetString(PyExc_ValueError, "bad op");
            Py_DECREF(self);
            return NULL;
        }
        o->op = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 0));
        int ok = 1;
        switch (o->op) {
        case OP_OUTPUT:
            ok = PyArg_ParseTuple(t, "iliillii", &o->op, &o->port, &o->vlan_op, &o->vid,
                                  &o->mtu, &o->mtu_drop, &o->first_mirror, &o->nmirrors);
            if (ok && (o->vlan_op < 0 || o->vlan_op > 3 || o->first_mirror < 0 ||
                       o->nmirrors < 0 || o->first_mirror + o->nmirrors > self->nmirrors)) {
                PyErr_SetString(PyExc_ValueError, "output field out of range");
                ok = 0;
            }
            if (ok && o->vlan_op != VLAN_KEEP && o->vlan_op != VLAN_SET)
                self->shifts_vnet = 1;
            if (ok) {
                self->ports[i] = PyLong_FromLong(o->port);
                ok = self->ports[i] != NULL;
            }
            break;
        case OP_MIRROR:
            ok = PyArg_ParseTuple(t, "ii", &o->op, &o->first_mirror);
            o->nmirrors = 1;
            if (ok && (o->first_mirror < 0 || o->first_mirror >= self->nmirrors)) {
                PyErr_SetString(PyExc_ValueError, "mirror index out of range");
                ok = 0;
            }
            break;
        case OP_REFRESH:
            self->has_refresh = 1;
            break;
        case OP_DROP:
            ok = PyArg_ParseTuple(t, "il", &o->op, &o->drop);
            break;
        default:
            PyErr_SetString(PyExc_ValueError, "opcode not replayed natively");
            ok = 0;
        }
        if (!ok) {
            Py_DECREF(self);
            return NULL;
        }
    }
    return (PyObject *)self;
}

static PyTypeObject ProgramType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vspan.datapath._native.Program",
    .tp_basicsize = sizeof(Program),
    .tp_dealloc = (destructor)Program_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A decision's action list compiled for the native replay.",
    .tp_new = Program_new,
};

/* ------------------------------------------------------------------ the table */

typedef struct Entry {
    struct Entry *next;
    uint64_t hash;
    int klen;
    unsigned char key[KEY_MAX];
    Program *prog;   /* strong reference */
    PyObject *ref;   /* the MAC-table entry Refresh touches (strong), or NULL */
    PyObject *ckey[2]; /* the flow's connection keys, out / in (made by ct_prepare), or NULL */
} Entry;

/* one growable array of counters, indexed by port/session/drop id */
typedef struct {
    int64_t *v;
    Py_ssize_t n;
} Arr;

static int arr_add(Arr *a, Py_ssize_t i, int64_t d)
{
    if (i < 0)
        return 0;
    if (i >= a->n) {
        Py_ssize_t n = a->n ? a->n : 16;
        while (n <= i)
            n *= 2;
        int64_t *v = PyMem_Realloc(a->v, (size_t)n * sizeof(int64_t));
        if (!v)
            return -1;
        memset(v + a->n, 0, (size_t)(n - a->n) * sizeof(int64_t));
        a->v = v;
        a->n = n;
    }
    a->v[i] += d;
    return 0;
}

static int64_t arr_get(const Arr *a, Py_ssize_t i) { return (i >= 0 && i < a->n) ? a->v[i] : 0; }

/* what the native side knows of a mirror session (pushed per batch by Python) */
typedef struct {
    int present;
    int kind;
    int64_t seen;
    int rspan_vlan, rspan_keep, uplink_ok;
    int tag_untagged; /* RSPAN: an untagged frame keeps its VLAN as the inner tag */
    long uplink;
    PyObject *uplink_obj;
    int ndest;
    long *dest;
    int *dest_ok;
    PyObject **dest_obj;
    Encap enc;          /* KIND_ERSPAN (its copies wait in the table's Pending arena) */
    int64_t sent, sent_bytes, truncated, loop_skipped;
    int segment;        /* KIND_ERSPAN: offloaded frames are segmented (else sent as they are) */
    PyObject *errors;   /* list of errno of failed sends */
    PyObject *resend;   /* list of payloads refused with EMSGSIZE (the Python retry) */
} Session;

/* P_FORWARDED, P_CONSUMED: fates of received frames (docs/accounting.md) */
enum { P_RX_BYTES, P_FLOODED, P_MIRRORED_OUT, P_FORWARDED, P_CONSUMED, P_N };

/*
 * The encapsulated copies of a run, waiting for flush_remote: payloads laid end to end
 * in one buffer (no Python object per copy), each item its session, offset, length and
 * the copy's length before the path-MTU cut (what the session's bytes count).
 */
typedef struct {
    Py_ssize_t session;
    size_t off;
    size_t len;
    Py_ssize_t flen;
} PendItem;

typedef struct {
    unsigned char *buf;
    size_t len, cap;
    PendItem *items;
    Py_ssize_t n, ncap;
} Pending;

static void pending_reset(Pending *p);
enum { S_SAMPLED_OUT, S_TRUNCATED, S_MIRRORED, S_DROPPED, S_BYTES, S_N };

typedef struct {
    PyObject_HEAD
    Entry **buckets;
    size_t nbuckets, count;
    Arr port[P_N];
    Arr sess[S_N];
    Arr drops;
    Arr rx_drops;   /* received frames delivered nowhere, by the drop id of their first drop */
    long fate_port; /* the receiving port rx_drops belong to (one port per batch) */
    int64_t rx_pending; /* frames in rx_drops since the last take */
    int64_t hits;
    Session *sessions;
    Py_ssize_t nsessions;
    PyObject *frame_type; /* vspan.ports.base.Frame */
    FrameMaker fm;        /* ... made without running Frame.__init__ (_slots.h) */
    SlotCache c_data, c_vnet, c_ts, c_port, c_pid, c_last_seen;
    PyObject *s_data, *s_vnet, *s_ts, *s_port, *s_pid, *s_last_seen, *empty;
    Pending pending; /* ERSPAN copies of the current run */
} Table;

static uint64_t hash_key(const unsigned char *k, int n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (int i = 0; i < n; i++) {
        h ^= k[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

static void free_sessions(Table *t)
{
    for (Py_ssize_t i = 0; i < t->nsessions; i++) {
        Session *s = &t->sessions[i];
        for (int j = 0; j < s->ndest; j++)
            Py_XDECREF(s->dest_obj[j]);
        PyMem_Free(s->dest);
        PyMem_Free(s->dest_ok);
        PyMem_Free(s->dest_obj);
        Py_XDECREF(s->uplink_obj);
        Py_XDECREF(s->errors);
        Py_XDECREF(s->resend);
    }
    PyMem_Free(t->sessions);
    t->sessions = NULL;
    t->nsessions = 0;
}

static void free_entry(Entry *e)
{
    Py_XDECREF(e->prog);
    Py_XDECREF(e->ref);
    Py_XDECREF(e->ckey[0]);
    Py_XDECREF(e->ckey[1]);
    PyMem_Free(e);
}

static void table_clear(Table *t)
{
    for (size_t b = 0; b < t->nbuckets; b++) {
        Entry *e = t->buckets[b];
        while (e) {
            Entry *nx = e->next;
            free_entry(e);
            e = nx;
        }
        t->buckets[b] = NULL;
    }
    t->count = 0;
}

static void Table_dealloc(Table *self)
{
    table_clear(self);
    PyMem_Free(self->buckets);
    for (int i = 0; i < P_N; i++)
        PyMem_Free(self->port[i].v);
    for (int i = 0; i < S_N; i++)
        PyMem_Free(self->sess[i].v);
    PyMem_Free(self->drops.v);
    PyMem_Free(self->rx_drops.v);
    free_sessions(self);
    PyMem_Free(self->pending.buf);
    PyMem_Free(self->pending.items);
    Py_XDECREF(self->frame_type);
    fm_clear(&self->fm);
    Py_XDECREF(self->s_data);
    Py_XDECREF(self->s_vnet);
    Py_XDECREF(self->s_ts);
    Py_XDECREF(self->s_port);
    Py_XDECREF(self->s_pid);
    Py_XDECREF(self->s_last_seen);
    Py_XDECREF(self->empty);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Table_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    PyObject *frame_type;
    if (!PyArg_ParseTuple(args, "O", &frame_type))
        return NULL;
    Table *self = (Table *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    self->nbuckets = 1024;
    self->buckets = PyMem_Calloc(self->nbuckets, sizeof(Entry *));
    Py_INCREF(frame_type);
    self->frame_type = frame_type;
    self->s_data = PyUnicode_InternFromString("data");
    self->s_vnet = PyUnicode_InternFromString("vnet");
    self->s_ts = PyUnicode_InternFromString("ts_ns");
    self->s_port = PyUnicode_InternFromString("port");
    self->s_pid = PyUnicode_InternFromString("pid");
    self->s_last_seen = PyUnicode_InternFromString("last_seen");
    self->empty = PyBytes_FromStringAndSize("", 0);
    if (!self->buckets || !self->s_data || !self->s_vnet || !self->s_ts || !self->s_port ||
        !self->s_pid || !self->s_last_seen || !self->empty ||
        fm_set(&self->fm, frame_type) < 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static Entry *lookup(Table *t, const unsigned char *k, int n)
{
    uint64_t h = hash_key(k, n);
    for (Entry *e = t->buckets[h & (t->nbuckets - 1)]; e; e = e->next)
        if (e->hash == h && e->klen == n && memcmp(e->key, k, (size_t)n) == 0)
            return e;
    return NULL;
}

static int grow(Table *t)
{
    size_t nb = t->nbuckets * 2;
    Entry **b = PyMem_Calloc(nb, sizeof(Entry *));
    if (!b)
        return -1;
    for (size_t i = 0; i < t->nbuckets; i++) {
        Entry *e = t->buckets[i];
        while (e) {
            Entry *nx = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
            e = nx;
        }
    }
    PyMem_Free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
    return 0;
}

static int remove_key(Table *t, const unsigned char *k, int n)
{
    uint64_t h = hash_key(k, n);
    Entry **pp = &t->buckets[h & (t->nbuckets - 1)];
    for (Entry *e = *pp; e; pp = &e->next, e = e->next) {
        if (e->hash == h && e->klen == n && memcmp(e->key, k, (size_t)n) == 0) {
            *pp = e->next;
            free_entry(e);
            t->count--;
            return 1;
        }
    }
    return 0;
}

/* Table.put(key: bytes, program, ref | None) */
static PyObject *Table_put(Table *self, PyObject *args)
{
    const char *k;
    Py_ssize_t n;
    PyObject *prog, *ref;
    if (!PyArg_ParseTuple(args, "y#O!O", &k, &n, &ProgramType, &prog, &ref))
        return NULL;
    if (n <= 0 || n > KEY_MAX) {
        PyErr_SetString(PyExc_ValueError, "bad key length");
        return NULL;
    }
    remove_key(self, (const unsigned char *)k, (int)n);
    if (self->count >= self->nbuckets && grow(self) < 0)
        return PyErr_NoMemory();
    Entry *e = PyMem_Calloc(1, sizeof(Entry));
    if (!e)
        return PyErr_NoMemory();
    e->klen = (int)n;
    memcpy(e->key, k, (size_t)n);
    e->hash = hash_key(e->key, e->klen);
    Py_INCREF(prog);
    e->prog = (Program *)prog;
    if (ref != Py_None) {
        Py_INCREF(ref);
        e->ref = ref;
    }
    size_t b = e->hash & (self->nbuckets - 1);
    e->next = self->buckets[b];
    self->buckets[b] = e;
    self->count++;
    Py_RETURN_NONE;
}

static PyObject *Table_forget(Table *self, PyObject *args)
{
    const char *k;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "y#", &k, &n))
        return NULL;
    if (n <= 0 || n > KEY_MAX)
        Py_RETURN_FALSE;
    return PyBool_FromLong(remove_key(self, (const unsigned char *)k, (int)n));
}

static PyObject *Table_clear(Table *self, PyObject *unused)
{
    table_clear(self);
    Py_RETURN_NONE;
}

static Py_ssize_t Table_len(Table *self) { return (Py_ssize_t)self->count; }

/*
 * Table.sessions(list of None | (kind, seen, dests, uplink, uplink_ok, rspan_vlan, keep,
 * tag_untagged, encap)) indexed by session index; dests = tuple of (port, enabled); encap = None or the
 * KIND_ERSPAN parameters (see parse_encap).  Called before run().
 */
static PyObject *Table_sessions(Table *self, PyObject *arg)
{
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "a list");
        return NULL;
    }
    free_sessions(self);
    pending_reset(&self->pending); /* copies of sessions that are gone are not sent */
    Py_ssize_t n = PyList_GET_SIZE(arg);
    self->sessions = PyMem_Calloc((size_t)n + 1, sizeof(Session));
    if (!self->sessions)
        return PyErr_NoMemory();
    self->nsessions = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(arg, i);
        Session *s = &self->sessions[i];
        if (t == Py_None)
            continue;
        PyObject *dests, *enc;
        long long seen;
        if (!PyArg_ParseTuple(t, "iLO!liiiiO", &s->kind, &seen, &PyTuple_Type, &dests,
                              &s->uplink, &s->uplink_ok, &s->rspan_vlan, &s->rspan_keep,
                              &s->tag_untagged, &enc))
            return NULL;
        if (s->kind == KIND_ERSPAN) {
            PyObject *params;
            if (!PyArg_ParseTuple(enc, "O!p", &PyTuple_Type, &params, &s->segment) ||
                parse_encap(params, &s->enc) < 0)
                return NULL;
            s->errors = PyList_New(0);
            s->resend = PyList_New(0);
            if (!s->errors || !s->resend)
                return NULL;
        }
        if (s->kind == KIND_RSPAN && (s->rspan_vlan < 1 || s->rspan_vlan > 4094))
            s->uplink_ok = 0; /* rspan_copy would refuse it: counted as lost */
        s->seen = seen;
        s->present = 1;
        s->uplink_obj = PyLong_FromLong(s->uplink);
        s->ndest = (int)PyTuple_GET_SIZE(dests);
        s->dest = PyMem_Calloc((size_t)s->ndest + 1, sizeof(long));
        s->dest_ok = PyMem_Calloc((size_t)s->ndest + 1, sizeof(int));
        s->dest_obj = PyMem_Calloc((size_t)s->ndest + 1, sizeof(PyObject *));
        if (!s->uplink_obj || !s->dest || !s->dest_ok || !s->dest_obj)
            return PyErr_NoMemory();
        for (int j = 0; j < s->ndest; j++) {
            if (!PyArg_ParseTuple(PyTuple_GET_ITEM(dests, j), "li", &s->dest[j], &s->dest_ok[j]))
                return NULL;
            s->dest_obj[j] = PyLong_FromLong(s->dest[j]);
            if (!s->dest_obj[j])
                return NULL;
        }
    }
    Py_RETURN_NONE;
}

/*
 * Table.seen() -> list of (session, seen, erspan): the sampling counters after run(),
 * and for natively sent ERSPAN sessions (next seq, sent, sent_bytes, truncated,
 * loop_skipped, errnos, payloads to retry after EMSGSIZE) taken and zeroed; else None.
 */
static PyObject *Table_seen(Table *self, PyObject *unused)
{
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
    for (Py_ssize_t i = 0; i < self->nsessions; i++) {
        if (!self->sessions[i].present)
            continue;
        Session *s = &self->sessions[i];
        PyObject *t;
        if (s->kind == KIND_ERSPAN) {
            t = Py_BuildValue("(nL(kLLLLOOl))", i, (long long)s->seen,
                              (unsigned long)s->enc.seq, (long long)s->sent,
                              (long long)s->sent_bytes, (long long)s->truncated,
                              (long long)s->loop_skipped, s->errors, s->resend,
                              s->enc.l2.fd >= 0 ? (long)s->enc.l2.ip_id : -1L);
            s->sent = s->sent_bytes = s->truncated = s->loop_skipped = 0;
            PyObject *e1 = PyList_New(0), *e2 = PyList_New(0);
            if (!e1 || !e2) {
                Py_XDECREF(e1);
                Py_XDECREF(e2);
                Py_XDECREF(t);
                Py_DECREF(out);
                return NULL;
            }
            Py_SETREF(s->errors, e1);
            Py_SETREF(s->resend, e2);
        } else {
            t = Py_BuildValue("(nLO)", i, (long long)s->seen, Py_None);
        }
        if (!t || PyList_Append(out, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(t);
    }
    return out;
}

static PyObject *rows(Arr *cols, int ncols)
{
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
    Py_ssize_t n = 0;
    for (int c = 0; c < ncols; c++)
        if (cols[c].n > n)
            n = cols[c].n;
    for (Py_ssize_t i = 0; i < n; i++) {
        int any = 0;
        for (int c = 0; c < ncols; c++)
            any |= arr_get(&cols[c], i) != 0;
        if (!any)
            continue;
        PyObject *t = PyTuple_New(ncols + 1);
        if (!t) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(t, 0, PyLong_FromSsize_t(i));
        for (int c = 0; c < ncols; c++)
            PyTuple_SET_ITEM(t, c + 1, PyLong_FromLongLong(arr_get(&cols[c], i)));
        if (PyList_Append(out, t) < 0) {
            Py_DECREF(t);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(t);
    }
    for (int c = 0; c < ncols; c++)
        if (cols[c].v)
            memset(cols[c].v, 0, (size_t)cols[c].n * sizeof(int64_t));
    return out;
}

/*
 * Table.take() -> (hits, ports, sessions, drops): the counter deltas since the last take,
 * zeroed.  ports: (index, rx_bytes, flooded, mirrored_out, forwarded, consumed); sessions:
 * (index, sampled_out, truncated, mirrored, dropped, bytes); drops: (drop id, n); rx_drops:
 * (drop id of the first drop, n) of frames received on the batch's port and delivered
 * nowhere.  Only rows with a nonzero value.
 */
static PyObject *Table_take(Table *self, PyObject *unused)
{
    PyObject *p = rows(self->port, P_N), *s = rows(self->sess, S_N), *d = rows(&self->drops, 1);
    PyObject *r = rows(&self->rx_drops, 1);
    PyObject *out = NULL;
    if (p && s && d && r)
        out = Py_BuildValue("(LOOOO)", (long long)self->hits, p, s, d, r);
    self->hits = 0;
    self->rx_pending = 0;
    Py_XDECREF(p);
    Py_XDECREF(s);
    Py_XDECREF(d);
    Py_XDECREF(r);
    return out;
}

/* ------------------------------------------------------------------ replay */

/* append item to tx[port] */
static int enqueue(PyObject *tx, PyObject *port, PyObject *item)
{
    PyObject *q = PyDict_GetItemWithError(tx, port);
    if (q == NULL) {
        if (PyErr_Occurred())
            return -1;
        q = PyList_New(1);
        if (!q)
            return -1;
        Py_INCREF(item);
        PyList_SET_ITEM(q, 0, item);
        int r = PyDict_SetItem(tx, port, q);
        Py_DECREF(q);
        return r;
    }
    return PyList_Append(q, item);
}

static PyObject *make_frame(Table *t, PyObject *data, PyObject *vnet, PyObject *ts)
{
    return fm_make(&t->fm, data, vnet, ts, NULL, NULL);
}

/* Frame(data, vnet, like.ts_ns, like.port, like.pid): an output made from a received frame */
static PyObject *make_frame_like(Table *t, PyObject *data, PyObject *vnet, PyObject *like)
{
    PyObject *ts = slot_get(&t->c_ts, like, t->s_ts);
    PyObject *port = ts ? slot_get(&t->c_port, like, t->s_port) : NULL;
    PyObject *pid = port ? slot_get(&t->c_pid, like, t->s_pid) : NULL;
    PyObject *f = pid ? fm_make(&t->fm, data, vnet, ts, port, pid) : NULL;
    Py_XDECREF(ts);
    Py_XDECREF(port);
    Py_XDECREF(pid);
    return f;
}

/*
 * Can this side handle the frame with this program alone?  Checked before any
 * effect, so a frame is handled wholly by one side.
 */
static int frame_ok(Table *t, Entry *e, Py_ssize_t n, const unsigned char *v, Py_ssize_t vn)
{
    Program *p = e->prog;
    if (p->has_refresh && e->ref == NULL)
        return 0; /* the MAC entry was not resolved at install: Python looks it up */
    int plain = vnet_plain(v, vn);
    if (!plain && vn != VNET_LEN)
        return 0;
    if (!plain && (p->shifts_vnet || p->nmirrors) && !vnet_shift_safe(v, vn))
        return 0;
    for (int i = 0; i < p->nmirrors; i++) {
        int s = p->mirrors[i].session;
        if (s >= 0 && s < t->nsessions && t->sessions[s].present &&
            t->sessions[s].kind == KIND_REMOTE)
            return 0; /* copies for Python's senders */
    }
    for (int i = 0; i < p->nops; i++) {
        const Op *o = &p->ops[i];
        /* POP/SET need a tag to work on (the pipeline only asks for them on tagged frames) */
        if (o->op == OP_OUTPUT && (o->vlan_op == VLAN_POP || o->vlan_op == VLAN_SET) && n < 16)
            return 0;
    }
    for (int i = 0; i < p->nmirrors; i++) {
        const MirrorOp *m = &p->mirrors[i];
        if ((m->vlan_op == VLAN_POP || m->vlan_op == VLAN_SET) && n < 16)
            return 0;
    }
    return 1;
}

/*
 * Room for one more pending copy of up to `room` bytes (its item added; its length
 * fixed by pending_commit); NULL with MemoryError set when memory runs out.
 */
static unsigned char *pending_add(Pending *p, Py_ssize_t session, size_t room, Py_ssize_t flen)
{
    if (p->n == p->ncap) {
        Py_ssize_t nc = p->ncap ? 2 * p->ncap : 128;
        PendItem *ni = PyMem_Realloc(p->items, (size_t)nc * sizeof(PendItem));
        if (!ni) {
            PyErr_NoMemory();
            return NULL;
        }
        p->items = ni;
        p->ncap = nc;
    }
    if (p->len + room > p->cap) {
        size_t nc = p->cap ? 2 * p->cap : 65536;
        while (nc < p->len + room)
            nc *= 2;
        unsigned char *nb = PyMem_Realloc(p->buf, nc);
        if (!nb) {
            PyErr_NoMemory();
            return NULL;
        }
        p->buf = nb;
        p->cap = nc;
    }
    PendItem *it = &p->items[p->n];
    it->session = session;
    it->off = p->len;
    it->len = 0;
    it->flen = flen;
    return p->buf + p->len;
}

/* the copy pending_add made room for is `len` bytes long */
static void pending_commit(Pending *p, size_t len)
{
    p->items[p->n].len = len;
    p->len += len;
    p->n++;
}

/* forget every pending copy (the buffer is kept, up to 4 MiB, for the next run) */
static void pending_reset(Pending *p)
{
    p->n = 0;
    p->len = 0;
    if (p->cap > ((size_t)4 << 20)) {
        PyMem_Free(p->buf);
        p->buf = NULL;
        p->cap = 0;
    }
}

/*
 * An ERSPAN copy of up to fn frame bytes for session s: where to write the frame (the
 * room before it is left for the link-layer and encapsulation headers); erspan_put()
 * then encapsulates what was written (NULL with MemoryError set when memory runs out).
 */
static unsigned char *erspan_room(Table *t, int session, Session *s, Py_ssize_t fn)
{
    size_t pre = l2tx_prefix(&s->enc.l2) + (size_t)encap_len(&s->enc);
    unsigned char *slot = pending_add(&t->pending, session, pre + (size_t)fn, fn);
    return slot ? slot + pre : NULL;
}

/*
 * The copy erspan_room() gave room for holds fn frame bytes (cut: already cut to the
 * mirror's length): the loop guard, the path-MTU cut, the GRE/ERSPAN header (ts_ns: its
 * timestamp) and the link-layer header written in front, and the copy kept for the
 * run's sendmmsg; one skipped by the loop guard is counted and not kept.
 */
static int erspan_put(Table *t, const MirrorOp *c, Session *s, Py_ssize_t fn, int cut,
                      long long ts_ns)
{
    Pending *p = &t->pending;
    size_t pre = l2tx_prefix(&s->enc.l2);
    int k = encap_len(&s->enc);
    unsigned char *slot = p->buf + p->len;
    const unsigned char *f = slot + pre + k;
    p->items[p->n].flen = fn; /* what the session's bytes count: after the mirror's cut */
    if (own_output(&s->enc, f, fn)) {
        s->loop_skipped++;
        return arr_add(&t->sess[S_DROPPED], c->session, 1); /* not committed: not sent */
    }
    int trunc = cut;
    if (fn > s->enc.max_frame) {
        s->truncated++;
        fn = s->enc.max_frame > 0 ? s->enc.max_frame : 0;
        trunc = 1;
    }
    if (encap_header(&s->enc, slot + pre, f, fn, c->egress, trunc, c->vlan ? c->vlan : -1,
                     ts_ns) != k) {
        PyErr_SetString(PyExc_SystemError, "encap_len does not match encap_header");
        return -1;
    }
    if (pre)
        l2tx_write(&s->enc.l2, slot, (size_t)k + (size_t)fn);
    pending_commit(p, pre + (size_t)k + (size_t)fn);
    return 0;
}

/*
 * MirrorOut._where + emit for one copy (cd, cv) of the frame (data, vnet as offered;
 * fobj: its Frame, delivered as is when the copy is unchanged): cut to the session's
 * length, then to the session's destination.
 */
static int deliver(Table *t, const MirrorOp *c, Session *s, PyObject *fobj, PyObject *data,
                   PyObject *vnet, PyObject *cd, PyObject *cv, PyObject *tx)
{
    int rc = -1, cut = 0;
    Py_INCREF(cd);
    Py_INCREF(cv);
    if (c->truncate && PyBytes_GET_SIZE(cd) > c->truncate) {
        PyObject *nd = PyBytes_FromStringAndSize(PyBytes_AS_STRING(cd), c->truncate);
        if (!nd)
            goto out;
        Py_SETREF(cd, nd);
        Py_INCREF(t->empty);
        Py_SETREF(cv, t->empty); /* a cut frame carries no offload work */
        cut = 1;
        if (arr_add(&t->sess[S_TRUNCATED], c->session, 1) < 0)
            goto out;
    }
    if (s->kind == KIND_ERSPAN) {
        /* RawGreSender.send: loop guard, path-MTU cut, encapsulate; sent at the run's end */
        Py_ssize_t fn = PyBytes_GET_SIZE(cd);
        unsigned char *slot = erspan_room(t, c->session, s, fn);
        if (!slot)
            goto out;
        memcpy(slot, PyBytes_AS_STRING(cd), (size_t)fn);
        rc = erspan_put(t, c, s, fn, cut, s->enc.type == ENC_ERSPAN3 ? wall_ns() : 0);
        goto out;
    }
    if (s->kind == KIND_RSPAN) {
        if (!s->uplink_ok || PyBytes_GET_SIZE(cd) < 14) {
            rc = arr_add(&t->sess[S_DROPPED], c->session, 1);
            goto out;
        }
        PyObject *nd = rspan_copy((const unsigned char *)PyBytes_AS_STRING(cd),
                                  PyBytes_GET_SIZE(cd), s->rspan_vlan, s->rspan_keep,
                                  s->tag_untagged ? c->vlan : 0);
        if (!nd)
            goto out;
        int delta = (int)(PyBytes_GET_SIZE(nd) - PyBytes_GET_SIZE(cd));
        Py_SETREF(cd, nd);
        if (PyBytes_GET_SIZE(cv) && delta) {
            PyObject *nv = vnet_shift(cv, delta);
            if (!nv)
                goto out;
            Py_SETREF(cv, nv);
        }
        PyObject *f = make_frame(t, cd, cv, NULL);
        if (!f)
            goto out;
        rc = enqueue(tx, s->uplink_obj, f);
        Py_DECREF(f);
        if (rc < 0 || arr_add(&t->sess[S_MIRRORED], c->session, 1) < 0 ||
            arr_add(&t->sess[S_BYTES], c->session, PyBytes_GET_SIZE(cd)) < 0 ||
            arr_add(&t->port[P_MIRRORED_OUT], s->uplink, 1) < 0)
            rc = -1;
        goto out;
    }
    /* local: every destination port */
    PyObject *f = NULL;
    if (cd == data && cv == vnet) {
        f = fobj;
        Py_INCREF(f);
    }
    for (int j = 0; j < s->ndest; j++) {
        if (!s->dest_ok[j]) {
            if (arr_add(&t->sess[S_DROPPED], c->session, 1) < 0)
                goto out_f;
            continue;
        }
        if (f == NULL && (f = make_frame(t, cd, cv, NULL)) == NULL)
            goto out;
        if (enqueue(tx, s->dest_obj[j], f) < 0 ||
            arr_add(&t->sess[S_MIRRORED], c->session, 1) < 0 ||
            arr_add(&t->sess[S_BYTES], c->session, PyBytes_GET_SIZE(cd)) < 0 ||
            arr_add(&t->port[P_MIRRORED_OUT], s->dest[j], 1) < 0)
            goto out_f;
    }
    rc = 0;
out_f:
    Py_XDECREF(f);
out:
    Py_DECREF(cd);
    Py_DECREF(cv);
    return rc;
}

/*
 * The segments of an offloaded frame copied into a natively sent ERSPAN session, each
 * written by seg_into() straight into its copy's place in the run's Pending arena (no
 * bytes object per segment), then cut to the mirror's length and encapsulated as
 * deliver() does; one timestamp for all of them (one frame, one moment).
 */
typedef struct {
    SegSink sink;
    Table *t;
    const MirrorOp *c;
    Session *s;
    long long ts_ns;
} ErspanSink;

static unsigned char *erspan_sink_room(SegSink *sink, Py_ssize_t len)
{
    ErspanSink *es = (ErspanSink *)sink;
    return erspan_room(es->t, es->c->session, es->s, len);
}

static int erspan_sink_done(SegSink *sink, Py_ssize_t len)
{
    ErspanSink *es = (ErspanSink *)sink;
    const MirrorOp *c = es->c;
    int cut = 0;
    if (c->truncate && len > c->truncate) {
        len = c->truncate;
        cut = 1;
        if (arr_add(&es->t->sess[S_TRUNCATED], c->session, 1) < 0)
            return -1;
    }
    return erspan_put(es->t, c, es->s, len, cut, es->ts_ns);
}

/*
 * MirrorOut.route + emit for a local or RSPAN session: offer the frame (data,
 * vnet: as seen at the copy's point; fobj: its Frame, delivered as is when
 * the copy is unchanged).
 */
static int do_mirror(Table *t, const MirrorOp *c, PyObject *fobj, PyObject *data, PyObject *vnet,
                     PyObject *tx)
{
    if (c->session < 0 || c->session >= t->nsessions || !t->sessions[c->session].present)
        return 0; /* no such session: nothing */
    Session *s = &t->sessions[c->session];
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (c->nlengths) {
        int in = 0;
        for (int i = 0; i < c->nlengths; i++)
            if (c->lo[i] <= n && n <= c->hi[i]) {
                in = 1;
                break;
            }
        if (!in)
            return 0; /* the session filter does not pass a frame of this length */
    }
    s->seen++;
    if (c->sample > 1 && s->seen % c->sample) {
        return arr_add(&t->sess[S_SAMPLED_OUT], c->session, 1);
    }
    int rc = -1;
    PyObject *cd = data, *cv = vnet; /* the copy */
    Py_INCREF(cd);
    Py_INCREF(cv);
    if (c->vlan_op != VLAN_KEEP) {
        PyObject *nd = vlan_apply(c->vlan_op, c->vid, (const unsigned char *)PyBytes_AS_STRING(cd),
                                  PyBytes_GET_SIZE(cd));
        if (!nd)
            goto out;
        PyObject *nv = c->vlan_op == VLAN_SET ? (Py_INCREF(cv), cv)
                                              : vnet_shift(cv, c->vlan_op == VLAN_POP ? -4 : 4);
        if (!nv) {
            Py_DECREF(nd);
            goto out;
        }
        Py_SETREF(cd, nd);
        Py_SETREF(cv, nv);
    }
    {
        const unsigned char *v = (const unsigned char *)PyBytes_AS_STRING(cv);
        Py_ssize_t vn = PyBytes_GET_SIZE(cv);
        if (!vnet_plain(v, vn) && ((c->truncate && PyBytes_GET_SIZE(cd) > c->truncate) ||
                                   (s->kind == KIND_ERSPAN && s->segment))) {
            /* an offloaded frame cannot be cut or encapsulated as it is: make the wire
             * frames first (software GSO/checksum); one that cannot be made goes whole */
            if (s->kind == KIND_ERSPAN) {
                /* each segment written straight into its copy's place (ErspanSink) */
                ErspanSink es = {{erspan_sink_room, erspan_sink_done}, t, c, s,
                                 s->enc.type == ENC_ERSPAN3 ? wall_ns() : 0};
                int r = seg_into(&es.sink, (const unsigned char *)PyBytes_AS_STRING(cd),
                                 PyBytes_GET_SIZE(cd), v, vn);
                rc = r < 0 ? -1 : r == 0 ? 0
                                 : deliver(t, c, s, fobj, data, vnet, cd, t->empty, tx);
                goto out;
            }
            PyObject *pieces = seg_finalize((const unsigned char *)PyBytes_AS_STRING(cd),
                                            PyBytes_GET_SIZE(cd), v, vn);
            if (!pieces) {
                if (PyErr_Occurred())
                    goto out;
                pieces = Py_BuildValue("[O]", cd);
                if (!pieces)
                    goto out;
            }
            rc = 0;
            for (Py_ssize_t k = 0; rc == 0 && k < PyList_GET_SIZE(pieces); k++)
                rc = deliver(t, c, s, fobj, data, vnet, PyList_GET_ITEM(pieces, k), t->empty,
                             tx);
            Py_DECREF(pieces);
            goto out;
        }
    }
    rc = deliver(t, c, s, fobj, data, vnet, cd, cv, tx);
out:
    Py_DECREF(cd);
    Py_DECREF(cv);
    return rc;
}

/* replay.replay for one frame whose program frame_ok() accepted */
/*
 * Count one received frame's fate (docs/accounting.md): forwarded when an output took it,
 * else dropped under its first drop, else consumed.  Folded into the port's counters with
 * the batch's other counters (NativeTable.fold).
 */
static int count_fate(Table *t, long in_port, int sent, Py_ssize_t first)
{
    if (sent)
        return arr_add(&t->port[P_FORWARDED], in_port, 1);
    if (first < 0)
        return arr_add(&t->port[P_CONSUMED], in_port, 1);
    if (t->rx_pending && t->fate_port != in_port) {
        PyErr_SetString(PyExc_RuntimeError,
                        "native replay: drops of two receiving ports in one batch");
        return -1;
    }
    t->fate_port = in_port;
    t->rx_pending++;
    return arr_add(&t->rx_drops, first, 1);
}

static int replay(Table *t, Entry *e, PyObject *fobj, PyObject *data, PyObject *vnet,
                  long in_port, PyObject *tx, PyObject *now)
{
    Program *p = e->prog;
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    int sent = 0;          /* the frame's fate, as replay.replay computes it: forwarded, */
    Py_ssize_t first = -1; /* else its first drop, else consumed */
    for (int i = 0; i < p->nops; i++) {
        const Op *o = &p->ops[i];
        switch (o->op) {
        case OP_OUTPUT: {
            if (o->mtu && n - 14 > o->mtu) {
                const unsigned char *v = (const unsigned char *)PyBytes_AS_STRING(vnet);
                if (too_big(d, n, v, PyBytes_GET_SIZE(vnet), o->mtu)) {
                    if (arr_add(&t->drops, o->mtu_drop, 1) < 0)
                        return -1;
                    if (first < 0)
                        first = o->mtu_drop;
                    continue;
                }
            }
            PyObject *of = fobj, *od = data, *ov = vnet;
            Py_INCREF(of);
            Py_INCREF(od);
            Py_INCREF(ov);
            if (o->vlan_op != VLAN_KEEP) {
                Py_SETREF(od, vlan_apply(o->vlan_op, o->vid, d, n));
                if (od)
                    Py_SETREF(ov, o->vlan_op == VLAN_SET
                                      ? (Py_INCREF(vnet), vnet)
                                      : vnet_shift(vnet, o->vlan_op == VLAN_POP ? -4 : 4));
                Py_SETREF(of, od && ov ? make_frame_like(t, od, ov, fobj) : NULL);
            }
            int rc = of ? enqueue(tx, p->ports[i], of) : -1;
            sent |= rc == 0;
            for (int j = 0; rc == 0 && j < o->nmirrors; j++)
                rc = do_mirror(t, &p->mirrors[o->first_mirror + j], of, od, ov, tx);
            Py_XDECREF(of);
            Py_XDECREF(od);
            Py_XDECREF(ov);
            if (rc < 0)
                return -1;
            break;
        }
        case OP_MIRROR:
            if (do_mirror(t, &p->mirrors[o->first_mirror], fobj, data, vnet, tx) < 0)
                return -1;
            break;
        case OP_REFRESH:
            if (slot_set(&t->c_last_seen, e->ref, t->s_last_seen, now) < 0)
                return -1;
            break;
        case OP_DROP:
            if (arr_add(&t->drops, o->drop, 1) < 0)
                return -1;
            if (first < 0)
                first = o->drop;
            break;
        }
    }
    if (p->flood && arr_add(&t->port[P_FLOODED], in_port, 1) < 0)
        return -1;
    return count_fate(t, in_port, sent, first);
}

/*
 * Send every natively encapsulated copy of the run, per session in order, with
 * sendmmsg(2); a refused one is counted (its errno kept for the sender's
 * counters), one refused with EMSGSIZE is kept for the Python retry (path MTU).
 */
static int flush_session(Table *t, Py_ssize_t si);

static int flush_remote(Table *t)
{
    int rc = 0;
    if (t->pending.n) {
        for (Py_ssize_t si = 0; rc == 0 && si < t->nsessions; si++) {
            Session *s = &t->sessions[si];
            if (s->present && s->kind == KIND_ERSPAN)
                rc = flush_session(t, si);
        }
    }
    pending_reset(&t->pending);
    return rc;
}

/* flush_remote for one session: its pending copies, in order, SEND_BATCH per sendmmsg */
static int flush_session(Table *t, Py_ssize_t si)
{
    Session *s = &t->sessions[si];
    Pending *p = &t->pending;
    Py_ssize_t i = 0;
    size_t pre = l2tx_prefix(&s->enc.l2); /* the Ethernet+IPv4 header before the payload */
    int fd = s->enc.l2.fd >= 0 ? s->enc.l2.fd : s->enc.fd;
    while (i < p->n) {
        struct mmsghdr msgs[SEND_BATCH];
        struct iovec iov[SEND_BATCH];
        Py_ssize_t which[SEND_BATCH]; /* the item of each message */
        int k = 0;
        for (; k < SEND_BATCH && i < p->n; i++) {
            const PendItem *it = &p->items[i];
            if (it->session != si)
                continue;
            iov[k].iov_base = p->buf + it->off;
            iov[k].iov_len = it->len;
            memset(&msgs[k], 0, sizeof(msgs[k]));
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
            which[k] = i;
            k++;
        }
        int done = 0;
        while (done < k) {
            int r;
            Py_BEGIN_ALLOW_THREADS
            r = sendmmsg(fd, msgs + done, (unsigned)(k - done), MSG_DONTWAIT);
            Py_END_ALLOW_THREADS
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) { /* the message at done failed */
                int code = r < 0 ? errno : EAGAIN;
                const PendItem *it = &p->items[which[done]];
                if (code == EMSGSIZE) { /* (payload, len) for the Python retry */
                    PyObject *pl = Py_BuildValue("(y#n)",
                                                 (const char *)(p->buf + it->off + pre),
                                                 (Py_ssize_t)(it->len - pre), it->flen);
                    if (!pl || PyList_Append(s->resend, pl) < 0) {
                        Py_XDECREF(pl);
                        return -1;
                    }
                    Py_DECREF(pl);
                } else {
                    PyObject *c = PyLong_FromLong(code);
                    if (!c || PyList_Append(s->errors, c) < 0) {
                        Py_XDECREF(c);
                        return -1;
                    }
                    Py_DECREF(c);
                    if (arr_add(&t->sess[S_DROPPED], si, 1) < 0)
                        return -1;
                }
                done++;
                continue;
            }
            int64_t flens = 0;
            for (int j = done; j < done + r; j++) {
                s->sent++;
                s->sent_bytes += (int64_t)msgs[j].msg_len - (int64_t)pre;
                flens += p->items[which[j]].flen;
            }
            if (arr_add(&t->sess[S_BYTES], si, flens) < 0 ||
                arr_add(&t->sess[S_MIRRORED], si, r) < 0)
                return -1;
            done += r;
        }
    }
    return 0;
}

/*
 * Whether the frame's virtio-net header fits it (vnetcheck.refusal finds nothing): a
 * frame whose header does not goes to the Python replay, which drops it with the reason.
 */
static int vnet_fits(const unsigned char *d, Py_ssize_t n, PyObject *vnet)
{
    return seg_vnet_check(d, n, (const unsigned char *)PyBytes_AS_STRING(vnet),
                          PyBytes_GET_SIZE(vnet)) == 0;
}

/* whether this side would handle the frame now (no effect) */
static int can_handle(Table *t, PyObject *fobj, long in_port, PyObject *now)
{
    unsigned char key[KEY_MAX];
    PyObject *data = slot_get(&t->c_data, fobj, t->s_data);
    if (!data)
        return -1;
    PyObject *vnet = slot_get(&t->c_vnet, fobj, t->s_vnet);
    if (!vnet) {
        Py_DECREF(data);
        return -1;
    }
    int ok = 0;
    if (PyBytes_CheckExact(data) && PyBytes_CheckExact(vnet)) {
        const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
        int kl = native_key(d, PyBytes_GET_SIZE(data), in_port, key);
        Entry *e = kl ? lookup(t, key, kl) : NULL;
        ok = e && frame_ok(t, e, PyBytes_GET_SIZE(data),
                           (const unsigned char *)PyBytes_AS_STRING(vnet), PyBytes_GET_SIZE(vnet))
             && vnet_fits(d, PyBytes_GET_SIZE(data), vnet);
        if (ok && e->prog->nchecks) {
            CtStep st[CT_MAX_CHECKS];
            ok = ct_prepare(e->prog->checks, e->prog->nchecks, e->ckey, d,
                            PyBytes_GET_SIZE(data), now, st);
            if (ok > 0)
                ct_release(st, e->prog->nchecks);
        }
    }
    Py_DECREF(data);
    Py_DECREF(vnet);
    return ok;
}

/*
 * Table.run(frames, start, in_port, tx, now) -> (i, j): replay frames[start:] of
 * cached flows; stop at the first frame this side cannot handle alone (i), and
 * say how far the run of such frames goes (j: frames[i:j] are for the Python
 * replay; the Python replay of a frame this side could have taken is the same).
 * (len(frames), len(frames)) when it handled them all.
 */
static PyObject *Table_run(Table *self, PyObject *args)
{
    PyObject *frames, *tx, *now;
    Py_ssize_t start;
    long in_port;
    if (!PyArg_ParseTuple(args, "O!nlO!O", &PyList_Type, &frames, &start, &in_port,
                          &PyDict_Type, &tx, &now))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(frames);
    unsigned char key[KEY_MAX];
    Py_ssize_t i;
    for (i = start < 0 ? 0 : start; i < n; i++) {
        PyObject *fobj = PyList_GET_ITEM(frames, i);
        PyObject *data = slot_get(&self->c_data, fobj, self->s_data);
        if (!data)
            return NULL;
        PyObject *vnet = slot_get(&self->c_vnet, fobj, self->s_vnet);
        if (!vnet) {
            Py_DECREF(data);
            return NULL;
        }
        int handled = 0, err = 0;
        if (PyBytes_CheckExact(data) && PyBytes_CheckExact(vnet)) {
            const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
            Py_ssize_t dn = PyBytes_GET_SIZE(data);
            int kl = native_key(d, dn, in_port, key);
            Entry *e = kl ? lookup(self, key, kl) : NULL;
            int ct = 1; /* the firewall checks: every one an established connection to refresh */
            CtStep st[CT_MAX_CHECKS];
            if (e && frame_ok(self, e, dn, (const unsigned char *)PyBytes_AS_STRING(vnet),
                              PyBytes_GET_SIZE(vnet)) && vnet_fits(d, dn, vnet) &&
                (!e->prog->nchecks ||
                 (ct = ct_prepare(e->prog->checks, e->prog->nchecks, e->ckey, d, dn, now,
                                  st)) > 0)) {
                if (e->prog->nchecks && ct_commit(st, e->prog->nchecks, now, dn) < 0) {
                    Py_DECREF(data);
                    Py_DECREF(vnet);
                    return NULL;
                }
                Py_INCREF(e->prog); /* the entry may not outlive a callback */
                Entry copy = *e;
                err = replay(self, &copy, fobj, data, vnet, in_port, tx, now) < 0;
                Py_DECREF(copy.prog);
                if (!err) {
                    self->hits++;
                    err = arr_add(&self->port[P_RX_BYTES], in_port, dn) < 0;
                }
                handled = 1;
            }
            err = err || ct < 0;
        }
        Py_DECREF(data);
        Py_DECREF(vnet);
        if (err)
            return NULL;
        if (!handled)
            break;
        /* send the copies while their bytes are still in the cache (a GSO frame's ~45) */
        if (self->pending.len >= PENDING_FLUSH && flush_remote(self) < 0)
            return NULL;
    }
    if (flush_remote(self) < 0)
        return NULL;
    Py_ssize_t j = i < n ? i + 1 : n;
    while (j < n) {
        int ok = can_handle(self, PyList_GET_ITEM(frames, j), in_port, now);
        if (ok < 0)
            return NULL;
        if (ok)
            break;
        j++;
    }
    return Py_BuildValue("(nn)", i, j);
}

/* module-level finalize(data, vnet) -> list of bytes | None (None: offload.finalize raises) */
static PyObject *mod_finalize(PyObject *mod, PyObject *args)
{
    const char *d, *v;
    Py_ssize_t n, vn;
    if (!PyArg_ParseTuple(args, "y#y#", &d, &n, &v, &vn))
        return NULL;
    PyObject *r = seg_finalize((const unsigned char *)d, n, (const unsigned char *)v, vn);
    if (!r && !PyErr_Occurred())
        Py_RETURN_NONE;
    return r;
}

/* module-level vnet_check(data, vnet) -> 0 | 1 (vnet-header) | 2 (gso-segments) (tests) */
static PyObject *mod_vnet_check(PyObject *mod, PyObject *args)
{
    const char *d, *v;
    Py_ssize_t n, vn;
    if (!PyArg_ParseTuple(args, "y#y#", &d, &n, &v, &vn))
        return NULL;
    return PyLong_FromLong(
        seg_vnet_check((const unsigned char *)d, n, (const unsigned char *)v, vn));
}

/* module-level key(data, in_port) -> bytes | None: the native key (tests, install) */
static PyObject *mod_key(PyObject *mod, PyObject *args)
{
    const char *d;
    Py_ssize_t n;
    long port;
    if (!PyArg_ParseTuple(args, "y#l", &d, &n, &port))
        return NULL;
    unsigned char key[KEY_MAX];
    int kl = native_key((const unsigned char *)d, n, port, key);
    if (!kl)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)key, kl);
}

/* module-level tcp_segment(data, l3, l4, v4) -> (flags, seq, ack, win, payload) | None
 * (tcp.parse_segment without the SYN window scale; tests) */
static PyObject *mod_tcp_segment(PyObject *mod, PyObject *args)
{
    const char *d;
    Py_ssize_t n, l3, l4;
    int v4;
    if (!PyArg_ParseTuple(args, "y#nnp", &d, &n, &l3, &l4, &v4))
        return NULL;
    struct ts_seg seg;
    if (!ts_parse((const unsigned char *)d, n, l3, l4, v4, &seg))
        Py_RETURN_NONE;
    return Py_BuildValue("(IkkIk)", seg.flags, (unsigned long)seg.seq, (unsigned long)seg.ack,
                         seg.win, (unsigned long)seg.payload);
}

/* module-level tcp_step(sender, receiver, segment) -> (sender, receiver) | None: the
 * established step (_tcpstep.h) on (end, maxend, maxwin, scale, maxack) tuples; None = hand
 * back */
static PyObject *mod_tcp_step(PyObject *mod, PyObject *args)
{
    unsigned long se, sm, re, rm, seq, ack, pl;
    unsigned long long sw, rw;
    long long sa, ra;
    unsigned ss, rs, flags, win;
    if (!PyArg_ParseTuple(args, "(kkKIL)(kkKIL)(IkkIk)", &se, &sm, &sw, &ss, &sa, &re, &rm, &rw,
                          &rs, &ra, &flags, &seq, &ack, &win, &pl))
        return NULL;
    if (ss > 14 || rs > 14 || se > 0xFFFFFFFFul || sm > 0xFFFFFFFFul || re > 0xFFFFFFFFul ||
        rm > 0xFFFFFFFFul || seq > 0xFFFFFFFFul || ack > 0xFFFFFFFFul || win > 0xFFFF ||
        pl > 0xFFFFFFFFul || sa < -1 || sa > 0xFFFFFFFFll || ra < -1 || ra > 0xFFFFFFFFll) {
        PyErr_SetString(PyExc_ValueError, "tcp_step: field out of range");
        return NULL;
    }
    struct ts_peer s = {(uint32_t)se, (uint32_t)sm, sw, ss, sa};
    struct ts_peer r = {(uint32_t)re, (uint32_t)rm, rw, rs, ra};
    struct ts_seg g = {flags, (uint32_t)seq, (uint32_t)ack, win, (uint32_t)pl};
    if (!ts_est_step(&s, &r, &g))
        Py_RETURN_NONE;
    return Py_BuildValue("((kkKIL)(kkKIL))", (unsigned long)s.end, (unsigned long)s.maxend,
                         (unsigned long long)s.maxwin, s.scale, (long long)s.maxack,
                         (unsigned long)r.end, (unsigned long)r.maxend,
                         (unsigned long long)r.maxwin, r.scale, (long long)r.maxack);
}

static PyMethodDef Table_methods[] = {
    {"put", (PyCFunction)Table_put, METH_VARARGS, "put(key, program, ref): install an entry"},
    {"forget", (PyCFunction)Table_forget, METH_VARARGS, "forget(key) -> bool"},
    {"clear", (PyCFunction)Table_clear, METH_NOARGS, "forget every entry"},
    {"sessions", (PyCFunction)Table_sessions, METH_O, "push the mirror sessions' state"},
    {"seen", (PyCFunction)Table_seen, METH_NOARGS, "the sessions' sampling counters"},
    {"take", (PyCFunction)Table_take, METH_NOARGS, "counter deltas since the last take"},
    {"run", (PyCFunction)Table_run, METH_VARARGS, "replay cached flows' frames"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Table_as_sequence = {
    .sq_length = (lenfunc)Table_len,
};

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vspan.datapath._native.Table",
    .tp_basicsize = sizeof(Table),
    .tp_dealloc = (destructor)Table_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The native flow table and replay loop.",
    .tp_new = Table_new,
    .tp_methods = Table_methods,
    .tp_as_sequence = &Table_as_sequence,
};

#include "_wake.h" /* Waker: the engine's wake path (wait, drain, replay, send) */

static PyMethodDef mod_methods[] = {
    {"key", mod_key, METH_VARARGS, "key(data, in_port) -> the native flow key or None"},
    {"finalize", mod_finalize, METH_VARARGS,
     "finalize(data, vnet) -> the wire frames (software GSO/checksum) or None"},
    {"vnet_check", mod_vnet_check, METH_VARARGS,
     "vnet_check(data, vnet) -> 0 fits, 1 bad header, 2 too many GSO segments"},
    {"tcp_segment", mod_tcp_segment, METH_VARARGS,
     "tcp_segment(data, l3, l4, v4) -> (flags, seq, ack, win, payload) or None"},
    {"tcp_step", mod_tcp_step, METH_VARARGS,
     "tcp_step(sender, receiver, segment) -> (sender, receiver) or None (hand back)"},
    {"conn_key", mod_conn_key, METH_VARARGS,
     "conn_key(data, dir_in) -> the connection's native key (conntrack.native_key) or None"},
    {"erspan_payload", mod_erspan_payload, METH_VARARGS,
     "erspan_payload(params, frame, egress, truncated, vlan, ts_ns) -> (payload, seq, cut)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, "vspan.datapath._native",
    "Native replay of cached decisions (docs/datapath.md).", -1, mod_methods,
};

PyMODINIT_FUNC PyInit__native(void)
{
    if (PyType_Ready(&ProgramType) < 0 || PyType_Ready(&TableType) < 0 ||
        PyType_Ready(&WakerType) < 0 || ct_init() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m)
        return NULL;
    Py_INCREF(&ProgramType);
    Py_INCREF(&TableType);
    if (PyModule_AddObject(m, "Program", (PyObject *)&ProgramType) < 0 ||
        PyModule_AddObject(m, "Table", (PyObject *)&TableType) < 0 ||
        PyModule_AddObjectRef(m, "Waker", (PyObject *)&WakerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
