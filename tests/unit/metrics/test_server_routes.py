"""The HTTP routes: /metrics, /healthz, /readyz (its state), 404 for the rest."""

from __future__ import annotations

import http.client

from prometheus_client import CollectorRegistry

from exporter.metrics.listener import bind_listener
from exporter.metrics.server import MetricsServer


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    return resp.status, body


def test_routes() -> None:
    ready = [False]
    server = MetricsServer(bind_listener("127.0.0.1", 0, "127.0.0.1:0"), CollectorRegistry(),
                           ready=lambda: ready[0])
    server.start()
    try:
        assert get(server.port, "/healthz") == (200, "ok\n")
        assert get(server.port, "/readyz") == (503, "not ready: no probe attached\n")
        ready[0] = True
        assert get(server.port, "/readyz") == (200, "ready\n")
        status, body = get(server.port, "/metrics")
        assert status == 200 and "python_info" not in body  # our registry only: nothing global leaks in
        assert get(server.port, "/nope")[0] == 404
        assert get(server.port, "/")[0] == 200
    finally:
        server.stop()
