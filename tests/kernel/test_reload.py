"""SIGHUP reloads that fail leave the running filter exactly as it was, shown with real traffic.

The agent follows packets through the real kernel and exports them to a real OTLP receiver; after
each failed reload, a packet that matches only the old filter must still become a trace and a
packet that matches only the new one must not.  One failure is forced in the kernel itself: the
filter trie is filled (with keys of a generation the programs never read) until it has room for one
more entry, so the new filter's second CIDR is refused by the kernel (ENOSPC) after its first was
written.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.model import abi
from tests.agent_process import AgentProcess, wait_until
from tests.kernel.lab import Lab
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

# Ports of this module: 7400-7449 are the old filter's, 7450-7499 the new one's.
OLD_PORTS, NEW_PORTS = "7400-7449", "7450-7499"
JUNK_GENERATION = 0x7F  # no program ever reads it: paths.bpf.h looks up the generation in force only


def config(receiver: OtlpReceiver, dst: list[str], ports: str) -> str:
    return f"""
traces:
  exporter: otlp
  protocol: grpc
  endpoint: {receiver.grpc_endpoint}
  schedule_delay_ms: 100
sampling:
  continuous: true
  one_in: 1
  drop_one_in: 0
  max_paths_per_second: 0
filter:
  dst: [{", ".join(dst)}]
  protocols: [udp]
  ports: ["{ports}"]
"""


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


def roots_to(receiver: OtlpReceiver, port: int) -> list[ReceivedSpan]:
    return [s for s in receiver.spans if not s.parent_span_id and s.attributes.get("destination.port") == port]


def assert_filter(receiver: OtlpReceiver, lab: Lab, followed: int, not_followed: int) -> None:
    """One packet to each port: the first becomes a trace, the second does not.  The followed one
    is sent last, so once its trace is in, the other's would be too (same agent, same batch path)."""
    lab.send_udp(lab.client, lab.server_ip, not_followed, 1)
    lab.send_udp(lab.client, lab.server_ip, followed, 1)
    assert wait_until(lambda: len(roots_to(receiver, followed)) == 1, 10), f"no trace to port {followed}"
    time.sleep(0.3)  # a straggling batch
    assert roots_to(receiver, not_followed) == [], f"port {not_followed} was followed"


def reload(agent: AgentProcess, cfg: Path, text: str, expect: str) -> str:
    """Write `text`, SIGHUP, wait for the agent's one line about it; that line."""
    before = agent.log().count("\n")
    cfg.write_text(text)
    agent.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: expect in "\n".join(agent.log().splitlines()[before:]), 10), agent.log()
    new_lines = agent.log().splitlines()[before:]
    assert agent.proc.poll() is None, agent.log()
    assert "Traceback" not in agent.log()
    return next(line for line in new_lines if expect in line)


def start(tmp_path: Path, receiver: OtlpReceiver, lab: Lab) -> tuple[AgentProcess, Path]:
    agent = AgentProcess.start(tmp_path, config(receiver, [f"{lab.server_ip}/32"], OLD_PORTS))
    return agent, next(tmp_path.glob("agent-*.yaml"))


def test_reloads_refused_by_validation_keep_the_running_filter(
    tmp_path: Path, receiver: OtlpReceiver, lab: Lab
) -> None:
    """Files that pass no check at all (nesting, size), and one whose filter does not fit the kernel:
    the last one, before capacities were checked up front, deleted the old trie keys and then failed
    half-way through writing the new ones."""
    agent, cfg = start(tmp_path, receiver, lab)
    head = cfg.read_text().split("traces:", 1)[0]  # the metrics: section AgentProcess wrote
    try:
        assert_filter(receiver, lab, followed=7400, not_followed=7450)

        line = reload(agent, cfg, head + "filter:\n  src: " + "[" * 1024 + "\n", "reload failed")
        assert "nested deeper than 16 levels" in line
        assert_filter(receiver, lab, followed=7401, not_followed=7451)

        line = reload(agent, cfg, head + "#" * (2 << 20) + "\n", "reload failed")
        assert "larger than 1048576 bytes" in line
        assert_filter(receiver, lab, followed=7402, not_followed=7452)

        # Without the server's address: the old code deleted it (not wanted any more) before it failed.
        too_many = [f"198.19.{i >> 8}.{i & 255}/32" for i in range(abi.MAX_FILTER_CIDRS + 1)]
        line = reload(agent, cfg, head + config(receiver, too_many, NEW_PORTS), "reload failed")
        assert_filter(receiver, lab, followed=7403, not_followed=7453)
        assert "filter.dst: 1025 entries, more than the 1024 the kernel's filter_dst map holds" in line

        assert agent.log().count("reload failed") == 3
    finally:
        assert agent.stop() == 0, agent.log()


# --- the kernel refuses a write half-way ---------------------------------------------------------


def map_ids_of(pid: int) -> set[int]:
    ids: set[int] = set()
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            ids |= {int(ln.split()[1]) for ln in info.read_text().splitlines() if ln.startswith("map_id:")}
        except OSError:
            continue
    return ids


def agent_map_id(agent: AgentProcess, name: str) -> int:
    maps = json.loads(
        subprocess.run(["bpftool", "map", "show", "-j"], capture_output=True, text=True, check=True).stdout
    )
    ours = map_ids_of(agent.proc.pid)
    (found,) = [m["id"] for m in maps if m["id"] in ours and m.get("name") == name]
    return int(found)


def dump_keys(map_id: int) -> list[bytes]:
    out = subprocess.run(
        ["bpftool", "map", "dump", "id", str(map_id), "-j"], capture_output=True, text=True, check=True
    ).stdout
    return [bytes(int(b, 16) for b in e["key"]) for e in json.loads(out)]


def junk_key(i: int) -> bytes:
    key = abi.LpmKey(prefixlen=8 + 128, generation=JUNK_GENERATION)
    key.addr[12:16] = list(i.to_bytes(4, "big"))
    return bytes(key)


def bpftool_batch(tmp_path: Path, lines: list[str]) -> None:
    """Many map updates in one bpftool process (one per update would take seconds)."""
    batch = tmp_path / "batch.txt"
    batch.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(["bpftool", "batch", "file", str(batch)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-500:]


def hexbytes(raw: bytes) -> str:
    return " ".join(f"{b:02x}" for b in raw)


def test_reload_the_kernel_refuses_half_way_keeps_the_running_filter(
    tmp_path: Path, receiver: OtlpReceiver, lab: Lab
) -> None:
    agent, cfg = start(tmp_path, receiver, lab)
    head = cfg.read_text().split("traces:", 1)[0]
    try:
        assert_filter(receiver, lab, followed=7410, not_followed=7460)
        dst = agent_map_id(agent, "filter_dst")
        capacity = abi.FILTER_GENERATIONS * abi.MAX_FILTER_CIDRS
        in_force = dump_keys(dst)
        assert len(in_force) == 1  # the old filter's one CIDR
        # Leave room for exactly one more key.
        free = capacity - len(in_force) - 1
        bpftool_batch(
            tmp_path, [f"map update id {dst} key hex {hexbytes(junk_key(i))} value hex 01" for i in range(free)]
        )
        assert len(dump_keys(dst)) == capacity - 1

        # Passes every check before the kernel: two CIDRs, well under 1024.  The first is written
        # into the trie's last free slot, the second is refused.
        new = [f"198.19.250.{lab.subnet_server}/32", f"{lab.server_ip}/32"]
        line = reload(agent, cfg, head + config(receiver, new, NEW_PORTS), "reload failed")
        assert "filter.dst: " in line and "No space left on device" in line, line
        assert "keeping the running config" in line
        # What the failed reload wrote is gone again: the old key and the junk, nothing else.
        after = dump_keys(dst)
        assert sorted(after) == sorted(in_force + [junk_key(i) for i in range(free)])
        assert_filter(receiver, lab, followed=7411, not_followed=7461)

        # Room again: the same file now applies, all at once.
        bpftool_batch(tmp_path, [f"map delete id {dst} key hex {hexbytes(junk_key(i))}" for i in range(free)])
        reload(agent, cfg, head + config(receiver, new, NEW_PORTS), "filter and sampling applied")
        assert_filter(receiver, lab, followed=7462, not_followed=7412)
        # The old generation's key was cleared after the switch; the new generation's two remain.
        keys = [abi.LpmKey.from_buffer_copy(k) for k in dump_keys(dst)]
        assert len(keys) == 2 and len({k.generation for k in keys}) == 1
        assert keys[0].generation != abi.LpmKey.from_buffer_copy(in_force[0]).generation
    finally:
        assert agent.stop() == 0, agent.log()


# --- each generation's keys are the ones in force -----------------------------------------------------


def first_hop(receiver: OtlpReceiver, port: int) -> str:
    assert wait_until(lambda: len(roots_to(receiver, port)) == 1, 10), f"no trace to port {port}"
    (root,) = roots_to(receiver, port)
    time.sleep(0.3)  # the children come in the same batch; let a straggler land
    children = sorted(
        (s for s in receiver.spans if s.trace_id == root.trace_id and s.parent_span_id), key=lambda s: s.start_ns
    )
    return str(children[0].name)


def test_reloads_switch_source_and_interface_filters(tmp_path: Path, receiver: OtlpReceiver, lab: Lab) -> None:
    """Source CIDRs and interface names live in the filter maps keyed by generation: each reload
    writes the other generation and switches, so consecutive reloads use both, and traffic shows
    which keys are in force."""

    def filt(src: str, interface: str) -> str:
        return config(receiver, [f"{lab.server_ip}/32"], "7420-7439").replace(
            "  protocols: [udp]", f"  protocols: [udp]\n  src: [{src}]\n  interfaces: [{interface}]"
        )

    agent = AgentProcess.start(tmp_path, filt(f"{lab.client_ip}/32", lab.if_client))
    cfg = next(tmp_path.glob("agent-*.yaml"))
    head = cfg.read_text().split("traces:", 1)[0]
    try:
        # The packet is made in the client namespace: its first hop is the client's transmit queue.
        lab.send_udp(lab.client, lab.server_ip, 7420, 1)
        assert first_hop(receiver, 7420) == f"net_dev_queue({lab.if_client})"
        # Only the router's receive matches now: the path starts there.
        reload(agent, cfg, head + filt(f"{lab.client_ip}/32", lab.if_router_client), "filter and sampling applied")
        lab.send_udp(lab.client, lab.server_ip, 7421, 1)
        assert first_hop(receiver, 7421) == f"netif_receive_skb({lab.if_router_client})"
        # A source the packets do not have: nothing is followed (checked once the next trace is in).
        reload(agent, cfg, head + filt("198.19.0.0/16", lab.if_router_client), "filter and sampling applied")
        lab.send_udp(lab.client, lab.server_ip, 7422, 1)
        # Back to the first filter, in the generation the first one used.
        reload(agent, cfg, head + filt(f"{lab.client_ip}/32", lab.if_client), "filter and sampling applied")
        lab.send_udp(lab.client, lab.server_ip, 7423, 1)
        assert first_hop(receiver, 7423) == f"net_dev_queue({lab.if_client})"
        assert roots_to(receiver, 7422) == []
    finally:
        assert agent.stop() == 0, agent.log()
