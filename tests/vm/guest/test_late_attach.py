"""A hook whose function lives in a module loaded after the agent started (nft_do_chain
before the host's first nftables rule) attaches when the module appears."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess, wait_until
from tests.kernel.lab import Lab
from tests.vm.guest.conftest import attached

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
    subprocess.run(["nft", "flush", "ruleset"], check=True)
    unload("nf_tables")
    assert "nf_tables" not in loaded_modules()
    agent = AgentProcess.start(tmp_path)
    try:
        assert attached(agent, "nft_do_chain") == set()
        # The first nftables rule loads the module (the kernel's request_module).
        lab.nft(lab.server, "table ip late {\n chain input {\n  type filter hook input priority 0;\n"
                            "  udp dport 7601 drop\n }\n}\n")
        assert "nf_tables" in loaded_modules()
        assert wait_until(lambda: attached(agent, "nft_do_chain") != set(), 60), agent.log()  # emulated: slow load
        assert "hop nft_do_chain attached late" in agent.log()
        lab.send_udp(lab.client, lab.server_ip, 7601, N)
        labels = {"family": "ipv4", "hook": "input", "table": "late", "verdict": "drop"}
        assert agent.wait_value("pktpath_netfilter_verdicts_total", N, 5.0, **labels) == N
        assert agent.value("pktpath_drops_total", reason="NETFILTER_DROP", interface=lab.if_server,
                           protocol="udp") == N
    finally:
        assert agent.stop() == 0, agent.log()
