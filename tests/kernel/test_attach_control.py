"""Engine.detach_hops() / attach_hops(): hops come and go on demand from programs loaded once
(what sampling windows are built on, issue 12).  A detached hop's program stays loaded but sees no
packet, the kernel shows no program of ours on its tracepoint, its status says so; attached again
it counts every packet."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from bench.procs import programs_on, tracing_programs
from exporter.config import load_config
from exporter.decoders.counters import DropCounterReader
from exporter.loader.engine import Engine, EngineOptions
from exporter.model.hops import PATH_ONLY_PROGRAMS
from tests.kernel.lab import Lab

N = 25
CLOSED_PORT = 7911  # nothing listens: each datagram is a NO_SOCKET drop at the server
UDP = 17


@pytest.fixture
def engine() -> Iterator[Engine]:
    """The agent's engine as `pktpath run` builds it with packet paths on."""
    with Engine(EngineOptions.for_config(load_config(None, {}), paths=True)) as eng:
        eng.start()
        yield eng


def udp_drops(engine: Engine, ifname: str) -> int:
    counts = DropCounterReader(engine.map("drop_counts"), engine.map("drop_slots")).read()
    return sum(c.packets for c in counts if c.ifname == ifname and c.l4_proto == UDP)


def ours_on(tracepoint: str) -> bool:
    seen = tracing_programs()
    assert seen is not None, "bpftool is needed to see which programs the kernel has attached"
    return any(pid == os.getpid() and tp == tracepoint for pid, tp in seen.entries)


def test_detached_hop_counts_nothing_and_counts_again_once_attached(engine: Engine, lab: Lab) -> None:
    assert engine.report is not None
    assert engine.report.hops["kfree_skb"].attached == "tracepoint"
    lab.send_udp(lab.client, lab.server_ip, CLOSED_PORT, N)
    assert udp_drops(engine, lab.if_server) == N

    [timing] = engine.detach_hops(["kfree_skb"])
    assert (timing.hop, timing.family, timing.links, timing.error) == ("kfree_skb", "tracepoint", 1, "")
    assert timing.wall_s > 0 and timing.cpu_s >= 0
    assert engine.report.hops["kfree_skb"].attached is None  # what pktpath_probe_attached reports
    assert not ours_on("kfree_skb")
    lab.send_udp(lab.client, lab.server_ip, CLOSED_PORT, N)
    assert udp_drops(engine, lab.if_server) == N  # the program stayed loaded and saw none of them

    [timing] = engine.attach_hops(["kfree_skb"])
    assert (timing.hop, timing.family, timing.links, timing.error) == ("kfree_skb", "tracepoint", 1, "")
    assert engine.report.hops["kfree_skb"].attached == "tracepoint"
    assert ours_on("kfree_skb")
    lab.send_udp(lab.client, lab.server_ip, CLOSED_PORT, N)
    assert udp_drops(engine, lab.if_server) == 2 * N


def test_path_hops_detach_together_in_threads_and_attach_again(engine: Engine) -> None:
    assert engine.report is not None
    path = [h for h in PATH_ONLY_PROGRAMS if engine.report.hops.get(h) and engine.report.hops[h].attached]
    assert len(path) >= 4, engine.report.hops  # the tracepoint hops attach on every kernel we support
    families = {h: engine.report.hops[h].attached for h in path}

    timings = engine.detach_hops(path, parallel=True)
    assert [t.hop for t in timings] == path
    assert all(engine.report.hops[h].attached is None for h in path)
    assert engine.report.hops["kfree_skb"].attached == "tracepoint"  # not asked: stays
    for hop in path:
        if families[hop] == "tracepoint":
            assert not ours_on(hop), hop
    assert engine.detach_hops(path) == []  # already detached: nothing to do
    assert engine.attach_late() == []  # a hop detached on purpose is not a hop that failed to attach
    assert all(engine.report.hops[h].attached is None for h in path)

    timings = engine.attach_hops([*path, "kfree_skb"])  # kfree_skb was never detached: left alone
    assert [t.hop for t in timings] == path
    assert all(not t.error for t in timings)
    assert {h: engine.report.hops[h].attached for h in path} == families
    for hop in path:
        if families[hop] == "tracepoint":
            assert ours_on(hop), hop


def test_drop_capture_is_the_drop_programs_continuation(engine: Engine, lab: Lab) -> None:
    """The drop program only counts and tail-calls drop_capture (pktpath.bpf.c), which the second
    load puts in drop_next's slot: the kernel holds that very program there, and drops are still
    counted one for one."""
    raw = engine.map("drop_next").lookup((0).to_bytes(4, "little"))
    assert raw is not None, "drop_next's slot is empty: drop capture was not installed"
    prog_id = int.from_bytes(raw[:4], "little")  # a program array answers userspace with the program's id
    shown = json.loads(
        subprocess.run(
            ["bpftool", "-j", "prog", "show", "id", str(prog_id)], capture_output=True, text=True, check=True
        ).stdout
    )
    assert shown["name"] == "drop_capture"
    assert engine.report is not None and engine.report.continuations["drop_capture"].installed
    assert shown["type"] == "tracing"
    # One program of ours on kfree_skb, the counting one: drop_capture is reached by the tail call only.
    on_kfree_skb = programs_on(os.getpid(), "kfree_skb")
    assert len(on_kfree_skb) == 1 and prog_id not in on_kfree_skb, on_kfree_skb
    lab.send_udp(lab.client, lab.server_ip, CLOSED_PORT, N)
    assert udp_drops(engine, lab.if_server) == N
