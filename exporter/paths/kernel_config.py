"""Filter and sampling settings -> the kernel's path_config map and filter maps, live.

Everything the shell or a SIGHUP changes goes through apply(): programs are
never reloaded, so tracking continues across a change and nothing is detached.
Maps are updated in an order that never widens the filter for an instant:
the tries and interface set are updated first, the flags that turn them on
last; an entry removed from a trie only ever narrows what matches.
"""

from __future__ import annotations

import ctypes
import ipaddress
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from exporter.decoders import abi
from exporter.errors import ConfigError
from exporter.loader.libbpf import Map

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv4 addresses live in the tries as IPv4-mapped IPv6 (::ffff:a.b.c.d).
_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


@dataclass(frozen=True)
class PathSettings:
    """What the kernel needs to know, independent of where it came from (YAML, shell)."""

    enabled: bool
    one_in: int  # 0: no rate sampling
    drop_one_in: int  # 0: no drop capture
    max_paths_per_second: int  # 0: unlimited
    max_drop_paths_per_second: int = 100  # 0: unlimited
    src: tuple[Network, ...] = ()
    dst: tuple[Network, ...] = ()
    protocols: tuple[int, ...] = ()
    ports: tuple[tuple[int, int], ...] = ()
    interfaces: tuple[str, ...] = ()


def lpm_key(net: Network) -> bytes:
    key = abi.LpmKey()
    if net.version == 4:
        key.prefixlen = 96 + net.prefixlen
        raw = _V4_MAPPED_PREFIX + net.network_address.packed
    else:
        key.prefixlen = net.prefixlen
        raw = net.network_address.packed
    ctypes.memmove(key.addr, raw, 16)
    return bytes(key)


def below(one_in: int) -> int:
    """The kernel's 1-in-N test as a threshold on a uniform u32: 2^32 // N (0: never)."""
    return (1 << 32) // one_in if one_in else 0


def per_window(per_second: int) -> int:
    """A per-second budget as paths per kernel budget window (2^30 ns), rounded up (0: unlimited)."""
    return math.ceil(per_second * (1 << abi.BUDGET_WINDOW_SHIFT) / 1_000_000_000) if per_second else 0


def build_config(s: PathSettings) -> abi.PathConfig:
    if len(s.ports) > abi.MAX_PORT_RANGES:
        raise ConfigError(f"filter.ports: at most {abi.MAX_PORT_RANGES} entries (ports or ranges), "
                          f"got {len(s.ports)}")
    cfg = abi.PathConfig()
    cfg.enabled = int(s.enabled)
    cfg.one_in = s.one_in
    cfg.drop_one_in = s.drop_one_in
    cfg.sample_below = below(s.one_in)
    cfg.drop_sample_below = below(s.drop_one_in)
    cfg.max_paths = per_window(s.max_paths_per_second)
    cfg.max_drop_paths = per_window(s.max_drop_paths_per_second)
    flags = 0
    if s.src:
        flags |= abi.FILTER_SRC
    if s.dst:
        flags |= abi.FILTER_DST
    if s.protocols:
        flags |= abi.FILTER_PROTO
        for proto in s.protocols:
            cfg.protocols[proto >> 3] |= 1 << (proto & 7)
    if s.ports:
        flags |= abi.FILTER_PORT
        cfg.n_port_ranges = len(s.ports)
        for i, (lo, hi) in enumerate(s.ports):
            cfg.ports[i].lo, cfg.ports[i].hi = lo, hi
    if s.interfaces:
        flags |= abi.FILTER_IFACE
    cfg.filter_flags = flags
    return cfg


def _iface_key(name: str) -> bytes:
    return name.encode().ljust(16, b"\0")[:16]


class PathControl:
    def __init__(self, map_of: Callable[[str], Map]) -> None:
        self._map_of = map_of
        self.settings: PathSettings | None = None

    def apply(self, s: PathSettings) -> None:
        cfg = build_config(s)  # validates before touching the kernel
        self._sync_set(self._map_of("filter_src"), (lpm_key(n) for n in s.src))
        self._sync_set(self._map_of("filter_dst"), (lpm_key(n) for n in s.dst))
        self._sync_set(self._map_of("filter_ifaces"), (_iface_key(i) for i in s.interfaces))
        self._map_of("path_config").update((0).to_bytes(4, "little"), bytes(cfg))
        self.settings = s

    @staticmethod
    def _sync_set(m: Map, wanted_keys: Iterable[bytes]) -> None:
        wanted = set(wanted_keys)
        for key in m.keys():  # noqa: SIM118 - a BPF map, not a dict
            if key not in wanted:
                m.delete(key)
        for key in wanted:
            m.update(key, b"\x01")
