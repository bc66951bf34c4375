/*
 * The link-layer path of a natively sent remote mirror session (vspan.mirror.l2path):
 * its IPv4 GRE copies written as whole Ethernet frames, with a cached Ethernet + IPv4
 * header, on an AF_PACKET socket bound to the next hop's interface, instead of through
 * the raw IPPROTO_GRE socket's IP output (about 1 us a copy: bench/PROFILE.md).
 *
 * Per copy only the IPv4 total length, identification and header checksum change;
 * L2Header.frame in Python writes the same bytes (tests compare them).  Included by
 * _native.c (needs Python.h and stdint.h first).
 */
#ifndef VSPAN_ERSPAN_TX_H
#define VSPAN_ERSPAN_TX_H

#define L2TX_HLEN 34 /* Ethernet (14) + IPv4 (20) */

typedef struct {
    int fd;                          /* the AF_PACKET socket; -1: send by the raw socket */
    unsigned char hdr[L2TX_HLEN];    /* the cached header (length, id, checksum zero) */
    uint16_t ip_id;                  /* the IPv4 identification of the next copy */
} L2Tx;

/* l2tx_parse(None | (fd, header: 34 bytes, next ip id)) -> 0, or -1 with an exception */
static int l2tx_parse(PyObject *obj, L2Tx *l)
{
    l->fd = -1;
    l->ip_id = 0;
    if (obj == NULL || obj == Py_None)
        return 0;
    Py_buffer hdr;
    unsigned long id;
    int fd;
    if (!PyArg_ParseTuple(obj, "iy*k", &fd, &hdr, &id))
        return -1;
    int ok = hdr.len == L2TX_HLEN && fd >= 0;
    if (ok)
        memcpy(l->hdr, hdr.buf, L2TX_HLEN);
    PyBuffer_Release(&hdr);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "bad link-layer parameters");
        return -1;
    }
    l->fd = fd;
    l->ip_id = (uint16_t)id;
    return 0;
}

/* the RFC 1071 checksum of a 20-byte IPv4 header whose checksum field is zero */
static uint16_t l2tx_ip_csum(const unsigned char *h)
{
    uint32_t sum = 0;
    for (int i = 0; i < 20; i += 2)
        sum += ((uint32_t)h[i] << 8) | h[i + 1];
    while (sum >> 16)
        sum = (sum & 0xFFFF) + (sum >> 16);
    return (uint16_t)(~sum & 0xFFFF);
}

/* write the header of a copy carrying `ip_payload` bytes of GRE at out (34 bytes) */
static void l2tx_write(L2Tx *l, unsigned char *out, size_t ip_payload)
{
    memcpy(out, l->hdr, L2TX_HLEN);
    unsigned char *ip = out + 14;
    size_t total = 20 + ip_payload;
    ip[2] = (unsigned char)((total >> 8) & 0xFF);
    ip[3] = (unsigned char)(total & 0xFF);
    ip[4] = (unsigned char)(l->ip_id >> 8);
    ip[5] = (unsigned char)(l->ip_id & 0xFF);
    l->ip_id++;
    uint16_t c = l2tx_ip_csum(ip);
    ip[10] = (unsigned char)(c >> 8);
    ip[11] = (unsigned char)(c & 0xFF);
}

/* how many bytes a copy sent on `fd` carries before its GRE payload */
static size_t l2tx_prefix(const L2Tx *l) { return l->fd >= 0 ? L2TX_HLEN : 0; }

#endif
