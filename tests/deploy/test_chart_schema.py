"""The chart's values.schema.json agrees with pktpath's config key table, checked with a real helm CLI.

The `config` part of the schema is generated from exporter/config/schema.py (scripts/gen-chart-schema);
a hand-kept copy had drifted and refused a documented key
(`helm template ... --set config.sampling.max_drop_paths_per_second=50`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import SECTIONS
from tests.agent_process import pktpath_bin
from tests.deploy.conftest import REPO
from tests.deploy.helm import CHART
from tests.deploy.helm_cli import helm

# A valid value, other than the default, for every documented key (docs/configuration.md).
EXAMPLES: dict[str, Any] = {
    "metrics.listen": "0.0.0.0:9100",
    "drops.enabled": False,
    "drops.max_series": 8192,
    "probes.mode": "tracepoint",
    "probes.exclude": ["consume_skb", "net_dev_xmit"],
    "probes.strict": True,
    "filter.src": ["10.0.0.0/8", "2001:db8::/32"],
    "filter.dst": ["192.0.2.10"],
    "filter.protocols": ["tcp", 132],
    "filter.ports": [53, "8000-8080"],
    "filter.interfaces": ["eth0", "bond0.100"],
    "sampling.continuous": True,
    "sampling.window_period_seconds": 30,
    "sampling.window_seconds": 2,
    "sampling.adaptive": False,
    "sampling.one_in": 500,
    "sampling.drop_one_in": 10,
    "sampling.max_paths_per_second": 2000,
    "sampling.max_drop_paths_per_second": 50,
    "sampling.max_tracked": 16384,
    "sampling.ring_buffer_kb": 4096,
    "kubernetes.pod_labels": True,
    "kubernetes.node_name": "node-a",
    "kubernetes.pods_file": "/etc/pktpath/pods.json",
    "kubernetes.refresh_seconds": 30,
    "kubernetes.max_pods": 500,
    "kubernetes.expire_seconds": 60,
    "logging.level": "debug",
    "logging.format": "text",
    "traces.exporter": "otlp",
    "traces.endpoint": "http://collector.observability:4318",
    "traces.protocol": "http/protobuf",
    "traces.service_name": "pktpath-edge",
    "traces.max_queue_size": 4096,
    "traces.max_export_batch_size": 1024,
    "traces.schedule_delay_ms": 500,
    "traces.export_timeout_ms": 5000,
}
DOCUMENTED = [f"{sec.name}.{key.name}" for sec in SECTIONS for key in sec.keys]


def rendered_config(stdout: str) -> dict[str, Any]:
    (cm,) = [d for d in yaml.safe_load_all(stdout) if d and d["kind"] == "ConfigMap" and "config.yaml" in d["data"]]
    return dict(yaml.safe_load(cm["data"]["config.yaml"]))


def test_committed_schema_is_the_generated_one() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen-chart-schema"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["config"]["properties"]
    assert {f"{sec}.{key}" for sec, s in schema.items() for key in s["properties"]} == set(DOCUMENTED)


def test_every_documented_key_has_an_example() -> None:
    assert sorted(EXAMPLES) == sorted(DOCUMENTED)


def test_the_issue_command_passes() -> None:
    proc = helm("template", "pktpath", str(CHART), "--set", "config.sampling.max_drop_paths_per_second=50")
    assert proc.returncode == 0, proc.stderr
    assert rendered_config(proc.stdout)["sampling"]["max_drop_paths_per_second"] == 50


@pytest.mark.parametrize("key", DOCUMENTED)
def test_helm_template_sets_each_key(key: str) -> None:
    value = EXAMPLES[key]
    # --set for a scalar, as a user types it; --set-json for a list (--set's {a,b} has no quoting).
    flag = (
        ["--set-json", f"config.{key}={json.dumps(value)}"]
        if isinstance(value, list)
        else ["--set", f"config.{key}={json.dumps(value) if isinstance(value, bool) else value}"]
    )
    proc = helm("template", "pktpath", str(CHART), *flag)
    assert proc.returncode == 0, proc.stderr
    section, name = key.split(".")
    assert rendered_config(proc.stdout)[section][name] == value


def test_every_key_at_once_renders_a_config_the_agent_accepts(tmp_path: Path) -> None:
    config: dict[str, Any] = {}
    for key, value in EXAMPLES.items():
        section, name = key.split(".")
        config.setdefault(section, {})[name] = value
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"config": config}))
    proc = helm("template", "pktpath", str(CHART), "-f", str(values))
    assert proc.returncode == 0, proc.stderr
    rendered = rendered_config(proc.stdout)
    assert rendered == config
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(rendered))
    agent = subprocess.run([pktpath_bin(), "validate", str(path)], capture_output=True, text=True, env=dict(os.environ))
    assert agent.returncode == 0, agent.stderr


@pytest.mark.parametrize(
    ("flag", "complaint"),
    [
        ("config.sampling.max_drop_paths_per_second=-1", "max_drop_paths_per_second"),
        ("config.sampling.max_drop_path_per_second=50", "max_drop_path_per_second"),
        ("config.sampling.ring_buffer_kb=1000", "ring_buffer_kb"),
        ("config.probes.mode=fastest", "mode"),
    ],
)
def test_helm_refuses_what_the_agent_refuses(flag: str, complaint: str) -> None:
    proc = helm("template", "pktpath", str(CHART), "--set", flag)
    assert proc.returncode != 0
    assert complaint in proc.stderr


def test_helm_is_v4() -> None:
    proc = helm("version", "--short")
    assert proc.returncode == 0 and proc.stdout.startswith("v4."), proc.stdout + proc.stderr
