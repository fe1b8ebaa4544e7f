"""Open, size, load and attach pktpath's BPF object; detach everything on close.

Loading is all-or-nothing in libbpf: one program the kernel refuses fails the
whole bpf_object__load.  So the engine loads, reads from libbpf's log which
program was refused, turns that program off and tries again.  A refusal with
EPERM means the kernel refuses the whole attach family (fentry under lockdown),
so every program of that family is turned off at once: on a locked-down kernel
(lockdown=confidentiality refuses fentry and kprobes) that is one retry, not one per hop.  Programs that load are
then attached hop by hop, best family first (see probes.py).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from exporter.config import Config
from exporter.errors import KernelError
from exporter.loader import libbpf
from exporter.loader.host import Host
from exporter.loader.probes import (
    FUNCTION_FAMILIES,
    HopStatus,
    ProgramSpec,
    allowed_families,
    group_hops,
    parse_program,
)
from exporter.loader.window_links import FAMILY as WINDOW_FAMILY
from exporter.loader.window_links import EdgeTiming, WindowLinks
from exporter.model import hops

log = logging.getLogger(__name__)

# libbpf names the refused program in lines such as
#   libbpf: prog 'x__fentry': BPF program load failed: Permission denied
#   libbpf: prog 'x__fentry': failed to find kernel BTF type ID of 'ip_rcv': -3
#   libbpf: prog 'x__kretprobe': relo #1: failed to relocate: -22   (CO-RE: e.g. a type found twice
#                                                                    in module BTFs, "ambiguity")
_REFUSED = re.compile(
    r"prog '([^']+)': (?:BPF program load failed|failed to load|failed to find kernel BTF"
    r"|relo #\d+: failed to relocate)"
)
_MAX_LOAD_ATTEMPTS = 32
# Hook targets that live in a module when not built in (the hop table's `modules`): checked
# before the load (Engine._missing_target).  A function missing here is still found by the load.
MODULE_OF = hops.MODULE_OF
# The module's types each hook reads.  Before 5.11 ("bpf: Load and verify kernel module BTFs") modules
# have no BTF: fentry cannot reach their functions, and a kprobe's CO-RE reads resolve only against
# the types vmlinux's BTF happens to hold (5.10 has struct xt_table, not struct nft_pktinfo).
MODULE_TYPES = {"nft_do_chain": ("nft_pktinfo", "nft_chain", "nft_table"), "ipt_do_table": ("xt_table",)}
_BY_CONFIG = ("excluded", "not allowed")  # how reasons that are the user's choice begin
# Helpers our programs call that are newer than the oldest kernel the test matrix proves (5.10), named
# in what `pktpath check` says when a kernel lacks one (include/uapi/linux/bpf.h: enum bpf_func_id).
NEWER_HELPERS = {174: ("bpf_get_attach_cookie", "5.15"), 184: ("bpf_get_func_ret", "5.17")}
# Verifier log lines that trace its walk rather than state its objection.
_VERIFIER_NOISE = re.compile(
    r"^(\d+: |mark_precise|from \d+ to|; |\(|func#|Live regs|processed |stack depth"
    r"|verification time|libbpf:|-- )"
)


def relocation_complaint(log_lines: list[str], prog: str) -> str:
    """libbpf's CO-RE explanation for `prog` ("relocation decision ambiguity: ..."), if any."""
    marker = f"prog '{prog}': "
    lines = [ln.split(marker, 1)[1].split(": ", 1)[-1] for ln in log_lines if f"{marker}relo #" in ln]
    return next((ln for ln in lines if "ambiguity" in ln or "failed" in ln), "")


def verifier_complaint(log_lines: list[str]) -> str:
    """The verifier's own sentence ("R1 invalid mem access ..."), found as the last
    line before its summary that is not part of the instruction trace."""
    end = next(
        (i for i, ln in enumerate(log_lines) if ln.startswith(("verification time", "processed "))), len(log_lines)
    )
    for line in reversed(log_lines[:end]):
        text = line.strip()
        if text and not _VERIFIER_NOISE.match(text):
            return text
    return ""


def _disable_partners(specs: dict[str, ProgramSpec], disabled: dict[str, str]) -> None:
    """A hop attaches all programs of a family or none (an fentry with its fexit): when one cannot
    load, its partners are not loaded either, which saves their verification (seconds under emulation)."""
    for name, spec in specs.items():
        if name in disabled:
            continue
        why = next(
            (
                disabled[o.name]
                for o in specs.values()
                if o.hop == spec.hop and o.family == spec.family and o.name in disabled
            ),
            None,
        )
        if why is not None:
            disabled[name] = why


def default_object_path() -> str:
    """The CO-RE object shipped inside the package (built by make / pip install)."""
    return str(resources.files("exporter.bpf").joinpath("pktpath.bpf.o"))


def shared_map(obj: libbpf.BpfObject, name: str) -> libbpf.Map:
    """The map of `obj` another object of ours shares as `name`.  libbpf names an internal map after
    its object and section (pktpath.bss, window.bss): those pair by section."""
    prefix, dot, section = name.partition(".")
    if dot and prefix:
        return next((m for m in obj.maps if m.name.endswith(dot + section)), None) or obj.map(name)
    return obj.map(name)


def sibling_object(object_path: str, name: str) -> str:
    """Another of our objects, built beside the main one (exporter/bpf/Makefile)."""
    return os.path.join(os.path.dirname(object_path), name)


def window_object_path(object_path: str) -> str:
    """The sampling windows' kprobe.multi programs (window.bpf.c), beside the main object."""
    return sibling_object(object_path, "window.bpf.o")


def features_object_path() -> str:
    """The object of one empty program per attach family, for `pktpath check`."""
    return str(resources.files("exporter.bpf").joinpath("features.bpf.o"))


# The always-on drop hop: counts every drop, whatever else is attached.
DROP_HOP = "kfree_skb"


def attach_pair(programs: list[libbpf.Program]) -> list[libbpf.Link]:
    """A hop's programs attached returns first (a kretprobe before its kprobe, an fexit before its
    fentry), their links in the programs' order, calls first, for detaching calls first: the order
    window_links.py keeps for kprobe.multi too.  Calls that cross a window's edge then mostly come
    as a return without its call's arguments, which the kretprobe reports nothing for (hooks.bpf.h:
    stash_pop3); only a call still in flight when its return comes off leaves its arguments behind,
    cleared by the next return below it.  Raises LibbpfError with nothing left attached."""
    links: list[libbpf.Link] = []
    try:
        for prog in reversed(programs):
            links.append(prog.attach())
    except libbpf.LibbpfError:
        for link in links:
            link.destroy()
        raise
    return links[::-1]


@dataclass
class EngineOptions:
    mode: str = "auto"  # probes.mode
    exclude: dict[str, str] = field(default_factory=dict)  # hop name -> why it is left out
    map_sizes: dict[str, int] = field(default_factory=dict)  # map name -> max_entries
    # Arrays indexed cpu * block + i (drop_slots: plain arrays so userspace can write
    # one CPU's entry), compiled with one block: grown to one per possible CPU.
    per_cpu_block_maps: tuple[str, ...] = ()

    @classmethod
    def for_config(cls, cfg: Config, paths: bool) -> EngineOptions:
        """The agent's engine: `paths` False (nothing is followed: sampling.one_in 0) leaves out every
        hop that only follows packets (the hop table's path-only programs), and the drop hop too when
        drops.enabled is false and no drop is captured either."""
        exclude: dict[str, str] = {}
        if not paths:
            exclude.update(dict.fromkeys(hops.PATH_ONLY_PROGRAMS, "no packet is followed (sampling.one_in is 0)"))
            if not cfg.drops.enabled and not cfg.sampling.drop_one_in:
                exclude[DROP_HOP] = "drops.enabled is false and no packet is followed or captured"
        exclude.update(dict.fromkeys(cfg.probes.exclude, "probes.exclude"))
        return cls(
            mode=cfg.probes.mode,
            exclude=exclude,
            map_sizes={
                "drop_counts": cfg.drops.max_series,
                "tracked": cfg.sampling.max_tracked,
                "events": cfg.sampling.ring_buffer_kb * 1024,
            },
            per_cpu_block_maps=("drop_slots",),
        )


@dataclass
class AttachReport:
    hops: dict[str, HopStatus]
    load_seconds: float = 0.0
    first_attach_monotonic: float | None = None
    # A program a hop's program tail-calls (CONTINUATIONS), by name: in its slot or why not.
    continuations: dict[str, ContinuationStatus] = field(default_factory=dict)

    @property
    def attached(self) -> list[str]:
        return [h.hop for h in self.hops.values() if h.attached]

    @property
    def missing(self) -> list[str]:
        return [h.hop for h in self.hops.values() if not h.attached]


@dataclass
class ContinuationStatus:
    """Whether a continuation is in its program array, where its caller's tail call reaches it."""

    name: str
    installed: bool = False
    problem: str = "not loaded yet (it loads after the drop program)"

    def as_dict(self) -> dict[str, Any]:
        return {"installed": self.installed, "problem": "" if self.installed else self.problem}


@dataclass
class HopTiming:
    """One hop attached or detached on demand (Engine.attach_hops / detach_hops)."""

    hop: str
    family: str
    links: int  # programs attached or detached (fentry + fexit of one function: 2)
    wall_s: float  # time.perf_counter() around this hop's libbpf calls
    cpu_s: float  # CPU time of the thread that made them (time.thread_time())
    error: str = ""  # attach only: why the hop stays detached


@dataclass(frozen=True)
class Continuation:
    """A program reached only by a tail call from another, never attached (pktpath.bpf.c)."""

    array: str  # its program array ...
    slot: int  # ... and slot there
    loss: str  # what is lost when it cannot load (the verifier refused it on this kernel)


# They load with the second load, and are put in their slot once loaded.
CONTINUATIONS = {
    "drop_capture": Continuation(
        "drop_next",
        0,
        "dropped packets are counted, but get no path (drop capture, and the drop hop of followed packets)",
    ),
}


def _refused_name(exc: libbpf.LibbpfError, names: Iterable[str]) -> str | None:
    """Which of `names` libbpf says the kernel refused, if one of them."""
    wanted = set(names)
    return next((m.group(1) for line in exc.log if (m := _REFUSED.search(line)) and m.group(1) in wanted), None)


class Engine:
    """One loaded BPF object and its links. Not thread-safe; owned by the agent."""

    def __init__(
        self,
        options: EngineOptions | None = None,
        object_path: str | None = None,
        host: Host | None = None,
        kernel_btf: libbpf.Btf | None = None,
    ) -> None:
        """`kernel_btf`: the running kernel's BTF if the caller has it parsed already
        (it stays the caller's); else the engine parses it when needed and frees it."""
        self.options = options or EngineOptions()
        self.object_path = object_path or default_object_path()
        self.host = host or Host()
        self._obj: libbpf.BpfObject | None = None
        self._late_objs: list[libbpf.BpfObject] = []  # attach_late(): programs sharing _obj's maps
        self._first_attached: Callable[[float], None] | None = None
        self._fentry_reattach: bool | None = None  # fentry_reattaches(), found on first use
        self._shared_btf = kernel_btf
        self._kernel_btf: libbpf.Btf | None = kernel_btf  # else parsed on first need, then freed
        # Links of each attached hop, and the programs of its family (to attach again after
        # detach_hops()); _detached: hops detached on demand -> their family.
        self._hop_links: dict[str, list[libbpf.Link]] = {}
        self._hop_programs: dict[str, list[libbpf.Program]] = {}
        self._detached: dict[str, str] = {}
        # group_window_hooks(): hops whose function hooks now attach as kprobe.multi links, and why
        # they cannot where the kernel refused (both None until asked).
        self._window: WindowLinks | None = None
        self.window_problem: str | None = None
        self.window_attach_s: float | None = None  # the links' trial attach, wall time
        self._refused_families: dict[str, str] = {}
        self._helper_end: int | None = None  # the kernel's __BPF_FUNC_MAX_ID (0: unknown)
        self.report: AttachReport | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(
        self, verify: Callable[[libbpf.Btf], None] | None = None, first_attached: Callable[[float], None] | None = None
    ) -> AttachReport:
        """Load and attach. `verify(object BTF)` runs between load and attach, so an
        ABI mismatch stops start-up before any probe fires.  `first_attached(monotonic time)` is
        called the moment the first probe is attached, before the second load."""
        self._first_attached = first_attached
        self.host.require_bpf()
        if not os.path.exists(self.object_path):
            raise KernelError(f"{self.object_path}: BPF object missing; build it with `make build`")
        t0 = time.monotonic()
        disabled: dict[str, str] = {}  # program name -> why it is not loaded
        # fentry's probe (a load of features.bpf.o) waits until the drop program is attached:
        # only the second load needs its answer, and the first probe comes a load sooner.
        self._refused_families = self._precheck_families(fentry=False)
        fentry_pending = True
        # Two loads: the drop program alone first, then every other program as a second object
        # sharing its maps.  The verifier takes tens of milliseconds per program that parses
        # headers (bounded by the packet's length, every branch explored), so counting drops,
        # the agent's first duty, starts after one program's verification instead of all of
        # them; the path and verdict hops follow a few hundred milliseconds later.  The drop
        # program itself only counts: its header parsing (drop capture) is a continuation it
        # tail-calls, loaded with the second load (CONTINUATIONS).
        later: set[str] = set()
        for _ in range(_MAX_LOAD_ATTEMPTS):
            obj, specs = self._open(disabled)
            loadable = {p.name for p in obj.programs if p.autoload and p.name in specs}
            first = {n for n in loadable if specs[n].hop == DROP_HOP}
            if fentry_pending and not first:
                # No drop program (excluded, or another object): one load of everything, which
                # needs fentry's answer first.
                fentry_pending = False
                if self._note_fentry_refused():
                    obj.close()
                    obj, specs = self._open(disabled)
                    loadable = {p.name for p in obj.programs if p.autoload and p.name in specs}
            later = loadable - first if first else set()
            # A continuation is called by the drop program: loaded second, and only with it.
            continuations = {p.name for p in obj.programs if p.name in CONTINUATIONS} if first else set()
            for prog in obj.programs:
                if prog.name in later or prog.name in CONTINUATIONS:
                    prog.set_autoload(False)
            try:
                obj.load()
            except libbpf.LibbpfError as exc:
                obj.close()
                refused = self._refused_program(exc, specs, disabled)
                if refused is None:
                    raise self._load_error(exc) from None
                continue
            self._obj = obj
            break
        else:
            raise KernelError(f"gave up loading {self.object_path} after {_MAX_LOAD_ATTEMPTS} attempts")
        load_s = time.monotonic() - t0
        if verify is not None:
            try:
                verify(obj.btf())
            except Exception:
                self.close()
                raise
        hops = group_hops(specs.values())
        self.report = AttachReport(
            hops=hops, load_seconds=load_s, continuations={n: ContinuationStatus(n) for n in sorted(continuations)}
        )
        self._attach_all(obj, hops, {**disabled, **dict.fromkeys(later, "loaded after the drop program")})
        if later or continuations:
            t1 = time.monotonic()
            if fentry_pending and self._note_fentry_refused():
                fentry_programs = {n for n in later if specs[n].family == "fentry"}
                later -= fentry_programs
                disabled.update(dict.fromkeys(fentry_programs, self._refused_families["fentry"]))
            self._attach_late(
                [s for s in hops.values() if not s.attached], later, known=disabled, continuations=continuations
            )
            self.report.load_seconds += time.monotonic() - t1
        self._log_missing(hops)
        self._free_kernel_btf()  # ~10 MB: parsed again if a late attach needs it
        return self.report

    def _free_kernel_btf(self) -> None:
        if self._kernel_btf is not None and self._kernel_btf is not self._shared_btf:
            self._kernel_btf.close()
        self._kernel_btf = self._shared_btf

    def release_kernel_btf(self) -> None:
        """Stop using the caller's kernel BTF, so the caller may free it; a late attach parses its own."""
        if self._kernel_btf is self._shared_btf:
            self._kernel_btf = None
        self._shared_btf = None

    def close(self) -> None:
        """Detach every link, then free the object (its programs and maps)."""
        if self._window is not None:
            self._window.close()
            self._window = None
        for links in self._hop_links.values():
            for link in links:
                link.destroy()
        self._hop_links.clear()
        self._hop_programs.clear()
        self._detached.clear()
        for late in self._late_objs:
            late.close()
        self._late_objs.clear()
        self._free_kernel_btf()
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def attach_late(self) -> list[str]:
        """Try again the hops that did not attach for a reason the kernel may have lost
        since: typically a function in a module loaded after start-up (nft_do_chain
        before the first nftables rule).  The programs load as a second object that
        shares every map of the first, so their counts and events land where the
        agent reads.  Returns the hops attached now."""
        if self._obj is None or self.report is None:
            return []
        allowed = allowed_families(self.options.mode)
        retry = [
            s
            for s in self.report.hops.values()
            if not s.attached and s.hop not in self.options.exclude and s.hop not in self._detached
        ]
        wanted = {
            spec.name
            for s in retry
            for family, specs in s.families.items()
            if family in allowed and family not in self._refused_families
            for spec in specs
        }
        if not wanted:
            return []
        try:
            return self._attach_late(retry, wanted)
        finally:
            self._free_kernel_btf()

    def _attach_late(
        self,
        retry: list[HopStatus],
        wanted: set[str],
        known: dict[str, str] | None = None,
        continuations: Iterable[str] = (),
    ) -> list[str]:
        """Load `wanted` as a second object sharing the first's maps and attach the hops of `retry`
        from it; the hops attached now.  `known` (start-up's second load): why each program not
        wanted was left out, and the report then takes this attempt's problems for every hop of
        `retry`, not only for those attached.  `continuations` (start-up's second load too) load
        with them and go into their program arrays."""
        assert self._obj is not None and self.report is not None
        disabled: dict[str, str] = {}
        tail = set(continuations)
        for _ in range(_MAX_LOAD_ATTEMPTS):
            obj = libbpf.BpfObject(self.object_path)
            specs: dict[str, ProgramSpec] = {}
            for prog in obj.programs:
                spec = parse_program(prog.name, prog.section)
                if spec is not None:
                    specs[prog.name] = spec
                    if prog.name in wanted and prog.name not in disabled:
                        missing = self._missing_target(spec) or self._missing_helper(prog)
                        if missing:
                            disabled[prog.name] = missing
            _disable_partners(specs, disabled)
            for prog in obj.programs:
                prog.set_autoload((prog.name in wanted and prog.name not in disabled) or prog.name in tail)
            if not any(p.autoload for p in obj.programs):
                obj.close()
                return []
            for m in obj.maps:
                # Its own constants (a module's facts may be known only now); every other map shared.
                if not m.name.endswith(".rodata"):
                    m.reuse_fd(self._obj.map(m.name).fd)
            self._set_constants(obj)
            try:
                obj.load()
            except libbpf.LibbpfError as exc:
                obj.close()
                refused_tail = _refused_name(exc, tail)
                if refused_tail is not None:
                    # The hops still attach; what the continuation adds is what is lost.
                    problem = f"refused by the verifier ({os.strerror(exc.errno)}): {CONTINUATIONS[refused_tail].loss}"
                    log.warning("program %s not loaded: %s", refused_tail, problem)
                    if refused_tail in self.report.continuations:
                        self.report.continuations[refused_tail].problem = problem
                    tail.discard(refused_tail)
                    continue
                if self._refused_program(exc, specs, disabled) is None:
                    log.warning("late attach: %s", self._load_error(exc))
                    return []
                continue
            break
        else:
            return []
        installed = self._install_continuations(obj, tail)
        before = set(self.report.attached)
        statuses = {s.hop: HopStatus(s.hop, s.families) for s in retry}
        left_out = {n: (known or {}).get(n, "not retried") for n in specs if n not in wanted}
        self._attach_all(obj, statuses, {**disabled, **left_out})
        now = [hop for hop, st in statuses.items() if st.attached and hop not in before]
        for hop in now:
            self.report.hops[hop].attached = statuses[hop].attached
            self.report.hops[hop].problems = {}
        if known is not None:
            for hop, st in statuses.items():
                if not st.attached:
                    self.report.hops[hop].problems = st.problems
        if now or installed:
            self._late_objs.append(obj)
        else:
            obj.close()
        return now

    def _install_continuations(self, obj: libbpf.BpfObject, names: Iterable[str]) -> int:
        """Put these loaded programs of `obj` in their program arrays (CONTINUATIONS); how many."""
        assert self._obj is not None
        done = 0
        for prog in obj.programs:
            if prog.name in names and prog.loaded:
                tail = CONTINUATIONS[prog.name]
                self._obj.map(tail.array).update(tail.slot.to_bytes(4, "little"), prog.fd.to_bytes(4, "little"))
                if self.report is not None:
                    self.report.continuations.setdefault(prog.name, ContinuationStatus(prog.name)).installed = True
                done += 1
        return done

    # -- attach control: hops detached and attached again, programs stay loaded ----

    def detach_hops(self, names: Iterable[str], parallel: bool = False) -> list[HopTiming]:
        """Detach these hops' links; their programs stay loaded, for attach_hops().  Hops not
        attached now are left alone (not in the result).  Their report status says "not
        attached" until attach_hops(), so pktpath_probe_attached stays truthful, and
        attach_late() leaves them alone.

        Destroying the last link of an fentry trampoline or of a kprobe blocks the calling thread
        on RCU grace periods, after the hook is already unhooked: ftrace_shutdown() patches the call
        site, then waits in synchronize_rcu_tasks_rude() and synchronize_rcu_tasks(); a kprobe's
        perf event waits in synchronize_rcu_tasks_trace(), tracepoint_synchronize_unregister() and
        unregister_kprobes()'s synchronize_rcu() (6.12).  tp_btf detach does not wait.

        `parallel`: one thread per hop (ctypes releases the GIL during bpf_link__destroy).  Only
        the waits taken outside a global lock overlap: none for fentry (ftrace_shutdown() runs under
        ftrace_lock), unregister_kprobes()'s for kprobes.  bench/attach.py measures both ways."""
        assert self.report is not None, "detach_hops() before start()"
        names = list(dict.fromkeys(names))
        grouped = self._detach_window(names)
        hops = [h for h in names if h in self._hop_links]
        if parallel and len(hops) > 1:
            out: dict[str, HopTiming] = {}

            def detach(hop: str) -> None:
                out[hop] = self._detach_one(hop)

            threads = [threading.Thread(target=detach, args=(h,), name=f"detach-{h}") for h in hops]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            timings = [out[h] for h in hops]
        else:
            timings = [self._detach_one(h) for h in hops]
        for t in timings:
            del self._hop_links[t.hop]
            self._detached[t.hop] = t.family
            self.report.hops[t.hop].attached = None
        return grouped + timings

    def _detach_one(self, hop: str) -> HopTiming:
        # Kept calls first (attach_pair): a call comes off before its return.
        links = self._hop_links[hop]
        family = self.report.hops[hop].attached if self.report else None
        wall, cpu = time.perf_counter(), time.thread_time()
        for link in links:
            link.destroy()
        return HopTiming(hop, family or "?", len(links), time.perf_counter() - wall, time.thread_time() - cpu)

    def attach_hops(self, names: Iterable[str]) -> list[HopTiming]:
        """Attach again hops that detach_hops() detached, with the programs loaded at start.
        Others are left alone (not in the result).  A hop whose attach fails stays detached,
        with the reason in its timing's `error` and in its report status."""
        assert self.report is not None, "attach_hops() before start()"
        names = list(dict.fromkeys(names))
        timings = self._attach_window(names)
        for hop in names:
            family = self._detached.get(hop)
            if family is None or family == WINDOW_FAMILY:
                continue
            status = self.report.hops[hop]
            links: list[libbpf.Link] = []
            error = ""
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                links = attach_pair(self._hop_programs[hop])
            except libbpf.LibbpfError as exc:
                error = f"attach failed: {os.strerror(exc.errno)}"
            timings.append(
                HopTiming(
                    hop,
                    family,
                    len(self._hop_programs[hop]),
                    time.perf_counter() - wall,
                    time.thread_time() - cpu,
                    error,
                )
            )
            if error:
                status.problems[family] = error
                continue
            del self._detached[hop]
            self._hop_links[hop] = links
            status.attached = family
            status.problems.pop(family, None)
        return timings

    # -- a window's function hooks as kprobe.multi links (window_links.py) ----

    def group_window_hooks(self, names: Iterable[str]) -> list[str]:
        """From now on, attach these detached hops' function hooks as a window's kprobe.multi links
        (window_links.py): one link per way for all of them, whose detach waits for one grace
        period instead of one per function.  The hops grouped now or before; [] where they keep a
        link each: `probes.mode: fentry` asks for trampolines, or the kernel refused (no kprobe.multi
        before 5.18 or without CONFIG_FPROBE; the reason is in window_problem and the log).  The
        links are attached and detached once here, so a refusal shows now, not at a window."""
        if self._window is not None:
            return list(self._window.hops)
        if self.window_problem is not None or self._obj is None or self.report is None:
            return []
        if self.options.mode == "fentry":
            self.window_problem = "probes.mode: fentry keeps a trampoline per hook"
            return []
        hops = [h for h in dict.fromkeys(names) if self._detached.get(h) in FUNCTION_FAMILIES]
        if not hops:
            return []
        obj = self._obj
        try:
            window = WindowLinks.load(
                window_object_path(self.object_path),
                hops,
                lambda name: shared_map(obj, name).fd,
                self._set_constants,
                self._missing_helper,
                os.path.join(self.host.proc_root, "kallsyms"),
            )
        except (libbpf.LibbpfError, ValueError) as exc:
            self.window_problem = f"not loaded: {exc}"
        else:
            try:
                self.window_attach_s = window.attach().wall_s
                window.detach()
            except libbpf.LibbpfError as exc:
                window.close()
                self.window_problem = f"attach refused: {exc}"
                if exc.errno == errno.EOPNOTSUPP:
                    # bpf_kprobe_multi_link_attach() without fprobe (Debian's 6.1 kernel).
                    self.window_problem += " (this kernel is built without CONFIG_FPROBE)"
            else:
                self._window = window
        finally:
            self._free_kernel_btf()
        if self._window is None:
            log.warning(
                "sampling windows: %d function hook(s) keep a link each, and detach one after another "
                "(kprobe.multi %s)",
                len(hops),
                self.window_problem,
            )
            return []
        for hop in self._window.hops:
            self._detached[hop] = WINDOW_FAMILY
        log.info(
            "sampling windows: %d function hooks attach as kprobe.multi links: %s",
            len(self._window.hops),
            ", ".join(self._window.hops),
        )
        return list(self._window.hops)

    def window_hops(self) -> list[str]:
        """The hops group_window_hooks() grouped."""
        return list(self._window.hops) if self._window is not None else []

    def _attach_window(self, names: list[str]) -> list[HopTiming]:
        """attach_hops()' part: the grouped hops, all at once when any of them is asked for.
        The first hop's timing carries the links and the time, the others none of either."""
        window = self._window
        if window is None or window.attached or not any(self._detached.get(h) == WINDOW_FAMILY for h in names):
            return []
        assert self.report is not None
        error = ""
        try:
            edge = window.attach()
        except libbpf.LibbpfError as exc:
            edge = None
            error = f"attach failed: {os.strerror(exc.errno)}"
        for hop in window.hops:
            status = self.report.hops[hop]
            if edge is None:
                status.problems[WINDOW_FAMILY] = error
                continue
            del self._detached[hop]
            status.attached = WINDOW_FAMILY
            status.problems.pop(WINDOW_FAMILY, None)
        return _group_timings(window.hops, edge, error)

    def _detach_window(self, names: list[str]) -> list[HopTiming]:
        """detach_hops()' part: the grouped hops, all at once when any of them is asked for."""
        window = self._window
        if window is None or not window.attached or not any(h in window.hops for h in names):
            return []
        assert self.report is not None
        edge = window.detach()
        for hop in window.hops:
            self._detached[hop] = WINDOW_FAMILY
            self.report.hops[hop].attached = None
        return _group_timings(window.hops, edge)

    def map(self, name: str) -> libbpf.Map:
        if self._obj is None:
            raise KernelError("BPF object not loaded")
        return self._obj.map(name)

    def btf(self) -> libbpf.Btf:
        if self._obj is None:
            raise KernelError("BPF object not loaded")
        return self._obj.btf()

    # -- loading -----------------------------------------------------------

    def _kernel(self) -> libbpf.Btf | None:
        """The running kernel's BTF, parsed on first need (freed after start and late attach)."""
        if self._kernel_btf is None:
            try:
                self._kernel_btf = libbpf.Btf.parse(self.host.vmlinux_btf)
            except libbpf.LibbpfError:
                return None
        return self._kernel_btf

    def _missing_helper(self, prog: libbpf.Program) -> str:
        """Why `prog` cannot load here ("" if it may): it calls a BPF helper this kernel does not have.
        The verifier would say "invalid func unknown#184" for the whole object, once per program,
        each a failed load and a retry (on 5.10 every fexit calls bpf_get_func_ret, 5.17+).  Read
        from the program's instructions: a call only in code the verifier would prune as dead counts
        too, so such a call belongs in a program of its own (none is today)."""
        if self._helper_end is None:
            btf = self._kernel()
            members = dict(btf.enum("bpf_func_id") or []) if btf is not None else {}
            self._helper_end = members.get("__BPF_FUNC_MAX_ID", 0)
        end = self._helper_end
        if not end:
            return ""  # let the load find out
        missing = sorted(h for h in prog.helper_calls() if h >= end)
        if not missing:
            return ""
        names = ", ".join(
            f"{NEWER_HELPERS[h][0]} ({NEWER_HELPERS[h][1]}+)" if h in NEWER_HELPERS else f"#{h}" for h in missing
        )
        return f"needs BPF helper {names}, which this kernel lacks"

    def kernel_constants(self) -> dict[str, int]:
        """Values of the object's `const volatile` kernel facts (compat.bpf.h) that BTF tells, set before
        each load.  A fact whose BTF is not there yet (a module not loaded) keeps its default; the
        programs that need it are not loaded then either (_missing_target), and attach_late()
        computes it again."""
        out: dict[str, int] = {}
        params = self._module_func_params(MODULE_OF["ipt_do_table"], "ipt_do_table")
        if params:
            # (skb, state, table) before 5.16, (void *priv, skb, state) since.
            out["ipt_do_table_skb_first"] = int(params[0][1] == "struct sk_buff *")
        elif self._module_loaded(MODULE_OF["ipt_do_table"]):
            # Loaded without BTF (modules have BTF since 5.11): the release is all that tells.
            out["ipt_do_table_skb_first"] = int(self.host.kernel_version() < (5, 16))
        return out

    def _module_loaded(self, module: str) -> bool:
        return os.path.exists(os.path.join(self.host.sys_root, "module", module))

    def _module_func_params(self, module: str, func: str) -> list[tuple[str, str]] | None:
        btf = self._kernel()
        if btf is None:
            return None
        params = btf.func_params(func)  # built in
        path = os.path.join(self.host.sys_root, "kernel/btf", module)
        if params is None and os.path.exists(path):
            try:
                with libbpf.Btf.parse(path, base=btf) as mod:
                    params = mod.func_params(func)
            except libbpf.LibbpfError:
                return None
        return params

    def _set_constants(self, obj: libbpf.BpfObject) -> None:
        for name, value in self.kernel_constants().items():
            obj.set_constant(name, value)

    def _missing_target(self, spec: ProgramSpec) -> str:
        """Why a program cannot load or attach here ("" if it may), found in the kernel's
        BTF: each such program would otherwise cost a failed load of the whole object and
        a retry, verifier time included (seconds on a slow machine).  A tracepoint this
        kernel lacks (sk_data_ready before 6.13), or a function in a module that is not
        loaded (nft_do_chain before the first nftables rule: attach_late() takes it then)."""
        btf = self._kernel()
        if btf is None:
            return ""  # let the load find out
        if spec.section.startswith("tp_btf/"):
            # Every tracepoint we use is vmlinux's.
            if btf.has_typedef(f"btf_trace_{spec.target}"):
                return ""
            return f"no tracepoint {spec.target} in this kernel"
        module = MODULE_OF.get(spec.target)
        if module is None or btf.has_func(spec.target):
            return ""  # built in, or not ours to guess: the load decides
        if os.path.exists(os.path.join(self.host.sys_root, "kernel/btf", module)):
            return ""
        if not self._module_loaded(module):
            return f"module {module} not loaded (attached when it is)"
        if spec.family == "fentry":
            return f"module {module} has no BTF (module BTF is 5.11+): fentry needs its function's BTF"
        lacking = [t for t in MODULE_TYPES.get(spec.target, ()) if not btf.has_struct(t)]
        if lacking:
            return (
                f"module {module} has no BTF (module BTF is 5.11+), and the kernel's lacks struct "
                f"{', struct '.join(lacking)}, which this hook reads"
            )
        return ""

    def _precheck_families(self, kprobe: bool = True, fentry: bool = True) -> dict[str, str]:
        """Families this kernel refuses, found cheaply before the real load: each refused
        family would otherwise cost a failed load of the whole object (and its verifier time)."""
        refused: dict[str, str] = {}
        allowed = allowed_families(self.options.mode)
        if kprobe and "kprobe" in allowed and not self.host.has_kprobes():
            refused["kprobe"] = "kprobes not available on this kernel (no kprobe PMU or kprobe_events)"
        if fentry and "fentry" in allowed:
            why = self._fentry_refused()
            if why:
                refused["fentry"] = why
        return refused

    def _note_fentry_refused(self) -> bool:
        """Run fentry's precheck now; True if this kernel refuses the family (then recorded)."""
        why = self._precheck_families(kprobe=False).get("fentry")
        if why:
            self._refused_families["fentry"] = why
        return bool(why)

    def fentry_reattaches(self) -> bool:
        """Whether an fentry program, once detached, can be attached again.  Kernels before 5.13
        clear a tracing program's target at its first attach, and a second attach fails with
        ENOENT (bpf_tracing_prog_attach; the re-attach came with "bpf: Allow trampoline re-attach
        for tracing and lsm programs"): there a detached fentry hook is lost until reloaded.
        Found once, on features.bpf.o's fentry program: attach, detach, attach again."""
        if self._fentry_reattach is None:
            self._fentry_reattach = self._probe_fentry_reattach()
        return self._fentry_reattach

    def _probe_fentry_reattach(self) -> bool:
        path = sibling_object(self.object_path, "features.bpf.o")
        if not os.path.exists(path):
            return False
        obj = libbpf.BpfObject(path)
        try:
            prog = next(p for p in obj.programs if p.name == "fentry__probe")
            for p in obj.programs:
                p.set_autoload(p is prog)
            obj.load()
            prog.attach().destroy()
            prog.attach().destroy()
            return True
        except (libbpf.LibbpfError, StopIteration):
            return False
        finally:
            obj.close()

    def _fentry_refused(self) -> str:
        """Load features.bpf.o's one fentry program: "" if the kernel takes it, else why not."""
        path = sibling_object(self.object_path, "features.bpf.o")
        if not os.path.exists(path):
            return ""  # let the real load find out
        obj = libbpf.BpfObject(path)
        try:
            for prog in obj.programs:
                prog.set_autoload(prog.name == "fentry__probe")
            obj.load()
            return ""
        except libbpf.LibbpfError as exc:
            return f"fentry refused by this kernel: {os.strerror(exc.errno)}"
        finally:
            obj.close()

    def _open(self, disabled: dict[str, str]) -> tuple[libbpf.BpfObject, dict[str, ProgramSpec]]:
        obj = libbpf.BpfObject(self.object_path)
        specs: dict[str, ProgramSpec] = {}
        progs = []
        for prog in obj.programs:
            spec = parse_program(prog.name, prog.section)
            if spec is not None:
                specs[prog.name] = spec
                progs.append((prog, spec))
        hop_families: dict[str, set[str]] = {}
        for spec in specs.values():
            hop_families.setdefault(spec.hop, set()).add(spec.family)
        for prog, spec in progs:
            allowed = allowed_families(self.options.mode, hop_families[spec.hop])
            if spec.hop in self.options.exclude:
                disabled.setdefault(prog.name, f"{_BY_CONFIG[0]}: {self.options.exclude[spec.hop]}")
            elif spec.family not in allowed:
                disabled.setdefault(prog.name, f"{_BY_CONFIG[1]} by probes.mode={self.options.mode}")
            elif spec.family in self._refused_families:
                disabled.setdefault(prog.name, self._refused_families[spec.family])
            if prog.name not in disabled:
                missing = self._missing_target(spec) or self._missing_helper(prog)
                if missing:
                    disabled[prog.name] = missing
        _disable_partners(specs, disabled)
        for prog, _spec in progs:
            prog.set_autoload(prog.name not in disabled)
        self._set_constants(obj)
        for name, size in self.options.map_sizes.items():
            obj.map(name).set_max_entries(size)
        for name in self.options.per_cpu_block_maps:
            # Compiled with one CPU's block of entries; one block per possible CPU.
            m = obj.map(name)
            m.set_max_entries(m.max_entries * libbpf.num_possible_cpus())
        return obj, specs

    @staticmethod
    def _refused_program(
        exc: libbpf.LibbpfError, specs: dict[str, ProgramSpec], disabled: dict[str, str]
    ) -> str | None:
        """Turn off the program libbpf says the kernel refused; None if none is named."""
        name = next((m.group(1) for line in exc.log if (m := _REFUSED.search(line))), None)
        if name is None or name not in specs or name in disabled:
            return None
        reason = f"load refused: {os.strerror(exc.errno)}"
        why = verifier_complaint(exc.log) or relocation_complaint(exc.log, name)
        if why:
            reason += f" ({why[:160]})"
        disabled[name] = reason
        if exc.errno == errno.EPERM:
            family = specs[name].family
            for other in specs.values():
                if other.family == family:
                    disabled.setdefault(other.name, f"{family} refused by this kernel: {os.strerror(errno.EPERM)}")
        log.debug("program %s not loaded: %s", name, reason)
        return name

    def _load_error(self, exc: libbpf.LibbpfError) -> KernelError:
        if exc.errno == errno.EPERM:
            return KernelError(
                f"permission denied loading {os.path.basename(self.object_path)}: the kernel refused BPF "
                "(root or CAP_BPF+CAP_PERFMON needed; in a container also a seccomp profile allowing bpf())"
            )
        last = next((ln for ln in reversed(exc.log) if ln.strip()), "")
        return KernelError(f"{exc}" + (f": {last.strip()}" if last else ""))

    # -- attaching ---------------------------------------------------------

    @staticmethod
    def _log_missing(hops: dict[str, HopStatus]) -> None:
        """One line per distinct cause, not one per hop: a locked-down kernel refuses a dozen
        function hooks for the same two reasons."""
        by_cause: dict[str, list[str]] = {}
        for status in hops.values():
            if not status.attached:
                why = "; ".join(f"{f}: {p}" for f, p in status.problems.items()) or "no candidate"
                by_cause.setdefault(why, []).append(status.hop)
        for why, names in by_cause.items():
            # Left out on purpose (config, or path hops while paths are off) is not a problem.
            chosen = all(part.split(": ", 1)[-1].startswith(_BY_CONFIG) for part in why.split("; "))
            log.log(
                logging.DEBUG if chosen else logging.WARNING,
                "%d hop(s) not attached (%s): %s",
                len(names),
                why,
                ", ".join(names),
            )

    def _attach_all(self, obj: libbpf.BpfObject, hops: dict[str, HopStatus], disabled: dict[str, str]) -> None:
        progs = {p.name: p for p in obj.programs}
        assert self.report is not None
        for status in hops.values():
            for family, specs in status.families.items():
                why = next((disabled[s.name] for s in specs if s.name in disabled), None)
                if why is not None:
                    status.problems[family] = why
                    continue
                if status.attached:
                    continue  # loaded as a fallback, not needed
                try:
                    links = attach_pair([progs[spec.name] for spec in specs])
                except libbpf.LibbpfError as exc:
                    status.problems[family] = f"attach failed: {os.strerror(exc.errno)}"
                    continue
                self._hop_links[status.hop] = links
                self._hop_programs[status.hop] = [progs[spec.name] for spec in specs]
                status.attached = family
                first_at = time.monotonic() if self.report.first_attach_monotonic is None else None
                if first_at is not None:
                    self.report.first_attach_monotonic = first_at
                log.info("hop %s attached (%s: %s)", status.hop, family, ", ".join(s.section for s in specs))
                if first_at is not None and self._first_attached is not None:
                    self._first_attached(first_at)


def _group_timings(hops: list[str], edge: EdgeTiming | None, error: str = "") -> list[HopTiming]:
    """One timing per hop of a group switched as one: the first hop's carries the group's links and
    time, the others none of either (or all the error, where the attach failed)."""
    if edge is None:
        return [HopTiming(hop, WINDOW_FAMILY, 0, 0.0, 0.0, error) for hop in hops]
    return [
        HopTiming(hop, WINDOW_FAMILY, edge.links, edge.wall_s, edge.cpu_s)
        if i == 0
        else HopTiming(hop, WINDOW_FAMILY, 0, 0.0, 0.0)
        for i, hop in enumerate(hops)
    ]


def start_engine(
    cfg: Config,
    host: Host,
    paths: bool,
    kernel_btf: libbpf.Btf | None = None,
    first_attached: Callable[[float], None] | None = None,
) -> Engine:
    """The agent's engine, loaded and attached, its ABI checked; KernelError under probes.strict when
    a hop did not attach."""
    from exporter.model import abi

    engine = Engine(EngineOptions.for_config(cfg, paths), host=host, kernel_btf=kernel_btf)
    report = engine.start(verify=abi.check_against, first_attached=first_attached)
    if cfg.probes.strict and report.missing:
        engine.close()
        raise KernelError(f"probes.strict: hop(s) not attached: {', '.join(report.missing)}")
    return engine


class ModuleWatch:
    """Notices kernel modules loaded since start-up (each has its BTF under
    /sys/kernel/btf, and, before 5.11, where modules have no BTF, only its
    /sys/module entry), for hops that could not attach before their module was
    there.  Two directory listings every few seconds, and only while a hop is missing."""

    BTF_DIR = "/sys/kernel/btf"
    MODULE_DIR = "/sys/module"
    EVERY_S = 5.0

    def __init__(self, report: AttachReport, clock: Callable[[], float] = time.monotonic) -> None:
        self._report = report
        self._clock = clock
        self._seen = self._modules()
        self._next = clock() + self.EVERY_S

    def _modules(self) -> set[str]:
        seen: set[str] = set()
        for where in (self.BTF_DIR, self.MODULE_DIR):
            with contextlib.suppress(OSError):
                seen.update(f"{where}/{name}" for name in os.listdir(where))
        return seen

    def changed(self) -> bool:
        now = self._clock()
        if now < self._next or not self._report.missing:
            return False
        self._next = now + self.EVERY_S
        current = self._modules()
        new = current - self._seen
        self._seen = current
        return bool(new)
