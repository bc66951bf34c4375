"""Hostile callers against a real ``vspan up``: wrong, expired and revoked tokens, tokens in
the URL, a viewer trying every write, control-socket users without a role (``nobody`` via
``runuser``), TLS with a certificate the test makes, plain HTTP refused off loopback."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.netns import is_root, require_tools
from tests.system.apiswitch import SYSTEM_PYTHON, ApiSwitch, free_port
from tests.system.switchproc import VSPAN, SwitchProcess
from vspan.api.access import ACCESS
from vspan.control.roles import Permission

pytestmark = pytest.mark.system

YAML = "ports: {a: {type: memory}, b: {type: memory}}\n"


@pytest.fixture
def workdir() -> Iterator[Path]:
    if not is_root():
        pytest.skip("needs root to run a switch")
    d = Path(tempfile.mkdtemp(prefix="au-hostile-"))
    os.chmod(d, 0o711)  # nobody may traverse to the socket (the socket's mode decides)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def api(workdir: Path) -> Iterator[ApiSwitch]:
    sw = ApiSwitch(workdir, YAML)
    sw.start()
    try:
        yield sw
    finally:
        sw.stop()


def refusals(sw: ApiSwitch, since: int) -> list[dict[str, object]]:
    return [e for e in sw.audit()[since:] if e["result"] == "refused"]


def test_wrong_tokens_are_refused_and_audited(api: ApiSwitch) -> None:
    real = api.token("real", "admin")
    token_id = real.split("_")[1]
    forged = f"vspan_{token_id}_{'A' * 43}"  # a real id with a made-up secret
    n = len(api.audit())
    for bad in (forged, f"vspan_{secrets.token_hex(8)}_{'B' * 43}", "garbage", real + "x"):
        with api.client(bad) as c:
            resp = c.get("/config")
        assert resp.status_code == 401, (bad, resp.text)
        assert resp.json()["error"] == "invalid token"
        assert "config" not in resp.text.lower().replace("this api", "")
    with httpx.Client(base_url=api.url, timeout=10) as c:
        resp = c.get("/config", headers={"Authorization": f"Basic {real}"})
        assert resp.status_code == 401 and "Bearer" in resp.json()["error"]
    got = refusals(api, n)
    assert [e["detail"] for e in got] == ["unknown token", "unknown token", "malformed token",
                                          "malformed token", "not a bearer token"]
    assert all(e["identity"] == "anonymous" and e["status"] == 401 for e in got)


def test_expired_and_revoked_tokens(api: ApiSwitch) -> None:
    short = api.token("short", "viewer", "--expires", "1s")
    gone = api.token("gone", "admin")
    with api.client(gone) as c:
        assert c.get("/health").status_code == 200
    assert api.cli("token", "revoke", "gone").stdout.strip() == "token gone revoked"
    time.sleep(1.5)
    n = len(api.audit())
    with api.client(short) as c:
        resp = c.get("/health")
        assert resp.status_code == 401 and "expired" in resp.json()["error"]
    with api.client(gone) as c:
        resp = c.post("/tokens", json={"name": "again", "role": "admin"})
        assert resp.status_code == 401 and "revoked" in resp.json()["error"]
    got = refusals(api, n)
    assert [(e["identity"], e["detail"]) for e in got] == [
        ("token:short", "expired token"), ("token:gone", "revoked token")]
    listed = {t["name"]: t["state"] for t in api.show_tokens()}
    assert listed["short"] == "expired" and listed["gone"] == "revoked"
    assert "again" not in listed
    # a revoked name can be given a new token; the old one stays dead
    fresh = api.token("gone", "viewer")
    with api.client(fresh) as c:
        assert c.get("/health").status_code == 200
    with api.client(gone) as c:
        assert c.get("/health").status_code == 401


def test_token_in_the_url_is_refused(api: ApiSwitch) -> None:
    admin = api.token("urladmin", "admin")
    n = len(api.audit())
    with httpx.Client(base_url=api.url, timeout=10) as c:
        for query in ({"token": admin}, {"access_token": admin}, {"x": admin},
                      {"api_key": "whatever"}):
            resp = c.get("/config", params=query)
            assert resp.status_code == 401, (query, resp.text)
            assert "Authorization header" in resp.json()["error"]
        # even next to a good header: a token that went into a URL is a leaked token
        resp = c.post("/mirrors/leak", params={"token": admin},
                      headers={"Authorization": f"Bearer {admin}"},
                      json={"sources": ["a"], "destinations": ["b"]})
        assert resp.status_code == 401
    got = refusals(api, n)
    assert len(got) == 5 and all("query string" in str(e["detail"]) for e in got)
    assert got[-1]["action"] == "mirror.create"
    assert "leak" not in str(api.show("config")["mirrors"])


def test_a_viewer_changes_nothing(api: ApiSwitch) -> None:
    viewer = api.token("looker", "viewer")
    config_before = api.show("config")
    tokens_before = [(t["name"], t["role"], t["state"]) for t in api.show_tokens()]
    n = len(api.audit())
    writes = [(m, p) for (m, p), r in ACCESS.items()
              if r.permission not in (Permission.READ, Permission.PUBLIC,
                                      Permission.IDENTIFIED)]
    with api.client(viewer) as c:
        for method, path in writes:
            url = path.format(name="m1", port="a", entry_id="e1", section="s", rule_id="r",
                              capture_id="1")
            body = {"sources": ["a"], "destinations": ["b"]} if method == "POST" else None
            resp = c.request(method, url, json=body)
            assert resp.status_code == 403, (method, url, resp.text)
    assert api.show("config") == config_before
    assert [(t["name"], t["role"], t["state"]) for t in api.show_tokens()] == tokens_before
    assert len(refusals(api, n)) == len(writes)


# ------------------------------------------------------------------- control socket
@pytest.fixture
def group() -> Iterator[str]:
    require_tools("groupadd", "groupdel", "runuser")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"needs {SYSTEM_PYTHON} to connect as another user")
    name = f"au{secrets.token_hex(3)}"
    subprocess.run(["groupadd", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["groupdel", name], capture_output=True)


def _with_roles(sw: ApiSwitch, roles: str) -> None:
    """Rewrite the switch's file with ``switch.roles`` and reload (roles apply live)."""
    text = sw.config.read_text()
    head, _, rest = text.partition("\n")
    head = head.rsplit("}", 1)[0] + (f", roles: {roles}}}" if roles else "}")
    sw.config.write_text(head + "\n" + rest)
    sw.cli("reload", "--keep-live")


def test_socket_users_get_their_mapped_role(workdir: Path, group: str) -> None:
    sw = ApiSwitch(workdir, YAML, up_args=("--socket-group", group))
    sw.start()
    try:
        os.chmod(workdir, 0o711)
        spec = {"sources": ["a"], "destinations": ["b"]}
        # connected, but no role: everything but "who am I" is refused
        me = sw.as_user("nobody", "GET", "/auth/whoami", groups=(group,))
        assert me["status"] == 200
        assert me["body"]["identity"] == "uid:65534(nobody)" and me["body"]["roles"] == []
        assert sw.as_user("nobody", "GET", "/health", groups=(group,))["status"] == 403
        refused = sw.as_user("nobody", "POST", "/mirrors/spy", spec, groups=(group,))
        assert refused["status"] == 403 and refused["body"]["identity"] == "uid:65534(nobody)"
        entry = sw.audit()[-1]
        assert (entry["identity"], entry["role"], entry["action"], entry["result"]) == \
            ("uid:65534(nobody)", "-", "mirror.create", "refused")
        assert entry["source"].startswith("unix:pid=")
        # its group mapped to viewer: reads, no writes
        _with_roles(sw, f"{{groups: {{{group}: viewer}}}}")
        assert sw.as_user("nobody", "GET", "/health", groups=(group,))["status"] == 200
        assert sw.as_user("nobody", "POST", "/mirrors/spy", spec,
                          groups=(group,))["status"] == 403
        # the user mapped to mirror-admin on top: the roles add up
        _with_roles(sw, f"{{groups: {{{group}: viewer}}, users: {{nobody: mirror-admin}}}}")
        made = sw.as_user("nobody", "POST", "/mirrors/spy", spec, groups=(group,))
        assert made["status"] == 200, made
        entry = sw.audit()[-1]
        assert (entry["identity"], entry["role"], entry["action"], entry["result"]) == \
            ("uid:65534(nobody)", "viewer+mirror-admin", "mirror.create", "ok")
        assert sw.as_user("nobody", "POST", "/reload", {}, groups=(group,))["status"] == 403
        # unmapped: viewer lets any connected user read
        _with_roles(sw, "{unmapped: viewer}")
        assert sw.as_user("nobody", "GET", "/show/mirrors", groups=(group,))["status"] == 200
        assert sw.as_user("nobody", "DELETE", "/mirrors/spy", groups=(group,))["status"] == 403
        # root is admin whatever the map says
        assert sw.cli("mirror", "delete", "spy").returncode == 0
    finally:
        sw.stop()


def test_a_bearer_token_does_not_lift_a_socket_user(workdir: Path, group: str) -> None:
    """On the control socket the uid is the identity; an Authorization header is ignored."""
    sw = ApiSwitch(workdir, YAML, up_args=("--socket-group", group))
    sw.start()
    try:
        admin = sw.token("adm", "admin")
        script = (
            "import socket,sys\n"
            "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
            "s.sendall(b'GET /config HTTP/1.0\\r\\nAuthorization: Bearer '+sys.argv[2].encode()"
            "+b'\\r\\n\\r\\n')\n"
            "print(s.recv(100).split(b'\\r\\n')[0].decode())\n")
        proc = subprocess.run(["runuser", "-u", "nobody", "-G", group, "--", SYSTEM_PYTHON,
                               "-c", script, sw.socket, admin],
                              capture_output=True, text=True, timeout=30)
        assert proc.stdout.strip().endswith(" 403 Forbidden"), proc.stdout + proc.stderr
    finally:
        sw.stop()


# ----------------------------------------------------------------------------- TLS
def make_cert(d: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and its key), made with openssl."""
    require_tools("openssl")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=vspan-test", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    return cert, key


def test_tls_with_a_self_signed_certificate(workdir: Path) -> None:
    cert, key = make_cert(workdir)
    sw = ApiSwitch(workdir, YAML, tls=(cert, key))
    assert sw.url.startswith("https://")
    sw.start()
    try:
        token = sw.token("tlsadmin", "mirror-admin")
        env = os.environ | {"VSPAN_TOKEN": token}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*VSPAN, *args, "--url", sw.url, "--cacert", str(cert)],
                                  capture_output=True, text=True, timeout=30, env=env)

        created = cli("mirror", "create", "viatls", "--source", "a", "--dest", "b")
        assert created.returncode == 0, created.stderr
        shown = cli("show", "mirrors", "--json")
        assert shown.returncode == 0 and "viatls" in shown.stdout
        # the token file works as well as the variable
        tf = workdir / "token"
        tf.write_text(token + "\n")
        via_file = subprocess.run([*VSPAN, "show", "ports", "--url", sw.url, "--cacert",
                                   str(cert), "--token-file", str(tf)],
                                  capture_output=True, text=True, timeout=30,
                                  env={k: v for k, v in env.items() if k != "VSPAN_TOKEN"})
        assert via_file.returncode == 0, via_file.stderr
        # a mirror-admin may not revoke tokens: the CLI says so
        refused = cli("token", "revoke", "tlsadmin")
        assert refused.returncode == 1 and "needs one of the roles admin" in refused.stderr
        # without trusting the certificate the client refuses the server
        untrusted = subprocess.run([*VSPAN, "show", "ports", "--url", sw.url],
                                   capture_output=True, text=True, timeout=30, env=env)
        assert untrusted.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        # plain HTTP to the TLS port gets nothing useful
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{sw.port}/health",
                      headers={"Authorization": f"Bearer {token}"}, timeout=5).raise_for_status()
        entry = [e for e in sw.audit() if e["action"] == "mirror.create"][-1]
        assert entry["identity"] == "token:tlsadmin" and entry["result"] == "ok"
    finally:
        sw.stop()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("listen", ["0.0.0.0:{port}", "[::]:{port}", "10.99.0.1:{port}"])
def test_plain_http_off_loopback_is_refused(workdir: Path, listen: str) -> None:
    port = free_port()
    sw = SwitchProcess(workdir, YAML)
    proc = subprocess.run([*VSPAN, "up", "-c", str(sw.config), "--listen",
                           listen.format(port=port)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "plain HTTP" in proc.stderr and "loopback" in proc.stderr and "--tls-cert" in \
        proc.stderr, proc.stderr
    assert not os.path.exists(sw.socket)
    assert not _listening(port)


def test_plain_http_off_loopback_in_the_config_is_refused(workdir: Path) -> None:
    cfg = workdir / "c.yaml"
    cfg.write_text("switch: {api: {listen: '0.0.0.0:8443'}}\nports: {}\n")
    proc = subprocess.run([*VSPAN, "check-config", str(cfg)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "switch.api" in proc.stderr + proc.stdout
    assert "plain HTTP" in proc.stderr + proc.stdout


def test_bad_tls_material_is_refused(workdir: Path) -> None:
    sw = SwitchProcess(workdir, YAML)
    junk = workdir / "junk.pem"
    junk.write_text("not a certificate\n")
    for extra, says in (
            (["--tls-cert", str(junk)], "go together"),
            (["--tls-cert", str(junk), "--tls-key", str(junk)], "cannot use the TLS"),
            (["--tls-cert", str(workdir / "none.pem"), "--tls-key", str(junk)],
             "cannot use the TLS")):
        proc = subprocess.run([*VSPAN, "up", "-c", str(sw.config), "--listen",
                               f"0.0.0.0:{free_port()}", *extra],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and says in proc.stderr, (extra, proc.stderr)
        assert not os.path.exists(sw.socket)
