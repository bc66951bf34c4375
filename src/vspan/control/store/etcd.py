"""The store on etcd 3.4+, through its JSON gateway (``/v3/*``) with ``etcd3gw``.

etcd3gw does the unary calls (range, txn, leases, compaction) and picks the
API path. Its watcher ignores ``canceled`` and ``compact_revision`` answers and
hides a broken stream, so the watch stream is read here: one JSON object per
line, a compacted start revision raises :class:`WatchCompacted`, a broken or
ended stream raises :class:`StoreUnavailable`.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
from etcd3gw import exceptions as gw_errors
from etcd3gw.client import Etcd3Client
from etcd3gw.lease import Lease

from vspan.control.store.base import (
    Compare,
    Delete,
    Event,
    KeyValue,
    Put,
    Snapshot,
    StoreError,
    StoreUnavailable,
    TxnResult,
    WatchBatch,
    WatchCompacted,
    prefix_end,
)

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:2379"


def _b64(text: str | bytes) -> str:
    data = text.encode("latin-1") if isinstance(text, str) else text
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _kv(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=_unb64(raw["key"]).decode("latin-1"),
        value=_unb64(raw.get("value", "")),
        mod_revision=int(raw.get("mod_revision", 0)),
        create_revision=int(raw.get("create_revision", 0)),
        version=int(raw.get("version", 0)),
        lease=int(raw.get("lease", 0)),
    )


def parse_url(url: str) -> tuple[str, int, str]:
    """``http://host:port`` -> (host, port, scheme); ValueError when it is not one."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an etcd URL (like http://127.0.0.1:2379)")
    try:
        port = parts.port or 2379
    except ValueError:
        raise ValueError(f"{url!r}: bad port") from None
    return parts.hostname, port, parts.scheme


class EtcdStore:
    """:class:`vspan.control.store.base.Store` on one etcd endpoint."""

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 5.0) -> None:
        host, port, scheme = parse_url(url)
        self.url = url
        self.timeout = timeout
        self.client = Etcd3Client(host=host, port=port, protocol=scheme, timeout=timeout,
                                  api_path="/v3/")

    # ------------------------------------------------------------------ calls
    def _unreachable(self, err: Exception) -> StoreUnavailable:
        detail = err.detail_text if isinstance(err, gw_errors.Etcd3Exception) else None
        return StoreUnavailable(f"etcd at {self.url} is unreachable: {detail or err}")

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            result: dict[str, Any] = self.client.post(self.client.get_url(path), json=body)
        except (gw_errors.ConnectionFailedError, gw_errors.ConnectionTimeoutError,
                requests.RequestException) as err:
            raise self._unreachable(err) from None
        except gw_errors.Etcd3Exception as err:
            raise StoreError(f"etcd at {self.url}: {err.detail_text or err}") from None
        return result

    def get_range(self, start: str, end: str) -> Snapshot:
        """Keys in ``[start, end)``."""
        res = self._post("/kv/range", {"key": _b64(start), "range_end": _b64(end)})
        return Snapshot(int(res["header"]["revision"]),
                        tuple(_kv(kv) for kv in res.get("kvs", [])))

    def get_prefix(self, prefix: str) -> Snapshot:
        """Keys starting with ``prefix``."""
        return self.get_range(prefix, prefix_end(prefix))

    def txn(self, compares: Sequence[Compare], ops: Sequence[Put | Delete]) -> TxnResult:
        """One transaction: compares on mod revisions, then puts and deletes."""
        body: dict[str, Any] = {
            "compare": [{"key": _b64(c.key), "result": "EQUAL", "target": "MOD",
                         "mod_revision": c.mod_revision} for c in compares],
            "success": [], "failure": []}
        for op in ops:
            if isinstance(op, Put):
                put: dict[str, Any] = {"key": _b64(op.key), "value": _b64(op.value)}
                if op.lease:
                    put["lease"] = op.lease
                body["success"].append({"request_put": put})
            else:
                dele: dict[str, Any] = {"key": _b64(op.key)}
                if op.prefix:
                    dele["range_end"] = _b64(prefix_end(op.key))
                body["success"].append({"request_delete_range": dele})
        res = self._post("/kv/txn", body)
        return TxnResult(bool(res.get("succeeded", False)), int(res["header"]["revision"]))

    def watch(self, start: str, end: str, start_revision: int) -> EtcdWatch:
        """A watch stream over ``[start, end)`` from ``start_revision``."""
        return EtcdWatch(self, start, end, start_revision)

    def grant(self, ttl: int) -> int:
        """A lease of ``ttl`` seconds."""
        res = self._post("/lease/grant", {"TTL": ttl, "ID": 0})
        return int(res["ID"])

    def keepalive(self, lease: int) -> int:
        """Refresh ``lease``: its TTL, or -1 when it is gone."""
        try:
            return Lease(lease, self.client).refresh()
        except (gw_errors.ConnectionFailedError, gw_errors.ConnectionTimeoutError,
                requests.RequestException) as err:
            raise self._unreachable(err) from None
        except gw_errors.Etcd3Exception as err:
            raise StoreError(f"etcd at {self.url}: {err.detail_text or err}") from None

    def revoke(self, lease: int) -> None:
        """End ``lease`` (deletes its keys)."""
        self._post("/kv/lease/revoke", {"ID": lease})

    def compact(self, revision: int) -> None:
        """Compact history before ``revision``."""
        self._post("/kv/compaction", {"revision": revision, "physical": True})

    def status(self) -> dict[str, Any]:
        """The member's status (version, db size, leader)."""
        return self._post("/maintenance/status", {})

    def close(self) -> None:
        """Close pooled connections."""
        self.client.session.close()


class EtcdWatch:
    """One watch stream (its own HTTP connection)."""

    def __init__(self, store: EtcdStore, start: str, end: str, start_revision: int) -> None:
        self.store = store
        self._closed = threading.Event()
        self._session = requests.Session()
        body: dict[str, Any] = {"create_request": {"key": _b64(start), "range_end": _b64(end),
                                   "start_revision": start_revision, "progress_notify": True}}
        try:
            self._resp = self._session.post(store.client.get_url("/watch"), json=body,
                                            stream=True, timeout=(store.timeout, None))
        except requests.RequestException as err:
            self._session.close()
            raise StoreUnavailable(f"etcd at {store.url} is unreachable: {err}") from None
        if self._resp.status_code != 200:
            text = self._resp.text
            self._session.close()
            raise StoreError(f"etcd at {store.url} refused the watch: HTTP "
                             f"{self._resp.status_code} {text[:200]}")

    def __iter__(self) -> Iterator[WatchBatch]:
        try:
            for line in self._resp.iter_lines(chunk_size=None):  # type: ignore[call-overload]
                if not line.strip():
                    continue
                batch = self._parse(json.loads(line))
                if batch is not None:
                    yield batch
        except (requests.RequestException, OSError, ValueError, AttributeError) as err:
            if self._closed.is_set():
                return
            raise StoreUnavailable(f"watch on etcd at {self.store.url} broke: {err}") from None
        if not self._closed.is_set():
            raise StoreUnavailable(f"watch on etcd at {self.store.url} ended (etcd stopped?)")

    def _parse(self, msg: dict[str, Any]) -> WatchBatch | None:
        if "error" in msg:
            raise StoreUnavailable(f"watch on etcd at {self.store.url}: {msg['error']}")
        res = msg.get("result", {})
        compact = int(res.get("compact_revision", 0) or 0)
        if compact:
            raise WatchCompacted(compact)
        if res.get("canceled"):
            raise StoreUnavailable(f"etcd cancelled the watch: {res.get('cancel_reason', '')}")
        if res.get("created") and not res.get("events"):
            return None
        events = tuple(Event("delete" if ev.get("type") == "DELETE" else "put", _kv(ev["kv"]))
                       for ev in res.get("events", []))
        return WatchBatch(int(res.get("header", {}).get("revision", 0)), events)

    def close(self) -> None:
        """End the stream; a thread blocked iterating returns."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            raw = self._resp.raw._fp  # http.client.HTTPResponse under urllib3
            sock = socket.fromfd(raw.fileno(), socket.AF_INET, socket.SOCK_STREAM)
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        except (AttributeError, OSError, ValueError):
            pass
        self._resp.close()
        self._session.close()
