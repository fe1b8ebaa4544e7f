"""Names and attributes of the spans of a packet path: one root span per packet, one child span per hop.

A finished ``Path`` becomes a root span for the packet (named after its flow, e.g.
``UDP 10.0.1.5:4242 -> 10.0.2.9:53``) and one child span per hop. See docs/traces.md for the full
shape. This module says what the root span is called and what every span carries (a hop's span
name comes from the hop table: ``exporter.model.hops.span_name``); ``exporter.traces.encode``
writes them as OTLP, and ``exporter.traces.ids`` derives the packet's trace id.
"""

from __future__ import annotations

from opentelemetry.util.types import AttributeValue

from exporter.model import hops
from exporter.model import vocabulary as names
from exporter.model.path import Hop, HopEvent, Outcome, PacketHeader, Path

__all__ = [
    "CPU_ATTRIBUTE",
    "SKB_LEN_ATTRIBUTE",
    "drop_reason",
    "flow_key",
    "hop_attributes",
    "root_attributes",
    "root_span_name",
]


IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = (
    names.IPPROTO_ICMP,
    names.IPPROTO_TCP,
    names.IPPROTO_UDP,
    names.IPPROTO_ICMPV6,
)
_UNKNOWN_REASON = hops.UNKNOWN_REASON

FlowKey = tuple[int, str, str, int, int, int]
CPU_ATTRIBUTE = "pktpath.cpu"
SKB_LEN_ATTRIBUTE = "pktpath.skb.len"


# --- names and attributes --------------------------------------------------------------------


def _protocol_name(header: PacketHeader) -> str:
    return names.TRUNCATED if header.truncated else names.ip_protocol_name(header.protocol)


def _is_icmp(header: PacketHeader) -> bool:
    return header.protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6)


def _endpoint(address: str, port: int, family: int) -> str:
    if not port:
        return address
    return f"[{address}]:{port}" if family == 6 else f"{address}:{port}"


def root_span_name(header: PacketHeader) -> str:
    """``UDP 10.0.1.5:4242 -> 10.0.2.9:53``, ``TCP [2001:db8::1]:443 -> ...``, ``ICMP a -> b echo-request``;
    ``IPv4 header cut short (10 bytes)`` for a packet too short for its IP header."""
    if header.truncated:
        return f"IPv{header.family} header cut short ({header.length} bytes)"
    shown = names.protocol_display(header.protocol)
    if _is_icmp(header):
        return f"{shown} {header.src} -> {header.dst} {names.icmp_type_name(header.protocol, header.icmp_type)}"
    src = _endpoint(header.src, header.sport, header.family)
    dst = _endpoint(header.dst, header.dport, header.family)
    return f"{shown} {src} -> {dst}"


def drop_reason(path: Path) -> str:
    """The reason the path's packet was dropped, as its root span names it."""
    if path.drop_reason:
        return path.drop_reason
    return next((h.reason for h in path.hops if h.hop is Hop.DROP and h.reason), _UNKNOWN_REASON)


def root_attributes(path: Path, header: PacketHeader) -> dict[str, AttributeValue]:
    if header.truncated:
        # Nothing but the family and the bytes present is known, and nothing else is made up.
        return {
            "network.type": "ipv6" if header.family == 6 else "ipv4",
            "pktpath.ip.protocol": names.TRUNCATED,
            "pktpath.ip.truncated": True,
            "pktpath.ip.length": header.length,
            "pktpath.outcome": path.outcome.value,
            "pktpath.sampled_by": path.sampled_by.value,
            "pktpath.hop_count": len(path.hops),
            **({"pktpath.drop_reason": drop_reason(path)} if path.outcome is Outcome.DROPPED else {}),
        }
    attrs: dict[str, AttributeValue] = {
        "source.address": header.src,
        "destination.address": header.dst,
        "network.type": "ipv6" if header.family == 6 else "ipv4",
        "pktpath.ip.protocol": _protocol_name(header),
    }
    if header.no_transport:
        attrs["pktpath.ip.no_transport"] = True
    if header.sport:
        attrs["source.port"] = header.sport
    if header.dport:
        attrs["destination.port"] = header.dport
    # Semantic conventions: network.transport is tcp, udp, quic, pipe or unix; other IP protocols
    # are only named in pktpath.ip.protocol.
    if header.protocol == IPPROTO_TCP:
        attrs["network.transport"] = "tcp"
    elif header.protocol == IPPROTO_UDP:
        attrs["network.transport"] = "udp"
    attrs["pktpath.outcome"] = path.outcome.value
    if path.outcome is Outcome.DROPPED:
        attrs["pktpath.drop_reason"] = drop_reason(path)
    attrs["pktpath.sampled_by"] = path.sampled_by.value
    attrs["pktpath.hop_count"] = len(path.hops)
    attrs["pktpath.ip.ttl"] = header.ttl
    attrs["pktpath.ip.tos"] = header.tos
    attrs["pktpath.ip.length"] = header.length
    if header.family == 4:
        attrs["pktpath.ip.id"] = header.ip_id
    if header.protocol == IPPROTO_TCP:
        attrs["pktpath.tcp.flags"] = names.tcp_flags_text(header.tcp_flags)
        attrs["pktpath.tcp.seq"] = header.tcp_seq
    if _is_icmp(header):
        attrs["pktpath.icmp.type"] = header.icmp_type
        attrs["pktpath.icmp.code"] = header.icmp_code
    return attrs


def hop_attributes(hop: HopEvent, path_drop_reason: str | None) -> dict[str, AttributeValue]:
    """A hop span's attributes: from the hop and its path's drop reason only. The encoder reuses them
    for later hops alike (exporter.traces.encode), so they must depend on nothing else of the path."""
    attrs: dict[str, AttributeValue] = {"pktpath.hop": hop.hop.value}
    if hop.ifname:
        attrs["network.interface.name"] = hop.ifname
    if hop.ifindex:
        attrs["pktpath.ifindex"] = hop.ifindex
    attrs["pktpath.netns"] = hop.netns
    attrs["pktpath.verdict"] = hop.verdict
    # These two next to each other: they differ from packet to packet of a flow, and the encoder
    # writes them per span between the hop's cached attributes (exporter.traces.encode).
    attrs[CPU_ATTRIBUTE] = hop.cpu
    attrs[SKB_LEN_ATTRIBUTE] = hop.length
    if hop.hop is Hop.DROP:
        attrs["pktpath.drop_reason"] = hop.reason or path_drop_reason or _UNKNOWN_REASON
    elif hop.hop is Hop.FIB_LOOKUP:
        attrs["pktpath.fib.table"] = hop.table
        attrs["pktpath.fib.result"] = names.route_result(hop.verdict)
        if hop.fib_lookup is not None:
            attrs["pktpath.fib.lookup"] = hop.fib_lookup.value
        if hop.out_ifname:
            attrs["pktpath.fib.oif"] = hop.out_ifname
    return attrs


def flow_key(header: PacketHeader) -> FlowKey:
    return (header.family, header.src, header.dst, header.protocol, header.sport, header.dport)
