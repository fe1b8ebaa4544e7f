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
from exporter.model import hops


class DropKey(ctypes.Structure):
    _fields_ = [
        ("ifname", ctypes.c_char * 16),
        ("location", ctypes.c_uint64),  # kfree_skb call site, kernels without drop reasons only
        ("reason", ctypes.c_uint32),  # kernels without drop reasons: DROP_EVIDENCE_* instead
        ("ifindex", ctypes.c_uint32),
        ("netns", ctypes.c_uint32),
        ("l3_proto", ctypes.c_uint16),
        ("l4_proto", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
    ]


class DropValue(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


class DropSlot(ctypes.Structure):
    _fields_ = [
        ("key", DropKey),
        ("packets", ctypes.c_uint64),
        ("bytes", ctypes.c_uint64),
        ("state", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


# enum drop_slot_state
SLOT_STATES = {"SLOT_FREE": 0, "SLOT_CLAIMED": 1, "SLOT_RETIRED": 2}


class PktHeader(ctypes.Structure):
    _fields_ = [
        ("extra", ctypes.c_uint64),
        ("saddr", ctypes.c_uint8 * 16),
        ("daddr", ctypes.c_uint8 * 16),
        ("tcp_seq", ctypes.c_uint32),
        ("sport", ctypes.c_uint16),
        ("dport", ctypes.c_uint16),
        ("ip_len", ctypes.c_uint16),
        ("ip_id", ctypes.c_uint16),
        ("family", ctypes.c_uint8),
        ("protocol", ctypes.c_uint8),
        ("tos", ctypes.c_uint8),
        ("ttl", ctypes.c_uint8),
        ("tcp_flags", ctypes.c_uint8),
        ("icmp_type", ctypes.c_uint8),
        ("icmp_code", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
    ]


class HopEventRaw(ctypes.Structure):
    _fields_ = [
        ("path_id", ctypes.c_uint64),
        ("ts_ns", ctypes.c_uint64),
        ("location", ctypes.c_uint64),
        ("hop", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("ifindex", ctypes.c_uint32),
        ("netns", ctypes.c_uint32),
        ("len", ctypes.c_uint32),
        ("verdict", ctypes.c_int32),
        ("reason", ctypes.c_uint32),
        ("table", ctypes.c_uint32),
        ("flags", ctypes.c_uint8),
        ("nf_family", ctypes.c_uint8),
        ("nf_hook", ctypes.c_uint8),
        ("phase", ctypes.c_uint8),
        ("fib_family", ctypes.c_uint8),
        ("_pad", ctypes.c_uint8),
        ("route_error", ctypes.c_int16),
        ("fib_saddr", ctypes.c_uint8 * 16),
        ("fib_daddr", ctypes.c_uint8 * 16),
        ("ifname", ctypes.c_char * 16),
        ("out_ifname", ctypes.c_char * 16),
        ("detail", ctypes.c_char * 32),
        ("hdr", PktHeader),
    ]


class NfVerdictKey(ctypes.Structure):
    _fields_ = [
        ("family", ctypes.c_uint8),
        ("hook", ctypes.c_uint8),
        ("verdict", ctypes.c_uint8),
        ("_pad", ctypes.c_uint8),
        ("table", ctypes.c_char * 32),
    ]


class RouteKey(ctypes.Structure):
    _fields_ = [("ret", ctypes.c_int32), ("route_error", ctypes.c_int32)]


class RpFilterKey(ctypes.Structure):
    _fields_ = [
        ("failed", ctypes.c_uint8),
        ("_pad", ctypes.c_uint8 * 3),
        ("ret", ctypes.c_int32),
        ("ifname", ctypes.c_char * 16),
    ]


# Filter capacities (#defines of pktpath.h; tests/unit/model/test_abi.py checks them against the header and
# the compiled maps).  Config validation enforces them (exporter/config/schema.py).
FILTER_GENERATIONS = 2
MAX_PORT_RANGES = 16
MAX_FILTER_CIDRS = 1024  # per generation, filter_src and filter_dst each
MAX_FILTER_IFACES = 256  # per generation


class PortRange(ctypes.Structure):
    _fields_ = [("lo", ctypes.c_uint16), ("hi", ctypes.c_uint16)]


class PathConfig(ctypes.Structure):
    _fields_ = [
        ("enabled", ctypes.c_uint32),
        ("one_in", ctypes.c_uint32),
        ("drop_one_in", ctypes.c_uint32),
        ("max_paths", ctypes.c_uint32),
        ("filter_flags", ctypes.c_uint32),
        ("n_port_ranges", ctypes.c_uint32),
        ("ports", PortRange * MAX_PORT_RANGES),
        ("protocols", ctypes.c_uint8 * 32),
        ("sample_below", ctypes.c_uint64),
        ("drop_sample_below", ctypes.c_uint64),
        ("max_drop_paths", ctypes.c_uint32),
        ("generation", ctypes.c_uint32),
        ("windowed", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class PathWindow(ctypes.Structure):
    """The one entry of `path_window`: the armed sampling window (sample_below 0: none)."""

    _fields_ = [
        ("sample_below", ctypes.c_uint64),
        ("open_ns", ctypes.c_uint64),
        ("close_ns", ctypes.c_uint64),
        ("one_in", ctypes.c_uint32),
        ("number", ctypes.c_uint32),
        ("max_paths", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


# Budget windows are 2**BUDGET_WINDOW_SHIFT ns (pktpath.h).
BUDGET_WINDOW_SHIFT = 30


class Track(ctypes.Structure):
    """Value of the `tracked` hash (key: the skb pointer, u64)."""

    _fields_ = [
        ("path_id", ctypes.c_uint64),
        ("ident", ctypes.c_uint64),
        ("flow", ctypes.c_uint64),
        ("born_ns", ctypes.c_uint64),
        ("seen_ns", ctypes.c_uint64),
        ("netns", ctypes.c_uint32),
        ("flags", ctypes.c_uint8),
        ("_pad", ctypes.c_uint8 * 3),
    ]


class OwnEndpoint(ctypes.Structure):
    """Key of `own_endpoints`: one end of the agent's own connections (never followed)."""

    _fields_ = [
        ("netns", ctypes.c_uint32),
        ("family", ctypes.c_uint8),
        ("protocol", ctypes.c_uint8),
        ("port", ctypes.c_uint16),
        ("addr", ctypes.c_uint8 * 16),
    ]


# enum path_gate_slot
GATE_SLOTS = {"GATE_LIVE": 0, "GATE_REAPED": 1, "GATE__MAX": 2}


class LpmKey(ctypes.Structure):
    _fields_ = [
        ("prefixlen", ctypes.c_uint32),
        ("generation", ctypes.c_uint8),
        ("addr", ctypes.c_uint8 * 16),
        ("_pad", ctypes.c_uint8 * 3),
    ]


class IfaceKey(ctypes.Structure):
    _fields_ = [("generation", ctypes.c_uint32), ("name", ctypes.c_char * 16)]


# #defines of pktpath.h (not in BTF: kept in step by tests/unit/model/test_abi.py reading the header).
EV_HEADER = 0x1
EV_BY_DROP = 0x2
DROP_KEY_TRUNCATED = 0x1
HDR_TRUNCATED = 0x1
HDR_NO_L4 = 0x2
FIB_ROUTE = 0
FIB_RP_FILTER = 1
# What the kfree_skb program reports in place of a reason where the kernel gives none (before 5.17).
DROP_EVIDENCE_ERRNO, DROP_EVIDENCE_IN_DEV, DROP_EVIDENCE_FORWARDING = 0xFF, 0x100, 0x200
FILTER_SRC, FILTER_DST, FILTER_PROTO, FILTER_PORT, FILTER_IFACE = 0x1, 0x2, 0x4, 0x8, 0x10

# enum pktpath_stat: slots of the `stats` per-CPU array, in order (checked against BTF).
STATS = (
    "STAT_DROP_MAP_FULL",
    "STAT_RING_FULL",
    "STAT_PATH_BUDGET",
    "STAT_TRACK_INSERT",
    "STAT_TRACK_DELETE",
    "STAT_TRACK_FULL",
    "STAT_TRACK_STALE",
    "STAT_SAMPLED_RATE",
    "STAT_SAMPLED_DROP",
    "STAT_VERDICT_MAP_FULL",
    "STAT_STASH_MISMATCH",
    "STAT_DROP_BUDGET",
)
STAT_DROP_MAP_FULL = STATS.index("STAT_DROP_MAP_FULL")
STAT_SLOTS = len(STATS)

# enum hop_id values (checked against BTF): numbered in the hop table's order.
HOP_IDS = hops.HOP_IDS

MIRRORS: tuple[type[ctypes.Structure], ...] = (
    DropKey,
    DropValue,
    DropSlot,
    PktHeader,
    HopEventRaw,
    PathConfig,
    PathWindow,
    Track,
    OwnEndpoint,
    LpmKey,
    IfaceKey,
    NfVerdictKey,
    RpFilterKey,
    RouteKey,
)
_C_NAMES = {
    DropKey: "drop_key",
    DropValue: "drop_value",
    DropSlot: "drop_slot",
    PktHeader: "pkt_header",
    HopEventRaw: "hop_event",
    PathConfig: "path_config",
    PathWindow: "path_window",
    Track: "track",
    OwnEndpoint: "own_endpoint",
    LpmKey: "lpm_key",
    IfaceKey: "iface_key",
    NfVerdictKey: "nf_verdict_key",
    RpFilterKey: "rp_filter_key",
    RouteKey: "route_key",
}


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
                f"{ctypes.sizeof(mirror)} in exporter/model/abi.py"
            )
        py = [(name, getattr(mirror, name).offset) for name, *_ in mirror._fields_]
        if py != members:
            raise KernelError(f"ABI mismatch: struct {cname} members {members} != abi.py {py}")
    stats = dict(btf.enum("pktpath_stat") or [])
    expected = {name: i for i, name in enumerate(STATS)} | {"STAT__MAX": STAT_SLOTS}
    if stats != expected:
        raise KernelError(f"ABI mismatch: enum pktpath_stat {stats} != abi.py STATS {expected}")
    slot_states = dict(btf.enum("drop_slot_state") or [])
    if slot_states != SLOT_STATES:
        raise KernelError(f"ABI mismatch: enum drop_slot_state {slot_states} != abi.py SLOT_STATES {SLOT_STATES}")
    gate = dict(btf.enum("path_gate_slot") or [])
    if gate != GATE_SLOTS:
        raise KernelError(f"ABI mismatch: enum path_gate_slot {gate} != abi.py GATE_SLOTS {GATE_SLOTS}")
    hop_enum = dict(btf.enum("hop_id") or [])
    if hop_enum != HOP_IDS:
        raise KernelError(
            f"ABI mismatch: enum hop_id {hop_enum} != the hop table's HOP_IDS {dict(HOP_IDS)} (exporter/model/hops.py)"
        )
