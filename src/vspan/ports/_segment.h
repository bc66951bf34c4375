/*
 * Software completion of virtio-net offloads in C: vspan.ports.offload.finalize,
 * byte for byte (tests/unit/test_native_segment.py compares them).
 *
 *  - NEEDS_CSUM without GSO: the internet checksum over data[csum_start:] stored
 *    at csum_start + csum_offset (UDP: 0 is sent as 0xFFFF);
 *  - GSO_TCPV4 / GSO_TCPV6 (+ECN): gso_size segments, each with its IP length,
 *    IPv4 id + index and header checksum, TCP sequence number, FIN/PSH on the
 *    last only, CWR on the first only, a full TCP checksum;
 *  - GSO_UDP_L4: each segment a whole UDP datagram;
 *  - never cut finer than vnet.segments_refusal allows (seg_count_bad).
 *
 * seg_vnet_check() is vnetcheck.refusal: whether a received frame's virtio-net
 * header fits the frame (tests/unit/test_vnet_check.py compares them).
 *
 * seg_finalize() returns a new list of bytes, or NULL: with a Python error set
 * (memory), or with none set when the frame cannot be finalized (the Python
 * code raises OffloadError there; callers hand such frames to Python).
 * seg_into() gives the same segments to a SegSink instead (a caller's buffer).
 * Every offset is checked against the frame before it is read.
 */
#ifndef VSPAN_SEGMENT_H
#define VSPAN_SEGMENT_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

#define SEG_F_NEEDS_CSUM 1
#define SEG_GSO_ECN 0x80
#define SEG_GSO_NONE 0
#define SEG_GSO_TCPV4 1
#define SEG_GSO_UDP 3
#define SEG_GSO_TCPV6 4
#define SEG_GSO_UDP_L4 5
#define SEG_MIN_TCP_GSO_SIZE 48  /* vnet.MIN_TCP_GSO_SIZE */
#define SEG_MAX_UDP_SEGMENTS 128 /* vnet.MAX_UDP_SEGMENTS */
#define SEG_BAD_HEADER 1         /* vnetcheck.BAD_HEADER */
#define SEG_BAD_SEGMENTS 2       /* vnetcheck.BAD_SEGMENTS */

static inline unsigned seg_rd16(const unsigned char *p) { return ((unsigned)p[0] << 8) | p[1]; }
static inline void seg_wr16(unsigned char *p, unsigned v)
{
    p[0] = (v >> 8) & 0xFF;
    p[1] = v & 0xFF;
}

/*
 * The running sum of big-endian 16-bit words; an odd tail is padded with zero.  Only the
 * last piece of a checksummed range may have an odd length.  The bulk is summed as
 * native 32-bit words into a 64-bit accumulator (2^32 words before it could overflow),
 * folded to 16 bits and byte-swapped into big-endian order: the one's complement sum
 * does not depend on the byte order it is taken in (RFC 1071 2(B)), and the folded
 * part is 0 only when those bytes are all zero, so seg_fold's result is unchanged.
 */
static uint64_t seg_sum(uint64_t acc, const unsigned char *p, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    if (n >= 16) {
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (; i + 16 <= n; i += 16) {
            uint32_t w0, w1, w2, w3;
            memcpy(&w0, p + i, 4);
            memcpy(&w1, p + i + 4, 4);
            memcpy(&w2, p + i + 8, 4);
            memcpy(&w3, p + i + 12, 4);
            s0 += w0;
            s1 += w1;
            s2 += w2;
            s3 += w3;
        }
        uint64_t s = s0 + s1 + s2 + s3; /* < 2^36 for frames < 1 GiB */
        while (s >> 16)
            s = (s & 0xFFFF) + (s >> 16);
        /* each 32-bit word adds its two 16-bit words in native order: swap them back */
        uint16_t h = (uint16_t)s, be;
        const unsigned char *hb = (const unsigned char *)&h;
        be = (uint16_t)(((unsigned)hb[0] << 8) | hb[1]);
        acc += be;
    }
    for (; i + 1 < n; i += 2)
        acc += ((unsigned)p[i] << 8) | p[i + 1];
    if (n & 1)
        acc += (unsigned)p[n - 1] << 8;
    return acc;
}

/* checksum.ones_sum's result (0 only for an all-zero input) */
static unsigned seg_fold(uint64_t acc)
{
    if (acc == 0)
        return 0;
    while (acc >> 16)
        acc = (acc & 0xFFFF) + (acc >> 16);
    return (unsigned)acc;
}

typedef struct {
    int ipv6;
    Py_ssize_t l3, l4;
    unsigned ip_id;
    int proto;
} SegIP;

/* offload._l3 + _IPInfo: 0 on success, -1 when the frame cannot be segmented */
static int seg_ip(const unsigned char *d, Py_ssize_t n, int want_ipv6, int want_proto,
                  SegIP *ip)
{
    if (n < 14)
        return -1;
    unsigned et = seg_rd16(d + 12);
    Py_ssize_t off = 14;
    int tags = 0;
    while (et == 0x8100 || et == 0x88A8 || et == 0x9100) {
        tags++;
        if (tags > 8 || n < off + 4)
            return -1;
        et = seg_rd16(d + off + 2);
        off += 4;
    }
    Py_ssize_t l3 = off, l4;
    if (et == 0x0800 && want_ipv6 != 1) {
        if (n < l3 + 20 || d[l3] >> 4 != 4)
            return -1;
        Py_ssize_t ihl = (d[l3] & 0x0F) * 4;
        if (ihl < 20 || n < l3 + ihl)
            return -1;
        if (seg_rd16(d + l3 + 6) & 0x3FFF)
            return -1;
        ip->ipv6 = 0;
        ip->proto = d[l3 + 9];
        ip->ip_id = seg_rd16(d + l3 + 4);
        l4 = l3 + ihl;
    } else if (et == 0x86DD && want_ipv6 != 0) {
        if (n < l3 + 40 || d[l3] >> 4 != 6)
            return -1;
        ip->ipv6 = 1;
        ip->ip_id = 0;
        int nxt = d[l3 + 6];
        l4 = l3 + 40;
        for (int i = 0; i < 8; i++) {
            if (nxt == 0 || nxt == 43 || nxt == 60 || nxt == 51) {
                if (n < l4 + 2)
                    return -1;
                Py_ssize_t size = nxt == 51 ? (d[l4 + 1] + 2) * 4 : (d[l4 + 1] + 1) * 8;
                nxt = d[l4];
                l4 += size;
            } else if (nxt == 44) {
                return -1;
            } else {
                break;
            }
        }
        ip->proto = nxt;
    } else {
        return -1;
    }
    if (ip->proto != want_proto || l4 > n)
        return -1;
    ip->l3 = l3;
    ip->l4 = l4;
    return 0;
}

/* the pseudo-header sum for an L4 segment of len bytes */
static uint64_t seg_pseudo(const unsigned char *d, const SegIP *ip, Py_ssize_t len)
{
    uint64_t acc = 0;
    if (ip->ipv6) {
        acc = seg_sum(acc, d + ip->l3 + 8, 32);
        acc += (uint64_t)((len >> 16) & 0xFFFF) + (uint64_t)(len & 0xFFFF);
    } else {
        acc = seg_sum(acc, d + ip->l3 + 12, 8);
        acc += (uint64_t)len & 0xFFFF;
    }
    return acc + (unsigned)ip->proto;
}

/*
 * Where the segments go: room() gives len bytes to write the next one into (NULL with
 * a Python error set when it cannot), done() takes it once written (-1: error set).
 * seg_finalize() uses a sink making a list of bytes; a caller may write them straight
 * into its own buffer (the native replay's ERSPAN copies).
 */
typedef struct SegSink SegSink;
struct SegSink {
    unsigned char *(*room)(SegSink *sink, Py_ssize_t len);
    int (*done)(SegSink *sink, Py_ssize_t len);
};

/*
 * One segment: l2 + IP header(s) rewritten for (index, l4 len) + l4 header (hdr, hlen, its
 * checksum at csum_at filled here) + the payload chunk.  Given to out.
 */
static int seg_emit(SegSink *out, const unsigned char *d, const SegIP *ip, int index,
                    unsigned char *hdr, Py_ssize_t hlen, Py_ssize_t csum_at, int udp,
                    const unsigned char *chunk, Py_ssize_t clen)
{
    Py_ssize_t l4len = hlen + clen, iplen = ip->l4 - ip->l3;
    unsigned char *o = out->room(out, ip->l4 + l4len);
    if (!o)
        return -1;
    memcpy(o, d, (size_t)ip->l4); /* L2 and the network header(s) */
    unsigned char *h = o + ip->l3;
    if (ip->ipv6) {
        seg_wr16(h + 4, (unsigned)((iplen - 40 + l4len) & 0xFFFF));
    } else {
        seg_wr16(h + 2, (unsigned)((iplen + l4len) & 0xFFFF));
        seg_wr16(h + 4, (ip->ip_id + (unsigned)index) & 0xFFFF);
        Py_ssize_t ihl = (h[0] & 0x0F) * 4;
        h[10] = h[11] = 0;
        seg_wr16(h + 10, ~seg_fold(seg_sum(0, h, ihl)) & 0xFFFF);
    }
    hdr[csum_at] = hdr[csum_at + 1] = 0;
    uint64_t acc = seg_pseudo(d, ip, l4len);
    acc = seg_sum(acc, hdr, hlen);
    acc = seg_sum(acc, chunk, clen);
    unsigned v = ~seg_fold(acc) & 0xFFFF;
    if (udp && v == 0)
        v = 0xFFFF;
    seg_wr16(hdr + csum_at, v);
    memcpy(o + ip->l4, hdr, (size_t)hlen);
    memcpy(o + ip->l4 + hlen, chunk, (size_t)clen);
    return out->done(out, ip->l4 + l4len);
}

/* vnet.segments_refusal: nonzero when total bytes in gso_size pieces is too fine a cut */
static int seg_count_bad(Py_ssize_t total, Py_ssize_t gso_size, int udp)
{
    Py_ssize_t count = total ? (total + gso_size - 1) / gso_size : 1;
    if (udp)
        return count > SEG_MAX_UDP_SEGMENTS;
    return count > 1 && gso_size < SEG_MIN_TCP_GSO_SIZE;
}

/* the seg_* functions return 0 (every segment given to the sink), -1 with a Python error
 * set, or 1 when the frame cannot be finalized (nothing given to the sink then) */
static int seg_tcp(SegSink *out, const unsigned char *d, Py_ssize_t n, Py_ssize_t mss, int ipv6)
{
    SegIP ip;
    if (mss <= 0 || seg_ip(d, n, ipv6, 6, &ip) < 0 || n < ip.l4 + 20)
        return 1;
    Py_ssize_t thlen = (d[ip.l4 + 12] >> 4) * 4;
    if (thlen < 20 || n < ip.l4 + thlen)
        return 1;
    unsigned char th[60];
    memcpy(th, d + ip.l4, (size_t)thlen);
    uint32_t seq0 = ((uint32_t)th[4] << 24) | ((uint32_t)th[5] << 16) | ((uint32_t)th[6] << 8) |
                    th[7];
    unsigned flags0 = th[13];
    const unsigned char *pay = d + ip.l4 + thlen;
    Py_ssize_t total = n - ip.l4 - thlen;
    if (seg_count_bad(total, mss, 0))
        return 1;
    Py_ssize_t nseg = total ? (total + mss - 1) / mss : 1;
    for (Py_ssize_t i = 0; i < nseg; i++) {
        Py_ssize_t start = i * mss, clen = total - start < mss ? total - start : mss;
        if (clen < 0)
            clen = 0;
        uint32_t seq = seq0 + (uint32_t)start;
        th[4] = seq >> 24;
        th[5] = (seq >> 16) & 0xFF;
        th[6] = (seq >> 8) & 0xFF;
        th[7] = seq & 0xFF;
        unsigned fl = flags0;
        if (i != nseg - 1)
            fl &= ~0x09u; /* FIN, PSH only on the last segment */
        if (i)
            fl &= ~0x80u; /* CWR only on the first */
        th[13] = (unsigned char)fl;
        if (seg_emit(out, d, &ip, (int)i, th, thlen, 16, 0, pay + start, clen) < 0)
            return -1;
    }
    return 0;
}

static int seg_udp(SegSink *out, const unsigned char *d, Py_ssize_t n, Py_ssize_t mss)
{
    SegIP ip;
    if (mss <= 0 || seg_ip(d, n, -1, 17, &ip) < 0 || n < ip.l4 + 8)
        return 1;
    unsigned char uh[8];
    memcpy(uh, d + ip.l4, 8);
    const unsigned char *pay = d + ip.l4 + 8;
    Py_ssize_t total = n - ip.l4 - 8;
    if (seg_count_bad(total, mss, 1))
        return 1;
    Py_ssize_t nseg = total ? (total + mss - 1) / mss : 1;
    for (Py_ssize_t i = 0; i < nseg; i++) {
        Py_ssize_t start = i * mss, clen = total - start < mss ? total - start : mss;
        if (clen < 0)
            clen = 0;
        seg_wr16(uh + 4, (unsigned)((8 + clen) & 0xFFFF));
        if (seg_emit(out, d, &ip, (int)i, uh, 8, 6, 1, pay + start, clen) < 0)
            return -1;
    }
    return 0;
}

/* the frame as it is (no virtio-net header) */
static int seg_whole(SegSink *out, const unsigned char *d, Py_ssize_t n)
{
    unsigned char *o = out->room(out, n);
    if (!o)
        return -1;
    memcpy(o, d, (size_t)n);
    return out->done(out, n);
}

/* offload.finalize into a sink: 0, -1 (Python error set) or 1 (cannot be finalized) */
static int seg_into(SegSink *out, const unsigned char *d, Py_ssize_t n, const unsigned char *v,
                    Py_ssize_t vn)
{
    if (vn == 0)
        return seg_whole(out, d, n);
    if (vn != 10)
        return 1;
    unsigned flags = v[0], gso_type = v[1];
    Py_ssize_t gso_size = v[4] | (v[5] << 8), cs = v[6] | (v[7] << 8), co = v[8] | (v[9] << 8);
    unsigned kind = gso_type & ~(unsigned)SEG_GSO_ECN;
    if (kind == SEG_GSO_NONE) {
        if (flags & SEG_F_NEEDS_CSUM) {
            Py_ssize_t at = cs + co;
            if (cs >= n || at + 2 > n)
                return 1;
            unsigned val = ~seg_fold(seg_sum(0, d + cs, n - cs)) & 0xFFFF;
            if (val == 0 && co == 6)
                val = 0xFFFF;
            unsigned char *o = out->room(out, n);
            if (!o)
                return -1;
            memcpy(o, d, (size_t)n);
            seg_wr16(o + at, val);
            return out->done(out, n);
        }
        return seg_whole(out, d, n);
    }
    if (kind == SEG_GSO_TCPV4 || kind == SEG_GSO_TCPV6)
        return seg_tcp(out, d, n, gso_size, kind == SEG_GSO_TCPV6);
    if (kind == SEG_GSO_UDP_L4)
        return seg_udp(out, d, n, gso_size);
    return 1; /* UFO or unknown */
}

/* the sink seg_finalize() uses: each segment a new bytes object appended to a list */
typedef struct {
    SegSink sink;
    PyObject *list;
    PyObject *cur;
} SegList;

static unsigned char *seg_list_room(SegSink *sink, Py_ssize_t len)
{
    SegList *l = (SegList *)sink;
    l->cur = PyBytes_FromStringAndSize(NULL, len);
    return l->cur ? (unsigned char *)PyBytes_AS_STRING(l->cur) : NULL;
}

static int seg_list_done(SegSink *sink, Py_ssize_t len)
{
    SegList *l = (SegList *)sink;
    (void)len;
    int r = PyList_Append(l->list, l->cur);
    Py_CLEAR(l->cur);
    return r;
}

static PyObject *seg_finalize(const unsigned char *d, Py_ssize_t n, const unsigned char *v,
                              Py_ssize_t vn)
{
    SegList l = {{seg_list_room, seg_list_done}, PyList_New(0), NULL};
    if (!l.list)
        return NULL;
    int r = seg_into(&l.sink, d, n, v, vn);
    Py_XDECREF(l.cur); /* a room given but not done (an error) */
    if (r != 0) {
        Py_DECREF(l.list);
        return NULL;
    }
    return l.list;
}

/*
 * vnetcheck.refusal in C: 0 when the virtio-net header v (vn bytes) may go with the
 * frame d (n bytes), SEG_BAD_HEADER when its fields do not fit the frame,
 * SEG_BAD_SEGMENTS when the frame would be cut too finely.
 */
static inline int seg_vnet_check(const unsigned char *d, Py_ssize_t n, const unsigned char *v,
                                 Py_ssize_t vn)
{
    if (vn == 0)
        return 0;
    if (vn != 10)
        return SEG_BAD_HEADER;
    unsigned flags = v[0], gso_type = v[1];
    Py_ssize_t hdr_len = v[2] | (v[3] << 8), gso_size = v[4] | (v[5] << 8);
    Py_ssize_t cs = v[6] | (v[7] << 8), co = v[8] | (v[9] << 8);
    int csum = (flags & SEG_F_NEEDS_CSUM) != 0;
    if (hdr_len > n || (csum && (cs < 14 || cs + co + 2 > n)))
        return SEG_BAD_HEADER;
    if (gso_type == SEG_GSO_NONE)
        return 0;
    unsigned kind = gso_type & ~(unsigned)SEG_GSO_ECN;
    int udp, want_ipv6;
    Py_ssize_t at;
    if (kind == SEG_GSO_UDP_L4 && gso_type == kind) {
        udp = 1;
        want_ipv6 = -1;
        at = 6;
    } else if (kind == SEG_GSO_TCPV4 || kind == SEG_GSO_TCPV6) {
        udp = 0;
        want_ipv6 = kind == SEG_GSO_TCPV6;
        at = 16;
    } else {
        return SEG_BAD_HEADER;
    }
    SegIP ip;
    if (gso_size == 0 || gso_size == 0xFFFF || seg_ip(d, n, want_ipv6, udp ? 17 : 6, &ip) < 0)
        return SEG_BAD_HEADER;
    Py_ssize_t l4 = ip.l4, l4h = udp ? 8 : (n >= l4 + 20 ? (d[l4 + 12] >> 4) * 4 : 0);
    if (l4h < (udp ? 8 : 20) || n < l4 + l4h || (csum && (cs != l4 || co != at)) ||
        (udp && !csum))
        return SEG_BAD_HEADER;
    return seg_count_bad(n - l4 - l4h, gso_size, udp) ? SEG_BAD_SEGMENTS : 0;
}

#endif
