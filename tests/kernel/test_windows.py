"""Sampling windows on the real kernel (issue 12): the path hooks are attached only around windows
that open at the wall clock's multiples of the period; a packet followed when a window closes still
gets its whole path; what the linger bound cuts is counted; M packets over K windows give the
expected number of paths; two agents on two "nodes" open together and their traces meet.

Windows here: period 2 s, window 1 s (the smallest whole seconds; the defaults are 10 and 1).
Whether a hook is attached is asked of the kernel (bpftool perf list), not of the agent.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.procs import bpftool_available, perf_attached
from exporter.paths.tracking import STALE_NS
from exporter.paths.windows import LEAD_S
from tests.agent_process import AgentProcess, wait_until
from tests.kernel.lab import Lab
from tests.kernel.test_paths import hop_names, traces_to, udp_listener
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

PERIOD, WINDOW = 2, 1
LINGER_S = STALE_NS / 1e9
pytestmark = pytest.mark.skipif(not bpftool_available(), reason="bpftool tells which hooks are attached")


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


def windows_yaml(
    receiver: OtlpReceiver,
    *,
    one_in: int = 1,
    dst: str = "",
    ports: str = "",
    interfaces: str = "",
    service: str = "pktpath",
    budget: int = 0,
) -> str:
    filt = "".join(
        f"  {key}: [{value}]\n" for key, value in (("dst", dst), ("ports", ports), ("interfaces", interfaces)) if value
    )
    return textwrap.dedent(f"""\
        traces:
          exporter: otlp
          protocol: grpc
          endpoint: {receiver.grpc_endpoint}
          schedule_delay_ms: 100
          service_name: {service}
        sampling:
          window_period_seconds: {PERIOD}
          window_seconds: {WINDOW}
          adaptive: false
          one_in: {one_in}
          drop_one_in: 0
          max_paths_per_second: {budget}
        """) + (f"filter:\n{filt}" if filt else "")


def first_window_opened(*agents: AgentProcess) -> None:
    """Wait until each agent has opened its first window: windows planned after that are all its."""
    for agent in agents:
        assert wait_until(
            lambda: agent.value("pktpath_sampling_windows_total", outcome="on_time") >= 1,  # noqa: B023
            PERIOD + 2,
        ), agent.log()


def phase(wall: float) -> float:
    return wall % PERIOD


def sleep_until(wall: float) -> None:
    time.sleep(max(0.0, wall - time.time()))


def next_close(after: float) -> float:
    """The wall-clock time of the first window close later than `after`."""
    return (math.floor((after - WINDOW) / PERIOD) + 1) * PERIOD + WINDOW


# A sender that sends one datagram at each given wall-clock time, the first 8 payload bytes a
# counter (so each is a different packet to the sampling hash), and prints the times it sent at.
_TIMED_SENDER = textwrap.dedent("""
    import json, socket, struct, sys, time
    dst, plan = sys.argv[1], json.loads(sys.stdin.read())
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = []
    for i, (at, port, size) in enumerate(plan):
        left = at - time.time()
        if left > 0:
            time.sleep(left)
        sent.append(time.time())
        s.sendto(struct.pack("!Q", i) + b"p" * (size - 8), (dst, port))
    print(json.dumps(sent))
""")


def send_at(lab: Lab, plan: list[tuple[float, int, int]]) -> list[float]:
    """Datagrams (wall time, port, payload size) from the client to the server; when each left."""
    out = lab.exec(lab.client, sys.executable, "-c", _TIMED_SENDER, lab.server_ip, input=json.dumps(plan))
    sent: list[float] = json.loads(out.stdout)
    return sent


def test_windows_open_on_the_clock_and_path_hooks_are_attached_only_around_them(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    agent = AgentProcess.start(tmp_path, windows_yaml(receiver, dst="198.18.255.254/32"))
    pid = agent.proc.pid
    try:
        samples: list[tuple[float, float, bool, bool]] = []  # (before, after, net_dev_queue, kfree_skb)
        hooks_s0 = agent.value("pktpath_sampling_path_hooks_seconds_total")
        end = time.time() + 3 * PERIOD + 0.2
        while time.time() < end:
            before = time.time()
            queue, drop = perf_attached(pid, "net_dev_queue"), perf_attached(pid, "kfree_skb")
            samples.append((before, time.time(), queue, drop))
            time.sleep(0.02)
        hooks_s = agent.value("pktpath_sampling_path_hooks_seconds_total") - hooks_s0
        assert all(drop for *_, drop in samples), "the drop program is always attached"
        # The time the agent says the path hooks were on is the time they were seen on: each sample
        # stands for the time to the next; every switch on or off costs at most one sample's time
        # (the scrapes bracket the samples within a sample's time too).
        seen_s = sum(b1 - b0 for (b0, _, on, _), (b1, *_) in itertools.pairwise(samples) if on)
        switches = sum(1 for (*_, a, _), (*_, b, _) in itertools.pairwise(samples) if a != b)
        spacing = max(b1 - b0 for (b0, *_), (b1, *_) in itertools.pairwise(samples))
        assert switches >= 5 and seen_s > 1.5, (switches, seen_s)
        assert abs(hooks_s - seen_s) <= (switches + 2) * spacing, (hooks_s, seen_s, switches, spacing)
        # Attached only from the lead before an opening until the close and its linger (nothing is
        # followed here, so the linger ends at once, but a loaded machine may take that long to run
        # the window thread), with 100 ms for the reads themselves.  The lead is LEAD_S, or twice
        # the last attach's time when that is longer (WindowController.lead_s; before the first
        # attach, the start's detach time): at most twice the sums of the edges the agent reports.
        edge_s = [agent.value("pktpath_sampling_window_edge_seconds_sum", edge=e) for e in ("attach", "detach")]
        lead = max(LEAD_S, 2 * max(edge_s))
        slack = 0.1
        for before, after, attached, _ in samples:
            if attached:
                allowed = [
                    PERIOD - lead - slack <= phase(t) or phase(t) <= WINDOW + LINGER_S + slack for t in (before, after)
                ]
                assert any(allowed), f"a path hook attached at phase {phase(before):.3f}..{phase(after):.3f} s"
        # ... and really attached in every window, really detached in every gap.
        for k in range(math.ceil(samples[0][0] / PERIOD), math.floor(samples[-1][0] / PERIOD)):
            inside = [a for b, _, a, _ in samples if k * PERIOD + 0.2 <= b <= k * PERIOD + WINDOW - 0.2]
            gap = [a for b, _, a, _ in samples if k * PERIOD + WINDOW + LINGER_S + slack <= b <= (k + 1) * PERIOD - 0.4]
            assert inside and all(inside), f"window at {k * PERIOD}: hooks not attached throughout"
            assert gap and not any(gap), f"gap after {k * PERIOD + WINDOW}: hooks attached"
        assert agent.value("pktpath_sampling_windows_total", outcome="on_time") >= 3
        assert agent.value("pktpath_sampling_windows_total", outcome="missed") == 0
    finally:
        assert agent.stop() == 0, agent.log()


def test_what_the_agent_says_follows_the_hooks(tmp_path: Path, receiver: OtlpReceiver) -> None:
    """pktpath_probe_attached and pktpath_sampling_window_open are 1 inside a window, 0 outside."""
    agent = AgentProcess.start(tmp_path, windows_yaml(receiver, dst="198.18.255.254/32"))
    try:
        for at, expected in ((0.5, 1.0), (1.6, 0.0)):  # phases: mid-window, mid-gap
            sleep_until((math.floor(time.time() / PERIOD) + 1) * PERIOD + at)
            assert agent.value("pktpath_sampling_window_open") == expected
            assert agent.value("pktpath_probe_attached", attach_type="tracepoint", probe="net_dev_queue") == expected
            assert agent.value("pktpath_probe_attached", attach_type="tracepoint", probe="kfree_skb") == 1.0
    finally:
        assert agent.stop() == 0, agent.log()


def slow_client_link(lab: Lab) -> None:
    """A token bucket on the client's veth (10 kB/s, 1600-byte bucket): after 1600 bytes of burst, a
    datagram waits for the bytes queued before it (tbf, not netem: kernels built without
    CONFIG_NET_SCH_NETEM, like the CI's, have no netem qdisc)."""
    lab.exec(
        lab.client,
        "tc",
        "qdisc",
        "replace",
        "dev",
        lab.if_client,
        "root",
        "tbf",
        "rate",
        "80kbit",
        "burst",
        "1600",
        "limit",
        "20000",
    )


def filler_then_followed(
    close: float, lead: float, delay_s: float, filler_port: int, port: int
) -> list[tuple[float, int, int]]:
    """Two 750-byte datagrams empty the bucket, one of `delay_s` seconds of bytes queues, then the
    followed datagram: sent `lead` seconds before `close`, it leaves the client after it."""
    at = close - lead
    queued = int(delay_s * 10_000)  # 10 kB/s
    return [
        (at - 0.01, filler_port, 750),
        (at - 0.01, filler_port, 750),
        (at - 0.005, filler_port, queued),
        (at, port, 64),
    ]


def test_a_packet_followed_when_the_window_closes_keeps_its_whole_path(
    tmp_path: Path, receiver: OtlpReceiver, lab: Lab
) -> None:
    port, filler = 7931, 7930
    slow_client_link(lab)
    agent = AgentProcess.start(tmp_path, windows_yaml(receiver, dst=f"{lab.server_ip}/32", ports=str(port)))
    listener = udp_listener(lab, port, 1)
    try:
        first_window_opened(agent)
        close = next_close(time.time() + 0.5)
        sent = send_at(lab, filler_then_followed(close, 0.05, 0.12, filler, port))
        assert sent[-1] < close, "the followed datagram left the socket after the close: machine too slow"
        assert listener.stdout is not None and listener.stdout.readline().strip() == "done"
        ((_trace, spans),) = traces_to(receiver, port).items()
        names = hop_names(spans)
        assert spans[0].attributes["pktpath.outcome"] == "delivered", names
        assert names[0] == f"net_dev_queue({lab.if_client})" and names[-1] == f"queued to socket (port {port})"
        assert f"net_dev_xmit({lab.if_client})" in names and f"netif_receive_skb({lab.if_server})" in names
        xmit = next(s for s in spans if s.name == f"net_dev_xmit({lab.if_client})")
        assert xmit.start_ns / 1e9 > close, "the bucket held it past the close"  # the point of the test
        assert agent.value("pktpath_tracking_lost_total", reason="expired") == 0
    finally:
        listener.kill()
        listener.wait()
        assert agent.stop() == 0, agent.log()


def test_a_packet_held_past_the_stale_age_ends_as_it_would_without_windows(
    tmp_path: Path, receiver: OtlpReceiver, lab: Lab
) -> None:
    """The linger waits until the reaper expired it (counted), then the hooks come off."""
    port, filler = 7933, 7932
    held = LINGER_S + 0.25  # queued longer than the stale age and one reap
    slow_client_link(lab)
    agent = AgentProcess.start(tmp_path, windows_yaml(receiver, dst=f"{lab.server_ip}/32", ports=str(port)))
    pid = agent.proc.pid
    try:
        first_window_opened(agent)
        close = next_close(time.time() + 0.5)
        sent = send_at(lab, filler_then_followed(close, 0.05, held, filler, port))
        assert sent[-1] < close
        assert perf_attached(pid, "net_dev_queue"), "lingering while the packet is followed"
        sleep_until(close + LINGER_S + 0.1)
        assert not perf_attached(pid, "net_dev_queue"), "detached once the reaper expired it"
        assert agent.value("pktpath_tracking_lost_total", reason="expired") == 1
        # Its path ends where the hooks came off: at its first hop, incomplete.
        assert agent.wait_value("pktpath_sampled_paths_total", 1, 5.0, outcome="incomplete") == 1
        assert agent.value("pktpath_sampled_paths_total", outcome="delivered") == 0
    finally:
        assert agent.stop() == 0, agent.log()


def binomial_bounds(n: int, p: float, sigmas: float = 4.5) -> tuple[float, float]:
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return mean - sigmas * sd, mean + sigmas * sd


def test_m_packets_over_k_windows_give_the_expected_paths_and_weight(
    tmp_path: Path, receiver: OtlpReceiver, lab: Lab
) -> None:
    """One in 4 by the hash, only while a window is open: of M packets sent evenly over K periods,
    those sent inside windows are sampled binomially, and paths x weight estimates M."""
    port, one_in, rate, periods = 7935, 4, 300, 4
    agent = AgentProcess.start(
        tmp_path, windows_yaml(receiver, one_in=one_in, dst=f"{lab.server_ip}/32", ports=str(port))
    )
    try:
        first_window_opened(agent)
        start = (math.floor(time.time() / PERIOD) + 1) * PERIOD + 0.001
        plan = [(start + i / rate, port, 64) for i in range(periods * PERIOD * rate)]
        sent = send_at(lab, plan)
        time.sleep(0.5)
        started = agent.value("pktpath_paths_started_total", sampled_by="rate")
        weight = agent.value("pktpath_sampling_one_in", sampled_by="rate")
        # Packets within 20 ms of an edge may fall either side (the sender's clock read, the
        # window's store): they widen the bounds instead of being guessed.
        inside = sum(1 for t in sent if 0.02 <= phase(t) <= WINDOW - 0.02)
        edge = sum(
            1 for t in sent if phase(t) < 0.02 or WINDOW - 0.02 < phase(t) < WINDOW + 0.02 or phase(t) > PERIOD - 0.02
        )
        low, _ = binomial_bounds(inside, 1 / one_in)
        _, high = binomial_bounds(inside + edge, 1 / one_in)
        assert low <= started <= high, (started, inside, edge)
        # The published weight: N x period / the time the last window was really open (~1 s).
        assert one_in * PERIOD / (WINDOW + 0.05) <= weight <= one_in * PERIOD / WINDOW * 1.001, weight
        estimate = started * one_in * PERIOD / WINDOW
        assert abs(estimate - len(sent)) <= one_in * PERIOD / WINDOW * (high - low) / 2 + len(sent) * 0.03, (
            estimate,
            len(sent),
        )
    finally:
        assert agent.stop() == 0, agent.log()


def test_a_window_starts_at_most_its_budget_and_counts_the_rest(
    tmp_path: Path, receiver: OtlpReceiver, lab: Lab
) -> None:
    """max_paths_per_second holds inside a window: it may start budget x window paths (its quota,
    counted in the kernel per window).  Then the window closes early (nothing after could start a
    path): the candidates until the agent disarms it are counted refused, and the later packets of
    the window meet no armed window at all."""
    port, budget, per_window, windows = 7941, 30, 120, 3
    quota = budget * WINDOW
    agent = AgentProcess.start(
        tmp_path,
        windows_yaml(receiver, dst=f"{lab.server_ip}/32", ports=str(port), interfaces=lab.if_server, budget=budget),
    )
    try:
        first_window_opened(agent)
        started0 = agent.value("pktpath_paths_started_total", sampled_by="rate")
        refused0 = agent.value("pktpath_paths_refused_total", reason="budget")
        spent0 = agent.value("pktpath_sampling_windows_quota_spent_total")
        first = (math.floor(time.time() / PERIOD) + 1) * PERIOD
        # Every packet well inside a window (0.1 .. 0.9 s after its opening): each is a candidate.
        plan = [
            (first + k * PERIOD + 0.1 + 0.8 * i / per_window, port, 64)
            for k in range(windows)
            for i in range(per_window)
        ]
        send_at(lab, plan)
        time.sleep(0.5)
        started = agent.value("pktpath_paths_started_total", sampled_by="rate") - started0
        refused = agent.value("pktpath_paths_refused_total", reason="budget") - refused0
        # Started: the quota of each window, plus at most one per CPU that passed the test together.
        cpus = os.cpu_count() or 1
        assert windows * quota <= started <= windows * (quota + cpus), started
        assert agent.value("pktpath_sampling_windows_quota_spent_total") - spent0 == windows
        # Packets come every 6.7 ms and the agent polls every 10 ms: a few are refused in between,
        # not the 90 of each window that follow its quota.
        assert 0 <= refused <= windows * 15, (started, refused)
    finally:
        assert agent.stop() == 0, agent.log()


def roots_of(receiver: OtlpReceiver, service: str, port: int) -> list[ReceivedSpan]:
    return [
        s
        for s in receiver.spans
        if not s.parent_span_id
        and s.resource.get("service.name") == service
        and s.attributes.get("destination.port") == port
    ]


def test_two_agents_open_their_windows_together_and_their_traces_meet(
    tmp_path: Path, receiver: OtlpReceiver, lab: Lab
) -> None:
    """Two "nodes": the client's namespace (its veth transmits) and the server's (its veth receives),
    each watched by its own agent.  Packets sent steadily over three periods are followed by both in
    the same windows, under the same trace ids."""
    port, rate = 7937, 100
    dst, ports = f"{lab.server_ip}/32", str(port)
    a = AgentProcess.start(
        tmp_path, windows_yaml(receiver, dst=dst, ports=ports, interfaces=lab.if_client, service="node-a")
    )
    try:
        b = AgentProcess.start(
            tmp_path, windows_yaml(receiver, dst=dst, ports=ports, interfaces=lab.if_server, service="node-b")
        )
        try:
            first_window_opened(a, b)
            start = (math.floor(time.time() / PERIOD) + 1) * PERIOD + 0.5
            sent = send_at(lab, [(start + i / rate, port, 64) for i in range(3 * PERIOD * rate)])
            surely_in = sum(1 for t in sent if 0.02 <= phase(t) <= WINDOW - 0.02)
            maybe_in = sum(1 for t in sent if phase(t) <= WINDOW + 0.02 or phase(t) >= PERIOD - 0.02)
            assert wait_until(
                lambda: (
                    len(roots_of(receiver, "node-a", port)) >= surely_in
                    and len(roots_of(receiver, "node-b", port)) >= surely_in
                ),
                10,
            )
            time.sleep(0.5)
            ids_a = {s.trace_id for s in roots_of(receiver, "node-a", port)}
            ids_b = {s.trace_id for s in roots_of(receiver, "node-b", port)}
            # Each followed the packets of each of three windows, and none between them.
            assert surely_in <= len(ids_a) <= maybe_in and surely_in <= len(ids_b) <= maybe_in
            # The same packets: only those crossing an edge between the two first hops may differ.
            assert len(ids_a & ids_b) >= len(ids_a | ids_b) - 6, (len(ids_a), len(ids_b), len(ids_a & ids_b))
            first_a = min(s.start_ns for s in roots_of(receiver, "node-a", port)) / 1e9
            first_b = min(s.start_ns for s in roots_of(receiver, "node-b", port)) / 1e9
            assert phase(first_a) < 0.05 or phase(first_a) > PERIOD - 0.05 or first_a - start < 0.05
            assert abs(first_a - first_b) < 0.05
        finally:
            assert b.stop() == 0, b.log()
    finally:
        assert a.stop() == 0, a.log()


def test_paths_start_only_inside_windows_to_the_millisecond(tmp_path: Path, receiver: OtlpReceiver, lab: Lab) -> None:
    """The kernel opens and closes a window by its own clock: every rate-sampled path's first hop is
    inside [k x period, k x period + window), none in a gap, none while the hooks are attached
    ahead of an opening."""
    port, rate = 7939, 200
    agent = AgentProcess.start(tmp_path, windows_yaml(receiver, dst=f"{lab.server_ip}/32", ports=str(port)))
    try:
        first_window_opened(agent)
        start = (math.floor(time.time() / PERIOD) + 1) * PERIOD + 0.3
        sent = send_at(lab, [(start + i / rate, port, 64) for i in range(2 * PERIOD * rate)])
        surely_in = sum(1 for t in sent if 0.005 <= phase(t) <= WINDOW - 0.005)

        def roots() -> list[ReceivedSpan]:
            return [s for s in receiver.spans if not s.parent_span_id and s.attributes.get("destination.port") == port]

        assert wait_until(lambda: len(roots()) >= surely_in, 10), (len(roots()), surely_in)
        time.sleep(0.5)
        phases = sorted(round(phase(s.start_ns / 1e9), 4) for s in roots())
        # Span times are the kernel's clock moved to the wall clock by the agent: a millisecond of slack.
        assert all(p <= WINDOW + 0.001 or p >= PERIOD - 0.001 for p in phases), phases
        assert len(phases) <= surely_in + 4
    finally:
        assert agent.stop() == 0, agent.log()
