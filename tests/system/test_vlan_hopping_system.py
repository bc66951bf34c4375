"""VLAN hopping by double tagging, with real namespaces (issue 7, item 1).

Port ``a`` is an access port of VLAN 10; ``t`` is a trunk whose native VLAN is
10 and which also carries VLAN 20; ``b`` is an access port of VLAN 20. The
kernel here has no 802.1Q devices, so scapy plays the VM that double-tags: it
sends every hostile tag stack from ``a``'s namespace, to ``t``'s MAC and to
broadcast. tcpdump on ``t`` and ``b`` (read back with scapy) must see nothing
tagged from ``a`` and none of the hostile payloads; the switch's drop counters
must show each pattern under its VLAN reason at ``a``.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from scapy.layers.l2 import Ether

from tests.helpers.netns import Lab, require_tools
from tests.helpers.vlan_frames import HOSTILE, frame, tags_of
from tests.system.capture import tcpdump
from tests.system.switchproc import running_switch
from tests.system.test_switch import MACS, ping

pytestmark = pytest.mark.system

SEND = """
import sys
from scapy.all import Raw, sendp
frames = [Raw(load=bytes.fromhex(line)) for line in sys.stdin.read().split()]
sendp(frames, iface="eth0", inter=0.01, verbose=False)
"""
REPEAT = 3  # each pattern several times: the later ones replay the flow cache


def test_hostile_tag_stacks_never_leave_the_access_vlan(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping", "tcpdump")
    a_ns, t_ns, b_ns = netlab.netns("a"), netlab.netns("t"), netlab.netns("b")
    a = netlab.veth("va", a_ns, addr="10.9.0.1/24", mac=MACS["a"])
    t = netlab.veth("vt", t_ns, addr="10.9.0.20/24", mac=MACS["h"])
    b = netlab.veth("vb", b_ns, addr="10.9.0.30/24", mac=MACS["b"])
    cfg = ("ports:\n"
           f"  a: {{interface: {a}, vlan: {{mode: access, id: 10}}}}\n"
           f"  t: {{interface: {t}, vlan: {{mode: trunk, allowed: [10, 20], native: 10}}}}\n"
           f"  b: {{interface: {b}, vlan: {{mode: access, id: 20}}}}\n")
    script = tmp_path / "send.py"
    script.write_text(SEND, encoding="utf-8")
    hostile = [frame(h, MACS["a"], MACS["h"]) for h in HOSTILE for _ in range(REPEAT)]
    with running_switch(tmp_path, cfg) as sw, \
            tcpdump(t_ns, "eth0", tmp_path / "t.pcap") as cap_t, \
            tcpdump(b_ns, "eth0", tmp_path / "b.pcap") as cap_b:
        ping(netlab, t_ns, "10.9.0.1", count=1)  # native VLAN 10 works; t's MAC is learned
        sender = netlab.popen(a_ns, sys.executable, str(script), stdin=subprocess.PIPE)
        sender.communicate("\n".join(f.hex() for f in hostile), timeout=60)
        assert sender.returncode == 0
        ping(netlab, a_ns, "10.9.0.20", count=1)  # and still, untagged, from a
        drops = {d["reason"]: d["frames"] for d in sw.show("counters")["drops"]
                 if d["port"] == "a"}
    markers = [h.name.encode() for h in HOSTILE]
    for cap, where in ((cap_t, "trunk t"), (cap_b, "access-20 b")):
        leaked = [p for p in cap.packets
                  if any(m in bytes(p) for m in markers)
                  or (p[Ether].src == MACS["a"] and tags_of(bytes(p)))]
        assert leaked == [], (where, [p.summary() for p in leaked])
    from_a = [p for p in cap_t.packets if p[Ether].src == MACS["a"]]
    assert from_a, "the untagged control traffic from a must reach the trunk"
    assert all(tags_of(bytes(p)) == [] for p in from_a)
    expected: Counter[str] = Counter()
    for h in HOSTILE:
        expected[h.reason] += REPEAT
    assert drops == dict(expected), drops
