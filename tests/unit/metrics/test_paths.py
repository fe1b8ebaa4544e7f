"""Path metrics: outcomes, time in the stack, evictions, and the exemplar each drop series carries."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from exporter.metrics.paths import PathMetrics, drop_labels
from exporter.model.path import Hop, HopEvent, Outcome, PacketHeader, Path

UDP = PacketHeader(4, "10.0.0.1", "10.0.0.2", 17, 1, 53)


def dropped(ifname: str, reason: str, header: PacketHeader = UDP) -> Path:
    hops = [HopEvent(1, Hop.NETIF_RECEIVE, 1000), HopEvent(1, Hop.DROP, 8000, ifname=ifname, reason=reason)]
    return Path(1, header, hops, Outcome.DROPPED, reason)


def test_the_exemplar_is_the_last_trace_of_its_drop_series() -> None:
    metrics = PathMetrics(evicted=dict, clock=lambda: 1234.5)
    metrics.observe(dropped("eth0", "NETFILTER_DROP"), "aa" * 16)
    metrics.observe(dropped("eth0", "NETFILTER_DROP"), "bb" * 16)
    metrics.observe(dropped("eth1", "NO_SOCKET"), "")  # no trace: no exemplar
    ex = metrics.exemplar(("NETFILTER_DROP", "eth0", "udp"))
    assert ex is not None and ex.labels == {"trace_id": "bb" * 16} and ex.timestamp == 1234.5
    assert metrics.exemplar(("NO_SOCKET", "eth1", "udp")) is None


def test_a_truncated_packets_exemplar_is_under_the_truncated_label() -> None:
    cut = PacketHeader(4, "", "", 0, length=10, truncated=True, no_transport=True)
    assert drop_labels(dropped("eth0", "IP_INHDR", cut)) == ("IP_INHDR", "eth0", "truncated")


def test_outcomes_durations_and_evictions_are_served() -> None:
    metrics = PathMetrics(evicted=lambda: {"idle_timeout": 2})
    metrics.observe(dropped("eth0", "NETFILTER_DROP"))
    reg = CollectorRegistry()
    reg.register(metrics)
    assert reg.get_sample_value("pktpath_sampled_paths_total", {"outcome": "dropped"}) == 1
    assert reg.get_sample_value("pktpath_sampled_paths_total", {"outcome": "delivered"}) == 0
    assert reg.get_sample_value("pktpath_path_duration_seconds_count", {"outcome": "dropped"}) == 1
    assert reg.get_sample_value("pktpath_path_duration_seconds_bucket", {"outcome": "dropped", "le": "5e-06"}) == 0
    assert reg.get_sample_value("pktpath_path_duration_seconds_bucket", {"outcome": "dropped", "le": "1e-05"}) == 1
    assert reg.get_sample_value("pktpath_paths_evicted_total", {"reason": "idle_timeout"}) == 2
