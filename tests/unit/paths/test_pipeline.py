"""The one pipeline: ring records in, whole paths out to every sink, the reaper on the same thread."""

from __future__ import annotations

import socket
import time

from exporter.model.path import Hop, HopEvent, Outcome, Path
from exporter.paths.pipeline import build_pipeline
from tests.fakes import FakeKernel, feed, hop_record

SRC, DST = socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")
HEADER = {"family": 4, "protocol": 17, "saddr": SRC, "daddr": DST, "sport": 4242, "dport": 53, "ttl": 64}


def wait_for(paths: list[Path], count: int, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while len(paths) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_records_become_paths_in_every_sink_and_the_ring_closes_at_stop() -> None:
    kernel = FakeKernel()
    got: list[Path] = []
    also: list[Path] = []
    firsts: list[HopEvent] = []
    pipeline = build_pipeline(
        kernel,
        kernel.drop_reasons(),
        [got.append, also.append],
        assembler_options={"grace_ns": 0},
        on_first_hop=firsts.append,
    )
    feed(
        kernel,
        [
            hop_record(7, "net_dev_queue", 100, header=HEADER, ifname=b"eth0"),
            hop_record(7, "netif_receive_skb", 200, ifname=b"eth1"),
            hop_record(7, "kfree_skb", 300, reason=12),
        ],
    )
    pipeline.start()
    try:
        wait_for(got, 1)
    finally:
        pipeline.stop()
    (path,) = got
    assert also == got
    assert [h.hop for h in path.hops] == [Hop.DEV_QUEUE, Hop.NETIF_RECEIVE, Hop.DROP]
    assert (path.outcome, path.drop_reason) == (Outcome.DROPPED, "NETFILTER_DROP")
    assert path.header is not None and (path.header.src, path.header.dport) == ("10.0.0.1", 53)
    assert [ev.path_id for ev in firsts] == [7]  # the first hop of each path, once
    assert pipeline.events == 3 and pipeline.decode_errors == 0
    assert kernel.rings[0].closed


def test_a_bad_record_is_counted_not_fatal() -> None:
    kernel = FakeKernel()
    got: list[Path] = []
    pipeline = build_pipeline(kernel, kernel.drop_reasons(), [got.append], assembler_options={"grace_ns": 0})
    feed(kernel, [b"short", hop_record(9, "kfree_skb", 5, header=HEADER, reason=2)])
    pipeline.start()
    try:
        wait_for(got, 1)
    finally:
        pipeline.stop()
    assert pipeline.decode_errors == 1 and len(got) == 1


def test_stop_flushes_paths_still_open() -> None:
    kernel = FakeKernel()
    got: list[Path] = []
    pipeline = build_pipeline(kernel, kernel.drop_reasons(), [got.append])
    feed(kernel, [hop_record(3, "net_dev_queue", 10, header=HEADER)])
    pipeline.start()
    time.sleep(0.2)
    pipeline.stop()
    assert [p.outcome for p in got] == [Outcome.INCOMPLETE]
    assert pipeline.assembler.evicted["shutdown"] == 1
