"""Filter and sampling settings -> the kernel's path_config map and filter maps, live and atomically.

Everything the shell or a SIGHUP changes goes through apply(): programs are
never reloaded, so tracking continues across a change and nothing is detached.

The kernel keeps the filter in two generations (pktpath.h, FILTER_GENERATIONS):
path_config has one entry per generation, the trie and interface keys carry
the generation, and `path_generation` names the one in force.  apply() checks
every capacity, writes the generation not in force in full (keys, then its
path_config entry), and only then switches with one 4-byte store.  If the
kernel refuses any write before the switch, what was written is removed and
the running filter is untouched.  After the switch the old generation's keys
are deleted; a program that read the old generation just before the switch
can at worst miss a key being deleted, which narrows its match, never widens it.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import math
from dataclasses import dataclass

from exporter.config import Config
from exporter.errors import ConfigError, KernelError
from exporter.kernel.api import MapHandle
from exporter.model import abi

log = logging.getLogger(__name__)

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
    # Rate sampling only while a window is open, at the window's N (exporter/paths/windows.py);
    # False: always, at one_in (continuous mode, the shell, `pktpath trace`).
    windowed: bool = False

    @classmethod
    def from_config(cls, cfg: Config, enabled: bool) -> PathSettings:
        """The config's filter and sampling sections, for the kernel."""
        f, s = cfg.filter, cfg.sampling
        return cls(
            enabled=enabled,
            one_in=s.one_in,
            drop_one_in=s.drop_one_in,
            max_paths_per_second=s.max_paths_per_second,
            max_drop_paths_per_second=s.max_drop_paths_per_second,
            src=f.src,
            dst=f.dst,
            protocols=f.protocols,
            ports=f.ports,
            interfaces=f.interfaces,
            windowed=not s.continuous,
        )


def lpm_key(net: Network, generation: int) -> bytes:
    key = abi.LpmKey()
    key.generation = generation
    # The generation byte is the first 8 bits of every prefix (pktpath.h).
    if net.version == 4:
        key.prefixlen = 8 + 96 + net.prefixlen
        raw = _V4_MAPPED_PREFIX + net.network_address.packed
    else:
        key.prefixlen = 8 + net.prefixlen
        raw = net.network_address.packed
    ctypes.memmove(key.addr, raw, 16)
    return bytes(key)


def iface_key(name: str, generation: int) -> bytes:
    key = abi.IfaceKey()
    key.generation = generation
    key.name = name.encode()[:16]
    return bytes(key)


def below(one_in: int) -> int:
    """The kernel's 1-in-N test as a threshold on a uniform u32: 2^32 // N (0: never)."""
    return (1 << 32) // one_in if one_in else 0


def per_window(per_second: int) -> int:
    """A per-second budget as paths per kernel budget window (2^30 ns), rounded up (0: unlimited)."""
    return math.ceil(per_second * (1 << abi.BUDGET_WINDOW_SHIFT) / 1_000_000_000) if per_second else 0


def check_capacity(s: PathSettings) -> None:
    """ConfigError unless every list fits its kernel map (config validation checks the same for files;
    this covers settings from anywhere, the shell's included)."""
    for path, count, limit, where in (
        ("filter.src", len(set(s.src)), abi.MAX_FILTER_CIDRS, "the kernel's filter_src map"),
        ("filter.dst", len(set(s.dst)), abi.MAX_FILTER_CIDRS, "the kernel's filter_dst map"),
        ("filter.ports", len(s.ports), abi.MAX_PORT_RANGES, "the kernel's path_config.ports"),
        ("filter.interfaces", len(set(s.interfaces)), abi.MAX_FILTER_IFACES, "the kernel's filter_ifaces map"),
    ):
        if count > limit:
            raise ConfigError(f"{path}: {count} entries, more than the {limit} {where} holds")


def build_config(s: PathSettings, generation: int = 0) -> abi.PathConfig:
    check_capacity(s)
    cfg = abi.PathConfig()
    cfg.generation = generation
    cfg.enabled = int(s.enabled)
    cfg.one_in = s.one_in
    cfg.drop_one_in = s.drop_one_in
    cfg.sample_below = below(s.one_in)
    cfg.drop_sample_below = below(s.drop_one_in)
    cfg.windowed = int(s.windowed)
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


# Where a filter key holds its generation: (offset, size) in bytes.
_LPM_GENERATION = (abi.LpmKey.generation.offset, abi.LpmKey.generation.size)
_IFACE_GENERATION = (abi.IfaceKey.generation.offset, abi.IfaceKey.generation.size)
_ZERO = (0).to_bytes(4, "little")


@dataclass(frozen=True)
class FilterMaps:
    """The maps apply() writes (pktpath.h): per-generation config, the switch, the filter sets."""

    config: MapHandle  # path_config, one entry per generation
    generation: MapHandle  # path_generation: the one in force
    src: MapHandle  # filter_src LPM trie
    dst: MapHandle  # filter_dst LPM trie
    interfaces: MapHandle  # filter_ifaces

    def filter_sets(self) -> tuple[tuple[MapHandle, tuple[int, int]], ...]:
        """Each filter map, with where its keys hold their generation."""
        return ((self.src, _LPM_GENERATION), (self.dst, _LPM_GENERATION), (self.interfaces, _IFACE_GENERATION))


class PathControl:
    def __init__(self, maps: FilterMaps) -> None:
        self._maps = maps
        self.settings: PathSettings | None = None

    def active_generation(self) -> int:
        raw = self._maps.generation.lookup(_ZERO)
        return int.from_bytes(raw[:4], "little") if raw else 0

    def apply(self, s: PathSettings) -> None:
        """Put `s` in force at once, or raise (ConfigError, KernelError) with the running filter untouched."""
        active = self.active_generation()
        new = (active + 1) % abi.FILTER_GENERATIONS
        cfg = build_config(s, new)  # every capacity checked before the kernel is touched
        wanted_keys = (
            ("filter.src", [(str(n), lpm_key(n, new)) for n in s.src]),
            ("filter.dst", [(str(n), lpm_key(n, new)) for n in s.dst]),
            ("filter.interfaces", [(i, iface_key(i, new)) for i in s.interfaces]),
        )
        what = "filter"
        try:
            for (m, field), (path, wanted) in zip(self._maps.filter_sets(), wanted_keys, strict=True):
                # Left over by an apply the kernel refused half-way, if its cleanup failed too.
                self._clear(m, field, new)
                for text, key in wanted:
                    what = f"{path}: {text}"
                    m.update(key, b"\x01")
            what = "path_config"
            self._maps.config.update(new.to_bytes(4, "little"), bytes(cfg))
        except KernelError as exc:
            self._clear_all(new)
            raise KernelError(f"{what}: not applied, the filter in force is unchanged: {exc}") from exc
        # The switch: one 4-byte store; programs read it once per packet (paths.bpf.h: paths_config).
        self._maps.generation.update(_ZERO, new.to_bytes(4, "little"))
        self.settings = s
        self._clear_all(active)

    def _clear_all(self, generation: int) -> None:
        """Best effort: a key left behind is in a generation not in force, and the next apply
        that writes that generation deletes it first."""
        for m, field in self._maps.filter_sets():
            try:
                self._clear(m, field, generation)
            except KernelError as exc:
                log.warning("could not clear filter generation %d of %s: %s", generation, m.name, exc)

    @staticmethod
    def _clear(m: MapHandle, field: tuple[int, int], generation: int) -> None:
        offset, size = field
        for key in m.keys():  # noqa: SIM118 - a BPF map, not a dict
            if int.from_bytes(key[offset : offset + size], "little") == generation:
                m.delete(key)
