"""Metrics of sampling windows (exporter/paths/windows.py): whether one is open, how many opened on
time, late or not at all, what their edges cost, and how long the path hooks were on.

Registered only when the agent samples in windows (not with sampling.continuous).  The numbers are
written by the window thread and read here on a scrape thread: each is one int or float, read once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from exporter.paths.windows import WindowCounters, hooks_on_seconds


def _families() -> tuple[
    GaugeMetricFamily, CounterMetricFamily, CounterMetricFamily, SummaryMetricFamily, CounterMetricFamily
]:
    return (
        GaugeMetricFamily(
            "pktpath_sampling_window_open",
            "1 while a sampling window is open (new paths may "
            "start), else 0. Path hooks are attached from shortly before it opens until the "
            "packets it chose have ended.",
        ),
        CounterMetricFamily(
            "pktpath_sampling_windows",
            "Sampling windows, by how they went: on_time, late "
            "(attaching overran the lead; opened shorter, weighted for it) or missed (no path "
            "hook could attach; that period has no rate-sampled paths).",
            labels=["outcome"],
        ),
        CounterMetricFamily(
            "pktpath_sampling_windows_quota_spent",
            "Sampling windows closed before their end because "
            "they had started their quota of paths (max_paths_per_second x window_seconds): no "
            "candidate after that could start one, so the path hooks came off early.",
        ),
        SummaryMetricFamily(
            "pktpath_sampling_window_edge_seconds",
            "Time the agent's window thread spent "
            "attaching or detaching the path hooks, per edge (a function hook's detach waits "
            "for RCU grace periods).",
            labels=["edge"],
        ),
        CounterMetricFamily(
            "pktpath_sampling_path_hooks_seconds",
            "Time the path hooks were attached: around "
            "each window, from the start of its attach to the end of its detach, and at start-up "
            "until the window thread took them off. Busy traffic pays them only for this share "
            "of the time.",
        ),
    )


class WindowMetrics(Collector):
    def __init__(self, counters: WindowCounters) -> None:
        self._c = counters

    def describe(self) -> Iterator[Metric]:
        yield from _families()

    def collect(self) -> Iterator[Metric]:
        c = self._c
        open_, windows, quota_spent, edges, hooks_on = _families()
        open_.add_metric([], 1.0 if c.open else 0.0)
        late, missed = c.late, c.missed
        windows.add_metric(["on_time"], c.opened - late)
        windows.add_metric(["late"], late)
        windows.add_metric(["missed"], missed)
        quota_spent.add_metric([], c.quota_spent)
        edges.add_metric(["attach"], c.attach_count, c.attach_seconds)
        edges.add_metric(["detach"], c.detach_count, c.detach_seconds)
        hooks_on.add_metric([], hooks_on_seconds(c, time.monotonic_ns()))
        yield from (open_, windows, quota_spent, edges, hooks_on)
