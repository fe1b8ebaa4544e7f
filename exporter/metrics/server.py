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
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger(__name__)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


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
    def __init__(self, host: str, port: int, registry: CollectorRegistry, ready: Callable[[], bool]) -> None:
        server_class = _Server6 if ":" in host else _Server
        self._httpd = make_server(host, port, _app(registry, ready), server_class=server_class,
                                  handler_class=_QuietHandler)
        # serve_forever() notices shutdown() only between polls: a short poll makes SIGTERM -> exit quick.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="pktpath-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
