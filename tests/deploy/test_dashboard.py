"""deploy/grafana/pktpath.json, statically: structure, data sources, exemplars, coverage, and
every query's PromQL syntax (promtool). tests/deploy/test_live_prometheus.py runs the queries
against a real agent."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import require_tool
from tests.deploy.dashboard import load, panels, queries, substitute, variable_queries


@pytest.fixture(scope="module")
def dash() -> dict[str, Any]:
    return load()


def test_identity_and_layout(dash: dict[str, Any]) -> None:
    assert dash["uid"] == "pktpath-drops" and dash["title"]
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids))
    for p in panels(dash):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]


def test_data_sources_are_variables(dash: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["trace_ds"]["type"] == "datasource"
    for p in panels(dash):
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        for t in p["targets"]:
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
    for name in ("job", "instance", "reason", "interface"):
        assert variables[name]["datasource"]["uid"] == "${datasource}"


def test_drop_panels_show_exemplars_linked_to_the_trace_source(dash: dict[str, Any]) -> None:
    drop_panels = [
        p
        for p in panels(dash)
        if p["type"] == "timeseries" and any("pktpath_drops_total" in t["expr"] for t in p["targets"])
    ]
    assert len(drop_panels) >= 3
    for p in drop_panels:
        assert all(t.get("exemplar") for t in p["targets"]), p["title"]
        links = [
            link
            for o in p["fieldConfig"]["overrides"]
            if o["matcher"]["options"] == "trace_id"
            for prop in o["properties"]
            if prop["id"] == "links"
            for link in prop["value"]
        ]
        assert links and all("${trace_ds}" in link["url"] and "${__value.raw}" in link["url"] for link in links)


def test_required_views(dash: dict[str, Any]) -> None:
    exprs = [q.expr for q in queries(dash)]

    def has(pattern: str) -> bool:
        return any(re.search(pattern, e) for e in exprs)

    assert has(r"sum by \(reason\) \(rate\(pktpath_drops_total")
    assert has(r"sum by \(interface\) \(rate\(pktpath_drops_total")
    assert has(r"sum by \(namespace, pod, reason\) \(rate\(pktpath_drops_total")  # pod labels: a later release
    assert has(r"histogram_quantile\(0\.99, sum by \(le, outcome\) \(rate\(pktpath_path_duration_seconds_bucket")
    for metric in (
        "pktpath_netfilter_verdicts_total",
        "pktpath_rp_filter_checks_total",
        "pktpath_route_lookups_total",
        "pktpath_probe_attached",
        "pktpath_events_lost_total",
        "pktpath_map_full_total",
        "pktpath_spans_dropped_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert has(re.escape(metric)), metric


def test_every_query_is_valid_promql(tmp_path: Path, dash: dict[str, Any]) -> None:
    """promtool parses each query (variables substituted) as a recording rule's expression."""
    exprs = [substitute(q.expr) for q in queries(dash)]
    # label_values(metric{...}, label): Grafana's function; its selector must parse too.
    exprs += [
        substitute(re.fullmatch(r"label_values\((.+), \w+\)", q).group(1))  # type: ignore[union-attr]
        for q in variable_queries(dash).values()
    ]
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    proc = subprocess.run(
        [require_tool("promtool", "prometheus"), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_substitution_knows_every_variable(dash: dict[str, Any]) -> None:
    for q in queries(dash):
        assert "$" not in substitute(q.expr)
    with pytest.raises(KeyError):
        substitute('rate(x{a=~"$unknown"}[1m])')
