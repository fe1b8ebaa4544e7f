"""Names and attributes of the spans of a packet path: one root span per packet, one child span per hop.

A finished ``Path`` becomes a root span for the packet (named after its flow, e.g.
``UDP 10.0.1.5:4242 -> 10.0.2.9:53``) and one child span per hop. See docs/traces.md for the full
shape. This module says what the spans are called and carry; ``exporter.traces.encode`` writes
them as OTLP, and ``exporter.traces.ids`` derives the packet's trace id.
"""

from __future__ import annotations

from opentelemetry.util.types import AttributeValue

from exporter.decoders import netfilter as nf
from exporter.decoders.protocols import ETH_P_IP, ETH_P_IPV6, protocol_label
from exporter.paths.model import Hop, HopEvent, Outcome, PacketHeader, Path
from exporter.traces.ids import TRACE_ID_BUCKET_NS, packet_trace_id  # noqa: F401 - moved there, still importable

__all__ = [
    "flow_key",
    "hop_attributes",
    "hop_span_name",
    "root_attributes",
    "root_span_name",
    "tcp_flags_text",
]


IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58

_UNKNOWN_REASON = "UNKNOWN"
_FIB_TABLES = {253: "default", 254: "main", 255: "local"}
_TCP_FLAGS = ((0x01, "FIN"), (0x02, "SYN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"), (0x20, "URG"),
              (0x40, "ECE"), (0x80, "CWR"))
_ICMP_TYPES = {
    0: "echo-reply",
    3: "destination-unreachable",
    4: "source-quench",
    5: "redirect",
    8: "echo-request",
    9: "router-advertisement",
    10: "router-solicitation",
    11: "time-exceeded",
    12: "parameter-problem",
    13: "timestamp",
    14: "timestamp-reply",
}
_ICMPV6_TYPES = {
    1: "destination-unreachable",
    2: "packet-too-big",
    3: "time-exceeded",
    4: "parameter-problem",
    128: "echo-request",
    129: "echo-reply",
    130: "multicast-listener-query",
    131: "multicast-listener-report",
    132: "multicast-listener-done",
    133: "router-solicitation",
    134: "router-advertisement",
    135: "neighbor-solicitation",
    136: "neighbor-advertisement",
    137: "redirect",
    143: "multicast-listener-report-v2",
}

FlowKey = tuple[int, str, str, int, int, int]


# --- names and attributes --------------------------------------------------------------------


def _protocol_name(header: PacketHeader) -> str:
    return protocol_label(ETH_P_IPV6 if header.family == 6 else ETH_P_IP, header.protocol)


def _is_icmp(header: PacketHeader) -> bool:
    return header.protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6)


def _icmp_type_name(header: PacketHeader) -> str:
    names = _ICMPV6_TYPES if header.protocol == IPPROTO_ICMPV6 else _ICMP_TYPES
    return names.get(header.icmp_type, f"type {header.icmp_type}")


def _endpoint(address: str, port: int, family: int) -> str:
    if not port:
        return address
    return f"[{address}]:{port}" if family == 6 else f"{address}:{port}"


def root_span_name(header: PacketHeader) -> str:
    """``UDP 10.0.1.5:4242 -> 10.0.2.9:53``, ``TCP [2001:db8::1]:443 -> ...``, ``ICMP a -> b echo-request``."""
    proto = _protocol_name(header)
    shown = "ICMPv6" if proto == "icmpv6" else proto.upper()
    if _is_icmp(header):
        return f"{shown} {header.src} -> {header.dst} {_icmp_type_name(header)}"
    src = _endpoint(header.src, header.sport, header.family)
    dst = _endpoint(header.dst, header.dport, header.family)
    return f"{shown} {src} -> {dst}"


def tcp_flags_text(flags: int) -> str:
    """``SYN|ACK``; ``NONE`` when no flag is set."""
    return "|".join(name for bit, name in _TCP_FLAGS if flags & bit) or "NONE"


def _fib_table_name(table: int) -> str:
    return _FIB_TABLES.get(table, str(table))


def _drop_reason(path: Path) -> str:
    if path.drop_reason:
        return path.drop_reason
    return next((h.reason for h in path.hops if h.hop is Hop.DROP and h.reason), _UNKNOWN_REASON)


def hop_span_name(hop: HopEvent) -> str:
    """``netif_receive_skb(eth0)``, ``fib lookup (table main, found -> eth1)``, ``DROPPED: NETFILTER_DROP`` ..."""
    kind = hop.hop
    if kind is Hop.FIB_LOOKUP:
        table = _fib_table_name(hop.table)
        if hop.verdict != 0:
            return f"fib lookup (table {table}, no route)"
        if hop.out_ifname:
            return f"fib lookup (table {table}, found -> {hop.out_ifname})"
        return f"fib lookup (table {table}, found)"
    if kind is Hop.DELIVER:
        return "deliver to socket"
    if kind is Hop.SOCK_QUEUE:
        return f"queued to socket (port {hop.verdict})"
    if kind is Hop.CONSUME:
        return "consume_skb"
    if kind is Hop.DROP:
        return f"DROPPED: {hop.reason or _UNKNOWN_REASON}"
    if kind in (Hop.NF_CHAIN, Hop.IPT_TABLE) and hop.nf_table:
        # Which table and chain decided, at a glance in a trace view: "ipt_do_table filter/INPUT: drop".
        return f"{kind.value} {hop.nf_table}/{hop.nf_chain}: {nf.verdict_name(hop.verdict)}"
    name = f"{kind.value}({hop.ifname})" if hop.ifname else kind.value
    if kind is Hop.DEV_XMIT and hop.verdict != 0:
        name += f" rc={hop.verdict}"
    return name


def root_attributes(path: Path, header: PacketHeader) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {
        "source.address": header.src,
        "destination.address": header.dst,
        "network.type": "ipv6" if header.family == 6 else "ipv4",
        "pktpath.ip.protocol": _protocol_name(header),
    }
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
        attrs["pktpath.drop_reason"] = _drop_reason(path)
    attrs["pktpath.sampled_by"] = path.sampled_by.value
    attrs["pktpath.hop_count"] = len(path.hops)
    attrs["pktpath.ip.ttl"] = header.ttl
    attrs["pktpath.ip.tos"] = header.tos
    attrs["pktpath.ip.length"] = header.length
    if header.family == 4:
        attrs["pktpath.ip.id"] = header.ip_id
    if header.protocol == IPPROTO_TCP:
        attrs["pktpath.tcp.flags"] = tcp_flags_text(header.tcp_flags)
        attrs["pktpath.tcp.seq"] = header.tcp_seq
    if _is_icmp(header):
        attrs["pktpath.icmp.type"] = header.icmp_type
        attrs["pktpath.icmp.code"] = header.icmp_code
    return attrs


def hop_attributes(hop: HopEvent, path: Path) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {"pktpath.hop": hop.hop.value}
    if hop.ifname:
        attrs["network.interface.name"] = hop.ifname
    if hop.ifindex:
        attrs["pktpath.ifindex"] = hop.ifindex
    attrs["pktpath.netns"] = hop.netns
    attrs["pktpath.cpu"] = hop.cpu
    attrs["pktpath.verdict"] = hop.verdict
    attrs["pktpath.skb.len"] = hop.length
    if hop.hop is Hop.DROP:
        attrs["pktpath.drop_reason"] = hop.reason or path.drop_reason or _UNKNOWN_REASON
    elif hop.hop is Hop.FIB_LOOKUP:
        attrs["pktpath.fib.table"] = hop.table
        attrs["pktpath.fib.result"] = "found" if hop.verdict == 0 else "no route"
        if hop.out_ifname:
            attrs["pktpath.fib.oif"] = hop.out_ifname
    return attrs


def flow_key(header: PacketHeader) -> FlowKey:
    return (header.family, header.src, header.dst, header.protocol, header.sport, header.dport)
