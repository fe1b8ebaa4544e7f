"""deploy/prometheus/alerts.yaml: Prometheus' own checks, the rule unit tests, and the runbook
links. (tests/deploy/test_live_prometheus.py evaluates the same rules against a real agent.)"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import DEPLOY, REPO, require_tool

RULES = DEPLOY / "prometheus" / "alerts.yaml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts_test.yaml"
RUNBOOKS = REPO / "docs" / "runbooks.md"
# Metrics of a later release: no rule may depend on them yet.
LATER_METRICS = ("pktpath_netfilter_verdicts_total", "pktpath_rp_filter_checks_total", "pktpath_route_lookups_total")


def alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def promtool(*args: str) -> str:
    proc = subprocess.run(
        [require_tool("promtool", "prometheus"), *args], capture_output=True, text=True, cwd=RULES.parent
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


def test_promtool_check_rules() -> None:
    out = promtool("check", "rules", RULES.name)
    assert f"SUCCESS: {len(alerts())} rules found" in out


def test_promtool_rule_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", RULE_TESTS.name)


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for t in tests for case in t.get("alert_rule_test", [])]
    for rule in alerts():
        name = rule["alert"]
        assert any(c["alertname"] == name and c.get("exp_alerts") for c in cases), f"{name}: no firing case"
        assert any(c["alertname"] == name and not c.get("exp_alerts") for c in cases), f"{name}: no quiet case"


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    names = [r["alert"] for r in alerts()]
    assert len(names) == len(set(names))
    for rule in alerts():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        assert annotations["runbook_url"] == f"docs/runbooks.md#{rule['alert'].lower()}"
        assert not any(m in rule["expr"] for m in LATER_METRICS), rule["alert"]


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading (lowercase, punctuation dropped, spaces to dashes)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_runbook_anchors_match_the_alerts_both_ways() -> None:
    sections = {github_anchor(m) for m in re.findall(r"^## (.+)$", RUNBOOKS.read_text(), flags=re.M)}
    linked = {r["annotations"]["runbook_url"].split("#", 1)[1] for r in alerts()}
    assert linked <= sections, f"runbook sections missing: {linked - sections}"
    assert sections <= linked, f"runbook sections without an alert: {sections - linked}"


def test_the_required_alerts_exist() -> None:
    exprs = {r["alert"]: r["expr"] for r in alerts()}
    wanted = {
        "PktpathNetfilterDropsHigh": 'reason="NETFILTER_DROP"',
        "PktpathRPFilterDrops": 'reason="IP_RPFILTER"',
        "PktpathRouteMisses": "IP_INNOROUTES|IP_OUTNOROUTES",
        "PktpathAgentDown": 'up{job="pktpath"} == 0',
        "PktpathAgentsAbsent": 'absent(up{job="pktpath"})',
        "PktpathDropProbeNotAttached": 'pktpath_probe_attached{probe="kfree_skb"}',
        "PktpathEventsLost": "pktpath_events_lost_total",
        "PktpathMapFull": "pktpath_map_full_total",
        "PktpathSpansDropped": "pktpath_spans_dropped_total",
    }
    for name, fragment in wanted.items():
        assert fragment in exprs[name], name


def test_rules_file_is_the_chart_file() -> None:
    assert (DEPLOY / "helm" / "pktpath" / "files" / "alerts.yaml").resolve() == Path(RULES).resolve()
