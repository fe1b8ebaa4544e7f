"""The kernel side's interface: what the agent's stages may ask of it (exporter/kernel/__init__.py).

Nothing here imports libbpf.  A stage takes the handles it needs (a MapHandle, an EventRing);
exporter/kernel/facade.py hands out the real ones, tests hand out fakes (tests/fakes.py).
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class MapHandle(Protocol):
    """One BPF map: keys and values are the raw bytes of the structs in exporter/model/abi.py."""

    @property
    def name(self) -> str: ...

    @property
    def key_size(self) -> int: ...

    @property
    def value_size(self) -> int: ...

    @property
    def max_entries(self) -> int: ...

    def lookup(self, key: bytes) -> bytes | None: ...

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None: ...

    def delete(self, key: bytes) -> bool: ...  # False: it was not there

    def keys(self) -> list[bytes]: ...

    # Per-CPU maps: each value is one value per possible CPU, each 8-byte aligned.
    def items(self) -> list[tuple[bytes, bytes]]: ...

    # A BPF_F_MMAPABLE array's values, shared with the kernel.
    def mmap(self) -> mmap.mmap | bytearray: ...


class EventRing(Protocol):
    """The events ring buffer: poll() hands each record to the consumer it was opened with."""

    def poll(self, timeout_ms: int) -> int: ...

    def close(self) -> None: ...


EventConsumer = Callable[[bytes], None]


@dataclass(frozen=True)
class ProbeState:
    """One attach candidate of one loader hop, for pktpath_probe_attached and `pktpath check`."""

    probe: str  # the loader's hop (program-name prefix)
    family: str  # fentry, kprobe, tracepoint
    attached: bool


def split_percpu(raw: bytes, value_size: int) -> list[bytes]:
    """Cut a per-CPU map value into one value per possible CPU (each 8-byte aligned)."""
    stride = ((value_size + 7) // 8) * 8
    return [raw[i : i + value_size] for i in range(0, len(raw), stride)]
