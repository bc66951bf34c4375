"""Tiny traffic tools run inside test namespaces (``ip netns exec NS python netprobe.py``).

Stand-alone on purpose (standard library only, no vspan import):

* ``send IFACE HEX [HEX ...]`` — send raw Ethernet frames out of IFACE.
* ``sink ADDR PORT`` — accept one TCP connection, print ``<bytes> <sha256>``.
* ``source ADDR PORT NBYTES`` — connect, send NBYTES pseudo-random bytes, print
  ``<bytes> <sha256>``.
* ``listen IFACE MARKER_HEX SECONDS`` — print the hex of every frame seen on
  IFACE (either direction) that contains MARKER, with the VLAN tag the kernel
  stripped put back from PACKET_AUXDATA.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import sys
import time

SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6


def send(iface: str, frames: list[str]) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((iface, 0))
        for h in frames:
            s.send(bytes.fromhex(h))


def sink(addr: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((addr, port))
        srv.listen(1)
        print("listening", flush=True)
        srv.settimeout(30)
        conn, _ = srv.accept()
        conn.settimeout(30)
        h = hashlib.sha256()
        total = 0
        with conn:
            while True:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                total += len(chunk)
    print(total, h.hexdigest(), flush=True)


def source(addr: str, port: int, nbytes: int) -> None:
    h = hashlib.sha256()
    block = os.urandom(1 << 20)
    sent = 0
    with socket.create_connection((addr, port), timeout=30) as s:
        while sent < nbytes:
            chunk = block[: min(len(block), nbytes - sent)]
            # vary the data so a stuck or repeated segment changes the digest
            chunk = struct.pack(">Q", sent) + chunk[8:] if len(chunk) > 8 else chunk
            s.sendall(chunk)
            h.update(chunk)
            sent += len(chunk)
    print(sent, h.hexdigest(), flush=True)


def listen(iface: str, marker: bytes, seconds: float) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)) as s:
        s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        s.bind((iface, 3))
        s.settimeout(0.1)
        print("listening", flush=True)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(64))
            except TimeoutError:
                continue
            for level, kind, payload in anc:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(payload) >= 20:
                    status, _, _, _, _, tci, tpid = struct.unpack_from("=IIIHHHH", payload)
                    if status & TP_STATUS_VLAN_VALID:
                        if not status & TP_STATUS_VLAN_TPID_VALID or not tpid:
                            tpid = 0x8100
                        data = data[:12] + struct.pack(">HH", tpid, tci) + data[12:]
            if marker in data:
                print(data.hex(), flush=True)


def main(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    if cmd == "send":
        send(args[0], args[1:])
    elif cmd == "sink":
        sink(args[0], int(args[1]))
    elif cmd == "source":
        source(args[0], int(args[1]), int(args[2]))
    elif cmd == "listen":
        listen(args[0], bytes.fromhex(args[1]), float(args[2]))
    else:
        print(f"unknown command {cmd}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
