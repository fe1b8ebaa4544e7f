"""A sampling window's function hooks as kprobe.multi links, not a link per hook (issue 12).

Windows attach the path hooks for each window and detach them after (exporter/paths/windows.py).
Detaching a function hook waits for RCU grace periods: an fentry trampoline's last program in
ftrace_shutdown() (synchronize_rcu_tasks_rude(), synchronize_rcu_tasks()), a kprobe's perf event in
synchronize_rcu_tasks_trace() and synchronize_rcu().  ftrace_shutdown() runs under ftrace_lock, so
the waits add up, one function after another: in the 6.12 guest a window's 15 function hooks took
2.1 s to detach, and a flood paid every hook that long (docs/benchmarks.md, "Attach and detach").

One kprobe.multi link hooks many functions through one fprobe, which one ftrace_shutdown()
unregisters: the same 15 functions detached in 71 ms there.  So where the kernel takes them (5.18+,
CONFIG_FPROBE), the window's function hooks become two links:

    window_call    kprobe.multi over every hooked function; its attach cookie is the function's slot
    window_return  kretprobe.multi over the functions whose return value a hop reads

Each tail-calls (pktpath.bpf.c) the hook's kprobe.multi twin in `window_calls` / `window_returns`:
the same body as its kprobe (hooks.bpf.h), so a hop reports the same event whichever way it runs.
The programs are their own object, window.bpf.o (pktpath.bpf.c built with PKTPATH_WINDOW_OBJECT):
an agent that never groups its hooks never opens it, and pays nothing for it.  It loads once, the
first time the windows take their hooks off, sharing every map of the agent's.
pktpath_probe_attached names the way they run: attach_type kprobe_multi.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from exporter.loader import libbpf
from exporter.loader.probes import split_program

# pktpath_probe_attached's attach_type for a hop that runs in a window's kprobe.multi link.
FAMILY = "kprobe_multi"
# A twin's section kind -> the link that reaches it.
_WAYS = {"kprobe.multi": "call", "kretprobe.multi": "return"}
# The link -> its program (the dispatcher) and the program array it tail-calls through.
DISPATCHERS = {"call": ("window_call", "window_calls"), "return": ("window_return", "window_returns")}
# A return twin pops what its call twin stashed (hooks.bpf.h: stash_pop3), so the returns are hooked
# first and unhooked last: a return that finds nothing stashed reports nothing, while a call whose
# return is not hooked would leave its arguments stashed.
_ATTACH_ORDER = ("return", "call")


@dataclass(frozen=True)
class Twin:
    """The kprobe.multi twin of one function hook's program (hooks.bpf.h: KPROBE_PROG)."""

    program: str  # <hop>__kmulti, <hop>__kmultiret
    hop: str
    function: str
    way: str  # "call" or "return"


def parse_twin(name: str, section: str) -> Twin | None:
    """The twin a program is, or None (a dispatcher, or any other program)."""
    parts = split_program(name, section)
    way = _WAYS.get(parts[1]) if parts else None
    if parts is None or way is None:
        return None
    return Twin(name, parts[0], parts[2], way)


def function_addresses(functions: Iterable[str], kallsyms: str) -> dict[str, int]:
    """The kernel text address of each function named, from kallsyms (`kallsyms`: its text): the
    first vmlinux symbol of that name, as the kernel's own name lookup takes it.  Functions it lacks,
    or shows at address 0 (kptr_restrict), are left out."""
    wanted = sorted(set(functions))
    if not wanted:
        return {}
    # One pass over the whole text in C (re), not a Python loop over its ~200,000 lines: under
    # emulation that loop alone takes seconds.  A module's symbol ends in "\t[module]": not matched.
    pattern = re.compile(r"^([0-9a-f]+) [tT] (" + "|".join(map(re.escape, wanted)) + r")$", re.M)
    found: dict[str, int] = {}
    for m in pattern.finditer(kallsyms):
        address = int(m.group(1), 16)
        if address and m.group(2) not in found:
            found[m.group(2)] = address
    return found


@dataclass(frozen=True)
class EdgeTiming:
    links: int
    wall_s: float  # time.perf_counter() around the libbpf calls
    cpu_s: float  # CPU time of the calling thread


class WindowLinks:
    """The function hooks of `hops` as one kprobe.multi link per way, attached and detached as one."""

    def __init__(self, obj: libbpf.BpfObject, twins: list[Twin], addresses: dict[str, int] | None = None) -> None:
        self._obj = obj
        self.hops: list[str] = list(dict.fromkeys(t.hop for t in twins))
        progs = {p.name: p for p in obj.programs}
        # Per way: its dispatcher, the functions (cookie = index), and their addresses if all known.
        self._ways: dict[str, tuple[libbpf.Program, list[str], list[int] | None]] = {}
        # Attaching by address spares the kernel its walk of every symbol to find the names
        # (ftrace_lookup_symbols()): in the 6.12 guest that walk was most of an attach's CPU time,
        # the same for a link over one function as over fifteen (guest: 54 ms by name, 13 by address).
        known = addresses or {}
        by_address = all(t.function in known for t in twins)
        for way in _ATTACH_ORDER:
            mine = [t for t in twins if t.way == way]
            if not mine:
                continue
            dispatcher, array = DISPATCHERS[way]
            slots = obj.map(array)
            if len(mine) > slots.max_entries:
                raise ValueError(f"{len(mine)} function hooks, {array} has {slots.max_entries} slots")
            for slot, twin in enumerate(mine):
                slots.update(slot.to_bytes(4, "little"), progs[twin.program].fd.to_bytes(4, "little"))
            functions = [t.function for t in mine]
            self._ways[way] = (progs[dispatcher], functions, [known[f] for f in functions] if by_address else None)
        self._links: list[libbpf.Link] = []

    @classmethod
    def load(
        cls,
        object_path: str,
        hops: Iterable[str],
        shared_fd: Callable[[str], int],
        set_constants: Callable[[libbpf.BpfObject], None],
        missing_helper: Callable[[libbpf.Program], str],
        kallsyms_path: str = "/proc/kallsyms",
    ) -> WindowLinks:
        """Load the twins of `hops` (those that have one) and the dispatchers they need, sharing
        every map but the constants (`shared_fd(map name)`).  Raises LibbpfError (the kernel refused
        a program) or ValueError (no twin; `missing_helper(program)` named a helper the kernel lacks:
        bpf_get_attach_cookie before 5.15)."""
        wanted = set(hops)
        obj = libbpf.BpfObject(object_path)
        try:
            twins = [t for p in obj.programs if (t := parse_twin(p.name, p.section)) is not None and t.hop in wanted]
            if not twins:
                raise ValueError("no kprobe.multi twin for these hooks")
            load = {t.program for t in twins} | {DISPATCHERS[t.way][0] for t in twins}
            for prog in obj.programs:
                prog.set_autoload(prog.name in load)
                missing = missing_helper(prog) if prog.name in load else ""
                if missing:
                    raise ValueError(f"{prog.name} {missing}")
            for m in obj.maps:
                if not m.name.endswith(".rodata"):
                    m.reuse_fd(shared_fd(m.name))
            set_constants(obj)
            obj.load()
            try:
                with open(kallsyms_path, encoding="ascii", errors="replace") as f:
                    addresses = function_addresses((t.function for t in twins), f.read())
            except OSError:
                addresses = {}  # by name, then
            return cls(obj, twins, addresses)
        except BaseException:
            obj.close()
            raise

    @property
    def attached(self) -> bool:
        return bool(self._links)

    def attach(self) -> EdgeTiming:
        """Both links, returns first.  Raises LibbpfError, with nothing left attached."""
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            for way in _ATTACH_ORDER:
                if way in self._ways:
                    prog, functions, addresses = self._ways[way]
                    cookies = list(range(len(functions)))  # each function's slot in the program array
                    self._links.append(
                        prog.attach_kprobe_multi(functions, cookies, retprobe=way == "return", addresses=addresses)
                    )
        except libbpf.LibbpfError:
            self.detach()
            raise
        return EdgeTiming(len(self._links), time.perf_counter() - wall, time.thread_time() - cpu)

    def detach(self) -> EdgeTiming:
        """Calls first: a call in flight still finds its return hooked."""
        wall, cpu = time.perf_counter(), time.thread_time()
        links = len(self._links)
        for link in reversed(self._links):
            link.destroy()
        self._links.clear()
        return EdgeTiming(links, time.perf_counter() - wall, time.thread_time() - cpu)

    def close(self) -> None:
        self.detach()
        self._obj.close()
