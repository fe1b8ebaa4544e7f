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

from typing import Any

from exporter.model import hops
from exporter.model import vocabulary as names
from exporter.model.hops import Hop, ShellContext
from exporter.model.path import HopEvent, Path


def protocol_text(proto: int) -> str:
    """ "UDP(0x11)", as the original tool wrote it."""
    return f"{names.protocol_display(proto)}({proto:#x})"


def header_line(path: Path) -> str:
    h = path.header
    if h is None:
        return "(no header: the packet's first hop was not seen)"
    if h.truncated:
        return (
            f"IPv{h.family} header cut short: the packet holds {h.length} byte(s) from its network header "
            "(nothing past its end is shown)"
        )
    text = f"{h.src}->{h.dst}, tos:{h.tos:#x}, ttl:{h.ttl}, protocol:{protocol_text(h.protocol)}, total_len:{h.length}"
    if h.no_transport:
        return text + ", no transport header (cut short, or not the first fragment)"
    if h.protocol in names.PORT_PROTOCOLS:
        text += f", sport:{h.sport}, dport:{h.dport}"
    if h.protocol == names.IPPROTO_TCP:
        text += f", flags:{names.tcp_flags_text(h.tcp_flags, none='none')}, seq:{h.tcp_seq}"
    if h.protocol in (names.IPPROTO_ICMP, names.IPPROTO_ICMPV6):
        known = h.icmp_type in (names.ICMPV6_TYPES if h.protocol == names.IPPROTO_ICMPV6 else names.ICMP_TYPES)
        shown = names.title(names.icmp_type_name(h.protocol, h.icmp_type)) if known else "type"
        text += f", {shown}({h.icmp_type})(code:{h.icmp_code})"
    return text


def hop_line(path: Path, index: int, ctx: ShellContext) -> str:
    """Hop `index`'s line: the packet's header for its first hop, else the hop table's line."""
    if index == 0 and path.header is not None:
        return header_line(path)
    return hops.shell_line(path, index, ctx)


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
        ports = f":{h.sport} -> {h.dst}:{h.dport}" if h.protocol in names.PORT_PROTOCOLS else f" -> {h.dst}"
        what = f"{names.protocol_display(h.protocol)} {h.src}{ports}"
    end = f"DROPPED: {path.drop_reason}" if path.drop_reason else path.outcome.value
    return f"{what}, {end}, {len(path.hops)} hops, {path.duration_ns / 1000:.0f} us"


def render_path(number: int, path: Path, modes: dict[str, str], ctx: ShellContext) -> str:
    lines = [f"packet {number}: {summary_line(path)}"]
    for i, ev in enumerate(path.hops):
        lines.append(f"{i},{hop_title(ev, modes)}:")
        lines.append(f"    {hop_line(path, i, ctx)}")
    return "\n".join(lines)


def path_json(number: int, path: Path, modes: dict[str, str], ctx: ShellContext) -> dict[str, Any]:
    h = path.header
    return {
        "packet": number,
        "src": h.src if h and not h.truncated else None,
        "dst": h.dst if h and not h.truncated else None,
        "protocol": (names.TRUNCATED if h.truncated else names.ip_protocol_name(h.protocol)) if h else None,
        "sport": h.sport if h else None,
        "dport": h.dport if h else None,
        "outcome": path.outcome.value,
        "drop_reason": path.drop_reason,
        "sampled_by": path.sampled_by.value,
        "duration_ns": path.duration_ns,
        "hops": [
            {
                "index": i,
                "hop": ev.hop.value,
                "mode": modes.get(ev.hop.value, "tracepoint"),
                "interface": ev.ifname or None,
                "netns": ev.netns,
                "ts_ns": ev.ts_ns,
                "cpu": ev.cpu,
                "detail": hop_line(path, i, ctx),
            }
            for i, ev in enumerate(path.hops)
        ],
    }
