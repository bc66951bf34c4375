"""The TCP listener: HOST:PORT parsing, plain HTTP only on loopback, TLS material checked
before the switch starts; the state directory; CLI durations and sizes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from vspan.cli import units
from vspan.cli.serving import ServeError, prepare_state_dir, tcp_server_config
from vspan.config.access import ApiConfig, is_loopback, plain_http_refusal, split_listen
from vspan.config.load import ConfigError, parse_config


@pytest.mark.parametrize(("text", "host", "port"), [
    ("127.0.0.1:8443", "127.0.0.1", 8443), ("[::1]:80", "::1", 80),
    ("localhost:1", "localhost", 1), ("0.0.0.0:65535", "0.0.0.0", 65535)])
def test_split_listen(text: str, host: str, port: int) -> None:
    assert split_listen(text) == (host, port)


@pytest.mark.parametrize("bad", ["8443", ":8443", "127.0.0.1:0", "127.0.0.1:70000",
                                 "127.0.0.1:x", "example.com:443", "[::1:80"])
def test_split_listen_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        split_listen(bad)


def test_loopback_only_for_plain_http() -> None:
    for ok in ("127.0.0.1:1", "127.8.9.10:1", "[::1]:1", "localhost:1"):
        assert plain_http_refusal(ok) is None, ok
    for bad in ("0.0.0.0:1", "[::]:1", "10.0.0.1:1", "[fe80::1]:1"):
        assert "plain HTTP" in str(plain_http_refusal(bad)), bad
    assert not is_loopback("example.com")


def test_config_refuses_plain_http_off_loopback_and_lone_tls_files() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"switch": {"api": {"listen": "0.0.0.0:8443"}}}, "x")
    assert any(e.startswith("switch.api") and "plain HTTP" in e for e in err.value.errors)
    with pytest.raises(ConfigError, match="go together"):
        parse_config({"switch": {"api": {"tls_cert": "/c.pem"}}}, "x")
    ok = parse_config({"switch": {"api": {"listen": "0.0.0.0:8443", "tls_cert": "/c",
                                          "tls_key": "/k"}}}, "x")
    assert ok.switch.api.listen == "0.0.0.0:8443"


def test_tcp_server_config() -> None:
    assert tcp_server_config(ApiConfig(), None, None, None) is None
    plain = tcp_server_config(ApiConfig(), "127.0.0.1:9000", None, None)
    assert plain is not None and plain.url == "http://127.0.0.1:9000"
    assert plain.kwargs == {"host": "127.0.0.1", "port": 9000}
    v6 = tcp_server_config(ApiConfig(listen="[::1]:9001"), None, None, None)
    assert v6 is not None and v6.url == "http://[::1]:9001"
    with pytest.raises(ServeError, match="plain HTTP"):
        tcp_server_config(ApiConfig(), "0.0.0.0:9000", None, None)
    with pytest.raises(ServeError, match="need --listen"):
        tcp_server_config(ApiConfig(), None, "/c", "/k")
    with pytest.raises(ServeError, match="cannot use the TLS"):
        tcp_server_config(ApiConfig(), "0.0.0.0:9000", "/nonexistent.pem", "/nonexistent.key")


def test_state_dir_is_made_private(tmp_path: Path) -> None:
    d = tmp_path / "state" / "sw"
    prepare_state_dir(str(d))
    assert os.stat(d).st_mode & 0o777 == 0o700
    prepare_state_dir(str(d))  # idempotent
    os.chmod(d, 0o777)
    with pytest.raises(ServeError, match="writable by others"):
        prepare_state_dir(str(d))
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(ServeError):
        prepare_state_dir(str(f))


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("30s", 30), ("10m", 600),
                                               ("2h", 7200), ("7d", 604800), ("1.5m", 90)])
def test_durations(text: str, seconds: float) -> None:
    assert units.duration(text) == seconds


@pytest.mark.parametrize(("text", "n"), [("1500", 1500), ("64k", 65536), ("10M", 10 << 20),
                                         ("1G", 1 << 30), ("2KiB", 2048), ("3b", 3)])
def test_sizes(text: str, n: int) -> None:
    assert units.size(text) == n


@pytest.mark.parametrize("bad", ["", "0", "-1", "1x", "m", "1e3"])
def test_bad_durations_and_sizes(bad: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        units.duration(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        units.size(bad)
