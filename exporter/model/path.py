"""The data model of packet paths: what the kernel reports per hop, and what a finished path is.

Everything downstream of the ring buffer (assembler, OpenTelemetry spans, the
interactive tracer) speaks these types; only exporter/decoders/events.py knows
the C layout they are decoded from.  The hops themselves are in exporter/model/hops.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from exporter.model.hops import FibLookup, Hop

__all__ = ["FibLookup", "Hop", "HopEvent", "Outcome", "PacketHeader", "Path", "SampledBy"]


class Outcome(StrEnum):
    """How a path ended."""

    DROPPED = "dropped"  # kfree_skb with a drop reason
    DELIVERED = "delivered"  # queued to a local socket (sk_data_ready) or copied to its reader
    CONSUMED = "consumed"  # freed as consumed (consume_skb): processed normally
    TRANSMITTED = "transmitted"  # last seen leaving a device (net_dev_xmit), nothing after it
    INCOMPLETE = "incomplete"  # idle timeout or eviction with no telling last hop


class SampledBy(StrEnum):
    RATE = "rate"  # the 1-in-N first-hop sample
    DROP = "drop"  # verdict-aware capture: kept because it was dropped


@dataclass(frozen=True)
class PacketHeader:
    """First-hop snapshot of the packet's headers."""

    family: int  # 4 or 6
    src: str
    dst: str
    protocol: int  # IP protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6 ...)
    sport: int = 0  # TCP/UDP/SCTP ports, 0 otherwise
    dport: int = 0
    tos: int = 0  # IPv4 TOS / IPv6 traffic class
    ttl: int = 0  # IPv4 TTL / IPv6 hop limit
    length: int = 0  # IP total length (IPv6: payload length + 40)
    ip_id: int = 0  # IPv4 identification (0 for IPv6)
    tcp_flags: int = 0  # TCP flags byte (FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10 ...)
    tcp_seq: int = 0
    icmp_type: int = 0  # ICMP/ICMPv6 type and code, 0 otherwise
    icmp_code: int = 0
    # What tells apart packets whose headers are equal (the kernel's sample_hash input):
    # TCP sequence number, ICMP echo id+sequence, or the first 8 UDP payload bytes.
    extra: int = 0
    # The IP header is cut short (a runt or truncated frame): only `family` and `length` (the bytes
    # the packet has from its network header on) are known; src and dst are "".  Nothing is ever
    # read past a packet's end.
    truncated: bool = False
    # No transport header could be read (cut short, or a non-first fragment): no ports, flags, ICMP type.
    no_transport: bool = False


@dataclass(frozen=True)
class HopEvent:
    """One hop of one tracked packet, decoded from a ring buffer record."""

    path_id: int  # unique per tracked packet (skb pointers are reused, so not the pointer)
    hop: Hop
    ts_ns: int  # kernel CLOCK_MONOTONIC (bpf_ktime_get_ns)
    cpu: int = 0
    ifindex: int = 0
    ifname: str = ""  # device name at this hop, "" when none
    netns: int = 0  # network namespace inode of the device
    length: int = 0  # skb->len at this hop
    verdict: int = 0  # hop-specific result: FIB lookup error (0 = found), driver rc at xmit
    reason: str | None = None  # drop reason name (kfree_skb only)
    table: int = 0  # FIB table id (fib_table_lookup only; 254 = main, 255 = local)
    out_ifname: str = ""  # FIB lookup result device (fib_table_lookup only)
    fib_src: str = ""  # FIB lookup flow (fib_table_lookup only)
    fib_dst: str = ""
    fib_lookup: FibLookup | None = None  # FIB lookup only: the packet's route lookup, or rp_filter's
    location: int = 0  # kernel address of the kfree_skb/consume_skb call site
    nf_family: int = 0  # netfilter hops: NFPROTO_* (2 ipv4, 10 ipv6, 1 inet ...)
    nf_hook: int = 0  # netfilter hops: NF_INET_* (0 prerouting ... 4 postrouting)
    phase: int = 0  # 0 entry, 1 exit (verdict)
    route_error: int = 0  # ip_route_input_noref: the errno of the error route it installed (0: a real route)
    nf_table: str = ""  # nft_do_chain, ipt_do_table: table and chain names
    nf_chain: str = ""
    header: PacketHeader | None = None  # set on the first hop of a path
    sampled_by: SampledBy = SampledBy.RATE


@dataclass
class Path:
    """A tracked packet's whole life in this host, hops in kernel-time order."""

    path_id: int
    header: PacketHeader | None
    hops: list[HopEvent] = field(default_factory=list)
    outcome: Outcome = Outcome.INCOMPLETE
    drop_reason: str | None = None
    sampled_by: SampledBy = SampledBy.RATE

    @property
    def start_ns(self) -> int:
        return self.hops[0].ts_ns if self.hops else 0

    @property
    def end_ns(self) -> int:
        return self.hops[-1].ts_ns if self.hops else 0

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns
