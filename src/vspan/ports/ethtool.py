"""The offload features of a network interface, read with the ethtool ioctl.

``ethtool -k IF`` shows the same list: the kernel names every feature bit
(``tx-tcp-segmentation``, ``tx-checksum-ip-generic``, ...) in the string set
``ETH_SS_FEATURES``; ``ETHTOOL_GFEATURES`` returns which bits are active. Bit
positions differ between kernel versions, so the names are always read first
(``ETHTOOL_GSSET_INFO`` + ``ETHTOOL_GSTRINGS``) and kept: they never change
while the kernel runs. Control path only (port open, once a second).
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct

from vspan.ports import constants as c
from vspan.ports.base import PortError

_IFREQ_PTR = struct.Struct("@16sP16x")  # struct ifreq with ifr_data (a pointer)
_SSET_INFO = struct.Struct("=IIQI")  # cmd, reserved, sset_mask, data[0]
_GSTRINGS = struct.Struct("=III")  # cmd, string_set, len
_GFEATURES = struct.Struct("=II")  # cmd, size
_BLOCK = struct.Struct("=IIII")  # available, requested, active, never_changed
_DRVINFO_SIZE = 196  # struct ethtool_drvinfo; the driver's name is 32 bytes after cmd


def _request(head: bytes, size: int) -> ctypes.Array[ctypes.c_char]:
    """A zeroed command buffer of ``size`` bytes that starts with ``head``."""
    buf = ctypes.create_string_buffer(max(size, len(head)))
    ctypes.memmove(buf, head, len(head))
    return buf


def _ethtool(ifname: str, buf: ctypes.Array[ctypes.c_char]) -> None:
    """Run one SIOCETHTOOL request whose command structure is ``buf``."""
    req = _IFREQ_PTR.pack(ifname.encode(), ctypes.addressof(buf))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), c.SIOCETHTOOL, req)


def driver(ifname: str) -> str:
    """The interface's driver (``ethtool -i``: ``veth``, ``tun``, ``virtio_net``...).

    Raises :class:`OSError` when the interface cannot be asked.
    """
    buf = _request(struct.pack("=I", c.ETHTOOL_GDRVINFO), _DRVINFO_SIZE)
    _ethtool(ifname, buf)
    return buf.raw[4:36].split(b"\0", 1)[0].decode("ascii", "replace")


def feature_names(ifname: str) -> tuple[str, ...]:
    """The kernel's names of the feature bits, in bit order (``ETH_SS_FEATURES``)."""
    info = _request(_SSET_INFO.pack(c.ETHTOOL_GSSET_INFO, 0, 1 << c.ETH_SS_FEATURES, 0), 0)
    _ethtool(ifname, info)
    _, _, mask, count = _SSET_INFO.unpack_from(info.raw)
    if not mask & (1 << c.ETH_SS_FEATURES) or count <= 0 or count > 4096:
        raise OSError(f"{ifname}: the kernel reports no feature names")
    size = _GSTRINGS.size + count * c.ETH_GSTRING_LEN
    strings = _request(_GSTRINGS.pack(c.ETHTOOL_GSTRINGS, c.ETH_SS_FEATURES, count), size)
    _ethtool(ifname, strings)
    raw = strings.raw
    names = []
    for i in range(count):
        at = _GSTRINGS.size + i * c.ETH_GSTRING_LEN
        names.append(raw[at : at + c.ETH_GSTRING_LEN].split(b"\0", 1)[0].decode("ascii", "replace"))
    return tuple(names)


def active_features(ifname: str, names: tuple[str, ...] | None = None) -> frozenset[str]:
    """Names of the features active on ``ifname`` (what ``ethtool -k`` shows as ``on``).

    ``names`` (from :func:`feature_names`) saves two ioctls when known.
    Raises :class:`PortError` when the interface cannot be asked.
    """
    try:
        if names is None:
            names = feature_names(ifname)
        blocks = (len(names) + 31) // 32
        buf = _request(_GFEATURES.pack(c.ETHTOOL_GFEATURES, blocks),
                       _GFEATURES.size + blocks * _BLOCK.size)
        _ethtool(ifname, buf)
    except OSError as exc:
        raise PortError(f"cannot read the offload features of {ifname!r}: {exc}") from exc
    raw = buf.raw
    active: set[str] = set()
    for b in range(blocks):
        bits = _BLOCK.unpack_from(raw, _GFEATURES.size + b * _BLOCK.size)[2]
        while bits:
            low = bits & -bits
            index = b * 32 + low.bit_length() - 1
            if index < len(names) and names[index]:
                active.add(names[index])
            bits ^= low
    return frozenset(active)
