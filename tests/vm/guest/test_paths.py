"""Packet paths on stock kernels, received as OTLP traces by a real receiver, with every hook
this kernel allows: a forwarded packet is followed through every hop to the end of its life,
and a dropped one ends at its drop, named by reason (derived from the drop's location on
kernels without drop reasons, such as 5.10)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.agent_process import AgentProcess, wait_until
from tests.kernel.lab import Lab
from tests.kernel.test_drops import NETFILTER
from tests.kernel.test_paths import assert_dropped, assert_in_order, dropped_trace, hop_names, traces_yaml
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.vm.guest.conftest import WINDOW_LINKS


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AgentProcess, OtlpReceiver]]:
    """An agent sending every packet to the lab's servers (ICMP, UDP) as a trace to a real receiver."""
    with OtlpReceiver() as receiver:
        agent = AgentProcess.start(
            tmp_path_factory.mktemp("paths"),
            traces_yaml(receiver.grpc_endpoint)
            + "filter:\n  dst: [198.18.0.0/15, 198.19.0.0/16]\n  protocols: [udp, icmp]\n",
            ready_timeout=120.0,
        )
        yield agent, receiver
        assert agent.stop() == 0, agent.log()


def test_forwarded_packet_is_followed_to_its_end(traced: tuple[AgentProcess, OtlpReceiver], lab: Lab) -> None:
    """One echo request: sent by the client, forwarded by the router, answered and consumed by
    the server (icmp_rcv frees it with consume_skb on every kernel: a definite end)."""
    _, receiver = traced
    lab.ping(lab.client, lab.server_ip, count=1)

    def requests() -> list[ReceivedSpan]:
        # Echo requests only: the router's replies to the lab's warm-up pings go to the server too.
        return [
            s
            for s in receiver.spans
            if not s.parent_span_id
            and s.attributes.get("destination.address") == lab.server_ip
            and s.attributes.get("pktpath.ip.protocol") == "icmp"
            and s.attributes.get("pktpath.icmp.type") == 8
        ]

    def path_of(root: ReceivedSpan) -> list[ReceivedSpan]:
        return sorted(
            (s for s in receiver.spans if s.trace_id == root.trace_id),
            key=lambda s: (s.parent_span_id != "", s.start_ns),
        )

    assert wait_until(lambda: len(requests()) >= 1, 30), [s.name for s in receiver.spans]
    time.sleep(0.3)  # children come in the same batch; let a straggling one land
    paths = [hop_names(path_of(r)) for r in requests()]
    assert len(paths) == 1, "one packet, one path:\n" + "\n".join(" | ".join(p) for p in paths)
    (root,) = requests()
    spans = path_of(root)
    names = hop_names(spans)
    assert root.attributes["pktpath.outcome"] == "consumed", names
    # The router's part, with its function hooks: in, IP receive, routed, forwarded, out.
    assert_in_order(
        names,
        [
            f"net_dev_xmit({lab.if_client})",
            f"netif_receive_skb({lab.if_router_client})",
            f"ip_rcv({lab.if_router_client})",
            f"ip_route_input_noref({lab.if_router_client})",
            f"ip_forward({lab.if_router_client})",
            "ip_forward_finish",
            "ip_output",
            "ip_finish_output",
            f"net_dev_xmit({lab.if_router_server})",
            f"netif_receive_skb({lab.if_server})",
            f"ip_rcv({lab.if_server})",
            "ip_local_deliver",
            "consume_skb",
        ],
    )


def test_packet_dropped_by_a_rule_ends_at_the_drop(traced: tuple[AgentProcess, OtlpReceiver], lab: Lab) -> None:
    path_agent, receiver = traced
    lab.exec(lab.server, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "7702", "-j", "DROP")
    lab.send_udp(lab.client, lab.server_ip, 7702, 1)
    root, spans = dropped_trace(receiver, 7702)
    names = hop_names(spans)
    assert_in_order(
        names,
        [
            f"ip_forward({lab.if_router_client})",
            f"netif_receive_skb({lab.if_server})",
            "nf_hook_slow",
            "DROPPED: NETFILTER_DROP",
        ],
    )
    # The path ends at the drop.  Since 6.8 (and in Debian's 6.1) nf_tables frees a dropped packet
    # itself, so its chain's verdict is reported as nft_do_chain returns, after the free: the one
    # hop that may follow the drop is that verdict.
    after = names[names.index("DROPPED: NETFILTER_DROP") + 1 :]
    assert after in ([], ["nft_do_chain filter/INPUT: drop"]), names
    assert root.status_code == "ERROR" and root.attributes["pktpath.drop_reason"] == "NETFILTER_DROP"
    (drop,) = [s for s in spans if s.name == "DROPPED: NETFILTER_DROP"]
    assert drop.attributes["network.interface.name"] == lab.if_server
    # The drop counter's series carries this trace as its exemplar, location label and all.
    labels = NETFILTER.labels(lab.if_server, "udp")
    prefix = "pktpath_drops_total{" + ",".join(f'{k}="{labels[k]}"' for k in sorted(labels)) + "} 1.0 # "
    line = next((ln for ln in path_agent.scrape_text(openmetrics=True).splitlines() if ln.startswith(prefix)), "")
    assert f'trace_id="{root.trace_id}"' in line, path_agent.scrape_text(openmetrics=True)


def test_unroutable_packet_ends_at_the_router(traced: tuple[AgentProcess, OtlpReceiver], lab: Lab) -> None:
    _, receiver = traced
    lab.send_udp(lab.client, "198.19.255.1", 7704, 1)
    root, spans = dropped_trace(receiver, 7704)
    assert_dropped(root, spans, "IP_INNOROUTES", lab.if_router_client)
    assert_in_order(
        hop_names(spans),
        [
            f"netif_receive_skb({lab.if_router_client})",
            f"ip_route_input_noref({lab.if_router_client})",
            "DROPPED: IP_INNOROUTES",
        ],
    )


WINDOWED_PORT = 7706


def test_a_window_follows_a_packet_through_every_function_hook(
    tmp_path_factory: pytest.TempPathFactory, lab: Lab
) -> None:
    """Sampling windows (a 1 s window every 2 s) with every hook this kernel allows: a packet
    followed inside a window has the same function-hook hops as continuous sampling gives it,
    calls and returns alike (nf_hook_slow's verdict), whichever way the window runs its function
    hooks (kprobe.multi links on 5.18+, a link each before)."""
    lab.exec(lab.server, "iptables", "-A", "INPUT", "-p", "udp", "--dport", str(WINDOWED_PORT), "-j", "ACCEPT")
    with OtlpReceiver() as receiver:
        agent = AgentProcess.start(
            tmp_path_factory.mktemp("windowed"),
            traces_yaml(receiver.grpc_endpoint).replace("continuous: true", "window_period_seconds: 2")
            + f"filter:\n  dst: [{lab.server_ip}/32]\n  protocols: [udp]\n  ports: [{WINDOWED_PORT}]\n",
            ready_timeout=120.0,
        )
        try:

            def paths() -> dict[str, list[ReceivedSpan]]:
                """Every path to the port so far, by trace id, root first then hops in order."""
                roots = [
                    s
                    for s in receiver.spans
                    if not s.parent_span_id and s.attributes.get("destination.port") == WINDOWED_PORT
                ]
                return {
                    root.trace_id: sorted(
                        (s for s in receiver.spans if s.trace_id == root.trace_id),
                        key=lambda s: (s.parent_span_id != "", s.start_ns),
                    )
                    for root in roots
                }

            def from_the_client() -> list[list[ReceivedSpan]]:
                """Paths a window followed from the start: the client's transmit is in them.  (The
                port has no listener, so every datagram is dropped at the server, and one that
                crossed while the hooks were off is still there, as drop capture's one-hop path.)"""
                return [p for p in paths().values() if f"net_dev_xmit({lab.if_client})" in hop_names(p)]

            # One datagram every 0.2 s until a window has followed one: each window follows the
            # ones it sees (1 in 1), the others cross while the hooks are off.  Under emulation
            # the first window opens late where its hooks attach one link at a time (5.10).
            deadline = time.time() + 90
            while time.time() < deadline and not from_the_client():
                lab.send_udp(lab.client, lab.server_ip, WINDOWED_PORT, 1)
                time.sleep(0.2)
            assert from_the_client(), (
                "no followed datagram started at the client:\n"
                + "\n".join(" | ".join(hop_names(spans)) for spans in paths().values())
                + "\n"
                + agent.log()
            )
            # (A window whose hooks took longer to attach than its lead opens late: it still samples.)
            windows = sum(agent.value("pktpath_sampling_windows_total", outcome=o) for o in ("on_time", "late"))
            assert windows >= 1, agent.log()
            time.sleep(0.5)  # the last paths' children land in the same batch; let a straggler land
            if WINDOW_LINKS:
                assert "function hooks attach as kprobe.multi links" in agent.log(), agent.log()
            spans = from_the_client()[0]
            names = hop_names(spans)
            assert_in_order(
                names,
                [
                    "ip_output",
                    "ip_finish_output",
                    f"net_dev_xmit({lab.if_client})",
                    f"ip_rcv({lab.if_router_client})",
                    f"ip_forward({lab.if_router_client})",
                    "ip_forward_finish",
                    "ip_output",
                    "ip_finish_output",
                    f"ip_rcv({lab.if_server})",
                    "ip_local_deliver",
                    f"nf_hook_slow({lab.if_server})",
                    "nf_hook_slow",
                ],
            )
            # The LOCAL_IN hook's return: the rule accepted it (1).
            verdicts = [s.attributes["pktpath.verdict"] for s in spans if s.name == "nf_hook_slow"]
            assert 1 in verdicts, [(s.name, s.attributes.get("pktpath.verdict")) for s in spans]
        finally:
            assert agent.stop() == 0, agent.log()
