"""Ring buffer -> decoder -> assembler -> sinks, on one thread.

One thread owns the whole chain, so the assembler needs no locks and the
order of events from the ring is kept.  Sinks (spans, metrics, the shell)
get each finished Path; a sink that raises is counted by the assembler and
never stops the others or the thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Protocol

from exporter.decoders.drop_reasons import DropReasons
from exporter.decoders.events import DecodeError, EventDecoder
from exporter.kernel.api import EventConsumer, EventRing
from exporter.model.path import HopEvent, Path
from exporter.paths.assembler import PathAssembler
from exporter.paths.tracking import TrackedReaper

log = logging.getLogger(__name__)

POLL_MS = 100  # also the assembler's tick period: bounds how late an idle path is emitted
# The pipeline thread's nice value.  Turning paths into spans is most of the
# agent's CPU (docs/benchmarks.md), and sampled traces are worth less than the
# traffic they describe: on a saturated node this thread yields to the
# workload, the events ring fills, and what it cannot hold is counted
# (pktpath_events_lost_total), while the drop counters, read in the kernel,
# stay exact.  On a node with idle CPU it changes nothing.
PIPELINE_NICE = 10
# After a poll that found records, wait this long before the next one, so that each wake-up
# handles a batch instead of a few records: the ring signals every record, and at 1,000 paths/s
# the thread woke ~470 times a second with cold caches. Measured with the real agent (loopback
# UDP, 5-hop paths, thread CPU from /proc/<tid>/schedstat): 144 -> 97 us of CPU per path.
# 20 ms of records at 10,000 paths/s is ~1,200 records, far below what the 1 MiB ring holds,
# and well inside the assembler's 50 ms grace.
BATCH_WAIT_S = 0.02


class PathSource(Protocol):
    """What the pipeline needs from the kernel side (exporter/kernel/facade.py KernelSide)."""

    def event_ring(self, consume: EventConsumer) -> EventRing: ...

    def tracked(self) -> TrackedReaper: ...


def build_pipeline(
    kernel: PathSource,
    reasons: DropReasons,
    sinks: list[Callable[[Path], None]],
    *,
    assembler_options: dict[str, Any] | None = None,
    on_first_hop: Callable[[HopEvent], None] | None = None,
) -> PathPipeline:
    """The one way to wire events ring -> decoder -> assembler -> sinks, with the tracked-map reaper
    on the same thread: the agent, `pktpath shell`/`trace` and the benchmarks all build it here."""
    return PathPipeline(
        kernel.event_ring,
        EventDecoder(reasons),
        sinks,
        assembler_options=assembler_options,
        on_first_hop=on_first_hop,
        reaper=kernel.tracked(),
    )


class PathPipeline:
    def __init__(
        self,
        open_ring: Callable[[EventConsumer], EventRing],
        decoder: EventDecoder,
        sinks: list[Callable[[Path], None]],
        assembler_options: dict[str, Any] | None = None,
        on_first_hop: Callable[[HopEvent], None] | None = None,
        reaper: TrackedReaper | None = None,
    ) -> None:
        self._decoder = decoder
        self._sinks = sinks
        self._on_first_hop = on_first_hop
        self.reaper = reaper
        self.assembler = PathAssembler(self._deliver, **(assembler_options or {}))
        self.decode_errors = 0
        self.events = 0
        self._ring = open_ring(self._on_event)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pktpath-paths", daemon=True)

    def _on_event(self, raw: bytes) -> None:
        self.events += 1
        try:
            ev = self._decoder.decode(raw)
        except DecodeError as exc:
            self.decode_errors += 1
            log.debug("bad hop event: %s", exc)
            return
        if ev.header is not None and self._on_first_hop is not None:
            self._on_first_hop(ev)  # a new path: the kernel sets the header on its first hop only
        self.assembler.add(ev)

    def _deliver(self, path: Path) -> None:
        for sink in self._sinks:
            sink(path)

    def _run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PIPELINE_NICE)  # this thread only
        except OSError as exc:
            log.warning("cannot lower the path pipeline's priority: %s", exc)
        while not self._stop.is_set():
            try:
                if self._ring.poll(POLL_MS):
                    self._stop.wait(BATCH_WAIT_S)
            except Exception:
                log.exception("ring buffer poll failed")
                self._stop.wait(1.0)
            self.assembler.tick()
            if self.reaper is not None:
                try:
                    self.reaper.tick()
                except Exception:
                    log.exception("reaping the tracked map failed")
        # Drain what the kernel already wrote, then hand every open path on.
        self._ring.poll(0)
        self.assembler.flush()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self._ring.close()
