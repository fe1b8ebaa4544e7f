"""README's metric table is what the agent serves: every name both ways, and every label set.

Names come from real agents' /metrics (one with packet paths on, exporting to a port nothing listens
on, and one with the default config).  Label names come from the samples; a family that has none here
(the verdict counters need function hooks, which a locked-down kernel refuses; evictions need a full
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
SPANS_ONLY = "Only with a traces endpoint"
WINDOWS_ONLY = "Only with sampling windows"
PATHS_ONLY = "Only while packet paths are on"


def readme_table() -> dict[str, frozenset[str]]:
    """{metric name or 'process_*': label names} from the first table under '## Metrics'."""
    text = README.read_text()
    section = text[text.index("\n## Metrics\n") :]
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


def only(sentence: str) -> set[str]:
    """The metric names of the README's list item that starts with `sentence`."""
    text = README.read_text()
    start = text.index(sentence)
    end = min(text.index("\n- ", start) if "\n- " in text[start:] else len(text), text.index("\n\n", start))
    return set(re.findall(r"`(pktpath_\w+)`", text[start:end]))


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
        lambda: KernelReadings([DropCount("eth0", 3, 2, 1, 0x0800, 17, 1, 60)], stats, 1, 1, verdicts),
        reasons,
        InterfaceResolver(lister=lambda _path: {}),
        list,
        BuildInfo("1", "6.18", "libbpf-core/v1"),
        sampling=lambda: SamplingWeights(1000, 1),
        spans=lambda: (1, {"queue_full": 1}),
    )
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


def followed_and_dropped(agent: AgentProcess) -> bool:
    """A datagram to a closed port on loopback: dropped (NO_SOCKET), and followed when a window is
    open; true once a path has finished, so the path metrics have samples, labels included."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"pktpath", ("127.0.0.1", free_port()))
    return bool(agent.scrape().get("pktpath_path_duration_seconds_count"))


def missing_from(served: dict[str, set[str]]) -> set[str]:
    documented = {n for n in readme_table() if n != "process_*"}
    return documented - {n for n in served if not n.startswith("process_")}


def served_by(tmp_path: Path, config: str = "") -> dict[str, set[str]]:
    agent = AgentProcess.start(tmp_path, config)
    try:
        return exposed(agent.scrape_text())
    finally:
        assert agent.stop() == 0, agent.log()


def test_readme_table_is_what_an_agent_with_paths_windows_and_spans_serves(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    agent = AgentProcess.start(
        tmp_path,
        f"traces:\n  endpoint: {dead}\n  export_timeout_ms: 200\n"
        "sampling:\n  window_period_seconds: 2\n  window_seconds: 1\n",
    )
    try:
        assert wait_until(lambda: followed_and_dropped(agent), 10), agent.log()
        served = exposed(agent.scrape_text())
    finally:
        assert agent.stop() == 0, agent.log()
    check(served, readme_table())


def test_a_default_agent_serves_everything_but_the_span_counters(tmp_path: Path) -> None:
    assert missing_from(served_by(tmp_path)) == only(SPANS_ONLY)


def test_continuous_sampling_has_no_window_metrics(tmp_path: Path) -> None:
    served = served_by(tmp_path, "sampling:\n  continuous: true\n")
    assert missing_from(served) == only(SPANS_ONLY) | only(WINDOWS_ONLY)


def test_paths_off_leave_out_every_path_metric(tmp_path: Path) -> None:
    served = served_by(tmp_path, "sampling:\n  one_in: 0\n  drop_one_in: 0\n")
    assert missing_from(served) == only(PATHS_ONLY) | only(SPANS_ONLY) | only(WINDOWS_ONLY)
