"""Paths as the original linux-packet-tracer printed them: numbered hops, one decoded line each.

    0,tracepoint netif_receive_skb(eth0):
        222.186.19.243->10.128.0.9, tos:0x0, ttl:55, protocol:UDP(0x11), total_len:160
    1,tracepoint fib_table_lookup:
        ip route lookup: dst(10.128.0.9), src(222.186.19.243), iif(eth0), found route -> eth1 (table main)
    2,tracepoint kfree_skb(eth1):
        Dropped: NETFILTER_DROP at nft_do_chain+0x3c2

Where the original guessed ("Dropped or Skb destroyed"), this says what the kernel said: the
drop reason and the function that dropped it.  rp_filter's verdict is read from its reverse
route lookup (a lookup towards the packet's source), so it shows on tracepoint-only kernels too.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from exporter.decoders import netfilter as nf
from exporter.decoders.protocols import TRUNCATED
from exporter.paths import describe
from exporter.paths.model import Hop, HopEvent, Path, route_result

PROTOCOLS = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 51: "AH", 58: "ICMPv6", 132: "SCTP"}
ICMP_TYPES = {0: "Echo Reply", 3: "Destination Unreachable", 5: "Redirect", 8: "Echo Request",
              11: "Time Exceeded", 12: "Parameter Problem", 13: "Timestamp", 14: "Timestamp Reply"}
ICMPV6_TYPES = {1: "Destination Unreachable", 2: "Packet Too Big", 3: "Time Exceeded", 4: "Parameter Problem",
                128: "Echo Request", 129: "Echo Reply", 133: "Router Solicitation", 134: "Router Advertisement",
                135: "Neighbor Solicitation", 136: "Neighbor Advertisement"}
TCP_FLAGS = ((0x01, "FIN"), (0x02, "SYN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"), (0x20, "URG"),
             (0x40, "ECE"), (0x80, "CWR"))


def protocol_text(proto: int) -> str:
    return f"{PROTOCOLS.get(proto, 'proto')}({proto:#x})"


def header_line(path: Path) -> str:
    h = path.header
    if h is None:
        return "(no header: the packet's first hop was not seen)"
    if h.truncated:
        return (f"IPv{h.family} header cut short: the packet holds {h.length} byte(s) from its network header "
                "(nothing past its end is shown)")
    text = (f"{h.src}->{h.dst}, tos:{h.tos:#x}, ttl:{h.ttl}, protocol:{protocol_text(h.protocol)}, "
            f"total_len:{h.length}")
    if h.no_transport:
        return text + ", no transport header (cut short, or not the first fragment)"
    if h.protocol in (6, 17, 132):
        text += f", sport:{h.sport}, dport:{h.dport}"
    if h.protocol == 6:
        flags = "|".join(name for bit, name in TCP_FLAGS if h.tcp_flags & bit) or "none"
        text += f", flags:{flags}, seq:{h.tcp_seq}"
    if h.protocol in (1, 58):
        names = ICMP_TYPES if h.protocol == 1 else ICMPV6_TYPES
        text += f", {names.get(h.icmp_type, 'type')}({h.icmp_type})(code:{h.icmp_code})"
    return text


def nf_line(ev: HopEvent) -> str:
    """The original's netfilter lines: "Will check NFPROTO_IPV4(2), NF_INET_PRE_ROUTING(0), ..."."""
    where = (f"{nf.NF_FAMILY_CONSTANTS.get(ev.nf_family, 'NFPROTO')}({ev.nf_family}), "
             f"{nf.NF_HOOK_CONSTANTS.get(ev.nf_hook, 'NF_INET')}({ev.nf_hook})")
    if ev.hop in (Hop.NF_CHAIN, Hop.IPT_TABLE):
        verdict = f"{nf.NF_VERDICT_CONSTANTS.get(ev.verdict, 'NF_VERDICT')}({ev.verdict})"
        return f"{ev.nf_table}/{ev.nf_chain}, {where}, check done, {verdict}"
    if ev.phase == 0:
        return f"Will check {where}, In_intf:{ev.ifname or 'unknown'}, Out_intf:{ev.out_ifname or 'unknown'}"
    result = "PASS" if ev.verdict == 1 else "DROP" if ev.verdict < 0 else "STOLEN/QUEUED"
    return f"{where}, check done, {result}"


def hop_line(path: Path, index: int, symbol: Callable[[int], str],
             route_label: Callable[[int, int], str] | None = None) -> str:
    ev = path.hops[index]
    if index == 0 and path.header is not None:
        return header_line(path)
    h = path.header
    if ev.hop in (Hop.NF_HOOK, Hop.NF_CHAIN, Hop.IPT_TABLE):
        return nf_line(ev)
    if describe.is_rp_filter(ev):
        iif = ev.ifname or describe.receiving_device(path, index)
        return (f"rp_filter check: src({h.src if h else '?'}), iif({iif or 'unknown'}), "
                f"{describe.rp_filter_phrase(ev, iif)}")
    if ev.hop is Hop.ROUTE_INPUT:
        result = route_label(ev.verdict, ev.route_error) if route_label else str(ev.verdict or ev.route_error)
        found = "found route" if result == "found" else f"no route ({result})"
        return (f"ip route lookup: dst({h.dst if h else '?'}), src({h.src if h else '?'}), "
                f"iif({ev.ifname or 'unknown'}), {found}")
    if ev.hop is Hop.IP_RCV:
        return f"IP receive on {ev.ifname or 'unknown'}, len:{ev.length}"
    if ev.hop is Hop.IP_FORWARD:
        return f"forwarding (ip_forward), len:{ev.length}"
    if ev.hop is Hop.LOCAL_DELIVER:
        return "local delivery (ip_local_deliver)"
    if ev.hop is Hop.IP_OUTPUT:
        return f"IP output, len:{ev.length}"
    if ev.hop is Hop.IP_RCV_FINISH:
        return f"IP receive finish (past PRE_ROUTING) on {ev.ifname or 'unknown'}"
    if ev.hop is Hop.IP_FORWARD_FINISH:
        return f"forward finish (past FORWARD), len:{ev.length}"
    if ev.hop is Hop.IP_QUEUE_XMIT:
        return f"socket queued the segment to IP (ip_queue_xmit), len:{ev.length}"
    if ev.hop is Hop.IP_FINISH_OUTPUT:
        return f"IP finish output (past POST_ROUTING), len:{ev.length}"
    if ev.hop is Hop.FIB_LOOKUP:
        return fib_line(ev, describe.receiving_device(path, index) or "unknown")
    if ev.hop is Hop.NETIF_RECEIVE:
        return f"received on {ev.ifname or 'unknown'} (netns {ev.netns}), len:{ev.length}"
    if ev.hop is Hop.DEV_QUEUE:
        return f"queued for transmit on {ev.ifname or 'unknown'}, len:{ev.length}"
    if ev.hop is Hop.DEV_XMIT:
        rc = "NETDEV_TX_OK(0)" if ev.verdict == 0 else f"NETDEV_TX_BUSY({ev.verdict})" if ev.verdict == 16 \
            else f"error({ev.verdict})"
        return f"transmitted by {ev.ifname or 'unknown'}, rc:{rc}"
    if ev.hop is Hop.DELIVER:
        return "delivered: payload copied to a local socket"
    if ev.hop is Hop.SOCK_QUEUE:
        return f"delivered: queued to a local socket (port {ev.verdict})"
    where = symbol(ev.location)
    at = f" at {where}" if where else ""
    if ev.hop is Hop.CONSUME:
        return f"consumed (freed after normal processing){at}"
    return f"Dropped: {ev.reason or 'UNKNOWN'}{at}"


def fib_line(ev: HopEvent, iif: str) -> str:
    """The packet's own route lookup (its reverse lookup for rp_filter is an rp_filter line)."""
    result = "found route" if ev.verdict == 0 else f"{route_result(ev.verdict)} route"
    if ev.verdict == 0 and ev.out_ifname:
        result += f" -> {ev.out_ifname}"
    if ev.verdict in (-errno.EAGAIN, -errno.ENETUNREACH):
        result = "no route"
    return (f"ip route lookup: dst({ev.fib_dst}), src({ev.fib_src or '0.0.0.0'}), iif({iif}), "
            f"{result} (table {describe.table_name(ev.table)})")


def hop_title(ev: HopEvent, modes: dict[str, str]) -> str:
    mode = modes.get(ev.hop.value, "tracepoint")
    dev = f"({ev.ifname})" if ev.ifname and ev.hop is not Hop.FIB_LOOKUP else ""
    return f"{mode} {ev.hop.value}{dev}"


def summary_line(path: Path) -> str:
    h = path.header
    what = "?"
    if h is not None and h.truncated:
        what = f"IPv{h.family} (header cut short)"
    elif h is not None:
        ports = f":{h.sport} -> {h.dst}:{h.dport}" if h.protocol in (6, 17, 132) else f" -> {h.dst}"
        what = f"{PROTOCOLS.get(h.protocol, str(h.protocol))} {h.src}{ports}"
    end = f"DROPPED: {path.drop_reason}" if path.drop_reason else path.outcome.value
    return f"{what}, {end}, {len(path.hops)} hops, {path.duration_ns / 1000:.0f} us"


def render_path(number: int, path: Path, modes: dict[str, str], symbol: Callable[[int], str],
                route_label: Callable[[int, int], str] | None = None) -> str:
    lines = [f"packet {number}: {summary_line(path)}"]
    for i, ev in enumerate(path.hops):
        lines.append(f"{i},{hop_title(ev, modes)}:")
        lines.append(f"    {hop_line(path, i, symbol, route_label)}")
    return "\n".join(lines)


def path_json(number: int, path: Path, modes: dict[str, str], symbol: Callable[[int], str],
              route_label: Callable[[int, int], str] | None = None) -> dict[str, Any]:
    h = path.header
    return {
        "packet": number,
        "src": h.src if h and not h.truncated else None,
        "dst": h.dst if h and not h.truncated else None,
        "protocol": (TRUNCATED if h.truncated else PROTOCOLS.get(h.protocol, str(h.protocol)).lower()) if h else None,
        "sport": h.sport if h else None,
        "dport": h.dport if h else None,
        "outcome": path.outcome.value,
        "drop_reason": path.drop_reason,
        "sampled_by": path.sampled_by.value,
        "duration_ns": path.duration_ns,
        "hops": [
            {"index": i, "hop": ev.hop.value, "mode": modes.get(ev.hop.value, "tracepoint"),
             "interface": ev.ifname or None, "netns": ev.netns, "ts_ns": ev.ts_ns, "cpu": ev.cpu,
             "detail": hop_line(path, i, symbol, route_label)}
            for i, ev in enumerate(path.hops)
        ],
    }
