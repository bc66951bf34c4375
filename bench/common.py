"""Shared helpers for the benchmarks in ``bench/`` (not part of the tests).

Generic pieces only: refusing without root, namespaces and veth pairs that are
always removed, a ``vspan up`` subprocess pinned to a CPU, runners for iperf3
(TCP), trafgen (64-byte frames per second) and ping (RTT), medians, a machine
description, and rewriting one script's section of ``bench/RESULTS.md``.

Every name a benchmark creates starts with its prefix (at most 15 characters
per interface); :class:`Topology` deletes them even when a measurement fails,
kills whatever still runs inside its namespaces, and removes leftovers of an
earlier, interrupted run with the same names before building.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
RESULTS_MD = REPO / "bench" / "RESULTS.md"
VSPAN = [sys.executable, "-m", "vspan.cli.main"]


class BenchError(Exception):
    """The benchmark cannot run here, or a step failed (the message says which)."""


class MeasureError(Exception):
    """One measurement failed (e.g. TCP did not connect); the run goes on."""


# ---------------------------------------------------------------- preconditions
def require_root(what: str) -> None:
    """Refuse clearly when not root."""
    if os.geteuid() != 0:
        raise BenchError(f"{what} needs root: it creates network namespaces and veth pairs "
                         f"and opens AF_PACKET sockets (run it with sudo)")


def require_tools(*tools: str) -> None:
    """Refuse when a command-line tool is missing."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise BenchError(f"missing tools: {', '.join(missing)} "
                         f"(Debian: iproute2 iputils-ping iperf3 netsniff-ng util-linux; "
                         f"see scripts/install-system.sh)")


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command, capture text output; raise :class:`BenchError` on failure."""
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise BenchError(f"{' '.join(args)} timed out after {timeout} s") from err
    if check and proc.returncode != 0:
        msg = proc.stderr.strip() or proc.stdout.strip()
        raise BenchError(f"{' '.join(args)} failed ({proc.returncode}): {oneline(msg)}")
    return proc


def oneline(text: str) -> str:
    """Collapse whitespace and newlines (for one-line error messages)."""
    return " ".join(text.split())


def in_ns(ns: str, *args: str, cpu: int | None = None) -> list[str]:
    """The argv running ``args`` inside namespace ``ns`` (pinned to ``cpu`` if given)."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    return ["ip", "netns", "exec", ns, *pin, *args]


def stop_process(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM,
                 timeout: float = 10) -> None:
    """Stop a child started with ``start_new_session=True`` and everything it forked.

    ``sig`` goes to the child's whole process group (trafgen's parent does not
    pass SIGINT on to the process it forks), then we wait for the child;
    whatever is left in the group, or a child that does not go in time, gets
    SIGKILL before the child is reaped (so the group id cannot be reused yet).
    """
    if proc is None or proc.returncode is not None:
        return
    pgid = proc.pid

    def signal_group(s: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, s)

    signal_group(sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # wait for the exit without reaping: the group id stays ours until proc.wait()
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            break
        time.sleep(0.05)
    signal_group(signal.SIGKILL)
    proc.wait(timeout=5)


# --------------------------------------------------------------------- topology
@dataclass
class Host:
    """An endpoint: one namespace with one interface (``eth0`` unless told)."""

    ns: str
    ifname: str
    mac: str
    ip: str | None  # without prefix length


@dataclass
class Topology:
    """Namespaces and veth pairs sharing one prefix; :meth:`cleanup` removes them all."""

    prefix: str
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # root-namespace ends

    def name(self, short: str) -> str:
        """``prefix + short``, checked against the kernel's 15-character limit."""
        full = f"{self.prefix}{short}"
        if len(full) > 15:
            raise BenchError(f"name {full!r} is longer than 15 characters")
        return full

    def netns(self, short: str) -> str:
        """Create a namespace (loopback up); remove a leftover of the same name first."""
        ns = self.name(short)
        if ns in list_netns():
            delete_netns(ns)
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def _drop_link(self, name: str) -> None:
        if link_exists(name):
            sh("ip", "link", "del", name, check=False)

    def _setup_inner(self, ns: str, ifname: str, mac: str, cidr: str | None) -> None:
        sh("ip", "-n", ns, "link", "set", ifname, "address", mac)
        sh("ip", "netns", "exec", ns, "sysctl", "-qw",
           f"net.ipv6.conf.{ifname}.disable_ipv6=1", check=False)
        if cidr:
            sh("ip", "-n", ns, "addr", "add", cidr, "dev", ifname)
        sh("ip", "-n", ns, "link", "set", ifname, "up")

    def veth_direct(self, short: str, a: tuple[str, str, str | None],
                    b: tuple[str, str, str | None], ifname: str = "eth0") -> tuple[Host, Host]:
        """One veth pair joining two namespaces directly.

        ``a`` and ``b`` are ``(namespace, mac, cidr-or-None)``; both ends are
        called ``ifname`` inside their namespaces.
        """
        end_a, end_b = self.name(short + "a"), self.name(short + "b")
        self._drop_link(end_a)
        self._drop_link(end_b)
        sh("ip", "link", "add", end_a, "type", "veth", "peer", "name", end_b)
        self.links.append(end_a)  # until moved
        hosts = []
        for end, (ns, mac, cidr) in ((end_a, a), (end_b, b)):
            sh("ip", "link", "set", end, "netns", ns)
            sh("ip", "-n", ns, "link", "set", end, "name", ifname)
            self._setup_inner(ns, ifname, mac, cidr)
            hosts.append(Host(ns, ifname, mac, cidr.split("/")[0] if cidr else None))
        self.links.remove(end_a)
        return hosts[0], hosts[1]

    def veth_to_root(self, root_name: str, ns: str, mac: str, cidr: str | None,
                     ifname: str = "eth0") -> Host:
        """A veth pair: ``ifname`` inside ``ns``, ``root_name`` (prefixed) in the root namespace.

        The root end (what a switch port attaches to) is up, without IPv6.
        Returns the namespace side; the root end's full name is ``self.name(root_name)``.
        """
        outer = self.name(root_name)
        tmp = self.name(root_name + "p")
        self._drop_link(outer)
        self._drop_link(tmp)
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", tmp)
        self.links.append(outer)
        sh("ip", "link", "set", tmp, "netns", ns)
        sh("ip", "-n", ns, "link", "set", tmp, "name", ifname)
        self._setup_inner(ns, ifname, mac, cidr)
        sh("sysctl", "-qw", f"net.ipv6.conf.{outer}.disable_ipv6=1", check=False)
        sh("ip", "link", "set", outer, "up")
        return Host(ns, ifname, mac, cidr.split("/")[0] if cidr else None)

    def veth_between(self, short: str, a: tuple[str, str], b: tuple[str, str],
                     mac_b: str | None = None, cidr_a: str | None = None,
                     cidr_b: str | None = None, mtu: int | None = None) -> None:
        """A veth pair between two namespaces: ``a``/``b`` = (namespace, interface name).

        Both ends are up, without IPv6; ``mac_b``, the addresses and the MTU are
        set when given. The pair goes away with either namespace.
        """
        end_a, end_b = self.name(short + "a"), self.name(short + "b")
        for end in (end_a, end_b):
            self._drop_link(end)
        sh("ip", "link", "add", end_a, "type", "veth", "peer", "name", end_b)
        self.links.append(end_a)  # until moved
        for end, (ns, ifname), mac, cidr in ((end_a, a, None, cidr_a),
                                             (end_b, b, mac_b, cidr_b)):
            sh("ip", "link", "set", end, "netns", ns)
            sh("ip", "-n", ns, "link", "set", end, "name", ifname)
            if mac:
                sh("ip", "-n", ns, "link", "set", ifname, "address", mac)
            if mtu:
                sh("ip", "-n", ns, "link", "set", ifname, "mtu", str(mtu))
            sh("ip", "netns", "exec", ns, "sysctl", "-qw",
               f"net.ipv6.conf.{ifname}.disable_ipv6=1", check=False)
            if cidr:
                sh("ip", "-n", ns, "addr", "add", cidr, "dev", ifname)
            sh("ip", "-n", ns, "link", "set", ifname, "up")
        self.links.remove(end_a)  # gone with the namespaces

    def switch_namespace(self, short: str, ports: Sequence[tuple[str, str, str, str | None]],
                         underlay: Underlay | None = None) -> SwitchNs:
        """A namespace for a switch, its port ends, hosts behind them and an underlay.

        ``ports`` = (interface in the switch namespace, host namespace short name,
        host MAC, host CIDR or None): each host namespace gets ``eth0`` joined to
        that interface. ``underlay`` adds a veth from the switch namespace to a
        collector namespace (not a switch port), with the neighbour resolved, so
        the switch can send ERSPAN/GRE copies there; the switch namespace has no
        default route, so nothing it sends can leave the machine.
        """
        sw = self.netns(short)
        hosts: dict[str, Host] = {}
        for i, (ifname, host_short, mac, cidr) in enumerate(ports):
            ns = self.netns(host_short)
            self.veth_between(f"l{i}", (sw, ifname), (ns, "eth0"), mac, cidr_b=cidr)
            hosts[ifname] = Host(ns, "eth0", mac, cidr.split("/")[0] if cidr else None)
        collector = None
        if underlay is not None:
            col = self.netns(underlay.ns_short)
            self.veth_between("lu", (sw, underlay.ifname), (col, "eth0"), underlay.col_mac,
                              cidr_a=f"{underlay.host_ip}/30",
                              cidr_b=f"{underlay.col_ip}/30", mtu=underlay.mtu)
            sh(*in_ns(sw, "ping", "-c", "1", "-W", "2", underlay.col_ip))  # neighbour known
            collector = Host(col, "eth0", underlay.col_mac, underlay.col_ip)
        return SwitchNs(sw, hosts, collector, underlay)

    def cleanup(self) -> None:
        """Kill what runs in our namespaces, delete our links and namespaces; ignore errors."""
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for ns in self.namespaces:
            delete_netns(ns)
        self.links.clear()
        self.namespaces.clear()


@dataclass(frozen=True)
class Underlay:
    """An underlay /30 from a switch namespace to a collector namespace (not a port)."""

    ifname: str  # in the switch namespace
    ns_short: str  # the collector namespace, without the prefix
    host_ip: str
    col_ip: str
    col_mac: str
    mtu: int = 1600  # a full-size frame fits in ERSPAN III (40 bytes of IP+GRE+ERSPAN)


@dataclass
class SwitchNs:
    """What :meth:`Topology.switch_namespace` built."""

    ns: str
    hosts: dict[str, Host]  # by the port's interface in the switch namespace
    collector: Host | None
    underlay: Underlay | None


def list_netns() -> list[str]:
    """Names of the existing network namespaces."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def link_exists(name: str) -> bool:
    """Whether a root-namespace interface ``name`` exists."""
    return Path("/sys/class/net", name).exists()


def delete_netns(ns: str) -> None:
    """Kill every process inside ``ns`` (SIGKILL), then delete it; ignore errors."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    for pid in pids.split():
        with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def link_stats(ns: str, ifname: str) -> dict[str, int]:
    """The kernel's counters of ``ifname`` inside ``ns`` (rx/tx packets, rx bytes, drops)."""
    out = sh("ip", "-n", ns, "-s", "-j", "link", "show", "dev", ifname).stdout
    data = json.loads(out)[0]["stats64"]
    return {
        "rx_packets": int(data["rx"]["packets"]),
        "rx_bytes": int(data["rx"]["bytes"]),
        "rx_dropped": int(data["rx"]["dropped"]),
        "tx_packets": int(data["tx"]["packets"]),
        "tx_dropped": int(data["tx"]["dropped"]),
    }


# ----------------------------------------------------------------------- switch
class Switch:
    """A ``vspan up -c CONFIG`` subprocess pinned to one CPU; use as a context manager.

    The config text should set ``switch.control_socket`` to :attr:`socket`
    (write ``{socket}``; it is substituted, no other braces are touched). The
    pid is written to ``pidfile`` so an interrupted run's switch can be killed
    next time (:func:`kill_stale_switch`).
    """

    def __init__(self, config_text: str, workdir: str, cpu: int | None, pidfile: Path,
                 name: str = "switch", ns: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.ns = ns  # run inside this namespace (``ip netns exec``), else in ours
        self.env = env  # added to the switch's environment (e.g. VSPAN_WAKE)
        self.workdir = workdir
        self.socket = os.path.join(workdir, f"{name}.sock")
        self.config_path = os.path.join(workdir, f"{name}.yaml")
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.state_dir = os.path.join(workdir, f"{name}.state")
        self.cpu = cpu
        self.pidfile = pidfile
        self.proc: subprocess.Popen[bytes] | None = None
        with open(self.config_path, "w", encoding="utf-8") as fh:
            fh.write(config_text.replace("{socket}", self.socket))

    def __enter__(self) -> Switch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def command(self) -> list[str]:
        """The argv running the switch: pinned to :attr:`cpu`, inside :attr:`ns` if set
        (``ip netns exec`` and taskset exec it: the pid is the switch's), with its own
        state directory (every run starts fresh)."""
        argv = [*VSPAN, "up", "-c", self.config_path, "--state-dir", self.state_dir]
        if self.ns:
            return in_ns(self.ns, *argv, cpu=self.cpu)
        return [*(["taskset", "-c", str(self.cpu)] if self.cpu is not None else []), *argv]

    def spawn(self) -> None:
        """Start the switch process without waiting for it (its pid goes to the pidfile)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log,
                                         cwd=str(REPO), start_new_session=True,
                                         env={**os.environ, **self.env} if self.env else None)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.write_text(f"{self.proc.pid} {self.config_path}\n", encoding="utf-8")

    def start(self, timeout: float = 30) -> None:
        """Start the switch and wait until its control API answers."""
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"vspan up exited ({self.proc.returncode}): {self.log_tail()}")
            if os.path.exists(self.socket):
                try:
                    self.cli("show", "ports", "--json")
                    return
                except BenchError:
                    pass
            time.sleep(0.1)
        raise BenchError(f"vspan up did not answer within {timeout} s: {self.log_tail()}")

    def cpu_seconds(self) -> float:
        """CPU seconds the switch process has used so far (0 when it is not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        try:
            return cpu_seconds(self.proc.pid)
        except (OSError, ValueError, IndexError):
            return 0.0

    def rss_bytes(self) -> int:
        """The switch process's resident memory now (0 when it is not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return 0
        try:
            return rss_bytes(self.proc.pid)
        except (OSError, ValueError):
            return 0

    def alive(self) -> bool:
        """Whether the switch process still runs."""
        return self.proc is not None and self.proc.poll() is None

    def cli(self, *args: str) -> str:
        """Run a ``vspan`` CLI command against this switch; return stdout."""
        proc = sh(*VSPAN, *args, "--socket", self.socket, check=False, timeout=30)
        if proc.returncode != 0:
            raise BenchError(f"vspan {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def json(self, *args: str) -> Any:
        """A ``vspan show ... --json`` answer, decoded."""
        return json.loads(self.cli(*args, "--json"))

    def stop(self) -> None:
        """SIGTERM, wait, SIGKILL if needed; remove the pidfile."""
        stop_process(self.proc)
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()

    def log_tail(self, lines: int = 15) -> str:
        """The end of the switch's log (stdout and stderr)."""
        try:
            text = Path(self.log_path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"


def kill_stale_switch(pidfile: Path) -> None:
    """Kill the switch an interrupted earlier run left behind (only if it is still vspan)."""
    try:
        pid_s, _, cfg = pidfile.read_text(encoding="utf-8").strip().partition(" ")
        pid = int(pid_s)
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        cmdline = ""
    if "vspan" in cmdline and cfg and cfg in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[str]:
    """A temporary directory, removed afterwards."""
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------- runners
def wait_listening(ns: str, port: int, timeout: float = 5) -> None:
    """Wait until a TCP socket listens on ``port`` inside ``ns``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = sh("ip", "netns", "exec", ns, "ss", "-Hltn", f"sport = :{port}", check=False)
        if out.stdout.strip():
            return
        time.sleep(0.05)
    raise MeasureError(f"nothing listens on TCP port {port} in {ns} after {timeout} s")


@dataclass
class TcpResult:
    """One iperf3 run."""

    gbps: float
    retransmits: int


def iperf3_tcp(client: Host, server: Host, seconds: float, cpu: int | None,
               port: int = 5201) -> TcpResult:
    """TCP throughput client -> server (iperf3, one stream) in Gbit/s, as received."""
    if server.ip is None:
        raise BenchError(f"{server.ns} has no address for iperf3")
    srv = subprocess.Popen(in_ns(server.ns, "iperf3", "-s", "-1", "-p", str(port), cpu=cpu),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        wait_listening(server.ns, port)
        argv = in_ns(client.ns, "iperf3", "-c", server.ip, "-p", str(port), "-t",
                     f"{seconds:g}", "-J", "--connect-timeout", "3000", cpu=cpu)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
        except subprocess.TimeoutExpired as err:
            raise MeasureError(f"iperf3 did not finish within {seconds + 30:g} s") from err
        try:
            data = json.loads(proc.stdout)
        except json.JSONDecodeError as err:
            raise MeasureError(f"iperf3 ({proc.returncode}): "
                               f"{oneline(proc.stderr or proc.stdout)[:300]}") from err
        if "error" in data:
            raise MeasureError(f"iperf3: {data['error']}")
        end = data["end"]
        bps = float(end["sum_received"]["bits_per_second"])
        retr = int(end.get("sum_sent", {}).get("retransmits", 0))
        return TcpResult(gbps=bps / 1e9, retransmits=retr)
    finally:
        stop_process(srv, timeout=3)


@dataclass
class PingResult:
    """One ping series."""

    avg_us: float
    min_us: float
    max_us: float
    p50_us: float
    sent: int
    received: int
    p99_us: float = 0.0


_RTT_RE = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")
_PING_COUNT_RE = re.compile(r"(\d+) packets transmitted, (\d+) received")
_PING_TIME_RE = re.compile(r"time=([\d.]+) ms")


def ping_rtt(src: Host, dst_ip: str, count: int, interval: float, cpu: int | None) -> PingResult:
    """ICMP echo RTT (avg/min/max/median in µs) from ``src`` to ``dst_ip``."""
    argv = in_ns(src.ns, "ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "1",
                 dst_ip, cpu=cpu)
    proc = sh(*argv, check=False, timeout=count * (interval + 1) + 10)
    counts = _PING_COUNT_RE.search(proc.stdout)
    rtt = _RTT_RE.search(proc.stdout)
    if counts is None or rtt is None:
        raise MeasureError(f"ping {dst_ip} from {src.ns}: no replies "
                           f"({oneline(proc.stdout + proc.stderr)[-200:]})")
    times = [float(t) * 1000 for t in _PING_TIME_RE.findall(proc.stdout)]
    avg = float(rtt.group(2)) * 1000
    return PingResult(avg_us=avg, min_us=float(rtt.group(1)) * 1000,
                      max_us=float(rtt.group(3)) * 1000,
                      p50_us=statistics.median(times) if times else avg,
                      sent=int(counts.group(1)), received=int(counts.group(2)),
                      p99_us=percentile(times, 99) if times else avg)


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (linear interpolation between closest ranks)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    pos = (len(ordered) - 1) * pct / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def trafgen_udp_config(src: Host, dst: Host, frame_len: int = 60, dport: int | str = 9,
                       sport: int | str = 40000) -> str:
    """A trafgen packet: Ethernet/IPv4/UDP from ``src`` to ``dst``, ``frame_len`` bytes.

    ``frame_len`` excludes the FCS (60 bytes are 64 on the wire). Checksums are
    computed by trafgen's ``ipv4()``/``udp()`` helpers. ``sport``/``dport`` may be
    trafgen functions (e.g. ``"dinc(10000, 13124)"``) to vary the flow per frame.
    """
    pad = frame_len - 14 - 20 - 8
    if pad < 0 or src.ip is None or dst.ip is None:
        raise BenchError("trafgen needs addresses and at least 42-byte frames")
    return (
        "{\n"
        f"  eth(da={dst.mac}, sa={src.mac}),\n"
        f"  ipv4(da={dst.ip}, sa={src.ip}, ttl=64),\n"
        f"  udp(sp={sport}, dp={dport}),\n"
        f"  fill(0x00, {pad})\n"
        "}\n"
    )


@dataclass
class PpsResult:
    """Frames per second during one trafgen window."""

    offered_pps: float  # the sender interface's tx counter
    delivered_pps: float  # the receiver interface's rx counter
    extra_pps: dict[str, float]  # other watched interfaces' rx rates (e.g. a sniffer), by ns
    probes: dict[str, float]  # each probe's increase per second (e.g. CPU-seconds/s)
    seconds: float


Probe = Callable[[], float]


def _rate_window(watch: dict[str, tuple[str, str, str]], probes: dict[str, Probe],
                 seconds: float) -> tuple[dict[str, float], float]:
    """Read counters ``{label: (ns, ifname, counter)}`` and probes twice, ``seconds`` apart.

    Returns the increase per second of each, and the measured window length.
    """
    def snap() -> tuple[float, dict[str, float]]:
        t0 = time.monotonic()
        vals: dict[str, float] = {k: float(link_stats(ns, ifn)[ctr])
                                  for k, (ns, ifn, ctr) in watch.items()}
        vals.update({k: fn() for k, fn in probes.items()})
        return (t0 + time.monotonic()) / 2, vals

    t_a, a = snap()
    time.sleep(seconds)
    t_b, b = snap()
    elapsed = t_b - t_a
    return {k: (b[k] - a[k]) / elapsed for k in a}, elapsed


def trafgen_pps(src: Host, dst: Host, seconds: float, cpu: int | None, workdir: str,
                warmup: float = 1.0, frame_len: int = 60,
                also_watch: Sequence[Host] = (),
                probes: dict[str, Probe] | None = None, sport: int | str = 40000,
                dport: int | str = 9) -> PpsResult:
    """Blast ``frame_len``-byte UDP frames from ``src`` to ``dst`` with one trafgen process.

    Rates are taken from interface counters over a ``seconds`` window after a
    ``warmup`` (so start-up does not count): offered = ``src`` tx, delivered =
    ``dst`` rx, and the rx rate of every host in ``also_watch``; ``probes``
    (e.g. a process's CPU seconds) are read at the same two moments. ``sport``
    and ``dport`` go to :func:`trafgen_udp_config`.
    """
    cfg = os.path.join(workdir, f"trafgen-{src.ns}.cfg")
    with open(cfg, "w", encoding="utf-8") as fh:
        fh.write(trafgen_udp_config(src, dst, frame_len, dport=dport, sport=sport))
    log_path = os.path.join(workdir, f"trafgen-{src.ns}.log")
    # -P 1: one sending process (default is one per CPU); leave the system's socket
    # memory sysctls and IRQ affinities alone (0.6.8 rejects the short form -A).
    argv = in_ns(src.ns, "trafgen", "-o", src.ifname, "-i", cfg, "-P", "1", "--no-sock-mem",
                 "--notouch-irq", cpu=cpu)
    with open(log_path, "wb") as log:
        gen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        time.sleep(warmup)
        if gen.poll() is not None:
            text = Path(log_path).read_text(errors="replace")
            raise MeasureError(f"trafgen exited ({gen.returncode}): {oneline(text)[-300:]}")
        watch = {"offered": (src.ns, src.ifname, "tx_packets"),
                 "delivered": (dst.ns, dst.ifname, "rx_packets")}
        for host in also_watch:
            watch[f"rx:{host.ns}"] = (host.ns, host.ifname, "rx_packets")
        rates, elapsed = _rate_window(watch, {f"probe:{k}": fn for k, fn in
                                              (probes or {}).items()}, seconds)
        if gen.poll() is not None:
            raise MeasureError(f"trafgen stopped early ({gen.returncode})")
    finally:
        # SIGINT to the whole group: trafgen's parent does not pass it to its child
        stop_process(gen, sig=signal.SIGINT, timeout=10)
    return PpsResult(
        offered_pps=rates["offered"], delivered_pps=rates["delivered"],
        extra_pps={k[3:]: v for k, v in rates.items() if k.startswith("rx:")},
        probes={k[6:]: v for k, v in rates.items() if k.startswith("probe:")},
        seconds=elapsed)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for pid {pid}")


# ------------------------------------------------------------------- reporting
def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 2, failed: int = 0, total: int = 0) -> str:
    """A table cell: the value, ``-`` when missing, and how many runs failed."""
    text = "fail" if value is None else f"{value:.{digits}f}"
    if failed and total:
        text += f" ({failed}/{total} failed)"
    return text


def _cpuinfo_field(name: str) -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, val = line.partition(":")
            if key.strip() == name:
                return val.strip()
    except OSError:
        pass
    return "?"


def _tool_version(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True)
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0] if text else "?"


def loadavg() -> str:
    """The 1/5/15-minute load averages (other people's work shows up here)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])
    except OSError:
        return "?"


BUSY_PATTERNS = {  # substring of a command line -> label
    "trafgen": "trafgen", "iperf3": "iperf3", "vspan.cli.main up": "vspan up",
    "bin/vspan up": "vspan up", "pytest": "pytest", "tshark": "tshark", "tcpdump": "tcpdump",
    "bench/bench_": "bench script",
}


def busy_processes(exclude: Sequence[int] = ()) -> list[str]:
    """Other traffic generators, switches, test runs and benchmarks running right now.

    Returns a short label per process (e.g. ``trafgen``, ``pytest``), leaving out
    ``exclude``, this process and its children: a record of who else loaded the
    machine during a measurement.
    """
    me = os.getpid()
    skip = {me, *exclude}
    found: list[str] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me:
            continue
        for pat, label in BUSY_PATTERNS.items():
            if pat in cmd:
                found.append(label)
                break
    return sorted(found)


def machine_description() -> list[tuple[str, str]]:
    """(label, value) pairs describing this machine and the software measured."""
    flags = _cpuinfo_field("flags").split()
    mem_kb = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = line.split()[1]
    mem = f"{int(mem_kb) / 1024 / 1024:.1f} GiB" if mem_kb.isdigit() else "?"
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "src"],
                           capture_output=True, text=True).stdout.strip()
    return [
        ("date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPUs (nproc)", str(os.cpu_count())),
        ("CPU model", _cpuinfo_field("model name")),
        ("virtualised", "yes (hypervisor flag)" if "hypervisor" in flags else "no flag"),
        ("memory", mem),
        ("kernel", platform.release()),
        ("Python", platform.python_version()),
        ("vspan commit", commit + (" (src/ has uncommitted changes)" if dirty else "")),
        ("iperf3", _tool_version("iperf3", "--version")),
        ("trafgen", _tool_version("trafgen", "--version")),
    ]


def update_section(key: str, body: str, path: Path = RESULTS_MD,
                   markers: tuple[str, str] | None = None) -> None:
    """Replace this script's section of RESULTS.md (between its markers: ``BEGIN key`` /
    ``END key`` comments unless ``markers`` names older ones), or append it."""
    begin, end = markers or (f"<!-- BEGIN {key} -->", f"<!-- END {key} -->")
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    if path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        text = ("# vspan benchmark results\n\n"
                "Each section is written by one script in `bench/` between its own "
                "`BEGIN`/`END` markers; rerunning a script replaces only its section.\n")
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + block.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text, encoding="utf-8")


# ---- the shared shape of a benchmark's main() -------------------------------------

BENCH_TOOLS = ("ip", "taskset", "ping", "iperf3", "trafgen", "ss")


def bench_arguments(description: str | None, quick_help: str) -> argparse.ArgumentParser:
    """The options every switch benchmark takes (a script may add its own)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--runs", type=int, default=None, help="runs (default 3)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="seconds per measurement window (default 5)")
    ap.add_argument("--write", action="store_true", help="write RESULTS.md even with --quick")
    ap.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    ap.add_argument("--results", type=Path, default=RESULTS_MD, help="results file")
    ap.add_argument("--json", type=Path, default=None, help="also dump raw samples as JSON")
    return ap


def apply_plan_options(plan: Any, args: argparse.Namespace) -> bool:
    """Apply ``--runs``/``--seconds`` to ``plan``; return whether RESULTS.md is written."""
    if args.runs is not None:
        plan.runs = max(1, args.runs)
    if args.seconds is not None:
        plan.seconds = max(0.5, args.seconds)
    return bool(not args.no_write and (args.write or not args.quick))


def guarded_measure(script: str, measure: Callable[[], T]) -> tuple[T | None, int]:
    """Check root, tools and two CPUs, then run ``measure``.

    SIGTERM becomes KeyboardInterrupt so the measurement's ``finally`` blocks
    remove namespaces and switches. Returns ``(result, 0)``, or ``(None, exit
    status)`` after saying why on stderr.
    """
    def on_term(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    name = Path(script).stem
    try:
        require_root(f"bench/{name}.py")
        require_tools(*BENCH_TOOLS)
        if (n := len(os.sched_getaffinity(0))) < 2:
            raise BenchError(f"needs 2 CPUs (generators on CPU0, switch on CPU1); "
                             f"this process may use {n}")
        return measure(), 0
    except BenchError as err:
        sys.stderr.write(f"{name}: {err}\n")
        return None, 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{name}: interrupted; namespaces and switch removed\n")
        return None, 130


def dump_json(path: Path | None, payload: dict[str, Any]) -> None:
    """Write raw samples as JSON when ``--json`` asked for it."""
    if path is not None:
        path.write_text(json.dumps(payload, indent=2), encoding="utf-8")


def progress(name: str) -> Callable[[str], None]:
    """A benchmark's progress lines on stderr, ``[name] message``."""
    def log(msg: str) -> None:
        sys.stderr.write(f"[{name}] {msg}\n")
        sys.stderr.flush()
    return log


def stamped(plan: Any, run: Callable[[], T], machine: bool = True) -> Callable[[], T]:
    """``run`` with the load averages around it put into ``plan`` (``load_before``,
    ``load_after``) and, with ``machine``, the machine described first."""
    def measure() -> T:
        plan.load_before = loadavg()
        if machine:
            plan.machine = machine_description()
        out = run()
        plan.load_after = loadavg()
        return out
    return measure


def publish(section: str, args: argparse.Namespace, write: bool, key: str,
            payload: dict[str, Any] | None = None, log: Callable[[str], None] | None = None,
            markers: tuple[str, str] | None = None) -> None:
    """A measured section: printed, the raw ``payload`` dumped when ``--json`` asked,
    and with ``write`` put into RESULTS.md (``args.results``) under ``key`` (or
    ``markers``), said by ``log``."""
    sys.stdout.write(section)
    if payload is not None:
        dump_json(args.json, payload)
    if write:
        update_section(key, section, args.results, markers)
        if log is not None:
            log(f"wrote {args.results}")
