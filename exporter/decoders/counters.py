"""Read the kernel's counter maps into plain Python numbers (summed over CPUs)."""

from __future__ import annotations

import builtins
import ctypes
from dataclasses import dataclass

from exporter.decoders.abi import STAT_SLOTS, DropKey, DropValue, NfVerdictKey, RpFilterKey
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


def read_percpu_counts(counter_map: Map) -> list[tuple[bytes, int]]:
    """(raw key, total over CPUs) of a per-CPU hash of u64 counters (the verdict maps)."""
    return [(k, sum(int.from_bytes(c, "little") for c in split_percpu(v, 8))) for k, v in counter_map.items()]


@dataclass(frozen=True)
class VerdictCounts:
    netfilter: list[tuple[int, int, str, int, int]]  # (family, hook, table, verdict, packets)
    rp_filter: list[tuple[bool, str, int]]  # (failed, interface, packets)
    route: list[tuple[int, int]]  # (return value, packets)


def read_verdicts(nf: Map, rpf: Map, route: Map) -> VerdictCounts:
    nf_out = []
    for kraw, n in read_percpu_counts(nf):
        k = NfVerdictKey.from_buffer_copy(kraw)
        nf_out.append((k.family, k.hook, k.table.decode(errors="replace"), k.verdict, n))
    rpf_out = []
    for kraw, n in read_percpu_counts(rpf):
        r = RpFilterKey.from_buffer_copy(kraw)
        rpf_out.append((bool(r.failed), r.ifname.decode(errors="replace"), n))
    route_out = [(int.from_bytes(k, "little", signed=True), n) for k, n in read_percpu_counts(route)]
    return VerdictCounts(nf_out, rpf_out, route_out)
