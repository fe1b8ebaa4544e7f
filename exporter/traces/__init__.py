"""Packet paths as OpenTelemetry traces.

``build_tracing(cfg.traces)`` gives a ``Tracing`` (None when traces are off); hand each finished
``Path`` to ``tracing.span_builder.emit(path)`` (or use the builder itself as a path sink), read
``tracing.exported`` / ``tracing.dropped`` for metrics, and call ``tracing.shutdown()`` at exit.
See docs/traces.md.
"""

from __future__ import annotations

from exporter.traces.export import DROP_REASONS, Tracing, build_tracing, http_traces_url
from exporter.traces.spans import (
    TRACE_ID_BUCKET_NS,
    PacketIdGenerator,
    SpanBuilder,
    make_tracer_provider,
    packet_trace_id,
)

__all__ = [
    "DROP_REASONS",
    "TRACE_ID_BUCKET_NS",
    "PacketIdGenerator",
    "SpanBuilder",
    "Tracing",
    "build_tracing",
    "http_traces_url",
    "make_tracer_provider",
    "packet_trace_id",
]
