"""The kernel side over the loader's engine: typed handles for the agent's stages.

The one place (besides exporter/loader) that touches libbpf, and the one place that knows the BPF
object's map names.  Everything it hands out is a stage of its own (a PathControl, a
DropCounterReader ...) built on the interface in exporter/kernel/api.py, so the stages themselves
import no libbpf and are tested with in-memory fakes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable

from exporter.decoders.counters import DropCounterReader, KernelStats, VerdictReader
from exporter.decoders.drop_reasons import DropReasons, Enum
from exporter.decoders.route_results import RouteResults, returns_drop_reason
from exporter.kernel.api import EventConsumer, EventRing, ProbeState
from exporter.loader import libbpf
from exporter.loader.engine import AttachReport, Engine, EngineOptions
from exporter.loader.host import Host
from exporter.loader.probes import TAIL_CALL
from exporter.loader.window_links import FAMILY as WINDOW_FAMILY
from exporter.model.hops import PATH_ONLY_PROGRAMS
from exporter.paths.kernel_config import FilterMaps, PathControl
from exporter.paths.own_traffic import OwnTraffic
from exporter.paths.tracking import TrackedReaper
from exporter.paths.windows import KernelWindow

log = logging.getLogger(__name__)


class KernelSide:
    """What a loaded, attached Engine offers the rest of the agent."""

    def __init__(self, engine: Engine, btf: libbpf.Btf | None = None, module_btf_dir: str = "/sys/kernel/btf") -> None:
        """`btf`: the running kernel's BTF, for drop reason names and route-result conventions; it
        stays the caller's (parsed once and shared with the engine's target checks)."""
        self.engine = engine
        self._btf = btf
        self._module_btf_dir = module_btf_dir
        self._drops: DropCounterReader | None = None
        self._control: PathControl | None = None
        self._tracked: TrackedReaper | None = None
        # Attach and detach come from two threads (the agent's loop: late module hooks; the
        # window controller): the engine is not thread-safe.
        self._attach_lock = threading.Lock()

    @classmethod
    def open(cls, options: EngineOptions, object_path: str | None = None, host: Host | None = None) -> KernelSide:
        """An engine loaded and attached with `options`, its ABI checked (what `pktpath shell` and
        `pktpath trace` run on: every hop, in the requested probe mode)."""
        from exporter.model import abi

        engine = Engine(options, object_path=object_path, host=host)
        engine.start(verify=abi.check_against)
        return cls(engine)

    def close(self) -> None:
        """Detach everything and free the programs and maps."""
        self.engine.close()

    @property
    def report(self) -> AttachReport:
        assert self.engine.report is not None, "the engine is started before a KernelSide is made"
        return self.engine.report

    def probes(self) -> list[ProbeState]:
        """Every attach candidate of every loader hop, and whether it is the one attached."""
        hops = [
            ProbeState(status.hop, family, status.attached == family)
            for status in self.report.hops.values()
            for family in status.families
        ]
        # A hop the sampling windows run in their kprobe.multi links has that way as a candidate too.
        hops += [
            ProbeState(hop, WINDOW_FAMILY, self.report.hops[hop].attached == WINDOW_FAMILY)
            for hop in self.engine.window_hops()
        ]
        # A continuation (drop capture) has no attach point of its own: it is "attached" once it
        # is in the program array its caller tail-calls through.
        return hops + [ProbeState(c.name, TAIL_CALL, c.installed) for c in self.report.continuations.values()]

    # -- counters (read at scrape time) ------------------------------------

    def drop_counters(self) -> DropCounterReader:
        if self._drops is None:
            self._drops = DropCounterReader(self.engine.map("drop_counts"), self.engine.map("drop_slots"))
        return self._drops

    def stats(self) -> KernelStats:
        return KernelStats(self.engine.map("stats"))

    def verdict_counters(self) -> VerdictReader:
        return VerdictReader(
            self.engine.map("nf_verdicts"), self.engine.map("rp_filter_checks"), self.engine.map("route_lookups")
        )

    # -- packet paths ------------------------------------------------------

    def path_control(self) -> PathControl:
        """One per kernel side: it remembers the settings in force."""
        if self._control is None:
            self._control = PathControl(filter_maps(self.engine.map))
        return self._control

    def own_traffic(self, netns: int) -> OwnTraffic:
        return OwnTraffic(self.engine.map("own_endpoints"), netns)

    def tracked(self) -> TrackedReaper:
        if self._tracked is None:
            self._tracked = TrackedReaper(self.engine.map("tracked"), self.engine.map("path_gate"))
        return self._tracked

    def attach_late(self) -> list[str]:
        """Hops whose module appeared since start, attached now (Engine.attach_late)."""
        with self._attach_lock:
            return self.engine.attach_late()

    def windows(self) -> KernelWindow:
        """The kernel half of sampling windows: the path hooks as one switch, and `path_window`."""
        return KernelWindow(
            PathHooks(self.engine, self._attach_lock), self.engine.map("path_window"), self.stats(), self.tracked()
        )

    def event_ring(self, consume: EventConsumer) -> EventRing:
        return libbpf.RingBuffer(self.engine.map("events"), consume)

    # -- names the running kernel decides ---------------------------------

    def drop_reasons(self) -> DropReasons:
        # Module BTF is read later, when a subsystem reason first shows up: by then the agent may
        # have released the kernel BTF (release_btf), so its base is asked for again, not kept.
        return drop_reasons_from_btf(self._require_btf(), self._module_btf_dir, base=self._require_btf)

    def route_results(self, reasons: DropReasons) -> RouteResults:
        return RouteResults(returns_drop_reason(self._require_btf(), "ip_route_input_noref"), reasons)

    def release_btf(self) -> None:
        """Stop using the caller's kernel BTF (the engine too), so that the caller may free it after
        start-up; a later need (a late module attach, a subsystem drop reason) parses it again."""
        self.engine.release_kernel_btf()
        self._btf = None

    def _require_btf(self) -> libbpf.Btf:
        if self._btf is None:
            self._btf = libbpf.Btf.parse(self.engine.host.vmlinux_btf)
        return self._btf


class PathHooks:
    """Every path-only hop (exporter/model/hops.py: PATH_ONLY_PROGRAMS) as one switch; the
    always-on programs (drops, verdict counters) are never touched.

    On kernels that cannot attach an fentry program again once it is detached (before 5.13:
    Engine.fentry_reattaches), the path hops attached as fentry stay attached: windows switch the
    others, and the kernel's window (path_window) still decides which packets are followed."""

    def __init__(self, engine: Engine, lock: threading.Lock) -> None:
        self._engine = engine
        self._lock = lock
        self._switched: list[str] | None = None
        self._grouped = False

    def switched(self) -> list[str]:
        """The path hops windows attach and detach (found at the first detach)."""
        if self._switched is None:
            hops = self._engine.report.hops if self._engine.report else {}
            fentry = [h for h in PATH_ONLY_PROGRAMS if h in hops and hops[h].attached == "fentry"]
            stay = set(fentry) if fentry and not self._engine.fentry_reattaches() else set()
            if stay:
                log.warning(
                    "this kernel cannot attach an fentry program again once detached (before 5.13): "
                    "%d path hook(s) stay attached between sampling windows: %s",
                    len(stay),
                    ", ".join(sorted(stay)),
                )
            self._switched = [h for h in PATH_ONLY_PROGRAMS if h not in stay]
        return self._switched

    def attach(self) -> tuple[int, list[str]]:
        with self._lock:
            timings = self._engine.attach_hops(self.switched())
        return sum(1 for t in timings if not t.error), [f"{t.hop}: {t.error}" for t in timings if t.error]

    def detach(self) -> int:
        # One thread per hop: the grace periods a function hook's detach waits for overlap where
        # the kernel allows (Engine.detach_hops; bench --only attach measures both ways).  After
        # the first detach, the function hooks switch as kprobe.multi links where the kernel takes
        # them (Engine.group_window_hooks): their next detaches wait for one grace period, not one
        # per function.
        with self._lock:
            detached = len(self._engine.detach_hops(self.switched(), parallel=True))
            if not self._grouped:
                self._grouped = True
                self._engine.group_window_hooks(self.switched())
            return detached

    def attach_timed_s(self) -> float | None:
        return self._engine.window_attach_s


def drop_reasons_from_btf(
    btf: libbpf.Btf, module_btf_dir: str = "/sys/kernel/btf", base: Callable[[], libbpf.Btf] | None = None
) -> DropReasons:
    """Drop reason names from the kernel's BTF; subsystem reasons (openvswitch, mac80211) from
    their module's BTF, read on demand, the first time a subsystem reason is seen.  `base`: the
    kernel BTF the modules' split BTF builds on, asked for then (default: `btf`, kept open).  Before
    5.17 (no enum) drops are named by their call site instead (decoders/drop_locations.py)."""
    base_count = btf.type_count()

    def module_enums() -> Iterable[Enum]:
        kernel_btf = base() if base is not None else btf
        for mod in sorted(os.listdir(module_btf_dir)):
            if mod == "vmlinux":
                continue
            try:
                with libbpf.Btf.parse(os.path.join(module_btf_dir, mod), base=kernel_btf) as mbtf:
                    # Split BTF ids start after the base's; subsystem reasons live in enums
                    # named *_drop_reason (ovs_drop_reason, mac80211_drop_reason).
                    yield from (m for name, m in mbtf.iter_enums(base_count) if name.endswith("drop_reason"))
            except libbpf.LibbpfError as exc:
                log.debug("module BTF %s unreadable: %s", mod, exc)

    reasons = DropReasons(btf.enum("skb_drop_reason"), btf.enum("skb_drop_reason_subsys"), module_enums)
    if reasons.locations is not None:
        reasons.locations.preload()  # kallsyms: seconds on a slow machine, before the first drop needs it
    return reasons


def filter_maps(map_of: Callable[[str], libbpf.Map]) -> FilterMaps:
    """The maps PathControl writes, in any object built from exporter/bpf's headers (the agent's, or
    the per-hop cost bench's)."""
    return FilterMaps(
        config=map_of("path_config"),
        generation=map_of("path_generation"),
        src=map_of("filter_src"),
        dst=map_of("filter_dst"),
        interfaces=map_of("filter_ifaces"),
    )
