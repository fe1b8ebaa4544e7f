"""Read the kernel's counter maps into plain Python numbers (summed over CPUs).

The readers take map handles (exporter/kernel/api.py): the kernel facade gives them the real maps,
tests give them in-memory ones.
"""

from __future__ import annotations

import builtins
import ctypes
import mmap
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.kernel.api import MapHandle, split_percpu
from exporter.model.abi import (
    DROP_KEY_TRUNCATED,
    SLOT_STATES,
    STAT_SLOTS,
    DropKey,
    DropSlot,
    DropValue,
    NfVerdictKey,
    RouteKey,
    RpFilterKey,
)


@dataclass(frozen=True)
class DropCount:
    ifname: str  # name at drop time; "" when the skb had no device
    reason: int
    ifindex: int
    netns: int
    l3_proto: int
    l4_proto: int
    packets: int
    bytes: int
    key: builtins.bytes = b""  # the raw kernel key, to delete the entry (e.g. a deleted pod's namespace)
    truncated: bool = False  # the IP header was cut short: the protocol is unknown (DROP_KEY_TRUNCATED)
    location: int = 0  # kfree_skb call site: kernels without drop reasons only (reason: DROP_EVIDENCE_* then)


def read_drop_counts(drop_map: MapHandle, slots: Iterable[tuple[bytes, int, int]] = ()) -> list[DropCount]:
    """One DropCount per drop_counts key: its per-CPU values summed (each CPU
    only ever adds), plus the counts of the slots the key owns (drops.bpf.h).
    `slots` must be read before drop_map: a slot is claimed only for a key
    already in drop_counts, so every slot counted belongs to a key read here;
    slots of keys not in drop_map (being forgotten, or half-written) are left out."""
    in_slots: dict[bytes, list[int]] = {}
    for kraw, packets, nbytes in slots:
        acc = in_slots.setdefault(kraw, [0, 0])
        acc[0] += packets
        acc[1] += nbytes
    out = []
    vsize = ctypes.sizeof(DropValue)
    for kraw, vraw in drop_map.items():
        key = DropKey.from_buffer_copy(kraw)
        packets, nbytes = in_slots.get(kraw, (0, 0))
        for cpu_raw in split_percpu(vraw, vsize):
            v = DropValue.from_buffer_copy(cpu_raw)
            packets += v.packets
            nbytes += v.bytes
        out.append(
            DropCount(
                key.ifname.decode(errors="replace"),
                key.reason,
                key.ifindex,
                key.netns,
                key.l3_proto,
                key.l4_proto,
                packets,
                nbytes,
                kraw,
                truncated=bool(key.flags & DROP_KEY_TRUNCATED),
                location=key.location,
            )
        )
    return out


class DropSlots:
    """The kernel's per-CPU drop cache (drop_slots, drops.bpf.h), shared through mmap.

    Claimed slots only grow.  Retiring one (its key's series is being
    deleted) takes two scrapes: RETIRED and zeroed now, so the kernel neither
    counts into it nor claims it while the bytes change, then FREE at the next
    scrape, long after any write that raced the retirement has landed.
    """

    _LAYOUT = struct.Struct("<40sQQI4x")
    _STATE_OFFSET = DropSlot.state.offset

    def __init__(self, slot_map: MapHandle) -> None:
        assert self._LAYOUT.size == ctypes.sizeof(DropSlot) == slot_map.value_size
        self._mem = slot_map.mmap()
        self._size = slot_map.max_entries * self._LAYOUT.size
        self._retired: list[int] = []
        self._lock = threading.Lock()  # two scrapes may run at once (threaded HTTP server)

    def read(self) -> list[tuple[bytes, int, int]]:
        """(raw key, packets, bytes) of every claimed slot; frees the slots retired last time."""
        with self._lock:
            for index in self._retired:
                self._set_state(index, SLOT_STATES["SLOT_FREE"])
            self._retired = []
        claimed = SLOT_STATES["SLOT_CLAIMED"]
        with memoryview(self._mem)[: self._size] as view:
            return [
                (key, packets, nbytes)
                for key, packets, nbytes, state in self._LAYOUT.iter_unpack(view)
                if state == claimed
            ]

    def retire(self, keys: set[bytes]) -> int:
        """Take back the slots owned by these keys; how many there were."""
        size = self._LAYOUT.size
        with memoryview(self._mem)[: self._size] as view:
            owned = [
                i
                for i, (key, _p, _b, state) in enumerate(self._LAYOUT.iter_unpack(view))
                if state == SLOT_STATES["SLOT_CLAIMED"] and key in keys
            ]
        with self._lock:
            for index in owned:
                self._set_state(index, SLOT_STATES["SLOT_RETIRED"])
                self._mem[index * size : index * size + self._STATE_OFFSET] = bytes(self._STATE_OFFSET)
            self._retired.extend(owned)
        return len(owned)

    def _set_state(self, index: int, state: int) -> None:
        at = index * self._LAYOUT.size + self._STATE_OFFSET
        self._mem[at : at + 4] = state.to_bytes(4, "little")

    def close(self) -> None:
        if isinstance(self._mem, mmap.mmap):
            self._mem.close()


def read_stats(stats_map: MapHandle) -> list[int]:
    """The `stats` per-CPU array, one total per enum pktpath_stat slot."""
    return [read_stat(stats_map, slot) for slot in range(STAT_SLOTS)]


def read_stat(stats_map: MapHandle, slot: int) -> int:
    """One slot of the `stats` per-CPU array, summed over CPUs."""
    raw = stats_map.lookup(slot.to_bytes(4, "little"))
    return sum(int.from_bytes(c, "little") for c in split_percpu(raw, 8)) if raw else 0


def read_percpu_counts(counter_map: MapHandle) -> list[tuple[bytes, int]]:
    """(raw key, total over CPUs) of a per-CPU hash of u64 counters (the verdict maps)."""
    return [(k, sum(int.from_bytes(c, "little") for c in split_percpu(v, 8))) for k, v in counter_map.items()]


@dataclass(frozen=True)
class VerdictCounts:
    netfilter: list[tuple[int, int, str, int, int]]  # (family, hook, table, verdict, packets)
    rp_filter: list[tuple[bool, str, int]]  # (failed, interface, packets)
    route: list[tuple[int, int, int]]  # (return value, error route's errno, packets)


def read_verdicts(nf: MapHandle, rpf: MapHandle, route: MapHandle) -> VerdictCounts:
    nf_out = []
    for kraw, n in read_percpu_counts(nf):
        k = NfVerdictKey.from_buffer_copy(kraw)
        nf_out.append((k.family, k.hook, k.table.decode(errors="replace"), k.verdict, n))
    rpf_out = []
    for kraw, n in read_percpu_counts(rpf):
        r = RpFilterKey.from_buffer_copy(kraw)
        rpf_out.append((bool(r.failed), r.ifname.decode(errors="replace"), n))
    route_out = []
    for kraw, n in read_percpu_counts(route):
        rk = RouteKey.from_buffer_copy(kraw)
        route_out.append((rk.ret, rk.route_error, n))
    return VerdictCounts(nf_out, rpf_out, route_out)


class DropCounterReader:
    """drop_counts and its per-CPU slot cache (drops.bpf.h), read and forgotten together."""

    def __init__(self, drop_map: MapHandle, slot_map: MapHandle) -> None:
        self._map = drop_map
        self._slots = DropSlots(slot_map)

    def read(self) -> list[DropCount]:
        return read_drop_counts(self._map, self._slots.read())

    def forget(self, counts: list[DropCount]) -> int:
        """Delete these series (a deleted pod's namespace): they end instead of living forever.
        Returns how many fast-path slots were retired with them."""
        for c in counts:
            self._map.delete(c.key)
        return self._slots.retire({c.key for c in counts})


class KernelStats:
    """The `stats` per-CPU array: one total per enum pktpath_stat slot."""

    def __init__(self, stats_map: MapHandle) -> None:
        self._map = stats_map

    def read(self) -> list[int]:
        return read_stats(self._map)

    def read_slot(self, slot: int) -> int:
        return read_stat(self._map, slot)


class VerdictReader:
    """The function hooks' verdict counters (netfilter, rp_filter, input route lookups)."""

    def __init__(self, nf: MapHandle, rpf: MapHandle, route: MapHandle) -> None:
        self._maps = (nf, rpf, route)

    def read(self) -> VerdictCounts:
        return read_verdicts(*self._maps)
