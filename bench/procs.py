"""Small process helpers shared by the benchmarks: bounded commands, clean stops, kernel attach lists."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class BenchError(RuntimeError):
    """Something the benchmark needs is missing or broke; the message says what."""


def run(
    cmd: Sequence[str], timeout: float = 30.0, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, never longer than `timeout` (subprocess.run kills it then)."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, input=stdin, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{' '.join(cmd)}: still running after {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return proc


def in_netns(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def stop_process(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Signal a child we started and reap it; SIGKILL if it ignores `sig` for `timeout` s."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return int(proc.returncode)


def run_worker(cmd: Sequence[str], timeout: float) -> int:
    """Run a measuring worker (python -m bench.hops / bench.attach) to its end and return its exit
    status.  Interrupted (or past `timeout`): SIGINT, so the worker deletes its namespaces, stops its
    iperf3 server and detaches its programs as on Ctrl-C; SIGKILL if it takes over 30 s."""
    proc = subprocess.Popen(list(cmd))
    try:
        return proc.wait(timeout)
    except BaseException:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


def read_worker_result(out: Path, what: str) -> dict[str, Any]:
    """The JSON a worker wrote, or a status saying it wrote none."""
    try:
        doc: dict[str, Any] = json.loads(out.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return {"status": f"error: {what} wrote no results ({exc})"}
    return doc


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def worker_main(
    prog: str,
    output: Path,
    time_limit: float,
    measure: Callable[[float], dict[str, Any]],
    errors: tuple[type[Exception], ...],
) -> int:
    """The body of a measuring worker's main(): as root, `measure(deadline)`, then its JSON written to
    `output` whatever happened (status "ok", "interrupted" -> 130, or the error -> 1).  SIGTERM (a
    timeout, the parent giving up) unwinds like Ctrl-C, so namespaces, servers and programs go away."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if os.geteuid() != 0:
        print(f"{prog}: needs root", file=sys.stderr)
        return 1
    deadline = time.monotonic() + time_limit
    status = 0
    try:
        result = measure(deadline)
        result["status"] = "ok"
    except KeyboardInterrupt:
        result, status = {"status": "interrupted"}, 130
    except errors as exc:  # the JSON says what broke; the parent reports it
        result, status = {"status": f"error: {exc}"}, 1
        print(f"{prog}: {exc}", file=sys.stderr, flush=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1) + "\n")
    return status


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def tool_version(cmd: Sequence[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return "not installed"
    try:
        proc = run(cmd, timeout=10, check=False)
    except BenchError as exc:
        return str(exc)
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else "?"


# -- who is attached to kfree_skb ---------------------------------------------


@dataclass(frozen=True)
class TracingPrograms:
    """Which processes hold BPF programs on tracepoints right now, one entry per (pid, program).

    `bpftool perf list` names the holder's pid for both kinds of attachment seen
    here: tp_btf programs (pktpath's raw_tracepoint links) and classic tracepoint
    programs (bpftrace's perf events).  `bpftool link list` would not: its pid
    iterator needs fentry, which this kernel's lockdown refuses.
    """

    entries: tuple[tuple[int, str], ...]  # (pid, tracepoint)

    def foreign(self, own_pids: tuple[int, ...] = ()) -> int:
        """Programs that are not ours: other people's agents or tracers on this machine, which
        would tax every condition's packets alike and hide the difference being measured."""
        return sum(1 for pid, _tp in self.entries if pid not in own_pids)


def bpftool_available() -> bool:
    return shutil.which("bpftool") is not None


def _perf_list() -> list[dict[str, object]] | None:
    if not bpftool_available():
        return None
    try:
        entries = json.loads(run(["bpftool", "perf", "list", "-j"], timeout=10).stdout or "[]")
    except (BenchError, json.JSONDecodeError):
        return None
    return entries if isinstance(entries, list) else None


def tracing_programs() -> TracingPrograms | None:
    """None when bpftool is missing or fails (then nothing can be said about other programs)."""
    entries = _perf_list()
    if entries is None:
        return None
    # A program shows once per process holding its fd: count distinct (pid, program) pairs.
    held = {(int(str(e["pid"])), e.get("prog_id"), str(e.get("tracepoint", "?"))) for e in entries if "pid" in e}
    return TracingPrograms(entries=tuple(sorted((pid, tp) for pid, _prog, tp in held)))


def programs_on(pid: int, tracepoint: str) -> set[int]:
    """Ids of the BPF programs process `pid` has on `tracepoint` (bpftool perf list)."""
    entries = _perf_list() or []
    return {int(str(e["prog_id"])) for e in entries if e.get("pid") == pid and e.get("tracepoint") == tracepoint}


def perf_attached(pid: int, tracepoint: str) -> bool:
    """True once process `pid` has a BPF program on `tracepoint` (bpftool perf list)."""
    entries = _perf_list() or []
    return any(e.get("pid") == pid and e.get("tracepoint") == tracepoint for e in entries)
