"""Open vSwitch run by hand for the benchmarks: a private run directory, no systemd.

``ovsdb-server`` and ``ovs-vswitchd`` (userspace ``netdev`` datapath only: no
kernel module) run as our children with pidfiles, sockets and logs in one
directory of their own; ``ovs-vswitchd`` runs inside the switch's namespace,
pinned to a CPU. :meth:`OvsDaemon.stop` deletes the bridges first (a netdev
bridge leaves a tap device behind otherwise), then stops both daemons;
:func:`kill_stale_ovs` removes what an interrupted earlier run left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from common import BenchError, cpu_seconds, in_ns, oneline, stop_process

SCHEMA_CANDIDATES = (Path("/usr/share/openvswitch/vswitch.ovsschema"),
                     Path("/usr/local/share/openvswitch/vswitch.ovsschema"))
TOOLS = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl")


def ovs_missing() -> str | None:
    """Why OVS cannot run here (tools or schema missing), or None."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return (f"Open vSwitch not installed ({', '.join(missing)} missing; "
                f"run `sudo bash bench/setup.sh` or pass --setup)")
    if not any(p.exists() for p in SCHEMA_CANDIDATES):
        return "Open vSwitch schema vswitch.ovsschema not found"
    return None


def kill_stale_ovs(rundir: Path) -> None:
    """Kill OVS daemons an interrupted run left in ``rundir`` (only if they are OVS's)."""
    for name in ("ovs-vswitchd", "ovsdb-server"):
        pidfile = rundir / f"{name}.pid"
        try:
            pid = int(pidfile.read_text(encoding="utf-8").split()[0])
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
        if name in cmd and str(rundir) in cmd:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(rundir, ignore_errors=True)


class OvsDaemon:
    """``ovsdb-server`` + ``ovs-vswitchd`` in ``rundir``; vswitchd inside ``ns`` on ``cpu``."""

    def __init__(self, rundir: Path, ns: str, cpu: int | None) -> None:
        self.rundir = rundir
        self.ns = ns
        self.cpu = cpu
        self.db = f"unix:{rundir}/db.sock"
        self.env = {**os.environ, "OVS_RUNDIR": str(rundir), "OVS_LOGDIR": str(rundir),
                    "OVS_DBDIR": str(rundir), "OVS_SYSCONFDIR": str(rundir)}
        self.dbserver: subprocess.Popen[bytes] | None = None
        self.vswitchd: subprocess.Popen[bytes] | None = None
        self.bridges: list[str] = []

    # ------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 20) -> None:
        """Create the database, start both daemons, wait until vswitchd answers."""
        if (why := ovs_missing()) is not None:
            raise BenchError(why)
        kill_stale_ovs(self.rundir)
        self.rundir.mkdir(parents=True, exist_ok=True)
        schema = next(p for p in SCHEMA_CANDIDATES if p.exists())
        self._run("ovsdb-tool", "create", str(self.rundir / "conf.db"), str(schema))
        r = str(self.rundir)
        self.dbserver = self._spawn(
            ["ovsdb-server", f"{r}/conf.db", f"--remote=punix:{r}/db.sock",
             f"--pidfile={r}/ovsdb-server.pid", f"--unixctl={r}/ovsdb-server.ctl",
             f"--log-file={r}/ovsdb-server.log", "-vconsole:off"], "ovsdb-server")
        self._wait_for(Path(r, "db.sock"), self.dbserver, "ovsdb-server", timeout)
        self.vsctl("--no-wait", "init")
        argv = in_ns(self.ns, "ovs-vswitchd", self.db, f"--pidfile={r}/ovs-vswitchd.pid",
                     f"--unixctl={r}/ovs-vswitchd.ctl", f"--log-file={r}/ovs-vswitchd.log",
                     "-vconsole:off", cpu=self.cpu)
        self.vswitchd = self._spawn(argv, "ovs-vswitchd")
        self._wait_for(Path(r, "ovs-vswitchd.ctl"), self.vswitchd, "ovs-vswitchd", timeout)
        self.appctl("version")

    def stop(self) -> None:
        """Delete our bridges (no tap left behind), stop both daemons, remove the run dir."""
        for br in list(self.bridges):
            with contextlib.suppress(BenchError):
                self.vsctl("--if-exists", "del-br", br)
            self.bridges.remove(br)
        for proc in (self.vswitchd, self.dbserver):
            stop_process(proc, timeout=5)
        self.vswitchd = self.dbserver = None
        shutil.rmtree(self.rundir, ignore_errors=True)

    def __enter__(self) -> OvsDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ commands
    def vsctl(self, *args: str, timeout: float = 20) -> str:
        """``ovs-vsctl --db=... ARGS`` (waits for vswitchd to apply unless ``--no-wait``)."""
        return self._run("ovs-vsctl", f"--db={self.db}", f"--timeout={int(timeout)}", *args,
                         timeout=timeout + 5)

    def appctl(self, *args: str) -> str:
        """``ovs-appctl -t <vswitchd's control socket> ARGS``."""
        return self._run("ovs-appctl", "-t", str(self.rundir / "ovs-vswitchd.ctl"), *args)

    def add_bridge(self, name: str, ports: list[str]) -> None:
        """A ``datapath_type=netdev`` bridge (action NORMAL: MAC learning) with ``ports``."""
        self.bridges.append(name)
        args = ["add-br", name, "--", "set", "bridge", name, "datapath_type=netdev"]
        for port in ports:
            args += ["--", "add-port", name, port]
        self.vsctl(*args)

    def add_mirror(self, bridge: str, source: str, output: str) -> None:
        """A local mirror: frames ``source`` sends and receives, copied to port ``output``."""
        self.vsctl("--", "--id=@p", "get", "port", source,
                   "--", "--id=@o", "get", "port", output,
                   "--", "--id=@m", "create", "mirror", "name=bench",
                   "select-src-port=@p", "select-dst-port=@p", "output-port=@o",
                   "--", "set", "bridge", bridge, "mirrors=@m")

    def cpu_seconds(self) -> float:
        """CPU seconds both daemons have used so far (all threads)."""
        total = 0.0
        for proc in (self.vswitchd, self.dbserver):
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += cpu_seconds(proc.pid)
        return total

    def vswitchd_pid(self) -> int | None:
        """The pid of ovs-vswitchd itself (``ip netns exec`` and taskset exec it)."""
        return self.vswitchd.pid if self.vswitchd is not None else None

    def log_tail(self, lines: int = 8) -> str:
        """The end of vswitchd's log."""
        try:
            text = (self.rundir / "ovs-vswitchd.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    # ------------------------------------------------------------ helpers
    def _run(self, *argv: str, timeout: float = 20) -> str:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=self.env,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise BenchError(f"{' '.join(argv[:3])} timed out") from err
        if proc.returncode != 0:
            raise BenchError(f"{' '.join(argv[:4])} failed ({proc.returncode}): "
                             f"{oneline(proc.stderr or proc.stdout)[:300]}")
        return proc.stdout

    def _spawn(self, argv: list[str], what: str) -> subprocess.Popen[bytes]:
        with open(self.rundir / f"{what}.out", "ab") as out:
            return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self.env,
                                    start_new_session=True)

    def _wait_for(self, path: Path, proc: subprocess.Popen[bytes], what: str,
                  timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out = (self.rundir / f"{what}.out").read_text(errors="replace")
                raise BenchError(f"{what} exited ({proc.returncode}): {oneline(out)[-300:]}")
            if path.exists():
                return
            time.sleep(0.05)
        raise BenchError(f"{what} did not create {path.name} within {timeout:g} s")
