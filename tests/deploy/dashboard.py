"""Reading deploy/grafana/pktpath.json: its panels, queries and template variables, and the
queries with the variables replaced the way Grafana would, so Prometheus can run them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.deploy.conftest import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "pktpath.json"


def load() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included."""
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


@dataclass(frozen=True)
class Query:
    panel: str
    ref: str
    expr: str
    exemplar: bool
    instant: bool


def queries(dash: dict[str, Any]) -> list[Query]:
    return [
        Query(p["title"], t["refId"], t["expr"], bool(t.get("exemplar")), bool(t.get("instant")))
        for p in panels(dash)
        for t in p.get("targets", [])
    ]


# What Grafana substitutes. Multi-value variables set to "All" become their allValue (".*").
DEFAULTS = {
    "job": "pktpath",
    "instance": ".*",
    "reason": ".*",
    "interface": ".*",
    "__rate_interval": "1m",
    "__interval": "1s",
    "__range": "5m",
}


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    chosen = {**DEFAULTS, **(values or {})}

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in chosen:
            raise KeyError(f"no value for dashboard variable ${name} in {expr!r}")
        return chosen[name]

    # $name and ${name}; longest names first is implicit in \w+.
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


def variable_queries(dash: dict[str, Any]) -> dict[str, str]:
    """{variable: Grafana's label_values(...) query} of the query variables."""
    return {
        v["name"]: v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        for v in dash["templating"]["list"]
        if v["type"] == "query"
    }
