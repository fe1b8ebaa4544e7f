"""The JSON Schema of a pktpath config file, generated from the key table (schema.SECTIONS).

The Helm chart's values.schema.json holds it as the schema of `config:` (scripts/gen-chart-schema
writes it there; tests/deploy/test_chart_schema.py checks the committed file is what this module
gives).  It is a first check, for `helm install` to refuse a misspelled key or an out-of-range
number before anything reaches a node; the agent validates the file again with every rule.  So it
never refuses what the agent accepts: checks that are code (CIDRs, interface names, URLs) appear
only as the value's type.
"""

from __future__ import annotations

from typing import Any

from exporter.config.schema import SECTIONS, Key, Kind
from exporter.config.values import IntRange, OneOf, PowerOfTwo

# A string key may hold ${VAR} references, expanded by the agent on the node (config/parse.py):
# a choice key such as probes.mode must accept "${MODE}" too.
VAR_REFERENCE = r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"
_TYPES = {Kind.STRING: "string", Kind.INTEGER: "integer", Kind.BOOLEAN: "boolean"}


def _value_schema(key: Key) -> dict[str, Any]:
    """The schema of one value (one item, for a list key)."""
    alternatives: list[dict[str, Any]] = []
    for kind in key.kinds:
        check = key.check
        if kind is Kind.STRING and isinstance(check, OneOf):
            alternatives += [{"enum": list(check.choices)}, {"type": "string", "pattern": VAR_REFERENCE}]
            continue
        one: dict[str, Any] = {"type": _TYPES[kind]}
        if kind is Kind.INTEGER and isinstance(check, IntRange):
            one |= {"minimum": check.low, "maximum": check.high}
        elif kind is Kind.INTEGER and isinstance(check, PowerOfTwo):
            one["enum"] = check.values()
        alternatives.append(one)
    return alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}


def key_schema(key: Key) -> dict[str, Any]:
    schema = _value_schema(key)
    if key.many:
        schema = {"type": "array", "items": schema}
        if key.max_items is not None:
            schema["maxItems"] = key.max_items
    if key.default is None:
        # null: "decided at start-up" (the environment, the in-cluster API).
        schema = {"anyOf": [schema, {"type": "null"}]}
    return {"description": key.doc, **schema}


def config_schema() -> dict[str, Any]:
    """The schema of a whole config file: every section a mapping of its keys, nothing else allowed."""
    return {
        "type": "object",
        "description": "The agent's config file (docs/configuration.md), generated from exporter/config/schema.py "
        "by scripts/gen-chart-schema. pktpath validates it again at start-up, with every rule.",
        "additionalProperties": False,
        "properties": {
            section.name: {
                "type": "object",
                "description": section.doc,
                "additionalProperties": False,
                "properties": {key.name: key_schema(key) for key in section.keys},
            }
            for section in SECTIONS
        },
    }


# What the Helm chart adds: it reads the container port from metrics.listen (templates/_helpers.tpl),
# so the key must be there, as host:port with a literal port (a ${VAR} host is fine).
CHART_LISTEN_PATTERN = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+|" + VAR_REFERENCE + r"):[0-9]{1,5}$"


def chart_config_schema() -> dict[str, Any]:
    """config_schema() as the chart's values.schema.json holds it under properties.config."""
    schema = config_schema()
    schema["required"] = ["metrics"]
    metrics = schema["properties"]["metrics"]
    metrics["required"] = ["listen"]
    metrics["properties"]["listen"]["pattern"] = CHART_LISTEN_PATTERN
    metrics["properties"]["listen"]["description"] += " In the chart, also the container port: a fixed port."
    return schema
