"""Small helpers about network interfaces, shared by the port backends.

Everything here is control path (called on open, on link queries), never per
frame. Failures become :class:`~vspan.ports.base.PortError` with a message
that names the interface.
"""

from __future__ import annotations

import fcntl
import os
import socket

from vspan.ports import constants as c
from vspan.ports.base import PortError

SYS_CLASS_NET = "/sys/class/net"


def _ifname_bytes(ifname: str) -> bytes:
    raw = ifname.encode()
    if not raw or len(raw) >= c.IFNAMSIZ or "/" in ifname or "\0" in ifname:
        raise PortError(f"{ifname!r} is not a valid interface name (1-15 characters, no '/')")
    return raw


def ifindex(ifname: str) -> int:
    """The interface index of ``ifname``; :class:`PortError` when it does not exist."""
    _ifname_bytes(ifname)
    try:
        return socket.if_nametoindex(ifname)
    except OSError as exc:
        raise PortError(f"interface {ifname!r} does not exist in this network namespace") from exc


def _ioctl(request: int, payload: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return fcntl.ioctl(s.fileno(), request, payload)


def get_flags(ifname: str) -> int:
    """The interface flags (``IFF_*``) of ``ifname``."""
    name = _ifname_bytes(ifname)
    try:
        out = _ioctl(c.SIOCGIFFLAGS, c.IFREQ_FLAGS.pack(name, 0))
    except OSError as exc:
        raise PortError(f"cannot read flags of interface {ifname!r}: {exc.strerror}") from exc
    flags: int = c.IFREQ_FLAGS.unpack(out)[1]
    return flags & 0xFFFF


def set_up(ifname: str) -> bool:
    """Bring ``ifname`` administratively up; return True when it had to be changed."""
    flags = get_flags(ifname)
    if flags & c.IFF_UP:
        return False
    name = _ifname_bytes(ifname)
    new = (flags | c.IFF_UP) & 0xFFFF
    if new >= 0x8000:
        new -= 0x10000  # ifr_flags is a signed short
    try:
        _ioctl(c.SIOCSIFFLAGS, c.IFREQ_FLAGS.pack(name, new))
    except OSError as exc:
        raise PortError(f"cannot bring interface {ifname!r} up: {exc.strerror}") from exc
    return True


def read_sysfs(ifname: str, attr: str) -> str | None:
    """``/sys/class/net/<ifname>/<attr>`` stripped, or None when unreadable."""
    try:
        with open(os.path.join(SYS_CLASS_NET, ifname, attr), encoding="ascii") as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def link_state(ifname: str) -> bool | None:
    """Whether ``ifname`` can carry traffic; None when it is not visible here.

    ``operstate`` ``up`` means up; ``unknown`` (tun/tap, some drivers) falls
    back to the administrative flag plus carrier.
    """
    state = read_sysfs(ifname, "operstate")
    if state is None:
        return None
    if state == "up":
        return True
    if state == "unknown":
        flags = read_sysfs(ifname, "flags")
        carrier = read_sysfs(ifname, "carrier")  # unreadable while admin down
        try:
            up = flags is not None and int(flags, 16) & c.IFF_UP != 0
        except ValueError:
            up = False
        return up and carrier == "1"
    return False


def hwaddr(ifname: str) -> bytes:
    """The MAC address of ``ifname`` (b"" when unknown)."""
    text = read_sysfs(ifname, "address")
    if not text:
        return b""
    try:
        return bytes.fromhex(text.replace(":", ""))
    except ValueError:
        return b""


def mtu(ifname: str, default: int = 1500) -> int:
    """The MTU of ``ifname`` (``default`` when unknown)."""
    text = read_sysfs(ifname, "mtu")
    try:
        return int(text) if text else default
    except ValueError:
        return default
