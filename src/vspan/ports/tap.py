"""TAP port: a QEMU/libvirt VM's vNIC, with the TAP's queue left to QEMU.

A TAP device has two sides: the ``/dev/net/tun`` queue fd, which QEMU holds
for the VM's virtio-net (``-netdev tap,ifname=...``), and the netdev, which
the host sees. A single-queue TAP admits one queue holder, so vspan must not
take it: the port attaches to the netdev side with an AF_PACKET socket
(:class:`~vspan.ports.afpacket.AfPacketPort`, with virtio-net headers, so the
VM's TSO/checksum offloads pass whole), and the frames QEMU writes arrive
there, while what the port sends reaches QEMU and the guest.

* ``create=True`` (default): vspan creates a persistent TAP (``TUNSETPERSIST``)
  owned by ``owner``/``group`` (``TUNSETOWNER``/``TUNSETGROUP``) with
  ``IFF_VNET_HDR`` and, when asked, ``IFF_MULTI_QUEUE``, before QEMU starts;
  QEMU or libvirt (``managed='no'``) attach to it. A device vspan created is
  removed when the port closes (persist cleared: it disappears now, or when
  the VM lets go of it; a running single-queue VM keeps it, and a later vspan
  adopts it by its mark). An existing TAP is used as it is when it matches
  the configuration, and never removed unless vspan made it.
* ``create=False``: the TAP belongs to QEMU or libvirt (made by
  ``-netdev tap`` or libvirt's managed ``<interface type='ethernet'>``); the
  port waits for it (link down while it is absent) and follows it when the
  VM restarts and the device is made again.
"""

from __future__ import annotations

import grp
import logging
import pwd
import secrets
from collections.abc import Sequence

from vspan.ports import tundev
from vspan.ports.afpacket import AfPacketPort
from vspan.ports.base import Frame, Port, PortCounters, PortError, PortInfo
from vspan.ports.tundev import TapSpec

log = logging.getLogger(__name__)


def resolve_id(value: str | int | None, what: str) -> int | None:
    """A uid (``what`` = ``owner``) or gid (``group``) for a name or number; None stays None.

    Raises :class:`PortError` naming the key when the name is unknown here.
    """
    if value is None or isinstance(value, int):
        return value
    if value.isdigit():
        return int(value)
    try:
        if what == "owner":
            return pwd.getpwnam(value).pw_uid
        return grp.getgrnam(value).gr_gid
    except KeyError:
        kind = "user" if what == "owner" else "group"
        raise PortError(f"tap.{what}: no {kind} named {value!r}") from None


class TapPort(Port):
    """A switch port on a TAP device that QEMU (or libvirt) attaches to."""

    def __init__(
        self,
        name: str,
        ifname: str | None = None,
        *,
        create: bool = True,
        owner: str | int | None = None,
        group: str | int | None = None,
        vnet_hdr: bool = True,
        multi_queue: bool = False,
        qdisc_bypass: bool = True,
    ) -> None:
        self.name = name
        self.ifname = ifname or name
        self.create = create
        self._owner = owner
        self._group = group
        self._vnet_hdr = vnet_hdr
        self._multi_queue = multi_queue
        self._port = AfPacketPort(name, self.ifname, wait_for_interface=not create,
                                  qdisc_bypass=qdisc_bypass, kind="tap")
        self.counters: PortCounters = self._port.counters
        self._spec: TapSpec | None = None
        self._mark = ""  # the ifalias this port wrote (when it owns the device)
        #: whether this port made the device (or adopted one vspan made) and removes it
        self.owned = False
        #: set by :meth:`close` when an owned device stayed because a VM still holds it
        self.left_in_use = False

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        """Create (or check) the TAP device, then attach to its netdev."""
        if self._spec is not None:
            return
        try:
            tundev.check_name(self.ifname)
            spec = TapSpec(resolve_id(self._owner, "owner"), resolve_id(self._group, "group"),
                           self._vnet_hdr, self._multi_queue)
        except PortError as exc:
            raise PortError(f"port {self.name}: {exc}") from exc
        if self.create:
            self._prepare(spec)
        elif tundev.exists(self.ifname) and tundev.inspect(self.ifname) is None:
            raise PortError(f"port {self.name}: {self.ifname!r} exists and is not a TAP device")
        self._spec = spec
        try:
            self._port.open()
        except BaseException:
            self._remove()
            self._spec = None
            raise

    def _prepare(self, spec: TapSpec) -> None:
        """Make the device, or check and adopt an existing one."""
        ifname = self.ifname
        state = tundev.inspect(ifname)
        if state is None and tundev.exists(ifname):
            raise PortError(f"port {self.name}: {ifname!r} exists and is not a TAP device")
        if state is not None:
            if not state.is_tap:
                raise PortError(f"port {self.name}: {ifname!r} is a TUN (layer 3) device, "
                                "not a TAP")
            ours = tundev.mark(ifname).startswith(tundev.MARK_PREFIX)
            diffs = state.differences(spec)
            if not diffs:
                self._own(ours)
                return
            if not ours:
                raise PortError(f"port {self.name}: tap {ifname!r} exists (made outside "
                                f"vspan) with {', '.join(diffs)}; delete it or change the "
                                "port's tap settings")
            if tundev.in_use(ifname) or not tundev.release(ifname, state.multi_queue):
                raise PortError(f"port {self.name}: tap {ifname!r} is in use by a VM and has "
                                f"{', '.join(diffs)}; stop the VM to change it")
        tundev.create(ifname, spec)
        tundev.disable_ipv6(ifname)
        self._own(True)

    def _own(self, owned: bool) -> None:
        self.owned = owned
        if owned:
            self._mark = f"{tundev.MARK_PREFIX}{self.name}:{secrets.token_hex(4)}"
            tundev.set_mark(self.ifname, self._mark)

    def _remove(self) -> None:
        """Release an owned device whose mark is still ours (another port may have adopted it)."""
        if not self.owned or self._spec is None:
            return
        self.owned = False
        if tundev.mark(self.ifname) != self._mark:
            return
        try:
            released = tundev.release(self.ifname, self._spec.multi_queue)
        except PortError as exc:
            log.warning("port %s: %s", self.name, exc)
            return
        if not released:
            self.left_in_use = True
            log.warning("port %s: tap %s is held by a VM; left in place (a later vspan "
                        "adopts it)", self.name, self.ifname)

    def close(self) -> None:
        """Detach; remove the device if this port made it. Safe to call twice."""
        self._port.close()
        self._remove()
        self._spec = None

    # -- datapath (the netdev side, through AF_PACKET) ------------------------

    def fileno(self) -> int:
        """The AF_PACKET socket on the tap netdev."""
        return self._port.fileno()

    def recv_batch(self, max_frames: int = 64) -> list[Frame]:
        """Frames the VM sent (QEMU wrote them into the TAP)."""
        return self._port.recv_batch(max_frames)

    def send_batch(self, frames: Sequence[Frame]) -> int:
        """Frames for the VM (QEMU reads them from the TAP); see AfPacketPort.send_batch."""
        return self._port.send_batch(frames)

    # -- state ---------------------------------------------------------------

    def link_up(self) -> bool:
        """Up while a VM holds the TAP (the device has carrier exactly then)."""
        return self._port.link_up()

    @property
    def port(self) -> AfPacketPort:
        """The AF_PACKET port on the tap netdev (offload state, last errors)."""
        return self._port

    def info(self) -> PortInfo:
        """The netdev's facts plus the TAP settings and whether vspan owns the device."""
        info = self._port.info()
        state = tundev.inspect(self.ifname)
        info.extra.update({
            "create": str(self.create).lower(),
            "owned": str(self.owned).lower(),
        })
        if state is not None:
            info.extra["tun_flags"] = f"0x{state.flags:04x}"
            info.extra["owner"] = "none" if state.owner is None else str(state.owner)
            info.extra["group"] = "none" if state.group is None else str(state.group)
        return info
