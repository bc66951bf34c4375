"""Administer a distributed switch in the store: apply a configuration (one transaction),
create, delete, list, and read it back for ``vspan dvs show``."""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vspan.config.dvs import DvsConfig, port_id_key
from vspan.config.load import parse_model
from vspan.control.dvs.document import (
    ClusterState,
    Meta,
    check_schema,
    decode,
    dumps,
    encode,
    loads,
)
from vspan.control.dvs.keys import ROOT, SCHEMA_VERSION, DvsKeys, list_names
from vspan.control.store.base import Compare, Delete, Put, Store, StoreError, prefix_end


class DvsError(Exception):
    """A refused administrative operation; the message is meant for the user."""


@dataclass
class ApplyResult:
    """What an apply changed (or would change, for a dry run)."""

    changes: list[str] = field(default_factory=list)
    revision: int = 0
    generation: int = 0
    written: bool = False
    port_ids: dict[str, str] = field(default_factory=dict)


def read_state(store: Store, name: str) -> ClusterState:
    """One consistent read of switch ``name`` (config and registrations)."""
    keys = DvsKeys(name)
    start, end = keys.watch_range()
    snap = store.get_range(start, end)
    return decode(name, snap.revision, snap.as_dict())


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def assign_port_ids(dvs: DvsConfig, stored: Mapping[str, int | str],
                    meta: Meta) -> tuple[DvsConfig, Meta, list[str]]:
    """Give every port a stable id; never reuse one.

    A port keeps the id it has in the store; a new port takes the next number; a
    port's id in the file must not belong to another stored port that stays, nor
    to a removed one (retired ids). Removed ports' ids are retired. ``stored``: the
    stored ports' ids (:meth:`ClusterState.port_ids`).
    """
    errors: list[str] = []
    retired = set(meta.retired_port_ids)
    next_id = meta.next_port_id
    in_use = {port_id_key(pid): n for n, pid in stored.items() if n in dvs.ports}
    ports: dict[str, Any] = {}
    for name, port in dvs.ports.items():
        had = stored.get(name)
        if port.port_id is None:
            pid: int | str | None = had
            if pid is None:
                while str(next_id) in retired or str(next_id) in in_use:
                    next_id += 1
                pid = next_id
                next_id += 1
        else:
            pid = port.port_id
            key = port_id_key(pid)
            if had is not None and port_id_key(had) != key:
                errors.append(f"ports.{name}.port_id: port {name!r} has id {had!r}; "
                              "a port's id never changes (remove the port and add a new one)")
            elif key in retired:
                errors.append(f"ports.{name}.port_id: id {pid!r} belonged to a removed port "
                              "and is never reused")
            elif key in in_use and in_use[key] != name:
                errors.append(f"ports.{name}.port_id: id {pid!r} is the id of port "
                              f"{in_use[key]!r}")
            if isinstance(pid, int) and pid >= next_id:
                next_id = pid + 1
        ports[name] = port.model_copy(update={"port_id": pid})
        ports[name].model_fields_set.add("port_id")
    if errors:
        raise DvsError("\n".join(errors))
    gone = [port_id_key(pid) for n, pid in stored.items() if n not in dvs.ports]
    new_meta = Meta(meta.generation, next_id, sorted(retired | set(gone)))
    return dvs.model_copy(update={"ports": ports}), new_meta, gone


def needs_overlay_vlan(session: Any) -> bool:
    """Whether a session's copies may cross the overlay (local destinations or an RSPAN
    uplink, whose sources can be on other hosts); ERSPAN goes from each host itself."""
    return session.rspan_source is None and (bool(session.destinations)
                                              or session.rspan is not None)


def assign_overlay_vlans(dvs: DvsConfig, stored: Mapping[str, int]) -> DvsConfig:
    """Give every session that needs one a mirror VLAN from ``switch.mirror_vlans``.

    A session keeps its stored VLAN (unless the file names one, or the range moved away
    from it); a new one takes the lowest free VLAN of the range. ``stored``: the stored
    sessions' VLANs (:meth:`ClusterState.overlay_vlans`).
    """
    reserved = dvs.switch.mirror_vlans
    chosen: dict[str, int | None] = {}
    for name, sess in dvs.mirrors.items():
        if not needs_overlay_vlan(sess) or sess.overlay_vlan is not None:
            chosen[name] = sess.overlay_vlan
        else:
            keep = stored.get(name)
            chosen[name] = keep if keep is not None and keep in reserved else None
    used = {v for v in chosen.values() if v is not None}
    free = (v for v in range(reserved.first, reserved.last + 1) if v not in used)
    mirrors: dict[str, Any] = {}
    for name, sess in dvs.mirrors.items():
        vlan = chosen[name]
        if vlan is None and needs_overlay_vlan(sess):
            vlan = next(free, None)
            if vlan is None:
                raise DvsError(f"mirrors.{name}: no free VLAN left in switch.mirror_vlans "
                               f"({reserved.text()}) for its copies between hosts: widen "
                               "the range")
        if vlan == sess.overlay_vlan:
            mirrors[name] = sess
            continue
        mirrors[name] = sess.model_copy(update={"overlay_vlan": vlan})
        mirrors[name].model_fields_set.add("overlay_vlan")
    return dvs.model_copy(update={"mirrors": mirrors})


def _describe(rel: str, old: bytes | None, new: bytes | None, dvs: DvsConfig) -> str:
    section, _, item = rel.partition("/")
    what = {"hosts": "host", "port_groups": "port group", "ports": "port",
            "mirrors": "mirror session"}.get(section, section)
    label = f"{what} {item}".strip()
    verb = "added" if old is None else "removed" if new is None else "changed"
    extra = ""
    if section == "ports" and new is not None and item in dvs.ports:
        p = dvs.ports[item]
        extra = f" (id {p.port_id}, host {p.host})"
    return f"{label} {verb}{extra}"


class DvsAdmin:
    """Operations on one distributed switch."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self.keys = DvsKeys(name)

    def state(self) -> ClusterState:
        """Read the switch (DvsError when it does not exist)."""
        st = read_state(self.store, self.name)
        if not st.exists:
            raise DvsError(f"no distributed switch named {self.name!r} "
                           f"(create it with `vspan dvs create {self.name}` or `dvs apply`)")
        return st

    def apply(self, dvs: DvsConfig, dry_run: bool = False, create: bool = True,
              base: ClusterState | None = None) -> ApplyResult:
        """Make the stored configuration equal ``dvs``, in one transaction.

        The transaction only commits if nobody changed the switch since it was read
        (``base``, or a fresh read; compare on ``config/meta``'s mod revision): no
        lost updates.
        """
        if dvs.switch.name != self.name:
            raise DvsError(f"the file configures switch {dvs.switch.name!r}, not "
                           f"{self.name!r} (switch.name)")
        st = base if base is not None else read_state(self.store, self.name)
        if not st.exists and not create:
            raise DvsError(f"no distributed switch named {self.name!r}")
        # the old state as stored: its ids, and its bytes to compare with (canonical JSON:
        # equal items are equal bytes), without validating the stored switch again
        dvs, meta, _retired = assign_port_ids(dvs, st.port_ids(), st.meta)
        dvs = assign_overlay_vlans(dvs, st.overlay_vlans())
        new_keys = encode(dvs)
        old_keys = st.stored
        result = ApplyResult(port_ids={n: str(p.port_id) for n, p in dvs.ports.items()})
        ops: list[Put | Delete] = []
        if not st.exists:
            result.changes.append(f"distributed switch {self.name} created")
            ops.append(Put(self.keys.schema, dumps({"schema": SCHEMA_VERSION})))
        for rel in sorted(set(new_keys) | set(old_keys)):
            old, new = old_keys.get(rel), new_keys.get(rel)
            if old == new:
                continue
            key = self.keys.config + rel
            ops.append(Put(key, new) if new is not None else Delete(key))
            result.changes.append(_describe(rel, old, new, dvs))
        result.generation = st.meta.generation
        result.revision = st.revision
        if not ops or dry_run:
            return result
        meta.generation = st.meta.generation + 1
        ops.append(Put(self.keys.meta, meta.encode(updated=time.time(), by=_who())))
        try:
            # both guards from the read the change is based on (no second read)
            res = self.store.txn([Compare(self.keys.meta, st.meta_revision),
                                  Compare(self.keys.schema, st.schema_revision)], ops)
        except StoreError as err:
            if "too many operations" in str(err):
                raise DvsError(
                    f"this change writes {len(ops)} keys in one transaction and etcd allows "
                    "fewer (etcd --max-txn-ops, default 128): start etcd with a larger "
                    "--max-txn-ops, or apply the change in smaller steps; nothing was "
                    "written") from None
            raise
        if not res.succeeded:
            raise DvsError(f"distributed switch {self.name!r} was changed by someone else "
                           "while this change was prepared; nothing was written (run it again)")
        result.revision, result.generation, result.written = res.revision, meta.generation, True
        return result

    def edit(self, change: Callable[[dict[str, Any]], None], retries: int = 5) -> ApplyResult:
        """Read the configuration as data, let ``change`` modify it, validate, apply.

        Retries when someone else wrote in between (the change is re-applied to
        their result, so nothing of theirs is lost).
        """
        for _ in range(retries):
            st = self.state()
            data = st.config().model_dump(mode="json", exclude_unset=True)
            for section in ("hosts", "port_groups", "ports", "mirrors"):
                data.setdefault(section, {})
            change(data)
            dvs = parse_model(DvsConfig, data, f"dvs {self.name}")
            try:
                return self.apply(dvs, create=False, base=st)
            except DvsError as err:
                if "changed by someone else" not in str(err):
                    raise
        raise DvsError(f"distributed switch {self.name!r} keeps changing; try again")

    def create(self, vxlan_port: int | None = None, mtu: int | None = None) -> ApplyResult:
        """A new, empty distributed switch (DvsError if it exists)."""
        if read_state(self.store, self.name).exists:
            raise DvsError(f"distributed switch {self.name!r} already exists")
        sw: dict[str, Any] = {"name": self.name}
        if vxlan_port is not None:
            sw["vxlan_port"] = vxlan_port
        if mtu is not None:
            sw["mtu"] = mtu
        return self.apply(parse_model(DvsConfig, {"switch": sw}, "dvs create"))

    def delete(self) -> None:
        """Remove the switch's configuration and status (agents keep their last state)."""
        st = self.state()
        check_schema(st.schema, self.name)
        self.store.txn([], [Delete(self.keys.prefix, prefix=True)])

    def statuses(self) -> dict[str, dict[str, Any]]:
        """The agents' status reports, by host."""
        snap = self.store.get_range(self.keys.status_prefix, prefix_end(self.keys.status_prefix))
        return {kv.key[len(self.keys.status_prefix):]: loads(kv.value, kv.key)
                for kv in snap.items}


def list_switches(store: Store) -> list[str]:
    """Names of the distributed switches in the store."""
    snap = store.get_range(ROOT, prefix_end(ROOT))
    return list_names([kv.key for kv in snap.items])
