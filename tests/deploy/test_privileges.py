"""The privileges the deployments grant are enough, and the optional one is truly needed.

Each test runs the real agent with exactly the privileges of a deployment artifact (see
tests/deploy/live.py) and counts known drops in a kernel lab.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.agent_process import free_port, wait_until
from tests.deploy.conftest import DEPLOY
from tests.deploy.helm import template
from tests.deploy.live import FakePod, LiveAgent, container_launch, kubelet_pod, uid_can_run_pktpath, unit_launch
from tests.kernel.lab import Lab

pytestmark = pytest.mark.kernel

N = 40
FIELDS = {
    "spec.nodeName": "lab-node",
    "status.hostIP": "127.0.0.1",
    "metadata.name": "pktpath-lab",
    "metadata.namespace": "monitoring",
    "status.podIP": "127.0.0.1",
}


def drop_in_server(lab: Lab, port: int, count: int = N) -> None:
    lab.exec(lab.server, "iptables", "-A", "INPUT", "-p", "udp", "--dport", str(port), "-j", "DROP")
    lab.send_udp(lab.client, lab.server_ip, port, count)


def chart_agent(tmp: Path, pod: FakePod, without: str = "") -> LiveAgent:
    """The chart's container with pod labels on, optionally minus one added capability."""
    port = free_port()
    rendered = template(
        {
            "config": {
                "metrics": {"listen": f"127.0.0.1:{port}"},
                "kubernetes": {"pod_labels": True, "pods_file": str(pod.pods_file), "refresh_seconds": 1},
            }
        }
    )
    container: dict[str, Any] = rendered.one("DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    add = container["securityContext"]["capabilities"]["add"]
    assert "SYS_PTRACE" in add
    if without:
        add.remove(without)
    config = tmp / "config.yaml"
    config.write_text(rendered.of_kind("ConfigMap")[0]["data"]["config.yaml"])
    return LiveAgent(container_launch(container, config, FIELDS), port, tmp / "agent.log")


def pod_of_drops(agent: LiveAgent, lab: Lab) -> tuple[str, str]:
    labels = {"reason": "NETFILTER_DROP", "interface": lab.if_server, "protocol": "udp"}
    assert wait_until(lambda: agent.sample("pktpath_drops_total", **labels) == N), agent.metrics()
    from prometheus_client.parser import text_string_to_metric_families

    found = [
        s.labels
        for f in text_string_to_metric_families(agent.metrics())
        for s in f.samples
        if s.name == "pktpath_drops_total" and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, found
    return found[0].get("namespace", ""), found[0].get("pod", "")


def test_chart_capabilities_attribute_drops_to_pods(tmp_path: Path, lab: Lab) -> None:
    with kubelet_pod(lab, lab.server, tmp_path) as pod:
        agent = chart_agent(tmp_path, pod)
        try:
            drop_in_server(lab, 7201)
            assert pod_of_drops(agent, lab) == (pod.namespace, pod.name)
        finally:
            assert agent.stop() == 0, agent.log()


def test_pod_labels_need_sys_ptrace(tmp_path: Path, lab: Lab) -> None:
    """Why the chart adds SYS_PTRACE with pod labels: without it the kernel hides the pod's
    /proc/<pid>/ns/net from the agent, and the drop stays unattributed (silently)."""
    with kubelet_pod(lab, lab.server, tmp_path) as pod:
        agent = chart_agent(tmp_path, pod, without="SYS_PTRACE")
        try:
            drop_in_server(lab, 7202)
            time.sleep(1.5)  # more than refresh_seconds: the lookup has had its chance
            assert pod_of_drops(agent, lab) == ("", "")
        finally:
            assert agent.stop() == 0, agent.log()


def test_systemd_unit_privileges_suffice(tmp_path: Path, lab: Lab) -> None:
    """The unit's model: an unprivileged user with only its ambient capabilities, no_new_privs.
    Drops are counted exactly, SIGHUP (ExecReload) re-reads the config, SIGTERM exits 0."""
    port = free_port()
    # pytest's tmp_path lies under a 0700 directory of root's: the config goes where the
    # unprivileged user can read it, as /etc/pktpath is.
    etc = Path(tempfile.mkdtemp(prefix="pktpath-etc-"))
    etc.chmod(0o755)
    config = etc / "config.yaml"
    config.write_text((DEPLOY / "config.yaml").read_text() + f'metrics:\n  listen: "127.0.0.1:{port}"\n')
    config.chmod(0o644)
    unit = (DEPLOY / "systemd" / "pktpath.service").read_text()
    # DynamicUser gives the service some unprivileged uid; 65534 stands in for it, unless this
    # checkout (and its venv) sit below a directory only root may enter, as a CI clone may.
    # Then the same capability set runs as uid 0: still no capability beyond the unit's.
    uid = 65534 if uid_can_run_pktpath(65534) else 0
    agent = LiveAgent(unit_launch(unit, config, uid=uid), port, tmp_path / "agent.log")
    try:
        status = Path(f"/proc/{agent.proc.pid}/status").read_text()
        assert f"\nUid:\t{uid}\t" in status and "\nNoNewPrivs:\t1" in status
        drop_in_server(lab, 7203)
        labels = {"reason": "NETFILTER_DROP", "interface": lab.if_server, "protocol": "udp"}
        assert wait_until(lambda: agent.sample("pktpath_drops_total", **labels) == N), agent.metrics()
        config.write_text(config.read_text() + "sampling:\n  one_in: 500\n")
        agent.signal(signal.SIGHUP)
        assert wait_until(lambda: "reloaded" in agent.log(), 5), agent.log()
    finally:
        exit_status = agent.stop()
        shutil.rmtree(etc)
        assert exit_status == 0, agent.log()
