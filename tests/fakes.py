"""In-memory fakes of the kernel side (exporter/kernel/api.py), for unit tests that need no root.

FakeMap behaves like a BPF map as the stages use it: bytes in, bytes out, a capacity, per-CPU
values laid out as the kernel lays them out (one 8-byte-aligned value per CPU), an mmap area.
FakeKernel hands out the same stages KernelSide does, built on FakeMaps and a FakeRing that
delivers records a test puts in it.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable, Iterable

from exporter.decoders.counters import DropCounterReader, KernelStats, VerdictReader
from exporter.decoders.drop_reasons import DropReasons
from exporter.decoders.route_results import RouteResults
from exporter.errors import KernelError
from exporter.kernel.api import EventConsumer, ProbeState
from exporter.model import abi
from exporter.paths.kernel_config import FilterMaps, PathControl
from exporter.paths.own_traffic import OwnTraffic
from exporter.paths.tracking import TrackedReaper

NCPU = 2


class FakeMap:
    def __init__(self, name: str, key_size: int, value_size: int, max_entries: int, percpu: bool = False) -> None:
        self.name = name
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.percpu = percpu
        self.data: dict[bytes, bytes] = {}
        self.area = bytearray(value_size * max_entries)
        self.refuse_updates = False  # a test's stand-in for a kernel that says no (ENOMEM, E2BIG ...)

    def lookup(self, key: bytes) -> bytes | None:
        return self.data.get(bytes(key))

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        key = bytes(key)
        if self.refuse_updates or (key not in self.data and len(self.data) >= self.max_entries):
            raise KernelError(f"map {self.name}: update: No space left on device")
        self.data[key] = bytes(value)

    def delete(self, key: bytes) -> bool:
        return self.data.pop(bytes(key), None) is not None

    def keys(self) -> list[bytes]:
        return list(self.data)

    def items(self) -> list[tuple[bytes, bytes]]:
        return list(self.data.items())

    def mmap(self) -> bytearray:
        return self.area

    def set_percpu(self, key: bytes, per_cpu: Iterable[bytes]) -> None:
        """What the kernel's CPUs wrote: one value each."""
        stride = (self.value_size + 7) // 8 * 8
        self.data[bytes(key)] = b"".join(v.ljust(stride, b"\0") for v in per_cpu)


def struct_map(
    name: str,
    key: type[ctypes.Structure] | int,
    value: type[ctypes.Structure] | int,
    max_entries: int,
    percpu: bool = False,
) -> FakeMap:
    def size(t: type[ctypes.Structure] | int) -> int:
        return t if isinstance(t, int) else ctypes.sizeof(t)

    return FakeMap(name, size(key), size(value), max_entries, percpu)


class FakeRing:
    """The events ring: records a test pushes are delivered at the next poll."""

    def __init__(self, consume: EventConsumer, pending: list[bytes]) -> None:
        self._consume = consume
        self._pending = pending
        self.closed = False

    def poll(self, timeout_ms: int) -> int:
        # Take exactly the records there are now: a test thread may append more meanwhile (list
        # slicing and `del` of a slice are each atomic under the GIL; reassigning the whole list
        # after copying it would drop what was appended between the two).  An empty poll waits,
        # as the real one does, instead of spinning.
        n = len(self._pending)
        if not n:
            time.sleep(min(timeout_ms, 10) / 1000)
            return 0
        records = self._pending[:n]
        del self._pending[:n]
        for raw in records:
            self._consume(raw)
        return n

    def close(self) -> None:
        self.closed = True


class FakeKernel:
    """What KernelSide offers, in memory."""

    def __init__(self, reasons: DropReasons | None = None, probes: list[ProbeState] | None = None) -> None:
        self.maps = {
            "drop_counts": struct_map("drop_counts", abi.DropKey, abi.DropValue, 64, percpu=True),
            "drop_slots": struct_map("drop_slots", 4, abi.DropSlot, 16),
            "stats": struct_map("stats", 4, 8, abi.STAT_SLOTS, percpu=True),
            "tracked": struct_map("tracked", 8, abi.Track, 64),
            "path_gate": struct_map("path_gate", 4, 8, 2),
            "path_config": struct_map("path_config", 4, abi.PathConfig, abi.FILTER_GENERATIONS),
            "path_generation": struct_map("path_generation", 4, 4, 1),
            "filter_src": struct_map("filter_src", abi.LpmKey, 1, abi.FILTER_GENERATIONS * abi.MAX_FILTER_CIDRS),
            "filter_dst": struct_map("filter_dst", abi.LpmKey, 1, abi.FILTER_GENERATIONS * abi.MAX_FILTER_CIDRS),
            "filter_ifaces": struct_map(
                "filter_ifaces", abi.IfaceKey, 1, abi.FILTER_GENERATIONS * abi.MAX_FILTER_IFACES
            ),
            "own_endpoints": struct_map("own_endpoints", abi.OwnEndpoint, 1, 64),
            "nf_verdicts": struct_map("nf_verdicts", abi.NfVerdictKey, 8, 64, percpu=True),
            "rp_filter_checks": struct_map("rp_filter_checks", abi.RpFilterKey, 8, 64, percpu=True),
            "route_lookups": struct_map("route_lookups", abi.RouteKey, 8, 64, percpu=True),
        }
        self.reasons = reasons or DropReasons(
            [("SKB_DROP_REASON_NOT_SPECIFIED", 2), ("SKB_DROP_REASON_NETFILTER_DROP", 12)]
        )
        self._probes = probes or [ProbeState("kfree_skb", "tracepoint", True)]
        self.events: list[bytes] = []  # records the next poll delivers
        self.rings: list[FakeRing] = []
        self.closed = False
        m = self.maps
        self._control = PathControl(
            FilterMaps(
                config=m["path_config"],
                generation=m["path_generation"],
                src=m["filter_src"],
                dst=m["filter_dst"],
                interfaces=m["filter_ifaces"],
            )
        )
        self._tracked = TrackedReaper(m["tracked"], m["path_gate"])

    def drop_counters(self) -> DropCounterReader:
        return DropCounterReader(self.maps["drop_counts"], self.maps["drop_slots"])

    def stats(self) -> KernelStats:
        return KernelStats(self.maps["stats"])

    def verdict_counters(self) -> VerdictReader:
        return VerdictReader(self.maps["nf_verdicts"], self.maps["rp_filter_checks"], self.maps["route_lookups"])

    def path_control(self) -> PathControl:
        return self._control

    def own_traffic(self, netns: int) -> OwnTraffic:
        return OwnTraffic(self.maps["own_endpoints"], netns)

    def tracked(self) -> TrackedReaper:
        return self._tracked

    def event_ring(self, consume: EventConsumer) -> FakeRing:
        ring = FakeRing(consume, self.events)
        self.rings.append(ring)
        return ring

    def drop_reasons(self) -> DropReasons:
        return self.reasons

    def route_results(self, reasons: DropReasons) -> RouteResults:
        return RouteResults(False, reasons)

    def probes(self) -> list[ProbeState]:
        return list(self._probes)

    def close(self) -> None:
        self.closed = True


def hop_record(
    path_id: int, hop: str, ts_ns: int, *, header: dict[str, object] | None = None, **fields: object
) -> bytes:
    """One ring record (struct hop_event) as the kernel writes it; `header`: the first hop's snapshot."""
    from exporter.model import hops

    ev = abi.HopEventRaw(path_id=path_id, ts_ns=ts_ns, hop=hops.HOP_IDS[f"HOP_{hops.Hop(hop).name}"])
    for name, value in fields.items():
        setattr(ev, name, value)
    if header is not None:
        ev.flags |= abi.EV_HEADER
        for name, value in header.items():
            if name in ("saddr", "daddr"):
                raw = bytes(value)  # type: ignore[call-overload]
                ctypes.memmove(getattr(ev.hdr, name), raw, len(raw))
            else:
                setattr(ev.hdr, name, value)
    return bytes(ev)


def feed(kernel: FakeKernel, records: Iterable[bytes]) -> None:
    kernel.events.extend(records)


Clock = Callable[[], int]
