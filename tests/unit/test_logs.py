"""The log rate limit that keeps a dead OTLP collector from flooding the agent's log."""

from __future__ import annotations

import io
import logging
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from exporter import logs
from exporter.config.model import TracesConfig
from exporter.logs import RateLimit
from exporter.model.path import Hop, HopEvent, Outcome, PacketHeader, Path
from exporter.traces.export import build_tracing
from tests.otlp_receiver import OtlpReceiver


def record(msg: str, name: str = "opentelemetry.sdk") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)


def test_one_per_template_per_interval_then_says_how_many_were_held() -> None:
    now = [0.0]
    limit = RateLimit(interval=60, clock=lambda: now[0])
    assert limit.filter(record("Failed to export batch"))
    assert not limit.filter(record("Failed to export batch"))
    assert not limit.filter(record("Failed to export batch"))
    assert limit.filter(record("another message"))  # templates are limited separately
    now[0] = 61
    r = record("Failed to export batch")
    assert limit.filter(r)
    assert r.getMessage() == "Failed to export batch (2 similar messages held back in the last 60s)"


def test_only_the_opentelemetry_loggers_are_limited() -> None:
    limit = RateLimit(interval=60, clock=lambda: 0.0)
    for name in ("opentelemetry", "opentelemetry.exporter.otlp.proto.grpc.exporter"):
        assert limit.filter(record("x", name))
        assert not limit.filter(record("x", name))
    for name in ("pktpath", "exporter.traces.export", "opentelemetryfoo"):
        assert all(limit.filter(record("x", name)) for _ in range(3))


@pytest.fixture
def agent_logging() -> Iterator[io.StringIO]:
    """logs.setup() as the agent does it, writing into a buffer; the root logger restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stderr, sys.stderr = sys.stderr, io.StringIO()
    try:
        logs.setup("info")
        yield sys.stderr  # type: ignore[misc]
    finally:
        sys.stderr = stderr
        root.handlers[:], level = saved
        root.setLevel(level)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_path(n: int) -> Path:
    header = PacketHeader(family=4, src="10.0.1.5", dst="10.0.2.9", protocol=17, sport=4242, dport=53, ip_id=n)
    now = time.monotonic_ns()
    return Path(
        n,
        header,
        [
            HopEvent(n, Hop.NETIF_RECEIVE, now, ifname="eth0", header=header),
            HopEvent(n, Hop.DEV_XMIT, now + 1000, ifname="eth1"),
        ],
        Outcome.TRANSMITTED,
    )


def exercise(protocol: str, endpoint: str, seconds: float, export_timeout_ms: int) -> int:
    """Paths exported for ``seconds``; returns how many batches failed (each is one path)."""
    cfg = TracesConfig(
        exporter="otlp",
        protocol=protocol,
        endpoint=endpoint,
        schedule_delay_ms=20,
        max_export_batch_size=3,
        export_timeout_ms=export_timeout_ms,
    )
    tracing = build_tracing(cfg, {})
    assert tracing is not None
    try:
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            tracing.span_builder.emit(one_path(n))
            n += 1
            time.sleep(0.02)
    finally:
        tracing.shutdown(0.5)
    return tracing.dropped["export_failed"] // 3  # 3 spans per path, a path per batch


def otel_lines(log: io.StringIO) -> list[str]:
    return [line for line in log.getvalue().splitlines() if " opentelemetry." in line]


def test_a_dead_collector_logs_once_per_message_not_once_per_batch(agent_logging: io.StringIO) -> None:
    """The real HTTP exporter against a closed port for two seconds: every batch fails and is counted,
    the log carries the exporter's message once (before the fix: once per batch)."""
    failed = exercise("http/protobuf", f"http://127.0.0.1:{closed_port()}", 2.0, 200)
    assert failed >= 10
    lines = otel_lines(agent_logging)
    assert len(lines) == 1, "\n".join(lines)
    assert "Failed to export spans batch" in lines[0]


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_refusing_collector_logs_each_message_once(protocol: str, agent_logging: io.StringIO) -> None:
    """A receiver refusing every request (gRPC UNAVAILABLE, HTTP 503): the exporters retry once within the
    timeout, so their "transient error" warning and their "failed" error alternate, which the gRPC
    exporter's own duplicate filter (consecutive repeats only) lets through; the handler's limit does not."""
    with OtlpReceiver(mode="error") as rx:
        endpoint = rx.grpc_endpoint if protocol == "grpc" else rx.http_endpoint
        failed = exercise(protocol, endpoint, 3.0, 1500)
    assert failed >= 2
    lines = otel_lines(agent_logging)
    assert any("Transient error" in line for line in lines), "\n".join(lines)
    assert any("Failed to export" in line for line in lines), "\n".join(lines)
    # Once each (the shutdown adds a third message: "Shutdown in progress, aborting retry").
    starts = [line.split(": ", 1)[1][:24] for line in lines]
    assert len(starts) == len(set(starts)) <= 3, "\n".join(lines)
