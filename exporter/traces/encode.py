"""Finished Paths straight to OTLP protobuf bytes: one root span per packet, one child span per hop.

The kernel already chose which packets to follow, so the OpenTelemetry SDK's per-span machinery
(sampler per span, span processor, context, ReadableSpan, then the exporter's own message
building) has nothing left to decide and cost 97 % of the agent's time per path. Here a path is
written once, directly in the protobuf wire format of ``opentelemetry.proto.trace.v1.Span``
(https://github.com/open-telemetry/opentelemetry-proto, trace.proto): what cannot change between
spans (field tags, attribute keys, frequent attribute values, span names, the resource and the
scope) is encoded once and reused as bytes, and so is a hop's span for the later hops alike
in all that shows in it but the packet's id, time, CPU and skb length (``_PER_SPAN_FIELDS``).

The spans are the ones the SDK's builder made: same names and attributes (the hop table's span
names, ``exporter.model.hops``; the root's name and every span's attributes,
``exporter.traces.spans``), times, kind INTERNAL, status, the flow link, the deterministic trace id
(``exporter.traces.ids``), and the span flags the official OTLP encoder sets
(SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, parent local). tests/unit/traces/test_otlp_golden.py decodes
both with opentelemetry-proto and compares them.

``SpanEncoder.emit(path)`` encodes a path and hands ``(span bytes, span count)`` to its sink
(the export queue); ``RequestFraming`` wraps a batch of span bytes into an
``ExportTraceServiceRequest`` with the resource and scope.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
import struct
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from exporter.k8s.pods import PodRef
from exporter.model.hops import UNKNOWN_REASON, span_name
from exporter.model.path import Hop, HopEvent, Outcome, PacketHeader, Path
from exporter.traces.ids import packet_trace_id, random_trace_id, span_ids, wall_minus_monotonic_ns
from exporter.traces.spans import (
    CPU_ATTRIBUTE,
    SKB_LEN_ATTRIBUTE,
    FlowKey,
    drop_reason,
    flow_key,
    hop_attributes,
    root_attributes,
    root_span_name,
)

__all__ = ["LINK_ATTRIBUTES", "RequestFraming", "SpanEncoder", "encode_attributes", "varint"]

log = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "pktpath"
LINK_ATTRIBUTES: dict[str, Any] = {"pktpath.link": "previous packet of flow"}

# Span (trace.proto) field tags: (field number << 3) | wire type; 2 = length-delimited, 0 = varint,
# 1 = fixed64, 5 = fixed32.
_TRACE_ID = b"\x0a\x10"  # 1: bytes trace_id, 16 bytes
_SPAN_ID = b"\x12\x08"  # 2: bytes span_id, 8 bytes
_PARENT_SPAN_ID = b"\x22\x08"  # 4: bytes parent_span_id, 8 bytes
_NAME = 0x2A  # 5: string name
_ATTRIBUTE = 0x4A  # 9: repeated KeyValue attributes
_LINK = 0x6A  # 13: repeated Link links
_STATUS = 0x7A  # 15: Status status
# 6: kind = SPAN_KIND_INTERNAL (1), then 7: fixed64 start_time_unix_nano, 8: fixed64 end_time_unix_nano.
_KIND_AND_TIMES = struct.Struct("<3BQBQ")
# 16: fixed32 flags = SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK (0x100): the parent, when there is
# one, is local. The official encoder sets it on every span and link since SDK 1.27.
_SPAN_FLAGS = b"\x85\x01" + struct.pack("<I", 0x100)
_STATUS_CODE_ERROR = b"\x18\x02"  # 3: code = STATUS_CODE_ERROR
# Link: 1 trace_id, 2 span_id, 4 repeated KeyValue attributes, 6 fixed32 flags.
_LINK_ATTRIBUTE = 0x22
_LINK_FLAGS = b"\x35" + struct.pack("<I", 0x100)
# ScopeSpans: 1 InstrumentationScope scope, 2 repeated Span spans.
_SCOPE_SPAN = 0x12

_DROP, _NETIF_RECEIVE = Hop.DROP, Hop.NETIF_RECEIVE

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_DOUBLE = struct.Struct("<d")
_ONE_BYTE = [bytes((n,)) for n in range(128)]
# Encoded attribute (key, value) pairs and span names that recur: hop names, interfaces, network
# namespaces, verdicts ... (a hop's CPU and skb length have caches of their own). Cleared when full,
# so that the memory stays bounded. Values that identify one packet seldom recur and are not cached:
# they would only fill the cache (and its memory's high-water mark) and clear it of the values that do.
_CACHE_LIMIT = 4096
_CACHED_TYPES = frozenset((str, int))
_PER_PACKET_ATTRIBUTES = frozenset(("pktpath.ip.id", "pktpath.tcp.seq"))

# A hop's span is its packet's trace and span ids, its times, its CPU and skb length, and then a
# name, attributes and a status that depend only on the hop's other fields, the device the packet
# was last received on (rp_filter names it), the path's drop reason (a drop hop without one of its
# own shows it) and the pod of the hop's network namespace. Packets of a flow repeat those, so their
# encoded bytes are cached under them; the CPU and the length (a flow's packets spread over CPUs
# and vary in size) are written per span, each value's field cached by itself. The key holds every HopEvent
# field but those and the ones written per span or on the root span only (path id, time, header,
# sampled_by): a field added to HopEvent joins the key unless it is named here, so the cache can
# never serve a stale span.
_PER_SPAN_FIELDS = frozenset(("path_id", "ts_ns", "header", "sampled_by", "cpu", "length"))
_hop_shape = operator.attrgetter(*(f.name for f in dataclasses.fields(HopEvent) if f.name not in _PER_SPAN_FIELDS))
_HOP_CACHE_LIMIT = 1024
# Bytes of a child span besides its name, attributes and status: trace id field (18), span id
# field (10), parent span id field (10), kind and times (20).
_CHILD_FIXED = 18 + 10 + 10 + _KIND_AND_TIMES.size

AttributeValue = Any  # str, bool, int, float, bytes, or a sequence of one of those


def varint(value: int) -> bytes:
    """The protobuf base-128 varint of a non-negative integer."""
    if value < 128:
        return _ONE_BYTE[value]
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    size = len(payload)
    if size < 128:
        return bytes((tag, size)) + payload
    return bytes((tag,)) + varint(size) + payload


def _any_value(value: AttributeValue) -> bytes | None:
    """common.proto AnyValue; None for what OpenTelemetry does not allow as an attribute value."""
    kind = type(value)
    if kind is str:
        return _field(0x0A, value.encode("utf-8", "surrogateescape"))  # 1: string_value
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"  # 2: bool_value
    if kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            return None
        return b"\x18" + varint(value & 0xFFFFFFFFFFFFFFFF)  # 3: int64 int_value, two's complement
    if kind is float:
        return b"\x21" + _DOUBLE.pack(value)  # 4: double_value
    if kind is bytes:
        return _field(0x3A, value)  # 7: bytes_value
    if isinstance(value, (list, tuple)):
        items = [_any_value(item) for item in value]
        if any(item is None for item in items):
            return None
        # 5: ArrayValue array_value { 1: repeated AnyValue values }
        return _field(0x2A, b"".join(_field(0x0A, item) for item in items if item is not None))
    if isinstance(value, str):  # a str subclass (an enum member): its text
        return _any_value(str.__str__(value))
    if isinstance(value, int):  # an int subclass other than bool: its number
        return _any_value(int(value))
    return None


def _key_value(tag: int, key: str, value: AttributeValue) -> bytes | None:
    """One attribute as a length-delimited KeyValue field with ``tag``; None when it cannot be sent."""
    encoded = _any_value(value)
    if encoded is None or not key:
        return None
    return _field(tag, _field(0x0A, key.encode("utf-8", "surrogateescape")) + _field(0x12, encoded))


def encode_attributes(tag: int, attributes: Mapping[str, AttributeValue]) -> bytes:
    """Every attribute as a KeyValue field with ``tag``; values OpenTelemetry rejects are left out, as the SDK does."""
    return b"".join(kv for key, value in attributes.items() if (kv := _key_value(tag, key, value)) is not None)


_LINK_ATTRIBUTES = encode_attributes(_LINK_ATTRIBUTE, LINK_ATTRIBUTES)
# The official encoder always writes the Status message, so an unset status is present and empty;
# the span's flags follow it.
_UNSET_TAIL = b"\x7a\x00" + _SPAN_FLAGS


def pod_attributes(pod: PodRef | None) -> dict[str, AttributeValue]:
    """OTel k8s semantic conventions for the pod whose network namespace a hop ran in ({} for none)."""
    if pod is None:
        return {}
    attrs: dict[str, AttributeValue] = {"k8s.namespace.name": pod.namespace, "k8s.pod.name": pod.name}
    if pod.uid:
        attrs["k8s.pod.uid"] = pod.uid
    if pod.node:
        attrs["k8s.node.name"] = pod.node
    return attrs


class RequestFraming:
    """ExportTraceServiceRequest bytes around a batch of encoded spans, with one resource and scope.

    The resource's and scope's bytes are built once: a batch is only the spans, joined.
    """

    def __init__(self, resource: Mapping[str, AttributeValue], scope_name: str, scope_version: str) -> None:
        # ResourceSpans 1: Resource resource { 1: repeated KeyValue attributes }
        self.resource_field = _field(0x0A, encode_attributes(0x0A, resource))
        # ScopeSpans 1: InstrumentationScope scope { 1: name, 2: version }
        scope = _field(0x0A, scope_name.encode()) + (_field(0x12, scope_version.encode()) if scope_version else b"")
        self.scope_field = _field(0x0A, scope)

    def request(self, spans: Iterable[bytes]) -> bytes:
        """ExportTraceServiceRequest { 1: ResourceSpans { resource, 2: ScopeSpans { scope, 2: spans } } }."""
        scope_spans = _field(0x12, b"".join((self.scope_field, *spans)))
        return _field(0x0A, self.resource_field + scope_spans)


# Decides per packet whether its trace is sent: (trace id, root span name, root attributes) -> bool.
Sampler = Callable[[int, str, Mapping[str, AttributeValue]], bool]
# Receives each encoded path: (the spans' bytes, how many spans).
SpanSink = Callable[[bytes, int], None]


class SpanEncoder:
    """Turns finished Paths into OTLP spans (protobuf bytes) and hands them to ``sink``.

    ``clock_offset_ns()`` returns wall-clock minus CLOCK_MONOTONIC nanoseconds (the kernel's hop
    timestamps are CLOCK_MONOTONIC); it is called once per path, so a clock step is followed.
    ``flow_links`` bounds the LRU of flows whose previous packet a new root span links to (0: no
    links). ``sampler`` (OTEL_TRACES_SAMPLER) may refuse a packet's trace: nothing is sent,
    ``emit`` returns "" and ``sampled_out`` counts it. ``refused(n)`` says whether the sink would
    refuse ``n`` spans now, and has then counted them itself (the export queue when it is full):
    such a path is not encoded, and ``emit`` returns its trace id as for a path handed on, whose
    spans the sink would have dropped the same way. ``strict`` re-raises unexpected errors
    instead of counting them (for tests).

    ``emit()`` never raises (unless strict): a path without hops or header is skipped and counted
    in ``skipped[reason]`` ("no_hops", "no_header", "error"). Safe to call from several threads.
    The encoder is also a path sink itself: ``encoder(path)`` is ``emit(path)``.
    """

    def __init__(
        self,
        sink: SpanSink,
        *,
        clock_offset_ns: Callable[[], int] | None = None,
        flow_links: int = 4096,
        strict: bool = False,
        pod_of: Callable[[int], PodRef | None] | None = None,
        sampler: Sampler | None = None,
        refused: Callable[[int], bool] | None = None,
    ) -> None:
        if flow_links < 0:
            raise ValueError(f"flow_links must be >= 0, got {flow_links}")
        self._sink = sink
        self._refused = refused
        self._clock_offset_ns = clock_offset_ns or wall_minus_monotonic_ns
        self._flow_links = flow_links
        self._strict = strict
        self._pod_of = pod_of  # netns inode -> pod (kubernetes.pod_labels), for k8s.* attributes
        self._sampler = sampler
        # flow -> (trace id, span id) of its last packet's root span, least recently seen first
        self._flows: OrderedDict[FlowKey, tuple[bytes, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._attributes: dict[tuple[str, AttributeValue], bytes] = {}
        self._names: dict[str, bytes] = {}
        # (hop shape, received on, path's drop reason, pod) -> (name field, attribute fields before
        # the CPU, attribute fields after the skb length and the status, their total length); see
        # _PER_SPAN_FIELDS
        self._hops: dict[tuple[Any, ...], tuple[bytes, bytes, bytes, int]] = {}
        # a hop's CPU and skb length -> its attribute field
        self._cpus: dict[int, bytes] = {}
        self._lengths: dict[int, bytes] = {}
        self.emitted = 0  # paths turned into a trace
        self.sampled_out = 0  # paths the sampler refused
        self.skipped: Counter[str] = Counter()

    def __call__(self, path: Path) -> None:
        self.emit(path)

    def emit(self, path: Path) -> str:
        """Encode ``path`` and hand it on; returns its trace id as 32 hex digits, or "" when not sent."""
        if not path.hops:
            self._skip("no_hops")
            return ""
        header = path.header
        if header is None:
            self._skip("no_header")
            return ""
        try:
            encoded = self._encode(path, header, self._refused)
            if encoded is None:
                return ""
            trace_id, data, count = encoded
            if data is not None:
                self._sink(data, count)
        except Exception:
            if self._strict:
                raise
            # The traceback once; after that a bug would flood the log at the packet rate.
            first = not self.skipped["error"]
            log.log(
                logging.ERROR if first else logging.DEBUG,
                "could not turn path %s into spans (counted in skipped['error'])",
                path.path_id,
                exc_info=first,
            )
            self._skip("error")
            return ""
        return f"{trace_id:032x}"

    def encode(self, path: Path) -> tuple[int, bytes, int] | None:
        """(trace id, spans' bytes, span count) of ``path``, without handing it on; None when not sent."""
        if not path.hops or path.header is None:
            return None
        encoded = self._encode(path, path.header, None)  # encoded whatever the sink would take
        if encoded is None:
            return None
        trace_id, data, count = encoded
        assert data is not None
        return trace_id, data, count

    def _skip(self, reason: str) -> None:
        with self._lock:
            self.skipped[reason] += 1

    def _k8s(self, netns: int) -> dict[str, AttributeValue]:
        return pod_attributes(self._pod_of(netns) if self._pod_of is not None and netns else None)

    def _encode_attributes(self, attributes: Mapping[str, AttributeValue]) -> list[bytes]:
        """The span's attribute fields, from the cache where it has them (one C-level pass when it has all)."""
        cache = self._attributes
        encoded: list[bytes | None] = list(map(cache.get, attributes.items()))
        # The cache holds str and int values only: a bool (True == 1) or a float (1.0 == 1) would
        # find an int's entry, so any other type takes the slow path, which checks each value.
        if None not in encoded and _CACHED_TYPES.issuperset(map(type, attributes.values())):
            return encoded  # type: ignore[return-value]
        out = []
        for item in attributes.items():
            kind = type(item[1])
            if (kind is str or kind is int) and item[0] not in _PER_PACKET_ATTRIBUTES:
                kv = cache.get(item)
                if kv is None:
                    kv = _key_value(_ATTRIBUTE, *item)
                    if kv is None:
                        continue
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()
                    cache[item] = kv
            else:
                kv = _key_value(_ATTRIBUTE, *item)
                if kv is None:
                    continue
            out.append(kv)
        return out

    def _name(self, name: str) -> bytes:
        field = self._names.get(name)
        if field is None:
            field = _field(_NAME, name.encode("utf-8", "surrogateescape"))
            if len(self._names) >= _CACHE_LIMIT:
                self._names.clear()
            self._names[name] = field
        return field

    def _encode(
        self, path: Path, header: PacketHeader, refused: Callable[[int], bool] | None
    ) -> tuple[int, bytes | None, int] | None:
        """(trace id, spans' bytes, span count); bytes None when `refused` took the spans unencoded."""
        hops = path.hops
        offset = self._clock_offset_ns()
        walls = [hop.ts_ns + offset for hop in hops]
        start = walls[0]
        end = max(walls)
        # A packet whose IP header is cut short has no identity to share with other nodes: two such
        # packets would hash alike, so each gets its own random trace.
        trace_id = random_trace_id() if header.truncated else packet_trace_id(header, start)
        name = root_span_name(header)
        attributes = root_attributes(path, header) | self._k8s(hops[0].netns)
        if self._sampler is not None and not self._sampler(trace_id, name, attributes):
            with self._lock:
                self.sampled_out += 1
            return None

        ids = span_ids(len(hops) + 1)
        root_id = ids[0]
        trace_bytes = trace_id.to_bytes(16, "big")
        previous = None
        if self._flow_links:
            flow = flow_key(header)
            flows = self._flows
            with self._lock:
                previous = flows.get(flow)
                flows[flow] = (trace_bytes, root_id)
                flows.move_to_end(flow)
                if len(flows) > self._flow_links:
                    flows.popitem(last=False)
                self.emitted += 1
        else:
            with self._lock:
                self.emitted += 1
        # Links (above) are kept as if the path were sent: the next packet of the flow links to
        # this one whether or not its spans fit.  The encoding is most of a path's cost (and
        # with a collector down, most paths find the queue full): none for spans already dropped.
        if refused is not None and refused(len(hops) + 1):
            return trace_id, None, len(hops) + 1

        head = _TRACE_ID + trace_bytes + _SPAN_ID
        parts = [head, root_id, self._name(name), _KIND_AND_TIMES.pack(0x30, 1, 0x39, start, 0x41, end)]
        parts += self._encode_attributes(attributes)
        if previous is not None:
            parts.append(_link(*previous))
        parts.append(_status(drop_reason(path)) if path.outcome is Outcome.DROPPED else _UNSET_TAIL)
        body = b"".join(parts)
        chunks = [_span_prefix(len(body)), body]

        child_head = _PARENT_SPAN_ID + root_id
        pod_of = self._pod_of
        cache = self._hops
        cpu_fields, length_fields = self._cpus, self._lengths
        path_reason = path.drop_reason
        last = len(hops) - 1
        received_on = ""  # hops.receiving_device(path, index), kept as the loop goes: rp_filter's iif
        for index, hop in enumerate(hops):
            hop_start = walls[index]
            if index < last:
                hop_end = walls[index + 1]
                if hop_end < hop_start:
                    hop_end = hop_start
            else:
                hop_end = hop_start
            kind = hop.hop
            pod = pod_of(hop.netns) if pod_of is not None and hop.netns else None
            key = (_hop_shape(hop), received_on, path_reason if kind is _DROP else None, pod)
            cached = cache.get(key)
            if cached is None:
                cached = self._hop_span(hop, path_reason, received_on, pod)
                if len(cache) >= _HOP_CACHE_LIMIT:
                    cache.clear()
                cache[key] = cached
            name_field, before, after, size = cached
            cpu = cpu_fields.get(hop.cpu) or self._per_span(cpu_fields, CPU_ATTRIBUTE, hop.cpu)
            length = length_fields.get(hop.length) or self._per_span(length_fields, SKB_LEN_ATTRIBUTE, hop.length)
            chunks += (
                _span_prefix(size + len(cpu) + len(length)),
                head,
                ids[index + 1],
                child_head,
                name_field,
                _KIND_AND_TIMES.pack(0x30, 1, 0x39, hop_start, 0x41, hop_end),
                before,
                cpu,
                length,
                after,
            )
            if kind is _NETIF_RECEIVE and hop.ifname:
                received_on = hop.ifname
        return trace_id, b"".join(chunks), len(hops) + 1

    def _hop_span(
        self, hop: HopEvent, path_reason: str | None, received_on: str, pod: PodRef | None
    ) -> tuple[bytes, bytes, bytes, int]:
        """A hop span's parts that its cache key determines: its name; its attributes before the CPU;
        its attributes after the skb length, then its status; and the length of its span without
        those two attributes."""
        attributes = list(hop_attributes(hop, path_reason).items())
        cpu_at = [key for key, _value in attributes].index(CPU_ATTRIBUTE)
        if attributes[cpu_at + 1][0] != SKB_LEN_ATTRIBUTE:
            raise RuntimeError("hop_attributes must put pktpath.skb.len right after pktpath.cpu")
        rest = dict(attributes[cpu_at + 2 :])
        if pod is not None:
            rest |= pod_attributes(pod)
        before = b"".join(self._encode_attributes(dict(attributes[:cpu_at])))
        after = b"".join(self._encode_attributes(rest))
        if hop.hop is Hop.DROP:
            after += _status(hop.reason or path_reason or UNKNOWN_REASON)
        else:
            after += _UNSET_TAIL
        name_field = self._name(span_name(hop, received_on))
        return name_field, before, after, _CHILD_FIXED + len(name_field) + len(before) + len(after)

    @staticmethod
    def _per_span(fields: dict[int, bytes], key: str, value: int) -> bytes:
        """A hop's CPU or skb length attribute field, cached by value in `fields`."""
        kv = _key_value(_ATTRIBUTE, key, value)
        assert kv is not None  # both are unsigned 32-bit numbers
        if len(fields) >= _CACHE_LIMIT:
            fields.clear()
        fields[value] = kv
        return kv


def _span_prefix(size: int) -> bytes:
    """Tag and length of one ScopeSpans.spans field; a span is 128 bytes to 16 KiB (a two-byte length)."""
    if 128 <= size < 16384:
        return bytes((_SCOPE_SPAN, (size & 0x7F) | 0x80, size >> 7))
    return bytes((_SCOPE_SPAN,)) + varint(size)


def _link(trace_bytes: bytes, span_id: bytes) -> bytes:
    return _field(_LINK, b"".join((_TRACE_ID, trace_bytes, _SPAN_ID, span_id, _LINK_ATTRIBUTES, _LINK_FLAGS)))


def _status(message: str) -> bytes:
    """Status { 2: message, 3: code = ERROR }, then the span's flags (the span's last fields)."""
    status = _field(_STATUS, _field(0x12, message.encode("utf-8", "surrogateescape")) + _STATUS_CODE_ERROR)
    return status + _SPAN_FLAGS
