"""Persistent TAP devices for QEMU and libvirt: create, inspect, mark, release.

What ``ip tuntap add dev NAME mode tap user U group G [vnet_hdr] [multi_queue]``
does, as ioctls: ``TUNSETIFF`` creates the device, ``TUNSETOWNER`` and
``TUNSETGROUP`` let that user or group attach to it without privileges,
``TUNSETPERSIST`` keeps it when the fd closes. vspan then holds no queue of
the device: QEMU (``-netdev tap,ifname=NAME,script=no``) or libvirt
(``<interface type='ethernet'>`` with ``<target dev='NAME' managed='no'/>``)
attaches to it, and the switch port talks to the netdev side.

A device vspan made carries ``vspan:<port>:<token>`` in its ``ifalias``, so a
later vspan (a restart, a reload that reopens the port) knows it may remove
it, and a port only removes a device whose mark is still its own. Control
path only; failures raise :class:`~vspan.ports.base.PortError`.
"""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass

from vspan.ports import constants as c
from vspan.ports import netdev
from vspan.ports.base import PortError

MARK_PREFIX = "vspan:"


@dataclass(frozen=True, slots=True)
class TapSpec:
    """How vspan creates a TAP: who may attach, and its flags."""

    owner: int | None = None  # uid allowed to attach (TUNSETOWNER); None: root only
    group: int | None = None  # gid allowed to attach (TUNSETGROUP)
    vnet_hdr: bool = True  # IFF_VNET_HDR (an attaching QEMU sets its own choice)
    multi_queue: bool = False  # IFF_MULTI_QUEUE (QEMU's queues=N needs it; must match)


@dataclass(frozen=True, slots=True)
class TunState:
    """What sysfs says about an existing TUN/TAP device."""

    flags: int  # tun_flags (IFF_TAP, IFF_MULTI_QUEUE, IFF_VNET_HDR, IFF_PERSIST, ...)
    owner: int | None
    group: int | None

    @property
    def multi_queue(self) -> bool:
        """Whether the device was made with ``IFF_MULTI_QUEUE``."""
        return bool(self.flags & c.IFF_MULTI_QUEUE)

    @property
    def is_tap(self) -> bool:
        """A layer-2 (TAP) device, not a layer-3 TUN."""
        return bool(self.flags & c.IFF_TAP)

    def differences(self, spec: TapSpec) -> list[str]:
        """What does not match ``spec`` (owner, group, multi_queue), as short phrases."""
        out = []
        if self.owner != spec.owner:
            out.append(f"owner {_id_text(self.owner)} (configured: {_id_text(spec.owner)})")
        if self.group != spec.group:
            out.append(f"group {_id_text(self.group)} (configured: {_id_text(spec.group)})")
        mq = self.multi_queue
        if mq != spec.multi_queue:
            out.append(f"multi_queue {str(mq).lower()} (configured: "
                       f"{str(spec.multi_queue).lower()})")
        return out


def _id_text(value: int | None) -> str:
    return "none" if value is None else str(value)


def check_name(ifname: str) -> str:
    """``ifname`` if it can name a TAP (1-15 bytes, no '/', not '.' or '..'); else PortError.

    Every path this module builds from a name (sysfs, /proc/sys) relies on it.
    """
    raw = ifname.encode()
    if (not raw or len(raw) >= c.IFNAMSIZ or "/" in ifname or "\0" in ifname
            or ifname in (".", "..") or any(ch.isspace() for ch in ifname)):
        raise PortError(f"{ifname!r} is not a valid interface name (1-15 characters)")
    return ifname


def _sysfs_int(ifname: str, attr: str) -> int | None:
    text = netdev.read_sysfs(ifname, attr)
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None


def inspect(ifname: str) -> TunState | None:
    """The TUN/TAP state of ``ifname``; None when it is not a TUN/TAP device (or absent)."""
    check_name(ifname)
    flags = _sysfs_int(ifname, "tun_flags")
    if flags is None:
        return None
    owner = _sysfs_int(ifname, "owner")
    group = _sysfs_int(ifname, "group")
    return TunState(flags, None if owner is None or owner < 0 else owner,
                    None if group is None or group < 0 else group)


def exists(ifname: str) -> bool:
    """Whether an interface of that name exists in this network namespace."""
    try:
        netdev.ifindex(ifname)
    except PortError:
        return False
    return True


def _open_tun(ifname: str, flags: int) -> int:
    raw = check_name(ifname).encode()
    try:
        fd = os.open(c.TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise PortError(f"cannot open {c.TUN_DEVICE}: {exc.strerror}") from exc
    try:
        fcntl.ioctl(fd, c.TUNSETIFF, c.IFREQ_FLAGS.pack(raw, _short(flags)))
    except OSError:
        os.close(fd)
        raise
    return fd


def _short(flags: int) -> int:
    return flags - 0x10000 if flags >= 0x8000 else flags


def _flags(multi_queue: bool, vnet_hdr: bool = False) -> int:
    flags = c.IFF_TAP | c.IFF_NO_PI
    if vnet_hdr:
        flags |= c.IFF_VNET_HDR
    if multi_queue:
        flags |= c.IFF_MULTI_QUEUE
    return flags


def create(ifname: str, spec: TapSpec) -> None:
    """Create a persistent TAP ``ifname`` with ``spec`` (what ``ip tuntap add`` does)."""
    try:
        fd = _open_tun(ifname, _flags(spec.multi_queue, spec.vnet_hdr))
    except OSError as exc:
        raise PortError(f"cannot create tap {ifname!r}: {exc.strerror}") from exc
    try:
        if spec.owner is not None:
            fcntl.ioctl(fd, c.TUNSETOWNER, spec.owner)
        if spec.group is not None:
            fcntl.ioctl(fd, c.TUNSETGROUP, spec.group)
        fcntl.ioctl(fd, c.TUNSETPERSIST, 1)
    except OSError as exc:
        os.close(fd)  # not persistent yet: the device goes with the fd
        raise PortError(f"cannot set up tap {ifname!r}: {exc.strerror}") from exc
    os.close(fd)


def release(ifname: str, multi_queue: bool) -> bool:
    """Clear the persist flag: the device goes now, or when its last user closes it.

    Returns False (and changes nothing) when another process holds the only
    queue of a single-queue device (a running VM): clearing the flag needs a
    queue of our own, and deleting the device would cut the VM off for good.
    """
    try:
        fd = _open_tun(ifname, _flags(multi_queue))
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.EINVAL, errno.EPERM):
            return False
        raise PortError(f"cannot release tap {ifname!r}: {exc.strerror}") from exc
    try:
        fcntl.ioctl(fd, c.TUNSETPERSIST, 0)
    except OSError as exc:
        raise PortError(f"cannot release tap {ifname!r}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return True


def in_use(ifname: str) -> bool:
    """Whether a process (QEMU) holds a queue of the device: tun has carrier exactly then."""
    netdev.set_up(ifname)  # carrier is readable only while the device is up
    return netdev.read_sysfs(ifname, "carrier") == "1"


def mark(ifname: str) -> str:
    """The device's ``ifalias`` ("" when none or unreadable)."""
    return netdev.read_sysfs(ifname, "ifalias") or ""


def set_mark(ifname: str, text: str) -> None:
    """Write ``text`` into the device's ``ifalias`` (best effort)."""
    check_name(ifname)
    try:
        with open(os.path.join(netdev.SYS_CLASS_NET, ifname, "ifalias"), "w",
                  encoding="ascii") as f:
            f.write(text)
    except OSError:
        pass


def disable_ipv6(ifname: str) -> None:
    """Keep the host's IPv6 stack off a switch port (no link-local address, no RS/DAD)."""
    check_name(ifname)
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w",
                  encoding="ascii") as f:
            f.write("1")
    except OSError:
        pass
