"""A hook whose function lives in a module loaded after the agent started (nft_do_chain
before the host's first nftables rule; ipt_do_table on kernels without module BTF) attaches
when the module appears."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess, wait_until
from tests.kernel.lab import Lab
from tests.kernel.test_drops import NETFILTER
from tests.vm.guest.conftest import attached, module_btf

N = 20


def loaded_modules() -> dict[str, list[str]]:
    """Module -> the modules that use it, from /proc/modules."""
    users: dict[str, list[str]] = {}
    for line in Path("/proc/modules").read_text().splitlines():
        name, _size, _refs, used_by, *_ = line.split()
        users[name] = [u for u in used_by.split(",") if u and u != "-"]
    return users


def unload(module: str) -> None:
    """Remove `module` and, first, every module that uses it (earlier tests load
    nf_tables through iptables-nft).  Their namespaces are deleted, but the kernel
    tears namespaces down in a workqueue, and until it has, their tables hold the
    module: retry for a while."""
    for user in loaded_modules().get(module, []):
        unload(user)
    deadline = time.monotonic() + 30
    while module in loaded_modules():
        rmmod = subprocess.run(["rmmod", module], capture_output=True, text=True)
        if rmmod.returncode != 0:
            assert time.monotonic() < deadline, f"rmmod {module}: {rmmod.stderr.strip()}"
            time.sleep(0.5)


@pytest.mark.before_agent
def test_hook_in_a_module_loaded_after_start_attaches(tmp_path: Path, lab: Lab) -> None:
    if module_btf():
        hop, module = "nft_do_chain", "nf_tables"
        subprocess.run(["nft", "flush", "ruleset"], check=True)
    else:
        # Before 5.11 modules have no BTF: nft_do_chain cannot be hooked at all (test_verdicts.py),
        # ipt_do_table by kprobe, and the agent notices its module in /sys/module instead.
        hop, module = "ipt_do_table", "ip_tables"
    unload(module)
    assert module not in loaded_modules()
    agent = AgentProcess.start(tmp_path)
    try:
        assert attached(agent, hop) == set()
        # The first rule loads the module (the kernel's request_module).
        if hop == "nft_do_chain":
            lab.nft(
                lab.server,
                "table ip late {\n chain input {\n  type filter hook input priority 0;\n  udp dport 7601 drop\n }\n}\n",
            )
            table = "late"
        else:
            lab.exec(lab.server, "iptables-legacy", "-A", "INPUT", "-p", "udp", "--dport", "7601", "-j", "DROP")
            table = "filter"
        assert module in loaded_modules()
        assert wait_until(lambda: attached(agent, hop) != set(), 60), agent.log()  # emulated: slow load
        assert f"hop {hop} attached late" in agent.log()
        lab.send_udp(lab.client, lab.server_ip, 7601, N)
        labels = {"family": "ipv4", "hook": "input", "table": table, "verdict": "drop"}
        assert agent.wait_value("pktpath_netfilter_verdicts_total", N, 5.0, **labels) == N
        assert agent.value("pktpath_drops_total", **NETFILTER.labels(lab.if_server, "udp")) == N
    finally:
        assert agent.stop() == 0, agent.log()
