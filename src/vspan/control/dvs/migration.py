"""Migration records: how a VM's port moves from one host to another through the store.

``vspan vm migrate VM --to HOST`` writes ``migrations/PORT`` and then only watches
it; the two agents do the work, each on its part, writing the next phase::

    requested   the command: which port, from where, to where
    prepared    destination agent: it can take the port (declared, no interface of
                that name in its way); it will not attach the port until it has the
                port's state
    exported    source agent: port detached (its state taken out in the same engine
                step, so nothing happens to it in between), the state written here;
                in the same transaction the port's host is changed in the configuration
                (every host re-plans overlay and mirror sessions)
    moved       source agent: the VM's interface handed to the destination's network
                namespace (test machines, where a host is a namespace; a hypervisor's
                live migration does this elsewhere)
    attached    destination agent: the interface is there; port attached with the
                state put in before its first frame (connections, extended-ACL
                sessions, counters), RARP announcements started
    done        destination agent: announcements sent; the switch-over measured

``failed`` (with ``error``) and ``aborted`` end a migration early. Each phase is
written with a compare on the record's revision, so two writers never both
advance it. An agent that restarts finds the record and carries on from its
phase; a command that dies changes nothing (``vspan vm migrations`` shows where
every migration is). Before ``exported`` a migration can be aborted (the port
stays where it was); after it, only migrating back undoes it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from vspan.config.dvs import DvsConfig, group_members
from vspan.control.dvs.document import ClusterState, Meta, dumps, loads
from vspan.control.dvs.keys import DvsKeys
from vspan.control.store.base import Compare, KeyValue, Put, Store, StoreError, prefix_end

PHASES = ("requested", "prepared", "exported", "moved", "attached", "done")
ENDED = ("done", "failed", "aborted")
ABORTABLE = ("requested", "prepared")


class MigrationError(Exception):
    """A refused migration request; the message is meant for the user."""


def is_active(record: Mapping[str, Any] | None) -> bool:
    """Whether a record describes a migration still under way."""
    return record is not None and record.get("phase") not in ENDED


def advanced(record: Mapping[str, Any], phase: str, host: str, note: str = "",
             **fields: Any) -> dict[str, Any]:
    """``record`` moved to ``phase`` by ``host`` (history kept), with ``fields`` set."""
    out = dict(record)
    out.update(fields)
    out["phase"] = phase
    out["history"] = [*record.get("history", []),
                      {"phase": phase, "at": time.time(), "host": host,
                       **({"note": note} if note else {})}]
    return out


def write_phase(store: Store, keys: DvsKeys, kv: KeyValue, record: dict[str, Any],
                extra: list[Put] | None = None,
                compares: list[Compare] | None = None) -> bool:
    """Write ``record`` if the stored one is still ``kv`` (and ``compares`` hold)."""
    res = store.txn([Compare(kv.key, kv.mod_revision), *(compares or [])],
                    [Put(kv.key, dumps(record)), *(extra or [])])
    return res.succeeded


def read(store: Store, keys: DvsKeys, port: str) -> tuple[KeyValue | None, dict[str, Any] | None]:
    """The record of ``port`` and its key-value (None, None when there is none)."""
    key = keys.migration(port)
    snap = store.get_range(key, key + "\0")
    if not snap.items:
        return None, None
    kv = snap.items[0]
    data = loads(kv.value, kv.key)
    return kv, data if isinstance(data, dict) else None


def find_port(dvs: DvsConfig, vm: str) -> str:
    """The port of VM ``vm`` (its ``vm`` name, or a port name)."""
    by_vm = [n for n, p in dvs.ports.items() if p.vm == vm]
    if len(by_vm) > 1:
        raise MigrationError(f"VM {vm!r} has several ports ({', '.join(by_vm)}): name the "
                             "port to migrate")
    if by_vm:
        return by_vm[0]
    if vm in dvs.ports:
        return vm
    raise MigrationError(f"no VM or port named {vm!r} in distributed switch "
                         f"{dvs.switch.name!r}")


def request(store: Store, st: ClusterState, vm: str, to: str, who: str) -> dict[str, Any]:
    """Write the ``requested`` record for moving ``vm``'s port to host ``to``."""
    dvs = st.config()
    keys = DvsKeys(st.name)
    port = find_port(dvs, vm)
    cfg = dvs.ports[port]
    if to not in dvs.hosts:
        raise MigrationError(f"no host named {to!r} (hosts: {', '.join(sorted(dvs.hosts))})")
    if cfg.host == to:
        raise MigrationError(f"port {port} is on host {to} already")
    for host, role in ((cfg.host, "source"), (to, "destination")):
        live = st.live.get(host)
        if live is None:
            raise MigrationError(f"the {role} host {host} has no agent running (its lease "
                                 "is gone): nothing was changed")
        if "migrate" not in live.features:
            raise MigrationError(f"the agent on the {role} host {host} (vspan "
                                 f"{live.version or '?'}) cannot migrate ports: upgrade it; "
                                 "nothing was changed")
    kv, old = read(store, keys, port)
    if is_active(old):
        assert old is not None
        raise MigrationError(f"port {port} is being migrated already ({old['id']}, phase "
                             f"{old['phase']}); wait for it, or `vspan vm migrate {vm} "
                             "--abort` before it is exported")
    record = advanced({"id": uuid.uuid4().hex[:12], "vm": cfg.vm or port, "port": port,
                       "port_id": str(cfg.port_id), "mac": cfg.mac or "",
                       "interface": cfg.ifname(port), "from": cfg.host, "to": to,
                       "requested_at": time.time(), "by": who,
                       "sessions": mirror_sessions(dvs, port)}, "requested", "")
    res = store.txn([Compare(keys.migration(port), kv.mod_revision if kv else 0),
                     Compare(keys.meta, st.meta_revision)],
                    [Put(keys.migration(port), dumps(record))])
    if not res.succeeded:
        raise MigrationError("the switch changed while the request was prepared; nothing "
                             "was written (run it again)")
    return record


def abort(store: Store, keys: DvsKeys, port: str, who: str) -> dict[str, Any]:
    """End a migration that has not been exported yet (the port stays where it was)."""
    kv, rec = read(store, keys, port)
    if kv is None or rec is None or not is_active(rec):
        raise MigrationError(f"no migration of port {port} is under way")
    if rec["phase"] not in ABORTABLE:
        raise MigrationError(f"migration {rec['id']} is past the point of no return (phase "
                             f"{rec['phase']}): the port is configured on {rec['to']} now; "
                             f"migrate it back to {rec['from']} instead")
    new = advanced(rec, "aborted", who, error=f"aborted by {who}")
    if not write_phase(store, keys, kv, new):
        raise MigrationError("the migration moved on while aborting; look again")
    return new


def mirror_sessions(dvs: DvsConfig, port: str) -> dict[str, dict[str, Any]]:
    """The sessions port ``port`` is a source of: directions copied and sampling rate."""
    out: dict[str, dict[str, Any]] = {}
    for name, s in dvs.mirrors.items():
        for src in s.sources:
            members = [src.port] if src.port else group_members(dvs, src.port_group or "")
            if port in members:
                d = src.direction.value
                out[name] = {"ingress": d in ("ingress", "both"),
                             "egress": d in ("egress", "both"),
                             "sampling_rate": s.sampling_rate, "filter": s.filter or ""}
    return out


def moved_port_ops(keys: DvsKeys, raw_port: dict[str, Any], port: str, to: str,
                   meta: Meta, who: str) -> list[Put]:
    """The configuration writes that place ``port`` on ``to`` (one more generation)."""
    new_port = dict(raw_port)
    new_port["host"] = to
    new_meta = Meta(meta.generation + 1, meta.next_port_id, list(meta.retired_port_ids))
    return [Put(keys.item("ports", port), dumps(new_port)),
            Put(keys.meta, new_meta.encode(updated=time.time(), by=who))]


def lost_copies(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the sessions copying the port missed during the switch-over (see docs/dvs.md).

    The VM's interface moves with its kernel counters. Frames it carried between
    the detach on the old host and the attach on the new one were switched by
    neither (no switch had the port), so no session copied them: per direction,
    the interface's packet count at the attach minus the one at the detach. A
    session is charged the directions it copies, divided by its sampling rate
    (a filter is not evaluated: an upper bound for filtered sessions).
    """
    exp = record.get("export", {})
    att = record.get("attach", {})
    k0, k1 = exp.get("kernel"), att.get("kernel")
    out: dict[str, Any] = {"measured": bool(k0 and k1)}
    if not (k0 and k1):
        out["why"] = "the interface's kernel counters were not read on both hosts"
        rx = tx = 0
    else:
        rx = max(0, int(k1["rx_packets"]) - int(k0["rx_packets"]))
        tx = max(0, int(k1["tx_packets"]) - int(k0["tx_packets"]))
    out["unswitched_from_vm"] = rx
    out["unswitched_to_vm"] = tx
    sessions = {}
    for name, s in record.get("sessions", {}).items():
        n = (rx if s.get("ingress") else 0) + (tx if s.get("egress") else 0)
        rate = max(1, int(s.get("sampling_rate", 1)))
        sessions[name] = -(-n // rate)
    out["sessions"] = sessions
    return out


def switch_over(record: Mapping[str, Any]) -> dict[str, float | None]:
    """Times of the move, in seconds.

    ``switch_over``: from the last frame the old host switched for the port to the first
    frame the new host switched for it -- the VM's own traffic or its first RARP
    announcement, whichever came first (as in a live migration, where the announcement
    is the VM's first frame on the new host); ``traffic_resumed``: to the first frame of
    the VM's own traffic (it depends on the VM's and its peers' retransmission timers);
    ``detached``: the port attached nowhere (detach to attach); ``total``: the request
    to the end.
    """
    exp = record.get("export", {})
    att = record.get("attach", {})
    last, traffic, rarp = exp.get("last_frame"), att.get("first_frame"), att.get(
        "first_announce")
    first = min((t for t in (traffic, rarp) if t is not None), default=None)
    hist = {h["phase"]: h["at"] for h in record.get("history", [])}
    end = hist.get("done") or hist.get("failed") or hist.get("aborted")

    def diff(a: float | None, b: float | None) -> float | None:
        return round(b - a, 6) if a is not None and b is not None else None

    return {"switch_over": diff(last, first), "traffic_resumed": diff(last, traffic),
            "detached": diff(exp.get("detached_at"), att.get("attached_at")),
            "total": diff(record.get("requested_at"), end)}


def describe(record: Mapping[str, Any]) -> str:
    """The line a capture gets at a migration's switch-over."""
    at = next((h["at"] for h in record.get("history", []) if h["phase"] == "attached"),
              time.time())
    when = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    return (f"VM {record['vm']} (port {record['port']}, id {record['port_id']}) migrated "
            f"from {record['from']} to {record['to']} at {when} (migration {record['id']})")


class MigrationWatcher:
    """Calls ``on_switch_over(text)`` once for every migration of switch ``dvs`` that
    reaches its switch-over (phase ``attached`` or later) after ``since`` -- for captures
    not made by an agent (``vspan collect --dvs``). Polls the store every ``interval``."""

    def __init__(self, store: Store, dvs: str, on_switch_over: Callable[[str], None],
                 since: float | None = None, interval: float = 0.2) -> None:
        self.store = store
        self.keys = DvsKeys(dvs)
        self.on_switch_over = on_switch_over
        self.since = time.time() if since is None else since
        self.interval = interval
        self.seen: set[str] = set()
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="migrations", daemon=True)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        self._thread.join(timeout=5)

    def poll(self) -> int:
        """One look; how many switch-overs were new."""
        pre = self.keys.migrations_prefix
        new = 0
        for kv in self.store.get_range(pre, prefix_end(pre)).items:
            rec = loads(kv.value, kv.key)
            if not isinstance(rec, dict) or rec.get("id") in self.seen:
                continue
            at = next((h["at"] for h in rec.get("history", []) if h["phase"] == "attached"),
                      None)
            if at is None:
                continue
            self.seen.add(str(rec.get("id")))
            if at >= self.since:
                self.on_switch_over(describe(rec))
                new += 1
        return new

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
                self.error = ""
            except StoreError as err:
                self.error = str(err)
