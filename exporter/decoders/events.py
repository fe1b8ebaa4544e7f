"""Ring buffer records (struct hop_event) -> exporter.model.path.HopEvent.

Runs on the ring-polling thread for every sampled hop, so it does the least it
can: one struct unpack (its format derived from the ctypes mirror, so the
layout has one truth), dict look-ups for the hop and the names (interface
names and netfilter table/chain repeat), and address formatting only on the
first hop of a path (the only one carrying a header).
"""

from __future__ import annotations

import ctypes
import ipaddress
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
_PATH_ID, _HOP, _TS, _CPU, _IFINDEX, _IFNAME, _NETNS, _LEN, _VERDICT, _REASON, _TABLE, _OUT_IFNAME = (
    _F[n]
    for n in (
        "path_id",
        "hop",
        "ts_ns",
        "cpu",
        "ifindex",
        "ifname",
        "netns",
        "len",
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
_H = {name.removeprefix("hdr."): i for name, i in _F.items() if name.startswith("hdr.")}
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


def decode_header(h: abi.PktHeader) -> PacketHeader:
    return _header(_HEADER.unpack_from(bytes(h)), _HF)


def _header(v: tuple[Any, ...], i: dict[str, int]) -> PacketHeader:
    family, flags = v[i["family"]], v[i["flags"]]
    if flags & abi.HDR_TRUNCATED:
        # Only the family and the bytes present are known: the kernel read nothing past the end.
        return PacketHeader(
            family=family, src="", dst="", protocol=0, length=v[i["ip_len"]], truncated=True, no_transport=True
        )
    return PacketHeader(
        family=family,
        src=_addr(family, v[i["saddr"]]),
        dst=_addr(family, v[i["daddr"]]),
        protocol=v[i["protocol"]],
        sport=v[i["sport"]],
        dport=v[i["dport"]],
        tos=v[i["tos"]],
        ttl=v[i["ttl"]],
        length=v[i["ip_len"]],
        ip_id=v[i["ip_id"]],
        tcp_flags=v[i["tcp_flags"]],
        tcp_seq=v[i["tcp_seq"]],
        icmp_type=v[i["icmp_type"]],
        icmp_code=v[i["icmp_code"]],
        extra=v[i["extra"]],
        no_transport=bool(flags & abi.HDR_NO_L4),
    )


class EventDecoder:
    def __init__(self, reasons: DropReasons) -> None:
        self._reasons = reasons
        self._names: dict[bytes, str] = {}  # NUL-padded names (interfaces, netfilter tables, chains) -> str

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
        v = _RAW.unpack_from(raw)
        hop = hops.BY_ID.get(v[_HOP])
        if hop is None:
            raise DecodeError(f"unknown hop id {v[_HOP]}")
        flags = v[_FLAGS]
        header = _header(v, _H) if flags & abi.EV_HEADER else None
        detail = v[_DETAIL]
        fib = hop is Hop.FIB_LOOKUP
        return HopEvent(
            path_id=v[_PATH_ID],
            hop=hop,
            ts_ns=v[_TS],
            cpu=v[_CPU],
            ifindex=v[_IFINDEX],
            ifname=self._name(v[_IFNAME]),
            netns=v[_NETNS],
            length=v[_LEN],
            verdict=v[_VERDICT],
            reason=self._reasons.at(v[_REASON], v[_LOCATION]) if hop is Hop.DROP else None,
            table=v[_TABLE],
            out_ifname=self._name(v[_OUT_IFNAME]),
            fib_src=_addr(v[_FIB_FAMILY], v[_FIB_SADDR]) if fib else "",
            fib_dst=_addr(v[_FIB_FAMILY], v[_FIB_DADDR]) if fib else "",
            fib_lookup=_FIB_LOOKUPS.get(v[_PHASE]) if fib else None,
            location=v[_LOCATION],
            nf_family=v[_NF_FAMILY],
            nf_hook=v[_NF_HOOK],
            phase=v[_PHASE],
            route_error=v[_ROUTE_ERROR],
            nf_table=self._name(detail[:16]),
            nf_chain=self._name(detail[16:]) if hop is not Hop.IPT_TABLE else nf.builtin_chain(v[_NF_HOOK]),
            header=header,
            sampled_by=SampledBy.DROP if flags & abi.EV_BY_DROP else SampledBy.RATE,
        )
