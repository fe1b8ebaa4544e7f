"""The reaper: entries no hop ended are deleted once stale, and the gate learns how many."""

from __future__ import annotations

from exporter.model import abi
from exporter.paths.tracking import REAP_EVERY_NS, STALE_NS, TrackedReaper
from tests.fakes import struct_map

LIVE = (0).to_bytes(4, "little")
REAPED = (1).to_bytes(4, "little")


def tables() -> tuple[object, object]:
    return struct_map("tracked", 8, abi.Track, 64), struct_map("path_gate", 4, 8, 2)


def track(born_ns: int) -> bytes:
    return bytes(abi.Track(path_id=1, born_ns=born_ns))


def test_only_stale_entries_go_and_the_gate_counts_them() -> None:
    tracked, gate = tables()
    now = [10 * STALE_NS]
    for i, born in enumerate((0, now[0] - STALE_NS // 2, STALE_NS)):
        tracked.update(i.to_bytes(8, "little"), track(born))  # type: ignore[attr-defined]
    gate.update(LIVE, (3).to_bytes(8, "little"))  # type: ignore[attr-defined]
    reaper = TrackedReaper(tracked, gate, clock_ns=lambda: now[0])  # type: ignore[arg-type]
    assert reaper.live() == 3
    assert reaper.tick() == 2
    assert sorted(tracked.keys()) == [(1).to_bytes(8, "little")]  # type: ignore[attr-defined]
    assert int.from_bytes(gate.lookup(REAPED), "little") == 2  # type: ignore[attr-defined]
    assert reaper.live() == 1
    # Not again before REAP_EVERY_NS, and a restarted reaper starts from the kernel's count.
    now[0] += REAP_EVERY_NS // 2
    assert reaper.tick() == 0
    assert TrackedReaper(tracked, gate).reaped == 2  # type: ignore[arg-type]


def test_nothing_followed_costs_no_map_walk() -> None:
    tracked, gate = tables()
    walked: list[int] = []

    def items() -> list[object]:
        walked.append(1)
        return []

    tracked.items = items  # type: ignore[attr-defined]
    reaper = TrackedReaper(tracked, gate, clock_ns=lambda: 10**12)  # type: ignore[arg-type]
    assert reaper.tick() == 0 and walked == []
