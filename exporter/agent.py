"""`pktpath run`: attach the probes, serve metrics, follow sampled packets, detach everything on exit.

This module only composes: each subsystem reads its own part of the config (the loader's
EngineOptions.for_config, PathSettings.from_config, the pods' resolver_from_config ...), the kernel
side hands out typed handles (exporter/kernel/facade.py), and paths are wired by the one pipeline
builder (exporter/paths/pipeline.py).

Start-up order is chosen for time-to-first-probe: config, the metrics socket
bound (so a busy port fails before anything is attached), then load and attach
(tens of milliseconds), and only then the heavier Python work (reason names,
prometheus_client, the OpenTelemetry SDK), so drops are counted from the
earliest possible moment.

Signals: SIGTERM/SIGINT stop (paths in flight are flushed to the exporter,
every link detached, exit 0); SIGHUP re-reads the config file and applies the
filter and sampling settings live; an invalid file keeps the running config.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

from exporter import __version__
from exporter.config import Config, load_config
from exporter.errors import PktpathError
from exporter.k8s.pods import ApiPodSource, PodResolver, resolver_from_config
from exporter.kernel.facade import KernelSide
from exporter.loader import libbpf
from exporter.loader.engine import ModuleWatch, start_engine
from exporter.loader.host import Host
from exporter.metrics.listener import bind_listener
from exporter.paths import own_traffic
from exporter.paths.kernel_config import PathControl, PathSettings
from exporter.paths.own_traffic import OwnTraffic, netns_inode

if TYPE_CHECKING:
    from exporter.metrics.server import MetricsServer
    from exporter.paths.pipeline import PathPipeline
    from exporter.traces.export import Tracing

log = logging.getLogger("pktpath")


class Agent:
    def __init__(self, cfg: Config, config_path: str | None = None, host: Host | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.host = host or Host()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.kernel: KernelSide | None = None
        self.control: PathControl | None = None
        self.pipeline: PathPipeline | None = None
        self.tracing: Tracing | None = None
        self.pods: PodResolver | None = None
        self.own: OwnTraffic | None = None
        self.own_port = 0

    def run(self, started_at: float | None = None) -> int:
        started_at = started_at or time.monotonic()
        # Decide before loading whether anything consumes paths, so the path hops
        # are not even attached when traces are off; the SDK itself (~60 ms to
        # import) is set up after the probes are attached.
        from exporter.traces.choice import traces_enabled

        paths = traces_enabled(self.cfg.traces, os.environ)
        self.pods = resolver_from_config(self.cfg.kubernetes, self.host.proc_root, os.environ)
        # Bound before anything is loaded: a busy port is one line and nothing ever attached.
        listener = bind_listener(self.cfg.metrics.host, self.cfg.metrics.port, self.cfg.metrics.listen)
        try:
            # Parsed once (10 ms, several MB): the engine checks hop targets in it, the
            # collector reads drop reasons from it.  Without BTF the engine says why.
            btf = libbpf.Btf.parse(self.host.vmlinux_btf) if self.host.has_btf() else None
            engine = start_engine(self.cfg, self.host, paths, btf)
        except BaseException:
            listener.close()
            raise
        self.kernel = kernel = KernelSide(engine, btf)
        report = kernel.report
        server: MetricsServer | None = None
        try:
            if report.first_attach_monotonic is not None:
                log.info("first probe attached %.1f ms after start",
                         (report.first_attach_monotonic - started_at) * 1000)
            if paths:
                self.tracing = self._build_tracing()
            # Before any path can start: the agent's own connections are never followed.
            self.own_port = listener.getsockname()[1]
            self.own = kernel.own_traffic(netns_inode(self.host.proc_root))
            self.own.apply(self._own_endpoints(self.cfg))
            self.control = kernel.path_control()
            self.control.apply(PathSettings.from_config(self.cfg, enabled=paths))
            server = self._serve(listener)
            self._install_signals()
            log.info("serving metrics on http://%s:%d/metrics (%d of %d hops attached; packet paths %s)",
                     self.cfg.metrics.host, server.port, len(report.attached), len(report.hops),
                     f"on, 1 in {self.cfg.sampling.one_in}" if paths else "off")
            self._loop(ModuleWatch(report))
            log.info("stopping")
        finally:
            if server is not None:
                server.stop()
            else:
                listener.close()
            if self.pipeline is not None:
                self.pipeline.stop()
            engine.close()
            log.info("all probes detached")
            if self.tracing is not None:
                self.tracing.shutdown(timeout_s=5.0)
        return 0

    def _loop(self, modules: ModuleWatch) -> None:
        """The agent's own thread: reloads, late module hooks, and the expiry of gone pods' counters."""
        assert self.kernel is not None
        next_expiry = time.monotonic()
        while not self._stop.is_set():
            self._stop.wait(0.5)
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            if modules.changed():
                for hop in self.kernel.engine.attach_late():
                    log.info("hop %s attached late: a module it lives in was loaded", hop)
            if self.pods is not None and time.monotonic() >= next_expiry:
                next_expiry = time.monotonic() + self.cfg.kubernetes.refresh_seconds
                self.expire_pod_counters()

    def expire_pod_counters(self) -> int:
        """Delete the drop counters of namespaces whose pod is gone for longer than
        kubernetes.expire_seconds: their series end instead of living forever.  How many went."""
        assert self.kernel is not None and self.pods is not None
        drops = self.kernel.drop_counters()
        counts = drops.read()
        gone = self.pods.expired({c.netns for c in counts})
        stale = [c for c in counts if c.netns in gone]
        if stale:
            retired = drops.forget(stale)
            log.info("removed %d drop counter(s) of %d expired pod namespace(s), %d fast-path slot(s) retired",
                     len(stale), len(gone), retired)
        return len(stale)

    def stop(self) -> None:
        self._stop.set()

    def reload(self) -> None:
        """Re-read the config file; apply filter and sampling live, keep the old config if invalid."""
        if self.config_path is None:
            log.info("SIGHUP: no config file to reload (running with built-in defaults)")
            return
        try:
            new = load_config(self.config_path)
            assert self.control is not None and self.control.settings is not None
            self.control.apply(PathSettings.from_config(new, enabled=self.control.settings.enabled))
        except PktpathError as exc:
            log.error("reload failed, keeping the running config: %s", exc)
            return
        for section in ("metrics", "drops", "probes", "traces", "logging"):
            if getattr(new, section) != getattr(self.cfg, section):
                log.warning("reload: changes to %s: take effect at the next restart", section)
        self.cfg = Config(**{**self.cfg.__dict__, "filter": new.filter, "sampling": new.sampling})
        if self.own is not None:  # addresses of names may have changed since
            self.own.apply(self._own_endpoints(self.cfg))
        log.info("reloaded %s: filter and sampling applied", self.config_path)

    def _own_endpoints(self, cfg: Config) -> list[own_traffic.Endpoint]:
        from exporter.traces.choice import endpoint_address

        reads_pod_api = self.pods is not None and isinstance(self.pods.source, ApiPodSource)
        return own_traffic.endpoints_for(cfg.metrics.host, self.own_port, endpoint_address(cfg.traces, os.environ),
                                         os.environ, reads_pod_api)

    def _install_signals(self) -> None:
        def on_stop(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s", signal.Signals(signum).name)
            self._stop.set()

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            self._reload.set()  # applied on the main loop, not inside the handler

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def _build_tracing(self) -> Tracing | None:
        from exporter.traces.export import build_tracing

        return build_tracing(self.cfg.traces, os.environ, pod_of=self.pods.pod if self.pods else None)

    def _serve(self, listener: socket.socket) -> MetricsServer:
        # Deferred imports: prometheus_client costs ~40 ms to import, after attach.
        from prometheus_client import CollectorRegistry, ProcessCollector

        from exporter.decoders.interfaces import InterfaceResolver
        from exporter.metrics.collector import BuildInfo, KernelReadings, PktpathCollector, SamplingWeights
        from exporter.metrics.paths import PathMetrics
        from exporter.metrics.server import MetricsServer
        from exporter.model.path import Path
        from exporter.paths.pipeline import build_pipeline

        assert self.kernel is not None
        kernel = self.kernel
        drops, stats, tracked, verdicts = (kernel.drop_counters(), kernel.stats(), kernel.tracked(),
                                           kernel.verdict_counters())

        def read() -> KernelReadings:
            return KernelReadings(drops=drops.read(), stats=stats.read(), tracked_live=tracked.live(),
                                  tracked_reaped=tracked.reaped, verdicts=verdicts.read())

        reasons = kernel.drop_reasons()
        registry = CollectorRegistry()
        path_metrics: PathMetrics | None = None
        tracing = self.tracing
        if tracing is not None:
            def to_spans(path: Path) -> None:  # the pipeline thread, per finished path
                assert path_metrics is not None
                path_metrics.observe(path, tracing.span_builder.emit(path))

            pipeline = build_pipeline(kernel, reasons, [to_spans])
            # dict() copies in one C call under the GIL: the scrape thread never iterates the
            # Counter the pipeline thread is adding to.
            path_metrics = PathMetrics(evicted=lambda: dict(pipeline.assembler.evicted))
            registry.register(path_metrics)
            self.pipeline = pipeline
            pipeline.start()

        def weights() -> SamplingWeights | None:
            s = self.control.settings if self.control else None
            return SamplingWeights(s.one_in, s.drop_one_in) if s and s.enabled else None

        registry.register(PktpathCollector(
            read=read,
            reasons=reasons,
            interfaces=InterfaceResolver(proc_root=self.host.proc_root),
            probes=kernel.probes,
            build=BuildInfo(__version__, self.host.kernel_release(), f"libbpf-core/{libbpf.version()}"),
            exemplar=path_metrics.exemplar if path_metrics else (lambda _labels: None),
            sampling=weights,
            spans=(lambda: (tracing.exported, dict(tracing.dropped))) if tracing else None,
            pods=self.pods,
            route_results=kernel.route_results(reasons),
        ))
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes
        server = MetricsServer(listener, registry, ready=lambda: bool(kernel.report.attached))
        server.start()
        return server
