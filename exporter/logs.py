"""Logging set-up: one line per record, text for people or JSON for log pipelines."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


class RateLimit(logging.Filter):
    """At most one record per logger and message template per `interval` seconds, for records of the
    loggers under `prefixes` (others pass); the next one let through says how many were held back.

    The OpenTelemetry exporters log an ERROR for every failed export batch (and a WARNING per
    retry), which with a collector down would be several lines a second, forever. The limit sits
    on the handler: Python applies a logger's filters only to records logged on that very logger,
    not to those of its children (opentelemetry.exporter.otlp...), which reach the handler as they are.
    """

    def __init__(
        self,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        prefixes: tuple[str, ...] = ("opentelemetry",),
    ) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._prefixes = prefixes
        self._lock = threading.Lock()  # Handler.handle() filters before taking the handler's lock
        self._last: dict[tuple[str, object], float] = {}
        self._held: dict[tuple[str, object], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if not any(name == p or name.startswith(p + ".") for p in self._prefixes):
            return True
        key = (name, record.msg)
        with self._lock:
            now = self._clock()
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} similar messages held back in the last {self.interval:.0f}s)"
        return True


def setup(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        f = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
        f.converter = time.gmtime
        handler.setFormatter(f)
    handler.addFilter(RateLimit())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
