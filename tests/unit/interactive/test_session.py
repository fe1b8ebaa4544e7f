"""A trace session on an in-memory kernel side: the filter goes to the kernel, paths come back, max_pkt
stops new paths in the kernel at once, and closing detaches."""

from __future__ import annotations

import ipaddress
import socket

from exporter.interactive.session import TraceSession
from exporter.kernel.api import ProbeState
from exporter.model import abi
from tests.fakes import FakeKernel, feed, hop_record


def record(path_id: int, ts: int) -> bytes:
    header = {
        "family": 4,
        "protocol": 17,
        "saddr": socket.inet_aton("10.0.0.1"),
        "daddr": socket.inet_aton("10.0.0.2"),
        "sport": 1,
        "dport": 53,
    }
    return hop_record(path_id, "kfree_skb", ts, header=header, reason=12)


def active_config(kernel: FakeKernel) -> abi.PathConfig:
    gen = int.from_bytes(kernel.maps["path_generation"].lookup(bytes(4)) or bytes(4), "little")
    raw = kernel.maps["path_config"].lookup(gen.to_bytes(4, "little"))
    assert raw is not None
    return abi.PathConfig.from_buffer_copy(raw)


def test_a_trace_follows_max_pkt_packets_then_stops_new_paths() -> None:
    kernel = FakeKernel(
        probes=[
            ProbeState("kfree_skb", "tracepoint", True),
            ProbeState("ip_rcv", "fentry", False),
            ProbeState("ip_rcv", "kprobe", True),
        ]
    )
    opened: list[int] = []

    def open_kernel() -> FakeKernel:
        opened.append(1)
        return kernel

    session = TraceSession(open_kernel)
    session.params.max_pkt = 2
    session.params.max_duration = 10
    session.set_dst(ipaddress.ip_network("10.0.0.0/24"))
    assert session.modes() == {}  # nothing loaded before the first start
    session.start()
    try:
        cfg = active_config(kernel)
        assert cfg.enabled == 1 and cfg.filter_flags & abi.FILTER_DST and cfg.sample_below == 1 << 32
        feed(kernel, [record(1, 10), record(2, 20), record(3, 30)])
        assert session.wait(timeout=5)
    finally:
        session.close()
    assert session.result.ended_by == "max_pkt"
    assert [p.path_id for p in session.result.paths] == [1, 2]
    assert active_config(kernel).enabled == 0  # the trace's end turns paths off in the kernel
    assert session.modes() == {}  # closed: nothing attached
    assert opened == [1] and kernel.closed


def test_modes_name_the_family_each_hop_runs_in() -> None:
    kernel = FakeKernel(
        probes=[
            ProbeState("kfree_skb", "tracepoint", True),
            ProbeState("ip_rcv", "fentry", False),
            ProbeState("ip_rcv", "kprobe", True),
            ProbeState("nft_do_chain", "fentry", False),
        ]
    )
    session = TraceSession(lambda: kernel)
    session.load()
    assert session.modes() == {"kfree_skb": "tracepoint", "ip_rcv": "kprobe", "nft_do_chain": "not attached"}
    session.close()
