"""What a sampling window's edges cost: attaching and detaching pktpath's packet-path hooks.

`python -m bench --only attach` runs this module on the running kernel (here the locked-down 6.18:
tracepoints only) and then inside stock kernels under QEMU (6.12 by default, with -icount like
bench/hops.py), where fentry trampolines and kprobes attach too.  Each run is
`python -m bench.attach --output FILE`, which measures the kernel it runs on and writes JSON.

Sampling windows (issue 12) attach the path hops -- every hop of the hop table's path-only
programs (exporter.model.hops.PATH_ONLY_PROGRAMS) that attached -- only while a window is open,
from programs loaded once at start-up.  So this measures exactly that, with the agent's own object
and loader: Engine.start() with paths on (the default config otherwise), then
Engine.detach_hops() / attach_hops() of already-loaded programs (bpf_link__destroy /
bpf_program__attach).  kfree_skb and the verdict counters stay attached
throughout, as in the agent.  Per attach family (probes.mode auto: fentry + tp_btf; kprobe: kprobes):

- per hop: attach, wait, detach, wait; `--reps` times, the hops' order rotating each time;
- the family's hops as one group (a window edge): attach all, detach all one after another, or
  (every other repetition) each from its own thread (`parallel`): the only batching open to these
  programs, since libbpf has no call that destroys several links at once;
- tracepoints: attach right after a detach (< one RCU grace period later), which waits;
- function families: detaching k hooks together, k = 1, 2, 4, 8, all, serial and parallel;
- with several families (the guest's auto mode), the whole window (every path hop) as one group.

Wall time and the calling threads' CPU time of every call; the RCU kthreads' run time over each
phase.  In a guest, group edges are also bracketed by a host clock (RealClock: the mtime the host
gives a file on the shared 9p directory), because under -icount guest time counts instructions.

On the host, `--flood`: a UDP flood (the throughput bench's drop workload, sender pinned to CPU 0)
while a thread on CPU 1 attaches and detaches hooks back to back, against the flood alone and with
the hooks attached throughout: what the rest of the machine loses to the edges (text patching
sends IPIs to every CPU), with the function-call IPIs CPU 0 received.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.attachcost import (
    edge_disturbance,
    expected_pps,
    per_edge,
    scaling_rows,
    summarize_ops,
    window_cost,
)
from bench.procs import BenchError, read_worker_result, run_worker, tracing_programs, worker_main
from exporter.errors import PktpathError

GUEST_SERIES = "6.12"
REF_OBJECT = Path(__file__).resolve().parent / "bpf" / "attach.bpf.o"  # an empty kprobe.multi program
REPS = 50
GAP_S = 0.05  # between an attach and its detach, and after a detach: more than an RCU grace period here
SCALE_KS = (1, 2, 4, 8)  # and all of the family
SCALE_REPS = 10
# In a guest a function hook's edge takes 0.1-0.3 s under emulation: the window edges (the groups)
# get the full repetitions, each hop alone and the k-together series fewer (every hook of a family
# runs the same kernel path, and -icount makes repetitions agree closely).
GUEST_HOP_REPS = 10
GUEST_SCALE_REPS = 5
HOST_TIME_LIMIT_S = 600.0
GUEST_TIME_LIMIT_S = 2400.0
QUIET_WAIT_S = 300.0  # at most this long waiting for other people's QEMU guests / tracing programs
# Hops the flood (UDP to a port iptables drops, on veth) passes once per packet; the other path
# hops (IPv6 route lookup, socket delivery, consume_skb) it never fires.
FLOOD_FIRES = ("net_dev_queue", "net_dev_xmit", "netif_receive_skb", "fib_table_lookup")
FLOOD_CONDITIONS = ("none", "attached", "toggle-unfired", "toggle-all")
FLOOD_ROUNDS = 5
FLOOD_SECONDS = 2.0
TOGGLER_CPU = 1
# Periods a window could use, for the cost table (seconds), and the window's length in each.
PERIODS = ((1.0, 0.1), (10.0, 1.0), (60.0, 5.0))


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- clocks and counters ------------------------------------------------------


class RealClock:
    """The host's clock, read from inside a guest: the mtime the host gives a file on a shared 9p
    directory when the guest sets it to "now" (utime(path, None); the 9p server sets it with
    UTIME_NOW on the host), read back with stat().  Under -icount the guest's own clock counts
    instructions; this one says how long something really took.  Resolution: the host file system's
    timestamps (fine-grained on 6.13+ ext4 once a timestamp has been read); each reading is two 9p
    round trips, whose median (`latency_s`) is taken off every interval."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_text("")
        gaps = []
        last = self.now()
        for _ in range(20):
            now = self.now()
            gaps.append(now - last)
            last = now
        gaps.sort()
        self.latency_s = gaps[len(gaps) // 2]

    def now(self) -> float:
        os.utime(self.path, None)
        return os.stat(self.path).st_mtime_ns / 1e9

    def interval(self, start: float) -> float:
        return max(0.0, self.now() - start - self.latency_s)


def rcu_kthreads_ns() -> int:
    """Run time of the RCU kthreads (rcu_preempt, rcu_tasks_kthread, rcu_tasks_rude_, ...), in ns
    (/proc/PID/schedstat): grace-period work that no caller's CPU time shows."""
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if (d / "comm").read_text().startswith("rcu_"):
                total += int((d / "schedstat").read_text().split()[0])
    return total


def interrupts(cpu: int | None) -> dict[str, int]:
    """Function-call IPIs (CAL) and TLB shootdowns received by `cpu` (None: by every CPU), from
    /proc/interrupts."""
    out = {}
    ncpu = os.cpu_count() or 1
    with contextlib.suppress(OSError):
        for line in Path("/proc/interrupts").read_text().splitlines():
            name, _, rest = line.strip().partition(":")
            if name in ("CAL", "TLB"):
                with contextlib.suppress(IndexError, ValueError):
                    counts = [int(v) for v in rest.split()[:ncpu]]
                    out[name] = counts[cpu] if cpu is not None else sum(counts)
    return out


def foreign_on(hooks: Sequence[str]) -> list[str]:
    """Tracepoints among `hooks` where a program of another process is attached (bpftool perf list).
    There our attach is 1 -> 2 programs and our detach 2 -> 1: no static key to flip, no grace period
    to wait for, so not what the agent alone would see."""
    seen = tracing_programs()
    if seen is None:
        return []
    me = os.getpid()
    return sorted({tp for pid, tp in seen.entries if pid != me and tp in hooks})


# -- the engine, as the agent builds it ----------------------------------------


def start_engine(mode: str) -> tuple[Any, Any]:
    """The agent's engine with paths on and every other key at its default, probes.mode = `mode`."""
    from exporter.config import load_config
    from exporter.loader.engine import Engine, EngineOptions

    options = dataclasses.replace(EngineOptions.for_config(load_config(None, {}), paths=True), mode=mode)
    engine = Engine(options)
    return engine, engine.start()


def _rows(timings: Sequence[Any], op: str, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "hop": t.hop,
            "family": t.family,
            "links": t.links,
            "op": op,
            "wall_s": t.wall_s,
            "cpu_s": t.cpu_s,
            **({"error": t.error} if t.error else {}),
            **extra,
        }
        for t in timings
    ]


class Edge:
    """One attach or detach call over a group of hops: its wall time, the CPU time of every thread
    that made a call (the caller's own, plus the detach threads' when parallel), and the host's
    real time when a RealClock is given."""

    def __init__(self, clock: RealClock | None) -> None:
        self.clock = clock

    def run(self, call: Callable[[], Sequence[Any]], op: str, parallel: bool = False, **extra: Any) -> dict[str, Any]:
        real0 = self.clock.now() if self.clock else None
        wall, cpu = time.perf_counter(), time.thread_time()
        timings = call()
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        row: dict[str, Any] = {
            "op": op,
            "hops": len(timings),
            "links": sum(t.links for t in timings),
            "wall_s": wall,
            "cpu_s": cpu + (sum(t.cpu_s for t in timings) if parallel else 0.0),
            "hop_wall_s": {t.hop: t.wall_s for t in timings},
            **extra,
        }
        if real0 is not None and self.clock is not None:
            row["real_s"] = self.clock.interval(real0)
        errors = [f"{t.hop}: {t.error}" for t in timings if t.error]
        if errors:
            row["error"] = "; ".join(errors)
        return row


def _phase(result: dict[str, Any], name: str, edges: int, started_ns: int, t0: float, ipis0: dict[str, int]) -> None:
    ipis = interrupts(None)
    result.setdefault("phases", {})[name] = {
        "edges": edges,
        "seconds": round(time.monotonic() - t0, 2),
        "rcu_kthreads_ms_per_edge": per_edge((rcu_kthreads_ns() - started_ns) / 1e6, edges),
        "ipis_per_edge": {k: per_edge(ipis[k] - ipis0[k], edges) for k in ipis if k in ipis0},
    }


def per_hop(engine: Any, hops: list[str], reps: int, gap: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for rep in range(reps):
        k = rep % len(hops)
        for hop in hops[k:] + hops[:k]:
            rows += _rows(engine.attach_hops([hop]), "attach", rep=rep)
            time.sleep(gap)
            rows += _rows(engine.detach_hops([hop]), "detach", rep=rep)
            time.sleep(gap)
    return rows


def group(
    engine: Any, hops: list[str], reps: int, gap: float, clock: RealClock | None, reattach: bool
) -> list[dict[str, Any]]:
    """2 x reps windows: attach all, detach all (serial, then parallel threads every other time).
    `reattach`: then reps more with an attach right after the detach (tracepoints: the attach after
    a 1 -> 0 transition waits for a grace period, tracepoint_add_func -> tp_rcu_cond_sync)."""
    edge = Edge(clock)
    rows = []
    for rep in range(2 * reps):
        parallel = rep % 2 == 1
        rows.append(edge.run(functools.partial(engine.attach_hops, hops), "attach", rep=rep))
        time.sleep(gap)
        rows.append(
            edge.run(
                functools.partial(engine.detach_hops, hops, parallel=parallel),
                "detach-parallel" if parallel else "detach",
                parallel=parallel,
                rep=rep,
            )
        )
        time.sleep(gap)
    for rep in range(reps if reattach else 0):
        engine.attach_hops(hops)
        time.sleep(gap)
        rows.append(edge.run(functools.partial(engine.detach_hops, hops), "detach", rep=rep, reattach=True))
        rows.append(edge.run(functools.partial(engine.attach_hops, hops), "attach-after-detach", rep=rep))
        time.sleep(gap)
        engine.detach_hops(hops)
        time.sleep(gap)
    return [r for r in rows if not r.get("reattach")]


def scaling(engine: Any, hops: list[str], reps: int, gap: float) -> list[dict[str, Any]]:
    """Detach k hooks together, k = 1, 2, 4, 8 and all: serial and parallel alternating."""
    edge = Edge(None)
    rows = []
    for k in sorted({k for k in SCALE_KS if k < len(hops)} | {len(hops)}):
        some = hops[:k]
        for rep in range(2 * reps):
            parallel = rep % 2 == 1
            row = edge.run(functools.partial(engine.attach_hops, some), "attach")
            rows.append({**row, "k": k, "how": "attach", "rep": rep})
            time.sleep(gap)
            row = edge.run(functools.partial(engine.detach_hops, some, parallel=parallel), "detach", parallel=parallel)
            rows.append({**row, "k": k, "how": "parallel" if parallel else "serial", "rep": rep})
            time.sleep(gap)
    return rows


def kprobe_multi(functions: list[str], reps: int, gap: float) -> dict[str, Any]:
    """The batched alternative, priced with an empty program (bench/bpf/attach.bpf.o): one
    kprobe.multi link over k of the functions the kprobe hooks take, attached and destroyed
    2 x reps times per k.  fprobe registers one ftrace_ops for the whole link, so one walk of the
    ftrace records and one set of grace periods per edge, whatever k."""
    from exporter.loader import libbpf

    rows: list[dict[str, Any]] = []
    obj = libbpf.BpfObject(str(REF_OBJECT))
    try:
        obj.load()
        prog = next(p for p in obj.programs if p.name == "kprobe_multi_empty")
        for k in sorted({k for k in SCALE_KS if k < len(functions)} | {len(functions)}):
            for rep in range(2 * reps):
                wall, cpu = time.perf_counter(), time.thread_time()
                link = prog.attach_kprobe_multi(functions[:k])
                rows.append(
                    {
                        "k": k,
                        "how": "attach",
                        "rep": rep,
                        "wall_s": time.perf_counter() - wall,
                        "cpu_s": time.thread_time() - cpu,
                    }
                )
                time.sleep(gap)
                wall, cpu = time.perf_counter(), time.thread_time()
                link.destroy()
                rows.append(
                    {
                        "k": k,
                        "how": "detach",
                        "rep": rep,
                        "wall_s": time.perf_counter() - wall,
                        "cpu_s": time.thread_time() - cpu,
                    }
                )
                time.sleep(gap)
    finally:
        obj.close()
    return {"functions": functions, "rows": rows}


def measure_mode(
    mode: str,
    families: Sequence[str] | None,
    reps: int,
    hop_reps: int,
    gap: float,
    scale_reps: int,
    clock: RealClock | None,
    deadline: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """One probes.mode.  Per family: each hop alone (hop_reps), detaching k together (function
    families); the family as one group when it is the mode's only one or the tracepoints (whose group
    edge is cheap); and, when the mode has several families, every path hop as one group: the window
    edge the agent will make."""
    from exporter.model.hops import PATH_ONLY_PROGRAMS

    t0 = time.monotonic()
    engine, report = start_engine(mode)
    res: dict[str, Any] = {"mode": mode, "start_seconds": round(time.monotonic() - t0, 2)}
    try:
        path = [h for h in PATH_ONLY_PROGRAMS if h in report.hops and report.hops[h].attached]
        family_of = {h: report.hops[h].attached for h in path}
        res["path_hops"] = family_of
        res["always_on"] = [h for h in report.attached if h not in family_of]
        res["path_hops_not_attached"] = {
            h: "; ".join(f"{f}: {p}" for f, p in report.hops[h].problems.items()) or "no candidate"
            for h in PATH_ONLY_PROGRAMS
            if h in report.hops and h not in family_of
        }
        res["shared_with_others_at_start"] = foreign_on(path)
        engine.detach_hops(path)  # a closed window: only the always-on programs stay
        res["families"] = {}
        fams = [f for f in dict.fromkeys(family_of.values()) if families is None or f in families]
        for fam in fams:
            hops = [h for h in path if family_of[h] == fam]
            log(f"attach: {mode}: {fam}: {len(hops)} hop(s) {', '.join(hops)} ...")
            f: dict[str, Any] = {"hops": hops}
            res["families"][fam] = f
            phases: list[tuple[str, Callable[[], list[dict[str, Any]]], int]] = [
                ("per_hop", functools.partial(per_hop, engine, hops, hop_reps, gap), 2 * hop_reps * len(hops))
            ]
            if fam == "tracepoint" or len(fams) == 1:
                phases.append(
                    (
                        "group",
                        functools.partial(group, engine, hops, reps, gap, clock, fam == "tracepoint"),
                        4 * reps + (4 * reps if fam == "tracepoint" else 0),
                    )
                )
            if fam != "tracepoint":
                phases.append(
                    (
                        "scaling",
                        functools.partial(scaling, engine, hops, scale_reps, gap),
                        4 * scale_reps * len({k for k in SCALE_KS if k < len(hops)} | {len(hops)}),
                    )
                )
            for name, run_phase, edges in phases:
                if time.monotonic() > deadline:
                    f.setdefault("skipped", []).append(name)
                    log(f"attach: {mode}/{fam}/{name}: skipped, no time left")
                    continue
                r0, p0, i0 = rcu_kthreads_ns(), time.monotonic(), interrupts(None)
                f[name] = run_phase()
                _phase(f, name, edges, r0, p0, i0)
                log(f"  {name}: {edges} edges in {time.monotonic() - p0:.1f} s")
        if "kprobe" in fams and REF_OBJECT.exists() and time.monotonic() < deadline:
            targets = list(
                dict.fromkeys(
                    spec.target for h in path if family_of[h] == "kprobe" for spec in report.hops[h].families["kprobe"]
                )
            )
            log(f"attach: {mode}: kprobe.multi reference over up to {len(targets)} functions ...")
            r0, p0, i0 = rcu_kthreads_ns(), time.monotonic(), interrupts(None)
            try:
                res["kprobe_multi"] = kprobe_multi(targets, scale_reps, gap)
                _phase(res["kprobe_multi"], "kprobe_multi", len(res["kprobe_multi"]["rows"]), r0, p0, i0)
            except PktpathError as exc:
                res["kprobe_multi"] = {"error": str(exc)}
        if len(fams) > 1 and time.monotonic() < deadline:
            log(f"attach: {mode}: the whole window, {len(path)} hops ...")
            w: dict[str, Any] = {"hops": path}
            r0, p0, i0 = rcu_kthreads_ns(), time.monotonic(), interrupts(None)
            w["group"] = group(engine, path, reps, gap, clock, False)
            _phase(w, "group", 4 * reps, r0, p0, i0)
            res["window"] = w
        res["shared_with_others_at_end"] = foreign_on(path)
    finally:
        engine.close()
    return res


# -- what the rest of the machine notices: a flood during the edges ------------


class Toggler(threading.Thread):
    """Attaches and detaches `hops` back to back on TOGGLER_CPU until stopped; counts edges, its own
    CPU time, and how long each hop the flood fires was attached."""

    def __init__(self, engine: Any, hops: list[str], fires: Sequence[str]) -> None:
        super().__init__(name="toggler", daemon=True)
        self.engine, self.hops, self.fires = engine, hops, [h for h in hops if h in fires]
        self.stop_event = threading.Event()
        self.edges = 0
        self.cpu_s = 0.0
        self.attached_s = 0.0  # summed over the fired hops
        self.started = self.ended = 0.0
        self.error = ""

    def run(self) -> None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {TOGGLER_CPU})  # this thread only (Linux: pid 0 = the caller)
        cpu0 = time.thread_time()
        self.started = time.perf_counter()
        try:
            while not self.stop_event.is_set():
                a0 = time.perf_counter()
                att = self.engine.attach_hops(self.hops)
                d0 = time.perf_counter()
                det = self.engine.detach_hops(self.hops)
                self.edges += 2
                # A hop is attached from the end of its own attach to the start of its own detach.
                on_at, off_at = a0, d0
                ends = {}
                for t in att:
                    on_at += t.wall_s
                    ends[t.hop] = on_at
                for t in det:
                    if t.hop in self.fires and t.hop in ends:
                        self.attached_s += off_at - ends[t.hop]
                    off_at += t.wall_s
        except (OSError, PktpathError) as exc:  # libbpf's and the engine's errors: reported with the trial
            self.error = f"{type(exc).__name__}: {exc}"
        self.ended = time.perf_counter()
        self.cpu_s = time.thread_time() - cpu0

    def stats(self) -> dict[str, Any]:
        seconds = self.ended - self.started
        per_hop_s = self.attached_s / len(self.fires) if self.fires else 0.0
        return {
            "edges": self.edges,
            "seconds": seconds,
            "edges_per_s": self.edges / seconds if seconds else 0.0,
            "cpu_share": self.cpu_s / seconds if seconds else 0.0,
            "fired_attached_share": per_hop_s / seconds if seconds else 0.0,
            **({"error": self.error} if self.error else {}),
        }


def measure_flood(rounds: int, seconds: float, log: Callable[[str], None]) -> dict[str, Any]:
    from bench.netpair import NetPair
    from bench.throughput import PAYLOAD, PORTS, RECEIVER_CPU, IperfServer, disturbed, drop_data_packets, iperf_trial
    from exporter.model.hops import PATH_ONLY_PROGRAMS

    engine, report = start_engine("auto")
    path = [h for h in PATH_ONLY_PROGRAMS if h in report.hops and report.hops[h].attached]
    unfired = [h for h in path if h not in FLOOD_FIRES]
    res: dict[str, Any] = {
        "rounds": rounds,
        "seconds_per_trial": seconds,
        "payload_bytes": PAYLOAD,
        "hops": path,
        "unfired": unfired,
        "fired": [h for h in path if h in FLOOD_FIRES],
        "trials": [],
        "discarded_trials": [],
    }
    try:
        engine.detach_hops(path)
        with NetPair() as pair:
            drop_data_packets(pair)
            server = IperfServer(pair, PORTS["drop"], RECEIVER_CPU)
            try:
                for rnd in range(1, rounds + 1):
                    k = (rnd - 1) % len(FLOOD_CONDITIONS)
                    for cond in FLOOD_CONDITIONS[k:] + FLOOD_CONDITIONS[:k]:
                        for attempt in (1, 2):
                            t = _flood_trial(engine, pair, cond, path, unfired, seconds, iperf_trial)
                            t.update(round=rnd, condition=cond, attempt=attempt)
                            t["disturbed"] = disturbed({**t, "workload": "drop"})
                            log(
                                f"  flood round {rnd} {cond:<15}{t['pps']:>11,.0f} pkt/s"
                                + (f", {t['toggler']['edges_per_s']:.0f} edges/s" if "toggler" in t else "")
                                + (f"  (disturbed: {t['disturbed']})" if t["disturbed"] else "")
                            )
                            if t["disturbed"] is None or attempt == 2:
                                break
                            res["discarded_trials"].append(t)
                        res["trials"].append(t)
            finally:
                server.stop()
    finally:
        engine.close()
    res["summary"] = summarize_flood(res["trials"])
    return res


def _flood_trial(
    engine: Any,
    pair: Any,
    cond: str,
    path: list[str],
    unfired: list[str],
    seconds: float,
    iperf_trial: Callable[..., dict[str, Any]],
) -> dict[str, Any]:
    toggler = None
    if cond == "attached":
        engine.attach_hops(path)
    elif cond.startswith("toggle"):
        toggler = Toggler(engine, unfired if cond == "toggle-unfired" else path, FLOOD_FIRES)
    seen = tracing_programs()
    irq0 = interrupts(0)
    try:
        if toggler:
            toggler.start()
        t = iperf_trial(pair, "drop", seconds, None)
    finally:
        if toggler:
            toggler.stop_event.set()
            toggler.join(30)
        if cond == "attached":
            engine.detach_hops(path)
    irq1 = interrupts(0)
    after = tracing_programs()
    t["ipis_cpu0"] = {k: irq1[k] - irq0[k] for k in irq1 if k in irq0}
    me = (os.getpid(),)
    t["foreign_tracing_programs"] = (
        max(s.foreign(me) for s in (seen, after) if s is not None) if seen is not None or after is not None else None
    )
    if toggler:
        t["toggler"] = toggler.stats()
    return t


def summarize_flood(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Per condition: median packets/s, the toggler's rate, and what each edge cost the flood's CPU."""
    import statistics

    def clean(cond: str) -> list[dict[str, Any]]:
        rows = [t for t in trials if t["condition"] == cond]
        return [t for t in rows if not t.get("disturbed")] or rows

    med = {c: statistics.median(t["pps"] for t in clean(c)) for c in FLOOD_CONDITIONS if clean(c)}
    out: dict[str, Any] = {}
    for cond in FLOOD_CONDITIONS:
        rows = clean(cond)
        if not rows:
            continue
        s: dict[str, Any] = {
            "n": len(rows),
            "pps": med[cond],
            "disturbed": sum(1 for t in trials if t["condition"] == cond and t.get("disturbed")),
            "cal_ipis_per_s": statistics.median(t["ipis_cpu0"].get("CAL", 0) / t["seconds"] for t in rows),
        }
        if "none" in med and cond != "none":
            s["vs_none"] = med[cond] / med["none"]
        togg = [t["toggler"] for t in rows if "toggler" in t]
        if togg and "none" in med:
            eps = statistics.median(x["edges_per_s"] for x in togg)
            share = statistics.median(x["fired_attached_share"] for x in togg)
            s.update(
                edges_per_s=eps,
                toggler_cpu_share=statistics.median(x["cpu_share"] for x in togg),
                fired_attached_share=share,
            )
            exp = (
                expected_pps(med["none"], med["attached"], share)
                if cond == "toggle-all" and "attached" in med
                else None
            )
            s.update(edge_disturbance(med["none"], med[cond], eps, exp), pps_expected=exp)
            none_cal = out.get("none", {}).get("cal_ipis_per_s")
            if none_cal is not None and eps:
                s["extra_cal_ipis_per_edge"] = (s["cal_ipis_per_s"] - none_cal) / eps
        out[cond] = s
    return out


# -- one kernel ---------------------------------------------------------------


def summarize(result: dict[str, Any]) -> None:
    """(Re)compute every summary from the raw rows."""
    for mres in result.get("modes", {}).values():
        units = [*mres.get("families", {}).values(), *([mres["window"]] if "window" in mres else [])]
        for unit in units:
            if "per_hop" in unit:
                unit["per_hop_summary"] = summarize_ops(unit["per_hop"], "hop")
            if "group" in unit:
                unit["group_summary"] = summarize_ops([dict(r, unit="group") for r in unit["group"]], "unit")["group"]
            if "scaling" in unit:
                unit["scaling_summary"] = scaling_rows(unit["scaling"])
        if mres.get("kprobe_multi", {}).get("rows"):
            mres["kprobe_multi"]["summary"] = scaling_rows(mres["kprobe_multi"]["rows"])
    result["window_costs"] = window_costs(result)


def window_costs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per mode: the window edge (every path hop that attached: attach all, detach all serially)
    priced at each of PERIODS."""
    out = []
    for mode, mres in result.get("modes", {}).items():
        unit = mres.get("window") or (
            next(iter(mres["families"].values())) if len(mres.get("families", {})) == 1 else None
        )
        g = (unit or {}).get("group_summary") or {}
        if not g.get("attach") or not g.get("detach") or not g["attach"]["cpu_ms"]:
            continue
        a, d = g["attach"], g["detach"]
        for period, window in PERIODS:
            out.append(
                {
                    "mode": mode,
                    "hops": len(unit["hops"]) if unit else 0,
                    **window_cost(
                        a["cpu_ms"]["median"],
                        d["cpu_ms"]["median"],
                        a["wall_ms"]["median"],
                        d["wall_ms"]["median"],
                        period,
                        window,
                    ),
                }
            )
    return out


def measure(args: argparse.Namespace, deadline: float, log: Callable[[str], None]) -> dict[str, Any]:
    from exporter.loader import libbpf

    result: dict[str, Any] = {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "libbpf": libbpf.version(),
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "reps": args.reps,
        "gap_ms": args.gap * 1e3,
        "scale_reps": args.scale_reps,
        "modes": {},
        "guest_clock": "instructions (-icount)" if args.real_clock else "real",
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }
    with contextlib.suppress(OSError):  # what an ftrace ops update walks (fentry, kprobes on ftrace)
        functions = Path("/sys/kernel/tracing/available_filter_functions").read_text().count("\n")
        result["ftrace_functions"] = functions
    clock = RealClock(args.real_clock) if args.real_clock else None
    if clock:
        result["real_clock_latency_ms"] = clock.latency_s * 1e3
    for spec in args.modes.split(","):
        mode, _, fams = spec.partition(":")
        result["modes"][mode] = measure_mode(
            mode,
            fams.split("+") if fams else None,
            args.reps,
            args.hop_reps or args.reps,
            args.gap,
            args.scale_reps,
            clock,
            deadline,
            log,
        )
    if args.flood:
        log(f"attach: flood, {args.flood_rounds} round(s) x {len(FLOOD_CONDITIONS)} conditions ...")
        result["flood"] = measure_flood(args.flood_rounds, args.flood_seconds, log)
    result["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    summarize(result)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.attach", description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=REPS, help="group edges: attach n x 2, detach n serial + n parallel")
    p.add_argument("--hop-reps", type=int, default=None, help="each hop alone (default: --reps)")
    p.add_argument("--gap", type=float, default=GAP_S, help="seconds between an attach and its detach, and after")
    p.add_argument("--scale-reps", type=int, default=SCALE_REPS)
    p.add_argument(
        "--modes",
        default="auto",
        help="probes.mode values, comma-separated; mode:fam1+fam2 measures only those families",
    )
    p.add_argument("--flood", action="store_true", help="also the UDP flood during edges (host)")
    p.add_argument("--flood-rounds", type=int, default=FLOOD_ROUNDS)
    p.add_argument("--flood-seconds", type=float, default=FLOOD_SECONDS)
    p.add_argument("--real-clock", type=Path, help="a file on a directory the host shares (guest: RealClock)")
    p.add_argument("--time-limit", type=float, default=HOST_TIME_LIMIT_S)
    p.add_argument("--output", type=Path, required=True)
    args = p.parse_args(argv)
    return worker_main(
        "bench.attach",
        args.output,
        args.time_limit,
        lambda deadline: measure(args, deadline, _log),
        (BenchError, PktpathError, OSError),
    )


# -- one run, host then guests (python -m bench --only attach) ------------------


def _worker(out: Path, reps: int, modes: str, time_limit: float, extra: Sequence[str] = ()) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.attach",
        "--output",
        str(out),
        "--reps",
        str(reps),
        "--modes",
        modes,
        "--time-limit",
        f"{time_limit:g}",
        *extra,
    ]


def _wait_quiet(log: Callable[[str], None]) -> dict[str, Any]:
    """Wait (at most QUIET_WAIT_S) until no one else's QEMU guest runs and no one else's program
    sits on a path tracepoint; go ahead after that and say what was seen."""
    from bench.hops import _other_qemu

    hooks = (
        "netif_receive_skb",
        "net_dev_queue",
        "net_dev_xmit",
        "fib_table_lookup",
        "fib6_table_lookup",
        "consume_skb",
        "skb_copy_datagram_iovec",
        "sk_data_ready",
    )
    t0 = time.monotonic()
    while True:
        qemu, shared = _other_qemu(), foreign_on(hooks)
        if not qemu and not shared:
            break
        if time.monotonic() - t0 > QUIET_WAIT_S:
            log("attach: going ahead although the machine is shared")
            break
        log(f"attach: waiting for a quiet machine (QEMU: {len(qemu)}, others' programs on {', '.join(shared) or '-'})")
        time.sleep(10)
    return {"waited_s": round(time.monotonic() - t0, 1), "other_qemu": len(qemu), "shared_tracepoints": shared}


def _host(work: Path, reps: int, flood_rounds: int, log: Callable[[str], None]) -> dict[str, Any]:
    out = work / "host.json"
    quiet = _wait_quiet(log)
    log(f"attach: host kernel {platform.release()}: {reps} repetitions ...")
    cmd = _worker(out, reps, "auto", HOST_TIME_LIMIT_S, ["--flood", "--flood-rounds", str(flood_rounds)])
    code = run_worker(cmd, HOST_TIME_LIMIT_S + 120)
    doc = read_worker_result(out, "the host run")
    doc.update(exit_status=code, quiet=quiet, loadavg_end=Path("/proc/loadavg").read_text().split()[:3])
    return doc


def _guest(work: Path, series: str, reps: int, log: Callable[[str], None]) -> dict[str, Any]:
    from bench.hops import GUEST_QEMU_OPTS, _other_qemu, guest_run
    from tests.vm.runner import VMError, kernel_image, kernel_package

    try:
        kernel_image(series)
    except VMError as exc:
        return {"status": f"skipped: {exc}"}
    results = work / f"guest-{series}"
    results.mkdir(parents=True, exist_ok=True)
    out = results / "attach.json"
    others = _other_qemu()
    log(f"attach: booting {series} under QEMU ({GUEST_QEMU_OPTS}), {reps} repetitions ...")
    qemus: set[str] = set()
    cmd = _worker(
        out,
        reps,
        "auto,kprobe:kprobe",
        GUEST_TIME_LIMIT_S,
        [
            "--real-clock",
            str(results / "clock"),
            "--hop-reps",
            str(GUEST_HOP_REPS),
            "--scale-reps",
            str(GUEST_SCALE_REPS),
        ],
    )
    started = time.monotonic()
    run = guest_run(series, cmd, results, GUEST_TIME_LIMIT_S + 180, log, qemus, set())
    if isinstance(run, str):
        return {"status": f"skipped: {run}"}
    doc = read_worker_result(out, f"the {series} guest")
    doc.update(
        guest=run.describe(),
        guest_seconds=round(time.monotonic() - started, 1),
        kernel_package=kernel_package(series),
        qemu_opts=GUEST_QEMU_OPTS,
        other_qemu_at_start=len(others),
        qemu_processes_seen=sorted(qemus),
        host_loadavg_end=Path("/proc/loadavg").read_text().split()[:3],
    )
    return doc


def measure_attach(
    out: dict[str, Any],
    reps: int,
    flood_rounds: int,
    log: Callable[[str], None],
    host: bool = True,
    guests: Sequence[str] = (GUEST_SERIES,),
) -> None:
    """This machine's kernel, then each guest, into `out` keyed host / guest-<series>; filled as each
    part ends, so an interrupted run keeps what was measured."""
    with tempfile.TemporaryDirectory(prefix="pktpath-attach-") as tmp:
        work = Path(tmp)
        if host:
            out["host"] = {"status": "interrupted"}
            out["host"] = _host(work, reps, flood_rounds, log)
        for series in guests:
            out[f"guest-{series}"] = {"status": "interrupted"}
            out[f"guest-{series}"] = _guest(work, series, reps, log)


if __name__ == "__main__":
    sys.exit(main())


# -- the printed table ----------------------------------------------------------

LABEL = 36  # width of the first column


def _ms(value: float, width: int) -> str:
    # Three decimals fill all 8 columns from 1000 ms on ("2129.3752293.255" in 6067c62-attach.json):
    # one decimal there keeps a space between the cells.
    return f"{value:>{width}.3f}" if abs(value) < 1000 else f"{value:>{width}.1f}"


def _cell(s: dict[str, Any] | None, width: int = 8) -> str:
    if not s:
        return f"{'-':>{width}}{'-':>{width}}"
    return _ms(s["median"], width) + _ms(s["p95"], width)


def _pair(op: dict[str, Any] | None) -> str:
    op = op or {}
    return _cell(op.get("wall_ms")) + _cell(op.get("cpu_ms"))


def _row(label: str, links: object, attach: dict[str, Any] | None, detach: dict[str, Any] | None) -> str:
    left = _pair(attach) if attach is not None else " " * 32
    right = _pair(detach) if detach is not None else ""
    return f"  {label:<{LABEL}}{links!s:>5}  {left} {right}".rstrip()


def _med(row: dict[str, Any] | None, what: str) -> float:
    return float(row[what]["median"]) if row and row.get(what) else float("nan")


def _scaling_line(row: dict[str, Any], par: dict[str, Any] | None, att: dict[str, Any] | None) -> str:
    label = f"  {row['k']} together"
    return (
        f"  {label:<{LABEL}}{'':>5}  attach {_med(att, 'wall_ms'):.1f} ms (CPU {_med(att, 'cpu_ms'):.1f});"
        f" detach serial {row['wall_ms']['median']:.1f} ms (CPU {row['cpu_ms']['median']:.1f}, wall"
        f" {row['wall_ms_per_hook']:.1f} per hook), thread per hop {_med(par, 'wall_ms'):.1f} ms"
        f" (CPU {_med(par, 'cpu_ms'):.1f})"
    )


def _phase_lines(phases: dict[str, Any], lines: list[str]) -> None:
    rcu = ", ".join(
        f"{k} {v['rcu_kthreads_ms_per_edge']:.3f}"
        for k, v in phases.items()
        if v.get("rcu_kthreads_ms_per_edge") is not None
    )
    if rcu:
        lines.append(f"  {'':<{LABEL}}RCU kthreads' run time per edge, ms: {rcu}")
    ipis = ", ".join(
        f"{k} {v['ipis_per_edge']['CAL']:.1f}"
        for k, v in phases.items()
        if (v.get("ipis_per_edge") or {}).get("CAL") is not None
    )
    if ipis:
        lines.append(f"  {'':<{LABEL}}function-call IPIs per edge, all CPUs: {ipis}")


def _kprobe_multi_lines(km: dict[str, Any], lines: list[str]) -> None:
    if "error" in km:
        lines.append(f"  kprobe.multi reference: {km['error']}")
        return
    rows = km.get("summary") or []
    lines.append(
        f"  kprobe.multi reference (an empty program, one link over k of the {len(km['functions'])} functions):"
    )
    for k in dict.fromkeys(r["k"] for r in rows):
        att = next((r for r in rows if r["k"] == k and r["how"] == "attach"), None)
        det = next((r for r in rows if r["k"] == k and r["how"] == "detach"), None)
        label = f"  {k} in one link"
        lines.append(
            f"  {label:<{LABEL}}{'':>5}  attach {_med(att, 'wall_ms'):.1f} ms (CPU {_med(att, 'cpu_ms'):.1f});"
            f" detach {_med(det, 'wall_ms'):.1f} ms (CPU {_med(det, 'cpu_ms'):.1f})"
        )
    _phase_lines(km.get("phases", {}), lines)


def _group_lines(what: str, n: int, links: int, g: dict[str, Any], lines: list[str]) -> None:
    lines.append(_row(f"{what}, {n} serial", links or "", g.get("attach"), g.get("detach")))
    if "detach-parallel" in g:
        lines.append(_row("  detach, thread per hop", "", None, g["detach-parallel"]))
    if "attach-after-detach" in g:
        lines.append(_row("  attach < 1 GP after detach", "", g["attach-after-detach"], None))
    real = [
        f"{op} {g[op]['real_ms']['median']:.1f} (p95 {g[op]['real_ms']['p95']:.1f})"
        for op in ("attach", "detach", "detach-parallel")
        if "real_ms" in (g.get(op) or {})
    ]
    if real:
        lines.append(f"  {'':<{LABEL}}real time on the host, ms: {'; '.join(real)}")


def _mode_lines(mode: str, m: dict[str, Any], lines: list[str]) -> None:
    fams = ", ".join(f"{f}: {len(v['hops'])}" for f, v in m["families"].items())
    lines.append(
        f"  probes.mode {mode} ({fams} path hops); always attached: {', '.join(m['always_on']) or '-'};"
        f" others' programs on the path hooks: {', '.join(m['shared_with_others_at_start']) or 'none'}"
    )
    lines.append(
        f"  {'hook (family)':<{LABEL}}{'links':>5}  {'attach wall':>16}{'attach CPU':>16}"
        f" {'detach wall':>16}{'detach CPU':>16}"
    )
    lines.append(f"  {'':<{LABEL}}{'':>5}  " + "  median     p95" * 2 + " " + "  median     p95" * 2)
    units = list(m["families"].items()) + ([("window", m["window"])] if "window" in m else [])
    for fam, unit in units:
        links = {row["hop"]: row["links"] for row in unit.get("per_hop", [])}
        for hop, ops in (unit.get("per_hop_summary") or {}).items():
            lines.append(_row(f"{hop} ({fam})", links.get(hop, 0), ops.get("attach"), ops.get("detach")))
        if unit.get("group_summary"):
            what = "all path hops" if fam == "window" else f"{fam} hops"
            glinks = next((r["links"] for r in unit.get("group", []) if r["op"] == "attach"), 0)
            _group_lines(what, len(unit["hops"]), glinks, unit["group_summary"], lines)
        rows = unit.get("scaling_summary") or []
        for row in rows:
            if row["how"] == "serial":
                att = next((x for x in rows if x["k"] == row["k"] and x["how"] == "attach"), None)
                par = next((x for x in rows if x["k"] == row["k"] and x["how"] == "parallel"), None)
                lines.append(_scaling_line(row, par, att))
        _phase_lines(unit.get("phases", {}), lines)
    if "kprobe_multi" in m:
        _kprobe_multi_lines(m["kprobe_multi"], lines)


def _machine_line(r: dict[str, Any]) -> str | None:
    if r.get("quiet"):
        q = r["quiet"]
        return (
            f"  machine: waited {q['waited_s']:g} s for quiet; other QEMU guests {q['other_qemu']}; others'"
            f" programs on path tracepoints: {', '.join(q['shared_tracepoints']) or 'none'};"
            f" load avg {' '.join(r['loadavg_start'])} -> {' '.join(r['loadavg_end'])}"
        )
    if r.get("qemu_processes_seen") is not None:
        load = " ".join(r.get("host_loadavg_end", []))
        return (
            f"  guest: {r.get('kernel_package', '?')}, {r.get('qemu_opts', '')}; QEMU processes seen on the"
            f" host: {len(r['qemu_processes_seen'])}; host load avg at end {load}"
        )
    return None


def _kernel(label: str, r: dict[str, Any], lines: list[str]) -> None:
    if "modes" not in r:
        lines.append(f"Attach/detach, {label}: {r.get('status', '?')}")
        if r.get("guest"):
            lines.append(f"  {r['guest']}")
        return
    clock = "guest ms (-icount: instructions)" if r.get("guest_clock", "").startswith("instr") else "ms"
    lines.append(
        f"Attach/detach of packet-path hooks, {label}: kernel {r['kernel']}, libbpf {r['libbpf']},"
        f" {r['reps']} reps {r['gap_ms']:.0f} ms apart; {clock}; CPU = the calling thread(s)"
    )
    machine = _machine_line(r)
    if machine:
        lines.append(machine)
    if r.get("status") != "ok":
        lines.append(f"  status: {r.get('status')}")
    for mode, m in r["modes"].items():
        _mode_lines(mode, m, lines)
    costs = r.get("window_costs") or []
    if costs:
        lines.append("  window edges priced: median CPU of attach + detach per period; opening edge's wall / window")
        for c in costs:
            lines.append(
                f"    {c['mode']:<7}{c['hops']:>3} hops, period {c['period_s']:>3g} s, window"
                f" {c['window_s']:>3g} s: CPU {c['cpu_share_of_core']:.4%} of a core,"
                f" opening edge {c['blocked_share_of_window']:.3%} of the window"
            )
    if "flood" in r:
        _flood(r["flood"], lines)


def _flood(f: dict[str, Any], lines: list[str]) -> None:
    lines.append(
        f"  flood: UDP {f['payload_bytes']}-byte payload dropped by iptables, sender on CPU 0, toggler on CPU"
        f" {TOGGLER_CPU}, {f['rounds']} round(s) x {f['seconds_per_trial']:g} s; the flood fires"
        f" {', '.join(f['fired'])}; not {', '.join(f['unfired'])}"
    )
    lines.append(
        f"  {'condition':<16}{'n':>3}{'pkt/s':>11}{'vs none':>9}{'edges/s':>9}{'toggler CPU':>12}"
        f"{'CAL IPIs/s':>11}{'+IPIs/edge':>11}{'flood CPU us/edge':>18}"
    )
    for cond, s in f["summary"].items():
        cells = [
            f"  {cond:<16}{s['n']:>3}{s['pps']:>11,.0f}",
            f"{s['vs_none']:>9.1%}" if "vs_none" in s else f"{'':>9}",
            f"{s['edges_per_s']:>9.0f}{s['toggler_cpu_share']:>12.1%}" if "edges_per_s" in s else f"{'':>21}",
            f"{s['cal_ipis_per_s']:>11,.0f}",
            f"{s['extra_cal_ipis_per_edge']:>11.1f}" if s.get("extra_cal_ipis_per_edge") is not None else " " * 11,
            f"{s['flood_cpu_us_per_edge']:>18.1f}" if s.get("flood_cpu_us_per_edge") is not None else "",
        ]
        line = "".join(cells).rstrip()
        if s.get("disturbed"):
            line += f"  [{s['disturbed']} disturbed]"
        lines.append(line)
    tog = f["summary"].get("toggle-all", {})
    if tog.get("pps_expected"):
        lines.append(
            f"  toggle-all: the hooks the flood fires were attached {tog['fired_attached_share']:.0%} of the"
            f" time, worth {tog['pps_expected']:,.0f} pkt/s by themselves; its loss per edge is against that"
        )


def render(a: dict[str, Any], lines: list[str]) -> None:
    for i, (label, r) in enumerate(a.items()):
        if i:
            lines.append("")
        _kernel(label, r, lines)
