"""Prometheus metrics collected from the running switch on each scrape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vspan.control import views
from vspan.control.agent import Agent

FLOODED_HELP = ("frames received on the port that the switch flooded in their VLAN (broadcast, "
                "multicast, unknown unicast); one per frame, whatever the number of copies")


class SwitchCollector(Collector):
    """Reads counters from the engine thread and exposes them."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        """Yield one family per counter group."""
        engine = self.agent.engine
        snap = engine.call(lambda: (views.ports_view(engine), views.counters_view(engine),
                                    views.mirrors_view(engine), views.vteps_view(engine),
                                    views.accounting_view(engine)))
        ports, counters, mirrors, overlay, acct = snap
        port_fams = {
            k: CounterMetricFamily(
                f"vspan_port_{k}", FLOODED_HELP if k == "flooded" else f"switch-level {k} per port",
                labels=["port"])
            for k in ("rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "flooded",
                      "mirrored_out", "dropped", "forwarded", "consumed")
        }
        link = GaugeMetricFamily("vspan_port_link_up", "1 when the port's link is up",
                                 labels=["port"])
        for row in ports:
            for k, fam in port_fams.items():
                fam.add_metric([row["name"]], row["counters"][k])
            link.add_metric([row["name"]], 1 if row["link"] == "up" else 0)
        yield from port_fams.values()
        yield link
        yield from team_metrics(ports)
        fates = CounterMetricFamily(
            "vspan_port_rx_dropped", "frames received on the port and delivered nowhere, by "
            "the reason of their first drop (an accounting term)", labels=["port", "reason"])
        diff = GaugeMetricFamily(
            "vspan_accounting_difference", "received - (forwarded + rx_dropped + consumed) "
            "per port: 0 when every frame is accounted for", labels=["port"])
        for a in acct["ports"]:
            for reason, n in a["dropped"].items():
                fates.add_metric([a["port"], reason], n)
            diff.add_metric([a["port"]], a["difference"])
        yield fates
        yield diff
        drops = CounterMetricFamily("vspan_drops", "dropped frames by port, reason and rule",
                                    labels=["port", "reason", "rule"])
        for d in counters["drops"]:
            drops.add_metric([d["port"], d["reason"], d["rule"]], d["frames"])
        yield drops
        mir = CounterMetricFamily("vspan_mirror", "mirror session counters",
                                  labels=["session", "counter"])
        for m in mirrors:
            for k, v in m["counters"].items():
                mir.add_metric([m["name"], k], v)
        yield mir
        fc = counters["flow_cache"]
        cache = GaugeMetricFamily("vspan_flow_cache_entries", "flows in the cache")
        cache.add_metric([], fc["entries"])
        for k, what in (("bytes", "estimated memory of the cached flows"),
                        ("bytes_per_entry", "estimated memory of one cached flow")):
            gauge = GaugeMetricFamily(f"vspan_flow_cache_{k}", f"flow cache: {what}")
            gauge.add_metric([], fc[k])
            yield gauge
        yield cache
        for k in ("hits", "misses", "invalidations", "invalidated", "evictions"):
            fam = CounterMetricFamily(f"vspan_flow_cache_{k}", f"flow cache {k}")
            fam.add_metric([], fc[k])
            yield fam
        yield from poll_metrics(counters["poll"])
        fdb = GaugeMetricFamily("vspan_fdb_entries", "learned MAC addresses")
        fdb.add_metric([], counters["fdb"]["entries"])
        yield fdb
        vtep = CounterMetricFamily("vspan_vtep", "overlay traffic per remote VTEP",
                                   labels=["port", "vtep", "counter"])
        for row in overlay["vteps"]:
            for k in ("tx_frames", "tx_bytes", "tx_errors", "rx_frames", "rx_bytes"):
                vtep.add_metric([row["port"], row["vtep"], k], row[k])
        yield vtep
        odrops = CounterMetricFamily("vspan_overlay_drops",
                                     "overlay packets dropped by direction and reason",
                                     labels=["port", "direction", "reason"])
        for p in overlay["ports"]:
            for direction, key in (("rx", "rx_drops"), ("tx", "tx_drops")):
                for reason, n in p[key].items():
                    odrops.add_metric([p["port"], direction, reason], n)
        yield odrops


def poll_metrics(poll: dict[str, Any]) -> Iterator[Metric]:
    """How the engine waits for frames (``switch.poll``) and what busy polling cost."""
    mode = GaugeMetricFamily("vspan_poll_mode", "1 for the engine's poll mode (switch.poll)",
                             labels=["mode"])
    for m in ("off", "adaptive", "always"):
        mode.add_metric([m], 1 if poll["mode"] == m else 0)
    yield mode
    for key, what in (("waits", "blocking waits for frames (each may sleep and be woken)"),
                      ("busy_polls", "non-blocking polls of the rings (busy polling)"),
                      ("busy_frames", "frames found by busy polling (each skipped a wake-up)"),
                      ("empty_polls", "busy polls that found no frames"),
                      ("empty_seconds", "seconds spent in busy polls that found no frames"),
                      ("predicted_windows", "predicted polling windows before a recurring "
                       "burst (switch.poll.predict)"),
                      ("predicted_frames", "frames found in a predicted window")):
        fam = CounterMetricFamily(f"vspan_poll_{key}", what)
        fam.add_metric([], poll[key])
        yield fam
    if "gil_waits" in poll:
        gil = CounterMetricFamily("vspan_poll_gil_waits",
                                  "wake-ups after which the engine waited over 20 µs for the GIL")
        gil.add_metric([], poll["gil_waits"])
        yield gil


def team_metrics(ports: list[dict[str, Any]]) -> Iterator[Metric]:
    """Per-member state and counters of team ports (``vspan_team_*``)."""
    labels = ["port", "member"]
    up = GaugeMetricFamily("vspan_team_member_up", "1 while the member has link (carrier)",
                           labels=labels)
    active = GaugeMetricFamily("vspan_team_member_active", "1 while the member carries traffic",
                               labels=labels)
    fails = CounterMetricFamily("vspan_team_member_failovers",
                                "times traffic left the member because it failed", labels=labels)
    inactive = CounterMetricFamily("vspan_team_member_rx_inactive",
                                   "frames dropped because they came in on a standby member",
                                   labels=labels)
    traffic = {k: CounterMetricFamily(f"vspan_team_member_{k}", f"{k} on the member's wire",
                                      labels=labels)
               for k in ("rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "tx_errors")}
    for row in ports:
        team = row.get("team")
        if not team:
            continue
        for m in team["members"]:
            key = [row["name"], m["name"]]
            up.add_metric(key, 1 if m["link"] == "up" else 0)
            active.add_metric(key, 1 if m["active"] else 0)
            fails.add_metric(key, m["failovers"])
            inactive.add_metric(key, m["rx_inactive"])
            for k, fam in traffic.items():
                fam.add_metric(key, m["counters"][k])
    yield from (up, active, fails, inactive, *traffic.values())
