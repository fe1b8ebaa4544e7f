"""The Prometheus collector: reads kernel maps at scrape time, never per packet.

Every number here is computed from the kernel's own counters when Prometheus
asks, so an idle agent does no work and a scrape always sees exact totals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

from exporter.decoders.counters import DropCount, VerdictCounts
from exporter.decoders.drop_reasons import DropReasons
from exporter.decoders.interfaces import InterfaceResolver
from exporter.decoders.route_results import RouteResults
from exporter.k8s.pods import PodResolver
from exporter.kernel.api import ProbeState
from exporter.model import abi
from exporter.model import vocabulary as names
from exporter.model.vocabulary import protocol_label

log = logging.getLogger(__name__)

DROP_LABELS = ["reason", "interface", "protocol"]
# Kernels without drop reasons (before 5.17) only: the function that dropped (decoders/drop_locations.py).
LOCATION_LABEL = "location"
POD_LABELS = ["namespace", "pod"]  # kubernetes.pod_labels: the pod the drop's network namespace belongs to
# exporter.traces.export.DROP_REASONS, repeated to keep the OpenTelemetry SDK out of this module's imports
# (tests/unit/metrics/test_collector.py checks the two agree).
SPAN_DROP_REASONS = ("queue_full", "export_failed", "shutdown")


@dataclass(frozen=True)
class BuildInfo:
    version: str
    kernel: str
    engine: str


@dataclass
class KernelReadings:
    """What one scrape read from the kernel."""

    drops: list[DropCount]
    stats: list[int] = field(default_factory=lambda: [0] * abi.STAT_SLOTS)  # enum pktpath_stat slots
    tracked_live: int = 0  # entries in the tracked map now
    tracked_reaped: int = 0  # entries userspace deleted because no hop ended them (exporter/paths/tracking.py)
    verdicts: VerdictCounts | None = None  # function hooks' counters (empty where none attached)

    def stat(self, name: str) -> int:
        return self.stats[abi.STATS.index(name)]


@dataclass(frozen=True)
class SamplingWeights:
    """Effective 1-in-N of each way a path is started (0: off), for unbiased ratios."""

    rate: float  # with sampling windows, N x period / window (exporter/paths/windows.py)
    drop: int


class PktpathCollector(Collector):
    def __init__(
        self,
        read: Callable[[], KernelReadings],
        reasons: DropReasons,
        interfaces: InterfaceResolver,
        probes: Callable[[], list[ProbeState]],
        build: BuildInfo,
        exemplar: Callable[[tuple[str, str, str]], Exemplar | None] = lambda _labels: None,
        sampling: Callable[[], SamplingWeights | None] = lambda: None,
        spans: Callable[[], tuple[int, dict[str, int]]] | None = None,
        pods: PodResolver | None = None,
        route_results: RouteResults | None = None,
    ) -> None:
        self._read = read
        self._reasons = reasons
        self._interfaces = interfaces
        self._probes = probes
        self._build = build
        self._exemplar = exemplar
        self._sampling = sampling
        self._spans = spans
        self._pods = pods
        self._route_results = route_results
        self.scrape_errors = 0

    def _families(self) -> _Families:
        return _Families(self._pods is not None, self._reasons.locations is not None)

    def describe(self) -> Iterator[Metric]:
        # Registering must not read the kernel: describe without samples.
        yield from self._families().all()

    def collect(self) -> Iterator[Metric]:
        f = self._families()
        try:
            readings: KernelReadings | None = self._read()
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even if the kernel read fails
            self.scrape_errors += 1
            log.error("reading kernel counters failed: %s", exc)
            readings = None
        if readings is not None:
            drops = readings.drops
            for labels, (packets, nbytes) in sorted(self.drop_series(drops).items()):
                f.drops.add_metric(list(labels), packets, exemplar=self._exemplar((labels[0], labels[1], labels[2])))
                f.drop_bytes.add_metric(list(labels), nbytes)
            self._kernel_stats(f, readings)
            if readings.verdicts is not None:
                self._verdicts(f, readings.verdicts)
        for probe in self._probes():
            f.attached.add_metric([probe.probe, probe.family], 1.0 if probe.attached else 0.0)
        weights = self._sampling()
        if weights is not None:
            f.sampling.add_metric(["rate"], weights.rate)
            f.sampling.add_metric(["drop"], weights.drop)
        if self._spans is not None:
            exported, dropped = self._spans()
            f.spans_exported.add_metric([], exported)
            for reason in SPAN_DROP_REASONS:
                f.spans_dropped.add_metric([reason], dropped.get(reason, 0))
        if self._reasons.locations is not None and f.location_overflow is not None:
            f.location_overflow.add_metric([], self._reasons.locations.overflow)
        f.scrape_errors.add_metric([], self.scrape_errors)
        f.build.add_metric([self._build.version, self._build.kernel, self._build.engine], 1.0)
        # Without packet paths the sampling weights and span counters mean nothing: left out, not
        # served empty (README's metric table says which families need paths).
        absent = ([f.sampling] if weights is None else []) + (
            [f.spans_exported, f.spans_dropped] if self._spans is None else []
        )
        yield from (family for family in f.all() if not any(family is a for a in absent))

    def _verdicts(self, f: _Families, v: VerdictCounts) -> None:
        nf: dict[tuple[str, str, str, str], int] = {}
        for family, hook, table, verdict, n in v.netfilter:
            key = (names.nf_family_name(family), names.nf_hook_name(hook), table, names.nf_verdict_name(verdict))
            nf[key] = nf.get(key, 0) + n
        for labels, n in sorted(nf.items()):
            f.nf_verdicts.add_metric(list(labels), n)
        rpf: dict[tuple[str, str], int] = {}
        for failed, ifname, n in v.rp_filter:
            key2 = ("fail" if failed else "pass", ifname or "none")
            rpf[key2] = rpf.get(key2, 0) + n
        for labels2, n in sorted(rpf.items()):
            f.rp_filter.add_metric(list(labels2), n)
        route: dict[str, int] = {}
        for ret, route_error, n in v.route:
            result = self._route_results.label(ret, route_error) if self._route_results else str(ret)
            route[result] = route.get(result, 0) + n
        for result, n in sorted(route.items()):
            f.route_lookups.add_metric([result], n)

    @staticmethod
    def _kernel_stats(f: _Families, r: KernelReadings) -> None:
        f.map_full.add_metric(["drop_counts"], r.stat("STAT_DROP_MAP_FULL"))
        f.map_full.add_metric(["verdicts"], r.stat("STAT_VERDICT_MAP_FULL"))
        f.probe_errors.add_metric(["kretprobe_args_lost"], r.stat("STAT_STASH_MISMATCH"))
        f.events_lost.add_metric(["events"], r.stat("STAT_RING_FULL"))
        f.started.add_metric(["rate"], r.stat("STAT_SAMPLED_RATE"))
        f.started.add_metric(["drop"], r.stat("STAT_SAMPLED_DROP"))
        f.refused.add_metric(["budget"], r.stat("STAT_PATH_BUDGET"))
        f.refused.add_metric(["drop_budget"], r.stat("STAT_DROP_BUDGET"))
        f.tracked.add_metric([], r.tracked_live)
        # Entries no hop ended (the packet was freed where no hop sees it),
        # deleted by the reaper in exporter/paths/tracking.py.
        f.tracking_lost.add_metric(["expired"], r.tracked_reaped)
        f.tracking_lost.add_metric(["insert_failed"], r.stat("STAT_TRACK_FULL"))
        f.tracking_lost.add_metric(["stale_pointer"], r.stat("STAT_TRACK_STALE"))

    def drop_series(self, counts: list[DropCount]) -> dict[tuple[str, ...], tuple[int, int]]:
        """Kernel keys -> label sets. Keys that differ only by netns (eth0 in two
        namespaces) share a label set, so their counts are summed.  The kernel
        records the device name at drop time; only device-less drops (the
        skb's ingress index alone) need the per-netns resolver."""
        names = self._interfaces.names((c.netns, c.ifindex) for c in counts if not c.ifname)
        locations = self._reasons.locations
        series: dict[tuple[str, ...], tuple[int, int]] = {}
        for c in counts:
            labels: tuple[str, ...] = (
                self._reasons.at(c.reason, c.location),
                c.ifname or names[(c.netns, c.ifindex)],
                protocol_label(c.l3_proto, c.l4_proto, c.truncated),
            )
            if locations is not None:
                labels += (locations.label(c.location),)
            if self._pods is not None:
                labels += self._pods.labels(c.netns)
            p, b = series.get(labels, (0, 0))
            series[labels] = (p + c.packets, b + c.bytes)
        return series


class _Families:
    """A fresh set of metric families for one describe() or collect()."""

    def __init__(self, pod_labels: bool = False, location: bool = False) -> None:
        labels = DROP_LABELS + ([LOCATION_LABEL] if location else []) + (POD_LABELS if pod_labels else [])
        self.drops = CounterMetricFamily(
            "pktpath_drops",
            "Packets the kernel dropped, by drop reason, interface and L4 protocol (every drop, unsampled).",
            labels=labels,
        )
        self.drop_bytes = CounterMetricFamily(
            "pktpath_drop_bytes",
            "Bytes of the packets the kernel dropped (skb->len at the drop), by drop reason, interface and protocol.",
            labels=labels,
        )
        self.attached = GaugeMetricFamily(
            "pktpath_probe_attached",
            "1 if the hop's probe is attached in this attach type, 0 for every candidate that is not; "
            "kprobe_multi: a path function hook that sampling windows switch as one kprobe.multi link; "
            "drop_capture (attach_type tail_call) is 1 once it is in place behind the drop program.",
            labels=["probe", "attach_type"],
        )
        self.events_lost = CounterMetricFamily(
            "pktpath_events_lost", "Events the kernel could not put into a ring buffer (ring full).", labels=["ring"]
        )
        self.map_full = CounterMetricFamily(
            "pktpath_map_full",
            "Kernel updates lost because a map was full; for drop_counts each one is a "
            "dropped packet counted in no series (raise drops.max_series).",
            labels=["map"],
        )
        self.started = CounterMetricFamily(
            "pktpath_paths_started",
            "Packets the kernel started following, by what chose them: the 1-in-N rate sample or drop capture.",
            labels=["sampled_by"],
        )
        self.refused = CounterMetricFamily(
            "pktpath_paths_refused",
            "Path starts refused because a budget was spent: budget = "
            "sampling.max_paths_per_second (sampled packets), drop_budget = max_drop_paths_per_second (drop "
            "captures). A packet refused at each of its entry hops (e.g. a pod's transmit and the host's "
            "receive) counts once per hop; a drop capture is refused before the filter looks at it.",
            labels=["reason"],
        )
        self.sampling = GaugeMetricFamily(
            "pktpath_sampling_one_in",
            "Effective sampling weight: each path started this way stands for N packets (0: off).",
            labels=["sampled_by"],
        )
        self.tracked = GaugeMetricFamily("pktpath_tracked_packets", "Packets being followed in the kernel now.")
        self.tracking_lost = CounterMetricFamily(
            "pktpath_tracking_lost",
            "Followed packets whose tracking ended early: expired (no hop "
            "ended it within 250 ms: freed where no hop sees it), insert_failed (tracked map full), "
            "stale_pointer (an skb pointer reused by a new packet).",
            labels=["reason"],
        )
        self.nf_verdicts = CounterMetricFamily(
            "pktpath_netfilter_verdicts",
            "Netfilter verdicts of nftables chains (nft_do_chain) and iptables-legacy tables (ipt_do_table), "
            "every packet: family, hook, table, verdict. Needs fentry or kprobes (absent on tracepoint-only kernels).",
            labels=["family", "hook", "table", "verdict"],
        )
        self.rp_filter = CounterMetricFamily(
            "pktpath_rp_filter_checks",
            "Source validation (fib_validate_source, rp_filter) results by receiving "
            "interface, every packet that is routed. Needs fentry or kprobes.",
            labels=["result", "interface"],
        )
        self.route_lookups = CounterMetricFamily(
            "pktpath_route_lookups",
            "Input route lookups (ip_route_input_noref) by result: found, no_route, "
            "forwarding_disabled, rp_filter, martian ... Needs fentry or kprobes.",
            labels=["result"],
        )
        self.probe_errors = CounterMetricFamily(
            "pktpath_probe_errors", "Hop data lost inside the kernel side, by cause.", labels=["reason"]
        )
        self.spans_exported = CounterMetricFamily("pktpath_spans_exported", "Spans the OTLP exporter accepted.")
        self.spans_dropped = CounterMetricFamily(
            "pktpath_spans_dropped",
            "Spans lost: queue_full (export slower than paths), export_failed "
            "(endpoint down or refusing), shutdown (still queued when the agent stopped).",
            labels=["reason"],
        )
        self.location_overflow = (
            CounterMetricFamily(
                "pktpath_drop_location_overflow",
                "Functions that dropped packets after the drop location label "
                'limit was reached: their drops are counted under location="other" (kernels without drop '
                "reasons only).",
            )
            if location
            else None
        )
        self.scrape_errors = CounterMetricFamily(
            "pktpath_scrape_errors", "Scrapes that could not read the kernel maps."
        )
        self.build = GaugeMetricFamily(
            "pktpath_build_info",
            "pktpath version, running kernel and BPF engine.",
            labels=["version", "kernel", "engine"],
        )

    def all(self) -> tuple[Metric, ...]:
        optional = (self.location_overflow,) if self.location_overflow is not None else ()
        return (
            self.drops,
            self.drop_bytes,
            self.attached,
            self.events_lost,
            self.map_full,
            self.started,
            self.refused,
            self.sampling,
            self.tracked,
            self.tracking_lost,
            self.nf_verdicts,
            self.rp_filter,
            self.route_lookups,
            self.probe_errors,
            self.spans_exported,
            self.spans_dropped,
            *optional,
            self.scrape_errors,
            self.build,
        )
