"""The old way to turn Paths into OTLP, kept as the reference the fast encoder is held to.

Until the fast path (exporter/traces/encode.py), each finished Path went through the OpenTelemetry
SDK: a TracerProvider whose id generator hands out the packet's deterministic trace id,
``Tracer.start_span`` per hop, and the official OTLP encoder (``encode_spans``). This module keeps
that builder, for tests (tests/unit/traces/test_otlp_golden.py) and for the bench's old-versus-new ratio
(bench/paths.py), and nowhere else: the agent never imports it.

It calls the same naming functions (exporter.model.hops, exporter.traces.spans) as the encoder, so
the golden test compares the encoding, not the names, and stays valid while the names change.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode

from exporter import __version__
from exporter.k8s.pods import PodRef
from exporter.model import hops
from exporter.model.path import Hop, Outcome, Path
from exporter.traces.encode import INSTRUMENTATION_NAME, LINK_ATTRIBUTES, pod_attributes
from exporter.traces.ids import packet_trace_id
from exporter.traces.spans import FlowKey, drop_reason, flow_key, hop_attributes, root_attributes, root_span_name


class PacketIdGenerator(IdGenerator):
    """Random ids, except the trace id of a root span started inside ``use_trace_id()`` (once, per thread)."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._local = threading.local()

    @contextmanager
    def use_trace_id(self, trace_id: int) -> Iterator[None]:
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
        return False


class SdkSpanBuilder:
    """Paths -> SDK spans, exactly as pktpath built them before the fast encoder (without its error counting)."""

    def __init__(
        self,
        tracer_provider: TracerProvider,
        ids: PacketIdGenerator,
        *,
        clock_offset_ns: Callable[[], int],
        flow_links: int = 4096,
        pod_of: Callable[[int], PodRef | None] | None = None,
    ) -> None:
        self._ids = ids
        self._tracer = tracer_provider.get_tracer(INSTRUMENTATION_NAME, __version__)
        self._clock_offset_ns = clock_offset_ns
        self._flow_links = flow_links
        self._pod_of = pod_of
        self._flows: OrderedDict[FlowKey, SpanContext] = OrderedDict()

    def _k8s(self, netns: int) -> dict[str, Any]:
        return pod_attributes(self._pod_of(netns) if self._pod_of is not None and netns else None)

    def emit(self, path: Path) -> str:
        header = path.header
        assert header is not None and path.hops
        offset = self._clock_offset_ns()
        walls = [hop.ts_ns + offset for hop in path.hops]
        start = walls[0]
        end = max(walls)
        trace_id = self._ids.random_trace_id() if header.truncated else packet_trace_id(header, start)
        key = flow_key(header)
        previous = self._flows.get(key) if self._flow_links else None
        links = [Link(previous, LINK_ATTRIBUTES)] if previous is not None else []
        with self._ids.use_trace_id(trace_id):
            root = self._tracer.start_span(
                root_span_name(header),
                context=Context(),
                kind=SpanKind.INTERNAL,
                attributes=root_attributes(path, header) | self._k8s(path.hops[0].netns),
                links=links,
                start_time=start,
            )
        if path.outcome is Outcome.DROPPED:
            root.set_status(Status(StatusCode.ERROR, drop_reason(path)))
        parent = trace.set_span_in_context(root)
        last = len(path.hops) - 1
        for index, hop in enumerate(path.hops):
            hop_start = walls[index]
            hop_end = max(hop_start, walls[index + 1]) if index < last else hop_start
            span = self._tracer.start_span(
                hops.span_name(hop, hops.receiving_device(path, index)),
                context=parent,
                kind=SpanKind.INTERNAL,
                attributes=hop_attributes(hop, path.drop_reason) | self._k8s(hop.netns),
                start_time=hop_start,
            )
            if hop.hop is Hop.DROP:
                span.set_status(Status(StatusCode.ERROR, hop.reason or path.drop_reason or hops.UNKNOWN_REASON))
            span.end(end_time=hop_end)
        root.end(end_time=end)
        if self._flow_links:
            self._flows[key] = root.get_span_context()
            self._flows.move_to_end(key)
            while len(self._flows) > self._flow_links:
                self._flows.popitem(last=False)
        return trace.format_trace_id(trace_id)


class SdkReference:
    """The old pipeline up to the bytes: SDK spans in memory, then the official OTLP encoder."""

    def __init__(
        self,
        resource: Mapping[str, Any],
        *,
        clock_offset_ns: Callable[[], int],
        flow_links: int = 4096,
        pod_of: Callable[[int], PodRef | None] | None = None,
    ) -> None:
        self.exporter = InMemorySpanExporter()
        ids = PacketIdGenerator()
        self.provider = TracerProvider(resource=Resource(dict(resource)), id_generator=ids, shutdown_on_exit=False)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.builder = SdkSpanBuilder(
            self.provider, ids, clock_offset_ns=clock_offset_ns, flow_links=flow_links, pod_of=pod_of
        )

    def request(self, paths: Sequence[Path]) -> bytes:
        """ExportTraceServiceRequest bytes for ``paths``, as the official exporters would have sent them."""
        self.exporter.clear()
        for path in paths:
            self.builder.emit(path)
        spans: Sequence[ReadableSpan] = self.exporter.get_finished_spans()
        return bytes(encode_spans(spans).SerializeToString())

    def shutdown(self) -> None:
        self.provider.shutdown()
