"""The switches ``bench_switch.py`` compares, each built and torn down on demand.

Every switch-like peer works in one *switch namespace* holding the root ends of
the sender's, receiver's and sniffer's veths (``vbs``, ``vbr``, ``vbm``) and an
underlay veth to a collector namespace (not a port) for ERSPAN copies; the
namespace has no default route. A peer is started, measured and stopped; its
:meth:`Peer.stop` undoes everything :meth:`Peer.start` did (bridges, tc
filters, OVS daemons and bridges, offload changes, the vspan process), even
after a failed start.

Peers: the direct veth pair (no switch), the Linux bridge with and without a
``tc … mirred`` mirror (both directions of the sender's port), Open vSwitch's
userspace ``netdev`` datapath with and without a mirror, and vspan with no
session, a local mirror, an ERSPAN III session or a per-port firewall.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import BenchError, Host, Switch, SwitchNs, Topology, oneline, sh
from ovs import OvsDaemon, ovs_missing

SND_IF, RCV_IF, MON_IF, UNDER_IF = "vbs", "vbr", "vbm", "vbu"
BRIDGE = "vbbr"


@dataclass
class SwitchLab:
    """Both topologies: the direct pair and the switch namespace with its hosts."""

    topo: Topology
    workdir: str
    direct: tuple[Host, Host]
    sw: SwitchNs
    switch_cpu: int
    pidfile: Path
    ovs_rundir: Path

    @property
    def snd(self) -> Host:
        """The sender behind the switch."""
        return self.sw.hosts[SND_IF]

    @property
    def rcv(self) -> Host:
        """The receiver behind the switch."""
        return self.sw.hosts[RCV_IF]

    @property
    def mon(self) -> Host:
        """The sniffer (mirror destination) behind the switch."""
        return self.sw.hosts[MON_IF]

    @property
    def col(self) -> Host:
        """The ERSPAN collector at the far end of the underlay."""
        assert self.sw.collector is not None
        return self.sw.collector


@dataclass
class Peer:
    """One setup: how to build it, what it measures, how to tear it down."""

    key: str  # for --setups
    name: str  # in the tables
    needs: tuple[str, ...] = ()  # kernel features (see kernel_features) or "ovs"
    cpu_note: str | None = None  # why its switch CPU cannot be attributed, if so
    copies: str | None = None  # "sniffer" or "collector": where mirror copies arrive
    started: bool = field(default=False, init=False)

    def skip_reason(self, features: dict[str, str | None]) -> str | None:
        """Why this peer cannot run here (a missing kernel feature or tool), or None."""
        for need in self.needs:
            if need == "ovs":
                if (why := ovs_missing()) is not None:
                    return why
            elif features.get(need) is not None:
                return features[need]
        return None

    def endpoints(self, lab: SwitchLab) -> tuple[Host, Host]:
        """(sender, receiver) for this peer."""
        return lab.snd, lab.rcv

    def copies_host(self, lab: SwitchLab) -> Host | None:
        """Where this peer's mirror copies arrive (counted), if it mirrors."""
        if self.copies == "sniffer":
            return lab.mon
        if self.copies == "collector":
            return lab.col
        return None

    def start(self, lab: SwitchLab, tag: str) -> None:
        """Build the peer (raise :class:`BenchError` saying why it could not)."""
        self.started = True

    def stop(self, lab: SwitchLab) -> None:
        """Undo everything :meth:`start` did; never raises."""
        self.started = False

    def cpu_seconds(self) -> float | None:
        """CPU seconds the switch has used so far, or None when not attributable."""
        return None

    def alive(self) -> bool:
        """Whether the switch still runs (always, for kernel peers)."""
        return True

    def report(self) -> dict[str, Any]:
        """Counters worth keeping after a run (drops, mirror sessions, flow cache)."""
        return {}


class Direct(Peer):
    """One veth pair joins the two namespaces: the physical limit."""

    def endpoints(self, lab: SwitchLab) -> tuple[Host, Host]:
        return lab.direct


def _ip(lab: SwitchLab, *args: str, check: bool = True) -> None:
    sh("ip", "-n", lab.sw.ns, *args, check=check)


def _tc(lab: SwitchLab, *args: str, check: bool = True) -> None:
    sh("tc", "-n", lab.sw.ns, *args, check=check)


class LinuxBridge(Peer):
    """The kernel bridge over the three port ends; optionally ``tc mirred`` on the sender."""

    def __init__(self, key: str, name: str, mirred: bool) -> None:
        super().__init__(key, name, ("bridge", "mirred") if mirred else ("bridge",),
                         cpu_note="kernel softirq (not attributable to a process)",
                         copies="sniffer" if mirred else None)
        self.mirred = mirred

    def start(self, lab: SwitchLab, tag: str) -> None:
        super().start(lab, tag)
        _ip(lab, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0",
            "forward_delay", "0")
        for port in (SND_IF, RCV_IF, MON_IF):
            _ip(lab, "link", "set", port, "master", BRIDGE)
        _ip(lab, "link", "set", BRIDGE, "up")
        if self.mirred:
            # both directions of the sender's port: what it sends (clsact ingress on the
            # bridge port) and what it receives (clsact egress)
            _tc(lab, "qdisc", "add", "dev", SND_IF, "clsact")
            for hook in ("ingress", "egress"):
                _tc(lab, "filter", "add", "dev", SND_IF, hook, "protocol", "all", "u32",
                    "match", "u32", "0", "0", "action", "mirred", "egress", "mirror",
                    "dev", MON_IF)

    def stop(self, lab: SwitchLab) -> None:
        if self.mirred:
            _tc(lab, "qdisc", "del", "dev", SND_IF, "clsact", check=False)
        _ip(lab, "link", "del", BRIDGE, check=False)
        super().stop(lab)


def set_tx_offload(host: Host, on: bool) -> None:
    """``ethtool -K IF tx on|off`` inside the host's namespace (TSO/GSO follow)."""
    sh("ip", "netns", "exec", host.ns, "ethtool", "-K", host.ifname, "tx",
       "on" if on else "off")


class OvsNetdev(Peer):
    """Open vSwitch, userspace datapath, run by hand; optionally a local mirror."""

    def __init__(self, key: str, name: str, mirror: bool) -> None:
        super().__init__(key, name, ("ovs",), copies="sniffer" if mirror else None)
        self.mirror = mirror
        self.daemon: OvsDaemon | None = None
        self.offloads_off: list[Host] = []

    def start(self, lab: SwitchLab, tag: str) -> None:
        super().start(lab, tag)
        # netdev-linux reads MTU-sized frames: TSO/GSO super-frames and partial
        # checksums from the namespaces would not pass (PERF-NOTES)
        for host in (lab.snd, lab.rcv):
            set_tx_offload(host, False)
            self.offloads_off.append(host)
        self.daemon = OvsDaemon(lab.ovs_rundir, lab.sw.ns, lab.switch_cpu)
        self.daemon.start()
        self.daemon.add_bridge(BRIDGE, [SND_IF, RCV_IF, MON_IF])
        if self.mirror:
            self.daemon.add_mirror(BRIDGE, SND_IF, MON_IF)

    def stop(self, lab: SwitchLab) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None
        for host in self.offloads_off:
            with contextlib.suppress(BenchError):
                set_tx_offload(host, True)
        self.offloads_off.clear()
        super().stop(lab)

    def cpu_seconds(self) -> float | None:
        return self.daemon.cpu_seconds() if self.daemon is not None else 0.0

    def alive(self) -> bool:
        d = self.daemon
        return d is not None and d.vswitchd is not None and d.vswitchd.poll() is None

    def report(self) -> dict[str, Any]:
        if self.daemon is None:
            return {}
        out: dict[str, Any] = {}
        with contextlib.suppress(BenchError):
            text = oneline(self.daemon.appctl("dpctl/show"))
            m = re.search(r"lookups: (.*?) flows: (\d+)", text)
            out["datapath"] = f"lookups {m.group(1)}, {m.group(2)} flows" if m else text[:200]
        return out


SWITCH_YAML = f"""\
# bench/bench_switch.py: three untagged ports; the sniffer is idle unless mirrored to
switch:
  name: vbbench
  control_socket: {{socket}}
ports:
  sender:   {{interface: {SND_IF}}}
  receiver: {{interface: {RCV_IF}}}
  sniffer:  {{interface: {MON_IF}}}
"""
MIRROR_YAML = """\
mirrors:
  bench:
    sources: [{port: sender, direction: both}]
    destinations: [sniffer]
"""


def erspan_yaml(lab: SwitchLab, sender: str = "auto") -> str:
    """An ERSPAN III session copying the sender (both directions) over the underlay
    (``sender``: the session's ``erspan.sender``, AF_PACKET when resolved or raw)."""
    u = lab.sw.underlay
    assert u is not None
    return f"""\
mirrors:
  remote:
    sources: [{{port: sender, direction: both}}]
    erspan: {{type: erspan3, remote_ip: {u.col_ip}, source_ip: {u.host_ip}, session_id: 7,
              sender: {sender}}}
"""


def firewall_yaml(lab: SwitchLab) -> str:
    """Default deny; one stateful allow for the bench's traffic sender -> receiver.

    Every frame after a connection's first is ESTABLISHED (or the reply of one),
    so each is judged by the connection table at both ports it crosses.
    """
    return f"""\
firewall:
  default_action: drop
  exclude: [sniffer]
  sections:
    - name: bench
      stateful: true
      rules:
        - {{id: "1", name: bench-traffic, sources: ["{lab.snd.ip}/32"],
           destinations: ["{lab.rcv.ip}/32"],
           services: ["tcp/5201", "udp/9", "icmp/8"], action: allow}}
"""


class Vspan(Peer):
    """``vspan up`` in the switch namespace, pinned; ``extra`` adds sessions/policy."""

    def __init__(self, key: str, name: str, extra: str = "",
                 copies: str | None = None) -> None:
        super().__init__(key, name, copies=copies)
        self.extra = extra
        self.switch: Switch | None = None
        self.env: dict[str, str] | None = None  # added to the switch's environment

    def config(self, lab: SwitchLab) -> str:
        """The switch's YAML for this setup."""
        if self.extra == "mirror":
            return SWITCH_YAML + MIRROR_YAML
        if self.extra == "erspan":
            return SWITCH_YAML + erspan_yaml(lab)
        if self.extra == "erspan-raw":
            return SWITCH_YAML + erspan_yaml(lab, sender="raw")
        if self.extra == "firewall":
            return SWITCH_YAML + firewall_yaml(lab)
        if self.extra == "no-steering":
            return "\n".join(line.replace("}", ", rx_steering: never}") if "interface:" in line
                             else line for line in SWITCH_YAML.splitlines()) + "\n"
        return SWITCH_YAML

    def start(self, lab: SwitchLab, tag: str) -> None:
        super().start(lab, tag)
        self.switch = Switch(self.config(lab), lab.workdir, lab.switch_cpu, lab.pidfile,
                             name=f"{tag}-{self.key}", ns=lab.sw.ns, env=self.env)
        self.switch.start()

    def stop(self, lab: SwitchLab) -> None:
        if self.switch is not None:
            self.switch.stop()
            self.switch = None
        super().stop(lab)

    def cpu_seconds(self) -> float | None:
        return self.switch.cpu_seconds() if self.switch is not None else 0.0

    def alive(self) -> bool:
        return self.switch is not None and self.switch.alive()

    def report(self) -> dict[str, Any]:
        sw = self.switch
        if sw is None or not sw.alive():
            return {}
        out: dict[str, Any] = {}
        try:
            ports = sw.json("show", "ports")
            out["ring_drops"] = sum(int(p.get("backend_counters", {}).get("rx_dropped", 0))
                                    for p in ports)
            counters = sw.json("show", "counters")
            out["drops"] = {f"{d['port']}/{d['reason']}": int(d["frames"])
                            for d in counters["drops"]}
            out["flow_cache"] = counters["flow_cache"]
            if self.extra == "firewall":  # which state-invalid drops only followed a RST
                conns = sw.json("firewall", "show").get("connections", {})
                out["firewall_invalid"] = {
                    port: {"invalid": int(c.get("invalid", 0)),
                           "after_reset": int(c.get("after_reset", 0))}
                    for port, c in conns.items() if c.get("invalid")}
            if self.copies is not None:
                m = sw.json("show", "mirrors")
                out["mirror"] = {k: v for k, v in m[0]["counters"].items()
                                 if isinstance(v, int)} if m else {}
                if m and m[0].get("status") != "ok":
                    out["mirror_status"] = m[0].get("status")
        except (BenchError, KeyError, IndexError, ValueError) as err:
            out["error"] = str(err)
        return out


def all_peers() -> list[Peer]:
    """Every setup, in table order."""
    return [
        Direct("direct", "veth direct"),
        LinuxBridge("bridge", "Linux bridge", mirred=False),
        LinuxBridge("bridge-mirred", "Linux bridge + tc mirred mirror", mirred=True),
        OvsNetdev("ovs", "OVS netdev", mirror=False),
        OvsNetdev("ovs-mirror", "OVS netdev + mirror", mirror=True),
        Vspan("vspan", "vspan"),
        Vspan("vspan-mirror", "vspan + local mirror", "mirror", copies="sniffer"),
        Vspan("vspan-erspan", "vspan + ERSPAN III", "erspan", copies="collector"),
        Vspan("vspan-erspan-raw", "vspan + ERSPAN III by the raw GRE socket", "erspan-raw",
              copies="collector"),
        Vspan("vspan-fw", "vspan + per-port firewall", "firewall"),
        Vspan("vspan-nosteer", "vspan, rx_steering never", "no-steering"),
    ]


# setups measured only when asked for (--setups): not part of a full run's table
OPTIONAL_SETUPS = frozenset({"vspan-erspan-raw", "vspan-nosteer"})


def kernel_features(topo: Topology) -> dict[str, str | None]:
    """Which kernel features the peers need exist here: feature -> None, or why not.

    Tried in a throwaway namespace: a bridge; a clsact qdisc with a ``u32``
    match-all filter and a ``mirred egress mirror`` action.
    """
    out: dict[str, str | None] = {"bridge": None, "mirred": None}
    ns = topo.netns("probe")
    try:
        def attempt(*argv: str) -> str | None:
            proc = subprocess.run(argv, capture_output=True, text=True)
            return None if proc.returncode == 0 else oneline(proc.stderr or proc.stdout)

        if (err := attempt("ip", "-n", ns, "link", "add", "pbr", "type", "bridge")):
            out["bridge"] = f"no Linux bridge in this kernel ({err})"
        attempt("ip", "-n", ns, "link", "add", "pa", "type", "veth", "peer", "name", "pb")
        if (err := attempt("tc", "-n", ns, "qdisc", "add", "dev", "pa", "clsact")):
            out["mirred"] = f"no clsact qdisc in this kernel ({err})"
        elif (err := attempt("tc", "-n", ns, "filter", "add", "dev", "pa", "ingress",
                             "protocol", "all", "u32", "match", "u32", "0", "0", "action",
                             "mirred", "egress", "mirror", "dev", "pb")):
            out["mirred"] = f"no tc u32 classifier or mirred action in this kernel ({err})"
        if out["bridge"] is not None and out["mirred"] is None:
            out["mirred"] = out["bridge"]
    finally:
        topo.namespaces.remove(ns)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return out
