"""Every role against every endpoint of a real ``vspan up`` over TCP, as the access table
says; each change and each refusal leaves exactly one audit entry, naming who, from where,
what and how it ended."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.netns import is_root
from tests.system.apiswitch import ApiSwitch, api_switch
from tests.system.switchproc import VSPAN
from vspan.api.access import ACCESS, Rule
from vspan.control.roles import Permission, roles_with
from vspan.packet import build

pytestmark = pytest.mark.system

ROLES = ("viewer", "operator", "mirror-admin", "admin")
CALLERS = (*ROLES, "anonymous")
YAML = "ports: {a: {type: memory}, b: {type: memory}, c: {type: memory}}\n"
ARP = build.arp_request("02:00:00:00:00:01", "10.0.0.1", "10.0.0.2").hex()


class Matrix:
    """The running switch and a token per role."""

    def __init__(self, sw: ApiSwitch) -> None:
        self.sw = sw
        self.tokens = {role: sw.token(f"mx-{role}", role) for role in ROLES}

    def identity(self, caller: str) -> str:
        return "anonymous" if caller == "anonymous" else f"token:mx-{caller}"


@pytest.fixture(scope="module")
def matrix() -> Iterator[Matrix]:
    if not is_root():
        pytest.skip("needs root to run a switch")
    with api_switch("au-api-", YAML) as sw:
        yield Matrix(sw)


def concrete(method: str, path: str, caller: str) -> tuple[str, dict[str, Any] | None]:
    """A URL with real path parameters and a body the handler can work with."""
    slug = caller.replace("-", "")
    params = {"what": "ports", "port": "a", "entry_id": "no-such-entry", "section": "s1",
              "rule_id": "no-such-rule", "capture_id": "999999", "asset": "main.js",
              "name": "no-such-token" if path.startswith("/tokens") else f"m{slug}"}
    url = path.format(**params)
    if path == "/events":
        url += "?limit=1&interval=0.25"  # a stream: one event, then it ends
    elif (method, path) == ("GET", "/observe"):
        url += "?duration=0.5"  # a stream: ended by the switch, not by the client
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/trace"): {"port": "a", "frame": ARP},
        ("POST", "/policy/explain"): {"port": "a", "direction": "in", "frame": ARP},
        ("POST", "/reload"): {},
        ("POST", "/ports/{port}/acls"): {"id": f"acl-{slug}", "action": "deny",
                                         "direction": "in", "remote_ip": "10.9.9.9"},
        ("POST", "/firewall/sections/{section}/rules"): {"id": f"fw-{slug}",
                                                         "action": "allow"},
        ("POST", "/mirrors/{name}"): {"sources": ["a"], "destinations": ["b"],
                                      "enabled": False},
        ("POST", "/mirrors/{name}/enable"): {"duration": 60},
        ("POST", "/captures"): {"ports": ["a"], "max_packets": 1, "duration": 1},
        ("POST", "/tokens"): {"name": f"t-{slug}", "role": "viewer"},
    }
    return url, bodies.get((method, path))


def allowed(rule: Rule, caller: str) -> bool:
    """What the table says ``caller`` may do."""
    if rule.permission is Permission.PUBLIC:
        return True
    if caller == "anonymous":
        return False
    return any(r.value == caller for r in roles_with(rule.permission))


API_ENDPOINTS = [k for k, r in ACCESS.items() if not r.only_in and (
    r.permission is not Permission.PUBLIC or k[1] == "/openapi.json")]


@pytest.mark.parametrize(("method", "path"), API_ENDPOINTS,
                         ids=[f"{m} {p}" for m, p in API_ENDPOINTS])
def test_role_against_endpoint(matrix: Matrix, method: str, path: str) -> None:
    rule = ACCESS[(method, path)]
    for caller in CALLERS:
        url, body = concrete(method, path, caller)
        who = matrix.identity(caller)
        before = len([e for e in matrix.sw.audit() if e["identity"] == who])
        with matrix.sw.client(matrix.tokens.get(caller)) as c:
            resp = c.request(method, url, json=body)
        entries = [e for e in matrix.sw.audit() if e["identity"] == who][before:]
        where = f"{caller} {method} {url}: {resp.status_code} {resp.text[:300]}"
        if allowed(rule, caller):
            assert resp.status_code not in (401, 403), where
            assert resp.status_code < 500, where
            if rule.action:  # a change (or start/stop): one entry, with its outcome
                assert len(entries) == 1, f"{where}: audit {entries}"
                (e,) = entries
                assert e["action"] == rule.action and e["status"] == resp.status_code
                assert e["result"] == ("ok" if resp.status_code < 400 else "failed"), e
                assert e["role"] == caller and e["source"].startswith("tcp:127.0.0.1:")
            else:  # a read that was served is not audited
                assert entries == [], f"{where}: audit {entries}"
        else:
            expected = 401 if caller == "anonymous" else 403
            assert resp.status_code == expected, where
            refusal = resp.json()
            assert refusal["identity"] == who
            if expected == 403:
                assert set(refusal["needs"]) == {r.value for r in roles_with(rule.permission)}
            else:
                assert resp.headers["www-authenticate"].startswith("Bearer")
            assert len(entries) == 1, f"{where}: audit {entries}"
            (e,) = entries
            assert e["result"] == "refused" and e["status"] == expected
            assert e["action"] == (rule.action or f"{method} {path}")
            assert e["role"] == ("-" if caller == "anonymous" else caller)


def test_audit_targets_name_what_was_changed(matrix: Matrix) -> None:
    with matrix.sw.client(matrix.tokens["operator"]) as c:
        assert c.post("/ports/a/acls", json={"id": "tgt1", "action": "deny", "direction": "in",
                                             "remote_ip": "10.1.1.1"}).status_code == 200
        assert c.delete("/ports/a/acls/tgt1").status_code == 200
    with matrix.sw.client(matrix.tokens["mirror-admin"]) as c:
        assert c.post("/mirrors/tgtm", json={"sources": ["a"], "destinations": ["c"]}
                      ).status_code == 200
        assert c.post("/mirrors/tgtm/disable").status_code == 200
        assert c.delete("/mirrors/tgtm").status_code == 200
    mine = [(e["identity"], e["action"], e["target"], e["result"]) for e in matrix.sw.audit()
            if e["target"] in ("a/tgt1", "tgtm")]
    assert mine == [
        ("token:mx-operator", "acl.add", "a/tgt1", "ok"),
        ("token:mx-operator", "acl.remove", "a/tgt1", "ok"),
        ("token:mx-mirror-admin", "mirror.create", "tgtm", "ok"),
        ("token:mx-mirror-admin", "mirror.disable", "tgtm", "ok"),
        ("token:mx-mirror-admin", "mirror.delete", "tgtm", "ok"),
    ]


def test_the_access_table_is_served_and_matches(matrix: Matrix) -> None:
    with matrix.sw.client(matrix.tokens["viewer"]) as c:
        rows = c.get("/auth/access").json()
        doc = c.get("/openapi.json").json()
    served = {(r["method"], r["path"]): r for r in rows}
    assert set(served) == set(ACCESS)
    assert served[("GET", "/dvs/status")]["only_in"] == "vspan agent"
    for key, rule in ACCESS.items():
        assert served[key]["permission"] == rule.permission.value
    # the OpenAPI document carries the same rules, per operation
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            rule = ACCESS[(method.upper(), path)]
            assert op["x-vspan-roles"] == [r.value for r in roles_with(rule.permission)]
            assert op["security"] == [{"bearer": []}]
            documented = set(op["responses"])
            assert {"401", "403"} <= documented, f"{method} {path}: {documented}"


def test_whoami_over_tcp(matrix: Matrix) -> None:
    with matrix.sw.client(matrix.tokens["mirror-admin"]) as c:
        me = c.get("/auth/whoami").json()
    assert me["identity"] == "token:mx-mirror-admin"
    assert me["roles"] == ["mirror-admin"] and me["permissions"] == ["mirror", "read"]
    assert me["source"].startswith("tcp:127.0.0.1:")


def test_capture_outside_the_capture_directory_needs_admin(matrix: Matrix) -> None:
    outside = matrix.sw.workdir / "elsewhere.pcapng"
    with matrix.sw.client(matrix.tokens["mirror-admin"]) as c:
        resp = c.post("/captures", json={"ports": ["a"], "path": str(outside)})
        assert resp.status_code == 403, resp.text
        assert "capture directory" in resp.json()["error"]
        for bad in ("../x.pcapng", "sub/x.pcapng", ".hidden"):
            resp = c.post("/captures", json={"ports": ["a"], "path": bad})
            assert resp.status_code == 422, (bad, resp.text)
        resp = c.post("/captures", json={"ports": ["a"], "path": "mine.pcapng",
                                         "max_packets": 1})
        assert resp.status_code == 200, resp.text
        cap = resp.json()
        assert cap["path"] == str(matrix.sw.state_dir / "captures" / "mine.pcapng")
        assert c.delete(f"/captures/{cap['id']}").status_code == 200
    assert not outside.exists()
    refused = [e for e in matrix.sw.audit() if e["action"] == "capture.start"
               and e["result"] == "refused" and e["identity"] == "token:mx-mirror-admin"]
    assert refused and "capture directory" in refused[-1]["detail"]
    with matrix.sw.client(matrix.tokens["admin"]) as c:
        resp = c.post("/captures", json={"ports": ["a"], "path": str(outside)})
        assert resp.status_code == 200, resp.text
        c.delete(f"/captures/{resp.json()['id']}")
    assert outside.exists()


def test_reload_from_another_file_needs_admin(matrix: Matrix) -> None:
    other = matrix.sw.workdir / "other.yaml"
    other.write_text(matrix.sw.config.read_text())
    with matrix.sw.client(matrix.tokens["operator"]) as c:
        resp = c.post("/reload", json={"path": str(other)})
        assert resp.status_code == 403, resp.text
        assert resp.json()["needs"] == ["admin"]
        # its own file it may reload
        assert c.post("/reload", json={"live": "keep"}).status_code == 200
    with matrix.sw.client(matrix.tokens["admin"]) as c:
        for special in ("/dev/zero", str(matrix.sw.workdir)):
            resp = c.post("/reload", json={"path": special})
            assert resp.status_code == 400 and "regular file" in resp.json()["error"], \
                resp.text
        resp = c.post("/reload", json={"path": str(other), "live": "keep"})
        assert resp.status_code == 200, resp.text
        # back to the switch's own file
        resp = c.post("/reload", json={"path": str(matrix.sw.config), "live": "keep"})
        assert resp.status_code == 200, resp.text


def test_refused_bodies_are_never_parsed(matrix: Matrix) -> None:
    """A refused caller learns nothing from validation: malformed JSON is still 401/403."""
    for caller, status in (("anonymous", 401), ("viewer", 403)):
        with matrix.sw.client(matrix.tokens.get(caller)) as c:
            resp = c.post("/mirrors/x", content=b"{not json",
                          headers={"content-type": "application/json"})
            assert resp.status_code == status, resp.text


def test_state_files_are_private(matrix: Matrix) -> None:
    st = matrix.sw.state_dir
    assert os.stat(st).st_mode & 0o777 == 0o700
    for name in ("auth.db", "audit.jsonl"):
        assert os.stat(st / name).st_mode & 0o777 == 0o600, name
    # the token store keeps no token in clear text
    raw = (st / "auth.db").read_bytes()
    for token in matrix.tokens.values():
        assert token.encode() not in raw
        assert token.split("_", 2)[2].encode() not in raw


def test_a_mirror_admin_fetches_its_capture(matrix: Matrix, tmp_path: Path) -> None:
    """Captures land in the switch's private directory; a mirror-admin gets the file through
    the API (over TCP too), a viewer does not; the download is audited."""
    with matrix.sw.client(matrix.tokens["mirror-admin"]) as c:
        cap = c.post("/captures", json={"ports": ["a"], "path": "fetch.pcapng"}).json()
        running = c.get(f"/captures/{cap['id']}/file")
        assert running.status_code == 409 and "still running" in running.json()["error"]
        assert c.delete(f"/captures/{cap['id']}").status_code == 200
        got = c.get(f"/captures/{cap['id']}/file")
        assert got.status_code == 200, got.text
        assert got.headers["content-type"] == "application/x-pcapng"
    on_disk = Path(cap["path"])
    assert got.content == on_disk.read_bytes() and got.content[:4] == b"\x0a\x0d\x0d\x0a"
    assert os.stat(on_disk).st_mode & 0o777 == 0o600  # captured traffic is private
    with matrix.sw.client(matrix.tokens["viewer"]) as c:
        assert c.get(f"/captures/{cap['id']}/file").status_code == 403
    fetched = [e for e in matrix.sw.audit() if e["action"] == "capture.download"]
    assert [(e["identity"], e["result"]) for e in fetched[-2:]] == [
        ("token:mx-mirror-admin", "ok"), ("token:mx-viewer", "refused")]
    # the CLI does the same with -o, over TCP with the token in the environment
    out = tmp_path / "viacli.pcapng"
    proc = subprocess.run([*VSPAN, "capture", "a", "--duration", "1", "-o", str(out),
                           "--url", matrix.sw.url],
                          capture_output=True, text=True, timeout=60,
                          env=os.environ | {"VSPAN_TOKEN": matrix.tokens["mirror-admin"]})
    assert proc.returncode == 0, proc.stderr
    assert "(time box over)" in proc.stderr and out.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
