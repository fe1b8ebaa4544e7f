"""`pktpath run`: attach the probes, serve metrics, detach everything on SIGTERM/SIGINT.

Start-up order is chosen for time-to-first-probe: config, then load and attach
(tens of milliseconds), and only then the heavier Python work (reason names,
the HTTP server, prometheus_client), so drops are counted from the earliest
possible moment.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

from exporter import __version__
from exporter.config import Config
from exporter.errors import KernelError
from exporter.loader import libbpf
from exporter.loader.engine import AttachReport, Engine, EngineOptions
from exporter.loader.host import Host

log = logging.getLogger("pktpath")

DROP_HOP = "kfree_skb"


def engine_options(cfg: Config) -> EngineOptions:
    exclude = set(cfg.probes.exclude)
    if not cfg.drops.enabled:
        exclude.add(DROP_HOP)
    return EngineOptions(mode=cfg.probes.mode, exclude=tuple(sorted(exclude)),
                         map_sizes={"drop_counts": cfg.drops.max_series})


def start_engine(cfg: Config, host: Host) -> tuple[Engine, AttachReport]:
    from exporter.decoders import abi

    engine = Engine(engine_options(cfg), host=host)
    report = engine.start(verify=abi.check_against)
    if cfg.probes.strict and report.missing:
        engine.close()
        raise KernelError(f"probes.strict: hop(s) not attached: {', '.join(report.missing)}")
    return engine, report


class Agent:
    def __init__(self, cfg: Config, host: Host | None = None) -> None:
        self.cfg = cfg
        self.host = host or Host()
        self._stop = threading.Event()
        self.engine: Engine | None = None

    def run(self, started_at: float | None = None) -> int:
        started_at = started_at or time.monotonic()
        self.engine, report = start_engine(self.cfg, self.host)
        try:
            if report.first_attach_monotonic is not None:
                log.info("first probe attached %.1f ms after start",
                         (report.first_attach_monotonic - started_at) * 1000)
            server = self._serve(report)
            self._install_signals()
            log.info("serving metrics on http://%s:%d/metrics (%d of %d hops attached)",
                     self.cfg.metrics.host, server.port, len(report.attached), len(report.hops))
            self._stop.wait()
            log.info("stopping")
            server.stop()
        finally:
            self.engine.close()
            log.info("all probes detached")
        return 0

    def stop(self) -> None:
        self._stop.set()

    def _install_signals(self) -> None:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s", signal.Signals(signum).name)
            self._stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def _serve(self, report: AttachReport):  # type: ignore[no-untyped-def]
        # Deferred imports: prometheus_client costs ~40 ms to import, after attach.
        from prometheus_client import CollectorRegistry, ProcessCollector

        from exporter.decoders.counters import read_drop_counts, read_stats
        from exporter.decoders.drop_reasons import DropReasons
        from exporter.decoders.interfaces import InterfaceResolver
        from exporter.metrics.collector import BuildInfo, KernelReadings, PktpathCollector
        from exporter.metrics.server import MetricsServer

        assert self.engine is not None
        drop_map, stats_map = self.engine.map("drop_counts"), self.engine.map("stats")

        def read() -> KernelReadings:
            stats = read_stats(stats_map)
            return KernelReadings(drops=read_drop_counts(drop_map), drop_map_full=stats[0])

        btf = libbpf.Btf.parse(self.host.vmlinux_btf)
        registry = CollectorRegistry()
        registry.register(PktpathCollector(
            read=read,
            reasons=DropReasons.from_btf(btf),
            interfaces=InterfaceResolver(proc_root=self.host.proc_root),
            hops=report.hops,
            build=BuildInfo(__version__, self.host.kernel_release(), f"libbpf-core/{libbpf.version()}"),
        ))
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes
        server = MetricsServer(self.cfg.metrics.host, self.cfg.metrics.port, registry,
                               ready=lambda: bool(report.attached))
        server.start()
        return server

