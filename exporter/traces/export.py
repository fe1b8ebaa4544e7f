"""Where spans go: choosing the exporter from config and OTEL_* variables, and a bounded, counted queue.

``build_tracing(cfg)`` returns a ``Tracing`` (or None when traces are off): a ``SpanEncoder``
(finished Path -> OTLP span bytes, ``exporter.traces.encode``) feeding a bounded queue that one
thread drains, in batches, into a transport: the official OTLP exporter packages' own HTTP client
or gRPC channel (so their handling of the endpoint, headers, TLS, compression, timeout and retries
from the OTEL_* variables is kept), or the SDK's console exporter.

No span is lost silently. Every span offered is, eventually, exactly one of:

* ``exported``: the receiver accepted its batch;
* ``dropped["queue_full"]``: its path did not fit: ``max_queue_size`` spans were already waiting
  (a path is queued whole or not at all, so a trace never arrives with holes);
* ``dropped["export_failed"]``: its batch failed to export (error, timeout, endpoint down) after
  the exporter's retries;
* ``dropped["shutdown"]``: still queued when ``shutdown()`` ran out of time, or offered after it began.

``emit()`` never waits for the network: it encodes the path and appends its bytes to the queue, or,
when they would not fit, counts the path's spans dropped without encoding them.
So memory is bounded by ``max_queue_size`` spans (about 350 bytes each) plus the batch in export.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import IO, Any, Protocol

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
from exporter.traces.encode import INSTRUMENTATION_NAME, RequestFraming, Sampler, SpanEncoder

__all__ = ["DEFAULT_PROTOCOL", "DEFAULT_SERVICE_NAME", "DROP_REASONS", "SHUTDOWN_TIMEOUT_S", "Tracing", "build_tracing"]

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "pktpath"
HTTP_TRACES_PATH = "/v1/traces"
DROP_REASONS = ("queue_full", "export_failed", "shutdown")
# Stopping sends what is queued for at most this long, the cancelling of an export in progress
# included (docs/traces.md): a dead or black-holed collector cannot hold the agent's exit.
SHUTDOWN_TIMEOUT_S = 3.0
# Of that, the part kept for cancelling: the gRPC channel's close ends the call in progress at
# once; an HTTP request blocked on a silent peer cannot be interrupted and is left to its daemon thread.
CANCEL_GRACE_S = 0.5

OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
_GRPC_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


# --- transports --------------------------------------------------------------------------------


class Transport(Protocol):
    """Sends one ExportTraceServiceRequest (bytes); True when the receiver accepted it."""

    def send(self, request: bytes, spans: int) -> bool: ...

    def cancel(self) -> None:
        """End retries, the connection and, where the transport can, the export in progress. Idempotent."""


class HttpTransport:
    """The OTLP/HTTP exporter's own client: its URL, headers, TLS files, compression, timeout and retries.

    The official exporter encodes SDK spans itself and then hands the bytes to this client;
    pktpath hands it its own bytes instead.
    """

    def __init__(self, exporter: Any) -> None:
        client = getattr(exporter, "_client", None)
        if not callable(getattr(client, "export", None)):
            raise ConfigError(
                "traces: this opentelemetry-exporter-otlp-proto-http has no OTLP HTTP client to send "
                "encoded spans through (pktpath needs version 1.45 or later)"
            )
        self._exporter = exporter
        self._client: Any = client
        self._max_request_size: int = getattr(exporter, "_max_request_size", 0)

    def send(self, request: bytes, spans: int) -> bool:
        if 0 < self._max_request_size < len(request):
            log.warning(
                "traces: dropping a batch of %d spans: %d bytes exceed the exporter's max_request_size "
                "(lower traces.max_export_batch_size)",
                spans,
                len(request),
            )
            return False
        return bool(self._client.export(request).success)

    def cancel(self) -> None:
        # The exporter's shutdown ends its retries and closes its session (it warns when called twice).
        if not getattr(self._exporter, "_shutdown", False):
            self._exporter.shutdown()


class GrpcTransport:
    """The OTLP gRPC exporter itself (channel, credentials, headers, compression, deadline, retries,
    reconnection), with a stub that sends the request bytes as they are instead of serializing a message."""

    def __init__(self, exporter: Any) -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self._exporter = exporter
        self._success = SpanExportResult.SUCCESS

    def send(self, request: bytes, spans: int) -> bool:
        return bool(self._exporter.export(EncodedBatch(request, spans)) is self._success)

    def cancel(self) -> None:
        # Closing the channel cancels the call in progress; the exporter ignores a second shutdown.
        if not getattr(self._exporter, "_shutdown", False):
            self._exporter.shutdown(timeout_millis=0)


class ConsoleTransport:
    """Prints each span as the SDK's ConsoleSpanExporter does (ReadableSpan.to_json), decoded back from the request."""

    def __init__(self, out: IO[str]) -> None:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExportResult

        self._exporter = ConsoleSpanExporter(out=out)
        self._success = SpanExportResult.SUCCESS

    def send(self, request: bytes, spans: int) -> bool:
        return bool(self._exporter.export(readable_spans(request)) is self._success)

    def cancel(self) -> None:
        pass


class EncodedBatch:
    """What the gRPC exporter is handed instead of SDK spans: the request's bytes and its span count."""

    __slots__ = ("request", "spans")

    def __init__(self, request: bytes, spans: int) -> None:
        self.request = request
        self.spans = spans

    def __len__(self) -> int:
        return self.spans


def _grpc_exporter(**kwargs: Any) -> Any:
    """The official OTLPSpanExporter (gRPC), sending pre-encoded requests through its channel."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    def passthrough(request: bytes) -> bytes:
        return request

    class BytesStub:
        """TraceServiceStub whose request serializer is the identity: the request is already bytes."""

        def __init__(self, channel: Any) -> None:
            self.Export = channel.unary_unary(
                _GRPC_EXPORT_METHOD,
                request_serializer=passthrough,
                response_deserializer=ExportTraceServiceResponse.FromString,
            )

    class BytesSpanExporter(OTLPSpanExporter):  # type: ignore[misc]
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            # The exporter re-creates its stub with self._stub when it reconnects (UNAVAILABLE).
            self._stub = BytesStub
            self._client: Any = BytesStub(self._channel)

        def _translate_data(self, data: Any) -> Any:
            return data.request

        def _count_data(self, data: Any) -> int:
            return int(data.spans)

    return BytesSpanExporter(**kwargs)


def readable_spans(request: bytes) -> list[Any]:
    """The SDK ReadableSpans an ExportTraceServiceRequest carries (for the console exporter and tests)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

    def attributes(pairs: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for pair in pairs:
            kind = pair.value.WhichOneof("value")
            if kind == "array_value":
                out[pair.key] = tuple(getattr(v, v.WhichOneof("value")) for v in pair.value.array_value.values)
            elif kind is not None:
                out[pair.key] = getattr(pair.value, kind)
        return out

    def context(trace_id: bytes, span_id: bytes) -> SpanContext:
        return SpanContext(
            int.from_bytes(trace_id, "big"),
            int.from_bytes(span_id, "big"),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )

    spans: list[Any] = []
    for resource_spans in ExportTraceServiceRequest.FromString(request).resource_spans:
        resource = Resource(attributes(resource_spans.resource.attributes))
        for scope_spans in resource_spans.scope_spans:
            scope = InstrumentationScope(scope_spans.scope.name, scope_spans.scope.version or None)
            for span in scope_spans.spans:
                status = Status(StatusCode(span.status.code), span.status.message or None)
                spans.append(
                    ReadableSpan(
                        span.name,
                        context=context(span.trace_id, span.span_id),
                        parent=context(span.trace_id, span.parent_span_id) if span.parent_span_id else None,
                        resource=resource,
                        attributes=attributes(span.attributes),
                        links=[
                            Link(context(link.trace_id, link.span_id), attributes(link.attributes))
                            for link in span.links
                        ],
                        kind=SpanKind(max(0, span.kind - 1)),  # OTLP's SPAN_KIND_INTERNAL is 1, the API's INTERNAL 0
                        status=status,
                        start_time=span.start_time_unix_nano,
                        end_time=span.end_time_unix_nano,
                        instrumentation_scope=scope,
                    )
                )
    return spans


# --- the queue ---------------------------------------------------------------------------------


class SpanQueue:
    """Encoded paths waiting for export, bounded in spans and counted; one daemon thread sends them in batches.

    A batch leaves when ``max_batch`` spans are waiting or its oldest path has waited ``delay_s``.
    """

    def __init__(
        self,
        transport: Transport,
        framing: RequestFraming,
        *,
        max_queue_size: int,
        max_batch: int,
        delay_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._framing = framing
        self._capacity = max_queue_size
        self._max_batch = max_batch
        self._delay_s = delay_s
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._items: deque[tuple[bytes, int, float]] = deque()  # (spans' bytes, span count, queued at)
        self._queued = 0  # spans in _items
        self._closing = False  # shutdown began: send what is queued now, take nothing new
        self._closed = False  # shutdown's time ran out: send nothing more
        self._raised = False  # a transport raised once already
        self.ended = 0
        self.exported = 0
        # Every reason present from the start: a reader iterating the counter never sees it grow.
        self.dropped: Counter[str] = Counter(dict.fromkeys(DROP_REASONS, 0))
        self._thread = threading.Thread(target=self._run, name="pktpath-traces-export", daemon=True)
        self._thread.start()

    def offer(self, data: bytes, spans: int) -> None:
        """Queue one path's spans, or count them dropped; never blocks on the network."""
        with self._cond:
            self.ended += spans
            if self._closing:
                self.dropped["shutdown"] += spans
                return
            if self._drop_if_full(spans):
                return
            self._items.append((data, spans, self._clock()))
            self._queued += spans
            # The thread waits without a timeout on an empty queue, and for the batch delay otherwise.
            if len(self._items) == 1 or self._queued >= self._max_batch:
                self._cond.notify()

    def refuse_if_full(self, spans: int) -> bool:
        """Count `spans` dropped (queue_full) when they would not fit now, so that nobody encodes them.

        A path that fits now is encoded and offered: offer() decides for it (room, shutdown)."""
        with self._cond:
            if self._closing or not self._drop_if_full(spans):
                return False  # offer() decides, and counts ended
            self.ended += spans
            return True

    def _drop_if_full(self, spans: int) -> bool:
        """With the lock held: count `spans` dropped (queue_full) when they would not fit."""
        if self._queued + spans <= self._capacity:
            return False
        self.dropped["queue_full"] += spans
        return True

    def snapshot(self) -> tuple[int, int, int, Counter[str]]:
        """(ended, pending, exported, dropped) at one instant."""
        with self._cond:
            return self.ended, self._queued, self.exported, Counter(self.dropped)

    def _next_batch(self) -> tuple[list[bytes], int] | None:
        """Wait for the next batch to send; None when the thread should end."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._items:
                    if self._closing or self._queued >= self._max_batch:
                        break
                    wait = self._items[0][2] + self._delay_s - self._clock()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                elif self._closing:
                    return None  # everything was sent
                else:
                    self._cond.wait()
            batch: list[bytes] = []
            count = 0
            items = self._items
            while items and (not batch or count + items[0][1] <= self._max_batch):
                data, spans, _ = items.popleft()
                batch.append(data)
                count += spans
            self._queued -= count
            return batch, count

    def _run(self) -> None:
        while (taken := self._next_batch()) is not None:
            batch, count = taken
            ok = False
            try:
                ok = self._transport.send(self._framing.request(batch), count)
            except Exception:  # the batch is counted as failed; the thread must go on
                # The traceback once: a bug here would otherwise log one per batch.
                log.log(
                    logging.DEBUG if self._raised else logging.ERROR,
                    "traces: span export failed",
                    exc_info=not self._raised,
                )
                self._raised = True
            del batch
            with self._cond:
                if ok:
                    self.exported += count
                else:
                    self.dropped["export_failed"] += count

    def _cancel(self) -> None:
        try:
            self._transport.cancel()
        except Exception:
            log.exception("traces: closing the exporter failed")

    def shutdown(self, timeout_s: float) -> None:
        """Send what is queued within ``timeout_s``; then cancel, and count what is left dropped["shutdown"]."""
        deadline = self._clock() + max(0.0, timeout_s)
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        grace = min(CANCEL_GRACE_S, timeout_s / 4)
        self._thread.join(max(0.0, deadline - grace - self._clock()))
        if not self._thread.is_alive():
            self._cancel()  # everything was sent: close the connection (the gRPC channel, the HTTP session)
            return
        with self._cond:
            self._closed = True
            self.dropped["shutdown"] += self._queued
            self._items.clear()
            self._queued = 0
            self._cond.notify_all()
        log.warning("traces: export did not finish within %.1fs of shutdown; dropping what is queued", timeout_s)
        self._cancel()
        # A batch still in export is counted when its call returns (export_failed once cancelled).
        self._thread.join(max(0.0, deadline - self._clock()))


# --- choosing the exporter -------------------------------------------------------------------


def http_traces_url(endpoint: str) -> str:
    """The URL OTLP/HTTP spans are POSTed to, for an endpoint from the config: kept when it ends with
    /v1/traces, else /v1/traces is appended ("http://c:4318" and "http://c:4318/" -> "http://c:4318/v1/traces")."""
    parts = urllib.parse.urlsplit(endpoint)
    path = parts.path.rstrip("/")
    if not path.endswith(HTTP_TRACES_PATH):
        path += HTTP_TRACES_PATH
    return urllib.parse.urlunsplit(parts._replace(path=path))


def _resource(cfg: TracesConfig, env: Mapping[str, str]) -> dict[str, Any]:
    from opentelemetry.sdk.resources import Resource

    # Resource.create() applies OTEL_RESOURCE_ATTRIBUTES (and OTEL_SERVICE_NAME) from the process
    # environment, and adds telemetry.sdk.*; host.name and service.version are defaults those can override.
    detected = Resource.create({})
    name = cfg.service_name or env_value(env, OTEL_SERVICE_NAME)
    if name is None:
        from_attributes = detected.attributes.get("service.name")
        if isinstance(from_attributes, str) and not from_attributes.startswith("unknown_service"):
            name = from_attributes
    defaults = Resource({"host.name": socket.gethostname(), "service.version": __version__})
    resource = defaults.merge(detected).merge(Resource({"service.name": name or DEFAULT_SERVICE_NAME}))
    return dict(resource.attributes)


def _sampler_from_env() -> Sampler | None:
    """OTEL_TRACES_SAMPLER (and _ARG) as the SDK's TracerProvider reads it; None when it keeps every trace."""
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import sampling
    from opentelemetry.trace import SpanKind

    sampler = sampling._get_from_env_or_default()
    if sampler is sampling.ALWAYS_ON or sampler is sampling.DEFAULT_ON:
        return None  # the default: a root span is always sampled

    def decide(trace_id: int, name: str, attributes: Mapping[str, Any]) -> bool:
        # An empty context: the packet's root span is never the child of a span current on this thread.
        result = sampler.should_sample(Context(), trace_id, name, SpanKind.INTERNAL, attributes)
        return result.decision is sampling.Decision.RECORD_AND_SAMPLE

    return decide


def _make_transport(kind: str, protocol: str, cfg: TracesConfig) -> Transport:
    if kind == "console":
        return ConsoleTransport(sys.stdout)  # the stdout of now, not of import time
    kwargs: dict[str, Any] = {"timeout": cfg.export_timeout_ms / 1000}
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.exporter import InvalidCompressionValueException

        if cfg.endpoint is not None:
            kwargs["endpoint"] = cfg.endpoint
            if cfg.endpoint.startswith("http://"):
                kwargs["insecure"] = True
        try:
            return GrpcTransport(_grpc_exporter(**kwargs))
        except (InvalidCompressionValueException, ValueError, RuntimeError) as exc:
            # Bad OTEL_EXPORTER_OTLP_* values (compression, timeout, credential provider): the message names them.
            raise ConfigError(" ".join(f"traces: cannot set up the OTLP gRPC exporter: {exc}".split())) from exc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

    if cfg.endpoint is not None:
        kwargs["endpoint"] = http_traces_url(cfg.endpoint)
    try:
        return HttpTransport(HttpSpanExporter(**kwargs))
    except (ValueError, RuntimeError, ImportError) as exc:
        raise ConfigError(" ".join(f"traces: cannot set up the OTLP HTTP exporter: {exc}".split())) from exc


# --- the result ------------------------------------------------------------------------------


class Tracing:
    """The running traces pipeline: hand Paths to ``span_builder``; read the counters; ``shutdown()`` at exit."""

    def __init__(
        self,
        span_builder: SpanEncoder,
        queue: SpanQueue,
        resource: Mapping[str, Any],
        *,
        exporter_name: str,
        endpoint: str | None,
    ) -> None:
        self.span_builder = span_builder
        self.resource = dict(resource)  # the resource attributes every span carries
        self.exporter_name = exporter_name  # "otlp/grpc", "otlp/http/protobuf" or "console"
        self.endpoint = endpoint  # from the config; None = the exporter's choice (OTEL_* variables, else default)
        self._queue = queue

    @property
    def exported(self) -> int:
        """Spans the receiver accepted."""
        return self._queue.snapshot()[2]

    @property
    def dropped(self) -> Counter[str]:
        """Spans lost, by reason (a copy; every reason in DROP_REASONS is present, maybe 0)."""
        return self._queue.snapshot()[3]

    @property
    def ended(self) -> int:
        """Spans offered for export: eventually exported + sum(dropped), pending and in export until then."""
        return self._queue.snapshot()[0]

    @property
    def pending(self) -> int:
        """Spans queued, not yet handed to the exporter (at most max_queue_size)."""
        return self._queue.snapshot()[1]

    def shutdown(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        """Export what is queued, returning within ``timeout_s`` whatever the receiver does; the rest
        is counted dropped["shutdown"].

        Idempotent. Spans offered afterwards are counted dropped["shutdown"] too.
        """
        self._queue.shutdown(timeout_s)

    def __repr__(self) -> str:
        return f"Tracing({self.exporter_name}, endpoint={self.endpoint or 'from OTEL_* / exporter default'})"


def build_tracing(
    cfg: TracesConfig, env: Mapping[str, str] = os.environ, pod_of: Callable[[int], PodRef | None] | None = None
) -> Tracing | None:
    """Set up traces as ``cfg`` and the environment say; None when the exporter is "none".

    ``env`` decides what pktpath itself resolves: OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER,
    OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL and OTEL_SERVICE_NAME, each used only when the matching
    config key is null. Everything else the OpenTelemetry packages read from the process environment
    themselves: the endpoint when ``cfg.endpoint`` is null (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, then
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
        raise ConfigError(
            f"traces.max_export_batch_size: {cfg.max_export_batch_size} is out of range "
            f"1..{cfg.max_queue_size} (it cannot exceed traces.max_queue_size)"
        )
    protocol = protocol_choice(cfg, env) if kind == "otlp" else ""
    transport = _make_transport(kind, protocol, cfg)
    resource = _resource(cfg, env)
    queue = SpanQueue(
        transport,
        RequestFraming(resource, INSTRUMENTATION_NAME, __version__),
        max_queue_size=cfg.max_queue_size,
        max_batch=cfg.max_export_batch_size,
        delay_s=cfg.schedule_delay_ms / 1000,
    )
    encoder = SpanEncoder(queue.offer, pod_of=pod_of, sampler=_sampler_from_env(), refused=queue.refuse_if_full)
    name = f"otlp/{protocol}" if kind == "otlp" else kind
    tracing = Tracing(encoder, queue, resource, exporter_name=name, endpoint=cfg.endpoint)
    log.info("traces: %s to %s", name, cfg.endpoint or "the OTEL_* / exporter default endpoint")
    return tracing
