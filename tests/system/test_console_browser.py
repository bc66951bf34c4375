"""The web console in a real browser (headless Chromium driven by Selenium) against a real
``vspan up --listen`` with two namespaces: log in with a token, see the ports, create a
mirror session, watch its counters move while one namespace pings the other and a port
ACL's drops appear by reason and rule (no reload),
trace a frame (the page's verdict is the CLI's), and see a viewer refused; the frame
events part showing that switch's own events of real pings and ACL drops.

Screenshots are kept under ``.artifacts/console/`` at the repository root (ignored by git).
Needs Debian's ``chromium`` and ``chromium-driver`` (``scripts/install-system.sh``) and the
``selenium`` Python package; skipped with the reason when one is missing.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.helpers.netns import Lab, require_tools
from tests.system.apiswitch import ApiSwitch
from tests.system.test_switch import MACS, hosts

pytestmark = pytest.mark.system

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "console"
WAIT = 30.0  # a bound for "it never happened", not a speed requirement


def _selenium() -> Any:
    try:
        import selenium
    except ImportError:
        pytest.skip("the selenium Python package is missing (pip install -e '.[dev]')")
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} is missing: apt-get install {pkg} "
                        "(scripts/install-system.sh)")
    return selenium


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium through /usr/bin/chromedriver (no driver or browser downloads)."""
    _selenium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,2200", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-sync"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: Any, what: str, check: Callable[[Any], Any]) -> Any:
    """Wait for ``check(driver)`` to be truthy (its value), failing with ``what``."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.2,
                             ignored_exceptions=(StaleElementReferenceException,)).until(check)
    except TimeoutException:
        shot(driver, "timeout")
        raise AssertionError(f"never happened: {what}; the page said: "
                             f"{driver.find_element('tag name', 'body').text[:2000]}") from None


def shot(driver: Any, name: str) -> Path:
    """Keep a screenshot of the whole page as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.set_window_size(1400, max(int(height) + 120, 800))
    driver.save_screenshot(str(path))
    return path


def text(driver: Any, css: str) -> str:
    found = driver.find_elements("css selector", css)
    return str(found[0].text) if found else ""


def cell(driver: Any, table: str, row_key: str, key: str, css: str) -> str:
    """The text of a cell (``css``) in the row of ``table`` whose data-``key`` is row_key."""
    return text(driver, f"#{table} tr[data-{key}='{row_key}'] {css}")


def number(s: str) -> int:
    return int(s.replace(",", "")) if s.strip() else -1


def login(driver: Any, url: str, token: str) -> None:
    driver.get(f"{url}/console")
    until(driver, "the login form", lambda d: d.find_element("id", "token").is_displayed())
    field = driver.find_element("id", "token")
    field.clear()
    field.send_keys(token)
    driver.find_element("css selector", "#login-form button[type=submit]").click()
    until(driver, "the console after logging in",
          lambda d: d.find_element("id", "app").is_displayed())


def logout(driver: Any) -> None:
    driver.find_element("id", "logout").click()
    until(driver, "the login form again", lambda d: d.find_element("id", "login").is_displayed())


def csp_violations(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser")
            if "Content Security Policy" in e["message"] or "Refused to" in e["message"]]


def test_console_in_a_browser(netlab: Lab, tmp_path: Path, browser: Any) -> None:
    require_tools("ping")
    h = hosts(netlab, {"a": "10.44.0.1/24", "b": "10.44.0.2/24"})
    yaml_text = (
        "ports:\n"
        f"  a: {{interface: {h['a'][1]}, vlan: {{mode: access, id: 10}}, policy: {{acls: "
        "[{id: no-lab, action: deny, direction: both, remote_ip: 10.99.0.0/16}]}}\n"
        f"  b: {{interface: {h['b'][1]}, vlan: {{mode: access, id: 10}}}}\n"
        "  sniff: {type: memory}\n")
    sw = ApiSwitch(tmp_path, yaml_text)
    sw.start()
    pinger: subprocess.Popen[str] | None = None
    try:
        admin_token = sw.token("ui-madmin", "mirror-admin")
        viewer_token = sw.token("ui-viewer", "viewer")
        d = browser

        # a wrong token: the login form says why
        login_fail = f"{sw.url}/console"
        d.get(login_fail)
        until(d, "the login form", lambda d: d.find_element("id", "token").is_displayed())
        d.find_element("id", "token").send_keys(admin_token[:-3] + "AAA")
        d.find_element("css selector", "#login-form button[type=submit]").click()
        until(d, "the refused login", lambda d: "401" in text(d, "#login-msg"))
        assert not d.find_element("id", "app").is_displayed()

        # ------------------------------------------------ a mirror-admin: ports, sessions
        login(d, sw.url, admin_token)
        assert "token:ui-madmin (mirror-admin)" in text(d, "#identity")
        until(d, "the three ports", lambda d: len(d.find_elements(
            "css selector", "#ports-table tbody tr[data-port]")) == 3)
        assert cell(d, "ports-table", "a", "port", "td:nth-of-type(4)") == "access 10"
        assert cell(d, "ports-table", "a", "port", "td:nth-of-type(5)") == "1 ACL"
        assert cell(d, "ports-table", "b", "port", "td:nth-of-type(5)") == "none"
        assert cell(d, "ports-table", "a", "port", "td:nth-of-type(3)") == "up"
        d.execute_script("window.vspanNoReload = 1;")  # gone if the page ever reloads

        d.find_element("id", "m-name").send_keys("mon")
        d.find_element("id", "m-sources").send_keys("a:both")
        d.find_element("id", "m-dests").send_keys("sniff")
        d.find_element("css selector", "#mirror-form button[type=submit]").click()
        until(d, "the session created", lambda d: "Session mon created." in text(d, "#mirror-msg"))
        until(d, "the session listed", lambda d: cell(d, "mirrors-table", "mon", "session",
                                                      "td.state") == "enabled")
        made = {m["name"]: m for m in sw.show("mirrors")}
        assert made["mon"]["sources"] == ["a:both"] and made["mon"]["destinations"] == ["sniff"]
        # the picture: the session's lane and its arrow into sniff
        until(d, "the session in the picture", lambda d: d.find_elements(
            "css selector", "#picture-box svg g[data-session='mon'] path[data-dest='sniff']"))
        desc = d.find_element("css selector", "#picture-box svg desc").get_attribute(
            "textContent")
        assert "session mon (enabled) copies a:both to sniff" in desc
        until(d, "the role of sniff", lambda d: cell(d, "ports-table", "sniff", "port",
                                                     "td:nth-of-type(6)") == "mirror-dest")

        # a namespace pings: the counters move in the page, without a reload
        copies0 = number(cell(d, "mirrors-table", "mon", "session", "td.copies"))
        rx0 = number(cell(d, "ports-table", "a", "port", "td.rx"))
        pinger = netlab.popen(h["a"][0], "ping", "-i", "0.2", "10.44.0.2",
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen: list[int] = []

        def copies_moved(d: Any) -> bool:
            n = number(cell(d, "mirrors-table", "mon", "session", "td.copies"))
            if not seen or seen[-1] != n:
                seen.append(n)
            return len(seen) >= 3 and seen == sorted(seen) and seen[0] >= copies0

        # keyboard focus on a session's button survives the live updates
        button = d.find_element("css selector",
                                "#mirrors-table tr[data-session='mon'] td.actions button")
        d.execute_script("arguments[0].focus();", button)
        until(d, "the session's copies counting up twice", copies_moved)
        assert d.execute_script("return document.activeElement.getAttribute('aria-label');") \
            == "Disable session mon"
        assert number(cell(d, "ports-table", "a", "port", "td.rx")) > rx0
        assert number(cell(d, "ports-table", "sniff", "port", "td.mirrored")) > 0
        assert d.execute_script("return window.vspanNoReload;") == 1
        assert "live" in text(d, "#live")

        # frames the port's ACL denies: the drop, its reason and rule appear and count up
        ns_a = h["a"][0]
        netlab.exec(ns_a, "ip", "route", "add", "10.99.0.0/16", "dev", "eth0")
        netlab.exec(ns_a, "ip", "neigh", "replace", "10.99.0.5", "lladdr", "02:00:00:00:09:09",
                    "dev", "eth0", "nud", "permanent")
        netlab.exec(ns_a, "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.99.0.5", check=False,
                    timeout=30)

        def acl_drops(d: Any) -> int:
            for row in d.find_elements("css selector", "#drops-table tbody tr"):
                cells = [c.text for c in row.find_elements("css selector", "td")]
                if len(cells) == 4 and cells[0] == "a" and cells[2] == "no-lab":
                    return number(cells[3])
            return 0

        until(d, "the ACL's drops in the table", lambda d: acl_drops(d) >= 3)
        reasons = {r["reason"] for r in sw.show("counters")["drops"] if r["rule"] == "no-lab"}
        shown = {c.text for c in d.find_elements("css selector", "#drops-table td:nth-of-type(2)")}
        assert reasons and reasons <= shown
        assert d.execute_script("return window.vspanNoReload;") == 1

        # a trace, as `vspan trace` shows it
        from selenium.webdriver.support.ui import Select

        Select(d.find_element("id", "t-port")).select_by_value("a")
        d.find_element("id", "t-src-mac").clear()
        d.find_element("id", "t-src-mac").send_keys(MACS["a"])
        d.find_element("id", "t-dst-mac").clear()
        d.find_element("id", "t-dst-mac").send_keys(MACS["b"])
        d.find_element("id", "t-src-ip").send_keys("10.44.0.1")
        d.find_element("id", "t-dst-ip").send_keys("10.44.0.2")
        Select(d.find_element("id", "t-proto")).select_by_value("tcp")
        d.find_element("css selector", "#trace-form button[type=submit]").click()
        verdict = until(d, "the trace's verdict", lambda d: text(d, "#trace-out .verdict"))
        cli = sw.cli("trace", "-i", "a", "--src-mac", MACS["a"], "--dst-mac", MACS["b"],
                     "--src-ip", "10.44.0.1", "--dst-ip", "10.44.0.2", "--proto", "tcp")
        assert verdict == cli.stdout.strip().splitlines()[-1]
        assert "delivered to b" in verdict
        stages = [e.text for e in d.find_elements("css selector", "#trace-out .stage")]
        assert stages and all(s.split()[0] in cli.stdout for s in stages)
        assert "mirror" in stages  # the copy of a's frame to sniff is part of its path
        print(f"console screenshot: {shot(d, 'mirror-admin')}")

        # a hostile session name (the configuration allows it) shows as text, runs nothing
        hostile = '<img src=x onerror="window.vspanPwned=1">'
        with sw.client(admin_token) as c:
            made_hostile = c.post(f"/mirrors/{quote(hostile, safe='')}",
                                  json={"sources": ["b"], "destinations": ["sniff"]})
            assert made_hostile.status_code == 200, made_hostile.text
        until(d, "the hostile name listed as text", lambda d: hostile in text(d, "#mirrors-table"))
        until(d, "the hostile name in the picture as text", lambda d: hostile in (
            d.find_element("css selector", "#picture-box svg desc").get_attribute("textContent")))
        assert d.find_elements("css selector", "#app img") == []
        assert d.execute_script("return window.vspanPwned;") is None
        with sw.client(admin_token) as c:
            assert c.delete(f"/mirrors/{quote(hostile, safe='')}").status_code == 200
        until(d, "the hostile session gone", lambda d: hostile not in text(d, "#mirrors-table"))

        # --------------------------------------------------------- a viewer is refused
        logout(d)
        login(d, sw.url, viewer_token)
        assert "token:ui-viewer (viewer)" in text(d, "#identity")
        assert "that needs mirror-admin" in text(d, "#mirror-role")
        until(d, "the session listed for the viewer", lambda d: cell(
            d, "mirrors-table", "mon", "session", "td.state") == "enabled")
        d.find_element("css selector",
                       "#mirrors-table tr[data-session='mon'] td.actions button").click()
        refusal = until(d, "the refusal shown", lambda d: text(d, "#mirror-msg"))
        assert refusal.startswith("Refused (403): token:ui-viewer (viewer) may not do this")
        assert "mirror-admin, admin" in refusal
        print(f"console screenshot: {shot(d, 'viewer-refused')}")
        d.find_element("id", "m-name").send_keys("spy")
        d.find_element("id", "m-sources").send_keys("b")
        d.find_element("id", "m-dests").send_keys("sniff")
        d.find_element("css selector", "#mirror-form button[type=submit]").click()
        until(d, "the create refused", lambda d: "Refused (403)" in text(d, "#mirror-msg")
              and "spy" not in text(d, "#mirrors-table"))
        assert [m["name"] for m in sw.show("mirrors")] == ["mon"]
        assert sw.show("mirrors")[0]["enabled"] is True
        refused = [e for e in sw.audit() if e["identity"] == "token:ui-viewer"
                   and e["result"] == "refused"]
        assert [(e["action"], e["target"]) for e in refused] == [
            ("mirror.disable", "mon"), ("mirror.create", "spy")]
        assert csp_violations(d) == []
    finally:
        if pinger is not None:
            pinger.terminate()
            pinger.wait(timeout=10)
        sw.stop()



# ---------------------------------------------------------------- the frame events part
OBSERVED = [
    ("started", {"type": "started", "observer": {"id": 1}}),
    ("forwarded", {"type": "forwarded", "time": "2026-11-26T18:02:02.371143Z", "frame": 1,
                   "in_port": "a", "outputs": [{"port": "b", "vlan_op": "keep", "vid": None}],
                   "summary": {"src_ip": "10.0.0.1", "dst_ip": "10.0.0.2", "proto": "icmp"}}),
    ("dropped", {"type": "dropped", "time": "2026-11-26T18:02:02.371790Z", "frame": 2,
                 "in_port": "a", "port": "c", "stage": "acl", "reason": "acl-deny",
                 "rule": "no-x", "summary": {"src_ip": "10.0.0.7", "dst_ip": "10.0.0.3",
                                             "proto": "tcp"}}),
    ("suppressed", {"type": "suppressed", "sampled_out": 0, "rate_limited": 5231,
                    "queue_full": 0}),
]


def test_frame_events_part(tmp_path: Path, browser: Any) -> None:
    """The console's frame events part against a stand-in ``GET /observe`` that sends the
    events of docs/observe.md (the real stream, ``vspan observe``, is another branch's
    work): offered only when the access table lists it, lines as they come, Stop."""
    import asyncio
    import threading
    import time as _time

    import uvicorn
    from fastapi.responses import StreamingResponse

    from tests.system.apiswitch import free_port
    from vspan.api.access import ACCESS, Guard, Rule
    from vspan.api.events import sse
    from vspan.api.rest import create_app
    from vspan.config.access import Role
    from vspan.config.load import parse_config
    from vspan.control.agent import Agent
    from vspan.control.roles import Permission
    from vspan.control.tokens import SqliteTokenStore
    from vspan.ports.memory import MemoryPort

    if ("GET", "/observe") in ACCESS:
        pytest.skip("GET /observe is on this branch: the stand-in would hide the real one")
    cfg = parse_config({"switch": {"name": "obs", "state_dir": str(tmp_path)},
                        "ports": {"a": {"type": "memory"}, "b": {"type": "memory"},
                                  "c": {"type": "memory"}}}, "t")
    agent = Agent(cfg, lambda name, _c: MemoryPort(name))
    tokens = SqliteTokenStore(str(tmp_path / "auth.db"))
    token = tokens.create("obs-viewer", Role.VIEWER)
    app = create_app(agent, Guard(tokens, None, lambda: cfg.switch.roles, 0))

    async def stand_in() -> Any:
        for name, data in OBSERVED:
            yield sse(name, data)
        while True:
            await asyncio.sleep(1)

    ACCESS[("GET", "/observe")] = Rule(Permission.READ)
    app.add_api_route("/observe", lambda format="sse", verdict="": StreamingResponse(
        stand_in(), media_type="text/event-stream"), methods=["GET"])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "the stand-in server did not start"
            _time.sleep(0.05)
        d = browser
        login(d, f"http://127.0.0.1:{port}", token)
        until(d, "the frame events offered", lambda d: d.find_element(
            "id", "observe-form").is_displayed())
        d.find_element("id", "observe-toggle").click()
        until(d, "the events listed", lambda d: len(d.find_elements(
            "css selector", "#observe-list li")) == 3)
        lines = [e.text for e in d.find_elements("css selector", "#observe-list li")]
        assert lines == [  # newest first
            "-- suppressed: 0 sampled out, 5231 over the rate cap, 0 not read in time --",
            "18:02:02.371 #2 dropped a at c [acl] acl-deny rule no-x | 10.0.0.7 > 10.0.0.3 tcp",
            "18:02:02.371 #1 forwarded a -> b | 10.0.0.1 > 10.0.0.2 icmp"]
        assert d.find_element("id", "observe-toggle").text == "Stop"
        d.find_element("id", "observe-toggle").click()
        until(d, "the stream stopped", lambda d: d.find_element(
            "id", "observe-toggle").text == "Watch")
        print(f"console screenshot: {shot(d, 'frame-events')}")
    finally:
        del ACCESS[("GET", "/observe")]
        server.should_exit = True
        thread.join(timeout=10)
        agent.stop()


def observed_lines(driver: Any) -> list[str]:
    """The frame events part's lines, newest first."""
    return [e.text for e in driver.find_elements("css selector", "#observe-list li")]


def test_frame_events_of_a_real_switch(netlab: Lab, tmp_path: Path, browser: Any) -> None:
    """The console's frame events part on a real ``vspan up --listen`` (its own
    ``GET /observe``): a ping between two namespaces shows as forwarded lines both ways, a
    frame the port ACL denies as a drop with its stage, reason and rule, as the switch
    counts it; "dropped" shows only drops; Stop detaches the switch's observer; a viewer
    (who may not see frame headers) gets no events."""
    require_tools("ping")
    h = hosts(netlab, {"a": "10.45.0.1/24", "b": "10.45.0.2/24"})
    yaml_text = (
        "ports:\n"
        f"  a: {{interface: {h['a'][1]}, vlan: {{mode: access, id: 10}}, policy: {{acls: "
        "[{id: no-lab, action: deny, direction: both, remote_ip: 10.99.0.0/16}]}}\n"
        f"  b: {{interface: {h['b'][1]}, vlan: {{mode: access, id: 10}}}}\n")
    sw = ApiSwitch(tmp_path, yaml_text)
    sw.start()
    try:
        admin_token = sw.token("ui-obs", "mirror-admin")
        viewer_token = sw.token("ui-obs-viewer", "viewer")
        d = browser
        login(d, sw.url, admin_token)
        until(d, "the frame events offered", lambda d: d.find_element(
            "id", "observe-form").is_displayed())
        assert observed_lines(d) == []
        d.find_element("id", "observe-toggle").click()
        until(d, "watching", lambda d: d.find_element("id", "observe-toggle").text == "Stop")
        with sw.client(admin_token) as c:
            until(d, "the switch's observer attached", lambda _d: len(
                c.get("/observers").json()) == 1)

        # a real ping through the switch: forwarded both ways, with the frames' addresses
        ns_a = h["a"][0]
        netlab.exec(ns_a, "ping", "-c", "2", "-i", "0.2", "-W", "2", "10.45.0.2", timeout=30)

        def has_line(*parts: str) -> Callable[[Any], bool]:
            return lambda d: any(all(p in line for p in parts) for line in observed_lines(d))

        until(d, "a's echo request forwarded to b", has_line(
            " forwarded a -> b | 10.45.0.1 > 10.45.0.2 icmp"))
        until(d, "b's echo reply forwarded to a", has_line(
            " forwarded b -> a | 10.45.0.2 > 10.45.0.1 icmp"))

        # frames the port's ACL denies: the drop with its stage, reason and rule
        netlab.exec(ns_a, "ip", "route", "add", "10.99.0.0/16", "dev", "eth0")
        netlab.exec(ns_a, "ip", "neigh", "replace", "10.99.0.5", "lladdr", "02:00:00:00:09:09",
                    "dev", "eth0", "nud", "permanent")
        drops0 = sum(r["frames"] for r in sw.show("counters")["drops"] if r["rule"] == "no-lab")
        netlab.exec(ns_a, "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.99.0.5", check=False,
                    timeout=30)
        drop_line = "dropped a at a [acl] acl-deny rule no-lab | 10.45.0.1 > 10.99.0.5 icmp"
        until(d, "the ACL's drops listed", lambda d: sum(
            drop_line in line for line in observed_lines(d)) == 2)
        drops1 = sum(r["frames"] for r in sw.show("counters")["drops"] if r["rule"] == "no-lab")
        assert drops1 - drops0 == 2  # as many lines as the switch counted drops
        line = next(x for x in observed_lines(d) if drop_line in x)
        clock, number = line.split()[:2]  # "22:40:24.596 #10 dropped ..."
        assert clock.count(":") == 2 and number.startswith("#"), line
        print(f"console screenshot: {shot(d, 'frame-events-real')}")

        # only drops
        d.find_element("id", "observe-toggle").click()
        until(d, "stopped", lambda d: d.find_element("id", "observe-toggle").text == "Watch")
        with sw.client(admin_token) as c:
            until(d, "the switch's observer detached", lambda _d: c.get(
                "/observers").json() == [])
        from selenium.webdriver.support.ui import Select

        Select(d.find_element("id", "observe-verdict")).select_by_value("dropped")
        before = len(observed_lines(d))
        d.find_element("id", "observe-toggle").click()
        until(d, "watching drops", lambda d: d.find_element("id", "observe-toggle").text
              == "Stop")
        with sw.client(admin_token) as c:
            until(d, "the drops observer attached", lambda _d: len(
                c.get("/observers").json()) == 1)
        netlab.exec(ns_a, "ping", "-c", "2", "-i", "0.2", "-W", "2", "10.45.0.2", timeout=30)
        netlab.exec(ns_a, "ping", "-c", "1", "-W", "1", "10.99.0.5", check=False, timeout=30)
        until(d, "the new drop listed", lambda d: len(observed_lines(d)) > before
              and drop_line in observed_lines(d)[0])
        new = observed_lines(d)[:len(observed_lines(d)) - before]
        assert new and all(" dropped " in line for line in new), new
        d.find_element("id", "observe-toggle").click()
        until(d, "stopped again", lambda d: d.find_element("id", "observe-toggle").text
              == "Watch")

        # a viewer may not see frame headers: no events for it
        logout(d)
        login(d, sw.url, viewer_token)
        assert observed_lines(d) == []  # nothing of the previous session is left
        until(d, "the frame events offered to the viewer too", lambda d: d.find_element(
            "id", "observe-form").is_displayed())
        d.find_element("id", "observe-toggle").click()
        refusal = until(d, "the refusal", lambda d: text(d, "#observe-msg")
                        if "403" in text(d, "#observe-msg") else "")
        assert refusal.startswith("Refused (403): token:ui-obs-viewer (viewer)"), refusal
        netlab.exec(ns_a, "ping", "-c", "1", "-W", "2", "10.45.0.2", timeout=30)
        assert observed_lines(d) == [], "a viewer was shown frame events"
        with sw.client(admin_token) as c:
            assert c.get("/observers").json() == []
        assert csp_violations(d) == []
    finally:
        sw.stop()
