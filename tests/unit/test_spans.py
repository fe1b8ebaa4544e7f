"""Tests for exporter.traces.spans: Path -> spans, with the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from exporter.model.hops import span_name as hop_span_name
from exporter.model.path import FibLookup, Hop, HopEvent, Outcome, PacketHeader, Path, SampledBy
from exporter.model.vocabulary import tcp_flags_text
from exporter.traces.spans import (
    PacketIdGenerator,
    SpanBuilder,
    make_tracer_provider,
    packet_trace_id,
    root_span_name,
)

OFFSET = 1_700_000_000_000_000_000  # wall - monotonic, injected
T0 = 5_000_000_000  # CLOCK_MONOTONIC ns of the first hop

UDP = PacketHeader(family=4, src="10.0.1.5", dst="10.0.2.9", protocol=17, sport=4242, dport=53, tos=0x10, ttl=64,
                   length=84, ip_id=0x1234)
TCP6 = PacketHeader(family=6, src="2001:db8::1", dst="2001:db8::2", protocol=6, sport=51000, dport=443, ttl=63,
                    length=80, tcp_flags=0x12, tcp_seq=123456789)
ICMP = PacketHeader(family=4, src="10.0.0.1", dst="10.0.0.2", protocol=1, ttl=64, length=84, ip_id=7, icmp_type=8)


def forwarded(header: PacketHeader = UDP, path_id: int = 1, t0: int = T0) -> Path:
    """In on eth0, routed (table main) out of eth1: transmitted."""
    hops = [
        HopEvent(path_id, Hop.NETIF_RECEIVE, t0, cpu=1, ifindex=2, ifname="eth0", netns=4026531840, length=84,
                 header=header),
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
    def __init__(self, flow_links: int = 4096) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = make_tracer_provider(shutdown_on_exit=False)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.builder = SpanBuilder(self.provider, clock_offset_ns=lambda: OFFSET, flow_links=flow_links, strict=True)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def root(self) -> ReadableSpan:
        roots = [s for s in self.spans() if s.parent is None]
        assert len(roots) == 1
        return roots[0]

    def children(self) -> list[ReadableSpan]:
        return sorted((s for s in self.spans() if s.parent is not None), key=lambda s: s.start_time or 0)


@pytest.fixture
def setup() -> Iterator[Setup]:
    s = Setup()
    yield s
    s.provider.shutdown()


def ctx(span: ReadableSpan) -> trace.SpanContext:
    context = span.context
    assert isinstance(context, trace.SpanContext)
    return context


# --- a forwarded path ------------------------------------------------------------------------


def test_forwarded_path_root_and_children(setup: Setup) -> None:
    trace_hex = setup.builder.emit(forwarded())
    root = setup.root()
    children = setup.children()
    assert root.name == "UDP 10.0.1.5:4242 -> 10.0.2.9:53"
    assert [c.name for c in children] == [
        "netif_receive_skb(eth0)",
        "fib lookup (table main, found -> eth1)",
        "net_dev_queue(eth1)",
        "net_dev_xmit(eth1)",
    ]
    assert trace_hex == trace.format_trace_id(ctx(root).trace_id)
    for child in children:
        assert child.parent is not None
        assert child.parent.span_id == ctx(root).span_id
        assert ctx(child).trace_id == ctx(root).trace_id
    assert setup.builder.emitted == 1
    assert not setup.builder.skipped


def test_times_are_converted_with_the_offset(setup: Setup) -> None:
    setup.builder.emit(forwarded())
    root = setup.root()
    assert (root.start_time, root.end_time) == (OFFSET + T0, OFFSET + T0 + 4_500)
    assert [(c.start_time, c.end_time) for c in setup.children()] == [
        (OFFSET + T0, OFFSET + T0 + 1_000),
        (OFFSET + T0 + 1_000, OFFSET + T0 + 3_000),
        (OFFSET + T0 + 3_000, OFFSET + T0 + 4_500),
        (OFFSET + T0 + 4_500, OFFSET + T0 + 4_500),  # the last hop: a point in time
    ]


def test_root_attributes_follow_the_semantic_conventions(setup: Setup) -> None:
    setup.builder.emit(forwarded())
    root = setup.root()
    assert dict(root.attributes or {}) == {
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
    assert root.status.status_code is StatusCode.UNSET
    assert root.kind is trace.SpanKind.INTERNAL
    assert root.instrumentation_scope is not None and root.instrumentation_scope.name == "pktpath"


def test_hop_attributes(setup: Setup) -> None:
    setup.builder.emit(forwarded())
    receive, fib, queue, xmit = (dict(c.attributes or {}) for c in setup.children())
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
    assert all(c.status.status_code is StatusCode.UNSET for c in setup.children())


# --- a dropped path --------------------------------------------------------------------------


def test_dropped_path_is_an_error_on_root_and_drop_hop(setup: Setup) -> None:
    setup.builder.emit(dropped())
    root = setup.root()
    receive, drop = setup.children()
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == "NETFILTER_DROP"
    attrs = root.attributes or {}
    assert attrs["pktpath.outcome"] == "dropped"
    assert attrs["pktpath.drop_reason"] == "NETFILTER_DROP"
    assert attrs["pktpath.sampled_by"] == "drop"
    assert drop.name == "DROPPED: NETFILTER_DROP"
    assert drop.status.status_code is StatusCode.ERROR
    assert drop.status.description == "NETFILTER_DROP"
    assert (drop.attributes or {})["pktpath.drop_reason"] == "NETFILTER_DROP"
    assert receive.status.status_code is StatusCode.UNSET
    assert "pktpath.drop_reason" not in (receive.attributes or {})


def test_delivered_path_root_is_unset(setup: Setup) -> None:
    hops = [
        HopEvent(3, Hop.NETIF_RECEIVE, T0, ifname="eth0", header=UDP),
        HopEvent(3, Hop.DELIVER, T0 + 10, length=56),
        HopEvent(3, Hop.CONSUME, T0 + 20),
    ]
    setup.builder.emit(Path(3, UDP, hops, Outcome.DELIVERED))
    assert setup.root().status.status_code is StatusCode.UNSET
    assert [c.name for c in setup.children()] == ["netif_receive_skb(eth0)", "deliver to socket", "consume_skb"]


def test_drop_without_a_reason_says_unknown(setup: Setup) -> None:
    hops = [HopEvent(4, Hop.NETIF_RECEIVE, T0, header=UDP), HopEvent(4, Hop.DROP, T0 + 5)]
    setup.builder.emit(Path(4, UDP, hops, Outcome.DROPPED))
    assert setup.root().status.description == "UNKNOWN"
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
        (HopEvent(1, Hop.FIB_LOOKUP, 0, table=254, verdict=-11, fib_lookup=FibLookup.RP_FILTER),
         "rp_filter check: FAIL (no route back to the source, table main)"),
        (HopEvent(1, Hop.FIB_LOOKUP, 0, table=254, out_ifname="eth0", fib_lookup=FibLookup.RP_FILTER),
         "rp_filter check: PASS (route back via eth0, table main)"),
        (HopEvent(1, Hop.RP_FILTER, 0, ifname="eth0", verdict=-18), "rp_filter check: FAIL (EXDEV(-18))"),
        (HopEvent(1, Hop.DEV_QUEUE, 0, ifname="eth1"), "net_dev_queue(eth1)"),
        (HopEvent(1, Hop.DEV_XMIT, 0, ifname="eth1"), "net_dev_xmit(eth1)"),
        (HopEvent(1, Hop.DEV_XMIT, 0, ifname="eth1", verdict=16), "net_dev_xmit(eth1) rc=16"),
        (HopEvent(1, Hop.DELIVER, 0), "deliver to socket"),
        (HopEvent(1, Hop.SOCK_QUEUE, 0, verdict=53), "queued to socket (port 53)"),
        (HopEvent(1, Hop.CONSUME, 0), "consume_skb"),
        (HopEvent(1, Hop.DROP, 0, reason="NO_SOCKET"), "DROPPED: NO_SOCKET"),
        (HopEvent(1, Hop.IPT_TABLE, 0, nf_table="filter", nf_chain="INPUT", verdict=0),
         "ipt_do_table filter/INPUT: drop"),
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
    setup.builder.emit(Path(5, UDP, hops, Outcome.DROPPED, drop_reason="IP_NOROUTE"))
    fib = dict(setup.children()[1].attributes or {})
    assert fib["pktpath.fib.result"] == "no route"
    assert fib["pktpath.verdict"] == -101
    assert "pktpath.fib.oif" not in fib


# --- ICMP, IPv6, TCP -------------------------------------------------------------------------


def test_icmp_root(setup: Setup) -> None:
    setup.builder.emit(forwarded(ICMP))
    root = setup.root()
    assert root.name == "ICMP 10.0.0.1 -> 10.0.0.2 echo-request"
    attrs = dict(root.attributes or {})
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
        (PacketHeader(6, "fe80::1", "ff02::1:ff00:2", 58, icmp_type=135), "ICMPv6 fe80::1 -> ff02::1:ff00:2 "
                                                                           "neighbor-solicitation"),
        (PacketHeader(6, "2001:db8::1", "2001:db8::2", 58, icmp_type=128), "ICMPv6 2001:db8::1 -> 2001:db8::2 "
                                                                            "echo-request"),
        (PacketHeader(6, "2001:db8::1", "2001:db8::2", 58, icmp_type=2), "ICMPv6 2001:db8::1 -> 2001:db8::2 "
                                                                          "packet-too-big"),
        (TCP6, "TCP [2001:db8::1]:51000 -> [2001:db8::2]:443"),
        (PacketHeader(4, "10.0.0.1", "10.0.0.2", 132, sport=9, dport=10), "SCTP 10.0.0.1:9 -> 10.0.0.2:10"),
        (PacketHeader(4, "10.0.0.1", "10.0.0.2", 47), "GRE 10.0.0.1 -> 10.0.0.2"),
        (PacketHeader(4, "10.0.0.1", "10.0.0.2", 253), "IP-253 10.0.0.1 -> 10.0.0.2"),
    ],
)
def test_root_span_names(header: PacketHeader, name: str) -> None:
    assert root_span_name(header) == name


def test_ipv6_tcp_root_attributes(setup: Setup) -> None:
    setup.builder.emit(forwarded(TCP6))
    attrs = dict(setup.root().attributes or {})
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
    trace_hex = setup.builder.emit(forwarded())
    expected = packet_trace_id(UDP, OFFSET + T0)
    assert ctx(setup.root()).trace_id == expected
    assert trace_hex == f"{expected:032x}"
    # The same packet seen by another agent (another provider, other random span ids): same trace.
    other = Setup()
    assert other.builder.emit(forwarded(path_id=99, t0=T0 + 300_000)) == trace_hex
    assert ctx(other.root()).span_id != ctx(setup.root()).span_id


def test_span_ids_and_other_roots_stay_random() -> None:
    ids = PacketIdGenerator()
    with ids.use_trace_id(42):
        assert ids.generate_trace_id() == 42
        assert ids.generate_trace_id() != 42  # used once
    assert ids.generate_trace_id() != 42
    assert ids.generate_span_id() != ids.generate_span_id()
    with pytest.raises(ValueError, match="not a non-zero 128-bit number"), ids.use_trace_id(0):
        pass


def test_root_is_never_a_child_of_the_current_span(setup: Setup) -> None:
    with setup.provider.get_tracer("app").start_as_current_span("unrelated"):
        setup.builder.emit(forwarded())
    roots = [s for s in setup.spans() if s.name.startswith("UDP")]
    assert roots[0].parent is None
    assert ctx(roots[0]).trace_id == packet_trace_id(UDP, OFFSET + T0)


def test_builder_needs_the_packet_id_generator() -> None:
    with pytest.raises(TypeError, match="make_tracer_provider"):
        SpanBuilder(TracerProvider(shutdown_on_exit=False))


# --- flow links ------------------------------------------------------------------------------


def test_a_packet_links_to_the_previous_packet_of_its_flow(setup: Setup) -> None:
    setup.builder.emit(forwarded(path_id=1))
    first = ctx(setup.root())
    setup.exporter.clear()
    setup.builder.emit(forwarded(replace(UDP, ip_id=0x1235), path_id=2, t0=T0 + 10_000))
    second = setup.root()
    assert len(second.links) == 1
    link = second.links[0]
    assert (link.context.trace_id, link.context.span_id) == (first.trace_id, first.span_id)
    assert dict(link.attributes or {}) == {"pktpath.link": "previous packet of flow"}
    assert ctx(second).trace_id != first.trace_id
    # Another flow has no link; child spans never have one.
    setup.exporter.clear()
    setup.builder.emit(forwarded(replace(UDP, sport=1), path_id=3))
    assert setup.root().links == ()
    assert all(not c.links for c in setup.children())


def test_flow_links_are_a_bounded_lru() -> None:
    s = Setup(flow_links=2)
    for sport in (1, 2, 3):  # flow 1 is evicted by flow 3
        s.builder.emit(forwarded(replace(UDP, sport=sport)))
    s.builder.emit(forwarded(replace(UDP, sport=2, ip_id=9)))  # touches flow 2: flow 3 is now the oldest
    s.builder.emit(forwarded(replace(UDP, sport=4)))  # evicts flow 3
    s.exporter.clear()
    # Held now: flows 2 and 4. Probe those first: probing a missing flow inserts it and evicts one.
    for sport in (4, 2, 3, 1):
        s.builder.emit(forwarded(replace(UDP, sport=sport, ip_id=100)))
    linked = {(r.attributes or {})["source.port"]: bool(r.links) for r in s.spans() if r.parent is None}
    assert linked == {1: False, 2: True, 3: False, 4: True}


def test_no_links_when_disabled() -> None:
    s = Setup(flow_links=0)
    s.builder.emit(forwarded())
    s.builder.emit(forwarded(replace(UDP, ip_id=1)))
    assert all(not span.links for span in s.spans())


# --- malformed paths -------------------------------------------------------------------------


def test_malformed_paths_are_skipped_and_counted(setup: Setup) -> None:
    assert setup.builder.emit(Path(7, UDP, [])) == ""
    assert setup.builder.emit(Path(8, None, forwarded().hops)) == ""
    assert setup.spans() == []
    assert setup.builder.skipped == {"no_hops": 1, "no_header": 1}
    assert setup.builder.emitted == 0


def test_unexpected_errors_are_counted_not_raised_unless_strict() -> None:
    def broken_clock() -> int:
        raise RuntimeError("clock broke")

    provider = make_tracer_provider(shutdown_on_exit=False)
    lenient = SpanBuilder(provider, clock_offset_ns=broken_clock)
    assert lenient.emit(forwarded()) == ""
    assert lenient.skipped == {"error": 1}
    strict = SpanBuilder(provider, clock_offset_ns=broken_clock, strict=True)
    with pytest.raises(RuntimeError, match="clock broke"):
        strict.emit(forwarded())


def test_builder_is_a_path_sink(setup: Setup) -> None:
    setup.builder(forwarded())
    assert setup.builder.emitted == 1
    assert len(setup.spans()) == 5


def test_unordered_hops_never_end_before_they_start(setup: Setup) -> None:
    path = forwarded()
    path.hops[1], path.hops[2] = path.hops[2], path.hops[1]
    setup.builder.emit(path)
    for span in setup.spans():
        assert span.end_time is not None and span.start_time is not None
        assert span.end_time >= span.start_time
    root = setup.root()
    assert all((c.end_time or 0) <= (root.end_time or 0) for c in setup.children())


def test_default_clock_offset_is_wall_minus_monotonic() -> None:
    import time

    exporter = InMemorySpanExporter()
    provider = make_tracer_provider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    now_mono = time.monotonic_ns()
    before = time.time_ns()
    SpanBuilder(provider, strict=True).emit(forwarded(t0=now_mono))
    root = next(s for s in exporter.get_finished_spans() if s.parent is None)
    assert root.start_time is not None
    assert abs(root.start_time - before) < 1_000_000_000  # generous: it is "now", not 1970 or boot time


def test_k8s_attributes_from_the_hops_namespace() -> None:
    from exporter.k8s.pods import PodRef
    from exporter.traces.spans import PacketIdGenerator, SpanBuilder, make_tracer_provider

    exporter = InMemorySpanExporter()
    provider = make_tracer_provider(id_generator=PacketIdGenerator(), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pods = {42: PodRef("shop", "checkout-1", "node-1", "uid-1")}
    builder = SpanBuilder(provider, clock_offset_ns=lambda: 0, pod_of=pods.get)
    hops = [HopEvent(1, Hop.NETIF_RECEIVE, 1000, ifname="eth0", netns=42, header=UDP),
            HopEvent(1, Hop.DROP, 2000, ifname="eth0", netns=7, reason="NO_SOCKET")]
    builder.emit(Path(1, UDP, hops, outcome=Outcome.DROPPED, drop_reason="NO_SOCKET"))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    receive = spans["netif_receive_skb(eth0)"].attributes or {}
    assert (receive["k8s.namespace.name"], receive["k8s.pod.name"], receive["k8s.pod.uid"],
            receive["k8s.node.name"]) == ("shop", "checkout-1", "uid-1", "node-1")
    assert "k8s.pod.name" not in (spans["DROPPED: NO_SOCKET"].attributes or {})  # netns 7: the host
    root = next(s for s in exporter.get_finished_spans() if s.parent is None)
    assert (root.attributes or {})["k8s.pod.name"] == "checkout-1"  # the packet started in the pod
