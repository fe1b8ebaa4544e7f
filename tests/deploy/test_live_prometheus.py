"""The dashboard's queries and the alert rules, evaluated by a real Prometheus scraping a real
agent that runs as the Helm chart runs it, while a kernel lab drops known packets.

The lab (tests/kernel/lab.py) produces three drop reasons, in two rounds so that Prometheus sees
every counter series before it grows (a series first scraped at its final value has a rate of
zero):

    NETFILTER_DROP  an iptables DROP rule on the server          (interface sv<id>)
    IP_RPFILTER     spoofed sources at the router, rp_filter=1     (interface ra<id>)
    IP_INNOROUTES   a destination the router has no route to     (interface ra<id>)

The NETFILTER round is large enough for the 5/s threshold of PktpathNetfilterDropsHigh: with
only seconds of data in its 5m window, rate() is about increase/300s. Traces are on, exported
to a closed loopback port: paths (latency histogram, exemplars) exist and export fails, which
is what PktpathSpansDropped must see.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.agent_process import free_port
from tests.deploy.conftest import DEPLOY
from tests.deploy.dashboard import load, panels, queries, substitute, variable_queries
from tests.deploy.helm import template
from tests.deploy.live import FakePod, LiveAgent, Prometheus, PrometheusError, container_launch, kubelet_pod
from tests.kernel.lab import Lab

pytestmark = pytest.mark.kernel

NODE = "lab-node"
# The downward-API fields of the DaemonSet's environment, as this "node" would fill them.
FIELDS = {
    "spec.nodeName": NODE,
    "status.hostIP": "127.0.0.1",
    "metadata.name": "pktpath-lab",
    "metadata.namespace": "monitoring",
    "status.podIP": "127.0.0.1",
}
WARMUP = {"NETFILTER_DROP": 20, "IP_RPFILTER": 10, "IP_INNOROUTES": 10}
TOTAL = {"NETFILTER_DROP": 2500, "IP_RPFILTER": 100, "IP_INNOROUTES": 100}
NETFILTER_PORT, RPF_PORT, NOROUTE_PORT = 7101, 7102, 7103
UNROUTED = "198.19.255.1"  # inside the lab's benchmark range, routed nowhere

# Dashboard panels whose data comes from metrics of a later release.
LATER = {"Netfilter verdicts", "rp_filter checks", "Route lookups"}


@dataclass
class Live:
    prom: Prometheus
    agent: LiveAgent
    lab: Lab
    instance: str
    pod: FakePod

    @property
    def interfaces(self) -> dict[str, str]:
        """Drop reason -> the lab interface it is counted on."""
        return {
            "NETFILTER_DROP": self.lab.if_server,
            "IP_RPFILTER": self.lab.if_router_client,
            "IP_INNOROUTES": self.lab.if_router_client,
        }

    def lab_selector(self) -> str:
        return f'interface=~"{self.lab.if_server}|{self.lab.if_router_client}"'


def send_round(lab: Lab, counts: dict[str, int], spoofed: str) -> None:
    lab.send_udp(lab.client, lab.server_ip, NETFILTER_PORT, counts["NETFILTER_DROP"])
    lab.send_udp(lab.client, lab.server_ip, RPF_PORT, counts["IP_RPFILTER"], src=spoofed)
    lab.send_udp(lab.client, UNROUTED, NOROUTE_PORT, counts["IP_INNOROUTES"])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("live")
    with contextlib.ExitStack() as stack:
        lab = stack.enter_context(Lab.create())
        # A pod in the server's namespace: NETFILTER drops there belong to it.
        pod = stack.enter_context(kubelet_pod(lab, lab.server, tmp))
        port, closed_port = free_port(), free_port()  # nothing listens on closed_port: exports fail
        rendered = template(
            {
                "config": {
                    "metrics": {"listen": f"127.0.0.1:{port}"},
                    # Fewer, quicker paths than the defaults: enough for exemplars and the latency
                    # histogram without filling the ring buffer in a 2500-packet burst.
                    "sampling": {"drop_one_in": 10, "max_paths_per_second": 200},
                    "traces": {"schedule_delay_ms": 200, "export_timeout_ms": 500},
                    # The pods file stands in for the API server.
                    "kubernetes": {"pod_labels": True, "pods_file": str(pod.pods_file), "refresh_seconds": 1},
                },
                "otel": {
                    "tracesExporter": "otlp",
                    "endpoint": f"http://127.0.0.1:{closed_port}",
                    "protocol": "http/protobuf",
                },
            }
        )
        config = tmp / "config.yaml"
        config.write_text(next(c for c in rendered.of_kind("ConfigMap"))["data"]["config.yaml"])
        container = rendered.one("DaemonSet")["spec"]["template"]["spec"]["containers"][0]
        launch = container_launch(container, config, FIELDS)
        instance = f"127.0.0.1:{port}"
        # Prometheus first: its first scrapes see every counter at its start value.
        prom = Prometheus(
            tmp / "prometheus",
            {
                "job_name": "pktpath",
                # The label the chart's ServiceMonitor adds from the pod's node.
                "static_configs": [{"targets": [instance], "labels": {"node": NODE}}],
            },
            [DEPLOY / "prometheus" / "alerts.yaml"],
        )
        stack.callback(prom.stop)
        agent = LiveAgent(launch, port, tmp / "agent.log")

        def stop_agent() -> None:
            assert agent.stop() == 0, agent.log()

        stack.callback(stop_agent)
        lab.exec(lab.server, "iptables", "-A", "INPUT", "-p", "udp", "--dport", str(NETFILTER_PORT), "-j", "DROP")
        spoofed = lab.spoof_for_rp_filter()
        live = Live(prom, agent, lab, instance, pod)

        def lab_counts() -> dict[str, float]:
            got = prom.values(f'sum by (reason) (pktpath_drops_total{{{live.lab_selector()}, protocol="udp"}})')
            return {dict(k)["reason"]: v for k, v in got.items()}

        send_round(lab, WARMUP, spoofed)
        prom.wait_for("the first round's series", lambda: set(lab_counts()) >= set(WARMUP))
        send_round(lab, {k: TOTAL[k] - WARMUP[k] for k in TOTAL}, spoofed)
        prom.wait_for(f"totals {TOTAL} in Prometheus", lambda: lab_counts() == TOTAL)
        prom.wait_for(
            "a failed span export", lambda: bool(prom.query('pktpath_spans_dropped_total{reason="export_failed"} > 0'))
        )
        yield live


def labels_of(result: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [r["metric"] for r in result]


# --- the exact counts -------------------------------------------------------------------------------


def test_prometheus_has_the_exact_drop_counts(live: Live) -> None:
    for reason, total in TOTAL.items():
        got = live.prom.values(
            f'pktpath_drops_total{{interface="{live.interfaces[reason]}", reason="{reason}", protocol="udp"}}'
        )
        assert list(got.values()) == [total], (reason, got)
        (labels,) = got
        assert dict(labels)["job"] == "pktpath" and dict(labels)["node"] == NODE
    # Pod labels: the server namespace's drops are the pod's, the router's belong to no pod.
    netfilter = live.prom.query(f'pktpath_drops_total{{interface="{live.lab.if_server}", reason="NETFILTER_DROP"}}')
    assert [(r["metric"].get("namespace"), r["metric"].get("pod")) for r in netfilter] == [
        (live.pod.namespace, live.pod.name)
    ]
    rpf = live.prom.query(f'pktpath_drops_total{{interface="{live.lab.if_router_client}", reason="IP_RPFILTER"}}')
    assert [("namespace" in r["metric"], "pod" in r["metric"]) for r in rpf] == [(False, False)]
    assert live.prom.values('sum by (job, instance, node) (up{job="pktpath"})') == {
        frozenset({"job": "pktpath", "instance": live.instance, "node": NODE}.items()): 1.0
    }


def test_drop_counters_carry_trace_exemplars(live: Live) -> None:
    now = time.time()
    data = live.prom.api(
        "query_exemplars",
        query=f'pktpath_drops_total{{interface="{live.lab.if_server}"}}',
        start=str(now - 300),
        end=str(now),
    )
    exemplars = [
        e for series in data if series["seriesLabels"]["reason"] == "NETFILTER_DROP" for e in series["exemplars"]
    ]
    assert exemplars, data
    assert all(re.fullmatch(r"[0-9a-f]{32}", e["labels"]["trace_id"]) for e in exemplars)


# --- the dashboard ----------------------------------------------------------------------------------


def test_every_dashboard_query_is_valid(live: Live) -> None:
    errors = {}
    for q in queries(load()):
        try:
            live.prom.query(substitute(q.expr))
        except PrometheusError as exc:
            errors[f"{q.panel}/{q.ref}"] = str(exc)
    assert not errors


def test_dashboard_panels_show_data(live: Live) -> None:
    empty = []
    for p in panels(load()):
        if p["type"] == "row" or p["title"] in LATER:
            continue
        if not any(live.prom.query(substitute(t["expr"])) for t in p["targets"]):
            empty.append(p["title"])
    assert not empty, f"panels without data: {empty}"


def panel_result(live: Live, title: str, ref: str = "A", **values: str) -> list[dict[str, Any]]:
    (q,) = [q for q in queries(load()) if q.panel == title and q.ref == ref]
    return live.prom.query(substitute(q.expr, values))


def test_drop_panels_show_the_lab_drops(live: Live) -> None:
    by_reason = {r["metric"]["reason"]: float(r["value"][1]) for r in panel_result(live, "Drops by reason")}
    for reason in TOTAL:
        assert by_reason.get(reason, 0) > 0, (reason, by_reason)
    # The interface variable set to the lab's two interfaces: exactly those two, both dropping.
    lab_ifs = f"{live.lab.if_server}|{live.lab.if_router_client}"
    by_if = {
        r["metric"]["interface"]: float(r["value"][1])
        for r in panel_result(live, "Drops by interface", interface=lab_ifs)
    }
    assert set(by_if) == {live.lab.if_server, live.lab.if_router_client} and min(by_if.values()) > 0
    # The reason variable narrows too.
    only_rpf = panel_result(live, "Drops by reason", reason="IP_RPFILTER")
    assert [r["metric"]["reason"] for r in only_rpf] == ["IP_RPFILTER"]
    top = panel_result(live, "Top drop series in the time range", interface=lab_ifs)
    assert {(r["metric"]["interface"], r["metric"]["reason"]) for r in top} >= {
        (live.interfaces[reason], reason) for reason in TOTAL
    }


def test_pod_panel_shows_the_pod(live: Live) -> None:
    rows = panel_result(live, "Drops by pod")
    assert {(r["metric"]["namespace"], r["metric"]["pod"], r["metric"]["reason"]) for r in rows} >= {
        (live.pod.namespace, live.pod.name, "NETFILTER_DROP")
    }
    assert all(r["metric"]["pod"] for r in rows)  # host drops (no pod) are not a pod


def test_latency_panel_quantiles(live: Live) -> None:
    for ref in ("A", "B", "C"):  # p50, p90, p99
        dropped = [r for r in panel_result(live, "Path latency by outcome", ref) if r["metric"]["outcome"] == "dropped"]
        assert dropped, ref
        value = float(dropped[0]["value"][1])
        assert math.isfinite(value) and 0 <= value <= 1.0, (ref, value)


def test_health_panels(live: Live) -> None:
    assert [float(r["value"][1]) for r in panel_result(live, "Agents up")] == [1.0]
    assert [float(r["value"][1]) for r in panel_result(live, "Agents without drop probe")] == [0.0]
    probes = {r["metric"]["probe"] for r in panel_result(live, "Probes attached")}
    assert "kfree_skb" in probes
    memory = panel_result(live, "Memory (RSS)")
    assert len(memory) == 1 and float(memory[0]["value"][1]) > 10e6


def test_dashboard_variables_find_values(live: Live) -> None:
    found = {}
    for name, query in variable_queries(load()).items():
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
        assert m, query
        found[name] = live.prom.api(f"label/{m.group(2)}/values", **{"match[]": substitute(m.group(1))})
    assert found["job"] == ["pktpath"]
    assert found["instance"] == [live.instance]
    assert set(found["reason"]) >= set(TOTAL)
    assert {live.lab.if_server, live.lab.if_router_client} <= set(found["interface"])


# --- the alert rules --------------------------------------------------------------------------------


def alert_exprs() -> dict[str, str]:
    import yaml

    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def test_every_alert_expression_gives_the_expected_result(live: Live) -> None:
    results = {name: labels_of(live.prom.query(expr)) for name, expr in alert_exprs().items()}
    ours = {"job": "pktpath", "instance": live.instance, "node": NODE}
    assert {**ours, "interface": live.lab.if_server} in results.pop("PktpathNetfilterDropsHigh")
    assert {**ours, "interface": live.lab.if_router_client} in results.pop("PktpathRPFilterDrops")
    assert {**ours, "interface": live.lab.if_router_client, "reason": "IP_INNOROUTES"} in results.pop(
        "PktpathRouteMisses"
    )
    assert {**ours, "reason": "export_failed"} in results.pop("PktpathSpansDropped")
    # Ring-buffer losses are not what this test provokes, but the rule must agree with the agent.
    lost = live.agent.sample("pktpath_events_lost_total", ring="events")
    assert bool(results.pop("PktpathEventsLost")) == (lost > 0)
    # A healthy agent: the rest are quiet.
    for name in (
        "PktpathAgentDown",
        "PktpathAgentsAbsent",
        "PktpathDropProbeNotAttached",
        "PktpathMapFull",
        "PktpathScrapeErrors",
    ):
        assert results.pop(name) == [], name
    assert not results, f"alerts this test does not check: {sorted(results)}"


def test_prometheus_evaluates_the_rules_and_the_drop_alerts_are_pending(live: Live) -> None:
    """The same file loaded as rule_files: every rule evaluates without error, and the drop
    alerts are pending (their `for:` of 10-15 minutes has not passed)."""

    def rules() -> list[dict[str, Any]]:
        return [r for g in live.prom.api("rules")["groups"] for r in g["rules"]]

    live.prom.wait_for("every rule evaluated", lambda: all(r["health"] != "unknown" for r in rules()))
    assert {r["name"]: (r["health"], r.get("lastError", "")) for r in rules() if r["health"] != "ok"} == {}
    wanted = {
        ("PktpathNetfilterDropsHigh", live.lab.if_server),
        ("PktpathRPFilterDrops", live.lab.if_router_client),
        ("PktpathRouteMisses", live.lab.if_router_client),
    }

    def pending() -> set[tuple[str, str]]:
        return {
            (a["labels"]["alertname"], a["labels"].get("interface", ""))
            for a in live.prom.api("alerts")["alerts"]
            if a["state"] == "pending"
        }

    live.prom.wait_for(f"pending alerts {wanted}", lambda: wanted <= pending())
    assert not [a for a in live.prom.api("alerts")["alerts"] if a["state"] == "firing"]
