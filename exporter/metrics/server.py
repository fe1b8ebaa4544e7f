"""HTTP endpoint: /metrics (Prometheus text or OpenMetrics, by Accept header), /healthz, /readyz.

prometheus_client's WSGI app does the content negotiation (OpenMetrics when
the scraper asks for application/openmetrics-text, which is what carries
exemplars) and gzip; this module only adds the health routes and serves it
from a threaded server so a slow scraper never blocks another.

Scrapes share one snapshot of the collectors for SNAPSHOT_MAX_AGE_S (Snapshot, below), so that many
scrapers at once (a storm, or an HA pair of Prometheus servers scraping together) read the kernel
maps and build the metric families once, not once each.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter.metrics.listener import BACKLOG

log = logging.getLogger(__name__)

# How long one collection of every metric serves later scrapes.  Measured (bench --only scrape, 20
# scrapers, default config): reading the kernel maps and building the families is about a fifth of
# the agent's CPU per scrape, and grows with the number of drop series.  0.1 s is far below any
# scrape interval (Prometheus' shortest common one is 1 s), so a scraper never sees the same
# snapshot twice in normal operation, and tests that poll a counter see it move within 0.1 s.
SNAPSHOT_MAX_AGE_S = 0.1


class Snapshot(Collector):
    """The metric families of `registry`, collected at most once per `max_age` seconds.

    Counters stay monotonic: a snapshot is one whole collection, taken under a lock and replaced only
    by a later one, so the scrapes any one client makes see collections in the order they were taken,
    and each collection reads counters that only grow.  Scrapes that find the snapshot too old while
    another scrape is collecting wait for that collection instead of starting their own.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        max_age: float = SNAPSHOT_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._families: list[Metric] = []
        self._taken: float | None = None
        self.collections = 0

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = self._clock()
            if self._taken is None or now - self._taken >= self._max_age:
                self._families = list(self._registry.collect())
                self._taken = now
                self.collections += 1
            families = self._families
        return iter(families)


def serving_registry(registry: CollectorRegistry, max_age: float = SNAPSHOT_MAX_AGE_S) -> CollectorRegistry:
    """A registry whose one collector is a Snapshot of `registry`: what /metrics serves.  auto_describe
    learns the metric names (for ?name[]= filtering) from a first collection, made here."""
    serving = CollectorRegistry(auto_describe=True)
    serving.register(Snapshot(registry, max_age))
    return serving


# How long a finished connection waits for the scraper to close its end (see _Server.shutdown_request).
CLOSE_WAIT_S = 2.0


class _Server(ThreadingMixIn, WSGIServer):
    """A threaded WSGI server on a socket that is already bound and listening (listener.py)."""

    daemon_threads = True
    request_queue_size = BACKLOG

    def __init__(self, listener: socket.socket) -> None:
        self._listener = listener
        self.address_family = listener.family
        super().__init__(listener.getsockname()[:2], _QuietHandler)

    def shutdown_request(self, request: Any) -> None:
        """Close once the scraper has closed its end (see _QuietHandler): its FIN is read here, or
        CLOSE_WAIT_S passes for a scraper that keeps its end open."""
        with contextlib.suppress(OSError):
            request.shutdown(socket.SHUT_WR)  # done already when the handler ran; harmless again
        try:
            request.settimeout(CLOSE_WAIT_S)
            while request.recv(65536):
                pass
        except OSError:
            pass
        self.close_request(request)

    def server_bind(self) -> None:
        # Instead of binding the socket TCPServer just made, adopt the one bound at start-up.
        self.socket.close()
        self.socket = self._listener
        self.server_address = self.socket.getsockname()
        host, port = self.socket.getsockname()[:2]
        # HTTPServer.server_bind would resolve socket.getfqdn(host): a DNS query for a name only
        # used in the WSGI environ's SERVER_NAME.
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class _QuietHandler(WSGIRequestHandler):
    """Ends each response so that no scrape costs a drop on this host.

    A TCP socket closed while its peer's FIN is still on its way is orphaned, and the FIN that
    arrives there is freed when the socket is destroyed: a QUEUE_PURGE drop (sk_stream_kill_queues).
    Whichever side closes first pays one: the agent, when it closed first, or a scraper that stops
    reading at Content-Length and closes before our FIN arrives (curl does).  So the response is
    corked, our FIN is queued behind its last bytes (SHUT_WR) and leaves in the same segment, and
    the agent closes only after the scraper's FIN (_Server.shutdown_request).  Neither side is then
    orphaned with a FIN in flight, and the agent's /metrics adds no drops to what it counts."""

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)

    def finish(self) -> None:
        super().finish()  # flushes the response
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("http: " + format, *args)


def _app(registry: CollectorRegistry, ready: Callable[[], bool]) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(serving_registry(registry))

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            ok = ready()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ready\n" if ok else b"not ready: no probe attached\n"]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"pktpath: see /metrics, /healthz, /readyz\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


class MetricsServer:
    def __init__(self, listener: socket.socket, registry: CollectorRegistry, ready: Callable[[], bool]) -> None:
        self._httpd = _Server(listener)
        self._httpd.set_app(_app(registry, ready))
        # serve_forever() notices shutdown() only between polls: a short poll makes SIGTERM -> exit quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="pktpath-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
