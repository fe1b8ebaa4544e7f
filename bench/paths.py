"""Cost of packet paths (sampled per-hop tracing), in three parts.

overhead   UDP packets/s between the bench namespaces (the `deliver` workload of bench/throughput.py:
           64-byte payload, -b 0, sender pinned to CPU 0) with no agent, with the agent counting drops
           only (paths off), with the default config (paths on in sampling windows, no exporter), and
           with continuous paths at 1 in 1000 (the hooks always attached).  Interleaved rounds; a
           trial lasts a whole number of window periods, so every trial holds the same share of
           window time.
python     in-process, no kernel: synthetic HopEvents (6 hops, like a forwarded and dropped packet)
           through the EventDecoder, the PathAssembler and the SpanEncoder, and end to end through the
           export queue to an OTLP receiver in another process: CPU time per path of each stage.
load       the real agent with `one_in: 1`, `max_paths_per_second: 0`, at about 100, 1k and 10k
           UDP packets/s (each one a sampled path); CPU% and RSS from its /metrics.  Then the top
           rate again with `max_paths_per_second: 1000`: the in-kernel budget.

Where spans are exported here, no collector is needed: the exporter points at a closed port on
127.0.0.1, every span is counted in pktpath_spans_dropped_total, and the kernel and Python work is the
same as with a collector (less the network send).
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

from bench.agent import AgentRun
from bench.netpair import NetPair
from bench.procs import BenchError, in_netns
from bench.stats import paired_ratios, ratio, round_means, summarize
from bench.throughput import (
    MAX_RETRIES,
    PAYLOAD,
    PORTS,
    RECEIVER_CPU,
    SENDER_CPU,
    IperfServer,
    disturbed,
    iperf_trial,
    receive_window,
    run_iperf,
)

# agent-drops: paths off (one_in and drop_one_in 0: no path hook, no drop capture): the always-on
# counters only, drop counting and, where the kernel attaches them, the per-stage verdict counters.
# agent-default: no config at all: paths on, in 1 s windows every 10 s, no exporter.
# agent-default-export: the same exporting spans (to a closed port: every span counted as dropped).
# agent-paths: continuous sampling at 1 in 1000 (every path hook always attached), exporting.
# agent-paths-kernel: agent-paths with the agent process stopped (SIGSTOP) during the trial, so
# only its BPF programs run: the kernel side's cost, apart from the CPU the agent's own threads
# take from the workload on a machine whose every core the benchmark keeps busy.  (Windows need
# the agent's thread, so the default conditions are never paused.)
OVERHEAD_CONDITIONS = (
    "baseline",
    "agent-drops",
    "agent-default",
    "agent-default-export",
    "agent-paths",
    "agent-paths-kernel",
)
PAUSED_CONDITIONS = ("agent-paths-kernel",)
OVERHEAD_ONE_IN = 1000
WINDOW_PERIOD_S = 10  # the default sampling.window_period_seconds: a trial is a multiple of it
OVERHEAD_TARGET = 0.03  # issue 12: the default config (paths on) keeps at least 97 % of the baseline
LOAD_RATES = (100, 1_000, 10_000)  # packets/s, every one a sampled path (one_in: 1)
LOAD_SECONDS = 10.0
BUDGET = 1000  # max_paths_per_second for the budget run
HOPS_PER_PATH = 6  # synthetic paths: NETIF_RECEIVE, FIB_LOOKUP, DEV_QUEUE, DEV_XMIT, NETIF_RECEIVE, DROP
_METRICS = (
    "pktpath_paths_started_total",
    "pktpath_sampled_paths_total",
    "pktpath_events_lost_total",
    "pktpath_paths_refused_total",
    "pktpath_spans_dropped_total",
    "pktpath_spans_exported_total",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
)


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on (the kernel picked it, we closed it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def export_yaml(protocol: str = "grpc", port: int | None = None) -> str:
    """Spans exported to 127.0.0.1:`port`; by default a closed port (all counted as dropped)."""
    return (
        f'traces:\n  exporter: otlp\n  protocol: {protocol}\n  endpoint: "http://127.0.0.1:{port or closed_port()}"\n'
        f"  export_timeout_ms: 200\n"
    )


def paths_yaml(
    one_in: int,
    max_paths: int | None = None,
    drop_one_in: int | None = None,
    src: str | None = None,
    protocol: str = "grpc",
    port: int | None = None,
) -> str:
    """Agent config sampling continuously 1 in `one_in`, with spans exported as export_yaml() says."""
    y = export_yaml(protocol, port) + f"sampling:\n  continuous: true\n  one_in: {one_in}\n"
    if max_paths is not None:
        y += f"  max_paths_per_second: {max_paths}\n"
    if drop_one_in is not None:
        y += f"  drop_one_in: {drop_one_in}\n"
    if src:
        y += f"filter:\n  src: [{src}]\n  protocols: [udp]\n"
    return y


def scrape(agent: AgentRun) -> dict[str, float]:
    """The path-related samples of the agent's /metrics, keyed `name` or `name{label}`."""
    out: dict[str, float] = {}
    for s in agent.samples():
        if s.name in _METRICS:
            label = ",".join(f"{v}" for k, v in sorted(s.labels.items()) if k != "ring")
            out[f"{s.name}{{{label}}}" if label else s.name] = s.value
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if k != "process_resident_memory_bytes"}


def _sum(d: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in d.items() if k.startswith(prefix))


# -- 1. overhead at 1 in 1000 ---------------------------------------------------------------


def _agent_for(name: str, binary: str) -> AgentRun | None:
    if name == "baseline":
        return None
    if name == "agent-drops":
        return AgentRun(binary, extra_yaml="sampling:\n  one_in: 0\n  drop_one_in: 0\n")
    if name == "agent-default":
        return AgentRun(binary)
    if name == "agent-default-export":
        return AgentRun(binary, extra_yaml=export_yaml())
    return AgentRun(binary, extra_yaml=paths_yaml(OVERHEAD_ONE_IN))


def measure_overhead(
    pair: NetPair, binary: str, rounds: int, seconds: float, window: str, deadline: float, log: Callable[[str], None]
) -> dict[str, Any]:
    trials: list[dict[str, Any]] = []
    discarded: list[dict[str, Any]] = []
    hops: dict[str, list[str]] = {}
    for rnd in range(1, rounds + 1):
        if time.monotonic() + len(OVERHEAD_CONDITIONS) * (seconds + 3) > deadline:
            break
        # Each round closes with a second baseline, as in the throughput part: its trials are
        # judged against the mean of the round's two baselines.
        for name in (*OVERHEAD_CONDITIONS, "baseline"):
            with ExitStack() as stack:
                agent = _agent_for(name, binary)
                if agent is not None:
                    stack.enter_context(agent)
                    agent.start_ready()
                    hops[name] = list(agent.attached_hops())
                for attempt in range(1, MAX_RETRIES + 2):
                    before = scrape(agent) if agent else {}
                    if agent and name in PAUSED_CONDITIONS:
                        agent.proc.send_signal(signal.SIGSTOP)
                    try:
                        t = iperf_trial(pair, "deliver", seconds, window)
                    finally:
                        if agent and name in PAUSED_CONDITIONS:
                            agent.proc.send_signal(signal.SIGCONT)
                    t.update(round=rnd, condition=name, workload="deliver", attempt=attempt)
                    if agent:
                        t["agent"] = delta(scrape(agent), before)
                    t["disturbed"] = disturbed(t)
                    log(
                        f"  paths overhead round {rnd} {name:<12} {t['pps']:>12,.0f} pkt/s"
                        + (f"  (disturbed: {t['disturbed']})" if t["disturbed"] else "")
                    )
                    if t["disturbed"] is None or attempt > MAX_RETRIES or time.monotonic() + seconds + 5 > deadline:
                        break
                    discarded.append(t)
                trials.append(t)
    return {
        "one_in": OVERHEAD_ONE_IN,
        "seconds_per_trial": seconds,
        "target_loss": OVERHEAD_TARGET,
        "hops": hops,
        "trials": trials,
        "discarded_trials": discarded,
        "summary": summarize_overhead(trials),
        "rounds_done": max((t["round"] for t in trials), default=0),
    }


def summarize_overhead(trials: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per condition: packets/s, and each trial over its round's baseline (the mean of the round's two
    baseline trials), whose median is the figure the target is checked against."""
    # Undisturbed baseline trials; all of them when every one was disturbed (a busy machine: said in the table).
    base_rows = [t for t in trials if t["condition"] == "baseline"]
    base_clean = [t for t in base_rows if not t["disturbed"]] or base_rows
    base = round_means(base_clean)
    b = summarize([t["pps"] for t in base_clean])
    summary: dict[str, Any] = {}
    for name in OVERHEAD_CONDITIONS:
        rows = [t for t in trials if t["condition"] == name]
        clean = [t for t in rows if not t["disturbed"]] or rows
        s = summarize([t["pps"] for t in clean])
        paired = paired_ratios(clean, base)
        summary[name] = {
            "pps": s,
            "trials_used": len(clean),
            "trials_disturbed": sum(1 for t in rows if t["disturbed"]),
            "vs_baseline": paired["median"] if paired else None,
            # Kept for comparison with runs before the paired figure was the verdict.
            "ratio_of_medians": ratio(s["median"] if s else None, b["median"] if b else None),
            "paired_ratio": paired,
            "paths_started": sum(_sum(t.get("agent", {}), "pktpath_paths_started_total") for t in rows),
            "events_lost": sum(_sum(t.get("agent", {}), "pktpath_events_lost_total") for t in rows),
            "paths_refused": sum(_sum(t.get("agent", {}), "pktpath_paths_refused_total") for t in rows),
            "agent_cpu_seconds": sum(t.get("agent", {}).get("process_cpu_seconds_total", 0.0) for t in rows),
            "receiver_lost": sum(t["lost_packets"] for t in rows),
            "packets_sent": sum(t["sent_packets"] for t in rows),
        }
    return summary


# -- 3. agent CPU and memory under load ------------------------------------------------------


def rate_trial(pair: NetPair, pps: int, seconds: float) -> dict[str, Any]:
    """iperf3 at a fixed packet rate (-b is payload bits/s, -l fixes the payload size)."""
    cmd = in_netns(
        pair.tx_ns,
        "iperf3",
        "-c",
        pair.rx_ip,
        "-p",
        str(PORTS["deliver"]),
        "-u",
        "-l",
        str(PAYLOAD),
        "-b",
        str(pps * PAYLOAD * 8),
        "-t",
        f"{seconds:g}",
        "-A",
        str(SENDER_CPU),
        "-J",
    )
    doc = run_iperf(cmd, seconds, f"{pps} pkt/s")
    sent, received = doc["end"]["sum_sent"], doc["end"]["sum_received"]
    return {
        "target_pps": pps,
        "sent_packets": int(sent["packets"]),
        "seconds": float(sent["seconds"]),
        "pps": sent["packets"] / sent["seconds"],
        "lost_packets": int(received.get("lost_packets", 0)),
    }


def _load_trial(pair: NetPair, agent: AgentRun, pps: int, seconds: float, label: str) -> dict[str, Any]:
    before = scrape(agent)
    t0 = time.monotonic()
    t = rate_trial(pair, pps, seconds)
    time.sleep(0.3)  # the agent's poll period is 100 ms and its grace 50 ms: let the last paths finish
    after = scrape(agent)
    wall = time.monotonic() - t0
    d = delta(after, before)
    t.update(
        label=label,
        wall_seconds=wall,
        agent=d,
        cpu_percent=d["process_cpu_seconds_total"] / wall * 100,
        rss_mb=after["process_resident_memory_bytes"] / 2**20,
        paths_started=_sum(d, "pktpath_paths_started_total"),
        paths_finished=_sum(d, "pktpath_sampled_paths_total"),
        paths_refused=_sum(d, "pktpath_paths_refused_total"),
        events_lost=_sum(d, "pktpath_events_lost_total"),
        spans_dropped=_sum(d, "pktpath_spans_dropped_total"),
        spans_exported=_sum(d, "pktpath_spans_exported_total"),
        status_kb=agent.status_kb(),
    )
    return t


def measure_load(
    pair: NetPair, binary: str, rounds: int, seconds: float, deadline: float, log: Callable[[str], None]
) -> dict[str, Any]:
    trials: list[dict[str, Any]] = []
    # (label, path budget, OTLP protocol, rates, to a receiver): gRPC at every rate; HTTP at 1,000
    # paths/s, to show what each transport's libraries hold in memory (grpcio's shared library is
    # ~10 MB of it).  All of these export to a closed port: an endpoint that is down, the case that
    # costs most (gRPC retries each batch until its timeout).  The two "live" runs export to an OTLP
    # receiver in its own process (its CPU is not the agent's), every span delivered: a node as it runs.
    at_budget = [r for r in LOAD_RATES if r == BUDGET]
    runs = [
        ("unlimited", None, "grpc", LOAD_RATES, False),
        (f"budget {BUDGET}/s", BUDGET, "grpc", LOAD_RATES[-1:], False),
        ("otlp/http", None, "http/protobuf", at_budget, False),
        ("grpc live", None, "grpc", at_budget, True),
        ("http live", None, "http/protobuf", at_budget, True),
    ]
    receiver = _Receiver()
    try:
        for rnd in range(1, rounds + 1):
            if time.monotonic() + (len(LOAD_RATES) + 4) * (seconds + 2) + 10 > deadline:
                break
            for label, budget, protocol, rates, live in runs:
                _load_run(
                    pair, binary, receiver if live else None, rnd, label, budget, protocol, rates, seconds, trials, log
                )
    finally:
        receiver.stop()
    return {
        "seconds_per_trial": seconds,
        "budget": BUDGET,
        "trials": trials,
        "rounds_done": max((t["round"] for t in trials), default=0),
    }


def _load_run(
    pair: NetPair,
    binary: str,
    receiver: _Receiver | None,
    rnd: int,
    label: str,
    budget: int | None,
    protocol: str,
    rates: Sequence[int],
    seconds: float,
    trials: list[dict[str, Any]],
    log: Callable[[str], None],
) -> None:
    """One agent, its trials at `rates` one after the other."""
    port = None if receiver is None else receiver.grpc_port if protocol == "grpc" else receiver.http_port
    yaml = paths_yaml(1, max_paths=budget or 0, drop_one_in=0, src=f"{pair.tx_ip}/32", protocol=protocol, port=port)
    with AgentRun(binary, extra_yaml=yaml) as agent:
        agent.start_ready()
        time.sleep(1.0)  # past the OTel SDK's lazy imports after 'serving'
        for pps in rates:
            t = _load_trial(pair, agent, pps, seconds, label)
            t["round"] = rnd
            trials.append(t)
            log(
                f"  paths load round {rnd} {label:<14} {t['pps']:>8,.0f} pkt/s: agent {t['cpu_percent']:5.1f}%"
                f" CPU, {t['rss_mb']:.1f} MB, started {t['paths_started']:,.0f}, refused"
                f" {t['paths_refused']:,.0f}, lost {t['events_lost']:,.0f}, spans exported {t['spans_exported']:,.0f}"
            )


# -- 2. the Python side, in process -------------------------------------------------------------


def _synthetic(n_paths: int) -> tuple[list[Any], list[bytes]]:
    """n_paths x HOPS_PER_PATH HopEvents (and the same as raw ring records), path after path."""
    from exporter.model import abi
    from exporter.model.path import FibLookup, Hop, HopEvent, PacketHeader

    seq = [
        (Hop.NETIF_RECEIVE, "HOP_NETIF_RECEIVE", "veth0"),
        (Hop.FIB_LOOKUP, "HOP_FIB_LOOKUP", ""),
        (Hop.DEV_QUEUE, "HOP_DEV_QUEUE", "eth1"),
        (Hop.DEV_XMIT, "HOP_DEV_XMIT", "eth1"),
        (Hop.NETIF_RECEIVE, "HOP_NETIF_RECEIVE", "veth1"),
        (Hop.DROP, "HOP_DROP", "veth1"),
    ]
    events: list[Any] = []
    raws: list[bytes] = []
    ts = time.monotonic_ns()
    for p in range(n_paths):
        pid = p + 1
        sport = 10000 + p % 1000
        header = PacketHeader(
            family=4,
            src="10.0.1.5",
            dst="10.0.2.9",
            protocol=17,
            sport=sport,
            dport=53,
            ttl=64,
            length=92,
            ip_id=p & 0xFFFF,
            extra=p,
        )
        for i, (hop, hop_id, dev) in enumerate(seq):
            ts += 1500
            events.append(
                HopEvent(
                    path_id=pid,
                    hop=hop,
                    ts_ns=ts,
                    cpu=p % 2,
                    ifindex=2 + i // 2,
                    ifname=dev,
                    netns=4026531840,
                    length=92,
                    reason="NETFILTER_DROP" if hop is Hop.DROP else None,
                    table=254 if hop is Hop.FIB_LOOKUP else 0,
                    out_ifname="eth1" if hop is Hop.FIB_LOOKUP else "",
                    fib_src="10.0.1.5" if hop is Hop.FIB_LOOKUP else "",
                    fib_dst="10.0.2.9" if hop is Hop.FIB_LOOKUP else "",
                    fib_lookup=FibLookup.ROUTE if hop is Hop.FIB_LOOKUP else None,
                    header=header if i == 0 else None,
                )
            )
            r = abi.HopEventRaw(
                path_id=pid,
                ts_ns=ts,
                hop=abi.HOP_IDS[hop_id],
                cpu=p % 2,
                ifindex=2 + i // 2,
                netns=4026531840,
                len=92,
                reason=6 if hop is Hop.DROP else 0,
                table=254 if hop is Hop.FIB_LOOKUP else 0,
                flags=abi.EV_HEADER if i == 0 else 0,
                ifname=dev.encode(),
                out_ifname=b"eth1" if hop is Hop.FIB_LOOKUP else b"",
            )
            if hop is Hop.FIB_LOOKUP:
                r.fib_family = 4
                r.fib_saddr[:4] = [10, 0, 1, 5]
                r.fib_daddr[:4] = [10, 0, 2, 9]
            if i == 0:
                h = r.hdr
                h.family, h.protocol, h.sport, h.dport, h.ttl, h.ip_len, h.ip_id, h.extra = (
                    4,
                    17,
                    sport,
                    53,
                    64,
                    92,
                    p & 0xFFFF,
                    p,
                )
                h.saddr[:4] = [10, 0, 1, 5]
                h.daddr[:4] = [10, 0, 2, 9]
            raws.append(bytes(r))
    return events, raws


def _unlike(raws: list[bytes]) -> list[bytes]:
    """`raws` with the path's number as every record's ifindex: no two paths' hops alike."""
    from exporter.model import abi

    at = abi.HopEventRaw.ifindex.offset
    return [
        raw[:at] + (1000 + index // HOPS_PER_PATH).to_bytes(4, "little") + raw[at + 4 :]
        for index, raw in enumerate(raws)
    ]


class _FakeClock:
    """The assembler's clock: 10 ms pass per batch of 100 paths, so the 50 ms grace holds ~500 paths."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def _assemble(events: list[Any], sink: Callable[[Any], None], decode: Callable[[Any], Any] | None = None) -> float:
    """Seconds to push every event through (decode and) the assembler into `sink`, ticking per 100 paths."""
    from exporter.paths.assembler import PathAssembler

    clock = _FakeClock()
    asm = PathAssembler(sink, clock_ns=clock)
    batch = 100 * HOPS_PER_PATH
    gc.collect()
    t0 = time.perf_counter()
    for i in range(0, len(events), batch):
        for ev in events[i : i + batch]:
            asm.add(decode(ev) if decode else ev)
        clock.now += 10_000_000
        asm.tick()
    asm.flush()
    elapsed = time.perf_counter() - t0
    if asm.evicted.get("internal_error") or asm.sink_errors:
        raise BenchError(f"paths python bench: assembler errors {dict(asm.evicted)}, sink errors {asm.sink_errors}")
    return elapsed


class _Receiver:
    """tests/otlp_receiver.py in its own process, counting spans: its CPU is not the bench's."""

    def __init__(self) -> None:
        import subprocess
        import sys

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.otlp_receiver"],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2:
            self.stop()
            raise BenchError("paths python bench: the OTLP receiver did not start")
        self.grpc_port, self.http_port = int(line[0]), int(line[1])

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except Exception:  # noqa: BLE001 - a receiver that will not stop is killed
            self.proc.kill()
            self.proc.wait()


def measure_python(n_paths: int, repeats: int, log: Callable[[str], None]) -> dict[str, Any]:
    """CPU time per path of each stage, on one core: thread CPU time of the stage's own thread, or the
    process CPU time (every thread: the export thread's framing and sending too) where a case says so.
    CPU time, not wall time, so that other work on a shared machine does not count."""
    from exporter.config.model import TracesConfig
    from exporter.decoders.drop_reasons import DropReasons
    from exporter.decoders.events import EventDecoder
    from exporter.traces.export import Tracing, build_tracing

    events, raws = _synthetic(n_paths)
    decoder = EventDecoder(DropReasons([("SKB_DROP_REASON_NOT_SPECIFIED", 2), ("SKB_DROP_REASON_NETFILTER_DROP", 6)]))
    spans_per_path = HOPS_PER_PATH + 1
    batch_spans = TracesConfig().max_export_batch_size
    paths: list[Any] = []
    _assemble(events, paths.append)
    receiver = _Receiver()
    tracings: dict[str, Tracing] = {}
    try:
        for protocol, port in (("grpc", receiver.grpc_port), ("http/protobuf", receiver.http_port)):
            # A queue that holds every span of a run: nothing is dropped, every span is framed and sent.
            cfg = TracesConfig(
                exporter="otlp",
                protocol=protocol,
                endpoint=f"http://127.0.0.1:{port}",
                max_queue_size=n_paths * spans_per_path,
                max_export_batch_size=batch_spans,
                schedule_delay_ms=100,
            )
            tracing = build_tracing(cfg, env={})
            if tracing is None:
                raise BenchError("build_tracing returned None for an otlp config")
            tracings[protocol] = tracing
        return _python_cases(n_paths, repeats, log, raws, events, paths, decoder, tracings)
    finally:
        for t in tracings.values():
            t.shutdown(timeout_s=1.0)
        receiver.stop()


def _python_cases(
    n_paths: int,
    repeats: int,
    log: Callable[[str], None],
    raws: list[bytes],
    events: list[Any],
    paths: list[Any],
    decoder: Any,
    tracings: dict[str, Any],
) -> dict[str, Any]:
    from exporter.config.model import TracesConfig
    from exporter.traces.encode import INSTRUMENTATION_NAME, RequestFraming, SpanEncoder
    from tests.sdk_reference import SdkReference

    spans_per_path = HOPS_PER_PATH + 1
    batch_spans = TracesConfig().max_export_batch_size
    encoded: list[bytes] = []
    encoder = SpanEncoder(lambda data, _n: encoded.append(data))
    resource = {"service.name": "pktpath", "host.name": socket.gethostname()}
    framing = RequestFraming(resource, INSTRUMENTATION_NAME, "bench")

    def cpu(fn: Callable[[], None], clock: Callable[[], float] = time.thread_time) -> float:
        gc.collect()
        t0 = clock()
        fn()
        return clock() - t0

    def decode() -> None:
        for raw in raws:
            decoder.decode(raw)

    def encode() -> None:
        encoded.clear()
        for path in paths:
            encoder.emit(path)

    def frame() -> None:  # the export thread's share: ExportTraceServiceRequest bytes per batch
        per_batch = batch_spans // spans_per_path
        for i in range(0, len(encoded), per_batch):
            framing.request(encoded[i : i + per_batch])

    def sdk() -> None:  # the old way: SDK spans, then the official encoder per batch, as the exporters did
        reference = SdkReference(resource, clock_offset_ns=lambda: 0)
        per_batch = batch_spans // spans_per_path
        for i in range(0, len(paths), per_batch):
            reference.request(paths[i : i + per_batch])
        reference.shutdown()

    def end_to_end(protocol: str) -> Callable[[], None]:
        def run() -> None:
            tracing = tracings[protocol]
            before = tracing.exported
            _assemble(raws, tracing.span_builder, decoder.decode)
            deadline = time.monotonic() + 120
            while tracing.exported + sum(tracing.dropped.values()) < tracing.ended and time.monotonic() < deadline:
                time.sleep(0.01)  # the export thread's CPU time counts (process time), the wait does not
            if tracing.exported - before != n_paths * spans_per_path:
                raise BenchError(
                    f"paths python bench: {protocol} exported {tracing.exported - before} spans, "
                    f"expected {n_paths * spans_per_path} (dropped {dict(tracing.dropped)})"
                )

        return run

    def assemble() -> None:
        _assemble(events, lambda _p: None)

    def decode_assemble_encode() -> None:
        _assemble(raws, encoder, decoder.decode)

    # The same records with another ifindex on every path: no hop is like one before it, so every
    # lookup in the decoder's and the encoder's caches misses. The synthetic paths repeat their hops
    # from path to path (the caches' best case); this is their worst case. A fresh decoder and
    # encoder each time, so that no repeat starts warm.
    unlike = _unlike(raws)

    def decode_assemble_encode_unlike() -> None:
        _assemble(unlike, SpanEncoder(lambda _data, _n: None), type(decoder)(decoder.reasons).decode)

    # name: (function, clock, unit count, unit)
    cases: dict[str, tuple[Callable[[], None], Callable[[], float], int, str]] = {
        "decode": (decode, time.thread_time, len(raws), "events"),
        "assembler": (assemble, time.thread_time, n_paths, "paths"),
        "encode": (encode, time.thread_time, n_paths, "paths"),
        "frame": (frame, time.thread_time, n_paths, "paths"),
        "sdk spans+encode (old way)": (sdk, time.thread_time, n_paths, "paths"),
        "decode+assembler+encode": (decode_assemble_encode, time.thread_time, n_paths, "paths"),
        "decode+assembler+encode, unlike": (decode_assemble_encode_unlike, time.thread_time, n_paths, "paths"),
        "end to end, otlp/grpc": (end_to_end("grpc"), time.process_time, n_paths, "paths"),
        "end to end, otlp/http": (end_to_end("http/protobuf"), time.process_time, n_paths, "paths"),
    }
    seconds: dict[str, list[float]] = {k: [] for k in cases}
    for rep in range(repeats):  # interleaved, so drift lands on every case alike
        for name, (fn, clock, _count, _unit) in cases.items():
            seconds[name].append(cpu(fn, clock))
        log(
            f"  paths python repeat {rep + 1}: "
            + ", ".join(f"{k} {v[-1] / cases[k][2] * 1e6:.1f} us/{cases[k][3][:-1]}" for k, v in seconds.items())
        )
    counts = {
        p: {"ended": t.ended, "exported": t.exported, "dropped": dict(t.dropped), "pending": t.pending}
        for p, t in tracings.items()
    }
    out: dict[str, Any] = {
        "paths_per_run": n_paths,
        "hops_per_path": HOPS_PER_PATH,
        "spans_per_path": spans_per_path,
        "repeats": repeats,
        "clock": "CPU time (thread time; process time for end to end)",
        "export_pipeline": counts.get("grpc", {}),
        "export_pipelines": counts,
        "builder_skipped": dict(encoder.skipped),
        "cases": {},
    }
    for name, ts in seconds.items():
        _fn, clock, count, unit = cases[name]
        per_path = [t / (count if unit == "paths" else n_paths) for t in ts]
        out["cases"][name] = {
            "seconds": ts,
            "unit": unit,
            "clock": "process" if clock is time.process_time else "thread",
            "per_second": summarize([count / t for t in ts]),
            "us_per_path": summarize([t * 1e6 for t in per_path]),
            "spans_per_second": None
            if name in ("decode", "assembler")
            else summarize([n_paths * spans_per_path / t for t in ts]),
        }
    return out


# -- all of it -----------------------------------------------------------------------------------


def measure_paths(
    binary: str, rounds: int, seconds: float, deadline: float, log: Callable[[str], None], quick: bool = False
) -> dict[str, Any]:
    from exporter.model import abi

    result: dict[str, Any] = {"sizeof_hop_event": ctypes.sizeof(abi.HopEventRaw)}
    log("paths: python side, in process ...")
    result["python"] = measure_python(2_000 if quick else 10_000, 1 if quick else 3, log)
    cpus = os.cpu_count() or 1
    window = receive_window()
    with ExitStack() as stack:
        pair = stack.enter_context(NetPair())
        result["topology"] = {"tx_ip": pair.tx_ip, "rx_ip": pair.rx_ip, "interfaces": sorted(pair.interfaces)}
        server = IperfServer(pair, PORTS["deliver"], RECEIVER_CPU if cpus > 1 else None)
        stack.callback(server.stop)
        # Whole window periods: each trial then holds exactly one default window's worth of time.
        seconds = WINDOW_PERIOD_S * max(1, math.ceil(seconds / WINDOW_PERIOD_S))
        log(f"paths: overhead, {rounds} round(s) x {len(OVERHEAD_CONDITIONS)} conditions x {seconds:g} s ...")
        load_rounds = 1 if quick else 2
        load_seconds = 3.0 if quick else LOAD_SECONDS
        # The overhead rounds stop early (and say how many ran) so the load part still fits the time limit.
        load_cost = load_rounds * ((len(LOAD_RATES) + 4) * (load_seconds + 1) + 10)
        result["overhead"] = measure_overhead(pair, binary, rounds, seconds, window, deadline - load_cost, log)
        log(f"paths: agent load, {load_rounds} round(s) x {len(LOAD_RATES) + 3} runs x {load_seconds:g} s ...")
        result["load"] = measure_load(pair, binary, load_rounds, load_seconds, deadline, log)
    log("paths: memory floor of the traces pipeline, in bare processes ...")
    result["floor"] = measure_floor()
    return result


# What a process holds that does nothing but import the agent's modules, then also build the traces
# pipeline (exporter/traces/export.py: build_tracing) with each transport: the part of the agent's
# RSS that comes with the official exporter packages, whatever the agent does.
_FLOOR_SCRIPT = """
import sys
import exporter.agent
if sys.argv[1] != "none":
    from exporter.config.model import TracesConfig
    from exporter.traces.export import build_tracing
    tracing = build_tracing(TracesConfig(exporter="otlp", protocol=sys.argv[1], endpoint=sys.argv[2]), env={})
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(" ".join(status[k].split()[0] for k in ("VmRSS", "RssAnon", "RssFile")))
"""
FLOOR_CASES = ("none", "grpc", "http/protobuf")


def measure_floor() -> dict[str, Any]:
    """{case: {"rss_kb", "anon_kb", "file_kb"}} for FLOOR_CASES (median of 3 processes each)."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out: dict[str, Any] = {}
    for case in FLOOR_CASES:
        runs = []
        for _ in range(3):
            proc = subprocess.run(
                [sys.executable, "-c", _FLOOR_SCRIPT, case, f"http://127.0.0.1:{closed_port()}"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if proc.returncode != 0:
                raise BenchError(f"paths floor ({case}): {proc.stderr.strip().splitlines()[-1:]}")
            runs.append([int(x) for x in proc.stdout.split()])
        runs.sort()
        rss, anon, file = runs[len(runs) // 2]
        out[case] = {"rss_kb": rss, "anon_kb": anon, "file_kb": file}
    return out
