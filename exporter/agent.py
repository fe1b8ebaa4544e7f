"""`pktpath run`: attach the probes, serve metrics, follow sampled packets, detach everything on exit.

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
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping
from types import FrameType
from typing import TYPE_CHECKING

from exporter import __version__
from exporter.config import Config, load_config
from exporter.decoders.counters import DropCount, DropSlots
from exporter.errors import ConfigError, KernelError, PktpathError
from exporter.k8s.pods import ApiPodSource, FilePodSource, PodResolver, PodSource
from exporter.loader import libbpf
from exporter.loader.engine import AttachReport, Engine, EngineOptions
from exporter.loader.host import Host
from exporter.metrics.listener import bind_listener
from exporter.paths import own_traffic
from exporter.paths.kernel_config import PathControl, PathSettings
from exporter.paths.own_traffic import Endpoint, OwnTraffic, netns_inode

if TYPE_CHECKING:
    from exporter.metrics.server import MetricsServer
    from exporter.paths.pipeline import PathPipeline
    from exporter.traces.export import Tracing

log = logging.getLogger("pktpath")

DROP_HOP = "kfree_skb"
# Hops that exist only to follow packets: not attached when nothing consumes paths.
# (Function hooks that also count verdicts -- nft_do_chain, ipt_do_table, fib_validate_source,
# ip_route_input_noref -- are not among them: their counters are always on.)
PATH_HOPS = ("netif_receive_skb", "net_dev_queue", "net_dev_xmit", "fib_table_lookup", "fib6_table_lookup",
             "skb_copy_datagram_iovec", "sk_data_ready", "consume_skb", "ip_rcv", "ipv6_rcv", "ip_forward",
             "ip6_forward", "ip_local_deliver", "ip_output", "ip6_output", "nf_hook_slow", "ip_rcv_finish",
             "ip6_rcv_finish", "ip_forward_finish", "ip_queue_xmit", "ip6_xmit", "ip_finish_output",
             "ip6_finish_output")


def engine_options(cfg: Config, paths: bool) -> EngineOptions:
    exclude: dict[str, str] = {}
    if not paths:
        exclude.update(dict.fromkeys(PATH_HOPS, "packet paths are off (no traces exporter)"))
        if not cfg.drops.enabled:
            exclude[DROP_HOP] = "drops.enabled is false and packet paths are off"
    exclude.update(dict.fromkeys(cfg.probes.exclude, "probes.exclude"))
    return EngineOptions(mode=cfg.probes.mode, exclude=exclude, map_sizes={
        "drop_counts": cfg.drops.max_series,
        "tracked": cfg.sampling.max_tracked,
        "events": cfg.sampling.ring_buffer_kb * 1024,
    }, per_cpu_block_maps=("drop_slots",))


def path_settings(cfg: Config, enabled: bool) -> PathSettings:
    f, s = cfg.filter, cfg.sampling
    return PathSettings(enabled=enabled, one_in=s.one_in, drop_one_in=s.drop_one_in,
                        max_paths_per_second=s.max_paths_per_second,
                        max_drop_paths_per_second=s.max_drop_paths_per_second, src=f.src, dst=f.dst,
                        protocols=f.protocols, ports=f.ports, interfaces=f.interfaces)


def pod_resolver(cfg: Config, host: Host, env: Mapping[str, str]) -> PodResolver | None:
    """The netns -> pod map when kubernetes.pod_labels asks for it; ConfigError if it cannot work."""
    k = cfg.kubernetes
    if not k.pod_labels:
        return None
    source: PodSource
    if k.pods_file:
        source = FilePodSource(k.pods_file)
    elif env.get("KUBERNETES_SERVICE_HOST"):
        node = k.node_name or env.get("NODE_NAME")
        if not node:
            raise ConfigError("kubernetes.node_name: not set, and neither is NODE_NAME (set it from the downward "
                              "API: fieldRef spec.nodeName)")
        source = ApiPodSource(node)
    else:
        raise ConfigError("kubernetes.pod_labels: needs kubernetes.pods_file, or the in-cluster API "
                          "(KUBERNETES_SERVICE_HOST is not set: not running in a pod?)")
    return PodResolver(source, proc_root=host.proc_root, refresh_seconds=k.refresh_seconds, max_pods=k.max_pods,
                       expire_seconds=k.expire_seconds)


class ModuleWatch:
    """Notices kernel modules loaded since start-up (each has its BTF under
    /sys/kernel/btf, and, before 5.11, where modules have no BTF, only its
    /sys/module entry), for hops that could not attach before their module was
    there.  Two directory listings every few seconds, and only while a hop is missing."""

    BTF_DIR = "/sys/kernel/btf"
    MODULE_DIR = "/sys/module"
    EVERY_S = 5.0

    def __init__(self, report: AttachReport) -> None:
        self._report = report
        self._seen = self._modules()
        self._next = time.monotonic() + self.EVERY_S

    def _modules(self) -> set[str]:
        seen: set[str] = set()
        for where in (self.BTF_DIR, self.MODULE_DIR):
            with contextlib.suppress(OSError):
                seen.update(f"{where}/{name}" for name in os.listdir(where))
        return seen

    def changed(self) -> bool:
        now = time.monotonic()
        if now < self._next or not self._report.missing:
            return False
        self._next = now + self.EVERY_S
        current = self._modules()
        new = current - self._seen
        self._seen = current
        return bool(new)


def forget_counters(drop_map: libbpf.Map, slots: DropSlots, counts: list[DropCount]) -> None:
    """Delete kernel counters (a deleted pod's namespace): its series end instead of living forever."""
    for c in counts:
        drop_map.delete(c.key)
    retired = slots.retire({c.key for c in counts})
    log.info("removed %d drop counter(s) of %d expired pod namespace(s), %d fast-path slot(s) retired",
             len(counts), len({c.netns for c in counts}), retired)


def start_engine(cfg: Config, host: Host, paths: bool,
                 kernel_btf: libbpf.Btf | None = None) -> tuple[Engine, AttachReport]:
    from exporter.decoders import abi

    engine = Engine(engine_options(cfg, paths), host=host, kernel_btf=kernel_btf)
    report = engine.start(verify=abi.check_against)
    if cfg.probes.strict and report.missing:
        engine.close()
        raise KernelError(f"probes.strict: hop(s) not attached: {', '.join(report.missing)}")
    return engine, report


class Agent:
    def __init__(self, cfg: Config, config_path: str | None = None, host: Host | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.host = host or Host()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.engine: Engine | None = None
        self.control: PathControl | None = None
        self.pipeline: PathPipeline | None = None
        self.tracing: Tracing | None = None
        self.pods: PodResolver | None = None
        self.pods_source: PodSource | None = None
        self.own: OwnTraffic | None = None
        self.own_port = 0

    def run(self, started_at: float | None = None) -> int:
        started_at = started_at or time.monotonic()
        # Decide before loading whether anything consumes paths, so the path hops
        # are not even attached when traces are off; the SDK itself (~60 ms to
        # import) is set up after the probes are attached.
        from exporter.traces.choice import traces_enabled

        paths = traces_enabled(self.cfg.traces, os.environ)
        self.pods = pod_resolver(self.cfg, self.host, os.environ)
        # Bound before anything is loaded: a busy port is one line and nothing ever attached.
        self.pods_source = self.pods.source if self.pods else None
        listener = bind_listener(self.cfg.metrics.host, self.cfg.metrics.port, self.cfg.metrics.listen)
        try:
            # Parsed once (10 ms, several MB): the engine checks hop targets in it, the
            # collector reads drop reasons from it.  Without BTF the engine says why.
            btf = libbpf.Btf.parse(self.host.vmlinux_btf) if self.host.has_btf() else None
            self.engine, report = start_engine(self.cfg, self.host, paths, btf)
        except BaseException:
            listener.close()
            raise
        server: MetricsServer | None = None
        try:
            if report.first_attach_monotonic is not None:
                log.info("first probe attached %.1f ms after start",
                         (report.first_attach_monotonic - started_at) * 1000)
            if paths:
                self.tracing = self._build_tracing()
            # Before any path can start: the agent's own connections are never followed.
            self.own = OwnTraffic(self.engine.map, netns_inode(self.host.proc_root))
            self.own.apply(self._own_endpoints(self.cfg, listener.getsockname()[1]))
            self.control = PathControl(self.engine.map)
            self.control.apply(path_settings(self.cfg, enabled=paths))
            assert btf is not None  # the engine started, so the kernel has BTF
            server = self._serve(listener, report, btf)
            self._install_signals()
            log.info("serving metrics on http://%s:%d/metrics (%d of %d hops attached; packet paths %s)",
                     self.cfg.metrics.host, server.port, len(report.attached), len(report.hops),
                     f"on, 1 in {self.cfg.sampling.one_in}" if paths else "off")
            modules = ModuleWatch(report)
            while not self._stop.is_set():
                self._stop.wait(0.5)
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
                if modules.changed():
                    for hop in self.engine.attach_late():
                        log.info("hop %s attached late: a module it lives in was loaded", hop)
            log.info("stopping")
        finally:
            if server is not None:
                server.stop()
            else:
                listener.close()
            if self.pipeline is not None:
                self.pipeline.stop()
            self.engine.close()
            log.info("all probes detached")
            if self.tracing is not None:
                self.tracing.shutdown(timeout_s=5.0)
        return 0

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
            self.control.apply(path_settings(new, enabled=self.control.settings.enabled))
        except PktpathError as exc:
            log.error("reload failed, keeping the running config: %s", exc)
            return
        for section in ("metrics", "drops", "probes", "traces", "logging"):
            if getattr(new, section) != getattr(self.cfg, section):
                log.warning("reload: changes to %s: take effect at the next restart", section)
        self.cfg = Config(**{**self.cfg.__dict__, "filter": new.filter, "sampling": new.sampling})
        if self.own is not None:  # addresses of names may have changed since
            self.own.apply(self._own_endpoints(self.cfg, self.own_port))
        log.info("reloaded %s: filter and sampling applied", self.config_path)

    def _own_endpoints(self, cfg: Config, metrics_port: int) -> list[Endpoint]:
        """Where the agent's own connections end: never followed (exporter/paths/own_traffic.py)."""
        from exporter.traces.choice import endpoint_address

        self.own_port = metrics_port
        endpoints = own_traffic.listener(cfg.metrics.host, metrics_port)
        collector = endpoint_address(cfg.traces, os.environ)
        if collector is not None:
            endpoints += own_traffic.resolve(*collector)
        if isinstance(self.pods_source, ApiPodSource):
            endpoints += own_traffic.kubernetes_api(os.environ)
        return endpoints

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

    def _serve(self, listener: socket.socket, report: AttachReport, btf: libbpf.Btf) -> MetricsServer:
        # Deferred imports: prometheus_client costs ~40 ms to import, after attach.
        from prometheus_client import CollectorRegistry, ProcessCollector

        from exporter.decoders.counters import read_drop_counts, read_stats, read_verdicts
        from exporter.decoders.drop_reasons import DropReasons
        from exporter.decoders.events import EventDecoder
        from exporter.decoders.interfaces import InterfaceResolver
        from exporter.decoders.netfilter import RouteResults, returns_drop_reason
        from exporter.metrics.collector import BuildInfo, KernelReadings, PktpathCollector, SamplingWeights
        from exporter.metrics.paths import PathMetrics
        from exporter.metrics.server import MetricsServer
        from exporter.paths.model import Path
        from exporter.paths.pipeline import PathPipeline
        from exporter.paths.tracking import TrackedReaper

        assert self.engine is not None
        engine = self.engine
        drop_map, stats_map, tracked_map = engine.map("drop_counts"), engine.map("stats"), engine.map("tracked")
        drop_slots = DropSlots(engine.map("drop_slots"))
        reaper = TrackedReaper(tracked_map, engine.map("path_gate"))

        verdict_maps = (engine.map("nf_verdicts"), engine.map("rp_filter_checks"), engine.map("route_lookups"))

        def read() -> KernelReadings:
            return KernelReadings(drops=read_drop_counts(drop_map, drop_slots.read()),
                                  stats=read_stats(stats_map),
                                  tracked_live=reaper.live(), tracked_reaped=reaper.reaped,
                                  verdicts=read_verdicts(*verdict_maps))

        reasons = DropReasons.from_btf(btf)
        registry = CollectorRegistry()
        path_metrics: PathMetrics | None = None
        tracing = self.tracing
        if tracing is not None:
            def to_spans(path: Path) -> None:  # the pipeline thread, per finished path
                assert path_metrics is not None
                path_metrics.observe(path, tracing.span_builder.emit(path))

            pipeline = PathPipeline(engine.map("events"), EventDecoder(reasons), [to_spans], reaper=reaper)
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
            hops=report.hops,
            build=BuildInfo(__version__, self.host.kernel_release(), f"libbpf-core/{libbpf.version()}"),
            exemplar=path_metrics.exemplar if path_metrics else (lambda _labels: None),
            sampling=weights,
            spans=(lambda: (tracing.exported, dict(tracing.dropped))) if tracing else None,
            pods=self.pods,
            route_results=RouteResults(returns_drop_reason(btf, "ip_route_input_noref"), reasons),
            forget=lambda counts: forget_counters(drop_map, drop_slots, counts),
        ))
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes
        server = MetricsServer(listener, registry, ready=lambda: bool(report.attached))
        server.start()
        return server
