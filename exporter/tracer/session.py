"""One tracing session for `pktpath shell` and `pktpath trace`: the agent's engine, filter,
tracker and assembler, driven by the original linux-packet-tracer's knobs.

A trace follows every packet that matches src/dst (1-in-1 sampling, decided in
the kernel at the first hop) until max_pkt packets were seen or max_duration
seconds passed, whichever comes first.  The BPF programs are loaded once, at the
first start, and stay attached until close(); between traces the kernel stops
starting new paths (path_config.enabled = 0), which costs nothing per packet.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from exporter.decoders.drop_reasons import DropReasons
from exporter.decoders.events import EventDecoder
from exporter.decoders.netfilter import RouteResults, returns_drop_reason
from exporter.decoders.symbols import KernelSymbols
from exporter.errors import KernelError
from exporter.loader import libbpf
from exporter.loader.engine import AttachReport, Engine, EngineOptions
from exporter.loader.host import Host
from exporter.paths.kernel_config import PathControl, PathSettings
from exporter.paths.model import HopEvent, Outcome, Path
from exporter.paths.pipeline import PathPipeline
from exporter.paths.tracking import TrackedReaper

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_PKT_RANGE = (1, 2048)
MAX_DURATION_RANGE = (1, 60)
# A followed packet with no terminal hop (e.g. UDP delivered to a reader) is
# complete when nothing more happened to it for this long.
IDLE_NS = 500_000_000
# After max_pkt packets started, their remaining hops still arrive: give them this long.
DRAIN_SECONDS = 0.6


@dataclass
class TraceParams:
    src: Network | None = None  # None: any (shown as 0.0.0.0/0, as the original did)
    dst: Network | None = None
    max_pkt: int = 512
    max_duration: int = 5
    debug: str = "info"


@dataclass
class TraceResult:
    paths: list[Path] = field(default_factory=list)
    ended_by: str = ""  # "max_pkt", "max_duration", "stopped"
    started_at: float = 0.0
    ended_at: float = 0.0

    def drops_by_reason(self) -> Counter[str]:
        return Counter(p.drop_reason or "UNKNOWN" for p in self.paths if p.outcome is Outcome.DROPPED)


class TraceSession:
    def __init__(self, host: Host | None = None, object_path: str | None = None, probe_mode: str = "auto") -> None:
        self.params = TraceParams()
        self.probe_mode = probe_mode
        self.host = host or Host()
        self._object_path = object_path
        self._engine: Engine | None = None
        self._control: PathControl | None = None
        self._decoder: EventDecoder | None = None
        self.report: AttachReport | None = None
        self.symbols = KernelSymbols()
        self.route_label: Callable[[int, int], str] | None = None
        self.result = TraceResult()
        self._lock = threading.Lock()
        self._pipeline: PathPipeline | None = None
        self._supervisor: threading.Thread | None = None
        self._stop_requested = threading.Event()
        self._ended = threading.Event()
        self._ended.set()  # no trace running
        self._started_count = 0

    # -- lifecycle ---------------------------------------------------------

    def load(self) -> AttachReport:
        """Load and attach every hop (first start only)."""
        if self._engine is None:
            engine = Engine(EngineOptions(mode=self.probe_mode), object_path=self._object_path, host=self.host)
            from exporter.decoders import abi

            self.report = engine.start(verify=abi.check_against)
            self._engine = engine
            self._control = PathControl(engine.map)
            # Not closed: DropReasons reads module BTF against it lazily, on a first subsystem reason.
            btf = libbpf.Btf.parse(self.host.vmlinux_btf)
            reasons = DropReasons.from_btf(btf)
            self._decoder = EventDecoder(reasons)
            self.route_label = RouteResults(returns_drop_reason(btf, "ip_route_input_noref"), reasons).label
        assert self.report is not None
        return self.report

    def close(self) -> None:
        self.stop("stopped")
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    @property
    def running(self) -> bool:
        return not self._ended.is_set()

    def modes(self) -> dict[str, str]:
        """Hop -> attach family it runs in ("not attached" when none)."""
        if self.report is None:
            return {}
        return {h.hop: h.attached or "not attached" for h in self.report.hops.values()}

    # -- settings ----------------------------------------------------------

    def settings(self, enabled: bool, new_paths: bool = True) -> PathSettings:
        """`new_paths` False: follow the packets already tracked to their end, start no more."""
        p = self.params
        return PathSettings(
            enabled=enabled, one_in=int(new_paths), drop_one_in=int(new_paths),
            # The kernel's budget bounds a flood; max_pkt is enforced exactly here.
            max_paths_per_second=max(p.max_pkt * 4, 1000), max_drop_paths_per_second=max(p.max_pkt * 4, 1000),
            src=(p.src,) if p.src is not None else (), dst=(p.dst,) if p.dst is not None else (),
        )

    def set_src(self, net: Network | None) -> None:
        """None: any source. Applied live to a running trace."""
        self.params = replace(self.params, src=net)
        self._apply_live()

    def set_dst(self, net: Network | None) -> None:
        self.params = replace(self.params, dst=net)
        self._apply_live()

    def _apply_live(self) -> None:
        if self.running and self._control is not None:
            self._control.apply(self.settings(enabled=True))

    # -- tracing -----------------------------------------------------------

    def start(self) -> None:
        if self.running:
            raise KernelError("a trace is already running (use wait, or restart)")
        self.load()
        assert self._engine is not None and self._control is not None and self._decoder is not None
        self.result = TraceResult(started_at=time.monotonic())
        self._started_count = 0
        self._stop_requested.clear()
        self._ended.clear()
        self._pipeline = PathPipeline(self._engine.map("events"), self._decoder, [self._collect],
                                      assembler_options={"idle_timeout_ns": IDLE_NS},
                                      on_first_hop=self._first_hop,
                                      reaper=TrackedReaper(self._engine.map("tracked"),
                                                           self._engine.map("path_gate")))
        self._pipeline.start()
        self._control.apply(self.settings(enabled=True))
        self._supervisor = threading.Thread(target=self._supervise, name="pktpath-trace", daemon=True)
        self._supervisor.start()

    def _first_hop(self, _ev: HopEvent) -> None:
        # Pipeline thread.  Stop *new* paths in the kernel the moment max_pkt have started;
        # the packets already followed keep reporting their hops until the drain ends.
        self._started_count += 1
        if self._started_count == self.params.max_pkt and self._control is not None:
            self._control.apply(self.settings(enabled=True, new_paths=False))
            self._stop_requested.set()

    def _collect(self, path: Path) -> None:
        with self._lock:
            if len(self.result.paths) < self.params.max_pkt:
                self.result.paths.append(path)

    def _supervise(self) -> None:
        deadline = self.result.started_at + self.params.max_duration
        reason = "max_duration"
        if self._stop_requested.wait(max(0.0, deadline - time.monotonic())):
            reason = "max_pkt" if self._started_count >= self.params.max_pkt else "stopped"
            if reason == "max_pkt":
                time.sleep(DRAIN_SECONDS)
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        if self._control is not None:
            self._control.apply(self.settings(enabled=False))
        if self._pipeline is not None:
            self._pipeline.stop()  # drains the ring and flushes every open path
            self._pipeline = None
        with self._lock:
            self.result.paths.sort(key=lambda p: p.start_ns)
            self.result.ended_by = reason
            self.result.ended_at = time.monotonic()
        self._ended.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the trace ends; False on timeout.  Waits in short slices so
        Ctrl-C (KeyboardInterrupt) reaches the caller promptly."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ended.wait(0.1):
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def stop(self, _reason: str = "stopped") -> None:
        if self.running:
            self._stop_requested.set()
            if self._supervisor is not None:
                self._supervisor.join()

    def restart(self) -> None:
        self.stop()
        self.start()
