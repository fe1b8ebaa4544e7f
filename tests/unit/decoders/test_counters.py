"""Drop counters: the per-CPU hash and its slot cache add up, and forgetting a series retires its slots."""

from __future__ import annotations

import ctypes

from exporter.decoders.counters import DropCounterReader
from exporter.model import abi
from tests.fakes import struct_map


def key(ifname: bytes, reason: int, netns: int) -> bytes:
    return bytes(abi.DropKey(ifname=ifname, reason=reason, netns=netns, l3_proto=0x0800, l4_proto=17))


def value(packets: int, nbytes: int) -> bytes:
    return bytes(abi.DropValue(packets=packets, bytes=nbytes))


def claim(area: bytearray, index: int, k: bytes, packets: int, nbytes: int, state: str = "SLOT_CLAIMED") -> None:
    slot = abi.DropSlot(packets=packets, bytes=nbytes, state=abi.SLOT_STATES[state])
    ctypes.memmove(ctypes.addressof(slot.key), k, len(k))
    size = ctypes.sizeof(abi.DropSlot)
    area[index * size : (index + 1) * size] = bytes(slot)


def test_hash_and_slots_add_up_per_key() -> None:
    drops, slots = (
        struct_map("drop_counts", abi.DropKey, abi.DropValue, 8, percpu=True),
        struct_map("drop_slots", 4, abi.DropSlot, 8),
    )
    a, b = key(b"eth0", 12, 1), key(b"eth1", 3, 1)
    drops.set_percpu(a, [value(1, 100), value(2, 200)])
    drops.set_percpu(b, [value(0, 0), value(5, 500)])
    claim(slots.area, 0, a, 10, 1000)
    claim(slots.area, 3, a, 1, 100)
    claim(slots.area, 5, key(b"gone", 1, 9), 7, 700)  # a slot whose key is not in the hash: not counted
    counts = {c.ifname: (c.packets, c.bytes) for c in DropCounterReader(drops, slots).read()}
    assert counts == {"eth0": (14, 1400), "eth1": (5, 500)}


def test_forgetting_a_series_deletes_it_and_retires_its_slots_over_two_reads() -> None:
    drops, slots = (
        struct_map("drop_counts", abi.DropKey, abi.DropValue, 8, percpu=True),
        struct_map("drop_slots", 4, abi.DropSlot, 8),
    )
    a, b = key(b"eth0", 12, 1), key(b"eth1", 12, 2)
    drops.set_percpu(a, [value(1, 1)])
    drops.set_percpu(b, [value(1, 1)])
    claim(slots.area, 2, a, 4, 4)
    reader = DropCounterReader(drops, slots)
    gone = [c for c in reader.read() if c.netns == 1]
    assert reader.forget(gone) == 1
    assert [c.ifname for c in reader.read()] == ["eth1"]
    state_at = 2 * ctypes.sizeof(abi.DropSlot) + abi.DropSlot.state.offset
    # Retired and zeroed by the forget, free again after the next read: never counted twice.
    reader.read()
    assert int.from_bytes(slots.area[state_at : state_at + 4], "little") == abi.SLOT_STATES["SLOT_FREE"]
