"""Pod labels from real namespaces: processes in a lab namespace, placed in kubelet-style cgroups,
stand for a pod; the pod list comes from a file (the API server's stand-in)."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess, wait_until
from tests.kernel.lab import Lab

CGROUP_ROOT = Path("/sys/fs/cgroup/pids")  # any hierarchy: /proc/<pid>/cgroup lists them all


@pytest.fixture
def pod_process(lab: Lab) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A process in the lab's server namespace, in the cgroup kubelet would give a pod's container."""
    uid = str(uuid.uuid4())
    slice_dir = CGROUP_ROOT / "kubepods.slice" / f"kubepods-besteffort-pod{uid.replace('-', '_')}.slice"
    scope = slice_dir / "cri-containerd-0123456789ab.scope"
    scope.mkdir(parents=True)
    proc = subprocess.Popen(["ip", "netns", "exec", lab.server, "sleep", "300"])
    try:
        # `ip netns exec` execs sleep: the pid is the sleeping process.
        (scope / "cgroup.procs").write_text(str(proc.pid))
        yield uid, proc
    finally:
        proc.kill()
        proc.wait()
        scope.rmdir()
        slice_dir.rmdir()


def test_drops_carry_the_pod_and_end_when_it_is_gone(
    tmp_path: Path, lab: Lab, pod_process: tuple[str, subprocess.Popen[bytes]]
) -> None:
    uid, proc = pod_process
    pods = tmp_path / "pods.json"
    pods.write_text(json.dumps({"pods": [{"uid": uid, "namespace": "shop", "name": "checkout-7d9f", "node": "n1"}]}))
    agent = AgentProcess.start(
        tmp_path, f"kubernetes:\n  pod_labels: true\n  pods_file: {pods}\n  refresh_seconds: 1\n  expire_seconds: 2\n"
    )
    try:
        lab.exec(lab.server, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "7401", "-j", "DROP")
        lab.send_udp(lab.client, lab.server_ip, 7401, 25)
        labels = {
            "reason": "NETFILTER_DROP",
            "interface": lab.if_server,
            "protocol": "udp",
            "namespace": "shop",
            "pod": "checkout-7d9f",
        }
        assert agent.wait_value("pktpath_drops_total", 25, 5.0, **labels) == 25
        # Drops in the router's namespace belong to no pod.
        lab.send_udp(lab.client, "198.19.255.1", 7402, 5)
        assert (
            agent.wait_value(
                "pktpath_drops_total",
                5,
                reason="IP_INNOROUTES",
                interface=lab.if_router_client,
                protocol="udp",
                namespace="",
                pod="",
            )
            == 5
        )

        # The pod goes away: its process ends and it leaves the pod list.
        proc.kill()
        proc.wait()
        pods.write_text(json.dumps({"pods": []}))
        assert wait_until(lambda: agent.value("pktpath_drops_total", **labels) == 0, 15)  # series ended
        # Every counter of the pod's namespace goes (also the warm-up ping's NO_SOCKET reply).
        assert " drop counter(s) of 1 expired pod namespace(s)" in agent.log()
        # The 25 drops went through the per-CPU fast path (drops.bpf.h), whose slots are taken back too.
        assert re.search(r"expired pod namespace\(s\), [1-9]\d* fast-path slot\(s\) retired", agent.log()), agent.log()
        remaining = agent.scrape().get("pktpath_drops_total", {})
        left = {k: v for k, v in remaining.items() if dict(k)["interface"] == lab.if_server}
        assert not left, (left, agent.log())
    finally:
        assert agent.stop() == 0
