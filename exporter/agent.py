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

import contextlib
import ctypes
import dataclasses
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
from exporter.loader import libbpf
from exporter.loader.engine import ModuleWatch, start_engine
from exporter.loader.host import Host
from exporter.metrics.listener import bind_listener

# What is needed only once the first probe is attached is imported there (Agent.run): the kernel
# facade, path control and windows cost ~25 ms of imports that would delay the first probe.
if TYPE_CHECKING:
    from exporter.kernel.facade import KernelSide
    from exporter.metrics.server import MetricsServer
    from exporter.paths import own_traffic
    from exporter.paths.kernel_config import PathControl
    from exporter.paths.own_traffic import OwnTraffic
    from exporter.paths.pipeline import PathPipeline
    from exporter.paths.windows import WindowController
    from exporter.traces.export import Tracing

log = logging.getLogger("pktpath")


def release_free_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim; a no-op elsewhere)."""
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None).malloc_trim(0)


# glibc's mallopt() parameter (malloc.h), and the size from which a buffer gets a mapping of its own.
_M_MMAP_THRESHOLD = -3
LARGE_BUFFER_BYTES = 64 * 1024


def map_large_buffers() -> None:
    """Give every allocation of LARGE_BUFFER_BYTES or more its own mapping, unmapped when it is freed
    (glibc's mallopt; a no-op elsewhere).

    The agent's large buffers are short-lived: an OTLP request being built and sent (a batch of 512
    spans is about 170 KB, and the gRPC channel copies it) and the kernel BTF parsed at start.
    glibc maps the first such buffer, then raises its threshold to that buffer's size when it is
    freed (the "dynamic" threshold), so every later one is carved from the heap, where the small
    long-lived objects allocated in between pin the pages: with spans exported to an endpoint that
    is down, about 3 MB of RSS that malloc_trim cannot give back (docs/benchmarks.md).  A fixed
    threshold costs a mapping and an unmapping per batch, a few dozen a second at most.
    """
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES)


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
        self.windows: WindowController | None = None

    def run(self, started_at: float | None = None) -> int:
        started_at = started_at or time.monotonic()
        map_large_buffers()  # before the kernel BTF is parsed: it is the first large buffer
        # Paths are on by default: they feed the path metrics and the drop exemplars whether or
        # not spans are exported.  The path hops are loaded only when packets are followed
        # (one_in > 0); drop capture (drop_one_in) needs only the always-on drop hop.  Whether
        # spans go anywhere is decided (and a bad OTEL_* variable refused) before anything is
        # loaded; the SDK itself (~60 ms to import) is set up after the probes are attached.
        from exporter.traces.choice import traces_enabled

        exporting = traces_enabled(self.cfg.traces, os.environ)
        follows = self.cfg.sampling.one_in > 0
        paths = follows or self.cfg.sampling.drop_one_in > 0
        self.pods = resolver_from_config(self.cfg.kubernetes, self.host.proc_root, os.environ)
        # Bound before anything is loaded: a busy port is one line and nothing ever attached.
        listener = bind_listener(self.cfg.metrics.host, self.cfg.metrics.port, self.cfg.metrics.listen)
        try:
            # Parsed once (10 ms, several MB): the engine checks hop targets in it, the
            # collector reads drop reasons from it.  Without BTF the engine says why.
            btf = libbpf.Btf.parse(self.host.vmlinux_btf) if self.host.has_btf() else None
            # Logged the moment it happens (the other hops load after it): start-up's one promise.
            attaching_since_ns = time.monotonic_ns()  # the path hooks' time on counts from here
            engine = start_engine(
                self.cfg,
                self.host,
                follows,
                btf,
                first_attached=lambda at: log.info(
                    "first probe attached %.1f ms after start", (at - started_at) * 1000
                ),
            )
        except BaseException:
            listener.close()
            raise
        from exporter.kernel.facade import KernelSide
        from exporter.paths.kernel_config import PathSettings
        from exporter.paths.own_traffic import netns_inode
        from exporter.paths.windows import WindowController, WindowSettings

        self.kernel = kernel = KernelSide(engine, btf)
        report = kernel.report
        server: MetricsServer | None = None
        try:
            if paths and exporting:
                self.tracing = self._build_tracing()
            # Before any path can start: the agent's own connections are never followed.
            self.own_port = listener.getsockname()[1]
            self.own = kernel.own_traffic(netns_inode(self.host.proc_root))
            self.own.apply(self._own_endpoints(self.cfg))
            self.control = kernel.path_control()
            self.control.apply(PathSettings.from_config(self.cfg, enabled=paths))
            if follows and not self.cfg.sampling.continuous:
                # The engine attached every hop (the first probe as early as possible); the window
                # thread takes the path hooks off now and puts them on around each window.
                self.windows = WindowController(WindowSettings.from_config(self.cfg), kernel.windows())
            if self.windows is not None:
                self.windows.start(attaching_since_ns)  # the path hooks off before /readyz says ready
            server = self._serve(listener)
            self._install_signals()
            # Start-up is over: the parsed kernel BTF (~6 MB) is read again only if a module's hook
            # attaches late or a subsystem drop reason shows up, and is parsed anew then; what
            # start-up freed goes back to the system (glibc keeps freed heap otherwise: ~7 MB here).
            # After the signal handlers: /readyz answers from here on, and a SIGTERM sent on
            # readiness must find them (malloc_trim can take tens of ms on a loaded machine).
            kernel.release_btf()
            if btf is not None:
                btf.close()
            release_free_heap()
            log.info(
                "serving metrics on http://%s:%d/metrics (%d of %d hops attached; packet paths %s; spans %s)",
                self.cfg.metrics.host,
                server.port,
                len(report.attached),
                len(report.hops),
                self._paths_summary() if paths else "off",
                "exported" if self.tracing is not None else "not exported (no traces exporter or endpoint)",
            )
            self._loop(ModuleWatch(report))
            log.info("stopping")
        finally:
            if server is not None:
                server.stop()
            else:
                listener.close()
            if self.windows is not None:
                self.windows.stop()
            if self.pipeline is not None:
                self.pipeline.stop()
            engine.close()
            log.info("all probes detached")
            if self.tracing is not None:
                self.tracing.shutdown()  # bounded: SHUTDOWN_TIMEOUT_S, docs/traces.md
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
                for hop in self.kernel.attach_late():
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
            log.info(
                "removed %d drop counter(s) of %d expired pod namespace(s), %d fast-path slot(s) retired",
                len(stale),
                len(gone),
                retired,
            )
        return len(stale)

    def stop(self) -> None:
        self._stop.set()

    def reload(self) -> None:
        """Re-read the config file; apply filter and sampling live, keep the old config if invalid."""
        from exporter.paths.kernel_config import PathSettings
        from exporter.paths.windows import WindowSettings

        if self.config_path is None:
            log.info("SIGHUP: no config file to reload (running with built-in defaults)")
            return
        try:
            new = load_config(self.config_path)
            if new.sampling.continuous != self.cfg.sampling.continuous:
                # Windows or not decides which hooks stay attached: that is the start's to set up.
                log.warning("reload: sampling.continuous takes effect at the next restart")
                new = Config(
                    **{
                        **new.__dict__,
                        "sampling": dataclasses.replace(new.sampling, continuous=self.cfg.sampling.continuous),
                    }
                )
            if (new.sampling.one_in > 0) != (self.cfg.sampling.one_in > 0):
                # Whether the path hops are loaded at all was decided at start.
                log.warning("reload: turning sampling.one_in from or to 0 takes effect at the next restart")
            assert self.control is not None and self.control.settings is not None
            self.control.apply(PathSettings.from_config(new, enabled=self.control.settings.enabled))
        except PktpathError as exc:
            log.error("reload failed, keeping the running config: %s", exc)
            return
        for section in ("metrics", "drops", "probes", "traces", "logging"):
            if getattr(new, section) != getattr(self.cfg, section):
                log.warning("reload: changes to %s: take effect at the next restart", section)
        if self.windows is not None:
            self.windows.update(WindowSettings.from_config(new))
        self.cfg = Config(**{**self.cfg.__dict__, "filter": new.filter, "sampling": new.sampling})
        if self.own is not None:  # addresses of names may have changed since
            self.own.apply(self._own_endpoints(self.cfg))
        log.info("reloaded %s: filter and sampling applied", self.config_path)

    def _own_endpoints(self, cfg: Config) -> list[own_traffic.Endpoint]:
        from exporter.paths import own_traffic
        from exporter.traces.choice import endpoint_address

        reads_pod_api = self.pods is not None and isinstance(self.pods.source, ApiPodSource)
        return own_traffic.endpoints_for(
            cfg.metrics.host, self.own_port, endpoint_address(cfg.traces, os.environ), os.environ, reads_pod_api
        )

    def _install_signals(self) -> None:
        def on_stop(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s", signal.Signals(signum).name)
            self._stop.set()

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            self._reload.set()  # applied on the main loop, not inside the handler

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def _paths_summary(self) -> str:
        s = self.cfg.sampling
        if not s.one_in:
            return f"on for drops only (1 in {s.drop_one_in} captured; one_in is 0)"
        if s.continuous:
            return f"on, continuously 1 in {s.one_in}"
        return (
            f"on, in a {s.window_seconds} s window every {s.window_period_seconds} s, "
            f"1 in {s.one_in}{' or more (adaptive)' if s.adaptive else ''}"
        )

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
        drops, stats, tracked, verdicts = (
            kernel.drop_counters(),
            kernel.stats(),
            kernel.tracked(),
            kernel.verdict_counters(),
        )

        def read() -> KernelReadings:
            return KernelReadings(
                drops=drops.read(),
                stats=stats.read(),
                tracked_live=tracked.live(),
                tracked_reaped=tracked.reaped,
                verdicts=verdicts.read(),
            )

        reasons = kernel.drop_reasons()
        registry = CollectorRegistry()
        path_metrics: PathMetrics | None = None
        tracing = self.tracing
        if self.control is not None and self.control.settings is not None and self.control.settings.enabled:
            if tracing is not None:

                def finished(path: Path) -> None:  # the pipeline thread, per finished path
                    assert path_metrics is not None
                    path_metrics.observe(path, tracing.span_builder.emit(path))
            else:
                # No spans leave the host, but the metrics are the same: the exemplar carries the
                # trace id the packet would have (and has, on a node that does export).
                from exporter.traces.ids import trace_id_hex

                def finished(path: Path) -> None:
                    assert path_metrics is not None
                    path_metrics.observe(path, trace_id_hex(path))

            pipeline = build_pipeline(kernel, reasons, [finished])
            # dict() copies in one C call under the GIL: the scrape thread never iterates the
            # Counter the pipeline thread is adding to.
            path_metrics = PathMetrics(evicted=lambda: dict(pipeline.assembler.evicted))
            registry.register(path_metrics)
            self.pipeline = pipeline
            pipeline.start()

        windows = self.windows

        def weights() -> SamplingWeights | None:
            s = self.control.settings if self.control else None
            if not (s and s.enabled):
                return None
            return SamplingWeights(windows.weight() if windows else s.one_in, s.drop_one_in)

        if windows is not None:
            from exporter.metrics.windows import WindowMetrics

            registry.register(WindowMetrics(windows.counters))

        registry.register(
            PktpathCollector(
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
            )
        )
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes
        server = MetricsServer(listener, registry, ready=lambda: bool(kernel.report.attached))
        server.start()
        return server
