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
from typing import Protocol

from exporter.decoders.drop_reasons import DropReasons
from exporter.decoders.route_results import RouteResults
from exporter.decoders.symbols import KernelSymbols
from exporter.errors import KernelError
from exporter.kernel.api import ProbeState
from exporter.model.hops import ShellContext
from exporter.model.path import HopEvent, Outcome, Path
from exporter.paths.kernel_config import PathControl, PathSettings
from exporter.paths.pipeline import PathPipeline, PathSource, build_pipeline

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


class TraceKernel(PathSource, Protocol):
    """What a trace needs of the kernel side (exporter/kernel/facade.py KernelSide.open)."""

    def path_control(self) -> PathControl: ...

    def drop_reasons(self) -> DropReasons: ...

    def route_results(self, reasons: DropReasons) -> RouteResults: ...

    def probes(self) -> list[ProbeState]: ...

    def close(self) -> None: ...


class TraceSession:
    def __init__(self, open_kernel: Callable[[], TraceKernel]) -> None:
        """`open_kernel` loads and attaches every hop; it is called at the first start."""
        self.params = TraceParams()
        self._open_kernel = open_kernel
        self._kernel: TraceKernel | None = None
        self._control: PathControl | None = None
        self._reasons: DropReasons | None = None
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

    def load(self) -> None:
        """Load and attach every hop (first start only)."""
        if self._kernel is None:
            self._kernel = self._open_kernel()
            self._control = self._kernel.path_control()
            self._reasons = self._kernel.drop_reasons()
            self.route_label = self._kernel.route_results(self._reasons).label

    def close(self) -> None:
        self.stop("stopped")
        if self._kernel is not None:
            self._kernel.close()
            self._kernel = None

    def shell_context(self) -> ShellContext:
        """What the shell's hop lines need from this host: kernel symbols, route result names."""
        return ShellContext(symbol=self.symbols.lookup, route_label=self.route_label)

    @property
    def running(self) -> bool:
        return not self._ended.is_set()

    def modes(self) -> dict[str, str]:
        """Loader hop -> attach family it runs in ("not attached" when none); {} before the first start."""
        if self._kernel is None:
            return {}
        modes: dict[str, str] = {}
        for probe in self._kernel.probes():
            if probe.attached or probe.probe not in modes:
                modes[probe.probe] = probe.family if probe.attached else "not attached"
        return modes

    # -- settings ----------------------------------------------------------

    def settings(self, enabled: bool, new_paths: bool = True) -> PathSettings:
        """`new_paths` False: follow the packets already tracked to their end, start no more."""
        p = self.params
        return PathSettings(
            enabled=enabled,
            one_in=int(new_paths),
            drop_one_in=int(new_paths),
            # The kernel's budget bounds a flood; max_pkt is enforced exactly here.
            max_paths_per_second=max(p.max_pkt * 4, 1000),
            max_drop_paths_per_second=max(p.max_pkt * 4, 1000),
            src=(p.src,) if p.src is not None else (),
            dst=(p.dst,) if p.dst is not None else (),
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
        assert self._kernel is not None and self._control is not None and self._reasons is not None
        self.result = TraceResult(started_at=time.monotonic())
        self._started_count = 0
        self._stop_requested.clear()
        self._ended.clear()
        self._pipeline = build_pipeline(
            self._kernel,
            self._reasons,
            [self._collect],
            assembler_options={"idle_timeout_ns": IDLE_NS},
            on_first_hop=self._first_hop,
        )
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
