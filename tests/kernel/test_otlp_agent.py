"""The agent's OTLP export as a process: stopping is bounded whatever the collector does.

Paths come from UDP on loopback (127.0.0.2 -> 127.0.0.1, a port of the test's own), which the
agent's filter follows 1 in 1; the collector is a BlackHole (accepts TCP, never answers), the
worst a collector can do to a sender's shutdown.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess, wait_until
from tests.otlp_receiver import BlackHole

STOP_BUDGET_S = 4.5  # docs/traces.md: the traces shutdown takes 3 s at most; the rest stops in well under 1 s


def send_udp(port: int, count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.2", 0))
        for n in range(count):
            s.sendto(n.to_bytes(8, "big"), ("127.0.0.1", port))


def paths_finished(agent: AgentProcess) -> float:
    return sum(agent.scrape().get("pktpath_sampled_paths_total", {}).values())


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_stopping_with_a_black_holed_collector_is_bounded(protocol: str, tmp_path: Path) -> None:
    port = 41000 + os.getpid() % 1000
    with BlackHole() as hole:
        # Default batching and timeouts (export_timeout_ms 10 s): only the endpoint is set.
        agent = AgentProcess.start(
            tmp_path,
            f"traces:\n  exporter: otlp\n  protocol: {protocol}\n"
            f'  endpoint: "{hole.endpoint}"\n'
            "sampling:\n  continuous: true\n  one_in: 1\n  drop_one_in: 0\n"
            f"filter:\n  src: [127.0.0.2/32]\n  protocols: [udp]\n  ports: [{port}]\n",
        )
        try:
            send_udp(port, 50)
            # The first batch leaves after schedule_delay_ms (1 s) and hangs in the black hole ...
            assert wait_until(lambda: hole.connections >= 1 and paths_finished(agent) >= 50, timeout=10.0), agent.log()
            send_udp(port, 50)  # ... while these wait in the queue behind it
            assert wait_until(lambda: paths_finished(agent) >= 100, timeout=5.0), agent.log()
        finally:
            began = time.monotonic()
            status = agent.stop(timeout=15.0)
            took = time.monotonic() - began
        log = agent.log()
    assert status == 0, log
    assert took < STOP_BUDGET_S, f"SIGTERM to exit took {took:.2f}s\n{log}"
    assert "export did not finish within 3.0s of shutdown; dropping what is queued" in log
    assert "Traceback" not in log
