"""Running the real agent the way a deployment runs it, and a real Prometheus server next to it.

- `container_launch()` turns the chart's rendered DaemonSet container into a local process: the
  same command, environment (downward-API fields filled in, $(VAR) expanded as the kubelet
  does) and privileges (uid 0, capability bounding set = the container's `add` list,
  no_new_privs for allowPrivilegeEscalation: false), through util-linux's setpriv.
- `unit_launch()` does the same for the systemd unit: its non-root user with ambient
  capabilities.
- `Prometheus` starts Debian's prometheus binary itself on loopback with a temporary config
  and TSDB (the package's own service is neither needed nor touched), and stops it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.agent_process import AgentProcess, free_port, pktpath_bin
from tests.deploy.conftest import require_tool
from tests.kernel.lab import Lab


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def _setpriv_caps(caps: list[str]) -> str:
    return ",".join(["-all", *(f"+{c.lower().removeprefix('cap_')}" for c in caps)])


def expand_kubernetes_refs(value: str, defined: Mapping[str, str]) -> str:
    """$(VAR) -> value of a variable defined earlier; $$ -> $; unknown references stay as they are."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return defined.get(name, m.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, value)


def container_launch(container: dict[str, Any], config_path: Path, fields: Mapping[str, str]) -> Launch:
    """The DaemonSet container as a local command (fields: fieldPath -> value)."""
    env: dict[str, str] = {}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = expand_kubernetes_refs(str(e["value"]), env)
        elif "fieldRef" in e.get("valueFrom", {}):
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            raise AssertionError(f"cannot reproduce env {e} outside Kubernetes")
    sc = container["securityContext"]
    assert sc["runAsUser"] == 0 and sc["capabilities"]["drop"] == ["ALL"]
    command = [
        pktpath_bin() if a == "pktpath" else str(config_path) if a == "/etc/pktpath/config.yaml" else a
        for a in container["command"]
    ]
    setpriv = [
        require_tool("setpriv", "util-linux"),
        "--inh-caps=-all",
        f"--bounding-set={_setpriv_caps(sc['capabilities']['add'])}",
    ]
    if sc["allowPrivilegeEscalation"] is False:
        setpriv.append("--no-new-privs")
    return Launch([*setpriv, "--", *command], env)


def unit_settings(unit_text: str) -> dict[str, str]:
    """Key=value lines of a unit file (last one wins; no continuation lines are used here)."""
    out: dict[str, str] = {}
    for line in unit_text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def unit_launch(unit_text: str, config_path: Path, uid: int = 65534) -> Launch:
    """The unit's ExecStart as its (dynamic, so any unprivileged) user with its ambient capabilities."""
    s = unit_settings(unit_text)
    assert s["DynamicUser"] == "yes"
    ambient = s["AmbientCapabilities"].split()
    argv = s["ExecStart"].split()
    argv = [
        pktpath_bin() if a.endswith("/bin/pktpath") else str(config_path) if a == "/etc/pktpath/config.yaml" else a
        for a in argv
    ]
    setpriv = [
        require_tool("setpriv", "util-linux"),
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        f"--inh-caps={_setpriv_caps(ambient)}",
        f"--ambient-caps={_setpriv_caps(ambient)}",
        f"--bounding-set={_setpriv_caps(s['CapabilityBoundingSet'].split())}",
    ]
    if s.get("NoNewPrivileges") == "yes":
        setpriv.append("--no-new-privs")
    return Launch([*setpriv, "--", *argv])


def uid_can_run_pktpath(uid: int) -> bool:
    """Whether `uid` can start the installed pktpath at all (read its script, import its package)."""
    probe = subprocess.run(
        [
            require_tool("setpriv", "util-linux"),
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--",
            pktpath_bin(),
            "--version",
        ],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


class LiveAgent(AgentProcess):
    """`pktpath run` started through a Launch (setpriv, capabilities, env), serving on 127.0.0.1:port."""

    def __init__(self, launch: Launch, port: int, log_path: Path) -> None:
        super().__init__(
            log_path.with_suffix(".yaml"), port, argv=launch.argv, env={**os.environ, **launch.env}, log_path=log_path
        )
        self.wait_ready()

    def metrics(self) -> str:
        return self.scrape_text()

    def sample(self, name: str, **labels: str) -> float:
        """One sample's value from /metrics, matching a subset of its labels (0 when absent)."""
        for labelset, value in self.scrape().get(name, {}).items():
            if all(dict(labelset).get(k) == v for k, v in labels.items()):
                return value
        return 0.0

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)


class PrometheusError(Exception):
    pass


class Prometheus:
    """A throw-away Prometheus server on 127.0.0.1, scraping every second."""

    def __init__(self, workdir: Path, scrape_config: dict[str, Any], rule_files: list[Path]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [scrape_config],
        }
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                require_tool("prometheus", "prometheus"),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                # Exemplars (trace ids on drop counters) are only kept with this feature on.
                "--enable-feature=exemplar-storage",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus not ready after {timeout}s: {self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a success, PrometheusError with its message otherwise."""
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:  # 400/422 carry the error as JSON
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def values(self, expr: str) -> dict[frozenset[tuple[str, str]], float]:
        return {frozenset(r["metric"].items()): float(r["value"][1]) for r in self.query(expr)}

    def wait_for(self, what: str, pred: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)


@dataclass
class FakePod:
    uid: str
    namespace: str
    name: str
    pods_file: Path  # the agent's kubernetes.pods_file, listing this pod


@contextlib.contextmanager
def kubelet_pod(
    lab: Lab, ns: str, workdir: Path, namespace: str = "shop", name: str = "checkout-7d9f"
) -> Iterator[FakePod]:
    """A process living in lab namespace `ns`, in the cgroup kubelet gives a pod's container
    (systemd driver naming), listed in a pods file: a pod as the agent's pod lookup sees one.
    It runs as root with every capability, like many real containers' processes: more than the
    agent holds, so the kernel's ptrace-mode check guards its /proc/<pid>/ns/net."""
    uid = str(uuid.uuid4())
    # cgroup v1 (a named hierarchy is enough: /proc/<pid>/cgroup lists them all) or v2.
    root = Path("/sys/fs/cgroup/pids") if Path("/sys/fs/cgroup/pids").is_dir() else Path("/sys/fs/cgroup")
    pod_slice = root / "kubepods.slice" / f"kubepods-besteffort-pod{uid.replace('-', '_')}.slice"
    scope = pod_slice / "cri-containerd-0123456789ab.scope"
    scope.mkdir(parents=True)
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "300"])  # exec()s sleep: same pid
    try:
        (scope / "cgroup.procs").write_text(str(proc.pid))
        pods_file = workdir / "pods.json"
        pods_file.write_text(json.dumps({"pods": [{"uid": uid, "namespace": namespace, "name": name}]}))
        yield FakePod(uid, namespace, name, pods_file)
    finally:
        proc.kill()
        proc.wait()
        scope.rmdir()
        pod_slice.rmdir()
        with contextlib.suppress(OSError):  # kubepods.slice may be shared with another test's pod
            pod_slice.parent.rmdir()
