"""Sampled packets followed hop by hop through the real kernel, received as OTLP traces.

A real OTLP receiver (gRPC and HTTP/protobuf, decoded with opentelemetry-proto)
runs in the test; the agent runs as a user runs it.  Each test builds its own
lab and uses its own UDP port, so its trace is found by destination.port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.paths.kernel_config import per_window
from tests.agent_process import AgentProcess, free_port, wait_until
from tests.kernel.lab import Lab
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

FILTER = """
filter:
  dst: [198.18.0.0/15]
  protocols: [udp]
  ports: ["7100-7199"]
"""


def traces_yaml(endpoint: str, protocol: str = "grpc", one_in: int = 1, drop_one_in: int = 1) -> str:
    return f"""
traces:
  exporter: otlp
  protocol: {protocol}
  endpoint: {endpoint}
  schedule_delay_ms: 100
sampling:
  continuous: true
  one_in: {one_in}
  drop_one_in: {drop_one_in}
  max_paths_per_second: 0
"""


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def path_agent(tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver) -> Iterator[AgentProcess]:
    agent = AgentProcess.start(tmp_path_factory.mktemp("paths"), traces_yaml(receiver.grpc_endpoint) + FILTER)
    yield agent
    assert agent.stop() == 0, agent.log()


def traces_to(
    receiver: OtlpReceiver, dport: int, count: int = 1, timeout: float = 10.0
) -> dict[str, list[ReceivedSpan]]:
    """{trace id: spans ordered by start} of the packets sent to `dport`, once `count` roots arrived."""

    def roots() -> list[ReceivedSpan]:
        return [s for s in receiver.spans if not s.parent_span_id and s.attributes.get("destination.port") == dport]

    assert wait_until(lambda: len(roots()) >= count, timeout), f"{len(roots())} traces to port {dport}"
    time.sleep(0.3)  # children are exported in the same batch, but let a straggling batch land
    out: dict[str, list[ReceivedSpan]] = {}
    for root in roots():
        spans = [s for s in receiver.spans if s.trace_id == root.trace_id]
        out[root.trace_id] = sorted(spans, key=lambda s: (s.parent_span_id != "", s.start_ns))
    return out


def hop_names(spans: list[ReceivedSpan]) -> list[str]:
    return [s.name for s in spans if s.parent_span_id]


def assert_in_order(names: list[str], expected: list[str]) -> None:
    """Every expected prefix appears, in this order (other hops may sit between)."""
    i = 0
    for name in names:
        if i < len(expected) and name.startswith(expected[i]):
            i += 1
    assert i == len(expected), f"missing {expected[i:]} in {names}"


def udp_listener(lab: Lab, port: int, count: int, cpu: int = 0) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            lab.server,
            "taskset",
            "-c",
            str(cpu),
            sys.executable,
            "-c",
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            f"s.bind(('{lab.server_ip}',{port}))\nprint('ready',flush=True)\n"
            f"for _ in range({count}): s.recv(2048)\nprint('done',flush=True)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_forwarded_and_delivered_packet_is_one_trace(
    path_agent: AgentProcess, receiver: OtlpReceiver, lab: Lab
) -> None:
    # Sender and reader on one CPU: the reader then frees the datagram on the CPU that
    # allocated it, directly.  On another CPU the free is deferred to skb_defer_free_flush(),
    # which does fire consume_skb, and the path would end "consumed" instead.
    listener = udp_listener(lab, 7101, 1, cpu=0)
    try:
        lab.send_udp(lab.client, lab.server_ip, 7101, 1, cpu=0)
        assert listener.stdout is not None and listener.stdout.readline().strip() == "done"
    finally:
        listener.kill()
        listener.wait()
    ((_trace_id, spans),) = traces_to(receiver, 7101).items()
    root = spans[0]
    assert root.name == f"UDP {lab.client_ip}:{root.attributes['source.port']} -> {lab.server_ip}:7101"
    assert root.attributes["source.address"] == lab.client_ip
    assert root.attributes["network.transport"] == "udp"
    # UDP hands a linear datagram to the reader with copy_linear_skb() and frees it with
    # __consume_stateless_skb(), neither with a tracepoint; sk_data_ready (6.13+) marks its
    # arrival in the socket, attributed to the packet this CPU received last.
    assert root.attributes["pktpath.outcome"] == "delivered", " | ".join(hop_names(spans))
    assert root.status_code != "ERROR"
    names = hop_names(spans)
    assert names == [
        f"net_dev_queue({lab.if_client})",
        f"net_dev_xmit({lab.if_client})",
        f"netif_receive_skb({lab.if_router_client})",
        f"fib lookup (table main, found -> {lab.if_router_server})",
        f"net_dev_queue({lab.if_router_server})",
        f"net_dev_xmit({lab.if_router_server})",
        f"netif_receive_skb({lab.if_server})",
        f"fib lookup (table main, found -> {lab.if_server})",
        "queued to socket (port 7101)",
    ]
    receive = next(s for s in spans if s.name == f"netif_receive_skb({lab.if_router_client})")
    assert receive.attributes["network.interface.name"] == lab.if_router_client
    # One path per packet: the hash-based decision agreed at every entry hop
    # (client transmit, router receive, server receive), so no second path.
    assert len([s for s in spans if not s.parent_span_id]) == 1
    assert all(s.start_ns >= root.start_ns and s.end_ns <= root.end_ns for s in spans)


def test_packets_freed_where_no_hop_sees_them_stop_being_tracked(
    tmp_path: Path, receiver: OtlpReceiver, lab: Lab
) -> None:
    """A TCP exchange, every packet followed.  Data segments end where they are
    queued to the socket, but pure ACKs are freed where no hop sees them, so no hop
    ends their tracking: each such entry goes when its skb pointer comes back as
    another packet (stale_pointer) or when the reaper finds it old (expired).
    Either way the kernel's count of followed packets -- the gate that lets every
    hop skip the tracked-map lookup -- must return to zero, or every packet on the
    host would pay that lookup."""
    agent = AgentProcess.start(
        tmp_path,
        traces_yaml(receiver.grpc_endpoint, drop_one_in=0)
        + f"filter:\n  dst: [{lab.server_ip}/32, {lab.client_ip}/32]\n  protocols: [tcp]\n",
    )
    try:
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                lab.server,
                sys.executable,
                "-c",
                "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                f"s.bind(('{lab.server_ip}',7160))\ns.listen()\nprint('ready',flush=True)\n"
                "c,_=s.accept()\nn=0\nwhile (b:=c.recv(65536)): n+=len(b)\nprint(n,flush=True)\n",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        lab.exec(
            lab.client,
            sys.executable,
            "-c",
            f"import socket\nc=socket.create_connection(('{lab.server_ip}',7160))\n"
            "for _ in range(50): c.sendall(b'x'*1000)\nc.close()\n",
        )
        assert server.stdout.readline().strip() == "50000"
        server.wait()
        assert agent.wait_value("pktpath_paths_started_total", 20, sampled_by="rate") >= 20
        assert wait_until(lambda: agent.value("pktpath_tracked_packets") == 0, 5), agent.scrape_text()
        ended_silently = sum(agent.value("pktpath_tracking_lost_total", reason=r) for r in ("expired", "stale_pointer"))
        assert ended_silently >= 1, agent.scrape_text()
    finally:
        assert agent.stop() == 0, agent.log()


def dropped_trace(receiver: OtlpReceiver, port: int) -> tuple[ReceivedSpan, list[ReceivedSpan]]:
    ((_, spans),) = traces_to(receiver, port).items()
    return spans[0], spans


def assert_dropped(root: ReceivedSpan, spans: list[ReceivedSpan], reason: str, interface: str) -> None:
    assert root.status_code == "ERROR"
    assert root.status_message == reason
    assert root.attributes["pktpath.drop_reason"] == reason
    last = [s for s in spans if s.parent_span_id][-1]
    assert last.name == f"DROPPED: {reason}"
    assert last.status_code == "ERROR"
    assert last.attributes["network.interface.name"] == interface


def test_iptables_drop_trace_and_exemplar(path_agent: AgentProcess, receiver: OtlpReceiver, lab: Lab) -> None:
    lab.exec(lab.server, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "7102", "-j", "DROP")
    lab.send_udp(lab.client, lab.server_ip, 7102, 1)
    root, spans = dropped_trace(receiver, 7102)
    assert_dropped(root, spans, "NETFILTER_DROP", lab.if_server)
    assert_in_order(
        hop_names(spans),
        [f"net_dev_xmit({lab.if_client})", f"netif_receive_skb({lab.if_server})", "DROPPED: NETFILTER_DROP"],
    )
    # The drop counter's series carries this trace as its exemplar (OpenMetrics only).
    prefix = f'pktpath_drops_total{{interface="{lab.if_server}",protocol="udp",reason="NETFILTER_DROP"}} 1.0 # '
    line = next(ln for ln in path_agent.scrape_text(openmetrics=True).splitlines() if ln.startswith(prefix))
    assert f'trace_id="{root.trace_id}"' in line


def test_rp_filter_drop_trace(path_agent: AgentProcess, receiver: OtlpReceiver, lab: Lab) -> None:
    spoofed = lab.spoof_for_rp_filter()
    lab.send_udp(lab.client, lab.server_ip, 7103, 1, src=spoofed)
    root, spans = dropped_trace(receiver, 7103)
    assert_dropped(root, spans, "IP_RPFILTER", lab.if_router_client)
    assert root.attributes["source.address"] == spoofed


def test_route_miss_drop_trace(path_agent: AgentProcess, receiver: OtlpReceiver, lab: Lab) -> None:
    lab.send_udp(lab.client, "198.19.255.1", 7104, 1)
    root, spans = dropped_trace(receiver, 7104)
    assert_dropped(root, spans, "IP_INNOROUTES", lab.if_router_client)
    assert_in_order(
        hop_names(spans),
        [f"netif_receive_skb({lab.if_router_client})", "fib lookup (table main, no route)", "DROPPED: IP_INNOROUTES"],
    )


def test_filter_excludes_what_it_should(path_agent: AgentProcess, receiver: OtlpReceiver, lab: Lab) -> None:
    lab.send_udp(lab.client, lab.server_ip, 7999, 20)  # port outside the filter: dropped (no socket), not traced
    lab.send_udp(lab.client, lab.server_ip, 7105, 1)  # inside: the control that proves spans were flowing
    traces_to(receiver, 7105)
    assert not [s for s in receiver.spans if s.attributes.get("destination.port") == 7999]


def test_sampling_one_in_n_is_binomial(tmp_path: Path, lab: Lab) -> None:
    """1 in 10 of 1000 distinct packets: Binomial(1000, 0.1), mean 100, sd 9.5; accept 5 sd either side
    (a false failure about once in 1.7 million runs).  Its own receiver: the module's agent follows
    these packets too."""
    with OtlpReceiver() as receiver:
        _sample_and_count(tmp_path, receiver, lab)


def _sample_and_count(tmp_path: Path, receiver: OtlpReceiver, lab: Lab) -> None:
    agent = AgentProcess.start(
        tmp_path,
        traces_yaml(receiver.grpc_endpoint, one_in=10, drop_one_in=0) + FILTER.replace("7100-7199", "7150-7150"),
    )
    try:
        before = agent.value("pktpath_paths_started_total", sampled_by="rate")
        lab.send_udp(lab.client, lab.server_ip, 7150, 1000)  # payloads differ: a counter in the first bytes
        time.sleep(0.5)
        started = agent.value("pktpath_paths_started_total", sampled_by="rate") - before
        assert 53 <= started <= 147, started
        assert agent.value("pktpath_sampling_one_in", sampled_by="rate") == 10
        # Every started path is one packet's whole path, not a second start at a later hop.
        traces = traces_to(receiver, 7150, count=int(started))
        assert len(traces) == started
        assert all(hop_names(spans)[0] == f"net_dev_queue({lab.if_client})" for spans in traces.values())
    finally:
        assert agent.stop() == 0


def test_a_drop_storm_gets_the_drop_budget_at_once_then_at_its_rate(tmp_path: Path, lab: Lab) -> None:
    """max_drop_paths_per_second holds in a storm, and every other drop is counted refused, whether
    the counting program or drop capture refuses it (drop_capture_idle).  The budget is a token
    bucket (bpf/paths.bpf.h: rate_credit): it holds a second's quota (2^30 ns), so the storm's first
    drops get paths at once, as a short burst under the budget would; once that is spent, the paths
    come at the budget's rate, an eighth of the quota every 2^27 ns, not a second's quota at once.

    The storm is steady (a drop every ~0.5 ms) and lasts about two seconds."""
    port, sent, budget = 7151, 4000, 20
    quota = per_window(budget)
    step_share = -(-quota // 8)
    cpus = os.cpu_count() or 1
    bucket_s, step_s = (1 << 30) / 1e9, (1 << 27) / 1e9
    with OtlpReceiver() as receiver:
        agent = AgentProcess.start(
            tmp_path,
            traces_yaml(receiver.grpc_endpoint, one_in=0, drop_one_in=1).replace(
                "max_paths_per_second: 0", f"max_drop_paths_per_second: {budget}"
            ),
        )
        try:
            lab.exec(lab.server, "iptables", "-A", "INPUT", "-p", "udp", "--dport", str(port), "-j", "DROP")

            def readings() -> tuple[float, float, float, float]:
                m = agent.scrape()  # one collection: the counters of one moment
                drops = m.get("pktpath_drops_total", {})
                ours = frozenset({"reason": "NETFILTER_DROP", "interface": lab.if_server, "protocol": "udp"}.items())
                return (
                    m.get("pktpath_paths_started_total", {}).get(frozenset({"sampled_by": "drop"}.items()), 0.0),
                    m.get("pktpath_paths_refused_total", {}).get(frozenset({"reason": "drop_budget"}.items()), 0.0),
                    drops.get(ours, 0.0),
                    sum(drops.values()),
                )

            before = readings()
            t0 = time.monotonic()
            lab.send_udp(lab.client, lab.server_ip, port, sent)
            storm_s = time.monotonic() - t0  # at least the storm's length (the sender's start-up included)
            assert (
                agent.wait_value(
                    "pktpath_drops_total",
                    before[2] + sent,
                    reason="NETFILTER_DROP",
                    interface=lab.if_server,
                    protocol="udp",
                )
                == before[2] + sent
            )
            started, refused, ours, every = (after - was for after, was in zip(readings(), before, strict=True))
            assert ours == sent
            assert storm_s > 2 * bucket_s  # the premise of the bounds: the storm holds a whole bucket
            # The full bucket the storm found, then a step's share for each step it crossed (and, for
            # CPUs that raced a top-up or the last credit, a share and a path each).
            steps = int(storm_s / step_s) + 1
            assert quota <= started <= quota + (steps + cpus) * step_share + cpus, (started, quota, storm_s)
            # Each drop is started or refused at most once; each of ours at least once (nothing else
            # was followed: one_in 0).  Other drops on the host in the meantime may add to both.
            assert sent <= started + refused <= every, (started, refused, sent, every)

            # (`started` counts the whole host's drop paths; the storm's are those to its port.)
            time.sleep(1.0)  # the last paths' grace and the exporter's 100 ms batch delay
            starts = sorted(
                s.start_ns
                for s in receiver.spans
                if not s.parent_span_id and s.attributes.get("destination.port") == port
            )
            others = started - len(starts)  # other drops on the host that took from the budget
            assert others >= 0, (len(starts), started)
            # At once: the time the storm's first 2 x quota drops take (at most storm_s / sent each;
            # 100 ms at least, under a step on this machine) gets the whole quota the idle budget
            # held, less what other drops took.  Paced from empty, it would get a step's share.
            burst_ns = int(max(0.1, 2 * quota * storm_s / sent) * 1e9)
            burst = sum(1 for t in starts if t < starts[0] + burst_ns)
            assert burst >= quota - others, (burst, quota, others, burst_ns)
            # And the budget refills: every step boundary between the storm's first and last path
            # added at least quota // 8 paths' credit, which the storm spent (a step's credit aside).
            boundaries = (starts[-1] - starts[0]) // (1 << 27)
            assert started >= quota + (boundaries - 1) * (quota // 8), (started, quota, boundaries)
            # Then at its rate: past the storm's first bucket, no 100 ms (less than a step) holds more
            # than two steps' shares, a path per CPU aside.  Without the steps, each later second's
            # quota would start in its first ~quota x 0.5 ms.
            steady = [t for t in starts if t >= starts[0] + int(bucket_s * 1e9)]
            assert steady, "no path started past the storm's first bucket: the budget never refilled"
            busiest = max(sum(1 for u in steady if t <= u < t + 100_000_000) for t in steady)
            assert busiest <= 2 * step_share + cpus, (busiest, step_share, quota)
        finally:
            assert agent.stop() == 0, agent.log()


def test_two_agents_put_the_same_packet_in_one_trace(
    tmp_path: Path, path_agent: AgentProcess, receiver: OtlpReceiver, lab: Lab
) -> None:
    """A second agent exporting over HTTP/protobuf computes the same trace id for the same packet."""
    other = AgentProcess.start(tmp_path, traces_yaml(receiver.http_endpoint, protocol="http/protobuf") + FILTER)
    try:
        lab.send_udp(lab.client, lab.server_ip, 7106, 1)
        roots = [s for s in wait_roots(receiver, 7106, 2)]
        assert {r.protocol for r in roots} == {"grpc", "http"}
        assert roots[0].trace_id == roots[1].trace_id
    finally:
        assert other.stop() == 0


def wait_roots(receiver: OtlpReceiver, dport: int, count: int) -> list[ReceivedSpan]:
    def roots() -> list[ReceivedSpan]:
        return [s for s in receiver.spans if not s.parent_span_id and s.attributes.get("destination.port") == dport]

    assert wait_until(lambda: len(roots()) >= count, 10.0), roots()
    return roots()


def test_sighup_applies_filter_live_and_keeps_config_when_invalid(
    tmp_path: Path, receiver: OtlpReceiver, lab: Lab
) -> None:
    agent = AgentProcess.start(tmp_path, traces_yaml(receiver.grpc_endpoint) + FILTER)
    cfg = next(tmp_path.glob("agent-*.yaml"))
    try:
        lab.send_udp(lab.client, lab.server_ip, 7301, 1)
        lab.send_udp(lab.client, lab.server_ip, 7107, 1)
        traces_to(receiver, 7107)
        assert not [s for s in receiver.spans if s.attributes.get("destination.port") == 7301]

        cfg.write_text(cfg.read_text().replace("7100-7199", "7300-7399"))
        agent.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "filter and sampling applied" in agent.log())
        lab.send_udp(lab.client, lab.server_ip, 7302, 1)
        traces_to(receiver, 7302)

        cfg.write_text(cfg.read_text() + "sampling:\n  one_in: -5\n")
        agent.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "reload failed, keeping the running config" in agent.log())
        lab.send_udp(lab.client, lab.server_ip, 7303, 1)
        traces_to(receiver, 7303)  # the old filter still runs
    finally:
        assert agent.stop() == 0


def test_endpoint_down_keeps_counting_and_counts_lost_spans(tmp_path: Path, lab: Lab) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    agent = AgentProcess.start(
        tmp_path,
        traces_yaml(dead).replace("schedule_delay_ms: 100", "schedule_delay_ms: 100\n  export_timeout_ms: 500")
        + FILTER,
    )
    try:
        lab.exec(lab.server, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "7108", "-j", "DROP")
        lab.send_udp(lab.client, lab.server_ip, 7108, 30)
        seen = agent.wait_value(
            "pktpath_drops_total", 30, reason="NETFILTER_DROP", interface=lab.if_server, protocol="udp"
        )
        assert seen == 30
        assert wait_until(lambda: agent.value("pktpath_spans_dropped_total", reason="export_failed") > 0, 15)
        assert agent.value("pktpath_spans_exported_total") == 0
    finally:
        assert agent.stop() == 0
