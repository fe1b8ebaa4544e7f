"""Where spans go: choosing the exporter from config and OTEL_* variables, and a bounded, counted pipeline.

``build_tracing(cfg)`` returns a ``Tracing`` (or None when traces are off): a TracerProvider with
the deterministic trace-id generator, a ``SpanBuilder`` on it, and a batching processor in front
of the exporter (OTLP over gRPC or HTTP/protobuf, or the console).

No span is lost silently. Every span that ends is, eventually, exactly one of:

* ``exported``: the exporter reported success;
* ``dropped["queue_full"]``: ``max_queue_size`` spans were already waiting for export, so it was
  not queued (the SDK's own queue would silently drop the *oldest* span instead);
* ``dropped["export_failed"]``: its batch failed to export (error, timeout, endpoint down) after
  the SDK's retries;
* ``dropped["shutdown"]``: still waiting when ``shutdown()`` ran out of time, or ended after it.

``emit()`` never waits for the network: it only appends to a bounded queue, which one SDK thread
drains. So memory is bounded by ``max_queue_size`` spans plus the batch being exported.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import sys
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)

from exporter import __version__
from exporter.config.model import TracesConfig
from exporter.errors import ConfigError
from exporter.k8s.pods import PodRef
from exporter.traces.choice import (
    DEFAULT_PROTOCOL,
    OTEL_SDK_DISABLED,
    env_value,
    exporter_choice,
    protocol_choice,
)
from exporter.traces.spans import PacketIdGenerator, SpanBuilder, make_tracer_provider

__all__ = ["DEFAULT_PROTOCOL", "DEFAULT_SERVICE_NAME", "DROP_REASONS", "Tracing", "build_tracing"]

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "pktpath"
HTTP_TRACES_PATH = "/v1/traces"
DROP_REASONS = ("queue_full", "export_failed", "shutdown")

OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
OTEL_EXPORTER_OTLP_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"


# --- accounting ------------------------------------------------------------------------------


class _Ledger:
    """Counts every span from the moment it ends until it is exported or dropped. Thread-safe."""

    def __init__(self, capacity: int) -> None:
        self._lock = threading.Lock()
        self._capacity = capacity
        self._closed = False
        self.ended = 0  # spans offered to the pipeline
        self.pending = 0  # queued: ended, not yet handed to the exporter
        self.exported = 0
        # Every reason present from the start: a reader iterating the counter never sees it grow.
        self.dropped: Counter[str] = Counter(dict.fromkeys(DROP_REASONS, 0))

    def admit(self) -> bool:
        """A span ended: may it be queued?"""
        with self._lock:
            self.ended += 1
            if self._closed:
                self.dropped["shutdown"] += 1
                return False
            if self.pending >= self._capacity:
                self.dropped["queue_full"] += 1
                return False
            self.pending += 1
            return True

    def take(self, count: int) -> bool:
        """``count`` queued spans reach the exporter; False when shutdown already counted them as dropped."""
        with self._lock:
            if self._closed:
                return False
            self.pending = max(0, self.pending - count)
            return True

    def settle(self, count: int, ok: bool) -> None:
        with self._lock:
            if ok:
                self.exported += count
            else:
                self.dropped["export_failed"] += count

    def close(self) -> None:
        """No more exports: whatever is still queued is dropped, and so is every span ending from now on."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.dropped["shutdown"] += self.pending
            self.pending = 0

    def snapshot(self) -> tuple[int, int, int, Counter[str]]:
        with self._lock:
            return self.ended, self.pending, self.exported, Counter(self.dropped)


class _CountingExporter(SpanExporter):
    """Wraps the real exporter: counts each batch's spans as exported or failed."""

    def __init__(self, exporter: SpanExporter, ledger: _Ledger) -> None:
        self.exporter = exporter
        self._ledger = ledger
        self._shutdown_lock = threading.Lock()
        self._is_shut_down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        count = len(spans)
        if not self._ledger.take(count):
            return SpanExportResult.FAILURE
        try:
            result = self.exporter.export(spans)
        except Exception:  # the batch is counted as failed; the SDK thread must go on
            log.exception("span exporter failed")
            result = SpanExportResult.FAILURE
        self._ledger.settle(count, result is SpanExportResult.SUCCESS)
        return result

    def shutdown(self, timeout_millis: float = 30000, **kwargs: Any) -> None:
        # Called by us when time runs out, then again by the SDK's processor: only the first counts.
        with self._shutdown_lock:
            if self._is_shut_down:
                return
            self._is_shut_down = True
        try:
            # The gRPC exporter takes a deadline (older SDKs waited that long for the export in progress).
            if "timeout_millis" in inspect.signature(self.exporter.shutdown).parameters:
                self.exporter.shutdown(timeout_millis=timeout_millis)  # type: ignore[call-arg]
            else:
                self.exporter.shutdown()
        except Exception:
            log.exception("span exporter shutdown failed")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class _BoundedSpanProcessor(SpanProcessor):
    """The SDK's BatchSpanProcessor behind a counted admission gate, with a bounded shutdown."""

    def __init__(self, exporter: _CountingExporter, ledger: _Ledger, cfg: TracesConfig) -> None:
        self._exporter = exporter
        self._ledger = ledger
        self._batch = BatchSpanProcessor(
            exporter,
            max_queue_size=cfg.max_queue_size,
            schedule_delay_millis=cfg.schedule_delay_ms,
            max_export_batch_size=cfg.max_export_batch_size,
            export_timeout_millis=cfg.export_timeout_ms,
        )
        # A shutdown with no deadline given (the SDK's atexit hook) waits about one export.
        self._default_shutdown_s = cfg.export_timeout_ms / 1000 + 1.0
        self._shutdown_lock = threading.Lock()
        self._shut_down = False

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not (span.context and span.context.trace_flags.sampled):
            return  # not sampled (OTEL_TRACES_SAMPLER): never meant for export
        if self._ledger.admit():
            self._batch.on_end(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._batch.force_flush(timeout_millis)

    def shutdown(self, timeout_s: float | None = None) -> None:
        """Export what is queued, waiting at most ``timeout_s``; then count the rest as dropped["shutdown"]."""
        with self._shutdown_lock:
            if self._shut_down:
                return
            self._shut_down = True
        timeout = self._default_shutdown_s if timeout_s is None else max(0.0, timeout_s)
        # The SDK's shutdown waits up to 30 s for its worker and has no deadline parameter, so it
        # runs on a helper thread; when our deadline passes, nothing more is exported and the
        # exporter is shut down, which ends its retries (and, for gRPC, the call in progress).
        worker = threading.Thread(target=self._batch.shutdown, name="pktpath-traces-shutdown", daemon=True)
        worker.start()
        worker.join(timeout)
        self._ledger.close()
        if worker.is_alive():
            log.warning("traces: export did not finish within %.1fs of shutdown; dropping what is queued", timeout)
            self._exporter.shutdown(timeout_millis=0)
            worker.join(1.0)


# --- choosing the exporter -------------------------------------------------------------------


def http_traces_url(endpoint: str) -> str:
    """The URL OTLP/HTTP spans are POSTed to, for an endpoint from the config: kept when it ends with
    /v1/traces, else /v1/traces is appended ("http://c:4318" and "http://c:4318/" -> "http://c:4318/v1/traces")."""
    parts = urllib.parse.urlsplit(endpoint)
    path = parts.path.rstrip("/")
    if not path.endswith(HTTP_TRACES_PATH):
        path += HTTP_TRACES_PATH
    return urllib.parse.urlunsplit(parts._replace(path=path))


def _resource(cfg: TracesConfig, env: Mapping[str, str]) -> Resource:
    # Resource.create() applies OTEL_RESOURCE_ATTRIBUTES (and OTEL_SERVICE_NAME) from the process
    # environment; host.name and service.version are defaults those can override.
    detected = Resource.create({})
    name = cfg.service_name or env_value(env, OTEL_SERVICE_NAME)
    if name is None:
        from_attributes = detected.attributes.get("service.name")
        if isinstance(from_attributes, str) and not from_attributes.startswith("unknown_service"):
            name = from_attributes
    defaults = Resource({"host.name": socket.gethostname(), "service.version": __version__})
    return defaults.merge(detected).merge(Resource({"service.name": name or DEFAULT_SERVICE_NAME}))


def _make_exporter(kind: str, protocol: str, cfg: TracesConfig) -> SpanExporter:
    if kind == "console":
        return ConsoleSpanExporter(out=sys.stdout)  # the stdout of now, not of import time
    kwargs: dict[str, Any] = {"timeout": cfg.export_timeout_ms / 1000}
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.exporter import InvalidCompressionValueException
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

        if cfg.endpoint is not None:
            kwargs["endpoint"] = cfg.endpoint
            if cfg.endpoint.startswith("http://"):
                kwargs["insecure"] = True
        try:
            return GrpcSpanExporter(**kwargs)
        except (InvalidCompressionValueException, ValueError, RuntimeError) as exc:
            # Bad OTEL_EXPORTER_OTLP_* values (compression, timeout, credential provider): the message names them.
            raise ConfigError(" ".join(f"traces: cannot set up the OTLP gRPC exporter: {exc}".split())) from exc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

    if cfg.endpoint is not None:
        kwargs["endpoint"] = http_traces_url(cfg.endpoint)
    try:
        return HttpSpanExporter(**kwargs)
    except (ValueError, RuntimeError, ImportError) as exc:
        raise ConfigError(" ".join(f"traces: cannot set up the OTLP HTTP exporter: {exc}".split())) from exc


# --- the result ------------------------------------------------------------------------------


class Tracing:
    """The running traces pipeline: hand Paths to ``span_builder``; read the counters; ``shutdown()`` at exit."""

    def __init__(
        self,
        tracer_provider: TracerProvider,
        span_builder: SpanBuilder,
        processor: _BoundedSpanProcessor,
        ledger: _Ledger,
        *,
        exporter_name: str,
        endpoint: str | None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.span_builder = span_builder
        self.exporter_name = exporter_name  # "otlp/grpc", "otlp/http/protobuf" or "console"
        self.endpoint = endpoint  # from the config; None = the SDK's choice (OTEL_* variables, else default)
        self._processor = processor
        self._ledger = ledger

    @property
    def exported(self) -> int:
        """Spans the exporter reported as delivered."""
        return self._ledger.snapshot()[2]

    @property
    def dropped(self) -> Counter[str]:
        """Spans lost, by reason (a copy; every reason in DROP_REASONS is present, maybe 0)."""
        return self._ledger.snapshot()[3]

    @property
    def ended(self) -> int:
        """Spans offered for export: eventually exported + sum(dropped), pending and in-export until then."""
        return self._ledger.snapshot()[0]

    @property
    def pending(self) -> int:
        """Spans queued, not yet handed to the exporter (at most max_queue_size)."""
        return self._ledger.snapshot()[1]

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Export what is queued within ``timeout_s``, then stop; the rest is counted dropped["shutdown"].

        Idempotent. Spans ended afterwards are counted dropped["shutdown"] too.
        """
        self._processor.shutdown(timeout_s)
        self.tracer_provider.shutdown()

    def __repr__(self) -> str:
        return f"Tracing({self.exporter_name}, endpoint={self.endpoint or 'from OTEL_* / SDK default'})"


def build_tracing(cfg: TracesConfig, env: Mapping[str, str] = os.environ,
                  pod_of: Callable[[int], PodRef | None] | None = None) -> Tracing | None:
    """Set up traces as ``cfg`` and the environment say; None when the exporter is "none".

    ``env`` decides what pktpath itself resolves: OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER,
    OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL and OTEL_SERVICE_NAME, each used only when the matching
    config key is null. Everything else the OpenTelemetry SDK reads from the process environment
    itself: the endpoint when ``cfg.endpoint`` is null (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, then
    OTEL_EXPORTER_OTLP_ENDPOINT), headers, compression, TLS files, OTEL_RESOURCE_ATTRIBUTES,
    OTEL_TRACES_SAMPLER. So in production ``env`` is ``os.environ`` (the default).

    Raises ConfigError (one line, naming the variable or key) for values that cannot work.
    """
    if (env_value(env, OTEL_SDK_DISABLED) or "").lower() == "true":
        log.info("traces: off (%s=true)", OTEL_SDK_DISABLED)
        return None
    kind = exporter_choice(cfg, env)
    if kind == "none":
        return None
    if cfg.max_export_batch_size > cfg.max_queue_size:
        raise ConfigError(f"traces.max_export_batch_size: {cfg.max_export_batch_size} is out of range "
                          f"1..{cfg.max_queue_size} (it cannot exceed traces.max_queue_size)")
    protocol = protocol_choice(cfg, env) if kind == "otlp" else ""
    exporter = _make_exporter(kind, protocol, cfg)
    ledger = _Ledger(cfg.max_queue_size)
    counting = _CountingExporter(exporter, ledger)
    processor = _BoundedSpanProcessor(counting, ledger, cfg)
    provider = make_tracer_provider(_resource(cfg, env), PacketIdGenerator())
    provider.add_span_processor(processor)
    name = f"otlp/{protocol}" if kind == "otlp" else kind
    tracing = Tracing(provider, SpanBuilder(provider, pod_of=pod_of), processor, ledger, exporter_name=name,
                      endpoint=cfg.endpoint)
    log.info("traces: %s to %s", name, cfg.endpoint or "the OTEL_* / SDK default endpoint")
    return tracing
