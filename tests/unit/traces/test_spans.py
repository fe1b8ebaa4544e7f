"""Tests for the spans of a path: names and attributes (exporter.traces.spans), trace ids
(exporter.traces.ids) and the OTLP encoding (exporter.traces.encode), decoded with opentelemetry-proto."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from exporter import __version__
from exporter.k8s.pods import PodRef
from exporter.model.hops import span_name as hop_span_name
from exporter.model.path import FibLookup, Hop, HopEvent, Outcome, PacketHeader, Path, SampledBy
from exporter.model.vocabulary import tcp_flags_text
from exporter.traces.encode import RequestFraming, SpanEncoder, encode_attributes, varint
from exporter.traces.ids import packet_trace_id, span_ids, trace_id_hex
from exporter.traces.spans import root_span_name
from tests.otlp_receiver import ReceivedSpan, attributes, decode_request

OFFSET = 1_700_000_000_000_000_000  # wall - monotonic, injected
T0 = 5_000_000_000  # CLOCK_MONOTONIC ns of the first hop

UDP = PacketHeader(
    family=4,
    src="10.0.1.5",
    dst="10.0.2.9",
    protocol=17,
    sport=4242,
    dport=53,
    tos=0x10,
    ttl=64,
    length=84,
    ip_id=0x1234,
)
TCP6 = PacketHeader(
    family=6,
    src="2001:db8::1",
    dst="2001:db8::2",
    protocol=6,
    sport=51000,
    dport=443,
    ttl=63,
    length=80,
    tcp_flags=0x12,
    tcp_seq=123456789,
)
ICMP = PacketHeader(family=4, src="10.0.0.1", dst="10.0.0.2", protocol=1, ttl=64, length=84, ip_id=7, icmp_type=8)


def forwarded(header: PacketHeader = UDP, path_id: int = 1, t0: int = T0) -> Path:
    """In on eth0, routed (table main) out of eth1: transmitted."""
    hops = [
        HopEvent(
            path_id, Hop.NETIF_RECEIVE, t0, cpu=1, ifindex=2, ifname="eth0", netns=4026531840, length=84, header=header
        ),
        HopEvent(path_id, Hop.FIB_LOOKUP, t0 + 1_000, cpu=1, netns=4026531840, table=254, out_ifname="eth1"),
        HopEvent(path_id, Hop.DEV_QUEUE, t0 + 3_000, cpu=1, ifindex=3, ifname="eth1", netns=4026531840, length=98),
        HopEvent(path_id, Hop.DEV_XMIT, t0 + 4_500, cpu=2, ifindex=3, ifname="eth1", netns=4026531840, length=98),
    ]
    return Path(path_id, header, hops, Outcome.TRANSMITTED)


def dropped(header: PacketHeader = UDP, path_id: int = 2) -> Path:
    hops = [
        HopEvent(path_id, Hop.NETIF_RECEIVE, T0, ifname="eth0", length=84, header=header, sampled_by=SampledBy.DROP),
        HopEvent(path_id, Hop.DROP, T0 + 2_000, ifname="eth0", length=84, reason="NETFILTER_DROP"),
    ]
    return Path(path_id, header, hops, Outcome.DROPPED, drop_reason="NETFILTER_DROP", sampled_by=SampledBy.DROP)


class Setup:
    """A SpanEncoder whose output is kept, and decoded like a receiver would."""

    def __init__(self, flow_links: int = 4096, **kwargs: Any) -> None:
        self.chunks: list[tuple[bytes, int]] = []
        kwargs.setdefault("clock_offset_ns", lambda: OFFSET)
        kwargs.setdefault("strict", True)
        self.encoder = SpanEncoder(
            lambda data, count: self.chunks.append((data, count)), flow_links=flow_links, **kwargs
        )
        self.framing = RequestFraming({"service.name": "test"}, "pktpath", __version__)

    def spans(self) -> list[ReceivedSpan]:
        request = ExportTraceServiceRequest.FromString(self.framing.request(data for data, _ in self.chunks))
        return decode_request(request, "test")

    def clear(self) -> None:
        self.chunks.clear()

    def root(self) -> ReceivedSpan:
        roots = [s for s in self.spans() if not s.parent_span_id]
        assert len(roots) == 1
        return roots[0]

    def children(self) -> list[ReceivedSpan]:
        return [s for s in self.spans() if s.parent_span_id]


@pytest.fixture
def setup() -> Setup:
    return Setup()


# --- a forwarded path ------------------------------------------------------------------------


def test_forwarded_path_root_and_children(setup: Setup) -> None:
    trace_hex = setup.encoder.emit(forwarded())
    root = setup.root()
    children = setup.children()
    assert root.name == "UDP 10.0.1.5:4242 -> 10.0.2.9:53"
    assert [c.name for c in children] == [
        "netif_receive_skb(eth0)",
        "fib lookup (table main, found -> eth1)",
        "net_dev_queue(eth1)",
        "net_dev_xmit(eth1)",
    ]
    assert trace_hex == root.trace_id
    assert all(c.parent_span_id == root.span_id and c.trace_id == root.trace_id for c in children)
    assert len({s.span_id for s in setup.spans()}) == 5
    assert setup.chunks[0][1] == 5  # the span count handed on with the bytes
    assert setup.encoder.emitted == 1
    assert not setup.encoder.skipped


def test_times_are_converted_with_the_offset(setup: Setup) -> None:
    setup.encoder.emit(forwarded())
    root = setup.root()
    assert (root.start_ns, root.end_ns) == (OFFSET + T0, OFFSET + T0 + 4_500)
    assert [(c.start_ns, c.end_ns) for c in setup.children()] == [
        (OFFSET + T0, OFFSET + T0 + 1_000),
        (OFFSET + T0 + 1_000, OFFSET + T0 + 3_000),
        (OFFSET + T0 + 3_000, OFFSET + T0 + 4_500),
        (OFFSET + T0 + 4_500, OFFSET + T0 + 4_500),  # the last hop: a point in time
    ]


def test_root_attributes_follow_the_semantic_conventions(setup: Setup) -> None:
    setup.encoder.emit(forwarded())
    root = setup.root()
    assert root.attributes == {
        "source.address": "10.0.1.5",
        "source.port": 4242,
        "destination.address": "10.0.2.9",
        "destination.port": 53,
        "network.transport": "udp",
        "network.type": "ipv4",
        "pktpath.ip.protocol": "udp",
        "pktpath.outcome": "transmitted",
        "pktpath.sampled_by": "rate",
        "pktpath.hop_count": 4,
        "pktpath.ip.ttl": 64,
        "pktpath.ip.tos": 0x10,
        "pktpath.ip.length": 84,
        "pktpath.ip.id": 0x1234,
    }
    assert root.status_code == "UNSET"
    assert root.scope == "pktpath"
    span = ExportTraceServiceRequest.FromString(setup.framing.request([setup.chunks[0][0]])).resource_spans[0]
    assert span.scope_spans[0].scope.version == __version__
    assert span.scope_spans[0].spans[0].kind == Span.SpanKind.SPAN_KIND_INTERNAL


def test_hop_attributes(setup: Setup) -> None:
    setup.encoder.emit(forwarded())
    receive, fib, queue, xmit = (c.attributes for c in setup.children())
    assert receive == {
        "pktpath.hop": "netif_receive_skb",
        "network.interface.name": "eth0",
        "pktpath.ifindex": 2,
        "pktpath.netns": 4026531840,
        "pktpath.cpu": 1,
        "pktpath.verdict": 0,
        "pktpath.skb.len": 84,
    }
    assert fib == {
        "pktpath.hop": "fib_table_lookup",
        "pktpath.netns": 4026531840,
        "pktpath.cpu": 1,
        "pktpath.verdict": 0,
        "pktpath.skb.len": 0,
        "pktpath.fib.table": 254,
        "pktpath.fib.result": "found",
        "pktpath.fib.oif": "eth1",
    }
    assert queue["pktpath.hop"] == "net_dev_queue" and queue["network.interface.name"] == "eth1"
    assert xmit["pktpath.cpu"] == 2 and xmit["pktpath.skb.len"] == 98
    assert all(c.status_code == "UNSET" for c in setup.children())


def test_the_same_attributes_encode_the_same_from_the_cache(setup: Setup) -> None:
    for n in range(3):  # the second and third paths find their hops' attributes in the cache
        setup.encoder.emit(forwarded(replace(UDP, ip_id=n), path_id=n))
    receives = [s.attributes for s in setup.spans() if s.name == "netif_receive_skb(eth0)"]
    assert len(receives) == 3 and receives[0] == receives[1] == receives[2]


# --- a dropped path --------------------------------------------------------------------------


def test_dropped_path_is_an_error_on_root_and_drop_hop(setup: Setup) -> None:
    setup.encoder.emit(dropped())
    root = setup.root()
    receive, drop = setup.children()
    assert (root.status_code, root.status_message) == ("ERROR", "NETFILTER_DROP")
    assert root.attributes["pktpath.outcome"] == "dropped"
    assert root.attributes["pktpath.drop_reason"] == "NETFILTER_DROP"
    assert root.attributes["pktpath.sampled_by"] == "drop"
    assert drop.name == "DROPPED: NETFILTER_DROP"
    assert (drop.status_code, drop.status_message) == ("ERROR", "NETFILTER_DROP")
    assert drop.attributes["pktpath.drop_reason"] == "NETFILTER_DROP"
    assert receive.status_code == "UNSET"
    assert "pktpath.drop_reason" not in receive.attributes


def test_delivered_path_root_is_unset(setup: Setup) -> None:
    hops = [
        HopEvent(3, Hop.NETIF_RECEIVE, T0, ifname="eth0", header=UDP),
        HopEvent(3, Hop.DELIVER, T0 + 10, length=56),
        HopEvent(3, Hop.CONSUME, T0 + 20),
    ]
    setup.encoder.emit(Path(3, UDP, hops, Outcome.DELIVERED))
    assert setup.root().status_code == "UNSET"
    assert [c.name for c in setup.children()] == ["netif_receive_skb(eth0)", "deliver to socket", "consume_skb"]


def test_drop_without_a_reason_says_unknown(setup: Setup) -> None:
    hops = [HopEvent(4, Hop.NETIF_RECEIVE, T0, header=UDP), HopEvent(4, Hop.DROP, T0 + 5)]
    setup.encoder.emit(Path(4, UDP, hops, Outcome.DROPPED))
    assert setup.root().status_message == "UNKNOWN"
    assert setup.children()[1].name == "DROPPED: UNKNOWN"


# --- hop names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hop", "name"),
    [
        (HopEvent(1, Hop.NETIF_RECEIVE, 0, ifname="eth0"), "netif_receive_skb(eth0)"),
        (HopEvent(1, Hop.NETIF_RECEIVE, 0), "netif_receive_skb"),
        (HopEvent(1, Hop.FIB_LOOKUP, 0, table=254, out_ifname="eth1"), "fib lookup (table main, found -> eth1)"),
        (HopEvent(1, Hop.FIB_LOOKUP, 0, table=255, out_ifname="lo"), "fib lookup (table local, found -> lo)"),
        (HopEvent(1, Hop.FIB_LOOKUP, 0, table=253), "fib lookup (table default, found)"),
        (HopEvent(1, Hop.FIB_LOOKUP, 0, table=254, verdict=-101), "fib lookup (table main, no route)"),
        # What the lookup found, named by its error (the issue: a blackhole was shown as "no route").
        (HopEvent(1, Hop.FIB_LOOKUP, 0, table=254, verdict=-11), "fib lookup (table main, no route)"),
        (HopEvent(1, Hop.FIB_LOOKUP, 0, table=254, verdict=-22), "fib lookup (table main, blackhole)"),
        (HopEvent(1, Hop.FIB_LOOKUP, 0, table=100, verdict=-113), "fib lookup (table 100, unreachable)"),
        (HopEvent(1, Hop.FIB_LOOKUP, 0, table=254, verdict=-13), "fib lookup (table main, prohibit)"),
        # rp_filter's reverse lookup is named as rp_filter, in the shell's words.
        (
            HopEvent(1, Hop.FIB_LOOKUP, 0, table=254, verdict=-11, fib_lookup=FibLookup.RP_FILTER),
            "rp_filter check: FAIL (no route back to the source, table main)",
        ),
        (
            HopEvent(1, Hop.FIB_LOOKUP, 0, table=254, out_ifname="eth0", fib_lookup=FibLookup.RP_FILTER),
            "rp_filter check: PASS (route back via eth0, table main)",
        ),
        (HopEvent(1, Hop.RP_FILTER, 0, ifname="eth0", verdict=-18), "rp_filter check: FAIL (EXDEV(-18))"),
        (HopEvent(1, Hop.DEV_QUEUE, 0, ifname="eth1"), "net_dev_queue(eth1)"),
        (HopEvent(1, Hop.DEV_XMIT, 0, ifname="eth1"), "net_dev_xmit(eth1)"),
        (HopEvent(1, Hop.DEV_XMIT, 0, ifname="eth1", verdict=16), "net_dev_xmit(eth1) rc=16"),
        (HopEvent(1, Hop.DELIVER, 0), "deliver to socket"),
        (HopEvent(1, Hop.SOCK_QUEUE, 0, verdict=53), "queued to socket (port 53)"),
        (HopEvent(1, Hop.CONSUME, 0), "consume_skb"),
        (HopEvent(1, Hop.DROP, 0, reason="NO_SOCKET"), "DROPPED: NO_SOCKET"),
        (
            HopEvent(1, Hop.IPT_TABLE, 0, nf_table="filter", nf_chain="INPUT", verdict=0),
            "ipt_do_table filter/INPUT: drop",
        ),
        (HopEvent(1, Hop.NF_CHAIN, 0, nf_table="fw", nf_chain="fwd", verdict=1), "nft_do_chain fw/fwd: accept"),
        (HopEvent(1, Hop.IP_FINISH_OUTPUT, 0, ifname="eth1"), "ip_finish_output(eth1)"),
        (HopEvent(1, Hop.IP_QUEUE_XMIT, 0), "ip_queue_xmit"),
    ],
)
def test_hop_span_names(hop: HopEvent, name: str) -> None:
    assert hop_span_name(hop) == name


def test_fib_lookup_without_route_attributes(setup: Setup) -> None:
    hops = [
        HopEvent(5, Hop.NETIF_RECEIVE, T0, ifname="eth0", header=UDP),
        HopEvent(5, Hop.FIB_LOOKUP, T0 + 1, table=254, verdict=-101),
        HopEvent(5, Hop.DROP, T0 + 2, reason="IP_NOROUTE"),
    ]
    setup.encoder.emit(Path(5, UDP, hops, Outcome.DROPPED, drop_reason="IP_NOROUTE"))
    fib = setup.children()[1].attributes
    assert fib["pktpath.fib.result"] == "no route"
    assert fib["pktpath.verdict"] == -101  # a negative int64 survives the varint
    assert "pktpath.fib.oif" not in fib


# --- ICMP, IPv6, TCP -------------------------------------------------------------------------


def test_icmp_root(setup: Setup) -> None:
    setup.encoder.emit(forwarded(ICMP))
    root = setup.root()
    assert root.name == "ICMP 10.0.0.1 -> 10.0.0.2 echo-request"
    attrs = root.attributes
    assert attrs["pktpath.ip.protocol"] == "icmp"
    assert attrs["pktpath.icmp.type"] == 8 and attrs["pktpath.icmp.code"] == 0
    assert "network.transport" not in attrs
    assert "source.port" not in attrs and "destination.port" not in attrs


@pytest.mark.parametrize(
    ("header", "name"),
    [
        (replace(ICMP, icmp_type=0), "ICMP 10.0.0.1 -> 10.0.0.2 echo-reply"),
        (replace(ICMP, icmp_type=3, icmp_code=3), "ICMP 10.0.0.1 -> 10.0.0.2 destination-unreachable"),
        (replace(ICMP, icmp_type=11), "ICMP 10.0.0.1 -> 10.0.0.2 time-exceeded"),
        (replace(ICMP, icmp_type=42), "ICMP 10.0.0.1 -> 10.0.0.2 type 42"),
        (
            PacketHeader(6, "fe80::1", "ff02::1:ff00:2", 58, icmp_type=135),
            "ICMPv6 fe80::1 -> ff02::1:ff00:2 neighbor-solicitation",
        ),
        (
            PacketHeader(6, "2001:db8::1", "2001:db8::2", 58, icmp_type=128),
            "ICMPv6 2001:db8::1 -> 2001:db8::2 echo-request",
        ),
        (
            PacketHeader(6, "2001:db8::1", "2001:db8::2", 58, icmp_type=2),
            "ICMPv6 2001:db8::1 -> 2001:db8::2 packet-too-big",
        ),
        (TCP6, "TCP [2001:db8::1]:51000 -> [2001:db8::2]:443"),
        (PacketHeader(4, "10.0.0.1", "10.0.0.2", 132, sport=9, dport=10), "SCTP 10.0.0.1:9 -> 10.0.0.2:10"),
        (PacketHeader(4, "10.0.0.1", "10.0.0.2", 47), "GRE 10.0.0.1 -> 10.0.0.2"),
        (PacketHeader(4, "10.0.0.1", "10.0.0.2", 253), "IP-253 10.0.0.1 -> 10.0.0.2"),
    ],
)
def test_root_span_names(header: PacketHeader, name: str) -> None:
    assert root_span_name(header) == name


def test_ipv6_tcp_root_attributes(setup: Setup) -> None:
    setup.encoder.emit(forwarded(TCP6))
    attrs = setup.root().attributes
    assert attrs["network.type"] == "ipv6"
    assert attrs["network.transport"] == "tcp"
    assert attrs["source.address"] == "2001:db8::1" and attrs["destination.port"] == 443
    assert attrs["pktpath.tcp.flags"] == "SYN|ACK"
    assert attrs["pktpath.tcp.seq"] == 123456789
    assert "pktpath.ip.id" not in attrs  # IPv6 has no IP id
    assert "pktpath.icmp.type" not in attrs


def test_tcp_flags_text() -> None:
    assert tcp_flags_text(0x02) == "SYN"
    assert tcp_flags_text(0x11) == "FIN|ACK"
    assert tcp_flags_text(0xFF) == "FIN|SYN|RST|PSH|ACK|URG|ECE|CWR"
    assert tcp_flags_text(0) == "NONE"


# --- the trace id ----------------------------------------------------------------------------


def test_trace_id_is_deterministic_within_a_bucket() -> None:
    wall = 1_700_000_000_250_000_000
    first = packet_trace_id(UDP, wall)
    assert 0 < first < 1 << 128
    assert packet_trace_id(UDP, wall) == first
    assert packet_trace_id(UDP, wall + 500_000_000) == first  # same 1 s bucket, another node's clock
    assert packet_trace_id(replace(UDP, ttl=3, tos=0), wall) == first  # changes along the way: not hashed
    # Another spelling of the same IPv6 address is the same address.
    assert packet_trace_id(replace(TCP6, src="2001:0db8:0:0::1"), wall) == packet_trace_id(TCP6, wall)
    # A scope id (which inet_pton refuses) is packed without it, as ipaddress does.
    assert packet_trace_id(replace(TCP6, src="2001:db8::1%eth0"), wall) == packet_trace_id(TCP6, wall)


def test_trace_id_layout_is_stable() -> None:
    """Agents of different versions must agree: the v2 layout's ids for two packets, as recorded from the
    SDK-era implementation (hashing addresses packed by ipaddress, before inet_pton)."""
    wall = 1_700_000_000_250_000_000
    assert f"{packet_trace_id(UDP, wall):032x}" == "2c8f67755f2054e5f542c26eddb9f2b9"
    assert f"{packet_trace_id(TCP6, wall):032x}" == "9026a5277f8b25615e655ce55fec4b89"


@pytest.mark.parametrize(
    "other",
    [
        replace(UDP, ip_id=0x1235),
        replace(UDP, sport=4243),
        replace(UDP, dport=54),
        replace(UDP, src="10.0.1.6"),
        replace(UDP, dst="10.0.2.8"),
        replace(UDP, protocol=6),
        replace(UDP, src="10.0.2.9", dst="10.0.1.5"),  # the reply direction
        replace(UDP, ip_id=0, extra=0x0102030405060708),  # UDP with DF: IP id 0, told apart by payload
    ],
)
def test_trace_id_differs_for_another_packet(other: PacketHeader) -> None:
    wall = 1_700_000_000_250_000_000
    assert packet_trace_id(other, wall) != packet_trace_id(UDP, wall)


def test_trace_id_uses_tcp_seq_and_buckets() -> None:
    wall = 1_700_000_000_250_000_000
    assert packet_trace_id(replace(TCP6, tcp_seq=1), wall) != packet_trace_id(TCP6, wall)
    assert packet_trace_id(TCP6, wall + 1_000_000_000) != packet_trace_id(TCP6, wall)  # next bucket
    assert packet_trace_id(TCP6, wall, bucket_ns=10_000_000_000) == packet_trace_id(
        TCP6, wall + 1_000_000_000, bucket_ns=10_000_000_000
    )


def test_root_trace_id_is_the_packet_trace_id(setup: Setup) -> None:
    trace_hex = setup.encoder.emit(forwarded())
    expected = packet_trace_id(UDP, OFFSET + T0)
    assert setup.root().trace_id == trace_hex == f"{expected:032x}"
    # The same packet seen by another agent (other random span ids): the same trace.
    other = Setup()
    assert other.encoder.emit(forwarded(path_id=99, t0=T0 + 300_000)) == trace_hex
    assert other.root().span_id != setup.root().span_id


def test_span_ids_are_random_and_never_zero() -> None:
    ids = span_ids(1000)
    assert len(ids) == len(set(ids)) == 1000
    assert all(len(i) == 8 and i != bytes(8) for i in ids)


# --- flow links ------------------------------------------------------------------------------


def test_a_packet_links_to_the_previous_packet_of_its_flow(setup: Setup) -> None:
    setup.encoder.emit(forwarded(path_id=1))
    first = setup.root()
    setup.clear()
    setup.encoder.emit(forwarded(replace(UDP, ip_id=0x1235), path_id=2, t0=T0 + 10_000))
    second = setup.root()
    assert len(second.links) == 1
    link = second.links[0]
    assert (link.trace_id, link.span_id) == (first.trace_id, first.span_id)
    assert link.attributes == {"pktpath.link": "previous packet of flow"}
    assert second.trace_id != first.trace_id
    # Another flow has no link; child spans never have one.
    setup.clear()
    setup.encoder.emit(forwarded(replace(UDP, sport=1), path_id=3))
    assert setup.root().links == ()
    assert all(not c.links for c in setup.children())


def test_flow_links_are_a_bounded_lru() -> None:
    s = Setup(flow_links=2)
    for sport in (1, 2, 3):  # flow 1 is evicted by flow 3
        s.encoder.emit(forwarded(replace(UDP, sport=sport)))
    s.encoder.emit(forwarded(replace(UDP, sport=2, ip_id=9)))  # touches flow 2: flow 3 is now the oldest
    s.encoder.emit(forwarded(replace(UDP, sport=4)))  # evicts flow 3
    s.clear()
    # Held now: flows 2 and 4. Probe those first: probing a missing flow inserts it and evicts one.
    for sport in (4, 2, 3, 1):
        s.encoder.emit(forwarded(replace(UDP, sport=sport, ip_id=100)))
    linked = {r.attributes["source.port"]: bool(r.links) for r in s.spans() if not r.parent_span_id}
    assert linked == {1: False, 2: True, 3: False, 4: True}


def test_no_links_when_disabled() -> None:
    s = Setup(flow_links=0)
    s.encoder.emit(forwarded())
    s.encoder.emit(forwarded(replace(UDP, ip_id=1)))
    assert all(not span.links for span in s.spans())


# --- a sink that is full --------------------------------------------------------------------


def test_spans_the_sink_refuses_are_not_encoded_and_keep_their_trace_id_and_flow_link() -> None:
    """refused(n): the export queue counts spans that will not fit before they are encoded."""
    asked: list[int] = []
    full = [True]

    def refused(spans: int) -> bool:
        asked.append(spans)
        return full[0]

    s = Setup(refused=refused)
    path = forwarded(path_id=1)
    trace_id = s.encoder.emit(path)
    assert asked == [len(path.hops) + 1]  # asked once, for the path's spans: root and hops
    assert s.chunks == []  # nothing encoded, nothing handed on
    assert trace_id == trace_id_hex(path, OFFSET)  # the exemplar still names the packet's trace
    assert s.encoder.emitted == 1
    # The next packet of the flow, with room again, links to the refused one as to any other.
    full[0] = False
    second = forwarded(replace(UDP, ip_id=0x1235), path_id=2, t0=T0 + 10_000)
    assert s.encoder.emit(second) == trace_id_hex(second, OFFSET)
    (link,) = s.root().links
    assert link.trace_id == trace_id
    assert len(s.spans()) == len(second.hops) + 1
    # encode() (the benchmarks, the golden test) always encodes.
    full[0] = True
    encoded = s.encoder.encode(path)
    assert encoded is not None and encoded[1] and encoded[2] == len(path.hops) + 1


# --- the sampler (OTEL_TRACES_SAMPLER) -------------------------------------------------------


def test_a_refused_trace_is_not_sent_and_has_no_exemplar_id() -> None:
    asked: list[tuple[int, str, dict[str, Any]]] = []

    def sampler(trace_id: int, name: str, attrs: Any) -> bool:
        asked.append((trace_id, name, dict(attrs)))
        return bool(attrs["source.port"] != 1)

    s = Setup(sampler=sampler)
    assert s.encoder.emit(forwarded(replace(UDP, sport=1))) == ""
    kept = s.encoder.emit(forwarded(replace(UDP, sport=2)))
    assert kept and [r.trace_id for r in s.spans() if not r.parent_span_id] == [kept]
    assert asked[1][0] == int(kept, 16) and asked[1][1] == "UDP 10.0.1.5:2 -> 10.0.2.9:53"
    assert (s.encoder.sampled_out, s.encoder.emitted) == (1, 1)
    # A refused packet is no flow's previous packet: nothing links to a trace that was never sent.
    s.clear()
    s.encoder.emit(forwarded(replace(UDP, sport=2, ip_id=5)))
    assert s.root().links and s.root().links[0].trace_id == kept


# --- attribute values ------------------------------------------------------------------------


def decoded_attributes(values: dict[str, Any]) -> dict[str, Any]:
    span = Span.FromString(encode_attributes(0x4A, values))  # Span field 9: repeated KeyValue
    return attributes(span.attributes)


def test_attribute_values_of_every_type() -> None:
    values = {
        "s": "héllo",
        "b": True,
        "f": False,
        "i": -(1 << 63),
        "big": (1 << 63) - 1,
        "d": 0.25,
        "raw": b"\x00\x01",
        "list": ["a", "b"],
        "ints": (1, -2),
        "empty": [],
    }
    assert decoded_attributes(values) == values | {"ints": [1, -2]}


def test_values_opentelemetry_rejects_are_left_out() -> None:
    assert decoded_attributes(
        {"none": None, "huge": 1 << 64, "mixed": [1, None], "obj": object(), "": "no key", "ok": 1}
    ) == {"ok": 1}


def test_a_bool_never_takes_the_cached_encoding_of_an_int(setup: Setup) -> None:
    # Same key, same hash and equality (True == 1 == 1.0): the cache must not confuse them.
    first = setup.encoder._encode_attributes({"pktpath.x": 1})
    assert setup.encoder._encode_attributes({"pktpath.x": True}) != first
    assert setup.encoder._encode_attributes({"pktpath.x": 1.0}) != first
    assert decoded_attributes({"pktpath.x": True}) == {"pktpath.x": True}


def test_what_identifies_one_packet_is_sent_but_not_kept(setup: Setup) -> None:
    """IP ids and TCP sequence numbers never recur: each packet's are encoded, none fills the cache."""
    for n in range(300):
        setup.encoder.emit(forwarded(replace(TCP6, tcp_seq=n), path_id=2 * n + 1))
        setup.encoder.emit(forwarded(replace(UDP, ip_id=n), path_id=2 * n + 2))
    roots = [s for s in setup.spans() if not s.parent_span_id]
    assert sorted(r.attributes["pktpath.tcp.seq"] for r in roots if "pktpath.tcp.seq" in r.attributes) == [*range(300)]
    assert sorted(r.attributes["pktpath.ip.id"] for r in roots if "pktpath.ip.id" in r.attributes) == [*range(300)]
    cached_keys = {key for key, _value in setup.encoder._attributes}
    assert "pktpath.hop" in cached_keys and not cached_keys & {"pktpath.ip.id", "pktpath.tcp.seq"}


def test_varint() -> None:
    assert [varint(n) for n in (0, 1, 127, 128, 300, 16384)] == [
        b"\x00",
        b"\x01",
        b"\x7f",
        b"\x80\x01",
        b"\xac\x02",
        b"\x80\x80\x01",
    ]


def test_a_long_span_name_and_many_hops_frame_correctly(setup: Setup) -> None:
    hops = [HopEvent(1, Hop.NETIF_RECEIVE, T0, ifname="x" * 300, header=UDP)]
    hops += [HopEvent(1, Hop.DEV_QUEUE, T0 + i, ifname=f"eth{i}") for i in range(1, 64)]
    setup.encoder.emit(Path(1, UDP, hops, Outcome.INCOMPLETE))
    spans = setup.spans()
    assert len(spans) == 65 and spans[1].name == f"netif_receive_skb({'x' * 300})"


# --- malformed paths -------------------------------------------------------------------------


def test_malformed_paths_are_skipped_and_counted(setup: Setup) -> None:
    assert setup.encoder.emit(Path(7, UDP, [])) == ""
    assert setup.encoder.emit(Path(8, None, forwarded().hops)) == ""
    assert setup.chunks == []
    assert setup.encoder.skipped == {"no_hops": 1, "no_header": 1}
    assert setup.encoder.emitted == 0


def test_unexpected_errors_are_counted_not_raised_unless_strict() -> None:
    def broken_clock() -> int:
        raise RuntimeError("clock broke")

    lenient = Setup(clock_offset_ns=broken_clock, strict=False)
    assert lenient.encoder.emit(forwarded()) == ""
    assert lenient.encoder.skipped == {"error": 1}
    strict = Setup(clock_offset_ns=broken_clock)
    with pytest.raises(RuntimeError, match="clock broke"):
        strict.encoder.emit(forwarded())


def test_encoder_is_a_path_sink(setup: Setup) -> None:
    setup.encoder(forwarded())
    assert setup.encoder.emitted == 1
    assert len(setup.spans()) == 5


def test_unordered_hops_never_end_before_they_start(setup: Setup) -> None:
    path = forwarded()
    path.hops[1], path.hops[2] = path.hops[2], path.hops[1]
    setup.encoder.emit(path)
    for span in setup.spans():
        assert span.end_ns >= span.start_ns
    root = setup.root()
    assert all(c.end_ns <= root.end_ns for c in setup.children())


def test_default_clock_offset_is_wall_minus_monotonic() -> None:
    s = Setup(clock_offset_ns=None)
    before = time.time_ns()
    s.encoder.emit(forwarded(t0=time.monotonic_ns()))
    assert abs(s.root().start_ns - before) < 1_000_000_000  # generous: it is "now", not 1970 or boot time


def test_k8s_attributes_from_the_hops_namespace() -> None:
    pods = {42: PodRef("shop", "checkout-1", "node-1", "uid-1")}
    s = Setup(pod_of=pods.get, clock_offset_ns=lambda: 0)
    hops = [
        HopEvent(1, Hop.NETIF_RECEIVE, 1000, ifname="eth0", netns=42, header=UDP),
        HopEvent(1, Hop.DROP, 2000, ifname="eth0", netns=7, reason="NO_SOCKET"),
    ]
    s.encoder.emit(Path(1, UDP, hops, outcome=Outcome.DROPPED, drop_reason="NO_SOCKET"))
    spans = {sp.name: sp for sp in s.spans()}
    receive = spans["netif_receive_skb(eth0)"].attributes
    assert (
        receive["k8s.namespace.name"],
        receive["k8s.pod.name"],
        receive["k8s.pod.uid"],
        receive["k8s.node.name"],
    ) == ("shop", "checkout-1", "uid-1", "node-1")
    assert "k8s.pod.name" not in spans["DROPPED: NO_SOCKET"].attributes  # netns 7: the host
    assert s.root().attributes["k8s.pod.name"] == "checkout-1"  # the packet started in the pod


def test_the_exemplar_trace_id_without_spans_is_the_one_spans_get() -> None:
    """An agent that exports nothing still puts the packet's trace id on its drop exemplars: the
    id a node that does export gives the same packet's spans."""
    for path in (forwarded(), dropped(), forwarded(TCP6), forwarded(ICMP)):
        assert trace_id_hex(path, OFFSET) == Setup().encoder.emit(path) != ""
    assert trace_id_hex(forwarded(), OFFSET) != trace_id_hex(forwarded(replace(UDP, ip_id=0x1235)), OFFSET)


def test_no_exemplar_trace_id_for_a_packet_without_identity() -> None:
    cut = replace(UDP, truncated=True)
    assert trace_id_hex(forwarded(cut), OFFSET) == ""
    assert trace_id_hex(Path(9, None, [], Outcome.TRANSMITTED), OFFSET) == ""
