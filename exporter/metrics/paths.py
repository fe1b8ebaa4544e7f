"""Metrics of sampled paths: outcomes, time in the stack, evictions, and drop exemplars.

PathMetrics is a sink of the path pipeline (called on its thread for each
finished Path) and a prometheus_client collector (called on scrape threads);
a lock guards the few numbers both touch.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from exporter.model.path import Hop, Outcome, Path
from exporter.model.vocabulary import ETH_P_IP, ETH_P_IPV6, protocol_label

# Time from a path's first to last hop: microseconds inside one host's stack
# up to seconds for a packet parked in a queue.
BUCKETS = (1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 1e-2, 0.1, 1.0)

DropLabels = tuple[str, str, str]  # (reason, interface, protocol) as in pktpath_drops_total


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, n in zip([*map(floatToGoString, BUCKETS), "+Inf"], self.counts, strict=True):
            running += n
            out.append((bound, float(running)))
        return out


def drop_labels(path: Path) -> DropLabels | None:
    """The pktpath_drops_total label set a dropped path was counted under."""
    if path.outcome is not Outcome.DROPPED or path.header is None:
        return None
    drop = next((h for h in path.hops if h.hop is Hop.DROP), None)
    if drop is None:
        return None
    l3 = ETH_P_IP if path.header.family == 4 else ETH_P_IPV6
    return (
        path.drop_reason or "UNKNOWN",
        drop.ifname or "none",
        protocol_label(l3, path.header.protocol, path.header.truncated),
    )


class PathMetrics(Collector):
    def __init__(self, evicted: Callable[[], Mapping[str, int]], clock: Callable[[], float] = time.time) -> None:
        self._evicted = evicted
        self._clock = clock
        self._lock = threading.Lock()
        self._outcomes: Counter[str] = Counter()
        self._durations: dict[str, _Histogram] = {}
        self._exemplars: dict[DropLabels, tuple[str, float]] = {}

    def observe(self, path: Path, trace_id: str = "") -> None:
        """Record one finished path (pipeline thread)."""
        outcome = path.outcome.value
        with self._lock:
            self._outcomes[outcome] += 1
            self._durations.setdefault(outcome, _Histogram()).observe(path.duration_ns / 1e9)
            labels = drop_labels(path)
            if labels is not None and trace_id:
                # Bounded by the drop series themselves: one exemplar per label set.
                self._exemplars[labels] = (trace_id, self._clock())

    def exemplar(self, labels: DropLabels) -> Exemplar | None:
        with self._lock:
            found = self._exemplars.get(labels)
        if found is None:
            return None
        return Exemplar({"trace_id": found[0]}, 1.0, found[1])

    def collect(self) -> Iterator[Metric]:
        paths = CounterMetricFamily(
            "pktpath_sampled_paths", "Sampled packet paths finished, by how they ended.", labels=["outcome"]
        )
        hist = HistogramMetricFamily(
            "pktpath_path_duration_seconds",
            "Time a sampled packet spent in this host's stack, first to last hop, by outcome.",
            labels=["outcome"],
        )
        evicted = CounterMetricFamily(
            "pktpath_paths_evicted",
            "Paths (or hops) the assembler ended or discarded "
            "other than at a terminal hop: idle_timeout, capacity, late_hop, "
            "too_many_hops, shutdown, internal_error.",
            labels=["reason"],
        )
        with self._lock:
            for outcome in Outcome:
                paths.add_metric([outcome.value], self._outcomes[outcome.value])
            for name, h in sorted(self._durations.items()):
                hist.add_metric([name], h.cumulative(), h.total)
        for reason, n in sorted(self._evicted().items()):
            evicted.add_metric([reason], n)
        yield from (paths, hist, evicted)
