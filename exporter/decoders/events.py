"""Ring buffer records (struct hop_event) -> exporter.model.path.HopEvent.

Runs on the ring-polling thread for every sampled hop, so it does the least it
can: one struct unpack (its format derived from the ctypes mirror, so the
layout has one truth), dict look-ups for the hop and the names (interface
names and netfilter table/chain repeat), and address formatting only on the
first hop of a path (the only one carrying a header).
"""

from __future__ import annotations

import ctypes
import dataclasses
import ipaddress
import operator
import socket
import struct
from typing import Any

from exporter.decoders.drop_reasons import DropReasons
from exporter.model import abi, hops
from exporter.model import vocabulary as nf
from exporter.model.path import FibLookup, Hop, HopEvent, PacketHeader, SampledBy

EVENT_SIZE = ctypes.sizeof(abi.HopEventRaw)

_CODES: dict[Any, str] = {
    ctypes.c_uint64: "Q",
    ctypes.c_int64: "q",
    ctypes.c_uint32: "I",
    ctypes.c_int32: "i",
    ctypes.c_uint16: "H",
    ctypes.c_int16: "h",
    ctypes.c_uint8: "B",
    ctypes.c_int8: "b",
}


def _layout(struct_type: Any, prefix: str = "", base: int = 0) -> list[tuple[int, int, str, str]]:
    """(offset, size, struct code, dotted name) of every scalar or array member, nested structs flattened."""
    out: list[tuple[int, int, str, str]] = []
    for name, ctype in struct_type._fields_:
        offset = base + getattr(struct_type, name).offset
        if issubclass(ctype, ctypes.Structure):
            out += _layout(ctype, f"{prefix}{name}.", offset)
        elif issubclass(ctype, ctypes.Array):  # char/u8 arrays: raw bytes
            out.append((offset, ctypes.sizeof(ctype), f"{ctypes.sizeof(ctype)}s", prefix + name))
        else:
            out.append((offset, ctypes.sizeof(ctype), _CODES[ctype], prefix + name))
    return out


def _unpacker(struct_type: Any) -> tuple[struct.Struct, dict[str, int]]:
    """A struct.Struct that reads ``struct_type``'s C layout in one call, and each member's index in its tuple."""
    fmt, pos, index = ["<"], 0, {}
    for i, (offset, size, code, name) in enumerate(sorted(_layout(struct_type))):
        fmt.append(f"{offset - pos}x" if offset > pos else "")
        fmt.append(code)
        index[name] = i
        pos = offset + size
    unpacker = struct.Struct("".join(fmt))
    assert unpacker.size <= ctypes.sizeof(struct_type)
    return unpacker, index


_RAW, _F = _unpacker(abi.HopEventRaw)
_HOP, _IFINDEX, _IFNAME, _NETNS, _VERDICT, _REASON, _TABLE, _OUT_IFNAME = (
    _F[n]
    for n in (
        "hop",
        "ifindex",
        "ifname",
        "netns",
        "verdict",
        "reason",
        "table",
        "out_ifname",
    )
)
_FIB_FAMILY, _FIB_SADDR, _FIB_DADDR, _LOCATION, _NF_FAMILY, _NF_HOOK, _PHASE, _ROUTE_ERROR, _FLAGS, _DETAIL = (
    _F[n]
    for n in (
        "fib_family",
        "fib_saddr",
        "fib_daddr",
        "location",
        "nf_family",
        "nf_hook",
        "phase",
        "route_error",
        "flags",
        "detail",
    )
)
_NAME_CACHE_LIMIT = 1024


def _cstr(raw: bytes) -> str:
    return raw.partition(b"\0")[0].decode(errors="replace")


class DecodeError(ValueError):
    pass


def _addr(family: int, data: bytes) -> str:
    if family == 4:  # inet_ntop formats IPv4 exactly as ipaddress does, 15x faster
        return socket.inet_ntop(socket.AF_INET, data[:4])
    return str(ipaddress.IPv6Address(data))  # RFC 5952, as before (inet_ntop differs for ::a.b.c.d)


_FIB_LOOKUPS = {abi.FIB_ROUTE: FibLookup.ROUTE, abi.FIB_RP_FILTER: FibLookup.RP_FILTER}
_HEADER, _HF = _unpacker(abi.PktHeader)


_H_FAMILY, _H_FLAGS, _H_SADDR, _H_DADDR, _H_IP_LEN = (_HF[n] for n in ("family", "flags", "saddr", "daddr", "ip_len"))
# PacketHeader's fields from protocol to extra, in its order, by their names in struct pkt_header.
_HEADER_REST = (
    "protocol",
    "sport",
    "dport",
    "tos",
    "ttl",
    "ip_len",
    "ip_id",
    "tcp_flags",
    "tcp_seq",
    "icmp_type",
    "icmp_code",
    "extra",
)
_header_rest = operator.itemgetter(*(_HF[n] for n in _HEADER_REST))
if [f.name for f in dataclasses.fields(PacketHeader)][3:] != [
    *(n.replace("ip_len", "length") for n in _HEADER_REST),
    "truncated",
    "no_transport",
]:
    raise RuntimeError("exporter/decoders/events.py: _header builds PacketHeader positionally; update _HEADER_REST")


def decode_header(h: abi.PktHeader) -> PacketHeader:
    return _header(_HEADER.unpack_from(bytes(h)))


def _header(v: tuple[Any, ...]) -> PacketHeader:
    """A PacketHeader from struct pkt_header's fields, as _HEADER unpacks them."""
    family, flags = v[_H_FAMILY], v[_H_FLAGS]
    if flags & abi.HDR_TRUNCATED:
        # Only the family and the bytes present are known: the kernel read nothing past the end.
        return PacketHeader(
            family=family, src="", dst="", protocol=0, length=v[_H_IP_LEN], truncated=True, no_transport=True
        )
    src, dst = _addr(family, v[_H_SADDR]), _addr(family, v[_H_DADDR])
    return PacketHeader(*(family, src, dst, *_header_rest(v), False, bool(flags & abi.HDR_NO_L4)))


# A record's shape: its bytes from `location` up to the header, but its CPU and length. That is
# every field but the path id and time (before it), the packet header (after it), and the two that
# differ from packet to packet of a flow (its packets spread over CPUs and vary in size). Records
# of a flow's packets repeat their shapes hop for hop, so what the decoder makes of a shape (hop,
# names, addresses, drop reason) is cached under it.
_R = abi.HopEventRaw
_SHAPE_START, _CPU_AT, _LEN_AT, _SHAPE_END = _R.location.offset, _R.cpu.offset, _R.len.offset, _R.hdr.offset
# path id, time, CPU and length in one unpack
_PER_RECORD = struct.Struct(f"<QQ{_CPU_AT - 16}xI{_LEN_AT - _CPU_AT - 4}xI")
assert (_R.path_id.offset, _R.ts_ns.offset, _SHAPE_START) == (
    0,
    8,
    16,
) and _SHAPE_START < _CPU_AT < _LEN_AT < _SHAPE_END
_SHAPE_CACHE_LIMIT = 1024


def _shape_key(raw: bytes) -> bytes:
    return raw[_SHAPE_START:_CPU_AT] + raw[_CPU_AT + 4 : _LEN_AT] + raw[_LEN_AT + 4 : _SHAPE_END]


class EventDecoder:
    """Ring records to HopEvents. Not thread-safe: the ring-polling thread owns it."""

    def __init__(self, reasons: DropReasons) -> None:
        self.reasons = reasons
        self._names: dict[bytes, str] = {}  # NUL-padded names (interfaces, netfilter tables, chains) -> str
        # a record's shape (_shape_key) -> what _shape() makes of it
        self._shapes: dict[bytes, tuple[Hop, tuple[Any, ...], tuple[Any, ...], SampledBy, bool]] = {}

    def _name(self, raw: bytes) -> str:
        name = self._names.get(raw)
        if name is None:
            if len(self._names) >= _NAME_CACHE_LIMIT:
                self._names.clear()
            name = self._names[raw] = _cstr(raw)
        return name

    def decode(self, raw: bytes) -> HopEvent:
        if len(raw) < EVENT_SIZE:
            raise DecodeError(f"hop event of {len(raw)} bytes, expected {EVENT_SIZE}")
        shape = _shape_key(raw)
        known = self._shapes.get(shape)
        if known is None:
            known = self._shape(raw)
            if len(self._shapes) >= _SHAPE_CACHE_LIMIT:
                self._shapes.clear()
            self._shapes[shape] = known
        hop, device, fields, sampled_by, has_header = known
        path_id, ts_ns, cpu, length = _PER_RECORD.unpack_from(raw)
        header = _header(_HEADER.unpack_from(raw, _SHAPE_END)) if has_header else None
        return HopEvent(*(path_id, hop, ts_ns, cpu, *device, length, *fields, header, sampled_by))

    def _shape(self, raw: bytes) -> tuple[Hop, tuple[Any, ...], tuple[Any, ...], SampledBy, bool]:
        """What a record's shape decodes to: its hop; the HopEvent fields between cpu and length,
        then those from verdict to nf_chain, in their order; sampled_by; and whether the record
        carries the packet's header."""
        v = _RAW.unpack_from(raw)
        hop = hops.BY_ID.get(v[_HOP])
        if hop is None:
            raise DecodeError(f"unknown hop id {v[_HOP]}")
        flags = v[_FLAGS]
        detail = v[_DETAIL]
        fib = hop is Hop.FIB_LOOKUP
        device = (v[_IFINDEX], self._name(v[_IFNAME]), v[_NETNS])
        fields = (
            v[_VERDICT],
            self.reasons.at(v[_REASON], v[_LOCATION]) if hop is Hop.DROP else None,
            v[_TABLE],
            self._name(v[_OUT_IFNAME]),
            _addr(v[_FIB_FAMILY], v[_FIB_SADDR]) if fib else "",
            _addr(v[_FIB_FAMILY], v[_FIB_DADDR]) if fib else "",
            _FIB_LOOKUPS.get(v[_PHASE]) if fib else None,
            v[_LOCATION],
            v[_NF_FAMILY],
            v[_NF_HOOK],
            v[_PHASE],
            v[_ROUTE_ERROR],
            self._name(detail[:16]),
            self._name(detail[16:]) if hop is not Hop.IPT_TABLE else nf.builtin_chain(v[_NF_HOOK]),
        )
        sampled_by = SampledBy.DROP if flags & abi.EV_BY_DROP else SampledBy.RATE
        return hop, device, fields, sampled_by, bool(flags & abi.EV_HEADER)


# The order decode() passes a HopEvent's fields in: path_id, hop, ts_ns, cpu, the device (ifindex,
# ifname, netns), length, the rest of the shape (verdict to nf_chain), header, sampled_by.
_FIELD_ORDER = [
    "path_id",
    "hop",
    "ts_ns",
    "cpu",
    "ifindex",
    "ifname",
    "netns",
    "length",
    "verdict",
    "reason",
    "table",
    "out_ifname",
    "fib_src",
    "fib_dst",
    "fib_lookup",
    "location",
    "nf_family",
    "nf_hook",
    "phase",
    "route_error",
    "nf_table",
    "nf_chain",
    "header",
    "sampled_by",
]
if [f.name for f in dataclasses.fields(HopEvent)] != _FIELD_ORDER:
    raise RuntimeError("exporter/decoders/events.py: EventDecoder builds HopEvent positionally; update its order")
