"""Start `pktpath run` the way a user does and watch it from outside: log lines with arrival times, /proc, HTTP."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from bench.procs import BenchError, stop_process

if TYPE_CHECKING:
    from prometheus_client.samples import Sample

FIRST_PROBE = "first probe attached"
_FIRST_PROBE_MS = re.compile(r"first probe attached ([0-9.]+) ms")
_SERVING = re.compile(r"serving metrics on http://[^\s]*?:(\d+)/metrics")
_DROP_SAMPLE = "pktpath_drops_total"
_HOP_ATTACHED = re.compile(r"hop (\S+) attached \(([^)]*)\)")


def pktpath_bin() -> str:
    """The console script next to this interpreter (the venv's under `make bench`), else PATH.

    Preferring the script beside sys.executable also skips a pyenv shim, a bash
    wrapper that would add ~100 ms to every start-up measured here.
    """
    beside = Path(sys.executable).parent / "pktpath"
    found = str(beside) if beside.exists() else shutil.which("pktpath")
    if not found:
        raise BenchError("pktpath console script not installed (make venv)")
    return found


class AgentRun:
    """One `pktpath run` process.  Its stderr is read by a thread that stamps each line
    with time.monotonic() on arrival, so start-up can be timed from the parent's side."""

    def __init__(self, binary: str | None = None, extra_yaml: str = "", no_config: bool = False) -> None:
        """`no_config`: `pktpath run` exactly as a user types it, built-in defaults and no file
        (the default metrics port must then be free); else a config file with `extra_yaml`."""
        self.binary = binary or pktpath_bin()
        self._dir = tempfile.TemporaryDirectory(prefix="pktpath-bench-")
        cfg = Path(self._dir.name) / "agent.yaml"
        # Port 0: the kernel picks a free port and the agent logs it, so there is
        # no race with other agents (other people's tests) on this machine.
        cfg.write_text("metrics:\n  listen: 127.0.0.1:0\n" + extra_yaml)
        if no_config and extra_yaml:
            raise ValueError("no_config and extra_yaml exclude each other")
        self._lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self.spawned_at = time.monotonic()
        self.proc = subprocess.Popen(
            [self.binary, "run"] + ([] if no_config else ["-c", str(cfg)]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read_stderr, name="agent-stderr", daemon=True)
        self._reader.start()
        self.port: int | None = None
        self.exit_code: int | None = None
        self.stop_seconds: float | None = None

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self._lines.append((time.monotonic(), line.rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        with self._cond:
            return "\n".join(line for _t, line in self._lines)

    def attached_hops(self) -> dict[str, str]:
        """{hop: how it attached} from the agent's log: what a measurement actually had in the kernel."""
        with self._cond:
            return {m.group(1): m.group(2) for _t, line in self._lines if (m := _HOP_ATTACHED.search(line))}

    def wait_line(self, needle: str, timeout: float) -> tuple[float, str]:
        """(arrival time, line) of the first stderr line containing `needle`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, line in self._lines:
                    if needle in line:
                        return t, line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    break
                self._cond.wait(min(left, 0.1))
        state = f"exited {self.proc.returncode}" if self.proc.poll() is not None else f"no line within {timeout} s"
        raise BenchError(f"agent: waiting for {needle!r}: {state}; log:\n{self.log()}")

    def wait_attached(self, timeout: float = 20.0) -> tuple[float, float | None]:
        """(seconds from spawn to the log line, the agent's own ms figure from that line)."""
        t, line = self.wait_line(FIRST_PROBE, timeout)
        m = _FIRST_PROBE_MS.search(line)
        return t - self.spawned_at, (float(m.group(1)) if m else None)

    def wait_serving(self, timeout: float = 20.0) -> float:
        """Seconds from spawn to 'serving metrics' (the HTTP server is listening by then)."""
        t, line = self.wait_line("serving metrics on", timeout)
        m = _SERVING.search(line)
        if not m:
            raise BenchError(f"agent: cannot read the port from {line!r}")
        self.port = int(m.group(1))
        return t - self.spawned_at

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        if self.port is None:
            raise BenchError("agent: port unknown (call wait_serving first)")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def ready(self) -> bool:
        return self.get("/readyz")[0] == 200

    def start_ready(self, timeout: float = 20.0) -> None:
        self.wait_attached(timeout)
        self.wait_serving(timeout)
        if not self.ready():
            raise BenchError(f"agent: /readyz not 200 after start; log:\n{self.log()}")

    def status_kb(self) -> dict[str, int]:
        """VmRSS, VmHWM (peak RSS) and friends from /proc/PID/status, in kB."""
        out: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "VmSize", "Threads"):
                out[key] = int(rest.split()[0])
        return out

    def samples(self) -> list[Sample]:
        """Every sample of the agent's /metrics, parsed."""
        from prometheus_client.parser import text_string_to_metric_families

        status, body = self.get("/metrics")
        if status != 200:
            raise BenchError(f"agent: /metrics answered {status}")
        return [s for family in text_string_to_metric_families(body.decode()) for s in family.samples]

    def value(self, name: str) -> float | None:
        """The value of an unlabelled sample of /metrics, or None if the agent serves none."""
        return next((s.value for s in self.samples() if s.name == name and not s.labels), None)

    def drops(self, interfaces: set[str]) -> dict[str, float]:
        """pktpath_drops_total by reason, summed over the given interfaces only, so drops
        elsewhere on the machine (other people's tests) never leak into a sanity check."""
        out: dict[str, float] = {}
        for s in self.samples():
            if s.name == _DROP_SAMPLE and s.labels.get("interface") in interfaces:
                out[s.labels["reason"]] = out.get(s.labels["reason"], 0.0) + s.value
        return out

    def stop(self, timeout: float = 10.0) -> int:
        if self.exit_code is None:
            t0 = time.monotonic()
            self.exit_code = stop_process(self.proc, timeout=timeout)
            self.stop_seconds = time.monotonic() - t0
            self._reader.join(2)
            self._dir.cleanup()
        return self.exit_code

    def __enter__(self) -> AgentRun:
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self.stop()
