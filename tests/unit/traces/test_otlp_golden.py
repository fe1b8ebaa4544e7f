"""Golden test: the fast encoder's OTLP bytes decode to the spans the OpenTelemetry SDK used to make.

The same recorded paths go through the old way (tests/sdk_reference.py: SDK spans and the official
OTLP encoder) and the new way (exporter.traces.encode); both requests are decoded with
opentelemetry-proto and compared message for message: names, kinds, times, attributes (values,
types and order), links, status, flags, trace ids, the resource and the scope. Span ids are random
both ways, so each is replaced by its place in the tree (the trace and the span's position) before
comparing: the parent of every hop span and the target of every link must still match.

The reference is kept alive in tests instead of being recorded as a fixture: it calls the same
naming functions as the encoder, so the comparison is of the encoding and stays valid while span
names change (issue 10), and it follows the installed SDK's encoder (its span flags, say).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from exporter import __version__
from exporter.k8s.pods import PodRef
from exporter.model.hops import span_name
from exporter.model.path import FibLookup, Hop, HopEvent, Outcome, PacketHeader, Path, SampledBy
from exporter.traces.encode import INSTRUMENTATION_NAME, RequestFraming, SpanEncoder
from exporter.traces.spans import CPU_ATTRIBUTE, SKB_LEN_ATTRIBUTE, hop_attributes
from tests.sdk_reference import SdkReference

OFFSET = 1_700_000_000_123_456_789  # wall - monotonic
T0 = 7_000_000_000
NETNS_HOST = 4026531840
NETNS_POD = 4026532999
PODS = {NETNS_POD: PodRef("shop", "checkout-7d9f", "node-1", "c0ffee-uid")}
RESOURCE = {
    "service.name": "pktpath",
    "service.version": __version__,
    "host.name": "node-1",
    "telemetry.sdk.language": "python",
    "k8s.node.name": "node-1",
}

UDP4 = PacketHeader(
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
    extra=0x0102030405060708,
)
TCP4 = PacketHeader(
    family=4,
    src="198.18.0.2",
    dst="198.18.1.2",
    protocol=6,
    sport=51000,
    dport=8080,
    ttl=63,
    length=60,
    ip_id=77,
    tcp_flags=0x02,
    tcp_seq=4_000_000_001,
)
TCP6 = PacketHeader(
    family=6,
    src="2001:db8::1",
    dst="2001:db8::2",
    protocol=6,
    sport=443,
    dport=51001,
    tos=0xB8,
    ttl=64,
    length=1280,
    tcp_flags=0x18,
    tcp_seq=17,
)
ICMP6 = PacketHeader(
    family=6, src="2001:db8:1::5", dst="2001:db8:2::9", protocol=58, ttl=63, length=104, icmp_type=128, extra=0x00010002
)
ICMP4 = PacketHeader(
    family=4, src="198.18.0.2", dst="198.18.9.9", protocol=1, ttl=64, length=84, ip_id=9, icmp_type=8, icmp_code=0
)
GRE4 = PacketHeader(family=4, src="198.18.0.2", dst="198.18.1.2", protocol=47, ttl=64, length=100, ip_id=1)


def hop(path_id: int, kind: Hop, dt_ns: int, **fields: object) -> HopEvent:
    return HopEvent(path_id, kind, T0 + dt_ns, **fields)  # type: ignore[arg-type]


def forwarded_and_dropped() -> Path:
    """UDP in on eth0, through the netfilter hooks and the route lookup, dropped by an nftables rule."""
    n = 1
    hops = [
        hop(n, Hop.NETIF_RECEIVE, 0, cpu=1, ifindex=2, ifname="eth0", netns=NETNS_HOST, length=84, header=UDP4),
        hop(n, Hop.IP_RCV, 900, cpu=1, ifindex=2, ifname="eth0", netns=NETNS_HOST, length=84),
        hop(n, Hop.NF_HOOK, 1_500, cpu=1, ifindex=2, ifname="eth0", netns=NETNS_HOST, nf_family=2, nf_hook=0),
        hop(
            n,
            Hop.NF_HOOK,
            2_100,
            cpu=1,
            ifindex=2,
            ifname="eth0",
            netns=NETNS_HOST,
            nf_family=2,
            nf_hook=0,
            phase=1,
            verdict=1,
        ),
        hop(n, Hop.IP_RCV_FINISH, 2_600, cpu=1, ifindex=2, ifname="eth0", netns=NETNS_HOST, length=84),
        hop(n, Hop.ROUTE_INPUT, 3_000, cpu=1, ifindex=2, ifname="eth0", netns=NETNS_HOST),
        hop(
            n,
            Hop.FIB_LOOKUP,
            3_400,
            cpu=1,
            netns=NETNS_HOST,
            table=254,
            out_ifname="eth1",
            fib_src="10.0.1.5",
            fib_dst="10.0.2.9",
        ),
        hop(n, Hop.RP_FILTER, 3_900, cpu=1, ifindex=2, ifname="eth0", netns=NETNS_HOST),
        hop(n, Hop.IP_FORWARD, 4_700, cpu=1, ifindex=2, ifname="eth0", netns=NETNS_HOST, length=84),
        hop(
            n,
            Hop.NF_CHAIN,
            5_200,
            cpu=1,
            netns=NETNS_HOST,
            nf_table="fw",
            nf_chain="forward",
            nf_family=1,
            nf_hook=2,
            verdict=0,
        ),
        hop(
            n,
            Hop.IPT_TABLE,
            5_300,
            cpu=1,
            netns=NETNS_HOST,
            nf_table="filter",
            nf_chain="FORWARD",
            nf_hook=2,
            verdict=1,
        ),
        hop(
            n,
            Hop.DROP,
            5_900,
            cpu=1,
            ifindex=2,
            ifname="eth0",
            netns=NETNS_HOST,
            length=84,
            reason="NETFILTER_DROP",
            location=0xFFFFFFFF81234567,
        ),
    ]
    return Path(n, UDP4, hops, Outcome.DROPPED, drop_reason="NETFILTER_DROP")


def delivered_into_a_pod() -> Path:
    """TCP SYN into a pod's namespace, delivered to its socket: k8s attributes on the pod's hops."""
    n = 2
    hops = [
        hop(n, Hop.NETIF_RECEIVE, 0, cpu=0, ifindex=5, ifname="veth1a2b", netns=NETNS_HOST, length=60, header=TCP4),
        hop(n, Hop.NETIF_RECEIVE, 4_000, cpu=0, ifindex=3, ifname="eth0", netns=NETNS_POD, length=60),
        hop(n, Hop.LOCAL_DELIVER, 6_000, cpu=0, ifindex=3, ifname="eth0", netns=NETNS_POD, length=40),
        hop(n, Hop.SOCK_QUEUE, 9_000, cpu=0, netns=NETNS_POD, verdict=8080),
        hop(n, Hop.DELIVER, 30_000, cpu=1, netns=NETNS_POD, length=0),
        hop(n, Hop.CONSUME, 31_000, cpu=1, netns=NETNS_POD, location=0xFFFFFFFF81000001),
    ]
    return Path(n, TCP4, hops, Outcome.DELIVERED)


def sent_over_ipv6() -> Path:
    """A TCP segment leaving a socket over IPv6; the driver refuses it once (rc=16)."""
    n = 3
    hops = [
        hop(n, Hop.IP_QUEUE_XMIT, 0, cpu=3, netns=NETNS_HOST, length=1280, header=TCP6),
        hop(n, Hop.IP_OUTPUT, 700, cpu=3, ifindex=4, ifname="eth1", netns=NETNS_HOST, length=1280),
        hop(n, Hop.IP_FINISH_OUTPUT, 1_100, cpu=3, ifindex=4, ifname="eth1", netns=NETNS_HOST, length=1280),
        hop(n, Hop.DEV_QUEUE, 2_000, cpu=3, ifindex=4, ifname="eth1", netns=NETNS_HOST, length=1294),
        hop(n, Hop.DEV_XMIT, 2_500, cpu=3, ifindex=4, ifname="eth1", netns=NETNS_HOST, length=1294, verdict=16),
    ]
    return Path(n, TCP6, hops, Outcome.TRANSMITTED)


def icmpv6_forwarded() -> Path:
    n = 4
    hops = [
        hop(n, Hop.NETIF_RECEIVE, 0, cpu=0, ifindex=2, ifname="eth0", netns=NETNS_HOST, length=104, header=ICMP6),
        hop(n, Hop.IP_FORWARD, 1_000, cpu=0, ifindex=2, ifname="eth0", netns=NETNS_HOST, length=104),
        hop(n, Hop.IP_FORWARD_FINISH, 1_800, cpu=0, ifindex=4, ifname="eth1", netns=NETNS_HOST, length=104),
        hop(n, Hop.DEV_XMIT, 3_000, cpu=0, ifindex=4, ifname="eth1", netns=NETNS_HOST, length=118),
    ]
    return Path(n, ICMP6, hops, Outcome.TRANSMITTED)


def icmp_no_route() -> Path:
    """ICMP echo with no route: the lookup fails, the drop carries no reason (UNKNOWN)."""
    n = 5
    hops = [
        hop(n, Hop.NETIF_RECEIVE, 0, cpu=1, ifindex=2, ifname="eth0", netns=NETNS_HOST, length=84, header=ICMP4),
        hop(n, Hop.FIB_LOOKUP, 2_000, cpu=1, netns=NETNS_HOST, table=254, verdict=-101),
        hop(n, Hop.DROP, 2_500, cpu=1, ifindex=2, ifname="eth0", netns=NETNS_HOST, length=84),
    ]
    return Path(n, ICMP4, hops, Outcome.DROPPED)


def drop_sampled() -> Path:
    """Kept because it was dropped: a one-hop path from the always-on drop program."""
    n = 6
    hops = [
        hop(
            n,
            Hop.DROP,
            0,
            cpu=0,
            ifindex=2,
            ifname="eth0",
            netns=NETNS_POD,
            length=84,
            header=TCP4,
            reason="IP_RPFILTER",
            sampled_by=SampledBy.DROP,
        )
    ]
    return Path(n, replace(TCP4, ip_id=78), hops, Outcome.DROPPED, drop_reason="IP_RPFILTER", sampled_by=SampledBy.DROP)


def incomplete_gre_out_of_order() -> Path:
    """An unknown-to-the-names protocol, idle-ended, hops whose stamps go backwards (spans never end early)."""
    n = 7
    hops = [
        hop(n, Hop.NETIF_RECEIVE, 5_000, cpu=0, ifindex=2, ifname="eth0", netns=NETNS_HOST, length=100, header=GRE4),
        hop(n, Hop.DEV_QUEUE, 3_000, cpu=1, ifindex=4, ifname="gre1", netns=NETNS_HOST, length=124),
    ]
    return Path(n, GRE4, hops, Outcome.INCOMPLETE)


def second_packet_of_the_udp_flow() -> Path:
    """The next packet of path 1's flow: its root links to path 1's root."""
    header = replace(UDP4, ip_id=0x1235, extra=0x0102030405060709)
    n = 8
    hops = [
        hop(n, Hop.NETIF_RECEIVE, 50_000, cpu=0, ifindex=2, ifname="eth0", netns=NETNS_HOST, length=84, header=header),
        hop(n, Hop.FIB_LOOKUP, 51_000, cpu=0, netns=NETNS_HOST, table=255, out_ifname="lo"),
        hop(n, Hop.DROP, 52_000, cpu=0, ifindex=2, ifname="eth0", netns=NETNS_HOST, length=84, reason="NO_SOCKET"),
    ]
    return Path(n, header, hops, Outcome.DROPPED, drop_reason="NO_SOCKET")


def echo_reply_consumed() -> Path:
    """An ICMP echo reply the kernel answers itself: freed as consumed."""
    header = replace(ICMP4, src="198.18.9.9", dst="198.18.0.2", icmp_type=0, ip_id=10)
    n = 9
    hops = [
        hop(n, Hop.NETIF_RECEIVE, 0, cpu=0, ifindex=2, ifname="eth0", netns=NETNS_HOST, length=84, header=header),
        hop(n, Hop.LOCAL_DELIVER, 800, cpu=0, ifindex=2, ifname="eth0", netns=NETNS_HOST, length=84),
        hop(n, Hop.CONSUME, 1_700, cpu=0, netns=NETNS_HOST),
    ]
    return Path(n, header, hops, Outcome.CONSUMED)


def rp_filter_strict_drop() -> Path:
    """rp_filter's reverse lookup answers through another device than the packet came in on: the
    span names that device against the receiving one (the hop table's receiving_device), and the
    header has no transport part."""
    header = PacketHeader(
        family=4, src="198.18.5.5", dst="198.18.1.2", protocol=17, ttl=64, length=24, ip_id=3, no_transport=True
    )
    n = 10
    hops = [
        hop(n, Hop.NETIF_RECEIVE, 0, cpu=0, ifindex=2, ifname="eth0", netns=NETNS_HOST, length=24, header=header),
        hop(n, Hop.FIB_LOOKUP, 900, cpu=0, netns=NETNS_HOST, table=254, out_ifname="eth1", fib_lookup=FibLookup.ROUTE),
        hop(
            n,
            Hop.FIB_LOOKUP,
            1_400,
            cpu=0,
            netns=NETNS_HOST,
            table=254,
            out_ifname="eth2",
            fib_lookup=FibLookup.RP_FILTER,
        ),
        hop(n, Hop.DROP, 2_000, cpu=0, ifindex=2, ifname="eth0", netns=NETNS_HOST, length=24, reason="IP_RPFILTER"),
    ]
    return Path(n, header, hops, Outcome.DROPPED, drop_reason="IP_RPFILTER")


def truncated_runt() -> Path:
    """A frame too short for its IP header: no identity, so a random trace id (both ways)."""
    header = PacketHeader(family=4, src="", dst="", protocol=0, length=10, truncated=True, no_transport=True)
    n = 11
    hops = [
        hop(
            n,
            Hop.DROP,
            0,
            cpu=0,
            ifindex=2,
            ifname="eth0",
            netns=NETNS_HOST,
            length=10,
            header=header,
            reason="PKT_TOO_SMALL",
            sampled_by=SampledBy.DROP,
        )
    ]
    return Path(n, header, hops, Outcome.DROPPED, drop_reason="PKT_TOO_SMALL", sampled_by=SampledBy.DROP)


def recorded_paths() -> list[Path]:
    return [
        forwarded_and_dropped(),
        delivered_into_a_pod(),
        sent_over_ipv6(),
        icmpv6_forwarded(),
        icmp_no_route(),
        drop_sampled(),
        incomplete_gre_out_of_order(),
        second_packet_of_the_udp_flow(),
        echo_reply_consumed(),
        rp_filter_strict_drop(),
    ]


@pytest.fixture
def reference() -> Iterator[SdkReference]:
    ref = SdkReference(RESOURCE, clock_offset_ns=lambda: OFFSET, pod_of=PODS.get)
    yield ref
    ref.shutdown()


def new_request(paths: list[Path]) -> bytes:
    chunks: list[bytes] = []
    encoder = SpanEncoder(
        lambda data, _count: chunks.append(data), clock_offset_ns=lambda: OFFSET, pod_of=PODS.get, strict=True
    )
    for path in paths:
        assert encoder.emit(path)
    return RequestFraming(RESOURCE, INSTRUMENTATION_NAME, __version__).request(chunks)


def canonical(request: bytes) -> ResourceSpans:
    """The request's one ResourceSpans, spans grouped by trace (root first), every span id replaced by
    (trace, position): equal for two encodings of the same paths whatever their random span ids."""
    message = ExportTraceServiceRequest.FromString(request)
    assert len(message.resource_spans) == 1 and len(message.resource_spans[0].scope_spans) == 1
    resource_spans = message.resource_spans[0]
    spans = list(resource_spans.scope_spans[0].spans)
    traces: dict[bytes, list[int]] = {}
    for index, span in enumerate(spans):
        traces.setdefault(span.trace_id, []).append(index)
    order: list[int] = []
    for trace_id in sorted(traces):
        members = traces[trace_id]
        roots = [i for i in members if not spans[i].parent_span_id]
        assert len(roots) == 1, "one root span per trace"
        order += roots + [i for i in members if i not in roots]
    labels: dict[bytes, bytes] = {}
    for trace_number, trace_id in enumerate(sorted(traces)):
        for position, index in enumerate(i for i in order if spans[i].trace_id == trace_id):
            labels[spans[index].span_id] = bytes((0, 0, 0, 0, 0, 0, trace_number, position + 1))
    out = ResourceSpans()
    out.CopyFrom(resource_spans)
    del out.scope_spans[0].spans[:]
    for index in order:
        span = out.scope_spans[0].spans.add()
        span.CopyFrom(spans[index])
        span.span_id = labels[span.span_id]
        if span.parent_span_id:
            span.parent_span_id = labels[span.parent_span_id]
        for link in span.links:
            link.span_id = labels[link.span_id]  # a link to a span not in the request fails here
    return out


def test_the_recorded_paths_cover_every_kind_of_hop() -> None:
    paths = recorded_paths()
    assert {h.hop for p in paths for h in p.hops} == set(Hop)
    assert {p.outcome for p in paths} == set(Outcome)
    assert {p.header.family for p in paths if p.header} == {4, 6}
    assert {p.header.protocol for p in paths if p.header} >= {1, 6, 17, 58}


def test_new_encoding_decodes_to_the_sdk_spans(reference: SdkReference) -> None:
    paths = recorded_paths()
    old = canonical(reference.request(paths))
    new = canonical(new_request(paths))
    old_spans, new_spans = old.scope_spans[0].spans, new.scope_spans[0].spans
    assert len(new_spans) == len(old_spans) == sum(len(p.hops) + 1 for p in paths)
    for before, after in zip(old_spans, new_spans, strict=True):
        assert after == before, f"span {before.name!r} differs:\nold:\n{before}\nnew:\n{after}"
    assert new.resource == old.resource
    assert new.scope_spans[0].scope == old.scope_spans[0].scope
    assert new == old  # and nothing else differs (schema urls, field presence)


def test_a_truncated_packet_decodes_to_the_sdk_spans_but_its_random_trace_id(reference: SdkReference) -> None:
    old = canonical(reference.request([truncated_runt()]))
    new = canonical(new_request([truncated_runt()]))
    old_ids = {span.trace_id for span in old.scope_spans[0].spans}
    new_ids = {span.trace_id for span in new.scope_spans[0].spans}
    assert len(old_ids) == len(new_ids) == 1 and old_ids != new_ids  # random, each way
    for message in (old, new):
        for span in message.scope_spans[0].spans:
            span.trace_id = bytes(16)
    assert new == old
    assert new.scope_spans[0].spans[0].name == "IPv4 header cut short (10 bytes)"
    # Two runts alike in every field are still two traces (a hash of nothing would join them).
    twice = ExportTraceServiceRequest.FromString(new_request([truncated_runt(), truncated_runt()]))
    assert len({span.trace_id for span in twice.resource_spans[0].scope_spans[0].spans}) == 2


def test_what_the_golden_comparison_sees(reference: SdkReference) -> None:
    """The comparison is not vacuous: the decoded spans carry what the paths hold."""
    new = canonical(new_request(recorded_paths()))
    spans = new.scope_spans[0].spans
    first, second = sorted(
        (s for s in spans if s.name == "UDP 10.0.1.5:4242 -> 10.0.2.9:53"), key=lambda s: s.start_time_unix_nano
    )
    assert not first.links
    assert [(link.trace_id, link.span_id) for link in second.links] == [(first.trace_id, first.span_id)]
    assert [(kv.key, kv.value.string_value) for kv in second.links[0].attributes] == [
        ("pktpath.link", "previous packet of flow")
    ]
    assert (second.status.code, second.status.message) == (2, "NO_SOCKET")
    assert (first.status.code, first.status.message) == (2, "NETFILTER_DROP")
    # Path 2: five hops in the pod's namespace (its first hop, on the host's veth, and so its root: none);
    # path 6: its only hop, and so its root.
    pod_spans = [s for s in spans if any(kv.key == "k8s.pod.name" for kv in s.attributes)]
    assert len(pod_spans) == 7
    rp_filter = [s.name for s in spans if s.name.startswith("rp_filter check")]
    assert rp_filter == [
        "rp_filter check: PASS",
        "rp_filter check: FAIL in strict mode, PASS in loose (route back via eth2, not iif eth0, table main)",
    ]
    assert all(s.flags == 0x100 for s in spans)
    assert {s.kind for s in spans} == {1}


def test_a_changed_attribute_is_caught(reference: SdkReference) -> None:
    """The golden comparison fails when one attribute of one hop differs."""
    paths = recorded_paths()
    old = canonical(reference.request(paths))
    changed = [*paths[:2], replace(paths[2], hops=[*paths[2].hops[:-1], replace(paths[2].hops[-1], verdict=17)])]
    new = canonical(new_request(changed + paths[3:]))
    assert new != old


def another_packet(path: Path, path_id: int, cpu_and_length: tuple[int, int] = (0, 0), **header: object) -> Path:
    """The same hops for another packet: another header, so another trace; `cpu_and_length` is added
    to every hop's CPU and skb length (a flow's packets spread over CPUs and vary in size)."""
    assert path.header is not None
    new_header = replace(path.header, **header)  # type: ignore[arg-type]
    cpu, length = cpu_and_length
    hops = [
        replace(
            h,
            path_id=path_id,
            header=new_header if h.header is not None else None,
            cpu=h.cpu + cpu,
            length=h.length + length,
        )
        for h in path.hops
    ]
    return replace(path, path_id=path_id, header=new_header, hops=hops)


def test_hops_alike_still_decode_to_their_own_spans_from_a_warm_encoder(reference: SdkReference) -> None:
    """The encoder reuses a hop span's encoded name, attributes and status for a later hop alike in every
    field but its packet's id, time, header, CPU and skb length. What else those show is part of the
    reuse key, so a warm encoder still writes each packet's own: every recorded path again as another
    packet (all reused), and again on other CPUs with other lengths, an rp_filter check after another
    receiving device, and a drop hop without a reason of its own on paths with different reasons."""
    rp_filter = rp_filter_strict_drop()
    received_elsewhere = another_packet(rp_filter, 30, src="198.18.6.6")
    received_elsewhere.hops[0] = replace(received_elsewhere.hops[0], ifname="eth3")
    no_route = icmp_no_route()
    paths = [
        *recorded_paths(),
        *(another_packet(p, 100 + p.path_id, extra=p.header.extra + 1) for p in recorded_paths() if p.header),
        *(
            another_packet(p, 200 + p.path_id, (1, 1400), extra=p.header.extra + 2)
            for p in recorded_paths()
            if p.header
        ),
        received_elsewhere,
        replace(another_packet(no_route, 31, ip_id=99), drop_reason="NO_ROUTE"),
        replace(another_packet(no_route, 32, ip_id=98), drop_reason="IP_INADDRERRORS"),
    ]
    old = canonical(reference.request(paths))
    new = canonical(new_request(paths))
    assert new == old
    names = [s.name for s in new.scope_spans[0].spans]
    elsewhere = "rp_filter check: FAIL in strict mode, PASS in loose (route back via eth2, not iif eth3, table main)"
    assert elsewhere in names
    statuses = {s.status.message for s in new.scope_spans[0].spans if s.name.startswith("DROPPED")}
    assert {"UNKNOWN", "NO_ROUTE", "IP_INADDRERRORS"} <= statuses


def test_a_hop_follows_its_namespace_to_another_pod() -> None:
    """A network namespace's pod can change (a pod replaced, its namespace's inode reused): a hop alike
    in every field gets the pod its namespace has when its path is encoded."""
    pods = dict(PODS)
    chunks: list[bytes] = []
    encoder = SpanEncoder(lambda data, _n: chunks.append(data), clock_offset_ns=lambda: OFFSET, pod_of=pods.get)
    first = delivered_into_a_pod()
    assert encoder.emit(first)
    pods[NETNS_POD] = PodRef("shop", "checkout-new", "node-1", "d00d-uid")
    assert encoder.emit(another_packet(first, 40, ip_id=78))
    request = ExportTraceServiceRequest.FromString(RequestFraming(RESOURCE, INSTRUMENTATION_NAME, "").request(chunks))
    spans = request.resource_spans[0].scope_spans[0].spans
    pod_names = [
        [kv.value.string_value for kv in s.attributes if kv.key == "k8s.pod.name"] for s in spans if s.parent_span_id
    ]
    per_path = len(first.hops)
    assert [n for names in pod_names[:per_path] for n in names] == ["checkout-7d9f"] * 5
    assert [n for names in pod_names[per_path:] for n in names] == ["checkout-new"] * 5


def test_a_hop_span_reads_nothing_its_reuse_key_leaves_out() -> None:
    """The encoder reuses a hop's span name, attributes and status for later hops alike but for their
    packet's id, time, header and sampled_by, their CPU and their skb length: for every kind of hop, the
    hop table's span name and the hop attributes must not read those (the CPU and the length are
    written per span, and only as the two attributes that say them)."""
    other_header = replace(UDP4, src="192.0.2.1", ip_id=1)
    checked = set()
    for path in recorded_paths():
        received_on = ""
        for h in path.hops:
            varied = replace(
                h,
                path_id=h.path_id + 1000,
                ts_ns=h.ts_ns + 12_345,
                header=other_header if h.header is None else None,
                sampled_by=SampledBy.DROP if h.sampled_by is SampledBy.RATE else SampledBy.RATE,
                cpu=h.cpu + 3,
                length=h.length + 700,
            )
            assert span_name(varied, received_on) == span_name(h, received_on), h.hop
            attributes = hop_attributes(h, path.drop_reason)
            varied_attributes = hop_attributes(varied, path.drop_reason)
            assert (varied_attributes.pop(CPU_ATTRIBUTE), varied_attributes.pop(SKB_LEN_ATTRIBUTE)) == (
                h.cpu + 3,
                h.length + 700,
            )
            del attributes[CPU_ATTRIBUTE], attributes[SKB_LEN_ATTRIBUTE]
            assert varied_attributes == attributes, h.hop
            checked.add(h.hop)
            if h.hop is Hop.NETIF_RECEIVE and h.ifname:
                received_on = h.ifname
    assert checked == set(Hop)
