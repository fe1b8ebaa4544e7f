"""Packet paths as OpenTelemetry traces.

``export.build_tracing(cfg.traces)`` gives a ``Tracing`` (None when traces are off); hand each
finished ``Path`` to ``tracing.span_builder.emit(path)``, read ``tracing.exported`` /
``tracing.dropped`` for metrics, and call ``tracing.shutdown()`` at exit. See docs/traces.md.

Nothing is imported here on purpose: ``choice`` must stay importable without the OpenTelemetry
SDK (~60 ms), which the agent loads only after its probes are attached.
"""
