"""Ring buffer records (struct hop_event) -> exporter.model.path.HopEvent.

Runs on the ring-polling thread for every sampled hop, so it does the least it
can: one ctypes copy, a dict lookup for the hop, and address formatting only
on the first hop of a path (the only one carrying a header).
"""

from __future__ import annotations

import ctypes
import ipaddress

from exporter.decoders.drop_reasons import DropReasons
from exporter.model import abi, hops
from exporter.model import vocabulary as nf
from exporter.model.path import FibLookup, Hop, HopEvent, PacketHeader, SampledBy

EVENT_SIZE = ctypes.sizeof(abi.HopEventRaw)


# detail holds two NUL-padded names; the ctypes field would stop at the first NUL.
_DETAIL = abi.HopEventRaw.detail.offset


def _cstr(raw: bytes, offset: int, size: int) -> str:
    return raw[offset : offset + size].split(b"\0", 1)[0].decode(errors="replace")


class DecodeError(ValueError):
    pass


def _addr(family: int, raw: ctypes.Array[ctypes.c_uint8]) -> str:
    data = bytes(raw)
    return str(ipaddress.IPv4Address(data[:4]) if family == 4 else ipaddress.IPv6Address(data))


_FIB_LOOKUPS = {abi.FIB_ROUTE: FibLookup.ROUTE, abi.FIB_RP_FILTER: FibLookup.RP_FILTER}


def decode_header(h: abi.PktHeader) -> PacketHeader:
    if h.flags & abi.HDR_TRUNCATED:
        # Only the family and the bytes present are known: the kernel read nothing past the end.
        return PacketHeader(family=h.family, src="", dst="", protocol=0, length=h.ip_len, truncated=True,
                            no_transport=True)
    return PacketHeader(
        family=h.family, src=_addr(h.family, h.saddr), dst=_addr(h.family, h.daddr), protocol=h.protocol,
        sport=h.sport, dport=h.dport, tos=h.tos, ttl=h.ttl, length=h.ip_len, ip_id=h.ip_id,
        tcp_flags=h.tcp_flags, tcp_seq=h.tcp_seq, icmp_type=h.icmp_type, icmp_code=h.icmp_code, extra=h.extra,
        no_transport=bool(h.flags & abi.HDR_NO_L4),
    )


class EventDecoder:
    def __init__(self, reasons: DropReasons) -> None:
        self._reasons = reasons

    def decode(self, raw: bytes) -> HopEvent:
        if len(raw) < EVENT_SIZE:
            raise DecodeError(f"hop event of {len(raw)} bytes, expected {EVENT_SIZE}")
        ev = abi.HopEventRaw.from_buffer_copy(raw)
        hop = hops.BY_ID.get(ev.hop)
        if hop is None:
            raise DecodeError(f"unknown hop id {ev.hop}")
        header = decode_header(ev.hdr) if ev.flags & abi.EV_HEADER else None
        return HopEvent(
            path_id=ev.path_id,
            hop=hop,
            ts_ns=ev.ts_ns,
            cpu=ev.cpu,
            ifindex=ev.ifindex,
            ifname=ev.ifname.decode(errors="replace"),
            netns=ev.netns,
            length=ev.len,
            verdict=ev.verdict,
            reason=self._reasons.at(ev.reason, ev.location) if hop is Hop.DROP else None,
            table=ev.table,
            out_ifname=ev.out_ifname.decode(errors="replace"),
            fib_src=_addr(ev.fib_family, ev.fib_saddr) if hop is Hop.FIB_LOOKUP else "",
            fib_dst=_addr(ev.fib_family, ev.fib_daddr) if hop is Hop.FIB_LOOKUP else "",
            fib_lookup=_FIB_LOOKUPS.get(ev.phase) if hop is Hop.FIB_LOOKUP else None,
            location=ev.location,
            nf_family=ev.nf_family,
            nf_hook=ev.nf_hook,
            phase=ev.phase,
            route_error=ev.route_error,
            nf_table=_cstr(raw, _DETAIL, 16),
            nf_chain=_cstr(raw, _DETAIL + 16, 16) if hop is not Hop.IPT_TABLE else nf.builtin_chain(ev.nf_hook),
            header=header,
            sampled_by=SampledBy.DROP if ev.flags & abi.EV_BY_DROP else SampledBy.RATE,
        )
