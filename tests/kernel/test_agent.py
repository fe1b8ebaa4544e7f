"""The agent as a process: start, health, exposition formats, shutdown, check, privileges, full maps."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess, loaded_program_ids, pktpath_bin, program_ids_of, wait_until
from tests.kernel.lab import Lab


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_detaches_everything(tmp_path: Path, sig: signal.Signals) -> None:
    agent = AgentProcess.start(tmp_path)
    ours = program_ids_of(agent.proc.pid)
    assert ours and ours <= loaded_program_ids()
    assert agent.stop(sig) == 0
    log = agent.log()
    assert "hop kfree_skb attached (tracepoint: tp_btf/kfree_skb)" in log
    assert "all probes detached" in log
    # Program memory is freed by an RCU callback after the last reference goes.
    assert wait_until(lambda: not ours & loaded_program_ids()), ours & loaded_program_ids()


def test_health_and_exposition_formats(agent: AgentProcess) -> None:
    with urllib.request.urlopen(agent.url("/healthz")) as r:
        assert r.status == 200
    with urllib.request.urlopen(agent.url("/readyz")) as r:
        assert r.read() == b"ready\n"
    req = urllib.request.Request(agent.url("/metrics"), headers={"Accept": "application/openmetrics-text"})
    with urllib.request.urlopen(req) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        body = r.read().decode()
    assert body.endswith("# EOF\n")
    assert 'pktpath_probe_attached{attach_type="tracepoint",probe="kfree_skb"} 1.0' in body
    # Drop capture is in place behind the drop program's tail call (or the scrape says it is not).
    assert 'pktpath_probe_attached{attach_type="tail_call",probe="drop_capture"} 1.0' in body
    samples = agent.scrape()
    ((labels, value),) = samples["pktpath_build_info"].items()
    assert dict(labels)["engine"].startswith("libbpf-core/")
    assert value == 1


def test_check_reports_modes_and_hops() -> None:
    before = loaded_program_ids()
    proc = subprocess.run([pktpath_bin(), "check", "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["btf"] is True and report["bpf_privileges"] is True
    assert report["attach_types"]["tracepoint"] == "yes"
    assert set(report["attach_types"]) == {"fentry", "kprobe", "tracepoint"}
    assert report["hops"]["kfree_skb"]["attached"] == "tracepoint"
    assert report["continuations"] == {"drop_capture": {"installed": True, "problem": ""}}
    # check loads, attaches, reports and detaches: nothing new stays loaded
    # (other agents may come and go meanwhile, so only programs that are new count).
    assert wait_until(lambda: not {i for i in loaded_program_ids() - before if _is_ours(i)})
    text = subprocess.run([pktpath_bin(), "check"], capture_output=True, text=True, timeout=60).stdout
    assert "kfree_skb" in text and "tracepoint" in text
    assert "drop_capture: in place (tail call from the drop program)" in text


def test_missing_privilege_is_one_line(tmp_path: Path) -> None:
    # Root with an empty capability bounding set: the same uid, no CAP_BPF/CAP_SYS_ADMIN.
    proc = subprocess.run(
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all", pktpath_bin(), "run"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("pktpath: permission denied: loading BPF programs needs root")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_full_map_loses_no_drop_silently(tmp_path: Path) -> None:
    """With room for 16 series, drops beyond it are counted in pktpath_map_full_total."""
    agent = AgentProcess.start(tmp_path, "drops:\n  max_series: 16\n")
    try:
        with Lab.create() as lab:
            full_before = agent.value("pktpath_map_full_total", map="drop_counts")
            # One packet each of 40 IP protocols the server has no handler for:
            # 40 distinct series (IP_NOPROTO, ip-140 .. ip-179), far more than fit.
            sender = (
                "import socket\nfor p in range(140, 180):\n"
                " s = socket.socket(socket.AF_INET, socket.SOCK_RAW, p)\n"
                f" s.sendto(b'x' * 20, ('{lab.server_ip}', 0))\n"
            )
            lab.exec(lab.client, sys.executable, "-c", sender)

            def ours() -> dict[str, float]:
                return {
                    dict(k)["protocol"]: v
                    for k, v in agent.scrape().get("pktpath_drops_total", {}).items()
                    if dict(k)["interface"] == lab.if_server and dict(k)["reason"] == "IP_NOPROTO"
                }

            def accounted() -> float:
                return sum(ours().values()) + agent.value("pktpath_map_full_total", map="drop_counts") - full_before

            assert wait_until(lambda: accounted() >= 40)
            series = ours()
            assert all(v == 1 for v in series.values()), series
            assert len(series) < 40  # the map really filled up
            # Every one of the 40 drops is either in its own series or in the
            # overflow counter (which may also hold unrelated drops of the host).
            assert accounted() >= 40
            assert len(agent.scrape()["pktpath_drops_total"]) <= 16
    finally:
        assert agent.stop() == 0


def _is_ours(prog_id: int) -> bool:
    out = subprocess.run(["bpftool", "prog", "show", "id", str(prog_id)], capture_output=True, text=True).stdout
    return "__tp_btf" in out or "__probe" in out or "__fentry" in out or "__kprobe" in out
