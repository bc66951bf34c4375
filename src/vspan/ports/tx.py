"""The transmit loop of vnet-header ports, and the GSO frames a device takes whole.

A port sends GSO super-frames (a virtio-net header with ``gso_type`` set) whole.
With ``PACKET_QDISC_BYPASS`` the kernel's ``__dev_direct_xmit`` validates
each frame against the device's features and, when the device cannot
segment it (TSO off, a TAP whose reader did not negotiate offloads, a NIC
without TSO, a frame of ``gso_max_size`` or more), software GSO turns it into
a list of segments, which the bypass path drops (``ENOBUFS``): a TCP stream
stalls. The qdisc path (``dev_queue_xmit``) segments and checksums such a
frame in the kernel instead. So the AF_PACKET port leaves the bypass on only
while the device takes TCP GSO frames itself, and otherwise sends through the
qdisc (``kernel_gso``); a GSO frame that must still go out on the bypass path
without the device taking it (UDP GSO or ECN without the feature, a frame too
large, or features changed since they were read) is cut here, by
:func:`vspan.ports.offload.finalize`. Partial checksums without GSO are left
to the kernel on both paths (``skb_checksum_help`` runs on the bypass path
too).

:class:`GsoSupport` is decided from the active features (``ethtool -k``
names, read by :mod:`vspan.ports.ethtool`); the test is one set lookup per
GSO frame. :func:`send_frames` is the one send loop of the AF_PACKET and TAP
backends.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vspan.ports import ringio
from vspan.ports.base import Frame, PortCounters
from vspan.ports.offload import OffloadError, finalize
from vspan.ports.vnet import EMPTY_VNET, GSO_ECN, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_HDR_LEN

#: The feature a device needs to take each GSO type whole (``ethtool -k`` names).
GSO_FEATURES: dict[int, str] = {
    GSO_TCPV4: "tx-tcp-segmentation",
    GSO_TCPV6: "tx-tcp6-segmentation",
    GSO_UDP_L4: "tx-udp-segmentation",
}
#: Also needed for TCP GSO frames with ``GSO_ECN`` (CWR set on the first segment).
ECN_FEATURE = "tx-tcp-ecn-segmentation"
#: The kernel's default ``gso_max_size`` (bytes).
DEFAULT_GSO_MAX_SIZE = 65536


@dataclass(frozen=True, slots=True)
class GsoSupport:
    """The GSO frames a device's transmit path takes whole.

    ``types`` holds the virtio-net ``gso_type`` byte values (with and without
    ``GSO_ECN``) the device segments itself; ``max_size`` is its
    ``gso_max_size``: a frame of that length or longer is segmented in software.
    ``table`` is ``types`` as the 256-byte membership table the C send loop takes,
    built once here rather than on every batch sent (building it costs ~9 µs).
    """

    types: frozenset[int]
    max_size: int = DEFAULT_GSO_MAX_SIZE
    table: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "table", ringio.gso_table(self.types))

    @classmethod
    def from_features(cls, active: Iterable[str],
                      max_size: int = DEFAULT_GSO_MAX_SIZE) -> GsoSupport:
        """What a device with the ``active`` feature names takes."""
        names = frozenset(active)
        types: set[int] = set()
        for gso_type, feature in GSO_FEATURES.items():
            if feature in names:
                types.add(gso_type)
                if gso_type != GSO_UDP_L4 and ECN_FEATURE in names:
                    types.add(gso_type | GSO_ECN)
        return cls(frozenset(types), max_size)

    def takes(self, vnet: bytes, length: int) -> bool:
        """Whether a frame of ``length`` bytes behind header ``vnet`` goes out whole."""
        return not vnet or not vnet[1] or (vnet[1] in self.types and length < self.max_size)

    def takes_tcp(self) -> bool:
        """Whether TCP GSO frames (IPv4 and IPv6) go out whole."""
        return GSO_TCPV4 in self.types and GSO_TCPV6 in self.types

    def describe(self) -> str:
        """``tcp4,tcp6,ecn,udp`` style summary (for port info)."""
        parts = [name for gso_type, name in ((GSO_TCPV4, "tcp4"), (GSO_TCPV6, "tcp6"),
                                             (GSO_TCPV4 | GSO_ECN, "ecn"),
                                             (GSO_UDP_L4, "udp"))
                 if gso_type in self.types]
        return ",".join(parts) or "none"


#: Every GSO type, any size: a device (or a TAP queue fd) that segments itself.
ALL_GSO = GsoSupport(frozenset({GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, GSO_TCPV4 | GSO_ECN,
                                GSO_TCPV6 | GSO_ECN}), 1 << 31)
#: No GSO at all: every super-frame is cut in software.
NO_GSO = GsoSupport(frozenset(), 1 << 31)


#: Frames longer than this are written with a gather call (header and frame apart).
GATHER_MIN = 4096

Write = Callable[[bytes], Any]
Gather = Callable[[tuple[bytes, bytes]], Any]
OnError = Callable[[OSError], None]


def send_frames(frames: Sequence[Frame], write: Write, gather: Gather, counters: PortCounters,
                on_error: OnError, gso: GsoSupport = ALL_GSO, *,
                kernel_gso: bool = False, retry_in_software: bool = False,
                fd: int | None = None, python_first: bool = False) -> int:
    """Write each frame behind its vnet header (zeros when plain); return how many went.

    ``write`` takes header+frame as one buffer, ``gather`` the two apart (no copy of
    a big frame). A GSO frame that ``gso`` says the device cannot take is counted
    in ``tx_segmented`` and either sent whole for the kernel to segment
    (``kernel_gso``: the qdisc path) or cut here (:func:`cut_and_send`). With
    ``retry_in_software`` a GSO frame the kernel refused with ``ENOBUFS`` (what
    the bypass path returns for a frame it would have to segment) is cut and
    sent again. Failures are counted in ``counters.tx_errors`` and reported to
    ``on_error``; nothing is raised for one bad frame. ``counters.tx_frames``
    counts frames written (pieces cut here included).

    With ``fd`` (the socket ``write`` sends on) and the C extension built, runs of
    frames that go out as they are leave by ``sendmmsg`` (``vspan.ports._ring``) and
    GSO frames to cut are segmented and checksummed there too; a frame that cannot
    be cut, a malformed one or one whose send failed is handled by the loop here (a
    failed one is tried once more, then counted). ``python_first``: the C loop already
    stopped at ``frames[0]`` (the engine's wake path sent what came before it): that
    frame is handled here first, as it would have been in one call.
    """
    sent = 0
    wire = 0
    nbytes = 0
    errors = 0
    types = gso.types
    max_size = gso.max_size
    native = ringio._mod if fd is not None else None
    table = gso.table
    flist = frames if isinstance(frames, list) else list(frames)
    n = len(flist)
    i = 0
    skip = python_first
    while i < n:
        if skip:
            skip = False
        elif native is not None and fd is not None:
            i, ok, wrote, wrote_bytes, segmented, pieces, failed, _err = native.send(
                fd, flist, i, table, max_size, kernel_gso)
            sent += ok
            wire += wrote + pieces
            nbytes += wrote_bytes
            errors += failed
            counters.tx_segmented += segmented
            counters.tx_segments += pieces
            if i >= n:
                break
        frame = flist[i]
        i += 1
        data = frame.data
        vnet = frame.vnet or EMPTY_VNET
        if len(vnet) != VNET_HDR_LEN or len(data) < 14:
            errors += 1
            continue
        kind = vnet[1]
        if kind and (kind not in types or len(data) >= max_size):
            if not kernel_gso:
                if cut_and_send(frame, write, gather, counters, on_error):
                    sent += 1
                continue
            counters.tx_segmented += 1  # the kernel's software GSO cuts it
        try:
            if len(data) > GATHER_MIN:
                gather((vnet, data))
            else:
                write(vnet + data)
        except OSError as exc:
            if kind and retry_in_software and exc.errno == errno.ENOBUFS:
                if cut_and_send(frame, write, gather, counters, on_error):
                    sent += 1
                continue
            errors += 1
            on_error(exc)
            continue
        except (TypeError, ValueError):
            errors += 1
            continue
        sent += 1
        wire += 1
        nbytes += len(data)
    counters.tx_frames += wire
    counters.tx_bytes += nbytes
    counters.tx_errors += errors
    return sent


def count_native_send(counters: PortCounters, wire: int, nbytes: int, segmented: int,
                      segments: int, errors: int) -> None:
    """Count what one ``_ring.send`` call wrote (its ``wire``, ``nbytes``, ``segmented``,
    ``segments`` and ``errors``) as :func:`send_frames` counts it: for a caller that made
    the call itself (the engine's native wake path) and hands the rest to
    ``send_frames(..., python_first=True)``."""
    counters.tx_frames += wire + segments
    counters.tx_bytes += nbytes
    counters.tx_errors += errors
    counters.tx_segmented += segmented
    counters.tx_segments += segments


def cut_and_send(frame: Frame, write: Write, gather: Gather, counters: PortCounters,
                 on_error: OnError) -> bool:
    """Segment (and checksum) a GSO frame in software and send the pieces as plain frames.

    Counts ``tx_segmented`` once and ``tx_segments``/``tx_frames``/``tx_bytes``
    per piece sent; a frame that cannot be cut, or a piece that fails, counts
    one ``tx_errors`` and returns False.
    """
    try:
        pieces = finalize(frame)
    except OffloadError:
        counters.tx_errors += 1
        return False
    counters.tx_segmented += 1
    ok = True
    for piece in pieces:
        try:
            if len(piece) > GATHER_MIN:
                gather((EMPTY_VNET, piece))
            else:
                write(EMPTY_VNET + piece)
        except OSError as exc:
            on_error(exc)
            ok = False
            continue
        counters.tx_segments += 1
        counters.tx_frames += 1
        counters.tx_bytes += len(piece)
    if not ok:
        counters.tx_errors += 1
    return ok
