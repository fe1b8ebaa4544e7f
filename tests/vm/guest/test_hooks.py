"""The later IP hops (ip_rcv_finish, ip_forward_finish, ip_queue_xmit, ip_finish_output) and
iptables-legacy's ipt_do_table, on stock kernels under QEMU (tests/vm): each attaches in the
requested mode, shows up in real packets' paths, and ipt_do_table's verdicts are counted exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.agent_process import AgentProcess, pktpath_bin
from tests.kernel.lab import Lab
from tests.vm.guest.conftest import EXPECTED_FAMILY, MODE, attached, trace_one, udp_sender

N = 20
# ip6_forward_finish has no probe: inlined on 6.1 and 6.12 (pktpath.bpf.c).
PROBES = [
    "ip_rcv_finish",
    "ip6_rcv_finish",
    "ip_forward_finish",
    "ip_queue_xmit",
    "ip6_xmit",
    "ip_finish_output",
    "ip6_finish_output",
    "ipt_do_table",
]


@pytest.fixture(scope="module")
def check_report(agent: AgentProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`pktpath check --json` in the requested mode: it attaches every hop at once (the agent's
    path hops come and go with its windows).  `agent` first: it loads the modules."""
    cfg = tmp_path_factory.mktemp("check") / "check.yaml"
    cfg.write_text(f"probes:\n  mode: {MODE}\n")
    proc = subprocess.run(
        [pktpath_bin(), "check", "--json", "-c", str(cfg)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


@pytest.mark.parametrize("probe", PROBES)
def test_hooks_attach_in_the_requested_mode(check_report: dict[str, Any], probe: str) -> None:
    hop = check_report["hops"][probe]
    assert hop["attached"] in EXPECTED_FAMILY.get(MODE, {MODE}), hop
    # A forced function-hook mode leaves the tracepoint-only drop hop on its tracepoint.
    assert check_report["hops"]["kfree_skb"]["attached"] == "tracepoint"


def test_ipt_verdict_hook_attaches_in_the_agent(agent: AgentProcess) -> None:
    """The verdict counter is always on: the agent attaches ipt_do_table even with paths off."""
    families = attached(agent, "ipt_do_table")
    assert len(families) == 1 and families <= EXPECTED_FAMILY.get(MODE, {MODE}), (families, agent.log())


def hop_names(packet: dict[str, Any]) -> list[str]:
    return [h["hop"] for h in packet["hops"]]


def test_forwarded_packet_passes_the_finish_hops_in_order(lab: Lab) -> None:
    sender = udp_sender(lab.server_ip, 7511)
    packet = trace_one(lab, [sys.executable, "-c", sender], lab.client)
    names = hop_names(packet)
    # The router forwards it: ip_forward, past the FORWARD hook (ip_forward_finish), ip_output,
    # past POST_ROUTING (ip_finish_output), then the device.
    rcv = names.index("ip_rcv")
    fwd = names.index("ip_forward", rcv)
    fin = names.index("ip_forward_finish", fwd)
    out = names.index("ip_finish_output", names.index("ip_output", fin))
    assert out < names.index("net_dev_queue", out), names
    # The client's own output passes ip_finish_output too, before the router receives the packet.
    assert names.index("ip_finish_output") < rcv, names
    # (ip_rcv_finish is not asserted: inlined into ip_rcv on 6.1 and 6.12, see pktpath.bpf.c.)
    modes = {h["mode"] for h in packet["hops"] if h["hop"] in ("ip_forward_finish", "ip_finish_output")}
    assert len(modes) == 1 and modes <= EXPECTED_FAMILY.get(MODE, {MODE}), modes


def test_locally_sent_tcp_segment_starts_at_ip_queue_xmit(lab: Lab) -> None:
    # A SYN to a closed port: the server answers RST, the connect fails, the SYN was sent.
    sender = f"import socket; s = socket.socket(); s.settimeout(5); print(s.connect_ex(('{lab.server_ip}', 7512)))"
    packet = trace_one(lab, [sys.executable, "-c", sender], lab.client)
    names = hop_names(packet)
    assert packet["protocol"] == "tcp" and packet["dport"] == 7512
    assert names[:2] == ["ip_queue_xmit", "ip_output"], names
    assert packet["hops"][0]["mode"] in EXPECTED_FAMILY.get(MODE, {MODE})


def test_iptables_legacy_drops_are_counted_exactly(agent: AgentProcess, lab: Lab) -> None:
    labels = {"family": "ipv4", "hook": "input", "table": "filter", "verdict": "drop"}
    before = agent.value("pktpath_netfilter_verdicts_total", **labels)
    lab.exec(lab.server, "iptables-legacy", "-A", "INPUT", "-p", "udp", "--dport", "7513", "-j", "DROP")
    # No nftables rule anywhere in this lab: every count below is ipt_do_table's.
    assert lab.exec(lab.server, "nft", "list", "ruleset").stdout.strip() == ""
    lab.send_udp(lab.client, lab.server_ip, 7513, N)
    assert agent.wait_value("pktpath_netfilter_verdicts_total", before + N, 5.0, **labels) == before + N


def test_trace_shows_the_legacy_table_and_chain(lab: Lab) -> None:
    lab.exec(lab.server, "iptables-legacy", "-A", "INPUT", "-p", "udp", "--dport", "7514", "-j", "DROP")
    sender = udp_sender(lab.server_ip, 7514)
    packet = trace_one(lab, [sys.executable, "-c", sender], lab.client)
    legacy = [h for h in packet["hops"] if h["hop"] == "ipt_do_table"]
    assert [h["detail"] for h in legacy] == [
        "filter/INPUT, NFPROTO_IPV4(2), NF_INET_LOCAL_IN(1), check done, NF_DROP(0)"
    ], packet["hops"]
    assert legacy[0]["mode"] in EXPECTED_FAMILY.get(MODE, {MODE})
    assert packet["drop_reason"] == "NETFILTER_DROP"


def test_reinjected_packet_passes_ip_rcv_finish(lab: Lab) -> None:
    """ip_rcv_finish is inlined into ip_rcv on 6.1 and 6.12; its own copy runs when a packet queued
    at PRE_ROUTING is accepted from userspace and reinjected through the hook's okfn."""
    subprocess.run(["modprobe", "-a", "nfnetlink_queue", "xt_NFQUEUE", "iptable_raw"], check=True)
    reader = subprocess.Popen(
        ["ip", "netns", "exec", lab.router, sys.executable, "-m", "tests.vm.guest.nfqueue", "5", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "ready", reader.stderr
        lab.exec(
            lab.router,
            "iptables-legacy",
            "-t",
            "raw",
            "-A",
            "PREROUTING",
            "-p",
            "udp",
            "--dport",
            "7515",
            "-j",
            "NFQUEUE",
            "--queue-num",
            "5",
        )
        packet = trace_one(lab, [sys.executable, "-c", udp_sender(lab.server_ip, 7515)], lab.client)
        assert reader.wait(timeout=60) == 0, reader.stderr.read() if reader.stderr else ""
    finally:
        reader.kill()
        reader.wait()
    names = hop_names(packet)
    # On the router: received, queued by the raw table, reinjected into ip_rcv_finish, forwarded.
    rcv = names.index("ip_rcv", names.index("netif_receive_skb", 1))
    queued = names.index("ipt_do_table", rcv)
    assert (
        packet["hops"][queued]["detail"]
        == "raw/PREROUTING, NFPROTO_IPV4(2), NF_INET_PRE_ROUTING(0), check done, NF_QUEUE(3)"
    )
    assert queued < names.index("ip_rcv_finish", queued) < names.index("ip_forward", queued), names
    assert packet["hops"][names.index("ip_rcv_finish")]["mode"] in EXPECTED_FAMILY.get(MODE, {MODE})
