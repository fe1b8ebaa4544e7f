"""The log rate limit that keeps a dead OTLP collector from flooding the agent's log."""

from __future__ import annotations

import logging

from exporter.logs import RateLimit


def record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("opentelemetry.sdk", logging.ERROR, __file__, 1, msg, None, None)


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
