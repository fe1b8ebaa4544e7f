"""HTTP endpoint: /metrics (Prometheus text or OpenMetrics, by Accept header), /healthz, /readyz.

prometheus_client's WSGI app does the content negotiation (OpenMetrics when
the scraper asks for application/openmetrics-text, which is what carries
exemplars) and gzip; this module only adds the health routes and serves it
from a threaded server so a slow scraper never blocks another.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app

from exporter.metrics.listener import BACKLOG

log = logging.getLogger(__name__)


class _Server(ThreadingMixIn, WSGIServer):
    """A threaded WSGI server on a socket that is already bound and listening (listener.py)."""

    daemon_threads = True
    request_queue_size = BACKLOG

    def __init__(self, listener: socket.socket) -> None:
        self._listener = listener
        self.address_family = listener.family
        super().__init__(listener.getsockname()[:2], _QuietHandler)

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
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("http: " + format, *args)


def _app(registry: CollectorRegistry, ready: Callable[[], bool]) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

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
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="pktpath-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
