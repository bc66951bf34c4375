/*
 * The established-connection TCP step of the port firewall in C: the part of
 * vspan.policy.tcp.TcpTrack.update that an in-window ACK / PSH+ACK segment of an
 * ESTABLISHED connection (no FIN seen on either side) takes, with the same
 * arithmetic (parse_segment, _window's four checks, _advance), so that a native
 * replay can admit such segments without the Python tracker and leave the
 * window edges exactly where Python would (tests/unit/test_native_tcpstep.py
 * compares them on random states and segments).
 *
 * It never decides anything Python would decide differently: a segment with any
 * flag other than ACK/PSH, a side not yet seen (maxwin 0), an out-of-window
 * segment (strict or not), a malformed header: tcp_est_step returns 0 and has
 * changed nothing; the caller hands the frame to Python.
 *
 * The caller is responsible for the connection-level conditions: state
 * ESTABLISHED, no FIN on either side, not expired (docs/datapath.md, "Stateful
 * step").
 */
#ifndef VSPAN_TCPSTEP_H
#define VSPAN_TCPSTEP_H

#include <Python.h>
#include <stdint.h>

#define TS_FIN 0x01
#define TS_SYN 0x02
#define TS_RST 0x04
#define TS_PSH 0x08
#define TS_ACK 0x10
#define TS_MAXACKWIN 66000u   /* tcp.MAXACKWINCONST */
#define TS_MAXWIN_LIMIT (1ull << 40) /* beyond this Python's unbounded int is left to Python */

/* one side's window tracking (tcp.TcpPeer's end, maxend, maxwin, scale, maxack) */
struct ts_peer {
    uint32_t end;
    uint32_t maxend;
    uint64_t maxwin;
    unsigned scale;
    int64_t maxack; /* highest in-window ack this side sent; -1 = none yet */
};

/* tcp.TcpSegment without the SYN-only window scale option */
struct ts_seg {
    unsigned flags;
    uint32_t seq;
    uint32_t ack;
    unsigned win;
    uint32_t payload;
};

/* tcp.seq_diff */
static inline int64_t ts_diff(uint32_t a, uint32_t b) { return (int64_t)(int32_t)(a - b); }

static inline uint32_t ts_rd32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/*
 * tcp.parse_segment for a frame whose IP header starts at l3 and TCP header at l4
 * (v4: IPv4, else IPv6); 0 when malformed (Python's None).
 */
static int ts_parse(const unsigned char *d, Py_ssize_t n, Py_ssize_t l3, Py_ssize_t l4, int v4,
                    struct ts_seg *seg)
{
    if (!l4 || n < l4 + 20 || l3 < 0 || l3 + 6 > n)
        return 0;
    Py_ssize_t hl = (Py_ssize_t)(d[l4 + 12] >> 4) * 4;
    if (hl < 20 || n < l4 + hl)
        return 0;
    Py_ssize_t ip_end;
    if (v4) {
        Py_ssize_t total = ((Py_ssize_t)d[l3 + 2] << 8) | d[l3 + 3];
        ip_end = total ? l3 + total : n;
    } else {
        Py_ssize_t plen = ((Py_ssize_t)d[l3 + 4] << 8) | d[l3 + 5];
        ip_end = plen ? l3 + 40 + plen : n;
    }
    if (ip_end > n)
        ip_end = n;
    seg->flags = d[l4 + 13];
    seg->seq = ts_rd32(d + l4 + 4);
    seg->ack = ts_rd32(d + l4 + 8);
    seg->win = ((unsigned)d[l4 + 14] << 8) | d[l4 + 15];
    Py_ssize_t pl = ip_end - (l4 + hl);
    seg->payload = pl > 0 ? (uint32_t)pl : 0;
    return 1;
}

/*
 * TcpTrack.update for segment seg sent by s to r on an ESTABLISHED connection:
 * 1 = in window, s and r advanced exactly as _advance does; 0 = hand back
 * (nothing changed).
 */
static int ts_est_step(struct ts_peer *s, struct ts_peer *r, const struct ts_seg *seg)
{
    unsigned f = seg->flags;
    if (!(f & TS_ACK) || (f & ~(unsigned)(TS_ACK | TS_PSH)))
        return 0;
    if (!s->maxwin || !r->maxwin || s->maxwin >= TS_MAXWIN_LIMIT || r->maxwin >= TS_MAXWIN_LIMIT)
        return 0;
    uint32_t end = seg->seq + seg->payload; /* no SYN, no FIN */
    uint32_t ack = seg->ack;
    /* _window: I-IV */
    if (ts_diff(seg->seq, s->maxend) > 0)
        return 0;
    if (ts_diff(end, (uint32_t)(s->end - r->maxwin)) < 0)
        return 0;
    if (ts_diff(ack, r->end) > 0)
        return 0;
    uint64_t maxack = s->maxwin > TS_MAXACKWIN ? s->maxwin : TS_MAXACKWIN;
    if (ts_diff(ack, (uint32_t)(r->end - maxack)) < 0)
        return 0;
    /* _advance */
    uint64_t win = (uint64_t)seg->win << s->scale;
    if (s->maxwin < win)
        s->maxwin = win;
    if (ts_diff(end, s->end) > 0)
        s->end = end;
    int64_t grow = ts_diff(end, s->maxend);
    if (grow > 0)
        r->maxwin += (uint64_t)grow;
    if (ts_diff((uint32_t)(ack + win), r->maxend) >= 0)
        r->maxend = (uint32_t)(ack + win + (win == 0 ? 1 : 0));
    /* update: an in-window ack moves the sender's highest ack (the exact-RST check) */
    if (s->maxack < 0 || ts_diff(ack, (uint32_t)s->maxack) > 0)
        s->maxack = ack;
    return 1;
}

#endif
