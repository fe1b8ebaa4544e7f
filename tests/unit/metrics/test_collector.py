"""Metric rendering, asserted on prometheus_client's real registry and expositions."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.decoders.counters import DropCount
from exporter.decoders.drop_reasons import DropReasons
from exporter.decoders.interfaces import InterfaceResolver
from exporter.kernel.api import ProbeState
from exporter.metrics.collector import BuildInfo, KernelReadings, PktpathCollector, SamplingWeights
from exporter.model import abi

REASONS = DropReasons(
    [("SKB_DROP_REASON_NOT_SPECIFIED", 2), ("SKB_DROP_REASON_NO_SOCKET", 3), ("SKB_DROP_REASON_NETFILTER_DROP", 12)]
)
IPV4, IPV6, ARP = 0x0800, 0x86DD, 0x0806


def make(
    readings: KernelReadings | Exception, links: dict[int, str] | None = None
) -> tuple[CollectorRegistry, PktpathCollector]:
    def read() -> KernelReadings:
        if isinstance(readings, Exception):
            raise readings
        return readings

    resolver = InterfaceResolver(lister=lambda _path: dict(links or {}))
    probes = [
        ProbeState("kfree_skb", "tracepoint", True),
        ProbeState("ip_rcv", "fentry", False),
        ProbeState("ip_rcv", "kprobe", False),
    ]
    collector = PktpathCollector(
        read,
        REASONS,
        resolver,
        lambda: probes,
        BuildInfo("9.9.9", "6.18.0", "libbpf-core/v1.1"),
        sampling=lambda: SamplingWeights(rate=1000, drop=1),
        spans=lambda: (40, {"queue_full": 2}),
    )
    registry = CollectorRegistry()
    registry.register(collector)
    return registry, collector


def stats(**values: int) -> list[int]:
    out = [0] * abi.STAT_SLOTS
    for name, v in values.items():
        out[abi.STATS.index(f"STAT_{name.upper()}")] = v
    return out


def drop(
    ifname: str, reason: int, packets: int, nbytes: int, l3: int = IPV4, l4: int = 17, netns: int = 1, ifindex: int = 2
) -> DropCount:
    return DropCount(ifname, reason, ifindex, netns, l3, l4, packets, nbytes)


def test_drops_by_reason_interface_protocol() -> None:
    reg, _ = make(
        KernelReadings(
            [drop("eth0", 12, 5, 640), drop("eth0", 3, 2, 200, l4=6), drop("eth1", 2, 1, 60, l3=ARP, l4=0)],
            stats(drop_map_full=4, ring_full=7),
        )
    )
    v = reg.get_sample_value
    assert v("pktpath_drops_total", {"reason": "NETFILTER_DROP", "interface": "eth0", "protocol": "udp"}) == 5
    assert v("pktpath_drop_bytes_total", {"reason": "NETFILTER_DROP", "interface": "eth0", "protocol": "udp"}) == 640
    assert v("pktpath_drops_total", {"reason": "NO_SOCKET", "interface": "eth0", "protocol": "tcp"}) == 2
    assert v("pktpath_drops_total", {"reason": "NOT_SPECIFIED", "interface": "eth1", "protocol": "arp"}) == 1
    assert v("pktpath_map_full_total", {"map": "drop_counts"}) == 4
    assert v("pktpath_events_lost_total", {"ring": "events"}) == 7


def test_path_and_span_accounting() -> None:
    reg, _ = make(
        KernelReadings(
            [],
            stats(
                track_insert=100,
                track_delete=60,
                track_full=1,
                track_stale=3,
                sampled_rate=90,
                sampled_drop=12,
                path_budget=5,
            ),
            tracked_live=30,
            tracked_reaped=10,
        )
    )
    v = reg.get_sample_value
    assert v("pktpath_tracking_lost_total", {"reason": "expired"}) == 10
    assert v("pktpath_tracking_lost_total", {"reason": "insert_failed"}) == 1
    assert v("pktpath_tracking_lost_total", {"reason": "stale_pointer"}) == 3
    assert v("pktpath_tracked_packets") == 30
    assert v("pktpath_paths_started_total", {"sampled_by": "rate"}) == 90
    assert v("pktpath_paths_started_total", {"sampled_by": "drop"}) == 12
    assert v("pktpath_paths_refused_total", {"reason": "budget"}) == 5
    assert v("pktpath_sampling_one_in", {"sampled_by": "rate"}) == 1000
    assert v("pktpath_sampling_one_in", {"sampled_by": "drop"}) == 1
    assert v("pktpath_spans_exported_total") == 40
    assert v("pktpath_spans_dropped_total", {"reason": "queue_full"}) == 2
    assert v("pktpath_spans_dropped_total", {"reason": "export_failed"}) == 0


def test_drop_series_carry_the_exemplar_of_their_last_trace() -> None:
    from prometheus_client.samples import Exemplar

    def read() -> KernelReadings:
        return KernelReadings([drop("eth0", 12, 5, 640)])

    ex = {("NETFILTER_DROP", "eth0", "udp"): Exemplar({"trace_id": "ab" * 16}, 1.0, 1700000000.0)}
    reg = CollectorRegistry()
    reg.register(
        PktpathCollector(
            read, REASONS, InterfaceResolver(lister=lambda _p: {}), list, BuildInfo("v", "k", "e"), exemplar=ex.get
        )
    )
    om = generate_openmetrics(reg).decode()
    line = next(ln for ln in om.splitlines() if ln.startswith("pktpath_drops_total{"))
    assert line.endswith(' 5.0 # {trace_id="' + "ab" * 16 + '"} 1.0 1700000000.0')


def test_same_labels_from_two_namespaces_are_summed() -> None:
    reg, _ = make(KernelReadings([drop("eth0", 12, 5, 500, netns=1), drop("eth0", 12, 3, 300, netns=2)]))
    labels = {"reason": "NETFILTER_DROP", "interface": "eth0", "protocol": "udp"}
    assert reg.get_sample_value("pktpath_drops_total", labels) == 8
    assert reg.get_sample_value("pktpath_drop_bytes_total", labels) == 800


def test_deviceless_drop_is_named_through_its_namespace() -> None:
    # ifname "" = the skb had no device; the resolver names ifindex 4 in the drop's netns.
    reg, collector = make(
        KernelReadings([drop("", 2, 1, 84, ifindex=4, netns=999), drop("", 2, 1, 84, ifindex=0, netns=0)]),
        links={4: "veth7"},
    )
    collector._interfaces.own_netns = 999  # the lister answers for "our" namespace
    v = reg.get_sample_value
    assert v("pktpath_drops_total", {"reason": "NOT_SPECIFIED", "interface": "veth7", "protocol": "udp"}) == 1
    assert v("pktpath_drops_total", {"reason": "NOT_SPECIFIED", "interface": "none", "protocol": "udp"}) == 1


def test_probe_attached_is_one_for_the_attached_family_zero_for_the_rest() -> None:
    reg, _ = make(KernelReadings([]))
    v = reg.get_sample_value
    assert v("pktpath_probe_attached", {"probe": "kfree_skb", "attach_type": "tracepoint"}) == 1
    assert v("pktpath_probe_attached", {"probe": "ip_rcv", "attach_type": "fentry"}) == 0
    assert v("pktpath_probe_attached", {"probe": "ip_rcv", "attach_type": "kprobe"}) == 0
    assert v("pktpath_build_info", {"version": "9.9.9", "kernel": "6.18.0", "engine": "libbpf-core/v1.1"}) == 1


def test_failed_kernel_read_still_answers_and_counts_the_error() -> None:
    reg, _ = make(OSError(9, "Bad file descriptor"))
    assert reg.get_sample_value("pktpath_scrape_errors_total") == 1  # each get_sample_value is one scrape
    assert reg.get_sample_value("pktpath_scrape_errors_total") == 2
    assert reg.get_sample_value("pktpath_probe_attached", {"probe": "kfree_skb", "attach_type": "tracepoint"}) == 1
    assert (
        reg.get_sample_value("pktpath_drops_total", {"reason": "NO_SOCKET", "interface": "eth0", "protocol": "tcp"})
        is None
    )


def test_expositions() -> None:
    reg, _ = make(KernelReadings([drop("eth0", 12, 5, 640, l3=IPV6, l4=58)]))
    text = generate_latest(reg).decode()
    assert "# TYPE pktpath_drops_total counter" in text
    assert 'pktpath_drops_total{interface="eth0",protocol="icmpv6",reason="NETFILTER_DROP"} 5.0' in text
    om = generate_openmetrics(reg).decode()
    assert "# TYPE pktpath_drops counter" in om
    assert 'pktpath_drops_total{interface="eth0",protocol="icmpv6",reason="NETFILTER_DROP"} 5.0' in om
    assert om.endswith("# EOF\n")


def test_registering_does_not_read_the_kernel() -> None:
    calls = []

    def read() -> KernelReadings:
        calls.append(1)
        return KernelReadings([])

    CollectorRegistry().register(
        PktpathCollector(read, REASONS, InterfaceResolver(lister=lambda _p: {}), list, BuildInfo("v", "k", "e"))
    )
    assert calls == []


def test_span_drop_reasons_match_the_exporter() -> None:
    from exporter.metrics.collector import SPAN_DROP_REASONS
    from exporter.traces.export import DROP_REASONS

    assert tuple(SPAN_DROP_REASONS) == tuple(DROP_REASONS)


def test_pod_labels() -> None:
    from exporter.k8s.pods import PodRef

    class Resolver:
        gone: set[int] = set()

        def labels(self, netns: int) -> tuple[str, str]:
            return ("shop", "checkout-1") if netns == 7 else ("", "")

        def expired(self, seen: set[int]) -> set[int]:
            return self.gone & seen

        def pod(self, netns: int) -> PodRef | None:
            return None

    resolver = Resolver()
    counts = [drop("eth0", 12, 5, 500, netns=7), drop("eth0", 12, 3, 300, netns=1)]
    reg = CollectorRegistry()
    reg.register(
        PktpathCollector(
            lambda: KernelReadings(counts),
            REASONS,
            InterfaceResolver(lister=lambda _p: {}),
            list,
            BuildInfo("v", "k", "e"),
            pods=resolver,  # type: ignore[arg-type]
        )
    )
    pod = {"reason": "NETFILTER_DROP", "interface": "eth0", "protocol": "udp", "namespace": "shop", "pod": "checkout-1"}
    host = pod | {"namespace": "", "pod": ""}
    assert reg.get_sample_value("pktpath_drops_total", pod) == 5
    assert reg.get_sample_value("pktpath_drops_total", host) == 3
