"""A real, in-process OTLP trace receiver for tests: gRPC and HTTP/protobuf on 127.0.0.1.

    with OtlpReceiver() as rx:                 # both protocols, each on a free port
        ... export to rx.grpc_endpoint or rx.http_endpoint ...
        spans = rx.wait_for(5, timeout=5.0)    # decoded ReceivedSpan records

``mode`` makes the receiver misbehave, to test the exporter's failure counting:

* "ok": accept every request;
* "error": refuse every request (gRPC UNAVAILABLE, HTTP 503); nothing is collected;
* "hang": hold every request until ``release()`` (or stop), then accept it.

``count_only=True`` keeps no spans, only counts them (``span_count``): a receiver cheap enough to
stand in for a collector in benchmarks. ``python -m tests.otlp_receiver`` runs one in its own
process (so its CPU is not the measured process's): it prints "<grpc port> <http port>" and serves
until its stdin closes.

``BlackHole`` is a collector that is there and never answers: it accepts TCP connections, reads
what is sent and replies nothing (neither HTTP nor the HTTP/2 handshake gRPC needs).
"""

from __future__ import annotations

import gzip
import http.server
import socket
import threading
import time
import zlib
from concurrent import futures
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

MODES = ("ok", "error", "hang")
_STATUS_NAMES = {
    Status.STATUS_CODE_UNSET: "UNSET",
    Status.STATUS_CODE_OK: "OK",
    Status.STATUS_CODE_ERROR: "ERROR",
}


@dataclass(frozen=True)
class ReceivedLink:
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root span
    attributes: dict[str, Any]
    status_code: str  # "UNSET", "OK" or "ERROR"
    status_message: str
    start_ns: int
    end_ns: int
    links: tuple[ReceivedLink, ...] = ()
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""
    protocol: str = ""  # "grpc" or "http"


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        assert isinstance(pair, KeyValue)
        out[pair.key] = any_value(pair.value)
    return out


def decode_request(request: trace_service_pb2.ExportTraceServiceRequest, protocol: str) -> list[ReceivedSpan]:
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes=attributes(span.attributes),
                        status_code=_STATUS_NAMES.get(span.status.code, str(span.status.code)),
                        status_message=span.status.message,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        links=tuple(
                            ReceivedLink(link.trace_id.hex(), link.span_id.hex(), attributes(link.attributes))
                            for link in span.links
                        ),
                        resource=resource,
                        scope=scope_spans.scope.name,
                        protocol=protocol,
                    )
                )
    return spans


class _Servicer(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(  # the gRPC method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        if not self._receiver._admit("grpc"):
            context.abort(grpc.StatusCode.UNAVAILABLE, "test receiver refuses (mode=error)")
        self._receiver._take(request, "grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


class _HttpHandler(http.server.BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # http.server calls it by this name
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path.split("?")[0] != "/v1/traces":
            self._reply(404, b"not found")
            return
        if not receiver._admit("http"):
            self._reply(503, b"test receiver refuses (mode=error)")
            return
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
        except (OSError, zlib.error, ValueError) as exc:
            self._reply(400, str(exc).encode())
            return
        receiver._note_encoding(encoding)
        receiver._take(request, "http")
        self._reply(200, trace_service_pb2.ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        pass


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: OtlpReceiver) -> None:
        super().__init__(("127.0.0.1", 0), _HttpHandler)
        self.receiver = receiver


class OtlpReceiver:
    """Collects the spans exported to it over gRPC and OTLP/HTTP (protobuf), thread-safely."""

    def __init__(
        self, mode: str = "ok", *, grpc_enabled: bool = True, http_enabled: bool = True, count_only: bool = False
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {MODES}")
        self.mode = mode
        self.count_only = count_only
        self.span_count = 0  # spans accepted (kept or not)
        self._lock = threading.Condition()
        self._spans: list[ReceivedSpan] = []
        self._released = threading.Event()
        self.requests: dict[str, int] = {"grpc": 0, "http": 0}  # requests seen, accepted or not
        self.encodings: list[str] = []  # Content-Encoding of each accepted HTTP request ("" for none)
        self.batch_sizes: list[int] = []  # spans in each accepted request, in arrival order
        self._grpc_enabled = grpc_enabled
        self._http_enabled = http_enabled
        self._grpc: grpc.Server | None = None
        self._http: _HttpServer | None = None
        self._http_thread: threading.Thread | None = None
        self.grpc_port = 0
        self.http_port = 0

    # --- lifecycle ---

    def start(self) -> OtlpReceiver:
        if self._grpc_enabled:
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-rx-grpc"))
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
                _Servicer(self), server
            )
            self.grpc_port = server.add_insecure_port("127.0.0.1:0")
            server.start()
            self._grpc = server
        if self._http_enabled:
            self._http = _HttpServer(self)
            self.http_port = self._http.server_address[1]
            self._http_thread = threading.Thread(
                target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, name="otlp-rx-http", daemon=True
            )
            self._http_thread.start()
        return self

    def stop(self) -> None:
        self._released.set()  # let hanging requests finish, so the servers can stop
        if self._grpc is not None:
            self._grpc.stop(grace=None)
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(5.0)
            self._http_thread = None

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- endpoints ---

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """The base URL (the exporter appends /v1/traces)."""
        return f"http://127.0.0.1:{self.http_port}"

    # --- results ---

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedSpan]:
        """The spans received once there are at least ``count``; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._spans) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"received {len(self._spans)} spans within {timeout}s, expected {count}")
                self._lock.wait(left)
            return list(self._spans)

    def release(self) -> None:
        """mode="hang": let held requests (and every later one) through."""
        self._released.set()

    # --- called by the servers ---

    def _admit(self, protocol: str) -> bool:
        with self._lock:
            self.requests[protocol] += 1
        if self.mode == "hang":
            self._released.wait()
        return self.mode != "error"

    def _note_encoding(self, encoding: str) -> None:
        with self._lock:
            self.encodings.append(encoding)

    def _take(self, request: trace_service_pb2.ExportTraceServiceRequest, protocol: str) -> None:
        if self.count_only:
            count = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            with self._lock:
                self.span_count += count
                self.batch_sizes.append(count)
            return
        spans = decode_request(request, protocol)
        with self._lock:
            self._spans.extend(spans)
            self.span_count += len(spans)
            self.batch_sizes.append(len(spans))
            self._lock.notify_all()


class BlackHole:
    """A TCP listener on 127.0.0.1 that accepts every connection and never answers (``with BlackHole() as hole``).

    ``endpoint`` is its URL; ``connections`` counts what was accepted. Stopping closes everything.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otlp-black-hole", daemon=True)
        self.connections = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                pass
            else:
                conn.setblocking(False)
                with self._lock:
                    self._held.append(conn)
                    self.connections += 1
            with self._lock:  # read and discard, so senders never block on a full window
                for conn in self._held:
                    try:
                        while conn.recv(65536):
                            pass
                    except OSError:
                        pass

    def __enter__(self) -> BlackHole:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)
        with self._lock:
            for conn in self._held:
                conn.close()
            self._held.clear()
        self._listener.close()


if __name__ == "__main__":
    import sys

    with OtlpReceiver(count_only=True) as rx:
        print(rx.grpc_port, rx.http_port, flush=True)
        sys.stdin.read()  # serve until the parent closes our stdin (or exits)
        print(rx.span_count, flush=True)
