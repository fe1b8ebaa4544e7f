"""ctypes mirrors of exporter/bpf/pktpath.h.

The C header is the source of truth.  `check_against(btf)` compares every
mirror with the struct of the same name in the compiled object's BTF (size and
member offsets) and is called when the engine opens the object, so a header
change that forgets this file fails at start-up with a message naming the
field, not with silently garbled counters.
"""

from __future__ import annotations

import ctypes
from typing import Protocol

from exporter.errors import KernelError


class DropKey(ctypes.Structure):
    _fields_ = [
        ("ifname", ctypes.c_char * 16),
        ("reason", ctypes.c_uint32),
        ("ifindex", ctypes.c_uint32),
        ("netns", ctypes.c_uint32),
        ("l3_proto", ctypes.c_uint16),
        ("l4_proto", ctypes.c_uint8),
        ("_pad", ctypes.c_uint8),
    ]


class DropValue(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


# enum pktpath_stat: slots of the `stats` per-CPU array.
STAT_DROP_MAP_FULL = 0
STAT_SLOTS = 1

MIRRORS: tuple[type[ctypes.Structure], ...] = (DropKey, DropValue)
_C_NAMES = {DropKey: "drop_key", DropValue: "drop_value"}


class _StructSource(Protocol):
    def struct_layout(self, name: str) -> tuple[int, list[tuple[str, int]]] | None: ...

    def enum(self, name: str) -> list[tuple[str, int]] | None: ...


def check_against(btf: _StructSource) -> None:
    """Raise KernelError if any mirror disagrees with the object's BTF."""
    for mirror in MIRRORS:
        cname = _C_NAMES[mirror]
        layout = btf.struct_layout(cname)
        if layout is None:
            raise KernelError(f"BPF object lacks struct {cname}: rebuild it (make build)")
        size, members = layout
        if size != ctypes.sizeof(mirror):
            raise KernelError(
                f"ABI mismatch: struct {cname} is {size} bytes in the BPF object, "
                f"{ctypes.sizeof(mirror)} in exporter/decoders/abi.py"
            )
        py = [(name, getattr(mirror, name).offset) for name, *_ in mirror._fields_]
        if py != members:
            raise KernelError(f"ABI mismatch: struct {cname} members {members} != abi.py {py}")
    stats = dict(btf.enum("pktpath_stat") or [])
    if stats.get("STAT__MAX") != STAT_SLOTS or stats.get("STAT_DROP_MAP_FULL") != STAT_DROP_MAP_FULL:
        raise KernelError(f"ABI mismatch: enum pktpath_stat {stats} != abi.py STAT_* constants")
