"""Run inside stock kernels under QEMU (tests/vm), where fentry or kprobes attach: the function
hooks and their unsampled verdict counters, against the same kind of lab as tests/kernel."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess
from tests.kernel.lab import Lab
from tests.kernel.test_drops import NETFILTER
from tests.vm.guest.conftest import EXPECTED_FAMILY, MODE, attached, module_btf, trace_one, udp_sender

N = 20


@pytest.mark.parametrize("probe", ["nft_do_chain", "fib_validate_source", "ip_route_input_noref"])
def test_verdict_hooks_attach_in_the_requested_mode(agent: AgentProcess, probe: str) -> None:
    families = attached(agent, probe)
    if probe == "nft_do_chain" and not module_btf():
        # No BTF for nf_tables' types before 5.11: the hook cannot read them, and says so.
        assert families == set(), agent.log()
        assert "module nf_tables has no BTF (module BTF is 5.11+)" in agent.log()
        return
    assert len(families) == 1 and families <= EXPECTED_FAMILY.get(MODE, {MODE}), (probe, families, agent.log())


def counter(agent: AgentProcess, name: str, **labels: str) -> float:
    return agent.value(name, **labels)


def test_netfilter_drop_verdicts_are_counted_exactly(agent: AgentProcess, lab: Lab) -> None:
    labels = {"family": "ipv4", "hook": "input", "table": "filter", "verdict": "drop"}
    before = counter(agent, "pktpath_netfilter_verdicts_total", **labels)
    lab.exec(lab.server, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "7501", "-j", "DROP")
    lab.send_udp(lab.client, lab.server_ip, 7501, N)
    if not module_btf():
        # nftables' verdicts are not countable there (no nft_do_chain hook); its drops still are, at
        # the netfilter hook that frees them.
        assert agent.wait_value("pktpath_drops_total", N, 5.0, **NETFILTER.labels(lab.if_server, "udp")) == N
        assert counter(agent, "pktpath_netfilter_verdicts_total", **labels) == before
        return
    assert agent.wait_value("pktpath_netfilter_verdicts_total", before + N, 5.0, **labels) == before + N


def test_rp_filter_failures_are_counted_per_interface(agent: AgentProcess, lab: Lab) -> None:
    spoofed = lab.spoof_for_rp_filter()
    lab.send_udp(lab.client, lab.server_ip, 7502, N, src=spoofed)
    labels = {"result": "fail", "interface": lab.if_router_client}
    assert agent.wait_value("pktpath_rp_filter_checks_total", N, 5.0, **labels) == N


def test_route_misses_are_counted(agent: AgentProcess, lab: Lab) -> None:
    before = counter(agent, "pktpath_route_lookups_total", result="no_route")
    lab.send_udp(lab.client, "198.19.255.1", 7503, N)
    # A quiet guest: nothing else looks up a route to nowhere while the test runs.
    assert agent.wait_value("pktpath_route_lookups_total", before + N, result="no_route") == before + N


def test_trace_shows_the_original_netfilter_lines(tmp_path: Path, lab: Lab) -> None:
    """The interactive tracer's hop lines for a packet dropped by an iptables rule."""
    lab.exec(lab.server, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "7504", "-j", "DROP")
    packet = trace_one(lab, [sys.executable, "-c", udp_sender(lab.server_ip, 7504)], lab.client)
    details = [h["detail"] for h in packet["hops"]]
    assert any(d.startswith("Will check NFPROTO_IPV4(2), NF_INET_LOCAL_IN(1)") for d in details), details
    chain_line = "filter/INPUT, NFPROTO_IPV4(2), NF_INET_LOCAL_IN(1), check done, NF_DROP(0)"
    if module_btf():
        assert chain_line in details, details
    else:  # no nft_do_chain hook (see above): the hook's entry, then the drop, named from where it happened
        assert chain_line not in details, details
    assert packet["drop_reason"] == "NETFILTER_DROP"
