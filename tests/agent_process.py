"""Start `pktpath run` the way a user does (the installed console script) and scrape it over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families


def pktpath_bin() -> str:
    """The console script installed next to this interpreter (the venv's), else PATH."""
    beside = Path(sys.executable).parent / "pktpath"
    found = str(beside) if beside.exists() else shutil.which("pktpath")
    if not found:
        raise RuntimeError("pktpath console script not installed (make venv)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Labels = frozenset[tuple[str, str]]


class AgentProcess:
    def __init__(
        self,
        config_path: Path,
        port: int,
        argv: list[str] | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        """`pktpath run -c config_path`, or `argv` (the same agent under setpriv, say)."""
        self.port = port
        self.log_path = log_path or config_path.with_suffix(".log")
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv or [pktpath_bin(), "run", "-c", str(config_path)], stdout=self._log, stderr=subprocess.STDOUT, env=env
        )

    @classmethod
    def start(cls, tmp: Path, extra_yaml: str = "", ready_timeout: float | None = None) -> AgentProcess:
        port = free_port()
        cfg = tmp / f"agent-{port}.yaml"
        # The stock-kernel matrix (tests/vm) runs the kernel tests once per attach mode.
        mode = os.environ.get("PKTPATH_TEST_PROBE_MODE", "auto")
        probes = f"probes:\n  mode: {mode}\n" if mode != "auto" and "probes:" not in extra_yaml else ""
        cfg.write_text(f"metrics:\n  listen: 127.0.0.1:{port}\n{probes}{extra_yaml}")
        agent = cls(cfg, port)
        agent.wait_ready(ready_timeout)
        return agent

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout: float | None = None) -> None:
        if timeout is None:
            # A stock-kernel guest runs under software emulation (tests/vm): the same
            # start-up is ~50x slower there, and slower still on a busy host.
            timeout = 90.0 if os.environ.get("PKTPATH_VM_GUEST") else 20.0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited {self.proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(self.url("/readyz"), timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                # Refused before the agent binds; accepted but unanswered while it loads its BPF
                # (the listener is bound first: exporter/metrics/listener.py), which takes seconds
                # in an emulated guest: the read times out.  Either way, not ready yet.
                pass
            time.sleep(0.05)
        raise RuntimeError(f"agent not ready after {timeout}s: {self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def scrape_text(self, openmetrics: bool = False) -> str:
        req = urllib.request.Request(self.url("/metrics"))
        if openmetrics:
            req.add_header("Accept", "application/openmetrics-text; version=1.0.0")
        with urllib.request.urlopen(req, timeout=5) as r:
            return str(r.read().decode())

    def scrape(self) -> dict[str, dict[Labels, float]]:
        """{sample name: {labels: value}} from one Prometheus text scrape."""
        out: dict[str, dict[Labels, float]] = {}
        for family in text_string_to_metric_families(self.scrape_text()):
            for s in family.samples:
                out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
        return out

    def value(self, name: str, **labels: str) -> float:
        return self.scrape().get(name, {}).get(frozenset(labels.items()), 0.0)

    def wait_value(self, name: str, expected: float, timeout: float = 5.0, **labels: str) -> float:
        """Poll until the sample equals `expected` (counting is asynchronous to the
        sender by a softirq at most), then return the value seen for the caller's
        exact assertion; on timeout return the last value."""
        deadline = time.monotonic() + timeout
        value = self.value(name, **labels)
        while value != expected and time.monotonic() < deadline:
            time.sleep(0.05)
            value = self.value(name, **labels)
        return value

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)


def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def program_ids_of(pid: int) -> set[int]:
    """IDs of the BPF programs a process holds (program and link fds name them in fdinfo)."""
    ids: set[int] = set()
    fd_dir = Path(f"/proc/{pid}/fdinfo")
    for info in fd_dir.iterdir():
        try:
            for line in info.read_text().splitlines():
                if line.startswith("prog_id:"):
                    ids.add(int(line.split()[1]))
        except OSError:
            continue  # the fd closed while we looked
    return ids


def loaded_program_ids() -> set[int]:
    """IDs of every BPF program in the kernel right now."""
    out = subprocess.run(["bpftool", "prog", "list", "--json"], capture_output=True, text=True, check=True).stdout
    return {int(p["id"]) for p in json.loads(out)}


def is_root() -> bool:
    return os.geteuid() == 0
