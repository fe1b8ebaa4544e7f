"""Packet paths as OpenTelemetry spans: one trace per sampled packet, one child span per hop.

A finished ``Path`` becomes a root span for the packet (named after its flow, e.g.
``UDP 10.0.1.5:4242 -> 10.0.2.9:53``) and one child span per hop, all timed with the
kernel's timestamps converted to wall-clock time. See docs/traces.md for the full shape.

The trace id is not random: ``packet_trace_id`` derives it from the packet's identity, so that
agents on several nodes that see the same packet put their spans into the same trace. The SDK
takes trace ids from the TracerProvider's ``IdGenerator``, so the provider must be built with a
``PacketIdGenerator`` (``make_tracer_provider`` does it); ``SpanBuilder`` then sets the id of
each root span through it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import struct
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from exporter import __version__
from exporter.k8s.pods import PodRef
from exporter.model import hops
from exporter.model import vocabulary as names
from exporter.model.path import Hop, HopEvent, Outcome, PacketHeader, Path

__all__ = [
    "TRACE_ID_BUCKET_NS",
    "PacketIdGenerator",
    "SpanBuilder",
    "make_tracer_provider",
    "packet_trace_id",
]

log = logging.getLogger(__name__)

TRACE_ID_BUCKET_NS = 1_000_000_000
INSTRUMENTATION_NAME = "pktpath"
LINK_ATTRIBUTES: dict[str, AttributeValue] = {"pktpath.link": "previous packet of flow"}

IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = (names.IPPROTO_ICMP, names.IPPROTO_TCP, names.IPPROTO_UDP,
                                                          names.IPPROTO_ICMPV6)
_UNKNOWN_REASON = hops.UNKNOWN_REASON

FlowKey = tuple[int, str, str, int, int, int]


# --- the trace id ----------------------------------------------------------------------------


def _address_bytes(text: str) -> bytes:
    # Packed form, so "2001:db8::1" and "2001:0db8:0:0::1" (two spellings, one address) hash alike.
    try:
        return ipaddress.ip_address(text).packed
    except ValueError:
        return text.encode("utf-8", "surrogateescape")


def packet_trace_id(header: PacketHeader, wall_ns: int, bucket_ns: int = TRACE_ID_BUCKET_NS) -> int:
    """A 128-bit trace id (never 0) from what identifies this packet on every node it crosses.

    Hashed (BLAKE2b, 16-byte digest) over, in a fixed binary layout: a version tag, the address
    family, source and destination address (packed, so spelling does not matter), IP protocol,
    source and destination port, the IPv4 identification field, the TCP sequence number (TCP
    only), ``header.extra`` (the kernel's per-packet discriminator: TCP sequence, ICMP echo
    id/sequence, or the first 8 UDP payload bytes), and the coarse time bucket
    ``wall_ns // bucket_ns`` (``wall_ns``: wall-clock time of the packet's first hop on this node).

    Two agents on two nodes that see the same packet compute the same id, so their spans land in
    one trace. Limits:

    * the bucket: when the packet crosses a bucket boundary between the two nodes (or the nodes'
      clocks disagree by enough to put it in different buckets) the ids differ and the packet shows
      up as two traces. With 1 s buckets and a transit of 100 us, that is 1 packet in 10 000, more
      with clock skew: keep nodes NTP-synchronised;
    * identity: packets identical in every hashed field within one bucket share a trace. For
      IPv4 the IP id tells them apart (but unconnected UDP with DF sends id 0), and ``extra``
      adds the TCP sequence, ICMP echo id/sequence or first UDP payload bytes: only packets
      equal in those too (pure ACKs of one flow, repeated identical datagrams) share a trace;
    * rewriting: NAT (addresses, ports), or middleboxes that rewrite the IP id or TCP sequence
      numbers, change the id between nodes.
    """
    ident = header.ip_id if header.family == 4 else 0
    seq = header.tcp_seq if header.protocol == IPPROTO_TCP else 0
    material = b"".join(
        (
            b"pktpath/trace-id/v2\0",
            struct.pack("!BB", header.family & 0xFF, header.protocol & 0xFF),
            _address_bytes(header.src),
            b"\0",
            _address_bytes(header.dst),
            b"\0",
            struct.pack(
                "!HHHIQq",
                header.sport & 0xFFFF,
                header.dport & 0xFFFF,
                ident & 0xFFFF,
                seq & 0xFFFFFFFF,
                header.extra & 0xFFFFFFFFFFFFFFFF,
                wall_ns // bucket_ns,
            ),
        )
    )
    trace_id = int.from_bytes(hashlib.blake2b(material, digest_size=16).digest(), "big")
    return trace_id or 1


class PacketIdGenerator(IdGenerator):
    """Random span ids and trace ids, except for a root span started inside ``use_trace_id()``.

    The id set by ``use_trace_id`` is per thread and used once: the next trace id the SDK asks
    for on that thread (i.e. the next root span) gets it, later ones are random again.
    """

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._local = threading.local()

    @contextmanager
    def use_trace_id(self, trace_id: int) -> Iterator[None]:
        if not 0 < trace_id < 1 << 128:
            raise ValueError(f"trace id {trace_id:#x} is not a non-zero 128-bit number")
        self._local.trace_id = trace_id
        try:
            yield
        finally:
            self._local.trace_id = 0

    def generate_trace_id(self) -> int:
        trace_id: int = getattr(self._local, "trace_id", 0)
        if trace_id:
            self._local.trace_id = 0
            return trace_id
        return self._random.generate_trace_id()

    def generate_span_id(self) -> int:
        return self._random.generate_span_id()

    def random_trace_id(self) -> int:
        return self._random.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        # W3C "random trace id" flag: ours are hashes, uniformly spread but not random.
        return False


def make_tracer_provider(
    resource: Resource | None = None,
    id_generator: PacketIdGenerator | None = None,
    *,
    shutdown_on_exit: bool = True,
) -> TracerProvider:
    """A TracerProvider whose trace ids ``SpanBuilder`` can set. Add span processors to it as usual.

    The sampler is the SDK's default (``OTEL_TRACES_SAMPLER``, else parent-based always-on); with
    ``traceidratio`` the decision follows the deterministic trace id, so it agrees across nodes.
    """
    return TracerProvider(
        resource=resource,
        id_generator=id_generator or PacketIdGenerator(),
        shutdown_on_exit=shutdown_on_exit,
    )


# --- names and attributes --------------------------------------------------------------------


def _wall_minus_monotonic() -> int:
    return time.time_ns() - time.monotonic_ns()


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


def _drop_reason(path: Path) -> str:
    if path.drop_reason:
        return path.drop_reason
    return next((h.reason for h in path.hops if h.hop is Hop.DROP and h.reason), _UNKNOWN_REASON)


def root_attributes(path: Path, header: PacketHeader) -> dict[str, AttributeValue]:
    if header.truncated:
        # Nothing but the family and the bytes present is known, and nothing else is made up.
        return {"network.type": "ipv6" if header.family == 6 else "ipv4", "pktpath.ip.protocol": names.TRUNCATED,
                "pktpath.ip.truncated": True, "pktpath.ip.length": header.length,
                "pktpath.outcome": path.outcome.value, "pktpath.sampled_by": path.sampled_by.value,
                "pktpath.hop_count": len(path.hops),
                **({"pktpath.drop_reason": _drop_reason(path)} if path.outcome is Outcome.DROPPED else {})}
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
        attrs["pktpath.drop_reason"] = _drop_reason(path)
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
        attrs["pktpath.fib.result"] = names.route_result(hop.verdict)
        if hop.fib_lookup is not None:
            attrs["pktpath.fib.lookup"] = hop.fib_lookup.value
        if hop.out_ifname:
            attrs["pktpath.fib.oif"] = hop.out_ifname
    return attrs


def flow_key(header: PacketHeader) -> FlowKey:
    return (header.family, header.src, header.dst, header.protocol, header.sport, header.dport)


# --- the builder -----------------------------------------------------------------------------


class SpanBuilder:
    """Turns finished Paths into spans on ``tracer_provider`` (one built by ``make_tracer_provider``).

    ``clock_offset_ns()`` returns wall-clock minus CLOCK_MONOTONIC nanoseconds (the kernel's hop
    timestamps are CLOCK_MONOTONIC); it is called once per path, so a clock step is followed.
    ``flow_links`` bounds the LRU of flows whose previous packet a new root span links to (0: no
    links). ``strict`` re-raises unexpected errors instead of counting them (for tests).

    ``emit()`` never raises (unless strict): a path without hops or header is skipped and
    counted in ``skipped[reason]`` ("no_hops", "no_header", "error"). Safe to call from several
    threads. The builder is also a path sink itself: ``builder(path)`` is ``emit(path)``.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider,
        *,
        clock_offset_ns: Callable[[], int] | None = None,
        flow_links: int = 4096,
        strict: bool = False,
        pod_of: Callable[[int], PodRef | None] | None = None,
    ) -> None:
        id_generator = getattr(tracer_provider, "id_generator", None)
        if not isinstance(id_generator, PacketIdGenerator):
            raise TypeError("SpanBuilder needs a TracerProvider whose id_generator is a PacketIdGenerator "
                            "(build it with make_tracer_provider())")
        if flow_links < 0:
            raise ValueError(f"flow_links must be >= 0, got {flow_links}")
        self._ids = id_generator
        self._tracer = tracer_provider.get_tracer(INSTRUMENTATION_NAME, __version__)
        self._clock_offset_ns = clock_offset_ns or _wall_minus_monotonic
        self._flow_links = flow_links
        self._strict = strict
        self._pod_of = pod_of  # netns inode -> pod (kubernetes.pod_labels), for k8s.* attributes
        self._flows: OrderedDict[FlowKey, SpanContext] = OrderedDict()
        self._lock = threading.Lock()
        self.emitted = 0  # paths turned into a trace
        self.skipped: Counter[str] = Counter()

    def __call__(self, path: Path) -> None:
        self.emit(path)

    def _k8s(self, netns: int) -> dict[str, AttributeValue]:
        """OTel k8s semantic conventions for the pod whose network namespace a hop ran in."""
        pod = self._pod_of(netns) if self._pod_of is not None and netns else None
        if pod is None:
            return {}
        attrs: dict[str, AttributeValue] = {"k8s.namespace.name": pod.namespace, "k8s.pod.name": pod.name}
        if pod.uid:
            attrs["k8s.pod.uid"] = pod.uid
        if pod.node:
            attrs["k8s.node.name"] = pod.node
        return attrs

    def emit(self, path: Path) -> str:
        """Emit ``path`` as spans; returns its trace id as 32 hex digits, or "" when skipped."""
        if not path.hops:
            self._skip("no_hops")
            return ""
        header = path.header
        if header is None:
            self._skip("no_header")
            return ""
        try:
            trace_id = self._emit(path, header)
        except Exception:
            if self._strict:
                raise
            # The traceback once; after that a bug would flood the log at the packet rate.
            first = not self.skipped["error"]
            log.log(logging.ERROR if first else logging.DEBUG, "could not turn path %s into spans (counted in "
                    "skipped['error'])", path.path_id, exc_info=first)
            self._skip("error")
            return ""
        with self._lock:
            self.emitted += 1
        return trace.format_trace_id(trace_id)

    def _skip(self, reason: str) -> None:
        with self._lock:
            self.skipped[reason] += 1

    def _previous_root(self, key: FlowKey) -> SpanContext | None:
        if not self._flow_links:
            return None
        with self._lock:
            return self._flows.get(key)

    def _remember_root(self, key: FlowKey, root: SpanContext) -> None:
        if not self._flow_links:
            return
        with self._lock:
            self._flows[key] = root
            self._flows.move_to_end(key)
            while len(self._flows) > self._flow_links:
                self._flows.popitem(last=False)

    def _emit(self, path: Path, header: PacketHeader) -> int:
        offset = self._clock_offset_ns()
        walls = [hop.ts_ns + offset for hop in path.hops]
        start = walls[0]
        end = max(walls)
        # A packet whose IP header is cut short has no identity to share with other nodes: two such
        # packets would hash alike, so each gets its own random trace.
        trace_id = self._ids.random_trace_id() if header.truncated else packet_trace_id(header, start)
        key = flow_key(header)
        previous = self._previous_root(key)
        links = [Link(previous, LINK_ATTRIBUTES)] if previous is not None else []

        with self._ids.use_trace_id(trace_id):
            root = self._tracer.start_span(
                root_span_name(header),
                context=Context(),  # never a child of whatever span is current on this thread
                kind=SpanKind.INTERNAL,
                attributes=root_attributes(path, header) | self._k8s(path.hops[0].netns),
                links=links,
                start_time=start,
            )
        if path.outcome is Outcome.DROPPED:
            root.set_status(Status(StatusCode.ERROR, _drop_reason(path)))
        parent = trace.set_span_in_context(root)
        last = len(path.hops) - 1
        for index, hop in enumerate(path.hops):
            hop_start = walls[index]
            hop_end = max(hop_start, walls[index + 1]) if index < last else hop_start
            span = self._tracer.start_span(
                hops.span_name(hop, hops.receiving_device(path, index)),
                context=parent,
                kind=SpanKind.INTERNAL,
                attributes=hop_attributes(hop, path) | self._k8s(hop.netns),
                start_time=hop_start,
            )
            if hop.hop is Hop.DROP:
                span.set_status(Status(StatusCode.ERROR, hop.reason or path.drop_reason or _UNKNOWN_REASON))
            span.end(end_time=hop_end)
        root.end(end_time=end)
        self._remember_root(key, root.get_span_context())
        return trace_id
