"""A host agent's part in migrations (see :mod:`vspan.control.dvs.migration` for the
phases).

The agent's reconcile consults :meth:`Migrator.unavailable` (a leaving port is left
out once the destination is prepared; an arriving port is kept out until its
state can go in) and runs :meth:`Migrator.before` / :meth:`Migrator.after` on the
engine thread around every reload: a leaving port's state is taken out in the
same engine step that removes it, an arriving port's state goes in in the step
that adds it, before it handles a frame. The worker thread (:meth:`run`) writes
the phases, moves the VM's interface on test machines, and announces the VM's
MACs from the destination.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vspan.config.diff import ChangeSet
from vspan.control.assemble import switch_policy
from vspan.control.dvs.document import Meta, dumps, loads
from vspan.control.dvs.migration import (
    advanced,
    describe,
    is_active,
    lost_copies,
    moved_port_ops,
    switch_over,
    write_phase,
)
from vspan.control.store.base import Compare, KeyValue, Put, StoreError, StoreUnavailable
from vspan.datapath.engine import Engine
from vspan.packet.addr import mac_bytes, mac_str
from vspan.packet.arp import rarp_announce
from vspan.policy.portstate import export_port, import_port

if TYPE_CHECKING:
    from vspan.control.dvs.hostagent import HostAgent

log = logging.getLogger(__name__)

#: QEMU's announce-self: 5 rounds, the first after 50 ms, each next 100 ms later than the
#: one before (50, 150, 250, 350, 450 ms apart; none longer than 550 ms)
ANNOUNCE_DELAYS = (0.05, 0.15, 0.25, 0.35, 0.45)
INTERFACE_TIMEOUT = 30.0  # seconds an arriving port waits for its interface
FIRST_FRAME_WAIT = 3.0  # seconds after the announcements to wait for the first frame
KERNEL_STATS = ("rx_packets", "tx_packets", "rx_dropped", "tx_dropped")


def kernel_stats(ifname: str) -> dict[str, int] | None:
    """The interface's packet counters as the kernel keeps them (None: no such device)."""
    base = Path("/sys/class/net") / ifname / "statistics"
    try:
        return {k: int((base / k).read_text()) for k in KERNEL_STATS}
    except (OSError, ValueError):
        return None


def boot_id() -> str:
    """This kernel's boot id (two hosts with the same one are namespaces of one machine)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def move_interface(ifname: str, pid: int) -> str:
    """Hand ``ifname`` to the network namespace of process ``pid``; '' or the error."""
    try:
        proc = subprocess.run(["ip", "link", "set", "dev", ifname, "netns", str(pid)],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    return "" if proc.returncode == 0 else (proc.stderr.strip() or f"ip exited {proc.returncode}")


def _wall(engine: Engine, t: float) -> float | None:
    """An engine clock reading as wall-clock time (None for 0: never)."""
    if not t:
        return None
    return t + (time.time() - engine.clock())


class Migrator:
    """Migrations from and to one host (see the module docstring)."""

    def __init__(self, ha: HostAgent, move_interfaces: bool = True,
                 stats: Callable[[str], dict[str, int] | None] = kernel_stats) -> None:
        self.ha = ha
        self.move_interfaces = move_interfaces
        self.stats = stats
        self.boot_id = boot_id()
        self.exported: dict[str, dict[str, Any]] = {}  # migration id -> state taken out
        self.ready: dict[str, dict[str, Any]] = {}  # migration id -> state to put in
        self.attached: dict[str, dict[str, Any]] = {}  # migration id -> attach facts
        self.restore: dict[str, dict[str, Any]] = {}  # port -> own state to put back
        self.announced: set[str] = set()  # ids whose RARP announcement this process runs
        self.annotated: set[str] = set()  # ids written into this host's captures
        self.errors: dict[str, str] = {}  # id -> last error of this host's part
        self.done = 0
        self._wake = threading.Event()
        self._waiting = False

    # ------------------------------------------------------------- reconcile
    def records(self) -> dict[str, dict[str, Any]]:
        """Active migration records by port."""
        out = {}
        for port in list(self.ha.index.migrations):
            rec = self.ha.index.migration(port)
            if rec is not None and is_active(rec):
                out[port] = rec
        return out

    def unavailable(self) -> dict[str, str]:
        """Ports to leave out of this host's switch now, with the reason."""
        host = self.ha.host
        out: dict[str, str] = {}
        for port, rec in self.records().items():
            if rec.get("from") == host and rec["phase"] == "prepared":
                out[port] = f"migrating to {rec['to']} (migration {rec['id']})"
            elif rec.get("to") == host and rec["phase"] in ("exported", "moved") \
                    and rec["id"] not in self.ready and rec["id"] not in self.attached:
                out[port] = (f"arriving from {rec['from']}: waiting for its interface and "
                             f"state (migration {rec['id']})")
        return out

    def before(self, engine: Engine, changes: ChangeSet) -> None:
        """Engine thread, before a reload: take out the state of leaving ports it removes;
        read the kernel counters of arriving ports before they open."""
        host = self.ha.host
        recs = self.records()
        for port in changes.ports_removed:
            rec = recs.get(port)
            if rec is not None and rec.get("from") == host and rec["phase"] == "prepared":
                self.exported[rec["id"]] = self._export(engine, port, rec)
        for port in changes.ports_added:
            rec = recs.get(port)
            if rec is not None and rec["id"] in self.ready:
                self.ready[rec["id"]]["kernel_at_attach"] = self.stats(rec["interface"])

    def after(self, engine: Engine, changes: ChangeSet) -> None:
        """Engine thread, after a reload: put the state into arriving ports it added."""
        recs = self.records()
        for port in changes.ports_added:
            rec = recs.get(port)
            if rec is not None and rec["id"] in self.ready:
                state = self.ready.pop(rec["id"])
                self.attached[rec["id"]] = self._import(engine, port, state)
            elif port in self.restore:  # a migration aborted after this host let go
                self._import(engine, port, self.restore.pop(port))

    def _export(self, engine: Engine, port: str, rec: dict[str, Any]) -> dict[str, Any]:
        rt = engine.state.port(port)
        c = rt.counters
        now = engine.clock()
        macs = sorted({(vlan, mac_str(mac)) for (vlan, mac), e in engine.state.fdb.entries.items()
                       if e.port == rt.index and not e.static})
        return {"host": self.ha.host, "detached_at": time.time(),
                "last_frame": _wall(engine, max(c.last_rx, c.last_tx)),
                "counters": c.export(), "kernel": self.stats(rec["interface"]),
                "macs": [[v, m] for v, m in macs],
                "policy": export_port(switch_policy(engine), port, now)}

    def _import(self, engine: Engine, port: str, state: dict[str, Any]) -> dict[str, Any]:
        rt = engine.state.port(port)
        rt.counters.carry(state.get("counters", {}))
        counts: dict[str, int] = {}
        try:
            counts = import_port(switch_policy(engine), port, state.get("policy", {"format": 1}),
                                 engine.clock())
        except ValueError as err:
            counts = {"error": 1}
            log.error("port %s: its state could not be imported: %s", port, err)
        return {"host": self.ha.host, "attached_at": time.time(), "imported": counts,
                "kernel": state.get("kernel_at_attach"),
                "counters": rt.counters.as_dict()}

    def report(self) -> dict[str, Any]:
        """This host's part of migrations under way (for its status)."""
        out: dict[str, Any] = {}
        for port, rec in self.records().items():
            if self.ha.host not in (rec.get("from"), rec.get("to")):
                continue
            out[port] = {"id": rec["id"], "phase": rec["phase"],
                         "role": "source" if rec.get("from") == self.ha.host else "destination",
                         "error": self.errors.get(rec["id"], "")}
        return out

    # ----------------------------------------------------------------- worker
    def wake(self) -> None:
        """Something changed: look at the records again."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """The worker thread: act on records until ``stop``."""
        while not stop.is_set():
            self._wake.wait(0.005 if self._waiting else 0.5)
            self._wake.clear()
            self._waiting = False
            if self.ha.store_state != "connected" or self.ha.refused:
                continue
            try:
                self.step()
            except StoreUnavailable as err:
                log.warning("migration: store unreachable: %s", err)
            except StoreError as err:
                log.error("migration: %s", err)

    def step(self) -> None:
        """One look at every active record: do this host's part of each."""
        host = self.ha.host
        for port, rec in self.records().items():
            kv = self.ha.index.migrations.get(port)
            if kv is None:
                continue
            phase = rec["phase"]
            if phase == "attached":
                self._annotate(rec)
            if rec.get("to") == host:
                if phase == "requested":
                    self._prepare(kv, rec)
                elif phase in ("exported", "moved"):
                    self._arrive(kv, rec)
            if rec.get("from") == host:
                if phase == "prepared":
                    self._leave(kv, rec)
                elif phase == "exported":
                    self._move(kv, rec)
        for port in list(self.ha.index.migrations):  # ended ones: captures, own state back
            ended = self.ha.index.migration(port)
            if ended is not None and ended.get("phase") == "done":
                self._annotate(ended)
            if ended is not None and ended.get("phase") == "aborted" \
                    and ended["id"] in self.exported and ended.get("from") == host:
                self.restore[port] = self.exported.pop(ended["id"])
                self.ha.reconcile("migration aborted: port back")

    def _write(self, kv: KeyValue, rec: dict[str, Any], phase: str, note: str = "",
               **fields: Any) -> bool:
        new = advanced(rec, phase, self.ha.host, note, **fields)
        ok = write_phase(self.ha.store, self.ha.keys, kv, new)
        if ok:
            log.info("migration %s of %s: %s%s%s", rec["id"], rec["port"], phase,
                     f" ({note})" if note else "",
                     f": {fields['error']}" if fields.get("error") else "")
        return ok

    def _prepare(self, kv: KeyValue, rec: dict[str, Any]) -> None:
        """Destination: can this host take the port?"""
        dvs = self.ha.index.config()
        port = rec["port"]
        why = ""
        if self.ha.host not in dvs.hosts:
            why = f"host {self.ha.host} is not declared in the switch"
        elif port not in dvs.ports:
            why = f"port {port} is not in the switch any more"
        elif self._mover(rec["from"]) and self.ha.iface_exists(rec["interface"]):
            why = (f"an interface named {rec['interface']} exists on {self.ha.host} already: "
                   "the VM's interface cannot come here")
        if why:
            self._write(kv, rec, "failed", error=why)
            return
        self._write(kv, rec, "prepared")

    def _same_machine(self, host: str) -> bool:
        live = self.ha.index.live.get(host)
        return live is not None and bool(self.boot_id) and live.boot_id == self.boot_id

    def _mover(self, source: str) -> bool:
        """Whether host ``source``'s agent hands the VM's interface over itself."""
        live = self.ha.index.live.get(source)
        return self._same_machine(source) and live is not None \
            and "move-interfaces" in live.features

    def _leave(self, kv: KeyValue, rec: dict[str, Any]) -> None:
        """Source: detach the port (its state taken out), write it with the new placement."""
        mid = rec["id"]
        if mid not in self.exported:
            self.ha.reconcile(f"migration {mid}: detaching {rec['port']}")
        state = self.exported.get(mid)
        if state is None:  # not attached here (agent restarted, interface gone): say so
            state = {"host": self.ha.host, "detached_at": time.time(), "last_frame": None,
                     "counters": {}, "kernel": self.stats(rec["interface"]), "macs": [],
                     "policy": {"format": 1},
                     "state_lost": f"port {rec['port']} was not attached on {self.ha.host} "
                                   "(agent restarted?): its connections and counters start "
                                   "afresh"}
            self.exported[mid] = state
        index = self.ha.index
        raw = self._raw_port(rec["port"])
        if raw is None:
            self._write(kv, rec, "failed", error=f"port {rec['port']} left the switch")
            return
        for _ in range(5):
            meta_kv = self.ha.store.get_range(self.ha.keys.meta, self.ha.keys.meta + "\0")
            meta_rev = meta_kv.items[0].mod_revision if meta_kv.items else 0
            meta = Meta.decode(meta_kv.items[0].value if meta_kv.items else None,
                               self.ha.keys.meta)
            ops = moved_port_ops(self.ha.keys, raw, rec["port"], rec["to"], meta,
                                 f"vspan agent on {self.ha.host} (migration {mid})")
            new = advanced(rec, "exported", self.ha.host, export=state)
            res = self.ha.store.txn(
                [Compare(kv.key, kv.mod_revision), Compare(self.ha.keys.meta, meta_rev)],
                [*ops, Put(kv.key, dumps(new))])
            if res.succeeded:
                self.exported.pop(mid, None)
                log.info("migration %s of %s: exported (configuration generation %d)", mid,
                         rec["port"], meta.generation + 1)
                return
            cur = index.migration(rec["port"])
            latest = self.ha.store.get_range(kv.key, kv.key + "\0")
            if not latest.items or latest.items[0].mod_revision != kv.mod_revision:
                log.warning("migration %s changed while exporting (now %s)", mid,
                            cur.get("phase") if cur else "gone")
                return  # aborted or advanced by someone else: step() sees it
        self.errors[mid] = "the configuration kept changing; retrying"

    def _raw_port(self, port: str) -> dict[str, Any] | None:
        kv = self.ha.store.get_range(self.ha.keys.item("ports", port),
                                     self.ha.keys.item("ports", port) + "\0")
        if not kv.items:
            return None
        data = loads(kv.items[0].value, kv.items[0].key)
        return data if isinstance(data, dict) else None

    def _move(self, kv: KeyValue, rec: dict[str, Any]) -> None:
        """Source: hand the VM's interface to the destination host (test machines)."""
        if not self.move_interfaces or not self._same_machine(rec["to"]):
            return  # a hypervisor moves the VM; the destination waits for its interface
        ifname = rec["interface"]
        if not self.ha.iface_exists(ifname):
            return  # not here (moved already, or never was): the destination looks for it
        live = self.ha.index.live.get(rec["to"])
        assert live is not None
        err = move_interface(ifname, live.pid)
        if err:
            self.errors[rec["id"]] = f"could not move {ifname} to {rec['to']}: {err}"
            log.error("%s", self.errors[rec["id"]])
            return
        self._write(kv, rec, "moved", note=f"{ifname} moved to {rec['to']}")

    def _arrive(self, kv: KeyValue, rec: dict[str, Any]) -> None:
        """Destination: when the interface is here, attach with the state put in."""
        mid = rec["id"]
        if mid in self.attached:
            self._attached(kv, rec)
            return
        dvs = self.ha.index.config()
        cfg = dvs.ports.get(rec["port"])
        if cfg is None or cfg.host != self.ha.host:
            return  # the configuration change has not reached this host yet
        if not self.ha.iface_exists(rec["interface"]):
            waited = time.time() - max(h["at"] for h in rec["history"])
            if waited > INTERFACE_TIMEOUT:
                self._write(kv, rec, "failed", error=(
                    f"interface {rec['interface']} did not appear on {self.ha.host} within "
                    f"{INTERFACE_TIMEOUT:.0f} s"))
            else:
                self._poll_soon()
            return
        self.ready[mid] = dict(rec.get("export", {}))
        self.ha.reconcile(f"migration {mid}: attaching {rec['port']}")
        if mid in self.attached:
            self._attached(kv, rec)
        else:
            self.ready.pop(mid, None)
            why = self.ha.plan.skipped.get(rec["port"], "") if self.ha.plan else ""
            self.errors[mid] = f"port {rec['port']} did not attach: {why or 'see the log'}"

    def _poll_soon(self) -> None:
        self._waiting = True  # the worker looks again in a few milliseconds

    def _attached(self, kv: KeyValue, rec: dict[str, Any]) -> None:
        mid = rec["id"]
        facts = self.attached[mid]
        if not self._write(kv, rec, "attached", attach=facts):
            return
        if mid not in self.announced:
            self.announced.add(mid)
            threading.Thread(target=self._announce_and_finish, args=(rec["port"], mid),
                             name=f"announce-{rec['port']}", daemon=True).start()

    def _announce_and_finish(self, port: str, mid: str) -> None:
        """Send the RARP rounds for the port's MACs, then measure and write ``done``."""
        engine = self.ha.agent.engine
        rec = self.ha.index.migration(port) or {}
        macs = {m for _v, m in rec.get("export", {}).get("macs", [])}
        if rec.get("mac"):
            macs.add(rec["mac"])
        frames = [rarp_announce(mac_bytes(m)) for m in sorted(macs)]
        sent = 0
        first_announce: float | None = None
        for delay in ANNOUNCE_DELAYS:
            time.sleep(delay)
            try:
                n = engine.call(lambda: engine.announce(port, frames))
            except Exception as err:  # the port went away meanwhile: stop announcing
                log.warning("announcing %s: %s", port, err)
                break
            if n and first_announce is None:
                first_announce = time.time()
            sent += n
        first = None
        deadline = time.monotonic() + FIRST_FRAME_WAIT
        while time.monotonic() < deadline:
            first = engine.call(lambda: self._first_frame(engine, port))
            if first is not None:
                break
            time.sleep(0.02)
        for _ in range(20):
            kv = self.ha.index.migrations.get(port)
            cur = self.ha.index.migration(port)
            if kv is None or cur is None or cur.get("id") != mid:
                return
            if cur["phase"] != "attached":
                time.sleep(0.05)  # our own "attached" may not be in the index yet
                continue
            attach = dict(cur.get("attach", {}), first_frame=first, announced=sent,
                          first_announce=first_announce, announced_macs=sorted(macs))
            done = dict(cur, attach=attach)
            result = {"switch_over": switch_over(advanced(done, "done", "")),
                      "lost": lost_copies(done)}
            try:
                if self._write(kv, cur, "done", attach=attach, result=result):
                    self.done += 1
                    self.attached.pop(mid, None)
                    return
            except StoreError as err:
                log.warning("migration %s: %s", mid, err)
            time.sleep(0.1)

    @staticmethod
    def _first_frame(engine: Engine, port: str) -> float | None:
        idx = engine.state.by_name.get(port)
        if idx is None:
            return None
        return _wall(engine, engine.state.ports[idx].counters.first_seen)

    def _annotate(self, rec: dict[str, Any]) -> None:
        """Write the switch-over into this host's running captures (once per migration)."""
        mid = rec["id"]
        if mid in self.annotated:
            return
        self.annotated.add(mid)
        text = describe(rec)
        engine = self.ha.agent.engine
        try:
            n = engine.call(lambda: engine.annotate(text))
        except Exception as err:
            log.warning("annotating captures: %s", err)
            return
        if n:
            log.info("%d capture(s) annotated: %s", n, text)
