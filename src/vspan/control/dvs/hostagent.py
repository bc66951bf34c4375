"""The host agent of a distributed switch: keeps this host's switch equal to the store.

Three threads besides the datapath:

* **sync** reads the switch's keys once, then watches them from the last seen
  revision + 1. Each change recompiles this host's switch configuration and
  applies the difference to the running engine (no restart). A watch cancelled
  because its revision was compacted re-reads everything and watches from the
  read's revision + 1. When the store is unreachable the switch keeps forwarding
  with its last configuration; the watch resumes from the last revision when
  the store is back.
* **lease** registers the host under a lease (``hosts/HOST``) and keeps it alive
  every TTL/3; a keepalive answered with TTL <= 0 means the lease is gone
  (expired during an outage): register again.
* **status** writes this host's port states and counters to ``status/HOST``,
  at most once per interval and only when something changed, and re-checks
  ports whose interface was missing. A reconcile that applied a new generation
  wakes it: the applied generation is written once no newer one came for
  ``status_settle`` (0.25 s; a burst of changes is one report) and the last
  write is an interval old (else at the end of that interval), so the store
  learns of an applied change without waiting for the next timer tick.

Timing: each status's ``applied`` says when the engine applied the generation
(``at``) and when the watch event that carried it arrived (``received``), both
in this host's wall-clock time; with the commit time of the transaction they
split the propagation delay into etcd's delivery and this agent's own work.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from vspan.config.diff import ChangeSet
from vspan.config.dvs import DvsConfig
from vspan.config.load import ConfigError
from vspan.config.model import Config, PortConfig, PortType
from vspan.control.agent import Agent, AgentError, EngineHook
from vspan.control.dvs.compile import HostPlan, PortCache, compile_host
from vspan.control.dvs.document import LiveHost, SchemaError, dumps
from vspan.control.dvs.hostcache import HostCache, SavedConfig
from vspan.control.dvs.index import DvsIndex, Touched
from vspan.control.dvs.keys import DvsKeys
from vspan.control.dvs.migrator import Migrator
from vspan.control.dvs.mirrorplan import summed_counters
from vspan.control.store.base import (
    Compare,
    Put,
    Store,
    StoreError,
    StoreUnavailable,
    WatchCompacted,
    WatchStream,
)
from vspan.datapath.engine import Engine

log = logging.getLogger(__name__)

VERSION = "0.2.0"


def interface_exists(name: str) -> bool:
    """Whether ``name`` is an interface in this process's network namespace."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


class HostAgent:
    """Runs one host's part of distributed switch ``dvs``."""

    def __init__(self, store: Store, dvs: str, host: str, underlay: str, agent: Agent,
                 control_socket: str | None = None, ttl: int = 10,
                 status_interval: float = 1.0, store_url: str = "",
                 status_settle: float = 0.25,
                 iface_exists: Callable[[str], bool] = interface_exists,
                 probe_port: Callable[[str, PortConfig], str | None] | None = None,
                 state_dir: str | None = None, move_interfaces: bool = True) -> None:
        self.store = store
        self.keys = DvsKeys(dvs)
        self.dvs = dvs
        self.host = host
        self.underlay = underlay
        self.agent = agent
        self.control_socket = control_socket
        self.ttl = ttl
        self.status_interval = status_interval
        # a new generation is reported once the configuration has been quiet this long
        self.status_settle = min(max(status_settle, 0.0), status_interval)
        self.store_url = store_url
        self.iface_exists = iface_exists
        self.probe_port = probe_port
        agent.managed_by = f"distributed switch {dvs!r} (host {host})"
        self.index = DvsIndex(dvs)  # the store's items, decoded one by one
        self.cache = PortCache()  # per-port compile work, kept between reconciles
        self.cache_file = HostCache.for_host(state_dir, dvs, host)
        self.running_cached: SavedConfig | None = None  # started from the cache file
        self._need_full_read = False
        self._cache_due = False  # the applied configuration is not in the cache file yet
        self.applied_generation = 0
        self.applied_revision = 0
        self.applied_at = 0.0  # wall clock: when the engine had applied it
        self.applied_received = 0.0  # wall clock: when the store's answer that led to it came
        self._received_at = 0.0  # the last watch batch / read, as it arrived
        self.reconciles = 0
        self.reconcile_seconds = 0.0  # time spent reconciling (benchmarks)
        self.last_reconcile_seconds = 0.0  # wall time: includes waiting for the GIL/CPU
        self.last_reconcile_cpu = 0.0  # this thread's CPU time in the last reconcile
        self.plan: HostPlan | None = None
        self.desired: DvsConfig | None = None
        self.live: dict[str, LiveHost] = {}
        self.errors: list[str] = []
        self.refused: str | None = None
        self.store_state = "connecting"
        self.store_error = ""
        self.unreachable_since: float | None = None
        self.outages = 0
        self.compactions = 0
        self.lease = 0
        self.registrations = 0
        self.port_failures: dict[str, str] = {}  # port -> why its backend did not open
        self.mirror_base: dict[str, dict[str, int]] = {}  # part -> counts before a restart
        self.part_roles: dict[str, tuple[str, str]] = {}  # part -> (session, role), ever
        self._watch: WatchStream | None = None
        self._stop = threading.Event()
        self._lock = threading.RLock()  # one reconcile at a time
        self._threads: list[threading.Thread] = []
        self._last_status: dict[str, Any] | None = None
        self._status_wake = threading.Event()  # set by a reconcile that applied something
        self.status_writes = 0
        self.on_applied: Callable[[HostAgent], None] | None = None  # benchmarks, tests
        self.migrator = Migrator(self, move_interfaces)

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the sync, lease and status threads."""
        for name, fn in (("sync", self._sync_loop), ("lease", self._lease_loop),
                         ("status", self._status_loop),
                         ("migrate", lambda: self.migrator.run(self._stop))):
            t = threading.Thread(target=fn, name=f"dvs-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, deregister: bool = True) -> None:
        """Stop the threads; with ``deregister`` revoke the lease (host shows down now)."""
        self._stop.set()
        self._status_wake.set()
        watch = self._watch
        if watch is not None:
            watch.close()
        for t in self._threads:
            t.join(timeout=5)
        self.save_cache()
        if deregister and self.lease:
            try:
                self.store.revoke(self.lease)
            except StoreError as err:
                log.warning("could not revoke the lease: %s", err)

    def wait_synced(self, timeout: float = 10.0) -> bool:
        """Wait until the first reconcile ran (tests, start-up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.reconciles:
                return True
            time.sleep(0.02)
        return False

    # ------------------------------------------------------------ store state
    def _connected(self) -> None:
        if self.store_state != "connected":
            if self.unreachable_since is not None:
                log.warning("store reachable again after %.1f s",
                            time.time() - self.unreachable_since)
            self.store_state, self.store_error, self.unreachable_since = "connected", "", None

    def _unreachable(self, err: Exception) -> None:
        if self.store_state != "unreachable":
            self.outages += 1
            self.unreachable_since = time.time()
            log.warning("store unreachable, forwarding with the last configuration: %s", err)
        self.store_state, self.store_error = "unreachable", str(err)

    # ------------------------------------------------------------------- sync
    def _sync_loop(self) -> None:
        start, end = self.keys.watch_range()
        full_read = True
        backoff = 0.2
        while not self._stop.is_set():
            try:
                if full_read or self._need_full_read:
                    self._need_full_read = False
                    try:
                        snap = self.store.get_range(start, end)
                        self._received_at = time.time()
                    except StoreUnavailable:
                        if not self.reconciles and self.running_cached is None:
                            self.start_from_cache()
                        raise
                    self._connected()
                    self._take(lambda s=snap: self.index.load(  # type: ignore[misc]
                        s.items, s.revision))
                    full_read = False
                watch = self.store.watch(start, end, self.index.revision + 1)
                self._watch = watch
                if self._stop.is_set():
                    watch.close()
                    break
                self._connected()
                backoff = 0.2
                for batch in watch:
                    self._received_at = time.time()
                    self._connected()
                    if not batch.events:  # progress notification
                        self.index.revision = max(self.index.revision, batch.revision)
                        continue
                    self._take(lambda b=batch: self.index.apply(  # type: ignore[misc]
                        b.events, b.revision))
                    if self._need_full_read:
                        break
            except WatchCompacted as err:
                self.compactions += 1
                log.warning("watch from revision %d was compacted (oldest kept %d): "
                            "re-reading the switch", self.index.revision + 1,
                            err.compact_revision)
                full_read = True
            except StoreUnavailable as err:
                self._unreachable(err)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            except StoreError as err:
                log.error("store error: %s", err)
                self.errors = [str(err)]
                self._stop.wait(1.0)
            finally:
                self._watch = None

    @property
    def revision(self) -> int:
        """The store revision the agent's view is complete up to."""
        return self.index.revision

    def _take(self, update: Callable[[], Touched]) -> None:
        """Bring the index up to date (under the reconcile lock) and reconcile if needed."""
        with self._lock:
            try:
                touched = update()
            except SchemaError as err:
                if self.refused != str(err):
                    log.error("%s", err)
                self.refused = str(err)
                self._need_full_read = True  # the rest of the batch was not taken
                return
            self.refused = None
        if touched:
            self.reconcile("watch")
        if touched.migrations or touched.config:
            self.migrator.wake()

    def reconcile(self, reason: str = "") -> None:
        """Compile this host's switch from the held items and apply the difference."""
        t0 = time.perf_counter()
        c0 = time.thread_time()
        with self._lock:
            try:
                self._reconcile(reason)
            finally:
                self.reconciles += 1
                self.last_reconcile_cpu = time.thread_time() - c0
                self.last_reconcile_seconds = time.perf_counter() - t0
                self.reconcile_seconds += self.last_reconcile_seconds
        if self.on_applied is not None:
            self.on_applied(self)

    def _reconcile(self, reason: str) -> None:
        index = self.index
        if self.refused is not None:
            return
        self.live = index.live
        if not index.exists:
            self.errors = [f"distributed switch {self.dvs!r} is not in the store "
                           "(create it with `vspan dvs create` or `vspan dvs apply`)"]
            return
        dvs = index.config()
        errors: list[str] = index.errors()
        if self.host not in dvs.hosts:
            errors.append(f"host {self.host!r} is not declared in the switch's 'hosts'")
        self.cache.forget(dvs.ports)
        plan: HostPlan | None = None
        failed: dict[str, str] = {}
        for _ in range(len(dvs.ports) + 1):
            unavailable = self._unavailable(dvs.ports)
            try:
                plan = compile_host(dvs, self.host, index.live, self.control_socket,
                                    unavailable, self.underlay, self.cache)
            except (ConfigError, KeyError, ValueError) as err:
                # stored items that do not fit together (not written by `dvs apply`)
                errors.append(f"stored configuration does not compile, keeping the last "
                              f"one: {err}")
                log.error("%s", errors[-1])
                self.errors = errors
                return
            failed = self._apply(plan.config)
            if not failed:
                break
            if "" in failed:  # not a port's fault: keep the last configuration
                errors.append(failed[""])
                break
            self.port_failures.update(failed)
        else:
            errors.append("could not apply the configuration (see the log)")
        self.errors = errors
        self.plan = plan
        self.desired = dvs
        new_generation = index.meta.generation != self.applied_generation
        self.applied_generation = index.meta.generation
        self.applied_revision = index.revision
        self.applied_at = time.time()
        self.applied_received = self._received_at
        self.running_cached = None
        if new_generation:
            self._status_wake.set()  # say so now, not at the next status tick
        if plan is not None and "" not in failed:
            self._cache_due = True  # written by the status thread (:meth:`save_cache`)
        log.debug("reconciled (%s) at revision %d, generation %d", reason, index.revision,
                  self.applied_generation)

    def save_cache(self) -> bool:
        """Write the applied configuration to the cache file if it is not there yet (the
        status thread does, off the reconcile's path: serialising the whole switch and an
        fsync are no part of applying a change). True if written."""
        with self._lock:
            plan = self.plan
            if not self._cache_due or plan is None:
                return False
            self._cache_due = False
            config, generation, revision = (self.agent.config, self.applied_generation,
                                            self.applied_revision)
            notes, port_ids = list(plan.notes), dict(plan.port_ids)
        return self.cache_file.save(config, generation, revision, notes, port_ids)

    def start_from_cache(self) -> bool:
        """Etcd is unreachable at start-up: run the last configuration this host applied
        (from its local cache file), and say so in the status. True if one was found."""
        saved = self.cache_file.load(self.control_socket)
        if saved is None:
            return False
        with self._lock:
            failed = self._apply(saved.config)
            if failed:
                log.error("the cached configuration did not apply: %s", failed)
            self.plan = HostPlan(saved.config, list(saved.notes), dict(saved.port_ids), {})
            self.applied_generation = saved.generation
            self.applied_revision = saved.revision
            self.applied_at = time.time()
            self.running_cached = saved
        log.warning("etcd is unreachable: running the cached configuration of generation %d "
                    "(saved %s)", saved.generation,
                    time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(saved.saved_at)))
        return True

    def _unavailable(self, ports: Any) -> dict[str, str]:
        out: dict[str, str] = self.migrator.unavailable()
        for name, port in ports.items():
            if port.host != self.host or name in out:
                continue
            ifname = port.ifname(name)
            if port.type is PortType.AFPACKET and not self.iface_exists(ifname):
                out[name] = f"interface {ifname} does not exist"
            elif name in self.port_failures:
                out[name] = self.port_failures[name]
        return out

    def _apply(self, config: Config, before: EngineHook | None = None,
               after: EngineHook | None = None) -> dict[str, str]:
        """Apply; on failure find the ports whose backend does not open ({} = applied)."""
        if config == self.agent.config:
            return {}

        def pre(engine: Engine, changes: ChangeSet) -> None:
            self._keep_mirror_counts(engine, config)
            self.migrator.before(engine, changes)
            if before is not None:
                before(engine, changes)

        def post(engine: Engine, changes: ChangeSet) -> None:
            self.migrator.after(engine, changes)
            if after is not None:
                after(engine, changes)

        try:
            changes = self.agent.apply(config, pre, post)
        except AgentError as err:
            failed: dict[str, str] = {}
            if self.probe_port is not None:
                running = self.agent.config.ports
                for name, cfg in config.ports.items():
                    if running.get(name) == cfg:
                        continue
                    why = self.probe_port(name, cfg)
                    if why:
                        failed[name] = why
            if not failed:
                self.errors = [f"apply failed, keeping the last configuration: {err}"]
                log.error("%s", self.errors[0])
                return {"": str(err)}
            log.warning("ports that cannot be attached: %s", failed)
            return failed
        for line in changes.summary():
            log.info("%s", line)
        return {}

    def recheck_ports(self) -> None:
        """Reconcile when a port left out (missing interface, failed open) may attach now."""
        plan = self.plan
        if plan is None or not plan.skipped:
            return
        desired = self.desired
        if desired is None:
            return
        ready = sorted(n for n in plan.skipped if n in desired.ports
                       and self.iface_exists(desired.ports[n].ifname(n)))
        if ready:
            log.info("interfaces appeared for %s", ", ".join(ready))
            for name in ready:
                self.port_failures.pop(name, None)
            self.reconcile("interfaces appeared")

    # ------------------------------------------------------------------ lease
    def _register(self) -> None:
        lease = self.store.grant(self.ttl)
        record = self._registration()
        self.store.txn([], [Put(self.keys.live(self.host), dumps(record), lease)])
        self.lease = lease
        self.registrations += 1
        log.info("registered host %s (lease %x, TTL %d s)", self.host, lease, self.ttl)

    def _registration(self) -> dict[str, Any]:
        return {"underlay": self.underlay, "started": time.time(), "pid": os.getpid(),
                "version": VERSION, "socket": self.control_socket or "",
                "boot_id": self.migrator.boot_id,
                "features": ["migrate", "mirror-overlay"] + (
                    ["move-interfaces"] if self.migrator.move_interfaces else [])}

    def _lease_loop(self) -> None:
        period = max(self.ttl / 3.0, 0.2)
        while not self._stop.is_set():
            try:
                if not self.lease:
                    self._register()
                else:
                    left = self.store.keepalive(self.lease)
                    if left <= 0:
                        log.warning("lease %x is gone (expired); registering again", self.lease)
                        self.lease = 0
                        continue
                    if self.host not in self.live and self.store_state == "connected" \
                            and self.reconciles:
                        # our registration was deleted while the lease lives: put it back
                        self.store.txn([Compare(self.keys.live(self.host), 0)], [Put(
                            self.keys.live(self.host), dumps(self._registration()),
                            self.lease)])
                self._connected()
            except StoreUnavailable as err:
                self._unreachable(err)
                watch = self._watch
                if watch is not None:  # a half-open watch would never notice
                    watch.close()
                self._stop.wait(min(period, 1.0))
                continue
            except StoreError as err:
                log.error("lease: %s", err)
                self.lease = 0
            self._stop.wait(period)

    # ----------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """This host's status (what ``status/HOST`` holds, plus local-only details)."""
        plan = self.plan
        ports: dict[str, Any] = {}
        rows = {r["name"]: r for r in self._show("ports")}
        mirrors = {r["name"]: r for r in self._show("mirrors")}
        if plan is not None:
            for name, pid in plan.port_ids.items():
                row = rows.get(name)
                if row is None:
                    ports[name] = {"port_id": pid, "state": "detached",
                                   "reason": plan.skipped.get(name, "not attached")}
                    continue
                c = row["counters"]
                ports[name] = {"port_id": pid, "interface": row["interface"],
                               "state": "up" if row["link"] == "up" and row["enabled"]
                               else "down",
                               "link": row["link"], "vlan": row["vlan"],
                               "rx_frames": c.get("rx_frames", 0),
                               "tx_frames": c.get("tx_frames", 0),
                               "rx_bytes": c.get("rx_bytes", 0),
                               "tx_bytes": c.get("tx_bytes", 0),
                               "dropped": c.get("dropped", 0), "macs": row["macs"]}
        return {
            "host": self.host, "underlay": self.underlay, "pid": os.getpid(),
            "store": {"state": self.store_state, "url": self.store_url,
                      "error": self.store_error, "unreachable_since": self.unreachable_since,
                      "outages": self.outages, "compactions": self.compactions,
                      "running_cached": (
                          f"etcd was unreachable at start-up: running the cached "
                          f"configuration ({self.running_cached.describe()}) from "
                          f"{self.cache_file.path}" if self.running_cached else None)},
            "applied": {"generation": self.applied_generation,
                        "revision": self.applied_revision, "at": self.applied_at,
                        "received": self.applied_received},
            "refused": self.refused,
            "errors": list(self.errors),
            "notes": list(plan.notes) if plan else [],
            "ports": ports,
            "mirrors": self._mirror_report(mirrors),
            "migrations": self.migrator.report(),
        }

    def _keep_mirror_counts(self, engine: Engine, new: Config) -> None:
        """Before a reload (engine thread): sessions whose configuration changes or that go
        away restart their counters, so add what they counted to their base (the host
        keeps reporting every part's total, e.g. across a migration's re-plan)."""
        for m in engine.state.mirrors.values():
            if new.mirrors.get(m.name) == m.config:
                continue
            base = self.mirror_base.setdefault(m.name, {})
            for k, v in m.counters().items():
                base[k] = base.get(k, 0) + v

    def _mirror_report(self, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Per distributed session: its parts here by role (counters with their bases) and
        status."""
        plan = self.plan
        if plan is not None:
            self.part_roles.update(plan.mirror_parts)
        desired = self.desired
        out: dict[str, Any] = {}
        for part in sorted(set(rows) | set(self.mirror_base)):
            session, role = self.part_roles.get(part, (part, "local"))
            if desired is not None and session not in desired.mirrors:
                continue  # the session was deleted
            row = rows.get(part)
            counters = dict(row["counters"]) if row is not None else {}
            for k, v in self.mirror_base.get(part, {}).items():
                counters[k] = counters.get(k, 0) + v
            entry = out.setdefault(session, {"parts": {}, "status": "ok"})
            entry["parts"][role] = counters
            if row is not None and row["status"] != "ok":
                entry["status"] = f"{part}: {row['status']}"
            # the whole session's numbers from this host (what `show mirrors` adds up)
        for entry in out.values():
            entry["counters"] = summed_counters({self.host: entry["parts"]})
        return out

    def _show(self, what: str) -> list[dict[str, Any]]:
        try:
            rows: list[dict[str, Any]] = self.agent.show(what)
        except Exception as err:  # the engine may be restarting a port; report, go on
            log.debug("show %s: %s", what, err)
            return []
        return rows

    def write_status(self) -> bool:
        """Write ``status/HOST`` if it changed since the last write; True if written."""
        report = self.status()
        if report == self._last_status or self.store_state != "connected":
            return False
        try:
            self.store.txn([], [Put(self.keys.status(self.host),
                                    dumps({**report, "time": time.time()}))])
        except StoreUnavailable as err:
            self._unreachable(err)
            return False
        self._last_status = report
        self.status_writes += 1
        return True

    def _settle(self) -> None:
        """After a new generation: wait until none came for ``status_settle`` seconds (at
        most one interval), so a burst of changes is reported once, and the reports of
        every host do not reach etcd in the same instant as the change's own events."""
        end = time.monotonic() + self.status_interval
        while self.status_settle > 0 and not self._stop.is_set():
            self._status_wake.clear()
            left = end - time.monotonic()
            if left <= 0 or not self._status_wake.wait(min(self.status_settle, left)):
                return

    def _status_loop(self) -> None:
        """Write the status every interval, and soon after a reconcile applied a new
        generation (once it settled) -- never more often than once per interval."""
        last = time.monotonic() - self.status_interval  # of the last write
        while not self._stop.is_set():
            if self._status_wake.wait(self.status_interval):
                self._settle()
            early = self.status_interval - (time.monotonic() - last)
            if early > 0 and self._stop.wait(early):  # the rate bound
                break
            if self._stop.is_set():
                break
            self._status_wake.clear()
            self.save_cache()
            try:
                self.recheck_ports()
                if self.write_status():
                    last = time.monotonic()
            except StoreError as err:
                log.warning("status: %s", err)
