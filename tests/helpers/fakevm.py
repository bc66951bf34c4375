"""A stand-in for QEMU on a TAP, for tests that need no real VM.

QEMU holds the TAP's queue fd and moves frames between it and the guest's
virtio-net. Here a :class:`~vspan.ports.tapqueue.TapQueuePort` holds the queue
(``IFF_VNET_HDR``, ``TUNSETOFFLOAD`` with the offloads the "guest" negotiated)
and a cross-connect joins it to a veth pair whose far end, in a namespace, is
the guest's NIC. The TAP itself is left to whoever the test is about (vspan's
``type: tap`` port creates it, or the stand-in does, as QEMU would).
"""

from __future__ import annotations

from tests.helpers.netns import Lab
from tests.helpers.xconnect import CrossConnect
from vspan.ports import constants as c
from vspan.ports.afpacket import AfPacketPort
from vspan.ports.tapqueue import OFFLOAD_CHOICES, TapQueuePort

NO_OFFLOADS: tuple[int, ...] = (0,)


class QemuStandIn:
    """Attach to TAP ``tap`` as QEMU would; the guest is namespace ``ns`` (eth0 = ``addr``)."""

    def __init__(self, lab: Lab, tap: str, ns: str, addr: str, mac: str, *,
                 offloads: tuple[int, ...] = OFFLOAD_CHOICES, short: str = "g") -> None:
        self.lab = lab
        self.tap = tap
        self.ns = ns
        self.veth = lab.veth(short, ns, addr=addr, mac=mac)
        self.queue = TapQueuePort("qemu", tap, offloads=offloads)
        self.nic = AfPacketPort("guest", self.veth)
        self.xc: CrossConnect | None = None

    def start(self) -> QemuStandIn:
        """Attach the queue (TUNSETIFF on the existing or a new TAP) and start moving frames."""
        self.queue.open()
        self.nic.open()
        self.xc = CrossConnect(self.queue, self.nic)
        self.xc.start()
        return self

    def stop(self) -> None:
        """Detach from the TAP (as QEMU exiting does)."""
        if self.xc is not None:
            self.xc.stop()
            self.xc = None
        self.nic.close()
        self.queue.close()

    def __enter__(self) -> QemuStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def tso(self) -> bool:
        """Whether the stand-in negotiated TSO (so the TAP netdev takes GSO frames)."""
        return bool(self.queue.offloads & c.TUN_F_TSO4)
