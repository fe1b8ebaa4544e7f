"""`pktpath run` at start-up: with a metrics address it cannot listen on, one line, exit 1, nothing
attached (the socket is bound before any BPF is loaded, exporter/metrics/listener.py; the test holds
the port itself, as another process would); otherwise the drop program attaches first, alone, and
every other hop after it.
"""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest

from exporter.loader.probes import TAIL_CALL
from tests.agent_process import AgentProcess, pktpath_bin


def run_agent(tmp_path: Path, listen: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f'metrics:\n  listen: "{listen}"\n')
    return subprocess.run([pktpath_bin(), "run", "-c", str(cfg)], capture_output=True, text=True, timeout=30)


def assert_one_line_before_any_probe(proc: subprocess.CompletedProcess[str], expected: str) -> None:
    assert proc.returncode == 1, proc.stderr
    # The agent logs every hop it attaches on stderr: a single line means none was attached.
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "attached" not in proc.stderr
    assert proc.stderr == f"pktpath: {expected}\n"


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_busy_metrics_port_is_one_line_and_nothing_attaches(tmp_path: Path, family: str) -> None:
    af, host = (socket.AF_INET, "127.0.0.1") if family == "ipv4" else (socket.AF_INET6, "::1")
    with socket.socket(af, socket.SOCK_STREAM) as held:
        held.bind((host, 0))
        held.listen(1)
        port = held.getsockname()[1]
        listen = f"{host}:{port}" if family == "ipv4" else f"[{host}]:{port}"
        proc = run_agent(tmp_path, listen)
    assert_one_line_before_any_probe(proc, f"metrics.listen: cannot listen on {listen}: Address already in use")


def test_address_not_on_this_host_is_one_line(tmp_path: Path) -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never an address of this machine.
    proc = run_agent(tmp_path, "192.0.2.1:9977")
    assert_one_line_before_any_probe(
        proc, "metrics.listen: cannot listen on 192.0.2.1:9977: Cannot assign requested address"
    )


def test_the_drop_program_attaches_first_and_every_other_hop_after_it(tmp_path: Path) -> None:
    """Two loads (exporter/loader/engine.py, Engine.start): the drop program's verification alone
    stands between start and the first probe; the other hops load after it and still attach."""
    agent = AgentProcess.start(tmp_path)
    try:
        attached = {
            dict(k)["probe"]
            for k, v in agent.scrape()["pktpath_probe_attached"].items()
            if v == 1 and dict(k)["attach_type"] != TAIL_CALL  # hops, not continuations
        }
        log = agent.log()
    finally:
        assert agent.stop() == 0, agent.log()
    order = re.findall(r"hop (\S+) attached \(", log)
    assert order[0] == "kfree_skb", log
    assert len(order) > 1 and set(order) >= attached - {"kfree_skb"}, (order, attached)
    assert log.index("hop kfree_skb attached") < log.index("first probe attached")
