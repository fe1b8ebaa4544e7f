"""README's metric table is what the agent serves: every name both ways, and every label set.

Names come from real agents' /metrics (one with packet paths on, exporting to a port nothing listens
on, and one with the default config).  Label names come from the samples; a family that has none here
(the verdict counters need function hooks, which this kernel refuses; evictions need a full
assembler) gets its label names from the same collectors fed synthetic kernel readings.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporter.decoders.counters import DropCount, VerdictCounts
from exporter.decoders.drop_reasons import DropReasons
from exporter.decoders.interfaces import InterfaceResolver
from exporter.metrics.collector import BuildInfo, KernelReadings, PktpathCollector, SamplingWeights
from exporter.metrics.paths import PathMetrics
from exporter.model import abi
from tests.agent_process import AgentProcess, free_port, wait_until

README = Path(__file__).resolve().parents[2] / "README.md"
PATHS_ONLY_SENTENCE = "Only while packet paths are on"


def readme_table() -> dict[str, frozenset[str]]:
    """{metric name or 'process_*': label names} from the first table under '## Metrics'."""
    text = README.read_text()
    section = text[text.index("\n## Metrics\n"):]
    rows = [ln for ln in section.splitlines()[2:] if ln.startswith("|")]
    table: dict[str, frozenset[str]] = {}
    previous: frozenset[str] = frozenset()
    for row in rows:
        if not row.startswith("| `"):
            if table:
                break  # the header and separator come first; anything after the rows ends the table
            continue
        cells = [c.strip() for c in row.strip("|").split("|")]
        names = re.findall(r"`([^`]+)`", cells[0])
        labels = previous if cells[1] == "same" else frozenset(re.findall(r"`([^`]+)`", cells[1]))
        for name in names:
            table[name] = labels
        previous = labels
    return table


def paths_only() -> set[str]:
    text = README.read_text()
    start = text.index(PATHS_ONLY_SENTENCE)
    return set(re.findall(r"`(pktpath_\w+)`", text[start : text.index("\n\n", start)]))


def exposed(families_text: str, sampled_only: bool = False) -> dict[str, set[str]]:
    """{exposed name: label names of its samples}; counters by their _total name, histograms without le.
    Families served without samples are included unless `sampled_only`."""
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(families_text):
        if sampled_only and not family.samples:
            continue
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = out.setdefault(name, set())
        for sample in family.samples:
            labels |= set(sample.labels) - {"le"}
    return out


def synthetic() -> dict[str, set[str]]:
    """The same collectors with every kind of series present: verdicts, evictions, spans, sampling."""
    stats = [1] * abi.STAT_SLOTS
    verdicts = VerdictCounts(netfilter=[(2, 1, "filter", 0, 3)], rp_filter=[(True, "eth0", 2)], route=[(0, 0, 5)])
    reasons = DropReasons([("SKB_DROP_REASON_NO_SOCKET", 3)])
    collector = PktpathCollector(
        lambda: KernelReadings([DropCount("eth0", 3, 2, 1, 0x0800, 17, 1, 60)], stats, 1, 1, verdicts), reasons,
        InterfaceResolver(lister=lambda _path: {}), list, BuildInfo("1", "6.18", "libbpf-core/v1"),
        sampling=lambda: SamplingWeights(1000, 1), spans=lambda: (1, {"queue_full": 1}))
    registry = CollectorRegistry()
    registry.register(collector)
    registry.register(PathMetrics(evicted=lambda: {"capacity": 1}))
    from prometheus_client import generate_latest

    return exposed(generate_latest(registry).decode(), sampled_only=True)


def check(served: dict[str, set[str]], table: dict[str, frozenset[str]]) -> None:
    extra = synthetic()
    names = {n for n in served if not n.startswith("process_")}
    documented = {n for n in table if n != "process_*"}
    assert names - documented == set(), f"served but not in README: {sorted(names - documented)}"
    assert documented - names == set(), f"in README but not served: {sorted(documented - names)}"
    assert any(n.startswith("process_") for n in served) and "process_*" in table
    for name in sorted(names):
        labels = served[name] or extra.get(name, set())
        assert labels == table[name], f"{name}: served with labels {sorted(labels)}, README {sorted(table[name])}"
        if name in extra:
            assert extra[name] == table[name], f"{name}: collector labels {sorted(extra[name])}"
    assert table["process_*"] == frozenset()
    assert all(not served[n] for n in served if n.startswith("process_"))


def test_readme_table_is_what_an_agent_with_paths_serves(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    agent = AgentProcess.start(tmp_path, f"traces:\n  exporter: otlp\n  endpoint: {dead}\n  export_timeout_ms: 200\n"
                                         "sampling:\n  one_in: 1\n")
    try:
        # A datagram to a closed port on loopback: dropped (NO_SOCKET) and followed, so the path
        # metrics have samples, labels included.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"pktpath", ("127.0.0.1", free_port()))
        assert wait_until(lambda: bool(agent.scrape().get("pktpath_path_duration_seconds_count")), 10), agent.log()
        served = exposed(agent.scrape_text())
    finally:
        assert agent.stop() == 0, agent.log()
    check(served, readme_table())


def test_paths_only_metrics_are_the_ones_missing_without_paths(tmp_path: Path) -> None:
    agent = AgentProcess.start(tmp_path)
    try:
        served = exposed(agent.scrape_text())
    finally:
        assert agent.stop() == 0, agent.log()
    documented = {n for n in readme_table() if n != "process_*"}
    missing = documented - {n for n in served if not n.startswith("process_")}
    assert missing == paths_only(), f"missing without paths: {sorted(missing)}; README says {sorted(paths_only())}"
