"""PathAssembler: hops grouped into paths, ordered by kernel time, ended by terminal hop, idleness or bounds."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.model.path import Hop, HopEvent, Outcome, PacketHeader, Path, SampledBy
from exporter.paths.assembler import PathAssembler

IDLE = 1_000
GRACE = 100

HEADER = PacketHeader(family=4, src="10.0.0.1", dst="10.0.1.2", protocol=17, sport=40000, dport=53, ttl=64)


class FakeClock:
    """clock_ns stand-in: the test moves `now` by hand."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def make(**kwargs: Any) -> tuple[PathAssembler, list[Path], FakeClock]:
    sink: list[Path] = []
    clock = FakeClock()
    kwargs.setdefault("idle_timeout_ns", IDLE)
    kwargs.setdefault("grace_ns", GRACE)
    asm = PathAssembler(sink.append, clock_ns=clock, **kwargs)
    return asm, sink, clock


def ev(path_id: int, hop: Hop, ts: int, **kwargs: Any) -> HopEvent:
    return HopEvent(path_id=path_id, hop=hop, ts_ns=ts, **kwargs)


def hop_names(path: Path) -> list[Hop]:
    return [h.hop for h in path.hops]


def test_forwarded_packet_ends_on_idle_as_transmitted() -> None:
    asm, sink, clock = make()
    asm.add(ev(1, Hop.NETIF_RECEIVE, 100, header=HEADER, ifname="eth0"))
    asm.add(ev(1, Hop.FIB_LOOKUP, 200, out_ifname="eth1"))
    asm.add(ev(1, Hop.DEV_QUEUE, 300, ifname="eth1"))
    asm.add(ev(1, Hop.DEV_XMIT, 400, ifname="eth1"))
    assert asm.open_paths == 1

    clock.now = IDLE - 1
    asm.tick()
    assert sink == []

    clock.now = IDLE
    asm.tick()
    assert len(sink) == 1
    path = sink[0]
    assert path.path_id == 1
    assert path.outcome is Outcome.TRANSMITTED
    assert path.drop_reason is None
    assert path.header == HEADER
    assert hop_names(path) == [Hop.NETIF_RECEIVE, Hop.FIB_LOOKUP, Hop.DEV_QUEUE, Hop.DEV_XMIT]
    assert (path.start_ns, path.end_ns) == (100, 400)
    assert asm.evicted == {"idle_timeout": 1}
    assert asm.emitted[Outcome.TRANSMITTED] == 1
    assert asm.open_paths == 0


def test_dropped_packet_waits_for_grace_then_reports_reason() -> None:
    asm, sink, clock = make()
    asm.add(ev(7, Hop.NETIF_RECEIVE, 10, header=HEADER))
    clock.now = 5
    asm.add(ev(7, Hop.DROP, 20, reason="NETFILTER_DROP"))

    clock.now = 5 + GRACE - 1
    asm.tick()
    assert sink == []  # terminal hop seen, but the grace period is not over

    clock.now = 5 + GRACE
    asm.tick()
    assert len(sink) == 1
    assert sink[0].outcome is Outcome.DROPPED
    assert sink[0].drop_reason == "NETFILTER_DROP"
    assert hop_names(sink[0]) == [Hop.NETIF_RECEIVE, Hop.DROP]
    assert asm.evicted == {}  # a terminal end is not an eviction
    assert asm.emitted == {Outcome.DROPPED: 1}


def test_out_of_order_hop_within_grace_is_placed_by_timestamp() -> None:
    asm, sink, clock = make()
    asm.add(ev(3, Hop.NETIF_RECEIVE, 100, header=HEADER, cpu=0))
    asm.add(ev(3, Hop.DROP, 300, reason="NO_SOCKET", cpu=0))
    clock.now = GRACE - 1
    asm.add(ev(3, Hop.FIB_LOOKUP, 200, cpu=1))  # stamped before the drop, arrives after it
    asm.tick()
    assert sink == []  # the late hop must not push the deadline out, but it is not reached yet either

    clock.now = GRACE  # deadline counted from the terminal hop's arrival, not extended by the late hop
    asm.tick()
    assert len(sink) == 1
    assert hop_names(sink[0]) == [Hop.NETIF_RECEIVE, Hop.FIB_LOOKUP, Hop.DROP]
    assert [h.cpu for h in sink[0].hops] == [0, 1, 0]
    assert sink[0].outcome is Outcome.DROPPED


def test_hop_after_emission_is_late_and_not_a_new_path() -> None:
    asm, sink, clock = make()
    asm.add(ev(3, Hop.NETIF_RECEIVE, 100, header=HEADER))
    asm.add(ev(3, Hop.DROP, 300, reason="NO_SOCKET"))
    clock.now = GRACE
    asm.tick()
    assert len(sink) == 1

    clock.now = GRACE + 1
    asm.add(ev(3, Hop.FIB_LOOKUP, 200))
    assert asm.evicted["late_hop"] == 1
    assert asm.open_paths == 0
    clock.now = 10 * IDLE
    asm.tick()
    asm.flush()
    assert len(sink) == 1  # no second, partial path for packet 3
    assert hop_names(sink[0]) == [Hop.NETIF_RECEIVE, Hop.DROP]


def test_closed_memory_is_bounded() -> None:
    asm, sink, _ = make(closed_memory=1)
    asm.add(ev(1, Hop.NETIF_RECEIVE, 1))
    asm.add(ev(2, Hop.NETIF_RECEIVE, 2))
    asm.flush()
    assert len(sink) == 2
    asm.add(ev(2, Hop.FIB_LOOKUP, 3))  # remembered: dropped
    assert asm.evicted["late_hop"] == 1
    assert asm.open_paths == 0
    asm.add(ev(1, Hop.FIB_LOOKUP, 4))  # forgotten (memory of 1): opens again
    assert asm.evicted["late_hop"] == 1
    assert asm.open_paths == 1


def test_late_hop_refreshes_closed_memory() -> None:
    asm, _, _ = make(closed_memory=2)
    asm.add(ev(1, Hop.NETIF_RECEIVE, 1))
    asm.add(ev(2, Hop.NETIF_RECEIVE, 2))
    asm.flush()
    asm.add(ev(1, Hop.FIB_LOOKUP, 3))  # late: 1 becomes the most recently remembered
    asm.add(ev(3, Hop.NETIF_RECEIVE, 4))
    asm.flush()  # remembering 3 forgets 2, not 1
    asm.add(ev(1, Hop.DEV_QUEUE, 5))
    assert asm.evicted["late_hop"] == 2
    assert asm.open_paths == 0
    asm.add(ev(2, Hop.DEV_QUEUE, 6))
    assert asm.open_paths == 1


def test_second_terminal_hop_does_not_extend_grace() -> None:
    asm, sink, clock = make()
    asm.add(ev(1, Hop.NETIF_RECEIVE, 1))
    asm.add(ev(1, Hop.DROP, 2, reason="NO_SOCKET"))
    clock.now = GRACE - 1
    asm.add(ev(1, Hop.CONSUME, 3))
    clock.now = GRACE
    asm.tick()
    assert len(sink) == 1
    assert hop_names(sink[0]) == [Hop.NETIF_RECEIVE, Hop.DROP, Hop.CONSUME]
    assert sink[0].outcome is Outcome.DROPPED


def test_missing_terminal_hop_ends_on_idle_as_incomplete() -> None:
    asm, sink, clock = make()
    asm.add(ev(5, Hop.NETIF_RECEIVE, 100, header=HEADER))
    clock.now = 50
    asm.add(ev(5, Hop.FIB_LOOKUP, 150))

    clock.now = 50 + IDLE - 1  # idleness counts from the last event's arrival
    asm.tick()
    assert sink == []

    clock.now = 50 + IDLE
    asm.tick()
    assert len(sink) == 1
    assert sink[0].outcome is Outcome.INCOMPLETE
    assert hop_names(sink[0]) == [Hop.NETIF_RECEIVE, Hop.FIB_LOOKUP]
    assert asm.evicted["idle_timeout"] == 1


def test_terminal_path_reached_by_idle_scan_is_not_an_idle_end() -> None:
    asm, sink, clock = make(idle_timeout_ns=50, grace_ns=100)  # odd setting: idle shorter than grace
    asm.add(ev(1, Hop.NETIF_RECEIVE, 1))
    asm.add(ev(1, Hop.CONSUME, 2))
    clock.now = 50
    asm.tick()
    assert [p.outcome for p in sink] == [Outcome.CONSUMED]
    assert asm.evicted == {}
    clock.now = 100
    asm.tick()  # the closing entry went with it: no second emission, no error
    assert len(sink) == 1
    assert asm.evicted == {}


def test_idle_expiry_keeps_recently_active_paths() -> None:
    asm, sink, clock = make()
    asm.add(ev(1, Hop.NETIF_RECEIVE, 1))
    asm.add(ev(2, Hop.NETIF_RECEIVE, 2))
    clock.now = IDLE - 10
    asm.add(ev(1, Hop.FIB_LOOKUP, 3))  # path 1 is now the most recently active

    clock.now = IDLE
    asm.tick()
    assert [p.path_id for p in sink] == [2]
    assert asm.open_paths == 1

    clock.now = 2 * IDLE - 10
    asm.tick()
    assert [p.path_id for p in sink] == [2, 1]
    assert asm.evicted["idle_timeout"] == 2


def test_capacity_evicts_least_recently_active_path() -> None:
    asm, sink, clock = make(max_open=2)
    asm.add(ev(1, Hop.NETIF_RECEIVE, 1))
    clock.now = 1
    asm.add(ev(2, Hop.NETIF_RECEIVE, 2))
    clock.now = 2
    asm.add(ev(1, Hop.FIB_LOOKUP, 3))  # path 1 was created first but is active again

    clock.now = 3
    asm.add(ev(3, Hop.NETIF_RECEIVE, 4))
    assert [p.path_id for p in sink] == [2]
    assert sink[0].outcome is Outcome.INCOMPLETE
    assert asm.evicted == {"capacity": 1}
    assert asm.open_paths == 2

    asm.flush()
    assert sorted(p.path_id for p in sink) == [1, 2, 3]
    assert hop_names(next(p for p in sink if p.path_id == 1)) == [Hop.NETIF_RECEIVE, Hop.FIB_LOOKUP]


def test_capacity_eviction_of_closing_path_is_not_emitted_twice() -> None:
    asm, sink, clock = make(max_open=1)
    asm.add(ev(1, Hop.NETIF_RECEIVE, 1))
    asm.add(ev(1, Hop.CONSUME, 2))
    asm.add(ev(2, Hop.NETIF_RECEIVE, 3))  # evicts closing path 1
    assert [(p.path_id, p.outcome) for p in sink] == [(1, Outcome.CONSUMED)]
    clock.now = GRACE
    asm.tick()
    assert [p.path_id for p in sink] == [1]
    assert asm.open_paths == 1
    assert asm.evicted == {"capacity": 1}


def test_too_many_hops_are_dropped_and_counted() -> None:
    asm, sink, _ = make(max_hops=3)
    for i in range(5):
        asm.add(ev(1, Hop.FIB_LOOKUP, 10 + i))
    asm.flush()
    assert len(sink) == 1
    assert [h.ts_ns for h in sink[0].hops] == [10, 11, 12]
    assert asm.evicted["too_many_hops"] == 2


def test_terminal_hop_beyond_max_hops_still_decides_the_outcome() -> None:
    asm, sink, clock = make(max_hops=3)
    for i in range(3):
        asm.add(ev(1, Hop.FIB_LOOKUP, 10 + i))
    asm.add(ev(1, Hop.DROP, 20, reason="IP_INHDR"))
    asm.add(ev(1, Hop.CONSUME, 21))  # a second terminal hop over the limit is just dropped
    clock.now = GRACE
    asm.tick()
    assert len(sink) == 1
    assert len(sink[0].hops) == 3
    assert [h.ts_ns for h in sink[0].hops] == [10, 11, 20]
    assert sink[0].outcome is Outcome.DROPPED
    assert sink[0].drop_reason == "IP_INHDR"
    assert asm.evicted["too_many_hops"] == 2


def test_delivered_wins_over_consume() -> None:
    asm, sink, clock = make()
    asm.add(ev(1, Hop.NETIF_RECEIVE, 1))
    asm.add(ev(1, Hop.DELIVER, 2))
    asm.add(ev(1, Hop.CONSUME, 3))
    clock.now = GRACE
    asm.tick()
    assert len(sink) == 1
    assert sink[0].outcome is Outcome.DELIVERED
    assert asm.emitted == {Outcome.DELIVERED: 1}


def test_queued_to_socket_is_delivered_and_ends_the_path() -> None:
    asm, sink, clock = make()
    asm.add(ev(1, Hop.NETIF_RECEIVE, 1))
    asm.add(ev(1, Hop.SOCK_QUEUE, 2, verdict=53))
    clock.now = GRACE - 1
    asm.tick()
    assert sink == []  # a terminal hop waits out the grace period for late hops
    clock.now = GRACE
    asm.tick()
    assert len(sink) == 1
    assert sink[0].outcome is Outcome.DELIVERED
    assert asm.evicted["idle_timeout"] == 0


def test_consumed_without_delivery() -> None:
    asm, sink, clock = make()
    asm.add(ev(1, Hop.NETIF_RECEIVE, 1))
    asm.add(ev(1, Hop.CONSUME, 2))
    clock.now = GRACE
    asm.tick()
    assert len(sink) == 1
    assert sink[0].outcome is Outcome.CONSUMED
    assert sink[0].drop_reason is None


def test_drop_anywhere_wins_and_first_drop_gives_the_reason() -> None:
    asm, sink, clock = make()
    asm.add(ev(1, Hop.NETIF_RECEIVE, 1))
    asm.add(ev(1, Hop.DROP, 5, reason="SECOND"))
    asm.add(ev(1, Hop.DROP, 3, reason="FIRST"))  # stamped earlier: first in kernel time
    asm.add(ev(1, Hop.DEV_XMIT, 9))
    clock.now = GRACE
    asm.tick()
    assert sink[0].outcome is Outcome.DROPPED
    assert sink[0].drop_reason == "FIRST"


def test_last_hop_not_telling_is_incomplete() -> None:
    asm, sink, _ = make()
    asm.add(ev(1, Hop.DEV_XMIT, 5))
    asm.add(ev(1, Hop.DEV_QUEUE, 4))
    asm.add(ev(1, Hop.NETIF_RECEIVE, 6))  # last in kernel time: the xmit is not the end
    asm.flush()
    assert hop_names(sink[0]) == [Hop.DEV_QUEUE, Hop.DEV_XMIT, Hop.NETIF_RECEIVE]
    assert sink[0].outcome is Outcome.INCOMPLETE


def test_equal_timestamps_keep_arrival_order() -> None:
    asm, sink, _ = make()
    asm.add(ev(1, Hop.DEV_QUEUE, 5))
    asm.add(ev(1, Hop.NETIF_RECEIVE, 5))
    asm.add(ev(1, Hop.FIB_LOOKUP, 5))
    asm.flush()
    assert hop_names(sink[0]) == [Hop.DEV_QUEUE, Hop.NETIF_RECEIVE, Hop.FIB_LOOKUP]


def test_header_from_first_event_carrying_it_and_sampled_by_from_first_event() -> None:
    asm, sink, _ = make()
    asm.add(ev(1, Hop.FIB_LOOKUP, 2, sampled_by=SampledBy.DROP))  # arrives before the first hop
    asm.add(ev(1, Hop.NETIF_RECEIVE, 1, header=HEADER, sampled_by=SampledBy.RATE))
    other = PacketHeader(family=6, src="::1", dst="::2", protocol=6)
    asm.add(ev(1, Hop.DEV_QUEUE, 3, header=other))
    asm.flush()
    assert sink[0].header == HEADER
    assert sink[0].sampled_by is SampledBy.DROP


def test_flush_counts_shutdown_only_for_non_terminal_paths() -> None:
    asm, sink, _ = make()
    asm.add(ev(1, Hop.NETIF_RECEIVE, 1))
    asm.add(ev(1, Hop.DROP, 2, reason="NO_SOCKET"))  # closing
    asm.add(ev(2, Hop.NETIF_RECEIVE, 3))
    asm.add(ev(3, Hop.NETIF_RECEIVE, 4))
    asm.add(ev(3, Hop.CONSUME, 5))  # closing
    asm.flush()
    assert sorted(p.path_id for p in sink) == [1, 2, 3]
    assert asm.evicted == {"shutdown": 1}
    assert asm.open_paths == 0
    asm.tick()  # nothing left, closing paths included
    assert len(sink) == 3


def test_raising_sink_is_counted_and_later_paths_still_flow() -> None:
    received: list[Path] = []

    def sink(path: Path) -> None:
        if path.path_id == 1:
            raise RuntimeError("exporter down")
        received.append(path)

    clock = FakeClock()
    asm = PathAssembler(sink, idle_timeout_ns=IDLE, grace_ns=GRACE, max_open=1, clock_ns=clock)
    asm.add(ev(1, Hop.NETIF_RECEIVE, 1))
    asm.add(ev(2, Hop.NETIF_RECEIVE, 2))  # capacity eviction of 1 inside add(): must not raise
    assert asm.sink_errors == 1
    asm.add(ev(2, Hop.CONSUME, 3))
    clock.now = GRACE
    asm.tick()
    assert [p.path_id for p in received] == [2]
    assert asm.sink_errors == 1
    assert asm.emitted == {Outcome.INCOMPLETE: 1, Outcome.CONSUMED: 1}  # handed over, even if it failed


def test_raising_sink_in_tick_does_not_stop_other_paths() -> None:
    calls: list[int] = []

    def sink(path: Path) -> None:
        calls.append(path.path_id)
        raise ValueError("boom")

    clock = FakeClock()
    asm = PathAssembler(sink, idle_timeout_ns=IDLE, grace_ns=GRACE, clock_ns=clock)
    for pid in (1, 2, 3):
        asm.add(ev(pid, Hop.NETIF_RECEIVE, pid))
    clock.now = IDLE
    asm.tick()
    assert calls == [1, 2, 3]
    assert asm.sink_errors == 3
    assert asm.open_paths == 0


def test_interleaved_paths_do_not_mix() -> None:
    asm, sink, clock = make()
    asm.add(ev(1, Hop.NETIF_RECEIVE, 10, header=HEADER))
    asm.add(ev(2, Hop.NETIF_RECEIVE, 11))
    asm.add(ev(1, Hop.FIB_LOOKUP, 12))
    asm.add(ev(2, Hop.DELIVER, 13))
    asm.add(ev(1, Hop.DROP, 14, reason="NO_ROUTE"))
    asm.add(ev(2, Hop.CONSUME, 15))
    assert asm.open_paths == 2
    clock.now = GRACE
    asm.tick()
    by_id = {p.path_id: p for p in sink}
    assert set(by_id) == {1, 2}
    assert all(h.path_id == pid for pid, p in by_id.items() for h in p.hops)
    assert hop_names(by_id[1]) == [Hop.NETIF_RECEIVE, Hop.FIB_LOOKUP, Hop.DROP]
    assert hop_names(by_id[2]) == [Hop.NETIF_RECEIVE, Hop.DELIVER, Hop.CONSUME]
    assert by_id[1].outcome is Outcome.DROPPED
    assert by_id[2].outcome is Outcome.DELIVERED
    assert by_id[2].header is None


def test_tick_with_nothing_due_emits_nothing() -> None:
    asm, sink, clock = make()
    asm.tick()
    assert sink == []
    asm.add(ev(1, Hop.NETIF_RECEIVE, 1))
    asm.add(ev(2, Hop.NETIF_RECEIVE, 2))
    asm.add(ev(2, Hop.DROP, 3))
    clock.now = GRACE - 1
    asm.tick()
    assert sink == []
    assert asm.open_paths == 2
    assert asm.evicted == {}
    assert asm.emitted == {}


def test_bad_event_is_counted_not_raised() -> None:
    asm, sink, _ = make()
    asm.add(object())  # type: ignore[arg-type]
    assert asm.evicted == {"internal_error": 1}
    assert asm.open_paths == 0
    asm.add(ev(1, Hop.NETIF_RECEIVE, 1))  # still working afterwards
    asm.flush()
    assert [p.path_id for p in sink] == [1]


def test_unsortable_path_is_counted_in_tick_not_raised() -> None:
    asm, sink, clock = make()
    asm.add(ev(1, Hop.NETIF_RECEIVE, 1))
    asm.add(ev(1, Hop.FIB_LOOKUP, None))  # type: ignore[arg-type]
    asm.add(ev(2, Hop.NETIF_RECEIVE, 2))
    clock.now = IDLE
    asm.tick()
    assert asm.evicted["internal_error"] == 1
    assert [p.path_id for p in sink] == [2]
    assert asm.open_paths == 0


def test_failing_clock_in_tick_is_counted_not_raised() -> None:
    def clock() -> int:
        raise OSError("no clock")

    asm = PathAssembler(lambda p: None, clock_ns=clock)
    asm.tick()
    assert asm.evicted == {"internal_error": 1}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"idle_timeout_ns": 0},
        {"grace_ns": -1},
        {"max_open": 0},
        {"max_hops": 0},
        {"closed_memory": -1},
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        PathAssembler(lambda p: None, **kwargs)  # type: ignore[arg-type]
