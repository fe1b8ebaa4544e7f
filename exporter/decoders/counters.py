"""Read the kernel's counter maps into plain Python numbers (summed over CPUs)."""

from __future__ import annotations

import builtins
import ctypes
from dataclasses import dataclass

from exporter.decoders.abi import STAT_SLOTS, DropKey, DropValue
from exporter.loader.libbpf import Map, split_percpu


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


def read_drop_counts(drop_map: Map) -> list[DropCount]:
    """One DropCount per kernel key; per-CPU values summed (each CPU only ever adds)."""
    out = []
    vsize = ctypes.sizeof(DropValue)
    for kraw, vraw in drop_map.items():
        key = DropKey.from_buffer_copy(kraw)
        packets = nbytes = 0
        for cpu_raw in split_percpu(vraw, vsize):
            v = DropValue.from_buffer_copy(cpu_raw)
            packets += v.packets
            nbytes += v.bytes
        out.append(DropCount(key.ifname.decode(errors="replace"), key.reason, key.ifindex, key.netns,
                             key.l3_proto, key.l4_proto, packets, nbytes, kraw))
    return out


def read_stats(stats_map: Map) -> list[int]:
    """The `stats` per-CPU array, one total per enum pktpath_stat slot."""
    totals = []
    for slot in range(STAT_SLOTS):
        raw = stats_map.lookup(slot.to_bytes(4, "little"))
        totals.append(sum(int.from_bytes(c, "little") for c in split_percpu(raw, 8)) if raw else 0)
    return totals
