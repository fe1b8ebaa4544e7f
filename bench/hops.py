"""Per-hop cost of each attach family (fentry, kprobe, tracepoint) for the same hop, in one run.

`python -m bench --only hops` runs this module twice: on the running kernel (here, the locked-down
host: tracepoints only) and inside a stock 6.12 kernel under QEMU (scripts/vm/run-in-kernel), where
fentry and kprobes attach too.  Each run is `python -m bench.hops --output FILE`, which measures
the kernel it runs on and writes JSON.

Workload: the throughput bench's `drop` traffic -- iperf3 UDP, 64-byte payload, `-b 0`, sender
pinned to CPU 0, every data packet dropped by an iptables rule in the receiver namespace.  On veth
the receive path runs in the sender's softirq, so each packet passes each measured hop exactly once
on the sender's core (netif_receive_skb, ip_rcv, then kfree_skb with NETFILTER_DROP), and the
sender's packets/s is the throughput of that core.  The bpf_stats run counts check "exactly once".

Variants (bench/bpf/hops.bpf.c): per hop, per attach flavor, an empty program (the family's
dispatch cost alone) and pktpath's real program body (drop counting; path entry with paths off, as
in the default config, and `body+paths` with paths on at 1 in 1000).  One variant is attached at a
time.  Rounds interleave every variant with two nothing-attached trials; the order rotates each
round.  Then two passes with kernel.bpf_stats_enabled=1 read each program's run_time_ns/run_cnt
(the previous value of the sysctl is restored right after: it is host-wide).  The guest runs with
-icount (GUEST_QEMU_OPTS), so its figures count instructions and the host's load cannot move them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.hopcost import (
    FLAVOR_FAMILY,
    NONE,
    compare_families,
    mark_contended,
    parse_fdinfo,
    per_run_ns,
    summarize_end_to_end,
    summarize_in_program,
    variant_name,
)
from bench.netpair import NetPair
from bench.procs import BenchError, read_worker_result, run_worker, worker_main
from bench.throughput import (
    PAYLOAD,
    PORTS,
    RECEIVER_CPU,
    IperfServer,
    disturbed,
    drop_data_packets,
    iperf_trial,
    iptables_dropped,
)
from exporter.kernel.facade import filter_maps
from exporter.loader import libbpf
from exporter.loader.engine import default_object_path
from exporter.loader.probes import group_hops, parse_program
from exporter.paths.kernel_config import PathControl, PathSettings

if TYPE_CHECKING:
    from tests.vm.runner import GuestResult

OBJECT = Path(__file__).resolve().parent / "bpf" / "hops.bpf.o"
STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
PATHS_ONE_IN = 1000  # body+paths: the agent's default sampling when paths are on

# bench hop -> (pktpath's hop name, what is hooked)
HOPS = {
    "drop": ("kfree_skb", "tracepoint skb:kfree_skb; functions: sk_skb_reason_drop (6.11+), else kfree_skb_reason"),
    "rx": ("netif_receive_skb", "tracepoint net:netif_receive_skb; functions: __netif_receive_skb_one_core"),
    "iprcv": ("ip_rcv", "function ip_rcv (no tracepoint)"),
}
_SHORT = {"tp_btf": "tpbtf", "raw_tp": "rawtp", "tracepoint": "tp", "fentry": "fentry", "kprobe": "kprobe"}


@dataclass(frozen=True)
class Variant:
    hop: str
    flavor: str  # tp_btf | raw_tp | tracepoint (classic, perf) | fentry | kprobe
    body: str  # empty | body | body+paths

    @property
    def name(self) -> str:
        return variant_name(self.hop, self.flavor, self.body)

    @property
    def family(self) -> str:
        return FLAVOR_FAMILY[self.flavor]

    def programs(self) -> list[str]:
        """Candidate programs in hops.bpf.o, first that loads: the drop hop's function twins
        differ by kernel (sk_skb_reason_drop since 6.11, kfree_skb_reason before)."""
        what = "body" if self.body.startswith("body") else "empty"
        base = f"{self.hop}_{_SHORT[self.flavor]}"
        names = [f"{base}_{what}"]
        if self.hop == "drop" and self.flavor in ("fentry", "kprobe"):
            names.append(f"{base}61_{what}")
        return names


def _variants() -> list[Variant]:
    v: list[Variant] = []
    for flavor in ("tp_btf", "raw_tp", "tracepoint", "fentry", "kprobe"):
        v.append(Variant("drop", flavor, "empty"))
        if flavor in ("tp_btf", "fentry", "kprobe"):
            v.append(Variant("drop", flavor, "body"))
    for flavor in ("tp_btf", "raw_tp", "tracepoint", "fentry", "kprobe"):
        v.append(Variant("rx", flavor, "empty"))
        if flavor in ("tp_btf", "fentry", "kprobe"):
            v += [Variant("rx", flavor, "body"), Variant("rx", flavor, "body+paths")]
    for flavor in ("fentry", "kprobe"):
        v += [Variant("iprcv", flavor, "empty"), Variant("iprcv", flavor, "body")]
    return v


VARIANTS = _variants()


@dataclass
class Loaded:
    """One variant's program, loaded in its own object (so one refused program costs only itself)."""

    variant: Variant
    program: str = ""
    obj: libbpf.BpfObject | None = None
    prog: libbpf.Program | None = None
    error: str = ""
    link: libbpf.Link | None = field(default=None, repr=False)

    def load(self) -> None:
        for name in self.variant.programs():
            obj = libbpf.BpfObject(str(OBJECT))
            try:
                prog = next(p for p in obj.programs if p.name == name)
                for p in obj.programs:
                    p.set_autoload(p is prog)
                obj.load()
            except (libbpf.LibbpfError, StopIteration) as exc:
                obj.close()
                if not self.error:  # the first candidate's reason is the one worth reading
                    self.error = f"load {name}: {_why(exc)}"
                continue
            if self.variant.body == "body+paths":
                _paths_on(obj)
            self.obj, self.prog, self.program, self.error = obj, prog, name, ""
            try:  # attach once now: kprobes load everywhere but attach only where the kernel has them
                self.attach()
            except libbpf.LibbpfError as exc:
                self.error = f"attach {name}: {_why(exc)}"
                self.close()
            finally:
                self.detach()
            return

    @property
    def ok(self) -> bool:
        return self.prog is not None

    def attach(self) -> None:
        assert self.prog is not None
        self.link = self.prog.attach()

    def detach(self) -> None:
        if self.link is not None:
            self.link.destroy()
            self.link = None

    def counters(self) -> dict[str, int]:
        assert self.prog is not None
        return parse_fdinfo(Path(f"/proc/self/fdinfo/{self.prog.fd}").read_text())

    def close(self) -> None:
        self.detach()
        if self.obj is not None:
            self.obj.close()
        self.obj, self.prog = None, None


def _paths_on(obj: libbpf.BpfObject) -> None:
    """Paths on at 1 in PATHS_ONE_IN, written by the agent's own PathControl (the path_config
    layout is the agent's business: its fields change, e.g. 1-in-N as a threshold).  No budget, no
    drop capture, no filter."""
    settings = PathSettings(enabled=True, one_in=PATHS_ONE_IN, drop_one_in=0, max_paths_per_second=0)
    PathControl(filter_maps(obj.map)).apply(settings)


def _why(exc: BaseException) -> str:
    if isinstance(exc, StopIteration):
        return "no such program in hops.bpf.o"
    log = getattr(exc, "log", []) or []
    last = next((ln.strip() for ln in reversed(log) if "libbpf:" in ln or "failed" in ln), "")
    return f"{exc}" + (f" ({last[:200]})" if last else "")


@contextlib.contextmanager
def attached(v: Loaded | None) -> Iterator[None]:
    if v is not None:
        v.attach()
    try:
        yield
    finally:
        if v is not None:
            v.detach()


@contextlib.contextmanager
def bpf_stats() -> Iterator[str]:
    """kernel.bpf_stats_enabled=1 for the block, then its previous value (it is host-wide, and
    costs every BPF program on the machine two clock reads per run while on)."""
    before = STATS_SYSCTL.read_text().strip()
    STATS_SYSCTL.write_text("1")
    try:
        yield before
    finally:
        STATS_SYSCTL.write_text(before)


def agent_candidates() -> dict[str, list[str]]:
    """Each pktpath hop's candidate families, best first, read from the agent's own BPF object
    (the loader's rule: exporter/loader/probes.py)."""
    obj = libbpf.BpfObject(default_object_path())
    try:
        specs = [s for p in obj.programs if (s := parse_program(p.name, p.section))]
    finally:
        obj.close()
    return {hop: list(status.families) for hop, status in group_hops(specs).items()}


def _trial(pair: NetPair, seconds: float, count_drops: bool = False) -> dict[str, Any]:
    # Reading the rule's counter costs two `ip netns exec iptables` per trial: seconds under
    # emulation, so only the bpf_stats pass (which checks runs against packets) does it.
    before = iptables_dropped(pair) if count_drops else 0
    t = iperf_trial(pair, "drop", seconds, None)
    if count_drops:
        t["iptables_dropped"] = iptables_dropped(pair) - before
    return t


def measure(
    rounds: int, seconds: float, stats_seconds: float, deadline: float, log: Callable[[str], None]
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "rounds_planned": rounds,
        "seconds_per_trial": seconds,
        "stats_seconds": stats_seconds,
        "payload_bytes": PAYLOAD,
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "tracefs": os.path.exists("/sys/kernel/tracing/events"),
        "hops": {h: {"pktpath_hop": p, "hooked": w} for h, (p, w) in HOPS.items()},
        "trials": [],
        "discarded_trials": [],
        "stats_runs": [],
    }
    if not OBJECT.exists():
        raise BenchError(f"{OBJECT} missing: make -C bench/bpf")
    cands = agent_candidates()
    result["agent_candidates"] = {h: cands.get(p, []) for h, (p, _w) in HOPS.items()}
    log(f"hops: loading {len(VARIANTS)} variants on {platform.release()} ...")
    loaded = [Loaded(v) for v in VARIANTS]
    t0 = time.monotonic()
    try:
        for lv in loaded:
            lv.load()
        result["load_seconds"] = round(time.monotonic() - t0, 2)
        result["variants"] = {
            lv.variant.name: ({"program": lv.program} if lv.ok else {"unavailable": lv.error}) for lv in loaded
        }
        ready = [lv for lv in loaded if lv.ok]
        for lv in loaded:
            if not lv.ok:
                log(f"  {lv.variant.name}: unavailable: {lv.error}")
        with NetPair() as pair:
            drop_data_packets(pair)
            server = IperfServer(pair, PORTS["drop"], RECEIVER_CPU if (os.cpu_count() or 1) > 1 else None)
            try:
                _rounds(pair, ready, rounds, seconds, deadline, result, log)
                _stats_pass(pair, ready, stats_seconds, 1 if rounds == 1 else 2, deadline, result, log)
            finally:
                server.stop()
    finally:
        names = [lv.variant.name for lv in loaded if lv.ok]
        for lv in loaded:
            lv.close()
    result["measured"] = names
    summarize_result(result)
    return result


def summarize_result(result: dict[str, Any]) -> None:
    """(Re)compute the summaries from the raw trials: the host calls it again after marking the
    guest's trials that ran while someone else's QEMU shared the cores."""
    names = result["measured"]
    result["end_to_end"] = summarize_end_to_end(result["trials"], names)
    result["in_program"] = summarize_in_program(result["stats_runs"], names)
    result["comparisons"] = [
        compare_families(hop, result["end_to_end"], body, result["agent_candidates"][hop])
        for hop in HOPS
        for body in ("empty", "body", "body+paths")
        if any(n.startswith(f"{hop}/") and n.endswith(f"/{body}") for n in names)
    ]


def _rounds(
    pair: NetPair,
    ready: list[Loaded],
    rounds: int,
    seconds: float,
    deadline: float,
    result: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    # Two baselines per round, half a round apart: one per round would pair every variant with a
    # trial up to a whole round away, and the machine drifts more than the smallest costs measured.
    half = len(ready) // 2
    order: list[Loaded | None] = [None, *ready[:half], None, *ready[half:]]
    round_cost: float | None = None
    for rnd in range(1, rounds + 1):
        started = time.monotonic()
        if round_cost is not None and started + round_cost > deadline:
            result["truncated"] = f"stopped after {rnd - 1} rounds to stay within the time limit"
            log(result["truncated"])
            break
        k = (rnd - 1) % len(order)  # rotate, so no variant always runs first (or right after boot work)
        for lv in order[k:] + order[:k]:
            name = lv.variant.name if lv else NONE
            for attempt in (1, 2):
                with attached(lv):
                    t = _trial(pair, seconds)
                t.update(round=rnd, variant=name, attempt=attempt)
                t["disturbed"] = disturbed({**t, "workload": "drop"})
                log(
                    f"  round {rnd} {name:<26} {t['pps']:>11,.0f} pkt/s"
                    + (f"  (disturbed: {t['disturbed']})" if t["disturbed"] else "")
                )
                if t["disturbed"] is None or attempt == 2:
                    break
                result["discarded_trials"].append(t)
            result["trials"].append(t)
        round_cost = time.monotonic() - started
    result["rounds_done"] = max((t["round"] for t in result["trials"]), default=0)


def _stats_pass(
    pair: NetPair,
    ready: list[Loaded],
    seconds: float,
    passes: int,
    deadline: float,
    result: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    if time.monotonic() + len(ready) * (seconds + 3) > deadline:
        result["stats_skipped"] = "no time left before the deadline"
        log("hops: bpf_stats pass skipped: no time left")
        return
    with bpf_stats() as before:
        result["bpf_stats_enabled_before"] = before
        for rnd in range(1, passes + 1):
            if rnd > 1 and time.monotonic() + len(ready) * (seconds + 8) > deadline:
                result["stats_truncated"] = f"stopped after {rnd - 1} pass(es) to stay within the time limit"
                break
            for lv in ready if rnd % 2 else ready[::-1]:
                c0 = lv.counters()
                with attached(lv):
                    t = _trial(pair, seconds, count_drops=True)
                ns, runs = per_run_ns(c0, lv.counters())
                row = {
                    "variant": lv.variant.name,
                    "round": rnd,
                    "ns_per_run": ns,
                    "run_cnt": runs,
                    "packets": t["sent_packets"],
                    "iptables_dropped": t["iptables_dropped"],
                    "pps": t["pps"],
                }
                result["stats_runs"].append(row)
                log(
                    f"  stats {rnd} {lv.variant.name:<26} {ns if ns is None else round(ns, 1)} ns/run,"
                    f" {runs:,} runs for {t['sent_packets']:,} packets"
                )


# -- one run, both kernels (python -m bench --only hops) ------------------------

GUEST_SERIES = "6.12"
HOST_TIME_LIMIT_S = 300.0
GUEST_TIME_LIMIT_S = 1200.0  # the guest command's own bound; the VM gets BOOT_ALLOWANCE more
# Guest time counts instructions (-icount) while the guest is busy: packets per guest second
# then measure instructions per packet, which another QEMU or a busy host cannot change.  Without
# it the guest's clock follows the host's, and other engineers' guests on this 2-core machine
# (they start at any time) made most trials of a run meaningless.  -icount runs the vCPUs in one
# host thread (no MTTCG): slower, but the sender's numbers no longer depend on the host.
# shift=1: 2 ns per instruction, a 500 MIPS guest, so a 2 s trial is 10^9 instructions, which this
# machine's TCG runs in about as many seconds.  sleep stays on: with sleep=off an idle guest's clock
# jumps to its next timer, and waiting for 9p I/O (a Python import) then took a minute of guest time.
GUEST_QEMU_OPTS = "-accel tcg,tb-size=128 -icount shift=1"
QEMU_WAIT_S = 600.0  # how long to wait for someone else's QEMU guest to end (2 cores: one guest at a time)
_TRIAL_LINE = re.compile(r"\s*(round|stats) (\d+) (\S+)\s")
_SHARED = "another QEMU guest ran on the host meanwhile"
_TRACEFS_PRIVATE = 'mount -t tracefs nodev /sys/kernel/tracing && exec "$0" "$@"'


def _worker(out: Path, rounds: int, seconds: float, stats_seconds: float, time_limit: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.hops",
        "--output",
        str(out),
        "--rounds",
        str(rounds),
        "--seconds",
        f"{seconds:g}",
        "--stats-seconds",
        f"{stats_seconds:g}",
        "--time-limit",
        f"{time_limit:g}",
    ]


def _host(
    workdir: Path, rounds: int, seconds: float, stats_seconds: float, log: Callable[[str], None]
) -> dict[str, Any]:
    out = workdir / "host.json"
    cmd = _worker(out, rounds, seconds, stats_seconds, HOST_TIME_LIMIT_S)
    if not os.path.exists("/sys/kernel/tracing/events"):
        # Classic tracepoints are found through tracefs.  Where it is not mounted (the reference
        # machine) it is mounted in a private mount namespace for this run alone, as the throughput
        # bench does for bpftrace; the network namespaces are created inside it and go with it.
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", _TRACEFS_PRIVATE, *cmd]
    try:
        waited = _wait_for_quiet(log)
    except BenchError as exc:
        return {"status": f"skipped: {exc}"}  # the guest half does not need the quiet: it still runs
    log(f"hops: host kernel {platform.release()}: {rounds} round(s) ...")
    code = run_worker(cmd, HOST_TIME_LIMIT_S + 120)
    doc = read_worker_result(out, "the host run")
    doc.update(exit_status=code, waited_for_other_qemu_s=waited)
    return doc


def _wait_for_quiet(log: Callable[[str], None], required: bool = True) -> float:
    """Wait (bounded) until nobody else's QEMU guest runs: under software emulation a guest keeps
    both of this machine's cores busy, which would disturb a measurement on the host (`required`),
    and two guests of ours would slow someone else's twice as much.  A guest with -icount does not
    need the quiet, so after the wait it goes ahead anyway."""
    t0 = time.monotonic()
    limit = QEMU_WAIT_S if required else QEMU_WAIT_S / 5
    while (others := _other_qemu()) and time.monotonic() - t0 < limit:
        log(f"hops: waiting for another QEMU guest to end ({others[0][:60]}) ...")
        time.sleep(10)
    if others and required:
        raise BenchError(f"another QEMU guest kept running for {QEMU_WAIT_S:.0f} s ({others[0][:60]})")
    if others:
        log("hops: other QEMU guests still run; going ahead (-icount: the guest's figures do not depend on them)")
    return round(time.monotonic() - t0, 1)


def _other_qemu() -> list[str]:
    """Command lines of QEMU processes running now (someone else's guests)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                argv0 = (d / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
                if os.path.basename(argv0).startswith("qemu-system"):
                    found.append(f"{d.name} {argv0}")
    return found


def _follow(
    path: Path, stop: threading.Event, log: Callable[[str], None], qemus: set[str], contended: set[tuple[int, str]]
) -> None:
    """Relay the guest command's output (tee'd to the shared results dir) as it arrives, and note
    every QEMU seen meanwhile: a second one is someone else's guest competing for the two cores,
    which the guest itself cannot see (its clock follows the host's, so its CPU accounting does not
    show the vCPU being descheduled)."""
    pos = 0
    shared = False  # another QEMU seen since the guest's last trial line
    while not stop.is_set():
        running = _other_qemu()
        qemus.update(running)
        shared = shared or len(running) > 1  # ours, and someone else's
        with contextlib.suppress(OSError):
            with path.open("rb") as f:
                f.seek(pos)
                chunk = f.read()
            if b"\n" in chunk:
                chunk = chunk[: chunk.rfind(b"\n") + 1]
                pos += len(chunk)
                for line in chunk.decode(errors="replace").splitlines():
                    log(
                        f"  [guest] {line}"
                        + ("  (host shared with another QEMU)" if shared and "-icount" not in GUEST_QEMU_OPTS else "")
                    )
                    # A trial's line comes when it ends: it ran since the previous line.
                    if (m := _TRIAL_LINE.match(line)) and shared:
                        contended.add(
                            (int(m.group(2)), m.group(3)) if m.group(1) == "round" else (-int(m.group(2)), m.group(3))
                        )
                    if m:
                        shared = len(running) > 1
        stop.wait(1.0)


def guest_run(
    series: str,
    cmd: list[str],
    results: Path,
    timeout: float,
    log: Callable[[str], None],
    qemus: set[str],
    contended: set[tuple[int, str]],
) -> GuestResult | str:
    """Run a worker in the `series` guest (GUEST_QEMU_OPTS) while _follow relays its output and
    notes the QEMU processes seen; the guest's result, or why the VM could not start."""
    from tests.vm.runner import VMError, run_in_kernel

    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(results / "guest.log", stop, log, qemus, contended), daemon=True)
    follower.start()
    try:
        return run_in_kernel(series, cmd, results, timeout=timeout, qemu_opts=GUEST_QEMU_OPTS)
    except VMError as exc:
        return str(exc)
    finally:
        stop.set()
        follower.join(5)


def _guest(
    workdir: Path, series: str, rounds: int, seconds: float, stats_seconds: float, log: Callable[[str], None]
) -> dict[str, Any]:
    from tests.vm.runner import VMError, kernel_image, kernel_package

    try:
        kernel_image(series)
    except VMError as exc:
        return {"status": f"skipped: {exc}"}
    try:
        waited = _wait_for_quiet(log, required="-icount" not in GUEST_QEMU_OPTS)
    except BenchError as exc:
        return {"status": f"skipped: {exc}"}
    results = workdir / f"guest-{series}"
    results.mkdir(parents=True, exist_ok=True)
    out = results / "hops.json"
    log(f"hops: booting {series} under QEMU (software emulation), {rounds} round(s) ...")
    qemus: set[str] = set()
    contended: set[tuple[int, str]] = set()  # (round, variant); stats passes as (-pass, variant)
    run = guest_run(
        series,
        _worker(out, rounds, seconds, stats_seconds, GUEST_TIME_LIMIT_S),
        results,
        GUEST_TIME_LIMIT_S + 120 + 60,
        log,
        qemus,
        contended,
    )
    if isinstance(run, str):
        return {"status": f"skipped: {run}"}
    doc = read_worker_result(out, f"the {series} guest")
    doc.update(
        guest=run.describe(),
        guest_seconds=round(run.seconds, 1),
        kernel_package=kernel_package(series),
        qemu_opts=GUEST_QEMU_OPTS,
        waited_for_other_qemu_s=waited,
        qemu_processes_seen=sorted(qemus),
        host_loadavg_end=Path("/proc/loadavg").read_text().split()[:3],
    )
    if "measured" in doc and "-icount" not in GUEST_QEMU_OPTS:
        # The guest cannot see that its vCPUs were descheduled (its clock follows the host's, so
        # iperf3's CPU figure stays near 100 %): the host marks those trials and summarizes again.
        doc["trials_marked_shared"] = mark_contended(doc["trials"], contended, _SHARED)
        stats = [dict(r, round=-r.get("round", 1)) for r in doc["stats_runs"]]
        doc["stats_runs_marked_shared"] = mark_contended(stats, contended, _SHARED)
        for r, marked in zip(doc["stats_runs"], stats, strict=True):
            r["disturbed"] = marked.get("disturbed")
        summarize_result(doc)
    return doc


def measure_hops(
    out: dict[str, Any],
    rounds: int | None,
    seconds: float,
    stats_seconds: float,
    log: Callable[[str], None],
    host: bool = True,
    guest: str | None = GUEST_SERIES,
) -> None:
    """This machine's kernel, then `guest` under QEMU, into `out` keyed host / guest-<series>; filled
    as each half ends, so an interrupted guest half keeps the host half's numbers."""
    if not OBJECT.exists():
        raise BenchError(f"{OBJECT} missing: make -C bench/bpf (make bench builds it)")
    with tempfile.TemporaryDirectory(prefix="pktpath-hops-") as tmp:
        work = Path(tmp)
        if host:
            out["host"] = _host(work, rounds or 5, seconds, stats_seconds, log)
        if guest:
            out[f"guest-{guest}"] = {"status": "interrupted"}
            out[f"guest-{guest}"] = _guest(work, guest, rounds or 5, seconds, stats_seconds, log)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hops", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--stats-seconds", type=float, default=2.0)
    p.add_argument("--time-limit", type=float, default=600.0, help="seconds; rounds stop early to stay within it")
    p.add_argument("--output", type=Path, required=True)
    args = p.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    return worker_main(
        "bench.hops",
        args.output,
        args.time_limit,
        lambda deadline: measure(args.rounds, args.seconds, args.stats_seconds, deadline, log),
        (BenchError, libbpf.LibbpfError, OSError),
    )


if __name__ == "__main__":
    sys.exit(main())
